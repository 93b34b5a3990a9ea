"""Evaluating segmentations: Dice and IoU per class, and the ISBI 2012 EM metrics.

``Evaluator`` takes one (probabilities, truth) pair at a time, so memory does not grow
with the data set; both ``unet-hub evaluate`` and the training loop's validation use it.
For one-class models the foreground is read as cell interior (ISBI masks: 255 = cell
interior, 0 = membrane) and the EM metrics are computed on it:

- pixel error: 1 - accuracy at the model's threshold;
- challenge pixel error: 1 - the maximal F-score of the foreground pixels over
  thresholds (the ISBI 2012 challenge's "pixel error"), pooled over all pixels;
- adapted Rand error and variation of information of the 4-connected components of the
  thresholded foreground against those of the truth (ground-truth boundary pixels are
  not scored), per image and averaged; at the threshold, and with ``sweep=True`` also
  over ``RAND_THRESHOLDS`` to report the best threshold. These strict scores count the
  predicted boundary as one segment, so a thick predicted membrane costs like a merge;
- the same two "(thinned borders)" (the ISBI 2012 challenge's final scoring): after each
  predicted boundary pixel is given to the nearest predicted cell
  (``unet_hub.evaluate.metrics.thin_boundaries``), so the thickness of the predicted boundary no
  longer counts, only merged and split cells (and boundary pixels given to the wrong
  cell). The sweep reports them at the strict best threshold and at their own best
  threshold; as a thicker boundary closes gaps at no cost, that one tends to be high.

The strict scores stay the primary ones (the training log and the Rand columns of the
benchmarks use them); ``EM_ROWS`` names every figure, for the table and the model card.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, gather_object

from unet_hub import metric_names
from unet_hub.data.dataset import SegmentationDataset
from unet_hub.data.images import DEFAULT_MAX_PIXELS
from unet_hub.data.masks import mask_to_target
from unet_hub.data.pairs import Pair
from unet_hub.evaluate.metrics import (
    EM_SCORES,
    ConfusionCounts,
    em_scores,
    em_scores_of_cells,
    f_scores,
    foreground_counts,
    label_cells,
    pixel_error,
)
from unet_hub.infer.instances import InstanceOptions, label_instances
from unet_hub.infer.runners import probabilities_from_logits
from unet_hub.infer.segment import segment
from unet_hub.model.unet import UNet

#: Thresholds of the Rand sweep (each costs a labelling, a thinning and four scores per
#: image).
RAND_THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.05, 0.96, 0.05))
#: Thresholds of the F-score sweep (free: one histogram serves them all).
F_THRESHOLDS = np.arange(1, 100) / 100

#: The EM scores of the objects of ``unet_hub.infer.instances`` (``--instances``).
OBJECT_ROWS = {
    "rand_error": metric_names.RAND_ERROR,
    "rand_error_thinned": f"{metric_names.RAND_ERROR} {metric_names.THINNED}",
    "vi": metric_names.VI,
    "vi_thinned": f"{metric_names.VI} {metric_names.THINNED}",
}
#: The one-class metrics beyond pixel error, in the order of the table and the model card:
#: (name, ``Evaluation`` field, field of the threshold it is at, None: the model's own).
#: Rand and VI names without ``THINNED`` are the strict scores.
EM_ROWS: tuple[tuple[str, str, str | None], ...] = (
    (metric_names.CHALLENGE_PIXEL_ERROR, "challenge_pixel_error", "challenge_threshold"),
    (metric_names.RAND_ERROR, "rand_error", None),
    (f"{metric_names.RAND_ERROR}, best threshold", "best_rand_error", "best_rand_threshold"),
    (metric_names.VI, "vi", None),
    ("VI at the best Rand threshold", "vi_at_best", "best_rand_threshold"),
    (f"{metric_names.RAND_ERROR} {metric_names.THINNED}", "rand_error_thinned", None),
    (
        f"{metric_names.RAND_ERROR} {metric_names.THINNED} at the best Rand threshold",
        "rand_error_thinned_at_best",
        "best_rand_threshold",
    ),
    (
        f"{metric_names.RAND_ERROR} {metric_names.THINNED}, best threshold",
        "best_rand_error_thinned",
        "best_rand_threshold_thinned",
    ),
    (f"{metric_names.VI} {metric_names.THINNED}", "vi_thinned", None),
    (
        f"VI {metric_names.THINNED} at its best Rand threshold",
        "vi_thinned_at_best",
        "best_rand_threshold_thinned",
    ),
)


@dataclass
class Evaluation:
    """The scores of a set of images. EM metrics are None for multi-class models, the
    ``best_*`` and ``*_at_best`` ones also without a sweep. ``*_thinned`` fields are the
    scores after border thinning (see the module docstring)."""

    n_images: int
    threshold: float
    labels: list[str]
    dice: list[float]
    iou: list[float]
    pixel_error: float
    challenge_pixel_error: float | None = None
    challenge_threshold: float | None = None
    rand_error: float | None = None
    vi: float | None = None
    best_rand_error: float | None = None
    best_rand_threshold: float | None = None
    vi_at_best: float | None = None
    rand_error_thinned: float | None = None
    vi_thinned: float | None = None
    rand_error_thinned_at_best: float | None = None  # at best_rand_threshold
    best_rand_error_thinned: float | None = None
    best_rand_threshold_thinned: float | None = None
    vi_thinned_at_best: float | None = None  # at best_rand_threshold_thinned
    tta: bool = False
    #: Fractions of the pixels that are foreground (not class 0 / background) in the
    #: prediction and in the truth.
    foreground_predicted: float | None = None
    foreground_true: float | None = None
    #: With objects (``Evaluator(instances=...)``): how they were made, and their EM
    #: scores at the threshold (``EM_SCORES`` keys) and mean count per image.
    objects: str | None = None
    objects_scores: dict[str, float] | None = None
    objects_per_image: float | None = None
    sweep: list[dict[str, float]] = field(default_factory=list)
    per_image: list[dict[str, float | str]] = field(default_factory=list)

    @property
    def mean_dice(self) -> float:
        return float(np.mean(self.dice))

    def to_dict(self) -> dict:
        return asdict(self)

    def write_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    def rows(self) -> list[tuple[str, float, float | None]]:
        """(metric, value, threshold) for every metric that was computed."""
        t = self.threshold
        rows: list[tuple[str, float, float | None]] = []
        for name, dice, iou in zip(self.labels, self.dice, self.iou, strict=True):
            rows += [(metric_names.per_class(metric_names.DICE, name), dice, t)]
            rows += [(metric_names.per_class(metric_names.IOU, name), iou, t)]
        rows.append((metric_names.PIXEL_ERROR, self.pixel_error, t))
        for name, key, at in EM_ROWS:
            value = getattr(self, key)
            if value is not None:
                rows.append((name, value, getattr(self, at) if at else t))
        if self.objects_scores is not None:
            for key, name in OBJECT_ROWS.items():
                name = metric_names.of_objects(name, self.objects)
                rows.append((name, self.objects_scores[key], t))
        return rows

    def table(self) -> str:
        """The metrics as an aligned text table."""
        rows = self.rows()
        width = max(len(name) for name, _, _ in rows)
        lines = [f"{'metric':<{width}}  {'value':>7}  threshold"]
        for name, value, at in rows:
            lines.append(f"{name:<{width}}  {value:7.4f}  {'' if at is None else f'{at:.2f}'}")
        tta = ", flip TTA" if self.tta else ""
        objects = (
            f"; {self.objects_per_image:.1f} objects per image by {self.objects}"
            if self.objects_per_image is not None
            else ""
        )
        return "\n".join([*lines, f"({self.n_images} images{tta}{objects})"])

    def card_metrics(
        self, prefix: str = metric_names.VALIDATION, overlap: bool = True
    ) -> dict[str, float]:
        """The metrics under model-card names, naming the threshold where it is not the
        model's own; ``overlap=False`` leaves out Dice and IoU."""
        metrics = {}
        for name, value, at in self.rows():
            if not overlap and name.startswith((metric_names.DICE, metric_names.IOU)):
                continue
            suffix = "" if at is None or at == self.threshold else f" (at {at:.2f})"
            metrics[f"{prefix} {name}{suffix}"] = float(value)
        return metrics


class Evaluator:
    """Accumulates scores image by image; ``result()`` gives the ``Evaluation``.

    ``add`` takes the model's probabilities (H×W for one class, classes×H×W for several)
    and the truth (boolean H×W foreground for one class, class ids for several).
    """

    def __init__(
        self,
        n_classes: int,
        threshold: float = 0.5,
        labels: Sequence[str] | None = None,
        *,
        sweep: bool = False,
        tta: bool = False,
        instances: InstanceOptions | None = None,
    ):
        self.n_classes, self.threshold, self.sweep, self.tta = n_classes, threshold, sweep, tta
        self.instances = instances
        self.labels = list(labels or [f"class {i}" for i in range(n_classes)])
        self.counts = ConfusionCounts(n_classes)
        self.wrong = self.pixels = 0
        self.f_counts = np.zeros((3, len(F_THRESHOLDS)), np.int64)
        self.per_image: list[dict[str, float | str]] = []
        self.sweeps: list[np.ndarray] = []  # per image: threshold × EM_SCORES

    def add(self, probabilities: np.ndarray, truth: np.ndarray, name: str | None = None) -> None:
        name = name or str(len(self.per_image))
        probs = torch.from_numpy(np.ascontiguousarray(probabilities, dtype=np.float32))
        truth_t = torch.from_numpy(np.asarray(truth))
        if self.n_classes == 1:
            self.counts.update(probs[None, None], truth_t[None, None], self.threshold)
            predicted = probabilities > self.threshold
        else:
            self.counts.update(probs[None], truth_t[None], self.threshold)
            predicted = probabilities.argmax(axis=0)
        error = pixel_error(predicted, truth)
        self.wrong += error * truth.size
        self.pixels += truth.size
        record: dict[str, float | str] = {"name": name, "pixel_error": error}
        if self.n_classes == 1:
            self.f_counts += np.stack(foreground_counts(probabilities, truth, F_THRESHOLDS))
            true_cells = label_cells(truth)
            record.update(em_scores(predicted, true_cells))
            if self.instances is not None:
                record.update(self._object_scores(probabilities, true_cells))
            if self.sweep:
                sweep = [em_scores(probabilities > t, true_cells) for t in RAND_THRESHOLDS]
                self.sweeps.append(np.array([[s[k] for k in EM_SCORES] for s in sweep]))
        self.per_image.append(record)

    def _object_scores(self, probabilities: np.ndarray, true_cells: np.ndarray) -> dict:
        """EM scores (keys ``objects_<score>``) and count of ``label_instances``' objects."""
        objects = label_instances(
            probabilities,
            threshold=self.threshold,
            watershed=self.instances.watershed,
            min_size=self.instances.min_size,
        )
        scores = em_scores_of_cells(objects.labels, true_cells)
        return {"objects": objects.count, **{f"objects_{k}": v for k, v in scores.items()}}

    def _foreground(self) -> tuple[float, float]:
        """The predicted and the true foreground fraction (classes but the first of a
        multi-class model)."""
        c = self.counts
        first = 0 if self.n_classes == 1 else 1
        predicted = float((c.tp + c.fp)[first:].sum()) / self.pixels
        return predicted, float((c.tp + c.fn)[first:].sum()) / self.pixels

    def result(self) -> Evaluation:
        if not self.per_image:
            raise ValueError("no images were evaluated")
        evaluation = Evaluation(
            n_images=len(self.per_image),
            threshold=self.threshold,
            labels=self.labels,
            dice=self.counts.dice().tolist(),
            iou=self.counts.iou().tolist(),
            pixel_error=self.wrong / self.pixels,
            tta=self.tta,
            per_image=self.per_image,
        )
        evaluation.foreground_predicted, evaluation.foreground_true = self._foreground()
        if self.n_classes != 1:
            return evaluation
        f = f_scores(*self.f_counts)
        best_f = int(np.argmax(f))
        evaluation.challenge_pixel_error = float(1 - f[best_f])
        evaluation.challenge_threshold = float(F_THRESHOLDS[best_f])
        for key in EM_SCORES:
            setattr(evaluation, key, float(np.mean([r[key] for r in self.per_image])))
        if self.instances is not None:
            evaluation.objects = self.instances.describe()
            evaluation.objects_per_image = float(np.mean([r["objects"] for r in self.per_image]))
            evaluation.objects_scores = {
                key: float(np.mean([r[f"objects_{key}"] for r in self.per_image]))
                for key in EM_SCORES
            }
        if self.sweeps:
            mean = np.mean(self.sweeps, axis=0)  # threshold × EM_SCORES
            column = {key: mean[:, i] for i, key in enumerate(EM_SCORES)}
            best = int(np.argmin(column["rand_error"]))
            evaluation.best_rand_error = float(column["rand_error"][best])
            evaluation.best_rand_threshold = RAND_THRESHOLDS[best]
            evaluation.vi_at_best = float(column["vi"][best])
            evaluation.rand_error_thinned_at_best = float(column["rand_error_thinned"][best])
            best = int(np.argmin(column["rand_error_thinned"]))
            evaluation.best_rand_error_thinned = float(column["rand_error_thinned"][best])
            evaluation.best_rand_threshold_thinned = RAND_THRESHOLDS[best]
            evaluation.vi_thinned_at_best = float(column["vi_thinned"][best])
            evaluation.sweep = [
                {"threshold": t, **{key: float(v) for key, v in zip(EM_SCORES, row, strict=True)}}
                for t, row in zip(RAND_THRESHOLDS, mean, strict=True)
            ]
        return evaluation


def truth_from_target(target: np.ndarray, n_classes: int) -> np.ndarray:
    """What ``Evaluator.add`` compares with, from a training target (``mask_to_target``):
    boolean foreground or class ids."""
    return target[0] > 0.5 if n_classes == 1 else target


def truth_from_mask(mask: np.ndarray, n_classes: int) -> np.ndarray:
    """What ``Evaluator.add`` compares with, from a mask image."""
    return truth_from_target(mask_to_target(mask, n_classes), n_classes)


@torch.no_grad()
def validate(
    model: UNet,
    val_set: SegmentationDataset,
    loss_fn: Callable[..., torch.Tensor],
    accelerator: Accelerator | None = None,
) -> tuple[float, Evaluation]:
    """Mean loss per image and the metrics at the model's threshold (no sweep: cheap
    enough for every epoch of training) over the whole validation set.

    With several processes, process r scores images r, r + W, r + 2W... and the main
    process gathers them in order, so no image is counted twice or missed; every process
    gets the result.
    """
    model.eval()
    device = next(model.parameters()).device
    world = accelerator.num_processes if accelerator else 1
    rank = accelerator.process_index if accelerator else 0
    evaluator = Evaluator(model.n_classes, model.config.threshold, list(model.config.labels))
    total = 0.0
    for start in range(0, len(val_set), world):
        mine = None
        if start + rank < len(val_set):
            x, y, *weights = (t[None].to(device) for t in val_set[start + rank])
            with accelerator.autocast() if accelerator else contextlib.nullcontext():
                logits = model(x).float()
            loss = float(loss_fn(logits, y, *weights))
            mine = (loss, probabilities_from_logits(logits)[0].cpu().numpy(), y[0].cpu().numpy())
        gathered = gather_object([mine]) if world > 1 else [mine]
        if rank != 0:
            continue
        for index, item in enumerate(gathered, start):  # process order = image order
            if item is not None:
                loss, probabilities, target = item
                total += loss
                truth = truth_from_target(target, model.n_classes)
                scores = probabilities[0] if model.n_classes == 1 else probabilities
                evaluator.add(scores, truth, name=val_set.pairs[index][0].stem)
    result = [total / len(val_set), evaluator.result()] if rank == 0 else [None, None]
    if world > 1:
        broadcast_object_list(result)
    return result[0], result[1]


def evaluate_model(
    model: UNet,
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    *,
    names: Sequence[str] | None = None,
    threshold: float | None = None,
    tta: bool = False,
    sweep: bool = True,
    instances: InstanceOptions | None = None,
) -> Evaluation:
    """Segment each image (``segment``: overlap-tile, optional flip TTA) and score it
    against its mask; with ``instances`` (one-class models) also score the objects that
    ``label_instances`` makes of it."""
    threshold = model.config["threshold"] if threshold is None else threshold
    evaluator = Evaluator(
        model.n_classes,
        threshold,
        model.config["labels"],
        sweep=sweep,
        tta=tta,
        instances=instances,
    )
    names = names or [str(i) for i in range(len(images))]
    for image, mask, name in zip(images, masks, names, strict=True):
        probabilities = segment(model, image, tta=tta)
        evaluator.add(probabilities, truth_from_mask(mask, model.n_classes), name)
    return evaluator.result()


def evaluate_pairs(
    model: UNet,
    pairs: list[Pair],
    *,
    image_size: int | None = None,
    threshold: float | None = None,
    tta: bool = False,
    sweep: bool = True,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    instances: InstanceOptions | None = None,
) -> Evaluation:
    """Read image/mask pairs (resized as in training when ``image_size`` is given;
    images over ``max_pixels`` refused) and ``evaluate_model`` on them."""
    data = SegmentationDataset(
        pairs,
        n_channels=model.n_channels,
        n_classes=model.n_classes,
        image_size=image_size,
        input_scaling=model.config["input_scaling"],
        max_pixels=max_pixels,
        mask_values=model.config.mask_values,
    )
    return evaluate_model(
        model,
        data.images,
        data.masks,
        names=[image.stem for image, _ in pairs],
        threshold=threshold,
        tta=tta,
        sweep=sweep,
        instances=instances,
    )
