"""Scoring a folder of prediction files against a tiny on-disk dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from slimdepth.data.base import DepthDataset
from slimdepth.data.sample import make_sample
from slimdepth.errors import ConfigError, DataError
from slimdepth.evaluate.conventions import PRESETS, EvalConfig, get_preset
from slimdepth.evaluate.metrics import METRIC_KEYS
from slimdepth.evaluate.preds import EvalReport, evaluate_predictions
from slimdepth.fileio import read_depth, read_rgb, write_depth, write_rgb

NAMES = ("seq_a/0001", "seq_a/0002", "seq_b/0003")
SIZE = (12, 16)


class TinyDataset(DepthDataset):
    """rgb/<name>.png and depth/<name>.png (millimetres) under a root; nothing else."""

    dataset_name = "tiny"

    def __init__(self, root: Path, names: tuple[str, ...], eval_preset: str | None = None) -> None:
        super().__init__()
        self.root, self._names, self.eval_preset = root, list(names), eval_preset

    def __len__(self) -> int:
        return len(self._names)

    def names(self) -> list[str]:
        return list(self._names)

    def load(self, index: int) -> dict[str, Any]:
        name = self._names[index]
        image = read_rgb(self.root / "rgb" / f"{name}.png")
        depth = read_depth(self.root / "depth" / f"{name}.png", "mm")
        return make_sample(image, depth=depth, meta={"name": name, "path": name, "dataset": "tiny"})


def make_dataset(root: Path, names: tuple[str, ...] = NAMES, constant: float | None = None, **kw: Any):
    """Write a tiny dataset; depths are multiples of 1/8 m (exact in mm and KITTI PNGs), some 0."""
    rng = np.random.default_rng(0)
    gts = {}
    for name in names:
        write_rgb(root / "rgb" / f"{name}.png", rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8))
        if constant is None:
            depth = rng.integers(4, 8 * 60, SIZE) / 8.0
            depth[rng.random(SIZE) < 0.2] = 0.0
        else:
            depth = np.full(SIZE, constant)
        write_depth(root / "depth" / f"{name}.png", depth, "mm")
        gts[name] = read_depth(root / "depth" / f"{name}.png", "mm")
    return TinyDataset(root, names, **kw), gts


def write_preds(folder: Path, preds: dict[str, np.ndarray], encoding: str, flat: bool = False) -> None:
    for name, depth in preds.items():
        stem = name.split("/")[-1] if flat else name
        suffix = ".npy" if encoding == "npy" else ".png"
        write_depth(folder / f"{stem}{suffix}", depth, encoding)  # type: ignore[arg-type]


@pytest.fixture()
def tiny(tmp_path: Path):
    return make_dataset(tmp_path / "data")


@pytest.mark.parametrize("encoding", ["mm", "kitti", "npy", "auto"])
def test_perfect_predictions_score_perfectly(tmp_path: Path, tiny, encoding: str) -> None:
    dataset, gts = tiny
    write_preds(tmp_path / "pred", gts, "mm" if encoding == "auto" else encoding)
    report = evaluate_predictions(tmp_path / "pred", dataset, PRESETS["none"], encoding=encoding)  # type: ignore[arg-type]
    assert report.num_images == 3 and report.skipped == [] and report.missing == []
    assert report.metrics["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert report.metrics["rmse"] == pytest.approx(0.0, abs=1e-5)
    assert report.metrics["d1"] == 1.0
    assert report.scale_ratio is None


def test_auto_reads_npy_and_png_in_one_folder(tmp_path: Path, tiny) -> None:
    dataset, gts = tiny
    names = list(gts)
    write_preds(tmp_path / "pred", {names[0]: gts[names[0]]}, "npy")
    write_preds(tmp_path / "pred", {n: gts[n] for n in names[1:]}, "mm")
    report = evaluate_predictions(tmp_path / "pred", dataset, PRESETS["none"])
    assert report.num_images == 3 and report.metrics["abs_rel"] == 0.0


def test_auto_prefers_npy_when_png_and_npy_sit_side_by_side(tmp_path: Path, tiny) -> None:
    dataset, gts = tiny
    write_preds(tmp_path / "pred", gts, "npy")  # exact metres
    write_preds(tmp_path / "pred", {n: 2.0 * d for n, d in gts.items()}, "mm")  # a decoy twice as far
    report = evaluate_predictions(tmp_path / "pred", dataset, PRESETS["none"])
    assert report.metrics["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    report = evaluate_predictions(tmp_path / "pred", dataset, PRESETS["none"], encoding="mm")
    assert report.metrics["abs_rel"] == pytest.approx(1.0, abs=1e-3)


def test_wrong_encoding_is_visible_in_the_metrics(tmp_path: Path, tiny) -> None:
    dataset, gts = tiny
    write_preds(tmp_path / "pred", gts, "kitti")
    report = evaluate_predictions(tmp_path / "pred", dataset, PRESETS["none"], encoding="mm")
    assert report.metrics["d1"] < 0.5  # KITTI units read as millimetres are 3.9x off
    assert len(report.warnings) == 1 and "--encoding kitti" in report.warnings[0]
    assert "3.91x nearer" in report.warnings[0]
    good = evaluate_predictions(tmp_path / "pred", dataset, PRESETS["none"], encoding="kitti")
    assert good.warnings == [] and good.to_dict()["warnings"] == []


def test_zero_predictions_on_valid_pixels_are_reported(tmp_path: Path, tiny) -> None:
    dataset, gts = tiny
    far = {n: np.where(g > 40, 70.0, g) for n, g in gts.items()}  # beyond what a mm PNG holds
    write_preds(tmp_path / "pred", far, "mm")
    report = evaluate_predictions(tmp_path / "pred", dataset, PRESETS["none"])
    valid = sum(int(((g > 1e-3) & (g < 80)).sum()) for g in gts.values())
    zeros = sum(int(((g > 40) & (g < 80)).sum()) for g in gts.values())
    assert [w for w in report.warnings if "zero" in w][0].startswith(f"{100 * zeros / valid:.1f}% of the valid")
    assert "65.5 m" in report.warnings[0]


def test_missing_predictions(tmp_path: Path, tiny) -> None:
    dataset, gts = tiny
    write_preds(tmp_path / "pred", {n: gts[n] for n in NAMES[:1]}, "mm")
    with pytest.raises(DataError, match=r"2 of 3 predictions missing.*seq_a/0002, seq_b/0003"):
        evaluate_predictions(tmp_path / "pred", dataset, PRESETS["none"])
    report = evaluate_predictions(tmp_path / "pred", dataset, PRESETS["none"], allow_missing=True)
    assert report.num_images == 1 and report.missing == ["seq_a/0002", "seq_b/0003"]
    assert report.to_dict()["num_missing"] == 2


def test_no_prediction_at_all(tmp_path: Path, tiny) -> None:
    dataset, _ = tiny
    (tmp_path / "pred").mkdir()
    with pytest.raises(DataError, match="no prediction file"):
        evaluate_predictions(tmp_path / "pred", dataset, allow_missing=True)
    with pytest.raises(DataError, match="not found"):
        evaluate_predictions(tmp_path / "nowhere", dataset)


def test_corrupt_prediction_names_the_file(tmp_path: Path, tiny) -> None:
    dataset, gts = tiny
    write_preds(tmp_path / "pred", gts, "mm")
    bad = tmp_path / "pred" / "seq_a" / "0002.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    with pytest.raises(DataError, match=r"seq_a/0002\.png"):
        evaluate_predictions(tmp_path / "pred", dataset, PRESETS["none"])


def test_nan_in_npy_prediction_is_an_error(tmp_path: Path, tiny) -> None:
    dataset, gts = tiny
    preds = dict(gts)
    preds[NAMES[1]] = gts[NAMES[1]].copy()
    preds[NAMES[1]][3, 3] = np.nan
    write_preds(tmp_path / "pred", preds, "npy")
    with pytest.raises(DataError, match=r"0002\.npy.*NaN"):
        evaluate_predictions(tmp_path / "pred", dataset, PRESETS["none"], encoding="npy")


def test_eight_bit_png_prediction_is_rejected(tmp_path: Path, tiny) -> None:
    dataset, _ = tiny
    for name in NAMES:
        write_rgb(tmp_path / "pred" / f"{name}.png", np.zeros((*SIZE, 3), dtype=np.uint8))
    with pytest.raises(DataError, match="16-bit"):
        evaluate_predictions(tmp_path / "pred", dataset, PRESETS["none"])


def test_size_mismatch_with_and_without_resize(tmp_path: Path) -> None:
    dataset, _ = make_dataset(tmp_path / "data", constant=2.5)
    write_preds(tmp_path / "pred", {n: np.full((6, 8), 2.5) for n in NAMES}, "mm")
    with pytest.raises(DataError, match=r"0001\.png.*6x8 does not match ground truth 12x16"):
        evaluate_predictions(tmp_path / "pred", dataset, PRESETS["none"])
    report = evaluate_predictions(tmp_path / "pred", dataset, PRESETS["none"], resize=True)
    assert report.resize and report.num_images == 3
    assert report.metrics["abs_rel"] == pytest.approx(0.0, abs=1e-7)


def test_median_scaling_reports_ratios(tmp_path: Path, tiny) -> None:
    dataset, gts = tiny
    write_preds(tmp_path / "pred", {n: 4.0 * g for n, g in gts.items()}, "npy")
    config = get_preset("none", median_scaling=True)
    report = evaluate_predictions(tmp_path / "pred", dataset, config)
    assert report.metrics["abs_rel"] == pytest.approx(0.0, abs=1e-7)
    assert report.scale_ratio is not None
    assert report.scale_ratio["mean"] == pytest.approx(0.25) and report.scale_ratio["std"] == pytest.approx(0.0, abs=1e-12)
    assert report.per_image[NAMES[0]]["scale_ratio"] == pytest.approx(0.25)
    assert "median scaling" in report.format_summary()


def test_predictions_found_by_basename(tmp_path: Path, tiny) -> None:
    dataset, gts = tiny
    write_preds(tmp_path / "pred", gts, "mm", flat=True)  # pred/0001.png, not pred/seq_a/0001.png
    report = evaluate_predictions(tmp_path / "pred", dataset, PRESETS["none"])
    assert report.num_images == 3 and report.metrics["abs_rel"] == 0.0


def test_shared_basenames_are_never_guessed(tmp_path: Path) -> None:
    names = ("left/0001", "right/0001")
    dataset, gts = make_dataset(tmp_path / "data", names)
    write_preds(tmp_path / "pred", {"left/0001": gts["left/0001"]}, "mm", flat=True)
    with pytest.raises(DataError, match="2 of 2 predictions missing"):
        evaluate_predictions(tmp_path / "pred", dataset, PRESETS["none"])


def test_images_without_valid_pixels_are_skipped(tmp_path: Path) -> None:
    dataset, gts = make_dataset(tmp_path / "data")
    write_depth(tmp_path / "data" / "depth" / f"{NAMES[2]}.png", np.zeros(SIZE), "mm")
    write_preds(tmp_path / "pred", gts, "mm")
    report = evaluate_predictions(tmp_path / "pred", dataset, PRESETS["none"])
    assert report.num_images == 2 and report.skipped == [NAMES[2]]
    assert report.metrics["abs_rel"] == 0.0


def test_dataset_preset_is_the_default(tmp_path: Path) -> None:
    dataset, gts = make_dataset(tmp_path / "data", eval_preset="nyu")
    write_preds(tmp_path / "pred", gts, "mm")
    report = evaluate_predictions(tmp_path / "pred", dataset)
    assert report.config == PRESETS["nyu"]
    assert report.to_dict()["config"]["crop"] == "nyu"


def test_report_serialises_and_formats(tmp_path: Path, tiny) -> None:
    dataset, gts = tiny
    write_preds(tmp_path / "pred", gts, "mm")
    calls: list[tuple[int, int]] = []
    report = evaluate_predictions(tmp_path / "pred", dataset, PRESETS["kitti"], progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 3), (2, 3), (3, 3)]
    data = json.loads(json.dumps(report.to_dict(per_image=True)))
    assert set(data["metrics"]) == set(METRIC_KEYS)
    assert data["num_images"] == 3 and data["config"]["preset"] == "kitti" and data["scale_ratio"] is None
    assert set(data["per_image"]) == set(NAMES)
    lines = report.format_table().splitlines()
    assert len(lines) == 2
    header = [h.strip() for h in lines[0].split("|")]
    values = [v.strip() for v in lines[1].split("|")]
    assert header[:5] == ["AbsRel", "SqRel", "RMSE", "RMSElog", "δ<1.25"]
    assert values[0] == "0.000" and values[4] == "1.000"


def test_nan_metrics_become_null_in_json() -> None:
    report = EvalReport(metrics=dict.fromkeys(METRIC_KEYS, float("nan")), num_images=0, config=EvalConfig())
    assert json.loads(json.dumps(report.to_dict()))["metrics"]["rmse"] is None


def test_unknown_encoding_is_a_config_error(tmp_path: Path, tiny) -> None:
    dataset, _ = tiny
    with pytest.raises(ConfigError, match="encoding"):
        evaluate_predictions(tmp_path, dataset, encoding="exr")  # type: ignore[arg-type]
