"""The gated modules: ResNet blocks, a conv paired with its BatchNorm, and the convs that read them.

Every gated module keeps the original conv/BN modules and parameters under their original
names (so an ungated checkpoint loads into it with only the ``gate*`` predictors missing, and
:meth:`to_original` gives the ungated module back) and chooses an execution path per call
(:meth:`GatedModule.path`) from its :attr:`GatedModule.execution_mode`:

* ``masked`` -- the dense conv multiplied by ``p``: the reference semantics, differentiable;
  always used while training, and in eval mode at batch > 1;
* ``sparse`` -- eval mode at batch 1 (or per sample with mode ``"sparse"``): suppressed channels
  are not computed (:mod:`~slimdepth.compress.gating.kernels`);
* ``off`` -- the original, ungated computation with the same weights (dense timings).

After each call a module records the path it took (``last_path``) and the MACs its convs and
predictors executed (``last_macs``), which :mod:`~slimdepth.compress.gating.measure` adds up.

**The conv -> BN hand-off.** A gated conv computes ``p * BN(conv(x))`` itself -- on the sparse
path the BN is folded into the kept filters, on the masked path the mask multiplies the BN
output -- yet its BatchNorm stays in the network under its own name, where the parent's forward
calls it. The two share a :class:`ConvBNHandoff`: the conv reads the BN's parameters through it
and leaves its (already normalised) output there; the BN, a :class:`GatedBatchNorm2d`, takes
that output back and passes it through unchanged. Any other tensor reaching the BN means a
layer between the two changed it, which is an error rather than a silently doubled BN.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slimdepth.compress.gating.kernels import FoldCache, conv_macs, out_hw, select_top, sparse_conv_bn, take
from slimdepth.compress.gating.predictor import SaliencyGate, check_density, spatial_mean_abs, wta
from slimdepth.errors import ConfigError

__all__ = [
    "GATING_MODES",
    "ChannelReader",
    "ConvBNHandoff",
    "GatedBasicBlock",
    "GatedBatchNorm2d",
    "GatedBottleneck",
    "GatedConv2d",
    "GatedModule",
    "GatedResBlock",
    "SlicedInputConv2d",
    "gated_conv_bn",
]

#: ``auto``: sparse at eval batch 1, masked dense otherwise; ``masked``: always the masked dense
#: reference; ``sparse``: the sparse path (per sample when batch > 1) whenever not training;
#: ``off``: the ungated network.
GATING_MODES = ("auto", "masked", "sparse", "off")


class GatedModule(nn.Module):
    """Shared state of every gated module: the execution mode and what the last forward ran."""

    #: one of :data:`GATING_MODES`; set for a whole network with ``set_gating_mode``
    execution_mode: str = "auto"

    def _init_gated(self) -> None:
        self.fold_cache = FoldCache()
        self.last_path = ""  # the path the last forward took
        self.last_macs: dict[str, int] = {}  # MACs of each conv / predictor in the last forward

    def path(self, batch: int) -> str:
        """The execution path for a batch of ``batch`` images (see the module docstring)."""
        mode = self.execution_mode
        if mode == "off":
            return "off"
        if self.training or mode == "masked":
            return "masked"
        if mode == "sparse" or batch == 1:
            return "sparse" if self.sparse_ok() else "masked"
        return "masked"

    def sparse_ok(self) -> bool:
        """Whether the sparse path can run (BN statistics present, zero padding...)."""
        return True

    def gates(self) -> Iterator[SaliencyGate]:
        """This module's saliency predictors."""
        return (m for m in self.children() if isinstance(m, SaliencyGate))


def _eval_bn(bn: nn.BatchNorm2d) -> bool:
    return bn.running_mean is not None and bn.running_var is not None


class GatedResBlock(GatedModule):
    """Base of the gated ResNet blocks: adopts the original block's modules under their names."""

    #: (conv, bn) names of the gated pairs, in order; the last conv is read but not gated
    pairs: tuple[tuple[str, str], ...] = ()
    last: tuple[str, str] = ("", "")

    def __init__(self, block: nn.Module, name: str = "", density: float | Sequence[float] = 0.5,
                 init: str = "noisy") -> None:
        super().__init__()
        self._init_gated()
        self.original_class = type(block)
        for key, module in block._modules.items():
            self.add_module(key, module)
        plain = [k for k in vars(block) if not k.startswith("_") and k != "training" and k not in block._modules]
        self.plain_attributes = plain
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

    def sparse_ok(self) -> bool:
        return all(_eval_bn(getattr(self, bn)) for _, bn in (*self.pairs, self.last))

    def last_bn(self) -> nn.BatchNorm2d:
        """The BN before the residual addition."""
        return getattr(self, self.last[1])

    def to_original(self) -> nn.Module:
        """The ungated block with the same conv/BN modules (predictors dropped)."""
        cls = self.original_class
        block = cls.__new__(cls)
        nn.Module.__init__(block)
        for key, module in self._modules.items():
            if not isinstance(module, SaliencyGate):
                block.add_module(key, module)
        for key in self.plain_attributes:
            setattr(block, key, getattr(self, key))
        block.train(self.training)
        return block

    def forward(self, x: Tensor) -> Tensor:
        path = self.path(x.shape[0])
        self.last_path = path
        if path == "sparse":
            if x.shape[0] == 1:
                return self._sparse(x)
            return torch.cat([self._sparse(x[i:i + 1]) for i in range(x.shape[0])])
        return self._dense(x, path == "masked")

    def _dense(self, x: Tensor, masked: bool) -> Tensor:
        """The ungated block (``masked=False``) or the masked dense reference."""
        macs: dict[str, int] = {}
        self.last_macs = macs
        identity = x if self.downsample is None else self.downsample(x)
        y = x
        for i, ((conv_name, bn_name), gate) in enumerate(zip(self.pairs, self.gates())):
            conv, bn = getattr(self, conv_name), getattr(self, bn_name)
            cin = y.shape[1]
            if masked:
                g = gate(spatial_mean_abs(y, nonnegative=i > 0))
                macs[f"gate{i + 1}"] = gate.macs(cin)
                y = F.relu(bn(conv(y)) * wta(g, gate.k)[:, :, None, None])
            else:
                y = self.relu(bn(conv(y)))
            macs[conv_name] = conv_macs(conv, cin, y.shape[1], tuple(y.shape[-2:]))
        conv, bn = getattr(self, self.last[0]), getattr(self, self.last[1])
        out = bn(conv(y))
        macs[self.last[0]] = conv_macs(conv, y.shape[1], out.shape[1], tuple(out.shape[-2:]))
        if not masked or not torch.is_grad_enabled():
            out += identity
            return self.relu(out)
        return F.relu(out + identity)

    def _sparse(self, x: Tensor) -> Tensor:
        """One sample: each gated conv computes only its kept channels and the next conv reads
        only those; every conv whose weight is sliced has its BN folded into the slice."""
        macs: dict[str, int] = {}
        self.last_macs = macs
        cache = self.fold_cache
        identity = x if self.downsample is None else self.downsample(x)
        y = x
        cols: Tensor | None = None  # the channels y holds (None = all)
        for i, ((conv_name, bn_name), gate) in enumerate(zip(self.pairs, self.gates())):
            conv = getattr(self, conv_name)
            cin = y.shape[1]
            g = gate(spatial_mean_abs(y, nonnegative=i > 0), cols)
            macs[f"gate{i + 1}"] = gate.macs(cin)
            values, rows = select_top(g, gate.k)
            y = sparse_conv_bn(conv, cache.get(conv_name, conv, getattr(self, bn_name)), y, values, rows, cols,
                               relu=True)
            cols = rows
            macs[conv_name] = conv_macs(conv, cin, y.shape[1], tuple(y.shape[-2:]))
        conv = getattr(self, self.last[0])
        weight, bias = cache.get(self.last[0], conv, getattr(self, self.last[1]))
        out = F.conv2d(y, take(weight, None, cols), bias, conv.stride, conv.padding, conv.dilation, conv.groups)
        macs[self.last[0]] = conv_macs(conv, y.shape[1], out.shape[1], tuple(out.shape[-2:]))
        if torch.is_grad_enabled():
            return F.relu(out + identity)
        out += identity
        return out.relu_()


class GatedBottleneck(GatedResBlock):
    """A ResNet ``Bottleneck`` with conv1+bn1 and conv2+bn2 gated (``gate1``, ``gate2``).

    Same modules and names as the original (conv1, bn1, conv2, bn2, conv3, bn3, relu,
    downsample) plus the predictors; conv3 (residual branch output) stays dense.
    """

    pairs = (("conv1", "bn1"), ("conv2", "bn2"))
    last = ("conv3", "bn3")


class GatedBasicBlock(GatedResBlock):
    """A ResNet ``BasicBlock`` with conv1+bn1 gated (``gate1``); conv2 reads the kept channels."""

    pairs = (("conv1", "bn1"),)
    last = ("conv2", "bn2")


class ChannelReader:
    """A conv that reads the output of gated convs: at batch 1 on the sparse path it gathers
    only the input channels the producers kept (their suppressed channels are exact zeros).

    ``readers`` holds (producer, mapping) pairs: ``mapping[c]`` is this conv's input channel
    carrying the producer's output channel ``c`` (-1 where this conv does not read it).
    """

    readers: list[tuple[GatedConv2d, Tensor]]

    def _init_reader(self) -> None:
        self.readers = []

    def add_reader(self, producer: GatedConv2d, mapping: Tensor) -> None:
        """Read the output channels of ``producer`` through ``mapping`` (see the class docstring)."""
        self.readers.append((producer, mapping))

    def input_columns(self, x: Tensor) -> Tensor | None:
        """The input channels to read (ascending), or None for all of them."""
        if x.shape[0] != 1 or not self.readers:
            return None
        dropped = []
        for producer, mapping in self.readers:
            rows = producer.last_rows
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


class SlicedInputConv2d(nn.Conv2d, GatedModule, ChannelReader):
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

    def sparse_ok(self) -> bool:
        return self.padding_mode == "zeros" and self.groups == 1

    def forward(self, x: Tensor) -> Tensor:
        path = self.path(x.shape[0])
        self.last_path = path
        cols = self.input_columns(x) if path == "sparse" else None
        if cols is None:
            out = super().forward(x)
            self.last_macs = {"conv": conv_macs(self, x.shape[1], self.out_channels, tuple(out.shape[-2:]))}
            return out
        out = F.conv2d(x.index_select(1, cols), take(self.weight, None, cols), self.bias, self.stride, self.padding,
                       self.dilation, self.groups)
        self.last_macs = {"conv": conv_macs(self, cols.numel(), self.out_channels, tuple(out.shape[-2:]))}
        return out


class ConvBNHandoff:
    """The link between a :class:`GatedConv2d` and the :class:`GatedBatchNorm2d` after it.

    See the module docstring. ``bn`` is the BatchNorm whose parameters the conv folds or applies;
    :meth:`give` leaves the conv's normalised output, :meth:`take` hands it to the BN. A plain
    object, not a module: the BN is registered once, in its parent, and the pending tensor (which
    may carry an autograd graph) is never copied with the model.
    """

    def __init__(self, bn: nn.BatchNorm2d) -> None:
        self.bn = bn
        self._pending: Tensor | None = None

    def give(self, output: Tensor | None) -> None:
        """The conv's gated, already normalised output (``None``: the conv ran ungated)."""
        self._pending = output

    def take(self, x: Tensor) -> bool:
        """Whether ``x`` is the conv's pending output, which the BN must pass through unchanged;
        clears it. Another tensor while one is pending is a :class:`ConfigError`."""
        pending, self._pending = self._pending, None
        if pending is None:
            return False
        if x is not pending:
            raise ConfigError("a gated conv's output must go straight into its BatchNorm "
                              "(the BN received another tensor)")
        return True

    def __getstate__(self) -> dict[str, Any]:
        return {"bn": self.bn, "_pending": None}


class GatedConv2d(nn.Conv2d, GatedModule, ChannelReader):
    """An output-gated ``Conv2d`` paired with the ``BatchNorm2d`` that follows it.

    The conv computes ``p * BN(conv(x))`` itself (sparse path: only the kept channels, then
    scattered back to ``C_out``) and hands the result to its :class:`GatedBatchNorm2d` through
    their :class:`ConvBNHandoff`. Parameters keep the original names; the predictor is
    ``<name>.gate``. ``last_rows`` holds the channels kept in the last batch-1 sparse call
    (``None`` otherwise), which the convs reading this one gather.
    """

    handoff: ConvBNHandoff

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, handoff: ConvBNHandoff, name: str, density: float, init: str) -> GatedConv2d:
        """Wrap ``conv`` (sharing its parameters) and gate its output channels."""
        if conv.groups != 1:
            raise ConfigError(f"{name}: only dense convolutions (groups=1) can be gated, this one has groups={conv.groups}")
        new = _sharing(cls, conv)
        new._init_gated()
        new._init_reader()
        new.last_rows = None
        new.handoff = handoff
        new.gate = SaliencyGate(conv.in_channels, conv.out_channels, check_density(density), name, init).to(
            conv.weight.device, conv.weight.dtype)
        new.train(conv.training)
        return new

    def to_original(self) -> nn.Conv2d:
        """A plain ``Conv2d`` sharing this conv's parameters."""
        return _plain_conv(self)

    def sparse_ok(self) -> bool:
        return _eval_bn(self.handoff.bn) and self.padding_mode == "zeros"

    def forward(self, x: Tensor) -> Tensor:
        path = self.path(x.shape[0])
        self.last_path = path
        self.last_rows = None  # the kept channels, for readers: only on the batch-1 sparse path
        if path == "off":
            self.handoff.give(None)
            self.last_macs = {"conv": conv_macs(self, self.in_channels, self.out_channels,
                                                out_hw(self, x.shape[-2], x.shape[-1]))}
            return super().forward(x)
        if path == "sparse" and x.shape[0] > 1:
            out = torch.cat([self._gated(x[i:i + 1], "sparse") for i in range(x.shape[0])])
            self.last_rows = None  # per-sample choices: readers of the batch read everything
        else:
            out = self._gated(x, path)
        self.handoff.give(out)
        return out

    def _gated(self, x: Tensor, path: str) -> Tensor:
        bn = self.handoff.bn
        oh, ow = out_hw(self, x.shape[-2], x.shape[-1])
        if path == "masked":
            g = self.gate(spatial_mean_abs(x))
            self.last_macs = {"gate": self.gate.macs(), "conv": conv_macs(self, self.in_channels, self.out_channels,
                                                                          (oh, ow))}
            p = wta(g, self.gate.k)
            return nn.BatchNorm2d.forward(bn, super().forward(x)) * p[:, :, None, None]
        cols = self.input_columns(x)  # the input channels gated producers kept (None: all)
        xs = x if cols is None else x.index_select(1, cols)
        g = self.gate(spatial_mean_abs(xs), cols)
        values, rows = select_top(g, self.gate.k)
        self.last_rows = rows
        folded = self.fold_cache.get("conv", self, bn)
        y = sparse_conv_bn(self, folded, xs, values, rows, cols, relu=False)
        self.last_macs = {"gate": self.gate.macs(xs.shape[1]), "conv": conv_macs(self, xs.shape[1], y.shape[1], (oh, ow))}
        if rows is None:
            return y
        out = y.new_zeros(1, self.out_channels, oh, ow)
        return out.index_copy(1, rows, y) if torch.is_grad_enabled() else out.index_copy_(1, rows, y)


class GatedBatchNorm2d(nn.BatchNorm2d):
    """The ``BatchNorm2d`` after a :class:`GatedConv2d`: passes the conv's gated (already
    normalised) output through; behaves as a plain BN for any other use."""

    handoff: ConvBNHandoff | None = None

    @classmethod
    def from_bn(cls, bn: nn.BatchNorm2d) -> GatedBatchNorm2d:
        """Wrap ``bn`` sharing its parameters and statistics."""
        return _copy_bn(bn, cls)

    def to_original(self) -> nn.BatchNorm2d:
        """A plain ``BatchNorm2d`` sharing this BN's parameters and statistics."""
        return _copy_bn(self, nn.BatchNorm2d)

    def forward(self, x: Tensor) -> Tensor:
        if self.handoff is not None and self.handoff.take(x):
            return x
        return super().forward(x)


def _copy_bn(bn: nn.BatchNorm2d, cls: type[nn.BatchNorm2d]) -> nn.BatchNorm2d:
    new = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats, device="meta")
    new.weight, new.bias = bn.weight, bn.bias
    for key in ("running_mean", "running_var", "num_batches_tracked"):
        new._buffers[key] = bn._buffers.get(key)
    new.train(bn.training)
    return new


def gated_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d, name: str, density: float,
                  init: str) -> tuple[GatedConv2d, GatedBatchNorm2d]:
    """The gated pair that replaces ``conv`` and the ``bn`` after it, linked by one hand-off."""
    gbn = GatedBatchNorm2d.from_bn(bn)
    handoff = ConvBNHandoff(gbn)
    gconv = GatedConv2d.from_conv(conv, handoff, name, density, init)
    gbn.handoff = handoff
    return gconv, gbn
