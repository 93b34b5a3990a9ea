"""The limits on what one image may cost, shared by the library, the CLI and the web app.

This module also gives OpenCV the same pixel cap (``OPENCV_IO_MAX_IMAGE_PIXELS``), as a
second wall behind the header check of ``unet_hub.data.images``. OpenCV reads that
variable once, when it is loaded, so ``unet_hub/__init__.py`` imports this module before
anything imports cv2.
"""

from __future__ import annotations

import os

import PIL.Image

#: The library's and the CLI's default pixel limit (``--max-pixels``): 100 MP is 10000×10000.
DEFAULT_MAX_PIXELS = 100_000_000
#: The web app's default, lower because anyone may call a public Space.
APP_MAX_PIXELS = 8_000_000
#: The environment variable that sets the pixel limit of this process (the app's, and
#: OpenCV's cap).
MAX_PIXELS_VAR = "UNET_MAX_PIXELS"
#: The image formats read, identified by their content, never by their extension.
ALLOWED_FORMATS = ("PNG", "JPEG", "TIFF", "BMP")


def max_pixels_from_env(default: int) -> int:
    """The pixel limit set by ``UNET_MAX_PIXELS`` (a positive integer), else ``default``."""
    text = os.environ.get(MAX_PIXELS_VAR, "").strip().replace("_", "")
    if not text:
        return default
    if not text.isdigit() or int(text) <= 0:
        raise ValueError(f"{MAX_PIXELS_VAR} must be a positive number of pixels, got {text!r}")
    return int(text)


#: The most pixels any image may have, whatever ``max_pixels`` says: Pillow refuses a
#: header of more than twice its warning limit as a decompression bomb (about 179 MP).
HARD_MAX_PIXELS = 2 * PIL.Image.MAX_IMAGE_PIXELS


def opencv_pixel_cap() -> int:
    """OpenCV's own cap: the process's limit when ``UNET_MAX_PIXELS`` sets it (the web
    app), else the hard limit, so that ``max_pixels=None`` (``--max-pixels 0``) still
    means "no limit but the decoders' own"."""
    return max_pixels_from_env(HARD_MAX_PIXELS)


# An explicit OPENCV_IO_MAX_IMAGE_PIXELS from the environment wins.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(opencv_pixel_cap()))
