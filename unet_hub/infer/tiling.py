"""Overlap-tile geometry: where the tiles of an image start and how their centres blend.

Why the default overlap is 256 px: a pixel's output depends on inputs up to
``RECEPTIVE_FIELD_RADIUS`` px away (with transposed-convolution up-sampling and with
bilinear up-sampling; measured by back-propagating from one output pixel at each of the
16 pooling phases). A tile's outer band of that width sees the tile's zero padding
instead of the real neighbours, so it is discarded: 256 = 2 x 112 px discarded + a 32 px
cross-fade. Tiles and blend weights are separable, so each axis is planned on its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

#: Every side the network sees is a multiple of this, so its four 2x poolings align.
ALIGN = 16


#: How far (px) an output pixel's inputs can lie, by up-sampling mode (see module doc).
RECEPTIVE_FIELD_RADIUS = {"transposed": 107, "bilinear": 122}


DEFAULT_TILE_SIZE = 1024


DEFAULT_OVERLAP = 256


#: Width (px) of the linear cross-fade between neighbouring tiles' kept centres.
_BLEND = 32


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


def batches_of_tiles(
    rows: AxisPlan, cols: AxisPlan, batch_size: int
) -> Iterator[list[tuple[int, int]]]:
    """(row tile, column tile) index pairs, ``batch_size`` at a time."""
    pairs = [(i, j) for i in range(len(rows.starts)) for j in range(len(cols.starts))]
    for k in range(0, len(pairs), batch_size):
        yield pairs[k : k + batch_size]
