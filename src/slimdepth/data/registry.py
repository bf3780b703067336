"""Dataset specs: one string (CLI) or dict (YAML) names a dataset and its options.

String form: ``NAME[:PATH][,KEY=VALUE]...``, for example ``synthetic``,
``synthetic,num=200,size=192x640``, ``kitti:/data/kitti_raw,split=eigen_test_files.txt``,
``folder:/data/mai,depth_encoding=mm``. ``PATH`` is passed as ``root``. A bare existing
directory (``data/synth``) means ``folder:data/synth``. Dict form:
``{"name": "kitti", "root": "/data/kitti_raw", "split": "..."}``.

Each reader registers itself in :data:`DATASETS` with :func:`register_dataset`; this module
imports none of them (it is the leaf they import), and the ``slimdepth.data`` package imports
every reader, so the registry is full whenever it is used.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from slimdepth.data.base import DepthDataset, Transform, WithoutLabels
from slimdepth.errors import ConfigError
from slimdepth.registry import Registry

__all__ = ["DATASETS", "available_datasets", "build_dataset", "parse_dataset_spec", "register_dataset"]

DatasetFactory = Callable[..., DepthDataset]
#: the dataset readers by name (``transform`` is supplied by the caller, never an option)
DATASETS = Registry("dataset", reserved=("transform",))


def register_dataset(name: str, description: str = "") -> Callable[[DatasetFactory], DatasetFactory]:
    """Decorator registering a dataset class or factory under ``name``."""
    return DATASETS.register(name, description)


def available_datasets() -> list[str]:
    """Names accepted by :func:`build_dataset`."""
    return DATASETS.names()


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


def parse_option_items(items: list[str], name: str = "synthetic") -> dict[str, Any]:
    """``KEY=VALUE`` strings (a command's repeated ``--option``) read as the options of a
    dataset spec of ``name``, values typed as in a spec string; a malformed one is a ConfigError."""
    for item in items:
        key, eq, _ = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--option {item!r}: expected KEY=VALUE, e.g. traffic=0.5")
    return parse_dataset_spec(",".join([name, *items]))[1]


def build_dataset(spec: str | dict[str, Any], transform: Transform | None = None) -> DepthDataset:
    """Build the dataset a spec names, with ``transform`` applied to each sample.

    Every dataset also takes ``labels`` (default true): ``labels=false`` drops its depth,
    segmentation and LiDAR, leaving images (and K) for distillation with unlabeled data.
    Raises :class:`ConfigError` for an unknown name or option (listing what is accepted).
    """
    name, opts = parse_dataset_spec(spec)
    labels = opts.pop("labels", True)
    if not isinstance(labels, bool):
        raise ConfigError(f"dataset option labels must be true or false, got {labels!r}")
    if not labels:
        return WithoutLabels(_build(name, opts, isinstance(spec, str), None), transform)
    return _build(name, opts, isinstance(spec, str), transform)


def _build(name: str, opts: dict[str, Any], from_string: bool, transform: Transform | None) -> DepthDataset:
    if name not in DATASETS and from_string and Path(name).is_dir():
        name, opts = "folder", {"root": name, **opts}
    if name not in DATASETS and ("/" in name or "\\" in name or name.startswith(".")):
        raise ConfigError(f"{name}: directory not found (a dataset is NAME[:PATH][,KEY=VALUE...] "
                          f"with NAME one of {', '.join(available_datasets())}, or an existing folder)")
    DATASETS.check_unknown(name, opts)
    if "root" in DATASETS.required(name) and "root" not in opts:
        raise ConfigError(f"dataset {name!r} needs a path: write {name}:PATH")
    DATASETS.check(name, opts)
    try:
        return DATASETS.get(name)(transform=transform, **opts)
    except TypeError as exc:
        raise ConfigError(f"dataset {name!r}: {exc}") from None
