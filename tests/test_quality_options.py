"""Training for topology: the best epoch chosen by Rand error, averaged weights (EMA),
and distillation from a teacher."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT, SAMPLE
from support import in_process
from unet_hub import UNet
from unet_hub.evaluate.evaluator import Evaluation
from unet_hub.train.distill import soft_target_loss
from unet_hub.train.loop import _selection_score

TINY = [
    *("--data", str(SAMPLE / "train"), "--image-size", "64", "--val-fraction", "0.25"),
    *("--optimizer", "adam", "--lr", "1e-3"),
]


def train_py(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "train.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def evaluation(dice: float, rand: float, thinned: float) -> Evaluation:
    return Evaluation(
        n_images=1, threshold=0.5, labels=["x"], dice=[dice], iou=[dice], pixel_error=0.1,
        rand_error=rand, rand_error_thinned=thinned,
    )  # fmt: skip


def test_the_best_epoch_is_chosen_by_what_select_by_names():
    a, b = evaluation(0.9, 0.30, 0.20), evaluation(0.8, 0.10, 0.25)
    assert _selection_score("dice", a, 1.0) > _selection_score("dice", b, 1.0)
    assert _selection_score("rand", b, 1.0) > _selection_score("rand", a, 1.0)
    assert _selection_score("rand-thinned", a, 1.0) > _selection_score("rand-thinned", b, 1.0)
    assert _selection_score("rand", None, 0.3) > _selection_score("rand", None, 0.4)


def test_the_soft_target_loss_is_least_where_the_student_matches_the_teacher():
    teacher = torch.randn(1, 1, 8, 8)
    at_teacher = soft_target_loss(teacher.clone(), teacher)
    for shift in (-1.0, 0.5, 2.0):
        assert soft_target_loss(teacher + shift, teacher) > at_teacher
    several = torch.randn(1, 3, 8, 8)
    assert soft_target_loss(several * 2, several) > soft_target_loss(several.clone(), several)


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ema") / "run"
    result = train_py(
        *TINY, "--base-channels", "4", "--epochs", "2", "--ema", "0.5", "--out", str(out),
        "--select-by", "rand-thinned",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out


def test_the_averaged_weights_are_what_is_saved_and_they_load(ema_run):
    checkpoint = load_file(ema_run / "checkpoint.safetensors")
    saved = load_file(ema_run / "last" / "model.safetensors")
    averaged = {
        k.removeprefix("ema/module."): v for k, v in checkpoint.items() if "ema/module" in k
    }
    trained = {k.removeprefix("model/"): v for k, v in checkpoint.items() if k.startswith("model/")}
    assert saved.keys() == averaged.keys()
    for name in saved:
        torch.testing.assert_close(saved[name], averaged[name].contiguous(), rtol=0, atol=0)
    assert any(not torch.equal(saved[k], trained[k]) for k in saved if saved[k].is_floating_point())
    UNet.from_pretrained(ema_run / "last")
    card = (ema_run / "README.md").read_text()
    assert "weights averaged (EMA decay 0.5)" in card
    assert "the best epoch by validation adapted Rand error (thinned borders)" in card
    assert "val_rand_error_thinned" in (ema_run / "training_log.csv").read_text()


def test_a_killed_ema_run_resumes_to_the_same_weights(ema_run, tmp_path):
    out = tmp_path / "run"
    args = [*TINY, "--base-channels", "4", "--epochs", "2", "--ema", "0.5"]
    args += ["--select-by", "rand-thinned", "--out", str(out)]
    killed = train_py(*args, env={"UNET_HUB_KILL_AT": "step:4"})  # in epoch 2
    assert killed.returncode != 0
    resumed = train_py("--resume", str(out))
    assert resumed.returncode == 0, resumed.stderr
    for name in ("model.safetensors", "last/model.safetensors"):
        a, b = load_file(out / name), load_file(ema_run / name)
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


def train_here(*args: str) -> tuple[int, str]:
    """``python train.py ARGS`` run in this process (support.in_process, no Python and
    torch start-up): its exit code and stderr."""
    ran = in_process.train_here(*args)
    return ran.returncode, ran.stderr


def test_a_student_learns_from_a_teacher_named_in_its_card(tmp_path):
    teacher = tmp_path / "wide-teacher"
    code, err = train_here(*TINY, "--base-channels", "4", "--epochs", "1", "--out", str(teacher))
    assert code == 0, err
    student = tmp_path / "student"
    code, err = train_here(
        *TINY, "--base-channels", "2", "--epochs", "1", "--out", str(student),
        "--teacher", str(teacher), "--distill-weight", "0.7",
    )  # fmt: skip
    assert code == 0, err
    card = (student / "README.md").read_text()
    assert "distilled from wide-teacher (weight 0.7)" in card
    assert str(tmp_path) not in card
    code, err = train_here(
        *TINY, "--base-channels", "2", "--epochs", "1", "--out", str(tmp_path / "o"),
        "--teacher", str(teacher), "--n-channels", "3",
    )  # fmt: skip
    assert code == 2
    assert "its n_channels is 1, the student's is 3" in err
