"""End to end through the faces: train.py, unet-hub train / predict."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import ROOT
from unet_hub import UNet, predict_mask, read_image
from unet_hub.training import TrainConfig, train


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
        "config.json",
        "last",
        "model.safetensors",
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
    cfg = TrainConfig(
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
        cfg = TrainConfig(
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


def test_help_shows_the_recipe_defaults():
    result = run("train.py", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for expected in (
        "RMSprop learning rate (default: 1e-05)",
        "RMSprop weight decay (default: 1e-08)",
        "RMSprop momentum (default: 0.9)",
        "number of passes over the training data (default: 40)",
        "images per optimisation step (default: 1)",
    ):
        assert expected in text
