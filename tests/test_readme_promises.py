"""Every README promise listed here has a test that proves it.

``PROMISES`` pairs a sentence of the README (quoted, whitespace-normalised) with the test
that proves it. A promise whose sentence leaves the README fails here (update the table);
a test that is named but does not exist fails here; a promise with no test yet is an
expected failure (xfail): it shows up in every run until a test is written and named.
The quick tests of promises that had none live in this file, after the table.
"""

from __future__ import annotations

import ast
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
    ("for a multi-class model, the class id of each pixel", None),
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
    ("`unet-hub predict user/unet-isbi image.png --out masks/ [--revision REV]`", None),
    ("the message gives the `unet-hub push` command to retry", None),
    ("(`--private` applies only then)", None),
    (
        "a `.bin`/`.pth`/`.pt` file in a model folder or repo is ignored, never unpickled",
        "test_readme_promises.py::test_a_bin_beside_model_safetensors_is_ignored_and_never_unpickled",
    ),
    (
        "fails at once instead of retrying, and cached models still load",
        "test_hub_roundtrip.py::test_an_unreachable_hub_is_one_clear_error_without_retrying",
    ),
    # the bundled model
    ("| Dice (cell interior) | 0.9520 | 0.9480 | — |", None),
    (
        "its scores on them are not a hold-out, and the command says so below its table",
        "test_evaluate.py::test_evaluating_the_bundled_model_on_its_training_slices_says_so",
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


def test_the_app_queues_at_most_64_requests_one_at_a_time():
    from unet_hub.app.webapp import build_app

    app = build_app(UNet(base_channels=2), "a-test-model")
    assert app._queue.max_size == 64
    assert app._queue.default_concurrency_limit == 1


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
