"""``slimdepth latency-table``: measure a network's latency model layer by layer on a runtime."""

from __future__ import annotations

from pathlib import Path

import typer

from slimdepth.commands.common import check_output_file, console


def latency_table(
    model: str = typer.Argument(..., help="Zoo name, checkpoint or run directory (the unpruned network)."),
    runtime: str = typer.Option("ort", "--runtime", help="ort, torch, openvino or litert."),
    size: str = typer.Option(..., "--size", help="Deployed input size HxW."),
    out: Path = typer.Option(..., "--out", help="The table (JSON)."),
    threads: int = typer.Option(2, "--threads", help="Runtime threads."),
    align: int = typer.Option(8, "--align", help="Channel counts in multiples of this (the runtime's fast widths)."),
    runs: int = typer.Option(15, "--runs", help="Timed runs per layer and width (median kept)."),
    check: int = typer.Option(20, "--check", help="Random width choices measured to check the table (0: none)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
) -> None:
    """Time every layer of MODEL over a grid of kept widths on RUNTIME, calibrate the fixed cost
    on the whole exported network, and check the prediction at random widths."""
    # lazy: torch and the runtimes load only when the verb runs (`slimdepth --help` stays fast)
    from slimdepth.compress.latency_table import build_latency_table
    from slimdepth.deploy.layer_timing import check_latency_runtime
    from slimdepth.deploy.latency import check_timing
    from slimdepth.loader import resolve_model
    from slimdepth.options import check_number, parse_size
    from slimdepth.progress import progress_bar

    check_latency_runtime(runtime)
    input_size = parse_size(size, "--size")
    check_timing(runs, 0, threads, "--")
    check_number(check, "--check", integer=True, low=0, high=1000)
    check_number(align, "--align", integer=True, low=1, high=128)
    check_output_file(out, overwrite, (".json",))
    network, _ = resolve_model(model)
    with progress_bar("timing layers", "widths") as update:
        table = build_latency_table(network, runtime, input_size, threads, align, runs=runs, name=str(model),
                                    log=console.print, progress=update)
    console.print(f"fixed cost {table.fixed_ms:.3f} ms, layer scale {table.scale:.3f}, full width predicted "
                  f"{table.full_ms:.3f} ms")
    table.save(out)  # kept even if the check below fails or is interrupted
    if check:
        report = table.check(network, num=check, log=console.print)
        console.print(f"check on {check} random width choices: mean |error| {report['mean_abs_error']:.1%}, median "
                      f"{report['median_abs_error']:.1%}, max {report['max_abs_error']:.1%}, within 15%: "
                      f"{report['within_15pct']:.0%}; as shares of the unpruned network timed beside them "
                      f"({report['full_measured_ms']:.3f} ms now, the median of {len(report['full_measured_each_ms'])} "
                      f"worker processes {report['reference_spread']:.1%} apart; {table.full_ms:.3f} ms predicted): mean |error| "
                      f"{report['mean_abs_ratio_error']:.1%}, max {report['max_abs_ratio_error']:.1%}, within 15%: "
                      f"{report['ratio_within_15pct']:.0%} (the measurement itself repeats within "
                      f"{report['mean_repeat_error']:.1%} on average)")
    table.save(out)
    console.print(f"latency table: {out}")
