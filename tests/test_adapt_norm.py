"""Test-time normalisation (AdaBN): BatchNorm statistics re-estimated on unlabeled frames.

The statistics must be the frames' own feature moments (checked against torch.mean / torch.var of
each layer's input, captured by hooks), the model handed in must stay as it was, and the
sim-to-real benchmark's ``+norm`` rows must equal scoring the adapted model by hand. Bad input (no
frames, a bad batch, a model without statistics, a bad folder or spec, no run) is one line."""

from __future__ import annotations

import copy
import json
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from slimdepth.deploy.exported import load_for_inference
from slimdepth.errors import ConfigError
from slimdepth.evaluate.adapt import adapt_batchnorm, batchnorm_layers
from slimdepth.loader import build_from_config
from slimdepth.report.real import open_frames
from slimdepth.report.sim_to_real import ADAPTED, sim_to_real
from slimdepth.train.run import resolve_config
from slimdepth.train.trainer import Trainer
from tests.helpers import TINY_RECIPE
from tests.test_sim_to_real import _annotated_folder, _one_line, _script, by_hand

#: two KITTI-shaped rendered frames of queued traffic to score, and three others (randomised looks) to adapt on
SCORED = "synthetic,num=2,size=32x106,split=test,traffic=2,seg=false,lidar=false"
SOURCE = "synthetic,num=3,size=32x106,split=test,seg=false,lidar=false,haze=0,randomize=1"


def _images(n: int, size: tuple[int, int] = (32, 96), seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, *size, generator=g) ** (1 + i) for i in range(n)]  # each frame its own look


def test_statistics_are_the_frames_feature_moments() -> None:
    """One batch: each BatchNorm layer's running mean and variance are the mean and the unbiased
    variance of what reaches it (hooks on a copy run with batch statistics see the same inputs)."""
    model = build_from_config({"name": "litedepth", "internal_size": "none", "width": 16})
    images = _images(4, (64, 192))
    adapted = adapt_batchnorm(model, images, (64, 192), batch=4)
    probe = copy.deepcopy(model).train()
    seen: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, name=name: seen.__setitem__(name, inp[0].detach()))
             for name, m in probe.named_modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        probe(torch.stack(images))
    for h in hooks:
        h.remove()
    layers = dict(adapted.named_modules())
    assert len(seen) == len(batchnorm_layers(model)) == 49
    for name, x in seen.items():
        torch.testing.assert_close(layers[name].running_mean, x.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(layers[name].running_var, x.var((0, 2, 3), unbiased=True), rtol=1e-4, atol=1e-5)
    assert not adapted.training and all(not m.training for m in adapted.modules())
    assert [m.momentum for m in batchnorm_layers(adapted)] == [m.momentum for m in batchnorm_layers(model)]


def test_batches_weigh_the_same_and_the_model_given_is_untouched() -> None:
    """Several batches (the last one short, frames of two sizes without an input size): the
    statistics are the plain average of each batch's; weights and the original model stay."""
    model = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 1, 1))
    with torch.no_grad():  # statistics of earlier training, as a trained model has: forgotten, not averaged in
        model[0].running_mean.fill_(0.5)
        model[0].running_var.fill_(4.0)
        model[0].num_batches_tracked.fill_(100)
    before = copy.deepcopy(model.state_dict())
    images = _images(3) + _images(2, (16, 48), seed=1)
    adapted = adapt_batchnorm(model, images, None, batch=2)
    groups = [images[0:2], images[2:3], images[3:5]]  # batches of 2, split where the size changes
    means = torch.stack([torch.stack(g).mean((0, 2, 3)) for g in groups]).mean(0)
    variances = torch.stack([torch.stack(g).var((0, 2, 3), unbiased=True) for g in groups]).mean(0)
    torch.testing.assert_close(adapted[0].running_mean, means)
    torch.testing.assert_close(adapted[0].running_var, variances)
    assert int(adapted[0].num_batches_tracked) == 3
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    torch.testing.assert_close(adapted[1].weight, model[1].weight)
    resized = adapt_batchnorm(model, images, (16, 48), batch=5)  # one batch, each frame resized
    batch = torch.stack([F.interpolate(im[None], size=(16, 48), mode="bilinear", align_corners=False)[0]
                         if im.shape[-2:] != (16, 48) else im for im in images])
    torch.testing.assert_close(resized[0].running_mean, batch.mean((0, 2, 3)))


class _Session(nn.Module):
    """Like an exported model run by its runtime: no BatchNorm, and a session that cannot be copied."""

    def __init__(self) -> None:
        super().__init__()
        self.session = threading.Lock()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1]


def test_a_model_without_statistics_or_frames_is_refused_in_one_line() -> None:
    for model in (nn.Conv2d(3, 1, 1), _Session()):
        with pytest.raises(ConfigError, match="runs/exported.onnx: has no BatchNorm statistics") as info:
            adapt_batchnorm(model, _images(1), where="runs/exported.onnx")
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="no frames"):
        adapt_batchnorm(nn.BatchNorm2d(3), [], where="x")


@settings(max_examples=25, deadline=None)
@given(st.one_of(st.integers(max_value=0), st.floats(allow_nan=True).filter(lambda v: v != int(v) if np.isfinite(v) else True),
                 st.sampled_from(["2", None, [2]])))
def test_a_bad_batch_is_refused(batch) -> None:
    with pytest.raises(ConfigError, match="batch of frames"):
        adapt_batchnorm(nn.BatchNorm2d(3), _images(1), batch=batch)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A tiny training run (tiny-multires has 37 BatchNorm layers)."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    Trainer(resolve_config(None, [], TINY_RECIPE), out).fit()
    return out


def test_the_norm_rows_are_the_adapted_model_scored_by_hand(run) -> None:
    result = sim_to_real([run], SCORED, rows=1, adapt_norm=f" {SOURCE} ")
    plain, adapted = result.scores
    assert (plain.name, adapted.name) == ("tiny", f"tiny{ADAPTED}")
    assert adapted.source == f"{run}, BatchNorm statistics re-estimated on {SOURCE}"
    assert sorted(result.sheets) == ["sheet_tiny", "sheet_tiny_norm", "sheet_tiny_vs_tiny_norm"]
    model, size = load_for_inference(run, "cpu", None)
    source = open_frames(SOURCE)
    by_adaptation = adapt_batchnorm(model.eval(), [source[i]["image"] for i in range(len(source))], size)
    frames = [open_frames(SCORED)[i] for i in range(2)]
    gts = [f["depth"][0].numpy() for f in frames]
    preds = {}
    for name, m in (("plain", model), ("adapted", by_adaptation)):
        with torch.no_grad():
            preds[name] = [F.interpolate(m(F.interpolate(f["image"][None], size=size, mode="bilinear",
                                                          align_corners=False)),
                                         size=(32, 106), mode="bilinear", align_corners=False)[0, 0].numpy()
                           for f in frames]
    for score, name in ((plain, "plain"), (adapted, "adapted")):
        expected, _ = by_hand(preds[name], gts, median_scaling=False)
        assert score.metric["d1"] == pytest.approx(expected["d1"], rel=1e-5)
        assert score.metric["abs_rel"] == pytest.approx(expected["abs_rel"], rel=1e-4)
    assert not np.allclose(preds["plain"][0], preds["adapted"][0], rtol=1e-3)  # the statistics did change


@pytest.mark.parametrize("source, fragment", [
    ("synthetic,num=0,size=32x106", "--adapt-norm: synthetic: num must be a positive integer"),
    ("synthetic,num=2,size=480x640", "not KITTI frames"),
    ("synthetic,num=2,size=32x106,split=train", "from the test split"),
    ("synthetic,num=2,size=32x106,traffic", "is not KEY=VALUE"),
    ("/nowhere/frames", "/nowhere/frames"),
])
def test_script_refuses_a_bad_source_before_writing(run, tmp_path, capsys, source, fragment) -> None:
    real = _annotated_folder(tmp_path / "street", size=(48, 160))
    out = tmp_path / "out"
    assert _script().main(["--run", str(run), "--real", str(real), "--out", str(out), "--adapt-norm", source]) == 2
    _one_line(capsys.readouterr().err, fragment)
    assert not out.exists()


def test_script_needs_a_run_and_writes_both_rows(run, tmp_path, capsys) -> None:
    real = _annotated_folder(tmp_path / "street", size=(48, 160))
    source = _annotated_folder(tmp_path / "other", n=3, size=(48, 160))
    out = tmp_path / "out"
    assert _script().main(["--flat-prior", "--real", str(real), "--out", str(out), "--adapt-norm", str(source)]) == 2
    _one_line(capsys.readouterr().err, "--adapt-norm", "give --run")
    exported = tmp_path / "tiny.onnx"
    exported.write_bytes(b"not read: refused by its kind")
    assert _script().main(["--run", str(run), "--run", str(exported), "--real", str(real), "--out", str(out),
                           "--adapt-norm", str(source)]) == 2
    _one_line(capsys.readouterr().err, "--adapt-norm", "tiny.onnx is an exported model")
    assert not out.exists()
    assert _script().main(["--run", str(run), "--real", str(real), "--out", str(out), "--rows", "1",
                           "--adapt-norm", str(source)]) == 0
    printed = capsys.readouterr().out
    assert f"tiny{ADAPTED} " in printed
    saved = json.loads((out / "sim_to_real.json").read_text())
    assert [m["name"] for m in saved["models"]] == ["tiny", f"tiny{ADAPTED}"]
    assert saved["models"][1]["source"].endswith(f"re-estimated on {source}")


def test_rows_that_would_share_a_name_or_a_sheet_are_refused_before_loading(run, tmp_path, monkeypatch) -> None:
    """A run named like another's +norm row, or whose sheet file would be another's; no model is
    loaded first (loading one here fails the test)."""
    from slimdepth.report.measure import ModelCache

    def no_loading(self, entry):
        raise AssertionError(f"{entry.name} was loaded before the names were checked")

    monkeypatch.setattr(ModelCache, "get", no_loading)
    for name, fragment in (("tiny+norm", "tiny+norm: a run has the name of the +norm row of tiny"),
                           ("tiny_norm", "tiny_norm and tiny+norm (the +norm row of tiny): both would draw "
                                         "sheet_tiny_norm.png")):
        other = tmp_path / name
        shutil.copytree(run, other)
        with pytest.raises(ConfigError, match=re.escape(fragment)):
            sim_to_real([run, other], SCORED, adapt_norm=SOURCE)
        shutil.rmtree(other)


def test_each_model_is_adapted_once_for_every_set(run, monkeypatch) -> None:
    import slimdepth.report.sim_to_real as module
    from slimdepth.report.measure import ModelCache

    calls = []
    monkeypatch.setattr(module, "adapt_batchnorm", lambda *a, **k: calls.append(a) or adapt_batchnorm(*a, **k))
    cache = ModelCache()
    first = sim_to_real([run], SCORED, rows=1, adapt_norm=SOURCE, cache=cache)
    second = sim_to_real([run], SCORED.replace("traffic=2", "traffic=1"), rows=1, adapt_norm=SOURCE, cache=cache)
    assert len(calls) == 1 and [s.name for s in second.scores] == [s.name for s in first.scores]
    sim_to_real([run], SCORED, rows=1, adapt_norm=SOURCE.replace("num=3", "num=2"), cache=cache)  # other frames
    assert len(calls) == 2
    sim_to_real([run], SCORED, rows=1, adapt_norm=SOURCE, cache=ModelCache((32, 128)))  # another input size
    assert len(calls) == 3 and calls[-1][2] == (32, 128)


def test_a_folder_holding_several_sets_is_refused_and_one_is_used(run, tmp_path, capsys) -> None:
    """The shared data's layout holds a drive and annotated streets: which statistics are used
    matters, so the parent is refused; a parent holding one set names it in the results."""
    real = _annotated_folder(tmp_path / "street", size=(48, 160))
    parent = tmp_path / "data"
    _annotated_folder(parent / "kitti_depth_annotated", n=3, size=(48, 160))
    out = tmp_path / "out"
    assert _script().main(["--run", str(run), "--real", str(real), "--out", str(out), "--adapt-norm", str(parent),
                           "--rows", "1"]) == 0
    saved = json.loads((out / "sim_to_real.json").read_text())
    assert saved["models"][1]["source"].endswith(f"re-estimated on {parent / 'kitti_depth_annotated'}")
    capsys.readouterr()
    (parent / "kitti_raw").mkdir()
    assert _script().main(["--run", str(run), "--real", str(real), "--out", str(tmp_path / "out2"),
                           "--adapt-norm", str(parent)]) == 2
    _one_line(capsys.readouterr().err, "--adapt-norm", "holds 2 real-frame folders (kitti_raw, kitti_depth_annotated)")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _script().main(["--run", str(run), "--real", str(real), "--out", str(tmp_path / "out2"),
                           "--adapt-norm", str(empty)]) == 2
    _one_line(capsys.readouterr().err, "--adapt-norm: ", "no KITTI frames")
    assert not (tmp_path / "out2").exists()


def test_a_bad_source_stops_the_script_before_it_trains(tmp_path, capsys) -> None:
    real = _annotated_folder(tmp_path / "street", size=(48, 160))
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(json.dumps(TINY_RECIPE))  # JSON is YAML
    assert _script().main(["--config", str(recipe), "--train-out", str(tmp_path / "trained"), "--real", str(real),
                           "--adapt-norm", "synthetic,num=2,size=32x106,split=val",
                           "--out", str(tmp_path / "out")]) == 2
    _one_line(capsys.readouterr().err, "--adapt-norm", "from the test split")
    assert not (tmp_path / "trained").exists() and not (tmp_path / "out").exists()
