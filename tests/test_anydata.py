"""Training on anyone's data: per-image input scalings, the norm layers, ``--recipe auto``
and the warning when training and validation disagree (issue 16)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import SAMPLE, serving_in_process, write_image
from support.mixed_data import make_mixed_set
from support.space_page import spread_model
from unet_hub import UNet, read_image, segment
from unet_hub.cli import main
from unet_hub.data.images import scale_to_unit
from unet_hub.data.pairs import find_pairs
from unet_hub.errors import ConfigError
from unet_hub.evaluate.evaluator import evaluate_model
from unet_hub.files import CONFIG_NAME, LOG_NAME
from unet_hub.infer.segment import mask_from_probabilities
from unet_hub.model.config import NORMS
from unet_hub.train.recipe import choose, profile_data

GREY = SAMPLE / "test" / "00.png"


# -- the scalings ---------------------------------------------------------------------------


def test_zscore_and_percentile_follow_their_documented_formulas() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 4096, (40, 30, 3)).astype(np.uint16)
    x = image.astype(np.float64)
    z = scale_to_unit(image, "zscore")
    assert z.dtype == np.float32
    np.testing.assert_allclose(z, (x - x.mean()) / x.std(), atol=1e-5)
    lo, hi = np.percentile(x, [0.5, 99.5])
    p = scale_to_unit(image, "percentile")
    np.testing.assert_allclose(p, (np.clip(x, lo, hi) - lo) / (hi - lo), atol=1e-6)
    assert p.min() == 0.0 and p.max() == 1.0 and 0 < (p == 1.0).mean() < 0.01
    flat = np.full((8, 8), 7, np.uint8)
    for scaling in ("zscore", "percentile", "minmax"):
        assert not scale_to_unit(flat, scaling).any()  # a constant image is all 0


@pytest.mark.parametrize("scaling", ["zscore", "percentile"])
def test_per_image_scalings_ignore_gain_offset_and_bit_depth(scaling: str) -> None:
    image = read_image(GREY)[:128, :128]
    other = (image.astype(np.float64) * 40 + 3000).astype(np.uint16)  # 16-bit, gain, offset
    np.testing.assert_allclose(
        scale_to_unit(image, scaling), scale_to_unit(other, scaling), atol=1e-4
    )


def test_an_unknown_scaling_or_norm_is_refused() -> None:
    with pytest.raises(ConfigError, match="input_scaling must be one of"):
        UNet(input_scaling="robust")
    with pytest.raises(ConfigError, match="norm must be one of"):
        UNet(norm="layer")


# -- norm layers ----------------------------------------------------------------------------


def _randomised(norm: str) -> UNet:
    torch.manual_seed(1)
    model = UNet(base_channels=4, norm=norm)
    with torch.no_grad():  # norm layers start as identities; make them matter
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point() and "running_var" not in name:
                tensor.add_(torch.rand_like(tensor) * 0.5)
    return model.eval()


@pytest.mark.parametrize("norm", NORMS)
def test_each_norm_layer_saves_and_loads(norm: str, tmp_path: Path) -> None:
    model = _randomised(norm)
    model.save_pretrained(tmp_path / norm)
    # a BatchNorm model's config.json has no norm key: older versions still load it
    assert json.loads((tmp_path / norm / CONFIG_NAME).read_text()).get("norm", "batch") == norm
    loaded = UNet.from_pretrained(tmp_path / norm).eval()
    assert loaded.config.norm == norm
    x = torch.rand(2, 1, 48, 64)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_a_config_without_norm_loads_as_batchnorm(tmp_path: Path) -> None:
    model = _randomised("batch")
    model.save_pretrained(tmp_path / "old")
    config = json.loads((tmp_path / "old" / CONFIG_NAME).read_text())
    assert "norm" not in config  # written only when not the default, as before the field
    loaded = UNet.from_pretrained(tmp_path / "old").eval()
    assert isinstance(loaded.inc[1], torch.nn.BatchNorm2d)
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


@pytest.mark.parametrize("norm", ["instance", "group"])
@pytest.mark.parametrize("backend", ["fused", "onnx"])
def test_other_norm_layers_run_on_every_backend(norm: str, backend: str) -> None:
    pytest.importorskip("onnxruntime") if backend == "onnx" else None
    model = _randomised(norm)
    image = read_image(GREY)[:96, :128]
    eager = segment(model, image, backend="eager")
    np.testing.assert_allclose(segment(model, image, backend=backend), eager, atol=1e-4)


# -- the scaling travels with the model -----------------------------------------------------


@pytest.fixture(scope="module")
def percentile_model(tmp_path_factory) -> tuple[UNet, Path]:
    model = spread_model(GREY, input_scaling="percentile")
    folder = tmp_path_factory.mktemp("percentile") / "model"
    model.save_pretrained(folder)
    return model, folder


@pytest.fixture(scope="module")
def dim_image(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """The sample slice as a dim 16-bit file: by its dtype it is nearly black."""
    image = read_image(GREY)[:192, :256]
    dim = (image.astype(np.uint16) * 20 + 500).astype(np.uint16)
    path = write_image(tmp_path_factory.mktemp("dim") / "dim.tif", dim)
    return path, image


def test_scaling_round_trips_through_the_config_into_segment(percentile_model, dim_image):
    model, folder = percentile_model
    loaded = UNet.from_pretrained(folder)
    assert loaded.config.input_scaling == "percentile"
    path, image = dim_image
    from_file = segment(loaded, read_image(path))
    np.testing.assert_allclose(from_file, segment(loaded, image), atol=1e-3)
    as_dtype = UNet.from_pretrained(folder)
    as_dtype.update_config(input_scaling="dtype")
    assert np.abs(segment(as_dtype, read_image(path)) - from_file).max() > 0.1


def test_the_cli_applies_the_saved_scaling(percentile_model, dim_image, tmp_path: Path):
    model, folder = percentile_model
    path, _ = dim_image
    assert main(["predict", str(folder), str(path), "--out", str(tmp_path / "masks")]) == 0
    (written,) = (tmp_path / "masks").glob("dim.*")
    expected = mask_from_probabilities(segment(model, read_image(path)), model.config.threshold)
    assert np.array_equal(cv2.imread(str(written), cv2.IMREAD_UNCHANGED), expected)


def test_the_app_applies_the_saved_scaling(percentile_model, dim_image, tmp_path: Path):
    """The app on the saved folder (loaded as the app loads it, served in this process as
    ``app.py`` serves it), called through /segment."""
    from gradio_client import Client, handle_file

    from unet_hub.app.webapp import build_app

    model, folder = percentile_model
    path, _ = dim_image
    expected = mask_from_probabilities(segment(model, read_image(path)), 0.5)
    with serving_in_process(build_app(UNet.from_pretrained(folder), str(folder))) as url:
        client = Client(url, verbose=False, download_files=str(tmp_path / "dl"))
        mask_path = client.predict(handle_file(str(path)), 0.5, api_name="/segment")
        client.close()
    mask = cv2.imread(mask_path, cv2.IMREAD_UNCHANGED)
    assert (mask == expected).mean() >= 0.999


# -- --recipe auto and the warning ----------------------------------------------------------


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    return make_mixed_set(tmp_path_factory.mktemp("mixed") / "data", per_variant=4)


def test_auto_recipe_reads_the_mixed_data(mixed: Path) -> None:
    profile = profile_data(find_pairs(mixed), n_classes=1)
    choice = choose(profile, {"base_channels": 4})
    assert choice.options["input_scaling"] == "percentile"
    assert choice.options["norm"] == "instance"
    assert choice.options["n_channels"] == 1  # gray and colour mixed
    assert choice.options["loss"] == "bce+dice"  # blobs are a small part of each image
    assert "base_channels" not in choice.options and "base_channels" in choice.kept
    assert "bit depths differ" in choice.summary() and "darker in others" in choice.summary()


def test_auto_epochs_grow_with_the_validation_set(mixed: Path) -> None:
    """Validation runs after every epoch: with many validation pixels, an epoch takes
    more steps, so validating stays a small part of the budget."""
    profile = profile_data(find_pairs(mixed), n_classes=1)
    batch = choose(profile, {}).options["batch_size"]
    few = choose(profile, {}).options["samples_per_epoch"]
    assert few == max(profile.n_train, 16 * batch)  # a small validation set: 16 steps
    profile.val_megapixels = 20.0
    chosen = choose(profile, {})
    assert chosen.options["samples_per_epoch"] == 200 * batch  # 10 steps per megapixel
    assert "200 steps per epoch, so that validating 20.0 megapixels" in chosen.summary()


def _log(out: Path) -> list[dict[str, str]]:
    with (out / LOG_NAME).open(newline="") as f:
        return list(csv.DictReader(f))


def _held_out_dice(out: Path, data: Path) -> float:
    pairs = find_pairs(data)[-5:]  # the default held-out block (20 % of 24)
    model = UNet.from_pretrained(out)
    images = [read_image(p[0]) for p in pairs]
    masks = [read_image(p[1]) for p in pairs]
    return evaluate_model(model, images, masks, sweep=False).mean_dice


#: Tiny and bounded by epochs, not minutes, so the result does not depend on the load.
@pytest.fixture
def one_thread():
    """Train with one torch thread: on a machine shared with other work, two threads
    spend most of their time waiting on each other, and the epochs are what is tested."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


FAST = ["--base-channels", "4", "--epochs", "5", "--max-minutes", "5"]


def test_auto_recipe_trains_on_mixed_data(mixed: Path, tmp_path: Path, capsys, one_thread):
    out = tmp_path / "auto"
    args = ["train", "--recipe", "auto", "--data", str(mixed), "--out", str(out), *FAST]
    args += ["--samples-per-epoch", "64"]
    assert main(args) == 0
    printed = capsys.readouterr()
    assert "--recipe auto chose --input-scaling percentile" in printed.out
    config = json.loads((out / CONFIG_NAME).read_text())
    assert (config["input_scaling"], config["norm"]) == ("percentile", "instance")
    assert "--recipe auto chose" in (out / "README.md").read_text()
    assert "warning (epoch" not in printed.out + printed.err
    assert _held_out_dice(out, mixed) >= 0.85


def test_the_defaults_on_mixed_data_warn(mixed: Path, tmp_path: Path, capsys, one_thread):
    out = tmp_path / "seed"
    args = ["train", "--data", str(mixed), "--out", str(out), *FAST]
    assert main(args) == 0
    warnings = [row["warning"] for row in _log(out) if row["warning"]]
    assert warnings, "the defaults on mixed data should warn"
    assert "--input-scaling percentile" in warnings[-1] and "--norm instance" in warnings[-1]
    printed = capsys.readouterr()
    assert "warning (epoch" in printed.out + printed.err  # on the progress line's console


def test_the_warning_names_the_sign_and_fits_the_fix_to_the_options() -> None:
    from unet_hub.train.diagnose import check_epoch
    from unet_hub.train.options import TrainConfig
    from unet_hub.train.run_folder import EpochStats

    def epoch(n: int, train: float, val: float, predicted: float = 0.2) -> EpochStats:
        return EpochStats(n, train, val, 0.5, 0.4, 0.1, 0.2, 1e-3, 1.0, False, predicted, 0.2)

    seed, tuned = (
        TrainConfig(),
        TrainConfig.from_options(input_scaling="percentile", norm="instance", augment="paper"),
    )
    falling = [epoch(1, 0.9, 0.5), epoch(2, 0.7, 0.6), epoch(3, 0.6, 0.7), epoch(4, 0.5, 0.8)]
    warning = check_epoch(falling, seed)
    assert "validation loss rose to 0.8 (best 0.5)" in warning
    assert "--input-scaling percentile" in warning and "--norm instance" in warning
    assert "--input-scaling" not in check_epoch(falling, tuned)
    steady = [epoch(n, 1 / n, 0.5 / n) for n in range(1, 6)]
    assert check_epoch(steady, seed) is None
    flooded = [epoch(n, 1 / n, 0.5, predicted=0.9) for n in range(1, 4)]
    assert check_epoch(flooded[:2], seed) is None  # a fresh network gets a grace period
    assert "foreground on 90% of the pixels, the masks have 20%" in check_epoch(flooded, seed)
