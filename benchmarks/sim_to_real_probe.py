"""Test-time probes of the sim-to-real gap: what in a real frame a model reads depth from.

Scores every run on one real-frame folder (the shared data's congested drive by default; any KITTI
raw or annotated folder, or a ``synthetic,...`` control spec) once as the frames are and once per
probe: a gamma, a gain, a contrast or a saturation applied to the whole frame, only around the near
objects (``@near``: the ground-truth points above the road nearer than 8 m, grown by 7 px), or
everywhere but there (``@rest``). Prints, per probe and run, the whole frame's δ1 (metric and
median-scaled), the scale ratio, and the near objects' δ1 and own ratio, each against the frames as
they are; writes ``probe.json`` and each probe's ``sim_to_real.json`` and sheets (showing the
changed images) into ``--out``/PROBE/ (``@`` spelt ``_at_``: ``gamma=2.2_at_near/``). The probes need no training and change nothing on disk but
``--out``. Usage:

    python benchmarks/sim_to_real_probe.py --run RUN [--run RUN2 ...] [--real DIR | --real SPEC]
                                           [--probe gamma=2.2@near ...] [--out DIR] [--rows 2] [--overwrite]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from functools import partial
from pathlib import Path

from slimdepth.errors import ConfigError, OneLineArgumentParser, run_script
from slimdepth.fileio import atomic_path
from slimdepth.options import check_number
from slimdepth.report.collect import ModelEntry, collect
from slimdepth.report.measure import ModelCache
from slimdepth.report.probe import DEFAULT_PROBES, Probe, apply_probe, parse_probe
from slimdepth.report.real import is_synthetic_spec, open_frames
from slimdepth.report.sim_to_real import (DISTANCE_BANDS, SimToReal, band_region, check_output_dir, sim_to_real,
                                         write_sim_to_real)

#: the shared sample data's congested drive, beside the repository
DEFAULT_REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kitti_raw"
#: the band the near columns report (the first distance band: 0-8 m)
NEAR = band_region(*DISTANCE_BANDS[0])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineArgumentParser(description=__doc__.splitlines()[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, action="append", default=[], help="run directory to probe; repeatable")
    parser.add_argument("--real", default=str(DEFAULT_REAL),
                        help=f"KITTI raw or annotated folder, or a synthetic,... spec (default: {DEFAULT_REAL})")
    parser.add_argument("--probe", action="append", default=[], metavar="OP=VALUE[@WHERE]",
                        help="gamma, gain, contrast or saturation, @near or @rest (default: "
                             f"{' '.join(DEFAULT_PROBES)}); repeatable")
    parser.add_argument("--out", type=Path, help="output folder (default: RUN_probe beside the first run)")
    parser.add_argument("--rows", type=int, default=2, help="frames on each contact sheet (default: 2)")
    parser.add_argument("--overwrite", action="store_true", help="write into an --out that is not empty")
    return parser.parse_args(argv)


def check_args(args: argparse.Namespace) -> tuple[list[Probe], list[ModelEntry], Path | str]:
    """Everything refused before a model is loaded: the probes, the runs, the frames and --out."""
    if not args.run:
        raise ConfigError("nothing to probe: give --run RUN")
    check_number(args.rows, "--rows", integer=True, low=1)
    probes = [parse_probe(text) for text in args.probe or DEFAULT_PROBES]
    # the frames as they are come first, once: what every probe is read against
    probes = [Probe()] + [p for p in probes if p.op is not None]
    names = [p.name for p in probes]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise ConfigError(f"--probe {twice}: given twice")
    models = collect(list(args.run)).models  # a missing or unusable run
    real = args.real.strip() if is_synthetic_spec(args.real) else Path(args.real)
    open_frames(real)  # a missing or foreign folder, a bad spec
    return probes, models, real


def summary(result: SimToReal) -> dict[str, dict[str, float]]:
    """Per model: whole-frame metric and scaled δ1, mean ratio, and the near band's δ1 and ratio
    (None when the frames have no near point)."""
    def number(value: float | None) -> float | None:
        return value if value is not None and math.isfinite(value) else None

    out = {}
    for s in result.scores:
        near = s.regions.get(NEAR, {})
        out[s.name] = {"metric_d1": number(s.metric["d1"]), "scaled_d1": number(s.median_scaled["d1"]),
                       "ratio": number(s.ratio["mean"]),
                       "near_d1": number(near["metric"]["d1"]) if near else None,
                       "near_ratio": number(near["ratio"]["median"]) if near else None,
                       "near_points": near.get("points", 0)}
    return out


def print_probes(table: dict[str, dict[str, dict[str, float]]]) -> None:
    """One row per probe and model, each figure with its change against the frames as they are."""
    base = table["as-is"]
    width = max(12, *(len(n) for n in table), *(len(m) for m in base))
    print(f"\n{'probe':{width}s} {'model':{width}s} | {'metric δ1':>15s} {'scaled δ1':>15s} {'ratio':>13s} | "
          f"{'near δ1':>15s} {'near ratio':>13s}")
    for probe, models in table.items():
        for model, row in models.items():
            cells = []
            for key, fmt in (("metric_d1", ".3f"), ("scaled_d1", ".3f"), ("ratio", ".2f"), ("near_d1", ".3f"),
                             ("near_ratio", ".2f")):
                value, before = row[key], base[model][key]
                if value is None:
                    text = "-"
                elif before is None:
                    text = f"{value:{fmt}}"
                else:
                    text = f"{value:{fmt}}" if probe == "as-is" else f"{value:{fmt}} ({value - before:+{fmt}})"
                cells.append(f"{text:>{15 if 'd1' in key else 13}s}")
            print(f"{probe:{width}s} {model:{width}s} | {cells[0]} {cells[1]} {cells[2]} | {cells[3]} {cells[4]}")
    print(f"near: the ground-truth points above the road nearer than {DISTANCE_BANDS[0][1]:g} m; ratio = "
          "median(truth) / median(prediction), below 1: predicted too far")


def score(args: argparse.Namespace) -> None:
    """Check everything, then score the frames as they are and after each probe, print and write."""
    probes, models, real = check_args(args)
    cache = ModelCache()  # each model loaded once, whatever the number of probes
    first = args.run[0].resolve()
    out = args.out or first.parent / f"{first.stem if first.is_file() else first.name}_probe"
    check_output_dir(out, args.overwrite)
    table, results = {}, {}
    for probe in probes:
        print(f"probe {probe.name}")
        result = sim_to_real(models, real, rows=args.rows, cache=cache,
                             transform=partial(apply_probe, probe) if probe.op else None)
        results[probe.name], table[probe.name] = result, summary(result)
    print_probes(table)
    for name, result in results.items():
        write_sim_to_real(result, out / name.replace("@", "_at_"))
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "probe.json") as tmp:
        tmp.write_text(json.dumps({"real": str(real), "probes": table}, indent=2, allow_nan=False) + "\n")
    print(f"wrote {out / 'probe.json'} and one folder per probe")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_script(lambda: score(args), "interrupted")


if __name__ == "__main__":
    sys.exit(main())
