"""Real KITTI frames in the report: how a model trained elsewhere does on real images.

The frames come from slimdepth's KITTI reader (:class:`slimdepth.data.kitti.KittiDataset`,
ground truth = the Velodyne sweep projected as the devkit does) or, for a KITTI annotated-depth
folder, from the folder reader (ground truth = KITTI's annotated depth), spread evenly over the folder.
Each model predicts at its input size, resized back to the frame (as evaluation does), and is
scored per frame with the KITTI conventions (Garg crop, 80 m cap) twice: median-scaled
(ratio = median(LiDAR) / median(prediction) per frame, as monodepth2 reports models whose
scale is not trusted) and metric (as predicted). The pictures show the median-scaled prediction
beside the projected LiDAR and the abs-rel error at the LiDAR points.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from slimdepth.data.base import DepthDataset
from slimdepth.data.folder import read_folder_meta
from slimdepth.data.registry import build_dataset, parse_dataset_spec
from slimdepth.data.synthetic.generator import SyntheticDataset
from slimdepth.errors import ConfigError, DataError
from slimdepth.evaluate.conventions import EvalConfig, evaluate_batch, preset_for, valid_mask
from slimdepth.evaluate.loop import predict_depth
from slimdepth.evaluate.metrics import MetricAccumulator
from slimdepth.report.collect import ModelEntry
from slimdepth.report.measure import ModelCache
from slimdepth.report.plots import png_bytes, stack_rows
from slimdepth.report.samples import sample_indices
from slimdepth.visualize import comparison_panel

__all__ = ["GROUND_TRUTHS", "REAL_SETS", "REAL_SHEET_WIDTH", "SYNTHETIC_CONTROL", "RealScorer", "ground_truth_of",
           "is_annotated_folder", "kitti_root", "open_adaptation_frames", "open_frames", "open_real_frames",
           "open_synthetic_frames",
           "real_folders", "real_frame_sheets", "real_sets", "with_control"]

#: widest real-frame sheet in pixels (one row is image | prediction | LiDAR | error at 1242 px each)
REAL_SHEET_WIDTH = 2000
#: panel titles of a full-size frame, in pixels: ~20 px once the sheet is shrunk to REAL_SHEET_WIDTH
REAL_TITLE_HEIGHT = 48
#: the two ways real frames are scored, as named in the report
SCALINGS = ("median-scaled", "metric")


def kitti_root(path: Path, option: str = "--real") -> Path:
    """The KITTI raw root under ``path``: ``path`` itself (date folders inside) or its ``kitti_raw``
    folder (the layout of slimdepth's shared sample data). Errors name the ``option`` it was given to."""
    if not path.is_dir():
        raise ConfigError(f"{option} {path}: not a directory (give a KITTI raw folder: DATE/DATE_drive_*_sync/...)")
    nested = path / "kitti_raw"
    return nested if nested.is_dir() and not any(path.glob("*/*/image_02")) else path


#: the folders of slimdepth's shared sample data that hold real frames with ground truth, in the
#: order they are scored: one congested drive with its Velodyne sweeps, and KITTI's annotated
#: depth of a few frames of other drives
REAL_SETS = ("kitti_raw", "kitti_depth_annotated")
#: what each reader's real frames are measured against, by dataset name: as the tables and the
#: sheets' titles say it
GROUND_TRUTHS = {"kitti": ("projected Velodyne", "LiDAR"), "folder": ("KITTI annotated depth", "annotated depth"),
                 "synthetic": ("exact synthetic depth", "synthetic depth"),
                 "synthetic lidar": ("simulated 64-beam LiDAR", "simulated LiDAR")}

#: the synthetic control scored beside the real frames: built-in frames of the congested drive's kind
#: (queued traffic, ``traffic=2``: 60% of its LiDAR points stand above the road, the drive's 72%)
#: at KITTI's frame size, against the simulated 64-beam LiDAR as the drive is against its
#: Velodyne, from the test split (no training or validation frame). A model that scores well here and
#: badly on the drive has learnt the task but not how real frames look.
SYNTHETIC_CONTROL = "synthetic,num=20,size=375x1242,split=test,traffic=2,depth=lidar,seg=false"
#: the results folder of the synthetic control
CONTROL_FOLDER = "synthetic_control"
#: the only split a control is drawn from (the one a spec without ``split`` gets): the training and
#: validation frames of every seed are the train and val splits
CONTROL_SPLIT = "test"


#: width / height of a KITTI frame (1242x375; the other dates' 1224x370 ... 1242x376 are alike)
KITTI_ASPECT = 1242 / 375


def is_annotated_folder(path: Path) -> bool:
    """True for a folder laid out like KITTI's annotated depth as slimdepth reads it: ``rgb/`` and
    ``depth/`` beside each other (16-bit PNGs in metres x 256), and no KITTI raw drive inside."""
    return (path / "rgb").is_dir() and (path / "depth").is_dir() and not any(path.glob("*/*/image_02"))


def real_sets(path: Path, option: str = "--real") -> list[Path]:
    """The real-frame folders under ``path``: each of :data:`REAL_SETS` it holds (the shared sample
    data's layout), else ``path`` itself (one KITTI raw folder or one annotated folder). Errors name
    the ``option`` it was given to."""
    if not path.is_dir():
        raise ConfigError(f"{option} {path}: not a directory (give a KITTI raw folder: DATE/DATE_drive_*_sync/..., "
                          "or a KITTI annotated-depth folder: rgb/ and depth/)")
    held = [path / name for name in REAL_SETS if (path / name).is_dir()]
    return held if held and not any(path.glob("*/*/image_02")) and not is_annotated_folder(path) else [path]


def real_folders(paths: list[Path]) -> dict[str, Path]:
    """Each real-frame folder under ``paths`` (:func:`real_sets`), keyed by
    the subfolder its results go to: its name, made unique (``_2``...) when two share one."""
    folders: dict[str, Path] = {}
    for path in paths:
        for real in real_sets(path):
            if real.resolve() in (p.resolve() for p in folders.values()):
                raise ConfigError(f"--real {real}: given twice")
            base = Path(os.path.normpath(real.absolute())).name or "real"  # "x/.." is x's parent
            folders[_unique(base, folders)] = real
    return folders


def _unique(base: str, taken: dict) -> str:
    """``base``, or ``base_2``, ``base_3``... : the first name not in ``taken``."""
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    return name


def with_control(sets: dict[str, Path], spec: str | None) -> dict[str, Path | str]:
    """The real-frame folders ``sets`` (:func:`real_folders`) and, with a ``spec``, the synthetic
    control under :data:`CONTROL_FOLDER` (``_2``... when a real folder has that name), in scoring order."""
    out: dict[str, Path | str] = dict(sets)
    if spec is not None:
        out[_unique(CONTROL_FOLDER, out)] = spec
    return out


def ground_truth_of(dataset: DepthDataset) -> tuple[str, str]:
    """What the frames of ``dataset`` (from :func:`open_frames`) are measured against: the long
    name and the short one (:data:`GROUND_TRUTHS`)."""
    name = dataset.dataset_name
    if name == "synthetic" and getattr(dataset, "depth_source", "dense") == "lidar":
        name = "synthetic lidar"
    return GROUND_TRUTHS[name]


def open_frames(source: Path | str) -> DepthDataset:
    """The frames a sim-to-real score is measured on: a ``synthetic,...`` dataset spec
    (:func:`open_synthetic_frames`) or a real-frame folder (:func:`open_real_frames`)."""
    if is_synthetic_spec(source):
        return open_synthetic_frames(str(source))
    return open_real_frames(Path(source))


def open_adaptation_frames(source: Path | str, option: str = "--adapt-norm") -> tuple[Path | str, DepthDataset]:
    """The one set of frames ``source`` names for re-estimating BatchNorm statistics, and its
    frames: a ``synthetic,...`` spec (stripped) or one real-frame folder (a folder holding several,
    like the shared data's, is refused: which one is used matters). Errors name ``option``."""
    if is_synthetic_spec(source):
        spec = str(source).strip()
        return spec, open_synthetic_frames(spec, option)
    held = real_sets(Path(source), option)
    if len(held) > 1:
        raise ConfigError(f"{option} {source}: holds {len(held)} real-frame folders "
                          f"({', '.join(p.name for p in held)}); give one of them")
    try:
        return held[0], open_real_frames(held[0], option)
    except DataError as exc:
        raise DataError(f"{option}: {exc}") from None


def is_synthetic_spec(source: object) -> bool:
    """Whether ``source`` is a dataset spec of the built-in scenes (``synthetic``, ``synthetic,...``;
    ``synthetic:PATH`` too, which the dataset then refuses in its own words)."""
    return isinstance(source, str) and source.split(",")[0].partition(":")[0].strip() == "synthetic"


def _check_kitti_shaped(h: int, w: int, what: str) -> None:
    """Refuse frames of another shape than KITTI's (NYU's 640x480, say): the scoring assumes its camera."""
    if abs(w / h / KITTI_ASPECT - 1.0) > 0.1:
        raise ConfigError(f"{what}: its frames are {w}x{h}, not KITTI frames (about 1242x375); "
                          "the real-frame scoring assumes KITTI's camera")


def open_synthetic_frames(spec: str, option: str = "--control") -> DepthDataset:
    """Built-in frames from a ``synthetic,...`` spec (:data:`SYNTHETIC_CONTROL`, say), scored as the
    real ones are: KITTI's conventions (Garg crop, 0.001-80 m) and camera, so frames must be
    KITTI-shaped. Always the test split (a spec without ``split`` gets it; train and val are
    refused): the frames a run trains and validates on would flatter it. The synthetic camera is KITTI's (height and intrinsics), so the flat prior and the
    road split mean the same on both. Errors name the ``option`` the spec was given to."""
    if not is_synthetic_spec(spec):
        raise ConfigError(f"{option} {spec!r}: not a spec of the built-in scenes (synthetic,KEY=VALUE,...)")
    try:
        _, options = parse_dataset_spec(spec)
        if options.get("split", CONTROL_SPLIT) != CONTROL_SPLIT:
            raise ConfigError(f"split={options['split']}: these frames come from the {CONTROL_SPLIT} split, frames "
                              "no run trains or validates on (leave split out or write split=test)")
        dataset = build_dataset(spec if "split" in options else f"{spec.rstrip(', ')},split={CONTROL_SPLIT}")
    except ConfigError as exc:
        raise ConfigError(f"{option}: {exc}") from None
    if not isinstance(dataset, SyntheticDataset):  # labels=false: images alone cannot be scored
        raise ConfigError(f"{option} {spec!r}: the frames need their depth (drop labels=false)")
    _check_kitti_shaped(*dataset.generator.size, f"{option} {spec!r}")
    dataset.eval_preset = "kitti"
    return dataset


def open_real_frames(path: Path, option: str = "--real") -> DepthDataset:
    """The real frames under ``path`` (a one-line error when there are none): a KITTI raw folder's
    with projected Velodyne depth, or an annotated folder's (:func:`is_annotated_folder`) with its
    depth PNGs, read as KITTI's metres x 256 unless its ``meta.json`` says otherwise. An annotated
    folder's intrinsics are those the folder reader finds (``K.txt``, ``K/<frame>.txt``,
    ``intrinsics.txt``), else KITTI's camera scaled to the frame (exact at 1242x375); frames that are
    not KITTI-shaped (NYU's 640x480, say) are refused, since the scoring assumes KITTI's camera.
    Errors name the ``option`` the folder was given to."""
    if not is_annotated_folder(path):
        return build_dataset({"name": "kitti", "root": str(kitti_root(path, option)), "gt": "velodyne"})
    spec: dict[str, object] = {"name": "folder", "root": str(path), "eval_preset": "kitti",
                               "seg_dir": None, "lidar_dir": None, "right_dir": None}
    if "depth_encoding" not in read_folder_meta(path):
        spec["depth_encoding"] = "kitti"
    dataset = build_dataset(spec)
    _check_kitti_shaped(*dataset[0]["image"].shape[-2:], f"{option} {path}")
    return dataset


@dataclass
class RealScorer:
    """Scores predictions frame by frame both ways (:data:`SCALINGS`, or only those in
    ``scalings``) under one set of conventions, keeping the per-frame median-scaling ratios; the
    report and the sim-to-real benchmark share it."""

    config: EvalConfig
    ratios: list[float] = field(default_factory=list)  # one per frame with a valid LiDAR point
    scalings: tuple[str, ...] = SCALINGS

    def __post_init__(self) -> None:
        metric = replace(self.config, median_scaling=False)
        configs = {"median-scaled": replace(metric, median_scaling=True), "metric": metric}
        self._configs = {name: configs[name] for name in self.scalings}
        self._point_configs = {name: replace(config, crop=None) for name, config in self._configs.items()}
        self._accumulators = {name: MetricAccumulator() for name in self.scalings}

    def add(self, pred: torch.Tensor, gt: torch.Tensor) -> float:
        """Score one frame (1xHxW prediction and ground truth, metres); returns its median-scaling
        ratio median(gt) / median(pred), NaN when no ground-truth pixel counts.

        Only the pixels that count (inside the crop and the depth range) are scored: they are taken
        out first and scored as one row without a crop, which gives the same figures as the whole
        frame at a fraction of the cost when the ground truth is sparse (a LiDAR sweep, one part of it)."""
        ratio = math.nan
        configs = self._configs
        if pred.shape == gt.shape and gt.dim() == 3 and gt.shape[0] == 1:  # else evaluate_batch names the fault
            mask = valid_mask(gt, self.config)
            if bool(mask.any()):
                pred, gt = pred[mask][None, None], gt[mask][None, None]
                configs = self._point_configs  # the crop is applied already
        for name, config in configs.items():
            result = evaluate_batch(pred[None], gt[None], config)
            self._accumulators[name].add({k: v[:1] for k, v in result.metrics.items()})
            if result.ratios is not None:
                ratio = float(result.ratios[0])
        if not math.isnan(ratio):
            self.ratios.append(ratio)
        return ratio

    @property
    def num_frames(self) -> int:
        """Frames that counted (at least one valid ground-truth pixel)."""
        return next(iter(self._accumulators.values())).num_images

    def metrics(self) -> dict[str, dict[str, float]]:
        """Mean metrics over the frames so far: ``{"median-scaled": {...}, "metric": {...}}`` (the
        scalings asked for)."""
        return {name: acc.compute() for name, acc in self._accumulators.items()}


def real_frame_sheets(models: Sequence[ModelEntry], cache: ModelCache, dataset: DepthDataset,
                      num: int) -> tuple[list[tuple[str, bytes]], str]:
    """Score every model on ``num`` frames (setting ``entry.real_metrics``) and return one
    (caption, PNG) per model, with a line saying which frames and conventions were used."""
    frames = [dataset[i] for i in sample_indices(len(dataset), num)]
    metric_config = preset_for(dataset)
    sheets: list[tuple[str, bytes]] = []
    for entry in models:
        model, size = cache.get(entry)
        preds = predict_depth(model, [f["image"] for f in frames], size)
        scorer = RealScorer(metric_config)
        rows = []
        for frame, pred in zip(frames, preds):
            ratio = scorer.add(pred, frame["depth"])
            ratio = 1.0 if math.isnan(ratio) else ratio
            rows.append(comparison_panel(frame["image"], pred * ratio, frame["depth"], title_height=REAL_TITLE_HEIGHT))
        entry.real_metrics = scorer.metrics()
        scored = scorer.num_frames
        sheets.append((f"{entry.name}: {scored} real frames (prediction median-scaled to the LiDAR)",
                       png_bytes(stack_rows(rows), REAL_SHEET_WIDTH)))
    names = ", ".join(str(f["meta"]["name"]) for f in frames)
    info = (f"{len(frames)} KITTI frames ({names}); ground truth: {ground_truth_of(dataset)[0]}; "
            f"conventions: {metric_config.preset} preset (crop {metric_config.crop}, "
            f"{metric_config.min_depth:g}-{metric_config.max_depth:g} m)")
    return sheets, info
