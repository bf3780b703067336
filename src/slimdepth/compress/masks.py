"""Joint end-to-end filter pruning with learnable binary masks (method 1, Elkerdawy et al. 2019).

:func:`attach_masks` gives every channel of every prunable group (see
:func:`~slimdepth.compress.graph.channel_groups`) one learnable logit, initialised so that all
masks start on. In the forward pass the mask multiplies the output of each producer of the group
-- after its BatchNorm when the conv is followed by one, since a mask before BN would leave the BN
shift in a "removed" channel -- so a masked channel is exactly zero for every layer that reads it,
through residual adds, concatenations, depthwise convs and squeeze-excitation alike. (This relies
on the activations after the mask mapping 0 to 0, as ReLU, ReLU6 and hardswish do.)

The mask is binary with a straight-through estimator: forward ``m = 1[sigmoid(l) > 0.5]``
(i.e. ``l > 0``), backward ``dm/dl = sigmoid'(l)``. The channel with the largest logit of a group
always stays on, so no group is ever cut, and :meth:`MaskSet.keep_indices` agrees with what the
forward pass computes.

The masks are priced by the channel cost model (:class:`~slimdepth.compress.channel_cost.CostModel`):
with ``p = sigmoid(l)`` it gives the *expected* cost, with the hard masks :meth:`MaskSet.hard_macs`,
which equals :func:`~slimdepth.deploy.cost.count_macs` of the model after :meth:`MaskSet.apply`.
The compression loss prices the hard masks and passes the expected cost's gradient straight
through (:meth:`MaskSet.compression_loss`), so it stays on until the network that will be pruned
fits. :meth:`MaskSet.meet_target` fits the masks to a budget with one global threshold on the
logits, found by :func:`~slimdepth.compress.search.bisect`.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from slimdepth.compress.channel_cost import CostModel
from slimdepth.compress.graph import prune_channels
from slimdepth.compress.groups import ChannelGroup
from slimdepth.compress.search import bisect
from slimdepth.errors import ConfigError
from slimdepth.options import check_number

__all__ = ["DEFAULT_INIT_LOGIT", "MaskSet", "attach_masks"]

#: initial mask logit: sigmoid(3) = 0.95, every mask on, still far from the 0.5 threshold
DEFAULT_INIT_LOGIT = 3.0

# the MaskSet attached to each model (one at a time)
_ATTACHED: weakref.WeakKeyDictionary[nn.Module, MaskSet] = weakref.WeakKeyDictionary()


class _StraightThrough(torch.autograd.Function):
    """Forward: the given hard 0/1 mask. Backward: the gradient of sigmoid(logits)."""

    @staticmethod
    def forward(ctx: Any, logits: Tensor, hard: Tensor) -> Tensor:
        ctx.save_for_backward(logits)
        return hard

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (logits,) = ctx.saved_tensors
        p = torch.sigmoid(logits)
        return grad * p * (1 - p), None


def _hard(logits: Tensor) -> Tensor:
    """1 where sigmoid(logit) > 0.5, plus the largest logit so a group is never empty."""
    hard = logits.detach() > 0
    hard[logits.detach().argmax()] = True
    return hard.to(logits.dtype)


class MaskSet(nn.Module):
    """Learnable binary channel masks on a model; see the module docstring.

    The mask logits are this module's parameters (``logits[i]`` for ``groups[i]``): give them
    to the optimiser next to the model's. The MaskSet is not a submodule of the model, so the
    model's state dict, parameter count and checkpoints are unchanged; it holds forward hooks on
    the model until :meth:`detach` or :meth:`apply`.
    """

    def __init__(self, model: nn.Module, groups: Sequence[ChannelGroup], init_logit: float = DEFAULT_INIT_LOGIT,
                 cost: CostModel | None = None) -> None:
        super().__init__()
        if init_logit <= 0:
            raise ConfigError(f"init_logit must be > 0 so that every mask starts on, got {init_logit}")
        self.groups = list(groups)
        object.__setattr__(self, "_model", model)  # not a submodule: its parameters are not ours
        self.cost = cost if cost is not None else CostModel(model, self.groups)
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        self.logits = nn.ParameterList(
            nn.Parameter(torch.full((g.channels,), float(init_logit), device=device)) for g in self.groups)
        self.frozen = False
        #: prices the masks in milliseconds (cost kind "latency"); set by latency-budget pruning
        self.latency: Any = None
        #: False during a warm-up: the masks act (all on at first) but receive no gradient
        self.learning = True
        self._handles: list[Any] = []

    # -- hooks -------------------------------------------------------------------------------
    @property
    def model(self) -> nn.Module:
        """The model the masks act on."""
        return self._model

    @property
    def input_size(self) -> tuple[int, int]:
        """The (H, W) the groups were traced at and the costs are counted for."""
        return self.cost.input_size

    def _attach(self) -> None:
        for gi, g in enumerate(self.groups):
            for name in g.mask_points:
                module = self._model.get_submodule(name)
                self._handles.append(module.register_forward_hook(self._hook(gi)))

    def _hook(self, gi: int) -> Callable[[nn.Module, Any, Tensor], Tensor]:
        def hook(module: nn.Module, inputs: Any, output: Tensor) -> Tensor:
            mask = self.mask(gi).to(device=output.device, dtype=output.dtype)
            return output * mask.view(1, -1, *([1] * (output.ndim - 2)))

        return hook

    @property
    def attached(self) -> bool:
        """Whether the hooks are on the model."""
        return bool(self._handles)

    def detach(self) -> None:
        """Remove the hooks: the model computes without masks again."""
        for h in self._handles:
            h.remove()
        self._handles = []
        if _ATTACHED.get(self._model) is self:
            del _ATTACHED[self._model]

    # -- masks -------------------------------------------------------------------------------
    def probabilities(self) -> list[Tensor]:
        """Keep probabilities sigmoid(logit), one tensor per group."""
        return [torch.sigmoid(lg) for lg in self.logits]

    def mask(self, index: int) -> Tensor:
        """The 0/1 mask of group ``index`` as used in the forward pass (straight-through)."""
        logits = self.logits[index]
        hard = _hard(logits)
        if self.frozen or not self.learning or not torch.is_grad_enabled() or not logits.requires_grad:
            return hard
        return _StraightThrough.apply(logits, hard)

    def hard_masks(self) -> list[Tensor]:
        """The current 0/1 masks (detached), one per group."""
        return [_hard(lg) for lg in self.logits]

    def init_from_importance(self, scores: Mapping[str, Tensor], low: float = 0.5, high: float = 2.5) -> None:
        """Spread the initial logits over [``low``, ``high``] by the global rank of a per-channel
        importance (``{group root: scores}``, e.g. :func:`~slimdepth.compress.baselines.filter_importance`):
        the least important channel starts at ``low``, the most important at ``high``.

        With all logits equal, a cost penalty under Adam (which normalises each step) moves them
        down at one pace and they cross the threshold together, switching whole layers off at
        once; a spread makes them cross one after another, least important first, while the
        task loss reorders them.
        """
        if not 0 < low <= high:
            raise ConfigError(f"initial logits must satisfy 0 < low <= high, got {low}, {high}")
        missing = [g.root for g in self.groups if g.root not in scores]
        if missing:
            raise ConfigError(f"no importance for the channel groups {', '.join(missing[:3])}")
        parts = []
        for g in self.groups:
            sc = torch.as_tensor(scores[g.root], dtype=torch.float64).flatten()
            if sc.numel() != g.channels:
                raise ConfigError(f"{g.root}: {sc.numel()} importance scores for {g.channels} channels")
            parts.append(sc)
        flat = torch.cat(parts)
        rank = torch.empty_like(flat)
        rank[torch.argsort(flat, stable=True)] = torch.arange(flat.numel(), dtype=torch.float64)
        rank = rank / max(flat.numel() - 1, 1)
        with torch.no_grad():
            for lg, piece in zip(self.logits, torch.split(rank, [g.channels for g in self.groups])):
                lg.copy_((low + (high - low) * piece).to(lg))

    def freeze(self) -> None:
        """Stop learning the masks: hard values from now on, logits without gradient."""
        self.frozen = True
        for lg in self.logits:
            lg.requires_grad_(False)

    def keep_indices(self) -> dict[str, list[int]]:
        """Per group root, the channel indices whose mask is on (never empty)."""
        return {g.root: torch.nonzero(m).flatten().tolist() for g, m in zip(self.groups, self.hard_masks())}

    def removal(self) -> dict[str, list[int]]:
        """Per group root, the channel indices whose mask is off (for :func:`prune_channels`)."""
        return {g.root: torch.nonzero(m == 0).flatten().tolist() for g, m in zip(self.groups, self.hard_masks())}

    def summary(self) -> dict[str, tuple[int, int]]:
        """Per group root, (channels kept, channels)."""
        return {g.root: (int(m.sum()), g.channels) for g, m in zip(self.groups, self.hard_masks())}

    # -- costs -------------------------------------------------------------------------------
    def _keep(self, probs: Sequence[Tensor] | None) -> Tensor:
        parts = list(probs) if probs is not None else self.probabilities()
        if len(parts) != len(self.groups):
            raise ConfigError(f"expected {len(self.groups)} probability vectors, got {len(parts)}")
        if not parts:
            return torch.zeros(0, dtype=torch.float64)
        return torch.cat([p.to(torch.float64).flatten() for p in parts])

    def expected_macs(self, probs: Sequence[Tensor] | None = None, include_other: bool = True) -> Tensor:
        """Expected MACs (float64 scalar, differentiable) at keep probabilities ``probs``.

        ``probs`` defaults to sigmoid(logits); ``include_other=False`` gives the conv + linear
        part only (no resizes, no constant remainder).
        """
        return self.cost.macs(self._keep(probs), include_other=include_other)

    def expected_params(self, probs: Sequence[Tensor] | None = None) -> Tensor:
        """Expected number of parameters (float64 scalar, differentiable); BN affine included."""
        return self.cost.params(self._keep(probs))

    def hard_macs(self) -> int:
        """MACs with the current hard masks: ``count_macs`` of the model after :meth:`apply`."""
        return int(round(float(self.cost.macs(self._keep(self.hard_masks())))))

    def hard_params(self) -> int:
        """Parameters with the current hard masks: ``count_parameters`` after :meth:`apply`."""
        return int(round(float(self.cost.params(self._keep(self.hard_masks())))))

    @property
    def original_macs(self) -> int:
        """MACs of the unmasked model at :attr:`input_size`."""
        return self.cost.total_macs

    @property
    def original_params(self) -> int:
        """Parameters of the unmasked model."""
        return self.cost.total_params

    def _measure(self, kind: str) -> tuple[Callable[[Tensor], Tensor], int]:
        """The cost of a keep vector and the original total, for ``kind`` "macs" or "params"."""
        if kind == "macs":
            return self.cost.macs, self.original_macs
        if kind == "params":
            return self.cost.params, self.original_params
        if kind == "latency":
            if self.latency is None:
                raise ConfigError("the masks have no latency table to price them in milliseconds")
            return self.latency.ms, self.latency.full_ms
        raise ConfigError(f"cost kind must be 'macs', 'params' or 'latency', got {kind!r}")

    def cost_ratio(self, kind: str = "macs", hard: bool = False) -> float:
        """The cost of the current masks as a fraction of the original: expected under the keep
        probabilities, or with ``hard`` the binary masks the forward pass uses."""
        measure, original = self._measure(kind)
        probs = self.hard_masks() if hard else None
        with torch.no_grad():
            return float(measure(self._keep(probs))) / original

    def compression_loss(self, target_ratio: float, kind: str = "macs", estimate: str = "binary") -> Tensor:
        """Penalty pushing the cost down to ``target_ratio`` x the original cost.

        ``(max(0, cost / (target_ratio * original) - 1))**2``: the squared relative excess over
        the budget, zero once the cost is at or below it. ``kind`` is ``"macs"`` or ``"params"``.

        ``estimate="binary"`` (the default) prices the binary masks the forward pass uses, with
        the straight-through gradient of the expected cost (d cost / d p at the binary point,
        times sigmoid'): the penalty stays on until the network that will actually be pruned
        fits the budget. ``estimate="expected"`` prices the expectation under the keep
        probabilities; it can reach the budget while many logits still sit just above 0 (p
        between 0.5 and 0.7 counts as a fraction of a channel but keeps the whole one).
        A float32 scalar on the logits' device; weight it against the task loss.
        """
        check_number(target_ratio, "target_ratio", low=0, low_open=True, high=1, expected="in (0, 1]")
        measure, original = self._measure(kind)
        if estimate not in ("binary", "expected"):
            raise ConfigError(f"compression loss estimate must be 'binary' or 'expected', got {estimate!r}")
        probs = self.probabilities()
        if estimate == "binary":
            probs = [h + (p - p.detach()) for h, p in zip(self.hard_masks(), probs)]
        cost = measure(self._keep(probs))
        excess = torch.relu(cost / (float(target_ratio) * original) - 1.0)
        device = self.logits[0].device if len(self.logits) else cost.device
        return (excess**2).to(device=device, dtype=torch.float32)

    def _top_shift(self) -> float:
        """A logit shift that leaves every group only its most confident channel."""
        return max(float(lg.detach().max()) for lg in self.logits) + 1.0

    def floor_ratio(self, kind: str = "macs") -> float:
        """The smallest reachable cost (``macs`` or ``params``) as a fraction of the original:
        every prunable group down to one channel (what no budget can go below)."""
        measure, original = self._measure(kind)
        if not self.logits:
            return 1.0
        top = self._top_shift()
        return float(measure(self._keep([_hard(lg.detach() - top) for lg in self.logits]))) / original

    def meet_target(self, target_ratio: float, kind: str = "macs", fill: bool = True) -> float:
        """Make the hard masks use the budget: the largest set of channels, chosen by one global
        threshold on the logits, whose cost is at most ``target_ratio`` x the original.

        Over budget, the threshold rises (the least confident channels go first; every group
        keeps its best one). Under budget, and with ``fill``, it falls: the most confident
        switched-off channels come back while they fit, so that methods compare at equal MACs
        and a joint phase that overshot does not leave capacity unused. The logits are then
        shifted by the threshold so the masks, :meth:`keep_indices` and :meth:`apply` all
        agree. Returns the shift (> 0 raised the threshold, < 0 lowered it, 0.0 when the
        masks fit and nothing was off or ``fill`` is False).
        """
        check_number(target_ratio, "target_ratio", low=0, low_open=True, high=1, expected="in (0, 1]")
        measure, original = self._measure(kind)
        budget = float(target_ratio) * original
        logits = [lg.detach() for lg in self.logits]
        if not logits:
            return 0.0

        def cost(shift: float) -> float:
            return float(measure(self._keep([_hard(lg - shift) for lg in logits])))

        top = self._top_shift()  # every group down to its best channel
        bottom = min(float(lg.min()) for lg in logits) - 1.0  # every channel on
        if cost(top) > budget:
            raise ConfigError(f"a {kind} budget of {target_ratio:.3f} x the original cannot be met even with one "
                              "channel per prunable group")
        now, everything = cost(0.0), cost(bottom)
        if now > budget:
            lo, hi = 0.0, top  # raise the threshold
        elif not fill or now == everything:
            return 0.0  # fits, and nothing to restore
        elif everything <= budget:
            lo = hi = bottom  # everything fits: restore every channel
        else:
            lo, hi = bottom, 0.0  # lower the threshold
        hi, _ = bisect(lambda shift: cost(shift) <= budget, hi, lo)  # keeps cost(hi) <= budget < cost(lo)
        with torch.no_grad():
            for lg in self.logits:
                lg.sub_(hi)
        return hi

    # -- removal -----------------------------------------------------------------------------
    def apply(self, model: nn.Module | None = None, *, inplace: bool = False) -> nn.Module:
        """Remove the masked-off channels for real and return the smaller dense model.

        The hooks are detached first. ``model`` defaults to the masked model; unless ``inplace``,
        a copy is pruned and ``model`` keeps its full width. The result computes what the masked
        model computed (eval mode; up to float rounding).
        """
        target = self._model if model is None else model
        removal = self.removal()
        self.detach()
        if not inplace:
            target = copy.deepcopy(target)
        return prune_channels(target, removal, example_size=self.input_size)

    def extra_repr(self) -> str:
        kept = sum(k for k, _ in self.summary().values())
        return f"groups={len(self.groups)}, channels={kept}/{self.cost.num_channels} kept, frozen={self.frozen}"


def attach_masks(model: nn.Module, groups: Sequence[ChannelGroup], init_logit: float = DEFAULT_INIT_LOGIT) -> MaskSet:
    """Put one learnable binary mask per channel of every group on ``model`` (all on).

    ``groups`` come from :func:`~slimdepth.compress.graph.channel_groups` on this model. One
    MaskSet per model at a time: :meth:`MaskSet.detach` the previous one first.
    """
    previous = _ATTACHED.get(model)
    if previous is not None and previous.attached:
        raise ConfigError("the model already has masks attached; detach them first")
    masks = MaskSet(model, groups, init_logit)
    masks._attach()
    _ATTACHED[model] = masks
    return masks
