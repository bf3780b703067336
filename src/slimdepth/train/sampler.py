"""A deterministic, resumable, rank-aware sampler and per-sample seeds.

The order of an epoch depends only on ``(seed, epoch)``, so a run resumed mid-epoch sees
exactly the samples it had not seen yet, on every rank.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["ResumableSampler", "mix_seed", "sample_seed"]

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    """One round of the SplitMix64 finaliser (a bijection on 64-bit integers)."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def mix_seed(*values: int) -> int:
    """Hash integers (any sign, taken modulo 2**64) into a 63-bit non-negative seed."""
    h = _splitmix64(len(values))
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"seeds must be integers, got {v!r}")
        h = _splitmix64(h ^ (v & _MASK64))
    return h >> 1


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for the augmentation RNG of dataset item ``index`` in ``epoch``.

    Deterministic in ``(seed, epoch, index)`` and independent of rank, worker and batch
    composition; e.g. ``torch.Generator().manual_seed(sample_seed(seed, epoch, i))``.
    """
    return mix_seed(seed, epoch, index)


class ResumableSampler(Sampler[int]):
    """Deterministic per-epoch order split across ranks, with mid-epoch resumption.

    Each epoch's order is a permutation drawn by a ``torch.Generator`` seeded from
    ``(seed, epoch)`` (or ``0..n-1`` without shuffling). As with ``DistributedSampler``, the
    order is padded by repeating its start (or, with ``drop_last``, truncated) to a multiple
    of ``world_size``, and rank ``r`` takes positions ``r, r + world_size, ...``, so every
    rank gets ``num_samples`` indices. ``set_start(i)`` skips this rank's first ``i``.

    Call ``set_epoch(e)`` at the start of every epoch (it resets the start to 0), then
    ``set_start(i)`` when resuming in the middle of it.
    """

    def __init__(self, dataset_len: int, shuffle: bool = True, seed: int = 0, rank: int = 0,
                 world_size: int = 1, drop_last: bool = False) -> None:
        for name, value in (("dataset_len", dataset_len), ("seed", seed), ("rank", rank), ("world_size", world_size)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an integer, got {value!r}")
        if dataset_len < 0:
            raise ValueError(f"dataset_len must be >= 0, got {dataset_len}")
        if world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {world_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.dataset_len = dataset_len
        self.shuffle = bool(shuffle)
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = bool(drop_last)
        if drop_last:
            self.num_samples = dataset_len // world_size
        else:
            self.num_samples = -(-dataset_len // world_size)
        self.total_size = self.num_samples * world_size
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order is produced next; resets the start to 0."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
        self.epoch = epoch
        self.start = 0

    def set_start(self, index: int) -> None:
        """Skip the first ``index`` samples of this rank's current epoch (0 <= index <= num_samples)."""
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= self.num_samples:
            raise ValueError(f"start index must be an integer in [0, {self.num_samples}], got {index!r}")
        self.start = index

    def epoch_indices(self) -> list[int]:
        """This rank's full index list for the current epoch (ignoring the start)."""
        n = self.dataset_len
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(mix_seed(self.seed, self.epoch))
            order = torch.randperm(n, generator=generator).tolist()
        else:
            order = list(range(n))
        if self.total_size > n and n > 0:
            padding = self.total_size - n
            repeats = -(-padding // n)
            order += (order * repeats)[:padding]
        else:
            order = order[: self.total_size]
        return order[self.rank : self.total_size : self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_indices()[self.start :])

    def __len__(self) -> int:
        return self.num_samples - self.start

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(dataset_len={self.dataset_len}, shuffle={self.shuffle}, seed={self.seed}, "
                f"rank={self.rank}, world_size={self.world_size}, drop_last={self.drop_last}, "
                f"epoch={self.epoch}, start={self.start})")
