"""Inference backends: the same network, run faster, chosen automatically.

A *runner* maps a float32 batch N×C×H×W (H and W multiples of 16, as ``segment`` cuts
them) to logits. The backends:

- ``eager``: the model itself, as trained; the reference the others are checked against.
- ``fused``: a copy of the model with every BatchNorm folded into the convolution before
  it, in ``channels_last`` layout on the CPU (faster there at every width measured;
  CUDA keeps cuDNN's default layout).
- ``onnx``: the folded network exported to ONNX (``unet_hub.infer.export``) and run by ONNX
  Runtime on the CPU; needs the ``fast`` extra (``pip install unet-hub[fast]``).
- ``onnx-int8``: a statically quantized ONNX file written by
  ``export_onnx(..., int8=True)``; only ever used when loaded with ``load_onnx``, because
  it changes the output (see benchmarks/results/bench.md).

``prepare(model)`` ("auto") tries ``onnx`` for a float32 CPU model when ONNX Runtime is
installed, then ``fused``, then ``eager``. Every runner built from a model is checked
against the eager model on a probe batch when it is built; under "auto" one that fails
the check (or cannot be built) is skipped with a warning. Runners are cached per model
and rebuilt when its weights change. The user's model itself is never modified.

On GPUs the check runs in strict IEEE float32; at run time every backend uses the math
mode the user set (TF32 convolutions by default on Ampere and later): see
``unet_hub.infer.runners.TF32_TOLERANCE`` for the policy.
"""

from __future__ import annotations

import logging
import threading
import warnings
import weakref

import torch
from torch import nn

from unet_hub.infer.runners import (
    PROBE_SHAPES,
    BackendError,
    OnnxRunner,
    Runner,
    TorchRunner,
    check_runner,
    fold_batchnorm,
    onnx_available,
    size_torch_threads,
)

log = logging.getLogger(__name__)

#: What ``prepare`` and ``segment(backend=...)`` accept.
BACKENDS = ("auto", "eager", "fused", "onnx")


# -- the machine ---------------------------------------------------------------------------


# -- runners -------------------------------------------------------------------------------


# -- building runners from a model -----------------------------------------------------------


def _fused_runner(model: nn.Module) -> TorchRunner:
    module = fold_batchnorm(model)
    if next(module.parameters()).device.type == "cpu":
        size_torch_threads()
        module = module.to(memory_format=torch.channels_last)
    runner = TorchRunner(module, model.config, "fused")
    check_runner(runner, model)
    return runner


def _onnx_runner(model: nn.Module) -> OnnxRunner:
    param = next(model.parameters())
    if param.device.type != "cpu" or param.dtype != torch.float32:
        raise BackendError(
            f"the onnx backend runs float32 CPU models; this one is {param.dtype} on "
            f"{param.device} (use backend='fused')"
        )
    if not onnx_available():
        raise BackendError("the onnx backend needs ONNX Runtime: pip install 'unet-hub[fast]'")
    from unet_hub.infer.onnx import checked_onnx_model  # optional packages, slow to import

    return checked_onnx_model(model, PROBE_SHAPES)[1]


#: How each fast backend is built from a model; each builder checks what it builds.
_BUILDERS = {"fused": _fused_runner, "onnx": _onnx_runner}


def auto_candidates(model: nn.Module) -> list[str]:
    """The backends "auto" tries for ``model``, fastest first."""
    param = next(model.parameters())
    cpu_fp32 = param.device.type == "cpu" and param.dtype == torch.float32
    return (["onnx"] if cpu_fp32 and onnx_available() else []) + ["fused", "eager"]


def _fingerprint(model: nn.Module) -> tuple:
    """Changes when any weight or buffer is replaced or modified in place (optimizer steps,
    ``load_state_dict``, BatchNorm statistics), or moves to another device or dtype.

    Tensors made under ``torch.inference_mode`` keep no version counter: only replacing
    them is seen.
    """
    return tuple(
        (t.data_ptr(), -1 if t.is_inference() else t._version, t.device, t.dtype)
        for t in model.state_dict().values()
    )


#: model -> backend -> (fingerprint, runner); None stands for eager, which is not kept
#: because a runner holding the model would keep the weak key alive forever.
_cache: weakref.WeakKeyDictionary[nn.Module, dict[str, tuple[tuple, Runner | None]]] = (
    weakref.WeakKeyDictionary()
)
_lock = threading.Lock()


def prepare(model: nn.Module | Runner, backend: str = "auto") -> Runner:
    """The runner of ``model`` for ``backend`` (one of ``BACKENDS``), built and checked
    once, then cached until the model's weights change.

    A ``Runner`` (e.g. from ``load_onnx``) is returned as it is. An explicit backend that
    cannot be built or fails the check raises; "auto" moves on to the next candidate
    with a warning.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if isinstance(model, Runner):
        if backend not in ("auto", model.backend):
            raise BackendError(f"this is a prepared {model.backend} runner, not {backend}")
        return model
    runner: Runner | None = None
    if backend != "eager":
        fingerprint = _fingerprint(model)
        with _lock:
            cached = _cache.get(model, {}).get(backend)
            if cached is not None and cached[0] == fingerprint:
                runner = cached[1]
            else:
                runner = _build(model, backend)
                entries = _cache.setdefault(model, {})
                entries[backend] = (fingerprint, runner)
                if runner is not None:  # "auto" found this backend: reuse it when named
                    entries[runner.backend] = (fingerprint, runner)
    return runner if runner is not None else TorchRunner(model, model.config, "eager")


def _build(model: nn.Module, backend: str) -> Runner | None:
    """A checked runner for ``backend``, or None for eager."""
    if backend != "auto":
        return _BUILDERS[backend](model)
    for candidate in auto_candidates(model)[:-1]:
        try:
            runner = _BUILDERS[candidate](model)
        except Exception as e:  # a fast path must never break inference: fall back
            warnings.warn(f"{candidate} backend skipped: {e}", RuntimeWarning, stacklevel=4)
            continue
        log.info("inference backend: %s", candidate)
        return runner
    return None
