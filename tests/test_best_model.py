"""The saved best model is the epoch with the best validation score, wherever it falls in
the run: validation results are scripted so the best epoch sits in the middle."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from safetensors.torch import load_file

from unet_hub import UNet
from unet_hub.evaluate.evaluator import Evaluation
from unet_hub.files import LOG_NAME
from unet_hub.train import loop
from unet_hub.train.options import TrainConfig
from unet_hub.train.run_folder import EpochStats, RunState

#: Validation Dice and loss per epoch: the best Dice is epoch 2; the lowest loss is
#: epoch 3, so a run that chose by loss (or kept the first or last epoch) is caught.
SCRIPT = [(0.30, 0.9), (0.80, 0.7), (0.50, 0.2)]


def scripted_validation(snapshots: list[dict[str, torch.Tensor]]):
    """A stand-in for ``validate`` that returns the scripted scores and keeps a copy of
    the weights each epoch was scored with."""
    epochs = iter(SCRIPT)

    def validate(model, val_set, loss_fn, accelerator=None):
        dice, loss = next(epochs)
        snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return loss, Evaluation(1, 0.5, ["cell"], [dice], [dice / 2], pixel_error=1 - dice)

    return validate


def test_the_saved_best_model_is_the_best_middle_epoch(tmp_path, sample_data, monkeypatch):
    snapshots: list[dict[str, torch.Tensor]] = []
    monkeypatch.setattr(loop, "validate", scripted_validation(snapshots))
    out = tmp_path / "run"
    cfg = TrainConfig.from_options(
        data=str(sample_data), out=str(out), epochs=3, image_size=32, base_channels=2,
        val_fraction=0.25, lr=1e-2, seed=3,
    )  # fmt: skip
    result = loop.train(cfg)

    assert result.best_epoch == 2
    assert [s.val_dice for s in result.history] == [d for d, _ in SCRIPT]
    saved = load_file(out / "model.safetensors")
    model_keys = set(UNet.from_pretrained(out).state_dict())
    assert set(saved) == model_keys

    def same(epoch: int) -> bool:
        return all(torch.equal(saved[k], snapshots[epoch - 1][k].cpu()) for k in saved)

    assert same(2)
    assert not same(1) and not same(3)  # the weights moved, so the check can tell epochs apart
    with (out / LOG_NAME).open() as f:
        flagged = [row["epoch"] for row in csv.DictReader(f) if row["best"] == "True"]
    assert flagged == ["1", "2"]  # each new best is flagged when it happens; epoch 3 is not
    assert "from epoch 2, the best epoch by validation Dice" in (out / "README.md").read_text()


def stats(epoch: int) -> EpochStats:
    return EpochStats(epoch, 1.0, 1.0, None, None, None, None, 1e-3, 1.0)


@pytest.mark.parametrize(
    "scores, best",
    [([0.3, 0.8, 0.5], 2), ([0.3, 0.8, 0.8], 2), ([0.9, 0.1, 0.2], 1), ([0.1, 0.2, 0.3], 3)],
)
def test_the_record_keeps_the_first_epoch_of_the_best_score(scores, best):
    state = RunState()
    assert state.best_score == -math.inf
    for epoch, score in enumerate(scores, 1):
        state.record(stats(epoch), score, seconds=10.0 * epoch)
    assert (state.best_epoch, state.best_score) == (best, max(scores))
    assert [s.best for s in state.history] == [
        s > max(scores[:i], default=-math.inf) for i, s in enumerate(scores)
    ]
    assert (state.epoch, state.seconds) == (3, 30.0)
