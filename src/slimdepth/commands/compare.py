"""``slimdepth compare``: several models in one table, cost and accuracy measured side by side."""

from __future__ import annotations

from pathlib import Path

import typer

from slimdepth.commands.common import check_output_file, console, warn
from slimdepth.errors import ConfigError
from slimdepth.progress import progress_bar


def compare(
    models: list[Path] = typer.Argument(..., help="Run directories or checkpoints to compare (with --runtime, also "
                                        "exported .onnx/.tflite/.xml files)."),
    data: str = typer.Option(..., "--data", help="Dataset spec to measure accuracy on."),
    runtime: str = typer.Option("torch", "--runtime", help="Comma-separated: torch, ort, ort-int8, litert, litert-int8, openvino, "
                                "openvino-bf16; one row per model and runtime, each export scored and timed."),
    calib: str = typer.Option("", "--calib", help="Calibration dataset for ort-int8 and litert-int8 (required for them)."),
    calib_num: int = typer.Option(64, "--calib-num", help="Calibration images for ort-int8 and litert-int8."),
    size: str = typer.Option("", "--size", help="Input size HxW for every model (default: the first one's training size)."),
    runs: int = typer.Option(30, "--runs", help="Timed latency runs per model (after the warm-up)."),
    warmup: int = typer.Option(5, "--warmup", help="Untimed warm-up runs."),
    threads: int = typer.Option(None, "--threads", help="CPU threads for the latency runs."),
    limit: int = typer.Option(None, "--limit", help="Evaluate only the first N samples."),
    json_out: Path = typer.Option(None, "--json", help="Also write the rows as JSON."),
    csv_out: Path = typer.Option(None, "--csv", help="Also write the rows as CSV."),
    plot_out: Path = typer.Option(None, "--plot", help="Draw accuracy against latency and against MACs (PNG)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
) -> None:
    """One table, one row per model (and runtime): parameters, MACs, size, latency (median, p90), d1, AbsRel, RMSE."""
    # lazy: torch and the model machinery load only when a verb runs (`slimdepth --help` stays fast)
    from slimdepth.compress.compare import compare_models, format_table, plot, to_csv, to_json
    from slimdepth.data.registry import build_dataset
    from slimdepth.deploy.artefacts import check_calibration, check_runs_on
    from slimdepth.deploy.bench import parse_runtimes
    from slimdepth.deploy.exported import is_exported_file
    from slimdepth.deploy.latency import check_timing
    from slimdepth.options import check_number

    for path, suffix in ((json_out, ".json"), (csv_out, ".csv"), (plot_out, ".png")):
        if path is not None:
            check_output_file(path, overwrite, (suffix,))
    check_timing(runs, warmup, threads, "--")
    if limit is not None and limit < 1:
        raise ConfigError("--limit must be >= 1")
    runtimes = parse_runtimes(runtime)
    check_number(calib_num, "--calib-num", integer=True, low=1, high=100_000)
    check_calibration(runtimes, calib or None)
    if calib and calib.strip() == data.strip():
        warn(f"--calib is the evaluation data ({data}): the int8 row is calibrated on the images it is scored on")
    for model in models:
        if is_exported_file(model):
            check_runs_on(model, runtimes)  # it exists and a chosen runtime reads it
    dataset = build_dataset(data)
    rows, hw = compare_models(models, dataset, size or None, runs=runs, warmup=warmup, threads=threads, limit=limit,
                              progress=lambda name: progress_bar(name, "images"), log=console.print,
                              runtimes=runtimes, calib=calib or None, calib_num=calib_num)
    timed = "models interleaved" if runtimes == ["torch"] else "each row in its own process, interleaved"
    console.print(f"input {hw[0]}x{hw[1]}, batch-1 latency over {runs} runs ({timed}), "
                  f"accuracy on {rows[0]['images']} images of {data}")
    console.print(format_table(rows))
    for path, text in ((json_out, to_json(rows) if json_out else ""), (csv_out, to_csv(rows) if csv_out else "")):
        if path is not None:
            path.write_text(text)
            console.print(f"wrote {path}")
    if plot_out is not None:
        plot(rows, plot_out)
        console.print(f"wrote {plot_out}")
