"""A latency model of a network, measured layer by layer on the target runtime (NetAdapt-style).

MACs are not time: per-layer overheads, memory-bound depthwise convs and resizes make two
networks of equal MACs run at very different speeds, and differently on each runtime. A
:class:`LatencyTable` predicts the batch-1 latency of any channel-pruned version of one network
on one runtime, at one input size, on this machine:

* every conv and linear layer is timed alone on the runtime (:func:`~slimdepth.deploy.layer_timing.time_layers`)
  over a grid of kept input and output widths (1, 1/4, 1/2, 3/4 and all of its channels, on each
  side a channel group governs; depthwise convs on one axis), with the per-call overhead of the
  runtime (the smallest possible layer) taken off; each grid is then made non-decreasing in both
  widths (a running maximum), so the predicted latency falls monotonically as channels go;
* a layer's latency at any widths is read from its grid by bilinear interpolation;
* whole-network latency = ``fixed_ms + scale * sum(layer latencies)``, calibrated by least
  squares on the whole network exported and measured at uniform widths (all, 3/4, 1/2, 1/4 of
  every group's channels) and at eight random ones. ``fixed_ms`` is what the widths cannot remove (resizes of the input and
  output, the graph's own overhead, I/O); ``scale`` absorbs what timing a layer alone misses
  (fused activations, adds and concatenations that shrink with the widths, cache effects).

:meth:`LatencyTable.check` measures the exported network at random widths (each group keeps a
random share of its channels) and reports the prediction's error; the table records it.
:class:`~slimdepth.compress.latency_cost.LatencyCost` turns the table into a differentiable
function of the channel keep values, so the learned masks can be priced in milliseconds.
"""

from __future__ import annotations

import copy
import json
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from slimdepth.compress.channel_cost import CostModel
from slimdepth.compress.graph import ChannelGraph
from slimdepth.deploy.layer_timing import (EMPTY_SHAPE, check_latency_runtime, conv_shape, network_samples, time_layers,
                                           time_networks)
from slimdepth.deploy.machine import cpu_model
from slimdepth.errors import ConfigError, DataError
from slimdepth.fileio import atomic_path, read_json
from slimdepth.models.base import eval_mode
from slimdepth.compress.layers import example_image, forward_traced
from slimdepth.options import check_number, parse_size

__all__ = ["GRID_FRACTIONS", "LatencyTable", "LayerTiming", "bilinear", "build_latency_table", "random_widths"]

FORMAT = "slimdepth-latency-table/1"
#: the kept shares of a side's channels timed for each layer (plus a single channel)
GRID_FRACTIONS = (0.25, 0.5, 0.75, 1.0)
#: the uniform widths the whole network is measured at to calibrate fixed cost and scale
CALIBRATION_FRACTIONS = (1.0, 0.75, 0.5, 0.25)
#: the seed of the random widths the calibration also measures (checks use others)
CALIBRATION_SEED = 1000


@dataclass
class LayerTiming:
    """One layer's measured latency over its grid of kept widths.

    ``ms[i][j]``: milliseconds with ``in_grid[i]`` input and ``out_grid[j]`` output channels
    (overhead removed, non-decreasing in both); ``raw_ms`` as measured. A side no channel group
    governs has a single grid point. ``calls``: how many times the layer runs per forward pass.
    """

    name: str
    shape: dict[str, Any]
    in_grid: list[int]
    out_grid: list[int]
    ms: list[list[float]]
    raw_ms: list[list[float]]
    depthwise: bool = False
    calls: int = 1


def aligned(channels: float, total: int, align: int) -> int:
    """``channels`` rounded to a multiple of ``align`` (at least ``align``, at most ``total``; a
    group of ``total`` channels that is not a multiple keeps its full width as the last step)."""
    if align <= 1:
        return max(1, min(int(total), int(round(channels))))
    k = max(1, int(round(channels / align))) * align
    return int(total) if k >= total else k


def _grid(channels: int, variable: bool, align: int) -> list[int]:
    if not variable:
        return [int(channels)]
    return sorted({aligned(1, channels, align), *(aligned(f * channels, channels, align) for f in GRID_FRACTIONS)})


def _monotone(ms: list[list[float]]) -> list[list[float]]:
    """Running maximum along both axes: more channels never predicts less time."""
    out = [list(row) for row in ms]
    for i in range(len(out)):
        for j in range(len(out[i])):
            best = out[i][j]
            if i:
                best = max(best, out[i - 1][j])
            if j:
                best = max(best, out[i][j - 1])
            out[i][j] = best
    return out


def bilinear(in_grid: Tensor, out_grid: Tensor, ms: Tensor, c_in: Tensor, c_out: Tensor) -> Tensor:
    """``ms`` (grid values) read at ``(c_in, c_out)`` by bilinear interpolation, clamped to the grid;
    differentiable in ``c_in`` and ``c_out`` (the cell is chosen on detached values)."""

    def locate(grid: Tensor, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if grid.numel() == 1:
            zero = torch.zeros((), dtype=torch.long, device=grid.device)
            return zero, zero, torch.zeros((), dtype=x.dtype, device=x.device)
        x = x.clamp(float(grid[0]), float(grid[-1]))
        hi = torch.searchsorted(grid, x.detach().reshape(1)).clamp(1, grid.numel() - 1)[0]
        lo = hi - 1
        t = (x - grid[lo]) / (grid[hi] - grid[lo])
        return lo, hi, t

    i0, i1, u = locate(in_grid, c_in)
    j0, j1, v = locate(out_grid, c_out)
    return ((1 - u) * (1 - v) * ms[i0, j0] + (1 - u) * v * ms[i0, j1] + u * (1 - v) * ms[i1, j0]
            + u * v * ms[i1, j1])


def _layer_inputs(model: nn.Module, size: tuple[int, int]) -> dict[str, tuple[tuple[int, int], int]]:
    """Every conv/linear layer that runs on a (1, 3, H, W) image: its input (H, W) and call count."""
    seen: dict[str, tuple[tuple[int, int], int]] = {}

    def hook(name: str) -> Callable[..., None]:
        def record(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            x = inputs[0]
            hw = (int(x.shape[-2]), int(x.shape[-1])) if x.ndim == 4 else (1, 1)
            first, calls = seen.get(name, (hw, 0))
            seen[name] = (first, calls + 1)

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with eval_mode(model), torch.no_grad():
            forward_traced(model, example_image(model, size))
    finally:
        for h in handles:
            h.remove()
    return seen


def _channels(module: nn.Module) -> tuple[int, int]:
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    return module.in_channels, module.out_channels


@dataclass
class LatencyTable:
    """Predicted batch-1 latency of channel-pruned versions of one network (see the module docstring)."""

    runtime: str
    size: tuple[int, int]
    threads: int
    layers: dict[str, LayerTiming]
    align: int = 1
    overhead_ms: float = 0.0
    fixed_ms: float = 0.0
    scale: float = 1.0
    cpu: str = ""
    model: str = ""
    calibration: list[dict[str, Any]] = field(default_factory=list)
    check_report: dict[str, Any] | None = None

    # -- prediction ------------------------------------------------------------------------
    def _tensors(self, name: str) -> tuple[Tensor, Tensor, Tensor]:
        cache = self.__dict__.setdefault("_cache", {})
        if name not in cache:
            layer = self.layers[name]
            f64 = torch.float64
            cache[name] = (torch.tensor(layer.in_grid, dtype=f64), torch.tensor(layer.out_grid, dtype=f64),
                           torch.tensor(layer.ms, dtype=f64))
        return cache[name]

    def layer_ms(self, name: str, c_in: Tensor | float, c_out: Tensor | float) -> Tensor:
        """Layer ``name``'s milliseconds per forward pass with ``c_in``/``c_out`` channels (float64)."""
        gi, go, ms = self._tensors(name)
        c_in = torch.as_tensor(c_in, dtype=torch.float64)
        c_out = torch.as_tensor(c_out, dtype=torch.float64)
        return bilinear(gi, go, ms, c_in, c_out) * self.layers[name].calls

    def layers_sum(self, widths: Mapping[str, tuple[float, float]]) -> float:
        """Sum of the layer latencies at ``{layer: (in, out) channels}`` (layers not named: full width)."""
        total = 0.0
        for name, layer in self.layers.items():
            c_in, c_out = widths.get(name, (layer.shape["cin"], layer.shape["cout"]))
            total += float(self.layer_ms(name, c_in, c_out))
        return total

    def predict_widths(self, widths: Mapping[str, tuple[float, float]]) -> float:
        """Whole-network milliseconds at ``{layer: (in, out) channels}``."""
        return self.fixed_ms + self.scale * self.layers_sum(widths)

    def model_widths(self, model: nn.Module) -> dict[str, tuple[float, float]]:
        """The (in, out) channels of every timed layer in ``model`` (a pruned copy of the table's network)."""
        widths = {}
        for name, layer in self.layers.items():
            try:
                module = model.get_submodule(name)
            except AttributeError:
                raise ConfigError(f"the latency table was measured on another network: it has no layer {name!r}") from None
            c_in, c_out = _channels(module)
            if layer.depthwise:
                c_in = c_out
            if c_in > layer.shape["cin"] or c_out > layer.shape["cout"]:
                raise ConfigError(f"the latency table was measured on a narrower network: {name} has {c_in} -> "
                                  f"{c_out} channels, the table {layer.shape['cin']} -> {layer.shape['cout']}")
            widths[name] = (float(c_in), float(c_out))
        return widths

    def predict_model(self, model: nn.Module) -> float:
        """Predicted milliseconds of ``model``, the table's network with (some) channels removed."""
        return self.predict_widths(self.model_widths(model))

    @property
    def full_ms(self) -> float:
        """Predicted milliseconds of the network at full width."""
        return self.predict_widths({})

    # -- calibration and check -------------------------------------------------------------
    def calibrate(self, measured: Sequence[tuple[float, float]]) -> None:
        """Fit ``fixed_ms`` and ``scale`` to ``(layers_sum, measured ms)`` pairs by least squares
        (``fixed_ms >= 0``, ``scale > 0``)."""
        xs = [float(s) for s, _ in measured]
        ys = [float(t) for _, t in measured]
        n = len(xs)
        mx, my = sum(xs) / n, sum(ys) / n
        var = sum((x - mx) ** 2 for x in xs)
        scale = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var > 0 else 0.0
        fixed = my - scale * mx
        if scale <= 0 or fixed < 0:  # through the origin, or the sums' offset alone
            scale = sum(x * y for x, y in zip(xs, ys)) / max(sum(x * x for x in xs), 1e-12)
            fixed = 0.0
            if scale <= 0:
                scale, fixed = 1.0, max(0.0, my - mx)
        self.scale, self.fixed_ms = float(scale), float(fixed)

    def check(self, model: nn.Module, num: int = 20, seed: int = 0, runs: int = 60, rounds: int = 10,
              references: int = 3, log: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Measure ``model`` (the table's network) exported at ``num`` random widths and compare
        with the prediction; returns (and records in :attr:`check_report`) the per-choice figures,
        the mean and largest relative error, and the measurement's own repeatability: the median
        of the odd rounds against that of the even rounds of the same network, side by side, and
        the spread of the unpruned network timed in ``references`` worker processes."""
        check_number(num, "--check", integer=True, low=1)
        check_number(rounds, "rounds", integer=True, low=2)
        check_number(references, "references", integer=True, low=1)
        graph = ChannelGraph(copy.deepcopy(model).eval(), self.size)
        nets = [prune_to_shares(graph, shares, self.align) for shares in random_widths(graph, num, seed)]
        predicted = [self.predict_model(net) for net in nets]
        # the full network is timed alongside: this VM's speed drifts (1.7x between two minutes
        # was seen), so the errors are also given as ratios to it, measured side by side. It is
        # timed in several workers spread through the order, and their median is the reference:
        # a stall of the VM can move one worker's median (a sub-millisecond network in 4 rounds
        # of 12 ms once read 55% slow), and with a single reference every ratio would carry it
        order = reference_positions(len(nets), references)
        timed: list[nn.Module] = list(nets)
        for position in order:
            timed.insert(position, graph.model)
        samples = network_samples(timed, self.runtime, self.size, self.threads, runs=runs, rounds=rounds, log=log)
        full_each = [float(np.median(samples[i])) for i in order]
        full = float(np.median(full_each))
        samples = [timing for i, timing in enumerate(samples) if i not in order]
        rows = []
        for p, s in zip(predicted, samples):
            chunks = np.array_split(np.asarray(s), rounds)
            halves = [np.concatenate(chunks[k::2]) for k in (0, 1)]
            m = float(np.median(s))
            rows.append({"predicted_ms": p, "measured_ms": m, "error": (p - m) / m,
                         "ratio_error": (p / self.full_ms) / (m / full) - 1.0,
                         "repeat_error": float(abs(np.median(halves[0]) - np.median(halves[1])) / m)})
        errors = [abs(r["error"]) for r in rows]
        ratio_errors = [abs(r["ratio_error"]) for r in rows]
        report = {"num": num, "seed": seed, "runs": runs, "full_measured_ms": full, "full_predicted_ms": self.full_ms,
                  "mean_abs_error": float(np.mean(errors)), "median_abs_error": float(np.median(errors)),
                  "max_abs_error": max(errors), "within_15pct": sum(e <= 0.15 for e in errors) / num,
                  "mean_abs_ratio_error": float(np.mean(ratio_errors)), "max_abs_ratio_error": max(ratio_errors),
                  "ratio_within_15pct": sum(e <= 0.15 for e in ratio_errors) / num,
                  "mean_repeat_error": float(np.mean([r["repeat_error"] for r in rows])),
                  "full_measured_each_ms": full_each, "reference_spread": (max(full_each) - min(full_each)) / full,
                  "rows": rows}
        self.check_report = report
        return report

    @property
    def calibration_full_ms(self) -> float:
        """The full network's latency as measured when the table was calibrated (else the fit's)."""
        for row in self.calibration:
            if row.get("widths") == "uniform 1":
                return float(row["measured_ms"])
        return self.full_ms

    # -- files -----------------------------------------------------------------------------
    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"format": FORMAT, "runtime": self.runtime, "size": list(self.size), "threads": self.threads,
                "align": self.align,
                "cpu": self.cpu, "model": self.model, "overhead_ms": self.overhead_ms, "fixed_ms": self.fixed_ms,
                "scale": self.scale, "full_ms": self.full_ms, "calibration": self.calibration,
                "check": self.check_report, "layers": {n: asdict(layer) for n, layer in self.layers.items()}}

    def save(self, path: str | Path) -> Path:
        """Write the table as JSON (atomically)."""
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.as_dict(), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        """Read a table written by :meth:`save` (one-line errors for a missing or foreign file)."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no such latency table")
        data = read_json(path, "latency table")
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise DataError(f"{path}: not a slimdepth latency table (expected format {FORMAT})")
        try:
            layers = {n: LayerTiming(**v) for n, v in data["layers"].items()}
            table = cls(runtime=check_latency_runtime(data["runtime"]), size=parse_size(data["size"], "size"),
                        threads=int(data["threads"]), layers=layers, align=int(data.get("align", 1)), overhead_ms=float(data["overhead_ms"]),
                        fixed_ms=float(data["fixed_ms"]), scale=float(data["scale"]), cpu=str(data.get("cpu", "")),
                        model=str(data.get("model", "")), calibration=list(data.get("calibration") or []),
                        check_report=data.get("check"))
            for layer in layers.values():
                if (len(layer.ms) != len(layer.in_grid) or any(len(r) != len(layer.out_grid) for r in layer.ms)
                        or not all(math.isfinite(v) for r in layer.ms for v in r)):
                    raise ValueError(layer.name)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{path}: damaged latency table ({type(exc).__name__}: {exc})") from None
        if not (math.isfinite(table.fixed_ms) and math.isfinite(table.scale) and table.scale > 0):
            raise DataError(f"{path}: damaged latency table (fixed cost {table.fixed_ms}, scale {table.scale})")
        return table


def reference_positions(num: int, references: int) -> list[int]:
    """Where ``references`` copies of the reference network go among ``num`` others (indices into
    the combined list, ascending): first, last and evenly between, so that no stall of the VM
    meets them all in one stretch of a round."""
    total = num + references
    if references == 1:
        return [0]
    return sorted({round(k * (total - 1) / (references - 1)) for k in range(references)})


def prune_to_shares(graph: ChannelGraph, shares: Mapping[str, float], align: int = 1) -> nn.Module:
    """A copy of ``graph.model`` where each group keeps its first ``share * channels`` channels,
    rounded by :func:`aligned`."""
    removal = {}
    for g in graph.groups:
        keep = aligned(shares.get(g.root, 1.0) * g.channels, g.channels, align)
        removal[g.root] = list(range(keep, g.channels))
    return ChannelGraph(copy.deepcopy(graph.model), graph.input_size).prune(removal)


def random_widths(graph: ChannelGraph, num: int, seed: int = 0, low: float = 0.2) -> list[dict[str, float]]:
    """``num`` random width choices: every group keeps a share drawn uniformly in [``low``, 1]."""
    rng = random.Random(seed)
    return [{g.root: rng.uniform(low, 1.0) for g in graph.groups} for _ in range(num)]


def build_latency_table(model: nn.Module, runtime: str, size: str | Sequence[int], threads: int = 2, align: int = 8,
                        runs: int = 15,
                        calib_runs: int = 30, calib_random: int = 8, name: str = "", log: Callable[[str], None] | None = None,
                        progress: Callable[[int, int], None] | None = None) -> LatencyTable:
    """Measure ``model``'s latency table on ``runtime`` at ``size`` (see the module docstring).

    ``runs``: timed passes per layer and grid point (median kept); ``calib_runs``: timed passes
    of each whole network used for calibration. ``progress(done, total)`` follows the layer timing.
    """
    check_latency_runtime(runtime)
    size = parse_size(size, "--size")
    say = log or (lambda message: None)
    model = copy.deepcopy(model).eval()
    graph = ChannelGraph(copy.deepcopy(model), size)
    if not graph.groups:
        raise ConfigError("the model has no prunable channel groups: a latency table would have nothing to vary")
    cost = CostModel(graph.model, graph.groups, graph.layers)
    full_in, full_out = cost.layer_channels(torch.ones(cost.num_channels, dtype=torch.float64))
    # which sides a group governs: those whose channel count moves when every channel goes
    floor_in, floor_out = cost.layer_channels(torch.zeros(cost.num_channels, dtype=torch.float64))
    inputs = _layer_inputs(model, size)

    plans: list[tuple[str, list[int], list[int], bool, nn.Module, tuple[int, int], int]] = []
    for i, lname in enumerate(cost.layer_names):
        module = model.get_submodule(lname)
        hw, calls = inputs.get(lname, ((1, 1), 1))
        depthwise = cost.layer_depthwise[i] and isinstance(module, nn.Conv2d) and module.groups > 1
        grouped = isinstance(module, nn.Conv2d) and module.groups > 1 and not depthwise
        c_in, c_out = int(round(float(full_in[i]))), int(round(float(full_out[i])))
        in_var = float(floor_in[i]) != float(full_in[i]) and not depthwise and not grouped
        out_var = float(floor_out[i]) != float(full_out[i]) and not grouped
        plans.append((lname, _grid(c_in, in_var, align) if not depthwise else [c_in], _grid(c_out, out_var, align), depthwise,
                      module, hw, calls))
    shapes = [EMPTY_SHAPE]
    for lname, gin, gout, depthwise, module, hw, _ in plans:
        for a in gin:
            for b in gout:
                shapes.append(conv_shape(module, hw, b if depthwise else a, b))
    say(f"timing {len(plans)} layers at {len(shapes) - 1} widths on {runtime} ({size[0]}x{size[1]}, {threads} threads)")
    times = time_layers(shapes, runtime, threads, runs=runs, progress=progress)
    overhead, rest = times[0], iter(times[1:])
    layers: dict[str, LayerTiming] = {}
    for lname, gin, gout, depthwise, module, hw, calls in plans:  # a depthwise conv has one input point: in == out
        raw = [[next(rest) for _ in gout] for _ in gin]
        clean = _monotone([[max(0.0, v - overhead) for v in row] for row in raw])
        layers[lname] = LayerTiming(lname, conv_shape(module, hw), gin, gout, clean, raw, depthwise, calls)
    table = LatencyTable(runtime, size, int(threads), layers, int(align), overhead_ms=float(overhead), cpu=cpu_model(),
                         model=name)
    # calibration: uniform widths, and random ones (a seed the check does not use)
    choices: list[dict[str, float]] = [{g.root: f for g in graph.groups} for f in CALIBRATION_FRACTIONS]
    choices += random_widths(graph, calib_random, seed=CALIBRATION_SEED)
    nets = [prune_to_shares(graph, shares, align) for shares in choices]
    sums = [table.layers_sum(table.model_widths(net)) for net in nets]
    say(f"calibrating on the whole network at {len(CALIBRATION_FRACTIONS)} uniform and {calib_random} random widths")
    measured = time_networks(nets, runtime, size, threads, runs=calib_runs, log=log)
    table.calibrate(list(zip(sums, measured)))
    labels = [f"uniform {f:g}" for f in CALIBRATION_FRACTIONS] + [f"random {i}" for i in range(calib_random)]
    table.calibration = [{"widths": w, "layers_sum_ms": s, "measured_ms": m, "predicted_ms": table.fixed_ms + table.scale * s}
                         for w, s, m in zip(labels, sums, measured)]
    return table
