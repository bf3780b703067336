"""Error types that the CLI turns into one-line messages instead of tracebacks."""

from __future__ import annotations


class SlimdepthError(Exception):
    """Base class for every error slimdepth raises on bad input or impossible options.

    The message must be a single line that names the offending file or option, because
    the CLI prints it as ``error: <message>`` and exits with a non-zero status.
    """


class DataError(SlimdepthError, ValueError):
    """A data file is missing, unreadable, wrongly encoded or inconsistent with another."""


class ConfigError(SlimdepthError, ValueError):
    """An option, dataset spec or configuration value is invalid."""
