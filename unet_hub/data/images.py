"""Reading images and turning them into model inputs and targets (NumPy and OpenCV only).

This module is the single place that knows how pixels become network inputs
(``to_model_input``) and how mask files become training targets (``prepare_mask``, the
mask-value policy, and ``mask_to_target``). Both the data set and the inference code
use it, so training and prediction agree.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import PIL.Image

from unet_hub.errors import ImageReadError
from unet_hub.model.config import INPUT_SCALINGS

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

#: Images with more pixels are refused from their header, before decoding: a small file
#: can declare a huge image (a "decompression bomb"). 100 MP is 10000×10000.
DEFAULT_MAX_PIXELS = 100_000_000


class PixelLimitError(ImageReadError):
    """An image declares more pixels than the limit (``read_image``'s ``max_pixels``)."""

    def __init__(self, message: str, pixels: int, limit: int):
        super().__init__(message)
        self.pixels, self.limit = pixels, limit


def _what_it_is(head: bytes) -> str:
    """A guess at what a non-image file is, from its first bytes, for error messages."""
    if head.startswith(b"PK\x03\x04"):
        return "a ZIP archive"
    if head.startswith(b"%PDF"):
        return "a PDF document"
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html")):
        return "an HTML page"
    if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "a text file"
    return "not an image"


def _inspect(path: Path, max_pixels: int | None) -> str | None:
    """Check an image file's header before decoding it; return its format (None if
    PIL does not know it). Raises ``ImageReadError`` for what must not be decoded."""
    try:
        with warnings.catch_warnings():
            # The pixel limit is checked below, with a message that says what to do.
            warnings.simplefilter("ignore", PIL.Image.DecompressionBombWarning)
            with PIL.Image.open(path) as im:
                width, height = im.size
                frames = getattr(im, "n_frames", 1)
                fmt = im.format
    except PIL.Image.DecompressionBombError as e:
        raise ImageReadError(f"{path}: far too large to open safely ({e})") from None
    except PIL.UnidentifiedImageError:
        with path.open("rb") as f:
            head = f.read(64)
        kind = _what_it_is(head)
        if kind != "not an image":
            raise ImageReadError(
                f"{path}: this is {kind}, not an image; give a PNG, JPEG, TIFF or BMP file"
            ) from None
        return None  # leave the verdict to OpenCV, which knows more formats
    if max_pixels is not None and width * height > max_pixels:
        raise PixelLimitError(
            f"{path}: {width}×{height} pixels is more than the limit of {max_pixels:,}; "
            "downscale or crop it first",
            width * height,
            max_pixels,
        )
    if frames > 1:
        raise ImageReadError(
            f"{path}: a {frames}-{'page' if fmt == 'TIFF' else 'frame'} {fmt} file; save the "
            "page to segment as a single image"
        )
    return fmt


def read_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as H×W (gray) or H×W×C (RGB or RGBA), keeping its bit depth.

    An image with more than ``max_pixels`` is refused from its header, before decoding,
    with a ``PixelLimitError`` (None: no limit but the decoders' own; Pillow refuses a
    header of more than about 179 megapixels).
    Every failure is an ``ImageReadError`` naming the file and saying what is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: the file is empty; replace it with a real image")
    fmt = _inspect(path, max_pixels)
    image = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        if fmt is not None:
            raise ImageReadError(
                f"{path}: the {fmt} data is truncated or corrupted; export the image again"
            )
        raise ImageReadError(
            f"{path}: not a readable image (supported: {', '.join(IMAGE_EXTENSIONS)})"
        )
    if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        raise ImageReadError(f"{path}: the image holds NaN or infinite values; clean it first")
    if image.ndim == 3:
        if image.shape[2] == 1:
            image = image[:, :, 0]
        elif image.shape[2] == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        elif image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return image


def to_channels(image: np.ndarray, n_channels: int) -> np.ndarray:
    """Return ``image`` as H×W×``n_channels``: gray is repeated, colour is averaged to
    luminance, an alpha channel is dropped."""
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3:
        raise ImageReadError(f"expected an H×W or H×W×C image, got shape {image.shape}")
    channels = image.shape[2]
    if channels == n_channels:
        return image
    if channels in (2, 4):  # gray + alpha, RGB + alpha
        image, channels = image[:, :, : channels - 1], channels - 1
        if channels == n_channels:
            return image
    if channels == 3 and n_channels == 1:
        if np.issubdtype(image.dtype, np.floating):
            image = image.astype(np.float32)  # OpenCV's colour conversion takes float32 only
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)[:, :, None]
    if channels == 1:
        return np.repeat(image, n_channels, axis=2)
    raise ImageReadError(
        f"cannot turn a {channels}-channel image into the {n_channels} channels the model takes"
    )


#: The standard deviation below which ``zscore`` takes an image to be constant (all 0).
ZSCORE_EPSILON = 1e-6
#: The percentiles ``percentile`` clips each image to.
PERCENTILES = (0.5, 99.5)


def scaling_statistics(image: np.ndarray, scaling: str) -> tuple[float, float] | None:
    """The per-image numbers ``scaling`` needs (see ``scale_to_unit``), from the image as
    the network takes it (after ``to_channels``): (min, max) for minmax, (mean, std) for
    zscore, the (0.5, 99.5) percentiles for percentile; None for dtype. Training takes
    them from the whole image and applies them to its crops, as inference does."""
    if scaling not in INPUT_SCALINGS:
        raise ValueError(f"input_scaling must be one of {INPUT_SCALINGS}, got {scaling!r}")
    if scaling == "dtype" or image.dtype == bool:
        return None
    values = image.astype(np.float64)
    if not np.isfinite(values).all():
        raise ImageReadError("the image holds NaN or infinite values; clean it before use")
    if scaling == "minmax":
        return float(values.min()), float(values.max())
    if scaling == "zscore":
        return float(values.mean()), float(values.std())
    lo, hi = np.percentile(values, PERCENTILES)  # numpy's default: linear interpolation
    return float(lo), float(hi)


def scale_to_unit(
    image: np.ndarray, scaling: str = "dtype", statistics: tuple[float, float] | None = None
) -> np.ndarray:
    """Scale pixel values to float32 network inputs, as ``scaling`` says.

    The formulas (``x``: the image's values as float32, every channel together; the
    per-image numbers are computed in float64 over all of the image's pixels and
    channels, then rounded to float32 before use; a boolean image is always 0/1):

    - ``dtype``: integer images ``x / M`` with M the dtype's maximum (255 for uint8,
      65535 for uint16); float images ``clip(x, 0, 1)``.
    - ``minmax``: ``(x - lo) / (hi - lo)`` with lo, hi the image's minimum and maximum;
      all 0 when hi == lo.
    - ``zscore``: ``(x - m) / s`` with m the mean and s the population standard deviation
      (ddof 0, i.e. sqrt(mean((x - m)^2))); all 0 when s < ``ZSCORE_EPSILON`` (1e-6).
      Not bounded to [0, 1].
    - ``percentile``: ``(clip(x, lo, hi) - lo) / (hi - lo)`` with lo, hi the image's 0.5
      and 99.5 percentiles by numpy's default (linear) definition: over the n sorted
      values v[0..n-1], the p-th percentile at rank r = p / 100 * (n - 1) is
      ``v[floor(r)] + (r - floor(r)) * (v[floor(r) + 1] - v[floor(r)])``; all 0 when
      hi == lo.

    Every subtraction and division is in float32. ``statistics`` gives the per-image
    numbers (``scaling_statistics``) measured on a larger image this one is cut from.
    """
    if scaling not in INPUT_SCALINGS:
        raise ValueError(f"input_scaling must be one of {INPUT_SCALINGS}, got {scaling!r}")
    if image.dtype == bool:
        return image.astype(np.float32)
    out = image.astype(np.float32)
    if not np.isfinite(out).all():
        raise ImageReadError("the image holds NaN or infinite values; clean it before use")
    if scaling == "dtype":
        if np.issubdtype(image.dtype, np.integer):
            return out / np.float32(np.iinfo(image.dtype).max)
        return np.clip(out, 0.0, 1.0)  # float images are taken to be in [0, 1] already
    a, b = (np.float32(v) for v in (statistics or scaling_statistics(image, scaling)))
    if scaling == "zscore":
        if b < ZSCORE_EPSILON:
            return np.zeros_like(out)
        return (out - a) / b
    if not b > a:
        return np.zeros_like(out)
    if scaling == "percentile":
        out = np.clip(out, a, b)
    return (out - a) / (b - a)


def to_model_input(
    image: np.ndarray,
    n_channels: int,
    scaling: str = "dtype",
    statistics: tuple[float, float] | None = None,
) -> np.ndarray:
    """Turn an image of any supported type into a float32 C×H×W network input (in [0, 1]
    for every scaling but zscore; see ``scale_to_unit``)."""
    return np.ascontiguousarray(
        scale_to_unit(to_channels(image, n_channels), scaling, statistics).transpose(2, 0, 1)
    )


def resize(image: np.ndarray, size: int, *, nearest: bool = False) -> np.ndarray:
    """Resize to ``size``×``size``: area/linear for images, nearest for masks."""
    if nearest:
        interpolation = cv2.INTER_NEAREST
    else:
        interpolation = cv2.INTER_AREA if min(image.shape[:2]) > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)
