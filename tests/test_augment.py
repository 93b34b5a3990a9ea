"""Augmentations: image, mask and weight map stay aligned; elastic fields are smooth."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from unet_hub.data.augment import (
    AugmentParams,
    Compose,
    PaperAugment,
    RandomCrop,
    RandomFlip,
    apply_gray_curve,
    build_augment,
    cubic_weights,
    elastic_displacement,
)

SIZE = 96
#: Every transform off; each test switches on the one it checks, with probability 1.
NOTHING = AugmentParams(flip=False, rot90=False, rotation_p=0, shift_p=0, elastic_p=0, gray_p=0)
GEOMETRIC = {
    "flips": replace(NOTHING, flip=True),
    "90° rotations": replace(NOTHING, rot90=True),
    "free rotation": replace(NOTHING, rotation_p=1, rotation=30),
    "shift": replace(NOTHING, shift_p=1),
    "elastic": replace(NOTHING, elastic_p=1),
    "crop": replace(NOTHING, crop_size=48),
    "everything": AugmentParams(rotation_p=1, shift_p=1, elastic_p=1, gray_p=0, crop_size=64),
}


def coordinate_pair() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A synthetic pattern whose pixels say where they came from: the image holds each
    pixel's row, the extra map its column (both float, resampled linearly), the mask
    ``row * SIZE + column`` (an id, resampled by nearest neighbour)."""
    rows, cols = np.mgrid[:SIZE, :SIZE].astype(np.float32)
    mask = (rows * SIZE + cols).astype(np.uint16)
    return rows, mask, cols


@pytest.mark.parametrize("name", GEOMETRIC)
def test_geometric_transforms_move_image_mask_and_map_together(name):
    augment = PaperAugment(GEOMETRIC[name])
    image, mask, columns = coordinate_pair()
    torch.manual_seed(0)
    changed = False
    for _ in range(6):
        out_image, out_mask, out_columns = augment(image, mask, columns)
        assert out_mask.dtype == mask.dtype and out_image.shape == out_mask.shape
        source_row, source_col = np.divmod(out_mask.astype(np.float32), SIZE)
        # nearest (mask) and linear (image, map) sampling of the same point differ by at
        # most half a pixel, plus OpenCV's 1/32-px fixed-point rounding
        assert np.abs(out_image - source_row).max() <= 0.55
        assert np.abs(out_columns - source_col).max() <= 0.55
        changed |= out_mask.shape != mask.shape or not np.array_equal(out_mask, mask)
    assert changed


def test_flips_and_right_angles_are_exact():
    image, mask, _ = coordinate_pair()
    expected = {
        np.rot90(np.flip(mask, axes) if axes else mask, k).tobytes()
        for k in range(4)
        for axes in (None, 0, 1)
    }
    augment = PaperAugment(replace(NOTHING, flip=True, rot90=True))
    torch.manual_seed(1)
    seen = set()
    for _ in range(40):
        out_image, out_mask = augment(image.astype(np.uint16), mask)
        assert np.array_equal(out_image, out_mask // SIZE)  # linear at whole pixels: exact
        seen.add(out_mask.tobytes())
    assert seen <= expected and len(seen) == 8  # the eight symmetries of the square


@pytest.mark.parametrize(
    "augment", [RandomCrop(40), Compose([RandomFlip(), RandomCrop(40)]), RandomCrop(128)]
)
def test_seed_recipe_crops_and_flips_are_exact(augment):
    _, mask, _ = coordinate_pair()
    size = augment.size if isinstance(augment, RandomCrop) else 40
    torch.manual_seed(0)
    for _ in range(5):
        out_image, out_mask, out_copy = augment(mask // SIZE, mask, mask.copy())
        assert out_mask.shape == (size, size)
        assert np.array_equal(out_image, out_mask // SIZE)
        assert np.array_equal(out_copy, out_mask)


def test_elastic_field_is_smooth_and_about_the_right_size():
    torch.manual_seed(0)
    fields = np.stack([elastic_displacement((512, 512), std=10.0) for _ in range(20)])
    assert fields.shape == (20, 2, 512, 512) and fields.dtype == np.float32
    # no tearing: neighbouring displacements differ by a small fraction of a pixel
    assert np.abs(np.diff(fields, axis=2)).max() < 0.5
    assert np.abs(np.diff(fields, axis=3)).max() < 0.5
    # the knots are drawn with std 10 px, the interpolated field is a bit smoother
    assert 5 < fields.std() < 15


def test_elastic_deformation_keeps_a_gradient_monotone():
    ramp = np.tile(np.linspace(0, 1, 256, dtype=np.float32), (256, 1))
    augment = PaperAugment(replace(NOTHING, elastic_p=1))
    torch.manual_seed(0)
    for _ in range(5):
        out, _ = augment(ramp, np.zeros((256, 256), np.uint8))
        assert not np.array_equal(out, ramp)
        # away from the mirrored borders, every row still increases left to right
        inner = out[16:-16, 16:-16]
        assert (np.diff(inner, axis=1) > -1e-4).all()


def test_cubic_weights_interpolate_through_the_knots():
    w = cubic_weights(np.array([0.0, 0.5, 1.0, 1.5, 2.0]), 3)
    assert np.allclose(w.sum(axis=1), 1)
    assert np.allclose(w[[0, 2, 4]], np.eye(3))
    assert np.allclose(w @ np.full(3, 7.0), 7.0)  # a constant field stays constant


def test_gray_values_change_the_image_only_and_keep_its_dtype():
    rng = np.random.default_rng(0)
    image8 = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    mask = (image8 > 128).astype(np.uint8) * 255
    augment = PaperAugment(replace(NOTHING, gray_p=1))
    torch.manual_seed(0)
    out, out_mask = augment(image8, mask)
    assert out.dtype == np.uint8 and np.array_equal(out_mask, mask)
    assert not np.array_equal(out, image8)
    # a monotone curve: brighter input pixels stay at least as bright
    order = np.argsort(image8.ravel(), kind="stable")
    assert (np.diff(out.ravel()[order].astype(int)) >= 0).all()
    image16 = image8.astype(np.uint16) * 257
    assert apply_gray_curve(image16, lambda v: 1 - v).max() == 65535 - 257 * int(image8.min())
    as_float = apply_gray_curve(image8.astype(np.float32) / 255, lambda v: v**2)
    assert as_float.dtype == np.float32 and as_float.max() <= 1


def test_same_seed_same_augmentation():
    image, mask, columns = coordinate_pair()
    augment = PaperAugment(AugmentParams(crop_size=64))
    outputs = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        outputs.append(augment(image, mask, columns)[1])
    assert np.array_equal(outputs[0], outputs[1])
    assert not np.array_equal(outputs[0], outputs[2])


def test_build_augment_modes():
    assert build_augment("none") is None
    assert isinstance(build_augment("none", replace(NOTHING, crop_size=32)), RandomCrop)
    assert isinstance(build_augment("flips"), RandomFlip)
    assert build_augment("flips", AugmentParams(flip=False)) is None
    assert isinstance(build_augment("paper"), PaperAugment)
    with pytest.raises(ValueError, match="augment must be one of"):
        build_augment("fancy")
