"""Depth networks: backbones, the model zoo, checkpoints and normalisation folding.

Imports are lazy so that ``import slimdepth.models.backbones`` stays light.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "DepthModel": "slimdepth.models.base",
    "Normalize": "slimdepth.models.base",
    "build_model": "slimdepth.models.zoo",
    "list_models": "slimdepth.models.zoo",
    "fold_normalization": "slimdepth.models.normalize",
    "save_model": "slimdepth.models.checkpoint",
    "load_model": "slimdepth.models.checkpoint",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'slimdepth.models' has no attribute {name!r}")


__all__ = list(_EXPORTS)
