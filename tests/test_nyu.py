"""NYU Depth v2 reader: BTS sync pairs, sparse-to-dense HDF5 frames, intrinsics and errors."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from slimdepth.data.nyu import NyuDataset, nyu_intrinsics, read_nyu_h5
from slimdepth.data.registry import build_dataset
from slimdepth.errors import ConfigError, DataError
from slimdepth.fileio import write_rgb

NYU_K = [[518.8579, 0, 325.5825], [0, 519.4696, 253.7362], [0, 0, 1]]






def write_mm_png(path: Path, millimetres: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(millimetres.astype(np.uint16)).save(path)


def write_pair(folder: Path, index: int, size=(48, 64), depth_folder: Path | None = None, seed: int = 0):
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    mm = rng.integers(700, 8000, size).astype(np.uint16)
    mm[:5, :5] = 0  # a hole
    write_rgb(folder / f"rgb_{index:05d}.png", rgb)
    write_mm_png((depth_folder or folder) / f"sync_depth_{index:05d}.png", mm)
    return rgb, mm


def write_h5(path: Path, rgb=None, depth=None, **extra) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        if rgb is not None:
            f["rgb"] = rgb
        if depth is not None:
            f["depth"] = depth
        for key, value in extra.items():
            f[key] = value


def test_sync_same_folder_round_trip(tmp_path: Path) -> None:
    rgb, mm = write_pair(tmp_path / "kitchen_0028b", 45)
    write_pair(tmp_path / "bathroom_0001", 3, seed=1)
    ds = build_dataset(f"nyu:{tmp_path}")
    assert isinstance(ds, NyuDataset) and ds.layout == "sync" and ds.eval_preset == "nyu"
    assert ds.names() == ["bathroom_0001_rgb_00003", "kitchen_0028b_rgb_00045"]
    sample = ds[1]
    np.testing.assert_array_equal((sample["image"] * 255).round().byte().permute(1, 2, 0).numpy(), rgb)
    depth = sample["depth"][0].numpy()
    np.testing.assert_allclose(depth, mm / 1000.0, rtol=1e-6)
    assert (depth[:5, :5] == 0).all()
    np.testing.assert_allclose(sample["K"].numpy(), nyu_intrinsics(48, 64), rtol=1e-6)
    assert sample["meta"]["dataset"] == "nyu" and sample["meta"]["orig_size"] == (48, 64)


def test_sync_parallel_folders(tmp_path: Path) -> None:
    write_pair(tmp_path / "scene" / "rgb", 7, depth_folder=tmp_path / "scene" / "depth")
    ds = NyuDataset(tmp_path)
    assert ds.names() == ["scene_rgb_00007"]
    assert ds.items[0].depth == tmp_path / "scene" / "depth" / "sync_depth_00007.png"
    assert ds[0]["depth"].shape == (1, 48, 64)


def test_intrinsics_standard_and_scaled() -> None:
    np.testing.assert_allclose(nyu_intrinsics(), NYU_K)
    half = nyu_intrinsics(240, 320)
    np.testing.assert_allclose(half[0, 0], 518.8579 / 2)
    np.testing.assert_allclose(half[1, 2], (253.7362 + 0.5) / 2 - 0.5)


def test_bts_split(tmp_path: Path) -> None:
    write_pair(tmp_path / "kitchen_0028b", 45)
    write_pair(tmp_path / "kitchen_0028b", 46)
    split = tmp_path / "train.txt"
    split.write_text(
        "/kitchen_0028b/rgb_00046.png /kitchen_0028b/sync_depth_00046.png 518.8579\n"
        "kitchen_0028b/rgb_00045.png kitchen_0028b/sync_depth_00045.png\n"
    )
    ds = NyuDataset(tmp_path, split=split)
    assert ds.names() == ["kitchen_0028b_rgb_00046", "kitchen_0028b_rgb_00045"]
    assert ds[0]["depth"].shape == (1, 48, 64)


def test_malformed_split_line(tmp_path: Path) -> None:
    split = tmp_path / "bts_split.txt"
    for bad in ("a/rgb_00001.png", "a/rgb_00001.png a/sync_depth_00001.png focal", "a b c d"):
        split.write_text(f"a/rgb_00000.png a/sync_depth_00000.png 518.8579\n\n{bad}\n")
        with pytest.raises(DataError, match=r"bts_split\.txt: line 3"):
            NyuDataset(tmp_path, split=split)


def test_split_with_missing_file(tmp_path: Path) -> None:
    split = tmp_path / "split.txt"
    split.write_text("a/rgb_00000.png a/sync_depth_00000.png 518.8579\n")
    with pytest.raises(DataError, match=r"a/rgb_00000\.png: file not found"):
        NyuDataset(tmp_path, split=split)[0]


def test_missing_depth_names_image_and_expected_depth(tmp_path: Path) -> None:
    write_pair(tmp_path / "a", 1)
    (tmp_path / "a" / "sync_depth_00001.png").unlink()
    with pytest.raises(DataError, match=r"rgb_00001\.png: no depth map \(expected .*sync_depth_00001\.png\)"):
        NyuDataset(tmp_path)


def test_sync_size_mismatch(tmp_path: Path) -> None:
    write_pair(tmp_path, 1)
    write_mm_png(tmp_path / "sync_depth_00001.png", np.full((24, 32), 1000))
    with pytest.raises(DataError, match=r"sync_depth_00001\.png: size 32x24 does not match .*rgb_00001\.png \(64x48\)"):
        NyuDataset(tmp_path)[0]


def test_corrupt_depth_png(tmp_path: Path) -> None:
    write_pair(tmp_path, 1)
    (tmp_path / "sync_depth_00001.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match=r"sync_depth_00001\.png: cannot read image"):
        NyuDataset(tmp_path)[0]


def test_rgb_png_given_as_depth(tmp_path: Path) -> None:
    write_pair(tmp_path, 1)
    write_rgb(tmp_path / "sync_depth_00001.png", np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(DataError, match=r"sync_depth_00001\.png: depth PNG must be 16-bit"):
        NyuDataset(tmp_path)[0]


def test_h5_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (3, 48, 64), dtype=np.uint8)
    depth = rng.uniform(0.5, 9.0, (48, 64)).astype(np.float32)
    write_h5(tmp_path / "train" / "basement_0001a" / "00001.h5", rgb, depth)
    write_h5(tmp_path / "train" / "basement_0001a" / "00002.h5", rgb, depth)
    ds = build_dataset(f"nyu:{tmp_path},layout=h5")
    assert ds.layout == "h5"
    assert ds.names() == ["train_basement_0001a_00001", "train_basement_0001a_00002"]
    sample = ds[0]
    np.testing.assert_array_equal(sample["depth"][0].numpy(), depth)
    np.testing.assert_array_equal((sample["image"] * 255).round().byte().numpy(), rgb)
    np.testing.assert_allclose(sample["K"].numpy(), nyu_intrinsics(48, 64), rtol=1e-6)
    single = NyuDataset(tmp_path / "train" / "basement_0001a" / "00002.h5")
    assert single.names() == ["00002"] and single[0]["depth"].shape == (1, 48, 64)


def test_h5_errors(tmp_path: Path) -> None:
    rgb = np.zeros((3, 8, 10), np.uint8)
    depth = np.ones((8, 10), np.float32)
    cases = {
        "keys.h5": ({"rgb": rgb, "dep": depth}, r"keys\.h5: HDF5 file has no 'depth'"),
        "hwc.h5": ({"rgb": rgb.transpose(1, 2, 0), "depth": depth}, r"hwc\.h5: 'rgb' must be 3xHxW uint8"),
        "float.h5": ({"rgb": rgb.astype(np.float32), "depth": depth}, r"float\.h5: 'rgb' must be 3xHxW uint8"),
        "nan.h5": ({"rgb": rgb, "depth": np.where(np.eye(8, 10) > 0, np.nan, 1.0)}, r"nan\.h5 'depth': depth contains NaN"),
        "size.h5": ({"rgb": rgb, "depth": np.ones((8, 9), np.float32)}, r"size\.h5 'depth': size 9x8 does not match .*size\.h5 \(10x8\)"),
        "depth3d.h5": ({"rgb": rgb, "depth": np.ones((2, 8, 10))}, r"depth3d\.h5 'depth': expected a numeric HxW"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        with h5py.File(path, "w") as f:
            for key, value in content.items():
                f[key] = value
        with pytest.raises(DataError, match=message):
            read_nyu_h5(path)
    (tmp_path / "corrupt.h5").write_bytes(b"not an hdf5 file at all")
    with pytest.raises(DataError, match=r"corrupt\.h5: cannot read HDF5"):
        NyuDataset(tmp_path / "corrupt.h5")[0]


def test_layout_choice(tmp_path: Path) -> None:
    write_pair(tmp_path, 1)
    write_h5(tmp_path / "x.h5", np.zeros((3, 8, 10), np.uint8), np.ones((8, 10), np.float32))
    with pytest.raises(ConfigError, match="layout=sync or layout=h5"):
        NyuDataset(tmp_path)
    assert NyuDataset(tmp_path, layout="sync").names() == ["rgb_00001"]
    assert NyuDataset(tmp_path, layout="h5").names() == ["x"]
    with pytest.raises(ConfigError, match="layout"):
        NyuDataset(tmp_path, layout="mat")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no NYU frames found"):
        NyuDataset(tmp_path / "empty")
    with pytest.raises(DataError, match=r"missing: NYU root not found"):
        NyuDataset(tmp_path / "missing")


@pytest.mark.realdata
def test_real_nyu_pairs(tmp_path: Path, shared_data: Path) -> None:
    root = shared_data / "nyu_sync"
    ds = build_dataset(f"nyu:{root}")
    assert ds.names() == ["rgb_00000", "rgb_00050", "rgb_00100"]
    lows, highs = [], []
    for i in range(len(ds)):
        sample = ds[i]
        assert sample["image"].shape == (3, 480, 640)
        depth = sample["depth"][0].numpy()
        valid = depth[depth > 0]
        assert 0.5 < valid.size / depth.size < 0.95  # raw holes stay 0
        lows.append(valid.min())
        highs.append(valid.max())
        np.testing.assert_allclose(sample["K"].numpy(), NYU_K, rtol=1e-6)
    assert 0.7 <= min(lows) < 1.0 and 8.0 < max(highs) <= 8.3  # measured: 0.713 .. 8.266
    split = tmp_path / "nyudepthv2_test_files_with_gt.txt"
    split.write_text("/rgb/rgb_00050.jpg /depth/sync_depth_00050.png 518.8579\n")
    from_split = NyuDataset(root, split=split)[0]
    np.testing.assert_array_equal(from_split["depth"].numpy(), ds[1]["depth"].numpy())
