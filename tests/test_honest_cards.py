"""Cards and pages name data sets, never paths of the machine that trained the model;
``--init-from`` starts from a published model, strictly."""

from __future__ import annotations

import platform
import re
import subprocess
from pathlib import Path

import cv2
import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import ROOT, SAMPLE
from support.cli_batch import Ran
from support.in_process import train_here
from unet_hub import UNet
from unet_hub.app.webapp import describe_model
from unet_hub.cli import recorded_command
from unet_hub.errors import ConfigError
from unet_hub.files import BUNDLED_MODEL
from unet_hub.hub.cards import card_eval_dataset, card_metrics, load_model_card
from unet_hub.model.weights import transfer_weights

#: An absolute path, a home-relative path or a climb out of a folder.
MACHINE_PATH = re.compile(r"(?:^|[\s'\"(=`])(?:/(?:work|tmp|home|root|usr|mnt)\b|~/|\.\./)")


def train_py(*args: str) -> Ran:
    """``python train.py ARGS``, run in this process (support.in_process: the same
    ``sys.argv``, so the card records the same command; no Python and torch start-up)."""
    return train_here(*args)


def card_yaml(folder: Path) -> dict:
    return yaml.safe_load((folder / "README.md").read_text().split("---")[1])


def test_the_pattern_finds_machine_paths():
    for text in ("data: ../shared/x", "--out /work/bg/b3", "at /tmp/x", "`~/data`"):
        assert MACHINE_PATH.search(text), text
    assert not MACHINE_PATH.search("slices 25-29 of ISBI 2012 EM (5 images), 1/2 of it")


def test_the_bundled_card_names_no_machine_path():
    card = (BUNDLED_MODEL / "README.md").read_text()
    assert not MACHINE_PATH.search(card), MACHINE_PATH.search(card)
    assert "--data DATA" in card and "--out OUT" in card


def test_the_apps_text_names_no_machine_path(tmp_path):
    model = UNet.from_pretrained(BUNDLED_MODEL)
    card = load_model_card(str(BUNDLED_MODEL))
    text = describe_model(model, str(BUNDLED_MODEL), card_metrics(card), card_eval_dataset(card))
    assert not MACHINE_PATH.search(text)
    assert "ISBI 2012 EM" in text
    folder = tmp_path / "my-model"
    model.save_pretrained(folder)
    text = describe_model(model, str(folder), {}, "../shared/data/isbi2012/train")
    assert "`my-model`" in text and str(tmp_path) not in text
    assert "../" not in text


def test_a_recorded_command_shows_placeholders_for_paths():
    argv = ["/x/train.py", "--data", "/srv/d", "--out=/tmp/o", "--val-data", "v", "--lr", "1"]
    assert recorded_command(argv) == "train.py --data DATA --out=OUT --val-data VAL_DATA --lr 1"


@pytest.fixture(scope="module")
def named_run(tmp_path_factory) -> Path:
    """A tiny run with absolute paths, a data set name and a Hub dataset id."""
    base = tmp_path_factory.mktemp("named")
    out = base / "deep" / "run"
    result = train_py(
        *("--data", str(SAMPLE / "train"), "--out", str(out), "--epochs", "1"),
        *("--image-size", "32", "--base-channels", "2", "--val-fraction", "0.25"),
        *("--dataset-name", "Tiny EM", "--dataset-id", "someone/tiny-em"),
    )
    assert result.returncode == 0, result.stderr
    return out


def test_a_trained_card_names_the_data_set_not_its_folder(named_run):
    card = (named_run / "README.md").read_text()
    assert str(named_run) not in card and str(SAMPLE) not in card
    assert not MACHINE_PATH.search(card)
    meta = card_yaml(named_run)
    assert meta["datasets"] == ["someone/tiny-em"]
    dataset = meta["model-index"][0]["results"][0]["dataset"]
    assert dataset == {"name": "held-out block of Tiny EM (1 images)", "type": "someone/tiny-em"}
    training = meta["unet_hub"]["training"]
    assert training["data"] == "Tiny EM (3 images)"
    assert training["command"].startswith("train.py --data DATA --out OUT")
    # the hardware, so the exact recipe can be reproduced: here a CPU run of this torch
    assert training["hardware"].startswith(f"CPU ({platform.machine()}, ")
    assert training["hardware"].endswith(f"threads), torch {torch.__version__.split('+')[0]}")
    assert f"- hardware: {training['hardware']}" in card


def test_without_a_name_the_data_folders_own_name_is_used(tmp_path):
    out = tmp_path / "run"
    result = train_py(
        *("--data", str(SAMPLE / "train"), "--out", str(out), "--epochs", "1"),
        *("--image-size", "32", "--base-channels", "2", "--val-fraction", "0"),
    )
    assert result.returncode == 0, result.stderr
    assert card_yaml(out)["unet_hub"]["training"]["data"] == "train (4 images)"
    assert "datasets" not in card_yaml(out)


# -- --init-from -------------------------------------------------------------------------


def fine_tune(out: Path, *more: str) -> Ran:
    return train_py(
        *("--data", str(SAMPLE / "train"), "--out", str(out), "--epochs", "1"),
        *("--image-size", "64", "--base-channels", "16", "--val-fraction", "0.25"),
        *("--init-from", str(BUNDLED_MODEL), *more),
    )


def conv_weights(state: dict) -> dict:
    return {k: v.float() for k, v in state.items() if k.endswith("weight") and v.ndim == 4}


def test_init_from_a_folder_starts_from_its_weights(tmp_path):
    out = tmp_path / "tuned"
    result = fine_tune(out, "--lr", "0")  # no update: the weights stay the bundled ones
    assert result.returncode == 0, result.stderr
    assert "afresh" not in result.stderr
    tuned = conv_weights(load_file(out / "last" / "model.safetensors"))
    bundled = conv_weights(load_file(BUNDLED_MODEL / "model.safetensors"))
    assert tuned.keys() == bundled.keys()
    for name in tuned:
        torch.testing.assert_close(tuned[name], bundled[name], rtol=0, atol=0)
    training = card_yaml(out)["unet_hub"]["training"]
    assert training["init_from"] == "isbi2012"  # a folder: its name, not its path
    assert "base_model" not in card_yaml(out)


def test_other_classes_start_the_head_afresh_and_keep_the_rest(tmp_path):
    out = tmp_path / "three"
    data = tmp_path / "data"
    for kind in ("images", "masks"):
        (data / kind).mkdir(parents=True)
    # class-id masks 0/1/2 made from the sample's 0/255 masks

    for image in sorted((SAMPLE / "train" / "images").glob("*.png")):
        mask = cv2.imread(str(SAMPLE / "train" / "masks" / image.name), cv2.IMREAD_GRAYSCALE)
        ids = (mask > 0).astype("uint8")
        ids[: ids.shape[0] // 4][ids[: ids.shape[0] // 4] == 1] = 2
        cv2.imwrite(str(data / "masks" / image.name), ids)
        cv2.imwrite(str(data / "images" / image.name), cv2.imread(str(image)))
    result = train_py(
        *("--data", str(data), "--out", str(out), "--epochs", "1", "--lr", "0"),
        *("--image-size", "64", "--base-channels", "16", "--val-fraction", "0.25"),
        *("--n-classes", "3", "--init-from", str(BUNDLED_MODEL)),
    )
    assert result.returncode == 0, result.stderr
    assert "1 classes there, 3 here: the last convolution (outc) start(s) afresh" in result.stderr
    tuned = conv_weights(load_file(out / "last" / "model.safetensors"))
    bundled = conv_weights(load_file(BUNDLED_MODEL / "model.safetensors"))
    assert tuned["outc.weight"].shape == (3, 16, 1, 1)
    torch.testing.assert_close(tuned["up4.conv.3.weight"], bundled["up4.conv.3.weight"])


def test_a_model_of_another_width_is_refused_naming_the_layer(tmp_path):
    result = train_py(
        *("--data", str(SAMPLE / "train"), "--out", str(tmp_path / "o"), "--epochs", "1"),
        *("--image-size", "64", "--base-channels", "8", "--init-from", str(BUNDLED_MODEL)),
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: --init-from ")
    assert "layer inc.0.weight is (16, 1, 3, 3) there but (8, 1, 3, 3) here" in result.stderr
    assert "Traceback" not in result.stderr


# -- --init-from in process (transfer_weights itself) ------------------------------------


def _varied(model: UNet, seed: int) -> UNet:
    """Every tensor (buffers too) set to values no fresh model has."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.uniform_(0.5, 1.5)
            else:
                value.fill_(seed)
    return model


def test_transfer_copies_every_tensor_of_a_model_of_the_same_kind():
    source, target = _varied(UNet(base_channels=2), 7), UNet(base_channels=2)
    assert transfer_weights(target, source, "src") == []
    for name, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[name], value), name


def test_transfer_of_other_classes_keeps_the_fresh_head_and_copies_the_rest():
    source, target = (
        _varied(UNet(base_channels=2, n_classes=1), 7),
        UNet(base_channels=2, n_classes=3),
    )
    fresh = {k: v.clone() for k, v in target.state_dict().items()}
    assert transfer_weights(target, source, "src") == ["the last convolution (outc)"]
    for name, value in target.state_dict().items():
        expected = fresh[name] if name.startswith("outc.") else source.state_dict()[name]
        assert torch.equal(value, expected), name


def test_transfer_of_other_input_channels_keeps_the_fresh_first_convolution():
    source, target = (
        _varied(UNet(base_channels=2, n_channels=1), 7),
        UNet(base_channels=2, n_channels=3),
    )
    fresh = target.state_dict()["inc.0.weight"].clone()
    notes = transfer_weights(target, source, "src")
    assert notes == ["the first convolution (inc.0)"]
    assert torch.equal(target.state_dict()["inc.0.weight"], fresh)
    for name, value in target.state_dict().items():
        if name != "inc.0.weight":
            assert torch.equal(value, source.state_dict()[name]), name


def test_transfer_of_other_channels_and_classes_names_both_first_conv_first():
    source = _varied(UNet(base_channels=2, n_channels=1, n_classes=1), 7)
    target = UNet(base_channels=2, n_channels=3, n_classes=2)
    assert transfer_weights(target, source, "src") == [
        "the first convolution (inc.0)",
        "the last convolution (outc)",
    ]


def test_transfer_casts_to_the_targets_dtype():
    source, target = _varied(UNet(base_channels=2), 7).double(), UNet(base_channels=2)
    transfer_weights(target, source, "src")
    weight = target.state_dict()["inc.0.weight"]
    assert weight.dtype == torch.float32
    assert torch.equal(weight, source.state_dict()["inc.0.weight"].float())


def test_transfer_refuses_another_width_naming_the_layer_and_both_shapes():
    source, target = UNet(base_channels=4), UNet(base_channels=2)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ConfigError) as error:
        transfer_weights(target, source, "src")
    assert str(error.value) == (
        "src: layer inc.0.weight is (4, 1, 3, 3) there but (2, 1, 3, 3) here; give the same "
        "--base-channels and --bilinear as that model"
    )
    assert all(torch.equal(target.state_dict()[k], v) for k, v in before.items())


def test_transfer_refuses_a_head_or_first_convolution_of_another_width():
    source, target = UNet(base_channels=2, n_classes=2), UNet(base_channels=2, n_classes=2)
    source.outc = torch.nn.Conv2d(3, 2, kernel_size=1)  # other input width: not a class change
    with pytest.raises(ConfigError, match=r"^src: layer outc.weight is \(2, 3, 1, 1\) there"):
        transfer_weights(target, source, "src")
    source, target = UNet(base_channels=2), UNet(base_channels=2)
    source.inc[0] = torch.nn.Conv2d(1, 2, kernel_size=5, padding=2)  # other kernel
    with pytest.raises(ConfigError, match=r"^src: layer inc.0.weight is \(2, 1, 5, 5\) there"):
        transfer_weights(target, source, "src")


def test_transfer_refuses_a_source_without_a_layer_of_the_target():
    source, target = UNet(base_channels=2, bilinear=True), UNet(base_channels=2, bilinear=False)
    with pytest.raises(ConfigError) as error:
        transfer_weights(target, source, "src")
    assert str(error.value) == "src: has no layer up1.up.weight; it is not a U-Net of this kind"


def test_no_committed_file_a_user_reads_names_a_path_of_this_machine():
    """README, cards, examples' notes and the committed benchmark results are read by
    users (and results are written by scripts that once recorded absolute paths)."""
    listed = subprocess.run(
        ["git", "ls-files", "README.md", "model_card.md", "examples", "unet_hub/pretrained",
         "benchmarks/results"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    read = [f for f in listed if f.endswith((".md", ".json"))]
    assert "benchmarks/results/equal_budget.md" in read and "README.md" in read
    # `~/.cache/...` is every user's default, not this machine's path
    machine = re.compile(r"(?:^|[\s'\"(=`])(?:/(?:work|tmp|home|root|mnt)\b|\.\./shared)")
    offending = {
        name: match.group(0)
        for name in read
        if (match := machine.search((ROOT / name).read_text(encoding="utf-8")))
    }
    assert not offending


def test_a_model_trained_to_recommend_the_watershed_has_its_figures_in_the_card(tmp_path):
    """The card scores what the model recommends: with --watershed, the objects' Rand and
    VI by watershed beside the plain scores, as `unet-hub evaluate` prints them."""
    out = tmp_path / "run"
    result = train_py(
        *("--data", str(SAMPLE / "train"), "--out", str(out), "--epochs", "1"),
        *("--image-size", "32", "--base-channels", "2", "--val-fraction", "0.25"),
        "--watershed",
    )
    assert result.returncode == 0, result.stderr
    metrics = card_metrics(load_model_card(str(out)))
    by_watershed = {k for k in metrics if k.endswith(", objects by watershed")}
    assert by_watershed == {
        f"validation {name}, objects by watershed"
        for name in (
            "adapted Rand error",
            "adapted Rand error (thinned borders)",
            "variation of information",
            "variation of information (thinned borders)",
        )
    }
    assert "validation adapted Rand error" in metrics  # the plain scores stay
