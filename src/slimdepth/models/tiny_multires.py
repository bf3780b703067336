"""The extremely light multi-resolution network (method 5, Chiu et al. 2020)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from slimdepth.models.base import DepthModel, Normalize
from slimdepth.models.blocks import ConvBNReLU, DepthHead, InvertedResidual, SeparableConv, upsample_to
from slimdepth.models.zoo import check_widths, register_model
from slimdepth.options import check_number

__all__ = ["TinyMultiRes"]

#: the most segmentation classes a head may have
MAX_CLASSES = 1024


@register_model("tiny-multires", "method 5: ~0.3 M parameters, four detachable depth heads and a segmentation head")
class TinyMultiRes(DepthModel):
    """An extremely light network (Chiu et al. 2020): a MobileNetV2-style encoder and a decoder
    with a depth head and a segmentation head at each of strides 16, 8, 4 and 2 (30x20 ... 240x160
    for a 480x320 input). ``heads`` (1..4) detaches the finer stages: the model then computes,
    returns and exports only up to that head, trading resolution for speed; the parameters are
    the same for every ``heads``, so one trained model serves all (set ``model.heads`` or load its
    weights into a model built with fewer heads). ``seg`` is the list of per-scale segmentation
    logits (coarsest first, as ``scales``); ``num_classes=0`` drops segmentation."""

    first_conv = "stem.0"

    def __init__(self, max_depth: float = 80.0, heads: int = 4, num_classes: int = 8,
                 widths: tuple[int, ...] = (16, 24, 40, 64, 112), dec_widths: tuple[int, ...] = (64, 40, 24, 16)) -> None:
        heads = check_number(heads, "tiny-multires heads", integer=True, low=1, high=4, expected="1..4")
        num_classes = check_number(num_classes, "tiny-multires num_classes", integer=True, low=0, high=MAX_CLASSES)
        widths = check_widths(widths, "tiny-multires widths", 5)
        dec_widths = check_widths(dec_widths, "tiny-multires dec_widths", 4)
        super().__init__({"name": "tiny-multires", "max_depth": max_depth, "heads": heads, "num_classes": num_classes,
                          "widths": list(widths), "dec_widths": list(dec_widths)})
        self.heads = heads
        c = list(widths)
        self.normalize = Normalize()
        self.stem = ConvBNReLU(3, c[0], 3, 2)
        self.stages = nn.ModuleList(
            nn.Sequential(InvertedResidual(c[i], c[i + 1], 2), InvertedResidual(c[i + 1], c[i + 1], 1)) for i in range(4)
        )
        skips = [c[3], c[2], c[1], c[0]]  # s16, s8, s4, s2
        self.up = nn.ModuleList()
        cin = c[4]
        for skip, w in zip(skips, dec_widths):
            self.up.append(nn.Sequential(ConvBNReLU(cin + skip, w, 1), SeparableConv(w, w)))
            cin = w
        self.depth_heads = nn.ModuleList(DepthHead(w, max_depth) for w in dec_widths)
        self.seg_heads = nn.ModuleList(nn.Conv2d(w, num_classes, 1) for w in dec_widths) if num_classes else None

    def predict(self, x: torch.Tensor) -> dict[str, Any]:
        size = tuple(x.shape[-2:])
        feats = [self.stem(self.normalize(x))]
        for stage in self.stages:
            feats.append(stage(feats[-1]))
        skips = feats[:4][::-1]
        y = feats[4]
        scales, segs, features = [], [], {}
        for i in range(self.heads):
            y = self.up[i](torch.cat([upsample_to(y, skips[i]), skips[i]], 1))
            features[f"dec{i + 1}"] = y
            scales.append(self.depth_heads[i](y))
            if self.seg_heads is not None:
                segs.append(self.seg_heads[i](y))
        out: dict[str, Any] = {"depth": upsample_to(scales[-1], size), "scales": scales, "features": features}
        if segs:
            out["seg"] = segs
        return out
