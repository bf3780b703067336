"""Dynamic channel gating (method 2): feature boosting and suppression (Gao et al. 2019).

A gated convolution computes ``f(x) = ReLU(p(x) * BN(conv(x)))`` with ``p(x) = wta_k(g(x))``,
``g(x) = ReLU(W s(x) + b)`` and ``s(x)`` the per-channel spatial mean of ``|x|`` over the layer
*input*. ``W`` (a :class:`SaliencyGate`, one ``Linear(C_in, C_out)`` per gated conv) predicts
the saliency of every output channel; k-winner-takes-all keeps the ``k = round(density * C_out)``
largest saliencies of each sample and zeroes the rest, and the kept values scale their channels
(boosting).

Where gates go:

* ``layers="bottlenecks"``: every ResNet ``Bottleneck`` (conv1+bn1 and conv2+bn2 gated) and
  ``BasicBlock`` (conv1+bn1 gated) becomes a :class:`GatedBottleneck` / :class:`GatedBasicBlock`.
  The last conv of a block, which feeds the residual addition, is not gated, so residual sums
  stay dense.
* any dotted name of a ``Conv2d`` registered immediately before a ``BatchNorm2d`` in its parent
  (e.g. ``"decoder.stages.0.0"``; the name of a ``ConvBNReLU`` sequential also works): the pair
  becomes :class:`GatedConv2d` + :class:`GatedBatchNorm2d`. The gated output is scattered back
  to ``C_out`` channels (zeros where suppressed) so that whatever lies between it and the next
  conv (ReLU, resize, concatenation with a skip) is unchanged; the next convs themselves read
  only the surviving channels: torch-pruning's dependency graph (:mod:`slimdepth.compress.groups`)
  finds every conv that reads the gated channels and at which input index, and each becomes a
  reader (:class:`SlicedInputConv2d`, or the :class:`GatedConv2d` it already is) that gathers
  the kept input channels and the matching weight columns. Channels also fed by another layer
  (a residual sum) are read in full. A list may mix such names, block names and the word
  ``"bottlenecks"``.

Execution paths (chosen per call by each gated module):

* **masked dense** (training, any batch size; eval with batch > 1): the dense conv is computed
  and multiplied by ``p`` -- the reference semantics, differentiable, BN in training mode sees
  the dense conv output.
* **sparse** (eval mode, batch 1): suppressed channels are not computed. The gated conv runs
  ``F.conv2d`` on the weight rows of the top-k channels only (BN folded into those rows,
  cached per weight version when autograd is off), giving a compact ``k``-channel tensor; the
  next conv of the block reads only those channels (its weight columns are sliced): in a
  Bottleneck conv1 computes ``k1`` of ``C1`` channels, conv2 reads them and computes ``k2`` of
  ``C2``, conv3 reads the ``k2`` and produces the full output for the residual.
  Batch > 1 in eval mode falls back to the masked dense path (mode ``"sparse"`` instead runs the
  sparse path once per sample).
* **off**: the original, ungated computation with the same weights (for dense timings).

The gated modules keep the original conv/BN modules under the original names, so an ungated
checkpoint loads into a gated model with only the ``gate*`` predictor parameters missing
(``load_state_dict(state, strict=False)``), and :func:`remove_gating` restores the original
modules. :func:`add_gating` converts **in place** and returns the same model.

A top-k selection is a discontinuous function: if two saliencies are within float rounding of
each other at the k-th place, the sparse and masked paths (whose convs sum in different orders)
can pick different channels. With continuous inputs this is vanishingly rare.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slimdepth.errors import ConfigError

__all__ = [
    "GATING_MODES",
    "GatedBasicBlock",
    "GatedBatchNorm2d",
    "GatedBottleneck",
    "GatedConv2d",
    "GatingReport",
    "SaliencyGate",
    "SlicedInputConv2d",
    "add_gating",
    "apply_gating_config",
    "executed_macs",
    "gating_config",
    "gating_l1",
    "gating_mode",
    "gated_layers",
    "gating_report",
    "is_gated",
    "latency_comparison",
    "remove_gating",
    "set_density",
    "set_gating_mode",
    "wta",
]

#: ``auto``: sparse at eval batch 1, masked dense otherwise; ``masked``: always the masked dense
#: reference; ``sparse``: the sparse path (per sample when batch > 1) whenever not training;
#: ``off``: the ungated network.
GATING_MODES = ("auto", "masked", "sparse", "off")
#: predictor initialisations: ``noisy`` = bias 1 and small random weights (g close to 1, ties
#: broken); ``ones`` = bias 1 and zero weights (g == 1: at density 1 the ungated network exactly)
PREDICTOR_INITS = ("noisy", "ones")
BOTTLENECKS = "bottlenecks"


# --------------------------------------------------------------------------------------------
# the saliency predictor and k-winner-takes-all


def keep_count(density: float, channels: int) -> int:
    """``k = round(density * channels)`` (halves round up), at least 1 and at most ``channels``."""
    return max(1, min(channels, int(math.floor(density * channels + 0.5))))


def _check_density(density: Any, where: str = "density") -> float:
    if isinstance(density, bool) or not isinstance(density, (int, float)) or not 0.0 < float(density) <= 1.0:
        raise ConfigError(f"{where} must be a number in (0, 1], got {density!r}")
    return float(density)


class SaliencyGate(nn.Linear):
    """``g = ReLU(W s + b)``: predicts the saliency of each output channel of one gated conv.

    ``density`` sets ``k``; ``target`` is the dotted name of the gated conv; ``last_saliency``
    holds ``g`` (B, C_out) of the last forward, with its graph, for :func:`gating_l1`.
    """

    def __init__(self, in_channels: int, out_channels: int, density: float = 0.5, target: str = "",
                 init: str = "noisy") -> None:
        super().__init__(in_channels, out_channels, bias=True)
        self.target = target
        self.density = _check_density(density)
        self.last_saliency: Tensor | None = None
        self.reset_predictor(init)

    @property
    def density(self) -> float:
        return self._density

    @density.setter
    def density(self, value: float) -> None:
        self._density = _check_density(value)
        self.k = keep_count(self._density, self.out_features)

    def reset_predictor(self, init: str = "noisy") -> None:
        """Bias 1 and weights N(0, (0.01 / sqrt(C_in))^2) (``noisy``: g = 1 + small input-dependent
        noise, which breaks top-k ties) or 0 (``ones``: g == 1)."""
        if init not in PREDICTOR_INITS:
            raise ConfigError(f"predictor_init must be one of {', '.join(PREDICTOR_INITS)}, got {init!r}")
        with torch.no_grad():
            self.bias.fill_(1.0)
            if init == "ones":
                self.weight.zero_()
            else:
                self.weight.normal_(0.0, 0.01 / math.sqrt(self.in_features))

    def forward(self, s: Tensor, columns: Tensor | None = None) -> Tensor:
        """Saliencies ``g`` (B, C_out) of spatial means ``s``; ``columns``: ``s`` holds only these input channels."""
        weight = self.weight if columns is None else self.weight.index_select(1, columns)
        g = F.relu(F.linear(s, weight, self.bias))
        self.last_saliency = g
        return g

    def __getstate__(self) -> dict[str, Any]:
        # the last saliencies carry their autograd graph, which cannot be copied or pickled
        state = super().__getstate__()
        state["last_saliency"] = None
        return state

    def macs(self, in_channels: int | None = None) -> int:
        """Multiply-adds of one prediction (per image) reading ``in_channels`` inputs."""
        return (self.in_features if in_channels is None else in_channels) * self.out_features

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, density={self.density:g}, k={self.k}"


def wta(g: Tensor, k: int) -> Tensor:
    """k-winner-takes-all over dim 1: keep the ``k`` largest values of each row, zero the rest.

    Differentiable with respect to the kept values (the selection itself is not).
    """
    if k >= g.shape[1]:
        return g
    idx = g.topk(k, dim=1, sorted=False).indices
    mask = torch.zeros_like(g).scatter_(1, idx, 1.0)
    return g * mask


def _spatial_mean_abs(x: Tensor, nonnegative: bool = False) -> Tensor:
    """``s(x)``: per-channel spatial mean of ``|x|`` (B, C).

    ``abs`` is skipped (bit-identical result) for inputs known to be >= 0 -- the ReLU outputs
    inside a block -- or found to be so: a min-reduction is far cheaper than materialising
    ``|x|`` for a large activation (typically the ReLU/max-pool/bilinear outputs a block or
    decoder conv reads).
    """
    if nonnegative or bool(x.amin() >= 0):
        return x.mean(dim=(2, 3))
    return x.abs().mean(dim=(2, 3))


# --------------------------------------------------------------------------------------------
# the sliced conv of the sparse path


def _out_hw(conv: nn.Conv2d, h: int, w: int) -> tuple[int, int]:
    """Output spatial size of ``conv`` for an ``h`` x ``w`` input."""
    size = []
    for n, k, s, p, d in zip((h, w), conv.kernel_size, conv.stride, conv.padding, conv.dilation):
        size.append((n + 2 * p - d * (k - 1) - 1) // s + 1)
    return size[0], size[1]


def _conv_macs(conv: nn.Conv2d, cin: int, cout: int, out_hw: tuple[int, int]) -> int:
    """Multiply-adds per image of ``conv`` restricted to ``cin`` inputs and ``cout`` outputs."""
    kh, kw = conv.kernel_size
    return cout * (cin // conv.groups) * kh * kw * out_hw[0] * out_hw[1]


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Eval-mode BN as ``y * scale + shift``."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale, shift


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Conv weight and bias with the eval-mode BN folded in."""
    scale, shift = _bn_affine(bn)
    weight = conv.weight * scale.view(-1, 1, 1, 1)
    bias = shift if conv.bias is None else shift + conv.bias * scale
    return weight, bias


def _version_key(tensors: Sequence[Tensor | None]) -> tuple | None:
    """Identity and in-place version of each tensor, or ``None`` when versions are not tracked."""
    try:
        return tuple((t.data_ptr(), t._version, t.dtype, t.device) if t is not None else None for t in tensors)
    except RuntimeError:  # inference tensors have no version counter
        return None


class _FoldCache:
    """Per-module cache of BN-folded conv weights for the sparse path (not part of the state)."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[tuple, Tensor, Tensor]] = {}

    def get(self, name: str, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
        """Folded (weight, bias); recomputed when a parameter or statistic changed, or under autograd."""
        if torch.is_grad_enabled() and (conv.weight.requires_grad or any(
                p is not None and p.requires_grad for p in (bn.weight, bn.bias))):
            return _fold(conv, bn)  # differentiable, never cached
        key = _version_key((conv.weight, conv.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var))
        if key is not None:
            key = key + (bn.eps,)
            hit = self.entries.get(name)
            if hit is not None and hit[0] == key:
                return hit[1], hit[2]
        with torch.inference_mode(False), torch.no_grad():
            weight, bias = _fold(conv, bn)
            weight, bias = weight.contiguous(), bias.contiguous()
        if key is not None:
            self.entries[name] = (key, weight, bias)
        return weight, bias

    def __deepcopy__(self, memo: dict) -> _FoldCache:
        return _FoldCache()


def _take(weight: Tensor, rows: Tensor | None, cols: Tensor | None) -> Tensor:
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


def _sparse_conv_bn(conv: nn.Conv2d, folded: tuple[Tensor, Tensor], x: Tensor, values: Tensor,
                    rows: Tensor | None, cols: Tensor | None, relu: bool) -> Tensor:
    """``[ReLU](values * BN(conv(x)))`` for output channels ``rows`` only, reading input channels ``cols``.

    ``x`` already holds only the ``cols`` channels (or all when ``cols`` is None). The boosting
    values multiply the folded weights when they are smaller than the output, else the output.
    """
    full, bias = folded
    inplace = not torch.is_grad_enabled()
    weight = _take(full, rows, cols)
    if rows is not None:
        bias = bias.index_select(0, rows)
    oh, ow = _out_hw(conv, x.shape[-2], x.shape[-1])
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


def _select(g: Tensor, k: int) -> tuple[Tensor, Tensor | None]:
    """Kept saliency values and their channel indices for one sample (indices None = all kept)."""
    g = g[0]
    if k >= g.numel():
        return g, None
    values, idx = g.topk(k, sorted=False)
    idx, order = idx.sort()  # ascending channels: cache-friendlier gathers and scatters
    return values.index_select(0, order), idx


# --------------------------------------------------------------------------------------------
# gated modules


class _GatedModule(nn.Module):
    """Shared state of every gated module: path choice and the MACs of the last forward."""

    gating_mode: str = "auto"

    def _init_gated(self) -> None:
        self.__dict__["_fold_cache"] = _FoldCache()
        self.__dict__["last_path"] = ""
        self.__dict__["last_macs"] = {}

    def _path(self, batch: int) -> str:
        mode = self.gating_mode
        if mode == "off":
            return "off"
        if self.training or mode == "masked":
            return "masked"
        if mode == "sparse" or batch == 1:
            return "sparse" if self._sparse_ok() else "masked"
        return "masked"

    def _sparse_ok(self) -> bool:
        return True

    def gates(self) -> Iterator[SaliencyGate]:
        """This module's saliency predictors."""
        return (m for m in self.children() if isinstance(m, SaliencyGate))


def _eval_bn(bn: nn.BatchNorm2d) -> bool:
    return bn.running_mean is not None and bn.running_var is not None


class _GatedResBlock(_GatedModule):
    """Base of the gated ResNet blocks: adopts the original block's modules under their names."""

    #: (conv, bn) names of the gated pairs, in order; the last conv is read but not gated
    pairs: tuple[tuple[str, str], ...] = ()
    last: tuple[str, str] = ("", "")

    def __init__(self, block: nn.Module, name: str = "", density: float | Sequence[float] = 0.5,
                 init: str = "noisy") -> None:
        super().__init__()
        self._init_gated()
        self.__dict__["original_class"] = type(block)
        for key, module in block._modules.items():
            self.add_module(key, module)
        plain = [k for k in vars(block) if not k.startswith("_") and k != "training" and k not in block._modules]
        self.__dict__["_plain_attrs"] = plain
        for key in plain:  # stride, and downsample when it is None
            setattr(self, key, getattr(block, key))
        densities = [density] * len(self.pairs) if isinstance(density, (int, float)) else list(density)
        cin = getattr(self, self.pairs[0][0]).in_channels
        for i, ((conv_name, _), d) in enumerate(zip(self.pairs, densities), start=1):
            conv = getattr(self, conv_name)
            gate = SaliencyGate(cin, conv.out_channels, d, f"{name}.{conv_name}" if name else conv_name, init)
            gate.to(conv.weight.device, conv.weight.dtype)
            self.add_module(f"gate{i}", gate)
            cin = conv.out_channels
        self.train(block.training)

    def _sparse_ok(self) -> bool:
        return all(_eval_bn(getattr(self, bn)) for _, bn in (*self.pairs, self.last))

    def last_bn(self) -> nn.BatchNorm2d:
        """The BN before the residual addition."""
        return getattr(self, self.last[1])

    def to_original(self) -> nn.Module:
        """The ungated block with the same conv/BN modules (predictors dropped)."""
        cls = self.__dict__["original_class"]
        block = cls.__new__(cls)
        nn.Module.__init__(block)
        for key, module in self._modules.items():
            if not isinstance(module, SaliencyGate):
                block.add_module(key, module)
        for key in self.__dict__["_plain_attrs"]:
            setattr(block, key, getattr(self, key))
        block.train(self.training)
        return block

    def forward(self, x: Tensor) -> Tensor:
        path = self._path(x.shape[0])
        self.__dict__["last_path"] = path
        if path == "sparse":
            if x.shape[0] == 1:
                return self._sparse(x)
            return torch.cat([self._sparse(x[i:i + 1]) for i in range(x.shape[0])])
        return self._dense(x, path == "masked")

    def _dense(self, x: Tensor, masked: bool) -> Tensor:
        """The ungated block (``masked=False``) or the masked dense reference."""
        macs: dict[str, int] = {}
        self.__dict__["last_macs"] = macs
        identity = x if self.downsample is None else self.downsample(x)
        y = x
        for i, ((conv_name, bn_name), gate) in enumerate(zip(self.pairs, self.gates())):
            conv, bn = getattr(self, conv_name), getattr(self, bn_name)
            cin = y.shape[1]
            if masked:
                g = gate(_spatial_mean_abs(y, nonnegative=i > 0))
                macs[f"gate{i + 1}"] = gate.macs(cin)
                y = F.relu(bn(conv(y)) * wta(g, gate.k)[:, :, None, None])
            else:
                y = self.relu(bn(conv(y)))
            macs[conv_name] = _conv_macs(conv, cin, y.shape[1], tuple(y.shape[-2:]))
        conv, bn = getattr(self, self.last[0]), getattr(self, self.last[1])
        out = bn(conv(y))
        macs[self.last[0]] = _conv_macs(conv, y.shape[1], out.shape[1], tuple(out.shape[-2:]))
        if not masked or not torch.is_grad_enabled():
            out += identity
            return self.relu(out)
        return F.relu(out + identity)

    def _sparse(self, x: Tensor) -> Tensor:
        """One sample: each gated conv computes only its kept channels and the next conv reads
        only those; every conv whose weight is sliced has its BN folded into the slice."""
        macs: dict[str, int] = {}
        self.__dict__["last_macs"] = macs
        cache = self._fold_cache
        identity = x if self.downsample is None else self.downsample(x)
        y = x
        cols: Tensor | None = None  # the channels y holds (None = all)
        for i, ((conv_name, bn_name), gate) in enumerate(zip(self.pairs, self.gates())):
            conv = getattr(self, conv_name)
            cin = y.shape[1]
            g = gate(_spatial_mean_abs(y, nonnegative=i > 0), cols)
            macs[f"gate{i + 1}"] = gate.macs(cin)
            values, rows = _select(g, gate.k)
            y = _sparse_conv_bn(conv, cache.get(conv_name, conv, getattr(self, bn_name)), y, values, rows, cols,
                                relu=True)
            cols = rows
            macs[conv_name] = _conv_macs(conv, cin, y.shape[1], tuple(y.shape[-2:]))
        conv = getattr(self, self.last[0])
        weight, bias = cache.get(self.last[0], conv, getattr(self, self.last[1]))
        out = F.conv2d(y, _take(weight, None, cols), bias, conv.stride, conv.padding, conv.dilation, conv.groups)
        macs[self.last[0]] = _conv_macs(conv, y.shape[1], out.shape[1], tuple(out.shape[-2:]))
        if torch.is_grad_enabled():
            return F.relu(out + identity)
        out += identity
        return out.relu_()


class GatedBottleneck(_GatedResBlock):
    """A ResNet ``Bottleneck`` with conv1+bn1 and conv2+bn2 gated (``gate1``, ``gate2``).

    Same modules and names as the original (conv1, bn1, conv2, bn2, conv3, bn3, relu,
    downsample) plus the predictors; conv3 (residual branch output) stays dense.
    """

    pairs = (("conv1", "bn1"), ("conv2", "bn2"))
    last = ("conv3", "bn3")


class GatedBasicBlock(_GatedResBlock):
    """A ResNet ``BasicBlock`` with conv1+bn1 gated (``gate1``); conv2 reads the kept channels."""

    pairs = (("conv1", "bn1"),)
    last = ("conv2", "bn2")


class _ChannelReader:
    """A conv that reads the output of gated convs: at batch 1 on the sparse path it gathers
    only the input channels the producers kept (their suppressed channels are exact zeros).

    ``_readers`` holds (producer, mapping) pairs: ``mapping[c]`` is this conv's input channel
    carrying the producer's output channel ``c`` (-1 where this conv does not read it).
    """

    def _init_reader(self) -> None:
        self.__dict__.setdefault("_readers", [])

    def add_reader(self, producer: GatedConv2d, mapping: Tensor) -> None:
        """Read the output channels of ``producer`` through ``mapping`` (see the class docstring)."""
        self.__dict__.setdefault("_readers", []).append((producer, mapping))

    def _input_columns(self, x: Tensor) -> Tensor | None:
        """The input channels to read (ascending), or None for all of them."""
        readers = self.__dict__.get("_readers") or []
        if x.shape[0] != 1 or not readers:
            return None
        dropped = []
        for producer, mapping in readers:
            rows = producer.__dict__.get("last_rows")
            if rows is None:
                continue
            kept = torch.zeros(mapping.numel(), dtype=torch.bool, device=mapping.device)
            kept[rows.to(mapping.device)] = True
            lost = mapping[~kept]
            dropped.append(lost[lost >= 0])
        if not dropped:
            return None
        keep = torch.ones(x.shape[1], dtype=torch.bool)
        keep[torch.cat(dropped).cpu()] = False
        return keep.nonzero().squeeze(1).to(x.device)


class SlicedInputConv2d(nn.Conv2d, _GatedModule, _ChannelReader):
    """A plain ``Conv2d`` reading gated convs' outputs: on the sparse path (eval, batch 1) it
    computes with the kept input channels and their weight columns only; otherwise it is the
    original conv. Parameters keep the original names; nothing is learned."""

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> SlicedInputConv2d:
        """Wrap ``conv`` (sharing its parameters)."""
        new = _sharing(cls, conv)
        new._init_gated()
        new._init_reader()
        return new

    def to_original(self) -> nn.Conv2d:
        """A plain ``Conv2d`` sharing this conv's parameters."""
        return _plain_conv(self)

    def _sparse_ok(self) -> bool:
        return self.padding_mode == "zeros" and self.groups == 1

    def forward(self, x: Tensor) -> Tensor:
        path = self._path(x.shape[0])
        self.__dict__["last_path"] = path
        cols = self._input_columns(x) if path == "sparse" else None
        if cols is None:
            out = super().forward(x)
            self.__dict__["last_macs"] = {"conv": _conv_macs(self, x.shape[1], self.out_channels, tuple(out.shape[-2:]))}
            return out
        out = F.conv2d(x.index_select(1, cols), _take(self.weight, None, cols), self.bias, self.stride, self.padding,
                       self.dilation, self.groups)
        self.__dict__["last_macs"] = {"conv": _conv_macs(self, cols.numel(), self.out_channels, tuple(out.shape[-2:]))}
        return out


def _sharing(cls: type[nn.Conv2d], conv: nn.Conv2d) -> nn.Conv2d:
    """A ``cls`` conv with ``conv``'s shape and mode, sharing its weight and bias (no copy)."""
    new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
              conv.groups, conv.bias is not None, conv.padding_mode, device="meta")
    new.weight = conv.weight
    new.bias = conv.bias
    new.train(conv.training)
    return new


def _plain_conv(conv: nn.Conv2d) -> nn.Conv2d:
    """A plain ``Conv2d`` sharing ``conv``'s parameters."""
    return _sharing(nn.Conv2d, conv)


class GatedConv2d(nn.Conv2d, _GatedModule, _ChannelReader):
    """An output-gated ``Conv2d`` paired with the ``BatchNorm2d`` that follows it.

    The conv computes ``p * BN(conv(x))`` itself (sparse path: only the kept channels, then
    scattered back to ``C_out``) and hands the result to its :class:`GatedBatchNorm2d`, which
    passes it through. Parameters keep the original names; the predictor is ``<name>.gate``.
    """

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, bn: nn.BatchNorm2d, name: str, density: float, init: str) -> GatedConv2d:
        """Wrap ``conv`` (sharing its parameters) and gate its output channels."""
        if conv.groups != 1:
            raise ConfigError(f"{name}: only dense convolutions (groups=1) can be gated, this one has groups={conv.groups}")
        new = _sharing(cls, conv)
        new._init_gated()
        new._init_reader()
        new.__dict__["last_rows"] = None
        new.__dict__["_handoff"] = None
        new.__dict__["_bn_ref"] = bn
        new.gate = SaliencyGate(conv.in_channels, conv.out_channels, density, name, init).to(
            conv.weight.device, conv.weight.dtype)
        new.train(conv.training)
        return new

    def to_original(self) -> nn.Conv2d:
        """A plain ``Conv2d`` sharing this conv's parameters."""
        return _plain_conv(self)

    def _sparse_ok(self) -> bool:
        return _eval_bn(self._bn_ref) and self.padding_mode == "zeros"

    def forward(self, x: Tensor) -> Tensor:
        path = self._path(x.shape[0])
        self.__dict__["last_path"] = path
        self.__dict__["last_rows"] = None  # the kept channels, for readers: only on the batch-1 sparse path
        if path == "off":
            self.__dict__["_handoff"] = None
            self.__dict__["last_macs"] = {"conv": _conv_macs(self, self.in_channels, self.out_channels,
                                                             _out_hw(self, x.shape[-2], x.shape[-1]))}
            return super().forward(x)
        if path == "sparse" and x.shape[0] > 1:
            out = torch.cat([self._gated(x[i:i + 1], "sparse") for i in range(x.shape[0])])
            self.__dict__["last_rows"] = None  # per-sample choices: readers of the batch read everything
        else:
            out = self._gated(x, path)
        self.__dict__["_handoff"] = out
        return out

    def _gated(self, x: Tensor, path: str) -> Tensor:
        bn = self._bn_ref
        oh, ow = _out_hw(self, x.shape[-2], x.shape[-1])
        if path == "masked":
            g = self.gate(_spatial_mean_abs(x))
            self.__dict__["last_macs"] = {"gate": self.gate.macs(),
                                          "conv": _conv_macs(self, self.in_channels, self.out_channels, (oh, ow))}
            p = wta(g, self.gate.k)
            return nn.BatchNorm2d.forward(bn, super().forward(x)) * p[:, :, None, None]
        cols = self._input_columns(x)  # the input channels gated producers kept (None: all)
        xs = x if cols is None else x.index_select(1, cols)
        g = self.gate(_spatial_mean_abs(xs), cols)
        values, rows = _select(g, self.gate.k)
        self.__dict__["last_rows"] = rows
        folded = self._fold_cache.get("conv", self, bn)
        y = _sparse_conv_bn(self, folded, xs, values, rows, cols, relu=False)
        self.__dict__["last_macs"] = {"gate": self.gate.macs(xs.shape[1]),
                                      "conv": _conv_macs(self, xs.shape[1], y.shape[1], (oh, ow))}
        if rows is None:
            return y
        out = y.new_zeros(1, self.out_channels, oh, ow)
        return out.index_copy(1, rows, y) if torch.is_grad_enabled() else out.index_copy_(1, rows, y)

    def take_handoff(self, x: Tensor) -> bool:
        """Whether ``x`` is this conv's gated output (already normalised); clears the hand-off."""
        handoff = self.__dict__.get("_handoff")
        if handoff is None:
            return False
        self.__dict__["_handoff"] = None
        if x is not handoff:
            raise ConfigError("a gated conv's output must go straight into its BatchNorm "
                              "(the BN received another tensor)")
        return True


class GatedBatchNorm2d(nn.BatchNorm2d):
    """The ``BatchNorm2d`` after a :class:`GatedConv2d`: passes the conv's gated (already
    normalised) output through; behaves as a plain BN for any other use."""

    @classmethod
    def from_bn(cls, bn: nn.BatchNorm2d) -> GatedBatchNorm2d:
        """Wrap ``bn`` sharing its parameters and statistics."""
        return _copy_bn(bn, cls)

    def to_original(self) -> nn.BatchNorm2d:
        """A plain ``BatchNorm2d`` sharing this BN's parameters and statistics."""
        return _copy_bn(self, nn.BatchNorm2d)

    def forward(self, x: Tensor) -> Tensor:
        conv = self.__dict__.get("_conv_ref")
        if conv is not None and conv.take_handoff(x):
            return x
        return super().forward(x)


def _copy_bn(bn: nn.BatchNorm2d, cls: type[nn.BatchNorm2d]) -> nn.BatchNorm2d:
    new = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats, device="meta")
    new.weight, new.bias = bn.weight, bn.bias
    for key in ("running_mean", "running_var", "num_batches_tracked"):
        new._buffers[key] = bn._buffers.get(key)
    new.train(bn.training)
    return new


# --------------------------------------------------------------------------------------------
# converting a model


def _block_classes() -> dict[type, type[_GatedResBlock]]:
    from slimdepth.models.backbones.resnet import BasicBlock, Bottleneck

    return {Bottleneck: GatedBottleneck, BasicBlock: GatedBasicBlock}


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent, _, last = name.rpartition(".")
    return (model.get_submodule(parent) if parent else model), last


def _resolve_density(name: str, density: float, densities: dict[str, float]) -> float:
    """The density of gated conv ``name``: the longest matching key of ``densities`` (the name
    itself or a dotted prefix of it), else ``density``."""
    best, best_len = density, -1
    for key, value in densities.items():
        if (name == key or name.startswith(key + ".") or key == "") and len(key) > best_len:
            best, best_len = value, len(key)
    return best


def _conv_bn_pair(model: nn.Module, name: str) -> tuple[str, str]:
    """(conv name, bn name) for a named conv followed by a BN, or a module whose first child is one."""
    try:
        module = model.get_submodule(name)
    except AttributeError:
        raise ConfigError(f"gating layer {name!r}: no such module") from None
    if not isinstance(module, nn.Conv2d):
        first = next(iter(module.named_children()), None)
        if first is None or not isinstance(first[1], nn.Conv2d):
            raise ConfigError(f"gating layer {name!r} is a {type(module).__name__}, not a Conv2d "
                              "(or a module starting with a Conv2d followed by a BatchNorm2d)")
        name = f"{name}.{first[0]}" if name else first[0]
        module = first[1]
    parent, key = _parent(model, name)
    keys = list(parent._modules)
    pos = keys.index(key)
    nxt = parent._modules[keys[pos + 1]] if pos + 1 < len(keys) else None
    if not isinstance(nxt, nn.BatchNorm2d) or nxt.num_features != module.out_channels:
        raise ConfigError(f"gating layer {name!r}: the Conv2d must be registered immediately before "
                          f"a BatchNorm2d of {module.out_channels} channels in its parent")
    prefix = name.rpartition(".")[0]
    return name, f"{prefix}.{keys[pos + 1]}" if prefix else keys[pos + 1]


def _readers_of(model: nn.Module, convs: Sequence[tuple[str, str]],
                blocks: Sequence[str]) -> dict[str, list[tuple[str, Tensor]]]:
    """For each conv that reads the output of a gated (conv, bn) pair: the producers it reads
    and the input index of each of their channels, from torch-pruning's dependency graph (traced
    on the ungated model). Channels that another layer also feeds (a residual sum), depthwise
    and linear readers, and convs inside gated blocks are left out: they read every channel."""
    from slimdepth.compress.groups import groups_of

    gated = {conv: bn for conv, bn in convs}
    readers: dict[str, list[tuple[str, Tensor]]] = {}
    for producer, group in groups_of(model, list(gated)).items():
        if set(group.producers) != {producer, gated[producer]}:
            continue
        out_channels = model.get_submodule(producer).out_channels
        for part in group.consumers:
            layer = model.get_submodule(part.layer)
            if (type(layer) is not nn.Conv2d and part.layer not in gated) or layer.groups != 1 or any(
                    part.layer.startswith(b + ".") for b in blocks):
                continue
            mapping = torch.full((out_channels,), -1, dtype=torch.long)
            mapping[list(part.root_indices)] = torch.tensor(part.indices, dtype=torch.long)
            readers.setdefault(part.layer, []).append((producer, mapping))
    return readers


def is_gated(model: nn.Module) -> bool:
    """Whether ``model`` holds any gated module."""
    return any(isinstance(m, _GatedModule) for m in model.modules())


def add_gating(model: nn.Module, density: float = 0.5, layers: str | Sequence[str] = BOTTLENECKS,
               densities: dict[str, float] | None = None, predictor_init: str = "noisy") -> nn.Module:
    """Convert ``model`` **in place** to a gated network and return it.

    ``layers``: ``"bottlenecks"`` (every ResNet Bottleneck/BasicBlock) or a list of dotted
    names -- block names, convs followed by a BN (or ``ConvBNReLU``-like modules), and
    optionally ``"bottlenecks"``. ``densities`` overrides ``density`` per gated conv: a key is a
    conv name (``encoder.layer1.0.conv2``) or a dotted prefix (``encoder.layer4``); the longest
    match wins. The conv/BN modules keep their names, so ungated weights still load (only the
    new ``gate*`` predictors are missing). A ``DepthModel``'s ``config`` records the gating (see
    :func:`apply_gating_config`).
    """
    density = _check_density(density)
    densities = {str(k): _check_density(v, f"densities[{k!r}]") for k, v in (densities or {}).items()}
    if predictor_init not in PREDICTOR_INITS:
        raise ConfigError(f"predictor_init must be one of {', '.join(PREDICTOR_INITS)}, got {predictor_init!r}")
    if is_gated(model):
        raise ConfigError("the model is already gated; call remove_gating first")
    names = [layers] if isinstance(layers, str) else list(layers)
    if not names:
        raise ConfigError("add_gating: no layers to gate")
    classes = _block_classes()
    blocks: list[str] = []
    convs: list[tuple[str, str]] = []
    for name in names:
        if not isinstance(name, str):
            raise ConfigError(f"gating layers must be names, got {name!r}")
        if name == BOTTLENECKS:
            found = [n for n, m in model.named_modules() if type(m) in classes]
            if not found:
                raise ConfigError("layers='bottlenecks' but the model has no ResNet Bottleneck/BasicBlock")
            blocks += [n for n in found if n not in blocks]
            continue
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise ConfigError(f"gating layer {name!r}: no such module") from None
        if type(module) in classes:
            if name not in blocks:
                blocks.append(name)
        else:
            pair = _conv_bn_pair(model, name)
            if pair not in convs:
                convs.append(pair)
    for conv_name, _ in convs:
        if any(conv_name.startswith(b + ".") for b in blocks):
            raise ConfigError(f"gating layer {conv_name!r} lies inside a gated block; gate one or the other")
    targets = [f"{b}.{c}" for b in blocks for c, _ in classes[type(model.get_submodule(b))].pairs]
    targets += [c for c, _ in convs]
    unknown = [k for k in densities if k and not any(t == k or t.startswith(k + ".") for t in targets)]
    if unknown:
        raise ConfigError(f"densities name no gated conv: {', '.join(unknown)}")

    if "" in blocks:
        raise ConfigError("add_gating converts the blocks inside a model, not a lone block")
    readers = _readers_of(model, convs, blocks) if convs else {}  # traced on the still ungated model
    for name in blocks:
        block = model.get_submodule(name)
        cls = classes[type(block)]
        ds = [_resolve_density(f"{name}.{c}", density, densities) for c, _ in cls.pairs]
        parent, key = _parent(model, name)
        setattr(parent, key, cls(block, name, ds, predictor_init))
    for conv_name, bn_name in convs:
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        gconv = GatedConv2d.from_conv(conv, bn, conv_name, _resolve_density(conv_name, density, densities),
                                      predictor_init)
        gbn = GatedBatchNorm2d.from_bn(bn)
        gconv.__dict__["_bn_ref"] = gbn
        gbn.__dict__["_conv_ref"] = gconv
        parent, key = _parent(model, conv_name)
        setattr(parent, key, gconv)
        parent, key = _parent(model, bn_name)
        setattr(parent, key, gbn)
    for reader_name, links in readers.items():
        reader = model.get_submodule(reader_name)
        if not isinstance(reader, GatedConv2d):
            reader = SlicedInputConv2d.from_conv(reader)
            parent, key = _parent(model, reader_name)
            setattr(parent, key, reader)
        for producer_name, mapping in links:
            reader.add_reader(model.get_submodule(producer_name), mapping)
    _record_config(model, {"density": density, "layers": names[0] if isinstance(layers, str) else names,
                           "densities": densities})
    return model


def remove_gating(model: nn.Module) -> nn.Module:
    """Undo :func:`add_gating` in place: the original module types with the same parameters;
    the predictors are dropped. Returns ``model``."""
    replacements: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if isinstance(module, (_GatedResBlock, GatedConv2d, GatedBatchNorm2d, SlicedInputConv2d)):
            if not name:
                raise ConfigError("remove_gating needs the model that contains the gated modules")
            replacements.append((name, module.to_original()))
    for name, module in replacements:
        parent, key = _parent(model, name)
        setattr(parent, key, module)
    config = getattr(model, "config", None)
    if isinstance(config, dict):
        config.pop("gating", None)
    return model


def _record_config(model: nn.Module, gating: dict[str, Any]) -> None:
    config = getattr(model, "config", None)
    if isinstance(config, dict):
        model.config = {**config, "gating": copy.deepcopy(gating)}


def gating_config(model: nn.Module) -> dict[str, Any] | None:
    """The ``gating`` entry a gated ``DepthModel`` carries in its config (None when ungated)."""
    config = getattr(model, "config", None)
    return copy.deepcopy(config.get("gating")) if isinstance(config, dict) and config.get("gating") else None


def apply_gating_config(model: nn.Module, config: dict[str, Any] | None) -> nn.Module:
    """Re-apply gating described by a checkpoint: ``config`` is a model config holding a
    ``"gating"`` entry, or that entry itself (``{"density", "layers", "densities"}``).

    No-op when there is no gating entry. The predictors get fresh values; load the checkpoint's
    weights afterwards.
    """
    if not config:
        return model
    if not isinstance(config, dict):
        raise ConfigError(f"gating config must be a dict, got {config!r}")
    gating = config["gating"] if "gating" in config else (config if "density" in config else None)
    if gating is None:
        return model
    if not isinstance(gating, dict) or "density" not in gating:
        raise ConfigError(f"gating config must be a dict with 'density' (and 'layers', 'densities'), got {gating!r}")
    unknown = set(gating) - {"density", "layers", "densities"}
    if unknown:
        raise ConfigError(f"gating config has unknown keys {sorted(unknown)}")
    return add_gating(model, gating["density"], gating.get("layers", BOTTLENECKS), gating.get("densities") or None)


def _gated_modules(model: nn.Module) -> list[tuple[str, _GatedModule]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, _GatedModule)]


def _all_gates(model: nn.Module) -> list[SaliencyGate]:
    return [m for m in model.modules() if isinstance(m, SaliencyGate)]


def gated_layers(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Each gated conv by name: ``channels``, ``density`` and ``k``."""
    return {g.target: {"channels": g.out_features, "density": g.density, "k": g.k} for g in _all_gates(model)}


def set_density(model: nn.Module, density: float, densities: dict[str, float] | None = None) -> nn.Module:
    """Set every gate's density to ``density``, then apply the per-layer ``densities`` overrides
    (same keys as :func:`add_gating`). Updates the recorded config. Returns ``model``."""
    density = _check_density(density)
    densities = {str(k): _check_density(v, f"densities[{k!r}]") for k, v in (densities or {}).items()}
    gates = _all_gates(model)
    if not gates:
        raise ConfigError("set_density: the model is not gated")
    unknown = [k for k in densities if k and not any(g.target == k or g.target.startswith(k + ".") for g in gates)]
    if unknown:
        raise ConfigError(f"densities name no gated conv: {', '.join(unknown)}")
    for gate in gates:
        gate.density = _resolve_density(gate.target, density, densities)
    previous = gating_config(model) or {"layers": BOTTLENECKS}
    _record_config(model, {"density": density, "layers": previous.get("layers", BOTTLENECKS), "densities": densities})
    return model


def set_gating_mode(model: nn.Module, mode: str) -> nn.Module:
    """Set the execution path of every gated module (one of :data:`GATING_MODES`)."""
    if mode not in GATING_MODES:
        raise ConfigError(f"gating mode must be one of {', '.join(GATING_MODES)}, got {mode!r}")
    for _, module in _gated_modules(model):
        module.gating_mode = mode
    return model


@contextmanager
def gating_mode(model: nn.Module, mode: str) -> Iterator[nn.Module]:
    """Temporarily run every gated module in ``mode`` (e.g. ``"off"`` for the dense network)."""
    previous = [(m, m.gating_mode) for _, m in _gated_modules(model)]
    set_gating_mode(model, mode)
    try:
        yield model
    finally:
        for module, old in previous:
            module.gating_mode = old


def gating_l1(model: nn.Module) -> Tensor:
    """Mean over gated layers of mean ``|g(x)|`` from the last forward (method 2 adds
    ``lambda * gating_l1(model)`` to the depth loss). Differentiable w.r.t. the predictors."""
    gates = _all_gates(model)
    if not gates:
        raise ConfigError("gating_l1: the model is not gated")
    terms = [g.last_saliency.abs().mean() for g in gates if g.last_saliency is not None]
    if not terms:
        raise ConfigError("gating_l1: run a forward pass first")
    return torch.stack(terms).mean()


# --------------------------------------------------------------------------------------------
# cost: executed MACs and latency


def _layer_table(model: nn.Module) -> dict[str, dict[str, int]]:
    """Per gated module: the MACs its convs and predictors ran in the last forward."""
    return {name: dict(m.last_macs) for name, m in _gated_modules(model)}


def executed_macs(model: nn.Module, size: int | Sequence[int]) -> dict[str, Any]:
    """MACs executed per image at batch 1 in eval mode, dense vs gated.

    Both totals are measured by :func:`slimdepth.deploy.cost.count_macs` on a real forward (the
    gated one runs the sparse path, so the sliced convs and the predictors are what it counts);
    the gated modules also count their own convs, which gives ``self_counted_macs``: dense total
    minus the gated modules' dense MACs plus their executed MACs (must equal ``executed_macs``).
    """
    from slimdepth.deploy.cost import count_macs

    if not is_gated(model):
        raise ConfigError("executed_macs: the model is not gated")
    with gating_mode(model, "off"):
        dense = count_macs(model, size)
        dense_layers = _layer_table(model)
    with gating_mode(model, "auto"):
        gated = count_macs(model, size)
        gated_layers_ = _layer_table(model)
    predictor = sum(v for t in gated_layers_.values() for k, v in t.items() if k.startswith("gate"))
    self_counted = dense.total - sum(sum(t.values()) for t in dense_layers.values()) + sum(
        sum(t.values()) for t in gated_layers_.values())
    by_layer: dict[str, dict[str, Any]] = {}
    for name, table in gated_layers_.items():
        by_layer[name] = {"dense_macs": sum(dense_layers[name].values()), "executed_macs": sum(table.values()),
                          "predictor_macs": sum(v for k, v in table.items() if k.startswith("gate")),
                          "convs": table}
    return {
        "size": list(gated.size),
        "dense_macs": dense.total,
        "executed_macs": gated.total,
        "predictor_macs": predictor,
        "ratio": gated.total / dense.total if dense.total else float("nan"),
        "self_counted_macs": self_counted,
        "by_layer": by_layer,
        "gated_layers": gated_layers(model),
    }


def _timing_summary(samples: list[float]) -> dict[str, float]:
    a = np.asarray(samples, dtype=np.float64)
    return {"median_ms": float(np.median(a)), "p90_ms": float(np.percentile(a, 90)),
            "mean_ms": float(a.mean()), "min_ms": float(a.min()), "runs": len(samples)}


def latency_comparison(model: nn.Module, size: int | Sequence[int], runs: int = 30, warmup: int = 5,
                       rounds: int = 5, threads: int | None = None) -> dict[str, Any]:
    """Batch-1 latency of the same network dense (gating ``off``, identical weights) and gated
    (sparse path), timed with :func:`slimdepth.deploy.cost.measure_latency`.

    The ``runs`` timed passes of each are split into ``rounds`` interleaved chunks (dense,
    gated, dense, ...) so drifting machine load affects both alike. ``ratio`` = gated median /
    dense median; ``reduction`` = 1 - ratio.
    """
    from slimdepth.deploy.cost import measure_latency

    if not is_gated(model):
        raise ConfigError("latency_comparison: the model is not gated")
    if runs < 1 or rounds < 1 or warmup < 0:
        raise ConfigError("latency_comparison: runs and rounds must be >= 1, warmup >= 0")
    rounds = min(rounds, runs)
    chunks = [runs // rounds + (1 if i < runs % rounds else 0) for i in range(rounds)]
    samples: dict[str, list[float]] = {"off": [], "auto": []}
    info = None
    for i, n in enumerate(chunks):
        for mode in ("off", "auto"):
            with gating_mode(model, mode):
                lat = measure_latency(model, size, batch=1, runs=n, warmup=warmup if i == 0 else 1, threads=threads)
            samples[mode] += list(lat.samples_ms)
            info = lat
    dense, gated = _timing_summary(samples["off"]), _timing_summary(samples["auto"])
    ratio = gated["median_ms"] / dense["median_ms"]
    return {"size": list(info.size), "batch": 1, "threads": info.threads, "device": info.device,
            "dense": dense, "gated": gated, "ratio": ratio, "reduction": 1.0 - ratio,
            "p90_ratio": gated["p90_ms"] / dense["p90_ms"]}


@dataclass
class GatingReport:
    """Dense vs gated cost of one gated model at one input size (batch 1)."""

    size: tuple[int, int]
    dense_macs: int
    executed_macs: int
    predictor_macs: int
    gated_layers: dict[str, dict[str, Any]] = field(default_factory=dict)
    latency: dict[str, Any] | None = None

    @property
    def mac_ratio(self) -> float:
        """Executed / dense MACs."""
        return self.executed_macs / self.dense_macs if self.dense_macs else float("nan")

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        d = asdict(self)
        d["size"] = list(self.size)
        d["mac_ratio"] = self.mac_ratio
        return d


def gating_report(model: nn.Module, size: int | Sequence[int], runs: int = 0, warmup: int = 5) -> GatingReport:
    """MACs (and, with ``runs`` > 0, the latency comparison) of a gated model at batch 1."""
    macs = executed_macs(model, size)
    latency = latency_comparison(model, size, runs=runs, warmup=warmup) if runs > 0 else None
    return GatingReport(size=tuple(macs["size"]), dense_macs=macs["dense_macs"], executed_macs=macs["executed_macs"],
                        predictor_macs=macs["predictor_macs"], gated_layers=macs["gated_layers"], latency=latency)

