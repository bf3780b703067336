"""Comparing models fairly: cost and accuracy measured side by side, in one run, one row each.

:func:`compare_models` is ``slimdepth compare``: every checkpoint is resolved before any work,
each is scored on the same data at the same input size, and their batch-1 latencies are timed
interleaved. :func:`model_cost` is ``slimdepth cost``: the cost report of one model and, for a
dynamically gated one, its latency against its own dense computation with the same weights.

On deployment runtimes (``runtimes`` other than ``torch`` alone; :func:`runtime_cost` for
``cost``) a row is one model on one runtime, and accuracy and latency come from the same
deployed artefact: each model is exported once per format at the compare size into a temporary
folder (:func:`slimdepth.deploy.artefacts.runtime_artefacts`, parity-checked, as ``bench``
does), scored through :func:`slimdepth.deploy.exported.load_exported`, and timed in a worker
process of its runtime; every row, PyTorch's too, is then timed in its own process, interleaved
(:func:`slimdepth.deploy.workers.interleave_workers`), since an ONNX Runtime thread pool in the
same process slows PyTorch. Parameters and MACs are the PyTorch network's (the exported graph is
the same network); ``size_mb`` is what ships: the exported file (OpenVINO: ``.xml`` + ``.bin``).
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, ContextManager

import torch

from slimdepth.compress.gating import is_gated, latency_comparison
from slimdepth.data.base import DepthDataset
from slimdepth.deploy.artefacts import check_calibration, check_runs_on, file_runtime, runtime_artefacts, runtimes_reading
from slimdepth.deploy.bench import parse_runtimes
from slimdepth.deploy.cost import cost_report, count_macs, count_parameters, file_size_mb
from slimdepth.deploy.exported import ExportedModel, is_exported_file, load_exported
from slimdepth.deploy.formats import format_of, model_bytes
from slimdepth.deploy.latency import check_timing, interleaved_latency, summarize_samples
from slimdepth.deploy.workers import interleave_workers, time_files
from slimdepth.errors import ConfigError, DataError
from slimdepth.evaluate.loop import evaluate_model
from slimdepth.evaluate.preds import EvalReport
from slimdepth.fileio import atomic_path
from slimdepth.loader import build_from_config, load_model, resolve_model
from slimdepth.models.checkpoint import checkpoint_paths, model_input_size, resolve_checkpoint
from slimdepth.options import check_number, parse_size

__all__ = ["COLUMNS", "add_latency", "compare_models", "compare_row", "format_table", "model_cost", "plot",
           "rebuilt_counts", "runtime_cost", "to_csv", "to_json"]

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
    result = evaluate_model(model, dataset, input_size=size, batch_size=batch_size, limit=limit, progress=progress)
    return _row(name, size, report, report["size_mb"], result)


def _row(name: str, size: tuple[int, int], counts: dict[str, Any], size_mb: float, result: EvalReport) -> dict[str, Any]:
    """One table row: ``counts`` holds params and MACs (``None`` when unknown) and any latency."""
    params, macs = counts["params"], counts["macs"]
    return {
        "name": name, "input_size": list(size), "params": params, "params_m": None if params is None else params / 1e6,
        "macs": macs, "gmacs": None if macs is None else macs / 1e9, "size_mb": size_mb,
        "latency_median_ms": counts.get("latency_median_ms"), "latency_p90_ms": counts.get("latency_p90_ms"),
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
                   log: Callable[[str], None] | None = None, runtimes: str | Sequence[str] = ("torch",),
                   calib: str | None = None, calib_num: int = 64,
                   rounds: int = 5) -> tuple[list[dict[str, Any]], tuple[int, int]]:
    """One row per model (see :func:`compare_row`), at one input size: ``size`` (``HxW``) or the
    first model's training size. Every path is resolved before any work. ``progress(name)`` is a
    context manager giving each model's ``update(done, total)`` callback (a progress bar);
    ``log`` hears what is being timed. Returns the rows and the input size.

    ``runtimes`` other than ``torch`` alone (see the module docstring) give one row per model and
    runtime, with a ``runtime`` and a ``file_bytes`` key; ``paths`` may then also name exported
    files, which run on the runtimes that read their format. ``ort-int8`` and ``litert-int8`` calibrate on
    ``calib_num`` images of dataset ``calib``."""
    runtimes = parse_runtimes(runtimes)
    check_timing(runs, warmup, threads, "--")
    if limit is not None:
        check_number(limit, "--limit", integer=True, low=1)
    check_number(calib_num, "--calib-num", integer=True, low=1, high=100_000)
    check_calibration(runtimes, calib)
    for path in paths:
        if is_exported_file(path):
            check_runs_on(Path(path), runtimes)
    hw = parse_size(size, "--size") if size else None  # checked before any model loads
    if runtimes != ["torch"]:
        check_number(rounds, "--rounds", integer=True, low=1)
        return _compare_deployed(paths, dataset, hw, runtimes, runs=runs, warmup=warmup, threads=threads,
                                 rounds=rounds, limit=limit, calib=calib, calib_num=calib_num, progress=progress,
                                 log=log)
    checkpoints = [resolve_checkpoint(p) for p in paths]
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


def rebuilt_counts(metadata: dict[str, Any], size: tuple[int, int]) -> dict[str, int | None]:
    """Parameters and MACs of an exported file's network at ``size``, counted on the PyTorch network
    rebuilt (random weights) from the description the file carries (``metadata["model"]`` and
    ``["options"]``, pruned widths included; see :func:`slimdepth.deploy.formats.export_metadata`):
    the file itself holds the folded graph in its runtime's form, which neither counter reads.
    Both are ``None`` when the file carries no description or one that cannot be rebuilt."""
    name, options = metadata.get("model"), metadata.get("options")
    if not isinstance(name, str) or not isinstance(options, dict):
        return {"params": None, "macs": None}
    try:
        network = build_from_config({"name": name, **options}).eval()
    except ConfigError:
        return {"params": None, "macs": None}
    return {"params": count_parameters(network), "macs": count_macs(network, size).total}


def _exported_size(model: ExportedModel, given: str | Path, hw: tuple[int, int] | None) -> tuple[int, int]:
    """The size an exported file runs at: ``hw`` (a fixed-size export must match it), else its own."""
    why = f"this run measures {hw[0]}x{hw[1]} (--size or the first model's size)" if hw else ""
    size = model.run_size(hw, why)
    if size is None:
        raise ConfigError(f"{given}: the export records no input size; pass --size HxW")
    return size


def _compare_deployed(paths: Sequence[str | Path], dataset: DepthDataset, hw: tuple[int, int] | None,
                      runtimes: list[str], *, runs: int, warmup: int, threads: int | None, rounds: int,
                      limit: int | None, calib: str | None, calib_num: int,
                      progress: Callable[[str], ContextManager[Callable[[int, int], None]]] | None,
                      log: Callable[[str], None] | None) -> tuple[list[dict[str, Any]], tuple[int, int]]:
    """:func:`compare_models` on deployment runtimes: one row per model and runtime (module docstring)."""
    say = log or (lambda message: None)
    targets = [Path(p) if is_exported_file(p) else resolve_checkpoint(p) for p in paths]  # all before any work
    workers = threads or torch.get_num_threads()
    rows: list[dict[str, Any]] = []
    specs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="slimdepth-compare-") as tmp:
        for i, (given, target) in enumerate(zip(paths, targets)):
            model: torch.nn.Module | None = None
            if is_exported_file(target):
                readers = runtimes_reading(format_of(target) or "")
                # opened once on a runtime that reads it, for its input size and its description
                probe = load_exported(target, next(r for r in runtimes if r in readers), threads=1, spinning=False)
                hw = _exported_size(probe, given, hw)
                counts = rebuilt_counts(probe.metadata, hw)
                del probe
                torch_mb = None
            else:
                model = load_model(target)
                hw = hw or model_input_size(model)
                if hw is None:
                    raise ConfigError(f"{given}: the checkpoint records no input size; pass --size HxW")
                counts = cost_report(model, hw, runs=0, file=target)  # params, MACs, the checkpoint's size
                torch_mb = counts["size_mb"]
            plan = runtime_artefacts(str(target), runtimes, hw, Path(tmp) / str(i), calib, calib_num, say, strict=True)
            for runtime, what in plan.items():
                if isinstance(what, str):
                    say(f"{given}: not on {runtime} ({what})")
                    continue
                if runtime == "torch":
                    assert model is not None
                    scored, size_mb, nbytes = model, torch_mb, target.stat().st_size
                else:
                    scored = load_exported(what["path"], file_runtime(runtime), threads=workers, spinning=False)
                    hw = _exported_size(scored, given, hw)
                    nbytes, size_mb = model_bytes(what["path"]), file_size_mb(what["path"])
                with progress(f"{Path(given).name} ({runtime})") if progress is not None else nullcontext() as update:
                    result = evaluate_model(scored, dataset, input_size=hw, batch_size=4, limit=limit, progress=update)
                row = _row(str(given), hw, counts, size_mb, result)
                rows.append({"name": row["name"], "runtime": runtime, **row, "file_bytes": nbytes})
                specs.append({**what, "threads": workers, "warmup": warmup})
                del scored  # an ONNX Runtime session is not kept alive while the workers time
        assert hw is not None
        say(f"timing {len(specs)} model/runtime pairs at batch 1, each in its own process, {runs} runs each in "
            f"{min(rounds, runs)} interleaved rounds ...")
        for row, samples in zip(rows, interleave_workers(specs, runs, rounds)):
            summary = summarize_samples(samples)
            row["latency_median_ms"], row["latency_p90_ms"] = summary["median_ms"], summary["p90_ms"]
            row["latency_runs"], row["latency_threads"] = len(samples), workers
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


def runtime_cost(spec: str | Path, runtime: str, size: str | tuple[int, int] | None = None, *, runs: int = 30,
                 warmup: int = 5, threads: int | None = None, calib: str | None = None, calib_num: int = 64,
                 log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """``slimdepth cost --runtime``: the cost of ``spec`` (zoo name, checkpoint, run directory or an
    exported file) as deployed on one runtime other than ``torch``: parameters and MACs of the
    PyTorch network (for an exported file, rebuilt from its description: :func:`rebuilt_counts`),
    the exported file's size (``file_bytes``; ``size_mb`` in MiB) and its batch-1 latency timed in
    a worker process of that runtime. A model is exported into a temporary folder first (see the
    module docstring). ``size``: given, else the export's own or the checkpoint's training size,
    else 192x640."""
    chosen = parse_runtimes(runtime)
    if len(chosen) != 1:
        raise ConfigError(f"--runtime: cost measures one runtime at a time, got {','.join(chosen)}")
    runtime = chosen[0]
    if runtime == "torch":
        raise ConfigError("runtime_cost measures a deployment runtime; model_cost measures the PyTorch model")
    check_timing(runs, warmup, threads, "--")
    check_number(calib_num, "--calib-num", integer=True, low=1, high=100_000)
    check_calibration([runtime], calib)
    hw = parse_size(size, "--size") if size else None
    if is_exported_file(spec):
        check_runs_on(Path(spec), [runtime])
        probe = load_exported(spec, runtime, threads=1, spinning=False)  # its input size and its description
        hw = _exported_size(probe, spec, hw)
        counts = rebuilt_counts(probe.metadata, hw)
        del probe
    else:
        model, _ = resolve_model(spec)
        hw = hw or model_input_size(model) or (192, 640)
        counts = cost_report(model, hw, runs=0)
    workers = threads or torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="slimdepth-cost-") as tmp:
        what = runtime_artefacts(str(spec), [runtime], hw, Path(tmp), calib, calib_num, log, strict=True)[runtime]
        if isinstance(what, str):  # refused above for an exported file; an export failure raised
            raise ConfigError(f"{spec}: not on {runtime} ({what})")
        nbytes, size_mb = model_bytes(what["path"]), file_size_mb(what["path"])
        latency = time_files([Path(what["path"])], file_runtime(runtime), hw, threads=workers, runs=runs,
                             warmup=warmup)[0]
    params, macs = counts["params"], counts["macs"]
    return {
        "name": str(spec), "runtime": runtime, "input_size": list(hw), "batch": 1, "params": params,
        "params_m": None if params is None else params / 1e6, "macs": macs, "gmacs": None if macs is None else macs / 1e9,
        "file_bytes": nbytes, "size_mb": size_mb,
        "latency": {**latency, "runs": runs, "warmup": warmup, "threads": workers, "batch": 1, "size": list(hw),
                    "process": f"a {runtime} worker process"},
        "latency_median_ms": latency["median_ms"], "latency_p90_ms": latency["p90_ms"],
    }


def _columns(rows: Sequence[dict[str, Any]]) -> tuple[tuple[str, str, str], ...]:
    """:data:`COLUMNS`, with a ``runtime`` column after the model's name when the rows have one."""
    if any("runtime" in row for row in rows):
        return (COLUMNS[0], ("runtime", "runtime", "s"), *COLUMNS[1:])
    return COLUMNS


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The comparison as a plain-text table (name left-aligned, numbers right-aligned; ``-`` for
    what is unknown, such as the MACs of an exported file without a description)."""
    columns = _columns(rows)
    cells = [[h for h, _, _ in columns]]
    for row in rows:
        cells.append(["-" if row[k] is None else str(row[k]) if f == "s" else format(row[k], f) for _, k, f in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """CSV with one row per model (the table's columns plus parameters and MACs as integers)."""
    deployed = any("runtime" in row for row in rows)
    keys = ["name"] + (["runtime"] if deployed else []) + ["params", "macs"] + [
        k for _, k, _ in COLUMNS if k != "name"] + (["file_bytes"] if deployed else [])
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
            if row[key] is None:  # the MACs of an exported file without a description
                continue
            name = f"{row['name']} ({row['runtime']})" if "runtime" in row else row["name"]
            ax.scatter(row[key], row[metric], s=36)
            ax.annotate(name, (row[key], row[metric]), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel(label)
        ax.set_ylabel({"d1": "δ<1.25", "abs_rel": "AbsRel", "rmse": "RMSE (m)"}.get(metric, metric))
        ax.grid(alpha=0.3)
    axes[0].set_title(f"accuracy vs latency (input {rows[0]['input_size'][0]}x{rows[0]['input_size'][1]})")
    axes[1].set_title("accuracy vs MACs")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
