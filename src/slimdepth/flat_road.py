"""The flat road a level KITTI-like camera sees, and which ground-truth points stand above it.

Shared by the sim-to-real benchmark (the flat-road baseline and its road / above-road split) and
the road loss of the stixel head (:mod:`slimdepth.losses.road`), so that the road a model is
taught is the road it is scored on.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from slimdepth.fileio import as_intrinsics
from slimdepth.geometry import KITTI_CAMERA_HEIGHT

__all__ = ["ABOVE_ROAD", "above_road", "above_road_batch", "flat_road_depth"]

#: a point nearer than this share of the flat road's depth at its pixel stands above the road
ABOVE_ROAD = 0.8


def _flat_rows(fy: torch.Tensor, cy: torch.Tensor, height: int, camera_height: float, max_depth: float) -> torch.Tensor:
    """(B, H) float64: the flat road's depth on each row for cameras with focal ``fy`` and centre row
    ``cy`` (B each), ``max_depth`` on and above the horizon."""
    v = torch.arange(height, dtype=torch.float64, device=fy.device)[None, :] - cy.double()[:, None]
    below = v > 0
    z = torch.where(below, fy.double()[:, None] * camera_height / torch.where(below, v, torch.ones_like(v)),
                    torch.full_like(v, max_depth))
    return z.clamp(max=max_depth)


def flat_road_depth(K: Any, height: int, width: int, camera_height: float = KITTI_CAMERA_HEIGHT,
                    max_depth: float = 80.0) -> torch.Tensor:
    """Depth (1xHxW, metres) of a flat road seen by a level camera ``camera_height`` m above it:
    z = fy * h / (v - cy) for rows v below the horizon (v > cy), capped at ``max_depth``, and
    ``max_depth`` on and above the horizon. The baseline that needs no image at all."""
    Km = as_intrinsics(K)
    rows = _flat_rows(torch.tensor([Km[1, 1]]), torch.tensor([Km[1, 2]]), height, camera_height, max_depth)
    return rows[0][:, None].expand(height, width)[None].float()


def above_road(gt: torch.Tensor, K: Any, camera_height: float = KITTI_CAMERA_HEIGHT, share: float = ABOVE_ROAD
               ) -> torch.Tensor:
    """Boolean map (like ``gt``) of the valid ground-truth points that stand above the road:
    vehicles, walls, poles, people. A point on a flat road lies at the flat road's depth for its
    row; one nearer than ``share`` of it (or at or above the horizon) is on something standing
    there; a raised sidewalk (about 0.9 of it) still counts as road. Needs only the intrinsics
    and the camera height, no labels."""
    h, w = gt.shape[-2:]
    one = above_road_batch(gt.reshape(1, 1, h, w), torch.as_tensor(as_intrinsics(K))[None], camera_height, share)
    return one.reshape(gt.shape)


def above_road_batch(gt: torch.Tensor, K: torch.Tensor, camera_height: float = KITTI_CAMERA_HEIGHT,
                     share: float = ABOVE_ROAD) -> torch.Tensor:
    """:func:`above_road` for a batch, on ``gt``'s device: ``gt`` (B, 1, H, W), ``K`` (B, 3, 3)."""
    flat = _flat_rows(K[:, 1, 1].to(gt.device), K[:, 1, 2].to(gt.device), gt.shape[-2], camera_height, math.inf)
    return (gt > 0) & (gt < share * flat.float()[:, None, :, None])
