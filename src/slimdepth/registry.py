"""Named builders -- datasets, zoo models, backbones, loss terms -- and the checks on their options.

A :class:`Registry` maps a name to a builder (a class or a function) and a one-line
description. Builders register themselves with the :meth:`Registry.register` decorator in the
module that defines them; the registry itself imports nothing of theirs, so it is a leaf that
every reader and model module can import (the package ``__init__`` imports the modules, which
fills the registry).

:meth:`Registry.check` compares options with the builder's signature *before* anything is
built, so an unknown name or option, or a missing required one, is a one-line
:class:`~slimdepth.errors.ConfigError` that says what is accepted and suggests the closest name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from slimdepth.errors import ConfigError
from slimdepth.options import suggest

__all__ = ["Registry"]

B = TypeVar("B", bound=Callable[..., Any])


class Registry:
    """Builders of one kind (``kind`` names it in messages: "dataset", "model", "encoder"...).

    ``reserved`` are parameters the caller always supplies itself (a dataset's ``transform``,
    a loss's ``pred`` and ``gt``): they are not options a user may set.
    """

    def __init__(self, kind: str, reserved: Iterable[str] = ()) -> None:
        self.kind = kind
        self.reserved = frozenset(reserved) | {"self"}
        self._builders: dict[str, Callable[..., Any]] = {}
        self._descriptions: dict[str, str] = {}

    def register(self, name: str, description: str = "") -> Callable[[B], B]:
        """Decorator registering a builder under ``name`` (a second one of that name is a bug)."""

        def decorator(builder: B) -> B:
            self.add(name, builder, description)
            return builder

        return decorator

    def add(self, name: str, builder: Callable[..., Any], description: str = "") -> None:
        """Register ``builder`` under ``name``."""
        if name in self._builders and self._builders[name] is not builder:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._builders[name] = builder
        self._descriptions[name] = description

    def __contains__(self, name: object) -> bool:
        return name in self._builders

    def __len__(self) -> int:
        return len(self._builders)

    def __iter__(self) -> Iterator[str]:
        """Names in the order they were registered."""
        return iter(list(self._builders))

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._builders)

    def descriptions(self) -> dict[str, str]:
        """Name -> one-line description, sorted by name."""
        return {n: self._descriptions[n] for n in self.names()}

    def get(self, name: str) -> Callable[..., Any]:
        """The builder of ``name``; an unknown name is a ConfigError with the closest match."""
        if name not in self._builders:
            raise ConfigError(f"unknown {self.kind} {name!r}{suggest(str(name), self.names())}; "
                              f"choose from {', '.join(self.names())}")
        return self._builders[name]

    def parameters(self, name: str) -> dict[str, inspect.Parameter]:
        """The options ``name`` accepts (its builder's parameters, reserved ones left out)."""
        builder = self.get(name)
        target = builder.__init__ if inspect.isclass(builder) else builder
        params = inspect.signature(target).parameters
        return {k: p for k, p in params.items() if k not in self.reserved
                and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)}

    def required(self, name: str) -> list[str]:
        """The options ``name`` cannot do without (no default)."""
        return [k for k, p in self.parameters(name).items() if p.default is inspect.Parameter.empty]

    def check_unknown(self, name: str, options: Mapping[str, Any], where: str = "") -> None:
        """Refuse options ``name`` does not accept (``where`` as in :meth:`check`)."""
        params = self.parameters(name)
        unknown = [k for k in options if k not in params]
        if unknown:
            head = f"{where}: " if where else ""
            hint = suggest(str(unknown[0]), params) if len(unknown) == 1 else ""
            raise ConfigError(f"{head}{self.kind} {name!r} has no option {', '.join(map(repr, unknown))}{hint}; "
                              f"accepted: {', '.join(params) or 'none'}")

    def check(self, name: str, options: Mapping[str, Any], where: str = "") -> None:
        """Refuse options ``name`` does not accept and required ones that are missing.

        ``where`` prefixes the message (e.g. the sidecar or the recipe entry the options came from).
        """
        self.check_unknown(name, options, where)
        head = f"{where}: " if where else ""
        required = [k for k in self.required(name) if k not in options]
        if required:
            raise ConfigError(f"{head}{self.kind} {name!r} needs {', '.join(f'{k}=...' for k in required)}")

    def build(self, name: str, /, **options: Any) -> Any:
        """``builder(**options)`` after :meth:`check`."""
        self.check(name, options)
        return self.get(name)(**options)
