"""Helpers shared by CLI verbs: output-file safety and console printing."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from slimdepth.errors import ConfigError

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def check_output_file(path: Path, overwrite: bool, suffixes: tuple[str, ...] = ()) -> Path:
    """Refuse to replace an existing file unless ``overwrite``; check the suffix and folder."""
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
    return path
