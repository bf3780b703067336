"""Colouring depth maps, with no torch and no matplotlib needed.

Depth is shown as *inverse* depth with magma so that near is bright (as monodepth2 shows
disparity); the range comes from robust percentiles of the valid values and invalid pixels are
black. The colour tables of the usual maps ship with slimdepth (``colormaps.npz``, the 256
entries matplotlib uses, so the pictures are identical to matplotlib's), which lets the
torch-free predictor (:mod:`slimdepth.runtime`) write the same ``_vis.png`` as the PyTorch path.
:mod:`slimdepth.visualize` builds its panels and sheets on these.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

from slimdepth.errors import ConfigError, DataError
from slimdepth.fileio import as_depth_map

if TYPE_CHECKING:
    import torch

    ArrayLike = Union[np.ndarray, torch.Tensor]

__all__ = ["DEFAULT_PERCENTILES", "apply_colormap", "check_colormap", "colorize_depth", "colormap_table", "depth_range"]

DEFAULT_PERCENTILES = (5.0, 95.0)


def _valid(depth: np.ndarray) -> np.ndarray:
    return np.isfinite(depth) & (depth > 0)


@lru_cache(maxsize=1)
def _bundled() -> dict[str, np.ndarray]:
    with np.load(Path(__file__).with_name("colormaps.npz")) as tables:
        return {name: tables[name] for name in tables.files}


@lru_cache(maxsize=None)
def colormap_table(name: str) -> np.ndarray:
    """The Nx3 uint8 table (N = 256 for the usual maps) of colour map ``name`` (``NAME_r`` reversed).

    The perceptually uniform maps (magma, inferno, plasma, viridis, cividis) and gray ship with
    slimdepth, so colouring works without matplotlib (the torch-free predictor); any other name
    is looked up in matplotlib, which every full install has. Unknown names are a ConfigError."""
    base, reverse = (name[:-2], True) if name.endswith("_r") else (name, False)
    table = _bundled().get(base)
    if table is None:
        try:
            import matplotlib  # lazy: only for a colour map slimdepth does not ship

            cmap = matplotlib.colormaps[base]
        except ImportError:
            raise ConfigError(f"unknown colour map {name!r} without matplotlib; choose one of "
                              f"{', '.join(_bundled())} (or any of them + '_r')") from None
        except KeyError:
            names = sorted((n for n in matplotlib.colormaps if not n.endswith("_r")), key=str.lower)
            raise ConfigError(
                f"unknown colour map {name!r}; choose one of {', '.join(names)} (or any of them + '_r' to reverse)"
            ) from None
        table = cmap(np.arange(cmap.N), bytes=True)[:, :3]  # integers index the table itself
    return np.ascontiguousarray(table[::-1] if reverse else table, dtype=np.uint8)


def check_colormap(name: str) -> None:
    """Raise :class:`ConfigError` naming the valid choices unless ``name`` is a known colour map."""
    colormap_table(name)


def apply_colormap(t: np.ndarray, name: str) -> np.ndarray:
    """Colour a [0, 1] map as matplotlib's ``cmap(t, bytes=True)`` does: entry floor(N t), t = 1 -> the last."""
    table = colormap_table(name)
    n = len(table)
    index = np.clip(np.asarray(t, dtype=np.float64) * n, 0, n - 1).astype(np.intp)
    return table[index]


def _check_color(color: Sequence[int], what: str) -> np.ndarray:
    arr = np.asarray(color)
    if arr.shape != (3,) or arr.min() < 0 or arr.max() > 255:
        raise ConfigError(f"{what} must be three integers in 0..255, got {color!r}")
    return arr.astype(np.uint8)


def _check_dilate(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"dilate must be a positive integer (1 = off), got {k!r}")
    return int(k)


def _robust_range(values: np.ndarray, percentiles: tuple[float, float]) -> tuple[float, float] | None:
    if values.size == 0:
        return None
    lo, hi = np.percentile(values, percentiles)
    return float(lo), float(hi)


def depth_range(*depths: ArrayLike, percentiles: tuple[float, float] = DEFAULT_PERCENTILES) -> tuple[float, float]:
    """Robust (low, high) display range in metres over the valid pixels of all given maps.

    Percentiles rather than min/max, so that a few sky or noise pixels do not wash out the
    picture; pass the result as ``vmin``/``vmax`` to colour several maps comparably.
    """
    values = [d[_valid(d)] for d in (as_depth_map(x) for x in depths)]
    found = _robust_range(np.concatenate(values) if values else np.empty(0), percentiles)
    if found is None:
        raise DataError("depth_range: no valid (finite, > 0) depth values")
    return found


def _dilate(values: np.ndarray, valid: np.ndarray, k: int, take_min: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Fill invalid pixels from valid ones in a kxk window (smallest value, or largest).

    Valid pixels keep their own value; for depth, the smallest is the nearest surface, as a
    z-buffer would show it. Used to make sparse points readable, never to make data.
    """
    if k <= 1:
        return values, valid
    h, w = values.shape
    fill = np.inf if take_min else -np.inf
    before, after = k // 2, k - 1 - k // 2
    padded = np.pad(np.where(valid, values, fill), ((before, after), (before, after)), constant_values=fill)
    best = np.full((h, w), fill)
    reduce = np.minimum if take_min else np.maximum
    for dy in range(k):
        for dx in range(k):
            reduce(best, padded[dy : dy + h, dx : dx + w], out=best)
    grown = valid | (best != fill)
    return np.where(valid, values, np.where(grown, best, 0.0)), grown


def _paint(t: np.ndarray, valid: np.ndarray, cmap: str, invalid_color: Sequence[int]) -> np.ndarray:
    """Colour a [0, 1] map with a colour map; invalid pixels get ``invalid_color``."""
    bad = _check_color(invalid_color, "invalid_color")
    rgb = apply_colormap(np.where(valid, t, 0.0), cmap)
    rgb[~valid] = bad
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def colorize_depth(
    depth: ArrayLike,
    cmap: str = "magma",
    vmin: float | None = None,
    vmax: float | None = None,
    inverse: bool = True,
    invalid_color: Sequence[int] = (0, 0, 0),
    dilate: int = 1,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
) -> np.ndarray:
    """Colour a depth map (metres, HxW or 1xHxW, NumPy or torch) as HxWx3 uint8.

    ``inverse=True`` maps inverse depth so that ``vmin`` (near) is the bright end of the colour
    map and ``vmax`` (far) the dark end, as monodepth2 shows disparity: the close range, where
    a robot acts, gets most of the colours. ``inverse=False`` maps depth linearly (near = low
    end). ``vmin``/``vmax`` are metres; each missing one comes from ``percentiles`` of the
    valid values. Pixels that are 0, negative, NaN or infinite get ``invalid_color``.
    ``dilate=k`` grows each valid pixel into a kxk block (nearest depth wins) so that sparse
    LiDAR is visible; it changes only the picture, not the range.
    """
    d = as_depth_map(depth)
    valid = _valid(d)
    k = _check_dilate(dilate)
    if vmin is not None and vmax is not None and vmin > vmax:
        raise ConfigError(f"vmin ({vmin}) must not exceed vmax ({vmax})")
    if inverse and vmin is not None and vmin <= 0:
        raise ConfigError(f"vmin must be positive for an inverse-depth map, got {vmin}")
    auto = (1.0, 1.0) if vmin is not None and vmax is not None else _robust_range(d[valid], percentiles) or (1.0, 1.0)
    lo = float(vmin) if vmin is not None else auto[0]
    hi = float(vmax) if vmax is not None else max(auto[1], lo)
    lo = min(lo, hi)
    d, valid = _dilate(d, valid, k)
    safe = np.where(valid, d, 1.0)
    if inverse:
        x, a, b = 1.0 / safe, 1.0 / hi, 1.0 / lo
    else:
        x, a, b = safe, lo, hi
    if b > a:
        t = np.clip((x - a) / (b - a), 0.0, 1.0)
    else:  # vmin == vmax: one step, the given value itself in the middle
        t = np.where(x > a, 1.0, np.where(x < a, 0.0, 0.5))
    return _paint(t, valid, cmap, invalid_color)
