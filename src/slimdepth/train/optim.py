"""Optimizers, per-step learning-rate schedules and gradient clipping from config sections.

Optimizer section (``build_optimizer``)::

    name: adamw | sgd            # required
    lr: 1.0e-3                   # required, > 0
    weight_decay: 0.01           # default: torch's (adamw 0.01, sgd 0); conv/linear weights only
    betas: [0.9, 0.999]          # adamw
    eps: 1.0e-8                  # adamw
    amsgrad: false               # adamw
    momentum: 0.9                # sgd (default 0)
    nesterov: false              # sgd, needs momentum > 0 and dampening 0
    dampening: 0                 # sgd
    grad_clip: 1.0               # not used here: the trainer passes it to clip_gradients

Scheduler section (``build_scheduler``), stepped once per optimizer step::

    name: poly | cosine | constant   # required
    warmup_steps: 500                # or warmup_ratio (fraction of total steps), not both
    warmup_start: 0.0                # lr fraction at step 0 of the linear warm-up
    power: 0.9                       # poly
    min_lr_ratio: 0.0                # final lr fraction for poly and cosine

Keys that belong to the other optimizer (``momentum`` with ``adamw``) are ignored, so that
``optim.name=sgd`` can be overridden alone; keys that belong to neither are errors. A key
set to ``None`` counts as not set (its default applies).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from slimdepth.errors import ConfigError
from slimdepth.options import check_number, suggest

__all__ = [
    "DECAY_MODULES",
    "OPTIMIZERS",
    "OPTIMIZER_KEYS",
    "SCHEDULERS",
    "SCHEDULER_KEYS",
    "build_optimizer",
    "build_scheduler",
    "clip_gradients",
    "decay_param_groups",
    "lr_factor",
]

OPTIMIZERS: tuple[str, ...] = ("adamw", "sgd")
SCHEDULERS: tuple[str, ...] = ("poly", "cosine", "constant")
OPTIMIZER_KEYS: tuple[str, ...] = (
    "name", "lr", "weight_decay", "betas", "eps", "amsgrad", "momentum", "nesterov", "dampening", "grad_clip",
)
SCHEDULER_KEYS: tuple[str, ...] = ("name", "warmup_steps", "warmup_ratio", "warmup_start", "power", "min_lr_ratio")
#: modules whose ``weight`` receives weight decay; every other parameter (biases, norm
#: scales and shifts, masks, learnable loss weights) gets none
DECAY_MODULES: tuple[type[nn.Module], ...] = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.Linear, nn.Bilinear,
)
_DEFAULT_WEIGHT_DECAY = {"adamw": 0.01, "sgd": 0.0}

ParamsLike = nn.Module | Iterable[nn.Parameter] | Iterable[Mapping[str, Any]]


# --------------------------------------------------------------------------- value checks


def _section(config: Mapping[str, Any] | None, accepted: Sequence[str], what: str) -> dict[str, Any]:
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise ConfigError(f"{what}: expected a mapping of options, got {type(config).__name__}")
    for key in config:
        if key not in accepted:
            raise ConfigError(f"{what}: unknown option {key!r}{suggest(str(key), accepted, prefix=f'{what}.')}; "
                              f"accepted: {', '.join(accepted)}")
    return {k: v for k, v in config.items() if v is not None}


def _name(cfg: Mapping[str, Any], choices: Sequence[str], what: str) -> str:
    name = cfg.get("name")
    if name is None:
        raise ConfigError(f"{what}.name is required; choose one of {', '.join(choices)}")
    key = str(name).lower()
    if key not in choices:
        raise ConfigError(f"{what}.name: unknown {what} {name!r}{suggest(key, choices)}; choose one of {', '.join(choices)}")
    return key


def _number(cfg: Mapping[str, Any], key: str, what: str, default: float | None = None, *,
            low: float | None = None, high: float | None = None, low_open: bool = False,
            high_open: bool = False) -> float:
    """``cfg[key]`` (or ``default``) checked by :func:`~slimdepth.options.check_number`, named ``what.key``."""
    value = cfg.get(key, default)
    if value is None:
        raise ConfigError(f"{what}.{key} is required")
    return check_number(value, f"{what}.{key}", low=low, high=high, low_open=low_open, high_open=high_open)


def _flag(cfg: Mapping[str, Any], key: str, what: str, default: bool) -> bool:
    value = cfg.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{what}.{key} must be true or false, got {value!r}")
    return value


def _int(cfg: Mapping[str, Any], key: str, what: str, default: int) -> int:
    return check_number(cfg.get(key, default), f"{what}.{key}", integer=True, low=0)


# --------------------------------------------------------------------------- param groups


def decay_param_groups(module: nn.Module, weight_decay: float, name: str = "",
                       exclude: Iterable[nn.Parameter] = ()) -> list[dict[str, Any]]:
    """Split ``module``'s trainable parameters into a decayed and a non-decayed group.

    Only the ``weight`` of :data:`DECAY_MODULES` is decayed. Frozen parameters, parameters
    in ``exclude`` and repeats of a shared parameter are left out; empty groups are dropped.
    Groups are named ``decay``/``no_decay`` (prefixed by ``name.`` when given).
    """
    skip = {id(p) for p in exclude}
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for module_ in module.modules():
        for pname, param in module_.named_parameters(recurse=False):
            if id(param) in skip or not param.requires_grad:
                continue
            skip.add(id(param))
            (decay if pname == "weight" and isinstance(module_, DECAY_MODULES) else no_decay).append(param)
    prefix = f"{name}." if name else ""
    groups = [{"name": f"{prefix}decay", "params": decay, "weight_decay": weight_decay},
              {"name": f"{prefix}no_decay", "params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def _as_groups(source: ParamsLike, what: str) -> list[dict[str, Any]]:
    """Normalise a module, an iterable of parameters or of group dicts into group dicts."""
    if isinstance(source, nn.Module):
        return [{"params": source}]
    if isinstance(source, torch.Tensor):
        raise ConfigError(f"{what}: pass an iterable of parameters, not a single tensor")
    items = list(source)
    if all(isinstance(i, Mapping) for i in items):
        return [dict(i) for i in items]
    if all(isinstance(i, torch.Tensor) for i in items):
        return [{"params": items}]
    raise ConfigError(f"{what}: expected a module, parameters or param-group dicts")


def _expand(groups: list[dict[str, Any]], weight_decay: float, claimed: set[int], what: str) -> list[dict[str, Any]]:
    """Split module groups by decay, drop frozen and already-claimed parameters."""
    out: list[dict[str, Any]] = []
    for i, group in enumerate(groups):
        if "params" not in group:
            raise ConfigError(f"{what}: param group {i} has no 'params'")
        options = {k: v for k, v in group.items() if k != "params"}
        params = group["params"]
        name = str(options.pop("name", "" if what == "model" else f"group{i}"))
        label = f"{what} group {name or i}"
        for key in ("lr", "weight_decay"):
            if key in options:
                options[key] = _number(options, key, label, low=0.0)
        if isinstance(params, nn.Module):
            wd = options.pop("weight_decay", weight_decay)
            parts = decay_param_groups(params, wd, name)
            for part in parts:
                part["params"] = [p for p in part["params"] if id(p) not in claimed]
                claimed.update(id(p) for p in part["params"])
                if part["params"]:
                    out.append({**options, **part})
            continue
        if isinstance(params, torch.Tensor):
            params = [params]
        kept = []
        for p in params:
            if not isinstance(p, torch.Tensor):
                raise ConfigError(f"{what}: param group {name or i} holds a {type(p).__name__}, not a parameter")
            if p.requires_grad and id(p) not in claimed:
                claimed.add(id(p))
                kept.append(p)
        if kept:
            out.append({"name": name or f"group{i}", **options, "params": kept})
    return out


def build_optimizer(model_or_param_groups: ParamsLike, config: Mapping[str, Any],
                    extra_groups: Iterable[Mapping[str, Any]] | None = None, *,
                    extra_params: Iterable[torch.Tensor] | None = None,
                    section: str = "optim") -> torch.optim.Optimizer:
    """Build AdamW or SGD from an optimizer config section (see the module docstring).

    ``model_or_param_groups`` is a module (split by :func:`decay_param_groups`), an
    iterable of parameters (one group), or param-group dicts whose ``params`` is a module
    (split likewise) or parameters (one group, used as given). Group dicts may override
    ``lr``, ``weight_decay`` and other optimizer options and carry a ``name``.

    ``extra_groups`` are more group dicts, e.g. ``{"name": "loss_weights", "params":
    loss.weighting, "lr": 1e-2}``; their parameters are taken out of the main groups, so a
    sub-module of the model can get its own settings. ``extra_params`` is a shorthand for
    parameters outside the model (e.g. learnable loss weights): one group named ``extra``
    with the config's lr and no weight decay. Frozen parameters are left out. ``section``
    is the config key named in error messages.
    """
    what = section
    cfg = _section(config, OPTIMIZER_KEYS, what)
    if "grad_clip" in cfg:
        _number(cfg, "grad_clip", what, low=0.0, low_open=True)
    name = _name(cfg, OPTIMIZERS, what)
    lr = _number(cfg, "lr", what, low=0.0, low_open=True)
    weight_decay = _number(cfg, "weight_decay", what, _DEFAULT_WEIGHT_DECAY[name], low=0.0)
    extra = [] if extra_groups is None else _as_groups(extra_groups, "extra_groups")
    if extra_params is not None:
        extra.append({"name": "extra", "params": list(extra_params), "weight_decay": 0.0})
    claimed: set[int] = set()
    groups = _expand(extra, weight_decay, claimed, "extra_groups")
    main = _expand(_as_groups(model_or_param_groups, "model"), weight_decay, claimed, "model")
    groups = main + groups
    if not groups:
        raise ConfigError(f"{what}: no trainable parameters to optimize (all frozen?)")
    try:
        if name == "adamw":
            betas = cfg.get("betas", (0.9, 0.999))
            if (not isinstance(betas, (list, tuple)) or len(betas) != 2
                    or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0.0 <= b < 1.0 for b in betas)):
                raise ConfigError(f"{what}.betas must be two numbers in [0, 1), got {betas!r}")
            return torch.optim.AdamW(
                groups, lr=lr, betas=(float(betas[0]), float(betas[1])),
                eps=_number(cfg, "eps", what, 1e-8, low=0.0, low_open=True),
                weight_decay=weight_decay, amsgrad=_flag(cfg, "amsgrad", what, False),
            )
        momentum = _number(cfg, "momentum", what, 0.0, low=0.0, high=1.0, high_open=True)
        dampening = _number(cfg, "dampening", what, 0.0, low=0.0, high=1.0)
        nesterov = _flag(cfg, "nesterov", what, False)
        if nesterov and (momentum == 0.0 or dampening != 0.0):
            raise ConfigError(f"{what}.nesterov needs momentum > 0 and dampening 0, "
                              f"got momentum {momentum:g} and dampening {dampening:g}")
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, dampening=dampening,
                               weight_decay=weight_decay, nesterov=nesterov)
    except (ValueError, TypeError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{what}: {exc}") from None


# --------------------------------------------------------------------------- schedules


def lr_factor(step: int, *, total_steps: int, warmup_steps: int = 0, warmup_start: float = 0.0,
              name: str = "constant", power: float = 0.9, min_lr_ratio: float = 0.0) -> float:
    """Multiplier of the base lr for the optimizer step ``step`` (0-based).

    Warm-up (``step < warmup_steps``): ``warmup_start + (1 - warmup_start) * step / warmup_steps``.
    Afterwards, with ``p = (step - warmup_steps) / (total_steps - warmup_steps)`` clamped to
    [0, 1] and ``m = min_lr_ratio``: poly ``m + (1 - m) * (1 - p) ** power``, cosine
    ``m + (1 - m) * (1 + cos(pi * p)) / 2``, constant ``1``.
    """
    if step < warmup_steps:
        return warmup_start + (1.0 - warmup_start) * step / warmup_steps
    if name == "constant":
        return 1.0
    p = min(1.0, max(0.0, (step - warmup_steps) / max(1, total_steps - warmup_steps)))
    if name == "poly":
        shape = (1.0 - p) ** power
    elif name == "cosine":
        shape = 0.5 * (1.0 + math.cos(math.pi * p))
    else:
        raise ConfigError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULERS)}")
    return min_lr_ratio + (1.0 - min_lr_ratio) * shape


def build_scheduler(optimizer: torch.optim.Optimizer, config: Mapping[str, Any],
                    total_steps: int, *, section: str = "schedule") -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step :class:`~torch.optim.lr_scheduler.LambdaLR` following :func:`lr_factor`.

    Call ``scheduler.step()`` after every ``optimizer.step()``; the lr of the first step
    is ``base_lr * warmup_start`` (or ``base_lr`` without warm-up). The schedule's settings
    are not part of the scheduler's ``state_dict`` (only its position is), so a resumed run
    follows the config it is given. ``section`` is the config key named in error messages.
    """
    what = section
    cfg = _section(config, SCHEDULER_KEYS, what)
    name = _name(cfg, SCHEDULERS, what)
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ConfigError(f"{what}: total_steps must be a positive integer, got {total_steps!r}")
    if "warmup_steps" in cfg and "warmup_ratio" in cfg:
        raise ConfigError(f"{what}: give warmup_steps or warmup_ratio, not both (set the other to null)")
    if "warmup_ratio" in cfg:
        ratio = _number(cfg, "warmup_ratio", what, low=0.0, high=1.0, high_open=True)
        warmup_steps = int(round(ratio * total_steps))
    else:
        warmup_steps = _int(cfg, "warmup_steps", what, 0)
    if warmup_steps > total_steps:
        raise ConfigError(f"{what}.warmup_steps ({warmup_steps}) exceeds the total number of steps ({total_steps}); "
                          f"lower it, e.g. --set {what}.warmup_steps={max(0, total_steps // 10)}")
    schedule = functools.partial(
        lr_factor,
        total_steps=total_steps,
        warmup_steps=warmup_steps,
        warmup_start=_number(cfg, "warmup_start", what, 0.0, low=0.0, high=1.0),
        name=name,
        power=_number(cfg, "power", what, 0.9, low=0.0, low_open=True),
        min_lr_ratio=_number(cfg, "min_lr_ratio", what, 0.0, low=0.0, high=1.0),
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


# --------------------------------------------------------------------------- clipping


def clip_gradients(parameters: nn.Module | Iterable[torch.Tensor], max_norm: float | None,
                   norm_type: float = 2.0) -> torch.Tensor:
    """Clip gradients to a total ``norm_type`` norm of ``max_norm`` and return the norm
    before clipping (a 0-d tensor, so no device sync is forced; 0 when no grads exist).

    ``max_norm=None`` only measures the norm. With AMP, unscale the gradients first
    (``scaler.unscale_(optimizer)``). A non-finite norm is returned as is (no clipping
    error), so the caller can skip the step.
    """
    params = list(parameters.parameters() if isinstance(parameters, nn.Module) else parameters)
    grads = [p.grad for p in params if p.grad is not None]
    if max_norm is not None:
        if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float)) or not max_norm > 0:
            raise ConfigError(f"gradient clipping max_norm must be a positive number or None, got {max_norm!r}")
    if not grads:
        return torch.zeros(())
    if max_norm is None:
        return torch.nn.utils.get_total_norm(grads, norm_type=norm_type)
    return torch.nn.utils.clip_grad_norm_(params, float(max_norm), norm_type=norm_type)
