"""LiteDepth (method 4, Li et al. 2022): MobileNetV3 encoder, in-network resize, light decoder."""

from __future__ import annotations

from typing import Any

import torch

from slimdepth.errors import ConfigError
from slimdepth.models.backbones import build_encoder, check_weights_path
from slimdepth.models.base import DepthModel, Normalize
from slimdepth.models.blocks import ConvBNReLU, DepthHead, upsample_to
from slimdepth.models.zoo import MAX_WIDTH, register_model
from slimdepth.options import check_number, parse_size

__all__ = ["LiteDepth"]


@register_model("litedepth", "method 4: MobileNetV3 without its head conv, in-network resize, light decoder, ReLU output at 1/4")
class LiteDepth(DepthModel):
    """LiteDepth (Li et al. 2022): the image is resized inside the network to ``internal_size``
    (480x640 -> 128x160 in the paper), encoded by MobileNetV3 without its 960-channel head
    conv, decoded by 1x1 convs on the deep features and one 3x3 conv at the highest decoded
    resolution with concatenated skips; a ReLU gives depth at 1/4 of the internal size, which
    is resized to the input size. ``features`` are the three decoder levels used by
    structure-aware distillation (``dec16``, ``dec8``, ``dec4``)."""

    first_conv = "encoder.features.0.0"

    def __init__(self, max_depth: float = 80.0, internal_size: str | tuple[int, int] | None = "128x160",
                 variant: str = "large", width: int = 64, encoder_weights: str | None = None) -> None:
        size = None if internal_size in (None, "none", "input") else parse_size(internal_size, "litedepth internal_size")
        if variant not in ("large", "small"):
            raise ConfigError(f"litedepth variant must be 'large' or 'small', got {variant!r}")
        width = check_number(width, "litedepth width", integer=True, low=2, high=MAX_WIDTH)  # the decoder halves it
        super().__init__({"name": "litedepth", "max_depth": max_depth,
                          "internal_size": f"{size[0]}x{size[1]}" if size else None, "variant": variant,
                          "width": width, "encoder_weights": encoder_weights})
        self.internal_size = size
        self.normalize = Normalize()
        self.encoder = build_encoder(f"mobilenet_v3_{variant}", check_weights_path(encoder_weights), drop_head=True)
        c2, c4, c8, c16, c32 = self.encoder.channels
        w = width
        self.reduce32 = ConvBNReLU(c32, w, 1)
        self.fuse16 = ConvBNReLU(w + c16, w, 1)
        self.fuse8 = ConvBNReLU(w + c8, w // 2, 1)
        self.fuse4 = ConvBNReLU(w // 2 + c4, w // 2, 3)
        self.head = DepthHead(w // 2, max_depth, activation="relu", kernel=1)

    def predict(self, x: torch.Tensor) -> dict[str, Any]:
        size = tuple(x.shape[-2:])
        if self.internal_size is not None and size != self.internal_size:
            x = upsample_to(x, self.internal_size)
        f2, f4, f8, f16, f32 = self.encoder(self.normalize(x))
        d16 = self.fuse16(torch.cat([upsample_to(self.reduce32(f32), f16), f16], 1))
        d8 = self.fuse8(torch.cat([upsample_to(d16, f8), f8], 1))
        d4 = self.fuse4(torch.cat([upsample_to(d8, f4), f4], 1))
        low = self.head(d4)
        return {"depth": upsample_to(low, size), "scales": [low], "features": {"dec16": d16, "dec8": d8, "dec4": d4}}
