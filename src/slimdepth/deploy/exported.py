"""An exported file as a PyTorch module, so ``evaluate`` and ``compare`` score the deployed artefact.

``load_exported("model.onnx")`` wraps a :class:`~slimdepth.deploy.runners.Runner`: ``forward``
sends each image of the batch through the runtime (exports take batch 1) and returns depth as
a tensor, so every evaluation convention applies unchanged to the number a user ships.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from slimdepth.deploy.formats import format_of, report_path
from slimdepth.deploy.runners import FILE_RUNTIMES, Runner, load_runner
from slimdepth.errors import ConfigError, DataError

__all__ = ["ExportedModel", "is_exported_file", "load_exported", "load_for_inference"]

#: the runtime that runs each format by default
DEFAULT_RUNTIME = {"onnx": "ort", "openvino": "openvino", "litert": "litert"}


def is_exported_file(path: str | Path) -> bool:
    """Whether ``path`` names an exported model file (by suffix: .onnx, .tflite, .xml)."""
    return format_of(path) is not None


class ExportedModel(nn.Module):
    """A runtime-backed depth model: ``model(x)`` for a (B, 3, H, W) tensor in [0, 1] -> (B, 1, H, W) metres."""

    def __init__(self, runner: Runner, metadata: dict[str, Any]) -> None:
        super().__init__()
        self.runner = runner
        self.metadata = metadata
        self.input_size = runner.input_size
        self.max_depth = float(metadata.get("max_depth", 80.0))
        self.config = {"name": f"{metadata.get('model', 'exported')} ({runner.runtime})"}

    def run_size(self, size: tuple[int, int] | None = None,
                 why: str = "--size cannot change it") -> tuple[int, int] | None:
        """The input size to run this file at: ``size`` if given, else its fixed size, else the size a
        dynamic export was made at (``None``: each image at its own size). A fixed-size export asked
        for another ``size`` is a ConfigError naming the file, ending in ``why``."""
        fixed = self.input_size
        if fixed is not None and size is not None and tuple(size) != tuple(fixed):
            raise ConfigError(f"{self.runner.path} is a fixed-size export for {fixed[0]}x{fixed[1]} inputs; {why}")
        recorded = self.metadata.get("input_size")
        return size or fixed or (tuple(recorded) if recorded else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.detach().cpu().float().numpy()
        depth = np.concatenate([self.runner.run(batch[i:i + 1]) for i in range(batch.shape[0])])
        return torch.from_numpy(depth)


def _metadata(runner: Runner) -> dict[str, Any]:
    """The export's metadata: from the file itself (ONNX, read with its session), else from its
    ``FILE.json`` report."""
    if runner.metadata:
        return runner.metadata
    report = report_path(runner.path)
    if report.is_file():
        try:
            return dict(json.loads(report.read_text()).get("metadata") or {})
        except (json.JSONDecodeError, AttributeError):
            raise DataError(f"{report}: not a valid export report (JSON)") from None
    return {}


def load_exported(path: str | Path, runtime: str | None = None, threads: int | None = None,
                  spinning: bool = True) -> ExportedModel:
    """``path`` (.onnx, .tflite, .xml) under ``runtime`` (default: the format's own) as a module."""
    path = Path(path)
    fmt = format_of(path)
    if fmt is None:
        raise ConfigError(f"{path}: not an exported model file (.onnx, .tflite or .xml)")
    runtime = runtime or DEFAULT_RUNTIME[fmt]
    if fmt not in FILE_RUNTIMES.get(runtime, ()):
        raise ConfigError(f"{path}: a {fmt} file cannot run on the {runtime} runtime")
    runner = load_runner(path, runtime, threads, spinning)
    return ExportedModel(runner, _metadata(runner))


def load_for_inference(path: str | Path, device: str = "cpu",
                       size: tuple[int, int] | None = None) -> tuple[nn.Module, tuple[int, int] | None]:
    """A checkpoint or run directory (a PyTorch model), or an exported file (wrapped, on its own
    runtime), with the input size to run it at: ``size`` if given, else the one it takes or
    records (``None``: each image at its own size). A fixed-size export asked for another ``size``
    is a ConfigError naming the file, before any image is read."""
    if is_exported_file(path):
        model = load_exported(path)
        return model, model.run_size(size)
    from slimdepth.loader import load_model
    from slimdepth.models.checkpoint import model_input_size

    loaded = load_model(path, device)
    return loaded, size or model_input_size(loaded)
