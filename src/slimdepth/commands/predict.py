"""``slimdepth predict``: depth for images, folders, globs or a dataset, written to a folder."""

from __future__ import annotations

from pathlib import Path

import typer

from slimdepth.commands.common import console, warn
from slimdepth.errors import ConfigError
from slimdepth.options import parse_size
from slimdepth.progress import progress_bar


def predict(
    checkpoint: Path = typer.Argument(..., help="Checkpoint (.safetensors), a run directory (uses its best), or an "
                                      "exported .onnx (run by ONNX Runtime, no PyTorch needed), .tflite or .xml."),
    inputs: list[str] = typer.Argument(None, help="Image files, folders or globs (or use --data)."),
    out: Path = typer.Option(..., "--out", help="Output folder (created)."),
    data: str = typer.Option("", "--data", help="Predict a dataset instead; outputs are named by sample, as evaluate-preds expects."),
    size: str = typer.Option("", "--size", help="Model input size HxW (default: the training size in the checkpoint)."),
    png_encoding: str = typer.Option("mm", "--png-encoding", help="16-bit PNG units: mm (millimetres, max 65.5 m) or kitti (value/256, max 256 m)."),
    ply: bool = typer.Option(False, "--ply", help="Also write a coloured point cloud per image (needs intrinsics)."),
    intrinsics: str = typer.Option("", "--intrinsics", help="fx,fy,cx,cy of the input images, or a K file, for --ply."),
    cmap: str = typer.Option("magma", "--cmap", help="Colour map of the colourised depth."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files (never an input)."),
) -> None:
    """Predict depth for images: NAME.png (16-bit), NAME.npy (metres), NAME_vis.png (colour), NAME.ply."""
    # lazy: torch and the model machinery load only when a verb runs (`slimdepth --help` stays fast);
    # an .onnx model on image files runs without torch (slimdepth.runtime)
    from slimdepth.deploy.formats import format_of
    from slimdepth.fileio import parse_intrinsics
    from slimdepth.prediction import image_inputs, plan_prediction

    if bool(data) == bool(inputs):
        raise ConfigError("give either input images or --data DATASET")
    input_size = parse_size(size, "--size") if size else None
    K = parse_intrinsics(intrinsics) if intrinsics else None
    if data:
        from slimdepth.data.registry import build_dataset
        from slimdepth.evaluate.predict import dataset_inputs

        sources = dataset_inputs(build_dataset(data), data)
    else:
        sources = image_inputs(inputs)
    plan = plan_prediction(sources, out, png_encoding=png_encoding, ply=ply, K=K, cmap=cmap, overwrite=overwrite)
    fmt = format_of(checkpoint)
    if fmt == "onnx":
        from slimdepth.runtime import DepthPredictor
        from slimdepth.runtime import predict_to_folder as predict_onnx

        predictor = DepthPredictor(checkpoint, size=input_size)
        with progress_bar("predicting", "images") as update:
            summary = predict_onnx(predictor, plan, progress=update, warn=warn)
    else:
        from slimdepth.deploy.exported import load_for_inference
        from slimdepth.evaluate.predict import predict_to_folder

        # only once every input and output has been checked; a fixed-size export refuses another --size
        model, model_size = load_for_inference(checkpoint, device, input_size)
        with progress_bar("predicting", "images") as update:
            summary = predict_to_folder(model, plan, model_size, progress=update, warn=warn)
    console.print(f"{out}: depth of {summary.images} images (NAME.png {png_encoding}, NAME.npy metres, NAME_vis.png)")
    if summary.beyond_png:
        warn(f"{summary.beyond_png} pixels beyond {summary.png_limit_m:.1f} m were written as 0 (invalid) in the "
             f"{png_encoding} PNGs; the .npy files hold them (or use --png-encoding kitti)")

