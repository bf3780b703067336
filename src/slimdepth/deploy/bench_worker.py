"""One benchmark worker process: loads one model on one runtime and times it on request.

Spoken to by :mod:`slimdepth.deploy.bench` over stdin/stdout, one JSON object per line. The first
line says what to load (``runtime``, ``path`` or ``model``, ``size``, ``threads``, ``warmup``);
the worker loads it, runs the warm-up and answers ``{"ready": true}``. Each ``{"runs": N}``
is answered with N timed batch-1 passes in milliseconds; ``{"quit": true}`` ends it. Only the
runtime being timed is imported: a worker timing ONNX Runtime never loads PyTorch, and a
PyTorch worker never shares its process with ONNX Runtime's spinning thread pool.

After each batch of timed runs the worker sleeps ``settle_s`` (by default :data:`SETTLE_S` on
more than one thread) before answering, so that its own spinning threads -- ONNX Runtime's
intra-op pool, OpenMP's (whose default block time is 200 ms) -- have gone idle before the next
worker is timed. Without it, on this 2-core VM, the quickstart LiteDepth's ONNX file (96x320,
2 threads) timed 6.5-7.5 ms in interleaved workers against 2.8-3.3 ms alone, and its int8 file
swung between 2.9 and 7.5 ms from one worker to the next; with it both match the figures taken
alone. A worker on one thread has no pool to spin, so by default it does not wait: 8
interleaved workers of a small network at 64x192, every runtime on one thread, timed no slower
without the wait, which took a quarter (PyTorch) to two thirds (the others) of such a run's
time (``python benchmarks/worker_settle.py``).

The answers go out on a copy of the original stdout; file descriptor 1 itself is pointed at
stderr first, so whatever a runtime or its C library prints lands in the worker's log and
cannot be mistaken for an answer.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import numpy as np

#: seconds a worker waits after its timed runs, for its spinning threads to go idle (see above)
SETTLE_S = 0.25


def settle_seconds(spec: dict[str, Any]) -> float:
    """How long the worker waits after its timed runs: ``settle_s`` if the spec gives it, else
    :data:`SETTLE_S` on more than one thread and none on one (no pool spins there)."""
    if "settle_s" in spec:
        return float(spec["settle_s"])
    return SETTLE_S if int(spec.get("threads", 1)) > 1 else 0.0


def _torch_runner(spec: dict[str, Any]) -> Callable[[], Any]:
    import torch

    from slimdepth.deploy.export import _exportable
    from slimdepth.loader import resolve_model

    torch.set_num_threads(int(spec["threads"]))
    model = _exportable(resolve_model(spec["model"])[0])
    x = torch.from_numpy(_input(spec))

    def run() -> Any:
        with torch.inference_mode():
            return model(x)

    return run


def _input(spec: dict[str, Any]) -> np.ndarray:
    h, w = spec["size"]
    return np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)


def _file_runner(spec: dict[str, Any]) -> Callable[[], Any]:
    from slimdepth.deploy.artefacts import file_runtime
    from slimdepth.deploy.runners import load_runner

    runner = load_runner(spec["path"], file_runtime(spec["runtime"]), threads=int(spec["threads"]))
    x = _input(spec)
    return lambda: runner.run(x)


def answer_channel() -> TextIO:
    """The process's original stdout, for the answers alone: file descriptor 1 (and so
    ``print`` and any C library's printf) is pointed at stderr from here on."""
    sys.stdout.flush()
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    return channel


def _send(answers: TextIO, message: dict[str, Any]) -> None:
    answers.write(json.dumps(message) + "\n")
    answers.flush()


def main() -> None:
    answers = answer_channel()
    spec = json.loads(sys.stdin.readline())
    try:
        run = _torch_runner(spec) if spec["runtime"] == "torch" else _file_runner(spec)
        for _ in range(int(spec.get("warmup", 10))):
            run()
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        from slimdepth.errors import SlimdepthError, one_line

        _send(answers, {"error": one_line(exc) if isinstance(exc, SlimdepthError) else
               f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"})
        return
    _send(answers, {"ready": True})
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("quit"):
            break
        samples = []
        for _ in range(int(request.get("warmup", 0))):
            run()
        for _ in range(int(request["runs"])):
            start = time.perf_counter()
            run()
            samples.append((time.perf_counter() - start) * 1000.0)
        time.sleep(settle_seconds(spec))  # before the next worker runs: see the module docstring
        _send(answers, {"samples": samples})


if __name__ == "__main__":
    main()
