"""Learnable loss weighting (LiteDepth, method 4): sum_i 0.5 / s_i^2 * L_i + log(1 + s_i^2)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slimdepth.errors import ConfigError, DataError

__all__ = ["LearnableLossWeights"]


class LearnableLossWeights(nn.Module):
    """Uncertainty-style learnable weights: total = sum_i 0.5 / s_i^2 * L_i + log(1 + s_i^2).

    The form LiteDepth (method 4) uses to balance its four depth losses. The parameter is
    ``log_var`` = log s_i^2 (unconstrained, so s^2 stays positive; the regulariser is then
    softplus(log_var)), initialised to s^2 = 1, i.e. every weight 0.5.
    """

    def __init__(self, n: int, names: Sequence[str] | None = None) -> None:
        super().__init__()
        if not isinstance(n, int) or n < 1:
            raise ConfigError(f"LearnableLossWeights needs at least one loss term, got {n!r}")
        if names is not None and len(names) != n:
            raise ConfigError(f"LearnableLossWeights got {len(names)} names for {n} terms")
        self.names: list[str] = list(names) if names is not None else [f"term{i}" for i in range(n)]
        self.log_var = nn.Parameter(torch.zeros(n))

    def forward(self, losses: Sequence[Tensor] | Tensor) -> Tensor:
        """Weighted total of ``n`` scalar losses (a sequence or a 1-D tensor)."""
        values = losses if isinstance(losses, Tensor) else torch.stack([torch.as_tensor(v) for v in losses])
        values = values.reshape(-1)
        if values.numel() != self.log_var.numel():
            raise DataError(f"LearnableLossWeights expects {self.log_var.numel()} losses, got {values.numel()}")
        s = self.log_var.to(values.dtype)
        return (0.5 * torch.exp(-s) * values + F.softplus(s)).sum()

    def sigma2(self) -> Tensor:
        """Current s_i^2 (detached)."""
        return self.log_var.detach().exp()

    def weights(self) -> Tensor:
        """Current effective weights 0.5 / s_i^2 (detached)."""
        return 0.5 * torch.exp(-self.log_var.detach())

    def as_dict(self) -> dict[str, float]:
        """``weight/<name>`` and ``sigma2/<name>`` as floats, for logging."""
        out: dict[str, float] = {}
        for name, w, s2 in zip(self.names, self.weights().tolist(), self.sigma2().tolist()):
            out[f"weight/{name}"] = w
            out[f"sigma2/{name}"] = s2
        return out
