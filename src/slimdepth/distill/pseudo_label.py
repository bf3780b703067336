"""Write a ``folder`` dataset whose dense labels come from teachers (method 5 of the design).

Depth comes from a depth teacher (any checkpoint or run directory) or from the stereo pair
(:mod:`slimdepth.distill.stereo`: semi-global matching, fitted to and merged with the frame's
sparse LiDAR); segmentation from a segmentation teacher. The output is the layout the
``folder`` reader reads (``rgb/``, ``depth/`` as KITTI uint16 PNGs, ``seg/``, ``lidar/`` with
the input's LiDAR when it has one, ``K/``, ``meta.json``), so ``train`` and ``distill`` take it
as ``folder:DIR``. ``pseudo_label.json`` records the settings: rerunning into the same
directory with the same settings continues where it stopped; anything else is refused, and no
file of the input dataset is ever written over.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from slimdepth.data.base import DepthDataset
from slimdepth.data.keys import sparse_keys
from slimdepth.data.registry import build_dataset
from slimdepth.distill.stereo import compensate, disparity_to_depth, label_quality, sgm_disparity
from slimdepth.errors import ConfigError, DataError
from slimdepth.fileio import as_rgb_uint8, write_depth, write_intrinsics, write_rgb, write_seg
from slimdepth.distill.teacher import Teacher

__all__ = ["pseudo_label", "stereo_depth_label"]

SETTINGS = "pseudo_label.json"
Progress = Callable[[int, int], None]


def _lidar_of(sample: dict[str, Any]) -> np.ndarray | None:
    """The frame's sparse LiDAR: ``lidar_depth``, else ``depth`` when it is a point set (never a
    dense ground truth)."""
    if "lidar_depth" in sample:
        return sample["lidar_depth"][0].numpy()
    if "depth" in sample and "depth" in sparse_keys(sample):
        return sample["depth"][0].numpy()
    return None


def stereo_depth_label(sample: dict[str, Any], **options: Any) -> dict[str, Any]:
    """Raw stereo depth, the compensated label (when the sample has LiDAR) and the LiDAR of one
    sample that has ``right_image``, ``K`` and ``meta['baseline']``. ``options`` go to
    :func:`~slimdepth.distill.stereo.sgm_disparity` (``max_disparity``, ``block_size``, ...)
    and :func:`~slimdepth.distill.stereo.compensate` (``tolerance``, ``window``)."""
    where = sample.get("meta", {}).get("path", "the sample")
    if "right_image" not in sample:
        raise DataError(f"{where}: no right image for --stereo (add right=true to a synthetic or kitti spec, or give "
                        "a folder dataset a right/ folder)")
    baseline = sample.get("meta", {}).get("baseline")
    if baseline is None:
        raise DataError(f"{where}: the stereo baseline is unknown (meta['baseline'])")
    if "K" not in sample:
        raise DataError(f"{where}: --stereo needs the camera intrinsics K")
    comp_keys = {"tolerance", "window", "max_depth", "min_points", "edge_ratio"}
    sgm = {k: v for k, v in options.items() if k not in comp_keys}
    comp = {k: v for k, v in options.items() if k in comp_keys}
    disp = sgm_disparity(as_rgb_uint8(sample["image"]), as_rgb_uint8(sample["right_image"]), **sgm)
    raw = disparity_to_depth(disp, float(sample["K"][0, 0]), float(baseline))
    lidar = _lidar_of(sample)
    if lidar is None:
        return {"raw": raw, "label": raw, "lidar": None, "info": None}
    label, info = compensate(raw, lidar, **comp)
    return {"raw": raw, "label": label, "lidar": lidar, "info": info.as_dict()}


def _segment(teacher: Teacher, image: torch.Tensor) -> np.ndarray:
    """The teacher's labels (argmax of its finest logits, upsampled to the image) for one image."""
    logits = teacher.run(image[None], ("seg",)).get("seg")
    if logits is None:
        raise DataError(f"{teacher.path}: the segmentation teacher has no segmentation head")
    if isinstance(logits, (list, tuple)):
        logits = logits[-1]  # the finest
    logits = F.interpolate(logits.float(), size=tuple(image.shape[-2:]), mode="bilinear", align_corners=False)
    return logits.argmax(1)[0].cpu().numpy().astype(np.uint8)


def _check_out(out: Path, settings: dict[str, Any], dataset: DepthDataset) -> None:
    out = out.resolve()
    for folder in dataset.source_folders():
        folder = folder.resolve()
        if out == folder or folder in out.parents or out in folder.parents:
            raise ConfigError(f"{out}: the output overlaps the dataset's folder {folder}; choose another --out")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory; choose another --out")
    if out.is_dir() and any(out.iterdir()):
        saved = out / SETTINGS
        if not saved.is_file():
            raise ConfigError(f"{out}: directory is not empty and holds no pseudo-labels; choose another --out")
        try:
            old = json.loads(saved.read_text())
        except (OSError, json.JSONDecodeError):
            raise DataError(f"{saved}: unreadable; refusing to write into {out}") from None
        if old != settings:
            diff = ", ".join(f"{k}={old.get(k)!r} (now {settings.get(k)!r})" for k in settings if old.get(k) != settings.get(k))
            raise ConfigError(f"{out}: holds pseudo-labels made with other settings ({diff}); choose another --out")


def pseudo_label(data: str, out: str | Path, depth_teacher: str | Path | None = None, stereo: bool = False,
                 seg_teacher: str | Path | None = None, device: str = "cpu", report: bool = False,
                 progress: Progress | None = None, **stereo_options: Any) -> dict[str, Any]:
    """Write the pseudo-labeled dataset of ``data`` into ``out``; returns a summary (and, with
    ``report``, the accuracy and coverage of the raw stereo, the compensated stereo and the
    LiDAR alone against the dataset's dense ground truth, also written to ``report.json``)."""
    if depth_teacher is not None and stereo:
        raise ConfigError("--depth-teacher and --stereo both make depth: choose one")
    if depth_teacher is None and not stereo and seg_teacher is None:
        raise ConfigError("nothing to label: give --depth-teacher CKPT, --stereo or --seg-teacher CKPT")
    if report and not stereo:
        raise ConfigError("--report compares stereo labels with the LiDAR: it needs --stereo")
    out = Path(out)
    dataset = build_dataset(data)
    settings = {"data": data, "depth_teacher": str(Path(depth_teacher).resolve()) if depth_teacher else None,
                "stereo": bool(stereo), "seg_teacher": str(Path(seg_teacher).resolve()) if seg_teacher else None,
                "stereo_options": stereo_options}
    _check_out(out, settings, dataset)
    depth_model = Teacher(depth_teacher, device) if depth_teacher is not None else None
    seg_model = Teacher(seg_teacher, device) if seg_teacher is not None else None
    if stereo:  # a dataset without right images fails now, not after writing anything
        first = dataset.load(0)
        if "right_image" not in first:
            stereo_depth_label(first)
    out.mkdir(parents=True, exist_ok=True)
    (out / SETTINGS).write_text(json.dumps(settings, indent=2) + "\n")
    names = dataset.names()
    keep_depth = not stereo and depth_model is None  # --seg-teacher alone: the input's depth stays the label
    if keep_depth and "depth" not in dataset.load(0):
        raise ConfigError(f"{data} has no depth to keep beside the teacher's segmentation: add --depth-teacher or --stereo")
    rows: list[dict[str, Any]] = []
    written = kept = 0
    lidar_written = False
    for i, name in enumerate(names):
        paths = {f: out / f / (f"{name}.txt" if f == "K" else f"{name}.png") for f in ("rgb", "K", "depth", "seg")}
        done = paths["rgb"].is_file()  # the image is written last: it marks a complete frame
        if done and not report:
            kept += 1
            if progress:
                progress(i + 1, len(names))
            continue
        sample = dataset.load(i)
        image = sample["image"]
        result = None
        if stereo:
            result = stereo_depth_label(sample, **stereo_options)
            depth = result["label"]
        elif depth_model is not None:
            depth = depth_model(image[None])["depth"][0, 0].cpu().numpy()
        else:
            depth = sample["depth"][0].numpy()
        if report and result is not None and "depth" in sample and "depth" not in sparse_keys(sample):
            gt = sample["depth"][0].numpy()
            row = {"name": name, "raw": label_quality(result["raw"], gt), "compensated": label_quality(result["label"], gt)}
            if result["lidar"] is not None:
                row["lidar"] = label_quality(result["lidar"], gt)
                row["fit"] = result["info"]
            rows.append(row)
        if not done:
            if "K" in sample:
                write_intrinsics(paths["K"], sample["K"].numpy())
            write_depth(paths["depth"], np.asarray(depth, np.float32), "kitti")
            if seg_model is not None:
                write_seg(paths["seg"], _segment(seg_model, image))
            lidar = _lidar_of(sample)
            if lidar is not None:
                write_depth(out / "lidar" / f"{name}.png", lidar, "kitti")
                lidar_written = True
            write_rgb(paths["rgb"], as_rgb_uint8(image))  # last: the frame is complete
            written += 1
        else:
            kept += 1
        if progress:
            progress(i + 1, len(names))
    meta = {"depth_encoding": "kitti", "eval_preset": dataset.eval_preset, "source": data,
            "labels": "stereo compensated with LiDAR" if stereo else ("depth teacher" if depth_model else "the input's")}
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    summary: dict[str, Any] = {"out": str(out), "frames": len(names), "written": written, "kept": kept,
                               "lidar": lidar_written or (out / "lidar").is_dir()}
    if report:
        summary["report"] = _summarise(rows)
        (out / "report.json").write_text(json.dumps(summary["report"], indent=2) + "\n")
    return summary


def _summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean accuracy and coverage of each label source over the frames with dense ground truth."""
    if not rows:
        return {"frames": 0, "note": "the dataset has no dense ground truth to score the labels against"}
    out: dict[str, Any] = {"frames": len(rows)}
    for source in ("raw", "compensated", "lidar"):
        values = [r[source] for r in rows if source in r]
        if values:
            out[source] = {k: float(np.nanmean([v[k] for v in values])) for k in ("abs_rel", "rmse", "d1", "coverage")}
    return out
