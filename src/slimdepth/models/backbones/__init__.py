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

import os
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
from slimdepth.registry import Registry

#: encoders for dense prediction (feature maps at strides 2..32), by name
ENCODERS = Registry("encoder")
#: the full ImageNet classifiers, module for module torchvision's, by name
CLASSIFIERS = Registry("classifier")
for _name, _encoder, _classifier in (
        ("resnet18", partial(resnet_encoder, "resnet18"), resnet18),
        ("resnet34", partial(resnet_encoder, "resnet34"), resnet34),
        ("resnet50", partial(resnet_encoder, "resnet50"), resnet50),
        ("mobilenet_v3_large", partial(MobileNetV3Encoder, "large"), mobilenet_v3_large),
        ("mobilenet_v3_small", partial(MobileNetV3Encoder, "small"), mobilenet_v3_small),
        ("mobilenet_v3_small_minimal", partial(MobileNetV3Encoder, "small_minimal"), partial(MobileNetV3, "small_minimal")),
        ("mobilenet_v1", MobileNetV1Encoder, mobilenet_v1)):
    ENCODERS.add(_name, _encoder)
    CLASSIFIERS.add(_name, _classifier)


def check_weights_path(weights: Any) -> str | None:
    """An ImageNet weights option: ``None`` (random initialisation) or a file path."""
    if weights is None or (isinstance(weights, str) and weights):
        return weights
    if isinstance(weights, os.PathLike):
        return os.fspath(weights)
    raise ConfigError(f"encoder_weights must be the path of a weights file (or null), got {weights!r}")


def build_encoder(name: str, weights: str | os.PathLike | None = None, **kw: Any) -> nn.Module:
    """Encoder ``name`` (see :func:`list_backbones`) for dense prediction.

    Randomly initialised, or from an ImageNet ``weights`` file in torchvision's names (loaded
    with :func:`load_pretrained`). Options: ``zero_init_residual`` (ResNets), ``drop_head``
    (MobileNetV3, default True).
    """
    encoder = ENCODERS.build(name, **kw)
    if weights is not None:
        load_pretrained(encoder, check_weights_path(weights))
    return encoder


def build_classifier(name: str, **kw: Any) -> nn.Module:
    """The full ImageNet classifier ``name``, with torchvision's names (options: ``num_classes``...)."""
    return CLASSIFIERS.build(name, **kw)


def list_backbones() -> list[str]:
    """Names accepted by :func:`build_encoder` and :func:`build_classifier`."""
    return list(ENCODERS)


__all__ = [
    "CLASSIFIERS",
    "CLASSIFIER_PREFIXES",
    "ENCODERS",
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
    "check_weights_path",
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
