"""Ray casting of a :class:`~slimdepth.data.synthetic.scene.Scene`: nearest hit per ray.

Rays come in 2-D grids (a pinhole camera's pixels, or a spinning LiDAR's beams x azimuths).
Each primitive is tested only inside a conservative window of the grid computed from its
bounding box, which keeps the cost close to the number of pixels an object covers. Hit
distances use only IEEE basic operations; windows may use anything since they only cull.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slimdepth.data.synthetic.scene import (
    BOX, CYLINDER, ELLIPSOID, PID_CURB, TUBE, PID_ROAD, PID_SIDEWALK, PID_SKY, PID_YARD, Scene,
)
from slimdepth.data.synthetic.terrain import road_hits

NEAR = 0.05  # objects closer than this to the origin are treated as straddling it


@dataclass
class Hits:
    """Nearest hit per ray: distance along the ray (inf = none) and what was hit."""

    t: np.ndarray  # float32; for pinhole grids this is the camera z depth
    pid: np.ndarray  # int32: >= 0 primitive index, or one of the PID_* ground/sky ids


class RayGrid:
    """A grid of rays from one origin; subclasses know how to cull a bounding box to a window."""

    origin: tuple[float, float, float]
    dx: np.ndarray
    dy: np.ndarray
    dz: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.dx.shape  # type: ignore[return-value]

    @property
    def inverse(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """1/dx, 1/dy, 1/dz (inf where a component is 0), computed once per grid."""
        inv = self.__dict__.get("_inverse")
        if inv is None:
            with np.errstate(divide="ignore"):
                inv = tuple(np.float32(1.0) / d for d in (self.dx, self.dy, self.dz))
            self.__dict__["_inverse"] = inv
        return inv

    def windows(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """(N, 4) windows ``r0, r1, c0, c1`` (half-open) containing every ray that may hit each box."""
        raise NotImplementedError  # pragma: no cover

    def nearest(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """(N,) lower bounds of the ray parameter t at which any ray can meet each box."""
        raise NotImplementedError  # pragma: no cover


def _corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The 8 corners (N, 8, 3) of axis-aligned boxes."""
    sel = np.array([[i & 1, (i >> 1) & 1, (i >> 2) & 1] for i in range(8)], dtype=bool)
    return np.where(sel[None], hi[:, None, :], lo[:, None, :])


_EDGES = np.array([(a, a | (1 << k)) for k in range(3) for a in range(8) if not a & (1 << k)])


def _clip_near(pc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Corners in front of the near plane plus the edge crossings of that plane (NaN elsewhere).

    The projection of a box clipped to z >= NEAR is the hull of these points.
    """
    z = pc[..., 2]
    pa, pb = pc[:, _EDGES[:, 0]], pc[:, _EDGES[:, 1]]
    za, zb = z[:, _EDGES[:, 0]], z[:, _EDGES[:, 1]]
    cross = (za - NEAR) * (zb - NEAR) < 0
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (NEAR - za) / (zb - za)
    crossing = pa + s[..., None] * (pb - pa)
    pts = np.concatenate([np.where((z >= NEAR)[..., None], pc, np.nan), np.where(cross[..., None], crossing, np.nan)], 1)
    return pts, np.isfinite(pts[..., 2]).any(axis=1)


def _to_frame(points: np.ndarray, rotation: list[list[float]], origin: tuple[float, float, float]) -> np.ndarray:
    """World points to a frame with the given frame-to-world rotation and origin."""
    rel = points - np.asarray(origin)
    r = np.asarray(rotation)
    return rel @ r  # row vectors: (R^T p)^T = p^T R


class PinholeGrid(RayGrid):
    """One ray per pixel centre. Directions have camera-z component 1, so t is the z depth."""

    def __init__(self, K: np.ndarray, height: int, width: int, rotation: list[list[float]],
                 origin: tuple[float, float, float]) -> None:
        self.K = np.asarray(K, dtype=np.float64)
        self.rotation = rotation
        self.origin = origin
        fx, fy, cx, cy = self.K[0, 0], self.K[1, 1], self.K[0, 2], self.K[1, 2]
        a = ((np.arange(width, dtype=np.float64) - cx) / fx).astype(np.float32)[None, :]
        b = ((np.arange(height, dtype=np.float64) - cy) / fy).astype(np.float32)[:, None]
        r = rotation
        self.dx = (a * np.float32(r[0][0]) + b * np.float32(r[0][1])) + np.float32(r[0][2])
        self.dy = (a * np.float32(r[1][0]) + b * np.float32(r[1][1])) + np.float32(r[1][2])
        self.dz = (a * np.float32(r[2][0]) + b * np.float32(r[2][1])) + np.float32(r[2][2])

    def with_origin(self, origin: tuple[float, float, float]) -> PinholeGrid:
        """The same directions from another origin (the right camera of a stereo pair)."""
        other = object.__new__(PinholeGrid)
        other.__dict__.update(self.__dict__)
        other.origin = origin
        return other

    def nearest(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        # t is the camera z, which is linear in the point: its minimum over a box is at a corner
        return np.maximum(_to_frame(_corners(lo, hi), self.rotation, self.origin)[..., 2].min(1), 0.0)

    def windows(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        h, w = self.shape
        pts, visible = _clip_near(_to_frame(_corners(lo, hi), self.rotation, self.origin))
        pts = pts[visible]
        u = self.K[0, 0] * pts[..., 0] / pts[..., 2] + self.K[0, 2]
        v = self.K[1, 1] * pts[..., 1] / pts[..., 2] + self.K[1, 2]
        out = np.zeros((len(lo), 4))
        out[visible] = np.stack([np.floor(np.nanmin(v, 1)) - 1, np.ceil(np.nanmax(v, 1)) + 2,
                                 np.floor(np.nanmin(u, 1)) - 1, np.ceil(np.nanmax(u, 1)) + 2], 1)
        return np.clip(out, 0, [h, h, w, w]).astype(np.int64)


def sin_cos(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sin and cos by Taylor series (|x| <= 1.6): identical bits on every machine, unlike libm."""
    x = np.asarray(x, dtype=np.float64)
    x2 = x * x
    s = np.zeros_like(x)
    c = np.zeros_like(x)
    for k in range(12, -1, -1):  # Horner in x^2; terms to x^25 leave < 1e-17 error on |x| <= 1.6
        s = s * x2 + (-1.0) ** k / float(np.prod(np.arange(1, 2 * k + 2, dtype=np.float64)))
        c = c * x2 + (-1.0) ** k / float(np.prod(np.arange(1, 2 * k + 1, dtype=np.float64)))
    return s * x, c


class SphericalGrid(RayGrid):
    """A spinning multi-beam LiDAR: rows are beams (ascending elevation), columns azimuths.

    Directions are unit vectors, so t is the range. Azimuth 0 looks along the rig's z axis.
    """

    def __init__(self, elevations: np.ndarray, azimuths: np.ndarray, rotation: list[list[float]],
                 origin: tuple[float, float, float]) -> None:
        self.elevations = np.asarray(elevations, dtype=np.float64)
        self.azimuths = np.asarray(azimuths, dtype=np.float64)
        if np.any(np.diff(self.elevations) <= 0) or np.any(np.diff(self.azimuths) <= 0):
            raise ValueError("elevations and azimuths must be strictly increasing")
        self.rotation = rotation
        self.origin = origin
        se, ce = sin_cos(self.elevations)
        sa, ca = sin_cos(self.azimuths)
        lx, ly, lz = ce[:, None] * sa[None, :], se[:, None] + 0.0 * sa[None, :], ce[:, None] * ca[None, :]
        r = rotation
        self.dx = (lx * r[0][0] + ly * r[0][1] + lz * r[0][2]).astype(np.float32)
        self.dy = (lx * r[1][0] + ly * r[1][1] + lz * r[1][2]).astype(np.float32)
        self.dz = (lx * r[2][0] + ly * r[2][1] + lz * r[2][2]).astype(np.float32)

    def nearest(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        # t is the range: at least the distance from the origin to the box
        o = np.asarray(self.origin)
        gap = np.maximum(np.maximum(lo - o, 0.0), o - hi)
        return np.sqrt((gap * gap).sum(1))

    def windows(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        rows, cols = self.shape
        pc = _to_frame(_corners(lo, hi), self.rotation, self.origin)
        x, y, z = pc[..., 0], pc[..., 1], pc[..., 2]
        az = np.arctan2(x, z)
        az_lo, az_hi = az.min(1), az.max(1)
        # Azimuth is monotonic along any segment that does not cross the branch cut (the
        # negative z axis), so corners bound it unless the box straddles that cut.
        wrap = (z.min(1) <= 0) & (x.min(1) <= 0) & (x.max(1) >= 0)
        az_lo[wrap], az_hi[wrap] = -np.pi, np.pi
        # Elevation extremes can lie inside an edge, so bound them with horizontal distances.
        hc = np.hypot(x.mean(1), z.mean(1))
        radius = np.hypot(x - x.mean(1, keepdims=True), z - z.mean(1, keepdims=True)).max(1)
        dmin, dmax = np.maximum(hc - radius, 0.0), hc + radius
        ymax, ymin = y.max(1), y.min(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            el_hi = np.where(ymax >= 0, np.arctan2(ymax, dmin), np.arctan2(ymax, dmax))
            el_lo = np.where(ymin < 0, np.arctan2(ymin, dmin), np.arctan2(ymin, dmax))
        step = self.azimuths[1] - self.azimuths[0] if cols > 1 else 1.0
        c0 = np.floor((az_lo - self.azimuths[0]) / step) - 1
        c1 = np.ceil((az_hi - self.azimuths[0]) / step) + 2
        r0 = np.searchsorted(self.elevations, el_lo, side="left") - 1
        r1 = np.searchsorted(self.elevations, el_hi, side="right") + 1
        out = np.stack([r0, r1, c0, c1], 1)
        return np.clip(out, 0, [rows, rows, cols, cols]).astype(np.int64)


def _ground(scene: Scene, grid: RayGrid) -> Hits:
    """Road (y = 0, or the shape of a slope or bend) between the curbs, raised sidewalks and
    yards beyond, and the curb faces."""
    ox, oy, oz = grid.origin
    dx, dy = grid.dx, grid.dy
    if scene.slope.flat and scene.bend.straight:
        with np.errstate(divide="ignore", invalid="ignore"):
            down = dy < 0
            inv = np.float32(1.0) / dy
            t_walk = np.float32(scene.curb_height - oy) * inv
            t_road = np.float32(-oy) * inv
            x_walk = np.float32(ox) + t_walk * dx
            x_road = np.float32(ox) + t_road * dx
            left, right = np.float32(scene.road_left), np.float32(scene.road_right)
            on_walk = down & ((x_walk < left) | (x_walk > right))
            on_road = down & ~on_walk & (x_road >= left) & (x_road <= right)
            on_curb = down & ~on_walk & ~on_road
            edge = np.where(x_road < left, left, right)
            t_curb = (edge - np.float32(ox)) / dx
    else:
        t_road, t_walk, t_curb, on_road, on_walk, on_curb, x_walk = road_hits(scene, grid.origin, dx, dy, grid.dz)
    t = np.where(on_road, t_road, np.where(on_walk, t_walk, np.where(on_curb, t_curb, np.float32(np.inf))))
    yard = on_walk & ((x_walk < np.float32(scene.walk_left)) | (x_walk > np.float32(scene.walk_right)))
    pid = np.full(t.shape, PID_SKY, dtype=np.int32)
    pid[on_road] = PID_ROAD
    pid[on_walk] = PID_SIDEWALK
    pid[yard] = PID_YARD
    pid[on_curb] = PID_CURB
    t = t.astype(np.float32)
    t[~(t > 0)] = np.inf
    pid[~np.isfinite(t)] = PID_SKY
    return Hits(t=t, pid=pid)


def _hit_box(o, grid: RayGrid, sl, center, half, cs) -> np.ndarray:
    """Slab test in the box's frame; returns the entry distance (inf = miss or inside)."""
    px, py, pz = o[0] - center[0], o[1] - center[1], o[2] - center[2]
    c, s = cs
    with np.errstate(divide="ignore", invalid="ignore"):
        if s == 0.0:
            ix, iy, iz = (inv[sl] for inv in grid.inverse)
            lx, lz = px, pz
        else:
            dx, dz = grid.dx[sl], grid.dz[sl]
            ix = np.float32(1.0) / (np.float32(c) * dx - np.float32(s) * dz)
            iz = np.float32(1.0) / (np.float32(s) * dx + np.float32(c) * dz)
            iy = grid.inverse[1][sl]
            lx, lz = c * px - s * pz, s * px + c * pz
        near = far = None
        for p, inv, h in ((lx, ix, half[0]), (py, iy, half[1]), (lz, iz, half[2])):
            t1 = np.float32(-h - p) * inv
            t2 = np.float32(h - p) * inv
            lo, hi = np.minimum(t1, t2), np.maximum(t1, t2)
            near = lo if near is None else np.maximum(near, lo)
            far = hi if far is None else np.minimum(far, hi)
    near[~((near <= far) & (near > 0))] = np.inf
    return near


def _hit_cylinder(o, d, center, half, axis: int) -> np.ndarray:
    """A cylinder along world ``axis`` (1: upright, radius half[0]; 2: lying along the road, a
    tube): its side, and the end cap that faces the origin. ``d`` holds the rays' (dx, dy, dz)."""
    j = 2 if axis == 1 else 1  # the cross-section is the x-j plane
    di, dj, da = d[0], d[j], d[axis]
    pi, pj = o[0] - center[0], o[j] - center[j]
    r, lo, hi = half[0], center[axis] - half[axis], center[axis] + half[axis]
    a = di * di + dj * dj
    b = np.float32(pi) * di + np.float32(pj) * dj
    cc = np.float32(pi * pi + pj * pj - r * r)
    disc = b * b - a * cc
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (-b - np.sqrt(np.maximum(disc, 0))) / a
    along = np.float32(o[axis]) + t * da
    side = (disc >= 0) & (t > 0) & (along >= lo) & (along <= hi)
    t = np.where(side, t, np.float32(np.inf))
    if o[axis] < lo or o[axis] > hi:  # one end cap faces the origin (an upright one's top)
        end = lo if o[axis] < lo else hi
        with np.errstate(divide="ignore", invalid="ignore"):
            tc = np.float32(end - o[axis]) / da
        qi, qj = np.float32(pi) + tc * di, np.float32(pj) + tc * dj
        cap = (tc > 0) & (qi * qi + qj * qj <= r * r) & (tc < t)
        t = np.where(cap, tc, t)
    return t


def _hit_ellipsoid(o, dx, dy, dz, center, half) -> np.ndarray:
    qx, qy, qz = ((o[i] - center[i]) / half[i] for i in range(3))
    ex, ey, ez = dx * np.float32(1.0 / half[0]), dy * np.float32(1.0 / half[1]), dz * np.float32(1.0 / half[2])
    a = ex * ex + ey * ey + ez * ez
    b = np.float32(qx) * ex + np.float32(qy) * ey + np.float32(qz) * ez
    disc = b * b - a * np.float32(qx * qx + qy * qy + qz * qz - 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (-b - np.sqrt(np.maximum(disc, 0))) / a
    return np.where((disc >= 0) & (t > 0), t, np.float32(np.inf))


def cast(scene: Scene, grid: RayGrid, cull: bool = True, max_t: float = np.inf) -> Hits:
    """Nearest surface along every ray of ``grid``.

    With ``cull`` (the default) a primitive is skipped when every ray of its window already
    hits something nearer than the box can be: the same depths, a third fewer tests in dense
    traffic. Primitives are tested front to back either way. Primitives that lie wholly beyond
    ``max_t`` are not tested: hits beyond it may then be wrong (a sensor's range limit).
    """
    hits = _ground(scene, grid)
    prims = scene.prims
    if len(prims) == 0:
        return hits
    wins = grid.windows(prims.lo, prims.hi)
    near = grid.nearest(prims.lo, prims.hi) * (1.0 - 1e-5)  # a margin for float32 rounding of t
    o = grid.origin
    seen = np.nonzero((wins[:, 1] > wins[:, 0]) & (wins[:, 3] > wins[:, 2]) & (near < max_t))[0]
    # front to back, so that primitives hidden behind nearer ones are skipped without a test
    for k in seen[np.argsort(near[seen], kind="stable")]:
        r0, r1, c0, c1 = wins[k]
        sl = (slice(r0, r1), slice(c0, c1))
        if cull and near[k] >= hits.t[sl].max():
            continue  # everything in its window is already nearer than any point of it
        kind = prims.kind[k]
        if kind == BOX:
            t = _hit_box(o, grid, sl, prims.center[k], prims.half[k], prims.yaw[k])
        elif kind == CYLINDER or kind == TUBE:
            t = _hit_cylinder(o, (grid.dx[sl], grid.dy[sl], grid.dz[sl]), prims.center[k], prims.half[k],
                              1 if kind == CYLINDER else 2)
        elif kind == ELLIPSOID:
            t = _hit_ellipsoid(o, grid.dx[sl], grid.dy[sl], grid.dz[sl], prims.center[k], prims.half[k])
        else:  # pragma: no cover
            raise ValueError(f"unknown primitive kind {kind}")
        closer = t < hits.t[sl]
        np.copyto(hits.t[sl], t, where=closer)
        np.copyto(hits.pid[sl], np.int32(k), where=closer)
    return hits
