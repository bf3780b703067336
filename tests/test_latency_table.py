"""Latency tables and pruning to a latency budget: the table's arithmetic against a known latency
model, its prediction against real ONNX Runtime measurements, budgets met on a tiny model, and
one-line errors for impossible budgets, unknown runtimes and damaged tables."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import slimdepth.compress.latency_table as lt
from slimdepth.compress.channel_cost import CostModel
from slimdepth.compress.graph import ChannelGraph
from slimdepth.compress.latency_cost import LatencyCost
from slimdepth.compress.latency_prune import USE_BUDGET, floor_ms
from slimdepth.compress.latency_table import LatencyTable, aligned, build_latency_table, prune_to_shares, random_widths
from slimdepth.compress.prune import PruneSettings, prune_checkpoint, read_prune_state
from slimdepth.errors import ConfigError, DataError
from slimdepth.models.zoo import build_model
from tests.helpers import assert_one_line_error, run_cli
from tests.test_prune import make_source

TINY = {"heads": 1, "widths": (8, 16, 16, 24, 24), "dec_widths": (24, 16, 16, 8)}
SIZE = (32, 96)


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return build_model("tiny-multires", **TINY).eval()


# --------------------------------------------------------------------------------------------
# the arithmetic, against a latency that is exactly bilinear in the widths

FIXED = 0.4


def _exact_ms(shape: dict) -> float:
    """A made-up runtime: per-call overhead + time proportional to the conv's MACs."""
    macs = shape["cin"] // shape["groups"] * shape["cout"] * shape["h"] * shape["w"] * math.prod(shape["kernel"])
    return 0.002 + macs * 1e-8


def _network_ms(model: nn.Module) -> float:
    """The same made-up runtime on a whole network: a fixed cost + its layers minus their overheads."""
    total = FIXED
    inputs = lt._layer_inputs(model, SIZE)
    for name, (hw, calls) in inputs.items():
        module = model.get_submodule(name)
        total += calls * (_exact_ms(lt.conv_shape(module, hw)) - 0.002)
    return total


def _fake(patch: pytest.MonkeyPatch) -> None:
    patch.setattr(lt, "time_layers", lambda shapes, *a, **k: [_exact_ms(s) for s in shapes])
    patch.setattr(lt, "time_networks", lambda nets, *a, **k: [_network_ms(n) for n in nets])
    patch.setattr(lt, "network_samples", lambda nets, *a, **k: [[_network_ms(n)] * 4 for n in nets])


@pytest.fixture()
def fake_runtime(monkeypatch):
    _fake(monkeypatch)


@pytest.fixture(scope="module")
def fake_table() -> LatencyTable:
    """A table of the made-up runtime, built once."""
    with pytest.MonkeyPatch.context() as patch:
        _fake(patch)
        return build_latency_table(tiny(), "ort", SIZE, align=4)


def test_table_recovers_a_known_latency_model(fake_runtime) -> None:
    model = tiny()
    table = build_latency_table(model, "ort", SIZE, align=4)
    assert table.overhead_ms == pytest.approx(_exact_ms(lt.EMPTY_SHAPE))
    # the layer times are MACs-proportional, so bilinear in (in, out): the fit is exact
    assert table.fixed_ms == pytest.approx(FIXED, rel=1e-6)
    assert table.scale == pytest.approx(1.0, rel=1e-6)
    assert table.full_ms == pytest.approx(_network_ms(model), rel=1e-6)
    report = table.check(model, num=5, rounds=2)
    assert report["max_abs_error"] < 1e-6 and report["within_15pct"] == 1.0
    assert report["max_abs_ratio_error"] < 1e-6 and report["full_measured_ms"] == pytest.approx(_network_ms(model))
    # grids: 1/4, 1/2, 3/4 and all channels on a side a group governs, in multiples of 4
    layer = table.layers["stem.0"] if "stem.0" in table.layers else next(iter(table.layers.values()))
    assert layer.in_grid[0] <= layer.in_grid[-1] and all(v % 4 == 0 or v == layer.shape["cout"] for v in layer.out_grid)


def test_differentiable_cost_equals_the_pruned_network(fake_table: LatencyTable) -> None:
    model = tiny()
    table = fake_table
    graph = ChannelGraph(model, SIZE)
    latency = LatencyCost(table, CostModel(graph.model, graph.groups, graph.layers))
    assert latency.full_ms == pytest.approx(table.full_ms)
    for shares in random_widths(graph, 3, seed=5):
        pruned = prune_to_shares(graph, shares, 4)
        keep = {g.root: list(range(aligned(shares[g.root] * g.channels, g.channels, 4))) for g in graph.groups}
        assert latency.keep_ms(keep) == pytest.approx(table.predict_model(pruned), rel=1e-9)
        assert latency.keep_ms(keep) == pytest.approx(_network_ms(pruned), rel=1e-6)
    p = torch.full((latency.cost.num_channels,), 0.7, dtype=torch.float64, requires_grad=True)
    latency.ms(p).backward()
    assert p.grad is not None and bool((p.grad > 0).any()) and bool((p.grad >= 0).all())
    assert floor_ms(latency) < latency.full_ms


def test_table_file_round_trip(fake_table: LatencyTable, tmp_path: Path) -> None:
    table = fake_table
    back = LatencyTable.load(table.save(tmp_path / "t.json"))
    assert back.full_ms == pytest.approx(table.full_ms) and back.align == 4 and back.size == SIZE
    with pytest.raises(ConfigError, match="another network"):
        back.predict_model(build_model("litedepth", internal_size=None))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["truncate", "format", "nan", "layers", "runtime", "binary", "scale"]))
def test_damaged_table_is_refused_in_one_line(fake_table: LatencyTable, tmp_path_factory, kind: str) -> None:
    path = fake_table.save(tmp_path_factory.mktemp("t") / "t.json")
    data = json.loads(path.read_text())
    if kind == "truncate":
        path.write_text(path.read_text()[: len(path.read_text()) // 2])
    elif kind == "binary":
        path.write_bytes(b"\xff\xfe\x00garbage")
    else:
        if kind == "format":
            data["format"] = "something-else"
        elif kind == "nan":
            next(iter(data["layers"].values()))["ms"][0][0] = float("nan")
        elif kind == "layers":
            del next(iter(data["layers"].values()))["out_grid"]
        elif kind == "runtime":
            data["runtime"] = "tensorrt"
        elif kind == "scale":
            data["scale"] = -1
        path.write_text(json.dumps(data))
    with pytest.raises((DataError, ConfigError)) as info:
        LatencyTable.load(path)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------
# real measurements on ONNX Runtime


@pytest.fixture(scope="module")
def ort_table() -> LatencyTable:
    # 150 calibration runs in 5 rounds: a stall moves a network's median less than with the
    # default 30, at a cost of under a second for these sub-millisecond networks
    return build_latency_table(tiny(), "ort", (64, 192), threads=1, runs=6, calib_runs=150, calib_random=4)


def test_table_predicts_measured_onnx_runtime_latency(ort_table: LatencyTable) -> None:
    """The table's prediction against the exported network measured at 12 random widths (the
    documented check uses 20 on LiteDepth). The aim is 15%; a test on a shared 2-core VM allows for
    the measurement's own noise."""
    # 200 runs in 10 rounds cost little more wall time than 24 in 4 (exporting and starting the
    # workers dominate, and one-thread workers do not wait between rounds). In 4 rounds a round of
    # this sub-millisecond network lasts ~12 ms (with 200 runs), and a stall of the VM that
    # covered two of a worker's rounds moved its median by 55% once: over 20 tries in 4 rounds
    # (24 or 200 runs) the mean ratio error ranged 0.04-0.33, over 8 tries in 10 rounds 0.04-0.07
    report = ort_table.check(tiny(), num=12, runs=200, rounds=10)
    assert len(report["rows"]) == 12
    assert all(r["measured_ms"] > 0 and r["predicted_ms"] > 0 for r in report["rows"])
    # as shares of the unpruned network timed beside them (this VM's speed drifts between sessions)
    assert report["mean_abs_ratio_error"] < 0.2, {k: v for k, v in report.items() if k != "rows"}
    # all channels kept predicts the full network; fewer channels never predict more time
    graph = ChannelGraph(tiny(), (64, 192))
    shares = [1.0, 0.75, 0.5, 0.25]
    ms = [ort_table.predict_model(prune_to_shares(graph, {g.root: f for g in graph.groups}, 8)) for f in shares]
    assert ms[0] == pytest.approx(ort_table.full_ms)
    assert all(a >= b for a, b in zip(ms, ms[1:])) and ms[-1] < ms[0]


@pytest.mark.parametrize("method", ["uniform", "masks"])
def test_prune_to_a_latency_budget_measures_and_reaims(tmp_path: Path, ort_table: LatencyTable, method: str, monkeypatch,
                                            capsys) -> None:
    src = make_source(tmp_path, "tiny-multires", **TINY)
    table_path = ort_table.save(tmp_path / "table.json")
    # 90% of full width, unless this machine's measured fixed cost puts that below the narrowest
    # network the table predicts (a tiny network is mostly fixed cost): then halfway up from there
    low = floor_ms(LatencyCost.of_model(ort_table, tiny(), (64, 192)))
    budget = max(0.9 * ort_table.full_ms, 0.5 * (low + ort_table.full_ms))
    settings = PruneSettings(method, None, steps=4, warmup_frac=0.25, joint_frac=0.5, target_latency=budget,
                             runtime="ort", latency_size=[64, 192], latency_table=str(table_path), threads=1,
                             max_tries=4)
    if method == "masks":
        state = prune_checkpoint(src, settings, tmp_path / "run")
    else:  # the same through the command line
        code, out, err = run_cli(monkeypatch, capsys, "prune", str(src), "--method", method, "--target-latency",
                                 f"{budget!r}", "--runtime", "ort", "--size", "64x192", "--latency-table",
                                 str(table_path), "--threads", "1", "--max-tries", "4", "--steps", "4",
                                 "--out", str(tmp_path / "run"))
        assert code == 0, err
        assert "latency on ort at 64x192: predicted" in out and ("(met)" in out or "(MISSED)" in out)
        state = read_prune_state(tmp_path / "run")
    lat = state["result"]["latency"]
    assert lat["budget_ms"] == pytest.approx(budget) and lat["runtime"] == "ort" and lat["size"] == [64, 192]
    assert lat["predicted_ms"] > 0 and lat["measured_ms"] > 0
    tries = read_prune_state(tmp_path / "run")["stages"]["pruned"]["latency"]["tries"]
    assert 1 <= len(tries) <= settings.max_tries
    assert tries[0]["predicted_ms"] <= budget + 1e-9  # the first choice fits the prediction
    assert lat["met"] == (lat["calibrated_ms"] <= budget)
    assert lat["calibrated_ms"] == pytest.approx(lat["measured_ms"] / lat["reference_ms"] * ort_table.calibration_full_ms)
    # Whether the budget is met is a property of this machine's timing at this minute: sub-millisecond
    # timings of a tiny network jitter by 20-40% on a loaded machine, so "met" failed CI now and then.
    # What the command must do holds whatever the timings: every try that missed (or left more than
    # the budget's slack unused) re-aimed the next by budget / calibrated; it stopped early only on a
    # fit; the network kept is the largest that fitted, else the last. (The loop's outcome under
    # known timings is test_meet_budget_tightens_and_loosens.)
    assert tries[0]["target_ms"] == pytest.approx(budget)  # the first try aims at the budget itself
    for before, after in zip(tries, tries[1:]):
        assert not (USE_BUDGET * budget <= before["calibrated_ms"] <= budget)
        assert after["target_ms"] == pytest.approx(before["target_ms"] * budget / before["calibrated_ms"])
    fits = [t for t in tries if t["calibrated_ms"] <= budget]
    kept = max(fits, key=lambda t: t["calibrated_ms"]) if fits else tries[-1]
    assert lat["met"] == bool(fits) and lat["calibrated_ms"] == pytest.approx(kept["calibrated_ms"])
    assert lat["predicted_ms"] == pytest.approx(kept["predicted_ms"])
    assert len(tries) == settings.max_tries or USE_BUDGET * budget <= tries[-1]["calibrated_ms"] <= budget


# --------------------------------------------------------------------------------------------
# bad input


def test_budget_below_the_fixed_cost_is_refused_before_work(tmp_path: Path, ort_table: LatencyTable, monkeypatch,
                                                            capsys) -> None:
    src = make_source(tmp_path, "tiny-multires", **TINY)
    table_path = ort_table.save(tmp_path / "table.json")
    graph = ChannelGraph(tiny(), (64, 192))
    low = floor_ms(LatencyCost(ort_table, CostModel(graph.model, graph.groups, graph.layers))) / 2  # > 0
    code, _, err = run_cli(monkeypatch, capsys, "prune", str(src), "--method", "uniform", "--target-latency", f"{low:g}",
                           "--runtime", "ort", "--size", "64x192", "--latency-table", str(table_path), "--threads", "1",
                           "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, "cannot be met", "fixed cost")
    assert not (tmp_path / "run").exists()
    # a table measured with other threads than the budget's is refused too
    code, _, err = run_cli(monkeypatch, capsys, "prune", str(src), "--method", "uniform", "--target-latency", "5",
                           "--runtime", "ort", "--size", "64x192", "--latency-table", str(table_path),
                           "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, "1 threads", "--threads 1")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, fragment", [
    (["--method", "uniform", "--target-latency", "2", "--runtime", "tensorrt"], "unknown runtime"),
    (["--method", "uniform", "--target-latency", "2", "--target-macs", "0.5"], "one budget"),
    (["--method", "gating", "--target-latency", "2"], "gating"),
    (["--method", "uniform", "--target-latency", "-1"], "--target-latency"),
    (["--method", "uniform", "--target-latency", "nan"], "--target-latency"),
    (["--method", "uniform", "--target-macs", "0.5", "--size", "64x192"], "--target-latency"),
    (["--method", "uniform", "--target-latency", "2", "--size", "64by192"], "--size"),
    (["--method", "uniform", "--target-latency", "2", "--latency-table", "missing.json"], "no such latency table"),
])
def test_bad_latency_options_are_one_line_errors(tmp_path: Path, monkeypatch, capsys, args: list[str],
                                                 fragment: str) -> None:
    src = make_source(tmp_path, "tiny-multires", **TINY)
    code, _, err = run_cli(monkeypatch, capsys, "prune", str(src), *args, "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "run").exists()


def test_latency_table_cli_writes_the_table_and_its_check(fake_runtime, tmp_path: Path, monkeypatch, capsys) -> None:
    """The check's reference is the median of the unpruned network's workers, spread through the
    order: here its three copies read 0.9, 1.0 and 1.2 times its true time and every other
    network its true time, so the ratio errors are those of the 1.0 copy: none."""
    factors = iter([0.9, 1.0, 1.2])
    positions: list[int] = []

    def samples(nets, *args, **kwargs):
        out = []
        for i, net in enumerate(nets):
            ms = _network_ms(net)
            if sum(n is net for n in nets) > 1:  # a copy of the unpruned network
                positions.append(i)
                ms *= next(factors)
            out.append([ms] * 4)
        return out

    monkeypatch.setattr(lt, "network_samples", samples)
    out = tmp_path / "t.json"
    code, stdout, err = run_cli(monkeypatch, capsys, "latency-table", "tiny-multires", "--size", "32x96", "--out", str(out),
                                "--runs", "2", "--check", "3", "--align", "4")
    assert code == 0, err
    assert positions == lt.reference_positions(3, 3) == [0, 2, 5]  # first, middle, last of six
    table = LatencyTable.load(out)
    report = table.check_report
    assert report is not None and report["num"] == 3 and len(report["rows"]) == 3
    full = _network_ms(build_model("tiny-multires").eval())  # the zoo network the command timed
    assert report["full_measured_each_ms"] == pytest.approx([0.9 * full, full, 1.2 * full])
    assert report["full_measured_ms"] == pytest.approx(full) and report["reference_spread"] == pytest.approx(0.3)
    assert report["mean_abs_ratio_error"] < 1e-6 and report["mean_abs_error"] < 1e-6  # each row met its own network
    flat = " ".join(stdout.split())
    assert f"full width predicted {table.full_ms:.3f} ms" in flat
    assert "check on 3 random width choices: mean |error| 0.0%" in flat
    assert "the median of 3 worker processes 30.0% apart" in flat and f"latency table: {out}" in flat


def test_network_samples_exports_a_network_given_twice_once(monkeypatch, tmp_path: Path) -> None:
    import slimdepth.deploy.layer_timing as timing

    exported, timed = [], []

    def export(model, runtime, size, folder):
        exported.append(model)
        return {"runtime": runtime, "size": list(size), "path": str(folder / "m.onnx")}

    monkeypatch.setattr(timing, "_export_for", export)
    monkeypatch.setattr(timing, "interleave_workers", lambda specs, runs, rounds: timed.extend(specs) or [[1.0]] * len(specs))
    a, b = tiny(), tiny()
    assert len(timing.network_samples([a, b, a, a], "ort", SIZE, threads=1, runs=2, rounds=1)) == 4
    assert exported == [a, b] and [s["path"] for s in timed] == [timed[0]["path"], timed[1]["path"], timed[0]["path"],
                                                                  timed[0]["path"]]
    assert timed[0]["path"] != timed[1]["path"] and all(s["threads"] == 1 for s in timed)


def test_latency_table_cli_bad_input(tmp_path: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "t.json"
    for args, fragment in ((["--runtime", "onnx"], "unknown runtime"), (["--size", "0x96"], "--size"),
                           (["--threads", "0"], "--threads"), (["--check", "-1"], "--check")):
        argv = ["latency-table", "tiny-multires", "--size", "32x96", "--out", str(out), *args]
        code, _, err = run_cli(monkeypatch, capsys, *argv)
        assert_one_line_error(code, err, fragment)
    out.write_text("keep me")
    code, _, err = run_cli(monkeypatch, capsys, "latency-table", "tiny-multires", "--size", "32x96", "--out", str(out))
    assert_one_line_error(code, err, "already exists")
    assert out.read_text() == "keep me"
    code, _, err = run_cli(monkeypatch, capsys, "latency-table", str(tmp_path / "nothing"), "--size", "32x96",
                           "--out", str(tmp_path / "u.json"))
    assert_one_line_error(code, err, "nothing")


@pytest.mark.parametrize("runtime", ["torch", "openvino", "litert"])
def test_every_runtime_times_single_layers(runtime: str) -> None:
    """The layer-timing worker builds and times a one-layer model on each runtime: a 150 M-MAC
    conv takes far longer than the one-pixel, one-channel layer that measures the overhead."""
    from slimdepth.deploy.layer_timing import EMPTY_SHAPE, time_layers

    big = {**EMPTY_SHAPE, "cin": 64, "cout": 64, "kernel": [3, 3], "padding": [1, 1], "h": 48, "w": 48}
    empty, heavy, again = time_layers([EMPTY_SHAPE, big, big], runtime, threads=1, runs=3, warmup=1)
    assert 0 < empty < heavy and heavy == again  # identical shapes are timed once
    assert heavy > 5 * empty


def test_whole_networks_time_on_torch_and_ort() -> None:
    from slimdepth.deploy.layer_timing import time_networks

    for runtime in ("torch", "ort"):
        (ms,) = time_networks([tiny()], runtime, SIZE, threads=1, runs=3, warmup=1, rounds=1)
        assert 0 < ms < 1000


class _Net(nn.Module):
    """A stand-in network whose measured latency is its ``ms``."""

    def __init__(self, ms: float) -> None:
        super().__init__()
        self.ms = ms


@pytest.mark.parametrize("slowness, tries, final", [
    (0.5, [4.0, 8.0], 4.0),          # the table over-predicts 2x: the first fit uses half -> loosened to the budget
    (1.5, [4.0, 4.0 / 1.5], 4.0),    # it under-predicts: 6 ms misses -> tightened
    (1.0, [4.0], 4.0),               # right first time
])
def test_meet_budget_tightens_and_loosens(monkeypatch, slowness: float, tries: list[float], final: float) -> None:
    import slimdepth.compress.latency_prune as lp
    from types import SimpleNamespace

    monkeypatch.setattr(lp, "time_networks", lambda nets, *a, **k: [n.ms for n in nets])
    # the machine runs at half the calibration's speed now: the reference measures 20 ms, calibrated at 10
    table = SimpleNamespace(runtime="ort", size=(8, 8), threads=1, calibration_full_ms=10.0,
                            predict_model=lambda m: m.ms / slowness / 2)
    asked: list[float] = []

    def choose(target: float):
        asked.append(target)
        return _Net(2 * slowness * target), {}

    model, report = lp.meet_budget(choose, table, 4.0, _Net(20.0), max_tries=4)
    assert asked == pytest.approx(tries)
    assert model.ms / 2 == pytest.approx(final) and report["calibrated_ms"] == pytest.approx(final)
    assert report["met"] and report["reference_ms"] == 20.0 and len(report["tries"]) == len(tries)
