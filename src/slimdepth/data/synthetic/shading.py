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

from slimdepth.data.synthetic import shadows, textures
from slimdepth.data.synthetic.fmath import F32, fmax, fmin, fmod, kernel
from slimdepth.data.synthetic.raycast import Hits, PinholeGrid
from slimdepth.data.synthetic.scene import (
    BOX, CONCRETE, CYLINDER, ELLIPSOID, FACADE, FOLIAGE, HEAD, PERSON, PID_CURB, PID_ROAD, PID_SIDEWALK, PID_SKY,
    PID_YARD, POLE_METAL, RAIL, SIGN_PANEL, TANK, TRUNK, TUBE, VEHICLE, Scene,
)

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
        self.ground_pos: np.ndarray | None = None  # see shadows._ground_windows

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
    """Texture ``tex`` of the atlas (``data``, ``starts``) at the points ``sel`` into ``out``."""
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
    """Albedo (into ``col``, 3 x n) of the facade points ``sel`` on boxes ``pid``; the NumPy
    version's masks are tested per point in the same order, later ones painting over earlier."""
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
    """Albedo (into ``col``, 3 x n) of the concrete points ``sel`` on boxes ``pid``."""
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
    plates on the ends of lower bodies, tarpaulins with straps, striped underrun bars; running
    gear (tyres, chassis) in its own colour, a tyre with a grey hub on its outer face."""
    pr = s.scene.prims
    col = np.empty((3, sel.size), F32)
    _vehicle_colors(sel, pid, *local, half, axis, sign, _height(s, sel, pid), s.fp, pr.paramsT, pr.colorT,
                    pr.color2T, *textures.atlas(), col)
    return col


@kernel
def _vehicle_colors(sel, pid, l0, l1, l2, half, axis, sign, height, fp, params, color, color2, data, starts, col):
    """Albedo (into ``col``, 3 x n) of the vehicle points ``sel`` on boxes ``pid``; parts are
    painted in order, later ones over earlier (glass over paint, wheels over glass, lamps last)."""
    for i in range(len(sel)):
        q, k = sel[i], pid[i]
        g0, g1, wheel_r, facing, pillar, style = params[0, k], params[1, k], params[2, k], params[3, k], params[4, k], params[5, k]
        x, z, y = l0[i], l2[i], height[i]
        paint = F32(0.9) + F32(0.2) * _tex(data, starts, T_NOISE, x + z, y, fp[q], 3.0)
        rgb = (color[0, k] * paint, color[1, k] * paint, color[2, k] * paint)
        if style == F32(3.0):  # running gear; a tyre's hub on its outer face (the side params[3] names)
            dy = y - wheel_r  # z, y: from the tyre's centre and from its foot
            if axis[i] == 0 and sign[i] * facing > 0 and z * z + dy * dy < F32(0.3) * wheel_r * wheel_r:
                rgb = (F32(0.3) * paint, F32(0.3) * paint, F32(0.3) * paint)
            col[0, i], col[1, i], col[2, i] = rgb
            continue
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


def _livery(s: _Surface) -> None:
    """Fine detail on every vehicle surface (the ``vehicle_detail`` option): grime, panel seams and
    rivets, lettering and a conspicuity tape (textures' ``livery``), placed and weighted per vehicle
    by a hash of its object id (no random draws: the scene stays the one the seed drew). Real
    vehicles are covered in such detail; without it, a near vehicle is a smooth panel, and networks
    learn that fine detail means distance."""
    strength = s.scene.vehicle_detail
    if strength <= 0:
        return
    pr = s.scene.prims
    sel = np.flatnonzero(s.pid >= 0)
    sel = sel[np.isin(pr.material.take(s.pid.take(sel)), (VEHICLE, TANK))]
    if not sel.size:
        return
    pid = s.pid.take(sel)
    obj = pr.obj.take(pid)
    shift_u, shift_v = textures.hash01(obj, 0, 73) * 3.0, textures.hash01(obj, 1, 73) * 3.0
    weight = (strength * (0.4 + 0.6 * textures.hash01(obj, 2, 73))).astype(F32)
    flat = np.abs(s.n[1].take(sel)) > F32(0.7)  # roofs and bonnets: the texture lies along z
    u = (s.p[0].take(sel) + s.p[2].take(sel) + shift_u).astype(F32)
    v = (np.where(flat, s.p[2].take(sel), _height(s, sel, pid)) + shift_v).astype(F32)
    detail = s.tex("livery", sel, u, v, 3.0)
    s.albedo[:, sel] *= (F32(1.0) + weight * (detail - F32(1.0)))[None, :]


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
    _livery(s)
    _light(s.idx, s.albedo, *s.n, np.asarray(scene.sun, F32), shadows.sunlit(s, grid), shadows.contact_light(s, grid), s.dist,
           F32(scene.haze_distance), scene.ambient, scene.sun_color, scene.sky_horizon * F32(0.9), out)
    skyidx = np.flatnonzero(hits.pid.ravel() == PID_SKY)
    _put(out, skyidx, sky(scene, grid.dx.ravel().take(skyidx), grid.dy.ravel().take(skyidx), grid.dz.ravel().take(skyidx)))
    return out.reshape(3, h, w)
