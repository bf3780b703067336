"""Cost accounting: parameter counts, MACs by hand, torch-pruning cross-check, sizes, latency."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from slimdepth.deploy.cost import (
    INTERPOLATION_MACS,
    MODEL_SELF,
    _extra_formulas,
    cost_report,
    count_macs,
    count_parameters,
    cross_check_macs,
    file_size_mb,
    format_cost_table,
    state_dict_size_mb,
)
from slimdepth.deploy.latency import measure_latency
from slimdepth.errors import ConfigError, DataError


class Resize(nn.Module):
    """Model that only resizes its input (no parameters)."""

    def __init__(self, mode: str, scale: float = 2.0, antialias: bool = False) -> None:
        super().__init__()
        self.mode, self.scale, self.antialias = mode, scale, antialias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        align = False if self.mode in ("bilinear", "bicubic") else None
        return F.interpolate(x, scale_factor=self.scale, mode=self.mode, align_corners=align,
                             antialias=self.antialias)


class InternalResize(nn.Module):
    """LiteDepth-style: resize to a fixed working size, one conv, resize back to the input size."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.interpolate(x, size=(8, 10), mode="bilinear", align_corners=False)
        return F.interpolate(self.head(y), size=x.shape[-2:], mode="bilinear", align_corners=False)


class SmallCNN(nn.Module):
    """Several convs (plain, strided, depthwise, 1x1), BN, pooling and a linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.blocks = nn.ModuleList([
            nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU()),
            nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.Conv2d(16, 32, 1)),
        ])
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        for block in self.blocks:
            y = block(y)
        return self.fc(y.mean(dim=(2, 3)))


# ------------------------------------------------------------------ parameters and sizes


def test_count_parameters_by_hand() -> None:
    assert count_parameters(nn.Conv2d(3, 8, 3)) == 3 * 8 * 9 + 8
    assert count_parameters(nn.Conv2d(3, 8, 3, bias=False)) == 3 * 8 * 9
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Linear(8, 2))
    assert count_parameters(model) == 224 + 16 + 18  # BN running stats are buffers
    model[0].requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 16 + 18


def test_count_parameters_counts_tied_weights_once() -> None:
    shared = nn.Linear(4, 4)
    assert count_parameters(nn.ModuleList([shared, shared])) == 20


def test_state_dict_size_exact() -> None:
    assert state_dict_size_mb(nn.Conv2d(3, 8, 3)) == 224 * 4 / 2**20
    # conv weight 216 + BN weight/bias/mean/var 4*8 float32, num_batches_tracked one int64
    model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8))
    assert state_dict_size_mb(model) == ((216 + 32) * 4 + 8) / 2**20


def test_file_size(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"\0" * (3 * 2**19))
    assert file_size_mb(path) == 1.5
    with pytest.raises(DataError, match="missing.bin"):
        file_size_mb(tmp_path / "missing.bin")


# ------------------------------------------------------------------ MACs by hand


def test_conv_macs_by_hand() -> None:
    count = count_macs(nn.Conv2d(3, 8, 3, padding=1), (16, 20))
    assert count.total == 16 * 20 * 8 * 3 * 9
    assert count.by_kind["conv"] == count.total
    assert count.output_shape == (1, 8, 16, 20)
    assert count_macs(nn.Conv2d(3, 8, 3, padding=1), (16, 20), batch=3).total == 3 * count.total


def test_strided_and_depthwise_conv_macs() -> None:
    strided = count_macs(nn.Conv2d(3, 8, 3, stride=2, padding=1), (15, 17))
    assert strided.total == 8 * 9 * 8 * 3 * 9  # H_out = 8, W_out = 9
    depthwise = count_macs(nn.Conv2d(3, 3, 3, padding=1, groups=3), (10, 12))
    assert depthwise.total == 10 * 12 * 3 * 1 * 9


def test_transposed_conv_counts_input_pixels() -> None:
    count = count_macs(nn.ConvTranspose2d(3, 4, 2, stride=2), (8, 8))
    assert count.total == 8 * 8 * 3 * 4 * 2 * 2


def test_linear_macs() -> None:
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 10))
    count = count_macs(model, (7, 9), batch=4)
    assert count.total == 4 * 3 * 10  # pooling is not counted
    assert count.by_kind == {"conv": 0, "matmul": 120, "interpolation": 0}
    assert count.per_image == 30


def test_bilinear_upsample_macs() -> None:
    count = count_macs(Resize("bilinear"), (8, 10))
    assert count.total == 4 * 3 * 16 * 20
    assert count.by_kind["interpolation"] == count.total
    assert count.by_op == {"aten.upsample_bilinear2d": count.total}
    module_form = count_macs(nn.Upsample(scale_factor=2, mode="bilinear"), (8, 10))
    assert module_form.total == count.total


@pytest.mark.parametrize("mode", ["nearest", "nearest-exact"])
def test_nearest_upsample_is_free_but_listed(mode: str) -> None:
    count = count_macs(Resize(mode), (8, 10))
    assert count.total == 0
    assert count.by_kind["interpolation"] == 0
    assert len(count.by_op) == 1 and next(iter(count.by_op.values())) == 0


def test_bicubic_and_antialiased_resize() -> None:
    assert count_macs(Resize("bicubic"), (8, 10)).total == 16 * 3 * 16 * 20
    # 4x down-scaling with antialias: 8 taps per axis, horizontal pass then vertical pass
    aa = count_macs(Resize("bilinear", scale=0.25, antialias=True), (16, 16))
    assert aa.total == 3 * (16 * 4 * 8 + 4 * 4 * 8)


def test_upsample_overloads_counted_under_inference_mode() -> None:
    # inference_mode dispatches the ``.vec`` overloads, which would otherwise be decomposed away
    x = torch.zeros(1, 3, 8, 10)
    for mode, per_output in [("bilinear", 4), ("bicubic", 16), ("nearest", 0)]:
        with torch.inference_mode(), FlopCounterMode(display=False,
                                                     custom_mapping=_extra_formulas()) as fc:
            Resize(mode)(x)
        assert fc.get_total_flops() == 2 * per_output * 3 * 16 * 20
        assert len(fc.get_flop_counts()["Global"]) == 1
    assert INTERPOLATION_MACS["bilinear"] == 4


def test_attention_counted_as_matmul() -> None:
    class Attend(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            q = x.flatten(2).transpose(1, 2).unsqueeze(1)  # (B, 1, H*W, 3)
            return F.scaled_dot_product_attention(q, q, q)

    count = count_macs(Attend(), (4, 4))
    assert count.by_kind["matmul"] == count.total == 16 * 16 * (3 + 3)  # Q K^T and P V


def test_internal_resize_counted_at_working_size() -> None:
    count = count_macs(InternalResize(), (32, 40))
    conv = 8 * 10 * 1 * 3 * 9
    resizes = 4 * 3 * 8 * 10 + 4 * 1 * 32 * 40
    assert count.by_kind == {"conv": conv, "matmul": 0, "interpolation": resizes}
    assert count.by_module == {"head": conv, MODEL_SELF: resizes}
    assert count.output_shape == (1, 1, 32, 40)


def test_by_module_partitions_the_total() -> None:
    model = SmallCNN()
    count = count_macs(model, (16, 16))
    assert set(count.by_module) == {"stem", "blocks", "fc"}
    assert sum(count.by_module.values()) == count.total
    assert sum(count.by_submodule.values()) == count.total
    assert count.by_submodule["blocks.1.0"] == 8 * 8 * 16 * 9  # depthwise
    assert count.by_module["fc"] == 32 * 10
    stem = 16 * 16 * 8 * 27
    blocks = 8 * 8 * 16 * 72 + 8 * 8 * 16 * 9 + 8 * 8 * 32 * 16
    assert count.total == stem + blocks + 320


def test_training_flags_restored() -> None:
    model = SmallCNN().train()
    model.stem[1].eval()  # a frozen BN inside a training model
    count_macs(model, (8, 8))
    assert model.training and model.fc.training and not model.stem[1].training
    measure_latency(model, (8, 8), runs=1, warmup=0)
    assert model.training and not model.stem[1].training


def test_bad_size_rejected() -> None:
    with pytest.raises(ConfigError):
        count_macs(SmallCNN(), (0, 8))
    with pytest.raises(ConfigError):
        count_macs(SmallCNN(), (8, 8), batch=0)


# ------------------------------------------------------------------ torch-pruning cross-check


def test_cross_check_with_torch_pruning() -> None:
    pytest.importorskip("torch_pruning")
    model = SmallCNN()
    check = cross_check_macs(model, (16, 16))
    assert check.ours == count_macs(model, (16, 16)).total
    assert check.agrees(0.01), check
    assert abs(check.ours - check.torch_pruning) <= 0.01 * check.ours
    assert check.torch_pruning_all_ops > check.torch_pruning  # it also charges BN/ReLU
    assert check.notes == ()


def test_cross_check_notes_layers_torch_pruning_misses() -> None:
    pytest.importorskip("torch_pruning")

    class MaskedConv(nn.Conv2d):
        pass

    model = nn.Sequential(MaskedConv(3, 4, 3, padding=1), nn.ConvTranspose2d(4, 2, 2, stride=2))
    check = cross_check_macs(model, (8, 8))
    assert len(check.notes) == 2
    assert "MaskedConv" in check.notes[0] and "ConvTranspose2d" in check.notes[1]


# ------------------------------------------------------------------ latency and report


def test_latency_report() -> None:
    before = torch.get_num_threads()
    latency = measure_latency(SmallCNN(), (16, 16), runs=7, warmup=1, threads=1)
    assert torch.get_num_threads() == before
    assert latency.runs == 7 and len(latency.samples_ms) == 7
    assert latency.threads == 1
    assert 0 < latency.min_ms <= latency.median_ms <= latency.p90_ms
    assert latency.min_ms <= latency.mean_ms
    assert "samples_ms" not in latency.as_dict()


def test_latency_options_validated() -> None:
    with pytest.raises(ConfigError):
        measure_latency(SmallCNN(), (8, 8), runs=0)
    with pytest.raises(ConfigError):
        measure_latency(SmallCNN(), (8, 8), threads=0)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            measure_latency(SmallCNN(), (8, 8), device="cuda")


def test_cost_report_and_table(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"\0" * 2**20)
    model = InternalResize()
    report = cost_report(model, (32, 40), runs=2, warmup=0, threads=1, file=path, name="tiny")
    json.dumps(report)
    assert report["params"] == 3 * 9 + 1
    assert report["macs"] == count_macs(model, (32, 40)).total
    assert report["size_mb"] == report["file_mb"] == 1.0
    assert report["latency"]["runs"] == 2
    no_timing = cost_report(model, 16, runs=0)
    assert no_timing["latency_median_ms"] is None
    assert no_timing["size_mb"] == no_timing["state_dict_mb"]

    table = format_cost_table([report, no_timing])
    lines = table.splitlines()
    assert len(lines) == 4
    for header in ("name", "params (M)", "MACs (G)", "size (MB)", "median (ms)", "p90 (ms)"):
        assert header in lines[0]
    assert lines[2].startswith("tiny") and "1.00" in lines[2]
    assert lines[3].startswith("InternalResize") and lines[3].endswith("-")


def test_interleaved_latency_takes_the_models_in_turn(monkeypatch) -> None:
    import slimdepth.deploy.latency as cost

    calls: list[tuple[str, int, int]] = []
    real = cost.measure_latency

    def recording(model, size, **kw):
        calls.append((model.tag, kw["runs"], kw["warmup"]))
        return real(model, size, **kw)

    a, b = SmallCNN(), SmallCNN()
    a.tag, b.tag = "a", "b"
    monkeypatch.setattr(cost, "measure_latency", recording)
    la, lb = cost.interleaved_latency([a, b], (8, 8), runs=7, warmup=2, threads=1, rounds=3)
    # 7 runs in 3 chunks (3, 2, 2), A then B each round; the full warm-up only before the first chunk
    assert calls == [("a", 3, 2), ("b", 3, 2), ("a", 2, 1), ("b", 2, 1), ("a", 2, 1), ("b", 2, 1)]
    for lat in (la, lb):
        assert lat.runs == 7 and len(lat.samples_ms) == 7 and lat.threads == 1
        assert lat.median_ms == pytest.approx(sorted(lat.samples_ms)[3])


def test_latency_statistics_of_known_timings(monkeypatch) -> None:
    """Catches a wrong statistic (the "median" computed as the mean, p90 as the max, min as the
    first run, ...): the clock is replaced so that run i takes a known, skewed duration."""
    import types

    import numpy as np

    import slimdepth.deploy.latency as cost

    durations_ms = [4.0, 1.0, 3.0, 2.0, 50.0, 6.0, 5.0]  # skewed: one slow outlier
    ticks: list[float] = []
    now = 100.0
    for d in durations_ms:  # perf_counter() is read once before and once after each timed pass
        ticks += [now, now + d / 1000.0]
        now += 1.0
    clock = iter(ticks)
    monkeypatch.setattr(cost, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    lat = measure_latency(SmallCNN(), (8, 8), runs=len(durations_ms), warmup=2, threads=1)
    assert next(clock, None) is None  # exactly two readings per timed run, none for the warm-up
    assert lat.samples_ms == pytest.approx(durations_ms, abs=1e-9)
    assert lat.median_ms == pytest.approx(4.0, abs=1e-9)  # sorted: 1 2 3 [4] 5 6 50; the mean is 10.14
    assert lat.mean_ms == pytest.approx(sum(durations_ms) / 7, abs=1e-9)
    assert lat.p90_ms == pytest.approx(float(np.percentile(durations_ms, 90)), abs=1e-9)
    assert lat.p90_ms == pytest.approx(6.0 + 0.4 * (50.0 - 6.0), abs=1e-9)  # linear interpolation: 23.6
    assert lat.min_ms == pytest.approx(1.0, abs=1e-9)
    # an even number of runs: the median is the mean of the two middle values (NumPy's)
    even = [4.0, 1.0, 30.0, 2.0]
    ticks = [t for i, d in enumerate(even) for t in (10.0 * i, 10.0 * i + d / 1000.0)]
    clock = iter(ticks)
    lat = measure_latency(SmallCNN(), (8, 8), runs=4, warmup=0, threads=1)
    assert lat.median_ms == pytest.approx(3.0, abs=1e-9) and lat.mean_ms == pytest.approx(9.25, abs=1e-9)
