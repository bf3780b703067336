"""Structural depth losses: gradient matching and the virtual normal (LiteDepth, method 4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from slimdepth.errors import ConfigError, DataError
from slimdepth.losses.common import (
    DEPTH_FLOOR,
    check_flag,
    check_option,
    check_positive,
    prepare_maps,
    sanitize_invalid,
    zero_loss,
)

__all__ = ["gradient_loss", "virtual_normal_loss"]


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
    check_positive("floor", floor)
    check_flag("log", log)
    pred, gt, valid = prepare_maps(pred, gt, mask, spatial=True)
    p, g = sanitize_invalid(pred, gt, valid)
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
        return zero_loss(pred)
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
    check_positive("min_edge", min_edge, allow_zero=True)
    check_positive("min_area", min_area, allow_zero=True)
    check_option("max_cos", max_cos, finite=False)
    if not 0 < max_cos <= 1:
        raise ConfigError(f"virtual_normal option max_cos must be in (0, 1], got {max_cos!r}")
    pred, gt, valid = prepare_maps(pred, gt, mask, spatial=True)
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
        return zero_loss(pred)
    return torch.cat(losses).mean()
