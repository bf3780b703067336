"""Cost of the synthetic camera model (`develop`) per frame: plain, default and every effect at max.

Develops the radiance of a few rendered scenes (rendered once, outside the timing) and prints
the median and mean milliseconds per frame of `sample_camera` + `develop`. Usage:

    python benchmarks/camera_speed.py [--size 192x640] [--frames 60]
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np

from slimdepth.data.synthetic import SceneGenerator
from slimdepth.data.synthetic.camera import EFFECTS, MAX_STRENGTH, CameraOptions, develop, sample_camera
from slimdepth.data.synthetic.raycast import PinholeGrid, cast
from slimdepth.data.synthetic.shading import shade
from slimdepth.errors import OneLineArgumentParser, run_script
from slimdepth.options import check_number, parse_size

VARIANTS = [("plain", CameraOptions(plain=True)), ("default", CameraOptions()),
            ("max", CameraOptions(**{e: MAX_STRENGTH for e in EFFECTS}))]


def main() -> None:
    ap = OneLineArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="192x640")
    ap.add_argument("--frames", type=int, default=60)
    args = ap.parse_args()
    h, w = parse_size(args.size, "--size")
    check_number(args.frames, "--frames", integer=True, low=1)
    gen = SceneGenerator((h, w), seed=0, components=())
    scenes = []
    for i in range(4):
        scene = gen.scene(i)
        grid = PinholeGrid(scene.K, h, w, scene.camera_rotation, scene.camera_origin)
        scenes.append((shade(scene, grid, cast(scene, grid)), scene.exposure))
    print(f"| camera | median ms | mean ms |  ({h}x{w}, {args.frames} frames)")
    print("| --- | ---: | ---: |")
    for name, options in VARIANTS:
        times = []
        for i in range(args.frames + 5):
            radiance, exposure = scenes[i % len(scenes)]
            rng = np.random.default_rng(i)
            t = time.perf_counter()
            develop(radiance, sample_camera(rng, options, exposure), rng)
            times.append(time.perf_counter() - t)
        times = times[5:]  # the first frames build the cached noise tiles and buffers
        print(f"| {name} | {statistics.median(times) * 1e3:.2f} | {statistics.mean(times) * 1e3:.2f} |")


if __name__ == "__main__":
    sys.exit(run_script(main))
