"""``slimdepth models`` (the zoo and its cost) and ``slimdepth cost`` (one model measured)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from slimdepth.commands.common import check_output_file, console
from slimdepth.errors import ConfigError
from slimdepth.options import parse_size, resolve_device


def models(
    size: str = typer.Option("192x640", "--size", help="Input size HxW for the MACs."),
) -> None:
    """List the model zoo: name, parameters, MACs and size at an input size."""
    # lazy: torch and the model machinery load only when a verb runs (`slimdepth --help` stays fast)
    from slimdepth.deploy.cost import zoo_costs

    hw = parse_size(size, "--size")
    console.print(f"{'model':16s} {'params (M)':>10s} {'GMACs':>8s} {'size (MB)':>9s}  description   (input {hw[0]}x{hw[1]})")
    for row in zoo_costs(hw):
        console.print(f"{row['name']:16s} {row['params'] / 1e6:10.3f} {row['macs'] / 1e9:8.3f} "
                      f"{row['size_mb']:9.2f}  {row['description']}")


def cost(
    model_or_checkpoint: str = typer.Argument(..., help="A zoo name (see `slimdepth models`), a checkpoint or a run "
                                              "directory (with --runtime, also an exported .onnx/.tflite/.xml file)."),
    size: str = typer.Option("", "--size", help="Input size HxW (default: a checkpoint's training size, else 192x640)."),
    runtime: str = typer.Option("torch", "--runtime", help="One of torch, ort, ort-int8, litert, litert-int8, openvino, "
                                "openvino-bf16: the exported file's size and its latency in a worker of that runtime."),
    calib: str = typer.Option("", "--calib", help="Calibration dataset for ort-int8 and litert-int8 (required for them)."),
    calib_num: int = typer.Option(64, "--calib-num", help="Calibration images for ort-int8 and litert-int8."),
    threads: int = typer.Option(None, "--threads", help="CPU threads for the latency runs (default: torch's)."),
    runs: int = typer.Option(30, "--runs", help="Timed runs (after the warm-up)."),
    warmup: int = typer.Option(5, "--warmup", help="Untimed warm-up runs."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    json_out: Path = typer.Option(None, "--json", help="Also write the report as JSON to this file."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing JSON file."),
) -> None:
    """Parameters, MACs (torch.utils.flop_counter, interpolation included), file size and latency."""
    # lazy: see models()
    from slimdepth.compress.compare import model_cost, runtime_cost
    from slimdepth.deploy.artefacts import check_calibration, check_runs_on
    from slimdepth.deploy.bench import parse_runtimes
    from slimdepth.deploy.cost import format_cost_table
    from slimdepth.deploy.exported import is_exported_file
    from slimdepth.deploy.latency import check_timing
    from slimdepth.loader import resolve_model
    from slimdepth.models.checkpoint import model_input_size
    from slimdepth.options import check_number

    if json_out is not None:
        check_output_file(json_out, overwrite, (".json",))
    check_timing(runs, warmup, threads, "--")
    hw = parse_size(size, "--size") if size else None
    chosen = parse_runtimes(runtime)
    if len(chosen) != 1:
        raise ConfigError(f"--runtime: cost measures one runtime at a time, got {','.join(chosen)}")
    check_number(calib_num, "--calib-num", integer=True, low=1, high=100_000)
    check_calibration(chosen, calib or None)
    if is_exported_file(model_or_checkpoint):
        check_runs_on(model_or_checkpoint, chosen)  # before any work: it exists and this runtime reads it
    if chosen[0] == "torch":
        target = resolve_device(device)
        model, file = resolve_model(model_or_checkpoint, target)
        hw = hw or model_input_size(model) or parse_size("192x640")
        report = model_cost(model, hw, runs=runs, warmup=warmup, threads=threads, file=file, device=str(target))
        report["name"] = model_or_checkpoint
        console.print(format_cost_table([report]))
        both = report.get("gating_latency")
        if both:  # the same weights run densely, interleaved
            console.print(f"dynamic gating: {both['gated']['median_ms']:.1f} ms gated vs {both['dense']['median_ms']:.1f} "
                          f"ms dense with the same weights (median of {runs} interleaved runs each; "
                          f"{both['reduction']:+.1%} reduction)")
    else:
        if device != "cpu":
            raise ConfigError(f"--device {device}: the deployment runtimes run on the CPU here; --device is for "
                              "--runtime torch")
        report = runtime_cost(model_or_checkpoint, chosen[0], hw, runs=runs, warmup=warmup, threads=threads,
                              calib=calib or None, calib_num=calib_num,
                              log=lambda message: console.print(message, markup=False))
        console.print(format_cost_table([{**report, "name": f"{model_or_checkpoint} ({chosen[0]})"}]))
        console.print(f"{report['file_bytes']:,} bytes exported; latency timed in a {chosen[0]} worker process "
                      f"({report['latency']['threads']} threads, median of {runs} runs)")
    if json_out is not None:
        json_out.write_text(json.dumps(report, indent=2, default=str) + "\n")
        console.print(f"wrote {json_out}")
