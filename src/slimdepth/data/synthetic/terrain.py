"""The road's shape ahead: hills and dips (:class:`Slope`), bends (:class:`Bend`), their ray hits
and the objects placed on them.

Every scene's road is flat and straight near the camera. With a slope (the ``slopes`` scene
option) the ground rises or falls from ``start`` on at a constant ``grade``: the road's height is
h(z) = grade * max(0, z - start), sidewalks and yards stay ``curb_height`` above it, and the
ground ends where the street's backdrop ends (beyond it: sky). With a bend (``bends``) the road
curves sideways from its own ``start``: everything that lay at lateral position x now lies at
x + b(z), b a parabola (constant curvature) up to the bend's ``length`` and a straight line
beyond. The camera stands on the flat, straight part, so its height and pose over the road
under it stay KITTI's; what changes is the road ahead, which a flat-road prior gets wrong.

Hits use only IEEE basic operations (and one square root, for a curb face on a bend), like the
rest of the ray caster, so the depth stays exact. Objects are moved onto the road's shape
(:func:`place_on_road`): bent along it, and lowered or lifted onto the ground, never floating.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from slimdepth.data.synthetic.primitives import BOX, CYLINDER, PrimTable, extents

__all__ = ["BACKDROP_DEPTH", "BEND_PIECE", "PIECE_STEP", "Bend", "Slope", "place_on_road", "profile_hits", "road_hits"]

#: how far the street's backdrop reaches beyond ``far`` (the ground ends there)
BACKDROP_DEPTH = 30.0
#: objects longer than this along the road (rails, walls, barriers) follow the ground piece by piece
WHOLE_OBJECT = 30.0
#: the largest step between neighbouring pieces of a long object, as a share of their distance
#: from the camera (0.3 %: about a pixel at 192x640, whatever the distance)
PIECE_STEP = 0.003
#: on a bend, a long object's pieces are this share of their distance long (the sagitta of a
#: piece on the tightest bend, 80 m radius, stays below 0.3 % of its distance)
BEND_PIECE = 0.1
#: overlap of the pieces of a surface where they meet (a kink of the profile, the ends of a bend), m
JOIN = 0.01
#: objects wider than this (the street's backdrop) shift along a bend but do not turn with it
WIDEST_TURNING = 100.0
F32 = np.float32


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


@dataclass(frozen=True)
class Bend:
    """The road's plan: straight to ``start`` (m ahead), then curving with ``curvature`` (1/radius;
    positive bends right, towards +x) for ``length`` m along z, then straight again at the angle
    reached. The default is a straight road everywhere."""

    start: float = math.inf
    curvature: float = 0.0
    length: float = 0.0

    @property
    def straight(self) -> bool:
        return self.curvature == 0.0 or not math.isfinite(self.start)

    def offset(self, z: np.ndarray) -> np.ndarray:
        """Sideways shift b(z) of the road at ``z`` (float64 for placing, float32 in, float32 out)."""
        k = self.curvature
        if isinstance(z, np.ndarray) and z.dtype == np.float32:
            u = np.minimum(np.maximum(z - F32(self.start), F32(0.0)), F32(self.length))
            beyond = np.maximum(z - F32(self.start + self.length), F32(0.0))
            return F32(0.5 * k) * u * u + F32(k * self.length) * beyond
        z = np.asarray(z, dtype=np.float64)
        u = np.clip(z - self.start, 0.0, self.length)
        return 0.5 * k * u * u + k * self.length * np.maximum(z - self.start - self.length, 0.0)

    def direction(self, z: np.ndarray) -> np.ndarray:
        """db/dz: the tangent of the road's angle to the z axis at ``z``."""
        return self.curvature * np.clip(np.asarray(z, dtype=np.float64) - self.start, 0.0, self.length)

    def lateral(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Position across the road (what x is on a straight road)."""
        return x - self.offset(z) if not self.straight else x

    def face_hits(self, edge: float, origin: tuple[float, float, float], dx: np.ndarray,
                  dz: np.ndarray) -> list[np.ndarray]:
        """Ray parameters of every crossing of the vertical surface x = edge + b(z), one array per
        piece of b (inf where a ray does not cross that piece; a bend's parabola can be crossed twice).
        Neighbouring pieces overlap by :data:`JOIN` m, where they meet with the same slope, so that
        float32 rounding leaves no hole at a join."""
        ox, _, oz = (float(v) for v in origin)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            straight = F32(edge - ox) / dx  # before the bend
            hits = [np.where(F32(oz) + straight * dz <= F32(self.start + JOIN), straight, F32(np.inf))]
            if self.straight:
                return hits
            k, u0, end = self.curvature, oz - self.start, self.start + self.length
            a = F32(0.5 * k) * dz * dz
            b = F32(k * u0) * dz - dx
            c = F32(0.5 * k * u0 * u0 + edge - ox)
            root = np.sqrt(np.maximum(b * b - F32(4.0) * a * c, F32(0.0)))
            real = b * b - F32(4.0) * a * c >= 0
            q = F32(-0.5) * (b + np.where(b >= 0, root, -root))  # the stable pair: q / a and c / q
            for t in (q / a, c / q):
                u = F32(u0) + t * dz
                hits.append(np.where(real & (u >= F32(-JOIN)) & (u <= F32(self.length + JOIN)), t, F32(np.inf)))
            slope = k * self.length
            after = F32(edge + 0.5 * k * self.length * self.length + slope * (oz - end) - ox) / (dx - F32(slope) * dz)
            hits.append(np.where(F32(oz) + after * dz >= F32(end - JOIN), after, F32(np.inf)))
        return hits


def profile_hits(slope: Slope, origin: tuple[float, float, float], dy: np.ndarray, dz: np.ndarray,
                 level: float, end: float) -> np.ndarray:
    """Ray parameter t of the first crossing of each ray (origin + t * d) with the surface
    ``level`` m above the road's profile (inf: none before the ground ends at z = ``end``).

    The flat plane y = level counts where the crossing is not beyond ``start``; otherwise the
    sloped one, y = level + grade * (z - start), counts from ``start`` on (:data:`JOIN` of overlap
    so that float32 rounding leaves no hole at the kink; a ray grazing a crest may then meet the
    plane's continuation up to grade * JOIN, below a millimetre, above the road). Neither counts
    beyond ``end``, where the ground ends, on a bend as on a slope. The origin must lie above the
    surface and before ``start``, as the camera and the LiDAR do.
    """
    ox, oy, oz = (float(v) for v in origin)
    f32 = np.float32
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        t1 = f32(level - oy) * (f32(1.0) / dy)
        z1 = f32(oz) + t1 * dz
        ok1 = (t1 > 0) & (z1 <= f32(slope.start)) & (z1 <= f32(end))
        t2 = f32(oy - level - slope.grade * (oz - slope.start)) / (f32(slope.grade) * dz - dy)
        z2 = f32(oz) + t2 * dz
        ok2 = (t2 > 0) & (z2 >= f32(slope.start - JOIN)) & (z2 <= f32(end))
    return np.where(ok1, t1, np.where(ok2, t2, f32(np.inf))).astype(np.float32)


def road_hits(scene, origin: tuple[float, float, float], dx: np.ndarray, dy: np.ndarray, dz: np.ndarray):
    """The ground of a sloped or bent road along each ray: ``(t_road, t_walk, t_curb, on_road,
    on_walk, on_curb, across_walk)`` (``across_walk``: the sidewalk-level hit's position across the
    road, for telling yards from sidewalks).

    A ray meets the road where it crosses the road's level between the curbs; the sidewalk (or
    yard) where it crosses the sidewalks' level outside them; otherwise, if it crossed the
    sidewalks' level inside the road, the curb face through which it leaves the road below that
    level, the first crossing of either face between the road and the sidewalk height.
    """
    slope, bend = scene.slope, scene.bend
    end = scene.far + BACKDROP_DEPTH
    left, right = F32(scene.road_left), F32(scene.road_right)
    ox, oy, oz = (float(v) for v in origin)
    t_walk = profile_hits(slope, origin, dy, dz, scene.curb_height, end)
    t_road = profile_hits(slope, origin, dy, dz, 0.0, end)
    with np.errstate(invalid="ignore", over="ignore"):
        across_walk = bend.lateral(F32(ox) + t_walk * dx, F32(oz) + t_walk * dz)
        across_road = bend.lateral(F32(ox) + t_road * dx, F32(oz) + t_road * dz)
        walk_level = np.isfinite(t_walk)
        on_walk = walk_level & ((across_walk < left) | (across_walk > right))
        on_road = np.isfinite(t_road) & ~on_walk & (across_road >= left) & (across_road <= right)
        # only the rays inside the road below the sidewalks' level can meet a curb face: those
        # that meet neither road nor sidewalk, and on a bend those that may leave the road
        # through a face and come back before meeting the road
        inside = walk_level & ~on_walk & ~on_road
        if not bend.straight:
            inside |= _may_leave(scene, origin, dx, dz, t_walk, t_road, on_road)
        inside = np.flatnonzero(inside)
        rx, ry, rz = (a.ravel().take(inside) for a in (dx, dy, dz))
        hit = np.full(inside.size, np.inf, dtype=np.float32)
        for edge in (scene.road_left, scene.road_right):
            for t in bend.face_hits(edge, origin, rx, rz):
                z = F32(oz) + t * rz
                rise = F32(oy) + t * ry - F32(slope.grade) * np.maximum(z - F32(slope.start), F32(0.0)) \
                    if not slope.flat else F32(oy) + t * ry
                face = (t > 0) & (z <= F32(end)) & (rise >= 0) & (rise <= F32(scene.curb_height))
                hit = np.where(face & (t < hit), t, hit)
        t_curb = np.full(dx.shape, np.inf, dtype=np.float32)
        t_curb.ravel()[inside] = hit
    on_road &= ~(t_curb < t_road)  # a face met first hides the road behind it
    on_curb = np.isfinite(t_curb) & ~on_road & ~on_walk
    return t_road, t_walk, t_curb, on_road, on_walk, on_curb, across_walk


def _may_leave(scene, origin, dx: np.ndarray, dz: np.ndarray, t_walk: np.ndarray, t_road: np.ndarray,
               on_road: np.ndarray) -> np.ndarray:
    """Rays that meet the road beyond a bend's start although, between the sidewalks' level and
    the road's, they may pass outside the curbs (under the sidewalk, so through a face). Along a
    ray the position across the road is linear before and after the bend and a parabola on it, so
    its extremes between the two levels lie at the parabola's vertex or at the bend's two ends;
    a ray is a candidate if any of them lies outside the curbs (the face test then decides)."""
    bend = scene.bend
    ox, _, oz = (float(v) for v in origin)
    with np.errstate(invalid="ignore", over="ignore"):
        idx = np.flatnonzero(on_road & (F32(oz) + t_road * dz > F32(bend.start)))  # met beyond the start
    rx, rz, lo, hi = (a.ravel().take(idx) for a in (dx, dz, t_walk, t_road))
    k, u0 = bend.curvature, oz - bend.start
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        vertex = (rx / (F32(k) * rz) - F32(u0)) / rz
        ends = [(F32(bend.start) - F32(oz)) / rz, (F32(bend.start + bend.length) - F32(oz)) / rz]
        outside = np.zeros(idx.size, bool)
        for t in (vertex, *ends):
            t = np.minimum(np.maximum(t, lo), hi)
            across = bend.lateral(F32(ox) + t * rx, F32(oz) + t * rz)
            outside |= (across < F32(scene.road_left)) | (across > F32(scene.road_right))
    leave = np.zeros(dx.shape, bool)
    leave.ravel()[idx[outside]] = True
    return leave


def _pieces(lo: float, hi: float, start: float, ratio: float) -> list[float]:
    """Boundaries cutting [lo, hi] at ``start`` (when inside) and beyond it at start * ratio**j,
    by repeated multiplication (no libm, so the same on every machine); the last piece ends at
    ``hi``, and none is shorter than half the piece before it."""
    cuts, z = [lo], max(lo, start)
    if z > lo:
        cuts.append(z)
    while z * ratio < hi:
        z = z * ratio
        cuts.append(z)
    if len(cuts) > 2 and cuts[-1] > start and hi - cuts[-1] < 0.5 * (cuts[-1] - cuts[-2]):
        cuts[-1] = 0.5 * (cuts[-2] + hi)  # no sliver at the end: the last two pieces share what is left
    return cuts + [hi]


def _cut_long(prims: PrimTable, long: np.ndarray, start: float, ratio: float):
    """Rows of ``prims`` with every unrotated box of a long object that reaches beyond ``start``
    cut there (its head, kept whole) and beyond into pieces growing by ``ratio`` with distance;
    returns (rows, center, half, lo, hi) of the new table."""
    box_lo, box_hi = prims.center[:, 2] - prims.half[:, 2], prims.center[:, 2] + prims.half[:, 2]
    cut = long & (prims.kind == BOX) & (prims.yaw[:, 1] == 0.0) & (box_hi > np.maximum(box_lo, start) * ratio)
    rows, new_lo, new_hi = [], [], []
    for i in range(len(prims)):
        bounds = _pieces(float(box_lo[i]), float(box_hi[i]), start, ratio) if cut[i] else [box_lo[i], box_hi[i]]
        rows += [i] * (len(bounds) - 1)
        new_lo += bounds[:-1]
        new_hi += bounds[1:]
    rows = np.asarray(rows, dtype=np.int64)
    new_lo, new_hi = np.asarray(new_lo, dtype=np.float64), np.asarray(new_hi, dtype=np.float64)
    center, half = prims.center[rows].copy(), prims.half[rows].copy()
    lo, hi = prims.lo[rows].copy(), prims.hi[rows].copy()
    pieces = cut[rows]
    center[pieces, 2] = 0.5 * (new_lo + new_hi)[pieces]
    half[pieces, 2] = 0.5 * (new_hi - new_lo)[pieces]
    lo[pieces, 2], hi[pieces, 2] = new_lo[pieces], new_hi[pieces]
    return rows, center, half, lo, hi


def place_on_road(prims: PrimTable, slope: Slope = Slope(), bend: Bend = Bend()) -> PrimTable:
    """``prims`` placed on a road that bends and changes grade instead of the straight flat one.

    An object (the primitives sharing an object id) up to :data:`WHOLE_OBJECT` m long moves as
    one. A longer one (a guard rail, a wall, the median barrier) follows the road piece by
    piece: each unrotated box of it reaching beyond the start of the slope or bend is cut there,
    and its part beyond into pieces that grow with distance (neighbours differ in height by at
    most :data:`PIECE_STEP` of their distance, and are :data:`BEND_PIECE` of it long on a bend);
    every piece and every other primitive of it moves on its own.

    On a bend, each object (or piece) shifts sideways by b(z) at its centre and turns with the
    road there, about its centre; objects with a rounded part (a cabin, a tank barrel, a crown,
    a head: axis-aligned primitives) and objects wider than :data:`WIDEST_TURNING` m (the
    street's backdrop) only shift. On a slope, each moves up or down by the lower ground height
    of its two ends (taken before it turned), so nothing floats and what sinks is hidden by the
    ground; the table records that lift, which the shader takes off the heights of windows,
    wheels and floors. Only IEEE basic operations and square roots are used.
    """
    if (slope.flat and bend.straight) or not len(prims):
        return prims
    objects, which = np.unique(prims.obj, return_inverse=True)  # ids may start below 0
    n_obj = len(objects)

    def per_object(values: np.ndarray, index: np.ndarray, how) -> np.ndarray:
        out = np.full(n_obj, np.inf if how is np.minimum else -np.inf)
        how.at(out, index, values)
        return out

    obj_lo, obj_hi = per_object(prims.lo[:, 2], which, np.minimum), per_object(prims.hi[:, 2], which, np.maximum)
    obj_x0 = per_object(prims.lo[:, 0], which, np.minimum)
    obj_x1 = per_object(prims.hi[:, 0], which, np.maximum)
    wide = (obj_x1 - obj_x0) > WIDEST_TURNING  # the backdrop: moves as one and does not turn
    long = ((obj_hi - obj_lo) > WHOLE_OBJECT)[which] & ~wide[which]
    step = min(PIECE_STEP / abs(slope.grade) if not slope.flat else math.inf, BEND_PIECE if not bend.straight else math.inf)
    rows, center, half, lo, hi = _cut_long(prims, long, min(slope.start, bend.start), 1.0 + step)
    kind, yaw, obj = prims.kind[rows], prims.yaw[rows].copy(), which[rows]
    whole = ~long[rows]
    # the z-span each moving unit (a whole object, or a piece or primitive of a long one) stands on
    unit_lo = np.where(whole, obj_lo[obj], lo[:, 2])
    unit_hi = np.where(whole, obj_hi[obj], hi[:, 2])
    if not bend.straight:
        pivot_x = np.where(whole, 0.5 * (obj_x0 + obj_x1)[obj], center[:, 0])
        pivot_z = 0.5 * (unit_lo + unit_hi)
        turnable = (prims.kind == BOX) | (prims.kind == CYLINDER)
        turns = per_object(np.where(turnable, 1.0, 0.0), which, np.minimum) > 0  # every part can turn
        turns &= ~wide
        d = bend.direction(pivot_z) * turns[obj]
        shift = bend.offset(pivot_z)
        moved = (d != 0.0) | (shift != 0.0)  # the rest stays exactly where it was
        cos = 1.0 / np.sqrt(1.0 + d * d)
        sin = d * cos
        rx, rz = center[:, 0] - pivot_x, center[:, 2] - pivot_z
        center[:, 0] = np.where(moved, pivot_x + shift + cos * rx + sin * rz, center[:, 0])
        center[:, 2] = np.where(moved, pivot_z - sin * rx + cos * rz, center[:, 2])
        turned = moved & (kind == BOX)  # only boxes carry a yaw
        yaw[turned] = np.stack([yaw[:, 0] * cos - yaw[:, 1] * sin, yaw[:, 1] * cos + yaw[:, 0] * sin], 1)[turned]
        ext = extents(kind, half, yaw)
        lo[moved, 0], hi[moved, 0] = (center[:, 0] - ext[:, 0])[moved], (center[:, 0] + ext[:, 0])[moved]
        lo[moved, 2], hi[moved, 2] = (center[:, 2] - ext[:, 2])[moved], (center[:, 2] + ext[:, 2])[moved]
    lift = np.zeros(len(rows))
    if not slope.flat:
        lift = slope.lift(unit_lo, unit_hi)
        center[:, 1] += lift
        lo[:, 1] += lift
        hi[:, 1] += lift
    return PrimTable(kind=kind, center=center, half=half, yaw=yaw, material=prims.material[rows],
                     label=prims.label[rows], color=prims.color[rows], color2=prims.color2[rows],
                     params=prims.params[rows], lo=lo, hi=hi, obj=prims.obj[rows], lift=lift.astype(np.float32))
