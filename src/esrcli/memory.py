"""Process heap settings for large-tensor work on the CPU (glibc; no-ops elsewhere).

PyTorch's CPU tensors come from ``malloc``. glibc serves blocks of 32 MB and more (and,
until its dynamic threshold has adapted, anything over 128 KB) with a fresh ``mmap`` and
gives them back to the system on ``free``; the next tensor of that size then faults in and
zero-fills every 4 KB page again. An RRDBNet x4 forward on a 256x256 input allocates and
frees such blocks hundreds of times (the 64-channel feature maps of its x4 tail, the
outputs of its convolutions): about 485,000 page faults and 1.3-1.5 s of kernel time per
forward, 17% of the wall time on 2 cores (measured in one process, alternating).

:func:`keep_freed_memory` keeps freed blocks in the heap while a block of work runs, so
later tensors reuse pages that are already mapped. Peak resident memory does not change
(the same blocks are live at the peak either way); the memory is given back by
:func:`release_memory`.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import threading
from collections.abc import Iterator
from functools import lru_cache

__all__ = ["keep_freed_memory", "release_memory"]

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
# What the settings go back to after keep_freed_memory. glibc's own defaults adapt at run
# time (mmap threshold 128 KB rising to 32 MB as blocks are freed); any mallopt call stops
# that adaptation, so the restored values are where it settles for large tensors.
_RESTORE = ((_M_MMAP_MAX, 65536), (_M_MMAP_THRESHOLD, 32 * 1024 * 1024), (_M_TRIM_THRESHOLD, 64 * 1024 * 1024))
_KEEP = ((_M_MMAP_THRESHOLD, 32 * 1024 * 1024), (_M_TRIM_THRESHOLD, 2**31 - 1))

_lock = threading.Lock()
_depth = 0


@lru_cache(maxsize=1)
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has ``mallopt`` and ``malloc_trim``), else ``None``."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:  # pragma: no cover - no C library to talk to
        return None
    if not all(hasattr(libc, name) for name in ("mallopt", "malloc_trim", "gnu_get_libc_version")):
        return None
    return libc


def release_memory() -> None:
    """Give freed heap memory back to the system (glibc ``malloc_trim``; a no-op elsewhere).

    Loading and converting a model frees many mid-sized tensors whose pages glibc would
    otherwise keep; trimming lowers the resident size (about 60 MB for RRDBNet).
    """
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


@contextlib.contextmanager
def keep_freed_memory() -> Iterator[None]:
    """While the block runs, freed memory stays in the heap instead of going back to the system.

    Sets glibc's ``M_MMAP_MAX`` to 0 (every block comes from the heap) and a trim threshold
    of 2 GB. On leaving the outermost block (the context nests, and is shared by threads)
    the settings go back to mmap for blocks of 32 MB and more and trimming above 64 MB;
    the memory kept so far stays until :func:`release_memory` or later frees give it back.
    Results do not change. A no-op where the C library is not glibc.
    """
    global _depth
    libc = _glibc()
    if libc is None:
        yield
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            for param, value in _KEEP:
                libc.mallopt(param, value)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for param, value in _RESTORE:
                    libc.mallopt(param, value)
