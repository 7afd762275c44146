"""Serving the playground with uvicorn, on a socket this module opens.

:func:`serve` loads the default model, opens the listening socket (so a port
in use is one clear error, and port 0 picks a free port, whose address is
then announced), and runs uvicorn on it until interrupted. Requests run in
uvicorn's event loop and their PyTorch work in worker threads; PyTorch is
set to ``torch_threads`` intra-op threads (default 1): one digit is too
small a job to share between cores, and spinning OpenMP threads of
concurrent requests would compete for them, so the cores serve concurrent
requests instead.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import torch
import uvicorn

from mnistcodec.coding.zoo import DEFAULT_MODEL
from mnistcodec.errors import InputError
from mnistcodec.playground.app import create_app
from mnistcodec.playground.service import Playground


def open_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one), or one clear error."""
    if not 0 <= port <= 65535:
        raise InputError(f"port must be from 0 to 65535, got {port}")
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family, backlog=128)
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    # Accepted connections inherit it: an answer's last segment is not held back (Nagle)
    # waiting for the client's delayed acknowledgement.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    model: str = DEFAULT_MODEL,
    torch_threads: int = 1,
    announce: Callable[[str], None] = print,
    log_level: str = "warning",
) -> None:
    """Serve the playground on ``host:port`` until interrupted; ``announce`` gets its address."""
    if torch_threads < 1:
        raise InputError(f"torch threads must be at least 1, got {torch_threads}")
    torch.set_num_threads(torch_threads)
    playground = Playground(model)
    playground.models.get(None)  # the default model, loaded before the first request
    app = create_app(playground)
    sock = open_socket(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    announce(
        f"mnistcodec playground on http://{shown}:{bound_port}/ (model {playground.models.default}; "
        f"API: /docs, /openapi.json); Ctrl-C stops it"
    )
    config = uvicorn.Config(app, log_level=log_level, access_log=False)
    with sock:
        uvicorn.Server(config).run(sockets=[sock])
