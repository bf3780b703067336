"""Layer widths of a pruned network: record them, and rebuild the architecture from them.

A pruned zoo model differs from the architecture its ``config`` builds only in the channel
counts of some layers. :func:`record_widths` lists those differences (JSON-ready);
:func:`apply_widths` resizes the same layers of a freshly built default model, keeping every
other hyper-parameter (kernel, stride, padding, dilation, bias, padding mode, BatchNorm eps and
momentum), so the pruned weights load with strict key and shape checking. A checkpoint sidecar
stores the record under :data:`WIDTHS_KEY` of its ``model`` entry.

Normalisation folding keeps working: a folded first convolution (``FoldedConv2d``) is recorded
under the plain conv's name, so the widths are applied to the unfolded default model and the
model is folded afterwards, as :func:`slimdepth.loader.build_from_config` does.

A model knows its widths: this module belongs to ``models/`` and imports nothing of the layers
above it. Modules marked :class:`~slimdepth.models.base.Auxiliary` (a gating predictor, a
distillation adapter) are not layers of the architecture and are passed over.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from slimdepth.errors import ConfigError
from slimdepth.options import check_number
from slimdepth.models.base import OUTPUT_KEYS, Auxiliary, eval_mode, run_outputs
from slimdepth.models.normalize import FoldedConv2d
from slimdepth.models.zoo import MODELS, build_model

__all__ = ["WIDTHS_KEY", "apply_widths", "default_architecture", "note_widths", "record_widths",
           "refresh_channel_attributes"]

#: key of the recorded widths in a model config / checkpoint sidecar ("widths" is taken: it is
#: an option of tiny-multires)
WIDTHS_KEY = "pruned_widths"

#: layer type name -> the attributes that define its width
_FIELDS: dict[str, tuple[str, ...]] = {
    "Conv2d": ("in_channels", "out_channels", "groups"),
    "BatchNorm2d": ("num_features",),
    "Linear": ("in_features", "out_features"),
}
_TYPES: dict[str, type[nn.Module]] = {"Conv2d": nn.Conv2d, "BatchNorm2d": nn.BatchNorm2d, "Linear": nn.Linear}


def _kind(module: nn.Module) -> str | None:
    for kind, cls in _TYPES.items():
        if isinstance(module, cls):
            return kind
    return None


def default_architecture(model: nn.Module) -> nn.Module:
    """The unpruned, unfolded zoo model that ``model.config`` describes (random weights).

    Only the constructor options of the zoo entry are used: the entries other stages add to a
    config (pruned widths, gating, folding) and the ImageNet weights file are not part of it.
    """
    config = getattr(model, "config", None)
    if not isinstance(config, Mapping) or not isinstance(config.get("name"), str):
        raise ConfigError(f"{type(model).__name__} has no zoo config (name + options) to rebuild its default architecture from")
    accepted = MODELS.parameters(config["name"])
    options = {k: v for k, v in config.items() if k in accepted and k != "encoder_weights"}
    return build_model(config["name"], **options)


def _width_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Conv2d / BatchNorm2d / Linear layers by name; a folded conv under its unfolded name.

    :class:`~slimdepth.models.base.Auxiliary` modules (the saliency predictors of dynamic
    gating, rebuilt from the ``gating`` config entry) are not layers of the architecture.
    """
    layers: dict[str, nn.Module] = {}
    inner: set[str] = set()
    for name, module in model.named_modules():
        if isinstance(module, FoldedConv2d):
            layers[name] = module.conv
            inner.add(f"{name}.conv")
        elif name not in inner and _kind(module) is not None and not isinstance(module, Auxiliary):
            layers[name] = module
    return layers


def record_widths(model: nn.Module, reference: nn.Module | None = None) -> dict[str, dict[str, Any]]:
    """``{layer name: {"type", widths...}}`` for every layer whose width differs from the default.

    Conv2d layers record ``in_channels``, ``out_channels`` and ``groups``; BatchNorm2d layers
    ``num_features``; Linear layers ``in_features`` and ``out_features``. ``reference`` is the
    default architecture (built from ``model.config`` when not given). Empty for an unpruned model.
    """
    ref_layers = _width_layers(reference if reference is not None else default_architecture(model))
    widths: dict[str, dict[str, Any]] = {}
    for name, layer in _width_layers(model).items():
        ref = ref_layers.get(name)
        kind = _kind(layer)
        if ref is None or _kind(ref) != kind:
            raise ConfigError(f"{name}: {type(layer).__name__} is not a layer of the default "
                              f"{getattr(model, 'name', type(model).__name__)} architecture")
        values = {f: int(getattr(layer, f)) for f in _FIELDS[kind]}
        if any(values[f] != int(getattr(ref, f)) for f in values):
            widths[name] = {"type": kind, **values}
    return widths


def _resized(old: nn.Module, kind: str, spec: Mapping[str, Any]) -> nn.Module:
    """A new layer like ``old`` with the widths in ``spec`` (fresh parameters)."""
    ref = old.weight if getattr(old, "weight", None) is not None else next(iter(old.buffers()), None)
    factory = {"device": ref.device, "dtype": ref.dtype} if ref is not None else {}
    values = {f: check_number(spec.get(f, getattr(old, f)), f, integer=True, low=1) for f in _FIELDS[kind]}
    grown = [f"{f} {values[f]} > {getattr(old, f)}" for f in values if values[f] > getattr(old, f)]
    if grown:  # pruning only removes channels: a wider layer is not a pruned one
        raise ConfigError(f"wider than the architecture ({', '.join(grown)})")
    cls = type(old)
    if kind == "Conv2d":
        new = cls(values["in_channels"], values["out_channels"], old.kernel_size, old.stride, old.padding,
                  old.dilation, values["groups"], old.bias is not None, old.padding_mode, **factory)
    elif kind == "BatchNorm2d":
        new = cls(values["num_features"], eps=old.eps, momentum=old.momentum, affine=old.affine,
                  track_running_stats=old.track_running_stats, **factory)
    else:
        new = cls(values["in_features"], values["out_features"], old.bias is not None, **factory)
    new.train(old.training)
    return new


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def apply_widths(model: nn.Module, widths: Mapping[str, Mapping[str, Any]]) -> nn.Module:
    """Resize the layers named in ``widths`` (from :func:`record_widths`) in place; returns ``model``.

    Meant for a freshly built default model: the resized layers get fresh parameters, to be
    filled by loading the pruned state dict. Each width must be at least 1 and at most the
    default's. Cached channel counts such as ``encoder.channels`` are refreshed by one small
    forward pass, which also proves the widths fit together (a :class:`ConfigError` when not).
    """
    if not widths:
        return model
    if not isinstance(widths, Mapping):
        raise ConfigError(f"{WIDTHS_KEY} must be a mapping of layer name to widths, got {type(widths).__name__}")
    for name, spec in widths.items():
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{WIDTHS_KEY}[{name!r}] must be a mapping, got {type(spec).__name__}")
        try:
            old = model.get_submodule(name)
        except AttributeError:
            raise ConfigError(f"{WIDTHS_KEY}: the model has no layer {name!r}") from None
        kind = _kind(old)
        if kind is None or spec.get("type", kind) != kind:
            raise ConfigError(f"{WIDTHS_KEY}[{name!r}]: a {spec.get('type')} width for a {type(old).__name__} "
                              "(apply widths before folding the normalisation)")
        try:
            new = _resized(old, kind, spec)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{WIDTHS_KEY}[{name!r}]: {str(exc).splitlines()[0]}") from None
        _set_module(model, name, new)
    try:
        refresh_channel_attributes(model, always=True)
    except RuntimeError as exc:  # e.g. a BatchNorm or conv that does not match its input's channels
        raise ConfigError(f"{WIDTHS_KEY} do not fit together: {str(exc).splitlines()[0]}") from None
    return model


def refresh_channel_attributes(model: nn.Module, example_size: Sequence[int] = (64, 64), always: bool = False) -> None:
    """Update cached channel counts after the layer widths changed.

    Encoders cache their feature widths in ``channels`` (a tuple, one per returned map) and
    MobileNetV3 blocks theirs in ``out_channels``; decoders are built from them. One forward pass
    on a small zero image sets each from the tensors the module really returns. Nothing runs when
    the model has no such attribute, unless ``always`` (the pass then checks the widths).
    """
    def cached(module: nn.Module) -> bool:
        if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
            return False
        chans = getattr(module, "channels", None)
        if isinstance(chans, (tuple, list)) and chans and all(isinstance(c, int) for c in chans):
            return True
        out = getattr(module, "out_channels", None)
        return isinstance(out, int) and not isinstance(out, bool)

    targets = [m for m in model.modules() if m is not model and cached(m)]
    if not targets and not always:
        return

    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        chans = getattr(module, "channels", None)
        if isinstance(output, (list, tuple)) and isinstance(chans, (tuple, list)) and len(output) == len(chans) \
                and all(isinstance(t, torch.Tensor) and t.ndim >= 2 for t in output):
            module.channels = type(chans)(int(t.shape[1]) for t in output)
        elif isinstance(output, torch.Tensor) and output.ndim >= 2 and isinstance(getattr(module, "out_channels", None), int):
            module.out_channels = int(output.shape[1])

    handles = [m.register_forward_hook(hook) for m in targets]
    try:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        x = torch.zeros(1, 3, *example_size, device=device)
        with eval_mode(model), torch.no_grad():
            run_outputs(model, x, OUTPUT_KEYS)
    finally:
        for h in handles:
            h.remove()


def note_widths(model: nn.Module) -> None:
    """Keep ``model.config[WIDTHS_KEY]`` in step with the layer widths (zoo models only)."""
    config = getattr(model, "config", None)
    if not isinstance(config, Mapping) or not isinstance(config.get("name"), str):
        return
    try:
        widths = record_widths(model)
    except ConfigError:
        return
    updated = {k: v for k, v in config.items() if k != WIDTHS_KEY}
    if widths:
        updated[WIDTHS_KEY] = widths
    model.config = updated
