"""Timing in worker processes: one :mod:`slimdepth.deploy.bench_worker` per model and runtime.

:func:`interleave_workers` starts the workers one after another (so warm-ups do not overlap)
and takes the timed runs in rounds, worker after worker; :func:`time_files` does it for exported
files on one runtime. ``bench`` and the int8 report both time through here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from slimdepth.deploy.latency import summarize_samples
from slimdepth.errors import DataError

__all__ = ["Worker", "interleave_workers", "time_files"]


class Worker:
    """A running bench_worker process."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "slimdepth.deploy.bench_worker"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self.error: str | None = None
        self._send(spec)
        answer = self._receive()
        if "error" in answer:
            self.error = answer["error"]
            self.close()

    def _send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    def _receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            stderr = self.process.stderr.read() if self.process.stderr else ""
            tail = [s for s in stderr.strip().splitlines() if s.strip()]
            return {"error": tail[-1] if tail else "the worker process died"}
        return json.loads(line)

    def time(self, runs: int, warmup: int = 0) -> list[float]:
        self._send({"runs": runs, "warmup": warmup})
        answer = self._receive()
        if "error" in answer:
            raise DataError(f"benchmark worker failed: {answer['error']}")
        return [float(s) for s in answer["samples"]]

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self._send({"quit": True})
                self.process.wait(timeout=10)
            except (BrokenPipeError, subprocess.TimeoutExpired, OSError):
                self.process.kill()


def interleave_workers(specs: list[dict[str, Any]], runs: int, rounds: int) -> list[list[float]]:
    """Start a worker per spec, then take ``runs`` timed runs of each in ``rounds`` turns.
    A worker that cannot load its model is a DataError naming it (before any timing)."""
    rounds = max(1, min(rounds, runs))
    chunks = [runs // rounds + (1 if i < runs % rounds else 0) for i in range(rounds)]
    workers = []
    try:
        for spec in specs:  # started one after another, so warm-ups do not overlap
            workers.append(Worker(spec))
            if workers[-1].error is not None:
                what = spec.get("path") or spec.get("model")
                error = workers[-1].error
                raise DataError(error if str(Path(str(what)).name) in error else f"{what} on {spec['runtime']}: {error}")
        samples: list[list[float]] = [[] for _ in specs]
        for chunk in chunks:
            for i, worker in enumerate(workers):
                if worker.error is None:
                    samples[i] += worker.time(chunk, warmup=1)
    finally:
        for worker in workers:
            worker.close()
    return samples


def time_files(paths: Sequence[Path], runtime: str, size: tuple[int, int], threads: int = 2, runs: int = 30,
               warmup: int = 5, rounds: int = 5) -> list[dict[str, float]]:
    """Latency summaries (:func:`summarize_samples`) of exported files on one runtime, interleaved."""
    specs = [{"runtime": runtime, "path": str(p), "size": list(size), "threads": threads, "warmup": warmup} for p in paths]
    return [summarize_samples(r) for r in interleave_workers(specs, runs, rounds)]
