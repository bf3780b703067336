"""Evaluation conventions: crops, valid masks, median scaling, clamping, resizing, presets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from slimdepth.data.base import DepthDataset
from slimdepth.errors import ConfigError, DataError
from slimdepth.evaluate.conventions import (
    PRESETS,
    EvalConfig,
    crop_box,
    crop_mask,
    evaluate_batch,
    evaluate_pair,
    get_preset,
    preset_for,
    scale_ratio_stats,
    valid_mask,
)
from slimdepth.evaluate.metrics import METRIC_KEYS


def reference_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """monodepth2's / BTS's ``compute_errors`` in vectorised NumPy over selected valid pixels."""
    thresh = np.maximum(gt / pred, pred / gt)
    err = np.log(pred) - np.log(gt)
    silog = np.sqrt(np.mean(err**2) - np.mean(err) ** 2)
    return {
        "abs_rel": np.mean(np.abs(gt - pred) / gt),
        "sq_rel": np.mean((gt - pred) ** 2 / gt),
        "rmse": np.sqrt(np.mean((gt - pred) ** 2)),
        "rmse_log": np.sqrt(np.mean((np.log(gt) - np.log(pred)) ** 2)),
        "d1": (thresh < 1.25).mean(),
        "d2": (thresh < 1.25**2).mean(),
        "d3": (thresh < 1.25**3).mean(),
        "log10": np.mean(np.abs(np.log10(pred) - np.log10(gt))),
        "silog": 100 * silog,
        "si_rmse": silog,
        "mae": np.mean(np.abs(pred - gt)),
    }


def extents(mask: torch.Tensor) -> tuple[int, int, int, int]:
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def test_kitti_crops_match_monodepth2_at_375x1242() -> None:
    # monodepth2/BTS: int(0.40810811*375)=153, int(0.99189189*375)=371, int(0.03594771*1242)=44,
    # int(0.96405229*1242)=1197; Eigen: int(0.3324324*375)=124, int(0.91351351*375)=342
    assert crop_box(375, 1242, "garg") == (153, 371, 44, 1197)
    assert crop_box(375, 1242, "eigen") == (124, 342, 44, 1197)
    garg = crop_mask(375, 1242, "garg")
    assert extents(garg) == (153, 371, 44, 1197)
    assert int(garg.sum()) == (371 - 153) * (1197 - 44)
    assert extents(crop_mask(375, 1242, "eigen")) == (124, 342, 44, 1197)


def test_nyu_crop_at_480x640_and_scaled() -> None:
    nyu = crop_mask(480, 640, "nyu")
    assert extents(nyu) == (45, 471, 41, 601)
    assert int(nyu.sum()) == 426 * 560
    assert crop_box(240, 320, "nyu") == (22, 235, 20, 300)  # proportional, truncated
    assert bool(crop_mask(5, 5, None).all())


def test_valid_mask_excludes_zero_cap_and_outside_crop() -> None:
    cfg = get_preset("nyu")
    gt = torch.full((1, 480, 640), 5.0)
    gt[0, 100, 100] = 0.0  # invalid marker
    gt[0, 100, 101] = 10.0  # at the cap: strict inequality excludes it
    gt[0, 100, 102] = 25.0  # beyond the cap
    gt[0, 100, 103] = 1e-3  # at the minimum
    mask = valid_mask(gt, cfg)
    assert not mask[0, 100, 100:104].any()
    assert not mask[0, :45].any() and not mask[0, 471:].any()
    assert not mask[0, :, :41].any() and not mask[0, :, 601:].any()
    assert int(mask.sum()) == 426 * 560 - 4


def test_pixels_outside_crop_do_not_change_metrics() -> None:
    rng = np.random.default_rng(3)
    gt = torch.from_numpy(rng.uniform(1, 70, (48, 160)).astype(np.float32))
    pred = gt * 1.1
    base = evaluate_pair(pred, gt, PRESETS["kitti"]).metrics
    top, bottom, left, right = crop_box(48, 160, "garg")
    wild = pred.clone()
    wild[:top] = 1000.0
    wild[:, right:] = 0.0
    assert evaluate_pair(wild, gt, PRESETS["kitti"]).metrics == base


def numpy_pipeline(pred: np.ndarray, gt: np.ndarray, lo: float, hi: float, crop: tuple[int, int, int, int], median: bool):
    """monodepth2's evaluate loop written with NumPy boolean indexing."""
    mask = np.logical_and(gt > lo, gt < hi)
    crop_mask_np = np.zeros(gt.shape)
    crop_mask_np[crop[0]:crop[1], crop[2]:crop[3]] = 1
    mask = np.logical_and(mask, crop_mask_np)
    p = pred[mask].astype(np.float64)
    g = gt[mask].astype(np.float64)
    ratio = None
    if median:
        ratio = np.median(g) / np.median(p)
        p = p * ratio
    p[p < lo] = lo
    p[p > hi] = hi
    return reference_metrics(p, g), ratio


@pytest.mark.parametrize("median", [False, True])
def test_evaluate_pair_matches_numpy_monodepth2_loop(median: bool) -> None:
    rng = np.random.default_rng(4)
    gt = rng.uniform(0.0, 100.0, (75, 248)).astype(np.float32)
    gt[rng.random(gt.shape) < 0.5] = 0.0
    pred = (gt * rng.uniform(0.7, 1.4, gt.shape) + rng.uniform(0.0, 5.0, gt.shape)).astype(np.float32)
    pred *= 0.02 if median else 1.0  # an arbitrary scale for median scaling to recover
    cfg = get_preset("kitti", median_scaling=median)
    res = evaluate_pair(torch.from_numpy(pred), torch.from_numpy(gt), cfg)
    expected, ratio = numpy_pipeline(pred, gt, 1e-3, 80.0, crop_box(75, 248, "garg"), median)
    for key in METRIC_KEYS:
        assert res.metrics[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-12), key
    if median:
        assert res.scale_ratio == pytest.approx(ratio, rel=1e-12)
    else:
        assert res.scale_ratio is None


def test_median_scaling_makes_scaled_prediction_exact() -> None:
    gt = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 0.0]])  # 5 valid pixels
    for k in (0.25, 4.0, 3.0):
        res = evaluate_pair(k * gt, gt, EvalConfig(median_scaling=True))
        assert res.scale_ratio == pytest.approx(1 / k)
        assert res.metrics["abs_rel"] == pytest.approx(0.0, abs=1e-7)
        assert res.metrics["d1"] == 1.0
        assert res.valid_pixels == 5


def test_median_is_numpy_median_for_even_counts() -> None:
    gt = torch.tensor([[1.0, 2.0, 3.0, 10.0]])  # numpy median 2.5 (torch.median would say 2)
    pred = torch.ones(1, 4)
    res = evaluate_pair(pred, gt, EvalConfig(median_scaling=True))
    assert res.scale_ratio == pytest.approx(2.5)


def test_median_scaling_impossible_is_a_clear_error() -> None:
    gt = torch.ones(3, 3)
    with pytest.raises(DataError, match="median scaling"):
        evaluate_pair(torch.zeros(3, 3), gt, EvalConfig(median_scaling=True))


def test_clamping_follows_bts() -> None:
    cfg = EvalConfig(min_depth=1e-3, max_depth=10.0)
    gt = torch.full((1, 5), 5.0)
    pred = torch.tensor([[float("nan"), float("inf"), 0.0, 50.0, 5.0]])
    res = evaluate_pair(pred, gt, cfg)
    # effective predictions: 1e-3, 10, 1e-3, 10, 5
    expected = reference_metrics(np.array([1e-3, 10, 1e-3, 10, 5.0]), np.full(5, 5.0))
    for key in METRIC_KEYS:
        assert res.metrics[key] == pytest.approx(expected[key], rel=1e-6), key


def test_size_mismatch_needs_resize() -> None:
    gt = torch.full((1, 8, 12), 3.0)
    pred = torch.full((1, 4, 6), 3.0)
    with pytest.raises(DataError, match="4x6 does not match ground truth 8x12"):
        evaluate_pair(pred, gt, PRESETS["none"])
    res = evaluate_pair(pred, gt, PRESETS["none"], resize=True)
    assert res.metrics["abs_rel"] == pytest.approx(0.0, abs=1e-12) and res.valid_pixels == 96


def test_no_valid_pixel_gives_nan_metrics() -> None:
    res = evaluate_pair(torch.ones(4, 4), torch.zeros(4, 4), PRESETS["none"])
    assert res.valid_pixels == 0 and all(math.isnan(v) for v in res.metrics.values())


def test_evaluate_batch_matches_pairs() -> None:
    rng = np.random.default_rng(5)
    gt = torch.from_numpy(rng.uniform(0.5, 9.0, (3, 1, 48, 64)).astype(np.float32))
    pred = gt * torch.from_numpy(rng.uniform(0.8, 1.2, gt.shape).astype(np.float32))
    cfg = get_preset("nyu", median_scaling=True)
    batch = evaluate_batch(pred, gt, cfg)
    for i in range(3):
        pair = evaluate_pair(pred[i], gt[i], cfg)
        assert pair.scale_ratio == pytest.approx(float(batch.ratios[i]))
        for key in METRIC_KEYS:
            assert pair.metrics[key] == pytest.approx(float(batch.metrics[key][i]), rel=1e-12)


def test_presets_and_config_validation() -> None:
    assert PRESETS["kitti"] == EvalConfig(1e-3, 80.0, "garg", False, "kitti")
    assert PRESETS["kitti-eigen"].crop == "eigen" and PRESETS["kitti-eigen"].max_depth == 80.0
    assert (PRESETS["nyu"].crop, PRESETS["nyu"].max_depth) == ("nyu", 10.0)
    assert (PRESETS["none"].crop, PRESETS["none"].max_depth) == (None, 80.0)
    assert get_preset("kitti", median_scaling=True).median_scaling
    with pytest.raises(ConfigError, match="unknown evaluation preset"):
        get_preset("cityscapes")
    with pytest.raises(ConfigError):
        get_preset("kitti", colour=True)
    with pytest.raises(ConfigError):
        EvalConfig(min_depth=10.0, max_depth=1.0)
    with pytest.raises(ConfigError):
        EvalConfig(crop="square")  # type: ignore[arg-type]
    assert PRESETS["kitti"].to_dict() == {
        "preset": "kitti", "min_depth": 1e-3, "max_depth": 80.0, "crop": "garg", "median_scaling": False
    }


class _Named(DepthDataset):
    def __init__(self, preset: str | None) -> None:
        super().__init__()
        self.eval_preset = preset


def test_preset_for_dataset() -> None:
    assert preset_for(_Named("nyu")) == PRESETS["nyu"]
    assert preset_for(_Named("kitti")) == PRESETS["kitti"]
    fallback = preset_for(_Named(None))
    assert fallback.crop is None and fallback.max_depth == 80.0


def test_scale_ratio_stats() -> None:
    stats = scale_ratio_stats([1.0, 2.0, 3.0, float("nan")])
    assert stats["count"] == 3
    assert stats["mean"] == pytest.approx(2.0)
    assert stats["std"] == pytest.approx(np.std([1.0, 2.0, 3.0]))
    assert stats["median"] == pytest.approx(2.0)
    assert stats["std_over_median"] == pytest.approx(np.std([0.5, 1.0, 1.5]))


def half_pixel_resize(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize with pixel centres at i + 0.5 (``align_corners=False``), border replicated,
    written out: output pixel j reads the source at (j + 0.5) * n_in / n_out - 0.5, clamped."""

    def along(x: np.ndarray, n_out: int, axis: int) -> np.ndarray:
        n_in = x.shape[axis]
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0, n_in - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        t = src - lo
        shape = [1] * x.ndim
        shape[axis] = n_out
        return np.take(x, lo, axis) * (1 - t).reshape(shape) + np.take(x, hi, axis) * t.reshape(shape)

    return along(along(values.astype(np.float64), size[0], 0), size[1], 1)


def test_resized_predictions_use_half_pixel_centres() -> None:
    """Catches the evaluation resize done with ``align_corners=True`` (or nearest): a constant map
    survives every resize, a ramp does not. Prediction 3x4 -> ground truth 6x8, against the
    half-pixel formula at every pixel, and the metrics of a ground truth equal to that formula."""
    from slimdepth.evaluate.conventions import prepare_prediction

    rows, cols = np.mgrid[0:3, 0:4]
    pred = (1.0 + cols + 2.0 * rows).astype(np.float64)  # a plane: 1 + x + 2y
    expected = half_pixel_resize(pred, (6, 8))
    # by hand: x_src = clip(j / 2 - 0.25, 0, 3), y_src = clip(i / 2 - 0.25, 0, 2)
    assert expected[0, :4].tolist() == [1.0, 1.25, 1.75, 2.25] and expected[0, 7] == 4.0
    assert expected[5, 0] == 1.0 + 2.0 * 2.0 and expected[1, 1] == pytest.approx(1.25 + 2 * 0.25)
    gt = torch.from_numpy(expected).float()
    cfg = EvalConfig(min_depth=0.5, max_depth=20.0)
    prepared, mask, _ = prepare_prediction(torch.from_numpy(pred), gt, cfg, resize=True)
    np.testing.assert_allclose(prepared[0, 0].numpy(), expected, rtol=0, atol=1e-12)
    res = evaluate_pair(torch.from_numpy(pred), gt, cfg, resize=True)
    assert res.valid_pixels == 48
    assert res.metrics["abs_rel"] == pytest.approx(0.0, abs=1e-7) and res.metrics["d1"] == 1.0


def test_model_predictions_are_resized_with_half_pixel_centres_both_ways() -> None:
    """Catches ``align_corners=True`` in the evaluation loop's resizes (image to the model size,
    depth back to the image size): with a model that returns its first input channel, a ramp
    image goes 4x8 -> 2x4 -> 4x8 and must come back as the half-pixel formula predicts."""
    from slimdepth.evaluate.loop import predict_depth

    class FirstChannel(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, :1]

    rows, cols = np.mgrid[0:4, 0:8]
    ramp = (cols + 8.0 * rows) / 40.0  # in [0, 0.975]
    image = torch.from_numpy(np.stack([ramp] * 3)).float()
    small = half_pixel_resize(ramp, (2, 4))
    assert small[0].tolist() == pytest.approx([(4.5 + 2 * j) / 40 for j in range(4)])  # each 2x2 block's mean
    expected = half_pixel_resize(small, (4, 8))
    (depth,) = predict_depth(FirstChannel(), [image], input_size=(2, 4))
    assert depth.shape == (1, 4, 8)
    np.testing.assert_allclose(depth[0].numpy(), expected, rtol=0, atol=1e-6)
    # interior pixels of a plane survive down- and up-sampling exactly; the border is replicated
    np.testing.assert_allclose(depth[0, 1:3, 1:7].numpy(), ramp[1:3, 1:7], rtol=0, atol=1e-6)


def test_median_scaling_comes_before_clamping() -> None:
    """Catches clamping before median scaling (or clamping only once, before): monodepth2/BTS,
    and this module's docstring, scale by median(gt) / median(pred) over the valid pixels first,
    then clamp to [min_depth, max_depth]. Here the raw predictions lie below min_depth and the
    scaled ones above max_depth, so each order gives other numbers."""
    cfg = EvalConfig(min_depth=1.0, max_depth=10.0, median_scaling=True)
    gt = torch.tensor([[2.0, 4.0, 6.0, 8.0, 9.0, 0.0, 12.0]], dtype=torch.float64)  # the last two are invalid
    pred = torch.tensor([[0.4, 0.5, 0.8, 1.2, 2.0, 0.1, 0.7]], dtype=torch.float64)
    res = evaluate_pair(pred, gt, cfg)
    # median(gt) = 6, median(pred) = 0.8 over the five valid pixels: ratio 7.5 (clamping first: 6)
    assert res.scale_ratio == pytest.approx(7.5, rel=1e-12)
    assert res.valid_pixels == 5
    scaled = np.array([3.0, 3.75, 6.0, 9.0, 10.0])  # 7.5 * pred, then 15 clamped to 10
    expected = reference_metrics(scaled, np.array([2.0, 4.0, 6.0, 8.0, 9.0]))
    for key in METRIC_KEYS:
        assert res.metrics[key] == pytest.approx(expected[key], rel=1e-12, abs=1e-15), key
    assert res.metrics["d1"] == pytest.approx(0.8)  # ratios 1.5, 1.07, 1, 1.125, 1.11: one of five fails
