"""The sparse batch-1 path of dynamic gating: compute only the kept channels, read only those.

At batch 1 in eval mode a gated conv runs ``F.conv2d`` on the weight rows of its top-k channels
only, with the BatchNorm folded into those rows (cached per weight version, :class:`FoldCache`),
and the next conv reads only those channels (its weight columns are gathered, :func:`take`).
The helpers here are the kernels of that path and the MAC count each call really executes
(:func:`conv_macs`), which the executed-cost measurement adds up.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FoldCache", "bn_affine", "conv_macs", "fold_bn", "out_hw", "select_top", "sparse_conv_bn", "take"]


def out_hw(conv: nn.Conv2d, h: int, w: int) -> tuple[int, int]:
    """Output spatial size of ``conv`` for an ``h`` x ``w`` input."""
    size = []
    for n, k, s, p, d in zip((h, w), conv.kernel_size, conv.stride, conv.padding, conv.dilation):
        size.append((n + 2 * p - d * (k - 1) - 1) // s + 1)
    return size[0], size[1]


def conv_macs(conv: nn.Conv2d, cin: int, cout: int, out_size: tuple[int, int]) -> int:
    """Multiply-adds per image of ``conv`` restricted to ``cin`` inputs and ``cout`` outputs."""
    kh, kw = conv.kernel_size
    return cout * (cin // conv.groups) * kh * kw * out_size[0] * out_size[1]


def bn_affine(bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Eval-mode BN as ``y * scale + shift``."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale, shift


def fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Conv weight and bias with the eval-mode BN folded in."""
    scale, shift = bn_affine(bn)
    weight = conv.weight * scale.view(-1, 1, 1, 1)
    bias = shift if conv.bias is None else shift + conv.bias * scale
    return weight, bias


def _version_key(tensors: Sequence[Tensor | None]) -> tuple | None:
    """Identity and in-place version of each tensor, or ``None`` when versions are not tracked."""
    try:
        return tuple((t.data_ptr(), t._version, t.dtype, t.device) if t is not None else None for t in tensors)
    except RuntimeError:  # inference tensors have no version counter
        return None


class FoldCache:
    """Per-module cache of BN-folded conv weights for the sparse path (not part of the state)."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[tuple, Tensor, Tensor]] = {}

    def get(self, name: str, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
        """Folded (weight, bias); recomputed when a parameter or statistic changed, or under autograd."""
        if torch.is_grad_enabled() and (conv.weight.requires_grad or any(
                p is not None and p.requires_grad for p in (bn.weight, bn.bias))):
            return fold_bn(conv, bn)  # differentiable, never cached
        key = _version_key((conv.weight, conv.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var))
        if key is not None:
            key = key + (bn.eps,)
            hit = self.entries.get(name)
            if hit is not None and hit[0] == key:
                return hit[1], hit[2]
        with torch.inference_mode(False), torch.no_grad():
            weight, bias = fold_bn(conv, bn)
            weight, bias = weight.contiguous(), bias.contiguous()
        if key is not None:
            self.entries[name] = (key, weight, bias)
        return weight, bias

    def __deepcopy__(self, memo: dict) -> FoldCache:
        return FoldCache()


def take(weight: Tensor, rows: Tensor | None, cols: Tensor | None) -> Tensor:
    """``weight[rows][:, cols]`` (either may be ``None`` = all) as one gather where possible."""
    if rows is None and cols is None:
        return weight
    if cols is None:
        return weight.index_select(0, rows)
    if rows is None:
        return weight.index_select(1, cols)
    cout, cin = weight.shape[:2]
    flat = (rows.unsqueeze(1) * cin + cols.unsqueeze(0)).reshape(-1)
    return weight.reshape(cout * cin, -1).index_select(0, flat).reshape(rows.numel(), cols.numel(), *weight.shape[2:])


def sparse_conv_bn(conv: nn.Conv2d, folded: tuple[Tensor, Tensor], x: Tensor, values: Tensor,
                    rows: Tensor | None, cols: Tensor | None, relu: bool) -> Tensor:
    """``[ReLU](values * BN(conv(x)))`` for output channels ``rows`` only, reading input channels ``cols``.

    ``x`` already holds only the ``cols`` channels (or all when ``cols`` is None). The boosting
    values multiply the folded weights when they are smaller than the output, else the output.
    """
    full, bias = folded
    inplace = not torch.is_grad_enabled()
    weight = take(full, rows, cols)
    if rows is not None:
        bias = bias.index_select(0, rows)
    oh, ow = out_hw(conv, x.shape[-2], x.shape[-1])
    v = values.reshape(-1)
    if weight[0].numel() <= oh * ow:
        scale = v.view(-1, 1, 1, 1)
        weight = weight.mul_(scale) if inplace and weight is not full else weight * scale
        y = F.conv2d(x, weight, bias * v, conv.stride, conv.padding, conv.dilation, conv.groups)
    else:
        y = F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
        y = y.mul_(v.view(1, -1, 1, 1)) if inplace else y * v.view(1, -1, 1, 1)
    if relu:
        y = y.relu_() if inplace else F.relu(y)
    return y


def select_top(g: Tensor, k: int) -> tuple[Tensor, Tensor | None]:
    """Kept saliency values and their channel indices for one sample (indices None = all kept)."""
    g = g[0]
    if k >= g.numel():
        return g, None
    values, idx = g.topk(k, sorted=False)
    idx, order = idx.sort()  # ascending channels: cache-friendlier gathers and scatters
    return values.index_select(0, order), idx
