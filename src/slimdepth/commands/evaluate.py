"""``slimdepth evaluate`` (a model on a dataset) and ``slimdepth evaluate-preds`` (a folder of
predictions from any model): the metrics table with the community's conventions."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from slimdepth.commands.common import check_output_file, console, warn
from slimdepth.errors import ConfigError
from slimdepth.options import parse_size
from slimdepth.progress import progress_bar


def evaluate(
    checkpoint: Path = typer.Argument(..., help="Checkpoint (.safetensors), a run directory (uses its best), or an "
                                      "exported .onnx/.tflite/.xml file (scored on its runtime)."),
    data: str = typer.Option(..., "--data", help="Dataset spec of the evaluation data."),
    preset: str = typer.Option("", "--preset", help="kitti, kitti-eigen, nyu or none; default: the dataset's."),
    crop: str = typer.Option("", "--crop", help="Override the crop: garg, eigen, nyu or none."),
    min_depth: float = typer.Option(None, "--min-depth", help="Override the minimum valid depth (m)."),
    max_depth: float = typer.Option(None, "--max-depth", help="Override the depth cap (m)."),
    median_scaling: bool = typer.Option(False, "--median-scaling", help="Scale each prediction by median(gt)/median(pred)."),
    flip: bool = typer.Option(False, "--flip", help="Flip test-time augmentation: average with the mirrored prediction."),
    size: str = typer.Option("", "--size", help="Model input size HxW (default: the training size in the checkpoint)."),
    batch_size: int = typer.Option(4, "--batch-size", help="Images per forward pass."),
    limit: int = typer.Option(None, "--limit", help="Evaluate only the first N samples."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    json_out: Path = typer.Option(None, "--json", help="Also write the report as JSON to this file."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing JSON file."),
) -> None:
    """Run a model over a dataset with the community's conventions and print the metrics."""
    # lazy: torch and the model machinery load only when a verb runs (`slimdepth --help` stays fast)
    from slimdepth.data.registry import build_dataset
    from slimdepth.deploy.exported import load_for_inference
    from slimdepth.evaluate.conventions import CROPS, resolve_eval_config
    from slimdepth.evaluate.loop import evaluate_model
    from slimdepth.models.base import model_device
    from slimdepth.prediction import aspect_warning

    if json_out is not None:
        check_output_file(json_out, overwrite, (".json",))
    if crop and crop not in (*CROPS, "none"):
        raise ConfigError(f"--crop must be one of {', '.join(CROPS)} or none, got {crop!r}")
    if batch_size < 1:
        raise ConfigError("--batch-size must be >= 1")
    if limit is not None and limit < 1:
        raise ConfigError("--limit must be >= 1")
    input_size = parse_size(size, "--size") if size else None  # checked before the model loads
    # an exported file runs on its runtime; a fixed-size one refuses another --size here
    model, input_size = load_for_inference(checkpoint, device, input_size)
    dataset = build_dataset(data)
    config = resolve_eval_config(dataset, preset, crop, min_depth, max_depth, median_scaling)
    if len(dataset):
        message = aspect_warning(tuple(dataset[0]["image"].shape[-2:]), input_size)
        if message:
            warn(message)
    with progress_bar("evaluating", "images") as update:
        report = evaluate_model(model, dataset, config, input_size, batch_size, flip,
                                model_device(model), progress=update, limit=limit)
    shown = f"{input_size[0]}x{input_size[1]}" if input_size else "each image's own"
    console.print(report.format_summary() + f", model input {shown}" + (", flip test-time augmentation" if flip else ""))
    console.print(report.format_table())
    if json_out is not None:
        out = {**report.to_dict(), "checkpoint": str(checkpoint), "flip": flip,
               "input_size": list(input_size) if input_size else None}
        for key in ("pred_dir", "encoding", "resize"):  # fields of scoring prediction files
            out.pop(key, None)
        json_out.write_text(json.dumps(out, indent=2) + "\n")
        console.print(f"wrote {json_out}")


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
    # lazy: see evaluate()
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
        warn(warning)
    if json_out is not None:
        json_out.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        console.print(f"wrote {json_out}")

