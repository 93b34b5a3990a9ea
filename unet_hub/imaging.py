"""Reading images and turning them into model inputs and targets (NumPy and OpenCV only).

This module is the single place that knows how pixels become network inputs
(``to_model_input``) and how mask files become training targets (``mask_to_target``).
Both the data set and the inference code use it, so training and prediction agree.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import PIL.Image

from .errors import ImageReadError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

#: How integer pixels are scaled to [0, 1]: by the maximum of their dtype (255 for
#: 8-bit, 65535 for 16-bit) or by each image's own minimum and maximum.
INPUT_SCALINGS = ("dtype", "minmax")


def image_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) from the file's header, without decoding it; None if unknown."""
    try:
        with PIL.Image.open(path) as im:
            return im.size
    except PIL.Image.DecompressionBombError:
        raise  # PIL refuses to even describe it: far too large
    except (OSError, ValueError):
        return None


def read_image(path: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file as H×W (gray) or H×W×C (RGB or RGBA), keeping its bit depth.

    With ``max_pixels``, a larger image is refused from its header, before decoding.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: the file is empty; replace it with a real image")
    if max_pixels is not None:
        try:
            size = image_size(path)
        except PIL.Image.DecompressionBombError:
            raise ImageReadError(f"{path}: the image is far too large to open") from None
        if size is not None and size[0] * size[1] > max_pixels:
            raise ImageReadError(
                f"{path}: {size[0]}×{size[1]} pixels is more than the limit of "
                f"{max_pixels:,}; downscale or crop it first"
            )
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise ImageReadError(
            f"{path}: not a readable image (supported: {', '.join(IMAGE_EXTENSIONS)})"
        )
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


def scale_to_unit(image: np.ndarray, scaling: str = "dtype") -> np.ndarray:
    """Scale pixel values to float32 in [0, 1] (see ``INPUT_SCALINGS``)."""
    if scaling not in INPUT_SCALINGS:
        raise ValueError(f"input_scaling must be one of {INPUT_SCALINGS}, got {scaling!r}")
    if image.dtype == bool:
        return image.astype(np.float32)
    out = image.astype(np.float32)
    if not np.isfinite(out).all():
        raise ImageReadError("the image holds NaN or infinite values; clean it before use")
    if scaling == "minmax":
        lo, hi = float(out.min()), float(out.max())
        return (out - lo) / (hi - lo) if hi > lo else np.zeros_like(out)
    if np.issubdtype(image.dtype, np.integer):
        return out / float(np.iinfo(image.dtype).max)
    return np.clip(out, 0.0, 1.0)  # float images are taken to be in [0, 1] already


def to_model_input(image: np.ndarray, n_channels: int, scaling: str = "dtype") -> np.ndarray:
    """Turn an image of any supported type into a float32 C×H×W array in [0, 1]."""
    return np.ascontiguousarray(
        scale_to_unit(to_channels(image, n_channels), scaling).transpose(2, 0, 1)
    )


def mask_to_target(mask: np.ndarray, n_classes: int) -> np.ndarray:
    """Turn a mask image into a training target.

    One class: any value above 0 is foreground, giving a float32 1×H×W array of 0 and 1.
    Several classes: the mask's values are class ids, giving an int64 H×W array.
    """
    if mask.ndim == 3:
        mask = mask[:, :, 0] if mask.shape[2] < 3 else mask[:, :, :3].max(axis=2)
    if n_classes == 1:
        return (mask > 0).astype(np.float32)[None]
    if mask.max() >= n_classes:
        raise ValueError(
            f"mask holds class id {int(mask.max())} but the model has {n_classes} classes"
        )
    return mask.astype(np.int64)


def resize(image: np.ndarray, size: int, *, nearest: bool = False) -> np.ndarray:
    """Resize to ``size``×``size``: area/linear for images, nearest for masks."""
    if nearest:
        interpolation = cv2.INTER_NEAREST
    else:
        interpolation = cv2.INTER_AREA if min(image.shape[:2]) > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)
