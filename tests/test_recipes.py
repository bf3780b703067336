"""Every recipe in configs/ is valid and trains a step (on the real sample data when it names KITTI or a folder)."""

from __future__ import annotations

from pathlib import Path

import pytest

from slimdepth.losses import build_criterion
from slimdepth.models.zoo import build_model
from slimdepth.train.run import resolve_config
from slimdepth.train.trainer import Trainer

# training recipes; the pipeline files (pipeline_*.yaml) chain recipes and are tested in test_pipeline.py
CONFIGS = sorted(p for p in (Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")
                 if not p.name.startswith("pipeline_"))


def test_there_is_a_recipe_per_method():
    names = {p.stem for p in CONFIGS}
    assert {"quickstart", "resnet50_unet_kitti", "litedepth_mai", "tiny_multires_synthetic", "tiny_multires_kitti"} <= names


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory) -> Path:
    """An untrained ResNet-18 U-Net checkpoint standing in for the teacher a distillation recipe names."""
    from slimdepth.models.checkpoint import save_model

    path = tmp_path_factory.mktemp("teacher") / "teacher.safetensors"
    save_model(build_model("resnet18-unet", max_depth=80.0), path)
    return path


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_recipe_resolves_and_builds(path, tiny_teacher):
    cfg = resolve_config(path, [])
    if cfg.get("distill"):
        from slimdepth.distill.run import resolve_distill_config

        cfg = resolve_distill_config(path, [], teacher=tiny_teacher)
    model_cfg = dict(cfg["model"])
    build_model(model_cfg.pop("name"), **model_cfg)
    build_criterion(cfg["loss"])


def _data_overrides(cfg: dict, shared: Path | None) -> list[str] | None:
    train = str(cfg["data"]["train"])
    if train.startswith("kitti"):
        if shared is None:
            return None
        spec = f"kitti:{shared / 'kitti_raw'}"
        return [f"data.train={spec}", f"data.val={spec}", "data.size=64x192"]
    if train.startswith("folder"):
        if shared is None:
            return None
        spec = f"folder:{shared / 'nyu_sync'},depth_encoding=mm"  # an MAI-style folder: RGB + millimetre PNGs
        return [f"data.train={spec}", f"data.val={spec}", "data.size=96x128"]
    return ["data.train=synthetic,num=4,size=48x160", "data.val=synthetic,num=2,size=48x160,split=val", "data.size=48x160"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_recipe_trains_one_step(path, tmp_path, request):
    from tests.conftest import shared_data_dir

    shared = shared_data_dir() if shared_data_dir().is_dir() else None
    cfg = resolve_config(path, [])
    data = _data_overrides(cfg, shared)
    if data is None:
        pytest.skip("needs the real sample data in ../shared/data")
    small = data + ["data.batch_size=2", "data.val_batch_size=2", "data.workers=0", "data.val_limit=2",
                    "train.steps=1", "train.samples=0", "train.log_every=1", "schedule.warmup_steps=0"]
    if cfg.get("distill"):  # a distillation recipe: one step of each stage, with a stand-in teacher
        from slimdepth.distill.run import resolve_distill_config, run_distillation

        train_spec = data[0].partition("=")[2].split(",split=")[0]
        unlabeled = f"{train_spec},labels=false" if train_spec.startswith("kitti") else "synthetic,num=4,size=48x160,labels=false"
        cfg = resolve_distill_config(path, small + ["distill.stage2.steps=1", "distill.stage2.warmup_steps=0"],
                                     teacher=request.getfixturevalue("tiny_teacher"), unlabeled=unlabeled)
        summary = run_distillation(cfg, tmp_path / "run")
        assert summary["distill"]["step"] == 1 and (tmp_path / "run" / "checkpoints" / "last.safetensors").is_file()
        assert ("stage1" in summary) == (cfg["distill"]["schedule"] == "two_stage")
        return
    cfg = resolve_config(path, small)
    trainer = Trainer(cfg, tmp_path / "run")
    result = trainer.fit()
    assert trainer.step == 1 and (tmp_path / "run" / "checkpoints" / "last.safetensors").is_file()
    assert result["metrics"]["abs_rel"] > 0


@pytest.mark.parametrize("name", ["quickstart", "synthetic_kitti_size"])
def test_quickstart_weights_a_global_scale_error_by_half(name):
    """The quickstart's SILog (and its KITTI-size version's) weights the scale term by 1 - λ = 0.5
    (BTS's 0.85 left 0.15): a prediction k times the truth costs 10 * sqrt(0.5) * |ln k|, and a
    scale-free error is unchanged."""
    import math

    import torch

    cfg = resolve_config(Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml", [])
    crit = build_criterion(cfg["loss"])
    gt = torch.linspace(2.0, 60.0, 2 * 24 * 8).reshape(2, 1, 24, 8)
    for k in (0.5, 1.3, 2.0):
        _, logs = crit({"depth": gt * k}, {"depth": gt})
        assert float(logs["silog"]) == pytest.approx(10 * math.sqrt(0.5) * abs(math.log(k)), rel=1e-5)
    # a zero-mean log error (half the pixels x e^0.2, half x e^-0.2) has no scale part: 10 * 0.2
    e = torch.where(torch.arange(gt.numel()).reshape(gt.shape) % 2 == 0, 0.2, -0.2)
    _, logs = crit({"depth": gt * torch.exp(e)}, {"depth": gt})
    assert float(logs["silog"]) == pytest.approx(2.0, rel=1e-5)
