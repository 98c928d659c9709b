"""Adding partial per-group statistics by group key: numpy and pandas only, no Dask.

Partial statistics are packed rows (:class:`~dmixed.stats.packed.PackedLayout`), one per
group, with the group keys alongside (``(keys, values)``; keys from
:func:`~dmixed.stats.keys.key_values`); a chain whose sums the compiled pass made sends
them as rows of terms instead (:class:`~dmixed.kernels.term_table.TermRows`: fewer
columns, not expanded, views of its table).  They are added in two places:

- inside a task, over the partitions it reads one after the other:
  :class:`GroupAccumulator` (a map-side combine);
- between tasks, over the partials of all tasks: each partial is split by a hash of the
  key into buckets (:func:`split_buckets`), and each bucket added up by a tree of
  :func:`combine_partials`.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import weakref
from collections.abc import Callable

import numpy as np
import pandas as pd

from ...kernels.rows import (
    CONSTANT_CHECK_FIRST,
    constant_within,
    wants_rank_one_within,
    wants_within,
)
from ...kernels.shifts import ShiftPart, merge_parts, merge_parts_at, rows_part
from ...kernels.term_table import (
    TermRows,
    TermTable,
    add_rows_into,
    as_packed,
    hash_buckets,
    key_codes,
    key_range,
    release_idle_buffers,
    shifted_rows,
)
from ...kernels.vc_packed import accumulate_padded_into
from ...stats.keys import (
    LEARNED_KEYS,
    arrow_first_codes,
    conform_keys,
    hashed_bits,
    learned,
    settled_keys,
    settled_kind,
)
from ...stats.packed import PackedLayout
from ...stats.standardize import Standardization, check_weights_range, widened
from .text_columns import TextColumns, text_objects
from .tuning import release_free_memory

#: :func:`combine_partials` adds integer-keyed partials by position in their key range
#: (no hash table) when that range is at most this many times the number of keys.
DENSE_COMBINE_SPAN = 4

# (keys (G,), packed rows (G, width)), and a third entry where the rows' within-group sums
# were kept for a random design of several columns (:func:`combine_exact`)
Partial = tuple


# ---------------------------------------------------------------------------
# Buckets: which output block a group key goes to
# ---------------------------------------------------------------------------


def bucket_of(keys: np.ndarray, n_buckets: int) -> np.ndarray:
    """Output block of each group key: a hash that is the same in every process
    (``pd.util.hash_array``, modulo ``n_buckets``).  Integer keys take
    :func:`~dmixed.kernels.term_table.hash_buckets` where it runs compiled: pandas'
    hash of integers (their bits zero-extended to 64, then splitmix64's finalizer),
    the same buckets in one pass.  Float keys are hashed as the integers of their bits
    (:func:`~dmixed.stats.keys.hashed_bits`: ``-0.0`` as ``0.0``), whatever pandas'
    version does with floats, except whole floats in ``[-2**63, 2**63)``, hashed as the
    int64 they equal (an exact cast): where a collection's key kind is learned from its data
    (:data:`~dmixed.stats.keys.LEARNED_KEYS`), one chain's int64 key ``3`` and
    another's float ``3.0`` are one group and go to one bucket."""
    if n_buckets == 1:
        return np.zeros(len(keys), dtype=np.int64)
    keys = np.asarray(keys)
    if keys.dtype.kind == "f" and keys.size:
        with np.errstate(invalid="ignore"):
            whole = (keys == np.trunc(keys)) & (keys >= -(2.0**63)) & (keys < 2.0**63)
        if whole.any():
            out = np.empty(keys.size, dtype=np.int64)
            out[whole] = bucket_of(keys[whole].astype(np.int64), n_buckets)
            if not whole.all():
                out[~whole] = bucket_of(keys[~whole], n_buckets)
            return out
    keys = hashed_bits(keys)
    buckets = hash_buckets(keys, n_buckets)
    if buckets is not None:
        return buckets
    hashed = pd.util.hash_array(keys, categorize=False)
    return (hashed % np.uint64(n_buckets)).astype(np.int64)


def bucket_rows(keys: np.ndarray, n_buckets: int) -> list:
    """Per output block, the positions of the keys that belong to it (hash of the key)."""
    if n_buckets == 1:
        return [slice(None)]
    bucket = bucket_of(keys, n_buckets)
    return [np.flatnonzero(bucket == b) for b in range(n_buckets)]


def split_buckets(keys: np.ndarray, values: np.ndarray, n_buckets: int) -> list[Partial]:
    """``(keys, values)`` split by output block."""
    return [(keys[pick], values[pick]) for pick in bucket_rows(keys, n_buckets)]


# ---------------------------------------------------------------------------
# The map-side combine: many partitions into one accumulator
# ---------------------------------------------------------------------------


def text_key_hashes(keys: np.ndarray) -> np.ndarray:
    """64-bit hashes of text keys.

    Parameters
    ----------
    keys : ndarray of object, shape (n,)
        Python ``str`` keys.

    Returns
    -------
    ndarray of uint64, shape (n,)
        A hash of each key's UTF-8 bytes, the same in every process
        (:func:`pandas.util.hash_array`).  Two distinct keys may share one: callers
        check the keys behind every match (:class:`GroupAccumulator`).

    Raises
    ------
    UnicodeEncodeError
        Where a key has no UTF-8 form (a lone surrogate)."""
    return pd.util.hash_array(keys, categorize=False)


def _all_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether the object arrays ``a`` and ``b`` hold equal keys, position by
    position."""
    return bool(np.all(np.asarray(a == b, dtype=bool)))


def _side_keeper(ref: weakref.ref) -> Callable[[TermTable], None]:
    """The ``on_flush`` of an accumulator's compiled table: the accumulator's
    ``_keep_side``, reached through the weak reference ``ref``.  A bound method would
    make the accumulator and its table a reference cycle, which kept a chain's
    accumulated sums (and all it held) in a worker after the chain, until the
    collector's full pass."""

    def keep(terms: TermTable) -> None:
        acc = ref()
        if acc is None:  # a table flushed after its accumulator: its side sums lost
            raise RuntimeError("a compiled table flushed after its accumulator was freed")
        acc._keep_side(terms)

    return keep


class GroupAccumulator:
    """Per-group statistics of many partitions, added up in one growing array.

    The rows of a chain of partitions are added into ``acc`` (column-major
    :func:`dmixed.kernels.accumulate_packed_into` layout), one column per group seen so
    far.  Groups get their column in one of two ways:

    * integer keys in a range not much wider than the number of groups: the column is
      ``key − base`` (no hashing at all; the range grows as keys outside it arrive);
    * integer keys spread thinly over their range (a bucket's share of ids, or the first
      partition of many more groups than rows): a lookup array over the range gives
      each key its column, and the columns are the groups seen, in order of arrival
      (one gather a row, where a hash table costs tens of ns a row); once the groups
      looked up fill half their range (the first partitions were thin samples of
      dense keys), back to the range, each column moved to ``key − base``;
    * text keys (Python ``str``): through a 64-bit hash of their bytes
      (:class:`~dmixed.engines.dask.text_columns.TextColumns`: the same columns as the
      hash table below gives them, each row's bytes checked against its column's first
      key), while every partition's keys are all ``str`` and no two hashes collide;
    * otherwise a hash table: a pandas Index of the keys known so far, whose hash table
      is built once and kept, plus a small Index of keys added since, merged into the
      main one when it reaches a quarter of its size (amortized linear time).  Where a
      partition's keys are all ``str``, they are looked up by their 64-bit hashes
      (:func:`text_key_hashes`, held in ``by_hash``) instead of as Python objects,
      every match checked against the key it found and every new key against the
      first key of its hash; at the first collision of two distinct keys the hashes
      are dropped and the Index's lookup serves from then on (the same columns either
      way).

    A range is used while it is at most ``max(2**18, 2 · (groups seen + rows of the
    partition))`` wide, so its memory stays within a small factor of the hash table's, or
    under 2**18 columns (29 MB for a random slope and 4 fixed effects): small partitions
    of integer keys over a few hundred thousand groups still get the range.  A lookup
    is used while its range is at most ``max(2**18, LOOKUP_SPAN · (groups seen + rows of
    the partition))`` wide (4 bytes a key of the range: at most 128 bytes a group seen,
    about the accumulator's own 8 bytes × width of a random slope's statistics).

    Parameters
    ----------
    width : int
        Columns of a packed row (:attr:`~dmixed.stats.packed.PackedLayout.width`).
    key_dtype : dtype
        The keys' dtype (:func:`~dmixed.stats.keys.key_dtype`).
    keep_shifts : bool
        Whether the compiled passes keep the groups' random slopes about shifts of
        their own (:class:`~dmixed.kernels.term_table.TermTable`'s ``keep_shifts``);
        the reference's rows keep them always.
    """

    MIN_RANGE = 1 << 18
    LOOKUP_SPAN = 32

    def __init__(self, width: int, key_dtype, keep_shifts: bool = False) -> None:
        self.width = width
        key_dtype = np.dtype(key_dtype) if key_dtype is not object else np.dtype(object)
        # keys' kind learned from the data (stats.keys.LEARNED_KEYS): settled by the
        # first keys added (conform), in their own dtype
        self.learned = learned(key_dtype)
        self.acc = np.zeros((width, 0))
        self.base = 0
        self.lookup: np.ndarray | None = None  # column of key − base, or −1
        self.looked_up = np.empty(0, dtype=np.int64)  # the keys of the columns, in order
        self._keyed_by(key_dtype)
        # the compiled pass's sums not yet in ``acc`` (flushed before ``acc`` is read,
        # grown or reordered); ``written``: the reference added sums into ``acc``
        self.terms = TermTable(keep_shifts, _side_keeper(weakref.ref(self)))
        self.written = False
        # within-group sums kept for rows of several random-design columns (rank one:
        # :func:`~dmixed.kernels.rows.wants_rank_one_within`); the partials then say so
        self.rank_one = False
        # the rows' sums about each group's shift where the reference summed them
        # (:mod:`~dmixed.kernels.shifts`); None once rows were summed without them
        self.sides: list | None = []

    def _keyed_by(self, key_dtype: np.dtype) -> None:
        """Key the (empty) accumulator by keys of ``key_dtype``."""
        self.key_dtype = key_dtype
        self.ranged = key_dtype.kind in "iu"
        self.index = self._new_index(np.empty(0, dtype=key_dtype))
        self.extra = self._new_index(np.empty(0, dtype=key_dtype))
        # object keys looked up by their hashes (:meth:`_str_hashes`): the Indexes of
        # the keys held these hashes are of, and the hashes' Indexes; None once two
        # keys' hashes were found equal
        self.by_hash: tuple | None = (None, None, None, None) if key_dtype.kind == "O" else None
        # text keys by their hashes until a partition's are not (then the hash table)
        self.text = TextColumns() if key_dtype.kind == "O" else None

    def conform(self, keys: np.ndarray, column: str) -> np.ndarray:
        """``keys`` in the accumulator's key dtype (:func:`~dmixed.stats.keys.conform_keys`).
        Where the keys' kind is learned from the data, the first keys settle it in their
        own dtype, and float keys after integer ones (or integers of the other
        signedness) make the keys held float64 (an int key and its whole float one
        group), where float64 holds the integers exactly
        (:func:`~dmixed.stats.keys.settled_keys`).

        Raises
        ------
        DataError
            Text where numbers are held, or the other way round; integers beyond ±2**53
            with floats.
        """
        if not self.learned:
            return conform_keys(keys, self.key_dtype, column)
        keys = conform_keys(keys, LEARNED_KEYS, column)
        if learned(self.key_dtype):
            self._keyed_by(keys.dtype)
            return keys
        want = settled_kind(self.key_dtype, keys, column)
        keys = settled_keys(keys, want, column)
        if want != self.key_dtype:
            self._to_float(column)
        return keys

    def _to_float(self, column: str) -> None:
        """Integer keys held as float64 from now on (the hash table's)."""
        if self.ranged or self.lookup is not None:
            self._to_hash()
        float64 = np.dtype(np.float64)
        self.index = pd.Index(settled_keys(self.index.to_numpy(), float64, column))
        self.extra = pd.Index(settled_keys(self.extra.to_numpy(), float64, column))
        self.key_dtype = np.dtype(np.float64)
        self.text = None

    @staticmethod
    def _new_index(keys: np.ndarray) -> pd.Index:
        return pd.Index(keys, dtype=object if keys.dtype == object else keys.dtype)

    def _held_keys(self) -> np.ndarray:
        """The hash table's keys in column order (``key_dtype``): joined as numpy, not
        by ``Index.append``, which infers a text dtype for object keys (their Python
        strings copied to Arrow, then back to objects by every reader)."""
        parts = [self.index.to_numpy(), self.extra.to_numpy()]
        return np.concatenate(parts).astype(self.key_dtype, copy=False)

    def _grow(self, size: int, shift: int = 0) -> None:
        """Make ``acc`` ``size`` columns wide, old column c moving to c + shift, and the
        compiled table's rows with them (:meth:`~dmixed.kernels.term_table.TermTable.grow`),
        so that its sums stay unflushed and the partial can still be its rows."""
        old = self.acc.shape[1]
        if not self.terms.grow(old, size, shift):
            self._flush()
        new = np.zeros((self.width, size))
        if self._acc_written():  # else all zeros: nothing to copy (no page touched)
            new[:, shift : shift + old] = self.acc
        self.acc = new

    def _acc_written(self) -> bool:
        """Whether ``acc`` holds any sums (else it is all zeros)."""
        return self.written or self.terms.flushed

    def _seen_count(self) -> int:
        """How many groups have a row so far (their count not zero), from ``acc`` and
        the compiled table, without flushing the table."""
        counts = self.terms.counts() if self.terms.pending else None
        if self._acc_written():
            counts = self.acc[0] if counts is None else self.acc[0] + counts
        return 0 if counts is None else int(np.count_nonzero(counts))

    def _flush(self) -> None:
        """The compiled table's sums into ``acc`` (see :class:`TermTable`), its groups'
        sums about their shifts kept apart (:meth:`_keep_side`)."""
        self.terms.flush(self.acc)

    def _keep_side(self, terms: TermTable) -> None:
        """Keep the sums about their shifts of the groups of ``terms``' table (about to
        be flushed: by :meth:`_flush` or by a change of the table's plan) in
        :attr:`sides`, or none from now on where its plan keeps none."""
        if self.sides is None:
            return
        if terms.shifted is None or terms.table is None:
            self.sides = None
            return
        seen = np.flatnonzero(terms.table[:, terms.shifted.count] != 0)
        held = seen if self._sides_by_column() else self._keys_of(seen)
        self.sides.append(terms.shifted.part(held, terms.table[seen]))

    def _sides_by_column(self) -> bool:
        """Whether :attr:`sides` are keyed by the accumulator's columns, not by the
        keys: for object keys, whose columns never move (text and hash-table modes only
        append), so that neither a partition's rows nor the parts' merge hash the Python
        keys again (:meth:`result` gives the parts their keys)."""
        return self.key_dtype.kind == "O"

    def _keys_of(self, cols: np.ndarray) -> np.ndarray:
        """The keys of the accumulator's columns ``cols``."""
        if self.ranged:
            return (cols + self.base).astype(self.key_dtype)
        if self.lookup is not None:
            return self.looked_up[cols].astype(self.key_dtype)
        if self.text is not None:
            return np.asarray(self.text.keys())[cols]
        return self._held_keys()[cols]

    def _range_columns(self, keys: np.ndarray) -> np.ndarray | None:
        # the range and the codes from the current base in one pass where compiled
        got = key_codes(keys, self.base) if keys.size else None
        lo, hi = (int(keys.min()), int(keys.max())) if got is None else got[:2]
        base = self.base
        if not self._range_room(lo, hi, keys.size):
            return None
        if got is not None and self.base == base:  # the codes from the base held
            return got[2]
        return keys.astype(np.int64, copy=False) - self.base

    def _range_room(self, lo: int, hi: int, n: int) -> bool:
        """Make the range hold the keys ``lo … hi`` (``n`` keys), growing it where it
        does not; false where range mode is left instead (a lookup or the hash
        table)."""
        if hi >= 2**62 or lo < -(2**62):  # keep key − base within int64
            self._to_hash()
            return False
        cap = self.acc.shape[1]
        if cap and self.base <= lo and hi < self.base + cap:
            return True
        new_lo = lo if not cap else min(lo, self.base)
        new_hi = hi if not cap else max(hi, self.base + cap - 1)
        span = new_hi - new_lo + 1
        seen = self._seen_count() if cap else 0
        if span > max(self.MIN_RANGE, 2 * (seen + n)):
            self._to_lookup()
            return False
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
        return True

    def _to_hash(self) -> None:
        """Leave range (or lookup) mode: the groups seen become the hash table's first
        keys."""
        self._flush()
        if self.lookup is not None:
            seen_keys = self.looked_up
            self.acc = np.ascontiguousarray(self.acc[:, : seen_keys.size])
        else:
            seen = np.flatnonzero(self.acc[0])
            seen_keys = seen + self.base
            self.acc = np.ascontiguousarray(self.acc[:, seen])
        self.index = self._new_index(seen_keys.astype(self.key_dtype))
        self.ranged = False
        self.lookup = None

    def _to_lookup(self) -> None:
        """Leave range mode for a lookup: the groups seen keep their sums, in key order."""
        self._flush()
        seen = np.flatnonzero(self.acc[0]) if self.acc.shape[1] else np.empty(0, np.int64)
        self.looked_up = (seen + self.base).astype(np.int64)
        self.acc = np.ascontiguousarray(self.acc[:, seen])
        self.lookup = np.empty(0, dtype=np.int32)
        self.ranged = False

    def _lookup_columns(self, keys: np.ndarray) -> np.ndarray | None:
        """Columns of ``keys`` through the lookup (new keys get new columns, in key
        order); None (and the hash table from now on) when its range would be too
        wide."""
        lo, hi = int(keys.min()), int(keys.max())
        known = self.looked_up
        if known.size:
            lo, hi = min(lo, int(known.min())), max(hi, int(known.max()))
        span = hi - lo + 1
        limit = max(self.MIN_RANGE, self.LOOKUP_SPAN * (known.size + keys.size))
        if hi >= 2**62 or lo < -(2**62) or span > min(limit, 2**31 - 1):
            self._to_hash()
            return None
        lookup = self.lookup
        if lookup is None or lo < self.base or hi >= self.base + lookup.size:
            lookup = np.full(span + span // 8, -1, dtype=np.int32)  # some slack above
            lookup[known - lo] = np.arange(known.size, dtype=np.int32)
            self.lookup, self.base = lookup, lo
        offsets = keys.astype(np.int64, copy=False) - self.base
        col = lookup[offsets]
        new = col < 0
        if new.any():
            lookup[offsets[new]] = -2  # marked, then read back in key order
            fresh = np.flatnonzero(lookup == -2)
            lookup[fresh] = np.arange(known.size, known.size + fresh.size, dtype=np.int32)
            self.looked_up = np.concatenate([known, fresh + self.base])
            if 2 * self.looked_up.size >= span:
                looked_from = self.base
                self._lookup_to_range(lo, span)
                return offsets + np.int64(looked_from - self.base)
            if self.looked_up.size > self.acc.shape[1]:
                cap = self.acc.shape[1]
                self._grow(max(self.looked_up.size, cap + cap // 2))
            col = lookup[offsets]
        return col.astype(np.int64)

    def _lookup_to_range(self, lo: int, span: int) -> None:
        """Back to range mode once the groups looked up fill half their range ``lo …
        lo + span − 1`` (the keys were dense after all, the first partitions thin
        samples of them): each column moves to ``key − base``, the compiled table's
        rows with it, and later partitions are swept by key (no codes, no lookup)."""
        slack = span // 16  # as a first range gets, either side
        size = span + 2 * slack
        # the columns held (the keys just looked up may lie beyond them, with no sums)
        to = self.looked_up[: self.acc.shape[1]] - (lo - slack)
        if not self.terms.grow(self.acc.shape[1], size, to):
            self._flush()
        new = np.zeros((self.width, size))
        if self._acc_written():
            new[:, to] = self.acc[:, : to.size]
        self.acc = new
        self.base = lo - slack
        self.ranged = True
        self.lookup = None
        self.looked_up = np.empty(0, dtype=np.int64)

    def _hash_columns(self, keys: np.ndarray) -> np.ndarray:
        """The hash table's column of every key (new keys get new columns, in order of
        first appearance).  Keys that are all Python ``str`` are looked up by 64-bit
        hashes of their bytes (:meth:`_str_hashes`), every match checked against the
        key held; where two keys share a hash, the keys themselves from then on."""
        hashes = self._str_hashes(keys)
        if hashes is not None:
            col = self._hashed_columns(keys, hashes)
            if col is not None:
                return col
            self.by_hash = None  # a collision: the keys' own hash table from now on
        n_main = len(self.index)
        # looked up as an Index of the keys' dtype: pandas 3 would take an object array
        # for text and copy every key to Arrow and back before the lookup
        col = self.index.get_indexer(self._new_index(keys))
        miss = col < 0
        if miss.any():
            mk = self._new_index(keys[miss])
            sub = self.extra.get_indexer(mk) if len(self.extra) else np.full(mk.size, -1)
            new = sub < 0
            if new.any():
                codes, uniq = pd.factorize(mk.to_numpy()[new])
                sub[new] = len(self.extra) + codes
                fresh = np.asarray(uniq, dtype=self.key_dtype)
                self._extend(n_main, fresh)
            col[miss] = n_main + sub
        return col

    def _extend(self, n_main: int, fresh: np.ndarray) -> None:
        """Columns for the ``fresh`` keys after those held (``n_main`` in the main
        Index), the small Index merged into the main one when it reaches a quarter of
        its size (amortized linear time)."""
        self.extra = self._new_index(np.concatenate([self.extra.to_numpy(), fresh]))
        n_total = n_main + len(self.extra)
        if n_total > self.acc.shape[1]:
            self._grow(max(n_total, self.acc.shape[1] + self.acc.shape[1] // 2))
        if len(self.extra) > max(1024, n_main // 4):
            self.index = self._new_index(self._held_keys())
            self.extra = self._new_index(np.empty(0, dtype=self.key_dtype))

    def _str_hashes(self, keys: np.ndarray) -> np.ndarray | None:
        """64-bit hashes of ``keys`` (:func:`pandas.util.hash_array` of their UTF-8
        bytes) where they and the keys held are all Python ``str`` and the held keys'
        hashes are distinct (kept in :attr:`by_hash`, made again whenever the held keys'
        Indexes were replaced); None otherwise."""
        if self.by_hash is None or keys.dtype != object or not keys.size:
            return None
        if pd.api.types.infer_dtype(keys, skipna=False) != "string":
            return None
        main, extra, _, _ = self.by_hash
        if main is not self.index or extra is not self.extra:
            held = [self.index.to_numpy(), self.extra.to_numpy()]
            if any(h.size and pd.api.types.infer_dtype(h, skipna=False) != "string" for h in held):
                self.by_hash = None
                return None
            hashed = [text_key_hashes(h) for h in held]
            if not pd.Index(np.concatenate(hashed)).is_unique:
                self.by_hash = None
                return None
            self.by_hash = (self.index, self.extra, pd.Index(hashed[0]), pd.Index(hashed[1]))
        return text_key_hashes(keys)

    def _hashed_columns(self, keys: np.ndarray, hashes: np.ndarray) -> np.ndarray | None:
        """:meth:`_hash_columns` through the keys' ``hashes`` (:attr:`by_hash`); None,
        with nothing changed, where a key's hash is that of another key (held or new)."""
        _, _, main_hashes, extra_hashes = self.by_hash
        n_main = len(self.index)
        col = main_hashes.get_indexer(hashes)
        miss = col < 0
        if miss.any():
            mh = hashes[miss]
            sub = extra_hashes.get_indexer(mh) if len(extra_hashes) else np.full(mh.size, -1)
            col[miss] = np.where(sub < 0, -1, n_main + sub)
        found = col >= 0
        if found.any() and not _all_equal(self._held_keys()[col[found]], keys[found]):
            return None
        new = ~found
        if not new.any():
            return col
        nk, nh = keys[new], hashes[new]
        codes, uniq = pd.factorize(nh)  # order of first appearance, as the keys'
        first = np.empty(len(uniq), dtype=np.int64)
        first[codes[::-1]] = np.arange(codes.size - 1, -1, -1)
        fresh = nk[first]
        if not _all_equal(fresh[codes], nk):
            return None
        col[new] = n_main + len(self.extra) + codes
        extra_hashes = pd.Index(np.concatenate([extra_hashes.to_numpy(), uniq]))
        self._extend(n_main, fresh)
        if self.extra.size:
            self.by_hash = (self.index, self.extra, main_hashes, extra_hashes)
        else:  # merged into the main Index
            main_hashes = pd.Index(np.concatenate([main_hashes.to_numpy(), extra_hashes]))
            self.by_hash = (self.index, self.extra, main_hashes, pd.Index(uniq[:0]))
        return col

    def add(self, keys: np.ndarray, dm, ztilde: np.ndarray, std=None, vc_widths=()) -> dict:
        """Add one partition's rows (design matrices ``dm``, padded random design
        ``ztilde``, group ``keys``), their columns mapped by ``std``
        (:mod:`dmixed.stats.standardize`); returns their global sums (see
        :func:`dmixed.kernels.accumulate_packed`)."""
        col = self._columns(keys, dm.first_numbered())
        if self.terms.applies(
            col.size, ztilde.shape[1], std, vc_widths
        ) and not wants_rank_one_within(std, col, ztilde, vc_widths, self.acc.shape[1]):
            # one compiled pass into the chain's row-major table of the plan's terms (which
            # makes no within-group sums; the sums about the groups' shifts where its plan
            # keeps them)
            return self._tabled(
                self.terms.add(self.acc, col, dm.endog, dm.exog, ztilde, dm.weights, std)
            )
        self._flush()
        if not self.written:
            # the route of the design matrices: its temporaries come from the heap and
            # pyarrow's pool, not from the kept buffers, whose idle ones (and the free
            # memory an earlier pass of the compiled tables left) would sit beside them
            release_idle_buffers()
            release_free_memory()
        self.written = True
        self._add_side(keys, col, dm, ztilde, std, vc_widths)
        # variance components of one entry per row: summed without the padded products
        sums = accumulate_padded_into(
            self.acc, col, dm.endog, dm.exog, ztilde, dm.weights, std, vc_widths, rank_one=True
        )
        if sums["within"] is not None and ztilde.shape[1] >= 2:
            self.rank_one = True
        return sums

    def add_columns(self, keys: np.ndarray, columns: list, plan, std) -> tuple[int, dict] | None:
        """Add one partition's rows given as raw columns (``plan``, a
        :class:`~dmixed.kernels.term_table.ColumnPlan`) in one compiled sweep
        (:meth:`~dmixed.kernels.term_table.TermTable.add_columns`): ``(rows summed,
        their global sums)``, or None where the sweep does not apply (nothing added:
        the caller builds the design and calls :meth:`add`)."""
        if not self.terms.applies_columns(len(keys), len(plan.z_of), std):
            return None
        if self._keyed(keys) and not self._rank_one_first(keys, columns, plan, std):
            # every key has its column (key − base), the range grown where needed: the
            # sweep finds them itself, no array of codes made
            return self._tabled(
                self.terms.add_columns(self.acc, keys, columns, plan, std, self.base)
            )
        col = self._columns(keys)  # first: new keys may grow (replace) ``acc``
        # the sweep makes no within sums
        if _rank_one_columns(std, col, columns, plan, self.acc.shape[1]):
            return None
        return self._tabled(self.terms.add_columns(self.acc, col, columns, plan, std))

    def _tabled(self, got):
        """``got``, no sums about the groups' shifts kept from now on where the table's
        plan keeps none (:class:`~dmixed.kernels.term_table.ShiftTerms`)."""
        if self.terms.shifted is None:
            self.sides = None
        return got

    def _add_side(
        self, keys: np.ndarray, col: np.ndarray, dm, ztilde: np.ndarray, std, vc_widths
    ) -> None:
        """Keep these rows' sums about each group's shift
        (:func:`~dmixed.kernels.shifts.rows_part`), or none from now on where they
        make none (variance components, no slope).  Object keys are numbered by their
        columns ``col`` (:meth:`_sides_by_column`), one to one with the keys, so the
        groups come in the same order of first appearance."""
        if self.sides is None:
            return
        part = None
        if not len(vc_widths) and ztilde.shape[1] >= 2:
            codes, uniq = pd.factorize(col if self._sides_by_column() else keys)
            part = rows_part(np.asarray(uniq), codes, dm.endog, dm.exog, ztilde, dm.weights, std)
        if part is None:
            self.sides = None
        else:
            self.sides.append(part)

    def _rank_one_first(self, keys: np.ndarray, columns: list, plan, std) -> bool:
        """:func:`_rank_one_columns` of the rows keyed by range (their codes ``key −
        base``) where some of their first rows rule the rank-one form out: their
        first :data:`~dmixed.kernels.rows.CONSTANT_CHECK_FIRST` rows' codes, then 16
        times as many, and so on, short of all of them (a group not constant within
        some rows is not within all; true where none of those rules it out: then all
        the rows' codes are made and checked)."""
        end = CONSTANT_CHECK_FIRST
        while end < keys.size:
            head = keys[:end] - np.int64(self.base)
            firsts = [c[:end] for c in columns]
            if not _rank_one_columns(std, head, firsts, plan, self.acc.shape[1]):
                return False
            end *= 16
        return True

    def _keyed(self, keys: np.ndarray) -> bool:
        """Whether every key (int64) has its column ``key − base`` in the range, grown
        where it did not (:meth:`_range_room`, from the keys' range found by one
        compiled pass that makes no array); false where that pass does not run or
        range mode is left."""
        if not (self.ranged and isinstance(keys, np.ndarray) and keys.dtype == np.int64):
            return False
        got = key_range(keys)
        return got is not None and self._range_room(got[0], got[1], keys.size)

    def _columns(self, keys: np.ndarray, coded=None) -> np.ndarray:
        """The accumulator's column of every key (new keys get new columns).
        ``coded``: codes and labels of object ``keys`` where the chain numbered them
        from their Arrow column (:meth:`~dmixed.design.spec.DesignMatrices.first_numbered`),
        or None."""
        col = self._range_columns(keys) if self.ranged else None
        if col is None and self.lookup is not None:
            col = self._lookup_columns(keys)
        if col is None and self.text is not None:
            col = self._text_columns(keys)
        if col is None and coded is not None and len(coded[0]) == len(keys):
            col = self._coded_columns(*coded)
        if col is None:
            col = self._text_hash_columns(keys)
        return col

    def _coded_columns(self, codes: np.ndarray, labels: np.ndarray) -> np.ndarray | None:
        """:meth:`_hash_columns` of the keys ``labels[codes]`` by their distinct keys
        only: the labels taken in the rows' order of first appearance (one hash of the
        integer codes, none where the codes are numbered so already), so new groups get
        the same columns, in the same order, as the rows' keys would give them.  None
        where the keys are not held as objects."""
        if self.key_dtype.kind != "O" or not codes.size:
            return None
        firsts = np.arange(len(labels)) if _first_numbered(codes, len(labels)) else pd.unique(codes)
        where = np.empty(len(labels), dtype=np.int64)
        where[firsts] = self._hash_columns(labels[firsts])
        return where[codes]

    def _text_hash_columns(self, keys) -> np.ndarray:
        """:meth:`_hash_columns` of keys read as Arrow text by their distinct keys only
        (:func:`~dmixed.stats.keys.arrow_first_codes`: one Arrow hash of the rows, a
        Python object for each distinct key), each row then taking its key's column;
        other keys as they are.  The distinct keys come in the rows' order of first
        appearance, so new groups get the same columns, in the same order, as the
        rows' Python keys would give them."""
        got = arrow_first_codes(keys)
        if got is None:
            return self._hash_columns(text_objects(keys))
        codes, labels = got
        return self._hash_columns(labels)[codes]

    def _text_columns(self, keys: np.ndarray) -> np.ndarray | None:
        """Columns of text ``keys`` through their hashes (:class:`TextColumns`); None
        (and the hash table from now on, holding the keys seen) where they do not
        apply."""
        col = None if self.text is None else self.text.columns(keys)
        if col is None or self.text is None:
            self._leave_text()
            return None
        n_total = len(self.text)
        if n_total > self.acc.shape[1]:
            self._grow(max(n_total, self.acc.shape[1] + self.acc.shape[1] // 2))
        return col

    def _leave_text(self) -> None:
        """The keys seen by their hashes become the hash table's first keys."""
        if self.text is not None:
            self.index = self._new_index(self.text.keys())
            self.extra = self._new_index(np.empty(0, dtype=self.key_dtype))
            self.text = None

    def row_bytes(self, dm, ztilde: np.ndarray, std=None, vc_widths=()) -> int:
        """Bytes of a group's row in this accumulator's partial for rows like these
        (design matrices ``dm``): the compiled table's row of terms
        (:meth:`~dmixed.kernels.term_table.TermTable.row_bytes`), else a packed row."""
        terms = self.terms.row_bytes(dm.endog, dm.exog, ztilde, dm.weights, std, vc_widths)
        return 8 * self.width if terms is None else terms

    def result(self, n_buckets: int) -> list[Partial]:
        """``(keys, values)`` of the groups seen, split by output block (and a
        correction of zeros where the within-group sums were kept for several
        random-design columns, :func:`rank_one_partials`): one packed row
        per group (one gather from the accumulator per block), or, when the compiled
        table holds all the sums, its rows as a
        :class:`~dmixed.kernels.term_table.TermRows` per block (views of the table,
        moved in place; each block's keys in the order they would have had).  Ends the
        accumulator: nothing may be added afterwards."""
        # all the sums in the table: the partial from it, never from ``acc``
        direct = self.terms.pending and not (self.written or self.terms.flushed)
        if not direct:
            self._flush()
        if direct and self.ranged and self.key_dtype == np.int64:
            # the groups seen, their buckets and the move in one pass over the table
            # for a power of two buckets (two passes, the count column then the rows
            # seen, for another number), no array of keys before the move
            rows, parts = self.terms.split_seen(self.base, n_buckets)
            keys = rows + np.int64(self.base)
            starts = np.cumsum([0] + [len(p) for p in parts])
            return [(keys[starts[b] : starts[b + 1]], parts[b]) for b in range(n_buckets)]
        if self.ranged:
            counts = self.terms.counts() if direct else self.acc[0]
            # the mask first: flatnonzero of a float array reads it twice (count, then
            # fill), the table's strided column included; of a bool mask in cache, once
            seen = np.flatnonzero(counts != 0)
            keys = (seen + self.base).astype(self.key_dtype)
        elif self.lookup is not None:
            keys = self.looked_up.astype(self.key_dtype)
            seen = np.arange(keys.size)
        elif self.text is not None:
            keys = self.text.keys()
            seen = np.arange(keys.size)
        else:
            keys = self._held_keys()
            seen = np.arange(keys.size)
        if direct:
            # the table's rows as they are (terms, no scales), moved in place to one
            # run per bucket: views, no fresh array of the expanded rows (whose first
            # touch of new pages cost more than the expansion itself)
            bucket = bucket_of(keys, n_buckets)
            order, rows = self.terms.split_rows(seen, bucket, n_buckets)
            keys = keys[order]
            starts = np.cumsum([0] + [len(r) for r in rows])
            return [(keys[starts[b] : starts[b + 1]], rows[b]) for b in range(n_buckets)]
        # gather the groups seen along each accumulator row (contiguous reads), then
        # transpose: gathering rows of the transposed view reads strided memory
        picks = bucket_rows(keys, n_buckets)
        gathered: list[Partial] = [
            (keys[pick], np.ascontiguousarray(self.acc[:, seen[pick]].T)) for pick in picks
        ]
        side = None if not self.sides else merge_parts(self.sides)
        if side is not None:
            held = [seen[pick] for pick in picks] if self._sides_by_column() else None
            gathered = with_sides(gathered, side, held)
        if self.written:
            release_free_memory()  # the design matrices' temporaries, freed by now
        return rank_one_partials(gathered) if self.rank_one else gathered


def _first_numbered(codes: np.ndarray, n_labels: int) -> bool:
    """Whether ``codes`` number all ``n_labels`` keys in order of first appearance
    (each new code one more than the highest before it), as Arrow's
    ``dictionary_encode`` does."""
    if not codes.size:
        return False
    high = np.maximum.accumulate(codes)
    return high[0] == 0 and high[-1] == n_labels - 1 and bool(np.all(np.diff(high) <= 1))


def with_sides(parts: list[Partial], side: ShiftPart, held: list | None = None) -> list[Partial]:
    """``parts`` each with its groups' sums about their shifts (``side``'s, a
    :class:`~dmixed.kernels.shifts.ShiftPart` of all their groups) as a fourth entry
    (no correction of within-group sums: None), which :func:`combine_exact` adds and
    :func:`~dmixed.engines.dask.blocks.to_block` gives the block's lossy groups.
    ``held``: where ``side`` is keyed by other labels than the parts' keys (an
    accumulator's columns), those labels of each part's groups, in the part's order;
    the part's side then gets the part's keys."""
    out = []
    for i, (keys, values) in enumerate(parts):
        mine = side.of_keys(keys if held is None else held[i])
        if mine is not None and held is not None:
            mine = dataclasses.replace(mine, keys=keys)
        out.append((keys, values) if mine is None else (keys, values, None, mine))
    return out


def rank_one_partials(parts: list[Partial]) -> list[Partial]:
    """``parts`` marked as holding rows whose within-group sums were kept for a random
    design of several columns (the intercept and columns constant within the groups:
    :func:`~dmixed.kernels.rows.wants_rank_one_within`): each with a correction of
    zeros, so that :func:`combine_exact` adds the Chan correction of the groups several
    parts hold (as it does for one random-design column, the intercept).  Only such
    partials pay for it: an ordinary random slope's combines stay as they were."""
    return [(part[0], part[1], 0.0, *part[3:]) for part in parts]  # sides kept


def _rank_one_columns(std, codes: np.ndarray, columns: list, plan, n_groups: int) -> bool:
    """Whether raw ``columns`` (``plan``'s) make a random design whose rows keep
    within-group sums (:func:`~dmixed.kernels.rows.wants_rank_one_within`): the random
    design's columns after the intercept, checked where they lie
    (:func:`~dmixed.kernels.rows.constant_within`; a column of ones is constant)."""
    if len(plan.z_of) < 2 or std is None or std.z_intercept != 0:
        return False
    return constant_within(codes, [columns[c] for c in plan.z_of[1:] if c >= 0], n_groups)


# ---------------------------------------------------------------------------
# The combine between tasks
# ---------------------------------------------------------------------------


def dense_key_range(keys: list[np.ndarray]) -> tuple[int, int] | None:
    """``(lowest key, width of the key range)`` when integer keys fill their range densely
    enough (:data:`DENSE_COMBINE_SPAN`) for :func:`combine_partials` to add by position,
    else None."""
    if any(k.dtype.kind not in "iu" for k in keys):
        return None
    lo = min(int(k.min()) for k in keys)
    hi = max(int(k.max()) for k in keys)
    span = hi - lo + 1
    if lo < -(2**62) or hi >= 2**62 or span > DENSE_COMBINE_SPAN * sum(k.size for k in keys):
        return None
    return lo, span


def combine_partials(*parts: Partial) -> Partial:
    """Add partial statistics by group key (one node of the tree reduction).

    Every part has distinct keys and a positive row count (column 0) for each.  Integer
    keys that fill their range (the usual case: ids 0..G-1 split into buckets) are added
    by position in that range, one row per key, in the order of the parts; other keys go
    through a hash table (``pd.factorize``) and one ``bincount`` per column, which adds
    in the same order, so both give the same sums bit for bit; by position is faster.
    """
    keys, values, _ = _combined(parts)
    return keys, values


def _combined(parts) -> tuple[np.ndarray, np.ndarray, list | None]:
    """:func:`combine_partials`, and where each part's groups went: their positions in
    the keys added, a part after part (empty for a part without groups); None where
    the result is a part as it came (one part, or all empty)."""
    held = [p for p in parts if len(p[0])]
    if len(held) <= 1:
        only = (held or list(parts[:1]))[0]
        return only[0], only[1], None
    met = met_kinds(held)
    dense = dense_key_range([p[0] for p in met])
    if dense is not None:
        keys, values, at = _add_by_position(met, *dense)
    else:
        keys_all = np.concatenate([p[0] for p in met])
        values_all = np.concatenate([p[1] for p in met])
        codes, uniq = pd.factorize(keys_all)
        values = np.empty((len(uniq), values_all.shape[1]))
        for j in range(values_all.shape[1]):
            values[:, j] = np.bincount(codes, weights=values_all[:, j], minlength=len(uniq))
        keys = np.asarray(uniq)
        at = np.split(codes, np.cumsum([len(p[0]) for p in met])[:-1])
    it = iter(at)
    return keys, values, [next(it) if len(p[0]) else np.empty(0, np.int64) for p in parts]


def met_kinds(parts: list[Partial]) -> list[Partial]:
    """``parts`` with their keys in one dtype where they differ (a collection whose
    keys' kind is learned from its data, :data:`~dmixed.stats.keys.LEARNED_KEYS`):
    numbers of two dtypes as float64 (:func:`~dmixed.stats.keys.settled_kind`), where
    float64 holds the integers exactly, the column named at the driver.  (Text with
    numbers is joined as objects, refused with the labels,
    :func:`~dmixed.stats.keys.settled_labels`.)

    Raises
    ------
    DataError
        Integers beyond ±2**53 with floats or integers of the other signedness.
    """
    dtypes = {p[0].dtype for p in parts}
    if len(dtypes) == 1 or any(d.kind not in "iuf" for d in dtypes):
        return parts
    float64 = np.dtype(np.float64)
    return [(settled_keys(p[0], float64, None), *p[1:]) for p in parts]


def _add_by_position(parts: list[Partial], lo: int, span: int) -> tuple:
    """:func:`combine_partials` for integer keys in ``lo .. lo + span - 1``, and each
    part's groups' positions in the keys added (:func:`_combined`)."""
    offsets = [keys.astype(np.int64, copy=False) - lo for keys, _ in parts]
    seen = np.zeros(span, dtype=bool)
    for off in offsets:
        seen[off] = True
    row = np.cumsum(seen) - 1  # output row of every key in the range (sorted keys)
    present = np.flatnonzero(seen)
    out = np.zeros((present.size, parts[0][1].shape[1]))
    at = [row[off] for off in offsets]
    for pos, (_, values) in zip(at, parts, strict=True):
        add_rows_into(out, pos, values)  # keys are distinct within a part
    return (present + lo).astype(parts[0][0].dtype), out, at


def sum_vectors(*vectors: np.ndarray) -> np.ndarray:
    """Σ of packed global sums (one node of their tree reduction)."""
    return functools.reduce(operator.add, vectors)


# ---------------------------------------------------------------------------
# Partials in different column maps
# ---------------------------------------------------------------------------


def target_map(p: int, q: int, *maps: Standardization | None) -> Standardization:
    """The map every partial is converted to: the one chosen from the most rows (the
    first such task's: the same whatever order the tasks finish in; the identity when
    no task has rows).  Not simply the first task's: a first partition of one row gives
    a map whose scales are its values, and the optimizer's coordinates then differ by
    orders of magnitude from the in-process fit's (same optimum, worse conditioning)."""
    chosen = [m for m in maps if m is not None]
    if not chosen:
        return Standardization.identity(p, q)
    most = max(m.sample_rows for m in chosen)
    return next(m for m in chosen if m.sample_rows == most)


def checked_target(
    p: int, q: int, weights_name: str | None, given, *maps: Standardization | None
) -> Standardization:
    """:func:`target_map` of ``maps`` (``given`` where not None), once the prior weights
    of all their rows (:attr:`~dmixed.stats.standardize.Standardization.weight_span`)
    are within ``2^WEIGHT_SPAN_LOG2`` of each other as the rows read at once must be
    (:func:`~dmixed.stats.standardize.check_weights_range`, naming ``weights_name``):
    maps of weight scales a step apart then convert exactly, and none are further.  The
    span judged holds ``given``'s (saved statistics' rows, which new rows are added to),
    and the map returned holds it (saved with the statistics)."""
    span = None if given is None else given.weight_span
    for m in maps:
        if m is not None:
            span = widened(span, m.weight_span)
    check_weights_range(weights_name, span)
    return (given if given is not None else target_map(p, q, *maps)).with_span(span)


def _conversions(
    std: Standardization | None, target: Standardization, vc_widths=()
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(M_x, M_z)`` taking columns in ``std`` to ``target``'s (weight scales a step
    apart too: both hold ``√ρ``); None when no conversion is needed."""
    if std is None or std == target:
        return None
    return std.conversion_to(target, vc_widths, weights=True)


def combine_converted(
    target: Standardization,
    packed: PackedLayout,
    vc_widths: tuple,
    *pairs: tuple[Partial, Standardization | None],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`combine_exact` of partials each in its own column map (``(partial,
    map)`` pairs), every one first converted to ``target``'s
    (:meth:`~dmixed.stats.standardize.Standardization.conversion_to`: exact, since a
    map is affine in the columns and the intercept carries the shifts).  Parts of
    rows of terms (:class:`~dmixed.kernels.term_table.TermRows`) are added as they
    are where :func:`combine_terms` can (the values are then term rows too), else
    expanded first."""
    terms = combine_terms(target, packed, vc_widths, *pairs)
    if terms is not None:
        return terms
    parts = []
    for partial, std in pairs:
        keys, values = partial[0], partial[1]
        conv = _conversions(std, target, vc_widths) if len(keys) else None
        rest = partial[2:]  # a rank-one partial's mark kept
        if isinstance(values, TermRows) and values.shifted is not None and len(keys):
            # its sums about the groups' shifts, as a partial of packed rows carries them
            rest = (None, values.shifted.part(keys, np.asarray(values.rows)))
        values = as_packed(values)
        if conv is not None:
            values = values @ packed.conversion(conv[1], conv[0])
            if len(rest) > 1:  # the sums about the groups' shifts, in the target's map
                rest = (rest[0], rest[1].in_map(target), *rest[2:])
        parts.append((keys, values, *rest))
    return combine_exact(target, packed, vc_widths, *parts)


def combine_terms(
    target: Standardization,
    packed: PackedLayout,
    vc_widths: tuple,
    *pairs: tuple[Partial, Standardization | None],
) -> tuple[np.ndarray, TermRows, None] | None:
    """:func:`combine_converted`'s sums kept as rows of terms, where they can be: every
    non-empty part a :class:`~dmixed.kernels.term_table.TermRows` of one plan whose
    factors are powers of two, in ``target``'s map already, its keys integers filling
    their range (or one part), and no within-group sums (more than one random-design
    column, or none of them the intercept).  ``(keys, term rows, None)`` (no correction
    of within-group sums: there are none), else None (then :func:`combine_converted`).

    The term rows are added by position as :func:`combine_partials` adds packed rows,
    in the same order; times a power of two, the sums are the packed sums bit for bit
    (the expansion is left to the block, :func:`~dmixed.engines.dask.blocks.to_block`,
    which writes the kernels' layout from them in one pass).
    """
    parts = term_parts(target, packed, vc_widths, *pairs)
    if parts is None:
        return None
    first = parts[0][1]
    if len(parts) == 1:  # its sums about the groups' shifts kept with it
        return parts[0][0], TermRows(first.rows, first.columns, first.factors, first.shifted), None
    else:
        dense = dense_key_range([k for k, _ in parts])
        if dense is None:
            return None
        keys, rows, _ = _add_by_position([(k, v.rows) for k, v in parts], *dense)
    shifted = first.shifted
    if shifted is not None:
        if all(v.shifted == shifted for _, v in parts) and _increasing(parts):
            # the sums about the groups' shifts, which the addition by position mixed
            merged = keys.astype(np.int64)
            part_keys = [k.astype(np.int64) for k, _ in parts]
            shifted_rows(rows, merged, [v for _, v in parts], part_keys)
        else:
            shifted = None
    # no within-group sums in rows of terms (term_parts): nothing to correct
    return keys, TermRows(rows, first.columns, first.factors, shifted), None


def _increasing(parts: list) -> bool:
    """Whether every part's keys are integers, increasing (as a chain's are)."""
    return all(
        k.dtype.kind == "i" and (k.size < 2 or bool(np.all(k[1:] > k[:-1]))) for k, _ in parts
    )


def term_parts(
    target: Standardization,
    packed: PackedLayout,
    vc_widths: tuple,
    *pairs: tuple[Partial, Standardization | None],
) -> list[tuple[np.ndarray, TermRows]] | None:
    """The non-empty parts of ``(partial, map)`` pairs where their rows of terms can be
    added as they are (:func:`combine_terms`, whatever their keys): every one a
    :class:`~dmixed.kernels.term_table.TermRows` of one plan whose factors are powers of
    two, in ``target``'s map already, and no within-group sums; else None."""
    parts = [(p[0], p[1]) for p, _ in pairs if len(p[0])]
    if not parts or not all(isinstance(v, TermRows) for _, v in parts):
        return None
    if any(_conversions(std, target, vc_widths) is not None for p, std in pairs if len(p[0])):
        return None
    first = parts[0][1]
    if not all(first.same_plan(v) for _, v in parts[1:]) or not _powers_of_two(first.factors):
        return None
    if wants_within(target, packed.r):  # within-group sums: combine_exact
        return None
    return parts


def root_term_parts(combine, target, packed: PackedLayout, vc_widths: tuple, *items):
    """:func:`term_parts` of the items of a bucket's root node, ``combine(target,
    packed, vc_widths, *items)``: :func:`combine_converted`'s ``(partial, map)`` pairs,
    or :func:`combine_exact`'s partials of a lower level (already in ``target``'s map;
    none may carry a correction of the within-group sums); None for any other node."""
    if combine is combine_exact:
        if any(len(item) > 2 and item[2] is not None and np.any(item[2]) for item in items):
            return None
        items = tuple(((item[0], item[1]), None) for item in items)
    elif combine is not combine_converted:
        return None
    return term_parts(target, packed, vc_widths, *items)


def _powers_of_two(factors: np.ndarray) -> bool:
    mantissa, _ = np.frexp(factors)
    return bool(np.all(np.abs(mantissa) == 0.5))


def combine_exact(
    target: Standardization, packed: PackedLayout, vc_widths: tuple, *parts
) -> Partial:
    """:func:`combine_partials`, and the within-group sums' correction of the groups
    that several parts hold: ``(keys, values, correction)``.

    A part may carry a correction already (a third entry, from a lower level, or the
    zero of :func:`rank_one_partials`).  Each part's groups were summed about their own
    means; adding parts of one group adds ``Σ_p U_p (c_p − c)(c_p − c)'`` to the
    within-group cross-products (``U_p`` the part's weight on the intercept column,
    ``c_p`` its mean, ``c`` the combined mean; Chan, Golub and LeVeque 1983).

    The correction is made where the within-group sums exist: one random-design column,
    the intercept (:func:`~dmixed.kernels.rows.wants_within`), or some part carrying
    one (rows of several columns whose sums were kept: :func:`rank_one_partials`); it is
    None otherwise (nothing to correct: a block of it holds no ``within``).
    """
    k = packed.k
    corr = np.zeros((k, k))
    marked = False
    for part in parts:
        if len(part) > 2 and part[2] is not None:
            corr = corr + part[2]
            marked = True
    plain = [(part[0], as_packed(part[1])) for part in parts]
    keys, values, at = _combined(plain)
    e = target.z_intercept
    rows = sum(len(p[0]) for p in plain)
    kept = wants_within(target, packed.r) or marked
    if kept and rows > len(keys):  # a group in several parts
        corr = corr + _chan_correction(plain, keys, values, packed, e)
    side = _combined_side(parts, keys, at)
    if side is not None:
        return keys, values, corr if kept else None, side
    return keys, values, corr if kept else None


def _combined_side(parts, keys: np.ndarray, at: list | None = None) -> ShiftPart | None:
    """The parts' sums about their groups' shifts added by key, in the order of
    ``keys`` (:func:`~dmixed.kernels.shifts.merge_parts`), where every part with groups
    carries them (:func:`with_sides`); else None.  ``at``: where the parts' groups went
    in ``keys`` (:func:`_combined`); the sides whose keys are their parts' keys, in the
    same order (as :func:`with_sides` and this function make them), are added there
    with no second hash of the keys."""
    sides: list[ShiftPart] = []
    for p in parts:
        if len(p[0]):
            if len(p) < 4 or p[3] is None:
                return None
            sides.append(p[3])
    if not sides:
        return None
    held = [p for p in parts if len(p[0])]
    if at is not None and all(
        s.keys is p[0] or np.array_equal(s.keys, p[0]) for s, p in zip(sides, held, strict=True)
    ):
        return merge_parts_at(sides, [a for a, p in zip(at, parts, strict=True) if len(p[0])], keys)
    merged = merge_parts(sides)
    return None if merged is None else merged.of_keys(keys)


def _chan_correction(parts, keys, values, packed: PackedLayout, e: int) -> np.ndarray:
    """``Σ_p Σ_g U_pg (c_pg − c_g)(c_pg − c_g)'`` over the parts' rows (module doc)."""
    rows, cols = packed.zz_index
    ee = 1 + int(np.flatnonzero((rows == e) & (cols == e))[0])
    fe = slice(1 + packed.n_zz + e * packed.k, 1 + packed.n_zz + (e + 1) * packed.k)
    index = pd.Index(keys)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(values[:, ee, None] > 0, values[:, fe] / values[:, ee, None], 0.0)
    out = np.zeros((packed.k, packed.k))
    for part_keys, part_values in parts:
        if not len(part_keys):
            continue
        pos = index.get_indexer(part_keys)
        u = part_values[:, ee]
        with np.errstate(divide="ignore", invalid="ignore"):
            c = np.where(u[:, None] > 0, part_values[:, fe] / u[:, None], 0.0)
        delta = c - mean[pos]
        out += (delta * u[:, None]).T @ delta
    return 0.5 * (out + out.T)


def sum_converted(
    target: Standardization,
    packed: PackedLayout,
    vc_widths: tuple,
    *pairs: tuple[np.ndarray, Standardization | None],
) -> np.ndarray:
    """:func:`sum_vectors` of packed global sums each in its own column map."""
    out = []
    for glob, std in pairs:
        conv = _conversions(std, target, vc_widths)
        if conv is not None:
            glob = packed.convert_global(glob, conv[0], std.weight_ratio(target))
        out.append(glob)
    return sum_vectors(*out)
