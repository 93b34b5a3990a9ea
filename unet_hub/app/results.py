"""The last segmentation of each session, kept for moving the threshold without rerunning
the network, in one store of bounded size.

``gr.State`` holds only a random key into the store; the arrays live here. The store
keeps the most recently used results up to ``max_bytes`` in all and drops the oldest
beyond that, so memory stays bounded however many sessions (API clients never close
theirs) call the app. A dropped result only means the slider asks for a new run.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np


@dataclass(eq=False)  # compared by identity: each run is a new result
class Result:
    """What one segmentation run keeps for re-thresholding without rerunning the network."""

    probabilities: np.ndarray
    picture: np.ndarray  # the image as the model saw it, uint8 RGB

    @property
    def nbytes(self) -> int:
        return self.probabilities.nbytes + self.picture.nbytes


class ResultStore:
    """Results by key, least recently used dropped first, ``max_bytes`` at most in all."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._results: OrderedDict[str, Result] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()  # handlers run on several worker threads

    def put(self, result: Result) -> str | None:
        """Keep ``result``; return its key (None if it alone is larger than the store)."""
        if result.nbytes > self.max_bytes:
            return None
        key = secrets.token_urlsafe(16)
        with self._lock:
            self._results[key] = result
            self._bytes += result.nbytes
            while self._bytes > self.max_bytes:
                _, dropped = self._results.popitem(last=False)
                self._bytes -= dropped.nbytes
        return key

    def get(self, key: object) -> Result | None:
        """The result kept under ``key``, or None if it was dropped (or never kept)."""
        if not isinstance(key, str):
            return None
        with self._lock:
            result = self._results.get(key)
            if result is not None:
                self._results.move_to_end(key)
            return result

    def drop(self, key: object) -> None:
        """Forget ``key`` (its session ended or its state expired)."""
        if not isinstance(key, str):
            return
        with self._lock:
            result = self._results.pop(key, None)
            if result is not None:
                self._bytes -= result.nbytes

    @property
    def nbytes(self) -> int:
        """The bytes kept now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._results)
