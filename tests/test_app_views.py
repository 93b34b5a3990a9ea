"""After Segment at one threshold and a slider move to another, every view of the app
shows the library's result at the new threshold, pixel for pixel, and the network ran
once. The app runs in this process (so the network runs can be counted), served by
Gradio on a free port and driven by a real Chromium."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
from test_app import CHROMIUM, CHROMIUM_ARGS, _chromium_or_skip

from support import free_port
from unet_hub import UNet, read_image, segment
from unet_hub.app import webapp
from unet_hub.files import BUNDLED_MODEL, EXAMPLES_DIR
from unet_hub.infer.segment import mask_from_probabilities
from unet_hub.infer.visualize import display_image, overlay, probability_map


@pytest.fixture(scope="module")
def counted_app():
    """The app on the bundled model; ``runs`` counts its network runs and ``overlays``
    keeps each overlay it drew."""
    mp = pytest.MonkeyPatch()
    runs: list[int] = []
    overlays: list[np.ndarray] = []
    real = webapp.segmenter

    def counting_segmenter(model, **kwargs):
        run_network = real(model, **kwargs)

        def counted(image):
            runs.append(1)
            return run_network(image)

        return counted

    def kept_overlay(*args):
        overlays.append(overlay(*args))
        return overlays[-1]

    mp.setattr(webapp, "segmenter", counting_segmenter)
    mp.setattr(webapp, "overlay", kept_overlay)
    model = UNet.from_pretrained(BUNDLED_MODEL)
    app = webapp.build_app(model, str(BUNDLED_MODEL))
    port = free_port()
    app.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
        allowed_paths=[str(EXAMPLES_DIR)], quiet=True,
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}/", model, runs, overlays
    finally:
        app.close()
        mp.undo()


def _png(page, locator) -> np.ndarray:
    """The image an <img> shows, fetched from the app as the browser fetched it (RGB)."""
    data = page.request.get(locator.get_attribute("src")).body()
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if image.ndim == 3 else image


def _loaded(page, elem: str, old: str | None = None):
    """The <img> of ``elem`` once it shows a loaded picture other than ``old``."""
    img = page.locator(f"{elem} img").first
    page.wait_for_function(
        "([el, old]) => el.src !== old && el.complete && el.naturalWidth > 0",
        arg=[img.element_handle(timeout=60_000), old],
        timeout=60_000,
    )
    return img


def test_slider_move_redraws_every_view_at_the_new_threshold_without_rerunning(counted_app):
    _chromium_or_skip()
    from playwright.sync_api import expect, sync_playwright

    url, model, runs, overlays = counted_app
    example = sorted(EXAMPLES_DIR.glob("*.png"))[0]
    image = read_image(example)
    probabilities = segment(model, image)
    picture = display_image(image, model.n_channels, model.config["input_scaling"])
    start = model.config["threshold"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url)
        expect(page.get_by_text("U-Net segmentation").first).to_be_visible(timeout=30_000)
        page.locator("[data-testid='dataset-cell-0-0']").click()  # Segment at `start`
        first = {e: _loaded(page, e).get_attribute("src") for e in ("#mask", "#overlay", "#prob")}
        assert float(page.locator("#threshold input[type=number]").input_value()) == start
        at_start = _png(page, page.locator("#mask img").first)
        assert np.array_equal(at_start, mask_from_probabilities(probabilities, start))

        slider = page.locator("#threshold input[type=range]")
        box = slider.bounding_box()
        page.mouse.click(box["x"] + 0.9 * box["width"], box["y"] + box["height"] / 2)
        moved = float(page.locator("#threshold input[type=number]").input_value())
        assert moved > start + 0.1
        mask = _png(page, _loaded(page, "#mask", first["#mask"]))
        # the new mask triggers the overlay's redraw: wait for it, then check what was drawn
        # (an overlay drawn at the old threshold would look the same to the browser)
        deadline = time.monotonic() + 30
        while len(overlays) < 2 and time.monotonic() < deadline:
            page.wait_for_timeout(50)  # polling the condition above
        assert len(overlays) >= 2, "the overlay was not redrawn after the slider moved"
        expected_overlay = overlay(
            picture, (mask_from_probabilities(probabilities, moved) > 0).astype(np.uint8)
        )
        assert np.array_equal(overlays[-1], expected_overlay), "overlay not at the new threshold"
        shown_overlay = _png(page, _loaded(page, "#overlay", first["#overlay"]))
        prob = _png(page, page.locator("#prob img").first)
        browser.close()

    expected_mask = mask_from_probabilities(probabilities, moved)
    assert np.array_equal(mask, expected_mask)
    assert np.array_equal(shown_overlay, expected_overlay)
    assert np.array_equal(prob, probability_map(probabilities))
    assert len(runs) == 1  # the slider redrew from the kept probabilities
