"""Which parts of the built-in data make a model transfer to real frames: the ablation study.

Trains the same recipe (the quickstart's LiteDepth at 96x320 by default) once per data variant:
every realism step on (``all``), each step switched off alone, the first generator's world
(every step off) and domain randomisation added; then scores every run on real KITTI frames
(metric and median-scaled, ``benchmarks/sim_to_real.py``'s scoring, on each real-frame folder:
by default the shared data's congested drive and its annotated street frames) and prints one table per folder with
each variant's change against ``all``; ``--control`` adds a table for the synthetic control (built-in
frames of the drive's kind scored like the real ones), so a step's effect on the gap between
renders and real frames reads off side by side. Runs are resumable: a finished run is reused. Usage:

    python benchmarks/sim_to_real_study.py [--out runs/sim_to_real_study] [--jobs 1]
        [--variants all,no-traffic,...] [--config configs/quickstart.yaml] [--set train.epochs=10]
        [--real ../shared/data ...] [--control [SPEC]] [--train-only | --score-only]

On this 2-core CPU each variant takes the quickstart's ~10 minutes, one at a time (all 13: over
two hours; pick some with ``--variants``); on a GPU machine ``--jobs 8`` trains them side by side.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from slimdepth.errors import OneLineArgumentParser, run_script

#: variant name -> (synthetic spec options, what it tests)
VARIANTS: dict[str, tuple[str, str]] = {
    "all": ("", "every realism step on (the defaults)"),
    "first-generator": ("traffic=0,vehicles=boxes,structures=false,layouts=urban,camera=plain,"
                        "contact_shadows=false",
                        "every step off (close to the first generator's world, not the same frames)"),
    "no-traffic": ("traffic=0", "sparse traffic (one vehicle per lane at most, beyond 6 m)"),
    "no-shapes": ("vehicles=boxes", "two-box vehicles instead of shaped cars, lorries, tankers"),
    "wheels": ("vehicles=wheeled", "the shaped vehicles on tyres, heavy ones with a chassis"),
    "vehicle-detail": ("vehicle_detail=1", "grime, panel seams, rivets, lettering and a tape on every vehicle surface"),
    "no-structures": ("structures=false", "no overpasses, guard rails, barriers, walls, fences"),
    "urban-only": ("layouts=urban", "urban streets only (no highways, no rural roads)"),
    "plain-camera": ("camera=plain", "no camera effects (exposure, gamma, dither only)"),
    "randomize": ("randomize=0.5", "domain randomisation on half of the frames"),
    "light-randomize": ("randomize=0.2", "domain randomisation on a fifth of the frames"),
    "clear-air": ("haze=0.1", "clear air (a tenth of the default haze: kilometres of visibility)"),
    "no-contact-shadows": ("contact_shadows=false", "no darkening of the ground under vehicles"),
    "heavy-traffic": ("traffic=2", "twice the traffic (traffic=2, not the heavy option): every lane queued"),
    "highway-only": ("layouts=highway", "highways only"),
    "road-wear": ("road_wear=0.7", "worn asphalt (wheel paths, patches, stains, a tint) on 70% of the frames"),
}
ROOT = Path(__file__).resolve().parents[1]


def _spec(base: str, options: str) -> str:
    return f"{base},{options}" if options else base


def train_variant(name: str, config: Path, out: Path, overrides: list[str]) -> subprocess.Popen | None:
    """Start training one variant (None when its run is already finished)."""
    import yaml

    run = out / name
    recipe = yaml.safe_load(config.read_text())
    epochs = [o.split("=", 1)[1] for o in overrides if o.startswith("train.epochs=")]
    total = int(epochs[-1]) if epochs else recipe["train"]["epochs"]
    last = run / "checkpoints" / "last.json"
    if last.is_file() and json.loads(last.read_text())["metadata"].get("epoch") == total:
        print(f"{name}: finished run reused ({run})", flush=True)
        return None
    options = VARIANTS[name][0]
    cmd = [sys.executable, "-m", "slimdepth", "train", str(config), "--out", str(run),
           "--set", f"data.train={_spec(recipe['data']['train'], options)}",
           "--set", f"data.val={_spec(recipe['data']['val'], options)}"]
    for item in overrides:
        cmd += ["--set", item]
    if last.is_file():
        cmd.append("--resume")
    log = open(out / f"{name}.log", "a")  # noqa: SIM115 - closed when the process ends
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    print(f"{name}: training ({VARIANTS[name][1]}), log {out / f'{name}.log'}", flush=True)
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def train_all(names: list[str], config: Path, out: Path, jobs: int, overrides: list[str]) -> None:
    """Train the variants, ``jobs`` at a time; stop with an error if one fails."""
    out.mkdir(parents=True, exist_ok=True)
    pending, running = list(names), []
    while pending or running:
        while pending and len(running) < jobs:
            name = pending.pop(0)
            proc = train_variant(name, config, out, overrides)
            if proc is not None:
                running.append((name, proc))
        if running:
            name, proc = running.pop(0)
            if proc.wait() != 0:
                sys.exit(f"error: variant {name} failed; see {out / (name + '.log')}")
            print(f"{name}: done", flush=True)


def main() -> None:
    parser = OneLineArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "sim_to_real_study")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "quickstart.yaml")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated, from: " + ", ".join(f"{k} ({v[1]})" for k, v in VARIANTS.items()))
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--real", type=Path, action="append", default=[],
                        help="real-frame folder(s) as in benchmarks/sim_to_real.py; repeatable (default: ../shared/data)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="recipe override for every variant, e.g. train.epochs=10; repeatable")
    parser.add_argument("--control", nargs="?", const="default", metavar="SPEC",
                        help="also score the synthetic control, as benchmarks/sim_to_real.py --control does")
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--score-only", action="store_true")
    args = parser.parse_args()
    args.real = args.real or [ROOT.parent / "shared" / "data"]
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or args.jobs < 1 or not args.config.is_file():
        sys.exit(f"error: unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}" if unknown
                 else f"error: --jobs must be >= 1, got {args.jobs}" if args.jobs < 1
                 else f"error: {args.config}: no such recipe")
    from slimdepth.errors import SlimdepthError
    from slimdepth.train.run import resolve_config

    try:  # every --set value checked against the recipe now, not in each variant's training
        resolve_config(args.config, list(args.overrides))
    except SlimdepthError as err:
        sys.exit(f"error: --set: {err}")
    if not args.train_only:  # a bad real-frame folder fails now, not after hours of training
        from slimdepth.report.real import SYNTHETIC_CONTROL, open_real_frames, open_synthetic_frames, real_folders

        try:
            if args.control is not None:  # a spec is checked without any data at hand
                args.control = SYNTHETIC_CONTROL if args.control == "default" else args.control
                open_synthetic_frames(args.control)
            for real in real_folders(args.real).values():
                open_real_frames(real)
        except SlimdepthError as err:
            sys.exit(f"error: {err}")
    if not args.score_only:
        train_all(names, args.config, args.out, args.jobs, args.overrides)
    if args.train_only:
        return
    from slimdepth.errors import SlimdepthError, one_line

    try:
        score(names, args.out, args.real, args.control)
    except SlimdepthError as err:  # a damaged frame is found only when it is scored
        sys.exit(f"error: {one_line(err)}")


def score(names: list[str], out: Path, real: list[Path], control: str | None = None) -> None:
    """Score every variant's run on each real-frame folder under the paths ``real`` (with the flat prior and
    the constant as the floors), and on the synthetic ``control`` spec when given (as ``synthetic_control``),
    print one ablation table per set and write ``study.json`` (set name -> variant -> figures) and each
    variant's contact sheets into ``out/sheets/SET``."""
    from slimdepth.report.real import real_folders, with_control
    from slimdepth.report.sim_to_real import CONSTANT, FLAT_PRIOR, sim_to_real, write_sim_to_real

    floors = {FLAT_PRIOR: "depth from the image row alone (a flat road)",
              CONSTANT: "one depth everywhere (median-scaled only)"}
    study = {}
    for folder, path in with_control(real_folders(real), control).items():
        result = sim_to_real([out / n for n in names], path, rows=4, flat_prior=True, constant=True)
        write_sim_to_real(result, out / "sheets" / folder)
        scores = {s.name: s for s in result.scores}
        base = scores.get("all")
        print(f"\n{folder}: {result.frames} frames, ground truth: {result.ground_truth}")
        print(f"{'variant':16s} {'metric d1':>9s} {'AbsRel':>7s} {'scaled d1':>9s} {'AbsRel':>7s} {'vs all':>7s}  what")
        rows = {}
        for name in [*names, FLAT_PRIOR, CONSTANT]:
            m, q = scores[name].metric, scores[name].median_scaled
            delta = f"{q['d1'] - base.median_scaled['d1']:+.3f}" if base is not None and name != "all" else ""
            what = VARIANTS[name][1] if name in VARIANTS else floors[name]
            metric = f"{m['d1']:9.3f} {m['abs_rel']:7.3f}" if m else f"{'-':>9s} {'-':>7s}"
            print(f"{name:16s} {metric} {q['d1']:9.3f} {q['abs_rel']:7.3f} {delta:>7s}  {what}")
            rows[name] = {"metric": m, "median_scaled": q, "what": what}
        study[folder] = rows
    (out / "study.json").write_text(json.dumps(study, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(run_script(main))
