"""Backbones with torchvision's module names: ResNet-18/34/50, MobileNetV3 Large/Small, and
MobileNet v1 (FastDepth's encoder, which torchvision lacks).

Classifiers (``build_classifier``) are module-for-module torchvision's, so an ImageNet state
dict a user already has loads with strict key checking. Encoders (``build_encoder``) are the
same networks without the classifier and global pooling and share one interface:

* ``forward(x) -> list[Tensor]``: feature maps at strides 2, 4, 8, 16, 32;
* ``channels`` and ``strides``: tuples describing that list;
* ``dropped_keys``: prefixes of the classifier's keys the encoder lacks on purpose, which
  :func:`load_pretrained` tolerates, so the classifier's file loads into the encoder.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from typing import Any

from torch import nn

from slimdepth.errors import ConfigError
from slimdepth.models.backbones.mobilenet import MobileNetV1, MobileNetV1Encoder, mobilenet_v1
from slimdepth.models.backbones.mobilenetv3 import (
    MobileNetV3,
    MobileNetV3Encoder,
    mobilenet_v3_large,
    mobilenet_v3_small,
)
from slimdepth.models.backbones.resnet import (
    BasicBlock,
    Bottleneck,
    ResNet,
    ResNetEncoder,
    resnet18,
    resnet34,
    resnet50,
    resnet_encoder,
)
from slimdepth.models.backbones.weights import CLASSIFIER_PREFIXES, load_pretrained, load_state_dict_file

_ENCODERS: dict[str, Callable[..., nn.Module]] = {
    "resnet18": partial(resnet_encoder, "resnet18"),
    "resnet34": partial(resnet_encoder, "resnet34"),
    "resnet50": partial(resnet_encoder, "resnet50"),
    "mobilenet_v3_large": partial(MobileNetV3Encoder, "large"),
    "mobilenet_v3_small": partial(MobileNetV3Encoder, "small"),
    "mobilenet_v1": MobileNetV1Encoder,
}

_CLASSIFIERS: dict[str, Callable[..., nn.Module]] = {
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "mobilenet_v3_large": mobilenet_v3_large,
    "mobilenet_v3_small": mobilenet_v3_small,
    "mobilenet_v1": mobilenet_v1,
}


def _build(kind: str, table: dict[str, Callable[..., nn.Module]], name: str, kw: dict[str, Any]) -> nn.Module:
    """Call ``table[name](**kw)``, turning an unknown name or option into a ConfigError."""
    if name not in table:
        raise ConfigError(f"unknown {kind} {name!r}; choose from {', '.join(table)}")
    params = inspect.signature(table[name]).parameters
    unknown = [k for k in kw if k not in params]
    if unknown:
        accepted = ", ".join(params) or "none"
        raise ConfigError(f"{kind} {name!r} has no option {', '.join(map(repr, unknown))}; accepted: {accepted}")
    return table[name](**kw)


def build_encoder(name: str, **kw: Any) -> nn.Module:
    """Encoder ``name`` (see :func:`list_backbones`) for dense prediction, randomly initialised.

    Options: ``zero_init_residual`` (ResNets), ``drop_head`` (MobileNetV3, default True).
    """
    return _build("encoder", _ENCODERS, name, kw)


def build_classifier(name: str, **kw: Any) -> nn.Module:
    """The full ImageNet classifier ``name``, with torchvision's names (options: ``num_classes``...)."""
    return _build("classifier", _CLASSIFIERS, name, kw)


def list_backbones() -> list[str]:
    """Names accepted by :func:`build_encoder` and :func:`build_classifier`."""
    return list(_ENCODERS)


__all__ = [
    "CLASSIFIER_PREFIXES",
    "BasicBlock",
    "Bottleneck",
    "MobileNetV1",
    "MobileNetV1Encoder",
    "MobileNetV3",
    "MobileNetV3Encoder",
    "ResNet",
    "ResNetEncoder",
    "build_classifier",
    "build_encoder",
    "list_backbones",
    "load_pretrained",
    "load_state_dict_file",
    "mobilenet_v1",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet_encoder",
]
