"""The base of every augmentation op and the helpers both kinds share (geometric ops in
:mod:`slimdepth.data.augment`, photometric ones in :mod:`slimdepth.data.photometric`):
randomness drawn from one generator, value checks that raise :class:`ConfigError`, and the
record each op leaves in ``meta['augment']``."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any, Union

import torch

from slimdepth.errors import ConfigError
from slimdepth.options import check_number, parse_size

Sample = dict[str, Any]
GeneratorLike = Union[torch.Generator, int, None]
SizeLike = Union[int, str, Sequence[int]]

# ----------------------------------------------------------------------------- randomness


def _as_generator(generator: GeneratorLike) -> torch.Generator | None:
    """An int becomes a freshly seeded generator; a generator or None is used as is."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, numbers.Integral) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(int(generator))
    raise TypeError(f"generator must be a torch.Generator, an int seed or None, got {type(generator).__name__}")


def _uniform(g: torch.Generator | None, low: float, high: float) -> float:
    return low + (high - low) * torch.rand((), generator=g, dtype=torch.float64).item()


def _randint(g: torch.Generator | None, low: int, high: int) -> int:
    """Uniform integer in [low, high] (inclusive)."""
    return int(torch.randint(low, high + 1, (), generator=g).item())


# ----------------------------------------------------------------------------- validation


def _probability(value: Any, what: str) -> float:
    return check_number(value, what, low=0.0, high=1.0, expected="in [0, 1]")


def _non_negative(value: Any, what: str) -> float:
    return check_number(value, what, low=0.0)


def _interval(value: Any, what: str, *, positive: bool = False) -> tuple[float, float]:
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise ConfigError(f"{what} must be a pair (low, high), got {value!r}")
    low, high = check_number(value[0], what), check_number(value[1], what)
    if low > high:
        raise ConfigError(f"{what} needs low <= high, got ({low}, {high})")
    if positive and low <= 0:
        raise ConfigError(f"{what} must be > 0, got ({low}, {high})")
    return low, high


def _size(value: Any, what: str) -> tuple[int, int]:
    """``int`` (square), ``"HxW"`` or ``(H, W)`` -> positive ``(H, W)``."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (int(value), int(value))
    return parse_size(value, what)


def _fit(size: tuple[int, int], h: int, w: int, op: str) -> None:
    if size[0] > h or size[1] > w:
        raise ConfigError(f"{op}: crop {size[0]}x{size[1]} is larger than the image {h}x{w}")


def _record(meta: Mapping[str, Any] | None, entries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    out = dict(meta or {})
    out["augment"] = [*out.get("augment", []), *entries]
    return out



class Augmentation:
    """Base of every op: ``op(sample, generator=None) -> new sample``."""

    def __call__(self, sample: Sample, generator: GeneratorLike = None) -> Sample:
        return self.apply(sample, _as_generator(generator))

    def apply(self, sample: Sample, generator: torch.Generator | None) -> Sample:
        """Transform ``sample`` drawing randomness from ``generator`` (None = torch's global one)."""
        raise NotImplementedError  # pragma: no cover - abstract
