"""Building blocks of the U-Net: DoubleConv, Down, Up and OutConv.

These are the parts of Ronneberger et al. (2015) in the widely used padded form
(3x3 convolutions with padding 1, a normalisation layer after each convolution:
BatchNorm in the seed architecture, InstanceNorm or GroupNorm as ``UNetConfig.norm``
chooses), so the output of the assembled network has the size of its input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: GroupNorm puts about this many channels in each group (nnU-Net's and Wu & He's choice
#: is 32 groups for wide layers; small networks need fewer channels per group).
CHANNELS_PER_GROUP = 8


def group_count(channels: int) -> int:
    """The number of GroupNorm groups for ``channels``: the largest divisor of
    ``channels`` that leaves at least ``CHANNELS_PER_GROUP`` channels per group (1 for
    narrow layers, which is then a layer norm over the channels)."""
    most = max(1, channels // CHANNELS_PER_GROUP)
    return max(g for g in range(1, most + 1) if channels % g == 0)


def norm_layer(norm: str, channels: int) -> nn.Module:
    """The normalisation layer ``norm`` ("batch", "instance" or "group") for ``channels``."""
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        # affine like BatchNorm; no running statistics: every image is normalised by its
        # own, in training and in eval mode alike
        return nn.InstanceNorm2d(channels, affine=True)
    if norm == "group":
        return nn.GroupNorm(group_count(channels), channels)
    raise ValueError(f"unknown norm layer {norm!r}")


class DoubleConv(nn.Sequential):
    """(3x3 convolution with padding 1 -> normalisation -> ReLU), twice."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "batch"):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            norm_layer(norm, out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1),
            norm_layer(norm, out_channels),
            nn.ReLU(inplace=True),
        )


class Down(nn.Sequential):
    """Halve the resolution with 2x2 max pooling, then a DoubleConv."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "batch"):
        super().__init__(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels, norm))


class Up(nn.Module):
    """Double the resolution, pad to the skip connection's size, concatenate, DoubleConv.

    ``in_channels`` counts the channels after concatenation; the deeper map and the skip
    connection carry half of them each. Up-sampling is bilinear (align_corners=True, no
    weights) or a 2x2 transposed convolution that keeps the channel count.
    """

    def __init__(
        self, in_channels: int, out_channels: int, bilinear: bool = True, norm: str = "batch"
    ):
        super().__init__()
        if bilinear:
            self.up: nn.Module = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        else:
            half = in_channels // 2
            self.up = nn.ConvTranspose2d(half, half, kernel_size=2, stride=2)
        self.conv = DoubleConv(in_channels, out_channels, norm)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        deep = self.up(deep)
        # Pooling floors odd sizes, so the up-sampled map can be a pixel short: pad it back.
        dy = skip.shape[-2] - deep.shape[-2]
        dx = skip.shape[-1] - deep.shape[-1]
        if dy or dx:
            deep = F.pad(deep, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([skip, deep], dim=1))


class OutConv(nn.Conv2d):
    """1x1 convolution mapping features to one logit per class."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, kernel_size=1)
