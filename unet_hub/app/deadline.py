"""A time limit on one run of the network: checked between batches of tiles."""

from __future__ import annotations

import time

import numpy as np
import torch

from unet_hub.errors import UNetHubError
from unet_hub.infer.runners import Runner


class RunTimeLimitError(UNetHubError):
    """A run took longer than the app allows (``UNET_RUN_SECONDS``)."""


class TimeLimitedRunner(Runner):
    """``runner`` that refuses to start another batch once ``seconds`` have passed
    since it was made: a run stops within one batch of its limit."""

    def __init__(self, runner: Runner, seconds: float):
        self.runner, self.seconds = runner, seconds
        self.config, self.backend = runner.config, runner.backend
        self.deadline = time.monotonic() + seconds

    def __call__(self, batch: np.ndarray) -> torch.Tensor:
        if time.monotonic() > self.deadline:
            raise RunTimeLimitError(
                f"segmentation stopped at this app's limit of {self.seconds:g} seconds per "
                "image; try a smaller image"
            )
        return self.runner(batch)
