"""The saliency predictor of a gated conv and k-winner-takes-all (method 2's p(x) = wta_k(g(x))).

``g(x) = ReLU(W s(x) + b)`` predicts the saliency of every output channel from ``s(x)``, the
per-channel spatial mean of ``|x|`` over the layer *input*; ``wta_k`` keeps the ``k`` largest
saliencies of each sample and zeroes the rest, and the kept values scale their channels
(boosting). ``k = round(density * C_out)`` (:func:`keep_count`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slimdepth.errors import ConfigError
from slimdepth.models.base import Auxiliary
from slimdepth.options import check_number

__all__ = ["PREDICTOR_INITS", "SaliencyGate", "check_density", "keep_count", "spatial_mean_abs", "wta"]

#: predictor initialisations: ``noisy`` = bias 1 and small random weights (g close to 1, ties
#: broken); ``ones`` = bias 1 and zero weights (g == 1: at density 1 the ungated network exactly)
PREDICTOR_INITS = ("noisy", "ones")


def keep_count(density: float, channels: int) -> int:
    """``k = round(density * channels)`` (halves round up), at least 1 and at most ``channels``."""
    return max(1, min(channels, int(math.floor(density * channels + 0.5))))


def check_density(density: Any, where: str = "density") -> float:
    """A gating density: the fraction of a layer's channels kept, in (0, 1]."""
    return check_number(density, where, low=0.0, low_open=True, high=1.0, expected="a number in (0, 1]")


def check_predictor_init(init: Any) -> str:
    """One of :data:`PREDICTOR_INITS`."""
    if init not in PREDICTOR_INITS:
        raise ConfigError(f"predictor_init must be one of {', '.join(PREDICTOR_INITS)}, got {init!r}")
    return init


class SaliencyGate(nn.Linear, Auxiliary):
    """``g = ReLU(W s + b)``: predicts the saliency of each output channel of one gated conv.

    ``density`` sets ``k``; ``target`` is the dotted name of the gated conv; ``last_saliency``
    holds ``g`` (B, C_out) of the last forward, with its graph, for
    :func:`~slimdepth.compress.gating.convert.gating_l1`. Not a layer of the architecture
    (:class:`~slimdepth.models.base.Auxiliary`): the ``gating`` config entry rebuilds it.
    """

    def __init__(self, in_channels: int, out_channels: int, density: float = 0.5, target: str = "",
                 init: str = "noisy") -> None:
        super().__init__(in_channels, out_channels, bias=True)
        self.target = target
        self.density = check_density(density)
        self.last_saliency: Tensor | None = None
        self.reset_predictor(init)

    @property
    def density(self) -> float:
        return self._density

    @density.setter
    def density(self, value: float) -> None:
        self._density = check_density(value)
        self.k = keep_count(self._density, self.out_features)

    def reset_predictor(self, init: str = "noisy") -> None:
        """Bias 1 and weights N(0, (0.01 / sqrt(C_in))^2) (``noisy``: g = 1 + small input-dependent
        noise, which breaks top-k ties) or 0 (``ones``: g == 1)."""
        check_predictor_init(init)
        with torch.no_grad():
            self.bias.fill_(1.0)
            if init == "ones":
                self.weight.zero_()
            else:
                self.weight.normal_(0.0, 0.01 / math.sqrt(self.in_features))

    def forward(self, s: Tensor, columns: Tensor | None = None) -> Tensor:
        """Saliencies ``g`` (B, C_out) of spatial means ``s``; ``columns``: ``s`` holds only these input channels."""
        weight = self.weight if columns is None else self.weight.index_select(1, columns)
        g = F.relu(F.linear(s, weight, self.bias))
        self.last_saliency = g
        return g

    def __getstate__(self) -> dict[str, Any]:
        # the last saliencies carry their autograd graph, which cannot be copied or pickled
        state = super().__getstate__()
        state["last_saliency"] = None
        return state

    def macs(self, in_channels: int | None = None) -> int:
        """Multiply-adds of one prediction (per image) reading ``in_channels`` inputs."""
        return (self.in_features if in_channels is None else in_channels) * self.out_features

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, density={self.density:g}, k={self.k}"


def wta(g: Tensor, k: int) -> Tensor:
    """k-winner-takes-all over dim 1: keep the ``k`` largest values of each row, zero the rest.

    Differentiable with respect to the kept values (the selection itself is not).
    """
    if k >= g.shape[1]:
        return g
    idx = g.topk(k, dim=1, sorted=False).indices
    mask = torch.zeros_like(g).scatter_(1, idx, 1.0)
    return g * mask


def spatial_mean_abs(x: Tensor, nonnegative: bool = False) -> Tensor:
    """``s(x)``: per-channel spatial mean of ``|x|`` (B, C).

    ``abs`` is skipped (bit-identical result) for inputs known to be >= 0 -- the ReLU outputs
    inside a block -- or found to be so: a min-reduction is far cheaper than materialising
    ``|x|`` for a large activation (typically the ReLU/max-pool/bilinear outputs a block or
    decoder conv reads).
    """
    if nonnegative or bool(x.amin() >= 0):
        return x.mean(dim=(2, 3))
    return x.abs().mean(dim=(2, 3))
