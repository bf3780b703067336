"""The report as one self-contained HTML page: inline CSS, images as base64 PNG data URIs, no
script and no external resource, so the file can be mailed, archived or opened offline.

Every piece of text from a file or a name is escaped (:func:`html.escape`); numbers in the
tables carry their exact value in ``data-value``.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
from collections.abc import Sequence
from pathlib import Path

from slimdepth.report.collect import SETTINGS_FILES, ReportData, RunInfo, read_json
from slimdepth.report.table import Cell, model_table, real_table
from slimdepth.version import __version__

__all__ = ["render_html", "settings_of"]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1700px;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:1em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.3em .6em}th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1em 0}figcaption{font-size:.9em;color:#555;margin-bottom:.3em}
img{max-width:100%;height:auto;border:1px solid #eee}
details{margin:.5em 0}summary{cursor:pointer;font-weight:600}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.85em}
.note{color:#555;font-size:.9em}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _table(header: Sequence[str], rows: Sequence[Sequence[Cell]], css_id: str) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for text, value in row:
            if value is None:
                cells.append(f"<td>{_e(text)}</td>")
            else:
                cells.append(f'<td class="num" data-value="{_e(repr(value))}">{_e(text)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table id="{css_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _figures(items: Sequence[tuple[str, bytes]]) -> str:
    out = []
    for caption, png in items:
        uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        out.append(f'<figure><figcaption>{_e(caption)}</figcaption><img src="{uri}" alt="{_e(caption)}"></figure>')
    return "\n".join(out)


def settings_of(run: RunInfo) -> list[tuple[str, str]]:
    """(file name, text) of the settings a run directory records: its recipe (``config.yaml``),
    the distillation recipe (``distill.yaml``), and the prune settings of ``prune.json``."""
    out = [(name, (run.path / name).read_text(errors="replace")) for name in SETTINGS_FILES
           if (run.path / name).is_file()]
    if (run.path / "prune.json").is_file():
        state = read_json(run.path / "prune.json")
        settings = state.get("settings") if isinstance(state, dict) else None
        out.append(("prune.json: settings", json.dumps(settings, indent=2)))
    return out


def _section(title: str, body: str, anchor: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>\n{body}\n</section>'


def render_html(data: ReportData) -> str:
    """The whole page: table of models, accuracy-against-latency plots, training curves, sample
    predictions, real frames and every stage's settings (each section only when it has content)."""
    sections = []
    header, rows = model_table(data)
    intro = "".join(f'<p class="note">{_e(n)}</p>' for n in data.notes)
    sections.append(_section("Models", _table(header, rows, "models") + intro, "models"))
    if data.figures.get("tradeoff"):
        budget = (f"Dashed line: the latency budget, {data.budget_ms:g} ms on {data.budget_runtime or 'the target runtime'}."
                  if data.budget_ms is not None else "No latency budget was given.")
        size = f" at {data.latency_size[0]}x{data.latency_size[1]}" if data.latency_size else ""
        body = f'<p class="note">Median batch-1 latency{_e(size)}. {_e(budget)}</p>' + _figures(data.figures["tradeoff"])
        sections.append(_section("Accuracy against latency", body, "tradeoff"))
    if data.figures.get("curves"):
        sections.append(_section("Training curves", _figures(data.figures["curves"]), "curves"))
    if data.figures.get("samples"):
        body = (f'<p class="note">{_e(data.figure_notes.get("samples", ""))}</p>'
                + _figures(data.figures["samples"]))
        sections.append(_section("Sample predictions", body, "samples"))
    if data.figures.get("real"):
        rheader, rrows = real_table(data.models)
        body = f'<p class="note">{_e(data.figure_notes.get("real", ""))}</p>' + _table(rheader, rrows, "real-metrics") + _figures(data.figures["real"])
        sections.append(_section("Real frames", body, "real"))
    blocks = [f"<details><summary>{_e(title)}</summary><pre>{_e(text)}</pre></details>"
              for title, text in data.pipeline_settings.items()]
    for run in data.runs:
        for name, text in settings_of(run):
            blocks.append(f"<details><summary>{_e(run.name)}: {_e(name)}</summary><pre>{_e(text)}</pre></details>")
    if blocks:
        sections.append(_section("Settings of each stage", "\n".join(blocks), "settings"))
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    sources = ", ".join(str(Path(p)) for p in data.sources)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>slimdepth report</title><style>{_CSS}</style></head>\n<body>\n"
        f"<h1>slimdepth report</h1><p class=\"note\">{_e(sources)} · written {_e(when)} by slimdepth {_e(__version__)}</p>\n"
        + "\n".join(sections) + "\n</body></html>\n"
    )
