"""Mask files: the mask-value policy (what a mask's values mean) and training targets."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from unet_hub.data.images import DEFAULT_MAX_PIXELS, read_image
from unet_hub.data.mask_values import MaskValues, to_class_ids
from unet_hub.errors import DataError

#: The mask-value policy for one-class masks (``prepare_mask``): the largest share of
#: pixels that may be neither 0 nor the mask's maximum (the soft edges of a resized or
#: anti-aliased mask) for the mask to be thresholded with a warning rather than refused.
MASK_SOFT_EDGE_LIMIT = 0.05


#: An integer one-class mask with values between 0 and its maximum, and a maximum below
#: this, holds class ids (0, 1, 2, ...), not a foreground: it is refused.
MASK_LABEL_ID_MAX = 64


#: In a JPEG mask, values within this fraction of the maximum from 0 or from the maximum
#: are compression noise, not soft edges.
MASK_JPEG_TOLERANCE = 1 / 8


class MaskWarning(UserWarning):
    """A mask's values were converted by the mask-value policy (see ``prepare_mask``).

    Issued once per mask file, when the data set reads it; turn it into an error with
    ``warnings.simplefilter("error", MaskWarning)``.
    """


def read_mask(
    path: str | Path,
    n_classes: int,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    mask_values: MaskValues | None = None,
) -> np.ndarray:
    """Read a mask file and apply the mask-value policy to it (``prepare_mask``); with
    ``mask_values`` (several classes drawn as grey levels or colours), map them to class
    ids first."""
    path = Path(path)
    mask = read_image(path, max_pixels)
    if mask_values is not None:
        mask = to_class_ids(mask, mask_values, str(path))
    with path.open("rb") as f:
        jpeg = f.read(3) == b"\xff\xd8\xff"  # by content: a JPEG may be named .png
    return prepare_mask(mask, n_classes, str(path), jpeg=jpeg)


def _mask_plane(mask: np.ndarray) -> np.ndarray:
    """The one plane of values of a mask: gray as is, gray + alpha's gray, RGB(A)'s
    brightest channel (a coloured foreground on black counts)."""
    if mask.ndim == 3:
        mask = mask[:, :, 0] if mask.shape[2] < 3 else mask[:, :, :3].max(axis=2)
    return mask.astype(np.uint8) if mask.dtype == bool else mask


def _value_counts(plane: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of a mask and how many pixels hold each."""
    if plane.dtype in (np.uint8, np.uint16):
        counts = np.bincount(plane.ravel())
        values = np.flatnonzero(counts)
        return values, counts[values]
    return np.unique(plane, return_counts=True)


def _listed(values: np.ndarray, most: int = 6) -> str:
    shown = ", ".join(f"{v:g}" for v in values[:most].tolist())
    return shown + (f", ... ({len(values)} values)" if len(values) > most else "")


def prepare_mask(
    mask: np.ndarray, n_classes: int, name: str = "the mask", *, jpeg: bool = False
) -> np.ndarray:
    """Check a mask's values and bring it to the form ``mask_to_target`` reads: the
    mask-value policy, the one place that says what a mask's values mean.

    ``name`` (the file) is named in every error and warning; ``jpeg``: the mask was
    stored with lossy compression. Colour masks are first reduced to one plane (the
    brightest of R, G, B; alpha is ignored).

    One class (``n_classes == 1``), a H×W uint8 array of 0 and 255 is returned:

    - two values at most, one of them 0 (0/255, 0/1, 0/65535, 0.0/1.0, ...): the
      non-zero value is foreground, as is;
    - other values in between (soft edges): if the mask holds integers whose maximum is
      below ``MASK_LABEL_ID_MAX`` they are class ids, and a ``DataError`` says to pass
      ``--n-classes`` or to save the mask as 0/255. Otherwise, if at most
      ``MASK_SOFT_EDGE_LIMIT`` of the pixels are in between (anti-aliased or resized
      masks; in a JPEG, values within ``MASK_JPEG_TOLERANCE`` of 0 or of the maximum
      count as clean), the mask is thresholded at half its maximum (128 for 8-bit
      0/255 masks; 0.5 for float masks) with a ``MaskWarning`` naming the file; more
      in-between pixels are a ``DataError``;
    - float masks must hold values in [0, 1]; NaN or infinity is a ``DataError``.

    Several classes: the values are class ids, kept as they are (uint8 or uint16); a
    ``DataError`` for an id >= ``n_classes``, a negative or fractional value, NaN, or a
    JPEG (lossy compression changes ids at the edges between classes).
    """
    plane = _mask_plane(mask)
    if plane.size == 0:
        raise DataError(f"{name}: the mask is empty")
    floating = np.issubdtype(plane.dtype, np.floating)
    if floating and not np.isfinite(plane).all():
        raise DataError(f"{name}: the mask holds NaN or infinite values; clean it first")
    if n_classes > 1:
        return _class_id_mask(plane, n_classes, name, jpeg)
    values, counts = _value_counts(plane)
    if floating and (values[0] < 0 or values[-1] > 1):
        raise DataError(
            f"{name}: a float mask must hold values in [0, 1] (0 = background, 1 = "
            f"foreground), not {values[0]:g} to {values[-1]:g}; save it as an 8-bit "
            "PNG of 0 and 255"
        )
    top = values[-1]
    in_between = (values != 0) & (values != top)
    if not in_between.any():
        return np.where(plane > 0, 255, 0).astype(np.uint8)
    if not floating and top < MASK_LABEL_ID_MAX:
        k = int(top) + 1
        raise DataError(
            f"{name}: the mask holds the values {_listed(values)}, which look like class "
            f"ids, but the model has one class; for {k} classes pass --n-classes {k} "
            f"(n_classes={k} in Python), or save the mask with only 0 (background) and "
            "255 (foreground)"
        )
    full = 1.0 if floating else float(top)
    tolerance = full * MASK_JPEG_TOLERANCE if jpeg else 0.0
    unclear = (values > tolerance) & (values < top - tolerance)
    share = counts[unclear].sum() / plane.size
    if share > MASK_SOFT_EDGE_LIMIT:
        raise DataError(
            f"{name}: not a two-valued mask: {share:.1%} of its pixels are neither 0 nor "
            f"{top:g} (values {_listed(values)}); for one class save the mask with only 0 "
            "(background) and 255 (foreground); if its values are class ids, pass "
            "--n-classes with their number"
        )
    threshold = full / 2
    shown = f"{threshold:g}" if floating else f"{math.ceil(threshold)}"
    soft = f"{counts[in_between].sum() / plane.size:.1%} of its pixels"
    why = (
        f"a JPEG mask: lossy compression altered {soft}"
        if jpeg
        else f"{soft} are neither 0 nor {top:g} (soft, anti-aliased edges)"
    )
    warnings.warn(
        f"{name}: {why}; thresholded at {shown} (values from {shown} up are "
        f"foreground); save masks {'as PNG ' if jpeg else ''}with only 0 and 255 to keep "
        "them exact",
        MaskWarning,
        stacklevel=2,
    )
    return np.where(plane >= threshold, 255, 0).astype(np.uint8)


def _class_id_mask(plane: np.ndarray, n_classes: int, name: str, jpeg: bool) -> np.ndarray:
    """``prepare_mask`` for several classes: the values must be class ids."""
    if jpeg:
        raise DataError(
            f"{name}: class ids cannot be stored as JPEG (lossy compression changes them "
            "at the edges between classes); save the mask as PNG"
        )
    low, high = plane.min(), plane.max()
    if low < 0 or (np.issubdtype(plane.dtype, np.floating) and (plane % 1).any()):
        raise DataError(
            f"{name}: class ids must be whole numbers from 0 to {n_classes - 1}, but the mask "
            f"holds values from {low:g} to {high:g}; save it as an 8-bit PNG of class ids"
        )
    if high >= n_classes:
        binary = set(np.unique(plane).tolist()) <= {0, 255}
        hint = " (a mask of 0 and 255 is a one-class mask: use --n-classes 1)" if binary else ""
        raise DataError(
            f"{name} holds class id {int(high)}, but there are only {n_classes} classes; "
            f"pass the right number of classes{hint}"
        )
    return plane.astype(np.uint8 if n_classes <= 256 else np.uint16)


def mask_to_target(mask: np.ndarray, n_classes: int) -> np.ndarray:
    """Turn a mask image into a training target, after ``prepare_mask`` (a no-op, and
    silent, on a mask it has already prepared).

    One class: a float32 1×H×W array of 0 (background) and 1 (foreground).
    Several classes: the mask's values are class ids, giving an int64 H×W array.
    """
    mask = prepare_mask(mask, n_classes)
    if n_classes == 1:
        return (mask > 0).astype(np.float32)[None]
    return mask.astype(np.int64)
