"""Does a timing worker need to wait for its threads to go idle before the next one is timed?

``slimdepth.deploy.bench_worker`` sleeps ``settle_s`` after each batch of timed runs so that a
runtime's spinning thread pool does not slow the next worker. This script times ``--workers``
copies of one exported network, interleaved round by round as ``bench`` does, once with the
wait and once without, for each runtime and thread count, beside one worker timed alone; both
passes run twice in alternating order. Where the two medians agree the wait buys nothing and
costs the printed seconds.

    python benchmarks/worker_settle.py --runtimes ort torch openvino litert --threads 1 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from slimdepth.deploy.bench_worker import SETTLE_S
from slimdepth.deploy.layer_timing import _export_for
from slimdepth.deploy.machine import cpu_model
from slimdepth.deploy.workers import interleave_workers
from slimdepth.models.zoo import build_model
from slimdepth.options import parse_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-multires", help="zoo name of the network timed")
    parser.add_argument("--size", default="64x192", help="input size HxW")
    parser.add_argument("--runtimes", nargs="+", default=["ort", "torch", "openvino", "litert"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--workers", type=int, default=8, help="copies timed side by side")
    parser.add_argument("--runs", type=int, default=200, help="timed runs per worker")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds")
    parser.add_argument("--repeats", type=int, default=2, help="times each pair of passes is repeated")
    args = parser.parse_args()
    size = parse_size(args.size, "--size")
    model = build_model(args.model).eval()
    print(f"{args.model} at {size[0]}x{size[1]}, {args.workers} workers x {args.runs} runs in {args.rounds} "
          f"rounds; CPU {cpu_model()}")
    print("runtime   threads  wait(s)  median of medians ms (min-max)   seconds   alone ms")
    for runtime in args.runtimes:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            spec = _export_for(model, runtime, size, folder)
            for threads in args.threads:
                specs = [{**spec, "threads": threads, "warmup": 5}] * args.workers
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


if __name__ == "__main__":
    main()
