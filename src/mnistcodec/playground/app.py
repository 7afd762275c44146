"""The playground's ASGI application: the page, its JSON API, and the API's documentation.

Every route is a thin call to :class:`mnistcodec.playground.service.Playground`,
run in a worker thread (``run_in_threadpool``) so that requests are served
concurrently while PyTorch works. Request bodies are read up to
:data:`~mnistcodec.playground.service.MAX_BODY_BYTES` and no further: a
``Content-Length`` over the limit is refused before any byte of the body is
read, and a body sent without one is refused as soon as it passes the limit.

Every error is a JSON object ``{"error": message, "status": code}`` with a
4xx status: 400 bad input, 404 unknown model, 413 body too large, 415 not an
image, 422 bad parameters or a ``.mnc`` file that is corrupt or from another
model; 503 when the server lacks what it needs (MNIST for test digits).
Nothing answers with a traceback. ``/openapi.json`` is the API's OpenAPI
schema and ``/docs`` a page rendering it, self-contained like the page
itself (FastAPI's own ``/docs`` loads Swagger UI from a CDN).
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from mnistcodec import __version__
from mnistcodec.errors import (
    DataError,
    FormatError,
    InputError,
    MnistCodecError,
    ModelFileError,
)
from mnistcodec.playground.service import (
    MAX_BODY_BYTES,
    MAX_SEED,
    MAX_WEB_SAMPLE_BYTES,
    MAX_WEB_SAMPLES,
    Playground,
    UnknownModelError,
)
from mnistcodec.storage.fitting import NotAnImageError


class BodyTooLargeError(InputError):
    """A request body over :data:`MAX_BODY_BYTES`."""


#: HTTP status of each error kind, most specific first.
STATUS = (
    (BodyTooLargeError, 413),
    (NotAnImageError, 415),
    (UnknownModelError, 404),
    (FormatError, 422),
    (DataError, 503),
    (ModelFileError, 503),
    (MnistCodecError, 400),
)

IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "description": f"an image (PNG, JPEG, WebP ...; at most {MAX_BODY_BYTES} bytes)",
        "content": {
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
MNC_BODY = {
    "requestBody": {
        "required": True,
        "description": f"a .mnc file (at most {MAX_BODY_BYTES} bytes)",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
PNG_ANSWER = {200: {"content": {"image/png": {}}, "description": "a PNG image"}}
MNC_ANSWER = {200: {"content": {"application/octet-stream": {}}, "description": "a .mnc file"}}

Model = Annotated[
    str | None, Query(description="model name (GET /api/models); default: the server's")
]
Level = Annotated[int | None, Query(ge=0, description="level of a variable-rate model")]
Lmbda = Annotated[float | None, Query(gt=0, description="the level whose lambda is nearest")]
Fit = Annotated[bool, Query(description="fit the image to MNIST's form (false: exact 28x28 PNG)")]


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, at most ``limit`` bytes: ``BodyTooLargeError`` past it."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise InputError(f"bad Content-Length {length[:40]!r}")
        if int(length) > limit:
            raise BodyTooLargeError(f"the body is {length} bytes; the limit is {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(f"the body holds more than {limit} bytes, the limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _page(name: str) -> str:
    return resources.files("mnistcodec.playground").joinpath("static", name).read_text("utf-8")


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MnistCodecError)
    async def library_error(request: Request, exc: MnistCodecError) -> JSONResponse:
        status = next(code for kind, code in STATUS if isinstance(exc, kind))
        return error_response(status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def bad_parameters(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
            for e in exc.errors()
        ]
        return error_response(422, "bad parameters: " + "; ".join(problems))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        return error_response(500, f"internal error ({type(exc).__name__})")


def create_app(playground: Playground) -> FastAPI:
    """The application serving ``playground``: the page at ``/``, the API under ``/api``."""
    app = FastAPI(
        title="mnistcodec playground",
        version=__version__,
        description="Draw a digit and watch its bits: a learned codec of MNIST digits. "
        "Errors are JSON objects {error, status} with a 4xx status.",
        docs_url=None,
        redoc_url=None,
    )
    _add_error_handlers(app)
    _add_pages(app, playground)
    _add_coding_routes(app, playground)
    return app


def _add_pages(app: FastAPI, playground: Playground) -> None:
    """The page, the API's documentation, the models, samples and test digits."""
    run = run_in_threadpool

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return _page("index.html")

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    async def docs() -> str:
        return _page("docs.html")

    @app.get("/api/models", summary="the models this server offers")
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
    ) -> Response:
        """`n` random strings of `bytes` bytes from `seed`, decoded: a PNG grid."""
        content = await run(playground.sample_png, model, seed, n, bytes_)
        return Response(content, media_type="image/png")

    @app.get("/api/test-digit", summary="an MNIST test digit")
    async def test_digit(index: Annotated[int, Query(ge=0)] = 0) -> dict:
        """Test digit `index`: its `label` and `png` (base64, 28x28)."""
        return await run(playground.test_digit, index)


def _add_coding_routes(app: FastAPI, playground: Playground) -> None:
    """The routes that take a body: an image to code or compare, a .mnc file to decode."""
    run = run_in_threadpool

    @app.post("/api/compress", summary="code one image", openapi_extra=IMAGE_BODY)
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
        data = await read_body(request)
        return JSONResponse(await run(playground.compress, data, model, level, lmbda, fit))

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
        data = await read_body(request)
        content = await run(playground.mnc, data, model, level, lmbda, fit)
        headers = {"Content-Disposition": 'attachment; filename="digit.mnc"'}
        return Response(content, media_type="application/octet-stream", headers=headers)

    @app.post(
        "/api/compare", summary="JPEG, WebP and AVIF at the nearest size", openapi_extra=IMAGE_BODY
    )
    async def compare(
        request: Request,
        model: Model = None,
        level: Level = None,
        lmbda: Lmbda = None,
        fit: Fit = True,
    ) -> JSONResponse:
        """Each classical codec at the quality whose file is nearest the learned string's size."""
        data = await read_body(request)
        return JSONResponse(await run(playground.compare, data, model, level, lmbda, fit))

    @app.post("/api/decode", summary="decode a .mnc file", openapi_extra=MNC_BODY)
    async def decode(request: Request, model: Model = None) -> JSONResponse:
        """The file's digits as a PNG grid (base64); the model is the one that wrote it."""
        data = await read_body(request)
        return JSONResponse(await run(playground.decode_mnc, data, model))
