"""``slimdepth train``: train a recipe into a run directory, resumable."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from slimdepth.commands.common import console, print_final_checkpoint, print_run_result
from slimdepth.errors import ConfigError


def train(
    config: Path = typer.Argument(None, help="YAML recipe (see configs/); optional with --resume."),
    out: Path = typer.Option(None, "--out", help="Run directory (default: runs/<recipe name>)."),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe value: KEY=VALUE (dotted keys, YAML values); repeatable."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
) -> None:
    """Train a depth network; checkpoints, metrics, logs and samples go to the run directory."""
    from slimdepth.train.run import prepare_run, run_training  # lazy: keeps `slimdepth --help` fast

    if config is None and not resume:
        raise ConfigError("give a recipe (e.g. configs/quickstart.yaml), or --resume --out RUN_DIR")
    run, cfg = prepare_run(config, out, set_, resume)
    if cfg.get("distill"):
        raise ConfigError("this recipe has a distill: section; run it with `slimdepth distill RECIPE --teacher CKPT`")
    main_process = os.environ.get("RANK", "0") == "0"  # under torchrun, rank 0 reports
    if main_process:
        console.print(f"run directory: {run}")
    summary = run_training(cfg, run, resume)
    if not main_process:
        return
    print_run_result("", summary)
    print_final_checkpoint(run)
