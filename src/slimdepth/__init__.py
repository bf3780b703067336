"""slimdepth: lightweight monocular depth estimation.

One RGB image in, metric depth out: compact networks, pruning, distillation, evaluation with
the community's conventions, cost accounting and export. See the README for the CLI.

Importing the package is light (no torch): :func:`load` imports the model machinery when called.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from slimdepth.errors import ConfigError, DataError, SlimdepthError
from slimdepth.version import __version__

if TYPE_CHECKING:
    import torch

    from slimdepth.models.base import DepthModel


def load(path: str | Path, device: str | torch.device = "cpu") -> DepthModel:
    """Load a model checkpoint (``NAME.safetensors`` + ``NAME.json``, or a run directory) as a
    ready model in eval mode; see :func:`slimdepth.loader.load_model`."""
    from slimdepth.loader import load_model  # lazy: `import slimdepth` (and the CLI's --help) stays light

    return load_model(path, device)


__all__ = ["ConfigError", "DataError", "SlimdepthError", "__version__", "load"]
