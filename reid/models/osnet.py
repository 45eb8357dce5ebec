"""OSNet x1.0 (Zhou et al., "Omni-Scale Feature Learning for Person Re-Identification",
ICCV 2019) as a CASN backbone: the convolutional body up to ``conv5``.

Module names follow deep-person-reid's layout (``conv1.conv``, ``conv2.0.conv2a.conv1``,
``conv2.2.0`` ...), so a torchreid ``osnet_x1_0`` checkpoint loads key for key. Its
``fc`` embedding (Linear + BatchNorm + ReLU) and classifier are not part of the body: CASN's
feature is the global average of the map, as for the other backbones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

WIDTHS = (64, 256, 384, 512)  # stem, then the three omni-scale stages of x1.0
BLOCKS_PER_STAGE = 2
GATE_REDUCTION = 16
BOTTLENECK_REDUCTION = 4


class ConvBN(nn.Module):
    """Convolution without bias, BatchNorm, and a ReLU unless ``linear``."""

    def __init__(
        self, cin: int, cout: int, kernel: int = 1, stride: int = 1, linear: bool = False
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return x if self.linear else F.relu(x)


class LiteConv3x3(nn.Module):
    """Pointwise (linear) then depthwise 3x3, BatchNorm, ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False, groups=cout)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv2(self.conv1(x))))


class ChannelGate(nn.Module):
    """Per-channel sigmoid weights from the globally pooled input; shared by all streams."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // GATE_REDUCTION, 1)
        self.fc2 = nn.Conv2d(channels // GATE_REDUCTION, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(pooled))))


def _stream(channels: int, depth: int) -> nn.Module:
    """``depth`` stacked lite 3x3 convolutions: a receptive field of 2 * depth + 1."""
    if depth == 1:
        return LiteConv3x3(channels, channels)
    return nn.Sequential(*(LiteConv3x3(channels, channels) for _ in range(depth)))


class OmniScaleBlock(nn.Module):
    """Four streams of different receptive fields, fused by the shared channel gate."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        mid = cout // BOTTLENECK_REDUCTION
        self.conv1 = ConvBN(cin, mid)
        self.conv2a = _stream(mid, 1)
        self.conv2b = _stream(mid, 2)
        self.conv2c = _stream(mid, 3)
        self.conv2d = _stream(mid, 4)
        self.gate = ChannelGate(mid)
        self.conv3 = ConvBN(mid, cout, linear=True)
        self.downsample = ConvBN(cin, cout, linear=True) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.conv1(x)
        streams = (self.conv2a, self.conv2b, self.conv2c, self.conv2d)
        fused = sum(self.gate(stream(reduced)) for stream in streams)
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(self.conv3(fused) + shortcut)


def _stage(cin: int, cout: int, downsample: bool) -> nn.Sequential:
    layers: list[nn.Module] = [OmniScaleBlock(cin, cout)]
    layers += [OmniScaleBlock(cout, cout) for _ in range(BLOCKS_PER_STAGE - 1)]
    if downsample:  # a transition: 1x1 conv then 2x2 average pooling
        layers.append(nn.Sequential(ConvBN(cout, cout), nn.AvgPool2d(2, stride=2)))
    return nn.Sequential(*layers)


class OSNetBody(nn.Module):
    """Image ``[N, 3, H, W]`` -> map ``[N, 512, H/16, W/16]``."""

    channels = WIDTHS[-1]

    def __init__(self) -> None:
        super().__init__()
        stem, *stages = WIDTHS
        self.conv1 = ConvBN(3, stem, kernel=7, stride=2)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv2 = _stage(stem, stages[0], downsample=True)
        self.conv3 = _stage(stages[0], stages[1], downsample=True)
        self.conv4 = _stage(stages[1], stages[2], downsample=False)
        self.conv5 = ConvBN(stages[2], stages[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        return self.conv5(self.conv4(self.conv3(self.conv2(x))))
