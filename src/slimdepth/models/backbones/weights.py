"""Reading weight files and loading pretrained (e.g. torchvision ImageNet) state dicts strictly.

Files are read without unpickling arbitrary objects: ``.pth``/``.pt`` through
``torch.load(weights_only=True)``, ``.safetensors`` through safetensors. Loading checks every
key and shape and tolerates only what a backbone drops on purpose (the classifier, and for a
headless encoder its head), so a wrong or truncated checkpoint can never load silently.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from slimdepth.errors import ConfigError, DataError

#: state-dict prefixes of ImageNet classifiers (torchvision ResNet ``fc``, MobileNetV3 ``classifier``)
CLASSIFIER_PREFIXES: tuple[str, ...] = ("fc.", "classifier.")
TORCH_SUFFIXES = (".pth", ".pt", ".pth.tar")
_SHOWN = 5  # keys named per category in error messages


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read_torch(path: Path) -> object:
    try:
        with warnings.catch_warnings():  # torch warns about old pickle protocols: the outcome is what counts
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))  # a non-allowlisted class or function
        if found:
            raise DataError(f"{path}: refused to load: it holds a pickled Python object ({found.group(1)}) besides "
                            "tensors, and arbitrary objects are never unpickled; re-save it as a plain state dict "
                            "or as .safetensors") from exc
        detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(exc))
        raise DataError(f"{path}: unreadable weights file "
                        f"({detail.group(1).strip() if detail else _reason(exc)})") from exc
    except Exception as exc:  # torch raises many types for corrupt zips and truncated files
        raise DataError(f"{path}: unreadable weights file ({_reason(exc)})") from exc


def _read_safetensors(path: Path) -> object:
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # SafetensorError, OSError, ...
        raise DataError(f"{path}: unreadable safetensors file ({_reason(exc)})") from exc


def _as_state_dict(obj: object, path: Path) -> dict[str, Tensor]:
    """Unwrap a training checkpoint, check it maps names to tensors, strip DDP's ``module.``."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise DataError(f"{path}: not a state dict (found a {type(obj).__name__})")
    if not obj:
        raise DataError(f"{path}: the state dict is empty")
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise DataError(f"{path}: not a state dict: entry {key!r} is a {type(value).__name__}, not a tensor")
    state = dict(obj)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_state_dict_file(path: str | os.PathLike) -> dict[str, Tensor]:
    """Tensors of a ``.pth``/``.pt`` or ``.safetensors`` weights file, on the CPU.

    A top-level ``state_dict`` or ``model`` entry (training checkpoints) is unwrapped and a
    ``module.`` prefix on every key (DDP) is removed. Missing, corrupt or non-tensor files, and
    pickles of arbitrary objects, raise :class:`DataError` naming the file.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: weights file not found")
    name = p.name.lower()
    if name.endswith(".safetensors"):
        obj = _read_safetensors(p)
    elif name.endswith(TORCH_SUFFIXES):
        obj = _read_torch(p)
    else:
        raise DataError(f"{p}: unknown weights format; expected {', '.join(TORCH_SUFFIXES)} or .safetensors")
    return _as_state_dict(obj, p)


def _listing(keys: list[str], what: str, plural: str | None = None) -> str:
    shown = ", ".join(keys[:_SHOWN]) + (f", ... ({len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else "")
    return f"{len(keys)} {what if len(keys) == 1 else plural or what + 's'} ({shown})"


def load_pretrained(module: nn.Module, source: str | os.PathLike | Mapping[str, Tensor],
                    ignore: Iterable[str] = CLASSIFIER_PREFIXES) -> list[str]:
    """Load ``source`` (a weights file or a state dict) into ``module`` with strict checks.

    Keys of ``source`` starting with a prefix in ``ignore`` (by default the classifier's) or in
    the module's ``dropped_keys`` (an encoder's dropped head) may be present without a
    counterpart and are skipped; a missing ``num_batches_tracked`` (old torchvision files) is
    allowed. Anything else missing or unexpected, and every shape mismatch, raises a one-line
    :class:`ConfigError` naming the keys. Returns the skipped keys.
    """
    if isinstance(source, Mapping):
        state, where = dict(source), "state dict"
    else:
        state, where = load_state_dict_file(source), str(source)
    tolerated = tuple(ignore) + tuple(getattr(module, "dropped_keys", ()))
    expected = module.state_dict()

    missing = [k for k in expected if k not in state and not k.endswith(".num_batches_tracked")]
    extra = [k for k in state if k not in expected]
    skipped = [k for k in extra if k.startswith(tolerated)]
    unexpected = [k for k in extra if not k.startswith(tolerated)]
    mismatched = [f"{k}: expected {tuple(expected[k].shape)}, got {tuple(state[k].shape)}"
                  for k in state if k in expected and state[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        parts = [_listing(missing, "missing key") if missing else "",
                 _listing(unexpected, "unexpected key") if unexpected else "",
                 _listing(mismatched, "shape mismatch", "shape mismatches") if mismatched else ""]
        raise ConfigError(f"{where}: weights do not match {type(module).__name__}: "
                          + "; ".join(p for p in parts if p))

    to_load = {k: v for k, v in state.items() if k in expected}
    for k, v in expected.items():
        to_load.setdefault(k, v)  # only num_batches_tracked can be absent here
    module.load_state_dict(to_load, strict=True)
    return skipped
