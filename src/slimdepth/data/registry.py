"""Dataset specs: one string (CLI) or dict (YAML) names a dataset and its options.

String form: ``NAME[:PATH][,KEY=VALUE]...``, for example ``synthetic``,
``synthetic,num=200,size=192x640``, ``kitti:/data/kitti_raw,split=eigen_test_files.txt``,
``folder:/data/mai,depth_encoding=mm``. ``PATH`` is passed as ``root``. A bare existing
directory (``data/synth``) means ``folder:data/synth``. Dict form:
``{"name": "kitti", "root": "/data/kitti_raw", "split": "..."}``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slimdepth.data.base import DepthDataset, Transform
from slimdepth.errors import ConfigError

DatasetFactory = Callable[..., DepthDataset]
_REGISTRY: dict[str, DatasetFactory] = {}


def register_dataset(name: str) -> Callable[[DatasetFactory], DatasetFactory]:
    """Decorator registering a dataset class or factory under ``name``."""

    def decorator(factory: DatasetFactory) -> DatasetFactory:
        _REGISTRY[name] = factory
        return factory

    return decorator


def available_datasets() -> list[str]:
    """Names accepted by :func:`build_dataset`."""
    _load_builtin()
    return sorted(_REGISTRY)


def _coerce(value: str) -> Any:
    low = value.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def parse_dataset_spec(spec: str | dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Split a dataset spec into its name and keyword options."""
    if isinstance(spec, dict):
        opts = dict(spec)
        name = opts.pop("name", None)
        if not isinstance(name, str) or not name:
            raise ConfigError(f"dataset spec {spec!r} needs a 'name'")
        return name, opts
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError("empty dataset spec")
    head, *parts = spec.strip().split(",")
    name, _, path = head.partition(":")
    opts: dict[str, Any] = {}
    if path:
        opts["root"] = path
    for part in parts:
        if not part:
            continue
        key, eq, value = part.partition("=")
        if not eq or not key:
            raise ConfigError(f"dataset spec {spec!r}: option {part!r} is not KEY=VALUE")
        opts[key.strip()] = _coerce(value.strip())
    return name.strip(), opts


def _load_builtin() -> None:
    # Importing the modules registers their datasets.
    from slimdepth.data import folder, kitti, nyu, synthetic  # noqa: F401


def build_dataset(spec: str | dict[str, Any], transform: Transform | None = None) -> DepthDataset:
    """Build the dataset a spec names, with ``transform`` applied to each sample.

    Raises :class:`ConfigError` for an unknown name or option (listing what is accepted).
    """
    _load_builtin()
    name, opts = parse_dataset_spec(spec)
    if name not in _REGISTRY and isinstance(spec, str) and Path(name).is_dir():
        name, opts = "folder", {"root": name, **opts}
    factory = _REGISTRY.get(name)
    if factory is None:
        if "/" in name or "\\" in name or name.startswith("."):
            raise ConfigError(f"{name}: directory not found (a dataset is NAME[:PATH][,KEY=VALUE...] "
                              f"with NAME one of {', '.join(available_datasets())}, or an existing folder)")
        raise ConfigError(f"unknown dataset {name!r}; available: {', '.join(available_datasets())}")
    params = inspect.signature(factory).parameters
    accepted = [p for p in params if p not in ("self", "transform")]
    unknown = [k for k in opts if k not in params or k == "transform"]
    if unknown:
        raise ConfigError(f"dataset {name!r} has no option {', '.join(map(repr, unknown))}; accepted: {', '.join(accepted)}")
    required = [p for p in accepted if params[p].default is inspect.Parameter.empty and p not in opts]
    if "root" in required:
        raise ConfigError(f"dataset {name!r} needs a path: write {name}:PATH")
    if required:
        raise ConfigError(f"dataset {name!r} needs {', '.join(f'{p}=...' for p in required)}")
    try:
        return factory(transform=transform, **opts)
    except TypeError as exc:
        raise ConfigError(f"dataset {name!r}: {exc}") from None
