"""Comparing models fairly: cost and accuracy measured side by side, in one run, one row each.

:func:`compare_models` is ``slimdepth compare``: every checkpoint is resolved before any work,
each is scored on the same data at the same input size, and their batch-1 latencies are timed
interleaved. :func:`model_cost` is ``slimdepth cost``: the cost report of one model and, for a
dynamically gated one, its latency against its own dense computation with the same weights.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, ContextManager

import torch

from slimdepth.compress.gating import is_gated, latency_comparison
from slimdepth.data.base import DepthDataset
from slimdepth.deploy.cost import cost_report
from slimdepth.deploy.latency import check_timing, interleaved_latency
from slimdepth.errors import ConfigError
from slimdepth.evaluate.loop import evaluate_model
from slimdepth.fileio import atomic_path
from slimdepth.loader import load_model
from slimdepth.models.checkpoint import checkpoint_paths, model_input_size, resolve_checkpoint
from slimdepth.options import check_number, parse_size

__all__ = ["COLUMNS", "add_latency", "compare_models", "compare_row", "format_table", "model_cost", "plot", "to_csv",
           "to_json"]

COLUMNS: tuple[tuple[str, str, str], ...] = (
    # (header, key, format)
    ("model", "name", "s"),
    ("params (M)", "params_m", ".3f"),
    ("GMACs", "gmacs", ".3f"),
    ("size (MB)", "size_mb", ".2f"),
    ("median (ms)", "latency_median_ms", ".1f"),
    ("p90 (ms)", "latency_p90_ms", ".1f"),
    ("d1", "d1", ".3f"),
    ("AbsRel", "abs_rel", ".3f"),
    ("RMSE", "rmse", ".3f"),
)


def compare_row(name: str, model: Any, dataset: Any, size: tuple[int, int], *, file: Path | None = None,
                runs: int = 30, warmup: int = 5, threads: int | None = None, batch_size: int = 4,
                limit: int | None = None, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Cost (parameters, MACs actually executed, size, batch-1 latency) and accuracy of one model.

    MACs are counted on a real batch-1 forward in eval mode, so a dynamically gated model counts
    the channels it actually computes (its sparse path), not the dense network. ``runs=0``
    leaves the latency out (:func:`add_latency` then measures several models side by side).
    """
    model = model.eval()
    report = cost_report(model, size, runs=runs, warmup=warmup, threads=threads, file=file)
    macs = report["macs"]
    result = evaluate_model(model, dataset, input_size=size, batch_size=batch_size, limit=limit, progress=progress)
    return {
        "name": name, "input_size": list(size), "params": report["params"], "params_m": report["params"] / 1e6,
        "macs": macs, "gmacs": macs / 1e9, "size_mb": report["size_mb"],
        "latency_median_ms": report["latency_median_ms"], "latency_p90_ms": report["latency_p90_ms"],
        "d1": result.metrics["d1"], "abs_rel": result.metrics["abs_rel"], "rmse": result.metrics["rmse"],
        "metrics": result.metrics, "images": result.num_images,
    }


def add_latency(rows: Sequence[dict[str, Any]], models: Sequence[Any], size: tuple[int, int], *, runs: int = 30,
                warmup: int = 5, threads: int | None = None, rounds: int = 5) -> None:
    """Fill the rows' batch-1 latency, timing the models interleaved (see
    :func:`slimdepth.deploy.latency.interleaved_latency`) so that their ratios are fair."""
    for row, lat in zip(rows, interleaved_latency([m.eval() for m in models], size, runs=runs, warmup=warmup,
                                                  threads=threads, rounds=rounds)):
        row["latency_median_ms"], row["latency_p90_ms"] = lat.median_ms, lat.p90_ms
        row["latency_runs"], row["latency_threads"] = lat.runs, lat.threads


def compare_models(paths: Sequence[str | Path], dataset: DepthDataset, size: str | None = None, *, runs: int = 30,
                   warmup: int = 5, threads: int | None = None, limit: int | None = None,
                   progress: Callable[[str], ContextManager[Callable[[int, int], None]]] | None = None,
                   log: Callable[[str], None] | None = None) -> tuple[list[dict[str, Any]], tuple[int, int]]:
    """One row per model (see :func:`compare_row`), at one input size: ``size`` (``HxW``) or the
    first model's training size. Every path is resolved before any work. ``progress(name)`` is a
    context manager giving each model's ``update(done, total)`` callback (a progress bar);
    ``log`` hears what is being timed. Returns the rows and the input size."""
    check_timing(runs, warmup, threads, "--")
    if limit is not None:
        check_number(limit, "--limit", integer=True, low=1)
    checkpoints = [resolve_checkpoint(p) for p in paths]
    hw = parse_size(size, "--size") if size else None  # checked before any model loads
    rows, loaded = [], []
    for given, ckpt in zip(paths, checkpoints):
        model = load_model(ckpt)
        hw = hw or model_input_size(model)
        if hw is None:
            raise ConfigError(f"{given}: the checkpoint records no input size; pass --size HxW")
        with progress(Path(given).name) if progress is not None else nullcontext() as update:
            rows.append(compare_row(str(given), model, dataset, hw, file=checkpoint_paths(ckpt)[0], runs=0,
                                    limit=limit, progress=update))
        loaded.append(model)
    assert hw is not None
    if log is not None:
        log(f"timing {len(loaded)} models at batch 1, interleaved ({runs} runs each) ...")
    add_latency(rows, loaded, hw, runs=runs, warmup=warmup, threads=threads)
    return rows, hw


def model_cost(model: torch.nn.Module, size: tuple[int, int], *, runs: int = 30, warmup: int = 5,
               threads: int | None = None, file: Path | None = None, device: str = "cpu") -> dict[str, Any]:
    """The cost report of one model (:func:`~slimdepth.deploy.cost.cost_report`); a gated model
    also gets ``gating_latency``: gated against dense with the same weights, timed interleaved."""
    check_timing(runs, warmup, threads, "--")
    report = cost_report(model.to(device).eval(), size, runs=runs, warmup=warmup, threads=threads, file=file,
                         device=device)
    if is_gated(model):
        with torch.no_grad():
            report["gating_latency"] = latency_comparison(model, size, runs=runs, warmup=warmup, threads=threads)
    return report


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The comparison as a plain-text table (name left-aligned, numbers right-aligned)."""
    cells = [[h for h, _, _ in COLUMNS]]
    for row in rows:
        cells.append([str(row[k]) if f == "s" else format(row[k], f) for _, k, f in COLUMNS])
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """CSV with one row per model (the table's columns plus parameters and MACs as integers)."""
    keys = ["name", "params", "macs"] + [k for _, k, _ in COLUMNS if k != "name"]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=keys, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def to_json(rows: Sequence[dict[str, Any]]) -> str:
    """The rows (every metric included) as a JSON list."""
    return json.dumps(list(rows), indent=2, default=float) + "\n"


def plot(rows: Sequence[dict[str, Any]], path: str | Path, metric: str = "d1") -> None:
    """Accuracy against latency and against MACs, one labelled point per model (PNG)."""
    import matplotlib  # lazy: matplotlib's import is slow and only plots need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        raise ConfigError("nothing to plot")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for ax, key, label in ((axes[0], "latency_median_ms", "CPU latency, median (ms)"), (axes[1], "gmacs", "GMACs")):
        for row in rows:
            ax.scatter(row[key], row[metric], s=36)
            ax.annotate(row["name"], (row[key], row[metric]), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel(label)
        ax.set_ylabel({"d1": "δ<1.25", "abs_rel": "AbsRel", "rmse": "RMSE (m)"}.get(metric, metric))
        ax.grid(alpha=0.3)
    axes[0].set_title(f"accuracy vs latency (input {rows[0]['input_size'][0]}x{rows[0]['input_size'][1]})")
    axes[1].set_title("accuracy vs MACs")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
