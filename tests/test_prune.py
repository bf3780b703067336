"""``slimdepth prune`` / ``compare`` and the schedule behind them: budgets met, smaller models
that load on their own, resumable stages, fair step budgets, and clear errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

import slimdepth
from slimdepth.compress.gating import executed_macs, gated_layers, is_gated
from slimdepth.compress.prune import Interrupted, PruneSettings, read_prune_state, run_prune, start_prune
from slimdepth.deploy.cost import count_macs, count_parameters
from slimdepth.errors import ConfigError
from slimdepth.models.checkpoint import read_sidecar, save_model
from slimdepth.models.widths import WIDTHS_KEY
from slimdepth.models.zoo import build_model
from slimdepth.train.run import resolve_config
from tests.helpers import assert_one_line_error, run_cli

SIZE = (32, 96)
RECIPE = {
    "data": {"train": "synthetic,num=8,size=32x96,lidar=false", "val": "synthetic,num=4,size=32x96,split=val,lidar=false",
             "batch_size": 4, "val_batch_size": 4, "workers": 0, "cache": True, "augment": [{"op": "hflip", "p": 0.5}]},
    "loss": {"terms": [{"type": "silog"}]},
    "schedule": {"warmup_steps": 1},
    "train": {"epochs": 1, "log_every": 1, "checkpoint_every": 2, "samples": 0},
}
VAL = "synthetic,num=4,size=32x96,split=val,lidar=false"


def make_source(tmp_path: Path, name: str = "litedepth", **options) -> Path:
    """A checkpoint with the recipe it was 'trained' with, as ``slimdepth train`` writes one."""
    torch.manual_seed(0)
    model = build_model(name, **options)
    recipe = resolve_config(None, [], {**RECIPE, "model": {"name": name, **options}})
    return save_model(model, tmp_path / f"{name}-source", metadata={"input_size": list(SIZE), "train_config": recipe})


@pytest.fixture(scope="module")
def lite(tmp_path_factory) -> Path:
    return make_source(tmp_path_factory.mktemp("lite"), "litedepth", internal_size=None)


@pytest.fixture(scope="module")
def r18(tmp_path_factory) -> Path:
    return make_source(tmp_path_factory.mktemp("r18"), "resnet18-unet")


def rows(run: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run / "log.csv").open()))


@pytest.mark.parametrize("method", ["masks", "magnitude", "uniform"])
def test_prune_cli_meets_the_budget_and_the_result_loads_on_its_own(tmp_path, monkeypatch, capsys, lite, method) -> None:
    run = tmp_path / method
    code, out, err = run_cli(monkeypatch, capsys, "prune", str(lite), "--method", method, "--target-macs", "0.5",
                             "--steps", "6", "--out", str(run))
    assert code == 0, err
    state = read_prune_state(run)
    assert state["status"] == "done" and state["settings"]["method"] == method
    original = count_macs(slimdepth.load(lite), SIZE).total
    assert state["original_macs"] == original
    model = slimdepth.load(run)  # rebuilt from the sidecar's widths, without the source
    macs = count_macs(model, SIZE).total
    assert macs == state["result"]["macs"]
    if method == "masks":
        assert macs <= 0.5 * original  # the budget is a ceiling for the learned masks
    else:
        assert abs(macs / original - 0.5) <= 0.01  # the baselines search to within 1%
    assert read_sidecar(run / "checkpoints" / "best.safetensors")["model"][WIDTHS_KEY]
    assert count_parameters(model) < count_parameters(slimdepth.load(lite))
    # every method spends exactly the same number of optimisation steps
    steps = len(rows(run)) + (len(rows(run / "masks")) if method == "masks" else 0)
    assert steps == 6
    assert f"{macs / 1e9:.3f} GMACs" in out and "compressed model" in out
    # the network saved right after removal has the widths the stage chose
    pruned = slimdepth.load(run / "pruned.safetensors")
    assert count_macs(pruned, SIZE).total == state["stages"]["pruned"]["macs"] == macs
    with torch.no_grad():
        assert model(torch.rand(1, 3, *SIZE)).shape == (1, 1, *SIZE)


def test_mask_schedule_warmup_then_joint_with_compression_loss(tmp_path, lite) -> None:
    settings = PruneSettings("masks", 0.5, steps=10, warmup_frac=0.2, joint_frac=0.6, mask_lr=0.5,
                             compression_weight=50.0)
    start_prune(lite, settings, tmp_path / "run", read_sidecar(lite)["metadata"]["train_config"])
    state = run_prune(tmp_path / "run")
    joint = rows(tmp_path / "run" / "masks")
    assert len(joint) == 8 and len(rows(tmp_path / "run")) == 2
    ratios = [float(r["expected_ratio"]) for r in joint]
    compression = [float(r["compression"]) for r in joint]
    assert ratios[0] == ratios[1] and compression[:2] == [0.0, 0.0]  # warm-up: masks fixed, no penalty
    assert compression[2] > 0 and ratios[-1] < ratios[1] - 0.1  # joint: the expected cost falls
    report = state["stages"]["pruned"]
    assert report["ratio"] <= 0.5 and set(report) >= {"mask_ratio_after_training", "threshold_shift", "channels_kept"}


def test_killed_prune_resumes_to_the_same_result(tmp_path, lite) -> None:
    settings = PruneSettings("masks", 0.5, steps=8, warmup_frac=0.25, joint_frac=0.25, mask_lr=0.5)
    recipe = read_sidecar(lite)["metadata"]["train_config"]
    start_prune(lite, settings, tmp_path / "full", recipe)
    run_prune(tmp_path / "full")
    start_prune(lite, settings, tmp_path / "killed", recipe)
    with pytest.raises(Interrupted):
        run_prune(tmp_path / "killed", stop_after=3)  # killed inside the mask stage
    with pytest.raises(Interrupted):
        run_prune(tmp_path / "killed", stop_after=2)  # ... and again inside fine-tuning
    state = run_prune(tmp_path / "killed")
    assert state["status"] == "done"
    for sub in ("masks", "."):
        assert [r["loss"] for r in rows(tmp_path / "killed" / sub)] == [r["loss"] for r in rows(tmp_path / "full" / sub)]
    a, b = slimdepth.load(tmp_path / "full"), slimdepth.load(tmp_path / "killed")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_gating_prune_meets_executed_macs_and_reloads_gated(tmp_path, monkeypatch, capsys, r18) -> None:
    run = tmp_path / "gate"
    code, out, err = run_cli(monkeypatch, capsys, "prune", str(r18), "--method", "gating", "--target-macs", "0.6",
                             "--steps", "2", "--out", str(run))
    assert code == 0, err
    model = slimdepth.load(run)
    assert is_gated(model)
    state = read_prune_state(run)
    density = state["stages"]["gating"]["density"]
    assert all(v["density"] == density for v in gated_layers(model).values())
    with torch.no_grad():
        macs = executed_macs(model, SIZE)
    assert macs["executed_macs"] == state["result"]["macs"]
    assert 0.5 < macs["ratio"] <= 0.6  # the largest density within the budget
    assert "saliency_l1" in rows(run)[0]
    assert "gating density" in out


def test_compare_table_json_csv_and_plot(tmp_path, monkeypatch, capsys, lite, r18) -> None:
    run = tmp_path / "uniform"
    assert run_cli(monkeypatch, capsys, "prune", str(lite), "--method", "uniform", "--target-macs", "0.5", "--steps", "1",
                   "--out", str(run))[0] == 0
    files = {k: tmp_path / f"cmp.{k}" for k in ("json", "csv", "png")}
    code, out, err = run_cli(monkeypatch, capsys, "compare", str(lite), str(run), "--data", VAL, "--runs", "3",
                             "--warmup", "1", "--json", str(files["json"]), "--csv", str(files["csv"]),
                             "--plot", str(files["png"]))
    assert code == 0, err
    table = json.loads(files["json"].read_text())
    assert [r["name"] for r in table] == [str(lite), str(run)]
    for row, path in zip(table, (lite, run)):
        model = slimdepth.load(path)
        assert row["params"] == count_parameters(model)
        assert row["macs"] == count_macs(model, SIZE).total
        assert row["input_size"] == list(SIZE) and row["images"] == 4
        assert 0 <= row["d1"] <= 1 and row["latency_p90_ms"] >= row["latency_median_ms"] > 0
    assert table[1]["macs"] / table[0]["macs"] == pytest.approx(0.5, abs=0.01)
    assert [r["name"] for r in csv.DictReader(files["csv"].open())] == [str(lite), str(run)]
    assert files["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    header = next(line for line in out.splitlines() if line.startswith("model"))
    for column in ("params (M)", "GMACs", "size (MB)", "median (ms)", "p90 (ms)", "d1", "AbsRel", "RMSE"):
        assert column in header
    # existing outputs are never overwritten without --overwrite
    code, _, err = run_cli(monkeypatch, capsys, "compare", str(lite), "--data", VAL, "--json", str(files["json"]))
    assert_one_line_error(code, err, "already exists")


def test_prune_errors_are_one_line(tmp_path, monkeypatch, capsys, lite) -> None:
    def fails(*args: str, fragment: str) -> None:
        code, _, err = run_cli(monkeypatch, capsys, "prune", *args)
        assert_one_line_error(code, err, fragment)

    out = str(tmp_path / "out")
    fails(str(lite), "--method", "nope", "--target-macs", "0.5", "--out", out, fragment="--method")
    fails(str(lite), "--method", "masks", "--target-macs", "1.5", "--out", out, fragment="--target-macs")
    fails(str(lite), "--method", "masks", "--target-macs", "0", "--out", out, fragment="--target-macs")
    fails(str(lite), "--method", "masks", "--target-macs", "0.5", "--steps", "0", "--out", out, fragment="--steps")
    fails(str(tmp_path / "missing"), "--method", "masks", "--target-macs", "0.5", "--out", out, fragment="missing")
    fails(str(lite), "--target-macs", "0.5", "--out", out, fragment="--method")
    fails(str(lite), "--method", "masks", "--target-macs", "0.5", "--data", "nowhere/at/all", "--out", out,
          fragment="nowhere")
    fails(str(lite), "--method", "gating", "--target-macs", "0.5", "--steps", "1", "--out", out,
          fragment="no ResNet Bottleneck")
    fails("--resume", "--out", out, fragment="not a prune run")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    fails(str(lite), "--method", "masks", "--target-macs", "0.5", "--out", str(tmp_path / "full"), fragment="not empty")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    bare = save_model(build_model("litedepth", internal_size=None), tmp_path / "bare")  # no recipe recorded
    fails(str(bare), "--method", "masks", "--target-macs", "0.5", "--out", out, fragment="--config")
    start_prune(lite, PruneSettings("uniform", 0.5, steps=1), tmp_path / "started", RECIPE)
    fails("--resume", "--method", "masks", "--out", str(tmp_path / "started"), fragment="leave out --method")
    assert not Path(out).exists()


def test_masks_without_compression_loss_keep_what_they_learned(tmp_path, lite) -> None:
    settings = PruneSettings("masks", 0.3, steps=6, warmup_frac=0.0, joint_frac=0.5, compression_weight=0.0)
    start_prune(lite, settings, tmp_path / "run", read_sidecar(lite)["metadata"]["train_config"])
    state = run_prune(tmp_path / "run")
    report = state["stages"]["pruned"]
    # no penalty: the masks (started on) stay on, no budget fit forces the 30% target
    assert report["threshold_shift"] == 0.0 and report["mask_ratio_after_training"] == 1.0
    assert report["ratio"] == pytest.approx(1.0)
    assert [float(r["compression"]) for r in rows(tmp_path / "run" / "masks")] == [0.0] * 3


def test_an_unreachable_mask_target_is_refused_before_training(tmp_path, monkeypatch, capsys, lite) -> None:
    out = tmp_path / "run"
    code, _, err = run_cli(monkeypatch, capsys, "prune", str(lite), "--method", "masks", "--target-macs", "0.0001",
                           "--steps", "4", "--out", str(out))
    assert_one_line_error(code, err, "cannot be met", "one channel per prunable group")
    assert not out.exists()  # nothing trained, nothing left behind


def test_prune_resumes_from_another_directory_and_takes_per_layer_densities(tmp_path, monkeypatch, capsys, r18) -> None:
    import os
    import shutil

    shutil.copy(r18, tmp_path / "src.safetensors")
    shutil.copy(r18.with_suffix(".json"), tmp_path / "src.json")
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "gate"
    code, _, err = run_cli(monkeypatch, capsys, "prune", "src.safetensors", "--method", "gating", "--density", "0.5",
                           "--densities", "encoder.layer4=0.25,decoder.stages.0=0.75", "--gate-layers",
                           "bottlenecks,decoder.stages.0", "--target-macs", "1", "--steps", "2", "--out", "gate")
    assert code == 0, err
    layers = gated_layers(slimdepth.load(run))
    assert layers["encoder.layer4.0.conv1"]["density"] == 0.25 and layers["decoder.stages.0.0"]["density"] == 0.75
    assert layers["encoder.layer1.0.conv1"]["density"] == 0.5
    assert read_prune_state(run)["source"] == str(tmp_path / "src.safetensors")  # absolute
    os.chdir(tmp_path.parent)
    assert run_cli(monkeypatch, capsys, "prune", "--resume", "--out", str(run))[0] == 0
    code, _, err = run_cli(monkeypatch, capsys, "prune", "src.safetensors", "--method", "gating", "--target-macs", "1",
                           "--densities", "encoder.layer4", "--out", str(tmp_path / "x"))
    assert_one_line_error(code, err, "--densities", "LAYER=DENSITY")


def test_gating_target_below_what_the_gated_layers_allow(tmp_path, r18) -> None:
    settings = PruneSettings("gating", 0.05, steps=1)
    start_prune(r18, settings, tmp_path / "run", read_sidecar(r18)["metadata"]["train_config"])
    with pytest.raises(ConfigError, match="at best"):
        run_prune(tmp_path / "run")


def test_settings_check() -> None:
    PruneSettings("masks", 0.4, steps=10).check()
    s = PruneSettings("masks", 0.4, steps=10)
    assert (s.warmup_steps, s.joint_steps, s.finetune_steps) == (1, 4, 5)
    g = PruneSettings("gating", 0.4, steps=10)
    assert (g.warmup_steps, g.joint_steps, g.finetune_steps) == (0, 0, 10)
    for bad in ({"warmup_frac": 0.6, "joint_frac": 0.5}, {"cost": "energy"}, {"density": 1.5}, {"mask_lr": 0.0},
                {"steps": 1}):
        with pytest.raises(ConfigError):
            PruneSettings("masks", 0.4, **{"steps": 10, **bad}).check()


def test_mask_budget_ramps_from_one_to_the_target_over_the_joint_phase() -> None:
    settings = PruneSettings("masks", 0.25, steps=100, warmup_frac=0.1, joint_frac=0.4, ramp_frac=0.5)
    budgets = [settings.mask_budget(step) for step in range(100)]
    assert budgets[:10] == [1.0] * 10  # warm-up
    assert budgets[10] == pytest.approx(1 - 0.75 / 20) and budgets[19] == pytest.approx(1 - 0.75 * 10 / 20)
    assert budgets[29:] == [pytest.approx(0.25)] * 71  # joint steps 20..39 and after: the target
    assert all(a >= b for a, b in zip(budgets, budgets[1:]))
    settings.ramp_frac = 0.0
    assert settings.mask_budget(10) == 0.25
    with pytest.raises(ConfigError):
        PruneSettings("masks", 0.5, ramp_frac=1.5).check()
    with pytest.raises(ConfigError):
        PruneSettings("masks", 0.5, estimate="soft").check()
