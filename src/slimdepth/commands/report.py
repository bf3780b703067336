"""``slimdepth report``: every model of runs and pipelines on one self-contained page or a Markdown table."""

from __future__ import annotations

from pathlib import Path

import typer

from slimdepth.commands.common import check_output_file, console


def report(
    inputs: list[Path] = typer.Argument(..., help="Run directories, pipeline directories, checkpoints or exported files."),
    out: Path = typer.Option(..., "--out", help="The report file (.html, or .md with --format md)."),
    fmt: str = typer.Option("html", "--format", help="html (a self-contained page) or md (a README-ready table)."),
    real: Path = typer.Option(None, "--real", help="KITTI raw folder (scored against the projected Velodyne depth) or "
                              "KITTI annotated-depth folder (rgb/, depth/): add predictions on real frames."),
    real_num: int = typer.Option(8, "--real-num", help="Real frames per model."),
    runtime: str = typer.Option("", "--runtime", help="Measure latency on these runtimes (comma-separated: torch, ort, "
                                "ort-int8, openvino, litert, ...)."),
    size: str = typer.Option("", "--size", help="Input size HxW for latency, samples and real frames (default: each "
                             "model's own)."),
    data: str = typer.Option("", "--data", help="Evaluate every model on this dataset spec and draw samples from it "
                             "(default: the recipe's validation set)."),
    threads: int = typer.Option(2, "--threads", help="Threads per runtime when measuring latency."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing report file."),
) -> None:
    """Write one report of every model: table, accuracy against latency, curves, samples, real frames, settings."""
    # lazy: torch and matplotlib load only when the verb runs (`slimdepth --help` stays fast)
    from slimdepth.options import parse_size
    from slimdepth.report.build import FORMATS, check_report_options, write_report

    runtimes = [r for r in runtime.split(",") if r.strip()] if runtime else []
    check_report_options(out, fmt, real_num, runtimes, overwrite)
    check_output_file(out, overwrite, FORMATS[fmt])
    input_size = parse_size(size, "--size") if size else None
    written = write_report(inputs, out, fmt, real, real_num, runtimes, input_size,
                           log=lambda message: console.print(message, markup=False),
                           data=data or None, threads=threads, overwrite=overwrite)
    console.print(f"wrote {written}")
