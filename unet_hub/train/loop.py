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

import contextlib
import csv
import functools
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import broadcast_object_list, gather_object
from huggingface_hub import CommitInfo
from torch.utils.data import DataLoader, RandomSampler
from tqdm.auto import tqdm

from unet_hub.data.augment import AUGMENT_MODES, AugmentParams, build_augment, describe_augment
from unet_hub.data.dataset import SegmentationDataset
from unet_hub.data.pairs import find_pairs, select_stems, split_validation
from unet_hub.errors import ConfigError, DataError, UNetHubError
from unet_hub.evaluate.evaluator import Evaluation, Evaluator, evaluate_model
from unet_hub.files import CHECKPOINT_NAME, CURVE_NAME, INTERRUPTED_DIR, LAST_DIR, LOG_NAME
from unet_hub.hub.publish import (
    HubError,
    check_push_access,
    push_model_folder,
)
from unet_hub.infer.runners import probabilities_from_logits
from unet_hub.infer.segment import resolve_device
from unet_hub.model.save import save_model_folder
from unet_hub.model.unet import UNet
from unet_hub.train.checkpoint import (
    fault_point,
    read_checkpoint,
    read_checkpoint_state,
    remove_stale_temporaries,
    restore,
    save_checkpoint,
)
from unet_hub.train.losses import (
    LOSSES,
    SIGMA,
    W0,
    SegmentationLoss,
    describe_loss,
    unet_weight_map,
)
from unet_hub.train.optim import (
    OPTIMIZERS,
    SCHEDULES,
    LRSchedule,
    build_optimizer,
    describe_optimizer,
    describe_schedule,
)

MIXED_PRECISION = ("no", "fp16", "bf16")
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
#: Options a resumed run may take anew; the others must stay as the run had them.
RESUME_MAY_CHANGE = (
    "epochs",
    "lr",
    "max_minutes",
    "data",
    "val_data",
    "num_workers",
    "device",
    "mixed_precision",
    "memory_format",
    "push_to_hub",
    "hub_private",
    "select_threshold",
    "card_note",
    "fp16_weights",
)
_PAPER = AugmentParams()  # the --augment paper defaults


class TrainingDiverged(UNetHubError):
    """The training loss became NaN or infinite."""


def _opt(default, help: str, **meta):
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class TrainConfig:
    """Everything a training run depends on; the command line is generated from it."""

    data: str = _opt(
        None,
        "training data folder (images/ + masks/, image/ + label/, "
        "or Training_Images/ + Training_Labels/); required unless --resume",
    )
    out: str = _opt(
        None,
        "output folder: the best model (a save_pretrained folder), "
        f"{LAST_DIR}/ (the last epoch's model), {LOG_NAME} and {CHECKPOINT_NAME} "
        "(to --resume from); required unless --resume",
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
        "output classes: 1 = binary mask (0 = background, the other value foreground; "
        "soft edges are thresholded at half), more = masks hold class ids",
    )
    labels: list[str] | None = _opt(None, "name of each class, e.g. 'cell interior'")
    select_threshold: bool = _opt(
        False,
        "after training, make the threshold with the lowest validation adapted Rand error "
        "(cells as 4-connected components: for touching objects, as in EM) the model's "
        "recommended threshold, which the app and `unet-hub predict` use",
    )
    fp16_weights: bool = _opt(
        False,
        "store the saved models' weights as float16 (half the file; they compute in float32 "
        "after loading); the checkpoint stays float32",
    )
    card_note: list[str] | None = _opt(
        None,
        "sentences for the model card, e.g. what the mask values mean: 'mask 255 = cell "
        "interior, 0 = membrane'",
    )
    base_channels: int = _opt(64, "width of the first U-Net level (64 = the classic network)")
    bilinear: bool = _opt(True, "bilinear up-sampling (else transposed convolutions)")
    flip: bool = _opt(
        True, "random flips (left-right, up-down, both or none) in --augment seed and paper"
    )
    seed: int = _opt(0, "random seed for weights, shuffling and augmentation")
    device: str = _opt("auto", "'auto' (CUDA when present, else CPU), 'cpu', 'cuda', 'cuda:1'...")
    num_workers: int = _opt(0, "DataLoader worker processes")
    memory_format: str = _opt(
        "auto",
        "layout of the activations and weights: channels_last, contiguous (NCHW), or auto "
        "(channels_last on CPUs, where it trained 18 %% faster in benchmarks/; NCHW on GPUs)",
        choices=MEMORY_FORMATS,
    )
    mixed_precision: str = _opt(
        "no",
        "autocast precision: no (fp32), fp16 (CUDA only) or bf16 (CUDA, and CPUs; fast only "
        "on CPUs with native bf16)",
        choices=MIXED_PRECISION,
    )
    grad_accum: int = _opt(
        1,
        "accumulate the gradients of N batches per optimisation step "
        "(effective batch = --batch-size × N × processes)",
    )
    sync_bn: bool = _opt(
        False,
        "synchronise BatchNorm statistics across processes (SyncBatchNorm; PyTorch supports "
        "it on GPUs only)",
    )
    resume: str | None = _opt(
        None,
        "continue the run in this folder (an earlier --out) from its last checkpoint, with "
        "its saved options; only "
        + ", ".join("--" + o.replace("_", "-") for o in RESUME_MAY_CHANGE)
        + " may be given again",
    )
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
    model: UNet | None = None  # the model as the last epoch left it (on every process)
    main: bool = True  # False on the other processes of a multi-process run
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


def _seed_epoch(seed: int, epoch: int, rank: int, generator: torch.Generator) -> None:
    """Seed one epoch on one process: the sample order (shared by all processes) and the
    augmentation (each process its own). Every epoch's randomness then depends only on
    (seed, epoch, process), so a run resumed at an epoch boundary replays exactly."""
    generator.manual_seed(_derived_seed(seed, epoch))
    torch.manual_seed(_derived_seed(seed, epoch, rank + 1))


def _derived_seed(*entropy: int) -> int:
    return int(np.random.SeedSequence(list(entropy)).generate_state(1, np.uint64)[0])


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
    model: UNet,
    val_set: SegmentationDataset,
    criterion: SegmentationLoss,
    accelerator: Accelerator | None = None,
) -> tuple[float, Evaluation]:
    """Mean loss per image and the metrics at the model's threshold (no sweep: cheap
    enough for every epoch) over the whole validation set.

    With several processes, process r scores images r, r + W, r + 2W... and the main
    process gathers them in order, so no image is counted twice or missed; every process
    gets the result.
    """
    model.eval()
    device = next(model.parameters()).device
    world = accelerator.num_processes if accelerator else 1
    rank = accelerator.process_index if accelerator else 0
    main = rank == 0
    evaluator = Evaluator(model.n_classes, model.config["threshold"], model.config["labels"])
    total = 0.0
    for start in range(0, len(val_set), world):
        mine = None
        if start + rank < len(val_set):
            x, y, *weights = (t[None].to(device) for t in val_set[start + rank])
            with accelerator.autocast() if accelerator else contextlib.nullcontext():
                logits = model(x).float()
            loss = float(criterion(logits, y, *weights))
            mine = (loss, probabilities_from_logits(logits)[0].cpu().numpy(), y[0].cpu().numpy())
        gathered = gather_object([mine]) if world > 1 else [mine]
        if not main:
            continue
        for index, item in enumerate(gathered, start):  # process order = image order
            if item is None:
                continue
            loss, probabilities, truth = item
            total += loss
            name = val_set.pairs[index][0].stem
            if model.n_classes == 1:
                evaluator.add(probabilities[0], truth[0] > 0.5, name=name)
            else:
                evaluator.add(probabilities, truth, name=name)
    result = [total / len(val_set), evaluator.result()] if main else [None, None]
    if world > 1:
        broadcast_object_list(result)
    return result[0], result[1]


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


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    """The Accelerate engine for ``cfg``: one process, or one per ``accelerate launch`` /
    ``torchrun`` worker (DDP: gloo on CPUs, NCCL on GPUs)."""
    if cfg.mixed_precision not in MIXED_PRECISION:
        raise ConfigError(f"mixed_precision must be one of {MIXED_PRECISION}")
    if cfg.grad_accum < 1:
        raise ConfigError(f"--grad-accum must be 1 or more, got {cfg.grad_accum}")
    device = resolve_device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {cfg.device}: this machine has no CUDA GPU; use --device cpu")
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device.index)
    try:
        return Accelerator(
            cpu=device.type == "cpu",
            mixed_precision=cfg.mixed_precision,
            gradient_accumulation_steps=cfg.grad_accum,
        )
    except (ValueError, RuntimeError) as e:
        raise ConfigError(
            f"--mixed-precision {cfg.mixed_precision} on {device.type}: {e}"
        ) from None


@dataclass
class RunState:
    """How far a run is: what a checkpoint stores besides the tensors."""

    epoch: int = 0  # the last completed epoch
    samples: int = 0  # training samples seen, over all processes
    seconds: float = 0.0  # time used, for --max-minutes
    best_score: float = -math.inf
    best_epoch: int = 0
    history: list[EpochStats] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)  # every invocation, resumes included

    @classmethod
    def from_dict(cls, state: dict) -> RunState:
        run = cls(**{k: v for k, v in state.items() if k != "history"})
        run.history = [EpochStats(**h) for h in state["history"]]
        return run


def train(cfg: TrainConfig, command: str | None = None) -> TrainResult:
    """Train a U-Net as ``cfg`` says; write the best and last models, the log and a
    checkpoint each epoch, and publish the best model when ``cfg.push_to_hub`` names a
    repo. Runs as one process, or as one of several under ``accelerate launch``."""
    accelerator = make_accelerator(cfg)
    try:
        return _train(cfg, accelerator, command)
    finally:
        if accelerator.num_processes > 1:
            # an undestroyed process group aborts the process at exit
            accelerator.end_training()
        else:
            # let the next train() in this process choose other Accelerate settings
            AcceleratorState._reset_state(reset_partial_state=True)
            GradientState._reset_state()


def _train(cfg: TrainConfig, accelerator: Accelerator, command: str | None) -> TrainResult:
    main = accelerator.is_main_process
    resumed = read_checkpoint(Path(cfg.resume) / CHECKPOINT_NAME) if cfg.resume else None
    if cfg.push_to_hub and main:
        check_push_access(cfg.push_to_hub)  # a bad token fails now, not after training
    seed_everything(cfg.seed)
    train_set, val_set = load_datasets(cfg)
    generator = torch.Generator()
    sampler = RandomSampler(train_set, num_samples=cfg.samples_per_epoch, generator=generator)
    loader = DataLoader(
        train_set,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=cfg.num_workers,
        pin_memory=accelerator.device.type == "cuda",
    )
    model = UNet(
        n_channels=cfg.n_channels,
        n_classes=cfg.n_classes,
        bilinear=cfg.bilinear,
        base_channels=cfg.base_channels,
        labels=cfg.labels,
    )
    if cfg.sync_bn:
        model = _sync_batchnorm(model, accelerator)
    channels_last = cfg.memory_format == "channels_last" or (
        cfg.memory_format == "auto" and accelerator.device.type == "cpu"
    )
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=layout)
    optimizer = build_optimizer(
        cfg.optimizer, model.parameters(), cfg.lr, cfg.weight_decay, cfg.momentum
    )
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    net: UNet = accelerator.unwrap_model(model)
    steps_per_epoch = math.ceil(len(loader) / cfg.grad_accum)
    samples_per_step = cfg.batch_size * cfg.grad_accum * accelerator.num_processes
    budget = cfg.max_minutes * 60 if cfg.max_minutes else None
    schedule = LRSchedule(cfg.lr_schedule, optimizer, cfg.epochs * steps_per_epoch, budget)
    run = RunState()
    if resumed is not None:
        tensors, state = resumed
        restore(tensors, state, net, optimizer)
        schedule.load_state_dict(state["schedule"])
        if cfg.lr != state["config"]["lr"]:  # e.g. going on more gently after a divergence
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr
        run = RunState.from_dict(state["run"])
    run.commands.append(command or "")
    criterion = SegmentationLoss(cfg.loss)

    out = Path(cfg.out)
    log_path = out / LOG_NAME
    if main:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out)
        log_path.unlink(missing_ok=True)
        for stats in run.history:  # a resumed run's log, up to its checkpoint
            _write_log_row(log_path, stats)
    if val_set is None:
        eval_dataset = f"{cfg.data} (training images)"
    else:
        held_out = (
            cfg.val_data
            or (cfg.val_slices and f"slices {cfg.val_slices} of {cfg.data}")
            or f"held-out block of {cfg.data}"
        )
        eval_dataset = f"{held_out} ({len(val_set)} images)"
    card_training = {
        "data": f"{cfg.data} ({len(train_set)} images)",
        "val": eval_dataset if val_set else None,
        "recipe": cfg.recipe(),
        "epochs": cfg.epochs,
        "command": " ; then: ".join(c for c in run.commands if c),
        "seed": cfg.seed,
        "notes": list(cfg.card_note or []),
    }
    if cfg.fp16_weights:
        note = "Weights are stored as float16; the model computes in float32."
        card_training["notes"].append(note)
    card = {"eval_dataset": eval_dataset}
    selection = "validation Dice" if val_set else "mean training loss"

    steps = run.samples // samples_per_step
    # with a time budget the number of steps is not known in advance
    total_steps = None if budget else cfg.epochs * steps_per_epoch
    progress = tqdm(
        total=total_steps, initial=steps, unit="step", dynamic_ncols=True, disable=not main
    )
    clock = time.perf_counter() - run.seconds  # a resumed run continues its budget
    epoch = run.epoch
    # a run resumed after its time budget was used up trains no further
    last_epoch = run.epoch if budget and run.seconds >= budget else cfg.epochs
    try:
        for epoch in range(run.epoch + 1, last_epoch + 1):
            started = time.perf_counter()
            _seed_epoch(cfg.seed, epoch, accelerator.process_index, generator)
            model.train()
            running = torch.zeros(2, device=accelerator.device)  # summed loss, samples
            out_of_time = False
            for x, y, *weights in loader:
                x = x.contiguous(memory_format=layout)
                with accelerator.accumulate(model):
                    loss = criterion(model(x).float(), y, *weights)
                    accelerator.backward(loss)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                running += torch.stack([loss.detach() * len(x), running.new_tensor(len(x))])
                if not accelerator.sync_gradients:
                    continue
                steps += 1
                elapsed = time.perf_counter() - clock
                schedule.after_step(steps, elapsed)
                progress.update(1)
                fault_point("step")
                if budget and _any_process(accelerator, elapsed >= budget):
                    out_of_time = True
                    break
            loss_sum, seen = accelerator.reduce(running, "sum").tolist()
            train_loss = loss_sum / seen
            if not math.isfinite(train_loss):
                kept = (
                    f"{out}/ keeps the best model and the checkpoint of epoch {run.epoch}: go "
                    f"on with a lower learning rate (--resume {out} --lr ...)"
                    if run.epoch
                    else "no epoch was complete: start again with a lower --lr"
                )
                raise TrainingDiverged(
                    f"the training loss of epoch {epoch} is {train_loss} (--lr {cfg.lr:g}): "
                    f"training diverged and nothing of epoch {epoch} was saved; {kept}, or "
                    "check the data"
                )
            run.samples += int(seen)

            val_loss = evaluation = None
            if val_set is not None:
                val_loss, evaluation = validate(net, val_set, criterion, accelerator)
            # Without validation data the best model is the one with the lowest mean loss
            # over the whole epoch (never a single batch's loss).
            score = evaluation.mean_dice if evaluation is not None else -train_loss
            stats = _epoch_stats(epoch, train_loss, val_loss, evaluation, schedule.lr, started)
            stats.best = score > run.best_score
            schedule.after_epoch(score)
            run.history.append(stats)
            if stats.best:
                run.best_score, run.best_epoch = score, epoch
            run.epoch, run.seconds = epoch, time.perf_counter() - clock
            if out_of_time:
                card_training["epochs"] = _stopped_by_budget(epoch, cfg)
            if main:
                metrics = {"metrics": _card_metrics(stats), **card}
                last = {"epoch": epoch, "selected": "the last epoch"}
                folder = {"half": cfg.fp16_weights, **metrics}
                save_model_folder(net, out / LAST_DIR, training=card_training | last, **folder)
                if stats.best:
                    best = {"epoch": epoch, "selected": f"the best epoch by {selection}"}
                    save_model_folder(net, out, training=card_training | best, **folder)
                _write_log_row(log_path, stats)
                # last: the checkpoint is what says the epoch is complete
                save_checkpoint(
                    out / CHECKPOINT_NAME,
                    net,
                    optimizer,
                    {
                        "config": asdict(cfg),
                        "schedule": schedule.state_dict(),
                        "run": asdict(run),
                    },
                )
            accelerator.wait_for_everyone()
            progress.set_postfix_str(_describe(stats), refresh=True)
            if out_of_time:
                break
    except KeyboardInterrupt:
        progress.close()
        if main:
            _save_interrupted(net, out, epoch, run, card_training)
        raise
    progress.close()
    if budget and run.seconds >= budget:  # also when a resumed run had nothing left to do
        card_training["epochs"] = _stopped_by_budget(run.epoch, cfg)

    result = TrainResult(
        out=out, best_epoch=run.best_epoch, history=run.history, model=net, main=main
    )
    if main and _plot_curve(log_path):
        card_training["curve"] = CURVE_NAME
    if main and val_set is not None and run.best_epoch:
        best = {"epoch": run.best_epoch, "selected": f"the best epoch by {selection}"}
        best_card = {
            "training": card_training | best,
            "metrics": _card_metrics(result.best),
            **card,
        }
        result.evaluation = _evaluate_best(out, val_set, best_card, cfg)
    if main and cfg.push_to_hub:
        result.commit = _push(out, cfg)
    accelerator.wait_for_everyone()
    return result


def _stopped_by_budget(epoch: int, cfg: TrainConfig) -> str:
    return f"{epoch} of {cfg.epochs} (stopped by the {cfg.max_minutes:g}-minute budget)"


def _plot_curve(log_path: Path) -> bool:
    """Draw the training curve next to the log, when matplotlib is installed."""
    from unet_hub.train.curves import PlotError, plot_training_curve

    try:
        plot_training_curve(log_path, log_path.with_name(CURVE_NAME))
    except PlotError:
        return False  # no matplotlib (the `plot` extra): the log is still there
    return True


def _any_process(accelerator: Accelerator, flag: bool) -> bool:
    """True when ``flag`` is true on any process (so all processes stop together)."""
    if accelerator.num_processes == 1:
        return flag
    return bool(accelerator.reduce(torch.tensor(float(flag), device=accelerator.device), "sum"))


def _sync_batchnorm(model: UNet, accelerator: Accelerator) -> UNet:
    if accelerator.num_processes > 1 and accelerator.device.type == "cpu":
        raise ConfigError(
            "--sync-bn: PyTorch's SyncBatchNorm runs on GPUs only; on CPUs drop --sync-bn "
            "(each process then normalises over its own batch)"
        )
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


def _save_interrupted(net: UNet, out: Path, epoch: int, run: RunState, card_training: dict) -> None:
    """On Ctrl-C: keep the model as it was and say how to go on."""
    where = out / INTERRUPTED_DIR
    note = {"epoch": f"{epoch} (interrupted)", "selected": "the model when training was stopped"}
    save_model_folder(net, where, training=card_training | note)
    if run.epoch:
        how = (
            f"the best model (epoch {run.best_epoch}) is in {out}/; continue from the end of "
            f"epoch {run.epoch} with: python train.py --resume {out}"
        )
    else:
        how = "no epoch was complete, so there is no checkpoint to resume from"
    print(
        f"\ninterrupted in epoch {epoch}: the model as it was is in {where}/; {how}",
        file=sys.stderr,
    )


def resume_config(run_dir: str | Path, given: dict[str, Any] | None = None) -> TrainConfig:
    """The options of the run checkpointed in ``run_dir``, to continue it with ``train``.

    ``given`` are options passed again: those in ``RESUME_MAY_CHANGE`` replace the saved
    ones; any other that differs from the run's raises ConfigError (a resumed run keeps
    its recipe).
    """
    saved = read_checkpoint_state(Path(run_dir) / CHECKPOINT_NAME)["config"]
    given = dict(given or {})
    if given.pop("out", None) not in (None, saved["out"], str(run_dir)):
        raise ConfigError(f"--out: a resumed run continues in its own folder, {run_dir}")
    for name, value in given.items():
        if name not in RESUME_MAY_CHANGE and name != "resume" and saved.get(name) != value:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(
                f"{flag} {value} differs from the run in {run_dir} ({flag} {saved.get(name)}); "
                "a resumed run keeps its settings: drop the option, or start a new run in "
                "another --out"
            )
    changes = {k: v for k, v in given.items() if k in RESUME_MAY_CHANGE}
    return TrainConfig(**(saved | changes | {"resume": str(run_dir), "out": str(run_dir)}))


def _evaluate_best(
    out: Path, val_set: SegmentationDataset, card: dict, cfg: TrainConfig
) -> Evaluation:
    """Score the best model (as saved in ``out``: the weights a user gets) on the
    validation set in full (with the threshold sweep, too slow for every epoch) and add
    the scores to its card; with ``cfg.select_threshold``, first make the best-Rand
    threshold the model's own."""
    model = UNet.from_pretrained(out)
    names = [p[0].stem for p in val_set.pairs]
    evaluation = evaluate_model(model, val_set.images, val_set.masks, names=names)
    metrics = card["metrics"] | evaluation.card_metrics(overlap=False)
    best, trained_at = evaluation.best_rand_threshold, model.config["threshold"]
    if cfg.select_threshold and best is not None and best != trained_at:
        # the card then reports everything at the new threshold, and the pixel error
        # also at the one the model was trained and selected with
        before = evaluation
        model.config["threshold"] = best
        evaluation = evaluate_model(model, val_set.images, val_set.masks, names=names)
        metrics = evaluation.card_metrics() | {
            f"{name} (at {trained_at:.2f})": value
            for name, value in before.card_metrics(overlap=False).items()
            if name.startswith("validation pixel error")
        }
        card["training"] = card["training"] | {
            "threshold": f"{best:g}, the lowest validation adapted Rand error (--select-threshold)"
        }
    save_model_folder(model, out, half=cfg.fp16_weights, **card | {"metrics": metrics})
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
