"""Evaluation conventions: which pixels count and how predictions are prepared before scoring.

Conventions match the reference code of the field so that numbers compare with papers:

* valid pixels: ``min_depth < gt < max_depth`` (strict, monodepth2/BTS), inside the crop;
* crops: KITTI Garg and Eigen crops as fractions of the image size with ``int()`` truncation
  (monodepth2/BTS), NYU Eigen crop rows 45:471, cols 41:601 at 480x640, scaled for other sizes;
* optional per-image median scaling, ratio = median(gt) / median(pred) over valid pixels
  (NumPy median, as monodepth2), applied before clamping;
* predictions clamped to [min_depth, max_depth], NaN -> min_depth, +inf -> max_depth (BTS);
* predictions are resized (bilinear) to the ground-truth size only when asked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from slimdepth.errors import ConfigError, DataError
from slimdepth.evaluate.metrics import METRIC_KEYS, batch_depth_metrics

CropName = Literal["garg", "eigen", "nyu"]
CROPS: tuple[str, ...] = ("garg", "eigen", "nyu")

#: KITTI crops as (top, bottom, left, right) fractions of (H, H, W, W), as in monodepth2/BTS.
_KITTI_CROP_FRACTIONS = {
    "garg": (0.40810811, 0.99189189, 0.03594771, 0.96405229),
    "eigen": (0.3324324, 0.91351351, 0.03594771, 0.96405229),
}
#: NYU Eigen crop (top, bottom, left, right) on the 480x640 reference image.
_NYU_CROP = (45, 471, 41, 601)
_NYU_SIZE = (480, 640)


@dataclass(frozen=True)
class EvalConfig:
    """How ground truth is masked and predictions prepared; ``preset`` records the origin."""

    min_depth: float = 1e-3
    max_depth: float = 80.0
    crop: CropName | None = None
    median_scaling: bool = False
    preset: str | None = None

    def __post_init__(self) -> None:
        lo, hi = self.min_depth, self.max_depth
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0 or hi <= lo:
            raise ConfigError(f"evaluation depth range needs 0 <= min_depth < max_depth, got {lo}..{hi}")
        if self.crop is not None and self.crop not in CROPS:
            raise ConfigError(f"unknown evaluation crop {self.crop!r}; choose one of {', '.join(CROPS)} or none")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable form."""
        return {
            "preset": self.preset,
            "min_depth": self.min_depth,
            "max_depth": self.max_depth,
            "crop": self.crop,
            "median_scaling": self.median_scaling,
        }


PRESETS: dict[str, EvalConfig] = {
    "kitti": EvalConfig(1e-3, 80.0, "garg", False, "kitti"),
    "kitti-eigen": EvalConfig(1e-3, 80.0, "eigen", False, "kitti-eigen"),
    "nyu": EvalConfig(1e-3, 10.0, "nyu", False, "nyu"),
    "none": EvalConfig(1e-3, 80.0, None, False, "none"),
}


def get_preset(name: str, **overrides: Any) -> EvalConfig:
    """The preset ``name`` (kitti, kitti-eigen, nyu, none), with fields replaced by ``overrides``."""
    if name not in PRESETS:
        raise ConfigError(f"unknown evaluation preset {name!r}; choose one of {', '.join(PRESETS)}")
    unknown = [k for k in overrides if k not in ("min_depth", "max_depth", "crop", "median_scaling")]
    if unknown:
        raise ConfigError(f"evaluation preset has no option {', '.join(map(repr, unknown))}")
    return replace(PRESETS[name], **overrides)


def preset_for(dataset: Any) -> EvalConfig:
    """The preset named by ``dataset.eval_preset``; ``none`` (no crop, 80 m cap) when it has none."""
    name = getattr(dataset, "eval_preset", None)
    return get_preset(name) if name else PRESETS["none"]


def resolve_eval_config(
    dataset: Any,
    preset: str | None = None,
    crop: str | None = None,
    min_depth: float | None = None,
    max_depth: float | None = None,
    median_scaling: bool = False,
) -> EvalConfig:
    """The conventions to score ``dataset`` with: ``preset`` (default: the dataset's own), with
    any of ``crop`` (``"none"`` removes it), ``min_depth``, ``max_depth``, ``median_scaling``
    overriding it; an overridden preset is reported as ``custom (from NAME)``."""
    if crop and crop not in (*CROPS, "none"):
        raise ConfigError(f"crop must be one of {', '.join(CROPS)} or none, got {crop!r}")
    config = get_preset(preset) if preset else preset_for(dataset)
    overrides: dict[str, Any] = {}
    if crop:
        overrides["crop"] = None if crop == "none" else crop
    if min_depth is not None:
        overrides["min_depth"] = float(min_depth)
    if max_depth is not None:
        overrides["max_depth"] = float(max_depth)
    if median_scaling:
        overrides["median_scaling"] = True
    if not overrides:
        return config
    return replace(config, **overrides, preset=f"custom (from {config.preset or 'none'})")


def crop_box(height: int, width: int, crop: CropName) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of a crop for an image of ``height`` x ``width`` (end exclusive)."""
    if crop in _KITTI_CROP_FRACTIONS:
        t, b, l, r = _KITTI_CROP_FRACTIONS[crop]
        return int(t * height), int(b * height), int(l * width), int(r * width)
    if crop == "nyu":
        (t, b, l, r), (h0, w0) = _NYU_CROP, _NYU_SIZE
        return t * height // h0, b * height // h0, l * width // w0, r * width // w0
    raise ConfigError(f"unknown evaluation crop {crop!r}; choose one of {', '.join(CROPS)}")


def crop_mask(height: int, width: int, crop: CropName | None, device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean HxW mask, true inside the crop (everywhere when ``crop`` is None)."""
    if crop is None:
        return torch.ones(height, width, dtype=torch.bool, device=device)
    top, bottom, left, right = crop_box(height, width, crop)
    mask = torch.zeros(height, width, dtype=torch.bool, device=device)
    mask[top:bottom, left:right] = True
    return mask


def valid_mask(gt: torch.Tensor, config: EvalConfig) -> torch.Tensor:
    """Pixels that count: ``min_depth < gt < max_depth`` and inside the crop (shape of ``gt``)."""
    gt = torch.as_tensor(gt)
    mask = (gt > config.min_depth) & (gt < config.max_depth)
    if config.crop is not None:
        mask &= crop_mask(gt.shape[-2], gt.shape[-1], config.crop, gt.device)
    return mask


def _masked_median(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """NumPy-style median (mean of the two middle values) of each row's masked values; NaN if none."""
    filled = torch.where(mask, values, torch.full_like(values, math.inf))
    ordered, _ = torch.sort(filled, dim=1)
    n = mask.sum(dim=1)
    lo = ((n - 1).clamp_min(0) // 2)[:, None]
    hi = (n // 2).clamp_max(values.shape[1] - 1)[:, None]
    med = 0.5 * (ordered.gather(1, lo) + ordered.gather(1, hi))[:, 0]
    return torch.where(n > 0, med, torch.full_like(med, math.nan))


def _to_bchw(x: torch.Tensor | np.ndarray, what: str) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.ndim == 2:
        x = x[None, None]
    elif x.ndim == 3:
        x = x[:, None] if x.shape[0] != 1 else x[None]
    if x.ndim != 4 or x.shape[1] != 1:
        raise DataError(f"{what} must be HxW, 1xHxW, BxHxW or Bx1xHxW, got shape {tuple(x.shape)}")
    return x


@dataclass
class BatchResult:
    """Per-image metrics (float64 tensors of shape (B,)), median-scaling ratios and valid-pixel counts."""

    metrics: dict[str, torch.Tensor]
    ratios: torch.Tensor | None
    valid_pixels: torch.Tensor


@dataclass
class PairResult:
    """Metrics of one image, its median-scaling ratio (None when not used) and its valid pixels."""

    metrics: dict[str, float]
    scale_ratio: float | None
    valid_pixels: int


def prepare_prediction(
    pred: torch.Tensor, gt: torch.Tensor, config: EvalConfig, resize: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Apply the conventions to a batch: returns (prepared pred, valid mask, ratios), all Bx1xHxW / (B,).

    Resizes (when asked), median-scales (when configured), then clamps. Raises
    :class:`DataError` on a size mismatch without ``resize`` or an impossible median scaling.
    """
    pred = _to_bchw(pred, "prediction").to(torch.float64)
    gt = _to_bchw(gt, "ground truth")
    if pred.shape[0] != gt.shape[0]:
        raise DataError(f"{pred.shape[0]} predictions for {gt.shape[0]} ground-truth maps")
    size, gt_size = tuple(pred.shape[-2:]), tuple(gt.shape[-2:])
    if size != gt_size:
        if not resize:
            raise DataError(
                f"prediction size {size[0]}x{size[1]} does not match ground truth {gt_size[0]}x{gt_size[1]}; "
                "pass resize=True (--resize) to resize predictions bilinearly"
            )
        pred = F.interpolate(pred, size=gt_size, mode="bilinear", align_corners=False)
    gt = gt.to(device=pred.device, dtype=torch.float64)
    mask = valid_mask(gt, config)
    ratios = None
    if config.median_scaling:
        flat_p, flat_m = pred.flatten(1), mask.flatten(1)
        finite = flat_m & torch.isfinite(flat_p)
        ratios = _masked_median(gt.flatten(1), flat_m) / _masked_median(flat_p, finite)
        has_valid = flat_m.any(dim=1)
        bad = has_valid & ~(torch.isfinite(ratios) & (ratios > 0))
        if bool(bad.any()):
            raise DataError("median scaling impossible: the prediction's median over valid pixels is not positive and finite")
        ratios = torch.where(has_valid, ratios, torch.full_like(ratios, math.nan))
        pred = pred * torch.where(has_valid, ratios, torch.ones_like(ratios))[:, None, None, None]
    pred = torch.nan_to_num(pred, nan=config.min_depth, posinf=config.max_depth, neginf=config.min_depth)
    pred = pred.clamp(config.min_depth, config.max_depth)
    return pred, mask, ratios


def evaluate_batch(
    pred: torch.Tensor, gt: torch.Tensor, config: EvalConfig, resize: bool = False
) -> BatchResult:
    """Score a batch of predictions against ground truth under ``config`` (per image)."""
    gt = _to_bchw(gt, "ground truth")
    pred, mask, ratios = prepare_prediction(pred, gt, config, resize)
    metrics = batch_depth_metrics(pred, gt.to(pred), mask)
    return BatchResult(metrics, ratios, mask.flatten(1).sum(dim=1))


def evaluate_pair(
    pred: torch.Tensor | np.ndarray, gt: torch.Tensor | np.ndarray, config: EvalConfig, resize: bool = False
) -> PairResult:
    """Score one predicted depth map (HxW or 1xHxW, metres) against its ground truth.

    Metrics are NaN when no pixel is valid; ``scale_ratio`` is set only with median scaling.
    """
    pred, gt = torch.as_tensor(pred), torch.as_tensor(gt)
    if pred.ndim == 4 or gt.ndim == 4 or (pred.ndim == 3 and pred.shape[0] != 1) or (gt.ndim == 3 and gt.shape[0] != 1):
        raise DataError(f"evaluate_pair takes one image (HxW or 1xHxW), got {tuple(pred.shape)} and {tuple(gt.shape)}")
    res = evaluate_batch(pred, gt, config, resize)
    ratio = None if res.ratios is None else float(res.ratios[0])
    return PairResult({k: float(res.metrics[k][0]) for k in METRIC_KEYS}, ratio, int(res.valid_pixels[0]))


def scale_ratio_stats(ratios: list[float] | np.ndarray | torch.Tensor) -> dict[str, float | int]:
    """Summary of median-scaling ratios: mean, std, median and monodepth2's std(ratios / median).

    NaN ratios (images without a valid pixel) are ignored; standard deviations are population ones.
    """
    r = np.asarray(torch.as_tensor(ratios, dtype=torch.float64).cpu(), dtype=np.float64).ravel()
    r = r[~np.isnan(r)]
    if r.size == 0:
        return {"count": 0, "mean": math.nan, "std": math.nan, "median": math.nan, "std_over_median": math.nan}
    med = float(np.median(r))
    return {
        "count": int(r.size),
        "mean": float(r.mean()),
        "std": float(r.std()),
        "median": med,
        "std_over_median": float(np.std(r / med)),
    }
