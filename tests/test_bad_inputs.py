"""Bad input, table-driven: every row is a file a user may hand us and what must happen.

The same image rows go through the library (``read_image`` + ``segment``), the command
line (``unet-hub predict``) and the running web app (through ``gradio_client``). An
``error`` row must give one clear line naming what is wrong; an ``ok`` row must be
converted and segmented, with a mask the size of the image. The model-folder rows go
through ``UNet.from_pretrained``. The mask rows (the mask-value policy of
``unet_hub.data.images.prepare_mask``) go through the library (``SegmentationDataset``) and
the command line (``unet-hub evaluate``); the web app reads no masks. A ``warning`` row
must load, with one warning naming the file.
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import PIL.Image
import pytest

from conftest import ROOT
from support.cli_batch import Ran, run_batch
from unet_hub import UNet, read_image, segment
from unet_hub.data.dataset import SegmentationDataset
from unet_hub.data.masks import MaskWarning
from unet_hub.data.pairs import find_pairs
from unet_hub.errors import ImageReadError, ModelLoadError, UNetHubError

GRAY = (np.arange(40 * 56).reshape(40, 56) % 251).astype(np.uint8)
RGB = np.stack([GRAY, 255 - GRAY, GRAY // 2], axis=2)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width×height but holds no pixel data (a decompression bomb's
    header: tiny on disk, huge if decoded)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


def _cv2(array: np.ndarray, ext: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        ok, data = cv2.imencode(ext, array)
        path.write_bytes(data.tobytes())

    return write


def _pil(array: np.ndarray, mode: str | None = None, **save) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        image = PIL.Image.fromarray(array)
        (image.convert(mode) if mode else image).save(path, **save)

    return write


def _frames(fmt: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        first, second = PIL.Image.fromarray(GRAY), PIL.Image.fromarray(255 - GRAY)
        first.save(path, format=fmt, save_all=True, append_images=[second])

    return write


def _truncated(ext: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        ok, data = cv2.imencode(ext, GRAY)
        path.write_bytes(data.tobytes()[: len(data) // 2])

    return write


def _bytes(content: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(content)


def _zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("notes.txt", "hello")


def _float_with(value: float) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        image = GRAY.astype(np.float32) / 255
        image[3, 4] = value
        PIL.Image.fromarray(image).save(path)

    return write


@dataclass(frozen=True)
class Case:
    name: str
    filename: str
    write: Callable[[Path], None]
    error: str | None = None  # a regex the one-line error must match; None = must work


IMAGE_CASES = [
    Case("empty file", "empty.png", _bytes(b""), "the file is empty"),
    Case("truncated PNG", "cut.png", _truncated(".png"), "PNG data is truncated or corrupted"),
    Case("truncated JPEG", "cut.jpg", _truncated(".jpg"), "JPEG data is truncated or corrupted"),
    Case("text named .png", "notes.png", _bytes(b"just some notes\n"), "a text file, not an image"),
    Case("HTML named .png", "page.png", _bytes(b"<!DOCTYPE html><html></html>"), "an HTML page"),
    Case("ZIP named .png", "archive.png", _zip, "a ZIP archive, not an image"),
    Case("random bytes", "noise.png", _bytes(bytes(range(256)) * 4), "not a readable image"),
    Case("0×0 PNG", "zero.png", _bytes(_png_header_only(0, 0)), "not a readable image"),
    Case("30000×30000 PNG header", "bomb.png", _bytes(_png_header_only(30000, 30000)), "large"),
    Case(
        "12000×10000 PNG over the limit",
        "big.png",
        _bytes(_png_header_only(12000, 10000)),
        "more than the limit",
    ),
    Case("multi-page TIFF", "stack.tif", _frames("TIFF"), "2-page TIFF file"),
    Case("animated GIF", "anim.gif", _frames("GIF"), "a GIF image, a format not read here"),
    Case("2-frame PNG (APNG)", "anim.png", _frames("PNG"), "2-frame PNG file"),
    Case("WebP", "image.webp", _pil(RGB, format="WEBP"), "a WebP image, a format not read here"),
    Case("NaN in a float TIFF", "nan.tif", _float_with(np.nan), "NaN or infinite"),
    Case("Inf in a float TIFF", "inf.tif", _float_with(np.inf), "NaN or infinite"),
    Case("1×1 PNG", "one.png", _cv2(np.array([[7]], np.uint8), ".png")),
    Case("8-bit gray PNG", "gray.png", _cv2(GRAY, ".png")),
    Case("16-bit TIFF", "u16.tif", _cv2(GRAY.astype(np.uint16) * 257, ".tif")),
    Case("16-bit RGB PNG", "rgb16.png", _cv2(RGB.astype(np.uint16) * 257, ".png")),
    Case("32-bit float TIFF", "f32.tif", _pil(GRAY.astype(np.float32) / 255)),
    # Pillow cannot open this layout: its size is read from the TIFF directory instead.
    Case("32-bit float RGB TIFF", "rgbf32.tif", _cv2(RGB.astype(np.float32) / 255, ".tif")),
    Case(
        "Radiance HDR named .png",
        "light.png",
        _cv2(RGB.astype(np.float32) / 255, ".hdr"),
        "a Radiance HDR image, a format not read here",
    ),
    Case("RGB JPEG to a gray model", "rgb.jpg", _pil(RGB)),
    Case("RGBA PNG", "rgba.png", _pil(np.dstack([RGB, np.full_like(GRAY, 128)]))),
    Case("palette PNG", "palette.png", _pil(RGB, "P")),
    Case("CMYK JPEG", "cmyk.jpg", _pil(RGB, "CMYK")),
    Case("1-bit PNG", "bits.png", _pil(GRAY, "1")),
    Case("BMP", "image.bmp", _cv2(RGB, ".bmp")),
    Case("uppercase extension", "IMAGE.PNG", _cv2(GRAY, ".png")),
]


def _ids(cases: list[Case]) -> list[str]:
    return [c.name for c in cases]


@pytest.fixture(scope="module")
def tiny_models() -> dict[int, UNet]:
    torch_seed = 0
    import torch

    torch.manual_seed(torch_seed)
    return {n: UNet(n_channels=n, base_channels=2).eval() for n in (1, 3)}


@pytest.mark.parametrize("case", IMAGE_CASES, ids=_ids(IMAGE_CASES))
def test_library(case, tmp_path, tiny_models):
    path = tmp_path / case.filename
    case.write(path)
    if case.error:
        with pytest.raises(ImageReadError, match=case.error) as info:
            segment(tiny_models[1], read_image(path))
        message = str(info.value)
        assert str(path) in message and "\n" not in message
        return
    image = read_image(path)
    for n_channels, model in tiny_models.items():  # gray to RGB models and back: converted
        probs = segment(model, image)
        assert probs.shape == image.shape[:2] and np.isfinite(probs).all()
        assert probs.min() >= 0 and probs.max() <= 1, n_channels


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    UNet(base_channels=2).save_pretrained(folder)
    return folder


def test_cli(tmp_path, model_dir):
    """All rows in one `unet-hub predict` call: each bad one is reported on one line, the
    good ones are written, and the exit code says that some failed."""
    paths = []
    for i, case in enumerate(IMAGE_CASES):
        folder = tmp_path / "in" / str(i)  # one folder each: stems may repeat
        folder.mkdir(parents=True)
        case.write(folder / case.filename)
        paths.append(folder / case.filename)
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "unet_hub.cli",
            "predict",
            str(model_dir),
            *map(str, paths),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    written = dict(line.split(" -> ") for line in result.stdout.splitlines() if " -> " in line)
    for case, path in zip(IMAGE_CASES, paths, strict=True):
        if case.error:
            [line] = [e for e in errors if f"error: {path}:" in e]
            assert re.search(case.error, line), (case.name, line)
        else:
            # where predict says it wrote the mask: names may collide (x_png, x_bmp)
            mask = cv2.imread(written[str(path)], cv2.IMREAD_UNCHANGED)
            assert mask is not None and mask.shape == read_image(path).shape[:2], case.name


def test_app(client, tmp_path):
    """The running app answers every row: an error message for bad files, a mask for good
    ones, and it keeps serving."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    for case in IMAGE_CASES:
        path = tmp_path / case.filename
        case.write(path)
        if case.error:
            with pytest.raises(AppError, match=case.error):
                client.predict(handle_file(str(path)), 0.5, api_name="/segment")
        else:
            mask = client.predict(handle_file(str(path)), 0.5, api_name="/segment")
            assert cv2.imread(mask, cv2.IMREAD_UNCHANGED).shape == read_image(path).shape[:2]


def _disc() -> np.ndarray:
    """A 0/255 disc drawn anti-aliased: its rim (about 3 % of the pixels) is gray."""
    mask = np.zeros_like(GRAY)
    cv2.circle(mask, (28, 20), 10, 255, -1, cv2.LINE_AA)
    return mask


BLOCK = np.zeros_like(GRAY)  # a clean 0/255 mask
BLOCK[8:32, 16:40] = 255
BLOCK[20:26, 10:16] = 255
IDS = (np.arange(GRAY.size).reshape(GRAY.shape) // 7 % 4).astype(np.uint8)  # class ids 0-3


def _float_mask(array: np.ndarray, nan: bool = False) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        mask = array.astype(np.float32)
        if nan:
            mask[3, 4] = np.nan
        PIL.Image.fromarray(mask).save(path)

    return write


@dataclass(frozen=True)
class MaskCase(Case):
    """A mask file (``filename`` in ``masks/``, its image is ``GRAY``) and a model of
    ``n_classes``: ``error`` as above; else it loads, with one warning matching
    ``warning`` (None: no warning), and its target equals ``truth``."""

    warning: str | None = None
    n_classes: int = 1
    truth: np.ndarray | None = None  # the expected target: 0/1, or class ids


MASK_CASES = [
    MaskCase("0/255 mask", "m.png", _cv2(BLOCK, ".png"), truth=BLOCK > 0),
    MaskCase("0/1 mask", "m.png", _cv2(BLOCK // 255, ".png"), truth=BLOCK > 0),
    MaskCase("16-bit 0/65535 mask", "m.tif", _cv2(BLOCK.astype(np.uint16) * 257, ".tif"),
             truth=BLOCK > 0),
    MaskCase("float 0.0/1.0 mask", "m.tif", _float_mask(BLOCK / 255), truth=BLOCK > 0),
    MaskCase("RGB mask, red on black", "m.png", _pil(np.dstack([BLOCK, 0 * BLOCK, 0 * BLOCK])),
             truth=BLOCK > 0),
    MaskCase("anti-aliased mask", "m.png", _cv2(_disc(), ".png"),
             warning=r"m\.png: 3\.\d% of its pixels are neither 0 nor 255 .*thresholded at 128",
             truth=_disc() >= 128),
    MaskCase("mask saved as JPEG", "m.jpg", _cv2(BLOCK, ".jpg"),
             warning=r"m\.jpg: a JPEG mask: lossy compression .*thresholded at 128",
             truth=BLOCK > 0),
    MaskCase("label ids for a one-class model", "m.png", _cv2(IDS, ".png"),
             error=r"m\.png: the mask holds the values 0, 1, 2, 3, which look like class ids.*"
             r"pass --n-classes 4.*only 0 \(background\) and 255"),
    MaskCase("gray photo as a mask", "m.png", _cv2(GRAY, ".png"), error="not a two-valued mask"),
    MaskCase("float mask with NaN", "m.tif", _float_mask(BLOCK / 255, nan=True),
             error="NaN or infinite"),
    MaskCase("float mask of 0 and 255", "m.tif", _float_mask(BLOCK),
             error=r"float mask must hold values in \[0, 1\]"),
    MaskCase("class ids for a 4-class model", "m.png", _cv2(IDS, ".png"), n_classes=4,
             truth=IDS),
    MaskCase("0/255 mask for a 4-class model", "m.png", _cv2(BLOCK, ".png"), n_classes=4,
             error="class id 255, but there are only 4 classes.*use --n-classes 1"),
    MaskCase("class ids saved as JPEG", "m.jpg", _cv2(IDS, ".jpg"), n_classes=4,
             error="class ids cannot be stored as JPEG"),
]  # fmt: skip


def _mask_folder(case: MaskCase, root: Path) -> Path:
    """A data folder of one pair: ``images/m.png`` (GRAY) and the row's mask."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    _cv2(GRAY, ".png")(root / "images" / "m.png")
    case.write(root / "masks" / case.filename)
    return root / "masks" / case.filename


@pytest.mark.parametrize("case", MASK_CASES, ids=_ids(MASK_CASES))
def test_mask_library(case, tmp_path):
    mask_path = _mask_folder(case, tmp_path)
    if case.error:
        with pytest.raises(UNetHubError, match=case.error) as info:
            SegmentationDataset(find_pairs(tmp_path), n_classes=case.n_classes)
        message = str(info.value)
        assert str(mask_path) in message and "\n" not in message
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # every warning recorded, none deduplicated
        data = SegmentationDataset(find_pairs(tmp_path), n_classes=case.n_classes)
        targets = [data[0][1] for _ in range(3)]  # three epochs: still one warning
    found = [str(w.message) for w in caught if issubclass(w.category, MaskWarning)]
    if case.warning:
        [message] = found
        assert re.search(case.warning, message) and str(mask_path) in message
    else:
        assert found == []
    target = targets[-1].numpy()
    truth = case.truth.astype(target.dtype)
    assert np.array_equal(target[0] if case.n_classes == 1 else target, truth)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[int, Path]:
    """Saved width-2 models of one and of four classes."""
    folders = {}
    for n_classes in (1, 4):
        folders[n_classes] = tmp_path_factory.mktemp(f"model{n_classes}")
        UNet(n_classes=n_classes, base_channels=2).save_pretrained(folders[n_classes])
    return folders


@pytest.fixture(scope="module")
def mask_cli_runs(model_dirs, tmp_path_factory) -> dict[str, tuple[Path, Ran]]:
    """`unet-hub evaluate` on each row's pair, all rows in one Python process (see
    support.cli_batch: each run's exit code, stdout and stderr as if alone): the mask's
    path and what the command did, by row name."""
    masks, commands = {}, {}
    for case in MASK_CASES:
        data = tmp_path_factory.mktemp("mask-cli") / "data"
        masks[case.name] = _mask_folder(case, data)
        commands[case.name] = ["evaluate", str(model_dirs[case.n_classes]), "--data", str(data)]
    runs = run_batch(commands, cwd=ROOT)
    return {name: (masks[name], runs[name]) for name in commands}


@pytest.mark.parametrize("case", MASK_CASES, ids=_ids(MASK_CASES))
def test_mask_cli(case, mask_cli_runs):
    """`unet-hub evaluate` on the row's pair: one error line naming the mask, or the
    metrics, with the warning once on stderr."""
    mask_path, result = mask_cli_runs[case.name]
    assert "Traceback" not in result.stderr
    if case.error:
        assert result.returncode == 2, result.stderr
        [line] = result.stderr.splitlines()
        assert line.startswith(f"error: {mask_path}")
        assert re.search(case.error, line), line
        return
    assert result.returncode == 0, result.stderr
    assert "(1 images" in result.stdout
    if case.warning:
        assert result.stderr.count("MaskWarning") == 1, result.stderr
        assert re.search(case.warning, result.stderr) and str(mask_path) in result.stderr
    else:
        assert "MaskWarning" not in result.stderr, result.stderr


def test_cli_max_pixels(tmp_path, model_dirs):
    """`--max-pixels` of predict and evaluate: the error names the flag and the value that
    lets the file through; 0 lifts the limit (the header-only file then reaches the
    decoder, which finds no pixel data)."""
    big, small = tmp_path / "big.png", tmp_path / "small.png"
    _bytes(_png_header_only(10001, 10000))(big)
    _cv2(GRAY, ".png")(small)  # 56×40 = 2240 pixels
    model = str(model_dirs[1])

    data = tmp_path / "data"
    _mask_folder(MASK_CASES[0], data)
    # every command in one Python process (support.cli_batch: each as if alone)
    limits = {"default": [], "2000": ["--max-pixels", "2000"], "0": ["--max-pixels", "0"]}
    commands = {
        limit: ["predict", model, str(big), str(small), "--out", str(tmp_path / limit), *options]
        for limit, options in limits.items()
    }
    for limit in ("2239", "2240"):
        commands[f"evaluate {limit}"] = [
            "evaluate",
            model,
            "--data",
            str(data),
            "--max-pixels",
            limit,
        ]
    runs = run_batch(commands, cwd=ROOT)

    def predict(limit: str) -> tuple[list[str], Path]:
        """The error lines of `unet-hub predict big small` (libpng adds its own lines)."""
        result = runs[limit]
        assert "Traceback" not in result.stderr and result.returncode == 1, result.stderr
        return [e for e in result.stderr.splitlines() if e.startswith("error: ")], tmp_path / limit

    [line], out = predict("default")  # the default limit, 100 megapixels
    assert line == (
        f"error: {big}: 10001×10000 pixels is more than the limit of 100,000,000; downscale "
        "or crop it first, or raise the limit with --max-pixels 100010000 (0 = no limit)"
    )
    assert (out / "small.png").is_file()

    [big_error, small_error], out = predict("2000")
    assert "more than the limit of 2,000" in big_error and "--max-pixels 100010000" in big_error
    assert small_error.startswith(f"error: {small}: 56×40 pixels is more than the limit")
    assert small_error.endswith("raise the limit with --max-pixels 2240 (0 = no limit)")
    assert not (out / "small.png").exists()

    [line], out = predict("0")
    assert line == f"error: {big}: the PNG data is truncated or corrupted; export the image again"
    assert (out / "small.png").is_file()

    result = runs["evaluate 2239"]
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: {data / 'images' / 'm.png'}: 56×40 pixels is more than")
    assert line.endswith("--max-pixels 2240 (0 = no limit)")
    result = runs["evaluate 2240"]
    assert result.returncode == 0, result.stderr

    with pytest.raises(SystemExit) as info:  # the parser refuses a negative limit
        from unet_hub.cli import main

        main(["predict", model, str(small), "--out", str(tmp_path), "--max-pixels", "-1"])
    assert info.value.code == 2


def _edit_config(**changes) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        path = folder / "config.json"
        config = json.loads(path.read_text())
        config.update(changes)
        path.write_text(json.dumps(config))

    return edit


def _drop_config_key(key: str) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        path = folder / "config.json"
        config = json.loads(path.read_text())
        del config[key]
        path.write_text(json.dumps(config))

    return edit


def _corrupt_weights(folder: Path) -> None:
    weights = folder / "model.safetensors"
    weights.write_bytes(b"\x00" * 8 + weights.read_bytes()[8:200])


#: The file a malicious pickle creates when it is unpickled.
PWNED = "pwned"


def pickle_payload(marker: Path) -> bytes:
    """A pickle that runs ``touch marker`` (os.system) when it is unpickled."""
    return b"\x80\x04cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."


MODEL_CASES = [
    Case(
        "missing model.safetensors",
        "",
        lambda f: (f / "model.safetensors").unlink(),
        "no model.safetensors",
    ),
    Case("corrupted model.safetensors", "", _corrupt_weights, "unreadable or corrupted"),
    Case("missing config.json", "", lambda f: (f / "config.json").unlink(), "no config.json"),
    Case(
        "config.json not JSON",
        "",
        lambda f: (f / "config.json").write_text("{oops"),
        "not valid JSON",
    ),
    Case("unknown config key", "", _edit_config(dropout=0.5), "unknown keys \\['dropout'\\]"),
    Case("missing config key", "", _drop_config_key("base_channels"), "lacks the keys"),
    Case("wrong config type", "", _edit_config(n_classes="1"), "n_classes must be of type int"),
    Case("weights of another width", "", _edit_config(base_channels=4), "wrong shape"),
    Case(
        "a pickle beside no safetensors",
        "",
        lambda f: [
            (f / "model.safetensors").unlink(),
            (f / "pytorch_model.bin").write_bytes(pickle_payload(f.parent / PWNED)),
        ],
        "no model.safetensors",
    ),
]


@pytest.mark.parametrize("case", MODEL_CASES, ids=_ids(MODEL_CASES))
def test_model_folder(case, tmp_path):
    folder = tmp_path / "model"
    UNet(base_channels=2).save_pretrained(folder)
    case.write(folder)
    with pytest.raises(ModelLoadError, match=case.error) as info:
        UNet.from_pretrained(folder)
    assert str(folder) in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / PWNED).exists(), "a pickle in the folder was unpickled"


def test_the_pickle_payload_would_leave_its_mark_if_unpickled(tmp_path):
    """The control for the pickle case above: unpickling the payload runs its command."""
    import pickle

    pickle.loads(pickle_payload(tmp_path / PWNED))  # our own payload: a harmless `touch`
    assert (tmp_path / PWNED).exists()


def test_the_table_is_long_enough():
    """The issue asks for at least 30 rows of bad or unusual input."""
    assert len(IMAGE_CASES) + len(MODEL_CASES) >= 30
    assert len(MASK_CASES) >= 10
