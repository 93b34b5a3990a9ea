"""save_pretrained / from_pretrained with real files on disk."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from unet_hub import UNet
from unet_hub.errors import ModelLoadError
from unet_hub.model.save import save_model_folder
from unet_hub.model.weights import count_parameters, load_weights


def _trained_looking(model: UNet) -> UNet:
    """Randomise BatchNorm statistics so a lost buffer would change the output."""
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture
def saved(tmp_path: Path) -> tuple[UNet, Path]:
    model = _trained_looking(UNet(n_channels=3, n_classes=1, base_channels=4, labels=["cell"]))
    model.save_pretrained(tmp_path / "model")
    return model, tmp_path / "model"


def test_save_pretrained_writes_exactly_the_three_files(tmp_path):
    UNet(base_channels=2).save_pretrained(tmp_path / "x")
    assert sorted(os.listdir(tmp_path / "x")) == ["README.md", "config.json", "model.safetensors"]


def test_round_trip_is_bit_identical(saved):
    model, folder = saved
    loaded = UNet.from_pretrained(folder)
    assert not loaded.training
    x = torch.rand(1, 3, 45, 70)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert loaded.config == model.config


def test_config_carries_what_a_caller_needs(saved):
    _, folder = saved
    config = json.loads((folder / "config.json").read_text())
    assert config["n_channels"] == 3
    assert config["n_classes"] == 1
    assert config["labels"] == ["cell"]
    assert config["input_scaling"] == "dtype"
    assert config["threshold"] == 0.5
    assert config["library_name"] == "unet-hub"
    assert config["format"] == 1


def test_model_card_is_rendered_from_the_template(tmp_path):
    model = UNet(base_channels=2, labels=["cell interior"])
    save_model_folder(
        model,
        tmp_path / "m",
        metrics={"validation Dice": 0.91234},
        training={
            "data": "isbi (4 images)",
            "val": None,
            "recipe": "RMSprop",
            "epochs": 2,
            "epoch": 2,
            "selected": "the best epoch by validation Dice",
            "command": "train.py --data isbi --out m",
            "seed": 0,
        },
    )
    card = (tmp_path / "m" / "README.md").read_text()
    assert card.startswith("---\n")
    assert "library_name: unet-hub" in card
    assert "pipeline_tag: image-segmentation" in card
    assert "**cell interior**" in card
    assert "| validation Dice | 0.9123 |" in card
    assert "`train.py --data isbi --out m`" in card
    assert 'UNet.from_pretrained("path/to/model")' in card


def test_override_config_key_when_loading(saved):
    _, folder = saved
    assert UNet.from_pretrained(folder, threshold=0.3).config["threshold"] == 0.3


def _edit_config(folder: Path, **changes) -> None:
    path = folder / "config.json"
    config = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key)
        else:
            config[key] = value
    path.write_text(json.dumps(config))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"base_channels": 8}, "do not match config.json.*wrong shape"),
        ({"n_classes": 2, "labels": ["a", "b"]}, "wrong shape"),
        ({"bilinear": False}, "missing: up1.up.bias, up1.up.weight"),
        ({"colour": "blue"}, "unknown keys \\['colour'\\]"),
        ({"n_channels": None}, "lacks the keys \\['n_channels'\\]"),
        ({"n_channels": "3"}, "invalid: n_channels must be of type int"),
        ({"format": 99}, "format 99, newer than"),
        ({"library_name": "timm"}, "for library 'timm'"),
    ],
)
def test_bad_config_is_a_clear_error(saved, changes, message):
    _, folder = saved
    _edit_config(folder, **changes)
    with pytest.raises(ModelLoadError, match=message):
        UNet.from_pretrained(folder)


def test_weights_with_unexpected_names_are_refused(saved):
    model, folder = saved
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state["extra.weight"] = torch.zeros(1)
    save_file(state, folder / "model.safetensors")
    with pytest.raises(ModelLoadError, match="unexpected: extra.weight"):
        UNet.from_pretrained(folder)


def test_missing_or_corrupted_weights(saved):
    _, folder = saved
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelLoadError, match="unreadable or corrupted"):
        UNet.from_pretrained(folder)
    weights.unlink()
    with pytest.raises(ModelLoadError, match="no model.safetensors"):
        UNet.from_pretrained(folder)


def test_pickled_weights_are_never_read(saved):
    _, folder = saved
    (folder / "model.safetensors").unlink()
    # A pickle that would run code if it were ever unpickled.
    marker = folder.parent / "pwned"
    (folder / "pytorch_model.bin").write_bytes(
        b"\x80\x04cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    )
    with pytest.raises(ModelLoadError, match="no model.safetensors"):
        UNet.from_pretrained(folder)
    assert not marker.exists()


def test_folder_without_config_is_not_a_unet_hub_model(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        UNet.from_pretrained(tmp_path / "empty")


def test_missing_local_folder_is_reported_without_asking_the_hub(tmp_path):
    with pytest.raises(ModelLoadError, match="no such model folder"):
        UNet.from_pretrained(tmp_path / "nope")


def test_save_model_folder_replaces_files_and_keeps_others(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "training_log.csv").write_text("epoch\n1\n")
    save_model_folder(UNet(base_channels=2), folder)
    save_model_folder(UNet(base_channels=2, threshold=0.4), folder)
    assert json.loads((folder / "config.json").read_text())["threshold"] == 0.4
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
        "training_log.csv",
    ]


def test_float16_weights_halve_the_file_and_load_as_float32(tmp_path):
    torch.manual_seed(0)
    model = UNet(base_channels=8).eval()
    full = save_model_folder(model, tmp_path / "fp32")
    half = save_model_folder(model, tmp_path / "fp16", half=True)
    size = {p.name: (p / "model.safetensors").stat().st_size for p in (full, half)}
    assert size["fp16"] < 0.55 * size["fp32"]
    loaded = UNet.from_pretrained(half).eval()
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    assert next(model.parameters()).dtype == torch.float32  # the original is untouched
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        difference = (torch.sigmoid(loaded(x)) - torch.sigmoid(model(x))).abs().max()
    assert 0 < difference < 1e-2


# -- strict loading, in process (load_weights itself) ------------------------------------


def _save_state(state: dict, file: Path) -> str:
    save_file({k: v.contiguous() for k, v in state.items()}, file)
    return str(file)


def test_load_weights_copies_every_tensor_buffers_included(tmp_path):
    source = _trained_looking(UNet(base_channels=2))
    file = _save_state(source.state_dict(), tmp_path / "w.safetensors")
    target = UNet(base_channels=2)
    load_weights(target, file, "m")
    for name, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[name], value), name


def test_load_weights_lists_three_names_of_a_kind_then_dots(tmp_path):
    state = UNet(base_channels=2).state_dict()
    names = sorted(state)
    for name in names[:4]:
        del state[name]
    file = _save_state(state, tmp_path / "w.safetensors")
    with pytest.raises(ModelLoadError) as error:
        load_weights(UNet(base_channels=2), file, "my-model")
    assert str(error.value) == (
        "my-model: the weights do not match config.json "
        f"(missing: {names[0]}, {names[1]}, {names[2]} ...)"
    )


def test_load_weights_names_every_kind_of_mismatch_without_dots_up_to_three(tmp_path):
    state = UNet(base_channels=2).state_dict()
    del state["outc.bias"]
    state["extra.a"] = torch.zeros(1)
    state["extra.b"] = torch.zeros(1)
    state["extra.c"] = torch.zeros(1)
    state["inc.0.weight"] = torch.zeros(3, 1, 3, 3)
    file = _save_state(state, tmp_path / "w.safetensors")
    with pytest.raises(ModelLoadError) as error:
        load_weights(UNet(base_channels=2), file, "my-model")
    assert str(error.value) == (
        "my-model: the weights do not match config.json (missing: outc.bias; "
        "unexpected: extra.a, extra.b, extra.c; "
        "wrong shape: inc.0.weight (3, 1, 3, 3) != (2, 1, 3, 3))"
    )


def test_load_weights_refuses_a_wrong_shape_alone_and_leaves_the_model_untouched(tmp_path):
    state = UNet(base_channels=2).state_dict()
    state["outc.weight"] = torch.ones(1, 2, 3, 3)
    file = _save_state(state, tmp_path / "w.safetensors")
    target = UNet(base_channels=2)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ModelLoadError, match=r"\(wrong shape: outc.weight \(1, 2, 3, 3\) != "):
        load_weights(target, file, "my-model")
    assert all(torch.equal(target.state_dict()[k], v) for k, v in before.items())


def test_load_weights_names_the_source_and_the_file_when_unreadable(tmp_path):
    file = tmp_path / "w.safetensors"
    file.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError, match=r"^my-model: model.safetensors is unreadable or "):
        load_weights(UNet(base_channels=2), str(file), "my-model")
    with pytest.raises(ModelLoadError, match=r"^my-model: model.safetensors is unreadable or "):
        load_weights(UNet(base_channels=2), str(tmp_path / "absent"), "my-model")


def test_count_parameters_counts_only_trainable_ones():
    model = UNet(base_channels=2)
    total = sum(p.numel() for p in model.parameters())
    model.outc.weight.requires_grad_(False)
    assert count_parameters(model) == total - model.outc.weight.numel()
