"""Segmentation metrics accumulated over a data set."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ConfusionCounts:
    """True-positive, false-positive and false-negative pixel counts per class.

    Counts add up over batches (and, being tensors, across processes), so Dice and IoU
    come out for the whole data set rather than as a mean of per-image scores.
    """

    n_classes: int
    tp: torch.Tensor = field(init=False)
    fp: torch.Tensor = field(init=False)
    fn: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        zeros = torch.zeros(self.n_classes, dtype=torch.float64)
        self.tp, self.fp, self.fn = zeros, zeros.clone(), zeros.clone()

    def update(self, probabilities: torch.Tensor, target: torch.Tensor, threshold: float) -> None:
        """Add a batch: probabilities N×classes×H×W; target N×1×H×W of 0/1 for one
        class, N×H×W of class ids for several."""
        if self.n_classes == 1:
            pred = (probabilities > threshold).reshape(1, -1)
            true = (target > 0.5).reshape(1, -1)
        else:
            classes = torch.arange(self.n_classes, device=probabilities.device)[:, None]
            pred = probabilities.argmax(dim=1).reshape(1, -1) == classes
            true = target.reshape(1, -1) == classes
        self.tp += (pred & true).sum(dim=1).double().cpu()
        self.fp += (pred & ~true).sum(dim=1).double().cpu()
        self.fn += (~pred & true).sum(dim=1).double().cpu()

    def dice(self) -> torch.Tensor:
        """Dice per class; 1 where a class is absent from both prediction and truth."""
        denom = 2 * self.tp + self.fp + self.fn
        return torch.where(denom > 0, 2 * self.tp / denom.clamp(min=1), torch.ones_like(denom))

    def iou(self) -> torch.Tensor:
        """Intersection over union per class; 1 where a class is absent from both."""
        denom = self.tp + self.fp + self.fn
        return torch.where(denom > 0, self.tp / denom.clamp(min=1), torch.ones_like(denom))
