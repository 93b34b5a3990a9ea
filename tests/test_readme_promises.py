"""Every README promise listed here has a test that proves it.

``PROMISES`` pairs a sentence of the README (quoted, whitespace-normalised) with the test
that proves it. A promise whose sentence leaves the README fails here (update the table);
a test that is named but does not exist fails here; a promise with no test yet is an
expected failure (xfail): it shows up in every run until a test is written and named.
The quick tests of promises that had none live in this file, after the table.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT, SAMPLE
from unet_hub import UNet
from unet_hub.data.images import to_model_input

#: (a sentence of README.md, "file::test" that proves it, or None: no test yet)
PROMISES: list[tuple[str, str | None]] = [
    # the app
    (
        "further requests queue (at most 64)",
        "test_readme_promises.py::test_the_app_queues_at_most_64_requests_one_at_a_time",
    ),
    (
        "One segmentation runs at a time",
        "test_readme_promises.py::test_the_app_queues_at_most_64_requests_one_at_a_time",
    ),
    (
        "Uploads are limited to 50 MB",
        "test_readme_promises.py::test_the_app_limits_uploads_to_50_mb",
    ),
    (
        "8 megapixels (`UNET_MAX_PIXELS`)",
        "test_readme_promises.py::test_unet_max_pixels_sets_the_apps_pixel_limit",
    ),
    (
        "`UNET_MODEL` — a Hub repo id (`user/repo`) or a local `save_pretrained` folder",
        "test_readme_promises.py::test_unet_model_names_the_model_the_app_serves",
    ),
    (
        "for a multi-class model, the class id of each pixel",
        "test_readme_promises.py::test_the_apps_mask_of_a_multi_class_model_holds_class_ids",
    ),
    # training
    (
        "or a separate folder is used (`--val-data`)",
        "test_readme_promises.py::test_val_data_is_the_validation_set",
    ),
    (
        "how pixels are scaled (`input_scaling`)",
        "test_readme_promises.py::test_minmax_input_scaling_stretches_each_image_to_0_1",
    ),
    (
        "the model kept in `--out` is the epoch with the best **validation Dice**",
        "test_best_model.py::test_the_saved_best_model_is_the_best_middle_epoch",
    ),
    # Hub and CLI
    (
        "`unet-hub predict user/unet-isbi image.png --out masks/ [--revision REV]`",
        "test_hub_roundtrip.py::test_predict_with_a_revision_uses_that_revision",
    ),
    (
        "the message gives the `unet-hub push` command to retry",
        "test_hub_roundtrip.py::test_a_failed_push_after_training_gives_the_command_to_retry",
    ),
    (
        "(`--private` applies only then)",
        "test_hub_roundtrip.py::test_private_applies_only_when_the_push_creates_the_repo",
    ),
    (
        "a `.bin`/`.pth`/`.pt` file in a model folder or repo is ignored, never unpickled",
        "test_readme_promises.py::test_a_bin_beside_model_safetensors_is_ignored_and_never_unpickled",
    ),
    (
        "fails at once instead of retrying, and cached models still load",
        "test_hub_roundtrip.py::test_an_unreachable_hub_is_one_clear_error_without_retrying",
    ),
    # the bundled model
    (
        "| Dice (cell interior) | 0.9519 | 0.9524 |",
        "test_readme_promises.py::test_the_bundled_models_figures_recomputed_on_slices_25_29",
    ),
    (
        "a width-16 U-Net (839,489 parameters)",
        "test_readme_promises.py::test_the_bundled_models_figures_are_those_of_its_card",
    ),
    (
        "its scores on them are not a hold-out, and the command says so below its table",
        "test_evaluate.py::test_evaluating_the_bundled_model_on_its_training_slices_says_so",
    ),
    # training on mixed data
    (
        "| `--recipe auto` | 10.0 | **0.917** |",
        "test_readme_promises.py::test_the_mixed_data_figures_are_those_of_the_committed_benchmark",
    ),
    # the ISBI 2012 download
    (
        "Each file is checked before it is kept (a 512×512 8-bit grayscale PNG; labels hold "
        "only 0 and 255)",
        "test_fetch_data.py::test_a_bad_file_is_one_error_line_naming_it_and_nothing_half_written",
    ),
    (
        "an interrupted download leaves no half file",
        "test_fetch_data.py::test_a_bad_file_is_one_error_line_naming_it_and_nothing_half_written",
    ),
    (
        "running the command again fetches only what is missing",
        "test_fetch_data.py::"
        "test_fetch_lays_out_the_set_checks_it_loads_and_a_rerun_downloads_only_what_is_missing",
    ),
    (
        "A failed download stops with one line naming the URL or file and what is wrong",
        "test_fetch_data.py::test_no_network_is_one_line_naming_the_url_and_what_to_do",
    ),
]

README = " ".join((ROOT / "README.md").read_text().split())


def _tests_in(file: str) -> set[str]:
    tree = ast.parse((ROOT / "tests" / file).read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}


@pytest.mark.parametrize("promise, test", PROMISES, ids=[p[:40] for p, _ in PROMISES])
def test_each_promise_is_in_the_readme_and_has_a_test(promise, test):
    assert " ".join(promise.split()) in README, f"the README no longer says: {promise}"
    if test is None:
        pytest.xfail(f"README promise without a test yet: {promise}")
    file, name = test.split("::")
    assert name in _tests_in(file), f"{test} does not exist"


# -- tests of promises that had none -----------------------------------------------------------


def test_the_app_queues_at_most_64_requests_one_at_a_time(tmp_path):
    from unet_hub.app.webapp import build_app

    # a local folder as the source: a repo id would send the app to the Hub for its card
    folder = tmp_path / "a-test-model"
    UNet(base_channels=2).save_pretrained(folder)
    app = build_app(UNet.from_pretrained(folder), str(folder))
    assert app._queue.max_size == 64
    assert app._queue.default_concurrency_limit == 1


def _three_class_model() -> UNet:
    """The bundled network with a 3-class head: class 0 where the bundled model's
    probability is below 0.2, 1 from 0.2 to 0.8, 2 above; drawn as grey levels 0, 100,
    200, so class ids and mask values differ. Logits ``0, l - t1, 2l - t1 - t2`` of the
    bundled logit ``l``: class 1 beats 0 above ``t1``, class 2 beats 1 above ``t2``."""
    from unet_hub.files import BUNDLED_MODEL

    bundled = UNet.from_pretrained(BUNDLED_MODEL)
    model = UNet(
        n_classes=3, base_channels=16, mask_values=[[0], [100], [200]],
        labels=["membrane", "unsure", "cell interior"],
    )  # fmt: skip
    heads = ("outc.weight", "outc.bias")
    body = {k: v for k, v in bundled.state_dict().items() if k not in heads}
    assert not model.load_state_dict(body, strict=False).unexpected_keys
    t1, t2 = torch.logit(torch.tensor([0.2, 0.8])).tolist()
    w, b = bundled.outc.weight.detach()[0], bundled.outc.bias.detach()[0]
    with torch.no_grad():
        model.outc.weight.copy_(torch.stack([0 * w, w, 2 * w]))
        model.outc.bias.copy_(torch.stack([0 * b, b - t1, 2 * b - t1 - t2]))
    return model.eval()


def test_the_apps_mask_of_a_multi_class_model_holds_class_ids(tmp_path):
    """Through /segment, as a client calls it: the mask PNG of a 3-class model holds each
    pixel's class id (0, 1, 2), not the grey levels the classes are drawn in."""
    import cv2
    from gradio_client import Client, handle_file

    from conftest import serving_in_process
    from unet_hub import read_image, segment
    from unet_hub.app.webapp import build_app
    from unet_hub.files import BUNDLED_MODEL

    folder = tmp_path / "three-classes"
    _three_class_model().save_pretrained(folder)
    model = UNet.from_pretrained(folder)
    image = SAMPLE / "test" / "00.png"
    bundled = segment(UNet.from_pretrained(BUNDLED_MODEL), read_image(image))
    expected = np.digitize(bundled, [0.2, 0.8])  # the class ids, from the bundled model
    assert set(np.unique(expected)) == {0, 1, 2}
    with serving_in_process(build_app(model, str(folder))) as url:
        client = Client(url, verbose=False, download_files=str(tmp_path / "dl"))
        mask_path = client.predict(handle_file(str(image)), 0.5, api_name="/segment")
        client.close()
    mask = cv2.imread(mask_path, cv2.IMREAD_UNCHANGED)
    assert mask.shape == expected.shape and mask.dtype == np.uint8
    assert set(np.unique(mask)) == {0, 1, 2}
    # pixels within float noise of 0.2 or 0.8 may fall either side
    assert (mask == expected).mean() > 0.999


def test_the_app_limits_uploads_to_50_mb():
    """The limit Gradio enforces is the one launch() passes: 50 MB, parsed as Gradio does."""
    from gradio.utils import _parse_file_size

    from unet_hub.app import server

    assert _parse_file_size(server.MAX_FILE_SIZE) == 50 * 1024 * 1024
    assert "max_file_size=MAX_FILE_SIZE" in Path(server.__file__).read_text()


def _app_setting(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("UNET_MAX_PIXELS", "UNET_MODEL")}
    result = subprocess.run(
        [sys.executable, "-c", "from unet_hub.app import webapp; " + code],
        env=clean | env, capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_unet_max_pixels_sets_the_apps_pixel_limit(tmp_path, monkeypatch):
    """The app's settings read the limit: 8 megapixels by default; with
    UNET_MAX_PIXELS=262144 a 512×512 image is read and a 513×512 one refused."""
    from conftest import write_image
    from unet_hub.limits import APP_MAX_PIXELS

    assert APP_MAX_PIXELS == 8_000_000
    small, large = SAMPLE / "test" / "00.png", tmp_path / "large.png"
    write_image(large, np.zeros((513, 512), np.uint8))
    code = (
        "from unet_hub.errors import UNetHubError\n"
        "from unet_hub.app.settings import AppSettings\n"
        "limit = AppSettings.from_env().max_pixels\n"
        f"for path in ({str(small)!r}, {str(large)!r}):\n"
        "    try:\n"
        "        webapp.read_image(path, max_pixels=limit); print('read')\n"
        "    except UNetHubError as e:\n"
        "        print('refused:', e)"
    )
    read, refused = _app_setting(code, UNET_MAX_PIXELS="262144").splitlines()
    assert read == "read"
    assert refused.startswith("refused:") and "more than the limit" in refused


def test_unet_model_names_the_model_the_app_serves(tmp_path, monkeypatch):
    from unet_hub.app import webapp
    from unet_hub.files import BUNDLED_MODEL

    folder = tmp_path / "my-model"
    UNet(base_channels=2).save_pretrained(folder)
    monkeypatch.delenv("UNET_MODEL", raising=False)
    assert webapp.model_source() == str(BUNDLED_MODEL)
    monkeypatch.setenv("UNET_MODEL", "user/repo")
    assert webapp.model_source() == "user/repo"
    monkeypatch.setenv("UNET_MODEL", str(folder))
    assert UNet.from_pretrained(webapp.model_source()).config["base_channels"] == 2


def test_minmax_input_scaling_stretches_each_image_to_0_1():
    image = np.array([[1000, 1500], [2000, 1250]], np.uint16)
    x = to_model_input(image, 1, "minmax")
    np.testing.assert_allclose(x[0], [[0, 0.5], [1, 0.25]], atol=1e-6)
    assert to_model_input(image, 1, "dtype").max() == pytest.approx(2000 / 65535)


def test_a_bin_beside_model_safetensors_is_ignored_and_never_unpickled(tmp_path):
    folder = tmp_path / "model"
    model = UNet(base_channels=2)
    model.save_pretrained(folder)
    marker = tmp_path / "pwned"
    (folder / "pytorch_model.bin").write_bytes(
        b"\x80\x04cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    )
    loaded = UNet.from_pretrained(folder)
    saved = load_file(folder / "model.safetensors")
    assert all(torch.equal(v, saved[k]) for k, v in loaded.state_dict().items() if k in saved)
    assert not marker.exists()


def test_val_data_is_the_validation_set(tmp_path, sample_data):
    """A separate --val-data folder is scored every epoch, and the training data is not
    split (all 4 pairs train)."""
    import shutil

    from unet_hub.train.loop import train
    from unet_hub.train.options import TrainConfig

    val = tmp_path / "val"
    shutil.copytree(sample_data, val)
    for sub in ("images", "masks"):
        for extra in sorted((val / sub).iterdir())[1:]:
            extra.unlink()  # one validation pair
    cfg = TrainConfig.from_options(
        data=str(sample_data), val_data=str(val), out=str(tmp_path / "o"), epochs=1,
        image_size=32, base_channels=2,
    )  # fmt: skip
    result = train(cfg)
    assert result.history[0].val_dice is not None
    assert result.evaluation.n_images == 1
    assert result.history[0].train_loss > 0
    assert re.search(r"\(1 images?\)", (tmp_path / "o" / "README.md").read_text())


# -- the bundled model's figures ---------------------------------------------------------------

#: The README's table of the bundled model: its rows by metric, each with the columns
#: "at 0.5 (its recommended threshold)" and "flip TTA, at 0.5".
FIGURES_HEADER = "| on slices 25–29 (labelled, held out) | at 0.5 (its recommended threshold) |"
#: The rows of that table: the card's metric (None: not in the card) and the field of
#: ``unet-hub evaluate --out``'s JSON ("objects_*": of the objects it scores by default).
FIGURE_ROWS = {
    "pixel error (1 − accuracy)": ("validation pixel error (1 - accuracy)", "pixel_error"),
    "challenge pixel error (1 − max F over thresholds)": (
        "validation challenge pixel error (1 - max F) (at 0.45)",
        "challenge_pixel_error",
    ),
    "adapted Rand error, 4-connected cells": ("validation adapted Rand error", "rand_error"),
    "adapted Rand error, cells split by the watershed it recommends": (
        "validation adapted Rand error, objects by watershed",
        "objects_rand_error",
    ),
    "adapted Rand error, thinned borders (as the challenge scored it)": (
        "validation adapted Rand error (thinned borders)",
        "rand_error_thinned",
    ),
    "adapted Rand error, thinned borders, cells split by the watershed": (
        "validation adapted Rand error (thinned borders), objects by watershed",
        "objects_rand_error_thinned",
    ),
    # the card's mean Dice: the only class's
    "Dice (cell interior)": ("validation Dice", "dice"),
}
#: The full ISBI 2012 training slices, laid out as the README's "The ISBI 2012 data" says;
#: not in the repository (slices 25-29, the hold-out, are not among examples/).
ISBI_TRAIN = ROOT / "data" / "isbi2012" / "train"


def _readme_figures() -> dict[str, list[str]]:
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(FIGURES_HEADER))
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        name, *columns = [cell.strip() for cell in line.strip("|").split("|")]
        rows[name] = columns
    return rows


def test_the_bundled_models_figures_are_those_of_its_card():
    """Every figure of the README's table at the model's threshold is the card's (rounded
    to 4 places), and the README's description of the model is its config and weights.
    The TTA column is not in the card: it is checked by the recomputation below, when the
    data is there."""
    from unet_hub.files import BUNDLED_MODEL, WEIGHTS_NAME
    from unet_hub.hub.cards import card_metrics, card_training, load_model_card

    card = load_model_card(str(BUNDLED_MODEL))
    metrics = {k: f"{v:.4f}" for k, v in card_metrics(card).items()}
    rows = _readme_figures()
    assert set(rows) == set(FIGURE_ROWS)
    for row, (metric, _) in FIGURE_ROWS.items():
        assert rows[row][0] == metrics[metric], row
    model = UNet.from_pretrained(BUNDLED_MODEL)
    assert model.config["threshold"] == 0.5  # the column "at 0.5 (its recommended ...)"
    assert model.config["base_channels"] == 16
    assert f"({sum(p.numel() for p in model.parameters()):,} parameters)" in README
    weights = BUNDLED_MODEL / WEIGHTS_NAME
    assert {t.dtype for k, t in load_file(weights).items() if "weight" in k} == {torch.float16}
    assert f"`unet_hub/pretrained/isbi2012/` ({weights.stat().st_size / 1e6:.1f} MB" in README
    training = card_training(card)
    assert "slices 00-24" in training["data"] and "slices 25-29" in training["val"]
    assert "ISBI 2012 slices 00–24, validated on slices 25–29" in README


@pytest.mark.skipif(
    not (ISBI_TRAIN / "images" / "29.png").is_file(),
    reason="the ISBI 2012 slices 25-29 are not in the repository (README: The ISBI 2012 "
    "data, data/isbi2012/train); the figures are checked against the card instead",
)
def test_the_bundled_models_figures_recomputed_on_slices_25_29(tmp_path, capsys):
    """The README's command, ``unet-hub evaluate unet_hub/pretrained/isbi2012 --data
    data/isbi2012/train --slices 25-29`` (with ``--tta`` for the other column), prints
    every figure of the table again."""
    from unet_hub.cli import main
    from unet_hub.files import BUNDLED_MODEL

    args = ["evaluate", str(BUNDLED_MODEL), "--data", str(ISBI_TRAIN), "--slices", "25-29"]
    columns = []
    for i, extra in enumerate(([], ["--tta"])):
        out = tmp_path / f"{i}.json"
        assert main([*args, *extra, "--out", str(out)]) == 0
        scores = json.loads(out.read_text())
        assert scores["n_images"] == 5
        column = {k: v[0] if k == "dice" else v for k, v in scores.items()}
        # evaluate scores the objects the model recommends (the watershed) by default
        column |= {f"objects_{k}": v for k, v in scores["objects_scores"].items()}
        columns.append(column)
    for row, figures in _readme_figures().items():
        for column, figure in zip(columns, figures, strict=True):
            assert figure == f"{column[FIGURE_ROWS[row][1]]:.4f}", row


def test_the_mixed_data_figures_are_those_of_the_committed_benchmark():
    """The README's table of recipes on mixed data is ``benchmarks/results/mixed_nuclei.json``
    (minutes to 0.1, Dice to 3 places), baselines included."""
    result = json.loads((ROOT / "benchmarks/results/mixed_nuclei.json").read_text())
    rows = {r["recipe"]: r for r in result["rows"]}
    assert {"auto", "defaults", "paper"} <= set(rows)
    assert rows["defaults"]["warnings"] > 0  # "the warning fired"
    for label, name in (
        ("`--recipe auto`", "auto"),
        ("the paper recipe, same budget", "paper"),
        ("the defaults (seed recipe), same budget; the warning fired", "defaults"),
    ):
        dice = f"{rows[name]['dice']:.3f}"
        dice = f"**{dice}**" if name == "auto" else dice
        assert f"| {label} | {rows[name]['minutes']:.1f} | {dice} |" in README, label
    otsu = f"{result['baselines']['otsu_best_polarity']:.3f}"
    assert f"whichever polarity fits its mask | — | {otsu} |" in README
