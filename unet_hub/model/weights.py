"""Loading safetensors weights into a model strictly, and counting its parameters."""

from __future__ import annotations

from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from unet_hub.errors import ConfigError, ModelLoadError
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


#: The first convolution (its input channels) and the last one (its classes).
FIRST_CONV = "inc.0.weight"
HEAD = "outc."


def transfer_weights(target: nn.Module, source: nn.Module, source_name: str) -> list[str]:
    """Copy ``source``'s weights into ``target`` layer by layer, strictly: every layer
    must have the same shape, except the first convolution when the input channels
    differ and the last one (``outc``) when the classes differ, which keep ``target``'s
    fresh weights. Returns one note per layer group left fresh; raises ``ConfigError``
    naming the first layer that does not fit."""
    src, dst = source.state_dict(), target.state_dict()
    fresh: list[str] = []
    for name, value in dst.items():
        if name not in src:
            raise ConfigError(f"{source_name}: has no layer {name}; it is not a U-Net of this kind")
        if src[name].shape == value.shape:
            dst[name] = src[name].to(value.dtype)
        elif name.startswith(HEAD) and src[name].shape[1:] == value.shape[1:]:
            if "the last convolution (outc)" not in fresh:
                fresh.append("the last convolution (outc)")
        elif name == FIRST_CONV and src[name].shape[::2] == value.shape[::2]:
            fresh.append("the first convolution (inc.0)")
        else:
            raise ConfigError(
                f"{source_name}: layer {name} is {tuple(src[name].shape)} there but "
                f"{tuple(value.shape)} here; give the same --base-channels and --bilinear as "
                "that model"
            )
    target.load_state_dict(dst, strict=True)
    return fresh
