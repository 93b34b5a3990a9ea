"""A small mixed data set, made on the fly: blobs on a textured background, written in
the ways users' data comes (8- and 16-bit, inverted contrast, other gains and offsets,
RGB tints), so that one global pixel scaling fits none of them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from conftest import write_image

#: How each variant turns an 8-bit gray image (float, 0..255) into a file's pixels.
VARIANTS = ("plain", "inverted", "dim16", "tinted", "bright_offset", "inverted16")


def blobs(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A gray image (float, bright blobs on a darker textured background) and its mask."""
    mask = np.zeros((size, size), np.uint8)
    for _ in range(rng.integers(4, 8)):
        centre = tuple(int(v) for v in rng.integers(8, size - 8, 2))
        axes = tuple(int(v) for v in rng.integers(4, 10, 2))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
    texture = cv2.GaussianBlur(rng.normal(0, 1, (size, size)), (0, 0), 2) * 60
    image = 70 + texture + (mask > 0) * 90 + rng.normal(0, 8, (size, size))
    return np.clip(image, 0, 255), mask


def as_variant(gray: np.ndarray, variant: str) -> np.ndarray:
    """The image as one kind of file would hold it."""
    if variant == "plain":
        return gray.astype(np.uint8)
    if variant == "inverted":
        return (255 - gray).astype(np.uint8)
    if variant == "dim16":  # a 16-bit camera using a tenth of its range
        return (gray * 25 + 1000).astype(np.uint16)
    if variant == "tinted":  # colour, one channel strong
        return np.stack([gray, gray * 0.5 + 40, gray * 0.3], axis=2).astype(np.uint8)
    if variant == "bright_offset":  # low contrast near the top of the range
        return (gray * 0.35 + 160).astype(np.uint8)
    if variant == "inverted16":
        return (65535 - gray * 200).astype(np.uint16)
    raise ValueError(variant)


def make_mixed_set(root: Path, per_variant: int = 3, size: int = 96, seed: int = 0) -> Path:
    """``root``/images + masks: ``per_variant`` images of each variant, named so that the
    sorted files interleave the variants (a held-out block then holds every kind)."""
    rng = np.random.default_rng(seed)
    for i in range(per_variant):
        for k, variant in enumerate(VARIANTS):
            gray, mask = blobs(rng, size)
            name = f"{i:02d}_{k}_{variant}"
            write_image(root / "images" / f"{name}.png", as_variant(gray, variant))
            write_image(root / "masks" / f"{name}.png", mask)
    return root
