"""Pruning to a latency budget on a runtime (NetAdapt-style: predict, prune, measure, tighten).

The budget is met in two steps. First the channels are chosen so that the *predicted* latency
(:class:`~slimdepth.compress.latency_cost.LatencyCost`, from a measured latency table) fits a
target, every group's count rounded to the runtime's fast channel multiple:

* ``magnitude`` / ``uniform``: the global pruning ratio (or kept fraction) is bisected on the
  predicted latency (:func:`choose_baseline`);
* ``masks``: one global threshold on the learned mask logits is bisected likewise
  (:func:`choose_masks`), after the joint training that priced the masks in milliseconds.

Then the pruned network is exported and measured on the runtime (:func:`meet_budget`); if it
misses the budget, the target is tightened by the ratio budget / measured and the choice made
again, a bounded number of times (and loosened the same way when it lands below 90% of the
budget, keeping the largest network that fits). Every try is recorded: predicted and measured
milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from slimdepth.compress.baselines import finish_prune, magnitude_rule, prepare_prune, uniform_rule
from slimdepth.compress.latency_cost import LatencyCost
from slimdepth.compress.latency_table import LatencyTable, aligned
from slimdepth.compress.masks import MaskSet
from slimdepth.compress.search import bisect
from slimdepth.deploy.layer_timing import time_networks
from slimdepth.errors import ConfigError

__all__ = ["choose_baseline", "choose_masks", "fit_latency", "floor_ms", "meet_budget"]

Keep = dict[str, list[int]]
#: a candidate within this share of the budget (and under it) ends the search; one further below
#: it is loosened towards the budget (the table over-predicted), keeping the best that fits
USE_BUDGET = 0.9


def floor_ms(latency: LatencyCost) -> float:
    """The least predicted latency there is: every group at its narrowest (aligned) width."""
    keep = {g.root: list(range(aligned(1, g.channels, latency.table.align))) for g in latency.cost.groups}
    return latency.keep_ms(keep)


def check_budget(latency: LatencyCost, budget_ms: float) -> None:
    """A budget below what the widths can reach is refused before any work, in one line."""
    table, low = latency.table, floor_ms(latency)
    if budget_ms <= table.fixed_ms or budget_ms < low:
        h, w = table.size
        raise ConfigError(f"--target-latency {budget_ms:g} ms cannot be met on {table.runtime} at {h}x{w}: the fixed "
                          f"cost the widths cannot remove is {table.fixed_ms:.3f} ms and the narrowest network predicts "
                          f"{low:.3f} ms (full width: {latency.full_ms:.3f} ms)")


def fit_latency(keep_for: Callable[[float], Keep], latency: LatencyCost, target_ms: float,
                order: Mapping[str, Sequence[int]]) -> tuple[float, Keep, float]:
    """The setting in [0, 1] (more kept as it rises) whose aligned choice predicts the most
    milliseconds within ``target_ms``; with it, the choice and its prediction. When even the
    least setting misses, that one is returned (the caller measures and reports)."""
    def choose(setting: float) -> tuple[Keep, float]:
        keep = latency.align_keep(keep_for(setting), order)
        return keep, latency.keep_ms(keep)

    best: tuple[float, Keep, float] | None = None

    def fits(setting: float) -> bool:
        nonlocal best
        keep, ms = choose(setting)
        ok = ms <= target_ms
        if ok and (best is None or ms > best[2]):
            best = (setting, keep, ms)
        return ok

    if fits(1.0):
        assert best is not None
        return best
    if not fits(0.0):
        keep, ms = choose(0.0)
        return 0.0, keep, ms
    bisect(fits, 0.0, 1.0, max_steps=40)
    assert best is not None
    return best


def _importance_order(groups: Sequence[Any], scores: Sequence[torch.Tensor]) -> Keep:
    return {g.root: torch.argsort(s, descending=True, stable=True).tolist() for g, s in zip(groups, scores)}


def choose_baseline(model: nn.Module, method: str, table: LatencyTable, target_ms: float,
                    size: tuple[int, int]) -> tuple[nn.Module, dict[str, Any]]:
    """``magnitude`` or ``uniform`` pruning of a copy of ``model`` to a predicted ``target_ms``."""
    graph, cost, scores = prepare_prune(model, size)
    latency = LatencyCost(table, cost)
    rule = magnitude_rule(graph.groups, scores) if method == "magnitude" else uniform_rule(graph.groups, scores)
    # magnitude's setting is the share removed: flip it so that more is kept as the setting rises
    keep_for = (lambda s: rule(1.0 - s)) if method == "magnitude" else rule
    setting, keep, predicted = fit_latency(keep_for, latency, target_ms, _importance_order(graph.groups, scores))
    pruned, report = finish_prune(method, graph, cost, keep, setting if method == "uniform" else 1.0 - setting,
                                  0.0, None)
    return pruned, {"setting": report.setting, "predicted_ms": predicted, "macs_ratio": report.achieved_ratio,
                    "channels_kept": {k: list(v) for k, v in report.group_widths.items()}}


def choose_masks(masks: MaskSet, latency: LatencyCost, target_ms: float) -> dict[str, Any]:
    """Fit the learned masks to a predicted ``target_ms``: one global threshold on the logits
    (the most confident channels stay), counts aligned by logit; the logits are then set so
    that the hard masks are exactly that choice. Returns the prediction and the threshold."""
    logits = [lg.detach() for lg in masks.logits]
    top = max(float(lg.max()) for lg in logits) + 1.0
    bottom = min(float(lg.min()) for lg in logits) - 1.0
    order = {g.root: torch.argsort(lg, descending=True, stable=True).tolist() for g, lg in zip(masks.groups, logits)}

    def keep_for(setting: float) -> Keep:
        shift = top - setting * (top - bottom)
        keep = {}
        for g, lg in zip(masks.groups, logits):
            on = torch.nonzero(lg > shift).flatten().tolist()
            keep[g.root] = on or [int(lg.argmax())]
        return keep

    setting, keep, predicted = fit_latency(keep_for, latency, target_ms, order)
    with torch.no_grad():
        for g, lg in zip(masks.groups, masks.logits):
            on = torch.zeros(g.channels, dtype=torch.bool, device=lg.device)
            on[keep[g.root]] = True
            magnitude = lg.abs() + 1e-3
            lg.copy_(torch.where(on, magnitude, -magnitude))
    return {"threshold": top - setting * (top - bottom), "predicted_ms": predicted}


def meet_budget(choose: Callable[[float], tuple[nn.Module, dict[str, Any]]], table: LatencyTable, budget_ms: float,
                reference: nn.Module, max_tries: int = 4, runs: int = 50, log: Callable[[str], None] | None = None
                ) -> tuple[nn.Module, dict[str, Any]]:
    """Choose a network for the budget, measure it exported on the table's runtime, and tighten
    the predicted target until it fits or ``max_tries`` are spent.

    Each candidate is timed side by side with ``reference`` (the unpruned network): a shared VM's
    speed drifts by up to 1.7x from one minute to the next, so the figure the budget is judged on
    is the candidate's *calibrated* latency, its measured share of the reference times the
    reference's latency when the table was calibrated (``calibrated_ms``); the raw measurement is
    recorded beside it (``measured_ms``, ``reference_ms``). ``choose(target_ms)`` returns the
    pruned network for a predicted target and a report. Returns the last network and
    ``{"budget_ms", "predicted_ms", "measured_ms", "calibrated_ms", "met", "tries": [...], ...}`` for
    the network returned: the largest that fits, else the last."""
    say = log or (lambda message: None)
    target = float(budget_ms)
    tries: list[dict[str, Any]] = []
    model: nn.Module | None = None
    best: tuple[float, nn.Module, dict[str, Any]] | None = None  # the largest candidate that fits
    for attempt in range(1, max_tries + 1):
        model, info = choose(target)
        predicted = table.predict_model(model)
        measured, ref = time_networks([model, reference], table.runtime, table.size, table.threads, runs=runs)
        calibrated = measured / ref * table.calibration_full_ms
        tries.append({"try": attempt, "target_ms": target, "predicted_ms": predicted, "measured_ms": measured,
                      "reference_ms": ref, "calibrated_ms": calibrated,
                      **{k: v for k, v in info.items() if k not in ("channels_kept", "predicted_ms")}})
        say(f"try {attempt}: predicted {predicted:.3f} ms, measured {measured:.3f} ms beside the unpruned network's "
            f"{ref:.3f} ms = {calibrated:.3f} ms at the table's calibration on {table.runtime} (budget {budget_ms:g} ms)")
        if calibrated <= budget_ms and (best is None or calibrated > best[0]):
            best = (calibrated, model, tries[-1])
        if USE_BUDGET * budget_ms <= calibrated <= budget_ms:
            break  # fits and uses the budget
        # over the budget: tighten; well under it (the table over-predicted): loosen, keeping the best fit
        target *= budget_ms / calibrated
    assert model is not None
    if best is not None:
        model, last = best[1], best[2]
    else:
        last = tries[-1]
    return model, {"budget_ms": float(budget_ms), "predicted_ms": last["predicted_ms"],
                   "measured_ms": last["measured_ms"], "reference_ms": last["reference_ms"],
                   "calibrated_ms": last["calibrated_ms"], "met": last["calibrated_ms"] <= budget_ms, "tries": tries,
                   "runtime": table.runtime, "size": list(table.size), "threads": table.threads}
