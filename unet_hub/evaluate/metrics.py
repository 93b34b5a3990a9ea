"""Segmentation metrics: Dice and IoU accumulated over a data set, and the per-image
metrics of the ISBI 2012 challenge (pixel error, adapted Rand error, variation of
information) on binary cell-interior masks, strict and after border thinning."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from skimage.measure import label
from skimage.metrics import adapted_rand_error, variation_of_information
from skimage.segmentation import expand_labels


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


# -- per-image metrics of a binary segmentation (NumPy; used by unet_hub.evaluate.evaluator) -------


def pixel_error(predicted: np.ndarray, truth: np.ndarray) -> float:
    """1 - accuracy: the fraction of pixels whose binary label is wrong."""
    return float(np.mean(predicted != truth))


def foreground_counts(
    probabilities: np.ndarray, truth: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True-positive, false-positive and false-negative counts of ``probabilities >
    t`` against the boolean ``truth``, one per threshold ``t``, in a single pass.

    The probabilities are binned at the (sorted) thresholds, so any number of
    thresholds costs the same as one.
    """
    bins = np.searchsorted(thresholds, probabilities.ravel(), side="left")
    # p > thresholds[i] exactly when p falls in a bin above i
    above = np.bincount(bins, minlength=len(thresholds) + 1)
    above_true = np.bincount(bins[truth.ravel()], minlength=len(thresholds) + 1)
    predicted = above[::-1].cumsum()[::-1][1:]
    tp = above_true[::-1].cumsum()[::-1][1:]
    return tp, predicted - tp, int(truth.sum()) - tp


def f_scores(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """F1 = 2TP / (2TP + FP + FN), 1 where there is nothing to find and nothing found."""
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 1.0)


def label_cells(foreground: np.ndarray) -> np.ndarray:
    """Cell ids: the 4-connected components of a boolean cell-interior mask (0 elsewhere)."""
    return label(foreground, connectivity=1)


def adapted_rand(predicted_cells: np.ndarray, true_cells: np.ndarray) -> float:
    """Adapted Rand error (SNEMI3D/ISBI) of label images; true label 0 is not scored."""
    return float(adapted_rand_error(true_cells, predicted_cells)[0])


def variation_of_info(predicted_cells: np.ndarray, true_cells: np.ndarray) -> float:
    """Variation of information H(true|pred) + H(pred|true), in bits (scikit-image's
    log2); true label 0 (the boundary) is not scored, as in the adapted Rand error."""
    return float(np.sum(variation_of_information(true_cells, predicted_cells, ignore_labels=(0,))))


def thin_boundaries(cells: np.ndarray) -> np.ndarray:
    """The cells grown over the predicted boundary: every pixel of label 0 takes the label
    of the nearest cell (Euclidean distance), so the boundary is thinned to the lines
    where cells meet. Cells are never merged or split; an image without cells is left as
    it is.

    This is the "border thinning" of the ISBI 2012 challenge's final scoring
    (Arganda-Carreras et al. 2015, Front. Neuroanat. 9:142): the strict scores count all
    predicted boundary pixels as ONE segment, so a merely thick predicted membrane reads as
    a huge merge, while the truth's boundary is not scored at all.
    ``skimage.segmentation.expand_labels`` with an unbounded distance does exactly this
    nearest-cell assignment with one exact Euclidean distance transform, from the
    thresholded mask alone (like the strict score). A watershed on the distance map would
    compute the same partition by flooding, up to ties, for more work; a watershed on the
    probabilities would use evidence the thresholded mask does not have, which makes it a
    post-processing step of the segmentation rather than a way to score it.
    """
    if not cells.any():
        return cells
    return expand_labels(cells, distance=np.inf)


#: The per-image EM scores ``em_scores`` returns, in this order: the strict ones, on the
#: 4-connected cells with the predicted boundary as one segment, then the same after
#: ``thin_boundaries``. These are also the keys of ``unet_hub.evaluate.evaluator``'s records.
EM_SCORES = ("rand_error", "vi", "rand_error_thinned", "vi_thinned")


def em_scores(predicted: np.ndarray, true_cells: np.ndarray) -> dict[str, float]:
    """The ``EM_SCORES`` of a boolean cell-interior prediction against the true cell ids."""
    return em_scores_of_cells(label_cells(predicted), true_cells)


def em_scores_of_cells(cells: np.ndarray, true_cells: np.ndarray) -> dict[str, float]:
    """The ``EM_SCORES`` of predicted cell ids (0 = boundary) against the true cell ids."""
    thinned = thin_boundaries(cells)
    scores = (
        adapted_rand(cells, true_cells),
        variation_of_info(cells, true_cells),
        adapted_rand(thinned, true_cells),
        variation_of_info(thinned, true_cells),
    )
    return dict(zip(EM_SCORES, scores, strict=True))
