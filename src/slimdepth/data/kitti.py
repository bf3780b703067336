"""KITTI raw reader: RGB frames with depth projected from the Velodyne sweep or annotated maps.

The ground truth follows the KITTI development kit exactly as monodepth2's
``generate_depth_map`` does, so that numbers computed here compare with published ones:
velodyne points with x >= 0 are mapped by ``P_rect_0X @ R_rect_00 @ [R|T]_velo_to_cam``, the
depth is the third homogeneous coordinate, the pixel is ``round(u) - 1`` (MATLAB indexing) and
the nearest point wins where several land on one pixel.

Frames are listed by a split file in monodepth2's format::

    2011_09_26/2011_09_26_drive_0002_sync 0000000069 l

where ``l`` is the left colour camera (``image_02``) and ``r`` the right one (``image_03``), or
in BTS's (image path, ground-truth path, focal length)::

    2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png 2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/0000000069.png 721.5377
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from slimdepth.data.base import DepthDataset, Transform
from slimdepth.data.registry import register_dataset
from slimdepth.data.sample import make_sample
from slimdepth.errors import ConfigError, DataError
from slimdepth.fileio import read_depth, read_list_file, read_rgb
from slimdepth.geometry import points_to_depth_map

#: camera index of each side letter in KITTI split files
SIDE_TO_CAM = {"l": 2, "r": 3}
#: image suffixes tried in order (monodepth2 converts the raw PNGs to JPEG)
KITTI_IMAGE_SUFFIXES = (".png", ".jpg")
VELO_POINT_BYTES = 16  # float32 x, y, z, reflectance
MAX_VELO_RANGE = 500.0  # metres; the HDL-64E reaches ~120 m, so anything beyond is garbage


def read_calib_file(path: str | Path) -> dict[str, np.ndarray]:
    """Parse a KITTI calibration file (``key: numbers`` per line) into float64 arrays.

    Lines whose values are not numbers (``calib_time``) are skipped, as in the devkit.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: calibration file not found")
    out: dict[str, np.ndarray] = {}
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read calibration ({type(exc).__name__})") from None
    for line in lines:
        key, sep, value = line.partition(":")
        if not sep:
            continue
        try:
            out[key.strip()] = np.array([float(v) for v in value.split()], dtype=np.float64)
        except ValueError:
            continue
    return out


def _calib_entry(values: dict[str, np.ndarray], key: str, size: int, path: Path) -> np.ndarray:
    if key not in values:
        raise DataError(f"{path}: calibration has no {key!r}")
    if values[key].size != size:
        raise DataError(f"{path}: {key!r} needs {size} numbers, got {values[key].size}")
    return values[key]


@dataclass(frozen=True)
class KittiCalib:
    """Calibration of one KITTI recording date (rectified cameras and Velodyne extrinsics)."""

    P_rect: dict[int, np.ndarray]  # camera index -> 3x4 rectified projection matrix
    R_rect_00: np.ndarray  # 3x3 rectifying rotation of the reference camera
    velo_to_cam: np.ndarray  # 4x4 rigid transform from Velodyne to camera 0
    image_size: dict[int, tuple[int, int]] = field(default_factory=dict)  # cam -> (H, W) from S_rect
    source: Path = Path(".")  # calib_cam_to_cam.txt, named in errors

    def projection(self, cam: int) -> np.ndarray:
        """The 3x4 ``P_rect_0{cam}``."""
        if cam not in self.P_rect:
            raise DataError(f"{self.source}: calibration has no 'P_rect_0{cam}'")
        return self.P_rect[cam]

    def K(self, cam: int) -> np.ndarray:
        """3x3 intrinsics of rectified camera ``cam`` (the left block of ``P_rect_0{cam}``)."""
        return self.projection(cam)[:, :3].copy()

    def velo_to_image(self, cam: int) -> np.ndarray:
        """3x4 matrix mapping homogeneous Velodyne points to homogeneous pixels of camera ``cam``."""
        rect = np.eye(4)
        rect[:3, :3] = self.R_rect_00
        return self.projection(cam) @ rect @ self.velo_to_cam


def read_kitti_calib(calib_dir: str | Path) -> KittiCalib:
    """Read ``calib_cam_to_cam.txt`` and ``calib_velo_to_cam.txt`` of a KITTI date folder."""
    calib_dir = Path(calib_dir)
    cam_path = calib_dir / "calib_cam_to_cam.txt"
    velo_path = calib_dir / "calib_velo_to_cam.txt"
    cam2cam = read_calib_file(cam_path)
    velo2cam = read_calib_file(velo_path)
    P_rect = {
        cam: _calib_entry(cam2cam, f"P_rect_0{cam}", 12, cam_path).reshape(3, 4)
        for cam in range(4)
        if f"P_rect_0{cam}" in cam2cam
    }
    if not P_rect:
        raise DataError(f"{cam_path}: calibration has no 'P_rect_0X' matrix")
    R_rect_00 = _calib_entry(cam2cam, "R_rect_00", 9, cam_path).reshape(3, 3)
    extrinsic = np.eye(4)
    extrinsic[:3, :3] = _calib_entry(velo2cam, "R", 9, velo_path).reshape(3, 3)
    extrinsic[:3, 3] = _calib_entry(velo2cam, "T", 3, velo_path)
    sizes = {}
    for cam in range(4):
        s = cam2cam.get(f"S_rect_0{cam}")
        if s is not None and s.size == 2:
            sizes[cam] = (int(round(s[1])), int(round(s[0])))  # file stores W H
    return KittiCalib(P_rect=P_rect, R_rect_00=R_rect_00, velo_to_cam=extrinsic, image_size=sizes, source=cam_path)


def load_velodyne(path: str | Path) -> np.ndarray:
    """Read a Velodyne sweep ``.bin`` as an Nx4 float32 array (x, y, z, reflectance)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: Velodyne file not found")
    size = path.stat().st_size
    if size % VELO_POINT_BYTES:
        raise DataError(f"{path}: Velodyne file size {size} bytes is not a multiple of {VELO_POINT_BYTES} (truncated or not a KITTI sweep)")
    if size == 0:
        raise DataError(f"{path}: Velodyne file is empty")
    points = np.fromfile(path, dtype=np.float32).reshape(-1, 4)
    xyz = points[:, :3]
    if not np.isfinite(xyz).all() or np.abs(xyz).max() > MAX_VELO_RANGE:
        raise DataError(f"{path}: values are not float32 (x, y, z, reflectance) points within "
                        f"{MAX_VELO_RANGE:g} m: not a KITTI Velodyne sweep")
    return points


def project_velodyne(
    velo_path: str | Path,
    calib_dir: str | Path | KittiCalib,
    cam: int = 2,
    image_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Sparse HxW float32 depth (metres, 0 = empty) of a Velodyne sweep seen by camera ``cam``.

    Reproduces the KITTI devkit / monodepth2 ``generate_depth_map``: only points in front of
    the sensor (velodyne x >= 0), depth = projected z, pixel = round - 1, nearest point kept.
    ``image_shape`` (H, W) defaults to the calibration's ``S_rect_0{cam}``.
    """
    calib = calib_dir if isinstance(calib_dir, KittiCalib) else read_kitti_calib(calib_dir)
    if image_shape is None:
        if cam not in calib.image_size:
            raise DataError(f"{calib.source}: no 'S_rect_0{cam}'; pass image_shape")
        image_shape = calib.image_size[cam]
    points = load_velodyne(velo_path).astype(np.float64)
    points = points[points[:, 0] >= 0]
    points[:, 3] = 1.0
    uvw = points @ calib.velo_to_image(cam).T
    z = uvw[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = uvw[:, 0] / z
        v = uvw[:, 1] / z
    height, width = image_shape
    return points_to_depth_map(u, v, z, height, width, offset=-1)


@dataclass(frozen=True)
class KittiFrame:
    """One entry of a split: ``folder`` is ``date/drive``, ``frame`` the index, ``cam`` 2 or 3."""

    folder: str
    frame: int
    cam: int

    @property
    def date(self) -> str:
        return self.folder.split("/")[0]

    @property
    def drive(self) -> str:
        return self.folder.rstrip("/").split("/")[-1]

    @property
    def frame_id(self) -> str:
        return f"{self.frame:010d}"

    @property
    def name(self) -> str:
        side = "l" if self.cam == 2 else "r"
        return f"{self.drive}_{self.frame_id}_{side}"


def _bts_frame(token: str) -> KittiFrame | None:
    """``DATE/DRIVE/image_0X/data/FRAME.png`` (BTS split files) as a frame, else None."""
    parts = token.strip("/").split("/")
    if len(parts) == 5 and parts[2] in ("image_02", "image_03") and parts[3] == "data":
        stem, _, suffix = parts[4].rpartition(".")
        if stem.isdigit() and f".{suffix.lower()}" in KITTI_IMAGE_SUFFIXES:
            return KittiFrame(f"{parts[0]}/{parts[1]}", int(stem), int(parts[2][-1]))
    return None


def stereo_baseline(calib: KittiCalib) -> float:
    """The distance (m) between the rectified left and right colour cameras:
    P_rect_02[0, 3] / P_rect_02[0, 0] - P_rect_03[0, 3] / P_rect_03[0, 0] (about 0.54 m)."""
    p2, p3 = calib.projection(2), calib.projection(3)
    baseline = float(p2[0, 3] / p2[0, 0] - p3[0, 3] / p3[0, 0])
    if not baseline > 0:
        raise DataError(f"{calib.source}: P_rect_02 and P_rect_03 give a stereo baseline of {baseline:.4f} m")
    return baseline


def read_kitti_split(path: str | Path, side: str = "l") -> list[KittiFrame]:
    """Parse a split file: monodepth2's ``FOLDER FRAME [l|r]`` lines (``side`` when the letter
    is absent) or BTS's ``DATE/DRIVE/image_0X/data/FRAME.png GT_PATH FOCAL`` lines."""
    path = Path(path)
    frames = []
    for lineno, line in read_list_file(path):
        parts = line.split()
        bts = _bts_frame(parts[0])
        if bts is not None:
            frames.append(bts)
            continue
        letter = parts[2] if len(parts) == 3 else side
        ok = len(parts) in (2, 3) and "/" in parts[0].strip("/") and parts[1].isdigit() and letter in SIDE_TO_CAM
        if not ok:
            raise DataError(f"{path}: line {lineno}: expected 'DATE/DRIVE FRAME [l|r]', got {line!r}")
        frames.append(KittiFrame(parts[0].strip("/"), int(parts[1]), SIDE_TO_CAM[letter]))
    if not frames:
        raise DataError(f"{path}: split file lists no frames")
    return frames


@register_dataset("kitti")
class KittiDataset(DepthDataset):
    """KITTI raw frames with Velodyne or annotated ground truth.

    Options: ``root`` (raw root holding the date folders), ``split`` (split file; default:
    every frame of every drive under root for ``side``), ``gt`` (``"velodyne"`` projected
    sweeps or ``"annotated"`` maps from ``annotated_root``, searched in ``train`` and ``val``),
    ``side`` (``"l"``/``"r"``, used when the split omits it), ``lidar`` (with annotated gt,
    also return the projected sweep as ``lidar_depth``), ``right`` (also return ``image_03`` of
    the same frame as ``right_image``, with the stereo baseline from ``P_rect_02`` and
    ``P_rect_03`` in ``meta['baseline']``; left frames only). ``K`` is ``P_rect_0X[:3, :3]``.
    Without a split and with annotated gt, only frames that have an annotated map are listed
    (the first and last frames of each drive have none).
    """

    dataset_name = "kitti"
    eval_preset = "kitti"

    def __init__(
        self,
        root: str | Path,
        split: str | Path | None = None,
        gt: Literal["velodyne", "annotated"] = "velodyne",
        annotated_root: str | Path | None = None,
        side: Literal["l", "r"] = "l",
        lidar: bool = False,
        right: bool = False,
        transform: Transform | None = None,
    ) -> None:
        super().__init__(transform)
        if not isinstance(right, bool):
            raise ConfigError(f"kitti: right must be true or false, got {right!r}")
        if gt not in ("velodyne", "annotated"):
            raise ConfigError(f"kitti: gt must be 'velodyne' or 'annotated', got {gt!r}")
        if side not in SIDE_TO_CAM:
            raise ConfigError(f"kitti: side must be 'l' or 'r', got {side!r}")
        if gt == "annotated" and annotated_root is None:
            raise ConfigError("kitti: gt=annotated needs annotated_root (the data_depth_annotated folder)")
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: KITTI raw root not found")
        self.gt = gt
        self.lidar = bool(lidar)
        self.annotated_root = Path(annotated_root) if annotated_root is not None else None
        if self.annotated_root is not None and not self.annotated_root.is_dir():
            raise DataError(f"{self.annotated_root}: annotated depth root not found")
        self.frames = read_kitti_split(split, side) if split is not None else self._scan(SIDE_TO_CAM[side])
        self.right = right
        if right and any(f.cam != 2 for f in self.frames):
            raise ConfigError("kitti: right=true pairs each left image (image_02) with image_03; use side=l and a "
                              "split of left frames")
        self._calib: dict[str, KittiCalib] = {}

    def _scan(self, cam: int) -> list[KittiFrame]:
        frames = []
        for image in self.root.glob(f"*/*/image_0{cam}/data/*"):
            if image.suffix.lower() in KITTI_IMAGE_SUFFIXES and image.stem.isdigit():
                drive_dir = image.parents[2]
                frame = KittiFrame(f"{drive_dir.parent.name}/{drive_dir.name}", int(image.stem), cam)
                if self.gt == "velodyne" or self._annotated_path(frame, must_exist=False) is not None:
                    frames.append(frame)
        frames = sorted(set(frames), key=lambda f: (f.folder, f.frame))
        if not frames:
            raise DataError(f"{self.root}: no KITTI frames found (expected DATE/DRIVE/image_0{cam}/data/*.png)")
        return frames

    def __len__(self) -> int:
        return len(self.frames)

    def names(self) -> list[str]:
        return [f.name for f in self.frames]

    def source_files(self) -> list[Path]:
        files: list[Path] = []
        for date in sorted({f.date for f in self.frames}):
            files += [self.root / date / n for n in ("calib_cam_to_cam.txt", "calib_velo_to_cam.txt")]
        for frame in self.frames:
            base = self.root / frame.folder / f"image_0{frame.cam}" / "data" / frame.frame_id
            files += [base.with_suffix(s) for s in KITTI_IMAGE_SUFFIXES]
            files.append(self.velodyne_path(frame))
            if self.gt == "annotated":
                files += self._annotated_candidates(frame)
        return [p for p in files if p.is_file()]

    def source_folders(self) -> list[Path]:
        folders = {self.root / f.folder / f"image_0{f.cam}" / "data" for f in self.frames}
        folders |= {self.root / f.folder / "velodyne_points" / "data" for f in self.frames}
        if self.gt == "annotated":
            folders |= {p.parent for f in self.frames for p in self._annotated_candidates(f)}
        return sorted(p for p in folders if p.is_dir())

    def calib(self, date: str) -> KittiCalib:
        """Calibration of a date folder, read once and cached."""
        if date not in self._calib:
            self._calib[date] = read_kitti_calib(self.root / date)
        return self._calib[date]

    def image_path(self, frame: KittiFrame) -> Path:
        """The frame's image (.png or .jpg); DataError naming the expected file when absent."""
        base = self.root / frame.folder / f"image_0{frame.cam}" / "data" / frame.frame_id
        for suffix in KITTI_IMAGE_SUFFIXES:
            if base.with_suffix(suffix).is_file():
                return base.with_suffix(suffix)
        raise DataError(f"{base.with_suffix('.png')}: KITTI image not found (nor .jpg)")

    def velodyne_path(self, frame: KittiFrame) -> Path:
        return self.root / frame.folder / "velodyne_points" / "data" / f"{frame.frame_id}.bin"

    def _annotated_candidates(self, frame: KittiFrame) -> list[Path]:
        """Where the frame's annotated depth may be: the ``train`` or the ``val`` part."""
        assert self.annotated_root is not None
        rel = Path(frame.drive) / "proj_depth" / "groundtruth" / f"image_0{frame.cam}" / f"{frame.frame_id}.png"
        return [self.annotated_root / part / rel for part in ("train", "val")]

    def _annotated_path(self, frame: KittiFrame, must_exist: bool = True) -> Path | None:
        candidates = self._annotated_candidates(frame)
        for path in candidates:
            if path.is_file():
                return path
        if must_exist:
            raise DataError(f"{candidates[0]}: annotated depth not found (nor {candidates[1]})")
        return None

    def load(self, index: int) -> dict[str, Any]:
        frame = self.frames[index]
        image_path = self.image_path(frame)
        image = read_rgb(image_path)
        shape = image.shape[:2]
        calib = self.calib(frame.date)
        expected = calib.image_size.get(frame.cam)
        if expected is not None and expected != shape:
            raise DataError(
                f"{image_path}: image is {shape[1]}x{shape[0]} but {calib.source} says "
                f"S_rect_0{frame.cam} = {expected[1]}x{expected[0]} (resized images need their own calibration)"
            )
        extras: dict[str, np.ndarray] = {}
        if self.gt == "velodyne":
            depth = project_velodyne(self.velodyne_path(frame), calib, frame.cam, shape)
        else:
            depth_path = self._annotated_path(frame)
            assert depth_path is not None
            depth = read_depth(depth_path, "kitti")
            if depth.shape != shape:
                raise DataError(f"{depth_path}: depth is {depth.shape[1]}x{depth.shape[0]} but image {image_path} is {shape[1]}x{shape[0]}")
            if self.lidar:
                extras["lidar_depth"] = project_velodyne(self.velodyne_path(frame), calib, frame.cam, shape)
        meta = {
            "name": frame.name,
            "path": str(image_path),
            "dataset": self.dataset_name,
            "orig_size": shape,
            "folder": frame.folder,
            "frame": frame.frame,
            "side": "l" if frame.cam == 2 else "r",
        }
        if self.right:
            right_path = self.image_path(replace(frame, cam=3))
            extras["right_image"] = read_rgb(right_path)
            if extras["right_image"].shape[:2] != shape:
                raise DataError(f"{right_path}: the right image's size differs from {image_path}'s")
            meta["baseline"] = stereo_baseline(calib)
        return make_sample(image, depth=depth, K=calib.K(frame.cam), meta=meta, **extras)
