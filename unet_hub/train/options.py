"""Everything a training run depends on, grouped by concern; the command line is
generated from it.

``TrainConfig`` holds one frozen dataclass per concern (data, model, augmentation, loss,
optimiser, schedule and budget, run, system, output); the model group is the model's own
``UNetConfig``, so its fields, defaults and help are written once. Every option has a
name that is unique across the groups (its ``--flag``), a default, a help text and
whether a resumed run may change it (``resumable``).

The defaults are the documented recipe: RMSprop lr 1e-5, weight decay 1e-8, momentum
0.9, BCEWithLogitsLoss, random flips, batch size 1, 40 epochs.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unet_hub.data.augment import AUGMENT_MODES, AugmentParams, describe_augment
from unet_hub.errors import ConfigError
from unet_hub.files import CHECKPOINT_NAME, LAST_DIR, LOG_NAME
from unet_hub.model.config import INPUT_SCALINGS, NORMS, UNetConfig
from unet_hub.train.losses import LOSSES, SIGMA, W0, describe_loss
from unet_hub.train.optim import OPTIMIZERS, SCHEDULES, describe_optimizer, describe_schedule

MIXED_PRECISION = ("no", "fp16", "bf16")
#: How the best epoch is chosen (``--select-by``).
SELECT_BY = ("dice", "rand", "rand-thinned")
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
#: The model fields that training takes as options (the others are set after training).
MODEL_OPTIONS = (
    "n_channels",
    "n_classes",
    "labels",
    "base_channels",
    "bilinear",
    "mask_values",
    "watershed",
    "min_size",
    "norm",
    "input_scaling",
)
#: The choices of the model options that have a fixed set of values.
MODEL_CHOICES = {"norm": NORMS, "input_scaling": INPUT_SCALINGS}
#: --recipe: seed (the documented recipe, the default) or auto (chosen from the data by
#: ``unet_hub.train.recipe``; options given on the command line win).
RECIPES = ("seed", "auto")
#: Old spellings of option values, still accepted: old -> new.
RENAMED_VALUES = {"augment": {"seed": "flips"}}
_PAPER = AugmentParams()  # the --augment paper defaults


def _opt(default: Any, help: str, *, resumable: bool = False, **meta: Any) -> Any:
    """One option: its default, its help text, and whether ``--resume`` may change it."""
    return field(default=default, metadata={"help": help, "resumable": resumable, **meta})


@dataclass(frozen=True)
class DataOptions:
    """Where the images and masks are, and how validation data is held out."""

    data: str | None = _opt(
        None,
        "training data folder (images/ + masks/, image/ + label/, or Training_Images/ + "
        "Training_Labels/); required unless --resume",
        resumable=True,
    )
    val_data: str | None = _opt(
        None, "separate validation data folder (overrides --val-fraction)", resumable=True
    )
    val_fraction: float = _opt(
        0.2,
        "fraction of the sorted training files held out, as one contiguous block at the end, "
        "for validation (0 = none)",
    )
    val_slices: str | None = _opt(
        None,
        "hold out these files of --data for validation, by stem: e.g. 25-29 or 3,7,10-12 "
        "(overrides --val-fraction; same syntax as `unet-hub evaluate --slices`)",
    )
    image_size: int | None = _opt(
        None,
        "resize images and masks to this square size (masks by nearest neighbour); default: "
        "keep their size",
    )
    dataset_name: str | None = _opt(
        None,
        "the training data's name in the model card and on the Hub, e.g. 'ISBI 2012 EM' "
        "(default: the --data folder's own name; a card never shows a path)",
        resumable=True,
    )
    dataset_id: str | None = _opt(
        None,
        "the Hub dataset (user/name) the training data comes from: the card links it "
        "(datasets: and model-index)",
        resumable=True,
    )


@dataclass(frozen=True)
class AugmentOptions:
    """What each training sample goes through."""

    augment: str = _opt(
        "flips",
        "flips (random flips: the documented recipe), paper (the U-Net paper's: flips, 90° "
        "and free rotations, shifts, elastic deformation, gray-value changes) or none "
        "('seed' is the old name of flips)",
        choices=AUGMENT_MODES,
    )
    flip: bool = _opt(True, "random flips (left-right, up-down, both or none) in flips and paper")
    crop_size: int | None = _opt(
        None, "train on random crops of this size (a multiple of 16); validation uses whole images"
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

    def params(self) -> AugmentParams:
        """The augmentation's parameters."""
        return AugmentParams(
            flip=self.flip,
            rotation=self.rotation,
            elastic_std=self.elastic_std,
            elastic_p=self.elastic_p,
            gray_p=self.gray_p,
            crop_size=self.crop_size,
        )


@dataclass(frozen=True)
class LossOptions:
    """What is minimised."""

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
    teacher: str | None = _opt(
        None,
        "distil this trained model (a folder or a Hub repo id, e.g. a wider U-Net) into the "
        "one being trained: its probabilities become soft targets beside the labels",
    )
    distill_weight: float = _opt(
        0.5, "--teacher: the share of the loss that matches the teacher (the rest: the labels)"
    )


@dataclass(frozen=True)
class OptimOptions:
    """How the weights are updated."""

    optimizer: str = _opt("rmsprop", "optimiser", choices=OPTIMIZERS)
    lr: float = _opt(1e-5, "learning rate", resumable=True)
    weight_decay: float = _opt(1e-8, "weight decay")
    momentum: float | None = _opt(
        None,
        "momentum for rmsprop (default 0.9, the seed recipe) and sgd (default 0.99, the "
        "paper's); adam and adamw do not use it",
    )
    batch_size: int = _opt(1, "images per optimisation step")
    ema: float = _opt(
        0.0,
        "keep an exponential moving average of the weights with this decay per step (e.g. "
        "0.99; 0 = off); the average is what is validated, saved and published, as it damps "
        "the epoch-to-epoch noise",
    )
    grad_accum: int = _opt(
        1,
        "accumulate the gradients of N batches per optimisation step "
        "(effective batch = --batch-size × N × processes)",
    )


@dataclass(frozen=True)
class ScheduleOptions:
    """How long training runs and how the learning rate moves."""

    epochs: int = _opt(40, "number of passes over the training data", resumable=True)
    max_minutes: float | None = _opt(
        None,
        "stop after this many minutes of training and validation (the epoch in progress is "
        "cut short, validated and saved); --epochs stays the upper limit",
        resumable=True,
    )
    samples_per_epoch: int | None = _opt(
        None, "training samples (images or crops) per epoch; default: one per training image"
    )
    lr_schedule: str = _opt(
        "none",
        "learning-rate schedule: none, cosine (to 0 by the last epoch or the time budget) or "
        "plateau (halve when validation Dice stalls for 5 epochs)",
        choices=SCHEDULES,
    )


@dataclass(frozen=True)
class RunOptions:
    """What makes a run reproducible, and continuing one."""

    recipe: str = _opt(
        "seed",
        "seed (the documented recipe: the defaults below) or auto (read the data's sizes, "
        "channels, intensities and foreground, then choose the pixel scaling, norm layer, "
        "crop, batch, loss, optimiser and time budget, and say why; options you give win)",
        choices=RECIPES,
    )
    seed: int = _opt(0, "random seed for weights, shuffling and augmentation")
    resume: str | None = _opt(
        None,
        "continue the run in this folder (an earlier --out) from its last checkpoint, with "
        "its saved options; only the options marked 'may change on --resume' may be given "
        "again with other values",
    )
    init_from: str | None = _opt(
        None,
        "start from the weights of this model (a saved folder or a Hub repo id) instead of "
        "random ones; with another --n-classes or --n-channels only the last or the first "
        "convolution starts afresh",
    )
    init_revision: str | None = _opt(
        None, "--init-from: the Hub branch or commit sha (default: main)"
    )


@dataclass(frozen=True)
class SystemOptions:
    """Where and how the computation runs; none of these changes the recipe."""

    device: str = _opt(
        "auto", "'auto' (CUDA when present, else CPU), 'cpu', 'cuda', 'cuda:1'...", resumable=True
    )
    num_workers: int = _opt(0, "DataLoader worker processes", resumable=True)
    memory_format: str = _opt(
        "auto",
        "layout of the activations and weights: channels_last, contiguous (NCHW), or auto "
        "(channels_last on CPUs, NCHW on GPUs; see benchmarks/results/training_speed.md)",
        choices=MEMORY_FORMATS,
        resumable=True,
    )
    mixed_precision: str = _opt(
        "no",
        "autocast precision: no (fp32), fp16 (CUDA only) or bf16 (CUDA, and CPUs; fast only "
        "on CPUs with native bf16)",
        choices=MIXED_PRECISION,
        resumable=True,
    )
    sync_bn: bool = _opt(
        False,
        "synchronise BatchNorm statistics across processes (SyncBatchNorm; PyTorch supports "
        "it on GPUs only)",
    )


@dataclass(frozen=True)
class OutputOptions:
    """What is written, where, and where it is published."""

    out: str | None = _opt(
        None,
        f"output folder: the best model (a save_pretrained folder), {LAST_DIR}/ (the last "
        f"epoch's model), {LOG_NAME} and {CHECKPOINT_NAME} (to --resume from); required "
        "unless --resume",
    )
    select_by: str = _opt(
        "dice",
        "which epoch is saved as the best model: dice (highest validation Dice), rand (lowest "
        "validation adapted Rand error: cells that merge or split) or rand-thinned (the same "
        "after border thinning, as the ISBI 2012 challenge ranks); without validation data, "
        "the lowest training loss",
        choices=SELECT_BY,
    )
    select_threshold: bool = _opt(
        False,
        "after training, make the threshold with the lowest validation adapted Rand error "
        "(cells as 4-connected components: for touching objects, as in EM) the model's "
        "recommended threshold, which the app and `unet-hub predict` use",
        resumable=True,
    )
    fp16_weights: bool = _opt(
        False,
        "store the saved models' weights as float16 (half the file; they compute in float32 "
        "after loading); the checkpoint stays float32",
        resumable=True,
    )
    card_note: tuple[str, ...] | None = _opt(
        None,
        "sentences for the model card, e.g. what the mask values mean: 'mask 255 = cell "
        "interior, 0 = membrane'",
        resumable=True,
    )
    push_to_hub: str | None = _opt(
        None,
        "after training, publish the best model to this Hugging Face Hub repo (user/name); "
        "the token comes from HF_TOKEN or `hf auth login`",
        resumable=True,
    )
    hub_private: bool = _opt(False, "create the --push-to-hub repo as private", resumable=True)


#: The groups in the order ``--help`` shows them: (TrainConfig attribute, title).
GROUPS = (
    ("data", "data"),
    ("model", "model"),
    ("augment", "augmentation"),
    ("loss", "loss"),
    ("optim", "optimiser"),
    ("schedule", "schedule and budget"),
    ("run", "run"),
    ("system", "system"),
    ("output", "output and publishing"),
)


@dataclass(frozen=True)
class TrainConfig:
    """A training run's options, one group per concern."""

    data: DataOptions = field(default_factory=DataOptions)
    model: UNetConfig = field(default_factory=UNetConfig)
    augment: AugmentOptions = field(default_factory=AugmentOptions)
    loss: LossOptions = field(default_factory=LossOptions)
    optim: OptimOptions = field(default_factory=OptimOptions)
    schedule: ScheduleOptions = field(default_factory=ScheduleOptions)
    run: RunOptions = field(default_factory=RunOptions)
    system: SystemOptions = field(default_factory=SystemOptions)
    output: OutputOptions = field(default_factory=OutputOptions)

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None = None, **more: Any) -> TrainConfig:
        """A config from options by their flat names (``lr``, ``base_channels``...), as
        the command line and checkpoints give them; the others keep their defaults."""
        given = {**(options or {}), **more}
        unknown = sorted(set(given) - set(OPTIONS))
        if unknown:
            raise ConfigError(f"unknown training options {unknown}")
        groups = {}
        for attr, group_cls in _GROUP_CLASSES.items():
            values = {name: normalised(name, given[name]) for name in _names(attr) if name in given}
            groups[attr] = group_cls(**values)
        return cls(**groups)

    def options(self) -> dict[str, Any]:
        """Every option by its flat name, as JSON values (what a checkpoint stores)."""
        flat = {}
        for attr, _ in GROUPS:
            group = getattr(self, attr)
            for name in _names(attr):
                value = getattr(group, name)
                flat[name] = _lists(value)
        return flat

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some options (by flat name) changed."""
        return TrainConfig.from_options(self.options() | changes)

    def recipe(self) -> str:
        """One line describing the optimisation recipe, for logs and model cards."""
        o, s, loss = self.optim, self.schedule, self.loss
        text = (
            describe_optimizer(o.optimizer, o.lr, o.weight_decay, o.momentum)
            + describe_schedule(s.lr_schedule)
            + ", "
            + describe_loss(
                loss.loss, self.model.n_classes, loss.w0, loss.border_sigma, loss.class_balance
            )
            + f", {describe_augment(self.augment.augment, self.augment.params())}"
            + f", batch size {o.batch_size}"
        )
        if loss.teacher:
            teacher = Path(loss.teacher).name if Path(loss.teacher).exists() else loss.teacher
            text += f", distilled from {teacher} (weight {loss.distill_weight:g})"
        if o.ema:
            text += f", weights averaged (EMA decay {o.ema:g})"
        if s.samples_per_epoch:
            text += f", {s.samples_per_epoch} samples per epoch"
        if s.max_minutes:
            text += f", {s.max_minutes:g}-minute budget"
        return text


@dataclass(frozen=True)
class Option:
    """One command-line option: its flat name, group, type, default and help."""

    name: str
    group: str
    type: Any
    default: Any
    help: str
    resumable: bool
    choices: tuple[str, ...] | None


def iter_options() -> Iterator[Option]:
    """Every training option, group by group."""
    yield from OPTIONS.values()


def normalised(name: str, value: Any) -> Any:
    """An option's value in one form: lists (JSON, argparse) as tuples, old spellings of
    values as their new names."""
    value = _tuples(value)
    return RENAMED_VALUES.get(name, {}).get(value, value)


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _lists(value: Any) -> Any:
    return [_lists(v) for v in value] if isinstance(value, tuple) else value


def _names(attr: str) -> tuple[str, ...]:
    return MODEL_OPTIONS if attr == "model" else tuple(_GROUP_FIELDS[attr])


_GROUP_CLASSES = {f.name: f.default_factory for f in dataclasses.fields(TrainConfig)}
_GROUP_FIELDS = {
    attr: {f.name: f for f in dataclasses.fields(group_cls)}
    for attr, group_cls in _GROUP_CLASSES.items()
}


def _build_options() -> dict[str, Option]:
    options = {}
    for attr, _ in GROUPS:
        hints = typing.get_type_hints(_GROUP_CLASSES[attr])
        for name in _names(attr):
            f = _GROUP_FIELDS[attr][name]
            meta = f.metadata
            choices = meta.get("choices") or MODEL_CHOICES.get(name)
            options[name] = Option(
                name, attr, hints[name], f.default, meta["help"], meta.get("resumable", False),
                tuple(choices) if choices else None,
            )  # fmt: skip
    return options


OPTIONS = _build_options()
