"""``slimdepth prune``: compress a trained checkpoint to a MACs or latency budget, resumably.

Every method gets the same number of optimisation steps (``steps``), so their results compare
fairly at equal MACs:

* ``masks`` (method 1): learnable binary masks on every prunable channel group. Warm-up
  (``warmup_frac`` of the steps: masks on, not learned) -> joint training of weights and masks
  with the compression loss (``joint_frac``; its budget falls from 1 to the target over
  ``ramp_frac`` of it) -> the masks are made to fit the budget
  (:meth:`MaskSet.meet_target`) and frozen -> the masked filters are removed for real ->
  fine-tuning for the remaining steps.
* ``gating`` (method 2): dynamic channel gating on the ResNet bottlenecks (and any named
  conv); the density is chosen so that the MACs *executed* at batch 1 meet the budget, then the
  network and its saliency predictors are trained with the depth loss plus an L1 penalty.
* ``magnitude`` / ``uniform``: L1-norm filter pruning with global ranking, or uniform width
  scaling, to the budget -> fine-tuning for all the steps.

A prune run directory holds ``prune.json`` (settings, recipe, source, per-stage reports and the
final summary), ``masks/`` (the joint mask-training run, method 1 only), ``pruned.safetensors``
(+ JSON: the pruned network before fine-tuning) and, at its top level, the fine-tuning run
itself: ``checkpoints/best.safetensors`` is the final model, so ``slimdepth compare RUN``,
``slimdepth evaluate RUN`` and ``slimdepth.load(RUN)`` use it directly. Every stage checkpoints;
``resume`` continues the stage that was running.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimdepth.compress.baselines import filter_importance, magnitude_prune, uniform_prune
from slimdepth.compress.gating import (
    add_gating,
    check_density,
    density_for_target,
    executed_macs,
    gating_config,
    gating_l1,
    is_gated,
)
from slimdepth.compress.graph import channel_groups
from slimdepth.compress.latency_cost import LatencyCost
from slimdepth.compress.latency_prune import check_budget, choose_baseline, choose_masks, meet_budget
from slimdepth.compress.latency_table import LatencyTable, build_latency_table
from slimdepth.compress.masks import MaskSet, attach_masks
from slimdepth.data.registry import build_dataset
from slimdepth.deploy.cost import count_macs
from slimdepth.deploy.layer_timing import check_latency_runtime
from slimdepth.errors import ConfigError, DataError
from slimdepth.fileio import atomic_path, read_json
from slimdepth.loader import load_model
from slimdepth.models.checkpoint import model_input_size, read_sidecar, resolve_checkpoint, save_model
from slimdepth.options import check_number, check_threads, parse_size
from slimdepth.progress import progress_bar
from slimdepth.train.run import resolve_config
from slimdepth.train.trainer import Trainer, TrainHooks

__all__ = ["METHODS", "Interrupted", "PruneSettings", "checkpoint_recipe", "prune_checkpoint", "prune_recipe",
           "read_prune_state", "run_prune", "start_prune"]

METHODS = ("masks", "gating", "magnitude", "uniform")
STATE_FILE = "prune.json"
PRUNED = "pruned"  # RUN/pruned.safetensors: the network right after removal, before fine-tuning


@dataclass
class PruneSettings:
    """What to do. ``target_macs`` is the fraction of the source's MACs to keep (0.4 = 40%)."""

    method: str
    target_macs: float | None = None
    steps: int = 500
    # a latency budget instead of a MACs one (masks, magnitude, uniform)
    target_latency: float | None = None  # milliseconds, batch 1, on `runtime` at `latency_size`
    runtime: str = "ort"
    latency_size: list[int] | None = None  # None: the training size
    latency_table: str | None = None  # a table measured before (else measured into RUN/latency_table.json)
    threads: int = 2
    max_tries: int = 4
    align: int = 8  # channel counts kept in multiples of this (the runtime's fast widths)
    # method 1
    warmup_frac: float = 0.1
    joint_frac: float = 0.4
    mask_init: str = "magnitude"  # initial logits: spread by L1 importance, or "constant" (all equal)
    ramp_frac: float = 0.5  # share of the joint steps over which the budget falls from 1 to the target
    mask_lr: float = 0.05
    compression_weight: float = 2.0  # 0 switches the compression loss off (masking alone)
    cost: str = "macs"  # what the compression loss budgets: "macs" or "params"
    estimate: str = "binary"  # price the binary masks (straight-through) or the expected cost
    # method 2
    gate_layers: list[str] = field(default_factory=lambda: ["bottlenecks"])
    l1_weight: float = 0.01
    density: float | None = None  # None: chosen to meet target_macs
    densities: dict[str, float] = field(default_factory=dict)  # per-layer overrides (conv name or dotted prefix)

    def check(self) -> None:
        """Raise a one-line :class:`ConfigError` for an impossible setting."""
        if self.method not in METHODS:
            raise ConfigError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if (self.target_macs is None) == (self.target_latency is None):
            raise ConfigError("give one budget: --target-macs (a fraction of the MACs) or --target-latency (milliseconds)")
        if self.target_macs is not None:
            check_number(self.target_macs, "--target-macs (the fraction of MACs to keep)", low=0, low_open=True, high=1,
                         expected="in (0, 1]")
        else:
            check_number(self.target_latency, "--target-latency (milliseconds)", low=0, low_open=True)
            if self.method == "gating":
                raise ConfigError("--target-latency is for masks, magnitude and uniform: a gated network is not "
                                  "exported, so no runtime can time it; use --target-macs with gating")
            check_latency_runtime(self.runtime)
            if self.latency_size is not None:
                self.latency_size = list(parse_size(self.latency_size, "--size"))
            check_threads(self.threads)
            check_number(self.max_tries, "--max-tries", integer=True, low=1, high=20)
            check_number(self.align, "--align", integer=True, low=1, high=128)
        check_number(self.steps, "--steps", integer=True, low=1)
        for name in ("warmup_frac", "joint_frac", "ramp_frac"):
            check_number(getattr(self, name), "--" + name.replace("_", "-"), low=0, high=1)
        check_number(self.mask_lr, "--mask-lr", low=0, low_open=True)
        check_number(self.compression_weight, "--compression-weight", low=0)
        check_number(self.l1_weight, "--l1-weight", low=0)
        if not (self.warmup_frac < 1.0 and self.joint_frac < 1.0 and self.warmup_frac + self.joint_frac < 1.0):
            raise ConfigError("--warmup-frac and --joint-frac must be >= 0 and leave steps for fine-tuning (sum < 1)")
        if self.method == "masks" and self.joint_steps < 1:
            raise ConfigError(f"--steps {self.steps} x --joint-frac {self.joint_frac} leaves no step to learn the masks")
        if self.mask_init not in ("magnitude", "constant"):
            raise ConfigError(f"--mask-init must be 'magnitude' or 'constant', got {self.mask_init!r}")
        if self.cost not in ("macs", "params"):
            raise ConfigError(f"--cost must be 'macs' or 'params', got {self.cost!r}")
        if self.estimate not in ("binary", "expected"):
            raise ConfigError(f"--estimate must be 'binary' or 'expected', got {self.estimate!r}")
        if self.density is not None:
            check_density(self.density, "--density")
        for name, value in self.densities.items():
            check_density(value, f"--densities: {name}")
        if not self.gate_layers:
            raise ConfigError("--gate-layers names no layer")

    @property
    def warmup_steps(self) -> int:
        return int(round(self.steps * self.warmup_frac)) if self.method == "masks" else 0

    @property
    def joint_steps(self) -> int:
        return int(round(self.steps * self.joint_frac)) if self.method == "masks" else 0

    @property
    def finetune_steps(self) -> int:
        return self.steps - self.warmup_steps - self.joint_steps

    @property
    def cost_kind(self) -> str:
        """What the masks' compression loss prices: ``latency`` under a latency budget, else ``cost``."""
        return "latency" if self.target_latency is not None else self.cost

    def mask_budget(self, step: int, target: float | None = None) -> float:
        """The masks' budget at ``step``: 1 until the joint phase, then linearly down to the
        target over ``ramp_frac`` of the joint steps, then the target. With the spread initial
        logits (``mask_init``) the hard cost can then track the budget, channels leaving a few
        at a time while the depth loss still reorders them, rather than in one jump."""
        ramp = self.ramp_frac * self.joint_steps
        done = 1.0 if ramp <= 0 else min(1.0, max(0.0, (step - self.warmup_steps + 1) / ramp))
        goal = self.target_macs if target is None else target
        assert goal is not None, "a latency budget's ratio is given by the run"
        return 1.0 - (1.0 - goal) * done

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PruneSettings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# --------------------------------------------------------------------------------------------
# training hooks of the two learned methods


class MaskHooks(TrainHooks):
    """Method 1 inside the trainer: mask logits in the optimiser, warm-up, compression loss."""

    def __init__(self, masks: MaskSet, settings: PruneSettings, target: float | None = None) -> None:
        self.masks = masks
        self.settings = settings
        self.target = target  # the budget as a share of the full cost (a latency budget's ratio)

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"name": "masks", "params": list(self.masks.logits), "lr": self.settings.mask_lr, "weight_decay": 0.0}]

    def before_step(self, trainer: Trainer) -> None:
        self.masks.learning = trainer.step >= self.settings.warmup_steps

    def extra_loss(self, trainer: Trainer) -> tuple[torch.Tensor, dict[str, float]]:
        s = self.settings
        budget = s.mask_budget(trainer.step, self.target)
        kind = s.cost_kind
        if self.masks.learning and s.compression_weight > 0:
            term = s.compression_weight * self.masks.compression_loss(budget, kind, s.estimate)
        else:
            term = torch.zeros((), device=self.masks.logits[0].device)
        return term, {"compression": float(term.detach()), "budget": budget,
                      "expected_ratio": self.masks.cost_ratio(kind),
                      "mask_ratio": self.masks.cost_ratio(kind, hard=True)}

    def state_dict(self) -> dict[str, Any]:
        return {"logits": [lg.detach().cpu().clone() for lg in self.masks.logits]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("logits")
        if saved is None:
            return
        if len(saved) != len(self.masks.logits) or any(a.shape != b.shape for a, b in zip(saved, self.masks.logits)):
            raise DataError("the saved mask logits do not match the model's channel groups")
        with torch.no_grad():
            for lg, value in zip(self.masks.logits, saved):
                lg.copy_(value)


class GatingHooks(TrainHooks):
    """Method 2 inside the trainer: the L1 penalty on the saliency predictions."""

    def __init__(self, model: nn.Module, weight: float) -> None:
        self.model = model
        self.weight = weight

    def extra_loss(self, trainer: Trainer) -> tuple[torch.Tensor, dict[str, float]]:
        l1 = gating_l1(self.model)
        return self.weight * l1, {"saliency_l1": float(l1.detach())}


# --------------------------------------------------------------------------------------------
# the run directory and its state


def read_prune_state(run: Path) -> dict[str, Any]:
    """``RUN/prune.json`` as a dict (a clear error when it is missing or corrupt)."""
    path = Path(run) / STATE_FILE
    if not path.is_file():
        raise ConfigError(f"{run}: not a prune run (no {STATE_FILE})")
    state = read_json(path, "prune state")
    if not isinstance(state, dict) or "settings" not in state or "recipe" not in state:
        raise DataError(f"{path}: not a slimdepth prune state")
    return state


def _write_state(run: Path, state: dict[str, Any]) -> None:
    with atomic_path(run / STATE_FILE) as tmp:
        tmp.write_text(json.dumps(state, indent=2, default=float) + "\n")


#: the largest share of a stage's steps that its learning-rate warm-up may take (see _stage_config)
STAGE_WARMUP_SHARE = 0.05


def stage_warmup(schedule: dict[str, Any], steps: int) -> dict[str, Any]:
    """The recipe's schedule with its warm-up scaled to a stage of ``steps`` steps.

    A recipe's ``warmup_steps`` is sized for training from scratch (100 of the quickstart's
    1875 steps); a prune stage of 120 steps would spend most of itself warming up from a
    network that is already trained. The warm-up is capped at :data:`STAGE_WARMUP_SHARE` of
    the stage (at least one step when the recipe warms up at all); ``warmup_ratio`` is a share
    already and is capped the same way."""
    schedule = dict(schedule)
    if schedule.get("warmup_ratio") is not None:
        schedule["warmup_ratio"] = min(float(schedule["warmup_ratio"]), STAGE_WARMUP_SHARE)
    elif schedule.get("warmup_steps"):
        cap = max(1, int(round(STAGE_WARMUP_SHARE * steps)))
        schedule["warmup_steps"] = min(int(schedule["warmup_steps"]), cap, int(steps))
    return schedule


def _stage_config(recipe: dict[str, Any], steps: int, validate: bool = True) -> dict[str, Any]:
    cfg = copy.deepcopy(recipe)
    cfg["train"]["steps"] = int(steps)  # overrides train.epochs
    cfg["schedule"] = stage_warmup(cfg.get("schedule") or {}, int(steps))
    if not validate:  # the masked network of the joint phase is not the result: no validation
        cfg["data"]["val"] = None
        cfg["train"]["samples"] = 0
    return cfg


def _has_last(run: Path) -> bool:
    return (run / "checkpoints" / "last.state.json").is_file()


def _macs(model: nn.Module, size: tuple[int, int]) -> int:
    return count_macs(model, size).total


# --------------------------------------------------------------------------------------------
# stages


FitFn = Callable[[Trainer, str], dict[str, Any]]


def _plain_fit(trainer: Trainer, label: str) -> dict[str, Any]:
    return trainer.fit()


class Interrupted(Exception):
    """A stage stopped before its last step (``stop_after``); the run can be resumed."""


def _train_stage(cfg: dict[str, Any], run: Path, model: nn.Module, hooks: TrainHooks | None, fit: FitFn,
                 label: str, stop_after: int | None) -> Trainer:
    trainer = Trainer(cfg, run, resume=_has_last(run), stop_after=stop_after, model=model, hooks=hooks)
    if trainer.step < trainer.total_steps:
        fit(trainer, label)
    if trainer.step < trainer.total_steps:
        raise Interrupted(f"{label} stopped at step {trainer.step} of {trainer.total_steps}")
    return trainer


def _save_pruned(run: Path, model: nn.Module, size: tuple[int, int], recipe: dict[str, Any], report: dict[str, Any]) -> None:
    save_model(model, run / f"{PRUNED}.safetensors",
               metadata={"input_size": list(size), "train_config": recipe, "prune": report})


def _load_pruned(run: Path) -> nn.Module:
    return load_model(run / f"{PRUNED}.safetensors")


def _masks_stage(source: nn.Module, settings: PruneSettings, recipe: dict[str, Any], run: Path, size: tuple[int, int],
                 fit: FitFn, stop_after: int | None, table: LatencyTable | None = None,
                 say: Callable[[str], None] = print) -> dict[str, Any]:
    """Warm-up + joint mask training in RUN/masks, then budget, freeze and removal. With a
    latency ``table`` the masks are priced in predicted milliseconds and the budget is met by
    measuring the exported network (:func:`~slimdepth.compress.latency_prune.meet_budget`)."""
    source_copy = copy.deepcopy(source).eval() if table is not None else None  # the unpruned reference
    model = source.train()
    groups = channel_groups(model, size)
    if not groups:
        raise ConfigError("the model has no prunable channel groups")
    resuming = _has_last(run / "masks")  # the saved logits replace any initial ones
    scores = filter_importance(model, size) if settings.mask_init == "magnitude" and not resuming else None
    masks = attach_masks(model, groups)
    target = settings.target_macs
    if table is not None:
        masks.latency = LatencyCost(table, masks.cost)
        target = min(1.0, float(settings.target_latency) / masks.latency.full_ms)
    else:
        floor = masks.floor_ratio(settings.cost)
        if floor > settings.target_macs:  # before any training: the budget fit would refuse it at the end
            raise ConfigError(f"--target-macs {settings.target_macs:g} cannot be met: with one channel per prunable "
                              f"group the model still costs {floor:.3f} of its {settings.cost}")
    if scores is not None:
        masks.init_from_importance(scores)
    hooks = MaskHooks(masks, settings, target)
    cfg = _stage_config(recipe, settings.warmup_steps + settings.joint_steps, validate=False)
    _train_stage(cfg, run / "masks", model, hooks, fit, "warm-up + joint masks", stop_after)
    before = masks.hard_macs() / masks.original_macs
    report: dict[str, Any] = {"groups": len(groups), "mask_ratio_after_training": before}
    if table is not None:
        report["mask_latency_after_training_ms"] = masks.cost_ratio("latency", hard=True) * masks.latency.full_ms
        learned = [lg.detach().clone() for lg in masks.logits]
        model.eval()

        def choose(target_ms: float) -> tuple[nn.Module, dict[str, Any]]:
            with torch.no_grad():
                for lg, value in zip(masks.logits, learned):
                    lg.copy_(value)
            info = choose_masks(masks, masks.latency, target_ms)
            return masks.apply(model), info

        pruned, report["latency"] = meet_budget(choose, table, float(settings.target_latency), source_copy,
                                                settings.max_tries, log=say)
        masks.freeze()
    else:
        # with the compression loss off (masking alone) the masks stay as learned: no budget fit
        shift = masks.meet_target(settings.target_macs, settings.cost) if settings.compression_weight > 0 else 0.0
        masks.freeze()
        report["threshold_shift"] = shift
        pruned = masks.apply(model.eval())
    report["channels_kept"] = {k: list(v) for k, v in masks.summary().items()}
    report["model"] = pruned
    return report


def _baseline_stage(source: nn.Module, settings: PruneSettings, size: tuple[int, int],
                    table: LatencyTable | None = None, say: Callable[[str], None] = print) -> dict[str, Any]:
    if table is not None:
        def choose(target_ms: float) -> tuple[nn.Module, dict[str, Any]]:
            return choose_baseline(source, settings.method, table, target_ms, size)

        pruned, latency = meet_budget(choose, table, float(settings.target_latency), source.eval(), settings.max_tries,
                                      log=say)
        return {"latency": latency, "model": pruned}
    prune = magnitude_prune if settings.method == "magnitude" else uniform_prune
    pruned, report = prune(source.eval(), settings.target_macs, size)
    return {"setting": report.setting, "achieved_ratio": report.achieved_ratio,
            "channels_kept": {k: list(v) for k, v in report.group_widths.items()}, "model": pruned}


LATENCY_TABLE = "latency_table.json"  # RUN/latency_table.json: the table a latency budget was met with


def _latency_table(run: Path, source: nn.Module, settings: PruneSettings, size: tuple[int, int],
                   say: Callable[[str], None], source_name: str = "") -> LatencyTable:
    """The latency table of the source network on the budget's runtime and size: the one given,
    the one this run measured before, or measured now into ``RUN/latency_table.json``."""
    deploy = tuple(settings.latency_size or size)
    path = Path(settings.latency_table) if settings.latency_table else run / LATENCY_TABLE
    if path.is_file():
        table = LatencyTable.load(path)
        if table.runtime != settings.runtime or tuple(table.size) != deploy:
            raise ConfigError(f"{path}: the latency table is for {table.runtime} at {table.size[0]}x{table.size[1]}, "
                              f"not {settings.runtime} at {deploy[0]}x{deploy[1]}")
    elif settings.latency_table:
        raise DataError(f"{path}: no such latency table")
    else:
        say(f"measuring the latency table on {settings.runtime} at {deploy[0]}x{deploy[1]} ({settings.threads} threads)")
        with progress_bar("timing layers", "layers") as update:
            table = build_latency_table(source, settings.runtime, deploy, settings.threads, settings.align,
                                        name=str(source_name), log=say, progress=update)
        table.save(path)
    if table.threads != settings.threads:
        raise ConfigError(f"{path}: the latency table was measured with {table.threads} threads, the budget is for "
                          f"{settings.threads}; pass --threads {table.threads} or measure a table with --threads "
                          f"{settings.threads}")
    # a table fixes its channel multiple (settings.align only says what a table measured here uses)
    check_budget(LatencyCost.of_model(table, source, size), float(settings.target_latency))
    return table


def _gated_model(source: nn.Module, settings: PruneSettings, density: float) -> nn.Module:
    layers = settings.gate_layers[0] if settings.gate_layers == ["bottlenecks"] else list(settings.gate_layers)
    return add_gating(source, density, layers, densities=settings.densities or None)


# --------------------------------------------------------------------------------------------
# the whole schedule


def checkpoint_recipe(ckpt: Path) -> dict[str, Any] | None:
    """The training recipe a checkpoint's sidecar records, if any."""
    meta = read_sidecar(ckpt).get("metadata") or {}
    recipe = meta.get("train_config")
    return recipe if isinstance(recipe, dict) else None


def start_prune(ckpt: Path, settings: PruneSettings, run: Path, recipe: dict[str, Any]) -> dict[str, Any]:
    """Create the run directory and its ``prune.json`` (refuses a non-empty directory)."""
    settings.check()
    if run.exists() and not run.is_dir():
        raise ConfigError(f"{run}: exists and is not a directory; choose another --out")
    if run.exists() and any(run.iterdir()):
        raise ConfigError(f"{run}: exists and is not empty; pass --resume to continue it or choose another --out")
    run.mkdir(parents=True, exist_ok=True)
    state = {"source": str(Path(ckpt).resolve()), "settings": asdict(settings), "recipe": recipe, "stages": {}, "status": "running"}
    _write_state(run, state)
    return state


def prune_recipe(checkpoint: str | Path, data: str | None = None, val: str | None = None, config: Path | None = None,
                 overrides: Sequence[str] = ()) -> tuple[Path, dict[str, Any]]:
    """The checkpoint to compress and the training recipe of its stages: the one the checkpoint
    was trained with (or ``config``), with ``overrides`` and the ``data``/``val`` specs applied.
    The datasets are built once here, so a bad spec fails now, with the reader's message."""
    ckpt = resolve_checkpoint(checkpoint)
    base = checkpoint_recipe(ckpt) if config is None else None
    if config is None and base is None:
        raise ConfigError(f"{ckpt}: records no training recipe; pass --config RECIPE.yaml")
    recipe = resolve_config(config, list(overrides), base)
    if data is not None:
        recipe["data"]["train"] = data
    if val is not None:
        recipe["data"]["val"] = val or None
    for spec in (recipe["data"]["train"], recipe["data"].get("val")):
        if spec:
            build_dataset(spec)
    return ckpt, recipe


def prune_checkpoint(checkpoint: str | Path, settings: PruneSettings, out: Path, *, data: str | None = None,
                     val: str | None = None, config: Path | None = None, overrides: Sequence[str] = (),
                     fit: FitFn | None = None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """``slimdepth prune``: start a prune run in ``out`` and run it to the end (see :func:`run_prune`).

    A run that fails before its first checkpoint leaves nothing worth keeping: the directory it
    created is removed, so the same call can simply be repeated.
    """
    settings.check()
    ckpt, recipe = prune_recipe(checkpoint, data, val, config, overrides)
    start_prune(ckpt, settings, out, recipe)
    if log is not None:
        log(f"prune run: {out}")
    try:
        return run_prune(out, fit=fit, log=log)
    except BaseException:
        if not any(out.rglob("last.state.json")) and not (out / f"{PRUNED}.safetensors").exists():
            shutil.rmtree(out, ignore_errors=True)
        raise


def run_prune(run: Path, fit: FitFn | None = None, stop_after: int | None = None,
              log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or continue) the schedule recorded in ``RUN/prune.json``; returns the final state.

    ``fit(trainer, label)`` runs one training stage (default: plain ``trainer.fit()``; the CLI
    passes one with a progress bar). ``stop_after`` stops each stage after that many of its
    steps (simulates a killed run: :class:`Interrupted` is raised, and a later call resumes).
    """
    fit = fit or _plain_fit
    say = log or (lambda _msg: None)
    run = Path(run)
    state = read_prune_state(run)
    settings = PruneSettings.from_dict(state["settings"])
    settings.check()
    recipe = state["recipe"]
    stages: dict[str, Any] = state.setdefault("stages", {})
    source = load_model(state["source"])
    if is_gated(source):
        raise ConfigError(f"{state['source']}: the source is a gated model; prune its ungated original instead")
    size = tuple(state.get("input_size") or _recipe_size(recipe, source))
    state["input_size"] = list(size)
    original_macs = _macs(source, size)
    state["original_macs"] = original_macs

    if settings.method == "gating":
        if "gating" not in stages:
            density = settings.density
            if density is None:
                probe = _gated_model(copy.deepcopy(source), settings, 0.5)
                density, ratio = density_for_target(probe, settings.target_macs, size)
                say(f"gating density {density:.3f}: executes {ratio:.3f} of the dense MACs at batch 1")
            stages["gating"] = {"density": density}
            _write_state(run, state)
        model = _gated_model(source, settings, float(stages["gating"]["density"]))
        trainer = _train_stage(_stage_config(recipe, settings.steps), run, model, GatingHooks(model, settings.l1_weight),
                               fit, "gated training", stop_after)
        final = load_model(run)
        with torch.no_grad():
            macs = executed_macs(final, size)
        result = {"macs": macs["executed_macs"], "dense_macs": macs["dense_macs"], "gating": gating_config(final)}
    else:
        if PRUNED not in stages:
            table = (_latency_table(run, source, settings, size, say, state['source'])
                     if settings.target_latency is not None else None)
            if settings.method == "masks":
                say(f"learning masks: {settings.warmup_steps} warm-up + {settings.joint_steps} joint steps")
                report = _masks_stage(source, settings, recipe, run, size, fit, stop_after, table, say)
            else:
                report = _baseline_stage(source, settings, size, table, say)
            pruned = report.pop("model")
            report["macs"] = _macs(pruned, size)
            report["ratio"] = report["macs"] / original_macs
            _save_pruned(run, pruned, size, recipe, {k: v for k, v in report.items() if k != "channels_kept"})
            stages[PRUNED] = report
            _write_state(run, state)
            say(f"pruned to {report['ratio']:.3f} of the MACs; fine-tuning {settings.finetune_steps} steps")
        pruned = _load_pruned(run).train()
        trainer = _train_stage(_stage_config(recipe, settings.finetune_steps), run, pruned, None, fit,
                               "fine-tuning", stop_after)
        result = {"macs": _macs(trainer.model, size)}
        if "latency" in stages[PRUNED]:  # fine-tuning changes weights, not widths: the measured network ships
            result["latency"] = {k: v for k, v in stages[PRUNED]["latency"].items() if k != "tries"}
    result["ratio"] = result["macs"] / original_macs
    result["params"] = sum(p.numel() for p in trainer.model.parameters())
    result["validation"] = trainer.log.metrics.get("best") if trainer.log is not None else None
    if result["validation"] is None and (run / "metrics.json").is_file():
        result["validation"] = json.loads((run / "metrics.json").read_text()).get("best")
    state["result"] = result
    state["status"] = "done"
    _write_state(run, state)
    return state


def _recipe_size(recipe: dict[str, Any], model: nn.Module) -> tuple[int, int]:
    """The input size the stages train and count at: the recipe's ``data.size``, else the checkpoint's."""
    if recipe.get("data", {}).get("size"):
        return parse_size(recipe["data"]["size"], "data.size")
    size = model_input_size(model)
    if size is None:
        raise ConfigError("the recipe has no data.size and the checkpoint records no input size; pass --set data.size=HxW")
    return size
