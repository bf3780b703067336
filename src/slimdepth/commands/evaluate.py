"""``slimdepth evaluate-preds``: score a folder of predicted depth maps from any model."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from slimdepth.commands.common import check_output_file, console, err_console
from slimdepth.errors import ConfigError
from slimdepth.progress import progress_bar



def evaluate_preds(
    pred: Path = typer.Option(..., "--pred", help="Folder of predictions named like the samples (<name>.png|.npy)."),
    data: str = typer.Option(..., "--data", help="Dataset spec of the ground truth, e.g. kitti:/data/raw,split=eigen.txt."),
    preset: str = typer.Option("", "--preset", help="kitti (Garg crop, 80 m), kitti-eigen, nyu (Eigen crop, 10 m) or none; default: the dataset's."),
    crop: str = typer.Option("", "--crop", help="Override the crop: garg, eigen, nyu or none."),
    min_depth: float = typer.Option(None, "--min-depth", help="Override the minimum valid depth (m)."),
    max_depth: float = typer.Option(None, "--max-depth", help="Override the depth cap (m)."),
    median_scaling: bool = typer.Option(False, "--median-scaling", help="Scale each prediction by median(gt)/median(pred)."),
    resize: bool = typer.Option(False, "--resize", help="Resize predictions to the ground-truth size (bilinear)."),
    encoding: str = typer.Option("auto", "--encoding", help="auto, mm (16-bit PNG millimetres), kitti (PNG /256) or npy (metres)."),
    allow_missing: bool = typer.Option(False, "--allow-missing", help="Score the samples that have a prediction, report the rest."),
    json_out: Path = typer.Option(None, "--json", help="Also write the report as JSON to this file."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing JSON file."),
) -> None:
    """Score predicted depth files against a dataset and print the metrics table."""
    from slimdepth.data.registry import build_dataset
    from slimdepth.evaluate.conventions import CROPS, resolve_eval_config
    from slimdepth.evaluate.preds import PRED_ENCODINGS, evaluate_predictions

    if json_out is not None:
        check_output_file(json_out, overwrite, (".json",))
    if crop and crop not in (*CROPS, "none"):  # checked before any file is read
        raise ConfigError(f"--crop must be one of {', '.join(CROPS)} or none, got {crop!r}")
    if encoding not in PRED_ENCODINGS:
        raise ConfigError(f"--encoding must be one of {', '.join(PRED_ENCODINGS)}, got {encoding!r}")
    dataset = build_dataset(data)
    config = resolve_eval_config(dataset, preset, crop, min_depth, max_depth, median_scaling)
    with progress_bar("scoring", "images") as update:
        report = evaluate_predictions(pred, dataset, config, encoding=encoding, resize=resize,
                                      progress=update, allow_missing=allow_missing)
    console.print(report.format_summary())
    console.print(report.format_table())
    for warning in report.warnings:
        err_console.print(f"warning: {warning}", markup=False)
    if json_out is not None:
        json_out.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        console.print(f"wrote {json_out}")
