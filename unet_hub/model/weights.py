"""Loading safetensors weights into a model strictly, and counting its parameters."""

from __future__ import annotations

from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from unet_hub.errors import ModelLoadError
from unet_hub.files import WEIGHTS_NAME


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def load_weights(model: nn.Module, weights_file: str, source: str) -> None:
    """Load a safetensors file into ``model``, refusing any name or shape mismatch."""
    try:
        state = load_file(weights_file)
    except (SafetensorError, OSError) as e:
        raise ModelLoadError(f"{source}: {WEIGHTS_NAME} is unreadable or corrupted ({e})") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong_shape:
        details = "; ".join(
            f"{what}: {', '.join(items[:3])}{' ...' if len(items) > 3 else ''}"
            for what, items in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("wrong shape", wrong_shape),
            )
            if items
        )
        raise ModelLoadError(f"{source}: the weights do not match config.json ({details})")
    model.load_state_dict(state, strict=True)
