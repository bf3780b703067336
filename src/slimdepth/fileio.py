"""Reading and writing images, depth maps, label maps, intrinsics and point clouds, with clear errors.

Every reader names the offending file in its :class:`DataError`, so a user with a broken
dataset learns which file to fix. Writers are atomic (temporary file + rename) so that an
interrupted run never leaves a half-written file behind, and a write that fails names the
file asked for, not the temporary one. The converters (:func:`as_depth_map`,
:func:`as_rgb_uint8`) accept NumPy arrays and torch tensors alike.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from slimdepth.errors import ConfigError, DataError
from slimdepth.geometry import backproject

if TYPE_CHECKING:  # torch is not imported here: the converters duck-type tensors
    import torch

    ArrayLike = Union[np.ndarray, torch.Tensor]

DepthEncoding = Literal["kitti", "mm", "npy"]
DEPTH_ENCODINGS: tuple[str, ...] = ("kitti", "mm", "npy")
#: metres per PNG unit for each 16-bit encoding
PNG_DEPTH_SCALE = {"kitti": 1.0 / 256.0, "mm": 1.0 / 1000.0}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")
#: zlib level of written PNGs: 3 encodes ~3.5x faster than Pillow's default 6 for ~9% larger files
PNG_COMPRESS_LEVEL = 3


def read_json(path: str | Path, what: str = "JSON") -> Any:
    """A JSON file, or a one-line :class:`DataError` naming it and saying what it should hold
    (``what``, e.g. "prune state"): a run's state files, tables and reports all read through here."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: unreadable {what} ({type(exc).__name__})") from None


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


def check_same_size(shape_a: Sequence[int], path_a: str | Path, shape_b: Sequence[int], path_b: str | Path) -> None:
    """Raise :class:`DataError` naming both files when two HxW maps differ in size."""
    (ha, wa), (hb, wb) = tuple(shape_a[:2]), tuple(shape_b[:2])
    if (ha, wa) != (hb, wb):
        raise DataError(f"{path_b}: size {wb}x{hb} does not match {path_a} ({wa}x{ha})")


def unique_names(names: Sequence[str], paths: Sequence[str | Path]) -> None:
    """Raise :class:`DataError` when two files would give samples the same name."""
    seen: dict[str, str | Path] = {}
    for name, path in zip(names, paths, strict=True):
        if name in seen:
            raise DataError(f"{path}: gives the same sample name {name!r} as {seen[name]}")
        seen[name] = path


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


def parse_intrinsics(value: str | Sequence[float] | np.ndarray) -> np.ndarray:
    """Intrinsics from an option: ``"fx,fy,cx,cy"`` (or space/semicolon separated), 9 numbers,
    a sequence of numbers or the path of an intrinsics file. Returns 3x3 float64.

    In a dataset spec string commas separate options, so write ``intrinsics=500 500 320 240``
    or ``intrinsics=500;500;320;240`` there.
    """
    if isinstance(value, str):
        tokens = [t for t in re.split(r"[,;\s]+", value.strip()) if t]
        try:
            numbers = [float(t) for t in tokens]
        except ValueError:
            if Path(value).is_file():
                return read_intrinsics(value)
            raise ConfigError(f"intrinsics must be 'fx,fy,cx,cy', 9 numbers or a file, got {value!r}") from None
    elif isinstance(value, (int, float)):
        numbers = [float(value)]
    else:
        numbers = list(np.asarray(value, dtype=np.float64).ravel())
    try:
        return intrinsics_from_values(numbers, "intrinsics option")
    except DataError as exc:
        raise ConfigError(str(exc)) from None


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
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix or ".tmp", dir=path.parent)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; the result should look like any file
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.filename in (tmp, Path(tmp)) or exc.filename2 == str(path):  # name the file asked for
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise
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


# --------------------------------------------------------------------------------------------
# arrays and tensors


def to_numpy(x: Any) -> tuple[np.ndarray, bool]:
    """NumPy view of an array or torch tensor, and whether it was a tensor (layout hint)."""
    if hasattr(x, "detach"):
        t = x.detach().cpu()
        return (t.float() if t.is_floating_point() else t).numpy(), True
    return np.asarray(x), False


def as_depth_map(depth: ArrayLike, where: str = "depth") -> np.ndarray:
    """A depth-like map as float64 HxW, accepting HxW, 1xHxW or 1x1xHxW."""
    arr, _ = to_numpy(depth)
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise DataError(f"{where}: expected an HxW or 1xHxW map, got shape {tuple(arr.shape)}")
    return arr.astype(np.float64)


def as_rgb_uint8(image: ArrayLike, where: str = "image") -> np.ndarray:
    """Any displayable image as HxWx3 uint8: 3xHxW or HxWx3, float in [0, 1] or uint8, grey too."""
    arr, from_torch = to_numpy(image)
    while arr.ndim > 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and (from_torch or arr.shape[-1] not in (1, 3)):
        arr = arr.transpose(1, 2, 0)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3):
        raise DataError(f"{where}: expected an image of shape 3xHxW, HxWx3 or HxW, got {tuple(arr.shape)}")
    if np.issubdtype(arr.dtype, np.floating) or arr.dtype == bool:
        arr = np.rint(np.clip(np.nan_to_num(arr.astype(np.float64)), 0.0, 1.0) * 255.0)
    arr = np.clip(arr, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(arr, 3, axis=-1) if arr.shape[-1] == 1 else arr)


def as_intrinsics(K: ArrayLike) -> np.ndarray:
    """A 3x3 pinhole matrix from an array or tensor, checked by :func:`check_intrinsics`."""
    return check_intrinsics(to_numpy(K)[0])


# --------------------------------------------------------------------------------------------
# point clouds (PLY)

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip


def write_ply(
    path: str | Path,
    depth: ArrayLike,
    K: ArrayLike,
    image: ArrayLike | None = None,
    max_depth: float | None = None,
    binary: bool = True,
) -> int:
    """Write the valid pixels of a depth map as a PLY point cloud; return the number of points.

    Points are in the camera frame (x right, y down, z forward, metres), from
    :func:`slimdepth.geometry.backproject`, float32, coloured from ``image`` when given.
    ``max_depth`` drops farther points (e.g. sky at the cap). Binary little-endian by default
    (compact, what MeshLab, CloudCompare and Open3D read fastest), ASCII with ``binary=False``.
    The file is written atomically.
    """
    d = as_depth_map(depth)
    if max_depth is not None:
        if max_depth <= 0:
            raise ConfigError(f"max_depth must be positive, got {max_depth}")
        d = np.where(d <= max_depth, d, 0.0)
    points, rc = backproject(d, as_intrinsics(K))
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    colors = None
    if image is not None:
        rgb = as_rgb_uint8(image)
        if rgb.shape[:2] != d.shape:
            raise DataError(f"{path}: image size {rgb.shape[:2]} does not match depth size {d.shape}")
        colors = rgb[rc[:, 0], rc[:, 1]]
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertices = np.empty(len(points), dtype=fields)
    for i, axis in enumerate("xyz"):
        vertices[axis] = points[:, i]
    if colors is not None:
        for i, channel in enumerate(("red", "green", "blue")):
            vertices[channel] = colors[:, i]
    header = [
        "ply",
        f"format {'binary_little_endian' if binary else 'ascii'} 1.0",
        "comment slimdepth point cloud: camera frame, x right, y down, z forward, metres",
        f"element vertex {len(vertices)}",
        *(f"property {'float' if t == '<f4' else 'uchar'} {name}" for name, t in fields),
        "end_header",
    ]
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        if binary:
            f.write(vertices.tobytes())
        else:
            fmt = ["%.9g"] * 3 + ["%d"] * (len(fields) - 3)  # 9 digits: float32 round-trips exactly
            np.savetxt(f, np.column_stack([vertices[n].astype(np.float64) for n, _ in fields]), fmt=fmt)
    return len(vertices)


def _parse_ply_header(lines: list[str], path: Path) -> tuple[str, int, list[tuple[str, str]]]:
    """Format, vertex count and vertex properties (name, NumPy type) of a PLY header."""
    if not lines or lines[0].strip() != "ply":
        raise DataError(f"{path}: not a PLY file")
    fmt, count, props, element = "", -1, [], None
    for line in lines[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format" and len(words) >= 2:
            fmt = words[1]
        elif words[0] == "element" and len(words) == 3:
            element = words[1]
            if element == "vertex":
                if not words[2].isdigit():
                    raise DataError(f"{path}: bad vertex count {words[2]!r}")
                count = int(words[2])
            elif count < 0:
                raise DataError(f"{path}: the vertex element must come first")
        elif words[0] == "property" and element == "vertex":
            if words[1] == "list" or len(words) != 3 or words[1] not in _PLY_TYPES:
                raise DataError(f"{path}: unsupported vertex property {' '.join(words[1:])!r}")
            props.append((words[2], _PLY_TYPES[words[1]]))
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise DataError(f"{path}: unsupported PLY format {fmt!r}")
    if count < 0 or not {"x", "y", "z"} <= {n for n, _ in props}:
        raise DataError(f"{path}: no vertex element with x, y, z properties")
    return fmt, count, props


def read_ply(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Read the vertices of a PLY point cloud: points float32 Nx3 and colours uint8 Nx3 (or None).

    A small reader for the files :func:`write_ply` makes (ASCII or binary, x/y/z and optional
    red/green/blue properties; other elements after the vertices are ignored), so that users
    and tests can check what was written without extra dependencies.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read PLY ({type(exc).__name__})") from None
    end = data.find(b"end_header")
    if end < 0:
        raise DataError(f"{path}: PLY header has no end_header")
    body_start = data.index(b"\n", end) + 1 if b"\n" in data[end:] else len(data)
    try:
        lines = data[:end].decode("ascii").splitlines()
    except UnicodeDecodeError:
        raise DataError(f"{path}: PLY header is not ASCII text") from None
    fmt, count, props = _parse_ply_header(lines, path)
    body = data[body_start:]
    if fmt == "ascii":
        tokens = body.split()
        if len(tokens) < count * len(props):
            raise DataError(f"{path}: expected {count} vertices, file is truncated")
        table = np.array(tokens[: count * len(props)], dtype=np.float64).reshape(count, len(props))
        columns = {name: table[:, i] for i, (name, _) in enumerate(props)}
    else:
        order = "<" if fmt == "binary_little_endian" else ">"
        dtype = np.dtype([(name, order + t) for name, t in props])
        if len(body) < count * dtype.itemsize:
            raise DataError(f"{path}: expected {count} vertices, file is truncated")
        records = np.frombuffer(body, dtype=dtype, count=count)
        columns = {name: records[name] for name, _ in props}
    points = np.stack([columns[a] for a in "xyz"], axis=1).astype(np.float32)
    if not {"red", "green", "blue"} <= columns.keys():
        return points, None
    colors = np.stack([columns[c] for c in ("red", "green", "blue")], axis=1)
    return points, np.clip(np.rint(colors.astype(np.float64)), 0, 255).astype(np.uint8)
