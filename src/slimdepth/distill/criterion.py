"""The distillation objective: the recipe's ground-truth loss on labeled rows plus weighted
distillation terms on every row of a mixed batch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from slimdepth.distill.terms import KDSpec, KDTerm
from slimdepth.losses import DepthCriterion, LearnableLossWeights

__all__ = ["DistillCriterion", "slice_outputs"]


def slice_outputs(outputs: Mapping[str, Any], n: int) -> dict[str, Any]:
    """The first ``n`` rows of every output (depth, scales, seg logits, named features)."""

    def cut(v: Any) -> Any:
        if isinstance(v, Tensor):
            return v[:n]
        if isinstance(v, (list, tuple)):
            return [cut(x) for x in v]
        if isinstance(v, Mapping):
            return {k: cut(x) for k, x in v.items()}
        return v

    return {k: cut(v) for k, v in outputs.items()}


class DistillCriterion(nn.Module):
    """``total = L_gt(labeled rows) + sum_k w_k * KD_k(all rows)``.

    ``gt`` is the recipe's :class:`~slimdepth.losses.DepthCriterion`. With ``learnable``
    (the recipe's ``loss.learnable_weights``) each distillation term gets its own learnable
    s_k as the ground-truth terms do: 0.5/s_k^2 * w_k * KD_k + log(1 + s_k^2). The adapters of
    feature terms are parameters of this module, so they train with the student and are kept
    in the training state but never in the exported model.
    """

    def __init__(self, gt: DepthCriterion, specs: Sequence[KDSpec], terms: Sequence[KDTerm], learnable: bool = False) -> None:
        super().__init__()
        self.gt = gt
        self.specs = list(specs)
        self.terms = nn.ModuleList(terms)
        self.learnable = LearnableLossWeights(len(terms), [s.name for s in specs]) if learnable and terms else None

    def forward(self, outputs: Mapping[str, Any], teacher: Mapping[str, Any], labeled: Mapping[str, Any],
                mask: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:
        """Total loss and logged floats: the ground-truth parts (``gt/...``), each
        distillation term before its weight, its learnable weight, and ``total``."""
        n = int(labeled["image"].shape[0])
        gt_total, gt_logs = self.gt(slice_outputs(outputs, n), labeled, generator=generator)
        logs = {f"gt/{k}" if k == "total" else k: v for k, v in gt_logs.items()}
        values = [term(outputs, teacher, mask) for term in self.terms]
        weighted = [spec.weight * v for spec, v in zip(self.specs, values)]
        if not weighted:
            kd = torch.zeros((), device=gt_total.device)
        elif self.learnable is not None:
            kd = self.learnable(torch.stack(weighted))
        else:
            kd = torch.stack(weighted).sum()
        total = gt_total + kd
        floats = torch.stack([v.detach().float().reshape(()) for v in [*values, total]]).cpu().tolist()
        logs.update({spec.name: f for spec, f in zip(self.specs, floats)})
        logs["total"] = floats[-1]
        if self.learnable is not None:
            logs.update(self.learnable.as_dict())
        return total, logs
