"""Model checkpoints: ``NAME.safetensors`` (tensors) + ``NAME.json`` (how to rebuild the model).

The JSON sidecar holds the zoo name and constructor options (and, after compression, the
changed layer widths and the gating), plus free-form metadata (training config, input size,
metrics). This module writes and reads both files and checks what it reads; rebuilding the
model a sidecar describes is :func:`slimdepth.loader.load_model` (``slimdepth.load``), which
knows the stages above ``models/`` that may have changed it. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from slimdepth.errors import ConfigError, DataError
from slimdepth.fileio import atomic_path
from slimdepth.models.base import DepthModel
from slimdepth.models.widths import WIDTHS_KEY, record_widths
from slimdepth.options import parse_size
from slimdepth.version import __version__

__all__ = ["FORMAT", "FORMAT_VERSION", "checkpoint_paths", "load_state_strict", "model_input_size", "read_sidecar",
           "read_weights", "resolve_checkpoint", "save_model", "write_sidecar"]

FORMAT = "slimdepth-model"
FORMAT_VERSION = 1


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint from a checkpoint file, its stem, or a run directory (its best, else last)."""
    path = Path(path)
    if path.is_dir():
        for tag in ("best", "last"):
            candidate = path / "checkpoints" / f"{tag}.safetensors"
            if candidate.is_file():
                return candidate
        raise DataError(f"{path}: no checkpoints/best.safetensors or last.safetensors in this run directory")
    weights, sidecar = checkpoint_paths(path)
    if not weights.exists() and not sidecar.exists():
        raise DataError(f"{path}: no such checkpoint (NAME.safetensors + NAME.json) or run directory")
    return weights


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """The (weights, sidecar) pair of a checkpoint given either file or their common stem."""
    path = Path(path)
    if path.suffix in (".safetensors", ".json"):
        path = path.with_suffix("")
    return path.with_suffix(".safetensors"), path.with_suffix(".json")


def save_model(model: DepthModel, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``model`` to ``path`` (.safetensors + .json); returns the weights path.

    The weights are written first and the sidecar last, each atomically, so a sidecar never
    describes weights that are not there.
    """
    weights, _ = checkpoint_paths(path)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(weights) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
    write_sidecar(model, path, metadata)
    return weights


def write_sidecar(model: DepthModel, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write only the JSON description of ``model`` (for weights saved by another writer)."""
    _, sidecar = checkpoint_paths(path)
    config = {k: v for k, v in model.config.items() if k != WIDTHS_KEY}
    widths = record_widths(model)  # the layers whose widths compression changed ({} otherwise)
    if widths:
        config[WIDTHS_KEY] = widths
    info = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "slimdepth_version": __version__,
        "model": config,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "metadata": metadata or {},
    }
    with atomic_path(sidecar) as tmp:
        tmp.write_text(json.dumps(info, indent=2, default=str) + "\n")
    return sidecar


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """The parsed JSON sidecar of a checkpoint (validated)."""
    _, sidecar = checkpoint_paths(path)
    if not sidecar.is_file():
        raise DataError(f"{sidecar}: checkpoint description not found (a slimdepth checkpoint is NAME.safetensors + NAME.json)")
    try:
        info = json.loads(sidecar.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{sidecar}: unreadable checkpoint description ({type(exc).__name__})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT or not isinstance(info.get("model"), dict):
        raise DataError(f"{sidecar}: not a slimdepth model checkpoint")
    if not isinstance(info.get("metadata", {}), dict):
        raise DataError(f"{sidecar}: 'metadata' must be a JSON object")
    return info


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint's ``.safetensors`` file (a one-line error naming it when unreadable)."""
    weights, _ = checkpoint_paths(path)
    if not weights.is_file():
        raise DataError(f"{weights}: checkpoint weights not found")
    try:
        return load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataError(f"{weights}: unreadable weights ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


def check_metadata(info: dict[str, Any], sidecar: Path) -> None:
    """Check the metadata fields other stages trust (the training ``input_size``), naming the file."""
    size = info.get("metadata", {}).get("input_size")
    if size is not None:
        try:
            parse_size(size, "metadata.input_size")
        except ConfigError as exc:
            raise DataError(f"{sidecar}: {exc}") from None


def model_input_size(model: torch.nn.Module, size: str | None = None, what: str = "--size") -> tuple[int, int] | None:
    """``size`` (an ``HxW`` option named ``what``) when given, else the training input size the
    model's checkpoint records, else ``None`` (each image at its own size)."""
    if size:
        return parse_size(size, what)
    recorded = getattr(model, "checkpoint_info", {}).get("metadata", {}).get("input_size")
    return parse_size(recorded, "the checkpoint's input_size") if recorded is not None else None


def load_state_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Load ``state`` into ``model`` requiring the same keys and shapes; name what differs
    (``where``: the file the tensors came from)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                parts.append(f"{len(keys)} {label} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})")
        raise DataError(f"{where}: weights do not fit the architecture: {'; '.join(parts)}")
    model.load_state_dict(state, strict=True)
