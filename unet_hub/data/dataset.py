"""The training data set: image/mask pairs read, prepared and augmented on the fly."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from unet_hub.data.augment import Augment
from unet_hub.data.images import (
    DEFAULT_MAX_PIXELS,
    read_image,
    resize,
    scaling_statistics,
    to_channels,
    to_model_input,
)
from unet_hub.data.mask_values import MaskValues
from unet_hub.data.masks import mask_to_target, read_mask
from unet_hub.data.pairs import Pair
from unet_hub.errors import DataError

#: Computes a per-pixel loss weight map from a prepared mask (``--loss weighted``).
WeightMap = Callable[[np.ndarray], np.ndarray]


class SegmentationDataset(Dataset):
    """Image/mask pairs, decoded once and kept in memory, served as tensors.

    Every pair is read when the data set is built, so an unreadable file, a size
    mismatch or a mask whose values do not fit ``n_classes`` is reported at once, naming
    the files, not later inside a worker. Masks go through the mask-value policy
    (``unet_hub.data.images.prepare_mask``) as they are read: a converted mask (anti-aliased,
    JPEG) gives one ``MaskWarning`` naming the file, once, not every epoch. Images and
    masks of more than ``max_pixels`` pixels are refused (None: no limit).
    Items are ``(image C×H×W float32 in [0, 1], target)``; see ``mask_to_target``.

    With ``weight_map``, each mask's loss weight map is computed once, after resizing,
    and items are ``(image, target, weights H×W)``. Augmentation resamples the map with
    the mask's geometry (linearly) rather than recomputing it, which is slow (see
    benchmarks/results/augment_speed.json): flips, rotations and shifts keep the distances
    between cells, and the elastic field is so smooth that it barely alters them.
    """

    def __init__(
        self,
        pairs: list[Pair],
        n_channels: int = 1,
        n_classes: int = 1,
        image_size: int | None = None,
        augment: Augment | None = None,
        input_scaling: str = "dtype",
        weight_map: WeightMap | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        mask_values: MaskValues | None = None,
    ):
        if not pairs:
            raise DataError("no image/mask pairs to load")
        self.pairs = pairs
        self.n_channels, self.n_classes = n_channels, n_classes
        self.augment, self.input_scaling = augment, input_scaling
        self.images: list[np.ndarray] = []
        self.masks: list[np.ndarray] = []
        # per-image scalings are measured on the whole image, as inference does, and
        # applied to its crops
        self.statistics: list[tuple[float, float] | None] = []
        self.weights: list[np.ndarray] | None = [] if weight_map else None
        for image_path, mask_path in pairs:
            image = read_image(image_path, max_pixels)
            mask = read_mask(mask_path, n_classes, max_pixels, mask_values)
            if image.shape[:2] != mask.shape[:2]:
                raise DataError(
                    f"{image_path} is {image.shape[1]}×{image.shape[0]} but its mask "
                    f"{mask_path} is {mask.shape[1]}×{mask.shape[0]}; they must match"
                )
            if image_size:
                image, mask = resize(image, image_size), resize(mask, image_size, nearest=True)
            self.images.append(image)
            self.masks.append(mask)
            self.statistics.append(
                scaling_statistics(to_channels(image, n_channels), input_scaling)
            )
            if weight_map is not None:
                self.weights.append(weight_map(self.labels(mask)))

    def __len__(self) -> int:
        return len(self.pairs)

    def sizes(self) -> set[tuple[int, int]]:
        """The distinct (height, width) of the stored images."""
        return {image.shape[:2] for image in self.images}

    def labels(self, mask: np.ndarray) -> np.ndarray:
        """A mask's class id per pixel (0/1 for one class), as the loss sees it."""
        target = mask_to_target(mask, self.n_classes)
        return (target[0] > 0).astype(np.uint8) if self.n_classes == 1 else target

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        arrays = (self.images[index], self.masks[index])
        if self.weights is not None:
            arrays += (self.weights[index],)
        if self.augment is not None:
            arrays = self.augment(*arrays)
        image, mask, *weights = arrays
        x = to_model_input(image, self.n_channels, self.input_scaling, self.statistics[index])
        y = mask_to_target(mask, self.n_classes)
        extra = tuple(torch.from_numpy(np.ascontiguousarray(w)) for w in weights)
        return torch.from_numpy(x), torch.from_numpy(np.ascontiguousarray(y)), *extra
