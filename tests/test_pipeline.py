"""``slimdepth pipeline``: the whole quick chain shrunk to a few steps on tiny data, resume that
skips finished stages and continues a stopped one, given runs, torchrun commands, and bad input
as one-line errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slimdepth.errors import ConfigError
from slimdepth.models.checkpoint import save_model
from slimdepth.models.zoo import build_model
from slimdepth.pipeline import prepare_pipeline, read_status, resolve_pipeline, run_pipeline, torchrun_command
from slimdepth.pipeline.config import STAGES, stage_mode
from slimdepth.train.run import resolve_config
from tests.helpers import assert_one_line_error, run_cli

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "configs" / "pipeline_quick.yaml"
KITTI = ROOT / "configs" / "pipeline_kitti.yaml"
TRAIN = "synthetic,num=8,size=32x96,lidar=false"
VAL = "synthetic,num=4,size=32x96,split=val,lidar=false"
UNLABELED = "synthetic,num=4,size=32x96,seed=1,labels=false,lidar=false,seg=false"


def tiny_overrides() -> list[str]:
    """--set values that shrink every stage of the quick pipeline to a few steps on 32x96 frames.
    One runtime thread: a worker on more than one waits 0.25 s after each timed batch (for its
    thread pool to idle, tested in test_bench.py), which was a tenth of this test's time."""
    out = ["size=32x96", "budget_ms=null", "threads=1", "compress.target_macs=0.5", "compress.steps=4",
           "finetune.steps=2", "export.calib_num=4", "export.val_num=4",
           "evaluate.runs=3", "evaluate.rounds=1", "evaluate.warmup=1", "evaluate.limit=4"]
    for stage in ("teacher", "student", "distill", "finetune"):
        out += [f"{stage}.set.data.train={TRAIN}", f"{stage}.set.data.val={VAL}", f"{stage}.set.data.batch_size=4",
                f"{stage}.set.data.val_batch_size=4", f"{stage}.set.train.samples=0", f"{stage}.set.train.log_every=1",
                f"{stage}.set.train.checkpoint_every=1", f"{stage}.set.schedule.warmup_steps=1"]
        if stage != "finetune":
            out.append(f"{stage}.set.train.steps=2")
    out += [f"{stage}.set.distill.unlabeled={UNLABELED}" for stage in ("distill", "finetune")]
    return out


def checkpoints(out: Path) -> dict[str, float]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in sorted(out.rglob("*.safetensors"))}


def test_quick_pipeline_runs_every_stage_and_resume_skips_finished_ones(tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "pipe"
    cfg = resolve_pipeline(QUICK, tiny_overrides())
    logs: list[str] = []
    status = run_pipeline(cfg, out, stop_after=("student", 1), log=logs.append)  # killed during the student
    assert status["stages"]["teacher"]["status"] == "done"
    assert status["stages"]["student"]["status"] == "running"
    assert "distill" not in status["stages"]
    teacher_ckpt = out / "teacher" / "checkpoints" / "best.safetensors"
    teacher_time = teacher_ckpt.stat().st_mtime_ns

    code, stdout, err = run_cli(monkeypatch, capsys, "pipeline", "--resume", "--out", str(out))
    assert code == 0, err
    assert "teacher: done, skipped" in stdout and "student: continuing" in stdout
    assert teacher_ckpt.stat().st_mtime_ns == teacher_time  # not rerun
    status = read_status(out)
    assert {s: e["status"] for s, e in status["stages"].items()} == {s: "done" for s in STAGES}
    page = (out / "report.html").read_text()
    models = page.split('<table id="models">', 1)[1].split("</table>", 1)[0]
    assert models.split("<tbody>", 1)[1].count("<tr>") == 7  # one row per model: the runtimes are columns
    assert "ort (ms)" in models and "torch (ms)" in models
    student_log = (out / "student" / "log.csv").read_text().splitlines()
    assert len(student_log) == 1 + 2  # header + steps 1 and 2: the student continued, not restarted
    for stage in ("teacher", "student", "distill", "compress", "finetune"):
        assert (out / stage / "checkpoints" / "best.safetensors").is_file()
    finetune = yaml.safe_load((out / "finetune" / "distill.yaml").read_text())
    assert Path(finetune["distill"]["init"]).parent.parent == (out / "compress").resolve()
    assert Path(finetune["distill"]["teacher"]).parent.parent == (out / "teacher").resolve()
    results = json.loads((out / "evaluate" / "results.json").read_text())
    names = [(r["name"], r["runtime"]) for r in results["rows"]]
    chain = ["teacher", "student", "distill", "compress", "finetune"]
    # every PyTorch model, the exported files, then every PyTorch model on the budget's runtime
    assert names == [(n, "torch") for n in chain] + [("onnx", "ort"), ("onnx-int8", "ort-int8")] + [
        (n, "ort") for n in chain]
    assert results["size"] == [32, 96] and results["budget_ms"] is None  # compressed by MACs: no latency budget
    for row in results["rows"]:
        assert row["latency_ms"] > 0 and 0 <= row["d1"] <= 1 and row["size_mb"] > 0
    by = {(r["name"], r["runtime"]): r for r in results["rows"]}
    assert by[("student", "ort")]["d1"] == by[("student", "torch")]["d1"]  # the fp32 export's accuracy is torch's
    assert by[("student", "ort")]["path"].endswith(".onnx")
    assert (out / "export" / "model.onnx").is_file() and (out / "export" / "int8.onnx").is_file()

    before = checkpoints(out)
    code, stdout, err = run_cli(monkeypatch, capsys, "pipeline", "--resume", "--out", str(out))
    assert code == 0, err
    for stage in ("teacher", "student", "distill", "compress", "finetune", "export", "evaluate"):
        assert f"{stage}: done, skipped" in stdout
    assert checkpoints(out) == before


def _tiny_run(tmp_path: Path, name: str) -> Path:
    """A run directory with a best checkpoint and the recipe it records, as `slimdepth train` leaves one."""
    torch.manual_seed(0)
    model = build_model(name, **({"internal_size": None} if name == "litedepth" else {}))
    recipe = resolve_config(None, [], {"model": {"name": name}, "data": {"train": TRAIN, "val": VAL, "batch_size": 4}})
    run = tmp_path / name
    save_model(model, run / "checkpoints" / "best", metadata={"input_size": [32, 96], "train_config": recipe})
    return run


def test_given_runs_stand_for_their_stages(tmp_path) -> None:
    student = _tiny_run(tmp_path, "litedepth")
    cfg = resolve_pipeline(None, [], {"size": "32x96", "student": str(student), "export": {"int8": False},
                                      "evaluate": {"latency": False, "limit": 2, "data": VAL}, "report": None})
    assert stage_mode(cfg, "student") == "given" and stage_mode(cfg, "teacher") == "off"
    logs: list[str] = []
    status = run_pipeline(cfg, tmp_path / "pipe", log=logs.append)
    assert status["stages"]["student"] == {"status": "done", "run": str(student.resolve()), "given": True,
                                           "kind": "train", "summary": {}}
    assert not (tmp_path / "pipe" / "student").exists()  # nothing ran for it
    assert status["stages"]["distill"]["status"] == "skipped"
    report = json.loads((tmp_path / "pipe" / "export" / "model.onnx.json").read_text())
    assert report["metadata"]["source"].endswith("best.safetensors")
    rows = json.loads((tmp_path / "pipe" / "evaluate" / "results.json").read_text())["rows"]
    assert [r["name"] for r in rows] == ["student", "onnx"] and rows[0]["path"] == str(student.resolve())
    assert any("student: given run" in line for line in logs)


def test_both_pipeline_configs_parse_and_validate() -> None:
    quick, kitti = resolve_pipeline(QUICK), resolve_pipeline(KITTI)
    assert [stage_mode(quick, s) for s in STAGES] == ["run"] * len(STAGES)
    assert [stage_mode(kitti, s) for s in STAGES] == ["run"] * len(STAGES)
    assert quick["size"] == [96, 320] and quick["runtime"] == "ort" and quick["gpus"] == 1
    assert kitti["budget_ms"] == 5.0 and kitti["size"] == [480, 640] and kitti["gpus"] == 4
    from slimdepth.pipeline.config import pipeline_recipe

    for cfg in (quick, kitti):  # every recipe resolves against the trainer's schema
        for stage in ("teacher", "student", "distill"):
            pipeline_recipe(cfg, stage)


def test_multi_gpu_stages_run_under_torchrun(tmp_path) -> None:
    recipe, run = tmp_path / "recipes" / "teacher.yaml", tmp_path / "teacher"
    command = torchrun_command("train", recipe, run, 4, resume=True)
    assert command == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "4",
                       "-m", "slimdepth", "train", str(recipe), "--out", str(run), "--resume"]
    other = torchrun_command("distill", recipe, run, 2, resume=False)
    assert other[other.index("--nproc_per_node") + 1] == "2"
    assert other[-5:] == ["slimdepth", "distill", str(recipe), "--out", str(run)]


# ------------------------------------------------------------------------------ bad input


def _write(tmp_path: Path, cfg: dict) -> Path:
    path = tmp_path / "pipe.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _fails(monkeypatch, capsys, tmp_path: Path, cfg: dict | None, *fragments: str, extra: tuple[str, ...] = ()) -> None:
    args = ["pipeline", *([str(_write(tmp_path, cfg))] if cfg is not None else []), "--out", str(tmp_path / "o"), *extra]
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert_one_line_error(code, err, *fragments)
    assert not (tmp_path / "o").exists()  # refused before any work


def test_a_stage_pointing_at_a_missing_run_is_a_one_line_error(tmp_path, monkeypatch, capsys) -> None:
    _fails(monkeypatch, capsys, tmp_path, {"teacher": "runs/nowhere", "student": str(_tiny_run(tmp_path, "litedepth"))},
           "teacher", "runs/nowhere")


def test_bad_pipelines_are_one_line_errors(tmp_path, monkeypatch, capsys) -> None:
    code, _, err = run_cli(monkeypatch, capsys, "pipeline", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "none.yaml")
    student = str(_tiny_run(tmp_path, "litedepth"))
    _fails(monkeypatch, capsys, tmp_path, {"studnet": student}, "studnet", "did you mean 'student'")
    _fails(monkeypatch, capsys, tmp_path, {"student": student, "export": {"calib_nm": 3}}, "export.calib_nm",
           "calib_num")
    _fails(monkeypatch, capsys, tmp_path, {"student": student, "runtime": "opnevino"}, "unknown runtime", "did you mean 'openvino'")
    _fails(monkeypatch, capsys, tmp_path, {"student": student, "budget_ms": -1}, "budget_ms", "positive")
    _fails(monkeypatch, capsys, tmp_path, {"student": student, "distill": {"recipe": str(QUICK)}}, "distill needs a teacher")
    _fails(monkeypatch, capsys, tmp_path, {"student": student, "compress": {"steps": 3}}, "compress needs a budget")
    _fails(monkeypatch, capsys, tmp_path, {"teacher": {"recipe": "configs/missing.yaml"}}, "missing.yaml")
    _fails(monkeypatch, capsys, tmp_path, {"student": student}, "budget_ms", extra=("--set", "budget_ms=abc"))
    _fails(monkeypatch, capsys, tmp_path, {"student": student, "compress": {"target_macs": 0.5,
                                                                           "settings": {"mask_lrr": 1}}},
           "mask_lrr", "mask_lr")
    _fails(monkeypatch, capsys, tmp_path, {"student": student, "compress": {"target_macs": 0.5,
                                                                           "settings": {"mask_lr": -1}}},
           "mask-lr")  # the prune settings are checked before the first stage
    _fails(monkeypatch, capsys, tmp_path, None, "no pipeline to resume", extra=("--resume",))
    _fails(monkeypatch, capsys, tmp_path, None, "give a pipeline file")
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "mine.txt").write_text("a user's file")
    code, _, err = run_cli(monkeypatch, capsys, "pipeline", str(_write(tmp_path, {"student": student})),
                           "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "not empty", "--resume")
    assert (tmp_path / "o" / "mine.txt").read_text() == "a user's file"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(["budget_ms", "threads", "gpus", "runtime", "size", "evaluate.runs", "compress.steps",
                            "compress.target_macs", "finetune.steps", "export.calib_num"]),
       value=st.one_of(st.sampled_from([-1, 0, -0.5, 1e9, "", "x", "fast", True, [1, 2, 3], {"a": 1}]),
                       st.text(max_size=6)))
def test_bad_option_values_are_one_line_config_errors(tmp_path_factory, key, value) -> None:
    """Any value of any option is accepted or refused with a one-line ConfigError naming the key."""
    base = {"student": {"recipe": str(ROOT / "configs" / "quickstart.yaml")}, "compress": {"target_macs": 0.5}}
    try:
        resolve_pipeline(None, [f"{key}={json.dumps(value)}"], base)
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message
        assert key.split(".")[-1] in message or key.split(".")[0] in message, message


def test_resume_refuses_a_changed_pipeline(tmp_path) -> None:
    student = _tiny_run(tmp_path, "litedepth")
    base = {"size": "32x96", "student": str(student), "export": None, "evaluate": None, "report": None}
    path = _write(tmp_path, base)
    run_pipeline(prepare_pipeline(path, tmp_path / "o", [], False), tmp_path / "o", log=lambda m: None)
    assert prepare_pipeline(None, tmp_path / "o", [], True) == prepare_pipeline(path, tmp_path / "o", [], True)
    with pytest.raises(ConfigError, match="differs"):
        prepare_pipeline(path, tmp_path / "o", ["threads=4"], True)


def test_impossible_latency_budget_is_refused_before_any_training(tmp_path, monkeypatch, capsys) -> None:
    """The latency table is measured on the student's architecture before the teacher trains, so a
    budget under the fixed cost fails in one line at the start and leaves no directory behind.
    (Fake timings: the layer times grow with the conv's size, the network has a 0.5 ms fixed cost.)"""
    import slimdepth.compress.latency_table as lt

    monkeypatch.setattr(lt, "time_layers", lambda shapes, *a, **k: [
        1e-3 + 1e-9 * s["cin"] * s["cout"] * s["h"] * s["w"] for s in shapes])
    monkeypatch.setattr(lt, "time_networks", lambda nets, *a, **k: [
        0.5 + 1e-6 * sum(p.numel() for p in n.parameters()) for n in nets])
    out = tmp_path / "pipe"
    overrides = [o for o in tiny_overrides() if not o.startswith(("budget_ms", "compress.target_macs"))]
    args = [f"--set={o}" for o in overrides] + ["--set=budget_ms=0.05"]
    code, _, err = run_cli(monkeypatch, capsys, "pipeline", str(QUICK), "--out", str(out), *args)
    assert_one_line_error(code, err, "cannot be met", "fixed cost")
    assert not out.exists()
