"""The training objective built from a recipe: weighted depth terms over scales, plus segmentation.

The depth terms are registered by name in :data:`LOSS_TERMS` (the loss functions of
:mod:`~slimdepth.losses.depth` and :mod:`~slimdepth.losses.structure`); :func:`build_criterion`
checks a recipe's ``loss`` entry against them and returns a :class:`DepthCriterion`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slimdepth.errors import ConfigError, DataError
from slimdepth.labels import IGNORE_LABEL
from slimdepth.losses.common import as_float, zero_loss
from slimdepth.losses.depth import berhu, log_berhu, robust_loss, silog
from slimdepth.losses.road import road_loss
from slimdepth.losses.segmentation import segmentation_loss
from slimdepth.losses.structure import gradient_loss, virtual_normal_loss
from slimdepth.losses.weighting import LearnableLossWeights
from slimdepth.options import check_number, suggest
from slimdepth.registry import Registry

__all__ = ["LOSS_FUNCTIONS", "LOSS_TERMS", "DepthCriterion", "TermSpec", "build_criterion", "split_term"]

#: depth loss functions by config ``type`` (the caller supplies the maps, mask, K and generator)
LOSS_TERMS = Registry("loss type", reserved=("pred", "gt", "mask", "K", "generator"))
for _name, _loss in (("silog", silog), ("berhu", berhu), ("log_berhu", log_berhu), ("gradient", gradient_loss),
                     ("virtual_normal", virtual_normal_loss), ("robust", robust_loss)):
    LOSS_TERMS.add(_name, _loss, (_loss.__doc__ or "").strip().splitlines()[0])
#: the same, as a plain mapping
LOSS_FUNCTIONS: dict[str, Any] = {name: LOSS_TERMS.get(name) for name in LOSS_TERMS}

_TOP_KEYS = {"terms", "learnable_weights", "scale_weights", "seg_weights", "seg", "road_weight"}
_SEG_KEYS = {"ignore_index", "class_weights"}


@dataclass
class TermSpec:
    """One parsed depth term of a criterion config (see :class:`DepthCriterion`)."""

    name: str
    type: str
    weight: float
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None


def _weights_list(value: Any, where: str) -> list[float] | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise ConfigError(f"{where} must be a non-empty list of numbers, got {value!r}")
    return [check_number(v, f"{where}[{i}]", low=0.0) for i, v in enumerate(value)]


def split_term(registry: Registry, entry: Any, where: str, prefix: str = "") -> tuple[str, float, str, dict[str, Any]]:
    """(type, weight, name, remaining options) of one ``{type, weight, name, **options}`` entry
    of a term list, the type checked against ``registry``; the name defaults to ``prefix + type``."""
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where} must be a mapping with a 'type', got {entry!r}")
    spec = dict(entry)
    kind = spec.pop("type", None)
    try:
        registry.get(kind if isinstance(kind, str) else repr(kind))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    weight = check_number(spec.pop("weight", 1.0), f"{where} ({kind}) weight", low=0.0)
    name = spec.pop("name", prefix + kind)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where} ({kind}): name must be a non-empty string, got {name!r}")
    return kind, weight, name, spec


def _parse_term(i: int, spec: Any) -> TermSpec:
    where = f"loss terms[{i}]"
    kind, weight, name, spec = split_term(LOSS_TERMS, spec, where)
    seed = spec.pop("seed", None) if kind == "virtual_normal" else None
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError(f"{where} ({kind}): seed must be an integer, got {seed!r}")
    allowed = list(LOSS_TERMS.parameters(kind))
    unknown = sorted(set(spec) - set(allowed))
    if unknown:
        extra = ", seed" if kind == "virtual_normal" else ""
        raise ConfigError(
            f"{where} ({kind}): unknown option(s) {', '.join(unknown)}{suggest(unknown[0], allowed) if len(unknown) == 1 else ''}; "
            f"allowed: name, weight, {', '.join(allowed)}{extra}"
        )
    return TermSpec(name=name, type=kind, weight=weight, params=spec, seed=seed)


def _validate_term_params(term: TermSpec) -> None:
    """Run the loss once on a tiny map so bad option values fail at build time, not mid-training."""
    gt = torch.full((1, 1, 4, 4), 5.0)
    pred = gt + torch.linspace(0, 1, 16).reshape(1, 1, 4, 4)
    extra: dict[str, Any] = {}
    if term.type == "virtual_normal":  # a private generator: building must not touch the global RNG
        extra = {"K": torch.eye(3), "generator": torch.Generator().manual_seed(0)}
    try:
        LOSS_TERMS.get(term.type)(pred, gt, **extra, **term.params)
    except ConfigError as exc:
        raise ConfigError(f"loss term {term.name!r}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"loss term {term.name!r}: invalid option value ({exc})") from None


class DepthCriterion(nn.Module):
    """The training objective: weighted depth terms over the output scales plus segmentation.

    Built from a plain config (see :func:`build_criterion`)::

        {"terms": [{"type": "silog", "weight": 1.0, "lambd": 0.85},
                   {"type": "gradient", "weight": 0.5, "scales": 2}],
         "learnable_weights": false,
         "scale_weights": [0.125, 0.25, 0.5, 1.0],   # alpha_i, coarsest first
         "seg_weights": [0.1],                       # beta_i, coarsest first
         "seg": {"ignore_index": 255, "class_weights": null},
         "road_weight": 0.0}

    Each term is ``{"type": ..., "weight": w, "name": optional unique name, **options}`` with
    the options of the matching function (``virtual_normal`` also takes ``seed`` for its own
    reproducible triplet generator; a ``generator`` passed to the call takes precedence).

    Scales, **coarsest first** as in the model contract (``outputs["scales"]`` in another order
    is a DataError). Which predictions are supervised is set by the length of ``scale_weights``:

    * not given: ``outputs["depth"]`` alone, weight 1 (``scales`` are ignored);
    * ``len(scales)`` values: the ``scales`` only, for models whose ``depth`` is the finest
      scale upsampled (e.g. method 5's tiny-multires, whose heads are all in ``scales``);
    * ``len(scales) + 1`` values: ``[*scales, depth]``, for models whose ``depth`` is a head
      of its own; anything else is a DataError.

    Every prediction is upsampled bilinearly to the ground-truth size before the loss
    (monodepth2 style; works with sparse ground truth). With L_D(i) = sum_k w_k * L_k(pred_i)
    and L_S(i) the cross-entropy of the i-th segmentation output (``outputs["seg"]``: one
    logits tensor or a coarsest-first list), the total is sum_i alpha_i L_D(i) + beta_i L_S(i)
    (Chiu et al. 2020, method 5). ``seg_weights`` defaults to 1 per segmentation output when
    both the outputs and the batch carry ``seg`` (otherwise no segmentation loss); when given,
    its length must match the outputs and both must carry ``seg``.

    ``road_weight`` (> 0) adds that times :func:`~slimdepth.losses.road.road_loss`: the road
    logits of a stixel head (``outputs["road"]``, LiteDepth with ``road_prior: popup``) against
    the ground that the true depth and ``K`` show (no labels needed; for KITTI-like cameras).

    ``learnable_weights: true`` (LiteDepth, method 4): each depth term k gets its own learnable
    s_k and the depth part becomes sum_k 0.5/s_k^2 * w_k * L_k + log(1 + s_k^2) with
    L_k = sum_i alpha_i L_k(pred_i): the configured weights w_k still multiply, as fixed
    prior scales inside the learnable form (use 1 for the pure LiteDepth form). The
    segmentation part keeps its fixed betas. Put the criterion's parameters in the optimiser
    (and its state_dict in the checkpoint).

    Call: ``total, logs = criterion(outputs, batch, generator=None)``; ``batch`` has ``depth``
    (B, 1, H, W), optional ``K`` (B, 3, 3; required by virtual_normal), ``seg`` (B, H, W) and
    ``mask`` (bool, AND-ed with gt > 0); ``generator`` seeds the virtual-normal triplets.
    ``logs`` holds floats: each term as sum_i alpha_i L_k(pred_i) (before w_k), per-prediction
    values ``<name>/s<i>`` (i indexes the supervised list, coarsest first) when several are
    supervised, ``seg`` (sum_i beta_i L_S(i)) and ``seg/s<i>``, the learnable weights
    (``weight/<name>`` = 0.5/s^2, ``sigma2/<name>``) and ``total``.
    """

    def __init__(
        self,
        terms: Sequence[TermSpec],
        learnable_weights: bool = False,
        scale_weights: Sequence[float] | None = None,
        seg_weights: Sequence[float] | None = None,
        seg_ignore_index: int = IGNORE_LABEL,
        seg_class_weights: Sequence[float] | None = None,
        road_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.road_weight = road_weight
        self.terms = list(terms)
        self.scale_weights = list(scale_weights) if scale_weights is not None else None
        self.seg_weights = list(seg_weights) if seg_weights is not None else None
        self.seg_ignore_index = seg_ignore_index
        self.seg_class_weights = list(seg_class_weights) if seg_class_weights is not None else None
        self.learnable = (
            LearnableLossWeights(len(self.terms), [t.name for t in self.terms]) if learnable_weights and self.terms else None
        )
        self._generators: dict[str, torch.Generator] = {}
        for t in self.terms:
            if t.seed is not None:
                g = torch.Generator()
                g.manual_seed(t.seed)
                self._generators[t.name] = g

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _as_list(value: Any, what: str) -> list[Tensor]:
        if value is None:
            return []
        if isinstance(value, Tensor):
            return [value]
        if isinstance(value, (list, tuple)) and all(isinstance(v, Tensor) for v in value):
            return list(value)
        raise DataError(f"outputs[{what!r}] must be a tensor or a list of tensors")

    @staticmethod
    def _check_coarsest_first(maps: Sequence[Tensor], what: str) -> None:
        for i in range(1, len(maps)):
            (h0, w0), (h1, w1) = maps[i - 1].shape[-2:], maps[i].shape[-2:]
            if h1 < h0 or w1 < w0:
                raise DataError(f"{what} must be ordered coarsest first; got {h0}x{w0} before {h1}x{w1}")

    def _supervised(self, outputs: Mapping[str, Any]) -> tuple[list[Tensor], list[float]]:
        """The depth predictions to supervise and their alphas (see the class docstring)."""
        scales = self._as_list(outputs.get("scales"), "scales")
        self._check_coarsest_first(scales, "outputs['scales']")
        if self.scale_weights is None:
            return [outputs["depth"]], [1.0]
        n = len(self.scale_weights)
        if scales and n == len(scales):
            return scales, self.scale_weights
        if n == len(scales) + 1:
            return [*scales, outputs["depth"]], self.scale_weights
        raise DataError(
            f"scale_weights has {n} values but the model returned {len(scales)} scales: give {len(scales)} "
            f"(scales only) or {len(scales) + 1} (scales, then depth) values, coarsest first"
        )

    # -- forward ---------------------------------------------------------------------------

    def forward(
        self, outputs: Mapping[str, Any], batch: Mapping[str, Any], generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        """Total loss and a dict of floats for logging (see the class docstring)."""
        if "depth" not in outputs:
            raise DataError("model outputs have no 'depth' entry")
        if "depth" not in batch:
            raise DataError("the batch has no ground-truth 'depth'; a depth criterion needs it")
        gt = batch["depth"]
        if gt.ndim != 4 or gt.shape[1] != 1:
            raise DataError(f"ground-truth depth must be (B, 1, H, W), got {tuple(gt.shape)}")
        mask = batch.get("mask")
        preds, alphas = self._supervised(outputs)
        needs_K = any(t.type == "virtual_normal" for t in self.terms)
        K = batch.get("K")
        if needs_K and K is None:
            raise DataError("the virtual_normal loss needs camera intrinsics batch['K'] (B, 3, 3), but the batch has none")

        size = gt.shape[-2:]
        logs: dict[str, Tensor] = {}
        term_totals: list[Tensor] = []
        for term in self.terms:
            fn = LOSS_TERMS.get(term.type)
            extra: dict[str, Any] = {}
            if term.type == "virtual_normal":
                extra = {"K": K, "generator": generator if generator is not None else self._generators.get(term.name)}
            acc: Tensor | None = None
            for i, (pred, alpha) in enumerate(zip(preds, alphas)):
                if pred.ndim != 4 or pred.shape[1] != 1 or pred.shape[0] != gt.shape[0]:
                    raise DataError(f"depth prediction {i} must be (B, 1, h, w) with B = {gt.shape[0]}, got {tuple(pred.shape)}")
                if alpha == 0:
                    continue
                if pred.shape[-2:] != size:
                    pred = F.interpolate(as_float(pred), size=size, mode="bilinear", align_corners=False)
                value = fn(pred, gt, mask=mask, **extra, **term.params)
                if len(preds) > 1:
                    logs[f"{term.name}/s{i}"] = value.detach()
                acc = alpha * value if acc is None else acc + alpha * value
            acc = acc if acc is not None else zero_loss(outputs["depth"])
            logs[term.name] = acc.detach()
            term_totals.append(term.weight * acc)

        if not term_totals:
            total = zero_loss(outputs["depth"])
        elif self.learnable is not None:
            total = self.learnable(torch.stack(term_totals))
        else:
            total = torch.stack(term_totals).sum()

        total = total + self._seg_part(outputs, batch, logs)
        if self.road_weight > 0:
            total = total + self.road_weight * self._road_part(outputs, batch, K, logs)
        logs["total"] = total.detach()
        names = list(logs)
        values = torch.stack([v.float().reshape(()) for v in logs.values()]).cpu().tolist()  # one sync
        out = dict(zip(names, values))
        if self.learnable is not None:
            out.update(self.learnable.as_dict())
        return total, out

    @staticmethod
    def _road_part(outputs: Mapping[str, Any], batch: Mapping[str, Any], K: Tensor | None,
                   logs: dict[str, Tensor]) -> Tensor:
        if outputs.get("road") is None:
            raise DataError("road_weight needs a model with road logits (outputs['road']): LiteDepth with road_prior: popup")
        if K is None:
            raise DataError("road_weight needs camera intrinsics batch['K'] (B, 3, 3), but the batch has none")
        value = road_loss(outputs["road"], batch["depth"], K, batch.get("mask"))
        logs["road"] = value.detach()
        return value

    def _seg_part(self, outputs: Mapping[str, Any], batch: Mapping[str, Any], logs: dict[str, Tensor]) -> Tensor:
        seg_out = self._as_list(outputs.get("seg"), "seg")
        labels = batch.get("seg")
        if self.seg_weights is None:
            if not seg_out or labels is None:
                return zero_loss(outputs["depth"])
            betas = [1.0] * len(seg_out)
        else:
            if not seg_out:
                raise DataError("seg_weights are configured but the model outputs have no 'seg' logits")
            if labels is None:
                raise DataError("seg_weights are configured but the batch has no 'seg' labels")
            betas = self.seg_weights
            if len(betas) != len(seg_out):
                raise DataError(f"seg_weights has {len(betas)} values but the model returned {len(seg_out)} segmentation outputs")
        self._check_coarsest_first(seg_out, "outputs['seg']")
        total: Tensor | None = None
        for i, (logits, beta) in enumerate(zip(seg_out, betas)):
            if beta == 0:
                continue
            value = segmentation_loss(logits, labels, self.seg_ignore_index, self.seg_class_weights)
            if len(seg_out) > 1:
                logs[f"seg/s{i}"] = value.detach()
            total = beta * value if total is None else total + beta * value
        total = total if total is not None else zero_loss(seg_out[0])
        logs["seg"] = total.detach()
        return total


def build_criterion(config: Mapping[str, Any]) -> DepthCriterion:
    """Build a :class:`DepthCriterion` from a plain config mapping (as read from YAML).

    Unknown keys, loss types or options, and invalid values raise :class:`ConfigError` with
    the offending entry named.
    """
    if not isinstance(config, Mapping):
        raise ConfigError(f"loss config must be a mapping, got {type(config).__name__}")
    unknown = sorted(set(config) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"unknown loss config key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_TOP_KEYS))}")
    raw_terms = config.get("terms", [])
    if raw_terms is None:
        raw_terms = []
    if isinstance(raw_terms, (str, bytes, Mapping)) or not isinstance(raw_terms, Sequence):
        raise ConfigError("loss config 'terms' must be a list of {type: ..., weight: ...} mappings")
    terms = [_parse_term(i, spec) for i, spec in enumerate(raw_terms)]
    seen: set[str] = set()
    for t in terms:
        if t.name in seen:
            raise ConfigError(f"two loss terms are named {t.name!r}; give one of them a distinct 'name'")
        seen.add(t.name)
        _validate_term_params(t)
    learnable = config.get("learnable_weights", False)
    if not isinstance(learnable, bool):
        raise ConfigError(f"loss config learnable_weights must be true or false, got {learnable!r}")
    scale_weights = _weights_list(config.get("scale_weights"), "loss config scale_weights")
    seg_weights = _weights_list(config.get("seg_weights"), "loss config seg_weights")
    seg_cfg = config.get("seg") or {}
    if not isinstance(seg_cfg, Mapping):
        raise ConfigError("loss config 'seg' must be a mapping with ignore_index and/or class_weights")
    unknown = sorted(set(seg_cfg) - _SEG_KEYS)
    if unknown:
        raise ConfigError(f"unknown loss config seg option(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_SEG_KEYS))}")
    ignore_index = seg_cfg.get("ignore_index", IGNORE_LABEL)
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise ConfigError(f"loss config seg.ignore_index must be an integer, got {ignore_index!r}")
    class_weights = _weights_list(seg_cfg.get("class_weights"), "loss config seg.class_weights")
    road_weight = check_number(config.get("road_weight", 0.0), "loss config road_weight", low=0.0)
    if not terms and not seg_weights:
        raise ConfigError("loss config has no depth terms and no seg_weights: nothing to optimise")
    return DepthCriterion(
        terms,
        learnable_weights=learnable,
        scale_weights=scale_weights,
        seg_weights=seg_weights,
        seg_ignore_index=ignore_index,
        seg_class_weights=class_weights,
        road_weight=road_weight,
    )
