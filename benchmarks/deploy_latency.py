"""Deployment latency: every zoo model on every runtime at 480x640 and 192x640, side by side.

Runs ``slimdepth bench`` (one process per model and runtime, interleaved rounds, warm-up first,
batch 1) for the whole zoo at each size and prints one Markdown table per size: median and p90
milliseconds per runtime and each runtime's speed-up over PyTorch eager measured in the same
run. The ratios are the point: this kind of VM drifts by 20% or more between runs. LiteRT
conversion takes about half a minute per model and size, so by default only the LiteDepth
models get the LiteRT columns, fp32 and full-integer int8 (``--litert all`` for every model).
The int8 columns calibrate on 16 synthetic frames: latency does not depend on the weights' values,
and these are untrained zoo models; ``benchmarks/int8_study.py`` measures int8 accuracy.

    python benchmarks/deploy_latency.py [--sizes 480x640 192x640] [--threads 2] [--runs 30]
        [--runtimes torch,ort,ort-int8,openvino,openvino-bf16] [--litert litedepth,litedepth-released]
        [--json runs/deploy_latency.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from slimdepth.deploy.bench import bench
from slimdepth.deploy.latency import check_timing
from slimdepth.deploy.machine import cpu_model
from slimdepth.errors import OneLineArgumentParser, run_script
from slimdepth.loader import check_model_spec
from slimdepth.models.zoo import list_models
from slimdepth.options import check_number, parse_size


def table(rows: list, runtimes: list[str]) -> str:
    """Markdown: one line per model, median (speed-up over torch) per runtime."""
    lines = ["| model | " + " | ".join(runtimes) + " |", "| --- |" + " ---: |" * len(runtimes)]
    for model in dict.fromkeys(r.model for r in rows):
        cells = []
        for runtime in runtimes:
            row = next((r for r in rows if r.model == model and r.runtime == runtime), None)
            if row is None or row.median_ms is None:
                cells.append("-")
            elif runtime == "torch":
                cells.append(f"{row.median_ms:.1f} ms")
            else:
                cells.append(f"{row.median_ms:.1f} ms ({row.speedup_vs_torch:.2f}x)")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = OneLineArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["480x640", "192x640"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runtimes", default="torch,ort,ort-int8,openvino,openvino-bf16")
    parser.add_argument("--litert", default="litedepth,litedepth-released", help="models that get a LiteRT column, or 'all'")
    parser.add_argument("--models", nargs="+", default=list(list_models()))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    for text in args.sizes:  # every size and count checked before any timing
        parse_size(text, "--sizes")
    check_timing(args.runs, args.warmup, args.threads, "--")
    check_number(args.rounds, "--rounds", integer=True, low=1)
    for model in args.models:
        check_model_spec(model, "--models: ", load=True)  # a corrupt checkpoint fails before the header
    if args.json is not None:  # an unwritable place fails now, not after the timing
        args.json.parent.mkdir(parents=True, exist_ok=True)
    runtimes = args.runtimes.split(",")
    litert = set(args.models) if args.litert == "all" else set(filter(None, args.litert.split(",")))
    columns = runtimes + (["litert", "litert-int8"] if litert else [])
    print(f"CPU: {cpu_model()}; {args.threads} threads, batch 1, median of {args.runs} runs in {args.rounds} rounds")
    results = {}
    for size in args.sizes:
        rows = []
        # the models with a LiteRT column are timed with it in the same interleaved run
        with_litert = [m for m in args.models if m in litert]
        without = [m for m in args.models if m not in litert]
        for models, chosen in ((with_litert, columns), (without, runtimes)):
            if models:
                rows += bench(models, chosen, size, args.threads, args.runs, args.warmup, args.rounds,
                              log=lambda message: print("  " + message, flush=True))
        order = {m: i for i, m in enumerate(args.models)}
        rows.sort(key=lambda r: order[r.model])
        print(f"\n{size}, batch 1, {args.threads} threads:\n")
        print(table(rows, columns))
        notes = sorted({f"{r.model}/{r.runtime}: {r.note}" for r in rows if r.note})
        for note in notes:
            print(f"- {note}")
        results[size] = [r.as_dict() for r in rows]
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"cpu": cpu_model(), "threads": args.threads, "sizes": results}, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(run_script(main))
