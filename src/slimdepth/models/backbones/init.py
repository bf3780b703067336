"""Pieces shared by the backbones: torchvision's weight initialisation, multi-scale taps."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal (fan_out, ReLU gain) convolutions with zero biases, BatchNorm weight 1 and
    bias 0, Linear weights N(0, 0.01) with zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def tapped_features(features: nn.Sequential, taps: Sequence[int], x: Tensor) -> list[Tensor]:
    """Run ``features`` on ``x`` and keep the outputs of the layers listed in ``taps``."""
    feats = []
    for i, layer in enumerate(features):
        x = layer(x)
        if i in taps:
            feats.append(x)
    return feats
