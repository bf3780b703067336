"""Run an exported file on NumPy batches, whatever its runtime: one interface for parity checks,
evaluation and benchmarks.

``load_runner(path, runtime)`` returns a :class:`Runner` whose ``run(batch)`` maps a (1, 3, H, W)
float32 batch in [0, 1] to (1, 1, H, W) depth in metres. Runtimes:

* ``ort`` -- ONNX Runtime, CPU execution provider (``.onnx``, fp32 or int8 QDQ files alike);
* ``openvino`` / ``openvino-bf16`` -- OpenVINO on the CPU, from the IR (``.xml``) or the ONNX
  file, with the inference precision pinned to f32, or bfloat16 (OpenVINO's default on CPUs with
  AVX-512 BF16 or AMX, offered as its own measured option: it changes the output);
* ``litert`` -- the ai-edge-litert interpreter (``.tflite``, XNNPACK); a full-integer file's int8
  input and output are quantized and dequantized here, so it too maps float32 to metres.

Nothing here imports torch, so a benchmark worker timing ONNX Runtime carries no PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from slimdepth.errors import ConfigError, DataError, first_line
from slimdepth.runtime.session import OnnxDepthModel

__all__ = ["FILE_RUNTIMES", "Runner", "load_runner"]

#: runtimes that run an exported file, with the file formats each reads
FILE_RUNTIMES = {"ort": ("onnx",), "openvino": ("openvino", "onnx"), "openvino-bf16": ("openvino", "onnx"),
                 "litert": ("litert",)}


@dataclass
class Runner:
    """An exported model ready to run: ``run(batch) -> depth``; ``input_size`` is ``None`` when dynamic."""

    runtime: str
    path: Path
    run: Callable[[np.ndarray], np.ndarray]
    input_size: tuple[int, int] | None
    metadata: dict[str, Any] | None = None  # what the file says about itself, where the format carries it


def _ort(path: Path, threads: int | None, spinning: bool) -> Runner:
    model = OnnxDepthModel.load(path, threads=threads, spinning=spinning)
    return Runner("ort", path, model.run, model.input_size, model.metadata)


def _openvino(path: Path, threads: int | None, precision: str) -> Runner:
    try:
        import openvino as ov
    except ImportError:
        raise ConfigError("the openvino runtime needs OpenVINO: pip install openvino") from None
    core = ov.Core()
    try:
        model = core.read_model(str(path))
    except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses of its own
        raise DataError(f"{path}: not a readable OpenVINO or ONNX model ({first_line(exc)})") from None
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    compiled = core.compile_model(model, "CPU", config)
    shape = model.inputs[0].get_partial_shape()
    fixed = shape.is_static
    request = compiled.create_infer_request()

    def run(batch: np.ndarray) -> np.ndarray:
        request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
        return np.array(request.get_output_tensor(0).data, copy=True)

    size = (int(shape[2].get_length()), int(shape[3].get_length())) if fixed else None
    return Runner("openvino" if precision == "f32" else "openvino-bf16", path, run, size)


def _litert(path: Path, threads: int | None) -> Runner:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise ConfigError("the litert runtime needs ai-edge-litert: pip install 'slimdepth[deploy]'") from None
    try:
        interpreter = Interpreter(str(path), num_threads=threads or 1)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise DataError(f"{path}: not a readable LiteRT model ({first_line(exc)})") from None
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    # a full-integer (int8) model takes and returns int8 tensors: quantize the image with the
    # input's scale and zero point, and dequantize the depth, so every caller sees float32
    in_scale, in_zero = source["quantization"] if source["dtype"] != np.float32 else (0.0, 0)
    out_scale, out_zero = target["quantization"] if target["dtype"] != np.float32 else (0.0, 0)
    info = np.iinfo(source["dtype"]) if in_scale else None

    def run(batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        if info is not None:
            x = np.clip(np.round(x / in_scale) + in_zero, info.min, info.max).astype(source["dtype"])
        interpreter.set_tensor(source["index"], x)
        interpreter.invoke()
        y = interpreter.get_tensor(target["index"])
        return (y.astype(np.float32) - out_zero) * np.float32(out_scale) if out_scale else y.copy()

    shape = source["shape"]
    return Runner("litert", path, run, (int(shape[2]), int(shape[3])))


def load_runner(path: str | Path, runtime: str, threads: int | None = None, spinning: bool = True) -> Runner:
    """The exported file ``path`` under ``runtime`` (see the module docstring)."""
    path = Path(path)
    if runtime not in FILE_RUNTIMES:
        raise ConfigError(f"unknown runtime {runtime!r} for an exported file; choose from {', '.join(FILE_RUNTIMES)}")
    if not path.is_file():
        raise DataError(f"{path}: no such model file")
    if runtime == "ort":
        return _ort(path, threads, spinning)
    if runtime.startswith("openvino"):
        return _openvino(path, threads, "f32" if runtime == "openvino" else "bf16")
    return _litert(path, threads)
