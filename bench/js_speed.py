"""mnistcodec.js in Node and in Chromium against the Python CLI, on the same machine.

For one model (default: the shipped default model) and the first ``--digits``
MNIST test digits:

``node``
    ``mnistcodec.js`` in Node: model load, per-digit compress of all digits,
    decompress of the file (every check, the canonical-string check included),
    and one digit decoded alone (a one-digit file: range decoding, check and
    synthesis), the median of ``--single`` runs.
``chromium``
    the same in headless Chromium, on the page ``mnistcodec export MODEL --web``
    writes, served by Python's static file server; plus the time from opening the
    page to the first bits (navigation start to the page ready, its model
    loaded, plus one ``/api/compress`` of a test digit answered in the page),
    and the bytes the page downloads (every file the server sent).
``python cli``
    ``mnistcodec compress MODEL --split test --index 0:N`` and ``mnistcodec
    decompress``, wall time of each command (start-up included), and the
    library in-process (``compress_to_bytes`` / ``decompress_bytes``, fp32).
``identity``
    all ``--identity-digits`` test digits compressed by JavaScript and by Python
    at the model's reference level: digits whose strings differ (float rounding
    in the analysis), every JavaScript file decoded by Python.

Prints a table, writes ``bench/results/js_speed.json`` and the section of
``BENCHMARKS.md`` between ``<!-- js:start -->`` and ``<!-- js:end -->``::

    python bench/js_speed.py                        # 1000 digits, identity on 10,000
    python bench/js_speed.py --digits 200 --identity-digits 1000 --no-write
    python bench/js_speed.py --from-json bench/results/js_speed.json
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmd import cpu_name, replace_section  # noqa: E402
from mnistcodec.coding.api import Codec  # noqa: E402
from mnistcodec.coding.container import parse_file  # noqa: E402
from mnistcodec.coding.files import compress_to_bytes, decompress_bytes  # noqa: E402
from mnistcodec.coding.zoo import DEFAULT_MODEL, resolve_model  # noqa: E402
from mnistcodec.data import load_split  # noqa: E402
from mnistcodec.playground.web_export import export_web  # noqa: E402
from mnistcodec.storage.images import encode_png  # noqa: E402

LIBRARY = ROOT / "src" / "mnistcodec" / "web" / "mnistcodec.js"
START, END = "<!-- js:start -->", "<!-- js:end -->"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

# The measurement, the same text in Node and in the page: `bytes` holds the IDX pixels.
MEASURE_JS = """
const measure = async (m, source, pixels, single) => {
  let t = performance.now();
  const model = await m.loadModel(source);
  const load = performance.now() - t;
  const n = pixels.length / 784;
  t = performance.now();
  const mnc = model.compress(pixels);
  const encode = performance.now() - t;
  t = performance.now();
  const decoded = model.decompress(mnc);
  const decode = performance.now() - t;
  const times = [];
  for (let i = 0; i < single; i++) {
    const one = model.compress(pixels.subarray(784 * i, 784 * (i + 1)));
    const s = performance.now();
    model.decompress(one);
    times.push(performance.now() - s);
  }
  times.sort((a, b) => a - b);
  return { n, load_ms: load, encode_s: encode / 1000, decode_s: decode / 1000,
           one_digit_ms: times[times.length >> 1], one_digit_best_ms: times[0],
           file_bytes: mnc.length, decoded: decoded.count };
};
"""


def idx_bytes(images) -> bytes:
    return struct.pack(">IIII", 0x803, images.shape[0], 28, 28) + images.tobytes()


def node_speed(model_path: Path, images, single: int, tmp: Path) -> dict:
    data = tmp / "digits.idx"
    data.write_bytes(idx_bytes(images))
    script = (
        f"import * as m from {json.dumps(LIBRARY.as_uri())};"
        "import { readFileSync } from 'node:fs';"
        + MEASURE_JS
        + f"const pixels = new Uint8Array(readFileSync({json.dumps(str(data))})).subarray(16);"
        f"console.log(JSON.stringify(await measure(m, {json.dumps(str(model_path))}, pixels, {single})));"
    )
    out = subprocess.run(
        ["node", "--input-type=module", "-e", script], capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout)
    result["version"] = subprocess.run(
        ["node", "--version"], capture_output=True, text=True
    ).stdout.strip()
    return result


class Logged(SimpleHTTPRequestHandler):
    sent: list[tuple[str, int]] = []

    def log_message(self, format, *args) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:
        path = Path(self.translate_path(self.path))
        Logged.sent.append((self.path, path.stat().st_size if path.is_file() else 0))
        super().do_GET()


def chromium_speed(model: str, images, single: int, tmp: Path) -> dict:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    folder = export_web(resolve_model(model), model, tmp / "site")
    Logged.sent = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Logged, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--no-first-run",
                     f"--user-data-dir={tmp / 'profile'}"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        driver.set_script_timeout(1200)
        driver.execute_cdp_cmd(
            "Page.addScriptToEvaluateOnNewDocument",
            {
                "source": "(function poll() { if (document.body && document.body.dataset.ready"
                " === '1') { window.__readyAt = performance.now(); } else { setTimeout(poll, 1); }"
                " })();"
            },
        )
        driver.get(f"http://127.0.0.1:{server.server_address[1]}/")
        WebDriverWait(driver, 300).until(lambda d: d.execute_script("return window.__readyAt"))
        ready_ms = driver.execute_script("return window.__readyAt")
        png = base64.b64encode(encode_png(images[0])).decode()
        first_ms = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "const body = new Blob([Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0))]);"
            "const t = performance.now();"
            "api('/api/compress?' + params({ fit: 'false' }), { method: 'POST', body })"
            ".then(() => done(performance.now() - t));",
            png,
        )
        downloaded = sum(size for _, size in Logged.sent)
        files = sorted({path for path, _ in Logged.sent})
        result = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            + MEASURE_JS
            + "import('./mnistcodec.js').then(async (m) => {"
            "const pixels = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));"
            f"done(await measure(m, {json.dumps(model + '.safetensors')}, pixels, {single}));"
            "});",
            base64.b64encode(images.tobytes()).decode(),
        )
        result["version"] = driver.capabilities.get("browserVersion", "?")
    finally:
        driver.quit()
        server.shutdown()
    result.update(
        ready_ms=ready_ms, first_compress_ms=first_ms, page_bytes=downloaded, page_files=files
    )
    result["first_bits_ms"] = ready_ms + first_ms
    return result


def python_speed(model: str, images, tmp: Path) -> dict:
    n = images.shape[0]
    cli = str(Path(sys.executable).with_name("mnistcodec"))
    out = tmp / "py.mnc"
    t = time.perf_counter()
    subprocess.run([cli, "compress", model, "--split", "test", "--index", f"0:{n}", "-o", str(out),
                    "--quiet", "--force", "--precision", "fp32"], check=True, capture_output=True)  # fmt: skip
    cli_encode = time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run([cli, "decompress", model, str(out), "-o", str(tmp / "py.idx"), "--force"],
                   check=True, capture_output=True)  # fmt: skip
    cli_decode = time.perf_counter() - t
    codec = Codec.from_model(model, precision="fp32")
    t = time.perf_counter()
    data = compress_to_bytes(codec, images).data
    lib_encode = time.perf_counter() - t
    t = time.perf_counter()
    decompress_bytes(codec, data)
    lib_decode = time.perf_counter() - t
    return {"n": n, "cli_encode_s": cli_encode, "cli_decode_s": cli_decode,
            "lib_encode_s": lib_encode, "lib_decode_s": lib_decode,
            "threads": __import__("torch").get_num_threads()}  # fmt: skip


def identity(model: str, images, tmp: Path) -> dict:
    """JavaScript's files against Python's over all digits: the digits whose strings differ."""
    data = tmp / "all.idx"
    data.write_bytes(idx_bytes(images))
    out = tmp / "js-all.mnc"
    model_path = resolve_model(model).path
    subprocess.run(["node", str(LIBRARY), "compress", str(model_path), str(data), str(out)],
                   check=True, capture_output=True)  # fmt: skip
    codec = Codec.from_model(model, precision="fp32")
    js = out.read_bytes()
    py = compress_to_bytes(codec, images).data
    decompress_bytes(codec, js)  # the JavaScript file decodes in Python, every check included
    differing = []
    first = 0
    for a, b in zip(parse_file(js)[1], parse_file(py)[1], strict=True):
        differing += [
            first + i for i, (s, t) in enumerate(zip(a.strings, b.strings, strict=True)) if s != t
        ]
        first += a.count
    return {"n": int(images.shape[0]), "identical_files": js == py, "differing": differing}


def markdown(r: dict) -> str:
    node, chrome, py, ident = r["node"], r["chromium"], r["python"], r["identity"]
    n = node["n"]
    rate = lambda count, seconds: f"{count / seconds:,.0f}"  # noqa: E731
    same = ident["n"] - len(ident["differing"])
    lines = [
        START,
        "## The codec in JavaScript: Node and the browser",
        "",
        f"Written by `python bench/js_speed.py` (`bench/results/js_speed.json`): model `{r['model']}`, the first {n:,} MNIST test digits, per-digit mode at the model's reference level, on this machine ({r['cpu']}, load average {r['load_before']:.1f} before and {r['load_after']:.1f} after: other work shares its 2 cores, so wall times are upper bounds). `mnistcodec.js` runs its own float32 kernels in one thread; Python runs PyTorch (fp32, {py['threads']} threads). Decoding includes every check (the canonical-string re-encoding too) and the synthesis.",
        "",
        "| runtime | encode digits/s | decode digits/s | one digit decoded alone (median / best) | model load |",
        "| --- | --- | --- | --- | --- |",
        f"| Node {node['version']} (mnistcodec.js) | {rate(n, node['encode_s'])} | {rate(n, node['decode_s'])} | {node['one_digit_ms']:.1f} / {node['one_digit_best_ms']:.1f} ms | {node['load_ms']:.0f} ms |",
        f"| Chromium {chrome['version']} (mnistcodec.js) | {rate(n, chrome['encode_s'])} | {rate(n, chrome['decode_s'])} | {chrome['one_digit_ms']:.1f} / {chrome['one_digit_best_ms']:.1f} ms | {chrome['load_ms']:.0f} ms |",
        f"| Python CLI (`mnistcodec compress` / `decompress`, start-up included) | {rate(n, py['cli_encode_s'])} | {rate(n, py['cli_decode_s'])} | | |",
        f"| Python library in-process (`compress_to_bytes` / `decompress_bytes`) | {rate(n, py['lib_encode_s'])} | {rate(n, py['lib_decode_s'])} | | |",
        "",
        f"The exported page (`mnistcodec export {r['model']} --web DIR`, served by Python's `http.server`) downloads {chrome['page_bytes'] / 1e6:.2f} MB in {len(chrome['page_files'])} requests ({', '.join(p.lstrip('/') or 'index.html' for p in chrome['page_files'])}), all from its folder. From opening it to the first bits: {chrome['first_bits_ms']:.0f} ms (page ready with its model loaded and checked at {chrome['ready_ms']:.0f} ms, then one digit coded in the page in {chrome['first_compress_ms']:.0f} ms).",
        "",
        f"Byte-identical files: all {ident['n']:,} test digits compressed by `node mnistcodec.js compress` and by Python (fp32): {same:,} of {ident['n']:,} strings identical ({100 * same / ident['n']:.2f} %); the exceptions: {ident['differing'] or 'none'}. Python decodes the JavaScript file, every check included.",
        END,
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--digits", type=int, default=1000)
    parser.add_argument("--single", type=int, default=100, help="one-digit decodes timed")
    parser.add_argument("--identity-digits", type=int, default=10000)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--from-json")
    parser.add_argument("--markdown", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args()
    if args.from_json:
        result = json.loads(Path(args.from_json).read_text())
    else:
        if shutil.which("node") is None:
            raise SystemExit("node is not installed")
        test = load_split("test").images
        images = test[: args.digits]
        with tempfile.TemporaryDirectory() as name:
            tmp = Path(name)
            result = {"model": args.model, "load_before": os.getloadavg()[0]}
            result["cpu"] = cpu_name()
            print("node ...", flush=True)
            result["node"] = node_speed(resolve_model(args.model).path, images, args.single, tmp)
            print("chromium ...", flush=True)
            result["chromium"] = chromium_speed(args.model, images, args.single, tmp)
            print("python ...", flush=True)
            result["python"] = python_speed(args.model, images, tmp)
            print("identity ...", flush=True)
            result["identity"] = identity(args.model, test[: args.identity_digits], tmp)
            result["load_after"] = os.getloadavg()[0]
            result["platform"] = platform.platform()
    print(json.dumps({k: v for k, v in result.items() if k != "identity"}, indent=1))
    print(f"identity: {len(result['identity']['differing'])} of {result['identity']['n']} differ")
    if not args.no_write and not args.from_json:
        out = ROOT / "bench" / "results" / "js_speed.json"
        out.write_text(json.dumps(result, indent=1) + "\n")
    if not args.no_write:
        replace_section(Path(args.markdown), START, END, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
