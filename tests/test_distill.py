"""Distillation runs: mixed batches, a frozen teacher, exact resume (one and two stages, cached
teacher), DDP, run directories that the other verbs take, and bad input through the CLI."""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

import slimdepth
from slimdepth.distill.data import UnlabeledStream, split_batch
from slimdepth.distill.run import prepare_distill_run, resolve_distill_config, run_distillation
from slimdepth.distill.teacher import Teacher
from slimdepth.distill.trainer import DistillTrainer
from slimdepth.errors import ConfigError
from slimdepth.models.checkpoint import save_model
from slimdepth.models.zoo import build_model
from tests.helpers import assert_one_line_error, run_cli, write_recipe_file

STUDENT = {
    "model": {"name": "litedepth", "internal_size": "none", "max_depth": 80.0},
    "data": {"train": "synthetic,num=12,size=48x160,depth=lidar", "val": "synthetic,num=4,size=48x160,split=val,lidar=false",
             "batch_size": 4, "val_batch_size": 4, "workers": 0, "cache": True,
             "augment": [{"op": "hflip", "p": 0.5}, {"op": "color_jitter", "brightness": 0.2}]},
    "loss": {"terms": [{"type": "silog"}], "learnable_weights": True},
    "schedule": {"warmup_steps": 1},
    "train": {"steps": 6, "log_every": 1, "checkpoint_every": 2, "samples": 1},
    "distill": {"terms": [{"type": "response", "weight": 1.0}, {"type": "affinity", "weight": 10.0},
                          {"type": "feature", "weight": 0.5, "levels": ["dec8"]}],
                "unlabeled": "synthetic,num=10,size=48x160,seed=5,labels=false,lidar=false,seg=false",
                "unlabeled_ratio": 0.5},
}


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory) -> Path:
    """A ResNet-18 U-Net teacher that ran at 64x192 (not the student's 48x160) with trained-like statistics."""
    torch.manual_seed(0)
    model = build_model("resnet18-unet", max_depth=80.0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 2.0)
            m.running_mean.normal_(0, 0.2)
    path = tmp_path_factory.mktemp("teacher") / "teacher.safetensors"
    save_model(model, path, metadata={"input_size": [64, 192]})
    return path


def recipe(tmp_path: Path, **changes) -> Path:
    return write_recipe_file(tmp_path / "student.yaml", STUDENT, **changes)


def log_rows(run: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run / "log.csv").open()))


def same_weights(a: Path, b: Path) -> bool:
    x, y = load_file(str(a)), load_file(str(b))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_a_killed_distillation_resumes_bit_for_bit(tmp_path, teacher_ckpt):
    cfg = resolve_distill_config(recipe(tmp_path), [], teacher=teacher_ckpt)
    run_distillation(cfg, tmp_path / "full")
    run_distillation(cfg, tmp_path / "killed", stop_after=3)
    assert len(log_rows(tmp_path / "killed")) == 3
    _, saved = prepare_distill_run(None, tmp_path / "killed", [], resume=True)
    assert saved == cfg
    run_distillation(saved, tmp_path / "killed", resume=True)
    full, killed = log_rows(tmp_path / "full"), log_rows(tmp_path / "killed")
    assert [r["loss"] for r in killed] == [r["loss"] for r in full] and len(full) == 6
    for key in ("kd_response", "kd_affinity", "kd_feature", "weight/kd_affinity", "silog"):
        assert all(float(r[key]) > 0 for r in full), key  # every term took part, its learnable weight logged
    assert same_weights(tmp_path / "full" / "checkpoints" / "last.safetensors",
                        tmp_path / "killed" / "checkpoints" / "last.safetensors")
    # the adapters and learnable weights are in the training state, and identical too
    a = load_file(str(tmp_path / "full" / "checkpoints" / "last.state.safetensors"))
    b = load_file(str(tmp_path / "killed" / "checkpoints" / "last.state.safetensors"))
    adapters = [k for k in a if "adapters" in k]
    # (the global RNG differs by the DataLoader's base-seed draw of the extra loader a resumed run creates)
    assert adapters and all(torch.equal(a[k], b[k]) for k in a if not k.startswith("rng."))


def test_batches_mix_labeled_and_unlabeled_samples_at_the_ratio(tmp_path, teacher_ckpt):
    cfg = resolve_distill_config(recipe(tmp_path, data__batch_size=8, distill__unlabeled_ratio=0.25), [],
                                 teacher=teacher_ckpt)
    trainer = DistillTrainer(cfg, tmp_path / "run")
    assert (trainer.labeled_per_batch, trainer.unlabeled_per_batch) == (6, 2)
    assert trainer.steps_per_epoch == 12 // 6
    batch = next(iter(trainer._loader()))
    assert batch["labeled"]["image"].shape == (6, 3, 48, 160) and "depth" in batch["labeled"]
    assert batch["unlabeled"]["image"].shape == (2, 3, 48, 160)
    assert set(batch["unlabeled"]) == {"image", "K", "meta"}  # labels of the unlabeled set never reach the loss
    assert [m["mix"][0] for m in batch["unlabeled"]["meta"]] == ["u", "u"]


def test_one_epoch_takes_every_labeled_image_once(tmp_path, teacher_ckpt):
    cfg = resolve_distill_config(recipe(tmp_path), [], teacher=teacher_ckpt)
    trainer = DistillTrainer(cfg, tmp_path / "run")
    batches = list(trainer._loader())
    assert len(batches) == trainer.steps_per_epoch == 6
    labeled = sorted(m["mix"][1] for b in batches for m in b["labeled"]["meta"])
    assert labeled == list(range(12))
    unlabeled = [m["mix"][1] for b in batches for m in b["unlabeled"]["meta"]]
    assert len(unlabeled) == 12 and sorted(unlabeled[:10]) == list(range(10))  # a full pass, then the next


def test_fewer_labeled_images_than_a_batch_still_train(tmp_path, teacher_ckpt):
    cfg = resolve_distill_config(recipe(tmp_path, data__train="synthetic,num=6,size=48x160,depth=lidar",
                                        data__batch_size=8, train__steps=2), [], teacher=teacher_ckpt)
    trainer = DistillTrainer(cfg, tmp_path / "run")
    assert (trainer.labeled_per_batch, trainer.unlabeled_per_batch, trainer.steps_per_epoch) == (4, 4, 1)
    trainer.fit()
    assert trainer.step == 2


@pytest.mark.parametrize("size,ratio,expected", [(8, 0.5, (4, 4)), (8, 0.25, (6, 2)), (8, 0.0, (8, 0)), (2, 0.1, (1, 1)),
                                                 (8, 0.95, (1, 7)), (5, 0.5, (3, 2))])
def test_split_batch(size, ratio, expected):
    assert split_batch(size, ratio, True) == expected
    assert split_batch(size, ratio, False) == (size, 0)


@settings(max_examples=40, deadline=None)
@given(length=st.integers(1, 30), per_batch=st.integers(1, 5), world=st.integers(1, 3), seed=st.integers(0, 2**31))
def test_the_unlabeled_stream_visits_every_image_once_per_pass(length, per_batch, world, seed):
    streams = [UnlabeledStream(length, per_batch, seed, rank, world) for rank in range(world)]
    steps = -(-3 * length // (per_batch * world))  # enough steps for three passes
    draws = [d for step in range(steps) for s in streams for d in s.draws(step)]
    for cycle in range(2):  # the first two passes are complete: each index exactly once
        assert sorted(i for i, c in draws if c == cycle) == list(range(length))
    assert draws == [d for step in range(steps) for s in streams for d in s.draws(step)]  # a pure function of the step


def test_the_teacher_is_frozen_and_stays_in_eval_mode(tmp_path, teacher_ckpt):
    teacher = Teacher(teacher_ckpt)
    before = {k: v.clone() for k, v in teacher.model.state_dict().items()}
    assert teacher.input_size == (64, 192)
    assert not any(p.requires_grad for p in teacher.model.parameters())
    cfg = resolve_distill_config(recipe(tmp_path, train__steps=2), [], teacher=teacher_ckpt)
    trainer = DistillTrainer(cfg, tmp_path / "run", teacher=teacher)
    assert trainer.channels_last  # the CPU default: the teacher runs in the student's layout
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in teacher.model.modules()
               if isinstance(m, torch.nn.Conv2d))
    trainer.fit()
    assert not teacher.model.training
    after = teacher.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BatchNorm statistics untouched
    assert all(p.grad is None for p in teacher.model.parameters())
    out = teacher(torch.rand(2, 3, 48, 160), features=True)
    assert out["depth"].shape == (2, 1, 48, 160)  # back at the student's size
    assert out["features"]["dec1"].shape[-2:] == (4, 12)  # features at the teacher's own resolution (64x192 / 16)


def test_two_stage_schedule_resumes_in_either_stage(tmp_path, teacher_ckpt):
    cfg = resolve_distill_config(recipe(tmp_path, train__steps=4, distill__schedule="two_stage",
                                        distill__stage2={"steps": 4, "lr": 1e-4, "warmup_steps": 0}), [],
                                 teacher=teacher_ckpt)
    run_distillation(cfg, tmp_path / "full")
    stage1 = tmp_path / "full" / "stage1"
    assert (stage1 / "finished.json").is_file() and len(log_rows(stage1)) == 4
    assert "kd_response" not in log_rows(stage1)[0]  # stage 1: ground truth only
    rows = log_rows(tmp_path / "full")
    assert len(rows) == 4 and float(rows[0]["lr"]) <= 1e-4 and "kd_affinity" in rows[0]
    saved = yaml.safe_load((tmp_path / "full" / "config.yaml").read_text())
    assert saved["optim"]["lr"] == 1e-4 and saved["train"]["steps"] == 4

    run = tmp_path / "killed"
    run_distillation(cfg, run, stop_after=2)  # killed in stage 1
    assert not (run / "stage1" / "finished.json").exists() and not (run / "checkpoints").exists()

    def kill_stage2(trainer, label):
        if label == "distillation":
            trainer.stop_after = 2
        return trainer.fit()

    run_distillation(cfg, run, resume=True, fit=kill_stage2)  # stage 1 finishes, stage 2 is killed
    assert len(log_rows(run)) == 2
    run_distillation(cfg, run, resume=True)
    assert [r["loss"] for r in log_rows(run)] == [r["loss"] for r in rows]
    assert same_weights(tmp_path / "full" / "checkpoints" / "last.safetensors", run / "checkpoints" / "last.safetensors")


def test_cached_teacher_outputs_run_the_teacher_once_per_image_and_resume_exactly(tmp_path, teacher_ckpt, monkeypatch):
    cfg = resolve_distill_config(recipe(tmp_path, data__augment=[], train__steps=9, distill__cache_teacher=True), [],
                                 teacher=teacher_ckpt)
    calls = []
    original = Teacher.__call__

    def counting(self, images, features=False):
        calls.append(images.shape[0])
        return original(self, images, features)

    monkeypatch.setattr(Teacher, "__call__", counting)
    run_distillation(cfg, tmp_path / "full")
    # 12 labeled images (9 steps of 2: 1.5 epochs) and 10 unlabeled (18 draws): each computed once
    assert sum(calls) == 12 + 10
    assert (tmp_path / "full" / "teacher_cache" / "l_depth.npy").is_file()
    run_distillation(cfg, tmp_path / "killed", stop_after=4)
    run_distillation(cfg, tmp_path / "killed", resume=True)
    assert [r["loss"] for r in log_rows(tmp_path / "killed")] == [r["loss"] for r in log_rows(tmp_path / "full")]


def test_without_unlabeled_data_every_sample_is_labeled(tmp_path, teacher_ckpt):
    cfg = resolve_distill_config(recipe(tmp_path, distill__unlabeled=None, distill__terms=[{"type": "response"}]), [],
                                 teacher=teacher_ckpt)
    trainer = DistillTrainer(cfg, tmp_path / "run")
    assert (trainer.labeled_per_batch, trainer.unlabeled_per_batch) == (4, 0)
    assert "features" not in trainer.outputs  # a response-only run asks for no features


def test_the_run_directory_is_a_training_run_for_the_other_verbs(tmp_path, teacher_ckpt, monkeypatch, capsys):
    path = recipe(tmp_path, train__steps=2)
    code, out, err = run_cli(monkeypatch, capsys, "distill", str(path), "--teacher", str(teacher_ckpt),
                             "--out", str(tmp_path / "run"))
    assert code == 0, err
    assert "distillation: validation after 2 steps" in out
    model = slimdepth.load(tmp_path / "run")
    assert model.config["name"] == "litedepth"
    code, out, err = run_cli(monkeypatch, capsys, "evaluate", str(tmp_path / "run"), "--data",
                             "synthetic,num=2,size=48x160,split=test,lidar=false")
    assert code == 0, err
    assert "2 images scored" in out and "AbsRel" in out
    code, out, err = run_cli(monkeypatch, capsys, "export", str(tmp_path / "run"), "--out", str(tmp_path / "s.onnx"),
                             "--size", "48x160")
    assert code == 0, err
    code, out, err = run_cli(monkeypatch, capsys, "prune", str(tmp_path / "run"), "--method", "uniform", "--target-macs",
                             "0.5", "--steps", "1", "--out", str(tmp_path / "pruned"), "--set", "schedule.warmup_steps=0")
    assert code == 0, err
    assert "uniform: " in out and (tmp_path / "pruned" / "checkpoints" / "best.safetensors").is_file()
    # train refuses a recipe with a distill section instead of silently ignoring it
    code, _, err = run_cli(monkeypatch, capsys, "train", str(path), "--out", str(tmp_path / "t"))
    assert_one_line_error(code, err, "slimdepth distill")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_distillation_ends_with_identical_weights(tmp_path, teacher_ckpt):
    path = recipe(tmp_path, data__batch_size=2, train__steps=3, train__samples=0)
    script = Path(__file__).parent / "scripts" / "ddp_distill.py"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(script), str(path), str(teacher_ckpt), str(tmp_path)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    a, b = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any("adapters" in k for k in a)  # the adapters live outside the DDP model and are averaged too
    first = json.loads((tmp_path / "rank0.json").read_text())
    assert first["unlabeled"] != json.loads((tmp_path / "rank1.json").read_text())["unlabeled"]  # ranks draw apart


# ------------------------------------------------------------------ bad input
def _corrupt(path: Path, tmp_path: Path) -> Path:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "t.safetensors").write_bytes(b"not a safetensors file")
    (bad / "t.json").write_text(path.with_suffix(".json").read_text())
    return bad / "t.safetensors"


TWO_STAGE = {"distill__schedule": "two_stage", "distill__stage2": {"steps": 2}}
BAD_CASES = {
    "missing teacher": (lambda t, tmp: ["--teacher", str(tmp / "nope.safetensors")], {}, "no such checkpoint"),
    "corrupt teacher": (lambda t, tmp: ["--teacher", str(_corrupt(t, tmp))], {}, "t.safetensors"),
    "teacher sidecar is not JSON": (lambda t, tmp: ["--teacher", str(t.parent / "garbled.safetensors")], {}, "garbled"),
    "no teacher": (lambda t, tmp: [], {}, "no teacher"),
    "student without labeled data": (lambda t, tmp: ["--teacher", str(t)],
                                     {"data__train": "synthetic,num=8,size=48x160,labels=false"}, "no ground-truth depth"),
    "two stages without a length": (lambda t, tmp: ["--teacher", str(t)], {"distill__schedule": "two_stage"},
                                    "stage2.steps"),
    "cache with augmentation": (lambda t, tmp: ["--teacher", str(t)], {"distill__cache_teacher": True}, "augment"),
    "ratio of one": (lambda t, tmp: ["--teacher", str(t)], {"distill__unlabeled_ratio": 1.0}, "unlabeled_ratio"),
    "unknown term": (lambda t, tmp: ["--teacher", str(t)], {"distill__terms": [{"type": "attention"}]}, "attention"),
    "missing unlabeled folder": (lambda t, tmp: ["--teacher", str(t), "--unlabeled", f"unlabeled:{tmp / 'none'}"], {},
                                 "not found"),
    "unknown distill key": (lambda t, tmp: ["--teacher", str(t)], {"distill__ratio": 0.5}, "distill.ratio"),
    "student level the model lacks": (lambda t, tmp: ["--teacher", str(t)],
                                      {"distill__terms": [{"type": "feature", "levels": ["dec2"]}]}, "no feature 'dec2'"),
    "no terms": (lambda t, tmp: ["--teacher", str(t)], {"distill__terms": []}, "nothing to distil"),
    "unlabeled at ratio zero": (lambda t, tmp: ["--teacher", str(t)], {"distill__unlabeled_ratio": 0.0}, "ratio is 0"),
    # a two-stage run checks its teacher before stage 1, not after it
    "two stages, corrupt teacher": (lambda t, tmp: ["--teacher", str(_corrupt(t, tmp))], TWO_STAGE, "t.safetensors"),
    "two stages, level the teacher lacks": (
        lambda t, tmp: ["--teacher", str(t)],
        {**TWO_STAGE, "distill__terms": [{"type": "feature", "levels": ["dec8:dec9"]}]}, "teacher has no feature 'dec9'"),
    "two stages, bad teacher size": (lambda t, tmp: ["--teacher", str(t)], {**TWO_STAGE, "distill__teacher_size": [64]},
                                     "teacher_size must be HxW"),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input_is_a_one_line_error_and_leaves_no_run(case, tmp_path, teacher_ckpt, monkeypatch, capsys):
    garbled = teacher_ckpt.parent / "garbled"
    if not garbled.with_suffix(".json").exists():
        garbled.with_suffix(".safetensors").write_bytes(teacher_ckpt.read_bytes())
        garbled.with_suffix(".json").write_text("{not json")
    args, changes, fragment = BAD_CASES[case]
    path = recipe(tmp_path, **changes)
    code, _, err = run_cli(monkeypatch, capsys, "distill", str(path), "--out", str(tmp_path / "run"),
                           *args(teacher_ckpt, tmp_path))
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "run").exists()


def test_runs_are_never_overwritten_and_resume_refuses_changes(tmp_path, teacher_ckpt, monkeypatch, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "mine.txt").write_text("keep me")
    path = recipe(tmp_path)
    code, _, err = run_cli(monkeypatch, capsys, "distill", str(path), "--teacher", str(teacher_ckpt), "--out", str(run))
    assert_one_line_error(code, err, "not empty")
    assert (run / "mine.txt").read_text() == "keep me"
    code, _, err = run_cli(monkeypatch, capsys, "distill", "--resume", "--out", str(run))
    assert_one_line_error(code, err, "no distillation run to resume")
    code, _, err = run_cli(monkeypatch, capsys, "distill", "--resume", "--out", str(run), "--teacher", str(teacher_ckpt))
    assert_one_line_error(code, err, "leave out --teacher")
    with pytest.raises(ConfigError, match="not empty"):  # the Python API never runs over an existing run either
        run_distillation(resolve_distill_config(path, [], teacher=teacher_ckpt), run)
    assert (run / "mine.txt").read_text() == "keep me" and len(list(run.iterdir())) == 1
    with pytest.raises(ConfigError, match="recipe differs"):
        cfg = resolve_distill_config(path, [], teacher=teacher_ckpt)
        run_distillation(cfg, tmp_path / "r2", stop_after=1)
        prepare_distill_run(recipe(tmp_path, train__steps=7), tmp_path / "r2", [], resume=True)
