"""Cost of every zoo model, side by side: parameters, MACs, CPU latency and training speed.

For each model and input size: parameters, MACs (torch.utils.flop_counter, interpolation
included), batch-1 latency (warm-up, then the median and p90 of timed runs) and training
images/s (forward + SILog backward + AdamW step at batch 4). Heavy models get fewer timed runs
so that the whole study stays within minutes. Usage:

    python benchmarks/zoo_cost.py [--sizes 480x640 192x640] [--threads N] [--budget 20]
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import torch

from slimdepth.deploy.cost import count_macs, count_parameters
from slimdepth.deploy.latency import measure_latency
from slimdepth.errors import OneLineArgumentParser, run_script
from slimdepth.losses import silog
from slimdepth.models.zoo import build_model, list_models
from slimdepth.options import check_number, check_threads, parse_size


def _runs_for(seconds_per_run: float, budget: float, lo: int, hi: int) -> int:
    return max(lo, min(hi, int(budget / max(seconds_per_run, 1e-6))))


def train_images_per_second(name: str, size: tuple[int, int], batch: int, budget: float) -> float:
    """Median images/s of full training steps (forward, loss, backward, optimiser step)."""
    torch.manual_seed(0)
    model = build_model(name).train()
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    x = torch.rand(batch, 3, *size)
    gt = torch.rand(batch, 1, *size) * 50 + 1

    def step() -> float:
        t = time.perf_counter()
        loss = silog(model(x), gt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t

    first = step()  # warm-up (allocations, kernel selection)
    times = [step() for _ in range(_runs_for(first, budget, 2, 10))]
    return batch / statistics.median(times)


def main() -> None:
    parser = OneLineArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["480x640", "192x640"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--budget", type=float, default=20.0, help="seconds of timed runs per measurement")
    parser.add_argument("--batch", type=int, default=4, help="training batch size")
    args = parser.parse_args()
    sizes = [parse_size(text, "--sizes") for text in args.sizes]  # every option checked before any timing
    if args.threads is not None:
        check_threads(args.threads)
    check_number(args.budget, "--budget", low=0, low_open=True)
    check_number(args.batch, "--batch", integer=True, low=1)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"zoo cost on {os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    header = f"{'model':15s} {'input':>8s} {'params (M)':>10s} {'GMACs':>8s} {'latency ms (median/p90)':>24s} {'train img/s':>11s}"
    print(header)
    print("-" * len(header))
    for text, size in zip(args.sizes, sizes):
        for name in list_models():
            model = build_model(name).eval()
            macs = count_macs(model, size).total
            probe = measure_latency(model, size, runs=1, warmup=1, threads=args.threads)
            runs = _runs_for(probe.median_ms / 1000, args.budget, 3, 50)
            lat = measure_latency(model, size, runs=runs, warmup=2, threads=args.threads)
            rate = train_images_per_second(name, size, args.batch, args.budget)
            print(f"{name:15s} {text:>8s} {count_parameters(model) / 1e6:10.3f} {macs / 1e9:8.3f} "
                  f"{lat.median_ms:11.1f} / {lat.p90_ms:8.1f}   {rate:11.2f}", flush=True)


if __name__ == "__main__":
    sys.exit(run_script(main))
