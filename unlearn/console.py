"""Terminal output for the CLI: progress bars, tables, errors. The library never prints."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

# piped output (CI logs, `| tee`) gets wide tables instead of rich's 80-column default
console = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160)
err_console = Console(stderr=True)


def in_ray_worker() -> bool:
    return bool(os.environ.get("RAY_JOB_ID") or os.environ.get("TUNE_TRIAL_ID"))


@contextlib.contextmanager
def progress_bars(enabled: bool = True) -> Iterator:
    """Yield a ``progress(task, done, total)`` callback drawing one bar per task name."""
    if not enabled or in_ray_worker() or not sys.stderr.isatty() and os.environ.get("CI"):
        yield lambda task, done, total: None
        return
    bars = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )
    tasks: dict[str, int] = {}

    def update(task: str, done: int, total: int) -> None:
        if not tasks:  # drawn from the first task on: an early error stays one line
            bars.start()
        if task not in tasks:
            tasks[task] = bars.add_task(task, total=total)
        bars.update(tasks[task], completed=done, total=total)

    try:
        yield update
    finally:
        if tasks:
            bars.stop()


def table(title: str, columns: list[str], rows: list[list[object]]) -> Table:
    t = Table(title=title)
    for c in columns:
        t.add_column(c, justify="right" if c != columns[0] else "left")
    for r in rows:
        t.add_row(*[fmt(v) for v in r])
    return t


def fmt(v: object) -> str:
    if isinstance(v, float):
        if v != v:
            return "nan"
        return f"{v:.4g}"
    return "" if v is None else str(v)
