"""Datasets as the trainer sees them: augmented reproducibly, resized to the training size.

Every random choice of a training sample comes from a generator seeded by (seed, epoch,
index), never from global state or the worker that loads it, so a resumed run sees exactly
the samples an uninterrupted run would have seen, with any number of DataLoader workers.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from slimdepth.data.augment import Compose, Resize, build_augmentation
from slimdepth.data.base import DepthDataset
from slimdepth.data.sample import sample_size
from slimdepth.train.sampler import sample_seed


class CachedDataset(DepthDataset):
    """Keeps loaded samples in memory (images as uint8), for small datasets that are costly to
    produce, such as synthetic frames rendered on the fly. Each DataLoader worker holds its
    own cache, so use it with few workers or ``workers: 0``."""

    def __init__(self, base: DepthDataset) -> None:
        super().__init__(None)
        self.base = base
        self.dataset_name = base.dataset_name
        self.eval_preset = base.eval_preset
        self._cache: dict[int, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self.base)

    def names(self) -> list[str]:
        return self.base.names()

    def load(self, index: int) -> dict[str, Any]:
        if index not in self._cache:
            sample = self.base.load(index)
            packed = {k: (v.mul(255).round().to(torch.uint8) if k.endswith("image") or k == "image" else v)
                      for k, v in sample.items()}
            self._cache[index] = packed
        packed = self._cache[index]
        return {k: (v.float().div(255) if k.endswith("image") or k == "image" else v) for k, v in packed.items()}


class TrainView(Dataset):
    """``dataset[i]`` augmented with a generator seeded by (seed, epoch, i) and resized to ``size``."""

    def __init__(self, dataset: DepthDataset, augment: list | dict | None, size: tuple[int, int] | None, seed: int) -> None:
        self.dataset = dataset
        ops = build_augmentation(augment).transforms if augment else []
        self.size = size
        self.transform = Compose([*ops, Resize(size)]) if size is not None else (Compose(ops) if ops else None)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw the augmentations of ``epoch`` (call before iterating)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.dataset.load(index)
        if self.transform is not None:
            sample = self.transform(sample, generator=sample_seed(self.seed, self.epoch, index))
        if self.size is not None and sample_size(sample) != tuple(self.size):  # pragma: no cover - Resize guarantees it
            raise AssertionError("training samples must have the training size")
        return sample
