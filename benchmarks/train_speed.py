"""Training speed per step in the two memory layouts, side by side: contiguous and channels-last.

For each model (the recipe's own with the recipe's model options, the others with their zoo
defaults), a :class:`~slimdepth.train.trainer.Trainer` is built from the recipe in each layout and
its own training step is timed (forward with the outputs the loss reads, the recipe's loss,
backward, clipping, the optimiser and scheduler steps) on the same batch of the recipe's training
frames. The rounds interleave the two layouts and every model, so the VM's speed drift falls on
both alike; the median ms per step of each and their ratio are printed. `train.channels_last:
auto` trains channels-last on GPUs and CPUs because of these figures. Usage:

    python benchmarks/train_speed.py [--recipe configs/quickstart.yaml] [--models litedepth,fastdepth]
                                     [--batch 8] [--rounds 5] [--steps 4] [--threads N]
"""

from __future__ import annotations

import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from slimdepth.data.registry import build_dataset
from slimdepth.data.sample import collate_samples
from slimdepth.deploy.machine import cpu_model
from slimdepth.errors import ConfigError, OneLineArgumentParser, SlimdepthError, run_script
from slimdepth.models.zoo import list_models
from slimdepth.options import check_number, check_threads
from slimdepth.train.run import resolve_config
from slimdepth.train.trainer import Trainer

QUICKSTART = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"
DEFAULT_MODELS = ",".join(list_models())
LAYOUTS = {"contiguous": False, "channels-last": True}


class Step:
    """One model's trainer in one memory layout: :meth:`time` runs one timed training step."""

    def __init__(self, name: str, channels_last: bool, cfg: dict[str, Any], run: Path) -> None:
        cfg = copy.deepcopy(cfg)
        if name != cfg["model"]["name"]:  # the recipe's model options are for its own model
            cfg["model"] = {"name": name, **{k: v for k, v in cfg["model"].items() if k == "max_depth"}}
        cfg["train"]["channels_last"] = channels_last
        self.trainer = Trainer(cfg, run)
        self.batch = collate_samples([self.trainer.train_set[i] for i in range(self.trainer.batch_size)])

    def time(self) -> float:
        """Seconds of one training step (the trainer's own; it moves the batch to the device and layout)."""
        t = time.perf_counter()
        self.trainer._train_step(self.batch)  # noqa: SLF001 - exactly the step `slimdepth train` takes
        return time.perf_counter() - t


def main() -> None:
    ap = OneLineArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default=str(QUICKSTART), help="the loss, optimiser and frames come from it "
                    "(default: the repository's configs/quickstart.yaml)")
    ap.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated zoo names (default: all)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per model, layout and round")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    models = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in models if name not in list_models()]
    if unknown or not models:
        raise ConfigError(f"--models {args.models!r}: give zoo names ({', '.join(list_models())})")
    check_number(args.batch, "--batch", integer=True, low=1)
    check_number(args.rounds, "--rounds", integer=True, low=1)
    check_number(args.steps, "--steps", integer=True, low=1)
    if args.threads is not None:
        torch.set_num_threads(check_threads(args.threads))
    try:
        cfg = resolve_config(Path(args.recipe), [f"data.batch_size={args.batch}", "train.samples=0",
                                                  f"train.steps={args.rounds * args.steps + 1}",
                                                  "schedule.warmup_steps=0"])
        frames = len(build_dataset(cfg["data"]["train"]))  # its length only: nothing is rendered or read yet
    except SlimdepthError as exc:
        raise ConfigError(f"--recipe {exc}") from None
    if frames < args.batch:
        raise ConfigError(f"--batch {args.batch} is more than the recipe's {frames} training frames")
    with tempfile.TemporaryDirectory(prefix="train_speed-") as tmp:
        steps = {(name, layout): Step(name, flag, cfg, Path(tmp) / f"{name}-{layout}")
                 for name in models for layout, flag in LAYOUTS.items()}
        size = tuple(next(iter(steps.values())).batch["image"].shape[-2:])
        print(f"training steps of `slimdepth train` at batch {args.batch}, {size[0]}x{size[1]}, recipe "
              f"{Path(args.recipe).name}; CPU {cpu_model()}, {torch.get_num_threads()} torch threads, "
              f"torch {torch.__version__}; median of {args.rounds * args.steps} steps each\n")
        for step in steps.values():
            step.time()  # warm-up: allocations and kernel choice
        times: dict[tuple[str, str], list[float]] = {key: [] for key in steps}
        for r in range(args.rounds):
            for key, step in steps.items():
                times[key] += [step.time() for _ in range(args.steps)]
            print(f"round {r + 1} of {args.rounds}", file=sys.stderr, flush=True)
    print("| model | contiguous ms/step | channels-last ms/step | speed-up |")
    print("| --- | ---: | ---: | ---: |")
    for name in models:
        plain, last = (statistics.median(times[(name, layout)]) for layout in LAYOUTS)
        print(f"| {name} | {plain * 1e3:.1f} | {last * 1e3:.1f} | {plain / last:.2f}x |")


if __name__ == "__main__":
    sys.exit(run_script(main))
