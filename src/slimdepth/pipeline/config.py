"""The pipeline file: schema, defaults and the checks made before any stage runs.

A pipeline YAML names the stages of "from a latency budget to a shipped model" in their fixed
order (:data:`STAGES`). Each stage key takes one of three forms:

* a mapping -- run the stage with these settings (``skip: true`` switches it off);
* a string -- a path to an existing run (or checkpoint) used *as* the stage: nothing runs, and
  later stages take its model (``teacher: runs/r50``);
* ``null`` -- the stage is off.

A missing key means "off" for the model stages (teacher, student, distill, compress, finetune:
each needs settings to run) and "run with the defaults" for export, evaluate and report. Later
stages take the previous available model along the chain student -> distill -> compress ->
finetune; distill and finetune take the teacher as their teacher.

Every mistake is a one-line :class:`~slimdepth.errors.ConfigError` naming the key (an unknown
key gets a "did you mean"), raised by :func:`resolve_pipeline` before any work. Recipe
overrides (``set:``) are nested mappings merged over the recipe, so the command line reaches
them as ``--set teacher.set.train.steps=2``. This module does not import torch.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from slimdepth.errors import ConfigError
from slimdepth.options import MAX_THREADS, check_number, parse_size, suggest
from slimdepth.train.config import Field, apply_overrides, load_config, merge_defaults, validate_config

__all__ = ["CHAIN", "RUNTIMES", "STAGES", "TRAIN_STAGES", "pipeline_recipe", "resolve_pipeline", "stage_mode",
           "stage_settings"]

#: every stage, in the order it runs
STAGES = ("teacher", "student", "distill", "compress", "finetune", "export", "evaluate", "report")
#: the stages that produce the model the next one starts from (the teacher stands aside)
CHAIN = ("student", "distill", "compress", "finetune")
#: stages trained through the trainer (run under torchrun when ``gpus`` > 1)
TRAIN_STAGES = ("teacher", "student", "distill", "finetune")
#: the runtimes a latency budget can be set on (the prune-to-latency interface's)
RUNTIMES = ("ort", "torch", "openvino", "litert")
#: stages that run with their defaults when the key is absent
_ON_BY_DEFAULT = ("export", "evaluate", "report")

TOP_DEFAULTS: dict[str, Any] = {
    "name": None,
    "gpus": 1,           # > 1: train/distill stages run under torchrun with this many processes
    "budget_ms": None,   # latency budget of the compress stage (ms, batch 1); null: compress by target_macs
    "runtime": "ort",    # the runtime the budget is measured on
    "size": None,        # deployed input HxW (default: the final model's training size)
    "threads": 2,        # runtime threads of the latency measurements
}

STAGE_DEFAULTS: dict[str, dict[str, Any]] = {
    "teacher": {"recipe": None, "set": {}, "skip": False},
    "student": {"recipe": None, "set": {}, "skip": False},
    "distill": {"recipe": None, "set": {}, "unlabeled": None, "skip": False},
    "compress": {"method": "masks", "target_macs": None, "target_latency": None, "steps": 300,
                 "latency_table": None, "max_tries": 4, "data": None, "val": None, "set": {}, "settings": {},
                 "skip": False},
    "finetune": {"steps": 0, "recipe": None, "lr": None, "set": {}, "skip": False},
    "export": {"int8": True, "calib": None, "calib_num": 32, "calib_method": "minmax", "val": None, "val_num": 32,
               "opset": 18, "skip": False},
    "evaluate": {"data": None, "limit": None, "batch_size": 4, "latency": True, "runs": 30, "warmup": 5, "rounds": 5,
                 "skip": False},
    "report": {"real": None, "real_num": 8, "skip": False},
}

_POS_INT = Field(int, min=1)
_SPEC = (str, type(None))
STAGE_SCHEMA: dict[str, dict[str, Any]] = {
    "teacher": {"recipe": str, "set": dict, "skip": bool},
    "student": {"recipe": str, "set": dict, "skip": bool},
    "distill": {"recipe": str, "set": dict, "unlabeled": _SPEC, "skip": bool},
    "compress": {"method": ("masks", "magnitude", "uniform", "gating"),
                 "target_macs": Field(float, nullable=True), "target_latency": Field(float, nullable=True),
                 "steps": _POS_INT, "latency_table": _SPEC, "max_tries": _POS_INT, "data": _SPEC, "val": _SPEC,
                 "set": dict, "settings": dict, "skip": bool},
    "finetune": {"steps": Field(int, min=0, nullable=True), "recipe": _SPEC, "lr": Field(float, min=0.0, nullable=True),
                 "set": dict, "skip": bool},
    "export": {"int8": bool, "calib": _SPEC, "calib_num": _POS_INT, "calib_method": ("minmax", "entropy", "percentile"),
               "val": _SPEC, "val_num": _POS_INT, "opset": Field(int, choices=(17, 18, 19, 20)), "skip": bool},
    "evaluate": {"data": _SPEC, "limit": Field(int, min=1, nullable=True), "batch_size": _POS_INT, "latency": bool,
                 "runs": _POS_INT, "warmup": Field(int, min=0), "rounds": _POS_INT, "skip": bool},
    "report": {"real": _SPEC, "real_num": _POS_INT, "skip": bool},
}
TOP_SCHEMA: dict[str, Any] = {
    "name": _SPEC, "gpus": _POS_INT, "budget_ms": object, "runtime": str, "size": (str, list, type(None)),
    "threads": Field(int, min=1, max=MAX_THREADS), **{stage: object for stage in STAGES},
}
#: the fields the compress stage sets itself (the rest of PruneSettings goes under ``settings:``)
_PRUNE_OWN = ("method", "target_macs", "target_latency", "steps", "latency_table", "max_tries",
              "runtime", "latency_size", "threads")


def stage_mode(cfg: dict[str, Any], stage: str) -> str:
    """``"run"``, ``"given"`` (an existing run stands for the stage) or ``"off"``."""
    value = cfg[stage]
    if isinstance(value, str):
        return "given"
    if value is None or value.get("skip"):
        return "off"
    if stage == "finetune" and not value.get("steps"):
        return "off"  # 0 or absent steps: nothing to fine-tune
    return "run"


def effective_budget(cfg: dict[str, Any]) -> float | None:
    """The latency budget the compress stage aims at (ms): ``compress.target_latency``, else the
    top-level ``budget_ms`` -- ``None`` when compress runs to a MACs budget or does not run."""
    section = cfg.get("compress")
    if stage_mode(cfg, "compress") != "run":
        return None
    if section.get("target_macs") is not None:
        return None
    value = section.get("target_latency") or cfg.get("budget_ms")
    return float(value) if value is not None else None


def stage_settings(cfg: dict[str, Any], stage: str) -> dict[str, Any]:
    """The settings mapping of a stage that runs."""
    value = cfg[stage]
    if not isinstance(value, dict):
        raise ValueError(f"stage {stage} does not run")
    return value


def _read(path: Path | None, base: dict[str, Any] | None) -> dict[str, Any]:
    if path is None:
        return copy.deepcopy(base or {})
    raw = load_config(path)
    if not raw:
        raise ConfigError(f"{path}: the pipeline file is empty (see configs/pipeline_quick.yaml)")
    return raw


def _absolute(path: str, root: Path) -> str:
    """A path in the pipeline file, relative to the working directory, as an absolute path
    (resumed pipelines may run from elsewhere)."""
    return str((root / path).resolve()) if not Path(path).is_absolute() else path


def resolve_pipeline(path: Path | None, overrides: Sequence[str] = (), base: dict[str, Any] | None = None,
                     check_runs: bool = True) -> dict[str, Any]:
    """Pipeline file (or ``base``) + ``--set`` overrides + defaults, checked; paths absolute.

    ``check_runs`` also checks that every given run and recipe file exists (the CLI always does;
    a test of the schema alone may not).
    """
    raw = apply_overrides(_read(path, base), list(overrides))
    where = str(path) if path is not None else "pipeline"
    try:
        validate_config(raw, TOP_SCHEMA)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    cfg = merge_defaults({k: v for k, v in raw.items() if k not in STAGES}, TOP_DEFAULTS)
    if cfg["budget_ms"] is not None:
        cfg["budget_ms"] = check_number(cfg["budget_ms"], f"{where}: budget_ms", low=0, low_open=True,
                                        expected="a positive number of milliseconds")
    if cfg["runtime"] not in RUNTIMES:
        raise ConfigError(f"{where}: unknown runtime {cfg['runtime']!r}{suggest(cfg['runtime'], RUNTIMES)}; "
                          f"choose from {', '.join(RUNTIMES)}")
    if cfg["size"] is not None:
        cfg["size"] = list(parse_size(cfg["size"], f"{where}: size"))
    root = Path.cwd()
    for stage in STAGES:
        value = raw.get(stage, {} if stage in _ON_BY_DEFAULT else None)
        cfg[stage] = _resolve_stage(stage, value, where, root, check_runs)
    _check_chain(cfg, where)
    return cfg


def _resolve_stage(stage: str, value: Any, where: str, root: Path, check_runs: bool) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        if stage in _ON_BY_DEFAULT:
            raise ConfigError(f"{where}: {stage} cannot be given as a run; give its settings, or null to switch it off")
        if not value.strip():
            raise ConfigError(f"{where}: {stage} is an empty path; give a run directory, or null to switch it off")
        given = _absolute(value, root)
        if check_runs and not Path(given).exists():
            raise ConfigError(f"{where}: stage {stage}: {value}: no such run directory or checkpoint")
        return given
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {stage} must be a mapping of settings, a run path or null, got {value!r}")
    try:
        validate_config({stage: value}, {stage: STAGE_SCHEMA[stage]})
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    section = merge_defaults(value, STAGE_DEFAULTS[stage])
    if section["skip"]:
        return section
    if stage in ("teacher", "student", "distill"):
        if not section["recipe"]:
            raise ConfigError(f"{where}: {stage}.recipe is missing (a training recipe such as configs/quickstart.yaml)")
    if section.get("recipe"):
        section["recipe"] = _absolute(section["recipe"], root)
        if check_runs:
            load_config(section["recipe"])  # missing or broken recipe: its one-line error now
    if stage == "compress":
        _check_compress(section, where)
    return section


def _check_compress(section: dict[str, Any], where: str) -> None:
    if section["target_macs"] is not None:
        check_number(section["target_macs"], f"{where}: compress.target_macs", low=0, low_open=True, high=1,
                     expected="in (0, 1] (the fraction of MACs to keep)")
    if section["target_latency"] is not None:
        check_number(section["target_latency"], f"{where}: compress.target_latency", low=0, low_open=True,
                     expected="a positive number of milliseconds")
    if section["target_macs"] is not None and section["target_latency"] is not None:
        raise ConfigError(f"{where}: compress: give target_macs or target_latency (or the top-level budget_ms), not both")
    from slimdepth.compress.prune import PruneSettings  # lazy: torch; only when a pipeline compresses

    known = {f.name for f in dataclasses.fields(PruneSettings)}
    for key in section["settings"]:
        if key in _PRUNE_OWN:
            raise ConfigError(f"{where}: compress.settings.{key}: set it as compress.{key} (or at the top level)")
        if key not in known:
            choices = sorted(known - set(_PRUNE_OWN))
            raise ConfigError(f"{where}: unknown key 'compress.settings.{key}'"
                              f"{suggest(key, choices, prefix='compress.settings.')}; accepted: {', '.join(choices)}")


def _check_chain(cfg: dict[str, Any], where: str) -> None:
    """The stages that need a model before them have one."""
    modes = {stage: stage_mode(cfg, stage) for stage in STAGES}
    has_teacher = modes["teacher"] != "off"
    for stage in ("distill", "finetune"):
        if modes[stage] == "run" and not has_teacher:
            raise ConfigError(f"{where}: {stage} needs a teacher: add a teacher stage (a recipe or a run path)")
    if modes["compress"] == "run":
        if not any(modes[s] != "off" for s in ("student", "distill")):
            raise ConfigError(f"{where}: compress needs a model to compress: add a student or distill stage")
        c = cfg["compress"]
        if c["target_macs"] is None and c["target_latency"] is None and cfg["budget_ms"] is None:
            raise ConfigError(f"{where}: compress needs a budget: budget_ms at the top level, or compress.target_macs")
    if modes["finetune"] == "run":
        if modes["compress"] == "off" and not any(modes[s] != "off" for s in ("student", "distill")):
            raise ConfigError(f"{where}: finetune needs a model: add a compress, distill or student stage")
        if not cfg["finetune"]["recipe"] and modes["distill"] != "run" and modes["student"] != "run":
            raise ConfigError(f"{where}: finetune.recipe is needed when neither distill nor student runs a recipe")
    if modes["export"] == "run" and not any(modes[s] != "off" for s in CHAIN):
        raise ConfigError(f"{where}: export needs a model: add a student, distill, compress or finetune stage")


def pipeline_recipe(cfg: dict[str, Any], stage: str) -> dict[str, Any]:
    """A training stage's recipe: its recipe file with the stage's ``set:`` merged over it,
    resolved against the trainer's defaults and checked (the distill section too)."""
    from slimdepth.train.run import resolve_config  # lazy: the trainer's defaults pull in the metric keys

    section = stage_settings(cfg, stage)
    raw = merge_defaults(section["set"], load_config(section["recipe"]))
    try:
        return resolve_config(None, [], raw)
    except ConfigError as exc:
        raise ConfigError(f"{stage} ({section['recipe']}): {exc}") from None
