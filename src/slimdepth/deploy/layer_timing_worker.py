"""One layer-timing worker process: times single convolutions on one runtime.

Started by :func:`slimdepth.deploy.layer_timing.time_layers` with a JSON job on stdin
(``runtime``, ``threads``, ``runs``, ``warmup`` and a list of conv ``shapes``: ``cin``, ``cout``,
``kernel``, ``stride``, ``padding``, ``dilation``, ``groups``, ``h``, ``w``, ``bias``, the input
being ``(1, cin, h, w)``). For each shape it builds a one-layer model for the runtime -- an
``nn.Conv2d`` for ``torch``, a one-node ONNX graph for ``ort`` and ``openvino``, an ``nn.Conv2d``
converted by litert-torch for ``litert`` -- warms it up, times ``runs`` batch-1 passes and writes
one JSON line ``{"i": index, "ms": median}``. Only the runtime being timed is loaded (ONNX
Runtime's spinning threads never share a process with PyTorch's timing).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def _median_ms(run: Callable[[], Any], runs: int, warmup: int) -> float:
    for _ in range(warmup):
        run()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) * 1000.0)
    return float(np.median(samples))


def _input(shape: dict[str, Any]) -> np.ndarray:
    return np.random.default_rng(0).random((1, shape["cin"], shape["h"], shape["w"]), dtype=np.float32)


def _torch_conv(shape: dict[str, Any]) -> Any:
    import torch
    from torch import nn

    conv = nn.Conv2d(shape["cin"], shape["cout"], tuple(shape["kernel"]), tuple(shape["stride"]),
                     tuple(shape["padding"]), tuple(shape["dilation"]), shape["groups"], bias=shape["bias"])
    return conv.eval(), torch.from_numpy(_input(shape))


def _torch_runner(threads: int) -> Callable[[dict[str, Any]], Callable[[], Any]]:
    import torch

    torch.set_num_threads(threads)

    def make(shape: dict[str, Any]) -> Callable[[], Any]:
        conv, x = _torch_conv(shape)

        def run() -> Any:
            with torch.inference_mode():
                return conv(x)

        return run

    return make


def onnx_conv(shape: dict[str, Any]) -> bytes:
    """A one-node ONNX graph computing the conv ``shape`` describes (random weights), serialised."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    kh, kw = shape["kernel"]
    weight = rng.standard_normal((shape["cout"], shape["cin"] // shape["groups"], kh, kw)).astype(np.float32)
    inits = [numpy_helper.from_array(weight, "W")]
    inputs = ["X", "W"]
    if shape["bias"]:
        inits.append(numpy_helper.from_array(rng.standard_normal(shape["cout"]).astype(np.float32), "B"))
        inputs.append("B")
    ph, pw = shape["padding"]
    node = helper.make_node("Conv", inputs, ["Y"], kernel_shape=[kh, kw], strides=list(shape["stride"]),
                            pads=[ph, pw, ph, pw], dilations=list(shape["dilation"]), group=shape["groups"])
    graph = helper.make_graph([node], "conv", [helper.make_tensor_value_info("X", TensorProto.FLOAT,
                                                                              [1, shape["cin"], shape["h"], shape["w"]])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString()


def _ort_runner(threads: int) -> Callable[[dict[str, Any]], Callable[[], Any]]:
    import onnxruntime as ort

    from slimdepth.runtime.session import session_options

    def make(shape: dict[str, Any]) -> Callable[[], Any]:
        session = ort.InferenceSession(onnx_conv(shape), session_options(threads), providers=["CPUExecutionProvider"])
        feed = {"X": _input(shape)}
        return lambda: session.run(None, feed)

    return make


def _openvino_runner(threads: int) -> Callable[[dict[str, Any]], Callable[[], Any]]:
    import openvino as ov

    core = ov.Core()

    def make(shape: dict[str, Any]) -> Callable[[], Any]:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "conv.onnx"
            path.write_bytes(onnx_conv(shape))
            model = core.read_model(str(path))
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
                                                     "INFERENCE_NUM_THREADS": threads})
        request = compiled.create_infer_request()
        x = _input(shape)
        return lambda: request.infer({0: x})

    return make


def _litert_runner(threads: int) -> Callable[[dict[str, Any]], Callable[[], Any]]:
    import warnings

    import litert_torch
    from ai_edge_litert.interpreter import Interpreter

    def make(shape: dict[str, Any]) -> Callable[[], Any]:
        conv, x = _torch_conv(shape)
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path = Path(tmp) / "conv.tflite"
            litert_torch.convert(conv, (x,)).export(str(path))
            interpreter = Interpreter(str(path), num_threads=threads)
        interpreter.allocate_tensors()
        index = interpreter.get_input_details()[0]["index"]
        array = x.numpy()

        def run() -> Any:
            interpreter.set_tensor(index, array)
            interpreter.invoke()

        return run

    return make


RUNNERS = {"torch": _torch_runner, "ort": _ort_runner, "openvino": _openvino_runner, "litert": _litert_runner}


def main() -> None:
    job = json.loads(sys.stdin.readline())
    # the answers get their own copy of stdout; whatever the converters print (JAX and TensorFlow
    # write to file descriptor 1 from C) goes to stderr instead of into the answers
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    sys.stdout.flush()
    os.dup2(2, 1)
    try:
        make = RUNNERS[job["runtime"]](int(job["threads"]))
        for i, shape in enumerate(job["shapes"]):
            ms = _median_ms(make(shape), int(job["runs"]), int(job["warmup"]))
            answers.write(json.dumps({"i": i, "ms": ms}) + "\n")
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        answers.write(json.dumps({"error": f"{type(exc).__name__}: {first}"}) + "\n")
    answers.flush()


if __name__ == "__main__":
    main()
