"""Architecture and constructor validation."""

from __future__ import annotations

import pytest
import torch

from unet_hub import UNet
from unet_hub.errors import ConfigError
from unet_hub.model.weights import count_parameters


def _double_conv(cin: int, cout: int) -> int:
    # two 3x3 convolutions with bias, each followed by BatchNorm (weight + bias)
    return (9 * cin * cout + cout + 2 * cout) + (9 * cout * cout + cout + 2 * cout)


def test_seed_configuration_parameter_count():
    """Widths 64-128-256-512-512, up 1024->256, 512->128, 256->64, 128->64, 1x1 out."""
    expected = (
        _double_conv(1, 64)
        + _double_conv(64, 128)
        + _double_conv(128, 256)
        + _double_conv(256, 512)
        + _double_conv(512, 512)
        + _double_conv(1024, 256)
        + _double_conv(512, 128)
        + _double_conv(256, 64)
        + _double_conv(128, 64)
        + (64 * 1 + 1)
    )
    assert count_parameters(UNet(n_channels=1, n_classes=1)) == expected


def test_transposed_convolutions_add_their_weights():
    bilinear = count_parameters(UNet(base_channels=8))
    transposed = count_parameters(UNet(base_channels=8, bilinear=False))
    # ConvTranspose2d(c, c, 2, stride 2) for c = in_channels // 2 of each Up: 64, 32, 16, 8
    assert transposed - bilinear == sum(4 * c * c + c for c in (64, 32, 16, 8))


def test_widths_scale_with_base_channels():
    model = UNet(n_channels=3, n_classes=2, base_channels=8)
    assert model.inc[0].in_channels == 3
    assert [m[1][0].out_channels for m in (model.down1, model.down2, model.down3, model.down4)] == [
        16,
        32,
        64,
        64,
    ]
    assert model.outc.out_channels == 2


@pytest.mark.parametrize("bilinear", [True, False])
@pytest.mark.parametrize("size", [(572, 572), (37, 101), (16, 16), (15, 9), (1, 1), (64, 48)])
def test_output_has_the_input_size(bilinear, size):
    model = UNet(n_channels=1, n_classes=2, base_channels=4, bilinear=bilinear).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, *size))
    assert out.shape == (2, 2, *size)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"n_channels": 0}, "n_channels"),
        ({"n_channels": 1.5}, "n_channels"),
        ({"n_classes": -1}, "n_classes"),
        ({"n_classes": True}, "n_classes"),
        ({"base_channels": 0}, "base_channels"),
        ({"bilinear": "yes"}, "bilinear"),
        ({"labels": ["a", "b"]}, "labels"),
        ({"labels": "cells"}, "labels"),
        ({"input_scaling": "robust"}, "input_scaling"),
        ({"norm": "layer"}, "norm"),
        ({"threshold": 1.0}, "threshold"),
        ({"threshold": "0.5"}, "threshold"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ConfigError, match=name) as info:
        UNet(**kwargs)
    assert isinstance(info.value, ValueError)


def test_default_labels_and_config():
    assert UNet(base_channels=2).config["labels"] == ["foreground"]
    assert UNet(n_classes=3, base_channels=2).config["labels"] == ["class 0", "class 1", "class 2"]
    cfg = UNet(base_channels=2, labels=["cell interior"], threshold=0.7).config
    assert cfg["labels"] == ["cell interior"] and cfg["threshold"] == 0.7
