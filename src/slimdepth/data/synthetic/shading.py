"""Colour of every visible surface: procedural materials, sun + sky light, shadows, sky, haze.

Works on the flat list of visible pixels so that each material's code runs once over exactly
the pixels that show it. Colours are channel-first (3, n) arrays. The costly parts (box frames,
the facade, vehicle and concrete materials, texture lookups, shadow rays, contact shadows and
the lighting) are compiled loops (numba, see ``fmath``), one pass per job; the rarer materials
stay NumPy, with primitive attributes gathered by ``np.take(..., axis=1)``. Only IEEE basic
operations are used on per-pixel values, in the same order in both.
"""

from __future__ import annotations

import numpy as np

from slimdepth.data.synthetic import textures
from slimdepth.data.synthetic.fmath import INF32, fmax, fmin, fmod, kernel
from slimdepth.data.synthetic.raycast import Hits, PinholeGrid, RayGrid
from slimdepth.data.synthetic.scene import (
    BOX, CONCRETE, CYLINDER, ELLIPSOID, FACADE, FOLIAGE, HEAD, PERSON, PID_CURB, PID_ROAD, PID_SIDEWALK, PID_SKY,
    PID_YARD, POLE_METAL, RAIL, SIGN_PANEL, TRUNK, TUBE, VEHICLE, Scene,
)

F32 = np.float32
T_NOISE, T_COARSE, T_BRICKS, T_PLASTER = (textures.TEX[n] for n in ("noise", "coarse", "bricks", "plaster"))


def _clamp01(x: np.ndarray) -> np.ndarray:
    return np.minimum(np.maximum(x, F32(0.0)), F32(1.0))


def _put(col: np.ndarray, where: np.ndarray, value) -> None:
    """col[:, where] = value for a (3, n) colour array, channel by channel (the fast path).

    ``value``: a scalar or a 1-D array (grey), a 3-tuple (a constant colour) or a (3, k) array.
    """
    if isinstance(value, tuple):
        channels = value
    elif np.ndim(value) <= 1:
        channels = (value, value, value)
    else:
        channels = value
    for c in range(3):
        col[c][where] = channels[c]


def _take(table: np.ndarray, pid: np.ndarray) -> np.ndarray:
    return np.take(table, pid, axis=-1)


def _height(s: "_Surface", sel: np.ndarray, pid: np.ndarray) -> np.ndarray:
    """Height of the points ``sel`` (on primitives ``pid``) above the ground their object stands
    on: world y on a flat road, less the object's lift on a slope (windows, wheels and floors are
    drawn at heights above the ground)."""
    y = s.p[1].take(sel)
    return y if s.scene.slope.flat else y - _take(s.scene.prims.lift, pid)


def _mod(a: np.ndarray, period) -> np.ndarray:
    """a modulo a positive period (about 20x faster than the NumPy ufunc on float32)."""
    return a - np.floor(a / period) * period


class _Surface:
    """Hit points, normals, texture footprints and albedo of the visible pixels (flattened)."""

    def __init__(self, scene: Scene, grid: PinholeGrid, hits: Hits) -> None:
        self.scene = scene
        self.idx = np.flatnonzero(hits.pid.ravel() != PID_SKY)
        self.pid = hits.pid.ravel().take(self.idx)
        n = len(self.idx)
        self.d = [np.empty(n, F32) for _ in range(3)]
        self.p = [np.empty(n, F32) for _ in range(3)]
        self.dlen, self.dist = np.empty(n, F32), np.empty(n, F32)
        _gather_points(self.idx, hits.t.ravel(), grid.dx.ravel(), grid.dy.ravel(), grid.dz.ravel(),
                       np.asarray(grid.origin, F32), *self.d, *self.p, self.dlen, self.dist)
        self.n = [np.zeros(n, F32), np.ones(n, F32), np.zeros(n, F32)]
        self.albedo = np.empty((3, n), F32)
        self.pixel_size = F32(1.0 / grid.K[0, 0])  # metres per pixel at distance 1
        self.fp: np.ndarray | None = None
        self.ground_pos: np.ndarray | None = None  # see _ground_windows

    def finish_normals(self) -> None:
        """Pixel footprint in metres, widened at grazing angles (needs the normals)."""
        self.fp = np.empty(len(self.idx), F32)
        _footprints(*self.n, *self.d, self.dlen, self.dist, self.pixel_size, self.fp)

    def tex(self, name: str, sel: np.ndarray, u: np.ndarray, v: np.ndarray, metres: float) -> np.ndarray:
        """Sample texture ``name`` (one tile = ``metres``) at surface coords (u, v) in metres."""
        out = np.empty(len(sel), F32)
        _sample(textures.TEX[name], sel, u, v, self.fp, float(metres), *textures.atlas(), out)
        return out


@kernel
def _sample(tex, sel, u, v, fp, metres, data, starts, out):
    for i in range(len(sel)):
        out[i] = _tex(data, starts, tex, u[i], v[i], fp[sel[i]], metres)


@kernel
def _gather_points(idx, t, dx, dy, dz, origin, d0, d1, d2, p0, p1, p2, dlen, dist):
    """Ray directions, hit points, direction lengths and distances of the visible pixels ``idx``."""
    for i in range(len(idx)):
        j = idx[i]
        ti, a, b, c = t[j], dx[j], dy[j], dz[j]
        d0[i], d1[i], d2[i] = a, b, c
        dlen[i] = np.sqrt(a * a + b * b + c * c)
        dist[i] = ti * dlen[i]
        p0[i], p1[i], p2[i] = origin[0] + ti * a, origin[1] + ti * b, origin[2] + ti * c


@kernel
def _footprints(n0, n1, n2, d0, d1, d2, dlen, dist, pixel_size, fp):
    """Pixel footprint in metres, widened at grazing angles (by 4 at most)."""
    for i in range(len(fp)):
        cos = abs(n0[i] * d0[i] + n1[i] * d1[i] + n2[i] * d2[i]) / dlen[i]
        fp[i] = dist[i] * pixel_size / np.sqrt(fmax(cos, F32(1 / 16)))


class _Boxes:
    """Box hits: local coordinates (box centre at 0), face axis (0 x, 1 y, 2 z) and sign."""

    def __init__(self, s: _Surface, sel: np.ndarray, pid: np.ndarray) -> None:
        pr = s.scene.prims
        self.local = [np.empty(sel.size, F32) for _ in range(3)]
        self.half = _take(pr.halfT, pid)
        self.axis = np.empty(sel.size, np.int8)
        self.sign = np.empty(sel.size, F32)
        _box_frames(sel, pid, *s.p, pr.yawT, pr.centerT, self.half, *s.n, *self.local, self.axis, self.sign)

    def subset(self, k: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
        return [a[k] for a in self.local], self.half[:, k], self.axis[k], self.sign[k]


@kernel
def _box_frames(sel, pid, p0, p1, p2, yawT, centerT, half, n0, n1, n2, l0, l1, l2, axis, sign):
    """For the box points ``sel`` (on boxes ``pid``): their coordinates in the box's frame, the
    face they lie on (the axis along which they are furthest out, relative to the half sizes
    ``half``) and its outward sign, and the face's world normal."""
    for i in range(len(sel)):
        q, k = sel[i], pid[i]
        c, sn = yawT[0, k], yawT[1, k]
        rx, rz = p0[q] - centerT[0, k], p2[q] - centerT[2, k]
        x, y, z = c * rx - sn * rz, p1[q] - centerT[1, k], sn * rx + c * rz
        ax, ay, az = abs(x) / half[0, i], abs(y) / half[1, i], abs(z) / half[2, i]
        xface = ax >= ay and ax >= az
        yface = not xface and ay >= az
        a = 0 if xface else (1 if yface else 2)
        sg = F32(1.0) if (x if xface else (y if yface else z)) >= 0 else F32(-1.0)
        nx, nz = sg if xface else F32(0.0), sg if a == 2 else F32(0.0)
        n0[q], n1[q], n2[q] = c * nx + sn * nz, sg if yface else F32(0.0), c * nz - sn * nx
        l0[i], l1[i], l2[i], axis[i], sign[i] = x, y, z, a, sg


def _normals(s: _Surface) -> dict[int, tuple[np.ndarray, object]]:
    """Set the normal of every visible pixel; return per-kind selections for the materials."""
    curb = np.flatnonzero(s.pid == PID_CURB)
    bend = s.scene.bend
    if bend.straight:
        s.n[0][curb] = np.where(s.p[0].take(curb) < 0, F32(1.0), F32(-1.0))
    else:  # the face x = edge + b(z) turns with the road: normal along (1, 0, -b'(z)), into the road
        zc = s.p[2].take(curb)
        side = np.where(bend.lateral(s.p[0].take(curb), zc) < 0, 1.0, -1.0)
        db = bend.direction(zc)
        norm = np.sqrt(1.0 + db * db)
        s.n[0][curb] = (side / norm).astype(F32)
        s.n[2][curb] = (-side * db / norm).astype(F32)
    s.n[1][curb] = 0.0
    slope = s.scene.slope
    if not slope.flat:  # the ground beyond the start of the slope tilts towards (or away from) the camera
        tilted = np.flatnonzero((s.pid < 0) & (s.pid != PID_CURB) & (s.p[2] > F32(slope.start)))
        norm = float(np.sqrt(1.0 + slope.grade * slope.grade))
        s.n[1][tilted] = F32(1.0 / norm)
        s.n[2][tilted] = F32(-slope.grade / norm)
    groups: dict[int, tuple[np.ndarray, object]] = {}
    sel_all = np.flatnonzero(s.pid >= 0)
    pr = s.scene.prims
    kinds = pr.kind.take(s.pid.take(sel_all))
    for kind in (BOX, CYLINDER, ELLIPSOID, TUBE):
        sel = sel_all[kinds == kind]
        if not sel.size:
            continue
        pid = s.pid.take(sel)
        if kind == BOX:
            groups[kind] = (sel, _Boxes(s, sel, pid))
            continue
        rel = [s.p[i].take(sel) - _take(pr.centerT[i], pid) for i in range(3)]
        half = _take(pr.halfT, pid)
        if kind == CYLINDER:
            cap = rel[1] >= half[1] - F32(1e-3)
            s.n[0][sel] = np.where(cap, F32(0.0), rel[0] / half[0])
            s.n[1][sel] = np.where(cap, F32(1.0), F32(0.0))
            s.n[2][sel] = np.where(cap, F32(0.0), rel[2] / half[0])
        elif kind == TUBE:
            cap = np.abs(rel[2]) >= half[2] - F32(1e-3)
            s.n[0][sel] = np.where(cap, F32(0.0), rel[0] / half[0])
            s.n[1][sel] = np.where(cap, F32(0.0), rel[1] / half[0])
            s.n[2][sel] = np.where(cap, np.where(rel[2] > 0, F32(1.0), F32(-1.0)), F32(0.0))
        else:
            g = [rel[i] / (half[i] * half[i]) for i in range(3)]
            norm = np.sqrt(g[0] * g[0] + g[1] * g[1] + g[2] * g[2])
            for i in range(3):
                s.n[i][sel] = g[i] / norm
        groups[kind] = (sel, rel)
    return groups


def _ground(s: _Surface) -> None:
    sc = s.scene
    x, z = sc.bend.lateral(s.p[0], s.p[2]), s.p[2]  # across the road: markings and yards follow a bend
    road = np.flatnonzero(s.pid == PID_ROAD)
    if road.size:
        xr, zr = x.take(road), z.take(road)
        tone = s.tex("asphalt", road, xr, zr, 4.0) * (F32(0.8) + F32(0.4) * s.tex("coarse", road, xr, zr, 60.0))
        paint = np.zeros(road.size, bool)
        for m in sc.markings:
            on = np.abs(xr - F32(m.x)) < F32(m.width / 2)
            if m.dash > 0:
                on &= _mod(zr - F32(m.phase), F32(m.dash + m.gap)) < F32(m.dash)
            paint |= on
        if sc.crosswalk is not None:
            z0, z1 = sc.crosswalk
            paint |= (zr > z0) & (zr < z1) & (_mod(xr, F32(1.2)) < F32(0.6))
        asphalt = sc.asphalt
        if sc.wear is not None:
            worn = tone * _wear(s, sc.wear, road, xr, zr)
            asphalt = asphalt * np.asarray(sc.wear.tint, F32)
        else:
            worn = tone
        col = asphalt[:, None] * worn[None, :]
        _put(col, paint, F32(0.56) + F32(0.14) * tone[paint])
        _put(s.albedo, road, col)
    walk = np.flatnonzero(s.pid == PID_SIDEWALK)
    if walk.size:
        _put(s.albedo, walk, sc.walk[:, None] * s.tex("tiles", walk, x.take(walk), z.take(walk), 2.0)[None, :])
    yard = np.flatnonzero(s.pid == PID_YARD)
    if yard.size:
        xy, zy = x.take(yard), z.take(yard)
        grass = sc.yard_is_grass(xy)
        g = s.tex("grass", yard, xy, zy, 3.0) * (F32(0.75) + F32(0.5) * s.tex("coarse", yard, xy, zy, 30.0))
        tiles = s.tex("tiles", yard, xy, zy, 2.0)
        _put(s.albedo, yard, np.where(grass[None, :], sc.grass[:, None] * g[None, :], sc.walk[:, None] * tiles[None, :]))
    curb = np.flatnonzero(s.pid == PID_CURB)
    if curb.size:
        _put(s.albedo, curb, F32(0.5) * s.tex("noise", curb, z.take(curb), s.p[1].take(curb), 2.0) + F32(0.2))


def _wear(s: _Surface, wear, road: np.ndarray, x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Albedo factor of worn asphalt at road points (x across the road, z along it, metres):
    wheel paths (a parabolic profile across each), repair patches (rectangles in hashed cells of
    a 3.5 x 9 m grid) and stains (value noise, blotches about 1.5 m across)."""
    factor = F32(1.0) + F32(wear.stains) * (F32(2.0) * s.tex("noise", road, x, z, 12.0) - F32(1.0))
    half = F32(wear.track_width / 2)
    for c in wear.tracks:
        d = (x - F32(c)) / half
        on = np.abs(d) < F32(1.0)
        factor[on] *= F32(1.0) + F32(wear.track_gain - 1.0) * (F32(1.0) - d[on] * d[on])
    if wear.patches > 0:
        fx, fz = x / F32(3.5), z / F32(9.0)
        ix, iz = np.floor(fx), np.floor(fz)
        cx, cz = ix.astype(np.int64), iz.astype(np.int64)
        u0, v0 = textures.hash01(cx, cz, wear.seed + 1) * 0.5, textures.hash01(cx, cz, wear.seed + 2) * 0.5
        u1 = u0 + 0.25 + 0.5 * textures.hash01(cx, cz, wear.seed + 3)
        v1 = v0 + 0.25 + 0.5 * textures.hash01(cx, cz, wear.seed + 4)
        u, v = fx - ix, fz - iz
        inside = (textures.hash01(cx, cz, wear.seed) < wear.patches) & (u > u0) & (u < u1) & (v > v0) & (v < v1)
        factor[inside] *= F32(wear.patch_gain)
    return factor


def _facade(s: _Surface, sel: np.ndarray, pid: np.ndarray, local, half, axis, sign) -> np.ndarray:
    """Buildings: brick or plaster walls with framed windows on every floor (shop windows and
    a door at street level), dark roofs."""
    pr = s.scene.prims
    col = np.empty((3, sel.size), F32)
    _facade_colors(sel, pid, *local, half, axis, s.p[0], _height(s, sel, pid), s.p[2], s.fp, pr.paramsT, pr.colorT,
                   pr.color2T, *textures.atlas(), col)
    return col


@kernel
def _tex(data, starts, tex, u, v, footprint, metres):
    """Texture ``tex`` (one tile = ``metres``) at surface coords (u, v) in metres (as _Surface.tex)."""
    k = F32(textures.SIZE / metres)
    return textures.texel(data, starts, tex, u * k, v * k, footprint * k)


@kernel
def _facade_colors(sel, pid, l0, l1, l2, half, axis, p0, height, p2, fp, params, color, color2, data, starts, col):
    for i in range(len(sel)):
        q, k = sel[i], pid[i]
        floor_h, win_w, win_h, spacing, brick, shop = params[0, k], params[1, k], params[2, k], params[3, k], params[4, k], params[5, k]
        # coordinate along the face (from one edge) and height above the ground
        across = axis[i] == 0
        along = l2[i] + half[2, i] if across else l0[i] + half[0, i]
        length = F32(2.0) * (half[2, i] if across else half[0, i])
        y = height[i]
        if brick > 0:
            tone = _tex(data, starts, T_BRICKS, along, y, fp[q], 2.0)
        else:
            tone = _tex(data, starts, T_PLASTER, along, y, fp[q], 4.0)
        rgb = (color[0, k] * tone, color[1, k] * tone, color[2, k] * tone)
        vertical = axis[i] != 1
        gf = floor_h + F32(0.4)
        level = np.floor((y - gf) / floor_h)
        v = y - gf - level * floor_h
        a = fmod(along, spacing) - (spacing - win_w) * F32(0.5)
        inside = (vertical and along > F32(0.8) and along < length - F32(0.8) and y > gf
                  and y < F32(2.0) * half[1, i] - F32(0.6))
        frame = inside and a > F32(-0.08) and a < win_w + F32(0.08) and v > F32(0.82) and v < F32(0.98) + win_h
        win = frame and a > 0 and a < win_w and v > F32(0.9) and v < F32(0.9) + win_h
        glass = win
        if shop > 0:
            shop_a = fmod(along, F32(5.0))
            glass = win or (vertical and along > F32(0.8) and along < length - F32(0.8) and y > F32(0.5)
                            and y < F32(2.8) and shop_a > F32(0.6) and shop_a < F32(4.4))
        door = vertical and shop == 0 and abs(along - length * F32(0.5)) < F32(0.6) and y < F32(2.2)
        if frame and not win:
            rgb = (F32(0.75), F32(0.75), F32(0.75))
        if glass:
            refl = F32(0.6) + F32(0.4) * _tex(data, starts, T_COARSE, along, y, fp[q], 20.0)
            rgb = (color2[0, k] * refl + F32(0.04), color2[1, k] * refl + F32(0.04), color2[2, k] * refl + F32(0.04))
        if door:
            rgb = (color2[0, k] * F32(2.0), color2[1, k] * F32(2.0), color2[2, k] * F32(2.0))
        if not vertical:
            roof = F32(0.18) * _tex(data, starts, T_NOISE, p0[q], p2[q], fp[q], 8.0) + F32(0.05)
            rgb = (roof, roof, roof)
        col[0, i], col[1, i], col[2, i] = rgb


def _concrete(s: _Surface, sel: np.ndarray, pid: np.ndarray, local, half, axis, sign) -> np.ndarray:
    """Bridges, barriers and walls: stained concrete, noise-wall panels or fence slats."""
    pr = s.scene.prims
    col = np.empty((3, sel.size), F32)
    _concrete_colors(sel, pid, local[0], local[2], axis, _height(s, sel, pid), s.fp, pr.paramsT, pr.colorT,
                     pr.color2T, *textures.atlas(), col)
    return col


@kernel
def _concrete_colors(sel, pid, l0, l2, axis, height, fp, params, color, color2, data, starts, col):
    for i in range(len(sel)):
        q, k = sel[i], pid[i]
        style, period = params[0, k], params[1, k]  # 0 plain, 1 joints (panels), 2 slats (a fence)
        along, y = l2[i] if axis[i] == 0 else l0[i], height[i]
        stain = F32(0.75) + F32(0.3) * _tex(data, starts, T_COARSE, along, y, fp[q], 12.0)
        tone = _tex(data, starts, T_PLASTER, along, y, fp[q], 3.0) * stain
        width = F32(0.25) * period if style > F32(1.5) else F32(0.03)
        joint = style > F32(0.5) and abs(fmod(along, fmax(period, F32(0.05))) - F32(0.5) * period) < width
        for c in range(3):
            col[c, i] = color2[c, k] if joint else color[c, k] * tone


def _vehicle(s: _Surface, sel: np.ndarray, pid: np.ndarray, local, half, axis, sign) -> np.ndarray:
    """Vehicle boxes: paint, a glass band with pillars, wheels on the sides, lamps, bumpers and
    plates on the ends of lower bodies, tarpaulins with straps, striped underrun bars."""
    pr = s.scene.prims
    col = np.empty((3, sel.size), F32)
    _vehicle_colors(sel, pid, *local, half, axis, sign, _height(s, sel, pid), s.fp, pr.paramsT, pr.colorT,
                    pr.color2T, *textures.atlas(), col)
    return col


@kernel
def _vehicle_colors(sel, pid, l0, l1, l2, half, axis, sign, height, fp, params, color, color2, data, starts, col):
    for i in range(len(sel)):
        q, k = sel[i], pid[i]
        g0, g1, wheel_r, facing, pillar, style = params[0, k], params[1, k], params[2, k], params[3, k], params[4, k], params[5, k]
        x, z, y = l0[i], l2[i], height[i]
        paint = F32(0.9) + F32(0.2) * _tex(data, starts, T_NOISE, x + z, y, fp[q], 3.0)
        rgb = (color[0, k] * paint, color[1, k] * paint, color[2, k] * paint)
        vertical = axis[i] != 1
        if style == F32(2.0):  # a tarpaulin: sagging folds, straps every metre
            fold = F32(0.8) + F32(0.4) * _tex(data, starts, T_COARSE, x + z, y, fp[q], 2.0)
            rgb = (rgb[0] * fold, rgb[1] * fold, rgb[2] * fold)
            if vertical and fmod(x + z, F32(1.1)) < F32(0.08):
                rgb = (F32(0.12), F32(0.12), F32(0.12))
        if style == F32(1.0) and vertical and abs(x) < half[0, i] - F32(0.4):  # an underrun bar: red and white
            if fmod(x + y, F32(0.5)) < F32(0.25):
                rgb = (F32(0.6), F32(0.04), F32(0.03))
            else:
                rgb = (F32(0.8), F32(0.78), F32(0.72))
        # glass band (windows) with pillars at the ends of each face
        side = axis[i] == 0
        along, along_half = (z, half[2, i]) if side else (x, half[0, i])
        if vertical and y > g0 and y < g1 and abs(along) < along_half - pillar:
            refl = F32(0.06) * _tex(data, starts, T_COARSE, along, y, fp[q], 6.0)
            rgb = (color2[0, k] + refl, color2[1, k] + refl, color2[2, k] + refl)
        # wheels on the sides; bumpers, lights and plates on the ends of lower bodies
        wz = half[2, i] - fmin(F32(0.75) + wheel_r, half[2, i] * F32(0.3))
        dz, dy = abs(z) - wz, y - wheel_r
        r2 = dz * dz + dy * dy
        if side and r2 < wheel_r * wheel_r:
            rgb = (F32(0.03), F32(0.03), F32(0.03))
            if r2 < F32(0.3) * wheel_r * wheel_r:
                rgb = (F32(0.3), F32(0.3), F32(0.3))
        lower = vertical and g0 == 0
        if lower and y < F32(0.35):
            rgb = (F32(0.05), F32(0.05), F32(0.05))
        ends = lower and axis[i] == 2
        ax = abs(x)
        if ends and y > F32(0.62) and y < F32(0.78) and ax > half[0, i] - F32(0.38) and ax < half[0, i] - F32(0.08):
            if sign[i] * facing > 0:
                rgb = (F32(0.9), F32(0.88), F32(0.8))
            else:
                rgb = (F32(0.55), F32(0.02), F32(0.02))
        if ends and y > F32(0.38) and y < F32(0.5) and ax < F32(0.26):
            rgb = (F32(0.8), F32(0.8), F32(0.8))
        col[0, i], col[1, i], col[2, i] = rgb


def _leaves(s: _Surface, sel: np.ndarray, pid: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return _take(s.scene.prims.colorT, pid) * (F32(1.3) * s.tex("leaves", sel, u, v, 1.5))[None, :]


def _primitives(s: _Surface, groups: dict[int, tuple[np.ndarray, object]]) -> None:
    pr = s.scene.prims
    for kind, (sel, info) in groups.items():
        pid = s.pid.take(sel)
        mat = pr.material.take(pid)
        py = _height(s, sel, pid)
        col = np.empty((3, sel.size), F32)
        if kind == BOX:
            boxes: _Boxes = info  # type: ignore[assignment]
            local = boxes.local
            for m, fn in ((FACADE, _facade), (VEHICLE, _vehicle)):
                k = np.flatnonzero(mat == m)
                if k.size:
                    _put(col, k, fn(s, sel.take(k), pid.take(k), *boxes.subset(k)))
            k = np.flatnonzero(mat == FOLIAGE)
            if k.size:
                _put(col, k, _leaves(s, sel.take(k), pid.take(k), local[0].take(k) + local[2].take(k), py.take(k)))
            k = np.flatnonzero(mat == CONCRETE)
            if k.size:
                _put(col, k, _concrete(s, sel.take(k), pid.take(k), *boxes.subset(k)))
            k = np.flatnonzero(mat == RAIL)
            if k.size:
                sk, pk = sel.take(k), pid.take(k)
                groove = np.abs(_mod(py.take(k), F32(0.16)) - F32(0.08)) < F32(0.02)
                shine = F32(0.85) + F32(0.3) * s.tex("noise", sk, local[0].take(k) + local[2].take(k), py.take(k), 6.0)
                _put(col, k, _take(pr.colorT, pk) * (shine * np.where(groove, F32(0.7), F32(1.0)))[None, :])
            k = np.flatnonzero(mat == SIGN_PANEL)
            if k.size:
                lk, hk, axk, sk = boxes.subset(k)
                border = (np.abs(lk[0]) > hk[0] - 0.05) | (np.abs(lk[1]) > hk[1] - 0.05)
                face = (axk == 2) & ~border
                back = np.where((axk == 2) & (sk > 0), F32(0.35), F32(1.0))
                pk = pid.take(k)
                _put(col, k, np.where(face[None, :], _take(pr.colorT, pk), _take(pr.color2T, pk)) * back[None, :])
        elif kind == CYLINDER:
            rel: list[np.ndarray] = info  # type: ignore[assignment]
            around = rel[0] - rel[2]
            for m, tex, scale, metres in ((TRUNK, "bark", 4.0, 2.0), (PERSON, "noise", 1.0, 1.0), (POLE_METAL, "noise", 1.0, 4.0)):
                k = np.flatnonzero(mat == m)
                if not k.size:
                    continue
                pk, yk = pid.take(k), py.take(k)
                t = s.tex(tex, sel.take(k), around.take(k) * F32(scale), yk, metres)
                base = _take(pr.colorT, pk)
                if m == PERSON:  # shirt above the hips, trousers below
                    base = np.where((yk < _take(pr.paramsT[0], pk))[None, :], _take(pr.color2T, pk), base)
                    t = F32(0.85) + F32(0.3) * t
                elif m == POLE_METAL:
                    t = F32(0.9) + F32(0.2) * t
                _put(col, k, base * t[None, :])
        elif kind == TUBE:
            rel = info  # type: ignore[assignment]
            # a tank barrel: shell with welded rings and a dark chassis line at the bottom
            ring = _take(pr.paramsT[0], pid)
            seam = np.abs(_mod(rel[2], ring) - F32(0.5) * ring) < F32(0.04)
            bottom = rel[1] < F32(-0.85) * _take(pr.halfT[0], pid)
            shine = F32(0.9) + F32(0.2) * s.tex("noise", sel, rel[0] + rel[2], py, 4.0)
            col[:] = _take(pr.colorT, pid) * (shine * np.where(seam, F32(0.6), F32(1.0)))[None, :]
            _put(col, np.flatnonzero(bottom), F32(0.06))
        else:
            rel = info  # type: ignore[assignment]
            col[:] = _take(pr.colorT, pid)
            k = np.flatnonzero(mat == FOLIAGE)
            if k.size:
                sk = sel.take(k)
                _put(col, k, _leaves(s, sk, pid.take(k), s.p[0].take(sk) + F32(0.5) * s.p[2].take(sk), py.take(k)))
            k = np.flatnonzero(mat == HEAD)
            if k.size:
                pk = pid.take(k)
                hair = rel[1].take(k) > F32(0.3) * _take(pr.halfT[1], pk)
                _put(col, k, np.where(hair[None, :], _take(pr.color2T, pk), _take(pr.colorT, pk)))
            k = np.flatnonzero(mat == VEHICLE)
            if k.size:  # a rounded cabin: windows below the roof, a dark seal along the belt line
                pk, sk = pid.take(k), sel.take(k)
                up = rel[1].take(k) / _take(pr.halfT[1], pk)
                glass = (up > F32(0.06)) & (up < F32(0.6))
                refl = F32(0.08) * s.tex("coarse", sk, rel[0].take(k) + rel[2].take(k), py.take(k), 6.0)
                paint = _take(pr.colorT, pk)
                _put(col, k, np.where(glass[None, :], _take(pr.color2T, pk) + refl[None, :],
                                      np.where((up <= F32(0.06))[None, :], paint * F32(0.5), paint)))
        _put(s.albedo, sel, col)


def _ground_windows(s: _Surface, grid: RayGrid, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image windows of the boxes (lo, hi) and an (H, W) map of each ground pixel's visible-pixel
    index (-1 elsewhere): where shadows and contact shadows can fall. The map is built once per
    frame and shared by both."""
    if s.ground_pos is None:
        s.ground_pos = _index_map(s, grid, np.flatnonzero(s.pid < 0))
    return grid.windows(lo, hi), s.ground_pos


def _index_map(s: _Surface, grid: RayGrid, points: np.ndarray) -> np.ndarray:
    """(H, W) map holding each of ``points`` (visible-pixel indices) at its pixel, -1 elsewhere."""
    h, w = grid.shape
    pos = np.full(h * w, -1, np.int64)
    pos[s.idx.take(points)] = points
    return pos.reshape(h, w)


_CORNERS = np.array([[i & 1, (i >> 1) & 1, (i >> 2) & 1] for i in range(8)], dtype=bool)


def _blocks(pr, k: int, o: list[np.ndarray], L: np.ndarray) -> np.ndarray:
    """Whether the rays ``o + t L`` (t > 0; ``o`` relative to primitive ``k``'s centre) meet it."""
    return _blocks_all(pr.kind[k], pr.yaw[k], pr.half[k], np.asarray(L, dtype=np.float64), *o)


@kernel
def _blocks_all(kind, yaw, half, L, o0, o1, o2):
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


def _shadow(s: _Surface, grid: RayGrid) -> np.ndarray:
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


def _contact(s: _Surface, grid: RayGrid) -> np.ndarray:
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


def sky(scene: Scene, dx: np.ndarray, dy: np.ndarray, dz: np.ndarray) -> np.ndarray:
    """Sky radiance (3, n) for view directions: zenith-to-horizon gradient with clouds."""
    norm = np.sqrt(dx * dx + dy * dy + dz * dz)
    e = _clamp01(dy / norm * F32(2.5))
    w = e * e * (F32(3.0) - F32(2.0) * e)
    col = scene.sky_horizon[:, None] + (scene.sky_zenith - scene.sky_horizon)[:, None] * w[None, :]
    k = F32(1000.0) / np.maximum(dy, F32(1e-3))
    scale = F32(textures.SIZE / 6000.0)
    dens = textures.texture("clouds").sample(dx * k * scale, dz * k * scale, k * norm * F32(1 / 600.0) * scale)
    cloud = _clamp01((dens - F32(0.75 - 0.45 * scene.cloud_cover)) * F32(4.0)) * e
    return col + (F32(0.95) - col) * cloud[None, :]


@kernel
def _light(idx, albedo, n0, n1, n2, L, shadow, contact, dist, haze_distance, ambient, sun_color, haze, out):
    """Radiance of the visible pixels ``idx`` into ``out`` (3, H*W): albedo lit by the sun
    (N.L, unless shadowed) and the sky (more from above, less under cars), then haze by distance."""
    for i in range(len(idx)):
        sun = fmax(n0[i] * L[0] + n1[i] * L[1] + n2[i] * L[2], F32(0.0)) * shadow[i]
        skylight = (F32(0.55) + F32(0.225) * (n1[i] + F32(1.0))) * contact[i]
        x = dist[i] / haze_distance
        trans = F32(1.0) / (F32(1.0) + x + F32(0.5) * x * x)
        for c in range(3):
            light = ambient[c] * skylight + sun_color[c] * sun
            out[c, idx[i]] = (albedo[c, i] * light - haze[c]) * trans + haze[c]


def shade(scene: Scene, grid: PinholeGrid, hits: Hits) -> np.ndarray:
    """Linear radiance, channel-first (3, H, W) float32, before exposure and tone mapping."""
    h, w = grid.shape
    out = np.empty((3, h * w), F32)
    s = _Surface(scene, grid, hits)
    groups = _normals(s)
    s.finish_normals()
    _ground(s)
    _primitives(s, groups)
    _light(s.idx, s.albedo, *s.n, np.asarray(scene.sun, F32), _shadow(s, grid), _contact(s, grid), s.dist,
           F32(scene.haze_distance), scene.ambient, scene.sun_color, scene.sky_horizon * F32(0.9), out)
    skyidx = np.flatnonzero(hits.pid.ravel() == PID_SKY)
    _put(out, skyidx, sky(scene, grid.dx.ravel().take(skyidx), grid.dy.ravel().take(skyidx), grid.dz.ravel().take(skyidx)))
    return out.reshape(3, h, w)
