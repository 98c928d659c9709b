"""The Dask data pass of variance components held ragged: no padded design, no ``r × r``.

Where no row has two variance-component entries (the VC prepass says so,
:func:`slot_plan`) and the layout allows the structured engine
(:func:`~dmixed.engines.dask.data_pass.pass_layout`), every partition is summed as the
in-process pass sums its rows (:func:`~dmixed.kernels.vc_blocks.ragged_statistics`),
and its partial is kept in two kinds of keyed table instead of one padded packed row per
group (:class:`RaggedPacked`):

- the groups: ``(group keys, packed rows of exog_re)``, the layout of a model without
  variance components (``PackedLayout(q, k)``: row count, ``A_i``, ``F1_i``);
- per component ``l``, its cells: ``(pair index, packed rows of [exog_re, v])``, one row
  per (group, slot) a partition has (``PackedLayout(q + 1, k)``; only the last column's
  entries are used: the slot's ``d``, border ``b`` and ``F2`` row).  The key is the
  pair's index in the slot map's sorted pair keys of the component
  (:class:`~dmixed.stats.slots.SlotMap`), the same in every partition.

Both kinds are added by key with the combine functions of the padded pass
(:func:`~dmixed.engines.dask.combine.combine_converted`, each table converted from its
task's column map with the map's own rule: the cells take their component's scale), a
cell going to the bucket of its group, and a block becomes
:class:`~dmixed.kernels.vc_blocks.RaggedVC` (:func:`to_ragged_block`).  Sizes per group
``O(q (q + k) + m_i (q + k))`` instead of ``O(r (r + k))``; nothing ``n × r``.  Rows are
never routed in this form (its partials are no wider than the rows).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...kernels.vc_blocks import RaggedVC, ragged_statistics
from ...stats.keys import learned, settled_keys, settled_kind
from ...stats.packed import PackedLayout
from ...stats.slots import SlotMap
from ...stats.standardize import Standardization
from .blocks import Block, to_block
from .combine import bucket_of, combine_converted, combine_partials
from .crossed import convert_cross, cross_rows, crossed_block
from .routing import partial_bytes

#: Pending partials of a bucket a chain adds up at once (a bound on what it holds).
MERGE_EVERY = 8

Table = tuple[np.ndarray, np.ndarray]  # (keys, packed rows)


@dataclass(frozen=True)
class RaggedPacked:
    """The layout of ragged partials: ``q`` columns of ``exog_re``, ``k = p + 1``, the
    components' slot counts ``widths`` (``Layout.vc_widths``).  Components sharing rows
    (:mod:`~dmixed.engines.dask.crossed`): ``diagonal`` the components whose slots form
    the diagonal block, ``pair_counts`` each component's pairs in the slot map; the
    partials then carry one more table, the co-occurrence sums."""

    q: int
    k: int
    widths: tuple[int, ...]
    diagonal: tuple[int, ...] = ()
    pair_counts: tuple[int, ...] = ()

    @property
    def crossed(self) -> bool:
        """Whether the components share rows (held as ``CrossedVC``)."""
        return bool(self.diagonal)

    @property
    def r(self) -> int:
        """Columns of the padded random design (never formed)."""
        return self.q + int(sum(self.widths))

    @functools.cached_property
    def group(self) -> PackedLayout:
        """The groups' table: ``exog_re`` against itself and ``[X y]``."""
        return PackedLayout(self.q, self.k)

    @functools.cached_property
    def cell(self) -> PackedLayout:
        """A cell's table: ``[exog_re, v]`` against itself and ``[X y]``."""
        return PackedLayout(self.q + 1, self.k)

    @property
    def offsets(self) -> np.ndarray:
        """First padded column of each component."""
        return self.q + np.concatenate([[0], np.cumsum(self.widths)[:-1]]).astype(np.int64)

    def empty(self, key_dtype) -> tuple[Table, ...]:
        """A bucket's tables of no groups."""
        groups = (np.empty(0, dtype=key_dtype), np.empty((0, self.group.width)))
        cells = [(np.empty(0, dtype=np.int64), np.empty((0, self.cell.width)))] * len(self.widths)
        cross = [(np.empty(0, dtype=np.int64), np.empty((0, 1)))] if self.crossed else []
        return (groups, *cells, *cross)


def rows_overlap(vc_cols: list[np.ndarray], vc_vals: list[np.ndarray]) -> bool:
    """Whether some row has two variance-component entries (in one component or two)."""
    if not vc_cols:
        return False
    count = sum(((c >= 0) & (v != 0)).sum(axis=1) for c, v in zip(vc_cols, vc_vals, strict=True))
    return bool(np.any(count > 1))


def component_map(std: Standardization | None, ell: int, n_comp: int):
    """The columns' map of ``[exog_re, component ell's entry]`` (what its cells are in)."""
    if std is None:
        return None
    scales = std.vc_scales(n_comp)
    return dataclasses.replace(std, vc_scale=scales[ell : ell + 1])


# ---------------------------------------------------------------------------
# One partition
# ---------------------------------------------------------------------------


def ragged_rows(dm, keys: np.ndarray, slot_map: SlotMap, rp: RaggedPacked, std, n_buckets: int):
    """One partition's rows (design matrices ``dm``, group ``keys``) summed ragged:
    ``(per bucket its tables, global sums dict)``."""
    codes, uniq = pd.factorize(keys)
    uniq = np.asarray(uniq)
    slots = slot_map.lookup(keys, dm.vc_cols, dm.vc_vals)
    rv, base = ragged_statistics(
        codes,
        uniq.size,
        dm.endog,
        dm.exog,
        dm.exog_re,
        slots,
        dm.vc_vals,
        rp.widths,
        dm.weights,
        std,
    )
    groups = rp.group.pack(base["nobs"], rv.a, rv.f1)
    gid = slot_map.group_ids(uniq)
    bucket = bucket_of(uniq, n_buckets)
    cells = []
    for ell in range(len(rp.widths)):
        sel = np.flatnonzero(rv.comp == ell)
        g = gid[rv.group[sel]]
        pair_keys, ncols = slot_map.pair_keys[ell], slot_map.ncols[ell]
        index = np.searchsorted(pair_keys, g * ncols) + (rv.pos[sel] - rp.offsets[ell])
        cells.append((index.astype(np.int64), cell_rows(rp, rv, sel), bucket[rv.group[sel]]))
    if rp.crossed:  # the co-occurrence sums: one more table
        cells.append(
            cross_rows(
                keys, bucket[codes], slots, dm.vc_vals, dm.weights, std, slot_map, rp.pair_counts
            )
        )
    parts = []
    for b in range(n_buckets):
        pick = bucket == b
        tables = [(uniq[pick], groups[pick])]
        tables += [(idx[bk == b], rows[bk == b]) for idx, rows, bk in cells]
        parts.append(tuple(tables))
    glob = {k: base.get(k) for k in ("xyxy", "n", "sum_log_weights", "column_sums")}
    glob["within"] = None  # as the padded pass: the profile reads none with components
    return parts, glob


def cell_rows(rp: RaggedPacked, rv: RaggedVC, sel: np.ndarray) -> np.ndarray:
    """Packed rows of the slots ``sel`` of ``rv`` in the cells' layout (the
    ``exog_re`` block, which the cells do not need, left zero; count column 1)."""
    q, n = rp.q, sel.size
    zz = np.zeros((n, q + 1, q + 1))
    zxy = np.zeros((n, q + 1, rp.k))
    zz[:, :q, q] = zz[:, q, :q] = rv.b[sel]
    zz[:, q, q] = rv.d[sel]
    zxy[:, q, :] = rv.f2[sel]
    return rp.cell.pack(np.ones(n), zz, zxy)


def tables_bytes(tables: tuple[Table, ...]) -> int:
    """Bytes of a bucket's tables as sent."""
    return sum(partial_bytes(t) for t in tables)


# ---------------------------------------------------------------------------
# Adding tables
# ---------------------------------------------------------------------------


def combine_tables(*parts: tuple[Table, ...]) -> tuple[Table, ...]:
    """Tables of one column map added by key (:func:`combine_partials` on each kind)."""
    return tuple(combine_partials(*[p[j][:2] for p in parts]) for j in range(len(parts[0])))


def combine_tables_converted(
    target: Standardization, rp: RaggedPacked, *pairs: tuple[tuple[Table, ...], object]
) -> tuple[Table, ...]:
    """``(tables, map)`` pairs, each converted to ``target``'s map, added by key
    (:func:`~dmixed.engines.dask.combine.combine_converted` on each kind: the groups'
    in the ``exog_re`` map, component ``l``'s cells in :func:`component_map`)."""
    n_comp = len(rp.widths)
    keys, values, _ = combine_converted(target, rp.group, (), *[(t[0], m) for t, m in pairs])
    out = [(keys, values)]
    for ell in range(n_comp):
        cell_target = component_map(target, ell, n_comp)
        cell_pairs = [(t[1 + ell], component_map(m, ell, n_comp)) for t, m in pairs]
        keys, values, _ = combine_converted(cell_target, rp.cell, (1,), *cell_pairs)
        out.append((keys, values))
    if rp.crossed:
        cross = [convert_cross(t[-1][:2], m, target, rp.pair_counts) for t, m in pairs]
        out.append(combine_partials(*cross))
    return tuple(out)


def combine_tables_node(target, rp: RaggedPacked, *parts):
    """An upper node of a bucket's tree (tables already in ``target``'s map)."""
    return combine_tables(*parts)


class RaggedAccumulator:
    """A chain's ragged partials per bucket, added up every :data:`MERGE_EVERY`
    partitions (so a chain holds a bucket's sums and a few partitions' tables)."""

    def __init__(self, rp: RaggedPacked, n_buckets: int, key_dtype, column: str) -> None:
        self.key_dtype = np.dtype(key_dtype)
        self.column = column  # the group column, for messages
        self.pending = [[rp.empty(self.key_dtype)] for _ in range(n_buckets)]
        # keys' kind learned from the data (stats.keys.LEARNED_KEYS): settled by the
        # first tables, integers with floats float64 (the tables held cast)
        self.learned = learned(self.key_dtype)

    def add(self, parts: list) -> None:
        """One partition's tables per bucket (in the chain's map)."""
        if self.learned and parts:
            self._settle(parts[0][0][0])
        for b, tables in enumerate(parts):
            keys = tables[0][0]
            if keys.dtype != self.key_dtype:
                keys = (
                    settled_keys(keys, self.key_dtype, self.column)
                    if self.learned
                    else keys.astype(self.key_dtype)
                )
                tables = ((keys, tables[0][1]), *tables[1:])
            self.pending[b].append(tables)
            if len(self.pending[b]) > MERGE_EVERY:
                self.pending[b] = [combine_tables(*self.pending[b])]

    def _settle(self, keys: np.ndarray) -> None:
        """The keys' dtype of the tables held and to come, given ``keys`` of a partition
        (:func:`~dmixed.stats.keys.settled_kind`)."""
        if learned(self.key_dtype):
            want = keys.dtype
        else:
            want = settled_kind(self.key_dtype, keys, self.column)
        if want == self.key_dtype:
            return
        self.key_dtype = want
        self.pending = [
            [((settled_keys(t[0][0], want, self.column), t[0][1]), *t[1:]) for t in pending]
            for pending in self.pending
        ]

    def result(self) -> list:
        """The chain's tables per bucket."""
        return [combine_tables(*p) for p in self.pending]


# ---------------------------------------------------------------------------
# A block
# ---------------------------------------------------------------------------


def to_ragged_block(
    combined: tuple[Table, ...],
    rp: RaggedPacked,
    slot_map: SlotMap,
    global_sums: np.ndarray | None = None,
    standardization: Standardization | None = None,
    exchange: dict | None = None,
) -> Block:
    """The :class:`~dmixed.engines.dask.blocks.Block` of a bucket's added tables, its
    statistics :class:`~dmixed.kernels.vc_blocks.RaggedVC` (``Block.ragged``; groups in
    the order of the groups' table, slots by (group, column)).

    Raises
    ------
    RuntimeError
        A cell whose group is not in the bucket (an internal error).
    """
    groups = combined[0][:2]
    block = to_block(groups, rp.group, global_sums, standardization, exchange)
    labels = pd.Index(groups[0])
    parts = []
    cell_tables = combined[1 : 1 + len(rp.widths)]
    for ell, (index, values) in enumerate(t[:2] for t in cell_tables):
        gid = slot_map.pair_keys[ell][index] // slot_map.ncols[ell]
        where = labels.get_indexer(slot_map.groups[gid]) if index.size else index
        if np.any(where < 0):
            raise RuntimeError("internal error: a variance-component cell without its group")
        key = where.astype(np.int64) * rp.r + rp.offsets[ell] + slot_map.pair_slots[ell][index]
        order = np.argsort(key, kind="stable")
        key, rows = key[order], values[order]
        zz, zxy, q = rp.cell.unpack_zz(rows), rp.cell.unpack_zxy(rows), rp.q
        # RaggedVC.from_cells' cell tuple: (group, column, d, b, F2, l)
        parts.append((key // rp.r, key % rp.r, zz[:, q, q].copy(), zz[:, :q, q], zxy[:, q], ell))
    base = {"zz": block.zz, "zxy": np.ascontiguousarray(block.zxy)}
    ragged = RaggedVC.from_cells(base, parts, rp.q, rp.r, rp.offsets)
    if rp.crossed:
        crossed = crossed_block(
            ragged, groups[0], combined[-1][:2], slot_map, rp.pair_counts, rp.diagonal
        )
        return dataclasses.replace(block, zz=None, zxy=None, within=None, crossed=crossed)
    return dataclasses.replace(block, zz=None, zxy=None, within=None, ragged=ragged)
