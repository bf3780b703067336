"""Supervision of a stixel head's road logits from depth alone (no labels needed).

A pixel is ground when it is not :func:`~slimdepth.flat_road.above_road`: its true depth is at
least 0.8 of the depth the flat road has at its row (a road point lies on the plane, a raised
sidewalk or curb at about 0.9 of it; whatever stands on the road is nearer). That is the split
the sim-to-real benchmark scores, so the road a model is taught is the road it is scored on. The
flat road comes from each sample's intrinsics and a camera 1.65 m above a level road, as on
KITTI and in the built-in scenes: it is meant for such cameras only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from slimdepth.errors import DataError
from slimdepth.flat_road import above_road_batch
from slimdepth.losses.common import as_float, valid_mask, zero_loss

__all__ = ["ground_target", "road_loss"]


def ground_target(depth: Tensor, K: Tensor) -> Tensor:
    """Bool (B, 1, H, W): the pixels with depth that lie on the ground (not above the road)."""
    if depth.ndim != 4 or depth.shape[1] != 1 or K.ndim != 3 or K.shape[0] != depth.shape[0] or K.shape[1:] != (3, 3):
        raise DataError(f"the road loss needs depth (B, 1, H, W) and K (B, 3, 3), got {tuple(depth.shape)} and "
                        f"{tuple(K.shape)}")
    gt = as_float(depth).detach()
    return (gt > 0) & ~above_road_batch(gt, K.detach())


def road_loss(logits: Tensor, depth: Tensor, K: Tensor, mask: Tensor | None = None) -> Tensor:
    """Binary cross-entropy of road ``logits`` (B, 1, h, w; resized bilinearly to the depth's size)
    against :func:`ground_target`, over the pixels with finite depth > 0 (and ``mask`` if given)."""
    if logits.ndim != 4 or logits.shape[1] != 1 or logits.shape[0] != depth.shape[0]:
        raise DataError(f"road logits must be (B, 1, h, w) with B = {depth.shape[0]}, got {tuple(logits.shape)}")
    logits = as_float(logits)
    if logits.shape[-2:] != depth.shape[-2:]:
        logits = F.interpolate(logits, size=depth.shape[-2:], mode="bilinear", align_corners=False)
    valid = valid_mask(depth, mask)
    if not valid.any():
        return zero_loss(logits)
    target = ground_target(torch.where(valid, depth, torch.zeros_like(depth)), K).float()
    return F.binary_cross_entropy_with_logits(logits[valid], target[valid])
