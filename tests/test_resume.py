"""Training survives faults: atomic checkpoints, --resume after SIGKILL (during an epoch
and during a checkpoint save), Ctrl-C, a diverging loss, and a full disk."""

from __future__ import annotations

import csv
import json
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import ROOT
from support import in_process
from unet_hub import UNet
from unet_hub.files import CHECKPOINT_NAME
from unet_hub.train.checkpoint import (
    KILL_ENV,
    CheckpointError,
    fault_point,
    read_checkpoint,
    read_checkpoint_state,
    remove_stale_temporaries,
    restore,
    save_checkpoint,
)
from unet_hub.train.optim import build_optimizer

DATA = ROOT / "examples" / "isbi2012" / "train"
EPOCHS = 4
#: The SIGKILL step during epochs 2-3 is drawn from this seed, so a failure comes back with
#: the same UNET_TEST_KILL_SEED (the step drawn is in the test id).
KILL_SEED = int(os.environ.get("UNET_TEST_KILL_SEED", "19"))
#: 4 pairs, one held out: 3 steps of batch 1 per epoch. The learning rate is high enough
#: for the validation Dice to move from epoch to epoch (0 to about 0.8), so comparing two
#: runs' metrics compares something.
STEPS_PER_EPOCH = 3
TINY = [
    "--data", str(DATA), "--image-size", "64", "--base-channels", "4", "--val-fraction",
    "0.25", "--optimizer", "adamw", "--lr", "1e-2", "--lr-schedule", "cosine",
    "--augment", "paper",
]  # fmt: skip


@pytest.fixture(autouse=True)
def ctrl_c_interrupts():
    """Ctrl-C raises KeyboardInterrupt here and in the trainings these tests start, as in
    a terminal, even when the suite runs as a background job (which starts with SIGINT
    ignored, and Python then leaves it ignored)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def _sigint_by_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # the child's Python then installs its own


def train_py(*args: str, env: dict | None = None, timeout: float = 300):
    return subprocess.run(
        [sys.executable, "train.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def train_here(*args: str) -> tuple[int, str]:
    """``python train.py ARGS`` run in this process (support.in_process, no Python and
    torch start-up): its exit code and stderr."""
    ran = in_process.train_here(*args)
    return ran.returncode, ran.stderr


def log_rows(out: Path) -> list[dict]:
    with (out / "training_log.csv").open() as f:
        return list(csv.DictReader(f))


def assert_same_run(a: Path, b: Path) -> None:
    """Same validation metrics every epoch and the same final weights."""
    rows_a, rows_b = log_rows(a), log_rows(b)
    assert [r["epoch"] for r in rows_a] == [r["epoch"] for r in rows_b]
    dice = [float(r["val_dice"]) for r in rows_a]
    assert max(dice) > 0.5 and len(set(dice)) == len(dice), f"the metrics do not move: {dice}"
    for ra, rb in zip(rows_a, rows_b, strict=True):
        for key in ("train_loss", "val_loss", "val_dice", "lr"):
            assert float(ra[key]) == pytest.approx(float(rb[key]), rel=1e-5, abs=1e-7), key
    for name in ("model.safetensors", "last/model.safetensors"):
        wa, wb = load_file(a / name), load_file(b / name)
        for key in wa:
            torch.testing.assert_close(wa[key], wb[key], rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("full") / "run"
    result = train_py(*TINY, "--epochs", str(EPOCHS), "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def test_each_epoch_ends_with_a_checkpoint_of_everything(uninterrupted):
    tensors, state = read_checkpoint(uninterrupted / CHECKPOINT_NAME)
    assert state["run"]["epoch"] == EPOCHS
    assert len(state["run"]["history"]) == EPOCHS
    assert state["config"]["lr"] == 1e-2 and state["config"]["augment"] == "paper"
    assert any(k.startswith("model/") for k in tensors)
    # AdamW's moments for every parameter
    assert sum(k.endswith("/exp_avg_sq") for k in tensors) == len(
        list(UNet(base_channels=4).parameters())
    )
    # the checkpoint's model is the last epoch's
    last = load_file(uninterrupted / "last" / "model.safetensors")
    for key, value in last.items():
        assert torch.equal(tensors["model/" + key], value)


@pytest.mark.parametrize(
    "kill_at",
    [
        # during epoch 2-3, drawn from KILL_SEED
        f"step:{random.Random(KILL_SEED).randint(STEPS_PER_EPOCH + 1, 3 * STEPS_PER_EPOCH)}",
        "checkpoint-write:2",  # half of epoch 2's checkpoint on disk
        "checkpoint-rename:3",  # epoch 3's checkpoint synced, not yet renamed
    ],
)
def test_sigkill_then_resume_finishes_like_an_uninterrupted_run(tmp_path, uninterrupted, kill_at):
    out = tmp_path / "run"
    killed = train_py(*TINY, "--epochs", str(EPOCHS), "--out", str(out), env={KILL_ENV: kill_at})
    assert killed.returncode == -signal.SIGKILL, (kill_at, killed.stderr[-2000:])
    _, state = read_checkpoint(out / CHECKPOINT_NAME)  # the last complete one
    assert 1 <= state["run"]["epoch"] < EPOCHS

    resumed = train_py("--resume", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert not list(out.glob(".*.tmp-*")), "a half-written checkpoint was left behind"
    assert_same_run(uninterrupted, out)


def test_resume_keeps_the_runs_settings(tmp_path):
    # a finished run resumed with more epochs goes on
    out = tmp_path / "more"
    code, err = train_here(*TINY, "--epochs", "1", "--out", str(out))
    assert code == 0, err
    code, err = train_here("--resume", str(out), "--lr", "0.5", "--base-channels", "8")
    assert code == 2
    assert "--base-channels 8 differs from the run" in err
    assert "Traceback" not in err
    code, err = train_here("--resume", str(out), "--epochs", "2")
    assert code == 0, err
    assert [r["epoch"] for r in log_rows(out)] == ["1", "2"]
    code, err = train_here("--resume", str(tmp_path / "nothing"))
    assert code == 2 and "nothing to resume" in err


def test_an_option_given_again_counts_even_when_it_equals_its_default(tmp_path):
    """The run trained with --lr 1e-2 and adamw; 1e-5 and rmsprop are the defaults."""
    out = tmp_path / "run"
    code, err = train_here(*TINY, "--epochs", "1", "--lr-schedule", "none", "--out", str(out))
    assert code == 0, err
    code, err = train_here("--resume", str(out), "--epochs", "2", "--optimizer", "rmsprop")
    assert code == 2
    assert "--optimizer rmsprop differs from the run" in err
    code, err = train_here("--resume", str(out), "--epochs", "2", "--lr", "1e-5")
    assert code == 0, err
    assert [float(r["lr"]) for r in log_rows(out)] == [1e-2, 1e-5]


def test_ctrl_c_saves_the_model_and_says_how_to_resume(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "train.py", *TINY, "--epochs", "200", "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_sigint_by_default,
    )
    deadline = time.monotonic() + 240
    while not (out / CHECKPOINT_NAME).exists():  # wait for a complete epoch
        assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint written"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert f"--resume {out}" in stderr
    interrupted = UNet.from_pretrained(out / "interrupted")
    assert interrupted.config["base_channels"] == 4
    code, err = train_here("--resume", str(out), "--epochs", "3")
    assert code == 0, err


def test_a_diverging_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    out = tmp_path / "run"
    code, err = train_here(*TINY, "--epochs", "1", "--out", str(out))
    assert code == 0, err
    before = (out / CHECKPOINT_NAME).read_bytes()
    code, err = train_here("--resume", str(out), "--epochs", "3", "--lr", "1e30")
    assert code == 2, err
    assert "training diverged" in err
    assert "checkpoint of epoch 1" in err and "Traceback" not in err
    assert (out / CHECKPOINT_NAME).read_bytes() == before
    assert len(log_rows(out)) == 1


def test_checkpoint_round_trip_restores_model_and_optimizer(tmp_path):
    torch.manual_seed(0)
    model = UNet(base_channels=4)
    optimizer = build_optimizer("adamw", model.parameters(), 1e-3, 1e-4, None)
    model(torch.rand(2, 1, 32, 32)).mean().backward()
    optimizer.step()
    path = save_checkpoint(tmp_path / CHECKPOINT_NAME, model, optimizer, {"run": {"epoch": 7}})

    fresh = UNet(base_channels=4)
    fresh_optimizer = build_optimizer("adamw", fresh.parameters(), 1e-3, 1e-4, None)
    tensors, state = read_checkpoint(path)
    restore(tensors, state, fresh, fresh_optimizer)
    assert state["run"] == {"epoch": 7}
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    saved, loaded = optimizer.state_dict(), fresh_optimizer.state_dict()
    # JSON keeps tuples (Adam's betas) as lists
    assert json.loads(json.dumps(saved["param_groups"])) == loaded["param_groups"]
    for index, values in saved["state"].items():
        for key, value in values.items():
            assert torch.equal(value, loaded["state"][index][key]), key


@pytest.mark.parametrize(
    "damage", [b"", b"not a checkpoint", b"\xff" * 8 + b"{}", b"PK\x03\x04 zip bytes"]
)
def test_a_damaged_checkpoint_is_a_clear_error(tmp_path, damage):
    path = tmp_path / CHECKPOINT_NAME
    path.write_bytes(damage)
    with pytest.raises(CheckpointError, match="not a readable unet-hub checkpoint"):
        read_checkpoint(path)


def test_a_full_disk_leaves_the_previous_checkpoint_intact(tmp_path):
    """A real write failure: the file-size limit (ulimit -f) makes write() fail with
    EFBIG half way through the new checkpoint, as a full disk fails with ENOSPC."""
    script = textwrap.dedent(
        f"""
        import resource, torch
        from unet_hub import UNet
        from unet_hub.train.checkpoint import CheckpointError, save_checkpoint
        from unet_hub.train.optim import build_optimizer
        model = UNet(base_channels=4)
        opt = build_optimizer("rmsprop", model.parameters(), 1e-3, 0, None)
        path = save_checkpoint({str(tmp_path / CHECKPOINT_NAME)!r}, model, opt, {{"n": 1}})
        size = path.stat().st_size
        torch.nn.init.constant_(model.outc.weight, 1.0)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 3, resource.RLIM_INFINITY))
        try:
            save_checkpoint(path, model, opt, {{"n": 2}})
        except CheckpointError as e:
            print(e)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "file size limit" in result.stdout and "previous checkpoint is intact" in result.stdout
    tensors, state = read_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert state["n"] == 1
    assert not torch.all(tensors["model/outc.weight"] == 1.0)
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME]


@pytest.mark.parametrize(
    ("point", "resumable"),
    [
        ("step:2:INT", False),  # mid-epoch 1
        ("validate:1:INT", False),  # epoch 1 trained, before its validation
        ("save:1:INT", False),  # epoch 1 validated, before its saves
        ("save:2:INT", True),  # epoch 2 validated, before its saves: epoch 1 is on disk
    ],
)
def test_the_command_printed_after_ctrl_c_always_works(tmp_path, point, resumable, monkeypatch):
    """A real SIGINT at ``point``, in this process (train.py's ``main``, which turns the
    KeyboardInterrupt into exit code 130); the printed command then runs as printed."""
    from unet_hub.train import checkpoint

    out = tmp_path / "run"
    monkeypatch.setenv(KILL_ENV, point)
    monkeypatch.setattr(checkpoint, "_reached", {})  # the points counted in this run only
    code, err = train_here(*TINY, "--epochs", "3", "--out", str(out))
    monkeypatch.delenv(KILL_ENV)
    assert code == 130, err
    assert "Traceback" not in err
    assert (out / "interrupted" / "model.safetensors").is_file()
    printed = re.search(r"with: python (train\.py --resume \S+)", err)
    if not resumable:
        assert printed is None
        assert "no epoch was complete, so there is no checkpoint to resume from" in err
        return
    assert "the best model (epoch 1)" in err
    assert "from the end of epoch 1" in err
    code, err = train_here(*shlex.split(printed.group(1))[1:])
    assert code == 0, err
    assert [r["epoch"] for r in log_rows(out)] == ["1", "2", "3"]


def test_ctrl_c_keeps_exactly_the_model_at_the_signal(tmp_path, monkeypatch):
    """A real SIGINT, sent in the middle of epoch 2 (after its second step), in process:
    ``interrupted/`` holds the weights the model had when the signal came, not those of
    the last complete epoch."""
    from unet_hub.train import loop
    from unet_hub.train.options import TrainConfig

    runs, at_signal = [], {}
    set_up = loop._set_up

    def keep_run(*args):
        runs.append(set_up(*args))
        return runs[-1]

    steps = iter(range(1, 100))

    def signal_at_step_5(name: str) -> None:
        if name == "step" and next(steps) == STEPS_PER_EPOCH + 2:
            at_signal.update({k: v.clone() for k, v in runs[0].net.state_dict().items()})
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(loop, "_set_up", keep_run)
    monkeypatch.setattr(loop, "fault_point", signal_at_step_5)
    out = tmp_path / "run"
    cfg = TrainConfig.from_options(
        data=str(DATA), out=str(out), epochs=2, image_size=32, base_channels=2,
        val_fraction=0.25, lr=1e-2, optimizer="adamw",
    )  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        loop.train(cfg)
    saved = load_file(out / "interrupted" / "model.safetensors")
    assert saved.keys() == at_signal.keys()
    for key, value in at_signal.items():
        assert torch.equal(saved[key], value), key
    epoch_1 = load_file(out / "last" / "model.safetensors")
    assert any(not torch.equal(epoch_1[k], at_signal[k]) for k in at_signal)


# -- the checkpoint file itself, in process -----------------------------------------------


@pytest.fixture
def kill_at(monkeypatch):
    """Set ``UNET_HUB_KILL_AT`` with the process's counts of reached points at zero (an
    earlier test in this process may have reached the same point)."""
    from unet_hub.train import checkpoint

    monkeypatch.setattr(checkpoint, "_reached", {})
    return lambda spec: monkeypatch.setenv(KILL_ENV, spec)


def _linear_and_adam() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.rand(4, 3)).sum().backward()
    optimizer.step()
    return model, optimizer


def test_checkpoint_fault_point_interrupts_on_the_nth_time_its_point_is_reached(kill_at):
    kill_at("checkpoint-test-point:3:INT")
    fault_point("checkpoint-test-point")
    fault_point("another-point")
    fault_point("checkpoint-test-point")
    with pytest.raises(KeyboardInterrupt):
        fault_point("checkpoint-test-point")
    fault_point("checkpoint-test-point")  # the 4th time: only the n-th one stops


def test_checkpoint_fault_point_without_a_count_stops_the_first_time(kill_at):
    kill_at("checkpoint-first::INT")
    with pytest.raises(KeyboardInterrupt):
        fault_point("checkpoint-first")


def _end_of_a_forked_child(spec: str, point: str, reaches: int) -> str:
    """How a child process ends that reaches ``point`` ``reaches`` times under ``spec``."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.environ[KILL_ENV] = spec
            for _ in range(reaches):
                fault_point(point)
        except KeyboardInterrupt:
            code = 3
        except BaseException:
            code = 4
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return signal.Signals(os.WTERMSIG(status)).name
    return f"exit {os.WEXITSTATUS(status)}"


def test_checkpoint_fault_point_without_int_sigkills_at_its_count(monkeypatch):
    monkeypatch.delenv(KILL_ENV, raising=False)
    fault_point("checkpoint-kill")  # without UNET_HUB_KILL_AT, reaching a point does nothing
    assert _end_of_a_forked_child("checkpoint-kill", "checkpoint-kill", 1) == "SIGKILL"
    assert _end_of_a_forked_child("checkpoint-kill:2", "checkpoint-kill", 1) == "exit 0"
    assert _end_of_a_forked_child("checkpoint-kill:2", "checkpoint-kill", 2) == "SIGKILL"
    assert _end_of_a_forked_child("checkpoint-kill:1:INT", "checkpoint-kill", 1) == "exit 3"


@pytest.mark.parametrize("point", ["checkpoint-write", "checkpoint-rename"])
def test_checkpoint_interrupted_while_writing_leaves_the_previous_one_whole(
    tmp_path, kill_at, point
):
    model, optimizer = _linear_and_adam()
    path = save_checkpoint(tmp_path / CHECKPOINT_NAME, model, optimizer, {"n": 1})
    before = path.read_bytes()
    kill_at(f"{point}:1:INT")
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, optimizer, {"n": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME]  # no temporary left


def test_checkpoint_write_failure_says_why_and_whether_one_is_kept(tmp_path):
    import resource

    model, optimizer = _linear_and_adam()
    missing = tmp_path / "no-such-folder" / CHECKPOINT_NAME
    with pytest.raises(CheckpointError) as error:
        save_checkpoint(missing, model, optimizer, {})
    assert str(error.value) == (
        f"could not write the checkpoint {missing} (No such file or directory); no "
        "checkpoint yet. Free some space, then continue with --resume"
    )
    path = save_checkpoint(tmp_path / CHECKPOINT_NAME, model, optimizer, {"n": 1})
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size // 3, limits[1]))
    try:
        with pytest.raises(CheckpointError) as error:
            save_checkpoint(path, model, optimizer, {"n": 2, "pad": "x" * 1000})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
    assert str(error.value) == (
        f"could not write the checkpoint {path} (the file size limit was reached); the "
        "previous checkpoint is intact. Free some space, then continue with --resume"
    )
    assert read_checkpoint_state(path)["n"] == 1


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_checkpoint_when_no_space_is_left_says_the_disk_is_full(tmp_path):
    model, optimizer = _linear_and_adam()
    path = tmp_path / CHECKPOINT_NAME
    # the temporary file is a link to /dev/full, where every write fails with ENOSPC
    (tmp_path / f".{CHECKPOINT_NAME}.tmp-{os.getpid()}").symlink_to("/dev/full")
    with pytest.raises(CheckpointError) as error:
        save_checkpoint(path, model, optimizer, {})
    assert str(error.value) == (
        f"could not write the checkpoint {path} (the disk is full); no checkpoint yet. "
        "Free some space, then continue with --resume"
    )
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    stale = [tmp_path / f".{CHECKPOINT_NAME}.tmp-{pid}" for pid in (11, 12)]
    kept = [tmp_path / CHECKPOINT_NAME, tmp_path / ".other.tmp-11", tmp_path / "model.safetensors"]
    for file in stale + kept:
        file.write_bytes(b"x")
    remove_stale_temporaries(tmp_path)
    assert sorted(tmp_path.iterdir()) == sorted(kept)


def test_checkpoint_state_is_read_from_the_header_with_its_format(tmp_path):
    model, optimizer = _linear_and_adam()
    path = save_checkpoint(tmp_path / CHECKPOINT_NAME, model, optimizer, {"run": {"epoch": 2}})
    state = read_checkpoint_state(str(path))
    assert state["format"] == 1 and state["run"] == {"epoch": 2}
    assert state["optimizer"]["param_groups"][0]["lr"] == 0.1
    tensors, _ = read_checkpoint(str(path))
    assert set(tensors) == {
        "model/weight", "model/bias",
        *(f"optimizer/{i}/{k}" for i in (0, 1) for k in ("step", "exp_avg", "exp_avg_sq")),
    }  # fmt: skip


def test_checkpoint_missing_or_newer_is_a_clear_error(tmp_path):
    path = tmp_path / CHECKPOINT_NAME
    with pytest.raises(CheckpointError) as error:
        read_checkpoint_state(path)
    assert str(error.value) == (
        f"{path} does not exist: there is nothing to resume (a run writes its checkpoint at "
        "the end of each epoch)"
    )
    model, optimizer = _linear_and_adam()
    save_checkpoint(path, model, optimizer, {"format": 2})
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(path)
    assert str(error.value) == (
        f"{path} was written by a newer unet-hub (checkpoint format 2); upgrade unet-hub to "
        "resume it"
    )
    # a checkpoint written before the format number existed reads as format 0
    save_file({"x": torch.zeros(1)}, path, metadata={"unet_hub_checkpoint": '{"run": {}}'})
    assert read_checkpoint_state(path) == {"run": {}}
    save_file({"x": torch.zeros(1)}, path)  # a safetensors file, but not a checkpoint
    with pytest.raises(CheckpointError, match=r"is not a readable unet-hub checkpoint \("):
        read_checkpoint_state(path)


def test_checkpoint_round_trip_keeps_averaged_weights_and_plain_optimizer_state(tmp_path):
    model, optimizer = _linear_and_adam()
    ema = torch.nn.Linear(3, 2)
    torch.nn.init.constant_(ema.weight, 0.25)
    optimizer.state[model.weight]["n_iter"] = 3  # a plain number, as LBFGS keeps
    path = save_checkpoint(tmp_path / CHECKPOINT_NAME, model, optimizer, {}, ema)
    fresh = torch.nn.Linear(3, 2)
    fresh_optimizer = torch.optim.Adam(fresh.parameters(), lr=1)
    fresh_ema = torch.nn.Linear(3, 2)
    tensors, state = read_checkpoint(path)
    restore(tensors, state, fresh, fresh_optimizer, fresh_ema)
    assert torch.equal(fresh_ema.weight, ema.weight) and torch.equal(fresh.bias, model.bias)
    assert fresh_optimizer.state_dict()["state"][0]["n_iter"] == 3
    assert fresh_optimizer.param_groups[0]["lr"] == 0.1
    without = save_checkpoint(tmp_path / "plain.safetensors", model, optimizer, {})
    tensors, state = read_checkpoint(without)
    assert not any(name.startswith("ema/") for name in tensors)
    with pytest.raises(CheckpointError) as error:
        restore(tensors, state, fresh, fresh_optimizer, fresh_ema)
    assert str(error.value) == "the checkpoint has no averaged weights; resume without --ema"
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    sgd.state[model.bias]["n_iter"] = 4  # a parameter whose state holds no tensor at all
    tensors, state = read_checkpoint(save_checkpoint(without, model, sgd, {}))
    fresh_sgd = torch.optim.SGD(fresh.parameters(), lr=1)
    restore(tensors, state, fresh, fresh_sgd)
    assert fresh_sgd.state_dict()["state"] == {1: {"n_iter": 4}}
