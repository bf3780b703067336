"""Deterministic, rank-aware, resumable sampling and per-sample seeds."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, Dataset

from slimdepth.train.sampler import ResumableSampler, sample_seed


def epoch_order(n: int, seed: int, epoch: int, **kwargs) -> list[int]:
    sampler = ResumableSampler(n, seed=seed, **kwargs)
    sampler.set_epoch(epoch)
    return list(sampler)


def test_permutation_per_epoch_is_deterministic_and_changes() -> None:
    orders = [epoch_order(50, seed=3, epoch=e) for e in range(4)]
    assert all(sorted(o) == list(range(50)) for o in orders)
    assert len({tuple(o) for o in orders}) == 4
    assert orders[2] == epoch_order(50, seed=3, epoch=2)
    assert epoch_order(50, seed=4, epoch=2) != orders[2]
    # (seed, epoch) are mixed, not added: (0, 1) and (1, 0) differ
    assert epoch_order(50, seed=0, epoch=1) != epoch_order(50, seed=1, epoch=0)


def test_no_shuffle_is_sequential() -> None:
    sampler = ResumableSampler(7, shuffle=False)
    sampler.set_epoch(5)
    assert list(sampler) == list(range(7))


def test_ranks_are_disjoint_and_cover_the_dataset() -> None:
    n, world = 24, 4
    parts = [epoch_order(n, seed=1, epoch=2, rank=r, world_size=world) for r in range(world)]
    assert all(len(p) == n // world for p in parts)
    assert sorted(i for p in parts for i in p) == list(range(n))
    # the ranks interleave the single-process order of the same epoch
    single = epoch_order(n, seed=1, epoch=2)
    assert [single[i] for i in range(1, n, world)] == parts[1]


def test_padding_by_repetition_gives_equal_counts() -> None:
    n, world = 10, 4
    samplers = [ResumableSampler(n, seed=0, rank=r, world_size=world) for r in range(world)]
    parts = [list(s) for s in samplers]
    assert [len(s) for s in samplers] == [3] * 4 and [len(p) for p in parts] == [3] * 4
    counts = Counter(i for p in parts for i in p)
    assert set(counts) == set(range(n)) and sum(counts.values()) == 12
    assert sorted(counts.values()) == [1] * 8 + [2] * 2  # two indices repeated to pad


def test_drop_last_truncates() -> None:
    n, world = 10, 4
    parts = [epoch_order(n, seed=0, epoch=0, rank=r, world_size=world, drop_last=True) for r in range(world)]
    assert [len(p) for p in parts] == [2] * 4
    flat = [i for p in parts for i in p]
    assert len(set(flat)) == 8


def test_tiny_dataset_is_repeated_for_many_ranks() -> None:
    parts = [epoch_order(2, seed=0, epoch=0, rank=r, world_size=5) for r in range(5)]
    assert all(len(p) == 1 for p in parts) and {i for p in parts for i in p} == {0, 1}
    assert list(ResumableSampler(0, world_size=3, rank=2)) == [] and len(ResumableSampler(0)) == 0


def test_set_start_skips_exactly_and_len_follows() -> None:
    sampler = ResumableSampler(30, seed=9, rank=1, world_size=2)
    sampler.set_epoch(3)
    full = list(sampler)
    assert len(sampler) == 15
    sampler.set_start(6)
    assert list(sampler) == full[6:] and len(sampler) == 9
    assert list(sampler) == full[6:]  # iterating does not consume the state
    sampler.set_start(15)
    assert list(sampler) == [] and len(sampler) == 0
    sampler.set_epoch(4)  # a new epoch starts from its beginning
    assert sampler.start == 0 and len(sampler) == 15 and list(sampler) != full


def test_resumed_sampler_continues_the_interrupted_epoch() -> None:
    run = ResumableSampler(40, seed=5)
    run.set_epoch(1)
    seen = list(run)[:17]
    resumed = ResumableSampler(40, seed=5)  # a new process
    resumed.set_epoch(1)
    resumed.set_start(17)
    assert seen + list(resumed) == list(run)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"dataset_len": -1}, ValueError),
        ({"dataset_len": 5, "world_size": 0}, ValueError),
        ({"dataset_len": 5, "rank": 2, "world_size": 2}, ValueError),
        ({"dataset_len": 5, "rank": -1}, ValueError),
        ({"dataset_len": 5.0}, TypeError),
        ({"dataset_len": 5, "seed": "0"}, TypeError),
    ],
)
def test_constructor_errors(kwargs: dict, error: type) -> None:
    with pytest.raises(error):
        ResumableSampler(**kwargs)


def test_set_start_and_epoch_errors() -> None:
    sampler = ResumableSampler(10, world_size=2)
    with pytest.raises(ValueError, match=r"\[0, 5\]"):
        sampler.set_start(6)
    with pytest.raises(ValueError):
        sampler.set_start(-1)
    with pytest.raises(ValueError):
        sampler.set_epoch(-1)


class Indices(Dataset):
    def __len__(self) -> int:
        return 13

    def __getitem__(self, i: int) -> int:
        return i


def test_works_with_dataloader() -> None:
    sampler = ResumableSampler(13, seed=2)
    sampler.set_epoch(1)
    sampler.set_start(4)
    loader = DataLoader(Indices(), batch_size=4, sampler=sampler)
    assert len(loader) == 3
    got = torch.cat(list(loader)).tolist()
    assert got == epoch_order(13, seed=2, epoch=1)[4:]


def test_sample_seed_range_determinism_and_spread() -> None:
    seeds = {sample_seed(0, e, i) for e in range(5) for i in range(200)}
    assert len(seeds) == 1000
    assert all(0 <= s < 2**63 for s in seeds)
    assert sample_seed(7, 2, 11) == sample_seed(7, 2, 11)
    assert sample_seed(7, 2, 11) != sample_seed(7, 11, 2) != sample_seed(2, 7, 11)
    assert sample_seed(-1, 0, 0) != sample_seed(0, 0, 0)
    torch.Generator().manual_seed(sample_seed(2**70, 3, 4))  # always a valid torch seed
    # well spread: the top bit is set about half the time
    high = sum(s >> 62 for s in seeds)
    assert 400 < high < 600
    with pytest.raises(TypeError):
        sample_seed(0, 1.5, 2)  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 60), world=st.integers(1, 7), drop_last=st.booleans(), shuffle=st.booleans(),
       seed=st.integers(0, 2**40), epoch=st.integers(0, 50), data=st.data())
def test_partition_properties(n: int, world: int, drop_last: bool, shuffle: bool, seed: int, epoch: int,
                              data: st.DataObject) -> None:
    samplers = [ResumableSampler(n, shuffle=shuffle, seed=seed, rank=r, world_size=world, drop_last=drop_last)
                for r in range(world)]
    for s in samplers:
        s.set_epoch(epoch)
    parts = [list(s) for s in samplers]
    lengths = {len(p) for p in parts}
    assert len(lengths) == 1 and lengths == {len(samplers[0])}
    flat = [i for p in parts for i in p]
    if drop_last:
        assert len(flat) == (n // world) * world and len(set(flat)) == len(flat)
    else:
        assert set(flat) == set(range(n)) and len(flat) == -(-n // world) * world
    start = data.draw(st.integers(0, samplers[0].num_samples))
    samplers[0].set_start(start)
    assert list(samplers[0]) == parts[0][start:] and len(samplers[0]) == len(parts[0]) - start
