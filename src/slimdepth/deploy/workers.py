"""Timing in worker processes: one :mod:`slimdepth.deploy.bench_worker` per model and runtime.

:func:`interleave_workers` starts the workers one after another (so warm-ups do not overlap)
and takes the timed runs in rounds, worker after worker; :func:`time_files` does it for exported
files on one runtime. ``bench`` and the int8 report both time through here.
"""

from __future__ import annotations

import json
import selectors
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from slimdepth.deploy.latency import summarize_samples
from slimdepth.errors import DataError

__all__ = ["WORKER", "Worker", "interleave_workers", "time_files"]

#: the command that starts a worker
WORKER = [sys.executable, "-m", "slimdepth.deploy.bench_worker"]
#: how much of the end of a failed worker's stderr is read for its last line
STDERR_TAIL_BYTES = 64 * 1024
#: seconds a worker may take to load its model and warm up before it counts as hung
READY_TIMEOUT_S = 600.0


class Worker:
    """A running bench_worker process.

    Its stderr goes to an anonymous temporary file, not a pipe: nobody reads a pipe until the
    worker fails, and a runtime that logs more than the pipe holds (64 KiB) would block on it
    mid-run, and bench with it. The file's last line is the error shown when the worker dies;
    it is deleted when the worker is closed. A worker that dies, gives no answer within
    ``ready_timeout`` seconds of its start (:data:`READY_TIMEOUT_S` by default; killed then)
    or answers with something other than a JSON object ends up with a one-line ``error``, its
    process ended, its pipes closed and its file deleted.
    """

    def __init__(self, spec: dict[str, Any], ready_timeout: float | None = None) -> None:
        self.stderr = tempfile.TemporaryFile(prefix="slimdepth-worker-")
        self.error: str | None = None
        self._asked_to_quit = False
        try:
            self.process = subprocess.Popen(WORKER, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=self.stderr, text=True, bufsize=1)
        except BaseException:
            self.stderr.close()
            raise
        try:  # whatever goes wrong from here, the process is ended and its stderr file deleted
            timeout = READY_TIMEOUT_S if ready_timeout is None else ready_timeout
            answer = self._send(spec) or self._receive(timeout)
            if "error" in answer:
                self.error = answer["error"]
                self.close()
        except BaseException:
            self.close()
            raise

    def _write(self, message: dict[str, Any]) -> bool:
        """Write one request; False when the worker has exited (a broken pipe)."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(message) + "\n")
            self.process.stdin.flush()
        except OSError:
            return False
        return True

    def _send(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """Send one request; a worker that died before reading it is an ``{"error": ...}``."""
        return None if self._write(message) else self._died()

    def _receive(self, timeout: float | None = None) -> dict[str, Any]:
        """The worker's next answer; its death, a hang past ``timeout`` seconds or a line that
        is not an answer are an ``{"error": ...}`` (a hung worker is killed)."""
        assert self.process.stdout is not None
        if timeout is not None and not self._readable(timeout):
            self.process.kill()
            return {"error": f"the worker gave no answer in {timeout:g} s"}
        line = self.process.stdout.readline()
        if not line:
            return self._died()
        try:
            answer = json.loads(line)
        except json.JSONDecodeError:
            answer = None
        if not isinstance(answer, dict):
            return {"error": f"the worker answered {line.strip()[:80]!r}, not a JSON object"}
        return answer

    def _readable(self, timeout: float) -> bool:
        """Whether the worker's stdout has something to read within ``timeout`` seconds. Asked
        only before its first answer, while the text wrapper's buffer is still empty (a line
        already buffered would not show on the pipe)."""
        assert self.process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            return bool(selector.select(timeout))

    def _died(self) -> dict[str, Any]:
        tail = [s for s in self._stderr_tail().splitlines() if s.strip()]
        return {"error": tail[-1].strip() if tail else "the worker process died"}

    def _stderr_tail(self) -> str:
        """The end of what the worker wrote on stderr, once it has exited (its stdout is closed)."""
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        size = self.stderr.seek(0, 2)
        self.stderr.seek(max(0, size - STDERR_TAIL_BYTES))
        return self.stderr.read().decode("utf-8", errors="replace")

    def time(self, runs: int, warmup: int = 0) -> list[float]:
        answer = self._send({"runs": runs, "warmup": warmup}) or self._receive()
        if "error" in answer or not isinstance(answer.get("samples"), list):
            raise DataError(f"benchmark worker failed: {answer.get('error', 'an answer without samples')}")
        return [float(s) for s in answer["samples"]]

    def ask_to_quit(self) -> None:
        """Ask the worker to end without waiting for it, so that several end at once."""
        if self.process.poll() is None and not self._asked_to_quit:
            self._write({"quit": True})  # False if it died already: close() reaps it
            self._asked_to_quit = True

    def close(self) -> None:
        """End the worker (asked to quit, killed if it does not), close its pipes and delete its
        stderr file."""
        if self.process.poll() is None:
            try:
                self.ask_to_quit()
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass  # a broken pipe's unflushed request: nobody reads it any more
        self.stderr.close()


def _naming(spec: dict[str, Any], error: str) -> DataError:
    """A worker's error as one line that names its file or model and runtime (unless it does)."""
    what = spec.get("path") or spec.get("model")
    return DataError(error if str(Path(str(what)).name) in error else f"{what} on {spec['runtime']}: {error}")


def interleave_workers(specs: list[dict[str, Any]], runs: int, rounds: int) -> list[list[float]]:
    """Start a worker per spec, then take ``runs`` timed runs of each in ``rounds`` turns.
    A worker that cannot load its model (before any timing) or fails while timed is a DataError
    naming it."""
    rounds = max(1, min(rounds, runs))
    chunks = [runs // rounds + (1 if i < runs % rounds else 0) for i in range(rounds)]
    workers = []
    try:
        for spec in specs:  # started one after another, so warm-ups do not overlap
            workers.append(Worker(spec))
            if workers[-1].error is not None:
                raise _naming(spec, workers[-1].error)
        samples: list[list[float]] = [[] for _ in specs]
        for chunk in chunks:
            for i, (spec, worker) in enumerate(zip(specs, workers)):
                try:
                    samples[i] += worker.time(chunk, warmup=1)
                except DataError as exc:
                    raise _naming(spec, str(exc)) from None
    finally:
        for worker in workers:  # all asked first: a PyTorch worker takes ~0.2 s to exit, and they exit together
            worker.ask_to_quit()
        for worker in workers:
            worker.close()
    return samples


def time_files(paths: Sequence[Path], runtime: str, size: tuple[int, int], threads: int = 2, runs: int = 30,
               warmup: int = 5, rounds: int = 5) -> list[dict[str, float]]:
    """Latency summaries (:func:`summarize_samples`) of exported files on one runtime, interleaved."""
    specs = [{"runtime": runtime, "path": str(p), "size": list(size), "threads": threads, "warmup": warmup} for p in paths]
    return [summarize_samples(r) for r in interleave_workers(specs, runs, rounds)]
