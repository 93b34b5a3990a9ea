"""Augmentations applied identically to an image and its mask (NumPy and OpenCV).

Random choices come from torch's generator, which ``--seed`` seeds and which each
DataLoader worker gets its own seed for, so runs are reproducible.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

#: cv2.flip codes: 1 mirrors left-right, 0 up-down, -1 both; None leaves the pair as is.
FLIP_CODES = (-1, 0, 1, None)


class RandomFlip:
    """The seed recipe's augmentation: one of the three flips or none, equally likely."""

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        code = FLIP_CODES[int(torch.randint(len(FLIP_CODES), ()))]
        if code is None:
            return image, mask
        return cv2.flip(image, code), cv2.flip(mask, code)
