"""A synthetic nuclei data set shaped like the one users bring: fluorescence,
bright-field and H&E-like colour images of 256 to over 1000 px, in 8 and 16 bits, with
the nuclei a minority of the pixels.

    python benchmarks/synthetic_nuclei.py OUT [--count 100] [--seed 0]

Every image is drawn from scratch (nothing is copied from a real data set):

- nuclei: irregular blobs, several sizes per image (a per-image magnification), some
  clumped and touching, each with its own brightness (some dim) and chromatin texture;
- fluorescence: bright nuclei on a dark background with uneven autofluorescence and
  signal-dependent noise, half of them written as 16-bit with a camera offset;
- bright-field: darker, low-contrast nuclei on a bright, unevenly lit background, with
  darker cytoplasm around some nuclei that is *not* foreground;
- H&E-like: purple nuclei on pink stroma and white gaps, in RGB.

The stems are 000..N-1 with the modalities interleaved, so a held-out block of
consecutive stems (``80-99`` of 100) holds every kind. Masks: 255 = nucleus, 0 = rest.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

MODALITIES = ("fluorescence", "brightfield", "he")
SIDES = np.arange(256, 1025, 32)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Low-frequency noise of unit spread: uneven illumination, stroma, texture."""
    field = cv2.GaussianBlur(rng.normal(0, 1, shape), (0, 0), sigma)
    return field / (field.std() + 1e-9)


def _blob(rng: np.random.Generator, radius: float) -> np.ndarray:
    """The outline (N×2 int32, around 0,0) of an irregular, elongated nucleus."""
    angles = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    wobble = sum(
        rng.uniform(0, 0.08) * np.cos(k * angles + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5)
    )
    elongation, tilt = rng.uniform(0.55, 1.0), rng.uniform(0, np.pi)
    x = radius * (1 + wobble) * np.cos(angles)
    y = radius * (1 + wobble) * np.sin(angles) * elongation
    xr = x * np.cos(tilt) - y * np.sin(tilt)
    yr = x * np.sin(tilt) + y * np.cos(tilt)
    return np.stack([xr, yr], axis=1).round().astype(np.int32)


def nuclei(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A label image of nuclei (0 = none, k = nucleus k) and each nucleus' brightness."""
    h, w = shape
    labels = np.zeros(shape, np.int32)
    scale = rng.uniform(0.6, 1.7)  # magnification: nuclei of 4 to 20 px radius
    target = rng.uniform(0.06, 0.28)  # the foreground fraction this image aims at
    brightness = [0.0]
    while (labels > 0).mean() < target and len(brightness) < 2000:
        centre = rng.uniform([0, 0], [w, h])
        for _ in range(rng.choice([1, 1, 1, 2, 3])):  # some nuclei come in clumps
            radius = rng.uniform(6, 12) * scale
            outline = _blob(rng, radius) + centre.round().astype(np.int32)
            cv2.fillPoly(labels, [outline], len(brightness))
            brightness.append(rng.uniform(0.25, 1.0))  # some nuclei are dim
            centre = centre + rng.normal(0, 1, 2) * radius * 1.6
    return labels, np.array(brightness)


def _nucleus_signal(rng: np.random.Generator, labels: np.ndarray, brightness: np.ndarray):
    """Per-pixel nucleus signal in [0, 1] with chromatin texture, optically blurred."""
    texture = 1 + 0.18 * _smooth_noise(rng, labels.shape, 1.5)
    signal = brightness[labels] * texture * (labels > 0)
    return cv2.GaussianBlur(signal, (0, 0), rng.uniform(0.8, 1.6))


def fluorescence(rng, labels, brightness) -> np.ndarray:
    """Bright nuclei on a dark, unevenly autofluorescent background (float, 0-255)."""
    signal = 25 + 200 * _nucleus_signal(rng, labels, brightness)
    background = 12 + 6 * _smooth_noise(rng, labels.shape, 40)
    image = background + signal - 25
    return image + rng.normal(0, 1, image.shape) * (2 + 0.6 * np.sqrt(np.clip(image, 0, None)))


def brightfield(rng, labels, brightness) -> np.ndarray:
    """Darker, low-contrast nuclei and some darker cytoplasm on uneven bright light."""
    h, w = labels.shape
    light = 200 + 18 * _smooth_noise(rng, (h, w), 80) + np.linspace(-15, 15, w)[None, :]
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (25, 25))
    cytoplasm = cv2.dilate((labels > 0).astype(np.uint8), kernel) * (rng.random() < 0.7)
    cytoplasm = cv2.GaussianBlur(cytoplasm.astype(np.float64), (0, 0), 4)
    image = light - 14 * cytoplasm - 70 * _nucleus_signal(rng, labels, brightness)
    return image + rng.normal(0, 5, image.shape)


def hematoxylin_eosin(rng, labels, brightness) -> np.ndarray:
    """Purple nuclei on pink stroma with white gaps (RGB float, 0-255)."""
    stroma = np.clip(0.5 + 0.5 * _smooth_noise(rng, labels.shape, 12), 0, 1)[..., None]
    white, pink = np.array([238, 225, 232]), np.array([222, 150, 190])
    purple = np.array([rng.uniform(70, 120), rng.uniform(40, 80), rng.uniform(120, 170)])
    nucleus = np.clip(_nucleus_signal(rng, labels, brightness) * 1.6, 0, 1)[..., None]
    tissue = white * (1 - stroma) + pink * stroma
    image = tissue * (1 - nucleus) + purple * nucleus
    return image + rng.normal(0, 4, image.shape)


def make_image(rng: np.random.Generator, modality: str, shape) -> tuple[np.ndarray, np.ndarray]:
    """One image as its file would hold it (uint8/uint16, gray or RGB) and its mask."""
    labels, brightness = nuclei(rng, shape)
    mask = np.where(labels > 0, 255, 0).astype(np.uint8)
    if modality == "fluorescence":
        image = np.clip(fluorescence(rng, labels, brightness), 0, 255)
        if rng.random() < 0.5:  # a 16-bit camera: offset, a fraction of the range used
            return (image * rng.uniform(8, 60) + 400).astype(np.uint16), mask
        return image.astype(np.uint8), mask
    if modality == "brightfield":
        return np.clip(brightfield(rng, labels, brightness), 0, 255).astype(np.uint8), mask
    return np.clip(hematoxylin_eosin(rng, labels, brightness), 0, 255).astype(np.uint8), mask


def make_nuclei_set(root: Path, count: int = 100, seed: int = 0) -> Path:
    """``root``/images + masks: ``count`` images, modalities interleaved by stem."""
    rng = np.random.default_rng(seed)
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        h = int(rng.choice(SIDES))
        w = int(min(1100, round(h * rng.choice([1.0, 1.0, 1.25, 4 / 3]) / 16) * 16))
        image, mask = make_image(rng, MODALITIES[i % len(MODALITIES)], (h, w))
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(root / "images" / f"{i:03d}.png"), image)
        cv2.imwrite(str(root / "masks" / f"{i:03d}.png"), mask)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write images/ and masks/ into")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(make_nuclei_set(args.out, args.count, args.seed))


if __name__ == "__main__":
    main()
