"""``serve``: the playground, a local web app (:mod:`mnistcodec.playground`)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from dataclasses import replace

from mnistcodec.cli import Terminated
from mnistcodec.cli.common import bounded_float, bounded_int, positive_int
from mnistcodec.coding.zoo import DEFAULT_MODEL
from mnistcodec.errors import InputError

port_number = bounded_int(0, 65535)


def serve_handler(args: argparse.Namespace) -> int:
    missing = [name for name in ("fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise InputError(
            f"mnistcodec serve needs {' and '.join(missing)}: pip install 'mnistcodec[serve]'"
        )
    # lazy: PyTorch and the web stack (an optional extra) load only when serving
    from mnistcodec.playground.server import Limits, serve

    defaults = Limits()
    limits = replace(
        defaults,
        max_connections=args.max_connections,
        header_timeout=args.header_timeout,
        app=replace(
            defaults.app,
            body_timeout=args.body_timeout,
            max_active=args.max_active,
            max_queued=args.queue,
        ),
    )
    try:
        serve(
            args.host,
            args.port,
            args.model,
            torch_threads=args.threads,
            announce=lambda line: print(line, flush=True),
            log_level="info" if args.verbose else "warning",
            limits=limits,
            allow_hosts=args.allow_host,
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
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests whose Host is NAME (repeatable; * answers any Host, which "
        "lets DNS-rebinding pages read the answers). Always answered: localhost, 127.0.0.1, "
        "::1 and the --host address",
    )
    p.add_argument(
        "--max-connections",
        type=bounded_int(1, 1 << 16),
        default=64,
        metavar="N",
        help="connections open at once; more are answered 503 (default 64)",
    )
    p.add_argument(
        "--max-active",
        type=bounded_int(1, 1024),
        default=4,
        metavar="N",
        help="images coded, files decoded or samples drawn at once (default 4)",
    )
    p.add_argument(
        "--queue",
        type=bounded_int(0, 1 << 16),
        default=32,
        metavar="N",
        help="such requests waiting for their turn; more are answered 503 (default 32)",
    )
    p.add_argument(
        "--header-timeout",
        type=bounded_float(0.1, 3600),
        default=10.0,
        metavar="S",
        help="seconds a client has to send a request's headers (default 10)",
    )
    p.add_argument(
        "--body-timeout",
        type=bounded_float(0.1, 3600),
        default=30.0,
        metavar="S",
        help="seconds a client has to send a request's body (default 30)",
    )
    p.add_argument("--verbose", action="store_true", help="log every request")
    p.set_defaults(handler=serve_handler)
