"""Training losses, and the U-Net paper's border weight map for the weighted loss.

``--loss`` picks one of ``LOSSES``: pixel-wise cross-entropy (sigmoid BCE for one class,
softmax CE for several), soft Dice, their sum, or cross-entropy weighted per pixel by
``unet_weight_map`` (Ronneberger et al., 2015, eq. 2), which makes the thin background
gaps between touching cells count much more than the rest.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LOSSES = ("bce", "dice", "bce+dice", "weighted")
#: The paper's border weight and width (px).
W0, SIGMA = 10.0, 5.0
#: Border terms below this are dropped: it bounds how far from each cell distances are
#: computed (see ``unet_weight_map``), so the map costs little even with many cells.
_NEGLIGIBLE = 1e-6


def class_balance_weights(labels: np.ndarray, n_labels: int) -> np.ndarray:
    """w_c: each pixel weighted by N / (K · N_class) for the K classes present, so every
    class carries the same total weight and the map's mean is 1."""
    counts = np.bincount(labels.ravel(), minlength=n_labels).astype(np.float64)
    present = counts > 0
    per_class = np.zeros_like(counts)
    per_class[present] = labels.size / (present.sum() * counts[present])
    return per_class[labels].astype(np.float32)


def cells_and_boxes(foreground: np.ndarray) -> tuple[np.ndarray, list[tuple[slice, slice]]]:
    """Cell ids (4-connected components of ``foreground``, 1..n; 0 elsewhere) and each
    cell's bounding box as (rows, columns) slices."""
    n, cells, stats, _ = cv2.connectedComponentsWithStats(
        foreground.astype(np.uint8), connectivity=4
    )
    boxes = [(slice(y, y + h), slice(x, x + w)) for x, y, w, h in stats[1:n, :4]]
    return cells, boxes


def nearest_two_distances(
    cells: np.ndarray, boxes: list[tuple[slice, slice]], cutoff: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the Euclidean distances d1 ≤ d2 to the nearest and second-nearest cell.

    ``cells`` holds cell ids 1..n (0 elsewhere) and ``boxes`` their bounding boxes.
    Distances are exact up to ``cutoff`` px and ``inf`` beyond: each cell's distance
    transform is computed only in its box grown by ``cutoff``, outside which every pixel
    is farther away.
    """
    height, width = cells.shape
    d1 = np.full(cells.shape, np.inf, np.float32)
    d2 = np.full(cells.shape, np.inf, np.float32)
    margin = math.ceil(cutoff) + 1
    for k, (rows, cols) in enumerate(boxes, start=1):
        y0, y1 = max(rows.start - margin, 0), min(rows.stop + margin, height)
        x0, x1 = max(cols.start - margin, 0), min(cols.stop + margin, width)
        outside = (cells[y0:y1, x0:x1] != k).astype(np.uint8)
        d = cv2.distanceTransform(outside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        d[d > cutoff] = np.inf
        near, second = d1[y0:y1, x0:x1], d2[y0:y1, x0:x1]  # views: updated in place
        np.minimum(second, np.maximum(near, d), out=second)
        np.minimum(near, d, out=near)
    return d1, d2


def unet_weight_map(
    labels: np.ndarray,
    n_labels: int = 2,
    w0: float = W0,
    sigma: float = SIGMA,
    balance: bool = True,
) -> np.ndarray:
    """The U-Net paper's weight map, H×W float32:

        w(x) = w_c(x) + w0 · exp(-(d1(x) + d2(x))² / (2σ²))   on background pixels,
        w(x) = w_c(x)                                           on cell pixels,

    with ``labels`` the class id of each pixel (0 = background), w_c the class-balancing
    weights (``class_balance_weights``), cells the 4-connected components of the
    non-background pixels, and d1, d2 the distances to the nearest and second-nearest
    cell. Terms below 1e-6 are dropped (see ``nearest_two_distances``). With
    ``balance=False``, w_c is 1 everywhere: only the gaps between cells are weighted up.
    """
    labels = np.asarray(labels)
    if balance:
        weights = class_balance_weights(labels.astype(np.int64), n_labels)
    else:
        weights = np.ones(labels.shape, np.float32)
    if w0 <= 0:
        return weights
    cells, boxes = cells_and_boxes(labels > 0)
    if len(boxes) < 2:
        return weights  # no gap between two cells to weight
    cutoff = sigma * math.sqrt(2 * math.log(w0 / _NEGLIGIBLE))
    d1, d2 = nearest_two_distances(cells, boxes, cutoff)
    background = labels == 0
    border = w0 * np.exp(-((d1[background] + d2[background]) ** 2) / (2 * sigma**2))
    weights[background] += border.astype(np.float32)
    return weights


# -- losses --------------------------------------------------------------------------------


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice over the batch, averaged over classes (sigmoid for one class,
    softmax and one-hot targets for several)."""
    if logits.shape[1] == 1:
        probs, truth = torch.sigmoid(logits), target
    else:
        probs = torch.softmax(logits, dim=1)
        truth = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
    dims = (0, 2, 3)
    overlap = (probs * truth).sum(dims)
    dice = (2 * overlap + eps) / (probs.sum(dims) + truth.sum(dims) + eps)
    return 1 - dice.mean()


def pixel_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per pixel, N×H×W: sigmoid BCE for one class, softmax CE for several."""
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits, target, reduction="none")[:, 0]
    return F.cross_entropy(logits, target, reduction="none")


class SegmentationLoss(nn.Module):
    """The ``--loss`` criterion: called as ``loss(logits, target, weights=None)``.

    ``weights`` (N×H×W, from ``unet_weight_map``) is required by ``weighted`` only.
    """

    def __init__(self, name: str = "bce"):
        super().__init__()
        if name not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {name!r}")
        self.name = name

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.name == "dice":
            return soft_dice_loss(logits, target)
        ce = pixel_cross_entropy(logits, target)
        if self.name == "weighted":
            if weights is None:
                raise ValueError("the weighted loss needs a weight map per image")
            return (ce * weights.reshape(ce.shape)).mean()
        if self.name == "bce+dice":
            return ce.mean() + soft_dice_loss(logits, target)
        return ce.mean()


def describe_loss(
    name: str, n_classes: int, w0: float = W0, sigma: float = SIGMA, balance: bool = True
) -> str:
    """A short description for the recipe line of logs and model cards."""
    ce = "BCEWithLogitsLoss" if n_classes == 1 else "CrossEntropyLoss"
    balanced = "" if balance else ", no class balancing"
    return {
        "bce": ce,
        "dice": "soft Dice loss",
        "bce+dice": f"{ce} + soft Dice loss",
        "weighted": f"{ce} weighted by the U-Net border map (w0={w0:g}, σ={sigma:g}px{balanced})",
    }[name]
