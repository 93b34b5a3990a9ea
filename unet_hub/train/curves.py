"""The training curve of a run as a PNG, for model cards: loss (training and validation)
and validation Dice per epoch, from the ``training_log.csv`` that training writes, with
the best epoch marked.

matplotlib is optional (``pip install 'unet-hub[plot]'``) and imported only when a curve
is drawn; it draws with the Agg canvas directly, so no global backend is switched.

    python -m unet_hub.train.curves RUN_DIR_OR_CSV [--out PNG]
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

from unet_hub.errors import UNetHubError
from unet_hub.files import CURVE_NAME, LOG_NAME

#: The PNG's size: FIGSIZE inches at DPI, i.e. 800×400 pixels.
FIGSIZE = (8.0, 4.0)
DPI = 100
#: Columns of the log that the curve needs (training writes more).
COLUMNS = ("epoch", "train_loss", "val_loss", "val_dice", "best")


class PlotError(UNetHubError):
    """A training curve cannot be drawn (no matplotlib, or an unusable log)."""


@dataclass
class TrainingLog:
    """The columns of a training log that the curve draws; None where a row has no value
    (``val_*`` without validation data)."""

    epoch: list[int]
    train_loss: list[float]
    val_loss: list[float | None]
    val_dice: list[float | None]
    val_rand_thinned: list[float | None]  # empty or None in logs written before it
    best_epoch: int | None  # the last epoch marked best: the one the saved model is from

    @property
    def validated(self) -> bool:
        return any(d is not None for d in self.val_dice)


def read_training_log(log_csv: str | Path) -> TrainingLog:
    """Read the columns the curve needs; ``PlotError`` says what is wrong with the file."""
    log_csv = Path(log_csv)
    try:
        with log_csv.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise PlotError(
                    f"{log_csv} is not a unet-hub training log: no column {', '.join(missing)}"
                )
            rows = list(reader)
    except OSError as e:
        raise PlotError(f"cannot read the training log {log_csv}: {e.strerror or e}") from None
    if not rows:
        raise PlotError(f"{log_csv} has no epochs yet (only a header): nothing to plot")

    def number(row: dict, key: str) -> float | None:
        text = (row[key] or "").strip()
        try:
            return float(text) if text else None
        except ValueError:
            raise PlotError(f"{log_csv}: {key} of epoch {row['epoch']} is {text!r}") from None

    try:
        epochs = [int(row["epoch"]) for row in rows]
    except (TypeError, ValueError):
        raise PlotError(f"{log_csv}: the epoch column holds something else than numbers") from None
    best = [e for e, row in zip(epochs, rows, strict=True) if row["best"].strip() == "True"]
    return TrainingLog(
        epoch=epochs,
        train_loss=[number(row, "train_loss") for row in rows],
        val_loss=[number(row, "val_loss") for row in rows],
        val_dice=[number(row, "val_dice") for row in rows],
        val_rand_thinned=[
            number(row, "val_rand_error_thinned") if "val_rand_error_thinned" in row else None
            for row in rows
        ],
        best_epoch=best[-1] if best else None,
    )


def _agg_figure():
    """A matplotlib Figure on an Agg canvas, or ``PlotError`` saying how to install it."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotError(
            "drawing a training curve needs matplotlib: pip install 'unet-hub[plot]'"
        ) from None
    figure = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def plot_training_curve(log_csv: Path, png: Path) -> Path:
    """Draw loss (training, validation) and validation Dice per epoch from a training log
    (``training_log.csv``) into an 800×400 PNG, marking the best epoch; returns ``png``."""
    log = read_training_log(log_csv)
    figure = _agg_figure()
    from matplotlib.ticker import MaxNLocator

    loss_axes, dice_axes = figure.subplots(1, 2)
    marker = "o" if len(log.epoch) <= 30 else None
    loss_axes.plot(log.epoch, log.train_loss, marker=marker, ms=3, label="training loss")
    if log.validated:
        val_loss = [float("nan") if v is None else v for v in log.val_loss]
        loss_axes.plot(log.epoch, val_loss, marker=marker, ms=3, label="validation loss")
    loss_axes.set(title="Loss", xlabel="epoch", ylabel="loss (epoch mean)")

    dice_axes.set(title="Validation Dice and Rand error", xlabel="epoch", ylabel="score")
    if log.validated:
        dice = [float("nan") if d is None else d for d in log.val_dice]
        dice_axes.plot(log.epoch, dice, marker=marker, ms=3, color="C2", label="validation Dice")
    if any(r is not None for r in log.val_rand_thinned):
        rand = [float("nan") if r is None else r for r in log.val_rand_thinned]
        dice_axes.plot(
            log.epoch, rand, marker=marker, ms=3, color="C4",
            label="adapted Rand error (thinned borders)",
        )  # fmt: skip
    else:
        dice_axes.text(
            0.5, 0.5, "no validation data", ha="center", va="center",
            transform=dice_axes.transAxes, color="0.4",
        )  # fmt: skip
        dice_axes.set(xticks=[], yticks=[])

    if log.best_epoch is not None:
        i = log.epoch.index(log.best_epoch)
        label = f"best epoch ({log.best_epoch})"
        loss_axes.axvline(log.best_epoch, color="0.5", ls="--", lw=1, label=label)
        if log.validated:
            dice_axes.axvline(log.best_epoch, color="0.5", ls="--", lw=1)
        if log.validated and log.val_dice[i] is not None:
            dice_axes.plot(
                log.best_epoch, log.val_dice[i], marker="*", ms=13, color="C3", ls="none",
                label=f"best: epoch {log.best_epoch}, Dice {log.val_dice[i]:.4f}",
            )  # fmt: skip
    for axes in (loss_axes, dice_axes) if log.validated else (loss_axes,):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        axes.margins(x=0.03, y=0.08)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(loc="best", fontsize="small")
    run = Path(log_csv).resolve().parent.name
    figure.suptitle(f"Training curve: {run} ({len(log.epoch)} epochs)")

    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png, format="png")
    return png


def _log_path(run: Path) -> Path:
    return run / LOG_NAME if run.is_dir() else run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m unet_hub.train.curves",
        description="Draw a run's training curve (loss and validation Dice per epoch) as a PNG.",
    )
    parser.add_argument("run", type=Path, help=f"a run folder (holding {LOG_NAME}) or the CSV")
    parser.add_argument(
        "--out", type=Path, default=None, help=f"the PNG to write (default: {CURVE_NAME} beside it)"
    )
    args = parser.parse_args(argv)
    log_csv = _log_path(args.run)
    try:
        png = plot_training_curve(log_csv, args.out or log_csv.parent / CURVE_NAME)
    except UNetHubError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
