"""unet-hub: train, publish and use a U-Net for image segmentation."""

from .errors import UNetHubError
from .imaging import read_image
from .inference import predict_mask, segment
from .model import UNet

__all__ = ["UNet", "UNetHubError", "predict_mask", "read_image", "segment"]
__version__ = "0.1.0"
