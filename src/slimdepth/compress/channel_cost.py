"""The channel cost model: MACs and parameters of a network as functions of the channels kept.

Shared by the learned masks (method 1), which price their masks with it, and by the static
baselines, which search a pruning setting with it. (Not to be confused with
:mod:`slimdepth.deploy.cost`, which *measures* a model; this module *predicts* the cost of a
pruned one from the unpruned trace, exactly.)

The cost is a differentiable function of per-channel keep values ``p``: every conv costs
``positions * k_h * k_w / groups * E[in] * E[out]`` where ``E`` is the sum of ``p`` over the
channels of the group on that side (a plain count where no group governs it; a depthwise conv
costs ``positions * k_h * k_w * E``); resizes of group channels cost their per-channel MACs times
``E``; everything else is a constant. With ``p = sigmoid(l)`` it is the *expected* cost; with
0/1 keep values it is the exact cost of the pruned network, equal to
:func:`~slimdepth.deploy.cost.count_macs` of the model after removal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from slimdepth.compress.groups import ChannelGroup
from slimdepth.compress.layers import DEFAULT_EXAMPLE_SIZE, LayerInfo, trace_layers
from slimdepth.deploy.cost import count_macs, count_parameters
from slimdepth.errors import ConfigError

__all__ = ["CostModel"]


@dataclass
class _Terms:
    """Sum over terms of ``coeff * (in_const + sum p[in]) * (out_const + sum p[out])``."""

    coeff: Tensor  # (T,) float64
    in_const: Tensor
    out_const: Tensor
    in_chan: Tensor  # global channel ids, with in_term the term each belongs to
    in_term: Tensor
    out_chan: Tensor
    out_term: Tensor

    def sides(self, p: Tensor) -> tuple[Tensor, Tensor]:
        """Per term, ``in_const + sum p[in]`` and ``out_const + sum p[out]`` for keep values ``p``."""
        s_in = self.in_const.index_add(0, self.in_term, p.index_select(0, self.in_chan))
        s_out = self.out_const.index_add(0, self.out_term, p.index_select(0, self.out_chan))
        return s_in, s_out

    def evaluate(self, p: Tensor) -> Tensor:
        """The total for keep values ``p`` (all groups' channels, concatenated; float64)."""
        s_in, s_out = self.sides(p)
        return (self.coeff * s_in * s_out).sum()

    def to(self, device: torch.device) -> _Terms:
        return _Terms(*(t.to(device) for t in (self.coeff, self.in_const, self.out_const, self.in_chan,
                                                  self.in_term, self.out_chan, self.out_term)))


class _TermBuilder:
    def __init__(self) -> None:
        self.coeff: list[float] = []
        self.in_const: list[float] = []
        self.out_const: list[float] = []
        self.in_chan: list[int] = []
        self.in_term: list[int] = []
        self.out_chan: list[int] = []
        self.out_term: list[int] = []

    def add(self, coeff: float, in_const: float, out_const: float,
            ins: Sequence[int] = (), outs: Sequence[int] = ()) -> None:
        t = len(self.coeff)
        self.coeff.append(float(coeff))
        self.in_const.append(float(in_const))
        self.out_const.append(float(out_const))
        self.in_chan.extend(ins)
        self.in_term.extend([t] * len(ins))
        self.out_chan.extend(outs)
        self.out_term.extend([t] * len(outs))

    def build(self) -> _Terms:
        f64, i64 = torch.float64, torch.long
        return _Terms(torch.tensor(self.coeff, dtype=f64), torch.tensor(self.in_const, dtype=f64),
                      torch.tensor(self.out_const, dtype=f64), torch.tensor(self.in_chan, dtype=i64),
                      torch.tensor(self.in_term, dtype=i64), torch.tensor(self.out_chan, dtype=i64),
                      torch.tensor(self.out_term, dtype=i64))


class CostModel:
    """MACs and parameters of a network as functions of which group channels are kept.

    Built from the layer table of a forward trace and the channel groups; ``total_macs`` and
    ``total_params`` are the measured figures of the unpruned model
    (:func:`~slimdepth.deploy.cost.count_macs`, all parameters), the part no group changes being
    the difference to the channel-dependent terms evaluated with every channel kept.
    """

    def __init__(self, model: nn.Module, groups: Sequence[ChannelGroup],
                 layers: Mapping[str, LayerInfo] | None = None) -> None:
        if not groups:
            size = DEFAULT_EXAMPLE_SIZE
        else:
            size = tuple(groups[0].input_size)
            if any(tuple(g.input_size) != size for g in groups):
                raise ConfigError("channel groups traced at different input sizes cannot share one cost model")
        self.input_size: tuple[int, int] = (int(size[0]), int(size[1]))
        self.groups = list(groups)
        self.offsets = [0]
        for g in self.groups:
            self.offsets.append(self.offsets[-1] + g.channels)
        layers = dict(layers) if layers is not None else trace_layers(model, self.input_size)
        self.layers = layers
        self._check(model)

        # which group governs each side of each layer
        out_side: dict[str, list[int]] = {}
        in_side: dict[str, list[int]] = {}
        in_covered: dict[str, int] = {}
        bn_out: dict[str, list[int]] = {}
        depthwise: set[str] = set()
        for gi, g in enumerate(self.groups):
            base = self.offsets[gi]
            for name in g.producers:
                module = model.get_submodule(name)
                if name in layers:
                    out_side[name] = [base + c for c in range(g.channels)]
                elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                    bn_out[name] = [base + c for c in range(g.channels)]
            depthwise.update(g.depthwise)
            for s in g.consumers:
                in_side.setdefault(s.layer, []).extend(base + r for r in s.root_indices)
                in_covered[s.layer] = in_covered.get(s.layer, 0) + len(s.indices)

        macs, conv_params, interp = _TermBuilder(), _TermBuilder(), _TermBuilder()
        #: the layers in the order of their MACs terms (one each), and which are depthwise
        self.layer_names: list[str] = list(layers)
        self.layer_depthwise: list[bool] = []
        for name, info in layers.items():
            outs = out_side.get(name, [])
            out_const = 0 if outs else info.out_channels
            self.layer_depthwise.append(name in depthwise or (info.depthwise and name not in in_side))
            if self.layer_depthwise[-1]:
                per_group = info.in_channels // info.groups  # depthwise: 1 input per output channel
                macs.add(info.positions * info.kernel * per_group, 1, out_const, (), outs)
                conv_params.add(info.kernel * per_group, 1, out_const, (), outs)
            else:
                ins = in_side.get(name, [])
                in_const = info.in_channels - in_covered.get(name, 0)
                macs.add(info.positions * info.kernel / info.groups, in_const, out_const, ins, outs)
                conv_params.add(info.kernel / info.groups, in_const, out_const, ins, outs)
            if info.bias:
                conv_params.add(1, 1, out_const, (), outs)
        for name, outs in bn_out.items():
            bn = model.get_submodule(name)
            if getattr(bn, "affine", False):
                conv_params.add(2, 1, 0, (), outs)
        for gi, g in enumerate(self.groups):
            base = self.offsets[gi]
            for r in g.interpolations:
                interp.add(r.macs_per_channel, 1, 0, (), [base + c for c in r.root_indices])

        self._macs = macs.build()
        self._params = conv_params.build()
        self._interp = interp.build()
        ones = torch.ones(self.offsets[-1], dtype=torch.float64)
        measured = count_macs(model, self.input_size)
        self.total_macs = int(measured.total)
        self.measured_conv_macs = int(measured.by_kind.get("conv", 0) + measured.by_kind.get("matmul", 0))
        self.conv_macs = int(round(float(self._macs.evaluate(ones))))
        self.other_macs = self.total_macs - self.conv_macs - int(round(float(self._interp.evaluate(ones))))
        self.total_params = int(count_parameters(model))
        self.other_params = self.total_params - int(round(float(self._params.evaluate(ones))))

    def _check(self, model: nn.Module) -> None:
        """The groups must describe this model (same producers with the same widths)."""
        for g in self.groups:
            try:
                root = model.get_submodule(g.root)
            except AttributeError:
                raise ConfigError(f"channel group {g.root!r} is not a layer of this model") from None
            if getattr(root, "out_channels", None) != g.channels:
                raise ConfigError(f"channel group {g.root!r} has {g.channels} channels but the layer has "
                                  f"{getattr(root, 'out_channels', None)}: groups of another model?")

    @property
    def num_channels(self) -> int:
        """Channels over all groups (the length of a keep vector)."""
        return self.offsets[-1]

    def _on(self, attr: str, device: torch.device) -> _Terms:
        """The term table ``attr`` on ``device`` (moved once, then kept there)."""
        terms: _Terms = getattr(self, attr)
        if terms.coeff.device != device:
            terms = terms.to(device)
            setattr(self, attr, terms)
        return terms

    def macs(self, keep: Tensor, include_other: bool = True) -> Tensor:
        """MACs for keep values ``keep`` (probabilities or 0/1, all groups concatenated)."""
        keep = keep.to(torch.float64)
        total = self._on("_macs", keep.device).evaluate(keep)
        if include_other:
            total = total + self._on("_interp", keep.device).evaluate(keep) + self.other_macs
        return total

    def layer_channels(self, keep: Tensor) -> tuple[Tensor, Tensor]:
        """Input and output channels of every layer (:attr:`layer_names` order) for keep values
        ``keep``: exact counts for 0/1 keep values, expected ones for probabilities (float64,
        differentiable). A depthwise conv reads as many channels as it writes."""
        keep = keep.to(torch.float64)
        c_in, c_out = self._on("_macs", keep.device).sides(keep)
        dw = torch.tensor(self.layer_depthwise, dtype=torch.bool, device=keep.device)
        return torch.where(dw, c_out, c_in), c_out

    def params(self, keep: Tensor) -> Tensor:
        """Parameters for keep values ``keep`` (BatchNorm affine parameters included)."""
        keep = keep.to(torch.float64)
        return self._on("_params", keep.device).evaluate(keep) + self.other_params

    def keep_vector(self, keep: Mapping[str, Sequence[int]]) -> Tensor:
        """0/1 keep vector from ``{root: kept indices}`` (groups not named keep every channel)."""
        vec = torch.ones(self.num_channels, dtype=torch.float64)
        for gi, g in enumerate(self.groups):
            if g.root in keep:
                part = torch.zeros(g.channels, dtype=torch.float64)
                part[list(keep[g.root])] = 1.0
                vec[self.offsets[gi]:self.offsets[gi + 1]] = part
        return vec

    def hard_macs(self, keep: Mapping[str, Sequence[int]]) -> int:
        """Exact MACs when each group keeps the listed channels."""
        return int(round(float(self.macs(self.keep_vector(keep)))))

    def hard_params(self, keep: Mapping[str, Sequence[int]]) -> int:
        """Exact parameter count when each group keeps the listed channels."""
        return int(round(float(self.params(self.keep_vector(keep)))))
