"""Naming rules of sample keys and which depth maps are point sets (no torch import).

``image`` and ``*_image`` are images, ``depth`` and ``*_depth`` depth maps in metres, ``seg``
and ``*_seg`` label maps. A depth map is *sparse* (a point set, such as projected LiDAR) when
under half of its pixels are valid; the decision is recorded in ``meta['sparse']`` when a
sample is made, before augmentation pads the maps with invalid pixels.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

KeyKind = Literal["image", "depth", "label", "K", "meta", "other"]

#: a depth map with fewer valid pixels than this is a point set (LiDAR), not a dense map
SPARSE_FRACTION = 0.5


def key_kind(key: str) -> KeyKind:
    """Classify a sample key by the naming rules of the contract."""
    if key == "image" or key.endswith("_image"):
        return "image"
    if key == "depth" or key.endswith("_depth"):
        return "depth"
    if key == "seg" or key.endswith("_seg"):
        return "label"
    if key in ("K", "meta"):
        return key  # type: ignore[return-value]
    return "other"


def is_sparse_map(depth: Any) -> bool:
    """True for point-set depth (projected LiDAR: KITTI ~4%, annotated KITTI ~20% valid).

    ``depth`` may be a NumPy array or a CPU torch tensor."""
    return float((np.asarray(depth) > 0).mean()) < SPARSE_FRACTION


def sparse_keys(sample: dict[str, Any]) -> set[str]:
    """Depth keys of ``sample`` that hold point sets: ``meta['sparse']`` when recorded (by
    :func:`~slimdepth.data.sample.make_sample`, before any augmentation padded the maps), else
    decided by density (a missing map, ``None``, is none of them)."""
    recorded = (sample.get("meta") or {}).get("sparse")
    if recorded is not None:
        return set(recorded)
    return {k for k, v in sample.items() if key_kind(k) == "depth" and v is not None and is_sparse_map(v)}
