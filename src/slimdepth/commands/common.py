"""Helpers shared by CLI verbs: output-file safety and console printing."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

from slimdepth.errors import ConfigError

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def check_output_file(path: Path, overwrite: bool, suffixes: tuple[str, ...] = ()) -> Path:
    """Refuse an output file that cannot be written, before any work: a wrong suffix, a folder
    in the way, an existing file (unless ``overwrite``), a missing or unwritable folder."""
    if suffixes and path.suffix.lower() not in suffixes:
        raise ConfigError(f"{path}: output must end with {' or '.join(suffixes)}")
    if path.exists() and path.is_dir():
        raise ConfigError(f"{path}: is a directory, expected a file name")
    if path.exists() and not overwrite:
        raise ConfigError(f"{path}: already exists; pass --overwrite to replace it")
    if not path.parent.exists():
        raise ConfigError(f"{path.parent}: output directory does not exist")
    if not path.parent.is_dir():
        raise ConfigError(f"{path.parent}: is a file, not a directory")
    try:  # a real probe: permission bits say nothing to root or on a read-only mount
        fd, probe = tempfile.mkstemp(prefix=".slimdepth-probe.", dir=path.parent)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write into {path.parent} ({exc.strerror or type(exc).__name__})") from None
    os.close(fd)
    os.unlink(probe)
    return path


def warn(message: str) -> None:
    """Print a one-line warning on stderr."""
    err_console.print(f"warning: {message}", markup=False)


def print_run_result(label: str, summary: dict[str, Any] | None) -> None:
    """One line with a training stage's last validation (nothing when it validated none)."""
    if summary:
        m = summary["metrics"]
        console.print(f"{label}validation after {summary['step']} steps: d1 {m['d1']:.3f}  AbsRel {m['abs_rel']:.3f}  "
                      f"RMSE {m['rmse']:.3f}")


def print_final_checkpoint(run: Path) -> None:
    """Where a run's model is: its best checkpoint, else its last."""
    best = run / "checkpoints" / "best.safetensors"
    console.print(f"best checkpoint: {best}" if best.is_file() else f"last checkpoint: {run / 'checkpoints' / 'last.safetensors'}")
