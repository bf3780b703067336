"""The sim-to-real benchmark's synthetic control (``--control``): built-in frames scored exactly as
the real ones are. Needs no real data: the numbers equal a computation by hand, the flat prior's
road and above-road scores are the known 1 and 0 of a flat world, the default control is the
drive's kind of street at KITTI's size, and a bad spec is one line with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from slimdepth.data.registry import build_dataset
from slimdepth.deploy.exported import load_for_inference
from slimdepth.errors import ConfigError
from slimdepth.evaluate.conventions import preset_for
from slimdepth.report.real import SYNTHETIC_CONTROL, ground_truth_of, open_frames, open_synthetic_frames, with_control
from slimdepth.report.sim_to_real import FLAT_PRIOR, RoadProbability, road_probability, sim_to_real, transfer_sheet
from slimdepth.train.run import resolve_config
from slimdepth.train.trainer import Trainer
from tests.helpers import TINY_RECIPE
from tests.test_sim_to_real import _annotated_folder, _one_line, _script, by_hand, flat_road
from tests.test_synthetic_scenes import SPEC_VALUES

#: a small control: two dense-depth frames of queued traffic, KITTI-shaped (106 / 32 = 3.31)
SMALL = "synthetic,num=2,size=32x106,split=test,traffic=2,seg=false,lidar=false"


def _train(tmp_path_factory, name: str, model: dict) -> Path:
    """A real (tiny) training run of ``model`` at 32x96 on synthetic scenes."""
    out = tmp_path_factory.mktemp("runs") / name
    Trainer(resolve_config(None, [], {**TINY_RECIPE, "model": model}), out).fit()
    return out


@pytest.fixture(scope="module")
def stixel_run(tmp_path_factory) -> Path:
    """LiteDepth with the stixel head (``road_prior=popup``)."""
    return _train(tmp_path_factory, "stixel", {"name": "litedepth", "road_prior": "popup", "internal_size": "none",
                                               "max_depth": 80.0})


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """tiny-multires, as the real-frame tests train it."""
    return _train(tmp_path_factory, "tiny", TINY_RECIPE["model"])


def test_the_default_control_is_the_drives_kind_of_street_at_kitti_size() -> None:
    dataset = open_synthetic_frames(SYNTHETIC_CONTROL)
    g = dataset.generator
    assert len(dataset) == 20 and g.size == (375, 1242) and g.split == "test"
    assert g.scene_options.traffic == 2.0 and dataset.depth_source == "lidar"
    config = preset_for(dataset)
    assert (config.crop, config.min_depth, config.max_depth) == ("garg", 1e-3, 80.0)  # KITTI's, as the real frames
    assert ground_truth_of(dataset) == ("simulated 64-beam LiDAR", "simulated LiDAR")
    assert ground_truth_of(open_frames(SMALL)) == ("exact synthetic depth", "synthetic depth")


def test_control_frames_are_the_test_splits_with_kittis_camera() -> None:
    """A spec without a split scores the test split's frames (never the train split a run learns
    from), and their K is KITTI's camera scaled to the frame, so the flat prior and the road split
    mean what they mean on real frames."""
    from slimdepth.geometry import kitti_like_intrinsics

    no_split = SMALL.replace(",split=test", "")
    control, test, train = open_frames(no_split), build_dataset(SMALL), build_dataset(f"{no_split},split=train")
    assert control.generator.split == "test"
    for i in range(2):
        a, b = control[i], test[i]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["depth"], b["depth"])
        assert not torch.equal(a["image"], train[i]["image"])
        np.testing.assert_allclose(np.asarray(a["K"]), kitti_like_intrinsics(32, 106), rtol=1e-5)


def test_control_is_scored_as_by_hand_and_the_flat_prior_fits_a_flat_world(run) -> None:
    """On flat synthetic ground nothing lies beyond the road plane, so the flat road of KITTI's
    camera is within 25% of the road points and more than 25% too far at the points above the
    road, all but a few next to the horizon (where the rig's pitch jitter of up to 0.7 degrees moves
    depth most, and the prior's 80 m cap meets points the uncapped plane puts above the road); the
    tiny run's figures equal NumPy by hand over the same frames. A camera other than KITTI's would
    move the road's score far from 1."""
    result = sim_to_real([run], SMALL, rows=1, flat_prior=True)
    assert result.real == SMALL and result.frames == 2 and result.ground_truth == "exact synthetic depth"
    frames = [open_frames(SMALL)[i] for i in range(2)]
    gts = [f["depth"][0].numpy() for f in frames]
    model, size = load_for_inference(run, "cpu", None)
    with torch.no_grad():
        preds = [F.interpolate(model.eval()(F.interpolate(f["image"][None], size=size, mode="bilinear",
                                                            align_corners=False)),
                               size=(32, 106), mode="bilinear", align_corners=False)[0, 0].numpy() for f in frames]
    tiny, prior = result.scores
    for scaled, part in ((False, tiny.metric), (True, tiny.median_scaled)):
        expected, _ = by_hand(preds, gts, median_scaling=scaled)
        for key in ("d1", "abs_rel", "rmse"):
            assert part[key] == pytest.approx(expected[key], rel=1e-5), (scaled, key)
    expected, _ = by_hand([flat_road(np.asarray(f["K"]), 32, 106) for f in frames], gts, median_scaling=False)
    assert prior.name == FLAT_PRIOR and prior.metric["d1"] == pytest.approx(expected["d1"], rel=1e-6)
    assert prior.regions["road"]["metric"]["d1"] > 0.99  # 0.998: 3 of the road points at the horizon row
    assert prior.regions["above road"]["metric"]["d1"] < 0.02  # 0.013: beyond 64 m, at the horizon
    assert prior.regions["above road"]["points"] > 0.3 * prior.regions["road"]["points"]  # queued traffic


def test_script_scores_the_control_beside_the_real_frames(run, tmp_path, capsys) -> None:
    """Into synthetic_control/ beside the real folder's results (renamed when a real folder has
    that name); the spec is stored as written, without the spaces around it."""
    real = _annotated_folder(tmp_path / "synthetic_control", size=(48, 160))
    out = tmp_path / "out"
    assert _script().main(["--run", str(run), "--real", str(real), "--control", f"  {SMALL} ", "--flat-prior",
                           "--rows", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "2 real KITTI frames" in printed and f"2 synthetic frames in {SMALL}; ground truth: exact" in printed
    assert sorted(p.name for p in out.iterdir()) == ["synthetic_control", "synthetic_control_2"]
    assert json.loads((out / "synthetic_control" / "sim_to_real.json").read_text())["ground_truth"] == \
        "KITTI annotated depth"
    saved = json.loads((out / "synthetic_control_2" / "sim_to_real.json").read_text())
    assert saved["real"] == SMALL and saved["frames"] == 2 and saved["conventions"]["crop"] == "garg"
    assert sorted(p.name for p in (out / "synthetic_control_2").iterdir()) == ["sheet_tiny.png", "sim_to_real.json"]
    assert _script().parse_args(["--control"]).control == SYNTHETIC_CONTROL  # the flag alone: the default


def test_the_control_joins_the_real_sets_under_a_name_of_its_own() -> None:
    real = {"kitti_raw": Path("a"), "synthetic_control": Path("b"), "synthetic_control_2": Path("c")}
    assert with_control(real, None) == real
    both = with_control(real, SMALL)
    assert list(both) == [*real, "synthetic_control_3"] and both["synthetic_control_3"] == SMALL
    assert list(with_control({"kitti_raw": Path("a")}, SMALL)) == ["kitti_raw", "synthetic_control"]


#: bad control specs and a part of the one-line error that the spec itself does not contain
BAD_SPECS = [
    ("kitti:/nowhere", "not a spec of the built-in scenes"),
    ("synthetic:/nowhere", "takes no path"),
    ("synthetic,num=0,size=32x106", "must be a positive integer"),
    ("synthetic,num=2,size=480x640", "not KITTI frames"),
    ("synthetic,num=2,size=32x106,colour=red", "did you mean 'color_cast'"),
    ("synthetic,num=2,size=32x106,labels=false", "need their depth"),
    ("synthetic,num=2,size=32x106,split=train", "from the test split"),
    ("synthetic,num=2,size=32x106,split=val", "from the test split"),
    ("synthetic,num=2,size=32x106,split=holdout", "from the test split"),
    ("synthetic,num=2,size=32x106,depth=radar", "'dense' or 'lidar'"),
    ("synthetic,num=2,size=thin", "must be HxW"),
    ("synthetic,num=2,size=32x106,traffic", "is not KEY=VALUE"),
]


@pytest.mark.parametrize("spec, fragment", BAD_SPECS)
def test_bad_control_specs_are_one_line_before_anything_is_written(spec, fragment, run, tmp_path, capsys) -> None:
    real = _annotated_folder(tmp_path / "ann")
    assert _script().main(["--run", str(run), "--real", str(real), "--control", spec,
                           "--out", str(tmp_path / "out")]) == 2
    _one_line(capsys.readouterr().err, fragment)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("spec, fragment", BAD_SPECS[:3])
def test_a_bad_control_spec_stops_the_script_before_it_trains(spec, fragment, tmp_path, capsys) -> None:
    real = _annotated_folder(tmp_path / "ann")
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(json.dumps(TINY_RECIPE))  # JSON is YAML
    assert _script().main(["--config", str(recipe), "--train-out", str(tmp_path / "trained"), "--real", str(real),
                           "--control", spec, "--out", str(tmp_path / "out")]) == 2
    _one_line(capsys.readouterr().err, fragment)
    assert not (tmp_path / "trained").exists() and not (tmp_path / "out").exists()


def _spec_value(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(sorted(SPEC_VALUES)).flatmap(lambda k: st.tuples(st.just(k), SPEC_VALUES[k])))
def test_every_bad_scene_option_of_a_control_is_a_one_line_config_error(item) -> None:
    key, value = item
    spec = f"synthetic,num=1,size=32x106,{key}={_spec_value(value)}"
    with pytest.raises(ConfigError) as err:
        open_synthetic_frames(spec)
    assert "\n" not in str(err.value) and (key in str(err.value) or "camera" in str(err.value))


def test_road_probability_figures_of_known_values() -> None:
    road = RoadProbability()
    assert road.metrics() == {}
    road.add(torch.tensor([[0.1, 0.6]]))
    road.add(torch.tensor([0.3, 0.9, 0.4, 0.5]))  # 0.5 is road: "below" is strict
    assert road.metrics() == {"median": pytest.approx(0.4), "below_half": 0.5, "pixels": 6}


def test_a_stixel_heads_road_probability_is_scored_over_every_frame_and_drawn(stixel_run, run, monkeypatch) -> None:
    """Over every frame, one frame per batch (not only the one on the sheet): the median and the
    share below 0.5 of p equal NumPy over sigmoid(the head's logits); the sheet's row shows that
    frame's p after the prediction; a model without road logits gets neither."""
    import slimdepth.report.sim_to_real as s2r

    monkeypatch.setattr(s2r, "BATCH", 1)
    result = sim_to_real([stixel_run, run], SMALL, rows=1)
    stixel, plain = result.scores
    dataset = open_frames(SMALL)
    frames = [dataset[i] for i in range(2)]
    model, size = load_for_inference(stixel_run, "cpu", None)
    with torch.no_grad():
        logits = [model.eval().predict(F.interpolate(f["image"][None], size=size, mode="bilinear",
                                                     align_corners=False))["road"][0] for f in frames]
    p = np.concatenate([torch.sigmoid(x).numpy().ravel() for x in logits]).astype(np.float64)
    assert stixel.road["pixels"] == p.size == 2 * 8 * 24  # the head works at a quarter of 32x96
    assert stixel.road["below_half"] == pytest.approx(np.mean(p < 0.5))
    assert stixel.road["median"] == pytest.approx(np.sort(p)[(p.size - 1) // 2], abs=1e-6)  # torch: the lower median
    assert plain.road == {} and "road_probability" not in plain.to_dict()
    assert stixel.to_dict()["road_probability"] == stixel.road
    maps = road_probability(model, [f["image"] for f in frames], size)
    assert len(maps) == 2 and all(torch.allclose(m, torch.sigmoid(x), atol=1e-6) for m, x in zip(maps, logits))
    assert road_probability(load_for_inference(run, "cpu", None)[0], [frames[0]["image"]], size) is None
    (shown,) = [i for i in range(2) if dataset.names()[i] == result.sheet_frames[0]]
    sheet, plain_sheet = result.sheets["sheet_stixel"], result.sheets["sheet_tiny"]
    assert sheet.shape[1] == 4 * 106 + 3 * 4 and plain_sheet.shape[1] == 3 * 106 + 2 * 4
    panel = sheet[48:, 2 * (106 + 4):3 * 106 + 2 * 4, 0]
    expected = np.rint(255 * F.interpolate(maps[shown][None], size=(32, 106), mode="nearest")[0, 0].numpy())
    assert np.abs(panel.astype(int) - expected).max() <= 1


def test_the_script_prints_a_stixel_heads_road_figures(stixel_run, run, tmp_path, capsys) -> None:
    assert _script().main(["--run", str(stixel_run), "--run", str(run), "--real", str(_annotated_folder(tmp_path / "a")),
                           "--rows", "1", "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out.splitlines()
    saved = json.loads((tmp_path / "out" / "sim_to_real.json").read_text())["models"]
    head = next(i for i, line in enumerate(printed) if line.startswith("the stixel head's road probability"))
    assert printed[head + 1].split() == ["model", "|", "median", "p", "p", "<", "0.5"]
    road = saved[0]["road_probability"]
    assert printed[head + 2].split() == ["stixel", "|", f"{road['median']:.3f}", f"{road['below_half']:.3f}"]
    assert len(printed) == head + 3 or not printed[head + 3].startswith("tiny")  # no row for the plain head
    assert "road_probability" not in saved[1]


def test_the_road_panel_shows_each_head_cell_as_a_block() -> None:
    """A checkerboard of p at the head's 8x24 cells is drawn as blocks over the 32x106 frame
    (nearest, never blended), in grey (black = 0, white = 1), right after its column's prediction."""
    frame = open_frames(SMALL)[0]
    frame = {"image": frame["image"], "depth": frame["depth"], "meta": frame["meta"]}
    p = torch.from_numpy((np.indices((8, 24)).sum(0) % 2).astype(np.float32))[None]  # 0/1 checkerboard
    sheet = transfer_sheet([frame], [("m", [frame["depth"]])], road={"m": [p]})
    assert sheet.shape[1] == 4 * 106 + 3 * 4
    panel = sheet[48:, 2 * (106 + 4):3 * 106 + 2 * 4]
    rows = np.floor(np.arange(32) * 8 / 32).astype(int)  # nearest: the cell each pixel falls in
    cols = np.floor(np.arange(106) * 24 / 106).astype(int)
    expected = (np.indices((8, 24)).sum(0) % 2)[rows][:, cols] * 255
    assert np.array_equal(panel[..., 0], expected) and np.array_equal(panel[..., 1], expected)
    assert transfer_sheet([frame], [("m", [frame["depth"]])]).shape[1] == 3 * 106 + 2 * 4
