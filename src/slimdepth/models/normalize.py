"""Folding the input normalisation into the first convolution, exactly, borders included.

conv((x - m) / s) with weights W and bias b equals conv'(x - m) + b, where conv' has the
weights W / s: the division by the standard deviation moves into the weights, and what is left
of the normalisation is the subtraction of the per-channel mean from the 3-channel image. That
subtraction stays in front of the convolution on purpose: zero padding of ``x - m`` *is* zero
padding of the normalised image, so the borders are exact. (Folding the mean into the bias as
well, b - sum(W m / s), is exact only in the interior: at the borders the padded taps would see
-m / s instead of 0, and correcting that takes a full-resolution map of every output channel --
what an earlier version added, at a run-time cost larger than the subtraction's, and a graph
that litert-torch converted wrongly because the map reused the convolution's weights.)

The stored parameters keep that earlier layout, so folded checkpoints saved before load
unchanged: ``conv.weight`` is W / s, ``conv.bias`` the interior bias b - sum(W m / s), ``shift``
the sum(W m / s) that the forward pass adds back, ``mean`` the per-channel mean.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from slimdepth.errors import ConfigError
from slimdepth.models.base import DepthModel, Normalize


class FoldedConv2d(nn.Module):
    """A Conv2d that reads the raw [0, 1] image and equals the original conv on the normalised one."""

    def __init__(self, conv: nn.Conv2d, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        if conv.groups != 1 or conv.in_channels != mean.numel():
            raise ConfigError("the first convolution must be a dense conv over the image channels to fold the normalisation")
        if conv.padding_mode != "zeros":
            raise ConfigError("folding the normalisation needs a zero-padded first convolution")
        scale = (1.0 / std).view(1, -1, 1, 1)
        weight = conv.weight.detach() * scale
        shift = (weight * mean.view(1, -1, 1, 1)).sum(dim=(1, 2, 3))
        bias = (conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels)) - shift
        self.conv = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                              conv.dilation, 1, True, conv.padding_mode)
        self.conv.weight = nn.Parameter(weight.clone())
        self.conv.bias = nn.Parameter(bias.clone())
        self.register_buffer("mean", mean.detach().view(1, -1, 1, 1).clone())
        self.register_buffer("shift", shift.view(1, -1, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        bias = conv.bias + self.shift.flatten()  # b: the stored bias is the interior one (see above)
        return F.conv2d(x - self.mean, conv.weight, bias, conv.stride, conv.padding, conv.dilation)


def _get(module: nn.Module, path: str) -> nn.Module:
    for part in path.split("."):
        module = getattr(module, part)
    return module


def _set(module: nn.Module, path: str, value: nn.Module) -> None:
    parent, _, last = path.rpartition(".")
    setattr(_get(module, parent) if parent else module, last, value)


def fold_normalization(model: DepthModel) -> DepthModel:
    """A copy of ``model`` whose first convolution absorbs the input normalisation.

    The copy reads the raw [0, 1] image directly (its ``normalize`` is the identity) and gives
    the same outputs, borders included. ``model`` itself is left unchanged.
    """
    if not isinstance(getattr(model, "normalize", None), Normalize) or not model.first_conv:
        raise ConfigError(f"{type(model).__name__} has no foldable normalisation (already folded?)")
    folded = copy.deepcopy(model)
    conv = _get(folded, folded.first_conv)
    if not isinstance(conv, nn.Conv2d):
        raise ConfigError(f"{folded.first_conv} is not a Conv2d")
    _set(folded, folded.first_conv, FoldedConv2d(conv, folded.normalize.mean.flatten(), folded.normalize.std.flatten()))
    folded.normalize = nn.Identity()
    folded.config = {**folded.config, "folded_normalization": True}
    return folded
