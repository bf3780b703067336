"""Tests for slimdepth.visualize: colour maps, labels, panels, PLY round trips, contact sheets."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from slimdepth.data.sample import make_sample
from slimdepth.errors import ConfigError, DataError
from slimdepth.fileio import read_ply, write_ply
from slimdepth.visualize import (
    LABEL_NAMES,
    LABEL_PALETTE,
    colorize_depth,
    colorize_error,
    colorize_labels,
    comparison_panel,
    contact_sheet,
    depth_range,
    side_by_side,
)


def cmap_rgb(name: str, t: float) -> np.ndarray:
    """The colour matplotlib itself gives for t in [0, 1], as uint8 RGB."""
    return np.asarray(matplotlib.colormaps[name](t, bytes=True)[:3], dtype=np.uint8)


@pytest.fixture
def depth_with_holes() -> np.ndarray:
    d = np.linspace(1.0, 50.0, 30, dtype=np.float32).reshape(5, 6)
    d[0, 0] = 0.0
    d[2, 3] = np.nan
    d[4, 1] = np.inf
    return d


# ---------------------------------------------------------------- colorize_depth


def test_near_is_bright_far_is_dark_and_invalid_exact(depth_with_holes: np.ndarray) -> None:
    d = depth_with_holes
    out = colorize_depth(d, invalid_color=(12, 34, 56))
    assert out.shape == (5, 6, 3) and out.dtype == np.uint8
    valid = np.isfinite(d) & (d > 0)
    near = np.unravel_index(np.where(valid, d, np.inf).argmin(), d.shape)
    far = np.unravel_index(np.where(valid, d, -np.inf).argmax(), d.shape)
    np.testing.assert_array_equal(out[near], cmap_rgb("magma", 1.0))
    np.testing.assert_array_equal(out[far], cmap_rgb("magma", 0.0))
    for rc in [(0, 0), (2, 3), (4, 1)]:
        np.testing.assert_array_equal(out[rc], [12, 34, 56])
    assert (out[valid] != [12, 34, 56]).any(axis=-1).all()


def test_vmin_vmax_are_honoured() -> None:
    d = np.array([[2.0, 4.0, 8.0, 1.0, 100.0]], dtype=np.float32)
    out = colorize_depth(d, vmin=2.0, vmax=8.0)
    np.testing.assert_array_equal(out[0, 0], cmap_rgb("magma", 1.0))
    np.testing.assert_array_equal(out[0, 1], cmap_rgb("magma", (1 / 4 - 1 / 8) / (1 / 2 - 1 / 8)))
    np.testing.assert_array_equal(out[0, 2], cmap_rgb("magma", 0.0))
    np.testing.assert_array_equal(out[0, 3], out[0, 0])  # nearer than vmin: clipped
    np.testing.assert_array_equal(out[0, 4], out[0, 2])  # farther than vmax: clipped
    linear = colorize_depth(d, cmap="viridis", vmin=2.0, vmax=8.0, inverse=False)
    np.testing.assert_array_equal(linear[0, 0], cmap_rgb("viridis", 0.0))
    np.testing.assert_array_equal(linear[0, 1], cmap_rgb("viridis", 2 / 6))
    np.testing.assert_array_equal(linear[0, 2], cmap_rgb("viridis", 1.0))


def test_torch_and_numpy_inputs_identical(depth_with_holes: np.ndarray) -> None:
    d = np.nan_to_num(depth_with_holes, nan=0.0, posinf=0.0)
    expected = colorize_depth(d)
    np.testing.assert_array_equal(colorize_depth(torch.from_numpy(d)[None]), expected)
    np.testing.assert_array_equal(colorize_depth(torch.from_numpy(d)), expected)
    np.testing.assert_array_equal(colorize_depth(d[None]), expected)


def test_unknown_cmap_names_choices() -> None:
    with pytest.raises(ConfigError, match="no_such_map.*magma"):
        colorize_depth(np.ones((2, 2)), cmap="no_such_map")


def test_bad_range_options() -> None:
    with pytest.raises(ConfigError):
        colorize_depth(np.ones((2, 2)), vmin=5.0, vmax=1.0)
    with pytest.raises(ConfigError):
        colorize_depth(np.ones((2, 2)), vmin=0.0)
    with pytest.raises(ConfigError):
        colorize_depth(np.ones((2, 2)), dilate=0)


def test_equal_vmin_vmax_splits_near_and_far() -> None:
    d = np.array([[1.0, 5.0, 9.0]])
    out = colorize_depth(d, vmin=5.0, vmax=5.0)
    np.testing.assert_array_equal(out[0, 0], cmap_rgb("magma", 1.0))
    np.testing.assert_array_equal(out[0, 1], cmap_rgb("magma", 0.5))
    np.testing.assert_array_equal(out[0, 2], cmap_rgb("magma", 0.0))
    np.testing.assert_array_equal(colorize_depth(d, vmin=20.0)[0, 2], cmap_rgb("magma", 1.0))


def test_all_invalid_map_is_all_invalid_color() -> None:
    out = colorize_depth(np.zeros((3, 4)), invalid_color=(1, 2, 3))
    assert (out == [1, 2, 3]).all()


def test_dilate_grows_sparse_points_nearest_wins() -> None:
    d = np.zeros((7, 7), dtype=np.float32)
    d[1, 1] = 5.0
    d[5, 5] = 20.0
    d[3, 3] = 10.0
    plain = colorize_depth(d, vmin=5.0, vmax=20.0)
    assert (plain.any(axis=-1)).sum() == 3
    grown = colorize_depth(d, vmin=5.0, vmax=20.0, dilate=3)
    lit = grown.any(axis=-1)
    assert lit.sum() == 3 * 9 - 2  # three 3x3 blocks; two corners where blocks touch are shared
    np.testing.assert_array_equal(grown[0, 0], plain[1, 1])
    np.testing.assert_array_equal(grown[2, 2], plain[1, 1])  # shared by 5 m and 10 m: nearer wins
    np.testing.assert_array_equal(grown[6, 6], plain[5, 5])
    assert not lit[0, 6] and not lit[6, 0]


def test_depth_range_percentiles() -> None:
    d = np.arange(1, 101, dtype=np.float32).reshape(10, 10)
    lo, hi = depth_range(d, np.zeros((3, 3)))
    assert lo == pytest.approx(np.percentile(np.arange(1, 101), 5))
    assert hi == pytest.approx(np.percentile(np.arange(1, 101), 95))
    with pytest.raises(DataError):
        depth_range(np.zeros((2, 2)))


# ---------------------------------------------------------------- errors and labels


def test_colorize_error_scale_and_invalid_gt() -> None:
    gt = np.array([[10.0, 10.0, 0.0, 10.0]], dtype=np.float32)
    pred = np.array([[10.0, 12.0, 5.0, 0.0]], dtype=np.float32)
    out = colorize_error(pred, gt, vmax=0.2)
    np.testing.assert_array_equal(out[0, 0], cmap_rgb("YlOrRd", 0.0))
    np.testing.assert_array_equal(out[0, 1], cmap_rgb("YlOrRd", 1.0))  # abs rel 0.2 = vmax
    np.testing.assert_array_equal(out[0, 2], [0, 0, 0])  # invalid GT
    np.testing.assert_array_equal(out[0, 3], cmap_rgb("YlOrRd", 1.0))  # missing prediction = worst
    half = colorize_error(pred, gt, kind="abs", vmax=4.0)
    np.testing.assert_array_equal(half[0, 1], cmap_rgb("YlOrRd", 0.5))
    with pytest.raises(ConfigError, match="absrel"):
        colorize_error(pred, gt, kind="rmse")
    with pytest.raises(DataError):
        colorize_error(pred, gt[:, :2])


def test_label_palette_exact_and_ignore_black() -> None:
    assert LABEL_NAMES == ("road", "sidewalk", "building", "vegetation", "pole", "car", "pedestrian", "sky")
    seg = np.array([[0, 1, 2, 3], [4, 5, 6, 7], [255, 0, 7, 255]], dtype=np.int64)
    out = colorize_labels(torch.from_numpy(seg))
    assert out.shape == (3, 4, 3) and out.dtype == np.uint8
    for label in range(8):
        np.testing.assert_array_equal(out[seg == label], np.tile(LABEL_PALETTE[label], ((seg == label).sum(), 1)))
    assert (out[seg == 255] == 0).all()
    assert LABEL_PALETTE[0] == (128, 64, 128) and LABEL_PALETTE[5] == (0, 0, 142) and LABEL_PALETTE[7] == (70, 130, 180)
    custom = colorize_labels(seg, palette=[(1, 2, 3)] * 8)
    assert (custom[seg != 255] == [1, 2, 3]).all()


# ---------------------------------------------------------------- panels


def test_side_by_side_shape_arithmetic() -> None:
    a = np.zeros((40, 60, 3), dtype=np.uint8)
    b = np.zeros((20, 20, 3), dtype=np.uint8)  # scaled to 40x40
    c = torch.rand(3, 80, 40)  # scaled to 40x20
    out = side_by_side([a, b, c], gap=5)
    assert out.shape == (40, 60 + 40 + 20 + 2 * 5, 3) and out.dtype == np.uint8
    titled = side_by_side([a, b, c], ["image", "depth", "labels"], gap=5, title_height=16)
    assert titled.shape == (16 + 40, 130, 3)
    assert (titled[:16] < 128).any()  # some dark title text was drawn
    tall = side_by_side([a, b], height=80, gap=0)
    assert tall.shape == (80, 120 + 80, 3)
    with pytest.raises(ConfigError):
        side_by_side([a, b], ["only one title"])


def test_comparison_panel_layout_and_shared_range() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((3, 24, 32), dtype=np.float32)
    gt = rng.uniform(2.0, 40.0, size=(24, 32)).astype(np.float32)
    only_pred = comparison_panel(image, gt, title_height=10)
    assert only_pred.shape == (10 + 24, 2 * 32 + 4, 3)
    full = comparison_panel(torch.from_numpy(image), torch.from_numpy(gt)[None], gt, title_height=10)
    assert full.shape == (10 + 24, 4 * 32 + 3 * 4, 3)
    pred_panel = full[10:, 36:68]
    gt_panel = full[10:, 72:104]
    np.testing.assert_array_equal(pred_panel, gt_panel)  # pred == gt: same colours with a shared range
    K = np.array([[30.0, 0, 15.5], [0, 30.0, 11.5], [0, 0, 1]])
    with_top = comparison_panel(image, gt * 1.1, gt, K=K, title_height=10)
    assert with_top.shape[0] == 34 and with_top.shape[1] > full.shape[1]


# ---------------------------------------------------------------- PLY


@pytest.mark.parametrize("binary", [True, False])
def test_ply_round_trip_matches_pinhole_formula(tmp_path, binary: bool) -> None:
    rng = np.random.default_rng(1)
    h, w = 5, 7
    depth = rng.uniform(0.5, 30.0, size=(h, w)).astype(np.float32)
    depth[0, :3] = 0.0
    depth[3, 4] = 0.0
    image = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    fx, fy, cx, cy = 9.5, 8.25, 3.3, 2.1
    K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float32)
    path = tmp_path / "cloud.ply"
    n = write_ply(path, torch.from_numpy(depth)[None], K, image=image, binary=binary)

    rows, cols = np.nonzero(depth > 0)
    z = depth[rows, cols].astype(np.float64)
    expected = np.stack([(cols - cx) * z / fx, (rows - cy) * z / fy, z], axis=1)
    assert n == len(expected) == h * w - 4

    header = path.read_bytes().split(b"end_header")[0].decode()
    assert f"element vertex {n}\n" in header
    assert ("binary_little_endian" in header) == binary and ("ascii" in header) == (not binary)
    points, colors = read_ply(path)
    assert points.dtype == np.float32 and points.shape == (n, 3)
    np.testing.assert_allclose(points, expected.astype(np.float32), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(colors, image[rows, cols])


def test_ply_without_colours_and_max_depth(tmp_path) -> None:
    depth = np.array([[1.0, 5.0], [0.0, 20.0]], dtype=np.float32)
    K = np.array([[2.0, 0, 0.5], [0, 2.0, 0.5], [0, 0, 1]])
    for binary in (True, False):
        path = tmp_path / f"c{binary}.ply"
        assert write_ply(path, depth, K, max_depth=10.0, binary=binary) == 2
        points, colors = read_ply(path)
        assert colors is None
        np.testing.assert_allclose(points[:, 2], [1.0, 5.0])
    assert not list(tmp_path.glob(".*"))  # atomic write left no temporary file


def test_read_ply_rejects_other_files(tmp_path) -> None:
    bad = tmp_path / "x.ply"
    bad.write_text("not a ply\nend_header\n")
    with pytest.raises(DataError, match="x.ply"):
        read_ply(bad)
    with pytest.raises(DataError):
        read_ply(tmp_path / "missing.ply")


# ---------------------------------------------------------------- contact sheet


def _sample(name: str, h: int, w: int, lidar: bool = False, seg: bool = False, right: bool = False) -> dict:
    rng = np.random.default_rng(len(name))
    extras = {}
    if lidar:
        sparse = np.zeros((h, w), dtype=np.float32)
        sparse[:: max(1, h // 8), ::5] = rng.uniform(3.0, 30.0, size=sparse[:: max(1, h // 8), ::5].shape)
        extras["lidar_depth"] = sparse
    if right:
        extras["right_image"] = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    return make_sample(
        rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8),
        depth=rng.uniform(2.0, 40.0, size=(h, w)).astype(np.float32),
        seg=rng.integers(0, 8, size=(h, w)) if seg else None,
        meta={"name": name},
        **extras,
    )


def test_contact_sheet_size_arithmetic_without_lidar() -> None:
    sheet = contact_sheet([_sample("a", 24, 40), _sample("b", 24, 40)], gap=4, title_height=20)
    # columns image | depth; no upscaling beyond the widest image (40)
    assert sheet.shape == (20 * 3 + 2 * 24, 2 * 40 + 4, 3)


def test_contact_sheet_all_columns_rows_and_png(tmp_path) -> None:
    samples = [_sample(f"s{i}", 60, 200, lidar=True, seg=True, right=True) for i in range(6)]
    path = tmp_path / "sheet.png"
    sheet = contact_sheet(samples, path, max_width=400, gap=4, title_height=20)
    cell_w = (400 - 4 * 4) // 5  # 5 columns: image | depth | LiDAR | labels | right image
    row_h = round(cell_w * 60 / 200)
    assert sheet.shape == (20 * 7 + 6 * row_h, 5 * cell_w + 4 * 4, 3)
    with Image.open(path) as img:
        assert img.size == (sheet.shape[1], sheet.shape[0])
        np.testing.assert_array_equal(np.asarray(img.convert("RGB")), sheet)
    lidar_cell = sheet[40 : 40 + row_h, 2 * (cell_w + 4) : 3 * cell_w + 2 * 4]
    assert lidar_cell.any(axis=-1).mean() > 0.3  # sparse points grown so they survive the downscale


def test_contact_sheet_cells_show_the_image_its_depth_and_labels() -> None:
    s = _sample("a", 30, 50, seg=True)
    sheet = contact_sheet([s], gap=4, title_height=10, cmap="viridis")  # no downscaling: cells are 50 wide
    row = sheet[20:50]  # below the header and the name strip
    image, depth, labels = (row[:, i * 54 : i * 54 + 50] for i in range(3))
    np.testing.assert_array_equal(image, (s["image"].numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8))
    d = s["depth"][0].numpy()
    lo, hi = np.percentile(d, [5.0, 95.0])  # the row's shared range, as the name strip says
    np.testing.assert_array_equal(depth, colorize_depth(d, "viridis", vmin=float(lo), vmax=float(hi)))
    np.testing.assert_array_equal(labels, colorize_labels(s["seg"]))


def test_contact_sheet_lidar_column_only_when_present() -> None:
    sheet = contact_sheet([_sample("a", 24, 40, lidar=True), _sample("b", 24, 40)], gap=4, title_height=20)
    assert sheet.shape == (20 * 3 + 2 * 24, 3 * 40 + 2 * 4, 3)  # image | depth | LiDAR
    missing = sheet[20 + (20 + 24) + 20 :, 2 * 44 :]  # header, row a with its name strip, name b
    assert missing.shape[:2] == (24, 40)
    assert (missing == missing[0, 0]).all() and missing[0, 0].max() < 128  # flat dark placeholder


def test_contact_sheet_kitti_sized_stays_under_2000px() -> None:
    samples = [_sample(f"k{i}", 375, 1242, lidar=True, seg=True) for i in range(6)]
    sheet = contact_sheet(samples)
    assert sheet.shape[1] < 2000
    with pytest.raises(ConfigError):
        contact_sheet([])
