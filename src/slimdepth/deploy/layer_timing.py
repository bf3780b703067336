"""Timing single layers and whole networks on a deployment runtime, for latency tables.

:func:`time_layers` measures single convolutions (described by :func:`conv_shape`) in one
worker process for the runtime (:mod:`slimdepth.deploy.layer_timing_worker`), identical shapes
once. :func:`time_networks` exports whole networks for the runtime and times them side by side,
interleaved, each in its own worker process (the workers ``bench`` uses), so the latency table
is checked against exactly what ``bench`` would measure.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from slimdepth.deploy.latency import check_timing
from slimdepth.deploy.workers import interleave_workers
from slimdepth.errors import ConfigError, DataError
from slimdepth.options import suggest

__all__ = ["LATENCY_RUNTIMES", "check_latency_runtime", "conv_shape", "network_samples", "time_layers", "time_networks"]

#: the runtimes a latency table can be measured on
LATENCY_RUNTIMES = ("ort", "torch", "openvino", "litert")
#: the command that starts a layer-timing worker
LAYER_WORKER = [sys.executable, "-m", "slimdepth.deploy.layer_timing_worker"]
#: the smallest layer there is (1 channel in and out, one pixel): its time is the per-call overhead
EMPTY_SHAPE = {"cin": 1, "cout": 1, "kernel": [1, 1], "stride": [1, 1], "padding": [0, 0], "dilation": [1, 1],
               "groups": 1, "h": 1, "w": 1, "bias": False}


def check_latency_runtime(runtime: str) -> str:
    """``runtime`` if a latency table can be measured on it, else a one-line error."""
    if runtime not in LATENCY_RUNTIMES:
        raise ConfigError(f"unknown runtime {runtime!r}{suggest(str(runtime), LATENCY_RUNTIMES)}; "
                          f"choose from {', '.join(LATENCY_RUNTIMES)}")
    return runtime


def conv_shape(module: nn.Module, in_hw: tuple[int, int], cin: int | None = None, cout: int | None = None) -> dict[str, Any]:
    """The shape a layer-timing worker builds for conv or linear ``module`` reading an ``in_hw``
    input, with ``cin``/``cout`` channels instead of the module's own when given (a linear layer
    is timed as the 1x1 conv on one pixel it computes). Depthwise convs keep groups == channels."""
    if isinstance(module, nn.Linear):
        cin, cout = cin or module.in_features, cout or module.out_features
        return {**EMPTY_SHAPE, "cin": int(cin), "cout": int(cout), "bias": module.bias is not None}
    if not isinstance(module, nn.Conv2d) or isinstance(module.padding, str):
        raise ConfigError(f"{type(module).__name__}: latency tables time Conv2d and Linear layers only")
    depthwise = module.groups == module.out_channels and module.out_channels > 1
    cin, cout = int(cin or module.in_channels), int(cout or module.out_channels)
    if depthwise:
        cin = cout
        groups = cout
    else:
        groups = module.groups
        if cin % groups or cout % groups:
            raise ConfigError(f"a grouped conv ({groups} groups) cannot take {cin} -> {cout} channels")
    return {"cin": cin, "cout": cout, "kernel": list(module.kernel_size), "stride": list(module.stride),
            "padding": list(module.padding), "dilation": list(module.dilation), "groups": int(groups),
            "h": int(in_hw[0]), "w": int(in_hw[1]), "bias": module.bias is not None}


def time_layers(shapes: Sequence[dict[str, Any]], runtime: str, threads: int = 2, runs: int = 15, warmup: int = 3,
                progress: Callable[[int, int], None] | None = None) -> list[float]:
    """Median batch-1 milliseconds of each conv shape on ``runtime``, in one worker process.

    Identical shapes are timed once. ``progress(done, total)`` is called as results arrive.
    """
    check_latency_runtime(runtime)
    check_timing(runs, warmup, threads)
    keys = [json.dumps(s, sort_keys=True) for s in shapes]
    unique = list(dict.fromkeys(keys))
    job = {"runtime": runtime, "threads": threads, "runs": runs, "warmup": warmup,
           "shapes": [json.loads(k) for k in unique]}
    timed: dict[str, float] = {}
    with tempfile.TemporaryFile(prefix="slimdepth-layers-") as stderr:
        process = subprocess.Popen(LAYER_WORKER, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                   text=True, bufsize=1)
        try:
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(json.dumps(job) + "\n")
            process.stdin.close()
            for line in process.stdout:
                answer = json.loads(line)
                if "error" in answer:
                    raise DataError(f"timing layers on {runtime} failed: {answer['error']}")
                timed[unique[int(answer["i"])]] = float(answer["ms"])
                if progress is not None:
                    progress(len(timed), len(unique))
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
        if len(timed) < len(unique):
            stderr.seek(0)
            tail = [s for s in stderr.read().decode("utf-8", "replace").splitlines() if s.strip()]
            raise DataError(f"timing layers on {runtime} failed: {tail[-1] if tail else 'the worker process died'}")
    return [timed[k] for k in keys]


def _export_for(model: nn.Module, runtime: str, size: tuple[int, int], folder: Path) -> dict[str, Any]:
    """Write ``model`` in ``folder`` as the runtime runs it; the worker spec that times it."""
    from slimdepth.deploy.export import _exportable, _to_litert, to_onnx
    from slimdepth.models.checkpoint import save_model

    spec: dict[str, Any] = {"runtime": runtime, "size": list(size)}
    if runtime == "torch":
        spec["model"] = str(save_model(model, folder / "model.safetensors"))
        return spec
    graph = _exportable(model)
    if runtime in ("ort", "openvino"):
        path = folder / "model.onnx"
        to_onnx(graph, path, size)
    else:
        path = folder / "model.tflite"
        _to_litert(graph, path, size)
    spec["path"] = str(path)
    return spec


def time_networks(models: Sequence[nn.Module], runtime: str, size: tuple[int, int], threads: int = 2, runs: int = 30,
                  warmup: int = 5, rounds: int = 5, log: Callable[[str], None] | None = None) -> list[float]:
    """Median batch-1 milliseconds of each whole network on ``runtime`` at ``size``: exported as
    ``bench`` exports them (ONNX for ``ort``/``openvino``, LiteRT for ``litert``, the folded
    PyTorch model for ``torch``) and timed side by side, interleaved, one worker process each."""
    import numpy as np

    return [float(np.median(s)) for s in network_samples(models, runtime, size, threads, runs, warmup, rounds, log)]


def network_samples(models: Sequence[nn.Module], runtime: str, size: tuple[int, int], threads: int = 2, runs: int = 30,
                    warmup: int = 5, rounds: int = 5, log: Callable[[str], None] | None = None) -> list[list[float]]:
    """The timed runs (ms, in the order taken: ``rounds`` chunks) behind :func:`time_networks`."""
    check_latency_runtime(runtime)
    check_timing(runs, warmup, threads)
    say = log or (lambda message: None)
    with tempfile.TemporaryDirectory(prefix="slimdepth-latency-") as tmp:
        exported: dict[int, dict[str, Any]] = {}  # a model given twice is exported once, timed twice
        specs = []
        for i, model in enumerate(models):
            if id(model) not in exported:
                folder = Path(tmp) / str(i)
                folder.mkdir()
                exported[id(model)] = {**_export_for(model, runtime, size, folder), "threads": threads,
                                       "warmup": warmup}
            specs.append(dict(exported[id(model)]))
        say(f"timing {len(specs)} network(s) on {runtime}, {runs} runs each in {rounds} interleaved rounds")
        return interleave_workers(specs, runs, rounds)
