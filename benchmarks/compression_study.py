"""Compression study: every method at ~50% and ~25% of the MACs, side by side, on synthetic data.

For each subject network (``litedepth`` from configs/quickstart.yaml and ``resnet18-unet``
from configs/resnet18_unet_synthetic.yaml): train the base model, then run ``slimdepth prune``
with every method (masks, gating where the network has ResNet blocks, magnitude, uniform) at
each target with the same step budget, and measure them all with one ``slimdepth compare``
(parameters, MACs executed, size, batch-1 CPU latency, d1, AbsRel, RMSE on the validation
frames). Prints each table, then every model relative to its base: MACs ratio, latency
reduction and d1 change in points. Finally, the dynamic-gating latency at density 0.5 on
``resnet50-unet`` at 192x640 (dense vs gated, same weights, interleaved timed runs).

Everything is resumable (runs that finished are reused; a killed one continues), so the study
can be stopped and restarted. On a 2-core CPU the default budget takes about 75 minutes:

    python benchmarks/compression_study.py --out runs/study [--models litedepth resnet18-unet]
        [--targets 0.5 0.25] [--steps litedepth=600 resnet18-unet=300] [--threads 2] [--latency-runs 100]
        [--methods masks magnitude uniform] [--base resnet18-unet=runs/study/resnet18-unet/base]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from slimdepth.errors import ConfigError, OneLineArgumentParser, run_script
from slimdepth.options import check_number, check_threads

#: gating: every ResNet block plus the five 3x3 decoder stages (bottlenecks alone cannot reach 25%)
GATE_LAYERS = "bottlenecks," + ",".join(f"decoder.stages.{i}" for i in range(5))
RECIPES = {"litedepth": "configs/quickstart.yaml", "resnet18-unet": "configs/resnet18_unet_synthetic.yaml"}
DEFAULT_STEPS = {"litedepth": 600, "resnet18-unet": 300}
VAL = "synthetic,num=100,size=96x320,split=val,lidar=false"
SIZE = "96x320"


def slimdepth(*args: str) -> int:
    """Run one CLI command, streaming its output; returns the exit status."""
    cmd = [sys.executable, "-m", "slimdepth", *args]
    print("$ slimdepth " + " ".join(args), flush=True)
    return subprocess.call(cmd)


def done_prune(run: Path) -> bool:
    state = run / "prune.json"
    return state.is_file() and json.loads(state.read_text()).get("status") == "done"


def train_base(model: str, out: Path) -> Path:
    """Train (or finish, or reuse) the base model; a finished run resumes in no time."""
    run = out / model / "base"
    resume = (run / "checkpoints" / "last.state.json").is_file()
    args = ["--resume"] if resume else [RECIPES[model]]
    if slimdepth("train", *args, "--out", str(run)) != 0:
        raise SystemExit(f"training the {model} base failed")
    return run


def prune_runs(model: str, base: Path, out: Path, targets: list[float], steps: int,
               only: list[str] | None = None) -> list[Path]:
    methods = ["masks", "magnitude", "uniform"] + (["gating"] if "resnet" in model else [])
    methods = [m for m in methods if not only or m in only]
    runs = []
    for target in targets:
        for method in methods:
            run = out / model / f"{method}-{int(round(target * 100))}"
            if not done_prune(run):
                resume = ["--resume"] if (run / "prune.json").is_file() else [
                    str(base), "--method", method, "--target-macs", str(target), "--steps", str(steps)] + (
                    ["--gate-layers", GATE_LAYERS] if method == "gating" else [])
                if slimdepth("prune", *resume, "--out", str(run)) != 0:
                    print(f"# {method} at {target:.2f} did not complete (see the message above)", flush=True)
                    continue
            runs.append(run)
    return runs


def compare(model: str, out: Path, runs: list[Path], threads: int | None, latency_runs: int) -> list[dict]:
    table = out / model / "compare.json"
    for path in (table, table.with_suffix(".csv"), table.with_suffix(".png")):
        path.unlink(missing_ok=True)
    extra = ["--threads", str(threads)] if threads else []
    code = slimdepth("compare", *map(str, runs), "--data", VAL, "--size", SIZE, "--runs", str(latency_runs), *extra,
                     "--json", str(table), "--csv", str(table.with_suffix(".csv")), "--plot", str(table.with_suffix(".png")))
    if code != 0:
        raise SystemExit("compare failed")
    return json.loads(table.read_text())


def relative(rows: list[dict]) -> None:
    base = rows[0]
    print(f"\nrelative to {base['name']}:")
    print(f"{'model':<34} {'MACs':>7} {'latency':>8} {'params':>7} {'d1 (pts)':>9} {'AbsRel':>8}")
    for row in rows[1:]:
        print(f"{row['name']:<34} {row['macs'] / base['macs']:>7.3f} "
              f"{1 - row['latency_median_ms'] / base['latency_median_ms']:>+8.1%} "
              f"{row['params'] / base['params']:>7.3f} {100 * (row['d1'] - base['d1']):>+9.2f} "
              f"{row['abs_rel'] - base['abs_rel']:>+8.4f}")
    print("(MACs and params as fractions of the base; latency as the reduction of the median; d1 change in points)")


def gating_latency(threads: int | None) -> None:
    import torch

    from slimdepth.compress.gating import add_gating, executed_macs, latency_comparison
    from slimdepth.models.zoo import build_model

    torch.manual_seed(0)
    for label, layers in (("bottlenecks", "bottlenecks"), ("bottlenecks + decoder stages", GATE_LAYERS.split(","))):
        torch.manual_seed(0)
        model = add_gating(build_model("resnet50-unet"), 0.5, layers).eval()
        with torch.no_grad():
            macs = executed_macs(model, (192, 640))
            lat = latency_comparison(model, (192, 640), runs=20, warmup=3, threads=threads)
        print(f"\ndynamic gating of {label}, resnet50-unet 192x640, density 0.5, batch 1 ({lat['threads']} threads):")
        print(f"  MACs dense {macs['dense_macs'] / 1e9:.2f} G, executed {macs['executed_macs'] / 1e9:.2f} G "
              f"(ratio {macs['ratio']:.3f}, predictors {macs['predictor_macs'] / 1e6:.2f} M)")
        print(f"  latency dense {lat['dense']['median_ms']:.1f} ms, gated {lat['gated']['median_ms']:.1f} ms "
              f"(median; reduction {lat['reduction']:.1%}; p90 ratio {lat['p90_ratio']:.3f})")


def main() -> None:
    parser = OneLineArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/study"))
    parser.add_argument("--models", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--targets", nargs="+", type=float, default=[0.5, 0.25])
    parser.add_argument("--steps", nargs="*", default=[], help="MODEL=N prune steps per model")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--latency-runs", type=int, default=100, help="timed batch-1 runs per model in compare")
    parser.add_argument("--skip-gating-latency", action="store_true")
    parser.add_argument("--methods", nargs="+", default=None, choices=["masks", "magnitude", "uniform", "gating"],
                        help="only these methods (default: all)")
    parser.add_argument("--base", nargs="*", default=[], help="MODEL=RUN: an already trained base run to start from")
    args = parser.parse_args()
    steps, bases = dict(DEFAULT_STEPS), {}
    for option, items, into in (("--steps", args.steps, steps), ("--base", args.base, bases)):
        for item in items:  # MODEL=VALUE, every one checked before any training
            name, eq, value = item.partition("=")
            if not eq or name not in RECIPES:
                raise ConfigError(f"{option} takes MODEL=VALUE with MODEL one of {', '.join(RECIPES)}, got {item!r}")
            if option == "--steps":
                into[name] = check_number(int(value) if value.isascii() and value.isdigit() else value, "--steps",
                                          integer=True, low=1)
            elif not (Path(value) / "checkpoints").is_dir():
                raise ConfigError(f"--base {item}: {value} is not a run directory (no checkpoints/ in it)")
            else:
                into[name] = Path(value)
    for target in args.targets:
        check_number(target, "--targets", low=0, high=1, low_open=True, high_open=True)
    check_number(args.latency_runs, "--latency-runs", integer=True, low=1)
    if args.threads is not None:
        check_threads(args.threads)
    for model in args.models:
        base = bases[model] if model in bases else train_base(model, args.out)
        runs = prune_runs(model, base, args.out, args.targets, steps[model], args.methods)
        rows = compare(model, args.out, [base, *runs], args.threads, args.latency_runs)
        relative(rows)
    if not args.skip_gating_latency:
        gating_latency(args.threads)


if __name__ == "__main__":
    sys.exit(run_script(main))
