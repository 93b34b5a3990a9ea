"""The threshold slider: which values a client may send, and the mask and the views of
a kept result at the slider's threshold, redrawn without running the network again."""

from __future__ import annotations

import math
from typing import Any

import gradio as gr
import numpy as np

from unet_hub.app.results import Result, ResultStore
from unet_hub.infer.segment import mask_from_probabilities
from unet_hub.infer.visualize import overlay, probability_map

#: The threshold slider's range: every threshold a client sends must lie in it.
THRESHOLD_RANGE = (0.01, 0.99)
EXPIRED = "This result is no longer kept on the server; press Segment again."


def checked_threshold(value: Any) -> float:
    """``value`` as a threshold, if it is a finite number in the slider's range; else a
    one-line ``gr.Error``."""
    low, high = THRESHOLD_RANGE
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if number is None or not math.isfinite(number) or not low <= number <= high:
        shown = repr(value)[:40]
        raise gr.Error(f"The threshold must be a number from {low} to {high}; got {shown}.")
    return float(number)


def views_at(
    store: ResultStore, key: Any, threshold: Any, one_class: bool
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The overlay (at ``threshold``) and the probability map of the result kept under
    ``key``; (None, None) when it is no longer kept."""
    threshold = checked_threshold(threshold)
    result = store.get(key)
    if result is None:
        return None, None
    return _views(result, threshold, one_class)


def _views(result: Result, threshold: float, one_class: bool) -> tuple[np.ndarray, np.ndarray]:
    labels = mask_from_probabilities(result.probabilities, threshold)
    if one_class:
        labels = labels > 0
        probs = result.probabilities
    else:
        probs = result.probabilities.max(axis=0)  # the winning class's probability
    return overlay(result.picture, labels.astype(np.uint8)), probability_map(probs)


def mask_at(store: ResultStore, key: Any, threshold: Any) -> np.ndarray | None:
    """The mask of the result kept under ``key`` at ``threshold``; None before any run,
    a ``gr.Error`` saying to segment again when the result is no longer kept."""
    threshold = checked_threshold(threshold)
    if key is None:
        return None
    result = store.get(key)
    if result is None:
        raise gr.Error(EXPIRED)
    return mask_from_probabilities(result.probabilities, threshold)
