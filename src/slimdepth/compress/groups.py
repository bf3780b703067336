"""Coupled output channels of a network, found with torch-pruning's dependency graph.

Removing output channel *c* of a convolution also removes input channel *c* of every layer that
reads it, the matching BatchNorm entries, the same channel of every other layer added to it
(residual connections), the channel of a depthwise convolution fed by it (whose output channel is
then gone too), and the right slice of a concatenation (U-Net skips: the consumer's input index is
offset). torch-pruning's :class:`~torch_pruning.DependencyGraph` finds these couplings by tracing
autograd; a :class:`ChannelGroup` is one such set of coupled channels, named by its *root*: the
first non-depthwise producer convolution in module order.

:func:`channel_groups` lists the groups that may be pruned. Left out are groups whose channels are
visible at the model's output (the 1-channel depth convs, segmentation logits), groups of a single
channel, and groups touching a layer the caller names in ``ignore``. The image's 3 input channels
are never a group: only output channels of layers are pruned.

:func:`prune_channels` removes channels for real with ``DependencyGraph.get_pruning_group(...)
.prune()``, so residual adds, concatenated skips, depthwise convs and BatchNorms stay consistent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from torch_pruning import ops as tp_ops
from torch_pruning.pruner import function as tp_fn

from slimdepth.deploy.cost import eval_mode, normalise_size
from slimdepth.errors import ConfigError

__all__ = [
    "DEFAULT_EXAMPLE_SIZE",
    "ChannelGroup",
    "ChannelSlice",
    "InterpolationSlice",
    "LayerInfo",
    "channel_groups",
    "groups_of",
    "prune_channels",
    "trace_layers",
]

#: input size (H, W) of the example image traced when none is given: small, so tracing is quick
DEFAULT_EXAMPLE_SIZE: tuple[int, int] = (64, 96)
#: model outputs traced; ``features`` is left out on purpose: decoder features stay prunable
TRACED_OUTPUTS: tuple[str, ...] = ("depth", "scales", "seg")

_CONV_OUT = (tp_fn.prune_conv_out_channels, tp_fn.prune_linear_out_channels)
_CONV_IN = (tp_fn.prune_conv_in_channels, tp_fn.prune_linear_in_channels)
_DEPTHWISE = tp_fn.prune_depthwise_conv_out_channels  # in and out are one function
_BATCHNORM = tp_fn.prune_batchnorm_out_channels  # in and out are one function

# autograd node of a resize -> aten op name used by slimdepth.deploy.cost's MAC formulas
_RESIZE_OPS: dict[str, str] = {
    "UpsampleNearest1DBackward0": "upsample_nearest1d",
    "UpsampleNearest2DBackward0": "upsample_nearest2d",
    "UpsampleNearest3DBackward0": "upsample_nearest3d",
    "UpsampleNearestExact1DBackward0": "_upsample_nearest_exact1d",
    "UpsampleNearestExact2DBackward0": "_upsample_nearest_exact2d",
    "UpsampleNearestExact3DBackward0": "_upsample_nearest_exact3d",
    "UpsampleLinear1DBackward0": "upsample_linear1d",
    "UpsampleBilinear2DBackward0": "upsample_bilinear2d",
    "UpsampleTrilinear3DBackward0": "upsample_trilinear3d",
    "UpsampleBicubic2DBackward0": "upsample_bicubic2d",
    "UpsampleBilinear2DAaBackward0": "_upsample_bilinear2d_aa",
    "UpsampleBicubic2DAaBackward0": "_upsample_bicubic2d_aa",
}


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


# --------------------------------------------------------------------------------------------
# tracing helpers


def _device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    return torch.device("cpu")


def _example(model: nn.Module, size: tuple[int, int]) -> torch.Tensor:
    """A fixed random image batch (1, 3, H, W) in [0, 1] on the model's device."""
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0))
    return x.to(_device(model))


def _forward_all(model: nn.Module, x: torch.Tensor) -> Any:
    """Run the model asking for every output whose channel count is fixed by the task."""
    from slimdepth.models.base import DepthModel

    if isinstance(model, DepthModel):
        return model(x, outputs=TRACED_OUTPUTS)
    return model(x)


def _flatten(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for item in out for t in _flatten(item)]
    return []


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
def _recording_layers(model: nn.Module) -> Iterator[dict[str, LayerInfo]]:
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
    size = normalise_size(example_size)
    with eval_mode(model), torch.no_grad(), _recording_layers(model) as infos:
        _forward_all(model, _example(model, size))
    return infos


# --------------------------------------------------------------------------------------------
# dependency graph


@dataclass
class _Analysis:
    """A dependency graph with its groups (internal: shared by masks, pruning and baselines)."""

    model: nn.Module
    graph: tp.DependencyGraph
    layers: dict[str, LayerInfo]
    groups: list[ChannelGroup]
    tp_groups: dict[str, Any]  # root name -> torch-pruning group with every channel
    input_size: tuple[int, int]


def _build_graph(model: nn.Module, size: tuple[int, int]) -> tuple[tp.DependencyGraph, dict[str, LayerInfo]]:
    """torch-pruning's dependency graph of ``model`` (traced in eval mode) and its layer table.

    The graph gets ``output_grad_fns``: the autograd nodes of the traced outputs. torch-pruning
    adds an output node only where an output is not directly a layer's output (a segmentation
    conv's logits are), so groups reaching the output are recognised by these.
    """
    x = _example(model, size)
    roots: set[Any] = set()

    def outputs(out: Any) -> list[torch.Tensor]:
        flat = _flatten(out)
        roots.update(t.grad_fn for t in flat if t.grad_fn is not None)
        return flat

    with eval_mode(model), torch.enable_grad(), _recording_layers(model) as infos:
        graph = tp.DependencyGraph().build_dependency(
            model, example_inputs=x, forward_fn=_forward_all, output_transform=outputs, verbose=False)
    graph.output_grad_fns = roots
    return graph, infos


def _reaches_output(graph: tp.DependencyGraph, group: Any) -> bool:
    """Whether the channels of ``group`` reach a model output (not merely a layer reading them)."""
    roots = getattr(graph, "output_grad_fns", set())
    return any(item.dep.target.type == tp_ops.OPTYPE.OUTPUT
               or (item.dep.target.grad_fn in roots and item.dep.handler not in _CONV_IN) for item in group)


def _ignored_names(model: nn.Module, ignore: Iterable[str | nn.Module]) -> set[str]:
    """Names of every module covered by ``ignore`` (names are prefixes: a block covers its layers)."""
    from slimdepth.models.normalize import FoldedConv2d

    names = {m: n for n, m in model.named_modules()}
    prefixes: list[str] = []
    for item in ignore:
        if isinstance(item, nn.Module):
            if item not in names:
                raise ConfigError(f"ignored module {type(item).__name__} is not part of the model")
            prefixes.append(names[item])
        elif isinstance(item, str):
            try:
                model.get_submodule(item)
            except AttributeError:
                raise ConfigError(f"ignore: the model has no module named {item!r}") from None
            prefixes.append(item)
        else:
            raise ConfigError(f"ignore takes module names or modules, got {type(item).__name__}")
    # a folded first conv carries a per-channel constant (its border correction) that
    # torch-pruning does not know about: its output channels stay as they are
    prefixes += [n for n, m in model.named_modules() if isinstance(m, FoldedConv2d)]
    covered = set()
    for name in names.values():
        if any(p == "" or name == p or name.startswith(p + ".") for p in prefixes):
            covered.add(name)
    return covered


def _resize_slice(node: Any, root_idxs: Sequence[int]) -> InterpolationSlice | None:
    """The channel-proportional MACs of a resize node in a group (None for other ops)."""
    from slimdepth.deploy.cost import _INTERPOLATION_FORMULAS

    grad_fn = node.grad_fn
    op = _RESIZE_OPS.get(grad_fn.name()) if grad_fn is not None and hasattr(grad_fn, "name") else None
    if op is None or op not in _INTERPOLATION_FORMULAS:
        return None
    in_shape = list(getattr(grad_fn, "_saved_self_sym_sizes", ()) or ())
    out_size = list(getattr(grad_fn, "_saved_output_size", ()) or ())
    if len(in_shape) < 3 or not out_size:
        return None
    in_shape = [int(in_shape[0]), 1] + [int(s) for s in in_shape[2:]]
    out_shape = [in_shape[0], 1] + [int(s) for s in out_size]
    per_channel = _INTERPOLATION_FORMULAS[op](in_shape, out_shape=out_shape) // 2
    return InterpolationSlice(op, int(per_channel), tuple(int(i) for i in root_idxs))


def _describe(graph: tp.DependencyGraph, group: Any, root: str, size: tuple[int, int],
              layers: Mapping[str, LayerInfo], names: Mapping[nn.Module, str],
              order: Mapping[str, int]) -> ChannelGroup:
    """A :class:`ChannelGroup` from a torch-pruning group rooted at ``root`` (all channels)."""
    producers: list[str] = []
    depthwise: list[str] = []
    consumers: list[ChannelSlice] = []
    resizes: list[InterpolationSlice] = []
    channels = len(group[0].idxs)
    for item in group:
        dep, idxs, root_idxs = item.dep, list(item.idxs), list(item.root_idxs)
        module, handler = dep.target.module, dep.handler
        name = names.get(module) if isinstance(module, nn.Module) else None
        if name is None:  # an operation (add, cat, resize, activation...)
            if dep.target.type == tp_ops.OPTYPE.ELEMENTWISE:
                piece = _resize_slice(dep.target, root_idxs)
                if piece is not None:
                    resizes.append(piece)
            continue
        if handler in _CONV_IN:
            consumers.append(ChannelSlice(name, tuple(idxs), tuple(root_idxs)))
            continue
        if handler == _DEPTHWISE or handler == _BATCHNORM or handler in _CONV_OUT:
            if sorted(idxs) != sorted(root_idxs) or len(idxs) != channels:
                raise ConfigError(f"{name}: output channels coupled to {root} through an index mapping; "
                                  "such groups are not supported")
            producers.append(name)
            if handler == _DEPTHWISE:
                depthwise.append(name)
        else:  # other parameterised layers (LayerNorm, PReLU...): pruned by torch-pruning, not masked
            producers.append(name)
    producers.sort(key=lambda n: order[n])
    consumers.sort(key=lambda c: order[c.layer])

    # the mask goes after a BN when a conv feeds only that BN, else after the conv itself
    in_group = set(producers)
    points: list[str] = []
    for name in producers:
        module = graph.model.get_submodule(name)
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            points.append(name)
        elif isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
            outs = graph.module2node[module].outputs
            followed_by_bn = bool(outs) and all(
                isinstance(o.module, nn.modules.batchnorm._BatchNorm) and names.get(o.module) in in_group for o in outs)
            if not followed_by_bn:
                points.append(name)
    sizes = {n: layers[n].out_size for n in producers + [c.layer for c in consumers]
             if n in layers and layers[n].kind == "conv"}
    return ChannelGroup(root=root, channels=channels, producers=tuple(producers), consumers=tuple(consumers),
                        depthwise=tuple(depthwise), mask_points=tuple(points), interpolations=tuple(resizes),
                        out_sizes=sizes, input_size=size)


def groups_of(model: nn.Module, roots: Sequence[str],
              example_size: int | Sequence[int] = DEFAULT_EXAMPLE_SIZE) -> dict[str, ChannelGroup]:
    """The group of coupled channels of each conv named in ``roots`` (all its output channels),
    without enumerating every group of the model (which :func:`channel_groups` does, and which
    takes torch-pruning a minute on a ResNet U-Net). Groups are described as by
    :func:`channel_groups` but not filtered: check ``producers`` before relying on one."""
    size = normalise_size(example_size)
    graph, layers = _build_graph(model, size)
    names = {m: n for n, m in model.named_modules()}
    order = {n: i for i, n in enumerate(names.values())}
    found: dict[str, ChannelGroup] = {}
    for root in roots:
        module = model.get_submodule(root)
        if not isinstance(module, nn.Conv2d):
            raise ConfigError(f"{root}: not a Conv2d")
        full = graph.get_pruning_group(module, tp_fn.prune_conv_out_channels, list(range(module.out_channels)))
        found[root] = _describe(graph, full, root, size, layers, names, order)
    return found


def _analyse(model: nn.Module, example_size: int | Sequence[int] = DEFAULT_EXAMPLE_SIZE,
             ignore: Iterable[str | nn.Module] = ()) -> _Analysis:
    """Build the dependency graph of ``model`` and describe its prunable groups."""
    size = normalise_size(example_size)
    ignored = _ignored_names(model, ignore)
    graph, layers = _build_graph(model, size)
    names = {m: n for n, m in model.named_modules()}
    order = {n: i for i, n in enumerate(names.values())}
    groups: list[ChannelGroup] = []
    tp_groups: dict[str, Any] = {}
    for found in graph.get_all_groups(root_module_types=(nn.Conv2d,)):
        if _reaches_output(graph, found):
            continue  # channels visible at the model output: depth, segmentation classes
        convs = [names[item.dep.target.module] for item in found
                 if item.dep.handler in (tp_fn.prune_conv_out_channels, _DEPTHWISE)
                 and isinstance(item.dep.target.module, nn.Conv2d)]
        if not convs:
            continue
        convs.sort(key=lambda n: order[n])
        dense = [n for n in convs if not layers.get(n) or not layers[n].depthwise]
        root = (dense or convs)[0]
        module = model.get_submodule(root)
        full = graph.get_pruning_group(module, tp_fn.prune_conv_out_channels, list(range(module.out_channels)))
        group = _describe(graph, full, root, size, layers, names, order)
        if group.channels < 2 or any(n in ignored for n in group.layers):
            continue
        groups.append(group)
        tp_groups[root] = full
    groups.sort(key=lambda g: order[g.root])
    return _Analysis(model, graph, layers, groups, tp_groups, size)


def channel_groups(model: nn.Module, example_size: int | Sequence[int] = DEFAULT_EXAMPLE_SIZE,
                   ignore: Iterable[str | nn.Module] = ()) -> list[ChannelGroup]:
    """The prunable groups of coupled output channels of ``model``, in module order of their roots.

    The model is traced in eval mode on a random (1, 3, H, W) image in [0, 1] (its training flags
    are restored afterwards); a :class:`~slimdepth.models.base.DepthModel` is asked for its
    ``depth``, ``scales`` and ``seg`` outputs, whose channel counts are fixed, so the groups
    reaching them are left out. ``ignore`` names modules (or passes them) whose weights must
    keep their shape: every group touching one of their layers, as producer or consumer, is left
    out. A folded first convolution is always left alone.
    """
    return _analyse(model, example_size, ignore).groups


# --------------------------------------------------------------------------------------------
# physical removal


def _prune_with_graph(graph: tp.DependencyGraph, model: nn.Module, removal: Mapping[str, Sequence[int]]) -> None:
    """Remove ``removal[root]`` (group channel indices) from each group, with one graph.

    Every request is checked before anything is pruned, so a bad one leaves the model intact.
    """
    names = {m: n for n, m in model.named_modules()}
    requests: list[tuple[nn.Module, list[int]]] = []
    touched: dict[str, str] = {}
    for root, idxs in removal.items():
        idxs = sorted({int(i) for i in idxs})
        if not idxs:
            continue
        try:
            module = model.get_submodule(root)
        except AttributeError:
            raise ConfigError(f"prune_channels: the model has no layer {root!r}") from None
        if not isinstance(module, nn.Conv2d) or module not in graph.module2node:
            raise ConfigError(f"prune_channels: {root!r} is not a convolution that runs in the forward pass")
        channels = module.out_channels
        if idxs[0] < 0 or idxs[-1] >= channels:
            raise ConfigError(f"prune_channels: {root!r} has {channels} output channels, cannot remove {idxs[-1]}")
        if len(idxs) >= channels:
            raise ConfigError(f"prune_channels: removing all {channels} channels of {root!r} would cut the network")
        group = graph.get_pruning_group(module, tp_fn.prune_conv_out_channels, idxs)
        if _reaches_output(graph, group):
            raise ConfigError(f"prune_channels: the channels of {root!r} are model outputs and cannot be removed")
        reshaped = [names[item.dep.target.module] for item in group
                    if item.dep.target.module in names and item.dep.handler not in _CONV_IN]
        for name in reshaped:
            if name in touched:
                raise ConfigError(f"prune_channels: {root!r} and {touched[name]!r} are the same group; name it once")
        for name in reshaped:
            touched[name] = root
        requests.append((module, idxs))
    # index mappings through concatenations follow the widths pruned so far: regroup each time
    for module, idxs in requests:
        graph.get_pruning_group(module, tp_fn.prune_conv_out_channels, idxs).prune()


def prune_channels(model: nn.Module, removal: Mapping[str, Sequence[int]],
                   example_size: int | Sequence[int] = DEFAULT_EXAMPLE_SIZE) -> nn.Module:
    """Remove output channels for real; returns ``model``, pruned in place.

    ``removal`` maps a group root (see :func:`channel_groups`; any producer conv of the group
    works) to the channel indices to remove, counted in the unpruned group. All couplings are
    resolved by torch-pruning's dependency graph, traced at ``example_size``. Cached channel
    counts such as ``encoder.channels`` are refreshed, and a zoo model's ``config`` records the
    new layer widths under :data:`~slimdepth.compress.widths.WIDTHS_KEY` so it can be rebuilt.
    """
    from slimdepth.compress.widths import note_widths, refresh_channel_attributes

    size = normalise_size(example_size)
    if not any(idxs for idxs in removal.values()):
        return model
    graph, _ = _build_graph(model, size)
    with torch.no_grad():
        _prune_with_graph(graph, model, removal)
    refresh_channel_attributes(model, size)
    note_widths(model)
    return model

