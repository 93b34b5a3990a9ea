"""The unet-hub web app: ``python app.py`` (also the entry point of a Hugging Face Space).

Serves the model named by the UNET_MODEL environment variable (a Hub repo id or a local
folder; default: the bundled ISBI 2012 model) on GRADIO_SERVER_NAME:GRADIO_SERVER_PORT.
Its limits (pixels, time, memory, disk, rates) are set by the variables listed in
``unet_hub/app/settings.py``.
"""

import os
import sys

# The public app's pixel limit (unet_hub.limits.APP_MAX_PIXELS), set before unet_hub
# loads OpenCV, so that OpenCV's own cap is the same limit.
os.environ.setdefault("UNET_MAX_PIXELS", "8000000")

if os.environ.get("SPACES_ZERO_GPU"):
    import spaces  # noqa: F401  (ZeroGPU: imported before torch touches CUDA; see zerogpu.py)

from unet_hub.app.webapp import launch  # noqa: E402
from unet_hub.errors import UNetHubError  # noqa: E402

if __name__ == "__main__":
    try:
        launch()
    except UNetHubError as e:
        sys.exit(f"error: {e}")
