"""FastDepth (Wofk et al. 2019): a MobileNet encoder and an NNConv5 depthwise decoder."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from slimdepth.models.backbones import build_encoder, check_weights_path
from slimdepth.models.base import DepthModel, Normalize
from slimdepth.models.blocks import DepthHead, SeparableConv, upsample_to
from slimdepth.models.zoo import register_model

__all__ = ["FastDepth"]


@register_model("fastdepth", "MobileNet encoder, NNConv5 depthwise decoder with additive skips (FastDepth baseline)")
class FastDepth(DepthModel):
    """FastDepth (Wofk et al. 2019): MobileNet encoder; five decoder stages of a 5x5 depthwise +
    1x1 pointwise conv followed by nearest up-sampling, with encoder skips added; a 1x1 conv
    gives depth."""

    first_conv = "encoder.features.0.0"

    def __init__(self, max_depth: float = 80.0, encoder_weights: str | None = None) -> None:
        super().__init__({"name": "fastdepth", "max_depth": max_depth, "encoder_weights": encoder_weights})
        self.normalize = Normalize()
        self.encoder = build_encoder("mobilenet_v1", check_weights_path(encoder_weights))
        chans = list(self.encoder.channels)  # s2 .. s32
        widths = [chans[3], chans[2], chans[1], chans[0], 32]
        self.decode = nn.ModuleList()
        cin = chans[4]
        for w in widths:
            self.decode.append(SeparableConv(cin, w, 5))
            cin = w
        self.head = DepthHead(cin, max_depth, kernel=1)

    def predict(self, x: torch.Tensor) -> dict[str, Any]:
        feats = self.encoder(self.normalize(x))
        skips = feats[:4][::-1]  # s16, s8, s4, s2
        y = feats[4]
        features = {}
        for i, stage in enumerate(self.decode):
            y = stage(y)
            ref = skips[i] if i < len(skips) else tuple(x.shape[-2:])
            y = upsample_to(y, ref, mode="nearest")
            if i < len(skips):
                y = y + skips[i]
            features[f"dec{i + 1}"] = y
        return {"depth": self.head(y), "features": features}
