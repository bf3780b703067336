"""Dense depth from a rectified stereo pair, "compensated" with the sparse LiDAR of the same frame.

Chiu et al. (2020) trained their 0.3 M-parameter network on stereo depth (PSMNet) corrected by
the LiDAR instead of the LiDAR alone, and cut the RMSE from 4.92 m to 3.95 m. slimdepth does the
same with OpenCV's semi-global matching (no network, no weights):

1. :func:`sgm_disparity`: SGBM disparity of the left image, with a left-right consistency
   check (the right image's disparity, matched the other way, must agree within
   ``lr_tolerance`` pixels), uniqueness and speckle filtering;
2. :func:`disparity_to_depth`: depth = fx * baseline / disparity;
3. :func:`compensate`: a robust per-image fit of the stereo to the LiDAR points in inverse
   depth (1/z_lidar = a / z_stereo + b: a baseline or focal error scales disparity, a
   rectification error offsets it), fitted by iteratively reweighted least squares with Huber
   weights so a few bad matches do not move it; then the rejection of stereo pixels that
   disagree with the LiDAR around them, and the LiDAR points written in where present.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from slimdepth.errors import ConfigError, DataError

__all__ = ["Compensation", "compensate", "disparity_to_depth", "label_quality", "sgm_disparity"]


def _gray(image: np.ndarray) -> np.ndarray:
    import cv2  # lazy: OpenCV loads only when stereo is matched

    if image.ndim == 2:
        return np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"a stereo image must be HxW or HxWx3, got shape {image.shape}")
    img = image if image.dtype == np.uint8 else np.clip(np.round(np.asarray(image) * 255), 0, 255).astype(np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)


def sgm_disparity(left: np.ndarray, right: np.ndarray, max_disparity: int | None = None, block_size: int = 5,
                  uniqueness: int = 10, speckle_window: int = 100, speckle_range: int = 2,
                  lr_tolerance: float = 1.0) -> np.ndarray:
    """Disparity (H, W) float32 of the left image in pixels, 0 where no reliable match.

    ``left``/``right`` are a rectified pair (uint8 RGB or gray, or float in [0, 1]);
    ``max_disparity`` defaults to a quarter of the width (rounded up to 16).
    """
    import cv2

    lg, rg = _gray(left), _gray(right)
    if lg.shape != rg.shape:
        raise DataError(f"the stereo images differ in size: {lg.shape[::-1]} and {rg.shape[::-1]}")
    if block_size < 1 or block_size % 2 == 0:
        raise ConfigError(f"SGM block size must be a positive odd number, got {block_size}")
    h, w = lg.shape
    limit = max_disparity if max_disparity is not None else max(16, w // 4)
    num = int(-(-int(limit) // 16) * 16)
    if num < 16 or num > w:
        raise ConfigError(f"SGM max disparity must be in [16, {w - 1}] for {w}-pixel-wide images, got {limit}")
    cn = 1
    matcher = cv2.StereoSGBM_create(minDisparity=0, numDisparities=num, blockSize=block_size,
                                    P1=8 * cn * block_size**2, P2=32 * cn * block_size**2, disp12MaxDiff=-1,
                                    uniquenessRatio=uniqueness, speckleWindowSize=speckle_window,
                                    speckleRange=speckle_range, mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)
    # SGBM leaves the first numDisparities columns unmatched; padding both images on the left
    # gives a pixel at x every disparity up to x, the ones its match can really have
    pad = lambda im: cv2.copyMakeBorder(im, 0, 0, num, 0, cv2.BORDER_REPLICATE)  # noqa: E731
    disp = matcher.compute(pad(lg), pad(rg))[:, num:].astype(np.float32) / 16.0
    disp[disp <= 0] = 0.0
    disp[disp > np.arange(w, dtype=np.float32)[None, :]] = 0.0  # a match left of the right image's edge
    if lr_tolerance is None or lr_tolerance <= 0:
        return disp
    # the right image's disparity, matched right-to-left by mirroring both images
    disp_r = matcher.compute(pad(np.ascontiguousarray(rg[:, ::-1])), pad(np.ascontiguousarray(lg[:, ::-1])))[:, num:]
    disp_r = (disp_r.astype(np.float32) / 16.0)[:, ::-1]
    disp_r[disp_r <= 0] = 0.0
    ys, xs = np.nonzero(disp > 0)
    xr = np.round(xs - disp[ys, xs]).astype(np.int64)
    inside = xr >= 0
    ok = np.zeros(len(xs), dtype=bool)
    ok[inside] = np.abs(disp_r[ys[inside], xr[inside]] - disp[ys[inside], xs[inside]]) <= lr_tolerance
    out = np.zeros_like(disp)
    out[ys[ok], xs[ok]] = disp[ys[ok], xs[ok]]
    return out


def disparity_to_depth(disparity: np.ndarray, fx: float, baseline: float, min_disparity: float = 1.0) -> np.ndarray:
    """Depth (m) = ``fx`` * ``baseline`` / disparity; 0 where the disparity is below ``min_disparity``."""
    if not fx > 0 or not baseline > 0:
        raise DataError(f"stereo needs a positive focal length and baseline, got fx={fx}, baseline={baseline}")
    d = np.asarray(disparity, dtype=np.float32)
    depth = np.zeros_like(d)
    ok = d >= min_disparity
    depth[ok] = np.float32(fx * baseline) / d[ok]
    return depth


@dataclass
class Compensation:
    """What :func:`compensate` did to one frame."""

    scale: float  # a in 1/z = a / z_stereo + b
    offset: float  # b (1/m)
    fitted_points: int  # LiDAR points with a stereo depth beside them
    inlier_fraction: float  # of those, within the relative tolerance after the fit
    rejected_fraction: float  # of the stereo pixels, dropped as inconsistent with the LiDAR
    coverage: float  # labeled pixels / all pixels in the result

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _huber_fit(x: np.ndarray, y: np.ndarray, delta: float, iterations: int = 10) -> tuple[float, float]:
    """y ≈ a x + b by IRLS with Huber weights on residuals relative to y."""
    w = np.ones_like(x)
    a, b = 1.0, 0.0
    scale = 1.0 / np.maximum(np.abs(y), 1e-6)  # residuals relative to y: near points do not dominate
    for _ in range(iterations):
        rw = np.sqrt(w) * scale
        sol, *_ = np.linalg.lstsq(np.stack([x * rw, rw], axis=1), y * rw, rcond=None)
        a, b = float(sol[0]), float(sol[1])
        r = np.abs(a * x + b - y) * scale
        w = np.where(r <= delta, 1.0, delta / np.maximum(r, 1e-12))
    return a, b


def _nearby_lidar(depth: np.ndarray, lidar: np.ndarray, window: int,
                  tolerance: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per pixel, over the LiDAR points in its ``window`` x ``window`` neighbourhood: whether
    one agrees with ``depth`` within ``tolerance``, whether there is any, and their min and max."""
    r = window // 2
    h, w = depth.shape
    padded = np.pad(lidar, r)
    agrees = np.zeros(depth.shape, dtype=bool)
    lo = np.full(depth.shape, np.inf, dtype=np.float32)
    hi = np.zeros(depth.shape, dtype=np.float32)
    for dy in range(window):
        for dx in range(window):
            shifted = padded[dy:dy + h, dx:dx + w]
            has = shifted > 0
            agrees |= has & (np.abs(depth - shifted) <= tolerance * shifted)
            lo = np.where(has, np.minimum(lo, shifted), lo)
            hi = np.maximum(hi, shifted)
    return agrees, hi > 0, lo, hi


def compensate(stereo: np.ndarray, lidar: np.ndarray, tolerance: float = 0.1, window: int = 9,
               max_depth: float = 120.0, min_points: int = 20, edge_ratio: float = 2.0) -> tuple[np.ndarray, Compensation]:
    """Stereo depth fitted to the LiDAR, cleaned, with the LiDAR points written in.

    * The fit: 1/z_lidar = a / z_stereo + b over the pixels with both, by Huber IRLS (residual
      relative to the LiDAR, threshold ``tolerance``); with fewer than ``min_points`` such
      pixels the stereo is kept as it is (a = 1, b = 0).
    * The rejection: where LiDAR points lie within a fitted stereo pixel's ``window`` x
      ``window`` neighbourhood, the pixel is kept when one of them is within ``tolerance``
      (relative) of it, or when it lies within their range (widened by ``tolerance``) and that
      range is narrow, max/min <= ``edge_ratio`` (a smooth surface such as a slanted road,
      whose depth changes between beams). Across a depth edge only agreement keeps a pixel, so
      the smear SGM leaves between a near and a far surface is dropped. Pixels with no LiDAR
      nearby are kept, up to ``max_depth``.
    * The LiDAR points replace the stereo wherever they are.

    Returns the label (H, W) float32, 0 = no label, and a :class:`Compensation` summary.
    """
    stereo = np.asarray(stereo, dtype=np.float32)
    lidar = np.asarray(lidar, dtype=np.float32)
    if stereo.shape != lidar.shape:
        raise DataError(f"stereo depth {stereo.shape} and LiDAR {lidar.shape} differ in size")
    if not 0 < tolerance < 1:
        raise ConfigError(f"compensation tolerance must be in (0, 1), got {tolerance}")
    if window < 1 or window % 2 == 0:
        raise ConfigError(f"compensation window must be a positive odd number, got {window}")
    has_s = np.isfinite(stereo) & (stereo > 0)
    has_l = np.isfinite(lidar) & (lidar > 0)
    both = has_s & has_l
    a, b = 1.0, 0.0
    if int(both.sum()) >= min_points:
        a, b = _huber_fit(1.0 / stereo[both], 1.0 / lidar[both], tolerance)
    inv = np.zeros_like(stereo)
    inv[has_s] = a / stereo[has_s] + b
    fitted = np.zeros_like(stereo)
    good = has_s & (inv > 1.0 / max_depth)
    fitted[good] = 1.0 / inv[good]
    inlier = float((np.abs(fitted[both] - lidar[both]) <= tolerance * lidar[both]).mean()) if both.any() else 0.0
    # a stereo pixel is consistent when no LiDAR point is near it, or one nearby point agrees
    # with it (at a depth edge the near and the far surface each have theirs), or it lies within
    # the nearby points' range on a smooth surface (a slanted road changes depth between beams;
    # across an edge, where the range spans more than ``edge_ratio``, only agreement counts)
    agrees, has_near, lo, hi = _nearby_lidar(fitted, np.where(has_l, lidar, 0).astype(np.float32), window, tolerance)
    smooth = has_near & (hi <= edge_ratio * lo)
    within = smooth & (fitted >= lo * (1 - tolerance)) & (fitted <= hi * (1 + tolerance))
    consistent = ~has_near | agrees | within
    keep = good & consistent
    rejected = float((good & ~consistent).sum()) / max(int(good.sum()), 1)
    label = np.where(keep, fitted, 0.0).astype(np.float32)
    label[has_l] = lidar[has_l]
    coverage = float((label > 0).mean())
    return label, Compensation(a, b, int(both.sum()), inlier, rejected, coverage)


def label_quality(label: np.ndarray, gt: np.ndarray, max_depth: float = 80.0) -> dict[str, float]:
    """AbsRel, RMSE and δ1 of ``label`` against the exact ``gt`` on the pixels both have (gt up
    to ``max_depth``), and the label's coverage of the pixels with ground truth."""
    import torch

    from slimdepth.evaluate.metrics import compute_depth_metrics  # lazy: the rest of this module needs no torch

    label, gt = np.asarray(label, np.float64), np.asarray(gt, np.float64)
    valid = np.isfinite(gt) & (gt > 0) & (gt <= max_depth)
    covered = valid & np.isfinite(label) & (label > 0)
    n = int(covered.sum())
    if n == 0:
        return {"abs_rel": float("nan"), "rmse": float("nan"), "d1": float("nan"), "coverage": 0.0, "pixels": 0}
    m = compute_depth_metrics(torch.from_numpy(np.where(covered, label, 1.0)), torch.from_numpy(np.where(covered, gt, 1.0)),
                              torch.from_numpy(covered))
    return {"abs_rel": m["abs_rel"], "rmse": m["rmse"], "d1": m["d1"], "coverage": n / max(int(valid.sum()), 1), "pixels": n}
