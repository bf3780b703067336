"""``slimdepth pipeline``: teacher -> student -> distill -> compress -> fine-tune -> export ->
evaluate -> report, each stage a run directory under ``--out``, resumable."""

from __future__ import annotations

from pathlib import Path

import typer

from slimdepth.commands.common import console


def pipeline(
    config: Path = typer.Argument(None, help="Pipeline YAML (see configs/pipeline_quick.yaml); optional with --resume."),
    out: Path = typer.Option(..., "--out", help="Pipeline directory: one run directory per stage, pipeline.json."),
    set_: list[str] = typer.Option([], "--set", help="Override a pipeline value: KEY=VALUE (e.g. "
                                   "teacher.set.train.steps=100, budget_ms=4); repeatable."),
    resume: bool = typer.Option(False, "--resume", help="Continue the pipeline in --out: skip finished stages, "
                                "continue a stopped one."),
) -> None:
    """Run the whole chain from a latency budget to an exported, evaluated model."""
    # lazy: torch and the training machinery load only when the verb runs (`slimdepth --help` stays fast)
    from slimdepth.pipeline.run import prepare_pipeline, run_pipeline
    from slimdepth.train.run import fit_with_progress

    cfg = prepare_pipeline(config, out, set_, resume)  # every check before any work
    console.print(f"pipeline directory: {out}")
    run_pipeline(cfg, out, resume, log=lambda message: console.print(message, markup=False), fit=fit_with_progress)
