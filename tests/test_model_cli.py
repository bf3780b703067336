"""The model verbs: models, cost, train, evaluate, predict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from slimdepth.fileio import read_depth, write_rgb
from tests.helpers import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny run trained once for the module (a few seconds)."""
    from slimdepth.train.run import resolve_config
    from slimdepth.train.trainer import Trainer

    root = tmp_path_factory.mktemp("trained")
    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "model": {"name": "litedepth", "internal_size": None, "variant": "small"},
        "data": {"train": "synthetic,num=8,size=48x160,lidar=false", "val": "synthetic,num=2,size=48x160,split=val",
                 "batch_size": 4, "workers": 0, "cache": True},
        "train": {"epochs": 1, "samples": 1},
        "schedule": {"warmup_steps": 0},
    }))
    Trainer(resolve_config(recipe, []), root / "run").fit()
    return root / "run"


def test_models_lists_the_zoo_with_costs(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "models", "--size", "64x96")
    assert code == 0
    for name in ("resnet50-unet", "resnet18-unet", "litedepth", "tiny-multires", "fastdepth"):
        assert name in out
    line = next(line for line in out.splitlines() if line.startswith("tiny-multires"))
    assert 0.2 < float(line.split()[1]) < 0.35  # millions of parameters


def test_cost_of_a_zoo_model_and_of_a_checkpoint(monkeypatch, capsys, tmp_path, trained):
    report = tmp_path / "cost.json"
    code, out, _ = run_cli(monkeypatch, capsys, "cost", "tiny-multires", "--size", "64x96", "--runs", "3",
                           "--warmup", "1", "--threads", "1", "--json", str(report))
    assert code == 0 and "tiny-multires" in out
    data = json.loads(report.read_text())
    assert data["macs"] > 0 and data["macs_by_kind"]["interpolation"] > 0
    assert 0 < data["latency"]["median_ms"] <= data["latency"]["p90_ms"] and data["latency"]["runs"] == 3
    assert data["params"] == 271092
    code, out, _ = run_cli(monkeypatch, capsys, "cost", str(trained), "--size", "48x160", "--runs", "2", "--warmup", "0")
    assert code == 0
    row = next(line for line in out.splitlines() if str(trained) in line)
    assert float(row.split()[-1]) > 0  # p90 latency in ms
    code, _, err = run_cli(monkeypatch, capsys, "cost", "no-such-model", "--size", "48x160")
    assert_one_line_error(code, err, "no-such-model", "neither a zoo model")
    code, _, err = run_cli(monkeypatch, capsys, "cost", "tiny-multires", "--runs", "0")
    assert_one_line_error(code, err, "--runs")


def test_train_verb_refuses_to_reuse_a_run(monkeypatch, capsys, tmp_path, trained):
    code, _, err = run_cli(monkeypatch, capsys, "train", str(trained / "config.yaml"), "--out", str(trained))
    assert_one_line_error(code, err, "exists and is not empty", "--resume")
    code, _, err = run_cli(monkeypatch, capsys, "train")
    assert_one_line_error(code, err, "recipe")
    code, _, err = run_cli(monkeypatch, capsys, "train", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "r"))
    assert_one_line_error(code, err, "missing.yaml")


def test_evaluate_a_run_directory(monkeypatch, capsys, tmp_path, trained):
    out_json = tmp_path / "eval.json"
    code, out, _ = run_cli(monkeypatch, capsys, "evaluate", str(trained), "--data", "synthetic,num=3,size=48x160,split=test",
                           "--json", str(out_json))
    assert code == 0 and "3 images scored" in out and "AbsRel" in out
    first = json.loads(out_json.read_text())["metrics"]
    code, out, _ = run_cli(monkeypatch, capsys, "evaluate", str(trained), "--data", "synthetic,num=3,size=48x160,split=test",
                           "--flip", "--median-scaling")
    assert code == 0 and "flip" in out and "ratio mean" in out
    assert 0 <= first["d1"] <= 1 and first["abs_rel"] > 0
    code, _, err = run_cli(monkeypatch, capsys, "evaluate", str(tmp_path / "nothing"), "--data", "synthetic,num=2")
    assert_one_line_error(code, err, "nothing")


def test_predict_writes_depth_files_that_evaluate_preds_reads(monkeypatch, capsys, tmp_path, trained):
    from slimdepth.data.synthetic import SceneGenerator

    images = tmp_path / "images"
    gen = SceneGenerator((48, 160), seed=3, components=("depth",))
    frames = [gen.frame(i) for i in range(2)]
    for i, f in enumerate(frames):
        write_rgb(images / f"{i:06d}.png", f.rgb)
    out = tmp_path / "pred"
    code, stdout, _ = run_cli(monkeypatch, capsys, "predict", str(trained), str(images), "--out", str(out),
                              "--ply", "--intrinsics", ",".join(str(v) for v in frames[0].K[[0, 1, 0, 1], [0, 1, 2, 2]]))
    assert code == 0 and "2 images" in stdout
    names = sorted(p.name for p in out.iterdir())
    assert names == ["000000.npy", "000000.ply", "000000.png", "000000_vis.png",
                     "000001.npy", "000001.ply", "000001.png", "000001_vis.png"]
    metres = np.load(out / "000000.npy")
    assert metres.shape == (48, 160) and (metres > 0).all()
    np.testing.assert_allclose(read_depth(out / "000000.png", "mm"), np.where(metres < 65.5, metres, 0), atol=6e-4)
    assert Image.open(out / "000000_vis.png").mode == "RGB"
    code, _, err = run_cli(monkeypatch, capsys, "predict", str(trained), str(images), "--out", str(out))
    assert_one_line_error(code, err, "already exists", "--overwrite")
    code, _, err = run_cli(monkeypatch, capsys, "predict", str(trained), str(images / "*.jpg"), "--out", str(tmp_path / "x"))
    assert_one_line_error(code, err, "no such image")
    code, _, err = run_cli(monkeypatch, capsys, "predict", str(trained), str(images), "--out", str(tmp_path / "y"), "--ply")
    assert_one_line_error(code, err, "--intrinsics")
    # the predictions score against the frames they came from
    from slimdepth.fileio import write_depth

    gt_root = tmp_path / "gt"
    for i, f in enumerate(frames):
        write_rgb(gt_root / "rgb" / f"{i:06d}.png", f.rgb)
        write_depth(gt_root / "depth" / f"{i:06d}.png", f.depth, "kitti")
    code, stdout, _ = run_cli(monkeypatch, capsys, "evaluate-preds", "--pred", str(out), "--data",
                              f"folder:{gt_root},depth_encoding=kitti")
    assert code == 0 and "2 images scored" in stdout


def test_predict_a_dataset_by_sample_name_for_evaluate_preds(monkeypatch, capsys, tmp_path, trained):
    out = tmp_path / "pred"
    data = "synthetic,num=3,size=48x160,split=test"
    code, stdout, _ = run_cli(monkeypatch, capsys, "predict", str(trained), "--data", data, "--out", str(out),
                              "--ply", "--png-encoding", "kitti")
    assert code == 0 and "NAME.png kitti" in stdout
    assert sorted(p.name for p in out.glob("*.npy")) == ["000000.npy", "000001.npy", "000002.npy"]
    np.testing.assert_allclose(read_depth(out / "000001.png", "kitti"), np.load(out / "000001.npy"), atol=0.5 / 256 + 1e-6)
    code, stdout, _ = run_cli(monkeypatch, capsys, "evaluate-preds", "--pred", str(out), "--data", data)
    assert code == 0 and "3 images scored" in stdout
    code, _, err = run_cli(monkeypatch, capsys, "predict", str(trained), "--out", str(tmp_path / "none"))
    assert_one_line_error(code, err, "--data")


def test_far_pixels_in_millimetre_pngs_are_reported(monkeypatch, capsys, tmp_path):
    from slimdepth.models.checkpoint import save_model
    from slimdepth.models.zoo import build_model

    model = build_model("tiny-multires")
    torch.nn.init.constant_(model.depth_heads[-1].conv.bias, 10.0)  # sigmoid ~ 1: everything ~80 m
    torch.nn.init.zeros_(model.depth_heads[-1].conv.weight)
    save_model(model, tmp_path / "far.safetensors", metadata={"input_size": [48, 160]})
    code, _, err = run_cli(monkeypatch, capsys, "predict", str(tmp_path / "far.safetensors"), "--data",
                           "synthetic,num=1,size=48x160", "--out", str(tmp_path / "p"))
    assert code == 0 and err.strip().splitlines()[-1].startswith("warning: 7680 pixels beyond 65.5 m were written as 0")


def test_model_verbs_check_devices_limits_and_sizes(monkeypatch, capsys, tmp_path, trained):
    code, _, err = run_cli(monkeypatch, capsys, "evaluate", str(trained), "--data", "synthetic,num=2", "--limit", "0")
    assert_one_line_error(code, err, "--limit")
    code, _, err = run_cli(monkeypatch, capsys, "evaluate", str(trained), "--data", "synthetic,num=2", "--device", "tpu")
    assert_one_line_error(code, err, "device")
    code, out, _ = run_cli(monkeypatch, capsys, "cost", str(trained), "--runs", "1", "--warmup", "0")
    assert code == 0 and " 48x160 " in out  # the checkpoint's training size, not the default


def test_flip_augmentation_averages_the_mirrored_prediction():
    from slimdepth.evaluate.loop import predict_depth

    class LeftHeavy(torch.nn.Module):  # depth grows from left to right: not mirror-symmetric
        def forward(self, x):
            ramp = torch.linspace(1.0, 3.0, x.shape[-1])
            return (x.mean(1, keepdim=True) + 1.0) * ramp

    model = LeftHeavy()
    image = torch.rand(3, 8, 12)
    plain = predict_depth(model, [image], None)[0]
    both = predict_depth(model, [image], None, flip=True)[0]
    mirrored = model(image.flip(-1)[None]).flip(-1)[0]
    torch.testing.assert_close(both, 0.5 * (plain + mirrored))
    assert not torch.allclose(both, plain)


def test_predict_never_replaces_an_input_image_and_creates_nothing_on_a_bad_one(monkeypatch, capsys, tmp_path, trained):
    images = tmp_path / "photos"
    photo = (np.arange(48 * 160 * 3) % 251).astype(np.uint8).reshape(48, 160, 3)
    write_rgb(images / "shot.png", photo)
    before = (images / "shot.png").read_bytes()
    code, _, err = run_cli(monkeypatch, capsys, "predict", str(trained), str(images), "--out", str(images), "--overwrite")
    assert_one_line_error(code, err, "shot.png", "input images")
    assert (images / "shot.png").read_bytes() == before and sorted(p.name for p in images.iterdir()) == ["shot.png"]
    (tmp_path / "bad.png").write_bytes(b"not a png")
    code, _, err = run_cli(monkeypatch, capsys, "predict", str(trained), str(tmp_path / "bad.png"), "--out", str(tmp_path / "out"))
    assert_one_line_error(code, err, "bad.png")
    assert not (tmp_path / "out").exists()
    write_rgb(tmp_path / "square" / "sq.png", np.zeros((64, 64, 3), np.uint8))
    code, _, err = run_cli(monkeypatch, capsys, "predict", str(trained), str(tmp_path / "square"), "--out", str(tmp_path / "o2"))
    assert code == 0 and "aspect ratio" in err and (tmp_path / "o2" / "sq.npy").is_file()
    assert np.load(tmp_path / "o2" / "sq.npy").shape == (64, 64)


def test_a_checkpoint_with_malformed_metadata_is_refused(monkeypatch, capsys, tmp_path, trained):
    import shutil

    for suffix in (".safetensors", ".json"):
        shutil.copy(trained / "checkpoints" / f"best{suffix}", tmp_path / f"c{suffix}")
    info = json.loads((tmp_path / "c.json").read_text())
    info["metadata"] = [1, 2]
    (tmp_path / "c.json").write_text(json.dumps(info))
    code, _, err = run_cli(monkeypatch, capsys, "cost", str(tmp_path / "c.safetensors"), "--runs", "1")
    assert_one_line_error(code, err, "c.json", "metadata")
