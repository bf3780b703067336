"""``slimdepth export``: a model as an ONNX, LiteRT or OpenVINO file, parity-checked, with a report."""

from __future__ import annotations

from pathlib import Path

import typer

from slimdepth.commands.common import console, warn


def export(
    model: str = typer.Argument(..., help="Checkpoint (.safetensors), run directory, or zoo name (random weights)."),
    out: Path = typer.Option(..., "--out", help="The file to write: .onnx, .tflite (litert) or .xml (openvino, + .bin)."),
    fmt: str = typer.Option("onnx", "--format", help="onnx, litert or openvino."),
    size: str = typer.Option("", "--size", help="Input size HxW (default: the training size in the checkpoint)."),
    dynamic: bool = typer.Option(False, "--dynamic", help="ONNX/OpenVINO: dynamic height and width (checked at two sizes)."),
    int8: bool = typer.Option(False, "--int8", help="ONNX or LiteRT: static int8 quantization, calibrated on --calib."),
    calib: str = typer.Option("", "--calib", help="Dataset spec of the calibration images for --int8."),
    calib_num: int = typer.Option(64, "--calib-num", help="Calibration images."),
    calib_method: str = typer.Option("minmax", "--calib-method", help="minmax, entropy or percentile."),
    int8_ops: str = typer.Option("all", "--int8-ops", help="ONNX int8: quantize every op ORT can ('all') or the convolutions alone ('conv')."),
    val: str = typer.Option("", "--val", help="Dataset spec scoring fp32 against int8 (default: --calib)."),
    val_num: int = typer.Option(64, "--val-num", help="Images of --val scored."),
    opset: int = typer.Option(18, "--opset", help="ONNX opset (17-20)."),
    threads: int = typer.Option(None, "--threads", help="Runtime threads for the checks and the int8 timing."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing export and its report."),
) -> None:
    """Export a model for deployment: raw [0,1] RGB in, metres out, checked against PyTorch."""
    # lazy: torch and the exporters load only when the verb runs (`slimdepth --help` stays fast)
    from slimdepth.deploy.export import ExportSettings, check_export_settings, export_model
    from slimdepth.deploy.formats import report_path
    from slimdepth.options import parse_size

    settings = ExportSettings(fmt, parse_size(size, "--size") if size else None, dynamic, int8, calib or None,
                              calib_num=calib_num, calib_method=calib_method, int8_ops=int8_ops, val=val or None,
                              val_num=val_num, opset=opset, overwrite=overwrite, threads=threads)
    check_export_settings(settings, out)  # every option, package, dataset and path before the model loads
    if int8 and not val:
        warn(f"no --val: int8 accuracy is scored on the calibration images ({calib}); give a held-out split")
    report = export_model(model, out, settings, log=lambda message: console.print(message, markup=False))
    size_mb = report["file_bytes"] / 1e6
    console.print(f"wrote {out} ({size_mb:.2f} MB) and {report_path(out)} in {report['export_seconds']:.1f} s")
    if "int8" in report:
        q = report["int8"]
        console.print(f"int8 vs fp32 on {q['validation']['images']} images of {q['validation']['dataset']}: "
                      f"delta1 {q['int8']['d1']:.4f} vs {q['fp32']['d1']:.4f} ({q['delta1_change_points']:+.2f} points), "
                      f"AbsRel {q['int8']['abs_rel']:.4f} vs {q['fp32']['abs_rel']:.4f}, RMSE {q['int8']['rmse']:.3f} vs "
                      f"{q['fp32']['rmse']:.3f}; {q['int8']['median_ms']:.2f} ms vs {q['fp32']['median_ms']:.2f} ms "
                      f"({q['speedup']:.2f}x)")
