"""ResNet-18/34/50 (He et al. 2016) with torchvision's module names and parameter counts.

Module and parameter names follow torchvision exactly (``conv1, bn1, relu, maxpool,
layer1..layer4, avgpool, fc``; blocks ``conv1, bn1, conv2, bn2[, conv3, bn3], downsample.0/.1``),
so an ImageNet state dict saved from torchvision loads with strict key checking. Bottleneck is
"v1.5": the stride sits on its 3x3 convolution, as in torchvision.

:class:`ResNetEncoder` is the same network without ``avgpool`` and ``fc``; its state-dict keys
are torchvision's minus ``fc.*``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from slimdepth.errors import ConfigError
from slimdepth.models.backbones.init import init_weights


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut (ResNet-18/34)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)

    def last_bn(self) -> nn.BatchNorm2d:
        """The BN before the residual addition (zeroed by ``zero_init_residual``)."""
        return self.bn2


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided, "v1.5"), 1x1 expand by 4, plus shortcut (ResNet-50)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)

    def last_bn(self) -> nn.BatchNorm2d:
        """The BN before the residual addition (zeroed by ``zero_init_residual``)."""
        return self.bn3


Block = type[BasicBlock] | type[Bottleneck]

#: block type and blocks per stage of each depth, as in the paper and torchvision
RESNET_SPECS: dict[str, tuple[Block, tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}


class _ResNetTrunk(nn.Module):
    """Stem and the four stages, shared by the classifier and the encoder.

    Attributes are created in torchvision's order so that state-dict keys come out in the same
    order too.
    """

    def __init__(self, block: Block, layers: Sequence[int]) -> None:
        super().__init__()
        if len(layers) != 4:
            raise ConfigError(f"ResNet needs 4 stage depths, got {len(layers)}")
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self._inplanes = 64
        self.layer1 = self._make_layer(block, 64, layers[0], stride=1)
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        #: channels and strides of the five feature maps (stem, layer1..layer4)
        self.channels: tuple[int, ...] = (64,) + tuple(w * block.expansion for w in (64, 128, 256, 512))
        self.strides: tuple[int, ...] = (2, 4, 8, 16, 32)

    def _make_layer(self, block: Block, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self._inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        mods = [block(self._inplanes, planes, stride, downsample)]
        self._inplanes = planes * block.expansion
        mods += [block(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def _init_weights(self, zero_init_residual: bool) -> None:
        """torchvision's init: Kaiming-normal (fan_out) convs, BN weight 1 and bias 0.

        With ``zero_init_residual`` the last BN of every block starts at 0, so each residual
        block begins as the identity (Goyal et al. 2017); off by default, as in torchvision.
        """
        init_weights(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.last_bn().weight)

    def _features(self, x: Tensor) -> list[Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        feats = [x]
        x = self.maxpool(x)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            feats.append(x)
        return feats


class ResNet(_ResNetTrunk):
    """The ImageNet classifier, module-for-module torchvision's ``ResNet``."""

    def __init__(self, block: Block, layers: Sequence[int], num_classes: int = 1000,
                 zero_init_residual: bool = False) -> None:
        super().__init__(block, layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        self._init_weights(zero_init_residual)

    def forward(self, x: Tensor) -> Tensor:
        x = self._features(x)[-1]
        return self.fc(torch.flatten(self.avgpool(x), 1))


class ResNetEncoder(_ResNetTrunk):
    """ResNet without ``avgpool``/``fc`` for dense prediction.

    ``forward`` returns five maps at strides 2, 4, 8, 16, 32: after ``relu`` (64 channels) and
    after ``layer1``..``layer4`` (see ``channels`` and ``strides``).
    """

    #: prefixes of torchvision keys this module deliberately lacks (tolerated by load_pretrained)
    dropped_keys: tuple[str, ...] = ("fc.",)

    def __init__(self, block: Block, layers: Sequence[int], zero_init_residual: bool = False) -> None:
        super().__init__(block, layers)
        self._init_weights(zero_init_residual)

    def forward(self, x: Tensor) -> list[Tensor]:
        return self._features(x)


def resnet18(num_classes: int = 1000, zero_init_residual: bool = False) -> ResNet:
    """ResNet-18 classifier (11,689,512 parameters with 1000 classes)."""
    return ResNet(*RESNET_SPECS["resnet18"], num_classes=num_classes, zero_init_residual=zero_init_residual)


def resnet34(num_classes: int = 1000, zero_init_residual: bool = False) -> ResNet:
    """ResNet-34 classifier (21,797,672 parameters with 1000 classes)."""
    return ResNet(*RESNET_SPECS["resnet34"], num_classes=num_classes, zero_init_residual=zero_init_residual)


def resnet50(num_classes: int = 1000, zero_init_residual: bool = False) -> ResNet:
    """ResNet-50 classifier (25,557,032 parameters with 1000 classes)."""
    return ResNet(*RESNET_SPECS["resnet50"], num_classes=num_classes, zero_init_residual=zero_init_residual)


def resnet_encoder(name: str, zero_init_residual: bool = False) -> ResNetEncoder:
    """The encoder of ``resnet18``, ``resnet34`` or ``resnet50``."""
    if name not in RESNET_SPECS:
        raise ConfigError(f"unknown ResNet {name!r}; choose from {', '.join(RESNET_SPECS)}")
    return ResNetEncoder(*RESNET_SPECS[name], zero_init_residual=zero_init_residual)
