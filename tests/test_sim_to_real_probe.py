"""Test-time probes of the sim-to-real gap (``benchmarks/sim_to_real_probe.py``): each change of
the frames on known values, the near objects' mask on a hand-made KITTI frame, the scores of the
changed frames against NumPy by hand, and bad probes as one-line errors with nothing written.
Needs no real data: the frames are a small synthetic control."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from slimdepth.deploy.exported import load_for_inference
from slimdepth.errors import ConfigError
from slimdepth.report.probe import (DEFAULT_PROBES, NEAR_GROW, OTHER, PROBE_OPS, PROBE_PLACES, Probe, apply_probe,
                                    near_mask, parse_probe)
from slimdepth.report.real import REAL_TITLE_HEIGHT, SYNTHETIC_CONTROL, open_frames
from slimdepth.report.sim_to_real import sim_to_real
from tests.helpers import TINY_RECIPE, load_script
from tests.test_sim_to_real import _one_line, by_hand
from tests.test_sim_to_real_bands import BLOCKS, K, _frame
from tests.test_sim_to_real_control import SMALL, _train

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "sim_to_real_probe.py"


def _script():
    return load_script(SCRIPT, "sim_to_real_probe_script")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return _train(tmp_path_factory, "tiny", TINY_RECIPE["model"])


def _image(h: int = 4, w: int = 6) -> torch.Tensor:
    """A colour ramp: every pixel different, none at 0 or 1, and channel means (0.5, 0.5, 0.2)
    unlike the mean grey (0.466), so a contrast about the wrong mean shows."""
    t = torch.linspace(0.1, 0.9, h * w).reshape(h, w)
    return torch.stack([t, t.flip(0), 0.2 * torch.ones_like(t)])


def test_each_change_on_known_values() -> None:
    x = _image()
    frame = {"image": x}
    assert torch.allclose(apply_probe(parse_probe("gamma=2"), frame), x ** 2)
    assert torch.allclose(apply_probe(parse_probe("gain=0.5"), frame), x * 0.5)
    assert torch.allclose(apply_probe(parse_probe("gain=4"), frame), (x * 4).clamp(max=1.0))
    grey = 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]
    flat = apply_probe(parse_probe("contrast=0"), frame)  # every pixel the frame's mean grey
    assert torch.allclose(flat, torch.full_like(x, float(grey.mean())))
    assert torch.allclose(apply_probe(parse_probe("contrast=0.5"), frame), (x - grey.mean()) * 0.5 + grey.mean())
    g = apply_probe(parse_probe("saturation=0"), frame)  # ITU-R 601 luma in all three channels
    assert torch.allclose(g, grey.expand(3, -1, -1))
    assert apply_probe(parse_probe("as-is"), frame) is not None and torch.equal(apply_probe(Probe(), frame), x)
    for op in set(PROBE_OPS) - {"blur"}:  # 1 changes nothing, whatever the op
        assert torch.allclose(apply_probe(parse_probe(f"{op}=1"), frame), x), op


def test_blur_is_a_gaussian_of_sigma_pixels() -> None:
    """Against SciPy's Gaussian filter (reflected borders, 3 sigma): a point spreads into the
    Gaussian's taps and an image keeps its mean away from the borders."""
    from scipy.ndimage import gaussian_filter

    x = torch.zeros(3, 41, 41)
    x[:, 20, 20] = 1.0
    out = apply_probe(parse_probe("blur=2"), {"image": x})
    taps = torch.exp(-0.5 * (torch.arange(-6, 7.0) / 2) ** 2)
    taps /= taps.sum()
    assert torch.allclose(out[0, 14:27, 14:27], taps[:, None] * taps[None, :], atol=1e-7)
    image = torch.rand(3, 30, 50, generator=torch.Generator().manual_seed(3))
    ours = apply_probe(parse_probe("blur=1.5"), {"image": image}).numpy()
    ref = np.stack([gaussian_filter(c, 1.5, mode="mirror", truncate=3.0) for c in image.numpy()])
    assert np.abs(ours - ref).max() < 1e-5


def test_near_mask_is_the_near_objects_grown() -> None:
    gt, _ = _frame()
    mask = near_mask(gt, K)
    r, c, _ = BLOCKS[(0.0, 8.0)]  # the 5 m block; the 12 m and 30 m ones and the road stay out
    expected = torch.zeros(gt.shape[-2:], dtype=torch.bool)
    expected[r.start - NEAR_GROW:r.stop + NEAR_GROW, c.start - NEAR_GROW:c.stop + NEAR_GROW] = True
    assert torch.equal(mask, expected)
    assert torch.equal(near_mask(gt, K, grow=0), (gt[0] > 0) & (gt[0] < 8) & (torch.arange(gt.shape[1]) < 300)[:, None])
    edge = gt.clone()
    edge[0, 190, 900], edge[0, 190, 950] = 8.0, 7.99  # on the band's edge: 8 m is not near, 7.99 m is
    points = near_mask(edge, K, grow=0)
    assert not points[190, 900] and points[190, 950]


def test_near_and_rest_change_complementary_parts() -> None:
    gt, _ = _frame()
    image = torch.rand(3, *gt.shape[-2:], generator=torch.Generator().manual_seed(0))
    frame = {"image": image, "depth": gt, "K": K}
    mask = near_mask(gt, K)
    near = apply_probe(parse_probe("gamma=2.2@near"), frame)
    rest = apply_probe(parse_probe("gamma=2.2@rest"), frame)
    whole = apply_probe(parse_probe("gamma=2.2"), frame)
    assert torch.equal(near[:, mask], whole[:, mask]) and torch.equal(near[:, ~mask], image[:, ~mask])
    assert torch.equal(rest[:, ~mask], whole[:, ~mask]) and torch.equal(rest[:, mask], image[:, mask])
    nothing_near = {**frame, "depth": torch.where(gt < 8, torch.zeros_like(gt), gt)}
    assert torch.equal(apply_probe(parse_probe("gamma=2.2@near"), nothing_near), image)


def test_other_at_rest_keeps_the_near_objects_and_takes_the_rest_from_the_other_frame() -> None:
    gt, _ = _frame()
    image, other = (torch.rand(3, *gt.shape[-2:], generator=torch.Generator().manual_seed(k)) for k in (0, 1))
    frame = {"image": image, "depth": gt, "K": K}
    probe = parse_probe(" other@rest ")
    assert probe == Probe(OTHER, 1.0, "rest") and probe.name == "other@rest"
    swapped = apply_probe(probe, frame, other)
    mask = near_mask(gt, K)
    assert mask.sum() > 100 and torch.equal(swapped[:, mask], image[:, mask]) and torch.equal(swapped[:, ~mask], other[:, ~mask])
    for bad, fragment in ((None, "must be given"), (other[:, :-1], "not 374x1242")):
        with pytest.raises(ConfigError) as caught:
            apply_probe(probe, frame, bad)
        assert "\n" not in str(caught.value) and fragment in str(caught.value)


@settings(max_examples=60, deadline=None)
@given(op=st.sampled_from(PROBE_OPS), value=st.floats(0.01, 10.0, allow_nan=False).map(lambda v: round(v, 3)),
       where=st.sampled_from(PROBE_PLACES))
def test_a_probes_name_reads_back_as_itself(op, value, where) -> None:
    probe = Probe(op, value, where)
    assert parse_probe(probe.name) == probe
    assert ("@" in probe.name) == (where != "all")


BAD_PROBES = [
    ("hue=2", "OP=VALUE"), ("gamma", "OP=VALUE"), ("=2", "OP=VALUE"), ("gamma=", "not a number"),
    ("gamma=two", "'two' is not a number"), ("gamma=0", "above 0"), ("gamma=-1", "above 0"), ("gain=-0.1", "from 0"),
    ("contrast=11", "up to 10"), ("saturation=nan", "from 0"), ("blur=0", "above 0"), ("blur=-1@near", "above 0"), ("gamma=inf", "above 0"), ("gamma=2@far", "after @"),
    ("gamma=2@", "after @"), ("as is", "OP=VALUE"), ("gamma=1e999", "above 0"), ("other", "other@rest"),
    ("other@near", "other@rest"), ("other@all", "other@rest"), ("other=2@rest", "OP=VALUE"), ("other@rest@rest", "other@rest"),
]


@pytest.mark.parametrize("text, fragment", BAD_PROBES)
def test_bad_probes_are_one_line_config_errors(text, fragment) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_probe(text)
    message = str(caught.value)
    assert "\n" not in message and fragment in message and message.startswith("--probe ")


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=20))
def test_any_text_is_a_probe_or_a_one_line_error(text) -> None:
    try:
        probe = parse_probe(text)
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("--probe ")
    else:
        assert probe.op in (None, OTHER, *PROBE_OPS) and probe.where in PROBE_PLACES


def test_changed_frames_are_scored_as_by_hand_and_shown_on_the_sheet(run) -> None:
    probe = parse_probe("gamma=2.2")
    result = sim_to_real([run], SMALL, rows=1, flat_prior=True, transform=partial(apply_probe, probe))
    frames = [open_frames(SMALL)[i] for i in range(2)]
    changed = [{**f, "image": f["image"] ** 2.2} for f in frames]
    tiny, prior = result.scores
    expected, _ = by_hand(_predict(run, changed), [f["depth"][0].numpy() for f in frames], median_scaling=False)
    for key in ("d1", "abs_rel", "rmse"):
        assert tiny.metric[key] == pytest.approx(expected[key], rel=1e-5), key
    plain = sim_to_real([run], SMALL, rows=1, flat_prior=True)
    assert plain.scores[0].metric["d1"] != tiny.metric["d1"] or plain.scores[0].metric["rmse"] != tiny.metric["rmse"]
    assert prior.metric == plain.scores[1].metric  # the baselines use no image
    shown = result.sheets["sheet_tiny"][REAL_TITLE_HEIGHT:REAL_TITLE_HEIGHT + 32, :106].astype(float)
    first = frames[0]["image"] ** 2.2  # the first frame is on the sheet, as the model saw it
    assert np.abs(shown - first.permute(1, 2, 0).numpy() * 255).mean() < 2.0
    assert np.abs(shown - frames[0]["image"].permute(1, 2, 0).numpy() * 255).mean() > 5.0


def _predict(run: Path, frames: list[dict]) -> list[np.ndarray]:
    """The run's prediction of each 32x106 frame: resized to its input, predicted, resized back."""
    model, size = load_for_inference(run, "cpu", None)
    with torch.no_grad():
        return [F.interpolate(model.eval()(F.interpolate(f["image"][None], size=size, mode="bilinear",
                                                         align_corners=False)),
                              size=(32, 106), mode="bilinear", align_corners=False)[0, 0].numpy() for f in frames]


def test_script_prints_each_probe_against_the_frames_as_they_are(run, tmp_path, capsys, monkeypatch) -> None:
    from slimdepth.report import measure

    loads = []
    load = measure.load_for_inference
    monkeypatch.setattr(measure, "load_for_inference", lambda *a, **k: loads.append(a[0]) or load(*a, **k))
    out = tmp_path / "out"
    assert _script().main(["--run", str(run), "--real", f" {SMALL} ", "--probe", "gamma=2.2", "--probe",
                           "saturation=0@rest", "--rows", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    saved = json.loads((out / "probe.json").read_text())
    assert saved["real"] == SMALL and list(saved["probes"]) == ["as-is", "gamma=2.2", "saturation=0@rest"]
    assert sorted(p.name for p in out.iterdir()) == ["as-is", "gamma=2.2", "probe.json", "saturation=0_at_rest"]
    assert "NaN" not in (out / "probe.json").read_text()
    base, gamma = saved["probes"]["as-is"]["tiny"], saved["probes"]["gamma=2.2"]["tiny"]
    detail = json.loads((out / "gamma=2.2" / "sim_to_real.json").read_text())["models"][0]
    assert gamma["metric_d1"] == detail["metric"]["d1"] and gamma["ratio"] == detail["scale_ratio"]["mean"]
    row = next(line for line in printed.splitlines() if line.startswith("gamma=2.2 "))
    assert f"{gamma['metric_d1']:.3f} ({gamma['metric_d1'] - base['metric_d1']:+.3f})" in row
    assert len(loads) == 1  # the model is loaded once for the three passes


def test_as_is_is_always_first_and_never_twice(run, tmp_path) -> None:
    script = _script()
    for probes in (["gamma=2"], ["gamma=2", "as-is"], ["as-is", "gamma=2"]):
        args = script.parse_args(["--run", str(run), "--real", SMALL, *sum((["--probe", p] for p in probes), [])])
        assert [p.name for p in script.check_args(args)[0]] == ["as-is", "gamma=2"], probes


def test_the_default_probes_start_from_the_frames_as_they_are() -> None:
    args = _script().parse_args(["--run", "x"])
    assert args.probe == [] and DEFAULT_PROBES[0] == "as-is"
    assert [parse_probe(p).name for p in DEFAULT_PROBES] == list(DEFAULT_PROBES)  # each spelt as it reads back


@pytest.mark.parametrize("extra, fragment", [
    (["--probe", "gamma=0"], "above 0"), (["--probe", "gain=1", "--probe", "gain=1.0"], "given twice"),
    (["--rows", "0"], "--rows"), (["--real", "synthetic,num=2,size=32x106,split=train"], "test split"),
    (["--real", "/no/such/folder"], "/no/such/folder"), (["--probe", "sharpen=2"], "OP=VALUE"),
])
def test_bad_options_are_one_line_and_write_nothing(extra, fragment, run, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert _script().main(["--run", str(run), "--real", SMALL, "--out", str(out), *extra]) == 2
    _one_line(capsys.readouterr().err, fragment)
    assert not out.exists()


#: frames of the same size as SMALL's, drawn another way (no traffic, rural roads)
OTHER_SMALL = "synthetic,num=3,size=32x106,split=test,traffic=0,layouts=rural,seg=false,lidar=false"


def test_other_at_rest_pairs_each_frame_with_the_other_sets_and_records_it(run, tmp_path) -> None:
    script = _script()
    out = tmp_path / "out"
    assert script.main(["--run", str(run), "--real", SMALL, "--probe", "other@rest", "--other", OTHER_SMALL,
                        "--rows", "1", "--out", str(out)]) == 0
    saved = json.loads((out / "probe.json").read_text())
    assert saved["other"] == OTHER_SMALL and list(saved["probes"]) == ["as-is", "other@rest"]
    assert sorted(p.name for p in out.iterdir()) == ["as-is", "other_at_rest", "probe.json"]
    checked = script.check_args(script.parse_args(["--run", str(run), "--real", SMALL, "--probe", "other@rest",
                                                   "--other", OTHER_SMALL]))
    transform = script.transform_for(checked.probes[1], checked.frames, checked.context)
    frames, others = open_frames(SMALL), open_frames(OTHER_SMALL)
    for i in range(len(frames)):  # frame i of the one set around frame i's near objects of the other
        f = frames[i]
        mask = near_mask(f["depth"], f["K"])[None]
        assert 0 < mask.sum() < mask.numel()  # both parts on show (1682 and 1184 of 3392 pixels)
        assert torch.equal(transform(f), torch.where(mask, f["image"], others[i]["image"]))
    assert not torch.equal(transform(frames[0]), frames[0]["image"])
    # scored as the composed frames are (the same scores as sim_to_real given them by hand)
    by_hand_result = sim_to_real([run], SMALL, rows=1, transform=lambda f: torch.where(
        near_mask(f["depth"], f["K"])[None], f["image"], others[open_frames(SMALL).names().index(f["meta"]["name"])]["image"]))
    near = by_hand_result.scores[0].regions["above road 0-8 m"]
    swapped = saved["probes"]["other@rest"]["tiny"]
    assert swapped["near_d1"] == near["metric"]["d1"] and swapped["near_ratio"] == near["ratio"]["median"]
    # the whole frame is not scored: its rest is another frame, which the ground truth does not fit
    assert swapped["metric_d1"] is None and swapped["scaled_d1"] is None and swapped["ratio"] is None
    assert saved["probes"]["as-is"]["tiny"]["metric_d1"] is not None
    detail = json.loads((out / "other_at_rest" / "sim_to_real.json").read_text())
    assert detail["context"] == OTHER_SMALL and detail["models"][0]["metric"] == {}
    assert list(detail["models"][0]["regions"]) == ["above road 0-8 m"]
    assert "context" not in json.loads((out / "as-is" / "sim_to_real.json").read_text())
    assert script.check_args(script.parse_args(["--run", str(run), "--real", SMALL])).context is None
    # the default context of a spec is the shared drive (375x1242 or absent: refused either way here),
    # of a folder the synthetic control
    assert script.default_other(SMALL) == script.DEFAULT_REAL and script.default_other(tmp_path) == SYNTHETIC_CONTROL
    with pytest.raises(ConfigError) as caught:
        script.check_args(script.parse_args(["--run", str(run), "--real", SMALL, "--probe", "other@rest"]))
    assert "--other" in str(caught.value) and "kitti_raw" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("extra, fragment", [
    (["--probe", "other@rest", "--other", "synthetic,num=2,size=32x96,split=test"], "32x96"),
    (["--other", OTHER_SMALL], "other@rest"),
    (["--probe", "other@rest", "--other", "/no/such/place"], "--other: /no/such/place: not a directory"),
    (["--probe", "other@near"], "other@rest"),
    (["--probe", "other@rest", "--other", "synthetic,num=1,size=32x106,split=test,seg=false"], "fewer than the 2"),
    (["--probe", "other@rest", "--other", "synthetic,num=2,size=32x106,split=train"], "--other: split=train"),
])
def test_a_bad_context_is_one_line_and_writes_nothing(extra, fragment, run, tmp_path, capsys, monkeypatch) -> None:
    from slimdepth.report import measure

    loads = []
    monkeypatch.setattr(measure, "load_for_inference", lambda *a, **k: loads.append(a) or 1 / 0)
    out = tmp_path / "out"
    assert _script().main(["--run", str(run), "--real", SMALL, "--out", str(out), *extra]) == 2
    _one_line(capsys.readouterr().err, fragment)
    assert not out.exists() and not loads  # refused before any model is loaded


def test_a_missing_run_and_a_full_out_are_refused(run, tmp_path, capsys) -> None:
    assert _script().main(["--run", str(tmp_path / "nope"), "--real", SMALL]) == 2
    _one_line(capsys.readouterr().err, "nope")
    assert _script().main(["--real", SMALL]) == 2
    _one_line(capsys.readouterr().err, "--run")
    full = tmp_path / "full"
    full.mkdir()
    (full / "mine.txt").write_text("keep")
    assert _script().main(["--run", str(run), "--real", SMALL, "--out", str(full)]) == 2
    _one_line(capsys.readouterr().err, "not empty")
    assert [p.name for p in full.iterdir()] == ["mine.txt"] and (full / "mine.txt").read_text() == "keep"
