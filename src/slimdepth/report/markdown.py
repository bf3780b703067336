"""The report as a README-ready Markdown table (no images): the models, then the real frames."""

from __future__ import annotations

from slimdepth.report.collect import ReportData
from slimdepth.report.table import Cell, model_table, real_table

__all__ = ["render_markdown"]


def _escape(text: str) -> str:
    """Cell text that cannot break the table: pipes escaped, line breaks as spaces."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _table(header: list[str], rows: list[list[Cell]]) -> list[str]:
    numeric = [i for i in range(len(header)) if any(r[i][1] is not None for r in rows)]
    lines = ["| " + " | ".join(_escape(h) for h in header) + " |",
             "|" + "|".join("---:" if i in numeric else "---" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(_escape(text) for text, _ in row) + " |" for row in rows]
    return lines


def render_markdown(data: ReportData) -> str:
    """The Markdown text: the model table, a line on latency and the budget, the real-frame table."""
    lines = _table(*model_table(data))
    if data.latency_size is not None and any(m.latency for m in data.models):
        h, w = data.latency_size
        budget = f"; budget {data.budget_ms:g} ms on {data.budget_runtime or 'the target runtime'}" if data.budget_ms else ""
        lines += ["", f"Latency: median of batch-1 runs at {h}x{w}{budget}."]
    header, rows = real_table(data.models)
    if rows:
        lines += ["", "Real frames: " + data.figure_notes.get("real", "") + ".", "", *_table(header, rows)]
    return "\n".join(lines) + "\n"
