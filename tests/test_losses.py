"""Losses and the U-Net paper's border weight map."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import write_image
from unet_hub.data.augment import RandomFlip
from unet_hub.data.dataset import SegmentationDataset
from unet_hub.data.pairs import find_pairs
from unet_hub.train.losses import (
    SegmentationLoss,
    class_balance_weights,
    nearest_two_distances,
    unet_weight_map,
)


def two_cells() -> np.ndarray:
    """20×40: background rows 0-9; below them cell A (columns 0-14) and cell B (columns
    20-39), with a 5-px background gap (columns 15-19) between them."""
    labels = np.zeros((20, 40), np.uint8)
    labels[10:, :15] = 1
    labels[10:, 20:] = 1
    return labels


def test_weight_map_matches_the_formula_at_hand_checked_pixels():
    labels = two_cells()
    w = unet_weight_map(labels, w0=10, sigma=5)
    # class balance: 800 pixels, 350 cell, 450 background -> N / (2 N_class)
    w_cell, w_background = 800 / (2 * 350), 800 / (2 * 450)
    assert w[15, 5] == pytest.approx(w_cell) and w[19, 39] == pytest.approx(w_cell)
    # in the gap, d1 + d2 = 6 px at every pixel: column 15 is 1 px from A and 5 from B
    gap = w_background + 10 * math.exp(-(6**2) / (2 * 5**2))
    for column in range(15, 20):
        assert w[12, column] == pytest.approx(gap, rel=1e-5)
    # above cell A at (5, 5): 5 px to A, sqrt(5² + 15²) px to B (at (10, 20))
    d1, d2 = 5.0, math.hypot(5, 15)
    expected = w_background + 10 * math.exp(-((d1 + d2) ** 2) / 50)
    assert w[5, 5] == pytest.approx(expected, rel=1e-5)
    # far from both cells the border term is negligible
    assert w[0, 39] == pytest.approx(w_background, abs=1e-5)
    # without class balancing, w_c = 1
    unbalanced = unet_weight_map(labels, w0=10, sigma=5, balance=False)
    assert unbalanced[12, 17] == pytest.approx(1 + 10 * math.exp(-(6**2) / 50), rel=1e-5)
    assert unbalanced[15, 5] == 1.0


def test_without_two_cells_there_is_no_border_term():
    one = np.zeros((10, 10), np.uint8)
    one[2:8, 2:8] = 1
    assert np.allclose(unet_weight_map(one), class_balance_weights(one, 2))
    assert np.allclose(unet_weight_map(np.ones((4, 4), np.uint8)), 1.0)


def test_class_balance_weights_have_mean_one():
    labels = np.random.default_rng(0).integers(0, 3, (30, 30))
    weights = class_balance_weights(labels, 3)
    assert weights.mean() == pytest.approx(1.0)
    for k in range(3):  # every class carries the same total weight
        assert weights[labels == k].sum() == pytest.approx(900 / 3)


def test_windowed_distances_equal_full_distance_transforms():
    rng = np.random.default_rng(1)
    foreground = cv2.dilate((rng.random((64, 64)) > 0.995).astype(np.uint8), np.ones((5, 5)))
    n, cells = cv2.connectedComponents(foreground, connectivity=4)
    assert n - 1 >= 3
    full = np.stack(
        [
            cv2.distanceTransform((cells != k).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
            for k in range(1, n)
        ]
    )
    full.sort(axis=0)
    boxes = []
    for k in range(1, n):
        ys, xs = np.nonzero(cells == k)
        boxes.append((slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1)))
    d1, d2 = nearest_two_distances(cells, boxes, cutoff=20.0)
    near = full[1] <= 20
    assert np.allclose(d1[full[0] <= 20], full[0][full[0] <= 20])
    assert np.allclose(d2[near], full[1][near])
    assert np.isinf(d2[~near]).all()


def test_losses():
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 8, 8)
    target = (torch.rand(2, 1, 8, 8) > 0.5).float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    assert torch.isclose(SegmentationLoss("bce")(logits, target), bce)
    ones = torch.ones(2, 8, 8)
    assert torch.isclose(SegmentationLoss("weighted")(logits, target, ones), bce)
    assert torch.isclose(SegmentationLoss("weighted")(logits, target, 2 * ones), 2 * bce)
    dice = SegmentationLoss("dice")
    assert dice(20 * (2 * target - 1), target) < 1e-3  # confident and right
    assert dice(-20 * (2 * target - 1), target) > 0.9  # confident and wrong
    both = SegmentationLoss("bce+dice")(logits, target)
    assert torch.isclose(both, bce + dice(logits, target))
    with pytest.raises(ValueError, match="needs a weight map"):
        SegmentationLoss("weighted")(logits, target)
    with pytest.raises(ValueError, match="loss must be one of"):
        SegmentationLoss("focal")


def test_multi_class_losses_use_softmax_cross_entropy():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
    ce = F.cross_entropy(logits, target)
    assert torch.isclose(SegmentationLoss("bce")(logits, target), ce)
    weights = torch.rand(2, 8, 8)
    weighted = (F.cross_entropy(logits, target, reduction="none") * weights).mean()
    assert torch.isclose(SegmentationLoss("weighted")(logits, target, weights), weighted)
    perfect = 30 * F.one_hot(target, 3).permute(0, 3, 1, 2).float()
    assert SegmentationLoss("dice")(perfect, target) < 1e-3


def test_data_set_serves_weight_maps_that_move_with_the_mask(tmp_path):
    labels = two_cells()
    write_image(tmp_path / "images" / "a.png", (labels * 200).astype(np.uint8))
    write_image(tmp_path / "masks" / "a.png", labels * 255)
    data = SegmentationDataset(find_pairs(tmp_path), weight_map=unet_weight_map)
    x, y, w = data[0]
    assert w.shape == (20, 40) and torch.allclose(w, torch.from_numpy(unet_weight_map(labels)))
    data.augment = RandomFlip()
    torch.manual_seed(0)
    for _ in range(8):
        x, y, w = data[0]
        # the map is a function of the mask, so a flipped map is the flipped mask's map
        expected = unet_weight_map((y[0].numpy() > 0).astype(np.uint8))
        assert np.allclose(w.numpy(), expected, atol=1e-5)
