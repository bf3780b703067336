"""What a report is made of: the models, the runs that made them, and what they recorded.

Takes the paths a user gives ``slimdepth report`` and reads, without running anything:

* a *run directory* (``train``, ``distill`` or ``prune``: ``config.yaml`` / ``prune.json``,
  ``log.csv``, ``metrics.json``, ``checkpoints/``) -> one model (its best checkpoint, with the
  best validation metrics the run recorded) and one run (curves, settings);
* a *pipeline directory* (``pipeline.json``, ``evaluate/results.json``) -> one model per row of
  ``results.json`` (with the latency, cost and accuracy the evaluate stage measured) and one run
  per training, distillation or prune stage; before the evaluate stage has finished, one model
  per stage run instead;
* a checkpoint (``.safetensors`` + ``.json``) or an exported file (``.onnx``, ``.tflite``,
  ``.xml``) -> one model with nothing recorded yet.

What is missing (parameters, MACs, metrics, latency) is measured later by
:mod:`slimdepth.report.measure`. Every unusable path is a one-line ConfigError/DataError.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from slimdepth.deploy.formats import format_of, report_path
from slimdepth.errors import ConfigError, DataError
from slimdepth.fileio import read_json

__all__ = ["ModelEntry", "ReportData", "RunInfo", "collect", "is_pipeline_dir", "is_run_dir"]

#: the accuracy columns of the table (keys of slimdepth's metric dicts)
ACCURACY_KEYS = ("d1", "abs_rel", "rmse")
#: files of a run directory that hold its settings, shown in the report as they are
SETTINGS_FILES = ("config.yaml", "distill.yaml")
#: pipeline stage kinds that are run directories with curves and settings
RUN_KINDS = ("train", "distill", "prune")


@dataclass
class RunInfo:
    """A run directory shown with its curves and settings."""

    name: str
    path: Path
    kind: str  # train | distill | prune


@dataclass
class ModelEntry:
    """One row of the report's table: a model file and what is known about it."""

    name: str
    path: Path  # a run directory, a checkpoint or an exported file
    kind: str  # train | distill | prune | checkpoint | export, or a pipeline row's stage
    run: Path | None = None  # the run directory it came from, if any
    params: int | None = None
    macs: int | None = None
    size_mb: float | None = None
    input_size: tuple[int, int] | None = None
    latency: dict[str, float] = field(default_factory=dict)  # runtime -> median ms, batch 1
    predicted: dict[str, float] = field(default_factory=dict)  # runtime -> a latency table's prediction (ms)
    metrics: dict[str, float] | None = None
    metrics_source: str = ""  # where the metrics come from, in words
    real_metrics: dict[str, dict[str, float]] | None = None  # "median-scaled" / "metric" -> metrics on real frames

    @property
    def exported(self) -> bool:
        return format_of(self.path) is not None


@dataclass
class ReportData:
    """Everything the writers show: models, runs, the budget and the pictures made for them."""

    models: list[ModelEntry]
    runs: list[RunInfo]
    sources: list[Path]
    budget_ms: float | None = None
    budget_runtime: str | None = None
    latency_size: tuple[int, int] | None = None
    pipeline_settings: dict[str, str] = field(default_factory=dict)  # title -> text
    notes: list[str] = field(default_factory=list)
    figures: dict[str, list[tuple[str, bytes]]] = field(default_factory=dict)  # section -> [(caption, PNG bytes)]
    figure_notes: dict[str, str] = field(default_factory=dict)  # section -> a line on what it shows


def is_pipeline_dir(path: Path) -> bool:
    """A directory written by ``slimdepth pipeline`` (it holds ``pipeline.json``)."""
    return path.is_dir() and (path / "pipeline.json").is_file()


def is_run_dir(path: Path) -> bool:
    """A training, distillation or prune run directory."""
    if not path.is_dir():
        return False
    marks = ("config.yaml", "prune.json", "metrics.json")
    return any((path / m).is_file() for m in marks) and (path / "checkpoints").is_dir()


def run_kind(path: Path) -> str:
    """``prune``, ``distill`` or ``train``, from the files a run directory holds."""
    if (path / "prune.json").is_file():
        return "prune"
    if (path / "distill.yaml").is_file():
        return "distill"
    return "train"


def best_validation(run: Path) -> dict[str, float] | None:
    """The best validation metrics a run recorded in ``metrics.json`` (None when it has none)."""
    path = run / "metrics.json"
    if not path.is_file():
        return None
    info = read_json(path)
    best = info.get("best") if isinstance(info, dict) else None
    metrics = best.get("metrics") if isinstance(best, dict) else None
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))} if isinstance(metrics, dict) else None


def recipe_val(run_or_checkpoint: Path) -> str | dict[str, Any] | None:
    """The validation dataset spec of the recipe a run or checkpoint was trained with, if recorded."""
    config: Any = None
    if run_or_checkpoint.is_dir() and (run_or_checkpoint / "config.yaml").is_file():
        try:
            config = yaml.safe_load((run_or_checkpoint / "config.yaml").read_text())
        except (OSError, yaml.YAMLError):
            config = None
    if config is None:
        sidecar = _sidecar_of(run_or_checkpoint)
        if sidecar is not None:
            config = (read_json(sidecar).get("metadata") or {}).get("train_config")
    data = config.get("data") if isinstance(config, dict) else None
    return data.get("val") if isinstance(data, dict) else None


def _sidecar_of(path: Path) -> Path | None:
    if path.is_dir():
        for tag in ("best", "last"):
            if (path / "checkpoints" / f"{tag}.json").is_file():
                return path / "checkpoints" / f"{tag}.json"
        return None
    if path.suffix in (".safetensors", ".json", ""):
        sidecar = path.with_suffix(".json")
        return sidecar if sidecar.is_file() else None
    return None


def _run_entry(path: Path, name: str) -> ModelEntry:
    metrics = best_validation(path)
    return ModelEntry(name, path, run_kind(path), run=path, metrics=metrics,
                      metrics_source="best validation of the run" if metrics else "")


def _row_entry(row: dict[str, Any], root: Path, where: Path) -> ModelEntry:
    if not isinstance(row, dict) or "name" not in row or "path" not in row:
        raise DataError(f"{where}: every row needs at least 'name' and 'path'")
    path = Path(row["path"])
    if not path.is_absolute() and (root / path).exists():  # relative to the pipeline directory, else to here
        path = root / path
    stage = str(row.get("stage") or row["name"])
    run = root / stage if (root / stage).is_dir() and is_run_dir(root / stage) else None
    metrics = {k: float(row[k]) for k in ACCURACY_KEYS if isinstance(row.get(k), (int, float))}
    entry = ModelEntry(str(row["name"]), path, stage, run=run, metrics=metrics or None,
                       metrics_source="pipeline evaluate stage" if metrics else "")
    entry.params = int(row["params"]) if isinstance(row.get("params"), int) else None
    entry.macs = int(row["macs"]) if isinstance(row.get("macs"), int) else None
    entry.size_mb = float(row["size_mb"]) if isinstance(row.get("size_mb"), (int, float)) else None
    if isinstance(row.get("latency_ms"), (int, float)) and row.get("runtime"):
        entry.latency[str(row["runtime"])] = float(row["latency_ms"])
    if isinstance(row.get("predicted_ms"), (int, float)) and row.get("runtime"):
        entry.predicted[str(row["runtime"])] = float(row["predicted_ms"])
    return entry


def _merge_rows(entries: list[ModelEntry]) -> list[ModelEntry]:
    """One entry per model name: the same model timed on several runtimes (a row per runtime in
    results.json) becomes one row with a latency column per runtime."""
    merged: dict[str, ModelEntry] = {}
    for entry in entries:
        first = merged.setdefault(entry.name, entry)
        if first is not entry:
            first.latency.update({k: v for k, v in entry.latency.items() if k not in first.latency})
            first.predicted.update({k: v for k, v in entry.predicted.items() if k not in first.predicted})
    return list(merged.values())


def _read_pipeline(root: Path, data: ReportData) -> list[ModelEntry]:
    info = read_json(root / "pipeline.json")
    if not isinstance(info, dict):
        raise DataError(f"{root / 'pipeline.json'}: expected a JSON object")
    if data.budget_ms is None and isinstance(info.get("budget_ms"), (int, float)):
        data.budget_ms = float(info["budget_ms"])
        data.budget_runtime = str(info.get("runtime") or "") or None
    if data.latency_size is None and isinstance(info.get("size"), list) and len(info["size"]) == 2:
        data.latency_size = (int(info["size"][0]), int(info["size"][1]))
    if (root / "pipeline.yaml").is_file():
        data.pipeline_settings[f"{root.name}/pipeline.yaml"] = (root / "pipeline.yaml").read_text()
    stage_runs: list[ModelEntry] = []
    for stage, item in (info.get("stages") or {}).items():
        if not isinstance(item, dict) or item.get("kind") not in RUN_KINDS or not item.get("run"):
            continue
        run = Path(item["run"])
        run = run if run.is_absolute() else root / run
        if not run.is_dir():
            run = root / stage
        if is_run_dir(run):
            data.runs.append(RunInfo(f"{root.name}/{stage}", run, str(item["kind"])))
            stage_runs.append(_run_entry(run, stage))
    results = root / "evaluate" / "results.json"
    if not results.is_file():
        data.notes.append(f"{root}: no evaluate/results.json yet; the table lists the stage runs")
        return stage_runs
    table = read_json(results)
    rows = table.get("rows") if isinstance(table, dict) else None
    if not isinstance(rows, list):
        raise DataError(f"{results}: expected an object with a 'rows' list")
    if data.budget_ms is None and isinstance(table.get("budget_ms"), (int, float)):
        data.budget_ms = float(table["budget_ms"])
    if isinstance(table.get("size"), list) and len(table["size"]) == 2:
        data.latency_size = data.latency_size or (int(table["size"][0]), int(table["size"][1]))
    return _merge_rows([_row_entry(row, root, results) for row in rows])


def collect(inputs: list[Path]) -> ReportData:
    """Read every input (see the module docstring) into one :class:`ReportData`."""
    if not inputs:
        raise ConfigError("report needs at least one run directory, pipeline directory, checkpoint or exported file")
    data = ReportData(models=[], runs=[], sources=[Path(p) for p in inputs])
    for path in map(Path, inputs):
        if is_pipeline_dir(path):
            data.models += _read_pipeline(path, data)
        elif is_run_dir(path):
            data.runs.append(RunInfo(path.name, path, run_kind(path)))
            data.models.append(_run_entry(path, path.name))
        elif path.is_dir():
            raise ConfigError(f"{path}: neither a run directory (config.yaml, metrics.json, checkpoints/) "
                              "nor a pipeline directory (pipeline.json)")
        elif format_of(path) is not None:
            if not path.is_file():
                raise ConfigError(f"{path}: no such file")
            data.models.append(ModelEntry(path.stem, path, "export"))
        elif path.suffix in (".safetensors", ".json") or path.with_suffix(".json").is_file():
            weights, sidecar = path.with_suffix(".safetensors"), path.with_suffix(".json")
            if not weights.is_file() or not sidecar.is_file():
                raise ConfigError(f"{path}: no such checkpoint (NAME.safetensors + NAME.json)")
            data.models.append(ModelEntry(weights.stem, weights, "checkpoint"))
        elif not path.exists():
            raise ConfigError(f"{path}: no such file or directory")
        else:
            raise ConfigError(f"{path}: not a run directory, pipeline directory, checkpoint (.safetensors) "
                              "or exported model (.onnx, .tflite, .xml)")
    if not data.models:
        raise DataError(f"{', '.join(map(str, inputs))}: no model to report on")
    _unique_names(data.models)
    return data


def _unique_names(models: list[ModelEntry]) -> None:
    """Two inputs with one name (two runs called ``run``) get their parent folder in front."""
    seen: dict[str, int] = {}
    for m in models:
        seen[m.name] = seen.get(m.name, 0) + 1
    for m in models:
        if seen[m.name] > 1 and m.path.parent.name:
            m.name = f"{m.path.parent.name}/{m.name}" if m.path.is_dir() else f"{m.path.parent.name}/{m.path.name}"


def export_report(path: Path) -> dict[str, Any]:
    """The metadata of an exported file's ``FILE.json`` report ({} when it has none)."""
    report = report_path(path)
    if not report.is_file():
        return {}
    info = read_json(report)
    return dict(info.get("metadata") or {}) if isinstance(info, dict) else {}
