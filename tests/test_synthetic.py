"""The synthetic street-scene generator: exact ground truth, sensors, determinism, I/O."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from slimdepth.data.folder import FolderDataset
from slimdepth.data.registry import build_dataset
from slimdepth.data.sample import check_sample
from slimdepth.data.synthetic import CLASS_NAMES, SceneGenerator, SyntheticDataset, write_synthetic
from slimdepth.data.synthetic.raycast import PinholeGrid, cast, sin_cos
from slimdepth.data.synthetic.scene import PID_SKY, SceneOptions
from slimdepth.errors import ConfigError, DataError
from slimdepth.geometry import kitti_like_intrinsics

ROAD, SIDEWALK, SKY = CLASS_NAMES.index("road"), CLASS_NAMES.index("sidewalk"), CLASS_NAMES.index("sky")


@pytest.fixture(scope="module")
def frames():
    gen = SceneGenerator((96, 320), seed=3)
    return [gen.frame(i) for i in range(6)]


def _rays_world(frame, height, width):
    """Independent float64 pixel rays: d = R K^-1 [u, v, 1]."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    pix = np.stack([u, v, np.ones_like(u)], -1)
    cam = pix @ np.linalg.inv(frame.K).T
    return cam @ frame.camera_rotation.T


def test_road_depth_is_the_exact_ray_plane_distance(frames):
    checked = 0
    for f in frames:
        h, w = f.depth.shape
        d = _rays_world(f, h, w)
        road = f.seg == ROAD
        # the road is the plane y = 0; the ray o + t d meets it at t = -o_y / d_y, and t is the
        # camera z depth because the camera-frame ray has z = 1
        t = -f.camera_origin[1] / d[..., 1]
        np.testing.assert_allclose(f.depth[road], t[road], rtol=2e-5)
        checked += road.sum()
        # every sidewalk pixel sees either the raised walkway (the plane y = curb height) or a
        # curb face (x = road edge, 0 <= y <= curb height)
        walk = f.seg == SIDEWALK
        p = f.camera_origin + f.depth[walk][:, None] * d[walk]
        curb_h = f.scene.curb_height
        on_top = np.abs(p[:, 1] - curb_h) < 1e-3 * f.depth[walk]
        edge_dist = np.minimum(np.abs(p[:, 0] - f.scene.road_left), np.abs(p[:, 0] - f.scene.road_right))
        on_face = (edge_dist < 1e-3 * f.depth[walk]) & (p[:, 1] > -1e-3) & (p[:, 1] < curb_h + 1e-3)
        assert (on_top | on_face).all()
        assert on_face.any() or on_top.all()
    assert checked > 10000


def test_depth_is_valid_exactly_off_the_sky(frames):
    for f in frames:
        assert f.depth.dtype == np.float32 and not np.isnan(f.depth).any()
        np.testing.assert_array_equal(f.depth > 0, f.seg != SKY)
        assert f.depth.max() < 256.0  # fits KITTI's PNG encoding


def test_labels_cover_the_scene_classes(frames):
    seen = set()
    for f in frames:
        values = set(np.unique(f.seg).tolist())
        assert values <= set(range(len(CLASS_NAMES))) | {255}
        seen |= values
    for name in ("road", "sidewalk", "building", "vegetation", "pole", "car", "sky"):
        assert CLASS_NAMES.index(name) in seen, name
    # sky is at the top of the image, road at the bottom centre
    f = frames[0]
    assert (f.seg[0] == SKY).mean() > 0.0 or (f.seg[0] != ROAD).all()
    assert (f.seg[-1, f.seg.shape[1] // 2 - 5 : f.seg.shape[1] // 2 + 5] == ROAD).all()


def test_lidar_agrees_with_dense_depth(frames):
    agree = total = 0
    for f in frames:
        ys, xs = np.nonzero(f.lidar)
        pad = np.pad(f.depth, 1, mode="edge")
        win = np.stack([pad[ys + dy, xs + dx] for dy in range(3) for dx in range(3)])
        lo, hi = win.min(0), win.max(0)
        z = f.lidar[ys, xs]
        # a return lands within half a pixel of the pixel centre, so on a surface seen by the
        # camera its depth lies within the depths of the neighbouring pixel centres
        ok = (z >= lo * (1 - 1e-4)) & (z <= hi * (1 + 1e-4))
        agree += ok.sum()
        total += len(z)
    # the rest are returns the camera cannot see: the scanner sits 0.27 m behind the camera
    # and looks around object edges, exactly as KITTI's projected Velodyne does
    assert total > 6 * 2000
    assert agree / total > 0.97


def test_lidar_density_and_layout_match_kitti_at_kitti_resolution():
    gen = SceneGenerator((375, 1242), seed=0, components=("lidar",))
    counts, lower = [], []
    for i in range(2):
        lidar = gen.frame(i).lidar
        rows = np.nonzero(lidar)[0]
        counts.append(rows.size)
        lower.append((rows > 187).mean())
    # real KITTI sweeps put 15k-17k points in the image, ~75% of them in its lower half
    assert all(14000 < c < 20000 for c in counts), counts
    assert all(0.65 < f < 0.85 for f in lower), lower


def test_lidar_returns_lie_on_the_64_beams_of_a_kitti_mounted_scanner():
    """Back-project every return and measure its elevation from where KITTI's Velodyne sits
    (0.08 m above and 0.27 m behind the camera, i.e. 1.73 m above the road): each must fall on
    one of the HDL-64E's 64 beams (+2 deg ... -24.9 deg)."""
    beams = np.concatenate([np.linspace(2.0, -8.33, 32), np.linspace(-8.83, -24.9, 32)])
    gen = SceneGenerator((375, 1242), seed=0, components=("lidar",))
    f = gen.frame(0)
    v, u = np.nonzero(f.lidar)
    z = f.lidar[v, u].astype(np.float64)
    K = f.K
    x, y = (u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z  # camera frame, y down
    dx, dy, dz = x, -(y + 0.08), z + 0.27                              # from the scanner, y up
    elevation = np.degrees(np.arctan2(dy, np.hypot(dx, dz)))
    nearest = np.abs(elevation[:, None] - beams[None, :])
    error, beam = nearest.min(1), nearest.argmin(1)
    # pixel rounding of the projection moves a return by at most ~0.06 deg at this resolution
    assert np.quantile(error, 0.99) < 0.06, np.quantile(error, [0.5, 0.99])
    assert elevation.max() < 2.0 + 0.1 and elevation.min() > -24.9 - 0.1
    # every beam inside the camera's vertical field of view returns; the lowest ones pass under the image
    bottom = -np.degrees(np.arctan((375 - K[1, 2]) / K[1, 1]))
    seen = np.bincount(beam[error < 0.06], minlength=64) > 0
    assert seen[beams > bottom + 1.0].all() and not seen[beams < bottom - 1.0].any()


def test_right_view_is_a_rectified_stereo_partner(frames):
    f = frames[1]
    h, w = f.depth.shape
    scene = f.scene
    grid = PinholeGrid(scene.K, h, w, scene.camera_rotation, scene.right_camera_origin())
    hits = cast(scene, grid)
    right_depth = np.where(hits.pid != PID_SKY, hits.t, 0)
    fx = scene.K[0, 0]
    ys, xs = np.nonzero(f.seg == ROAD)
    disparity = fx * 0.54 / f.depth[ys, xs]  # KITTI's colour baseline, written out: not read from the code
    xr = np.round(xs - disparity).astype(int)
    inside = xr >= 0
    z_right = right_depth[ys[inside], xr[inside]]
    # the same road point is seen by the right camera on the same row, disparity = f B / z
    rel = np.abs(z_right - f.depth[ys[inside], xs[inside]]) / f.depth[ys[inside], xs[inside]]
    assert np.median(rel) < 0.01
    assert not np.array_equal(f.rgb, f.right)
    # a stereo matcher's view: the right image resembles the left one shifted by the disparity
    left_row, right_row = f.rgb[h - 5].astype(float), f.right[h - 5].astype(float)
    shift = int(round(np.median(disparity[ys == h - 5])))
    err_shifted = np.abs(left_row[shift:] - right_row[: w - shift]).mean()
    err_same = np.abs(left_row - right_row).mean()
    assert err_shifted < err_same


def test_frames_are_deterministic_and_distinct():
    a = SceneGenerator((48, 160), seed=0).frame(0)
    b = SceneGenerator((48, 160), seed=0, threaded=False).frame(0)
    c = SceneGenerator((48, 160), seed=0).frame(1)
    d = SceneGenerator((48, 160), seed=1).frame(0)
    e = SceneGenerator((48, 160), seed=0, split="val").frame(0)
    for key in ("rgb", "depth", "seg", "lidar", "right"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    for other in (c, d, e):
        assert not np.array_equal(a.depth, other.depth)
    # The generator uses only IEEE basic operations and NumPy's PCG64 stream, so this frame
    # has the same bits on every machine; a change here means a change of the generator
    # (bump GENERATOR_VERSION and update the hash).
    def digest(frame) -> str:
        h = hashlib.sha256()
        for key in ("rgb", "depth", "seg", "lidar", "right"):
            h.update(getattr(frame, key).tobytes())
        return h.hexdigest()

    assert digest(a) == "700b6e75379e73798d0510eb57e3a32ec34f5e3d1727f3e486779a39f5449d11"
    shadows = SceneGenerator((48, 160), seed=0, scene_options=SceneOptions(object_shadows=True)).frame(0)
    assert digest(shadows) == "039e16b6dc05a1ff14a7d42b4d1fb18cdd648efac2aa2fc4f2365ac2de2eb661"
    # hills and bends are placed without libm too (repeated products and square roots)
    shaped = SceneGenerator((48, 160), seed=0, scene_options=SceneOptions(slopes=1.0, bends=1.0)).frame(0)
    assert not shaped.scene.slope.flat and not shaped.scene.bend.straight
    assert digest(shaped) == "aef8230d1cad0f02d3698bfb7362b5c124ba74a4df1781a2b2a20b056fba74ef"
    # sparse traffic on a highway, a lorry among its vehicles (pinned before the heavy option existed:
    # heavy=1, the default, draws the same kinds)
    sparse = SceneGenerator((48, 160), seed=0, scene_options=SceneOptions(traffic=0.0, layouts="highway")).frame(0)
    assert digest(sparse) == "7ed77ff0a959e99b6791496e3942a72b3ce0f754c4ee719b12e5cfdfc5e9540c"



@pytest.mark.parametrize(("seed", "options", "index", "pinned"), [
    (12, dict(traffic=2.0, slopes=0.5, bends=0.5), 3, "34bf20a0c242b6de9d051953bb6595697dae12ca667fb6e152a22e7f835bb144"),
    (13, dict(object_shadows=True, randomize=0.5), 2, "f0f803d25281044678462a29c208521a2166a9af747006a018a4e1f6151bd40f"),
    (14, dict(layouts="highway", road_wear=1.0), 5, "b92ef9a58e0f0a4bc9384e8d4d1041f1962d8bed10d75c1e196989522d8fe46c"),
], ids=["dense-hills-bends", "object-shadows-randomized", "worn-highway"])
def test_compiled_renderer_gives_the_numpy_renderers_bits(seed, options, index, pinned):
    """Hashes printed by the NumPy renderer (commit df6aa7f) before its hot loops were compiled
    with numba: dense traffic on hills and bends, shadows onto objects with randomised colours,
    a worn highway; every component, both views."""
    f = SceneGenerator((64, 208), seed=seed, scene_options=SceneOptions(**options)).frame(index)
    h = hashlib.sha256()
    for key in ("rgb", "depth", "seg", "lidar", "right"):
        h.update(getattr(f, key).tobytes())
    assert h.hexdigest() == pinned


def test_components_are_optional_and_do_not_change_the_scene():
    full = SceneGenerator((48, 160), seed=2).frame(4)
    slim = SceneGenerator((48, 160), seed=2, components=("depth",)).frame(4)
    assert slim.seg is None and slim.lidar is None and slim.right is None
    np.testing.assert_array_equal(full.rgb, slim.rgb)
    np.testing.assert_array_equal(full.depth, slim.depth)


def test_intrinsics_follow_kitti():
    f = SceneGenerator((375, 1242), seed=0, components=()).frame(0)
    np.testing.assert_allclose(f.K, [[721.5377, 0, 609.5593], [0, 721.5377, 172.854], [0, 0, 1]], atol=1e-9)
    np.testing.assert_allclose(kitti_like_intrinsics(192, 640)[0, 0], 0.58095 * 640, rtol=1e-4)


def test_camera_pose_is_kitti_like(frames):
    heights = [f.camera_origin[1] for f in frames]
    assert all(1.58 < h < 1.72 for h in heights)
    for f in frames:
        r = f.camera_rotation
        np.testing.assert_allclose(r.T @ r, np.eye(3), atol=1e-12)
        # optical axis close to the road direction: pitch/yaw within a few degrees
        assert r[2, 2] > np.cos(np.radians(4))


def test_deterministic_sine_cosine_match_libm():
    x = np.linspace(-1.6, 1.6, 1001)
    s, c = sin_cos(x)
    np.testing.assert_allclose(s, np.sin(x), atol=1e-15)
    np.testing.assert_allclose(c, np.cos(x), atol=1e-15)


def test_dataset_returns_contract_samples():
    ds = build_dataset("synthetic,num=3,size=64x192,seed=5,right=true")
    assert isinstance(ds, SyntheticDataset) and len(ds) == 3
    s = ds[2]
    check_sample(s)
    assert set(s) == {"image", "depth", "seg", "K", "meta", "lidar_depth", "right_image"}
    assert s["image"].shape == (3, 64, 192) and s["meta"]["name"] == "000002"
    assert ds.names() == ["000000", "000001", "000002"]
    sparse = build_dataset("synthetic,num=3,size=64x192,seed=5,depth=lidar,lidar=false")[2]
    assert "lidar_depth" not in sparse
    np.testing.assert_array_equal(sparse["depth"].numpy(), s["lidar_depth"].numpy())
    assert (sparse["depth"] > 0).sum() < (s["depth"] > 0).sum()


def test_no_primitive_contains_a_sensor():
    gen = SceneGenerator((48, 160), seed=0, components=())
    for i in range(200):
        scene = gen.scene(i)
        pr = scene.prims
        for origin in (scene.camera_origin, scene.right_camera_origin(), scene.lidar_origin()):
            o = np.asarray(origin)
            inside = ((pr.lo - 0.05 <= o) & (o <= pr.hi + 0.05)).all(axis=1)
            assert not inside.any(), (i, np.flatnonzero(inside))


@pytest.mark.parametrize(
    "spec",
    ["synthetic,size=0x10", "synthetic,split=holdout", "synthetic,depth=stereo", "synthetic,num=0", "synthetic:/tmp/x"],
)
def test_bad_options_are_config_errors(spec):
    with pytest.raises(ConfigError):
        build_dataset(spec)


def test_written_dataset_reads_back_through_the_folder_reader(tmp_path):
    out = tmp_path / "synth"
    summary = write_synthetic(out, num=3, size=(48, 160), seed=7)
    assert summary["written"] == 3 and summary["kept"] == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["depth_encoding"] == "kitti" and meta["num"] == 3 and meta["classes"] == list(CLASS_NAMES)
    ds = FolderDataset(out)
    gen = SceneGenerator((48, 160), seed=7)
    for i in range(3):
        s, f = ds[i], gen.frame(i)
        np.testing.assert_array_equal((s["image"].numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8), f.rgb)
        np.testing.assert_allclose(s["depth"][0].numpy(), f.depth, atol=0.5 / 256 + 1e-6)
        np.testing.assert_allclose(s["lidar_depth"][0].numpy(), f.lidar, atol=0.5 / 256 + 1e-6)
        np.testing.assert_array_equal(s["seg"].numpy(), f.seg)
        np.testing.assert_allclose(s["K"].numpy(), f.K, rtol=1e-6)
        assert s["right_image"].shape == s["image"].shape
    # a label that is no class of meta.json (nor 255) is an error naming the file
    from slimdepth.fileio import write_seg

    seg = gen.frame(1).seg.copy()
    seg[0, 0] = 77
    write_seg(out / "seg" / "000001.png", seg)
    with pytest.raises(DataError, match="000001.png: label 77 is neither one of the 8 classes"):
        ds[1]


def test_writer_resumes_and_refuses_foreign_directories(tmp_path):
    out = tmp_path / "synth"
    write_synthetic(out, num=2, size=(32, 96), seed=1, components=("depth",))
    first = (out / "rgb" / "000000.png").stat().st_mtime_ns
    (out / "K" / "000001.txt").unlink()  # an interrupted frame
    summary = write_synthetic(out, num=3, size=(32, 96), seed=1, components=("depth",))
    assert (summary["kept"], summary["written"]) == (1, 2)
    assert (out / "rgb" / "000000.png").stat().st_mtime_ns == first
    with pytest.raises(DataError, match="other settings"):
        write_synthetic(out, num=3, size=(32, 96), seed=2, components=("depth",))
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(DataError, match="not empty"):
        write_synthetic(foreign, num=1, size=(32, 96))
    assert (foreign / "holiday.jpg").read_bytes() == b"precious"
    assert sorted(p.name for p in foreign.iterdir()) == ["holiday.jpg"]


def test_parallel_writer_matches_serial(tmp_path):
    write_synthetic(tmp_path / "a", num=3, size=(32, 96), seed=4, components=("depth",), workers=1)
    write_synthetic(tmp_path / "b", num=3, size=(32, 96), seed=4, components=("depth",), workers=2)
    for sub in ("rgb", "depth"):
        for i in range(3):
            name = f"{i:06d}.png"
            assert (tmp_path / "a" / sub / name).read_bytes() == (tmp_path / "b" / sub / name).read_bytes()


def test_dataloader_workers_render_the_same_frames():
    from torch.utils.data import DataLoader

    from slimdepth.data.sample import collate_samples

    ds = SyntheticDataset(num=4, size=(32, 96), seed=9, right=True)
    batches = list(DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate_samples))
    assert [m["name"] for b in batches for m in b["meta"]] == ["000000", "000001", "000002", "000003"]
    assert batches[0]["image"].shape == (2, 3, 32, 96) and batches[1]["right_image"].shape == (2, 3, 32, 96)
    np.testing.assert_array_equal(batches[1]["depth"][1].numpy(), ds[3]["depth"].numpy())


def _overlap(pr, i: int, j: int, tol: float = 0.01) -> bool:
    """Do primitives i and j intersect? Boxes as their footprint rectangles (vehicles are yawed by
    at most ~2 degrees: their rectangles are inflated a little), crowns as ellipsoids' circles."""
    from slimdepth.data.synthetic.scene import ELLIPSOID

    if pr.hi[i, 1] <= pr.lo[j, 1] + tol or pr.hi[j, 1] <= pr.lo[i, 1] + tol:
        return False
    ell = [k for k in (i, j) if pr.kind[k] == ELLIPSOID]
    if len(ell) == 1:
        e, o = ell[0], j if ell[0] == i else i
        cx, cz, r = pr.center[e, 0], pr.center[e, 2], pr.half[e, 0]
        dx = max(pr.lo[o, 0] - cx, 0.0, cx - pr.hi[o, 0])
        dz = max(pr.lo[o, 2] - cz, 0.0, cz - pr.hi[o, 2])
        return dx * dx + dz * dz < (r - tol) ** 2
    return bool((pr.hi[i, [0, 2]] > pr.lo[j, [0, 2]] + tol).all() and (pr.hi[j, [0, 2]] > pr.lo[i, [0, 2]] + tol).all())


@pytest.mark.parametrize("vehicles, frames", [("shaped", 60), ("wheeled", 30)])
def test_objects_never_interpenetrate(vehicles, frames):
    from slimdepth.data.synthetic.scene import SceneOptions

    gen = SceneGenerator((48, 160), seed=0, components=(), scene_options=SceneOptions(vehicles=vehicles))
    for index in range(frames):
        pr = gen.scene(index).prims
        for i in range(len(pr)):
            for j in range(i + 1, len(pr)):
                if pr.obj[i] != pr.obj[j] and _overlap(pr, i, j):
                    raise AssertionError(f"frame {index}: primitives {i} and {j} (materials "
                                         f"{pr.material[i]}, {pr.material[j]}) overlap")


def test_street_furniture_stands_on_the_sidewalks():
    from slimdepth.data.synthetic.scene import POLE_METAL, TRUNK

    gen = SceneGenerator((48, 160), seed=0, components=())
    for index in range(100):
        scene = gen.scene(index)
        pr = scene.prims
        posts = np.isin(pr.material, (POLE_METAL, TRUNK))
        x = pr.center[posts, 0]
        # between the curbs is the road: no pole, sign or tree trunk may stand there
        assert not ((x > scene.road_left) & (x < scene.road_right)).any(), index
