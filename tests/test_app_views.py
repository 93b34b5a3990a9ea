"""After Segment at one threshold and a slider move to another, every view of the app
shows the library's result at the new threshold, pixel for pixel, and the network ran
once. The app runs in this process (so the network runs can be counted), served by
Gradio on a free port and driven by a real Chromium."""

from __future__ import annotations

import time

import cv2
import gradio as gr
import numpy as np
import pytest
from test_app import CHROMIUM, CHROMIUM_ARGS, _chromium_or_skip

from support import free_port
from unet_hub import UNet, read_image, segment
from unet_hub.app import threshold as app_threshold
from unet_hub.app import webapp
from unet_hub.app.results import Result, ResultStore
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
    mp.setattr(app_threshold, "overlay", kept_overlay)
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


# -- the slider's logic, in process (unet_hub.app.threshold) ------------------------------


@pytest.mark.parametrize("value", [0.01, 0.5, 0.99, np.float64(0.3)])
def test_a_threshold_in_the_sliders_range_is_taken_as_a_float(value):
    taken = app_threshold.checked_threshold(value)
    assert taken == value and type(taken) is float


@pytest.mark.parametrize(
    "value, shown",
    [
        (0.0, "0.0"), (0.009, "0.009"), (0.991, "0.991"), (1, "1"), (float("nan"), "nan"),
        (float("inf"), "inf"), ("0.5", "'0.5'"), (True, "True"), (None, "None"),
        ("9" * 50, "'" + "9" * 39),
    ],
)  # fmt: skip
def test_a_threshold_outside_the_slider_is_one_line_naming_the_range(value, shown):
    with pytest.raises(gr.Error) as error:
        app_threshold.checked_threshold(value)
    assert error.value.message == f"The threshold must be a number from 0.01 to 0.99; got {shown}."


def _kept(probabilities: np.ndarray) -> tuple[ResultStore, str]:
    picture = np.full((*probabilities.shape[-2:], 3), 100, np.uint8)
    store = ResultStore(max_bytes=10**6)
    return store, store.put(Result(probabilities, picture))


ONE_CLASS = np.array([[0.1, 0.3], [0.5, 0.7]], np.float32)


def test_the_mask_is_redrawn_at_each_threshold_from_the_kept_probabilities():
    store, key = _kept(ONE_CLASS)
    assert app_threshold.mask_at(store, key, 0.2).tolist() == [[0, 255], [255, 255]]
    assert app_threshold.mask_at(store, key, 0.6).tolist() == [[0, 0], [0, 255]]
    assert app_threshold.mask_at(store, None, 0.6) is None  # nothing segmented yet
    with pytest.raises(gr.Error) as error:
        app_threshold.mask_at(store, "dropped", 0.6)
    assert error.value.message == app_threshold.EXPIRED
    assert "press Segment again" in app_threshold.EXPIRED
    with pytest.raises(gr.Error, match="threshold must be"):
        app_threshold.mask_at(store, None, 2.0)  # checked even before any run


def test_the_views_are_drawn_at_the_sliders_threshold():
    store, key = _kept(ONE_CLASS)
    picture = store.get(key).picture
    for threshold in (0.2, 0.6):
        drawn, prob = app_threshold.views_at(store, key, threshold, one_class=True)
        labels = (threshold < ONE_CLASS).astype(np.uint8)
        assert np.array_equal(drawn, overlay(picture, labels))
        assert np.array_equal(prob, probability_map(ONE_CLASS))
    assert app_threshold.views_at(store, "dropped", 0.5, one_class=True) == (None, None)
    with pytest.raises(gr.Error, match="threshold must be"):
        app_threshold.views_at(store, key, 0.0, one_class=True)


def test_the_views_of_several_classes_show_the_winning_class_and_its_probability():
    classes = np.array(
        [[[0.7, 0.1], [0.2, 0.3]], [[0.2, 0.8], [0.1, 0.3]], [[0.1, 0.1], [0.7, 0.4]]],
        np.float32,
    )
    store, key = _kept(classes)
    drawn, prob = app_threshold.views_at(store, key, 0.5, one_class=False)
    picture = store.get(key).picture
    assert np.array_equal(drawn, overlay(picture, np.array([[0, 1], [2, 2]], np.uint8)))
    assert np.array_equal(prob, probability_map(classes.max(axis=0)))
