"""The exchange between the data pass's tasks: per-group partials, or the rows themselves.

Every chain of partitions ends holding rows of groups that other chains hold too, and
each bucket of groups (:func:`~dmixed.engines.dask.combine.bucket_of`) is added up by
one node.  A chain can send that node either

- its **partial**: one packed row per group it saw (``groups × (key + 8·width)``
  bytes); with every group spread over all files each chain sees nearly every group,
  so the partials of ``C`` chains weigh ``C × G`` rows and grow with the chains;
- its **rows**, routed: the design rows of the bucket's groups in compact form
  (:class:`RoutedRows`: the key and the distinct non-constant columns, ``rows × (key +
  8·columns)`` bytes), which the bucket's owner reduces with the same per-row kernel
  (:func:`reduce_routed`).  All chains' rows together are the data once, whatever the
  number of chains.

A chain starts by routing (buffering its rows in compact form, counting the distinct
groups it has seen) and switches to partials, adding the buffered rows into its
accumulator, as soon as its partial would be fewer bytes than its rows
(:class:`Router`).  So each chain sends ``min(rows, partial)`` bytes, about, and all
chains together never more than the data's compact rows: the bytes that cross stop
growing with the chains once rows are the cheaper form.  Both forms are exact: the
owner accumulates rows in the standardized form like any chain, and partials in
different maps or centres are added as before
(:func:`~dmixed.engines.dask.combine.combine_converted`).  The Dask config key
``"dmixed.exchange"`` forces one form (``"partials"``, ``"rows"``; default ``"auto"``).

A chain whose inputs are those of a chain of an earlier pass in the same process (the
same files, unchanged, the same model and layout: :func:`decision_key`) starts in the
form that chain ended in (:data:`DECISIONS`), without routing its first files to find
it again.  Its bytes are those of the earlier chain: a chain that switched sends the
partial of all the groups it saw whenever it switched (the buffered rows go into the
same accumulator), so starting with the partial sends the same partial; a chain that
kept routing routed every row, as the recalled one does.  The decision is the one
today's rule made on the same data, so the bytes that cross still never grow as chains
× groups once rows are the cheaper form.  The key holds each file's change time
besides its size, inode and modification time: the kernel sets it on every write and
on every change of the times, so a file rewritten in place with its size and
modification time put back (``cp -p``, ``touch -r``) is decided afresh.  Files changed
in a way the key still misses can only make the form the worse one for those bytes,
never the statistics: both forms are exact.
"""

from __future__ import annotations

import hashlib
import pickle
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from ...kernels.text_keys import HashColumns
from ...stats.packed import PackedLayout
from ...stats.standardize import Standardization
from .checks import config_choice
from .combine import GroupAccumulator, Partial, bucket_of
from .parquet_direct import ParquetReads, files_identity
from .text_columns import text_hashes, text_objects

#: Estimated bytes of one key of object dtype (strings) once pickled.
OBJECT_KEY_BYTES = 24
#: Integer keys in ``0 .. 2**BITMAP_BITS - 1`` are counted in a bitmap, others in a set.
BITMAP_BITS = 28

EXCHANGE_CHOICES = ("auto", "partials", "rows")
#: Chains' decisions a process keeps (:class:`Decisions`), the oldest dropped first.
DECISIONS_KEPT = 256

#: The fields of :class:`RoutedRows` that carry variance components one entry per row.
VC_FIELDS = ("vc_pos", "vc_val")


def exchange_mode() -> str:
    """The Dask config key ``"dmixed.exchange"``: ``"auto"`` (default), ``"partials"``
    or ``"rows"``.

    Raises
    ------
    SpecError
        Any other value.
    """
    return config_choice("dmixed.exchange", EXCHANGE_CHOICES)


def partial_is_cheaper(rows_bytes: int, partial_bytes: int) -> bool:
    """The exchange's rule (module doc): a chain sends its partial once the partial of
    the groups it has seen (``partial_bytes``) is fewer bytes than the rows it has
    routed so far (``rows_bytes``), and routes its rows until then.  :class:`Router`
    applies it after each partition; ``benchmarks/scaling_model.py`` applies it to
    predict each chain's form."""
    return partial_bytes < rows_bytes


def key_bytes(keys) -> int:
    """Bytes of these keys as sent (object keys, and text keys read as an Arrow array,
    which are sent as objects: :data:`OBJECT_KEY_BYTES` each)."""
    if isinstance(keys, pa.Array):
        return len(keys) * OBJECT_KEY_BYTES
    return keys.size * (OBJECT_KEY_BYTES if keys.dtype == object else keys.dtype.itemsize)


def partial_bytes(part: Partial) -> int:
    """Bytes of a partial ``(keys, packed rows)`` as sent."""
    return key_bytes(part[0]) + int(part[1].nbytes)


# ---------------------------------------------------------------------------
# Rows in compact form
# ---------------------------------------------------------------------------


def _is_ones(col: np.ndarray) -> bool:
    return bool(col.size and col[0] == 1.0 and (col == 1.0).all())


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bitwise-equal columns (the same memory, or equal values)."""
    if (
        a.strides == b.strides
        and a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
    ):
        return True
    return bool(a.size and a[0] == b[0] and np.array_equal(a, b))


@dataclass
class RoutedRows:
    """Design rows of some groups in compact form: what a chain routes to the owner of
    a bucket instead of its partial.

    ``cols`` (n, m) column-major holds the distinct columns of ``[X y]`` and ``Z̃``
    that are not all ones; ``x_src`` (p,), ``y_src`` and ``z_src`` give, for each
    column of ``exog``, ``endog`` and ``Z̃``, its column in ``cols`` or −1 (all ones).
    ``std`` is the sending chain's columns' map (the owner may use any map: the rows
    are raw).

    Variance components with one entry per row at most (``0 + C(level)``) travel as
    each row's padded column and value (``vc_pos`` (n,), −1 for none, and ``vc_val``),
    not as the padded design's ``r − q`` columns: ``z_src`` then covers the ``exog_re``
    columns only and ``z_width`` is ``r``.
    """

    keys: np.ndarray
    cols: np.ndarray
    x_src: np.ndarray
    y_src: int
    z_src: np.ndarray
    weights: np.ndarray | None = None
    std: Standardization | None = None
    vc_pos: np.ndarray | None = None
    vc_val: np.ndarray | None = None
    z_width: int = 0

    def first_numbered(self) -> None:
        """None: routed rows carry their keys only, not the codes a chain numbered them
        by (:meth:`~dmixed.design.spec.DesignMatrices.first_numbered`); the owner
        numbers them itself."""
        return None

    @classmethod
    def compact(cls, keys, dm, ztilde: np.ndarray, std=None, sources=None) -> RoutedRows:
        """The rows of design matrices ``dm`` (``endog``, ``exog``, ``exog_re``,
        ``weights``) and padded random design ``ztilde``, with group ``keys``
        (``sources``: :meth:`sources` of them, where the caller has it)."""
        found = cls.sources(dm, ztilde) if sources is None else sources
        distinct, x_src, y_src, z_src, vc_pos, vc_val = found
        cols = np.empty((len(distinct), keys.size)).T
        for i, col in enumerate(distinct):
            cols[:, i] = col
        w = None if dm.weights is None else np.asarray(dm.weights, dtype=np.float64)
        width = np.shape(ztilde)[1]
        return cls(np.asarray(keys), cols, x_src, int(y_src), z_src, w, std, vc_pos, vc_val, width)

    @classmethod
    def of_columns(cls, keys, columns: list, plan, std=None) -> RoutedRows:
        """The rows of raw ``columns`` (``plan``, a
        :class:`~dmixed.kernels.term_table.ColumnPlan`: which raw column, or the
        intercept's ones, each column of ``[X y]`` and of ``Z`` is; no variance
        component, no weights) with group ``keys``: the values :meth:`compact` holds of
        the design the columns make, each raw column once."""
        used, x_src, y_src, z_src = cls._plan_sources(plan)
        cols = np.empty((len(used), keys.size)).T
        for i, raw in enumerate(used):
            cols[:, i] = columns[raw]
        return cls(np.asarray(keys), cols, x_src, y_src, z_src, None, std, z_width=z_src.size)

    @staticmethod
    def _plan_sources(plan) -> tuple[list[int], np.ndarray, int, np.ndarray]:
        """``(raw columns held, x_src, y_src, z_src)`` of :meth:`of_columns`: the raw
        columns in the order :meth:`compact` finds them (``exog``'s, ``endog``,
        ``Z``'s)."""
        used: list[int] = []

        def source(raw: int) -> int:
            if raw < 0:
                return -1
            if raw not in used:
                used.append(raw)
            return used.index(raw)

        x_src = np.array([source(raw) for raw in plan.x_of[:-1]], dtype=np.int64)
        y_src = source(plan.x_of[-1])
        z_src = np.array([source(raw) for raw in plan.z_of], dtype=np.int64)
        return used, x_src, y_src, z_src

    @classmethod
    def columns_bytes(cls, keys, plan) -> int:
        """:attr:`nbytes` of :meth:`of_columns` of these rows, without making them."""
        n = len(keys)
        keys = keys if isinstance(keys, pa.Array) else np.asarray(keys)
        return key_bytes(keys) + 8 * n * len(cls._plan_sources(plan)[0])

    @classmethod
    def sent_bytes(cls, keys, dm, ztilde: np.ndarray, sources=None) -> int:
        """:attr:`nbytes` of :meth:`compact` of these rows, without compacting them
        (``sources``: :meth:`sources` of them, where the caller has it)."""
        distinct, *_, vc_pos, vc_val = cls.sources(dm, ztilde) if sources is None else sources
        extra = 0 if dm.weights is None else 8 * keys.size
        if vc_pos is not None:
            extra += vc_pos.nbytes + vc_val.nbytes
        return key_bytes(np.asarray(keys)) + 8 * keys.size * len(distinct) + extra

    @staticmethod
    def sources(dm, ztilde: np.ndarray) -> tuple:
        """``(distinct columns, x_src, y_src, z_src, vc_pos, vc_val)`` of :meth:`compact`
        (the distinct columns are views of the design's)."""
        exog = np.asarray(dm.exog, dtype=np.float64)
        endog = np.asarray(dm.endog, dtype=np.float64)
        z = np.asarray(ztilde, dtype=np.float64)
        q = np.shape(getattr(dm, "exog_re", ztilde))[1]  # none: no variance components
        vc_pos, vc_val = one_entry_per_row(z[:, q:], q)
        if vc_pos is not None:
            z = z[:, :q]
        found = _distinct_sources([exog, endog[:, None], z])
        if found is None:
            return RoutedRows.sources_one_by_one(dm, ztilde)
        distinct, src = found
        p = exog.shape[1]
        return distinct, src[:p], int(src[p]), src[p + 1 :], vc_pos, vc_val

    @staticmethod
    def sources_one_by_one(dm, ztilde: np.ndarray) -> tuple:
        """``(distinct columns, x_src, y_src, z_src, vc_pos, vc_val)`` of :meth:`compact`,
        each column compared with the distinct ones found before it (a key per column
        where the columns are many: :func:`_distinct_sources`)."""
        distinct: list[np.ndarray] = []

        def source(col: np.ndarray) -> int:
            if _is_ones(col):
                return -1
            for i, seen in enumerate(distinct):
                if _same(col, seen):
                    return i
            distinct.append(col)
            return len(distinct) - 1

        exog = np.asarray(dm.exog, dtype=np.float64)
        x_src = np.array([source(exog[:, j]) for j in range(exog.shape[1])], dtype=np.int64)
        y_src = source(np.asarray(dm.endog, dtype=np.float64))
        z = np.asarray(ztilde, dtype=np.float64)
        q = np.shape(getattr(dm, "exog_re", ztilde))[1]  # none: no variance components
        vc_pos, vc_val = one_entry_per_row(z[:, q:], q)
        if vc_pos is not None:
            z = z[:, :q]
        z_src = np.array([source(z[:, a]) for a in range(z.shape[1])], dtype=np.int64)
        return distinct, x_src, y_src, z_src, vc_pos, vc_val

    @property
    def nbytes(self) -> int:
        """Bytes of these rows as sent."""
        extra = 0 if self.weights is None else self.weights.nbytes
        if self.vc_pos is not None:
            extra += self.vc_pos.nbytes + self.vc_val.nbytes
        return key_bytes(self.keys) + int(self.cols.nbytes) + extra

    def _column(self, src: int) -> np.ndarray:
        return np.ones(self.keys.size) if src < 0 else self.cols[:, src]

    @property
    def endog(self) -> np.ndarray:
        return self._column(self.y_src)

    def _matrix(self, srcs: np.ndarray) -> np.ndarray:
        out = np.empty((srcs.size, self.keys.size)).T  # column-major, as the design
        for j, src in enumerate(srcs):
            out[:, j] = 1.0 if src < 0 else self.cols[:, src]
        return out

    @property
    def exog(self) -> np.ndarray:
        return self._matrix(self.x_src)

    @property
    def ztilde(self) -> np.ndarray:
        """The padded random design (n, r), column-major."""
        if self.vc_pos is None:
            return self._matrix(self.z_src)
        q = self.z_src.size
        out = np.zeros((self.z_width, self.keys.size)).T
        out[:, :q] = self._matrix(self.z_src)
        rows = np.flatnonzero(self.vc_pos >= 0)
        out[rows, self.vc_pos[rows]] = self.vc_val[rows]
        return out

    def take(self, pick) -> RoutedRows:
        """The rows at ``pick`` (a slice or positions)."""
        w = None if self.weights is None else self.weights[pick]
        keys = self.keys[pick]
        cols = np.empty((self.cols.shape[1], keys.size)).T
        for i in range(cols.shape[1]):
            cols[:, i] = self.cols[pick, i]
        vc = (None, None) if self.vc_pos is None else (self.vc_pos[pick], self.vc_val[pick])
        return RoutedRows(
            keys, cols, self.x_src, self.y_src, self.z_src, w, self.std, *vc, self.z_width
        )

    @classmethod
    def concat(cls, pieces: list[RoutedRows]) -> RoutedRows:
        """Pieces with the same column sources, one after the other."""
        first = pieces[0]
        if len(pieces) == 1:
            return first
        cols = np.empty((first.cols.shape[1], sum(p.keys.size for p in pieces))).T
        np.concatenate([p.cols for p in pieces], axis=0, out=cols)
        w = None if first.weights is None else np.concatenate([p.weights for p in pieces])
        keys = np.concatenate([p.keys for p in pieces])
        vc = (None, None)
        if first.vc_pos is not None:
            vc = tuple(
                np.concatenate([getattr(p, f) for p in pieces]) for f in ("vc_pos", "vc_val")
            )
        return cls(
            keys, cols, first.x_src, first.y_src, first.z_src, w, first.std, *vc, first.z_width
        )

    @classmethod
    def joined(cls, pieces: list[RoutedRows]) -> RoutedRows:
        """Pieces of the same design's widths (:func:`_joinable`), one after the other,
        with every column of ``[X y]`` and of ``Z`` held as a column of its own (ones
        included: the one layout of pieces whose columns repeat differently); one piece
        as it is.  Each piece's columns are written into the joined rows directly: a
        small piece's (:data:`JOIN_GATHER_AT_MOST`) in one gather, a larger one's column
        by column."""
        first = pieces[0]
        if len(pieces) == 1:
            return first
        p, q = first.x_src.size, first.z_src.size
        cols = np.empty((p + 1 + q, sum(piece.keys.size for piece in pieces))).T
        at = 0
        for piece in pieces:
            rows = cols[at : at + piece.keys.size]
            src = np.concatenate([piece.x_src, [piece.y_src], piece.z_src])
            if rows.size <= JOIN_GATHER_AT_MOST and piece.cols.shape[1]:
                # rows of the transposed layouts are the columns, each copied whole
                rows.T[:] = piece.cols.T[np.maximum(src, 0)]
                rows[:, src < 0] = 1.0
            else:
                for j, s in enumerate(src):
                    rows[:, j] = 1.0 if s < 0 else piece.cols[:, s]
            at += piece.keys.size

        def joined_field(name: str) -> np.ndarray | None:
            if getattr(first, name) is None:
                return None
            return np.concatenate([getattr(piece, name) for piece in pieces])

        return cls(
            np.concatenate([piece.keys for piece in pieces]),
            cols,
            np.arange(p, dtype=np.int64),
            p,
            np.arange(p + 1, p + 1 + q, dtype=np.int64),
            joined_field("weights"),
            first.std,
            vc_pos=joined_field("vc_pos"),
            vc_val=joined_field("vc_val"),
            z_width=first.z_width,
        )

    def same_sources(self, other: RoutedRows) -> bool:
        return (
            np.array_equal(self.x_src, other.x_src)
            and self.y_src == other.y_src
            and np.array_equal(self.z_src, other.z_src)
            and (self.weights is None) == (other.weights is None)
            and (self.vc_pos is None) == (other.vc_pos is None)
            and self.z_width == other.z_width
        )


#: :meth:`RoutedRows.joined` copies a piece of at most this many values (rows × columns)
#: in one gather through a copy of its own, and a larger piece column by column: a
#: column's copy costs a call, which a small piece's few rows do not repay, and a large
#: piece's gathered copy would add its size to the joined rows' memory
JOIN_GATHER_AT_MOST = 1 << 15


#: :func:`_distinct_sources` compares the columns one by one below this many columns
#: (a few comparisons each), and through one key per column from it on (a wide fixed
#: part: a factor of many levels, of which a small partition holds a few)
SOURCES_BY_KEY = 32


def _distinct_sources(mats: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray] | None:
    """``(distinct columns, source of each column)`` of the columns of ``mats`` (each
    (n, m_j), taken one after the other) as :meth:`RoutedRows.sources_one_by_one`
    finds them: −1 for a column of ones, else the position of its value among the
    distinct columns that are not, in the order they first appear.  None where the
    columns are few (:data:`SOURCES_BY_KEY`) or where two columns of one key hold a
    NaN (equal there only as the same memory): the caller compares them one by one.

    A column whose first value no other column has is distinct.  The others are grouped
    by a key (their first value and :func:`column_hashes`: integer sums, so equal
    columns always share a key); the columns of a key are checked equal to its first,
    vectorized, and a key whose columns differ is split exactly by sorting its columns:
    the grouping is exact whatever the keys' collisions.
    """
    n = mats[0].shape[0]
    widths = [m.shape[1] for m in mats]
    if sum(widths) < SOURCES_BY_KEY or n == 0:
        return None
    where = np.repeat(np.arange(len(mats)), widths)
    offset = np.concatenate([[0], np.cumsum(widths)[:-1]])

    def column(j: int) -> np.ndarray:
        return mats[where[j]][:, j - offset[where[j]]]

    def take(js: np.ndarray) -> np.ndarray:
        """Columns ``js`` as one (n, len(js)) array, −0.0 as 0.0 (equal by value)."""
        out = np.empty((js.size, n)).T
        for b, m in enumerate(mats):
            mine = where[js] == b
            if mine.any():
                out[:, mine] = m[:, js[mine] - offset[b]]
        return out + 0.0

    firsts = np.concatenate([m[0] for m in mats]) + 0.0
    ones = np.zeros(firsts.size, dtype=bool)
    maybe = np.flatnonzero(firsts == 1.0)
    if maybe.size:
        ones[maybe] = (take(maybe) == 1.0).all(axis=0)
    live = np.flatnonzero(~ones)
    src = np.full(sum(widths), -1, dtype=np.int64)
    if live.size == 0:
        return [], src
    # a column whose first value no other column has is distinct: only the columns
    # sharing a first value (a factor's zeros) are keyed further
    _, _, label, count = np.unique(
        firsts[live].view(np.uint64), return_index=True, return_inverse=True, return_counts=True
    )
    label = label.reshape(-1)
    shared = np.flatnonzero(count[label] > 1)
    if shared.size:
        mine = take(live[shared])
        if np.isnan(mine).any():
            return None
        keys = np.stack([firsts[live[shared]].view(np.uint64), column_hashes(mine)], axis=1)
        _, head, sub = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        sub = sub.reshape(-1)
        n_sub = head.size
        differ = (mine != mine[:, head[sub]]).any(axis=0)
        for g in np.unique(sub[differ]):
            # a collision of keys: the key's columns sorted and split where they differ
            at = np.flatnonzero(sub == g)
            cols = mine[:, at]
            order = np.lexsort(cols[::-1])
            cols = cols[:, order]
            starts = np.concatenate([[True], (cols[:, 1:] != cols[:, :-1]).any(axis=0)])
            part = np.cumsum(starts) - 1
            sub[at[order]] = np.where(part == 0, g, n_sub + part - 1)
            n_sub += int(part[-1])
        label[shared] = count.size + sub
    _, first, inverse = np.unique(label, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # the columns in the order they first appear
    rank = np.empty(first.size, dtype=np.int64)
    rank[order] = np.arange(first.size)
    src[live] = rank[inverse.reshape(-1)]
    distinct = [column(live[first[g]]) for g in order]
    return distinct, src


def column_hashes(cols: np.ndarray) -> np.ndarray:
    """A hash of each column of ``cols``, the key :func:`_distinct_sources` groups
    columns by.

    Parameters
    ----------
    cols : numpy.ndarray
        (n, m) float64.

    Returns
    -------
    numpy.ndarray
        (m,) uint64: each value's bits mixed, weighted by its row (an odd weight a row)
        and summed, wrapping.  Integer sums do not depend on the order they are taken
        in, so columns of the same bits always hash alike.
    """
    bits = cols.view(np.uint64)
    bits = (bits ^ (bits >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    bits = (bits ^ (bits >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    bits ^= bits >> np.uint64(31)
    rows = np.arange(cols.shape[0], dtype=np.uint64)
    weights = rows * np.uint64(0x9E3779B97F4A7C15) | np.uint64(1)
    return (bits * weights[:, None]).sum(axis=0, dtype=np.uint64)


def coalesced(pieces: Iterable[RoutedRows], k: int) -> Iterator[RoutedRows]:
    """``pieces`` with each run of consecutive pieces of fewer than ``k`` rows joined
    (:meth:`RoutedRows.joined`: one column per design column) until it holds
    ``k`` rows or more; a piece of ``k`` rows or more stays as it is.

    Adding rows to an accumulator costs work in ``k²`` per call (the global sums
    ``[X y]'[X y]`` and the within-group sums, k × k, besides the rows' own products):
    with a wide fixed part and partitions of a few rows, each piece added on its own
    costs ``k²`` for a few rows.  Joined, the square sums are made once per ``k`` rows
    or more.  The rows' per-group sums are the same sums, added in another order.

    The runs are made as they are taken (a generator): a joined run holds every design
    column, so one run (fewer than ``2k`` rows) is held at a time, not all of them.
    """
    run: list[RoutedRows] = []
    run_rows = 0
    for piece in pieces:
        if piece.keys.size >= k:
            if run:
                yield RoutedRows.joined(run)
                run, run_rows = [], 0
            yield piece
            continue
        if run and not _joinable(run[0], piece):
            yield RoutedRows.joined(run)
            run, run_rows = [], 0
        run.append(piece)
        run_rows += piece.keys.size
        if run_rows >= k:
            yield RoutedRows.joined(run)
            run, run_rows = [], 0
    if run:
        yield RoutedRows.joined(run)


def _joinable(a: RoutedRows, b: RoutedRows) -> bool:
    """Whether ``a`` and ``b`` can be joined (:meth:`RoutedRows.joined`): the same widths."""
    return (
        a.x_src.size == b.x_src.size
        and a.z_src.size == b.z_src.size
        and (a.weights is None) == (b.weights is None)
        and (a.vc_pos is None) == (b.vc_pos is None)
        and a.z_width == b.z_width
        and a.keys.dtype == b.keys.dtype
    )


def one_entry_per_row(vc: np.ndarray, q: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The variance-component columns ``vc`` (n, r − q) of a padded design as each row's
    padded column (``q + j``, −1 for none) and value, where no row has two non-zero
    entries; ``(None, None)`` otherwise (or without such columns)."""
    if vc.shape[1] == 0:
        return None, None
    nonzero = vc != 0
    if not (nonzero.sum(axis=1) <= 1).all():
        return None, None
    has = nonzero.any(axis=1)
    col = nonzero.argmax(axis=1)
    val = np.where(has, vc[np.arange(vc.shape[0]), col], 0.0)
    return np.where(has, q + col, -1).astype(np.int64), val


def split_routed(pieces: list[RoutedRows], n_buckets: int) -> list[RoutedRows | None]:
    """Buffered pieces → one :class:`RoutedRows` per bucket (None: no rows there)."""
    runs: list[list[RoutedRows]] = [[]]
    for piece in pieces:  # pieces whose columns repeat differently are kept apart
        if runs[-1] and not runs[-1][0].same_sources(piece):
            runs.append([])
        runs[-1].append(piece)
    out: list[list[RoutedRows]] = [[] for _ in range(n_buckets)]
    for run in runs:
        if not run:
            continue
        rows = RoutedRows.concat(run)
        if n_buckets == 1:
            out[0].append(rows)
            continue
        bucket = bucket_of(rows.keys, n_buckets)
        order = np.argsort(bucket.astype(np.int16), kind="stable")  # a radix sort
        bounds = np.searchsorted(bucket[order], np.arange(n_buckets + 1))
        for b in range(n_buckets):
            if bounds[b + 1] > bounds[b]:
                out[b].append(rows.take(order[bounds[b] : bounds[b + 1]]))
    return [bucket_pieces or None for bucket_pieces in out]


# ---------------------------------------------------------------------------
# One chain's choice
# ---------------------------------------------------------------------------


class DistinctKeys:
    """How many distinct keys were added (a bitmap for small non-negative integers, the
    64-bit hashes of text keys, :func:`~dmixed.engines.dask.text_columns.text_hashes`, in a
    :class:`~dmixed.kernels.text_keys.HashColumns`, a
    set otherwise).  Counted by their hashes, two text keys whose hashes collide count
    once, and a key in partitions counted both ways (a partition whose hash did not run
    compiled, :func:`~dmixed.engines.dask.text_columns.text_hashes`) twice: the count
    is the routing's estimate of a partial's size, never a result."""

    def __init__(self) -> None:
        self.bitmap = np.zeros(0, dtype=bool)
        self.other: set | None = None
        self.hashes: HashColumns | None = None

    def add(self, keys) -> None:
        """Count these keys (numpy, or text keys as an Arrow ``string`` array)."""
        if not len(keys):
            return
        arrow = isinstance(keys, pa.Array)
        if arrow or keys.dtype == object:
            hashes = text_hashes(keys)
            if hashes is not None:
                if self.hashes is None:
                    self.hashes = HashColumns()
                self.hashes.lookup(hashes)
                return
            keys = text_objects(keys)
        if self.other is None and keys.dtype.kind in "iu":
            lo, hi = int(keys.min()), int(keys.max())
            if lo >= 0 and hi < 2**BITMAP_BITS:
                if hi >= self.bitmap.size:
                    grown = np.zeros(max(hi + 1, self.bitmap.size * 5 // 4), dtype=bool)
                    grown[: self.bitmap.size] = self.bitmap
                    self.bitmap = grown
                self.bitmap[keys] = True
                return
        if self.other is None:
            self.other = set(np.flatnonzero(self.bitmap).tolist())
        self.other.update(pd.unique(keys).tolist())

    @property
    def count(self) -> int:
        n = int(np.count_nonzero(self.bitmap)) if self.other is None else len(self.other)
        return n + (0 if self.hashes is None else len(self.hashes))


@dataclass
class PendingRows:
    """Rows a chain routes, held as the design gave them (``dm``, ``ztilde``) or as
    their raw ``columns`` (``plan``, a :class:`~dmixed.kernels.term_table.ColumnPlan`;
    ``dm`` and ``ztilde`` None): compacted (:meth:`RoutedRows.compact`,
    :meth:`RoutedRows.of_columns`) only when they are sent, and added to the chain's own
    accumulator as they are when it switches to a partial (no copy either way)."""

    keys: np.ndarray
    dm: object
    ztilde: np.ndarray | None
    std: Standardization | None
    columns: list | None = None
    plan: object = None
    #: :meth:`RoutedRows.sources` of ``dm`` and ``ztilde``, found once for the bytes
    #: they will be sent as and kept for their compact form
    sources: tuple | None = None

    def routed(self) -> RoutedRows:
        """These rows in compact form."""
        if self.columns is not None:  # text keys read as Arrow are sent as objects
            keys = text_objects(self.keys)
            return RoutedRows.of_columns(keys, self.columns, self.plan, self.std)
        return RoutedRows.compact(self.keys, self.dm, self.ztilde, self.std, self.sources)


@dataclass
class Router:
    """One chain's exchange (module doc): route rows until a partial is fewer bytes.

    Parameters
    ----------
    mode : {"auto", "partials", "rows"}
        :func:`exchange_mode`.
    width : int
        Columns of a packed row.
    """

    mode: str
    width: int
    buffer: list = field(default_factory=list)
    rows_bytes: int = 0
    seen: DistinctKeys = field(default_factory=DistinctKeys)
    key_size: int = 8
    #: ``(rows' bytes, partial's bytes)`` when the chain switched to its partial
    switched: tuple[int, int] | None = None
    #: bytes of a group's row in the partial, the key aside (None: ``8 · width``, a
    #: packed row; the chain sets it from its first rows, whose partial may be rows of
    #: terms, fewer bytes)
    row_bytes: int | None = None
    #: how a chain of an earlier pass over the same inputs ended (:meth:`outcome`,
    #: :class:`Decisions`): the chain starts in that form, without routing to find it
    recalled: tuple[str, tuple[int, int]] | None = None

    def __post_init__(self) -> None:
        self.routing = self.mode != "partials"
        if self.mode != "auto":
            self.recalled = None
        if self.recalled is not None and self.recalled[0] == "partials":
            self.routing = False
            self.switched = self.recalled[1]

    def reason(self) -> str:
        """Why the chain sends what it sends, for the engine's log."""
        if self.mode != "auto":
            return f"dmixed.exchange={self.mode!r}"
        if self.recalled is not None:
            form, (rows, partial) = self.recalled
            if form == "partials":
                return (
                    f"partial ({partial / 1e6:.0f} MB) fewer bytes than the rows "
                    f"({rows / 1e6:.0f} MB and growing) in an earlier pass over the same files"
                )
            return (
                f"rows ({rows / 1e6:.0f} MB) fewer bytes than a partial "
                f"({partial / 1e6:.0f} MB) in an earlier pass over the same files"
            )
        if self.switched is not None:
            rows, partial = self.switched
            return (
                f"partial ({partial / 1e6:.0f} MB) fewer bytes than the rows "
                f"({rows / 1e6:.0f} MB and growing)"
            )
        return (
            f"rows ({self.rows_bytes / 1e6:.0f} MB) fewer bytes than a partial "
            f"({self.partial_estimate / 1e6:.0f} MB)"
        )

    def take(self, keys: np.ndarray, dm, ztilde: np.ndarray, std) -> bool:
        """Buffer these rows when routing (True), else leave them to the caller."""
        if not self.routing:
            return False
        sources = RoutedRows.sources(dm, ztilde)
        pending = PendingRows(keys, dm, ztilde, std, sources=sources)
        self._buffered(pending, RoutedRows.sent_bytes(keys, dm, ztilde, sources))
        return True

    def take_columns(self, keys: np.ndarray, columns: list, plan, std) -> bool:
        """:meth:`take` of rows given as their raw ``columns`` (``plan``, a
        :class:`~dmixed.kernels.term_table.ColumnPlan`), every value finite."""
        if not self.routing:
            return False
        pending = PendingRows(keys, None, None, std, columns, plan)
        self._buffered(pending, RoutedRows.columns_bytes(keys, plan))
        return True

    def _buffered(self, pending: PendingRows, sent: int) -> None:
        keys = pending.keys
        self.buffer.append(pending)
        self.rows_bytes += sent
        if self.recalled is not None:  # rows to the end: no partial to estimate
            return
        arrow = isinstance(keys, pa.Array)
        self.seen.add(keys if arrow else np.asarray(keys))
        text = arrow or keys.dtype == object
        self.key_size = OBJECT_KEY_BYTES if text else keys.dtype.itemsize

    @property
    def partial_estimate(self) -> int:
        """Bytes of the partial of the groups seen so far."""
        row = 8 * self.width if self.row_bytes is None else self.row_bytes
        return self.seen.count * (self.key_size + row)

    def switch(self) -> list[PendingRows]:
        """The buffered rows to accumulate here when a partial is now the cheaper form
        (and stop routing); else an empty list."""
        if not self.routing or self.mode == "rows" or self.recalled is not None:
            return []
        if not partial_is_cheaper(self.rows_bytes, self.partial_estimate):
            return []
        self.routing = False
        self.switched = (self.rows_bytes, self.partial_estimate)
        buffered, self.buffer = self.buffer, []
        return buffered

    def outcome(self) -> tuple[str, tuple[int, int]] | None:
        """How this chain ended, for a later chain of the same inputs (:attr:`recalled`):
        ``(form, (rows' bytes, partial's bytes))``; None where nothing was decided here
        (a forced form, or a decision itself recalled)."""
        if self.mode != "auto" or self.recalled is not None:
            return None
        if self.switched is not None:
            return "partials", self.switched
        return "rows", (self.rows_bytes, self.partial_estimate)

    def result(self, n_buckets: int) -> list[RoutedRows | None]:
        """The rows routed to each bucket (None everywhere when not routing)."""
        if not self.routing or not self.buffer:
            return [None] * n_buckets
        compacted = []
        while self.buffer:  # each one's design rows released once compacted
            compacted.append(self.buffer.pop(0).routed())
        return split_routed(compacted, n_buckets)


class Decisions:
    """How the chains of this process's passes ended (:meth:`Router.outcome`), by their
    inputs (:func:`decision_key`): the module doc says why a chain of the same inputs
    may start in that form.  At most :data:`DECISIONS_KEPT`, the oldest dropped first."""

    def __init__(self, kept: int = DECISIONS_KEPT) -> None:
        self.kept = kept
        self.entries: dict = {}
        # A worker's threads run chains at once: eviction iterates the dict, which
        # another thread's insertion would change under it.
        self.lock = threading.Lock()

    def recall(self, key) -> tuple[str, tuple[int, int]] | None:
        """The outcome recorded for ``key`` (None: none, or no key)."""
        if key is None:
            return None
        with self.lock:
            return self.entries.get(key)

    def record(self, key, router: Router) -> None:
        """Keep how ``router``'s chain ended, for ``key`` (nothing without a key or an
        outcome)."""
        outcome = router.outcome()
        if key is None or outcome is None:
            return
        with self.lock:
            self.entries.pop(key, None)
            self.entries[key] = outcome
            while len(self.entries) > self.kept:
                self.entries.pop(next(iter(self.entries), None), None)


#: This process's :class:`Decisions` (the chains of a cluster's worker, or those run in
#: the driver's process).
DECISIONS = Decisions()


def decision_key(reads: ParquetReads | None, *inputs) -> bytes | None:
    """What a chain's exchange decision depends on: a digest of its files as read
    (:func:`~dmixed.engines.dask.parquet_direct.files_identity`: path, row groups,
    columns, size, inode, modification and change times) and the other ``inputs`` (the
    model, the layout, the columns' map, …) pickled; None where not every partition is
    such a file, or the inputs do not pickle (the chain then decides as it reads).  A
    digest, so that an entry of :class:`Decisions` holds the same few bytes however many
    reads the chain has."""
    files = files_identity(reads)
    if files is None:
        return None
    try:
        pickled = pickle.dumps((files, inputs), protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError, ValueError):
        return None
    return hashlib.blake2b(pickled, digest_size=16).digest()


def exchange_report(parts: list, routed: list, why: str = "") -> dict:
    """What one task sends to the bucket nodes: ``{"form": "rows" | "partials",
    "bytes": [per bucket], "why": why, "routed_rows": rows sent as rows}`` (``why``:
    :meth:`Router.reason`, or empty; the routed rows are in no global sums of the task's
    own, :func:`~dmixed.engines.dask.checks.rows_checked` counts them)."""
    sizes = []
    n_routed = 0
    for part, rows in zip(parts, routed, strict=True):
        size = partial_bytes(part)
        if rows is not None:
            size += sum(piece.nbytes for piece in rows)
            n_routed += sum(int(piece.keys.size) for piece in rows)
        sizes.append(size)
    form = "rows" if any(rows is not None for rows in routed) else "partials"
    return {"form": form, "bytes": sizes, "why": why, "routed_rows": n_routed}


def exchange_summary(*reports: dict) -> dict:
    """The reports of all tasks: ``{"bytes": total, "rows": tasks that routed rows,
    "partials": tasks that sent partials, "why": the first task's reason of each form}``."""
    why = {}
    for r in reports:
        if r.get("why"):
            why.setdefault(r["form"], f"{r['form']}: {r['why']}")
    return {
        "bytes": int(sum(sum(r["bytes"]) for r in reports)),
        "rows": sum(r["form"] == "rows" for r in reports),
        "partials": sum(r["form"] == "partials" for r in reports),
        "why": "; ".join(why.values()) or "one task a partition: partials",
    }


# ---------------------------------------------------------------------------
# The owner of a bucket
# ---------------------------------------------------------------------------


def reduce_routed(
    packed: PackedLayout, key_dtype, column: str, vc_widths: tuple, shifts: bool, *routed
) -> tuple[Partial, np.ndarray, Standardization | None]:
    """The rows every chain routed to one bucket, reduced to a partial with the per-row
    kernel: ``(partial, packed global sums, map)``, as a chain's output.

    ``routed`` are the chains' lists of :class:`RoutedRows` for this bucket (or None);
    all rows are added into one :class:`~dmixed.engines.dask.combine.GroupAccumulator`
    in the map of the first piece, as a chain adds its partitions (``shifts``: as the
    chains', :func:`~dmixed.engines.dask.partials.accumulate_frames`); runs of pieces
    of fewer rows than ``[X y]`` has columns are added joined (:func:`coalesced`).
    ``column``: the group column, for messages.
    """
    pieces = [p for chain in routed if chain is not None for p in chain if p.keys.size]
    if not pieces:
        empty = (np.empty(0, dtype=key_dtype), np.empty((0, packed.width)))
        return empty, packed.empty_global(), None
    acc = GroupAccumulator(packed.width, key_dtype, shifts)
    glob = packed.empty_global()
    std = pieces[0].std
    for piece in coalesced(pieces, packed.k):
        keys = acc.conform(piece.keys, column)
        sums = acc.add(keys, piece, piece.ztilde, std, vc_widths)
        glob += packed.pack_global(sums)
    (partial,) = acc.result(1)
    return partial, glob, std
