"""The ``sharpen_far`` augmentation: an unsharp mask whose amount grows with the true depth (its bad
values are tested as a class with the other photometric ops in test_augment.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from slimdepth.data.augment import build_augmentation
from slimdepth.data.photometric import SharpenFar, depth_weight
from slimdepth.data.sample import make_sample
from slimdepth.errors import DataError

H, W = 20, 36
NEAR, FAR = 8.0, 30.0
MIDDLE = math.sqrt(NEAR * FAR)  # halfway in log depth: half the amount


def dense_sample(seed: int = 0, right: bool = False) -> dict:
    """A random image over four bands of columns: near, halfway, far and no depth."""
    rng = np.random.default_rng(seed)
    depth = np.zeros((H, W), np.float32)
    depth[:, :9], depth[:, 9:18], depth[:, 18:27] = 5.0, MIDDLE, 45.0  # columns 27.. have no depth
    extra = {}
    if right:
        extra = {"right_image": (0.25 + 0.5 * rng.random((H, W, 3))).astype(np.float32),
                 "right_depth": np.full((H, W), 4.0, np.float32)}
    return make_sample((0.25 + 0.5 * rng.random((H, W, 3))).astype(np.float32), depth=depth, **extra)


def test_depth_weight_is_zero_near_one_far_and_log_linear_between():
    depth = torch.tensor([0.0, float("nan"), 1.0, NEAR, MIDDLE, FAR, 200.0])
    np.testing.assert_allclose(depth_weight(depth, NEAR, FAR).numpy(), [0, 0, 0, 0, 0.5, 1, 1], atol=1e-6)
    d = torch.tensor([12.0])  # an independent formula
    assert depth_weight(d, NEAR, FAR).item() == pytest.approx(math.log(12 / 8) / math.log(30 / 8), rel=1e-6)


def test_it_is_an_unsharp_mask_weighted_by_depth_against_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    src = dense_sample()
    out = SharpenFar(1.0, amount=(2.0, 2.0), sigma=(1.0, 1.0))(src, generator=0)
    img = src["image"].numpy().astype(np.float64)
    detail = img - np.stack([ndimage.gaussian_filter(ch, 1.0, mode="mirror", truncate=3.0) for ch in img])
    weight = np.zeros((H, W))
    weight[:, 9:18], weight[:, 18:27] = 0.5, 1.0
    ref = np.clip(img + 2.0 * weight * detail, 0.0, 1.0)
    np.testing.assert_allclose(out["image"].numpy(), ref, atol=1e-5)
    # near and depthless columns are untouched, the far ones changed
    assert torch.equal(out["image"][..., :9], src["image"][..., :9])
    assert torch.equal(out["image"][..., 27:], src["image"][..., 27:])
    assert not torch.allclose(out["image"][..., 18:27], src["image"][..., 18:27])
    assert out["depth"] is src["depth"]
    assert out["meta"]["augment"] == [{"op": "sharpen_far", "amount": 2.0, "sigma": 1.0}]


def test_probability_draws_and_seeds():
    src = dense_sample(1)
    assert SharpenFar(0.0)(src, generator=0) is src
    draws = [SharpenFar(1.0)(src, generator=g)["meta"]["augment"][0] for g in range(30)]
    assert all(0.5 <= d["amount"] <= 3.0 and 0.5 <= d["sigma"] <= 2.0 for d in draws)
    assert len({d["amount"] for d in draws}) == 30
    op = build_augmentation([{"op": "sharpen_far", "p": 1.0, "near": 4, "far": 40}])
    assert torch.equal(op(src, generator=7)["image"], op(src, generator=torch.Generator().manual_seed(7))["image"])
    # with near at 4 m the 5 m columns now get a little of the amount
    assert not torch.equal(op(src, generator=7)["image"][..., :9], src["image"][..., :9])


def test_a_stereo_partner_is_sharpened_by_its_own_depth():
    src = dense_sample(2, right=True)  # the partner's depth is near everywhere
    out = SharpenFar(1.0, amount=(3.0, 3.0))(src, generator=0)
    assert torch.equal(out["right_image"], src["right_image"])
    assert not torch.equal(out["image"], src["image"])
    far = dict(src, right_depth=torch.full((1, H, W), 50.0))  # now far everywhere: all of the amount
    out = SharpenFar(1.0, amount=(3.0, 3.0), sigma=(1.0, 1.0))(far, generator=0)
    everywhere = SharpenFar(1.0, amount=(3.0, 3.0), sigma=(1.0, 1.0), near=1e-3, far=2e-3)
    torch.testing.assert_close(out["right_image"], everywhere(far, generator=0)["right_image"])
    assert not torch.equal(out["right_image"], src["right_image"])
    del src["right_depth"]  # the synthetic set's right view has no depth: one line that says so
    with pytest.raises(DataError, match="right_depth.*right=true") as err:
        SharpenFar(1.0)(src, generator=0)
    assert "\n" not in str(err.value)


def test_a_plain_hw_depth_without_meta_is_judged_by_its_density():
    """As benchmarks/frame_detail.py calls it: no meta, depth (H, W), sparsity from the map itself."""
    rng = np.random.default_rng(5)
    image = torch.from_numpy((0.25 + 0.5 * rng.random((3, H, W))).astype(np.float32))
    depth = torch.full((H, W), 45.0)
    out = SharpenFar(1.0, amount=(1.0, 1.0), sigma=(1.0, 1.0))({"image": image, "depth": depth}, generator=0)
    same = SharpenFar(1.0, amount=(1.0, 1.0), sigma=(1.0, 1.0))({"image": image, "depth": depth[None]}, generator=0)
    torch.testing.assert_close(out["image"], same["image"])
    assert not torch.equal(out["image"], image)
    sparse = torch.where(torch.from_numpy(rng.random((H, W))) < 0.05, 45.0, 0.0)
    with pytest.raises(DataError, match="point set"):
        SharpenFar(1.0)({"image": image, "depth": sparse}, generator=0)
    with pytest.raises(DataError, match="no 'depth'"):
        SharpenFar(1.0)({"image": image, "depth": None}, generator=0)


@pytest.mark.parametrize("near, far", [(5e-324, 30.0), (1e-300, 1e300), (7.999999, 8.0)])
def test_extreme_but_valid_settings_stay_finite(near, far):
    out = SharpenFar(1.0, amount=(3.0, 3.0), near=near, far=far)(dense_sample(4), generator=0)
    assert torch.isfinite(out["image"]).all() and 0.0 <= out["image"].min() and out["image"].max() <= 1.0


def test_on_a_rendered_frame_the_far_gains_more_detail_than_the_near():
    from slimdepth.data.photometric import _blur, _grey
    from slimdepth.data.registry import build_dataset

    frame = build_dataset("synthetic,num=1,size=96x320,lidar=false,seg=false,haze=0")[0]
    out = SharpenFar(1.0, amount=(2.0, 2.0), sigma=(1.0, 1.0))(frame, generator=0)
    depth = frame["depth"].reshape(96, 320)

    def detail(image: torch.Tensor, mask: torch.Tensor) -> float:
        grey = _grey(image)
        return float((grey - _blur(grey, 1.0))[0][mask].abs().mean())

    near, far = (depth > 0) & (depth < NEAR), (depth >= FAR) & (depth < 80)
    assert near.sum() > 200 and far.sum() > 200
    assert detail(out["image"], near) == pytest.approx(detail(frame["image"], near), rel=0.05)
    assert detail(out["image"], far) > 2.0 * detail(frame["image"], far)
