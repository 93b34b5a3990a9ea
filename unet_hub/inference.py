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

The network runs through a runner from ``unet_hub.fastpath`` (by default ONNX Runtime when
installed, else a BatchNorm-folded copy of the model), prepared once per model and checked
against the model itself; batching tiles did not speed up the CPU (benchmarks/bench.py),
so ``batch_size`` stays 1 by default.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from .errors import ImageReadError
from .fastpath import Runner, evaluating, prepare, probabilities_from_logits
from .imaging import to_model_input
from .model import UNet

#: Every side the network sees is a multiple of this, so its four 2x poolings align.
ALIGN = 16
#: How far (px) an output pixel's inputs can lie, by up-sampling mode (see module doc).
RECEPTIVE_FIELD_RADIUS = {"transposed": 107, "bilinear": 122}
DEFAULT_TILE_SIZE = 1024
DEFAULT_OVERLAP = 256
DEFAULT_BATCH_SIZE = 1
#: Width (px) of the linear cross-fade between neighbouring tiles' kept centres.
_BLEND = 32
#: (vertical, horizontal) flips averaged by test-time augmentation.
_FLIPS = ((False, False), (False, True), (True, False), (True, True))


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU; anything else is passed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# -- tiling geometry (one axis at a time: tiles and blend weights are separable) --------


@dataclass(frozen=True)
class AxisPlan:
    """How one image axis is cut into tiles.

    ``starts[k]`` is the image coordinate of tile ``k``'s first pixel (negative where the
    tile reaches into the mirrored border). ``spans[k]`` is the range ``[lo, hi)`` of tile
    coordinates the tile contributes to and ``weights[k]`` their blend weights; over all
    tiles the weights add up to 1 at every image pixel.
    """

    length: int
    tile: int
    starts: tuple[int, ...]
    spans: tuple[tuple[int, int], ...]
    weights: tuple[np.ndarray, ...]


def round_up(n: int, multiple: int = ALIGN) -> int:
    """The smallest multiple of ``multiple`` that is at least ``n``."""
    return -(-n // multiple) * multiple


def blend_window(tile: int, context: int, blend: int) -> np.ndarray:
    """Weights over a tile: 0 on the outer ``context`` px of each end (they lack context),
    then a linear ramp over ``blend`` px up to 1. Neighbours ``tile - 2 * context - blend``
    apart have complementary ramps, so their weights add up to 1."""
    t = np.arange(tile)
    edge_distance = np.minimum(t, tile - 1 - t)
    if blend == 0:
        return (edge_distance >= context).astype(np.float64)
    return np.clip((edge_distance - context + 0.5) / blend, 0.0, 1.0)


def _normalised_plan(length: int, tile: int, starts: list[int], window: np.ndarray) -> AxisPlan:
    """Restrict ``window`` to the image for each tile and divide by the total weight, so
    pixels near the image border (covered by one tile's ramp only) still get weight 1."""
    total = np.zeros(length)
    for start in starts:
        lo, hi = max(0, -start), min(tile, length - start)
        total[start + lo : start + hi] += window[lo:hi]
    spans, weights = [], []
    for start in starts:
        lo, hi = max(0, -start), min(tile, length - start)
        nonzero = np.flatnonzero(window[lo:hi])
        lo, hi = lo + nonzero[0], lo + nonzero[-1] + 1
        spans.append((int(lo), int(hi)))
        weights.append((window[lo:hi] / total[start + lo : start + hi]).astype(np.float32))
    return AxisPlan(length, tile, tuple(starts), tuple(spans), tuple(weights))


def whole_axis(length: int) -> AxisPlan:
    """One tile: the axis padded at its end to a multiple of 16."""
    tile = round_up(length)
    return _normalised_plan(length, tile, [0], np.ones(tile))


def tiled_axis(length: int, tile: int, overlap: int) -> AxisPlan:
    """Tiles of ``tile`` px, ``overlap`` px shared by neighbours (see ``blend_window``).

    The image is mirrored by the discarded band (rounded up to 16 px) so border pixels
    get context too, and every tile starts on the image's 16-px pooling grid.
    """
    blend = min(overlap, _BLEND)
    context = (overlap - blend) // 2
    pad = round_up(context)
    if length + 2 * pad <= tile:  # the axis and its context fit in one (shorter) tile
        tile = round_up(length + 2 * pad)
        starts = [-pad]
    else:
        stride = (tile - overlap) // ALIGN * ALIGN
        # enough tiles that the last one's kept centre reaches past the image's last pixel
        n_tiles = 1 + math.ceil((length + context + pad - tile) / stride)
        starts = [-pad + k * stride for k in range(n_tiles)]
    return _normalised_plan(length, tile, starts, blend_window(tile, context, blend))


def mirror_indices(n: int, start: int, stop: int) -> np.ndarray:
    """Indices into an axis of ``n`` pixels for positions ``start..stop-1``, mirrored at
    the ends without repeating the edge pixel (like ``np.pad(mode="reflect")``, also for
    pads longer than the axis); a 1-pixel axis, which cannot be mirrored, is repeated."""
    positions = np.arange(start, stop)
    if n == 1:
        return np.zeros_like(positions)
    folded = positions % (2 * (n - 1))
    return np.where(folded < n, folded, 2 * (n - 1) - folded)


def plan_tiles(
    height: int, width: int, tile_size: int | None, overlap: int
) -> tuple[AxisPlan, AxisPlan]:
    """Row and column plans: one pass if the image fits in a tile, else overlap-tiles."""
    if tile_size is None or (height <= tile_size and width <= tile_size):
        return whole_axis(height), whole_axis(width)
    return tiled_axis(height, tile_size, overlap), tiled_axis(width, tile_size, overlap)


# -- running the network -----------------------------------------------------------------


def _batches(rows: AxisPlan, cols: AxisPlan, batch_size: int) -> Iterator[list[tuple[int, int]]]:
    """(row tile, column tile) index pairs, ``batch_size`` at a time."""
    pairs = [(i, j) for i in range(len(rows.starts)) for j in range(len(cols.starts))]
    for k in range(0, len(pairs), batch_size):
        yield pairs[k : k + batch_size]


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
    for batch in _batches(rows, cols, batch_size):
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

    ``backend`` picks how the network runs (``unet_hub.fastpath``): "auto" (the fastest
    that reproduces the model to 1e-4, prepared once per model), "eager", "fused" or
    "onnx". ``model`` may also be a runner, e.g. ``fastpath.load_onnx("model.onnx")``.

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
