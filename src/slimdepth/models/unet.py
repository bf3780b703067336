"""U-Net depth networks with ResNet encoders (method 2's network, and a smaller teacher).

An ImageNet-initialisable ResNet encoder (classifier and pooling removed) and a decoder of
bilinear up-sampling stages, each fused with the encoder skip of its resolution.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from slimdepth.errors import ConfigError
from slimdepth.models.backbones import build_encoder, check_weights_path
from slimdepth.models.base import DepthModel, Normalize
from slimdepth.models.blocks import ConvBNReLU, DepthHead, upsample_to
from slimdepth.models.zoo import register_model

__all__ = ["ResNet18UNet", "ResNet50UNet", "UNetDepth"]


class _UNetDecoder(nn.Module):
    """Bilinear up-sampling stages, each fused with the encoder skip of its resolution.

    One stage per encoder feature plus a last one to the input resolution: five for the
    stride-2..32 encoders (method 2). The deepest feature and every skip are first reduced by a
    1x1 conv (to the stage width and half of it), so the decoder costs a fraction of the
    encoder. Optional side heads give the lower-resolution depth maps (coarsest first).
    """

    def __init__(self, enc_channels: tuple[int, ...], widths: tuple[int, ...], max_depth: float, side_heads: bool) -> None:
        super().__init__()
        skips = list(enc_channels[:-1])[::-1]  # s16, s8, s4, s2
        self.reduce = ConvBNReLU(enc_channels[-1], widths[0], 1)
        self.skip_proj = nn.ModuleList(ConvBNReLU(c, w // 2, 1) for c, w in zip(skips, widths))
        self.stages = nn.ModuleList()
        cin = widths[0]
        for i, width in enumerate(widths):
            self.stages.append(ConvBNReLU(cin + (width // 2 if i < len(skips) else 0), width, 3))
            cin = width
        self.head = DepthHead(cin, max_depth)
        self.side = nn.ModuleList([DepthHead(w, max_depth) for w in widths[1:-1]]) if side_heads else None

    def forward(self, feats: list[torch.Tensor], size: tuple[int, int]) -> dict[str, Any]:
        x = self.reduce(feats[-1])
        skips = feats[:-1][::-1]
        out: dict[str, Any] = {"features": {}, "scales": []}
        for i, stage in enumerate(self.stages):
            if i < len(skips):
                x = torch.cat([upsample_to(x, skips[i]), self.skip_proj[i](skips[i])], dim=1)
            else:
                x = upsample_to(x, size)
            x = stage(x)
            out["features"][f"dec{i + 1}"] = x
            if self.side is not None and 1 <= i <= len(self.side):
                out["scales"].append(self.side[i - 1](x))
        out["depth"] = self.head(x)
        if not out["scales"]:
            del out["scales"]
        return out


class UNetDepth(DepthModel):
    """Encoder-decoder with skip connections (method 2's network with a ResNet encoder)."""

    def __init__(self, encoder: str, widths: tuple[int, ...], max_depth: float, side_heads: bool,
                 encoder_weights: str | None, name: str) -> None:
        if not isinstance(side_heads, bool):
            raise ConfigError(f"{name} side_heads must be true or false, got {side_heads!r}")
        super().__init__({"name": name, "max_depth": max_depth, "side_heads": side_heads,
                          "encoder_weights": encoder_weights})
        self.normalize = Normalize()
        self.encoder = build_encoder(encoder, check_weights_path(encoder_weights))
        self.decoder = _UNetDecoder(tuple(self.encoder.channels), tuple(widths), max_depth, side_heads)

    def predict(self, x: torch.Tensor) -> dict[str, Any]:
        feats = self.encoder(self.normalize(x))
        return self.decoder(feats, tuple(x.shape[-2:]))


@register_model("resnet50-unet", "method 2: ResNet-50 encoder, 5 bilinear up-sampling stages fused with skips")
class ResNet50UNet(UNetDepth):
    first_conv = "encoder.conv1"

    def __init__(self, max_depth: float = 80.0, side_heads: bool = False, encoder_weights: str | None = None) -> None:
        super().__init__("resnet50", (256, 128, 64, 32, 16), max_depth, side_heads, encoder_weights, "resnet50-unet")


@register_model("resnet18-unet", "ResNet-18 encoder, same decoder: a smaller teacher for quick runs")
class ResNet18UNet(UNetDepth):
    first_conv = "encoder.conv1"

    def __init__(self, max_depth: float = 80.0, side_heads: bool = False, encoder_weights: str | None = None) -> None:
        super().__init__("resnet18", (128, 64, 32, 16, 16), max_depth, side_heads, encoder_weights, "resnet18-unet")
