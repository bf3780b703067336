"""Pixel-wise depth losses: BerHu, log-BerHu, SILog and Barron's robust loss."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from slimdepth.errors import ConfigError, DataError
from slimdepth.losses.common import (
    DEPTH_FLOOR,
    berhu_of_residual,
    check_flag,
    check_option,
    check_positive,
    prepare_maps,
    sanitize_invalid,
    zero_loss,
)

__all__ = ["barron_rho", "berhu", "log_berhu", "robust_loss", "silog"]


def berhu(pred: Tensor, gt: Tensor, mask: Tensor | None = None, c_ratio: float = 0.2) -> Tensor:
    """Reverse Huber (BerHu) loss on the depth residual (Laina et al. 2016; method 2).

    B(r) = |r| if |r| <= c else (r^2 + c^2) / (2c), c = ``c_ratio`` * max |r| over the valid
    pixels of the whole batch (detached). L1 for small residuals keeps their gradient alive,
    L2 for large ones weights the hard pixels. Mean over the valid pixels of the batch.
    """
    check_positive("c_ratio", c_ratio)
    pred, gt, valid = prepare_maps(pred, gt, mask)
    if not bool(valid.any()):
        return zero_loss(pred)
    return berhu_of_residual(pred[valid] - gt[valid], c_ratio)


def log_berhu(
    pred: Tensor,
    gt: Tensor,
    mask: Tensor | None = None,
    min_depth: float = 4.0,
    max_depth: float = 80.0,
    c_ratio: float = 0.2,
    floor: float = DEPTH_FLOOR,
) -> Tensor:
    """BerHu on log-scaled depth, the loss of Chiu et al. 2020 (method 5).

    G(d) = (log d - log m) * M / (log M - log m) with m = ``min_depth``, M = ``max_depth``
    maps [m, M] onto [0, M] logarithmically, so near pixels weigh as much as far ones; the
    BerHu threshold is alpha = max|G(p) - G(g)| / 5 (``c_ratio`` = 0.2) over the batch.
    G is not clipped outside [m, M]; predictions are clamped to ``floor`` before the log.
    """
    check_positive("min_depth", min_depth)
    check_positive("floor", floor)
    check_option("max_depth", max_depth, finite=False)
    if not max_depth > min_depth or not math.isfinite(max_depth):
        raise ConfigError(f"log_berhu needs max_depth > min_depth, got min_depth={min_depth}, max_depth={max_depth}")
    check_positive("c_ratio", c_ratio)
    pred, gt, valid = prepare_maps(pred, gt, mask)
    if not bool(valid.any()):
        return zero_loss(pred)
    k = max_depth / (math.log(max_depth) - math.log(min_depth))
    # G(p) - G(g) = k * (log p - log g): the offset log m cancels in the residual
    r = k * (torch.log(pred[valid].clamp(min=floor)) - torch.log(gt[valid]))
    return berhu_of_residual(r, c_ratio)


def silog(
    pred: Tensor,
    gt: Tensor,
    mask: Tensor | None = None,
    lambd: float = 0.85,
    scale: float = 10.0,
    per_image: bool = False,
    floor: float = DEPTH_FLOOR,
) -> Tensor:
    """Scale-invariant log loss in the BTS/AdaBins form (Eigen et al. 2014; method 4).

    ``scale`` * sqrt(mean(e^2) - ``lambd`` * mean(e)^2) with e = log p - log g. By default the
    means pool all valid pixels of the batch, as BTS does; ``per_image=True`` computes it per
    image and averages over the images that have a valid pixel. The radicand is evaluated as
    var(e) + (1 - lambd) * mean(e)^2 (no cancellation) and clamped at 0; its square root is
    taken only where positive, so a perfect prediction gives 0 and a finite gradient.
    With ``lambd`` = 1 the loss is fully scale invariant (p = k * g gives 0).
    """
    check_positive("scale", scale)
    check_positive("floor", floor)
    check_option("lambd", lambd, finite=False)
    check_flag("per_image", per_image)
    if not math.isfinite(lambd):
        raise ConfigError(f"silog option lambd must be finite, got {lambd!r}")
    pred, gt, valid = prepare_maps(pred, gt, mask)
    if not bool(valid.any()):
        return zero_loss(pred)

    def safe_sqrt(v: Tensor) -> Tensor:
        pos = v > 0
        return torch.where(pos, torch.sqrt(torch.where(pos, v, torch.ones_like(v))), torch.zeros_like(v))

    if not per_image:
        e = torch.log(pred[valid].clamp(min=floor)) - torch.log(gt[valid])
        mean = e.mean()
        v = ((e - mean) ** 2).mean() + (1.0 - lambd) * mean * mean
        return scale * safe_sqrt(v.clamp(min=0))
    if pred.ndim < 2:
        raise DataError(f"silog per_image needs a batch dimension, got shape {tuple(pred.shape)}")
    p, g = sanitize_invalid(pred, gt, valid)
    w = valid.to(p.dtype)
    e = (torch.log(p.clamp(min=floor)) - torch.log(g)) * w
    dims = tuple(range(1, e.ndim))
    n = w.sum(dim=dims)
    mean = e.sum(dim=dims) / n.clamp(min=1)
    centred = (e - mean.reshape(-1, *([1] * (e.ndim - 1)))) * w
    v = (centred * centred).sum(dim=dims) / n.clamp(min=1) + (1.0 - lambd) * mean * mean
    per = scale * safe_sqrt(v.clamp(min=0))
    return per[n > 0].mean()


def barron_rho(x: Tensor, alpha: float = 1.0, scale: float = 2.0) -> Tensor:
    """Barron's general robust function rho(x, alpha, c) (CVPR 2019), element-wise.

    rho = |a-2|/a * (((x/c)^2/|a-2| + 1)^(a/2) - 1), with its limits: a = 2 -> 0.5 (x/c)^2 (L2),
    a = 0 -> log(0.5 (x/c)^2 + 1) (Cauchy), a = -inf -> 1 - exp(-0.5 (x/c)^2) (Welsch),
    a = +inf -> exp(0.5 (x/c)^2) - 1. a = 1 is the pseudo-Huber sqrt((x/c)^2 + 1) - 1.
    The general case uses expm1/log1p so that alpha close to 0 stays accurate.
    """
    check_option("alpha", alpha, finite=False)  # +-inf are Barron's limits; NaN is refused
    check_positive("scale", scale)
    z2 = (x / scale) ** 2
    if alpha == 2.0:
        return 0.5 * z2
    if alpha == 0.0:
        return torch.log1p(0.5 * z2)
    if alpha == -math.inf:
        return -torch.expm1(-0.5 * z2)
    if alpha == math.inf:
        return torch.expm1(0.5 * z2)
    b = abs(alpha - 2.0)
    return (b / alpha) * torch.expm1(0.5 * alpha * torch.log1p(z2 / b))


def robust_loss(
    pred: Tensor, gt: Tensor, mask: Tensor | None = None, alpha: float = 1.0, scale: float = 2.0
) -> Tensor:
    """Barron's general robust loss on the depth residual in metres, mean over valid pixels.

    Method 4 (LiteDepth) uses alpha = 1, c = ``scale`` = 2 (a smooth L1 that is quadratic for
    |r| < 2 m). ``alpha`` and ``scale`` are fixed hyper-parameters here, not learned.
    """
    pred, gt, valid = prepare_maps(pred, gt, mask)
    if not bool(valid.any()):
        barron_rho(pred.new_zeros(()), alpha, scale)  # still validate the options
        return zero_loss(pred)
    return barron_rho(pred[valid] - gt[valid], alpha, scale).mean()
