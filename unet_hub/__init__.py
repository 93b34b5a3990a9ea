"""unet-hub: train, publish and use a U-Net for image segmentation."""

# First: sets OpenCV's pixel cap, which OpenCV reads once when it is first imported.
import unet_hub.limits  # noqa: F401

# isort: split
from unet_hub.data.images import read_image
from unet_hub.errors import UNetHubError
from unet_hub.infer.instances import label_instances, segment_objects
from unet_hub.infer.segment import predict_mask, segment
from unet_hub.model.unet import UNet
from unet_hub.version import __version__ as __version__

__all__ = [
    "UNet",
    "UNetHubError",
    "label_instances",
    "predict_mask",
    "read_image",
    "segment",
    "segment_objects",
]
