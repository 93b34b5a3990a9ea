"""Inference: a model and an image in, per-pixel probabilities out."""

from __future__ import annotations

import numpy as np
import torch

from .imaging import to_model_input
from .model import UNet


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU; anything else is passed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def probabilities_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Sigmoid for one class, softmax over the class axis for several."""
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


@torch.inference_mode()
def segment(model: UNet, image: np.ndarray) -> np.ndarray:
    """Per-pixel probabilities for an H×W or H×W×C image of any dtype.

    The image is converted to what ``model.config`` says (channels, pixel scaling).
    Returns H×W float32 for one class, classes×H×W for several.
    """
    model.eval()
    param = next(model.parameters())
    x = to_model_input(image, model.n_channels, model.config["input_scaling"])
    x = torch.from_numpy(x)[None].to(device=param.device, dtype=param.dtype)
    probs = probabilities_from_logits(model(x))[0].float().cpu().numpy()
    return probs[0] if model.n_classes == 1 else probs


def predict_mask(model: UNet, image: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """A uint8 mask: 255 where the foreground probability exceeds ``threshold`` (default:
    the model's recommended one) for one class, the class id of the argmax for several."""
    probs = segment(model, image)
    if model.n_classes > 1:
        return probs.argmax(axis=0).astype(np.uint8)
    if threshold is None:
        threshold = model.config["threshold"]
    return np.where(probs > threshold, 255, 0).astype(np.uint8)
