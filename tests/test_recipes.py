"""Every recipe in configs/ is valid and trains a step (on the real sample data when it names KITTI or a folder)."""

from __future__ import annotations

from pathlib import Path

import pytest

from slimdepth.losses import build_criterion
from slimdepth.models.zoo import build_model
from slimdepth.train.run import resolve_config
from slimdepth.train.trainer import Trainer

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_there_is_a_recipe_per_method():
    names = {p.stem for p in CONFIGS}
    assert {"quickstart", "resnet50_unet_kitti", "litedepth_mai", "tiny_multires_synthetic", "tiny_multires_kitti"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_recipe_resolves_and_builds(path):
    cfg = resolve_config(path, [])
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
    cfg = resolve_config(path, small)
    trainer = Trainer(cfg, tmp_path / "run")
    result = trainer.fit()
    assert trainer.step == 1 and (tmp_path / "run" / "checkpoints" / "last.safetensors").is_file()
    assert result["metrics"]["abs_rel"] > 0
