"""A distillation run: resolve the student recipe, run its stages, resume where it stopped.

A distillation run directory is a training run directory (``config.yaml``, ``checkpoints/``,
``metrics.json``, ``log.csv``, ``tb/``, ``samples/``) of the distillation stage, so
``evaluate``, ``compare``, ``prune`` and ``export`` take it, plus ``distill.yaml`` (the whole
resolved recipe, read back by ``--resume``) and, for a two-stage schedule, ``stage1/`` (the
ground-truth-only run, with ``finished.json`` once done). ``teacher_cache/`` holds the cached
teacher outputs when ``distill.cache_teacher`` is on.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from slimdepth.distill.recipe import check_distill_section, stage_configs
from slimdepth.errors import ConfigError
from slimdepth.models.checkpoint import checkpoint_paths, resolve_checkpoint
from slimdepth.train.config import load_config, save_config
from slimdepth.train.run import check_new_run, resolve_config, run_directory

__all__ = ["prepare_distill_run", "resolve_distill_config", "run_distillation"]

RECIPE = "distill.yaml"
Fit = Callable[[Any, str], dict[str, Any]]


def _plain_fit(trainer: Any, label: str) -> dict[str, Any]:
    return trainer.fit()


def _checkpoint_file(spec: str, what: str) -> str:
    """The weights file of a checkpoint or run directory, absolute (a resumed run may start
    elsewhere); a missing or unreadable one is a one-line error now, before any training."""
    if not Path(spec).exists() and not Path(spec).with_suffix(".json").exists():
        raise ConfigError(f"{what} {spec}: no such checkpoint or run directory")
    return str(checkpoint_paths(resolve_checkpoint(spec))[0].resolve())


def resolve_distill_config(recipe: Path | None, overrides: list[str], base: dict[str, Any] | None = None,
                           teacher: str | Path | None = None, unlabeled: str | None = None) -> dict[str, Any]:
    """Student recipe (or ``base``) + defaults + ``--set`` overrides, with the command line's
    teacher and unlabeled data, checked; checkpoint paths made absolute."""
    cfg = resolve_config(recipe, overrides, base)
    cfg["distill"] = dict(cfg.get("distill") or {})
    if teacher is not None:
        cfg["distill"]["teacher"] = str(teacher)
    if unlabeled is not None:
        cfg["distill"]["unlabeled"] = unlabeled
    cfg = check_distill_section(cfg)
    d = cfg["distill"]
    if not d["teacher"]:
        raise ConfigError("no teacher: give --teacher CKPT_OR_RUN (or distill.teacher in the recipe)")
    d["teacher"] = _checkpoint_file(d["teacher"], "teacher")
    if d["init"]:
        d["init"] = _checkpoint_file(d["init"], "distill.init")
    return cfg


def prepare_distill_run(recipe: Path | None, out: Path | None, overrides: list[str], resume: bool,
                        teacher: str | Path | None = None, unlabeled: str | None = None) -> tuple[Path, dict[str, Any]]:
    """The run directory and resolved recipe; never reuses a run without ``resume``."""
    out = run_directory(recipe, out)
    if resume:
        extra = [n for n, v in (("--set", overrides or None), ("--teacher", teacher), ("--unlabeled", unlabeled))
                 if v is not None]
        if extra:
            raise ConfigError(f"--resume continues the run with its saved recipe; leave out {', '.join(extra)}")
        saved = out / RECIPE
        if not saved.is_file():
            raise ConfigError(f"{out}: no distillation run to resume (expected {saved})")
        cfg = resolve_distill_config(None, [], load_config(saved))
        if recipe is not None:
            given = resolve_distill_config(recipe, [], teacher=cfg["distill"]["teacher"],
                                           unlabeled=cfg["distill"]["unlabeled"])
            if given != cfg:
                raise ConfigError(f"{out}: the recipe differs from the one the run started with; resume without a "
                                  "recipe to use the saved one, or start a new run with another --out")
        return out, cfg
    check_new_run(out)
    return out, resolve_distill_config(recipe, overrides, teacher=teacher, unlabeled=unlabeled)


def _best_or_last(run: Path) -> Path:
    best = run / "checkpoints" / "best.safetensors"
    return best if best.is_file() else run / "checkpoints" / "last.safetensors"


def run_distillation(cfg: dict[str, Any], run: Path, resume: bool = False, fit: Fit | None = None,
                     stop_after: int | None = None) -> dict[str, Any]:
    """Run the schedule's stages into ``run`` (continuing finished or stopped ones when
    ``resume``); returns ``{"stage1": ..., "distill": ...}`` with each stage's last validation.
    ``stop_after`` (steps of the stage that is running) simulates a killed run."""
    from slimdepth.distill.trainer import DistillTrainer  # lazy: the trainers pull in torch
    from slimdepth.loader import load_model
    from slimdepth.train.trainer import Trainer

    fit = fit or _plain_fit
    run = Path(run)
    main = os.environ.get("RANK", "0") == "0"  # under torchrun, rank 0 owns the directory
    if not resume and main:
        check_new_run(run)
    created = not run.exists()
    if main:
        run.mkdir(parents=True, exist_ok=True)
        if not resume:
            save_config(cfg, run / RECIPE)
    summary: dict[str, Any] = {}
    stage1, stage2 = stage_configs(cfg)
    init = cfg["distill"]["init"]
    try:
        if stage1 is not None:
            s1 = run / "stage1"
            done = s1 / "finished.json"
            if not done.is_file():
                check_teacher(cfg)  # a teacher that cannot serve fails now, not after stage 1
                s1_resume = (s1 / "checkpoints" / "last.state.json").is_file()
                if not s1_resume and main:
                    _clear_stale(s1)
                trainer = Trainer(stage1, s1, resume=s1_resume, stop_after=stop_after)
                summary["stage1"] = fit(trainer, "stage 1 (ground truth)")
                if trainer.step < trainer.total_steps:
                    return summary  # stopped: --resume continues stage 1
                if trainer.dist.main:
                    done.write_text(json.dumps({"step": trainer.step, "validation": summary["stage1"]}, indent=2) + "\n")
                trainer._barrier()
            init = str(_best_or_last(s1))
        resuming = (run / "checkpoints" / "last.state.json").is_file()
        if not resuming and main:
            _clear_stale(run)  # a stage killed before its first checkpoint starts afresh
        # the initial student (its architecture too: a resumed run then restores its own weights)
        model = load_model(init).train() if init else None
        trainer = DistillTrainer(stage2, run, resume=resuming, stop_after=stop_after, model=model)
        summary["distill"] = fit(trainer, "distillation")
        return summary
    except BaseException:
        # a run that dies before anything worth keeping leaves no directory behind
        if created and main and not any((run / p).exists() for p in ("stage1", "checkpoints")):
            shutil.rmtree(run, ignore_errors=True)
        raise


def _clear_stale(run: Path) -> None:
    """Remove the logs a stage killed before its first checkpoint left (they would be appended to)."""
    for name in ("log.csv", "metrics.json"):
        (run / name).unlink(missing_ok=True)
    for name in ("tb", "samples"):
        shutil.rmtree(run / name, ignore_errors=True)


def check_teacher(cfg: dict[str, Any]) -> None:
    """Load the teacher and pair the terms' levels with the student's, on the CPU: a corrupt
    teacher, a bad ``teacher_size`` or a level either network lacks is a one-line error."""
    from slimdepth.distill.teacher import Teacher
    from slimdepth.distill.terms import build_kd_terms, feature_shapes, parse_kd_terms
    from slimdepth.loader import load_model
    from slimdepth.models.zoo import build_model
    from slimdepth.options import parse_size

    d = cfg["distill"]
    teacher = Teacher(d["teacher"], "cpu", d.get("teacher_size"))
    terms = build_kd_terms(parse_kd_terms(d["terms"]))
    if not any(t.needs_features for t in terms):
        return
    options = dict(cfg["model"])
    options.pop("encoder_weights", None)  # shapes only: no ImageNet weights needed
    student = load_model(d["init"]) if d.get("init") else build_model(options.pop("name"), **options)
    size = parse_size(cfg["data"]["size"], "data.size") if cfg["data"].get("size") else teacher.size_for((192, 640))
    s_shapes = feature_shapes(student, size, torch.device("cpu"))
    t_shapes = feature_shapes(teacher.model, teacher.size_for(size), teacher.device)
    for term in terms:
        term.setup(s_shapes, t_shapes)
