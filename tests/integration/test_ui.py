"""The page for people in a real browser: Debian's headless Chromium, driven by
Selenium, against a real web server and worker (API keys on). Without a key the
API's 401 is shown; with one, the sample receipt is read, one box is drawn per
result line, scaled onto the displayed image, the text is the API's, a line and
its box select each other (the arrow keys move along the lines), and the models
table shows every model READY.

Needs the apt packages chromium and chromium-driver (scripts/test installs them).
The driver's path is given, so Selenium Manager never looks for (or downloads) one.
Set OCRQ_UI_SCREENSHOT=/tmp/ocrq-ui.png to keep a screenshot of the page at the end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from ocrq.names import ModelKind
from ocrq.storage.keys import create_key
from tests.integration.conftest import Stack

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "receipt.png"
CHROMIUM = Path(os.environ.get("OCRQ_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("OCRQ_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"))
WAIT_S = 120  # a job on the stack's one CPU worker takes a few seconds


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[WebDriver]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    assert not missing, f"{missing} not found: apt-get install chromium chromium-driver"
    monkeypatch.setenv("SE_OFFLINE", "true")  # and never ask the network for a driver
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # --no-sandbox: CI runs as root in containers, where Chromium's sandbox cannot start.
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1400,1200", "--lang=en"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options,
                              service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def rect(driver: WebDriver, el: WebElement) -> dict[str, float]:
    return driver.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "return {left: r.left, top: r.top, width: r.width, height: r.height};", el)


def box(driver: WebDriver, i: int) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, f'#boxes polygon[data-index="{i}"]')


def upload(driver: WebDriver, wait: WebDriverWait) -> None:
    """Choose the sample in the file input; wait until boxes or an error show."""
    driver.find_element(By.ID, "file").send_keys(str(SAMPLE))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#boxes polygon.box")
               or d.find_element(By.ID, "error").is_displayed())


def assert_boxes_on_the_image(driver: WebDriver, page: dict[str, Any]) -> None:
    """Each box sits on its polygon, scaled from the submitted image to the displayed one."""
    img = rect(driver, driver.find_element(By.ID, "page-image"))
    scale = img["width"] / page["width"]
    assert abs(img["height"] / page["height"] - scale) < 0.01
    for i, line in enumerate(page["lines"]):
        xs, ys = [p[0] for p in line["polygon"]], [p[1] for p in line["polygon"]]
        got = rect(driver, box(driver, i))
        want = (img["left"] + min(xs) * scale, img["top"] + min(ys) * scale,
                (max(xs) - min(xs)) * scale, (max(ys) - min(ys)) * scale)
        # The bounding box of a polygon; strokes (non-scaling, 1.5-3 px) are not counted.
        for g, w in zip((got["left"], got["top"], got["width"], got["height"]), want,
                        strict=True):
            assert abs(g - w) <= 1.5, (i, line["text"], got, want)


def models_ready(driver: WebDriver) -> set[str]:
    """Models shown READY and active; then a refresh (its rows read at the next call)."""
    rows = driver.execute_script(  # in one call: a refresh replaces the rows
        "return [...document.querySelectorAll('#model-status tbody tr')]"
        ".map(tr => [...tr.cells].map(td => td.textContent));")
    driver.find_element(By.ID, "refresh-status").click()
    return {cells[1] for cells in rows
            if len(cells) == 6 and cells[3] == "READY" and "(active)" in cells[2]}


def test_the_page_reads_the_sample_receipt(stack: Stack, browser: WebDriver) -> None:
    stack.reset()
    base = stack.web(auth="keys")
    _, token = create_key(stack.services.db, "acme", label="the web page test")
    wait = WebDriverWait(browser, WAIT_S, poll_frequency=0.2)
    browser.get(f"{base}/")

    # No key yet: the API's 401, from its JSON error body; the key field is there.
    upload(browser, wait)
    error = browser.find_element(By.ID, "error")
    assert error.is_displayed() and "(unauthorized)" in error.text, error.text
    key = browser.find_element(By.ID, "api-key")
    assert key.is_displayed() and browser.switch_to.active_element == key

    key.send_keys(token)
    upload(browser, wait)
    seen = datetime.now(UTC)  # the boxes are drawn (the wait polls every 0.2 s)
    assert not browser.find_element(By.ID, "error").is_displayed()
    job_id = browser.find_element(By.ID, "job").get_attribute("data-id")
    status = requests.get(f"{base}/v1/jobs/{job_id}", timeout=10,
                          headers={"Authorization": f"Bearer {token}"}).json()
    finished = datetime.fromisoformat(status["finished_at"].replace("Z", "+00:00"))
    # Issue 15: boxes and text within 2 s of the job finishing (same machine, same clock).
    assert (seen - finished).total_seconds() <= 2.0, (seen, finished)
    resp = requests.get(f"{base}/v1/jobs/{job_id}/result", timeout=10,
                        headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.text
    page = resp.json()
    page["lines"].sort(key=lambda line: line["order"])
    assert len(page["lines"]) >= 10

    boxes = browser.find_elements(By.CSS_SELECTOR, "#boxes polygon.box")
    lines = browser.find_elements(By.CSS_SELECTOR, "#lines button.line")
    assert len(boxes) == len(lines) == len(page["lines"])
    assert [b.get_property("textContent") for b in lines] == [
        line["text"] for line in page["lines"]]
    assert browser.find_element(By.ID, "job-progress").get_property("value") == 1
    assert_boxes_on_the_image(browser, page)

    # A line selects its box; a box selects its line (and focuses it); one at a time.
    lines[3].click()
    assert "selected" in box(browser, 3).get_attribute("class").split()
    assert lines[3].get_attribute("aria-pressed") == "true"
    box(browser, 5).click()
    assert "selected" in box(browser, 5).get_attribute("class").split()
    assert "selected" not in box(browser, 3).get_attribute("class").split()
    assert browser.switch_to.active_element == lines[5]
    assert browser.find_elements(By.CSS_SELECTOR, "#boxes polygon.selected") == [box(browser, 5)]
    browser.switch_to.active_element.send_keys(Keys.ARROW_DOWN)  # the keyboard moves on
    assert browser.switch_to.active_element == lines[6]
    assert browser.find_elements(By.CSS_SELECTOR, "#boxes polygon.selected") == [box(browser, 6)]

    kinds = {kind.value for kind in ModelKind}
    WebDriverWait(browser, 30, poll_frequency=1).until(lambda d: models_ready(d) >= kinds)
    workers = browser.find_element(By.ID, "cluster-workers").text
    assert f"test-mariadb-cpu-{os.getpid()}@localhost" in workers, workers

    if os.environ.get("OCRQ_UI_SCREENSHOT"):  # the whole page, for a person to look at
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1400, height + 150)
        browser.save_screenshot(os.environ["OCRQ_UI_SCREENSHOT"])
