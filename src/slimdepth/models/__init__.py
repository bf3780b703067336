"""Depth networks: backbones, the model zoo, pruned widths, checkpoints and normalisation folding.

Importing the package registers every architecture of the zoo (each module registers itself
in :data:`slimdepth.models.zoo.MODELS`). ``models/`` knows nothing of the stages above it
(training, compression, distillation, deployment); turning a checkpoint into a model, with
what compression added to it, is :func:`slimdepth.load` (:mod:`slimdepth.loader`).
"""

from __future__ import annotations

from slimdepth.models import fastdepth, litedepth, tiny_multires, unet  # noqa: F401  (registers the zoo)
from slimdepth.models.base import DepthModel, Normalize
from slimdepth.models.checkpoint import save_model
from slimdepth.models.normalize import fold_normalization
from slimdepth.models.zoo import build_model, list_models

__all__ = ["DepthModel", "Normalize", "build_model", "fold_normalization", "list_models", "save_model"]
