"""`unet-hub export`: an ONNX file that runs on its own and gives the model's result."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from test_inference import sensitive_model

from conftest import ROOT, SAMPLE
from support.in_process import cli_here
from unet_hub import UNet, read_image, segment

pytest.importorskip("onnxruntime", reason="the `fast` extra (onnxruntime) is not installed")


def test_export_writes_a_file_that_matches_the_model(tmp_path):
    from unet_hub.infer.runners import load_onnx

    model_dir = tmp_path / "model"
    # a model whose output depends on its input: a default-initialised one is near-constant
    sensitive_model(base_channels=4).save_pretrained(model_dir)
    onnx_path = tmp_path / "model.onnx"
    result = subprocess.run(
        [sys.executable, "-m", "unet_hub.cli", "export", str(model_dir), "--onnx", str(onnx_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert f"wrote {onnx_path}" in result.stdout
    image = read_image(SAMPLE / "test" / "10.png")[:200, :300]
    from_file = segment(load_onnx(onnx_path), image)
    eager = segment(UNet.from_pretrained(model_dir), image, backend="eager")
    assert np.abs(from_file - eager).max() <= 1e-4
    assert np.ptp(eager) > 0.2  # not near-constant: the comparison compares something


def test_int8_without_calibration_images_is_a_clear_error(tmp_path):
    model_dir = tmp_path / "model"
    UNet(base_channels=2).save_pretrained(model_dir)
    # `unet-hub export ... --int8`, run in this process (support.in_process)
    result = cli_here("export", str(model_dir), "--onnx", str(tmp_path / "m.onnx"), "--int8")
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "calibration" in result.stderr
    assert "Traceback" not in result.stderr
