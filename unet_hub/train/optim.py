"""Optimisers and learning-rate schedules selectable from the command line."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

OPTIMIZERS = ("rmsprop", "adam", "adamw", "sgd")
SCHEDULES = ("none", "cosine", "plateau")
#: Momentum when none is given: the seed recipe's for RMSprop, the paper's for SGD.
DEFAULT_MOMENTUM = {"rmsprop": 0.9, "sgd": 0.99}
_NAMES = {"rmsprop": "RMSprop", "adam": "Adam", "adamw": "AdamW", "sgd": "SGD"}
#: ``plateau``: halve the learning rate after this many epochs without a better score.
PLATEAU_PATIENCE, PLATEAU_FACTOR = 5, 0.5


def momentum_for(name: str, momentum: float | None) -> float | None:
    """The momentum ``name`` uses (None for Adam and AdamW, which have betas instead)."""
    if name not in DEFAULT_MOMENTUM:
        return None
    return DEFAULT_MOMENTUM[name] if momentum is None else momentum


def build_optimizer(
    name: str,
    params: Iterable[torch.nn.Parameter],
    lr: float,
    weight_decay: float,
    momentum: float | None = None,
) -> torch.optim.Optimizer:
    """One of ``OPTIMIZERS`` with the given settings."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
    cls = getattr(torch.optim, _NAMES[name])
    extra = {"momentum": momentum_for(name, momentum)} if name in DEFAULT_MOMENTUM else {}
    return cls(params, lr=lr, weight_decay=weight_decay, **extra)


def describe_optimizer(name: str, lr: float, weight_decay: float, momentum: float | None) -> str:
    """E.g. ``RMSprop(lr=1e-05, weight_decay=1e-08, momentum=0.9)``."""
    text = f"{_NAMES[name]}(lr={lr:g}, weight_decay={weight_decay:g}"
    used = momentum_for(name, momentum)
    return text + (f", momentum={used:g})" if used is not None else ")")


class LRSchedule:
    """The ``--lr-schedule``: ``none``; ``cosine``, annealed to 0 over the run, by steps
    or, with a time budget, by whichever of steps and time is further along (so a
    budget-bound run still ends on a small rate); ``plateau``, halved after
    ``PLATEAU_PATIENCE`` epochs without a better validation score."""

    def __init__(
        self,
        name: str,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        budget_seconds: float | None = None,
    ):
        if name not in SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {SCHEDULES}, got {name!r}")
        self.name, self.optimizer = name, optimizer
        self.total_steps, self.budget = max(total_steps, 1), budget_seconds
        self.base = [group["lr"] for group in optimizer.param_groups]
        self.plateau = (
            torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="max", factor=PLATEAU_FACTOR, patience=PLATEAU_PATIENCE
            )
            if name == "plateau"
            else None
        )

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def after_step(self, steps_done: int, seconds: float) -> None:
        """Call after every optimisation step."""
        if self.name != "cosine":
            return
        progress = steps_done / self.total_steps
        if self.budget:
            progress = max(progress, seconds / self.budget)
        factor = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        for group, base in zip(self.optimizer.param_groups, self.base, strict=True):
            group["lr"] = base * factor

    def after_epoch(self, score: float) -> None:
        """Call after every epoch with the score that picks the best model."""
        if self.plateau is not None:
            self.plateau.step(score)

    def state_dict(self) -> dict:
        """What a checkpoint needs to continue the schedule (JSON-able)."""
        return {"plateau": self.plateau.state_dict() if self.plateau is not None else None}

    def load_state_dict(self, state: dict) -> None:
        if self.plateau is not None and state.get("plateau"):
            self.plateau.load_state_dict(state["plateau"])


def describe_schedule(name: str) -> str:
    return {
        "none": "",
        "cosine": ", cosine learning-rate decay",
        "plateau": f", learning rate x{PLATEAU_FACTOR:g} after {PLATEAU_PATIENCE} flat epochs",
    }[name]
