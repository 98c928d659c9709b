"""glibc malloc settings for the worker processes (data pass and statistics).

Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also switches
off glibc's dynamic mmap threshold (DESIGN.md §10): every temporary above 128 kB of a
kernel call then is a fresh ``mmap`` whose pages fault in one by one, and the data
pass's per-partition temporaries (tens of MB) go back to the OS after every partition
and fault in again for the next.  :func:`tune_malloc` raises both thresholds, once per
process.
"""

from __future__ import annotations

import ctypes
import os
import sys

#: Apply :func:`tune_malloc` in the worker processes: the mmap threshold to 32 MB and
#: the trim threshold to :data:`WORKER_TRIM_THRESHOLD` (benchmarks/RESULTS.md).
TUNE_WORKER_MALLOC = True
#: Bytes of free heap a worker may keep instead of returning them to the OS.
WORKER_TRIM_THRESHOLD = 128 << 20
#: glibc's mmap threshold in tuned workers.
WORKER_MMAP_THRESHOLD = 32 << 20

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers
_M_MMAP_THRESHOLD = -3
_malloc_tuned = False


def tune_malloc() -> None:
    """Raise glibc's mmap and trim thresholds in this process (see the module).

    Once per process, and only on Linux with glibc and with ``MALLOC_TRIM_THRESHOLD_``
    set in the environment (as Dask's nanny does); otherwise nothing.
    """
    global _malloc_tuned
    if _malloc_tuned:
        return
    _malloc_tuned = True
    if not sys.platform.startswith("linux") or "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return
    mallopt(ctypes.c_int(_M_MMAP_THRESHOLD), ctypes.c_int(WORKER_MMAP_THRESHOLD))
    mallopt(ctypes.c_int(_M_TRIM_THRESHOLD), ctypes.c_int(WORKER_TRIM_THRESHOLD))


def tune_worker_malloc() -> None:
    """:func:`tune_malloc` when :data:`TUNE_WORKER_MALLOC` is on (the data pass's tasks
    call this first: they allocate large temporaries too)."""
    if TUNE_WORKER_MALLOC:
        tune_malloc()
