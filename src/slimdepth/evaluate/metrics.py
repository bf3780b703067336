"""Standard monocular depth metrics, computed per image over valid pixels, averaged over images.

The formulas follow monodepth2 / BTS / AdaBins so that numbers are comparable with papers:

* ``d1``, ``d2``, ``d3``: fraction of pixels with ``max(p/g, g/p) < 1.25**k``;
* ``abs_rel`` = mean |p - g| / g, ``sq_rel`` = mean (p - g)^2 / g, ``mae`` = mean |p - g|;
* ``rmse`` = sqrt(mean (p - g)^2), ``rmse_log`` = sqrt(mean (ln p - ln g)^2);
* ``log10`` = mean |log10 g - log10 p|;
* ``silog`` = 100 * sqrt(mean e^2 - (mean e)^2) with e = ln p - ln g (BTS/AdaBins form);
* ``si_rmse`` = sqrt(mean d^2 - (mean d)^2), d = ln p - ln g (MAI2022 challenge), i.e. silog / 100.

Each metric is computed for every image on its own and the results are averaged over images
(not pooled over all pixels). Images without a valid pixel are skipped and counted. All maths
runs in float64 on the tensors' device, so the same code scores on CPU and GPU.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import torch

from slimdepth.errors import DataError


class MetricName(NamedTuple):
    """One metric: its dict key, the name shown in tables and whether higher is better."""

    key: str
    display: str
    higher_is_better: bool


#: Every metric in display order (monodepth2's seven first, then log10, SILog, si-RMSE, MAE).
METRIC_NAMES: tuple[MetricName, ...] = (
    MetricName("abs_rel", "AbsRel", False),
    MetricName("sq_rel", "SqRel", False),
    MetricName("rmse", "RMSE", False),
    MetricName("rmse_log", "RMSElog", False),
    MetricName("d1", "δ<1.25", True),
    MetricName("d2", "δ<1.25²", True),
    MetricName("d3", "δ<1.25³", True),
    MetricName("log10", "log10", False),
    MetricName("silog", "SILog", False),
    MetricName("si_rmse", "si-RMSE", False),
    MetricName("mae", "MAE", False),
)
METRIC_KEYS: tuple[str, ...] = tuple(m.key for m in METRIC_NAMES)

_THRESHOLDS = (1.25, 1.25**2, 1.25**3)


def _as_batch(x: torch.Tensor, batched: bool) -> torch.Tensor:
    """Flatten to (B, N): one row per image (a single image when ``batched`` is False)."""
    x = torch.as_tensor(x)
    if not batched:
        return x.reshape(1, -1)
    if x.ndim < 2:
        raise DataError(f"a batch needs a leading batch dimension, got shape {tuple(x.shape)}")
    return x.reshape(x.shape[0], -1)


def _check_inputs(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if pred.shape != gt.shape:
        raise DataError(f"prediction shape {tuple(pred.shape)} does not match ground truth {tuple(gt.shape)}")
    if mask is None:
        mask = torch.isfinite(gt) & (gt > 0)
    else:
        mask = torch.as_tensor(mask, device=gt.device)
        if mask.shape != gt.shape:
            raise DataError(f"mask shape {tuple(mask.shape)} does not match ground truth {tuple(gt.shape)}")
        mask = mask.bool()
    return mask


def batch_depth_metrics(
    pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Per-image metrics of a batch: each value is a float64 tensor of shape (B,).

    ``pred``, ``gt`` and ``mask`` share the shape (B, ...); ``mask`` defaults to finite
    ``gt > 0``. Images without a valid pixel get NaN. Predictions and ground truth must be
    finite and positive on valid pixels (clamp predictions first, see ``conventions``).
    """
    pred, gt = torch.as_tensor(pred), torch.as_tensor(gt)
    mask = _check_inputs(pred, gt, mask)
    m = _as_batch(mask, True)
    p = _as_batch(pred, True).to(torch.float64)
    g = _as_batch(gt, True).to(torch.float64)

    bad = m & ~(torch.isfinite(p) & (p > 0) & torch.isfinite(g) & (g > 0))
    if bool(bad.any()):
        raise DataError(
            f"{int(bad.sum())} valid pixels have a non-positive or non-finite prediction or ground truth; "
            "clamp predictions to [min_depth, max_depth] before scoring"
        )

    one = torch.ones((), dtype=torch.float64, device=p.device)
    p = torch.where(m, p, one)  # neutral values keep logs finite off the mask
    g = torch.where(m, g, one)
    w = m.to(torch.float64)
    count = m.sum(dim=1)
    denom = count.clamp_min(1).to(torch.float64)

    def mean(x: torch.Tensor) -> torch.Tensor:
        return (x * w).sum(dim=1) / denom

    ratio = torch.maximum(p / g, g / p)
    diff = p - g
    e = torch.log(p) - torch.log(g)
    e_centred = e - mean(e)[:, None]
    si_rmse = mean(e_centred * e_centred).sqrt()  # two-pass variance: never negative
    out = {
        "abs_rel": mean(diff.abs() / g),
        "sq_rel": mean(diff * diff / g),
        "rmse": mean(diff * diff).sqrt(),
        "rmse_log": mean(e * e).sqrt(),
        "d1": mean((ratio < _THRESHOLDS[0]).to(torch.float64)),
        "d2": mean((ratio < _THRESHOLDS[1]).to(torch.float64)),
        "d3": mean((ratio < _THRESHOLDS[2]).to(torch.float64)),
        "log10": mean((torch.log10(g) - torch.log10(p)).abs()),
        "silog": 100.0 * si_rmse,
        "si_rmse": si_rmse,
        "mae": mean(diff.abs()),
    }
    empty = count == 0
    nan = torch.full((), math.nan, dtype=torch.float64, device=p.device)
    return {k: torch.where(empty, nan, out[k]) for k in METRIC_KEYS}


def compute_depth_metrics(
    pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None
) -> dict[str, float]:
    """Metrics of one image (any shape, e.g. HxW or 1xHxW) over the pixels where ``mask`` is true.

    Returns ``{key: float}`` in :data:`METRIC_NAMES` order; all NaN when no pixel is valid.
    """
    pred, gt = torch.as_tensor(pred), torch.as_tensor(gt)
    mask = _check_inputs(pred, gt, mask)
    per = batch_depth_metrics(pred.reshape(1, -1), gt.reshape(1, -1), mask.reshape(1, -1))
    return {k: float(v[0]) for k, v in per.items()}


class MetricAccumulator:
    """Averages per-image metrics over a stream of batches (float64 sums on the CPU).

    ``update`` scores a batch; ``add`` takes metrics already computed per image (for example
    by :func:`slimdepth.evaluate.conventions.evaluate_pair`). Images whose metrics are NaN
    (no valid pixel) are skipped and counted in :attr:`skipped`.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every image seen so far."""
        self._sums = dict.fromkeys(METRIC_KEYS, 0.0)
        self._count = 0
        self._skipped = 0

    @property
    def num_images(self) -> int:
        """Images that contributed to the means (at least one valid pixel)."""
        return self._count

    @property
    def skipped(self) -> int:
        """Images seen without any valid pixel."""
        return self._skipped

    def update(
        self, pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Score a batch (B, ...) and add each image; returns the per-image metrics."""
        per_image = batch_depth_metrics(pred, gt, mask)
        self.add(per_image)
        return per_image

    def add(self, metrics: Mapping[str, float | torch.Tensor]) -> None:
        """Add the metrics of one image (floats) or of a batch (tensors of shape (B,))."""
        missing = [k for k in METRIC_KEYS if k not in metrics]
        if missing:
            raise ValueError(f"metrics lack {', '.join(missing)}")
        table = torch.stack(
            [torch.as_tensor(metrics[k], dtype=torch.float64).detach().cpu().reshape(-1) for k in METRIC_KEYS],
            dim=1,
        )
        skip = torch.isnan(table).any(dim=1)
        kept = table[~skip]
        for key, total in zip(METRIC_KEYS, kept.sum(dim=0).tolist()):
            self._sums[key] += total
        self._count += int(kept.shape[0])
        self._skipped += int(skip.sum())

    def compute(self) -> dict[str, float]:
        """Mean of each metric over the images added so far (NaN when there are none)."""
        if self._count == 0:
            return dict.fromkeys(METRIC_KEYS, math.nan)
        return {k: self._sums[k] / self._count for k in METRIC_KEYS}
