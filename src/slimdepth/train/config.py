"""YAML run configurations: loading, command-line overrides, defaults, validation, saving.

Everything here is generic: the trainer supplies its own defaults and schema. Configs are
plain nested ``dict``/``list`` structures of YAML scalars.

YAML is read with :func:`yaml.safe_load` semantics plus three deliberate changes:

- ``1e-3`` is a float (PyYAML's YAML 1.1 resolver would make it the string ``"1e-3"``);
- dates such as ``2024-01-31`` stay strings (no ``datetime`` objects in configs);
- a key repeated in the same mapping is an error instead of silently keeping the last one.

This module does not import torch.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from slimdepth.errors import ConfigError
from slimdepth.fileio import atomic_path
from slimdepth.options import suggest

__all__ = [
    "Field",
    "apply_overrides",
    "dump_yaml",
    "load_config",
    "merge_defaults",
    "parse_value",
    "save_config",
    "validate_config",
]

_FLOAT_TAG = "tag:yaml.org,2002:float"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_MERGE_TAG = "tag:yaml.org,2002:merge"
# YAML 1.2-style floats: an exponent no longer needs a dot ("1e-3", "5E4").
_FLOAT_RE = re.compile(
    r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
    |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_NULL_SPELLINGS = {"~", "null", "Null", "NULL"}


class _Loader(yaml.SafeLoader):
    """Safe loader with 1e-3 floats, string dates and duplicate-key detection."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # unhashable key: the base class reports it
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"found duplicate key {key!r}", key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)


class _Dumper(yaml.SafeDumper):
    """Safe dumper that quotes every string :class:`_Loader` would read as something else."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_FLOAT_TAG, _TIMESTAMP_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_FLOAT_TAG, _FLOAT_RE, list("-+0123456789."))


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Control characters and Unicode line breaks (NEL, LS, PS) survive only double-quoted.
    if any(not c.isprintable() and c != " " for c in value) or any(c in value for c in "\x85\u2028\u2029"):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    return dumper.represent_str(value)


_Dumper.add_representer(str, _represent_str)
# The dumper keeps the timestamp resolver too, so date-like strings are quoted and other
# YAML readers also see strings.
_Dumper.add_implicit_resolver(_FLOAT_TAG, _FLOAT_RE, list("-+0123456789."))


def _describe_yaml_error(exc: yaml.YAMLError) -> str:
    """``line L, column C: problem`` for a marked YAML error, else its first line."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        problem = exc.problem or exc.context or "syntax error"
        text = f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
        if exc.context and exc.problem and exc.context_mark is not None and exc.context_mark.line != mark.line:
            text += f" ({exc.context} at line {exc.context_mark.line + 1})"
        return " ".join(text.split())
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file whose top level is a mapping (an empty file gives ``{}``).

    Raises :class:`ConfigError` naming the file (and the line for a syntax error) when it is
    missing, unreadable, not valid YAML or not a mapping.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    if not path.is_file():
        raise ConfigError(f"{path}: config path is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config ({type(exc).__name__})") from None
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}, {_describe_yaml_error(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level of a config must be a mapping of options, got {_type_name(data)}")
    return data


def parse_value(text: str) -> Any:
    """Parse an override value as YAML: scalars (int, float, bool, null) and flow
    collections (``[1, 2]``, ``{type: silog}``); quoted text is a string.

    Unquoted text that YAML would not read as a scalar of another type (``a: b``, ``#x``,
    ``@latest``, ``- x``) is kept verbatim as a string. An empty value is ``None``.
    """
    stripped = text.strip()
    if not stripped:
        return None
    strict = stripped[0] in "[{\"'"
    try:
        value = yaml.load(stripped, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        if strict:
            raise ConfigError(f"cannot parse value {stripped!r}: {_describe_yaml_error(exc)}") from None
        return stripped
    if strict:
        return value
    if isinstance(value, (dict, list, str)) or (value is None and stripped not in _NULL_SPELLINGS):
        return stripped
    return value


def _split_key(key: str, item: str) -> list[str]:
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise ConfigError(f"override {item!r}: the key must be dotted names such as optim.lr, got {key!r}")
    if any(c.isspace() for c in key):
        raise ConfigError(f"override {item!r}: the key {key!r} contains whitespace")
    return parts


def _list_index(container: list[Any], part: str, where: str, item: str, allow_append: bool) -> int:
    try:
        index = int(part)
    except ValueError:
        raise ConfigError(f"override {item!r}: {where} is a list, index it with an integer, not {part!r}") from None
    n = len(container)
    if index < 0:
        index += n
    if 0 <= index < n or (allow_append and index == n):
        return index
    raise ConfigError(f"override {item!r}: index {part} is out of range for {where} (a list of length {n}"
                      f"{'; use ' + str(n) + ' to append' if allow_append else ''})")


def _dict_key(container: dict[Any, Any], part: str) -> Any:
    """``part``, or its integer value when the mapping has an int key and no such string key."""
    if part not in container and part.lstrip("-").isdigit() and int(part) in container:
        return int(part)
    return part


def apply_overrides(config: Mapping[str, Any], overrides: Iterable[str] | str) -> dict[str, Any]:
    """Return a copy of ``config`` with ``key=value`` overrides applied (``config`` is unchanged).

    Keys are dotted paths (``optim.lr``); missing or null intermediate mappings are created;
    list elements are addressed by integer (``loss.terms.0.weight=2``, negative counts from
    the end, the length appends). Values are parsed by :func:`parse_value`; only the first
    ``=`` separates key and value, so values may contain ``=``.
    """
    result = copy.deepcopy(dict(config))
    items = [overrides] if isinstance(overrides, str) else list(overrides)
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"override must be a 'key=value' string, got {item!r}")
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. optim.lr=1e-3)")
        raw_key, raw_value = item.split("=", 1)
        parts = _split_key(raw_key.strip(), item)
        value = parse_value(raw_value)
        node: Any = result
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            where = ".".join(parts[:depth]) or "the config"
            if isinstance(node, dict):
                key = _dict_key(node, part)
                if last:
                    node[key] = value
                elif node.get(key) is None:
                    node[key] = {}
                node = node[key]
            elif isinstance(node, list):
                index = _list_index(node, part, repr(where), item, allow_append=True)
                if index == len(node):
                    node.append(value if last else {})
                elif last:
                    node[index] = value
                elif node[index] is None:
                    node[index] = {}
                node = node[index]
            else:
                raise ConfigError(f"override {item!r}: {where!r} is a {_type_name(node)} ({node!r}), "
                                  f"it cannot hold the key {part!r}")
    return result


def merge_defaults(config: Mapping[str, Any] | None, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``config`` over ``defaults`` and return a new dict (inputs are unchanged).

    Mappings merge key by key; any other value in ``config`` (lists included) replaces the
    default. A ``None`` in ``config`` where the default is a mapping (an empty YAML section
    such as ``model:``) keeps the default mapping.
    """
    merged: dict[str, Any] = copy.deepcopy(dict(defaults))
    for key, value in (config or {}).items():
        default = merged.get(key)
        if isinstance(default, dict) and isinstance(value, Mapping):
            merged[key] = merge_defaults(value, default)
        elif isinstance(default, dict) and value is None:
            continue
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class Field:
    """A schema entry with options beyond a bare type.

    ``spec`` is any schema spec (see :func:`validate_config`); ``required`` makes the key
    mandatory; ``nullable`` also accepts ``None``; ``choices`` restricts the value to a set;
    ``min``/``max`` are inclusive bounds for numbers; ``doc`` is free text for help output.
    """

    spec: Any = object
    required: bool = False
    nullable: bool = False
    choices: frozenset[Any] | set[Any] | tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None
    doc: str = ""


def _type_name(value_or_type: Any) -> str:
    t = value_or_type if isinstance(value_or_type, type) else type(value_or_type)
    return {dict: "mapping", list: "list", type(None): "null", str: "string", bool: "bool",
            int: "int", float: "float"}.get(t, t.__name__)


def _is_instance(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # bool is an int in Python, never in a config
        return bool in types or object in types
    if isinstance(value, int) and float in types:
        return True
    return isinstance(value, types)


def _format_choices(choices: Iterable[Any]) -> str:
    return ", ".join(sorted((repr(c) for c in choices), key=str))


def _check(value: Any, spec: Any, where: str, errors: list[str]) -> None:
    """Append to ``errors`` every way ``value`` fails ``spec`` (``where`` is its dotted key)."""
    label = repr(where) if where else "the config"
    if isinstance(spec, Field):
        if value is None and spec.nullable:
            return
        if spec.choices is not None and not _is_choice(value, spec.choices):
            errors.append(f"{label} must be one of {_format_choices(spec.choices)}, got {value!r}"
                          f"{suggest(value, [str(c) for c in spec.choices]) if isinstance(value, str) else ''}")
            return
        before = len(errors)
        _check(value, spec.spec, where, errors)
        if len(errors) == before and _is_instance(value, (int, float)) and not isinstance(value, bool):
            if spec.min is not None and value < spec.min:
                errors.append(f"{label} must be >= {spec.min}, got {value!r}")
            if spec.max is not None and value > spec.max:
                errors.append(f"{label} must be <= {spec.max}, got {value!r}")
        return
    if isinstance(spec, (set, frozenset)):
        if not _is_choice(value, spec):
            errors.append(f"{label} must be one of {_format_choices(spec)}, got {value!r}"
                          f"{suggest(value, [str(c) for c in spec]) if isinstance(value, str) else ''}")
        return
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            errors.append(f"{label} must be a mapping, got {_type_name(value)}")
            return
        _check_mapping(value, spec, where, errors)
        return
    if isinstance(spec, list):
        if len(spec) != 1:
            raise TypeError(f"schema for {label}: a list spec holds exactly one item spec, got {spec!r}")
        if not isinstance(value, list):
            errors.append(f"{label} must be a list, got {_type_name(value)}")
            return
        for i, item in enumerate(value):
            _check(item, spec[0], f"{where}.{i}" if where else str(i), errors)
        return
    alternatives = spec if isinstance(spec, tuple) else (spec,)
    types = tuple(type(None) if a is None else a for a in alternatives if a is None or isinstance(a, type))
    literals = [a for a in alternatives if not (a is None or isinstance(a, type))]
    if any(not isinstance(v, (str, int, float)) for v in literals):
        raise TypeError(f"schema for {label}: unsupported spec {spec!r}")
    if _is_instance(value, types) or any(_same_literal(value, v) for v in literals):
        return
    expected = [_type_name(t) for t in types]
    if literals:
        expected.append(f"one of {_format_choices(literals)}")
    hint = suggest(value, [v for v in literals if isinstance(v, str)]) if isinstance(value, str) else ""
    errors.append(f"{label} must be {' or '.join(expected)}, got {_type_name(value)} {_short(value)}{hint}")


def _same_literal(value: Any, literal: Any) -> bool:
    """Equal and of the same kind (``True`` is not ``1``, ``[1]`` never a scalar choice)."""
    return isinstance(value, bool) == isinstance(literal, bool) and isinstance(value, type(literal)) and value == literal


def _is_choice(value: Any, choices: Iterable[Any]) -> bool:
    return any(_same_literal(value, c) for c in choices)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_mapping(value: dict[Any, Any], schema: dict[str, Any], where: str, errors: list[str]) -> None:
    wildcard = schema.get("*")
    known = [k for k in schema if k != "*"]
    for key, item in value.items():
        dotted = f"{where}.{key}" if where else str(key)
        if key in schema and key != "*":
            _check(item, schema[key], dotted, errors)
        elif wildcard is not None:
            _check(item, wildcard, dotted, errors)
        else:
            accepted = ", ".join(known) if known else "none"
            hint = suggest(str(key), known, prefix=f"{where}." if where else "")
            errors.append(f"unknown key {dotted!r}{hint}; accepted keys"
                          f"{' in ' + repr(where) if where else ''}: {accepted}")
    for key in known:
        spec = schema[key]
        if isinstance(spec, Field) and spec.required and key not in value:
            dotted = f"{where}.{key}" if where else key
            errors.append(f"missing required key {dotted!r}")


def validate_config(config: Mapping[str, Any], schema: Mapping[str, Any], where: str = "") -> Mapping[str, Any]:
    """Check ``config`` against a declarative ``schema`` and return it unchanged.

    A schema is a nested dict from key to spec, where a spec is:

    - a type (``float``; an int is accepted for a float, a bool never for a number;
      ``object`` accepts anything, ``dict``/``list`` any mapping/list without looking inside);
    - a tuple of alternatives, each a type, ``None`` (null) or a literal scalar value:
      ``(int, None)``, ``("adamw", "sgd")``, ``(float, "auto")``;
    - a ``set`` of allowed values (``{"adamw", "sgd"}``);
    - a nested dict (a sub-mapping, checked recursively); the key ``"*"`` gives the spec of
      keys not listed (free-form names), otherwise unknown keys are errors;
    - a one-item list ``[spec]``: a list whose items all match ``spec``;
    - a :class:`Field` for required keys, nullability, choices and bounds.

    All problems are reported at once in one :class:`ConfigError` (prefixed by ``where``,
    e.g. the config file); an unknown key names its dotted path, lists the accepted keys
    and suggests the closest one.
    """
    errors: list[str] = []
    if not isinstance(config, Mapping):
        errors.append(f"the config must be a mapping, got {_type_name(config)}")
    else:
        _check_mapping(dict(config), dict(schema), "", errors)
    if errors:
        prefix = f"{where}: " if where else ""
        raise ConfigError(prefix + "invalid config: " + "; ".join(errors))
    return config


# --------------------------------------------------------------------------- saving


def _to_plain(value: Any, where: str) -> Any:
    """Convert tuples, paths and numpy scalars to YAML-safe values; reject the rest."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, (str, int, bool)) and key is not None:
                raise ConfigError(f"cannot save config: key {key!r} under {where or 'the top level'!r} is not a string")
            out[key] = _to_plain(item, f"{where}.{key}" if where else str(key))
        return out
    if isinstance(value, (list, tuple)):
        return [_to_plain(v, f"{where}.{i}" if where else str(i)) for i, v in enumerate(value)]
    if isinstance(value, Path):
        return str(value)
    item = getattr(value, "item", None)  # numpy / torch scalars
    if callable(item) and getattr(value, "ndim", None) == 0:
        return _to_plain(item(), where)
    raise ConfigError(f"cannot save config: {where!r} holds a {type(value).__name__}, not a YAML scalar, list or mapping")


def dump_yaml(config: Mapping[str, Any]) -> str:
    """The YAML text :func:`save_config` writes (block style, key order kept)."""
    return yaml.dump(_to_plain(config, ""), Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=100)


def save_config(config: Mapping[str, Any], path: str | Path) -> None:
    """Write the resolved ``config`` as YAML, atomically; :func:`load_config` reads it back equal
    (tuples become lists, paths strings)."""
    text = dump_yaml(config)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
