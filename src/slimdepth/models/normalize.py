"""Folding the input normalisation into the first convolution, exactly, borders included.

conv((x - m) / s) with zero padding equals conv'(x) + b' in the interior, where conv' has the
weights W / s and b' = b - sum(W m / s). At the borders the zero padding of the *normalised*
image is a padding of the raw image with m, so the folded convolution differs there by
sum over the padded taps of W m / s: a constant map for a given input size, zero inside. The
folded layer adds that map (computed once per size), so the outputs match everywhere.
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

    def border_correction(self, height: int, width: int) -> torch.Tensor:
        """sum over padded taps of W' m: shift - conv_{W'}(m everywhere) without the bias."""
        const = self.mean.expand(1, -1, height, width).to(self.conv.weight.dtype)
        inside = F.conv2d(const, self.conv.weight, None, self.conv.stride, self.conv.padding, self.conv.dilation)
        return self.shift - inside

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        if any(p > 0 for p in self.conv.padding):
            out = out + self.border_correction(x.shape[-2], x.shape[-1])
        return out


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
