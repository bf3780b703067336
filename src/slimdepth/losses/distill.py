"""Distillation losses: a student mimics a frozen teacher's depth, features or feature affinities.

The three kinds of knowledge distillation of methods 3 and 4 of the design:

* :func:`response_loss` -- the student's depth against the teacher's on every pixel the
  teacher predicts (SILog or log-L1), on labeled and unlabeled images alike (Fan et al. 2021);
* :func:`feature_loss` -- L2 between a student feature map, mapped to the teacher's width by a
  learned 1x1 adapter, and the teacher's feature map at the same stride;
* :func:`affinity_loss` -- structure-aware distillation (Liu et al. 2019, LiteDepth): the
  cosine Gram matrix of the L2-normalised feature vectors over spatial positions, MSE between
  student and teacher. The Gram does not depend on the channel count, so the two widths may
  differ without an adapter. Positions may be restricted to a mask (LiteDepth keeps only
  positions where the ground truth, resized to the feature map, is valid) or the features
  max-pooled to a small grid first (Liu et al.) so the HW x HW matrix fits in memory.

Teacher maps are detached here (a teacher never learns) and resized to the student's size
when the two ran at different input sizes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from slimdepth.errors import ConfigError, DataError
from slimdepth.losses.common import DEPTH_FLOOR, as_float, check_positive, valid_mask, zero_loss
from slimdepth.losses.depth import silog

__all__ = ["RESPONSE_KINDS", "affinity_loss", "affinity_matrix", "feature_loss", "log_l1", "pool_grid",
           "resize_like", "response_loss", "valid_cells"]

#: the depth losses a response term may use
RESPONSE_KINDS = ("silog", "log_l1")


def resize_like(x: Tensor, size: Sequence[int]) -> Tensor:
    """``x`` (B, C, h, w) bilinearly resized to ``size`` (unchanged when it already has it)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(as_float(x), size=tuple(size), mode="bilinear", align_corners=False)


def log_l1(pred: Tensor, target: Tensor, mask: Tensor | None = None, floor: float = DEPTH_FLOOR) -> Tensor:
    """Mean |log p - log t| over the valid pixels (t finite and > 0, AND ``mask``)."""
    if pred.shape != target.shape:
        raise DataError(f"prediction shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
    pred = as_float(pred)
    target = target.to(pred.dtype)
    valid = valid_mask(target, mask)
    if not bool(valid.any()):
        return zero_loss(pred)
    return (torch.log(pred[valid].clamp(min=floor)) - torch.log(target[valid])).abs().mean()


def response_loss(pred: Tensor, teacher: Tensor, mask: Tensor | None = None, kind: str = "silog",
                  lambd: float = 0.85, scale: float = 10.0) -> Tensor:
    """The student's depth ``pred`` (B, 1, H, W) against the teacher's (resized to H x W) on
    every pixel the teacher predicts (finite, > 0) and ``mask`` allows.

    ``kind`` is ``silog`` (with ``lambd`` and ``scale`` as in :func:`~slimdepth.losses.depth.silog`)
    or ``log_l1``.
    """
    if kind not in RESPONSE_KINDS:
        raise ConfigError(f"response kind must be one of {', '.join(RESPONSE_KINDS)}, got {kind!r}")
    if pred.ndim != 4 or pred.shape[1] != 1 or teacher.ndim != 4 or teacher.shape[:2] != pred.shape[:2]:
        raise DataError(f"response distillation needs (B, 1, H, W) depth maps, got {tuple(pred.shape)} and "
                        f"{tuple(teacher.shape)}")
    target = resize_like(teacher.detach(), pred.shape[-2:])
    if kind == "log_l1":
        return log_l1(pred, target, mask)
    return silog(pred, target, mask, lambd=lambd, scale=scale)


def feature_loss(student: Tensor, teacher: Tensor, adapter: torch.nn.Module | None = None) -> Tensor:
    """Mean squared error between ``adapter(student)`` and the teacher's feature map resized to
    the student's spatial size (B, C_t, h, w). Without an adapter the widths must match."""
    mapped = adapter(student) if adapter is not None else student
    target = resize_like(teacher.detach(), mapped.shape[-2:]).to(as_float(mapped).dtype)
    if mapped.shape != target.shape:
        raise DataError(f"feature distillation: student features {tuple(mapped.shape)} do not match the teacher's "
                        f"{tuple(target.shape)} (an adapter maps the student's width to the teacher's)")
    return F.mse_loss(as_float(mapped), target)


def pool_grid(x: Tensor, grid: Sequence[int] | None) -> Tensor:
    """Max-pool ``x`` (B, C, h, w) to at most ``grid`` = (gh, gw) cells (Liu et al.); a map
    already within the grid is left alone. ``None`` = no pooling."""
    if grid is None:
        return x
    gh, gw = min(int(grid[0]), x.shape[-2]), min(int(grid[1]), x.shape[-1])
    if (gh, gw) == tuple(x.shape[-2:]):
        return x
    return F.adaptive_max_pool2d(x, (gh, gw))


def valid_cells(mask: Tensor, size: Sequence[int]) -> Tensor:
    """Which cells of a ``size`` feature grid hold a valid pixel of ``mask`` (B, 1, H, W):
    the mask max-pooled to the grid, so sparse LiDAR still marks the cells it falls in."""
    if mask.ndim != 4 or mask.shape[1] != 1:
        raise DataError(f"an affinity mask must be (B, 1, H, W), got {tuple(mask.shape)}")
    return F.adaptive_max_pool2d(mask.float(), tuple(size)) > 0


def affinity_matrix(features: Tensor, eps: float = 1e-8) -> Tensor:
    """The (B, N, N) cosine Gram of the feature vectors at the N = h*w positions of (B, C, h, w):
    A[b, i, j] = <f_i, f_j> / (|f_i| |f_j|). A zero vector has zero affinity to everything."""
    f = as_float(features).flatten(2)  # B, C, N
    f = f / f.norm(dim=1, keepdim=True).clamp(min=eps)
    return f.transpose(1, 2) @ f


def affinity_loss(student: Tensor, teacher: Tensor, mask: Tensor | None = None,
                  pool: Sequence[int] | None = None) -> Tensor:
    """MSE between the student's and the teacher's affinity matrices at one decoder level.

    The teacher's features are resized to the student's spatial size; with ``pool`` = (gh, gw)
    both are max-pooled to that grid first. ``mask`` (B, 1, H, W, bool, any resolution) keeps
    the pairs of positions whose cells hold a valid pixel; rows of the batch without any valid
    cell add nothing (pass an all-True row for an unlabeled image). The mean is over all kept
    pairs of the batch.
    """
    if student.ndim != 4 or teacher.ndim != 4 or student.shape[0] != teacher.shape[0]:
        raise DataError(f"affinity distillation needs (B, C, h, w) features of one batch, got {tuple(student.shape)} "
                        f"and {tuple(teacher.shape)}")
    if pool is not None:
        if len(pool) != 2:
            raise ConfigError(f"affinity pool must be a grid [rows, cols], got {pool!r}")
        check_positive("pool rows", pool[0])
        check_positive("pool cols", pool[1])
    teacher = resize_like(teacher.detach(), student.shape[-2:])
    s, t = pool_grid(student, pool), pool_grid(teacher, pool)
    diff = (affinity_matrix(s) - affinity_matrix(t).to(as_float(s).dtype)) ** 2  # B, N, N
    if mask is None:
        return diff.mean()
    keep = valid_cells(mask, s.shape[-2:]).flatten(1)  # B, N
    pairs = (keep[:, :, None] & keep[:, None, :]).to(diff.dtype)
    count = pairs.sum()
    if count == 0:
        return zero_loss(diff)
    return (diff * pairs).sum() / count
