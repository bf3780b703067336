"""Sim-to-real scoring (``report.sim_to_real`` and ``benchmarks/sim_to_real.py``): the numbers equal
a computation by hand in NumPy, the flat prior is the flat-road formula, median scaling removes a
constant factor, the contact sheet's size follows from its rows and columns, training is resumable,
and bad input is one line with exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from slimdepth.deploy.exported import load_for_inference
from slimdepth.errors import ConfigError
from slimdepth.evaluate.conventions import crop_box, get_preset
from slimdepth.report.real import (REAL_SHEET_WIDTH, REAL_TITLE_HEIGHT, RealScorer, open_real_frames, real_folders,
                                   real_sets)
from slimdepth.report.sim_to_real import (CONSTANT, DISTANCE_BANDS, FLAT_PRIOR, PARTS, band_region, flat_prior_depth, sim_to_real,
                                         transfer_sheet, write_sim_to_real)
from slimdepth.train.run import resolve_config, train_or_reuse
from slimdepth.train.trainer import Trainer
from tests.conftest import shared_data_dir
from tests.helpers import TINY_RECIPE, load_script

pytestmark = pytest.mark.realdata

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "sim_to_real.py"
TINY = TINY_RECIPE
ROWS = 2
#: a KITTI frame and the side_by_side / stack_rows gaps
FRAME_H, FRAME_W, PANEL_GAP, ROW_GAP = 375, 1242, 4, 6


@pytest.fixture(scope="module")
def real() -> Path:
    root = shared_data_dir()
    if not (root / "kitti_raw").is_dir():
        pytest.skip(f"real KITTI frames not found at {root / 'kitti_raw'}")
    return root


@pytest.fixture(scope="module")
def two_frames(real, tmp_path_factory) -> Path:
    """A KITTI raw folder with the first two frames of the shared one (links), for the script's runs."""
    src = real / "kitti_raw" / "2011_09_26"
    day = tmp_path_factory.mktemp("kitti") / "2011_09_26"
    for calib in src.glob("calib_*.txt"):
        (day / calib.name).parent.mkdir(parents=True, exist_ok=True)
        (day / calib.name).symlink_to(calib)
    for rel in ("image_02/data", "velodyne_points/data"):
        files = sorted((src / "2011_09_26_drive_0000_sync" / rel).iterdir())[:2]
        (day / "2011_09_26_drive_0000_sync" / rel).mkdir(parents=True)
        for f in files:
            (day / "2011_09_26_drive_0000_sync" / rel / f.name).symlink_to(f)
    return day.parent


@pytest.fixture(scope="module")
def annotated(real) -> Path:
    """The shared data's KITTI annotated-depth frames (three frames of other drives: ordinary streets)."""
    path = real / "kitti_depth_annotated"
    if not path.is_dir():
        pytest.skip(f"KITTI annotated depth not found at {path}")
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A real (tiny) training run: 4 steps of tiny-multires at 32x96 on synthetic scenes."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    Trainer(resolve_config(None, [], TINY), out).fit()
    return out


@pytest.fixture(scope="module")
def result(run, real):
    return sim_to_real([run], real, rows=ROWS, flat_prior=True, constant=True)


@pytest.fixture(scope="module")
def frames(real) -> list[dict]:
    dataset = open_real_frames(real)
    return [dataset[i] for i in range(len(dataset))]


def by_hand(preds: list[np.ndarray], gts: list[np.ndarray],
            median_scaling: bool) -> tuple[dict[str, float], list[float]]:
    """δ1, AbsRel, RMSE averaged over frames, KITTI Garg crop and 0.001-80 m, in plain NumPy."""
    per, ratios = [], []
    for pred, gt in zip(preds, gts):
        top, bottom, left, right = crop_box(*gt.shape, "garg")
        crop = np.zeros(gt.shape, bool)
        crop[top:bottom, left:right] = True
        mask = crop & (gt > 1e-3) & (gt < 80.0)
        p, g = pred[mask].astype(np.float64), gt[mask].astype(np.float64)
        if median_scaling:
            ratios.append(np.median(g) / np.median(p))
            p = p * ratios[-1]
        p = np.clip(p, 1e-3, 80.0)
        d1 = np.mean(np.maximum(p / g, g / p) < 1.25)
        per.append((d1, np.mean(np.abs(p - g) / g), np.sqrt(np.mean((p - g) ** 2))))
    d1, abs_rel, rmse = np.mean(per, axis=0)
    return {"d1": d1, "abs_rel": abs_rel, "rmse": rmse}, ratios


def flat_road(K: np.ndarray, height: int, width: int) -> np.ndarray:
    """z = fy * 1.65 / (v - cy) below the horizon, 80 m at and above it, capped at 80 m."""
    fy, cy = K[1, 1], K[1, 2]
    z = np.full((height, width), 80.0)
    for v in range(height):
        if v > cy:
            z[v, :] = min(80.0, fy * 1.65 / (v - cy))
    return z


def predict_by_hand(run: Path, frames: list[dict], size: tuple[int, int] | None = None) -> list[np.ndarray]:
    """The run's prediction of each frame: resized to its input (or ``size``), predicted, resized back."""
    model, size = load_for_inference(run, "cpu", size)
    preds = []
    with torch.no_grad():
        for f in frames:
            x = F.interpolate(f["image"][None], size=size, mode="bilinear", align_corners=False)
            y = F.interpolate(model.eval()(x), size=(FRAME_H, FRAME_W), mode="bilinear", align_corners=False)
            preds.append(y[0, 0].numpy())
    return preds


def test_every_frame_is_scored_as_by_hand(result, run, frames) -> None:
    preds = predict_by_hand(run, frames)
    gts = [f["depth"][0].numpy() for f in frames]
    score = result.scores[0]
    assert result.frames == len(frames) == 20 and score.frames == 20  # all frames, not a sample
    ratios = assert_matches_by_hand(score, preds, gts)
    assert score.ratio["std"] == pytest.approx(np.std(ratios), rel=1e-5)


def assert_matches_by_hand(score, preds, gts) -> list[float]:
    """The score's metric and median-scaled numbers equal the NumPy computation; returns the ratios."""
    metric, _ = by_hand(preds, gts, median_scaling=False)
    scaled, ratios = by_hand(preds, gts, median_scaling=True)
    for key in ("d1", "abs_rel", "rmse"):
        assert score.metric[key] == pytest.approx(metric[key], rel=1e-5)
        assert score.median_scaled[key] == pytest.approx(scaled[key], rel=1e-5)
    assert score.ratio["mean"] == pytest.approx(np.mean(ratios), rel=1e-6)
    return ratios


def test_flat_prior_is_the_flat_road_formula(result, frames) -> None:
    frame = frames[0]
    K = frame["K"].numpy()
    assert K[1, 1] == pytest.approx(721.5377) and 150 < K[1, 2] < 200  # the horizon crosses the picture
    expected = flat_road(K, FRAME_H, FRAME_W)
    assert np.allclose(flat_prior_depth(K, FRAME_H, FRAME_W)[0].numpy(), expected, rtol=1e-6)
    gts = [f["depth"][0].numpy() for f in frames]
    priors = [flat_road(f["K"].numpy(), FRAME_H, FRAME_W) for f in frames]
    (prior,) = [s for s in result.scores if s.name == FLAT_PRIOR]
    assert_matches_by_hand(prior, priors, gts)


def test_constant_is_scored_median_scaled_only(result, frames) -> None:
    """One depth everywhere: its scaled numbers are those of the LiDAR's median per frame, worked
    out by hand; it has no metric score, no scale ratio and no metric region figures."""
    (const,) = [s for s in result.scores if s.name == CONSTANT]
    gts = [f["depth"][0].numpy() for f in frames]
    scaled, _ = by_hand([np.full_like(g, 7.0) for g in gts], gts, median_scaling=True)
    for key in ("d1", "abs_rel", "rmse"):
        assert const.median_scaled[key] == pytest.approx(scaled[key], rel=1e-5)
    assert 0.2 < const.median_scaled["d1"] < 0.6  # measured 0.381: a bar the models barely clear
    assert const.metric == {} and const.ratio == {}
    assert all(set(part) == {"scaled", "frames", "points"} for part in const.regions.values())
    saved = const.to_dict()
    assert saved["metric"] == {} and saved["scale_ratio"] == {} and saved["median_scaled"]["d1"] == const.median_scaled["d1"]


def test_road_and_above_road_split_the_lidar_points(result, frames) -> None:
    """Every LiDAR point is on the road or above it; on the road the flat prior is right (KITTI's
    camera is level and 1.65 m up), and on this congested drive most points are on vehicles."""
    (prior,) = [s for s in result.scores if s.name == FLAT_PRIOR]
    road, above = prior.regions["road"], prior.regions["above road"]
    total = sum(int((f["depth"] > 0).sum()) for f in frames)
    assert road["points"] + above["points"] == total
    # a road point is never nearer than 0.8 x the flat road, so the prior can only miss road points
    # that lie over 25% *beyond* the plane: few, if the camera is level and 1.65 m up (0.7% here)
    assert road["metric"]["d1"] > 0.95
    assert 0.5 < above["points"] / total < 0.9  # measured 0.72
    for score in result.scores:  # the model is split the same way and scored on every part
        assert set(score.regions) == set(PARTS)
        assert score.regions["road"]["points"] == road["points"]
    # every point above the road lies in one distance band (none at 80 m or more on this drive)
    bands = [prior.regions[band_region(*b)]["points"] for b in DISTANCE_BANDS]
    assert sum(bands) == above["points"]
    assert bands[0] > 0.5 * above["points"]  # measured 0.71: the drive's vehicles stand within 8 m


def test_median_scaling_removes_a_constant_factor(frames) -> None:
    lidar = frames[3]["depth"]
    pred = torch.where(lidar > 0, 0.4 * lidar, torch.full_like(lidar, 10.0))  # 2.5x too near where it counts
    scorer = RealScorer(get_preset("kitti"))
    assert scorer.add(pred, lidar) == pytest.approx(2.5)
    both = scorer.metrics()
    assert both["median-scaled"]["d1"] == 1.0 and both["median-scaled"]["abs_rel"] < 1e-6
    assert both["metric"]["d1"] == 0.0


def test_contact_sheet_has_a_row_per_frame_and_three_columns(result, frames, tmp_path) -> None:
    ((stem, sheet),) = result.sheets.items()  # one model: one sheet
    assert stem == "sheet_tiny" and len(result.sheet_frames) == ROWS
    assert result.sheet_frames == [frames[0]["meta"]["name"], frames[-1]["meta"]["name"]]  # spread over the folder
    row_h = REAL_TITLE_HEIGHT + FRAME_H
    assert sheet.shape == (ROWS * row_h + (ROWS - 1) * ROW_GAP, 3 * FRAME_W + 2 * PANEL_GAP, 3)
    for x in (FRAME_W, 2 * FRAME_W + PANEL_GAP):  # white gaps between the three panels, through every row
        assert (sheet[:, x:x + PANEL_GAP] == 255).all()
    lidar = sheet[REAL_TITLE_HEIGHT:row_h, 2 * (FRAME_W + PANEL_GAP):]
    raw = frames[0]["depth"][0].numpy() > 0
    assert (lidar.max(axis=2) > 0).sum() > 3 * raw.sum()  # the points are grown to be seen
    written = write_sim_to_real(result, tmp_path / "out")
    assert [p.name for p in written] == ["sim_to_real.json", "sheet_tiny.png"]
    png = Image.open(written[1])
    assert png.size == (REAL_SHEET_WIDTH, round(sheet.shape[0] * REAL_SHEET_WIDTH / sheet.shape[1]))
    two = transfer_sheet(frames[:1], [("a", [frames[0]["depth"]]), ("b", [frames[0]["depth"]])])
    assert two.shape == (row_h, 4 * FRAME_W + 3 * PANEL_GAP, 3)  # a second model: one more column


def test_training_is_resumed_and_reused(tmp_path) -> None:
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "run"
    Trainer(resolve_config(recipe, []), out, stop_after=1).fit()  # a run killed after one step
    assert train_or_reuse(recipe, out) == "resumed"
    last = out / "checkpoints" / "last.safetensors"
    before = last.stat().st_mtime_ns
    assert train_or_reuse(recipe, out) == "reused" and last.stat().st_mtime_ns == before  # nothing trained again
    with pytest.raises(ConfigError, match="another recipe"):
        train_or_reuse(recipe, out, ["train.epochs=3"])


def _script():
    return load_script(SCRIPT, "sim_to_real_script")


def _one_line(err: str, *fragments: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0]


def test_script_prints_the_table_and_refuses_to_overwrite(run, two_frames, tmp_path, capsys) -> None:
    script = _script()
    out = tmp_path / "out"
    real = str(two_frames)
    assert script.main(["--run", str(run), "--real", real, "--out", str(out), "--rows", "1", "--flat-prior",
                        "--constant"]) == 0
    printed = capsys.readouterr().out
    assert "2 real KITTI frames" in printed and "tiny " in printed and "flat prior " in printed
    (constant_row,) = [line for line in printed.splitlines() if line.startswith("constant ")][:1]
    assert constant_row.split("|")[1].split() == ["-", "-", "-"]  # no metric score for one depth everywhere
    assert sorted(p.name for p in out.iterdir()) == ["sheet_tiny.png", "sim_to_real.json"]
    assert script.main(["--run", str(run), "--real", real, "--out", str(out)]) == 2
    _one_line(capsys.readouterr().err, "--overwrite")
    assert script.default_out([run]) == run.parent / "tiny_sim2real"


def test_size_runs_every_model_at_that_size(run, two_frames, frames, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert _script().main(["--run", str(run), "--real", str(two_frames), "--out", str(out), "--rows", "1",
                           "--size", "64x192", "--flat-prior"]) == 0
    assert "every model run at 64x192 (--size)" in capsys.readouterr().out
    scores = {s["name"]: s for s in json.loads((out / "sim_to_real.json").read_text())["models"]}
    assert scores["tiny"]["input_size"] == [64, 192] and scores["flat prior"]["input_size"] is None
    gts = [f["depth"][0].numpy() for f in frames[:2]]
    for size, d1 in (((64, 192), scores["tiny"]["metric"]["d1"]), ((32, 96), None)):
        metric, _ = by_hand(predict_by_hand(run, frames[:2], size), gts, median_scaling=False)
        if d1 is not None:
            assert d1 == pytest.approx(metric["d1"], rel=1e-5)
        else:  # at its own size the run scores otherwise, so the option changed what was scored
            assert metric["d1"] != pytest.approx(scores["tiny"]["metric"]["d1"], rel=1e-5)


def test_size_is_refused_for_a_model_that_resizes_inside(two_frames, tmp_path, capsys) -> None:
    recipe = {**TINY, "model": {"name": "litedepth", "max_depth": 80.0, "internal_size": "32x64"},
              "train": {**TINY["train"], "epochs": 1}}
    lite = tmp_path / "lite"
    Trainer(resolve_config(None, [], recipe), lite).fit()
    out = tmp_path / "out"
    assert _script().main(["--run", str(lite), "--real", str(two_frames), "--out", str(out), "--size", "64x192"]) == 2
    _one_line(capsys.readouterr().err, "inside the network")
    assert not out.exists()


def test_size_is_refused_for_a_recipe_that_resizes_inside_before_training(two_frames, tmp_path, capsys) -> None:
    """--config with --size: the recipe's architecture is checked first, so nothing is trained."""
    recipe = tmp_path / "lite.yaml"
    recipe.write_text(yaml.safe_dump({**TINY, "model": {"name": "litedepth", "max_depth": 80.0, "internal_size": "32x64"}}))
    out, trained = tmp_path / "out", tmp_path / "trained"
    argv = ["--config", str(recipe), "--train-out", str(trained), "--real", str(two_frames), "--out", str(out),
            "--size", "64x192"]
    assert _script().main(argv) == 2
    _one_line(capsys.readouterr().err, "lite.yaml: resizes every input to 32x64 inside the network")
    assert not out.exists() and not trained.exists()
    # the same recipe with the resize switched off by --set passes the check (and would train)
    assert _script().check_args(_script().parse_args(argv + ["--set", "model.internal_size=none"])) == [trained]


@pytest.mark.parametrize("args, fragment", [
    (["--run", "{tmp}/missing"], "missing"),
    (["--run", "{run}", "--size", "0x96"], "--size"),
    (["--run", "{run}", "--size", "big"], "--size"),
    (["--run", "{run}", "--size", "32x96x3"], "--size"),
    (["--run", "{run}", "--real", "{tmp}"], "{tmp}"),
    (["--run", "{run}", "--rows", "0"], "--rows"),
    ([], "nothing to score"),
    (["--config", "configs/quickstart.yaml"], "--train-out"),
])
def test_bad_input_is_one_line(args, fragment, run, tmp_path, capsys) -> None:
    fill = {"tmp": str(tmp_path), "run": str(run)}
    args = [a.format(**fill) for a in args]
    assert _script().main([*args, "--out", str(tmp_path / "out")]) == 2
    _one_line(capsys.readouterr().err, fragment.format(**fill))
    assert not (tmp_path / "out").exists()


def test_bad_option_from_the_command_line(tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--rows", "six"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    _one_line(proc.stderr, "--rows")


# --------------------------------------------------------------------------------------------
# more than one real-frame folder: the shared data's congested drive and its annotated streets


def test_each_layout_gives_its_real_frame_folders(real, annotated, two_frames, tmp_path) -> None:
    raw = real / "kitti_raw"
    assert real_sets(real) == [raw, annotated]  # the shared data: both sets, the drive first
    assert real_sets(raw) == [raw] and real_sets(annotated) == [annotated] and real_sets(two_frames) == [two_frames]
    assert real_folders([real, two_frames]) == {"kitti_raw": raw, "kitti_depth_annotated": annotated,
                                                two_frames.name: two_frames}
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "kitti_raw").symlink_to(two_frames, target_is_directory=True)
    assert list(real_folders([raw, tmp_path / "b" / "kitti_raw"])) == ["kitti_raw", "kitti_raw_2"]  # names kept apart
    with pytest.raises(ConfigError, match="given twice"):
        real_folders([real, annotated])
    assert list(real_folders([two_frames / "2011_09_26" / ".."])) == [two_frames.name]  # never ".."
    # a KITTI raw root that also holds rgb/ and depth/ folders is still read as the raw drive
    mixed = tmp_path / "mixed"
    (mixed / "rgb").mkdir(parents=True)
    (mixed / "depth").mkdir()
    (mixed / "2011_09_26").symlink_to(two_frames / "2011_09_26", target_is_directory=True)
    assert real_sets(mixed) == [mixed] and len(open_real_frames(mixed)) == 2
    assert open_real_frames(mixed)[0]["meta"]["dataset"] == "kitti"
    with pytest.raises(ConfigError, match="not a directory"):
        real_folders([tmp_path / "missing"])


def test_annotated_frames_are_scored_as_by_hand(run, annotated) -> None:
    dataset = open_real_frames(annotated)
    frames = [dataset[i] for i in range(len(dataset))]
    result = sim_to_real([run], annotated, rows=1, flat_prior=True, constant=True)
    assert result.frames == len(frames) == 3 and result.real == annotated
    assert result.ground_truth == result.to_dict()["ground_truth"] == "KITTI annotated depth"
    gts = [f["depth"][0].numpy() for f in frames]
    assert all(0.15 < (g > 0).mean() < 0.25 for g in gts)  # dense annotations, not a sweep
    score, prior, const = (next(s for s in result.scores if s.name == n) for n in ("tiny", FLAT_PRIOR, CONSTANT))
    assert_matches_by_hand(score, predict_by_hand(run, frames), gts)
    assert_matches_by_hand(prior, [flat_road(f["K"].numpy(), FRAME_H, FRAME_W) for f in frames], gts)
    # ordinary streets: most points are on the road, where a level camera's flat road is right
    assert prior.metric["d1"] > 0.7 and prior.regions["road"]["points"] > 2 * prior.regions["above road"]["points"]
    assert const.median_scaled["d1"] < 0.4  # measured 0.248: one depth is no bar here, the road is


def test_script_scores_each_folder_into_its_own(run, two_frames, annotated, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert _script().main(["--run", str(run), "--real", str(two_frames), "--real", str(annotated), "--out", str(out),
                           "--rows", "1", "--flat-prior"]) == 0
    printed = capsys.readouterr().out
    assert "2 real KITTI frames" in printed and "ground truth: projected Velodyne" in printed
    assert "3 real KITTI frames" in printed and "ground truth: KITTI annotated depth" in printed
    assert sorted(p.name for p in out.iterdir()) == sorted([two_frames.name, "kitti_depth_annotated"])
    for folder, frames in ((two_frames.name, 2), ("kitti_depth_annotated", 3)):
        assert sorted(p.name for p in (out / folder).iterdir()) == ["sheet_tiny.png", "sim_to_real.json"]
        saved = json.loads((out / folder / "sim_to_real.json").read_text())
        assert saved["frames"] == frames and [m["name"] for m in saved["models"]] == ["tiny", FLAT_PRIOR]


def _annotated_folder(root: Path, n: int = 2, size: tuple[int, int] = (48, 160), mm: bool = False) -> Path:
    """A small well-formed annotated folder: images and 16-bit depth PNGs, 10 m everywhere, in
    KITTI's metres x 256 (or millimetres, said in meta.json, with ``mm``)."""
    for sub in ("rgb", "depth"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / "rgb" / f"{i:04d}.png")
        Image.fromarray(np.full(size, 10000 if mm else 2560, np.uint16)).save(root / "depth" / f"{i:04d}.png")
    if mm:
        (root / "meta.json").write_text(json.dumps({"depth_encoding": "mm"}))
    return root


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:60])


@pytest.mark.parametrize("corrupt, fragment", [
    (lambda r: _truncate(r / "depth" / "0001.png"), "0001.png"),
    (lambda r: (r / "depth" / "0001.png").write_text("not a png"), "0001.png"),
    (lambda r: Image.fromarray(np.zeros((48, 160), np.uint8)).save(r / "depth" / "0001.png"), "0001.png"),
    (lambda r: Image.fromarray(np.full((40, 160), 2560, np.uint16)).save(r / "depth" / "0001.png"), "0001"),
    (lambda r: (r / "depth" / "0001.png").unlink(), "0001"),
    (lambda r: _truncate(r / "rgb" / "0000.png"), "0000.png"),
    (lambda r: [f.unlink() for f in (r / "rgb").iterdir()], "no images"),
    (lambda r: _annotated_folder(r, size=(48, 64)), "not KITTI frames"),  # NYU-shaped frames
    (lambda r: (r / "meta.json").write_text('{"depth_encoding": "cm"}'), "depth_encoding"),
])
def test_bad_annotated_folders_are_one_line(corrupt, fragment, run, tmp_path, capsys) -> None:
    """Each class of damage to an annotated folder: a truncated, foreign, 8-bit or wrongly sized
    depth PNG, a missing depth file, an unreadable image, no images at all."""
    real = _annotated_folder(tmp_path / "ann")
    corrupt(real)
    assert _script().main(["--run", str(run), "--real", str(real), "--out", str(tmp_path / "out")]) == 2
    _one_line(capsys.readouterr().err, fragment)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("mm", [False, True])
def test_a_small_annotated_folder_is_scored(mm, run, tmp_path, capsys) -> None:
    """The well-formed folder the damage test starts from, 10 m everywhere in either encoding: the
    flat prior's metric figures are those of the flat road of KITTI's camera at 48x160 against 10 m
    (so the depths were read in metres), and one depth everywhere is exactly right median-scaled."""
    from slimdepth.geometry import kitti_like_intrinsics

    real = _annotated_folder(tmp_path / "ann", mm=mm)
    assert _script().main(["--run", str(run), "--real", str(real), "--out", str(tmp_path / "out"), "--constant",
                           "--flat-prior", "--rows", "1"]) == 0
    saved = json.loads((tmp_path / "out" / "sim_to_real.json").read_text())
    const, prior = (next(m for m in saved["models"] if m["name"] == n) for n in (CONSTANT, FLAT_PRIOR))
    assert saved["frames"] == 2 and saved["ground_truth"] == "KITTI annotated depth"
    assert const["median_scaled"]["d1"] == 1.0 and const["median_scaled"]["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    gt = np.full((48, 160), 10.0)
    metric, _ = by_hand([flat_road(kitti_like_intrinsics(48, 160), 48, 160)] * 2, [gt, gt], median_scaling=False)
    for key in ("d1", "abs_rel", "rmse"):
        assert prior["metric"][key] == pytest.approx(metric[key], rel=1e-5)
