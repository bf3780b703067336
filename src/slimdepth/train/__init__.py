"""Reusable pieces of the trainer: configs, optimizers and schedules, resumable state, sampling.

Names are imported lazily, so ``slimdepth.train.config`` (which needs no torch) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from slimdepth.lazy import lazy_exports

_EXPORTS = {
    "config": ("Field", "apply_overrides", "load_config", "merge_defaults", "parse_value", "save_config",
               "validate_config"),
    "optim": ("build_optimizer", "build_scheduler", "clip_gradients", "decay_param_groups", "lr_factor"),
    "state": ("capture_rng_state", "load_training_state", "restore_rng_state", "save_training_state",
              "training_state_paths"),
    "sampler": ("ResumableSampler", "sample_seed"),
}
__all__ = [
    "Field", "ResumableSampler", "apply_overrides", "build_optimizer", "build_scheduler", "capture_rng_state",
    "clip_gradients", "decay_param_groups", "load_config", "load_training_state", "lr_factor", "merge_defaults",
    "parse_value", "restore_rng_state", "sample_seed", "save_config", "save_training_state", "training_state_paths",
    "validate_config",
]

if TYPE_CHECKING:
    from slimdepth.train.config import (Field, apply_overrides, load_config, merge_defaults, parse_value,
                                        save_config, validate_config)
    from slimdepth.train.optim import build_optimizer, build_scheduler, clip_gradients, decay_param_groups, lr_factor
    from slimdepth.train.sampler import ResumableSampler, sample_seed
    from slimdepth.train.state import (capture_rng_state, load_training_state, restore_rng_state,
                                       save_training_state, training_state_paths)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
