"""``slimdepth bench``: every model on every runtime, side by side, each in its own process.

Each (model, runtime) pair gets a worker process (:mod:`slimdepth.deploy.bench_worker`) that
loads only that runtime and warms up first; then the timed batch-1 runs are taken in rounds,
worker after worker (A, B, C, A, B, C, ...), so a machine whose speed drifts (this kind of VM
drifts by 20% or more) slows every pair alike and the ratios hold. Separate processes because
an ONNX Runtime session's spinning thread pool slows PyTorch in the same process by 10x or more
(onnxruntime issue 13808). The median is the figure to quote, the 90th percentile says how
steady it was; speed-ups are over PyTorch eager on the same model in the same run.

A model given as a zoo name, checkpoint or run directory is exported for each runtime first
(:func:`slimdepth.deploy.artefacts.runtime_artefacts`, parity-checked): ONNX for ``ort`` and
``openvino``, int8 QDQ for ``ort-int8`` (calibrated on 16 synthetic frames unless ``calib`` names
a dataset), LiteRT for ``litert`` and full-integer LiteRT for ``litert-int8`` (calibrated
likewise). An exported file runs on the runtimes that read its format.
"""

from __future__ import annotations

import csv
import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from slimdepth.deploy.artefacts import check_calibration, runtime_artefacts
from slimdepth.deploy.latency import check_timing, summarize_samples
from slimdepth.deploy.workers import interleave_workers, time_files
from slimdepth.errors import ConfigError
from slimdepth.options import check_number, parse_size, suggest

__all__ = ["RUNTIMES", "BenchRow", "bench", "parse_runtimes", "time_files", "write_csv", "write_plot"]

#: every runtime ``bench`` times
RUNTIMES = ("torch", "ort", "ort-int8", "litert", "litert-int8", "openvino", "openvino-bf16")
#: what ``ort-int8`` and ``litert-int8`` calibrate on when no ``calib`` dataset is given (16 images of it)
DEFAULT_CALIB = "synthetic,num=16"


@dataclass
class BenchRow:
    """One model on one runtime: batch-1 latency in milliseconds, and the speed-up over torch."""

    model: str
    runtime: str
    size: tuple[int, int]
    threads: int
    median_ms: float | None = None
    p90_ms: float | None = None
    mean_ms: float | None = None
    min_ms: float | None = None
    runs: int = 0
    speedup_vs_torch: float | None = None
    file: str | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["size"] = list(self.size)
        return d


def parse_runtimes(value: str | Sequence[str]) -> list[str]:
    """A comma-separated list of :data:`RUNTIMES`, in order, without repeats."""
    names = [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
    if not names:
        raise ConfigError(f"--runtime needs at least one of {', '.join(RUNTIMES)}")
    for name in names:
        if name not in RUNTIMES:
            raise ConfigError(f"unknown runtime {name!r}{suggest(name, RUNTIMES)}; choose from {', '.join(RUNTIMES)}")
    return list(dict.fromkeys(names))


def bench(models: Sequence[str], runtimes: Sequence[str], size: str | tuple[int, int] = (480, 640), threads: int = 2,
          runs: int = 50, warmup: int = 10, rounds: int = 5, calib: str | None = None, work: Path | None = None,
          log: Callable[[str], None] | None = None) -> list[BenchRow]:
    """Time every model on every runtime side by side (see the module docstring)."""
    size = parse_size(size, "--size")
    runtimes = parse_runtimes(runtimes)
    check_timing(runs, warmup, threads, "--")
    check_number(rounds, "--rounds", integer=True, low=1)
    check_calibration(runtimes, calib, required=False)  # the int8 runtimes have a synthetic default
    if not models:
        raise ConfigError("bench needs at least one model (zoo name, checkpoint, run directory or exported file)")
    say = log or (lambda message: None)
    with tempfile.TemporaryDirectory(prefix="slimdepth-bench-", dir=work) as tmp:
        rows: list[BenchRow] = []
        specs: list[dict[str, Any]] = []
        for i, model in enumerate(models):  # a folder each: two checkpoints may share a file name
            plan = runtime_artefacts(str(model), runtimes, size, Path(tmp) / str(i), calib or DEFAULT_CALIB, 16, say)
            for runtime, what in plan.items():
                row = BenchRow(str(model), runtime, size, threads)
                if isinstance(what, str):
                    row.note = what
                else:
                    row.file = what.get("path")
                    specs.append({**what, "threads": threads, "warmup": warmup})
                    row.note = f"#{len(specs) - 1}"
                rows.append(row)
        say(f"timing {len(specs)} model/runtime pairs, {runs} runs each in {rounds} interleaved rounds")
        results = interleave_workers(specs, runs, rounds) if specs else []
    for row in rows:
        if row.note.startswith("#"):
            result = results[int(row.note[1:])]
            row.note = ""
            summary = summarize_samples(result)
            row.median_ms, row.p90_ms = summary["median_ms"], summary["p90_ms"]
            row.mean_ms, row.min_ms, row.runs = summary["mean_ms"], summary["min_ms"], len(result)
    torch_ms = {r.model: r.median_ms for r in rows if r.runtime == "torch" and r.median_ms}
    for row in rows:
        if row.median_ms and row.model in torch_ms:
            row.speedup_vs_torch = torch_ms[row.model] / row.median_ms
    return rows


def write_csv(rows: Sequence[BenchRow], path: Path) -> None:
    """The rows as CSV, one line per model and runtime."""
    fields = list(rows[0].as_dict()) if rows else list(BenchRow("", "", (0, 0), 0).as_dict())
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            d = row.as_dict()
            d["size"] = f"{row.size[0]}x{row.size[1]}"
            writer.writerow(d)


def write_plot(rows: Sequence[BenchRow], path: Path) -> None:
    """A grouped bar chart of median latency: one group per model, one bar per runtime."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r.model for r in rows))
    runtimes = list(dict.fromkeys(r.runtime for r in rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(models) * max(1, len(runtimes)) / 2), 4.0))
    width = 0.8 / max(1, len(runtimes))
    for j, runtime in enumerate(runtimes):
        values = [next((r.median_ms or 0.0 for r in rows if r.model == m and r.runtime == runtime), 0.0) for m in models]
        ax.bar([i + j * width for i in range(len(models))], values, width, label=runtime)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(models))], [Path(m).name for m in models], rotation=20)
    h, w = rows[0].size if rows else (0, 0)
    ax.set_ylabel("median latency (ms), batch 1")
    ax.set_title(f"{h}x{w}, {rows[0].threads if rows else 0} threads")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_json(rows: Sequence[BenchRow], path: Path, extra: dict[str, Any] | None = None) -> None:
    """The rows as JSON with the machine they were measured on."""
    path.write_text(json.dumps({**(extra or {}), "rows": [r.as_dict() for r in rows]}, indent=2) + "\n")
