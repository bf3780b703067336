"""Training speed per step in the two memory layouts, side by side: contiguous and channels-last.

For each model (the recipe's own with the recipe's model options, the others with their zoo
defaults): one training step as `slimdepth train` runs it (forward, the recipe's loss,
backward, gradient clipping, the recipe's optimiser) on a batch of the recipe's training frames,
timed in the default (contiguous) layout and in channels-last. The rounds interleave the two
layouts and every model, so the VM's speed drift falls on both alike; the median ms per step of
each and their ratio are printed. `train.channels_last: auto` trains channels-last on GPUs and
CPUs because of these figures. Usage:

    python benchmarks/train_speed.py [--recipe configs/quickstart.yaml] [--models litedepth,fastdepth]
                                     [--batch 8] [--rounds 5] [--steps 4] [--threads N]
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import torch

from slimdepth.data.registry import build_dataset
from slimdepth.data.sample import collate_samples
from slimdepth.errors import ConfigError, OneLineArgumentParser, SlimdepthError, run_script
from slimdepth.losses import build_criterion
from slimdepth.models.zoo import build_model, list_models
from slimdepth.options import check_number, check_threads
from slimdepth.train.optim import build_optimizer, clip_gradients
from slimdepth.train.run import resolve_config

QUICKSTART = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"
DEFAULT_MODELS = "litedepth,litedepth-released,tiny-multires,fastdepth,resnet18-unet"
LAYOUTS = {"contiguous": torch.contiguous_format, "channels-last": torch.channels_last}


class Step:
    """One model in one memory layout, with its own optimiser: :meth:`time` runs a timed step."""

    def __init__(self, name: str, layout: torch.memory_format, cfg: dict, batch: dict) -> None:
        torch.manual_seed(0)
        options = {k: v for k, v in cfg["model"].items() if k != "name"}
        if name != cfg["model"]["name"]:  # the recipe's options are for its own model
            options = {"max_depth": options["max_depth"]} if "max_depth" in options else {}
        self.model = build_model(name, **options).train()
        self.model = self.model.to(memory_format=layout)
        self.images = batch["image"].contiguous(memory_format=layout)
        self.batch = batch
        self.criterion = build_criterion(cfg["loss"])
        self.optimizer = build_optimizer(self.model, cfg["optim"])
        self.clip = cfg["optim"].get("grad_clip")

    def time(self) -> float:
        """Seconds of one training step."""
        t = time.perf_counter()
        loss, _ = self.criterion(self.model(self.images, outputs=("depth",)), self.batch,
                                 generator=torch.Generator().manual_seed(0))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(self.model.parameters(), self.clip)
        self.optimizer.step()
        return time.perf_counter() - t


def main() -> int:
    ap = OneLineArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default=str(QUICKSTART), help="the loss, optimiser and frames come from it "
                    "(default: the repository's configs/quickstart.yaml)")
    ap.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated zoo names")
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
        cfg = resolve_config(Path(args.recipe), [])
    except SlimdepthError as exc:
        raise ConfigError(f"--recipe {exc}") from None
    frames = build_dataset(cfg["data"]["train"])
    if len(frames) < args.batch:
        raise ConfigError(f"--batch {args.batch} is more than the recipe's {len(frames)} training frames")
    batch = collate_samples([frames[i] for i in range(args.batch)])
    size = tuple(batch["image"].shape[-2:])
    print(f"training steps at batch {args.batch}, {size[0]}x{size[1]}, loss and optimiser of {Path(args.recipe).name}; "
          f"{os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    steps = {(name, layout): Step(name, fmt, cfg, batch) for name in models for layout, fmt in LAYOUTS.items()}
    for step in steps.values():
        step.time()  # warm-up: allocations and kernel choice
    times: dict[tuple[str, str], list[float]] = {key: [] for key in steps}
    for r in range(args.rounds):
        for key, step in steps.items():
            times[key] += [step.time() for _ in range(args.steps)]
        print(f"round {r + 1} of {args.rounds}", file=sys.stderr, flush=True)
    print(f"| model | contiguous ms/step | channels-last ms/step | speed-up |  (median of {args.rounds * args.steps})")
    print("| --- | ---: | ---: | ---: |")
    for name in models:
        plain, last = (statistics.median(times[(name, layout)]) for layout in LAYOUTS)
        print(f"| {name} | {plain * 1e3:.1f} | {last * 1e3:.1f} | {plain / last:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
