"""The sim-to-real benchmark's parts of a frame: the road, the points above it, and those by
distance, each with its own ratio. Known answers on a hand-made KITTI frame; needs no real data."""

from __future__ import annotations

import math

import pytest
import torch

from slimdepth.errors import DataError
from slimdepth.evaluate.conventions import get_preset
from slimdepth.flat_road import above_road
from slimdepth.report.real import RealScorer
from slimdepth.report.sim_to_real import DISTANCE_BANDS, PARTS, RegionScorer, band_region

#: KITTI's left colour camera of 2011_09_26 at its 375x1242 frames
K = torch.tensor([[721.5377, 0.0, 609.5593], [0.0, 721.5377, 172.854], [0.0, 0.0, 1.0]])
H, W = 375, 1242
#: three blocks standing on the road, one per distance band, in rows 176-199 (inside the Garg
#: crop; the flat road is 44-1000 m away there, so each block is well nearer than 0.8 x it)
BLOCKS = {(0.0, 8.0): (slice(176, 200), slice(300, 340), 5.0),
          (8.0, 20.0): (slice(176, 200), slice(500, 560), 12.0),
          (20.0, 80.0): (slice(176, 200), slice(700, 780), 30.0)}


def _frame() -> tuple[torch.Tensor, torch.Tensor]:
    """Ground truth (road points at the flat road's depth in the bottom rows, and the blocks) and
    a prediction: the 5 m block predicted at half its depth, the 12 m one 10% too far, the rest exact."""
    gt = torch.zeros(1, H, W)
    rows = torch.arange(300, 370, dtype=torch.float32)
    gt[0, 300:370, 100:200] = (721.5377 * 1.65 / (rows - 172.854))[:, None]
    for (r, c, z) in BLOCKS.values():
        gt[0, r, c] = z
    pred = torch.where(gt > 0, gt, torch.full_like(gt, 10.0))
    r, c, z = BLOCKS[(0.0, 8.0)]
    pred[0, r, c] = z / 2
    r, c, z = BLOCKS[(8.0, 20.0)]
    pred[0, r, c] = z * 1.1
    return gt, pred


def test_the_parts_are_the_road_the_points_above_it_and_those_by_distance() -> None:
    assert PARTS[:2] == ("road", "above road") and len(PARTS) == 2 + len(DISTANCE_BANDS)
    assert [band_region(*b) for b in DISTANCE_BANDS] == ["above road 0-8 m", "above road 8-20 m", "above road 20-80 m"]
    # the bands tile 0-80 m, the whole KITTI range, without a gap or an overlap
    assert DISTANCE_BANDS[0][0] == 0 and DISTANCE_BANDS[-1][1] == 80
    assert all(a[1] == b[0] for a, b in zip(DISTANCE_BANDS, DISTANCE_BANDS[1:]))


def test_each_band_is_scored_alone_with_its_own_ratio() -> None:
    gt, pred = _frame()
    assert int(above_road(gt, K).sum()) == 24 * (40 + 60 + 80)  # the blocks, and none of the road points
    scorer = RegionScorer(get_preset("kitti"))
    scorer.add(pred, gt, K, ratio=1.0)
    parts = scorer.metrics()
    assert set(parts) == set(PARTS)
    sizes = {band: (r.stop - r.start) * (c.stop - c.start) for band, (r, c, _) in BLOCKS.items()}
    for band, size in sizes.items():
        part = parts[band_region(*band)]
        assert part["points"] == size and part["frames"] == 1
    near, mid, far = (parts[band_region(*band)] for band in BLOCKS)
    # half the depth: every point off by 2x (delta1 0) and a ratio of exactly 2 (too near)
    assert near["metric"]["d1"] == 0.0 and near["ratio"]["median"] == pytest.approx(2.0)
    assert near["metric"]["abs_rel"] == pytest.approx(0.5)
    # 10% too far: within 25% (delta1 1), ratio 1 / 1.1, AbsRel 0.1
    assert mid["metric"]["d1"] == 1.0 and mid["ratio"]["median"] == pytest.approx(1 / 1.1, rel=1e-5)
    assert mid["metric"]["abs_rel"] == pytest.approx(0.1, rel=1e-5)
    assert far["metric"]["d1"] == 1.0 and far["ratio"]["median"] == pytest.approx(1.0) and far["metric"]["rmse"] < 1e-5
    # the whole above-road part is the points' share that is right; the road is exact
    above = parts["above road"]
    assert above["points"] == sum(sizes.values())
    assert above["metric"]["d1"] == pytest.approx((sizes[(8.0, 20.0)] + sizes[(20.0, 80.0)]) / sum(sizes.values()))
    assert parts["road"]["metric"]["d1"] == 1.0 and parts["road"]["ratio"]["median"] == pytest.approx(1.0)
    # scaled by the frame's ratio (here 2): the far block is now off by 2, the near one right
    scorer = RegionScorer(get_preset("kitti"))
    scorer.add(pred, gt, K, ratio=2.0)
    scaled = scorer.metrics()
    assert scaled[band_region(0.0, 8.0)]["scaled"]["d1"] == 1.0 and scaled[band_region(20.0, 80.0)]["scaled"]["d1"] == 0.0
    assert scaled[band_region(0.0, 8.0)]["ratio"]["median"] == pytest.approx(2.0)  # its own ratio ignores the frame's


def test_a_band_without_points_is_left_out_and_the_ratios_are_per_frame() -> None:
    gt, pred = _frame()
    r, c, _ = BLOCKS[(8.0, 20.0)]
    gt[0, r, c] = 0.0  # nothing at 8-20 m
    scorer = RegionScorer(get_preset("kitti"))
    scorer.add(pred, gt, K, ratio=1.0)
    pred2 = pred.clone()
    r, c, z = BLOCKS[(0.0, 8.0)]
    pred2[0, r, c] = z / 4  # the second frame's near block: 4x too near
    scorer.add(pred2, gt, K, ratio=1.0)
    scorer.add(pred, gt, K, ratio=math.nan)  # a frame that did not count adds nothing
    parts = scorer.metrics()
    assert band_region(8.0, 20.0) not in parts
    near = parts[band_region(0.0, 8.0)]
    assert near["frames"] == 2 and near["ratio"]["count"] == 2
    assert near["ratio"]["mean"] == pytest.approx(3.0) and near["ratio"]["median"] == pytest.approx(3.0)


def test_a_point_on_a_bands_edge_belongs_to_the_band_above() -> None:
    gt, pred = _frame()
    edges = {(190, 900): 8.0, (190, 901): 20.0, (190, 902): 7.999, (190, 903): 19.999}
    for (r, c), z in edges.items():
        gt[0, r, c] = pred[0, r, c] = z
    scorer = RegionScorer(get_preset("kitti"))
    scorer.add(pred, gt, K, ratio=1.0)
    parts = scorer.metrics()
    sizes = {band: (r.stop - r.start) * (c.stop - c.start) for band, (r, c, _) in BLOCKS.items()}
    # 7.999 joins 0-8 m, 8.0 and 19.999 join 8-20 m, 20.0 joins 20-80 m
    assert [parts[band_region(*b)]["points"] - sizes[b] for b in DISTANCE_BANDS] == [1, 2, 1]


def test_a_band_whose_prediction_cannot_be_scaled_keeps_its_other_figures() -> None:
    """A part whose predictions are all non-positive has no ratio of its own; the scoring goes on."""
    gt, pred = _frame()
    r, c, _ = BLOCKS[(20.0, 80.0)]
    pred[0, r, c] = -1.0
    scorer = RegionScorer(get_preset("kitti"))
    scorer.add(pred, gt, K, ratio=1.0)
    far = scorer.metrics()[band_region(20.0, 80.0)]
    assert far["points"] == 24 * 80 and far["metric"]["d1"] == 0.0 and far["ratio"]["count"] == 0


def test_a_scaled_only_scorer_has_no_metric_and_no_ratio() -> None:
    gt, pred = _frame()
    scorer = RegionScorer(get_preset("kitti"), metric=False)
    scorer.add(pred, gt, K, ratio=1.0)
    assert all(set(part) == {"scaled", "frames", "points"} for part in scorer.metrics().values())


def test_real_scorer_scores_the_points_that_count_as_the_whole_frame_would() -> None:
    """The scorer takes the valid points out before scoring: the same figures as the whole frame
    (a NaN, an inf and a negative prediction included), and a batch is refused as before."""
    gt, pred = _frame()
    pred[0, 300, 100], pred[0, 301, 100], pred[0, 302, 100] = float("nan"), float("inf"), -3.0
    points = RealScorer(get_preset("kitti"))
    ratio = points.add(pred, gt)
    whole = RealScorer(get_preset("kitti"))
    whole.add(pred[0], gt[0])  # an HxW pair is scored as the whole frame, no point taken out
    for name, figures in points.metrics().items():
        for key, value in figures.items():
            assert value == pytest.approx(whole.metrics()[name][key], rel=1e-9, abs=1e-12), (name, key)
    assert ratio == pytest.approx(whole.ratios[0], rel=1e-12)
    with pytest.raises(DataError, match="must be HxW"):
        RealScorer(get_preset("kitti")).add(torch.cat([pred, pred]), torch.cat([gt, gt]))
