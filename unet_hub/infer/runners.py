"""Runners: one network behind one call, ``runner(batch) -> logits``, and their checks.

A runner maps a float32 batch N×C×H×W (H and W multiples of 16, as ``segment`` cuts
them) to logits: the model itself (eager), a BatchNorm-folded copy (fused), or an ONNX
graph run by ONNX Runtime. Every runner built from a model is checked against the model.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import logging
import math
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from unet_hub.errors import UNetHubError
from unet_hub.model.config import UNetConfig

log = logging.getLogger(__name__)

#: Largest probability difference from the eager model a float32 fast path may show.
FP32_TOLERANCE = 1e-4

#: TF32 policy (one place). On Ampere and later GPUs cuDNN runs float32 convolutions in
#: TF32 by default (``torch.backends.cudnn.conv.fp32_precision``): inputs are rounded to a 10-bit
#: mantissa (unit roundoff 2**-11 ≈ 4.9e-4), so two float32 networks that are the same
#: function (eager and BatchNorm-folded) differ by rounding, not by a bug (1.2e-4 to
#: 1.3e-4 measured on an H200 in issue 18). TF32 stays on where the user left it on: it is
#: the speed GPUs are bought for. ``check_runner`` compares like with like in strict
#: IEEE float32 (``ieee_float32``), so a fast path is accepted or refused on its
#: arithmetic alone, to ``FP32_TOLERANCE`` on every device; at run time eager and fused
#: both run in the user's math mode and agree to ``TF32_TOLERANCE`` (two TF32 roundoffs).
TF32_TOLERANCE = 2 * 2.0**-11

#: (batch, height, width) of the random batch every runner is checked on when built: two
#: non-square images exercise the dynamic sizes, and small ones keep the check cheap.
PROBE_SHAPES = ((2, 64, 96),)

#: The same for 16-bit models (their own rounding is ~1e-3).
HALF_TOLERANCE = 1e-2


#: Key of the model config JSON in an exported ONNX file's metadata.
CONFIG_METADATA_KEY = "unet_hub_config"


#: Key of the backend name ("onnx" or "onnx-int8") in an exported ONNX file's metadata.
BACKEND_METADATA_KEY = "unet_hub_backend"


class BackendError(UNetHubError):
    """A backend is unavailable for this model or does not reproduce the eager model."""


def probabilities_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Sigmoid for one class, softmax over the class axis for several."""
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block, then restore its mode."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def cpu_budget() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota
    (containers often show all the host's cores but allow only a few)."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        count = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return count


def size_torch_threads() -> None:
    """More intra-op threads than CPUs make every parallel region wait for descheduled
    threads; PyTorch counts the host's cores, so cap it at the budget (never raise it)."""
    budget = cpu_budget()
    if torch.get_num_threads() > budget:
        log.info("torch threads %d -> %d (CPU budget)", torch.get_num_threads(), budget)
        torch.set_num_threads(budget)


def onnx_available() -> bool:
    """Whether the ``fast`` extra (ONNX Runtime and the exporter's packages) is installed."""
    return all(importlib.util.find_spec(name) for name in ("onnxruntime", "onnx", "onnxscript"))


class Runner:
    """A prepared network: ``runner(batch)`` maps float32 N×C×H×W to logits N×K×H×W.

    ``backend`` names how it runs and ``config`` is the model's config (what ``segment``
    needs to convert images and read the output).
    """

    backend: str
    config: UNetConfig

    def __call__(self, batch: np.ndarray) -> torch.Tensor:
        raise NotImplementedError


class TorchRunner(Runner):
    """A PyTorch module run under ``torch.inference_mode`` on its own device and dtype."""

    def __init__(self, module: nn.Module, config: UNetConfig, backend: str):
        param = next(module.parameters())
        self.module, self.config, self.backend = module, config, backend
        self.device, self.dtype = param.device, param.dtype
        self.channels_last = backend == "fused" and self.device.type == "cpu"

    def __call__(self, batch: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(batch).to(device=self.device, dtype=self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self.module(x)


class OnnxRunner(Runner):
    """An ONNX model run by ONNX Runtime: one session, threads sized to the CPU budget."""

    def __init__(
        self,
        onnx_model: bytes | str | Path,
        config: UNetConfig,
        backend: str,
        threads: int | None = None,
    ):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or cpu_budget()
        options.inter_op_num_threads = 1  # the graph is a chain: nothing runs in parallel
        source = str(onnx_model) if isinstance(onnx_model, Path) else onnx_model
        self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.config, self.backend = config, backend

    def __call__(self, batch: np.ndarray) -> torch.Tensor:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        (logits,) = self.session.run(None, {self.input_name: batch})
        return torch.from_numpy(logits)


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of an ONNX file (``export_onnx`` stores the config, the backend and,
    for int8, the measured change there)."""
    import onnx

    try:
        return {
            p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props
        }
    except Exception as e:  # OSError, or protobuf's DecodeError for a file that is not ONNX
        raise BackendError(f"{path}: not a readable ONNX file ({e})") from None


def load_onnx(path: str | Path) -> OnnxRunner:
    """A runner for an ONNX file written by ``unet_hub.infer.export.export_onnx`` (fp32 or int8);
    pass it to ``segment`` in place of the model."""
    metadata = read_onnx_metadata(path)
    if CONFIG_METADATA_KEY not in metadata:
        raise BackendError(f"{path}: not exported by unet-hub (no {CONFIG_METADATA_KEY} metadata)")
    config = UNetConfig.from_saved(json.loads(metadata[CONFIG_METADATA_KEY]), source=str(path))
    return OnnxRunner(Path(path), config, metadata.get(BACKEND_METADATA_KEY, "onnx"))


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with each BatchNorm2d that directly follows a Conv2d
    in an ``nn.Sequential`` folded into that convolution (and replaced by Identity).

    Folding is done in float64 and cast back, so a 16-bit model loses nothing extra.
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.named_children())
        for (conv_name, conv), (bn_name, bn) in zip(children, children[1:], strict=False):
            if type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d:
                dtype = conv.weight.dtype
                fused = fuse_conv_bn_eval(conv.double(), bn.double()).to(dtype)
                setattr(module, conv_name, fused)
                setattr(module, bn_name, nn.Identity())
    return folded.requires_grad_(False)


def _precision_chains() -> tuple[tuple[object, ...], ...]:
    """PyTorch's float32-precision settings that decide whether GPU work rounds to TF32,
    each as a chain from the setting to its parents (``fp32_precision`` "none" means "as
    the parent", and "ieee" at the top): cuDNN's convolutions (this network's work) and
    cuBLAS's matmuls. The legacy ``allow_tf32`` flags and
    ``torch.set_float32_matmul_precision`` write these same settings, and reading the
    legacy flags warns on PyTorch 2.9 to 2.11, so only these are read."""
    backends = torch.backends
    return (
        (backends.cudnn.conv, backends.cudnn, backends),
        (backends.cuda.matmul, backends),
    )


def _effective_precision(chain: tuple[object, ...]) -> str:
    for setting in chain:
        value = getattr(setting, "fp32_precision", "none")
        if value != "none":
            return value
    return "ieee"


def tf32_in_use(device: torch.device) -> bool:
    """Whether float32 convolutions or matmuls on ``device`` may round to TF32: CUDA with
    TF32 allowed for either (cuDNN's convolutions allow it by default)."""
    return device.type == "cuda" and any(
        _effective_precision(chain) == "tf32" for chain in _precision_chains()
    )


def probability_tolerance(dtype: torch.dtype, device: torch.device) -> float:
    """Largest probability difference two runs of the same network may show in ``dtype``
    on ``device`` under the current math mode (see ``TF32_TOLERANCE``)."""
    if dtype not in (torch.float32, torch.float64):
        return HALF_TOLERANCE
    return TF32_TOLERANCE if dtype == torch.float32 and tf32_in_use(device) else FP32_TOLERANCE


#: ``ieee_float32`` changes process-wide settings: one block at a time (re-entrant).
_ieee_lock = threading.RLock()


@contextlib.contextmanager
def ieee_float32() -> Iterator[None]:
    """Float32 convolutions and matmuls in full IEEE precision (TF32 off) for the block,
    then PyTorch's settings exactly as they were. The settings are process-wide: another
    thread running meanwhile computes more precisely (and slower), never less."""
    with _ieee_lock:
        settings = [chain[0] for chain in _precision_chains()]
        saved = [setting.fp32_precision for setting in settings]
        try:
            for setting in settings:
                setting.fp32_precision = "ieee"
            yield
        finally:
            for setting, value in zip(settings, saved, strict=True):
                setting.fp32_precision = value


def max_probability_difference(runner: Runner, model: nn.Module, batch: np.ndarray) -> float:
    """Largest |p_runner - p_eager| over ``batch``, the eager model run in eval mode."""
    param = next(model.parameters())
    with evaluating(model), torch.inference_mode():
        x = torch.from_numpy(batch).to(device=param.device, dtype=param.dtype)
        expected = probabilities_from_logits(model(x))
        actual = probabilities_from_logits(runner(batch).to(param.device))
        return (actual.float() - expected.float()).abs().max().item()


def check_runner(
    runner: Runner, model: nn.Module, shapes: Sequence[tuple[int, int, int]] = PROBE_SHAPES
) -> float:
    """Raise ``BackendError`` unless ``runner`` matches the eager ``model`` within the
    tolerance of its dtype on random batches of these (batch, height, width) shapes;
    return the largest difference.

    Where TF32 is in use, both run in strict IEEE float32 for the check (see
    ``TF32_TOLERANCE``), so it judges the runner's arithmetic, not the GPU's rounding.
    """
    param = next(model.parameters())
    rng = np.random.default_rng(0)
    worst = 0.0
    # Only then: the switch is process-wide, and while it is set PyTorch's own readers of
    # the legacy allow_tf32 flags (torch.export, for ONNX) refuse to run.
    strict = ieee_float32() if tf32_in_use(param.device) else contextlib.nullcontext()
    with strict:
        tolerance = probability_tolerance(param.dtype, param.device)
        for n, h, w in shapes:
            batch = rng.random((n, model.config["n_channels"], h, w), dtype=np.float32)
            worst = max(worst, _checked_difference(runner, model, batch, tolerance))
    return worst


def _checked_difference(
    runner: Runner, model: nn.Module, batch: np.ndarray, tolerance: float
) -> float:
    difference = max_probability_difference(runner, model, batch)
    h, w = batch.shape[2:]
    if not difference <= tolerance:  # also catches NaN
        raise BackendError(
            f"the {runner.backend} backend differs from the eager model by "
            f"{difference:.2e} in probability at {h}×{w} (tolerance {tolerance:.0e})"
        )
    return difference
