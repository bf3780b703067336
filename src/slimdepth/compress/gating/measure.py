"""What a gated network really executes: MACs at batch 1, latency against its dense self, and the
density that meets a MACs budget.

The gated modules count the MACs of every conv and predictor call (``last_macs``); the totals
here come from :func:`~slimdepth.deploy.cost.count_macs` on a real forward, so both views can be
checked against each other. Latency is timed dense (gating ``off``, the same weights) and
gated, interleaved, so that the ratio is fair on a machine whose speed drifts.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from slimdepth.compress.gating.convert import (
    gated_layers,
    gated_modules,
    gating_config,
    gating_mode,
    is_gated,
    set_density,
)
from slimdepth.compress.search import bisect
from slimdepth.deploy.cost import count_macs
from slimdepth.deploy.latency import measure_latency, summarize_samples
from slimdepth.errors import ConfigError

__all__ = ["GatingReport", "density_for_target", "executed_macs", "gating_report", "latency_comparison"]


def _layer_table(model: nn.Module) -> dict[str, dict[str, int]]:
    """Per gated module: the MACs its convs and predictors ran in the last forward."""
    return {name: dict(m.last_macs) for name, m in gated_modules(model)}


def executed_macs(model: nn.Module, size: int | Sequence[int]) -> dict[str, Any]:
    """MACs executed per image at batch 1 in eval mode, dense vs gated.

    Both totals are measured by :func:`~slimdepth.deploy.cost.count_macs` on a real forward (the
    gated one runs the sparse path, so the sliced convs and the predictors are what it counts);
    the gated modules also count their own convs, which gives ``self_counted_macs``: dense total
    minus the gated modules' dense MACs plus their executed MACs (must equal ``executed_macs``).
    """
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
    return {**summarize_samples(samples), "runs": len(samples)}


def latency_comparison(model: nn.Module, size: int | Sequence[int], runs: int = 30, warmup: int = 5,
                       rounds: int = 5, threads: int | None = None) -> dict[str, Any]:
    """Batch-1 latency of the same network dense (gating ``off``, identical weights) and gated
    (sparse path), timed with :func:`~slimdepth.deploy.latency.measure_latency`.

    The ``runs`` timed passes of each are split into ``rounds`` interleaved chunks (dense,
    gated, dense, ...) so drifting machine load affects both alike. ``ratio`` = gated median /
    dense median; ``reduction`` = 1 - ratio.
    """
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


def density_for_target(model: nn.Module, target: float, size: tuple[int, int], tolerance: float = 0.005) -> tuple[float, float]:
    """The largest gating density whose executed MACs (batch 1) are at most ``target`` x the
    dense MACs, by bisection on a copy of the gated ``model``; returns (density, ratio)."""
    probe = copy.deepcopy(model).eval()
    densities = (gating_config(model) or {}).get("densities") or None

    def ratio(d: float) -> float:
        set_density(probe, d, densities)
        with torch.no_grad():
            return float(executed_macs(probe, size)["ratio"])

    if ratio(1.0) <= target:
        return 1.0, ratio(1.0)
    floor = ratio(1e-6)
    if floor > target:
        raise ConfigError(f"gating the chosen layers can bring the executed MACs down to {floor:.3f} of the dense "
                          f"network at best, not {target:.3f}; gate more layers (--gate-layers) or raise --target-macs")
    density, _ = bisect(lambda d: ratio(d) <= target, 1e-6, 1.0, tolerance)
    return density, ratio(density)
