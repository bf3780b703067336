"""Depth-consistent augmentation: geometry checked by back-projecting known 3D points."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from slimdepth.data.augment import (
    CenterCrop,
    ColorJitter,
    Compose,
    GaussianBlur,
    GaussianNoise,
    RandomConvolution,
    RandomCrop,
    RandomGamma,
    RandomGrayscale,
    RandomHorizontalFlip,
    RandomRotation,
    RandomScale,
    RCrop,
    Resize,
    RGBMultiplier,
    Sharpen,
    available_augmentations,
    build_augmentation,
)
from slimdepth.data.sample import check_sample, collate_samples, make_sample
from slimdepth.errors import ConfigError
from slimdepth.geometry import (
    backproject,
    crop_intrinsics,
    flip_intrinsics,
    kitti_like_intrinsics,
    points_to_depth_map,
    project,
    scale_intrinsics,
)

H, W = 48, 64


def scene_sample(h: int = H, w: int = W, K: np.ndarray | None = None, n: int = 600, seed: int = 0) -> dict:
    """Sparse depth from projecting random 3D points with a known K, plus image, seg and lidar."""
    rng = np.random.default_rng(seed)
    K = kitti_like_intrinsics(h, w) if K is None else K
    z = rng.uniform(2.0, 60.0, n)
    u, v = rng.uniform(-0.5, w - 0.5, n), rng.uniform(-0.5, h - 0.5, n)
    rays = np.linalg.solve(K, np.stack([u, v, np.ones(n)]))
    points = (rays * z).T
    uv, zz = project(points, K)
    depth = points_to_depth_map(uv[:, 0], uv[:, 1], zz, h, w)
    seg = rng.integers(0, 19, (h, w))
    seg[rng.random((h, w)) < 0.1] = 255
    return make_sample(
        rng.random((h, w, 3)).astype(np.float32),
        depth=depth,
        seg=seg,
        K=K,
        lidar_depth=depth * (rng.random((h, w)) < 0.5),
        meta={"name": f"scene{seed}"},
    )


def undo_camera(points: np.ndarray, entries: list[dict]) -> np.ndarray:
    """Map points from the augmented camera frame back to the source frame (square pixels)."""
    pts = points.copy()
    for e in reversed(entries):
        if e["op"] == "hflip":
            pts[:, 0] = -pts[:, 0]
        elif e["op"] == "rotate":  # output frame = L @ source frame in (x, y)
            t = math.radians(e["degrees"])
            lin = np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]])
            pts[:, :2] = pts[:, :2] @ lin  # L^T applied to each row
        elif e["op"] == "scale":
            pts[:, 2] *= e["s"]
    return pts


def z_factor(entries: list[dict]) -> float:
    return float(np.prod([e["s"] for e in entries if e["op"] == "scale"]))


def assert_reprojects(src: dict, out: dict, key: str = "depth", undo=undo_camera, tol: float = 2e-3) -> None:
    """Every valid output pixel, back-projected with the new K and depth, lands (through the
    original K) within half a pixel of a source pixel that carried that very point."""
    out_depth = out[key][0].numpy()
    pts, _ = backproject(out_depth, out["K"].double().numpy())
    assert len(pts) >= 10, "too few valid pixels for a meaningful check"
    entries = out["meta"]["augment"]
    uv, _ = project(undo(pts, entries), src["K"].double().numpy())
    expected = out_depth[out_depth > 0].astype(np.float64) * z_factor(entries)  # backproject's order
    src_depth = src[key][0].numpy()
    h, w = src_depth.shape
    found = np.zeros(len(pts), dtype=bool)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            i, j = np.round(uv[:, 1]).astype(int) + di, np.round(uv[:, 0]).astype(int) + dj
            ok = (i >= 0) & (i < h) & (j >= 0) & (j < w)
            ok &= (np.abs(uv[:, 1] - i) <= 0.5 + tol) & (np.abs(uv[:, 0] - j) <= 0.5 + tol)
            carried = src_depth[i.clip(0, h - 1), j.clip(0, w - 1)]
            found |= ok & np.isclose(carried, expected, rtol=1e-5, atol=0)
    assert found.all(), f"{(~found).sum()} of {len(found)} valid pixels do not reproject onto their source point"


def redo_camera(points: np.ndarray, entries: list[dict]) -> np.ndarray:
    """Map points from the source camera frame into the augmented one (inverse of undo_camera)."""
    pts = points.copy()
    for e in entries:
        if e["op"] == "hflip":
            pts[:, 0] = -pts[:, 0]
        elif e["op"] == "rotate":  # output frame = L @ source frame in (x, y)
            t = math.radians(e["degrees"])
            lin = np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]])
            pts[:, :2] = pts[:, :2] @ lin.T
        elif e["op"] == "scale":
            pts[:, 2] /= e["s"]
    return pts


def assert_splatted(src: dict, out: dict, key: str, all_points: bool = True) -> None:
    """A sparse map is resampled as a point set: every source point, moved into the output camera
    and rounded to its nearest pixel, lands where the output has it, the nearest one winning.

    A point exactly between two pixels (integer zooms put pixel centres on pixel borders) may
    land on either. ``all_points=False`` (fused pipelines, which also drop points leaving an
    intermediate crop) skips the check that no point was lost."""
    entries = out["meta"]["augment"]
    pts, _ = backproject(src[key][0].numpy(), src["K"].double().numpy())
    uv, z = project(redo_camera(pts, entries), out["K"].double().numpy())
    oh, ow = out[key].shape[-2:]
    eps = 1e-3  # the output K is float32: positions carry ~1e-4 px of rounding
    lo = np.floor(uv + 0.5 - eps).astype(int)
    hi = np.floor(uv + 0.5 + eps).astype(int)
    sure = (lo == hi).all(axis=1)
    inside = (hi[:, 0] >= 0) & (lo[:, 0] < ow) & (hi[:, 1] >= 0) & (lo[:, 1] < oh)
    got = out[key][0].numpy().astype(np.float64)
    valid = got > 0
    assert valid.sum() >= 10, "too few valid pixels for a meaningful check"
    # points that certainly land on a pixel: the output there is at most their nearest depth
    on = sure & inside & (lo[:, 0] < ow) & (lo[:, 1] < oh) & (lo >= 0).all(axis=1)
    nearest = np.full((oh, ow), np.inf)
    np.minimum.at(nearest, (lo[on, 1], lo[on, 0]), z[on])
    assert (got[valid] <= nearest[valid] * (1 + 1e-5)).all(), "a nearer point was hidden"
    if all_points:
        assert valid[np.isfinite(nearest)].all(), "points were lost"
    # every valid output pixel holds the depth of a point that may land on it
    cands = {}
    for i in np.flatnonzero(inside):
        for r in {lo[i, 1], hi[i, 1]}:
            for c in {lo[i, 0], hi[i, 0]}:
                cands.setdefault((r, c), []).append(z[i])
    for r, c in zip(*np.nonzero(valid)):
        assert np.isclose(cands.get((r, c), [np.nan]), got[r, c], rtol=1e-5).any(), f"pixel {r},{c} invented"


GEOMETRIC_OPS = [
    RandomCrop((32, 40)),
    CenterCrop((30, 50)),
    Resize((96, 128)),
    Resize((24, 40)),
    RCrop(sizes=((24, 32), (36, 48), (48, 64), (64, 64))),
    RCrop(sizes=((24, 40),), out_size=(36, 48)),
    RandomHorizontalFlip(1.0),
    RandomRotation(15),
    RandomRotation((90, 90)),
    RandomScale((1.0, 2.0)),
    RandomScale((0.6, 0.9)),
    Compose([RCrop(sizes=((36, 48),)), RandomHorizontalFlip(1.0), RandomRotation(15), RandomScale()]),
]


@pytest.mark.parametrize("op", GEOMETRIC_OPS, ids=repr)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_geometric_ops_keep_points_where_they_belong(op, seed):
    src = scene_sample(seed=seed)
    before = copy.deepcopy(src)
    out = op(src, generator=seed)
    check_sample(out)
    assert all(torch.equal(before[k], src[k]) for k in ("image", "depth", "seg", "K")) and before["meta"] == src["meta"]
    fused = isinstance(op, Compose)
    assert_splatted(src, out, "depth", all_points=not fused)
    assert_splatted(src, out, "lidar_depth", all_points=not fused)
    # no point is ever duplicated: a resampled point set never grows
    assert (out["depth"] > 0).sum() <= (src["depth"] > 0).sum()


def test_dense_depth_is_gathered_and_keeps_points_where_they_belong():
    src = scene_sample()
    dense = src["depth"].clone()
    dense[dense == 0] = 30.0  # every pixel valid: a dense map, resampled by nearest neighbour
    src = {**src, "depth": dense, "meta": {**src["meta"], "sparse": ["lidar_depth"]}}
    assert (Resize((96, 128))(src)["depth"] > 0).all()  # gathered: upsampling fills every pixel
    for op in (Resize((96, 128)), Resize((24, 40)), RandomRotation(15), RandomScale((0.6, 0.9))):
        assert_reprojects(src, op(src, generator=1), "depth")


def test_sparsity_is_decided_before_augmentation_pads_the_maps():
    src = scene_sample()
    assert src["meta"]["sparse"] == ["depth", "lidar_depth"]  # ~19% and ~10% valid
    dense = make_sample(np.zeros((H, W, 3), np.float32), depth=np.full((H, W), 5.0, np.float32))
    assert dense["meta"]["sparse"] == []
    zoomed = RandomScale((0.5, 0.5))(dense)  # 3/4 padding: mostly zeros now, but still a dense map
    assert (zoomed["depth"] > 0).float().mean() < 0.5 and zoomed["meta"]["sparse"] == []
    again = Resize((2 * H, 2 * W))(zoomed)
    assert (again["depth"] > 0).sum() == 4 * (zoomed["depth"] > 0).sum()  # gathered, not splatted


def test_intrinsics_match_the_geometry_helpers():
    src = scene_sample()
    K = src["K"].double().numpy()
    out = Resize((96, 100))(src)
    np.testing.assert_allclose(out["K"].numpy(), scale_intrinsics(K, 100 / W, 96 / H), rtol=1e-6)
    out = RandomCrop((20, 30))(src, generator=3)
    y0, x0, _, _ = out["meta"]["augment"][0]["box"]
    np.testing.assert_allclose(out["K"].numpy(), crop_intrinsics(K, x0, y0), rtol=1e-6)
    assert torch.equal(out["depth"], src["depth"][:, y0 : y0 + 20, x0 : x0 + 30])
    assert torch.equal(out["image"], src["image"][:, y0 : y0 + 20, x0 : x0 + 30])
    out = RandomHorizontalFlip(1.0)(src)
    np.testing.assert_allclose(out["K"].numpy(), flip_intrinsics(K, W), rtol=1e-6)
    assert torch.equal(out["depth"], src["depth"].flip(-1))


def test_hflip_twice_is_exactly_the_identity():
    skewed = kitti_like_intrinsics(40, 80)
    skewed[0, 1] = 0.75
    src = scene_sample(40, 80, K=skewed)
    flip = RandomHorizontalFlip(1.0)
    twice = flip(flip(src))
    for key in ("image", "depth", "lidar_depth", "seg", "K"):
        assert torch.equal(twice[key], src[key]), key
    assert [e["op"] for e in twice["meta"]["augment"]] == ["hflip", "hflip"]
    assert torch.equal(Compose([flip, flip])(src)["image"], src["image"])
    assert not torch.equal(flip(src)["image"], src["image"])
    assert RandomHorizontalFlip(0.0)(src)["image"] is src["image"]


def test_hflip_twice_on_k_is_exact_up_to_float32_rounding():
    # cx = 30.9 and W-1-cx = 32.1 straddle a power of two, so float32 cannot hold both exactly
    src = scene_sample()
    flip = RandomHorizontalFlip(1.0)
    K, K2 = src["K"], flip(flip(src))["K"]
    assert torch.equal(K2[:, :2], K[:, :2])
    assert (K2 - K).abs().max() <= torch.finfo(torch.float32).eps * 64


def test_rotation_by_zero_is_the_identity():
    src = scene_sample()
    out = RandomRotation((0, 0))(src)
    for key in ("image", "depth", "seg", "K"):
        assert torch.equal(out[key], src[key]), key


def test_rotation_by_90_on_a_square_image_matches_rot90():
    src = scene_sample(32, 32)
    out = RandomRotation((90, 90))(src)
    for key in ("depth", "image"):
        assert torch.equal(out[key], torch.rot90(src[key], 1, dims=(-2, -1))), key
    assert torch.equal(out["seg"], torch.rot90(src["seg"], 1, dims=(-2, -1)))
    K, K2 = src["K"].double(), out["K"].double()
    c = 15.5
    torch.testing.assert_close(K2[0, 2], c + (K[1, 2] - c))  # L = [[0, 1], [-1, 0]]
    torch.testing.assert_close(K2[1, 2], c - (K[0, 2] - c))
    torch.testing.assert_close(K2[:2, :2], K[:2, :2])


def test_rotation_pads_with_invalid_values():
    rng = np.random.default_rng(0)
    src = make_sample(
        rng.random((H, W, 3)).astype(np.float32) * 0.5 + 0.5,
        depth=rng.uniform(1, 10, (H, W)).astype(np.float32),
        seg=rng.integers(0, 5, (H, W)),
        K=kitti_like_intrinsics(H, W),
    )
    out = RandomRotation((40, 40))(src)
    corners = (slice(0, 3), slice(0, 3))
    assert (out["depth"][0][corners] == 0).all()
    assert (out["seg"][corners] == 255).all()
    assert (out["image"][:, 0, 0] == 0).all()
    inner = (slice(H // 2 - 5, H // 2 + 5), slice(W // 2 - 5, W // 2 + 5))
    assert (out["depth"][0][inner] > 0).all() and (out["seg"][inner] != 255).all()


def test_rotation_with_non_square_pixels_is_an_exact_rolled_camera():
    K = kitti_like_intrinsics(H, W)
    K[1, 1] *= 1.3
    src = scene_sample(K=K, seed=4)
    out = RandomRotation((20, 20))(src)
    K2 = out["K"].double().numpy()
    assert K2[1, 0] == 0 and K2[0, 1] != 0  # upper triangular, with a skew
    t, c = math.radians(20), np.array([(W - 1) / 2, (H - 1) / 2])
    lin = np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]])
    M = np.eye(3)
    M[:2, :2], M[:2, 2] = lin, c - lin @ c
    Q = np.linalg.solve(K2, M @ K)  # camera roll: K2 @ Q == M @ K
    np.testing.assert_allclose(Q @ Q.T, np.eye(3), atol=1e-6)
    np.testing.assert_allclose(Q[2], [0, 0, 1], atol=1e-9)
    assert np.linalg.det(Q) > 0
    # the sparse map is splatted: each point lands at its rounded position in the rolled camera
    pts, _ = backproject(src["depth"][0].numpy(), K)
    uv, z = project(pts @ Q.T, K2)
    col, row = np.floor(uv[:, 0] + 0.5).astype(int), np.floor(uv[:, 1] + 0.5).astype(int)
    inside = (col >= 0) & (col < W) & (row >= 0) & (row < H)
    expected = np.full((H, W), np.inf)
    np.minimum.at(expected, (row[inside], col[inside]), z[inside])
    got = out["depth"][0].numpy().astype(np.float64)
    assert ((got > 0) == np.isfinite(expected)).all()
    np.testing.assert_allclose(got[got > 0], expected[got > 0], rtol=1e-5)


def test_random_scale_divides_depth_and_keeps_focal():
    src = scene_sample(seed=5)
    out = RandomScale((1.5, 1.5))(src, generator=1)
    entry = out["meta"]["augment"][0]
    s, (y0, x0) = entry["s"], entry["offset"]
    K, K2 = src["K"].double().numpy(), out["K"].double().numpy()
    np.testing.assert_allclose(K2[:2, :2], K[:2, :2], rtol=1e-6)  # focal (and skew) unchanged
    np.testing.assert_allclose(K2[0, 2], s * (K[0, 2] + 0.5) - 0.5 - x0, rtol=1e-6)
    np.testing.assert_allclose(K2[1, 2], s * (K[1, 2] + 0.5) - 0.5 - y0, rtol=1e-6)
    # back-projection keeps X and Y and divides Z by s: undo only Z, no other correction
    assert_reprojects(src, out, undo=lambda pts, _: pts * [1.0, 1.0, s])
    values = out["depth"][out["depth"] > 0].double()
    src_values = src["depth"][src["depth"] > 0].double() / s
    closest = (values[:, None] - src_values[None]).abs().min(dim=1).values
    assert (closest <= 1e-5 * values).all()  # every output depth is an input depth / s


def test_random_scale_default_draws_as_before():
    """The ``about`` and ``p`` options leave the default op's random stream alone: pinned values
    drawn with the code before they existed (commit c12dfbc)."""
    out = Compose([RandomHorizontalFlip(0.5), RandomScale((1.0, 2.0))])(scene_sample(seed=3), generator=11)
    entry = out["meta"]["augment"][1]
    assert out["meta"]["augment"][0] == {"op": "hflip"}
    assert entry["s"] == pytest.approx(1.8852923701860038, abs=1e-12)
    np.testing.assert_allclose(entry["offset"], [28.536762373345752, 37.659883712210814], atol=1e-9)
    assert float(out["image"].sum()) == pytest.approx(4590.97021484375, rel=1e-6)
    assert float(out["depth"].sum()) == pytest.approx(2227.409912109375, rel=1e-6)


@pytest.mark.parametrize("s", [1.5, 2.0, 0.75])
def test_scale_about_principal_keeps_K_and_divides_depth(s):
    src = scene_sample(seed=6)
    out = RandomScale((s, s), about="principal")(src, generator=0)
    entry = out["meta"]["augment"][0]
    K = src["K"].double().numpy()
    np.testing.assert_allclose(out["K"].double().numpy(), K, rtol=1e-6, atol=1e-9)  # K exactly as before
    np.testing.assert_allclose(entry["point"], [K[1, 2], K[0, 2]])
    assert entry["s"] == s and "offset" not in entry
    if s > 1:
        assert_reprojects(src, out, undo=lambda pts, _: pts * [1.0, 1.0, s])  # X, Y kept, Z / s
    else:  # shrinking moves each point of the sparse map to its nearest pixel
        assert_splatted(src, out, "depth")


def test_scale_about_principal_pixels_and_horizon():
    """Dense maps: output pixel (u', v') reads source pixel cx + (u' - cx) / s (exact where that is
    an integer), depth / s; rows of a flat road keep the depth their row gives."""
    h, w = 40, 60
    K = np.array([[50.0, 0.0, 30.0], [0.0, 50.0, 14.0], [0.0, 0.0, 1.0]])
    v = np.arange(h, dtype=np.float64)[:, None].repeat(w, 1)
    road = np.where(v > K[1, 2], K[1, 1] * 1.65 / np.maximum(v - K[1, 2], 1e-9), 0.0)  # flat road below the horizon
    rng = np.random.default_rng(0)
    sample = make_sample(rng.random((h, w, 3)).astype(np.float32), depth=road.astype(np.float32), K=K,
                         seg=rng.integers(0, 19, (h, w)))
    out = RandomScale((2.0, 2.0), about="principal")(sample)
    cx, cy = K[0, 2], K[1, 2]
    for vo in range(0, h, 2):  # (vo - cy) even: an integer source row
        for uo in range(0, w, 2):
            us, vs = int(cx + (uo - cx) / 2), int(cy + (vo - cy) / 2)
            assert out["seg"][vo, uo] == sample["seg"][vs, us]
            assert out["depth"][0, vo, uo] == pytest.approx(float(sample["depth"][0, vs, us]) / 2, rel=1e-6)
            torch.testing.assert_close(out["image"][:, vo, uo], sample["image"][:, vs, us])
    # every row reads the nearest source row, and its depth, halved, is the flat road's at the
    # exact source position: the road keeps the depth its row gives, up to that rounding
    got = out["depth"][0].double().numpy()
    vo = np.arange(h, dtype=np.float64)
    vs = np.floor(cy + (vo - cy) / 2 + 0.5)
    below = vs > cy
    want = K[1, 1] * 1.65 / (vs[below] - cy) / 2
    np.testing.assert_allclose(got[below], want[:, None].repeat(w, 1), rtol=1e-6)
    exact = below & ((vo - cy) % 2 == 0)
    np.testing.assert_allclose(got[exact], road[exact], rtol=1e-6)  # the flat road of the row itself
    assert (got[~below] == 0).all()  # nothing of the road moves above the horizon


def test_scale_about_principal_after_other_ops_uses_their_K():
    """In a pipeline the principal point is the one the earlier (fused) ops left."""
    src = scene_sample(seed=8)
    pipeline = Compose([RandomCrop((36, 40)), RandomHorizontalFlip(1.0), RandomScale((1.7, 1.7), about="principal")])
    out = pipeline(src, generator=4)
    before = Compose([RandomCrop((36, 40)), RandomHorizontalFlip(1.0)])(src, generator=4)
    np.testing.assert_allclose(out["K"].numpy(), before["K"].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["meta"]["augment"][2]["point"], [before["K"][1, 2], before["K"][0, 2]], rtol=1e-6)
    assert_reprojects(src, out)  # the crop, the flip and Z / 1.7, undone


@pytest.mark.parametrize("before, fy", [
    ([RandomRotation((20, 20))], 55.0),                 # non-square pixels rolled: a skewed K
    ([RandomRotation((20, 20))], 40.0),
    ([Resize((30, 90))], 40.0),                         # focal lengths scaled unequally
    ([RandomScale((1.4, 1.4))], 55.0),                  # a depth factor already pending
    ([RCrop(sizes=((36, 48),)), RandomHorizontalFlip(1.0), RandomRotation((-12, -12))], 40.0),
])
def test_scale_about_principal_fused_equals_one_by_one(before, fy):
    """Planned inside a fused Compose, the principal point is the one the pending ops will leave
    (K, the depth factor and all): fused and one-by-one agree, and K is what it was before the op."""
    K = np.array([[40.0, 0.0, 27.0], [0.0, fy, 20.0], [0.0, 0.0, 1.0]])  # off-centre principal point
    src = scene_sample(K=K, seed=9)
    ops = [*before, RandomScale((1.8, 1.8), about="principal")]
    fused = Compose(ops)(src, generator=3)
    g = torch.Generator().manual_seed(3)
    sequential = src
    for op in ops:
        sequential = op(sequential, g)
    prior = Compose(before)(src, generator=3)
    torch.testing.assert_close(fused["K"], prior["K"], atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(fused["K"], sequential["K"], atol=1e-4, rtol=1e-5)
    np.testing.assert_allclose(fused["meta"]["augment"][-1]["point"], sequential["meta"]["augment"][-1]["point"], atol=1e-4)
    assert fused["meta"]["augment"][-1]["point"] == pytest.approx([float(prior["K"][1, 2]), float(prior["K"][0, 2])], abs=1e-4)
    if fy == K[0, 0]:  # undo_camera turns rolls back for square pixels only
        assert_reprojects(src, fused)  # every earlier op and Z / 1.8, undone through the original K


def test_scale_about_principal_without_K_after_a_crop_uses_the_cropped_centre():
    image = torch.rand(3, 20, 30, generator=torch.Generator().manual_seed(2))
    out = Compose([CenterCrop((11, 15)), RandomScale((2.0, 2.0), about="principal")])({"image": image})
    assert out["meta"]["augment"][-1]["point"] == [5.0, 7.0]
    torch.testing.assert_close(out["image"][:, 5, 7], image[:, 4 + 5, 7 + 7])  # the crop's centre stays put


def test_scale_about_principal_without_K_uses_the_centre():
    image = torch.rand(3, 9, 13, generator=torch.Generator().manual_seed(1))
    out = RandomScale((3.0, 3.0), about="principal")({"image": image})
    assert out["meta"]["augment"][0]["point"] == [4.0, 6.0]
    torch.testing.assert_close(out["image"][:, 4, 6], image[:, 4, 6])  # the centre stays put
    torch.testing.assert_close(out["image"][:, 1, 3], image[:, 3, 5])  # (1, 3) reads (4 - 1, 6 - 1)


def test_scale_p_fires_at_its_rate_and_zero_never():
    src = scene_sample(seed=2)
    fired = [bool(RandomScale(about="principal", p=0.3)(src, generator=g)["meta"]["augment"]) for g in range(400)]
    assert 0.24 < np.mean(fired) < 0.36
    never = RandomScale(p=0.0)(src, generator=5)
    assert never["meta"]["augment"] == [] and torch.equal(never["depth"], src["depth"])
    windows = [RandomScale(p=0.6)(src, generator=g)["meta"]["augment"] for g in range(300)]
    assert 0.52 < np.mean([bool(w) for w in windows]) < 0.68
    assert all("offset" in w[0] for w in windows if w)  # the default random window when it fires


@settings(max_examples=80, deadline=None)
@given(about=st.one_of(
    st.text(max_size=12).filter(lambda a: a not in ("random", "principal")),
    st.sampled_from(["Principal", " principal", "centre", "random "]),
    st.integers(), st.floats(allow_nan=True), st.none(), st.booleans(),
    st.lists(st.text(max_size=3), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
))
def test_scale_about_refuses_every_other_value(about):
    with pytest.raises(ConfigError, match="scale about must be 'random' or 'principal'"):
        build_augmentation([{"op": "scale", "about": about}])


def test_zoom_out_pads_with_invalid():
    src = scene_sample()
    out = RandomScale((0.5, 0.5))(src, generator=0)
    padding = (out["seg"] == 255) & (out["depth"][0] == 0) & (out["image"] == 0).all(0)
    assert padding.float().mean() >= 0.7  # 3/4 of the canvas lies outside the shrunken picture
    assert (out["depth"] > 0).sum() <= (src["depth"] > 0).sum()
    assert_splatted(src, out, "depth")


@pytest.mark.parametrize("size", [(96, 128), (20, 28), (48, 64)])
def test_resize_image_matches_interpolate(size):
    src = scene_sample()
    out = Resize(size)(src)
    expected = torch.nn.functional.interpolate(src["image"][None], size=size, mode="bilinear", align_corners=False)
    torch.testing.assert_close(out["image"], expected[0], atol=1e-5, rtol=0)


def test_rotated_image_keeps_its_levels_and_blacks_out_the_outside():
    src = {"image": torch.full((3, H, W), 0.8), "meta": {}}
    out = RandomRotation((10, 10))(src)
    inside = out["image"] > 0
    torch.testing.assert_close(out["image"][inside], torch.full_like(out["image"][inside], 0.8))  # no border fade
    assert not inside[:, 0, 0].any() and inside.float().mean() > 0.8


def test_compose_fuses_geometry_like_applying_ops_one_by_one():
    src = scene_sample(seed=3)
    integer_ops = [RandomCrop((40, 50)), RandomHorizontalFlip(1.0), CenterCrop((30, 30)), RandomRotation((90, 90))]
    fused = Compose(integer_ops)(src, generator=9)
    g = torch.Generator().manual_seed(9)
    sequential = src
    for op in integer_ops:
        sequential = op(sequential, g)
    for key in ("image", "depth", "lidar_depth", "seg", "K"):
        assert torch.equal(fused[key], sequential[key]), key
    assert fused["meta"] == sequential["meta"]

    # with a real rotation, pixels brought in from outside the crop stay invalid when fused
    dense = make_sample(np.ones((H, W, 3), np.float32), depth=np.full((H, W), 5.0, np.float32), K=src["K"].numpy())
    ops = [CenterCrop((30, 40)), RandomRotation((30, 30)), Resize((45, 60))]
    fused = Compose(ops)(dense)
    sequential = dense
    for op in ops:
        sequential = op(sequential)
    torch.testing.assert_close(fused["K"], sequential["K"])
    mismatch = (fused["depth"] > 0) != (sequential["depth"] > 0)
    assert mismatch.float().mean() < 0.02  # only boundary pixels may round differently
    assert (fused["depth"] == 0).float().mean() > 0.15


# --------------------------------------------------------------------------- property test

OP_CONFIGS = st.one_of(
    st.builds(lambda p: {"op": "hflip", "p": p}, st.floats(0, 1)),
    st.builds(lambda d: {"op": "rotate", "degrees": d}, st.floats(0, 180)),
    st.builds(lambda a, b: {"op": "scale", "scale": sorted((a, b))}, st.floats(0.5, 3), st.floats(0.5, 3)),
    st.builds(lambda a, b, p: {"op": "scale", "scale": sorted((a, b)), "about": "principal", "p": p},
              st.floats(0.5, 3), st.floats(0.5, 3), st.floats(0, 1)),
    st.builds(lambda h, w: {"op": "random_crop", "size": [h, w]}, st.integers(1, 12), st.integers(1, 12)),
    st.builds(lambda h, w: {"op": "center_crop", "size": [h, w]}, st.integers(1, 12), st.integers(1, 12)),
    st.builds(lambda h, w: {"op": "resize", "size": [h, w]}, st.integers(1, 40), st.integers(1, 40)),
    st.builds(lambda h, w: {"op": "rcrop", "sizes": [[h, w], [12, 12]]}, st.integers(1, 12), st.integers(1, 12)),
    st.just({"op": "color_jitter", "brightness": 0.9, "contrast": 0.9, "saturation": 0.9}),
    st.just({"op": "rgb_multiplier"}),
)


@settings(max_examples=60, deadline=None)
@given(
    config=st.lists(OP_CONFIGS, min_size=1, max_size=4),
    size=st.tuples(st.integers(12, 24), st.integers(12, 24)),
    seed=st.integers(0, 2**31 - 1),
)
def test_no_op_creates_valid_pixels(config, size, seed):
    """Each valid output depth is some valid input depth (divided by the zoom), and for a dense map
    the label at that pixel is the label of that same source pixel: nothing is interpolated or
    invented. (A sparse map is splatted point by point, see test_geometric_ops_keep_points...)"""
    h, w = size
    rng = np.random.default_rng(seed)
    ids = rng.permutation(h * w).reshape(h, w)
    depth = (1.0 + ids * 0.01).astype(np.float32) * (rng.random((h, w)) < 0.6)
    src = make_sample(rng.random((h, w, 3)).astype(np.float32), depth=depth, seg=ids % 250, K=kitti_like_intrinsics(h, w))
    try:
        out = build_augmentation(config)(src, generator=seed)
    except ConfigError as err:  # a crop after a shrinking op may no longer fit: not this test's topic
        assume("larger than the image" not in str(err) and "fits the image" not in str(err))
        raise
    check_sample(out)
    assert 0.0 <= out["image"].min() and out["image"].max() <= 1.0
    assert torch.isfinite(out["K"]).all() and out["K"][0, 0] > 0 and out["K"][1, 1] > 0 and out["K"][1, 0] == 0
    valid = out["depth"][0] > 0
    values = out["depth"][0][valid].double() * z_factor(out["meta"]["augment"])
    src_ids = torch.round((values - 1.0) / 0.01).long()
    assert torch.allclose(1.0 + src_ids.double() * 0.01, values, rtol=1e-5)  # a real input value
    flat_depth, flat_ids = src["depth"][0].flatten(), torch.from_numpy(ids).flatten()
    at = torch.argsort(flat_ids)[src_ids]  # where that id sat in the source
    assert (flat_depth[at] > 0).all()  # ... and that source pixel was valid
    if "depth" not in src["meta"]["sparse"]:  # gathered: depth and label come from one source pixel
        assert torch.equal(out["seg"][valid], src_ids % 250)
    labels = out["seg"][out["seg"] != 255]
    assert (labels < 250).all()
    geometric = [e for e in out["meta"]["augment"] if e["op"] in ("hflip", "random_crop", "center_crop")]
    if len(geometric) == len(out["meta"]["augment"]):  # integer ops never duplicate a pixel
        assert len(set(src_ids.tolist())) == len(src_ids)


# --------------------------------------------------------------------------- photometric ops


@pytest.mark.parametrize(
    "op",
    [
        ColorJitter(),
        ColorJitter(3.0, 3.0, 3.0),
        RGBMultiplier(),
        RGBMultiplier(0.0, 4.0, per_channel=False),
        RandomGrayscale(1.0),
        GaussianBlur(1.0),
        RandomConvolution(1.0),
        RandomGamma(1.0),
        RandomGamma(1.0, gamma=(0.3, 3.0), grid=(3, 4)),
    ],
    ids=repr,
)
def test_photometric_ops_touch_only_the_image(op):
    src = scene_sample()
    src["right_image"] = src["image"].clone()
    before = copy.deepcopy(src)
    out = op(src, generator=7)
    for key in ("depth", "lidar_depth", "seg", "K"):
        assert torch.equal(out[key], src[key]), key
    assert 0.0 <= out["image"].min() and out["image"].max() <= 1.0
    assert not torch.equal(out["image"], src["image"])
    assert torch.equal(out["right_image"], out["image"])  # same factors on both views
    assert before["meta"] == src["meta"]  # the input sample is left alone
    for key in ("image", "right_image", "depth", "seg", "K"):
        assert torch.equal(before[key], src[key]), key


def test_rgb_multiplier_and_jitter_values():
    img = torch.full((3, 4, 4), 0.5)
    sample = {"image": img, "meta": {}}
    out = RGBMultiplier(0.8, 0.8)(sample)
    torch.testing.assert_close(out["image"], torch.full((3, 4, 4), 0.4))
    out = ColorJitter(0.5, 0.0, 0.0)(sample, generator=0)
    b = out["meta"]["augment"][0]["brightness"]
    assert 0.5 <= b <= 1.5 and out["meta"]["augment"][0]["contrast"] == 1.0
    torch.testing.assert_close(out["image"], (img * b).clamp(0, 1))


def test_grayscale_is_the_luma_in_every_channel_and_p_zero_is_the_identity():
    src = scene_sample()
    out = RandomGrayscale(1.0)(src, generator=0)
    luma = 0.299 * src["image"][0] + 0.587 * src["image"][1] + 0.114 * src["image"][2]
    for c in range(3):
        torch.testing.assert_close(out["image"][c], luma)
    assert out["meta"]["augment"] == [{"op": "grayscale"}]
    assert RandomGrayscale(0.0)(src, generator=0) is src


def test_blur_matches_scipy_and_keeps_a_flat_image():
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(3)
    img = rng.random((3, 20, 31)).astype(np.float32)
    out = GaussianBlur(1.0, sigma=(1.0, 1.0))({"image": torch.from_numpy(img)}, generator=0)
    # radius ceil(3 sigma) = 3 taps each side, torch's "reflect" padding is scipy's "mirror"
    ref = np.stack([ndimage.gaussian_filter(ch.astype(np.float64), 1.0, mode="mirror", truncate=3.0) for ch in img])
    np.testing.assert_allclose(out["image"].numpy(), ref, atol=1e-5)
    flat = {"image": torch.full((3, 4, 5), 0.3)}
    torch.testing.assert_close(GaussianBlur(1.0, sigma=(2.0, 2.0))(flat, generator=1)["image"], flat["image"])
    tiny = rng.random((3, 4, 5)).astype(np.float32)  # smaller than the kernel: replicated borders
    out = GaussianBlur(1.0, sigma=(2.0, 2.0))({"image": torch.from_numpy(tiny)}, generator=1)["image"]
    ref = np.stack([ndimage.gaussian_filter(ch.astype(np.float64), 2.0, mode="nearest", truncate=3.0) for ch in tiny])
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-5)


def test_sharpen_is_an_unsharp_mask_against_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(4)
    img = (0.25 + 0.5 * rng.random((3, 20, 31))).astype(np.float32)
    src = {"image": torch.from_numpy(img), "depth": torch.ones(1, 20, 31)}
    out = Sharpen(1.0, amount=(1.5, 1.5), sigma=(1.0, 1.0))(src, generator=0)
    blurred = np.stack([ndimage.gaussian_filter(ch.astype(np.float64), 1.0, mode="mirror", truncate=3.0) for ch in img])
    ref = np.clip(img + 1.5 * (img - blurred), 0.0, 1.0)
    np.testing.assert_allclose(out["image"].numpy(), ref, atol=1e-5)
    assert (ref == 0).any() or (ref == 1).any()  # the clamp is exercised
    assert out["depth"] is src["depth"] and out["meta"]["augment"] == [{"op": "sharpen", "amount": 1.5, "sigma": 1.0}]
    # fine detail grows by about (1 + amount) times; a flat image and amount 0 stay as they were
    fine = lambda a: np.abs(a - ndimage.gaussian_filter(a, (0, 1, 1))).mean()  # noqa: E731
    mild = Sharpen(1.0, amount=(0.5, 0.5), sigma=(1.0, 1.0))(src, generator=0)["image"].numpy().astype(np.float64)
    assert 1.3 < fine(mild) / fine(img.astype(np.float64)) < 1.6
    flat = {"image": torch.full((3, 6, 7), 0.4)}
    torch.testing.assert_close(Sharpen(1.0)(flat, generator=2)["image"], flat["image"])
    torch.testing.assert_close(Sharpen(1.0, amount=(0.0, 0.0))(src, generator=2)["image"], src["image"])
    assert Sharpen(0.0)(src, generator=0) is src
    draws = [Sharpen(1.0)(src, generator=g)["meta"]["augment"][0] for g in range(30)]
    assert all(0.5 <= d["amount"] <= 3.0 and 0.5 <= d["sigma"] <= 2.0 for d in draws)


def test_noise_has_the_drawn_std_and_is_fixed_by_the_seed():
    src = {"image": torch.full((3, 64, 64), 0.5), "right_image": torch.full((3, 64, 64), 0.5)}
    op = GaussianNoise(1.0, std=(0.02, 0.04))
    out = op(src, generator=5)
    std = out["meta"]["augment"][0]["std"]
    assert 0.02 <= std <= 0.04
    diff = out["image"] - 0.5
    assert abs(diff.mean().item()) < 0.003 and abs(diff.std().item() - std) < 0.05 * std
    assert not torch.equal(out["image"], out["right_image"])  # two sensors, two grains
    assert torch.equal(op(src, generator=5)["image"], out["image"])
    assert not torch.equal(op(src, generator=6)["image"], out["image"])


def test_random_conv_keeps_the_statistics_and_the_regions():
    # two flat regions with an edge between: a 1x1 random kernel is a per-pixel colour map, so
    # each region stays flat and the edge stays where it was; the channel mean and std are kept
    img = torch.empty(3, 16, 16)
    img[:, :, :8] = torch.tensor([0.3, 0.5, 0.4]).view(3, 1, 1)
    img[:, :, 8:] = torch.tensor([0.6, 0.45, 0.55]).view(3, 1, 1)
    out = RandomConvolution(1.0, kernel_sizes=(1,), mix=(0.0, 0.0))({"image": img}, generator=2)["image"]
    for half in (out[:, :, :8], out[:, :, 8:]):
        assert torch.allclose(half, half[:, :1, :1].expand_as(half), atol=1e-6)
    torch.testing.assert_close(out.mean((1, 2)), img.mean((1, 2)), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std((1, 2)), img.std((1, 2)), atol=1e-5, rtol=0)
    assert not torch.allclose(out, img, atol=1e-3)
    # mix 1 keeps the image exactly; a kernel of 5 is reported and fixed by the seed
    same = RandomConvolution(1.0, mix=(1.0, 1.0))({"image": img}, generator=2)["image"]
    torch.testing.assert_close(same, img)
    src = scene_sample()
    a = RandomConvolution(1.0, kernel_sizes=(5,))(src, generator=9)
    assert a["meta"]["augment"][0]["kernel"] == 5
    assert torch.equal(RandomConvolution(1.0, kernel_sizes=(5,))(src, generator=9)["image"], a["image"])
    pixel = {"image": torch.tensor([0.2, 0.5, 0.9]).view(3, 1, 1)}  # one pixel: std 0, no NaN
    torch.testing.assert_close(RandomConvolution(1.0, mix=(0.0, 0.0))(pixel, generator=0)["image"], pixel["image"])


def test_gamma_raises_to_the_drawn_gamma_globally_or_in_a_smooth_field():
    src = scene_sample()
    out = RandomGamma(1.0, gamma=(0.5, 2.0))(src, generator=4)
    (g,) = out["meta"]["augment"][0]["gamma"]
    assert 0.5 <= g <= 2.0
    torch.testing.assert_close(out["image"], src["image"].clamp(0, 1) ** g)
    assert torch.equal(RandomGamma(1.0, gamma=(0.5, 2.0))(src, generator=4)["image"], out["image"])  # the seed fixes it
    assert RandomGamma(0.0)(src, generator=4) is src
    # a 2x3 grid on a flat grey frame: each corner pixel takes its corner cell's gamma exactly, the
    # field is smooth between (bilinear, corners aligned) and every gamma lies in the range
    flat = {"image": torch.full((3, 9, 13), 0.5)}
    out = RandomGamma(1.0, gamma=(0.25, 4.0), grid=(2, 3))(flat, generator=1)
    gammas = torch.tensor(out["meta"]["augment"][0]["gamma"]).view(2, 3)
    assert ((gammas >= 0.25) & (gammas <= 4.0)).all() and gammas.std() > 0
    field = torch.log(out["image"][0]) / math.log(0.5)  # the gamma each pixel got
    for (r, c), (gr, gc) in {(0, 0): (0, 0), (0, -1): (0, 2), (-1, 0): (1, 0), (-1, -1): (1, 2), (0, 6): (0, 1)}.items():
        assert field[r, c].item() == pytest.approx(gammas[gr, gc].item(), rel=1e-4)
    assert field.min() >= gammas.min() - 1e-4 and field.max() <= gammas.max() + 1e-4
    assert torch.allclose(out["image"][0], out["image"][2])  # one field for all three channels
    # log-uniform: over many draws, half the gammas lie below the geometric mean of the range
    draws = [RandomGamma(1.0, gamma=(0.25, 4.0))({"image": torch.full((3, 1, 1), 0.5)}, generator=s)
             ["meta"]["augment"][0]["gamma"][0] for s in range(400)]
    assert 0.42 < np.mean(np.array(draws) < 1.0) < 0.58
    for bad, fragment in (((0.5, 11.0), "at most 10"), ((0.0, 2.0), "> 0"), ((2.0, 1.0), "low <= high")):
        with pytest.raises(ConfigError, match=fragment):
            RandomGamma(1.0, gamma=bad)
    for grid in ((0, 3), (3, 65), (2.5, 3), (3,), "3x8"):
        with pytest.raises(ConfigError, match="gamma grid"):
            RandomGamma(1.0, grid=grid)


PHOTOMETRIC_KEYS = {"grayscale": ["p"], "blur": ["p", "sigma"], "sharpen": ["p", "amount", "sigma"], "noise": ["p", "std"],
                    "random_conv": ["p", "kernel_sizes", "mix"], "gamma": ["p", "gamma", "grid"],
                    "sharpen_far": ["p", "amount", "sigma", "near", "far"]}


@given(
    op_key=st.sampled_from([(op, key) for op, keys in PHOTOMETRIC_KEYS.items() for key in keys]),
    value=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(-3, 40),
        st.text(max_size=3),
        st.lists(st.one_of(st.integers(-2, 40), st.floats(-1.5, 2.5), st.booleans()), max_size=3),
    ),
)
@settings(max_examples=200, deadline=None)
def test_new_photometric_ops_refuse_bad_values_with_a_config_error(op_key, value):
    """Any value of a real parameter is either refused with a one-line ConfigError naming the op,
    or accepted and then applied (p = 1 unless p is the value drawn) without leaving [0, 1]."""
    op, key = op_key
    try:
        pipeline = build_augmentation([{"op": op, "p": 1.0, key: value}])
    except ConfigError as err:
        assert op in str(err) and "\n" not in str(err)
        return
    sample = scene_sample()
    if op == "sharpen_far":  # it needs dense depth: rendered frames
        sample = make_sample(sample["image"].permute(1, 2, 0).numpy(), depth=np.linspace(1, 60, H * W).reshape(H, W))
    out = pipeline(sample, generator=0)
    if key != "p" or value >= 0.97:  # the first draw of generator 0 is 0.970
        assert [e["op"] for e in out["meta"]["augment"]] == [op]
    assert out["image"].shape == (3, H, W) and torch.isfinite(out["image"]).all()
    assert 0.0 <= out["image"].min() and out["image"].max() <= 1.0


# --------------------------------------------------------------------------- keys, meta, seeds


def test_unlabeled_samples_and_stereo_partner():
    rng = np.random.default_rng(0)
    src = make_sample(rng.random((H, W, 3)).astype(np.float32), right_image=rng.random((H, W, 3)).astype(np.float32))
    pipeline = build_augmentation(
        [{"op": "rcrop", "sizes": [[24, 32], [40, 48]], "out_size": "32x48"}, "hflip", "rotate", "scale", "color_jitter", "rgb_multiplier"]
    )
    out = pipeline(src, generator=0)
    check_sample(out)
    assert set(out) == {"image", "meta"}  # right_image dropped by the geometric ops
    assert out["image"].shape == (3, 32, 48)
    assert len(out["meta"]["augment"]) >= 5 and "augment" not in src["meta"]
    assert "right_image" in ColorJitter()(src)
    # the partner is dropped whether or not the flip fires, so samples still batch together
    flip = RandomHorizontalFlip(0.5)
    batch = collate_samples([flip(src, generator=i) for i in range(6)])
    assert "right_image" not in batch


def test_same_seed_same_output():
    recipe = [
        {"op": "rcrop", "sizes": [[24, 32], [36, 48]]},
        {"op": "hflip", "p": 0.6},
        {"op": "rotate", "degrees": 15},
        {"op": "scale", "scale": [1.0, 2.0]},
        {"op": "color_jitter"},
        {"op": "rgb_multiplier"},
    ]
    src = scene_sample()
    a = build_augmentation(recipe)(src, generator=123)
    b = build_augmentation(recipe)(src, generator=torch.Generator().manual_seed(123))
    c = build_augmentation(recipe)(src, generator=124)
    assert a["meta"] == b["meta"] and a["meta"] != c["meta"]
    for key in ("image", "depth", "lidar_depth", "seg", "K"):
        assert torch.equal(a[key], b[key]), key


def test_config_builder():
    pipeline = build_augmentation({"ops": [{"op": "hflip", "p": 0.6}, "rotate"]})
    assert isinstance(pipeline, Compose) and len(pipeline.transforms) == 2
    assert pipeline.transforms[0].p == 0.6 and pipeline.transforms[1].degrees == (-15.0, 15.0)
    assert build_augmentation(None).transforms == []
    assert "rcrop" in available_augmentations()


@pytest.mark.parametrize(
    "config, match",
    [
        ([{"op": "mixup"}], "unknown op 'mixup'"),
        ([{"p": 0.5}], "unknown op None"),
        ([{"op": "hflip", "prob": 0.5}], "unknown parameter.*prob"),
        ([{"op": "hflip", "p": -0.1}], r"p must be in \[0, 1\]"),
        ([{"op": "hflip", "p": 1.5}], r"p must be in \[0, 1\]"),
        ([{"op": "hflip", "p": "often"}], "finite number"),
        ([{"op": "rotate", "degrees": -5}], "degrees must be >= 0"),
        ([{"op": "scale", "scale": [2.0, 1.0]}], "low <= high"),
        ([{"op": "scale", "scale": [0.0, 1.0]}], "must be > 0"),
        ([{"op": "scale", "about": "centre"}], "about must be 'random' or 'principal'"),
        ([{"op": "scale", "p": 1.5}], r"scale p must be in \[0, 1\]"),
        ([{"op": "scale", "p": float("nan")}], "scale p"),
        ([{"op": "color_jitter", "contrast": -1}], "contrast must be >= 0"),
        ([{"op": "rgb_multiplier", "low": 1.3}], "low <= high"),
        ([{"op": "random_crop", "size": "0x5"}], "positive"),
        ([{"op": "random_crop"}], "missing"),
        ([{"op": "rcrop", "sizes": []}], "non-empty"),
        ([{"op": "rcrop", "fractions": [[0.5, 1.5]]}], "fractions"),
        ("hflip", "must be a list"),
        ({"hflip": {}}, "'ops'"),
    ],
)
def test_config_errors(config, match):
    with pytest.raises(ConfigError, match=match):
        build_augmentation(config)


def test_crops_larger_than_the_image_are_errors():
    src = scene_sample()
    with pytest.raises(ConfigError, match="larger than the image 48x64"):
        build_augmentation([{"op": "random_crop", "size": [64, 64]}])(src)
    with pytest.raises(ConfigError, match="larger than the image"):
        CenterCrop(100)(src)
    with pytest.raises(ConfigError, match="none of the crop sizes"):
        RCrop(sizes=((240, 384), (384, 512)))(src)  # absolute sizes larger than 48x64


def test_rcrop_default_sizes_are_litedepths_relative_to_any_image():
    seen = set()
    for seed in range(60):
        step = RCrop().plan((480, 640), torch.Generator().manual_seed(seed))
        seen.add(tuple(step.entry["box"][2:]))
    assert seen == {(240, 384), (384, 512), (480, 640)}
    small = set()
    for seed in range(60):
        step = RCrop().plan((192, 640), torch.Generator().manual_seed(seed))
        small.add(tuple(step.entry["box"][2:]))
        assert tuple(step.out_size) == (192, 640)
    assert small == {(96, 384), (154, 512), (192, 640)}


def test_random_crop_draws_every_offset_and_only_those():
    """Catches an off-by-one in the offset draw (the last row or column offset never drawn, or
    one past the end): over many draws the set of offsets is exactly {0..H-h} x {0..W-w}."""
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(400):
        step = RandomCrop((3, 4)).plan((5, 7), g)
        y0, x0, ch, cw = step.entry["box"]
        assert (ch, cw) == (3, 4) and tuple(step.out_size) == (3, 4)
        seen.add((y0, x0))
    assert seen == {(y, x) for y in range(0, 5 - 3 + 1) for x in range(0, 7 - 4 + 1)}
    # a crop of the full size has exactly one position
    assert {tuple(RandomCrop((5, 7)).plan((5, 7), g).entry["box"][:2]) for _ in range(20)} == {(0, 0)}


def test_rcrop_draws_every_size_and_every_offset_of_each_size():
    """Catches an off-by-one in R crop's size draw (the last size never drawn) or in its offset
    draw: every listed size that fits is drawn, at every offset from 0 to H-h, W-w, and no other."""
    sizes = ((2, 3), (3, 4), (4, 6), (9, 9))  # the last does not fit a 4x6 image and is never drawn
    g = torch.Generator().manual_seed(1)
    seen = set()
    for _ in range(1500):
        step = RCrop(sizes=sizes).plan((4, 6), g)
        y0, x0, ch, cw = step.entry["box"]
        assert tuple(step.out_size) == (4, 6)
        seen.add((ch, cw, y0, x0))
    expected = {(ch, cw, y, x) for ch, cw in sizes[:3] for y in range(4 - ch + 1) for x in range(6 - cw + 1)}
    assert seen == expected  # 12 + 6 + 1 = 19 (size, offset) pairs
    # the default (fractional) sizes: each of the three at each of its offsets
    seen = set()
    for _ in range(1500):
        y0, x0, ch, cw = RCrop().plan((4, 5), g).entry["box"]  # sizes (2, 3), (3, 4), (4, 5)
        seen.add((ch, cw, y0, x0))
    assert seen == {(ch, cw, y, x) for ch, cw in ((2, 3), (3, 4), (4, 5)) for y in range(4 - ch + 1) for x in range(5 - cw + 1)}


def reference_jitter(image: np.ndarray, brightness: float, contrast: float, saturation: float) -> np.ndarray:
    """torchvision's definitions in float64 NumPy: blend(a, b, r) = clip(r a + (1 - r) b, 0, 1) with
    b = black (brightness), the mean ITU-R 601-2 luma (contrast), the luma image (saturation)."""

    def luma(x: np.ndarray) -> np.ndarray:
        return 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]

    def blend(a: np.ndarray, b: np.ndarray | float, r: float) -> np.ndarray:
        return np.clip(r * a + (1.0 - r) * b, 0.0, 1.0)

    x = blend(image.astype(np.float64), 0.0, brightness)
    x = blend(x, float(luma(x).mean()), contrast)
    return blend(x, luma(x)[None], saturation)


def drawn_factors(seed: int, brightness: float, contrast: float, saturation: float) -> dict[str, float]:
    """The documented draw: each factor uniform in [max(0, 1 - x), 1 + x] (1 when x = 0), in order."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, x in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
        low, high = max(0.0, 1.0 - x), 1.0 + x
        out[name] = low + (high - low) * torch.rand((), generator=g, dtype=torch.float64).item() if x > 0 else 1.0
    return out


@pytest.mark.parametrize(
    "ranges, seed",
    [((0.0, 0.8, 0.0), 0), ((0.0, 0.8, 0.0), 1),  # contrast alone, factor > 1 and < 1
     ((0.0, 0.0, 0.8), 0), ((0.0, 0.0, 0.8), 1),  # saturation alone, factor > 1 and < 1
     ((0.5, 0.8, 0.8), 6), ((0.5, 0.8, 0.8), 1), ((0.5, 0.8, 0.8), 2)],  # all three: up, down, mixed
)
def test_color_jitter_contrast_and_saturation_match_the_reference_formulas(ranges, seed):
    """Catches wrong contrast or saturation formulas (blending with the per-channel mean, the
    plain RGB average instead of the luma, the grey level of the input instead of the brightened
    image, a missing clamp between steps, factors applied as 1 - f or in another order)."""
    rng = np.random.default_rng(3)
    image = rng.random((3, 5, 6)).astype(np.float32)
    image[:, 0, 0] = (1.0, 0.0, 0.0)  # saturated colours, so that clamping matters
    image[:, 0, 1] = (0.0, 0.9, 1.0)
    out = ColorJitter(*ranges)({"image": torch.from_numpy(image), "meta": {}}, generator=seed)
    entry = out["meta"]["augment"][0]
    factors = drawn_factors(seed, *ranges)
    assert {k: entry[k] for k in factors} == pytest.approx(factors, rel=1e-12)
    expected = reference_jitter(image, factors["brightness"], factors["contrast"], factors["saturation"])
    if seed in (0, 6):  # the factors above 1 push some values past [0, 1]
        assert ((expected == 0.0) | (expected == 1.0)).any()
    np.testing.assert_allclose(out["image"].numpy(), expected, rtol=0, atol=2e-6)
