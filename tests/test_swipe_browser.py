"""The kernel-free swipe page in a real headless Chromium: dragging the handle moves the split.

Needs Debian's chromium (installed by .ci/run) and the playwright Python package; skips,
visibly, without them."""

import shutil

import numpy as np
import pytest

from srlab.viz import swipe_composite, swipe_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def page(tmp_path):
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine (.ci/run installs Debian's chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser.new_page(viewport={"width": 400, "height": 300})
        browser.close()


def _pixel(png: bytes, x: int, y: int) -> np.ndarray:
    import cv2

    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]  # RGB
    return img[y, x].astype(int)


def test_dragging_the_handle_changes_which_image_shows_on_each_side(page, tmp_path):
    red = np.zeros((100, 200, 3), np.uint8)
    red[..., 0] = 255
    blue = np.zeros_like(red)
    blue[..., 2] = 255
    path = tmp_path / "swipe.html"
    swipe_html(red, blue, "red", "blue", path=path)
    page.goto(path.as_uri())
    frame = page.locator(".frame").bounding_box()
    y = int(frame["y"] + 60)  # below the labels
    at = lambda f: int(frame["x"] + f * frame["width"])

    def shot_after_drag(f):
        page.mouse.move(at(0.5), y)
        page.mouse.down()
        page.mouse.move(at(f), y, steps=5)
        page.mouse.up()
        return page.screenshot()

    png = shot_after_drag(0.25)
    assert _pixel(png, at(0.10), y)[0] > 200 and _pixel(png, at(0.10), y)[2] < 50  # red left of 25 %
    assert _pixel(png, at(0.50), y)[2] > 200 and _pixel(png, at(0.50), y)[0] < 50  # blue right of it
    png = shot_after_drag(0.75)
    assert _pixel(png, at(0.50), y)[0] > 200  # now red up to 75 %
    assert _pixel(png, at(0.90), y)[2] > 200
    assert page.locator("input.pos").input_value() in {str(v) for v in range(745, 756)}


def test_swipe_composite_by_hand():
    a, b = np.zeros((2, 10), np.uint8), np.full((2, 10), 255, np.uint8)
    out = swipe_composite(a, b, 0.3)
    assert out[0, :2].max() == 0 and out[0, 4:].min() == 255
