"""Folder readers: labeled RGB + depth folders (with optional extras) and unlabeled images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from slimdepth.data.folder import FolderDataset, UnlabeledDataset, parse_intrinsics
from slimdepth.data.registry import build_dataset
from slimdepth.errors import ConfigError, DataError
from slimdepth.fileio import write_depth, write_intrinsics, write_rgb, write_seg
from slimdepth.geometry import kitti_like_intrinsics

H, W = 24, 32






def frame_arrays(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    depth = rng.integers(1, 60 * 256, (H, W)) / 256.0  # 1/256 steps: exact in kitti PNGs; < 65.5 m for mm
    depth[0, :] = 0
    lidar = np.where(rng.random((H, W)) < 0.1, depth, 0.0)
    return {
        "rgb": rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
        "right": rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
        "depth": depth.astype(np.float32),
        "lidar": lidar.astype(np.float32),
        "seg": rng.integers(0, 20, (H, W)).astype(np.int64),
        "K": np.array([[30.0 + seed, 0, 15.5], [0, 31.0, 11.5], [0, 0, 1]]),
    }


def write_generator_layout(root: Path, n: int = 2) -> list[dict[str, np.ndarray]]:
    """The layout our synthetic generator writes."""
    frames = []
    for i in range(n):
        a = frame_arrays(i)
        stem = f"{i:06d}"
        write_rgb(root / "rgb" / f"{stem}.png", a["rgb"])
        write_rgb(root / "right" / f"{stem}.png", a["right"])
        write_depth(root / "depth" / f"{stem}.png", a["depth"], "kitti")
        write_depth(root / "lidar" / f"{stem}.png", a["lidar"], "kitti")
        write_seg(root / "seg" / f"{stem}.png", a["seg"])
        write_intrinsics(root / "K" / f"{stem}.txt", a["K"])
        frames.append(a)
    (root / "meta.json").write_text(json.dumps({"depth_encoding": "kitti", "eval_preset": None, "num": n}))
    return frames


def write_pairs(root: Path, encoding: str = "kitti", n: int = 2, image_dir: str = "rgb") -> list[dict[str, np.ndarray]]:
    frames = []
    for i in range(n):
        a = frame_arrays(i)
        write_rgb(root / image_dir / f"{i:06d}.png", a["rgb"])
        write_depth(root / "depth" / f"{i:06d}{'.npy' if encoding == 'npy' else '.png'}", a["depth"], encoding)
        frames.append(a)
    return frames


def to_uint8(image) -> np.ndarray:
    return (image * 255).round().byte().permute(1, 2, 0).numpy()


def test_generator_layout_round_trip(tmp_path: Path) -> None:
    frames = write_generator_layout(tmp_path)
    ds = build_dataset(f"folder:{tmp_path}")
    assert isinstance(ds, FolderDataset) and ds.eval_preset is None and ds.depth_encoding == "kitti"
    assert ds.names() == ["000000", "000001"]
    for i, a in enumerate(frames):
        sample = ds[i]
        assert set(sample) == {"image", "depth", "lidar_depth", "seg", "right_image", "K", "meta"}
        np.testing.assert_array_equal(to_uint8(sample["image"]), a["rgb"])
        np.testing.assert_array_equal(to_uint8(sample["right_image"]), a["right"])
        np.testing.assert_array_equal(sample["depth"][0].numpy(), a["depth"])
        np.testing.assert_array_equal(sample["lidar_depth"][0].numpy(), a["lidar"])
        np.testing.assert_array_equal(sample["seg"].numpy(), a["seg"])
        np.testing.assert_allclose(sample["K"].numpy(), a["K"], rtol=1e-7)
        meta = sample["meta"]
        assert meta["dataset"] == "folder" and meta["orig_size"] == (H, W)
        assert meta["intrinsics"].endswith(f"K/{i:06d}.txt")


def test_optional_folders_can_be_disabled(tmp_path: Path) -> None:
    write_generator_layout(tmp_path, n=1)
    sample = FolderDataset(tmp_path, seg_dir=None, lidar_dir=None, right_dir=None)[0]
    assert set(sample) == {"image", "depth", "K", "meta"}


@pytest.mark.parametrize("encoding", ["mm", "npy"])
def test_encodings(tmp_path: Path, encoding: str) -> None:
    frames = write_pairs(tmp_path, encoding)
    (tmp_path / "meta.json").write_text(json.dumps({"depth_encoding": encoding, "eval_preset": "nyu"}))
    ds = FolderDataset(tmp_path)
    assert ds.depth_encoding == encoding and ds.eval_preset == "nyu"
    tol = 1e-6 if encoding == "npy" else 5e-4  # mm PNGs quantise to 1 mm
    np.testing.assert_allclose(ds[1]["depth"][0].numpy(), frames[1]["depth"], atol=tol)
    assert FolderDataset(tmp_path, eval_preset="kitti").eval_preset == "kitti"


def test_encoding_option_overrides_meta_json(tmp_path: Path) -> None:
    write_pairs(tmp_path, "mm")
    (tmp_path / "meta.json").write_text(json.dumps({"depth_encoding": "kitti"}))
    mm = FolderDataset(tmp_path, depth_encoding="mm")[0]["depth"]
    kitti = FolderDataset(tmp_path)[0]["depth"]
    np.testing.assert_allclose(kitti.numpy(), mm.numpy() * 1000 / 256, rtol=1e-5)
    with pytest.raises(ConfigError, match="depth_encoding"):
        FolderDataset(tmp_path, depth_encoding="cm")
    (tmp_path / "meta.json").write_text(json.dumps({"depth_encoding": "cm"}))
    with pytest.raises(DataError, match=r"meta\.json: depth_encoding"):
        FolderDataset(tmp_path)
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(DataError, match=r"meta\.json: cannot read"):
        FolderDataset(tmp_path)


def test_png_depth_encoding_is_never_guessed(tmp_path: Path) -> None:
    write_pairs(tmp_path, "mm", n=1)
    with pytest.raises(ConfigError, match="depth_encoding=kitti .* or depth_encoding=mm"):
        FolderDataset(tmp_path)
    np.testing.assert_allclose(FolderDataset(tmp_path, depth_encoding="mm")[0]["depth"][0].numpy(),
                               frame_arrays(0)["depth"], atol=5e-4)
    npy = tmp_path / "npy"
    write_pairs(npy, "npy", n=1)
    assert FolderDataset(npy).depth_encoding == "npy"  # .npy files hold metres: nothing to guess


def test_image_dir_fallback(tmp_path: Path) -> None:
    write_pairs(tmp_path, image_dir="images", n=1)
    assert FolderDataset(tmp_path, depth_encoding="kitti").image_root == tmp_path / "images"
    with pytest.raises(DataError, match=r"photos: image folder not found"):
        FolderDataset(tmp_path, image_dir="photos", depth_encoding="kitti")


def test_intrinsics_sources(tmp_path: Path) -> None:
    write_pairs(tmp_path, n=1)
    sample = FolderDataset(tmp_path, depth_encoding="kitti")[0]
    assert sample["meta"]["intrinsics"] == "assumed"
    np.testing.assert_allclose(sample["K"].numpy(), kitti_like_intrinsics(H, W), rtol=1e-6)
    write_intrinsics(tmp_path / "intrinsics.txt", np.array([[20.0, 0, 16], [0, 21, 12], [0, 0, 1]]))
    sample = FolderDataset(tmp_path, depth_encoding="kitti")[0]
    assert sample["meta"]["intrinsics"].endswith("intrinsics.txt") and sample["K"][1, 1] == 21
    sample = build_dataset(f"folder:{tmp_path},intrinsics=25 26 15.5 11.5,depth_encoding=kitti")[0]  # commas split spec options
    assert sample["meta"]["intrinsics"] == "option"
    np.testing.assert_allclose(sample["K"].numpy(), [[25, 0, 15.5], [0, 26, 11.5], [0, 0, 1]])
    np.testing.assert_allclose(parse_intrinsics("25,26,15.5,11.5"), parse_intrinsics([25, 26, 15.5, 11.5]))
    with pytest.raises(ConfigError, match="intrinsics"):
        parse_intrinsics("25,26")
    with pytest.raises(ConfigError, match="intrinsics"):
        parse_intrinsics("no-such-file.txt")


def test_nyu_style_names(tmp_path: Path) -> None:
    a = frame_arrays(0)
    write_rgb(tmp_path / "rgb" / "rgb_00001.jpg", a["rgb"])
    write_depth(tmp_path / "depth" / "sync_depth_00001.png", a["depth"], "mm")
    ds = FolderDataset(tmp_path, depth_encoding="mm")
    assert ds.names() == ["rgb_00001"]
    assert ds[0]["meta"]["depth_path"].endswith("sync_depth_00001.png")


def test_missing_depth_names_both(tmp_path: Path) -> None:
    write_pairs(tmp_path)
    (tmp_path / "depth" / "000001.png").unlink()
    with pytest.raises(DataError, match=r"rgb/000001\.png: no depth map \(expected .*depth/000001\.png\)"):
        FolderDataset(tmp_path, depth_encoding="kitti")
    (tmp_path / "depth").rename(tmp_path / "gt")
    with pytest.raises(DataError, match=r"depth: depth folder not found"):
        FolderDataset(tmp_path, depth_encoding="kitti")


def test_missing_optional_file_is_named(tmp_path: Path) -> None:
    write_generator_layout(tmp_path)
    (tmp_path / "seg" / "000001.png").unlink()
    with pytest.raises(DataError, match=r"rgb/000001\.png: no seg file"):
        FolderDataset(tmp_path)


def test_size_mismatch_names_both(tmp_path: Path) -> None:
    write_pairs(tmp_path)
    write_depth(tmp_path / "depth" / "000001.png", np.ones((H, W + 1), np.float32))
    ds = FolderDataset(tmp_path, depth_encoding="kitti")
    ds[0]
    with pytest.raises(DataError, match=r"depth/000001\.png: size 33x24 does not match .*rgb/000001\.png \(32x24\)"):
        ds[1]


def test_corrupt_and_wrong_depth_files(tmp_path: Path) -> None:
    write_pairs(tmp_path, n=1)
    depth = tmp_path / "depth" / "000000.png"
    depth.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00 truncated")
    with pytest.raises(DataError, match=r"depth/000000\.png: cannot read image"):
        FolderDataset(tmp_path, depth_encoding="kitti")[0]
    write_rgb(depth, np.zeros((H, W, 3), np.uint8))  # an 8-bit RGB PNG given as depth
    with pytest.raises(DataError, match=r"depth/000000\.png: depth PNG must be 16-bit single-channel"):
        FolderDataset(tmp_path, depth_encoding="kitti")[0]
    write_depth(tmp_path / "rgb" / "000000.png", np.ones((H, W), np.float32))  # and a depth map as RGB
    with pytest.raises(DataError, match=r"rgb/000000\.png: .*expected an 8-bit RGB image"):
        FolderDataset(tmp_path, depth_encoding="kitti")[0]


def test_nan_in_npy_depth(tmp_path: Path) -> None:
    write_pairs(tmp_path, "npy", n=1)
    bad = np.ones((H, W), np.float32)
    bad[3, 4] = np.nan
    np.save(tmp_path / "depth" / "000000.npy", bad)
    with pytest.raises(DataError, match=r"depth/000000\.npy: depth contains NaN"):
        FolderDataset(tmp_path, depth_encoding="npy")[0]


def test_unlabeled_folder(tmp_path: Path) -> None:
    write_rgb(tmp_path / "a" / "x.png", np.zeros((H, W, 3), np.uint8))
    write_rgb(tmp_path / "b.jpg", np.full((H + 2, W, 3), 128, np.uint8))
    ds = build_dataset(f"unlabeled:{tmp_path}")
    assert isinstance(ds, UnlabeledDataset) and ds.eval_preset is None
    assert ds.names() == ["a_x", "b"]
    sample = ds[1]
    assert set(sample) == {"image", "meta"} and sample["image"].shape == (3, H + 2, W)
    assert sample["meta"]["dataset"] == "unlabeled"
    assert UnlabeledDataset(tmp_path, recursive=False).names() == ["b"]
    with_K = build_dataset(f"unlabeled:{tmp_path},intrinsics=20;20;16;12")[0]
    np.testing.assert_allclose(with_K["K"].numpy(), [[20, 0, 16], [0, 20, 12], [0, 0, 1]])


def test_unlabeled_list(tmp_path: Path) -> None:
    write_rgb(tmp_path / "imgs" / "one.png", np.zeros((H, W, 3), np.uint8))
    write_rgb(tmp_path / "other" / "two.png", np.zeros((H, W, 3), np.uint8))
    listing = tmp_path / "imgs" / "list.txt"
    listing.write_text(f"# auxiliary images\none.png\n\n{tmp_path / 'other' / 'two.png'}\n")
    ds = UnlabeledDataset(listing)
    assert len(ds) == 2 and ds.names()[0] == "one" and ds.names()[1].endswith("other_two")
    assert ds[1]["image"].shape == (3, H, W)
    listing.write_text("one.png\nthree.png\n")
    with pytest.raises(DataError, match=r"list\.txt: line 2: image .*three\.png not found"):
        UnlabeledDataset(listing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found"):
        UnlabeledDataset(tmp_path / "empty")


@pytest.mark.realdata
def test_real_kitti_annotated(shared_data: Path) -> None:
    root = shared_data / "kitti_depth_annotated"
    ds = build_dataset(f"folder:{root},depth_encoding=kitti")
    assert ds.names() == ["0000000005", "0000000050", "0000000100"]
    for i in range(len(ds)):
        sample = ds[i]
        depth = sample["depth"][0].numpy()
        assert depth.shape == (375, 1242)
        valid = depth > 0
        assert 0.15 < valid.mean() < 0.25  # measured: 18-21%
        assert depth[valid].min() > 1.0 and depth[valid].max() < 90.0  # measured: 5.1 .. 84.9
        rows = np.nonzero(valid.any(axis=1))[0]
        assert rows.min() >= 119 and rows.max() == 369
        # no K file: KITTI-like intrinsics, which at KITTI's size are KITTI's own
        assert sample["meta"]["intrinsics"] == "assumed"
        np.testing.assert_allclose(sample["K"].numpy(), [[721.5377, 0, 609.5593], [0, 721.5377, 172.854], [0, 0, 1]], rtol=1e-6)


@pytest.mark.realdata
def test_real_nyu_as_folder(shared_data: Path) -> None:
    root = shared_data / "nyu_sync"
    ds = FolderDataset(root, depth_encoding="mm", intrinsics="518.8579,519.4696,325.5825,253.7362")
    depth = ds[0]["depth"][0].numpy()
    assert depth.shape == (480, 640)
    assert depth[depth > 0].min() >= 0.7 and depth.max() <= 8.3 and (depth == 0).any()
