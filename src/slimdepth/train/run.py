"""Preparing a run directory from a recipe and running the trainer with a progress bar."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from slimdepth.errors import ConfigError
from slimdepth.train.config import apply_overrides, load_config, merge_defaults, validate_config
from slimdepth.train.recipe import DEFAULTS, SCHEMA
from slimdepth.train.trainer import Trainer


def resolve_config(path: Path | None, overrides: list[str], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """Recipe file (or ``base``) + defaults + ``--set`` overrides, validated."""
    raw = load_config(path) if path is not None else dict(base or {})
    if path is not None and not raw:
        raise ConfigError(f"{path}: the recipe is empty (see configs/quickstart.yaml for one)")
    cfg = merge_defaults(apply_overrides(raw, overrides), DEFAULTS)
    validate_config(cfg, SCHEMA)
    return cfg


def run_directory(config: Path | None, out: Path | None) -> Path:
    """``--out``, or ``runs/<recipe name>``; a path that is a file is refused."""
    if out is None:
        if config is None:
            raise ConfigError("--resume needs --out RUN_DIR")
        out = Path("runs") / config.stem
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory; choose another --out")
    return out


def check_new_run(out: Path) -> None:
    """A new run never reuses a directory that holds anything."""
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: run directory exists and is not empty; pass --resume to continue it or choose another --out")


def prepare_run(config: Path | None, out: Path | None, overrides: list[str], resume: bool) -> tuple[Path, dict[str, Any]]:
    """Decide the run directory and the resolved config; never reuse a run without --resume."""
    out = run_directory(config, out)
    if resume:
        if overrides:
            raise ConfigError("--resume continues the run with its saved recipe; --set would change it mid-way "
                              "(the learning-rate schedule depends on the length): start a new run instead")
        saved = out / "config.yaml"
        last = out / "checkpoints" / "last.state.json"
        if not last.is_file():
            raise ConfigError(f"{out}: no checkpoint to resume from (expected {last})")
        cfg = resolve_config(None, overrides, load_config(saved)) if config is None else resolve_config(config, overrides)
        if config is not None and saved.is_file():
            previous = resolve_config(saved, [])
            if previous != cfg:
                raise ConfigError(f"{out}: the recipe differs from the one the run started with; resume without a "
                                  "recipe to use the saved one, or start a new run with another --out")
        return out, cfg
    check_new_run(out)
    return out, resolve_config(config, overrides)


def train_or_reuse(config: Path, out: Path, overrides: Sequence[str] = ()) -> str:
    """Make ``out`` a finished run of the recipe ``config`` (+ ``overrides``): train it, continue it
    from its last checkpoint when it stopped early, or leave it when it is finished.

    Returns what happened: ``"trained"``, ``"resumed"`` or ``"reused"``. Scripts that need a
    trained model call this, so that running them again never trains twice; a directory that
    holds a run of another recipe (or other ``--set`` values) is refused, never overwritten.
    """
    cfg = resolve_config(config, list(overrides))
    if cfg.get("distill"):
        raise ConfigError(f"{config}: a distill recipe; train it with `slimdepth distill RECIPE --teacher CKPT`")
    out = run_directory(config, out)
    if (out / "checkpoints" / "last.state.json").is_file():
        saved = out / "config.yaml"
        if not saved.is_file() or resolve_config(saved, []) != cfg:
            raise ConfigError(f"{out}: holds a run of another recipe or other --set values; choose another "
                              "run directory (or repeat the recipe and --set values it was started with)")
        trainer = Trainer(cfg, out, resume=True)
        if trainer.step >= trainer.total_steps:
            return "reused"
        fit_with_progress(trainer)
        return "resumed"
    check_new_run(out)
    fit_with_progress(Trainer(cfg, out))
    return "trained"


def run_training(cfg: dict[str, Any], run: Path, resume: bool, stop_after: int | None = None) -> dict[str, Any]:
    """Train with a rich progress bar showing loss, lr and images/s."""
    return fit_with_progress(Trainer(cfg, run, resume=resume, stop_after=stop_after))


def fit_with_progress(trainer: Any, label: str = "training") -> dict[str, Any]:
    """Run ``trainer.fit()`` under a rich progress bar (loss, lr, images/s); rank 0 only draws."""
    columns = (TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    if not trainer.dist.main:
        return trainer.fit()
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(label, total=trainer.total_steps, completed=trainer.step, info="")

        def update(info: dict[str, Any]) -> None:
            rate = f"  {info['rate']:.1f} img/s" if info.get("rate") else ""
            bar.update(task, completed=info["step"], info=f"loss {info['loss']:.4f}  lr {info['lr']:.2e}{rate}")

        trainer.progress = update
        return trainer.fit()
