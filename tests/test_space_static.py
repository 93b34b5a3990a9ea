"""The static Space in a real browser: `space build --kind static` of a tiny model, served
from 127.0.0.1 with the headers its README declares, segmented in Debian's Chromium and
compared with `segment()`; the slider, the download, bad files, and no outside request.

The Space is built with 512-px tiles and a 128-px overlap, so the 512² and smaller images
run in one pass and the 1100×700 one in overlap-tiles, with segment()'s own geometry.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import SAMPLE, write_image
from support.space_page import (
    CHROMIUM,
    CHROMIUM_ARGS,
    chromium_or_skip,
    open_page,
    page_probabilities,
    segment_in_page,
    spread_model,
)
from unet_hub import read_image, segment
from unet_hub.infer.segment import mask_from_probabilities
from unet_hub.space.serve import serve_space, space_headers
from unet_hub.space.static import ISOLATION_HEADERS, build_static_space
from unet_hub.space.vendor import VENDOR_DIR, check_vendored, vendored_files

TILE, OVERLAP = 512, 128
GREY = SAMPLE / "test" / "00.png"  # a 512×512 8-bit EM slice


def assert_matches_segment(probabilities: np.ndarray, model, image: np.ndarray) -> None:
    """The page's probabilities equal segment()'s to 1e-3; masks agree on >= 99.9 %."""
    expected = segment(model, image, tile_size=TILE, overlap=OVERLAP)
    assert probabilities.shape == expected.shape
    assert np.abs(probabilities - expected).max() <= 1e-3
    threshold = model.config["threshold"]
    ours, theirs = (mask_from_probabilities(p, threshold) for p in (probabilities, expected))
    assert (ours == theirs).mean() >= 0.999
    assert 0.05 < (theirs > 0).mean() < 0.95  # the masks are not trivially all one value


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("images")
    grey = cv2.imread(str(GREY), cv2.IMREAD_UNCHANGED)
    rng = np.random.default_rng(1)
    colour = np.stack([grey[:300, :400], grey[100:400, 50:450], grey[200:500, 112:]], axis=2)
    deep = grey[:256, :320].astype(np.uint16) * 257 + rng.integers(0, 257, (256, 320))
    others = [
        cv2.imread(str(SAMPLE / "test" / n), cv2.IMREAD_UNCHANGED) for n in ("10.png", "20.png")
    ]
    wide = np.concatenate([grey, others[0], others[1][:, :76]], axis=1)  # 512×1100
    large = np.concatenate([wide, np.flipud(wide)[:188]], axis=0)  # 700×1100
    return {
        "grey": GREY,
        "rgb": write_image(folder / "colour.png", colour.astype(np.uint8)),
        "tiff16": write_image(folder / "deep slice.tif", deep.astype(np.uint16)),
        "png16": write_image(folder / "deep.png", deep[::-1].astype(np.uint16)),
        "large": write_image(folder / "large.png", large),
        "text": _write(folder / "notes.png", b"just some notes, not pixels\n"),
        "huge": write_image(folder / "huge.png", np.zeros((5000, 6000), np.uint8)),
    }


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    model = spread_model(GREY)
    folder = tmp_path_factory.mktemp("model") / "tiny"
    model.save_pretrained(folder)
    return model, folder


@pytest.fixture(scope="module")
def site(model, tmp_path_factory) -> Path:
    return build_static_space(
        model[1], tmp_path_factory.mktemp("space") / "site", tile_size=TILE, overlap=OVERLAP
    )


@pytest.fixture(scope="module")
def browser():
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def requests() -> list[str]:
    return []


@pytest.fixture(scope="module")
def served(site):
    with serve_space(site) as url:
        yield url


@pytest.fixture(scope="module")
def page(browser, served, requests):
    page = open_page(browser, served, requests)
    yield page
    page.close()


def test_the_folder_is_a_static_space(site: Path) -> None:
    readme = site / "README.md"
    assert space_headers(site) == ISOLATION_HEADERS
    assert "sdk: static" in readme.read_text()
    settings = json.loads((site / "space.json").read_text())
    assert (settings["tile_size"], settings["overlap"]) == (TILE, OVERLAP)
    for name, digest in vendored_files().items():
        assert hashlib.sha256((site / "vendor" / name).read_bytes()).hexdigest() == digest
    assert check_vendored() == VENDOR_DIR
    text = "".join(
        p.read_text(errors="ignore")
        for p in site.rglob("*")
        if p.suffix in (".md", ".json", ".html")
    )
    assert "/tmp/" not in text and "/work/" not in text  # no path of the building machine


def test_page_is_cross_origin_isolated_and_uses_threads(page) -> None:
    assert page.evaluate("crossOriginIsolated") is True
    assert "thread" in page.text_content("#status")


@pytest.mark.parametrize("name", ["grey", "rgb", "tiff16", "png16", "large"])
def test_page_probabilities_equal_segment(page, model, images, name: str) -> None:
    assert segment_in_page(page, images[name]) == "done", page.text_content("#error")
    assert_matches_segment(page_probabilities(page), model[0], read_image(images[name]))


def test_threshold_slider_and_downloaded_mask(page, model, images, tmp_path: Path) -> None:
    assert segment_in_page(page, images["grey"]) == "done"
    probabilities = page_probabilities(page)
    page.evaluate("""() => { const s = document.getElementById('threshold');
        s.value = '0.3'; s.dispatchEvent(new Event('input')); }""")
    page.wait_for_selector("#download[data-threshold='0.3']")
    link = page.locator("#download")
    assert link.get_attribute("download") == "00_mask.png"
    with page.expect_download() as download:
        link.focus()
        page.keyboard.press("Enter")  # the link works from the keyboard
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    mask = cv2.imread(str(saved), cv2.IMREAD_UNCHANGED)
    assert saved.name == "00_mask.png" and mask.dtype == np.uint8 and mask.ndim == 2
    assert np.array_equal(mask, mask_from_probabilities(probabilities, 0.3))
    assert not np.array_equal(
        mask, mask_from_probabilities(probabilities, model[0].config["threshold"])
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("text", "notes.png: this is a text file, not an image"),
        ("huge", "huge.png: 6000×5000 pixels is more than this page's limit"),
    ],
)
def test_bad_file_gets_a_one_line_message(page, images, name: str, message: str) -> None:
    assert segment_in_page(page, images[name]) == "error"
    error = page.text_content("#error")
    assert error.startswith(message) and "\n" not in error
    assert page.is_hidden("#results")


def test_example_button_segments_an_example(page) -> None:
    assert segment_in_page(page, example=0) == "done"
    assert page.is_visible("#overlay")


def test_no_request_leaves_127_0_0_1(requests: list[str], served: str) -> None:
    assert any(url.endswith(".wasm") for url in requests)
    assert any(url.endswith("model.onnx") for url in requests)
    outside = [url for url in requests if not url.startswith((served, "blob:", "data:"))]
    assert outside == []


def test_description_gives_the_bundled_models_figures_without_a_machine_path() -> None:
    from unet_hub import UNet
    from unet_hub.files import BUNDLED_MODEL
    from unet_hub.space.static import description_html

    text = description_html(UNet.from_pretrained(BUNDLED_MODEL), BUNDLED_MODEL)
    assert "the bundled ISBI 2012 model" in text and "Dice" in text
    assert "ISBI 2012 EM" in text and "../" not in text and "shared" not in text


@pytest.mark.parametrize("scaling", ["zscore", "percentile"])
def test_page_applies_each_per_image_scaling_as_segment(
    browser, images, scaling: str, tmp_path_factory
) -> None:
    """The worker's zscore and percentile (geometry.js) equal scale_to_unit's: a model of
    each scaling, on a 16-bit image (tiled) and a colour one."""
    model = spread_model(GREY, input_scaling=scaling)
    folder = tmp_path_factory.mktemp(scaling) / "model"
    model.save_pretrained(folder)
    site = build_static_space(folder, folder.parent / "site", tile_size=TILE, overlap=OVERLAP)
    with serve_space(site) as url:
        page = open_page(browser, url)
        try:
            for name in ("tiff16", "rgb", "large"):
                assert segment_in_page(page, images[name]) == "done", page.text_content("#error")
                assert_matches_segment(page_probabilities(page), model, read_image(images[name]))
        finally:
            page.close()
