"""Saving and restoring the full training state without pickle.

A training state with stem ``runs/x/last`` is three files:

``last.safetensors``
    the model's ``state_dict`` (parameters and buffers; wrappers such as DDP and
    ``torch.compile`` are unwrapped, so the keys are the plain model's).
``last.state.safetensors``
    every other tensor: optimizer state (``optim.state.<param_index>.<name>``, e.g.
    ``optim.state.0.exp_avg``), the torch CPU RNG state (``rng.torch``, uint8), the CUDA
    RNG state of the current device when CUDA is in use (``rng.cuda``), and tensors found in
    ``extra`` (``extra.<dotted.path>``; e.g. the state dict of learnable loss weights).
``last.state.json``
    everything else, and the index of the above: format/version, the SHA-256 and size of
    both tensor files, optimizer class, parameter names and shapes and ``param_groups``,
    scheduler ``state_dict``, Python ``random`` and NumPy global RNG states as lists, and
    the user's ``extra`` dict. A tensor appears as ``{"__tensor__": "<key>"}``, a NumPy
    array as ``{"__ndarray__": "<key>"}``, a tuple as ``{"__tuple__": [...]}`` and a
    mapping with integer keys as ``{"__int_keys__": {"0": ...}}``.

All three files are first written to temporary files beside their targets, then renamed
in the order model, tensors, JSON, so an interrupted save leaves the previous state in
place; if a crash lands between the renames, the checksums in the JSON make loading fail
with a :class:`DataError` instead of mixing two saves.

By convention the trainer keeps its progress in ``extra``: ``step``, ``epoch``,
``index_in_epoch`` (samples of this rank already consumed), ``best_metric``, and e.g.
``scaler`` (``GradScaler.state_dict()``).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import random
import warnings
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from torch import nn

from slimdepth.errors import DataError
from slimdepth.fileio import atomic_path

__all__ = [
    "STATE_FORMAT",
    "STATE_VERSION",
    "capture_rng_state",
    "load_training_state",
    "restore_rng_state",
    "save_training_state",
    "training_state_paths",
]

STATE_FORMAT = "slimdepth-training-state"
STATE_VERSION = 1
_TENSOR, _NDARRAY, _TUPLE, _INT_KEYS = "__tensor__", "__ndarray__", "__tuple__", "__int_keys__"
_TAGS = (_TENSOR, _NDARRAY, _TUPLE, _INT_KEYS)

Scheduler = torch.optim.lr_scheduler.LRScheduler


def training_state_paths(path_stem: str | Path) -> tuple[Path, Path, Path]:
    """``(model .safetensors, .state.safetensors, .state.json)`` paths of a stem; a path
    that already ends with one of these suffixes is reduced to its stem first."""
    stem = str(path_stem)
    for suffix in (".state.json", ".state.safetensors", ".safetensors"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return Path(stem + ".safetensors"), Path(stem + ".state.safetensors"), Path(stem + ".state.json")


def _unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DataParallel/DistributedDataParallel/``torch.compile``."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod  # type: ignore[assignment]
        else:
            return model


# --------------------------------------------------------------------------- encoding


class _TensorStore:
    """Collects CPU, contiguous, unshared tensors under unique keys for safetensors."""

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self._storages: set[int] = set()

    def put(self, key: str, tensor: torch.Tensor) -> None:
        if key in self.tensors:
            raise ValueError(f"two values map to the tensor key {key!r}; avoid dots in extra keys that collide")
        t = tensor.detach()
        t = t.cpu() if t.device.type != "cpu" else t
        t = t.contiguous()
        if t.numel():
            ptr = t.untyped_storage().data_ptr()
            if ptr in self._storages:  # safetensors refuses tensors that share memory
                t = t.clone()
                ptr = t.untyped_storage().data_ptr()
            self._storages.add(ptr)
        self.tensors[key] = t


def _encode(obj: Any, key: str, store: _TensorStore) -> Any:
    """A JSON-able form of ``obj``; tensors and arrays go to ``store`` under ``key``."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, torch.Tensor):
        store.put(key, obj)
        return {_TENSOR: key}
    if isinstance(obj, np.ndarray):
        try:
            store.put(key, torch.from_numpy(np.ascontiguousarray(obj)))
        except TypeError:
            raise TypeError(f"{key}: cannot store a NumPy array of dtype {obj.dtype}") from None
        return {_NDARRAY: key}
    if isinstance(obj, np.generic):
        return _encode(obj.item(), key, store)
    if isinstance(obj, tuple):
        return {_TUPLE: [_encode(v, f"{key}.{i}", store) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{key}.{i}", store) for i, v in enumerate(obj)]
    if isinstance(obj, Mapping):
        keys = list(obj)
        if all(isinstance(k, str) for k in keys):
            if len(keys) == 1 and keys[0] in _TAGS:
                raise TypeError(f"{key}: a mapping whose only key is {keys[0]!r} cannot be stored")
            return {k: _encode(v, f"{key}.{k}", store) for k, v in obj.items()}
        if all(isinstance(k, int) and not isinstance(k, bool) for k in keys):
            return {_INT_KEYS: {str(k): _encode(v, f"{key}.{k}", store) for k, v in obj.items()}}
        raise TypeError(f"{key}: mapping keys must be all strings or all integers, got {keys[:5]!r}")
    raise TypeError(f"{key}: cannot store a {type(obj).__name__} (use tensors, arrays, numbers, strings, lists, dicts)")


def _decode(obj: Any, tensors: Mapping[str, torch.Tensor], where: Path) -> Any:
    """Inverse of :func:`_encode`."""
    if isinstance(obj, list):
        return [_decode(v, tensors, where) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if len(obj) == 1:
        (tag, value), = obj.items()
        if tag in (_TENSOR, _NDARRAY):
            if value not in tensors:
                raise DataError(f"{where}: refers to tensor {value!r}, which its tensor file lacks")
            t = tensors[value]
            return t.numpy() if tag == _NDARRAY else t
        if tag == _TUPLE:
            return tuple(_decode(v, tensors, where) for v in value)
        if tag == _INT_KEYS:
            return {int(k): _decode(v, tensors, where) for k, v in value.items()}
    return {k: _decode(v, tensors, where) for k, v in obj.items()}


def _dumps(obj: Any, indent: int = 0) -> str:
    """JSON with nested containers indented, but lists of scalars and small flat objects on one line."""
    pad = "  " * (indent + 1)
    scalar = (str, int, float, bool, type(None))
    if isinstance(obj, dict) and obj and (len(obj) > 3 or not all(isinstance(v, scalar) for v in obj.values())):
        items = [f"{pad}{json.dumps(str(k))}: {_dumps(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * indent + "}"
    if isinstance(obj, list) and obj and any(isinstance(v, (dict, list)) for v in obj):
        items = [f"{pad}{_dumps(v, indent + 1)}" for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + "  " * indent + "]"
    return json.dumps(obj)


# --------------------------------------------------------------------------- RNG


def capture_rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Snapshot the global RNGs without advancing them.

    Returns ``(tensors, info)``: ``tensors["torch"]`` is the CPU generator state (uint8) and
    ``tensors["cuda"]`` the current CUDA device's when CUDA has been initialised; ``info``
    holds ``python`` (``random.getstate()``) and ``numpy`` (``np.random.get_state()``) as
    JSON-able lists, and ``cuda_device``.
    """
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    tensors = {"torch": torch.get_rng_state()}
    info: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [name, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        info["cuda_device"] = torch.cuda.current_device()
        tensors["cuda"] = torch.cuda.get_rng_state(info["cuda_device"])
    return tensors, info


def restore_rng_state(tensors: Mapping[str, torch.Tensor], info: Mapping[str, Any], where: str = "RNG state") -> None:
    """Restore what :func:`capture_rng_state` returned; :class:`DataError` if malformed.

    A saved CUDA state is restored when CUDA is available (on the saved device index if it
    exists, else the current one); without CUDA it is skipped with a warning.
    """
    try:
        if "python" in info:
            version, internal, gauss = info["python"]
            random.setstate((int(version), tuple(int(v) for v in internal), gauss))
        if "numpy" in info:
            name, keys, pos, has_gauss, cached = info["numpy"]
            np.random.set_state((str(name), np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached)))
        if "torch" in tensors:
            state = tensors["torch"]
            if state.dtype != torch.uint8:
                raise ValueError(f"torch RNG state must be uint8, got {state.dtype}")
            torch.set_rng_state(state.cpu().contiguous())
    except (TypeError, ValueError, OverflowError, RuntimeError, IndexError, KeyError) as exc:
        raise DataError(f"{where}: invalid RNG state ({type(exc).__name__}: {exc})") from None
    if "cuda" in tensors:
        if not torch.cuda.is_available():
            warnings.warn(f"{where}: a CUDA RNG state was saved but CUDA is not available; it is not restored",
                          RuntimeWarning, stacklevel=2)
            return
        device = int(info.get("cuda_device", torch.cuda.current_device()))
        if device >= torch.cuda.device_count():
            device = torch.cuda.current_device()
        torch.cuda.set_rng_state(tensors["cuda"].cpu(), device)


# --------------------------------------------------------------------------- save


def _param_names(model: nn.Module) -> dict[int, str]:
    return {id(p): name for name, p in _unwrap(model).named_parameters(remove_duplicate=True)}


def _optimizer_params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def _write_bytes(path: Path, data: bytes) -> None:
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def save_training_state(path_stem: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None,
                        scheduler: Scheduler | None, extra: Mapping[str, Any] | None = None,
                        rng: bool = True, weights_metadata: Mapping[str, str] | None = None) -> tuple[Path, Path, Path]:
    """Save model weights, optimizer, scheduler, RNG states and ``extra`` under ``path_stem``.

    ``extra`` may hold numbers, strings, None, lists, tuples, dicts (string or integer
    keys), tensors and NumPy arrays. ``weights_metadata`` is the string metadata stored in
    the header of the weights file (default ``{"format": "pt"}``). Returns the three paths
    written (see the module docstring for the formats); nothing is pickled.

    The weights file is checksummed in the JSON: rewriting ``<stem>.safetensors`` afterwards
    (e.g. by another checkpoint writer) makes the state unloadable.
    """
    model_path, tensors_path, json_path = training_state_paths(path_stem)
    plain = _unwrap(model)
    weights = _TensorStore()
    for key, value in plain.state_dict().items():
        weights.put(key, value)
    store = _TensorStore()
    meta: dict[str, Any] = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "saved_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
        "extra": _encode(dict(extra or {}), "extra", store),
    }
    meta["model"] = {"class": type(plain).__name__, "num_tensors": len(weights.tensors)}
    if optimizer is not None:
        names = _param_names(model)
        params = _optimizer_params(optimizer)
        meta["optimizer"] = {
            "class": type(optimizer).__name__,
            "param_names": [names.get(id(p)) for p in params],
            "param_shapes": [list(p.shape) for p in params],
            "state_dict": _encode(optimizer.state_dict(), "optim", store),
        }
    else:
        meta["optimizer"] = None
    meta["scheduler"] = None if scheduler is None else {
        "class": type(scheduler).__name__,
        "state_dict": _encode(scheduler.state_dict(), "sched", store),
    }
    if rng:
        rng_tensors, rng_info = capture_rng_state()
        for key, value in rng_tensors.items():
            store.put(f"rng.{key}", value)
        meta["rng"] = {**rng_info, "tensors": sorted(rng_tensors)}
    else:
        meta["rng"] = None

    header = {"format": "pt"} if weights_metadata is None else {str(k): str(v) for k, v in weights_metadata.items()}
    model_bytes = safetensors.torch.save(weights.tensors, metadata=header)
    state_bytes = safetensors.torch.save(store.tensors, metadata={"format": STATE_FORMAT})
    meta["files"] = {
        "model": {"name": model_path.name, "bytes": len(model_bytes), "sha256": hashlib.sha256(model_bytes).hexdigest()},
        "tensors": {"name": tensors_path.name, "bytes": len(state_bytes), "sha256": hashlib.sha256(state_bytes).hexdigest()},
    }
    order = ["format", "version", "saved_at", "torch_version", "files", "extra", "model", "optimizer", "scheduler", "rng"]
    text = _dumps({k: meta[k] for k in order}) + "\n"
    with ExitStack() as stack:  # renamed in reverse order of entering: model, tensors, JSON
        tmp_json = stack.enter_context(atomic_path(json_path))
        tmp_state = stack.enter_context(atomic_path(tensors_path))
        tmp_model = stack.enter_context(atomic_path(model_path))
        _write_bytes(tmp_model, model_bytes)
        _write_bytes(tmp_state, state_bytes)
        _write_bytes(tmp_json, text.encode("utf-8"))
    return model_path, tensors_path, json_path


# --------------------------------------------------------------------------- load


def _read_meta(json_path: Path) -> dict[str, Any]:
    if not json_path.is_file():
        raise DataError(f"{json_path}: training state not found")
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{json_path}: cannot read training state ({type(exc).__name__})") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{json_path}: corrupt training state (invalid JSON at line {exc.lineno}: {exc.msg})") from None
    if not isinstance(meta, dict) or meta.get("format") != STATE_FORMAT:
        raise DataError(f"{json_path}: not a slimdepth training state (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    version = meta.get("version")
    if not isinstance(version, int) or version > STATE_VERSION:
        raise DataError(f"{json_path}: training state version {version!r} is not supported (this slimdepth reads <= {STATE_VERSION})")
    for key in ("files", "extra", "model", "optimizer", "scheduler", "rng"):
        if key not in meta:
            raise DataError(f"{json_path}: corrupt training state (no {key!r} entry)")
    return meta


def _read_tensors(path: Path, entry: Any, json_path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise DataError(f"{path}: tensor file of {json_path.name} not found")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({type(exc).__name__})") from None
    if not isinstance(entry, dict) or "sha256" not in entry:
        raise DataError(f"{json_path}: corrupt training state (no checksum for {path.name})")
    if len(data) != entry.get("bytes") or hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise DataError(f"{path}: contents do not match {json_path.name} "
                        "(corrupt or truncated file, or from another save that was interrupted)")
    try:
        return safetensors.torch.load(data)
    except Exception as exc:  # SafetensorError derives from Exception only
        raise DataError(f"{path}: cannot read safetensors ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


def _list_some(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _check_model(model: nn.Module, tensors: Mapping[str, torch.Tensor], path: Path) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    shapes = [f"{k} {tuple(tensors[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items() if k in tensors and tensors[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"missing {_list_some(missing)}")
    if unexpected:
        problems.append(f"unexpected {_list_some(unexpected)}")
    if shapes:
        problems.append(f"shape mismatch {_list_some(shapes)}")
    if problems:
        raise DataError(f"{path}: weights do not fit {type(model).__name__}: " + "; ".join(problems))


def _check_optimizer(optimizer: torch.optim.Optimizer, model: nn.Module, saved: Mapping[str, Any],
                     state_dict: Mapping[str, Any], json_path: Path) -> None:
    if saved.get("class") != type(optimizer).__name__:
        raise DataError(f"{json_path}: optimizer state is for {saved.get('class')}, not {type(optimizer).__name__}")
    groups = state_dict.get("param_groups", [])
    if len(groups) != len(optimizer.param_groups):
        raise DataError(f"{json_path}: optimizer state has {len(groups)} param groups, "
                        f"the optimizer has {len(optimizer.param_groups)}")
    for i, (old, new) in enumerate(zip(groups, optimizer.param_groups)):
        if len(old["params"]) != len(new["params"]):
            raise DataError(f"{json_path}: optimizer param group {i} has {len(old['params'])} parameters "
                            f"in the state and {len(new['params'])} in the optimizer")
    params = _optimizer_params(optimizer)
    names = _param_names(model)
    saved_names = saved.get("param_names") or [None] * len(params)
    saved_shapes = saved.get("param_shapes") or [None] * len(params)
    for i, (p, old_name, old_shape) in enumerate(zip(params, saved_names, saved_shapes)):
        name = names.get(id(p))
        label = f"parameter {i} ({name or old_name or 'unnamed'})"
        if old_name is not None and name is not None and old_name != name:
            raise DataError(f"{json_path}: optimizer parameter {i} was {old_name!r}, now it is {name!r}")
        if old_shape is not None and list(p.shape) != list(old_shape):
            raise DataError(f"{json_path}: optimizer {label} had shape {tuple(old_shape)}, now {tuple(p.shape)}")
    for index, entry in state_dict.get("state", {}).items():
        if not isinstance(index, int) or not 0 <= index < len(params) or not isinstance(entry, dict):
            raise DataError(f"{json_path}: corrupt optimizer state for parameter {index!r}")
        for key, value in entry.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != params[index].shape:
                raise DataError(f"{json_path}: optimizer state {key!r} of parameter {index} has shape "
                                f"{tuple(value.shape)}, the parameter {tuple(params[index].shape)}")


def load_training_state(path_stem: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                        scheduler: Scheduler | None = None, rng: bool = True) -> dict[str, Any]:
    """Restore what :func:`save_training_state` wrote into ``model``, ``optimizer`` and
    ``scheduler`` (each may be None to skip it), restore the RNG states (unless ``rng`` is
    false) and return the ``extra`` dict (its tensors on the CPU).

    Everything is checked before anything is modified: a missing, corrupt or mismatching
    file, or a model/optimizer/scheduler that does not fit the saved state, raises a
    :class:`DataError` naming the file and the problem.
    """
    model_path, tensors_path, json_path = training_state_paths(path_stem)
    meta = _read_meta(json_path)
    files = meta["files"] if isinstance(meta["files"], dict) else {}
    weights = _read_tensors(model_path, files.get("model"), json_path)
    tensors = _read_tensors(tensors_path, files.get("tensors"), json_path)
    plain = _unwrap(model)
    _check_model(plain, weights, model_path)

    optim_state = None
    if optimizer is not None:
        saved = meta["optimizer"]
        if not isinstance(saved, dict):
            raise DataError(f"{json_path}: the training state has no optimizer state")
        optim_state = _decode(saved.get("state_dict"), tensors, json_path)
        if not isinstance(optim_state, dict) or not isinstance(optim_state.get("param_groups"), list):
            raise DataError(f"{json_path}: corrupt optimizer state")
        _check_optimizer(optimizer, model, saved, optim_state, json_path)
    sched_state = None
    if scheduler is not None:
        saved = meta["scheduler"]
        if not isinstance(saved, dict):
            raise DataError(f"{json_path}: the training state has no scheduler state")
        if saved.get("class") != type(scheduler).__name__:
            raise DataError(f"{json_path}: scheduler state is for {saved.get('class')}, not {type(scheduler).__name__}")
        sched_state = _decode(saved.get("state_dict"), tensors, json_path)
        base_lrs = sched_state.get("base_lrs") if isinstance(sched_state, dict) else None
        if base_lrs is not None and len(base_lrs) != len(scheduler.optimizer.param_groups):
            raise DataError(f"{json_path}: scheduler state has {len(base_lrs)} param groups, "
                            f"the optimizer has {len(scheduler.optimizer.param_groups)}")
    extra = _decode(meta["extra"], tensors, json_path)
    rng_info = meta["rng"] if rng else None
    rng_tensors = {}
    if isinstance(rng_info, dict):
        for name in rng_info.get("tensors", []):
            key = f"rng.{name}"
            if key not in tensors:
                raise DataError(f"{tensors_path}: RNG state {key!r} missing")
            rng_tensors[name] = tensors[key]

    try:
        plain.load_state_dict(weights, strict=True)
        if optimizer is not None:
            optimizer.load_state_dict(optim_state)  # type: ignore[arg-type]
        if scheduler is not None:
            scheduler.load_state_dict(sched_state)  # type: ignore[arg-type]
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{json_path}: cannot restore the training state ({str(exc).strip().splitlines()[0]})") from None
    if isinstance(rng_info, dict):
        restore_rng_state(rng_tensors, rng_info, where=str(json_path))
    return extra if isinstance(extra, dict) else {}
