"""The playground's ASGI application: the page, its JSON API, and the API's documentation.

Every route is a thin call to :class:`mnistcodec.playground.service.Playground`,
run in a worker thread (``run_in_threadpool``) so that requests are served
concurrently while PyTorch works. What one client may ask is bounded here
(the numbers are :class:`AppLimits`; ``mnistcodec serve`` sets them):

* **Host and Origin.** Every request's ``Host`` must be a name the server
  answers (:attr:`AppLimits.hosts`: the loopback names and the bound address,
  more with ``--allow-host``), so a DNS-rebinding name cannot read answers.
  A POST from another site is refused (``403``): its ``Origin`` must be this
  server's and its ``Sec-Fetch-Site`` ``same-origin`` or ``none``.
* **Content-Type.** Images are posted as ``image/*`` or
  ``application/octet-stream``, ``.mnc`` files as ``application/octet-stream``;
  anything else (``text/plain`` or a form, which a page of another site may
  send without a CORS preflight) is refused with ``415``.
* **Bodies** are read up to :attr:`AppLimits.max_body_bytes` and no further (a
  ``Content-Length`` over the limit is refused before any byte of the body is
  read, a body sent without one as soon as it passes the limit), within
  :attr:`AppLimits.body_timeout` seconds (else ``408``).
* **Heavy requests** (coding, comparing, decoding, sampling) run at most
  :attr:`AppLimits.max_active` at once, with up to :attr:`AppLimits.max_queued`
  waiting; more are answered ``503`` with ``Retry-After``.

Every error is a JSON object ``{"error": message, "status": code}``: 400 bad
input, 403 a cross-site request, 404 unknown model or route, 408 a body too
slow, 413 body too large, 415 not an image or a wrong Content-Type, 421 a
Host this server does not answer, 422 bad parameters or a ``.mnc`` file that
is corrupt or from another model, 503 busy or lacking what it needs (MNIST
for test digits). Nothing answers with a traceback, and a client that hangs
up mid-upload is not logged. ``/openapi.json`` is the API's OpenAPI schema,
every status included, and ``/docs`` a page rendering it, self-contained like
the page itself (FastAPI's own ``/docs`` loads Swagger UI from a CDN).
"""

from __future__ import annotations

import math
from importlib import resources
from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from mnistcodec import __version__
from mnistcodec.errors import (
    DataError,
    FormatError,
    InputError,
    MnistCodecError,
    ModelFileError,
)
from mnistcodec.playground.guard import (
    AppLimits,
    BodyTimeoutError,
    BodyTooLargeError,
    ContentTypeError,
    GuardMiddleware,
    HeavyGate,
    ServerBusyError,
    check_content_type,
    read_body,
)
from mnistcodec.playground.service import (
    MAX_BODY_BYTES,
    MAX_LEVEL,
    MAX_SEED,
    MAX_WEB_SAMPLE_BYTES,
    MAX_WEB_SAMPLES,
    Playground,
    UnknownModelError,
)
from mnistcodec.storage.fitting import NotAnImageError

#: HTTP status of each error kind, most specific first.
STATUS = (
    (BodyTooLargeError, 413),
    (BodyTimeoutError, 408),
    (ContentTypeError, 415),
    (NotAnImageError, 415),
    (UnknownModelError, 404),
    (ServerBusyError, 503),
    (FormatError, 422),
    (DataError, 503),
    (ModelFileError, 503),
    (MnistCodecError, 400),
)

#: Content-Types an image route takes (besides any ``image/*``).
IMAGE_TYPES = ("application/octet-stream",)
#: Content-Types the .mnc route takes.
MNC_TYPES = ("application/octet-stream", "application/x-mnc")

ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "status": {"type": "integer"}},
    "required": ["error", "status"],
}


def _error_doc(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": ERROR_SCHEMA}}}


#: The error answers every route may give, for the OpenAPI schema.
ERRORS = {
    400: _error_doc("bad input (no ink, a level the model lacks, a malformed request)"),
    403: _error_doc("a cross-site request (Origin or Sec-Fetch-Site of another site)"),
    404: _error_doc("unknown model or route"),
    421: _error_doc("a Host this server does not answer (start it with --allow-host)"),
    422: _error_doc("bad parameters, or a .mnc file that is corrupt or from another model"),
    503: _error_doc("busy (see Retry-After), or the server lacks what it needs"),
}
#: Those of the routes that take a body.
BODY_ERRORS = {
    **ERRORS,
    408: _error_doc("the body took too long to arrive"),
    413: _error_doc("the body is over the size limit"),
    415: _error_doc("not an image, or a Content-Type the route does not take"),
}

IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "description": f"an image (PNG, JPEG, WebP, GIF, BMP or TIFF; at most {MAX_BODY_BYTES} "
        "bytes), sent as image/* or application/octet-stream",
        "content": {
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
MNC_BODY = {
    "requestBody": {
        "required": True,
        "description": f"a .mnc file (at most {MAX_BODY_BYTES} bytes), "
        "sent as application/octet-stream",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
PNG_ANSWER = {200: {"content": {"image/png": {}}, "description": "a PNG image"}, **ERRORS}
MNC_ANSWER = {
    200: {"content": {"application/octet-stream": {}}, "description": "a .mnc file"},
    **BODY_ERRORS,
}

Model = Annotated[
    str | None,
    Query(max_length=200, description="model name (GET /api/models); default: the server's"),
]
Level = Annotated[
    int | None, Query(ge=0, le=MAX_LEVEL, description="level of a variable-rate model")
]
Lmbda = Annotated[
    float | None,
    Query(gt=0, le=1e12, allow_inf_nan=False, description="the level whose lambda is nearest"),
]
Fit = Annotated[bool, Query(description="fit the image to MNIST's form (false: exact 28x28 PNG)")]


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


def _finite(value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise InputError(f"lmbda must be finite, got {value}")
    return value


def _page(name: str) -> str:
    return resources.files("mnistcodec.playground").joinpath("static", name).read_text("utf-8")


def _add_error_handlers(app: FastAPI, limits: AppLimits) -> None:
    @app.exception_handler(MnistCodecError)
    async def library_error(request: Request, exc: MnistCodecError) -> JSONResponse:
        status = next(code for kind, code in STATUS if isinstance(exc, kind))
        headers = None
        if status == 503:
            headers = {"Retry-After": str(limits.retry_after)}
        elif status in (408, 413):
            headers = {"Connection": "close"}  # the rest of the body is not read
        return error_response(status, str(exc), headers)

    @app.exception_handler(RequestValidationError)
    async def bad_parameters(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
            for e in exc.errors()
        ]
        return error_response(422, "bad parameters: " + "; ".join(problems)[:2000])

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, exc: ClientDisconnect) -> Response:
        return Response(status_code=400)  # nobody is left to read it; nothing is logged

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        return error_response(500, f"internal error ({type(exc).__name__})")


def create_app(playground: Playground, limits: AppLimits | None = None) -> FastAPI:
    """The application serving ``playground``: the page at ``/``, the API under ``/api``."""
    limits = limits or AppLimits()
    app = FastAPI(
        title="mnistcodec playground",
        version=__version__,
        description="Draw a digit and watch its bits: a learned codec of MNIST digits. "
        "Errors are JSON objects {error, status} with a 4xx status (503 when busy).",
        docs_url=None,
        redoc_url=None,
    )
    _add_error_handlers(app, limits)
    gate = HeavyGate(limits)
    _add_pages(app, playground, gate)
    _add_coding_routes(app, playground, limits, gate)
    app.add_middleware(GuardMiddleware, limits=limits)
    return app


def _add_pages(app: FastAPI, playground: Playground, gate: HeavyGate) -> None:
    """The page, the API's documentation, the models, samples and test digits."""
    run = run_in_threadpool

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return _page("index.html")

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    async def docs() -> str:
        return _page("docs.html")

    @app.get("/api/models", summary="the models this server offers", responses=ERRORS)
    async def models() -> dict:
        names = playground.models.names()
        described = [await run(playground.models.describe, name) for name in names]
        return {"default": playground.models.default, "models": described}

    @app.get(
        "/api/sample", summary="decode random bits", responses=PNG_ANSWER, response_class=Response
    )
    async def sample(
        model: Model = None,
        seed: Annotated[int, Query(ge=0, le=MAX_SEED)] = 0,
        n: Annotated[int, Query(ge=1, le=MAX_WEB_SAMPLES)] = 16,
        bytes_: Annotated[int, Query(alias="bytes", ge=0, le=MAX_WEB_SAMPLE_BYTES)] = 8,
        level: Level = None,
        lmbda: Lmbda = None,
    ) -> Response:
        """`n` random strings of `bytes` bytes from `seed`, decoded at the level that `level` or
        `lmbda` names (as in /api/compress; default: the model's reference level): a PNG grid."""
        async with gate():
            content = await run(playground.sample_png, model, seed, n, bytes_, level, lmbda)
        return Response(content, media_type="image/png")

    @app.get("/api/test-digit", summary="an MNIST test digit", responses=ERRORS)
    async def test_digit(index: Annotated[int, Query(ge=0, le=(1 << 31) - 1)] = 0) -> dict:
        """Test digit `index`: its `label` and `png` (base64, 28x28)."""
        return await run(playground.test_digit, index)


def _add_coding_routes(
    app: FastAPI, playground: Playground, limits: AppLimits, gate: HeavyGate
) -> None:
    """The routes that take a body: an image to code or compare, a .mnc file to decode."""
    run = run_in_threadpool

    async def image_body(request: Request) -> bytes:
        check_content_type(request, IMAGE_TYPES, images=True)
        return await read_body(request, limits)

    @app.post(
        "/api/compress", summary="code one image", openapi_extra=IMAGE_BODY, responses=BODY_ERRORS
    )
    async def compress(
        request: Request,
        model: Model = None,
        level: Level = None,
        lmbda: Lmbda = None,
        fit: Fit = True,
    ) -> JSONResponse:
        """The image fitted to MNIST's form and coded: `string_hex`, `string_bits`,
        `info_bits`, `psnr_db`, `mad`, `input_png` and `reconstruction_png`
        (base64 PNG), the level and its lambda, and the latents against their prior."""
        data = await image_body(request)
        async with gate():
            answer = await run(playground.compress, data, model, level, _finite(lmbda), fit)
        return JSONResponse(answer)

    @app.post(
        "/api/mnc",
        summary="the .mnc file of one image",
        openapi_extra=IMAGE_BODY,
        responses=MNC_ANSWER,
    )
    async def mnc(
        request: Request,
        model: Model = None,
        level: Level = None,
        lmbda: Lmbda = None,
        fit: Fit = True,
    ) -> Response:
        data = await image_body(request)
        async with gate():
            content = await run(playground.mnc, data, model, level, _finite(lmbda), fit)
        headers = {"Content-Disposition": 'attachment; filename="digit.mnc"'}
        return Response(content, media_type="application/octet-stream", headers=headers)

    @app.post(
        "/api/compare",
        summary="JPEG, WebP and AVIF at the nearest size",
        openapi_extra=IMAGE_BODY,
        responses=BODY_ERRORS,
    )
    async def compare(
        request: Request,
        model: Model = None,
        level: Level = None,
        lmbda: Lmbda = None,
        fit: Fit = True,
    ) -> JSONResponse:
        """Each classical codec at the quality whose file is nearest the learned string's size."""
        data = await image_body(request)
        async with gate():
            answer = await run(playground.compare, data, model, level, _finite(lmbda), fit)
        return JSONResponse(answer)

    @app.post(
        "/api/decode", summary="decode a .mnc file", openapi_extra=MNC_BODY, responses=BODY_ERRORS
    )
    async def decode(request: Request, model: Model = None) -> JSONResponse:
        """The file's digits as a PNG grid (base64); the model is the one that wrote it."""
        check_content_type(request, MNC_TYPES, images=False)
        data = await read_body(request, limits)
        async with gate():
            answer = await run(playground.decode_mnc, data, model)
        return JSONResponse(answer)
