"""Architecture and constructor validation."""

from __future__ import annotations

import pytest
import torch

from unet_hub import UNet
from unet_hub.errors import ConfigError, ModelLoadError
from unet_hub.model.config import UNetConfig, field_default, field_help, field_names
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


# -- UNetConfig: validation messages, views and config.json (unet_hub.model.config) ------


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"n_channels": 1.5}, "n_channels must be of type int, got 1.5 (float)"),
        ({"n_classes": True}, "n_classes must be of type int, got True (bool)"),
        ({"threshold": True}, "threshold must be of type float, got True (bool)"),
        ({"threshold": "0.5"}, "threshold must be of type float, got '0.5' (str)"),
        ({"labels": "cells"}, "labels must be of type tuple[str, ...] | None, got 'cells' (str)"),
        ({"labels": [1]}, "labels must be of type tuple[str, ...] | None, got (1,) (tuple)"),
        ({"mask_values": [[0], ["a"]], "n_classes": 2},
         "mask_values must be of type tuple[tuple[int, ...], ...] | None, got ((0,), ('a',)) "
         "(tuple)"),
        ({"n_channels": 0}, "n_channels must be a positive integer, got 0"),
        ({"n_classes": 0}, "n_classes must be a positive integer, got 0"),
        ({"base_channels": 0}, "base_channels must be a positive integer, got 0"),
        ({"labels": ["a", "b"]}, "labels must name each of the 1 classes, got ['a', 'b']"),
        ({"input_scaling": "robust"},
         "input_scaling must be one of ('dtype', 'minmax', 'zscore', 'percentile'), got 'robust'"),
        ({"norm": "layer"}, "norm must be one of ('batch', 'instance', 'group'), got 'layer'"),
        ({"threshold": 0}, "threshold must lie strictly between 0 and 1, got 0.0"),
        ({"threshold": 1}, "threshold must lie strictly between 0 and 1, got 1.0"),
        ({"threshold": float("nan")}, "threshold must lie strictly between 0 and 1, got nan"),
        ({"min_size": -1}, "min_size must be 0 or more pixels, got -1"),
        ({"mask_values": [[0], [255]]},
         "mask_values are for several classes; a one-class mask is 0 = background, any other "
         "value = foreground"),
        ({"n_classes": 3, "mask_values": [[0], [255]]},
         "mask_values must give one value for each of the 3 classes, got 2"),
        ({"n_classes": 2, "mask_values": [[0], [1, 2, 3]]},
         "mask_values must all be grey levels (one number) or all R,G,B colours, each 0-65535, "
         "got [[0], [1, 2, 3]]"),
        ({"n_classes": 2, "mask_values": [[0, 0], [1, 2]]},
         "mask_values must all be grey levels (one number) or all R,G,B colours, each 0-65535, "
         "got [[0, 0], [1, 2]]"),
        ({"n_classes": 2, "mask_values": [[0], [65536]]},
         "mask_values must all be grey levels (one number) or all R,G,B colours, each 0-65535, "
         "got [[0], [65536]]"),
        ({"n_classes": 2, "mask_values": [[-1], [5]]},
         "mask_values must all be grey levels (one number) or all R,G,B colours, each 0-65535, "
         "got [[-1], [5]]"),
        ({"n_classes": 2, "mask_values": [[5], [5]]},
         "mask_values must differ between classes, got [(5,), (5,)]"),
    ],
)  # fmt: skip
def test_a_bad_config_value_is_refused_naming_the_field_and_the_value(fields, message):
    with pytest.raises(ConfigError) as error:
        UNetConfig(**fields)
    assert str(error.value) == message


def test_config_edges_that_are_valid():
    assert UNetConfig(threshold=0.01).threshold == 0.01 and UNetConfig(min_size=0).min_size == 0
    config = UNetConfig(n_classes=2, mask_values=[[0, 0, 0], [65535, 0, 0]], labels=["a", "b"])
    assert config.mask_values == ((0, 0, 0), (65535, 0, 0)) and config.labels == ("a", "b")
    assert isinstance(UNetConfig(threshold=1 / 2).threshold, float)
    assert type(UNetConfig(threshold=0.5).to_dict()["threshold"]) is float


def test_config_views_are_json_and_the_fields_are_its_keys():
    config = UNetConfig(n_classes=2, mask_values=[[0], [9]], base_channels=2)
    assert config["labels"] == ["class 0", "class 1"] and config.labels == ("class 0", "class 1")
    assert config["mask_values"] == [[0], [9]]
    assert config.get("base_channels") == 2 and config.get("colour", "none") == "none"
    assert list(config.keys()) == list(field_names()) == list(config.to_dict())
    with pytest.raises(KeyError) as error:
        config["colour"]
    assert error.value.args == ("colour",)
    assert field_default("base_channels") == 64 and field_default("labels") is None
    assert field_help("n_channels") == "input channels: 1 = grayscale, 3 = RGB"


def test_replace_makes_a_validated_copy_and_refuses_unknown_fields():
    config = UNetConfig(base_channels=2)
    assert config.replace(threshold=0.3).threshold == 0.3 and config.threshold == 0.5
    with pytest.raises(ConfigError) as error:
        config.replace(colour="blue", alpha=1)
    assert str(error.value) == "unknown model config fields ['alpha', 'colour']"
    with pytest.raises(ConfigError, match="threshold must lie strictly"):
        config.replace(threshold=2.0)


def test_config_json_holds_later_fields_only_when_they_differ_from_their_default():
    saved = UNetConfig(base_channels=2).to_saved_dict()
    assert not set(saved) & {"mask_values", "watershed", "min_size", "norm"}
    assert (saved["format"], saved["library_name"], saved["model_type"]) == (1, "unet-hub", "unet")
    assert saved["labels"] == ["foreground"] and saved["threshold"] == 0.5
    changed = UNetConfig(base_channels=2, watershed=True, min_size=3, norm="group").to_saved_dict()
    assert (changed["watershed"], changed["min_size"], changed["norm"]) == (True, 3, "group")
    back = UNetConfig.from_saved(changed, "m")
    assert back == UNetConfig(base_channels=2, watershed=True, min_size=3, norm="group")


@pytest.mark.parametrize(
    "saved, message",
    [
        ({"library_name": "timm", "n_channels": 1},
         "m: config.json is for library 'timm', not unet-hub; load it with that library instead"),
        ({"format": 2, "n_channels": 1},
         "m: config.json has format 2, newer than this unet-hub reads (1); upgrade unet-hub "
         "(pip install -U unet-hub)"),
        ({"format": "1", "n_channels": 1},
         "m: config.json has format '1', newer than this unet-hub reads (1); upgrade unet-hub "
         "(pip install -U unet-hub)"),
        ({"architectures": ["Bert"], "hidden": 3, "a": 1, "b": 2, "c": 3, "d": 4},
         "m: config.json is not a unet-hub config (keys: a, architectures, b, c, d); this "
         "model is for another library"),
        ({}, "m: config.json is not a unet-hub config (keys: none); this model is for another "
         "library"),
        ({"library_name": "unet-hub", "n_channels": 1, "colour": 1},
         "m: config.json has unknown keys ['colour']"),
        ({"n_channels": 1, "n_classes": 1},
         "m: config.json lacks the keys ['base_channels']"),
        ({"n_channels": 1, "n_classes": 1, "base_channels": 0},
         "m: config.json is invalid: base_channels must be a positive integer, got 0"),
    ],
)  # fmt: skip
def test_a_foreign_newer_or_incomplete_config_json_is_refused_naming_the_source(saved, message):
    with pytest.raises(ModelLoadError) as error:
        UNetConfig.from_saved(saved, "m")
    assert str(error.value) == message


def test_a_config_json_of_the_current_format_or_without_library_tag_loads():
    fields = {"n_channels": 3, "n_classes": 1, "base_channels": 2}
    assert UNetConfig.from_saved({**fields, "format": 1}, "m").n_channels == 3
    assert UNetConfig.from_saved(fields, "m").base_channels == 2  # an early config.json


@pytest.mark.parametrize(
    ("fields", "recommends"),
    [
        ({}, False),
        ({"watershed": True}, True),
        ({"min_size": 1}, True),
        ({"watershed": True, "min_size": 20}, True),
        ({"n_classes": 3, "watershed": True}, False),  # objects are of one-class models
        ({"n_classes": 2, "min_size": 5}, False),
    ],
)
def test_a_config_recommends_objects_when_it_splits_or_cleans_them(fields, recommends):
    assert UNetConfig(**fields).recommends_objects is recommends
