"""Pseudo-labels: stereo matching, LiDAR compensation, teacher labels, the written dataset, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from slimdepth.data.registry import build_dataset
from slimdepth.distill.pseudo_label import pseudo_label, stereo_depth_label
from slimdepth.distill.stereo import compensate, disparity_to_depth, label_quality, sgm_disparity
from slimdepth.errors import ConfigError, DataError
from slimdepth.models.checkpoint import save_model
from slimdepth.models.zoo import build_model
from tests.helpers import assert_one_line_error, run_cli
from tests.test_kitti import write_kitti_tree

SYNTH = "synthetic,num=3,size=96x320,right=true,seg=false"


@settings(max_examples=30, deadline=None)
@given(d=st.lists(st.floats(0, 200, allow_nan=False), min_size=1, max_size=20), fx=st.floats(10, 2000),
       baseline=st.floats(0.05, 2))
def test_disparity_to_depth_is_the_formula(d, fx, baseline):
    disp = np.array(d, np.float32)
    depth = disparity_to_depth(disp, fx, baseline, min_disparity=1.0)
    ok = disp >= 1.0
    assert np.allclose(depth[ok], np.float32(fx * baseline) / disp[ok], rtol=1e-6)
    assert (depth[~ok] == 0).all()


def test_sgm_recovers_a_known_shift():
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (60, 200), dtype=np.uint8)
    texture = np.repeat(np.repeat(texture, 2, 0), 2, 1)[:96, :320]  # blobs of 2x2: matchable, not aliased
    d = 12
    left = texture
    right = np.zeros_like(left)
    right[:, : 320 - d] = left[:, d:]  # a point at x in the left image is at x - d in the right one
    disp = sgm_disparity(np.stack([left] * 3, -1), np.stack([right] * 3, -1), max_disparity=32)
    inner = disp[8:-8, 40:-40]
    assert (inner > 0).mean() > 0.95
    assert np.abs(inner[inner > 0] - d).max() <= 0.5
    assert (disp[:, :d] == 0).all()  # no match can lie left of the right image


def test_compensation_fits_rejects_and_writes_the_lidar_in():
    rng = np.random.default_rng(1)
    truth = np.linspace(5, 60, 100, dtype=np.float32)[:, None].repeat(120, 1)  # depth grows down the rows
    disp_true = 100.0 / truth
    stereo = 100.0 / (1.1 * disp_true + 0.05)  # a 10% disparity scale error and an offset
    outliers = np.zeros_like(truth, dtype=bool)
    outliers[40:46, 60:66] = True
    stereo[outliers] *= 3.0  # a blob of bad matches
    lidar = np.zeros_like(truth)
    lidar[::4, ::3] = truth[::4, ::3]  # sparse, exact
    label, info = compensate(stereo, lidar, tolerance=0.05, window=7)
    # the fit undoes the error: 1/z = a / z_stereo + b with a = 1/1.1, b = -0.05/(1.1 * 100)
    assert info.scale == pytest.approx(1 / 1.1, rel=1e-3)
    assert info.offset == pytest.approx(-0.05 / 110, abs=3e-5)  # Huber down-weights the blob, not to zero
    keep = (label > 0) & ~outliers & (lidar == 0)
    assert np.allclose(label[keep], truth[keep], rtol=5e-3)
    assert (label[outliers & (lidar == 0)] == 0).all()  # the bad matches are rejected
    assert np.array_equal(label[lidar > 0], lidar[lidar > 0])  # LiDAR points written in exactly
    assert info.coverage > 0.95


def test_stray_matches_between_a_near_and_a_far_surface_are_rejected():
    truth = np.full((60, 80), 50.0, np.float32)
    truth[:, 40:] = 5.0  # a near object in front of a far wall: a depth edge at column 40
    lidar = np.zeros_like(truth)
    lidar[::3, ::3] = truth[::3, ::3]
    stereo = truth.copy()
    stereo[20:40, 36:44] = 20.0  # SGM's typical failure: a smear halfway between the two surfaces
    label, _ = compensate(stereo, lidar, tolerance=0.1, window=9)
    smear = np.zeros_like(truth, dtype=bool)
    smear[20:40, 36:44] = True
    assert (label[smear & (lidar == 0)] == 0).all()
    good = ~smear & (lidar == 0)
    assert np.allclose(label[good], truth[good], rtol=1e-2)  # both sides of the edge survive


def test_label_quality_known_answer():
    gt = np.array([[10.0, 20.0, 0.0, 100.0]])
    label = np.array([[11.0, 20.0, 5.0, 100.0]])  # 100 m lies beyond the 80 m cap
    q = label_quality(label, gt)
    assert q["abs_rel"] == pytest.approx(0.05) and q["rmse"] == pytest.approx(np.sqrt(0.5))
    assert q["d1"] == 1.0 and q["coverage"] == 1.0 and q["pixels"] == 2


def test_stereo_labels_on_synthetic_frames_beat_raw_stereo_and_cover_more_than_lidar(tmp_path):
    summary = pseudo_label(SYNTH, tmp_path / "pl", stereo=True, report=True)
    rep = summary["report"]
    assert rep["frames"] == 3
    raw, comp, lidar = rep["raw"], rep["compensated"], rep["lidar"]
    assert comp["abs_rel"] < 0.8 * raw["abs_rel"] and comp["rmse"] < raw["rmse"]
    assert comp["d1"] > 0.9 and comp["coverage"] > 0.85
    assert comp["coverage"] > 1.5 * lidar["coverage"]  # dense where the 64 beams are not
    assert json.loads((tmp_path / "pl" / "report.json").read_text()) == rep


def test_the_written_dataset_reads_back_with_the_labels(tmp_path):
    pseudo_label(SYNTH, tmp_path / "pl", stereo=True)
    written = build_dataset(f"folder:{tmp_path / 'pl'}")
    source = build_dataset(SYNTH)
    assert len(written) == 3 and written.names() == source.names()
    for i in range(3):
        s, w = source.load(i), written.load(i)
        label = stereo_depth_label(s)["label"]
        assert torch.equal(w["image"], s["image"])  # uint8 frames round-trip exactly
        assert np.abs(w["depth"][0].numpy() - label).max() <= 1 / 256 + 1e-6  # KITTI PNG quantisation
        assert torch.allclose(w["lidar_depth"], s["lidar_depth"], atol=1 / 256)
        assert torch.allclose(w["K"], s["K"])


def test_a_depth_teacher_writes_its_prediction(tmp_path):
    torch.manual_seed(0)
    model = build_model("litedepth", internal_size="none", max_depth=80.0).eval()
    save_model(model, tmp_path / "t.safetensors", metadata={"input_size": [64, 192]})
    pseudo_label("synthetic,num=2,size=96x320", tmp_path / "pl", depth_teacher=tmp_path / "t.safetensors")
    frame = build_dataset("synthetic,num=2,size=96x320").load(1)
    with torch.no_grad():  # at the teacher's input size, resized back
        x = torch.nn.functional.interpolate(frame["image"][None], size=(64, 192), mode="bilinear", align_corners=False)
        expected = torch.nn.functional.interpolate(model(x), size=(96, 320), mode="bilinear", align_corners=False)
    got = build_dataset(f"folder:{tmp_path / 'pl'}").load(1)["depth"]
    assert torch.allclose(got, expected[0], atol=1 / 256 + 1e-5)


def test_rerunning_continues_and_other_settings_are_refused(tmp_path):
    first = pseudo_label("synthetic,num=2,size=96x320,right=true", tmp_path / "pl", stereo=True)
    assert first["written"] == 2
    again = pseudo_label("synthetic,num=2,size=96x320,right=true", tmp_path / "pl", stereo=True)
    assert (again["written"], again["kept"]) == (0, 2)
    (tmp_path / "pl" / "rgb" / "000001.png").unlink()  # interrupted before the image, written last
    assert pseudo_label("synthetic,num=2,size=96x320,right=true", tmp_path / "pl", stereo=True)["written"] == 1
    with pytest.raises(ConfigError, match="other settings"):
        pseudo_label("synthetic,num=2,size=96x320,right=true", tmp_path / "pl", stereo=True, tolerance=0.2)


def test_a_segmentation_teacher_alone_keeps_the_inputs_depth(tmp_path):
    model = build_model("tiny-multires", max_depth=80.0, num_classes=4)
    save_model(model, tmp_path / "seg.safetensors")
    pseudo_label("synthetic,num=2,size=48x160", tmp_path / "pl", seg_teacher=tmp_path / "seg.safetensors")
    got = build_dataset(f"folder:{tmp_path / 'pl'}").load(0)
    source = build_dataset("synthetic,num=2,size=48x160").load(0)
    assert torch.allclose(got["depth"], source["depth"], atol=1 / 256)
    assert got["seg"].shape == (48, 160) and int(got["seg"].max()) < 4
    with pytest.raises(ConfigError, match="no depth to keep"):
        pseudo_label("synthetic,num=2,size=48x160,labels=false", tmp_path / "pl2", seg_teacher=tmp_path / "seg.safetensors")


def test_kitti_right_images_and_the_baseline_from_the_calibration(tmp_path):
    root = write_kitti_tree(tmp_path / "raw")
    sample = build_dataset(f"kitti:{root},right=true")[0]
    assert sample["meta"]["baseline"] == pytest.approx(1.0)  # P_rect_03 t_x = -100 at fx = 100
    assert sample["right_image"].shape == sample["image"].shape
    assert not torch.equal(sample["right_image"], sample["image"])
    with pytest.raises(ConfigError, match="side=l"):
        build_dataset(f"kitti:{root},right=true,side=r")


# ------------------------------------------------------------------ bad input
def _teacher(tmp_path: Path) -> Path:
    path = tmp_path / "teacher.safetensors"
    save_model(build_model("litedepth", internal_size="none"), path)
    return path


BAD = {
    "missing teacher": (lambda tmp: ["--data", "synthetic,num=2,size=48x160", "--depth-teacher", str(tmp / "no.safetensors")],
                        "no.safetensors"),
    "corrupt teacher": (lambda tmp: ["--data", "synthetic,num=2,size=48x160", "--depth-teacher", str(_corrupt(tmp))],
                        "bad.safetensors"),
    "stereo without right images": (lambda tmp: ["--data", "synthetic,num=2,size=48x160", "--stereo"], "right=true"),
    "both depth sources": (lambda tmp: ["--data", SYNTH, "--stereo", "--depth-teacher", str(_teacher(tmp))], "choose one"),
    "no source": (lambda tmp: ["--data", SYNTH], "nothing to label"),
    "report without stereo": (lambda tmp: ["--data", SYNTH, "--depth-teacher", str(_teacher(tmp)), "--report"], "--report"),
    "unknown dataset": (lambda tmp: ["--data", "synthetik", "--stereo"], "synthetik"),
    "kitti without image_03": (lambda tmp: ["--data", f"kitti:{_kitti_left_only(tmp)},right=true", "--stereo"],
                               "image_03"),
}


def _corrupt(tmp: Path) -> Path:
    good = _teacher(tmp)
    bad = tmp / "bad.safetensors"
    bad.write_bytes(good.read_bytes()[:100])
    bad.with_suffix(".json").write_text(good.with_suffix(".json").read_text())
    return bad


def _kitti_left_only(tmp: Path) -> Path:
    import shutil

    root = write_kitti_tree(tmp / "raw")
    shutil.rmtree(next(root.glob("*/*/image_03")))
    return root


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_and_writes_nothing(case, tmp_path, monkeypatch, capsys):
    args, fragment = BAD[case]
    code, _, err = run_cli(monkeypatch, capsys, "pseudo-label", "--out", str(tmp_path / "pl"), *args(tmp_path))
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "pl").exists() or not any((tmp_path / "pl").iterdir())


def test_a_folder_of_other_files_and_the_dataset_itself_are_never_written_into(tmp_path, monkeypatch, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    code, _, err = run_cli(monkeypatch, capsys, "pseudo-label", "--data", SYNTH, "--out", str(mine), "--stereo")
    assert_one_line_error(code, err, "not empty")
    assert (mine / "notes.txt").read_text() == "keep" and len(list(mine.iterdir())) == 1
    pseudo_label(SYNTH, tmp_path / "pl", stereo=True)
    before = sorted(p.stat().st_mtime_ns for p in (tmp_path / "pl").rglob("*.png"))
    code, _, err = run_cli(monkeypatch, capsys, "pseudo-label", "--data", f"folder:{tmp_path / 'pl'}", "--out",
                           str(tmp_path / "pl" / "rgb" / "labels"), "--depth-teacher", str(_teacher(tmp_path)))
    assert_one_line_error(code, err, "overlaps")
    assert sorted(p.stat().st_mtime_ns for p in (tmp_path / "pl").rglob("*.png")) == before


def test_cli_prints_the_report(tmp_path, monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "pseudo-label", "--data", SYNTH, "--out", str(tmp_path / "pl"),
                             "--stereo", "--report")
    assert code == 0, err
    assert "compensated" in out and "lidar" in out and f"folder:{tmp_path / 'pl'}" in out


# ------------------------------------------------------------------ real data
def test_sgm_on_a_real_middlebury_pair():
    """A real stereo pair with ground-truth disparity (Middlebury 2014, shipped with scikit-image)."""
    data = pytest.importorskip("skimage.data")
    left, right, gt = data.stereo_motorcycle()
    disp = sgm_disparity(left, right, max_disparity=128)
    valid = np.isfinite(gt) & (gt > 0)
    covered = valid & (disp > 0)
    assert covered.sum() / valid.sum() > 0.8
    assert (np.abs(disp[covered] - gt[covered]) > 2).mean() < 0.08  # bad-2 error rate
    assert np.median(np.abs(disp[covered] - gt[covered])) < 0.5


@pytest.mark.realdata
def test_real_kitti_frames_keep_their_velodyne_points(shared_data, tmp_path):
    """The real KITTI sample has no image_03, so a depth teacher labels it; the Velodyne
    points travel along as lidar/ for evaluation."""
    spec = f"kitti:{shared_data / 'kitti_raw'}"
    source = build_dataset(spec)
    pseudo_label(spec, tmp_path / "pl", depth_teacher=_teacher(tmp_path))
    written = build_dataset(f"folder:{tmp_path / 'pl'}")
    assert len(written) == len(source)
    s, w = source.load(0), written.load(0)
    assert torch.allclose(w["lidar_depth"], s["depth"], atol=1 / 256)
    assert (w["depth"] > 0).float().mean() > 0.99  # a teacher labels every pixel


def test_a_written_synthetic_folder_keeps_its_stereo_baseline(tmp_path):
    from slimdepth.data.synthetic import write_synthetic

    write_synthetic(tmp_path / "syn", 2, "96x320", components=["depth", "lidar", "right"])
    sample = build_dataset(f"folder:{tmp_path / 'syn'}").load(0)
    assert sample["meta"]["baseline"] == pytest.approx(0.54)
    summary = pseudo_label(f"folder:{tmp_path / 'syn'}", tmp_path / "pl", stereo=True, report=True)
    assert summary["report"]["compensated"]["coverage"] > 0.8  # the dense depth/ scores it, lidar/ compensates
    meta = json.loads((tmp_path / "syn" / "meta.json").read_text())
    (tmp_path / "syn" / "meta.json").write_text(json.dumps({**meta, "baseline": -1}))
    with pytest.raises(DataError, match="baseline must be a positive"):
        build_dataset(f"folder:{tmp_path / 'syn'}")
