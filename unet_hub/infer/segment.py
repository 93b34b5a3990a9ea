"""Inference: a model and an image in, per-pixel probabilities out.

``segment`` accepts images of any size. Up to ``tile_size`` pixels a side, an image goes
through the network in one pass; larger images use the overlap-tile strategy of the U-Net
paper (Ronneberger et al., 2015, section 2): the image is mirrored at its borders, cut
into overlapping tiles that are run in batches, and only each tile's centre, where the
network saw its full context, is kept. Neighbouring centres cross-fade over a short
linear ramp and the result is written into one output buffer, so memory grows with the
image (input plus output) and not with the number of tiles.

Why the default overlap is 256 px: a pixel's output depends on inputs up to
``RECEPTIVE_FIELD_RADIUS`` px away (107 px with transposed-convolution up-sampling, 122 px
with bilinear up-sampling; measured by back-propagating from one output pixel at each of
the 16 pooling phases). A tile's outer band of that width sees the tile's zero padding
instead of the real neighbours, so it is discarded: 256 = 2 x 112 px discarded + a 32 px
cross-fade. With that, tiled inference of a shift-equivariant model (``bilinear=False``)
reproduces whole-image inference to float rounding. The default ``bilinear=True`` model
up-samples with ``align_corners=True``, whose sampling grid depends on the input size,
so no tiling reproduces its whole-image output exactly; the cross-fade keeps the
small tile-to-tile differences from showing as seams.

The network runs through a runner from ``unet_hub.infer.backends`` (by default ONNX Runtime when
installed, else a BatchNorm-folded copy of the model), prepared once per model and checked
against the model itself; batching tiles did not speed up the CPU (benchmarks/bench.py),
so ``batch_size`` stays 1 by default.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch

from unet_hub.data.images import to_model_input
from unet_hub.errors import ImageReadError
from unet_hub.infer.backends import prepare
from unet_hub.infer.runners import Runner, evaluating, probabilities_from_logits
from unet_hub.infer.tiling import (
    ALIGN,
    DEFAULT_OVERLAP,
    DEFAULT_TILE_SIZE,
    AxisPlan,
    batches_of_tiles,
    mirror_indices,
    plan_tiles,
    round_up,
)
from unet_hub.model.unet import UNet

DEFAULT_BATCH_SIZE = 1
#: (vertical, horizontal) flips averaged by test-time augmentation.
_FLIPS = ((False, False), (False, True), (True, False), (True, True))


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU; anything else is passed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# -- tiling geometry (one axis at a time: tiles and blend weights are separable) --------


# -- running the network -----------------------------------------------------------------


def _accumulate_tiles(
    runner: Runner,
    x: np.ndarray,
    out: np.ndarray,
    rows: AxisPlan,
    cols: AxisPlan,
    batch_size: int,
    scale: float,
) -> None:
    """Add ``scale`` x the blended probabilities of the C×H×W input ``x`` into ``out``.

    ``x`` and ``out`` may be flipped views: the tiles are cut from, and written back to,
    whatever orientation they present.
    """
    row_index = [mirror_indices(rows.length, s, s + rows.tile) for s in rows.starts]
    col_index = [mirror_indices(cols.length, s, s + cols.tile) for s in cols.starts]
    for batch in batches_of_tiles(rows, cols, batch_size):
        tiles = np.stack([x[:, row_index[i][:, None], col_index[j]] for i, j in batch])
        probs = probabilities_from_logits(runner(tiles))
        for (i, j), p in zip(batch, probs, strict=True):
            (y0, y1), (x0, x1) = rows.spans[i], cols.spans[j]
            kept = p[:, y0:y1, x0:x1].float().cpu().numpy()
            weight = (scale * rows.weights[i])[:, None] * cols.weights[j]
            top, left = rows.starts[i] + y0, cols.starts[j] + x0
            out[:, top : top + y1 - y0, left : left + x1 - x0] += kept * weight


def _check_arguments(tile_size: int | None, overlap: int, batch_size: int) -> int | None:
    """Validate the tiling arguments; return the tile size rounded up to 16 px."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if overlap < 0:
        raise ValueError(f"overlap must be 0 or more, got {overlap}")
    if tile_size is None:
        return None
    tile = round_up(max(tile_size, 1))
    if tile - overlap < ALIGN:
        raise ValueError(
            f"overlap {overlap} leaves no room in a {tile}-px tile; pass a larger tile_size "
            f"or an overlap of at most {tile - ALIGN}"
        )
    return tile


def segment(
    model: UNet | Runner,
    image: np.ndarray,
    *,
    tile_size: int | None = DEFAULT_TILE_SIZE,
    overlap: int = DEFAULT_OVERLAP,
    tta: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    backend: str = "auto",
) -> np.ndarray:
    """Per-pixel probabilities for an H×W or H×W×C image of any size and dtype.

    The image is converted to what ``model.config`` says (channels, pixel scaling).
    Images with a side over ``tile_size`` px are processed in overlapping tiles of that
    size (rounded up to 16), ``batch_size`` at a time; ``tile_size=None`` runs the whole
    image in one pass. ``overlap`` is the number of pixels neighbouring tiles share (see
    the module doc for why 256). ``tta`` averages the probabilities over the image and
    its horizontal, vertical and double flips.

    ``backend`` picks how the network runs (``unet_hub.infer.backends``): "auto" (the fastest
    that reproduces the model to 1e-4, prepared once per model), "eager", "fused" or
    "onnx". ``model`` may also be a runner, e.g. ``runners.load_onnx("model.onnx")``.

    Returns float32 on the CPU: H×W for one class, classes×H×W for several.
    """
    tile = _check_arguments(tile_size, overlap, batch_size)
    image = np.asarray(image)
    if image.ndim < 2 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageReadError(f"expected a non-empty H×W or H×W×C image, got shape {image.shape}")
    config = model.config
    x = to_model_input(image, config["n_channels"], config["input_scaling"])
    height, width = x.shape[1:]
    rows, cols = plan_tiles(height, width, tile, overlap)
    out = np.zeros((config["n_classes"], height, width), dtype=np.float32)
    flips = _FLIPS if tta else _FLIPS[:1]
    runner = prepare(model, backend)
    # The eager runner is the model itself: it must run in eval mode.
    eval_mode = evaluating(model) if isinstance(model, torch.nn.Module) else nullcontext()
    with eval_mode, torch.inference_mode():
        for vertical, horizontal in flips:
            # A flip is a view of input and output alike, so it is undone on writing.
            view = np.s_[:, :: -1 if vertical else 1, :: -1 if horizontal else 1]
            _accumulate_tiles(runner, x[view], out[view], rows, cols, batch_size, 1 / len(flips))
    return out[0] if config["n_classes"] == 1 else out


def mask_from_probabilities(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """A uint8 mask from ``segment``'s output: 255 where an H×W foreground probability
    exceeds ``threshold``, or the argmax class id of a classes×H×W array (no threshold)."""
    if probabilities.ndim == 3:
        return probabilities.argmax(axis=0).astype(np.uint8)
    return np.where(probabilities > threshold, 255, 0).astype(np.uint8)


def predict_mask(
    model: UNet | Runner,
    image: np.ndarray,
    threshold: float | None = None,
    *,
    backend: str = "auto",
) -> np.ndarray:
    """A uint8 mask: 255 where the foreground probability exceeds ``threshold`` (default:
    the model's recommended one) for one class, the class id of the argmax for several."""
    if threshold is None:
        threshold = model.config["threshold"]
    return mask_from_probabilities(segment(model, image, backend=backend), threshold)
