"""The pipeline's latency budget: its table measured before any training, and its predictions.

A latency table describes an architecture, not trained weights, so it can be measured on an
untrained network of the architecture the compress stage will receive (the student's) before
the first stage runs. A budget the widths cannot reach is then refused in one line at the start,
not after hours of teacher, student and distillation training; the compress stage reuses the
table (``DIR/latency_table.json``), and the evaluate stage uses it to print, beside every
measured latency of that architecture, what the table predicted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slimdepth.errors import ConfigError
from slimdepth.pipeline.config import effective_budget, pipeline_recipe, stage_mode

__all__ = ["LATENCY_TABLE", "budget_table", "predicted_ms"]

#: DIR/latency_table.json: the budget's table, measured at the start
LATENCY_TABLE = "latency_table.json"


def _compressed_architecture(ctx: Any) -> Any:
    """An untrained network of the architecture the compress stage receives (or ``None``)."""
    from slimdepth.loader import load_model
    from slimdepth.models.zoo import build_model

    for stage in ("student", "distill"):  # distill starts from the student when there is one
        mode = stage_mode(ctx.cfg, stage)
        if mode == "given":
            return load_model(ctx.cfg[stage])
        if mode == "run":
            options = dict(pipeline_recipe(ctx.cfg, stage)["model"])
            options.pop("encoder_weights", None)  # the architecture only: nothing to download or read
            return build_model(options.pop("name"), **options)
    return None


def budget_table(ctx: Any) -> Path | None:
    """Measure (or reuse) ``DIR/latency_table.json`` for the compress stage's latency budget and
    refuse an impossible budget; ``None`` when there is no latency budget, the pipeline names a
    table of its own, or the deployed size is only known later."""
    budget = effective_budget(ctx.cfg)
    compress = ctx.cfg.get("compress") or {}
    if budget is None or compress.get("latency_table") or not ctx.cfg["size"]:
        return None
    from slimdepth.compress.latency_cost import LatencyCost
    from slimdepth.compress.latency_prune import check_budget
    from slimdepth.compress.latency_table import LatencyTable, build_latency_table
    from slimdepth.progress import progress_bar

    path = ctx.out / LATENCY_TABLE
    size = tuple(ctx.cfg["size"])
    model = _compressed_architecture(ctx)
    if model is None:
        return None
    if path.is_file():
        table = LatencyTable.load(path)
    else:
        runtime, threads = ctx.cfg["runtime"], int(ctx.cfg["threads"])
        ctx.log(f"latency table: {runtime} at {size[0]}x{size[1]}, {threads} threads (before any training: a budget "
                "the widths cannot reach is refused now)")
        with progress_bar("timing layers", "widths") as update:
            table = build_latency_table(model.eval(), runtime, size, threads, name="the compressed architecture",
                                        log=ctx.log, progress=update)
        table.save(path)
    check_budget(LatencyCost.of_model(table, model, size), budget)
    return path


def predicted_ms(table: Any, path: str) -> float | None:
    """The table's prediction for the model at ``path`` (``None`` for another architecture)."""
    if table is None:
        return None
    from slimdepth.loader import load_model

    try:
        return float(table.predict_model(load_model(path)))
    except ConfigError:  # the teacher, or any network the table was not measured on
        return None
