"""A real browser (Playwright driving Debian's Chromium) uploads a photo, paints a stroke and removes it; then
clears the photo, uploads another and does it again.

The waits are on conditions (the photo drawn, the stroke handled, the download shown), not on fixed
sleeps, so that a slow or busy machine does not lose the stroke."""

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from demo.testing import ROOT, running_app
from demo.ui import RUN_LABEL
from lama.testing import small_model

CHROMIUM = "/usr/bin/chromium"
PHOTO = ROOT / "demo" / "examples" / "cat.png"
SECOND = ROOT / "demo" / "examples" / "coffee.png"  # another size than PHOTO
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    with running_app(small_model(tmp / "model"), tmp / "app.log") as (url, _proc):
        yield url


def _upload(page, path: Path) -> None:
    page.locator("#photo input[type=file]").set_input_files(str(path))
    page.locator("#editor canvas").first.wait_for(state="visible", timeout=30_000)
    # the editor shows its zoom level once the photo is drawn; no "processing" or queue status after that
    page.locator("#editor").get_by_text(re.compile(r"^\d+%$")).wait_for(timeout=30_000)
    page.wait_for_function("!/processing|queue/.test(document.querySelector('#editor').innerText)", timeout=30_000)


def _paint_stroke(page) -> None:
    """A horizontal stroke across the middle of the canvas, once the photo is drawn (a photo that finishes
    loading after the stroke would wipe it)."""
    page.locator("#editor").get_by_role("button", name="Brush", exact=True).click()
    box = page.locator("#editor canvas").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx - 100, cy)
    page.mouse.down()
    for i in range(1, 21):  # paced moves: the canvas ignores fast unpaced ones
        page.mouse.move(cx - 100 + 10 * i, cy, steps=3)
        page.wait_for_timeout(20)
    page.mouse.up()
    # the pointer events are handled when mouse.up returns; two frames let the editor draw the stroke
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def _run_and_download(page, path: Path, screenshot: str) -> np.ndarray:
    page.get_by_role("button", name=RUN_LABEL, exact=True).click()
    download = page.get_by_role("button", name="Download full-resolution PNG")
    download.wait_for(state="visible", timeout=120_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / screenshot))
    with page.expect_download() as d:
        download.click()
    d.value.save_as(str(path))
    return np.asarray(Image.open(path).convert("RGB"))


def _assert_filled_along_the_stroke(out: np.ndarray, photo: Path) -> None:
    src = np.asarray(Image.open(photo).convert("RGB"))
    assert out.shape == src.shape  # the original's full resolution, not the editor's
    changed = (out != src).any(axis=2)
    assert changed.any(), "the result is the photo: the stroke did not reach the server (empty mask)"
    h, w = changed.shape
    assert changed[h // 3: 2 * h // 3].sum() > 1000  # filled inside the stroke across the middle
    assert not changed[: h // 4].any() and not changed[3 * h // 4:].any()  # identical far from it


def test_paint_remove_clear_and_again_with_another_photo_in_a_real_browser(app, tmp_path):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "make test installs Debian's chromium (apt-get install chromium)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(app)
        # the run button's name is no prefix of another control's (Gradio's clear buttons say "Remove Image")
        page.locator("#photo input[type=file]").wait_for(state="attached", timeout=30_000)
        _upload(page, PHOTO)
        assert page.get_by_role("button", name=RUN_LABEL).count() == 1
        _paint_stroke(page)
        _assert_filled_along_the_stroke(_run_and_download(page, tmp_path / "first.png", "demo-browser.png"), PHOTO)

        # clearing the photo clears the canvas, the result and the download
        page.locator("#photo").get_by_role("button", name="Remove Image").click()
        page.locator("#editor").wait_for(state="detached", timeout=30_000)
        page.get_by_role("button", name="Download full-resolution PNG").wait_for(state="hidden", timeout=30_000)
        assert page.locator("#result img").count() == 0

        # and a new photo works as the first one did
        _upload(page, SECOND)
        _paint_stroke(page)
        out = _run_and_download(page, tmp_path / "second.png", "demo-browser-second.png")
        browser.close()
    _assert_filled_along_the_stroke(out, SECOND)
