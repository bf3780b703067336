"""Test-time normalisation: a model's BatchNorm statistics re-estimated on unlabeled frames.

AdaBN (Li et al., "Revisiting Batch Normalization for Practical Domain Adaptation", 2016): a
network trained on one domain keeps its weights, and every BatchNorm layer's running mean and
variance are measured again on images of another (a camera's own frames, no depth needed). Each
layer then normalises the new domain's features as it normalised the training domain's. It asks
how much of a domain gap lies in the features' first two moments: where re-estimated statistics
help, the gap is partly one of appearance statistics; where they do not, it lies deeper.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from slimdepth.errors import ConfigError
from slimdepth.evaluate.loop import input_batch
from slimdepth.options import check_number

__all__ = ["adapt_batchnorm", "batchnorm_layers"]


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of ``model`` that keep running statistics."""
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def _same_size_batches(images: Sequence[torch.Tensor], input_size: tuple[int, int] | None,
                       batch: int) -> list[list[torch.Tensor]]:
    """Consecutive groups of at most ``batch`` images that can be batched: any with an
    ``input_size`` (each is resized to it), else those of one size."""
    groups: list[list[torch.Tensor]] = []
    for image in images:
        last = groups[-1] if groups else None
        if last is not None and len(last) < batch and \
                (input_size is not None or last[0].shape[-2:] == image.shape[-2:]):
            last.append(image)
        else:
            groups.append([image])
    return groups


@torch.no_grad()
def adapt_batchnorm(model: nn.Module, images: Sequence[torch.Tensor], input_size: tuple[int, int] | None = None,
                    batch: int = 8, where: str = "model") -> nn.Module:
    """A copy of ``model`` (in eval mode) whose BatchNorm statistics are the average over
    ``images`` (3, H, W in [0, 1], resized to ``input_size`` as the evaluation resizes them, in
    batches of ``batch``) of each batch's feature mean and variance; ``model`` is left as it was.

    Only the statistics change: weights, biases and every other layer stay, and the other layers
    run in eval mode (dropout off). A model without BatchNorm statistics (an exported one, whose
    normalisation is folded into its convolutions) is refused in one line naming ``where``."""
    if not images:
        raise ConfigError(f"{where}: no frames to re-estimate BatchNorm statistics on")
    check_number(batch, "the batch of frames for BatchNorm statistics", integer=True, low=1)
    if not batchnorm_layers(model):  # before copying: an exported model's runtime session cannot be copied
        raise ConfigError(f"{where}: has no BatchNorm statistics to re-estimate (an exported model keeps them "
                          "folded into its convolutions); give a run or a checkpoint")
    adapted = copy.deepcopy(model).eval()
    layers = batchnorm_layers(adapted)
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # a cumulative average: every batch weighs the same
        layer.train()
    device = next(adapted.parameters()).device
    for group in _same_size_batches(images, input_size, batch):
        adapted(input_batch(group, input_size).to(device))
    for layer, original in zip(layers, batchnorm_layers(model)):
        layer.momentum = original.momentum
    return adapted.eval()
