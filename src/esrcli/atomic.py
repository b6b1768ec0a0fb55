"""Atomic file output: write beside the target, fsync, then rename over it.

A leaf module (standard library only) shared by image, model-file and checkpoint writers:
an interrupted or failed write (Ctrl-C, full disk) never leaves a half-written file at
the target path, and an existing file there stays intact until the new one is complete.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO, Iterator

__all__ = ["atomic_output", "folder_lock", "remove_stale_parts"]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _publish_new(tmp: str, path: Path) -> None:
    """Move ``tmp`` to ``path`` only if nothing is there: a hard link fails atomically when
    ``path`` exists (another process may have written it meanwhile). File systems without
    hard links fall back to a check, then a rename."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:  # EPERM / ENOTSUP / EXDEV: no hard links here
        if path.exists():
            raise FileExistsError(17, "exists", str(path)) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


@contextmanager
def atomic_output(path: str | os.PathLike, replace: bool = True) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path`` for binary writing; publish it on success.

    On leaving the block normally the data is flushed, fsynced and renamed onto ``path``
    (``os.replace``), with the permissions a plain ``open(path, "wb")`` would give
    (``0o666 & ~umask``; ``mkstemp`` alone makes ``0o600``). On any exception the
    temporary file is removed and the exception propagates unchanged.

    Args:
        path: the target file.
        replace: ``False``: publish only if ``path`` does not exist at that moment (for
            writers told not to overwrite, while another process may write the same file).

    Raises:
        FileExistsError: ``replace=False`` and ``path`` exists when the data is complete
            (the new data is discarded, the existing file untouched).
        OSError: the folder is missing (``FileNotFoundError``) or not writable, or the
            write fails (e.g. ``ENOSPC``); callers turn it into their typed error.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with suppress(AttributeError, OSError):  # no fchmod on Windows
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            _publish_new(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


def remove_stale_parts(folder: str | os.PathLike) -> int:
    """Delete the temporary files :func:`atomic_output` left in ``folder`` when its process was
    killed mid-write (``.NAME.XXXX.part``); returns how many. Only call it while no other
    writer uses the folder (e.g. under :func:`folder_lock`).
    """
    n = 0
    with suppress(OSError):
        for p in Path(folder).iterdir():
            if p.name.startswith(".") and p.name.endswith(".part") and p.is_file():
                with suppress(OSError):
                    p.unlink()
                    n += 1
    return n


@contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[bool]:
    """Hold an exclusive, non-blocking lock on ``folder`` itself (POSIX ``flock`` on the
    folder, so no lock file is left behind; released when the process ends, even killed).

    Yields:
        ``True`` when this process holds the lock, ``False`` when another process does.
        Where ``fcntl`` is missing (Windows) it always yields ``True``.
    """
    try:
        import fcntl
    except ImportError:
        yield True
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
