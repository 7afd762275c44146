"""What one client may ask of the playground: the limits and the checks that keep them.

:class:`AppLimits` holds the numbers (``mnistcodec serve`` sets them);
:class:`GuardMiddleware` refuses a Host the server does not answer (``421``)
and a POST of another site (``403``) before any route runs;
:func:`check_content_type` and :func:`read_body` bound a request body by its
type, size and time; :class:`HeavyGate` bounds the heavy requests in flight
(``503`` past the queue). The errors they raise map to HTTP statuses in
:mod:`mnistcodec.playground.app`. See that module's docstring for the rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from mnistcodec.errors import InputError, MnistCodecError
from mnistcodec.playground.service import MAX_BODY_BYTES


@dataclass(frozen=True)
class AppLimits:
    """What the application allows a request (see the module docstring)."""

    #: Largest request body read.
    max_body_bytes: int = MAX_BODY_BYTES
    #: Seconds to send a request body, from the end of its headers.
    body_timeout: float = 30.0
    #: Heavy requests worked on at once.
    max_active: int = 4
    #: Heavy requests waiting for their turn; one more is answered 503.
    max_queued: int = 32
    #: Seconds a busy answer asks the client to wait (``Retry-After``).
    retry_after: int = 1
    #: Host names answered (lower case, IPv6 without brackets); empty: any.
    hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")

    def with_hosts(self, hosts: tuple[str, ...]) -> AppLimits:
        """These limits answering ``hosts`` (``*`` among them: any Host)."""
        return replace(self, hosts=() if "*" in hosts else tuple(hosts))


class BodyTooLargeError(InputError):
    """A request body over :attr:`AppLimits.max_body_bytes`."""


class BodyTimeoutError(InputError):
    """A request body not complete within :attr:`AppLimits.body_timeout`."""


class ContentTypeError(InputError):
    """A body of a Content-Type the route does not take."""


class ServerBusyError(MnistCodecError):
    """Every heavy-request slot busy and the queue full."""


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def check_content_type(request: Request, accepted: tuple[str, ...], images: bool) -> None:
    """Refuse a body whose Content-Type the route does not take (``415``)."""
    kind = _media_type(request)
    if kind in accepted or (images and kind.startswith("image/")):
        return
    wanted = ("image/* or " if images else "") + " or ".join(accepted)
    raise ContentTypeError(
        f"a body of Content-Type {kind[:60] or '(none)'!r} is not taken here; send it as {wanted}"
    )


async def read_body(request: Request, limits: AppLimits) -> bytes:
    """The request body: at most ``limits.max_body_bytes``, within ``limits.body_timeout`` s."""
    limit = limits.max_body_bytes
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit() or len(length) > 20:
            raise InputError(f"bad Content-Length {length[:40]!r}")
        if int(length) > limit:
            raise BodyTooLargeError(f"the body is {length} bytes; the limit is {limit} bytes")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(limits.body_timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BodyTooLargeError(f"the body holds more than {limit} bytes, the limit")
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTimeoutError(
            f"the body did not arrive within {limits.body_timeout:g} s ({size} bytes came)"
        ) from None
    return b"".join(chunks)


def _release_memory() -> None:
    """Give freed heap memory back to the system (glibc; elsewhere nothing)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class HeavyGate:
    """At most ``max_active`` heavy requests at once and ``max_queued`` waiting; more: busy.

    Used from the event loop only (no lock needed). When the last heavy request
    ends, freed memory is handed back to the system, so the server returns near
    its idle size after a burst.
    """

    def __init__(self, limits: AppLimits) -> None:
        self.limits = limits
        self.slots = asyncio.Semaphore(limits.max_active)
        self.inside = 0

    @contextlib.asynccontextmanager
    async def __call__(self):
        limits = self.limits
        if self.inside >= limits.max_active + limits.max_queued:
            raise ServerBusyError(
                f"the server is busy ({limits.max_active} requests at work, {limits.max_queued} "
                f"waiting); try again in {limits.retry_after} s"
            )
        self.inside += 1
        try:
            async with self.slots:
                yield
        finally:
            self.inside -= 1
            if self.inside == 0:
                await run_in_threadpool(_release_memory)


def _host_name(value: str) -> str:
    """The name in a Host header (or an Origin's netloc), lower case, without port or brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class GuardMiddleware:
    """Refuse a Host this server does not answer (421) and cross-site POSTs (403), in JSON."""

    SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

    def __init__(self, app, limits: AppLimits) -> None:
        self.app, self.limits = app, limits

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        problem = self.problem(scope["method"], headers)
        if problem is None:
            return await self.app(scope, receive, send)
        status, message = problem
        body = json.dumps({"error": message, "status": status}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def problem(self, method: str, headers: dict[str, str]) -> tuple[int, str] | None:
        host = headers.get("host", "")
        hosts = self.limits.hosts
        if hosts and _host_name(host) not in hosts:
            return 421, (
                f"this server answers Host {', '.join(hosts)}, not {host[:80]!r} "
                "(mnistcodec serve --allow-host NAME adds a name)"
            )
        if method in self.SAFE_METHODS:
            return None
        site = headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return 403, f"a cross-site request (Sec-Fetch-Site: {site[:40]}) is refused"
        origin = headers.get("origin")
        if origin is not None:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or parts.netloc.lower() != host.lower():
                return 403, f"a request from another origin ({origin[:80]}) is refused"
        return None
