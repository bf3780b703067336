"""Training: run directories, exact resume, DDP with gloo, mixed precision, recipes."""

from __future__ import annotations

import csv
import json
import math
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import slimdepth
from slimdepth.errors import ConfigError
from slimdepth.train.run import prepare_run, resolve_config
from slimdepth.train.trainer import Trainer
from tests.helpers import write_recipe_file

TINY = {
    "model": {"name": "tiny-multires", "max_depth": 80.0},
    "data": {"train": "synthetic,num=16,size=48x160,lidar=false", "val": "synthetic,num=4,size=48x160,split=val,lidar=false",
             "batch_size": 4, "val_batch_size": 4, "workers": 0, "cache": True,
             "augment": [{"op": "hflip", "p": 0.5}, {"op": "color_jitter", "brightness": 0.2}]},
    "loss": {"terms": [{"type": "silog"}, {"type": "gradient", "weight": 0.5}]},
    "schedule": {"warmup_steps": 2},
    "train": {"epochs": 2, "log_every": 1, "checkpoint_every": 3, "samples": 2},
}


def write_recipe(tmp_path: Path, **changes) -> Path:
    return write_recipe_file(tmp_path / "recipe.yaml", TINY, **changes)


def losses(run: Path) -> list[str]:
    return [row["loss"] for row in csv.DictReader((run / "log.csv").open())]


def test_resumed_run_matches_an_uninterrupted_one(tmp_path):
    cfg = resolve_config(write_recipe(tmp_path), [])
    Trainer(cfg, tmp_path / "full").fit()
    Trainer(cfg, tmp_path / "killed", stop_after=3).fit()  # killed mid-epoch, after a checkpoint
    assert len(losses(tmp_path / "killed")) == 3
    Trainer(cfg, tmp_path / "killed", resume=True).fit()
    assert len(losses(tmp_path / "full")) == 8
    assert losses(tmp_path / "killed") == losses(tmp_path / "full")  # bit for bit
    a = load_file(str(tmp_path / "full" / "checkpoints" / "last.safetensors"))
    b = load_file(str(tmp_path / "killed" / "checkpoints" / "last.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_run_directory_holds_everything(tmp_path):
    cfg = resolve_config(write_recipe(tmp_path), ["train.monitor=d1"])
    final = Trainer(cfg, tmp_path / "run").fit()
    run = tmp_path / "run"
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["monitor"] == "d1"
    metrics = json.loads((run / "metrics.json").read_text())
    assert [v["epoch"] for v in metrics["validation"]] == [1, 2]
    assert metrics["validation"][-1] == final
    best = max(metrics["validation"], key=lambda v: v["metrics"]["d1"])  # d1: higher is better
    assert metrics["best"] == best
    info = json.loads((run / "checkpoints" / "best.json").read_text())
    assert info["metadata"]["step"] == best["step"] and info["metadata"]["input_size"] == [48, 160]
    rows = list(csv.DictReader((run / "log.csv").open()))
    assert {"step", "epoch", "loss", "lr", "images_per_s", "silog", "gradient", "grad_norm"} <= set(rows[0])
    assert [int(r["step"]) for r in rows] == list(range(1, 9))
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["epoch_001.png", "epoch_002.png"]
    assert list((run / "tb").glob("events.out.tfevents.*"))
    model = slimdepth.load(run / "checkpoints" / "best.safetensors")
    with torch.no_grad():
        assert model(torch.rand(1, 3, 48, 160)).shape == (1, 1, 48, 160)


def test_learning_happens(tmp_path):
    cfg = resolve_config(write_recipe(tmp_path, train__epochs=6, optim__lr=3e-3), [])
    Trainer(cfg, tmp_path / "run").fit()
    first, last = [json.loads((tmp_path / "run" / "metrics.json").read_text())["validation"][i] for i in (0, -1)]
    assert last["metrics"]["abs_rel"] < first["metrics"]["abs_rel"]
    loss = [float(x) for x in losses(tmp_path / "run")]
    assert sum(loss[-4:]) < sum(loss[:4])


def test_multiscale_segmentation_and_learnable_weights(tmp_path):
    recipe = write_recipe(tmp_path, loss__learnable_weights=True, loss__scale_weights=[0.125, 0.25, 0.5, 1.0],
                          loss__terms=[{"type": "log_berhu"}, {"type": "gradient"}], train__epochs=1)
    cfg = resolve_config(recipe, [])
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.fit()
    row = list(csv.DictReader((tmp_path / "run" / "log.csv").open()))[-1]
    assert "seg" in row and float(row["seg"]) > 0  # the synthetic labels train the segmentation head
    assert any(k.startswith("sigma2/") for k in row)
    assert any(p.grad is not None for p in trainer.criterion.parameters())


def test_mixed_precision_runs_on_cpu_in_bfloat16(tmp_path):
    cfg = resolve_config(write_recipe(tmp_path, train__amp=True, train__steps=2), [])
    Trainer(cfg, tmp_path / "run").fit()
    assert all(float(x) == float(x) for x in losses(tmp_path / "run"))  # finite, not NaN


def test_channels_last_trains_the_same_numbers(tmp_path):
    """channels_last only changes the memory layout: the losses of a short run match the
    contiguous layout's to float tolerance. ``auto`` (the default) turns it on on the CPU too,
    where it trains faster (benchmarks/train_speed.py), and its weights are channels-last."""
    runs = {}
    for setting in (False, "auto"):
        flag = bool(setting)
        cfg = resolve_config(write_recipe(tmp_path, train__channels_last=setting, train__steps=3, train__samples=0), [])
        trainer = Trainer(cfg, tmp_path / f"run{int(flag)}")
        assert trainer.channels_last is flag
        conv = next(m.weight for m in trainer.model.modules()
                    if isinstance(m, torch.nn.Conv2d) and m.weight.shape[1] > 1 and m.kernel_size != (1, 1))
        assert conv.is_contiguous(memory_format=torch.channels_last) is flag
        trainer.fit()
        runs[flag] = [float(x) for x in losses(tmp_path / f"run{int(flag)}")]
    assert len(runs[True]) == 3
    assert runs[True] == pytest.approx(runs[False], rel=1e-4)


def test_recipes_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="train.epochz"):
        resolve_config(write_recipe(tmp_path), ["train.epochz=3"])
    with pytest.raises(ConfigError, match="optim.name"):
        resolve_config(write_recipe(tmp_path), ["optim.name=adam"])
    cfg = resolve_config(write_recipe(tmp_path), ["data.batch_size=64"])
    with pytest.raises(ConfigError, match="batch_size 64 is larger"):
        Trainer(cfg, tmp_path / "run")


def test_runs_are_never_overwritten_and_resume_checks_the_recipe(tmp_path):
    recipe = write_recipe(tmp_path)
    run = tmp_path / "run"
    (run / "notes").mkdir(parents=True)
    with pytest.raises(ConfigError, match="exists and is not empty"):
        prepare_run(recipe, run, [], resume=False)
    with pytest.raises(ConfigError, match="no checkpoint to resume"):
        prepare_run(recipe, run, [], resume=True)
    cfg = resolve_config(recipe, [])
    Trainer(cfg, tmp_path / "done", stop_after=2).fit()
    _, resumed = prepare_run(None, tmp_path / "done", [], resume=True)
    assert resumed == cfg
    changed = tmp_path / "changed"
    changed.mkdir()
    with pytest.raises(ConfigError, match="recipe differs"):
        prepare_run(write_recipe(changed, train__seed=5), tmp_path / "done", [], resume=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_with_gloo_ends_with_identical_weights(tmp_path):
    # learnable loss weights live outside the DDP-wrapped model: their gradients must be averaged too
    recipe = write_recipe(tmp_path, data__batch_size=2, train__epochs=1, train__samples=0, loss__learnable_weights=True)
    script = Path(__file__).parent / "scripts" / "ddp_train.py"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(script), str(recipe), str(tmp_path)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    a, b = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log_var = a["criterion.learnable.log_var"]
    assert log_var.numel() == 2 and not torch.equal(log_var, torch.zeros(2))  # trained, and equal on both ranks
    # each rank took 16 / 2 samples per epoch, 2 per step: 4 steps
    assert (tmp_path / "rank0.steps").read_text().split() == (tmp_path / "rank1.steps").read_text().split()
    assert (tmp_path / "rank0.steps").read_text().split()[0] == "4"
    assert (tmp_path / "run" / "checkpoints" / "best.safetensors").is_file()  # written once, by rank 0


def test_ctrl_c_stops_after_the_current_step_and_resumes_exactly(tmp_path):
    cfg = resolve_config(write_recipe(tmp_path), [])
    Trainer(cfg, tmp_path / "full").fit()
    trainer = Trainer(cfg, tmp_path / "stopped")

    def press_ctrl_c(info):  # what the SIGINT handler does on the first Ctrl-C
        if info["step"] == 5:
            trainer._stop_requested = True

    trainer.progress = press_ctrl_c
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    state = json.loads((tmp_path / "stopped" / "checkpoints" / "last.state.json").read_text())
    assert state["extra"]["step"] == 5  # not a multiple of checkpoint_every: saved on the way out
    Trainer(cfg, tmp_path / "stopped", resume=True).fit()
    assert losses(tmp_path / "stopped") == losses(tmp_path / "full")


def test_a_run_that_fails_before_its_first_checkpoint_leaves_nothing(tmp_path, monkeypatch):
    cfg = resolve_config(write_recipe(tmp_path), [])
    trainer = Trainer(cfg, tmp_path / "run")

    def broken(batch):
        raise RuntimeError("boom")

    monkeypatch.setattr(trainer, "_train_step", broken)
    with pytest.raises(RuntimeError):
        trainer.fit()
    assert not (tmp_path / "run").exists()  # the same command can simply be run again
    existing = tmp_path / "mine"
    existing.mkdir()
    trainer = Trainer(cfg, existing)
    monkeypatch.setattr(trainer, "_train_step", broken)
    with pytest.raises(RuntimeError):
        trainer.fit()
    assert existing.is_dir()  # a directory the run did not create is never removed


def test_bad_values_are_refused_before_any_work(tmp_path):
    recipe = write_recipe(tmp_path)
    for override, fragment in (("train.log_every=0", "log_every"), ("data.workers=-2", "workers"),
                               ("train.monitor=accuracy", "monitor"), ("optim.lr=-1", "optim.lr")):
        with pytest.raises(ConfigError, match=fragment):
            resolve_config(recipe, [override])
    with pytest.raises(ConfigError, match="bad option value"):
        Trainer(resolve_config(recipe, ["model.widths=abc"]), tmp_path / "r")
    with pytest.raises(ConfigError, match="max_depth must be positive"):
        Trainer(resolve_config(recipe, ["model.max_depth=-5"]), tmp_path / "r")
    from slimdepth.errors import DataError

    images = tmp_path / "images"
    import numpy as np

    from slimdepth.fileio import write_rgb

    write_rgb(images / "a.png", np.zeros((48, 160, 3), np.uint8))
    with pytest.raises(DataError, match="no ground-truth depth"):
        Trainer(resolve_config(recipe, [f"data.train=unlabeled:{images}"]), tmp_path / "r")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match="recipe is empty"):
        resolve_config(tmp_path / "empty.yaml", [])
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        prepare_run(recipe, tmp_path / "file", [], resume=False)
    assert not (tmp_path / "r").exists()


def test_resume_refuses_overrides(tmp_path):
    cfg = resolve_config(write_recipe(tmp_path), [])
    Trainer(cfg, tmp_path / "run", stop_after=2).fit()
    with pytest.raises(ConfigError, match="--set would change it"):
        prepare_run(None, tmp_path / "run", ["train.epochs=9"], resume=True)


def test_resume_does_not_need_the_imagenet_weights_file(tmp_path):
    from slimdepth.models.backbones import build_classifier

    weights = tmp_path / "mbv3.pth"
    torch.save(build_classifier("mobilenet_v3_small").state_dict(), weights)
    recipe = write_recipe(tmp_path, model={"name": "litedepth", "variant": "small", "internal_size": None,
                                           "encoder_weights": str(weights)})
    cfg = resolve_config(recipe, [])
    Trainer(cfg, tmp_path / "run", stop_after=2).fit()
    weights.unlink()
    Trainer(cfg, tmp_path / "run", resume=True).fit()  # the checkpoint holds the trained encoder
    assert len(losses(tmp_path / "run")) == 8


def schedule_lr(base: float, step: int, total: int, name: str, warmup: int, start: float, power: float,
                floor: float) -> float:
    """The documented schedule, written out again: linear warm-up from ``start`` over ``warmup``
    steps, then poly (1 - p)^power or half a cosine from 1 down to ``floor`` at step ``total``."""
    if step < warmup:
        return base * (start + (1.0 - start) * step / warmup)
    p = min(1.0, (step - warmup) / (total - warmup))
    shape = (1.0 - p) ** power if name == "poly" else (1.0 + math.cos(math.pi * p)) / 2.0
    return base * (floor + (1.0 - floor) * shape)


@pytest.mark.parametrize("name", ["poly", "cosine"])
def test_every_step_uses_and_logs_the_scheduled_learning_rate(tmp_path, name):
    """Catches the scheduler stepped before the optimizer (every step then uses the next step's
    lr: the first one skips the warm-up start) and a schedule shifted or mis-scaled in the
    trainer: the lr each optimizer step runs with, and the logged ``lr`` column, against the
    schedule's formula. The logged value is read after the step, i.e. the lr of the next step."""
    schedule = {"name": name, "warmup_steps": 3, "warmup_start": 0.1, "power": 0.7, "min_lr_ratio": 0.05}
    cfg = resolve_config(write_recipe(tmp_path, optim__lr=2e-3, schedule=schedule, data__val=None,
                                      train__steps=7, train__samples=0, data__augment=[]), [])
    trainer = Trainer(cfg, tmp_path / "run")
    used: list[list[float]] = []
    trainer.optimizer.register_step_pre_hook(lambda opt, args, kwargs: used.append([g["lr"] for g in opt.param_groups]))
    trainer.fit()
    total = 7
    expected = [schedule_lr(2e-3, k, total, name, 3, 0.1, 0.7, 0.05) for k in range(total + 1)]
    assert expected[0] == pytest.approx(2e-4) and expected[total] == pytest.approx(1e-4)
    assert len(used) == total
    for k, lrs in enumerate(used):  # optimizer step k (0-based) runs with the schedule's lr of step k
        assert lrs == pytest.approx([expected[k]] * len(lrs), rel=1e-12, abs=0), k
    rows = list(csv.DictReader((tmp_path / "run" / "log.csv").open()))
    assert [int(r["step"]) for r in rows] == list(range(1, total + 1))
    for r in rows:  # logged after step s: the lr the scheduler has set for the next step
        assert float(r["lr"]) == pytest.approx(expected[int(r["step"])], rel=1e-12, abs=0), r["step"]
