"""Training-curve PNGs (unet_hub.train.curves) from logs written by training's own log writer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT
from unet_hub.errors import UNetHubError
from unet_hub.files import CURVE_NAME, LOG_NAME
from unet_hub.train.curves import PlotError, plot_training_curve
from unet_hub.train.run_folder import EpochStats, RunFolder

#: matplotlib's default colours of the curves: training loss, validation loss, Dice, best.
COLOURS = {"C0": (31, 119, 180), "C1": (255, 127, 14), "C2": (44, 160, 44), "C3": (214, 39, 40)}


def write_log(run: Path, epochs: int = 12, validated: bool = True) -> Path:
    """A training log as training writes it: loss falling, Dice rising, best at epoch 9."""
    log = run / LOG_NAME
    run.mkdir(parents=True, exist_ok=True)
    for epoch in range(1, epochs + 1):
        dice = 0.95 - 0.1 / epoch - (0.005 if epoch > 9 else 0)
        val = (0.6 / epoch + 0.2, dice, dice - 0.05, 0.08, 0.3) if validated else (None,) * 5
        stats = EpochStats(epoch, 0.7 / epoch + 0.25, *val, lr=1e-3, seconds=17.0)
        stats.best = epoch <= 9 if validated else epoch <= 4
        RunFolder(run).append_log(stats)
    return log


def colour_pixels(png: Path) -> dict[str, int]:
    rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return {name: int((np.abs(rgb - c).sum(axis=-1) < 30).sum()) for name, c in COLOURS.items()}


def test_a_training_log_becomes_an_800x400_png_of_both_panels(tmp_path):
    png = plot_training_curve(write_log(tmp_path / "run"), tmp_path / "out" / "curve.png")
    assert png == tmp_path / "out" / "curve.png"
    image = Image.open(png)
    assert image.format == "PNG" and image.size == (800, 400)
    assert np.asarray(image.convert("L")).std() > 20  # not blank
    colours = colour_pixels(png)
    # both losses, the Dice curve and the best-epoch star are drawn
    assert colours["C0"] > 300 and colours["C1"] > 300 and colours["C2"] > 300
    assert colours["C3"] > 50


def test_a_log_without_validation_draws_the_training_loss_only(tmp_path):
    png = plot_training_curve(write_log(tmp_path, validated=False), tmp_path / "curve.png")
    assert Image.open(png).size == (800, 400)
    colours = colour_pixels(png)
    assert colours["C0"] > 300 and colours["C1"] == colours["C2"] == colours["C3"] == 0


def test_a_log_with_no_epochs_is_a_clear_error(tmp_path):
    log = tmp_path / LOG_NAME
    log.write_text(
        "epoch,train_loss,val_loss,val_dice,val_iou,val_pixel_error,val_rand_error,lr,seconds,best\n"
    )
    with pytest.raises(PlotError, match="has no epochs yet"):
        plot_training_curve(log, tmp_path / "curve.png")
    assert not (tmp_path / "curve.png").exists()


def test_a_missing_or_foreign_file_is_a_clear_error(tmp_path):
    with pytest.raises(PlotError, match="cannot read the training log"):
        plot_training_curve(tmp_path / "nothing.csv", tmp_path / "curve.png")
    foreign = tmp_path / "other.csv"
    foreign.write_text("epoch,loss\n1,0.5\n")
    with pytest.raises(PlotError, match="not a unet-hub training log: no column train_loss"):
        plot_training_curve(foreign, tmp_path / "curve.png")


def test_without_matplotlib_the_error_says_what_to_install(tmp_path, monkeypatch):
    log = write_log(tmp_path)
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)  # import now raises ImportError
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(PlotError, match=r"pip install 'unet-hub\[plot\]'") as error:
        plot_training_curve(log, tmp_path / "curve.png")
    assert isinstance(error.value, UNetHubError)


def run_module(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "unet_hub.train.curves", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_module_draws_a_run_folder_and_reports_errors_in_one_line(tmp_path, capsys):
    """``python -m unet_hub.train.curves`` as a user runs it; then its ``main`` (what the
    module runs) in this process for the other cases, sparing two Python start-ups."""
    from unet_hub.train.curves import main

    run = tmp_path / "run"
    write_log(run)
    result = run_module(str(run))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(run / CURVE_NAME)
    assert Image.open(run / CURVE_NAME).size == (800, 400)
    out = tmp_path / "elsewhere.png"
    assert main([str(run / LOG_NAME), "--out", str(out)]) == 0 and out.is_file()
    assert capsys.readouterr().out.strip() == str(out)

    assert main([str(tmp_path / "no-such-run")]) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("error: cannot read the training log")
    assert "Traceback" not in stderr
