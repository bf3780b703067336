"""Sample predictions with error maps on a few evaluation images, one sheet per model.

Each row is :func:`slimdepth.visualize.comparison_panel` (image | prediction | ground truth |
abs-rel error) of one image, predicted at the model's input size and resized back to the
image's own (:func:`slimdepth.evaluate.loop.predict_depth`, as evaluation does).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from slimdepth.data.base import DepthDataset
from slimdepth.evaluate.loop import predict_depth
from slimdepth.report.collect import ModelEntry
from slimdepth.report.measure import ModelCache
from slimdepth.report.plots import png_bytes, stack_rows
from slimdepth.visualize import comparison_panel

__all__ = ["NUM_SAMPLES", "sample_indices", "sample_sheets"]

#: evaluation images shown per model
NUM_SAMPLES = 3
#: smaller images are enlarged (nearest neighbour, whole pixels) to at least this height, so that a
#: 32x96 test image and its panel titles stay readable on the page
MIN_PANEL_HEIGHT = 144


def _enlarge(x: Any, factor: int) -> np.ndarray | None:
    """A CxHxW tensor or array repeated ``factor`` times along H and W (None stays None)."""
    if x is None:
        return None
    a = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
    return a if factor == 1 else a.repeat(factor, axis=-2).repeat(factor, axis=-1)


def sample_indices(length: int, num: int) -> list[int]:
    """``num`` indices spread evenly over ``range(length)`` (all of them when there are fewer)."""
    if length <= num:
        return list(range(length))
    return sorted({round(i * (length - 1) / max(1, num - 1)) for i in range(num)})


def sample_sheets(models: Sequence[ModelEntry], cache: ModelCache, dataset: DepthDataset,
                  num: int = NUM_SAMPLES) -> list[tuple[str, bytes]]:
    """One (caption, PNG) per model: its predictions and error maps on ``num`` evaluation images."""
    samples = [dataset[i] for i in sample_indices(len(dataset), num)]
    if not samples:
        return []
    images = [s["image"] for s in samples]
    sheets: list[tuple[str, bytes]] = []
    for entry in models:
        model, size = cache.get(entry)
        preds = predict_depth(model, images, size)
        rows = []
        for sample, pred in zip(samples, preds):
            k = max(1, math.ceil(MIN_PANEL_HEIGHT / sample["image"].shape[-2]))
            rows.append(comparison_panel(_enlarge(sample["image"], k), _enlarge(pred, k), _enlarge(sample.get("depth"), k)))
        names = ", ".join(str(s["meta"].get("name", "?")) for s in samples)
        sheets.append((f"{entry.name}: {names}", png_bytes(stack_rows(rows))))
    return sheets

