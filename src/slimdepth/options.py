"""Checking the small values that options, recipes, sidecars and dataset specs carry.

One validator per kind of value, shared by every layer, so that the same mistake gets the
same one-line :class:`~slimdepth.errors.ConfigError` wherever it is made:

* :func:`check_number` -- a finite number (or an integer) within bounds;
* :func:`parse_size` -- an image size ``HxW`` within :data:`MAX_SIDE`;
* :func:`suggest` -- the "did you mean" hint of a misspelt name;
* :func:`resolve_device` -- ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

Nothing here imports torch at module level: the CLI parses its options before it loads a model.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from slimdepth.errors import ConfigError

if TYPE_CHECKING:  # torch is imported lazily: option parsing stays light
    import torch

__all__ = ["MAX_SIDE", "MAX_THREADS", "check_number", "check_threads", "parse_size", "resolve_device", "suggest"]

#: the most CPU threads a timing or training run may ask for (far more than any machine has;
#: torch.set_num_threads crashes the process on absurd values)
MAX_THREADS = 1024
#: the largest image side (pixels) slimdepth accepts as a model input or frame size: 8K frames
#: fit, a mistyped 99999 is refused before it reaches the allocator
MAX_SIDE = 8192


def suggest(name: str, candidates: Iterable[str], prefix: str = "") -> str:
    """`` (did you mean 'x'?)`` for the closest candidate (shown after ``prefix``), or ``""``."""
    matches = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f" (did you mean {prefix + matches[0]!r}?)" if matches else ""


def _yaml_hint(value: Any) -> str:
    """A hint for numbers YAML read as text (PyYAML reads ``1e-3`` as a string); none for text
    such as ``nan`` or ``inf``, which Python reads as a float but which writing 1.0e-3 does not
    describe (YAML spells them ``.nan`` and ``.inf``)."""
    if not isinstance(value, str):
        return ""
    try:
        number = float(value)
    except ValueError:
        return ""
    return " (YAML reads 1e-3 as text: write 1.0e-3)" if math.isfinite(number) else ""


def check_number(value: Any, what: str, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, integer: bool = False,
                 finite: bool = True, expected: str | None = None) -> Any:
    """``value`` as a ``float`` (an ``int`` with ``integer``) if it is a number within the bounds.

    ``low``/``high`` bound it (``low_open``/``high_open`` exclude the bound itself); booleans are
    never numbers, and NaN never passes. ``finite=False`` admits infinities. A violation is a
    one-line :class:`ConfigError` naming ``what`` and the bound it broke (``lr must be > 0, got
    -1``), or, for a number out of bounds, ``expected`` (``"positive"``, ``"in [0, 1]"``) when the
    caller words the domain itself. An integer bounded below by 0 or 1 only is "a non-negative" or
    "a positive integer".
    """
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    kind = "an integer"
    if integer and high is None and low in (0, 1) and expected is None:  # say it in words
        kind = expected = "a positive integer" if low == 1 or low_open else "a non-negative integer"
    if integer and not (isinstance(value, numbers.Integral) and not isinstance(value, bool)):
        raise ConfigError(f"{what} must be {kind}, got {value!r}")
    if not real:
        kind = "a finite number" if finite else "a number"
        raise ConfigError(f"{what} must be {kind}, got {value!r}{_yaml_hint(value)}")
    number = int(value) if integer else float(value)
    if math.isnan(number) or (finite and math.isinf(number)):
        raise ConfigError(f"{what} must be a finite number, got {value!r}")
    if low is not None and (number <= low if low_open else number < low):
        raise ConfigError(f"{what} must be {expected or ('>' if low_open else '>=') + f' {low:g}'}, got {value!r}")
    if high is not None and (number >= high if high_open else number > high):
        raise ConfigError(f"{what} must be {expected or ('<' if high_open else '<=') + f' {high:g}'}, got {value!r}")
    return number


def check_threads(value: Any, what: str = "--threads") -> int:
    """A thread count: an integer in 1..:data:`MAX_THREADS` (a one-line ConfigError otherwise)."""
    return check_number(value, what, integer=True, low=1, high=MAX_THREADS)


def parse_size(value: str | int | tuple[int, int] | list[int], what: str = "size",
               max_side: int | None = MAX_SIDE) -> tuple[int, int]:
    """``"HxW"``, a pair or an int (a square) as ``(height, width)``, each side in 1..``max_side``
    (``None``: the caller bounds it itself)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        parts: list[Any] = [value, value]
    elif isinstance(value, (tuple, list)):
        parts = list(value)
    else:
        parts = str(value).lower().replace("×", "x").split("x")
    try:
        if len(parts) != 2 or any(isinstance(p, bool) or (isinstance(p, float) and not p.is_integer()) for p in parts):
            raise ValueError
        h, w = int(parts[0]), int(parts[1])
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be HxW (e.g. 192x640), got {value!r}") from None
    if h <= 0 or w <= 0:
        raise ConfigError(f"{what} must be positive, got {h}x{w}")
    if max_side is not None and (h > max_side or w > max_side):
        raise ConfigError(f"{what} {h}x{w} is too large: each side must be at most {max_side} pixels")
    return h, w


def resolve_device(name: object = "auto") -> torch.device:
    """``auto`` (GPU when there is one), ``cpu``, ``cuda`` or ``cuda:N``; a clear error otherwise."""
    import torch  # lazy: see the module docstring

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
