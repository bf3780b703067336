"""The Sample contract shared by every reader, transform, model and metric.

A sample is a plain ``dict``:

* ``image``  float32 tensor 3xHxW, RGB in [0, 1], not normalised;
* ``depth``  float32 tensor 1xHxW in metres, 0 = invalid (never NaN);
* ``seg``    optional int64 tensor HxW of class ids, 255 = ignore;
* ``K``      float32 tensor 3x3, intrinsics for *this* image size (pixel centres at integers);
* ``meta``   dict with at least ``name`` (unique id in its dataset), ``path``, ``dataset``,
  ``orig_size`` (H, W of the file it came from) and ``sparse`` (the depth keys that are point
  sets, such as projected LiDAR; transforms resample those point by point).

Extra keys follow naming rules so that transforms know how to treat them: ``*_image`` is an
image (e.g. ``right_image``), ``*_depth`` is a depth map (e.g. ``lidar_depth``) and ``*_seg`` a
label map. Unlabeled samples carry no ``depth`` (and no ``K`` when it is unknown).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from slimdepth.data.keys import KeyKind, is_sparse_map, key_kind, sparse_keys
from slimdepth.errors import DataError
from slimdepth.fileio import check_depth_array, check_intrinsics
from slimdepth.labels import IGNORE_LABEL

__all__ = [
    "IGNORE_LABEL", "KeyKind", "check_sample", "collate_samples", "depth_to_tensor", "image_to_tensor",
    "intrinsics_to_tensor", "is_sparse_map", "key_kind", "make_sample", "sample_size", "seg_to_tensor", "sparse_keys",
]


def _describe(meta: dict[str, Any] | None) -> str:
    if not meta:
        return "sample"
    return str(meta.get("path") or meta.get("name") or "sample")


def image_to_tensor(image: np.ndarray, where: str = "image") -> torch.Tensor:
    """Convert an HxWx3 uint8 (or float in [0, 1]) RGB array to a float32 3xHxW tensor."""
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise DataError(f"{where}: expected an HxWx3 RGB image, got shape {tuple(arr.shape)}")
    if arr.dtype == np.uint8:
        out = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).float().div_(255.0)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0:
            raise DataError(f"{where}: float image values must be finite and in [0, 1]")
        out = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32))
    else:
        raise DataError(f"{where}: unsupported image dtype {arr.dtype} (expected uint8 or float)")
    return out


def depth_to_tensor(depth: np.ndarray, where: str = "depth") -> torch.Tensor:
    """Validate an HxW depth map in metres (0 = invalid) and return a float32 1xHxW tensor."""
    return torch.from_numpy(check_depth_array(depth, where))[None]


def seg_to_tensor(seg: np.ndarray, where: str = "seg") -> torch.Tensor:
    """Validate an HxW label map and return it as an int64 tensor (255 = ignore)."""
    arr = np.asarray(seg)
    if arr.ndim != 2:
        raise DataError(f"{where}: expected an HxW label map, got shape {tuple(arr.shape)}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{where}: labels must be integers, got {arr.dtype}")
    return torch.from_numpy(arr.astype(np.int64))


def intrinsics_to_tensor(K: np.ndarray | torch.Tensor, where: str = "K") -> torch.Tensor:
    """Validate a 3x3 pinhole intrinsics matrix and return it as float32."""
    return torch.from_numpy(check_intrinsics(K, where).astype(np.float32))


def make_sample(
    image: np.ndarray,
    *,
    depth: np.ndarray | None = None,
    K: np.ndarray | None = None,
    seg: np.ndarray | None = None,
    meta: dict[str, Any] | None = None,
    **extras: np.ndarray,
) -> dict[str, Any]:
    """Build a contract-conforming sample from NumPy arrays, validating every field.

    ``extras`` are converted by their key kind (``*_image``, ``*_depth``, ``*_seg``).
    Raises :class:`DataError` naming the source (``meta['path']``) on any violation.
    """
    where = _describe(meta)
    sample: dict[str, Any] = {"image": image_to_tensor(image, f"{where}: image")}
    h, w = sample["image"].shape[-2:]
    if depth is not None:
        sample["depth"] = depth_to_tensor(depth, f"{where}: depth")
    if seg is not None:
        sample["seg"] = seg_to_tensor(seg, f"{where}: seg")
    if K is not None:
        sample["K"] = intrinsics_to_tensor(K, f"{where}: K")
    for key, value in extras.items():
        kind = key_kind(key)
        if kind == "image":
            sample[key] = image_to_tensor(value, f"{where}: {key}")
        elif kind == "depth":
            sample[key] = depth_to_tensor(value, f"{where}: {key}")
        elif kind == "label":
            sample[key] = seg_to_tensor(value, f"{where}: {key}")
        else:
            raise DataError(f"{where}: extra key {key!r} does not follow the *_image/*_depth/*_seg naming rule")
    meta = dict(meta or {})
    if "sparse" not in meta:  # decided once, on the unaugmented maps (padding adds zeros later)
        meta["sparse"] = [k for k, v in sample.items() if key_kind(k) == "depth" and is_sparse_map(v)]
    meta.setdefault("name", "sample")
    meta.setdefault("path", "")
    meta.setdefault("dataset", "unknown")
    meta.setdefault("orig_size", (int(h), int(w)))
    sample["meta"] = meta
    check_sample(sample)
    return sample


def sample_size(sample: dict[str, Any]) -> tuple[int, int]:
    """Height and width of a sample's image."""
    h, w = sample["image"].shape[-2:]
    return int(h), int(w)


def check_sample(sample: dict[str, Any]) -> None:
    """Raise :class:`DataError` if ``sample`` violates the contract (dtypes, shapes, values)."""
    where = _describe(sample.get("meta"))
    image = sample.get("image")
    if not isinstance(image, torch.Tensor) or image.dtype != torch.float32 or image.ndim != 3 or image.shape[0] != 3:
        raise DataError(f"{where}: 'image' must be a float32 3xHxW tensor")
    h, w = image.shape[-2:]
    for key, value in sample.items():
        kind = key_kind(key)
        if kind == "image" and key != "image":
            if value.dtype != torch.float32 or tuple(value.shape) != (3, h, w):
                raise DataError(f"{where}: {key!r} must be float32 3x{h}x{w}, got {tuple(value.shape)}")
        elif kind == "depth":
            if not isinstance(value, torch.Tensor) or value.dtype != torch.float32 or tuple(value.shape) != (1, h, w):
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise DataError(f"{where}: {key!r} must be float32 1x{h}x{w} to match the image, got {shape}")
            if not torch.isfinite(value).all() or (value < 0).any():
                raise DataError(f"{where}: {key!r} must be finite and non-negative (0 = invalid)")
        elif kind == "label":
            if value.dtype != torch.int64 or tuple(value.shape) != (h, w):
                raise DataError(f"{where}: {key!r} must be int64 {h}x{w} to match the image, got {tuple(value.shape)}")
        elif kind == "K":
            if value.dtype != torch.float32 or tuple(value.shape) != (3, 3):
                raise DataError(f"{where}: 'K' must be a float32 3x3 tensor")


def collate_samples(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack a list of samples into a batch; ``meta`` becomes a list of dicts.

    All samples must have the same keys and the same image size (resize or crop first).
    """
    if not samples:
        raise DataError("cannot collate an empty list of samples")
    keys = set(samples[0])
    sizes = {sample_size(s) for s in samples}
    if len(sizes) > 1:
        raise DataError(f"cannot batch samples of different sizes {sorted(sizes)}; add a resize or crop transform")
    if any(set(s) != keys for s in samples):
        raise DataError("cannot batch samples with different keys: " + ", ".join(sorted(keys)))
    batch: dict[str, Any] = {}
    for key in samples[0]:
        if key == "meta":
            batch["meta"] = [s["meta"] for s in samples]
        else:
            batch[key] = torch.stack([s[key] for s in samples])
    return batch
