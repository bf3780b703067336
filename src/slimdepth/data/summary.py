"""Looking at a dataset before training on it: summary statistics and augmented previews.

:func:`summarize_dataset` is ``slimdepth data info`` (keys, sizes, how much depth is valid and
its range, the intrinsics); :func:`preview_samples` gives the samples ``slimdepth data show``
draws, optionally through an augmentation pipeline with a fixed seed per sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from slimdepth.data.augment import build_augmentation
from slimdepth.data.base import DepthDataset
from slimdepth.errors import ConfigError
from slimdepth.options import check_number

__all__ = ["DatasetSummary", "preview_samples", "summarize_dataset"]


@dataclass
class DatasetSummary:
    """What :func:`summarize_dataset` found in the first ``read`` samples."""

    name: str
    kind: str
    length: int
    eval_preset: str | None
    read: int
    keys: list[str] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)
    valid_fraction: float | None = None  # mean fraction of valid depth pixels
    depth_range: tuple[float, float] | None = None  # metres, over the valid pixels
    K: np.ndarray | None = None  # intrinsics of sample 0
    assumed_intrinsics: bool = False


def summarize_dataset(dataset: DepthDataset, num: int = 8) -> DatasetSummary:
    """Read the first ``num`` samples (all with ``num <= 0``) and summarise them."""
    check_number(num, "--num", integer=True)
    n = len(dataset) if num <= 0 else min(num, len(dataset))
    sizes, fractions, lo, hi = set(), [], [], []
    keys: set[str] = set()
    first: dict[str, Any] = {}
    for i in range(n):
        s = dataset[i]
        first = first or s
        keys |= set(s)
        sizes.add(tuple(s["image"].shape[-2:]))
        if "depth" in s:
            d = s["depth"].numpy()
            valid = d[d > 0]
            fractions.append(valid.size / d.size)
            if valid.size:
                lo.append(float(valid.min()))
                hi.append(float(valid.max()))
    summary = DatasetSummary(type(dataset).__name__, str(getattr(dataset, "dataset_name", "?")), len(dataset),
                             dataset.eval_preset, n, sorted(keys), sorted(sizes))
    if fractions:
        summary.valid_fraction = float(np.mean(fractions))
        summary.depth_range = (min(lo) if lo else 0.0, max(hi) if hi else 0.0)
    if "K" in first:
        summary.K = first["K"].numpy()
        summary.assumed_intrinsics = first["meta"].get("intrinsics") == "assumed"
    return summary


def preview_samples(dataset: DepthDataset, start: int = 0, num: int = 4, augment: Sequence[str] = (),
                    seed: int = 0) -> list[dict[str, Any]]:
    """Samples ``start`` .. ``start + num - 1`` (as many as there are), each through the named
    augmentations (e.g. ``["rcrop", "hflip"]``) with a generator seeded by ``seed`` and its index."""
    check_number(num, "--num", integer=True, low=1)
    check_number(start, "--start", integer=True, low=0)
    check_number(seed, "--seed", integer=True, low=0)
    if start >= len(dataset):
        raise ConfigError(f"--start {start} is past the end of the dataset ({len(dataset)} samples)")
    transform = build_augmentation(list(augment)) if augment else None
    samples = []
    for i in range(start, min(start + num, len(dataset))):
        sample = dataset[i]
        samples.append(transform(sample, generator=(seed * 1_000_003 + i) % 2**63) if transform else sample)
    return samples
