"""Distillation (methods 3-5 of the design): frozen teachers, response, feature and affinity
knowledge distillation with auxiliary unlabeled images, one- and two-stage schedules, and
dense pseudo-labels made by teachers or by stereo matching compensated with sparse LiDAR.

Names are imported lazily (``from slimdepth.distill import Teacher``), so importing the
package stays light.
"""

from __future__ import annotations

from slimdepth.lazy import lazy_exports

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
__all__ = sorted(name for names in _EXPORTS.values() for name in names)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
