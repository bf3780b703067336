"""Readers for plain folders: labeled RGB + depth pairs (``folder``) and bare images (``unlabeled``).

A labeled folder looks like the ones our synthetic generator writes, MAI2022 and most
hand-made datasets::

    root/rgb/000000.png      (or image/, images/)     colour image
    root/depth/000000.png    uint16 PNG (kitti: /256, mm: /1000) or .npy metres
    root/seg/000000.png      optional label map (255 = ignore)
    root/lidar/000000.png    optional sparse depth, same encoding -> ``lidar_depth``
    root/right/000000.png    optional right stereo view -> ``right_image``
    root/K/000000.txt        optional per-frame intrinsics (or one root/K.txt)
    root/meta.json           optional {"depth_encoding": ..., "eval_preset": ..., "baseline": metres}

Files are matched by their path relative to each folder, without suffix; a depth stem may
also use NYU's ``sync_depth_`` prefix for an ``rgb_`` image.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slimdepth.data.base import DepthDataset, Transform
from slimdepth.data.registry import register_dataset
from slimdepth.data.sample import make_sample
from slimdepth.errors import ConfigError, DataError
from slimdepth.fileio import (
    DEPTH_ENCODINGS,
    IMAGE_SUFFIXES,
    check_same_size,
    list_files,
    list_images,
    parse_intrinsics,
    read_depth,
    read_intrinsics,
    read_list_file,
    read_rgb,
    read_seg,
    unique_names,
)
from slimdepth.geometry import kitti_like_intrinsics

IMAGE_DIR_FALLBACKS = ("rgb", "image", "images")
ROOT_INTRINSICS_FILES = ("K.txt", "intrinsics.txt", "K.json", "intrinsics.json")
INTRINSICS_SUFFIXES = (".txt", ".json")


def read_folder_meta(root: Path) -> dict[str, Any]:
    """The dataset's ``meta.json`` as a dict ({} when absent)."""
    path = root / "meta.json"
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read dataset metadata ({type(exc).__name__}: {exc})") from None
    if not isinstance(meta, dict):
        raise DataError(f"{path}: dataset metadata must be a JSON object")
    return meta


def _key(path: Path, folder: Path) -> str:
    """Path relative to ``folder`` without its suffix, in POSIX form (the matching key)."""
    return path.relative_to(folder).with_suffix("").as_posix()


def index_files(folder: Path, suffixes: Sequence[str]) -> dict[str, Path]:
    """Files under ``folder`` (recursively) with one of ``suffixes``, by matching key."""
    found: dict[str, Path] = {}
    for path in list_files(folder, tuple(suffixes), recursive=True):
        key = _key(path, folder)
        if key in found:
            raise DataError(f"{path}: ambiguous, {found[key]} has the same name")
        found[key] = path
    return found


def _nyu_variant(key: str) -> str | None:
    """``a/rgb_00001`` -> ``a/sync_depth_00001`` (NYU naming), else None."""
    head, _, stem = key.rpartition("/")
    if not stem.startswith("rgb_"):
        return None
    return f"{head}/sync_depth_{stem[4:]}" if head else f"sync_depth_{stem[4:]}"


@dataclass(frozen=True)
class FolderItem:
    """The files of one labeled frame (None where the optional folder is absent)."""

    name: str
    image: Path
    depth: Path
    seg: Path | None = None
    lidar: Path | None = None
    right: Path | None = None
    K: Path | None = None


@register_dataset("folder")
class FolderDataset(DepthDataset):
    """RGB + depth pairs in sibling folders, matched by file name.

    Options: ``root``; ``image_dir`` (``rgb``, falling back to ``image``/``images``);
    ``depth_dir``; ``depth_encoding`` (``kitti`` /256, ``mm`` /1000, ``npy`` metres; default
    from ``meta.json``, else ``npy`` for .npy depth files; PNGs need it stated); ``seg_dir``, ``lidar_dir``, ``right_dir`` (used when
    the folder exists; ``None`` disables); ``intrinsics`` (``"fx,fy,cx,cy"`` or a file);
    ``eval_preset`` (default from ``meta.json``).

    Intrinsics come from the ``intrinsics`` option, else ``K/<name>.txt`` per frame, else one
    ``K.txt``/``intrinsics.txt`` in root. The contract needs ``K`` on labeled data (point
    clouds, virtual-normal loss, resizing), so when none is given a KITTI-like camera
    (:func:`~slimdepth.geometry.kitti_like_intrinsics`) is assumed and ``meta['intrinsics']``
    says ``'assumed'``; otherwise it names the source (``'option'`` or the file).
    """

    dataset_name = "folder"

    def __init__(
        self,
        root: str | Path,
        image_dir: str = "rgb",
        depth_dir: str = "depth",
        depth_encoding: str | None = None,
        seg_dir: str | None = "seg",
        lidar_dir: str | None = "lidar",
        right_dir: str | None = "right",
        intrinsics: str | Sequence[float] | None = None,
        eval_preset: str | None = None,
        transform: Transform | None = None,
    ) -> None:
        super().__init__(transform)
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: dataset folder not found")
        meta = read_folder_meta(self.root)
        self.depth_encoding = self._encoding(depth_encoding, meta, self.root / depth_dir)
        self.eval_preset = eval_preset if eval_preset is not None else meta.get("eval_preset")
        classes = meta.get("classes")
        if classes is not None and not isinstance(classes, list):
            raise DataError(f"{self.root / 'meta.json'}: classes must be a list of class names")
        self.num_classes = len(classes) if classes is not None else None
        baseline = meta.get("baseline")
        if baseline is not None and (isinstance(baseline, bool) or not isinstance(baseline, (int, float)) or not baseline > 0):
            raise DataError(f"{self.root / 'meta.json'}: baseline must be a positive number of metres, got {baseline!r}")
        self.baseline = float(baseline) if baseline is not None else None
        self.K_option = parse_intrinsics(intrinsics) if intrinsics is not None else None
        root_K = next((self.root / n for n in ROOT_INTRINSICS_FILES if (self.root / n).is_file()), None)
        self.root_K = (read_intrinsics(root_K), str(root_K)) if root_K is not None else None
        self.image_root = self._image_root(image_dir)
        self.items = self._pair(depth_dir, seg_dir, lidar_dir, right_dir)

    def _encoding(self, option: str | None, meta: dict[str, Any], depth_root: Path) -> str:
        """The depth encoding: the option, else ``meta.json``, else ``npy`` for .npy files.

        16-bit PNGs are never guessed: KITTI's value/256 and NYU/MAI's millimetres look alike,
        and reading one as the other silently scales every depth by 3.9.
        """
        if option is not None:
            if option not in DEPTH_ENCODINGS:
                raise ConfigError(f"folder: depth_encoding must be one of {', '.join(DEPTH_ENCODINGS)}, got {option!r}")
            return option
        value = meta.get("depth_encoding")
        if value is None:
            has_png = depth_root.is_dir() and any(depth_root.rglob("*.png"))
            if depth_root.is_dir() and any(depth_root.rglob("*.npy")) and not has_png:
                return "npy"
            raise ConfigError(
                f"{self.root}: say how the depth PNGs are encoded: add depth_encoding=kitti (value/256 m) "
                "or depth_encoding=mm (value/1000 m, NYU and MAI2022) to the dataset spec, or to meta.json"
            )
        if value not in DEPTH_ENCODINGS:
            raise DataError(f"{self.root / 'meta.json'}: depth_encoding must be one of {', '.join(DEPTH_ENCODINGS)}, got {value!r}")
        return value

    def _image_root(self, image_dir: str) -> Path:
        names = IMAGE_DIR_FALLBACKS if image_dir == "rgb" else (image_dir,)
        for name in names:
            if (self.root / name).is_dir():
                return self.root / name
        raise DataError(f"{self.root / image_dir}: image folder not found (tried {', '.join(names)})")

    def _optional(self, name: str | None, suffixes: Sequence[str]) -> tuple[Path, dict[str, Path]] | None:
        if name is None or not (self.root / name).is_dir():
            return None
        return self.root / name, index_files(self.root / name, suffixes)

    def _pair(self, depth_dir: str, seg_dir: str | None, lidar_dir: str | None, right_dir: str | None) -> list[FolderItem]:
        depth_root = self.root / depth_dir
        if not depth_root.is_dir():
            raise DataError(f"{depth_root}: depth folder not found (use the 'unlabeled' dataset for images without depth)")
        depth_suffix = ".npy" if self.depth_encoding == "npy" else ".png"
        depths = index_files(depth_root, (depth_suffix,))
        optional = {
            "seg": self._optional(seg_dir, (".png",)),
            "lidar": self._optional(lidar_dir, (depth_suffix,)),
            "right": self._optional(right_dir, IMAGE_SUFFIXES),
            "K": self._optional("K", INTRINSICS_SUFFIXES),
        }
        self.scanned = [self.image_root, depth_root] + [found[0] for found in optional.values() if found is not None]
        items = []
        for key, image in index_files(self.image_root, IMAGE_SUFFIXES).items():
            variant = _nyu_variant(key)
            depth = depths.get(key) or (depths.get(variant) if variant else None)
            if depth is None:
                raise DataError(f"{image}: no depth map (expected {depth_root / (key + depth_suffix)})")
            extra: dict[str, Path | None] = {}
            for what, found in optional.items():
                if found is None:
                    extra[what] = None
                    continue
                folder, index = found
                if key not in index:
                    raise DataError(f"{image}: no {what} file in {folder} (expected {folder / key}.*)")
                extra[what] = index[key]
            items.append(FolderItem(key.replace("/", "_"), image, depth, **extra))
        if not items:
            raise DataError(f"{self.image_root}: no images found")
        unique_names([i.name for i in items], [i.image for i in items])
        return items

    def __len__(self) -> int:
        return len(self.items)

    def names(self) -> list[str]:
        return [item.name for item in self.items]

    def source_files(self) -> list[Path]:
        files = [p for item in self.items for p in (item.image, item.depth, item.seg, item.lidar, item.right, item.K)
                 if p is not None]
        files += [p for p in (self.root / "meta.json", *(self.root / n for n in ROOT_INTRINSICS_FILES)) if p.is_file()]
        return files

    def source_folders(self) -> list[Path]:
        return list(self.scanned)

    def _intrinsics(self, item: FolderItem, height: int, width: int) -> tuple[np.ndarray, str]:
        if self.K_option is not None:
            return self.K_option, "option"
        if item.K is not None:
            return read_intrinsics(item.K), str(item.K)
        if self.root_K is not None:
            return self.root_K
        return kitti_like_intrinsics(height, width), "assumed"

    def load(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        image = read_rgb(item.image)
        shape = image.shape[:2]
        depth = read_depth(item.depth, self.depth_encoding)  # type: ignore[arg-type]
        check_same_size(shape, item.image, depth.shape, item.depth)
        extras: dict[str, np.ndarray] = {}
        seg = None
        if item.seg is not None:
            seg = read_seg(item.seg)
            check_same_size(shape, item.image, seg.shape, item.seg)
            if self.num_classes is not None:
                stray = seg[(seg >= self.num_classes) & (seg != 255)]
                if stray.size:
                    raise DataError(f"{item.seg}: label {int(stray[0])} is neither one of the {self.num_classes} "
                                    "classes of meta.json nor 255 (ignore)")
        if item.lidar is not None:
            extras["lidar_depth"] = read_depth(item.lidar, self.depth_encoding)  # type: ignore[arg-type]
            check_same_size(shape, item.image, extras["lidar_depth"].shape, item.lidar)
        if item.right is not None:
            extras["right_image"] = read_rgb(item.right)
            check_same_size(shape, item.image, extras["right_image"].shape, item.right)
        K, source = self._intrinsics(item, *shape)
        meta = {
            "name": item.name,
            "path": str(item.image),
            "dataset": self.dataset_name,
            "orig_size": shape,
            "depth_path": str(item.depth),
            "intrinsics": source,
        }
        if self.baseline is not None and item.right is not None:
            meta["baseline"] = self.baseline  # the stereo baseline meta.json records (m)
        return make_sample(image, depth=depth, K=K, seg=seg, meta=meta, **extras)


def read_image_list(path: Path) -> list[Path]:
    """Image paths listed one per line (blank lines and ``#`` comments skipped); relative
    paths are resolved against the list's folder. Missing files are reported with the line."""
    images = []
    for lineno, entry in read_list_file(path, "image list"):
        image = Path(entry) if Path(entry).is_absolute() else path.parent / entry
        if not image.is_file():
            raise DataError(f"{path}: line {lineno}: image {image} not found")
        images.append(image)
    return images


def _image_name(image: Path, base: Path) -> str:
    try:
        rel = image.relative_to(base)
    except ValueError:
        rel = Path(*image.parts[1:]) if image.is_absolute() else image
    return rel.with_suffix("").as_posix().replace("/", "_")


@register_dataset("unlabeled")
class UnlabeledDataset(DepthDataset):
    """Images without depth, for distillation with auxiliary data and for prediction.

    Options: ``root`` (a folder, searched recursively unless ``recursive=False``, or a text
    file listing image paths), ``intrinsics`` (``"fx,fy,cx,cy"`` or a file; adds ``K``).
    Samples carry ``image`` and ``meta`` only (plus ``K`` when intrinsics are given).
    """

    dataset_name = "unlabeled"

    def __init__(
        self,
        root: str | Path,
        recursive: bool = True,
        intrinsics: str | Sequence[float] | None = None,
        transform: Transform | None = None,
    ) -> None:
        super().__init__(transform)
        self.root = Path(root)
        if self.root.is_dir():
            base, images = self.root, list_images(self.root, recursive=bool(recursive))
        elif self.root.is_file():
            base, images = self.root.parent, read_image_list(self.root)
        else:
            raise DataError(f"{self.root}: image folder or list not found")
        if not images:
            raise DataError(f"{self.root}: no images found")
        self.images = images
        self._names = [_image_name(p, base) for p in images]
        unique_names(self._names, images)
        self.K = parse_intrinsics(intrinsics) if intrinsics is not None else None

    def __len__(self) -> int:
        return len(self.images)

    def names(self) -> list[str]:
        return list(self._names)

    def source_files(self) -> list[Path]:
        return list(self.images) + ([self.root] if self.root.is_file() else [])

    def source_folders(self) -> list[Path]:
        return [self.root] if self.root.is_dir() else []

    def load(self, index: int) -> dict[str, Any]:
        path = self.images[index]
        image = read_rgb(path)
        meta = {"name": self._names[index], "path": str(path), "dataset": self.dataset_name, "orig_size": image.shape[:2]}
        return make_sample(image, K=self.K, meta=meta)
