"""Depth metrics against an independent NumPy reference and hand-worked values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from slimdepth.errors import DataError
from slimdepth.evaluate.metrics import (
    METRIC_KEYS,
    METRIC_NAMES,
    MetricAccumulator,
    batch_depth_metrics,
    compute_depth_metrics,
)


def reference_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Straightforward per-pixel loop over already-selected valid pixels (no vectorised tricks)."""
    n = len(gt)
    sums = dict.fromkeys(["abs", "sq", "se", "sle", "a1", "a2", "a3", "l10", "e", "e2", "ae"], 0.0)
    for p, g in zip(pred.tolist(), gt.tolist()):
        t = max(p / g, g / p)
        sums["a1"] += t < 1.25
        sums["a2"] += t < 1.5625
        sums["a3"] += t < 1.953125
        sums["abs"] += abs(p - g) / g
        sums["sq"] += (p - g) ** 2 / g
        sums["se"] += (p - g) ** 2
        sums["sle"] += (math.log(p) - math.log(g)) ** 2
        sums["l10"] += abs(math.log10(g) - math.log10(p))
        sums["e"] += math.log(p) - math.log(g)
        sums["e2"] += (math.log(p) - math.log(g)) ** 2
        sums["ae"] += abs(p - g)
    var = max(sums["e2"] / n - (sums["e"] / n) ** 2, 0.0)
    return {
        "abs_rel": sums["abs"] / n,
        "sq_rel": sums["sq"] / n,
        "rmse": math.sqrt(sums["se"] / n),
        "rmse_log": math.sqrt(sums["sle"] / n),
        "d1": sums["a1"] / n,
        "d2": sums["a2"] / n,
        "d3": sums["a3"] / n,
        "log10": sums["l10"] / n,
        "silog": 100.0 * math.sqrt(var),
        "si_rmse": math.sqrt(var),
        "mae": sums["ae"] / n,
    }


def reference_mean(preds: np.ndarray, gts: np.ndarray, masks: np.ndarray) -> tuple[dict[str, float], int]:
    """Average of per-image reference metrics over images with at least one valid pixel."""
    per_image = []
    for p, g, m in zip(preds, gts, masks):
        if m.sum() == 0:
            continue
        per_image.append(reference_metrics(p[m].astype(np.float64), g[m].astype(np.float64)))
    if not per_image:
        return {}, 0
    return {k: float(np.mean([r[k] for r in per_image])) for k in METRIC_KEYS}, len(per_image)


def assert_close(actual: dict[str, float], expected: dict[str, float], rel: float = 1e-9, abs_: float = 1e-9) -> None:
    for key in METRIC_KEYS:
        assert actual[key] == pytest.approx(expected[key], rel=rel, abs=abs_), key


def random_batch(rng: np.random.Generator, b: int = 3, h: int = 7, w: int = 9):
    gt = rng.uniform(0.5, 50.0, size=(b, 1, h, w)).astype(np.float32)
    pred = (gt * rng.uniform(0.6, 1.6, size=gt.shape)).astype(np.float32)
    mask = rng.random(gt.shape) < 0.7
    return pred, gt, mask


def test_metric_names_are_ordered_and_complete() -> None:
    assert [m.key for m in METRIC_NAMES][:7] == ["abs_rel", "sq_rel", "rmse", "rmse_log", "d1", "d2", "d3"]
    assert set(METRIC_KEYS) == {"abs_rel", "sq_rel", "rmse", "rmse_log", "d1", "d2", "d3", "log10", "silog", "si_rmse", "mae"}
    higher = {m.key for m in METRIC_NAMES if m.higher_is_better}
    assert higher == {"d1", "d2", "d3"}
    out = compute_depth_metrics(torch.ones(2, 2), torch.ones(2, 2))
    assert list(out) == list(METRIC_KEYS)


def test_batched_metrics_match_reference_on_random_data() -> None:
    rng = np.random.default_rng(0)
    pred, gt, mask = random_batch(rng)
    per = batch_depth_metrics(torch.from_numpy(pred), torch.from_numpy(gt), torch.from_numpy(mask))
    for i in range(pred.shape[0]):
        m = mask[i]
        expected = reference_metrics(pred[i][m].astype(np.float64), gt[i][m].astype(np.float64))
        assert_close({k: float(v[i]) for k, v in per.items()}, expected)
        single = compute_depth_metrics(torch.from_numpy(pred[i]), torch.from_numpy(gt[i]), torch.from_numpy(m))
        assert_close(single, expected)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    b=st.integers(1, 4),
    h=st.integers(1, 6),
    w=st.integers(1, 6),
    p_valid=st.floats(0.0, 1.0),
)
def test_accumulator_matches_reference_mean(seed: int, b: int, h: int, w: int, p_valid: float) -> None:
    rng = np.random.default_rng(seed)
    pred, gt, _ = random_batch(rng, b, h, w)
    mask = rng.random(gt.shape) < p_valid
    acc = MetricAccumulator()
    # two updates with a split batch must equal the reference over the whole batch
    split = b // 2
    for sl in (slice(0, split), slice(split, b)):
        if sl.stop > sl.start:
            acc.update(torch.from_numpy(pred[sl]), torch.from_numpy(gt[sl]), torch.from_numpy(mask[sl]))
    expected, count = reference_mean(pred, gt, mask)
    assert acc.num_images == count
    assert acc.skipped == b - count
    if count:
        assert_close(acc.compute(), expected, rel=1e-9, abs_=1e-9)
    else:
        assert all(math.isnan(v) for v in acc.compute().values())


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.floats(0.05, 20.0))
def test_scale_invariant_metrics_ignore_a_global_scale(seed: int, k: float) -> None:
    rng = np.random.default_rng(seed)
    pred, gt, mask = random_batch(rng, 1, 5, 5)
    pred64 = torch.from_numpy(pred).double()
    gt64, m = torch.from_numpy(gt).double(), torch.from_numpy(mask)
    a = compute_depth_metrics(pred64, gt64, m)
    b = compute_depth_metrics(pred64 * k, gt64, m)
    assert b["silog"] == pytest.approx(a["silog"], abs=1e-6)
    assert b["si_rmse"] == pytest.approx(a["si_rmse"], abs=1e-8)


def test_double_prediction_hand_values() -> None:
    gt = torch.tensor([[1.0, 2.0], [3.0, 10.0]])
    out = compute_depth_metrics(2 * gt, gt)
    assert out["abs_rel"] == pytest.approx(1.0)
    assert out["d1"] == 0.0 and out["d2"] == 0.0 and out["d3"] == 0.0  # ratio 2 > 1.25^3
    assert out["silog"] == pytest.approx(0.0, abs=1e-9)
    assert out["si_rmse"] == pytest.approx(0.0, abs=1e-11)
    assert out["rmse_log"] == pytest.approx(math.log(2))
    assert out["log10"] == pytest.approx(math.log10(2))
    assert out["mae"] == pytest.approx(4.0)  # mean |2g - g| = mean g
    assert out["sq_rel"] == pytest.approx(4.0)  # mean g^2 / g
    assert out["rmse"] == pytest.approx(math.sqrt((1 + 4 + 9 + 100) / 4))


def test_two_pixel_hand_worked_example() -> None:
    # gt = (1, 4), pred = (2, 2): errors +1 and -2, log errors +ln2 and -ln2
    out = compute_depth_metrics(torch.tensor([2.0, 2.0]), torch.tensor([1.0, 4.0]))
    assert out["abs_rel"] == pytest.approx((1 / 1 + 2 / 4) / 2)  # 0.75
    assert out["sq_rel"] == pytest.approx((1 / 1 + 4 / 4) / 2)  # 1.0
    assert out["rmse"] == pytest.approx(math.sqrt((1 + 4) / 2))
    assert out["rmse_log"] == pytest.approx(math.log(2))
    assert out["log10"] == pytest.approx(math.log10(2))
    assert out["silog"] == pytest.approx(100 * math.log(2))  # mean e = 0
    assert out["si_rmse"] == pytest.approx(math.log(2))
    assert out["mae"] == pytest.approx(1.5)
    assert (out["d1"], out["d2"], out["d3"]) == (0.0, 0.0, 0.0)


def test_delta_thresholds_are_strict_fractions() -> None:
    gt = torch.ones(4, dtype=torch.float64)
    pred = torch.tensor([1.2, 1.5, 1.9, 0.25], dtype=torch.float64)  # ratios 1.2, 1.5, 1.9, 4
    out = compute_depth_metrics(pred, gt)
    assert (out["d1"], out["d2"], out["d3"]) == (0.25, 0.5, 0.75)
    exact = compute_depth_metrics(torch.tensor([1.25], dtype=torch.float64), torch.ones(1, dtype=torch.float64))
    assert exact["d1"] == 0.0 and exact["d2"] == 1.0  # 1.25 is not < 1.25


def test_per_image_average_differs_from_pooled() -> None:
    # image A: one pixel, AbsRel 1; image B: three perfect pixels, AbsRel 0
    gt = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    pred = torch.tensor([[2.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    mask = torch.tensor([[True, False, False, False], [True, True, True, False]])
    acc = MetricAccumulator()
    acc.update(pred, gt, mask)
    assert acc.compute()["abs_rel"] == pytest.approx(0.5)  # (1 + 0) / 2
    pooled = compute_depth_metrics(pred, gt, mask)
    assert pooled["abs_rel"] == pytest.approx(0.25)  # 1 / 4 pixels
    assert acc.compute()["d1"] == pytest.approx(0.5) and pooled["d1"] == pytest.approx(0.75)


def test_invalid_pixels_never_count() -> None:
    rng = np.random.default_rng(1)
    pred, gt, mask = random_batch(rng, 2, 6, 6)
    clean = batch_depth_metrics(torch.from_numpy(pred), torch.from_numpy(gt), torch.from_numpy(mask))
    wild_pred, wild_gt = pred.copy(), gt.copy()
    wild_pred[~mask] = np.array([0.0, -3.0, np.nan, np.inf, 1e9], dtype=np.float32)[np.arange((~mask).sum()) % 5]
    wild_gt[~mask] = np.array([0.0, np.inf, 1e6], dtype=np.float32)[np.arange((~mask).sum()) % 3]
    dirty = batch_depth_metrics(torch.from_numpy(wild_pred), torch.from_numpy(wild_gt), torch.from_numpy(mask))
    for key in METRIC_KEYS:
        torch.testing.assert_close(dirty[key], clean[key], rtol=0, atol=0)


def test_default_mask_is_positive_ground_truth() -> None:
    gt = torch.tensor([0.0, 2.0, 4.0])
    pred = torch.tensor([100.0, 2.0, 4.0])
    assert compute_depth_metrics(pred, gt)["abs_rel"] == 0.0


def test_empty_image_is_nan_and_skipped() -> None:
    gt = torch.ones(2, 3, 3)
    mask = torch.zeros(2, 3, 3, dtype=torch.bool)
    mask[1, 0, 0] = True
    pred = gt * 1.1
    single = compute_depth_metrics(pred[0], gt[0], mask[0])
    assert all(math.isnan(v) for v in single.values())
    acc = MetricAccumulator()
    per = acc.update(pred, gt, mask)
    assert math.isnan(float(per["rmse"][0])) and not math.isnan(float(per["rmse"][1]))
    assert (acc.num_images, acc.skipped) == (1, 1)
    acc.add(single)  # floats from a per-image call are accepted too
    assert acc.skipped == 2
    assert acc.compute()["abs_rel"] == pytest.approx(0.1, rel=1e-6)
    acc.reset()
    assert (acc.num_images, acc.skipped) == (0, 0)


def test_non_positive_prediction_on_valid_pixel_is_an_error() -> None:
    gt = torch.tensor([1.0, 2.0])
    with pytest.raises(DataError, match="clamp"):
        compute_depth_metrics(torch.tensor([0.0, 2.0]), gt)
    with pytest.raises(DataError, match="clamp"):
        compute_depth_metrics(torch.tensor([float("nan"), 2.0]), gt)
    with pytest.raises(DataError, match="does not match"):
        compute_depth_metrics(torch.ones(3), gt)


def test_float32_inputs_are_accumulated_in_float64() -> None:
    rng = np.random.default_rng(2)
    pred, gt, mask = random_batch(rng, 2, 4, 4)
    per = batch_depth_metrics(torch.from_numpy(pred), torch.from_numpy(gt), torch.from_numpy(mask))
    assert all(v.dtype == torch.float64 and v.shape == (2,) for v in per.values())


def test_an_image_with_one_nan_metric_is_skipped_whole() -> None:
    """Catches skipping an image only when *all* its metrics are NaN: metrics added from
    elsewhere (``add``) may be NaN in a single entry; the documented rule skips every image with
    a NaN metric, so the means stay over one common set of images and none becomes NaN."""
    good = {k: float(i + 1) for i, k in enumerate(METRIC_KEYS)}  # 1, 2, ..., 11
    other = {k: 10.0 * (i + 1) for i, k in enumerate(METRIC_KEYS)}  # 10, 20, ..., 110
    one_nan = {**{k: 100.0 for k in METRIC_KEYS}, "silog": math.nan}
    acc = MetricAccumulator()
    acc.add(good)
    acc.add(one_nan)
    acc.add(other)
    assert (acc.num_images, acc.skipped) == (2, 1)
    assert acc.compute() == {k: 5.5 * (i + 1) for i, k in enumerate(METRIC_KEYS)}  # (1 + 10) / 2 times i + 1
    # the same rule inside a batch of tensors: the second image has a NaN d1 only
    batch = {k: torch.tensor([1.0, 3.0, 5.0], dtype=torch.float64) for k in METRIC_KEYS}
    batch["d1"] = torch.tensor([0.25, math.nan, 0.75], dtype=torch.float64)
    acc = MetricAccumulator()
    acc.add(batch)
    assert (acc.num_images, acc.skipped) == (2, 1)
    expected = {k: 3.0 for k in METRIC_KEYS}
    expected["d1"] = 0.5
    assert acc.compute() == expected
