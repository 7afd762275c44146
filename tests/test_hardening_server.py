"""The playground server against hostile clients (issue 24, items 1-7), on loopback only.

Each test sends what an attacker would: decompression bombs, stalled headers
and bodies, requests of other sites and rebinding names, numbers out of
range, NaN images, aborted uploads, PostScript. The load test floods a real
``mnistcodec serve`` with bombs and slow clients (a bounded number, for a
bounded time) and checks its memory from ``/proc`` and that a normal
request still gets its answer. Every test failed on the server before these
fixes.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.parse
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnistcodec.coding.api import Codec
from mnistcodec.coding.zoo import DEFAULT_MODEL
from mnistcodec.errors import InputError
from mnistcodec.playground.service import MAX_WEB_PIXELS
from mnistcodec.storage.fitting import NotAnImageError, fit_image_bytes
from mnistcodec.storage.images import encode_png, png_grid

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="reads memory from /proc"
)

#: The bound the load test holds the server to (docs/robustness.md states it).
RSS_BOUND = 1 << 30


# -- a server of our own, its process at hand --------------------------------------------------


class Server:
    def __init__(self, process: subprocess.Popen, url: str, err_path: Path) -> None:
        self.process, self.url, self.err_path = process, url, err_path
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname, parts.port

    def memory(self) -> tuple[int, int]:
        """(resident, peak resident) bytes of the server process."""
        fields = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        return int(fields["VmRSS"].split()[0]) << 10, int(fields["VmHWM"].split()[0]) << 10

    def log(self) -> str:
        return self.err_path.read_text()

    def request(self, method, path, body=None, headers=None, timeout=300):
        """``(status, headers, body)`` of one request on a new connection.

        The timeout is generous: under a flood on a loaded machine a request may
        wait for the whole queue before it is worked on.
        """
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def post(self, path, body, content_type="image/png", **headers):
        return self.request("POST", path, body, {"Content-Type": content_type, **headers})


def _start(tmp_path_factory, *options) -> Server:
    folder = tmp_path_factory.mktemp("server")
    out_path, err_path = folder / "out.txt", folder / "err.txt"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "mnistcodec", "serve", "--port", "0", *options],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    deadline = time.monotonic() + 120
    while "http://" not in out_path.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"mnistcodec serve did not start: {err_path.read_text()[-2000:]}")
        time.sleep(0.1)
    address = out_path.read_text().split("http://", 1)[1].split("/", 1)[0]
    return Server(process, f"http://{address}", err_path)


def _stop(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="module")
def server(_data_environment, tmp_path_factory):
    """``mnistcodec serve`` with the default limits but short timeouts and few connections."""
    made = _start(
        tmp_path_factory,
        "--header-timeout",
        "1",
        "--body-timeout",
        "2",
        "--max-connections",
        "24",
    )
    yield made
    _stop(made)


# -- images an attacker makes --------------------------------------------------------------------


def _png(width: int, height: int, depth: int, colour: int, row) -> bytes:
    """A PNG written row by row (``row(y)`` gives a scanline's pixel bytes), never held whole."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    packer = zlib.compressobj(9)
    parts = []
    for y in range(height):
        parts.append(packer.compress(b"\0" + row(y)))
    parts.append(packer.flush())
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", b"".join(parts))
        + chunk(b"IEND", b"")
    )


def bomb() -> bytes:
    """About 62 KB of PNG that declares 8000x8000 pixels (64 megapixels)."""
    line = bytes(8000)
    return _png(8000, 8000, 8, 0, lambda y: line)


def deep_rgba(side: int = 4096) -> bytes:
    """A 16-bit RGBA PNG of ``side`` x ``side`` pixels: a dark bar on white, under 1 MiB."""
    paper, ink = b"\xff" * 8, b"\x00" * 6 + b"\xff\xff"
    white = paper * side
    left, width = 2 * side // 5, side // 5
    bar = paper * left + ink * width + paper * (side - left - width)
    return _png(side, side, 16, 6, lambda y: bar if side // 5 < y < 4 * side // 5 else white)


def photo(width: int = 4000, height: int = 3000) -> bytes:
    image = Image.new("L", (width, height), 235)
    ImageDraw.Draw(image).line(
        [(width // 3, height // 5), (2 * width // 3, height // 5), (width // 2, 4 * height // 5)],
        fill=20,
        width=width // 25,
    )
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def nan_tiff(fill: float = float("nan"), ink: bool = False) -> bytes:
    pixels = np.full((40, 40), fill, dtype=np.float32)
    if ink:
        pixels[10:30, 18:22] = 200.0
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="F").save(buffer, format="TIFF")
    return buffer.getvalue()


def _json(status_headers_body) -> tuple[int, dict]:
    status, headers, body = status_headers_body
    kind = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    assert kind.startswith("application/json"), (status, kind, body[:200])
    return status, json.loads(body)


# -- 1. memory per request, and the load test ----------------------------------------------------


def test_a_flood_of_bombs_and_slow_clients_keeps_memory_bounded(server, test_digits):
    """40 bombs, deep images and photos from 12 clients at once, 6 stalled connections beside."""
    digit = encode_png(test_digits[0])
    status, normal = _json(server.post("/api/compress?fit=false&level=10", digit))
    assert status == 200
    idle, _ = server.memory()
    bodies = [bomb(), deep_rgba(), photo()]
    stalled = []
    for i in range(6):  # slow clients: headers never finished, bodies never finished
        sock = socket.create_connection((server.host, server.port), timeout=30)
        if i % 2:
            sock.sendall(b"POST /api/compress HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
        else:
            sock.sendall(
                b"POST /api/compress HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                b"Content-Length: 1000000\r\n\r\n" + bytes(1000)
            )
        stalled.append(sock)

    def send(i: int) -> int:
        status, _, _ = server.post("/api/compress", bodies[i % 3])
        return status

    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(send, range(40)))
    _, peak = server.memory()
    by_kind = {
        kind: {s for i, s in enumerate(statuses) if i % 3 == k}
        for k, kind in enumerate(["bomb", "deep", "photo"])
    }
    assert by_kind["bomb"] == {400}, statuses  # refused from its header: no pixel decoded
    assert 200 in by_kind["deep"] and by_kind["deep"] <= {200, 503}, statuses
    assert 200 in by_kind["photo"] and by_kind["photo"] <= {200, 503}, statuses
    assert peak < RSS_BOUND, f"peak RSS {peak >> 20} MiB"
    # a normal request still gets its answer, the same as before the flood
    status, again = _json(server.post("/api/compress?fit=false&level=10", digit))
    assert status == 200 and again["string_hex"] == normal["string_hex"]
    # the stalled clients are closed by the server within its timeouts
    for sock in stalled:
        sock.settimeout(60)
        try:
            while sock.recv(4096):
                pass
        except ConnectionResetError:
            pass
        sock.close()
    time.sleep(0.5)
    after, _ = server.memory()
    assert after < idle + (256 << 20), f"idle {idle >> 20} MiB, after {after >> 20} MiB"


def test_large_images_are_decoded_at_a_bounded_size():
    with pytest.raises(InputError, match=f"at most {MAX_WEB_PIXELS} pixels"):
        fit_image_bytes(bomb(), "bomb", max_pixels=MAX_WEB_PIXELS)
    digit = fit_image_bytes(deep_rgba(2048), "deep")
    assert digit.shape == (28, 28) and digit.max() == 255
    # a 12-megapixel photo is decoded at a quarter of its size: the same digit as the photo
    # drawn at that size (1000x750) gives, within a grey level or two on average
    big = fit_image_bytes(photo(4000, 3000), "photo").astype(int)
    drawn_small = fit_image_bytes(photo(1000, 750), "photo").astype(int)
    assert np.abs(big - drawn_small).mean() < 4


def test_heavy_requests_beyond_the_queue_are_told_to_retry(_data_environment, tmp_path_factory):
    small = _start(tmp_path_factory, "--max-active", "1", "--queue", "0")
    try:
        body = deep_rgba()
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: small.post("/api/compare", body), range(8)))
        statuses = sorted(status for status, _, _ in answers)
        assert 200 in statuses and 503 in statuses and set(statuses) <= {200, 503}, statuses
        busy = next(a for a in answers if a[0] == 503)
        assert busy[1].get("retry-after") or busy[1].get("Retry-After")
        assert _json(busy)[1]["error"].startswith("the server is busy")
    finally:
        _stop(small)


# -- 2. slow clients --------------------------------------------------------------------------


def _drain(sock: socket.socket, limit: float = 60.0) -> bytes:
    """Everything the server sends until it closes the connection (at most ``limit`` s: a bound
    for a loaded machine, not a timing; the server closes within its own timeouts)."""
    sock.settimeout(limit)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def test_unfinished_headers_and_bodies_are_closed_with_a_json_408(server):
    headers = socket.create_connection((server.host, server.port))
    headers.sendall(b"GET /api/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    body = socket.create_connection((server.host, server.port))
    body.sendall(
        b"POST /api/decode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream"
        b"\r\nContent-Length: 1000\r\n\r\n" + bytes(10)
    )
    idle = socket.create_connection((server.host, server.port))
    for sock, what in ((headers, b"headers"), (body, b"body")):
        answer = _drain(sock)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["status"] == 408
        assert what in answer
        sock.close()
    assert _drain(idle).startswith(b"HTTP/1.1 408")  # a connection that never sends a byte
    idle.close()


def test_connections_beyond_the_limit_are_refused(server):
    held = [socket.create_connection((server.host, server.port)) for _ in range(30)]
    try:
        refused = 0
        for sock in held[24:]:
            answer = _drain(sock, 30)
            refused += answer.startswith(b"HTTP/1.1 503")
        assert refused == 6
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    assert server.request("GET", "/api/models")[0] == 200


# -- 3. other sites, rebinding names, Content-Types -------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Host": "attacker.example:8000"}, 421),
        ({"Origin": "http://attacker.example"}, 403),
        ({"Origin": "null"}, 403),
        ({"Sec-Fetch-Site": "cross-site"}, 403),
        ({"Content-Type": "text/plain"}, 415),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
        ({"Content-Type": "multipart/form-data; boundary=x"}, 415),
    ],
    ids=lambda v: str(v),
)
def test_cross_site_requests_and_foreign_hosts_are_refused(server, test_digits, headers, status):
    body = encode_png(test_digits[0])
    sent = {"Content-Type": "image/png", **headers}
    got, answer = _json(server.request("POST", "/api/compress?fit=false", body, sent))
    assert got == status and answer["status"] == status, answer


def test_the_page_own_requests_pass(server, test_digits):
    body = encode_png(test_digits[0])
    origin = f"http://{server.host}:{server.port}"
    same = {"Origin": origin, "Sec-Fetch-Site": "same-origin", "Content-Type": "image/png"}
    assert server.request("POST", "/api/compress?fit=false", body, same)[0] == 200
    assert (
        server.request("GET", "/api/models", headers={"Host": f"localhost:{server.port}"})[0] == 200
    )
    assert server.request("GET", "/", headers={"Sec-Fetch-Site": "cross-site"})[0] == 200


def test_allow_host_adds_a_name(_data_environment, tmp_path_factory):
    named = _start(tmp_path_factory, "--allow-host", "digits.lan")
    try:
        assert named.request("GET", "/api/models", headers={"Host": "digits.lan:80"})[0] == 200
        assert named.request("GET", "/api/models", headers={"Host": "other.lan"})[0] == 421
    finally:
        _stop(named)


# -- 4. numbers out of range ------------------------------------------------------------------


@pytest.mark.parametrize("route", ["/api/compress", "/api/mnc", "/api/compare"])
@pytest.mark.parametrize("query", ["level=9223372036854775808", "lmbda=1e309", "lmbda=inf"])
def test_numbers_out_of_range_are_a_422(server, test_digits, route, query):
    status, answer = _json(server.post(f"{route}?{query}", encode_png(test_digits[0])))
    assert status == 422 and "Traceback" not in answer["error"]


def test_query_numbers_of_every_route_are_bounded(server):
    for path in (
        "/api/sample?level=9223372036854775808",
        "/api/test-digit?index=9223372036854775808",
        "/api/sample?model=" + "x" * 500,
    ):
        assert _json(server.request("GET", path))[0] == 422, path


# -- 5. images without numbers -----------------------------------------------------------------


def test_nan_images_are_refused(server, tmp_path, capsys):
    status, answer = _json(server.post("/api/compress", nan_tiff(), "image/tiff"))
    assert status == 400 and "no ink" in answer["error"]
    status, answer = _json(server.post("/api/compress", nan_tiff(ink=True), "image/tiff"))
    assert status == 400 and "not finite" in answer["error"]
    status, answer = _json(server.post("/api/compress", nan_tiff(float("inf"), True), "image/tiff"))
    assert status == 400 and "not finite" in answer["error"]
    (tmp_path / "nan.tif").write_bytes(nan_tiff())
    done = subprocess.run(
        [sys.executable, "-W", "error", "-m", "mnistcodec", "compress", "--fit"]
        + [str(tmp_path / "nan.tif"), "-o", str(tmp_path / "x.mnc")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and "no ink" in done.stderr and "Warning" not in done.stderr
    assert not (tmp_path / "x.mnc").exists()


# -- 6. quiet failures ------------------------------------------------------------------------


def test_aborted_uploads_and_malformed_requests_are_not_tracebacks(server):
    for _ in range(5):
        sock = socket.create_connection((server.host, server.port))
        sock.sendall(
            b"POST /api/compress HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
            b"Content-Length: 5000\r\n\r\n" + bytes(100)
        )
        time.sleep(0.05)
        sock.close()
    malformed = socket.create_connection((server.host, server.port))
    malformed.sendall(b"GET / HTTP/1.1\r\nHost\r\n\r\n")
    answer = _drain(malformed)
    malformed.close()
    assert answer.startswith(b"HTTP/1.1 400")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["status"] == 400
    time.sleep(0.5)
    log = server.log()
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-2000:]


def test_the_schema_lists_every_status(server):
    status, _, data = server.request("GET", "/openapi.json")
    schema = json.loads(data)
    answers = schema["paths"]["/api/compress"]["post"]["responses"]
    assert {"200", "400", "403", "404", "408", "413", "415", "421", "422", "503"} <= set(answers)
    assert {"400", "404", "422", "503"} <= set(schema["paths"]["/api/sample"]["get"]["responses"])


# -- 7. image formats ---------------------------------------------------------------------------


def test_only_the_promised_formats_are_opened(server, monkeypatch):
    from PIL import EpsImagePlugin

    def never(*args, **kwargs):
        raise AssertionError("the PostScript decoder was tried")

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", never)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\n0 0 moveto 28 28 lineto stroke\n"
    with pytest.raises(NotAnImageError, match="not an image of a format taken here"):
        fit_image_bytes(eps, "digit.eps")
    status, answer = _json(server.post("/api/compress", eps, "image/x-eps"))
    assert status == 415 and "PNG" in answer["error"]


# -- issue 25, item 6: the sample endpoint takes the rate options of compress -----------------------


def test_sample_takes_level_and_lmbda_like_compress(server):
    codec = Codec.from_model(DEFAULT_MODEL)
    for query, level in (("level=15", 15), ("lmbda=150", 0), ("", codec.default_level)):
        status, headers, data = server.request("GET", f"/api/sample?seed=5&n=4&{query}")
        assert status == 200, data[:200]
        grid = np.asarray(Image.open(io.BytesIO(data)))
        assert np.array_equal(grid, png_grid(codec.sample(4, seed=5, level=level))), query
    assert _json(server.request("GET", "/api/sample?level=16"))[0] == 400
    assert _json(server.request("GET", "/api/sample?level=3&lmbda=300"))[0] == 400
