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
