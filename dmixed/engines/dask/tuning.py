"""glibc malloc settings for the worker processes (data pass and statistics).

Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also switches
off glibc's dynamic mmap threshold (DESIGN.md §10): every temporary above 128 kB of a
kernel call then is a fresh ``mmap`` whose pages fault in one by one, and the data
pass's per-partition temporaries (tens of MB) go back to the OS after every partition
and fault in again for the next.  :func:`tune_malloc` raises both thresholds, once per
process.

A worker runs its tasks on threads of its own, and glibc gives such a thread an arena
of its own, made of heaps of at most 64 MB (``HEAP_MAX_SIZE``): a heap whose every
chunk is freed is unmapped whatever the trim threshold, unless the heap before it lacks
``M_TOP_PAD`` bytes of room.  A chain's per-partition temporaries (tens of MB) fill more
than one heap, so without a pad every partition unmapped heaps and faulted fresh
(huge) pages into new ones, in the kernel (benchmarks/RESULTS.md, ooc-s32): a worker's
chain cost more than the same chain in a plain process's main thread, whose arena is
the ``brk`` heap that the trim threshold governs.  :func:`tune_malloc` sets the pad to
the mmap threshold: a heap goes back only when the one before it can serve any request
that is not mapped on its own.

Blocks above the mmap threshold are mapped on their own and go back to the OS when
freed, whatever the settings: a chain's table of terms (a row per group: 90 MB for 1M
groups of a random slope) and its spill.  A page the OS took back is faulted in and
zeroed again on first touch, and in a virtual machine that reports free pages to its
host a page freed seconds before costs many times more to fault in than one freed just
now (benchmarks/RESULTS.md, ooc-s33): :func:`tune_malloc` also has
:func:`~dmixed.kernels.term_table.table_buffer` keep those buffers for the next data
pass's chains (:func:`~dmixed.kernels.term_table.keep_table_buffers`), and a block's
merged rows and the rows of a part that came from another worker, each for its own use.
Dask reads every buffer it receives into memory of its own, so a part is sent in pieces
below the mmap threshold (:data:`~dmixed.kernels.term_table.MOVED_PIECE_BYTES`), which
the heap serves from pages it keeps, and joined in a kept buffer (benchmarks/RESULTS.md,
alt-s36).

A worker also loads numba at its first large per-row pass (:func:`prepare_worker`,
:func:`~dmixed.kernels.compiled.load_eagerly`): it stays up for many passes over large
partitions, where a pass of numpy costs more than the load within a few partitions, while
an in-process fit rents numpy until the ledger says to buy.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys

from ...kernels.compiled import load_eagerly
from ...kernels.term_table import keep_table_buffers

#: Apply :func:`tune_malloc` in the worker processes: the mmap threshold to 32 MB, the
#: trim threshold to :data:`WORKER_TRIM_THRESHOLD` and the top pad to
#: :data:`WORKER_TOP_PAD` (benchmarks/RESULTS.md).
TUNE_WORKER_MALLOC = True
#: Bytes of free heap a worker may keep instead of returning them to the OS.
WORKER_TRIM_THRESHOLD = 128 << 20
#: glibc's mmap threshold in tuned workers.
WORKER_MMAP_THRESHOLD = 32 << 20
#: glibc's top pad in tuned workers: the room a thread arena's heap must have for the
#: heap after it to be unmapped when it empties (see the module).
WORKER_TOP_PAD = WORKER_MMAP_THRESHOLD

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_malloc_tuned = False
_malloc_raised = False  # whether tune_malloc changed glibc's settings in this process


def tune_malloc() -> None:
    """Raise glibc's mmap and trim thresholds and its top pad in this process (see the
    module).

    Once per process, and only on Linux with glibc and with ``MALLOC_TRIM_THRESHOLD_``
    set in the environment (as Dask's nanny does); otherwise nothing.
    """
    global _malloc_tuned, _malloc_raised
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
    mallopt(ctypes.c_int(_M_TOP_PAD), ctypes.c_int(WORKER_TOP_PAD))
    _malloc_raised = True
    # the blocks above the mmap threshold glibc gives back when freed: a chain's table
    # of terms and its spill, kept for the next data pass's chains instead
    keep_table_buffers()


def release_free_memory() -> bool:
    """Give the OS back the free memory this process's allocators keep: glibc's free
    heap (``malloc_trim``) and pyarrow's pool (``release_unused``); whether anything
    was asked.  Only where :func:`tune_malloc` raised glibc's settings (a worker
    started by Dask's nanny; not the driver of in-process Dask): a chain of the design
    matrices' route leaves some hundreds of MB of its per-partition temporaries and
    read buffers free but mapped, which a random slope's next pass (its own
    temporaries taken from kept buffers) would not use, and which would sit beside
    the next pass of that route as well (benchmarks/RESULTS.md, twomod-s55).  Called
    at such a chain's first partition (what an earlier pass left) and at its end, not
    per partition: within a pass, the heap keeps its pages (see the module).

    Returns
    -------
    bool
        True where the release was asked (the allocators may give back nothing), False
        in a process whose settings :func:`tune_malloc` left alone.
    """
    if not _malloc_raised:
        return False
    try:
        import pyarrow as pa

        pa.default_memory_pool().release_unused()
    except ImportError:  # pragma: no cover - pyarrow is a dependency of the Dask route
        pass
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).malloc_trim(ctypes.c_size_t(0))
        except (OSError, AttributeError):  # not glibc
            pass
    return True


def release_read_buffers() -> None:
    """Give the OS back the free memory of pyarrow's pool in a Dask worker (nothing
    elsewhere): the buffers of the partitions a chain read, which the pool keeps when
    freed.  Dask counts them in the worker's memory and pauses a worker at a fraction
    of its limit: a worker with a small limit could be paused by the pages a finished
    level scan or data pass left, and never resume, as nothing else frees them.
    Called once a chain has read its partitions, not per partition."""
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return  # not a worker: in-process, the caller's pool is the caller's
    try:
        import pyarrow as pa
    except ImportError:  # pragma: no cover - pyarrow is a dependency of the Dask route
        return
    pa.default_memory_pool().release_unused()


#: The rows of a partition from which a worker collects its design's reference cycles
#: (:func:`collect_design_cycles`): a collection costs about the same whatever the
#: rows, what it frees grows with them.
COLLECT_ROWS = 50_000


def collect_design_cycles(rows: int) -> None:
    """Free, in a Dask worker (nothing elsewhere), what the design of a partition of
    ``rows`` rows left in reference cycles: formulaic's materializer keeps the frame it
    was given and the factors it evaluated from it (the partition's columns) in a cycle
    (the closures of its model-matrix call refer back to it), which the collector's
    automatic passes reach late: a worker's objects are many and long-lived, so a
    chain's next partition was read and designed beside the last one's columns, and a
    worker's columns stayed after its chain.  The cycle is young (made by the design
    just done), so a collection of the two younger generations frees it, at a fraction
    of a millisecond where a full pass over a worker's objects takes a hundred or more
    and holds the interpreter's lock throughout.  Where another thread's collection is
    running the call does nothing (CPython's rule); that thread's pass or a later one
    frees it.  Called after a partition's formulaic design (not the column-by-column
    design, whose frame reference counting frees), for ``rows`` of at least
    :data:`COLLECT_ROWS`."""
    if rows < COLLECT_ROWS:
        return
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return  # not a worker: in-process, the caller's collector is the caller's
    gc.collect(1)


def tune_worker_malloc() -> None:
    """:func:`tune_malloc` when :data:`TUNE_WORKER_MALLOC` is on (the data pass's tasks
    call this first: they allocate large temporaries too)."""
    if TUNE_WORKER_MALLOC:
        tune_malloc()


def prepare_worker() -> None:
    """What a task of the data pass sets up in its worker process first: the kernels'
    eager purchase of numba (:func:`~dmixed.kernels.compiled.load_eagerly`: the
    process stays up for many large passes) and the malloc settings
    (:func:`tune_worker_malloc`)."""
    load_eagerly()
    tune_worker_malloc()
