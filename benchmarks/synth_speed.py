"""Speed of the synthetic street-scene generator, measured side by side in one run.

Prints frames/s for each combination of rendered components, in one process (with and
without the helper thread that renders the right view) and through a PyTorch DataLoader
with worker processes, as used on the fly in training. Usage:

    python benchmarks/synth_speed.py [--size 192x640] [--frames 40] [--workers 2]
    python benchmarks/synth_speed.py --against OTHER_SRC [--rounds 5]
    python benchmarks/synth_speed.py --option object_shadows=true [--rounds 5]

``--against`` times the default spec (rgb + depth + seg + lidar, one process, one thread) of
this source tree and of another one (e.g. an older commit's ``src`` in a git worktree) in
separate processes, round by round in turn, and prints each one's median frames/s and their
ratio: this VM's speed drifts by 20% between minutes, so only the ratio is comparable.
``--option KEY=VALUE`` (repeatable; scene or camera options of the dataset spec) times this
tree with those options against its defaults the same way, or, with ``--against``, against
the other tree's defaults. ``--parts`` prints the median time of each part of a default frame
(scene, camera settings, ray casting, shading, camera model, labels, LiDAR) instead.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from slimdepth.data.sample import collate_samples
from slimdepth.data.synthetic import SceneGenerator, SyntheticDataset
from slimdepth.errors import OneLineArgumentParser, run_script
from slimdepth.options import check_number, parse_size

FULL = ("depth", "seg", "lidar", "right")
VARIANTS = [
    ("rgb+depth+seg+lidar+right", FULL, True),
    ("rgb+depth+seg+lidar+right", FULL, False),
    ("rgb+depth+seg+lidar", ("depth", "seg", "lidar"), False),
    ("rgb+depth", ("depth",), False),
]


def time_frames(gen: SceneGenerator, frames: int, warmup: int = 3) -> list[float]:
    """Seconds per frame for frames warmup..warmup+frames (the first frames build caches)."""
    for i in range(warmup):
        gen.frame(i)
    times = []
    for i in range(warmup, warmup + frames):
        t = time.perf_counter()
        gen.frame(i)
        times.append(time.perf_counter() - t)
    return times


def time_loader(size: tuple[int, int], frames: int, workers: int, right: bool) -> float:
    """Frames/s delivered by a DataLoader (batch 4, contract samples as tensors)."""
    ds = SyntheticDataset(num=frames + 8 * workers, size=size, right=right)
    loader = DataLoader(ds, batch_size=4, num_workers=workers, collate_fn=collate_samples, persistent_workers=False)
    it = iter(loader)
    for _ in range(2 * max(workers, 1)):  # start the workers and fill their queues
        next(it)
    t, n = time.perf_counter(), 0
    for batch in it:
        n += batch["image"].shape[0]
        if n >= frames:
            break
    return n / (time.perf_counter() - t)


_ONE_ROUND = """
import statistics, time
from slimdepth.data.synthetic import SceneGenerator
kwargs = {{}}
if {options!r}:
    from slimdepth.data.synthetic.generator import generator_options
    scene, camera = generator_options({options!r})
    kwargs = {{"scene_options": scene, "camera_options": camera}}
gen = SceneGenerator(({h}, {w}), seed=0, components=("depth", "seg", "lidar"), threaded=False, **kwargs)
for i in range(3):
    gen.frame(i)
times = []
for i in range(3, 3 + {frames}):
    t = time.perf_counter()
    gen.frame(i)
    times.append(time.perf_counter() - t)
print(1.0 / statistics.median(times))
"""


def time_parts(size: tuple[int, int], frames: int) -> dict[str, float]:
    """Median ms of each part of a default frame, in the order ``SceneGenerator.frame`` runs them."""
    import numpy as np

    from slimdepth.data.synthetic import lidar
    from slimdepth.data.synthetic.camera import develop
    from slimdepth.data.synthetic.generator import _labels
    from slimdepth.data.synthetic.raycast import PinholeGrid, cast
    from slimdepth.data.synthetic.shading import shade

    gen = SceneGenerator(size, seed=0, components=("depth", "seg", "lidar"), threaded=False)
    for i in range(3):  # textures, compiled loops
        gen.frame(i)
    times: dict[str, list[float]] = {}

    def timed(name: str, fn):
        t = time.perf_counter()
        out = fn()
        times.setdefault(name, []).append((time.perf_counter() - t) * 1000)
        return out

    for i in range(3, 3 + frames):
        scene = timed("scene", lambda: gen.scene(i))
        camera = timed("camera settings", lambda: gen.camera(i, scene))
        grid = PinholeGrid(scene.K, *size, scene.camera_rotation, scene.camera_origin)
        hits = timed("ray casting", lambda: cast(scene, grid))
        radiance = timed("shading", lambda: shade(scene, grid, hits))
        timed("camera model", lambda: develop(radiance, camera, np.random.default_rng(i)))
        timed("labels", lambda: _labels(scene, grid, hits))
        timed("lidar", lambda: lidar.lidar_depth(scene, np.random.default_rng(i), gen.lidar_dropout))
    return {name: statistics.median(values) for name, values in times.items()}


def parse_options(items: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` strings read as in a dataset spec (``slimdepth data synth --option``), checked
    by the generator; a bad one ends the script with a one-line error."""
    from slimdepth.data.registry import parse_option_items
    from slimdepth.data.synthetic.generator import generator_options

    try:
        options = parse_option_items(items)
        generator_options(options)
    except Exception as err:  # a ConfigError naming the option
        raise SystemExit(f"error: {err}") from None
    return options


def compare(size: tuple[int, int], frames: int, rounds: int, entries: list[tuple[str, str, dict]]) -> None:
    """Frames/s of each (label, source tree, options), in separate processes, interleaved round by round."""
    import subprocess
    import sys

    fps: list[list[float]] = [[] for _ in entries]
    for _ in range(rounds):
        for i, (_, src, options) in enumerate(entries):
            code = _ONE_ROUND.format(h=size[0], w=size[1], frames=frames, options=options)
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 env={**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1"})
            if out.returncode != 0:
                last = (out.stderr.strip().splitlines() or ["no output"])[-1]
                raise SystemExit(f"error: timing {src} failed: {last}")
            fps[i].append(float(out.stdout.strip()))
    print(f"rgb + depth + seg + lidar at {size[0]}x{size[1]}, 1 process, median of {frames} frames per round, "
          f"{rounds} rounds in turn")
    for (label, src, options), values in zip(entries, fps):
        spec = ", ".join(f"{k}={v}" for k, v in options.items()) or "defaults"
        print(f"{label:10s} {src} ({spec}): {statistics.median(values):.1f} frames/s (rounds: "
              f"{', '.join(f'{v:.1f}' for v in values)})")
    ratios = [a / b for a, b in zip(fps[0], fps[1])]  # the two of one round ran a few seconds apart
    print(f"ratio first/second: {statistics.median(fps[0]) / statistics.median(fps[1]):.2f} of the medians, "
          f"{statistics.median(ratios):.2f} median of the rounds' ratios ({min(ratios):.2f}-{max(ratios):.2f})")


def main() -> None:
    parser = OneLineArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="192x640")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--against", default=None, help="another source tree (its src folder) to time side by side")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a scene or camera option to time against the defaults (repeatable)")
    parser.add_argument("--parts", action="store_true", help="time each part of a default frame")
    args = parser.parse_args()
    size = parse_size(args.size, "--size")
    check_number(args.frames, "--frames", integer=True, low=1)
    check_number(args.rounds, "--rounds", integer=True, low=1)
    check_number(args.workers, "--workers", integer=True, low=0)
    options = parse_options(args.option)
    here = str(Path(__file__).resolve().parents[1] / "src")
    if args.against:
        if not (Path(args.against) / "slimdepth").is_dir():
            raise SystemExit(f"error: --against {args.against}: no slimdepth package there (give a source tree's src folder)")
        compare(size, args.frames, args.rounds, [("this tree", here, options), ("other", args.against, {})])
        return
    if options:
        compare(size, args.frames, args.rounds, [("options", here, options), ("defaults", here, {})])
        return
    torch.set_num_threads(1)
    if args.parts:
        parts = time_parts(size, args.frames)
        print(f"parts of a default frame (rgb + depth + seg + lidar) at {size[0]}x{size[1]}, 1 thread, "
              f"median of {args.frames} frames")
        for name, ms in parts.items():
            print(f"{name:16s} {ms:7.2f} ms")
        print(f"{'sum':16s} {sum(parts.values()):7.2f} ms ({1000 / sum(parts.values()):.1f} frames/s)")
        return
    print(f"synthetic generator at {size[0]}x{size[1]}, {os.cpu_count()} CPU cores, median of {args.frames} frames")
    print(f"{'components':30s} {'setup':34s} {'ms/frame':>9s} {'frames/s':>9s} {'vs 20 fps':>9s}")
    for label, comps, threaded in VARIANTS:
        times = time_frames(SceneGenerator(size, seed=0, components=comps, threaded=threaded), args.frames)
        ms = statistics.median(times) * 1000
        setup = "1 process" + (", right on a thread" if threaded and "right" in comps else "")
        print(f"{label:30s} {setup:34s} {ms:9.1f} {1000 / ms:9.1f} {1000 / ms / 20:8.2f}x")
    for right in (True, False):
        label = "rgb+depth+seg+lidar" + ("+right" if right else "")
        fps = time_loader(size, args.frames, args.workers, right)
        print(f"{label:30s} {f'DataLoader, {args.workers} workers':34s} {1000 / fps:9.1f} {fps:9.1f} {fps / 20:8.2f}x")


if __name__ == "__main__":
    sys.exit(run_script(main))
