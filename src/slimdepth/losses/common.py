"""What every depth loss shares: valid pixels, shape checks, exact zeros, option checks.

See :mod:`slimdepth.losses` for the conventions these helpers implement.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from slimdepth.errors import ConfigError, DataError
from slimdepth.options import check_number

__all__ = ["DEPTH_FLOOR", "as_float", "berhu_of_residual", "check_flag", "check_option", "check_positive", "prepare_maps",
           "sanitize_invalid", "valid_mask", "zero_loss"]

#: predictions are clamped to this depth (metres) before a logarithm is taken
DEPTH_FLOOR = 1e-3


def zero_loss(t: Tensor) -> Tensor:
    """An exact scalar zero attached to ``t``'s graph (the sum of an empty slice: never NaN)."""
    return t.reshape(-1)[:0].sum()


def as_float(t: Tensor) -> Tensor:
    """Half precision → float32 (differentiably); other floating types unchanged."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def valid_mask(gt: Tensor, mask: Tensor | None = None) -> Tensor:
    """Valid pixels: finite ``gt`` > 0, AND-ed with ``mask`` when given (broadcast to ``gt``)."""
    valid = torch.isfinite(gt) & (gt > 0)
    if mask is not None:
        if mask.dtype != torch.bool:
            raise DataError(f"loss mask must be a bool tensor, got {mask.dtype}")
        try:
            valid = valid & torch.broadcast_to(mask, gt.shape)
        except RuntimeError as exc:
            raise DataError(f"loss mask of shape {tuple(mask.shape)} does not fit depth of shape {tuple(gt.shape)}") from exc
    return valid


def prepare_maps(pred: Tensor, gt: Tensor, mask: Tensor | None, spatial: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """Check shapes and return (pred, gt, valid) with half precision lifted to float32."""
    if pred.shape != gt.shape:
        raise DataError(f"prediction shape {tuple(pred.shape)} differs from ground-truth shape {tuple(gt.shape)}")
    if spatial and (pred.ndim != 4 or pred.shape[1] != 1):
        raise DataError(f"depth maps must be (B, 1, H, W), got {tuple(pred.shape)}")
    pred = as_float(pred)
    gt = gt.to(pred.dtype)
    return pred, gt, valid_mask(gt, mask)


def sanitize_invalid(pred: Tensor, gt: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Replace invalid pixels of both maps by 1 m: later maths stays finite, and ``where``
    passes exactly zero gradient to the replaced predictions."""
    one = torch.ones((), dtype=pred.dtype, device=pred.device)
    return torch.where(valid, pred, one), torch.where(valid, gt, one)


def check_option(name: str, value: Any, *, low: float | None = None, low_open: bool = False, finite: bool = True) -> None:
    """A loss option's number (:func:`~slimdepth.options.check_number`, named ``loss option NAME``)."""
    check_number(value, f"loss option {name}", low=low, low_open=low_open, finite=finite)


def check_positive(name: str, value: Any, allow_zero: bool = False) -> None:
    """A loss option that must be a finite number > 0 (``>= 0`` with ``allow_zero``)."""
    check_option(name, value, low=0.0, low_open=not allow_zero)


def check_flag(name: str, value: Any) -> None:
    """A loss option that must be true or false."""
    if not isinstance(value, bool):
        raise ConfigError(f"loss option {name} must be true or false, got {value!r}")


def berhu_of_residual(r: Tensor, c_ratio: float) -> Tensor:
    """Mean reverse Huber of flat residuals ``r`` with c = c_ratio * max|r| (detached)."""
    a = r.abs()
    c = c_ratio * a.detach().max()
    # the quadratic branch divides by c; keep it finite when c == 0 (then every |r| <= c anyway)
    c_safe = c.clamp(min=torch.finfo(a.dtype).tiny)
    quad = (r * r + c_safe * c_safe) / (2 * c_safe)
    return torch.where(a <= c, a, quad).mean()
