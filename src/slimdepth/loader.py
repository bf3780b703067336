"""From a checkpoint to a ready model: the one place that knows everything a sidecar may describe.

A checkpoint's ``model`` entry is rebuilt in a fixed order, each step by the layer that owns it:

1. the zoo architecture with its options (:func:`slimdepth.models.zoo.build_model`);
2. the layer widths compression changed (``pruned_widths``, :func:`slimdepth.models.widths.apply_widths`);
3. dynamic channel gating and its saliency predictors (``gating``,
   :func:`slimdepth.compress.gating.apply_gating_config`);
4. the input normalisation folded into the first convolution (``folded_normalization``,
   :func:`slimdepth.models.normalize.fold_normalization`);

then the safetensors weights fill it with strict key and shape checks. ``slimdepth.load`` is
:func:`load_model`. This module sits above ``models/`` and ``compress/`` so that neither has to
reach up to the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from slimdepth.compress.gating import apply_gating_config
from slimdepth.deploy.formats import format_of
from slimdepth.errors import ConfigError, DataError
from slimdepth.models.base import DepthModel
from slimdepth.models.checkpoint import (
    check_metadata,
    checkpoint_paths,
    load_state_strict,
    read_sidecar,
    read_weights,
    resolve_checkpoint,
)
from slimdepth.models.normalize import fold_normalization
from slimdepth.models.widths import WIDTHS_KEY, apply_widths
from slimdepth.models.zoo import build_model, list_models
from slimdepth.options import resolve_device

__all__ = ["build_from_config", "load_model", "resolve_model"]


def build_from_config(config: dict[str, Any]) -> DepthModel:
    """The architecture a sidecar's ``model`` entry describes, with random weights (steps 1-4 above)."""
    options = dict(config)
    name = options.pop("name", None)
    folded = options.pop("folded_normalization", False)
    widths = options.pop(WIDTHS_KEY, None)
    gating = options.pop("gating", None)
    if not isinstance(name, str):
        raise ConfigError("the model description has no 'name'")
    if not isinstance(folded, bool):
        raise ConfigError(f"folded_normalization must be true or false, got {folded!r}")
    options.pop("encoder_weights", None)  # the checkpoint holds the trained weights
    model = build_model(name, **options)
    if widths:  # a pruned network: give the changed layers their recorded widths
        apply_widths(model, widths)
        model.config = {**model.config, WIDTHS_KEY: widths}
    if gating:  # dynamic channel gating: the gated modules and their saliency predictors
        apply_gating_config(model, {"gating": gating})
    return fold_normalization(model) if folded else model


def load_model(path: str | Path, device: str | torch.device = "cpu") -> DepthModel:
    """Load a checkpoint (``NAME.safetensors`` + ``NAME.json``, or a run directory's best) in eval mode.

    Every problem with the files is a one-line :class:`~slimdepth.errors.DataError` naming the file.
    """
    path = resolve_checkpoint(path)
    weights, sidecar = checkpoint_paths(path)
    info = read_sidecar(path)
    check_metadata(info, sidecar)
    target = resolve_device(device)
    state = read_weights(weights)  # a missing or unreadable file fails before anything is built
    try:
        model = build_from_config(info["model"])
    except ConfigError as exc:
        raise DataError(f"{sidecar}: the model it describes cannot be built: {exc}") from None
    load_state_strict(model, state, str(weights))
    model.checkpoint_info = info
    return model.to(target).eval()


def check_model_spec(spec: str | Path, what: str = "", load: bool = False) -> None:
    """Refuse, before any work, a model spec that names neither a zoo model nor anything on disk
    (a checkpoint, its stem, a run directory or an exported file); ``what`` prefixes the message.
    With ``load`` a checkpoint or run is also loaded (an exported file is left to its runtime),
    so that a corrupt one is refused up front too."""
    path = Path(spec)
    if str(spec) not in list_models() and not path.exists() and not path.with_suffix(".json").exists():
        raise ConfigError(f"{what}{spec}: neither a zoo model ({', '.join(list_models())}) nor a checkpoint or run directory")
    if load and str(spec) not in list_models() and format_of(path) is None:
        try:
            load_model(path)
        except (ConfigError, DataError) as exc:
            raise type(exc)(f"{what}{exc}") from None


def resolve_model(spec: str | Path, device: str | torch.device = "cpu") -> tuple[DepthModel, Path | None]:
    """A zoo name (a fresh model, random weights) or a checkpoint / run directory (loaded), with
    the checkpoint's weights file (``None`` for a zoo model)."""
    if str(spec) in list_models():
        return build_model(str(spec)).to(resolve_device(device)), None
    check_model_spec(spec)
    weights = resolve_checkpoint(Path(spec))
    return load_model(weights, device), checkpoint_paths(weights)[0]
