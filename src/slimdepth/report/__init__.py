"""Reports: every model of a study or a pipeline on one page (or one Markdown table).

``write_report(inputs, out)`` reads run and pipeline directories, checkpoints and exported files,
measures what they did not record, and writes a self-contained HTML page: the table of models
(parameters, MACs, size, latency per runtime, δ1, AbsRel, RMSE), accuracy against latency with
the budget, training curves, sample predictions with error maps, predictions on real KITTI
frames, and each stage's settings. One job per module: ``collect`` (reading), ``measure``
(cost, accuracy, latency), ``plots``, ``samples``, ``real``, ``table``, ``html``, ``markdown``,
``build`` (the order of work). ``sim_to_real`` scores synthetic-trained models (and a flat-road
baseline) on every real KITTI frame, for ``benchmarks/sim_to_real.py``.

Names are imported lazily, so importing the package stays light.
"""

from __future__ import annotations

from slimdepth.lazy import lazy_exports

_EXPORTS = {
    "build": ("FORMATS", "build_report", "write_report"),
    "collect": ("ModelEntry", "ReportData", "RunInfo", "collect"),
}
__all__ = sorted(name for names in _EXPORTS.values() for name in names)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
