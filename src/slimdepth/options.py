"""Parsing of small option values shared by the CLI, configs and dataset specs."""

from __future__ import annotations

from slimdepth.errors import ConfigError


def parse_size(value: str | tuple[int, int] | list[int], what: str = "size") -> tuple[int, int]:
    """Parse ``"HxW"`` (or a 2-sequence) into positive ``(height, width)``."""
    if isinstance(value, (tuple, list)):
        parts = list(value)
    else:
        parts = str(value).lower().replace("×", "x").split("x")
    try:
        if len(parts) != 2:
            raise ValueError
        h, w = int(parts[0]), int(parts[1])
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be HxW (e.g. 192x640), got {value!r}") from None
    if h <= 0 or w <= 0:
        raise ConfigError(f"{what} must be positive, got {h}x{w}")
    return h, w
