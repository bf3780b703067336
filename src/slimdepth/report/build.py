"""``write_report``: from run, pipeline, checkpoint and exported-model paths to one report file.

Order of work: check every option and path (nothing is measured before the inputs are known to
be usable, and an existing output is never replaced unless asked) -> read what the runs recorded
(:mod:`~slimdepth.report.collect`) -> measure what is missing (:mod:`~slimdepth.report.measure`)
-> draw (:mod:`~slimdepth.report.plots`, :mod:`~slimdepth.report.samples`,
:mod:`~slimdepth.report.real`) -> write HTML or Markdown atomically.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from slimdepth.data.base import DepthDataset
from slimdepth.errors import ConfigError
from slimdepth.fileio import atomic_path
from slimdepth.options import check_number, parse_size
from slimdepth.report.collect import ModelEntry, ReportData, collect
from slimdepth.report.html import render_html
from slimdepth.report.markdown import render_markdown
from slimdepth.report.measure import ModelCache, evaluation_data, fill_costs, fill_latency, fill_metrics
from slimdepth.report.plots import tradeoff_plot, training_curves
from slimdepth.report.real import open_real_frames, real_frame_sheets
from slimdepth.report.samples import NUM_SAMPLES, sample_sheets
from slimdepth.report.table import runtimes_of

__all__ = ["FORMATS", "build_report", "write_report"]

#: output formats and the file suffixes each accepts
FORMATS = {"html": (".html", ".htm"), "md": (".md", ".markdown")}


def check_report_options(out: Path, fmt: str, real_num: int, runtimes: Sequence[str], overwrite: bool) -> list[str]:
    """Check the options that need no model (a one-line ConfigError each); returns the runtimes."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be html or md, got {fmt!r}")
    if Path(out).suffix.lower() not in FORMATS[fmt]:
        raise ConfigError(f"{out}: a {fmt} report must end with {' or '.join(FORMATS[fmt])}")
    if Path(out).exists() and not overwrite:
        raise ConfigError(f"{out}: already exists; pass --overwrite to replace it")
    check_number(real_num, "--real-num", integer=True, low=1)
    if not runtimes:
        return []
    from slimdepth.deploy.bench import parse_runtimes  # lazy: it pulls in the exporters

    return parse_runtimes(runtimes)


def build_report(inputs: Sequence[Path], fmt: str = "html", real: Path | None = None, real_num: int = 8,
                 runtimes: Sequence[str] = (), size: tuple[int, int] | None = None, data: str | None = None,
                 threads: int = 2, log: Callable[[str], None] | None = None) -> ReportData:
    """Collect, measure and draw everything the report shows (see :func:`write_report`)."""
    say = log or (lambda message: None)
    real_frames = open_real_frames(Path(real)) if real is not None else None  # a bad folder fails first
    report = collect([Path(p) for p in inputs])
    cache = ModelCache(size)
    evaluation = evaluation_data(data, report)
    dataset, spec = evaluation if evaluation is not None else (None, "")
    fill_metrics(report, cache, dataset, spec, every=bool(data), log=say)
    fill_costs(report, cache)
    fill_latency(report, runtimes, size, threads, say)
    if fmt == "md":  # a table only: no pictures to draw, but real-frame metrics are numbers
        if real_frames is not None:
            _real(report, cache, real_frames, real_num, say)
        return report
    plots = []
    for runtime in runtimes_of(report):
        budget = report.budget_ms if report.budget_runtime in (None, runtime) else None
        png = tradeoff_plot(report.models, runtime, budget)
        if png is not None:
            plots.append((f"accuracy against latency on {runtime}", png))
    report.figures["tradeoff"] = plots
    report.figures["curves"] = [(f"{run.name}: training loss and validation", png) for run in report.runs
                                if (png := training_curves(run)) is not None]
    if dataset is not None and len(dataset):
        say(f"drawing sample predictions on {spec}")
        report.figures["samples"] = sample_sheets(_present(report), cache, dataset, NUM_SAMPLES)
        report.figure_notes["samples"] = (f"{min(NUM_SAMPLES, len(dataset))} images of {spec}: "
                                          "image | prediction | ground truth | abs-rel error")
    if real_frames is not None:
        _real(report, cache, real_frames, real_num, say)
    return report


def _present(report: ReportData) -> list[ModelEntry]:
    """The models whose file is still there (a pipeline's results may name a file moved since);
    a note names the others once."""
    missing = [m for m in report.models if not m.path.exists()]
    note = f"not drawn (file gone): {', '.join(f'{m.name} ({m.path})' for m in missing)}"
    if missing and note not in report.notes:
        report.notes.append(note)
    return [m for m in report.models if m.path.exists()]


def _real(report: ReportData, cache: ModelCache, frames: DepthDataset, num: int, say: Callable[[str], None]) -> None:
    models = _present(report)
    say(f"predicting {min(num, len(frames))} real frames with {len(models)} models")
    report.figures["real"], report.figure_notes["real"] = real_frame_sheets(models, cache, frames, num)


def write_report(inputs: Sequence[Path], out: Path, fmt: str = "html", real: Path | None = None, real_num: int = 8,
                 runtimes: Sequence[str] = (), size: tuple[int, int] | str | None = None, log: Callable[[str], None] | None = None,
                 *, data: str | None = None, threads: int = 2, overwrite: bool = False) -> Path:
    """Write the report of ``inputs`` (run directories, pipeline directories, checkpoints, exported
    files) to ``out`` as a self-contained HTML page (``fmt="html"``) or a Markdown table (``"md"``).

    ``real``: a KITTI raw folder whose frames every model predicts (``real_num`` of them), scored
    against the projected Velodyne depth; ``runtimes``: measure each model's latency on these at
    ``size`` (default: the pipeline's latency size, else the model's input size); ``data``: a
    dataset spec to evaluate every model and draw samples on (default: the recipe's validation
    set, used for samples and for models that recorded no metrics). An existing ``out`` is an
    error unless ``overwrite``. Returns ``out``.
    """
    out = Path(out)
    chosen = check_report_options(out, fmt, real_num, runtimes, overwrite)
    if not out.parent.is_dir():
        raise ConfigError(f"{out.parent}: output directory does not exist")
    input_size = parse_size(size, "--size") if size is not None else None
    report = build_report(inputs, fmt, real, real_num, chosen, input_size, data, threads, log)
    text = render_html(report) if fmt == "html" else render_markdown(report)
    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return out
