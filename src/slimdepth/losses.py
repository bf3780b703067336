"""Depth and segmentation losses, learnable loss weighting and a config-built training criterion.

Conventions shared by every depth loss here:

* ``pred`` is a (B, 1, H, W) depth map in metres, ``gt`` the same shape in metres with
  0 = invalid (the Sample contract); ``mask`` is an optional bool tensor broadcastable to ``gt``.
  A pixel is *valid* when ``gt`` is finite and > 0 and ``mask`` (if given) is True.
* Every loss returns a scalar tensor. When no pixel (or no difference, or no triplet) is valid
  it returns an exact zero that is still attached to ``pred``'s graph, never NaN.
* A prediction at an invalid pixel receives exactly zero gradient (and may even be NaN): the
  losses select or ``torch.where``-replace invalid values before any arithmetic.
* Statistics that set thresholds (BerHu's c, the log-BerHu alpha) are computed over the valid
  pixels of the whole batch and detached, as in Laina et al. 2016.
* Means are pooled over all valid pixels of the batch (as BTS does), unless a function says
  otherwise. Logarithms clamp the prediction to ``floor`` (1e-3 m) first.
* Half-precision inputs are computed in float32 (logs and squares under AMP lose too much).

:class:`DepthCriterion` (built by :func:`build_criterion` from a plain dict, as read from YAML)
combines the terms over the output scales and an optional segmentation loss; see its docstring.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slimdepth.errors import ConfigError, DataError
from slimdepth.labels import IGNORE_LABEL

__all__ = [
    "DEPTH_FLOOR",
    "LOSS_FUNCTIONS",
    "DepthCriterion",
    "LearnableLossWeights",
    "TermSpec",
    "barron_rho",
    "berhu",
    "build_criterion",
    "gradient_loss",
    "log_berhu",
    "robust_loss",
    "segmentation_loss",
    "silog",
    "valid_mask",
    "virtual_normal_loss",
]

#: predictions are clamped to this depth (metres) before a logarithm is taken
DEPTH_FLOOR = 1e-3


# --------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------


def _zero(t: Tensor) -> Tensor:
    """An exact scalar zero attached to ``t``'s graph (the sum of an empty slice: never NaN)."""
    return t.reshape(-1)[:0].sum()


def _as_float(t: Tensor) -> Tensor:
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


def _prepare(pred: Tensor, gt: Tensor, mask: Tensor | None, spatial: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """Check shapes and return (pred, gt, valid) with half precision lifted to float32."""
    if pred.shape != gt.shape:
        raise DataError(f"prediction shape {tuple(pred.shape)} differs from ground-truth shape {tuple(gt.shape)}")
    if spatial and (pred.ndim != 4 or pred.shape[1] != 1):
        raise DataError(f"depth maps must be (B, 1, H, W), got {tuple(pred.shape)}")
    pred = _as_float(pred)
    gt = gt.to(pred.dtype)
    return pred, gt, valid_mask(gt, mask)


def _sanitize(pred: Tensor, gt: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Replace invalid pixels of both maps by 1 m: later maths stays finite, and ``where``
    passes exactly zero gradient to the replaced predictions."""
    one = torch.ones((), dtype=pred.dtype, device=pred.device)
    return torch.where(valid, pred, one), torch.where(valid, gt, one)


def _check_number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        hint = " (YAML reads 1e-3 as text: write 1.0e-3)" if isinstance(value, str) else ""
        raise ConfigError(f"loss option {name} must be a number, got {value!r}{hint}")


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"loss option {name} must be true or false, got {value!r}")


def _check_positive(name: str, value: float, allow_zero: bool = False) -> None:
    _check_number(name, value)
    ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ConfigError(f"loss option {name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def _berhu_of_residual(r: Tensor, c_ratio: float) -> Tensor:
    """Mean reverse Huber of flat residuals ``r`` with c = c_ratio * max|r| (detached)."""
    a = r.abs()
    c = c_ratio * a.detach().max()
    # the quadratic branch divides by c; keep it finite when c == 0 (then every |r| <= c anyway)
    c_safe = c.clamp(min=torch.finfo(a.dtype).tiny)
    quad = (r * r + c_safe * c_safe) / (2 * c_safe)
    return torch.where(a <= c, a, quad).mean()


# --------------------------------------------------------------------------------------------
# pixel-wise depth losses
# --------------------------------------------------------------------------------------------


def berhu(pred: Tensor, gt: Tensor, mask: Tensor | None = None, c_ratio: float = 0.2) -> Tensor:
    """Reverse Huber (BerHu) loss on the depth residual (Laina et al. 2016; method 2).

    B(r) = |r| if |r| <= c else (r^2 + c^2) / (2c), c = ``c_ratio`` * max |r| over the valid
    pixels of the whole batch (detached). L1 for small residuals keeps their gradient alive,
    L2 for large ones weights the hard pixels. Mean over the valid pixels of the batch.
    """
    _check_positive("c_ratio", c_ratio)
    pred, gt, valid = _prepare(pred, gt, mask)
    if not bool(valid.any()):
        return _zero(pred)
    return _berhu_of_residual(pred[valid] - gt[valid], c_ratio)


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
    _check_positive("min_depth", min_depth)
    _check_positive("floor", floor)
    _check_number("max_depth", max_depth)
    if not max_depth > min_depth or not math.isfinite(max_depth):
        raise ConfigError(f"log_berhu needs max_depth > min_depth, got min_depth={min_depth}, max_depth={max_depth}")
    _check_positive("c_ratio", c_ratio)
    pred, gt, valid = _prepare(pred, gt, mask)
    if not bool(valid.any()):
        return _zero(pred)
    k = max_depth / (math.log(max_depth) - math.log(min_depth))
    # G(p) - G(g) = k * (log p - log g): the offset log m cancels in the residual
    r = k * (torch.log(pred[valid].clamp(min=floor)) - torch.log(gt[valid]))
    return _berhu_of_residual(r, c_ratio)


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
    _check_positive("scale", scale)
    _check_positive("floor", floor)
    _check_number("lambd", lambd)
    _check_bool("per_image", per_image)
    if not math.isfinite(lambd):
        raise ConfigError(f"silog option lambd must be finite, got {lambd!r}")
    pred, gt, valid = _prepare(pred, gt, mask)
    if not bool(valid.any()):
        return _zero(pred)

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
    p, g = _sanitize(pred, gt, valid)
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
    _check_number("alpha", alpha)
    if math.isnan(alpha):
        raise ConfigError("robust loss alpha must be a number, got nan")
    _check_positive("scale", scale)
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
    pred, gt, valid = _prepare(pred, gt, mask)
    if not bool(valid.any()):
        barron_rho(pred.new_zeros(()), alpha, scale)  # still validate the options
        return _zero(pred)
    return barron_rho(pred[valid] - gt[valid], alpha, scale).mean()


# --------------------------------------------------------------------------------------------
# structural losses
# --------------------------------------------------------------------------------------------


def _pool_valid(x: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """Halve a map by averaging the valid values of each 2x2 block; a block is valid when any
    of its pixels is. ``x`` must already hold finite values at invalid pixels."""
    num = F.avg_pool2d(x * w, 2, 2, ceil_mode=True)
    den = F.avg_pool2d(w, 2, 2, ceil_mode=True)
    valid = den > 0
    return torch.where(valid, num / den.clamp(min=torch.finfo(den.dtype).tiny), torch.ones_like(num)), valid.to(w.dtype)


def gradient_loss(
    pred: Tensor,
    gt: Tensor,
    mask: Tensor | None = None,
    scales: int = 1,
    log: bool = False,
    floor: float = DEPTH_FLOOR,
) -> Tensor:
    """Gradient-matching loss with invalid pixels masked out (LiteDepth, method 4).

    Horizontal and vertical forward differences of prediction and ground truth; a difference
    counts only when both of its pixels are valid, for the prediction and the ground truth alike
    (this equals LiteDepth's NaN-masking of invalid pixels, without NaN in the graph), so an
    invalid pixel contributes nothing. Per scale: mean |grad p - grad g| over the counted
    differences of both directions. ``scales`` > 1 adds halved maps (2x2 averages of the valid
    pixels; a block is valid when any pixel is), stopping once a side is below 2 pixels; the
    result is the mean over the scales that have a counted difference. ``log`` matches
    gradients of log depth (relative, scale-free edges) instead of metres.
    """
    if not isinstance(scales, int) or scales < 1:
        raise ConfigError(f"gradient loss option scales must be an integer >= 1, got {scales!r}")
    _check_positive("floor", floor)
    _check_bool("log", log)
    pred, gt, valid = _prepare(pred, gt, mask, spatial=True)
    p, g = _sanitize(pred, gt, valid)
    if log:
        p, g = torch.log(p.clamp(min=floor)), torch.log(g)
    w = valid.to(p.dtype)
    per_scale: list[Tensor] = []
    for s in range(scales):
        if s > 0:
            if min(p.shape[-2:]) < 2:
                break
            p, _ = _pool_valid(p, w)
            g, w = _pool_valid(g, w)
        wx = w[..., :, 1:] * w[..., :, :-1]
        wy = w[..., 1:, :] * w[..., :-1, :]
        dx = ((p[..., :, 1:] - p[..., :, :-1]) - (g[..., :, 1:] - g[..., :, :-1])).abs()
        dy = ((p[..., 1:, :] - p[..., :-1, :]) - (g[..., 1:, :] - g[..., :-1, :])).abs()
        count = wx.sum() + wy.sum()
        per_scale.append(torch.stack([(dx * wx).sum() + (dy * wy).sum(), count]))
    stats = torch.stack(per_scale)  # (S, 2): summed error, number of counted differences
    has = stats[:, 1] > 0
    if not bool(has.any()):
        return _zero(pred)
    return (stats[has, 0] / stats[has, 1]).mean()


def _intrinsics(K: Tensor, batch: int) -> Tensor:
    """(B, 3, 3) intrinsics from a (B, 3, 3) or shared (3, 3) tensor."""
    if not isinstance(K, Tensor):
        K = torch.as_tensor(K)
    if K.shape == (3, 3):
        K = K.expand(batch, 3, 3)
    if K.shape != (batch, 3, 3):
        raise DataError(f"intrinsics K must be (B, 3, 3) or (3, 3) with B = {batch}, got {tuple(K.shape)}")
    return K


def virtual_normal_loss(
    pred: Tensor,
    gt: Tensor,
    K: Tensor,
    mask: Tensor | None = None,
    num_triplets: int = 1024,
    generator: torch.Generator | None = None,
    min_edge: float = 5e-3,
    max_cos: float = 0.867,
    min_area: float = 1e-6,
) -> Tensor:
    """Virtual-normal loss (Yin et al. 2019; LiteDepth, method 4).

    For each image, ``num_triplets`` triplets of valid pixels are drawn uniformly (with
    ``generator`` when given, for reproducibility); each pixel is back-projected with its
    image's intrinsics (pixel (row i, col j) centred at u = j, v = i) using the predicted and
    the ground-truth depth, and the unit normal of each triangle is compared. Triplets that are
    degenerate in the ground-truth point cloud are dropped: an edge shorter than ``min_edge``
    metres (repeated or too-close points), any angle with |cos| > ``max_cos`` (0.867: an angle
    under ~30 deg, near-collinear) or an area below ``min_area`` m^2; triplets touching an
    invalid pixel are never drawn. Loss = mean over the kept triplets of the L1 distance
    sum_xyz |n_pred - n_gt| (0 <= loss <= 2*sqrt(3)). Invariant to a global depth scale.
    """
    if not isinstance(num_triplets, int) or num_triplets < 1:
        raise ConfigError(f"virtual_normal option num_triplets must be an integer >= 1, got {num_triplets!r}")
    _check_positive("min_edge", min_edge, allow_zero=True)
    _check_positive("min_area", min_area, allow_zero=True)
    _check_number("max_cos", max_cos)
    if not 0 < max_cos <= 1:
        raise ConfigError(f"virtual_normal option max_cos must be in (0, 1], got {max_cos!r}")
    pred, gt, valid = _prepare(pred, gt, mask, spatial=True)
    B, _, H, W = pred.shape
    K = _intrinsics(K, B).to(device=pred.device, dtype=torch.float64)
    K_inv = torch.linalg.inv(K).to(pred.dtype)
    gen_device = generator.device if generator is not None else pred.device

    pred_flat, gt_flat, valid_flat = pred.reshape(B, -1), gt.reshape(B, -1), valid.reshape(B, -1)
    losses: list[Tensor] = []
    for b in range(B):
        idx = valid_flat[b].nonzero().squeeze(1)
        n = idx.numel()
        if n < 3:
            continue
        pick = torch.randint(n, (num_triplets, 3), generator=generator, device=gen_device).to(pred.device)
        pix = idx[pick]  # (T, 3) flat pixel indices, all valid
        rows, cols = (pix // W).to(pred.dtype), (pix % W).to(pred.dtype)
        uv1 = torch.stack([cols, rows, torch.ones_like(rows)], dim=-1)  # (T, 3, 3)
        rays = uv1 @ K_inv[b].T  # (T, 3 points, 3 xyz) with z = 1
        pts_g = rays * gt_flat[b][pix].unsqueeze(-1)
        pts_p = rays * pred_flat[b][pix].unsqueeze(-1)

        e01, e02, e12 = pts_g[:, 1] - pts_g[:, 0], pts_g[:, 2] - pts_g[:, 0], pts_g[:, 2] - pts_g[:, 1]
        l01, l02, l12 = e01.norm(dim=-1), e02.norm(dim=-1), e12.norm(dim=-1)
        keep = (l01 > min_edge) & (l02 > min_edge) & (l12 > min_edge)
        tiny = torch.finfo(pred.dtype).tiny
        cos0 = (e01 * e02).sum(-1) / (l01 * l02).clamp(min=tiny)
        cos1 = (-e01 * e12).sum(-1) / (l01 * l12).clamp(min=tiny)
        cos2 = (e02 * e12).sum(-1) / (l02 * l12).clamp(min=tiny)
        keep &= (cos0.abs() <= max_cos) & (cos1.abs() <= max_cos) & (cos2.abs() <= max_cos)
        n_g = torch.linalg.cross(e01, e02, dim=-1)
        keep &= 0.5 * n_g.norm(dim=-1) >= min_area
        if not bool(keep.any()):
            continue
        n_g = F.normalize(n_g[keep], dim=-1)
        q = pts_p[keep]
        n_p = F.normalize(torch.linalg.cross(q[:, 1] - q[:, 0], q[:, 2] - q[:, 0], dim=-1), dim=-1, eps=1e-12)
        losses.append((n_p - n_g).abs().sum(-1))
    if not losses:
        return _zero(pred)
    return torch.cat(losses).mean()


# --------------------------------------------------------------------------------------------
# segmentation
# --------------------------------------------------------------------------------------------


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
    logits = _as_float(logits)
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
        return _zero(logits)
    return F.cross_entropy(logits, labels, weight=weight, ignore_index=ignore_index)


# --------------------------------------------------------------------------------------------
# learnable weighting
# --------------------------------------------------------------------------------------------


class LearnableLossWeights(nn.Module):
    """Uncertainty-style learnable weights: total = sum_i 0.5 / s_i^2 * L_i + log(1 + s_i^2).

    The form LiteDepth (method 4) uses to balance its four depth losses. The parameter is
    ``log_var`` = log s_i^2 (unconstrained, so s^2 stays positive; the regulariser is then
    softplus(log_var)), initialised to s^2 = 1, i.e. every weight 0.5.
    """

    def __init__(self, n: int, names: Sequence[str] | None = None) -> None:
        super().__init__()
        if not isinstance(n, int) or n < 1:
            raise ConfigError(f"LearnableLossWeights needs at least one loss term, got {n!r}")
        if names is not None and len(names) != n:
            raise ConfigError(f"LearnableLossWeights got {len(names)} names for {n} terms")
        self.names: list[str] = list(names) if names is not None else [f"term{i}" for i in range(n)]
        self.log_var = nn.Parameter(torch.zeros(n))

    def forward(self, losses: Sequence[Tensor] | Tensor) -> Tensor:
        """Weighted total of ``n`` scalar losses (a sequence or a 1-D tensor)."""
        values = losses if isinstance(losses, Tensor) else torch.stack([torch.as_tensor(v) for v in losses])
        values = values.reshape(-1)
        if values.numel() != self.log_var.numel():
            raise DataError(f"LearnableLossWeights expects {self.log_var.numel()} losses, got {values.numel()}")
        s = self.log_var.to(values.dtype)
        return (0.5 * torch.exp(-s) * values + F.softplus(s)).sum()

    def sigma2(self) -> Tensor:
        """Current s_i^2 (detached)."""
        return self.log_var.detach().exp()

    def weights(self) -> Tensor:
        """Current effective weights 0.5 / s_i^2 (detached)."""
        return 0.5 * torch.exp(-self.log_var.detach())

    def as_dict(self) -> dict[str, float]:
        """``weight/<name>`` and ``sigma2/<name>`` as floats, for logging."""
        out: dict[str, float] = {}
        for name, w, s2 in zip(self.names, self.weights().tolist(), self.sigma2().tolist()):
            out[f"weight/{name}"] = w
            out[f"sigma2/{name}"] = s2
        return out


# --------------------------------------------------------------------------------------------
# config-built criterion
# --------------------------------------------------------------------------------------------

#: depth loss functions by config ``type``
LOSS_FUNCTIONS: dict[str, Callable[..., Tensor]] = {
    "silog": silog,
    "berhu": berhu,
    "log_berhu": log_berhu,
    "gradient": gradient_loss,
    "virtual_normal": virtual_normal_loss,
    "robust": robust_loss,
}

_RESERVED = {"pred", "gt", "mask", "K", "generator"}
_TOP_KEYS = {"terms", "learnable_weights", "scale_weights", "seg_weights", "seg"}
_SEG_KEYS = {"ignore_index", "class_weights"}


@dataclass
class TermSpec:
    """One parsed depth term of a criterion config (see :class:`DepthCriterion`)."""

    name: str
    type: str
    weight: float
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None


def _number(value: Any, where: str, allow_zero: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where} must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{where} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return float(value)


def _weights_list(value: Any, where: str) -> list[float] | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise ConfigError(f"{where} must be a non-empty list of numbers, got {value!r}")
    return [_number(v, f"{where}[{i}]") for i, v in enumerate(value)]


def _parse_term(i: int, spec: Any) -> TermSpec:
    where = f"loss terms[{i}]"
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where} must be a mapping with a 'type', got {spec!r}")
    spec = dict(spec)
    kind = spec.pop("type", None)
    if kind not in LOSS_FUNCTIONS:
        raise ConfigError(f"{where}: unknown loss type {kind!r}; choose one of {', '.join(sorted(LOSS_FUNCTIONS))}")
    weight = _number(spec.pop("weight", 1.0), f"{where} ({kind}) weight")
    name = spec.pop("name", kind)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where} ({kind}): name must be a non-empty string, got {name!r}")
    seed = spec.pop("seed", None) if kind == "virtual_normal" else None
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError(f"{where} ({kind}): seed must be an integer, got {seed!r}")
    allowed = [p for p in inspect.signature(LOSS_FUNCTIONS[kind]).parameters if p not in _RESERVED]
    unknown = sorted(set(spec) - set(allowed))
    if unknown:
        extra = ", seed" if kind == "virtual_normal" else ""
        raise ConfigError(
            f"{where} ({kind}): unknown option(s) {', '.join(unknown)}; allowed: name, weight, {', '.join(allowed)}{extra}"
        )
    return TermSpec(name=name, type=kind, weight=weight, params=spec, seed=seed)


def _validate_term_params(term: TermSpec) -> None:
    """Run the loss once on a tiny map so bad option values fail at build time, not mid-training."""
    gt = torch.full((1, 1, 4, 4), 5.0)
    pred = gt + torch.linspace(0, 1, 16).reshape(1, 1, 4, 4)
    extra: dict[str, Any] = {}
    if term.type == "virtual_normal":  # a private generator: building must not touch the global RNG
        extra = {"K": torch.eye(3), "generator": torch.Generator().manual_seed(0)}
    try:
        LOSS_FUNCTIONS[term.type](pred, gt, **extra, **term.params)
    except ConfigError as exc:
        raise ConfigError(f"loss term {term.name!r}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"loss term {term.name!r}: invalid option value ({exc})") from None


class DepthCriterion(nn.Module):
    """The training objective: weighted depth terms over the output scales plus segmentation.

    Built from a plain config (see :func:`build_criterion`)::

        {"terms": [{"type": "silog", "weight": 1.0, "lambd": 0.85},
                   {"type": "gradient", "weight": 0.5, "scales": 2}],
         "learnable_weights": false,
         "scale_weights": [0.125, 0.25, 0.5, 1.0],   # alpha_i, coarsest first
         "seg_weights": [0.1],                       # beta_i, coarsest first
         "seg": {"ignore_index": 255, "class_weights": null}}

    Each term is ``{"type": ..., "weight": w, "name": optional unique name, **options}`` with
    the options of the matching function (``virtual_normal`` also takes ``seed`` for its own
    reproducible triplet generator; a ``generator`` passed to the call takes precedence).

    Scales, **coarsest first** as in the model contract (``outputs["scales"]`` in another order
    is a DataError). Which predictions are supervised is set by the length of ``scale_weights``:

    * not given: ``outputs["depth"]`` alone, weight 1 (``scales`` are ignored);
    * ``len(scales)`` values: the ``scales`` only, for models whose ``depth`` is the finest
      scale upsampled (e.g. method 5's tiny-multires, whose heads are all in ``scales``);
    * ``len(scales) + 1`` values: ``[*scales, depth]``, for models whose ``depth`` is a head
      of its own; anything else is a DataError.

    Every prediction is upsampled bilinearly to the ground-truth size before the loss
    (monodepth2 style; works with sparse ground truth). With L_D(i) = sum_k w_k * L_k(pred_i)
    and L_S(i) the cross-entropy of the i-th segmentation output (``outputs["seg"]``: one
    logits tensor or a coarsest-first list), the total is sum_i alpha_i L_D(i) + beta_i L_S(i)
    (Chiu et al. 2020, method 5). ``seg_weights`` defaults to 1 per segmentation output when
    both the outputs and the batch carry ``seg`` (otherwise no segmentation loss); when given,
    its length must match the outputs and both must carry ``seg``.

    ``learnable_weights: true`` (LiteDepth, method 4): each depth term k gets its own learnable
    s_k and the depth part becomes sum_k 0.5/s_k^2 * w_k * L_k + log(1 + s_k^2) with
    L_k = sum_i alpha_i L_k(pred_i): the configured weights w_k still multiply, as fixed
    prior scales inside the learnable form (use 1 for the pure LiteDepth form). The
    segmentation part keeps its fixed betas. Put the criterion's parameters in the optimiser
    (and its state_dict in the checkpoint).

    Call: ``total, logs = criterion(outputs, batch, generator=None)``; ``batch`` has ``depth``
    (B, 1, H, W), optional ``K`` (B, 3, 3; required by virtual_normal), ``seg`` (B, H, W) and
    ``mask`` (bool, AND-ed with gt > 0); ``generator`` seeds the virtual-normal triplets.
    ``logs`` holds floats: each term as sum_i alpha_i L_k(pred_i) (before w_k), per-prediction
    values ``<name>/s<i>`` (i indexes the supervised list, coarsest first) when several are
    supervised, ``seg`` (sum_i beta_i L_S(i)) and ``seg/s<i>``, the learnable weights
    (``weight/<name>`` = 0.5/s^2, ``sigma2/<name>``) and ``total``.
    """

    def __init__(
        self,
        terms: Sequence[TermSpec],
        learnable_weights: bool = False,
        scale_weights: Sequence[float] | None = None,
        seg_weights: Sequence[float] | None = None,
        seg_ignore_index: int = IGNORE_LABEL,
        seg_class_weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.terms = list(terms)
        self.scale_weights = list(scale_weights) if scale_weights is not None else None
        self.seg_weights = list(seg_weights) if seg_weights is not None else None
        self.seg_ignore_index = seg_ignore_index
        self.seg_class_weights = list(seg_class_weights) if seg_class_weights is not None else None
        self.learnable = (
            LearnableLossWeights(len(self.terms), [t.name for t in self.terms]) if learnable_weights and self.terms else None
        )
        self._generators: dict[str, torch.Generator] = {}
        for t in self.terms:
            if t.seed is not None:
                g = torch.Generator()
                g.manual_seed(t.seed)
                self._generators[t.name] = g

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _as_list(value: Any, what: str) -> list[Tensor]:
        if value is None:
            return []
        if isinstance(value, Tensor):
            return [value]
        if isinstance(value, (list, tuple)) and all(isinstance(v, Tensor) for v in value):
            return list(value)
        raise DataError(f"outputs[{what!r}] must be a tensor or a list of tensors")

    @staticmethod
    def _check_coarsest_first(maps: Sequence[Tensor], what: str) -> None:
        for i in range(1, len(maps)):
            (h0, w0), (h1, w1) = maps[i - 1].shape[-2:], maps[i].shape[-2:]
            if h1 < h0 or w1 < w0:
                raise DataError(f"{what} must be ordered coarsest first; got {h0}x{w0} before {h1}x{w1}")

    def _supervised(self, outputs: Mapping[str, Any]) -> tuple[list[Tensor], list[float]]:
        """The depth predictions to supervise and their alphas (see the class docstring)."""
        scales = self._as_list(outputs.get("scales"), "scales")
        self._check_coarsest_first(scales, "outputs['scales']")
        if self.scale_weights is None:
            return [outputs["depth"]], [1.0]
        n = len(self.scale_weights)
        if scales and n == len(scales):
            return scales, self.scale_weights
        if n == len(scales) + 1:
            return [*scales, outputs["depth"]], self.scale_weights
        raise DataError(
            f"scale_weights has {n} values but the model returned {len(scales)} scales: give {len(scales)} "
            f"(scales only) or {len(scales) + 1} (scales, then depth) values, coarsest first"
        )

    # -- forward ---------------------------------------------------------------------------

    def forward(
        self, outputs: Mapping[str, Any], batch: Mapping[str, Any], generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        """Total loss and a dict of floats for logging (see the class docstring)."""
        if "depth" not in outputs:
            raise DataError("model outputs have no 'depth' entry")
        if "depth" not in batch:
            raise DataError("the batch has no ground-truth 'depth'; a depth criterion needs it")
        gt = batch["depth"]
        if gt.ndim != 4 or gt.shape[1] != 1:
            raise DataError(f"ground-truth depth must be (B, 1, H, W), got {tuple(gt.shape)}")
        mask = batch.get("mask")
        preds, alphas = self._supervised(outputs)
        needs_K = any(t.type == "virtual_normal" for t in self.terms)
        K = batch.get("K")
        if needs_K and K is None:
            raise DataError("the virtual_normal loss needs camera intrinsics batch['K'] (B, 3, 3), but the batch has none")

        size = gt.shape[-2:]
        logs: dict[str, Tensor] = {}
        term_totals: list[Tensor] = []
        for term in self.terms:
            fn = LOSS_FUNCTIONS[term.type]
            extra: dict[str, Any] = {}
            if term.type == "virtual_normal":
                extra = {"K": K, "generator": generator if generator is not None else self._generators.get(term.name)}
            acc: Tensor | None = None
            for i, (pred, alpha) in enumerate(zip(preds, alphas)):
                if pred.ndim != 4 or pred.shape[1] != 1 or pred.shape[0] != gt.shape[0]:
                    raise DataError(f"depth prediction {i} must be (B, 1, h, w) with B = {gt.shape[0]}, got {tuple(pred.shape)}")
                if alpha == 0:
                    continue
                if pred.shape[-2:] != size:
                    pred = F.interpolate(_as_float(pred), size=size, mode="bilinear", align_corners=False)
                value = fn(pred, gt, mask=mask, **extra, **term.params)
                if len(preds) > 1:
                    logs[f"{term.name}/s{i}"] = value.detach()
                acc = alpha * value if acc is None else acc + alpha * value
            acc = acc if acc is not None else _zero(outputs["depth"])
            logs[term.name] = acc.detach()
            term_totals.append(term.weight * acc)

        if not term_totals:
            total = _zero(outputs["depth"])
        elif self.learnable is not None:
            total = self.learnable(torch.stack(term_totals))
        else:
            total = torch.stack(term_totals).sum()

        total = total + self._seg_part(outputs, batch, logs)
        logs["total"] = total.detach()
        names = list(logs)
        values = torch.stack([v.float().reshape(()) for v in logs.values()]).cpu().tolist()  # one sync
        out = dict(zip(names, values))
        if self.learnable is not None:
            out.update(self.learnable.as_dict())
        return total, out

    def _seg_part(self, outputs: Mapping[str, Any], batch: Mapping[str, Any], logs: dict[str, Tensor]) -> Tensor:
        seg_out = self._as_list(outputs.get("seg"), "seg")
        labels = batch.get("seg")
        if self.seg_weights is None:
            if not seg_out or labels is None:
                return _zero(outputs["depth"])
            betas = [1.0] * len(seg_out)
        else:
            if not seg_out:
                raise DataError("seg_weights are configured but the model outputs have no 'seg' logits")
            if labels is None:
                raise DataError("seg_weights are configured but the batch has no 'seg' labels")
            betas = self.seg_weights
            if len(betas) != len(seg_out):
                raise DataError(f"seg_weights has {len(betas)} values but the model returned {len(seg_out)} segmentation outputs")
        self._check_coarsest_first(seg_out, "outputs['seg']")
        total: Tensor | None = None
        for i, (logits, beta) in enumerate(zip(seg_out, betas)):
            if beta == 0:
                continue
            value = segmentation_loss(logits, labels, self.seg_ignore_index, self.seg_class_weights)
            if len(seg_out) > 1:
                logs[f"seg/s{i}"] = value.detach()
            total = beta * value if total is None else total + beta * value
        total = total if total is not None else _zero(seg_out[0])
        logs["seg"] = total.detach()
        return total


def build_criterion(config: Mapping[str, Any]) -> DepthCriterion:
    """Build a :class:`DepthCriterion` from a plain config mapping (as read from YAML).

    Unknown keys, loss types or options, and invalid values raise :class:`ConfigError` with
    the offending entry named.
    """
    if not isinstance(config, Mapping):
        raise ConfigError(f"loss config must be a mapping, got {type(config).__name__}")
    unknown = sorted(set(config) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"unknown loss config key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_TOP_KEYS))}")
    raw_terms = config.get("terms", [])
    if raw_terms is None:
        raw_terms = []
    if isinstance(raw_terms, (str, bytes, Mapping)) or not isinstance(raw_terms, Sequence):
        raise ConfigError("loss config 'terms' must be a list of {type: ..., weight: ...} mappings")
    terms = [_parse_term(i, spec) for i, spec in enumerate(raw_terms)]
    seen: set[str] = set()
    for t in terms:
        if t.name in seen:
            raise ConfigError(f"two loss terms are named {t.name!r}; give one of them a distinct 'name'")
        seen.add(t.name)
        _validate_term_params(t)
    learnable = config.get("learnable_weights", False)
    if not isinstance(learnable, bool):
        raise ConfigError(f"loss config learnable_weights must be true or false, got {learnable!r}")
    scale_weights = _weights_list(config.get("scale_weights"), "loss config scale_weights")
    seg_weights = _weights_list(config.get("seg_weights"), "loss config seg_weights")
    seg_cfg = config.get("seg") or {}
    if not isinstance(seg_cfg, Mapping):
        raise ConfigError("loss config 'seg' must be a mapping with ignore_index and/or class_weights")
    unknown = sorted(set(seg_cfg) - _SEG_KEYS)
    if unknown:
        raise ConfigError(f"unknown loss config seg option(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_SEG_KEYS))}")
    ignore_index = seg_cfg.get("ignore_index", IGNORE_LABEL)
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise ConfigError(f"loss config seg.ignore_index must be an integer, got {ignore_index!r}")
    class_weights = _weights_list(seg_cfg.get("class_weights"), "loss config seg.class_weights")
    if not terms and not seg_weights:
        raise ConfigError("loss config has no depth terms and no seg_weights: nothing to optimise")
    return DepthCriterion(
        terms,
        learnable_weights=learnable,
        scale_weights=scale_weights,
        seg_weights=seg_weights,
        seg_ignore_index=ignore_index,
        seg_class_weights=class_weights,
    )
