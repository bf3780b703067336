"""``slimdepth evaluate``, ``predict``, ``models`` and ``cost``: using and measuring models."""

from __future__ import annotations

import json
from glob import glob
from pathlib import Path
from typing import Any

import typer

from slimdepth.commands.common import check_output_file, console, err_console
from slimdepth.errors import ConfigError, DataError
from slimdepth.progress import progress_bar


def _input_size(model: Any, size: str | None) -> tuple[int, int] | None:
    """``--size``, else the training size the checkpoint records, else None (each image's own)."""
    from slimdepth.options import parse_size

    if size:
        return parse_size(size, "--size")
    meta = getattr(model, "checkpoint_info", {}).get("metadata", {})
    if meta.get("input_size") is None:
        return None
    try:
        return parse_size(meta["input_size"], "the checkpoint's input_size")
    except ConfigError as exc:
        raise DataError(f"checkpoint: {exc}; pass --size HxW") from None


def _warn_aspect(image_size: tuple[int, int], input_size: tuple[int, int] | None) -> None:
    """Warn once when resizing images of ``image_size`` to the model input changes their aspect ratio."""
    if input_size is None:
        return
    (h, w), (ih, iw) = image_size, input_size
    if abs((w / h) / (iw / ih) - 1) > 0.1:
        err_console.print(f"warning: the images ({h}x{w}) are resized to the model input {ih}x{iw}, which changes "
                          "their aspect ratio; pass --size HxW to keep it", markup=False)


def evaluate(
    checkpoint: Path = typer.Argument(..., help="Checkpoint (.safetensors), or a run directory (uses its best)."),
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
    import slimdepth
    from slimdepth.data.registry import build_dataset
    from slimdepth.evaluate.conventions import CROPS, resolve_eval_config
    from slimdepth.evaluate.loop import evaluate_model

    if json_out is not None:
        check_output_file(json_out, overwrite, (".json",))
    if crop and crop not in (*CROPS, "none"):
        raise ConfigError(f"--crop must be one of {', '.join(CROPS)} or none, got {crop!r}")
    if batch_size < 1:
        raise ConfigError("--batch-size must be >= 1")
    if limit is not None and limit < 1:
        raise ConfigError("--limit must be >= 1")
    model = slimdepth.load(checkpoint, device)
    dataset = build_dataset(data)
    config = resolve_eval_config(dataset, preset, crop, min_depth, max_depth, median_scaling)
    input_size = _input_size(model, size)
    if len(dataset):
        _warn_aspect(tuple(dataset[0]["image"].shape[-2:]), input_size)
    with progress_bar("evaluating", "images") as update:
        report = evaluate_model(model, dataset, config, input_size, batch_size, flip,
                                next(model.parameters()).device, progress=update, limit=limit)
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


def _inputs(patterns: list[str]) -> list[Path]:
    from slimdepth.data.io import IMAGE_SUFFIXES, list_images

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
        raise DataError("no input images found")
    return files


def predict(
    checkpoint: Path = typer.Argument(..., help="Checkpoint (.safetensors), or a run directory (uses its best)."),
    inputs: list[str] = typer.Argument(None, help="Image files, folders or globs (or use --data)."),
    out: Path = typer.Option(..., "--out", help="Output folder (created)."),
    data: str = typer.Option("", "--data", help="Predict a dataset instead; outputs are named by sample, as evaluate-preds expects."),
    size: str = typer.Option("", "--size", help="Model input size HxW (default: the training size in the checkpoint)."),
    png_encoding: str = typer.Option("mm", "--png-encoding", help="16-bit PNG units: mm (millimetres, max 65.5 m) or kitti (value/256, max 256 m)."),
    ply: bool = typer.Option(False, "--ply", help="Also write a coloured point cloud per image (needs intrinsics)."),
    intrinsics: str = typer.Option("", "--intrinsics", help="fx,fy,cx,cy of the input images, or a K file, for --ply."),
    cmap: str = typer.Option("magma", "--cmap", help="Colour map of the colourised depth."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
) -> None:
    """Predict depth for images: NAME.png (16-bit), NAME.npy (metres), NAME_vis.png (colour), NAME.ply."""
    import numpy as np
    import torch

    import slimdepth
    from slimdepth.data.folder import parse_intrinsics
    from slimdepth.data.io import PNG_DEPTH_SCALE, read_rgb, write_depth, write_rgb
    from slimdepth.evaluate.loop import predict_depth
    from slimdepth.visualize import check_colormap, colorize_depth, write_ply

    check_colormap(cmap)
    if png_encoding not in PNG_DEPTH_SCALE:
        raise ConfigError(f"--png-encoding must be mm or kitti, got {png_encoding!r}")
    if bool(data) == bool(inputs):
        raise ConfigError("give either input images or --data DATASET")
    K = parse_intrinsics(intrinsics) if intrinsics else None
    if data:
        from slimdepth.data.registry import build_dataset

        dataset = build_dataset(data)
        names = dataset.names()
        load = lambda i: dataset.load(i)  # noqa: E731
        if ply and K is None:
            K = "sample"  # each sample's own intrinsics
    else:
        files = _inputs(inputs)
        names = [f.stem for f in files]
        if len(set(names)) != len(names):
            raise DataError("two inputs share a file name; predict them into different --out folders, or use --data")
        load = lambda i: {"image": torch.from_numpy(read_rgb(files[i]).transpose(2, 0, 1).copy()).float() / 255.0}  # noqa: E731
    if ply and K is None:
        raise ConfigError("--ply needs --intrinsics fx,fy,cx,cy (or a K file) of the input images")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder")
    targets = [out / f"{n}{suffix}" for n in names for suffix in (".png", ".npy", "_vis.png") + ((".ply",) if ply else ())]
    if not data:  # --overwrite replaces earlier predictions, never an input image
        sources = {f.resolve() for f in files}
        inputs_hit = [t for t in targets if t.resolve() in sources]
        if inputs_hit:
            raise ConfigError(f"{inputs_hit[0]}: is one of the input images; choose another --out folder")
    clash = [t for t in targets if t.exists()]
    if clash and not overwrite:
        raise ConfigError(f"{clash[0]}: already exists; pass --overwrite to replace predictions")
    model = slimdepth.load(checkpoint, device)
    input_size = _input_size(model, size)
    limit = 65535 * PNG_DEPTH_SCALE[png_encoding]
    beyond = 0
    with progress_bar("predicting", "images") as update:
        for i, name in enumerate(names):
            sample = load(i)
            image = sample["image"]
            if i == 0:  # the folder appears once the first image has been read
                _warn_aspect(tuple(image.shape[-2:]), input_size)
                out.mkdir(parents=True, exist_ok=True)
            depth = predict_depth(model, [image], input_size, device=next(model.parameters()).device)[0][0].numpy()
            beyond += int((depth > limit).sum())
            write_depth(out / f"{name}.png", depth, png_encoding)  # type: ignore[arg-type]
            write_depth(out / f"{name}.npy", depth.astype(np.float32), "npy")
            write_rgb(out / f"{name}_vis.png", colorize_depth(depth, cmap))
            if ply:
                rgb = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
                write_ply(out / f"{name}.ply", depth, sample["K"].numpy() if isinstance(K, str) else K, image=rgb)
            update(i + 1, len(names))
    console.print(f"{out}: depth of {len(names)} images (NAME.png {png_encoding}, NAME.npy metres, NAME_vis.png)")
    if beyond:
        err_console.print(f"warning: {beyond} pixels beyond {limit:.1f} m were written as 0 (invalid) in the "
                          f"{png_encoding} PNGs; the .npy files hold them (or use --png-encoding kitti)", markup=False)


def models(
    size: str = typer.Option("192x640", "--size", help="Input size HxW for the MACs."),
) -> None:
    """List the model zoo: name, parameters, MACs and size at an input size."""
    from slimdepth.deploy.cost import count_macs, count_parameters, state_dict_size_mb
    from slimdepth.models.zoo import build_model, list_models
    from slimdepth.options import parse_size

    hw = parse_size(size, "--size")
    console.print(f"{'model':16s} {'params (M)':>10s} {'GMACs':>8s} {'size (MB)':>9s}  description   (input {hw[0]}x{hw[1]})")
    for name, description in list_models().items():
        model = build_model(name).eval()
        macs = count_macs(model, hw)
        console.print(f"{name:16s} {count_parameters(model) / 1e6:10.3f} {macs.total / 1e9:8.3f} "
                      f"{state_dict_size_mb(model):9.2f}  {description}")


def cost(
    model_or_checkpoint: str = typer.Argument(..., help="A zoo name (see `slimdepth models`), a checkpoint or a run directory."),
    size: str = typer.Option("", "--size", help="Input size HxW (default: a checkpoint's training size, else 192x640)."),
    threads: int = typer.Option(None, "--threads", help="CPU threads for the latency runs (default: torch's)."),
    runs: int = typer.Option(30, "--runs", help="Timed runs (after the warm-up)."),
    warmup: int = typer.Option(5, "--warmup", help="Untimed warm-up runs."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    json_out: Path = typer.Option(None, "--json", help="Also write the report as JSON to this file."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing JSON file."),
) -> None:
    """Parameters, MACs (torch.utils.flop_counter, interpolation included), file size and latency."""
    import slimdepth
    from slimdepth.compress.gating import is_gated, latency_comparison
    from slimdepth.deploy.cost import cost_report, format_cost_table
    from slimdepth.models.checkpoint import checkpoint_paths, resolve_checkpoint
    from slimdepth.models.zoo import build_model, list_models
    from slimdepth.options import parse_size, resolve_device

    if json_out is not None:
        check_output_file(json_out, overwrite, (".json",))
    if runs < 1 or warmup < 0 or (threads is not None and threads < 1):
        raise ConfigError("--runs must be >= 1, --warmup >= 0 and --threads >= 1")
    target = resolve_device(device)
    if model_or_checkpoint in list_models():
        model, file = build_model(model_or_checkpoint), None
    elif not Path(model_or_checkpoint).exists() and not Path(model_or_checkpoint).with_suffix(".json").exists():
        raise ConfigError(f"{model_or_checkpoint}: neither a zoo model ({', '.join(list_models())}) "
                          "nor a checkpoint or run directory")
    else:
        path = resolve_checkpoint(model_or_checkpoint)
        model, file = slimdepth.load(path, target), checkpoint_paths(path)[0]
    hw = _input_size(model, size) or parse_size("192x640")
    report = cost_report(model.to(target).eval(), hw, runs=runs, warmup=warmup, threads=threads, file=file,
                         device=str(target))
    report["name"] = model_or_checkpoint
    console.print(format_cost_table([report]))
    if is_gated(model) and runs > 0 and hw is not None:  # the same weights run densely, interleaved
        import torch

        with torch.no_grad():
            both = latency_comparison(model, hw, runs=runs, warmup=warmup, threads=threads)
        report["gating_latency"] = both
        console.print(f"dynamic gating: {both['gated']['median_ms']:.1f} ms gated vs {both['dense']['median_ms']:.1f} ms "
                      f"dense with the same weights (median of {runs} interleaved runs each; "
                      f"{both['reduction']:+.1%} reduction)")
    if json_out is not None:
        json_out.write_text(json.dumps(report, indent=2, default=str) + "\n")
        console.print(f"wrote {json_out}")
