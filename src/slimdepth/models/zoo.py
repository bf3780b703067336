"""The model zoo: every architecture of the five methods, by name.

``build_model(name, **options)`` builds one; ``list_models()`` lists them. Each architecture lives
in a module of its own (:mod:`~slimdepth.models.unet`, :mod:`~slimdepth.models.litedepth`,
:mod:`~slimdepth.models.tiny_multires`, :mod:`~slimdepth.models.fastdepth`) and registers itself
in :data:`MODELS` with :func:`register_model`; this module is the leaf they import, and the
``slimdepth.models`` package imports them, so the zoo is full whenever it is used.

Every model takes the raw [0, 1] image, normalises it itself, and returns depth in metres at the
input size (see :mod:`slimdepth.models.base`). Options are checked against the constructor's
signature before anything is built, and each constructor checks its values (positive widths,
bounded sizes), so a bad option is a one-line :class:`ConfigError`, never a failure inside torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from slimdepth.errors import ConfigError, DataError
from slimdepth.models.base import DepthModel
from slimdepth.options import check_number
from slimdepth.registry import Registry

__all__ = ["MAX_WIDTH", "MODELS", "build_model", "check_widths", "list_models", "register_model"]

#: the zoo's architectures by name
MODELS = Registry("model")
#: the widest layer a width option may ask for (the zoo's widest is 2048)
MAX_WIDTH = 4096


def register_model(name: str, description: str) -> Callable:
    """Decorator adding a model class to the zoo under ``name``."""
    return MODELS.register(name, description)


def list_models() -> dict[str, str]:
    """Zoo names and one-line descriptions."""
    return MODELS.descriptions()


def build_model(name: str, **options: Any) -> DepthModel:
    """Build zoo model ``name``; unknown names or options and bad values are a :class:`ConfigError`."""
    MODELS.check(name, options)
    try:
        return MODELS.get(name)(**options)
    except DataError:  # a file the options name (ImageNet weights) is at fault: its message names it
        raise
    except (TypeError, ValueError) as exc:  # the constructor's own checks (ConfigError) included
        given = ", ".join(f"{k}={v!r}" for k, v in options.items())
        raise ConfigError(f"model {name!r}: bad option value among {given} ({str(exc).splitlines()[0]})") from None


def check_widths(value: Any, what: str, count: int | None = None) -> tuple[int, ...]:
    """A list of ``count`` channel widths, each an integer in 1..:data:`MAX_WIDTH`."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or (count is not None and len(value) != count):
        raise ConfigError(f"{what} must be a list of {count or 'some'} channel widths, got {value!r}")
    return tuple(check_number(v, f"{what}[{i}]", integer=True, low=1, high=MAX_WIDTH) for i, v in enumerate(value))
