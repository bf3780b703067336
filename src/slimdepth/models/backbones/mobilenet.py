"""MobileNet v1 (Howard et al. 2017), width 1.0: the encoder of FastDepth.

``features.0`` is a 3x3 stride-2 conv to 32 channels; ``features.1..13`` are depthwise-
separable blocks up to 1024 channels. Every entry is a flat sequential of conv, BN, ReLU6 (the
blocks: depthwise conv ``0``, BN ``1``, ReLU6 ``2``, pointwise conv ``3``, BN ``4``, ReLU6
``5``), which is also FastDepth's ImageNet layout, so a FastDepth MobileNet checkpoint loads
after renaming its ``model.`` prefix to ``features.``. torchvision has no MobileNet v1.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from slimdepth.models.backbones.init import init_weights, tapped_features

#: (output channels, stride) of the 13 depthwise-separable blocks (Table 1 of the paper)
BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
    (1024, 2), (1024, 1),
)
STEM_CHANNELS = 32


def _conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6(inplace=True),
    )


def _separable(cin: int, cout: int, stride: int) -> nn.Sequential:
    """3x3 depthwise conv (strided) + BN + ReLU6, then 1x1 pointwise conv + BN + ReLU6."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU6(inplace=True),
        nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6(inplace=True),
    )


def _features() -> tuple[nn.Sequential, list[tuple[int, int]]]:
    """The 14 ``features`` entries and, per entry, (output channels, cumulative stride)."""
    layers = [_conv_bn(3, STEM_CHANNELS, 2)]
    info = [(STEM_CHANNELS, 2)]
    for cout, stride in BLOCKS:
        layers.append(_separable(info[-1][0], cout, stride))
        info.append((cout, info[-1][1] * stride))
    return nn.Sequential(*layers), info


class MobileNetV1(nn.Module):
    """The ImageNet classifier: ``features``, global ``avgpool`` and ``fc`` (1024 -> classes)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.features, info = _features()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(info[-1][0], num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


class MobileNetV1Encoder(nn.Module):
    """MobileNet v1 ``features`` returning the last map at each stride 2..32.

    Those are the outputs of ``features.1, 3, 5, 11, 13`` (64, 128, 256, 512, 1024 channels),
    the skips FastDepth uses.
    """

    #: prefixes of classifier keys this module deliberately lacks (tolerated by load_pretrained)
    dropped_keys: tuple[str, ...] = ("fc.",)

    def __init__(self) -> None:
        super().__init__()
        self.features, info = _features()
        last_at_stride = {stride: i for i, (_, stride) in enumerate(info)}
        self._taps = tuple(sorted(last_at_stride.values()))
        self.channels: tuple[int, ...] = tuple(info[i][0] for i in self._taps)
        self.strides: tuple[int, ...] = tuple(info[i][1] for i in self._taps)
        init_weights(self)

    def forward(self, x: Tensor) -> list[Tensor]:
        return tapped_features(self.features, self._taps, x)


def mobilenet_v1(num_classes: int = 1000) -> MobileNetV1:
    """MobileNet v1 classifier, width 1.0 (4,231,976 parameters with 1000 classes)."""
    return MobileNetV1(num_classes)
