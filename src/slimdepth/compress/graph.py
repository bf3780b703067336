"""The channel graph of a network: its coupled channel groups, and the one place channels are removed.

:class:`ChannelGraph` traces a model once with torch-pruning's
:class:`~torch_pruning.DependencyGraph` (in eval mode, on a fixed random image) and answers
everything the compression wing asks of its structure:

* :attr:`ChannelGraph.groups` -- the prunable :class:`~slimdepth.compress.groups.ChannelGroup`
  list, in module order of their roots. Left out are groups whose channels are visible at the
  model's output (the 1-channel depth convs, segmentation logits), groups of a single channel,
  groups touching a layer named in ``ignore``, and the folded first convolution. The image's 3
  input channels are never a group: only output channels of layers are pruned.
* :meth:`ChannelGraph.group_of` -- the group of one named conv, without enumerating every group
  (which takes torch-pruning a minute on a ResNet U-Net);
* :meth:`ChannelGraph.importance` -- a torch-pruning group importance per channel of each group;
* :meth:`ChannelGraph.prune` -- channels removed for real with
  ``DependencyGraph.get_pruning_group(...).prune()``, so residual adds, concatenated skips,
  depthwise convs and BatchNorms stay consistent; cached channel counts are refreshed and a zoo
  model's config records its new widths. Every method of the wing prunes through it.

:func:`channel_groups` and :func:`prune_channels` are one-call shortcuts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from torch_pruning import ops as tp_ops
from torch_pruning.pruner import function as tp_fn

from slimdepth.compress.groups import ChannelGroup, ChannelSlice, InterpolationSlice
from slimdepth.compress.layers import (
    DEFAULT_EXAMPLE_SIZE,
    LayerInfo,
    example_image,
    forward_traced,
    recording_layers,
)
from slimdepth.deploy.cost import INTERPOLATION_OPS, interpolation_macs
from slimdepth.errors import ConfigError
from slimdepth.models.base import eval_mode
from slimdepth.models.normalize import FoldedConv2d
from slimdepth.models.widths import note_widths, refresh_channel_attributes
from slimdepth.options import parse_size

__all__ = ["ChannelGraph", "channel_groups", "prune_channels"]

_CONV_OUT = (tp_fn.prune_conv_out_channels, tp_fn.prune_linear_out_channels)
_CONV_IN = (tp_fn.prune_conv_in_channels, tp_fn.prune_linear_in_channels)
_DEPTHWISE = tp_fn.prune_depthwise_conv_out_channels  # in and out are one function
_BATCHNORM = tp_fn.prune_batchnorm_out_channels  # in and out are one function

# autograd node of a resize -> the aten op whose MACs slimdepth.deploy.cost counts
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



def _flatten(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for item in out for t in _flatten(item)]
    return []


def _build_graph(model: nn.Module, size: tuple[int, int]) -> tuple[tp.DependencyGraph, dict[str, LayerInfo]]:
    """torch-pruning's dependency graph of ``model`` (traced in eval mode) and its layer table.

    The graph gets ``output_grad_fns``: the autograd nodes of the traced outputs. torch-pruning
    adds an output node only where an output is not directly a layer's output (a segmentation
    conv's logits are), so groups reaching the output are recognised by these.
    """
    x = example_image(model, size)
    roots: set[Any] = set()

    def outputs(out: Any) -> list[torch.Tensor]:
        flat = _flatten(out)
        roots.update(t.grad_fn for t in flat if t.grad_fn is not None)
        return flat

    with eval_mode(model), torch.enable_grad(), recording_layers(model) as infos:
        graph = tp.DependencyGraph().build_dependency(
            model, example_inputs=x, forward_fn=forward_traced, output_transform=outputs, verbose=False)
    graph.output_grad_fns = roots
    return graph, infos


def _reaches_output(graph: tp.DependencyGraph, group: Any) -> bool:
    """Whether the channels of ``group`` reach a model output (not merely a layer reading them)."""
    roots = getattr(graph, "output_grad_fns", set())
    return any(item.dep.target.type == tp_ops.OPTYPE.OUTPUT
               or (item.dep.target.grad_fn in roots and item.dep.handler not in _CONV_IN) for item in group)


def _ignored_names(model: nn.Module, ignore: Iterable[str | nn.Module]) -> set[str]:
    """Names of every module covered by ``ignore`` (names are prefixes: a block covers its layers)."""
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
    grad_fn = node.grad_fn
    op = _RESIZE_OPS.get(grad_fn.name()) if grad_fn is not None and hasattr(grad_fn, "name") else None
    if op is None or op not in INTERPOLATION_OPS:
        return None
    in_shape = list(getattr(grad_fn, "_saved_self_sym_sizes", ()) or ())
    out_size = list(getattr(grad_fn, "_saved_output_size", ()) or ())
    if len(in_shape) < 3 or not out_size:
        return None
    in_shape = [int(in_shape[0]), 1] + [int(s) for s in in_shape[2:]]
    out_shape = [in_shape[0], 1] + [int(s) for s in out_size]
    per_channel = interpolation_macs(op, in_shape, out_shape)
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


def _remove(graph: tp.DependencyGraph, model: nn.Module, removal: Mapping[str, Sequence[int]]) -> None:
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


class ChannelGraph:
    """torch-pruning's dependency graph of ``model`` traced at ``example_size``, with its groups.

    ``ignore`` names modules (or passes them) whose weights must keep their shape: every group
    touching one of their layers, as producer or consumer, is left out of :attr:`groups`. The
    graph describes the model as it was traced: after :meth:`prune` build a new one.
    """

    def __init__(self, model: nn.Module, example_size: int | Sequence[int] = DEFAULT_EXAMPLE_SIZE,
                 ignore: Iterable[str | nn.Module] = ()) -> None:
        self.model = model
        self.input_size = parse_size(example_size, "example_size")
        self._ignored = _ignored_names(model, ignore)
        self.graph, self.layers = _build_graph(model, self.input_size)
        self._names = {m: n for n, m in model.named_modules()}
        self._order = {n: i for i, n in enumerate(self._names.values())}
        self._torch_groups: dict[str, Any] = {}  # root name -> torch-pruning group with every channel
        self._pruned = False

    def _full_group(self, root: str) -> Any:
        """torch-pruning's group of every output channel of conv ``root``."""
        module = self.model.get_submodule(root)
        return self.graph.get_pruning_group(module, tp_fn.prune_conv_out_channels, list(range(module.out_channels)))

    def group_of(self, root: str) -> ChannelGroup:
        """The group of coupled channels of conv ``root`` (all its output channels), described as
        in :attr:`groups` but not filtered: check ``producers`` before relying on one."""
        try:
            module = self.model.get_submodule(root)
        except AttributeError:
            raise ConfigError(f"{root}: no such layer") from None
        if not isinstance(module, nn.Conv2d):
            raise ConfigError(f"{root}: not a Conv2d")
        return _describe(self.graph, self._full_group(root), root, self.input_size, self.layers, self._names, self._order)

    @cached_property
    def groups(self) -> list[ChannelGroup]:
        """The prunable groups of coupled output channels, in module order of their roots."""
        names, order, layers = self._names, self._order, self.layers
        groups: list[ChannelGroup] = []
        for found in self.graph.get_all_groups(root_module_types=(nn.Conv2d,)):
            if _reaches_output(self.graph, found):
                continue  # channels visible at the model output: depth, segmentation classes
            convs = [names[item.dep.target.module] for item in found
                     if item.dep.handler in (tp_fn.prune_conv_out_channels, _DEPTHWISE)
                     and isinstance(item.dep.target.module, nn.Conv2d)]
            if not convs:
                continue
            convs.sort(key=lambda n: order[n])
            dense = [n for n in convs if not layers.get(n) or not layers[n].depthwise]
            root = (dense or convs)[0]
            full = self._full_group(root)
            group = _describe(self.graph, full, root, self.input_size, layers, names, order)
            if group.channels < 2 or any(n in self._ignored for n in group.layers):
                continue
            groups.append(group)
            self._torch_groups[root] = full
        groups.sort(key=lambda g: order[g.root])
        return groups

    def importance(self, scorer: Any = None) -> dict[str, torch.Tensor]:
        """Per group root, one score per channel from a torch-pruning group importance
        (default: ``MagnitudeImportance(p=1)``, the L1 norm of every coupled weight slice,
        averaged over the layers and normalised by the group mean), as float64 on the CPU."""
        scorer = scorer if scorer is not None else tp.importance.MagnitudeImportance(p=1)
        scores: dict[str, torch.Tensor] = {}
        for g in self.groups:
            imp = scorer(self._torch_groups[g.root])
            if imp is None or len(imp) != g.channels:
                raise ConfigError(f"no importance for the channels of {g.root!r}")
            scores[g.root] = imp.detach().to("cpu", torch.float64)
        return scores

    def prune(self, removal: Mapping[str, Sequence[int]]) -> nn.Module:
        """Remove output channels for real; returns the model, pruned in place.

        ``removal`` maps a group root (any producer conv of the group works) to the channel
        indices to remove, counted in the unpruned group. Every request is checked before
        anything changes. Cached channel counts such as ``encoder.channels`` are refreshed, and a
        zoo model's ``config`` records the new layer widths under
        :data:`~slimdepth.models.widths.WIDTHS_KEY` so that it can be rebuilt.
        """
        if self._pruned:
            raise ConfigError("this channel graph describes the model before it was pruned; build a new one")
        removal = {k: v for k, v in removal.items() if len(v)}
        if not removal:
            return self.model
        with torch.no_grad():
            _remove(self.graph, self.model, removal)
        self._pruned = True
        refresh_channel_attributes(self.model, self.input_size)
        note_widths(self.model)
        return self.model


def channel_groups(model: nn.Module, example_size: int | Sequence[int] = DEFAULT_EXAMPLE_SIZE,
                   ignore: Iterable[str | nn.Module] = ()) -> list[ChannelGroup]:
    """The prunable groups of ``model`` (:attr:`ChannelGraph.groups`).

    The model is traced in eval mode on a random (1, 3, H, W) image in [0, 1] (its training flags
    are restored afterwards); a :class:`~slimdepth.models.base.DepthModel` is asked for its
    ``depth``, ``scales`` and ``seg`` outputs, whose channel counts are fixed, so the groups
    reaching them are left out.
    """
    return ChannelGraph(model, example_size, ignore).groups


def prune_channels(model: nn.Module, removal: Mapping[str, Sequence[int]],
                   example_size: int | Sequence[int] = DEFAULT_EXAMPLE_SIZE) -> nn.Module:
    """Remove output channels for real (:meth:`ChannelGraph.prune`, traced at ``example_size``);
    returns ``model``, pruned in place."""
    if not any(len(idxs) for idxs in removal.values()):
        return model
    return ChannelGraph(model, example_size).prune(removal)
