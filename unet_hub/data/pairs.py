"""Finding image/mask pairs on disk and serving them as a PyTorch data set."""

from __future__ import annotations

import math
import re
from pathlib import Path

from unet_hub.data.images import (
    IMAGE_EXTENSIONS,
)
from unet_hub.errors import DataError

#: (image folder, mask folder) names recognised inside a data folder, in order of preference.
LAYOUTS = (
    ("Training_Images", "Training_Labels"),
    ("images", "masks"),
    ("image", "label"),
)

Pair = tuple[Path, Path]


def _natural_key(path: Path) -> list:
    """Sort "2" before "10"."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.stem)]


def _images_in(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in folder.iterdir():
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
            if path.stem in found:
                raise DataError(
                    f"{folder}: two files share the name {path.stem!r} "
                    f"({found[path.stem].name}, {path.name}); keep one"
                )
            found[path.stem] = path
    return found


def find_pairs(root: str | Path) -> list[Pair]:
    """Image/mask pairs matched by file stem, in natural order of the stems.

    ``root`` holds an image folder and a mask folder named as in ``LAYOUTS``.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such data folder")
    for image_dir, mask_dir in LAYOUTS:
        if (root / image_dir).is_dir() and (root / mask_dir).is_dir():
            break
    else:
        expected = ", ".join(f"{i}/ + {m}/" for i, m in LAYOUTS)
        raise DataError(f"{root}: no image and mask folders found; expected one of {expected}")
    images, masks = _images_in(root / image_dir), _images_in(root / mask_dir)
    if not images:
        raise DataError(f"{root / image_dir}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    for what, have, lack, where in (
        ("images", images, masks, mask_dir),
        ("masks", masks, images, image_dir),
    ):
        orphans = sorted(set(have) - set(lack))
        if orphans:
            names = ", ".join(have[s].name for s in orphans[:5])
            more = f" and {len(orphans) - 5} more" if len(orphans) > 5 else ""
            raise DataError(
                f"{root}: {what} without a match of the same name in {where}/: {names}{more}"
            )
    return sorted(((images[s], masks[s]) for s in images), key=lambda p: _natural_key(p[0]))


def split_validation(pairs: list[Pair], fraction: float) -> tuple[list[Pair], list[Pair]]:
    """Hold out the last contiguous block of ``fraction`` of the pairs for validation.

    Neighbouring files (e.g. consecutive slices of a volume) are alike, so a random
    sample would inflate the validation score; a contiguous block does not.
    """
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"the validation fraction must be in [0, 1), got {fraction}")
    n_val = math.ceil(len(pairs) * fraction) if fraction > 0 else 0
    if n_val and len(pairs) - n_val < 1:
        raise DataError(
            f"{len(pairs)} image(s) are too few to hold out {fraction:.0%} for validation; "
            "add images, lower the validation fraction or give a separate validation folder"
        )
    return pairs[: len(pairs) - n_val], pairs[len(pairs) - n_val :]


def parse_stems(spec: str) -> list[str | range]:
    """Parse a stem selection like ``"25-29"`` or ``"0-4,12,left"``: comma-separated
    numbers, inclusive number ranges and literal stems."""
    items: list[str | range] = []
    for token in (t.strip() for t in spec.split(",")):
        low, dash, high = token.partition("-")
        if dash and low.strip().isdigit() and high.strip().isdigit():
            items.append(range(int(low), int(high) + 1))
        elif token:
            items.append(token)
    if not items:
        raise DataError(f"no slices in {spec!r}; give e.g. 25-29 or 3,7,10-12")
    return items


def _stem_matches(stem: str, items: list[str | range]) -> bool:
    for item in items:
        if isinstance(item, range):
            if stem.isdigit() and int(stem) in item:  # "07" matches 7
                return True
        elif stem == item or (stem.isdigit() and item.isdigit() and int(stem) == int(item)):
            return True
    return False


def select_stems(pairs: list[Pair], spec: str) -> tuple[list[Pair], list[Pair]]:
    """Split pairs into those whose image stem ``spec`` selects (see ``parse_stems``)
    and the rest, both in their original order."""
    items = parse_stems(spec)
    chosen = [p for p in pairs if _stem_matches(p[0].stem, items)]
    if not chosen:
        stems = ", ".join(p[0].stem for p in pairs[:8]) + (" ..." if len(pairs) > 8 else "")
        raise DataError(f"no file matches the slices {spec!r} (the files are {stems})")
    return chosen, [p for p in pairs if not _stem_matches(p[0].stem, items)]
