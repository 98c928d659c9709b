"""A chain's per-group sums kept as a row-major table of its product plan's terms.

:func:`~dmixed.kernels.rows.accumulate_packed_into` adds every call's sums into the
column-major packed accumulator: one ``bincount`` per distinct term, each over a table
of all groups, which misses the cache on every row once the groups are many (9 passes
for a random slope).  :class:`TermTable` instead adds the rows of many calls into one
table ``(groups, terms)``, row-major, by a kernel compiled for the plan
(:mod:`~dmixed.kernels.term_jit`): one cache line a row.  The table is expanded into the
packed accumulator (the plan's columns, times the map's scales) only when the
accumulator needs its values: :meth:`TermTable.flush`.

:meth:`TermTable.add_columns` adds rows given as their raw columns instead
(:class:`ColumnPlan`: which raw column, or the intercept's ones, each column of ``[X y]``
and ``Z`` is), in one compiled sweep that also checks them finite and sums
``[X y]'[X y]``: no design matrix is built.

The sums are those of the numpy reference to rounding (goal: 1e-12 relative): each
group's rows are added in row order, but over all calls at once instead of call by call.
The reference stays for variance components, the within-group sums (one random-design
column, the intercept) and whenever the compiled pass is not picked
(:func:`~dmixed.kernels.compiled.rows_compiled`, ``DMIXED_KERNELS``).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..stats.packed import PackedLayout
from ..stats.standardize import Standardization
from .compiled import CACHE_LINE, rows_compiled
from .groups import ChunkSpans
from .rows import (
    column_scales,
    extreme_scales,
    known_ones,
    live_terms,
    plan_terms,
    prepare_rows,
    row_global_sums,
    wants_column_sums,
    wants_within,
)
from .shifts import ShiftLayout, ShiftPart, layout_in, merge_parts

#: rows whose product plan estimates a partial's width (:meth:`TermTable.row_bytes`)
PLAN_SAMPLE = 64

#: Tables (and their spills) of at least this many bytes are made in the memory of an
#: earlier one that nothing references any more (:func:`table_buffer`): glibc maps
#: such a block on its own (above its mmap threshold, 32 MB in tuned workers) and
#: gives it back to the OS when freed, so a fresh one faults every page in again,
#: zeroed by the kernel; smaller ones come from heaps that keep their pages.
REUSE_MIN_BYTES = 32 << 20
#: Buffers :func:`table_buffer` keeps for later tables that no array views, at most,
#: where it keeps or hands one out (a chain's table and spill; two chains at once on a
#: worker of two threads; the rows of a part from another worker, one a block; the
#: merged rows of :func:`merge_term_rows`; the columns of the partitions a chain holds
#: while it routes, :func:`held_columns`; a block's BLUPs and their covariances, use
#: ``"blups"``; what a worker of two threads uses in a fit of 1M groups fits:
#: benchmarks/RESULTS.md, g2m-s54 and blup-s56).  Buffers still in use do not count:
#: a held result's merged rows, kept for the next fit's once it is gone, would take the
#: place of idle ones.
REUSE_KEPT = 13
#: Bytes of the buffers :func:`table_buffer` keeps that no array views, at most, where
#: it keeps or hands one out (sized to hold those a worker of two threads uses in a fit
#: of 1M groups of a random slope: benchmarks/RESULTS.md, g2m-s54).
REUSE_MAX_BYTES = 768 << 20
#: Bytes of all the buffers :func:`table_buffer` keeps, at most, those still in use
#: included: a buffer in use costs no memory its arrays do not hold anyway, and kept, it
#: serves the next request of its use once they are gone (a refit's merged rows while the
#: last fit's result still holds its block: fresh pages otherwise, benchmarks/RESULTS.md,
#: g2m-s54).
REUSE_ALL_BYTES = 2 * REUSE_MAX_BYTES
#: What a buffer of :func:`table_buffer` is made for: a chain's table of terms, the
#: rows it moves out of it (its spill), a block's merged rows, or the rows of a part
#: that came from another worker (:data:`MOVED_PIECE_BYTES`).  A buffer is handed out
#: again for its own use only: a table's, a spill's and a moved part's views live until
#: their block's merge, a merge's as long as the result that holds its block, so a merge
#: in a free table's memory leaves the next data pass's table fresh pages to fault in
#: (benchmarks/RESULTS.md, alt-s36).
BUFFER_USES = ("table", "spill", "merge", "moved", "held", "blups")
#: (``"held"``: a partition's columns a chain holds while it routes, :func:`held_columns`;
#: ``"blups"``: a block's BLUPs and conditional covariances on their way to the driver,
#: :func:`~dmixed.engines.dask.ahead.block_hessian_random_effects`, whose views live
#: until they are sent.)
#: A :class:`TermRows` sent to another process (pickled: a chain's part of a bucket
#: combined on another worker) goes as row pieces of at most this many bytes, joined
#: on arrival in a buffer of :func:`table_buffer` (use ``"moved"``): Dask's transfer
#: reads every pickled buffer into memory of its own, and one above glibc's mmap
#: threshold (32 MB in tuned workers) is fresh pages, faulted in by the worker's event
#: loop in every data pass (benchmarks/RESULTS.md, alt-s36); smaller ones come from the
#: heap, which keeps its pages.
MOVED_PIECE_BYTES = 16 << 20

#: float64 entries a buffer has beyond its array, so that the array starts on a cache line
_ALIGN_SLACK = CACHE_LINE // 8 - 1

_kept: list[tuple[str, np.ndarray]] = []  # (use, flat float64 buffer) of earlier tables
_kept_lock = threading.Lock()
_keeping = False  # whether table_buffer keeps buffers (keep_table_buffers)


def keep_table_buffers(keep: bool = True) -> bool:
    """Whether :func:`table_buffer` keeps large buffers for later tables in this
    process from now on (a process that makes such tables again and again, as a Dask
    worker's data passes do; elsewhere the memory goes back to the OS as before);
    returns the setting before.  Switched off, the buffers kept are dropped."""
    global _keeping
    with _kept_lock:
        before, _keeping = _keeping, bool(keep)
        if not keep:
            _kept.clear()
    return before


def kept_table_buffers() -> int:
    """How many buffers :func:`table_buffer` keeps now."""
    with _kept_lock:
        return len(_kept)


def release_idle_buffers() -> int:
    """Drop every buffer :func:`table_buffer` keeps that no array views (buffers still
    in use, a held result's merged rows, stay listed); returns the bytes dropped.

    What a pass that makes its sums outside these buffers calls first (the design
    matrices' route of the data pass, whose per-partition temporaries are not taken
    from them): kept idle, they would sit beside its own memory, the two adding up to
    the worker's peak (a random intercept's pass next to a random slope's kept
    buffers: benchmarks/RESULTS.md, twomod-s55).  Thread-safe.

    Returns
    -------
    int
        The bytes of the buffers dropped from the list (their memory goes when the
        last reference goes: at once, since no array views them).
    """
    with _kept_lock:
        alone = [("", np.empty(0))]
        baseline = [sys.getrefcount(b) for _, b in alone][0]
        free = [sys.getrefcount(b) == baseline for _, b in _kept]
        dropped = sum(b.nbytes for (_, b), f in zip(_kept, free, strict=True) if f)
        _kept[:] = [item for item, f in zip(_kept, free, strict=True) if not f]
    return dropped


def table_buffer(shape: tuple[int, int], zeroed: bool, use: str) -> np.ndarray:
    """A C-ordered float64 array of ``shape``, all zeros where ``zeroed`` (else its
    values unset), for a table of terms, its spill, the merged rows of
    :func:`merge_term_rows`, the rows of a part from another process, or a block's
    BLUPs on their way to the driver.

    In a process that keeps them (:func:`keep_table_buffers`), from
    :data:`REUSE_MIN_BYTES` on, it is a view of a buffer this process made for an
    earlier request of the same ``use``, at least as large, that no array views any
    more (its only reference the list that keeps it), zeroed by a pass over pages
    already in memory; else a fresh array, kept for later requests (at most
    :data:`REUSE_KEPT` buffers of :data:`REUSE_MAX_BYTES` that no array views, the new
    one counted as one, and :data:`REUSE_ALL_BYTES` in all; to make room, buffers of the
    same use are dropped first, then those of other uses, the first first: those no
    array views while their bound is passed, then any while the bound of all is; and
    at every request, buffers no array views any more, the first first, while they are
    more than :data:`REUSE_KEPT` or hold more than :data:`REUSE_MAX_BYTES`).  So the
    memory kept that no array views is at most :data:`REUSE_MAX_BYTES` after each
    request and :data:`REUSE_ALL_BYTES` at any time (buffers in use let go between
    requests), a buffer in use costing no memory its arrays do not hold anyway.  A fresh
    array's pages are faulted in and zeroed by the kernel one by one on first touch,
    which costs a chain of 1M groups more than its sums where the OS had taken the
    memory back
    (benchmarks/RESULTS.md, ooc-s33); a buffer in use (a chain's partials, views of
    its table, until their combine; a held result's merged rows) is never handed out,
    and a buffer of another use never is either (:data:`BUFFER_USES`).  Thread-safe.

    Parameters
    ----------
    shape : (int, int)
        ``(rows, columns)``.
    zeroed : bool
        Zeros (a table), else values left as they are (a spill or merged rows, written
        whole).
    use : str
        One of :data:`BUFFER_USES`.

    Returns
    -------
    ndarray (rows, columns) of float64
        C-ordered; a view of a kept buffer or a fresh array.

    Raises
    ------
    ValueError
        ``use`` not one of :data:`BUFFER_USES`.
    """
    if use not in BUFFER_USES:
        raise ValueError(f"use must be one of {BUFFER_USES}, got {use!r}")
    size = int(shape[0]) * int(shape[1])
    if not _keeping or size * 8 < REUSE_MIN_BYTES:
        flat = np.zeros(size + _ALIGN_SLACK) if zeroed else np.empty(size + _ALIGN_SLACK)
        return _aligned(flat, shape)
    with _kept_lock:
        # a buffer no array views has the references of a kept tuple's element nothing
        # else holds, counted the same way (the tuple's, the loop's name, and
        # getrefcount's argument where the interpreter counts it)
        alone = [("", np.empty(0))]
        baseline = [sys.getrefcount(b) for _, b in alone][0]
        free = [sys.getrefcount(b) == baseline for _, b in _kept]
        free = _trimmed(free)
        fits = [
            i
            for i, (u, b) in enumerate(_kept)
            if free[i] and u == use and b.size >= size + _ALIGN_SLACK
        ]
        if fits:
            out = _aligned(_kept[min(fits, key=lambda i: _kept[i][1].size)][1], shape)
        else:
            buffer = np.zeros(size + _ALIGN_SLACK) if zeroed else np.empty(size + _ALIGN_SLACK)
            _kept_with(use, buffer, free)
            return _aligned(buffer, shape)
    if zeroed:
        out.fill(0.0)
    return out


def _aligned(buffer: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The view of flat float64 ``buffer`` (at least :data:`_ALIGN_SLACK` entries more
    than ``shape`` holds) of ``shape`` that starts at its first address on a cache line
    (:data:`~dmixed.kernels.compiled.CACHE_LINE` bytes)."""
    skip = (-buffer.ctypes.data % CACHE_LINE) // buffer.itemsize
    return buffer[skip : skip + int(shape[0]) * int(shape[1])].reshape(shape)


def _kept_with(use: str, buffer: np.ndarray, free: list[bool]) -> None:
    """Keep ``buffer`` for ``use`` (the lock held; ``free[i]``: whether no array views
    ``_kept[i]``), first dropping buffers no array views while, with ``buffer`` counted
    as one of them, they would be more than :data:`REUSE_KEPT` or hold more than
    :data:`REUSE_MAX_BYTES`, then any while the list would hold more than
    :data:`REUSE_ALL_BYTES` in all: each time those of ``use`` before those of other
    uses (a fresh buffer of ``use`` stands for the ones of its use that were too small
    or in use: a held result's merged rows, whose arrays keep their memory, no longer
    handed out), those no array views before those in use, the first first; not kept
    where ``buffer`` alone is more than that.
    Dropping a buffer in use makes no room among those no array views, so none is
    dropped for that."""
    if buffer.nbytes > min(REUSE_MAX_BYTES, REUSE_ALL_BYTES):
        return  # never kept: nothing dropped for it
    order = sorted(range(len(_kept)), key=lambda i: (_kept[i][0] != use, not free[i], i))
    idle = [_kept[i][1] for i in order if free[i]]
    victims = [_kept[i][1] for i in order]
    idle_ids = {id(b) for b in idle}

    def idle_room() -> bool:
        unused = [b.nbytes for _, b in _kept if id(b) in idle_ids]
        return len(unused) < REUSE_KEPT and sum(unused) + buffer.nbytes <= REUSE_MAX_BYTES

    def all_room() -> bool:
        return sum(b.nbytes for _, b in _kept) + buffer.nbytes <= REUSE_ALL_BYTES

    for room, candidates in ((idle_room, idle), (all_room, victims)):
        for victim in candidates:
            if room():
                break
            _kept[:] = [(u, b) for u, b in _kept if b is not victim]
    if idle_room() and all_room():
        _kept.append((use, buffer))


def _trimmed(free: list[bool]) -> list[bool]:
    """Drop kept buffers no array views (``free[i]`` for ``_kept[i]``; the lock held),
    the first first, while they are more than :data:`REUSE_KEPT` or hold more than
    :data:`REUSE_MAX_BYTES` (buffers kept while in use and let go since); ``free`` of
    the buffers left."""
    count = sum(free)
    unused = sum(b.nbytes for (_, b), f in zip(_kept, free, strict=True) if f)
    keep = []
    for (use, b), f in zip(_kept, free, strict=True):
        if f and (count > REUSE_KEPT or unused > REUSE_MAX_BYTES):
            count -= 1
            unused -= b.nbytes
        else:
            keep.append(((use, b), f))
    _kept[:] = [item for item, _ in keep]
    return [f for _, f in keep]


def _table_columns(terms: list, column_term: list) -> tuple[list, tuple]:
    """A plan's live terms (the table's columns, in order) and each packed column's
    table column (−1: a zero term, read from the column of zeros)."""
    live = live_terms(terms)
    place = {t: i for i, t in enumerate(live)}
    return live, tuple(place.get(terms[t], -1) for t in column_term)


def zero_column(packed_to_table: tuple) -> int:
    """1 where a table of terms has a column of zeros after its terms (its last): where
    some packed column reads a zero term (−1 in ``packed_to_table``, the table column of
    every packed column), else 0.  A plan without zero terms (every plan of
    :meth:`TermTable.add_columns`) keeps no such column: it would be summed, split,
    sent and merged for nothing."""
    return int(any(t < 0 for t in packed_to_table))


@dataclass(frozen=True)
class ColumnPlan:
    """Which raw column each column of ``[X y]`` and of ``Z`` is, for
    :meth:`TermTable.add_columns`.

    Parameters
    ----------
    x_of : tuple of int
        For every column of ``[X y]`` (``p + 1``: the response last), its raw column's
        index, −1 for a column of ones (the intercept).
    z_of : tuple of int
        The same for every column of ``Z`` (``exog_re``).
    """

    x_of: tuple[int, ...]
    z_of: tuple[int, ...]

    def matrices(self, columns: list) -> tuple:
        """``(endog, exog, exog_re)`` the raw ``columns`` make (numpy; the reference of
        :meth:`TermTable.add_columns`, and the design the columns stand for)."""
        n = columns[0].shape[0] if columns else 0

        def matrix(of) -> np.ndarray:
            out = np.empty((n, len(of)), order="F")
            for j, c in enumerate(of):
                out[:, j] = 1.0 if c < 0 else columns[c]
            return out

        xy = matrix(self.x_of)
        return xy[:, -1].copy(), np.asfortranarray(xy[:, :-1]), matrix(self.z_of)


@dataclass(frozen=True)
class ShiftTerms:
    """Where a table of terms keeps its groups' random-design sums about a shift of
    each group's own (:meth:`TermTable.add_columns`; what they are:
    :class:`~dmixed.kernels.shifts.ShiftLayout`, ``layout``): the table columns of
    every slope's first value as read (``first``), of ``Σ δ`` (``dsum``), of the
    products ``δ'δ`` (``dgram``, in ``layout.dgram``'s order), of ``Σ δ a``
    (``dxy``, ``layout.dxy``'s order), of the plain ``Σ a`` (``xsum``,
    ``layout.others``' order), of the rows' count (``count``) and of their weights'
    sum (``wsum``: ``count`` without weights).  With weights every sum but the count
    is weighted (:class:`~dmixed.kernels.shifts.ShiftPart`)."""

    layout: ShiftLayout
    first: tuple
    dsum: tuple
    dgram: tuple
    dxy: tuple
    xsum: tuple
    count: int
    wsum: int

    def part(self, keys: np.ndarray, rows: np.ndarray) -> ShiftPart:
        """The :class:`~dmixed.kernels.shifts.ShiftPart` of table rows ``rows`` (one per
        key of ``keys``)."""

        def cols(which: tuple) -> np.ndarray:
            return np.ascontiguousarray(rows[:, list(which)].T).reshape(len(which), -1)

        return ShiftPart(
            np.asarray(keys),
            np.asarray(rows[:, self.count], dtype=np.float64),
            np.asarray(rows[:, self.wsum], dtype=np.float64),
            cols(self.first),
            cols(self.dsum),
            cols(self.dgram),
            cols(self.dxy),
            cols(self.xsum),
            self.layout,
        )


class TermTable:
    """Per-group sums of many calls for one packed accumulator (see the module).

    The table's row ``g`` belongs to the accumulator's column ``g``; whoever moves the
    accumulator's columns (grows, reorders, reads them) calls :meth:`flush` first.

    ``keep_shifts``: the passes also keep every group's random slopes about its first
    row's values (:class:`ShiftTerms`, where the plan allows them), so that its lossy
    groups fit exactly; off, they cost nothing (they make the sweep slower:
    benchmarks/RESULTS.md, lossy-s44) and a lossy group is refused where it is found.

    ``on_flush``: called with the table before every :meth:`flush` adds its sums into
    the accumulator, the caller's flushes and those of a plan change in :meth:`add`
    or :meth:`add_columns` alike (a weighted chain's batch of weights of 1 takes the
    unweighted plan), while :attr:`shifted` and the table's rows are still the
    flushed plan's: where the sums about the groups' shifts are taken out before
    they go.
    """

    def __init__(
        self, keep_shifts: bool = False, on_flush: Callable[[TermTable], None] | None = None
    ) -> None:
        self.keep_shifts = bool(keep_shifts)
        self.on_flush = on_flush
        self.table: np.ndarray | None = None  # (groups, live terms [+ 1 of zeros])
        self.plan: tuple | None = None  # (kernel terms, packed column → table column, scales)
        self.flushed = False  # some sums went into an accumulator already
        self.given = False  # given away as views (split_rows): nothing more to add
        self.shifted: ShiftTerms | None = None  # the plan's sums about the groups' shifts

    def applies(self, n_rows: int, r: int, std: Standardization | None, vc_widths) -> bool:
        """Whether :meth:`add` sums these rows (else the caller runs the reference,
        after :meth:`flush`)."""
        if len(vc_widths) or wants_within(std, r):
            return False
        return rows_compiled(n_rows)

    def add(self, acc, codes, endog, exog, ztilde, weights=None, std=None, vc_widths=()) -> dict:
        """Add these rows' per-group sums into the table (only where :meth:`applies`).

        For every term ``t`` of the rows' :func:`~dmixed.kernels.rows.product_plan` and
        row ``i`` of group ``g = codes[i]``: ``table[g, t] += 1``, ``s_u[i]`` or
        ``s_u[i] s_v[i]``, with ``s`` the rows' columns shifted by the map ``std`` and
        scaled by ``√w`` (:func:`~dmixed.kernels.rows.prepare_rows`); the map's scales
        are applied at :meth:`flush` (:meth:`split_rows`' rows carry them as factors).
        A call whose plan (or accumulator width) differs from the table's first flushes
        the table into ``acc``.

        Parameters
        ----------
        acc : ndarray (width, G)
            The packed accumulator the table belongs to (column-major,
            :func:`~dmixed.kernels.rows.accumulate_packed_into`).
        codes : ndarray of int (n,)
            Each row's column of ``acc``, ``0 … G−1``.
        endog, exog, ztilde, weights, std, vc_widths
            As :func:`~dmixed.kernels.rows.accumulate_packed_into`.

        Returns
        -------
        dict
            The rows' global sums, as :func:`~dmixed.kernels.rows.accumulate_packed_into`.

        Raises
        ------
        ValueError
            A code outside ``0 … G−1`` (the compiled kernel does not check its indices).
        """
        from .term_jit import term_kernel  # numba: imported on first use only

        codes = self._codes(acc, codes)
        rows = prepare_rows(endog, exog, ztilde, weights, std, vc_widths)
        shifts = self._kept_shifts(rows, weights, std, vc_widths)
        extra = () if shifts is None else shifts[0]
        live = self._start(acc, rows.terms, rows.column_term, rows.scales, extra)
        self.shifted = None if shifts is None else shifts[1]
        used = sorted(
            {u for t in live for u in t[1:]}
            | {u for t in extra if t[0] == "dcross" for u in t[3:4]}
            | {u for t in extra if t[0] != "first" and len(t) > _PLAIN_SIZE[t[0]] for u in t[-1:]}
        )
        slot = {u: i for i, u in enumerate(used)}
        kernel_terms = tuple((t[0], *[slot[u] for u in t[1:]]) for t in live)
        sources = [np.ascontiguousarray(rows.sources[u], dtype=np.float64) for u in used]
        if extra:
            # the slopes' raw columns as sources after the plan's ones (``raw{a}``)
            raws = sorted({int(t[1][3:]) for t in extra})
            at = {f"raw{a}": f"v{len(sources) + i}" for i, a in enumerate(raws)}
            sources += [np.ascontiguousarray(ztilde[:, a], dtype=np.float64) for a in raws]
            kernel_terms += tuple(_named(t, slot, at) for t in extra)
        kernel_terms += (("zero",),) * zero_column(self._held()[1][1])  # (the table's width)
        if codes.size:
            term_kernel(kernel_terms)(codes, self.table, *sources)
        return rows.global_sums(codes.size)

    def _kept_shifts(self, rows, weights, std, vc_widths) -> tuple | None:
        """:func:`_shift_terms` of :meth:`add`'s rows where the table keeps the sums
        about the groups' shifts for them, else None: one plan for the sums and for
        :meth:`row_bytes`' width."""
        if not (self.keep_shifts and not len(vc_widths) and rows.std is std):
            return None
        k, r = len(rows.xcols), len(rows.zcols)
        # a Z̃ column that is an [X y] column is that very array (prepare_rows)
        canon = list(range(k)) + [
            next((j for j in range(k) if rows.zcols[a] is rows.xcols[j]), k + a) for a in range(r)
        ]
        ones = set(known_ones(std, None))
        weight = None
        if weights is not None and std is not None and not _intercept_ones(rows, std):
            # the intercept's column is √w: the sums about the shifts weighted by it
            ones, weight = set(), canon[k + int(std.z_intercept)]
        raw_at = {canon[k + a]: a for a in range(r)}  # a slope's raw column of Z̃
        names = {u: f"raw{a}" for u, a in raw_at.items()}
        return _shift_terms(live_terms(rows.terms), k, r, canon, ones, names, std, weight)

    def _codes(self, acc, codes, check: bool = True) -> np.ndarray:
        """``codes`` as int64, checked in ``0 … G−1`` (``check`` false: the kernel
        checks them)."""
        if self.given:
            raise RuntimeError("internal error: the table of terms was given away (split_rows)")
        codes = np.ascontiguousarray(codes, dtype=np.int64)
        if check and codes.size and (codes.min() < 0 or codes.max() >= acc.shape[1]):
            raise ValueError(f"codes must be in 0 … {acc.shape[1] - 1} (the accumulator's columns)")
        return codes

    def _start(self, acc, terms: list, column_term: list, scales, extra: tuple = ()) -> list:
        """The live terms of a plan (the table's columns, then ``extra`` ones), the
        table flushed into ``acc`` and started again when the plan (or the
        accumulator's width) differs from the table's."""
        live, packed_to_table = _table_columns(terms, column_term)
        scales = None if scales is None else tuple(scales.tolist())
        plan = (tuple(live) + tuple(extra), packed_to_table, scales)
        if plan != self.plan or self.table is None or self.table.shape[0] != acc.shape[1]:
            self.flush(acc)
            self.plan = plan
            # np.zeros, as numpy allocates it: the kernel's zeroed pages, huge where
            # numpy advises them (the sweep's rows in random order then miss the TLB
            # far less), or a large earlier table's pages, zeroed again
            width = len(live) + len(extra) + zero_column(packed_to_table)
            self.table = table_buffer((acc.shape[1], width), zeroed=True, use="table")
        return live

    def applies_columns(self, n_rows: int, r: int, std: Standardization | None) -> bool:
        """Whether :meth:`add_columns` sums these rows (else the caller builds the
        design matrices and calls :meth:`add`)."""
        return (
            self.applies(n_rows, r, std, ())
            and not wants_column_sums(std)
            and not extreme_scales(std)
        )

    def add_columns(
        self,
        acc,
        codes,
        columns: list,
        plan: ColumnPlan,
        std: Standardization | None,
        base: int = 0,
    ) -> tuple[int, dict]:
        """Add rows given as their raw columns, in one compiled sweep (only where
        :meth:`applies_columns`): the same sums as :meth:`add` of the design matrices
        the columns make (``plan``), without making them.

        The sweep (:func:`~dmixed.kernels.term_jit.columns_kernel`) checks every value
        finite, sums ``[X y]'[X y]`` of the shifted columns and adds the rows' terms into
        the table: the terms are :meth:`add`'s bit for bit (the same shifted values,
        products and order), the global sums those of :meth:`add` to rounding (summed
        in the rows' order by chunks, not by BLAS).  It stops before the first chunk
        (:data:`~dmixed.kernels.term_jit.COLUMNS_CHUNK` rows) holding a value that is
        not finite: the caller makes the design of the rows from there on, which drops
        or refuses them.

        Parameters
        ----------
        acc
            As :meth:`add`.
        codes : ndarray of int (n,)
            Each row's column of ``acc`` plus ``base``: the codes themselves (``base``
            0), or the rows' int64 group keys where ``acc``'s column ``g`` is the key
            ``g + base`` (no array of codes made: the sweep subtracts ``base``).
        columns : list of ndarray (n,) of float64
            The raw columns :class:`ColumnPlan` numbers.
        plan : ColumnPlan
        std : Standardization or None
            The columns' map.

        Returns
        -------
        (int, dict)
            The rows summed (all ``n``, or those before the chunk of the first value
            that is not finite) and their global sums, as :meth:`add`'s.

        Raises
        ------
        ValueError
            A code (``codes[i] − base``) outside ``0 … G−1``, found by the sweep chunk
            by chunk: the chunks before its own are summed (an internal error: the
            table is then not to be used).
        """
        from .term_jit import columns_kernel  # numba: imported on first use only

        codes = self._codes(acc, codes, check=False)  # the sweep checks them, chunk by chunk
        k, r = len(plan.x_of), len(plan.z_of)
        if std is None:
            x_shift, z_shift = np.zeros(k), np.zeros(r)
        else:
            x_shift, z_shift = np.append(std.x_shift, std.y_shift), std.z_shift
        # the sources [xcols..., zcols...] as (raw column, shift); −1: the ones
        src = [(plan.x_of[j], float(x_shift[j])) for j in range(k)]
        src += [(plan.z_of[a], float(z_shift[a])) for a in range(r)]
        # as product_plan finds them on the rows: a Z column is the first X column of
        # the same values (the same raw column and shift), the ones are the intercepts
        canon = list(range(k)) + [
            next((j for j in range(k) if src[j] == src[k + a]), k + a) for a in range(r)
        ]
        ones = {u for u in set(canon) if src[u][0] < 0}
        terms, column_term = plan_terms(k, r, canon, ones, set())
        scales = column_scales(std, PackedLayout(r, k))
        raw_of = {u: f"c{src[u][0]}[i]" for u in range(k + r)}
        kept = None
        if self.keep_shifts:
            kept = _shift_terms(live_terms(terms), k, r, canon, ones, raw_of, std)
        extra = () if kept is None else kept[0]
        live = self._start(acc, terms, column_term, scales, extra)
        self.shifted = None if kept is None else kept[1]
        used = sorted({u for t in live for u in t[1:]} | {j for j in range(k) if j not in ones})
        slot = {u: i for i, u in enumerate(used)}
        kernel_terms = tuple((t[0], *[slot[u] for u in t[1:]]) for t in live)
        kernel_terms += tuple(_named(t, slot, {n: n for n in raw_of.values()}) for t in extra)
        kernel_terms += (("zero",),) * zero_column(self._held()[1][1])  # (the table's width)
        raws = tuple(src[u][0] for u in used)
        gram_slots = tuple(-1 if j in ones else slot[j] for j in range(k))
        for col in columns:
            if col.ndim != 1 or col.dtype != np.float64 or col.shape[0] != codes.size:
                raise ValueError(f"columns must be float64 of {codes.size} rows")
        gram = np.zeros((k, k))
        done = codes.size
        if codes.size:
            kernel = columns_kernel(kernel_terms, raws, gram_slots, len(columns))
            shifts = np.array([src[u][1] for u in used])
            done = kernel(codes, self.table, gram, shifts, np.int64(base), *columns)
        ones_x = [j for j in range(k) if j in ones]
        gram[np.ix_(ones_x, ones_x)] = done  # the ones' products, which the sweep leaves out
        gram = np.triu(gram) + np.triu(gram, 1).T
        if std is not None:
            sx = np.append(std.x_scale, std.y_scale)
            if np.any(sx != 1.0):
                gram = gram / np.outer(sx, sx)
        return int(done), row_global_sums(gram, done)

    def row_bytes(self, endog, exog, ztilde, weights=None, std=None, vc_widths=()) -> int | None:
        """Bytes of one group's row of terms (the partial :meth:`split_rows` gives) for
        rows like these, planned from their first :data:`PLAN_SAMPLE` rows (an
        estimate: a later call's plan may differ); None where :meth:`applies` does
        not."""
        if not self.applies(len(endog), ztilde.shape[1], std, vc_widths):
            return None
        m = PLAN_SAMPLE
        w = None if weights is None else weights[:m]
        rows = prepare_rows(endog[:m], exog[:m], ztilde[:m], w, std, vc_widths)
        # as wide as the table :meth:`add` makes: the live terms, the sums about the
        # shifts where it keeps them, a column of zeros where a packed column reads one
        shifts = self._kept_shifts(rows, w, std, vc_widths)
        extra = () if shifts is None else shifts[0]
        live, packed_to_table = _table_columns(rows.terms, rows.column_term)
        return 8 * (len(live) + len(extra) + zero_column(packed_to_table))

    def grow(self, old: int, size: int, to: int | np.ndarray = 0) -> bool:
        """Make the table ``size`` rows long as the accumulator it belongs to goes from
        ``old`` to ``size`` columns, its rows moving with the columns (new rows zero):
        old row ``g`` to ``g + to`` (an int: the columns shifted), or old row ``i`` to
        ``to[i]`` (an array of distinct rows, one for each of the first ``to.size`` old
        rows; those after it must hold no sums).  Whether it did, or held nothing;
        false where its rows are not the accumulator's ``old`` columns (the caller
        flushes it instead).

        Moving costs one copy of the rows held, where a flush would transpose them into
        the accumulator and leave the partial to be packed from it.

        Raises
        ------
        ValueError
            ``to`` moves a row outside ``0 … size − 1``.
        """
        if self.given:
            raise RuntimeError("internal error: the table of terms was given away (split_rows)")
        moved = np.asarray(to, dtype=np.int64)
        if moved.ndim == 0:
            bad = old and (int(moved) < 0 or int(moved) + old > size)
        else:
            bad = moved.size > old or (moved.size and (moved.min() < 0 or moved.max() >= size))
        if bad:
            raise ValueError(f"cannot move the table's {old} rows into {size}")
        if self.table is None:
            return True
        if self.table.shape[0] != old:
            return False
        grown = table_buffer((size, self.table.shape[1]), zeroed=True, use="table")
        if moved.ndim == 0:
            grown[int(moved) : int(moved) + old] = self.table
        else:
            grown[moved] = self.table[: moved.size]
        self.table = grown
        return True

    @property
    def pending(self) -> bool:
        """Whether the table holds sums not yet in the accumulator."""
        return self.table is not None

    def _held(self) -> tuple[np.ndarray, tuple]:
        """``(table, plan)`` while :attr:`pending`."""
        if self.table is None or self.plan is None:
            raise RuntimeError("internal error: the table of terms holds no sums")
        return self.table, self.plan

    def counts(self) -> np.ndarray:
        """Every table row's count of rows (packed column 0, ``n``); only while
        :attr:`pending`."""
        table, plan = self._held()
        return table[:, int(plan[1][0])]

    def table_rows(self) -> np.ndarray:
        """Every table row (rows, T) of float64, a view of the table as :meth:`counts`
        is: the terms that :meth:`split_rows` hands over as :attr:`TermRows.rows`; only
        while :attr:`pending`."""
        return self._held()[0]

    def _plan_columns(self) -> tuple[np.ndarray, np.ndarray]:
        """``(columns, factors)``: the table column (the last, of zeros, for a zero
        term: :func:`zero_column`) and the factor of every packed column; only while
        :attr:`pending`."""
        table, (_, packed_to_table, scales) = self._held()
        zero = table.shape[1] - 1  # where a packed column reads it, the last stays zero
        cols = np.array([zero if t < 0 else t for t in packed_to_table], dtype=np.int64)
        factors = np.ones(cols.size) if scales is None else np.asarray(scales, dtype=np.float64)
        return cols, factors

    def split_rows(self, rows: np.ndarray, bucket: np.ndarray, n_buckets: int) -> tuple:
        """The table rows ``rows`` by bucket, without expanding them or copying them out.

        Bucket 0's rows are moved, in place, to the table's front, the others' copied
        to one new array, each bucket's in the order of ``rows``
        (:func:`~dmixed.kernels.term_jit.move_rows`): bucket 0's :class:`TermRows` is a
        view of the table, the others' views of that array; nothing is expanded (the
        fresh pages of the expanded rows cost more than the expansion).  The table is
        given away: nothing may be added to it or read from it afterwards (it is
        dropped here; the views keep its memory).

        Parameters
        ----------
        rows : ndarray of int (n,)
            Distinct table rows, increasing.
        bucket : ndarray of int (n,)
            Each row's bucket, ``0 … n_buckets−1``.
        n_buckets : int

        Returns
        -------
        (order, parts)
            ``order`` (n,): the position in ``rows`` of each row as now held, bucket
            after bucket (bucket ``b``'s the next ``len(parts[b])``); ``parts[b]`` the
            :class:`TermRows` of bucket ``b``.

        Raises
        ------
        ValueError
            ``rows`` not increasing or outside the table.
        """
        table, _ = self._held()
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        if rows.size and (rows[0] < 0 or rows[-1] >= table.shape[0] or (np.diff(rows) <= 0).any()):
            raise ValueError("rows must be distinct table rows, increasing")
        bucket = np.ascontiguousarray(bucket, dtype=np.int64)
        return self._moved(rows, bucket, np.bincount(bucket, minlength=n_buckets))

    def split_seen(self, base: int, n_buckets: int) -> tuple[np.ndarray, list[TermRows]]:
        """The table rows of the groups seen (a count not zero), by the bucket of their
        int64 key ``row + base``: :meth:`split_rows` of ``np.flatnonzero(counts != 0)``
        and those keys' :func:`hash_buckets`, the same rows and parts, with the groups
        seen, their keys' buckets and the buckets' sizes found in one compiled pass
        over the count column (:func:`~dmixed.kernels.term_jit.seen_buckets`) for one
        bucket or a number not a power of two; of two, the move itself finds them, in
        the same pass (:func:`~dmixed.kernels.term_jit.split_seen_two`), and of a
        larger power of two too, each bucket's rows moved into a region as large as its
        keys in the table's range (:func:`~dmixed.kernels.term_jit.split_seen_many`):
        there the spill (a :func:`table_buffer` of use ``"spill"``) holds every table
        row outside bucket 0, seen or not, not only the groups seen, and counts so in
        full against the reuse bounds.  The table is given away, as by
        :meth:`split_rows`.

        Parameters
        ----------
        base : int
            The key of table row 0 (int64; keys wrap as int64 arithmetic does).
        n_buckets : int
            At least 1.

        Returns
        -------
        (rows, parts)
            ``rows``: the table row of each group as now held, bucket after bucket
            (increasing within each); ``parts[b]`` the :class:`TermRows` of bucket
            ``b``.
        """
        from .term_jit import bucket_sizes, seen_buckets, split_seen_many, split_seen_two

        table, plan = self._held()
        count_col = int(plan[1][0])
        if n_buckets == 2:
            # one pass: each row seen moved (bucket 0) or copied (bucket 1) as it is
            # found, into a spill that could hold them all (its pages past the rows
            # copied and one row more are never touched)
            spill = table_buffer(table.shape, zeroed=False, use="spill")
            found = np.empty((2, table.shape[0]), dtype=np.int64)
            n0, n1 = split_seen_two(table, count_col, np.int64(base), spill, found[0], found[1])
            rows = np.concatenate([found[0, :n0], found[1, :n1]])
            return rows, self._given_away([table[:n0], spill[:n1]])
        if n_buckets > 2 and n_buckets & (n_buckets - 1) == 0:
            # one pass too: each bucket's rows into a region as large as the table's
            # rows of that bucket, seen or not (known from the keys alone), so no pass
            # over the count column first; of a power of two only, where a key's bucket
            # is its hash's low bits (another number's remainder, a division a key,
            # costs the two hashings more than the pass saves)
            room = np.zeros(n_buckets, dtype=np.int64)
            bucket_sizes(np.int64(base), table.shape[0], n_buckets, room)
            starts = np.concatenate([[0], np.cumsum(room)]).astype(np.int64)
            spill = table_buffer((table.shape[0] - starts[1] + 1, table.shape[1]), False, "spill")
            seen = np.empty(table.shape[0], dtype=np.int64)
            fill = np.zeros(n_buckets, dtype=np.int64)
            split_seen_many(table, count_col, np.int64(base), n_buckets, spill, starts, fill, seen)
            ends = starts[:-1] + fill
            rows = np.concatenate([seen[starts[b] : ends[b]] for b in range(n_buckets)])
            held = [table[: fill[0]]] + [
                spill[starts[b] - starts[1] : ends[b] - starts[1]] for b in range(1, n_buckets)
            ]
            return rows, self._given_away(held)
        seen = np.empty(table.shape[0], dtype=np.int64)
        bucket = np.empty(table.shape[0], dtype=np.int64)
        sizes = np.zeros(n_buckets, dtype=np.int64)
        m = seen_buckets(table, count_col, np.int64(base), n_buckets, seen, bucket, sizes)
        order, parts = self._moved(seen[:m], bucket[:m], sizes)
        return seen[order], parts

    def _moved(self, rows: np.ndarray, bucket: np.ndarray, counts: np.ndarray) -> tuple:
        """:meth:`split_rows` of checked ``rows`` (increasing table rows, int64) whose
        buckets (int64) hold ``counts`` rows each."""
        from .term_jit import move_rows

        table, _ = self._held()
        n_buckets = counts.size
        starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        spill = table_buffer((rows.size - starts[1], table.shape[1]), zeroed=False, use="spill")
        order = np.empty(rows.size, dtype=np.int64)
        move_rows(table, rows, bucket, starts, spill, order)
        held = [table[: starts[1]]] + [
            spill[starts[b] - starts[1] : starts[b + 1] - starts[1]] for b in range(1, n_buckets)
        ]
        return order, self._given_away(held)

    def _given_away(self, held: list[np.ndarray]) -> list[TermRows]:
        """The :class:`TermRows` of each bucket's rows ``held`` (views of the table or
        its spill), the table given away."""
        columns, factors = self._plan_columns()
        # sums about the groups' shifts only where every row of the table went into them
        shifted = None if self.flushed else self.shifted
        parts = [TermRows(rows_b, columns, factors, shifted) for rows_b in held]
        self.table = None
        self.plan = None
        self.given = True
        return parts

    def flush(self, acc: np.ndarray) -> bool:
        """Add the table into ``acc`` (packed, column-major) and empty it; whether it
        held anything (then :attr:`flushed`)."""
        if self.table is None or self.plan is None:
            return False
        if self.on_flush is not None:
            self.on_flush(self)
        _, packed_to_table, scales = self.plan
        by_term = np.ascontiguousarray(self.table.T)  # one pass, then contiguous rows
        n = by_term.shape[1]
        for c, t in enumerate(packed_to_table):
            if t < 0:
                continue
            if scales is None or scales[c] == 1.0:
                acc[c, :n] += by_term[t]
            else:
                acc[c, :n] += by_term[t] * scales[c]
        self.table = None
        self.plan = None
        self.flushed = True
        return True


class TermRows:
    """Packed rows of partial statistics, held as rows of a table of terms.

    Packed column ``c`` of row ``i`` is ``rows[i, columns[c]] · factors[c]``
    (:meth:`TermTable.split_rows`): the terms of a product plan, fewer columns than the
    packed layout (a random slope and four fixed effects: 10 against 14) and not yet
    multiplied by the map's scales.  The factors are powers of two (the map's scales),
    so sums of term rows times a factor are the sums of the packed rows bit for bit
    (no overflow or underflow aside).  ``np.asarray`` of it is :meth:`packed`.

    Parameters
    ----------
    rows : ndarray (n, T), C-contiguous float64
    columns : ndarray of int64 (width,)
    factors : ndarray (width,)
    shifted : ShiftTerms, optional
        Where the rows also hold their groups' sums about shifts of their own (columns
        no packed column reads), or None.
    """

    def __init__(
        self,
        rows: np.ndarray,
        columns: np.ndarray,
        factors: np.ndarray,
        shifted: ShiftTerms | None = None,
    ) -> None:
        self.rows = rows
        self.columns = columns
        self.factors = factors
        self.shifted = shifted  # where the rows keep sums about the groups' shifts

    @property
    def shape(self) -> tuple[int, int]:
        """The packed rows' shape, ``(n, width)``."""
        return self.rows.shape[0], self.columns.size

    @property
    def nbytes(self) -> int:
        """Bytes held (as sent): the term rows'."""
        return int(self.rows.nbytes)

    def __len__(self) -> int:
        return self.rows.shape[0]

    def __sizeof__(self) -> int:  # what Dask's ``sizeof`` counts for the object
        return object.__sizeof__(self) + self.nbytes + self.columns.nbytes + self.factors.nbytes

    def same_plan(self, other: TermRows) -> bool:
        """Whether ``other`` holds the same terms with the same factors (its rows can be
        added to these)."""
        return (
            self.rows.shape[1] == other.rows.shape[1]
            and np.array_equal(self.columns, other.columns)
            and np.array_equal(self.factors, other.factors)
        )

    def column(self, c: int) -> np.ndarray:
        """Packed column ``c`` of every row, ``(n,)``."""
        values = self.rows[:, self.columns[c]]
        return values if self.factors[c] == 1.0 else values * self.factors[c]

    def packed(self) -> np.ndarray:
        """The packed rows, ``(n, width)`` (one pass)."""
        from .term_jit import expand_rows

        rows = np.ascontiguousarray(self.rows, dtype=np.float64)
        out = np.empty(self.shape)
        expand_rows(rows, np.arange(rows.shape[0]), self.columns, self.factors, out)
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self.packed()
        return out if dtype is None else out.astype(dtype, copy=False)

    def __reduce__(self) -> tuple:
        # pickled as row pieces of at most MOVED_PIECE_BYTES (views: no copy where the
        # pickler takes buffers out of band, as Dask's does), joined where unpickled
        rows = np.ascontiguousarray(self.rows, dtype=np.float64)
        step = max(1, MOVED_PIECE_BYTES // max(1, rows.shape[1] * 8))
        pieces = [rows[lo : lo + step] for lo in range(0, rows.shape[0], step)] or [rows]
        return (_joined_rows, (pieces, self.columns, self.factors, self.shifted))


def _joined_rows(
    pieces: list, columns: np.ndarray, factors: np.ndarray, shifted: ShiftTerms | None = None
) -> TermRows:
    """A :class:`TermRows` unpickled from its row pieces: one piece as it came, more
    joined in a buffer of :func:`table_buffer` (a kept one where this process keeps
    them: memory an earlier data pass's moved rows had, not fresh pages)."""
    if len(pieces) == 1:
        return TermRows(pieces[0], columns, factors, shifted)
    rows = table_buffer(
        (sum(p.shape[0] for p in pieces), pieces[0].shape[1]), zeroed=False, use="moved"
    )
    np.concatenate(pieces, out=rows)
    return TermRows(rows, columns, factors, shifted)


#: The length of a term about the groups' shifts without weights; a weighted one has
#: one element more, the source of ``√w`` (:func:`_shift_terms`).
_PLAIN_SIZE = {"first": 3, "dsum": 3, "dprod": 5, "dcross": 4}


def _intercept_ones(rows, std) -> bool:
    """Whether the random intercept's column of prepared rows ``rows`` is ones on every
    row (weights of 1: their plan is the unweighted one's), read from its plan: the
    term of ``Σ z̃_e z̃_e`` is the count."""
    if std is None or std.z_intercept < 0:
        return False
    e = int(std.z_intercept)
    at = PackedLayout(len(rows.zcols), len(rows.xcols)).column_sources().index(("zz", e, e))
    return rows.terms[rows.column_term[at]] == ("count",)


def _shift_terms(
    live: list, k: int, r: int, canon: list, ones: set, raws: dict, std, weight: int | None = None
) -> tuple | None:
    """``(extra terms, ShiftTerms)``: the terms that keep a table's groups' random
    slopes about shifts of their own (:class:`ShiftTerms`; over the sources
    ``[xcols..., zcols...]`` as :func:`~dmixed.kernels.rows.plan_terms` numbers them,
    a slope read as its raw column ``raws[u]`` (the shift and its differences as the
    rows hold them, in no map), their table columns after the ``live`` ones), for a
    random design of an intercept and slopes; None for any other (nothing kept).
    ``weight``: for weighted rows, the source of the intercept's column ``√w`` (the
    sources scaled by it): each sum about the shifts then weighted by ``w``, its
    terms one element longer (that source), the weights' and the columns' weighted
    sums read from the plan's products with it."""
    if r < 2 or ("count",) not in live or std is None or std.z_intercept < 0:
        return None
    zsrc = [canon[k + a] for a in range(r)]
    e = int(std.z_intercept)
    slopes = tuple(a for a in range(r) if a != e)
    if weight is None and zsrc[e] not in ones:
        return None
    if weight is not None and zsrc[e] != weight:
        return None
    if any(zsrc[a] in ones or zsrc[a] == weight for a in slopes):
        return None
    shared = tuple(next((a for a in range(r) if zsrc[a] == j), -1) for j in range(k))
    others = tuple(j for j in range(k) if j not in ones and shared[j] < 0 and j != weight)

    def summed(j: int) -> tuple:
        """The plan's term of ``Σ a_j`` (weighted: ``Σ √w (√w a_j)``)."""
        return ("col", j) if weight is None else ("prod", min(j, weight), max(j, weight))

    if any(summed(j) not in live for j in others):
        return None
    wsum = live.index(("count",))
    if weight is not None:
        if ("prod", weight, weight) not in live:
            return None
        wsum = live.index(("prod", weight, weight))
    layout = layout_in(ShiftLayout(slopes, others, shared, e, (), (), (), ()), std)
    count = live.index(("count",))
    at = len(live)
    extra: list[tuple] = []

    def add(term: tuple) -> int:
        extra.append(term)
        return at + len(extra) - 1

    raw = [raws[zsrc[a]] for a in slopes]  # what names each slope's raw column
    by = () if weight is None else (weight,)
    first = tuple(add(("first", raw[b], count)) for b in range(len(slopes)))
    dsum = tuple(add(("dsum", raw[b], first[b], *by)) for b in range(len(slopes)))
    dgram = tuple(add(("dprod", raw[b], first[b], raw[c], first[c], *by)) for b, c in layout.dgram)
    dxy = tuple(add(("dcross", raw[b], first[b], j, *by)) for b, j in layout.dxy)
    xsum = tuple(live.index(summed(j)) for j in others)
    return tuple(extra), ShiftTerms(layout, first, dsum, dgram, dxy, xsum, count, wsum)


def _named(term: tuple, slot: dict, names: dict) -> tuple:
    """An extra term of :func:`_shift_terms` for the kernel: its raw columns' names as
    the kernel reads them (``names``), a source of ``[X y]`` as the kernel's value of
    its slot (``v2``)."""
    kind = term[0]
    # a weighted term's last element, the source of √w, as the kernel's value of its slot
    by = tuple(f"v{slot[u]}" for u in term[_PLAIN_SIZE[kind] :])
    if kind in ("first", "dsum"):
        return (kind, names[term[1]], term[2], *by)
    if kind == "dprod":
        return (kind, names[term[1]], term[2], names[term[3]], term[4], *by)
    return (kind, names[term[1]], term[2], f"v{slot[term[3]]}", *by)


def _table_parts(parts: list, keys: list, wanted: np.ndarray | None) -> list:
    """Each part's :class:`~dmixed.kernels.shifts.ShiftPart` of the groups ``wanted``
    it holds (all of its groups where None)."""
    out = []
    for part, part_keys in zip(parts, keys, strict=True):
        rows = np.asarray(part.rows)
        if wanted is None:
            out.append(part.shifted.part(part_keys, rows))
            continue
        pos = np.searchsorted(part_keys, wanted)
        hit = pos < part_keys.size
        hit[hit] = part_keys[pos[hit]] == wanted[hit]
        out.append(part.shifted.part(wanted[hit], rows[pos[hit]]))
    return out


def shifted_rows(rows: np.ndarray, merged: np.ndarray, parts: list, keys: list) -> None:
    """Write into ``rows`` (the parts' rows of terms added by key, one per key of
    ``merged``, increasing int64) their sums about each group's shift
    (:class:`ShiftTerms`) added as :func:`~dmixed.kernels.shifts.merge_parts` adds
    them: the columns an addition by position mixes."""
    desc: ShiftTerms = parts[0].shifted
    got = merge_parts(_table_parts(parts, keys, None))
    got = None if got is None else got.of_keys(merged)
    if got is None:  # pragma: no cover - every key is some part's
        raise RuntimeError("internal error: a key of no part")
    for cols, values in (
        (desc.first, got.first),
        (desc.dsum, got.dsum),
        (desc.dgram, got.dgram),
        (desc.dxy, got.dxy),
    ):
        if cols:
            rows[:, list(cols)] = values.T


def shifted_sums(parts: list, keys: list, wanted: np.ndarray) -> ShiftPart | None:
    """The :class:`~dmixed.kernels.shifts.ShiftPart` of the groups ``wanted`` (int64
    keys, increasing, each some part's) added over rows of terms ``parts`` (each with
    its increasing int64 ``keys``; :func:`~dmixed.kernels.shifts.merge_parts`), in the
    order of ``wanted``; None where some part keeps none.  Only the groups asked for
    are read (a look-up of their keys in each part)."""
    if not parts or any(p.shifted is None for p in parts):
        return None
    if any(p.shifted != parts[0].shifted for p in parts[1:]):
        return None
    got = merge_parts(_table_parts(parts, keys, wanted))
    return None if got is None else got.of_keys(wanted)


def as_packed(values) -> np.ndarray:
    """Packed rows of a partial's values: ``values`` itself, or :meth:`TermRows.packed`."""
    return values.packed() if isinstance(values, TermRows) else values


def add_rows_into(out: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
    """``out[rows] += values``: rows of partial statistics added into a table by position.

    Parameters
    ----------
    out : ndarray (G, width), C-contiguous float64
        The table, changed in place.
    rows : ndarray of int (n,)
        Distinct rows of ``out``, ``0 … G−1`` (distinct is the caller's promise, not
        checked: numpy would keep one of repeated rows' sums, the loop all of them).
    values : ndarray (n, width)
        The rows to add.

    The same sums bit for bit either way: numpy's fancy ``+=`` (a gather, an add and a
    scatter of the rows) or, where the pass runs compiled
    (:func:`~dmixed.kernels.compiled.rows_compiled`), one loop adding row by row
    (``out[rows[i], c] + values[i, c]``, the same additions), which skips numpy's
    temporaries: ≈ 4 against ≈ 20 ms for 459k rows of 14 columns (benchmarks/RESULTS.md).

    Raises
    ------
    ValueError
        ``rows`` outside ``0 … G−1``, or shapes that do not match.
    """
    rows = np.asarray(rows)
    if values.shape != (rows.size, out.shape[1]):
        raise ValueError(f"values of shape {values.shape} for {rows.size} rows of {out.shape}")
    if not rows.size:
        return
    if rows.min() < 0 or rows.max() >= out.shape[0]:
        raise ValueError(f"rows must be in 0 … {out.shape[0] - 1}")
    if not (out.flags.c_contiguous and out.dtype == np.float64 and rows_compiled(rows.size)):
        out[rows] += values
        return
    from .term_jit import add_rows  # numba: imported on first use only

    values = np.ascontiguousarray(values, dtype=np.float64)
    add_rows(out, np.ascontiguousarray(rows, dtype=np.int64), values)


def key_codes(keys: np.ndarray, base: int) -> tuple[int, int, np.ndarray] | None:
    """The keys' range and their codes from ``base``, in one compiled pass.

    Parameters
    ----------
    keys : ndarray (n,)
        Group keys.
    base : int
        The key of code 0.

    Returns
    -------
    (int, int, ndarray of int64) or None
        ``(min, max, keys − base)``: the codes are the keys' differences from ``base``
        only where every key lies within ``2**62`` of ``base`` (the caller checks the
        range before using them: beyond it the int64 differences wrap).  None where
        the keys are not int64, are empty, or the pass does not run compiled
        (:func:`~dmixed.kernels.compiled.rows_compiled`): then the caller computes
        them itself.
    """
    if keys.dtype != np.int64 or keys.ndim != 1 or not rows_compiled(keys.size):
        return None
    from .term_jit import key_codes as compiled  # numba: imported on first use only

    out = np.empty(keys.size, dtype=np.int64)
    lo, hi = compiled(np.ascontiguousarray(keys), np.int64(base), out)
    return int(lo), int(hi), out


def held_columns(keys: np.ndarray | None, columns: list) -> tuple[np.ndarray | None, list] | None:
    """Copies of a partition's group ``keys`` and float64 ``columns`` (all ``(n,)``)
    in one buffer of :func:`table_buffer` (use ``"held"``), every value checked finite
    on the way; None (nothing kept) where one is not.

    A chain holds the columns of the partitions it routes until it sends them or adds
    them up: copied out of the reader's memory, so that the reader's next partitions
    reuse its pages, and into memory an earlier data pass's held columns had where the
    process keeps buffers (:func:`keep_table_buffers`): fresh pages, faulted in one by
    one, cost more than the copy (benchmarks/RESULTS.md).  The copy and the check are
    one compiled pass a column where the per-row pass runs compiled
    (:func:`~dmixed.kernels.compiled.rows_compiled`), else numpy's.

    Parameters
    ----------
    keys : ndarray (n,) or None
        Group keys (copied as they are; in the buffer where their items are 8 bytes),
        or None: keys the caller holds itself (an immutable Arrow array), not copied.
    columns : list of ndarray (n,) of float64 (at least one where ``keys`` is None)

    Returns
    -------
    (keys, columns) or None
        The copies (views of the buffer), or None where a value is not finite.

    Raises
    ------
    ValueError
        A column that is not float64 of ``n`` rows.
    """
    n = columns[0].shape[0] if keys is None else keys.shape[0]
    for col in columns:
        if col.ndim != 1 or col.dtype != np.float64 or col.shape[0] != n:
            raise ValueError(f"columns must be float64 of {n} rows")
    in_buffer = (
        keys is not None and keys.ndim == 1 and keys.dtype.itemsize == 8 and keys.dtype != object
    )
    buffer = table_buffer((len(columns) + in_buffer, n), zeroed=False, use="held")
    compiled = rows_compiled(n)
    if compiled:
        from .term_jit import copy_finite  # numba: imported on first use only
    held = []
    for col, out in zip(columns, buffer[in_buffer:], strict=True):
        if compiled:
            if not copy_finite(np.ascontiguousarray(col), out):
                return None
        elif np.isfinite(col).all():
            out[:] = col
        else:
            return None
        held.append(out)
    if keys is None:
        return None, held
    if in_buffer:
        kept = buffer[0].view(keys.dtype)
        kept[:] = keys
    else:
        kept = keys.copy()
    return kept, held


def key_range(keys: np.ndarray) -> tuple[int, int] | None:
    """The int64 keys' ``(min, max)``, in one compiled pass (no array made).

    Parameters
    ----------
    keys : ndarray (n,)
        Group keys.

    Returns
    -------
    (int, int) or None
        None where the keys are not int64, are empty, or the pass does not run
        compiled (:func:`~dmixed.kernels.compiled.rows_compiled`): then the caller
        finds them itself.
    """
    if keys.dtype != np.int64 or keys.ndim != 1 or not keys.size or not rows_compiled(keys.size):
        return None
    from .term_jit import key_codes as compiled  # numba: imported on first use only

    lo, hi = compiled(np.ascontiguousarray(keys), np.int64(0), None)  # (no codes made)
    return int(lo), int(hi)


def hash_buckets(keys: np.ndarray, n_buckets: int) -> np.ndarray | None:
    """Integer keys in ``n_buckets`` buckets by a hash, in one compiled pass.

    Key ``i``'s bucket is ``mix(u_i) mod n_buckets``, ``u_i`` its bits zero-extended to
    64 (its unsigned integer of its own width) and ``mix`` the 64-bit finalizer of
    splitmix64 (``u ^= u >> 30; u *= 0xBF58476D1CE4E5B9; u ^= u >> 27;
    u *= 0x94D049BB133111EB; u ^= u >> 31``, modulo 2**64): one loop, no 64-bit
    temporaries of the keys' size.

    Parameters
    ----------
    keys : ndarray of int or uint (n,), at most 8 bytes an item
    n_buckets : int
        At least 1.

    Returns
    -------
    ndarray of int64 (n,) or None
        The buckets, or None where the pass does not run compiled
        (:func:`~dmixed.kernels.compiled.rows_compiled`) or the keys are not such
        integers (then the caller hashes them itself).
    """
    keys = np.asarray(keys)
    if keys.dtype.kind not in "iu" or keys.dtype.itemsize > 8 or not rows_compiled(keys.size):
        return None
    from .term_jit import hash_buckets as compiled  # numba: imported on first use only

    bits = np.ascontiguousarray(keys.ravel()).view(f"u{keys.dtype.itemsize}")
    out = np.empty(bits.size, dtype=np.int64)
    compiled(bits.astype(np.uint64, copy=False), n_buckets, out)
    return out


def merge_term_rows(
    keys: list[np.ndarray],
    parts: list[TermRows],
    entries: np.ndarray,
    chunk: int | None = None,
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]] | None:
    """Rows of terms of several parts added by key and written in the evaluators'
    layout, in one pass: no table of the sums between.

    Every part's keys are distinct and increasing (the chains' partials of integer keys
    held by range are); the parts hold one plan (:meth:`TermRows.same_plan`).  For
    every key of the union, in increasing order, and every entry ``e`` (a packed column,
    ``entries[e]``), the sum of its parts' terms ``columns[entries[e]]``, added from
    zero in the parts' order, times ``factors[entries[e]]``: the parts' rows added by
    position and then expanded, as :func:`add_rows_into` and :meth:`TermRows.column`
    do, bit for bit (the same additions in the same order, then the same product).

    Parameters
    ----------
    keys : list of ndarray of int64
        Each part's keys, increasing.
    parts : list of TermRows
        Each part's rows, one per key.
    entries : ndarray of int64 (E,)
        The packed columns written, in the order wanted.
    chunk : int, optional
        Keys a chunk of the output: the chunks are
        :meth:`ChunkSpans.cut(total, chunk) <dmixed.kernels.groups.ChunkSpans.cut>`'s,
        the cut of the block made of them (None: its default size, read when called).

    Returns
    -------
    (merged, counts, chunks) or None
        The union's keys (int64, increasing), every key's packed column 0 (its row
        count, as a float) and, per run of ``chunk`` keys (one of no keys when there
        are none), an ``(E, G_c)`` C-contiguous array of its entries; None when some
        part's keys are not increasing.  Compiled where the per-row pass is
        (:func:`~dmixed.kernels.compiled.rows_compiled`; two parts by a kernel of their
        own, the same sums), else numpy.  The chunks view
        one buffer of :func:`table_buffer` (in a process that keeps them, memory an
        earlier merge or table had: no fresh pages to fault in every data pass).
    """
    first = parts[0]
    cols = np.ascontiguousarray(first.columns[entries], dtype=np.int64)
    factors = np.ascontiguousarray(first.factors[entries], dtype=np.float64)
    count_col, count_factor = int(first.columns[0]), float(first.factors[0])
    keys = [np.ascontiguousarray(k, dtype=np.int64) for k in keys]
    rows = [np.ascontiguousarray(p.rows, dtype=np.float64) for p in parts]
    if rows_compiled(sum(k.size for k in keys)):
        # numba: imported on first use only
        from .term_jit import merge_rows, merge_two_rows, merged_count

        total = merged_count(tuple(keys))
        if total < 0:
            return None
        # written whole: a kept buffer's old values never show
        out = table_buffer((total, cols.size), zeroed=False, use="merge").reshape(-1)
        merged = np.empty(total, dtype=np.int64)
        counts = np.empty(total)
        spans = ChunkSpans.cut(total, chunk)
        args = (cols, factors, count_col, count_factor, spans.edges, out, merged, counts)
        if len(rows) == 2:
            merge_two_rows(keys[0], keys[1], rows[0], rows[1], *args)
        else:
            merge_rows(tuple(keys), tuple(rows), *args)
    else:
        if any(k.size > 1 and np.any(k[1:] <= k[:-1]) for k in keys):
            return None
        merged = np.unique(np.concatenate(keys))
        total = merged.size
        table = np.zeros((total, first.rows.shape[1]))
        for k, r in zip(keys, rows, strict=True):
            table[np.searchsorted(merged, k)] += r
        counts = table[:, count_col] * count_factor
        out = table_buffer((total, cols.size), zeroed=False, use="merge").reshape(-1)
        spans = ChunkSpans.cut(total, chunk)
        for at in spans.slices():
            block = out[cols.size * at.start : cols.size * at.stop]
            block.reshape(cols.size, -1)[:] = (table[at, cols] * factors).T
    chunks = [
        out[cols.size * at.start : cols.size * at.stop].reshape(cols.size, -1)
        for at in spans.slices()
    ]
    return merged, counts, chunks
