"""The road loss (``loss.road_weight``): a stixel head's road logits taught from depth alone."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from slimdepth.data.synthetic import CLASS_NAMES, SceneGenerator
from slimdepth.errors import ConfigError, DataError
from slimdepth.losses import build_criterion
from slimdepth.losses.road import ground_target, road_loss
from slimdepth.models import build_model
from slimdepth.train.run import resolve_config
from slimdepth.train.trainer import Trainer
from tests.test_train import write_recipe

H, W = 20, 6


def _K(cy: float, fy: float = 100.0) -> torch.Tensor:
    return torch.tensor([[100.0, 0.0, 3.0], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def test_ground_is_what_lies_at_least_0_8_of_the_flat_roads_depth_away():
    K = torch.stack([_K(9.5), _K(4.5)])
    flat = [100.0 * 1.65 / (np.arange(H) - cy) for cy in (9.5, 4.5)]
    depth = torch.zeros(2, 1, H, W)
    for b in range(2):
        for v in range(H):
            # columns: on the plane, 0.81 of it, 0.79 of it, twice as far, 5 m, no depth
            d = [flat[b][v], 0.81 * flat[b][v], 0.79 * flat[b][v], 2 * flat[b][v], 5.0, 0.0]
            depth[b, 0, v] = torch.tensor(d, dtype=torch.float32)
    g = ground_target(depth, K)
    for b, cy in enumerate((9.5, 4.5)):
        below = np.arange(H) > cy
        for c, expected in enumerate([True, True, False, True, None, False]):
            column = g[b, 0, :, c].numpy()
            if expected is None:  # 5 m: ground only where the flat road is nearer than 6.25 m
                np.testing.assert_array_equal(column, below & (5.0 >= 0.8 * flat[b]))
            else:
                np.testing.assert_array_equal(column, below & expected)  # never at or above the horizon


def test_road_loss_is_the_binary_cross_entropy_on_valid_pixels():
    g = torch.Generator().manual_seed(0)
    K = torch.stack([_K(9.5), _K(9.5)])
    depth = torch.rand(2, 1, H, W, generator=g) * 30
    depth[0, 0, 3] = 0.0
    depth[1, 0, 5, 2] = float("nan")
    logits = torch.randn(2, 1, H, W, generator=g, requires_grad=True)
    valid = torch.isfinite(depth) & (depth > 0)
    target = ground_target(torch.nan_to_num(depth), K)
    assert target.any() and (~target[valid]).any()
    expected = torch.where(target, F.softplus(-logits), F.softplus(logits))[valid].mean()  # -log p or -log(1-p)
    value = road_loss(logits, depth, K)
    torch.testing.assert_close(value, expected)
    value.backward()
    assert torch.isfinite(logits.grad).all() and (logits.grad[~valid] == 0).all()
    # coarse logits are resized bilinearly to the depth's size first
    coarse = torch.randn(2, 1, H // 2, W // 2, generator=g)
    torch.testing.assert_close(road_loss(coarse, depth, K),
                               road_loss(F.interpolate(coarse, size=(H, W), mode="bilinear", align_corners=False), depth, K))
    # a mask narrows it; no valid pixel at all is an exact zero on the graph
    mask = torch.zeros_like(valid)
    mask[..., 12:, :] = True
    sel = valid & mask
    torch.testing.assert_close(road_loss(logits, depth, K, mask),
                               torch.where(target, F.softplus(-logits), F.softplus(logits))[sel].mean())
    zero = road_loss(logits, torch.zeros_like(depth), K)
    assert zero.item() == 0.0 and zero.requires_grad


def test_on_synthetic_frames_the_ground_is_the_road_and_not_the_cars():
    ids = {name: i for i, name in enumerate(CLASS_NAMES)}
    gen = SceneGenerator((96, 320), seed=7, components=("depth", "seg"))
    share = {"road": [], "sidewalk": [], "car": []}
    for i in range(4):
        f = gen.frame(i)
        g = ground_target(torch.from_numpy(f.depth)[None, None], torch.from_numpy(f.K)[None].float())[0, 0].numpy()
        for name in share:
            share[name].append(g[(f.seg == ids[name]) & (f.depth > 0)])
    share = {k: float(np.concatenate(v).mean()) for k, v in share.items()}
    assert share["road"] > 0.98 and share["sidewalk"] > 0.9 and share["car"] < 0.15, share


def test_the_criterion_adds_the_weighted_road_loss_and_checks_its_inputs():
    g = torch.Generator().manual_seed(1)
    K = torch.stack([_K(9.5)] * 2)
    depth = torch.rand(2, 1, H, W, generator=g) * 30 + 1
    outputs = {"depth": depth * 1.1, "road": torch.randn(2, 1, H // 4, W // 2, generator=g)}
    batch = {"depth": depth, "K": K}
    plain = build_criterion({"terms": [{"type": "silog"}]})
    crit = build_criterion({"terms": [{"type": "silog"}], "road_weight": 0.5})
    total, logs = crit(outputs, batch)
    base, _ = plain(outputs, batch)
    assert logs["road"] == pytest.approx(road_loss(outputs["road"], depth, K).item(), rel=1e-6)
    assert total.item() == pytest.approx(base.item() + 0.5 * logs["road"], rel=1e-6)
    with pytest.raises(DataError, match="road_prior: popup"):
        crit({"depth": depth}, batch)
    with pytest.raises(DataError, match="intrinsics"):
        crit(outputs, {"depth": depth})
    assert "road" not in plain(outputs, batch)[1]  # off by default


@settings(max_examples=25, deadline=None)
@given(st.one_of(st.floats(max_value=-1e-9), st.just(float("nan")), st.just(float("inf")), st.booleans(),
                 st.text(max_size=5), st.lists(st.floats(0, 1), max_size=2)))
def test_bad_road_weights_are_one_line_config_errors(value):
    with pytest.raises(ConfigError) as err:
        build_criterion({"terms": [{"type": "silog"}], "road_weight": value})
    assert "road_weight" in str(err.value) and "\n" not in str(err.value)


def test_the_popup_head_hands_out_its_road_logits():
    torch.manual_seed(0)
    model = build_model("litedepth", internal_size="none", road_prior="popup").train()
    x = torch.rand(2, 3, 96, 320)
    out = model.predict(x)
    assert out["road"].shape == (2, 1, 24, 80)
    raw = model.head.conv(out["features"]["dec4"])[:, :1]
    torch.testing.assert_close(out["road"], raw.clamp(-15, 15))
    torch.testing.assert_close(out["scales"][0], model.head(out["features"]["dec4"], (96, 320)))
    assert "road" not in build_model("litedepth", internal_size="none").predict(x)


def test_training_with_the_road_loss_logs_it_and_lowers_it(tmp_path):
    recipe = write_recipe(tmp_path, model={"name": "litedepth", "internal_size": "none", "road_prior": "popup"},
                          loss__road_weight=1.0, train__epochs=3, optim__lr=3e-3,
                          data__train="synthetic,num=16,size=32x96,lidar=false",
                          data__val="synthetic,num=4,size=32x96,split=val,lidar=false")
    Trainer(resolve_config(recipe, []), tmp_path / "run").fit()
    road = [float(r["road"]) for r in csv.DictReader((tmp_path / "run" / "log.csv").open())]
    assert len(road) == 12 and all(np.isfinite(road))
    assert sum(road[-4:]) < sum(road[:4])


def test_the_road_loss_is_refused_before_any_work_without_a_stixel_head_or_with_rotation(tmp_path, monkeypatch):
    """Checked in the constructor before the data are built (a data spec that cannot be built
    would fail otherwise): no stixel head, a rotate op, a bad weight."""
    import slimdepth.train.trainer as trainer_module

    def no_data(*args, **kwargs):
        raise AssertionError("the data were built before the road loss was checked")

    monkeypatch.setattr(trainer_module, "build_dataset", no_data)
    popup = {"name": "litedepth", "internal_size": "none", "road_prior": "popup"}
    cases = [({}, "road_prior: popup"),  # tiny-multires
             ({"model": dict(popup, road_prior=True)}, "road_prior: popup"),
             ({"model": popup, "data__augment": [{"op": "hflip"}, {"op": "rotate", "degrees": 5}]}, "rotate"),
             ({"model": popup, "data__augment": {"ops": ["rotate"]}}, "rotate")]
    for changes, fragment in cases:
        recipe = write_recipe(tmp_path, loss__road_weight=0.5, **changes)
        with pytest.raises(ConfigError, match=fragment) as err:
            Trainer(resolve_config(recipe, []), tmp_path / "run")
        assert "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()


def test_the_batched_split_is_the_benchmarks_split_frame_by_frame():
    from slimdepth.flat_road import above_road, above_road_batch

    g = torch.Generator().manual_seed(3)
    K = torch.stack([_K(9.5), _K(4.5, fy=80.0)])
    depth = torch.rand(2, 1, H, W, generator=g) * 40
    depth[0, 0, 0] = 0.0
    batched = above_road_batch(depth, K)
    for b in range(2):
        torch.testing.assert_close(batched[b], above_road(depth[b], K[b].numpy()))
    assert batched.any() and (~batched).any()
