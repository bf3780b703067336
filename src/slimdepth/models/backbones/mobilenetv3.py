"""MobileNetV3 Large and Small (Howard et al. 2019) with torchvision's module names.

The layout is torchvision's, so its ImageNet state dicts load with strict key checking:
``features.0`` is the stem (3x3 s2 conv, BN, hardswish), ``features.1..N`` are inverted
residual blocks whose ``block`` sequential holds [expand (only when the expansion differs from
the input width)], depthwise, [squeeze-excitation ``fc1``/``fc2``], project; the last
``features`` entry is the 1x1 "head" conv to 6x the last block width (960 Large, 576 Small);
then ``avgpool`` and ``classifier`` = Linear, Hardswish, Dropout, Linear. Every conv+BN(+act)
is a sequential named ``0`` conv, ``1`` BN, ``2`` activation. BN uses eps=0.001 and
momentum=0.01 as torchvision does.

:class:`MobileNetV3Encoder` keeps ``features`` (optionally without the head conv, as LiteDepth
does) and returns the last feature map at each of the strides 2, 4, 8, 16, 32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from slimdepth.errors import ConfigError
from slimdepth.models.backbones.init import init_weights, tapped_features


@dataclass(frozen=True)
class BlockConfig:
    """One row of the paper's architecture tables: an inverted residual block.

    ``act`` is ``"RE"`` (ReLU) or ``"HS"`` (hardswish), as in the paper.
    """

    in_ch: int
    kernel: int
    expanded: int
    out_ch: int
    use_se: bool
    act: str
    stride: int


def _rows(*rows: tuple) -> tuple[BlockConfig, ...]:
    return tuple(BlockConfig(*r) for r in rows)


#: Table 1 of the paper (torchvision's configuration at width 1.0)
LARGE_BLOCKS = _rows(
    (16, 3, 16, 16, False, "RE", 1),
    (16, 3, 64, 24, False, "RE", 2),
    (24, 3, 72, 24, False, "RE", 1),
    (24, 5, 72, 40, True, "RE", 2),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 3, 240, 80, False, "HS", 2),
    (80, 3, 200, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 480, 112, True, "HS", 1),
    (112, 3, 672, 112, True, "HS", 1),
    (112, 5, 672, 160, True, "HS", 2),
    (160, 5, 960, 160, True, "HS", 1),
    (160, 5, 960, 160, True, "HS", 1),
)

#: Table 2 of the paper (torchvision's configuration at width 1.0)
SMALL_BLOCKS = _rows(
    (16, 3, 16, 16, True, "RE", 2),
    (16, 3, 72, 24, False, "RE", 2),
    (24, 3, 88, 24, False, "RE", 1),
    (24, 5, 96, 40, True, "HS", 2),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 120, 48, True, "HS", 1),
    (48, 5, 144, 48, True, "HS", 1),
    (48, 5, 288, 96, True, "HS", 2),
    (96, 5, 576, 96, True, "HS", 1),
    (96, 5, 576, 96, True, "HS", 1),
)

#: timm's ``mobilenetv3_small_minimal_100`` (the encoder of LiteDepth's released model): Small's
#: widths with 3x3 kernels, no squeeze-excitation and ReLU everywhere, the stem included
SMALL_MINIMAL_BLOCKS = tuple(BlockConfig(b.in_ch, 3, b.expanded, b.out_ch, False, "RE", b.stride) for b in SMALL_BLOCKS)

#: blocks and classifier hidden width of each variant
VARIANTS: dict[str, tuple[tuple[BlockConfig, ...], int]] = {
    "large": (LARGE_BLOCKS, 1280),
    "small": (SMALL_BLOCKS, 1024),
    "small_minimal": (SMALL_MINIMAL_BLOCKS, 1024),
}


def _make_divisible(v: float, divisor: int = 8) -> int:
    """Round ``v`` to the nearest multiple of ``divisor`` without losing more than 10%."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=0.001, momentum=0.01)


def _activation(act: str) -> type[nn.Module]:
    return nn.Hardswish if act == "HS" else nn.ReLU


class ConvNormActivation(nn.Sequential):
    """Conv (no bias, "same" padding), BN and an optional activation: torchvision's
    ``Conv2dNormActivation``, so the children are named ``0``, ``1`` and ``2``."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1,
                 activation: type[nn.Module] | None = nn.ReLU) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            _norm(cout),
        ]
        if activation is not None:
            layers.append(activation(inplace=True))
        super().__init__(*layers)
        self.out_channels = cout


class SqueezeExcitation(nn.Module):
    """Channel attention: global mean, 1x1 ``fc1`` + ReLU, 1x1 ``fc2`` + hardsigmoid, rescale."""

    def __init__(self, channels: int, squeeze_channels: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x: Tensor) -> Tensor:
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return self.scale_activation(scale) * x


class InvertedResidual(nn.Module):
    """Expand (1x1), depthwise (kxk, strided), optional SE, linear project (1x1) + shortcut."""

    def __init__(self, cfg: BlockConfig) -> None:
        super().__init__()
        act = _activation(cfg.act)
        layers: list[nn.Module] = []
        if cfg.expanded != cfg.in_ch:
            layers.append(ConvNormActivation(cfg.in_ch, cfg.expanded, 1, activation=act))
        layers.append(ConvNormActivation(cfg.expanded, cfg.expanded, cfg.kernel, cfg.stride,
                                         groups=cfg.expanded, activation=act))
        if cfg.use_se:
            layers.append(SqueezeExcitation(cfg.expanded, _make_divisible(cfg.expanded // 4, 8)))
        layers.append(ConvNormActivation(cfg.expanded, cfg.out_ch, 1, activation=None))
        self.block = nn.Sequential(*layers)
        self.out_channels = cfg.out_ch
        self.use_res_connect = cfg.stride == 1 and cfg.in_ch == cfg.out_ch

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        if self.use_res_connect:
            out += x
        return out


def _blocks(variant: str) -> tuple[tuple[BlockConfig, ...], int]:
    if variant not in VARIANTS:
        raise ConfigError(f"unknown MobileNetV3 variant {variant!r}; choose from {', '.join(VARIANTS)}")
    return VARIANTS[variant]


def _features(blocks: tuple[BlockConfig, ...], head: bool) -> tuple[nn.Sequential, list[tuple[int, int]]]:
    """torchvision's ``features`` and, per entry, (output channels, cumulative stride)."""
    minimal = all(b.act == "RE" for b in blocks)  # the minimal variants keep ReLU in the stem too
    layers: list[nn.Module] = [ConvNormActivation(3, blocks[0].in_ch, 3, 2, activation=nn.ReLU if minimal else nn.Hardswish)]
    info = [(blocks[0].in_ch, 2)]
    for cfg in blocks:
        layers.append(InvertedResidual(cfg))
        info.append((cfg.out_ch, info[-1][1] * cfg.stride))
    if head:
        last = blocks[-1].out_ch
        layers.append(ConvNormActivation(last, 6 * last, 1, activation=nn.ReLU if minimal else nn.Hardswish))
        info.append((6 * last, info[-1][1]))
    return nn.Sequential(*layers), info


class MobileNetV3(nn.Module):
    """The ImageNet classifier, module-for-module torchvision's ``MobileNetV3``.

    ``variant`` is ``"large"`` (5,483,032 parameters with 1000 classes) or ``"small"``
    (2,542,856).
    """

    def __init__(self, variant: str = "large", num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        blocks, hidden = _blocks(variant)
        self.features, info = _features(blocks, head=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(info[-1][0], hidden),
            nn.Hardswish(inplace=True),
            nn.Dropout(p=dropout, inplace=True),
            nn.Linear(hidden, num_classes),
        )
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


class MobileNetV3Encoder(nn.Module):
    """MobileNetV3 ``features`` for dense prediction, returning one map per stride 2..32.

    Each map is the output of the last ``features`` entry at that stride (Large: entries 1, 3,
    6, 12, 15; Small: 0, 1, 3, 8, 11). With ``drop_head=True`` (LiteDepth) the 1x1 head conv
    (``features.16`` Large / ``features.12`` Small) is left out; with ``drop_head=False`` it is
    kept and its 960/576-channel output is the stride-32 map.
    """

    def __init__(self, variant: str = "large", drop_head: bool = True) -> None:
        super().__init__()
        blocks, _ = _blocks(variant)
        self.features, info = _features(blocks, head=not drop_head)
        last_at_stride = {stride: i for i, (_, stride) in enumerate(info)}
        self._taps = tuple(sorted(last_at_stride.values()))
        self.channels: tuple[int, ...] = tuple(info[i][0] for i in self._taps)
        self.strides: tuple[int, ...] = tuple(info[i][1] for i in self._taps)
        #: prefixes of torchvision keys this module deliberately lacks (tolerated by load_pretrained)
        self.dropped_keys: tuple[str, ...] = ("classifier.",) + ((f"features.{len(blocks) + 1}.",) if drop_head else ())
        init_weights(self)

    def forward(self, x: Tensor) -> list[Tensor]:
        return tapped_features(self.features, self._taps, x)


def mobilenet_v3_large(num_classes: int = 1000, dropout: float = 0.2) -> MobileNetV3:
    """MobileNetV3-Large classifier (5,483,032 parameters with 1000 classes)."""
    return MobileNetV3("large", num_classes, dropout)


def mobilenet_v3_small(num_classes: int = 1000, dropout: float = 0.2) -> MobileNetV3:
    """MobileNetV3-Small classifier (2,542,856 parameters with 1000 classes)."""
    return MobileNetV3("small", num_classes, dropout)
