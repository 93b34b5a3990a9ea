"""Masks drawn as grey levels or colours: which value means which class.

A multi-class mask may hold class ids (0, 1, 2...) or one grey level or RGB colour per
class (0/127/255, black/red/green, a palette PNG's colours). ``discover_mask_values``
reads a data set's masks and finds the values; ``to_class_ids`` maps one mask to ids and
names the file when it holds a value of no class; ``from_class_ids`` draws a predicted
mask back in the values the model was trained with. A mapping is stored in the model's
config (``UNetConfig.mask_values``), one value per class, in class order; a grey level is
a 1-tuple and a colour an (R, G, B) 3-tuple.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from unet_hub.data.images import DEFAULT_MAX_PIXELS, read_image
from unet_hub.errors import DataError

MaskValues = tuple[tuple[int, ...], ...]
#: Reading more masks than this to find their values is pointless: later masks are
#: still checked against the values found, as they are read.
_MOST_VALUES = 256


def parse_mask_value(text: str) -> tuple[int, ...]:
    """``--mask-values``: one value, a grey level (``127``) or a colour (``255,0,0``)."""
    try:
        value = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"not a grey level or an R,G,B colour: {text!r}") from None
    if len(value) not in (1, 3) or not all(0 <= v <= 65535 for v in value):
        raise ValueError(f"not a grey level or an R,G,B colour: {text!r}")
    return value


def mask_pixels(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """The mask as an array of values (H×W for grey, H×W×3 for colour; alpha dropped, a
    colour mask whose channels are equal counts as grey) and its number of channels."""
    if mask.ndim == 3 and mask.shape[2] >= 3:
        rgb = mask[:, :, :3]
        if (rgb == rgb[:, :, :1]).all():
            return rgb[:, :, 0], 1
        return rgb, 3
    if mask.ndim == 3:  # grey + alpha
        return mask[:, :, 0], 1
    return mask, 1


def distinct_values(mask: np.ndarray) -> set[tuple[int, ...]]:
    pixels, channels = mask_pixels(mask)
    flat = pixels.reshape(-1, channels)
    return {tuple(int(v) for v in row) for row in np.unique(flat, axis=0)}


def discover_mask_values(
    mask_files: Iterable[str | Path], n_classes: int, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> MaskValues | None:
    """The values a data set's masks use, one per class, sorted (darkest / lowest first),
    or None when they are class ids already (0 to ``n_classes - 1``). Raises
    ``DataError`` when the masks hold another number of values than there are classes."""
    found: set[tuple[int, ...]] = set()
    for path in mask_files:
        found |= distinct_values(read_image(path, max_pixels))
        if len(found) > _MOST_VALUES:
            break
    if {v for (v, *_) in found} <= set(range(n_classes)) and all(len(v) == 1 for v in found):
        return None  # class ids
    if any(len(v) == 3 for v in found):
        found = {v * 3 if len(v) == 1 else v for v in found}  # grey pixels of a colour set
    if len(found) != n_classes:
        shown = ", ".join(_format(v) for v in sorted(found)[:12])
        more = ", ..." if len(found) > 12 else ""
        raise DataError(
            f"the masks hold {len(found)} distinct values ({shown}{more}) but there are "
            f"{n_classes} classes; give --n-classes {len(found)}, or --mask-values with one "
            "value per class to say which is which"
        )
    return tuple(sorted(found))


def to_class_ids(mask: np.ndarray, values: MaskValues, name: str = "the mask") -> np.ndarray:
    """Class ids (uint8 H×W) of a mask drawn with ``values``; a value of no class is a
    ``DataError`` naming the file and the value."""
    pixels, channels = mask_pixels(mask)
    width = len(values[0])
    if width == 3 and channels == 1:
        pixels, channels = np.repeat(pixels[:, :, None], 3, axis=2), 3
    if channels != width:
        kind = "colours (R,G,B)" if width == 3 else "grey levels"
        raise DataError(f"{name}: the model's mask values are {kind}; this mask is not")
    flat = pixels.reshape(-1, channels).astype(np.int64)
    keys = _keys(flat)
    table = _keys(np.array(values, dtype=np.int64))
    order = np.argsort(table)
    position = np.searchsorted(table[order], keys)
    position = np.minimum(position, len(table) - 1)
    known = table[order][position] == keys
    if not known.all():
        bad = flat[np.flatnonzero(~known)[0]]
        raise DataError(
            f"{name}: holds the value {_format(tuple(int(v) for v in bad))}, which is none of "
            f"the classes' values ({', '.join(_format(v) for v in values)}); fix the mask or "
            "give --mask-values"
        )
    ids = order[position].astype(np.uint8 if len(values) <= 256 else np.uint16)
    return ids.reshape(pixels.shape[:2])


def from_class_ids(ids: np.ndarray, values: Sequence[Sequence[int]]) -> np.ndarray:
    """A predicted class-id mask drawn in ``values``: H×W grey levels or H×W×3 RGB."""
    table = np.array(values, dtype=np.uint16 if max(max(v) for v in values) > 255 else np.uint8)
    drawn = table[ids]
    return drawn[:, :, 0] if table.shape[1] == 1 else drawn


def _keys(values: np.ndarray) -> np.ndarray:
    """One integer per value (grey or colour), to look values up."""
    keys = np.zeros(len(values), dtype=np.int64)
    for channel in range(values.shape[1]):
        keys = keys * 65536 + values[:, channel]
    return keys


def _format(value: Sequence[int]) -> str:
    return str(value[0]) if len(value) == 1 else ",".join(str(v) for v in value)


#: How ``unet-hub predict`` writes masks: in the values the model was trained with
#: (255 for a one-class foreground, the grey levels or colours of ``mask_values``), or
#: as class ids (0/1 for one class).
MASK_FORMATS = ("values", "ids")


def mask_to_write(
    mask: np.ndarray, n_classes: int, mask_values: MaskValues | None, mask_format: str
) -> np.ndarray:
    """A predicted mask (``mask_from_probabilities``: 0/255, or class ids) in the format
    ``mask_format`` names; H×W, or H×W×3 RGB for colour values."""
    if mask_format not in MASK_FORMATS:
        raise ValueError(f"mask_format must be one of {MASK_FORMATS}, got {mask_format!r}")
    if mask_format == "ids":
        return (mask > 0).astype(np.uint8) if n_classes == 1 else mask
    if n_classes > 1 and mask_values:
        return from_class_ids(mask, mask_values)
    return mask
