"""Progress bars for long work (rich), as callbacks that library functions accept."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

ProgressCallback = Callable[[int, int], None]


@contextmanager
def progress_bar(description: str, unit: str = "items", console: Console | None = None) -> Iterator[ProgressCallback]:
    """Yield ``update(done, total)``; a bar with rate and time left appears on stderr at the
    first update, so work that fails while checking its inputs prints only its error."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    progress = Progress(*columns, console=console or Console(stderr=True), transient=False)
    state: dict[str, float] = {}

    def update(done: int, total: int) -> None:
        if "task" not in state:
            progress.start()
            state["task"] = progress.add_task(description, total=total, rate="")
        now = progress.get_time()
        state.setdefault("t0", now)
        state.setdefault("done0", done)
        elapsed = now - state["t0"]
        rate = (done - state["done0"]) / elapsed if elapsed > 0 else 0.0
        progress.update(int(state["task"]), completed=done, total=total, rate=f"{rate:.1f} {unit}/s" if rate else "")

    try:
        yield update
    except BaseException:
        if "task" in state:  # an error ends the work: clear the bar so the error stands alone
            progress.live.transient = True
        raise
    finally:
        if "task" in state:
            progress.stop()
