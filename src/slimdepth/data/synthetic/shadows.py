"""Shadows of the synthetic scenes: the sun's, cast by primitives (onto the ground, or onto
everything with ``object_shadows``), and the sky's, darkened under vehicles (contact shadows).

Both work on the visible points of a :class:`~slimdepth.data.synthetic.shading._Surface` and
test each caster only inside an image window of the region it can shade; the tests are compiled
loops (numba, see ``fmath``) using only IEEE basic operations.
"""

from __future__ import annotations

import numpy as np

from slimdepth.data.synthetic.fmath import F32, INF32, fmax, fmin, kernel
from slimdepth.data.synthetic.raycast import RayGrid
from slimdepth.data.synthetic.scene import BOX, CYLINDER, ELLIPSOID, FOLIAGE, VEHICLE


def _ground_windows(s, grid: RayGrid, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image windows of the boxes (lo, hi) and an (H, W) map of each ground pixel's visible-pixel
    index (-1 elsewhere): where shadows and contact shadows can fall. The map is built once per
    frame and shared by both."""
    if s.ground_pos is None:
        s.ground_pos = _index_map(s, grid, np.flatnonzero(s.pid < 0))
    return grid.windows(lo, hi), s.ground_pos


def _index_map(s, grid: RayGrid, points: np.ndarray) -> np.ndarray:
    """(H, W) map holding each of ``points`` (visible-pixel indices) at its pixel, -1 elsewhere."""
    h, w = grid.shape
    pos = np.full(h * w, -1, np.int64)
    pos[s.idx.take(points)] = points
    return pos.reshape(h, w)


_CORNERS = np.array([[i & 1, (i >> 1) & 1, (i >> 2) & 1] for i in range(8)], dtype=bool)


def blocks(pr, k: int, o: list[np.ndarray], L: np.ndarray) -> np.ndarray:
    """Whether the rays ``o + t L`` (t > 0; ``o`` relative to primitive ``k``'s centre) meet it."""
    return _blocks_all(pr.kind[k], pr.yaw[k], pr.half[k], np.asarray(L, dtype=np.float64), *(np.asarray(a, F32) for a in o))


@kernel
def _blocks_all(kind, yaw, half, L, o0, o1, o2):
    """:func:`_blocked` for every ray ``o + t L`` of the float32 arrays ``o0, o1, o2``."""
    out = np.empty(len(o0), np.bool_)
    for i in range(len(o0)):
        out[i] = _blocked(kind, yaw, half, L, o0[i], o1[i], o2[i])
    return out


@kernel
def _blocked(kind, yaw, half, L, o0, o1, o2):
    """Whether the ray ``o + t L`` (t > 0; ``o`` relative to a primitive's centre, float32) meets
    it: a box by its slabs, an ellipsoid or a cylinder (upright, or a tube along z) by its quadratic."""
    if kind == BOX:
        c, sn = yaw[0], yaw[1]
        lx, lz = F32(c) * o0 - F32(sn) * o2, F32(sn) * o0 + F32(c) * o2
        a0, b0 = _slab(lx, c * L[0] - sn * L[2], half[0])
        a1, b1 = _slab(o1, L[1], half[1])
        a2, b2 = _slab(lz, sn * L[0] + c * L[2], half[2])
        near, far = fmax(fmax(a0, a1), a2), fmin(fmin(b0, b1), b2)
        return near <= far and far > 0
    if kind == ELLIPSOID:
        qx, qy, qz = o0 * F32(1 / half[0]), o1 * F32(1 / half[1]), o2 * F32(1 / half[2])
        ex, ey, ez = L[0] / half[0], L[1] / half[1], L[2] / half[2]
        b = qx * F32(ex) + qy * F32(ey) + qz * F32(ez)
        cc = qx * qx + qy * qy + qz * qz - F32(1.0)
        disc = b * b - F32(ex * ex + ey * ey + ez * ez) * cc
        return disc >= 0 and (b < 0 or cc < 0)  # ahead of the point, or the point is inside
    # a cylinder along y (upright) or z (a tube): the line meets the infinite cylinder over
    # [t1, t2] and the slab of its length over [ta, tb]; it is blocked where both overlap at t > 0
    axis = 1 if kind == CYLINDER else 2
    j = 2 if axis == 1 else 1
    oj, oa = (o2, o1) if axis == 1 else (o1, o2)
    r = F32(half[0])
    cc = o0 * o0 + oj * oj - r * r
    a = F32(L[0] * L[0] + L[j] * L[j])
    if a == 0:  # the light runs along the axis: inside the circle or not
        t1, t2 = (-INF32, INF32) if cc <= 0 else (INF32, -INF32)
    else:
        b = o0 * F32(L[0]) + oj * F32(L[j])
        disc = b * b - a * cc
        root = np.sqrt(fmax(disc, F32(0.0)))
        t1 = (-b - root) / a if disc >= 0 else INF32
        t2 = (-b + root) / a if disc >= 0 else -INF32
    ta, tb = _slab(oa, L[axis], half[axis])
    near, far = fmax(t1, ta), fmin(t2, tb)
    return near <= far and far > 0


@kernel
def _slab(p, dcomp, hh):
    """The t interval in which ``p + t dcomp`` lies in [-hh, hh]; parallel: all t or none."""
    if dcomp == 0:
        return (-INF32, INF32) if abs(p) <= hh else (INF32, -INF32)
    iv = F32(1.0 / dcomp)
    t1, t2 = (F32(-hh) - p) * iv, (F32(hh) - p) * iv
    return fmin(t1, t2), fmax(t1, t2)


@kernel
def _cast_shadows(casters, wins, pos, p0, p1, p2, pid, lit, kind, centerT, yaw, half, L,
                  objects, u, v, w, bound_lo, bound_hi):
    """Shade (``lit`` = 0) the points of ``pos`` (an image map of visible-point indices, -1 =
    none) inside each caster's window that it blocks from the sun; shaded points leave the map.
    With ``objects``, only points inside the caster's outline seen from the sun (``u, v`` within
    its bounds), not beyond it towards the sun (``w``) and not on the caster itself."""
    for i in range(len(casters)):
        k = casters[i]
        for r in range(wins[i, 0], wins[i, 1]):
            for c in range(wins[i, 2], wins[i, 3]):
                q = pos[r, c]
                if q < 0:
                    continue
                if objects and not (u[q] >= bound_lo[i, 0] and u[q] <= bound_hi[i, 0] and v[q] >= bound_lo[i, 1]
                                    and v[q] <= bound_hi[i, 1] and w[q] <= bound_hi[i, 2] and pid[q] != k):
                    continue
                if _blocked(kind[k], yaw[k], half[k], L, p0[q] - centerT[0, k], p1[q] - centerT[1, k],
                            p2[q] - centerT[2, k]):
                    lit[q] = 0.0
                    pos[r, c] = -1


def _ground_span(scene, z0: np.ndarray, z1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest road height over each stretch [z0, z1] (zeros on a flat road)."""
    a, b = scene.slope.height(z0), scene.slope.height(z1)
    return np.minimum(a, b), np.maximum(a, b)


def sunlit(s, grid: RayGrid) -> np.ndarray:
    """1 where a visible point sees the sun, 0 where a primitive blocks it.

    With ``scene.object_shadows`` every primitive casts (boxes, cylinders, tubes, cabins,
    crowns) onto every visible point that faces the sun, so a lorry shades the car beside it and
    a crown the facade behind it; a point on the caster itself is left to the sun term's N.L.
    Without it, boxes and crowns cast onto the ground only (the first generator's shadows).

    Each caster is tested over the image window of the region it can shade (its bounding box
    swept along -L down to y = 0); with object shadows, there only on the points that its
    outline seen from the sun covers (the bounds of its corners on two axes across L) and that
    are not beyond it towards the sun. Points already shaded are not tested again. All of this
    only culls: the test itself is exact.
    """
    sc = s.scene
    lit = np.ones(len(s.idx), F32)
    if sc.sun[1] <= 0:
        return lit
    pr = sc.prims
    L = np.asarray(sc.sun, dtype=np.float64)
    if sc.object_shadows:
        casters = np.arange(len(pr))
        receivers = np.flatnonzero((s.n[0] * F32(L[0]) + s.n[1] * F32(L[1]) + s.n[2] * F32(L[2])) > 0)
    else:
        casters = np.flatnonzero((pr.kind == BOX) | ((pr.kind == ELLIPSOID) & (pr.material == FOLIAGE)))
        receivers = np.flatnonzero(s.pid < 0)
    if not casters.size or not receivers.size:
        return lit
    n = len(casters)
    lo, hi = pr.lo[casters], pr.hi[casters]
    low, high = np.zeros(n), np.zeros(n)  # the ground's heights where the caster's shadow can fall
    if not sc.slope.flat:  # swept down to the scene's lowest ground first, then to the lowest ground there
        reach = (hi[:, 1] - sc.slope.heights(sc.far)[0]) / L[1] * L[2]
        low, high = _ground_span(sc, np.minimum(lo[:, 2], lo[:, 2] - reach), np.maximum(hi[:, 2], hi[:, 2] - reach))
    shift = (hi[:, 1] - low)[:, None] / L[1] * L[None, [0, 2]]
    swept_lo = np.stack([np.minimum(lo[:, 0], lo[:, 0] - shift[:, 0]), low,
                         np.minimum(lo[:, 2], lo[:, 2] - shift[:, 1])], 1)
    swept_hi = np.stack([np.maximum(hi[:, 0], hi[:, 0] - shift[:, 0]),
                         hi[:, 1] if sc.object_shadows else sc.curb_height + high,
                         np.maximum(hi[:, 2], hi[:, 2] - shift[:, 1])], 1)
    # shaded points leave the map (-1), so they are not tested again
    if sc.object_shadows:
        pos, wins = _index_map(s, grid, receivers), grid.windows(swept_lo, swept_hi)
        # light space (the ground windows alone are tight enough to need no more culling)
        e1 = np.cross(L, (0.0, 0.0, 1.0))
        e1 /= np.sqrt(e1 @ e1)
        axes = np.stack([e1, np.cross(L, e1), L])
        corners = np.where(_CORNERS[None], hi[:, None, :], lo[:, None, :]) @ axes.T
        bound_lo, bound_hi = corners.min(1) - 1e-3, corners.max(1) + 1e-3
        u, v, w = (s.p[0] * F32(a[0]) + s.p[1] * F32(a[1]) + s.p[2] * F32(a[2]) for a in axes)
    else:
        wins, pos = _ground_windows(s, grid, swept_lo, swept_hi)
        pos = pos.copy()  # the shared map stays whole for the contact shadows
    if not sc.object_shadows:
        u = v = w = np.empty(0, F32)
        bound_lo = bound_hi = np.empty((0, 3))
    _cast_shadows(casters, wins, pos, *s.p, s.pid, lit, pr.kind, pr.centerT, pr.yaw, pr.half, L,
                  sc.object_shadows, u, v, w, bound_lo, bound_hi)
    return lit


def contact_bodies(pr) -> np.ndarray:
    """The vehicle boxes that darken the ground under them: bodies, more than 0.1 m above the
    ground their object stands on (wheels and underrun bars below do not count)."""
    return np.flatnonzero((pr.kind == BOX) & (pr.material == VEHICLE) & (pr.lo[:, 1] - pr.lift > 0.1))


def contact_light(s, grid: RayGrid) -> np.ndarray:
    """Sky-light factor of every visible pixel: ~0.3 on the ground under a vehicle, 0.65 within
    0.3 m of its outline, 1 elsewhere (ambient occlusion: the sky cannot reach under a car)."""
    sc = s.scene
    ao = np.ones(len(s.idx), F32)
    pr = sc.prims
    cars = contact_bodies(pr)
    if not sc.contact_shadows or not cars.size or not (s.pid < 0).any():
        return ao
    low, high = _ground_span(sc, pr.lo[cars, 2] - 0.3, pr.hi[cars, 2] + 0.3)
    lo = np.stack([pr.lo[cars, 0] - 0.3, low, pr.lo[cars, 2] - 0.3], 1)
    hi = np.stack([pr.hi[cars, 0] + 0.3, sc.curb_height + high, pr.hi[cars, 2] + 0.3], 1)
    wins, pos = _ground_windows(s, grid, lo, hi)
    _darken_under(cars, wins, pos, s.p[0], s.p[2], ao, pr.centerT, pr.yaw, pr.half)
    return ao


@kernel
def _darken_under(cars, wins, pos, p0, p2, ao, centerT, yaw, half):
    """Sky-light factor ``ao`` of the ground points of ``pos`` in each car's window: 0.3 under
    its body, 0.65 within 0.3 m of its outline (the body's distance in its own frame)."""
    for i in range(len(cars)):
        k = cars[i]
        c, sn = F32(yaw[k, 0]), F32(yaw[k, 1])
        for r in range(wins[i, 0], wins[i, 1]):
            for col in range(wins[i, 2], wins[i, 3]):
                q = pos[r, col]
                if q < 0:
                    continue
                rx, rz = p0[q] - centerT[0, k], p2[q] - centerT[2, k]
                out = fmax(abs(c * rx - sn * rz) - F32(half[k, 0]), abs(sn * rx + c * rz) - F32(half[k, 2]))
                ao[q] = fmin(ao[q], F32(0.3) if out < 0 else (F32(0.65) if out < F32(0.3) else F32(1.0)))
