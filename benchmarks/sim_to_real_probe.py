"""Test-time probes of the sim-to-real gap: what in a real frame a model reads depth from.

Scores every run on one real-frame folder (the shared data's congested drive by default; any KITTI
raw or annotated folder, or a ``synthetic,...`` control spec) once as the frames are and once per
probe: a gamma, a gain, a contrast, a saturation or a blur applied to the whole frame, only around the near
objects (``@near``: the ground-truth points above the road nearer than 8 m, grown by 7 px), or
everywhere but there (``@rest``); or ``other@rest``, the near objects kept and everything else
taken from the paired frame (same place in the set) of ``--other``: rendered frames around the
drive's real vehicles, or (with ``--real SPEC``) the drive around rendered ones, scored on the near
objects alone (the rest of the frame is not the one its ground truth belongs to). Prints, per probe and run, the whole frame's δ1 (metric and
median-scaled), the scale ratio, and the near objects' δ1 and own ratio, each against the frames as
they are; writes ``probe.json`` and each probe's ``sim_to_real.json`` and sheets (showing the
changed images) into ``--out``/PROBE/ (``@`` spelt ``_at_``: ``gamma=2.2_at_near/``). The probes need no training and change nothing on disk but
``--out``. Usage:

    python benchmarks/sim_to_real_probe.py --run RUN [--run RUN2 ...] [--real DIR | --real SPEC]
                                           [--probe gamma=2.2@near ...] [--probe other@rest --other DIR|SPEC]
                                           [--out DIR] [--rows 2] [--overwrite]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, NamedTuple

import torch

from slimdepth.errors import ConfigError, DataError, OneLineArgumentParser, run_script
from slimdepth.fileio import atomic_path
from slimdepth.options import check_number
from slimdepth.report.collect import ModelEntry, collect
from slimdepth.report.measure import ModelCache
from slimdepth.data.base import DepthDataset
from slimdepth.report.probe import DEFAULT_PROBES, OTHER, Probe, apply_probe, parse_probe
from slimdepth.report.real import SYNTHETIC_CONTROL, is_synthetic_spec, open_frames
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
                        help="gamma, gain, contrast, saturation or blur, @near or @rest, or other@rest (default: "
                             f"{' '.join(DEFAULT_PROBES)}); repeatable")
    parser.add_argument("--other", help="where other@rest takes the context from: a folder or a synthetic,... "
                                         "spec of frames the size of --real's (default: the synthetic control "
                                         f"{SYNTHETIC_CONTROL} for a folder, the shared drive for a spec)")
    parser.add_argument("--out", type=Path, help="output folder (default: RUN_probe beside the first run)")
    parser.add_argument("--rows", type=int, default=2, help="frames on each contact sheet (default: 2)")
    parser.add_argument("--overwrite", action="store_true", help="write into an --out that is not empty")
    return parser.parse_args(argv)


def _source(text: str) -> Path | str:
    return text.strip() if is_synthetic_spec(text) else Path(text)


class Checked(NamedTuple):
    """What :func:`check_args` found usable: the probes (as-is first), the runs' models, the frames
    to score (where from, and opened), and for ``other@rest`` where the context comes from and its
    frames (else None)."""

    probes: list[Probe]
    models: list[ModelEntry]
    real: Path | str
    frames: DepthDataset
    other: Path | str | None
    context: DepthDataset | None


def check_args(args: argparse.Namespace) -> Checked:
    """Everything refused before a model is loaded: the probes, the runs, the frames (and the
    other set's, the same size) and --out."""
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
    real = _source(args.real)
    frames = open_frames(real)  # a missing or foreign folder, a bad spec
    if not any(p.op == OTHER for p in probes):
        if args.other is not None:
            raise ConfigError(f"--other is the context of --probe {OTHER}@rest, which is not asked for")
        return Checked(probes, models, real, frames, None, None)
    other = _source(args.other) if args.other is not None else default_other(real)
    context = _open_other(other, default=args.other is None)
    names = frames.names()
    if len(set(names)) < len(names):
        raise ConfigError(f"--real {real}: two frames share a name, so {OTHER}@rest cannot pair them")
    if len(context) < len(frames):
        raise ConfigError(f"--other {other}: {len(context)} frames, fewer than the {len(frames)} of --real; "
                          f"{OTHER}@rest pairs frame i with frame i")
    size, other_size = frames[0]["image"].shape[-2:], context[0]["image"].shape[-2:]
    if size != other_size:
        raise ConfigError(f"--other {other}: its frames are {other_size[0]}x{other_size[1]}, the frames of "
                          f"--real are {size[0]}x{size[1]}; {OTHER}@rest needs the same size")
    return Checked(probes, models, real, frames, other, context)


def default_other(real: Path | str) -> Path | str:
    """The context of ``other@rest`` when none is named: rendered frames of the drive's kind
    around real frames, the shared drive around rendered ones."""
    return DEFAULT_REAL if is_synthetic_spec(real) else SYNTHETIC_CONTROL


def _open_other(other: Path | str, default: bool) -> DepthDataset:
    """The context's frames; its errors say --other (they are worded for --real or --control)."""
    try:
        return open_frames(other)
    except (ConfigError, DataError) as exc:
        text = str(exc)
        for prefix in ("--real ", "--control: ", "--control "):
            text = text[len(prefix):] if text.startswith(prefix) else text
        where = " (the default for a synthetic --real)" if default else ""
        raise ConfigError(f"--other{where}: {text}") from None


def transform_for(probe: Probe, frames: DepthDataset,
                  context: DepthDataset | None) -> Callable[[dict[str, Any]], torch.Tensor] | None:
    """What the models see of each frame under ``probe`` (None: the frame as it is); ``other@rest``
    pairs frame i of ``frames`` (found by its name) with frame i of ``context``."""
    if probe.op is None:
        return None
    if probe.op != OTHER:
        return partial(apply_probe, probe)
    position = {name: i for i, name in enumerate(frames.names())}
    return lambda frame: apply_probe(probe, frame, context[position[frame["meta"]["name"]]]["image"])


def near_only(result: SimToReal, other: Path | str) -> SimToReal:
    """A context swap's result with the near band alone (the whole frame, the road and the far
    bands were scored against a ground truth the swapped rest does not fit) and its context named."""
    scores = [replace(s, metric={}, median_scaled={}, ratio={}, road={},
                      regions={NEAR: s.regions[NEAR]} if NEAR in s.regions else {}) for s in result.scores]
    return replace(result, scores=scores, context=str(other))


def summary(result: SimToReal) -> dict[str, dict[str, float]]:
    """Per model: whole-frame metric and scaled δ1, mean ratio, and the near band's δ1, ratio and
    points (None where the result has no such figure: a context swap's whole frame, a set without
    near points)."""
    def number(value: float | None) -> float | None:
        return value if value is not None and math.isfinite(value) else None

    out = {}
    for s in result.scores:
        near = s.regions.get(NEAR, {})
        out[s.name] = {"metric_d1": number(s.metric.get("d1")), "scaled_d1": number(s.median_scaled.get("d1")),
                       "ratio": number(s.ratio.get("mean")),
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
    points = {row["near_points"] for row in base.values()}
    print(f"near points: {', '.join(map(str, sorted(points)))} (the ground truth's; a few hundred make a noisy figure)")
    if f"{OTHER}@rest" in table:
        print(f"{OTHER}@rest scores the near objects alone: the rest of each frame is another frame")


def score(args: argparse.Namespace) -> None:
    """Check everything, then score the frames as they are and after each probe, print and write."""
    probes, models, real, frames, other, context = check_args(args)
    cache = ModelCache()  # each model loaded once, whatever the number of probes
    first = args.run[0].resolve()
    out = args.out or first.parent / f"{first.stem if first.is_file() else first.name}_probe"
    check_output_dir(out, args.overwrite)
    table, results = {}, {}
    for probe in probes:
        print(f"probe {probe.name}")
        result = sim_to_real(models, real, rows=args.rows, cache=cache, transform=transform_for(probe, frames, context))
        if probe.op == OTHER:
            result = near_only(result, other)
        results[probe.name], table[probe.name] = result, summary(result)
    print_probes(table)
    for name, result in results.items():
        write_sim_to_real(result, out / name.replace("@", "_at_"))
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "probe.json") as tmp:
        saved = {"real": str(real), **({"other": str(other)} if other is not None else {}), "probes": table}
        tmp.write_text(json.dumps(saved, indent=2, allow_nan=False) + "\n")
    print(f"wrote {out / 'probe.json'} and one folder per probe")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_script(lambda: score(args), "interrupted")


if __name__ == "__main__":
    sys.exit(main())
