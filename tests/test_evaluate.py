"""`unet-hub evaluate` and the hold-out selection by stem that it shares with training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import ROOT
from support.cli_batch import Ran
from support.in_process import cli_here
from unet_hub import UNet
from unet_hub.data.pairs import find_pairs, parse_stems, select_stems
from unet_hub.errors import DataError
from unet_hub.evaluate.evaluator import evaluate_pairs
from unet_hub.evaluate.metrics import EM_SCORES
from unet_hub.evaluate.seen import seen_in_training, seen_note
from unet_hub.files import BUNDLED_MODEL
from unet_hub.metric_names import THINNED
from unet_hub.train.loop import train
from unet_hub.train.options import TrainConfig


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> tuple[Path, Path]:
    """A 1-epoch width-2 model on the shipped sample at 32×32, and its data folder."""
    data = ROOT / "examples" / "isbi2012" / "train"
    out = tmp_path_factory.mktemp("tiny") / "model"
    cfg = TrainConfig.from_options(
        data=str(data), out=str(out), epochs=1, image_size=32, base_channels=2, val_slices="3"
    )
    train(cfg)
    return out, data


def evaluate_cli(*args: str) -> Ran:
    """``unet-hub evaluate ARGS``, run in this process (support.in_process)."""
    return cli_here("evaluate", *args)


def test_evaluate_prints_a_table_and_writes_json(tiny_model, tmp_path):
    model_dir, data = tiny_model
    out = tmp_path / "metrics.json"
    result = evaluate_cli(
        str(model_dir), "--data", str(data), "--slices", "2-3", "--image-size", "32",
        "--out", str(out), "--tta",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for row in (
        "Dice (foreground)",
        "pixel error (1 - accuracy)",
        "adapted Rand error ",
        "adapted Rand error, best threshold",
        f"adapted Rand error {THINNED} ",
        f"adapted Rand error {THINNED} at the best Rand threshold",
        f"adapted Rand error {THINNED}, best threshold",
        f"variation of information {THINNED} ",
    ):
        assert row in result.stdout
    assert "(2 images, flip TTA)" in result.stdout
    assert "training set" not in result.stdout  # the project cannot tell for this model
    metrics = json.loads(out.read_text())
    assert metrics["n_images"] == 2 and metrics["tta"] is True
    assert [r["name"] for r in metrics["per_image"]] == ["02", "03"]
    assert all(set(EM_SCORES) <= set(r) for r in metrics["per_image"])
    assert 0 <= metrics["pixel_error"] <= 1 and 0 <= metrics["best_rand_error"] <= 1
    sweep = {row["threshold"]: row for row in metrics["sweep"]}
    assert metrics["best_rand_error"] == min(r["rand_error"] for r in sweep.values())
    assert metrics["best_rand_error_thinned"] == min(
        r["rand_error_thinned"] for r in sweep.values()
    )
    at_best = sweep[metrics["best_rand_threshold"]]
    assert metrics["rand_error_thinned_at_best"] == at_best["rand_error_thinned"]
    at_best_thinned = sweep[metrics["best_rand_threshold_thinned"]]
    assert metrics["best_rand_error_thinned"] == at_best_thinned["rand_error_thinned"]
    assert metrics["vi_thinned_at_best"] == at_best_thinned["vi_thinned"]
    # the command line and the library agree
    library = evaluate_pairs(
        UNet.from_pretrained(model_dir),
        select_stems(find_pairs(data), "2-3")[0],
        image_size=32,
        tta=True,
    )
    assert library.to_dict() == metrics


def test_evaluating_the_bundled_model_on_its_training_slices_says_so():
    result = evaluate_cli(
        str(BUNDLED_MODEL), "--data", "examples/isbi2012/train", "--slices", "2-3",
        "--image-size", "64",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    note = result.stdout.splitlines()[-1]
    assert note.startswith("note: 2 of these 2 images (02, 03) were in the bundled model's")
    assert "not a hold-out" in note and "--slices 25-29" in note


def test_training_images_are_recognised_by_content(tmp_path):
    shipped = ROOT / "examples" / "isbi2012" / "train" / "images" / "01.png"
    renamed = tmp_path / "anything.png"
    renamed.write_bytes(shipped.read_bytes())
    other = tmp_path / "test.png"
    other.write_bytes((ROOT / "examples" / "isbi2012" / "test" / "00.png").read_bytes())
    assert seen_in_training(BUNDLED_MODEL, [renamed, other]) == [renamed]
    assert seen_in_training(str(BUNDLED_MODEL), [renamed]) == [renamed]
    copy = tmp_path / "model"
    copy.mkdir()
    assert seen_in_training(copy, [renamed]) == []  # any other model: cannot tell
    assert seen_note(copy, [renamed]) is None


def test_evaluate_bad_slices_is_one_error_line(tiny_model):
    model_dir, data = tiny_model
    result = evaluate_cli(str(model_dir), "--data", str(data), "--slices", "40-49")
    assert result.returncode == 2
    assert result.stderr.startswith("error: no file matches the slices '40-49'")
    assert "Traceback" not in result.stderr


def test_training_holds_out_the_slices_it_is_told(tiny_model):
    model_dir, data = tiny_model
    card = (model_dir / "README.md").read_text()
    assert "(3 images)" in card and "(1 images)" in card
    assert "validation adapted Rand error, best threshold" in card
    assert f"validation adapted Rand error {THINNED}, best threshold" in card
    assert f"validation adapted Rand error {THINNED} at the best Rand threshold" in card


def test_stem_selection(sample_data):
    pairs = find_pairs(sample_data)  # stems 00..03
    chosen, rest = select_stems(pairs, "1-2")
    assert [p[0].stem for p in chosen] == ["01", "02"]
    assert [p[0].stem for p in rest] == ["00", "03"]
    assert [p[0].stem for p in select_stems(pairs, "3, 0")[0]] == ["00", "03"]
    assert parse_stems("25-29,left") == [range(25, 30), "left"]
    with pytest.raises(DataError, match="no slices"):
        parse_stems(" , ")
    with pytest.raises(DataError, match="no file matches"):
        select_stems(pairs, "7")
    with pytest.raises(DataError, match="holds out every file"):
        train(
            TrainConfig.from_options(
                data=str(sample_data), out=str(sample_data / "o"), val_slices="0-3"
            )
        )
