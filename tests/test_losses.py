"""Depth and segmentation losses: hand-worked values, independent loop references, masking,
gradients at invalid pixels, learnable weights and the config-built criterion."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from slimdepth.errors import ConfigError, DataError
from slimdepth.losses import (
    DepthCriterion,
    LearnableLossWeights,
    barron_rho,
    berhu,
    build_criterion,
    gradient_loss,
    log_berhu,
    robust_loss,
    segmentation_loss,
    silog,
    virtual_normal_loss,
)


def m(rows: list[list[float]]) -> torch.Tensor:
    """A (1, 1, H, W) float64 map from nested lists."""
    return torch.tensor(rows, dtype=torch.float64)[None, None]


def random_scene(seed: int, shape: tuple[int, int, int, int] = (2, 1, 7, 9), invalid: float = 0.3):
    """Random positive gt with ~``invalid`` zeros, a noisy positive prediction (float64)."""
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(shape, generator=g, dtype=torch.float64) * 20 + 1
    gt[torch.rand(shape, generator=g, dtype=torch.float64) < invalid] = 0
    pred = (gt.clamp(min=1) * torch.exp(0.3 * torch.randn(shape, generator=g, dtype=torch.float64))).clamp(min=0.05)
    return pred, gt


def pinhole(f: float, cx: float, cy: float) -> torch.Tensor:
    return torch.tensor([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]], dtype=torch.float64)


def plane_depth(H: int, W: int, K: torch.Tensor, normal: tuple[float, float, float], d: float) -> torch.Tensor:
    """Depth (1, 1, H, W) of the plane n . X = d seen through K (every ray must hit it in front)."""
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    rays = torch.stack([u, v, torch.ones_like(u)], -1) @ torch.linalg.inv(K).T
    z = d / (rays @ torch.tensor(normal, dtype=torch.float64))
    assert bool((z > 0).all())
    return z[None, None]


# ------------------------------------------------------------------------------------------
# independent references (plain Python loops over valid pixels)
# ------------------------------------------------------------------------------------------


def valid_pairs(pred: torch.Tensor, gt: torch.Tensor) -> list[tuple[float, float]]:
    return [(p, g) for p, g in zip(pred.flatten().tolist(), gt.flatten().tolist()) if g > 0 and math.isfinite(g)]


def ref_berhu_values(residuals: list[float], ratio: float = 0.2) -> float:
    c = ratio * max(abs(r) for r in residuals)
    return sum(abs(r) if abs(r) <= c else (r * r + c * c) / (2 * c) for r in residuals) / len(residuals)


def ref_berhu(pred, gt) -> float:
    return ref_berhu_values([p - g for p, g in valid_pairs(pred, gt)])


def ref_log_berhu(pred, gt, m_: float = 4.0, M: float = 80.0) -> float:
    G = lambda d: (math.log(d) - math.log(m_)) * M / (math.log(M) - math.log(m_))  # noqa: E731
    return ref_berhu_values([G(max(p, 1e-3)) - G(g) for p, g in valid_pairs(pred, gt)])


def ref_silog(pred, gt, lambd: float = 0.85) -> float:
    e = [math.log(p) - math.log(g) for p, g in valid_pairs(pred, gt)]
    n = len(e)
    return 10 * math.sqrt(max(sum(x * x for x in e) / n - lambd * (sum(e) / n) ** 2, 0.0))


def ref_pool(x: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2x2 (edge blocks partial) mean of valid values; a block is valid if any pixel is."""
    H, W = x.shape
    h, w = (H + 1) // 2, (W + 1) // 2
    xo, vo = np.ones((h, w)), np.zeros((h, w), dtype=bool)
    for i in range(h):
        for j in range(w):
            vals = [x[a, b] for a in range(2 * i, min(2 * i + 2, H)) for b in range(2 * j, min(2 * j + 2, W)) if v[a, b]]
            if vals:
                xo[i, j], vo[i, j] = sum(vals) / len(vals), True
    return xo, vo


def ref_gradient(pred, gt, scales: int = 1, log: bool = False) -> float:
    per_scale = []
    B = pred.shape[0]
    ps = [pred[b, 0].numpy().copy() for b in range(B)]
    gs = [gt[b, 0].numpy().copy() for b in range(B)]
    vs = [g > 0 for g in gs]
    if log:
        ps = [np.log(np.where(v, np.maximum(p, 1e-3), 1.0)) for p, v in zip(ps, vs)]
        gs = [np.log(np.where(v, g, 1.0)) for g, v in zip(gs, vs)]
    for s in range(scales):
        if s > 0:
            if min(ps[0].shape) < 2:
                break
            ps = [ref_pool(p, v)[0] for p, v in zip(ps, vs)]
            pooled = [ref_pool(g, v) for g, v in zip(gs, vs)]
            gs, vs = [q[0] for q in pooled], [q[1] for q in pooled]
        total, count = 0.0, 0
        for p, g, v in zip(ps, gs, vs):
            H, W = p.shape
            for i in range(H):
                for j in range(W):
                    for di, dj in ((0, 1), (1, 0)):
                        a, b = i + di, j + dj
                        if a < H and b < W and v[i, j] and v[a, b]:
                            total += abs((p[a, b] - p[i, j]) - (g[a, b] - g[i, j]))
                            count += 1
        if count:
            per_scale.append(total / count)
    return sum(per_scale) / len(per_scale)


def ref_rho(x: float, alpha: float, c: float) -> float:
    z2 = (x / c) ** 2
    if alpha == 2:
        return 0.5 * z2
    if alpha == 0:
        return math.log(0.5 * z2 + 1)
    if alpha == -math.inf:
        return 1 - math.exp(-0.5 * z2)
    b = abs(alpha - 2)
    return b / alpha * ((z2 / b + 1) ** (alpha / 2) - 1)


# ------------------------------------------------------------------------------------------
# hand-worked values
# ------------------------------------------------------------------------------------------


def test_berhu_hand_worked():
    # r = p - g = [0, 1, 2, 3]; c = 0.2 * 3 = 0.6
    # B = [0, (1 + .36)/1.2, (4 + .36)/1.2, (9 + .36)/1.2] = [0, 1.1333, 3.6333, 7.8]; mean 3.141667
    pred, gt = m([[1, 2], [3, 4]]), m([[1, 1], [1, 1]])
    assert berhu(pred, gt).item() == pytest.approx((0 + 1.36 / 1.2 + 4.36 / 1.2 + 9.36 / 1.2) / 4)
    # r below c stays L1: r = [0.1, 1] (third pixel invalid), c = 0.2 -> [0.1, (1 + .04)/.4 = 2.6]
    pred, gt = m([[1.1, 2], [7, 1]]), m([[1, 1], [0, 1]])
    assert berhu(pred, gt).item() == pytest.approx((0.1 + 2.6 + 0.0) / 3)


def test_log_berhu_hand_worked():
    # k = M / ln(M/m) = 80 / ln 20; residuals G(p) - G(g) = k ln(p/g) = [0, k ln 2, -k ln 2]
    # a = k ln 2 > alpha = 0.2 a -> (a^2 + 0.04 a^2) / (0.4 a) = 2.6 a; mean = 5.2 a / 3
    pred, gt = m([[4, 8], [40, 123]]), m([[4, 4], [80, 0]])
    a = 80 / math.log(20) * math.log(2)
    assert log_berhu(pred, gt).item() == pytest.approx(5.2 * a / 3)


def test_silog_hand_worked():
    # e = ln p - ln g = [ln2, ln2, 0, 0]: mean e^2 = ln2^2 / 2, mean e = ln2 / 2
    # 10 sqrt(ln2^2/2 - 0.85 ln2^2/4) = 10 ln2 sqrt(0.2875)
    pred, gt = m([[2, 2], [1, 1]]), m([[1, 1], [1, 1]])
    assert silog(pred, gt).item() == pytest.approx(10 * math.log(2) * math.sqrt(0.2875))
    # lambd = 0: plain RMS of the log error, 10 * sqrt(ln2^2 / 2)
    assert silog(pred, gt, lambd=0.0).item() == pytest.approx(10 * math.log(2) / math.sqrt(2))


def test_gradient_hand_worked():
    # p = [[1,2],[3,5]], g = 1: dx = [1, 2], dy = [2, 3]; gt gradients 0 -> (1+2+2+3)/4 = 2
    pred = m([[1, 2], [3, 5]])
    assert gradient_loss(pred, m([[1, 1], [1, 1]])).item() == pytest.approx(2.0)
    # gt[1,1] invalid: only dx of row 0 (1) and dy of column 0 (2) count -> 1.5
    assert gradient_loss(pred, m([[1, 1], [1, 0]])).item() == pytest.approx(1.5)
    # log: d ln p: dx = [ln2, ln(5/3)], dy = [ln3, ln(5/2)]
    expect = (math.log(2) + math.log(5 / 3) + math.log(3) + math.log(2.5)) / 4
    assert gradient_loss(pred, m([[1, 1], [1, 1]]), log=True).item() == pytest.approx(expect)


def test_robust_hand_worked():
    # residual 2 with c = 2 -> x/c = 1
    pred, gt = m([[3.0]]), m([[1.0]])
    assert robust_loss(pred, gt).item() == pytest.approx(math.sqrt(2) - 1)
    assert robust_loss(pred, gt, alpha=2.0).item() == pytest.approx(0.5)
    assert robust_loss(pred, gt, alpha=0.0).item() == pytest.approx(math.log(1.5))
    assert robust_loss(pred, gt, alpha=-math.inf).item() == pytest.approx(1 - math.exp(-0.5))
    assert robust_loss(pred, gt, alpha=math.inf).item() == pytest.approx(math.exp(0.5) - 1)
    # alpha = -2: 4/-2 * ((1/4 + 1)^-1 - 1) = -2 * (0.8 - 1) = 0.4
    assert robust_loss(pred, gt, alpha=-2.0).item() == pytest.approx(0.4)


def test_virtual_normal_hand_worked_single_triangle():
    # 3x3 image, f = 1, principal point at the centre; only pixels (0,0), (0,2), (2,0) valid.
    # gt depth 1: points (-1,-1,1), (1,-1,1), (-1,1,1) -> normal (0,0,1) (right angle, 45, 45).
    # pred depths (1, 2, 1): points (-1,-1,1), (2,-2,2), (-1,1,1): e01 = (3,-1,1), e02 = (0,2,0),
    # e01 x e02 = (-2, 0, 6) -> (-2, 0, 6)/sqrt(40); L1 to (0,0,1) = 2/sqrt40 + 1 - 6/sqrt40.
    # Every triplet drawn is a permutation of the three (same loss) or repeats a pixel (dropped).
    gt = m([[1, 0, 1], [0, 0, 0], [1, 0, 0]])
    pred = m([[1, 7, 2], [7, 7, 7], [1, 7, 7]])
    K = pinhole(1.0, 1.0, 1.0)[None]
    loss = virtual_normal_loss(pred, gt, K, num_triplets=64, generator=torch.Generator().manual_seed(0))
    assert loss.item() == pytest.approx(1 - 4 / math.sqrt(40))


def test_segmentation_hand_worked():
    # pixel 0: logits (0, 0), label 0 -> ln 2; pixel 1: (ln 3, 0), label 0 -> -ln(3/4) = ln(4/3);
    # pixel 2: label 255 ignored. Mean = (ln 2 + ln 4/3) / 2
    logits = torch.tensor([[0.0, math.log(3), 5.0], [0.0, 0.0, -5.0]])[None, :, None, :]
    labels = torch.tensor([[[0, 0, 255]]])
    assert segmentation_loss(logits, labels).item() == pytest.approx((math.log(2) + math.log(4 / 3)) / 2)
    # class weights (1, 3) on labels (0, 1): weighted mean = (1 * ln2 + 3 * ln4) / 4
    labels = torch.tensor([[[0, 1, 255]]])
    w = segmentation_loss(logits, labels, weight=[1.0, 3.0]).item()
    assert w == pytest.approx((math.log(2) + 3 * math.log(4)) / 4)


# ------------------------------------------------------------------------------------------
# against the loop references on random data
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_pixel_losses_match_references(seed):
    pred, gt = random_scene(seed)
    assert berhu(pred, gt).item() == pytest.approx(ref_berhu(pred, gt), rel=1e-9)
    assert log_berhu(pred, gt).item() == pytest.approx(ref_log_berhu(pred, gt), rel=1e-9)
    assert silog(pred, gt).item() == pytest.approx(ref_silog(pred, gt), rel=1e-9)
    assert silog(pred, gt, lambd=0.5, scale=1.0).item() == pytest.approx(ref_silog(pred, gt, 0.5) / 10, rel=1e-9)
    robust = [ref_rho(p - g, 1.0, 2.0) for p, g in valid_pairs(pred, gt)]
    assert robust_loss(pred, gt).item() == pytest.approx(sum(robust) / len(robust), rel=1e-9)
    per_image = [ref_silog(pred[b], gt[b]) for b in range(pred.shape[0])]
    assert silog(pred, gt, per_image=True).item() == pytest.approx(sum(per_image) / len(per_image), rel=1e-9)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("scales,log", [(1, False), (3, False), (2, True)])
def test_gradient_loss_matches_reference(seed, scales, log):
    pred, gt = random_scene(seed, shape=(2, 1, 7, 9))
    got = gradient_loss(pred, gt, scales=scales, log=log).item()
    assert got == pytest.approx(ref_gradient(pred, gt, scales, log), rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    x=st.floats(-50, 50, allow_nan=False),
    alpha=st.one_of(st.sampled_from([2.0, 0.0, -math.inf, 1.0, -2.0]), st.floats(-10, 10).filter(lambda a: abs(a) > 1e-2 and abs(a - 2) > 1e-2)),
    c=st.floats(0.1, 5),
)
def test_barron_rho_matches_formula(x, alpha, c):
    got = barron_rho(torch.tensor(x, dtype=torch.float64), alpha, c).item()
    assert got == pytest.approx(ref_rho(x, alpha, c), rel=1e-7, abs=1e-12)


def test_barron_rho_special_cases_and_continuity():
    x = torch.linspace(-6, 6, 25, dtype=torch.float64)
    z = x / 2.0
    assert torch.allclose(barron_rho(x, 2.0, 2.0), 0.5 * z**2)
    assert torch.allclose(barron_rho(x, 0.0, 2.0), torch.log(0.5 * z**2 + 1))
    assert torch.allclose(barron_rho(x, 1.0, 2.0), torch.sqrt(z**2 + 1) - 1)
    # the general formula approaches the limits
    assert torch.allclose(barron_rho(x, 2.0 - 1e-6, 2.0), 0.5 * z**2, rtol=1e-4, atol=1e-8)
    assert torch.allclose(barron_rho(x, 1e-6, 2.0), torch.log(0.5 * z**2 + 1), rtol=1e-4, atol=1e-8)
    assert torch.allclose(barron_rho(x, -1e4, 2.0), 1 - torch.exp(-0.5 * z**2), rtol=1e-3, atol=1e-6)
    # float32 near alpha = 0 stays accurate (expm1/log1p form)
    x32 = x.float()
    assert torch.allclose(barron_rho(x32, 1e-5, 2.0), torch.log1p(0.5 * (x32 / 2) ** 2), rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------------------
# masks, invalid pixels, empty masks, perfect predictions
# ------------------------------------------------------------------------------------------

K_TEST = pinhole(8.0, 4.0, 3.5)


def all_losses():
    """Every depth loss as f(pred, gt, mask) with fixed options (virtual normal with a fixed seed)."""
    K = K_TEST.expand(2, 3, 3)
    return {
        "berhu": lambda p, g, mk=None: berhu(p, g, mk),
        "log_berhu": lambda p, g, mk=None: log_berhu(p, g, mk),
        "silog": lambda p, g, mk=None: silog(p, g, mk),
        "silog_per_image": lambda p, g, mk=None: silog(p, g, mk, per_image=True),
        "gradient": lambda p, g, mk=None: gradient_loss(p, g, mk, scales=3),
        "gradient_log": lambda p, g, mk=None: gradient_loss(p, g, mk, scales=2, log=True),
        "robust": lambda p, g, mk=None: robust_loss(p, g, mk),
        "robust_cauchy": lambda p, g, mk=None: robust_loss(p, g, mk, alpha=0.0, scale=1.0),
        "virtual_normal": lambda p, g, mk=None: virtual_normal_loss(
            p, g, K, mk, num_triplets=256, generator=torch.Generator().manual_seed(3)
        ),
    }


@pytest.mark.parametrize("name", list(all_losses()))
def test_invalid_pixels_get_exactly_zero_gradient(name):
    fn = all_losses()[name]
    pred, gt = random_scene(11, shape=(2, 1, 8, 8))
    mask = torch.ones_like(gt, dtype=torch.bool)
    mask[0, 0, 2:4, 3] = False  # user-masked pixels with valid gt
    invalid = (gt <= 0) | ~mask
    assert bool(invalid.any()) and bool((~invalid).any())
    p = pred.clone().requires_grad_()
    loss = fn(p, gt, mask)
    loss.backward()
    assert torch.isfinite(loss)
    assert bool((p.grad[invalid] == 0).all()), "an invalid pixel's prediction received gradient"
    assert bool((p.grad[~invalid] != 0).any())
    # garbage (NaN, inf, negative) predictions at invalid pixels change neither value nor gradient
    q = pred.clone()
    q[invalid] = torch.tensor([math.nan, math.inf, -3.0]).repeat(int(invalid.sum()) // 3 + 1)[: int(invalid.sum())].to(q)
    q.requires_grad_()
    loss2 = fn(q, gt, mask)
    loss2.backward()
    assert loss2.item() == pytest.approx(loss.item(), rel=1e-12)
    assert bool((q.grad[invalid] == 0).all())
    assert torch.allclose(q.grad[~invalid], p.grad[~invalid])


@pytest.mark.parametrize("name", list(all_losses()))
def test_mask_is_honoured(name):
    fn = all_losses()[name]
    pred, gt = random_scene(5, shape=(2, 1, 8, 8))
    mask = torch.ones_like(gt, dtype=torch.bool)
    mask[1, 0, 4, :] = False
    base = fn(pred, gt, mask).item()
    p2, g2 = pred.clone(), gt.clone()
    p2[1, 0, 4, :] *= 3.0
    g2[1, 0, 4, :] = 1.5 + g2[1, 0, 4, :] * 0.5
    assert fn(p2, g2, mask).item() == pytest.approx(base, rel=1e-12)
    # NaN and negative gt are invalid too, like 0
    g3 = gt.clone()
    g3[gt == 0] = torch.tensor(math.nan, dtype=gt.dtype)
    assert fn(pred, g3, mask).item() == pytest.approx(base, rel=1e-12)


@pytest.mark.parametrize("name", list(all_losses()))
def test_empty_mask_gives_attached_zero(name):
    fn = all_losses()[name]
    pred, gt = random_scene(2, shape=(2, 1, 8, 8))
    p = pred.clone().requires_grad_()
    for loss in (fn(p, torch.zeros_like(gt)), fn(p, gt, torch.zeros_like(gt, dtype=torch.bool))):
        assert loss.ndim == 0 and loss.item() == 0.0
        loss.backward()
        assert bool((p.grad == 0).all())


@pytest.mark.parametrize("name", list(all_losses()))
def test_perfect_prediction_gives_zero(name):
    fn = all_losses()[name]
    _, gt = random_scene(4, shape=(2, 1, 8, 8))
    if name == "virtual_normal":
        gt = plane_depth(8, 8, K_TEST, (0.2, -0.3, 0.9), 5.0).expand(2, 1, 8, 8).clone()
        gt[0, 0, 1, 1] = 0
    p = gt.clone().clamp(min=0.5).where(gt > 0, torch.tensor(7.0, dtype=gt.dtype)).requires_grad_()
    loss = fn(p, gt)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert bool(torch.isfinite(p.grad).all())


def test_silog_scale_invariant_with_lambda_one():
    _, gt = random_scene(6)
    for k in (0.3, 1.0, 2.5):
        assert silog(gt * k, gt, lambd=1.0).item() == pytest.approx(0.0, abs=1e-5)
        assert silog(gt * k, gt, lambd=1.0, per_image=True).item() == pytest.approx(0.0, abs=1e-5)
    # with lambd < 1 a global scale is penalised: sqrt(1 - lambd) * |ln k| * 10
    assert silog(gt * 2, gt, lambd=0.85).item() == pytest.approx(10 * math.sqrt(0.15) * math.log(2), rel=1e-6)


def test_silog_float32_guard_no_nan_gradient():
    gt = torch.full((1, 1, 4, 4), 3.0)
    p = (gt * 1.7).requires_grad_()
    loss = silog(p, gt, lambd=1.0)
    loss.backward()
    assert torch.isfinite(loss) and bool(torch.isfinite(p.grad).all())


def test_berhu_threshold_is_detached_and_batch_wide():
    # image 1 has a huge residual: c is set by it, so image 0's small residuals stay L1
    pred = torch.tensor([[0.1, 0.2], [10.0, 0.0]], dtype=torch.float64).reshape(2, 1, 1, 2) + 1
    gt = torch.ones(2, 1, 1, 2, dtype=torch.float64)
    p = pred.clone().requires_grad_()
    berhu(p, gt).backward()
    # c = 2: dL/dp = sign(r)/N on the L1 branch, r/(c N) on the quadratic one (c held fixed)
    assert torch.allclose(p.grad.flatten(), torch.tensor([0.25, 0.25, 10 / 2 / 4, 0.0], dtype=torch.float64))


def test_half_precision_inputs_are_lifted():
    pred, gt = random_scene(1, shape=(1, 1, 6, 6))
    for fn in (berhu, silog, gradient_loss, robust_loss, log_berhu):
        loss = fn(pred.half(), gt.half())
        assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_shape_and_mask_errors():
    pred, gt = random_scene(0, shape=(1, 1, 4, 4))
    with pytest.raises(DataError, match="shape"):
        berhu(pred, gt[..., :3])
    with pytest.raises(DataError, match="bool"):
        silog(pred, gt, torch.ones_like(gt))
    with pytest.raises(DataError, match=r"\(B, 1, H, W\)"):
        gradient_loss(pred[0], gt[0])
    with pytest.raises(DataError, match="intrinsics"):
        virtual_normal_loss(pred, gt, torch.eye(4))
    with pytest.raises(ConfigError, match="c_ratio"):
        berhu(pred, gt, c_ratio=0)
    with pytest.raises(ConfigError, match="max_depth"):
        log_berhu(pred, gt, min_depth=10, max_depth=5)


# ------------------------------------------------------------------------------------------
# virtual normal
# ------------------------------------------------------------------------------------------


def test_virtual_normal_planar_scene_scale_and_tilt():
    H, W = 12, 16
    K = pinhole(10.0, 7.5, 5.5)
    gt = plane_depth(H, W, K, (0.1, -0.3, 0.9), 4.0)
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    same = virtual_normal_loss(gt, gt, K, num_triplets=500, generator=gen())
    scaled = virtual_normal_loss(2 * gt, gt, K, num_triplets=500, generator=gen())
    assert same.item() == pytest.approx(0.0, abs=1e-9)
    assert scaled.item() == pytest.approx(0.0, abs=1e-9)
    tilted = plane_depth(H, W, K, (0.4, -0.1, 0.8), 4.0)
    loss = virtual_normal_loss(tilted, gt, K, num_triplets=500, generator=gen())
    n1 = F.normalize(torch.tensor([0.1, -0.3, 0.9]), dim=0)
    n2 = F.normalize(torch.tensor([0.4, -0.1, 0.8]), dim=0)
    # every kept triangle of a plane has the plane's normal (up to a sign shared by pred and gt)
    assert loss.item() == pytest.approx((n1 - n2).abs().sum().item(), rel=1e-5)
    # reproducible with a generator, and K may be (B, 3, 3)
    again = virtual_normal_loss(tilted, gt, K[None], num_triplets=500, generator=gen())
    assert again.item() == loss.item()


def test_virtual_normal_drops_degenerate_triplets():
    # a single valid row: every triplet is collinear in the gt cloud -> nothing kept -> 0
    gt = torch.zeros(1, 1, 5, 6, dtype=torch.float64)
    gt[0, 0, 2, :] = 4.0
    pred = torch.rand(1, 1, 5, 6, dtype=torch.float64) + 1
    loss = virtual_normal_loss(pred, gt, pinhole(5.0, 2.5, 2.0), generator=torch.Generator().manual_seed(1))
    assert loss.item() == 0.0
    # fewer than three valid pixels: 0 as well
    gt2 = torch.zeros_like(gt)
    gt2[0, 0, 0, :2] = 3.0
    assert virtual_normal_loss(pred, gt2, pinhole(5.0, 2.5, 2.0)).item() == 0.0


# ------------------------------------------------------------------------------------------
# segmentation
# ------------------------------------------------------------------------------------------


def test_segmentation_resizes_logits_and_ignores_255():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 5, 6, generator=g)
    labels = torch.randint(0, 4, (2, 10, 12), generator=g)
    labels[:, :3] = 255
    up = F.interpolate(logits, size=(10, 12), mode="bilinear", align_corners=False)
    expect = F.cross_entropy(up, labels, ignore_index=255)
    assert segmentation_loss(logits, labels).item() == pytest.approx(expect.item())
    assert segmentation_loss(logits, labels[:, None]).item() == pytest.approx(expect.item())
    # all ignored -> attached zero, not NaN
    lg = logits.clone().requires_grad_()
    zero = segmentation_loss(lg, torch.full_like(labels, 255))
    zero.backward()
    assert zero.item() == 0.0 and bool((lg.grad == 0).all())
    with pytest.raises(DataError, match="outside"):
        segmentation_loss(logits, torch.full_like(labels, 7))
    with pytest.raises(ConfigError, match="one value per class"):
        segmentation_loss(logits, labels, weight=[1.0, 2.0])


# ------------------------------------------------------------------------------------------
# learnable weights
# ------------------------------------------------------------------------------------------


def test_learnable_weights_value_and_gradient():
    lw = LearnableLossWeights(3, ["a", "b", "c"])
    assert torch.allclose(lw.sigma2(), torch.ones(3)) and torch.allclose(lw.weights(), torch.full((3,), 0.5))
    with torch.no_grad():
        lw.log_var.copy_(torch.tensor([0.3, -1.2, 2.0]))
    L = torch.tensor([1.5, 0.2, 4.0], dtype=torch.float64, requires_grad=True)
    total = lw(L)
    s2 = torch.exp(torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64))
    assert total.item() == pytest.approx(float((0.5 / s2 * L.detach() + torch.log1p(s2)).sum()), rel=1e-6)
    total.backward()
    # d/d(log s^2) = s^2 * d/d(s^2) = s^2 * (-0.5 L / s^4 + 1 / (1 + s^2))
    expect = s2 * (-0.5 * L.detach() / s2**2 + 1 / (1 + s2))
    assert torch.allclose(lw.log_var.grad.double(), expect, rtol=1e-5)
    # and w.r.t. sigma itself (chain rule through log s^2 = 2 log sigma): -L/sigma^3 + 2 sigma/(1+sigma^2)
    sigma = s2.sqrt()
    d_sigma = lw.log_var.grad.double() * 2 / sigma
    assert torch.allclose(d_sigma, -L.detach() / sigma**3 + 2 * sigma / (1 + sigma**2), rtol=1e-5)
    assert torch.allclose(L.grad, 0.5 / s2, rtol=1e-6)
    logs = lw.as_dict()
    assert set(logs) == {"weight/a", "weight/b", "weight/c", "sigma2/a", "sigma2/b", "sigma2/c"}
    assert logs["sigma2/a"] == pytest.approx(math.exp(0.3), rel=1e-6)
    with pytest.raises(DataError):
        lw([torch.tensor(1.0)])


# ------------------------------------------------------------------------------------------
# criterion
# ------------------------------------------------------------------------------------------


def make_batch(B: int = 2, H: int = 12, W: int = 16, C: int = 5, seed: int = 0):
    """A planar scene batch and model outputs with two extra scales and two seg outputs, coarsest first."""
    g = torch.Generator().manual_seed(seed)
    K = pinhole(10.0, 7.5, 5.5).float()
    gt = plane_depth(H, W, K.double(), (0.1, -0.3, 0.9), 4.0).float().expand(B, 1, H, W).clone()
    gt[torch.rand(gt.shape, generator=g) < 0.2] = 0
    seg = torch.randint(0, C, (B, H, W), generator=g)
    seg[:, 0] = 255
    batch = {"depth": gt, "K": K.expand(B, 3, 3).clone(), "seg": seg}
    outputs = {
        "depth": (gt.clamp(min=1) * 1.1 + 0.3 * torch.rand(gt.shape, generator=g)).requires_grad_(),
        "scales": [
            (torch.rand(B, 1, H // 4, W // 4, generator=g) * 5 + 2).requires_grad_(),
            (torch.rand(B, 1, H // 2, W // 2, generator=g) * 5 + 2).requires_grad_(),
        ],
        "seg": [torch.randn(B, C, H // 2, W // 2, generator=g), torch.randn(B, C, H, W, generator=g).requires_grad_()],
        "features": {"dec1": torch.zeros(1)},  # ignored by the criterion
    }
    return outputs, batch


def up(p: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    return p if p.shape[-2:] == gt.shape[-2:] else F.interpolate(p, size=gt.shape[-2:], mode="bilinear")


CONFIG_YAML = """
terms:
  - {type: silog, weight: 1.0, lambd: 0.85}
  - {type: gradient, weight: 0.5, scales: 2}
  - {type: virtual_normal, weight: 2.0, num_triplets: 200, seed: 7}
  - {type: robust, weight: 1.0, alpha: 1.0, scale: 2.0}
  - {type: berhu, name: berhu_tight, c_ratio: 0.1}
  - {type: log_berhu, weight: 0.3}
scale_weights: [0.25, 0.5, 1.0]   # coarsest scale, middle scale, then depth
seg_weights: [0.1, 0.2]
seg: {ignore_index: 255}
"""


def manual_total(cfg: dict, outputs: dict, batch: dict) -> torch.Tensor:
    """sum_i alpha_i sum_k w_k L_k(up(pred_i)) + sum_i beta_i CE_i, written out term by term."""
    gt, K = batch["depth"], batch["K"]
    preds = [up(p, gt) for p in (*outputs["scales"], outputs["depth"])]
    total = torch.zeros(())
    for alpha, p in zip(cfg["scale_weights"], preds):
        total = total + alpha * (
            1.0 * silog(p, gt, lambd=0.85)
            + 0.5 * gradient_loss(p, gt, scales=2)
            + 1.0 * robust_loss(p, gt)
            + 1.0 * berhu(p, gt, c_ratio=0.1)
            + 0.3 * log_berhu(p, gt)
        )
    gen = torch.Generator().manual_seed(7)  # the criterion draws the triplets prediction by prediction
    for alpha, p in zip(cfg["scale_weights"], preds):
        total = total + alpha * 2.0 * virtual_normal_loss(p, gt, K, num_triplets=200, generator=gen)
    for beta, logits in zip(cfg["seg_weights"], outputs["seg"]):
        total = total + beta * segmentation_loss(logits, batch["seg"])
    return total


def test_criterion_from_yaml_combines_as_documented():
    cfg = yaml.safe_load(CONFIG_YAML)
    crit = build_criterion(cfg)
    assert isinstance(crit, DepthCriterion)
    outputs, batch = make_batch()
    total, logs = crit(outputs, batch)
    assert total.item() == pytest.approx(manual_total(cfg, outputs, batch).item(), rel=1e-5)
    assert logs["total"] == pytest.approx(total.item())
    keys = ("silog", "gradient", "virtual_normal", "robust", "berhu_tight", "log_berhu", "seg", "silog/s0", "silog/s2", "seg/s1")
    for key in keys:
        assert isinstance(logs[key], float), key
    # each term's log is sum_i alpha_i L_k(prediction i), before its weight
    assert logs["silog"] == pytest.approx(0.25 * logs["silog/s0"] + 0.5 * logs["silog/s1"] + logs["silog/s2"], rel=1e-6)
    assert logs["seg"] == pytest.approx(0.1 * logs["seg/s0"] + 0.2 * logs["seg/s1"], rel=1e-6)
    total.backward()
    for t in (outputs["depth"], *outputs["scales"], outputs["seg"][1]):
        assert t.grad is not None and bool(torch.isfinite(t.grad).all())
    # invalid full-resolution pixels receive no gradient through the full-resolution output
    assert bool((outputs["depth"].grad[batch["depth"] == 0] == 0).all())


def test_criterion_scale_selection_by_scale_weights():
    outputs, batch = make_batch()
    gt = batch["depth"]
    no_seg = {"depth": gt}
    # not given: depth alone
    total, logs = build_criterion({"terms": [{"type": "berhu"}]})(outputs, no_seg)
    assert total.item() == pytest.approx(berhu(outputs["depth"], gt).item(), rel=1e-6)
    assert "berhu/s0" not in logs and "seg" not in logs
    # len(scales) values: the scales only (depth is their upsampled finest, e.g. tiny-multires)
    total, _ = build_criterion({"terms": [{"type": "berhu"}], "scale_weights": [0.5, 2.0]})(outputs, no_seg)
    expect = 0.5 * berhu(up(outputs["scales"][0], gt), gt) + 2.0 * berhu(up(outputs["scales"][1], gt), gt)
    assert total.item() == pytest.approx(expect.item(), rel=1e-6)
    # a model without scales and one weight: depth with that weight
    total, _ = build_criterion({"terms": [{"type": "berhu"}], "scale_weights": [3.0]})({"depth": outputs["depth"]}, no_seg)
    assert total.item() == pytest.approx(3.0 * berhu(outputs["depth"], gt).item(), rel=1e-6)


def test_criterion_seg_default_and_generator():
    outputs, batch = make_batch()
    gt = batch["depth"]
    crit = build_criterion({"terms": [{"type": "virtual_normal", "num_triplets": 100}]})
    # seg not configured but present in outputs and batch: beta = 1 per output
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    total, logs = crit(outputs, batch, generator=g1)
    vn = virtual_normal_loss(outputs["depth"], gt, batch["K"], num_triplets=100, generator=g2)
    seg = sum(segmentation_loss(s, batch["seg"]) for s in outputs["seg"])
    assert total.item() == pytest.approx((vn + seg).item(), rel=1e-6)
    again, _ = crit(outputs, batch, generator=torch.Generator().manual_seed(5))
    assert again.item() == total.item()


def test_criterion_learnable_weights():
    cfg = {"terms": [{"type": "silog", "weight": 2.0}, {"type": "gradient"}], "learnable_weights": True}
    crit = build_criterion(cfg)
    params = list(crit.parameters())
    assert len(params) == 1 and params[0].shape == (2,)
    assert list(crit.state_dict()) == ["learnable.log_var"]
    outputs, batch = make_batch()
    outputs = {"depth": outputs["depth"]}
    total, logs = crit(outputs, batch)
    s, gl = silog(outputs["depth"], batch["depth"]), gradient_loss(outputs["depth"], batch["depth"])
    expect = 0.5 * 2.0 * s + math.log(2) + 0.5 * gl + math.log(2)
    assert total.item() == pytest.approx(expect.item(), rel=1e-6)
    assert logs["weight/silog"] == 0.5 and logs["sigma2/gradient"] == 1.0
    total.backward()
    assert params[0].grad is not None
    assert params[0].grad[0].item() == pytest.approx(-0.5 * 2.0 * s.item() + 0.5, rel=1e-5)


def test_criterion_runtime_errors():
    outputs, batch = make_batch()
    vn = build_criterion({"terms": [{"type": "virtual_normal"}]})
    with pytest.raises(DataError, match="K"):
        vn(outputs, {"depth": batch["depth"]})
    crit = build_criterion({"terms": [{"type": "silog"}], "scale_weights": [1.0, 0.5, 0.5, 0.5]})
    with pytest.raises(DataError, match="scale_weights has 4"):
        crit(outputs, batch)
    crit = build_criterion({"terms": [{"type": "silog"}]})
    wrong = dict(outputs, scales=outputs["scales"][::-1])
    with pytest.raises(DataError, match="coarsest first"):
        crit(wrong, batch)
    crit = build_criterion({"terms": [{"type": "silog"}], "seg_weights": [1.0, 1.0]})
    with pytest.raises(DataError, match="no 'seg' labels"):
        crit(outputs, {"depth": batch["depth"]})
    with pytest.raises(DataError, match="no 'depth'"):
        crit({"seg": outputs["seg"]}, batch)
    with pytest.raises(DataError, match="seg_weights has 2"):
        crit(dict(outputs, seg=outputs["seg"][1]), batch)


@pytest.mark.parametrize(
    "config,match",
    [
        ({"terms": [{"type": "l7"}]}, "unknown loss type 'l7'"),
        ({"terms": [{"type": "silog", "lamda": 0.5}]}, "unknown option.*lamda.*allowed.*lambd"),
        ({"terms": [{"type": "berhu", "weight": -1}]}, "weight"),
        ({"terms": [{"type": "berhu", "c_ratio": 0}]}, "c_ratio"),
        ({"terms": [{"type": "gradient", "scales": 0}]}, "scales"),
        ({"terms": [{"type": "gradient", "log": "yes"}]}, "log must be true or false"),
        ({"terms": [{"type": "silog", "floor": "1e-3"}]}, "write 1.0e-3"),
        ({"terms": [{"type": "robust", "alpha": None}]}, "alpha must be a number"),
        ({"terms": [{"type": "virtual_normal", "seed": "x"}]}, "seed"),
        ({"terms": [{"type": "silog"}, {"type": "silog"}]}, "distinct 'name'"),
        ({"terms": [{"type": "silog"}], "scale_weight": [1]}, "unknown loss config key"),
        ({"terms": [{"type": "silog"}], "scale_weights": []}, "scale_weights"),
        ({"terms": [{"type": "silog"}], "learnable_weights": "yes"}, "learnable_weights"),
        ({"terms": [{"type": "silog"}], "seg": {"ignore": 0}}, "seg option"),
        ({"terms": []}, "nothing to optimise"),
        ({"terms": {"type": "silog"}}, "list"),
        ([1, 2], "mapping"),
    ],
)
def test_build_criterion_config_errors(config, match):
    with pytest.raises(ConfigError, match=match):
        build_criterion(config)


def test_build_criterion_leaves_global_rng_alone():
    state = torch.get_rng_state()
    build_criterion({"terms": [{"type": "virtual_normal"}]})
    assert torch.equal(state, torch.get_rng_state())
