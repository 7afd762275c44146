"""The playground's JSON API over real HTTP, against a real ``mnistcodec serve`` (uvicorn).

Every answer is checked against the library computing the same thing
directly: the strings, reconstructions, files and samples the server sends
are those of :class:`mnistcodec.coding.api.Codec`.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import PLAYGROUND_ENGINE, load_bench_module
from mnistcodec.coding.api import Codec
from mnistcodec.coding.container import string_bits
from mnistcodec.coding.engine import Choice, Engine
from mnistcodec.coding.files import decompress_bytes
from mnistcodec.coding.zoo import DEFAULT_MODEL, PRETRAINED_DIR
from mnistcodec.errors import InputError
from mnistcodec.experiments.metrics import mad, psnr_per_image
from mnistcodec.playground.server import open_socket
from mnistcodec.playground.service import MAX_BODY_BYTES, ModelCatalogue, UnknownModelError
from mnistcodec.storage.fitting import fit_image_bytes
from mnistcodec.storage.images import encode_png, png_grid


def call(url: str, path: str, body: bytes | None = None, content_type: str | None = None):
    """``(status, content type, body bytes)`` of one request; errors are answers too.

    A body goes as the page sends it: a .mnc file as application/octet-stream, an image as
    image/png.
    """
    if content_type is None:
        content_type = "application/octet-stream" if path.startswith("/api/decode") else "image/png"
    headers = {"Content-Type": content_type} if body is not None else {}
    request = urllib.request.Request(url + path, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


def call_json(url: str, path: str, body: bytes | None = None) -> tuple[int, dict]:
    status, kind, data = call(url, path, body)
    assert kind.startswith("application/json"), (status, kind, data[:200])
    return status, json.loads(data)


def png_array(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


@pytest.fixture(scope="module")
def vr() -> Codec:
    """The default model, which the page and the API use when none is named, on the
    server's engines (whatever the engine cache holds)."""
    codec = Codec.from_model(DEFAULT_MODEL)
    codec.engine = Engine(codec.loaded, choice=Choice(PLAYGROUND_ENGINE, PLAYGROUND_ENGINE))
    return codec


@pytest.fixture(scope="module")
def photo() -> bytes:
    """A 300x240 colour JPEG of a digit drawn in dark ink on off-white paper."""
    image = Image.new("RGB", (300, 240), (236, 230, 214))
    ImageDraw.Draw(image).line([(110, 40), (200, 40), (140, 210)], fill=(25, 25, 60), width=16)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_models_lists_the_shipped_models(playground_url, vr):
    status, answer = call_json(playground_url, "/api/models")
    assert status == 200 and answer["default"] == DEFAULT_MODEL
    models = {m["name"]: m for m in answer["models"]}
    assert {DEFAULT_MODEL, "vr", "seed-lmbda2000"} <= set(models)
    default = models[DEFAULT_MODEL]
    assert default["levels"] == 16 and default["lambdas"] == pytest.approx(vr.lambdas)
    assert default["fingerprint"] == vr.fingerprint


def test_compress_a_test_digit_as_the_library_does(playground_url, vr, test_digits):
    digit = test_digits[7]
    level = 9  # a network level of the default model (levels 0-4 are codebooks)
    status, answer = call_json(
        playground_url, f"/api/compress?level={level}&fit=false", encode_png(digit)
    )
    assert status == 200
    strings, info = vr.compress(digit[None], level)
    decoded = vr.decompress(strings, levels=level)
    assert answer["string_hex"] == strings[0].hex()
    assert answer["string_bits"] == string_bits(strings[0]) <= 8 * len(strings[0])
    binary = answer["string_binary"]
    assert len(binary) == answer["string_bits"] and binary.endswith("1")
    assert int(binary, 2) << (8 * len(strings[0]) - len(binary)) == int(strings[0].hex(), 16)
    assert answer["info_bits"] == pytest.approx(info[0])
    assert answer["lmbda"] == pytest.approx(vr.lambdas[level])
    assert np.array_equal(png_array(answer["input_png"]), digit)
    assert np.array_equal(png_array(answer["reconstruction_png"]), decoded[0])
    assert answer["psnr_db"] == pytest.approx(psnr_per_image(digit[None], decoded)[0])
    assert answer["mad"] == pytest.approx(mad(digit[None], decoded))
    latents = answer["latents"]
    k, _ = vr.analyse(digit[None], level)
    assert latents["k"] == k[0].astype(int).tolist() and len(latents["values"]) == 50
    # The latents' bits, and a mixture prior's component: integer tables vs the float prior.
    total = sum(latents["bits"]) + (latents["component_bits"] or 0.0)
    assert total == pytest.approx(info[0], abs=2.0)


def test_a_codebook_level_shows_its_codeword_index(playground_url, vr, test_digits):
    digit = test_digits[7]
    status, answer = call_json(playground_url, "/api/compress?level=2&fit=false", encode_png(digit))
    assert status == 200
    strings, info = vr.compress(digit[None], 2)
    assert answer["string_hex"] == strings[0].hex()
    assert answer["info_bits"] == pytest.approx(info[0])
    book = vr.loaded.codebooks[2]
    (index,) = book.assign(digit[None])
    assert answer["latents"]["values"] == [] and answer["latents"]["codebook"]["index"] == index
    assert np.array_equal(png_array(answer["reconstruction_png"]), book.codewords[index])


def test_compress_fits_a_photo_and_follows_the_rate(playground_url, vr, photo):
    answers = {}
    for level in (0, 15):
        status, answers[level] = call_json(playground_url, f"/api/compress?level={level}", photo)
        assert status == 200
    fitted = fit_image_bytes(photo)
    assert np.array_equal(png_array(answers[15]["input_png"]), fitted)
    assert answers[15]["string_hex"] == vr.compress(fitted[None], 15)[0][0].hex()
    assert answers[0]["string_bits"] < answers[15]["string_bits"]
    top = vr.lambdas[15]
    status, by_lambda = call_json(playground_url, f"/api/compress?lmbda={top:g}", photo)
    assert by_lambda["level"] == 15 and by_lambda["string_hex"] == answers[15]["string_hex"]


def test_mnc_download_decodes_to_the_reconstruction_and_back_through_the_page(
    playground_url, vr, photo
):
    status, kind, data = call(playground_url, "/api/mnc?level=9", photo)
    assert status == 200 and kind == "application/octet-stream"
    _, answer = call_json(playground_url, "/api/compress?level=9", photo)
    assert np.array_equal(decompress_bytes(vr, data)[0], png_array(answer["reconstruction_png"]))
    status, decoded = call_json(playground_url, "/api/decode", data)
    assert status == 200 and decoded["model"] == DEFAULT_MODEL and decoded["count"] == 1
    assert decoded["levels"] == [9]
    assert np.array_equal(png_array(decoded["first_png"]), decompress_bytes(vr, data)[0])


def test_sample_is_the_library_sample_grid(playground_url, vr):
    status, kind, data = call(playground_url, f"/api/sample?model={DEFAULT_MODEL}&seed=5&n=16")
    assert status == 200 and kind == "image/png"
    expected = png_grid(vr.sample(16, seed=5))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), expected)


def test_compare_gives_the_classical_codecs_at_the_nearest_size(playground_url, test_digits):
    status, answer = call_json(playground_url, "/api/compare?fit=false", encode_png(test_digits[0]))
    assert status == 200 and answer["target_bits"] > 0
    rows = {row["codec"]: row for row in answer["codecs"]}
    assert set(rows) == {"jpeg", "webp", "avif"}
    for row in rows.values():
        if "error" not in row:
            assert row["bits"] >= 8 and 0 < row["psnr_db"] <= 100
            assert png_array(row["png"]).shape == (28, 28)


def test_test_digit_and_the_documentation(playground_url, test_digits):
    status, answer = call_json(playground_url, "/api/test-digit?index=3")
    assert status == 200 and np.array_equal(png_array(answer["png"]), test_digits[3])
    status, kind, data = call(playground_url, "/openapi.json")
    paths = json.loads(data)["paths"]
    for path in ("/api/models", "/api/compress", "/api/sample", "/api/mnc", "/api/decode"):
        assert path in paths
    for page in ("/", "/docs"):
        status, kind, data = call(playground_url, page)
        html = data.decode()
        assert status == 200 and kind.startswith("text/html")
        assert 'src="http' not in html and 'href="http' not in html and "@import" not in html


BAD_REQUESTS = [
    ("unknown model", "/api/compress?model=nope", "photo", 404),
    ("a model path", "/api/compress?model=/etc/passwd", "photo", 404),
    ("not an image", "/api/compress", b"hello, world", 415),
    ("an empty body", "/api/compress", b"", 415),
    ("no ink", "/api/compress", "flat", 400),
    ("no 28x28 PNG without fit", "/api/compress?fit=false", "photo", 400),
    ("a level too high", "/api/compress?level=16", "photo", 400),
    ("a negative level", "/api/compress?level=-1", "photo", 422),
    ("lambda zero", "/api/compress?lmbda=0", "photo", 422),
    ("lambda not a number", "/api/compress?lmbda=abc", "photo", 422),
    ("level and lambda", "/api/compress?level=3&lmbda=300", "photo", 400),
    ("too many samples", "/api/sample?n=65", None, 422),
    ("no samples", "/api/sample?n=0", None, 422),
    ("a negative seed", "/api/sample?seed=-1", None, 422),
    ("a huge seed", "/api/sample?seed=" + "9" * 40, None, 422),
    ("too many bytes", "/api/sample?bytes=100000", None, 422),
    ("a test digit out of range", "/api/test-digit?index=10000", None, 400),
    ("not a .mnc file", "/api/decode", b"not a compressed file at all", 422),
    ("an unknown route", "/api/nothing", None, 404),
    ("a wrong method", "/api/models", b"x", 405),
]


@pytest.mark.parametrize(
    ("what", "path", "body", "status"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS]
)
def test_bad_requests_get_a_json_4xx(playground_url, photo, what, path, body, status):
    flat = encode_png(np.full((40, 40), 200, dtype=np.uint8))
    body = {"photo": photo, "flat": flat}.get(body, body) if isinstance(body, str) else body
    got, kind, data = call(playground_url, path, body)
    assert got == status, data[:300]
    assert kind.startswith("application/json")
    answer = json.loads(data)
    assert answer["status"] == status and answer["error"]
    assert "Traceback" not in answer["error"]


def _host_port(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    return parts.hostname, parts.port


def test_a_body_over_the_limit_is_refused_from_its_length_unread(playground_url):
    connection = http.client.HTTPConnection(*_host_port(playground_url), timeout=30)
    connection.putrequest("POST", "/api/compress")
    connection.putheader("Content-Type", "image/png")
    connection.putheader("Content-Length", str(64 * MAX_BODY_BYTES))
    connection.endheaders()  # no body sent: the answer must not wait for it
    response = connection.getresponse()
    assert response.status == 413
    assert "limit" in json.loads(response.read())["error"]
    connection.close()


def test_a_chunked_body_over_the_limit_is_refused(playground_url):
    connection = http.client.HTTPConnection(*_host_port(playground_url), timeout=30)
    chunks = [b"\0" * (1 << 16)] * (MAX_BODY_BYTES // (1 << 16) + 1)
    connection.request(
        "POST",
        "/api/decode",
        body=iter(chunks),
        headers={"Content-Type": "application/octet-stream"},
        encode_chunked=True,
    )
    response = connection.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["status"] == 413
    connection.close()


def test_concurrent_requests_are_all_served(playground_url, vr, test_digits):
    bodies = [encode_png(d) for d in test_digits[:32]]

    def post(body: bytes) -> str:
        status, answer = call_json(playground_url, "/api/compress?fit=false&level=10", body)
        assert status == 200
        return answer["string_hex"]

    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(post, bodies))
    strings, _ = vr.compress(test_digits[:32], 10)
    assert together == [s.hex() for s in strings]


def test_the_latency_bench_runs(capsys):
    bench = load_bench_module("serve_latency")
    args = ["--no-write", "--threads", "1", "--clients", "4", "--requests", "40", "--warmup", "8"]
    assert bench.main(args) == 0
    out = capsys.readouterr().out
    assert "4 clients, test digits: p50" in out and "0 failed" in out


def test_the_server_refuses_a_port_in_use_and_unknown_models(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(InputError, match=f"cannot listen on 127.0.0.1:{port}"):
            open_socket("127.0.0.1", port)
    with pytest.raises(UnknownModelError, match="no model file"):
        ModelCatalogue("no-such-model")
    copy = tmp_path / "mine.safetensors"
    copy.write_bytes((PRETRAINED_DIR / "seed-lmbda2000.safetensors").read_bytes())
    catalogue = ModelCatalogue(str(copy))
    assert catalogue.default == "mine" and "vr" in catalogue.names()
    assert catalogue.get(None).fingerprint == catalogue.get("seed-lmbda2000").fingerprint
