"""Shared fixtures: small real images on disk."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "isbi2012"


def write_image(path: Path, array: np.ndarray) -> Path:
    """Write an image (RGB order for colour) with OpenCV, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.ndim == 3 and array.shape[2] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), array), path
    return path


@pytest.fixture
def sample_data(tmp_path: Path) -> Path:
    """A copy of the shipped ISBI sample: 4 image/mask pairs in images/ + masks/."""
    target = tmp_path / "isbi"
    shutil.copytree(SAMPLE / "train", target)
    return target


@pytest.fixture
def sample_test_image() -> Path:
    return SAMPLE / "test" / "00.png"
