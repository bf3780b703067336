"""INT8 for ONNX and LiteRT: static quantization calibrated on real images.

**ONNX** -- ONNX Runtime static quantization (QDQ).

Static, not dynamic: dynamic quantization computes activation scales at run time and handles
depthwise convolutions badly. Weights are int8, symmetric, per output channel; activations are
uint8 (ONNX Runtime's fast U8S8 path on x86, VNNI included), with scales from ``--calib-num``
images of ``--calib`` through MinMax, Entropy or Percentile calibration. The depth head -- the
last convolution and everything after it (activation, the final resize) -- stays float: a uint8
depth map would have only 256 levels (0.3 m steps over 80 m). The report compares the int8 file
with the fp32 one: delta1, AbsRel and RMSE on ``--val`` (default: the calibration dataset), and
the latency of both, each timed in its own process.

**LiteRT** -- ``ai-edge-quantizer``'s static recipe (``static_wi8_ai8``: int8 weights per channel,
int8 activations, MinMax ranges from the same calibration images) applied to the fp32 ``.tflite``
that litert-torch converted. The result is a *full-integer* model, the kind phone NPUs and the
Edge TPU run: its input and output tensors are int8 too (the quantizer offers no float input or
output here), so the runner quantizes the image and dequantizes the depth, and the depth map
has 256 levels over the calibrated output range (0.3 m steps at 80 m) -- the report measures
what that costs. Only MinMax calibration is offered for LiteRT.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from slimdepth.errors import ConfigError, DataError, first_line
from slimdepth.options import suggest

__all__ = ["CALIBRATION_METHODS", "INT8_OPS", "calibration_batches", "check_calibration_method", "head_nodes", "quantize_export",
           "quantize_litert", "quantize_onnx"]

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
#: which ONNX ops get int8 kernels: every op ONNX Runtime quantizes, or the convolutions alone
#: (activations, SE gates and element-wise ops stay float; see the module docstring)
INT8_OPS = ("all", "conv")


def check_calibration_method(method: str, fmt: str = "onnx", ops: str = "all") -> str:
    """``method`` if it is one of :data:`CALIBRATION_METHODS` (LiteRT: minmax only) and ``ops`` one
    of :data:`INT8_OPS` (ONNX only), else a ConfigError."""
    if ops not in INT8_OPS:
        raise ConfigError(f"unknown --int8-ops {ops!r}{suggest(str(ops), INT8_OPS)}; choose from {', '.join(INT8_OPS)}")
    if fmt == "litert" and ops != "all":
        raise ConfigError(f"--int8-ops {ops} is offered for ONNX; LiteRT int8 quantizes every op it can")
    if method not in CALIBRATION_METHODS:
        raise ConfigError(f"unknown calibration method {method!r}{suggest(str(method), CALIBRATION_METHODS)}; "
                          f"choose from {', '.join(CALIBRATION_METHODS)}")
    if fmt == "litert" and method != "minmax":
        raise ConfigError(f"--calib-method {method} is offered for ONNX; LiteRT int8 calibrates with minmax")
    return method


def calibration_batches(spec: str, size: tuple[int, int], count: int) -> list[np.ndarray]:
    """``count`` images of dataset ``spec`` (every k-th, spread over it), each resized to ``size``
    as (1, 3, H, W) float32 in [0, 1]: what the exported model sees at run time."""
    from slimdepth.data.registry import build_dataset
    from slimdepth.runtime.resize import resize_bilinear

    dataset = build_dataset(spec)
    if len(dataset) == 0:
        raise DataError(f"--calib {spec}: the dataset has no images")
    picks = np.unique(np.linspace(0, len(dataset) - 1, min(count, len(dataset))).round().astype(int))
    return [resize_bilinear(dataset[int(i)]["image"].numpy(), size)[None] for i in picks]


def head_nodes(model: Any) -> list[str]:
    """Names of the nodes from the last Conv to the output: the depth head, kept in float."""
    producers = {out: node for node in model.graph.node for out in node.output}
    keep: list[str] = []
    frontier = [o.name for o in model.graph.output]
    seen: set[str] = set()
    while frontier:
        node = producers.get(frontier.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        keep.append(node.name)
        if node.op_type != "Conv":
            frontier += [i for i in node.input if i in producers]
    return keep


def quantize_onnx(fp32: Path, out: Path, batches: list[np.ndarray], method: str = "minmax", ops: str = "all") -> None:
    """Write the static-QDQ int8 version of ``fp32`` to ``out``, calibrated on ``batches``; ``ops``
    (:data:`INT8_OPS`) says which ops are quantized."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.items, None)
            return None if batch is None else {"image": batch}

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    with tempfile.TemporaryDirectory(prefix="slimdepth-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        try:
            quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime's and onnx's own classes: one line naming the file
            raise DataError(f"{out.name}: int8 preparation (onnxruntime quant_pre_process) failed: "
                            f"{first_line(exc)}") from None
        model = onnx.load(str(prepared))
        extra = {"CalibTensorRangeSymmetric": False, "WeightSymmetric": True, "CalibMovingAverage": False}
        if method == "percentile":
            extra["CalibPercentile"] = 99.99
        try:
            quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            nodes_to_exclude=head_nodes(model), calibrate_method=methods[method], extra_options=extra,
                            op_types_to_quantize=["Conv"] if ops == "conv" else None)
        except Exception as exc:  # noqa: BLE001 - as above
            raise DataError(f"{out.name}: int8 quantization (onnxruntime quantize_static) failed: "
                            f"{first_line(exc)}") from None
    proto = onnx.load(str(out))
    source = onnx.load(str(fp32))
    del proto.metadata_props[:]
    proto.metadata_props.extend(source.metadata_props)
    onnx.save(proto, str(out))


def quantize_litert(fp32: Path, out: Path, batches: list[np.ndarray]) -> None:
    """Write the full-integer int8 version of the LiteRT file ``fp32`` to ``out``, calibrated on ``batches``."""
    import contextlib
    import io

    try:
        from ai_edge_litert.interpreter import Interpreter
        from ai_edge_quantizer import quantizer, recipe
    except ImportError:
        raise ConfigError("LiteRT int8 needs ai-edge-quantizer and ai-edge-litert: pip install 'slimdepth[deploy]'") from None
    try:
        signature, spec = next(iter(Interpreter(str(fp32)).get_signature_list().items()))
        name = spec["inputs"][0]
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # progress bars
            job = quantizer.Quantizer(str(fp32))
            job.load_quantization_recipe(recipe.static_wi8_ai8())
            ranges = job.calibrate({signature: [{name: b} for b in batches]}, num_threads=1)
            job.quantize(ranges, enable_progress_bar=False, enable_progress_report=False).export_model(str(out),
                                                                                                       overwrite=True)
    except Exception as exc:  # noqa: BLE001 - the quantizer's, jax's and the interpreter's classes: one line
        raise DataError(f"{out.name}: int8 quantization (ai-edge-quantizer) failed: {first_line(exc)}") from None


def _score(path: Path, spec: str, num: int) -> tuple[dict[str, float], int]:
    """delta1, AbsRel and RMSE of an exported file on the first ``num`` images of ``spec``, and the
    number of images scored (fewer than ``num`` when the dataset is smaller)."""
    from slimdepth.data.registry import build_dataset
    from slimdepth.deploy.exported import load_exported
    from slimdepth.evaluate.loop import evaluate_model

    model = load_exported(path, spinning=False)
    report = evaluate_model(model, build_dataset(spec), input_size=model.input_size, batch_size=1, limit=num)
    return {k: float(report.metrics[k]) for k in ("d1", "abs_rel", "rmse")}, report.num_images


def quantize_export(fp32: Path, target: Path, settings: Any, metadata: dict[str, Any],
                    say: Callable[[str], None]) -> dict[str, Any]:
    """Quantize ``fp32`` (an .onnx or .tflite file) to ``target``, then compare accuracy and latency of
    both (the report's ``int8``)."""
    from slimdepth.deploy.workers import time_files

    litert = settings.fmt == "litert"
    say(f"calibrating int8 on {settings.calib_num} images of {settings.calib} ({settings.calib_method})")
    batches = calibration_batches(settings.calib, settings.size, settings.calib_num)
    if litert:
        quantize_litert(fp32, target, batches)
    else:
        quantize_onnx(fp32, target, batches, settings.calib_method, settings.int8_ops)
    val = settings.val or settings.calib
    say(f"scoring fp32 and int8 on up to {settings.val_num} images of {val}")
    (fp32_scores, scored), (int8_scores, _) = _score(fp32, val, settings.val_num), _score(target, val, settings.val_num)
    runtime = "litert" if litert else "ort"
    say(f"timing fp32 and int8 under {'LiteRT' if litert else 'ONNX Runtime'}, each in its own process")
    latency = time_files([fp32, target], runtime, settings.size, threads=settings.threads or 2, runs=30, warmup=5)
    scheme = ({"weights": "int8 symmetric per channel", "activations": "int8 per tensor",
               "float_nodes": "none (full integer: int8 input and output, converted by the runner)"} if litert else
              {"weights": "int8 symmetric per channel", "activations": "uint8 asymmetric per tensor",
               "float_nodes": "the depth head (last Conv to output)" + (
                   "; every op but Conv" if settings.int8_ops == "conv" else ""), "ops": settings.int8_ops})
    return {
        "runtime": runtime,
        "calibration": {"dataset": settings.calib, "images": len(batches), "method": settings.calib_method, **scheme},
        "validation": {"dataset": val, "images": scored},
        "fp32": {**fp32_scores, **latency[0]}, "int8": {**int8_scores, **latency[1]},
        "delta1_change_points": 100.0 * (int8_scores["d1"] - fp32_scores["d1"]),
        "speedup": latency[0]["median_ms"] / latency[1]["median_ms"],
    }
