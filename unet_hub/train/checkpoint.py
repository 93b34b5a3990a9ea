"""Training checkpoints: everything needed to continue a run, in one safetensors file.

A checkpoint holds the model's and the optimiser's tensors, and, as JSON in the file's
metadata, the optimiser's settings, the learning-rate schedule, the run's options and
its progress (epoch, steps, time used, history, best epoch). No pickle: loading a
checkpoint never runs code.

Writing is atomic: the file is written beside the old one, flushed to disk (fsync),
then renamed over it, and the folder is synced. A crash, a kill or a full disk at any
moment leaves either the previous checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

import errno
import json
import os
import signal
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from unet_hub.errors import UNetHubError
from unet_hub.files import CHECKPOINT_NAME

#: Bumped when the layout changes in a way older code cannot read.
CHECKPOINT_FORMAT = 1
_META_KEY = "unet_hub_checkpoint"
#: Testing hook: ``UNET_HUB_KILL_AT=point:n`` SIGKILLs the process the n-th time it
#: reaches ``point`` (``point:n:INT`` sends SIGINT, as Ctrl-C does; see ``fault_point``),
#: so tests can stop a run at an exact moment.
KILL_ENV = "UNET_HUB_KILL_AT"
_reached: dict[str, int] = {}


class CheckpointError(UNetHubError):
    """A checkpoint cannot be written or read."""


def fault_point(name: str) -> None:
    """Die here, by SIGKILL (or SIGINT), when ``UNET_HUB_KILL_AT`` names this point and
    count.

    Points: ``step`` (after an optimisation step), ``validate`` (an epoch trained, before
    its validation), ``save`` (validated, before its saves), ``checkpoint-write`` (half of
    the new checkpoint written), ``checkpoint-rename`` (written and synced, not renamed).
    """
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return
    point, count, how = (spec.split(":") + ["", ""])[:3]
    if point != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] == int(count or 1):
        os.kill(os.getpid(), signal.SIGINT if how == "INT" else signal.SIGKILL)


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    ema: torch.nn.Module | None = None,
) -> Path:
    """Atomically write ``model``'s and ``optimizer``'s state (and the averaged weights
    ``ema``, with ``--ema``) and the JSON-able ``state``."""
    path = Path(path)
    tensors = {f"model/{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if ema is not None:
        tensors |= {f"ema/{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()}
    optim = optimizer.state_dict()
    plain_state: dict[str, dict[str, Any]] = {}
    for index, values in optim["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optimizer/{index}/{key}"] = value.detach().cpu().contiguous()
            else:
                plain_state.setdefault(str(index), {})[key] = value
    meta = {
        "format": CHECKPOINT_FORMAT,
        "optimizer": {"param_groups": optim["param_groups"], "state": plain_state},
        **state,
    }
    data = save(tensors, metadata={_META_KEY: json.dumps(meta)})
    _write_atomically(path, data)
    return path


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            half = len(data) // 2
            f.write(data[:half])
            f.flush()
            fault_point("checkpoint-write")
            f.write(data[half:])
            f.flush()
            os.fsync(f.fileno())
        fault_point("checkpoint-rename")
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as e:
        reason = {
            errno.ENOSPC: "the disk is full",
            errno.EDQUOT: "the disk quota is used up",
            errno.EFBIG: "the file size limit was reached",
        }.get(e.errno, e.strerror or str(e))
        kept = "the previous checkpoint is intact" if path.exists() else "no checkpoint yet"
        raise CheckpointError(
            f"could not write the checkpoint {path} ({reason}); {kept}. "
            "Free some space, then continue with --resume"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)  # only left when the write failed or was interrupted


def remove_stale_temporaries(folder: str | Path) -> None:
    """Delete half-written checkpoints left by a run that was killed while saving."""
    for tmp in Path(folder).glob(f".{CHECKPOINT_NAME}.tmp-*"):
        tmp.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_checkpoint_state(path: str | Path) -> dict[str, Any]:
    """The JSON state of a checkpoint file (its header only: no tensor is read),
    checked to be one of ours."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path} does not exist: there is nothing to resume (a run writes its checkpoint "
            "at the end of each epoch)"
        )
    try:
        with safe_open(path, framework="pt") as f:
            state = json.loads(f.metadata()[_META_KEY])
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(
            f"{path} is not a readable unet-hub checkpoint ({e}); start a new run"
        ) from None
    if state.get("format", 0) > CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} was written by a newer unet-hub (checkpoint format {state['format']}); "
            "upgrade unet-hub to resume it"
        )
    return state


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and the state of a checkpoint file, checked to be one of ours."""
    state = read_checkpoint_state(path)
    try:
        return load_file(path), state
    except (SafetensorError, OSError) as e:
        raise CheckpointError(
            f"{path} is not a readable unet-hub checkpoint ({e}); start a new run"
        ) from None


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}


def restore(
    tensors: dict[str, torch.Tensor],
    state: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    ema: torch.nn.Module | None = None,
) -> None:
    """Load a checkpoint's tensors and optimiser state into ``model`` and ``optimizer``
    (and its averaged weights into ``ema``)."""
    model.load_state_dict(_prefixed(tensors, "model/"))
    if ema is not None:
        averaged = _prefixed(tensors, "ema/")
        if not averaged:
            raise CheckpointError("the checkpoint has no averaged weights; resume without --ema")
        ema.load_state_dict(averaged)
    optim_state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer/"):
            _, index, name = key.split("/", 2)
            optim_state.setdefault(int(index), {})[name] = value
    for index, values in state["optimizer"]["state"].items():
        optim_state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict(
        {"state": optim_state, "param_groups": state["optimizer"]["param_groups"]}
    )
