"""Image/depth I/O, the Sample contract, camera geometry and dataset specs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from slimdepth import fileio as io
from slimdepth.data.registry import build_dataset, parse_dataset_spec
from slimdepth.data.sample import check_sample, collate_samples, key_kind, make_sample
from slimdepth.errors import ConfigError, DataError
from slimdepth.geometry import (
    backproject,
    crop_intrinsics,
    flip_intrinsics,
    kitti_like_intrinsics,
    points_to_depth_map,
    project,
    scale_intrinsics,
)
from slimdepth.options import parse_size


def test_depth_round_trips_in_every_encoding(tmp_path):
    depth = np.array([[0.0, 1.0, 12.5], [79.99609375, 255.99, 300.0]], np.float32)
    io.write_depth(tmp_path / "k.png", depth, "kitti")
    io.write_depth(tmp_path / "m.png", depth, "mm")
    io.write_depth(tmp_path / "d.npy", depth, "npy")
    k = io.read_depth(tmp_path / "k.png", "kitti")
    m = io.read_depth(tmp_path / "m.png", "mm")
    np.testing.assert_allclose(k, [[0, 1, 12.5], [79.99609375, 255.98828125, 0]])  # > 255.99 m: not storable
    np.testing.assert_allclose(m, [[0, 1, 12.5], [0, 0, 0]], atol=5e-4)  # > 65.535 m: not storable
    np.testing.assert_array_equal(io.read_depth(tmp_path / "d.npy", "npy"), depth)
    assert np.asarray(Image.open(tmp_path / "k.png")).dtype == np.uint16
    # the raw PNG values follow KITTI's and NYU's conventions
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "k.png"))[0], [0, 256, 3200])
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "m.png"))[0], [0, 1000, 12500])


def test_rgb_seg_and_intrinsics_round_trip(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    io.write_rgb(tmp_path / "a.png", rgb)
    np.testing.assert_array_equal(io.read_rgb(tmp_path / "a.png"), rgb)
    Image.fromarray(rgb[..., 0]).save(tmp_path / "grey.png")
    assert io.read_rgb(tmp_path / "grey.png").shape == (5, 7, 3)  # grey is converted
    seg = np.array([[0, 7, 255]])
    io.write_seg(tmp_path / "s.png", seg)
    np.testing.assert_array_equal(io.read_seg(tmp_path / "s.png"), seg)
    K = np.array([[500.0, 0, 320.5], [0, 501.0, 240.25], [0, 0, 1]])
    io.write_intrinsics(tmp_path / "K.txt", K)
    np.testing.assert_array_equal(io.read_intrinsics(tmp_path / "K.txt"), K)
    (tmp_path / "four.txt").write_text("500 501 320.5 240.25\n")
    np.testing.assert_array_equal(io.read_intrinsics(tmp_path / "four.txt"), K)
    (tmp_path / "P.txt").write_text(" ".join(map(str, np.hstack([K, [[1], [2], [3]]]).ravel())))
    np.testing.assert_array_equal(io.read_intrinsics(tmp_path / "P.txt"), K)
    (tmp_path / "K.json").write_text(json.dumps({"fx": 500, "fy": 501, "cx": 320.5, "cy": 240.25}))
    np.testing.assert_array_equal(io.read_intrinsics(tmp_path / "K.json"), K)


@pytest.mark.parametrize(
    ("make", "encoding", "fragment"),
    [
        (lambda p: None, "kitti", "file not found"),
        (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n garbage"), "kitti", "cannot read image"),
        (lambda p: Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(p), "kitti", "16-bit single-channel"),
        (lambda p: Image.fromarray(np.zeros((4, 4), np.uint8)).save(p), "mm", "16-bit single-channel"),
    ],
)
def test_depth_png_errors_name_the_file(tmp_path, make, encoding, fragment):
    path = tmp_path / "depth.png"
    make(path)
    with pytest.raises(DataError, match=fragment) as info:
        io.read_depth(path, encoding)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("array", "fragment"),
    [
        (np.array([[1.0, np.nan], [1.0, 1.0]]), "NaN"),
        (np.array([[1.0, np.inf], [1.0, 1.0]]), "infinite"),
        (np.array([[1.0, -2.0], [1.0, 1.0]]), "negative"),
        (np.array([[1000, 2000], [1, 2]], np.uint16), "floats"),
        (np.zeros((2, 3, 4)), "HxW"),
    ],
)
def test_npy_depth_errors(tmp_path, array, fragment):
    path = tmp_path / "d.npy"
    np.save(path, array)
    with pytest.raises(DataError, match=fragment):
        io.read_depth(path, "npy")
    path.write_bytes(b"not numpy")
    with pytest.raises(DataError, match="not a .npy file"):
        io.read_depth(path, "npy")


def test_rgb_reader_rejects_depth_maps_and_unknown_encodings(tmp_path):
    io.write_depth(tmp_path / "d.png", np.ones((3, 3), np.float32))
    with pytest.raises(DataError, match="depth map"):
        io.read_rgb(tmp_path / "d.png")
    with pytest.raises(DataError, match="unknown depth encoding"):
        io.read_depth(tmp_path / "d.png", "inches")  # type: ignore[arg-type]


def test_an_image_declaring_too_many_pixels_is_refused(tmp_path, monkeypatch):
    from PIL import Image

    io.write_rgb(tmp_path / "big.png", np.zeros((20, 20, 3), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 400 pixels > 2x the limit: a "decompression bomb"
    with pytest.raises(DataError, match="big.png: cannot read image .DecompressionBombError"):
        io.read_rgb(tmp_path / "big.png")


def test_atomic_writes_leave_nothing_behind_on_failure(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"original")
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"original"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_make_sample_validates_and_converts():
    rgb = np.full((4, 6, 3), 255, np.uint8)
    depth = np.arange(24, dtype=np.float32).reshape(4, 6)
    s = make_sample(rgb, depth=depth, K=kitti_like_intrinsics(4, 6), seg=np.zeros((4, 6), np.int32),
                    meta={"name": "x"}, lidar_depth=depth, right_image=rgb)
    assert s["image"].dtype == torch.float32 and s["image"].shape == (3, 4, 6) and float(s["image"].max()) == 1.0
    assert s["depth"].shape == (1, 4, 6) and s["seg"].dtype == torch.int64 and s["meta"]["orig_size"] == (4, 6)
    assert key_kind("lidar_depth") == "depth" and key_kind("right_image") == "image" and key_kind("K") == "K"
    with pytest.raises(DataError, match="NaN"):
        make_sample(rgb, depth=np.full((4, 6), np.nan, np.float32))
    with pytest.raises(DataError, match="match the image"):
        make_sample(rgb, depth=np.ones((4, 5), np.float32))
    with pytest.raises(DataError, match="naming rule"):
        make_sample(rgb, extra=np.ones((4, 6)))
    with pytest.raises(DataError, match="positive focal"):
        make_sample(rgb, K=np.zeros((3, 3)))
    bad = dict(s, depth=s["depth"].double())
    with pytest.raises(DataError, match="float32"):
        check_sample(bad)


def test_collate_stacks_and_refuses_mixed_sizes():
    a = make_sample(np.zeros((4, 6, 3), np.uint8), depth=np.ones((4, 6), np.float32), meta={"name": "a"})
    b = make_sample(np.zeros((4, 6, 3), np.uint8), depth=np.ones((4, 6), np.float32), meta={"name": "b"})
    batch = collate_samples([a, b])
    assert batch["image"].shape == (2, 3, 4, 6) and [m["name"] for m in batch["meta"]] == ["a", "b"]
    c = make_sample(np.zeros((5, 6, 3), np.uint8), depth=np.ones((5, 6), np.float32))
    with pytest.raises(DataError, match="different sizes"):
        collate_samples([a, c])
    with pytest.raises(DataError, match="different keys"):
        collate_samples([a, make_sample(np.zeros((4, 6, 3), np.uint8))])


def test_intrinsics_transforms_keep_points_where_they_project():
    rng = np.random.default_rng(0)
    K = np.array([[300.0, 0.0, 159.3], [0.0, 290.0, 95.7], [0.0, 0.0, 1.0]])
    pts = np.column_stack([rng.uniform(-5, 5, 50), rng.uniform(-2, 2, 50), rng.uniform(3, 40, 50)])
    uv, _ = project(pts, K)
    # resizing by (sx, sy) maps pixel centres u -> (u + 0.5) sx - 0.5
    uv2, _ = project(pts, scale_intrinsics(K, 0.5, 0.25))
    np.testing.assert_allclose(uv2, np.column_stack([(uv[:, 0] + 0.5) * 0.5 - 0.5, (uv[:, 1] + 0.5) * 0.25 - 0.5]))
    uv3, _ = project(pts, crop_intrinsics(K, 10, 20))
    np.testing.assert_allclose(uv3, uv - [10, 20])
    mirrored = pts * [-1, 1, 1]
    uv4, _ = project(mirrored, flip_intrinsics(K, 320))
    np.testing.assert_allclose(uv4[:, 0], 319 - uv[:, 0])
    # KITTI's own camera at KITTI's size
    np.testing.assert_allclose(kitti_like_intrinsics(375, 1242), [[721.5377, 0, 609.5593], [0, 721.5377, 172.854], [0, 0, 1]])


def test_backprojection_inverts_projection():
    K = kitti_like_intrinsics(20, 30)
    depth = np.zeros((20, 30))
    depth[5, 7], depth[12, 25] = 4.0, 17.5
    pts, rc = backproject(depth, K)
    uv, z = project(pts, K)
    np.testing.assert_allclose(uv, rc[:, ::-1], atol=1e-9)
    np.testing.assert_allclose(z, [4.0, 17.5])


def test_points_to_depth_map_keeps_the_nearest_and_follows_the_devkit_offset():
    u = np.array([3.2, 3.4, 5.5, 6.5, -1.0, 2.0])
    v = np.array([1.0, 0.6, 2.0, 2.0, 1.0, 1.0])
    z = np.array([9.0, 4.0, 7.0, 8.0, 3.0, -1.0])
    d = points_to_depth_map(u, v, z, 4, 8)
    assert d[1, 3] == 4.0  # two points on one pixel: the nearer wins
    assert d[2, 6] == 7.0 and d[2, 5] == 0  # 5.5 and 6.5 both round half-to-even to 6; 7 m is nearer
    assert (d > 0).sum() == 2  # the point behind the camera and the one outside are dropped
    devkit = points_to_depth_map(u, v, z, 4, 8, offset=-1)
    assert devkit[0, 2] == 4.0 and devkit[1, 5] == 7.0


def test_dataset_specs_parse_and_name_their_errors(tmp_path):
    assert parse_dataset_spec("kitti:/data/raw,split=eigen.txt,lidar=true,num=3,scale=0.5") == (
        "kitti", {"root": "/data/raw", "split": "eigen.txt", "lidar": True, "num": 3, "scale": 0.5})
    assert parse_dataset_spec({"name": "nyu", "root": "x"}) == ("nyu", {"root": "x"})
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_dataset_spec("synthetic,num")
    with pytest.raises(ConfigError, match="unknown dataset 'mars'"):
        build_dataset("mars")
    with pytest.raises(ConfigError, match="needs a 'name'"):
        build_dataset({"root": "x"})
    assert parse_size("192x640") == (192, 640) and parse_size([3, 4]) == (3, 4)
    for bad in ("192", "0x5", "ax4", "1x2x3"):
        with pytest.raises(ConfigError):
            parse_size(bad)
