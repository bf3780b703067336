"""``slimdepth distill``: teach a student recipe from a frozen teacher into a run directory, resumable."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from slimdepth.commands.common import console, print_final_checkpoint, print_run_result
from slimdepth.errors import ConfigError

_STAGE_NAMES = {"stage1": "stage 1 (ground truth)", "distill": "distillation"}


def distill(
    config: Path = typer.Argument(None, help="Student recipe (YAML, with an optional distill: section); optional with --resume."),
    teacher: str = typer.Option(None, "--teacher", help="Teacher checkpoint or run directory (overrides distill.teacher)."),
    out: Path = typer.Option(None, "--out", help="Run directory (default: runs/<recipe name>)."),
    unlabeled: str = typer.Option(None, "--unlabeled", help="Auxiliary unlabeled images: a dataset spec, e.g. unlabeled:DIR or synthetic,num=4000,seed=1,labels=false."),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe value: KEY=VALUE (e.g. distill.unlabeled_ratio=0.5); repeatable."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out where it stopped."),
) -> None:
    """Distil a teacher into a student: ground truth + response/feature/affinity terms, with unlabeled images."""
    from slimdepth.distill.run import prepare_distill_run, run_distillation  # lazy: keeps `slimdepth --help` fast
    from slimdepth.train.run import fit_with_progress

    if config is None and not resume:
        raise ConfigError("give a student recipe (e.g. configs/distill_litedepth_synthetic.yaml), or --resume --out RUN_DIR")
    run, cfg = prepare_distill_run(config, out, set_, resume, teacher=teacher, unlabeled=unlabeled)
    main_process = os.environ.get("RANK", "0") == "0"
    d = cfg["distill"]
    if main_process:
        terms = ", ".join(t.get("type", "?") for t in d["terms"]) or "none"
        console.print(f"run directory: {run}\nteacher: {d['teacher']}\nterms: {terms}; unlabeled: "
                      f"{d['unlabeled'] or 'none'}; schedule: {d['schedule']}")
    summary = run_distillation(cfg, run, resume, fit=fit_with_progress)
    if not main_process:
        return
    for stage, result in summary.items():
        print_run_result(f"{_STAGE_NAMES.get(stage, stage)}: ", result)
    print_final_checkpoint(run)
