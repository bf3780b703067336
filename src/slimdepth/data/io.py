"""Reading and writing images, depth maps, label maps and intrinsics, with clear errors.

Every reader names the offending file in its :class:`DataError`, so a user with a broken
dataset learns which file to fix. Writers are atomic (temporary file + rename) so that an
interrupted run never leaves a half-written file behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from slimdepth.errors import DataError

DepthEncoding = Literal["kitti", "mm", "npy"]
DEPTH_ENCODINGS: tuple[str, ...] = ("kitti", "mm", "npy")
#: metres per PNG unit for each 16-bit encoding
PNG_DEPTH_SCALE = {"kitti": 1.0 / 256.0, "mm": 1.0 / 1000.0}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")
#: zlib level of written PNGs: 3 encodes ~3.5x faster than Pillow's default 6 for ~9% larger files
PNG_COMPRESS_LEVEL = 3


def check_depth_array(depth: np.ndarray, where: str = "depth") -> np.ndarray:
    """Validate a depth map in metres (HxW or 1xHxW, numeric, finite, >= 0) and return it
    as float32 HxW; raise :class:`DataError` naming ``where`` otherwise (0 marks invalid)."""
    arr = np.asarray(depth)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"{where}: expected a numeric HxW depth map, got {arr.dtype} {tuple(arr.shape)}")
    if np.isnan(arr).any():
        raise DataError(f"{where}: depth contains NaN (use 0 for invalid pixels)")
    if np.isinf(arr).any():
        raise DataError(f"{where}: depth contains infinite values (use 0 for invalid pixels)")
    if (arr < 0).any():
        raise DataError(f"{where}: depth contains negative values")
    return np.ascontiguousarray(arr, dtype=np.float32)


def check_intrinsics(K: np.ndarray, where: str = "K") -> np.ndarray:
    """Validate a 3x3 pinhole matrix (finite, positive focal lengths); return it as float64."""
    arr = np.asarray(K, dtype=np.float64)
    if arr.shape != (3, 3):
        raise DataError(f"{where}: intrinsics must be 3x3, got shape {arr.shape}")
    if not np.isfinite(arr).all() or arr[0, 0] <= 0 or arr[1, 1] <= 0:
        raise DataError(f"{where}: intrinsics need finite values and positive focal lengths")
    return arr


def list_files(folder: Path, suffixes: tuple[str, ...], recursive: bool = False) -> list[Path]:
    """Files in ``folder`` (sorted) whose suffix is one of ``suffixes``; hidden files skipped
    (half-written temporary files of atomic writes start with a dot)."""
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if p.suffix.lower() in suffixes and not p.name.startswith(".") and p.is_file())


def _require_file(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a file")


def _open_image(path: Path) -> Image.Image:
    _require_file(path)
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: cannot read image ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'corrupt file'})") from None
    return img


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an RGB image as HxWx3 uint8. Grey, palette and RGBA images are converted.

    A 16-bit single-channel file (a depth map given by mistake) is rejected.
    """
    path = Path(path)
    img = _open_image(path)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        raise DataError(f"{path}: is a {img.mode} single-channel image (a depth map?), expected an 8-bit RGB image")
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8).copy()


def read_depth(path: str | Path, encoding: DepthEncoding = "kitti") -> np.ndarray:
    """Read a depth map in metres as float32 HxW (0 = invalid).

    ``kitti``: uint16 PNG, metres = value / 256; ``mm``: uint16 PNG, metres = value / 1000
    (NYU, MAI2022); ``npy``: float array in metres, NaN/inf/negative rejected.
    """
    path = Path(path)
    if encoding not in DEPTH_ENCODINGS:
        raise DataError(f"unknown depth encoding {encoding!r}; choose one of {', '.join(DEPTH_ENCODINGS)}")
    if encoding == "npy" or path.suffix.lower() == ".npy":
        if encoding != "npy":
            raise DataError(f"{path}: .npy depth files need the 'npy' encoding, not {encoding!r}")
        return _read_npy_depth(path)
    img = _open_image(path)
    if img.mode not in ("I;16", "I;16B", "I;16L", "I"):
        raise DataError(
            f"{path}: depth PNG must be 16-bit single-channel ({encoding} encoding), got mode {img.mode}"
        )
    arr = np.asarray(img)
    if arr.ndim != 2:
        raise DataError(f"{path}: depth PNG must have one channel, got shape {arr.shape}")
    if arr.min() < 0 or arr.max() > 65535:
        raise DataError(f"{path}: depth PNG values outside the 16-bit range")
    return (arr.astype(np.float32) * np.float32(PNG_DEPTH_SCALE[encoding])).astype(np.float32)


NPY_MAGIC = b"\x93NUMPY"


def _read_npy_depth(path: Path) -> np.ndarray:
    _require_file(path)
    with path.open("rb") as fh:
        if fh.read(len(NPY_MAGIC)) != NPY_MAGIC:
            raise DataError(f"{path}: not a .npy file (bad header)")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read .npy depth ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if not np.issubdtype(arr.dtype, np.floating):
        raise DataError(f"{path}: .npy depth must hold metres as floats, got {arr.dtype} "
                        "(integer millimetres? divide by 1000 and save as float32)")
    return check_depth_array(np.squeeze(arr), str(path))


def read_seg(path: str | Path) -> np.ndarray:
    """Read a label map (8-bit grey or palette PNG) as int64 HxW; 255 = ignore."""
    path = Path(path)
    img = _open_image(path)
    if img.mode not in ("L", "P", "I;16", "I"):
        raise DataError(f"{path}: label map must be a single-channel PNG, got mode {img.mode}")
    return np.asarray(img).astype(np.int64)


def read_intrinsics(path: str | Path) -> np.ndarray:
    """Read a 3x3 intrinsics matrix from a text or JSON file.

    Accepted text forms: 9 numbers (3x3, row-major), 12 numbers (a 3x4 projection matrix,
    whose left 3x3 block is used) or 4 numbers ``fx fy cx cy``. JSON: ``{"K": [[...]]}`` or
    ``{"fx":..,"fy":..,"cx":..,"cy":..}``.
    """
    path = Path(path)
    _require_file(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read intrinsics ({type(exc).__name__})") from None
    try:
        if path.suffix.lower() == ".json":
            obj = json.loads(text)
            if "K" in obj:
                values = np.asarray(obj["K"], dtype=np.float64).ravel()
            else:
                values = np.asarray([obj["fx"], obj["fy"], obj["cx"], obj["cy"]], dtype=np.float64)
        else:
            values = np.asarray([float(v) for v in text.replace(",", " ").split()], dtype=np.float64)
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: cannot parse intrinsics ({type(exc).__name__}: {exc})") from None
    return intrinsics_from_values(values, str(path))


def intrinsics_from_values(values: np.ndarray | list[float], where: str = "intrinsics") -> np.ndarray:
    """Turn 4 (fx fy cx cy), 9 (3x3) or 12 (3x4) numbers into a 3x3 float64 matrix."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 4:
        fx, fy, cx, cy = v
        K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)
    elif v.size == 9:
        K = v.reshape(3, 3)
    elif v.size == 12:
        K = v.reshape(3, 4)[:, :3].copy()
    else:
        raise DataError(f"{where}: expected 4 (fx fy cx cy), 9 (3x3) or 12 (3x4) numbers, got {v.size}")
    return check_intrinsics(K, where)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix or ".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; the result should look like any file
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_save(path: str | Path, save: Callable[[Path], None]) -> None:
    with atomic_path(path) as tmp:
        save(tmp)


def write_rgb(path: str | Path, image: np.ndarray) -> None:
    """Write an HxWx3 uint8 image (format from the suffix), atomically."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise DataError(f"{path}: write_rgb expects HxWx3 uint8, got {arr.dtype} {arr.shape}")
    fmt = Image.registered_extensions().get(Path(path).suffix.lower(), "PNG")
    options = {"compress_level": PNG_COMPRESS_LEVEL} if fmt == "PNG" else {}
    _atomic_save(path, lambda tmp: Image.fromarray(arr).save(tmp, format=fmt, **options))


def encode_depth_png(depth: np.ndarray, encoding: DepthEncoding = "kitti") -> np.ndarray:
    """Quantise metres to the uint16 values of a depth PNG; out-of-range and invalid become 0."""
    if encoding not in PNG_DEPTH_SCALE:
        raise DataError(f"PNG depth encoding must be 'kitti' or 'mm', got {encoding!r}")
    d = np.asarray(depth, dtype=np.float64)
    q = np.rint(d / PNG_DEPTH_SCALE[encoding])
    q[~np.isfinite(d) | (d <= 0) | (q > 65535)] = 0
    return q.astype(np.uint16)


def write_depth(path: str | Path, depth: np.ndarray, encoding: DepthEncoding = "kitti") -> None:
    """Write a depth map in metres: uint16 PNG (``kitti``/``mm``) or float32 ``.npy``, atomically.

    PNG encodings cannot store depths beyond 65535 units (255.99 m for ``kitti``, 65.5 m for
    ``mm``); such pixels are written as 0 (invalid) rather than silently clipped.
    """
    if encoding == "npy":
        arr = np.asarray(depth, dtype=np.float32)
        _atomic_save(path, lambda tmp: np.save(tmp, arr))
        return
    q = encode_depth_png(depth, encoding)
    _atomic_save(path, lambda tmp: Image.fromarray(q).save(tmp, format="PNG", compress_level=PNG_COMPRESS_LEVEL))


def write_seg(path: str | Path, seg: np.ndarray) -> None:
    """Write an HxW label map (values 0..255) as an 8-bit PNG, atomically."""
    arr = np.asarray(seg)
    if arr.ndim != 2 or arr.min() < 0 or arr.max() > 255:
        raise DataError(f"{path}: label map must be HxW with values in 0..255")
    out = arr.astype(np.uint8)
    _atomic_save(path, lambda tmp: Image.fromarray(out).save(tmp, format="PNG", compress_level=PNG_COMPRESS_LEVEL))


def write_intrinsics(path: str | Path, K: np.ndarray) -> None:
    """Write a 3x3 intrinsics matrix as text (three rows of three numbers), atomically."""
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    text = "\n".join(" ".join(f"{v:.10g}" for v in row) for row in K) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_list_file(path: str | Path, what: str = "split file") -> list[tuple[int, str]]:
    """(line number, stripped line) of a list file (split, image list), skipping blank lines
    and ``#`` comments; :class:`DataError` if the file is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read {what} ({type(exc).__name__})") from None
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1)]
    return [(n, line) for n, line in lines if line and not line.startswith("#")]


def list_images(folder: str | Path, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` (sorted), by suffix."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: directory not found")
    return list_files(folder, IMAGE_SUFFIXES, recursive)
