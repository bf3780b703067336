"""The command line: verbs, outputs, and one-line errors with a non-zero exit on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from slimdepth.fileio import list_files, read_depth, write_depth
from tests.helpers import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory) -> Path:
    from slimdepth.data.synthetic import write_synthetic

    out = tmp_path_factory.mktemp("cli") / "synth"
    write_synthetic(out, num=3, size=(48, 160), seed=11)
    return out


def test_help_lists_every_verb(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "--help")
    assert code == 0
    for verb in ("data", "evaluate-preds"):
        assert verb in out
    for args in (("data", "--help"), ("data", "synth", "--help"), ("data", "show", "--help"),
                 ("data", "info", "--help"), ("evaluate-preds", "--help")):
        code, out, _ = run_cli(monkeypatch, capsys, *args)
        assert code == 0 and "Usage" in out, args


def test_synth_writes_resumes_and_refuses(monkeypatch, capsys, tmp_path):
    out = tmp_path / "synth"
    code, stdout, _ = run_cli(monkeypatch, capsys, "data", "synth", "--out", str(out), "--num", "2", "--size", "32x96", "--no-right")
    assert code == 0 and "2 written" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["K", "depth", "lidar", "meta.json", "rgb", "seg"]
    assert Image.open(out / "rgb" / "000001.png").size == (96, 32)
    code, stdout, _ = run_cli(monkeypatch, capsys, "data", "synth", "--out", str(out), "--num", "3", "--size", "32x96", "--no-right")
    assert code == 0 and "1 written, 2 already there" in stdout
    code, _, err = run_cli(monkeypatch, capsys, "data", "synth", "--out", str(out), "--num", "3", "--size", "64x96", "--no-right")
    assert_one_line_error(code, err, "other settings", "size")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    code, _, err = run_cli(monkeypatch, capsys, "data", "synth", "--out", str(mine), "--num", "1")
    assert_one_line_error(code, err, "refusing")
    assert (mine / "notes.txt").read_text() == "keep me" and len(list(mine.iterdir())) == 1


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("data", "synth", "--out", "{tmp}/x", "--size", "tall"), "HxW"),
        (("data", "synth", "--out", "{tmp}/x", "--num", "0"), "--num"),
        (("data", "synth", "--out", "{tmp}/x", "--split", "holdout"), "split"),
        (("data", "show", "{tmp}/missing", "--out", "{tmp}/s.png"), "directory not found"),
        (("data", "show", "synthetic,num=2,colour=red", "--out", "{tmp}/s.png"), "no option 'colour'"),
        (("data", "show", "synthetic,num=2", "--out", "{tmp}/s.jpg"), ".png"),
        (("data", "show", "synthetic,num=2", "--out", "{tmp}/s.png", "--augment", "twirl"), "twirl"),
        (("data", "show", "synthetic,num=2", "--out", "{tmp}/s.png", "--cmap", "rainbowz"), "rainbowz"),
        (("data", "info", "nyu:{tmp}"), ""),
        (("evaluate-preds", "--pred", "{tmp}/none", "--data", "synthetic,num=2"), "prediction directory not found"),
        (("evaluate-preds", "--pred", "{tmp}", "--data", "synthetic,num=2", "--crop", "round"), "--crop"),
    ],
)
def test_bad_input_gives_one_line_errors(monkeypatch, capsys, tmp_path, args, fragment):
    args = tuple(a.replace("{tmp}", str(tmp_path)) for a in args)
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert_one_line_error(code, err, fragment)
    assert code == 1


def test_an_unexpected_failure_is_still_one_line(monkeypatch, capsys):
    import slimdepth.deploy.cost as tools  # where `slimdepth models` builds the zoo

    def broken(*args, **kwargs):
        raise RuntimeError("something inside went wrong\nsecond line")

    monkeypatch.setattr(tools, "build_model", broken, raising=False)
    monkeypatch.setattr("slimdepth.models.zoo.build_model", broken)
    code, _, err = run_cli(monkeypatch, capsys, "models", "--size", "32x32")
    assert_one_line_error(code, err, "unexpected RuntimeError: something inside went wrong", "SLIMDEPTH_DEBUG")
    monkeypatch.setenv("SLIMDEPTH_DEBUG", "1")
    with pytest.raises(RuntimeError):
        run_cli(monkeypatch, capsys, "models", "--size", "32x32")


def test_an_output_path_through_a_file_is_a_one_line_error(monkeypatch, capsys, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("a user's file\n")
    for args in (("data", "show", "synthetic,num=1,size=32x96", "--out", f"{blocker}/sheet.png"),
                 ("data", "synth", "--out", f"{blocker}/sub", "--num", "1", "--size", "32x96"),
                 ("evaluate-preds", "--pred", str(tmp_path), "--data", "synthetic,num=1", "--json", f"{blocker}/r.json")):
        code, _, err = run_cli(monkeypatch, capsys, *args)
        assert_one_line_error(code, err, "afile")
        assert code == 1 and blocker.read_text() == "a user's file\n"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("data", "synth", "--out", "x", "--num", "abc"), "--num"),
        (("data", "show"), "Missing argument"),
        (("data", "unknown-verb"), "unknown-verb"),
        (("--frobnicate",), "--frobnicate"),
        (("evaluate-preds", "--data", "synthetic"), "--pred"),
    ],
)
def test_bad_usage_gives_one_line_errors_with_status_2(monkeypatch, capsys, args, fragment):
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert_one_line_error(code, err, fragment, "--help")
    assert code == 2


def test_limits_are_checked_before_any_work(monkeypatch, capsys, tmp_path):
    for args, fragment in (
        (("--seed", "-1"), "seed"),
        (("--size", "100000x100000"), "Mpixels"),
    ):
        code, _, err = run_cli(monkeypatch, capsys, "data", "synth", "--out", str(tmp_path / "x"), *args)
        assert_one_line_error(code, err, fragment)
        assert not (tmp_path / "x").exists()
    code, _, err = run_cli(monkeypatch, capsys, "data", "info", "kitti")
    assert_one_line_error(code, err, "kitti:PATH")


def test_show_draws_a_contact_sheet_and_keeps_existing_files(monkeypatch, capsys, synth_dir, tmp_path):
    sheet = tmp_path / "sheet.png"
    code, out, _ = run_cli(monkeypatch, capsys, "data", "show", str(synth_dir), "--out", str(sheet), "--num", "2")
    assert code == 0 and "2 samples" in out
    img = np.asarray(Image.open(sheet))
    assert img.ndim == 3 and img.shape[1] > 4 * 160  # image, depth, LiDAR, labels, right
    before = sheet.read_bytes()
    code, _, err = run_cli(monkeypatch, capsys, "data", "show", "synthetic,num=1,size=32x96", "--out", str(sheet))
    assert_one_line_error(code, err, "already exists")
    assert sheet.read_bytes() == before
    code, _, _ = run_cli(monkeypatch, capsys, "data", "show", str(synth_dir), "--out", str(sheet), "--num", "1",
                         "--augment", "hflip,rotate", "--cmap", "turbo", "--overwrite")
    assert code == 0 and sheet.read_bytes() != before


def test_info_summarises_a_dataset(monkeypatch, capsys, synth_dir):
    code, out, _ = run_cli(monkeypatch, capsys, "data", "info", str(synth_dir))
    assert code == 0
    assert "3 samples" in out and "48x160" in out and "lidar_depth" in out and "fx=" in out


def test_evaluate_preds_scores_and_writes_json(monkeypatch, capsys, synth_dir, tmp_path):
    pred = tmp_path / "pred"
    for i in range(3):
        gt = read_depth(synth_dir / "depth" / f"{i:06d}.png", "kitti")
        write_depth(pred / f"{i:06d}.npy", np.where(gt > 0, gt * 0.75, 1.0), "npy")
    report = tmp_path / "report.json"
    code, out, _ = run_cli(monkeypatch, capsys, "evaluate-preds", "--pred", str(pred), "--data", str(synth_dir),
                           "--json", str(report))
    assert code == 0 and "3 images scored" in out and "AbsRel" in out
    metrics = json.loads(report.read_text())["metrics"]
    assert metrics["abs_rel"] == pytest.approx(0.25, abs=1e-6)  # every prediction is 25% too near
    assert metrics["d1"] == pytest.approx(0.0, abs=1e-9) and metrics["d2"] == pytest.approx(1.0)
    code, out, _ = run_cli(monkeypatch, capsys, "evaluate-preds", "--pred", str(pred), "--data", str(synth_dir),
                           "--median-scaling")
    assert code == 0 and "ratio mean 1.333" in out
    code, _, err = run_cli(monkeypatch, capsys, "evaluate-preds", "--pred", str(pred), "--data", str(synth_dir),
                           "--json", str(report))
    assert_one_line_error(code, err, "already exists")
    (pred / "000001.npy").write_bytes(b"not a numpy file")
    code, _, err = run_cli(monkeypatch, capsys, "evaluate-preds", "--pred", str(pred), "--data", str(synth_dir))
    assert_one_line_error(code, err, "000001.npy")
    (pred / "000001.npy").unlink()
    code, _, err = run_cli(monkeypatch, capsys, "evaluate-preds", "--pred", str(pred), "--data", str(synth_dir))
    assert_one_line_error(code, err, "missing", "000001")


def test_console_entry_point_runs_as_a_program(tmp_path):
    result = subprocess.run([sys.executable, "-m", "slimdepth", "data", "info", str(tmp_path / "nothing")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: ") and "Traceback" not in result.stderr
    result = subprocess.run([sys.executable, "-m", "slimdepth", "--version"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("slimdepth ")


def test_interrupted_synth_exits_cleanly_and_resumes(tmp_path):
    import signal
    import time

    out = tmp_path / "synth"
    cmd = [sys.executable, "-m", "slimdepth", "data", "synth", "--out", str(out), "--num", "60", "--size", "48x160",
           "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list_files(out / "K", (".txt",))) < 3:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before it could be interrupted")
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "interrupted"
    # each worker stopped mid-write may leave a temporary ".000009.xyz.txt", which pathlib's glob
    # matches and the resume deletes: count the finished K files (written last per frame) as
    # the readers do, without dot files
    done = len(list_files(out / "K", (".txt",)))
    assert 0 < done < 60
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"{60 - done} written, {done} already there" in result.stdout
    for sub in ("rgb", "depth", "lidar", "seg", "right", "K"):
        assert len(list((out / sub).iterdir())) == 60, sub  # no half-written temporary file is left
