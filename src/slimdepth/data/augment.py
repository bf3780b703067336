"""Depth-consistent data augmentation.

Every transform is a callable ``t(sample, generator=None) -> sample`` that returns a new sample
(the input is never modified). Randomness comes only from ``generator``: a ``torch.Generator``,
an ``int`` seed, or ``None`` for torch's global generator (what a ``DataLoader`` worker seeds).
:class:`Compose` threads one generator through its ops, so the same seed gives the same output.

Keys are handled by their kind (:func:`slimdepth.data.sample.key_kind`):

* image-like (``image``, ``*_image``): bilinear (no antialiasing), 0 where the pixel centre
  falls outside the source; photometric ops change only these;
* depth-like (``depth``, ``*_depth``): nearest neighbour, padding 0 (invalid), so every valid
  output pixel carries exactly one valid source value;
* label-like (``seg``, ``*_seg``): nearest neighbour, padding 255 (ignore);
* ``K``: updated by every geometric op (pixel centres at integers, see
  :mod:`slimdepth.geometry`);
* ``meta``: copied; ``meta['augment']`` (always present after any op) gets one small dict per
  op that fired, with the drawn parameters (e.g. ``{"op": "rotate", "degrees": 7.2}``).

Geometric ops **drop the stereo partner view** (keys starting with ``right_``, e.g.
``right_image``): flipping, cropping or rotating one view of a rectified pair breaks the stereo
geometry. Keys of any other kind pass through untouched. Samples without depth, labels or ``K``
(unlabeled images) work as well.

Photometric ops (colour jitter, RGB multiplier, grey, gamma, blur, sharpen, noise, RandConv) live in
:mod:`slimdepth.data.photometric` and the base class in :mod:`slimdepth.data.augment_base`; both
are re-exported here, and :func:`build_augmentation` builds every op by name.

All geometric ops go through one helper, :func:`_warp`, driven by an affine map ``M`` from
source to output pixel coordinates. Its intrinsics rule: ``M @ K`` is factored as
``[[U, p], [0, 1]] @ diag(Q, 1)`` with ``U`` upper triangular (positive diagonal) and ``Q`` a
2x2 orthogonal matrix; the new ``K`` is ``[[U, p], [0, 1]]`` and the output is *exactly* the
picture of a camera whose frame is turned by ``Q`` about the optical axis (``Q`` = identity for
crops and resizes, a mirror for flips, a rotation for rotations). Depth ``Z`` is unchanged by
that, except in :class:`RandomScale` which divides it by ``s`` on purpose. :class:`Compose`
fuses consecutive geometric ops into a single resampling.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from slimdepth.data.augment_base import (
    Augmentation, Sample, SizeLike, _fit, _interval, _non_negative, _probability, _randint, _record, _size, _uniform,
)
from slimdepth.data.photometric import (
    ColorJitter, GaussianBlur, GaussianNoise, RandomConvolution, RandomGamma, RandomGrayscale, RGBMultiplier, Sharpen,
    SharpenFar,
)
from slimdepth.data.sample import IGNORE_LABEL, key_kind, sample_size, sparse_keys
from slimdepth.errors import ConfigError

__all__ = [
    "Augmentation",
    "CenterCrop",
    "ColorJitter",
    "Compose",
    "GaussianBlur",
    "GaussianNoise",
    "GeometricAugmentation",
    "RCrop",
    "RGBMultiplier",
    "RandomConvolution",
    "RandomCrop",
    "RandomGamma",
    "RandomGrayscale",
    "RandomHorizontalFlip",
    "RandomRotation",
    "RandomScale",
    "Resize",
    "Sharpen",
    "SharpenFar",
    "available_augmentations",
    "build_augmentation",
]

# ----------------------------------------------------------------------------- the one warp


def _affine_inverse(m: np.ndarray) -> np.ndarray:
    """Closed-form inverse of a 3x3 affine matrix (exact for flips and integer shifts)."""
    (a, b, tx), (c, d, ty) = m[0], m[1]
    det = a * d - b * c
    inv = np.array([[d, -b], [-c, a]], dtype=np.float64) / det
    out = np.eye(3)
    out[:2, :2] = inv
    out[:2, 2] = -inv @ np.array([tx, ty])
    return out


def _warp_intrinsics(K: torch.Tensor, out_from_src: np.ndarray, z_scale: float) -> torch.Tensor:
    """New K after the pixel map ``out_from_src`` (see the module docstring for the rule).

    ``M @ K`` restricted to its 2x2 block is RQ-factored as ``U @ Q``; the principal point is
    the mapped one. ``z_scale`` (depth multiplied by it, X and Y kept) scales ``U`` alike.
    """
    P = out_from_src @ K.double().numpy()
    B = P[:2, :2]
    r = math.hypot(B[1, 0], B[1, 1])
    q2 = B[1] / r
    q1 = np.array([q2[1], -q2[0]])
    if B[0] @ q1 < 0:
        q1 = -q1
    out = np.eye(3)
    out[:2, :2] = z_scale * np.array([[B[0] @ q1, B[0] @ q2], [0.0, r]])
    out[:2, 2] = P[:2, 2]
    if abs(out[0, 1]) < 1e-9 * out[0, 0]:
        out[0, 1] = 0.0  # rounding noise of cos/sin, not a real skew
    return torch.from_numpy(out.astype(np.float32))


def _gather(value: torch.Tensor, index: torch.Tensor, inside: torch.Tensor, fill: float) -> torch.Tensor:
    """Nearest-neighbour pick of ``value[..., h, w]`` at flat ``index``; ``fill`` outside."""
    flat = value.reshape(*value.shape[:-2], -1)[..., index]
    return torch.where(inside, flat, torch.full((), fill, dtype=value.dtype))


def _splat(depth: torch.Tensor, out_from_src: np.ndarray, out_size: tuple[int, int], kept: torch.Tensor) -> torch.Tensor:
    """Move every valid pixel of a sparse 1xHxW depth map to its nearest output pixel.

    Resampling a point set by gathering would copy each point into a block of pixels when
    upsampling; splatting keeps one pixel per point, at its true position (rounded), and the
    nearest depth where points collide, as the KITTI devkit does when it rasterises a sweep.
    """
    out_h, out_w = out_size
    rows, cols = torch.nonzero(depth[0] > 0, as_tuple=True)
    z = depth[0, rows, cols]
    u, v = _apply_affine(out_from_src, cols.to(torch.float64), rows.to(torch.float64))
    col, row = torch.floor(u + 0.5).long(), torch.floor(v + 0.5).long()
    ok = (col >= 0) & (col < out_w) & (row >= 0) & (row < out_h)
    col, row, z = col[ok], row[ok], z[ok]
    ok = kept[row, col]
    flat = row[ok] * out_w + col[ok]
    out = torch.full((out_h * out_w,), float("inf"), dtype=depth.dtype)
    out.scatter_reduce_(0, flat, z[ok], reduce="amin")
    out[torch.isinf(out)] = 0.0
    return out.reshape(1, out_h, out_w)


def _bilinear(image: torch.Tensor, su: torch.Tensor, sv: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """Bilinear sample at source pixel coordinates (align_corners=False normalisation).

    Border pixels are replicated, so a resize equals ``F.interpolate(..., align_corners=False)``
    instead of fading to black; pixels whose centre falls outside (``~inside``) become 0.
    """
    h, w = image.shape[-2:]
    grid = torch.stack(((2.0 * su + 1.0) / w - 1.0, (2.0 * sv + 1.0) / h - 1.0), dim=-1)
    out = F.grid_sample(image[None], grid[None].to(image.dtype), mode="bilinear", padding_mode="border", align_corners=False)
    return (out[0] * inside).clamp_(0.0, 1.0)


def _drop_stereo(sample: Sample) -> Sample:
    """Shallow copy without the stereo partner keys (``right_*``)."""
    return {key: value for key, value in sample.items() if not key.startswith("right_")}


@dataclass
class _Step:
    """One geometric op as data: source->output pixel map, output size, meta entry, depth factor."""

    matrix: np.ndarray
    out_size: tuple[int, int]
    entry: dict[str, Any]
    z_scale: float = 1.0


def _chain(steps: Sequence[_Step]) -> tuple[np.ndarray, float]:
    """The steps' maps multiplied into one source->output map, and their depth factors into one."""
    total, z_scale = np.eye(3), 1.0
    for step in steps:
        total, z_scale = step.matrix @ total, z_scale * step.z_scale
    return total, z_scale


def _apply_affine(m: np.ndarray, u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return m[0, 0] * u + m[0, 1] * v + m[0, 2], m[1, 0] * u + m[1, 1] * v + m[1, 2]


def _warp(sample: Sample, steps: Sequence[_Step]) -> Sample:
    """Resample every key of ``sample`` through a chain of geometric steps, in one pass.

    The steps' maps are multiplied into one source->output map; output pixel centre (u, v) reads
    the source at its inverse image: images bilinearly, depth and labels from the nearest pixel
    (ties round up). Sparse depth maps (point sets such as LiDAR, see
    :func:`~slimdepth.data.sample.sparse_keys`) are splatted instead, each point to its nearest
    output pixel, so that upsampling never duplicates points. A pixel that leaves the bounds of any intermediate frame is padding, exactly
    as if the steps had been applied one by one, but without compounding blur and rounding. When
    every source position is an integer (crops, flips, right-angle turns) images are copied
    exactly. Depth is multiplied by the product of ``z_scale`` and ``K`` follows the same map.
    """
    if not steps:  # e.g. a flip that did not fire: same keys as if it had
        return {**_drop_stereo(sample), "meta": _record(sample.get("meta"), [])}
    h, w = sample_size(sample)
    out_h, out_w = steps[-1].out_size
    total, z_scale = _chain(steps)
    v, u = torch.meshgrid(
        torch.arange(out_h, dtype=torch.float64), torch.arange(out_w, dtype=torch.float64), indexing="ij"
    )
    kept = torch.ones(out_h, out_w, dtype=torch.bool)  # inside every intermediate frame
    back = np.eye(3)
    for k in range(len(steps) - 1, 0, -1):
        back = _affine_inverse(steps[k].matrix) @ back
        x, y = _apply_affine(back, u, v)
        fh, fw = steps[k - 1].out_size
        kept &= (x >= -0.5) & (x < fw - 0.5) & (y >= -0.5) & (y < fh - 0.5)
    su, sv = _apply_affine(_affine_inverse(total), u, v)
    col, row = torch.floor(su + 0.5), torch.floor(sv + 0.5)
    exact = bool(torch.maximum((su - col).abs(), (sv - row).abs()).max() < 1e-9)
    col, row = col.long(), row.long()
    inside = kept & (col >= 0) & (col < w) & (row >= 0) & (row < h)
    index = row.clamp(0, h - 1) * w + col.clamp(0, w - 1)

    out: Sample = {}
    point_sets = sparse_keys(sample)
    for key, value in _drop_stereo(sample).items():
        kind = key_kind(key)
        if kind == "image":
            out[key] = _gather(value, index, inside, 0.0) if exact else _bilinear(value, su, sv, inside)
        elif kind == "depth":
            sparse = not exact and key in point_sets
            depth = _splat(value, total, (out_h, out_w), kept) if sparse else _gather(value, index, inside, 0.0)
            out[key] = depth * z_scale if z_scale != 1.0 else depth
        elif kind == "label":
            out[key] = _gather(value, index, inside, IGNORE_LABEL)
        elif kind == "K":
            out[key] = _warp_intrinsics(value, total, z_scale)
        elif kind != "meta":
            out[key] = value
    out["meta"] = _record(sample.get("meta"), [step.entry for step in steps])
    return out


def _crop_resize_map(box: tuple[float, float, float, float], out_size: tuple[int, int]) -> np.ndarray:
    """Source->output map of cropping ``box = (y0, x0, h, w)`` and resizing it to ``out_size``."""
    y0, x0, ch, cw = box
    sy, sx = out_size[0] / ch, out_size[1] / cw
    return np.array(
        [[sx, 0.0, sx * (0.5 - x0) - 0.5], [0.0, sy, sy * (0.5 - y0) - 0.5], [0.0, 0.0, 1.0]], dtype=np.float64
    )


# ----------------------------------------------------------------------------- base + compose


class GeometricAugmentation(Augmentation):
    """A geometric op is a random affine pixel map; :func:`_warp` does the resampling."""

    def plan(self, size: tuple[int, int], generator: torch.Generator | None) -> _Step | None:
        """Draw this op's parameters for an input of ``size`` (None: the op does nothing)."""
        raise NotImplementedError  # pragma: no cover - abstract

    #: whether :meth:`plan_at` reads ``K`` (a Compose works out the pending K only for such ops)
    needs_K: bool = False

    def plan_at(self, size: tuple[int, int], generator: torch.Generator | None,
                K: torch.Tensor | None) -> _Step | None:
        """:meth:`plan`, for an op that also needs the intrinsics ``K`` the input has at that
        point (None for samples without ``K``); most ops ignore them."""
        return self.plan(size, generator)

    def apply(self, sample: Sample, generator: torch.Generator | None) -> Sample:
        step = self.plan_at(sample_size(sample), generator, sample.get("K"))
        return _warp(sample, [step] if step is not None else [])


def _current_intrinsics(K: torch.Tensor | None, steps: Sequence[_Step]) -> torch.Tensor | None:
    """``K`` after the pending (not yet resampled) ``steps``, as :func:`_warp` will set it."""
    return _warp_intrinsics(K, *_chain(steps)) if K is not None and steps else K


@dataclass
class Compose(Augmentation):
    """Apply ops in order, threading one generator so a seed fixes the whole pipeline.

    Consecutive geometric ops are fused into one resampling (see :func:`_warp`): same result as
    applying them one by one, minus the repeated interpolation and rounding.
    """

    transforms: list[Callable[..., Sample]] = field(default_factory=list)

    def apply(self, sample: Sample, generator: torch.Generator | None) -> Sample:
        steps: list[_Step] = []
        pending = False  # a geometric op ran (maybe as a no-op) since the last warp
        for t in self.transforms:
            if isinstance(t, GeometricAugmentation):
                size = steps[-1].out_size if steps else sample_size(sample)
                K = _current_intrinsics(sample.get("K"), steps) if t.needs_K else None
                step = t.plan_at(size, generator, K)
                steps += [step] if step is not None else []
                pending = True
                continue
            if pending:
                sample, steps, pending = _warp(sample, steps), [], False
            sample = t(sample, generator) if isinstance(t, Augmentation) else t(sample)
        return _warp(sample, steps) if pending else sample


# ----------------------------------------------------------------------------- geometric ops


@dataclass
class RandomCrop(GeometricAugmentation):
    """Crop ``size`` (H, W) at a uniformly random integer location; K's principal point shifts."""

    size: SizeLike

    def __post_init__(self) -> None:
        self.size = _size(self.size, "random_crop size")

    def plan(self, size: tuple[int, int], generator: torch.Generator | None) -> _Step:
        (h, w), (ch, cw) = size, self.size
        _fit(self.size, h, w, "random_crop")
        box = (_randint(generator, 0, h - ch), _randint(generator, 0, w - cw), ch, cw)
        return _Step(_crop_resize_map(box, self.size), self.size, {"op": "random_crop", "box": list(box)})


@dataclass
class CenterCrop(GeometricAugmentation):
    """Crop ``size`` (H, W) from the centre (offsets rounded down)."""

    size: SizeLike

    def __post_init__(self) -> None:
        self.size = _size(self.size, "center_crop size")

    def plan(self, size: tuple[int, int], generator: torch.Generator | None) -> _Step:
        (h, w), (ch, cw) = size, self.size
        _fit(self.size, h, w, "center_crop")
        box = ((h - ch) // 2, (w - cw) // 2, ch, cw)
        return _Step(_crop_resize_map(box, self.size), self.size, {"op": "center_crop", "box": list(box)})


@dataclass
class Resize(GeometricAugmentation):
    """Resize to ``size`` (H, W): depth values unchanged, K focal lengths scale with the image.

    Images are resampled bilinearly without antialiasing (fine for the moderate factors used in
    training; shrink strongly with a dedicated resize instead).
    """

    size: SizeLike

    def __post_init__(self) -> None:
        self.size = _size(self.size, "resize size")

    def plan(self, size: tuple[int, int], generator: torch.Generator | None) -> _Step:
        m = _crop_resize_map((0, 0, *size), self.size)
        return _Step(m, self.size, {"op": "resize", "size": list(self.size)})


@dataclass
class RCrop(GeometricAugmentation):
    """LiteDepth's "R crop": a crop of random size *and* location, resized back.

    The crop size is drawn uniformly from ``sizes`` (absolute HxW) among those that fit the image
    (error if none does) or, by default, from ``fractions`` of the input size: (0.5, 0.6),
    (0.8, 0.8) and (1, 1), which at LiteDepth's 480x640 are exactly its 240x384, 384x512 and
    480x640, and which fit any image. The crop is placed at a random integer location and resized
    to ``out_size`` (default: the input size). Depth values are unchanged; K's focal lengths scale
    by out/crop (differently along x and y when the aspect changes) and the principal point
    follows the crop.
    """

    sizes: Sequence[SizeLike] | None = None
    out_size: SizeLike | None = None
    fractions: Sequence[Sequence[float]] = ((0.5, 0.6), (0.8, 0.8), (1.0, 1.0))

    def __post_init__(self) -> None:
        if self.sizes is not None:
            if isinstance(self.sizes, str) or not isinstance(self.sizes, Sequence) or not self.sizes:
                raise ConfigError(f"rcrop sizes must be a non-empty list of HxW sizes, got {self.sizes!r}")
            self.sizes = tuple(_size(s, "rcrop size") for s in self.sizes)
        bad = not self.fractions or any(len(f) != 2 or not all(0 < float(v) <= 1 for v in f) for f in self.fractions)
        if bad:
            raise ConfigError(f"rcrop fractions must be a non-empty list of (h, w) in (0, 1], got {self.fractions!r}")
        self.fractions = tuple((float(a), float(b)) for a, b in self.fractions)
        if self.out_size is not None:
            self.out_size = _size(self.out_size, "rcrop out_size")

    def plan(self, size: tuple[int, int], generator: torch.Generator | None) -> _Step:
        h, w = size
        if self.sizes is None:
            fitting = [(max(1, round(a * h)), max(1, round(b * w))) for a, b in self.fractions]
        else:
            fitting = [s for s in self.sizes if s[0] <= h and s[1] <= w]
            if not fitting:
                listed = ", ".join(f"{a}x{b}" for a, b in self.sizes)
                raise ConfigError(f"rcrop: none of the crop sizes ({listed}) fits the image {h}x{w}")
        ch, cw = fitting[_randint(generator, 0, len(fitting) - 1)]
        box = (_randint(generator, 0, h - ch), _randint(generator, 0, w - cw), ch, cw)
        out_size = self.out_size or (h, w)
        return _Step(_crop_resize_map(box, out_size), out_size, {"op": "rcrop", "box": list(box), "size": list(out_size)})


@dataclass
class RandomHorizontalFlip(GeometricAugmentation):
    """Mirror left-right with probability ``p``.

    K becomes :func:`slimdepth.geometry.flip_intrinsics` (cx -> W-1-cx, skew negated): the
    output is the picture of the mirrored scene (X -> -X). Flipping twice is the identity.
    The stereo partner is dropped even when the flip does not fire, so samples batch together.
    """

    p: float = 0.5

    def __post_init__(self) -> None:
        self.p = _probability(self.p, "hflip p")

    def plan(self, size: tuple[int, int], generator: torch.Generator | None) -> _Step | None:
        if torch.rand((), generator=generator, dtype=torch.float64).item() >= self.p:
            return None
        m = np.array([[-1.0, 0.0, size[1] - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        return _Step(m, size, {"op": "hflip"})


@dataclass
class RandomRotation(GeometricAugmentation):
    """Rotate about the image centre by an angle uniform in [-degrees, degrees] (or a (low, high) pair).

    Positive angles turn the picture counter-clockwise on screen (``+90`` on a square image equals
    ``torch.rot90(x, 1, dims=(-2, -1))``). Rotating the picture about the optical axis leaves
    depth values unchanged. Pixels rotated in from outside are invalid: depth 0, seg 255, image 0.

    K: the principal point rotates about the image centre, ``p' = c + L (p - c)`` with
    ``L = [[cos, sin], [-sin, cos]]``. With square pixels (fx == fy, no skew) the focal block is
    unchanged and the output is exactly the camera rolled by the angle, ``X' = L X`` in (x, y).
    With fx != fy no zero-skew K can describe a rotated picture; we keep it exact by factoring
    ``L @ K[:2, :2] = U @ Q``: the new K carries ``U`` (slightly changed fx, fy and a skew
    ``K[0, 1] != 0``) and the camera is rolled by ``Q`` (close to, not equal to, the angle).
    Code that ignores the skew makes an error that grows with ``|fx - fy|`` and the angle.
    """

    degrees: float | Sequence[float] = 15.0

    def __post_init__(self) -> None:
        if isinstance(self.degrees, Sequence) and not isinstance(self.degrees, str):
            self.degrees = _interval(self.degrees, "rotate degrees")
        else:
            d = _non_negative(self.degrees, "rotate degrees")
            self.degrees = (-d, d)

    def plan(self, size: tuple[int, int], generator: torch.Generator | None) -> _Step:
        angle = _uniform(generator, *self.degrees)
        h, w = size
        t = math.radians(angle)
        lin = np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]])
        centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
        m = np.eye(3)
        m[:2, :2], m[:2, 2] = lin, centre - lin @ centre
        return _Step(m, size, {"op": "rotate", "degrees": angle})


@dataclass
class RandomScale(GeometricAugmentation):
    """Eigen-style zoom: upscale by ``s`` ~ U(scale), crop back to the input size, depth / s.

    The picture is magnified by ``s`` about its top-left corner, then a window of the input size
    is taken at a random (real-valued) offset ``(y0, x0)`` inside the ``s``-times larger image
    (``s < 1`` shrinks instead and pads with invalid pixels). Depth values are divided by ``s``.

    K after this op: focal lengths (and skew) are **unchanged**; the principal point is the
    zoomed-and-shifted one, ``cx' = s (cx + 0.5) - 0.5 - x0``, ``cy' = s (cy + 0.5) - 0.5 - y0``.
    Meaning: an output pixel back-projected with ``K'`` and its new depth gives ``(X, Y, Z / s)``
    for the scene point ``(X, Y, Z)`` the source pixel saw, so lateral positions are kept and
    depth shrinks by ``s`` -- the output is the exact picture (through ``K'``) of the scene
    squashed by ``s`` along the optical axis, i.e. "the camera moved closer" in the usual
    approximate sense (a real forward move subtracts a constant from Z instead). For a rigid
    rescaling use :class:`Resize`, which scales the focal lengths and keeps depth.

    ``about="principal"`` magnifies about the principal point instead of taking a random
    window: ``K`` comes out unchanged, so the horizon of a level camera stays on its row and
    the road keeps the depth its row gives (what a flat-road head such as LiteDepth's
    ``road_prior`` assumes), while everything standing on it looks ``s`` times larger and is
    ``s`` times nearer. Samples without ``K`` (and :meth:`plan`, which is not given one) are
    magnified about the frame's centre; ``meta`` records the point as ``(y, x)``. ``p`` is the
    probability that the op fires at all (drawn only when below 1).
    """

    scale: Sequence[float] = (1.0, 2.0)
    about: str = "random"
    p: float = 1.0

    def __post_init__(self) -> None:
        self.scale = _interval(self.scale, "scale range", positive=True)
        if self.about not in ("random", "principal"):
            raise ConfigError(f"scale about must be 'random' or 'principal', got {self.about!r}")
        self.p = _probability(self.p, "scale p")

    @property
    def needs_K(self) -> bool:  # type: ignore[override]
        return self.about == "principal"

    def plan(self, size: tuple[int, int], generator: torch.Generator | None) -> _Step | None:
        return self.plan_at(size, generator, None)

    def plan_at(self, size: tuple[int, int], generator: torch.Generator | None,
                K: torch.Tensor | None) -> _Step | None:
        if self.p < 1.0 and torch.rand((), generator=generator, dtype=torch.float64).item() >= self.p:
            return None
        s = _uniform(generator, *self.scale)
        h, w = size
        if self.about == "principal":
            cx, cy = (float(K[0, 2]), float(K[1, 2])) if K is not None else ((w - 1) / 2.0, (h - 1) / 2.0)
            m = np.array([[s, 0.0, cx * (1.0 - s)], [0.0, s, cy * (1.0 - s)], [0.0, 0.0, 1.0]])
            return _Step(m, size, {"op": "scale", "s": s, "point": [cy, cx]}, z_scale=1.0 / s)
        y0 = _uniform(generator, 0.0, 1.0) * h * (s - 1.0)
        x0 = _uniform(generator, 0.0, 1.0) * w * (s - 1.0)
        m = np.array([[s, 0.0, s * 0.5 - 0.5 - x0], [0.0, s, s * 0.5 - 0.5 - y0], [0.0, 0.0, 1.0]])
        return _Step(m, size, {"op": "scale", "s": s, "offset": [y0, x0]}, z_scale=1.0 / s)


# ----------------------------------------------------------------------------- config builder

_OPS: dict[str, type[Augmentation]] = {
    "random_crop": RandomCrop,
    "center_crop": CenterCrop,
    "resize": Resize,
    "rcrop": RCrop,
    "hflip": RandomHorizontalFlip,
    "rotate": RandomRotation,
    "scale": RandomScale,
    "color_jitter": ColorJitter,
    "rgb_multiplier": RGBMultiplier,
    "grayscale": RandomGrayscale,
    "gamma": RandomGamma,
    "blur": GaussianBlur,
    "sharpen": Sharpen,
    "sharpen_far": SharpenFar,
    "noise": GaussianNoise,
    "random_conv": RandomConvolution,
}


def available_augmentations() -> list[str]:
    """Op names accepted by :func:`build_augmentation`."""
    return sorted(_OPS)


def _build_op(item: Any, position: int) -> Augmentation:
    if isinstance(item, str):
        name, params = item, {}
    elif isinstance(item, Mapping):
        params = dict(item)
        name = params.pop("op", None)
    else:
        raise ConfigError(f"augmentation #{position}: expected a dict with an 'op' key or an op name, got {item!r}")
    if name not in _OPS:
        raise ConfigError(
            f"augmentation #{position}: unknown op {name!r} (available: {', '.join(available_augmentations())})"
        )
    cls = _OPS[name]
    allowed = [f.name for f in fields(cls)]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(
            f"augmentation #{position} ({name}): unknown parameter(s) {', '.join(unknown)} "
            f"(allowed: {', '.join(allowed)})"
        )
    try:
        return cls(**params)
    except (ConfigError, TypeError) as err:  # TypeError: a required parameter is missing
        raise ConfigError(f"augmentation #{position} ({name}): {err}") from None


def build_augmentation(config: Sequence[Any] | Mapping[str, Any] | None) -> Compose:
    """Build a pipeline from a plain config: a list of ``{"op": name, **params}`` (or bare names).

    A mapping ``{"ops": [...]}`` and ``None`` (no augmentation) are accepted too. Example::

        build_augmentation([{"op": "rcrop"}, {"op": "hflip", "p": 0.6}])

    Raises :class:`ConfigError` naming the op for an unknown op or parameter or a bad value.
    """
    if config is None:
        return Compose([])
    if isinstance(config, Mapping):
        if set(config) != {"ops"}:
            raise ConfigError(f"augmentation config mapping must have exactly one key 'ops', got {sorted(config)}")
        config = config["ops"]
    if isinstance(config, (str, bytes)) or not isinstance(config, Sequence):
        raise ConfigError(f"augmentation config must be a list of ops, got {type(config).__name__}")
    return Compose([_build_op(item, i) for i, item in enumerate(config)])
