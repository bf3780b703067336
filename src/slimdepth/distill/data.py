"""Batches that mix labeled and unlabeled images at a fixed ratio, reproducibly and resumably.

Every batch holds ``n_labeled`` samples from the labeled training set (in the order of the
trainer's :class:`~slimdepth.train.sampler.ResumableSampler`, which defines the epoch) and
``n_unlabeled`` samples drawn from the unlabeled set as an endless stream. The stream depends
only on (seed, global step, rank): draw ``g = (step * world + rank) * n_unlabeled + j`` is item
``g mod N`` of the permutation of pass ``g // N``, so a run resumed at any step draws exactly
the unlabeled images the uninterrupted run would have. Unlabeled images get the same
augmentation as labeled ones, seeded by (seed, pass, index).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from slimdepth.data.base import DepthDataset
from slimdepth.data.sample import collate_samples
from slimdepth.errors import ConfigError, DataError
from slimdepth.train.data import TrainView
from slimdepth.train.sampler import ResumableSampler, mix_seed, sample_seed

__all__ = ["MixedBatchSampler", "MixedView", "UnlabeledStream", "collate_mixed", "split_batch"]

_STREAM = 0x5D15  # a fixed salt: the unlabeled permutations differ from the labeled ones


def split_batch(batch_size: int, ratio: float, has_unlabeled: bool) -> tuple[int, int]:
    """(labeled, unlabeled) samples per batch: ``round(batch_size * ratio)`` unlabeled, at
    least one of each when there is unlabeled data and the ratio is in (0, 1)."""
    if not has_unlabeled or ratio <= 0:
        return batch_size, 0
    if ratio >= 1:
        raise ConfigError(f"distill.unlabeled_ratio must be below 1 (every batch needs labeled samples), got {ratio}")
    if batch_size < 2:
        raise ConfigError(f"mixing labeled and unlabeled samples needs data.batch_size >= 2, got {batch_size}")
    n_u = min(max(1, round(batch_size * ratio)), batch_size - 1)
    return batch_size - n_u, n_u


class UnlabeledStream:
    """Which unlabeled items the batch of a global step takes on a rank (see the module docstring)."""

    def __init__(self, length: int, per_batch: int, seed: int, rank: int = 0, world: int = 1) -> None:
        if length < 1:
            raise DataError("the unlabeled dataset is empty")
        self.length, self.per_batch, self.seed, self.rank, self.world = length, per_batch, seed, rank, world
        self._perm: tuple[int, list[int]] | None = None

    def _permutation(self, cycle: int) -> list[int]:
        if self._perm is None or self._perm[0] != cycle:
            g = torch.Generator().manual_seed(mix_seed(self.seed, _STREAM, cycle))
            self._perm = (cycle, torch.randperm(self.length, generator=g).tolist())
        return self._perm[1]

    def draws(self, step: int) -> list[tuple[int, int]]:
        """(index, pass) of the unlabeled items of global step ``step`` on this rank."""
        first = (step * self.world + self.rank) * self.per_batch
        out = []
        for g in range(first, first + self.per_batch):
            cycle, pos = divmod(g, self.length)
            out.append((self._permutation(cycle)[pos], cycle))
        return out


class MixedView(Dataset):
    """Loads ``("l", index)`` from the labeled view and ``("u", index, pass)`` from the
    unlabeled dataset, augmented as the labeled one is (seeded by the pass)."""

    def __init__(self, labeled: TrainView, unlabeled: DepthDataset | None, seed: int) -> None:
        self.labeled = labeled
        self.unlabeled = unlabeled  # augmented and resized by the labeled view's transform
        self.seed = seed

    def __len__(self) -> int:
        return len(self.labeled)

    def __getitem__(self, key: tuple) -> dict[str, Any]:
        if key[0] == "l":
            sample = self.labeled[key[1]]
            sample["meta"] = {**sample.get("meta", {}), "mix": ("l", key[1])}
            return sample
        assert self.unlabeled is not None
        _, index, cycle = key
        sample = self.unlabeled.load(index)
        if self.labeled.transform is not None:
            sample = self.labeled.transform(sample, generator=sample_seed(mix_seed(self.seed, _STREAM), cycle, index))
        sample = {k: v for k, v in sample.items() if k in ("image", "K", "meta")}  # labels of a labeled set are dropped
        sample["meta"] = {**sample.get("meta", {}), "mix": ("u", index)}
        return sample


class MixedBatchSampler(Sampler[list]):
    """Batches of ``n_labeled`` keys from ``sampler`` (this epoch, from its start) and
    ``n_unlabeled`` from ``stream``, numbering the batches from global step ``first_step``."""

    def __init__(self, sampler: ResumableSampler, n_labeled: int, stream: UnlabeledStream | None,
                 first_step: int) -> None:
        self.sampler, self.n_labeled, self.stream, self.first_step = sampler, n_labeled, stream, first_step

    def __iter__(self) -> Iterator[list]:
        labeled = list(self.sampler)
        for b in range(len(labeled) // self.n_labeled):
            keys: list[tuple] = [("l", i) for i in labeled[b * self.n_labeled:(b + 1) * self.n_labeled]]
            if self.stream is not None:
                keys += [("u", i, c) for i, c in self.stream.draws(self.first_step + b)]
            yield keys

    def __len__(self) -> int:
        return len(self.sampler) // self.n_labeled


def collate_mixed(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"labeled": batch, "unlabeled": batch or None}`` (each stacked by :func:`collate_samples`)."""
    labeled = [s for s in samples if s["meta"]["mix"][0] == "l"]
    unlabeled = [s for s in samples if s["meta"]["mix"][0] == "u"]
    return {"labeled": collate_samples(labeled), "unlabeled": collate_samples(unlabeled) if unlabeled else None}
