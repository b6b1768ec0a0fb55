"""esrcli.memory: freed blocks stay mapped inside keep_freed_memory (glibc only)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from esrcli import memory
from esrcli.memory import keep_freed_memory

pytestmark = pytest.mark.skipif(memory._glibc() is None, reason="needs glibc's mallopt/malloc_trim")

# Run in a fresh interpreter so glibc starts from its own defaults. One round: four 24 MB
# blocks (96 MB, more than glibc's trim threshold) malloc'ed, filled and freed; the script
# prints each round's page faults, without and then with keep_freed_memory. The blocks come
# straight from malloc, not from torch: torch's small allocations land between its tensors
# and make the heap's layout (and so the exact reuse) differ from run to run, which is not
# what this module controls.
_SCRIPT = """
import ctypes, json, resource
from esrcli.memory import _glibc, keep_freed_memory, release_memory

libc = _glibc()
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
SIZE = 24 * 1024 * 1024

def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [libc.malloc(SIZE) for _ in range(4)]
    for b in blocks:
        libc.memset(b, 1, SIZE)
    for b in blocks:
        libc.free(b)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

plain = [faults(), faults()]
release_memory()
with keep_freed_memory():
    kept = [faults() for _ in range(4)]
release_memory()
print(json.dumps({"plain": plain, "kept": kept, "trimmed": faults()}))
"""


def test_freed_blocks_are_reused_without_page_faults() -> None:
    res = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, check=True)
    r = json.loads(res.stdout.strip().splitlines()[-1])
    pages = 4 * 24 * 1024 * 1024 // 4096  # 24,576
    # glibc's defaults give the 96 MB back on free: every round faults all pages in again.
    assert r["plain"][1] > pages // 2, r
    # Inside the block every round after the first reuses the pages of the first.
    assert max(r["kept"][1:]) < pages // 20, r
    # release_memory gives the kept pages back: touching them again faults.
    assert r["trimmed"] > pages // 2, r


def test_nesting_and_exceptions_restore_the_depth() -> None:
    with pytest.raises(RuntimeError):
        with keep_freed_memory():
            with keep_freed_memory():
                assert memory._depth == 2
            assert memory._depth == 1
            raise RuntimeError("boom")
    assert memory._depth == 0
