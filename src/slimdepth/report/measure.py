"""Filling in what the runs did not record: cost, accuracy and latency of each model.

* cost: parameters and MACs (:mod:`slimdepth.deploy.cost`) at the model's input size, and the
  file size on disk; an exported file is counted on the architecture its metadata describes;
* accuracy: δ1, AbsRel and RMSE on the evaluation data (:func:`slimdepth.evaluate.loop.evaluate_model`
  with the dataset's conventions), for every model when the user names the data, else only for
  models that recorded none (the first :data:`EVAL_LIMIT` images);
* latency: batch-1 median per runtime, measured side by side by :func:`slimdepth.deploy.bench.bench`.

Models are loaded once and kept in a :class:`ModelCache`, since samples and real frames use them too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from slimdepth.data.base import DepthDataset
from slimdepth.data.registry import build_dataset
from slimdepth.deploy.cost import count_macs, count_parameters, file_size_mb
from slimdepth.deploy.exported import load_for_inference
from slimdepth.errors import DataError
from slimdepth.evaluate.loop import evaluate_model
from slimdepth.loader import build_from_config
from slimdepth.models.checkpoint import resolve_checkpoint
from slimdepth.report.collect import ModelEntry, ReportData, export_report, recipe_val

__all__ = ["EVAL_LIMIT", "ModelCache", "evaluation_data", "fill_costs", "fill_latency", "fill_metrics"]

#: images scored for a model that recorded no metrics (a whole KITTI split would take minutes per model)
EVAL_LIMIT = 100
#: timing of ``--runtime``: fewer runs than ``slimdepth bench``, since a report times many models
BENCH_RUNS, BENCH_WARMUP, BENCH_ROUNDS = 20, 3, 2

Log = Callable[[str], None]


class ModelCache:
    """Each model loaded once (a PyTorch model or a runtime-backed exported one) with its input size."""

    def __init__(self, size: tuple[int, int] | None = None) -> None:
        self.size = size
        self._models: dict[Path, tuple[torch.nn.Module, tuple[int, int] | None]] = {}
        #: models with re-estimated BatchNorm statistics, by (path, frames, input size)
        #: (:func:`~slimdepth.report.sim_to_real.with_adapted_norm`)
        self.adapted: dict[tuple[Path, Path | str, tuple[int, int] | None], torch.nn.Module] = {}

    def get(self, entry: ModelEntry) -> tuple[torch.nn.Module, tuple[int, int] | None]:
        """The model of ``entry`` in eval mode and the input size to run it at (``--size`` first)."""
        if entry.path not in self._models:
            model, input_size = load_for_inference(entry.path, "cpu", self.size)
            model.eval()
            self._models[entry.path] = (model, tuple(input_size) if input_size else None)
        model, input_size = self._models[entry.path]
        entry.input_size = entry.input_size or input_size
        return model, input_size


def fill_costs(data: ReportData, cache: ModelCache) -> None:
    """Parameters, MACs and file size of every model that lacks them."""
    for entry in data.models:
        if entry.size_mb is None and entry.path.exists():
            entry.size_mb = file_size_mb(entry.path if entry.exported else resolve_checkpoint(entry.path))
        if (entry.params is not None and entry.macs is not None) or not entry.path.exists():
            continue
        if entry.exported:  # the runtime's graph cannot be counted; its source architecture can
            meta = export_report(entry.path)
            if not meta.get("model") or not meta.get("input_size"):
                continue
            model = build_from_config({"name": meta["model"], **(meta.get("options") or {})}).eval()
            size = cache.size or tuple(meta["input_size"])
        else:
            model, size = cache.get(entry)
        if entry.params is None:
            entry.params = count_parameters(model)
        if entry.macs is None and size is not None:
            entry.macs = count_macs(model, size).total


def evaluation_data(spec: str | None, data: ReportData) -> tuple[DepthDataset, str] | None:
    """The dataset samples and missing metrics use: ``spec`` (``--data``), else the validation
    set of the first model's recipe that records one; None when there is neither."""
    if spec:
        return build_dataset(spec), spec
    for entry in data.models:
        for where in (entry.run, entry.path):
            val = recipe_val(where) if where is not None and where.exists() else None
            if val:
                return build_dataset(val), val if isinstance(val, str) else str(val)
    return None


def fill_metrics(data: ReportData, cache: ModelCache, dataset: DepthDataset | None, spec: str, every: bool,
                 log: Log) -> None:
    """Score on ``dataset`` every model (``every``: the user named the data) or those without metrics."""
    if dataset is None:
        return
    for entry in data.models:
        if (entry.metrics is not None and not every) or not entry.path.exists():
            continue
        model, size = cache.get(entry)
        limit = None if every else EVAL_LIMIT
        log(f"evaluating {entry.name} on {spec}")
        report = evaluate_model(model, dataset, None, size, batch_size=4, limit=limit)
        entry.metrics = dict(report.metrics)
        shown = f"{report.num_images} images" if limit is None or report.num_images < limit else f"first {limit} images"
        entry.metrics_source = f"evaluated here on {spec} ({shown})"


def fill_latency(data: ReportData, runtimes: Sequence[str], size: tuple[int, int] | None, threads: int,
                 log: Log) -> None:
    """Measure every model on ``runtimes`` (batch 1, ``threads`` threads) at ``size`` (else the
    pipeline's latency size, else the first model's input size)."""
    if not runtimes:
        return
    from slimdepth.deploy.bench import bench  # lazy: it pulls in the exporters and runtimes

    size = size or data.latency_size or next((m.input_size for m in data.models if m.input_size), None)
    if size is None:
        raise DataError("cannot tell the input size to time the models at; pass --size HxW")
    data.latency_size = tuple(size)
    rows = bench([str(m.path) for m in data.models], list(runtimes), size, threads, BENCH_RUNS, BENCH_WARMUP,
                 BENCH_ROUNDS, log=log)
    by_path = {str(m.path): m for m in data.models}
    for row in rows:
        entry = by_path.get(row.model)
        if entry is not None and row.median_ms:
            entry.latency[row.runtime] = float(row.median_ms)
        elif entry is not None and row.note:
            data.notes.append(f"{entry.name} on {row.runtime}: {row.note}")

