"""What every conv and linear layer of a network does in one traced forward pass.

:func:`trace_layers` runs a fixed random image through the model in eval mode and records, per
layer, its shape and the output positions it computed (:class:`LayerInfo`), from which its
MACs follow exactly. The channel groups, the channel cost model and the budget searches all
read this table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from slimdepth.models.base import eval_mode, model_device, run_outputs
from slimdepth.options import parse_size

__all__ = ["DEFAULT_EXAMPLE_SIZE", "TRACED_OUTPUTS", "LayerInfo", "example_image", "forward_traced",
           "recording_layers", "trace_layers"]

#: input size (H, W) of the example image traced when none is given: small, so tracing is quick
DEFAULT_EXAMPLE_SIZE: tuple[int, int] = (64, 96)
#: model outputs traced; ``features`` is left out on purpose: decoder features stay prunable
TRACED_OUTPUTS: tuple[str, ...] = ("depth", "scales", "seg")


@dataclass(frozen=True)
class LayerInfo:
    """Shape of one conv or linear layer and how much work it did in a traced forward pass.

    ``positions`` is the number of output positions summed over calls (batch x H_out x W_out for
    a conv, rows for a linear layer), so its MACs are
    ``positions * kernel * (in_channels / groups) * out_channels``.
    """

    name: str
    kind: str  # "conv" or "linear"
    in_channels: int
    out_channels: int
    groups: int
    kernel: int  # kernel taps (kh * kw); 1 for linear layers
    positions: int
    out_size: tuple[int, ...]  # spatial size of the first call's output; () for linear layers
    bias: bool

    @property
    def depthwise(self) -> bool:
        """torch-pruning's definition: groups == out_channels > 1 (pruned together with its input)."""
        return self.kind == "conv" and self.groups == self.out_channels and self.out_channels > 1

    @property
    def macs(self) -> int:
        """MACs of the traced calls (the convention of :func:`slimdepth.deploy.cost.count_macs`)."""
        return self.positions * self.kernel * (self.in_channels // self.groups) * self.out_channels


def example_image(model: nn.Module, size: tuple[int, int]) -> torch.Tensor:
    """A fixed random image batch (1, 3, H, W) in [0, 1] on the model's device."""
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0))
    return x.to(model_device(model))


def forward_traced(model: nn.Module, x: torch.Tensor) -> Any:
    """Run the model asking for every output whose channel count is fixed by the task."""
    return run_outputs(model, x, TRACED_OUTPUTS)


def _layer_hook(records: dict[str, list[tuple[int, tuple[int, ...]]]], name: str) -> Callable[..., None]:
    def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        if not isinstance(output, torch.Tensor):
            return
        if isinstance(module, nn.Linear):
            positions, size = output.numel() // max(module.out_features, 1), ()
        elif getattr(module, "transposed", False):  # counted per input position, as cost.py does
            x = inputs[0]
            positions, size = x.numel() // max(x.shape[1], 1), tuple(output.shape[2:])
        else:
            positions, size = output.numel() // max(output.shape[1], 1), tuple(output.shape[2:])
        records.setdefault(name, []).append((positions, size))

    return hook


@contextmanager
def recording_layers(model: nn.Module) -> Iterator[dict[str, LayerInfo]]:
    """Record every conv/linear call during the block; the dict is filled when the block ends."""
    records: dict[str, list[tuple[int, tuple[int, ...]]]] = {}
    modules = {name: m for name, m in model.named_modules() if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))}
    handles = [m.register_forward_hook(_layer_hook(records, name)) for name, m in modules.items()]
    infos: dict[str, LayerInfo] = {}
    try:
        yield infos
    finally:
        for h in handles:
            h.remove()
    for name, calls in records.items():
        m = modules[name]
        if isinstance(m, nn.Linear):
            info = LayerInfo(name, "linear", m.in_features, m.out_features, 1, 1,
                             sum(p for p, _ in calls), (), m.bias is not None)
        else:
            info = LayerInfo(name, "conv", m.in_channels, m.out_channels, m.groups, math.prod(m.kernel_size),
                             sum(p for p, _ in calls), calls[0][1], m.bias is not None)
        infos[name] = info


def trace_layers(model: nn.Module, example_size: int | Sequence[int] = DEFAULT_EXAMPLE_SIZE) -> dict[str, LayerInfo]:
    """Every conv and linear layer that runs on a (1, 3, H, W) image, with its shape and work."""
    size = parse_size(example_size, "example_size")
    with eval_mode(model), torch.no_grad(), recording_layers(model) as infos:
        forward_traced(model, example_image(model, size))
    return infos
