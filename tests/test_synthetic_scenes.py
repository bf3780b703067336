"""The synthetic scenes' realism: vehicle shapes, traffic, structures, layouts and their options.

The geometry tests back-project the rendered depth with an independent float64 ray and check
that the point lies on the analytic surface that the z-buffer says was hit (tank barrels,
rounded cabins, bridge decks), so the new shapes keep the generator's exact ground truth.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from slimdepth.data.registry import build_dataset
from slimdepth.data.synthetic import SceneGenerator, write_synthetic
from slimdepth.data.synthetic.generator import generator_options
from slimdepth.data.synthetic.primitives import CONCRETE, ELLIPSOID, RAIL, TUBE, VEHICLE
from slimdepth.data.synthetic import vehicles
from slimdepth.data.synthetic.vehicles import GEAR
from slimdepth.data.synthetic import shading, shadows
from slimdepth.data.synthetic.raycast import BOX, CYLINDER, PinholeGrid, RayGrid, cast, hit_distances
from slimdepth.data.synthetic.camera import CameraOptions
from slimdepth.data.synthetic.scene import SceneOptions
from slimdepth.errors import ConfigError, DataError
from tests.helpers import assert_one_line_error, load_script, run_cli, run_script_main


def _points(frame) -> np.ndarray:
    """World points of every pixel from an independent float64 ray: o + z * R K^-1 [u, v, 1]."""
    h, w = frame.depth.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(frame.K).T @ frame.camera_rotation.T
    return frame.camera_origin + frame.depth[..., None].astype(np.float64) * rays


def _pid(gen: SceneGenerator, frame) -> np.ndarray:
    scene = frame.scene
    grid = PinholeGrid(scene.K, *gen.size, scene.camera_rotation, scene.camera_origin)
    return cast(scene, grid).pid


@pytest.fixture(scope="module")
def highway():
    gen = SceneGenerator((96, 320), seed=4, components=("depth",), scene_options=SceneOptions(layouts="highway"))
    return gen, [gen.frame(i) for i in range(8)]


def test_tank_barrels_and_cabins_are_exact_analytic_surfaces(highway):
    gen, frames = highway
    checked = {TUBE: 0, ELLIPSOID: 0}
    for f in frames:
        pid, p, pr = _pid(gen, f), _points(f), f.scene.prims
        for k in np.unique(pid[pid >= 0]):
            if not (pr.kind[k] == TUBE or (pr.kind[k] == ELLIPSOID and pr.material[k] == VEHICLE)):
                continue
            q = (p[pid == k] - pr.center[k]) / pr.half[k]  # unit cylinder / unit sphere coordinates
            if pr.kind[k] == TUBE:  # on the side (x^2 + y^2 = 1) or on an end cap (|z| = 1)
                side = np.abs(np.hypot(q[:, 0], q[:, 1]) - 1) < 2e-3 * f.depth[pid == k]
                cap = (np.abs(np.abs(q[:, 2]) - 1) < 2e-3 * f.depth[pid == k]) & (np.hypot(q[:, 0], q[:, 1]) < 1 + 1e-3)
                assert (side | cap).all()
            else:  # the visible upper half of the ellipsoid
                np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=2e-3 * f.depth[pid == k].max())
                assert (q[:, 1] > -1e-3).all()
            checked[pr.kind[k]] += len(q)
    assert checked[TUBE] > 50 and checked[ELLIPSOID] > 50, checked


def test_culling_hidden_primitives_changes_no_depth(highway):
    gen, frames = highway
    for f in frames[:4]:
        scene = f.scene
        grid = PinholeGrid(scene.K, *gen.size, scene.camera_rotation, scene.camera_origin)
        a, b = cast(scene, grid, cull=True), cast(scene, grid, cull=False)
        np.testing.assert_array_equal(a.t, b.t)
        np.testing.assert_array_equal(a.pid, b.pid)


def _near_vehicle_share(traffic: float, frames: int = 24) -> float:
    gen = SceneGenerator((48, 160), seed=11, components=(), scene_options=SceneOptions(traffic=traffic))
    near = 0
    for i in range(frames):
        pr = gen.scene(i).prims
        car = pr.material == VEHICLE
        # a vehicle body within 15 m ahead and within the two lanes beside the camera
        near += bool((car & (pr.lo[:, 2] < 15.0) & (pr.hi[:, 2] > 2.0) & (np.abs(pr.center[:, 0]) < 5.0)).any())
    return near / frames


def test_dense_traffic_puts_vehicles_near_the_camera():
    sparse, dense = _near_vehicle_share(0.0), _near_vehicle_share(1.0)
    # KITTI's drives have a vehicle within 15 m in most frames; the first generator rarely did
    assert dense > 0.6 and dense > sparse + 0.3, (sparse, dense)


HEAVY_KINDS = {"lorry", "truck", "tanker", "bus"}
ADD_VEHICLE = vehicles.add_vehicle  # the original, wrapped afresh by each _kinds call


def _kinds(monkeypatch, frames: int = 16, **options) -> list[str]:
    """The kinds of every vehicle placed in ``frames`` scenes (parked ones too)."""
    placed: list[str] = []

    def record(b, rng, kind, *args, **kwargs):
        placed.append(kind)
        return ADD_VEHICLE(b, rng, kind, *args, **kwargs)

    monkeypatch.setattr(vehicles, "add_vehicle", record)
    gen = SceneGenerator((48, 160), seed=3, components=(), scene_options=SceneOptions(**options))
    for i in range(frames):
        gen.scene(i)
    assert placed, options
    return placed


def _heavy_share(kinds: list[str]) -> float:
    return sum(k in HEAVY_KINDS for k in kinds) / len(kinds)


def test_heavy_scales_the_share_of_lorries_trucks_tankers_and_buses(monkeypatch):
    for traffic in (0.0, 1.0, 2.0):  # sparse, KITTI-like and dense traffic alike
        assert _heavy_share(_kinds(monkeypatch, heavy=0.0, traffic=traffic)) == 0.0
        # highways draw 30% heavy (25% in sparse traffic): four times that is capped at all of them
        assert _heavy_share(_kinds(monkeypatch, heavy=4.0, traffic=traffic, layouts="highway")) == 1.0
    highway = _heavy_share(_kinds(monkeypatch, layouts="highway"))
    assert 0.2 < highway < 0.4, highway  # 0.30 drawn; long vehicles find fewer free gaps
    shares = [_heavy_share(_kinds(monkeypatch, heavy=h)) for h in (1.0, 2.0, 3.0)]
    assert shares[0] < shares[1] < shares[2], shares
    # the default (heavy=1) keeps version 2's frames: their pinned hashes are in test_synthetic.py


def test_layouts_and_structures_options():
    def materials(**options) -> set[int]:
        gen = SceneGenerator((48, 160), seed=2, components=(), scene_options=SceneOptions(**options))
        return {int(m) for i in range(12) for m in gen.scene(i).prims.material}

    assert {CONCRETE, RAIL} <= materials(layouts="highway")  # barriers, bridges, guard rails
    assert not {CONCRETE, RAIL} & materials(layouts="highway", structures=False)
    gen = SceneGenerator((48, 160), seed=2, components=(), scene_options=SceneOptions(layouts="urban"))
    assert {gen.scene(i).layout for i in range(12)} == {"urban"}
    mixed = SceneGenerator((48, 160), seed=2, components=())
    assert {mixed.scene(i).layout for i in range(40)} == {"urban", "highway", "rural"}
    boxes = SceneGenerator((48, 160), seed=2, components=(), scene_options=SceneOptions(vehicles="boxes"))
    assert not any((boxes.scene(i).prims.kind == TUBE).any() for i in range(12))


def _gear(pr) -> np.ndarray:
    return (pr.material == VEHICLE) & (pr.params[:, 5] == GEAR)


def _in_frame(pr, k: int, points: np.ndarray) -> np.ndarray:
    """World (x, z) points in box ``k``'s own frame, as the ray caster turns them (raycast.py)."""
    c, s = pr.yaw[k]
    px, pz = points[:, 0] - pr.center[k, 0], points[:, 1] - pr.center[k, 2]
    return np.stack([c * px - s * pz, s * px + c * pz], 1)


def _corners(pr, k: int) -> np.ndarray:
    """The four world (x, z) corners of box ``k``'s footprint."""
    c, s = pr.yaw[k]
    lx, lz = (np.array([-1, 1, 1, -1]) * pr.half[k, 0], np.array([-1, -1, 1, 1]) * pr.half[k, 2])
    return np.stack([pr.center[k, 0] + c * lx + s * lz, pr.center[k, 2] - s * lx + c * lz], 1)


@pytest.mark.parametrize("road", [{}, {"slopes": 1.0, "bends": 1.0}])
def test_wheeled_vehicles_are_the_shaped_ones_on_tyres(road):
    shaped = SceneGenerator((48, 160), seed=3, components=(), scene_options=SceneOptions(**road))
    wheeled = SceneGenerator((48, 160), seed=3, components=(), scene_options=SceneOptions(vehicles="wheeled", **road))
    tyres = chassis = rear = 0
    for i in range(10):
        a, b = shaped.scene(i).prims, wheeled.scene(i).prims
        gear = _gear(b)
        assert not _gear(a).any()
        for name in ("kind", "center", "half", "yaw", "material", "label", "color", "params", "obj", "lift"):
            # the same primitives (bends move them with float arithmetic over a longer table: to 1e-9)
            np.testing.assert_allclose(getattr(a, name), getattr(b, name)[~gear], rtol=0, atol=1e-9, err_msg=name)
        for k in np.flatnonzero(gear):
            body = np.flatnonzero((b.obj == b.obj[k]) & ~gear & (b.kind == BOX))
            # under a part of its own vehicle, in that part's frame: within its length, and within its
            # width but for a tanker's twin tyres (1.2 m out, its chassis 1.0 m)
            slack = 0.2 + 1e-6 if (b.kind[b.obj == b.obj[k]] == TUBE).any() else 1e-6
            inside = [(np.abs(_in_frame(b, j, _corners(b, k))) <= b.half[j, [0, 2]] + [slack, 1e-6]).all() for j in body]
            assert any(inside), (i, k)
            assert b.lo[k, 1] - b.lift[k] == pytest.approx(0.0 if b.params[k, 2] > 0 else 0.5, abs=1e-6)
            assert b.lift[k] == b.lift[body[0]]  # moved with its vehicle onto a slope
            if b.params[k, 2] > 0:  # a tyre: as tall as its wheel, turned like its vehicle
                tyres += 1
                assert b.hi[k, 1] - b.lo[k, 1] == pytest.approx(2 * b.params[k, 2])
                assert b.params[k, 2] in (np.float32(0.31), np.float32(0.35), np.float32(0.36), np.float32(0.5))
                np.testing.assert_array_equal(b.yaw[k], b.yaw[body[0]])
            else:
                chassis += 1
        # the rear axle of a heavy vehicle is near its striped underrun bar, not at the front of the load
        for o in np.unique(b.obj[(b.params[:, 5] == 1.0) & (b.material == VEHICLE)]):
            bar = np.flatnonzero((b.obj == o) & (b.params[:, 5] == 1.0))[0]
            near = np.hypot(*(b.center[gear & (b.obj == o)][:, [0, 2]] - b.center[bar, [0, 2]]).T).min()
            assert 0.6 < near < 2.0, (i, o, near)
            rear += 1
        per_vehicle = np.bincount(b.obj[gear & (b.params[:, 2] > 0)])
        assert set(per_vehicle[per_vehicle > 0]) <= {4, 6, 12}  # two axles; a lorry three, a trailer six
    assert tyres > 100 and chassis > 0 and rear > 3, (tyres, chassis, rear)


def _albedo(scene, grid, hits) -> np.ndarray:
    """The shader's albedo of every visible pixel, (3, n), in the order of its ``idx``."""
    s = shading._Surface(scene, grid, hits)
    groups = shading._normals(s)
    s.finish_normals()
    shading._ground(s)
    shading._primitives(s, groups)
    return s, s.albedo


def test_tyres_only_add_nearer_surfaces_dark_with_grey_hubs():
    depth = {}
    for style in ("shaped", "wheeled"):
        gen = SceneGenerator((96, 320), seed=1, components=("depth",),
                             scene_options=SceneOptions(traffic=2.0, vehicles=style))
        frames = [gen.frame(i) for i in range(4)]
        depth[style] = np.stack([f.depth for f in frames])
    pid = np.stack([_pid(gen, f) for f in frames])
    gear = np.stack([_gear(f.scene.prims)[np.maximum(p, 0)] & (p >= 0) for f, p in zip(frames, pid)])
    # the same scenes plus running gear: every pixel as near or nearer, exactly the gear's pixels nearer
    nearer = depth["wheeled"] < depth["shaped"]
    assert (depth["wheeled"] <= depth["shaped"]).all()
    assert gear.sum() > 200 and nearer[gear].all() and not nearer[~gear].any()
    hub = rubber = 0
    for f in frames:  # rubber and chassis (0.035-0.05 x 0.9-1.1), hubs 0.3 x 0.9-1.1
        grid = PinholeGrid(f.scene.K, *gen.size, f.scene.camera_rotation, f.scene.camera_origin)
        s, albedo = _albedo(f.scene, grid, cast(f.scene, grid))
        pr = f.scene.prims
        on = _gear(pr)[s.pid] & (s.pid >= 0)
        a = albedo[:, on]
        dark, grey = (a < 0.056).all(0) & (a > 0.031).all(0), (np.abs(a - 0.3) < 0.031).all(0)
        assert (dark | grey).all()
        tyre = pr.params[s.pid[on], 2] > 0
        assert not (grey & ~tyre).any()  # a chassis has no hub
        # a hub is on the outer face: farther from its vehicle's centre line than its tyre's centre
        k = s.pid[on][grey]
        body = np.array([np.flatnonzero((pr.obj == pr.obj[j]) & ~_gear(pr))[0] for j in k])
        out = np.sign(pr.center[k, 0] - pr.center[body, 0])
        assert ((s.p[0][on][grey] - pr.center[k, 0]) * out > 0).all()
        hub, rubber = hub + int(grey.sum()), rubber + int((dark & tyre).sum())
    assert hub > 10 and rubber > hub, (hub, rubber)


def test_domain_randomisation_and_camera_change_colours_not_geometry():
    base = SceneGenerator((48, 160), seed=5, components=("depth",)).frame(3)
    rand = SceneGenerator((48, 160), seed=5, components=("depth",), scene_options=SceneOptions(randomize=1.0)).frame(3)
    np.testing.assert_array_equal(base.depth, rand.depth)
    assert np.abs(base.rgb.astype(int) - rand.rgb.astype(int)).mean() > 10
    scene, camera = generator_options({"camera": "plain"})
    plain = SceneGenerator((48, 160), seed=5, components=("depth",), camera_options=camera).frame(3)
    np.testing.assert_array_equal(base.depth, plain.depth)
    assert not np.array_equal(base.rgb, plain.rgb)


class _OneRay(RayGrid):
    """A single ray from ``origin`` along ``d``: the caster's own hit tests, used as a reference."""

    def __init__(self, origin, d) -> None:
        self.origin = tuple(float(x) for x in origin)
        self.dx, self.dy, self.dz = (np.full((1, 1), c, np.float32) for c in d)


def _hits_reference(pr, k: int, point, L) -> bool:
    """The ray caster's own hit test for primitive ``k``, from ``point`` along ``L``."""
    ray = _OneRay(point, L)
    t = hit_distances(pr, k, ray)
    return bool(np.isfinite(t).any())


def _inside(pr, k: int, p: np.ndarray, margin: float) -> np.ndarray:
    """-1 clearly outside, 1 clearly inside, 0 within ``margin`` of the surface (not judged)."""
    rel = (p - pr.center[k]) / pr.half[k]
    if pr.kind[k] == BOX:
        c, s = pr.yaw[k]
        d = p - pr.center[k]
        rel = np.stack([c * d[:, 0] - s * d[:, 2], d[:, 1], s * d[:, 0] + c * d[:, 2]], 1) / pr.half[k]
        size = np.abs(rel).max(1)
    elif pr.kind[k] == ELLIPSOID:
        size = np.linalg.norm(rel, axis=1)
    else:
        axis = 1 if pr.kind[k] == CYLINDER else 2
        radial = np.delete(rel, axis, 1)
        size = np.maximum(np.linalg.norm(radial, axis=1), np.abs(rel[:, axis]))
    return np.where(size < 1 - margin, 1, np.where(size > 1 + margin, -1, 0))


@pytest.mark.parametrize("L", [(0.3, 0.8, -0.52), (-0.6, 0.5, 0.62), (0.0, 1.0, 0.0), (0.6, 0.8, 0.0), (0.0, 0.6, 0.8)],
                         ids=["oblique", "low", "zenith", "across", "along"])
def test_shadow_rays_meet_each_kind_of_primitive_as_the_ray_caster_does(L):
    """Boxes (turned), upright cylinders, tubes and ellipsoids: the shadow test agrees with the
    camera's hit tests for points outside, and counts points inside as shaded; the sun at the
    zenith or level with an axis takes the parallel branches."""
    from slimdepth.data.synthetic.primitives import FACADE, PrimBuilder, TANK, TRUNK

    b = PrimBuilder()
    b.box(1.0, 2.0, 0.0, 3.0, 1.5, 2.5, FACADE, 0, (0.5, 0.5, 0.5), yaw=0.3)
    b.cylinder(-2.0, 1.0, 0.5, 4.0, 0.6, TRUNK, 0, (0.5, 0.5, 0.5))
    b.tube(0.5, -1.0, 1.5, 1.1, 4.0, TANK, 0, (0.5, 0.5, 0.5))
    b.ellipsoid((-1.0, 2.0, -2.0), (1.2, 0.8, 2.0), VEHICLE, 0, (0.5, 0.5, 0.5))
    pr = b.build()
    L = np.asarray(L) / np.linalg.norm(L)
    rng = np.random.default_rng(1)
    checked = {"shaded": 0, "lit": 0, "inside": 0}
    for k in range(len(pr)):
        p = pr.center[k] + rng.uniform(-1.6, 1.6, (400, 3)) * np.maximum(pr.half[k], 1.0)
        p[: 100, 1] = pr.center[k][1] - rng.uniform(0, 3, 100)  # many below it, in its shadow
        p = p.astype(np.float32)
        o = [(p[:, d] - np.float32(pr.center[k][d])).astype(np.float32) for d in range(3)]
        got = shadows.blocks(pr, k, o, L)
        side = _inside(pr, k, p.astype(np.float64), 1e-3)
        assert got[side == 1].all()
        checked["inside"] += int((side == 1).sum())
        for j in np.flatnonzero(side == -1):
            ref = _hits_reference(pr, k, p[j], L)
            assert got[j] == ref, (k, p[j], L)
            checked["shaded" if ref else "lit"] += 1
    assert checked["shaded"] > 100 and checked["lit"] > 300 and checked["inside"] > 20, checked


def _reference_lit(scene, point, own: int) -> bool:
    """Brute force: does the ray from ``point`` towards the sun miss every other primitive?"""
    L = np.asarray(scene.sun, np.float32)
    return not any(_hits_reference(scene.prims, k, point, L) for k in range(len(scene.prims)) if k != own)


def test_object_shadows_agree_with_a_brute_force_ray_to_the_sun():
    """Every primitive shades every visible point facing the sun: the culled shadow test gives
    the same answer as a ray tested against all primitives, on the ground and on objects."""
    gen = SceneGenerator((48, 160), seed=7, components=("depth",), scene_options=SceneOptions(object_shadows=True))
    counts = {"object shaded": 0, "object lit": 0, "ground shaded": 0}
    rng = np.random.default_rng(0)
    disagree = total = 0
    for i in range(6):
        scene = gen.scene(i)
        grid = PinholeGrid(scene.K, *gen.size, scene.camera_rotation, scene.camera_origin)
        surf = shading._Surface(scene, grid, cast(scene, grid))
        shading._normals(surf)
        surf.finish_normals()
        lit = shadows.sunlit(surf, grid)
        L = np.asarray(scene.sun)
        facing = (surf.n[0] * L[0] + surf.n[1] * L[1] + surf.n[2] * L[2]) > 0
        for j in rng.choice(np.flatnonzero(facing), size=min(120, int(facing.sum())), replace=False):
            point = [float(surf.p[d][j]) for d in range(3)]
            own = int(surf.pid[j])
            ref = _reference_lit(scene, point, own)
            total += 1
            disagree += ref != bool(lit[j])
            kind = "object" if own >= 0 else "ground"
            counts[f"{kind} {'lit' if ref else 'shaded'}"] = counts.get(f"{kind} {'lit' if ref else 'shaded'}", 0) + 1
    assert disagree == 0, (disagree, total, counts)
    assert counts["object shaded"] >= 10 and counts["object lit"] >= 10 and counts["ground shaded"] >= 10, counts


def test_object_shadows_only_darken():
    on = SceneGenerator((48, 160), seed=3, components=("depth",), camera_options=CameraOptions.off(),
                        scene_options=SceneOptions(object_shadows=True))
    off = SceneGenerator((48, 160), seed=3, components=("depth",), camera_options=CameraOptions.off())
    darker = 0
    for i in range(6):
        a, b = on.frame(i), off.frame(i)
        assert (a.rgb.astype(int) <= b.rgb.astype(int) + 1).all()  # shade only takes light away
        darker += int((a.rgb.astype(int).sum(-1) < b.rgb.astype(int).sum(-1) - 6).sum())
    assert darker > 100


def test_above_road_split_matches_the_synthetic_labels():
    """The label-free split of the sim-to-real benchmark (nearer than 0.8 x the flat road's depth
    at the pixel = standing above the road) against the generator's exact labels."""
    from slimdepth.data.synthetic import CLASS_NAMES
    from slimdepth.report.sim_to_real import above_road

    gen = SceneGenerator((96, 320), seed=5, components=("depth", "seg"))
    ids = {name: i for i, name in enumerate(CLASS_NAMES)}
    agree = {"road": [], "car": [], "building": []}
    for i in range(6):
        f = gen.frame(i)
        above = above_road(torch.from_numpy(f.depth)[None], f.K)[0].numpy()
        near = (f.depth > 0) & (f.depth < 40)
        for name in agree:
            sel = near & (f.seg == ids[name])
            agree[name].append(above[sel] if name != "road" else ~above[sel])
    share = {name: float(np.concatenate(v).mean()) for name, v in agree.items()}
    assert share["road"] > 0.98 and share["car"] > 0.88 and share["building"] > 0.88, share  # 0.993, 0.932, 0.922


SPEC_VALUES = {
    "traffic": st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=2.0001), st.just("lots"), st.booleans()),
    "heavy": st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=4.0001), st.just(float("nan")),
                       st.sampled_from(["trucks", "many"]), st.booleans()),
    "randomize": st.one_of(st.floats(min_value=1.0001), st.floats(max_value=-1e-6), st.just("yes")),
    "vehicles": st.sampled_from(["cars", "box", "1", "wheels", "Wheeled"]),
    "layouts": st.sampled_from(["city", "motorway", "urban+highway"]),
    "camera": st.sampled_from(["raw", "canon", "1"]),
    "jpeg": st.one_of(st.floats(min_value=4.0001), st.floats(max_value=-1e-6), st.just("high")),
    "structures": st.sampled_from([2, 0.5, "many"]),
    "object_shadows": st.sampled_from([2, 0.5, "some", "sunny"]),
    "slopes": st.one_of(st.floats(min_value=1.0001), st.floats(max_value=-1e-6), st.just(float("nan")),
                        st.sampled_from(["hilly", "yes"])),
    "bends": st.one_of(st.floats(min_value=1.0001), st.floats(max_value=-1e-6), st.just(float("inf")),
                       st.sampled_from(["curvy", "left"])),
    "road_wear": st.one_of(st.floats(min_value=1.0001), st.floats(max_value=-1e-6), st.just(float("nan")),
                           st.sampled_from(["worn", "old"]), st.booleans()),
    "vehicle_detail": st.one_of(st.floats(min_value=1.0001), st.floats(max_value=-1e-6), st.just(float("nan")),
                                st.sampled_from(["lots", "dirty"]), st.booleans()),
}


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(sorted(SPEC_VALUES)).flatmap(lambda k: st.tuples(st.just(k), SPEC_VALUES[k])))
@example(("heavy", 4.5))
@example(("heavy", -0.5))
@example(("heavy", True))
def test_bad_scene_and_camera_options_are_one_line_config_errors(item):
    key, value = item
    with pytest.raises(ConfigError) as err:
        build_dataset({"name": "synthetic", "num": 1, "size": "32x96", key: value})
    assert "\n" not in str(err.value) and (key in str(err.value) or "camera" in str(err.value))


def test_writer_records_the_options_and_refuses_to_mix_them(tmp_path):
    out = tmp_path / "synth"
    write_synthetic(out, num=2, size=(32, 96), components=("depth",), options={"traffic": 0.5, "jpeg": 0.0})
    meta = json.loads((out / "meta.json").read_text())
    assert meta["scene"]["traffic"] == 0.5 and meta["camera"]["jpeg"] == 0.0 and meta["version"] == 2
    with pytest.raises(DataError, match="other settings"):
        write_synthetic(out, num=2, size=(32, 96), components=("depth",), options={"traffic": 1.0})
    assert write_synthetic(out, num=3, size=(32, 96), components=("depth",),
                           options={"traffic": 0.5, "jpeg": 0.0})["kept"] == 2
    # a dataset written before an option existed resumes when the option keeps its default
    older = tmp_path / "older"
    write_synthetic(older, num=2, size=(32, 96), components=("depth",))
    meta = json.loads((older / "meta.json").read_text())
    del meta["scene"]["object_shadows"], meta["scene"]["heavy"]
    (older / "meta.json").write_text(json.dumps(meta))
    assert write_synthetic(older, num=3, size=(32, 96), components=("depth",))["kept"] == 2
    with pytest.raises(DataError, match="'object_shadows': False.*'object_shadows': True"):
        write_synthetic(older, num=4, size=(32, 96), components=("depth",), options={"object_shadows": True})
    with pytest.raises(DataError, match=r"'heavy': 1\.0.*'heavy': 2\.0"):
        write_synthetic(older, num=4, size=(32, 96), components=("depth",), options={"heavy": 2.0})
    trucks = tmp_path / "trucks"
    write_synthetic(trucks, num=1, size=(32, 96), components=("depth",), options={"heavy": 2.5})
    assert json.loads((trucks / "meta.json").read_text())["scene"]["heavy"] == 2.5


@pytest.mark.parametrize("option, fragment", [("trafic=1", "did you mean 'traffic'"), ("traffic", "KEY=VALUE"),
                                              ("noise=nan", "noise"), ("layouts=moon", "layouts")])
def test_data_synth_options_fail_in_one_line(monkeypatch, capsys, tmp_path, option, fragment):
    code, _, err = run_cli(monkeypatch, capsys, "data", "synth", "--out", str(tmp_path / "x"), "--num", "1",
                           "--size", "32x96", "--option", option)
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "x").exists()


def _study():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "sim_to_real_study.py"
    return load_script(path, "sim_to_real_study"), path


def test_every_study_variant_is_a_valid_spec_and_changes_the_frames():
    study, _ = _study()
    spec = "synthetic,num=10,size=32x96,lidar=false,seg=false"
    base = build_dataset(spec)
    for name, (options, _) in study.VARIANTS.items():
        variant = build_dataset(f"{spec}{',' if options else ''}{options}")
        same = all(bool((variant[i]["image"] == base[i]["image"]).all()) for i in range(10))
        assert (name == "all") == same, name


@pytest.mark.parametrize("args, fragment", [(["--variants", "all,fog"], "fog"),
                                            (["--real", "/nonexistent/kitti"], "not a directory"),
                                            (["--control", "synthetic,num=2,size=32x106,split=train"], "test split"),
                                            (["--control", "synthetic,num=2,size=48x64"], "not KITTI frames")])
def test_study_script_rejects_bad_input_in_one_line_before_training(tmp_path, monkeypatch, capfd, args, fragment):
    import subprocess
    import sys

    _, path = _study()
    if args[0] == "--variants":  # one case in a new interpreter, as a user runs it (2 s), the rest in this one
        proc = subprocess.run([sys.executable, str(path), *args, "--out", str(tmp_path / "s")],
                              capture_output=True, text=True, timeout=60)
        code, err = proc.returncode, proc.stderr
    else:
        code, _, err = run_script_main(monkeypatch, capfd, path, *args, "--out", str(tmp_path / "s"))
    assert code == 1 and err.strip().count("\n") == 0 and fragment in err
    assert not (tmp_path / "s").exists()


def test_lidar_skips_only_beams_that_cannot_reach_the_image():
    from slimdepth.data.synthetic import lidar
    from slimdepth.geometry import points_to_depth_map

    def project(scene, pts):
        r, K = scene.camera_rotation, scene.K
        rel = pts - np.asarray(scene.camera_origin)
        x, y, z = (rel[:, 0] * r[0][i] + rel[:, 1] * r[1][i] + rel[:, 2] * r[2][i] for i in range(3))
        return points_to_depth_map(K[0, 0] * x / z + K[0, 2], K[1, 1] * y / z + K[1, 2], z, scene.height, scene.width)

    for size in ((96, 320), (375, 1242)):
        gen = SceneGenerator(size, seed=3, components=())
        assert 40 < len(lidar.beams_for(gen.scene(0))) < 64
        for i in range(4):
            scene = gen.scene(i)
            np.testing.assert_array_equal(project(scene, lidar.scan(scene)), project(scene, lidar.scan(scene, all_beams=True)))


def test_a_range_limit_changes_no_hit_within_the_range():
    from slimdepth.data.synthetic import lidar
    from slimdepth.data.synthetic.raycast import SphericalGrid

    gen = SceneGenerator((96, 320), seed=3, components=())
    for i in range(6):
        scene = gen.scene(i)
        grid = SphericalGrid(lidar.beams_for(scene), lidar.azimuths_for(scene), scene.rig_rotation, scene.lidar_origin())
        near, full = cast(scene, grid, max_t=40.0), cast(scene, grid)
        inside = full.t <= 40.0
        np.testing.assert_array_equal(near.t[inside], full.t[inside])
        np.testing.assert_array_equal(near.pid[inside], full.pid[inside])
        assert not (near.t[~inside] <= 40.0).any()


def test_camera_choices_from_a_spec_string():
    # a spec string reads "off" as the boolean false: it still means every effect off
    off = build_dataset("synthetic,num=1,size=32x96,camera=off").generator.camera_options
    assert off.plain is False and all(getattr(off, e) == 0.0 for e in ("jpeg", "noise", "bloom", "exposure"))
    assert build_dataset("synthetic,num=1,size=32x96,camera=plain").generator.camera_options.plain
    for spec in ("camera=plain,jpeg=3", "camera=off,noise=0.5"):  # strengths are refused, not dropped
        with pytest.raises(ConfigError, match="takes no effect strengths"):
            build_dataset(f"synthetic,num=1,size=32x96,{spec}")


def test_the_dataset_spec_takes_every_generator_option():
    """A scene or camera option the generator has but the spec does not take is unreachable from
    recipes (``road_wear`` was, for a while)."""
    import inspect

    from slimdepth.data.synthetic.generator import CAMERA_KEYS, SCENE_KEYS, SyntheticDataset

    params = inspect.signature(SyntheticDataset).parameters
    assert set(SCENE_KEYS) | set(CAMERA_KEYS) <= set(params)
    worn = build_dataset("synthetic,num=1,size=32x96,road_wear=1")
    assert worn.generator.scene_options.road_wear == 1.0
