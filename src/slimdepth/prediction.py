"""Where predictions go, checked before any work, and the files written for each one (no torch).

For every input ``NAME`` the folder gets ``NAME.png`` (16-bit depth, millimetres or KITTI's
value/256), ``NAME.npy`` (float32 metres), ``NAME_vis.png`` (colourised) and, with point clouds,
``NAME.ply``. Inputs are either image files, folders and globs (:func:`image_inputs`, outputs
named by file stem) or a dataset (:func:`slimdepth.evaluate.predict.dataset_inputs`, outputs
named by sample, as ``slimdepth evaluate-preds`` expects).

Safety: every output path is planned and checked before any work (:func:`plan_outputs`). No
output may land on a file that an input reads -- an input image, or any file of the input
dataset (its images, ground truth, labels, calibration) -- nor inside a folder the dataset
scans (``DATA/rgb/pred`` would become part of the dataset), with or without ``overwrite``.
``overwrite`` only replaces earlier predictions -- a name whose ``NAME.npy`` and ``NAME_vis.png``
are both there -- never a folder's own ``NAME.png`` (someone's ground truth, say). The
folder is created once the first image has been read, so a run that fails on its inputs leaves
nothing behind.

This module imports neither torch nor matplotlib: the PyTorch path
(:func:`slimdepth.evaluate.predict.predict_to_folder`) and the torch-free predictor
(:mod:`slimdepth.runtime`) plan and write through it, so both give the same files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path
from typing import Any

import numpy as np

from slimdepth.colormap import check_colormap, colorize_depth
from slimdepth.errors import ConfigError, DataError
from slimdepth.fileio import (
    IMAGE_SUFFIXES,
    PNG_DEPTH_SCALE,
    as_rgb_uint8,
    list_images,
    read_rgb,
    write_depth,
    write_ply,
    write_rgb,
)

__all__ = ["PredictionInputs", "PredictionPlan", "PredictionSummary", "aspect_warning", "image_inputs", "output_names", "plan_outputs",
           "plan_prediction", "start_prediction", "write_prediction"]


@dataclass
class PredictionInputs:
    """What to predict: ``names`` (one output stem each), ``load(i)`` giving a sample with an
    ``image`` (and ``K``), the files the inputs read (``sources``) and, for a dataset, whether
    each sample brings its own intrinsics."""

    names: list[str]
    load: Callable[[int], dict[str, Any]]
    sources: set[Path] = field(default_factory=set)
    folders: set[Path] = field(default_factory=set)  # folders the inputs scan: no output inside one
    described_as: str = "the input images"
    own_intrinsics: bool = False


@dataclass
class PredictionSummary:
    """What :func:`predict_to_folder` wrote."""

    out: Path
    images: int
    png_encoding: str
    beyond_png: int = 0  # pixels beyond what the 16-bit PNG encoding holds (written as 0 there)
    png_limit_m: float = 0.0
    files: list[Path] = field(default_factory=list)


def _resolved(paths: Sequence[Path]) -> set[Path]:
    return {Path(p).resolve() for p in paths}


def image_inputs(patterns: Sequence[str]) -> PredictionInputs:
    """Image files, folders (their images) and globs, in the order given."""
    files: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            files += list_images(path)
        elif path.is_file():
            files.append(path)
        else:
            matches = sorted(Path(p) for p in glob(pattern) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
            if not matches:
                raise DataError(f"{pattern}: no such image file, folder or matching glob")
            files += matches
    if not files:
        raise DataError(f"no input images found in {', '.join(patterns)}")
    seen: dict[str, Path] = {}
    for f in files:
        if f.stem in seen:
            raise DataError(f"{seen[f.stem]} and {f} share the file name {f.stem!r}; predict them into different "
                            "--out folders, or use --data")
        seen[f.stem] = f

    def load(i: int) -> dict[str, Any]:
        return {"image": read_rgb(files[i]).transpose(2, 0, 1).astype(np.float32) / 255.0}

    return PredictionInputs([f.stem for f in files], load, _resolved(files))


def aspect_warning(image_size: tuple[int, int], input_size: tuple[int, int] | None) -> str | None:
    """A warning when resizing images of ``image_size`` to the model input changes their aspect
    ratio by more than 10% (depth then stretches with the image), else ``None``."""
    if input_size is None:
        return None
    (h, w), (ih, iw) = image_size, input_size
    if abs((w / h) / (iw / ih) - 1) > 0.1:
        return (f"the images ({h}x{w}) are resized to the model input {ih}x{iw}, which changes their aspect ratio; "
                "pass --size HxW to keep it")
    return None


def output_names(name: str, ply: bool) -> list[str]:
    """The files written for one input."""
    return [f"{name}.png", f"{name}.npy", f"{name}_vis.png"] + ([f"{name}.ply"] if ply else [])


def _earlier_prediction(out: Path, name: str) -> bool:
    """Whether ``out`` holds what ``predict`` writes for ``name``: its metres and its colour view
    together (a dataset folder holding ``NAME.png`` or ``NAME.npy`` alone is not one)."""
    return (out / f"{name}.npy").is_file() and (out / f"{name}_vis.png").is_file()


def plan_outputs(inputs: PredictionInputs, out: Path, ply: bool = False, overwrite: bool = False) -> list[Path]:
    """Every file the prediction will write, checked before any work: none is an input file and
    none lies inside a folder the inputs scan (ever); an existing one is replaced only with
    ``overwrite`` and only if an earlier ``predict`` wrote it; ``out`` is a folder (or is new)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder")
    where = out.resolve()
    scanned = [f for f in inputs.folders if where == f or f in where.parents]
    if scanned:
        raise ConfigError(f"{out}: lies in {scanned[0]}, a folder of {inputs.described_as}; choose another --out "
                          "folder (predictions never go where the inputs are read from)")
    targets = [out / f for n in inputs.names for f in output_names(n, ply)]
    hit = [t for t in targets if t.resolve() in inputs.sources]
    if hit:
        raise ConfigError(f"{hit[0]}: is a file of {inputs.described_as}; choose another --out folder "
                          "(predictions never replace an input, even with --overwrite)")
    clash = [t for t in targets if t.exists()]
    if clash and not overwrite:
        raise ConfigError(f"{clash[0]}: already exists; pass --overwrite to replace predictions")
    by_name = {t: n for n in inputs.names for t in (out / f for f in output_names(n, ply))}
    foreign = [t for t in clash if not _earlier_prediction(out, by_name[t])]
    if foreign:
        raise ConfigError(f"{foreign[0]}: already exists and is not an earlier prediction (no {by_name[foreign[0]]}.npy "
                          f"and {by_name[foreign[0]]}_vis.png beside it); --overwrite only replaces predictions")
    return targets


@dataclass
class PredictionPlan:
    """A checked prediction job (:func:`plan_prediction`): what to read, where to write, how."""

    inputs: PredictionInputs
    out: Path
    targets: list[Path]
    png_encoding: str = "mm"
    ply: bool = False
    K: np.ndarray | None = None
    cmap: str = "magma"


def plan_prediction(inputs: PredictionInputs, out: Path, *, png_encoding: str = "mm", ply: bool = False,
                    K: np.ndarray | None = None, cmap: str = "magma", overwrite: bool = False) -> PredictionPlan:
    """Check every option and every output path (:func:`plan_outputs`) before any work.

    ``K`` (3x3) is the intrinsics of the input images for the point clouds; a dataset's samples
    bring their own.
    """
    check_colormap(cmap)
    if png_encoding not in PNG_DEPTH_SCALE:
        raise ConfigError(f"--png-encoding must be mm or kitti, got {png_encoding!r}")
    if ply and K is None and not inputs.own_intrinsics:
        raise ConfigError("--ply needs --intrinsics fx,fy,cx,cy (or a K file) of the input images")
    out = Path(out)
    return PredictionPlan(inputs, out, plan_outputs(inputs, out, ply, overwrite), png_encoding, ply, K, cmap)


def write_prediction(plan: PredictionPlan, summary: PredictionSummary, name: str, depth: np.ndarray,
                     image: Any, camera: Any = None) -> None:
    """Write the files of one prediction: ``depth`` (HxW metres) of ``image`` (3xHxW in [0, 1],
    NumPy or torch), with ``camera`` (3x3) for the point cloud; counts what the PNG cannot hold."""
    summary.beyond_png += int((depth > summary.png_limit_m).sum())
    out = plan.out
    write_depth(out / f"{name}.png", depth, plan.png_encoding)  # type: ignore[arg-type]
    write_depth(out / f"{name}.npy", depth.astype(np.float32), "npy")
    write_rgb(out / f"{name}_vis.png", colorize_depth(depth, plan.cmap))
    if plan.ply:
        camera = plan.K if plan.K is not None else camera
        if camera is None:
            raise DataError(f"sample {name!r} has no intrinsics for its point cloud; pass --intrinsics")
        camera = camera.numpy() if hasattr(camera, "numpy") else camera
        write_ply(out / f"{name}.ply", depth, camera, image=as_rgb_uint8(image))
    summary.files += [out / f for f in output_names(name, plan.ply)]


def start_prediction(plan: PredictionPlan) -> PredictionSummary:
    """The summary a prediction run fills in, for ``plan``'s PNG encoding."""
    limit = 65535 * PNG_DEPTH_SCALE[plan.png_encoding]
    return PredictionSummary(plan.out, len(plan.inputs.names), plan.png_encoding, png_limit_m=limit)
