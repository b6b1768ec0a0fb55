"""Shared helpers for the CLI: stderr console, error lines, progress bars, the same-path check.

Only ``cli/`` imports rich and typer. Library code reports progress through plain
callbacks; :func:`progress` returns a context manager that builds such callbacks.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TextIO

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


@dataclass
class _State:
    verbose: bool = False
    stopped_cleanly: bool = False  # a command that stopped on Ctrl-C and said so (exit 130, no error line)


state = _State()
err = Console(stderr=True, highlight=False)
out = Console(highlight=False, soft_wrap=True)


def same_path(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` both exist and name the same file or folder (``..`` and
    links resolved): an output that would overwrite an input."""
    try:
        return a.exists() and b.exists() and a.resolve() == b.resolve()
    except OSError:
        return False


def line(text: str, *, stream: TextIO | None = None) -> None:
    """Write ``text`` and its newline in one ``write`` call, then flush (default: stdout).

    ``print`` writes the text and the newline separately; under ``torchrun`` with unbuffered
    streams two processes' lines could then interleave into one (``a.pngb.png``).
    A reader that went away (``esr upscale ... | head -1``) does not stop the work: the
    lines it would have read are dropped (stdout goes to the null device, as the Python
    documentation advises for ``BrokenPipeError``).
    """
    stream = sys.stdout if stream is None else stream
    try:
        stream.write(f"{text}\n")
        stream.flush()
    except BrokenPipeError:
        if stream is sys.stdout:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)


def interrupted_cleanly(iteration: int | None) -> None:
    """Say how a training that Ctrl-C stopped cleanly at ``iteration`` goes on (``None``: say
    nothing, another process does), and exit 130 without the "interrupted" error line that an
    abrupt stop gets."""
    if iteration is not None:
        info(f"esr: interrupted; run the same command again to resume from iteration {iteration}")
    state.stopped_cleanly = True
    raise typer.Exit(130)


def make_folder(folder: Path) -> list[Path]:
    """Create an output folder (and its parents).

    Returns:
        The folders created, outermost first (for :func:`remove_if_empty`).

    Raises:
        ImageError: it cannot be created (one line naming it).
    """
    from esrcli.errors import ImageError, folder_failure

    created, p = [], Path(folder).absolute()
    while not p.exists() and p != p.parent:
        created.insert(0, p)
        p = p.parent
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageError(folder_failure(folder, exc, "output folder")) from None
    return created


def remove_if_empty(created: list[Path]) -> None:
    """Remove folders a run created and left empty, innermost first."""
    for p in reversed(created):
        try:
            p.rmdir()
        except OSError:
            return


@contextmanager
def output_parent(path: Path) -> Iterator[None]:
    """Create the folder an output file goes into (as ``esr upscale`` creates its folder);
    the folders it created are removed again if the block fails and leaves them empty.

    Raises:
        ImageError: it cannot be created (one line naming it).
    """
    created = make_folder(Path(path).parent)
    try:
        yield
    except BaseException:
        remove_if_empty(created)
        raise


def check_unit_interval(value: float, option: str) -> None:
    """Refuse ``value`` outside ``[0, 1]`` (NaN included) as a usage error naming ``option``.

    Raises:
        typer.BadParameter: ``"OPTION: must be between 0 and 1, got VALUE"``.
    """
    if not 0.0 <= value <= 1.0:
        raise typer.BadParameter(f"must be between 0 and 1, got {value}", param_hint=option)


def error(message: str, hint: str | None = None) -> None:
    """Print ``esr: error: MESSAGE`` (and ``  hint: ...``) as one line each on stderr."""
    line(f"esr: error: {message}" + (f"\n  hint: {hint}" if hint else ""), stream=sys.stderr)


def warn(message: str) -> None:
    """Print ``esr: warning: MESSAGE`` on stderr."""
    line(f"esr: warning: {message}", stream=sys.stderr)


def info(message: str) -> None:
    """Print an informational line on stderr (results go to stdout)."""
    line(message, stream=sys.stderr)


class _Bar:
    """What :func:`progress` yields: call it once per finished item; :meth:`frames` shows a
    second line for the frames of the file in progress (a video)."""

    def __init__(self, bar: Progress, task: object, unit: str) -> None:
        self._bar, self._task, self._unit = bar, task, unit
        self._frames: object | None = None

    def __call__(self, n: int = 1, description: str | None = None) -> None:
        self._bar.advance(self._task, n)
        t = self._bar.tasks[self._task]
        speed = t.finished_speed or t.speed
        kw = {"rate": f"{speed:.2f} {self._unit}/s" if speed else ""}
        if description is not None:
            kw["description"] = description
        self._bar.update(self._task, **kw)
        if self._frames is not None:  # the file whose frames were shown is done
            self._bar.remove_task(self._frames)
            self._frames = None

    def frames(self, name: str, done: int, total: int | None, fps: float, eta: float | None) -> None:
        """Show ``done`` of ``total`` frames of ``name`` at ``fps`` frames/s, ``eta`` seconds left."""
        left = f", {eta:.0f} s left" if eta is not None else ""
        rate = f"{fps:.2f} frames/s{left}"
        if self._frames is None:
            self._frames = self._bar.add_task(name, total=total, rate=rate)
        self._bar.update(self._frames, completed=done, total=total, rate=rate)


@contextmanager
def progress(description: str, total: int | None, unit: str = "img") -> Iterator[_Bar]:
    """A rich progress bar on stderr with rate and ETA.

    Yields ``advance(n=1, description=None)``; call it once per finished item
    (``advance.frames(...)`` adds a line for the frames of a video in progress).
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
        yield _Bar(bar, task, unit)


@contextmanager
def download_progress(description: str) -> Iterator:
    """A download bar on stderr (bytes, speed, time left; hidden when stderr is no terminal);
    yields ``progress(done_bytes, total_bytes_or_None)`` for :mod:`esrcli.weights.download`."""
    from rich.progress import DownloadColumn, TransferSpeedColumn

    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        TimeRemainingColumn(), console=err, transient=True, disable=not err.is_terminal,
    ) as prog:
        task = prog.add_task(description, total=None)

        def update(done: int, total: int | None) -> None:
            prog.update(task, completed=done, total=total)

        yield update


@contextmanager
def stop_requests(what: str = "training") -> Iterator[Callable[[], bool]]:
    """Ctrl-C or SIGTERM asks a long run to stop at its next safe point instead of killing it.

    Within the block the first SIGINT or SIGTERM only sets a flag (with one line on stderr);
    the run polls the yielded ``requested()`` and stops the way ``--time-limit`` does (a
    checkpoint and an export). A second Ctrl-C (SIGINT) raises ``KeyboardInterrupt`` at once;
    a repeated SIGTERM does not (schedulers and torchrun may send it to a process twice).
    Outside the main thread (no signal handlers there) the flag stays unset.
    """
    import signal
    import threading

    flag = threading.Event()
    pid = os.getpid()

    def handler(signum: int, frame: object) -> None:
        if os.getpid() != pid:  # a forked child that kept the handler: the default action
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if flag.is_set():
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        flag.set()
        # os.write: a handler may run while the main code is inside a buffered write to stderr
        os.write(2, f"esr: stopping {what} at the next iteration with a checkpoint "
                    f"(press Ctrl-C again to stop at once, losing it)\n".encode())

    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread
        pass
    try:
        yield flag.is_set
    finally:
        for sig, old in previous.items():
            signal.signal(sig, signal.SIG_DFL if old is None else old)  # None: a handler set from C
