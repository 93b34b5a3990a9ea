"""Warnings for when training and validation disagree.

A model can fit its training images and still fail on the validation ones: the
training loss falls while validation predicts foreground on most of the pixels. Two
signs are checked after each validated epoch, from the run's history:

- the validation foreground fraction is far from the masks' (for ``PERSIST`` epochs in a
  row, after the first ``GRACE`` epochs, when a fresh network may still be anywhere);
- the validation loss has risen over the last ``WINDOW`` epochs, well above its best,
  while the training loss fell.

The warning names the likely cause and the options that fix it, given the run's options.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from unet_hub.train.options import TrainConfig

#: Epochs before the foreground check starts.
GRACE = 2
#: Epochs in a row the foreground fractions must disagree.
PERSIST = 2
#: Predicted and true foreground fractions disagree when they are this far apart...
FOREGROUND_GAP = 0.2
#: ...or when one is this many times the other (and at least ``MIN_GAP`` apart).
FOREGROUND_RATIO = 2.0
MIN_GAP = 0.05
#: Epochs over which validation and training loss trends are compared.
WINDOW = 3
#: The validation loss counts as diverging above this multiple of its best.
LOSS_RISE = 1.25


class EpochRecord(Protocol):
    train_loss: float
    val_loss: float | None
    val_foreground: float | None
    mask_foreground: float | None


def foreground_disagrees(predicted: float | None, true: float | None) -> bool:
    """Whether a predicted foreground fraction is far from the true one."""
    if predicted is None or true is None:
        return False
    gap = abs(predicted - true)
    low, high = sorted((predicted, true))
    return gap > FOREGROUND_GAP or (gap > MIN_GAP and high > FOREGROUND_RATIO * max(low, 1e-9))


def _foreground_sign(history: Sequence[EpochRecord]) -> str | None:
    if len(history) <= GRACE or len(history) < PERSIST:
        return None
    recent = history[-PERSIST:]
    if not all(foreground_disagrees(h.val_foreground, h.mask_foreground) for h in recent):
        return None
    last = history[-1]
    return (
        f"validation predicts foreground on {last.val_foreground:.0%} of the pixels, "
        f"the masks have {last.mask_foreground:.0%}"
    )


def _loss_sign(history: Sequence[EpochRecord]) -> str | None:
    if len(history) < WINDOW + 1 or any(h.val_loss is None for h in history):
        return None
    recent = history[-(WINDOW + 1) :]
    best = min(h.val_loss for h in history[:-1])
    val_rising = all(b.val_loss > a.val_loss for a, b in zip(recent, recent[1:], strict=False))
    train_falling = recent[-1].train_loss < recent[0].train_loss
    if val_rising and train_falling and history[-1].val_loss > LOSS_RISE * best:
        return (
            f"validation loss rose to {history[-1].val_loss:.3g} (best {best:.3g}) while "
            f"the training loss fell to {history[-1].train_loss:.3g}"
        )
    return None


def _fixes(cfg: TrainConfig) -> str:
    """The options that address a model that does not carry over to validation images."""
    fixes = []
    if cfg.model.input_scaling in ("dtype", "minmax"):
        fixes.append("--input-scaling percentile (each image scaled by its own statistics)")
    if cfg.model.norm == "batch":
        fixes.append("--norm instance (no running statistics pooled over unlike images)")
    if cfg.augment.augment != "paper":
        fixes.append("--augment paper")
    if not fixes:
        return "more varied training data, or validation data closer to the training data"
    return "try --recipe auto, or " + ", ".join(fixes)


def check_epoch(history: Sequence[EpochRecord], cfg: TrainConfig) -> str | None:
    """A warning when the latest epoch of ``history`` shows training and validation
    disagreeing, naming the likely cause and the fix; None when all looks well."""
    signs = [s for s in (_foreground_sign(history), _loss_sign(history)) if s]
    if not signs:
        return None
    cause = (
        "The model does not carry over from the training to the validation images: "
        "likely their intensities or contrast differ"
    )
    if cfg.model.norm == "batch":
        cause += " (BatchNorm's running statistics, pooled over unlike images, fit none)"
    return f"{'; '.join(signs)}. {cause}; {_fixes(cfg)}"
