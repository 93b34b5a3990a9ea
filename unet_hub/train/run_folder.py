"""A training run's folder and its record: where everything a run writes goes, and what
a checkpoint says about how far the run is.

``--out`` holds the best model (a ``save_pretrained`` folder), ``last/`` (the last
epoch's model), ``interrupted/`` (after Ctrl-C), the training log and its curve, and the
checkpoint a run resumes from. In a multi-process run only the main process writes.
"""

from __future__ import annotations

import csv
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from unet_hub import metric_names
from unet_hub.files import CHECKPOINT_NAME, CURVE_NAME, INTERRUPTED_DIR, LAST_DIR, LOG_NAME
from unet_hub.model.save import save_model_folder
from unet_hub.model.unet import UNet
from unet_hub.train.checkpoint import (
    read_checkpoint_state,
    remove_stale_temporaries,
    save_checkpoint,
)


@dataclass
class EpochStats:
    """One row of the training log."""

    epoch: int
    train_loss: float
    val_loss: float | None
    val_dice: float | None
    val_iou: float | None
    val_pixel_error: float | None
    val_rand_error: float | None
    lr: float
    seconds: float
    best: bool = False
    val_foreground: float | None = None  # fraction of validation pixels predicted foreground
    mask_foreground: float | None = None  # fraction of validation mask pixels that are
    warning: str | None = None  # training and validation disagree (unet_hub.train.diagnose)
    val_rand_error_thinned: float | None = None  # logged since --select-by rand-thinned


@dataclass
class RunState:
    """How far a run is: what a checkpoint stores besides the tensors."""

    epoch: int = 0  # the last completed epoch
    samples: int = 0  # training samples seen, over all processes
    seconds: float = 0.0  # time used, for --max-minutes
    best_score: float = -math.inf
    best_epoch: int = 0
    history: list[EpochStats] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)  # every invocation, resumes included

    @classmethod
    def from_dict(cls, state: dict) -> RunState:
        run = cls(**{k: v for k, v in state.items() if k != "history"})
        run.history = [EpochStats(**h) for h in state["history"]]
        return run

    def record(self, stats: EpochStats, score: float, seconds: float) -> None:
        """Add a finished epoch; ``score`` (higher is better) decides the best one."""
        stats.best = score > self.best_score
        self.history.append(stats)
        if stats.best:
            self.best_score, self.best_epoch = score, stats.epoch
        self.epoch, self.seconds = stats.epoch, seconds


@dataclass
class CardFacts:
    """What a trained model's card says about its training (the card's ``training``
    facts), and the name of the data its metrics were measured on."""

    data: str
    val: str | None
    recipe: str
    epochs: int | str
    command: str
    seed: int
    notes: list[str]
    eval_dataset: str
    curve: str | None = None
    selected_by: str = metric_names.VAL_DICE
    dataset_id: str | None = None  # a Hub dataset id, linked from the card
    base_model: str | None = None  # the Hub model it was fine-tuned from (--init-from)
    init_from: str | None = None  # the same in words, also for a local folder
    hardware: str | None = None  # e.g. "NVIDIA H200, torch 2.11.0" (the card's exact recipe)

    def card_kwargs(self) -> dict[str, Any]:
        """What a saved model's card needs besides its metrics and training facts."""
        return {
            "eval_dataset": self.eval_dataset,
            "dataset_id": self.dataset_id,
            "base_model": self.base_model,
        }

    def training(self, epoch: int | str, selected: str, **more: str) -> dict[str, Any]:
        """The card's ``training`` facts for the model of ``epoch``, chosen as ``selected``."""
        facts = {
            "data": self.data,
            "val": self.val,
            "recipe": self.recipe,
            "epochs": self.epochs,
            "command": self.command,
            "seed": self.seed,
            "notes": self.notes,
        }
        if self.curve:
            facts["curve"] = self.curve
        if self.init_from:
            facts["init_from"] = self.init_from
        if self.hardware:
            facts["hardware"] = self.hardware
        return facts | {"epoch": epoch, "selected": selected, **more}

    def best(self, epoch: int) -> dict[str, Any]:
        return self.training(epoch, f"the best epoch by {self.selected_by}")


class RunFolder:
    """The ``--out`` folder of a run; every write is skipped on the other processes."""

    def __init__(self, path: str | Path, main: bool = True):
        self.path, self.main = Path(path), main
        self.log = self.path / LOG_NAME
        self.checkpoint = self.path / CHECKPOINT_NAME
        self.last = self.path / LAST_DIR
        self.interrupted = self.path / INTERRUPTED_DIR
        self.curve = self.path / CURVE_NAME

    def start(self, history: list[EpochStats]) -> None:
        """Create the folder, drop half-written checkpoints, and write the log of the
        epochs a resumed run already has."""
        if not self.main:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.path)
        self.log.unlink(missing_ok=True)
        for stats in history:
            self.append_log(stats)

    def append_log(self, stats: EpochStats) -> None:
        row = asdict(stats)
        new = not self.log.exists()
        with self.log.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow({k: "" if v is None else v for k, v in row.items()})

    def save_epoch(
        self,
        net: UNet,
        stats: EpochStats,
        facts: CardFacts,
        metrics: dict[str, float],
        half: bool,
        checkpoint: tuple[
            torch.nn.Module, torch.optim.Optimizer, dict[str, Any], torch.nn.Module | None
        ],
    ) -> None:
        """Save the epoch's model as ``last/`` (and as the best model when it is), its log
        row, and then the checkpoint (the trained model, the optimiser, the run's state and
        the averaged weights): the checkpoint is what says the epoch is complete."""
        if not self.main:
            return
        card = {"metrics": metrics, "half": half, **facts.card_kwargs()}
        last = facts.training(stats.epoch, "the last epoch")
        save_model_folder(net, self.last, training=last, **card)
        if stats.best:
            save_model_folder(net, self.path, training=facts.best(stats.epoch), **card)
        self.append_log(stats)
        trained, optimizer, state, ema = checkpoint
        save_checkpoint(self.checkpoint, trained, optimizer, state, ema)

    def save_interrupted(self, net: UNet, epoch: int, facts: CardFacts) -> None:
        """On Ctrl-C: keep the model as it was and say how to go on, from what is on disk
        (the checkpoint is written last, so it is the one record that is always whole)."""
        if not self.main:
            return
        training = facts.training(f"{epoch} (interrupted)", "the model when training was stopped")
        save_model_folder(net, self.interrupted, training=training)
        saved = read_checkpoint_state(self.checkpoint)["run"] if self.checkpoint.exists() else {}
        if saved.get("epoch"):
            how = (
                f"the best model (epoch {saved['best_epoch']}) is in {self.path}/; continue "
                f"from the end of epoch {saved['epoch']} with: python train.py --resume "
                f"{self.path}"
            )
        else:
            how = "no epoch was complete, so there is no checkpoint to resume from"
        print(
            f"\ninterrupted in epoch {epoch}: the model as it was is in {self.interrupted}/; {how}",
            file=sys.stderr,
        )

    def plot_curve(self) -> bool:
        """Draw the training curve next to the log, when matplotlib is installed."""
        from unet_hub.train.curves import PlotError, plot_training_curve  # matplotlib is slow

        if not self.main:
            return False
        try:
            plot_training_curve(self.log, self.curve)
        except PlotError:
            return False  # no matplotlib (the `plot` extra): the log is still there
        return True
