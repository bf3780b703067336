"""NYU Depth v2 reader for the two layouts the community uses.

* ``sync`` (BTS, AdaBins): ``rgb_XXXXX.jpg|png`` with ``sync_depth_XXXXX.png`` (uint16
  millimetres, 0 = hole), in the same folder or in parallel ``rgb/`` and ``depth/`` folders,
  found recursively under ``root`` or listed by a BTS split file
  (``/kitchen_0028b/rgb_00045.jpg /kitchen_0028b/sync_depth_00045.png 518.8579``).
* ``h5`` (sparse-to-dense, FastDepth): one ``.h5`` per frame with ``rgb`` (3xHxW uint8) and
  ``depth`` (HxW float metres); ``root`` is one file or a folder searched recursively.

Every sample gets the standard NYU intrinsics (given at 640x480, scaled to the image size).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from slimdepth.data.base import DepthDataset, Transform
from slimdepth.data.registry import register_dataset
from slimdepth.data.sample import make_sample
from slimdepth.errors import ConfigError, DataError
from slimdepth.fileio import (
    IMAGE_SUFFIXES,
    check_depth_array,
    check_same_size,
    list_files,
    read_depth,
    read_list_file,
    read_rgb,
    unique_names,
)
from slimdepth.geometry import scale_intrinsics

NYU_WIDTH, NYU_HEIGHT = 640, 480
NYU_FX, NYU_FY, NYU_CX, NYU_CY = 518.8579, 519.4696, 325.5825, 253.7362
RGB_PREFIX, DEPTH_PREFIX = "rgb_", "sync_depth_"


def nyu_intrinsics(height: int = NYU_HEIGHT, width: int = NYU_WIDTH) -> np.ndarray:
    """The standard NYU Depth v2 Kinect intrinsics, scaled to an image of (height, width)."""
    K = np.array([[NYU_FX, 0.0, NYU_CX], [0.0, NYU_FY, NYU_CY], [0.0, 0.0, 1.0]])
    if (height, width) == (NYU_HEIGHT, NYU_WIDTH):
        return K
    return scale_intrinsics(K, width / NYU_WIDTH, height / NYU_HEIGHT)


@dataclass(frozen=True)
class NyuItem:
    """One frame: an RGB + depth pair (``sync``) or one HDF5 file (``depth`` is None)."""

    name: str
    image: Path
    depth: Path | None = None


def _sync_depth_for(image: Path) -> list[Path]:
    """Where the depth of ``rgb_XXXXX.ext`` may be: beside it, or in a parallel ``depth/``."""
    depth_name = DEPTH_PREFIX + image.stem[len(RGB_PREFIX):] + ".png"
    candidates = [image.parent / depth_name]
    if image.parent.name == "rgb":
        candidates.append(image.parent.parent / "depth" / depth_name)
    return candidates


def _name_for(path: Path, root: Path) -> str:
    """Relative path without suffix, joined by '_'; a parallel ``rgb/`` folder is left out."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if len(parts) > 1 and parts[-2] == "rgb":
        del parts[-2]
    return "_".join(parts)


def scan_sync(root: Path) -> list[NyuItem]:
    """Every ``rgb_*`` image under ``root`` paired with its ``sync_depth_*`` map."""
    images = [p for p in list_files(root, IMAGE_SUFFIXES, recursive=True) if p.name.startswith(RGB_PREFIX)]
    items = []
    for image in images:
        candidates = _sync_depth_for(image)
        depth = next((c for c in candidates if c.is_file()), None)
        if depth is None:
            raise DataError(f"{image}: no depth map (expected {' or '.join(map(str, candidates))})")
        items.append(NyuItem(_name_for(image, root), image, depth))
    return items


def read_bts_split(path: Path, root: Path) -> list[NyuItem]:
    """Parse a BTS split file (``RGB DEPTH [FOCAL]`` per line, paths relative to ``root``)."""
    items = []
    for lineno, line in read_list_file(path):
        parts = line.split()
        ok = len(parts) in (2, 3)
        if ok and len(parts) == 3:
            try:
                float(parts[2])
            except ValueError:
                ok = False
        if not ok:
            raise DataError(f"{path}: line {lineno}: expected 'RGB_PATH DEPTH_PATH [FOCAL]', got {line!r}")
        image = root / parts[0].lstrip("/")
        items.append(NyuItem(_name_for(image, root), image, root / parts[1].lstrip("/")))
    if not items:
        raise DataError(f"{path}: split file lists no frames")
    return items


def scan_h5(root: Path) -> list[NyuItem]:
    """The ``.h5`` frames of ``root`` (a file, or a folder searched recursively)."""
    if root.is_file():
        return [NyuItem(root.stem, root)]
    files = sorted(p for p in root.rglob("*.h5") if p.is_file())
    return [NyuItem(_name_for(p, root), p) for p in files]


def read_nyu_h5(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one sparse-to-dense HDF5 frame: RGB HxWx3 uint8 and depth HxW float32 metres."""
    import h5py  # lazy: only the HDF5 layout needs it, and its import is slow

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("rgb", "depth") if k not in f]
            if missing:
                present = ", ".join(map(repr, f.keys())) or "nothing"
                raise DataError(f"{path}: HDF5 file has no {', '.join(map(repr, missing))} dataset (has {present})")
            rgb = np.asarray(f["rgb"])
            depth = np.asarray(f["depth"])
    except OSError as exc:
        raise DataError(f"{path}: cannot read HDF5 ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if rgb.ndim != 3 or rgb.shape[0] != 3 or rgb.dtype != np.uint8:
        raise DataError(f"{path}: 'rgb' must be 3xHxW uint8, got {rgb.dtype} {rgb.shape}")
    depth = check_depth_array(depth, f"{path} 'depth'")
    image = np.ascontiguousarray(rgb.transpose(1, 2, 0))
    check_same_size(image.shape[:2], path, depth.shape, f"{path} 'depth'")
    return image, depth


@register_dataset("nyu")
class NyuDataset(DepthDataset):
    """NYU Depth v2 in the BTS ``sync`` layout or the sparse-to-dense ``h5`` layout.

    Options: ``root``, ``split`` (BTS split file, implies ``sync``), ``layout``
    (``"auto"``, ``"sync"`` or ``"h5"``; auto picks the layout found under root and refuses
    to guess when both are present). Depth in metres, 0 = hole; ``K`` is the standard one.
    """

    dataset_name = "nyu"
    eval_preset = "nyu"

    def __init__(
        self,
        root: str | Path,
        split: str | Path | None = None,
        layout: Literal["auto", "sync", "h5"] = "auto",
        transform: Transform | None = None,
    ) -> None:
        super().__init__(transform)
        if layout not in ("auto", "sync", "h5"):
            raise ConfigError(f"nyu: layout must be 'auto', 'sync' or 'h5', got {layout!r}")
        self.root = Path(root)
        if not self.root.exists():
            raise DataError(f"{self.root}: NYU root not found")
        if split is not None:
            if layout == "h5":
                raise ConfigError("nyu: a split file lists sync pairs; it cannot be used with layout=h5")
            self.layout, self.items = "sync", read_bts_split(Path(split), self.root)
        else:
            self.layout, self.items = self._discover(layout)
        unique_names([item.name for item in self.items], [item.image for item in self.items])

    def _discover(self, layout: str) -> tuple[str, list[NyuItem]]:
        if self.root.is_file():
            if self.root.suffix.lower() != ".h5" or layout == "sync":
                raise DataError(f"{self.root}: a single-file NYU root must be an .h5 frame")
            return "h5", scan_h5(self.root)
        sync = scan_sync(self.root) if layout in ("auto", "sync") else []
        h5 = scan_h5(self.root) if layout in ("auto", "h5") else []
        if sync and h5:
            raise ConfigError(f"nyu: {self.root} holds both rgb_*/sync_depth_* pairs and .h5 files; pass layout=sync or layout=h5")
        if not sync and not h5:
            wanted = {"auto": "rgb_*/sync_depth_* pairs or .h5 files", "sync": "rgb_*/sync_depth_* pairs", "h5": ".h5 files"}[layout]
            raise DataError(f"{self.root}: no NYU frames found ({wanted})")
        return ("sync", sync) if sync else ("h5", h5)

    def __len__(self) -> int:
        return len(self.items)

    def names(self) -> list[str]:
        return [item.name for item in self.items]

    def source_files(self) -> list[Path]:
        return [p for item in self.items for p in (item.image, item.depth) if p is not None]

    def source_folders(self) -> list[Path]:
        return [self.root] if self.root.is_dir() else []  # scanned recursively for pairs or .h5 files

    def load(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        if item.depth is None:
            image, depth = read_nyu_h5(item.image)
        else:
            image = read_rgb(item.image)
            depth = read_depth(item.depth, "mm")
            check_same_size(image.shape[:2], item.image, depth.shape, item.depth)
        h, w = image.shape[:2]
        meta: dict[str, Any] = {"name": item.name, "path": str(item.image), "dataset": self.dataset_name, "orig_size": (h, w)}
        if item.depth is not None:
            meta["depth_path"] = str(item.depth)
        return make_sample(image, depth=depth, K=nyu_intrinsics(h, w), meta=meta)
