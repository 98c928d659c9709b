"""Dask engine: one pass over a Dask DataFrame to per-group statistics, kept on the workers.

The data pass (DESIGN.md §2, §8):

1. the input partitions are reduced to *partial* per-group statistics: the lower
   triangle of ``Z̃'Z̃``, all of ``Z̃'[X y]`` and the row count per group
   (:class:`_FlatLayout`), plus global sums.  Where a task can read a partition itself
   (the collection is partition-wise over storage: Parquet, CSV, ``from_map``), each of
   a few tasks reads a run of consecutive partitions one after the other and adds them
   into one accumulator (:func:`_chain_partials`, a map-side combine: what leaves the
   task is one row per group however many of its partitions the group is spread over).
   A collection persisted on the cluster is chained the same way per worker, over the
   partitions that worker holds (:func:`_resident_chain_partials`).  Otherwise (data in
   the graph, or shuffled inside it) there is one task per partition
   (:func:`_partition_partials`);
2. every partial is split by a hash of the group key into ``B`` buckets, and each bucket
   is added up over the partials by a tree of numpy reductions (:func:`_combine`; only
   these statistics move between workers, never raw rows);
3. each bucket's sums become a numpy block (:class:`_Block`) on a worker.

All of this is one ``client.compute`` of one graph, so the blocks are futures with
lineage: if a worker dies, the scheduler recomputes the lost blocks from the data.
Variance components need a consistent slot numbering of the component's columns within
each group across partitions; a prepass over the data collects the (group, column) pairs
present and numbers them on the cluster (:class:`SlotMap`), before the data pass.

Each optimizer step is then one ``client.map`` of a kernel over the block futures with
the small matrix ``Λ`` and one ``gather`` of ``B`` small sums: no Dask collection is built
inside the optimizer loop.  When the statistics are small the blocks are gathered once
and the optimizer runs in-process on a :class:`~dmixed.engines.local.LocalEngine`
(see :data:`AUTO_LOCAL_MAX_VALUES`).

Without a distributed client the same graph runs on Dask's local scheduler and the
statistics are gathered into a :class:`~dmixed.engines.local.LocalEngine`.  The library
never starts a cluster.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import functools
import logging
import operator
import os
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ... import kernels
from ...stats import FittedStatistics, GlobalStats, Layout, n_tril
from ..local import LocalEngine

logger = logging.getLogger("dmixed")

__all__ = [
    "AUTO_LOCAL_MAX_VALUES",
    "DEFAULT_ENGINE",
    "DaskEngine",
    "SlotMap",
    "statistics_from_dask",
]

#: Engine used when ``statistics_from_dask(engine=None)`` and the Dask config key
#: ``"dmixed.engine"`` is unset: ``"auto"``, ``"distributed"`` or ``"local"``.
DEFAULT_ENGINE = "auto"

#: ``engine="auto"`` gathers the statistics to the driver and optimizes in-process when
#: they hold at most this many float64 values (``G · r · (r + p + 1)``, the ``zz`` and
#: ``zxy`` arrays; 6e6 values = 48 MB, about 430 000 groups of a random-slope model).
#: Measured on whole fits (``python benchmarks/bench_dask.py --engine local|distributed``,
#: 2 local worker processes × 1 thread on a 2-core machine, r = 2, p = 4, REML with
#: standard errors, better of 2 fits): 1e5 groups (5M rows) 1.15 s in-process vs 1.76 s
#: on the workers, 3e5 groups (5M rows) 1.76 vs 2.08 s, 6e5 groups (10M rows) 4.13 vs
#: 3.50 s, 1e6 groups (50M rows) 12.3 vs 8.5 s.  A distributed step costs a fixed
#: ~13 ms round trip plus its share of the work (``benchmarks/dask_step_roundtrip.py``),
#: while gathering copies the statistics to the driver several times over; from about
#: half a million groups on such a cluster the gather costs more than the round trips.
AUTO_LOCAL_MAX_VALUES = 6_000_000

#: Raise glibc's mmap threshold in the worker processes (data pass and statistics).  Dask's
#: nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also switches off
#: glibc's dynamic mmap threshold: every temporary above 128 kB of a kernel call then is
#: a fresh ``mmap`` whose pages fault in one by one.  Measured on a step over 500 000
#: random-slope groups in one worker: 0.165 s as started, 0.038 s with the mmap threshold
#: at 32 MB.  The trim threshold (free memory at the top of a heap above it goes back to
#: the OS) is raised from 64 kB to :data:`WORKER_TRIM_THRESHOLD`: at 64 kB the data pass's
#: per-partition temporaries (tens of MB) went back to the OS after every partition and
#: faulted in again for the next, 140 000 page faults per 10 partitions of 1M rows
#: against 6 000 (a chain of 10 such partitions: 2.3–2.8 s → 1.6–1.9 s, one process).
TUNE_WORKER_MALLOC = True
#: Bytes of free heap a worker may keep instead of returning them to the OS (see above).
WORKER_TRIM_THRESHOLD = 128 << 20
_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers
_M_MMAP_THRESHOLD = -3
_malloc_tuned = False

# Arguments above this size are sent to the workers as futures: distributed turns a
# keyword argument over ~100 kB of ``client.map`` into a task of its own and fails
# (DESIGN.md §10).  Λ is r × r, so this only matters for variance components with
# hundreds of slots.
_SMALL_ARG_BYTES = 32_000

# Column holding the group key in the partial-statistics frames.
_KEY = "__dmixed_group__"

# Errors after which a step is resubmitted once: a worker died (its tasks were retried
# too often, or a connection broke), or futures were cancelled under us.
try:  # pragma: no cover - distributed is a dependency, but keep the import soft
    from distributed import KilledWorker as _KilledWorker
except ImportError:  # pragma: no cover
    _KilledWorker = RuntimeError
_RETRY_ERRORS = (
    _KilledWorker,
    concurrent.futures.CancelledError,
    asyncio.CancelledError,
    OSError,  # includes distributed's CommClosedError
    TimeoutError,
)

_LOCAL_SCHEDULERS = {
    "sync",
    "synchronous",
    "single-threaded",
    "threads",
    "threading",
    "processes",
    "multiprocessing",
}


# ---------------------------------------------------------------------------
# Flat layout of the per-group statistics in a pandas frame
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _FlatLayout:
    """Where each statistic lives in a row of partial per-group statistics.

    Only what is keyed by group travels through the combine: the group size, the lower
    triangle of Z̃'Z̃ and Z̃'[X y] (for r = 2, p = 4: 14 numbers per group).  The
    global sums ([X y]'[X y], n, Σ log w) are summed separately, as one small vector
    per partition: ``[n, Σ log w, lower triangle of [X y]'[X y]]``.
    """

    r: int
    k: int  # p + 1

    @functools.cached_property
    def zz_index(self) -> tuple[np.ndarray, np.ndarray]:
        return np.tril_indices(self.r)

    @functools.cached_property
    def xy_index(self) -> tuple[np.ndarray, np.ndarray]:
        return np.tril_indices(self.k)

    @property
    def n_zz(self) -> int:
        return n_tril(self.r)

    @property
    def n_zxy(self) -> int:
        return self.r * self.k

    @property
    def width(self) -> int:
        return kernels.packed_width(self.r, self.k)

    def slices(self) -> tuple[slice, slice]:
        a = 1 + self.n_zz
        return slice(1, a), slice(a, a + self.n_zxy)

    def pack_global(self, st: dict[str, np.ndarray], n_dropped: int = 0) -> np.ndarray:
        xyxy = st["xyxy"][self.xy_index[0], self.xy_index[1]]
        head = [float(st["n"]), float(st["sum_log_weights"]), float(n_dropped)]
        return np.concatenate([head, xyxy])

    def empty_global(self, n_dropped: int = 0) -> np.ndarray:
        out = np.zeros(3 + n_tril(self.k))
        out[2] = n_dropped
        return out

    def unpack_global(self, values: np.ndarray) -> tuple[np.ndarray, int, float, int]:
        out = np.empty((self.k, self.k))
        out[self.xy_index[0], self.xy_index[1]] = values[3:]
        out[self.xy_index[1], self.xy_index[0]] = values[3:]
        return out, int(np.rint(values[0])), float(values[1]), int(np.rint(values[2]))

    def unpack_zz(self, values: np.ndarray) -> np.ndarray:
        g = values.shape[0]
        zz = np.empty((g, self.r, self.r))
        tri = values[:, self.slices()[0]]
        zz[:, self.zz_index[0], self.zz_index[1]] = tri
        zz[:, self.zz_index[1], self.zz_index[0]] = tri
        return zz

    def unpack_zxy(self, values: np.ndarray) -> np.ndarray:
        return values[:, self.slices()[1]].reshape(values.shape[0], self.r, self.k)


def _key_values(groups) -> np.ndarray:
    """Group keys as a numpy array with one fixed dtype per key kind.

    Numbers, booleans and datetimes keep their numpy dtype; anything else (strings,
    mixed) becomes ``object``.  Every partition yields the same dtype, so Dask hashes a
    key the same way wherever it occurs and its partial statistics meet in one output
    partition.
    """
    keys = np.asarray(groups)
    if keys.dtype.kind not in "iufbMm":
        keys = keys.astype(object)
    return keys


def _key_series(keys: np.ndarray, name: str = _KEY) -> pd.Series:
    # dtype=object stops pandas ≥ 3 from inferring its "str" dtype for object arrays
    dtype = object if keys.dtype == object else keys.dtype
    return pd.Series(keys, name=name, dtype=dtype)


def _meta_key_dtype(ddf, spec):
    """dtype of the group-key column produced by :func:`_key_values` (best effort)."""
    try:
        dt = ddf._meta[spec.group_name].dtype
    except (KeyError, AttributeError):
        return object
    if isinstance(dt, pd.CategoricalDtype):
        dt = dt.categories.dtype
    try:
        kind = np.dtype(dt).kind
    except TypeError:
        kind = "O"
        if pd.api.types.is_bool_dtype(dt):
            kind = "b"
        elif pd.api.types.is_integer_dtype(dt):
            kind = "i"
        elif pd.api.types.is_float_dtype(dt):
            kind = "f"
    if kind in "Mm":
        return np.dtype(dt)
    return {"i": np.int64, "u": np.uint64, "f": np.float64, "b": bool}.get(kind, object)


def _empty_frame(key_dtype, columns: list[str], dtypes=np.float64) -> pd.DataFrame:
    frame = pd.DataFrame({c: np.empty(0, dtype=dtypes) for c in columns})
    frame.insert(0, _KEY, _key_series(np.empty(0, dtype=key_dtype)))
    return frame


# ---------------------------------------------------------------------------
# Variance components: slot numbering consistent across partitions
# ---------------------------------------------------------------------------


@dataclass
class SlotMap:
    """Slot of every (group, variance-component column) pair present in the data.

    As :func:`dmixed.kernels.assign_vc_slots` does in-process: within a group, the
    columns of component ``l`` that are non-zero on at least one of the group's rows are
    numbered ``0, 1, …`` in increasing column order.  Groups are identified by their
    position in ``groups``; component ``l``'s pairs by ``gid * ncols[l] + col``.

    Attributes
    ----------
    groups : pandas.Index
        Keys of the groups that have at least one variance-component entry.
    pair_keys, pair_slots : list of ndarray (int64)
        Per component, the sorted pair keys and their slots.
    ncols : list of int
        Per component, the number of global columns (the key multiplier).
    widths : tuple of int
        Per component, the largest number of slots any group needs.
    """

    groups: pd.Index
    pair_keys: list[np.ndarray]
    pair_slots: list[np.ndarray]
    ncols: list[int]
    widths: tuple[int, ...]

    def group_ids(self, keys) -> np.ndarray:
        """Position of each key in :attr:`groups` (−1: the group has no entries)."""
        # the Index keeps its hash table between calls: on a worker the slot map is one
        # object shared by all the tasks that use it, so the table is built once
        return self.groups.get_indexer(keys)

    def slot_columns(self, labels: np.ndarray) -> list[np.ndarray]:
        """Per component, the (G, m_l) table of global column ids (−1: unused slot)."""
        pos = pd.Index(labels).get_indexer(self.groups)
        if self.groups.size and (pos < 0).any():
            raise RuntimeError("internal error: a group with variance components has no rows")
        out = []
        for keys, slots, ncols, width in zip(
            self.pair_keys, self.pair_slots, self.ncols, self.widths, strict=True
        ):
            table = np.full((len(labels), width), -1, dtype=np.int64)
            table[pos[keys // ncols], slots] = keys % ncols
            out.append(table)
        return out


def _vc_ncols(spec) -> list[int]:
    # the key multiplier: any upper bound of the column ids works, the global count is one
    return [max(len(names), 1) for names in spec.vc_column_names]


def _partition_vc_pairs(pdf: pd.DataFrame, spec, key_dtype) -> pd.DataFrame:
    """Distinct (group key, component, column) triples with a non-zero entry."""
    columns = ["comp", "col"]
    if len(pdf) == 0:
        return _empty_frame(key_dtype, columns, np.int64)
    dm = spec.transform(pdf)
    keys = _key_values(dm.groups)
    codes, uniq = pd.factorize(keys)
    frames = []
    for comp, (cols, vals, ncols) in enumerate(
        zip(dm.vc_cols, dm.vc_vals, _vc_ncols(spec), strict=True)
    ):
        present = (cols >= 0) & (vals != 0)
        rows = np.broadcast_to(codes[:, None], cols.shape)[present].astype(np.int64)
        pk = np.unique(rows * ncols + cols[present].astype(np.int64))
        frames.append(
            pd.DataFrame(
                {
                    _KEY: _key_series(np.asarray(uniq)[pk // ncols]),
                    "comp": np.full(pk.size, comp, dtype=np.int64),
                    "col": pk % ncols,
                }
            )
        )
    if not frames:
        return _empty_frame(key_dtype, columns, np.int64)
    return pd.concat(frames, ignore_index=True)


def _build_slot_map(pairs: pd.DataFrame, ncols: list[int]) -> SlotMap:
    """Number the distinct pairs: rank of the column within its group, per component."""
    groups = pd.Index(pd.unique(pairs[_KEY].to_numpy()))
    gid = groups.get_indexer(pairs[_KEY].to_numpy()).astype(np.int64)
    comp = pairs["comp"].to_numpy()
    col = pairs["col"].to_numpy().astype(np.int64)
    all_keys, all_slots, widths = [], [], []
    for ell, nc in enumerate(ncols):
        sel = comp == ell
        keys = np.unique(gid[sel] * nc + col[sel])
        if keys.size == 0:
            all_keys.append(keys)
            all_slots.append(keys.copy())
            widths.append(0)
            continue
        owner = keys // nc
        first = np.r_[True, owner[1:] != owner[:-1]]
        start = np.maximum.accumulate(np.where(first, np.arange(keys.size), 0))
        slots = np.arange(keys.size) - start
        all_keys.append(keys)
        all_slots.append(slots.astype(np.int64))
        widths.append(int(slots.max()) + 1)
    return SlotMap(groups, all_keys, all_slots, list(ncols), tuple(widths))


# ---------------------------------------------------------------------------
# Per-partition statistics and blocks
# ---------------------------------------------------------------------------


def _bucket_of(keys: np.ndarray, n_buckets: int) -> np.ndarray:
    """Output block of each group key: a hash that is the same in every process."""
    if n_buckets == 1:
        return np.zeros(len(keys), dtype=np.int64)
    hashed = pd.util.hash_array(np.asarray(keys), categorize=False)
    return (hashed % np.uint64(n_buckets)).astype(np.int64)


def _partition_rows(pdf: pd.DataFrame, spec, slot_map: SlotMap | None):
    """``(dm, keys, Z̃)`` of one partition (None when no row is left), VC slots applied."""
    if len(pdf) == 0:
        return None, 0
    dm = spec.transform(pdf)
    if dm.endog.shape[0] == 0:
        return None, dm.n_dropped
    keys = _key_values(dm.groups)
    slots = []
    widths = [] if slot_map is None else list(slot_map.widths)
    if dm.vc_cols:
        row_gid = slot_map.group_ids(keys)
        for ell, (cols, vals) in enumerate(zip(dm.vc_cols, dm.vc_vals, strict=True)):
            slots.append(
                kernels.lookup_vc_slots(
                    row_gid,
                    cols,
                    vals,
                    slot_map.pair_keys[ell],
                    slot_map.pair_slots[ell],
                    slot_map.ncols[ell],
                )
            )
    ztilde = kernels.dense_random_design(dm.exog_re, slots, dm.vc_vals, widths)
    return (dm, keys, ztilde), dm.n_dropped


def _bucket_rows(keys: np.ndarray, n_buckets: int) -> list:
    """Per output block, the positions of the keys that belong to it (hash of the key)."""
    if n_buckets == 1:
        return [slice(None)]
    bucket = _bucket_of(keys, n_buckets)
    return [np.flatnonzero(bucket == b) for b in range(n_buckets)]


def _split_buckets(
    keys: np.ndarray, values: np.ndarray, n_buckets: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(keys, values)`` split by output block."""
    return [(keys[pick], values[pick]) for pick in _bucket_rows(keys, n_buckets)]


def _partition_partials(
    pdf: pd.DataFrame, spec, slot_map: SlotMap | None, flat: _FlatLayout, n_buckets: int
) -> tuple[list, np.ndarray]:
    """Partial statistics of one partition, split by output block.

    Returns ``(parts, global_sums)``: ``parts[b]`` is ``(keys, values)`` for the groups
    of this partition that belong to block b (one row of :class:`_FlatLayout` per
    group), ``global_sums`` the partition's ``[n, Σ log w, [X y]'[X y]]``.
    """
    if TUNE_WORKER_MALLOC:
        _tune_malloc()  # the data pass allocates large temporaries too
    rows, n_dropped = _partition_rows(pdf, spec, slot_map)
    if rows is None:
        empty = (np.empty(0, dtype=object), np.empty((0, flat.width)))
        _report_partition(0)
        return [empty] * n_buckets, flat.empty_global(n_dropped)
    dm, keys, ztilde = rows
    _report_partition(len(keys))
    codes, uniq = pd.factorize(keys)
    values, glob = kernels.accumulate_packed(
        codes, len(uniq), dm.endog, dm.exog, ztilde, dm.weights
    )
    return _split_buckets(np.asarray(uniq), values, n_buckets), flat.pack_global(glob, dm.n_dropped)


class _GroupAccumulator:
    """Per-group statistics of many partitions, added up in one growing array.

    The rows of a chain of partitions (see :func:`_chain_partials`) are added into
    ``acc`` (column-major :func:`dmixed.kernels.accumulate_packed_into` layout), one
    column per group seen so far.  Groups get their column in one of two ways:

    * integer keys in a range not much wider than the number of groups: the column is
      ``key − base`` (no hashing at all; the range grows as keys outside it arrive);
    * otherwise a hash table: a pandas Index of the keys known so far, whose hash table
      is built once and kept, plus a small Index of keys added since, merged into the
      main one when it reaches a quarter of its size (amortized linear time).

    A range is used while it is at most ``max(2**18, 2 · (groups seen + rows of the
    partition))`` wide, so its memory stays within a small factor of the hash table's, or
    under 2**18 columns (29 MB for a random slope and 4 fixed effects): small partitions
    of integer keys over a few hundred thousand groups still get the range.
    """

    _MIN_RANGE = 1 << 18

    def __init__(self, width: int, key_dtype) -> None:
        self.width = width
        self.key_dtype = np.dtype(key_dtype) if key_dtype is not object else np.dtype(object)
        self.acc = np.zeros((width, 0))
        self.ranged = self.key_dtype.kind in "iu"
        self.base = 0
        self.index = self._new_index(np.empty(0, dtype=self.key_dtype))
        self.extra = self._new_index(np.empty(0, dtype=self.key_dtype))

    @staticmethod
    def _new_index(keys: np.ndarray) -> pd.Index:
        return pd.Index(keys, dtype=object if keys.dtype == object else keys.dtype)

    def _grow(self, size: int, shift: int = 0) -> None:
        """Make ``acc`` ``size`` columns wide, old column c moving to c + shift."""
        new = np.zeros((self.width, size))
        old = self.acc.shape[1]
        new[:, shift : shift + old] = self.acc
        self.acc = new

    def _range_columns(self, keys: np.ndarray) -> np.ndarray | None:
        lo, hi = int(keys.min()), int(keys.max())
        if hi >= 2**62 or lo < -(2**62):  # keep key − base within int64
            self._to_hash()
            return None
        keys = keys.astype(np.int64, copy=False)
        cap = self.acc.shape[1]
        if cap and self.base <= lo and hi < self.base + cap:
            return keys - self.base
        new_lo = lo if not cap else min(lo, self.base)
        new_hi = hi if not cap else max(hi, self.base + cap - 1)
        span = new_hi - new_lo + 1
        seen = int(np.count_nonzero(self.acc[0])) if cap else 0
        if span > max(self._MIN_RANGE, 2 * (seen + keys.size)):
            self._to_hash()
            return None
        # some slack above the first range (keys seldom all show up in the first
        # partition) and geometric growth after: each growth copies the accumulator
        if not cap:
            slack = span // 16
            new_lo -= slack
            size = span + 2 * slack
        else:
            size = max(span, cap + cap // 4)
            if new_lo < self.base:  # grow downwards as well
                new_lo = min(new_lo, new_hi + 1 - size)
        self._grow(size, shift=self.base - new_lo if cap else 0)
        self.base = new_lo
        return keys - self.base

    def _to_hash(self) -> None:
        """Leave range mode: the groups seen become the hash table's first keys."""
        seen = np.flatnonzero(self.acc[0])
        self.index = self._new_index((seen + self.base).astype(self.key_dtype))
        self.acc = np.ascontiguousarray(self.acc[:, seen])
        self.ranged = False

    def _hash_columns(self, keys: np.ndarray) -> np.ndarray:
        n_main = len(self.index)
        col = self.index.get_indexer(keys)
        miss = col < 0
        if miss.any():
            mk = keys[miss]
            sub = self.extra.get_indexer(mk) if len(self.extra) else np.full(mk.size, -1)
            new = sub < 0
            if new.any():
                codes, uniq = pd.factorize(mk[new])
                sub[new] = len(self.extra) + codes
                fresh = self._new_index(np.asarray(uniq, dtype=self.key_dtype))
                self.extra = self.extra.append(fresh)
            col[miss] = n_main + sub
            n_total = n_main + len(self.extra)
            if n_total > self.acc.shape[1]:
                self._grow(max(n_total, self.acc.shape[1] + self.acc.shape[1] // 2))
            if len(self.extra) > max(1024, n_main // 4):
                self.index = self.index.append(self.extra)
                self.extra = self._new_index(np.empty(0, dtype=self.key_dtype))
        return col

    def add(self, keys: np.ndarray, dm, ztilde: np.ndarray) -> dict:
        """Add one partition's rows; returns their global sums."""
        col = self._range_columns(keys) if self.ranged else None
        if col is None:
            col = self._hash_columns(keys)
        return kernels.accumulate_packed_into(self.acc, col, dm.endog, dm.exog, ztilde, dm.weights)

    def result(self, n_buckets: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(keys, values)`` of the groups seen, split by output block: one row of
        packed statistics per group (one gather from the accumulator per block)."""
        if self.ranged:
            seen = np.flatnonzero(self.acc[0])
            keys = (seen + self.base).astype(self.key_dtype)
        else:
            keys = np.asarray(self.index.append(self.extra), dtype=self.key_dtype)
            seen = np.arange(keys.size)
        # gather the groups seen along each accumulator row (contiguous reads), then
        # transpose: gathering rows of the (columns, width) transposed view reads
        # strided memory and was 14× slower (0.35 s against 0.025 s for 1M groups)
        return [
            (keys[pick], np.ascontiguousarray(self.acc[:, seen[pick]].T))
            for pick in _bucket_rows(keys, n_buckets)
        ]


# Optimizing Dask expressions is not thread-safe on Python 3.11: ``functools.cached_property``
# holds one lock per property for all instances, and two threads optimizing at once were
# seen to deadlock.  The driver optimizes a collection under this lock.
_EXPR_LOCK = threading.Lock()


class _Pieces:
    """The partitions of one chain as ``(graph, out_key, leaf_key)`` per partition: the
    tasks that compute that partition alone (see :func:`_partition_pieces`), and the key
    of the persisted partition they start from (``None`` when they read from storage).

    Opaque to Dask on purpose: inside a list or tuple, their tasks would be taken for
    tasks of the data pass's graph, with dependencies that are not in it.
    """

    __slots__ = ("items",)

    def __init__(self, items: list) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __dask_tokenize__(self):
        from dask.base import tokenize

        return ("dmixed-pieces", tokenize([(out, leaf) for _, out, leaf in self.items]))


def _compute_piece(graph: dict, out_key, frame=None, leaf_key=None) -> pd.DataFrame:
    """One partition from its piece, here, with the synchronous scheduler."""
    from dask.local import get_sync

    if leaf_key is not None:
        graph = {**graph, leaf_key: frame}
    return get_sync(graph, out_key)


def _chain_partials(
    pieces: _Pieces,
    spec,
    slot_map: SlotMap | None,
    flat: _FlatLayout,
    n_buckets: int,
    key_dtype,
) -> tuple[list, np.ndarray]:
    """Partial statistics of a chain of partitions, read one after the other here.

    The map-side combine of the data pass: every partition is read, reduced into the
    chain's :class:`_GroupAccumulator` and dropped, so a worker holds one partition plus
    one row of statistics per group seen, and what leaves the task is one row per group
    of the chain, however many of its partitions the group's rows were spread over.
    Same output as :func:`_partition_partials`.
    """
    return _accumulate_frames(
        (_compute_piece(graph, out_key) for graph, out_key, _ in pieces.items),
        spec,
        slot_map,
        flat,
        n_buckets,
        key_dtype,
    )


def _accumulate_frames(frames, spec, slot_map, flat, n_buckets, key_dtype):
    """Add pandas partitions, one at a time, into one :class:`_GroupAccumulator`: the
    body of :func:`_chain_partials` and :func:`_resident_chain_partials`."""
    if TUNE_WORKER_MALLOC:
        _tune_malloc()
    acc = _GroupAccumulator(flat.width, key_dtype)
    glob = flat.empty_global()
    # progress goes to the driver in batches: one event per partition cost about 10%
    # of the data pass for partitions of a few thousand rows
    pending = {"partitions": 0, "rows": 0}
    last = time.monotonic()
    for pdf in frames:
        rows, n_dropped = _partition_rows(pdf, spec, slot_map)
        pending["partitions"] += 1
        if rows is None:
            glob[2] += n_dropped
        else:
            dm, keys, ztilde = rows
            if keys.dtype != acc.key_dtype:
                keys = keys.astype(acc.key_dtype)
            glob += flat.pack_global(acc.add(keys, dm, ztilde), n_dropped)
            pending["rows"] += len(keys)
        if time.monotonic() - last >= PROGRESS_BATCH_SECONDS:
            _report_partition(pending["rows"], pending["partitions"])
            pending = {"partitions": 0, "rows": 0}
            last = time.monotonic()
    if pending["partitions"]:
        _report_partition(pending["rows"], pending["partitions"])
    return acc.result(n_buckets), glob


def _resident_chain_partials(
    pieces: _Pieces, spec, slot_map, flat: _FlatLayout, n_buckets: int, key_dtype, *frames
) -> tuple[list, np.ndarray]:
    """:func:`_chain_partials` for partitions already in this worker's memory (persisted).

    ``frames`` are the persisted partitions (task dependencies: no copy when they live
    here); ``pieces[j]`` is ``(graph, out_key, leaf_key)``: the partition-wise steps from
    persisted partition j to the collection's partition j (projections, filters,
    assignments, …), culled to that partition, which run here one partition at a time
    with the persisted frame in place of ``leaf_key``.
    """
    frames_in_order = zip(pieces.items, frames, strict=True)
    partitions = (
        _compute_piece(graph, out_key, frame, leaf_key)
        for (graph, out_key, leaf_key), frame in frames_in_order
    )
    return _accumulate_frames(partitions, spec, slot_map, flat, n_buckets, key_dtype)


#: Topic of the events a chain sends after each partition (``distributed`` structured
#: events): the driver counts them to log the progress of a data pass made of a few
#: long tasks.
PROGRESS_TOPIC = "dmixed-data-pass"
#: Seconds between progress lines during a data pass with ``progress=True``.
PROGRESS_INTERVAL = 10.0


#: Seconds between the progress events of a chain (each reports the partitions read since).
PROGRESS_BATCH_SECONDS = 0.5


def _report_partition(rows: int, partitions: int = 1) -> None:
    """Tell the driver more partitions are read (only inside a distributed worker)."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return  # not on a distributed worker: in-process, nobody to tell
    worker.log_event(PROGRESS_TOPIC, {"rows": int(rows), "partitions": int(partitions)})


#: :func:`_combine` adds integer-keyed partials by position in their key range (no hash
#: table) when that range is at most this many times the number of keys it gets.
DENSE_COMBINE_SPAN = 4


def _dense_key_range(keys: list[np.ndarray]) -> tuple[int, int] | None:
    """``(lowest key, width of the key range)`` when integer keys fill their range densely
    enough for :func:`_combine` to add by position, else None."""
    if any(k.dtype.kind not in "iu" for k in keys):
        return None
    lo = min(int(k.min()) for k in keys)
    hi = max(int(k.max()) for k in keys)
    span = hi - lo + 1
    if lo < -(2**62) or hi >= 2**62 or span > DENSE_COMBINE_SPAN * sum(k.size for k in keys):
        return None
    return lo, span


def _combine(*parts: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Add partial statistics by group key (one node of the tree reduction).

    Every part has distinct keys and a positive row count (column 0) for each.  Integer
    keys that fill their range (the usual case: ids 0..G-1 split into buckets) are added
    by position in that range, one row per key, in the order of the parts; other keys go
    through a hash table (``pd.factorize``) and one ``bincount`` per column, which adds
    in the same order, so both give the same sums bit for bit.  By position is 2-3x
    faster: two chains' halves of 1M groups, 0.05 s against 0.13 s (0.14-0.32 s against
    0.27-0.49 s on fresh memory).
    """
    parts = [p for p in parts if len(p[0])] or list(parts[:1])
    if len(parts) == 1:
        return parts[0]
    dense = _dense_key_range([p[0] for p in parts])
    if dense is not None:
        lo, span = dense
        offsets = [keys.astype(np.int64, copy=False) - lo for keys, _ in parts]
        seen = np.zeros(span, dtype=bool)
        for off in offsets:
            seen[off] = True
        row = np.cumsum(seen) - 1  # output row of every key in the range (sorted keys)
        present = np.flatnonzero(seen)
        out = np.zeros((present.size, parts[0][1].shape[1]))
        for off, (_, values) in zip(offsets, parts, strict=True):
            out[row[off]] += values  # keys are distinct within a part
        return (present + lo).astype(parts[0][0].dtype), out
    keys = np.concatenate([p[0] for p in parts])
    values = np.concatenate([p[1] for p in parts])
    codes, uniq = pd.factorize(keys)
    out = np.empty((len(uniq), values.shape[1]))
    for j in range(values.shape[1]):
        out[:, j] = np.bincount(codes, weights=values[:, j], minlength=len(uniq))
    return np.asarray(uniq), out


def _sum_vectors(*vectors: np.ndarray) -> np.ndarray:
    return functools.reduce(operator.add, vectors)


def _tree(func, items: list, fan_in: int = 8):
    """Tree reduction of delayed ``items`` with ``func(*children)`` at every node."""
    import dask

    node = dask.delayed(func, pure=True)
    while len(items) > 1:
        items = [node(*items[i : i + fan_in]) for i in range(0, len(items), fan_in)]
    return items[0]


@dataclass
class _Block:
    """Combined statistics of the groups of one output partition, on a worker.

    ``zz`` (G_b, r, r) and ``zxy`` (G_b, r, p+1) in plain layout; ``labels``, ``nobs``
    and the block's share of the global sums are what the driver gathers once.
    """

    labels: np.ndarray
    nobs: np.ndarray
    xyxy: np.ndarray
    n: int
    sum_log_weights: float
    n_dropped: int = 0
    zz: np.ndarray | None = None
    zxy: np.ndarray | None = None


def _to_block(
    combined: tuple[np.ndarray, np.ndarray], flat: _FlatLayout, global_sums=None
) -> _Block:
    """numpy block of one output partition; block 0 also carries the global sums."""
    labels, values = combined
    if global_sums is None:
        xyxy, n, slw, dropped = np.zeros((flat.k, flat.k)), 0, 0.0, 0
    else:
        xyxy, n, slw, dropped = flat.unpack_global(global_sums)
    return _Block(
        labels=labels,
        nobs=np.rint(values[:, 0]).astype(np.int64),
        xyxy=xyxy,
        n=n,
        sum_log_weights=slw,
        n_dropped=dropped,
        zz=flat.unpack_zz(values),
        zxy=flat.unpack_zxy(values),
    )


def _block_summary(block: _Block) -> _Block:
    """The block without its statistics: what the driver needs once."""
    return _Block(
        block.labels, block.nobs, block.xyxy, block.n, block.sum_log_weights, block.n_dropped
    )


def _block_dense(block: _Block) -> tuple[np.ndarray, np.ndarray]:
    """(zz, zxy) of a block, to gather to the driver."""
    return block.zz, block.zxy


def _tune_malloc() -> None:
    """See :data:`TUNE_WORKER_MALLOC`; once per process, only under glibc with the trim
    threshold set in the environment (as Dask's nanny does)."""
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
    mallopt(ctypes.c_int(_M_MMAP_THRESHOLD), ctypes.c_int(32 << 20))
    mallopt(ctypes.c_int(_M_TRIM_THRESHOLD), ctypes.c_int(WORKER_TRIM_THRESHOLD))


def _make_evaluator(block: _Block, tune_malloc: bool = False) -> LocalEngine:
    """The kernels' evaluator of a block, kept on the worker for the optimizer steps.

    A new task (not a mutation of the block) so that it has lineage: if its worker dies
    the scheduler recomputes it from the block, and the block from the data.
    """
    if tune_malloc:
        _tune_malloc()
    return LocalEngine(block.zz, block.zxy)


def _block_step(ev: LocalEngine, lam: np.ndarray, q: int) -> kernels.StepSums:
    return ev.step(lam, q)


def _block_hessian(
    ev: LocalEngine, lam: np.ndarray, basis: np.ndarray, w: np.ndarray
) -> kernels.HessianSums:
    return ev.hessian(lam, basis, w)


def _block_moments(ev: LocalEngine) -> kernels.MomentSums:
    return ev.moments()


def _block_random_effects(ev: LocalEngine, lam: np.ndarray, w: np.ndarray):
    return ev.random_effects(lam, w)


def _block_gather(ev: LocalEngine) -> tuple[np.ndarray, np.ndarray]:
    return ev.gather()


# ---------------------------------------------------------------------------
# Assembling the driver-side view
# ---------------------------------------------------------------------------


@dataclass
class _Assembly:
    """Group order and global statistics from the per-block summaries."""

    group_labels: np.ndarray
    group_sizes: np.ndarray
    position: np.ndarray  # sorted position of each group, in block-concatenation order
    glob: GlobalStats
    block_sizes: list[int]
    n_dropped: int = 0


def _assemble(summaries: list[_Block], k: int) -> _Assembly:
    sizes = [len(b.labels) for b in summaries]
    labels = (
        np.concatenate([np.asarray(b.labels) for b in summaries])
        if summaries
        else np.empty(0, dtype=object)
    )
    # the same sort as the in-process path (engines.local.statistics_from_rows): statsmodels' order
    if labels.dtype.kind in "iu":
        # integer ids: one argsort (0.02 s for 1M groups against 0.05-0.16 s for a hash
        # table that is then sorted); the keys are distinct, so any sort gives one order
        order = np.argsort(labels)
        uniq = labels[order]
        position = np.empty(labels.size, dtype=np.int64)
        position[order] = np.arange(labels.size)
        repeated = bool(uniq.size > 1 and (uniq[1:] == uniq[:-1]).any())
    else:
        position, uniq = pd.factorize(pd.Series(labels), sort=True)
        repeated = len(uniq) != len(labels)
    if repeated:
        raise RuntimeError(
            "internal error: a group key occurs in two combined partitions "
            "(group keys of different dtypes in different partitions?)"
        )
    nobs = np.zeros(len(uniq), dtype=np.int64)
    if summaries:
        nobs[position] = np.concatenate([b.nobs for b in summaries])
    xyxy = functools.reduce(operator.add, (b.xyxy for b in summaries), np.zeros((k, k)))
    n = int(sum(b.n for b in summaries))
    slw = float(sum(b.sum_log_weights for b in summaries))
    dropped = int(sum(b.n_dropped for b in summaries))
    return _Assembly(
        np.asarray(uniq),
        nobs,
        position.astype(np.int64),
        GlobalStats(xyxy, n, slw),
        sizes,
        dropped,
    )


def _reorder(position: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = np.empty_like(values)
    out[position] = values
    return out


# ---------------------------------------------------------------------------
# The distributed engine
# ---------------------------------------------------------------------------


class DaskEngine:
    """Evaluate the kernels where the statistics live: on the workers of a Dask cluster.

    Holds one future per block of groups (from a persisted graph, so a block lost with
    its worker is recomputed from the data).  ``step``, ``hessian`` and
    ``random_effects`` map a kernel over the blocks and return the sum (or the per-group
    arrays in ``group_labels`` order).  A failed round trip (a worker died, a connection
    broke) is resubmitted once.  Reaching the scheduler is the client's business: if it
    goes away, the client retries for its connect timeout (``distributed.comm.timeouts.
    connect``, or ``Client(timeout=...)``) and closes, and the engine then raises
    :class:`ConnectionError` (the statistics died with the scheduler; fit again on a
    new client).

    The engine never travels with a pickled model or results: pickling gives a detached
    engine that refuses to compute.
    """

    name = "dask"

    def __init__(self, client, evaluators: list, graph: list, position: np.ndarray) -> None:
        self._client = client
        self._blocks = list(evaluators)  # futures of one LocalEngine per block
        self._graph = list(graph)  # delayed of each block, to resubmit if it errs
        self._position = position
        self._detached = False

    # -- plumbing ----------------------------------------------------------------

    @property
    def client(self):
        return self._client

    @property
    def blocks(self) -> list:
        """The block futures (one per non-empty combined partition)."""
        return list(self._blocks)

    def _check(self) -> None:
        if self._detached:
            raise RuntimeError(
                "this Dask engine was unpickled or closed: its statistics are gone; "
                "build the statistics again (MixedLM.fit on the Dask data)"
            )

    def _arg(self, value):
        if isinstance(value, np.ndarray) and value.nbytes > _SMALL_ARG_BYTES:
            return self._client.scatter(value, hash=False)
        return value

    def _revive(self) -> None:
        """Resubmit blocks whose futures ended in error or were cancelled."""
        dead = [i for i, f in enumerate(self._blocks) if f.status in ("error", "cancelled", "lost")]
        if dead:
            logger.warning("dmixed: recomputing %d lost statistics block(s)", len(dead))
            blocks = self._client.compute([self._graph[i] for i in dead])
            fresh = self._client.map(
                _make_evaluator, blocks, tune_malloc=TUNE_WORKER_MALLOC, pure=False
            )
            for i, f in zip(dead, fresh, strict=True):
                self._blocks[i] = f

    def _check_client(self, cause: BaseException | None = None) -> None:
        """Fail at once, and clearly, when the client has lost its scheduler.

        A client whose scheduler went away tries to reconnect for its connect timeout and
        then closes; the statistics on the cluster are gone with the scheduler, and a new
        submission to a closed client would wait forever.  Before a round trip only a
        closed client is refused (one still reconnecting may recover, and the round trip
        then fails after its timeout if it does not); after a failed round trip any client
        that is not running is.
        """
        status = getattr(self._client, "status", "running")
        if cause is None and status not in ("closing", "closed"):
            return
        if status != "running":
            raise ConnectionError(
                f"the Dask client is {status} (scheduler unreachable?): the statistics on "
                "the cluster are lost; reconnect and fit again"
            ) from cause

    def _map(self, func, **kwargs) -> list:
        """``func(block, **kwargs)`` on every block; results in block order."""
        self._check()
        self._check_client()
        for attempt in range(2):
            args = {name: self._arg(v) for name, v in kwargs.items()}
            futures = self._client.map(func, self._blocks, pure=False, **args)
            try:
                return self._client.gather(futures)
            except _RETRY_ERRORS as exc:
                self._check_client(exc)
                if attempt:
                    raise
                logger.warning(
                    "dmixed: %s on the cluster (%s); resubmitting", type(exc).__name__, exc
                )
                self._revive()
            finally:
                del futures
        raise AssertionError("unreachable")  # pragma: no cover

    # -- the engine interface ------------------------------------------------------

    def step(self, lam: np.ndarray, q: int) -> kernels.StepSums:
        """Σ over groups of the per-step contributions (DESIGN.md §3–4)."""
        return functools.reduce(operator.add, self._map(_block_step, lam=lam, q=q))

    def hessian(self, lam: np.ndarray, basis: np.ndarray, w: np.ndarray) -> kernels.HessianSums:
        """Σ over groups of the Hessian contributions (DESIGN.md §5)."""
        parts = self._map(_block_hessian, lam=lam, basis=basis, w=w)
        return functools.reduce(operator.add, parts)

    def moments(self) -> kernels.MomentSums:
        """Σ over groups of the parameter-free moment sums (starting values)."""
        return functools.reduce(operator.add, self._map(_block_moments))

    def random_effects(self, lam: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-group BLUPs and conditional covariances relative to σ² (DESIGN.md §6),
        in sorted group order."""
        parts = self._map(_block_random_effects, lam=lam, w=w)
        r = lam.shape[0]
        blup = np.concatenate([np.zeros((0, r))] + [b for b, _ in parts])
        cov = np.concatenate([np.zeros((0, r, r))] + [c for _, c in parts])
        return _reorder(self._position, blup), _reorder(self._position, cov)

    def gather(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-group ``zz`` (G, r, r) and ``zxy`` (G, r, p+1) on the driver, in sorted
        group order (e.g. to save the statistics)."""
        parts = self._map(_block_gather)
        zz = np.concatenate([z for z, _ in parts])
        zxy = np.concatenate([x for _, x in parts])
        return _reorder(self._position, zz), _reorder(self._position, zxy)

    def close(self) -> None:
        """Release the statistics on the cluster."""
        blocks, self._blocks, self._graph = self._blocks, [], []
        self._detached = True
        for f in blocks:
            f.release()

    # -- pickling: never carry a client or futures -----------------------------------

    def __getstate__(self) -> dict:
        return {"_position": self._position}

    def __setstate__(self, state: dict) -> None:
        self._client = None
        self._blocks = []
        self._graph = []
        self._position = state["_position"]
        self._detached = True


# ---------------------------------------------------------------------------
# Client and engine resolution
# ---------------------------------------------------------------------------


def _resolve_client(client):
    """Explicit client → the current distributed client → None (in-process)."""
    if client is not None:
        return client
    try:
        from distributed import default_client
    except ImportError:  # pragma: no cover
        return None
    try:
        return default_client()
    except ValueError:  # no client in this process
        return None


def _resolve_engine(engine: str | None) -> str:
    if engine is None:
        import dask

        engine = dask.config.get("dmixed.engine", None) or DEFAULT_ENGINE
    engine = str(engine).lower()
    if engine not in ("auto", "distributed", "local"):
        raise ValueError(f"engine must be 'auto', 'distributed' or 'local', got {engine!r}")
    return engine


def _local_scheduler() -> str:
    import dask

    configured = dask.config.get("scheduler", None)
    if isinstance(configured, str) and configured in _LOCAL_SCHEDULERS:
        return configured
    return "threads"


# ---------------------------------------------------------------------------
# The data pass
# ---------------------------------------------------------------------------


def _project(ddf, spec):
    """Only the columns the spec reads (parquet then reads only those)."""
    cols = list(getattr(spec, "columns_used", None) or [])
    if spec.group_name not in cols:
        cols.append(spec.group_name)
    if all(c in ddf.columns for c in cols) and len(cols) < len(ddf.columns):
        return ddf[cols]
    return ddf


def _slot_map_graph(ddf, spec, key_dtype):
    """Delayed :class:`SlotMap` from one pass over the data (the VC prepass)."""
    import dask

    meta = _empty_frame(key_dtype, ["comp", "col"], np.int64)
    pairs = ddf.map_partitions(_partition_vc_pairs, spec, key_dtype, meta=meta)
    # a tree reduction of the distinct pairs, then numbering in one task
    distinct = pairs.drop_duplicates(split_out=1)
    (part,) = distinct.to_delayed()
    return dask.delayed(_build_slot_map, pure=True)(part, _vc_ncols(spec))


# Leaf expressions that hold their data in the graph (in-memory pandas/numpy data, or
# persisted futures): their partitions are not read, and a task cannot compute one.
_IN_MEMORY_LEAVES = frozenset(
    {"FromPandas", "FromPandasDivisions", "FromGraph", "FromArray", "FromDelayed", "FromDict"}
)


def _partitionwise_leaves(ddf) -> list | None:
    """The leaves holding their data (:data:`_IN_MEMORY_LEAVES`) of a collection whose
    every other expression is partition-wise (``Blockwise``: reads, projections,
    filters, assignments, ``map_partitions``); ``None`` when some step is not (a
    shuffle, a reduction, …)."""
    try:
        from dask.dataframe.dask_expr._expr import Blockwise
    except ImportError:  # pragma: no cover - legacy dask.dataframe
        return None
    expr = getattr(ddf, "expr", None)
    if expr is None:
        return None
    leaves = []
    for node in expr.walk():
        if type(node).__name__ in _IN_MEMORY_LEAVES:
            leaves.append(node)
        elif not isinstance(node, Blockwise):
            return None
    return leaves


def _chainable(ddf) -> bool:
    """Can tasks read this collection's partitions themselves (see :func:`_chain_recipes`)?

    Yes when every expression is partition-wise and the leaves read from storage
    (Parquet, CSV, ``from_map``, …).  Anything with a shuffle or a reduction inside, or
    data already in memory, is read by Dask's own tasks instead (persisted data: see
    :func:`_resident_chains`).
    """
    return _partitionwise_leaves(ddf) == []


def _chain_recipes(
    ddf, n_chains: int, mode: str | None = None, allow_fallback: bool = False
) -> list[_Pieces] | None:
    """Consecutive partitions in ``n_chains`` balanced runs; None when the collection is
    not chainable.  With ``dmixed.data_pass='chains'`` a collection that is not is an
    error, unless ``allow_fallback`` (another kind of chain may still apply)."""
    mode = _data_pass_mode() if mode is None else mode
    if mode == "tree" or n_chains < 1 or ddf.npartitions <= 1:
        return None
    if not _chainable(ddf):
        if mode == "chains" and not allow_fallback:
            raise ValueError(
                "dmixed.data_pass='chains' needs a collection read partition by partition "
                "from storage, or persisted on the cluster (no shuffle, not built from "
                "in-memory data)"
            )
        return None
    pieces = _partition_pieces(ddf, [])
    if pieces is None:  # pragma: no cover - a partition-wise graph always splits
        return None
    n_chains = min(n_chains, ddf.npartitions)
    bounds = np.linspace(0, ddf.npartitions, n_chains + 1).round().astype(int)
    return [_Pieces(pieces[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _resident_chains(ddf, client, mode: str) -> list[tuple[_Pieces, list]] | None:
    """Chains of persisted partitions, grouped by the worker that holds them.

    For a collection that is partition-wise (``Blockwise``) over one persisted
    collection (``FromGraph`` of futures all in the cluster's memory): per worker, one
    chain per worker thread over the partitions that worker holds, as
    ``(pieces, futures)`` for :func:`_resident_chain_partials`.  The futures are the
    chain task's dependencies, so the scheduler runs it where they are and no raw row
    moves.  ``None`` otherwise (then one task per partition).
    """
    if client is None or mode == "tree" or ddf.npartitions <= 1:
        return None
    try:
        from dask.dataframe.dask_expr.io.io import FromGraph
        from distributed import Future, wait
    except ImportError:  # pragma: no cover - legacy dask.dataframe
        return None
    leaves = _partitionwise_leaves(ddf)
    if not leaves or len(leaves) != 1 or not isinstance(leaves[0], FromGraph):
        return None
    if leaves[0].npartitions != ddf.npartitions:
        return None
    keys = list(leaves[0].operand("keys"))
    layer = dict(leaves[0].operand("layer"))
    futures = [layer.get(k) for k in keys]
    if not all(isinstance(f, Future) and f.client is client for f in futures):
        return None
    with client.as_current():  # a fresh persist() may still be computing: its
        wait(futures)  # partitions are needed now anyway, and then we know where they are
    where = client.who_has(futures)
    if not all(where.get(k) for k in keys):
        return None  # not all in memory (an error, or lost since): one task per partition
    pieces = _partition_pieces(ddf, keys)
    if pieces is None:
        return None
    future_of = dict(zip(keys, futures, strict=True))
    nthreads = client.nthreads()
    by_worker: dict[str, list[int]] = {}  # partitions (in order) by the worker holding them
    for i, (_, _, leaf_key) in enumerate(pieces):
        by_worker.setdefault(sorted(where[leaf_key])[0], []).append(i)
    chains = []
    for worker, idx in sorted(by_worker.items()):
        n = max(1, min(int(nthreads.get(worker, 1)), len(idx)))
        for run in np.array_split(np.asarray(idx), n):
            chain = [pieces[i] for i in run]
            chains.append((_Pieces(chain), [future_of[leaf] for _, _, leaf in chain]))
    return chains


def _partition_pieces(ddf, leaf_keys: list) -> list[tuple[dict, object, object]] | None:
    """Per partition i, ``(graph, out_key, leaf_key)``: the tasks that compute the
    collection's partition i alone.

    With ``leaf_keys`` (the keys of a persisted collection's partitions), every
    partition must start from exactly one of them, ``leaf_key``, which is left out of
    ``graph`` (the persisted frame is passed in); without, the tasks read from storage
    and ``leaf_key`` is ``None``.  One optimization and one walk over the whole graph:
    optimizing or culling per partition costs time quadratic in the number of
    partitions (a Parquet reader's expression carries every file: 74 ms per partition
    of 2000 files, 13 ms of 200; persisted, 9.8 s for 1600 partitions).  ``None`` when
    a partition does not start from exactly one leaf.
    """
    from dask.core import get_dependencies
    from distributed import Future

    with _EXPR_LOCK:
        opt = ddf.optimize()
        graph = dict(opt.__dask_graph__())
        out_keys = list(opt.__dask_keys__())
    leaves = set(leaf_keys)
    pieces = []
    for out_key in out_keys:
        sub: dict = {}
        found = []
        todo = [out_key]
        while todo:
            key = todo.pop()
            if key in sub:
                continue
            if key in leaves:
                found.append(key)
                sub[key] = None
                continue
            if key not in graph or isinstance(graph[key], Future):
                return None  # data held elsewhere (other futures): not one partition's
            sub[key] = graph[key]
            todo.extend(get_dependencies(graph, key))
        if not leaves:
            pieces.append((sub, out_key, None))
            continue
        if len(set(found)) != 1:
            return None
        (leaf_key,) = set(found)
        del sub[leaf_key]  # the persisted frame comes in as a dependency
        pieces.append((sub, out_key, leaf_key))
    return pieces


def _data_pass_mode() -> str:
    import dask

    mode = dask.config.get("dmixed.data_pass", "auto")
    if mode not in ("auto", "chains", "tree"):
        raise ValueError(
            f"dask config 'dmixed.data_pass' must be 'auto', 'chains' or 'tree', got {mode!r}"
        )
    return mode


def _block_graph(ddf, spec, slot_arg, flat, key_dtype, n_blocks, n_chains, client=None):
    """Delayed blocks: partial statistics → sums by group key → blocks.

    Partial statistics come from ``n_chains`` tasks that each read a run of consecutive
    partitions themselves (:func:`_chain_partials`, when the collection allows it), else
    from one task per partition.  Each partial is split by a hash of the group key into
    ``n_blocks`` buckets; each bucket is added up by a tree of numpy reductions (no
    shuffle of raw rows, and no pandas groupby: the partials of data whose groups are
    spread over all partitions can outweigh the data, so their combine must be cheap).
    Every node is an ordinary task with lineage, so a block lost with a worker is
    recomputed like any other task.
    """
    import dask

    mode = _data_pass_mode()
    recipes = _chain_recipes(ddf, n_chains, mode, allow_fallback=client is not None)
    resident = None if recipes is not None else _resident_chains(ddf, client, mode)
    if recipes is not None:
        chain = dask.delayed(_chain_partials, nout=2, pure=True)
        parts = [chain(rec, spec, slot_arg, flat, n_blocks, key_dtype) for rec in recipes]
    elif resident is not None:
        chain = dask.delayed(_resident_chain_partials, nout=2, pure=True)
        parts = [
            chain(pieces, spec, slot_arg, flat, n_blocks, key_dtype, *futures)
            for pieces, futures in resident
        ]
    else:
        if mode == "chains":
            raise ValueError(
                "dmixed.data_pass='chains' needs a collection read partition by partition "
                "from storage, or persisted on the cluster (no shuffle, not built from "
                "in-memory data)"
            )
        part = dask.delayed(_partition_partials, nout=2, pure=True)
        parts = [
            part(p, spec, slot_arg, flat, n_blocks) for p in ddf.to_delayed(optimize_graph=True)
        ]
    global_sums = _tree(_sum_vectors, [g for _, g in parts])
    blocks = []
    for b in range(n_blocks):
        bucket = [dask.delayed(operator.getitem, pure=True)(pp, b) for pp, _ in parts]
        combined = _tree(_combine, bucket)
        blocks.append(
            dask.delayed(_to_block, pure=True)(combined, flat, global_sums if b == 0 else None)
        )
    return blocks


def _wait(
    client, futures, progress: bool = False, what: str = "", t0: float = 0.0, n_parts: int = 0
) -> None:
    """Wait for futures on ``client`` (not necessarily the default client), logging
    progress every :data:`PROGRESS_INTERVAL` seconds when asked: blocks done and, for a
    data pass, the partitions read so far (events from :func:`_report_partition`).
    Errors surface at the following gather."""
    from distributed import wait

    read = {"partitions": 0, "rows": 0}

    def count(event) -> None:
        _, message = event
        read["partitions"] += int(message.get("partitions", 1))
        read["rows"] += int(message.get("rows", 0))

    subscribed = False
    if progress and n_parts:
        try:
            client.subscribe_topic(PROGRESS_TOPIC, count)
            subscribed = True
        except Exception:  # noqa: BLE001 - progress is a nicety; the fit goes on
            subscribed = False
    try:
        with client.as_current():  # distributed.wait() works on the current client
            while True:
                try:
                    wait(futures, timeout=PROGRESS_INTERVAL if progress else None)
                    return
                except TimeoutError:
                    done = sum(f.status == "finished" for f in futures)
                    parts = (
                        f"{read['partitions']}/{n_parts} partitions read ({read['rows']:,} rows), "
                        if subscribed
                        else ""
                    )
                    logger.info(
                        "%s: %s%d/%d blocks done, %.0fs",
                        what,
                        parts,
                        done,
                        len(futures),
                        time.perf_counter() - t0,
                    )
    finally:
        if subscribed:
            client.unsubscribe_topic(PROGRESS_TOPIC)


def statistics_from_dask(ddf, spec, client=None, progress: bool = False, engine=None):
    """One pass over a Dask DataFrame → :class:`~dmixed.model.FittedStatistics`.

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
        The data; a group's rows may be in any partitions, in any order.
    spec : dmixed.design.ModelSpec
        Built once from the whole dataset; applied to every partition.
    client : distributed.Client, optional
        Where to compute.  Default: the current distributed client, else Dask's local
        scheduler in this process (the library never starts a cluster).
    progress : bool
        Log the data pass at INFO level on logger ``"dmixed"``: start, every 10 s on a
        cluster, end with timing.  (``distributed.progress`` would draw a bar on stdout,
        which is no place for a library's progress in batch jobs.)
    engine : {"auto", "distributed", "local"}, optional
        With a client: keep the statistics on the workers (``"distributed"``), gather
        them and optimize in-process (``"local"``), or choose by their size
        (``"auto"``, see :data:`AUTO_LOCAL_MAX_VALUES`).  Default: the Dask config key
        ``"dmixed.engine"``, else :data:`DEFAULT_ENGINE`.

    Returns
    -------
    FittedStatistics
        With a :class:`DaskEngine` or a :class:`~dmixed.engines.local.LocalEngine`;
        groups in sorted key order, as statsmodels.
    """
    import dask

    mode = _resolve_engine(engine)
    client = _resolve_client(client)
    if client is None and mode == "distributed":
        raise ValueError(
            "engine='distributed' needs a distributed Client (pass client= or create one)"
        )
    level = logging.INFO if progress else logging.DEBUG
    t0 = time.perf_counter()
    ddf = _project(ddf, spec)
    n_parts = ddf.npartitions
    key_dtype = _meta_key_dtype(ddf, spec)
    q = len(spec.exog_re_names)
    k = len(spec.exog_names) + 1
    where = "local scheduler" if client is None else f"cluster {client.scheduler.address}"

    # -- VC prepass: slot numbering of (group, column) pairs ----------------------
    slot_map = None
    slot_arg = None
    if spec.vc_names:
        logger.log(level, "VC prepass: %d partitions on %s", n_parts, where)
        graph = _slot_map_graph(ddf, spec, key_dtype)
        if client is None:
            (slot_map,) = dask.compute(graph, scheduler=_local_scheduler())
            slot_arg = slot_map
        else:
            slot_future = client.compute(graph)
            _wait(client, [slot_future], progress, "VC prepass", t0)
            slot_map = slot_future.result()
            # the partitions get the slot map as a dependency (a future with lineage),
            # never as a large literal argument
            slot_arg = dask.delayed(slot_future)
        logger.log(
            level,
            "VC prepass done in %.2fs: slots per component %s",
            time.perf_counter() - t0,
            list(slot_map.widths),
        )
    widths = () if slot_map is None else tuple(slot_map.widths)
    layout = Layout(q, widths)
    flat = _FlatLayout(layout.r, k)

    # -- the data pass -----------------------------------------------------------
    t1 = time.perf_counter()
    if client is None:
        n_blocks = max(1, min(n_parts, os.cpu_count() or 1))
    else:
        n_blocks = max(1, int(sum(client.nthreads().values())))
    logger.log(level, "data pass: %d partitions → %d blocks on %s", n_parts, n_blocks, where)
    graph = _block_graph(ddf, spec, slot_arg, flat, key_dtype, n_blocks, n_blocks, client)
    if client is None:
        blocks = list(dask.compute(*graph, scheduler=_local_scheduler()))
        asm = _assemble(blocks, k)
        engine_obj = _local_engine([(b.zz, b.zxy) for b in blocks], asm, flat)
    else:
        futures = client.compute(graph)  # the one data pass
        _wait(client, futures, progress, "data pass", t1, n_parts)
        summaries = client.gather(client.map(_block_summary, futures, pure=False))
        asm = _assemble(summaries, k)
        n_values = len(asm.group_labels) * flat.r * (flat.r + k)
        if mode == "local" or (mode == "auto" and n_values <= AUTO_LOCAL_MAX_VALUES):
            dense = client.gather(client.map(_block_dense, futures, pure=False))
            engine_obj = _local_engine(dense, asm, flat)
            logger.log(level, "statistics gathered: optimizing in-process")
            for f in futures:
                f.release()
        else:
            keep = [i for i, size in enumerate(asm.block_sizes) if size > 0]
            evaluators = client.map(
                _make_evaluator,
                [futures[i] for i in keep],
                tune_malloc=TUNE_WORKER_MALLOC,
                pure=False,
            )
            _wait(client, evaluators)
            engine_obj = DaskEngine(client, evaluators, [graph[i] for i in keep], asm.position)
            # the plain blocks are released; the scheduler keeps their recipe (lineage)
            for f in futures:
                f.release()
            logger.log(level, "statistics kept on the cluster in %d blocks", len(keep))
    if asm.glob.n == 0:
        if isinstance(engine_obj, DaskEngine):
            engine_obj.close()
        raise ValueError("no data: the Dask DataFrame has no rows (after dropping missing values)")
    logger.log(
        level,
        "data pass done in %.2fs: %d rows, %d groups",
        time.perf_counter() - t1,
        asm.glob.n,
        len(asm.group_labels),
    )
    slot_cols = [] if slot_map is None else slot_map.slot_columns(asm.group_labels)
    return FittedStatistics(
        engine=engine_obj,
        glob=asm.glob,
        layout=layout,
        group_labels=asm.group_labels,
        group_sizes=asm.group_sizes,
        vc_slot_cols=slot_cols,
        data_pass_seconds=time.perf_counter() - t0,
        n_dropped=asm.n_dropped,
    )


def _local_engine(dense: list, asm: _Assembly, flat: _FlatLayout) -> LocalEngine:
    """A LocalEngine on gathered (zz, zxy) pairs, groups in sorted order."""
    zz = np.concatenate([np.zeros((0, flat.r, flat.r))] + [d[0] for d in dense])
    zxy = np.concatenate([np.zeros((0, flat.r, flat.k))] + [d[1] for d in dense])
    return LocalEngine(_reorder(asm.position, zz), _reorder(asm.position, zxy))
