"""Multi-process training on Accelerate (DDP, gloo on CPU), checked against one process."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import torch
from safetensors.torch import load_file
from test_inference import sensitive_model

from conftest import ROOT, SAMPLE
from support import free_port
from unet_hub import UNet
from unet_hub.cli import main
from unet_hub.files import CHECKPOINT_NAME
from unet_hub.train.checkpoint import read_checkpoint

BIN = Path(sys.executable).parent
TINY = [
    "--image-size", "64", "--base-channels", "4", "--batch-size", "1", "--augment", "none",
    "--val-fraction", "0.375", "--device", "cpu", "--optimizer", "adamw", "--lr", "1e-2",
]  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """8 pairs (128² crops of the shipped sample): 5 to train on, 3 to validate."""
    root = tmp_path_factory.mktemp("data")
    for sub in ("images", "masks"):
        (root / sub).mkdir()
    pairs = sorted((SAMPLE / "train" / "images").glob("*.png"))
    for n in range(8):
        image_path = pairs[n % len(pairs)]
        image = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str(SAMPLE / "train" / "masks" / image_path.name), cv2.IMREAD_UNCHANGED)
        top = 128 * (n // len(pairs))
        cv2.imwrite(str(root / "images" / f"{n:02d}.png"), image[top : top + 128, :128])
        cv2.imwrite(str(root / "masks" / f"{n:02d}.png"), mask[top : top + 128, :128])
    return root


def launch(launcher: list[str], dump: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [*launcher, str(ROOT / "tests" / "rank_train.py"), str(dump), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def torchrun() -> list[str]:
    return [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", str(free_port())]


def accelerate_launch() -> list[str]:
    # accelerate's --multi_gpu launcher is torchrun underneath; it starts CPU processes too
    return [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
            "--main_process_port", str(free_port())]  # fmt: skip


ONE = [sys.executable]


def log(out: Path) -> list[dict]:
    with (out / "training_log.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def one_process_step(data, tmp_path_factory) -> Path:
    """One process accumulating 2 samples into one step: the reference both launchers'
    two processes are compared with (the same run for both, so it runs once)."""
    one = tmp_path_factory.mktemp("one")
    launch(ONE, one / "dump", "--data", str(data), "--out", str(one / "out"),
           "--epochs", "1", "--samples-per-epoch", "2", "--grad-accum", "2", *TINY)  # fmt: skip
    return one


@pytest.mark.parametrize("launcher", [torchrun, accelerate_launch])
def test_two_processes_step_like_one_process_on_the_union_of_their_shards(
    tmp_path, data, launcher, one_process_step
):
    # one synchronised step: 2 samples per epoch, one per process ...
    two = tmp_path / "two"
    launch(launcher(), two / "dump", "--data", str(data), "--out", str(two / "out"),
           "--epochs", "1", "--samples-per-epoch", "2", *TINY)  # fmt: skip
    # ... against one process accumulating the same 2 samples into one step
    one = one_process_step

    rank0, rank1 = (load_file(two / "dump" / f"rank{r}.safetensors") for r in (0, 1))
    single = load_file(one / "dump" / "rank0.safetensors")
    # The trainable weights. BatchNorm's running statistics are buffers: each process
    # updates its own from its shard, and DDP copies rank 0's to the others at the next
    # forward pass (only SyncBatchNorm, on GPUs, would pool them).
    weights = [k for k in rank0 if "running_" not in k and "num_batches" not in k]
    assert len(weights) == len(list(UNet(base_channels=4).parameters()))
    for key in weights:
        assert torch.equal(rank0[key], rank1[key]), f"{key} differs across ranks"
        torch.testing.assert_close(rank0[key], single[key], rtol=0, atol=1e-6, msg=key)
    # exactly one optimisation step in both runs (AdamW counts them)
    for out in (two / "out", one / "out"):
        tensors, _ = read_checkpoint(out / CHECKPOINT_NAME)
        assert float(tensors["optimizer/0/step"]) == 1.0

    # one log and one checkpoint, written once, by the main process
    (row,) = log(two / "out")
    assert sorted(p.name for p in (two / "out").iterdir()) == sorted(
        p.name for p in (one / "out").iterdir()
    )
    card = (two / "out" / "README.md").read_text()
    assert "(3 images)" in card


def test_one_process_under_torchrun_ends_its_process_group(tmp_path, data):
    """torchrun with one process starts a process group too (gloo here, NCCL on GPUs, where
    one left at exit prints "destroy_process_group() was not called"): train() ends it."""
    one = [str(BIN / "torchrun"), "--nproc_per_node", "1", "--master_port", str(free_port())]
    result = launch(one, tmp_path / "dump", "--data", str(data), "--out", str(tmp_path / "out"),
                    "--epochs", "1", "--samples-per-epoch", "2", *TINY)  # fmt: skip
    groups = json.loads((tmp_path / "dump" / "rank0.json").read_text())
    assert groups == {"started": ["gloo"], "left_after_train": False}
    assert "destroy_process_group" not in result.stderr
    assert [r["epoch"] for r in log(tmp_path / "out")] == ["1"]


def test_validation_gathered_across_processes_equals_one_process(tmp_path, data):
    """5 images on 2 processes (3 + 2): each scored once, in order, as by one process."""
    model = tmp_path / "model"
    sensitive_model(base_channels=4).save_pretrained(model)  # not a near-constant output
    val = tmp_path / "val"
    shutil.copytree(data, val)
    for n in range(5, 8):
        for sub in ("images", "masks"):
            (val / sub / f"{n:02d}.png").unlink()
    script = str(ROOT / "tests" / "rank_validate.py")
    results = []
    for launcher in (torchrun(), [sys.executable]):
        out = tmp_path / f"{len(launcher)}.json"
        subprocess.run(
            [*launcher, script, str(model), str(val), str(out)],
            cwd=ROOT, check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        results.append(json.loads(out.read_text()))
    two, one = results
    assert two["evaluation"]["n_images"] == 5
    assert [r["name"] for r in two["evaluation"]["per_image"]] == [
        r["name"] for r in one["evaluation"]["per_image"]
    ]
    assert two == one
    errors = [r["pixel_error"] for r in one["evaluation"]["per_image"]]
    assert len(set(errors)) > 1, errors  # the images score differently


def test_resume_with_another_number_of_processes(tmp_path, data):
    out = tmp_path / "out"
    launch(torchrun(), tmp_path / "dump", "--data", str(data), "--out", str(out),
           "--epochs", "1", *TINY)  # fmt: skip
    # one process now, `train.py --resume` run in this process (cli.main, as train.py runs it)
    assert main(["train", "--resume", str(out), "--epochs", "2"]) == 0
    assert [r["epoch"] for r in log(out)] == ["1", "2"]
    shutil.rmtree(tmp_path / "dump")


def test_sync_bn_on_cpu_processes_is_a_clear_error(tmp_path, data):
    result = subprocess.run(
        [
            *torchrun(),
            "train.py",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "o"),
            "--sync-bn",
            *TINY,
        ],  # fmt: skip
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "SyncBatchNorm runs on GPUs only" in result.stderr
    assert not (tmp_path / "o" / "checkpoint.safetensors").exists()


@pytest.mark.parametrize("precision", ["bf16"])
def test_mixed_precision_on_cpu_trains(tmp_path, data, precision, capsys):
    """``train.py --mixed-precision bf16`` on the CPU, run in this process (cli.main)."""
    args = ["--data", str(data), "--out", str(tmp_path / "o"), "--epochs", "1"]
    assert main(["train", *args, "--mixed-precision", precision, *TINY]) == 0, capsys.readouterr()
    assert float(log(tmp_path / "o")[0]["train_loss"]) > 0


@pytest.mark.parametrize(
    "precision, dtype",
    [
        ("no", torch.float32),  # the control: without autocast the check sees float32
        ("bf16", torch.bfloat16),
        pytest.param(
            "fp16",
            torch.float16,
            marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 needs CUDA"),
        ),
    ],
)
def test_mixed_precision_really_autocasts_the_convolutions(tmp_path, data, precision, dtype):
    """In process: every convolution of the training steps computes in ``dtype``."""
    from unet_hub.train import loop
    from unet_hub.train.options import TrainConfig

    seen: set[torch.dtype] = set()
    set_up = loop._set_up

    def hooked(*args):
        run = set_up(*args)
        for module in run.net.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.register_forward_hook(
                    lambda m, i, out: seen.add(out.dtype) if m.training else None
                )
        return run

    cfg = TrainConfig.from_options(
        data=str(data), out=str(tmp_path / "o"), epochs=1, image_size=32, base_channels=2,
        mixed_precision=precision, device="cuda" if precision == "fp16" else "auto",
    )  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop, "_set_up", hooked)
        result = loop.train(cfg)
    assert seen == {dtype}
    assert math.isfinite(result.history[0].train_loss) and result.history[0].train_loss > 0
