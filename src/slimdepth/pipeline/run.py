"""The pipeline driver: stages in order, their status in ``DIR/pipeline.json``, resume.

``DIR/pipeline.yaml`` is the resolved pipeline as run (read back by ``--resume``);
``DIR/pipeline.json`` records, per stage, ``status`` (``done``, ``running`` or ``skipped``),
``run`` (its directory, or the given run), ``given``, ``kind`` and a ``summary``. It is
rewritten atomically whenever a stage starts or ends, so a pipeline killed at any point resumes:
``done`` stages are skipped (their models reused), a ``running`` one continues through its own
resume machinery, the rest run. A new pipeline never writes into a directory that holds anything.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slimdepth.errors import ConfigError, DataError
from slimdepth.fileio import atomic_path, read_json
from slimdepth.pipeline.budget import budget_table
from slimdepth.pipeline.config import STAGES, effective_budget, resolve_pipeline, stage_mode
from slimdepth.pipeline.stages import STAGE_FUNCTIONS, STAGE_KINDS, Context, Fit, deploy_size, prune_settings
from slimdepth.train.config import load_config, save_config

__all__ = ["CONFIG_FILE", "STATUS_FILE", "prepare_pipeline", "read_status", "run_pipeline"]

CONFIG_FILE = "pipeline.yaml"
STATUS_FILE = "pipeline.json"
#: stages whose result is a model the later stages take
_MODEL_STAGES = ("teacher", "student", "distill", "compress", "finetune")


def read_status(out: Path) -> dict[str, Any]:
    """``DIR/pipeline.json`` (a one-line error when it is missing or damaged)."""
    path = Path(out) / STATUS_FILE
    if not path.is_file():
        raise ConfigError(f"{out}: not a pipeline directory (no {STATUS_FILE})")
    status = read_json(path, "pipeline status")
    if not isinstance(status, dict) or not isinstance(status.get("stages"), dict):
        raise DataError(f"{path}: not a slimdepth pipeline status")
    return status


def _write_status(out: Path, status: dict[str, Any]) -> None:
    with atomic_path(out / STATUS_FILE) as tmp:
        tmp.write_text(json.dumps(status, indent=2, default=float) + "\n")


def prepare_pipeline(path: Path | None, out: Path, overrides: list[str], resume: bool) -> dict[str, Any]:
    """The resolved pipeline to run into ``out``; refuses a non-empty ``out`` without ``resume``,
    and with it, a pipeline file or override that changes the saved one."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory; choose another --out")
    if resume:
        saved = out / CONFIG_FILE
        if not saved.is_file() or not (out / STATUS_FILE).is_file():
            raise ConfigError(f"{out}: no pipeline to resume (expected {saved} and {out / STATUS_FILE})")
        read_status(out)
        cfg = resolve_pipeline(None, [], load_config(saved))
        if path is not None or overrides:
            given = resolve_pipeline(path, overrides, None if path is not None else load_config(saved))
            if given != cfg:
                raise ConfigError(f"{out}: the pipeline differs from the one it started with; resume without "
                                  "a pipeline file or --set to use the saved one, or start anew with another --out")
        return cfg
    if path is None:
        raise ConfigError("give a pipeline file (e.g. configs/pipeline_quick.yaml), or --resume --out DIR")
    cfg = resolve_pipeline(path, overrides)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: exists and is not empty; pass --resume to continue its pipeline or choose another --out")
    return cfg


def run_pipeline(cfg: dict[str, Any], out: Path, resume: bool = False, *, log: Callable[[str], None] = print,
                 fit: Fit | None = None, stop_after: tuple[str, int] | None = None) -> dict[str, Any]:
    """Run the stages of ``cfg`` into ``out`` (continuing it when ``resume``); returns the status.

    ``fit(trainer, label)`` runs a training stage (the CLI's draws a progress bar); ``stop_after``
    (stage, steps) stops that training stage early, as a killed run would, leaving it "running".
    """
    out = Path(out)
    status = read_status(out) if resume else {"stages": {}}
    ctx = Context(cfg, out, log=log, stop_after=stop_after, **({"fit": fit} if fit is not None else {}))
    if stage_mode(cfg, "compress") == "run" and (status["stages"].get("compress") or {}).get("status") != "done":
        prune_settings(ctx)  # bad prune settings (or a latency budget this build cannot prune to) fail before any work
    if not resume:
        if out.exists() and any(out.iterdir()):
            raise ConfigError(f"{out}: exists and is not empty; pass --resume to continue it or choose another --out")
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / CONFIG_FILE)
    status.update(budget_ms=effective_budget(cfg), runtime=cfg["runtime"], size=cfg["size"], threads=cfg["threads"])
    if stage_mode(cfg, "compress") == "run" and (status["stages"].get("compress") or {}).get("status") != "done":
        try:  # the latency table before any training: an impossible budget is refused now
            budget_table(ctx)
        except ConfigError:
            if not resume:  # everything in it was made just now: leave no half-made directory
                shutil.rmtree(out, ignore_errors=True)
            raise
    stages: dict[str, Any] = status["stages"]
    for stage in STAGES:
        mode = stage_mode(cfg, stage)
        entry = stages.get(stage) or {}
        kind = STAGE_KINDS[stage]
        if mode == "off":
            stages[stage] = {"status": "skipped", "run": None, "given": False, "kind": kind,
                             "summary": {"note": "switched off in the pipeline file"}}
            log(f"{stage}: off")
            continue
        if mode == "given":
            run = cfg[stage]
            stages[stage] = {"status": "done", "run": run, "given": True, "kind": kind, "summary": {}}
            ctx.models[stage] = run
            log(f"{stage}: given run {run}")
            _write_status(out, status)
            continue
        run_dir = out / stage
        if entry.get("status") == "done":
            log(f"{stage}: done, skipped")
            if stage in _MODEL_STAGES:
                ctx.models[stage] = str(run_dir.resolve())
            _after(ctx, stage, status)
            continue
        continuing = entry.get("status") == "running"
        log(f"{stage}: {'continuing' if continuing else 'running'} ({kind})")
        stages[stage] = {"status": "running", "run": str(run_dir.resolve()), "given": False, "kind": kind,
                         "summary": {}}
        _write_status(out, status)
        started = time.monotonic()
        finished, summary = STAGE_FUNCTIONS[stage](ctx, stage)
        stages[stage]["summary"] = summary
        # wall-clock seconds of this stage, summed over resumed sessions
        stages[stage]["elapsed_s"] = float(entry.get("elapsed_s", 0.0)) + time.monotonic() - started
        if not finished:
            _write_status(out, status)
            log(f"{stage}: stopped before its end; `slimdepth pipeline --resume --out {out}` continues it")
            return status
        stages[stage]["status"] = "done"
        if stage in _MODEL_STAGES:
            ctx.models[stage] = str(run_dir.resolve())
        _after(ctx, stage, status)
        _write_status(out, status)
    log(f"pipeline done: {out / STATUS_FILE}")
    return status


def _after(ctx: Context, stage: str, status: dict[str, Any]) -> None:
    """Record what later stages and readers need once ``stage`` is done: the deployed size."""
    if stage in ("export", "evaluate") and ctx.size is None:
        size = status["stages"][stage]["summary"].get("size")
        ctx.size = list(size) if size else deploy_size(ctx, ctx.previous_model("export"))
        status["size"] = ctx.size
