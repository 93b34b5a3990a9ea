"""The web app, started as a user starts it (``python app.py``), driven through its API
with gradio_client and through its page with a real Chromium."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import SAMPLE
from unet_hub import UNet, read_image, segment
from unet_hub.files import BUNDLED_MODEL

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def test_api_mask_equals_the_library(client):
    from gradio_client import handle_file

    image_path = SAMPLE / "test" / "10.png"
    mask_path = client.predict(handle_file(str(image_path)), 0.5, api_name="/segment")
    mask = cv2.imread(mask_path, cv2.IMREAD_UNCHANGED)
    expected = segment(UNet.from_pretrained(BUNDLED_MODEL), read_image(image_path)) > 0.5
    assert mask.shape == expected.shape
    assert set(np.unique(mask)) <= {0, 255}
    assert np.array_equal(mask > 0, expected)


def test_api_threshold_changes_the_mask(client):
    from gradio_client import handle_file

    image = handle_file(str(SAMPLE / "test" / "00.png"))
    low = cv2.imread(client.predict(image, 0.2, api_name="/segment"), cv2.IMREAD_UNCHANGED)
    high = cv2.imread(client.predict(image, 0.8, api_name="/segment"), cv2.IMREAD_UNCHANGED)
    assert (low > 0).sum() > (high > 0).sum()
    assert not np.any((high > 0) & (low == 0))  # a higher threshold only removes pixels


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("notes.png", b"this is text, not a picture", "this is a text file, not an image"),
        ("empty.png", b"", "the file is empty"),
    ],
)
def test_bad_upload_is_a_clear_message_and_the_server_stays_up(
    client, tmp_path, name, content, message
):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    bad = tmp_path / name
    bad.write_bytes(content)
    with pytest.raises(AppError, match=message):
        client.predict(handle_file(str(bad)), 0.5, api_name="/segment")
    good = client.predict(handle_file(str(SAMPLE / "test" / "00.png")), 0.5, api_name="/segment")
    assert cv2.imread(good, cv2.IMREAD_UNCHANGED).shape == (512, 512)


def test_too_many_pixels_are_refused_before_decoding(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    # A 6000×6000 black PNG compresses to a few kB but is 36 megapixels.
    big = tmp_path / "big.png"
    cv2.imwrite(str(big), np.zeros((6000, 6000), np.uint8))
    with pytest.raises(AppError, match="more than the limit"):
        client.predict(handle_file(str(big)), 0.5, api_name="/segment")


def test_sixteen_bit_tiff_upload(client, tmp_path):
    from gradio_client import handle_file

    image8 = cv2.imread(str(SAMPLE / "test" / "20.png"), cv2.IMREAD_UNCHANGED)
    tiff = tmp_path / "slice16.tif"
    cv2.imwrite(str(tiff), image8.astype(np.uint16) * 257)
    mask = cv2.imread(client.predict(handle_file(str(tiff)), 0.5, api_name="/segment"), -1)
    expected = segment(UNet.from_pretrained(BUNDLED_MODEL), image8) > 0.5
    # 16-bit scaling reproduces the 8-bit input exactly (x*257/65535 == x/255).
    assert np.array_equal(mask > 0, expected)


def _chromium_or_skip() -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run must apt-get install chromium")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium)")


@pytest.fixture
def page(app_url):
    """A fresh Chromium page on the app."""
    _chromium_or_skip()
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(app_url)
        expect(page.get_by_text("U-Net segmentation").first).to_be_visible(timeout=30_000)
        yield page
        browser.close()


def _wait_for_results(page) -> None:
    """Wait until the mask, overlay and probability images have loaded at 512 px."""
    from playwright.sync_api import expect

    for elem in ("#mask", "#overlay", "#prob"):
        result = page.locator(f"{elem} img").first
        expect(result).to_be_visible(timeout=60_000)
        page.wait_for_function(
            "el => el.complete && el.naturalWidth === 512", arg=result.element_handle()
        )


def _shown(page, elem: str) -> np.ndarray:
    """The picture an output shows, fetched from the app as the browser fetched it (RGB)."""
    data = page.request.get(page.locator(f"{elem} img").first.get_attribute("src")).body()
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if image.ndim == 3 else image


def _library_mask(path: Path) -> np.ndarray:
    model = UNet.from_pretrained(BUNDLED_MODEL)
    return segment(model, read_image(path)) > model.config["threshold"]


def test_browser_upload_segment_and_see_the_result(page, tmp_path):
    from playwright.sync_api import expect

    image = SAMPLE / "test" / "00.png"
    page.locator("#input-image input[type=file]").set_input_files(str(image))
    expect(page.locator("#input-image img").first).to_be_visible(timeout=30_000)
    page.locator("#segment-button").click()
    _wait_for_results(page)
    assert np.array_equal(_shown(page, "#mask") > 0, _library_mask(image))
    shot = tmp_path / "overlay.png"
    page.locator("#overlay img").first.screenshot(path=str(shot))
    drawn = cv2.cvtColor(cv2.imread(str(shot)), cv2.COLOR_BGR2RGB).astype(int)
    # the page really paints the overlay: tinted (non-grey) pixels, over a real picture
    tinted = np.abs(drawn - drawn.mean(axis=2, keepdims=True)).max(axis=2) > 20
    assert 0.05 < tinted.mean() < 0.95 and drawn.std() > 20
    page.screenshot(path=str(tmp_path / "app.png"), full_page=True)


def test_browser_example_runs_with_one_click(page, tmp_path):
    from unet_hub.files import EXAMPLES_DIR

    page.locator("[data-testid='dataset-cell-1-0']").click()
    _wait_for_results(page)
    example = sorted(EXAMPLES_DIR.glob("*.png"))[1]
    assert np.array_equal(_shown(page, "#mask") > 0, _library_mask(example))
    page.screenshot(path=str(tmp_path / "example.png"), full_page=True)


def test_browser_bad_upload_shows_a_message(page, tmp_path):
    from playwright.sync_api import expect

    bad = tmp_path / "notes.png"
    bad.write_text("this is text, not a picture")
    page.locator("#input-image input[type=file]").set_input_files(str(bad))
    page.locator("#segment-button").click()
    expect(page.get_by_text("this is a text file, not an image").first).to_be_visible(
        timeout=30_000
    )
    page.screenshot(path=str(tmp_path / "error.png"), full_page=True)


def test_browser_moving_the_threshold_updates_the_mask(page, tmp_path):
    # the slider starts at the model's recommended threshold (its config.json)
    recommended = UNet.from_pretrained(BUNDLED_MODEL).config["threshold"]
    start = float(page.locator("#threshold input[type=number]").input_value())
    assert start == recommended
    page.locator("[data-testid='dataset-cell-0-0']").click()
    _wait_for_results(page)
    mask = page.locator("#mask img").first
    before = mask.get_attribute("src")
    slider = page.locator("#threshold input[type=range]")
    box = slider.bounding_box()
    page.mouse.click(box["x"] + 0.95 * box["width"], box["y"] + box["height"] / 2)
    page.wait_for_function(
        "([el, old]) => el.src !== old && el.complete && el.naturalWidth === 512",
        arg=[mask.element_handle(), before],
        timeout=30_000,
    )
    value = float(page.locator("#threshold input[type=number]").input_value())
    assert value > 0.8
    _wait_for_results(page)
    page.screenshot(path=str(tmp_path / "threshold.png"), full_page=True)
