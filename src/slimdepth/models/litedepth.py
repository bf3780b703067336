"""LiteDepth (method 4, Li et al. 2022): MobileNetV3 encoder, in-network resize, light decoder."""

from __future__ import annotations

from typing import Any

import torch

from slimdepth.errors import ConfigError
from slimdepth.models.backbones import build_encoder, check_weights_path
from slimdepth.models.base import DepthModel, Normalize
from slimdepth.models.blocks import ConvBNReLU, DepthHead, PopUpHead, RoadPriorHead, upsample_to
from slimdepth.models.zoo import MAX_WIDTH, check_widths, register_model
from slimdepth.options import check_number, parse_size

__all__ = ["LiteDepth", "litedepth_released"]

#: encoder variants: MobileNetV3 Large, Small, and timm's Small "minimal" (LiteDepth's release)
VARIANTS = ("large", "small", "small_minimal")
#: the heads ``road_prior`` chooses: the flat road corrected (true), or a stixel world on it ("popup")
ROAD_PRIORS = {True: RoadPriorHead, "popup": PopUpHead, False: None}


@register_model("litedepth", "method 4: MobileNetV3 without its head conv, in-network resize, light decoder, ReLU output at 1/4")
class LiteDepth(DepthModel):
    """LiteDepth (Li et al. 2022): the image is resized inside the network to ``internal_size``
    (480x640 -> 128x160 in the paper), encoded by MobileNetV3 without its 960-channel head
    conv, decoded by 1x1 convs on the deep features and one 3x3 conv at the highest decoded
    resolution with concatenated skips; a ReLU gives depth at 1/4 of the internal size, which
    is resized to the input size. ``features`` are the three decoder levels used by
    structure-aware distillation (``dec16``, ``dec8``, ``dec4``). With ``road_prior`` the head
    corrects the depth of a flat road seen by a KITTI-like camera instead of predicting depth
    from nothing (:class:`~slimdepth.models.blocks.RoadPriorHead`); with ``road_prior="popup"``
    it also stands upright things on that road at the depth of their foot
    (:class:`~slimdepth.models.blocks.PopUpHead`)."""

    first_conv = "encoder.features.0.0"

    def __init__(self, max_depth: float = 80.0, internal_size: str | tuple[int, int] | None = "128x160",
                 variant: str = "large", width: int = 64, encoder_weights: str | None = None,
                 decoder_widths: list[int] | None = None, upsample: str = "bilinear", road_prior: bool | str = False) -> None:
        size = None if internal_size in (None, "none", "input") else parse_size(internal_size, "litedepth internal_size")
        if variant not in VARIANTS:
            raise ConfigError(f"litedepth variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
        if upsample not in ("bilinear", "nearest"):
            raise ConfigError(f"litedepth upsample must be 'bilinear' or 'nearest', got {upsample!r}")
        if not isinstance(road_prior, (bool, str)) or road_prior not in ROAD_PRIORS:
            raise ConfigError(f"litedepth road_prior must be true, false or 'popup', got {road_prior!r}")
        width = check_number(width, "litedepth width", integer=True, low=2, high=MAX_WIDTH)  # the decoder halves it
        # (1/4, 1/8, 1/16) decoder widths; the default derives them from ``width`` as the paper's decoder does
        widths = check_widths(decoder_widths, "litedepth decoder_widths", 3) if decoder_widths is not None else \
            (width // 2, width // 2, width)
        super().__init__({"name": "litedepth", "max_depth": max_depth,
                          "internal_size": f"{size[0]}x{size[1]}" if size else None, "variant": variant,
                          "width": width, "encoder_weights": encoder_weights,
                          **({"decoder_widths": list(widths)} if decoder_widths is not None else {}),
                          **({"upsample": upsample} if upsample != "bilinear" else {}),
                          **({"road_prior": road_prior} if road_prior else {})})
        self.internal_size = size
        self.upsample = upsample
        self.normalize = Normalize()
        self.encoder = build_encoder(f"mobilenet_v3_{variant}", check_weights_path(encoder_weights), drop_head=True)
        c2, c4, c8, c16, c32 = self.encoder.channels
        w4, w8, w16 = widths
        self.reduce32 = ConvBNReLU(c32, w16, 1)
        self.fuse16 = ConvBNReLU(w16 + c16, w16, 1)
        self.fuse8 = ConvBNReLU(w16 + c8, w8, 1)
        self.fuse4 = ConvBNReLU(w8 + c4, w4, 3)
        # road_prior: depth as a learned correction of the flat road a KITTI-like camera sees, or
        # of a stixel world standing on it ("popup")
        self.head = ROAD_PRIORS[road_prior](w4, max_depth) if road_prior else \
            DepthHead(w4, max_depth, activation="relu", kernel=1)

    @property
    def has_road_logits(self) -> bool:
        """Whether :meth:`predict` hands out ``road`` (the stixel head's road logits, for ``loss.road_weight``)."""
        return isinstance(self.head, PopUpHead)

    def predict(self, x: torch.Tensor) -> dict[str, Any]:
        size = tuple(x.shape[-2:])
        if self.internal_size is not None and size != self.internal_size:
            x = upsample_to(x, self.internal_size)
        f2, f4, f8, f16, f32 = self.encoder(self.normalize(x))
        d16 = self.fuse16(torch.cat([upsample_to(self.reduce32(f32), f16), f16], 1))
        d8 = self.fuse8(torch.cat([upsample_to(d16, f8), f8], 1))
        d4 = self.fuse4(torch.cat([upsample_to(d8, f4), f4], 1))
        road = None
        if isinstance(self.head, PopUpHead):
            low, road = self.head.parts(d4, size)
        else:
            low = self.head(d4, size) if isinstance(self.head, RoadPriorHead) else self.head(d4)
        out = {"depth": upsample_to(low, size, self.upsample), "scales": [low], "features": {"dec16": d16, "dec8": d8, "dec4": d4}}
        if road is not None:
            out["road"] = road  # the stixel head's road logits, for loss.road_weight
        return out


@register_model("litedepth-released", "LiteDepth as released for MAI2022: minimal MobileNetV3-Small, decoder 8/24/72, "
                "nearest final upsample (~1.4 MB)")
def litedepth_released(max_depth: float = 80.0, internal_size: str | tuple[int, int] | None = "128x160",
                       encoder_weights: str | None = None, upsample: str = "nearest") -> LiteDepth:
    """The network of LiteDepth's released configuration: timm's ``tf_mobilenetv3_small_minimal_100``
    encoder (no squeeze-excitation, ReLU, 3x3 kernels; here with PyTorch's symmetric padding
    where TF pads stride-2 convs asymmetrically -- the weights are the same), decoder widths
    (8, 24, 72) at 1/4, 1/8 and 1/16 of the internal 128x160, and a nearest upsample of the
    output to the input size (``upsample="bilinear"`` for the smooth one). It is a
    :class:`LiteDepth` and saves as one (zoo name ``litedepth`` with these options)."""
    return LiteDepth(max_depth, internal_size, "small_minimal", 144, encoder_weights, [8, 24, 72], upsample)
