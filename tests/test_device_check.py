"""The GPU device check (benchmarks/gpu_check.py) on a machine without CUDA."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT


def test_without_cuda_the_device_check_says_so_and_exits_0(tmp_path):
    # CUDA hidden: the same answer on a GPU machine as on a CPU-only one
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OUT": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")],
        cwd=tmp_path,  # runs from anywhere: it finds the project from its own path
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "no CUDA device" in result.stdout
    assert list(tmp_path.iterdir()) == []  # nothing measured, nothing written
