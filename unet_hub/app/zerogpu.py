"""ZeroGPU: run the app's network on a Space's shared GPU, and nothing changes elsewhere.

On ZeroGPU (the ``SPACES_ZERO_GPU`` variable the platform sets, the same test the
``spaces`` package makes) a Space holds a GPU only inside functions decorated with
``@spaces.GPU``; the model is moved to CUDA once, at start-up, as the ZeroGPU docs
describe, and each segmentation runs inside such a function, on the eager PyTorch path
(no ``torch.compile``, which ZeroGPU does not support). Everywhere else ``segmenter``
returns plain ``segment(model, image)``: ONNX Runtime on the CPU when installed.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable

import numpy as np

from unet_hub.app.deadline import TimeLimitedRunner
from unet_hub.infer.backends import prepare
from unet_hub.infer.segment import segment
from unet_hub.model.unet import UNet

#: Seconds of GPU time each segmentation asks ZeroGPU for (the platform's default is 60).
GPU_DURATION = 60

Segmenter = Callable[[np.ndarray], np.ndarray]


def on_zerogpu() -> bool:
    """True on a ZeroGPU Space."""
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")


def segmenter(
    model: UNet,
    *,
    run_seconds: float | None = None,
    zero_gpu: bool | None = None,
    device: str = "cuda",
) -> Segmenter:
    """The function the app calls to get an image's probabilities from ``model``.

    With ``zero_gpu`` (default: ``on_zerogpu()``) a copy of the model is moved to
    ``device`` now and ``segment`` runs on it inside a ``@spaces.GPU`` function; the CPU
    model stays as it is for the rest of the app. Otherwise this is ``segment(model, ·)``
    on the fastest checked backend, stopped after ``run_seconds`` (None: no limit).
    """
    if not (on_zerogpu() if zero_gpu is None else zero_gpu):
        if run_seconds is None:
            return lambda image: segment(model, image)
        return lambda image: segment(TimeLimitedRunner(prepare(model), run_seconds), image)
    import spaces  # only needed, and only installed for sure, on a Space

    gpu_model = copy.deepcopy(model).to(device).eval()

    @spaces.GPU(duration=GPU_DURATION)
    def segment_on_gpu(image: np.ndarray) -> np.ndarray:
        return segment(gpu_model, image, backend="eager")

    segment_on_gpu.model = gpu_model  # for tests: the model the GPU function runs
    return segment_on_gpu
