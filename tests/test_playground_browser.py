"""The playground's page in a real browser: headless Chromium driven by Selenium.

Debian's ``chromium`` and ``chromium-driver`` must be installed
(``scripts/setup.sh --test`` installs them when run as root); without them
this test fails, it is not skipped. Selenium is given the driver's path, so
it never looks for (or downloads) a driver of its own. A screenshot of each
state is written to ``$MNISTCODEC_TEST_OUTPUT/playground`` (default
``test-output/playground`` in the repository), and the test prints where.
Besides drawing, the rate and sampling, the tests cover the empty states (no
broken-image icon, nothing of an old digit after Clear), the panels that follow
the model, a dropped ``.mnc`` file, the API page's Markdown and a 420-pixel-wide
window.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from mnistcodec.coding.engine import DECODER_PIXEL_SHARE
from mnistcodec.coding.zoo import DEFAULT_MODEL, resolve_model

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ROOT = Path(__file__).resolve().parents[1]
GOLDEN_DIR = ROOT / "tests" / "golden"
WAIT_S = 60

#: Images a visitor sees as broken: shown (laid out, not hidden) with no loaded picture.
BROKEN_IMAGES = """
return [...document.images].filter((img) => img.getClientRects().length
  && getComputedStyle(img).visibility !== "hidden"
  && (!img.getAttribute("src") || (img.complete && img.naturalWidth === 0))).map((img) => img.id || img.alt);
"""


def output_dir() -> Path:
    base = os.environ.get("MNISTCODEC_TEST_OUTPUT")
    path = (Path(base) if base else ROOT / "test-output") / "playground"
    path.mkdir(parents=True, exist_ok=True)
    return path


def chromium_options(profile: Path) -> webdriver.ChromeOptions:
    """Headless Debian Chromium for the page tests, with a fresh profile in ``profile``."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,1600",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    return options


@pytest.fixture()
def browser(tmp_path):
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    assert not missing, (
        f"{', '.join(missing)} missing: install Debian's chromium and chromium-driver "
        "(bash scripts/setup.sh --test as root, or apt-get install chromium chromium-driver)"
    )
    options = chromium_options(tmp_path / "chromium-profile")
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def text_of(driver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def draw_stroke(driver) -> None:
    """A '7' on the canvas: a pointer pressed, moved in steps, released."""
    canvas = driver.find_element(By.ID, "canvas")
    actions = ActionChains(driver, duration=20)
    actions.move_to_element_with_offset(canvas, -60, -80).click_and_hold()
    for dx, dy in [(30, 0)] * 4 + [(-12, 30)] * 6:
        actions.move_by_offset(dx, dy)
    actions.release().perform()


def open_page(browser, playground_url) -> WebDriverWait:
    wait = WebDriverWait(browser, WAIT_S)
    browser.get(playground_url + "/")
    wait.until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
    return wait


def sample_requests(driver) -> list[str]:
    """The URLs of the page's sample requests so far, oldest first."""
    return driver.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name)"
        ".filter((name) => name.includes('/api/sample'))"
    )


def read_idx_digit(path: Path, index: int) -> list[list[int]]:
    data = path.read_bytes()
    _, count, rows, cols = struct.unpack(">IIII", data[:16])
    start = 16 + index * rows * cols
    return [list(data[start + r * cols : start + (r + 1) * cols]) for r in range(rows)]


def test_draw_change_the_rate_and_sample(browser, playground_url):
    shots = output_dir()
    wait = open_page(browser, playground_url)
    assert text_of(browser, "bits") == "–"
    assert browser.execute_script(BROKEN_IMAGES) == []
    browser.save_screenshot(str(shots / "0-loaded.png"))

    draw_stroke(browser)
    wait.until(lambda d: text_of(d, "bits").isdigit())
    first_bits, first_hex = int(text_of(browser, "bits")), text_of(browser, "hex")
    # The string shown bit by bit: as many 0s and 1s as its length, the last a 1.
    assert first_bits > 0 and len(first_hex) == first_bits and set(first_hex) <= {"0", "1"}
    assert first_hex.endswith("1")
    assert float(text_of(browser, "psnr")) > 0
    # The page starts at the default model's reference level.
    reference = resolve_model(DEFAULT_MODEL).model.reference_level
    assert f"level {reference} " in text_of(browser, "level-label")
    assert browser.find_elements(By.CSS_SELECTOR, "#latent-chart svg circle")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#classical tbody tr"))
    browser.save_screenshot(str(shots / "1-drawn.png"))

    shown = browser.execute_script("return document.body.dataset.compressed")
    slider = browser.find_element(By.ID, "level-slider")
    slider.send_keys(Keys.HOME)  # the lowest rate
    wait.until(lambda d: d.execute_script("return document.body.dataset.compressed") != shown)
    wait.until(lambda d: text_of(d, "bits").isdigit() and int(text_of(d, "bits")) < first_bits)
    assert "level 0" in text_of(browser, "level-label")
    assert text_of(browser, "hex") != first_hex
    browser.save_screenshot(str(shots / "2-lowest-rate.png"))

    browser.find_element(By.ID, "seed").clear()
    browser.find_element(By.ID, "seed").send_keys("7")
    browser.find_element(By.ID, "sample-button").click()
    wait.until(lambda d: d.find_element(By.ID, "samples").get_attribute("data-seed") == "7")
    size = browser.execute_script(
        "const i = document.getElementById('samples'); return [i.naturalWidth, i.naturalHeight]"
    )
    assert size == [4 * 28 + 3 * 2, 4 * 28 + 3 * 2]  # 16 digits in a 4x4 grid, 2-pixel gaps
    # Sampling follows the slider (level 0 now) and says so.
    assert "level=0" in sample_requests(browser)[-1]
    assert browser.find_element(By.ID, "samples").get_attribute("data-level") == "0"
    assert "level 0" in text_of(browser, "samples-caption")
    browser.save_screenshot(str(shots / "3-sampled.png"))

    index = browser.find_element(By.ID, "test-index")
    index.clear()
    index.send_keys("3")
    browser.find_element(By.ID, "test-button").click()
    wait.until(lambda d: "test digit 3" in text_of(d, "status"))
    wait.until(lambda d: "level 0" in text_of(d, "status"))
    assert text_of(browser, "bits").isdigit()
    browser.save_screenshot(str(shots / "4-test-digit.png"))

    # Clear: every output empty, nothing of the old digit left, no broken image.
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#classical tbody tr"))
    browser.find_element(By.ID, "clear-button").click()
    assert text_of(browser, "bits") == "–" and text_of(browser, "psnr") == "–"
    assert not browser.find_elements(By.CSS_SELECTOR, "#latent-chart svg")
    assert not browser.find_elements(By.CSS_SELECTOR, "#classical table")
    assert browser.execute_script(BROKEN_IMAGES) == []
    browser.save_screenshot(str(shots / "5-cleared.png"))

    # Another model: the random digits are that model's, never the previous one's.
    select = browser.find_element(By.ID, "model-select")
    current = select.get_attribute("value")
    other = next(
        o.get_attribute("value")
        for o in select.find_elements(By.TAG_NAME, "option")
        if o.get_attribute("value") != current
    )
    browser.execute_script(
        "const s = arguments[0]; s.value = arguments[1]; s.dispatchEvent(new Event('change'))",
        select,
        other,
    )
    wait.until(lambda d: d.find_element(By.ID, "samples").get_attribute("data-model") == other)
    assert other in text_of(browser, "samples-caption")
    assert f"model={other}" in sample_requests(browser)[-1]
    browser.save_screenshot(str(shots / "6-other-model.png"))
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors
    print(f"playground screenshots in {shots}")


def test_a_dropped_mnc_file_takes_over_the_top_panels(browser, playground_url):
    shots = output_dir()
    wait = open_page(browser, playground_url)
    draw_stroke(browser)
    wait.until(lambda d: text_of(d, "bits").isdigit())
    golden = GOLDEN_DIR / "seed-lmbda2000.v3.per-digit.mnc"
    browser.find_element(By.ID, "upload").send_keys(str(golden))
    wait.until(lambda d: d.execute_script("return document.body.dataset.decoded") == golden.name)
    # The drawing's figures are gone; the file's first digit is on the canvas, as the server's
    # decoder (its engine chosen by calibration) gives it: within the conformance rule.
    assert text_of(browser, "bits") == "–"
    assert not browser.find_elements(By.CSS_SELECTOR, "#latent-chart svg")
    canvas = browser.execute_script(
        "const c = document.getElementById('canvas').getContext('2d');"
        "const rows = [];"
        "for (let r = 0; r < 28; r++) { const row = [];"
        "  for (let q = 0; q < 28; q++) row.push(c.getImageData(10 * q + 5, 10 * r + 5, 1, 1).data[0]);"
        "  rows.push(row); }"
        "return rows;"
    )
    expected = read_idx_digit(GOLDEN_DIR / "seed-lmbda2000.decoded.idx", 0)
    pairs = list(zip(sum(canvas, []), sum(expected, []), strict=True))
    within = sum(abs(a - b) <= 1 for a, b in pairs) / len(pairs)
    assert within >= DECODER_PIXEL_SHARE and max(abs(a - b) for a, b in pairs) <= 8
    # All the file's digits, at the top of the page: visible without scrolling.
    box = browser.execute_script(
        "const img = document.getElementById('decoded-img'); const r = img.getBoundingClientRect();"
        "return [r.top, r.bottom, r.width, window.innerHeight, img.naturalWidth];"
    )
    top, bottom, width, height, natural = box
    assert natural > 28 and width >= 2 * natural and 0 <= top and bottom <= height
    assert "24 digits" in text_of(browser, "decoded-caption")
    assert browser.execute_script(BROKEN_IMAGES) == []
    browser.save_screenshot(str(shots / "7-dropped-mnc.png"))

    # Drawing again hides the file's digits.
    draw_stroke(browser)
    wait.until(lambda d: text_of(d, "bits").isdigit())
    assert not browser.find_element(By.ID, "decoded-panel").is_displayed()


def test_a_narrow_window_keeps_the_table_and_the_chart_readable(browser, playground_url):
    shots = output_dir()
    browser.set_window_size(420, 1600)
    wait = open_page(browser, playground_url)
    assert browser.execute_script("return window.innerWidth") <= 420
    draw_stroke(browser)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#classical tbody tr"))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#latent-chart svg"))
    layout = browser.execute_script(
        "const box = document.getElementById('classical').getBoundingClientRect();"
        "const cells = [...document.querySelectorAll('#classical th, #classical td')];"
        "const svgs = [...document.querySelectorAll('#latent-chart svg')];"
        "return {right: box.right, page: document.documentElement.scrollWidth, width: window.innerWidth,"
        " cells: cells.map((c) => c.getBoundingClientRect().right),"
        " headers: cells.filter((c) => c.tagName === 'TH').map((c) => c.textContent),"
        " scales: svgs.map((s) => s.getBoundingClientRect().width / s.viewBox.baseVal.width),"
        " chart: svgs.map((s) => s.getBoundingClientRect().right)};"
    )
    # Every column (PSNR and MAD included) within the panel, no sideways scrolling.
    assert {"PSNR", "MAD"} <= set(layout["headers"])
    assert max(layout["cells"]) <= layout["right"] + 0.5
    assert layout["page"] <= layout["width"]
    # The chart at its own size (its 10-pixel labels stay 10 pixels), in rows that fit.
    assert len(layout["scales"]) > 1 and min(layout["scales"]) > 0.99
    assert max(layout["chart"]) <= layout["width"]
    browser.save_screenshot(str(shots / "8-narrow.png"))
    for element_id, name in [
        ("latents", "8-narrow-latents.png"),
        ("classical", "8-narrow-table.png"),
    ]:
        browser.execute_script(
            "arguments[0].scrollIntoView()", browser.find_element(By.ID, element_id)
        )
        browser.save_screenshot(str(shots / name))


def test_the_api_page_renders_markdown(browser, playground_url):
    wait = WebDriverWait(browser, WAIT_S)
    browser.get(playground_url + "/docs")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#operations .op"))
    text = text_of(browser, "operations") + text_of(browser, "description")
    assert "`" not in text and "**" not in text
    assert browser.find_elements(By.CSS_SELECTOR, "#operations p code")
    browser.save_screenshot(str(output_dir() / "9-api-docs.png"))
