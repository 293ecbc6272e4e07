"""report.html in a real headless Chromium: the verdict and every chart are visible, nothing is fetched, nothing errs.

Chromium and chromedriver are Debian packages (.ci/system-deps installs them); the tests skip only where they are
genuinely absent. Screenshots land in the test's tmp folder; set BDSCAN_SCREENSHOT_DIR to keep them.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from bdscan.report.html import render_html
from tests.conftest import EXAMPLES
from tests.report.sample_docs import make_bare_clean_doc, make_clean_doc, make_scan_doc

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
CHROMEDRIVER = shutil.which("chromedriver")
needs_chromium = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                                    reason="chromium and chromium-driver are not installed (.ci/system-deps)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1100,900"]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager look for a driver online
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in FLAGS + [f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def visit(driver, page: Path, shot: Path) -> tuple[list[str], list[dict]]:
    """Open ``page``; return the URLs it requested and its SEVERE console entries, and save a full-page screenshot."""
    driver.get_log("performance"), driver.get_log("browser")  # drop whatever an earlier page left
    driver.get(page.as_uri())
    driver.execute_script("return document.fonts.ready")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1100, min(int(height) + 40, 12000))
    assert driver.save_screenshot(str(shot))
    keep = os.environ.get("BDSCAN_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)
    requests = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] in ("Network.requestWillBeSent", "Network.webSocketCreated"):
            requests.append(msg["params"].get("request", msg["params"]).get("url"))
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    return requests, severe


def check_page(driver, tmp_path: Path, doc: dict | None, verdict: str, charts: list[str], images: int,
               page: Path | None = None) -> None:
    from PIL import Image
    from selenium.webdriver.common.by import By

    if page is None:
        page = tmp_path / "report.html"
        page.write_text(render_html(doc), encoding="utf-8")
    shot = tmp_path / f"{tmp_path.name}.png"
    requests, severe = visit(driver, page, shot)
    # inlined images show up as data: requests, which never leave the page
    assert [u for u in requests if u != page.as_uri() and not u.startswith("data:")] == []
    assert requests[0] == page.as_uri()
    assert severe == [], severe
    box = driver.find_element(By.ID, "verdict")
    assert box.is_displayed() and box.text.splitlines()[0] == verdict
    assert box.location["y"] < 200  # the verdict comes first
    found = driver.find_elements(By.CSS_SELECTOR, "figure.chart")
    assert [f.get_attribute("id") for f in found] == charts
    for fig in found:
        svg = fig.find_element(By.TAG_NAME, "svg")
        assert fig.is_displayed() and svg.is_displayed(), fig.get_attribute("id")
        assert svg.size["width"] > 200 and svg.size["height"] > 100, (fig.get_attribute("id"), svg.size)
        # the chart drew something: bars, lines or histogram steps, and readable text
        assert driver.execute_script("return arguments[0].querySelectorAll('path').length", svg) > 5
        assert driver.execute_script("return arguments[0].querySelectorAll('text').length", svg) > 3
    imgs = driver.find_elements(By.CSS_SELECTOR, "img")
    assert len(imgs) == images
    for img in imgs:
        assert img.is_displayed()
        assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) == 28
    with Image.open(shot) as im:
        assert im.size[0] == 1100 and im.size[1] > 600
        assert len(im.convert("RGB").getcolors(1 << 20) or range(1 << 20)) > 50  # not a blank page


@needs_chromium
def test_clean_report_in_chromium(browser, tmp_path):
    check_page(browser, tmp_path, make_clean_doc(), "Backdoor removed",
               ["chart-asr", "chart-per-class", "chart-ratios", "chart-units", "chart-repair", "chart-timings"], 5)


@needs_chromium
def test_no_backdoor_found_report_in_chromium(browser, tmp_path):
    check_page(browser, tmp_path, make_bare_clean_doc(), "No backdoor found", ["chart-anomaly", "chart-timings"], 0)


@needs_chromium
def test_scan_report_in_chromium(browser, tmp_path):
    check_page(browser, tmp_path, make_scan_doc(), "Backdoor suspected in 1 of 2 model(s)",
               ["chart-anomaly-0", "chart-anomaly-1", "chart-timings"], 2)


@needs_chromium
def test_the_checks_do_see_requests_and_errors(browser, tmp_path):
    """Control: a page that fetches and fails is caught, so the empty lists above mean something."""
    page = tmp_path / "leaky.html"
    page.write_text('<!doctype html><title>x</title><img src="http://127.0.0.1:9/x.png">'
                    "<script>console.error('boom')</script>", encoding="utf-8")
    requests, severe = visit(browser, page, tmp_path / "leaky.png")
    assert "http://127.0.0.1:9/x.png" in requests
    assert any("boom" in e["message"] for e in severe)


def write_triggered_samples(folder: Path, per_class: int = 2) -> Path:
    """The bundled backdoored model's real trigger stamped on a few samples of every class but the target."""
    import numpy as np
    import torch
    from PIL import Image

    from bdscan.data import save_image
    from bdscan.lab.zoo import load_attack
    from bdscan.model import load_model

    model = EXAMPLES / "models" / "badnets-cnn.safetensors"
    attack = load_attack(model, load_model(model).spec)
    for k in range(1, 10):
        (folder / str(k)).mkdir(parents=True)
        for i, f in enumerate(sorted((EXAMPLES / "samples" / str(k)).glob("*.png"))[:per_class]):
            x = torch.from_numpy(np.asarray(Image.open(f).convert("L"), dtype=np.float32) / 255)[None]
            save_image(attack.apply(x), folder / str(k) / f"{i}.png")
    return folder


@pytest.mark.slow
@needs_chromium
def test_report_written_by_bdscan_clean_in_chromium(browser, tmp_path):
    """The real thing: bdscan clean on the bundled example writes report.html, and Chromium shows it whole."""
    from typer.testing import CliRunner

    from bdscan.cli.app import app

    trig = write_triggered_samples(tmp_path / "triggered")
    out = tmp_path / "out"
    args = ["clean", str(EXAMPLES / "models" / "badnets-cnn.safetensors"), "--samples", str(EXAMPLES / "samples"),
            "--trigger-samples", str(trig), "--alpha", "2.5", "--lambda", "0", "--epochs", "1", "--out", str(out),
            "--format", "json", "--device", "cpu"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code in (0, 1), r.output
    doc = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert doc["mode"] == "bdk"
    charts = ["chart-asr", "chart-per-class"]
    charts += ["chart-ratios"] if doc["edit"]["ratio_histograms"] else []
    charts += ["chart-units"] if doc["edit"]["units_per_layer"] else []
    charts += ["chart-repair"] if doc["repair"] and doc["repair"]["history"] else []
    verdict = {"removed": "Backdoor removed", "not_removed": "Backdoor NOT removed"}[doc["verdict"]]
    # BDK synthesises a trigger too: its mask and pattern are shown beside the examples
    images = len(doc["trigger"]["examples_png"]) + (2 if doc["trigger"].get("synthesised") else 0)
    check_page(browser, tmp_path, None, verdict, charts + ["chart-timings"], images, page=out / "report.html")
