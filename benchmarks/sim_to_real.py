"""Sim-to-real transfer: models trained on synthetic street scenes, scored on real KITTI frames.

Scores every run on every frame of each real-frame folder (a KITTI raw folder, against the
projected Velodyne sweep, or a KITTI annotated-depth folder, rgb/ and depth/; by default both sets
of the shared sample data: one congested drive and three frames of ordinary streets), Garg crop,
0.001-80 m, as predicted (metric) and median-scaled per frame, and prints per folder the whole
frame, the road and the points above it, and those by distance (0-8, 8-20, 20-80 m); ``--flat-prior`` adds the baseline of a flat road seen from 1.65 m, ``--constant`` the
baseline of one depth everywhere (median-scaled only: the bar a model's *shape* has to clear). ``--config`` trains
the recipe into ``--train-out`` first (a finished run there is reused, a stopped one continued).
``--control`` also scores the runs on built-in frames of the drive's kind at KITTI's size (queued
traffic, against the simulated LiDAR; or the ``synthetic,...`` spec given), beside the real ones: a
model that holds there and fails on the drive has learnt the task but not how real frames look.
``--size`` runs every model at another input size than its own, so every object looks larger or
smaller to it: a probe of how much a model reads distance from apparent size (refused for a model
that resizes every input inside the network, LiteDepth's ``internal_size``). ``--adapt-norm`` scores
each run a second time (``RUN+norm``) with its BatchNorm statistics re-estimated on the images of
another folder or spec (AdaBN: how much of the gap lies in the features' statistics).
Writes ``sim_to_real.json`` and one contact sheet per run (image | prediction | ground truth) into
``--out`` (default: RUN_sim2real beside the first run), into one subfolder per real-frame folder
when there are several (``kitti_raw/``, ``kitti_depth_annotated/``; always with ``--control``, whose
results go to ``synthetic_control/``). Usage:

    python benchmarks/sim_to_real.py --run RUN [--run RUN2 ...] [--real DIR] [--out DIR] [--rows 6] [--size HxW]
                                     [--flat-prior] [--constant] [--control [SPEC]] [--adapt-norm DIR|SPEC]
                                     [--overwrite]
    python benchmarks/sim_to_real.py --config configs/quickstart.yaml [--set KEY=VALUE ...] --train-out RUN [...]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from slimdepth.errors import ConfigError, OneLineArgumentParser, run_script
from slimdepth.loader import build_from_config
from slimdepth.options import check_number, parse_size
from slimdepth.report.collect import collect
from slimdepth.report.measure import ModelCache
from slimdepth.report.real import (SYNTHETIC_CONTROL, open_adaptation_frames, open_real_frames, open_synthetic_frames,
                                   real_folders, with_control)
from slimdepth.report.sim_to_real import (ABOVE_ROAD, DISTANCE_BANDS, SimToReal, band_region, check_output_dir,
                                         check_size_reaches, sim_to_real, write_sim_to_real)
from slimdepth.train.run import resolve_config, train_or_reuse

#: the shared sample data beside the repository (its kitti_raw/ holds 20 frames of one drive, its
#: kitti_depth_annotated/ 3 frames of others)
DEFAULT_REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, action="append", default=[],
                        help="run directory (or checkpoint) to score; repeatable")
    parser.add_argument("--config", type=Path, help="recipe to train first (as `slimdepth train`)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a value of --config; repeatable")
    parser.add_argument("--train-out", type=Path, help="run directory --config trains into (reused when finished)")
    parser.add_argument("--real", type=Path, action="append", default=[],
                        help="KITTI raw folder, KITTI annotated-depth folder (rgb/, depth/), or one holding "
                             f"kitti_raw/ and kitti_depth_annotated/; repeatable (default: {DEFAULT_REAL})")
    parser.add_argument("--out", type=Path, help="output folder (default: RUN_sim2real beside the first run)")
    parser.add_argument("--rows", type=int, default=6, help="frames shown on each contact sheet (default: 6)")
    parser.add_argument("--flat-prior", action="store_true", help="add the flat-road baseline row")
    parser.add_argument("--constant", action="store_true",
                        help="add the one-depth-everywhere baseline row (median-scaled only)")
    parser.add_argument("--control", nargs="?", const=SYNTHETIC_CONTROL, metavar="SPEC",
                        help="also score built-in frames scored like the real ones, into synthetic_control/: the "
                             f"drive's kind of street at KITTI's size by default ({SYNTHETIC_CONTROL}), or the "
                             "synthetic,... spec given (always the test split)")
    parser.add_argument("--size", metavar="HxW",
                        help="run every model at this input size instead of the one it was trained at (a probe: "
                             "objects look larger or smaller to it; refused for a model that resizes inside the "
                             "network)")
    parser.add_argument("--adapt-norm", metavar="DIR|SPEC",
                        help="also score each run as RUN+norm, its BatchNorm statistics re-estimated on the images "
                             "of this real-frame folder (or synthetic,... spec): AdaBN, no depth used")
    parser.add_argument("--overwrite", action="store_true", help="write into an --out that is not empty")
    return parser.parse_args(argv)


def check_args(args: argparse.Namespace) -> list[Path]:
    """Refuse impossible combinations before anything is loaded; returns the runs in table order."""
    if args.sets and args.config is None:
        raise ConfigError("--set changes the recipe of --config; give --config too")
    if (args.config is None) != (args.train_out is None):
        raise ConfigError("--config and --train-out go together: the recipe and the run directory it trains into")
    runs = ([args.train_out] if args.train_out else []) + list(args.run)
    if not runs and not args.flat_prior and not args.constant:
        raise ConfigError("nothing to score: give --run RUN, --config CFG --train-out RUN, --flat-prior or --constant")
    check_number(args.rows, "--rows", integer=True, low=1)
    if args.size is not None:
        args.size = parse_size(args.size, "--size")
        if args.config is not None:  # the recipe's architecture, before any training
            recipe = resolve_config(args.config, list(args.sets))
            check_size_reaches(build_from_config(recipe["model"]),
                               f"{args.config}{' with its --set values' if args.sets else ''}")
    # a missing or unusable run fails now, not after training
    models = collect(list(args.run)).models if args.run else []
    if args.adapt_norm is not None:
        if not runs:
            raise ConfigError("--adapt-norm re-estimates the statistics of runs: give --run or --config")
        exported = next((m.path for m in models if m.exported), None)
        if exported is not None:
            raise ConfigError(f"--adapt-norm: {exported} is an exported model, whose BatchNorm statistics are folded "
                              "into its convolutions; give its run or checkpoint")
    return runs


def default_out(runs: list[Path]) -> Path:
    """RUN_sim2real beside the first run (a checkpoint's stem for a file); ./sim_to_real without runs."""
    if not runs:
        return Path("sim_to_real")
    first = runs[0].resolve()
    return first.parent / f"{first.stem if first.is_file() else first.name}_sim2real"


def print_table(result: SimToReal) -> None:
    """One row per model: metric δ1, AbsRel, RMSE; median-scaled δ1, AbsRel; scale ratio. Then δ1 on
    the road and above it, the latter by distance, and for stixel heads how sure they are of the road."""
    c = result.config
    kind = "synthetic" if isinstance(result.real, str) else "real KITTI"
    print(f"\n{result.frames} {kind} frames in {result.real}; ground truth: {result.ground_truth}; "
          f"{c.crop} crop, {c.min_depth:g}-{c.max_depth:g} m")
    width = max(12, *(len(s.name) for s in result.scores))
    print(f"{'model':{width}s} {'frames':>6s} | {'metric δ1':>9s} {'AbsRel':>7s} {'RMSE':>7s} | "
          f"{'scaled δ1':>9s} {'AbsRel':>7s} | {'ratio mean ± std':>16s}")
    for s in result.scores:
        m, ms, r = s.metric, s.median_scaled, s.ratio
        metric = f"{m['d1']:9.3f} {m['abs_rel']:7.3f} {m['rmse']:7.3f}" if m else f"{'-':>9s} {'-':>7s} {'-':>7s}"
        ratio = f"{r['mean']:7.3f} ± {r['std']:6.3f}" if r else f"{'-':>16s}"
        print(f"{s.name:{width}s} {s.frames:6d} | {metric} | {ms['d1']:9.3f} {ms['abs_rel']:7.3f} | {ratio}")
    print("ratio = median(truth) / median(prediction) per frame: 1 is the right scale, > 1 predicts too near")
    print(f"\nδ1 on the road and above it (ground-truth points nearer than {ABOVE_ROAD:g} x the flat road's depth at "
          "their pixel: vehicles, walls, poles); scaled = by the frame's whole-frame ratio")
    print(f"{'model':{width}s} | {'road metric':>11s} {'scaled':>7s} | {'above metric':>12s} {'scaled':>7s} | "
          f"{'share above':>11s}")
    for s in result.scores:
        road, above = s.regions.get("road"), s.regions.get("above road")

        def cells(part: dict | None, first: int) -> str:
            if part is None:
                return f"{'-':>{first}s} {'-':>7s}"
            metric = f"{part['metric']['d1']:{first}.3f}" if "metric" in part else f"{'-':>{first}s}"
            return f"{metric} {part['scaled']['d1']:7.3f}"

        counts = [s.regions[r]["points"] if r in s.regions else 0 for r in ("road", "above road")]
        share = counts[1] / sum(counts) if sum(counts) else math.nan
        print(f"{s.name:{width}s} | {cells(road, 11)} | {cells(above, 12)} | {share:11.2f}")
    bands = [band_region(*band) for band in DISTANCE_BANDS]
    print("\nthe points above the road by distance: the share of them in each band, δ1 as predicted, and "
          "the band's own ratio (median over frames); ratio < 1: that band is predicted too far")
    print(f"{'model':{width}s} | " + " | ".join(f"{b[len('above road '):]:>22s}" for b in bands))
    print(f"{'':{width}s} | " + " | ".join(f"{'share':>6s} {'δ1':>6s} {'ratio':>8s}" for _ in bands))
    for s in result.scores:
        total = s.regions.get("above road", {}).get("points", 0)  # (points at 80 m or more are in no band)
        cells = []
        for b in bands:
            part = s.regions.get(b)
            if part is None or "metric" not in part:
                share = f"{part['points'] / total:6.2f}" if part and total else f"{'-':>6s}"
                cells.append(f"{share} {'-':>6s} {'-':>8s}")
            else:
                cells.append(f"{part['points'] / total:6.2f} {part['metric']['d1']:6.3f} {part['ratio']['median']:8.2f}")
        print(f"{s.name:{width}s} | " + " | ".join(cells))
    stixel = [s for s in result.scores if s.road]
    if stixel:
        print("\nthe stixel head's road probability p over every pixel of every frame (below 0.5: not road, "
              "something stands there)")
        print(f"{'model':{width}s} | {'median p':>8s} {'p < 0.5':>8s}")
        for s in stixel:
            print(f"{s.name:{width}s} | {s.road['median']:8.3f} {s.road['below_half']:8.3f}")


def score(args: argparse.Namespace) -> None:
    """Check everything, then train (when asked), score every set and write the results."""
    runs = check_args(args)
    folders = real_folders(args.real or [DEFAULT_REAL])
    for real in folders.values():
        open_real_frames(real)  # no frames: fail before training
    if args.control is not None:
        open_synthetic_frames(args.control)  # a bad spec: fail before training
    if args.adapt_norm is not None:
        args.adapt_norm, _ = open_adaptation_frames(args.adapt_norm)  # a bad folder or spec: fail before training
    sets = with_control(folders, args.control)
    out = args.out or default_out(runs)
    check_output_dir(out, args.overwrite)
    if args.config is not None:
        print(f"training {args.config} into {args.train_out}")
        done = train_or_reuse(args.config, args.train_out, args.sets)
        print({"trained": "trained", "resumed": "continued the stopped run to its end",
               "reused": "already trained: reusing it"}[done])
    cache = ModelCache(args.size)  # one load per model for every folder
    results = {name: sim_to_real(runs, real, rows=args.rows, flat_prior=args.flat_prior,
                                 constant=args.constant, log=print, cache=cache, adapt_norm=args.adapt_norm)
               for name, real in sets.items()}  # every folder scored before anything is written
    for name, result in results.items():
        if args.size is not None:
            print(f"\nevery model run at {args.size[0]}x{args.size[1]} (--size), whatever size it was trained at", end="")
        print_table(result)
        for path in write_sim_to_real(result, out / name if len(sets) > 1 else out):
            print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_script(lambda: score(args), "interrupted; the same command continues a stopped training")


if __name__ == "__main__":
    sys.exit(main())
