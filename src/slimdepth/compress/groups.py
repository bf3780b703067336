"""Channel groups: the sets of coupled output channels that are pruned (or masked) as a unit.

Removing output channel *c* of a convolution also removes input channel *c* of every layer that
reads it, the matching BatchNorm entries, the same channel of every other layer added to it
(residual connections), the channel of a depthwise convolution fed by it (whose output channel is
then gone too), and the right slice of a concatenation (U-Net skips: the consumer's input index is
offset). A :class:`ChannelGroup` is one such set, named by its *root*: the first non-depthwise
producer convolution in module order. The groups are found by torch-pruning's dependency graph
(:class:`~slimdepth.compress.graph.ChannelGraph`); this module only says what one is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from slimdepth.compress.layers import DEFAULT_EXAMPLE_SIZE

__all__ = ["ChannelGroup", "ChannelSlice", "InterpolationSlice"]


@dataclass(frozen=True)
class ChannelSlice:
    """Input channels of a consumer layer that belong to a group.

    ``indices[i]`` is the layer's input channel carrying group channel ``root_indices[i]``; in a
    concatenation the indices are offset by the channels concatenated before.
    """

    layer: str
    indices: tuple[int, ...]
    root_indices: tuple[int, ...]


@dataclass(frozen=True)
class InterpolationSlice:
    """A resize of (some of) a group's channels: its MACs grow with the number of channels kept."""

    op: str
    macs_per_channel: int
    root_indices: tuple[int, ...]


@dataclass(frozen=True)
class ChannelGroup:
    """One set of coupled output channels that is pruned as a unit.

    ``producers``: the convs (depthwise ones included), BatchNorms and linear layers whose output
    channels are these channels, in module order. ``consumers``: the convs and linear layers
    reading them as (part of) their input. ``depthwise``: the depthwise convs among the producers
    (their input is these channels too). ``mask_points``: where a channel mask must multiply the
    output so that a masked channel is exactly zero for every consumer: after the BatchNorm when
    a conv is followed by one, else after the conv itself. ``out_sizes``: spatial output size of
    every producer/consumer conv in the traced pass at ``input_size``.
    """

    root: str
    channels: int
    producers: tuple[str, ...]
    consumers: tuple[ChannelSlice, ...]
    depthwise: tuple[str, ...]
    mask_points: tuple[str, ...]
    interpolations: tuple[InterpolationSlice, ...] = ()
    out_sizes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    input_size: tuple[int, int] = DEFAULT_EXAMPLE_SIZE

    @property
    def layers(self) -> tuple[str, ...]:
        """Every layer whose weights change shape when this group is pruned."""
        return tuple(dict.fromkeys(self.producers + tuple(c.layer for c in self.consumers)))
