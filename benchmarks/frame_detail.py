"""How much fine detail frames carry at a network's input: real KITTI frames against rendered ones.

Each frame is resized to ``--size`` as the evaluation resizes real frames (bilinear, no
antialiasing: ``slimdepth.evaluate.loop.input_batch``), turned grey, and measured by its mean
absolute difference from itself blurred by a Gaussian of 1 pixel (``E1``: the finest detail) and
of 3 pixels (``E3``: detail up to a few pixels across); the table gives each set's mean and the
ratio to the first rendered set. Rendered frames are smooth (flat-shaded panels, textures
box-filtered to the pixel, a lens blur), and networks trained on them read fine detail as
distance (``benchmarks/sim_to_real_probe.py --probe blur=10@near``). ``--sharpen AMOUNT,SIGMA``
adds rows for the rendered sets through the ``sharpen`` augmentation at that amount and sigma, to
see which setting spans the real frames. ``--by-depth`` adds a second table: the same detail at
the points that stand above the road (``slimdepth.flat_road.above_road``; each set's own depth,
LiDAR or rendered) by distance band, since the shared congested drive gains detail with distance
where rendered frames stay flat (its three street frames do not); ``--sharpen-far AMOUNT,SIGMA`` adds rows through the ``sharpen_far``
augmentation (the amount weighted by depth) to both tables. Usage:

    python benchmarks/frame_detail.py [--real DIR ...] [--synthetic SPEC ...] [--size 96x320]
                                      [--frames 20] [--sharpen 3,2 ...] [--sharpen-far 3,2 ...]
                                      [--by-depth]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from slimdepth.data.base import DepthDataset
from slimdepth.data.keys import is_sparse_map
from slimdepth.data.photometric import MAX_BLUR_SIGMA, MAX_SHARPEN, Sharpen, SharpenFar, _blur, _grey
from slimdepth.data.registry import build_dataset
from slimdepth.errors import ConfigError, OneLineArgumentParser, run_script
from slimdepth.evaluate.loop import input_batch
from slimdepth.flat_road import above_road
from slimdepth.options import parse_size
from slimdepth.report.real import open_real_frames

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT_REAL = [SHARED / "kitti_raw", SHARED / "kitti_depth_annotated"]
DEFAULT_SYNTHETIC = ["synthetic,num=20,size=96x320,lidar=false,haze=0",
                     "synthetic,num=20,size=96x320,lidar=false,haze=0,vehicle_detail=1"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineArgumentParser(description=__doc__.splitlines()[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", type=Path, action="append", help="KITTI raw or annotated folder; repeatable "
                        "(default: the shared data's two sets, those present)")
    parser.add_argument("--synthetic", action="append", help="a synthetic,... spec; repeatable (default: the "
                        "clear-air training frames, without and with vehicle_detail=1)")
    parser.add_argument("--size", default="96x320", help="the network's input size HxW (default: 96x320)")
    parser.add_argument("--frames", type=int, default=20, help="frames per set at most (default: 20)")
    parser.add_argument("--sharpen", action="append", default=[], metavar="AMOUNT,SIGMA",
                        help="also measure the rendered sets sharpened so; repeatable")
    parser.add_argument("--sharpen-far", action="append", default=[], metavar="AMOUNT,SIGMA",
                        help="also measure the rendered sets through sharpen_far at this amount and sigma; repeatable")
    parser.add_argument("--by-depth", action="store_true",
                        help="add a table of the detail above the road by distance band")
    return parser.parse_args(argv)


def detail_energy(image: torch.Tensor) -> tuple[float, float]:
    """``(E1, E3)`` of one image (3, H, W) in [0, 1]: the mean absolute difference of its grey from
    the grey blurred by a Gaussian of 1 and of 3 pixels."""
    grey = _grey(image).float()
    return tuple(float((grey - _blur(grey, sigma)).abs().mean()) for sigma in (1.0, 3.0))  # type: ignore[return-value]


BANDS = ((0.0, 8.0), (8.0, 15.0), (15.0, 30.0), (30.0, math.inf))  # metres, for --by-depth


class Frame(NamedTuple):
    """One frame as the network gets it, with what the depth table needs."""

    image: torch.Tensor  # (3, h, w) at the input size, as the evaluation resizes it
    depth: torch.Tensor | None  # (h, w) at the input size (nearest) for a dense map; None for a point set
    points: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # the points above the road: rows, columns, depth


def _sharpen(amount: float, sigma: float):
    """The ``sharpen`` augmentation at exactly this amount and sigma, on one frame."""
    op = Sharpen(1.0, amount=(amount, amount), sigma=(sigma, sigma))
    return lambda frame: op({"image": frame.image}, generator=0)["image"]


def _sharpen_far(amount: float, sigma: float):
    """The ``sharpen_far`` augmentation at exactly this amount and sigma, on one rendered frame."""
    op = SharpenFar(1.0, amount=(amount, amount), sigma=(sigma, sigma))
    return lambda frame: op({"image": frame.image, "depth": frame.depth}, generator=0)["image"]


def _parse_sharpen(text: str, option: str = "--sharpen") -> tuple[float, float]:
    try:
        amount, sigma = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"{option} {text!r}: give AMOUNT,SIGMA, e.g. 3,2") from None
    if not (0 <= amount <= MAX_SHARPEN and 0 < sigma <= MAX_BLUR_SIGMA):
        raise ConfigError(f"{option} {text!r}: amount must be in [0, {MAX_SHARPEN:g}], "
                          f"sigma in (0, {MAX_BLUR_SIGMA:g}]")
    return amount, sigma


def inputs(frames: DepthDataset, size: tuple[int, int], count: int) -> list[Frame]:
    """The first ``count`` frames as the network gets them: resized to ``size`` as the evaluation
    resizes them, each point above the road moved to its nearest pixel there."""
    out = []
    h, w = size
    for i in range(min(len(frames), count)):
        sample = frames[i]
        image = torch.as_tensor(sample["image"]).float()
        height, width = image.shape[-2:]
        resized = input_batch([image], size)[0].clamp(0.0, 1.0)
        if "depth" not in sample:  # nothing to place: the first table only
            empty = torch.zeros(0, dtype=torch.long)
            out.append(Frame(resized, None, (empty, empty, torch.zeros(0))))
            continue
        depth = torch.as_tensor(sample["depth"]).float().reshape(height, width)
        rows, cols = torch.nonzero(above_road(depth, sample["K"]), as_tuple=True)
        points = (((rows + 0.5) * h / height).long().clamp(max=h - 1), ((cols + 0.5) * w / width).long().clamp(max=w - 1),
                  depth[rows, cols])
        dense = None if is_sparse_map(depth) else F.interpolate(depth[None, None], size=size, mode="nearest-exact")[0, 0]
        out.append(Frame(resized, dense, points))
    return out


def measure(frames: list[Frame], change=None) -> tuple[int, float, float]:
    """Frames measured and their mean ``E1`` and ``E3`` (after ``change``, if given)."""
    e1, e3 = np.mean([detail_energy(change(f) if change else f.image) for f in frames], axis=0)
    return len(frames), float(e1), float(e3)


def measure_by_depth(frames: list[Frame], change=None) -> list[float]:
    """The mean ``E3`` detail (|grey - Gaussian(grey, 3 px)|) at the points above the road in each
    of :data:`BANDS`, over the frames that have points there (NaN where none has)."""
    per_band: list[list[float]] = [[] for _ in BANDS]
    for f in frames:
        grey = _grey(change(f) if change else f.image).float()
        detail = (grey - _blur(grey, 3.0)).abs()[0]
        rows, cols, depth = f.points
        for band, (low, high) in zip(per_band, BANDS):
            inside = (depth >= low) & (depth < high)
            if inside.any():
                band.append(float(detail[rows[inside], cols[inside]].mean()))
    return [float(np.mean(b)) if b else math.nan for b in per_band]


def report(args: argparse.Namespace) -> None:
    """Measure every set and print the table(s)."""
    size = parse_size(args.size, "--size")
    if args.frames < 1:
        raise ConfigError(f"--frames must be at least 1, got {args.frames}")
    changes = [(f"sharpen {a:g},{s:g}", _sharpen(a, s)) for a, s in (_parse_sharpen(t) for t in args.sharpen)]
    changes += [(f"sharpen_far {a:g},{s:g}", _sharpen_far(a, s))
                for a, s in (_parse_sharpen(t, "--sharpen-far") for t in args.sharpen_far)]
    real = args.real or [p for p in DEFAULT_REAL if p.is_dir()]
    if not real:
        print(f"no real frames: {DEFAULT_REAL[0].parent} is absent; give --real DIR to compare with them")
    specs = args.synthetic or DEFAULT_SYNTHETIC
    rendered = [(spec, build_dataset(spec)) for spec in specs]  # bad specs fail before any work
    opened = [(str(path), open_real_frames(path)) for path in real]
    sets: list[tuple[str, list[Frame], Any]] = []
    for spec, frames in rendered:
        loaded = inputs(frames, size, args.frames)  # rendered once, measured as they are and changed
        sets.append((spec, loaded, None))
        sets += [(f"{spec} + {name}", loaded, change) for name, change in changes]
    sets += [(name, inputs(frames, size, args.frames), None) for name, frames in opened]
    rows = [(name, *measure(frames, change)) for name, frames, change in sets]
    base = rows[0]
    width = max(len(r[0]) for r in rows)
    print(f"fine detail at {size[0]}x{size[1]} (grey; E1, E3: mean |x - Gaussian(x, 1 or 3 px)|); "
          f"ratios to {base[0]}")
    print(f"{'frames':{width}s}      n |     E1     E3 | E1 ratio  E3 ratio")
    for name, n, e1, e3 in rows:
        print(f"{name:{width}s} {n:6d} | {e1:.4f} {e3:.4f} | {e1 / base[2]:8.2f}  {e3 / base[3]:8.2f}")
    if not args.by_depth:
        return
    heads = [f"{low:g}-{high:g} m" if high < math.inf else f">= {low:g} m" for low, high in BANDS]
    print(f"\nE3 at the points above the road by distance ({size[0]}x{size[1]}); far/near: 15-30 m against 0-8 m")
    print(f"{'frames':{width}s} | " + " ".join(f"{h:>8s}" for h in heads) + " | far/near")
    for name, frames, change in sets:
        bands = measure_by_depth(frames, change)
        ratio = bands[2] / bands[0] if bands[0] > 0 else math.nan  # NaN when a band is empty (or flat)
        print(f"{name:{width}s} | " + " ".join(f"{v:8.4f}" for v in bands) + f" | {ratio:8.2f}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_script(lambda: report(args), "interrupted")


if __name__ == "__main__":
    sys.exit(main())
