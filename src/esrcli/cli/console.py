"""Shared terminal helpers for the CLI: stderr console, error lines, progress bars.

Only ``cli/`` imports rich and typer. Library code reports progress through plain
callbacks; :func:`progress` returns a context manager that builds such callbacks.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


@dataclass
class _State:
    verbose: bool = False


state = _State()
err = Console(stderr=True, highlight=False)
out = Console(highlight=False, soft_wrap=True)


def error(message: str, hint: str | None = None) -> None:
    """Print ``esr: error: MESSAGE`` (and ``  hint: ...``) as one line each on stderr."""
    print(f"esr: error: {message}", file=sys.stderr)
    if hint:
        print(f"  hint: {hint}", file=sys.stderr)


def warn(message: str) -> None:
    """Print ``esr: warning: MESSAGE`` on stderr."""
    print(f"esr: warning: {message}", file=sys.stderr)


def info(message: str) -> None:
    """Print an informational line on stderr (results go to stdout)."""
    print(message, file=sys.stderr)


@contextmanager
def progress(description: str, total: int | None, unit: str = "img") -> Iterator[Callable[..., None]]:
    """A rich progress bar on stderr with rate and ETA.

    Yields ``advance(n=1, description=None)``; call it once per finished item.
    """
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    ]
    with Progress(
        *columns, console=err, transient=False, redirect_stdout=False, redirect_stderr=False,
        disable=not err.is_terminal and total is None,
    ) as bar:
        task = bar.add_task(description, total=total, rate="")

        def advance(n: int = 1, description: str | None = None) -> None:
            bar.advance(task, n)
            t = bar.tasks[task]
            speed = t.finished_speed or t.speed
            kw = {"rate": f"{speed:.2f} {unit}/s" if speed else ""}
            if description is not None:
                kw["description"] = description
            bar.update(task, **kw)

        yield advance
