"""The ``slimdepth`` command line: one entry point, one verb per stage.

Every verb is a thin wrapper over a Python function and lives in the module of
:mod:`slimdepth.commands` named for it. Errors caused by bad input are
:class:`~slimdepth.errors.SlimdepthError` and are printed as one line with a non-zero exit.
"""

from __future__ import annotations

import os
import sys

import typer

from slimdepth.commands import bench as _bench
from slimdepth.commands import compare as _compare
from slimdepth.commands import cost as _cost
from slimdepth.commands import data as _data
from slimdepth.commands import distill as _distill
from slimdepth.commands import evaluate as _evaluate
from slimdepth.commands import export as _export
from slimdepth.commands import latency_table as _latency_table
from slimdepth.commands import pipeline as _pipeline
from slimdepth.commands import predict as _predict
from slimdepth.commands import prune as _prune
from slimdepth.commands import pseudo_label as _pseudo_label
from slimdepth.commands import report as _report
from slimdepth.commands import train as _train
from slimdepth.commands.common import err_console
from slimdepth.errors import SlimdepthError, one_line
from slimdepth.version import __version__

app = typer.Typer(
    name="slimdepth",
    help="Lightweight monocular depth estimation: data, training, compression, evaluation, deployment.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

app.add_typer(_data.app, name="data")
app.command("train")(_train.train)
app.command("evaluate")(_evaluate.evaluate)
app.command("evaluate-preds")(_evaluate.evaluate_preds)
app.command("predict")(_predict.predict)
app.command("models")(_cost.models)
app.command("cost")(_cost.cost)
app.command("prune")(_prune.prune)
app.command("distill")(_distill.distill)
app.command("pseudo-label")(_pseudo_label.pseudo_label)
app.command("compare")(_compare.compare)
app.command("export")(_export.export)
app.command("bench")(_bench.bench)
app.command("latency-table")(_latency_table.latency_table)
app.command("pipeline")(_pipeline.pipeline)
app.command("report")(_report.report)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"slimdepth {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """slimdepth: one RGB image in, metric depth out."""


def _usage_errors() -> tuple[type[BaseException], ...]:
    """Typer's usage-error classes: Click's (older Typer) and Typer's own (newer Typer)."""
    kinds: list[type[BaseException]] = []
    try:  # click comes with typer, but newer typers may stop exposing its exceptions
        import click

        kinds.append(click.ClickException)
    except ImportError:
        pass
    if hasattr(typer, "TyperException"):
        kinds.append(typer.TyperException)
    return tuple(kinds)


def main() -> None:
    """Console-script entry point: run the app, turning known errors into one-line messages.

    Exit status: 0 success, 1 bad input (a file, a value), 2 bad usage (an unknown option,
    a missing argument), 130 interrupted.
    """
    try:
        code = app(standalone_mode=False)
    except SlimdepthError as exc:
        _fail(one_line(exc), 1)
    except _usage_errors() as exc:
        message = exc.format_message().replace("\n", " ").strip()  # type: ignore[attr-defined]
        if not message:  # a group called without a command: its help is already shown
            sys.exit(0)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        _fail(message + hint, getattr(exc, "exit_code", 2))
    except (KeyboardInterrupt, typer.Abort):
        code = 130
    except MemoryError:
        _fail("out of memory (try a smaller size, batch or number of workers)", 1)
    except OSError as exc:  # a file the verb could not create or write (a read-only disk, a file in the way, ...)
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{where}{exc.strerror or type(exc).__name__}", 1)
    except Exception as exc:  # a bug: still one line, with the way to the traceback
        if os.environ.get("SLIMDEPTH_DEBUG"):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "no message"
        _fail(f"unexpected {type(exc).__name__}: {first} (a bug in slimdepth; SLIMDEPTH_DEBUG=1 shows the traceback)", 1)
    if code == 130:
        err_console.print("interrupted", markup=False)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> None:
    err_console.print(f"error: {message}", markup=False)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
