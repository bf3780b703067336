"""An exported ONNX depth model under ONNX Runtime, with its slimdepth metadata (no torch).

:func:`open_session` turns every problem with the file (missing, not ONNX, truncated, not a
slimdepth export) into a one-line :class:`~slimdepth.errors.DataError` naming it, and
:class:`OnnxDepthModel` runs NCHW float32 batches with the input size checked first, so a
wrong size is an error that says which size the export takes, not an ONNX Runtime trace.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slimdepth.errors import ConfigError, DataError, first_line

__all__ = ["METADATA_KEY", "OnnxDepthModel", "open_session", "session_options"]

#: the ONNX metadata_props entry holding slimdepth's JSON description of the export
METADATA_KEY = "slimdepth"


def session_options(threads: int | None = None, spinning: bool = True) -> Any:
    """ONNX Runtime session options: ``threads`` intra-op threads (all cores when ``None``), one
    inter-op thread, full graph optimisation; ``spinning=False`` stops the pool's busy-waiting
    (it slows other work in the same process)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def open_session(path: str | Path, threads: int | None = None, spinning: bool = True,
                 providers: list[str] | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` for ``path``; file problems are one-line DataErrors."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("running an .onnx model needs onnxruntime: pip install onnxruntime") from None
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such model file")
    try:
        return ort.InferenceSession(str(path), session_options(threads, spinning),
                                    providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception classes for bad files
        raise DataError(f"{path}: not a readable ONNX model ({first_line(exc)})") from None


@dataclass
class OnnxDepthModel:
    """An exported slimdepth model: ``run(batch)`` maps (B, 3, H, W) raw [0, 1] RGB float32 to
    (B, 1, H, W) depth in metres. ``input_size`` is ``None`` for a dynamic-size export."""

    path: Path
    session: Any
    metadata: dict[str, Any] = field(default_factory=dict)
    input_name: str = "image"
    input_size: tuple[int, int] | None = None

    @classmethod
    def load(cls, path: str | Path, threads: int | None = None, spinning: bool = True,
             providers: list[str] | None = None) -> OnnxDepthModel:
        """Open ``path`` and read its metadata and input signature."""
        path = Path(path)
        session = open_session(path, threads, spinning, providers)
        inputs = session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise DataError(f"{path}: not a depth model (expected one NCHW image input, got "
                            f"{[tuple(i.shape) for i in inputs]})")
        raw = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        try:
            metadata = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            raise DataError(f"{path}: its slimdepth metadata is not valid JSON") from None
        shape = inputs[0].shape
        if shape[1] not in (3, "channels") and not isinstance(shape[1], str):
            raise DataError(f"{path}: expects {shape[1]} input channels, not an RGB depth model")
        fixed = all(isinstance(s, int) for s in shape[2:])
        return cls(path, session, metadata, inputs[0].name, (int(shape[2]), int(shape[3])) if fixed else None)

    @property
    def max_depth(self) -> float | None:
        value = self.metadata.get("max_depth")
        return float(value) if value is not None else None

    @property
    def default_size(self) -> tuple[int, int] | None:
        """The size the model takes: the fixed input size, else the size it was exported at."""
        if self.input_size is not None:
            return self.input_size
        size = self.metadata.get("input_size")
        return (int(size[0]), int(size[1])) if size else None

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Depth (B, 1, H, W) metres for a (B, 3, H, W) float32 batch in [0, 1]."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ConfigError(f"model input must be a (B, 3, H, W) RGB batch, got shape {tuple(batch.shape)}")
        if self.input_size is not None and tuple(batch.shape[-2:]) != self.input_size:
            h, w = self.input_size
            raise ConfigError(f"{self.path.name} is a fixed-size export for {h}x{w} inputs, got "
                              f"{batch.shape[-2]}x{batch.shape[-1]}; resize the image (predict does) or export with --dynamic")
        return self.session.run(None, {self.input_name: batch})[0]
