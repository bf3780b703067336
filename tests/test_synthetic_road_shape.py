"""Roads that change grade or bend ahead (the ``slopes`` and ``bends`` scene options): exact
ground, objects on it.

The ground is checked against a brute-force march along every camera ray over the ground's
height field (an independent computation, no plane or parabola algebra), road points against
the profile h(z) = grade * max(0, z - start) and the bend's lateral offset, and objects against
the rules that nothing floats and long ones follow the road.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slimdepth.data.synthetic import CLASS_NAMES, SceneGenerator
from slimdepth.data.synthetic import shading, shadows
from slimdepth.data.synthetic.primitives import BOX, CONCRETE, CYLINDER, VEHICLE, PrimBuilder
from slimdepth.data.synthetic.raycast import PID_CURB, PID_ROAD, PID_SIDEWALK, PID_SKY, PID_YARD, PinholeGrid, cast
from slimdepth.data.synthetic.scene import SceneOptions
from slimdepth.data.synthetic.terrain import BACKDROP_DEPTH, BEND_PIECE, PIECE_STEP, Bend, Slope, place_on_road
from tests.test_synthetic_scenes import _hits_reference, _points

ROAD = CLASS_NAMES.index("road")
SIZE = (48, 160)


@pytest.fixture(scope="module")
def sloped():
    """Frames that all have a slope, rising and falling (seed 2 draws both within 8 frames)."""
    gen = SceneGenerator(SIZE, seed=2, components=("depth", "seg", "lidar"), scene_options=SceneOptions(slopes=1.0))
    frames = [gen.frame(i) for i in range(8)]
    grades = [f.scene.slope.grade for f in frames]
    assert all(0.02 <= abs(g) <= 0.07 for g in grades) and min(grades) < 0 < max(grades)
    return gen, frames


@pytest.fixture(scope="module")
def bent():
    """Frames that all have a bend, left and right, some of them tight."""
    gen = SceneGenerator(SIZE, seed=2, components=("depth", "seg", "lidar"), scene_options=SceneOptions(bends=1.0))
    frames = [gen.frame(i) for i in range(8)]
    k = [f.scene.bend.curvature for f in frames]
    assert all(1 / 500 - 1e-9 <= abs(c) <= 1 / 80 + 1e-9 for c in k) and min(k) < 0 < max(k)
    return gen, frames


@pytest.fixture(scope="module")
def both():
    """Frames with a slope and a bend."""
    gen = SceneGenerator(SIZE, seed=9, components=("depth", "seg", "lidar"),
                         scene_options=SceneOptions(slopes=1.0, bends=1.0))
    return gen, [gen.frame(i) for i in range(6)]


def _bare_hits(scene, **change):
    """The ray caster's hits of ``scene`` without its objects (and with ``change`` applied)."""
    scene = dataclasses.replace(scene, prims=PrimBuilder().build(), **change)
    grid = PinholeGrid(scene.K, *SIZE, scene.camera_rotation, scene.camera_origin)
    return cast(scene, grid)


def _march(scene, origin, rays: np.ndarray, step: float = 0.05, reach: float = 300.0) -> np.ndarray:
    """First t where each ray (origin + t * ray, float64) meets the ground's height field,
    found by stepping and then bisecting (inf: none). The field: the road's profile between the
    curbs (measured across the road, x - b(z) on a bend), curb_height above it outside them,
    nothing beyond the backdrop's end."""
    slope, bend, end = scene.slope, scene.bend, scene.far + BACKDROP_DEPTH

    def above(t: np.ndarray, idx: np.ndarray) -> np.ndarray:
        p = origin + t[:, None] * rays[idx]
        across = p[:, 0] - bend.offset(p[:, 2]) if not bend.straight else p[:, 0]
        outside = (across < scene.road_left) | (across > scene.road_right)
        ground = slope.height(p[:, 2]) + np.where(outside, scene.curb_height, 0.0)
        return (p[:, 1] > ground) | (p[:, 2] > end)

    n = len(rays)
    assert (rays[:, 2] > 0).all()  # every ray goes forward: once past the end it meets nothing
    hit, lo = np.full(n, np.inf), np.zeros(n)
    todo = np.arange(n)
    for t in np.arange(step, reach, step):
        below = ~above(np.full(len(todo), t), todo)
        hit[todo[below]] = t  # the first sample below the ground brackets the crossing
        lo[todo[~below]] = t
        todo = todo[~below & (origin[2] + t * rays[todo, 2] <= end)]
        if not len(todo):
            break
    found = np.flatnonzero(np.isfinite(hit))
    a, b = lo[found], hit[found]
    for _ in range(40):
        mid = 0.5 * (a + b)
        up = above(mid, found)
        a, b = np.where(up, mid, a), np.where(up, b, mid)
    hit[found] = b
    return hit


TIGHT = [Bend(15.0, 1 / 80, 0.364 * 80), Bend(12.0, -1 / 80, 0.364 * 80), Bend(30.0, 1 / 150, 0.364 * 150),
         Bend(10.0, -1 / 100, 0.364 * 100)]


@pytest.mark.parametrize("shape", ["sloped", "bent", "both", "tight"])
def test_the_ground_is_the_first_crossing_of_its_height_field(shape, request):
    """Without objects, every pixel's ground depth equals a march along its ray (within the
    march's resolution), up to the end of the ground: road, sidewalks, curb faces (bent ones too,
    and the straight road after a tight bend), the crest of a dip and the end of a hill."""
    gen, frames = request.getfixturevalue("bent" if shape == "tight" else shape)
    checked = beyond = 0
    for i, f in enumerate(frames[:4]):
        scene = f.scene if shape != "tight" else dataclasses.replace(f.scene, bend=TIGHT[i])
        hits = _bare_hits(scene)
        h, w = SIZE
        v, u = np.mgrid[0:h, 0:w].astype(np.float64)
        rays = (np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(scene.K).T @ np.asarray(scene.camera_rotation).T)
        ref = _march(scene, np.asarray(scene.camera_origin, float), rays.reshape(-1, 3)).reshape(h, w)
        got = hits.t.astype(np.float64)
        both = np.isfinite(ref) & np.isfinite(got)
        # the march is exact to its bisection; float32 depths to ~1e-5 of the distance at grazing rays
        np.testing.assert_allclose(got[both], ref[both], rtol=1e-4, atol=1e-3)
        # no hole, no extra ground: only a ray meeting the ground within a metre of its end may differ
        differ = np.isfinite(got) != np.isfinite(ref)
        t = np.where(np.isfinite(got), got, ref)[differ]
        assert (np.abs(t * rays[..., 2][differ] + scene.camera_origin[2] - (scene.far + BACKDROP_DEPTH)) < 1.0).all()
        checked += both.sum()
        start = min(scene.slope.start, scene.bend.start)
        beyond += int(((got * rays[..., 2] + scene.camera_origin[2] > start) & both).sum())
    assert checked > 10000 and beyond > 200  # the shaped parts are seen and checked


@pytest.mark.parametrize("shape", ["sloped", "bent", "both"])
def test_road_points_lie_on_the_profile_between_the_curbs(shape, request):
    gen, frames = request.getfixturevalue(shape)
    shaped = 0
    for f in frames:
        p = _points(f)
        road = f.seg == ROAD
        x, y, z = p[road][:, 0], p[road][:, 1], p[road][:, 2]
        tol = 2e-4 * np.abs(z).max() + 1e-4
        np.testing.assert_allclose(y, f.scene.slope.height(z), atol=tol)
        across = x - f.scene.bend.offset(z)
        assert (across >= f.scene.road_left - tol).all() and (across <= f.scene.road_right + tol).all()
        shaped += int((z > min(f.scene.slope.start, f.scene.bend.start) + 1).sum())
    assert shaped > 100  # 141-389 road points beyond the start at 48x160


def test_a_bend_moves_the_road_sideways(bent):
    """Against the straight road, a bend's road lies where the straight road's would, shifted by
    b(z): a ray meets the road plane at the same point, which is road for one of them only where
    the bend has moved the road away."""
    gen, frames = bent
    moved = 0
    for f in frames:
        scene = f.scene
        a, b = _bare_hits(scene), _bare_hits(scene, bend=Bend())
        both_road = (a.pid == PID_ROAD) & (b.pid == PID_ROAD)
        np.testing.assert_array_equal(a.t[both_road], b.t[both_road])  # one road plane, y = 0
        before = b.t < scene.bend.start - 1
        np.testing.assert_array_equal(a.pid[before & (b.pid == PID_ROAD)], PID_ROAD)  # unchanged before the bend
        moved += int(((a.pid == PID_ROAD) != (b.pid == PID_ROAD)).sum())
    assert moved > 100


@pytest.mark.parametrize("grade", [0.05, -0.05])
def test_a_hill_lifts_and_a_dip_lowers_the_road_ahead(sloped, grade):
    """Against the flat road, a rising road is nearer at the same pixel and a falling one farther
    (or hidden behind the crest): the cue a flat-road prior misses."""
    gen, frames = sloped
    compared = 0
    for f in frames[:4]:
        scene = f.scene
        a, b = _bare_hits(scene, slope=Slope(20.0, grade)), _bare_hits(scene, slope=Slope())
        ahead = (a.pid == PID_ROAD) & (b.pid == PID_ROAD) & (b.t > 22.0)
        assert (a.t[ahead] < b.t[ahead]).all() if grade > 0 else (a.t[ahead] > b.t[ahead]).all()
        compared += int(ahead.sum())
    assert compared > 100


def _table(*objects):
    b = PrimBuilder()
    for make in objects:
        b.new_object()
        make(b)
    return b.build()


def test_objects_stand_on_the_ground_and_long_ones_follow_it():
    slope = Slope(start=20.0, grade=0.05)
    car = lambda b: (b.box(0.0, 30.0, 0.3, 1.2, 0.9, 2.2, VEHICLE, 13, (0.5,) * 3),  # noqa: E731
                     b.box(0.0, 30.5, 1.2, 1.6, 0.8, 1.2, VEHICLE, 13, (0.5,) * 3))
    before = lambda b: b.cylinder(3.0, 10.0, 0.0, 4.0, 0.1, CONCRETE, 5, (0.5,) * 3)  # noqa: E731
    wall = lambda b: b.box(-6.0, 60.0, 0.0, 2.0, 0.2, 50.0, CONCRETE, 2, (0.5,) * 3)  # noqa: E731, z from 10 to 110
    prims = _table(car, before, wall)
    out = place_on_road(prims, slope)
    # the car moves as one, by the ground under its near end (27.8 m: 0.39 m), so it never floats
    np.testing.assert_allclose(out.center[:2, 1] - prims.center[:2, 1], slope.height(27.8))
    assert out.center[2, 1] == prims.center[2, 1]  # before the slope: unchanged
    pieces = out.obj == prims.obj[3]
    lo, hi = out.lo[pieces], out.hi[pieces]
    order = np.argsort(lo[:, 2])
    lo, hi = lo[order], hi[order]
    # the wall is cut at the start (10-20 m whole) and beyond into pieces that grow with distance
    # and tile its length exactly
    assert lo[0, 2] == pytest.approx(10.0) and hi[0, 2] == pytest.approx(20.0) and hi[-1, 2] == pytest.approx(110.0)
    np.testing.assert_allclose(lo[1:, 2], hi[:-1, 2], rtol=1e-12)
    length = hi[1:, 2] - lo[1:, 2]
    assert (np.diff(length[:-2]) > 0).all() and 10 < pieces.sum() < 40
    assert length.min() >= 0.5 * length[0] and length[-1] <= length[-3] * 1.06 ** 2  # no sliver at the end
    # each piece stands on the ground under its near end; neighbours differ by at most PIECE_STEP
    # of their distance
    np.testing.assert_allclose(lo[:, 1], slope.height(lo[:, 2]), atol=1e-9)
    assert (np.diff(lo[:, 1]) <= PIECE_STEP * lo[:-1, 2] + 1e-9).all()
    assert (out.kind[pieces] == BOX).all() and (out.material[pieces] == CONCRETE).all()
    # a falling road lowers objects by the ground under their far end: sunk at the near end
    down = place_on_road(prims, Slope(start=20.0, grade=-0.05))
    np.testing.assert_allclose(down.center[:2, 1] - prims.center[:2, 1], Slope(20.0, -0.05).height(32.2))
    assert place_on_road(prims, Slope()) is prims  # a flat road changes nothing


def test_objects_turn_with_a_bend_and_long_ones_follow_it():
    bend = Bend(start=20.0, curvature=0.01, length=36.4)  # 100 m radius, up to 20 degrees
    lorry = lambda b: (b.box(3.0, 60.0, 0.3, 3.5, 1.2, 4.0, VEHICLE, 13, (0.5,) * 3),  # noqa: E731
                       b.box(3.0, 65.0, 0.3, 2.5, 1.2, 1.0, VEHICLE, 13, (0.5,) * 3))
    car = lambda b: (b.box(-3.0, 60.0, 0.3, 1.0, 0.9, 2.2, VEHICLE, 13, (0.5,) * 3),  # noqa: E731
                     b.ellipsoid((-3.0, 1.0, 60.0), (0.8, 0.5, 1.2), VEHICLE, 13, (0.5,) * 3))
    wall = lambda b: b.box(-6.0, 60.0, 0.0, 2.0, 0.2, 50.0, CONCRETE, 2, (0.5,) * 3)  # noqa: E731, z from 10 to 110
    prims = _table(lorry, car, wall)
    out = place_on_road(prims, bend=bend)
    # the lorry (boxes only, z 56-66) turns about its centre (x 3, z 61) by the road's angle there and
    # shifts by b(61)
    theta = np.arctan(bend.direction(61.0))
    q = np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])
    for i in (0, 1):
        rel = prims.center[i, [0, 2]] - (3.0, 61.0)
        np.testing.assert_allclose(out.center[i, [0, 2]], (3.0 + bend.offset(61.0), 61.0) + q @ rel, atol=1e-9)
        np.testing.assert_allclose(out.yaw[i], (np.cos(theta), np.sin(theta)), atol=1e-12)
    # a corner's world position, as the ray caster reads a yawed box, turned by theta too
    c, s_ = out.yaw[0]
    corner_local = np.array([1.2, 4.0])  # (x, z) in the box frame
    world = out.center[0, [0, 2]] + np.array([[c, s_], [-s_, c]]) @ corner_local
    np.testing.assert_allclose(world, out.center[0, [0, 2]] + q @ corner_local, atol=1e-12)
    # the car (a rounded cabin cannot turn) only shifts, as one
    np.testing.assert_allclose(out.center[2:4, 0] - prims.center[2:4, 0], bend.offset(60.0))
    np.testing.assert_array_equal(out.center[2:4, 2], prims.center[2:4, 2])
    np.testing.assert_array_equal(out.yaw[2], (1.0, 0.0))
    # the wall follows the bent line x = -6 + b(z): every piece's centre on it, its ends within
    # 0.3 % of their distance of it
    pieces = np.flatnonzero(out.obj == prims.obj[4])
    assert len(pieces) > 10
    tail = pieces[out.center[pieces, 2] > bend.start]  # beyond the start: a tenth of their distance long
    assert (2 * out.half[tail, 2] <= BEND_PIECE * (out.center[tail, 2] - out.half[tail, 2]) * (1 + 1e-6)).all()
    cen = out.center[pieces]
    np.testing.assert_allclose(cen[:, 0], -6.0 + bend.offset(cen[:, 2]), atol=1e-9)
    for k in pieces:
        c, s_ = out.yaw[k]
        for end in (-1.0, 1.0):
            x, z = out.center[k, [0, 2]] + np.array([[c, s_], [-s_, c]]) @ (0.0, end * out.half[k, 2])
            assert abs(x - (-6.0 + bend.offset(z))) <= PIECE_STEP * z + 1e-6
    assert place_on_road(prims, bend=Bend()) is prims


def test_without_a_slope_or_bend_the_frames_are_version_2s_bit_for_bit():
    """The road's shape is drawn last from the scene's stream: frames drawn flat and straight
    are the default frames."""
    some = SceneGenerator(SIZE, seed=5, components=("depth", "seg"), scene_options=SceneOptions(slopes=0.4, bends=0.4))
    plain = SceneGenerator(SIZE, seed=5, components=("depth", "seg"))
    flat = sloped_count = 0
    for i in range(10):
        a, b = some.frame(i), plain.frame(i)
        if a.scene.slope.flat and a.scene.bend.straight:
            np.testing.assert_array_equal(a.rgb, b.rgb)
            np.testing.assert_array_equal(a.depth, b.depth)
            flat += 1
        else:
            assert not np.array_equal(a.depth, b.depth)
            sloped_count += 1
    assert flat and sloped_count


@pytest.mark.parametrize("shape", ["sloped", "bent", "both"])
def test_lidar_agrees_with_dense_depth_on_shaped_roads(shape, request):
    gen, frames = request.getfixturevalue(shape)
    agree = total = 0
    for f in frames:
        ys, xs = np.nonzero(f.lidar)
        pad = np.pad(f.depth, 1, mode="edge")
        win = np.stack([pad[ys + dy, xs + dx] for dy in range(3) for dx in range(3)])
        z = f.lidar[ys, xs]
        agree += int(((z >= win.min(0) * (1 - 1e-4)) & (z <= win.max(0) * (1 + 1e-4))).sum())
        total += len(z)
    assert total > 1000 and agree / total > 0.95


@pytest.mark.parametrize("shape", ["sloped", "both"])
def test_shadows_on_a_shaped_ground_agree_with_a_brute_force_ray_to_the_sun(shape, request):
    """The shadow windows reach the raised or lowered ground: every sunlit-facing ground point
    is shaded exactly when a ray to the sun meets a caster (boxes and crowns, the default)."""
    gen, frames = request.getfixturevalue(shape)
    rng = np.random.default_rng(1)
    counts = {"shaded": 0, "lit": 0}
    for f in frames:
        scene = f.scene
        grid = PinholeGrid(scene.K, *SIZE, scene.camera_rotation, scene.camera_origin)
        surf = shading._Surface(scene, grid, cast(scene, grid))
        shading._normals(surf)
        surf.finish_normals()
        lit = shadows.sunlit(surf, grid)
        pr = scene.prims
        casters = [k for k in range(len(pr)) if pr.kind[k] == BOX or (pr.kind[k] != CYLINDER and pr.material[k] == shading.FOLIAGE)]
        start = min(scene.slope.start, scene.bend.start)
        ground = np.flatnonzero((surf.pid < 0) & (surf.pid != PID_CURB) & (surf.p[2] > start))
        L = np.asarray(scene.sun, np.float32)
        for j in rng.choice(ground, size=min(60, len(ground)), replace=False):
            point = [float(surf.p[d][j]) for d in range(3)]
            ref = not any(_hits_reference(pr, k, point, L) for k in casters)
            assert ref == bool(lit[j]), (point, scene.slope, scene.bend)
            counts["lit" if ref else "shaded"] += 1
    assert counts["lit"] > 50 and counts["shaded"] > 5, counts


def test_sloped_ground_is_shaded_with_its_own_normal(sloped):
    gen, frames = sloped
    f = frames[0]
    scene = f.scene
    grid = PinholeGrid(scene.K, *SIZE, scene.camera_rotation, scene.camera_origin)
    surf = shading._Surface(scene, grid, cast(scene, grid))
    shading._normals(surf)
    ground = np.isin(surf.pid, (PID_ROAD, PID_SIDEWALK, PID_YARD))
    ahead = ground & (surf.p[2] > scene.slope.start)
    g = scene.slope.grade
    np.testing.assert_allclose(surf.n[2][ahead], -g / np.sqrt(1 + g * g), rtol=1e-6)
    np.testing.assert_allclose(surf.n[1][ground & ~ahead], 1.0)
    assert ahead.any() and (surf.pid != PID_SKY).any()


def test_bent_curb_faces_are_shaded_with_their_own_normal():
    gen = SceneGenerator((192, 640), seed=2, components=("depth",), scene_options=SceneOptions(bends=1.0))
    seen = 0
    for i in range(6):
        scene = gen.scene(i)
        grid = PinholeGrid(scene.K, 192, 640, scene.camera_rotation, scene.camera_origin)
        surf = shading._Surface(scene, grid, cast(scene, grid))
        shading._normals(surf)
        curb = np.flatnonzero((surf.pid == PID_CURB) & (surf.p[2] > scene.bend.start + 1))
        if not curb.size:
            continue
        n = np.stack([surf.n[i][curb] for i in range(3)], 1).astype(np.float64)
        tangent = np.stack([scene.bend.direction(surf.p[2][curb]), np.zeros(curb.size), np.ones(curb.size)], 1)
        np.testing.assert_allclose((n * tangent).sum(1), 0.0, atol=1e-6)  # across the face's run
        np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, rtol=1e-6)
        across = scene.bend.lateral(surf.p[0][curb].astype(np.float64), surf.p[2][curb].astype(np.float64))
        assert ((n[:, 0] > 0) == (across < 0)).all()  # facing into the road
        seen += curb.size
    assert seen > 50


class _Fan:
    """A bundle of rays from one origin (what the ground test reads of a ray grid)."""

    def __init__(self, origin, azimuth: np.ndarray, elevation: np.ndarray) -> None:
        self.origin = tuple(float(v) for v in origin)
        az, el = np.meshgrid(azimuth, elevation)
        self.dx, self.dy, self.dz = (np.asarray(a, np.float32) for a in (np.tan(az), -np.tan(el), np.ones_like(az)))


@pytest.mark.parametrize("side, grade", [(1, 0.0), (-1, 0.0), (1, 0.04), (-1, -0.04)])
def test_a_ray_grazing_the_inner_curb_of_a_tight_bend_meets_its_face(bent, side, grade):
    """Rays aimed just past the inner curb of a tight bend, low enough to pass below the sidewalk,
    leave the road through the curb face and would come back onto it: they meet the face first.
    Checked against the march over the height field, for left and right bends, on flat and sloped
    ground; some rays of each fan must be such rays."""
    from slimdepth.data.synthetic.raycast import _ground

    gen, frames = bent
    bend = Bend(10.0, side / 80, 0.364 * 80)  # the inner curb: the right one on a right bend
    slope = Slope(12.0, grade) if grade else Slope()
    scene = dataclasses.replace(frames[0].scene, prims=PrimBuilder().build(), slope=slope, bend=bend)
    o = np.asarray(scene.camera_origin, float)
    # the tangent from the camera to the inner curb line x = edge + b(z)
    z = np.linspace(bend.start, bend.start + bend.length, 20001)
    edge = scene.road_right if side > 0 else scene.road_left
    azimuth = np.arctan((edge + bend.offset(z) - o[0]) / (z - o[2]))
    j = int(np.argmin(azimuth) if side > 0 else np.argmax(azimuth))
    reach, ground = z[j] - o[2], float(slope.height(z[j]))
    fan = _Fan(o, azimuth[j] + np.linspace(-0.004, 0.004, 120),
               np.arctan((o[1] - ground - np.linspace(0.0, scene.curb_height, 60)) / reach))
    hits = _ground(scene, fan)
    rays = np.stack([fan.dx, fan.dy, fan.dz], -1).reshape(-1, 3).astype(np.float64)
    ref = _march(scene, o, rays, step=0.02).reshape(fan.dx.shape)
    both = np.isfinite(ref) & np.isfinite(hits.t)
    np.testing.assert_allclose(hits.t[both], ref[both], rtol=1e-4, atol=1e-3)
    assert (np.isfinite(ref) == np.isfinite(hits.t)).all()
    road_plane = _bare_road_plane(scene, fan)
    through_face = (hits.pid == PID_CURB) & (ref < road_plane - 0.05)  # met before the road's surface
    assert through_face.sum() > 10


def _bare_road_plane(scene, fan) -> np.ndarray:
    """Where each ray of ``fan`` meets the road's surface (its profile), curbs or not."""
    from slimdepth.data.synthetic.terrain import profile_hits

    return profile_hits(scene.slope, fan.origin, fan.dy, fan.dz, 0.0, np.inf).astype(np.float64)


def test_turned_objects_stand_on_the_ground_of_their_own_span():
    """With a slope and a bend, an object's lift is the ground under its span along the road
    before it turned; the street's backdrop (500 m wide) shifts but does not turn."""
    slope, bend = Slope(30.0, 0.05), Bend(20.0, 1 / 100, 36.4)
    backdrop = lambda b: b.box(0.0, 200.0, 0.0, 20.0, 250.0, 15.0, shading.FACADE, 2, (0.5,) * 3)  # noqa: E731
    lorry = lambda b: b.box(3.0, 60.0, 0.3, 3.5, 1.2, 4.0, VEHICLE, 13, (0.5,) * 3)  # noqa: E731
    prims = _table(backdrop, lorry)
    out = place_on_road(prims, slope, bend)
    np.testing.assert_allclose(out.lift, slope.height([185.0, 56.0]))  # the near ends: 185 m and 56 m
    np.testing.assert_allclose(out.center[:, 1] - prims.center[:, 1], out.lift, rtol=1e-6)
    np.testing.assert_array_equal(out.yaw[0], (1.0, 0.0))  # the backdrop does not turn
    assert out.center[0, 0] == pytest.approx(bend.offset(200.0)) and out.yaw[1, 1] > 0.3  # the lorry turns
    # a backdrop placed as the scene sampler places it (z = far + 15, 15 m deep): its span can round
    # above 30 m, and it still moves as one and does not turn
    far = 229.90113380780858
    b = PrimBuilder()
    b.new_object()
    b.box(0.0, far + 15.0, 0.0, 20.0, 250.0, 15.0, shading.FACADE, 2, (0.5,) * 3)
    wide = place_on_road(b.build(), slope, bend)
    assert len(wide) == 1 and wide.yaw[0, 1] == 0.0


def test_details_are_drawn_at_heights_above_the_objects_own_ground(sloped):
    """A vehicle or a house lifted onto a hill keeps its wheels, windows and floors: raising the
    camera, the objects and their recorded lift by the same amount leaves their colours as they were."""
    gen, frames = sloped
    f = next(f for f in frames if f.scene.slope.grade > 0)
    flat = dataclasses.replace(f.scene, slope=Slope(), prims=place_on_road(f.scene.prims, Slope()))
    up = 1.5
    raised = dataclasses.replace(f.scene.prims, center=flat.prims.center + (0.0, up, 0.0),
                                 lo=flat.prims.lo + (0.0, up, 0.0), hi=flat.prims.hi + (0.0, up, 0.0),
                                 lift=np.full(len(flat.prims), up, np.float32))
    lifted = dataclasses.replace(flat, prims=raised, camera_origin=tuple(np.add(flat.camera_origin, (0.0, up, 0.0))),
                                 slope=f.scene.slope)
    colours = []
    for scene in (flat, lifted):
        grid = PinholeGrid(scene.K, *SIZE, scene.camera_rotation, scene.camera_origin)
        surf = shading._Surface(scene, grid, cast(scene, grid))
        groups = shading._normals(surf)
        surf.finish_normals()
        shading._primitives(surf, groups)
        on = surf.pid >= 0
        colours.append((surf.idx[on], surf.albedo[:, on]))
    (ia, ca), (ib, cb) = colours
    common, a, b = np.intersect1d(ia, ib, return_indices=True)
    assert len(common) > 500
    np.testing.assert_allclose(ca[:, a], cb[:, b], atol=2e-3)


def test_lifted_vehicles_keep_their_contact_shadows(sloped):
    """The boxes that darken the ground under a vehicle are the same on a slope: the shader picks
    a body by its height above its own (lifted) ground."""
    gen, frames = sloped
    for f in frames:
        flat = SceneGenerator(SIZE, seed=2).scene(f.index).prims  # the same scene drawn without a slope
        sloped_bodies, flat_bodies = shadows.contact_bodies(f.scene.prims), shadows.contact_bodies(flat)
        assert len(sloped_bodies) == len(flat_bodies) > 0
        np.testing.assert_array_equal(f.scene.prims.obj[sloped_bodies], flat.obj[flat_bodies])


@settings(max_examples=15, deadline=None)
@given(start=st.floats(10.0, 60.0), grade=st.sampled_from([0.0, 1.0]).flatmap(
           lambda on: st.just(0.0) if not on else st.floats(-0.07, 0.07).filter(lambda g: abs(g) > 0.005)),
       radius=st.floats(80.0, 500.0), side=st.sampled_from([-1.0, 1.0]), bend_start=st.floats(10.0, 50.0),
       frame=st.integers(0, 7))
def test_any_hill_and_bend_keeps_the_ground_exact(bent, start, grade, radius, side, bend_start, frame):
    """Any grade and bend within the options' ranges (and beyond them down to 0.5 %): the ground
    of a coarse pixel grid equals the march over the height field, no hole, no extra ground."""
    gen, frames = bent
    slope = Slope(start, grade) if grade else Slope()
    bend = Bend(bend_start, side / radius, 0.364 * radius)
    scene = dataclasses.replace(frames[frame].scene, slope=slope, bend=bend)  # its road, curbs and camera
    h, w = 16, 48
    K = scene.K.copy()
    K[:2] *= np.array([[w / SIZE[1]], [h / SIZE[0]]])
    small = dataclasses.replace(scene, K=K, height=h, width=w, prims=PrimBuilder().build())
    grid = PinholeGrid(K, h, w, small.camera_rotation, small.camera_origin)
    got = cast(small, grid).t.astype(np.float64)
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T @ np.asarray(small.camera_rotation).T
    ref = _march(small, np.asarray(small.camera_origin, float), rays.reshape(-1, 3)).reshape(h, w)
    both = np.isfinite(ref) & np.isfinite(got)
    np.testing.assert_allclose(got[both], ref[both], rtol=1e-4, atol=1e-3)
    differ = np.isfinite(got) != np.isfinite(ref)
    t = np.where(np.isfinite(got), got, ref)[differ]
    assert (np.abs(t * rays[..., 2][differ] + small.camera_origin[2] - (small.far + BACKDROP_DEPTH)) < 1.0).all()
