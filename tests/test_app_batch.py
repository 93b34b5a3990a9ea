"""The web app's "many images at once" section: ``/segment_batch`` through gradio_client,
the gallery and the zip download through a real Chromium, and its limits."""

from __future__ import annotations

import csv
import io
import shutil
import tempfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_app import CHROMIUM, CHROMIUM_ARGS, _chromium_or_skip

from conftest import SAMPLE
from unet_hub import UNet, predict_mask, read_image
from unet_hub.files import BUNDLED_MODEL


def _crop(index: int, height: int, width: int) -> np.ndarray:
    return cv2.imread(str(SAMPLE / "test" / f"{index:02d}.png"), cv2.IMREAD_GRAYSCALE)[
        :height, :width
    ]


@pytest.fixture
def uploads(tmp_path) -> dict[str, Path]:
    """a.png, a zip (an image in a sub-folder, one named to escape, and non-images), a
    text file named .png and a 36-megapixel PNG over the app's pixel limit."""
    cv2.imwrite(str(tmp_path / "a.png"), _crop(0, 128, 128))
    _, png = cv2.imencode(".png", _crop(20, 96, 160))
    with zipfile.ZipFile(tmp_path / "batch.zip", "w") as z:
        z.writestr("set/20.png", png.tobytes())
        z.writestr("../../escape.png", png.tobytes())
        z.writestr("notes.txt", "not an image")
        z.writestr("__MACOSX/set/._20.png", "resource fork")
    (tmp_path / "bad.png").write_text("this is text, not a picture")
    cv2.imwrite(str(tmp_path / "big.png"), np.zeros((6000, 6000), np.uint8))
    return {p.name: p for p in tmp_path.iterdir()}


def _zip_contents(path: str | Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {name: z.read(name) for name in z.namelist()}


def test_api_segments_files_and_zips_into_one_download(client, uploads):
    from gradio_client import handle_file

    files = [handle_file(str(uploads[n])) for n in ("a.png", "batch.zip", "bad.png", "big.png")]
    gallery, summary, archive, table = client.predict(files, True, 10, api_name="/segment_batch")
    captions = [item["caption"] for item in gallery]
    names = [c.split(": ")[0] for c in captions]
    assert names == ["a.png", "batch/set/20.png", "batch/escape.png"]
    counts = [int(c.split(": ")[1].removesuffix(" objects")) for c in captions]
    assert f"### {sum(counts)} objects in 3 images" in summary
    assert "bad.png: this is a text file, not an image" in summary
    assert "big.png: 6000×6000 pixels is more than the limit" in summary
    assert "/tmp" not in summary and "gradio" not in summary  # no server path shown

    contents = _zip_contents(archive)
    assert sorted(contents) == [
        "a.png",
        "a_labels.png",
        "batch/escape.png",
        "batch/escape_labels.png",
        "batch/set/20.png",
        "batch/set/20_labels.png",
        "objects.csv",
    ]
    assert contents["objects.csv"] == Path(table).read_bytes()
    rows = list(csv.DictReader(io.StringIO(contents["objects.csv"].decode())))
    for name, count in zip(names, counts, strict=True):
        stem = name.removesuffix(".png")
        labels = cv2.imdecode(np.frombuffer(contents[f"{stem}_labels.png"], np.uint8), -1)
        assert labels.dtype == np.uint16 and labels.max() == count
        assert sum(r["image"] == name for r in rows) == count
        assert all(int(r["area"]) >= 10 for r in rows)  # min size 10
    mask = cv2.imdecode(np.frombuffer(contents["a.png"], np.uint8), -1)
    expected = predict_mask(UNet.from_pretrained(BUNDLED_MODEL), read_image(uploads["a.png"]))
    assert np.array_equal(mask, expected)


def test_limits_before_anything_is_decoded(tmp_path, monkeypatch, request):
    import gradio as gr
    from gradio.utils import get_upload_folder

    from unet_hub.app import batch

    # files the server did not receive as uploads are refused
    outside = tmp_path / "a.png"
    cv2.imwrite(str(outside), _crop(0, 16, 16))
    with pytest.raises(gr.Error, match="Only files uploaded"):
        batch.collect_uploads([str(outside)], tmp_path)

    Path(get_upload_folder()).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="unet-hub-test-", dir=get_upload_folder()))
    request.addfinalizer(lambda: shutil.rmtree(folder, ignore_errors=True))
    _, png = cv2.imencode(".png", _crop(0, 64, 64))
    archive = folder / "many.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for i in range(3):
            z.writestr(f"{i}.png", png.tobytes())
    monkeypatch.setattr(batch, "MAX_BATCH_IMAGES", 2)
    with pytest.raises(gr.Error, match="too many images; at most 2"):
        batch.collect_uploads([str(archive)], tmp_path)
    monkeypatch.setattr(batch, "MAX_BATCH_IMAGES", 10)
    monkeypatch.setattr(batch, "MAX_ZIP_BYTES", 2 * len(png))  # a bomb, in small
    with pytest.raises(gr.Error, match="bytes uncompressed is more than the limit"):
        batch.collect_uploads([str(archive)], tmp_path)
    monkeypatch.setattr(batch, "MAX_ZIP_BYTES", 3 * len(png))
    (tmp_path / "in").mkdir()
    found = batch.collect_uploads([str(archive)], tmp_path / "in").found
    assert [f.name.as_posix() for f in found] == ["many/0.png", "many/1.png", "many/2.png"]
    assert all(f.path.parent == tmp_path / "in" for f in found)


def test_browser_gallery_and_zip_download(app_url, uploads, tmp_path):
    _chromium_or_skip()
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(app_url)
        expect(page.locator("#batch-button")).to_be_visible(timeout=30_000)
        files = [str(uploads["a.png"]), str(uploads["batch.zip"])]
        page.locator("#batch-files input[type=file]").set_input_files(files)
        page.locator("#batch-button").click()
        expect(page.locator("#batch-gallery img").nth(2)).to_be_visible(timeout=60_000)
        expect(page.locator("#batch-summary")).to_contain_text("objects in 3 images")
        with page.expect_download() as info:
            page.locator("#batch-zip a").first.click()
        download = tmp_path / "download.zip"
        info.value.save_as(download)
        page.screenshot(path=str(tmp_path / "batch.png"), full_page=True)
        browser.close()
    contents = _zip_contents(download)
    assert {"a.png", "a_labels.png", "batch/set/20.png", "objects.csv"} <= set(contents)
