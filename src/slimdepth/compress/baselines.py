"""Static pruning baselines to compare the learned masks against, both to a MACs budget.

* :func:`magnitude_prune` -- L1-norm filter pruning (Li et al. 2017) with torch-pruning's
  ``MagnitudeImportance(p=1)``: per group, the L1 norm of every coupled weight slice (conv
  filters, consumer input slices, BN scales), averaged over the layers and normalised by the
  group mean; channels are then ranked *globally* across groups and the lowest removed.
* :func:`uniform_prune` -- uniform width scaling: every group keeps the same fraction of its
  channels (rounded, at least one), choosing within a group by the same L1 importance.

In both, the amount pruned (the global pruning ratio, or the kept fraction) is found by
bisection (:func:`~slimdepth.compress.search.bisect`) so that the MACs of the result --
computed exactly by the channel cost model, then measured with
:func:`~slimdepth.deploy.cost.count_macs` on the pruned model -- are within ``tolerance``
(relative, 1% by default) of ``target_macs_ratio`` x the original MACs. The channels are removed
by :meth:`~slimdepth.compress.graph.ChannelGraph.prune`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from slimdepth.compress.channel_cost import CostModel
from slimdepth.compress.gating.predictor import keep_count
from slimdepth.compress.graph import ChannelGraph
from slimdepth.compress.layers import DEFAULT_EXAMPLE_SIZE
from slimdepth.compress.search import bisect
from slimdepth.deploy.cost import count_macs, count_parameters
from slimdepth.errors import ConfigError
from slimdepth.options import check_number
from slimdepth.models.widths import record_widths

__all__ = ["PruneReport", "filter_importance", "magnitude_prune", "magnitude_rule", "uniform_prune", "uniform_rule",
           "uniform_width"]


@dataclass
class PruneReport:
    """What a baseline did: the MACs it reached and the widths it left.

    ``setting`` is the global fraction of group channels removed (magnitude) or the fraction
    of channels every group keeps (uniform). ``group_widths`` maps each group root to
    (channels before, channels kept); ``layer_widths`` is :func:`record_widths` of the result
    (empty for models outside the zoo).
    """

    method: str
    target_ratio: float
    achieved_ratio: float
    original_macs: int
    pruned_macs: int
    original_params: int
    pruned_params: int
    setting: float
    input_size: tuple[int, int]
    group_widths: dict[str, tuple[int, int]] = field(default_factory=dict)
    removal: dict[str, list[int]] = field(default_factory=dict)
    layer_widths: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["group_widths"] = {k: list(v) for k, v in self.group_widths.items()}
        return d


def _check_target(target: float, tolerance: float) -> None:
    check_number(target, "target_macs_ratio", low=0, low_open=True, high=1, expected="in (0, 1]")
    check_number(tolerance, "tolerance", low=0, low_open=True, high=1, high_open=True, expected="in (0, 1)")


def filter_importance(model: nn.Module, example_size: int | Sequence[int] = DEFAULT_EXAMPLE_SIZE,
                      ignore: Iterable[str | nn.Module] = (), importance: Any = None) -> dict[str, torch.Tensor]:
    """Per channel-group root, the score of each channel that :func:`magnitude_prune` ranks by
    (torch-pruning's group L1 importance, normalised by the group mean, so comparable across
    groups). ``model`` is not changed."""
    return ChannelGraph(copy.deepcopy(model), example_size, ignore).importance(importance)


def prepare_prune(model: nn.Module, example_size: int | Sequence[int], ignore: Iterable[str | nn.Module] = (),
                  importance: Any = None) -> tuple[ChannelGraph, CostModel, list[torch.Tensor]]:
    """The channel graph of a copy of ``model``, its cost model and L1 (or ``importance``) scores."""
    graph = ChannelGraph(copy.deepcopy(model), example_size, ignore)
    if not graph.groups:
        raise ConfigError("the model has no prunable channel groups")
    cost = CostModel(graph.model, graph.groups, graph.layers)
    scores = graph.importance(importance)
    return graph, cost, [scores[g.root] for g in graph.groups]


def finish_prune(method: str, graph: ChannelGraph, cost: CostModel, keep: dict[str, list[int]], setting: float,
                 target: float, tolerance: float | None) -> tuple[nn.Module, PruneReport]:
    """Prune ``graph.model`` (a copy) to ``keep``, measure it, and write the report. With a
    ``tolerance`` the MACs reached must be within it of ``target`` (a MACs ratio); ``None``
    skips the check (a latency budget is checked by measuring)."""
    groups = graph.groups
    removal = {g.root: sorted(set(range(g.channels)) - set(keep[g.root])) for g in groups}
    model = graph.prune(removal)
    pruned_macs = int(count_macs(model, graph.input_size).total)
    achieved = pruned_macs / cost.total_macs
    if tolerance is not None and abs(achieved - target) > tolerance * target:
        raise ConfigError(f"{method} pruning reached {achieved:.4f} of the original MACs, not {target} "
                          f"(within {tolerance:.0%}); the target may be below what the prunable groups allow")
    try:
        layer_widths = record_widths(model)
    except ConfigError:
        layer_widths = {}
    report = PruneReport(
        method=method, target_ratio=float(target), achieved_ratio=achieved, original_macs=cost.total_macs,
        pruned_macs=pruned_macs, original_params=cost.total_params, pruned_params=int(count_parameters(model)),
        setting=float(setting), input_size=graph.input_size,
        group_widths={g.root: (g.channels, len(keep[g.root])) for g in groups},
        removal={k: v for k, v in removal.items() if v}, layer_widths=layer_widths)
    return model, report


def magnitude_prune(model: nn.Module, target_macs_ratio: float,
                    example_size: int | Sequence[int] = DEFAULT_EXAMPLE_SIZE,
                    ignore: Iterable[str | nn.Module] = (), tolerance: float = 0.01,
                    importance: Any = None) -> tuple[nn.Module, PruneReport]:
    """L1-norm filter pruning with global ranking to ``target_macs_ratio`` of the original MACs.

    Returns a pruned copy (``model`` is left as it is) and a :class:`PruneReport`. ``importance``
    replaces torch-pruning's ``MagnitudeImportance(p=1)`` (any torch-pruning group importance).
    Raises :class:`ConfigError` when the target cannot be reached within ``tolerance``.
    """
    _check_target(target_macs_ratio, tolerance)
    graph, cost, scores = prepare_prune(model, example_size, ignore, importance)
    ratio, keep = _fit(magnitude_rule(graph.groups, scores), cost, target_macs_ratio, increasing=False)
    return finish_prune("magnitude", graph, cost, keep, ratio, float(target_macs_ratio), tolerance)


def magnitude_rule(groups: Sequence[Any], scores: Sequence[torch.Tensor]) -> Callable[[float], dict[str, list[int]]]:
    """The channels magnitude pruning keeps at each global pruning ratio (the least important
    ``ratio`` of all group channels go; every group keeps at least its best channel)."""
    owner = torch.cat([torch.full((g.channels,), i, dtype=torch.long) for i, g in enumerate(groups)])
    local = torch.cat([torch.arange(g.channels) for g in groups])
    order = torch.argsort(torch.cat(list(scores)), stable=True)  # least important first
    total = len(order)

    def keep_for(ratio: float) -> dict[str, list[int]]:
        n = min(int(math.floor(ratio * total + 1e-9)), total)
        removed = torch.zeros(total, dtype=torch.bool)
        removed[order[:n]] = True
        keep: dict[str, list[int]] = {}
        for i, g in enumerate(groups):
            sel = owner == i
            kept = local[sel & ~removed].tolist()
            if not kept:  # never empty a group: keep its most important channel
                kept = [int(torch.argmax(scores[i]))]
            keep[g.root] = sorted(kept)
        return keep

    return keep_for


def uniform_prune(model: nn.Module, target_macs_ratio: float,
                  example_size: int | Sequence[int] = DEFAULT_EXAMPLE_SIZE,
                  ignore: Iterable[str | nn.Module] = (), tolerance: float = 0.01,
                  importance: Any = None) -> tuple[nn.Module, PruneReport]:
    """Uniform width scaling to ``target_macs_ratio`` of the original MACs.

    Every group keeps ``max(1, round(f * channels))`` channels, the ones of largest L1
    importance, with one fraction ``f`` for all groups found by bisection. Returns a pruned copy
    and a :class:`PruneReport` (``setting`` = ``f``).
    """
    _check_target(target_macs_ratio, tolerance)
    graph, cost, scores = prepare_prune(model, example_size, ignore, importance)
    fraction, keep = _fit(uniform_rule(graph.groups, scores), cost, target_macs_ratio, increasing=True)
    return finish_prune("uniform", graph, cost, keep, fraction, float(target_macs_ratio), tolerance)


def uniform_rule(groups: Sequence[Any], scores: Sequence[torch.Tensor]) -> Callable[[float], dict[str, list[int]]]:
    """The channels uniform pruning keeps at each kept fraction (the most important of each group)."""
    ranked = [torch.argsort(s, descending=True, stable=True) for s in scores]  # most important first

    def keep_for(fraction: float) -> dict[str, list[int]]:
        return {g.root: sorted(ranked[i][:uniform_width(g.channels, fraction)].tolist()) for i, g in enumerate(groups)}

    return keep_for


def _fit(keep_for: Callable[[float], dict[str, list[int]]], cost: CostModel, target_macs_ratio: float,
         increasing: bool) -> tuple[float, dict[str, list[int]]]:
    """The setting in [0, 1] whose channel choice ``keep_for(setting)`` costs closest to the
    target MACs, with that choice: both ends, then the bisection's midpoints, are priced, and the
    closest seen wins (MACs are monotone in the setting: rising when ``increasing``)."""
    target = float(target_macs_ratio) * cost.total_macs
    best: tuple[float, float, dict[str, list[int]]] | None = None

    def below(setting: float) -> bool:
        nonlocal best
        keep = keep_for(setting)
        macs = cost.hard_macs(keep)
        if best is None or abs(macs - target) < best[0]:
            best = (abs(macs - target), setting, keep)
        return (macs < target) == increasing

    below(0.0)
    below(1.0)
    bisect(below, 0.0, 1.0, max_steps=60)
    assert best is not None
    return best[1], best[2]


def uniform_width(channels: int, fraction: float) -> int:
    """Channels a group of ``channels`` keeps at ``fraction``: rounded half up, at least 1
    (the same rule as a gated layer's k, :func:`slimdepth.compress.gating.keep_count`)."""
    return keep_count(fraction, channels)
