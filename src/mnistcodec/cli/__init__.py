"""Command-line interface: a thin layer over the library.

Each command group lives in its own module exposing ``register(subparsers)``;
every handler is a function ``(args) -> int`` that calls one library function
and prints its result. Errors of the :class:`MnistCodecError` family are printed
on one line (``mnistcodec: error: ...``) with exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from mnistcodec import __version__
from mnistcodec.errors import MnistCodecError

COMMAND_MODULES = (
    "mnistcodec.cli.data_cmd",
    "mnistcodec.cli.model_cmd",
    "mnistcodec.cli.coding_cmd",
    "mnistcodec.cli.experiment_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mnistcodec",
        description="Learned lossy compression of MNIST-style digits.",
    )
    parser.add_argument("--version", action="version", version=f"mnistcodec {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except MnistCodecError as exc:
        print(f"mnistcodec: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mnistcodec: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
