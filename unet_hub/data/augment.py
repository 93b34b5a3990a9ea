"""Augmentations applied identically to an image and its mask (NumPy and OpenCV).

An augmentation is called as ``augment(image, mask, *maps)`` and returns
``(image, mask, *maps)``: the mask is resampled by nearest neighbour, extra float maps
(e.g. the loss weight map) linearly, and gray-value changes touch the image only.

``PaperAugment`` is the U-Net paper's recipe (Ronneberger et al., 2015, section 3.1):
shifts, rotations, flips, smooth elastic deformations and gray-value changes, plus random
crops for training on tiles. All of its geometry is one coordinate map, so each array is
resampled once, whatever the combination.

Random choices come from torch's generator, which ``--seed`` seeds and which each
DataLoader worker gets its own seed for, so runs are reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import torch

#: The ``--augment`` modes: the seed recipe's flips, the paper's recipe, or nothing.
AUGMENT_MODES = ("flips", "paper", "none")
#: cv2.flip codes: 1 mirrors left-right, 0 up-down, -1 both; None leaves the pair as is.
FLIP_CODES = (-1, 0, 1, None)
#: Every resampling mirrors at the border (like np.pad "reflect"), as the paper's tiles do.
_BORDER = cv2.BORDER_REFLECT_101

Augment = Callable[..., tuple[np.ndarray, ...]]


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(()))


def _chance(p: float) -> bool:
    return p > 0 and float(torch.rand(())) < p


def _randint(high: int) -> int:
    """An integer in [0, high]."""
    return int(torch.randint(high + 1, ())) if high > 0 else 0


class RandomFlip:
    """The seed recipe's augmentation: one of the three flips or none, equally likely."""

    def __call__(self, image: np.ndarray, mask: np.ndarray, *maps: np.ndarray):
        code = FLIP_CODES[int(torch.randint(len(FLIP_CODES), ()))]
        if code is None:
            return image, mask, *maps
        return tuple(cv2.flip(a, code) for a in (image, mask, *maps))


class RandomCrop:
    """A random ``size``×``size`` window, the same for every array (mirrored where the
    image is smaller than the window)."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, image: np.ndarray, mask: np.ndarray, *maps: np.ndarray):
        arrays = (image, mask, *maps)
        height, width = image.shape[:2]
        pad_y, pad_x = max(0, self.size - height), max(0, self.size - width)
        if pad_y or pad_x:
            arrays = tuple(cv2.copyMakeBorder(a, 0, pad_y, 0, pad_x, _BORDER) for a in arrays)
            height, width = height + pad_y, width + pad_x
        top, left = _randint(height - self.size), _randint(width - self.size)
        window = np.s_[top : top + self.size, left : left + self.size]
        return tuple(np.ascontiguousarray(a[window]) for a in arrays)


class Compose:
    """Apply augmentations one after the other."""

    def __init__(self, steps: Sequence[Augment]):
        self.steps = list(steps)

    def __call__(self, *arrays: np.ndarray):
        for step in self.steps:
            arrays = step(*arrays)
        return arrays


# -- the paper's recipe ---------------------------------------------------------------------


@dataclass
class AugmentParams:
    """Probabilities and strengths of ``PaperAugment``; each transform is drawn on its own.

    The defaults are the single source of the ``--augment paper`` settings.
    """

    flip: bool = True  # mirror left-right and up-down, each with probability 1/2
    rot90: bool = True  # rotate by a random multiple of 90° (exact, no blurring)
    rotation: float = 45.0  # max. further rotation in degrees; with rot90, every angle
    rotation_p: float = 0.5
    shift: float = 16.0  # max. shift in px along each axis
    shift_p: float = 0.5
    elastic_std: float = 10.0  # std (px) of the random displacements of the coarse grid
    elastic_p: float = 0.5
    elastic_grid: int = 3  # the paper's 3×3 grid
    gray_p: float = 0.5  # brightness, contrast and gamma change together
    brightness: float = 0.1  # max. offset, in units of the full range
    contrast: float = 0.2  # max. relative change of the contrast around mid-gray
    gamma: float = 0.3  # gamma drawn log-uniformly in [1/(1+g), 1+g]
    crop_size: int | None = None  # output a random crop of this size (training on tiles)


def cubic_weights(positions: np.ndarray, n_knots: int) -> np.ndarray:
    """Bicubic (Keys, a = -0.75 as in OpenCV) interpolation weights, len(positions)×n_knots.

    ``positions`` are in knot units (0 = first knot, ``n_knots - 1`` = last); outside
    knots repeat the border one, so ``weights @ values`` interpolates smoothly through
    the knots and extends flat-ish beyond them.
    """
    a = -0.75
    base = np.floor(positions)
    weights = np.zeros((len(positions), n_knots))
    rows = np.arange(len(positions))
    for offset in (-1, 0, 1, 2):
        t = np.abs(positions - (base + offset))
        w = np.where(
            t <= 1,
            (a + 2) * t**3 - (a + 3) * t**2 + 1,
            np.where(t < 2, a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a, 0.0),
        )
        knot = np.clip(base + offset, 0, n_knots - 1).astype(int)
        np.add.at(weights, (rows, knot), w)
    return weights


@lru_cache(maxsize=16)
def _axis_knot_weights(extent: int, n_knots: int) -> np.ndarray:
    """Weights for every pixel of an axis of ``extent`` px whose first and last pixels
    carry the first and last knot."""
    positions = np.arange(extent) * ((n_knots - 1) / max(extent - 1, 1))
    return cubic_weights(positions, n_knots).astype(np.float32)


def _knot_weights(start: int, length: int, extent: int, n_knots: int) -> np.ndarray:
    """The rows of ``_axis_knot_weights`` for pixels ``start..start+length-1``."""
    if start >= 0 and start + length <= extent:
        return _axis_knot_weights(extent, n_knots)[start : start + length]
    positions = np.arange(start, start + length) * ((n_knots - 1) / max(extent - 1, 1))
    return cubic_weights(positions, n_knots).astype(np.float32)


def elastic_displacement(
    shape: tuple[int, int],
    std: float,
    n_knots: int = 3,
    window: tuple[int, int, int, int] | None = None,
) -> np.ndarray:
    """A smooth random displacement field, 2×h×w float32 (dy, dx) in px.

    As in the U-Net paper: displacements drawn from N(0, ``std``²) on a coarse
    ``n_knots``×``n_knots`` grid spanning an image of ``shape``, interpolated bicubically
    to every pixel. ``window`` = (top, left, h, w) evaluates the field on that part of the
    image only (the same field a crop of the full image would see).
    """
    height, width = shape
    top, left, h, w = window or (0, 0, height, width)
    knots = (torch.randn(2, n_knots, n_knots) * std).numpy().astype(np.float32)
    rows = _knot_weights(top, h, height, n_knots)
    cols = _knot_weights(left, w, width, n_knots)
    field = np.empty((2, h, w), np.float32)
    for c in range(2):
        # separable: (h×k) @ (k×k) @ (k×w), summed as k outer products; a BLAS call
        # for an inner size of 3 is slower, and erratic when torch's threads are busy
        row_part = rows @ knots[c]
        np.multiply(row_part[:, :1], cols[:, 0], out=field[c])
        for j in range(1, n_knots):
            field[c] += row_part[:, j : j + 1] * cols[:, j]
    return field


def _gray_curve(brightness: float, contrast: float, gamma: float):
    def curve(v: np.ndarray) -> np.ndarray:
        v = np.clip((v - 0.5) * contrast + 0.5 + brightness, 0.0, 1.0)
        return v**gamma

    return curve


def apply_gray_curve(image: np.ndarray, curve: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply a [0, 1] -> [0, 1] curve to an image, keeping its dtype.

    8/16-bit images go through a look-up table (one entry per gray value, so this costs
    the same whatever the curve); float images are taken to be in [0, 1].
    """
    if image.dtype in (np.uint8, np.uint16):
        top = np.iinfo(image.dtype).max
        lut = np.rint(curve(np.arange(top + 1, dtype=np.float32) / top) * top)
        lut = lut.astype(image.dtype)
        return cv2.LUT(image, lut) if image.dtype == np.uint8 else lut[image]
    if np.issubdtype(image.dtype, np.floating):
        return curve(image.astype(np.float32)).astype(image.dtype)
    return image  # other integer types have no agreed [0, 1] scale; leave them alone


class PaperAugment:
    """The U-Net paper's augmentation (see ``AugmentParams`` for what and how often).

    Flips, rotations, the shift, the crop and the elastic field are composed into one
    map from output to input coordinates, then applied with ``cv2.remap``: linear for
    the image and float maps, nearest for the mask, mirrored borders.
    """

    def __init__(self, params: AugmentParams | None = None):
        self.params = params or AugmentParams()

    def _geometry(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Input coordinates (map_x, map_y) for each output pixel; None for identity."""
        p = self.params
        out_h, out_w = (p.crop_size, p.crop_size) if p.crop_size else (height, width)
        # the output window's place in the input (centred when the crop is larger)
        top = _randint(height - out_h) if out_h <= height else -((out_h - height) // 2)
        left = _randint(width - out_w) if out_w <= width else -((out_w - width) // 2)
        angle = 90.0 * _randint(3) if p.rot90 else 0.0
        if _chance(p.rotation_p):
            angle += _uniform(-p.rotation, p.rotation)
        flip_x = -1.0 if p.flip and _chance(0.5) else 1.0
        flip_y = -1.0 if p.flip and _chance(0.5) else 1.0
        shift_x = shift_y = 0.0
        if _chance(p.shift_p):
            shift_x, shift_y = _uniform(-p.shift, p.shift), _uniform(-p.shift, p.shift)
        elastic = p.elastic_std > 0 and _chance(p.elastic_p)
        cropped = (out_h, out_w) != (height, width)
        if not (cropped or angle or shift_x or shift_y or elastic) and flip_x == flip_y == 1:
            return None

        # Output pixel (r, c), centred on the window, is rotated and flipped about the
        # window's centre, then shifted: x_in = centre + R·F·(x_out - centre) + shift.
        cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        xs = (np.arange(out_w, dtype=np.float32) - (out_w - 1) / 2)[None, :] * flip_x
        ys = (np.arange(out_h, dtype=np.float32) - (out_h - 1) / 2)[:, None] * flip_y
        centre_x, centre_y = left + (out_w - 1) / 2 + shift_x, top + (out_h - 1) / 2 + shift_y
        map_x = (cos * xs - sin * ys + centre_x).astype(np.float32)
        map_y = (sin * xs + cos * ys + centre_y).astype(np.float32)
        if elastic:
            # the field spans the whole input, so a crop sees the paper's smoothness
            dy, dx = elastic_displacement(
                (height, width),
                p.elastic_std,
                p.elastic_grid,
                window=(max(top, 0), max(left, 0), out_h, out_w),
            )
            map_x += dx
            map_y += dy
        return map_x, map_y

    def __call__(self, image: np.ndarray, mask: np.ndarray, *maps: np.ndarray):
        geometry = self._geometry(*image.shape[:2])
        if geometry is not None:
            # float maps as they are: converting them to OpenCV's fixed-point maps first
            # measured slower, even for three remaps
            image = cv2.remap(image, *geometry, cv2.INTER_LINEAR, borderMode=_BORDER)
            mask = cv2.remap(mask, *geometry, cv2.INTER_NEAREST, borderMode=_BORDER)
            maps = tuple(
                cv2.remap(m, *geometry, cv2.INTER_LINEAR, borderMode=_BORDER) for m in maps
            )
        p = self.params
        if _chance(p.gray_p):
            curve = _gray_curve(
                brightness=_uniform(-p.brightness, p.brightness),
                contrast=_uniform(1 - p.contrast, 1 + p.contrast),
                gamma=math.exp(_uniform(-1, 1) * math.log1p(p.gamma)),
            )
            image = apply_gray_curve(image, curve)
        return image, mask, *maps


def build_augment(mode: str, params: AugmentParams | None = None) -> Augment | None:
    """The training augmentation for an ``--augment`` mode (None: nothing to do).

    ``flips`` flips (when ``params.flip``) and crops; ``paper`` is ``PaperAugment``;
    ``none`` only crops, when ``params.crop_size`` asks for it.
    """
    params = params or AugmentParams()
    if mode not in AUGMENT_MODES:
        raise ValueError(f"augment must be one of {AUGMENT_MODES}, got {mode!r}")
    if mode == "paper":
        return PaperAugment(params)
    steps: list[Augment] = []
    if mode == "flips" and params.flip:
        steps.append(RandomFlip())
    if params.crop_size:
        steps.append(RandomCrop(params.crop_size))
    if not steps:
        return None
    return steps[0] if len(steps) == 1 else Compose(steps)


def describe_augment(mode: str, params: AugmentParams) -> str:
    """A short description for the recipe line of logs and model cards."""
    crop = f", {params.crop_size}² crops" if params.crop_size else ""
    if mode == "flips":
        return ("random flips" if params.flip else "no augmentation") + crop
    if mode == "none":
        return "no augmentation" + crop
    p = params
    parts = [
        "flips" if p.flip else None,
        "90° rotations" if p.rot90 else None,
        f"rotation ±{p.rotation:g}° (p={p.rotation_p:g})" if p.rotation and p.rotation_p else None,
        f"shift ±{p.shift:g}px (p={p.shift_p:g})" if p.shift and p.shift_p else None,
        f"elastic σ={p.elastic_std:g}px on {p.elastic_grid}×{p.elastic_grid} (p={p.elastic_p:g})"
        if p.elastic_std and p.elastic_p
        else None,
        f"gray values (p={p.gray_p:g})" if p.gray_p else None,
    ]
    return "paper augmentation: " + ", ".join(x for x in parts if x) + crop
