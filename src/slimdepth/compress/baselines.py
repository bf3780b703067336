"""Static pruning baselines to compare the learned masks against, both to a MACs budget.

* :func:`magnitude_prune` -- L1-norm filter pruning (Li et al. 2017) with torch-pruning's
  ``MagnitudeImportance(p=1)``: per group, the L1 norm of every coupled weight slice (conv
  filters, consumer input slices, BN scales), averaged over the layers and normalised by the
  group mean; channels are then ranked *globally* across groups and the lowest removed.
* :func:`uniform_prune` -- uniform width scaling: every group keeps the same fraction of its
  channels (rounded, at least one), choosing within a group by the same L1 importance.

In both, the amount pruned (the global pruning ratio, or the kept fraction) is found by
bisection so that the MACs of the result -- computed exactly from the channel groups, then
measured with :func:`~slimdepth.deploy.cost.count_macs` on the pruned model -- are within
``tolerance`` (relative, 1% by default) of ``target_macs_ratio`` x the original MACs.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from slimdepth.compress.groups import DEFAULT_EXAMPLE_SIZE, _analyse, _Analysis, _prune_with_graph
from slimdepth.compress.masks import CostModel
from slimdepth.errors import ConfigError

__all__ = ["PruneReport", "filter_importance", "magnitude_prune", "uniform_prune"]


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
    if not 0 < float(target) <= 1:
        raise ConfigError(f"target_macs_ratio must be in (0, 1], got {target}")
    if not 0 < float(tolerance) < 1:
        raise ConfigError(f"tolerance must be in (0, 1), got {tolerance}")


def _importances(analysis: _Analysis, importance: Any) -> list[torch.Tensor]:
    """Per group, one importance score per channel (torch-pruning's group importance)."""
    scores = []
    for g in analysis.groups:
        imp = importance(analysis.tp_groups[g.root])
        if imp is None or len(imp) != g.channels:
            raise ConfigError(f"no importance for the channels of {g.root!r}")
        scores.append(imp.detach().to("cpu", torch.float64))
    return scores


def filter_importance(model: nn.Module, example_size: int | Sequence[int] = DEFAULT_EXAMPLE_SIZE,
                      ignore: Iterable[str | nn.Module] = (), importance: Any = None) -> dict[str, torch.Tensor]:
    """Per channel-group root, the score of each channel that :func:`magnitude_prune` ranks by
    (torch-pruning's group L1 importance, normalised by the group mean, so comparable across
    groups). ``model`` is not changed."""
    analysis = _analyse(copy.deepcopy(model), example_size, ignore)
    scorer = importance if importance is not None else tp.importance.MagnitudeImportance(p=1)
    return {g.root: s for g, s in zip(analysis.groups, _importances(analysis, scorer))}


def _prepare(model: nn.Module, target: float, example_size: int | Sequence[int], ignore: Iterable[str | nn.Module],
             tolerance: float, importance: Any) -> tuple[_Analysis, CostModel, list[torch.Tensor]]:
    """The groups of a copy of ``model``, their cost model and L1 (or ``importance``) scores."""
    _check_target(target, tolerance)
    analysis = _analyse(copy.deepcopy(model), example_size, ignore)
    if not analysis.groups:
        raise ConfigError("the model has no prunable channel groups")
    cost = CostModel(analysis.model, analysis.groups, analysis.layers)
    scorer = importance if importance is not None else tp.importance.MagnitudeImportance(p=1)
    return analysis, cost, _importances(analysis, scorer)


def _search(evaluate: Callable[[float], tuple[int, Any]], target_macs: float, lo: float, hi: float,
            increasing: bool, steps: int = 60) -> tuple[float, int, Any]:
    """Bisect ``x`` in [lo, hi] for MACs closest to ``target_macs`` (MACs monotone in ``x``)."""
    best: tuple[float, float, int, Any] | None = None

    def consider(x: float) -> int:
        nonlocal best
        macs, keep = evaluate(x)
        err = abs(macs - target_macs)
        if best is None or err < best[0]:
            best = (err, x, macs, keep)
        return macs

    consider(lo)
    consider(hi)
    for _ in range(steps):
        mid = (lo + hi) / 2
        macs = consider(mid)
        if (macs < target_macs) == increasing:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-9:
            break
    assert best is not None
    return best[1], best[2], best[3]


def _finish(method: str, analysis: _Analysis, cost: CostModel, keep: dict[str, list[int]], setting: float,
            target: float, tolerance: float) -> tuple[nn.Module, PruneReport]:
    """Prune ``analysis.model`` (a copy) to ``keep``, measure it, and write the report."""
    from slimdepth.compress.widths import note_widths, record_widths, refresh_channel_attributes
    from slimdepth.deploy.cost import count_macs, count_parameters

    model = analysis.model
    removal = {g.root: sorted(set(range(g.channels)) - set(keep[g.root])) for g in analysis.groups}
    with torch.no_grad():
        _prune_with_graph(analysis.graph, model, {k: v for k, v in removal.items() if v})
    refresh_channel_attributes(model, analysis.input_size)
    note_widths(model)
    pruned_macs = int(count_macs(model, analysis.input_size).total)
    achieved = pruned_macs / cost.total_macs
    if abs(achieved - target) > tolerance * target:
        raise ConfigError(f"{method} pruning reached {achieved:.4f} of the original MACs, not {target} "
                          f"(within {tolerance:.0%}); the target may be below what the prunable groups allow")
    try:
        layer_widths = record_widths(model)
    except ConfigError:
        layer_widths = {}
    report = PruneReport(
        method=method, target_ratio=float(target), achieved_ratio=achieved, original_macs=cost.total_macs,
        pruned_macs=pruned_macs, original_params=cost.total_params, pruned_params=int(count_parameters(model)),
        setting=float(setting), input_size=analysis.input_size,
        group_widths={g.root: (g.channels, len(keep[g.root])) for g in analysis.groups},
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
    analysis, cost, scores = _prepare(model, target_macs_ratio, example_size, ignore, tolerance, importance)
    groups = analysis.groups
    owner = torch.cat([torch.full((g.channels,), i, dtype=torch.long) for i, g in enumerate(groups)])
    local = torch.cat([torch.arange(g.channels) for g in groups])
    order = torch.argsort(torch.cat(scores), stable=True)  # least important first
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

    ratio, keep = _fit(keep_for, cost, target_macs_ratio, increasing=False)
    return _finish("magnitude", analysis, cost, keep, ratio, float(target_macs_ratio), tolerance)


def uniform_prune(model: nn.Module, target_macs_ratio: float,
                  example_size: int | Sequence[int] = DEFAULT_EXAMPLE_SIZE,
                  ignore: Iterable[str | nn.Module] = (), tolerance: float = 0.01,
                  importance: Any = None) -> tuple[nn.Module, PruneReport]:
    """Uniform width scaling to ``target_macs_ratio`` of the original MACs.

    Every group keeps ``max(1, round(f * channels))`` channels, the ones of largest L1
    importance, with one fraction ``f`` for all groups found by bisection. Returns a pruned copy
    and a :class:`PruneReport` (``setting`` = ``f``).
    """
    analysis, cost, scores = _prepare(model, target_macs_ratio, example_size, ignore, tolerance, importance)
    groups = analysis.groups
    ranked = [torch.argsort(s, descending=True, stable=True) for s in scores]  # most important first

    def keep_for(fraction: float) -> dict[str, list[int]]:
        return {g.root: sorted(ranked[i][:uniform_width(g.channels, fraction)].tolist()) for i, g in enumerate(groups)}

    fraction, keep = _fit(keep_for, cost, target_macs_ratio, increasing=True)
    return _finish("uniform", analysis, cost, keep, fraction, float(target_macs_ratio), tolerance)


def _fit(keep_for: Callable[[float], dict[str, list[int]]], cost: CostModel, target_macs_ratio: float,
         increasing: bool) -> tuple[float, dict[str, list[int]]]:
    """The setting in [0, 1] whose channel choice ``keep_for(setting)`` costs closest to the
    target MACs (bisection by :func:`_search`), with that choice."""

    def evaluate(setting: float) -> tuple[int, dict[str, list[int]]]:
        keep = keep_for(setting)
        return cost.hard_macs(keep), keep

    setting, _, keep = _search(evaluate, float(target_macs_ratio) * cost.total_macs, 0.0, 1.0, increasing=increasing)
    return setting, keep


def uniform_width(channels: int, fraction: float) -> int:
    """Channels a group of ``channels`` keeps at ``fraction``: rounded half up, at least 1
    (the same rule as a gated layer's k, :func:`slimdepth.compress.gating.keep_count`)."""
    from slimdepth.compress.gating import keep_count

    return keep_count(fraction, channels)
