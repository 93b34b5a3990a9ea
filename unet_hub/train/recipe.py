"""``--recipe auto``: a training recipe chosen from the data.

``profile_data`` reads the training images and masks (sizes, channels, bit depths,
intensity statistics, foreground fraction, which way the contrast runs); ``choose``
turns that profile into training options, each with the reason it was chosen; options
the user gave win over the choice. The seed recipe stays the default of ``train``; this
only runs when ``--recipe auto`` is given (the command line calls ``auto_config``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from unet_hub.data.images import image_pixels, read_image, to_channels
from unet_hub.data.masks import mask_to_target, read_mask
from unet_hub.data.pairs import Pair
from unet_hub.infer.segment import resolve_device
from unet_hub.train.options import TrainConfig
from unet_hub.train.setup import split_pairs

#: At most this many training pairs are read to profile the data (evenly spaced).
MAX_PROFILED = 64
#: Per-image intensity statistics (in [0, 1] of each image's dtype) that differ across the
#: images by more than this make the data "mixed": a global scaling then fits none.
INTENSITY_SPREAD = 0.15
#: Pixels per optimisation step (crop² × batch) the recipe aims at.
PIXELS_PER_STEP = 4 * 256 * 256
LARGEST_CROP = 256
MAX_BATCH = 8
#: Optimisation steps per epoch (then validation): often enough to follow the run.
STEPS_PER_EPOCH = 16
#: ... and at least this many per validation megapixel: validating a megapixel (the
#: network over it, then Dice, Rand and VI) costs about as much as 2-3 training steps
#: on a CPU, so an epoch then spends about four fifths of its time training.
STEPS_PER_VALIDATION_MEGAPIXEL = 10
#: Foreground fractions outside [IMBALANCED, 1 - IMBALANCED] add a Dice term to the loss.
IMBALANCED = 0.25
#: The time budget: minutes per training megapixel, within [MIN_MINUTES, MAX_MINUTES].
MINUTES_PER_MEGAPIXEL = 1.0
MIN_MINUTES, MAX_MINUTES = 2.0, 8.0


@dataclass
class ImageFacts:
    """What the recipe needs to know of one training image and its mask."""

    height: int
    width: int
    channels: int  # 1 = gray, 3 = colour (an alpha channel is not counted)
    dtype: str
    low: float  # 0.5th percentile, in [0, 1] of the dtype's range
    high: float  # 99.5th percentile, likewise
    median: float
    foreground: float  # fraction of mask pixels that are not background
    contrast: float  # mean foreground minus mean background intensity (sign: polarity)


@dataclass
class DataProfile:
    """The training data as the recipe sees it."""

    images: list[ImageFacts]
    n_train: int  # training pairs (profiled or not)
    val_megapixels: float = 0.0  # of all the validation images

    @property
    def min_side(self) -> int:
        return min(min(f.height, f.width) for f in self.images)

    @property
    def sizes(self) -> set[tuple[int, int]]:
        return {(f.height, f.width) for f in self.images}

    @property
    def channel_counts(self) -> set[int]:
        return {f.channels for f in self.images}

    @property
    def dtypes(self) -> set[str]:
        return {f.dtype for f in self.images}

    @property
    def foreground(self) -> float:
        return float(np.mean([f.foreground for f in self.images]))

    def _lowest(self, name: str) -> float:
        return min(getattr(f, name) for f in self.images)

    def _highest(self, name: str) -> float:
        return max(getattr(f, name) for f in self.images)

    def spread(self, name: str) -> float:
        return float(self._highest(name) - self._lowest(name))

    @property
    def polarities(self) -> set[str]:
        return {"brighter" if f.contrast >= 0 else "darker" for f in self.images}

    @property
    def megapixels(self) -> float:
        mean = np.mean([f.height * f.width for f in self.images])
        return float(mean * self.n_train / 1e6)

    def mixed_reasons(self) -> list[str]:
        """Why one global pixel scaling cannot fit every image (empty: it can)."""
        reasons = []
        if len(self.dtypes) > 1:
            reasons.append(f"bit depths differ ({', '.join(sorted(self.dtypes))})")
        if len(self.channel_counts) > 1:
            reasons.append("gray and colour images are mixed")
        for name, what in (("median", "median"), ("high", "99.5th percentile")):
            if self.spread(name) > INTENSITY_SPREAD:
                reasons.append(
                    f"the images' {what} intensities span {self.spread(name):.0%} of the range"
                )
        if len(self.polarities) > 1:
            reasons.append(
                "the foreground is brighter than the background in some images, darker in others"
            )
        return reasons

    def describe(self) -> str:
        """One paragraph of what the profile found."""
        sides = sorted({s for f in self.images for s in (f.height, f.width)})
        return (
            f"{self.n_train} training images ({len(self.images)} profiled): "
            f"{len(self.sizes)} size(s), sides {sides[0]}-{sides[-1]} px; "
            f"channels {sorted(self.channel_counts)}; dtypes {sorted(self.dtypes)}; "
            f"median intensity {self._lowest('median'):.2f}-"
            f"{self._highest('median'):.2f} of the range; foreground "
            f"{self.foreground:.0%} of the mask pixels ({self._lowest('foreground'):.0%}-"
            f"{self._highest('foreground'):.0%}); foreground "
            f"{' or '.join(sorted(self.polarities))} than the background"
        )


@dataclass
class Choice:
    """The options the recipe chose, and why (one line per decision)."""

    options: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # options the user gave, not changed

    def set(self, given: dict[str, Any], reason: str, **options: Any) -> None:
        """Choose ``options`` for ``reason``, except those the user gave."""
        free = {k: v for k, v in options.items() if k not in given}
        self.kept += [k for k in options if k in given]
        if not free:
            return
        self.options.update(free)
        chosen = ", ".join(f"--{k.replace('_', '-')} {_shown(v)}" for k, v in free.items())
        self.reasons.append(f"{chosen}: {reason}")

    def summary(self) -> str:
        """What ``--recipe auto`` chose, one line per decision, for the console and card."""
        lines = [f"--recipe auto chose {line}" for line in self.reasons]
        if self.kept:
            flags = ", ".join(sorted({"--" + k.replace("_", "-") for k in self.kept}))
            lines.append(f"--recipe auto kept the given {flags}")
        return "\n".join(lines)


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def image_facts(pair: Pair, n_classes: int) -> ImageFacts:
    """Read one image and its mask and measure what the recipe needs."""
    image = read_image(pair[0])
    mask = read_mask(pair[1], n_classes)
    channels = 1 if image.ndim == 2 or image.shape[2] in (1, 2) else 3
    gray = to_channels(image, 1)[:, :, 0].astype(np.float64)
    if np.issubdtype(image.dtype, np.integer):
        gray /= np.iinfo(image.dtype).max
    target = mask_to_target(mask, n_classes)
    foreground = target[0] > 0.5 if n_classes == 1 else target > 0
    low, median, high = np.percentile(gray, (0.5, 50, 99.5))
    inside = gray[foreground].mean() if foreground.any() else 0.0
    outside = gray[~foreground].mean() if (~foreground).any() else 0.0
    return ImageFacts(
        height=image.shape[0],
        width=image.shape[1],
        channels=channels,
        dtype=str(image.dtype),
        low=float(low),
        high=float(high),
        median=float(median),
        foreground=float(foreground.mean()),
        contrast=float(inside - outside),
    )


def profile_data(pairs: list[Pair], n_classes: int) -> DataProfile:
    """Profile up to ``MAX_PROFILED`` of the training pairs, evenly spaced."""
    step = max(1, math.ceil(len(pairs) / MAX_PROFILED))
    return DataProfile([image_facts(p, n_classes) for p in pairs[::step]], len(pairs))


def choose(profile: DataProfile, given: dict[str, Any], device: str = "cpu") -> Choice:
    """The options for data like ``profile``, each with its reason; ``given`` (options
    by flat name) are left as they are."""
    choice = Choice()
    _choose_input(profile, given, choice)
    _choose_network(given, choice, device)
    _choose_sampling(profile, given, choice)
    _choose_optimisation(profile, given, choice)
    return choice


def _choose_input(profile: DataProfile, given: dict[str, Any], choice: Choice) -> None:
    if profile.channel_counts == {3}:
        choice.set(given, "every image is in colour", n_channels=3)
    elif 3 in profile.channel_counts:
        choice.set(
            given, "gray and colour images are mixed: colour is read as luminance", n_channels=1
        )
    mixed = profile.mixed_reasons()
    if mixed:
        choice.set(
            given,
            "; ".join(mixed) + ": each image is scaled by its own 0.5-99.5 percentiles, so "
            "bit depth, gain and offset no longer matter (and outlier pixels do not set the range)",
            input_scaling="percentile",
        )
    else:
        choice.set(
            given, "the images share one bit depth and intensity range", input_scaling="dtype"
        )


def _choose_network(given: dict[str, Any], choice: Choice, device: str) -> None:
    choice.set(
        given,
        "each image is normalised by its own statistics in training and prediction alike; "
        "BatchNorm's running statistics, pooled over different images at small batch "
        "sizes, fit none of them in eval mode",
        norm="instance",
    )
    if resolve_device(device).type == "cpu":
        choice.set(
            given,
            "training on a CPU: a narrower network takes many more steps in the budget",
            base_channels=16,
        )


def _choose_sampling(profile: DataProfile, given: dict[str, Any], choice: Choice) -> None:
    crop = min(LARGEST_CROP, profile.min_side // 16 * 16)
    if crop < 16:
        choice.set(
            given,
            f"the smallest image side is {profile.min_side} px, too small to crop",
            batch_size=1,
        )
        return
    batch = int(max(1, min(MAX_BATCH, PIXELS_PER_STEP // (crop * crop))))
    sizes = "images of several sizes" if len(profile.sizes) > 1 else "the images"
    steps = max(STEPS_PER_EPOCH, math.ceil(STEPS_PER_VALIDATION_MEGAPIXEL * profile.val_megapixels))
    choice.set(
        given,
        f"random {crop}-px crops of {sizes} (the smallest side is {profile.min_side} px) "
        f"let {batch} images share a step; prediction still sees whole images; "
        f"{steps} steps per epoch, so that validating {profile.val_megapixels:.1f} "
        "megapixels takes a small part of each epoch",
        crop_size=crop,
        batch_size=batch,
        samples_per_epoch=max(profile.n_train, steps * batch),
    )


def _choose_optimisation(profile: DataProfile, given: dict[str, Any], choice: Choice) -> None:
    fg = profile.foreground
    if fg < IMBALANCED or fg > 1 - IMBALANCED:
        why = (
            f"the foreground is {fg:.0%} of the mask pixels: a Dice term keeps the rarer "
            "class from being ignored"
        )
        choice.set(given, why, loss="bce+dice")
    else:
        choice.set(
            given, f"the foreground is {fg:.0%} of the mask pixels, balanced enough", loss="bce"
        )
    choice.set(
        given,
        "a robust optimiser at a high learning rate that decays to 0 by the end of the budget",
        optimizer="adamw",
        lr=2e-3,
        weight_decay=1e-4,
        lr_schedule="cosine",
    )
    choice.set(
        given,
        "rotations, elastic deformation and gray-value changes stretch few images further",
        augment="paper",
    )
    minutes = min(MAX_MINUTES, max(MIN_MINUTES, MINUTES_PER_MEGAPIXEL * profile.megapixels))
    choice.set(
        given,
        f"{profile.megapixels:.1f} training megapixels: the run stops at the budget "
        "(the epochs are an upper limit)",
        max_minutes=round(minutes, 1),
        epochs=1000,
    )


def auto_config(given: dict[str, Any]) -> tuple[TrainConfig, Choice, DataProfile]:
    """The config of ``--recipe auto`` for the options the user ``given`` (by flat name,
    ``data`` among them): the chosen options, the given ones over them; the choice's
    summary is added to the model card's notes."""
    base = TrainConfig.from_options(given)
    train_pairs, val_pairs = split_pairs(base.data)
    profile = profile_data(train_pairs, base.model.n_classes)
    profile.val_megapixels = sum(image_pixels(image) for image, _ in val_pairs) / 1e6
    device = base.system.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    choice = choose(profile, given, device)
    notes = [*(base.output.card_note or ()), *choice.summary().splitlines()]
    cfg = TrainConfig.from_options({**choice.options, **given, "card_note": notes})
    return cfg, choice, profile
