"""Distillation (methods 3-5 of the design): frozen teachers, response, feature and affinity
knowledge distillation with auxiliary unlabeled images, one- and two-stage schedules, and
dense pseudo-labels made by teachers or by stereo matching compensated with sparse LiDAR.

Names are imported lazily (``from slimdepth.distill import Teacher``), so importing the
package stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "teacher": ("Teacher",),
    "terms": ("KD_TERMS", "KDTerm", "build_kd_terms", "parse_kd_terms"),
    "criterion": ("DistillCriterion",),
    "trainer": ("DistillTrainer",),
    "run": ("prepare_distill_run", "resolve_distill_config", "run_distillation"),
    "recipe": ("DISTILL_DEFAULTS",),
    "stereo": ("compensate", "disparity_to_depth", "label_quality", "sgm_disparity"),
    "pseudo_label": ("pseudo_label", "stereo_depth_label"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
