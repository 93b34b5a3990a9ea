"""The training loop: data -> U-Net -> loss -> optimiser, validated every epoch.

The defaults are the documented recipe (RMSprop lr 1e-5, weight decay 1e-8, momentum 0.9,
BCEWithLogitsLoss, random flips, batch size 1, 40 epochs). Unlike the recipe's original
script, inputs are scaled to [0, 1], a validation block is held out, and the model kept
as "best" is the one with the best validation Dice, not the lowest loss of one batch.
"""

from __future__ import annotations

import csv
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from huggingface_hub import CommitInfo
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .augment import RandomFlip
from .data import SegmentationDataset, find_pairs, split_validation
from .errors import DataError, UNetHubError
from .hub import LOG_NAME, HubError, check_push_access, push_model_folder
from .inference import probabilities_from_logits, resolve_device
from .metrics import ConfusionCounts
from .model import UNet
from .packaging import save_model_folder

LAST_DIR = "last"


def _opt(default, help: str, **meta):
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class TrainConfig:
    """Everything a training run depends on; the command line is generated from it."""

    data: str = _opt(
        None,
        "training data folder (images/ + masks/, image/ + label/, "
        "or Training_Images/ + Training_Labels/)",
        required=True,
    )
    out: str = _opt(
        None,
        "output folder: the best model (a save_pretrained folder), "
        f"{LAST_DIR}/ (the last epoch's model) and {LOG_NAME}",
        required=True,
    )
    val_data: str | None = _opt(None, "separate validation data folder (overrides --val-fraction)")
    val_fraction: float = _opt(
        0.2,
        "fraction of the sorted training files held out, as one "
        "contiguous block at the end, for validation (0 = none)",
    )
    epochs: int = _opt(40, "number of passes over the training data")
    batch_size: int = _opt(1, "images per optimisation step")
    lr: float = _opt(1e-5, "RMSprop learning rate")
    weight_decay: float = _opt(1e-8, "RMSprop weight decay")
    momentum: float = _opt(0.9, "RMSprop momentum")
    image_size: int | None = _opt(
        None,
        "resize images and masks to this square size "
        "(masks by nearest neighbour); default: keep their size",
    )
    n_channels: int = _opt(1, "input channels: 1 = grayscale, 3 = RGB")
    n_classes: int = _opt(
        1,
        "output classes: 1 = binary mask (any mask value > 0 is "
        "foreground), more = masks hold class ids",
    )
    labels: list[str] | None = _opt(None, "name of each class, e.g. 'cell interior'")
    base_channels: int = _opt(64, "width of the first U-Net level (64 = the classic network)")
    bilinear: bool = _opt(True, "bilinear up-sampling (else transposed convolutions)")
    flip: bool = _opt(True, "random flips (left-right, up-down, both or none)")
    seed: int = _opt(0, "random seed for weights, shuffling and augmentation")
    device: str = _opt("auto", "'auto' (CUDA when present, else CPU), 'cpu', 'cuda', 'cuda:1'...")
    num_workers: int = _opt(0, "DataLoader worker processes")
    push_to_hub: str | None = _opt(
        None,
        "after training, publish the best model to this Hugging Face Hub repo (user/name); "
        "the token comes from HF_TOKEN or `hf auth login`",
    )
    hub_private: bool = _opt(False, "create the --push-to-hub repo as private")

    def recipe(self) -> str:
        """One line describing the optimisation recipe, for logs and model cards."""
        return (
            f"RMSprop(lr={self.lr:g}, weight_decay={self.weight_decay:g}, "
            f"momentum={self.momentum:g}), "
            f"{'BCEWithLogitsLoss' if self.n_classes == 1 else 'CrossEntropyLoss'}, "
            f"{'random flips' if self.flip else 'no augmentation'}, batch size {self.batch_size}"
        )


@dataclass
class EpochStats:
    """One row of the training log."""

    epoch: int
    train_loss: float
    val_loss: float | None
    val_dice: float | None
    val_iou: float | None
    seconds: float
    best: bool = False


@dataclass
class TrainResult:
    """Where the run wrote its outputs and how good its best model is."""

    out: Path
    best_epoch: int
    history: list[EpochStats]
    commit: CommitInfo | None = None  # the Hub commit, with --push-to-hub

    @property
    def best(self) -> EpochStats:
        return self.history[self.best_epoch - 1]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_datasets(cfg: TrainConfig) -> tuple[SegmentationDataset, SegmentationDataset | None]:
    """The training set and the validation set (None when there is none)."""
    pairs = find_pairs(cfg.data)
    if cfg.val_data:
        train_pairs, val_pairs = pairs, find_pairs(cfg.val_data)
    else:
        train_pairs, val_pairs = split_validation(pairs, cfg.val_fraction)
    common = {
        "n_channels": cfg.n_channels,
        "n_classes": cfg.n_classes,
        "image_size": cfg.image_size,
    }
    flip = RandomFlip() if cfg.flip else None
    train_set = SegmentationDataset(train_pairs, augment=flip, **common)
    val_set = SegmentationDataset(val_pairs, **common) if val_pairs else None
    if cfg.batch_size > 1 and len(train_set.sizes()) > 1:
        raise DataError(
            f"{cfg.data}: images of different sizes {sorted(train_set.sizes())} cannot be "
            "batched; pass --image-size or --batch-size 1"
        )
    return train_set, val_set


@torch.no_grad()
def validate(
    model: UNet, loader: DataLoader, criterion: nn.Module, device: torch.device
) -> tuple[float, ConfusionCounts]:
    """Mean loss per image and confusion counts over a validation loader."""
    model.eval()
    counts = ConfusionCounts(model.n_classes)
    total, n = torch.zeros((), device=device), 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x)
        total += criterion(logits, y) * len(x)
        n += len(x)
        counts.update(probabilities_from_logits(logits), y, model.config["threshold"])
    return float(total) / max(n, 1), counts


def _write_log_row(path: Path, stats: EpochStats) -> None:
    row = asdict(stats)
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow({k: "" if v is None else v for k, v in row.items()})


def train(cfg: TrainConfig, command: str | None = None) -> TrainResult:
    """Train a U-Net as ``cfg`` says; write the best and last models and the log, and
    publish the best model when ``cfg.push_to_hub`` names a repo."""
    if cfg.push_to_hub:
        check_push_access(cfg.push_to_hub)  # a bad token fails now, not after training
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    train_set, val_set = load_datasets(cfg)
    loader = DataLoader(
        train_set,
        batch_size=cfg.batch_size,
        shuffle=True,
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    val_loader = DataLoader(val_set, batch_size=1) if val_set else None
    model = UNet(
        n_channels=cfg.n_channels,
        n_classes=cfg.n_classes,
        bilinear=cfg.bilinear,
        base_channels=cfg.base_channels,
        labels=cfg.labels,
    ).to(device)
    optimizer = torch.optim.RMSprop(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum
    )
    criterion = nn.BCEWithLogitsLoss() if cfg.n_classes == 1 else nn.CrossEntropyLoss()

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / LOG_NAME
    log_path.unlink(missing_ok=True)
    eval_dataset = (
        f"{cfg.val_data or 'held-out block of ' + cfg.data} ({len(val_set)} images)"
        if val_set
        else f"{cfg.data} (training images)"
    )
    card_training = {
        "data": f"{cfg.data} ({len(train_set)} images)",
        "val": eval_dataset if val_set else None,
        "recipe": cfg.recipe(),
        "epochs": cfg.epochs,
        "command": command or "",
        "seed": cfg.seed,
    }

    selection = "validation Dice" if val_set else "mean training loss"
    history: list[EpochStats] = []
    best_score, best_epoch = -float("inf"), 0
    progress = tqdm(total=cfg.epochs * len(loader), unit="step", dynamic_ncols=True)
    for epoch in range(1, cfg.epochs + 1):
        started = time.perf_counter()
        model.train()
        running, seen = torch.zeros((), device=device), 0
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = criterion(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += loss.detach() * len(x)
            seen += len(x)
            progress.update(1)
        train_loss = float(running) / seen

        val_loss = dice = iou = None
        if val_loader is not None:
            val_loss, counts = validate(model, val_loader, criterion, device)
            dice, iou = float(counts.dice().mean()), float(counts.iou().mean())
        # Without validation data the best model is the one with the lowest mean loss over
        # the whole epoch (never a single batch's loss).
        score = dice if dice is not None else -train_loss
        stats = EpochStats(epoch, train_loss, val_loss, dice, iou, time.perf_counter() - started)
        stats.best = score > best_score
        history.append(stats)

        metrics = _card_metrics(stats)
        last = {"epoch": epoch, "selected": "the last epoch"}
        card = {"metrics": metrics, "eval_dataset": eval_dataset}
        save_model_folder(model, out / LAST_DIR, training=card_training | last, **card)
        if stats.best:
            best_score, best_epoch = score, epoch
            best = {"epoch": epoch, "selected": f"the best epoch by {selection}"}
            save_model_folder(model, out, training=card_training | best, **card)
        _write_log_row(log_path, stats)
        progress.set_postfix_str(_describe(stats), refresh=True)
    progress.close()
    result = TrainResult(out=out, best_epoch=best_epoch, history=history)
    if cfg.push_to_hub:
        result.commit = _push(out, cfg)
    return result


def _push(out: Path, cfg: TrainConfig) -> CommitInfo:
    """Publish the best model; on failure, say that it is saved and how to push it later."""
    try:
        return push_model_folder(out, cfg.push_to_hub, private=cfg.hub_private)
    except UNetHubError as e:
        private = " --private" if cfg.hub_private else ""
        raise HubError(
            f"{e} (the model is saved in {out}/; push it later with "
            f"`unet-hub push {out} {cfg.push_to_hub}{private}`)"
        ) from None


def _card_metrics(stats: EpochStats) -> dict[str, float]:
    metrics = {"training loss (BCE/CE, epoch mean)": stats.train_loss}
    if stats.val_dice is not None:
        metrics = {
            "validation Dice": stats.val_dice,
            "validation IoU": stats.val_iou,
            "validation loss": stats.val_loss,
            **metrics,
        }
    return metrics


def _describe(stats: EpochStats) -> str:
    text = f"epoch {stats.epoch} loss {stats.train_loss:.4f}"
    if stats.val_dice is not None:
        text += f" val loss {stats.val_loss:.4f} Dice {stats.val_dice:.4f}"
    return text
