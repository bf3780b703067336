"""The model contract: raw [0, 1] RGB in, depth in metres at the input size out.

Normalisation is the model's first layer (so it can be folded into the first convolution for
export). ``model(x)`` returns the depth tensor (B, 1, H, W); ``model(x, outputs=(...))`` returns
a dict with any of ``depth``, ``scales`` (lower-resolution depth maps, coarsest first),
``seg`` (segmentation logits), ``features`` (named decoder features for distillation) and
``road`` (a stixel head's road logits, for the road loss).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from slimdepth.errors import ConfigError
from slimdepth.options import check_number

#: ImageNet statistics of torchvision's pretrained weights (RGB, [0, 1] inputs)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OUTPUT_KEYS = ("depth", "scales", "seg", "features", "road")
#: the largest max_depth a model accepts (metres): far beyond any camera's range
MAX_DEPTH = 1e5

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "MAX_DEPTH", "OUTPUT_KEYS", "Auxiliary", "DepthModel", "Normalize", "eval_mode",
           "model_device", "run_outputs"]


class Normalize(nn.Module):
    """Per-channel (x - mean) / std: the first layer of every model."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class DepthModel(nn.Module):
    """Base of every zoo model.

    Subclasses set ``self.normalize`` (a :class:`Normalize`), name the first convolution that
    reads the normalised image in ``first_conv`` (a dotted module path, for folding), keep the
    constructor arguments in ``self.config`` (``name`` + keyword arguments, enough to rebuild
    the model from a checkpoint) and implement :meth:`predict` returning the full output dict.
    """

    first_conv: str = ""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = dict(config)
        self.max_depth = check_number(config.get("max_depth", 80.0), "max_depth", low=0, low_open=True,
                                      expected="positive")
        check_number(self.max_depth, "max_depth (metres)", high=MAX_DEPTH)  # float32 heads overflow long before 1e38

    def predict(self, x: torch.Tensor) -> dict[str, Any]:  # pragma: no cover - abstract
        """All outputs: ``depth`` (B,1,H,W) metres, and ``scales``/``seg``/``features``/``road`` (a stixel
        head's road logits) when the model has them."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, outputs: Sequence[str] = ()) -> torch.Tensor | dict[str, Any]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ConfigError(f"model input must be a (B, 3, H, W) RGB batch, got shape {tuple(x.shape)}")
        out = self.predict(x)
        if not outputs:
            return out["depth"]
        unknown = [k for k in outputs if k not in OUTPUT_KEYS]
        if unknown:
            raise ConfigError(f"unknown model output(s) {unknown}; choose from {', '.join(OUTPUT_KEYS)}")
        return {k: out[k] for k in outputs if k in out}

    @property
    def name(self) -> str:
        return str(self.config.get("name", type(self).__name__))


class Auxiliary:
    """Marks a module that is not part of the architecture a zoo config describes.

    Compression and distillation add such modules to a network (a dynamic-gating saliency
    predictor, a feature adapter); each is rebuilt from its own config entry, so the width
    bookkeeping of :mod:`slimdepth.models.widths` passes over them.
    """


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode and restore every submodule's own training flag afterwards.

    Per-module restore (not ``model.train(flag)``) keeps mixed states intact, e.g. a model
    training with frozen BatchNorm layers.
    """
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def run_outputs(model: nn.Module, x: torch.Tensor, outputs: Sequence[str]) -> Any:
    """``model(x, outputs=outputs)`` for a :class:`DepthModel`, plain ``model(x)`` for any other module
    (tracing and width bookkeeping run the layers behind the named outputs)."""
    if isinstance(model, DepthModel):
        return model(x, outputs=tuple(outputs))
    return model(x)


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU for a model without tensors)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")
