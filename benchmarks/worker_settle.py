"""Does a timing worker need to wait for its threads to go idle before the next one is timed?

``slimdepth.deploy.bench_worker`` sleeps ``settle_s`` after each batch of timed runs so that a
runtime's spinning thread pool does not slow the next worker. This script times ``--workers``
copies of one exported network, interleaved round by round as ``bench`` does, once with the
wait and once without, for each runtime and thread count, beside one worker timed alone; both
passes run twice in alternating order. Where the medians without the wait are no slower, the
wait buys nothing and costs the printed seconds. ``--model`` is a zoo name or a checkpoint or
run directory (the quickstart LiteDepth at 96x320 on two threads is the case the wait was
introduced for).

    python benchmarks/worker_settle.py --runtimes ort torch openvino litert --threads 1 2
    python benchmarks/worker_settle.py --model runs/quickstart --size 96x320 --runtimes ort --threads 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from slimdepth.deploy.bench_worker import SETTLE_S
from slimdepth.deploy.latency import check_timing
from slimdepth.deploy.layer_timing import _export_for, check_latency_runtime
from slimdepth.deploy.machine import cpu_model
from slimdepth.deploy.workers import interleave_workers
from slimdepth.errors import OneLineArgumentParser, run_script
from slimdepth.loader import resolve_model
from slimdepth.options import check_number, parse_size

#: untimed runs each worker takes after loading
WARMUP = 5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-multires", help="zoo name, checkpoint or run directory timed")
    parser.add_argument("--size", default="64x192", help="input size HxW")
    parser.add_argument("--runtimes", nargs="+", default=["ort", "torch", "openvino", "litert"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--workers", type=int, default=8, help="copies timed side by side")
    parser.add_argument("--runs", type=int, default=200, help="timed runs per worker")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds")
    parser.add_argument("--repeats", type=int, default=2, help="times each pair of passes is repeated")
    return parser.parse_args(argv)


def measure(args: argparse.Namespace) -> None:
    """Check every option, then print one row per (runtime, threads, wait) pass."""
    size = parse_size(args.size, "--size")
    for runtime in args.runtimes:
        check_latency_runtime(runtime)
    for threads in args.threads:
        check_timing(args.runs, WARMUP, threads, "--")
    for name in ("workers", "rounds", "repeats"):
        check_number(getattr(args, name), f"--{name}", integer=True, low=1)
    model = resolve_model(args.model)[0].eval()
    print(f"{args.model} at {size[0]}x{size[1]}, {args.workers} workers x {args.runs} runs in {args.rounds} "
          f"rounds; CPU {cpu_model()}")
    print("runtime   threads  wait(s)  median of medians ms (min-max)   seconds   alone ms")
    for runtime in args.runtimes:
        with tempfile.TemporaryDirectory() as tmp:
            spec = _export_for(model, runtime, size, Path(tmp))
            for threads in args.threads:
                specs = [{**spec, "threads": threads, "warmup": WARMUP}] * args.workers
                for repeat in range(args.repeats):
                    order = (SETTLE_S, 0.0) if repeat % 2 == 0 else (0.0, SETTLE_S)
                    for settle in order:
                        start = time.perf_counter()
                        samples = interleave_workers([{**s, "settle_s": settle} for s in specs], args.runs, args.rounds)
                        spent = time.perf_counter() - start
                        medians = [float(np.median(s)) for s in samples]
                        alone = float(np.median(interleave_workers(specs[:1], args.runs, 1)[0]))
                        print(f"{runtime:9s} {threads:7d}  {settle:7.2f}  {np.median(medians):8.3f} "
                              f"({min(medians):.3f}-{max(medians):.3f})       {spent:7.1f}   {alone:8.3f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    return run_script(lambda: measure(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
