"""Real latency of a forward pass: warm-up, repeated timed runs, median reported.

:func:`measure_latency` times one model; :func:`interleaved_latency` times several side by side,
round by round, so that load drifting on a shared machine (this kind of VM drifts by 20% or more)
hits every model alike and their ratios stay meaningful. The median is the figure to quote; the
90th percentile says how steady it was. (Timing another runtime, such as ONNX Runtime, belongs
in its own process: its spinning thread pool slows PyTorch in the same one.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from slimdepth.errors import ConfigError
from slimdepth.models.base import eval_mode, model_device
from slimdepth.options import check_number, check_threads, parse_size

__all__ = ["Latency", "check_timing", "interleaved_latency", "measure_latency", "summarize_samples"]


@dataclass(frozen=True)
class Latency:
    """Wall-clock time of one forward pass in milliseconds over ``runs`` timed runs."""

    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    runs: int
    warmup: int
    threads: int
    batch: int
    size: tuple[int, int]
    device: str
    samples_ms: tuple[float, ...] = ()

    def as_dict(self, include_samples: bool = False) -> dict[str, Any]:
        """Plain, JSON-serialisable form (per-run samples only when asked)."""
        d = asdict(self)
        d["size"] = list(self.size)
        d["samples_ms"] = list(self.samples_ms)
        if not include_samples:
            del d["samples_ms"]
        return d


def summarize_samples(samples_ms: Sequence[float]) -> dict[str, float]:
    """Median, 90th percentile, mean and minimum of timed runs (milliseconds)."""
    a = np.asarray(samples_ms, dtype=np.float64)
    return {"median_ms": float(np.median(a)), "p90_ms": float(np.percentile(a, 90)), "mean_ms": float(a.mean()),
            "min_ms": float(a.min())}


def check_timing(runs: int, warmup: int, threads: int | None = None, prefix: str = "") -> None:
    """Timed runs >= 1, warm-up runs >= 0, threads in 1..MAX_THREADS (``prefix``: ``"--"`` names
    the CLI options). Every timing entry point checks them before any work."""
    check_number(runs, f"{prefix}runs", integer=True, low=1)
    check_number(warmup, f"{prefix}warmup", integer=True, low=0)
    if threads is not None:
        check_threads(threads, f"{prefix}threads")


def _synchroniser(device: torch.device) -> Callable[[], None]:
    """A function that waits for queued kernels on ``device`` (a no-op on CPU)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None


def _same_device(a: torch.device, b: torch.device) -> bool:
    """Device equality that treats ``cuda`` and ``cuda:<current>`` alike."""
    if a.type != b.type:
        return False
    if a.type == "cuda":
        current = torch.cuda.current_device()
        return (a.index if a.index is not None else current) == (
            b.index if b.index is not None else current)
    return a.index == b.index or a.index is None or b.index is None


def measure_latency(
    model: nn.Module,
    size: int | Sequence[int],
    batch: int = 1,
    runs: int = 50,
    warmup: int = 10,
    threads: int | None = None,
    device: str | torch.device = "cpu",
) -> Latency:
    """Time ``model(x)`` on a fixed random ``(batch, 3, H, W)`` batch in [0, 1].

    ``warmup`` untimed passes come first (allocator, kernel selection, caches); each of the
    ``runs`` timed passes is measured on its own with ``time.perf_counter`` under
    ``torch.inference_mode`` in eval mode, synchronising the GPU before the clock stops so
    asynchronous kernels are included. ``threads`` sets ``torch.set_num_threads`` for the
    measurement only. The model is moved to ``device`` if needed; its device, training flags
    and the thread count are restored afterwards.
    """
    h, w = parse_size(size)
    check_number(batch, "batch", integer=True, low=1)
    check_timing(runs, warmup, threads)
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available")

    original = model_device(model)
    move = not _same_device(original, dev)
    # A fixed random image rather than zeros: data-dependent layers (gating, k-WTA) then take
    # the same kind of path they take on real images, and runs are reproducible.
    x = torch.rand(batch, 3, h, w, generator=torch.Generator().manual_seed(0))
    x = x.to(dev)
    sync = _synchroniser(dev)
    previous_threads = torch.get_num_threads()
    times: list[float] = []
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        used_threads = torch.get_num_threads()
        if move:
            model.to(dev)
        with eval_mode(model), torch.inference_mode():
            for _ in range(warmup):
                model(x)
            sync()
            for _ in range(runs):
                start = time.perf_counter()
                model(x)
                sync()
                times.append((time.perf_counter() - start) * 1000.0)
    finally:
        if move:
            model.to(original)
        torch.set_num_threads(previous_threads)

    return Latency(
        **summarize_samples(times),
        runs=runs,
        warmup=warmup,
        threads=used_threads,
        batch=batch,
        size=(h, w),
        device=str(dev),
        samples_ms=tuple(float(t) for t in times),
    )


def interleaved_latency(models: Sequence[nn.Module], size: int | Sequence[int], runs: int = 50, warmup: int = 10,
                        threads: int | None = None, rounds: int = 5, device: str | torch.device = "cpu") -> list[Latency]:
    """Batch-1 latency of several models measured side by side: the ``runs`` timed passes of
    each are split into ``rounds`` chunks taken in turn (A, B, C, A, B, C, ...), so that load
    drifting on a shared machine affects every model alike and their ratios stay meaningful.
    Each model gets ``warmup`` untimed passes before its first chunk and one before the others.
    Returns one :class:`Latency` per model (pooled samples), in order."""
    check_timing(runs, warmup, threads)
    check_number(rounds, "rounds", integer=True, low=1)
    rounds = min(rounds, runs)
    chunks = [runs // rounds + (1 if i < runs % rounds else 0) for i in range(rounds)]
    samples: list[list[float]] = [[] for _ in models]
    last: list[Latency | None] = [None] * len(models)
    for i, n in enumerate(chunks):
        for j, model in enumerate(models):
            lat = measure_latency(model, size, batch=1, runs=n, warmup=warmup if i == 0 else 1, threads=threads,
                                  device=device)
            samples[j] += list(lat.samples_ms)
            last[j] = lat
    out = []
    for times, lat in zip(samples, last):
        out.append(Latency(**summarize_samples(times), runs=len(times), warmup=warmup, threads=lat.threads, batch=1,
                           size=lat.size, device=lat.device, samples_ms=tuple(times)))
    return out
