"""Data: the sample contract, readers (synthetic, KITTI, NYU, folders), augmentation and file I/O.

Importing the package registers every reader in :data:`slimdepth.data.registry.DATASETS`
(each reader module registers itself), so ``build_dataset`` knows them all; ``data/`` imports
nothing from the layers above it.
"""

from __future__ import annotations

from slimdepth.data import folder, kitti, nyu, synthetic  # noqa: F401  (registers the readers)
