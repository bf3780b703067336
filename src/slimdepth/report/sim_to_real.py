"""Sim-to-real transfer: models trained on synthetic street scenes, scored on real KITTI frames.

Takes run directories (or checkpoints, exported files: anything :func:`~slimdepth.report.collect.collect`
reads) and a real-frame folder (a KITTI raw folder, :func:`~slimdepth.report.real.kitti_root`, or
a KITTI annotated-depth folder, :func:`~slimdepth.report.real.is_annotated_folder`), and scores
every model on *every* frame there, not a sample, against the projected Velodyne sweep or the
annotated depth, with the KITTI conventions (Garg crop, 0.001-80 m): as predicted (metric, the number that shows whether the
synthetic camera taught the right scale) and median-scaled per frame (ratio = median(ground truth) /
median(prediction), the number that shows whether the *shape* transfers). The ratios' mean and
spread say how far off and how unsteady the scale is. Scoring is :class:`~slimdepth.report.real.RealScorer`,
shared with ``slimdepth report``.

A *synthetic control* (a ``synthetic,...`` spec in place of the folder, by default
:data:`~slimdepth.report.real.SYNTHETIC_CONTROL`: built-in frames of the congested drive's kind at
KITTI's size, against the simulated LiDAR) is scored the same way, with the same camera and
conventions. A model that holds there and fails on the real frames has learnt the task; what does
not carry over is how real frames look.

The *flat prior* is the baseline a model has to beat: every pixel below the horizon is the
flat road seen by a level camera ``CAMERA_HEIGHT`` m above it (z = fy * h / (v - cy), v the row
index as in :func:`slimdepth.geometry.backproject`), capped at 80 m; the horizon and above are
80 m. It uses only the frame's intrinsics, never the image. The *constant* baseline predicts one
depth everywhere; it is scored median-scaled only (its scale is the LiDAR's median by
construction, so a metric score or a scale ratio would say nothing). A model whose scaled δ1 is
not above the constant's has learnt no shape that holds on these frames.

Pictures: one contact sheet per model, one row per chosen frame, real image | prediction
(metric, coloured on the LiDAR's robust range so that equal colours mean equal metres) | LiDAR
points (grown into blocks that survive the shrinking of the sheet); with exactly two models a
third sheet puts both predictions side by side. A stixel head's sheet adds its road probability
after the prediction, and its score says how sure the head is of the road (:class:`RoadProbability`). Sheets are full-resolution arrays here; they are
shrunk to :data:`~slimdepth.report.real.REAL_SHEET_WIDTH` when written.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from slimdepth.colormap import depth_range
from slimdepth.data.base import DepthDataset
from slimdepth.errors import ConfigError, DataError
from slimdepth.evaluate.conventions import EvalConfig, preset_for, scale_ratio_stats
from slimdepth.evaluate.adapt import adapt_batchnorm
from slimdepth.evaluate.loop import input_batch, predict_depth
from slimdepth.fileio import atomic_path
from slimdepth.flat_road import ABOVE_ROAD, above_road
from slimdepth.flat_road import flat_road_depth as flat_prior_depth
from slimdepth.geometry import KITTI_CAMERA_HEIGHT
from slimdepth.models.base import model_device
from slimdepth.options import check_number
from slimdepth.report.collect import ModelEntry, collect
from slimdepth.report.measure import ModelCache
from slimdepth.report.plots import png_bytes, stack_rows
from slimdepth.report.real import (REAL_SHEET_WIDTH, REAL_TITLE_HEIGHT, RealScorer, ground_truth_of, kitti_root,
                                   open_adaptation_frames, open_frames)
from slimdepth.report.samples import sample_indices
from slimdepth.visualize import auto_dilation, colorize_depth, side_by_side

__all__ = ["ABOVE_ROAD", "ADAPTED", "CAMERA_HEIGHT", "CONSTANT", "DISTANCE_BANDS", "FLAT_PRIOR", "PARTS", "REGIONS", "RegionScorer", "RoadProbability", "SimToReal", "TransferScore", "above_road", "band_region", "check_output_dir", "check_size_reaches", "flat_prior_depth",
           "road_probability", "sim_to_real", "transfer_sheet", "with_adapted_norm", "write_sim_to_real"]

#: height of KITTI's colour cameras above the road, metres (the synthetic scenes' rig uses it too)
CAMERA_HEIGHT = KITTI_CAMERA_HEIGHT
#: the name of the baseline row
FLAT_PRIOR = "flat prior"
#: the name of the one-depth-everywhere baseline row (median-scaled only)
CONSTANT = "constant"
#: the suffix of a model's second row when its BatchNorm statistics are re-estimated (``adapt_norm``)
ADAPTED = "+norm"
#: the file the numbers are written to
RESULTS_FILE = "sim_to_real.json"
#: frames predicted together (the real frames are full size: 1242x375 each)
BATCH = 4

Log = Callable[[str], None]


#: the two parts of each frame's LiDAR points scored apart
REGIONS = ("road", "above road")
#: distance bands (metres, lower bound included) the points above the road are also scored in:
#: the real drive's vehicles stand mostly within 8 m, where a camera 1.65 m up cannot see the foot
#: of anything nearer than 5.9 m (KITTI's 375 rows), and a model's errors differ by distance
DISTANCE_BANDS = ((0.0, 8.0), (8.0, 20.0), (20.0, 80.0))


def band_region(low: float, high: float) -> str:
    """The name of the points above the road from ``low`` up to (not including) ``high`` metres."""
    return f"above road {low:g}-{high:g} m"


#: every part :class:`RegionScorer` scores: the two regions, then the above-road bands
PARTS = REGIONS + tuple(band_region(*band) for band in DISTANCE_BANDS)


@dataclass
class TransferScore:
    """One model's numbers on the real frames (the flat prior's too)."""

    name: str
    source: str  # the model's path, or how the baseline is made
    frames: int  # frames with at least one LiDAR point inside the crop
    metric: dict[str, float]  # empty for the constant baseline (scored median-scaled only)
    median_scaled: dict[str, float]
    ratio: dict[str, float]  # per-frame median(LiDAR) / median(prediction): mean, std, median, ... (empty: constant)
    #: the same on the LiDAR points on the road and on those above it (:func:`above_road`), and on
    #: the latter by distance (:data:`PARTS`); "scaled" uses each frame's whole-frame ratio, so the
    #: parts share one scale, and "ratio" is the part's own median(truth) / median(prediction)
    regions: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    #: a stixel head's road probability over every pixel of every frame (:class:`RoadProbability`);
    #: empty for any other model
    road: dict[str, float] = field(default_factory=dict)
    #: the size (height, width) the model ran at; None for a baseline or a model run at each frame's own size
    input_size: tuple[int, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form (NaN as null); ``road_probability`` only for a stixel head."""
        out = {"name": self.name, "source": self.source, "frames": self.frames, "metric": self.metric,
               "median_scaled": self.median_scaled, "scale_ratio": self.ratio, "regions": self.regions,
               "input_size": list(self.input_size) if self.input_size else None}
        return _json_safe({**out, "road_probability": self.road} if self.road else out)


class RegionScorer:
    """Scores the road points and the points above the road of each frame apart (and the latter
    in :data:`DISTANCE_BANDS` too), as predicted and scaled by the frame's whole-frame median
    ratio, keeping each part's own per-frame ratio median(truth) / median(prediction): below 1,
    that part is predicted too far."""

    def __init__(self, config: EvalConfig, metric: bool = True) -> None:
        hows = ("metric", "scaled", "own") if metric else ("scaled",)
        self._scorers = {(part, how): RealScorer(config, scalings=("median-scaled",) if how == "own" else ("metric",))
                         for part in PARTS for how in hows}
        self._points = dict.fromkeys(PARTS, 0)

    def add(self, pred: torch.Tensor, gt: torch.Tensor, K: Any, ratio: float) -> None:
        """One frame: ``ratio`` is its whole-frame median-scaling ratio (NaN: the frame did not count)."""
        if math.isnan(ratio):
            return
        above = above_road(gt, K)
        masks = [("road", ~above), ("above road", above)]
        masks += [(band_region(low, high), above & (gt >= low) & (gt < high)) for low, high in DISTANCE_BANDS]
        for part, mask in masks:
            truth = torch.where(mask, gt, torch.zeros_like(gt))
            if not (truth > 0).any():
                continue
            self._points[part] += int((truth > 0).sum())
            if (part, "metric") in self._scorers:
                self._scorers[(part, "metric")].add(pred, truth)
                try:
                    self._scorers[(part, "own")].add(pred, truth)
                except DataError:  # nothing positive predicted on this part: it has no ratio of its own
                    pass
            self._scorers[(part, "scaled")].add(pred * ratio, truth)

    def metrics(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{"road": {"metric": {...}, "scaled": {...}, "ratio": {...}, "frames": n, "points": n},
        "above road": {...}, "above road 0-8 m": {...}, ...}`` (points: the LiDAR points of that
        part before the evaluation crop; frames: those with a point of it inside the crop; ratio:
        :func:`scale_ratio_stats` of its own per-frame ratios; no ``metric`` and ``ratio`` when the
        scorer was made without metric scores)."""
        out: dict[str, dict[str, Any]] = {}
        for part in PARTS:
            scaled = self._scorers[(part, "scaled")]
            if scaled.num_frames:
                out[part] = {"scaled": scaled.metrics()["metric"], "frames": scaled.num_frames,
                             "points": self._points[part]}
                if (part, "metric") in self._scorers:
                    out[part]["metric"] = self._scorers[(part, "metric")].metrics()["metric"]
                    out[part]["ratio"] = scale_ratio_stats(self._scorers[(part, "own")].ratios)
        return out


@torch.inference_mode()
def road_probability(model: torch.nn.Module, images: Sequence[torch.Tensor],
                     input_size: tuple[int, int] | None = None) -> list[torch.Tensor] | None:
    """The stixel head's road probability ``p`` (1, h, w: the head's resolution, a quarter of the
    size the network works at) of each image in [0, 1], resized to ``input_size`` as
    :func:`predict_depth` does; ``model`` in eval mode, as there. None for a model without road
    logits (another head, or an exported file, whose graph hands out depth alone)."""
    if not getattr(model, "has_road_logits", False):
        return None
    batch = input_batch(images, input_size).to(model_device(model))
    return list(torch.sigmoid(model.predict(batch)["road"].float()).cpu())


class RoadProbability:
    """How sure a stixel head is of the road: over every pixel of every frame, the median of ``p``
    and the share below 0.5 (what it calls "not road", where something may stand)."""

    def __init__(self) -> None:
        self._values: list[torch.Tensor] = []

    def add(self, p: torch.Tensor) -> None:
        """Every pixel of one frame's map (or any tensor of probabilities)."""
        self._values.append(p.detach().flatten().float())

    def metrics(self) -> dict[str, float]:
        """``{"median": ..., "below_half": ..., "pixels": n}``; empty when nothing was added."""
        if not self._values:
            return {}
        p = torch.cat(self._values)
        return {"median": float(p.median()), "below_half": int((p < 0.5).sum()) / p.numel(), "pixels": int(p.numel())}


@dataclass
class SimToReal:
    """Every model's :class:`TransferScore`, the conventions, and the contact sheets."""

    scores: list[TransferScore]
    real: Path | str  # the KITTI raw root, the annotated folder, or the synthetic spec
    frames: int  # frames in the folder
    config: EvalConfig
    ground_truth: str = "projected Velodyne"  # or "KITTI annotated depth" (:data:`~slimdepth.report.real.GROUND_TRUTHS`)
    sheet_frames: list[str] = field(default_factory=list)
    sheets: dict[str, np.ndarray] = field(default_factory=dict)  # file stem -> full-size picture
    #: where the rest of each frame came from when the frames were composed (a context swap)
    context: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form: what ``sim_to_real.json`` holds."""
        context = {} if self.context is None else {"context": self.context}
        return {"real": str(self.real), **context, "frames": self.frames, "ground_truth": self.ground_truth,
                "conventions": self.config.to_dict(), "flat_prior_camera_height_m": CAMERA_HEIGHT,
                "models": [s.to_dict() for s in self.scores], "sheet_frames": self.sheet_frames,
                "sheets": [f"{stem}.png" for stem in self.sheets]}


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def _file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"


def transfer_sheet(frames: Sequence[dict[str, Any]], columns: Sequence[tuple[str, Sequence[torch.Tensor]]],
                   title_height: int = REAL_TITLE_HEIGHT, width: int = REAL_SHEET_WIDTH, truth: str = "LiDAR",
                   road: Mapping[str, Sequence[torch.Tensor]] | None = None) -> np.ndarray:
    """One row per frame: image | each column's prediction (and its road probability) | ground
    truth (``truth`` names it in the titles), as HxWx3 uint8 at full size.

    ``columns`` are (title, one prediction per frame); ``road`` maps a column's title to one road
    probability map per frame (:func:`road_probability`: grey, white = road, each of the head's
    cells a block of the frame), drawn right after that column's prediction. Predictions and LiDAR share the colours
    of the LiDAR's 5th-95th percentile range (the prediction's when a frame has no point); the
    points are grown so that they survive the shrinking to ``width`` pixels. Each row is
    ``title_height + H`` tall and ``sum(widths) + 4 * (panels - 1)`` wide (see
    :func:`~slimdepth.visualize.side_by_side`); rows are stacked 6 px apart (:func:`stack_rows`).
    """
    if not frames:
        raise ConfigError("transfer_sheet needs at least one frame")
    rows = []
    for i, frame in enumerate(frames):
        lidar = frame["depth"]
        preds = [preds[i] for _, preds in columns]
        try:
            lo, hi = depth_range(lidar)
        except DataError:  # no LiDAR point in this frame: colour on the predictions
            lo, hi = depth_range(*preds)
        h, w = frame["image"].shape[-2:]
        maps = [road[title][i] if road and title in road else None for title, _ in columns]
        full_width = w * (len(columns) + 2 + sum(m is not None for m in maps))
        k = auto_dilation(True, width / full_width)
        span = f"{lo:.1f}-{hi:.1f} m"
        panels, titles = [frame["image"]], [str(frame["meta"]["name"])]
        for (title, _), pred, p in zip(columns, preds, maps):
            panels.append(colorize_depth(pred, vmin=lo, vmax=hi))
            titles.append(f"{title} (metric) {span}")
            if p is not None:
                panels.append(F.interpolate(p[None].float(), size=(h, w), mode="nearest")[0, 0].numpy())
                titles.append(f"{title}: road probability (white = road)")
        panels.append(colorize_depth(lidar, vmin=lo, vmax=hi, dilate=k))
        titles.append(f"{truth} {span} (points grown to {k}x{k})")
        rows.append(side_by_side(panels, titles, title_height=title_height))
    return stack_rows(rows)


def sim_to_real(models: Sequence[Path | ModelEntry], real: Path | str, *, rows: int = 6, flat_prior: bool = False,
                constant: bool = False, log: Log | None = None,
                transform: Callable[[dict[str, Any]], torch.Tensor] | None = None,
                cache: ModelCache | None = None, adapt_norm: Path | str | None = None) -> SimToReal:
    """Score ``models`` (paths :func:`collect` reads, or entries) and optionally the flat prior and
    the constant baseline on every frame of the real-frame folder ``real`` (KITTI raw or annotated,
    :func:`~slimdepth.report.real.open_real_frames`), or of the built-in frames a ``synthetic,...``
    spec names (a control: :data:`~slimdepth.report.real.SYNTHETIC_CONTROL`), metric and
    median-scaled (the constant median-scaled only); draw a contact sheet of ``rows`` frames
    (spread over the set) per model, and one of both predictions when there are two.

    ``transform`` gives the image the models see from each frame (a test-time probe,
    :func:`~slimdepth.report.probe.apply_probe`); the sheets show that image. The baselines use
    no image, so it leaves them as they are. ``cache`` keeps the loaded models between calls
    (one call per probe loads each model once); a cache made with a size runs every model at that
    size instead of its own (the size each ran at is in its score), and refuses a model that
    resizes every input inside the network.

    ``adapt_norm`` (a real-frame folder or a ``synthetic,...`` spec) scores every model a second
    time, as ``NAME+norm``, with its BatchNorm statistics re-estimated on that set's images
    (:func:`~slimdepth.evaluate.adapt.adapt_batchnorm`; no depth is used). Statistics taken from
    the frames being scored also carry their content, not only their camera's look."""
    say = log or (lambda message: None)
    check_number(rows, "--rows", integer=True, low=1)
    dataset = open_frames(real)  # a bad folder or spec fails before any model is loaded
    entries = [m for m in models if isinstance(m, ModelEntry)]
    paths = [Path(m) for m in models if not isinstance(m, ModelEntry)]
    entries += collect(paths).models if paths else []
    if not entries and not flat_prior and not constant:
        raise ConfigError("nothing to score: give at least one run (--run) or ask for a baseline")
    if adapt_norm is not None and not entries:
        raise ConfigError("BatchNorm statistics are re-estimated for models: give at least one run (--run)")
    _check_names([entry.name for entry in entries],
                 [entry.name + ADAPTED for entry in entries] if adapt_norm is not None else [])
    if adapt_norm is not None:  # a bad source fails before any model is loaded
        adapt_norm, adapt_frames = open_adaptation_frames(adapt_norm, "adapt_norm")
    config = preset_for(dataset)
    cache = ModelCache() if cache is None else cache
    loaded = [(entry, *cache.get(entry)) for entry in entries]
    if cache.size is not None:
        for entry, model, _ in loaded:
            check_size_reaches(model, str(entry.path))
    sources = {entry.name: str(entry.path) for entry in entries}
    if adapt_norm is not None:
        adapted = with_adapted_norm(loaded, adapt_norm, adapt_frames, cache)
        loaded += adapted
        entries += [entry for entry, _, _ in adapted]
        sources.update({entry.name: f"{entry.path}, BatchNorm statistics re-estimated on {adapt_norm}"
                        for entry, _, _ in adapted})
    input_sizes = {entry.name: size for entry, _, size in loaded}
    scorers = {entry.name: RealScorer(config) for entry in entries}
    if flat_prior:
        scorers[FLAT_PRIOR] = RealScorer(config)
    regions = {name: RegionScorer(config) for name in scorers}
    if constant:
        scorers[CONSTANT] = RealScorer(config, scalings=("median-scaled",))
        regions[CONSTANT] = RegionScorer(config, metric=False)
    keep = set(sample_indices(len(dataset), rows))
    shown: list[dict[str, Any]] = []
    kept: dict[str, list[torch.Tensor]] = {entry.name: [] for entry in entries}
    roads = {entry.name: RoadProbability() for entry in entries}
    kept_road: dict[str, list[torch.Tensor]] = {entry.name: [] for entry in entries}
    for start in range(0, len(dataset), BATCH):
        frames = [dataset[i] for i in range(start, min(start + BATCH, len(dataset)))]
        if transform is not None:
            frames = [{**f, "image": transform(f)} for f in frames]
        say(f"frames {start + 1}-{start + len(frames)} of {len(dataset)}")
        for entry, model, size in loaded:
            images = [f["image"] for f in frames]
            for j, pred in enumerate(predict_depth(model, images, size)):
                ratio = scorers[entry.name].add(pred, frames[j]["depth"])
                regions[entry.name].add(pred, frames[j]["depth"], frames[j]["K"], ratio)
                if start + j in keep:
                    kept[entry.name].append(pred)
            for j, p in enumerate(road_probability(model, images, size) or []):  # stixel heads only
                roads[entry.name].add(p)
                if start + j in keep:
                    kept_road[entry.name].append(p)
        if flat_prior:
            for frame in frames:
                h, w = frame["depth"].shape[-2:]
                prior = flat_prior_depth(frame["K"], h, w, max_depth=config.max_depth)
                ratio = scorers[FLAT_PRIOR].add(prior, frame["depth"])
                regions[FLAT_PRIOR].add(prior, frame["depth"], frame["K"], ratio)
        if constant:
            for frame in frames:
                same = torch.ones_like(frame["depth"])
                regions[CONSTANT].add(same, frame["depth"], frame["K"], scorers[CONSTANT].add(same, frame["depth"]))
        shown += [{k: f[k] for k in ("image", "depth", "meta")} for j, f in enumerate(frames) if start + j in keep]
    sources[FLAT_PRIOR] = f"road plane {CAMERA_HEIGHT} m below a level camera, frame intrinsics"
    sources[CONSTANT] = "one depth everywhere, median-scaled only"
    scores = []
    for name, scorer in scorers.items():
        if scorer.num_frames == 0:
            raise DataError(f"{real}: none of the {len(dataset)} frames has a ground-truth point inside the KITTI crop")
        both = scorer.metrics()
        ratio = scale_ratio_stats(scorer.ratios) if name != CONSTANT else {}
        scores.append(TransferScore(name, sources[name], scorer.num_frames, both.get("metric", {}),
                                    both["median-scaled"], ratio, regions[name].metrics(),
                                    roads[name].metrics() if name in roads else {}, input_sizes.get(name)))
    truth, short = ground_truth_of(dataset)
    root = (str(real).strip() if dataset.dataset_name == "synthetic" else Path(real) if dataset.dataset_name == "folder"
            else kitti_root(Path(real)))
    result = SimToReal(scores, root, len(dataset), config, truth, [str(f["meta"]["name"]) for f in shown])
    for entry in entries:
        say(f"drawing the sheet of {entry.name}")
        result.sheets[f"sheet_{_file_stem(entry.name)}"] = transfer_sheet(
            shown, [(entry.name, kept[entry.name])], truth=short,
            road={entry.name: kept_road[entry.name]} if kept_road[entry.name] else None)
    if len(entries) == 2:
        a, b = entries
        result.sheets[f"sheet_{_file_stem(a.name)}_vs_{_file_stem(b.name)}"] = transfer_sheet(
            shown, [(a.name, kept[a.name]), (b.name, kept[b.name])], truth=short)
    return result


def _check_names(names: Sequence[str], adapted: Sequence[str] = ()) -> None:
    """Refuse rows that would share a name or a sheet's file name, or take a baseline's name;
    ``adapted`` are the ``+norm`` rows to come."""
    clash = next((n for n in adapted if n in names), None)
    if clash is not None:
        raise ConfigError(f"{clash}: a run has the name of the {ADAPTED} row of {clash[:-len(ADAPTED)]}; rename it")
    every = [*names, *adapted]
    twice = next((n for n in every if every.count(n) > 1 or n in (FLAT_PRIOR, CONSTANT)), None)
    if twice is not None:
        raise ConfigError(f"{twice}: given twice (or named like the baseline); give each model once")
    stems = [_file_stem(n) for n in every]

    def row(name: str) -> str:
        return f"{name} (the {ADAPTED} row of {name[:-len(ADAPTED)]})" if name in adapted else name

    for i, stem in enumerate(stems):
        other = next((every[j] for j in range(i + 1, len(every)) if stems[j] == stem), None)
        if other is not None:
            raise ConfigError(f"{row(every[i])} and {row(other)}: both would draw sheet_{stem}.png; rename a run")


def with_adapted_norm(loaded: Sequence[tuple[ModelEntry, torch.nn.Module, tuple[int, int] | None]],
                      source: Path | str, frames: DepthDataset | None = None, cache: ModelCache | None = None,
                      ) -> list[tuple[ModelEntry, torch.nn.Module, tuple[int, int] | None]]:
    """Each loaded model again, as ``NAME`` + :data:`ADAPTED`, with its BatchNorm statistics
    re-estimated on the images of ``source`` (``frames``, when already opened) at the size the
    model runs at (depth unused). A ``cache`` keeps each adapted model for the next call."""
    memo = cache.adapted if cache is not None else {}
    images: list[torch.Tensor] | None = None
    out = []
    for entry, model, size in loaded:
        key = (entry.path, source, size)
        if key not in memo:
            if images is None:
                frames = frames if frames is not None else open_adaptation_frames(source, "adapt_norm")[1]
                images = [torch.as_tensor(frames[i]["image"]) for i in range(len(frames))]
            memo[key] = adapt_batchnorm(model, images, size, where=str(entry.path))
        out.append((replace(entry, name=f"{entry.name}{ADAPTED}"), memo[key], size))
    return out


def check_size_reaches(model: torch.nn.Module, where: str) -> None:
    """Refuse to run ``model`` at another input size when it resizes every input inside the
    network (LiteDepth's ``internal_size``): the size asked for would never reach it."""
    inner = getattr(model, "internal_size", None)
    if inner is not None:
        raise ConfigError(f"{where}: resizes every input to {inner[0]}x{inner[1]} inside the network "
                          "(model.internal_size), so --size cannot change what it sees")


def check_output_dir(out: Path, overwrite: bool) -> None:
    """Refuse a file, or a folder that holds anything, unless ``overwrite`` (a one-line ConfigError)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"--out {out}: exists and is not empty; pass --overwrite to write into it or choose another")


def write_sim_to_real(result: SimToReal, out: Path) -> list[Path]:
    """Write ``sim_to_real.json`` and one PNG per sheet (shrunk to REAL_SHEET_WIDTH) into ``out``,
    each atomically; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with atomic_path(out / RESULTS_FILE) as tmp:
        tmp.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    written.append(out / RESULTS_FILE)
    for stem, sheet in result.sheets.items():
        path = out / f"{stem}.png"
        with atomic_path(path) as tmp:
            tmp.write_bytes(png_bytes(sheet, REAL_SHEET_WIDTH))
        written.append(path)
    return written
