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

#: Every command: its module (which registers its arguments) and its one-line help.
COMMANDS = {
    "data": ("mnistcodec.cli.data_cmd", "dataset information and download"),
    "train": ("mnistcodec.cli.model_cmd", "train a model with the rate-distortion Lagrangian"),
    "evaluate": ("mnistcodec.cli.model_cmd", "rate, PSNR and distortion of a model on a split"),
    "summary": ("mnistcodec.cli.model_cmd", "layers, output shapes and parameter counts"),
    "models": ("mnistcodec.cli.model_cmd", "list the pretrained models that ship with the package"),
    "compress": ("mnistcodec.cli.coding_cmd", "compress digits into a .mnc file"),
    "decompress": ("mnistcodec.cli.coding_cmd", "decode a .mnc file into PNGs or an IDX file"),
    "inspect": ("mnistcodec.cli.inspect_cmd", "header and sizes of a .mnc file (no model needed)"),
    "sample": ("mnistcodec.cli.coding_cmd", "decode random bytes into digits (generative use)"),
    "sweep": (
        "mnistcodec.cli.experiment_cmd",
        "train and evaluate a grid of models (cached, resumable, parallel)",
    ),
    "baselines": (
        "mnistcodec.cli.experiment_cmd",
        "classical codecs (JPEG, JPEG 2000, WebP, AVIF, JPEG XL, PNG) on test digits",
    ),
    "report": ("mnistcodec.cli.experiment_cmd", "the lab report: one self-contained HTML page"),
    "export": ("mnistcodec.cli.export_cmd", "export a model as ONNX with its coding tables"),
}


class _OneCommand:
    """Stands in for the subparsers while a module registers: keeps one command, drops the rest."""

    def __init__(self, subparsers: argparse._SubParsersAction, command: str) -> None:
        self.subparsers, self.command = subparsers, command

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        if name == self.command:
            kwargs["help"] = COMMANDS[name][1]
            return self.subparsers.add_parser(name, **kwargs)
        return argparse.ArgumentParser(add_help=False)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The command-line parser; given ``argv``, only the command it names imports its module.

    Every other command is listed by name and help only, so ``--help``,
    ``--version`` and light commands such as ``inspect`` never import PyTorch.
    Without ``argv`` every command is registered in full.
    """
    parser = argparse.ArgumentParser(
        prog="mnistcodec",
        description="Learned lossy compression of MNIST-style digits.",
    )
    parser.add_argument("--version", action="version", version=f"mnistcodec {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    invoked = next((w for w in argv or [] if not w.startswith("-")), None)
    for command, (module_name, help_text) in COMMANDS.items():
        if argv is not None and command != invoked:
            subparsers.add_parser(command, help=help_text)
            continue
        # The command's own module, imported only when it runs (some load PyTorch).
        importlib.import_module(module_name).register(_OneCommand(subparsers, command))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
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
