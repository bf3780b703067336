"""The distillation terms of a recipe's ``distill.terms`` list, registered by name in :data:`KD_TERMS`.

Each term is a module built from its options (``{type: affinity, weight: 10, levels: [...]}``),
then told the shapes of the student's and the teacher's named features (:meth:`KDTerm.setup`),
which pairs its decoder levels and creates what it learns (the feature term's 1x1 adapters:
trained with the student, saved in the training state, never exported). A level is a student
feature name (``dec8``: the teacher level at the same stride is found), ``student:teacher``
(``dec8:dec2``), or left out (the term's default levels).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from slimdepth.errors import ConfigError, DataError
from slimdepth.losses.common import zero_loss
from slimdepth.losses.criterion import split_term
from slimdepth.losses.distill import RESPONSE_KINDS, affinity_loss, feature_loss, response_loss
from slimdepth.options import check_number, suggest
from slimdepth.registry import Registry

__all__ = ["KD_TERMS", "AffinityTerm", "FeatureTerm", "FeatureShapes", "KDTerm", "ResponseTerm", "build_kd_terms"]

#: distillation terms by recipe ``type``
KD_TERMS = Registry("distillation term")


@dataclass(frozen=True)
class FeatureShapes:
    """The named features of one network at one input size: name -> (channels, h, w), coarsest first."""

    input_size: tuple[int, int]
    shapes: dict[str, tuple[int, int, int]]

    def stride(self, name: str) -> float:
        return self.input_size[1] / self.shapes[name][2]


class KDTerm(nn.Module):
    """A distillation term: ``forward(student_out, teacher_out, mask)`` returns a scalar loss.

    ``student_out``/``teacher_out`` are model output dicts (``depth``, ``features``); ``mask``
    (B, 1, H, W, bool) marks the pixels whose ground truth is valid on labeled rows and is
    all True on unlabeled rows. ``teacher_levels`` are the teacher features the term reads.
    """

    needs_features = False

    def __init__(self) -> None:
        super().__init__()
        self.pairs: list[tuple[str, str]] = []

    def setup(self, student: FeatureShapes | None, teacher: FeatureShapes | None) -> None:
        """Pair the levels and build what the term learns; called once, before training."""

    @property
    def teacher_levels(self) -> list[str]:
        return [t for _, t in self.pairs]


def _parse_levels(levels: Any, where: str) -> list[tuple[str, str | None]] | None:
    if levels is None:
        return None
    if isinstance(levels, str):
        levels = [s for s in levels.split(",") if s.strip()]
    if not isinstance(levels, Sequence) or not levels or not all(isinstance(v, str) and v.strip() for v in levels):
        raise ConfigError(f"{where}: levels must be a non-empty list of feature names (dec8, or student:teacher "
                          f"like dec8:dec2), got {levels!r}")
    out = []
    for item in levels:
        s, _, t = item.strip().partition(":")
        out.append((s.strip(), t.strip() or None))
    return out


def pair_levels(requested: list[tuple[str, str | None]] | None, student: FeatureShapes, teacher: FeatureShapes,
                default: int | None, where: str) -> list[tuple[str, str]]:
    """Student level -> teacher level pairs: the named ones, the teacher's at the nearest
    stride when only the student's is named, and the ``default`` coarsest student levels
    (all when ``None``) when nothing is named."""
    names = list(student.shapes)
    if not names or not teacher.shapes:
        raise DataError(f"{where}: the {'student' if not names else 'teacher'} returns no named features to distil")
    if requested is None:
        requested = [(n, None) for n in (names if default is None else names[:default])]
    pairs = []
    for s, t in requested:
        if s not in student.shapes:
            raise ConfigError(f"{where}: the student has no feature {s!r}{suggest(s, names)}; it has {', '.join(names)}")
        if t is None:
            t = min(teacher.shapes, key=lambda n: abs(math.log(teacher.stride(n) / student.stride(s))))
        elif t not in teacher.shapes:
            raise ConfigError(f"{where}: the teacher has no feature {t!r}{suggest(t, list(teacher.shapes))}; it has "
                              f"{', '.join(teacher.shapes)}")
        pairs.append((s, t))
    return pairs


@KD_TERMS.register("response", "the student's depth against the teacher's on every pixel it predicts")
class ResponseTerm(KDTerm):
    """Response distillation: ``kind`` silog (``lambd``, ``scale``) or log_l1."""

    def __init__(self, kind: str = "silog", lambd: float = 0.85, scale: float = 10.0) -> None:
        super().__init__()
        if kind not in RESPONSE_KINDS:
            raise ConfigError(f"response kind must be one of {', '.join(RESPONSE_KINDS)}, got {kind!r}"
                              f"{suggest(str(kind), list(RESPONSE_KINDS))}")
        self.kind = kind
        self.lambd = check_number(lambd, "response lambd")
        self.scale = check_number(scale, "response scale", low=0.0, low_open=True)

    def forward(self, student: Mapping[str, Any], teacher: Mapping[str, Any], mask: Tensor | None) -> Tensor:
        return response_loss(student["depth"], teacher["depth"], kind=self.kind, lambd=self.lambd, scale=self.scale)


@KD_TERMS.register("feature", "L2 between student and teacher features through learned 1x1 adapters")
class FeatureTerm(KDTerm):
    """Feature distillation at ``levels`` (default: every student level) through 1x1 adapters."""

    needs_features = True

    def __init__(self, levels: Any = None) -> None:
        super().__init__()
        self.requested = _parse_levels(levels, "feature term")
        self.adapters = nn.ModuleDict()

    def setup(self, student: FeatureShapes | None, teacher: FeatureShapes | None) -> None:
        assert student is not None and teacher is not None
        self.pairs = pair_levels(self.requested, student, teacher, None, "feature term")
        for s, t in self.pairs:
            self.adapters[s] = nn.Conv2d(student.shapes[s][0], teacher.shapes[t][0], kernel_size=1, bias=False)

    def forward(self, student: Mapping[str, Any], teacher: Mapping[str, Any], mask: Tensor | None) -> Tensor:
        total = zero_loss(student["depth"])
        for s, t in self.pairs:
            total = total + feature_loss(student["features"][s], teacher["features"][t], self.adapters[s])
        return total / len(self.pairs)


@KD_TERMS.register("affinity", "MSE between student and teacher cosine-affinity matrices at decoder levels")
class AffinityTerm(KDTerm):
    """Structure-aware distillation at ``levels`` (default: the three coarsest student levels),
    restricted to valid ground-truth cells when ``mask`` (labeled rows only), after max-pooling
    to the ``pool`` grid [rows, cols] when given."""

    needs_features = True

    def __init__(self, levels: Any = None, mask: bool = True, pool: Sequence[int] | None = None) -> None:
        super().__init__()
        self.requested = _parse_levels(levels, "affinity term")
        if not isinstance(mask, bool):
            raise ConfigError(f"affinity mask must be true or false, got {mask!r}")
        if pool is not None:
            if isinstance(pool, str):
                pool = [int(v) for v in pool.lower().split("x")] if all(
                    v.isdigit() for v in pool.lower().split("x")) else pool  # type: ignore[assignment]
            if (isinstance(pool, (str, bytes)) or not isinstance(pool, Sequence) or len(pool) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pool)):
                raise ConfigError(f"affinity pool must be a grid of two positive integers [rows, cols] or RxC, got {pool!r}")
        self.use_mask = mask
        self.pool = tuple(pool) if pool is not None else None

    def setup(self, student: FeatureShapes | None, teacher: FeatureShapes | None) -> None:
        assert student is not None and teacher is not None
        self.pairs = pair_levels(self.requested, student, teacher, 3, "affinity term")

    def forward(self, student: Mapping[str, Any], teacher: Mapping[str, Any], mask: Tensor | None) -> Tensor:
        total = zero_loss(student["depth"])
        for s, t in self.pairs:
            total = total + affinity_loss(student["features"][s], teacher["features"][t],
                                          mask if self.use_mask else None, self.pool)
        return total / len(self.pairs)


@dataclass
class KDSpec:
    """One parsed entry of ``distill.terms``."""

    name: str
    type: str
    weight: float
    options: dict[str, Any]


def parse_kd_terms(raw: Any) -> list[KDSpec]:
    """Check ``distill.terms`` (a list of ``{type, weight, name, **options}``) against the registry."""
    if raw is None:
        return []
    if isinstance(raw, (str, bytes, Mapping)) or not isinstance(raw, Sequence):
        raise ConfigError("distill.terms must be a list of {type: response|feature|affinity, weight: ...} mappings")
    specs, seen = [], set()
    for i, entry in enumerate(raw):
        where = f"distill.terms[{i}]"
        kind, weight, name, entry = split_term(KD_TERMS, entry, where, prefix="kd_")
        if name in seen:
            raise ConfigError(f"two distillation terms are named {name!r}; give one of them a distinct 'name'")
        seen.add(name)
        try:
            KD_TERMS.check(kind, entry, where=f"{where} ({kind})")
        except ConfigError as exc:
            raise ConfigError(str(exc)) from None
        specs.append(KDSpec(name, kind, weight, entry))
    return specs


def build_kd_terms(specs: list[KDSpec]) -> list[KDTerm]:
    """The term modules of parsed specs (options are checked here: a bad value is a ConfigError)."""
    terms = []
    for spec in specs:
        try:
            terms.append(KD_TERMS.get(spec.type)(**spec.options))
        except TypeError as exc:
            raise ConfigError(f"distillation term {spec.name!r}: {exc}") from None
    return terms


def feature_shapes(model: nn.Module, size: tuple[int, int], device: torch.device) -> FeatureShapes:
    """Probe ``model`` once at ``size`` for the shapes of its named features (eval mode, no grad,
    batch of 2 so BatchNorm behaves, the model's training flag restored)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, 3, *size, device=device), outputs=("features",))
    finally:
        model.train(was_training)
    feats = out.get("features") or {}
    return FeatureShapes(tuple(size), {k: (int(v.shape[1]), int(v.shape[2]), int(v.shape[3])) for k, v in feats.items()})
