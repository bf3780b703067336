"""How much fine detail frames carry at a network's input: real KITTI frames against rendered ones.

Each frame is resized to ``--size`` as the evaluation resizes real frames (bilinear, no
antialiasing: ``slimdepth.evaluate.loop.input_batch``), turned grey, and measured by its mean
absolute difference from itself blurred by a Gaussian of 1 pixel (``E1``: the finest detail) and
of 3 pixels (``E3``: detail up to a few pixels across); the table gives each set's mean and the
ratio to the first rendered set. Rendered frames are smooth (flat-shaded panels, textures
box-filtered to the pixel, a lens blur), and networks trained on them read fine detail as
distance (``benchmarks/sim_to_real_probe.py --probe blur=10@near``). ``--sharpen AMOUNT,SIGMA``
adds rows for the rendered sets through the ``sharpen`` augmentation at that amount and sigma, to
see which setting spans the real frames. Usage:

    python benchmarks/frame_detail.py [--real DIR ...] [--synthetic SPEC ...] [--size 96x320]
                                      [--frames 20] [--sharpen 3,2 ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from slimdepth.data.base import DepthDataset
from slimdepth.data.photometric import MAX_BLUR_SIGMA, MAX_SHARPEN, Sharpen, _blur, _grey
from slimdepth.data.registry import build_dataset
from slimdepth.errors import ConfigError, OneLineArgumentParser, run_script
from slimdepth.evaluate.loop import input_batch
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
    return parser.parse_args(argv)


def detail_energy(image: torch.Tensor) -> tuple[float, float]:
    """``(E1, E3)`` of one image (3, H, W) in [0, 1]: the mean absolute difference of its grey from
    the grey blurred by a Gaussian of 1 and of 3 pixels."""
    grey = _grey(image).float()
    return tuple(float((grey - _blur(grey, sigma)).abs().mean()) for sigma in (1.0, 3.0))  # type: ignore[return-value]


def _sharpen(amount: float, sigma: float):
    """The ``sharpen`` augmentation at exactly this amount and sigma, on one image."""
    op = Sharpen(1.0, amount=(amount, amount), sigma=(sigma, sigma))
    return lambda image: op({"image": image}, generator=0)["image"]


def _parse_sharpen(text: str) -> tuple[float, float]:
    try:
        amount, sigma = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--sharpen {text!r}: give AMOUNT,SIGMA, e.g. 3,2") from None
    if not (0 <= amount <= MAX_SHARPEN and 0 < sigma <= MAX_BLUR_SIGMA):
        raise ConfigError(f"--sharpen {text!r}: amount must be in [0, {MAX_SHARPEN:g}], "
                          f"sigma in (0, {MAX_BLUR_SIGMA:g}]")
    return amount, sigma


def inputs(frames: DepthDataset, size: tuple[int, int], count: int) -> list[torch.Tensor]:
    """The first ``count`` frames' images as the network gets them: resized to ``size`` as the
    evaluation resizes them."""
    return [input_batch([torch.as_tensor(frames[i]["image"]).float()], size)[0].clamp(0.0, 1.0)
            for i in range(min(len(frames), count))]


def measure(images: list[torch.Tensor], change=None) -> tuple[int, float, float]:
    """Images measured and their mean ``E1`` and ``E3`` (after ``change``, if given)."""
    e1, e3 = np.mean([detail_energy(change(image) if change else image) for image in images], axis=0)
    return len(images), float(e1), float(e3)


def report(args: argparse.Namespace) -> None:
    """Measure every set and print the table."""
    size = parse_size(args.size, "--size")
    if args.frames < 1:
        raise ConfigError(f"--frames must be at least 1, got {args.frames}")
    sharpen = [_parse_sharpen(t) for t in args.sharpen]
    real = args.real or [p for p in DEFAULT_REAL if p.is_dir()]
    if not real:
        print(f"no real frames: {DEFAULT_REAL[0].parent} is absent; give --real DIR to compare with them")
    specs = args.synthetic or DEFAULT_SYNTHETIC
    rows: list[tuple[str, int, float, float]] = []
    rendered = [(spec, build_dataset(spec)) for spec in specs]  # bad specs fail before any work
    opened = [(str(path), open_real_frames(path)) for path in real]
    for spec, frames in rendered:
        images = inputs(frames, size, args.frames)  # rendered once, measured as they are and sharpened
        rows.append((spec, *measure(images)))
        for amount, sigma in sharpen:
            rows.append((f"{spec} + sharpen {amount:g},{sigma:g}", *measure(images, _sharpen(amount, sigma))))
    for name, frames in opened:
        rows.append((name, *measure(inputs(frames, size, args.frames))))
    base = rows[0]
    width = max(len(r[0]) for r in rows)
    print(f"fine detail at {size[0]}x{size[1]} (grey; E1, E3: mean |x - Gaussian(x, 1 or 3 px)|); "
          f"ratios to {base[0]}")
    print(f"{'frames':{width}s}      n |     E1     E3 | E1 ratio  E3 ratio")
    for name, n, e1, e3 in rows:
        print(f"{name:{width}s} {n:6d} | {e1:.4f} {e3:.4f} | {e1 / base[2]:8.2f}  {e3 / base[3]:8.2f}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_script(lambda: report(args), "interrupted")


if __name__ == "__main__":
    sys.exit(main())
