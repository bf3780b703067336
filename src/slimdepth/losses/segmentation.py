"""The segmentation loss of the joint depth + segmentation network (method 5)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from slimdepth.errors import ConfigError, DataError
from slimdepth.labels import IGNORE_LABEL
from slimdepth.losses.common import as_float, zero_loss

__all__ = ["segmentation_loss"]


def segmentation_loss(
    logits: Tensor,
    labels: Tensor,
    ignore_index: int = IGNORE_LABEL,
    weight: Tensor | Sequence[float] | None = None,
) -> Tensor:
    """Pixel-wise cross-entropy with ``ignore_index`` (255) ignored (method 5's L_S).

    ``logits`` (B, C, h, w) are resized bilinearly to the label size (B, H, W) when they
    differ (labels are never interpolated). Optional per-class ``weight`` (C,); the mean is
    weighted as in :func:`torch.nn.functional.cross_entropy`. All-ignored labels give 0.
    """
    if labels.ndim == 4 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if logits.ndim != 4 or labels.ndim != 3 or logits.shape[0] != labels.shape[0]:
        raise DataError(
            f"segmentation needs logits (B, C, h, w) and labels (B, H, W), got {tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise DataError(f"segmentation labels must be an integer tensor, got {labels.dtype}")
    logits = as_float(logits)
    labels = labels.long()
    C = logits.shape[1]
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    if weight is not None:
        weight = torch.as_tensor(weight, dtype=logits.dtype, device=logits.device)
        if weight.shape != (C,):
            raise ConfigError(f"segmentation class weights must have one value per class ({C}), got shape {tuple(weight.shape)}")
    considered = labels != ignore_index
    bad = considered & ((labels < 0) | (labels >= C))
    n_considered, n_bad = torch.stack([considered.sum(), bad.sum()]).tolist()
    if n_bad:
        found = sorted(set(labels[bad].unique().tolist()))[:5]
        raise DataError(f"segmentation labels {found} are outside 0..{C - 1} and are not the ignore label {ignore_index}")
    if n_considered == 0:
        return zero_loss(logits)
    return F.cross_entropy(logits, labels, weight=weight, ignore_index=ignore_index)
