"""The teacher's outputs for fixed (non-augmented) training images, kept on disk.

A long distillation over a fixed dataset would run the teacher on every image every epoch;
the cache runs it once per image and keeps its depth and the named features the terms read as
float16 arrays (memory-mapped ``.npy`` files in ``RUN/teacher_cache``), filled lazily as
images are first seen. ``cache.json`` describes what was cached (the teacher file, its size and
time stamp, the sizes, the dataset specs); any difference rebuilds the cache. Values are always the float16-rounded ones, whether just computed or
read back, so a resumed run sees exactly what the uninterrupted run saw.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slimdepth.distill.teacher import Teacher
from slimdepth.distill.terms import feature_shapes
from slimdepth.errors import DataError

__all__ = ["TeacherCache"]


class TeacherCache:
    """Teacher outputs by sample key (``("l", index)`` labeled, ``("u", index)`` unlabeled).

    ``sizes`` gives the number of samples of each kind; ``size`` the student's input size
    (the images the cache is asked about); ``levels`` the teacher features to keep.
    """

    def __init__(self, root: Path, teacher: Teacher, size: Sequence[int], levels: Sequence[str],
                 sizes: dict[str, int], sources: dict[str, Any] | None = None) -> None:
        self.root, self.teacher, self.levels = Path(root), teacher, list(levels)
        h, w = int(size[0]), int(size[1])
        shapes = feature_shapes(teacher.model, teacher.size_for((h, w)), teacher.device).shapes if self.levels else {}
        missing = [lvl for lvl in self.levels if lvl not in shapes]
        if missing:
            raise DataError(f"the teacher has no feature {missing[0]!r} to cache")
        stat = Path(teacher.path).stat()
        description = {"teacher": str(teacher.path), "teacher_bytes": stat.st_size, "teacher_mtime_ns": stat.st_mtime_ns,
                       "teacher_size": list(teacher.size_for((h, w))), "amp": teacher.amp, "size": [h, w],
                       "levels": self.levels, "samples": sizes, "sources": sources or {},
                       "shapes": {lvl: list(shapes[lvl]) for lvl in self.levels}}
        self.root.mkdir(parents=True, exist_ok=True)
        meta = self.root / "cache.json"
        try:
            reuse = meta.is_file() and json.loads(meta.read_text()) == json.loads(json.dumps(description))
        except (OSError, json.JSONDecodeError):
            reuse = False  # an unreadable description: the cache is rebuilt
        if not reuse:  # another teacher, size or dataset: start the cache afresh
            for f in self.root.glob("*.npy"):
                f.unlink()
            meta.write_text(json.dumps(description, indent=2) + "\n")
        self.arrays: dict[str, dict[str, np.memmap]] = {}
        for kind, n in sizes.items():
            if n <= 0:
                continue
            arrays = {"filled": self._array(f"{kind}_filled", (n,), np.uint8, reuse),
                      "depth": self._array(f"{kind}_depth", (n, 1, h, w), np.float16, reuse)}
            for lvl in self.levels:
                arrays[lvl] = self._array(f"{kind}_{lvl}", (n, *shapes[lvl]), np.float16, reuse)
            self.arrays[kind] = arrays

    def _array(self, name: str, shape: tuple[int, ...], dtype: Any, reuse: bool) -> np.memmap:
        path = self.root / f"{name}.npy"
        if reuse and path.is_file():
            try:
                arr = np.load(path, mmap_mode="r+")
            except (OSError, ValueError):
                arr = None  # a damaged file is rebuilt
            if arr is not None and arr.shape == shape and arr.dtype == dtype:
                return arr
        return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)

    def get(self, keys: Sequence[tuple[str, int]], images: torch.Tensor) -> dict[str, Any]:
        """The teacher's outputs for ``images`` (whose sample keys are ``keys``), computing
        and storing those not cached yet."""
        todo = [i for i, (kind, idx) in enumerate(keys) if not self.arrays[kind]["filled"][idx]]
        if todo:
            out = self.teacher(images[todo], features=bool(self.levels))
            for row, i in enumerate(todo):
                kind, idx = keys[i]
                arrays = self.arrays[kind]
                arrays["depth"][idx] = out["depth"][row].cpu().numpy().astype(np.float16)
                for lvl in self.levels:
                    arrays[lvl][idx] = out["features"][lvl][row].cpu().numpy().astype(np.float16)
                arrays["filled"][idx] = 1
        device = images.device

        def gather(name: str) -> torch.Tensor:
            rows = np.stack([self.arrays[kind][name][idx] for kind, idx in keys])
            return torch.from_numpy(rows.astype(np.float32)).to(device)

        result: dict[str, Any] = {"depth": gather("depth")}
        if self.levels:
            result["features"] = {lvl: gather(lvl) for lvl in self.levels}
        return result

    def flush(self) -> None:
        """Write what was computed to disk (at every checkpoint)."""
        for arrays in self.arrays.values():
            for arr in arrays.values():
                arr.flush()
