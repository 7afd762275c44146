"""``serve``: the playground, a local web app (:mod:`mnistcodec.playground`)."""

from __future__ import annotations

import argparse
import importlib.util
import sys

from mnistcodec.cli import Terminated
from mnistcodec.cli.common import positive_int
from mnistcodec.coding.zoo import DEFAULT_MODEL
from mnistcodec.errors import InputError


def port_number(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be from 0 to 65535, got {text}")
    return value


def serve_handler(args: argparse.Namespace) -> int:
    missing = [name for name in ("fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise InputError(
            f"mnistcodec serve needs {' and '.join(missing)}: pip install 'mnistcodec[serve]'"
        )
    # lazy: PyTorch and the web stack (an optional extra) load only when serving
    from mnistcodec.playground.server import serve

    try:
        serve(
            args.host,
            args.port,
            args.model,
            torch_threads=args.threads,
            announce=lambda line: print(line, flush=True),
            log_level="info" if args.verbose else "warning",
        )
    except (KeyboardInterrupt, Terminated):
        pass  # the way to stop a server: uvicorn has already shut it down cleanly
    print("mnistcodec playground stopped", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        description="The playground: draw a digit (or upload an image, or pick a test digit) and "
        "watch its bit string, reconstruction and latents as you draw, on a local web page with "
        "a JSON API (documented at /docs).",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--port", type=port_number, default=8000, help="port (default 8000; 0: a free port)"
    )
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"default model: a shipped name or a model file (default {DEFAULT_MODEL}); "
        "every shipped model is offered too",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        metavar="N",
        help="PyTorch threads per request (default 1: the cores serve concurrent requests)",
    )
    p.add_argument("--verbose", action="store_true", help="log every request")
    p.set_defaults(handler=serve_handler)
