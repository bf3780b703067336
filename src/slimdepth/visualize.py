"""Seeing depth: colour maps, error maps, label maps, panels, contact sheets and bird's-eye views.

Everything returns plain ``uint8`` HxWx3 arrays (or writes files), so it works headless, in
notebooks, in TensorBoard and in run directories alike. Inputs may be NumPy arrays or torch
tensors in the Sample layout (``image`` 3xHxW float in [0, 1], ``depth`` 1xHxW metres, 0 = invalid);
torch is never imported here.

Conventions follow what depth people expect: depth is shown as *inverse* depth with magma so
that near is bright (as monodepth2 shows disparity), the range comes from robust percentiles of
the valid values, invalid pixels are black, and sparse LiDAR can be grown into blocks for display.
Point clouds (PLY) are files, written and read by :mod:`slimdepth.fileio`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from slimdepth.colormap import (
    DEFAULT_PERCENTILES,
    _check_dilate,
    _dilate,
    _paint,
    _robust_range,
    _valid,
    check_colormap,
    colorize_depth,
    depth_range,
)
from slimdepth.data.keys import is_sparse_map, sparse_keys
from slimdepth.errors import ConfigError, DataError
from slimdepth.fileio import as_depth_map, as_intrinsics, as_rgb_uint8, to_numpy, write_rgb
from slimdepth.geometry import backproject
from slimdepth.labels import CLASS_NAMES, IGNORE_LABEL

if TYPE_CHECKING:
    import torch

    ArrayLike = Union[np.ndarray, torch.Tensor]

RGB = tuple[int, int, int]

#: class names of the synthetic scenes, indexed by label id
LABEL_NAMES: tuple[str, ...] = CLASS_NAMES
#: Cityscapes colours for those classes (pedestrian = Cityscapes "person")
LABEL_PALETTE: tuple[RGB, ...] = (
    (128, 64, 128),
    (244, 35, 232),
    (70, 70, 70),
    (107, 142, 35),
    (153, 153, 153),
    (0, 0, 142),
    (220, 20, 60),
    (70, 130, 180),
)
ERROR_KINDS: tuple[str, ...] = ("absrel", "abs", "sqrel", "log")

_PRED_COLOR: RGB = (255, 160, 0)
_GT_COLOR: RGB = (0, 200, 255)
_ABSENT_COLOR: RGB = (64, 64, 64)
_STRIP_BG: RGB = (235, 235, 235)


def _error(pred: np.ndarray, gt: np.ndarray, kind: str) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "absrel":
            return np.abs(pred - gt) / gt
        if kind == "abs":
            return np.abs(pred - gt)
        if kind == "sqrel":
            return (pred - gt) ** 2 / gt
        return np.abs(np.log(pred) - np.log(gt))


def colorize_error(
    pred: ArrayLike,
    gt: ArrayLike,
    kind: str = "absrel",
    vmax: float | None = None,
    cmap: str = "YlOrRd",
    invalid_color: Sequence[int] = (0, 0, 0),
    dilate: int = 1,
) -> np.ndarray:
    """Colour the per-pixel error of ``pred`` against ``gt`` (both metres) as HxWx3 uint8.

    ``kind``: ``absrel`` |p-g|/g, ``abs`` |p-g| (m), ``sqrel`` (p-g)²/g or ``log`` |ln p - ln g|.
    The scale runs from 0 to ``vmax`` (default: 95th percentile of the error), light yellow to
    dark red so that a perfect pixel is never confused with invalid ground truth (black). A missing or
    non-positive prediction where the ground truth is valid shows as the worst error.
    ``dilate=k`` grows sparse ground-truth pixels into kxk blocks (worst error wins).
    """
    if kind not in ERROR_KINDS:
        raise ConfigError(f"unknown error kind {kind!r}; choose one of {', '.join(ERROR_KINDS)}")
    p, g = as_depth_map(pred, "pred"), as_depth_map(gt, "gt")
    if p.shape != g.shape:
        raise DataError(f"pred and gt must have the same size, got {p.shape} and {g.shape}")
    k = _check_dilate(dilate)
    valid = _valid(g)
    err = _error(p, np.where(valid, g, 1.0), kind)
    err = np.where(_valid(p) & np.isfinite(err), err, np.inf)
    finite = err[valid & np.isfinite(err)]
    if vmax is not None and vmax <= 0:
        raise ConfigError(f"vmax must be positive, got {vmax}")
    if vmax is None:
        vmax = float(np.percentile(finite, 95)) if finite.size else 0.0
        vmax = vmax if vmax > 0 else float(finite.max(initial=0.0)) or 1.0
    t, valid = _dilate(np.clip(err / vmax, 0.0, 1.0), valid, k, take_min=False)
    return _paint(t, valid, cmap, invalid_color)


def colorize_labels(seg: ArrayLike, palette: Sequence[Sequence[int]] | np.ndarray | None = None) -> np.ndarray:
    """Colour a label map (HxW class ids) as HxWx3 uint8 with one colour per class.

    ``palette[i]`` is the RGB of class i (default :data:`LABEL_PALETTE`, Cityscapes-like);
    255 (ignore) and ids outside 0..255 are black; ids beyond the palette get fixed
    pseudo-random colours so that extra classes stay distinguishable.
    """
    arr, _ = to_numpy(seg)
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2 or not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise DataError(f"seg: expected an HxW integer label map, got {arr.dtype} {tuple(arr.shape)}")
    pal = np.asarray(LABEL_PALETTE if palette is None else palette)
    if pal.ndim != 2 or pal.shape[1] != 3 or len(pal) > 256 or pal.min(initial=0) < 0 or pal.max(initial=0) > 255:
        raise ConfigError(f"palette must be at most 256 RGB triples in 0..255, got shape {pal.shape}")
    lut = np.random.default_rng(0).integers(0, 256, size=(257, 3)).astype(np.uint8)
    lut[: len(pal)] = pal
    lut[IGNORE_LABEL] = 0
    lut[256] = 0  # out of range
    idx = np.where((arr >= 0) & (arr <= 255), arr, 256).astype(np.intp)
    return lut[idx]


# ---------------------------------------------------------------- panels and text


@lru_cache(maxsize=8)
def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow < 10.1 or no FreeType: fixed bitmap font
        return ImageFont.load_default()


def _text_strip(text: str, width: int, height: int, align: str = "center", bg: RGB = (255, 255, 255)) -> np.ndarray:
    """A ``height`` x ``width`` strip with one line of text, shortened with '...' if too long."""
    img = Image.new("RGB", (width, height), bg)
    if text and height > 0 and width > 0:
        draw = ImageDraw.Draw(img)
        font = _font(max(6, round(height * 0.6)))
        pad = 3
        fitted, room = text, width - 2 * pad
        if draw.textlength(fitted, font=font) > room:
            while len(fitted) > 1 and draw.textlength(fitted + "...", font=font) > room:
                fitted = fitted[:-1]
            fitted += "..."
        left, top, right, bottom = draw.textbbox((0, 0), fitted, font=font)
        x = (width - (right - left)) / 2 - left if align == "center" else pad - left
        y = (height - (bottom - top)) / 2 - top
        draw.text((x, y), fitted, fill=(0, 0, 0), font=font)
    return np.asarray(img, dtype=np.uint8)


def _resize(panel: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area-average when shrinking (no aliasing), nearest when enlarging (pixels stay honest)."""
    h, w = panel.shape[:2]
    if (h, w) == (height, width):
        return panel
    method = Image.Resampling.NEAREST if height >= h and width >= w else Image.Resampling.BOX
    return np.asarray(Image.fromarray(panel).resize((width, height), method), dtype=np.uint8)


def _hstack(panels: Sequence[np.ndarray], gap: int, bg: RGB = (255, 255, 255)) -> np.ndarray:
    h = panels[0].shape[0]
    spacer = np.empty((h, gap, 3), dtype=np.uint8)
    spacer[:] = bg
    parts: list[np.ndarray] = []
    for i, p in enumerate(panels):
        parts.extend([spacer, p] if i else [p])
    return np.concatenate(parts, axis=1)


def side_by_side(
    panels: Sequence[ArrayLike],
    titles: Sequence[str] | None = None,
    *,
    height: int | None = None,
    gap: int = 4,
    title_height: int = 20,
) -> np.ndarray:
    """Put images next to each other, resized to one height, with optional title strips.

    Panels may be any image layout :func:`colorize_depth` & co. return or the Sample uses
    (HxWx3 uint8, 3xHxW float, HxW grey). ``height`` defaults to the first panel's; widths keep
    each panel's aspect ratio. Output: (title_height if titles else 0) + height rows and
    sum(widths) + gap*(n-1) columns, white between panels.
    """
    if not panels:
        raise ConfigError("side_by_side needs at least one panel")
    if titles is not None and len(titles) != len(panels):
        raise ConfigError(f"got {len(titles)} titles for {len(panels)} panels")
    if gap < 0 or title_height < 0 or (height is not None and height < 1):
        raise ConfigError("height must be positive, gap and title_height non-negative")
    rgb = [as_rgb_uint8(p, f"panel {i}") for i, p in enumerate(panels)]
    h = height or rgb[0].shape[0]
    rgb = [_resize(p, h, max(1, round(p.shape[1] * h / p.shape[0]))) for p in rgb]
    if titles is not None and title_height > 0:
        rgb = [np.concatenate([_text_strip(t, p.shape[1], title_height), p]) for t, p in zip(titles, rgb)]
    return _hstack(rgb, gap)


def bird_eye_view(
    depth: ArrayLike, K: ArrayLike, gt: ArrayLike | None = None, *, height: int = 256, max_depth: float | None = None
) -> np.ndarray:
    """Top-down view (x right, z up the picture) of the back-projected points, metric aspect.

    Shows what colour maps hide: a scale error moves a whole wall, a shape error bends it.
    Prediction in orange, ground truth (if given) in cyan on top, black background, camera at
    the bottom centre; the view reaches ``max_depth`` (default: the 95th percentile of the
    ground truth, else of the prediction) and the camera's horizontal field of view.
    """
    Km = as_intrinsics(K)
    clouds = [(as_depth_map(depth), _PRED_COLOR)]
    if gt is not None:
        clouds.append((as_depth_map(gt, "gt"), _GT_COLOR))
    if max_depth is None:
        ref = next((d[_valid(d)] for d, _ in reversed(clouds) if _valid(d).any()), np.ones(1))
        max_depth = float(np.percentile(ref, 95))
    if max_depth <= 0 or height < 2:
        raise ConfigError("bird_eye_view needs max_depth > 0 and height >= 2")
    w_img = clouds[0][0].shape[1]
    x_lo = -Km[0, 2] / Km[0, 0] * max_depth
    x_hi = (w_img - 1 - Km[0, 2]) / Km[0, 0] * max_depth
    width = max(2, round(height * (x_hi - x_lo) / max_depth))
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    for d, color in clouds:
        pts, _ = backproject(d, Km)
        col = np.rint((pts[:, 0] - x_lo) / (x_hi - x_lo) * (width - 1)).astype(np.int64)
        row = np.rint((1.0 - pts[:, 2] / max_depth) * (height - 1)).astype(np.int64)
        keep = (col >= 0) & (col < width) & (row >= 0) & (row < height)
        canvas[row[keep], col[keep]] = color
    return canvas


def auto_dilation(sparse: bool, scale: float = 1.0) -> int:
    """Block size (``dilate=`` of :func:`colorize_depth`) that keeps a sparse map (a point set)
    readable after the picture is resized by ``scale``: 3 at full size, 5 at half size; 1 when dense."""
    return 2 * math.ceil(1.0 / min(scale, 1.0)) + 1 if sparse else 1


def _range_text(rng: tuple[float, float] | None) -> str:
    return f"{rng[0]:.1f}-{rng[1]:.1f} m" if rng else "no valid depth"


def comparison_panel(
    image: ArrayLike,
    pred: ArrayLike,
    gt: ArrayLike | None = None,
    K: ArrayLike | None = None,
    *,
    cmap: str = "magma",
    error_vmax: float | None = None,
    title_height: int = 20,
) -> np.ndarray:
    """image | prediction | ground truth | abs-rel error (| top view when ``K`` is given).

    Prediction and ground truth share one depth range (robust percentiles of the ground
    truth, else of the prediction) so equal colours mean equal metres; the titles state the
    range. Ground truth and error appear only with ``gt``; sparse ground truth is grown into
    small blocks. With ``K``, a :func:`bird_eye_view` of both point clouds is appended.
    """
    rgb = as_rgb_uint8(image)
    p = as_depth_map(pred, "pred")
    g = None if gt is None else as_depth_map(gt, "gt")
    ref = g if g is not None and _valid(g).any() else p
    rng = _robust_range(ref[_valid(ref)], DEFAULT_PERCENTILES)
    vmin, vmax = rng if rng else (None, None)
    panels = [rgb, colorize_depth(p, cmap, vmin, vmax)]
    titles = ["image", f"prediction {_range_text(rng)}"]
    if g is not None:
        k = auto_dilation(is_sparse_map(g))
        panels += [colorize_depth(g, cmap, vmin, vmax, dilate=k), colorize_error(p, g, "absrel", error_vmax, dilate=k)]
        titles += [f"ground truth {_range_text(rng)}", "abs rel error"]
    if K is not None:
        panels.append(bird_eye_view(p, K, g, height=rgb.shape[0]))
        titles.append("top view")
    return side_by_side(panels, titles, height=rgb.shape[0], title_height=title_height)


# ---------------------------------------------------------------- contact sheet

#: (sample key, column title) in display order
SHEET_COLUMNS: tuple[tuple[str, str], ...] = (
    ("image", "image"),
    ("depth", "depth"),
    ("lidar_depth", "LiDAR"),
    ("seg", "labels"),
    ("right_image", "right image"),
)


def _sheet_panel(sample: Mapping[str, Any], key: str, value: np.ndarray, rng: tuple[float, float] | None,
                 scale: float, cmap: str) -> np.ndarray:
    if key in ("depth", "lidar_depth"):
        vmin, vmax = rng if rng else (None, None)
        return colorize_depth(value, cmap, vmin, vmax, dilate=auto_dilation(key in sparse_keys(dict(sample)), scale))
    if key == "seg":
        return colorize_labels(value)
    return as_rgb_uint8(value, key)


def contact_sheet(
    samples: Sequence[Mapping[str, Any]],
    path: str | Path | None = None,
    *,
    max_width: int = 1920,
    gap: int = 4,
    title_height: int = 20,
    cmap: str = "magma",
) -> np.ndarray:
    """One row per sample: image | depth | LiDAR | labels | right image, as HxWx3 uint8.

    A column appears when any sample has its key (missing cells are dark grey). A header
    strip names the columns; above each row a strip gives ``meta['name']`` and the depth range
    shared by its depth and LiDAR cells. Every cell is ``cell_w`` wide, where ``cell_w`` is the
    widest image or ``(max_width - gap*(ncols-1)) // ncols`` if smaller, and as tall as its
    sample's aspect ratio says; sparse maps are grown so that points survive the downscale.
    Sheet size: ``ncols*cell_w + gap*(ncols-1)`` wide, ``title_height*(n+1) + sum(row heights)``
    tall. Written with :func:`slimdepth.fileio.write_rgb` when ``path`` is given.
    """
    if not samples:
        raise ConfigError("contact_sheet needs at least one sample")
    for i, s in enumerate(samples):
        if "image" not in s:
            raise DataError(f"contact_sheet: sample {i} has no 'image'")
    columns = [(k, t) for k, t in SHEET_COLUMNS if any(k in s for s in samples)]
    ncols = len(columns)
    images = [as_rgb_uint8(s["image"]) for s in samples]
    sizes = [im.shape[:2] for im in images]
    cell_w = min((max_width - gap * (ncols - 1)) // ncols, max(w for _, w in sizes))
    if cell_w < 1:
        raise ConfigError(f"max_width {max_width} is too small for {ncols} columns")
    width = ncols * cell_w + gap * (ncols - 1)
    header = [_text_strip(t, cell_w, title_height) for _, t in columns]
    parts = [_hstack(header, gap)] if title_height > 0 else []
    for i, (s, (h, w)) in enumerate(zip(samples, sizes)):
        row_h = max(1, round(cell_w * h / w))
        depths = {k: as_depth_map(s[k], k) for k in ("depth", "lidar_depth") if k in s}
        values = [d[_valid(d)] for d in depths.values()]
        rng = _robust_range(np.concatenate(values), DEFAULT_PERCENTILES) if values else None
        ready = {**depths, "image": images[i]}  # already converted: pass them down
        cells = []
        for key, _ in columns:
            if key in s:
                panel = _sheet_panel(s, key, ready.get(key, s[key]), rng, cell_w / w, cmap)
                cells.append(_resize(panel, row_h, cell_w))
            else:
                cells.append(np.full((row_h, cell_w, 3), _ABSENT_COLOR, dtype=np.uint8))
        name = str((s.get("meta") or {}).get("name", f"sample {i}"))
        label = f"{name}   colours span {_range_text(rng)} (5th-95th percentile of depth)" if depths else name
        if title_height > 0:
            parts.append(_text_strip(label, width, title_height, align="left", bg=_STRIP_BG))
        parts.append(_hstack(cells, gap))
    sheet = np.concatenate(parts, axis=0)
    if path is not None:
        write_rgb(path, sheet)
    return sheet


__all__ = [
    "ERROR_KINDS",
    "LABEL_NAMES",
    "check_colormap",
    "LABEL_PALETTE",
    "SHEET_COLUMNS",
    "auto_dilation",
    "bird_eye_view",
    "colorize_depth",
    "colorize_error",
    "colorize_labels",
    "comparison_panel",
    "contact_sheet",
    "depth_range",
    "side_by_side",
]
