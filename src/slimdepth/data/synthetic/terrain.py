"""A road that changes grade ahead: the ground's height profile, its ray hits, objects set on it.

Every scene is flat up to ``start`` metres ahead of the camera. With a slope (the ``slopes``
scene option) the ground then rises or falls at a constant ``grade``: the road's height is
h(z) = grade * max(0, z - start), sidewalks and yards stay ``curb_height`` above it, and the
ground ends where the street's backdrop ends (beyond it: sky). The camera stands on the flat
part, so its height and pitch above the road under it stay KITTI's; what changes is the road
ahead (a hill or a dip), which a flat-road prior gets wrong.

Hits of the two planes use only IEEE basic operations, like the rest of the ray caster, so the
depth stays exact. Objects are lowered or lifted onto the ground (:func:`set_on_ground`): never
floating, sunk where the ground hides it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from slimdepth.data.synthetic.primitives import BOX, PrimTable

__all__ = ["BACKDROP_DEPTH", "PIECE_STEP", "Slope", "profile_hits", "set_on_ground"]

#: how far the street's backdrop reaches beyond ``far`` (the ground ends there)
BACKDROP_DEPTH = 30.0
#: objects longer than this along the road (rails, walls, barriers) follow the ground piece by piece
WHOLE_OBJECT = 30.0
#: the largest step between neighbouring pieces of a long object, as a share of their distance
#: from the camera (0.3 %: about a pixel at 192x640, whatever the distance)
PIECE_STEP = 0.003


@dataclass(frozen=True)
class Slope:
    """The ground's profile: flat to ``start`` (m ahead of the camera), then ``grade`` (rise per
    metre; negative falls). The default is a flat road everywhere."""

    start: float = math.inf
    grade: float = 0.0

    @property
    def flat(self) -> bool:
        return self.grade == 0.0 or not math.isfinite(self.start)

    def height(self, z: np.ndarray | float) -> np.ndarray:
        """Road height (m) at distance ``z`` along the road."""
        return self.grade * np.maximum(np.asarray(z, dtype=np.float64) - self.start, 0.0)

    def lift(self, z0: np.ndarray, z1: np.ndarray) -> np.ndarray:
        """The lower of the ground's heights at both ends of [z0, z1]: where something spanning it
        stands without floating (h is monotonic, so this is its minimum over the span)."""
        return np.minimum(self.height(z0), self.height(z1))

    def heights(self, far: float) -> tuple[float, float]:
        """Lowest and highest road height from the camera to the end of the ground."""
        end = float(self.height(far + BACKDROP_DEPTH)) if not self.flat else 0.0
        return min(0.0, end), max(0.0, end)


def profile_hits(slope: Slope, origin: tuple[float, float, float], dy: np.ndarray, dz: np.ndarray,
                 level: float, end: float) -> np.ndarray:
    """Ray parameter t of the first crossing of each ray (origin + t * d) with the surface
    ``level`` m above the road's profile (inf: none before the ground ends at z = ``end``).

    The flat plane y = level counts where the crossing is not beyond ``start``; otherwise the
    sloped one, y = level + grade * (z - start), counts from ``start`` on (1 cm of overlap so that
    float32 rounding leaves no hole at the kink). The origin must lie above the surface and before
    ``start``, as the camera and the LiDAR do.
    """
    ox, oy, oz = (float(v) for v in origin)
    f32 = np.float32
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        t1 = f32(level - oy) * (f32(1.0) / dy)
        ok1 = (t1 > 0) & (f32(oz) + t1 * dz <= f32(slope.start))
        t2 = f32(oy - level - slope.grade * (oz - slope.start)) / (f32(slope.grade) * dz - dy)
        z2 = f32(oz) + t2 * dz
        ok2 = (t2 > 0) & (z2 >= f32(slope.start - 0.01)) & (z2 <= f32(end))
    return np.where(ok1, t1, np.where(ok2, t2, f32(np.inf))).astype(np.float32)


def set_on_ground(prims: PrimTable, slope: Slope) -> PrimTable:
    """``prims`` standing on the profile of ``slope`` instead of the flat road.

    An object (the primitives sharing an object id) up to :data:`WHOLE_OBJECT` m long moves as
    one, by the lower ground height of its two ends. A longer one (a guard rail, a wall, the
    median barrier) follows the ground piece by piece: each unrotated box of it reaching beyond
    the start is cut there, and its part beyond into pieces that grow with distance, short enough
    that neighbours differ in height by at most :data:`PIECE_STEP` of their distance; every piece
    and every other primitive of it is moved by the ground under its own ends.
    """
    if slope.flat or not len(prims):
        return prims
    n = len(prims)
    z_lo, z_hi = prims.lo[:, 2], prims.hi[:, 2]
    objects, which = np.unique(prims.obj, return_inverse=True)  # ids may start below 0
    obj_lo, obj_hi = np.full(len(objects), np.inf), np.full(len(objects), -np.inf)
    np.minimum.at(obj_lo, which, z_lo)
    np.maximum.at(obj_hi, which, z_hi)
    long = (obj_hi - obj_lo)[which] > WHOLE_OBJECT
    # pieces grow with distance (z_j = s0 * r**j), so that each step is PIECE_STEP of its distance
    ratio = 1.0 + PIECE_STEP / abs(slope.grade)
    box_lo, box_hi = prims.center[:, 2] - prims.half[:, 2], prims.center[:, 2] + prims.half[:, 2]
    from_start = np.maximum(box_lo, slope.start)
    cut = long & (prims.kind == BOX) & (prims.yaw[:, 1] == 0.0) & (box_hi > from_start * ratio)
    # a cut box keeps its flat part whole (the head) and is cut from the start on (the tail)
    head = cut & (box_lo < slope.start)
    with np.errstate(divide="ignore", invalid="ignore"):
        tail = np.where(cut, np.ceil(np.log(box_hi / from_start) / np.log(ratio)), 1).astype(np.int64)
    counts = tail + head
    rows = np.repeat(np.arange(n), counts)
    k = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)  # index within its box
    j = k - head[rows]  # index among the tail pieces (-1: the head)
    grow = (box_hi / from_start)[rows] ** (1.0 / tail[rows])  # the tail's ratio, tiling it exactly
    new_lo = np.where(j < 0, box_lo[rows], from_start[rows] * grow ** j)
    new_hi = np.where(j < 0, from_start[rows], np.where(j == tail[rows] - 1, box_hi[rows], from_start[rows] * grow ** (j + 1)))
    center, half = prims.center[rows].copy(), prims.half[rows].copy()
    lo, hi = prims.lo[rows].copy(), prims.hi[rows].copy()
    pieces = cut[rows]
    center[pieces, 2] = 0.5 * (new_lo + new_hi)[pieces]
    half[pieces, 2] = 0.5 * (new_hi - new_lo)[pieces]
    lo[pieces, 2], hi[pieces, 2] = new_lo[pieces], new_hi[pieces]
    whole = ~long[rows]
    dy = np.where(whole, slope.lift(obj_lo[which[rows]], obj_hi[which[rows]]), slope.lift(lo[:, 2], hi[:, 2]))
    center[:, 1] += dy
    lo[:, 1] += dy
    hi[:, 1] += dy
    return PrimTable(kind=prims.kind[rows], center=center, half=half, yaw=prims.yaw[rows], material=prims.material[rows],
                     label=prims.label[rows], color=prims.color[rows], color2=prims.color2[rows],
                     params=prims.params[rows], lo=lo, hi=hi, obj=prims.obj[rows])
