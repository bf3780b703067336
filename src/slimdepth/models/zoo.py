"""The model zoo: the architectures of the five methods, by name.

``build_model(name, **options)`` builds one; ``list_models()`` lists them. Every model takes the
raw [0, 1] image, normalises it itself, and returns depth in metres at the input size (see
:mod:`slimdepth.models.base`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from slimdepth.errors import ConfigError
from slimdepth.models.backbones import build_encoder, load_pretrained
from slimdepth.models.base import DepthModel, Normalize
from slimdepth.models.blocks import ConvBNReLU, DepthHead, InvertedResidual, SeparableConv, upsample_to
from slimdepth.options import parse_size

_ZOO: dict[str, Callable[..., DepthModel]] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register_model(name: str, description: str) -> Callable:
    """Decorator adding a model class to the zoo under ``name``."""

    def decorator(cls: Callable[..., DepthModel]) -> Callable[..., DepthModel]:
        _ZOO[name] = cls
        _DESCRIPTIONS[name] = description
        return cls

    return decorator


def list_models() -> dict[str, str]:
    """Zoo names and one-line descriptions."""
    return dict(sorted(_DESCRIPTIONS.items()))


def build_model(name: str, **options: Any) -> DepthModel:
    """Build zoo model ``name``; unknown names or options are a :class:`ConfigError`."""
    if name not in _ZOO:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(sorted(_ZOO))}")
    cls = _ZOO[name]
    params = inspect.signature(cls.__init__).parameters
    unknown = [k for k in options if k not in params or k == "self"]
    if unknown:
        accepted = [p for p in params if p != "self"]
        raise ConfigError(f"model {name!r} has no option {', '.join(map(repr, unknown))}; accepted: {', '.join(accepted)}")
    try:
        return cls(**options)
    except (TypeError, ValueError) as exc:
        given = ", ".join(f"{k}={v!r}" for k, v in options.items())
        raise ConfigError(f"model {name!r}: bad option value among {given} ({str(exc).splitlines()[0]})") from None


def _encoder(name: str, weights: str | None, **kw: Any) -> nn.Module:
    encoder = build_encoder(name, **kw)
    if weights:
        load_pretrained(encoder, weights)
    return encoder


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
        super().__init__({"name": name, "max_depth": max_depth, "side_heads": side_heads,
                          "encoder_weights": encoder_weights})
        self.normalize = Normalize()
        self.encoder = _encoder(encoder, encoder_weights)
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
        size = None if internal_size in (None, "none", "input") else parse_size(internal_size, "internal_size")
        super().__init__({"name": "litedepth", "max_depth": max_depth,
                          "internal_size": f"{size[0]}x{size[1]}" if size else None, "variant": variant,
                          "width": width, "encoder_weights": encoder_weights})
        if variant not in ("large", "small"):
            raise ConfigError(f"litedepth variant must be 'large' or 'small', got {variant!r}")
        self.internal_size = size
        self.normalize = Normalize()
        self.encoder = _encoder(f"mobilenet_v3_{variant}", encoder_weights, drop_head=True)
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
        if not 1 <= heads <= 4:
            raise ConfigError(f"tiny-multires heads must be 1..4, got {heads}")
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


@register_model("fastdepth", "MobileNet encoder, NNConv5 depthwise decoder with additive skips (FastDepth baseline)")
class FastDepth(DepthModel):
    """FastDepth (Wofk et al. 2019): MobileNet encoder; five decoder stages of a 5x5 depthwise +
    1x1 pointwise conv followed by nearest up-sampling, with encoder skips added; a 1x1 conv
    gives depth."""

    first_conv = "encoder.features.0.0"

    def __init__(self, max_depth: float = 80.0, encoder_weights: str | None = None) -> None:
        super().__init__({"name": "fastdepth", "max_depth": max_depth, "encoder_weights": encoder_weights})
        self.normalize = Normalize()
        self.encoder = _encoder("mobilenet_v1", encoder_weights)
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
