"""The report's tables as plain cells, shared by the HTML and the Markdown writers.

A cell is ``(text, value)``: the text shown (units in the header, 3 significant decimals for
accuracy) and the exact number behind it (``None`` for text or a missing value), which the HTML
page keeps in a ``data-value`` attribute so that a script or a test can read the recorded figure.
"""

from __future__ import annotations

import math
from typing import Any

from slimdepth.report.collect import ModelEntry, ReportData
from slimdepth.report.real import SCALINGS

__all__ = ["Cell", "model_table", "real_table", "runtimes_of"]

Cell = tuple[str, Any]
#: accuracy columns: (metric key, header)
ACCURACY_COLUMNS = (("d1", "δ1"), ("abs_rel", "AbsRel"), ("rmse", "RMSE (m)"))


def _number(value: float | int | None, fmt: str, scale: float = 1.0) -> Cell:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–", None
    return format(value / scale, fmt), value


def runtimes_of(data: ReportData) -> list[str]:
    """Every runtime some model has a latency on, in order of appearance."""
    return list(dict.fromkeys(r for m in data.models for r in m.latency))


def model_table(data: ReportData) -> tuple[list[str], list[list[Cell]]]:
    """Header and rows of the main table: one row per model."""
    runtimes = runtimes_of(data)
    predicted = list(dict.fromkeys(r for m in data.models for r in m.predicted))
    header = ["model", "kind", "params (M)", "GMACs", "size (MB)", *[f"{r} (ms)" for r in runtimes],
              *[f"{r} predicted (ms)" for r in predicted], *[h for _, h in ACCURACY_COLUMNS], "accuracy from"]
    rows = []
    for m in data.models:
        row: list[Cell] = [(m.name, None), (m.kind, None), _number(m.params, ".3f", 1e6), _number(m.macs, ".3f", 1e9),
                           _number(m.size_mb, ".2f")]
        row += [_number(m.latency.get(r), ".2f") for r in runtimes]
        row += [_number(m.predicted.get(r), ".2f") for r in predicted]
        row += [_number((m.metrics or {}).get(k), ".3f") for k, _ in ACCURACY_COLUMNS]
        row.append((m.metrics_source or "–", None))
        rows.append(row)
    return header, rows


def real_table(models: list[ModelEntry]) -> tuple[list[str], list[list[Cell]]]:
    """Header and rows of the real-frame metrics: median-scaled and metric δ1, AbsRel, RMSE."""
    header = ["model"] + [f"{h} {s}" for s in SCALINGS for _, h in ACCURACY_COLUMNS]
    rows = []
    for m in models:
        if m.real_metrics is None:
            continue
        row: list[Cell] = [(m.name, None)]
        row += [_number(m.real_metrics[s].get(k), ".3f") for s in SCALINGS for k, _ in ACCURACY_COLUMNS]
        rows.append(row)
    return header, rows
