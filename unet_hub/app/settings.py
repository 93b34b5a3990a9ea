"""The web app's limits, from environment variables (a Space sets them in its settings).

| variable | default | what it bounds |
| --- | --- | --- |
| ``UNET_MAX_PIXELS`` | 8,000,000 | pixels of one image (read from its header) |
| ``UNET_RUN_SECONDS`` | 60 | seconds of network time one run may take |
| ``UNET_TEMP_TTL`` | 3600 | seconds uploads, outputs and a session's result are kept |
| ``UNET_TEMP_MAX_MB`` | 2048 | the temp folder: uploads are refused while it holds more |
| ``UNET_STATE_MB`` | 128 (≤ RAM/16) | memory for all sessions' results (the threshold slider) |
| ``UNET_RATE_BURST`` | 60 | requests a client may send at once (upload, run, call) |
| ``UNET_RATE_PER_MINUTE`` | 120 | requests a client may send per minute after a burst |
| ``UNET_FRAME_ANCESTORS`` | (none) | more origins allowed to embed the page, space-separated |
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from unet_hub.errors import ConfigError
from unet_hub.limits import APP_MAX_PIXELS, max_pixels_from_env

#: The origins that may always show the page in a frame: the page itself and the
#: Hugging Face Hub's Space embedding.
SPACE_ANCESTORS = ("'self'", "https://huggingface.co", "https://*.hf.space")


def _number(name: str, default: float) -> float:
    """A positive number from the environment variable ``name``."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"{name} must be a positive number, got {text!r}")
    return value


def _default_state_bytes() -> int:
    """128 MiB for the results the slider needs, but no more than 1/16 of the RAM."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not a POSIX system
        return 128 * 2**20
    return min(128 * 2**20, ram // 16)


@dataclass(frozen=True)
class AppSettings:
    """What one request, one session and one client may cost the app."""

    max_pixels: int = APP_MAX_PIXELS
    run_seconds: float = 60.0
    temp_ttl: int = 3600
    temp_max_bytes: int = 2048 * 2**20
    state_bytes: int = _default_state_bytes()
    rate_burst: int = 60
    rate_per_minute: float = 120.0
    frame_ancestors: tuple[str, ...] = SPACE_ANCESTORS

    @classmethod
    def from_env(cls) -> AppSettings:
        """The settings named in the module doc, each from its variable or its default."""
        try:
            max_pixels = max_pixels_from_env(APP_MAX_PIXELS)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        extra = tuple(os.environ.get("UNET_FRAME_ANCESTORS", "").split())
        return cls(
            max_pixels=max_pixels,
            run_seconds=_number("UNET_RUN_SECONDS", cls.run_seconds),
            temp_ttl=max(1, round(_number("UNET_TEMP_TTL", cls.temp_ttl))),
            temp_max_bytes=round(_number("UNET_TEMP_MAX_MB", cls.temp_max_bytes / 2**20) * 2**20),
            state_bytes=round(_number("UNET_STATE_MB", cls.state_bytes / 2**20) * 2**20),
            rate_burst=max(1, round(_number("UNET_RATE_BURST", cls.rate_burst))),
            rate_per_minute=_number("UNET_RATE_PER_MINUTE", cls.rate_per_minute),
            frame_ancestors=SPACE_ANCESTORS + extra,
        )

    @property
    def cache_schedule(self) -> tuple[int, int]:
        """Gradio's ``delete_cache``: how often to look (seconds) and what age to delete."""
        return max(1, min(self.temp_ttl, 60)), self.temp_ttl
