"""The ``slimdepth`` command line: one entry point, one verb per stage.

Every verb is a thin wrapper over a Python function. Errors caused by bad input are
:class:`~slimdepth.errors.SlimdepthError` and are printed as one line with a non-zero exit.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from slimdepth import __version__
from slimdepth.errors import SlimdepthError

app = typer.Typer(
    name="slimdepth",
    help="Lightweight monocular depth estimation: data, training, compression, evaluation, deployment.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

from slimdepth.commands import data as _data  # noqa: E402
from slimdepth.commands import evaluate as _evaluate  # noqa: E402

app.add_typer(_data.app, name="data")
app.command("evaluate-preds")(_evaluate.evaluate_preds)

err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"slimdepth {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """slimdepth: one RGB image in, metric depth out."""


def main() -> None:
    """Console-script entry point: run the app, turning known errors into one-line messages."""
    try:
        app()
    except SlimdepthError as exc:
        err_console.print(f"error: {exc}", markup=False)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("interrupted", markup=False)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
