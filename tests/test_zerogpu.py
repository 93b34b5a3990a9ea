"""ZeroGPU: the app's network runs inside a real ``@spaces.GPU`` function on a model moved
to the device at start-up; off ZeroGPU nothing changes. No GPU here: the decorated path
runs on the CPU device, where ``spaces.GPU`` hands the function back as it is."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import SAMPLE
from unet_hub import UNet, read_image, segment
from unet_hub.app import zerogpu

IMAGE = SAMPLE / "test" / "10.png"


@pytest.fixture(scope="module")
def model() -> UNet:
    torch.manual_seed(0)
    return UNet(base_channels=4).eval()


def test_off_zerogpu_the_app_runs_segment_unchanged(model, monkeypatch) -> None:
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    assert not zerogpu.on_zerogpu()
    image = read_image(IMAGE)
    assert np.array_equal(zerogpu.segmenter(model)(image), segment(model, image))


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("1", True), ("", False)])
def test_zerogpu_is_recognised_as_the_spaces_package_does(monkeypatch, value, expected) -> None:
    monkeypatch.setenv("SPACES_ZERO_GPU", value)
    assert zerogpu.on_zerogpu() is expected


def test_the_gpu_decorated_path_segments_like_the_cpu_path(model) -> None:
    import spaces

    run = zerogpu.segmenter(model, zero_gpu=True, device="cpu")
    # Off ZeroGPU, spaces.GPU returns the very function it decorates: the same code runs.
    assert spaces.GPU(run) is run
    assert run.model is not model  # a copy was moved to the device at start-up...
    assert next(run.model.parameters()).device.type == "cpu"
    assert not run.model.training
    image = read_image(IMAGE)
    expected = segment(model, image)
    assert np.abs(run(image) - expected).max() < 1e-4  # ...and runs the eager path
    assert next(model.parameters()).device.type == "cpu"  # the app's own model is untouched
