"""A real browser (Playwright driving Debian's Chromium) uploads a photo, paints a stroke and removes it."""

from pathlib import Path

import numpy as np
import pytest
from demo_server import ROOT, running_app, small_model
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
PHOTO = ROOT / "demo" / "examples" / "cat.png"
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    with running_app(small_model(tmp / "model"), tmp / "app.log") as (url, _proc):
        yield url


def test_paint_a_stroke_and_remove_it_in_a_real_browser(app, tmp_path):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "make test installs Debian's chromium (apt-get install chromium)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(app)
        page.locator("#photo input[type=file]").set_input_files(str(PHOTO))
        canvas = page.locator("#editor canvas").first
        canvas.wait_for(state="visible", timeout=30_000)
        page.wait_for_timeout(2000)  # the editor draws the photo
        page.locator("#editor").get_by_role("button", name="Brush", exact=True).click()
        box = canvas.bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(cx - 100, cy)
        page.mouse.down()
        for i in range(1, 41):  # paced moves: the canvas ignores fast unpaced ones
            page.mouse.move(cx - 100 + 5 * i, cy, steps=3)
            page.wait_for_timeout(20)
        page.mouse.up()
        page.wait_for_timeout(1000)
        page.locator("#run").click()
        download = page.get_by_role("button", name="Download full-resolution PNG")
        download.wait_for(state="visible", timeout=120_000)
        page.wait_for_timeout(500)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "demo-browser.png"))
        with page.expect_download() as d:
            download.click()
        d.value.save_as(str(tmp_path / "result.png"))
        browser.close()

    src = np.asarray(Image.open(PHOTO).convert("RGB"))
    out = np.asarray(Image.open(tmp_path / "result.png").convert("RGB"))
    assert out.shape == src.shape  # the original's full resolution, not the editor's
    changed = (out != src).any(axis=2)
    h, w = changed.shape
    assert changed[h // 3: 2 * h // 3].sum() > 1000  # filled inside the stroke across the middle
    assert not changed[: h // 4].any() and not changed[3 * h // 4:].any()  # identical far from it
