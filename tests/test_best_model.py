"""The saved best model is the epoch with the best validation score, wherever it falls in
the run: validation results are scripted so the best epoch sits in the middle."""

from __future__ import annotations

import csv
import dataclasses
import json
import math

import pytest
import torch
from safetensors.torch import load_file

from unet_hub import UNet
from unet_hub.evaluate.evaluator import Evaluation
from unet_hub.files import (
    CHECKPOINT_NAME,
    CURVE_NAME,
    INTERRUPTED_DIR,
    LAST_DIR,
    LOG_NAME,
)
from unet_hub.hub.cards import card_eval_dataset, card_kwargs, card_metrics, load_model_card
from unet_hub.train import loop
from unet_hub.train.checkpoint import read_checkpoint, read_checkpoint_state
from unet_hub.train.options import TrainConfig
from unet_hub.train.run_folder import CardFacts, EpochStats, RunFolder, RunState

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


# -- the run folder: what is written where, in process ----------------------------------


def facts(**more) -> CardFacts:
    return CardFacts(
        data="isbi (4 images)", val="isbi (1 image)", recipe="RMSprop", epochs=3,
        command="train.py --data isbi --out run", seed=5, notes=["a note"],
        eval_dataset="isbi", **more,
    )  # fmt: skip


def full_stats(epoch: int, best: bool = False) -> EpochStats:
    return EpochStats(epoch, 0.5, 0.4, 0.7, None, 0.1, 0.2, 1e-3, 2.0, best=best)


def training_facts(folder) -> dict:
    return card_kwargs(load_model_card(str(folder)))["training"]


def test_card_facts_say_how_the_model_was_trained_and_chosen():
    plain = facts().training(2, "the last epoch")
    assert plain == {
        "data": "isbi (4 images)", "val": "isbi (1 image)", "recipe": "RMSprop", "epochs": 3,
        "command": "train.py --data isbi --out run", "seed": 5, "notes": ["a note"],
        "epoch": 2, "selected": "the last epoch",
    }  # fmt: skip
    full = facts(curve="curve.png", init_from="isbi2012").training(2, "x", extra="y")
    assert (full["curve"], full["init_from"], full["extra"]) == ("curve.png", "isbi2012", "y")
    best = facts().best(4)
    assert (best["epoch"], best["selected"]) == (4, "the best epoch by validation Dice")
    chosen = facts(selected_by="validation Rand error").best(1)["selected"]
    assert chosen == "the best epoch by validation Rand error"
    linked = facts(dataset_id="alice/cells", base_model="alice/unet")
    assert linked.card_kwargs() == {
        "eval_dataset": "isbi",
        "dataset_id": "alice/cells",
        "base_model": "alice/unet",
    }


def test_the_run_folders_files_have_their_names(tmp_path):
    run = RunFolder(str(tmp_path / "run"))
    assert run.path == tmp_path / "run"
    assert (run.log, run.checkpoint, run.curve) == (
        run.path / LOG_NAME,
        run.path / CHECKPOINT_NAME,
        run.path / CURVE_NAME,
    )
    assert (run.last, run.interrupted) == (run.path / LAST_DIR, run.path / INTERRUPTED_DIR)


def test_start_makes_the_folder_drops_half_written_checkpoints_and_rewrites_the_log(tmp_path):
    run = RunFolder(tmp_path / "new" / "run")
    run.start([])
    assert run.path.is_dir() and not run.log.exists()
    stale = run.path / f".{CHECKPOINT_NAME}.tmp-123"
    stale.write_bytes(b"half")
    run.log.write_text("epoch\n9\n")
    run.start([full_stats(1, best=True), full_stats(2)])
    assert not stale.exists()
    with run.log.open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["epoch"], r["best"]) for r in rows] == [("1", "True"), ("2", "False")]


def test_the_log_has_one_header_the_fields_in_order_and_blanks_for_none(tmp_path):
    run = RunFolder(tmp_path)
    run.append_log(full_stats(1))
    run.append_log(full_stats(2, best=True))
    lines = run.log.read_text().splitlines()
    assert lines[0] == ",".join(f.name for f in dataclasses.fields(EpochStats))
    assert lines[1] == "1,0.5,0.4,0.7,,0.1,0.2,0.001,2.0,False,,,,"
    assert lines[2].startswith("2,") and len(lines) == 3


def _optimizer(net: UNet) -> torch.optim.Optimizer:
    return torch.optim.SGD(net.parameters(), lr=0.1)


def test_save_epoch_writes_last_the_best_model_the_log_and_then_the_checkpoint(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.start([])
    net = UNet(base_channels=2)
    card = facts()
    state = {"run": {"epoch": 1, "best_epoch": 1}}
    run.save_epoch(net, full_stats(1, best=True), card, {"validation Dice": 0.7}, False,
                   (net, _optimizer(net), state, None))  # fmt: skip
    assert training_facts(run.last)["selected"] == "the last epoch"
    assert training_facts(run.path)["selected"] == "the best epoch by validation Dice"
    assert card_metrics(load_model_card(str(run.path))) == {"validation Dice": 0.7}
    assert card_eval_dataset(load_model_card(str(run.last))) == "isbi"
    assert read_checkpoint_state(run.checkpoint)["run"] == state["run"]
    best_weights = (run.path / "model.safetensors").read_bytes()

    torch.nn.init.constant_(net.outc.weight, 3.0)  # epoch 2: other weights, not the best
    state = {"run": {"epoch": 2, "best_epoch": 1}}
    run.save_epoch(net, full_stats(2), card, {"validation Dice": 0.6}, True,
                   (net, _optimizer(net), state, None))  # fmt: skip
    assert (run.path / "model.safetensors").read_bytes() == best_weights
    assert training_facts(run.path)["epoch"] == 1 and training_facts(run.last)["epoch"] == 2
    assert load_file(run.last / "model.safetensors")["outc.weight"].dtype == torch.float16
    assert read_checkpoint_state(run.checkpoint)["run"]["epoch"] == 2
    assert [line[:2] for line in run.log.read_text().splitlines()[1:]] == ["1,", "2,"]
    averaged = UNet(base_channels=2)
    run.save_epoch(net, full_stats(3), card, {}, False, (net, _optimizer(net), state, averaged))
    tensors, _ = read_checkpoint(run.checkpoint)
    assert torch.equal(tensors["ema/outc.weight"], averaged.outc.weight)  # --ema's weights


def test_only_the_main_process_writes(tmp_path, capsys):
    run = RunFolder(tmp_path / "run", main=False)
    net = UNet(base_channels=2)
    run.start([full_stats(1)])
    run.save_epoch(net, full_stats(1, best=True), facts(), {}, False,
                   (net, _optimizer(net), {}, None))  # fmt: skip
    run.save_interrupted(net, 1, facts())
    assert run.plot_curve() is False
    assert not run.path.exists() and capsys.readouterr().err == ""


def test_ctrl_c_keeps_the_model_and_says_how_to_go_on_from_what_is_on_disk(tmp_path, capsys):
    run = RunFolder(tmp_path / "run")
    run.start([])
    net = UNet(base_channels=2)
    run.save_interrupted(net, 1, facts())
    assert training_facts(run.interrupted) == {
        **facts().training("1 (interrupted)", "the model when training was stopped")
    }
    err = capsys.readouterr().err
    assert err == (
        f"\ninterrupted in epoch 1: the model as it was is in {run.interrupted}/; no epoch "
        "was complete, so there is no checkpoint to resume from\n"
    )
    state = {"run": {"epoch": 3, "best_epoch": 2}}
    run.save_epoch(net, full_stats(3), facts(), {}, False, (net, _optimizer(net), state, None))
    run.save_interrupted(net, 4, facts())
    assert capsys.readouterr().err == (
        f"\ninterrupted in epoch 4: the model as it was is in {run.interrupted}/; the best "
        f"model (epoch 2) is in {run.path}/; continue from the end of epoch 3 with: python "
        f"train.py --resume {run.path}\n"
    )


def test_the_curve_is_drawn_next_to_the_log(tmp_path):
    run = RunFolder(tmp_path)
    assert run.plot_curve() is False  # no log yet: nothing to draw, and no error
    assert not run.curve.exists()
    run.append_log(full_stats(1, best=True))
    run.append_log(full_stats(2))
    assert run.plot_curve() is True
    assert run.curve.read_bytes().startswith(b"\x89PNG")


def test_the_run_state_round_trips_through_the_checkpoints_json():
    state = RunState(epoch=2, samples=8, seconds=3.5, commands=["train.py --out run"])
    state.record(full_stats(1), 0.3, 1.0)
    state.record(full_stats(2), 0.6, 3.5)
    saved = json.loads(json.dumps(dataclasses.asdict(state)))
    back = RunState.from_dict(saved)
    assert back == state
    assert all(isinstance(s, EpochStats) for s in back.history)
