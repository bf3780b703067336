"""Parsing of small option values shared by the CLI, configs and dataset specs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from slimdepth.errors import ConfigError

if TYPE_CHECKING:  # torch is imported lazily: option parsing stays light
    import torch


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


def resolve_device(name: object = "auto") -> "torch.device":
    """``auto`` (GPU when there is one), ``cpu``, ``cuda`` or ``cuda:N``; a clear error otherwise."""
    import torch

    if isinstance(name, torch.device):
        return name
    text = str(name)
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(text)
    except RuntimeError:
        raise ConfigError(f"unknown device {text!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {text!r} asked for, but no GPU is available")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported device {text!r}; use cpu, cuda or cuda:N")
    return device
