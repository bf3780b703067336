"""slimdepth: lightweight monocular depth estimation.

One RGB image in, metric depth out: compact networks, pruning, distillation, evaluation with
the community's conventions, cost accounting and export. See the README for the CLI.
"""

from __future__ import annotations

from slimdepth.errors import ConfigError, DataError, SlimdepthError

__version__ = "0.1.0"

__all__ = ["ConfigError", "DataError", "SlimdepthError", "__version__"]
