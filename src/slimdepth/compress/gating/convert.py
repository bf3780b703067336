"""Converting a network to dynamic gating and back, and steering a gated network.

:func:`add_gating` converts a model **in place** (ResNet blocks and/or named conv+BN pairs, with
the convs that read them), :func:`remove_gating` restores the original modules,
:func:`apply_gating_config` re-applies what a checkpoint's ``gating`` entry records.
:func:`set_density`, :func:`set_gating_mode` and the :func:`gating_mode` context manager steer a
gated network; :func:`gating_l1` is method 2's sparsity penalty on the predicted saliencies.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from slimdepth.compress.gating.modules import (
    GATING_MODES,
    GatedBasicBlock,
    GatedBatchNorm2d,
    GatedBottleneck,
    GatedConv2d,
    GatedModule,
    GatedResBlock,
    SlicedInputConv2d,
    gated_conv_bn,
)
from slimdepth.compress.gating.predictor import SaliencyGate, check_density, check_predictor_init
from slimdepth.compress.graph import ChannelGraph
from slimdepth.errors import ConfigError
from slimdepth.models.backbones.resnet import BasicBlock, Bottleneck

__all__ = [
    "BLOCK_CLASSES",
    "BOTTLENECKS",
    "add_gating",
    "apply_gating_config",
    "gated_layers",
    "gated_modules",
    "gating_config",
    "gating_l1",
    "gating_mode",
    "is_gated",
    "remove_gating",
    "set_density",
    "set_gating_mode",
]

#: ``layers="bottlenecks"``: every ResNet Bottleneck / BasicBlock of the model
BOTTLENECKS = "bottlenecks"


def _check_densities(densities: dict[str, float] | None) -> dict[str, float]:
    """Per-layer density overrides, each checked."""
    return {str(k): check_density(v, f"densities[{k!r}]") for k, v in (densities or {}).items()}


#: the ResNet blocks ``layers="bottlenecks"`` gates, and their gated forms
BLOCK_CLASSES: dict[type, type[GatedResBlock]] = {Bottleneck: GatedBottleneck, BasicBlock: GatedBasicBlock}


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent, _, last = name.rpartition(".")
    return (model.get_submodule(parent) if parent else model), last


def _resolve_density(name: str, density: float, densities: dict[str, float]) -> float:
    """The density of gated conv ``name``: the longest matching key of ``densities`` (the name
    itself or a dotted prefix of it), else ``density``."""
    best, best_len = density, -1
    for key, value in densities.items():
        if (name == key or name.startswith(key + ".") or key == "") and len(key) > best_len:
            best, best_len = value, len(key)
    return best


def _conv_bn_pair(model: nn.Module, name: str) -> tuple[str, str]:
    """(conv name, bn name) for a named conv followed by a BN, or a module whose first child is one."""
    try:
        module = model.get_submodule(name)
    except AttributeError:
        raise ConfigError(f"gating layer {name!r}: no such module") from None
    if not isinstance(module, nn.Conv2d):
        first = next(iter(module.named_children()), None)
        if first is None or not isinstance(first[1], nn.Conv2d):
            raise ConfigError(f"gating layer {name!r} is a {type(module).__name__}, not a Conv2d "
                              "(or a module starting with a Conv2d followed by a BatchNorm2d)")
        name = f"{name}.{first[0]}" if name else first[0]
        module = first[1]
    parent, key = _parent(model, name)
    keys = list(parent._modules)
    pos = keys.index(key)
    nxt = parent._modules[keys[pos + 1]] if pos + 1 < len(keys) else None
    if not isinstance(nxt, nn.BatchNorm2d) or nxt.num_features != module.out_channels:
        raise ConfigError(f"gating layer {name!r}: the Conv2d must be registered immediately before "
                          f"a BatchNorm2d of {module.out_channels} channels in its parent")
    prefix = name.rpartition(".")[0]
    return name, f"{prefix}.{keys[pos + 1]}" if prefix else keys[pos + 1]


def _readers_of(model: nn.Module, convs: Sequence[tuple[str, str]],
                blocks: Sequence[str]) -> dict[str, list[tuple[str, Tensor]]]:
    """For each conv that reads the output of a gated (conv, bn) pair: the producers it reads
    and the input index of each of their channels, from torch-pruning's dependency graph (traced
    on the ungated model). Channels that another layer also feeds (a residual sum), depthwise
    and linear readers, and convs inside gated blocks are left out: they read every channel."""
    gated = {conv: bn for conv, bn in convs}
    readers: dict[str, list[tuple[str, Tensor]]] = {}
    graph = ChannelGraph(model)
    for producer in gated:
        group = graph.group_of(producer)
        if set(group.producers) != {producer, gated[producer]}:
            continue
        out_channels = model.get_submodule(producer).out_channels
        for part in group.consumers:
            layer = model.get_submodule(part.layer)
            if (type(layer) is not nn.Conv2d and part.layer not in gated) or layer.groups != 1 or any(
                    part.layer.startswith(b + ".") for b in blocks):
                continue
            mapping = torch.full((out_channels,), -1, dtype=torch.long)
            mapping[list(part.root_indices)] = torch.tensor(part.indices, dtype=torch.long)
            readers.setdefault(part.layer, []).append((producer, mapping))
    return readers


def is_gated(model: nn.Module) -> bool:
    """Whether ``model`` holds any gated module."""
    return any(isinstance(m, GatedModule) for m in model.modules())


def add_gating(model: nn.Module, density: float = 0.5, layers: str | Sequence[str] = BOTTLENECKS,
               densities: dict[str, float] | None = None, predictor_init: str = "noisy") -> nn.Module:
    """Convert ``model`` **in place** to a gated network and return it.

    ``layers``: ``"bottlenecks"`` (every ResNet Bottleneck/BasicBlock) or a list of dotted
    names -- block names, convs followed by a BN (or ``ConvBNReLU``-like modules), and
    optionally ``"bottlenecks"``. ``densities`` overrides ``density`` per gated conv: a key is a
    conv name (``encoder.layer1.0.conv2``) or a dotted prefix (``encoder.layer4``); the longest
    match wins. The conv/BN modules keep their names, so ungated weights still load (only the
    new ``gate*`` predictors are missing). A ``DepthModel``'s ``config`` records the gating (see
    :func:`apply_gating_config`).
    """
    density = check_density(density)
    densities = _check_densities(densities)
    check_predictor_init(predictor_init)
    if is_gated(model):
        raise ConfigError("the model is already gated; call remove_gating first")
    names = [layers] if isinstance(layers, str) else list(layers)
    if not names:
        raise ConfigError("add_gating: no layers to gate")
    classes = BLOCK_CLASSES
    blocks: list[str] = []
    convs: list[tuple[str, str]] = []
    for name in names:
        if not isinstance(name, str):
            raise ConfigError(f"gating layers must be names, got {name!r}")
        if name == BOTTLENECKS:
            found = [n for n, m in model.named_modules() if type(m) in classes]
            if not found:
                raise ConfigError("layers='bottlenecks' but the model has no ResNet Bottleneck/BasicBlock")
            blocks += [n for n in found if n not in blocks]
            continue
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise ConfigError(f"gating layer {name!r}: no such module") from None
        if type(module) in classes:
            if name not in blocks:
                blocks.append(name)
        else:
            pair = _conv_bn_pair(model, name)
            if pair not in convs:
                convs.append(pair)
    for conv_name, _ in convs:
        if any(conv_name.startswith(b + ".") for b in blocks):
            raise ConfigError(f"gating layer {conv_name!r} lies inside a gated block; gate one or the other")
    targets = [f"{b}.{c}" for b in blocks for c, _ in classes[type(model.get_submodule(b))].pairs]
    targets += [c for c, _ in convs]
    unknown = [k for k in densities if k and not any(t == k or t.startswith(k + ".") for t in targets)]
    if unknown:
        raise ConfigError(f"densities name no gated conv: {', '.join(unknown)}")

    if "" in blocks:
        raise ConfigError("add_gating converts the blocks inside a model, not a lone block")
    readers = _readers_of(model, convs, blocks) if convs else {}  # traced on the still ungated model
    for name in blocks:
        block = model.get_submodule(name)
        cls = classes[type(block)]
        ds = [_resolve_density(f"{name}.{c}", density, densities) for c, _ in cls.pairs]
        parent, key = _parent(model, name)
        setattr(parent, key, cls(block, name, ds, predictor_init))
    for conv_name, bn_name in convs:
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        gconv, gbn = gated_conv_bn(conv, bn, conv_name, _resolve_density(conv_name, density, densities), predictor_init)
        parent, key = _parent(model, conv_name)
        setattr(parent, key, gconv)
        parent, key = _parent(model, bn_name)
        setattr(parent, key, gbn)
    for reader_name, links in readers.items():
        reader = model.get_submodule(reader_name)
        if not isinstance(reader, GatedConv2d):
            reader = SlicedInputConv2d.from_conv(reader)
            parent, key = _parent(model, reader_name)
            setattr(parent, key, reader)
        for producer_name, mapping in links:
            reader.add_reader(model.get_submodule(producer_name), mapping)
    _record_config(model, {"density": density, "layers": names[0] if isinstance(layers, str) else names,
                           "densities": densities})
    return model


def remove_gating(model: nn.Module) -> nn.Module:
    """Undo :func:`add_gating` in place: the original module types with the same parameters;
    the predictors are dropped. Returns ``model``."""
    replacements: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if isinstance(module, (GatedResBlock, GatedConv2d, GatedBatchNorm2d, SlicedInputConv2d)):
            if not name:
                raise ConfigError("remove_gating needs the model that contains the gated modules")
            replacements.append((name, module.to_original()))
    for name, module in replacements:
        parent, key = _parent(model, name)
        setattr(parent, key, module)
    config = getattr(model, "config", None)
    if isinstance(config, dict):
        config.pop("gating", None)
    return model


def _record_config(model: nn.Module, gating: dict[str, Any]) -> None:
    config = getattr(model, "config", None)
    if isinstance(config, dict):
        model.config = {**config, "gating": copy.deepcopy(gating)}


def gating_config(model: nn.Module) -> dict[str, Any] | None:
    """The ``gating`` entry a gated ``DepthModel`` carries in its config (None when ungated)."""
    config = getattr(model, "config", None)
    return copy.deepcopy(config.get("gating")) if isinstance(config, dict) and config.get("gating") else None


def apply_gating_config(model: nn.Module, config: dict[str, Any] | None) -> nn.Module:
    """Re-apply gating described by a checkpoint: ``config`` is a model config holding a
    ``"gating"`` entry, or that entry itself (``{"density", "layers", "densities"}``).

    No-op when there is no gating entry. The predictors get fresh values; load the checkpoint's
    weights afterwards.
    """
    if not config:
        return model
    if not isinstance(config, dict):
        raise ConfigError(f"gating config must be a dict, got {config!r}")
    gating = config["gating"] if "gating" in config else (config if "density" in config else None)
    if gating is None:
        return model
    if not isinstance(gating, dict) or "density" not in gating:
        raise ConfigError(f"gating config must be a dict with 'density' (and 'layers', 'densities'), got {gating!r}")
    unknown = set(gating) - {"density", "layers", "densities"}
    if unknown:
        raise ConfigError(f"gating config has unknown keys {sorted(unknown)}")
    return add_gating(model, gating["density"], gating.get("layers", BOTTLENECKS), gating.get("densities") or None)


def gated_modules(model: nn.Module) -> list[tuple[str, GatedModule]]:
    """Every gated module of ``model`` with its name."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, GatedModule)]


def _all_gates(model: nn.Module) -> list[SaliencyGate]:
    return [m for m in model.modules() if isinstance(m, SaliencyGate)]


def gated_layers(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Each gated conv by name: ``channels``, ``density`` and ``k``."""
    return {g.target: {"channels": g.out_features, "density": g.density, "k": g.k} for g in _all_gates(model)}


def set_density(model: nn.Module, density: float, densities: dict[str, float] | None = None) -> nn.Module:
    """Set every gate's density to ``density``, then apply the per-layer ``densities`` overrides
    (same keys as :func:`add_gating`). Updates the recorded config. Returns ``model``."""
    density = check_density(density)
    densities = _check_densities(densities)
    gates = _all_gates(model)
    if not gates:
        raise ConfigError("set_density: the model is not gated")
    unknown = [k for k in densities if k and not any(g.target == k or g.target.startswith(k + ".") for g in gates)]
    if unknown:
        raise ConfigError(f"densities name no gated conv: {', '.join(unknown)}")
    for gate in gates:
        gate.density = _resolve_density(gate.target, density, densities)
    previous = gating_config(model) or {"layers": BOTTLENECKS}
    _record_config(model, {"density": density, "layers": previous.get("layers", BOTTLENECKS), "densities": densities})
    return model


def set_gating_mode(model: nn.Module, mode: str) -> nn.Module:
    """Set the execution path of every gated module (one of :data:`GATING_MODES`)."""
    if mode not in GATING_MODES:
        raise ConfigError(f"gating mode must be one of {', '.join(GATING_MODES)}, got {mode!r}")
    for _, module in gated_modules(model):
        module.execution_mode = mode
    return model


@contextmanager
def gating_mode(model: nn.Module, mode: str) -> Iterator[nn.Module]:
    """Temporarily run every gated module in ``mode`` (e.g. ``"off"`` for the dense network)."""
    previous = [(m, m.execution_mode) for _, m in gated_modules(model)]
    set_gating_mode(model, mode)
    try:
        yield model
    finally:
        for module, old in previous:
            module.execution_mode = old


def gating_l1(model: nn.Module) -> Tensor:
    """Mean over gated layers of mean ``|g(x)|`` from the last forward (method 2 adds
    ``lambda * gating_l1(model)`` to the depth loss). Differentiable w.r.t. the predictors."""
    gates = _all_gates(model)
    if not gates:
        raise ConfigError("gating_l1: the model is not gated")
    terms = [g.last_saliency.abs().mean() for g in gates if g.last_saliency is not None]
    if not terms:
        raise ConfigError("gating_l1: run a forward pass first")
    return torch.stack(terms).mean()
