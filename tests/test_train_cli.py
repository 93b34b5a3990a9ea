"""End to end through the faces: train.py, unet-hub train / predict."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT
from unet_hub import UNet, predict_mask, read_image, segment
from unet_hub.data.pairs import find_pairs
from unet_hub.evaluate.evaluator import evaluate_pairs
from unet_hub.train.loop import train
from unet_hub.train.optim import PLATEAU_FACTOR, PLATEAU_PATIENCE, LRSchedule, build_optimizer
from unet_hub.train.options import TrainConfig


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A 2-epoch run of train.py on the 4 shipped sample pairs at 64×64."""
    out = tmp_path_factory.mktemp("run") / "model"
    data = ROOT / "examples" / "isbi2012" / "train"
    result = run(
        "train.py",
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--image-size",
        "64",
        "--base-channels",
        "4",
        "--val-fraction",
        "0.25",
        "--labels",
        "cell interior",
    )
    assert result.returncode == 0, result.stderr
    return out, result


def test_training_writes_a_loadable_model_and_a_log(trained):
    out, result = trained
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "checkpoint.safetensors",
        "config.json",
        "last",
        "model.safetensors",
        "training_curve.png",
        "training_log.csv",
    ]
    assert sorted(p.name for p in (out / "last").iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    assert (
        not list(out.rglob("*.pth"))
        and not list(out.rglob("*.pt"))
        and not list(out.rglob("*.bin"))
    )
    model = UNet.from_pretrained(out)
    assert model.config["base_channels"] == 4 and model.config["labels"] == ["cell interior"]
    rows = list(csv.DictReader((out / "training_log.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    for r in rows:
        assert float(r["train_loss"]) > 0 and 0 <= float(r["val_dice"]) <= 1
        assert float(r["seconds"]) > 0
    # The best model is the one with the highest validation Dice.
    best = max(rows, key=lambda r: float(r["val_dice"]))
    assert (
        f"from epoch {best['epoch']}, the best epoch by validation Dice"
        in (out / "README.md").read_text()
    )
    assert "step/s" in result.stderr  # the tqdm progress bar
    assert "best epoch" in result.stdout


def test_best_model_is_chosen_by_validation_dice(tmp_path, sample_data):
    cfg = TrainConfig.from_options(
        data=str(sample_data),
        out=str(tmp_path / "m"),
        epochs=3,
        image_size=32,
        base_channels=2,
        val_fraction=0.25,
        lr=1e-3,
    )
    result = train(cfg)
    dice = [s.val_dice for s in result.history]
    assert result.best_epoch == 1 + int(np.argmax(dice))
    saved = UNet.from_pretrained(tmp_path / "m")
    last = UNet.from_pretrained(tmp_path / "m" / "last")
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        same_as_last = torch.equal(saved(x), last(x))
    assert same_as_last == (result.best_epoch == 3)


def test_same_seed_same_model(tmp_path, sample_data):
    weights = []
    for name in ("a", "b"):
        cfg = TrainConfig.from_options(
            data=str(sample_data),
            out=str(tmp_path / name),
            epochs=1,
            image_size=32,
            base_channels=2,
            seed=7,
        )
        train(cfg)
        weights.append((tmp_path / name / "model.safetensors").read_bytes())
    assert weights[0] == weights[1]


def test_predict_cli_writes_one_mask_per_image(trained, tmp_path, sample_test_image):
    model_dir, _ = trained
    second = tmp_path / "in" / "second.png"
    second.parent.mkdir()
    cv2.imwrite(str(second), cv2.resize(cv2.imread(str(sample_test_image)), (77, 45)))
    result = run(
        "-m",
        "unet_hub.cli",
        "predict",
        str(model_dir),
        str(sample_test_image),
        str(second),
        "--out",
        str(tmp_path / "preds"),
    )
    assert result.returncode == 0, result.stderr
    masks = sorted((tmp_path / "preds").iterdir())
    assert [m.name for m in masks] == ["00.png", "second.png"]
    mask = cv2.imread(str(masks[0]), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (512, 512) and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 255}
    expected = predict_mask(UNet.from_pretrained(model_dir), read_image(sample_test_image))
    assert np.array_equal(mask, expected)
    assert cv2.imread(str(masks[1]), cv2.IMREAD_UNCHANGED).shape == (45, 77)


def test_predict_cli_reports_a_bad_image_and_goes_on(trained, tmp_path, sample_test_image):
    model_dir, _ = trained
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    result = run(
        "-m",
        "unet_hub.cli",
        "predict",
        str(model_dir),
        str(bad),
        str(sample_test_image),
        "--out",
        str(tmp_path / "preds"),
    )
    assert result.returncode == 1
    assert f"error: {bad}: this is a text file, not an image" in result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "preds" / "00.png").exists()


def test_cli_bad_data_is_one_line_not_a_traceback(tmp_path):
    (tmp_path / "data" / "images").mkdir(parents=True)
    result = run("train.py", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: ")
    assert "no image and mask folders" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_groups_the_options_by_concern():
    result = run("train.py", "--help")
    titles = [line[:-1] for line in result.stdout.splitlines() if re.fullmatch(r"\w[\w ]*:", line)]
    assert titles == [
        "options",
        "data",
        "model",
        "augmentation",
        "loss",
        "optimiser",
        "schedule and budget",
        "run",
        "system",
        "output and publishing",
    ]
    model_part = result.stdout.split("\nmodel:\n")[1].split("\naugmentation:\n")[0]
    assert "--base-channels" in model_part and "--labels" in model_part
    assert "--lr" not in model_part


def test_the_old_name_of_an_option_value_still_works_with_a_note(tmp_path):
    out = tmp_path / "o"
    result = run(
        *("train.py", "--data", str(ROOT / "examples" / "isbi2012" / "train"), "--out", str(out)),
        *("--epochs", "1", "--image-size", "32", "--base-channels", "2", "--augment", "seed"),
    )
    assert result.returncode == 0, result.stderr
    assert "note: --augment seed is now called --augment flips" in result.stderr
    assert "random flips" in (out / "README.md").read_text()


def test_help_shows_the_recipe_defaults():
    result = run("train.py", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for expected in (
        "optimiser (default: rmsprop)",
        "learning rate (default: 1e-05)",
        "weight decay (default: 1e-08)",
        "momentum for rmsprop (default 0.9, the seed recipe) and sgd (default 0.99, the paper's)",
        "number of passes over the training data (default: 40)",
        "images per optimisation step (default: 1)",
        # the paper's recipe, issue 6
        "(default: bce)",
        "(default: flips)",
        "--augment paper: std (px) of the elastic displacements on a 3×3 grid (0 = off) "
        "(default: 10.0)",
        "--loss weighted: weight of the gaps between neighbouring cells (default: 10.0)",
        "learning-rate schedule:",
        "--val-slices",
        "--crop-size",
        "--max-minutes",
    ):
        assert expected in text


# -- the paper's recipe (issue 6) ------------------------------------------------------------


def test_the_seed_recipe_is_still_the_default():
    cfg = TrainConfig.from_options(data="d", out="o")
    assert cfg.recipe() == (
        "RMSprop(lr=1e-05, weight_decay=1e-08, momentum=0.9), BCEWithLogitsLoss, "
        "random flips, batch size 1"
    )


def test_paper_augmentation_and_weighted_loss_end_to_end(tmp_path):
    out = tmp_path / "paper"
    result = run(
        "train.py",
        "--data", str(ROOT / "examples" / "isbi2012" / "train"),
        "--out", str(out),
        "--image-size", "64",
        "--base-channels", "4",
        "--epochs", "2",
        "--val-slices", "3",
        "--augment", "paper",
        "--loss", "weighted",
        "--optimizer", "adamw",
        "--lr", "1e-3",
        "--lr-schedule", "cosine",
        "--crop-size", "32",
        "--batch-size", "2",
        "--samples-per-epoch", "4",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "the best model on the validation data:" in result.stdout
    assert "adapted Rand error, best threshold" in result.stdout
    card = (out / "README.md").read_text()
    for fact in (
        "AdamW(lr=0.001, weight_decay=1e-08), cosine learning-rate decay",
        "BCEWithLogitsLoss weighted by the U-Net border map (w0=10, σ=5px)",
        "paper augmentation: flips, 90° rotations",
        "elastic σ=10px on 3×3",
        "32² crops, batch size 2, 4 samples per epoch",
    ):
        assert fact in card
    rows = list(csv.DictReader((out / "training_log.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert float(rows[1]["lr"]) < float(rows[0]["lr"]) < 1e-3  # the cosine decay
    assert all(0 <= float(r["val_rand_error"]) <= 1 for r in rows)


def test_a_time_budget_stops_training_and_says_so(tmp_path, sample_data):
    cfg = TrainConfig.from_options(
        data=str(sample_data),
        out=str(tmp_path / "m"),
        epochs=50,
        image_size=32,
        base_channels=2,
        max_minutes=1e-6,
    )
    result = train(cfg)
    assert len(result.history) == 1
    assert (
        "1 of 50 (stopped by the 1e-06-minute budget)" in (tmp_path / "m" / "README.md").read_text()
    )


@pytest.mark.parametrize(
    ("name", "cls", "momentum"),
    [
        ("rmsprop", torch.optim.RMSprop, 0.9),
        ("sgd", torch.optim.SGD, 0.99),
        ("adam", torch.optim.Adam, None),
        ("adamw", torch.optim.AdamW, None),
    ],
)
def test_optimizers_and_their_default_momentum(name, cls, momentum):
    optimizer = build_optimizer(name, [torch.nn.Parameter(torch.zeros(1))], 0.1, 0.0)
    assert type(optimizer) is cls
    assert optimizer.param_groups[0].get("momentum") == momentum


def test_learning_rate_schedules():
    def optimizer():
        return build_optimizer("sgd", [torch.nn.Parameter(torch.zeros(1))], 1.0, 0.0)

    cosine = LRSchedule("cosine", optimizer(), total_steps=10)
    cosine.after_step(5, seconds=0)
    assert cosine.lr == pytest.approx(0.5)
    timed = LRSchedule("cosine", optimizer(), total_steps=1000, budget_seconds=60)
    timed.after_step(1, seconds=60)  # the budget is spent: time decides
    assert timed.lr == pytest.approx(0.0)
    plateau = LRSchedule("plateau", optimizer(), total_steps=10)
    for _ in range(PLATEAU_PATIENCE + 2):
        plateau.after_epoch(0.5)
    assert plateau.lr == pytest.approx(PLATEAU_FACTOR)


def test_select_threshold_card_note_and_training_curve(tmp_path, sample_data):
    """--select-threshold stores the best-Rand threshold of the validation data; the card
    carries the note, the threshold's origin and the training curve."""
    note = "Mask 255 = cell interior, 0 = membrane."
    cfg = TrainConfig.from_options(
        data=str(sample_data),
        out=str(tmp_path / "m"),
        epochs=3,
        image_size=64,
        base_channels=4,
        val_slices="03",
        optimizer="adamw",
        lr=1e-2,
        select_threshold=True,
        card_note=[note],
    )
    result = train(cfg)
    model = UNet.from_pretrained(tmp_path / "m")
    # found again, independently, on the held-out slice at the training threshold
    model.update_config(threshold=0.5)
    pairs = [p for p in find_pairs(sample_data) if p[0].stem == "03"]
    again = evaluate_pairs(model, pairs, image_size=64)
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["threshold"] == again.best_rand_threshold == result.evaluation.threshold
    card = (tmp_path / "m" / "README.md").read_text()
    assert note in card
    assert "![Training loss and validation Dice per epoch](training_curve.png)" in card
    assert Image.open(tmp_path / "m" / "training_curve.png").size == (800, 400)
    # this seeded run's best-Rand threshold is not the training one, so the card says why
    # the model's threshold moved and at which threshold the epoch figures were measured
    assert saved["threshold"] != 0.5, saved["threshold"]
    assert "lowest validation adapted Rand error" in card
    assert "pixel error (1 - accuracy) (at 0.50)" in card


def test_predict_cli_uses_the_models_recommended_threshold(trained, tmp_path, sample_test_image):
    model_dir, _ = trained
    model = UNet.from_pretrained(model_dir)
    probabilities = segment(model, read_image(sample_test_image))
    # a threshold that makes a visible difference on this image
    threshold = float(np.quantile(probabilities, 0.3))
    model.update_config(threshold=round(threshold, 4))
    model.save_pretrained(tmp_path / "model")
    result = run(
        "-m", "unet_hub.cli", "predict", str(tmp_path / "model"), str(sample_test_image),
        "--out", str(tmp_path / "preds"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    mask = cv2.imread(str(tmp_path / "preds" / "00.png"), cv2.IMREAD_UNCHANGED) > 0
    assert np.array_equal(mask, probabilities > model.config["threshold"])
    assert not np.array_equal(mask, probabilities > 0.5)
