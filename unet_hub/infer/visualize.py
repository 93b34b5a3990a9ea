"""Pictures of a segmentation for people: overlays and probability maps (NumPy/OpenCV)."""

from __future__ import annotations

import cv2
import numpy as np

from unet_hub.data.images import to_model_input

#: Overlay colours (RGB) for classes 1, 2, ...; class 0 of a multi-class model is left clear.
PALETTE = np.array(
    [[255, 0, 200], [0, 200, 255], [255, 200, 0], [0, 255, 120], [255, 80, 80], [150, 100, 255]],
    dtype=np.uint8,
)
#: How strongly a class colour covers the image.
ALPHA = 0.35


def display_image(image: np.ndarray, n_channels: int, scaling: str = "dtype") -> np.ndarray:
    """The image as the model sees it (after channel conversion and scaling), as uint8 RGB."""
    # z-scores are unbounded; their min-max view is the same picture (an affine map)
    x = to_model_input(image, n_channels, "minmax" if scaling == "zscore" else scaling)[:3]
    rgb = np.repeat(x, 3, axis=0) if x.shape[0] == 1 else x
    return np.round(rgb.transpose(1, 2, 0) * 255).astype(np.uint8)


def overlay(rgb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Tint each labelled pixel (1, 2, ... in ``labels``) with its class colour."""
    out = rgb.astype(np.float32)
    for class_id in range(1, int(labels.max(initial=0)) + 1):
        where = labels == class_id
        colour = PALETTE[(class_id - 1) % len(PALETTE)].astype(np.float32)
        out[where] = (1 - ALPHA) * out[where] + ALPHA * colour
    return np.round(out).astype(np.uint8)


def probability_map(probabilities: np.ndarray) -> np.ndarray:
    """An H×W probability array in [0, 1] as a viridis-coloured RGB image (dark = 0, yellow = 1)."""
    grey = np.round(np.clip(probabilities, 0.0, 1.0) * 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(grey, cv2.COLORMAP_VIRIDIS), cv2.COLOR_BGR2RGB)


def colour_name(class_id: int) -> str:
    """A hex code for the overlay colour of a class, for legends."""
    r, g, b = PALETTE[(class_id - 1) % len(PALETTE)]
    return f"#{r:02x}{g:02x}{b:02x}"


#: How strongly an object's colour covers the image (its outline is drawn fully).
INSTANCE_ALPHA = 0.45


def instance_colours(n: int) -> np.ndarray:
    """``n`` RGB colours, row i for object i + 1: hues a golden-ratio turn apart, so
    neighbouring ids (often neighbouring objects) never look alike."""
    hues = (np.arange(n) * 0.618033988749895) % 1.0
    hsv = np.stack([hues * 179, np.full(n, 200), np.full(n, 255)], axis=1)
    return cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2RGB)[0]


def instance_overlay(rgb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Tint each object of a label image (1, 2, ...; 0 = background) with its own colour
    and outline it, so touching objects stay apart."""
    from skimage.segmentation import find_boundaries

    out = rgb.astype(np.float32)
    colours = np.vstack([np.zeros((1, 3)), instance_colours(int(labels.max(initial=0)))])
    inside = labels > 0
    out[inside] = (1 - INSTANCE_ALPHA) * out[inside] + INSTANCE_ALPHA * colours[labels[inside]]
    edges = find_boundaries(labels, mode="inner") & inside
    out[edges] = colours[labels[edges]]
    return np.round(out).astype(np.uint8)
