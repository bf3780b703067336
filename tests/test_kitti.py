"""KITTI raw reader: calibration, Velodyne projection (devkit convention), splits and errors."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest

from slimdepth.data.kitti import KittiDataset, load_velodyne, project_velodyne, read_kitti_calib
from slimdepth.data.registry import build_dataset
from slimdepth.errors import ConfigError, DataError
from slimdepth.fileio import write_depth, write_rgb

# --- a tiny fake KITTI tree ---------------------------------------------------------------
# Camera: 100x80, f = 100, principal point (50, 40). Velodyne (x fwd, y left, z up) maps to the
# camera (x right, y down, z fwd) with a 1 m forward offset, so camera z = velodyne x + 1:
# the depth must be the projected z, not velodyne x.
DATE, DRIVE = "2011_01_01", "2011_01_01_drive_0001_sync"
FOLDER = f"{DATE}/{DRIVE}"
H, W = 80, 100
CAM_TO_CAM = """calib_time: 09-Jan-2012 13:57:47
S_rect_00: 1.000000e+02 8.000000e+01
R_rect_00: 1 0 0 0 1 0 0 0 1
P_rect_00: 100 0 50 0 0 100 40 0 0 0 1 0
S_rect_02: 1.000000e+02 8.000000e+01
P_rect_02: 1.000000e+02 0 5.000000e+01 0 0 1.000000e+02 4.000000e+01 0 0 0 1 0
S_rect_03: 100 80
P_rect_03: 100 0 50 -100 0 100 40 0 0 0 1 0
"""
VELO_TO_CAM = """calib_time: 15-Mar-2012 11:37:16
R: 0 -1 0 0 0 -1 1 0 0
T: 0 0 1
"""
POINTS = np.array(
    [
        [9.0, 0.0, 0.0, 0.5],  # cam (0, 0, 10): u=50, v=40 -> row 39, col 49, depth 10
        [19.0, 0.0, 0.0, 0.5],  # same pixel, depth 20: the nearer point wins
        [4.0, -1.0, 0.5, 0.5],  # cam (1, -0.5, 5): u=70, v=30 -> row 29, col 69, depth 5
        [-0.5, 0.0, 0.0, 0.5],  # velodyne x < 0: dropped (else depth 0.5 at row 39, col 49)
        [1.0, 5.0, 0.0, 0.5],  # cam (-5, 0, 2): u=-200, outside
        [9.0, -0.25, 0.0, 0.5],  # u=52.5 rounds half to even -> 52 -> col 51, depth 10
    ],
    dtype=np.float32,
)
EXPECTED_LEFT = {(39, 49): 10.0, (29, 69): 5.0, (39, 51): 10.0}
# Right camera: u shifted by -100/z, so the far point no longer hides behind the near one.
EXPECTED_RIGHT = {(39, 39): 10.0, (39, 44): 20.0, (29, 49): 5.0, (39, 41): 10.0}


def write_kitti_tree(root: Path, frames=(0, 1, 2), jpg_frames=(2,)) -> Path:
    date = root / DATE
    date.mkdir(parents=True)
    (date / "calib_cam_to_cam.txt").write_text(CAM_TO_CAM)
    (date / "calib_velo_to_cam.txt").write_text(VELO_TO_CAM)
    rng = np.random.default_rng(0)
    for cam in (2, 3):
        for frame in frames:
            suffix = ".jpg" if frame in jpg_frames else ".png"
            write_rgb(date / DRIVE / f"image_0{cam}" / "data" / f"{frame:010d}{suffix}", rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    velo = date / DRIVE / "velodyne_points" / "data"
    velo.mkdir(parents=True)
    for frame in frames:
        POINTS.tofile(velo / f"{frame:010d}.bin")
    return root


def as_dict(depth: np.ndarray) -> dict[tuple[int, int], float]:
    rows, cols = np.nonzero(depth)
    return {(int(r), int(c)): float(depth[r, c]) for r, c in zip(rows, cols, strict=True)}


@pytest.fixture
def kitti_root(tmp_path: Path) -> Path:
    return write_kitti_tree(tmp_path / "raw")


def test_read_calib(kitti_root: Path) -> None:
    calib = read_kitti_calib(kitti_root / DATE)
    np.testing.assert_array_equal(calib.K(2), [[100, 0, 50], [0, 100, 40], [0, 0, 1]])
    assert calib.image_size[2] == (H, W)
    np.testing.assert_array_equal(calib.velo_to_cam[:3, 3], [0, 0, 1])
    np.testing.assert_array_equal(calib.velo_to_image(2) @ [9.0, 0, 0, 1], [500, 400, 10])


def test_projection_known_answer(kitti_root: Path) -> None:
    velo = kitti_root / FOLDER / "velodyne_points" / "data" / "0000000000.bin"
    assert load_velodyne(velo).shape == (6, 4)
    left = project_velodyne(velo, kitti_root / DATE, cam=2)
    assert left.shape == (H, W) and left.dtype == np.float32
    assert as_dict(left) == EXPECTED_LEFT
    right = project_velodyne(velo, read_kitti_calib(kitti_root / DATE), cam=3, image_shape=(H, W))
    assert as_dict(right) == EXPECTED_RIGHT


def test_dataset_velodyne_split(kitti_root: Path, tmp_path: Path) -> None:
    split = tmp_path / "split.txt"
    split.write_text(f"{FOLDER} 0000000000 l\n\n{FOLDER} 1 r\n{FOLDER} 0000000002 l\n")
    ds = build_dataset(f"kitti:{kitti_root},split={split}")
    assert isinstance(ds, KittiDataset) and ds.eval_preset == "kitti"
    assert ds.names() == [f"{DRIVE}_0000000000_l", f"{DRIVE}_0000000001_r", f"{DRIVE}_0000000002_l"]
    left, right, jpg = ds[0], ds[1], ds[2]
    assert as_dict(left["depth"][0].numpy()) == EXPECTED_LEFT
    assert as_dict(right["depth"][0].numpy()) == EXPECTED_RIGHT
    np.testing.assert_array_equal(right["K"].numpy(), [[100, 0, 50], [0, 100, 40], [0, 0, 1]])
    assert left["image"].shape == (3, H, W) and left["depth"].shape == (1, H, W)
    assert left["meta"]["dataset"] == "kitti" and left["meta"]["orig_size"] == (H, W)
    assert left["meta"]["path"].endswith("image_02/data/0000000000.png")
    assert jpg["meta"]["path"].endswith(".jpg")


def test_dataset_without_split_lists_every_frame(kitti_root: Path) -> None:
    assert KittiDataset(kitti_root).names() == [f"{DRIVE}_{i:010d}_l" for i in range(3)]
    assert KittiDataset(kitti_root, side="r").names() == [f"{DRIVE}_{i:010d}_r" for i in range(3)]


def test_dataset_annotated(kitti_root: Path, tmp_path: Path) -> None:
    ann = tmp_path / "annotated"
    gt = np.zeros((H, W), np.float32)
    gt[10:20, 30:40] = 12.5  # a multiple of 1/256: exact round trip
    write_depth(ann / "val" / DRIVE / "proj_depth" / "groundtruth" / "image_02" / "0000000001.png", gt)
    ds = KittiDataset(kitti_root, gt="annotated", annotated_root=ann, lidar=True)
    assert ds.names() == [f"{DRIVE}_0000000001_l"]  # only frames with annotations are listed
    sample = ds[0]
    np.testing.assert_array_equal(sample["depth"][0].numpy(), gt)
    assert as_dict(sample["lidar_depth"][0].numpy()) == EXPECTED_LEFT
    split = tmp_path / "split.txt"
    split.write_text(f"{FOLDER} 0 l\n")
    with pytest.raises(DataError, match="0000000000.png: annotated depth not found"):
        KittiDataset(kitti_root, split=split, gt="annotated", annotated_root=ann)[0]


def test_bad_options(kitti_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="annotated_root"):
        KittiDataset(kitti_root, gt="annotated")
    with pytest.raises(ConfigError, match="gt"):
        KittiDataset(kitti_root, gt="stereo")
    with pytest.raises(DataError, match="nowhere"):
        KittiDataset(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="no option 'cam'"):
        build_dataset(f"kitti:{kitti_root},cam=2")


def test_missing_files_are_named(kitti_root: Path) -> None:
    ds = KittiDataset(kitti_root)
    (kitti_root / DATE / "calib_velo_to_cam.txt").rename(kitti_root / "saved.txt")
    with pytest.raises(DataError, match=r"calib_velo_to_cam\.txt: calibration file not found"):
        ds[2]
    (kitti_root / "saved.txt").rename(kitti_root / DATE / "calib_velo_to_cam.txt")
    (kitti_root / FOLDER / "velodyne_points" / "data" / "0000000000.bin").unlink()
    with pytest.raises(DataError, match=r"velodyne_points/data/0000000000\.bin: Velodyne file not found"):
        ds[0]
    (kitti_root / FOLDER / "image_02" / "data" / "0000000001.png").unlink()
    with pytest.raises(DataError, match=r"image_02/data/0000000001\.png: KITTI image not found"):
        ds[1]


def test_calibration_without_key(kitti_root: Path) -> None:
    path = kitti_root / DATE / "calib_cam_to_cam.txt"
    path.write_text(CAM_TO_CAM.replace("R_rect_00", "R_rect_99"))
    with pytest.raises(DataError, match=r"calib_cam_to_cam\.txt: calibration has no 'R_rect_00'"):
        read_kitti_calib(kitti_root / DATE)


def test_empty_or_foreign_velodyne_files(kitti_root: Path) -> None:
    velo = kitti_root / FOLDER / "velodyne_points" / "data" / "0000000000.bin"
    velo.write_bytes(b"")
    with pytest.raises(DataError, match=r"0000000000\.bin: Velodyne file is empty"):
        load_velodyne(velo)
    sweep = np.random.default_rng(0).uniform(-40, 40, (1000, 4))  # a real-looking sweep saved as float64
    velo.write_bytes(sweep.tobytes())  # its size is a multiple of 16 bytes too
    with pytest.raises(DataError, match=r"0000000000\.bin: .*not a KITTI Velodyne sweep"):
        load_velodyne(velo)


def test_truncated_velodyne(kitti_root: Path) -> None:
    velo = kitti_root / FOLDER / "velodyne_points" / "data" / "0000000000.bin"
    velo.write_bytes(POINTS.tobytes()[:20])
    with pytest.raises(DataError, match=r"0000000000\.bin: .*not a multiple of 16"):
        KittiDataset(kitti_root)[0]


def test_malformed_split_line(kitti_root: Path, tmp_path: Path) -> None:
    split = tmp_path / "eigen.txt"
    for bad in (f"{FOLDER} 0000000000 x", f"{FOLDER}", f"{FOLDER} frame l", "nodate 3 l", f"{FOLDER} 1 l extra"):
        split.write_text(f"{FOLDER} 0000000000 l\n{bad}\n")
        with pytest.raises(DataError, match=r"eigen\.txt: line 2"):
            KittiDataset(kitti_root, split=split)
    with pytest.raises(DataError, match=r"missing\.txt: split file not found"):
        KittiDataset(kitti_root, split=tmp_path / "missing.txt")


def test_image_size_must_match_calibration(kitti_root: Path) -> None:
    write_rgb(kitti_root / FOLDER / "image_02" / "data" / "0000000000.png", np.zeros((40, 50, 3), np.uint8))
    with pytest.raises(DataError, match=r"0000000000\.png: image is 50x40 .*S_rect_02 = 100x80"):
        KittiDataset(kitti_root)[0]


# --- the real KITTI frames in ../shared/data ------------------------------------------------
def reference_projection(velo_file: Path, date_dir: Path, height: int, width: int) -> np.ndarray:
    """A second, independent implementation: parse, project, sort nearest-first, dedupe."""

    def parse(path: Path) -> dict[str, list[float]]:
        out = {}
        for line in path.read_text().splitlines():
            key, _, rest = line.partition(":")
            with contextlib.suppress(ValueError):
                out[key] = [float(x) for x in rest.split()]
        return out

    c2c, v2c = parse(date_dir / "calib_cam_to_cam.txt"), parse(date_dir / "calib_velo_to_cam.txt")
    P = np.array(c2c["P_rect_02"]).reshape(3, 4)
    rect = np.eye(4)
    rect[:3, :3] = np.array(c2c["R_rect_00"]).reshape(3, 3)
    rigid = np.vstack([np.hstack([np.array(v2c["R"]).reshape(3, 3), np.array(v2c["T"])[:, None]]), [0, 0, 0, 1]])
    pts = np.fromfile(velo_file, dtype=np.float32).reshape(-1, 4).astype(np.float64)
    pts = pts[pts[:, 0] >= 0]
    pts[:, 3] = 1
    hom = (P @ rect @ rigid @ pts.T).T
    z = hom[:, 2]
    col = np.round(hom[:, 0] / z).astype(np.int64) - 1
    row = np.round(hom[:, 1] / z).astype(np.int64) - 1
    ok = (z > 0) & (col >= 0) & (row >= 0) & (col < width) & (row < height)
    flat, z = row[ok] * width + col[ok], z[ok]
    order = np.lexsort((z, flat))  # by pixel, then nearest first
    first = np.unique(flat[order], return_index=True)[1]
    depth = np.zeros(height * width)
    depth[flat[order][first]] = z[order][first]
    return depth.reshape(height, width).astype(np.float32)


@pytest.mark.realdata
def test_real_projection_first_frame(shared_data: Path) -> None:
    raw = shared_data / "kitti_raw"
    date = raw / "2011_09_26"
    velo = date / "2011_09_26_drive_0000_sync" / "velodyne_points" / "data" / "0000000000.bin"
    depth = project_velodyne(velo, date, cam=2)
    assert depth.shape == (375, 1242)
    valid = depth[depth > 0]
    assert 14_000 <= valid.size <= 19_000  # measured: 16340
    assert np.quantile(valid, 0.005) >= 3.0 and np.quantile(valid, 0.995) <= 80.0
    assert valid.min() > 2.0 and valid.max() < 90.0  # measured: 3.05 .. 78.10
    rows = np.nonzero(depth)[0]
    assert rows.min() > 50  # the LiDAR sees nothing in the top of the image
    reference = reference_projection(velo, date, 375, 1242)
    np.testing.assert_array_equal(depth > 0, reference > 0)
    np.testing.assert_allclose(depth, reference, rtol=1e-6)


@pytest.mark.realdata
def test_real_dataset(tmp_path: Path, shared_data: Path) -> None:
    raw = shared_data / "kitti_raw"
    split = tmp_path / "test_files.txt"
    split.write_text("2011_09_26/2011_09_26_drive_0000_sync 0000000004 l\n2011_09_26/2011_09_26_drive_0000_sync 8 l\n")
    ds = build_dataset({"name": "kitti", "root": str(raw), "split": str(split)})
    sample = ds[1]
    assert sample["meta"]["name"] == "2011_09_26_drive_0000_sync_0000000008_l"
    assert sample["image"].shape == (3, 375, 1242) and sample["depth"].shape == (1, 375, 1242)
    np.testing.assert_allclose(sample["K"].numpy(), [[721.5377, 0, 609.5593], [0, 721.5377, 172.854], [0, 0, 1]], rtol=1e-6)
    assert 14_000 <= int((sample["depth"] > 0).sum()) <= 19_000
    assert len(KittiDataset(raw)) == 20


def test_bts_split_files_are_read(tmp_path: Path) -> None:
    from slimdepth.data.kitti import read_kitti_split

    split = tmp_path / "bts.txt"
    split.write_text(
        "2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png "
        "2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/0000000069.png 721.5377\n"
        "2011_09_26/2011_09_26_drive_0002_sync/image_03/data/0000000070.jpg None 721.5377\n"
        "2011_09_26/2011_09_26_drive_0009_sync 473 r\n"
    )
    frames = read_kitti_split(split)
    assert [(f.folder, f.frame, f.cam) for f in frames] == [
        ("2011_09_26/2011_09_26_drive_0002_sync", 69, 2),
        ("2011_09_26/2011_09_26_drive_0002_sync", 70, 3),
        ("2011_09_26/2011_09_26_drive_0009_sync", 473, 3),
    ]


# --- a calibration whose rectifying rotation is not the identity ---------------------------
def small_rotation(yaw: float = 2.0, pitch: float = -1.5, roll: float = 1.0) -> np.ndarray:
    """R_y(yaw) @ R_x(pitch) @ R_z(roll), angles in degrees (KITTI's R_rect_00 is about 1 degree)."""
    a, b, c = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return ry @ rx @ rz


def devkit_depth(points: np.ndarray, P: np.ndarray, R_rect: np.ndarray, velo_to_cam: np.ndarray) -> dict[tuple[int, int], float]:
    """The devkit's projection point by point: X_img = P_rect @ R_rect_00 @ [R|t]_velo_to_cam @ X
    for velodyne x >= 0, pixel (round(v) - 1, round(u) - 1), the nearest point kept per pixel."""
    rect = np.eye(4)
    rect[:3, :3] = R_rect
    out: dict[tuple[int, int], float] = {}
    for x, y, z, _ in points.astype(np.float64):
        if x < 0:
            continue
        hom = P @ (rect @ (velo_to_cam @ np.array([x, y, z, 1.0])))
        if hom[2] <= 0:
            continue
        col, row = int(np.round(hom[0] / hom[2])) - 1, int(np.round(hom[1] / hom[2])) - 1
        if 0 <= row < H and 0 <= col < W and ((row, col) not in out or hom[2] < out[(row, col)]):
            out[(row, col)] = hom[2]
    return out


def test_projection_applies_the_rectifying_rotation(tmp_path: Path) -> None:
    """Catches R_rect_00 left out of the Velodyne projection (or transposed, or applied after
    P_rect): with the fixture's identity R_rect_00 every such version agrees, so here it is a
    small rotation, and the depth maps of both cameras are checked pixel by pixel against
    P_rect_0X @ R_rect_00 @ [R|t]_velo_to_cam @ X computed point by point."""
    R_rect = small_rotation()
    root = write_kitti_tree(tmp_path / "raw", frames=(0,), jpg_frames=())
    (root / DATE / "calib_cam_to_cam.txt").write_text(
        CAM_TO_CAM.replace("R_rect_00: 1 0 0 0 1 0 0 0 1", "R_rect_00: " + " ".join(repr(float(v)) for v in R_rect.ravel())))
    rng = np.random.default_rng(7)
    n = 400
    cloud = np.stack([rng.uniform(-3.0, 40.0, n), rng.uniform(-8.0, 8.0, n), rng.uniform(-3.0, 2.0, n),
                      np.full(n, 0.5)], axis=1).astype(np.float32)
    cloud[0] = (9.0, 0.0, 0.0, 0.5)  # on the camera axis: camera (0, 0, 10)
    cloud[1] = (19.0, 0.0, 0.0, 0.5)  # behind it on the same ray
    velo = root / FOLDER / "velodyne_points" / "data" / "0000000000.bin"
    cloud.tofile(velo)
    rigid = np.eye(4)
    rigid[:3, :3] = [[0, -1, 0], [0, 0, -1], [1, 0, 0]]
    rigid[:3, 3] = [0, 0, 1]
    P2 = np.array([[100, 0, 50, 0], [0, 100, 40, 0], [0, 0, 1, 0]], dtype=np.float64)
    P3 = np.array([[100, 0, 50, -100], [0, 100, 40, 0], [0, 0, 1, 0]], dtype=np.float64)

    # by hand: a point on the camera axis at 10 m is rectified to 10 * R_rect[:, 2]
    ray = 10.0 * R_rect[:, 2]
    u, v = 50 + 100 * ray[0] / ray[2], 40 + 100 * ray[1] / ray[2]
    assert (round(u), round(v)) == (53, 43) and abs(u - 53.49) < 0.01 and abs(v - 42.62) < 0.01
    left = project_velodyne(velo, root / DATE, cam=2)
    assert left[42, 52] == pytest.approx(ray[2], rel=1e-6)  # 9.9905 m, the nearer of the two
    assert left[39, 49] == 0.0  # where it would land without the rectification

    for cam, P in ((2, P2), (3, P3)):
        expected = devkit_depth(cloud, P, R_rect, rigid)
        assert len(expected) > 150
        unrectified = devkit_depth(cloud, P, np.eye(3), rigid)
        assert len(set(expected) ^ set(unrectified)) > 100  # the rotation moves most points
        got = as_dict(project_velodyne(velo, root / DATE, cam=cam))
        assert got.keys() == expected.keys(), cam
        assert [got[k] for k in expected] == pytest.approx([expected[k] for k in expected], rel=1e-6)
    sample = KittiDataset(root, side="l")[0]  # the dataset reads the same calibration
    assert as_dict(sample["depth"][0].numpy()) == as_dict(left)
