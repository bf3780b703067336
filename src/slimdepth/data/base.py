"""Base class of every slimdepth dataset: indexable, sized, names known without loading."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

Transform = Callable[[dict[str, Any]], dict[str, Any]]


class DepthDataset(Dataset):
    """A sequence of contract samples (see :mod:`slimdepth.data.sample`).

    Subclasses implement :meth:`__len__`, :meth:`load` and :meth:`names`. ``transform`` is
    applied to each loaded sample (augmentation, resizing). ``eval_preset`` names the
    evaluation convention that fits the data (``"kitti"``, ``"nyu"`` or ``None``).
    """

    dataset_name: str = "unknown"
    eval_preset: str | None = None

    def __init__(self, transform: Transform | None = None) -> None:
        self.transform = transform

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def names(self) -> list[str]:
        """The ``meta['name']`` of every sample, in order, without reading any file."""
        raise NotImplementedError  # pragma: no cover - abstract

    def load(self, index: int) -> dict[str, Any]:
        """Read sample ``index`` (no transform)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def source_files(self) -> list[Path]:
        """Every existing file the dataset reads (images, depth, labels, calibration, lists),
        without reading any, so that no output is ever written over one. None for data made
        on the fly."""
        return []

    def source_folders(self) -> list[Path]:
        """Folders the dataset scans for its files (recursively): anything written there would
        change the dataset, so outputs are never put inside one. None for data made on the fly."""
        return []

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} samples")
        sample = self.load(index)
        return self.transform(sample) if self.transform is not None else sample


#: the sample keys an unlabeled view keeps
UNLABELED_KEYS = ("image", "K", "meta")


class WithoutLabels(DepthDataset):
    """Any dataset with its labels dropped (``labels=false`` in a dataset spec): samples keep
    ``image``, ``K`` and ``meta`` only, as auxiliary unlabeled images for distillation."""

    def __init__(self, base: DepthDataset, transform: Transform | None = None) -> None:
        super().__init__(transform)
        self.base = base
        self.dataset_name = base.dataset_name
        self.eval_preset = base.eval_preset

    def __len__(self) -> int:
        return len(self.base)

    def names(self) -> list[str]:
        return self.base.names()

    def source_files(self) -> list[Path]:
        return self.base.source_files()

    def source_folders(self) -> list[Path]:
        return self.base.source_folders()

    def load(self, index: int) -> dict[str, Any]:
        return {k: v for k, v in self.base.load(index).items() if k in UNLABELED_KEYS}
