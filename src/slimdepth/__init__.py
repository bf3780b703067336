"""slimdepth: lightweight monocular depth estimation.

One RGB image in, metric depth out: compact networks, pruning, distillation, evaluation with
the community's conventions, cost accounting and export. See the README for the CLI.
"""

from __future__ import annotations

from slimdepth.errors import ConfigError, DataError, SlimdepthError

__version__ = "0.1.0"


def load(path: str, device: str = "cpu"):  # noqa: ANN201 - returns a slimdepth.models.DepthModel
    """Load a model checkpoint (``NAME.safetensors`` + ``NAME.json``) as a ready model in eval mode."""
    from slimdepth.models.checkpoint import load_model

    return load_model(path, device)


__all__ = ["ConfigError", "DataError", "SlimdepthError", "__version__", "load"]
