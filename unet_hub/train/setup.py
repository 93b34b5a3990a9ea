"""What a training run is built from: its data sets, its Accelerate engine, its memory
layout, and its seeds (every epoch's randomness depends only on seed, epoch and process,
so a resumed run replays exactly)."""

from __future__ import annotations

import dataclasses
import functools
import random

import numpy as np
import torch
from accelerate import Accelerator
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from unet_hub.data.augment import build_augment
from unet_hub.data.dataset import SegmentationDataset
from unet_hub.data.mask_values import discover_mask_values
from unet_hub.data.pairs import Pair, find_pairs, select_stems, split_validation
from unet_hub.errors import ConfigError, DataError
from unet_hub.infer.segment import resolve_device
from unet_hub.model.unet import UNet
from unet_hub.model.weights import transfer_weights
from unet_hub.train.losses import unet_weight_map
from unet_hub.train.options import MIXED_PRECISION, DataOptions, TrainConfig


def load_datasets(
    cfg: TrainConfig,
) -> tuple[TrainConfig, SegmentationDataset, SegmentationDataset | None]:
    """The training set and the validation set (None when there is none), and ``cfg``
    with the masks' values (``--mask-values``) found when several classes are drawn as
    grey levels or colours."""
    data = cfg.data
    train_pairs, val_pairs = split_pairs(data)
    if cfg.model.n_classes > 1 and cfg.model.mask_values is None:
        masks = [mask for _, mask in train_pairs + val_pairs]
        found = discover_mask_values(masks, cfg.model.n_classes)
        if found is not None:
            cfg = dataclasses.replace(cfg, model=cfg.model.replace(mask_values=found))
    weight_map = None
    if cfg.loss.loss == "weighted":
        weight_map = functools.partial(
            unet_weight_map,
            n_labels=max(2, cfg.model.n_classes),
            w0=cfg.loss.w0,
            sigma=cfg.loss.border_sigma,
            balance=cfg.loss.class_balance,
        )
    common = {
        "n_channels": cfg.model.n_channels,
        "n_classes": cfg.model.n_classes,
        "image_size": data.image_size,
        "input_scaling": cfg.model.input_scaling,
        "weight_map": weight_map,
        "mask_values": cfg.model.mask_values,
    }
    augment = build_augment(cfg.augment.augment, cfg.augment.params())
    train_set = SegmentationDataset(train_pairs, augment=augment, **common)
    val_set = SegmentationDataset(val_pairs, **common) if val_pairs else None
    batched = cfg.optim.batch_size > 1 and not cfg.augment.crop_size
    if batched and len(train_set.sizes()) > 1:
        raise DataError(
            f"{data.data}: images of different sizes {sorted(train_set.sizes())} cannot be "
            "batched; pass --image-size, --crop-size or --batch-size 1"
        )
    return cfg, train_set, val_set


def split_pairs(data: DataOptions) -> tuple[list[Pair], list[Pair]]:
    """The training and the validation image/mask pairs, as the data options say."""
    pairs = find_pairs(data.data)
    if data.val_data:
        return pairs, find_pairs(data.val_data)
    if data.val_slices:
        val_pairs, train_pairs = select_stems(pairs, data.val_slices)
        if not train_pairs:
            raise DataError(f"--val-slices {data.val_slices} holds out every file; keep some")
        return train_pairs, val_pairs
    return split_validation(pairs, data.val_fraction)


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    """The Accelerate engine for ``cfg``: one process, or one per ``accelerate launch`` /
    ``torchrun`` worker (DDP: gloo on CPUs, NCCL on GPUs)."""
    system = cfg.system
    if system.mixed_precision not in MIXED_PRECISION:
        raise ConfigError(f"mixed_precision must be one of {MIXED_PRECISION}")
    if cfg.optim.grad_accum < 1:
        raise ConfigError(f"--grad-accum must be 1 or more, got {cfg.optim.grad_accum}")
    device = resolve_device(system.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"--device {system.device}: this machine has no CUDA GPU; use --device cpu"
        )
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device.index)
    try:
        return Accelerator(
            cpu=device.type == "cpu",
            mixed_precision=system.mixed_precision,
            gradient_accumulation_steps=cfg.optim.grad_accum,
        )
    except (ValueError, RuntimeError) as e:
        raise ConfigError(
            f"--mixed-precision {system.mixed_precision} on {device.type}: {e}"
        ) from None


def memory_format(cfg: TrainConfig, accelerator: Accelerator) -> torch.memory_format:
    chosen = cfg.system.memory_format
    channels_last = chosen == "channels_last" or (
        chosen == "auto" and accelerator.device.type == "cpu"
    )
    return torch.channels_last if channels_last else torch.contiguous_format


def sync_batchnorm(model: UNet, accelerator: Accelerator) -> UNet:
    if accelerator.num_processes > 1 and accelerator.device.type == "cpu":
        raise ConfigError(
            "--sync-bn: PyTorch's SyncBatchNorm runs on GPUs only; on CPUs drop --sync-bn "
            "(each process then normalises over its own batch)"
        )
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def seed_epoch(seed: int, epoch: int, rank: int, generator: torch.Generator) -> None:
    """Seed one epoch on one process: the sample order (shared by all processes) and the
    augmentation (each process its own). Every epoch's randomness then depends only on
    (seed, epoch, process), so a run resumed at an epoch boundary replays exactly."""
    generator.manual_seed(_derived_seed(seed, epoch))
    torch.manual_seed(_derived_seed(seed, epoch, rank + 1))


def _derived_seed(*entropy: int) -> int:
    return int(np.random.SeedSequence(list(entropy)).generate_state(1, np.uint64)[0])


def start_from_model(model: UNet, cfg: TrainConfig) -> list[str]:
    """``--init-from``: load that model's weights into ``model`` (strictly; see
    ``transfer_weights``) and say which layers start afresh."""
    name, revision = cfg.run.init_from, cfg.run.init_revision
    source = UNet.from_pretrained(name, revision=revision)
    fresh = transfer_weights(model, source, f"--init-from {name}")
    differs = {
        "n_classes": "classes",
        "n_channels": "input channels",
    }
    notes = []
    for field, what in differs.items():
        theirs, ours = source.config[field], model.config[field]
        if theirs != ours:
            notes.append(f"{theirs} {what} there, {ours} here")
    if fresh:
        return [f"--init-from {name}: {', '.join(notes)}: {' and '.join(fresh)} start(s) afresh"]
    return []


def averaged_model(model: torch.nn.Module, decay: float) -> AveragedModel:
    """``--ema``: an exponential moving average of ``model``'s weights and BatchNorm
    statistics, updated after every optimisation step."""
    if not 0.0 < decay < 1.0:
        raise ConfigError(f"--ema must lie between 0 and 1 (e.g. 0.99), got {decay}")
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
