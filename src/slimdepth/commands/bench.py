"""``slimdepth bench``: models on runtimes, side by side, each timed in its own process."""

from __future__ import annotations

import platform
from pathlib import Path

import typer

from slimdepth.commands.common import check_output_file, console
from slimdepth.errors import ConfigError


def bench(
    models: list[str] = typer.Argument(..., help="Zoo names, checkpoints, run directories or exported files."),
    runtime: str = typer.Option("torch,ort,openvino", "--runtime",
                                help="Comma-separated: torch, ort, ort-int8, litert, litert-int8, openvino, openvino-bf16."),
    size: str = typer.Option("480x640", "--size", help="Input size HxW."),
    threads: int = typer.Option(2, "--threads", help="Threads per runtime."),
    runs: int = typer.Option(50, "--runs", help="Timed batch-1 runs per model and runtime."),
    warmup: int = typer.Option(10, "--warmup", help="Untimed runs first."),
    rounds: int = typer.Option(5, "--rounds", help="Interleaved rounds the runs are split into."),
    calib: str = typer.Option("", "--calib", help="Calibration dataset for ort-int8 and litert-int8 (default: synthetic frames)."),
    json_out: Path = typer.Option(None, "--json", help="Write the table as JSON."),
    csv_out: Path = typer.Option(None, "--csv", help="Write the table as CSV."),
    plot: Path = typer.Option(None, "--plot", help="Write a bar chart (.png)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing --json/--csv/--plot files."),
) -> None:
    """Time every model on every runtime at batch 1, interleaved, and print the speed-ups over torch."""
    # lazy: torch and the runtimes load only when the verb runs (`slimdepth --help` stays fast)
    from rich.table import Table

    from slimdepth.deploy.bench import bench as run_bench
    from slimdepth.deploy.bench import parse_runtimes, write_csv, write_json, write_plot
    from slimdepth.deploy.latency import check_timing
    from slimdepth.deploy.machine import cpu_model
    from slimdepth.options import check_number, parse_size

    chosen = parse_runtimes(runtime)
    input_size = parse_size(size, "--size")
    check_timing(runs, warmup, threads, "--")
    check_number(rounds, "--rounds", integer=True, low=1)
    for path, suffix in ((json_out, ".json"), (csv_out, ".csv"), (plot, ".png")):
        if path is not None:
            check_output_file(path, overwrite, (suffix,))
    if not models:
        raise ConfigError("bench needs at least one model")
    rows = run_bench(models, chosen, input_size, threads, runs, warmup, rounds, calib or None,
                     log=lambda message: console.print(message, markup=False))
    table = Table(title=f"batch 1, {input_size[0]}x{input_size[1]}, {threads} threads, median of {runs} runs")
    for column in ("model", "runtime", "median ms", "p90 ms", "x torch", "note"):
        table.add_column(column, justify="right" if "ms" in column or column.startswith("x") else "left")
    for row in rows:
        table.add_row(row.model, row.runtime, f"{row.median_ms:.2f}" if row.median_ms else "-",
                      f"{row.p90_ms:.2f}" if row.p90_ms else "-",
                      f"{row.speedup_vs_torch:.2f}" if row.speedup_vs_torch else "-", row.note)
    console.print(table)
    if json_out is not None:
        write_json(rows, json_out, {"machine": cpu_model(), "python": platform.python_version()})
    if csv_out is not None:
        write_csv(rows, csv_out)
    if plot is not None:
        write_plot(rows, plot)
