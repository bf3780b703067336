"""The deployment formats and what an exported file says about itself.

An export is one model file (``.onnx``, ``.tflite``, or OpenVINO's ``.xml`` + ``.bin``) and a
``FILE.json`` report beside it. Every export reads the raw [0, 1] RGB image, NCHW float32, and
returns depth in metres at the input size; :func:`export_metadata` is the description the ONNX
file carries in its ``metadata_props`` (and every report repeats): zoo name and options with the
pruned widths, input size, output unit, max depth, slimdepth version and the source checkpoint's
SHA-256.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from slimdepth.errors import ConfigError
from slimdepth.options import suggest
from slimdepth.version import __version__

__all__ = ["FORMATS", "SUFFIXES", "export_metadata", "file_sha256", "format_of", "model_bytes", "report_path"]

#: export format -> the model file's suffix
SUFFIXES = {"onnx": ".onnx", "litert": ".tflite", "openvino": ".xml"}
FORMATS = tuple(SUFFIXES)


def check_format(fmt: str) -> str:
    """``fmt`` if it is an export format, else a ConfigError listing them."""
    if fmt not in SUFFIXES:
        raise ConfigError(f"unknown export format {fmt!r}{suggest(str(fmt), FORMATS)}; choose from {', '.join(FORMATS)}")
    return fmt


def format_of(path: str | Path) -> str | None:
    """The format of an exported file, by its suffix (``None`` for anything else)."""
    suffix = Path(path).suffix.lower()
    return next((fmt for fmt, s in SUFFIXES.items() if s == suffix), None)


def report_path(path: str | Path) -> Path:
    """The JSON report written beside an exported file: ``FILE.json`` (``model.onnx.json``)."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def model_bytes(path: str | Path) -> int:
    """What an exported model takes on disk, in bytes: the file, plus the ``.bin`` weights beside
    an OpenVINO ``.xml``."""
    path = Path(path)
    weights = path.with_suffix(".bin") if format_of(path) == "openvino" else None
    return path.stat().st_size + (weights.stat().st_size if weights is not None and weights.is_file() else 0)


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def export_metadata(config: dict[str, Any], size: tuple[int, int], dynamic: bool, source: Path | None,
                    extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The description an exported file carries (``config``: the model's ``config``)."""
    options = {k: v for k, v in config.items() if k not in ("name", "encoder_weights")}
    return {
        "format": "slimdepth-export/1",
        "model": config.get("name"),
        "options": options,
        "input": "image: float32 NCHW, RGB in [0, 1] (not normalised: the normalisation is folded in)",
        "input_size": list(size),
        "dynamic_size": bool(dynamic),
        "output": "depth: float32 N x 1 x H x W at the input size",
        "unit": "metres",
        "max_depth": float(config.get("max_depth", 80.0)),
        "slimdepth_version": __version__,
        "source": str(source) if source is not None else f"zoo:{config.get('name')} (random weights)",
        "source_sha256": file_sha256(source) if source is not None else None,
        **(extra or {}),
    }
