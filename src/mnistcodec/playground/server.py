"""Serving the playground with uvicorn, on a socket this module opens, against hostile clients.

:func:`serve` loads the default model, opens the listening socket (so a port
in use is one clear error, and port 0 picks a free port, whose address is
then announced), and runs uvicorn on it until interrupted. Requests run in
uvicorn's event loop and their PyTorch work in worker threads; PyTorch is
set to ``torch_threads`` intra-op threads (default 1): one digit is too
small a job to share between cores, and spinning OpenMP threads of
concurrent requests would compete for them, so the cores serve concurrent
requests instead.

A local playground is still a server: any page the user visits can send it
requests, and it may run on a shared machine. The HTTP layer
(:class:`GuardedH11Protocol`, uvicorn's h11 protocol with limits) therefore

* accepts at most :attr:`Limits.max_connections` connections at once (more:
  a JSON ``503`` and the connection closed),
* closes a connection whose request line and headers are not complete
  :attr:`Limits.header_timeout` seconds after it opened or after its
  previous answer (a JSON ``408``), and an idle keep-alive connection after
  :attr:`Limits.keep_alive` seconds,
* limits the request line and headers to :data:`MAX_HEADER_BYTES`, and
* answers a malformed request with a JSON ``400`` (uvicorn's own is plain text).

The application (:mod:`mnistcodec.playground.app`) bounds the rest: the
body's size and read time, the Host and Origin, the heavy requests in
flight. :class:`Limits` holds every number; ``mnistcodec serve`` sets them.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import h11
import torch
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from mnistcodec.coding import memory
from mnistcodec.coding.zoo import DEFAULT_MODEL
from mnistcodec.errors import InputError
from mnistcodec.playground.app import create_app
from mnistcodec.playground.guard import AppLimits
from mnistcodec.playground.service import Playground

#: Largest request line and headers together (h11 refuses more with a 400).
MAX_HEADER_BYTES = 16 * 1024


@dataclass(frozen=True)
class Limits:
    """What the server allows one client and all of them (``mnistcodec serve`` options)."""

    #: Connections open at once; one more is answered 503 and closed.
    max_connections: int = 64
    #: Seconds to send a request line and headers.
    header_timeout: float = 10.0
    #: Seconds an idle connection is kept between requests.
    keep_alive: float = 5.0
    #: The application's limits: body size and read time, heavy requests, Host names.
    app: AppLimits = field(default_factory=AppLimits)


def raw_json_response(status: int, reason: str, message: str) -> bytes:
    """A complete HTTP/1.1 answer ``{"error", "status"}`` that closes the connection."""
    body = json.dumps({"error": message, "status": status}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a connection cap, a header timeout and JSON 400s.

    The header timer runs from the moment the connection opens, and again from
    each answer, until the next request's headers are complete: a client that
    never finishes them is closed, however slowly it sends.
    """

    limits: Limits = Limits()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._seen_cycle = None
        if len(self.connections) > self.limits.max_connections:
            transport.write(
                raw_json_response(
                    503,
                    "Service Unavailable",
                    f"too many connections (the limit is {self.limits.max_connections}); "
                    "try again later",
                )
            )
            transport.close()
            return
        self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.limits.header_timeout, self._header_late)

    def _cancel_header_timer(self) -> None:
        if getattr(self, "_header_timer", None) is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request being answered: its body's time is the application's to bound
        if self.conn.their_state is not h11.SEND_BODY:
            self.transport.write(
                raw_json_response(
                    408,
                    "Request Timeout",
                    f"the request's headers took more than {self.limits.header_timeout:g} s",
                )
            )
        self.transport.close()

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and self.cycle is not self._seen_cycle:
            self._seen_cycle = self.cycle  # a request's headers are in: its body is the app's
            self._cancel_header_timer()

    def on_response_complete(self) -> None:
        if not self.transport.is_closing():
            self._arm_header_timer()  # a pipelined request handled next disarms it again
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """A malformed request: the same JSON error as every other answer, then close."""
        self.transport.write(
            raw_json_response(400, "Bad Request", "invalid HTTP request (malformed or too large)")
        )
        self.transport.close()


def protocol_with(limits: Limits) -> type[GuardedH11Protocol]:
    """:class:`GuardedH11Protocol` bound to ``limits`` (uvicorn instantiates the class)."""
    return type("PlaygroundProtocol", (GuardedH11Protocol,), {"limits": limits})


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


def allowed_hosts(bound_host: str, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The Host names a server bound to ``bound_host`` answers (``*`` in ``extra``: any).

    Always the loopback names (``localhost``, ``127.0.0.1``, ``::1``) and the
    bound address itself; a wildcard address (``0.0.0.0``, ``::``) adds this
    machine's host name. Other names (a LAN name, a reverse proxy's) are given
    with ``--allow-host``.
    """
    names = ["localhost", "127.0.0.1", "::1", bound_host]
    if bound_host in ("0.0.0.0", "::", ""):
        names += [socket.gethostname(), socket.getfqdn()]
    names += list(extra)
    return tuple(dict.fromkeys(n.lower().strip("[]") for n in names if n))


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    model: str = DEFAULT_MODEL,
    torch_threads: int = 1,
    announce: Callable[[str], None] = print,
    log_level: str = "warning",
    limits: Limits | None = None,
    allow_hosts: Iterable[str] = (),
) -> None:
    """Serve the playground on ``host:port`` until interrupted; ``announce`` gets its address."""
    if torch_threads < 1:
        raise InputError(f"torch threads must be at least 1, got {torch_threads}")
    limits = limits or Limits()
    memory.return_memory_promptly()
    torch.set_num_threads(torch_threads)
    playground = Playground(model)
    playground.models.get(None)  # the default model, loaded before the first request
    sock = open_socket(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    app_limits = limits.app.with_hosts(allowed_hosts(bound_host, allow_hosts))
    app = create_app(playground, app_limits)
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    announce(
        f"mnistcodec playground on http://{shown}:{bound_port}/ (model {playground.models.default}; "
        f"API: /docs, /openapi.json); Ctrl-C stops it"
    )
    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        http=protocol_with(limits),
        timeout_keep_alive=limits.keep_alive,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
    )
    with sock:
        uvicorn.Server(config).run(sockets=[sock])
