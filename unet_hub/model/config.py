"""The model's configuration: its fields, defaults, validation and ``config.json``."""

from __future__ import annotations

#: How integer pixels are scaled to [0, 1]: by the maximum of their dtype (255 for
#: 8-bit, 65535 for 16-bit) or by each image's own minimum and maximum.
INPUT_SCALINGS = ("dtype", "minmax")
