"""The ``distill:`` section of a student recipe: defaults, schema and the stage recipes.

::

    distill:
      teacher: runs/r18              # checkpoint or run directory (--teacher overrides)
      teacher_size: null             # HxW the teacher runs at (default: its training size)
      terms:                         # the distillation terms (slimdepth.distill.terms)
        - {type: response, weight: 1.0, kind: silog}
        - {type: affinity, weight: 10.0, levels: [dec16, dec8, dec4], mask: true, pool: null}
        - {type: feature, weight: 1.0, levels: [dec8]}
      unlabeled: null                # dataset spec of auxiliary images (--unlabeled overrides)
      unlabeled_ratio: 0.5           # share of every batch taken from the unlabeled images
      cache_teacher: false           # keep the teacher's outputs on disk (needs data.augment: [])
      schedule: one_stage            # or two_stage (LiteDepth): stage 1 ground truth only
      init: null                     # start the student from this checkpoint (a trained student)
      stage2: {steps: null, lr: null, warmup_steps: null}   # two_stage: stage 2's length and lr

One-stage trains the student with ground truth + distillation from the start. Two-stage first
trains it on ground truth alone for the recipe's ``train`` length (``RUN/stage1``), then
fine-tunes that from its best checkpoint with ground truth + distillation for ``stage2.steps``
at ``stage2.lr`` (default: a tenth of the recipe's) into ``RUN`` itself.
"""

from __future__ import annotations

import copy
from typing import Any

from slimdepth.distill.terms import build_kd_terms, parse_kd_terms
from slimdepth.errors import ConfigError
from slimdepth.train.config import Field, merge_defaults, validate_config

__all__ = ["DISTILL_DEFAULTS", "DISTILL_SCHEMA", "check_distill_section", "stage_configs"]

DISTILL_DEFAULTS: dict[str, Any] = {
    "teacher": None,
    "teacher_size": None,
    "terms": [{"type": "response", "weight": 1.0}],
    "unlabeled": None,
    "unlabeled_ratio": 0.5,
    "cache_teacher": False,
    "schedule": "one_stage",
    "init": None,
    "stage2": {"steps": None, "lr": None, "warmup_steps": None},
}

DISTILL_SCHEMA: dict[str, Any] = {
    "teacher": (str, type(None)),
    "teacher_size": (str, list, type(None)),
    "terms": list,
    "unlabeled": (str, dict, type(None)),
    "unlabeled_ratio": Field(float, min=0.0, max=0.95),
    "cache_teacher": bool,
    "schedule": ("one_stage", "two_stage"),
    "init": (str, type(None)),
    "stage2": {"steps": Field(int, min=1, nullable=True), "lr": Field(float, min=0.0, nullable=True),
               "warmup_steps": Field(int, min=0, nullable=True)},
}


def check_distill_section(cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with its ``distill`` section completed from the defaults and checked."""
    section = cfg.get("distill")
    if section is not None and not isinstance(section, dict):
        raise ConfigError(f"'distill' must be a mapping, got {type(section).__name__}")
    out = dict(cfg)
    out["distill"] = merge_defaults(section or {}, DISTILL_DEFAULTS)
    validate_config({"distill": out["distill"]}, {"distill": DISTILL_SCHEMA})
    d = out["distill"]
    build_kd_terms(parse_kd_terms(d["terms"]))  # bad term options fail now, not after stage 1
    if d["schedule"] == "two_stage":
        if not d["stage2"]["steps"]:
            raise ConfigError("distill.schedule two_stage needs distill.stage2.steps (the length of the distillation stage)")
        if d["init"]:
            raise ConfigError("distill.init starts from a trained student, which replaces stage 1: use schedule one_stage")
    if not d["terms"]:
        raise ConfigError("distill.terms is empty: nothing to distil (add a response, feature or affinity term)")
    if d["unlabeled"] and not d["unlabeled_ratio"] > 0:
        raise ConfigError("distill.unlabeled is given but distill.unlabeled_ratio is 0: no batch would take its images")
    return out


def stage_configs(cfg: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(stage 1 recipe or None, distillation stage recipe) of a resolved distillation recipe.

    Stage 1 is the recipe without its ``distill`` section (ground truth only). The
    distillation stage of a two-stage schedule takes ``stage2``'s steps, learning rate
    (default: a tenth of the recipe's) and warm-up (default: the recipe's).
    """
    d = cfg["distill"]
    if d["schedule"] == "one_stage":
        return None, cfg
    stage1 = copy.deepcopy(cfg)
    stage1["distill"] = None
    stage2 = copy.deepcopy(cfg)
    s2 = d["stage2"]
    stage2["train"]["steps"] = int(s2["steps"])
    stage2["optim"]["lr"] = float(s2["lr"]) if s2["lr"] is not None else 0.1 * float(cfg["optim"]["lr"])
    if s2["warmup_steps"] is not None:
        stage2["schedule"]["warmup_steps"] = int(s2["warmup_steps"])
        stage2["schedule"]["warmup_ratio"] = None
    return stage1, stage2
