"""The static playground (``mnistcodec export MODEL --web DIR``) in headless Chromium, no server.

The exported folder is served by Python's plain static file server, which
logs every path asked for; the page must ask only for files of the folder. Driven
like tests/test_playground_browser.py: a digit drawn gets bits, the rate
slider changes them, random digits appear, the ``.mnc`` of the drawing is
downloaded and decodes with ``mnistcodec decompress`` to the digit the page
showed, a ``.mnc`` file dropped on the page is decoded, and a bad file gets the
library's error. Screenshots go to ``$MNISTCODEC_TEST_OUTPUT/web-export``
(default ``test-output/web-export``).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import json
import os
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from mnistcodec.cli import main
from mnistcodec.coding.api import Codec
from mnistcodec.coding.files import decompress_bytes
from test_playground_browser import CHROMEDRIVER, chromium_options, draw_stroke, text_of

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
MODEL = "vr-mixture"
#: A model of format version 2: levels 0-4 are codebooks (a digit is one codeword's index).
CODEBOOK_MODEL = "vr-codebook"
WAIT_S = 60


def output_dir() -> Path:
    base = os.environ.get("MNISTCODEC_TEST_OUTPUT")
    path = (Path(base) if base else ROOT / "test-output") / "web-export"
    path.mkdir(parents=True, exist_ok=True)
    return path


class LoggingHandler(SimpleHTTPRequestHandler):
    requested: list[str] = []

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass

    def do_GET(self) -> None:
        LoggingHandler.requested.append(self.path)
        super().do_GET()


@contextlib.contextmanager
def exported_site(tmp_path, model: str):
    """``model`` exported, served on a free port: ``(url, folder, requested paths)``."""
    folder = tmp_path / "site"
    assert main(["export", model, "--web", str(folder)]) == 0
    LoggingHandler.requested = []
    handler = functools.partial(LoggingHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder, LoggingHandler.requested
    finally:
        server.shutdown()


@pytest.fixture()
def site(tmp_path):
    with exported_site(tmp_path, MODEL) as served:
        yield served


@pytest.fixture()
def codebook_site(tmp_path):
    with exported_site(tmp_path, CODEBOOK_MODEL) as served:
        yield served


@pytest.fixture()
def browser(tmp_path):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options = chromium_options(tmp_path / "chromium-profile")
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def drop_file(driver, name: str, data: bytes) -> None:
    """A file dropped on the page (a synthetic drop event carrying it)."""
    driver.execute_script(
        """
        const bytes = Uint8Array.from(atob(arguments[1]), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], arguments[0]));
        document.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true }));
        """,
        name,
        base64.b64encode(data).decode(),
    )


def shown_digit(driver, element_id: str) -> np.ndarray:
    """The 28x28 digit an <img> of the page shows (its PNG data URL)."""
    src = driver.find_element(By.ID, element_id).get_attribute("src")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("L"))


def test_the_exported_page_codes_in_the_browser(site, browser, tmp_path):
    url, folder, requested = site
    shots = output_dir()
    wait = WebDriverWait(browser, WAIT_S)
    browser.get(url + "/")
    wait.until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))

    draw_stroke(browser)
    wait.until(lambda d: text_of(d, "bits").isdigit())
    first_bits, first_binary = int(text_of(browser, "bits")), text_of(browser, "hex")
    assert first_bits > 0 and len(first_binary) == first_bits and first_binary.endswith("1")
    assert float(text_of(browser, "psnr")) > 0
    assert browser.find_elements(By.CSS_SELECTOR, "#latent-chart svg circle")
    browser.save_screenshot(str(shots / "1-drawn.png"))

    # The .mnc of the drawing, downloaded, decodes in Python to the digit the page shows.
    browser.find_element(By.ID, "download-button").click()
    target = browser.downloads / "digit.mnc"
    wait.until(lambda d: target.is_file() and target.stat().st_size > 70)
    time.sleep(0.5)
    data = target.read_bytes()
    decoded_path = tmp_path / "decoded"
    assert main(["decompress", MODEL, str(target), "--out", str(decoded_path) + ".idx"]) == 0
    decoded = decompress_bytes(Codec.from_model(MODEL, precision="fp32"), data)
    page_digit = shown_digit(browser, "recon-img")
    assert np.abs(decoded[0].astype(int) - page_digit).max() <= 1

    shown = browser.execute_script("return document.body.dataset.compressed")
    browser.find_element(By.ID, "level-slider").send_keys(Keys.HOME)
    wait.until(lambda d: d.execute_script("return document.body.dataset.compressed") != shown)
    wait.until(lambda d: text_of(d, "bits").isdigit() and int(text_of(d, "bits")) < first_bits)
    assert "level 0" in text_of(browser, "level-label")
    browser.save_screenshot(str(shots / "2-lowest-rate.png"))

    browser.find_element(By.ID, "seed").clear()
    browser.find_element(By.ID, "seed").send_keys("7")
    browser.find_element(By.ID, "sample-button").click()
    wait.until(lambda d: d.find_element(By.ID, "samples").get_attribute("data-seed") == "7")
    size = browser.execute_script(
        "const i = document.getElementById('samples'); return [i.naturalWidth, i.naturalHeight]"
    )
    assert size == [4 * 28 + 3 * 2, 4 * 28 + 3 * 2]
    browser.save_screenshot(str(shots / "3-sampled.png"))

    golden = (GOLDEN / f"{MODEL}.v3.per-digit.mnc").read_bytes()
    drop_file(browser, "golden.mnc", golden)
    wait.until(lambda d: "24 digits" in text_of(d, "decoded-caption"))
    expected = np.fromfile(GOLDEN / f"{MODEL}.decoded.idx", np.uint8)[16:].reshape(-1, 28, 28)
    assert np.abs(shown_digit(browser, "recon-img").astype(int) - expected[0]).max() <= 1
    browser.save_screenshot(str(shots / "4-dropped-mnc.png"))

    bad = bytearray(golden)
    bad[100] ^= 1
    drop_file(browser, "bad.mnc", bytes(bad))
    wait.until(lambda d: "checksum mismatch" in text_of(d, "status"))

    timing = browser.execute_script(
        "const m = await import('./mnistcodec.js');"
        "const model = await m.loadModel('vr-mixture.safetensors');"
        "const bytes = Uint8Array.from(arguments[0], (c) => c.charCodeAt(0));"
        "const t = performance.now(); const r = model.decompress(bytes);"
        "return [r.count, performance.now() - t];",
        golden.decode("latin-1"),
    )
    assert timing[0] == 24

    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors
    files = {p.name for p in folder.iterdir()}
    asked = {path.split("?")[0].lstrip("/") or "index.html" for path in requested}
    assert asked <= files, f"requests outside the folder: {asked - files}"
    assert {"index.html", "mnistcodec.js", "backend.js", "manifest.json"} <= asked
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["models"][0]["file"] in asked
    print(f"web export screenshots in {shots}; {timing[1]:.1f} ms to decode 24 digits")


def test_the_exported_page_codes_at_a_codebook_level(codebook_site, browser):
    """vr-codebook in the page: level 0 sends a codeword's index, decoded by lookup."""
    url, _, _ = codebook_site
    wait = WebDriverWait(browser, WAIT_S)
    browser.get(url + "/")
    wait.until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
    draw_stroke(browser)
    wait.until(lambda d: text_of(d, "bits").isdigit())
    shown = browser.execute_script("return document.body.dataset.compressed")
    browser.find_element(By.ID, "level-slider").send_keys(Keys.HOME)
    wait.until(lambda d: d.execute_script("return document.body.dataset.compressed") != shown)
    wait.until(lambda d: text_of(d, "bits").isdigit())
    assert "level 0" in text_of(browser, "level-label")
    assert 0 < int(text_of(browser, "bits")) <= 16  # one index of 16 codewords
    assert "this level is a codebook" in text_of(browser, "latent-chart")
    codewords = Codec.from_model(CODEBOOK_MODEL).loaded.codebooks[0].codewords
    page_digit = shown_digit(browser, "recon-img")
    assert any(np.array_equal(page_digit, word) for word in codewords)
    browser.find_element(By.ID, "download-button").click()
    target = browser.downloads / "digit.mnc"
    wait.until(lambda d: target.is_file() and target.stat().st_size > 66)
    time.sleep(0.5)
    decoded = decompress_bytes(Codec.from_model(CODEBOOK_MODEL), target.read_bytes())
    assert np.array_equal(decoded[0], page_digit)
    browser.find_element(By.ID, "seed").clear()
    browser.find_element(By.ID, "seed").send_keys("3")
    browser.find_element(By.ID, "sample-button").click()
    wait.until(lambda d: d.find_element(By.ID, "samples").get_attribute("data-seed") == "3")
    assert browser.find_element(By.ID, "samples").get_attribute("data-level") == "0"
    browser.save_screenshot(str(output_dir() / "5-codebook-level.png"))
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors


def test_the_export_refuses_unknown_models_and_existing_targets(tmp_path, capsys):
    assert main(["export", "no-such-model", "--web", str(tmp_path / "a")]) != 0
    assert "no model file" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("keep me")
    assert main(["export", MODEL, "--web", str(tmp_path / "full")]) != 0
    assert "already exists" in capsys.readouterr().err
    assert main(["export", MODEL, "--web", str(tmp_path / "full"), "--force"]) != 0
    assert "holds no mnistcodec web export" in capsys.readouterr().err
    assert (tmp_path / "full" / "notes.txt").read_text() == "keep me"
    out = tmp_path / "site"
    assert main(["export", MODEL, "--web", str(out)]) == 0
    assert main(["export", "vr", "--web", str(out)]) != 0
    assert main(["export", "vr", "--web", str(out), "--force"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["default"] == "vr" and {p.name for p in out.iterdir()} == {
        "index.html",
        "mnistcodec.js",
        "backend.js",
        "vr.safetensors",
        "manifest.json",
    }
    assert (out / "vr.safetensors").read_bytes() == Codec.from_model("vr").loaded.path.read_bytes()
