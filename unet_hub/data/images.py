"""Reading images and turning them into model inputs and targets (NumPy and OpenCV only).

This module is the single place that knows how pixels become network inputs
(``to_model_input``) and how mask files become training targets (``prepare_mask``, the
mask-value policy, and ``mask_to_target``). Both the data set and the inference code
use it, so training and prediction agree.
"""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import cv2
import numpy as np
import PIL.Image
from PIL import TiffImagePlugin

from unet_hub.errors import ImageReadError
from unet_hub.limits import ALLOWED_FORMATS, DEFAULT_MAX_PIXELS, opencv_pixel_cap
from unet_hub.model.config import INPUT_SCALINGS

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
SUPPORTED = ", ".join(ALLOWED_FORMATS[:-1]) + " or " + ALLOWED_FORMATS[-1]

#: Formats refused by name when recognised, so the message says what the file is. Their
#: headers are never parsed: only the allowed formats' parsers see untrusted bytes.
_OTHER_FORMATS = (
    (b"GIF8", "a GIF image"),
    (b"#?RADIANCE", "a Radiance HDR image"),
    (b"#?RGBE", "a Radiance HDR image"),
    (b"v/1\x01", "an OpenEXR image"),
    (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 image"),
    (b"8BPS", "a Photoshop document"),
    (b"\x00\x00\x01\x00", "an icon file"),
)
_IMAGE_KINDS = {name for _, name in _OTHER_FORMATS} | {"a WebP image"}
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
#: A TIFF's pages are counted up to this many (one is all the app reads).
_MAX_TIFF_PAGES = 1000


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
    if head[8:12] == b"WEBP" and head.startswith(b"RIFF"):
        return "a WebP image"
    for magic, name in _OTHER_FORMATS:
        if head.startswith(magic):
            return name
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html")):
        return "an HTML page"
    if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "a text file"
    return "not an image"


def _tiff_geometry(path: Path, head: bytes) -> tuple[int, int, int]:
    """Width, height and page count of a TIFF from its directories (IFDs) alone, for
    the TIFFs whose pixel layout Pillow cannot open (e.g. float RGB)."""
    bigtiff = head[2:4] in (b"+\x00", b"\x00+")
    ifd = TiffImagePlugin.ImageFileDirectory_v2(head[: 16 if bigtiff else 8])
    pages, size = 0, (0, 0)
    with path.open("rb") as f:
        while ifd.next and pages < _MAX_TIFF_PAGES:
            f.seek(ifd.next)
            ifd.load(f)
            if pages == 0:
                size = (int(ifd.get(256, 0)), int(ifd.get(257, 0)))
            pages += 1
    return size[0], size[1], pages


def _header(path: Path) -> tuple[str, int, int, int]:
    """Format, width, height and frame count of an allowed image, from its header.

    Pillow identifies the format from the content, trying the allowed formats' parsers
    only; nothing is decoded. Raises ``ImageReadError`` for anything else.
    """
    try:
        with warnings.catch_warnings():
            # The pixel limit is checked by the caller, with a message that says what to do.
            warnings.simplefilter("ignore", PIL.Image.DecompressionBombWarning)
            with PIL.Image.open(path, formats=ALLOWED_FORMATS) as im:
                return im.format, *im.size, getattr(im, "n_frames", 1)
    except PIL.Image.DecompressionBombError as e:
        raise ImageReadError(f"{path}: far too large to open safely ({e})") from None
    except (PIL.UnidentifiedImageError, OSError, ValueError, SyntaxError):
        pass
    with path.open("rb") as f:
        head = f.read(64)
    if head.startswith(_TIFF_MAGIC):
        try:
            return "TIFF", *_tiff_geometry(path, head)
        except (OSError, ValueError, SyntaxError, struct.error):
            pass
    kind = _what_it_is(head)
    if kind == "not an image":
        raise ImageReadError(f"{path}: not a readable image (supported: {SUPPORTED})")
    if kind in _IMAGE_KINDS:
        raise ImageReadError(f"{path}: {kind}, a format not read here; convert it to {SUPPORTED}")
    raise ImageReadError(f"{path}: this is {kind}, not an image; give a {SUPPORTED} file")


def image_pixels(path: str | Path) -> int:
    """The pixel count (height × width) of an image file, from its header alone."""
    _, width, height, _ = _header(Path(path))
    return width * height


def check_image_file(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> str:
    """The one gate in front of every image decoder; returns the file's format.

    Only PNG, JPEG, TIFF and BMP files pass (``ALLOWED_FORMATS``, told by content, not by
    extension), with one page and at most ``max_pixels`` pixels (None: no limit but
    Pillow's own, about 179 megapixels), all read from the header before anything is
    decoded. Every refusal is an ``ImageReadError`` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: the file is empty; replace it with a real image")
    fmt, width, height, frames = _header(path)
    if width <= 0 or height <= 0:
        raise ImageReadError(f"{path}: not a readable image (its {fmt} header has no size)")
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

    The file first passes ``check_image_file``: a PNG, JPEG, TIFF or BMP of one page,
    and an image with more than ``max_pixels`` is refused from its header, before
    decoding, with a ``PixelLimitError`` (None: no limit but the decoders' own).
    Every failure is an ``ImageReadError`` naming the file and saying what is wrong.
    """
    path = Path(path)
    fmt = check_image_file(path, max_pixels)
    try:
        image = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as e:  # OpenCV's own pixel cap (see unet_hub.limits), or worse
        if "MAX_IMAGE_PIXELS" in str(e):
            raise ImageReadError(
                f"{path}: more than the {opencv_pixel_cap():,} pixels this process decodes "
                "(UNET_MAX_PIXELS); downscale or crop it first"
            ) from None
        raise ImageReadError(f"{path}: the {fmt} data cannot be decoded; export it again") from None
    if image is None or image.size == 0:
        raise ImageReadError(
            f"{path}: the {fmt} data is truncated or corrupted; export the image again"
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
