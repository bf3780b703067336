"""Semantic label constants shared by the data, the losses and the pictures (no torch import)."""

from __future__ import annotations

#: label of pixels that carry no class (void, unlabelled, traffic-sign panels in the synthetic data)
IGNORE_LABEL = 255

#: classes of the built-in synthetic street scenes (train ids 0..7)
CLASS_NAMES: tuple[str, ...] = ("road", "sidewalk", "building", "vegetation", "pole", "car", "pedestrian", "sky")
