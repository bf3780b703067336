"""Error types that the CLI turns into one-line messages instead of tracebacks."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn

__all__ = ["ConfigError", "DataError", "OneLineArgumentParser", "SlimdepthError", "first_line", "one_line",
           "run_script"]


class SlimdepthError(Exception):
    """Base class for every error slimdepth raises on bad input or impossible options.

    The message must be a single line that names the offending file or option, because
    the CLI prints it as ``error: <message>`` and exits with a non-zero status.
    """


class DataError(SlimdepthError, ValueError):
    """A data file is missing, unreadable, wrongly encoded or inconsistent with another."""


class ConfigError(SlimdepthError, ValueError):
    """An option, dataset spec or configuration value is invalid."""


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` as the one line it was raised with.

    An error raised in a DataLoader worker process reaches the main process re-raised by
    PyTorch with the worker's whole traceback in its message ("Caught DataError in DataLoader
    worker process 0. Original Traceback ..."); its last line holds the original message.
    Line breaks inside the message (from a file name, say) are escaped, never printed.
    """
    text = str(exc).strip()
    if text.startswith("Caught ") and "\nOriginal Traceback" in text:
        last = text.splitlines()[-1]
        kind, sep, message = last.partition(": ")
        text = message if sep and kind.rpartition(".")[2] == type(exc).__name__ else last
    # a user's value (a file name, an option) may itself hold line breaks: show them escaped
    return text.replace("\r", "\\r").replace("\n", "\\n") if text else type(exc).__name__


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first non-blank line of a third-party exception's message (at most ``limit`` characters),
    or its type name when it has none: what a one-line error quotes of a converter's or runtime's
    failure, whose message may run to a dump of the graph."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:limit] if lines else type(exc).__name__


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse for the benchmark scripts: a bad option is one line (``error: ...``), exit status 2,
    as the CLI reports every other bad input."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def run_script(body: Callable[[], None], interrupted: str = "interrupted") -> int:
    """Run a benchmark script's work: exit status 0, or 2 with one ``error: ...`` line on bad input
    or a folder that cannot be written, or 130 with ``interrupted`` on Ctrl-C."""
    try:
        body()
    except SlimdepthError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # a folder that cannot be written
        print(f"error: {exc.filename or ''}: {exc.strerror or type(exc).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
    return 0
