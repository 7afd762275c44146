"""The playground's page in a real browser: headless Chromium driven by Selenium.

Debian's ``chromium`` and ``chromium-driver`` must be installed
(``scripts/setup.sh --test`` installs them when run as root); without them
this test fails, it is not skipped. Selenium is given the driver's path, so
it never looks for (or downloads) a driver of its own. A screenshot of each
state is written to ``$MNISTCODEC_TEST_OUTPUT/playground`` (default
``test-output/playground`` in the repository), and the test prints where.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ROOT = Path(__file__).resolve().parents[1]
WAIT_S = 30


def output_dir() -> Path:
    base = os.environ.get("MNISTCODEC_TEST_OUTPUT")
    path = (Path(base) if base else ROOT / "test-output") / "playground"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture()
def browser(tmp_path):
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    assert not missing, (
        f"{', '.join(missing)} missing: install Debian's chromium and chromium-driver "
        "(bash scripts/setup.sh --test as root, or apt-get install chromium chromium-driver)"
    )
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
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(argument)
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


def test_draw_change_the_rate_and_sample(browser, playground_url):
    shots = output_dir()
    wait = WebDriverWait(browser, WAIT_S)
    browser.get(playground_url + "/")
    wait.until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
    assert text_of(browser, "bits") == "–"

    draw_stroke(browser)
    wait.until(lambda d: text_of(d, "bits").isdigit())
    first_bits, first_hex = int(text_of(browser, "bits")), text_of(browser, "hex")
    # The string shown bit by bit: as many 0s and 1s as its length, the last a 1.
    assert first_bits > 0 and len(first_hex) == first_bits and set(first_hex) <= {"0", "1"}
    assert first_hex.endswith("1")
    assert float(text_of(browser, "psnr")) > 0
    assert "level 10" in text_of(browser, "level-label")
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
    browser.save_screenshot(str(shots / "3-sampled.png"))

    index = browser.find_element(By.ID, "test-index")
    index.clear()
    index.send_keys("3")
    browser.find_element(By.ID, "test-button").click()
    wait.until(lambda d: "test digit 3" in text_of(d, "status"))
    wait.until(lambda d: "level 0" in text_of(d, "status"))
    assert text_of(browser, "bits").isdigit()
    browser.save_screenshot(str(shots / "4-test-digit.png"))
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors
    print(f"playground screenshots in {shots}")
