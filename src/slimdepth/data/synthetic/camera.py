"""The camera between rendered radiance and the stored 8-bit image: a cheap photometric model.

Real KITTI frames differ from clean renders by their camera: exposure and white balance vary,
the sensor adds noise (stronger in the shadows), the car's forward motion blurs the image sides
and bottom, the lens darkens the corners and makes bright sky glow, and images met elsewhere
carry JPEG blocking and colour casts. A network trained on renders should see all of that.

Two steps, so that the random choices and the pixel work stay apart:

* :func:`sample_camera` draws a frame's :class:`CameraParams` from a PCG64 generator: always the
  same number of draws in the same order, whatever effects are on, so switching one effect off
  leaves every other effect's draws (and so the rest of the dataset) unchanged. Each effect is
  applied to a random fraction of frames with a random strength, so clean and degraded frames
  both occur; :class:`CameraOptions` scales each effect (0 = off, 1 = KITTI-like, up to 4).
* :func:`develop` turns linear radiance, channel-first (3, H, W) float32, into an (H, W, 3)
  uint8 image, in a real camera's order: exposure and white balance, vignetting, bloom, motion
  blur, tone curve, the lens's [1 2 1]/4 blur, noise, quantisation, then JPEG.

The generator's contract holds here too: per-pixel maths uses only IEEE basic operations
(+ - * /, sqrt, rint, min/max) in float32 in a fixed order (the 8x8 DCT is written out as
weighted sums), so a frame has the same bits on every machine; scalars drawn per frame may
use Python's math before they are rounded to float32. The budget is ~4 ms per 192x640 frame
on average (rendering takes ~30 ms of a 33 ms frame), hence cached maps and noise tiles,
in-place float32 work, bloom at 1/8 resolution and the expensive effects on a fraction of
frames only. ``CameraOptions(plain=True)`` is the generator's original pipeline, bit for bit.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from typing import Any

import numpy as np

from slimdepth.data.synthetic.textures import hash01
from slimdepth.errors import ConfigError
from slimdepth.options import check_number, suggest

__all__ = ["EFFECTS", "MAX_STRENGTH", "CameraOptions", "CameraParams", "develop", "sample_camera"]

F32 = np.float32
#: the effects, in the order :func:`develop` applies them
EFFECTS = ("exposure", "white_balance", "color_cast", "vignetting", "bloom", "motion_blur", "tone",
           "noise", "jpeg")
#: the largest strength an option takes (4x the KITTI-like default)
MAX_STRENGTH = 4.0
_BLOOM_SCALE = 8  # bloom is computed at 1/8 resolution: a wide glow at 1/64 of the cost


@dataclass(frozen=True)
class CameraOptions:
    """How strongly each camera effect degrades the frames: 0 = off, 1 = KITTI-like, up to 4.

    A strength scales both the fraction of frames an effect is applied to and how strong it is
    there (see :func:`sample_camera`). ``plain`` ignores every strength and reproduces the
    generator's original pipeline (exposure, gamma 2, a [1 2 1]/4 blur, dither) bit for bit.
    """

    exposure: float = 1.0
    white_balance: float = 1.0
    color_cast: float = 1.0
    vignetting: float = 1.0
    bloom: float = 1.0
    motion_blur: float = 1.0
    tone: float = 1.0
    noise: float = 1.0
    jpeg: float = 1.0
    plain: bool = False

    def __post_init__(self) -> None:
        for name in EFFECTS:
            value = check_number(getattr(self, name), f"camera option {name}", low=0.0, high=MAX_STRENGTH,
                                 expected=f"in [0, {MAX_STRENGTH:g}]")
            object.__setattr__(self, name, value)
        if not isinstance(self.plain, bool):
            raise ConfigError(f"camera option plain must be true or false, got {self.plain!r}")

    @classmethod
    def from_dict(cls, options: Mapping[str, Any] | None) -> CameraOptions:
        """Options from a spec's or YAML's ``{name: value}`` (missing names keep their default)."""
        options = dict(options or {})
        known = [f.name for f in fields(cls)]
        for key in options:
            if key not in known:
                raise ConfigError(f"unknown camera option {key!r}{suggest(key, known)}; "
                                  f"choose from {', '.join(known)}")
        return cls(**options)

    @classmethod
    def off(cls) -> CameraOptions:
        """Every effect at 0: the plain pipeline's image, though through the general code."""
        return cls(**{name: 0.0 for name in EFFECTS})


@dataclass
class CameraParams:
    """One frame's camera, drawn by :func:`sample_camera`; a neutral value switches an effect off.

    Units: ``exposure`` multiplies linear radiance; ``wb_gains``/``cast_gains`` are per-channel
    (R, G, B) multipliers and ``cast_offset`` a per-channel linear radiance added (lifted,
    coloured blacks); ``vignette`` is the corner's loss of light (0.2 = corners at 80%);
    bloom adds ``bloom_strength`` times the radiance above ``bloom_threshold``, blurred
    ``bloom_radius`` times at 1/8 resolution; ``blur_forward`` is the forward-motion blur length
    in pixels at the image sides (less towards ``center``, a fraction of width and height),
    ``blur_shake`` a camera-shake blur length in pixels at angle ``blur_angle`` (radians);
    ``tone_mid``/``tone_contrast`` bend the gamma-2 curve (brighter mid-tones, an S-curve; |sum|
    < 1 keeps it monotonic); ``noise_shot``/``noise_dark`` scale the sensor noise (multiples of
    the dither: shot noise everywhere, read noise growing towards black); ``jpeg_quality`` is
    an IJG quality 1..100 (0 = no JPEG).
    """

    exposure: float = 1.0
    wb_gains: tuple[float, float, float] = (1.0, 1.0, 1.0)
    cast_gains: tuple[float, float, float] = (1.0, 1.0, 1.0)
    cast_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    vignette: float = 0.0
    bloom_threshold: float = 1.0
    bloom_strength: float = 0.0
    bloom_radius: int = 1
    blur_forward: float = 0.0
    blur_shake: float = 0.0
    blur_angle: float = 0.0
    center: tuple[float, float] = (0.5, 0.5)
    tone_mid: float = 0.0
    tone_contrast: float = 0.0
    noise_shot: float = 0.0
    noise_dark: float = 0.0
    jpeg_quality: int = 0
    plain: bool = False

    def without(self, effect: str) -> CameraParams:
        """These parameters with ``effect`` (one of :data:`EFFECTS`) switched off."""
        if effect not in _EFFECT_FIELDS:
            raise ConfigError(f"unknown camera effect {effect!r}{suggest(effect, EFFECTS)}")
        neutral = CameraParams()
        return replace(self, **{f: getattr(neutral, f) for f in _EFFECT_FIELDS[effect]})


_EFFECT_FIELDS = {
    "exposure": ("exposure",), "white_balance": ("wb_gains",), "color_cast": ("cast_gains", "cast_offset"),
    "vignetting": ("vignette",), "bloom": ("bloom_threshold", "bloom_strength", "bloom_radius"),
    "motion_blur": ("blur_forward", "blur_shake", "blur_angle"), "tone": ("tone_mid", "tone_contrast"),
    "noise": ("noise_shot", "noise_dark"), "jpeg": ("jpeg_quality",),
}

# --- drawing a frame's camera -----------------------------------------------------------------
# Slots of the uniform draws, one fixed block per frame: (effect, what the slot decides).
_SLOTS = ("exposure", "wb_temperature", "wb_tint", "cast_on", "cast_tint", "cast_r", "cast_g", "cast_b",
          "vignette_on", "vignette", "bloom_on", "bloom_threshold", "bloom_strength", "bloom_radius",
          "blur_on", "blur_forward", "blur_shake", "blur_angle", "tone_on", "tone_mid", "tone_contrast",
          "noise_on", "noise_shot", "noise_dark", "jpeg_on", "jpeg_quality")
_NUM_DRAWS = len(_SLOTS)
# Fraction of frames an effect is applied to at strength 1 (a strength s applies it to s times
# as many, at most all). KITTI's raw frames are lossless PNGs taken with one lens at daylight
# exposures: vignetting and noise are nearly always there, the rest is variety for robustness.
_CHANCE = {"color_cast": 0.3, "vignetting": 0.8, "bloom": 0.3, "motion_blur": 0.3, "tone": 0.5,
           "noise": 0.8, "jpeg": 0.15}


def _symmetric(u: float) -> float:
    return 2.0 * u - 1.0


def sample_camera(rng: np.random.Generator, options: CameraOptions, scene_exposure: float) -> CameraParams:
    """Draw one frame's camera from ``rng``, scaled by ``options``; ``scene_exposure`` is the scene's.

    Makes exactly one call, ``rng.random(26)``, whatever the options, so one effect's strength
    never changes another's draws; with ``options.plain`` it draws nothing, so the frame is the
    original pipeline's given the same ``rng`` (the generator's noise stream).
    """
    if options.plain:
        return CameraParams(exposure=float(scene_exposure), plain=True)
    u = dict(zip(_SLOTS, (float(v) for v in rng.random(_NUM_DRAWS)), strict=True))
    o = options

    def on(effect: str) -> bool:
        return getattr(o, effect) > 0 and u[f"{_ON_SLOT[effect]}_on"] < _CHANCE[effect] * getattr(o, effect)

    p = CameraParams(exposure=float(scene_exposure) * math.exp(0.2 * o.exposure * _symmetric(u["exposure"])))
    # white balance: a warm-cool shift along the daylight locus (R and B opposite) plus an R/B tint
    t, k = _symmetric(u["wb_temperature"]), _symmetric(u["wb_tint"])
    s = o.white_balance
    p.wb_gains = (math.exp(s * (0.06 * t + 0.02 * k)), 1.0, math.exp(s * (-0.06 * t + 0.02 * k)))
    if on("color_cast"):  # a green-magenta tint and lifted, coloured blacks (flare, black level)
        s = o.color_cast
        p.cast_gains = (1.0, math.exp(0.05 * s * _symmetric(u["cast_tint"])), 1.0)
        p.cast_offset = tuple(0.0015 * s * u[f"cast_{c}"] for c in "rgb")  # type: ignore[assignment]
    if on("vignetting"):
        p.vignette = min(0.9, o.vignetting * (0.05 + 0.2 * u["vignette"]))
    if on("bloom"):
        p.bloom_threshold = 0.95 - 0.25 * u["bloom_threshold"]
        p.bloom_strength = o.bloom * (0.15 + 0.35 * u["bloom_strength"])
        p.bloom_radius = 1 + int(3 * u["bloom_radius"])
    if on("motion_blur"):
        s = o.motion_blur
        p.blur_forward = s * (1.0 + 3.0 * u["blur_forward"])  # pixels at 640 wide, scaled in develop
        p.blur_shake = s * 1.5 * u["blur_shake"]
        p.blur_angle = math.pi * u["blur_angle"]
    if on("tone"):
        mid = 0.15 * o.tone * _symmetric(u["tone_mid"])
        contrast = 0.15 * o.tone * _symmetric(u["tone_contrast"])
        total = abs(mid) + abs(contrast)
        scale = 0.9 / total if total > 0.9 else 1.0  # keeps the curve monotonic
        p.tone_mid, p.tone_contrast = mid * scale, contrast * scale
    if on("noise"):
        p.noise_shot = o.noise * (0.5 + 1.5 * u["noise_shot"])
        p.noise_dark = o.noise * (0.5 + 2.5 * u["noise_dark"])
    if on("jpeg"):
        p.jpeg_quality = max(5, min(95, round(95 - o.jpeg * (5 + 25 * u["jpeg_quality"]))))
    return p


_ON_SLOT = {"color_cast": "cast", "vignetting": "vignette", "bloom": "bloom", "motion_blur": "blur",
            "tone": "tone", "noise": "noise", "jpeg": "jpeg"}


# --- developing the image ---------------------------------------------------------------------
@lru_cache(maxsize=8)
def _sensor_noise(height: int, width: int) -> np.ndarray:
    """Triangular dither noise (+-1.5 grey levels), (3, H + 256, W + 256), built from hashes once."""
    yy, xx = np.mgrid[0 : height + 256, 0 : width + 256]
    planes = [hash01(xx, yy + 100003 * c, 71) + hash01(xx, yy + 100003 * c, 73) - 1.0 for c in range(3)]
    return (np.stack(planes) * 1.5).astype(np.float32)


class _Workspace(threading.local):
    """Scratch arrays reused from frame to frame, one set per thread (the right view renders on a
    helper thread). A fresh 1.5 MB array costs more in page faults than the arithmetic on it."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 array of ``shape`` (contents undefined), from a buffer kept under ``name``."""
        n = math.prod(shape)
        a = self.arrays.get(name)
        if a is None or a.size < n:
            a = self.arrays[name] = np.empty(n + n // 8, F32)  # room for a slightly larger pad
        return a[:n].reshape(shape)


_WS = _Workspace()


def _pad_edge(c: np.ndarray, ry: int, rx: int, name: str) -> np.ndarray:
    """``np.pad(c, ((0, 0), (ry, ry), (rx, rx)), mode="edge")`` into a reused workspace array."""
    _, h, w = c.shape
    p = _WS.get(name, (c.shape[0], h + 2 * ry, w + 2 * rx))
    p[:, ry : ry + h, rx : rx + w] = c
    if ry:
        p[:, :ry, rx : rx + w] = c[:, :1]
        p[:, ry + h :, rx : rx + w] = c[:, -1:]
    if rx:
        p[:, :, :rx] = p[:, :, rx : rx + 1]
        p[:, :, rx + w :] = p[:, :, rx + w - 1 : rx + w]
    return p


@lru_cache(maxsize=8)
def _radius2(height: int, width: int, cy: float, cx: float) -> np.ndarray:
    """Squared distance from (cy, cx) (fractions), 1 at the farthest corner; (H, W) float32."""
    y = (np.arange(height) + 0.5) / height - cy
    x = ((np.arange(width) + 0.5) / width - cx) * (width / height)
    r2 = y[:, None] ** 2 + x[None, :] ** 2
    return (r2 / r2.max()).astype(np.float32)


@lru_cache(maxsize=8)
def _side_weights(n: int, centre: float) -> np.ndarray:
    """0 at ``centre`` (a fraction of ``n``) rising linearly to 1 at the farther edge; (n,) float32."""
    x = np.abs((np.arange(n) + 0.5) / n - centre)
    return (x / x.max()).astype(np.float32)


def _blur121(p: np.ndarray) -> np.ndarray:
    """[1 2 1]/4 along the last two axes of (C, h, w), edges repeated."""
    q = np.pad(p, ((0, 0), (1, 1), (1, 1)), mode="edge")
    r = F32(0.25) * (q[:, :, :-2] + q[:, :, 2:]) + F32(0.5) * q[:, :, 1:-1]
    return F32(0.25) * (r[:, :-2] + r[:, 2:]) + F32(0.5) * r[:, 1:-1]


def _upsample_weights(f: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear weights of the previous, own and next low-res sample for the f output phases."""
    pos = (np.arange(f) + 0.5) / f - 0.5  # offset of each phase from its own sample, in samples
    prev, nxt = np.maximum(-pos, 0.0), np.maximum(pos, 0.0)
    return prev.astype(F32), (1.0 - prev - nxt).astype(F32), nxt.astype(F32)


def _bloom(c: np.ndarray, threshold: float, strength: float, radius: int) -> None:
    """Add the glow of radiance above ``threshold`` to ``c`` in place, computed at 1/8 resolution."""
    f = _BLOOM_SCALE
    _, h, w = c.shape
    hl, wl = h // f, w // f
    if hl < 1 or wl < 1:
        return
    rows = c[:, : hl * f, : wl * f].reshape(3, hl, f, wl * f)
    acc = rows[:, :, 0] + rows[:, :, 1]  # box average of each f x f cell, in a fixed order
    for i in range(2, f):
        acc += rows[:, :, i]
    cols = acc.reshape(3, hl, wl, f)
    lo = cols[..., 0] + cols[..., 1]
    for i in range(2, f):
        lo += cols[..., i]
    lo *= F32(1.0 / (f * f))
    lo -= F32(threshold)
    np.maximum(lo, F32(0.0), out=lo)
    if not lo.any():
        return
    for _ in range(radius):
        lo = _blur121(lo)
    lo *= F32(strength)
    hu, wu = -(-h // f), -(-w // f)  # cells covering the image; the partial last ones copy their neighbour
    lo = np.pad(lo, ((0, 0), (1, 1 + hu - hl), (1, 1 + wu - wl)), mode="edge")
    # bilinear x f: columns first while there are few rows (one strided write per output phase),
    # then rows with whole image rows as the inner loop (NumPy is slow over short inner axes)
    wp, wc, wn = _upsample_weights(f)
    cols = np.empty((3, hu + 2, wu * f), F32)
    for k in range(f):
        side, weight = (lo[:, :, :-2], wp[k]) if wp[k] > 0 else (lo[:, :, 2:], wn[k])
        out = cols[:, :, k::f]
        np.multiply(lo[:, :, 1:-1], wc[k], out=out)
        out += side * weight
    cols = cols[:, :, :w]
    tmp = _WS.get("bloom_tmp", (3, hu, f, w))
    full = np.multiply(cols[:, :-2, None], wp[:, None], out=_WS.get("bloom", (3, hu, f, w)))
    for rows, weight in ((cols[:, 1:-1, None], wc), (cols[:, 2:, None], wn)):
        np.multiply(rows, weight[:, None], out=tmp)
        full += tmp
    c += full.reshape(3, hu * f, w)[:, :h]


def _box_taps(c: np.ndarray, offsets: list[tuple[int, int]]) -> np.ndarray:
    """Mean of ``c`` shifted by each (dy, dx) in ``offsets``, edges repeated; (3, H, W)."""
    _, h, w = c.shape
    ry = max(abs(dy) for dy, _ in offsets)
    rx = max(abs(dx) for _, dx in offsets)
    p = _pad_edge(c, ry, rx, "pad")
    (dy, dx), *rest = offsets
    out = _WS.get("box", c.shape)
    np.copyto(out, p[:, ry + dy : ry + dy + h, rx + dx : rx + dx + w])
    for dy, dx in rest:
        out += p[:, ry + dy : ry + dy + h, rx + dx : rx + dx + w]
    out *= F32(1.0 / len(offsets))
    return out


def _motion_blur(c: np.ndarray, forward: float, shake: float, angle: float, center: tuple[float, float]) -> None:
    """Blur ``c`` in place: forward motion (growing away from ``center``) then camera shake.

    Forward motion streaks image points radially away from the focus of expansion, longer the
    farther they are from it: approximated by a horizontal box blur faded in towards the sides
    and a vertical one (0.6 as long) faded in towards the top and bottom, 4 taps each.
    """
    _, h, w = c.shape
    length = forward * w / 640.0
    for axis, size, centre, scale in ((2, w, center[0], 1.0), (1, h, center[1], 0.6)):
        taps = sorted({round(length * scale * (k / 3.0 - 0.5)) for k in range(4)})
        if len(taps) < 2:
            continue
        box = _box_taps(c, [(0, t) if axis == 2 else (t, 0) for t in taps])
        weight = _side_weights(size, centre)  # c <- c + weight (box - c)
        box -= c
        box *= weight[None, None, :] if axis == 2 else weight[None, :, None]
        c += box
    if shake > 0:
        dy, dx = 0.5 * shake * math.sin(angle), 0.5 * shake * math.cos(angle)
        taps = sorted({(round(k * dy), round(k * dx)) for k in (-1, 0, 1)})
        if len(taps) > 1:
            np.copyto(c, _box_taps(c, taps))


def _tone(g: np.ndarray, mid: float, contrast: float) -> None:
    """g <- g + g(1 - g)(mid + contrast(2g - 1)) in place: fixed ends, brighter/darker mid-tones, an S."""
    t = np.multiply(g, F32(2.0 * contrast), out=_WS.get("tone_t", g.shape))
    t += F32(mid - contrast)
    s = np.multiply(g, g, out=_WS.get("tone_s", g.shape))
    np.subtract(g, s, out=s)
    t *= s
    g += t


# IJG's base quantisation tables (JPEG standard, Annex K), scaled by quality like libjpeg
_LUMA_Q = np.array([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], dtype=np.float64)
_CHROMA_Q = np.full((8, 8), 99.0)
_CHROMA_Q[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]


def _quant_table(base: np.ndarray, quality: int) -> np.ndarray:
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return np.clip(np.floor((base * scale + 50) / 100), 1, 255).astype(F32)[:, :, None, None]


def _dct_matrix() -> np.ndarray:
    k, n = np.mgrid[0:8, 0:8]
    m = np.cos((2 * n + 1) * k * np.pi / 16) * np.where(k == 0, math.sqrt(1 / 8), 0.5)
    return m.astype(F32)


_DCT = _dct_matrix()  # _DCT[k, n]: weight of sample n in coefficient k (orthonormal DCT-II)


def _weighted_sum(terms: list[tuple[np.float32, np.ndarray]], out: np.ndarray, tmp: np.ndarray) -> None:
    """out = w0 x0 + w1 x1 + ... in that order (the fixed order keeps the bits machine-independent)."""
    (w, x), *rest = terms
    np.multiply(x, w, out=out)
    for w, x in rest:
        np.multiply(x, w, out=tmp)
        out += tmp


def _dct8(xs: list[np.ndarray], out: np.ndarray) -> None:
    """8-point DCT-II of the samples ``xs``: coefficient k into ``out[k]`` (even/odd split)."""
    s = [xs[n] + xs[7 - n] for n in range(4)]
    d = [xs[n] - xs[7 - n] for n in range(4)]
    tmp = np.empty_like(out[0])
    for k in range(8):
        _weighted_sum([(_DCT[k, n], (s if k % 2 == 0 else d)[n]) for n in range(4)], out[k], tmp)


def _idct8(xs: list[np.ndarray], out: np.ndarray) -> None:
    """Inverse of :func:`_dct8`: sample n from the coefficients ``xs`` into ``out[n]``."""
    even, odd, tmp = np.empty_like(out[0]), np.empty_like(out[0]), np.empty_like(out[0])
    for n in range(4):
        _weighted_sum([(_DCT[k, n], xs[k]) for k in (0, 2, 4, 6)], even, tmp)
        _weighted_sum([(_DCT[k, n], xs[k]) for k in (1, 3, 5, 7)], odd, tmp)
        np.add(even, odd, out=out[n])
        np.subtract(even, odd, out=out[7 - n])


def _jpeg_plane(x: np.ndarray, q: np.ndarray) -> None:
    """An (H, W) plane (multiples of 8) through 8x8 DCT, quantisation by ``q`` and back, in place.

    ``q`` holds the quantisation steps [vertical frequency, horizontal frequency, 1, block column].
    The blocks are laid out as 64 planes [row, column, block row, block column], so that every
    operation of the transforms runs over long contiguous rows.
    """
    h, w = x.shape
    hb, wb = h // 8, w // 8
    blocks = _WS.get("jpeg_in", (8, 8, hb, wb))  # [row i, column j, block row, block column]
    np.copyto(blocks, x.reshape(hb, 8, wb, 8).transpose(1, 3, 0, 2))
    a = _WS.get("jpeg_a", (8, 8, hb, wb))
    b = _WS.get("jpeg_b", (8, 8, hb, wb))
    _dct8([blocks[:, j] for j in range(8)], a)  # a[k, i]: horizontal frequency k of row i
    _dct8([a[:, i] for i in range(8)], b)  # b[l, k]: vertical frequency l, horizontal k
    b /= q
    np.rint(b, out=b)
    b *= q
    _idct8([b[m] for m in range(8)], a)  # a[i, k]
    _idct8([a[:, k] for k in range(8)], b)  # b[j, i]
    np.copyto(x.reshape(hb, 8, wb, 8), b.transpose(2, 1, 3, 0))


def _jpeg(c: np.ndarray, quality: int) -> None:
    """JPEG-compress and decompress ``c`` (3, H, W), values 0..255, in place.

    As libjpeg does by default: YCbCr, chroma averaged over 2x2 pixels, 8x8 DCT blocks quantised
    with the standard tables scaled to ``quality``; decoded with chroma repeated over 2x2 pixels.
    Luma and both chroma planes go through the DCT side by side as one plane (fewer, longer
    NumPy operations).
    """
    _, h, w = c.shape
    h16, w16 = -(-h // 16) * 16, -(-w // 16) * 16
    h2, w2 = h16 // 2, w16 // 2
    p = c
    if (h16, w16) != (h, w):  # edge-padded to whole 16x16 chroma blocks, as encoders do
        p = _WS.get("jpeg_rgb", (3, h16, w16))
        p[:, :h, :w] = c
        p[:, h:, :w] = c[:, -1:]
        p[:, :, w:] = p[:, :, w - 1 : w]
    plane = _WS.get("jpeg_plane", (h16, w16 + w2))  # [Y | Cb over Cr]
    y, cb, cr = plane[:, :w16], plane[:h2, w16:], plane[h2:, w16:]
    r, g, b = p
    tmp = _WS.get("jpeg_tmp", (h16, w16))
    np.multiply(r, F32(0.299), out=y)
    y += np.multiply(g, F32(0.587), out=tmp)
    y += np.multiply(b, F32(0.114), out=tmp)
    y -= F32(128.0)
    half = p[:, 0::2, 0::2] + p[:, 1::2, 0::2]
    half += p[:, 0::2, 1::2]
    half += p[:, 1::2, 1::2]
    half *= F32(0.25)
    t2 = _WS.get("jpeg_half", (h2, w2))
    for out, (wr, wg, wb) in ((cb, (-0.168736, -0.331264, 0.5)), (cr, (0.5, -0.418688, -0.081312))):
        np.multiply(half[0], F32(wr), out=out)
        out += np.multiply(half[1], F32(wg), out=t2)
        out += np.multiply(half[2], F32(wb), out=t2)
    nb = w16 // 8
    q = np.concatenate([np.broadcast_to(_quant_table(_LUMA_Q, quality), (8, 8, 1, nb)),
                        np.broadcast_to(_quant_table(_CHROMA_Q, quality), (8, 8, 1, nb // 2))], axis=3)
    _jpeg_plane(plane, q)
    y += F32(128.0)
    t3 = _WS.get("jpeg_half2", (h2, w2))
    for ch, terms in enumerate((((1.402, cr),), ((-0.344136, cb), (-0.714136, cr)), ((1.772, cb),))):
        (weight, chroma), *rest = terms
        np.multiply(chroma, F32(weight), out=t2)
        for weight, chroma in rest:
            t2 += np.multiply(chroma, F32(weight), out=t3)
        np.copyto(tmp, y)
        for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)):  # chroma repeated over 2x2 pixels
            tmp[i::2, j::2] += t2
        c[ch] = tmp[:h, :w]
    np.rint(c, out=c)
    np.clip(c, F32(0.0), F32(255.0), out=c)


def develop(radiance: np.ndarray, params: CameraParams, rng: np.random.Generator) -> np.ndarray:
    """Linear radiance (3, H, W) float32 -> the camera's (H, W, 3) uint8 image.

    ``rng`` places the noise: it draws one offset into the cached noise tile (two integers),
    as the original pipeline did, whatever ``params`` say; every other choice is in ``params``.
    The noise is added after the gamma-2 curve with the spread that shot and read noise in
    linear light have there (sqrt makes shot noise even; read noise grows towards black), so it
    fuses with the dither into one pass.
    """
    radiance = np.asarray(radiance, dtype=F32)
    if radiance.ndim != 3 or radiance.shape[0] != 3:
        raise ValueError(f"radiance must be (3, H, W), got shape {radiance.shape}")
    _, h, w = radiance.shape
    oy, ox = (int(v) for v in rng.integers(0, 256, size=2))
    p = params
    c = _WS.get("c", radiance.shape)
    if p.plain:
        np.multiply(radiance, F32(p.exposure), out=c)
    else:
        gains = np.array([p.exposure * p.wb_gains[i] * p.cast_gains[i] for i in range(3)], dtype=F32)
        if p.vignette > 0:
            fall = np.multiply(_radius2(h, w, p.center[1], p.center[0]), F32(-p.vignette), out=_WS.get("hw", (h, w)))
            fall += F32(1.0)
            np.multiply(radiance, fall, out=c)
            c *= gains[:, None, None]
        else:
            np.multiply(radiance, gains[:, None, None], out=c)
        if any(p.cast_offset):
            c += np.array(p.cast_offset, dtype=F32)[:, None, None]
        if p.bloom_strength > 0:
            _bloom(c, p.bloom_threshold, p.bloom_strength, p.bloom_radius)
        if p.blur_forward > 0 or p.blur_shake > 0:
            _motion_blur(c, p.blur_forward, p.blur_shake, p.blur_angle, p.center)
    np.clip(c, F32(0.0), F32(1.0), out=c)
    np.sqrt(c, out=c)
    if not p.plain and (p.tone_mid or p.tone_contrast):
        _tone(c, p.tone_mid, p.tone_contrast)
    # the lens's [1 2 1]/4 blur, scaled to 0..255: 0.25 (a + b) + 0.5 m along x, then along y
    e = _pad_edge(c, 1, 1, "pad")
    q = np.add(e[:, :, :-2], e[:, :, 2:], out=_WS.get("blur", (3, h + 2, w)))
    q *= F32(0.25)
    t = np.multiply(e[:, :, 1:-1], F32(0.5), out=_WS.get("tmp", (3, h + 2, w)))
    q += t
    np.add(q[:, :-2], q[:, 2:], out=c)
    c *= F32(63.75)
    t = np.multiply(q[:, 1:-1], F32(127.5), out=t[:, :h])
    c += t
    noise = _sensor_noise(h, w)[:, oy : oy + h, ox : ox + w]
    if not p.plain and (p.noise_shot or p.noise_dark):
        spread = np.multiply(c[1], F32(-p.noise_dark / 255.0), out=_WS.get("hw", (h, w)))  # read noise fades from black
        spread += F32(1.0 + p.noise_shot + p.noise_dark)
        noise = np.multiply(noise, spread, out=t)
    c += noise
    np.rint(c, out=c)
    np.clip(c, F32(0.0), F32(255.0), out=c)
    if not p.plain and p.jpeg_quality > 0:
        _jpeg(c, p.jpeg_quality)
    out = np.empty((h, w, 3), np.uint8)
    np.copyto(out, c.transpose(1, 2, 0), casting="unsafe")
    return out
