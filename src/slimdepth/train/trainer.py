"""The training loop: one recipe (YAML) in, a run directory out.

A run directory holds the resolved ``config.yaml``, ``checkpoints/`` (``last`` with the full
training state, ``best`` by the monitored validation metric), ``metrics.json``, ``log.csv``,
TensorBoard events in ``tb/`` and sample predictions in ``samples/``. A killed run resumes
from ``last`` and continues exactly as an uninterrupted run of the same seed would.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from slimdepth.data.augment import RandomRotation, build_augmentation
from slimdepth.data.registry import build_dataset
from slimdepth.data.sample import collate_samples
from slimdepth.errors import ConfigError, DataError
from slimdepth.evaluate.conventions import EvalConfig, resolve_eval_config
from slimdepth.evaluate.loop import evaluate_model, predict_depth
from slimdepth.evaluate.metrics import METRIC_NAMES
from slimdepth.fileio import atomic_path, write_rgb
from slimdepth.losses import build_criterion
from slimdepth.models.checkpoint import FORMAT, save_model, write_sidecar
from slimdepth.models.zoo import build_model
from slimdepth.options import check_number, parse_size
from slimdepth.train.config import save_config
from slimdepth.train.data import CachedDataset, TrainView
from slimdepth.train.optim import build_optimizer, build_scheduler, clip_gradients
from slimdepth.train.sampler import ResumableSampler, sample_seed
from slimdepth.train.state import load_training_state, save_training_state

Progress = Callable[[dict[str, Any]], None]
_HIGHER_IS_BETTER = {m.key: m.higher_is_better for m in METRIC_NAMES}


@dataclass
class Dist:
    """Where this process stands in a (possibly single-process) distributed run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Dist:
    """Join the process group torchrun set up (gloo on CPU, NCCL on GPU); a no-op otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _device(name: str, ddp_local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("train.device is cuda but no GPU is available")
        if name == "cuda":
            name = f"cuda:{ddp_local_rank}"
    return torch.device(name)


def _flag(value: str | bool, device: torch.device) -> bool:
    return device.type == "cuda" if value == "auto" else bool(value)


def _channels_last(value: str | bool, device: torch.device) -> bool:
    """Whether to train in the channels-last memory format: ``auto`` turns it on on GPUs and
    CPUs, where oneDNN's channels-last convolutions trained every zoo model 1.15-1.4x faster per
    step at 96x320 on a 2-core AMD EPYC (``benchmarks/train_speed.py``)."""
    return device.type in ("cuda", "cpu") if value == "auto" else bool(value)


def eval_config_for(dataset: Any, cfg: dict[str, Any]) -> EvalConfig:
    """The evaluation conventions: the dataset's preset, with the recipe's overrides."""
    return resolve_eval_config(dataset, cfg.get("preset"), cfg.get("crop"), cfg.get("min_depth"),
                               cfg.get("max_depth"), bool(cfg.get("median_scaling")))


def _to_device(batch: dict[str, Any], device: torch.device, channels_last: bool) -> dict[str, Any]:
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            v = v.to(device, non_blocking=True)
            if channels_last and k == "image":
                v = v.contiguous(memory_format=torch.channels_last)
        out[k] = v
    return out


class RunLog:
    """The run directory's logs: CSV rows, TensorBoard scalars and ``metrics.json``."""

    def __init__(self, run: Path, resume_step: int | None) -> None:
        self.csv_path = run / "log.csv"
        self.metrics_path = run / "metrics.json"
        self.fields: list[str] | None = None
        if resume_step is not None and self.csv_path.is_file():
            self._truncate(resume_step)
        self.metrics = json.loads(self.metrics_path.read_text()) if resume_step is not None and self.metrics_path.is_file() else {"validation": [], "best": None}
        if resume_step is not None:
            self.metrics["validation"] = [v for v in self.metrics["validation"] if v["step"] <= resume_step]
        try:  # lazy: TensorBoard's import is slow, and only a run that logs needs it
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run / "tb"), purge_step=resume_step)
        except ImportError:  # pragma: no cover - tensorboard is a dependency
            self.tb = None

    def _truncate(self, step: int) -> None:
        """Drop rows logged after the checkpoint a resumed run restarts from."""
        with self.csv_path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        with atomic_path(self.csv_path) as tmp, tmp.open("w", newline="") as fh:
            if rows:
                writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(r for r in rows if int(r["step"]) <= step)

    def row(self, values: dict[str, Any]) -> None:
        new = not self.csv_path.is_file() or self.csv_path.stat().st_size == 0
        if self.fields is None:
            self.fields = list(values) if new else next(csv.reader(self.csv_path.open()))
        with self.csv_path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(values)
        if self.tb is not None:
            for k, v in values.items():
                if k not in ("step", "epoch") and isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(f"train/{k}", v, values["step"])

    def validation(self, entry: dict[str, Any], monitor: str, best: bool) -> None:
        self.metrics["validation"].append(entry)
        if best:
            self.metrics["best"] = entry
        self.write()
        if self.tb is not None:
            for k, v in entry["metrics"].items():
                if isinstance(v, float) and math.isfinite(v):
                    self.tb.add_scalar(f"val/{k}", v, entry["step"])

    def write(self) -> None:
        with atomic_path(self.metrics_path) as tmp:
            tmp.write_text(json.dumps(self.metrics, indent=2) + "\n")

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


class TrainHooks:
    """Extension points for training variants (compression): override what you need.

    The trainer asks for extra parameter groups when it builds the optimiser, calls
    :meth:`before_step` and :meth:`after_step` around every optimisation step, adds the term of
    :meth:`extra_loss` to the loss, and keeps :meth:`state_dict` in its resumable checkpoint.
    """

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimiser groups for parameters outside the model (e.g. mask logits), with their own lr."""
        return []

    def before_step(self, trainer: Trainer) -> None:
        """Called before every optimisation step (``trainer.step`` = steps done so far)."""

    def extra_loss(self, trainer: Trainer) -> tuple[torch.Tensor, dict[str, float]] | None:
        """A term added to the loss of the current step, with named values for the log."""
        return None

    def after_step(self, trainer: Trainer) -> None:
        """Called after every completed optimisation step."""

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs back (tensors, numbers, strings, lists, dicts)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class Trainer:
    """Trains the recipe ``config`` into ``run``. ``stop_after`` (steps) simulates a killed run.

    ``model`` trains an already built network instead of the recipe's ``model`` section (a
    pruned or masked one); ``hooks`` adds loss terms and per-step actions (see :class:`TrainHooks`).
    """

    def __init__(self, config: dict[str, Any], run: str | Path, resume: bool = False,
                 progress: Progress | None = None, stop_after: int | None = None,
                 model: torch.nn.Module | None = None, hooks: TrainHooks | None = None) -> None:
        self.cfg = config
        self.hooks = hooks or TrainHooks()
        self._given_model = model
        self.run = Path(run)
        self.resume = resume
        self.progress = progress
        self.stop_after = stop_after
        tcfg = config["train"]
        if tcfg.get("threads"):
            torch.set_num_threads(int(tcfg["threads"]))
        self.device = _device(tcfg["device"], int(os.environ.get("LOCAL_RANK", "0")))
        self.dist = init_distributed(self.device)
        self.amp = _flag(tcfg["amp"], self.device)
        self.channels_last = _channels_last(tcfg["channels_last"], self.device)
        self.seed = int(tcfg["seed"])
        self._seed_everything(self.seed)
        self.step = 0
        self.epoch = 0
        self.position = 0  # samples of this rank's epoch already consumed
        self.road = self._check_road_loss()
        self._build_data()
        self._build_model()
        self.best: float | None = None
        self.checkpoints = self.run / "checkpoints"
        self.log: RunLog | None = None
        if resume:
            self._restore()

    # ------------------------------------------------------------------ set-up
    @staticmethod
    def _seed_everything(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)

    def _check_road_loss(self) -> bool:
        """Whether ``loss.road_weight`` is on; checked before any data or model is built: it needs a
        stixel head (LiteDepth ``road_prior: popup``) and no rotation in the augmentation (its
        flat road assumes a level camera, and a rotated frame's K does not record the roll)."""
        weight = check_number(self.cfg["loss"].get("road_weight", 0.0) or 0.0, "loss.road_weight", low=0.0)
        if not weight:
            return False
        mcfg = self.cfg["model"]
        stixel = (getattr(self._given_model, "has_road_logits", False) if self._given_model is not None
                  else mcfg.get("name") == "litedepth" and mcfg.get("road_prior") == "popup")
        if not stixel:
            raise ConfigError("loss.road_weight needs a model with road logits: litedepth with model.road_prior: popup")
        if any(isinstance(op, RandomRotation) for op in build_augmentation(self.cfg["data"].get("augment")).transforms):
            raise ConfigError("loss.road_weight assumes a level camera: remove the rotate augmentation (a rotated "
                              "frame's intrinsics do not record the roll)")
        return True

    def _build_data(self) -> None:
        dcfg = self.cfg["data"]
        base = build_dataset(dcfg["train"])
        if dcfg["cache"]:
            base = CachedDataset(base)
        size = parse_size(dcfg["size"], "data.size") if dcfg["size"] else None
        first = base[0]
        if "depth" not in first:
            raise DataError(f"data.train: {dcfg['train']} has no ground-truth depth (an unlabeled dataset cannot train "
                            "a model on its own)")
        if size is None:
            size = tuple(first["image"].shape[-2:])
        self.data_has_seg = "seg" in first
        self.input_size = size
        self.train_set = TrainView(base, dcfg["augment"], size, self.seed)
        self.val_set = build_dataset(dcfg["val"]) if dcfg.get("val") else None
        if self.val_set is not None and dcfg["cache"]:
            self.val_set = CachedDataset(self.val_set)
        self.sampler = ResumableSampler(len(self.train_set), shuffle=True, seed=self.seed, rank=self.dist.rank,
                                        world_size=self.dist.world, drop_last=True)
        self.batch_size = int(dcfg["batch_size"])
        self._count_steps(self._training_samples_per_batch())
        self.eval_config = eval_config_for(self.val_set if self.val_set is not None else base, self.cfg["eval"])

    def _training_samples_per_batch(self) -> int:
        """How many samples of the training set every batch takes (the rest may come from elsewhere)."""
        return self.batch_size

    def _count_steps(self, per_batch: int) -> None:
        """Steps per epoch and in total when every batch takes ``per_batch`` training samples."""
        self.labeled_per_batch = per_batch  # training samples a batch takes from the sampler
        per_epoch = len(self.sampler) // per_batch
        if per_epoch < 1:
            share = "" if per_batch == self.batch_size else f" ({per_batch} of them from the training set)"
            raise ConfigError(f"data.batch_size {self.batch_size}{share} is larger than the {len(self.sampler)} training "
                              "samples per process")
        self.steps_per_epoch = per_epoch
        tcfg = self.cfg["train"]
        self.total_steps = int(tcfg["steps"]) if tcfg.get("steps") else int(tcfg["epochs"]) * per_epoch

    def _build_model(self) -> None:
        if self._given_model is not None:
            self.model = self._given_model.to(self.device)
        else:
            mcfg = dict(self.cfg["model"])
            name = mcfg.pop("name")
            if self.resume:
                mcfg.pop("encoder_weights", None)  # the checkpoint holds the trained weights
            self.model = build_model(name, **mcfg).to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # ask the model only for what the loss reads, so that DDP sees unsupervised heads as unused
        self.outputs = ("depth",) + (("scales",) if self.cfg["loss"].get("scale_weights") else ()) + (
            ("seg",) if self.data_has_seg else ()) + (("road",) if self.road else ())
        self.criterion = self._make_criterion().to(self.device)
        extra = [p for p in self.criterion.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.model, self.cfg["optim"], extra_groups=self.hooks.param_groups() or None,
                                         extra_params=extra or None)
        self.scheduler = build_scheduler(self.optimizer, self.cfg["schedule"], self.total_steps)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.device.type == "cuda")
        self.net: torch.nn.Module = self.model
        if self.dist.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=ids, find_unused_parameters=self._has_unused_parameters())

    def _make_criterion(self) -> torch.nn.Module:
        """The training objective (a variant's trainer may add terms); its parameters are optimised."""
        return build_criterion(self.cfg["loss"])

    def _probe_batch(self) -> dict[str, Any]:
        """A one-sample batch in the form :meth:`_forward_loss` takes."""
        return collate_samples([self.train_set[0]])

    def _has_unused_parameters(self) -> bool:
        """Whether the loss leaves some parameters without gradient (heads a recipe does not
        supervise): one probe step on a training sample, before DDP needs to know."""
        loss, _ = self._forward_loss(self._probe_batch(), self.model)
        loss.backward()
        unused = any(p.requires_grad and p.grad is None for p in self.model.parameters())
        self.model.zero_grad(set_to_none=True)
        self.criterion.zero_grad(set_to_none=True)
        return unused

    # ------------------------------------------------------------------ checkpoints
    def _save(self, tag: str, metrics: dict[str, Any] | None = None) -> None:
        if not self.dist.main:
            return
        meta = {"step": self.step, "epoch": self.epoch, "input_size": list(self.input_size),
                "train_config": self.cfg, "metrics": metrics or {}}
        if tag != "last":
            save_model(self.model, self.checkpoints / f"{tag}.safetensors", metadata=meta)
            return
        # the training-state writer saves last.safetensors itself; the sidecar describes it
        save_training_state(self.checkpoints / "last", self.model, self.optimizer, self.scheduler,
                            extra={"step": self.step, "epoch": self.epoch, "position": self.position,
                                   "best": self.best, "criterion": dict(self.criterion.state_dict()),
                                   "scaler": self.scaler.state_dict(), "hooks": self.hooks.state_dict()},
                            weights_metadata={"format": FORMAT})
        write_sidecar(self.model, self.checkpoints / "last", meta)

    def _restore(self) -> None:
        stem = self.checkpoints / "last"
        extra = load_training_state(stem, self.model, self.optimizer, self.scheduler)
        self.step, self.epoch, self.position = int(extra["step"]), int(extra["epoch"]), int(extra["position"])
        self.best = extra.get("best")
        if extra.get("criterion"):
            self.criterion.load_state_dict(extra["criterion"])
        if extra.get("scaler"):
            self.scaler.load_state_dict(extra["scaler"])
        self.hooks.load_state_dict(extra.get("hooks") or {})

    # ------------------------------------------------------------------ loop
    def _loader(self) -> DataLoader:
        self.sampler.set_epoch(self.epoch)
        self.sampler.set_start(self.position)
        self.train_set.set_epoch(self.epoch)
        workers = int(self.cfg["data"]["workers"])
        return DataLoader(self.train_set, batch_size=self.batch_size, sampler=self.sampler, num_workers=workers,
                          collate_fn=collate_samples, drop_last=True, pin_memory=self.device.type == "cuda",
                          persistent_workers=False)

    def fit(self) -> dict[str, Any]:
        """Train to the end (or to ``stop_after``); returns the final validation entry."""
        created = not self.run.exists()
        if self.dist.main:
            self.run.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, self.run / "config.yaml")
        previous = self._catch_interrupt()
        try:
            return self._fit()
        except BaseException:
            # a run that dies before its first checkpoint leaves nothing worth keeping: remove
            # the directory this run created, so that the same command can simply be repeated
            if created and self.dist.main and not (self.checkpoints / "last.state.json").exists():
                shutil.rmtree(self.run, ignore_errors=True)
            raise
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)

    def _catch_interrupt(self) -> Any:
        """First Ctrl-C: finish the current step, save ``last`` and stop (a resumable point);
        a second Ctrl-C interrupts at once. Only in the main thread, where signals arrive."""
        if threading.current_thread() is not threading.main_thread():
            return None
        self._stop_requested = False

        def handler(signum: int, frame: Any) -> None:
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True

        return signal.signal(signal.SIGINT, handler)

    def _fit(self) -> dict[str, Any]:
        self.log = RunLog(self.run, self.step if self.resume else None) if self.dist.main else None
        tcfg = self.cfg["train"]
        last_val: dict[str, Any] = {}
        seen, t0 = 0, time.perf_counter()
        try:
            while self.step < self.total_steps:
                self.net.train()
                for batch in self._loader():
                    self.hooks.before_step(self)
                    loss, parts = self._train_step(batch)
                    self.step += 1
                    self.position += self.labeled_per_batch
                    seen += self.batch_size * self.dist.world
                    self.hooks.after_step(self)
                    if self.step % tcfg["log_every"] == 0 or self.step == self.total_steps:
                        self._log_step(loss, parts, seen / max(time.perf_counter() - t0, 1e-9))
                        seen, t0 = 0, time.perf_counter()
                    elif self.progress is not None and self.dist.main:
                        self.progress({"step": self.step, "total": self.total_steps, "loss": loss,
                                       "lr": self.optimizer.param_groups[0]["lr"]})
                    if self.stop_after is not None and self.step >= self.stop_after:
                        self._save("last")
                        return last_val
                    if getattr(self, "_stop_requested", False):
                        self._save("last")  # the step is complete: resuming continues exactly here
                        raise KeyboardInterrupt
                    if self.step % tcfg["checkpoint_every"] == 0:
                        self._save("last")
                    if self.step >= self.total_steps:
                        break
                # the epoch is over (or the training): validate, then checkpoint
                self.epoch += 1
                self.position = 0
                if self.epoch % tcfg["val_every"] == 0 or self.step >= self.total_steps:
                    last_val = self.validate()
                self._save("last")
        finally:
            if self.log is not None:
                self.log.close()
        return last_val

    def _autocast(self) -> torch.autocast:
        dtype = torch.bfloat16 if self.device.type == "cpu" or torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast(self.device.type, dtype=dtype, enabled=self.amp)

    def _run_net(self, net: torch.nn.Module, images: torch.Tensor, outputs: tuple[str, ...]) -> dict[str, Any]:
        """The network's outputs under autocast, lifted back to float32 for the loss."""
        with self._autocast():
            out = net(images, outputs=outputs)
        out = {k: (v.float() if isinstance(v, torch.Tensor) else v) for k, v in out.items()}
        if "scales" in out:
            out["scales"] = [s.float() for s in out["scales"]]
        if "features" in out:
            out["features"] = {k: v.float() for k, v in out["features"].items()}
        return out

    def _forward_loss(self, batch: dict[str, Any], net: torch.nn.Module) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of one batch (on the device) and its named parts for the log."""
        batch = _to_device(batch, self.device, self.channels_last)
        outputs = self._run_net(net, batch["image"], self.outputs)
        generator = torch.Generator().manual_seed(sample_seed(self.seed, self.step, self.dist.rank))
        return self.criterion(outputs, batch, generator=generator)

    def _train_step(self, batch: dict[str, Any]) -> tuple[float, dict[str, float]]:
        loss, parts = self._forward_loss(batch, self.net)
        extra = self.hooks.extra_loss(self)
        if extra is not None:
            term, logged = extra
            loss = loss + term
            parts = {**parts, **logged}
        if not torch.isfinite(loss):
            raise DataError(f"step {self.step}: the loss is {loss.item()}; lower optim.lr or check the data")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self._average_outside_gradients()
        self.scaler.unscale_(self.optimizer)
        grad_norm = clip_gradients(self.model.parameters(), self.cfg["optim"].get("grad_clip"))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        parts = dict(parts)
        if grad_norm is not None:
            parts["grad_norm"] = float(grad_norm)
        return float(loss.detach()), parts

    def _average_outside_gradients(self) -> None:
        """Under DDP, average the gradients of the optimised parameters that live outside the
        wrapped model (learnable loss weights, mask logits): DDP syncs only the model's, and
        without this every process would drift to its own loss weights or masks."""
        if self.dist.world <= 1:
            return
        inside = {id(p) for p in self.model.parameters()}
        outside = [p for group in self.optimizer.param_groups for p in group["params"]
                   if id(p) not in inside and p.requires_grad]
        if not outside:
            return
        # a parameter without gradient on every rank keeps none (the optimiser then skips it, as
        # it would in one process); one with a gradient on some rank gets zeros on the others
        used = torch.tensor([float(p.grad is not None) for p in outside], device=self.device)
        dist.all_reduce(used)
        for p, n in zip(outside, used.tolist()):
            if n == 0:
                continue
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad)
            p.grad.div_(self.dist.world)

    def _log_step(self, loss: float, parts: dict[str, float], rate: float) -> None:
        lr = self.optimizer.param_groups[0]["lr"]
        values = {"step": self.step, "epoch": self.epoch, "loss": loss, "lr": lr, "images_per_s": rate, **parts}
        if self.log is not None:
            self.log.row(values)
        if self.progress is not None and self.dist.main:
            self.progress({"step": self.step, "total": self.total_steps, "loss": loss, "lr": lr, "rate": rate})

    # ------------------------------------------------------------------ validation
    def validate(self) -> dict[str, Any]:
        """Score the model on the validation set (rank 0), keep the best checkpoint, draw samples."""
        if self.val_set is None or not self.dist.main:
            self._barrier()
            return {}
        dcfg = self.cfg["data"]
        report = evaluate_model(self.model, self.val_set, self.eval_config, self.input_size,
                                batch_size=int(dcfg["val_batch_size"]), flip=bool(self.cfg["eval"]["flip"]),
                                device=self.device, limit=dcfg.get("val_limit"))
        monitor = self.cfg["train"]["monitor"]
        if monitor not in report.metrics:
            raise ConfigError(f"train.monitor {monitor!r} is not a metric; choose one of {', '.join(report.metrics)}")
        value = report.metrics[monitor]
        better = self.best is None or (value > self.best if _HIGHER_IS_BETTER[monitor] else value < self.best)
        if better:
            self.best = value
        entry = {"epoch": self.epoch, "step": self.step, "metrics": report.metrics, "images": report.num_images}
        if self.log is not None:
            self.log.validation(entry, monitor, better)
        if better:
            self._save("best", report.metrics)
        self._draw_samples()
        self.model.train()
        self._barrier()
        return entry

    def _draw_samples(self) -> None:
        n = min(int(self.cfg["train"]["samples"]), len(self.val_set)) if self.val_set is not None else 0
        if n <= 0:
            return
        from slimdepth.visualize import comparison_panel  # lazy: matplotlib loads only when samples are drawn

        rows = []
        samples = [self.val_set[i] for i in range(n)]
        preds = predict_depth(self.model, [s["image"] for s in samples], self.input_size, device=self.device)
        for s, pred in zip(samples, preds):
            rows.append(comparison_panel(s["image"], pred, s.get("depth")))
        width = max(r.shape[1] for r in rows)
        rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
        write_rgb(self.run / "samples" / f"epoch_{self.epoch:03d}.png", np.concatenate(rows, 0))

    def _barrier(self) -> None:
        if self.dist.world > 1:
            dist.barrier()
