"""Several classes drawn as grey levels or colours: found, mapped, stored in the config,
and written back by predict; a value of no class names its file."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import SAMPLE, write_image
from support.cli_batch import Ran
from support.in_process import cli_here, train_here
from unet_hub import UNet
from unet_hub.data.mask_values import (
    discover_mask_values,
    from_class_ids,
    mask_to_write,
    parse_mask_value,
    to_class_ids,
)
from unet_hub.errors import ConfigError, DataError

RED, GREEN, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 0)


def run(*args: str) -> Ran:
    """``python train.py ARGS`` or ``python -m unet_hub.cli ARGS``, run in this process
    (support.in_process: no Python and torch start-up per command)."""
    if args[0] == "train.py":
        return train_here(*args[1:])
    assert args[:2] == ("-m", "unet_hub.cli"), args
    return cli_here(*args[2:])


def test_grey_levels_are_found_and_sorted(tmp_path):
    a = write_image(tmp_path / "a.png", np.array([[0, 127], [255, 0]], np.uint8))
    b = write_image(tmp_path / "b.png", np.array([[127, 127], [0, 0]], np.uint8))
    assert discover_mask_values([a, b], 3) == ((0,), (127,), (255,))


def test_class_ids_need_no_mapping(tmp_path):
    a = write_image(tmp_path / "a.png", np.array([[0, 1], [2, 0]], np.uint8))
    assert discover_mask_values([a], 3) is None


def test_colours_are_found_and_grey_pixels_of_a_colour_set_count_as_colours(tmp_path):
    mask = np.zeros((2, 3, 3), np.uint8)
    mask[0, 0], mask[1, 1] = RED, GREEN
    a = write_image(tmp_path / "a.png", mask)
    assert discover_mask_values([a], 3) == (BLACK, GREEN, RED)


def test_another_number_of_values_than_classes_is_a_clear_error(tmp_path):
    a = write_image(tmp_path / "a.png", np.array([[0, 60], [120, 250]], np.uint8))
    with pytest.raises(DataError, match=r"4 distinct values \(0, 60, 120, 250\) but there are 3"):
        discover_mask_values([a], 3)


def test_a_value_of_no_class_names_the_file():
    mask = np.zeros((2, 2, 3), np.uint8)
    mask[1, 1] = (0, 0, 255)
    with pytest.raises(DataError, match=r"m.png: holds the value 0,0,255, which is none"):
        to_class_ids(mask, (BLACK, RED, GREEN), "m.png")


def test_ids_and_values_round_trip():
    values = (BLACK, RED, GREEN)
    ids = np.array([[0, 1], [2, 1]], np.uint8)
    drawn = from_class_ids(ids, values)
    assert drawn.shape == (2, 2, 3) and tuple(drawn[0, 1]) == RED
    np.testing.assert_array_equal(to_class_ids(drawn, values), ids)
    np.testing.assert_array_equal(mask_to_write(ids, 3, values, "ids"), ids)
    assert set(np.unique(mask_to_write(np.array([[0, 255]], np.uint8), 1, None, "ids"))) == {0, 1}


def test_the_config_checks_mask_values():
    assert UNet(n_classes=3, base_channels=2, mask_values=[[0], [9], [7]]).config.mask_values == (
        (0,),
        (9,),
        (7,),
    )
    for bad, why in (
        ({"n_classes": 1, "mask_values": [[0], [255]]}, "for several classes"),
        ({"n_classes": 3, "mask_values": [[0], [255]]}, "one value for each of the 3"),
        ({"n_classes": 2, "mask_values": [[0], [1, 2, 3]]}, "all be grey levels"),
        ({"n_classes": 2, "mask_values": [[5], [5]]}, "must differ"),
    ):
        with pytest.raises(ConfigError, match=why):
            UNet(base_channels=2, **bad)
    assert parse_mask_value("255,0,0") == RED
    with pytest.raises(ValueError, match="not a grey level"):
        parse_mask_value("red")


@pytest.fixture(scope="module")
def colour_data(tmp_path_factory) -> Path:
    """The 4 sample pairs as 3 classes drawn in colours: cell interior in the top half red,
    in the bottom half green, membrane black."""
    root = tmp_path_factory.mktemp("colours") / "data"
    for image in sorted((SAMPLE / "train" / "images").glob("*.png")):
        grey = cv2.imread(str(SAMPLE / "train" / "masks" / image.name), cv2.IMREAD_GRAYSCALE)
        grey = cv2.resize(grey, (64, 64), interpolation=cv2.INTER_NEAREST)
        mask = np.zeros((64, 64, 3), np.uint8)
        mask[:32][grey[:32] > 0] = RED
        mask[32:][grey[32:] > 0] = GREEN
        write_image(root / "masks" / image.name, mask)
        picture = cv2.resize(cv2.imread(str(image), cv2.IMREAD_GRAYSCALE), (64, 64))
        write_image(root / "images" / image.name, picture)
    return root


def test_a_colour_mask_data_set_trains_predicts_and_evaluates(colour_data, tmp_path):
    out = tmp_path / "run"
    trained = run(
        *("train.py", "--data", str(colour_data), "--out", str(out), "--epochs", "2"),
        *("--base-channels", "4", "--val-fraction", "0.25", "--n-classes", "3"),
        *("--mask-values", "0,0,0", "255,0,0", "0,255,0", "--labels", "membrane", "top", "bottom"),
    )
    assert trained.returncode == 0, trained.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["mask_values"] == [[0, 0, 0], [255, 0, 0], [0, 255, 0]]
    assert UNet.from_pretrained(out).config.mask_values == (BLACK, RED, GREEN)

    image = colour_data / "images" / "00.png"
    as_values = run(
        "-m", "unet_hub.cli", "predict", str(out), str(image), "--out", str(tmp_path / "v")
    )
    assert as_values.returncode == 0, as_values.stderr
    drawn = cv2.cvtColor(cv2.imread(str(tmp_path / "v" / "00.png")), cv2.COLOR_BGR2RGB)
    assert {tuple(c) for c in drawn.reshape(-1, 3)} <= {BLACK, RED, GREEN}
    as_ids = run(
        *("-m", "unet_hub.cli", "predict", str(out), str(image)),
        *("--out", str(tmp_path / "i"), "--mask-format", "ids"),
    )
    assert as_ids.returncode == 0, as_ids.stderr
    ids = cv2.imread(str(tmp_path / "i" / "00.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(to_class_ids(drawn, (BLACK, RED, GREEN)), ids)

    scored = run("-m", "unet_hub.cli", "evaluate", str(out), "--data", str(colour_data))
    assert scored.returncode == 0, scored.stderr
    for row in ("Dice (membrane)", "Dice (top)", "Dice (bottom)", "IoU (bottom)"):
        assert row in scored.stdout


def test_colours_are_found_without_mask_values_and_a_stray_colour_names_its_file(
    colour_data, tmp_path
):
    out = tmp_path / "found"
    found = run(
        *("train.py", "--data", str(colour_data), "--out", str(out), "--epochs", "1"),
        *("--base-channels", "2", "--val-fraction", "0.25", "--n-classes", "3"),
    )
    assert found.returncode == 0, found.stderr
    assert json.loads((out / "config.json").read_text())["mask_values"] == [
        [0, 0, 0],
        [0, 255, 0],
        [255, 0, 0],
    ]
    stray = cv2.imread(str(colour_data / "masks" / "01.png"))
    stray[0, 0] = (255, 0, 0)  # blue, in BGR
    bad = tmp_path / "bad"
    for kind in ("images", "masks"):
        (bad / kind).mkdir(parents=True)
        for f in (colour_data / kind).iterdir():
            (bad / kind / f.name).write_bytes(f.read_bytes())
    cv2.imwrite(str(bad / "masks" / "01.png"), stray)
    refused = run(
        *("train.py", "--data", str(bad), "--out", str(tmp_path / "o"), "--epochs", "1"),
        *("--base-channels", "2", "--n-classes", "3", "--mask-values", "0,0,0", "255,0,0"),
        "0,255,0",
    )
    assert refused.returncode == 2
    assert "01.png: holds the value 0,0,255, which is none of the classes' values" in (
        refused.stderr
    )
    assert "Traceback" not in refused.stderr
