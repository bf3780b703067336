"""Procedural, tileable, mip-mapped textures for the synthetic street scenes.

Textures are built once per process from integer hashes (no random state, no transcendental
functions: only +, -, *, /, floor and integer ops), so every machine builds the same bits.
Lookups pick a mip level from the pixel footprint, which keeps distant surfaces from aliasing.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from slimdepth.data.synthetic.fmath import fmax, kernel

SIZE = 256  # texels per side of every texture (a power of two, so wrapping is a bit mask)
_MASK32 = np.uint64(0xFFFFFFFF)


def hash01(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic hash of integer lattice coordinates to float64 values in [0, 1)."""
    x = np.asarray(ix, dtype=np.int64).astype(np.uint64) & _MASK32
    y = np.asarray(iy, dtype=np.int64).astype(np.uint64) & _MASK32
    h = (x * np.uint64(0x8DA6B343) + y * np.uint64(0xD8163841) + np.uint64(seed) * np.uint64(0xCB1AB31F)) & _MASK32
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0x5BD1E995)) & _MASK32
    h ^= h >> np.uint64(15)
    h = (h * np.uint64(0x27D4EB2F)) & _MASK32
    h ^= h >> np.uint64(16)
    return h.astype(np.float64) / 4294967296.0


def _smooth(t: np.ndarray) -> np.ndarray:
    return t * t * (3.0 - 2.0 * t)


def value_noise(period_x: int, period_y: int, seed: int) -> np.ndarray:
    """SIZE x SIZE value noise with the given lattice periods (tileable), values in [0, 1)."""
    coords = np.arange(SIZE, dtype=np.float64)
    fx = coords * period_x / SIZE
    fy = coords * period_y / SIZE
    ix, iy = np.floor(fx).astype(np.int64), np.floor(fy).astype(np.int64)
    tx, ty = _smooth(fx - ix)[None, :], _smooth(fy - iy)[:, None]
    x0, x1 = (ix % period_x)[None, :], ((ix + 1) % period_x)[None, :]
    y0, y1 = (iy % period_y)[:, None], ((iy + 1) % period_y)[:, None]
    v00, v10 = hash01(x0, y0, seed), hash01(x1, y0, seed)
    v01, v11 = hash01(x0, y1, seed), hash01(x1, y1, seed)
    top = v00 + (v10 - v00) * tx
    bottom = v01 + (v11 - v01) * tx
    return top + (bottom - top) * ty


def fbm(period: int, octaves: int, seed: int, gain: float = 0.5, aspect: int = 1) -> np.ndarray:
    """Fractal sum of value-noise octaves, normalised to [0, 1]; ``aspect`` stretches along x."""
    total = np.zeros((SIZE, SIZE))
    amp, norm = 1.0, 0.0
    for k in range(octaves):
        p = period << k
        if p > SIZE:
            break
        px = max(1, p // aspect)
        total += amp * value_noise(px, p, seed + 101 * k)
        norm += amp
        amp *= gain
    return total / norm


def _cells(rows: int, cols: int, offset_odd_rows: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cell indices and in-cell coordinates (0..1) of a regular grid (bricks, tiles)."""
    c = np.arange(SIZE, dtype=np.float64)
    fy = (c * rows / SIZE)[:, None] + np.zeros((1, SIZE))
    row = np.floor(fy)
    shift = np.where(row % 2 == 1, 0.5, 0.0) if offset_odd_rows else 0.0
    fx = (c * cols / SIZE)[None, :] + shift
    col = np.floor(fx)
    return row, col % cols, fx - col, fy - row


def _bricks() -> np.ndarray:
    row, col, u, v = _cells(24, 8, offset_odd_rows=True)
    mortar = (u < 0.06) | (v < 0.16)
    tint = 0.78 + 0.3 * hash01(col.astype(np.int64), row.astype(np.int64), 7)
    grain = 0.85 + 0.3 * fbm(64, 3, 11)
    return np.where(mortar, 1.45, tint * grain)


def _tiles() -> np.ndarray:
    row, col, u, v = _cells(4, 4, offset_odd_rows=False)
    grout = (u < 0.03) | (v < 0.03)
    tint = 0.85 + 0.2 * hash01(col.astype(np.int64), row.astype(np.int64), 23)
    grain = 0.8 + 0.4 * fbm(32, 4, 29)
    return np.where(grout, 0.55, tint * grain)


def _asphalt() -> np.ndarray:
    speck = hash01(np.arange(SIZE)[None, :], np.arange(SIZE)[:, None], 31)
    base = 0.75 + 0.35 * fbm(16, 5, 37)
    return base * np.where(speck > 0.93, 1.35, np.where(speck < 0.05, 0.7, 1.0))


def _leaves() -> np.ndarray:
    n = fbm(32, 4, 41)
    return np.where(n < 0.42, 0.35, 0.7 + 0.8 * (n - 0.42))


def _glyphs(x: np.ndarray, y: np.ndarray, top: int, px: int, seed: int) -> np.ndarray:
    """A line of blocky lettering from row ``top``: 3 x 5 bitmaps of ``px``-texel squares, a space
    after every few letters; True where a stroke is."""
    cw = 4 * px  # three columns and a gap; divides SIZE, so the line tiles
    gx, bx, by = x // cw, (x % cw) // px, (y - top) // px
    letter = (hash01(gx, 0, seed) > 0.15) & (gx % 7 != 6)
    bit = hash01(gx * 16 + by * 3 + bx, 1, seed) < 0.55
    return (y >= top) & (y < top + 5 * px) & (bx < 3) & letter & bit


def _livery() -> np.ndarray:
    """Vehicle-body detail (one tile is 3 m, a texel 1.2 cm): grime, panel seams with rivets,
    lettering in two sizes and a striped conspicuity tape, normalised to mean 1 so that a distant
    (averaged) body keeps its paint's tone."""
    c = np.arange(SIZE)
    x, y = np.broadcast_arrays(c[None, :], c[:, None])
    t = 0.85 + 0.3 * fbm(32, 4, 61)
    t = np.where((x % 64 < 2) | (y % 128 < 2), 0.45, t)  # panel seams every 0.75 and 1.5 m
    t = np.where(((x % 64 == 5) | (x % 64 == 60)) & (y % 10 < 2), 0.65, t)  # rivets beside them
    strokes = _glyphs(x, y, 24, 4, 63) | _glyphs(x, y, 160, 2, 67) | _glyphs(x, y, 196, 2, 71)
    t = np.where(strokes, 0.2, t)
    t = np.where((y >= 110) & (y < 114), np.where(x % 32 < 16, 1.7, 0.5), t)  # tape: bright and dark
    return t / t.mean()


_BUILDERS = {
    "noise": lambda: fbm(8, 5, 1),
    "coarse": lambda: fbm(4, 3, 3),
    "asphalt": _asphalt,
    "bricks": _bricks,
    "tiles": _tiles,
    "leaves": _leaves,
    "grass": lambda: 0.6 + 0.8 * fbm(64, 3, 43),
    "bark": lambda: 0.55 + 0.9 * fbm(16, 4, 47, aspect=8),
    "plaster": lambda: 0.85 + 0.3 * fbm(16, 5, 53),
    "clouds": lambda: fbm(4, 6, 59, gain=0.55),
    "livery": _livery,  # last: the atlas keeps the other textures where they were
}
NAMES = tuple(_BUILDERS)
TEX = {name: i for i, name in enumerate(NAMES)}  # a texture's row in the atlas


@lru_cache(maxsize=None)
def _bake_all() -> dict[str, MipTexture]:
    return {name: MipTexture(build()) for name, build in _BUILDERS.items()}


@lru_cache(maxsize=None)
def atlas() -> tuple[np.ndarray, np.ndarray]:
    """Every texture's mip pyramid in one flat float32 array, and each (texture, level)'s start
    in it, (len(NAMES), levels) int64: what compiled shading code samples with :func:`texel`."""
    baked = [texture(name) for name in NAMES]
    starts = np.cumsum([0] + [len(t.data) for t in baked[:-1]])
    return np.concatenate([t.data for t in baked]), np.stack([t.offsets + s for t, s in zip(baked, starts)])


@kernel
def texel(data, starts, tex, u, v, footprint):
    """:meth:`MipTexture.sample` of one point of texture ``tex`` of the :func:`atlas`."""
    _, exponent = math.frexp(fmax(footprint, np.float32(1.0)))
    level = min(exponent - 1, starts.shape[1] - 1)
    if level < 0:  # a NaN or infinite footprint: NumPy's index -1, the 1x1 level
        level = starts.shape[1] - 1
    size = SIZE >> level
    iu = (np.int64(np.floor(u)) >> level) & (size - 1)
    iv = (np.int64(np.floor(v)) >> level) & (size - 1)
    return data[starts[tex, level] + iv * size + iu]


def texture(name: str) -> MipTexture:
    """The baked texture ``name`` (built on first use, cached for the process)."""
    return _bake_all()[name]


class MipTexture:
    """A square grey texture with its box-filtered mip pyramid, stored flat for fast gathers."""

    def __init__(self, base: np.ndarray) -> None:
        levels = [np.asarray(base, dtype=np.float32)]
        while levels[-1].shape[0] > 1:
            a = levels[-1]
            levels.append(((a[0::2, 0::2] + a[1::2, 0::2]) + (a[0::2, 1::2] + a[1::2, 1::2])) * np.float32(0.25))
        self.num_levels = len(levels)
        self.sizes = np.array([lv.shape[0] for lv in levels], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes**2)[:-1]]).astype(np.int64)
        self.data = np.concatenate([lv.ravel() for lv in levels])

    def sample(self, u: np.ndarray, v: np.ndarray, footprint: np.ndarray) -> np.ndarray:
        """Nearest texel at the mip level matching ``footprint`` (texels per pixel); wraps."""
        _, exponent = np.frexp(np.maximum(footprint, 1.0))
        level = np.minimum(exponent - 1, self.num_levels - 1).astype(np.int64)
        size = self.sizes[level]
        iu = (np.floor(u).astype(np.int64) >> level) & (size - 1)
        iv = (np.floor(v).astype(np.int64) >> level) & (size - 1)
        return self.data[self.offsets[level] + iv * size + iu]
