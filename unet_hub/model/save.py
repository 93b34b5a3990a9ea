"""Writing a model as a ``save_pretrained`` folder with its model card."""

from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from unet_hub.files import MODEL_FILES
from unet_hub.model.unet import UNet


def save_model_folder(
    model: UNet, directory: str | Path, *, half: bool = False, **card: Any
) -> Path:
    """``save_pretrained`` into ``directory``, replacing each model file atomically.

    The folder is first written beside the target and each file then renamed into
    place, so an interrupted save never leaves a half-written model behind. ``card``
    goes to the model card (``metrics``, ``training``, ``repo_id``, ``datasets``).
    Other files in ``directory`` (a training log, sub-folders) are left alone.
    ``half`` stores the floating-point weights as float16 (half the file; a loaded model
    computes in float32 as always).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if half or not all(p.is_contiguous() for p in model.parameters()):
        # safetensors stores contiguous tensors: a channels_last model is copied back
        model = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
        if half:
            model = model.half()
    with tempfile.TemporaryDirectory(dir=directory, prefix=".saving-") as tmp:
        model.save_pretrained(tmp, model_card_kwargs=card)
        for name in MODEL_FILES:
            os.replace(Path(tmp) / name, directory / name)
    return directory
