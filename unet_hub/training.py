"""The training loop: data -> U-Net -> loss -> optimiser, validated every epoch.

The defaults are the documented recipe (RMSprop lr 1e-5, weight decay 1e-8, momentum 0.9,
BCEWithLogitsLoss, random flips, batch size 1, 40 epochs). Unlike the recipe's original
script, inputs are scaled to [0, 1], a validation block is held out, and the model kept
as "best" is the one with the best validation Dice, not the lowest loss of one batch.
Options add the U-Net paper's recipe: its augmentation (``--augment paper``), its border
weight map (``--loss weighted``), SGD with momentum 0.99, crops, other optimisers and
learning-rate schedules, and a wall-clock budget (``--max-minutes``).
"""

from __future__ import annotations

import copy
import csv
import functools
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from huggingface_hub import CommitInfo
from torch.utils.data import DataLoader, RandomSampler
from tqdm.auto import tqdm

from .augment import AUGMENT_MODES, AugmentParams, build_augment, describe_augment
from .data import SegmentationDataset, find_pairs, select_stems, split_validation
from .errors import DataError, UNetHubError
from .evaluation import Evaluation, Evaluator, evaluate_model
from .hub import LOG_NAME, HubError, check_push_access, push_model_folder
from .inference import probabilities_from_logits, resolve_device
from .losses import LOSSES, SIGMA, W0, SegmentationLoss, describe_loss, unet_weight_map
from .model import UNet
from .optim import (
    OPTIMIZERS,
    SCHEDULES,
    LRSchedule,
    build_optimizer,
    describe_optimizer,
    describe_schedule,
)
from .packaging import save_model_folder

LAST_DIR = "last"
_PAPER = AugmentParams()  # the --augment paper defaults


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
    val_slices: str | None = _opt(
        None,
        "hold out these files of --data for validation, by stem: e.g. 25-29 or 3,7,10-12 "
        "(overrides --val-fraction; same syntax as `unet-hub evaluate --slices`)",
    )
    epochs: int = _opt(40, "number of passes over the training data")
    max_minutes: float | None = _opt(
        None,
        "stop after this many minutes of training and validation (the epoch in progress is "
        "cut short, validated and saved); --epochs stays the upper limit",
    )
    batch_size: int = _opt(1, "images per optimisation step")
    samples_per_epoch: int | None = _opt(
        None, "training samples (images or crops) per epoch; default: one per training image"
    )
    optimizer: str = _opt("rmsprop", "optimiser", choices=OPTIMIZERS)
    lr: float = _opt(1e-5, "learning rate")
    weight_decay: float = _opt(1e-8, "weight decay")
    momentum: float | None = _opt(
        None,
        "momentum for rmsprop (default 0.9, the seed recipe) and sgd (default 0.99, the "
        "paper's); adam and adamw do not use it",
    )
    lr_schedule: str = _opt(
        "none",
        "learning-rate schedule: none, cosine (to 0 by the last epoch or the time budget) or "
        "plateau (halve when validation Dice stalls for 5 epochs)",
        choices=SCHEDULES,
    )
    loss: str = _opt(
        "bce",
        "bce (cross-entropy: BCE for one class, softmax CE for several), dice (soft Dice), "
        "bce+dice, or weighted (cross-entropy weighted by the U-Net paper's border map)",
        choices=LOSSES,
    )
    w0: float = _opt(W0, "--loss weighted: weight of the gaps between neighbouring cells")
    border_sigma: float = _opt(SIGMA, "--loss weighted: width (px) of the gap weighting")
    class_balance: bool = _opt(
        True, "--loss weighted: also weight each class by its inverse frequency (the paper's w_c)"
    )
    image_size: int | None = _opt(
        None,
        "resize images and masks to this square size "
        "(masks by nearest neighbour); default: keep their size",
    )
    crop_size: int | None = _opt(
        None, "train on random crops of this size (a multiple of 16); validation uses whole images"
    )
    augment: str = _opt(
        "seed",
        "seed (random flips), paper (the U-Net paper's: flips, 90° and free rotations, "
        "shifts, elastic deformation, gray-value changes) or none",
        choices=AUGMENT_MODES,
    )
    rotation: float = _opt(_PAPER.rotation, "--augment paper: max. free rotation, in degrees")
    elastic_std: float = _opt(
        _PAPER.elastic_std,
        "--augment paper: std (px) of the elastic displacements on a 3×3 grid (0 = off)",
    )
    elastic_p: float = _opt(_PAPER.elastic_p, "--augment paper: probability of elastic deformation")
    gray_p: float = _opt(
        _PAPER.gray_p, "--augment paper: probability of a brightness/contrast/gamma change"
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
    flip: bool = _opt(
        True, "random flips (left-right, up-down, both or none) in --augment seed and paper"
    )
    seed: int = _opt(0, "random seed for weights, shuffling and augmentation")
    device: str = _opt("auto", "'auto' (CUDA when present, else CPU), 'cpu', 'cuda', 'cuda:1'...")
    num_workers: int = _opt(0, "DataLoader worker processes")
    push_to_hub: str | None = _opt(
        None,
        "after training, publish the best model to this Hugging Face Hub repo (user/name); "
        "the token comes from HF_TOKEN or `hf auth login`",
    )
    hub_private: bool = _opt(False, "create the --push-to-hub repo as private")

    def augment_params(self) -> AugmentParams:
        return AugmentParams(
            flip=self.flip,
            rotation=self.rotation,
            elastic_std=self.elastic_std,
            elastic_p=self.elastic_p,
            gray_p=self.gray_p,
            crop_size=self.crop_size,
        )

    def recipe(self) -> str:
        """One line describing the optimisation recipe, for logs and model cards."""
        text = (
            describe_optimizer(self.optimizer, self.lr, self.weight_decay, self.momentum)
            + describe_schedule(self.lr_schedule)
            + ", "
            + describe_loss(
                self.loss, self.n_classes, self.w0, self.border_sigma, self.class_balance
            )
            + f", {describe_augment(self.augment, self.augment_params())}"
            + f", batch size {self.batch_size}"
        )
        if self.samples_per_epoch:
            text += f", {self.samples_per_epoch} samples per epoch"
        if self.max_minutes:
            text += f", {self.max_minutes:g}-minute budget"
        return text


@dataclass
class EpochStats:
    """One row of the training log."""

    epoch: int
    train_loss: float
    val_loss: float | None
    val_dice: float | None
    val_iou: float | None
    val_pixel_error: float | None
    val_rand_error: float | None
    lr: float
    seconds: float
    best: bool = False


@dataclass
class TrainResult:
    """Where the run wrote its outputs and how good its best model is."""

    out: Path
    best_epoch: int
    history: list[EpochStats]
    commit: CommitInfo | None = None  # the Hub commit, with --push-to-hub
    evaluation: Evaluation | None = None  # the best model on the validation set, in full

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
    elif cfg.val_slices:
        val_pairs, train_pairs = select_stems(pairs, cfg.val_slices)
        if not train_pairs:
            raise DataError(f"--val-slices {cfg.val_slices} holds out every file; keep some")
    else:
        train_pairs, val_pairs = split_validation(pairs, cfg.val_fraction)
    weight_map = None
    if cfg.loss == "weighted":
        weight_map = functools.partial(
            unet_weight_map,
            n_labels=max(2, cfg.n_classes),
            w0=cfg.w0,
            sigma=cfg.border_sigma,
            balance=cfg.class_balance,
        )
    common = {
        "n_channels": cfg.n_channels,
        "n_classes": cfg.n_classes,
        "image_size": cfg.image_size,
        "weight_map": weight_map,
    }
    augment = build_augment(cfg.augment, cfg.augment_params())
    train_set = SegmentationDataset(train_pairs, augment=augment, **common)
    val_set = SegmentationDataset(val_pairs, **common) if val_pairs else None
    if cfg.batch_size > 1 and not cfg.crop_size and len(train_set.sizes()) > 1:
        raise DataError(
            f"{cfg.data}: images of different sizes {sorted(train_set.sizes())} cannot be "
            "batched; pass --image-size, --crop-size or --batch-size 1"
        )
    return train_set, val_set


@torch.no_grad()
def validate(
    model: UNet, loader: DataLoader, criterion: SegmentationLoss, device: torch.device
) -> tuple[float, Evaluation]:
    """Mean loss per image and the metrics at the model's threshold (no sweep: cheap
    enough for every epoch)."""
    model.eval()
    evaluator = Evaluator(model.n_classes, model.config["threshold"], model.config["labels"])
    total, n = torch.zeros((), device=device), 0
    for batch in loader:
        x, y, *weights = (t.to(device) for t in batch)
        logits = model(x)
        total += criterion(logits, y, *weights) * len(x)
        n += len(x)
        probabilities = probabilities_from_logits(logits).cpu().numpy()
        for p, truth in zip(probabilities, y.cpu().numpy(), strict=True):
            if model.n_classes == 1:
                evaluator.add(p[0], truth[0] > 0.5)
            else:
                evaluator.add(p, truth)
    return float(total) / max(n, 1), evaluator.result()


def _optimisation_step(
    model: UNet,
    criterion: SegmentationLoss,
    optimizer: torch.optim.Optimizer,
    batch: list[torch.Tensor],
    device: torch.device,
) -> torch.Tensor:
    """One step on a batch (image, target[, weights]); returns the batch's summed loss
    (a tensor on ``device``, so the loop does not wait for the device every step)."""
    x, y, *weights = (t.to(device, non_blocking=True) for t in batch)
    loss = criterion(model(x), y, *weights)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach() * len(x)


def _epoch_stats(
    epoch: int,
    train_loss: float,
    val_loss: float | None,
    evaluation: Evaluation | None,
    lr: float,
    started: float,
) -> EpochStats:
    if evaluation is None:
        return EpochStats(
            epoch, train_loss, None, None, None, None, None, lr, time.perf_counter() - started
        )
    return EpochStats(
        epoch,
        train_loss,
        val_loss,
        evaluation.mean_dice,
        float(np.mean(evaluation.iou)),
        evaluation.pixel_error,
        evaluation.rand_error,
        lr,
        time.perf_counter() - started,
    )


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
    sampler = RandomSampler(
        train_set,
        num_samples=cfg.samples_per_epoch,
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    loader = DataLoader(
        train_set,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
    )
    val_loader = DataLoader(val_set, batch_size=1) if val_set else None
    model = UNet(
        n_channels=cfg.n_channels,
        n_classes=cfg.n_classes,
        bilinear=cfg.bilinear,
        base_channels=cfg.base_channels,
        labels=cfg.labels,
    ).to(device)
    optimizer = build_optimizer(
        cfg.optimizer, model.parameters(), cfg.lr, cfg.weight_decay, cfg.momentum
    )
    budget = cfg.max_minutes * 60 if cfg.max_minutes else None
    schedule = LRSchedule(cfg.lr_schedule, optimizer, cfg.epochs * len(loader), budget)
    criterion = SegmentationLoss(cfg.loss)

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
    best_score, best_epoch, best_state = -float("inf"), 0, None
    # with a time budget the number of steps is not known in advance
    total_steps = None if budget else cfg.epochs * len(loader)
    progress = tqdm(total=total_steps, unit="step", dynamic_ncols=True)
    started_run, steps = time.perf_counter(), 0
    for epoch in range(1, cfg.epochs + 1):
        started = time.perf_counter()
        model.train()
        running, seen = torch.zeros((), device=device), 0
        out_of_time = False
        for batch in loader:
            running += _optimisation_step(model, criterion, optimizer, batch, device)
            seen += len(batch[0])
            steps += 1
            elapsed = time.perf_counter() - started_run
            schedule.after_step(steps, elapsed)
            progress.update(1)
            if budget and elapsed >= budget:
                out_of_time = True
                break
        train_loss = float(running) / seen

        val_loss = evaluation = None
        if val_loader is not None:
            val_loss, evaluation = validate(model, val_loader, criterion, device)
        # Without validation data the best model is the one with the lowest mean loss over
        # the whole epoch (never a single batch's loss).
        score = evaluation.mean_dice if evaluation is not None else -train_loss
        stats = _epoch_stats(epoch, train_loss, val_loss, evaluation, schedule.lr, started)
        stats.best = score > best_score
        history.append(stats)
        schedule.after_epoch(score)
        if out_of_time:
            card_training["epochs"] = (
                f"{epoch} of {cfg.epochs} (stopped by the {cfg.max_minutes:g}-minute budget)"
            )

        metrics = _card_metrics(stats)
        last = {"epoch": epoch, "selected": "the last epoch"}
        card = {"metrics": metrics, "eval_dataset": eval_dataset}
        save_model_folder(model, out / LAST_DIR, training=card_training | last, **card)
        if stats.best:
            best_score, best_epoch = score, epoch
            best_state = copy.deepcopy(model.state_dict())
            best = {"epoch": epoch, "selected": f"the best epoch by {selection}"}
            best_card = {"training": card_training | best, **card}
            save_model_folder(model, out, **best_card)
        _write_log_row(log_path, stats)
        progress.set_postfix_str(_describe(stats), refresh=True)
        if out_of_time:
            break
    progress.close()
    result = TrainResult(out=out, best_epoch=best_epoch, history=history)
    if val_set is not None:
        result.evaluation = _evaluate_best(model, best_state, val_set, out, best_card)
    if cfg.push_to_hub:
        result.commit = _push(out, cfg)
    return result


def _evaluate_best(
    model: UNet, best_state: dict, val_set: SegmentationDataset, out: Path, card: dict
) -> Evaluation:
    """Score the best model on the validation set in full (with the threshold sweep,
    which is too slow for every epoch) and add the scores to its model card."""
    model.load_state_dict(best_state)
    evaluation = evaluate_model(
        model, val_set.images, val_set.masks, names=[p[0].stem for p in val_set.pairs]
    )
    card["metrics"] = card["metrics"] | evaluation.card_metrics(overlap=False)
    save_model_folder(model, out, **card)
    return evaluation


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
    metrics = {"training loss (epoch mean)": stats.train_loss}
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
