"""Predicted latency as a differentiable function of the channels kept.

:class:`LatencyCost` joins a measured :class:`~slimdepth.compress.latency_table.LatencyTable`
with the channel cost model (:class:`~slimdepth.compress.channel_cost.CostModel`), which knows
how many input and output channels every layer keeps for a keep vector ``p`` over the channel
groups. With 0/1 keep values it is the table's prediction for the pruned network (what
:meth:`LatencyTable.predict_model` gives after removal); with keep probabilities the layers'
widths are expected counts and the grids are read between their points, so the learned masks
can be priced in milliseconds, as they are priced in MACs.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from slimdepth.compress.channel_cost import CostModel
from slimdepth.compress.graph import ChannelGraph
from slimdepth.compress.latency_table import LatencyTable, aligned, bilinear
from slimdepth.errors import ConfigError

__all__ = ["LatencyCost"]


class LatencyCost:
    """Milliseconds on the table's runtime for keep values over ``cost``'s channel groups."""

    def __init__(self, table: LatencyTable, cost: CostModel) -> None:
        full_in, full_out = cost.layer_channels(torch.ones(cost.num_channels, dtype=torch.float64))
        self.table = table
        self.cost = cost
        self._index: list[int] = []
        self._grids: list[tuple[Tensor, Tensor, Tensor, float]] = []
        for i, name in enumerate(cost.layer_names):
            layer = table.layers.get(name)
            if layer is None:
                raise ConfigError(f"the latency table was measured on another network: it has no layer {name!r}")
            if (int(round(float(full_in[i]))), int(round(float(full_out[i])))) != (layer.shape["cin"], layer.shape["cout"]):
                raise ConfigError(f"the latency table was measured on another network: {name} has "
                                  f"{int(full_in[i])} -> {int(full_out[i])} channels here, "
                                  f"{layer.shape['cin']} -> {layer.shape['cout']} in the table")
            self._index.append(i)
            self._grids.append((*table._tensors(name), float(layer.calls)))
        missing = set(table.layers) - set(cost.layer_names)
        if missing:
            raise ConfigError(f"the latency table was measured on another network: {sorted(missing)[0]!r} is not a layer here")
        self.full_ms = float(self.ms(torch.ones(cost.num_channels, dtype=torch.float64)))

    @classmethod
    def of_model(cls, table: LatencyTable, model: nn.Module, size: tuple[int, int]) -> LatencyCost:
        """The latency cost of (a copy of) ``model``'s channel groups traced at ``size``."""
        graph = ChannelGraph(copy.deepcopy(model).eval(), size)
        return cls(table, CostModel(graph.model, graph.groups, graph.layers))

    def ms(self, keep: Tensor) -> Tensor:
        """Predicted milliseconds (float64 scalar, differentiable) for keep values ``keep``."""
        c_in, c_out = self.cost.layer_channels(keep)
        total = torch.zeros((), dtype=torch.float64, device=keep.device)
        for i, (gi, go, ms, calls) in zip(self._index, self._grids):
            if gi.device != keep.device:
                gi, go, ms = gi.to(keep.device), go.to(keep.device), ms.to(keep.device)
            total = total + calls * bilinear(gi, go, ms, c_in[i], c_out[i])
        return self.table.fixed_ms + self.table.scale * total

    def keep_ms(self, keep: Mapping[str, Sequence[int]]) -> float:
        """Predicted milliseconds when each group keeps the listed channels."""
        return float(self.ms(self.cost.keep_vector(keep)))

    def align_keep(self, keep: Mapping[str, Sequence[int]], order: Mapping[str, Sequence[int]]) -> dict[str, list[int]]:
        """``keep`` with every group's count rounded to the table's channel multiple (the fast
        widths on this runtime; see :func:`~slimdepth.compress.latency_table.aligned`), taking or
        dropping channels in ``order`` (per group, most important first)."""
        out: dict[str, list[int]] = {}
        for g in self.cost.groups:
            kept = list(keep.get(g.root, range(g.channels)))
            k = aligned(len(kept), g.channels, self.table.align)
            if k == len(kept):
                out[g.root] = sorted(kept)
                continue
            ranked = [int(c) for c in order[g.root]]
            chosen = set(kept)
            if k < len(kept):  # drop the least important kept ones
                chosen = set([c for c in ranked if c in chosen][:k])
            else:  # take back the most important dropped ones
                for c in ranked:
                    if len(chosen) >= k:
                        break
                    chosen.add(c)
            out[g.root] = sorted(chosen)
        return out
