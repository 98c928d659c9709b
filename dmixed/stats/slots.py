"""Variance-component slots: which column of a component each group's slot holds.

A variance component ``l`` (``{"cask": "0 + C(cask)"}``) has many global columns, but a
group only uses the few that are non-zero on its rows.  Within a group, those columns are
numbered ``0, 1, …`` in increasing column order (:func:`number_pairs`, the one place
this rule is written); the other columns are identically zero in the group and
contribute nothing to the likelihood (DESIGN.md §2, padding is exact), so they get no
slot.  Component ``l`` then takes ``m_l`` columns of the padded random design ``Z̃``,
``m_l`` being the most slots any group needs.

A (group, column) pair is one int64 key, ``group * ncols + column``: sorted keys list a
group's columns in increasing order.  The slot table (G, m_l) of global column ids
(``-1``: unused slot) is what the statistics keep and the checkpoints save
(:func:`slot_table`).  :func:`assign_vc_slots`/:func:`lookup_vc_slots` number the pairs
of rows held in one process; :class:`SlotMap` holds a numbering made from the pairs of
all partitions, by group key, for an engine that reads the rows in pieces.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .constant import constant_value


def present_pairs(codes: np.ndarray, cols: np.ndarray, vals: np.ndarray, ncols: int) -> np.ndarray:
    """Sorted distinct keys ``code * ncols + col`` of the entries that are present.

    Parameters
    ----------
    codes : ndarray of int, shape (n,)
        Group code of every row.
    cols : ndarray of int, shape (n, k)
        Global column index of each sparse entry of the row, ``-1`` for none.
    vals : ndarray of float, shape (n, k)
        Value of each entry (a zero is no entry).
    ncols : int
        The key multiplier: more than the largest column index, at least 1.
    """
    present = (cols >= 0) & (vals != 0)
    rows = np.broadcast_to(codes[:, None], cols.shape)[present].astype(np.int64)
    return np.unique(rows * ncols + cols[present].astype(np.int64))


def number_pairs(pair_keys: np.ndarray, ncols: int) -> tuple[np.ndarray, int]:
    """Slot of each (group, column) pair: the rank of the column within its group.

    Parameters
    ----------
    pair_keys : ndarray of int64, shape (u,)
        Sorted distinct pair keys ``group * ncols + column``.
    ncols : int
        Their multiplier.

    Returns
    -------
    pair_slots : ndarray of int64, shape (u,)
        ``0, 1, …`` within each group, in increasing column order.
    width : int
        The largest number of slots any group needs (0 without pairs).
    """
    if pair_keys.size == 0:
        return pair_keys.copy(), 0
    return _rank_in_group(pair_keys // ncols)


def _rank_in_group(pair_group: np.ndarray) -> tuple[np.ndarray, int]:
    """Each pair's position among its group's pairs (``pair_group`` sorted, int64) and
    the most pairs of any group: the slot rule of :func:`number_pairs`."""
    if pair_group.size == 0:
        return np.zeros(0, dtype=np.int64), 0
    first = np.flatnonzero(np.r_[True, pair_group[1:] != pair_group[:-1]])
    runs = np.diff(np.append(first, pair_group.size))
    return np.arange(pair_group.size) - np.repeat(first, runs), int(runs.max())


def slot_table(
    pair_keys: np.ndarray,
    pair_slots: np.ndarray,
    ncols: int,
    width: int,
    n_groups: int,
    group_position: np.ndarray | None = None,
) -> np.ndarray:
    """(G, width) int64 table of the global column in every slot of every group, ``-1``
    for an unused slot.

    Row ``g`` is group ``pair_key // ncols``, or ``group_position[pair_key // ncols]``
    when the pairs number their groups otherwise than the table's rows.
    """
    table = np.full((n_groups, width), -1, dtype=np.int64)
    group = pair_keys // ncols
    table[group if group_position is None else group_position[group], pair_slots] = (
        pair_keys % ncols
    )
    return table


def table_pairs(table: np.ndarray, ncols: int) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of :func:`slot_table` (rows numbering the groups): the sorted pair keys
    ``group * ncols + column`` of a (G, width) slot table and the slot of each."""
    gi, si = np.nonzero(table >= 0)
    keys = gi.astype(np.int64) * ncols + table[gi, si]
    order = np.argsort(keys, kind="stable")
    return keys[order], si[order].astype(np.int64)


def assign_vc_slots(
    codes: np.ndarray, cols: np.ndarray, vals: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """Give every (group, variance-component column) pair present in a group a slot.

    Within a group, the columns of one variance component that are non-zero on at
    least one of its rows are numbered ``0, 1, …`` in increasing column order
    (:func:`number_pairs`).  ``codes``, ``cols`` and ``vals`` as in
    :func:`present_pairs`.

    Returns
    -------
    pair_keys : ndarray of int64, shape (u,)
        Sorted keys ``code * ncols + col`` of the pairs present (``ncols`` = the largest
        column index + 1).
    pair_slots : ndarray of int64, shape (u,)
        Slot of each pair within its group.
    width : int
        The largest number of slots any group needs.
    """
    ncols = int(cols.max()) + 1 if cols.size else 0
    keys = present_pairs(codes, cols, vals, max(ncols, 1))
    slots, width = number_pairs(keys, max(ncols, 1))
    return keys, slots, width


def number_vc_entries(
    codes: np.ndarray, cols: np.ndarray, vals: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """:func:`assign_vc_slots` and the pair of every entry, in one numbering of the rows
    held in this process (what :func:`lookup_vc_slots` would find, without a search).

    ``codes`` (n,) number the groups ``0 … n_groups-1``; ``cols``, ``vals`` as in
    :func:`present_pairs`.  See :func:`number_vc_cells`, which this returns in part.

    Returns
    -------
    pair_keys, pair_slots, width
        As :func:`assign_vc_slots`.
    entry_pair : ndarray of int64, shape (n, k)
        Index in ``pair_keys`` of every entry, ``-1`` where it is absent or zero (its
        slot is ``pair_slots[entry_pair]``).
    """
    num = number_vc_cells(codes, cols, vals, n_groups)
    return num.pair_keys, num.pair_slots, num.width, num.entry_pair


@dataclass
class VCNumbering:
    """One variance component's (group, column) pairs in the rows held in this process,
    numbered (:func:`number_vc_cells`): the pairs sorted by key ``group * ncols +
    column``, each pair's slot (:func:`number_pairs`' rule) and every entry's pair.

    Attributes
    ----------
    pair_keys, pair_group, pair_col, pair_slots : ndarray of int64, shape (u,)
        Each pair's key, group, column and slot within its group.
    width : int
        The largest number of slots any group needs (0 without pairs).
    entry_pair : ndarray of int64, shape (n, k)
        Index of every entry's pair, ``-1`` where the entry is absent or zero.
    complete : bool
        Whether every entry is present (no ``-1`` in ``entry_pair``).
    """

    pair_keys: np.ndarray
    pair_group: np.ndarray
    pair_col: np.ndarray
    pair_slots: np.ndarray
    width: int
    entry_pair: np.ndarray
    complete: bool = False

    def entry_slots(self) -> np.ndarray:
        """(n, k) slot of every entry, ``-1`` where there is none."""
        if self.complete:
            return self.pair_slots[self.entry_pair]
        out = np.full(self.entry_pair.shape, -1, dtype=np.int64)
        found = self.entry_pair >= 0
        out[found] = self.pair_slots[self.entry_pair[found]]
        return out

    def table(self, n_groups: int) -> np.ndarray:
        """The (n_groups, width) :func:`slot_table` of these pairs."""
        if self.pair_col.size == n_groups * self.width:  # every group uses every slot
            return self.pair_col.reshape(n_groups, self.width).copy()
        table = np.full(n_groups * self.width, -1, dtype=np.int64)
        flat = self.pair_group * self.width
        flat += self.pair_slots
        table[flat] = self.pair_col  # (a flat index: numpy's one-dimensional path)
        return table.reshape(n_groups, self.width)


#: the pairs are numbered by column (:func:`_nested_pairs`) first where the span of the
#: keys ``group * ncols + col`` is more than this many times the entries and columns
NESTED_ABOVE = 8


def _nested_pairs(rows: np.ndarray, cols: np.ndarray, ncols: int):
    """Where every column has entries in one group only (a component nested in the
    groups: students within schools), the pairs sorted by key (each one's group and
    column) and every entry's pair, from a table by column, in time linear in the
    entries and columns (not in groups × columns); None where a column has entries in
    two groups.  ``rows``, ``cols``: each entry's group and column (int64).

    Each column's group is written at the column (the last entry's); each used column's
    pair and group are then packed in one number, ``pair << bits | group``, read back at
    every entry once: its pair, and the check that its column's group is its own."""
    group_of_col = np.full(ncols, -1, dtype=np.int64)
    group_of_col[cols] = rows
    used = np.flatnonzero(group_of_col >= 0)
    groups = group_of_col[used]
    top = int(groups.max()) if groups.size else 0
    small = np.uint16 if top < 1 << 16 else np.int64
    order = np.argsort(groups.astype(small, copy=False), kind="stable")  # by group, then col
    used = used[order]
    bits = max(top.bit_length(), 1)
    packed = np.empty(ncols, dtype=np.int64)  # read only where written (the used columns)
    packed[used] = np.arange(used.size) << bits
    packed |= group_of_col  # (where unused: never read)
    found = packed[cols]
    pair = found >> bits
    found &= (1 << bits) - 1  # the column's group (< 2**bits; rows' groups are >= 0)
    if not np.array_equal(found, rows):
        return None
    return groups[order], used, pair


def number_vc_cells(
    codes: np.ndarray,
    cols: np.ndarray,
    vals: np.ndarray,
    n_groups: int,
    nested: Callable | None = None,
) -> VCNumbering:
    """Number one component's (group, column) pairs and find every entry's pair, in time
    linear in the entries: for a component nested in the groups whose keys ``code *
    ncols + col`` span far more than the entries, by column (:func:`_nested_pairs`);
    else, where the entries come in order of their keys (rows sorted by group, then
    column), from the runs of equal keys (:func:`_runs`: no table, no read back; every
    entry's pair its key where the keys run through every one, :func:`_full_grid`);
    else, where the keys span at most a few times the entries (plus 2^20), the keys seen
    are marked in a bitmap and listed in order, and each entry's pair read back from the
    list's positions written at those keys (no sort, no pass over the span but the one
    listing it) — or, where every key is seen (every group has every column, a balanced
    crossed design), each entry's pair is its key (:func:`_full_grid`: no listing, no
    read back); otherwise :func:`numpy.unique`.  The pairs and slots are those of
    :func:`assign_vc_slots`.

    Parameters
    ----------
    codes : ndarray of int, shape (n,)
        Group of every row, ``0 … n_groups-1``.
    cols, vals : ndarray, shape (n, k)
        As :func:`present_pairs`.
    n_groups : int
        The number of groups.
    nested : callable or None
        What numbers a nested component in place of :func:`_nested_pairs`: called as
        ``nested(rows, cols, ncols, n_groups)`` (each entry's group and column), it
        returns what :func:`_nested_pairs` returns (the compiled numbering,
        :func:`dmixed.kernels.compiled.nested_numbering`).  None: :func:`_nested_pairs`.
    """
    ncols = max(int(cols.max()) + 1 if cols.size else 0, 1)
    codes = np.asarray(codes, dtype=np.int64)
    # every entry present (one indicator per row, say): no masks, no masked copies
    everywhere = cols.size > 0 and int(cols.min()) >= 0 and _no_zero(vals)
    if everywhere:
        rows = np.broadcast_to(codes[:, None], cols.shape).reshape(-1)
        entry_cols = cols.reshape(-1).astype(np.int64, copy=False)
        present = None
    else:
        present = (cols >= 0) & (vals != 0)
        rows = np.broadcast_to(codes[:, None], cols.shape)[present]
        entry_cols = cols[present].astype(np.int64)
    span = max(int(n_groups), 1) * ncols
    numbered = None
    if span > NESTED_ABOVE * (rows.size + ncols) and ncols <= 4 * rows.size + (1 << 20):
        if nested is None:
            numbered = _nested_pairs(rows, entry_cols, ncols)
        else:
            numbered = nested(rows, entry_cols, ncols, n_groups)
    if numbered is not None:  # (no keys of the entries, no division of the pairs')
        pair_group, pair_col, inverse = numbered
        pair_keys = pair_group * ncols
        pair_keys += pair_col
    else:
        keys = rows * ncols
        keys += entry_cols
        step = np.diff(keys) if keys.size > 1 else None
        if step is not None and step.min() >= 0:  # rows in order of group, then column
            if keys[0] == 0 and keys[-1] == span - 1 and step.max() <= 1:  # every key seen
                entry_pair = keys.reshape(cols.shape) if everywhere else None
                return _full_grid(n_groups, ncols, keys, entry_pair, present)
            pair_keys, inverse = _runs(keys, step)
        elif span <= 4 * keys.size + (1 << 20):
            seen = np.zeros(span, dtype=bool)
            seen[keys] = True
            if seen.all():  # every group has every column: the pairs are the keys
                entry_pair = keys.reshape(cols.shape) if everywhere else None
                return _full_grid(n_groups, ncols, keys, entry_pair, present)
            pair_keys = np.flatnonzero(seen).astype(np.int64, copy=False)
            index = np.empty(span, dtype=np.int64)  # read only where written
            index[pair_keys] = np.arange(pair_keys.size)
            inverse = index[keys]
        else:
            pair_keys, inverse = np.unique(keys, return_inverse=True)
        pair_group = pair_keys // ncols  # (a division by one number: numpy's fast path)
        pair_col = pair_keys - pair_group * ncols
    if everywhere:
        entry_pair = inverse.reshape(cols.shape)
    else:
        entry_pair = np.full(cols.shape, -1, dtype=np.int64)
        entry_pair[present] = inverse
    slots, width = _rank_in_group(pair_group)
    return VCNumbering(pair_keys, pair_group, pair_col, slots, width, entry_pair, everywhere)


def _runs(keys: np.ndarray, step: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct keys of non-decreasing ``keys`` (``step`` their differences) and
    each key's position among them: the runs of equal keys, without a table."""
    new = step != 0
    inverse = np.empty(keys.size, dtype=np.int64)
    inverse[0] = 0
    np.cumsum(new, out=inverse[1:])
    return keys[np.flatnonzero(np.r_[True, new])], inverse


def _full_grid(n_groups: int, ncols: int, keys, entry_pair, present) -> VCNumbering:
    """The numbering where every group has an entry in every column (a balanced crossed
    design): pair ``j`` is key ``j`` (all ``n_groups * ncols`` keys, in order), every
    entry's pair its key (``entry_pair`` if given, else scattered by ``present``) and
    every pair's slot its column, as :func:`number_pairs` would give them."""
    pair_keys = np.arange(n_groups * ncols, dtype=np.int64)
    pair_group = np.repeat(np.arange(n_groups, dtype=np.int64), ncols)
    pair_col = np.tile(np.arange(ncols, dtype=np.int64), n_groups)
    complete = entry_pair is not None
    if not complete:
        entry_pair = np.full(present.shape, -1, dtype=np.int64)
        entry_pair[present] = keys
    slots = pair_col.copy()
    return VCNumbering(pair_keys, pair_group, pair_col, slots, ncols, entry_pair, complete)


def _no_zero(vals: np.ndarray) -> bool:
    """Whether no value is zero: by the extremes where they have one sign (two SIMD
    reductions), else by counting; an indicator's one value broadcast
    (:func:`~dmixed.stats.constant.constant_value`) by that value."""
    value = constant_value(vals)
    if value is not None:
        return value != 0
    if vals.dtype.kind == "f" and (vals.min() > 0 or vals.max() < 0):
        return True
    return bool(np.count_nonzero(vals) == vals.size)


def lookup_vc_slots(
    codes: np.ndarray,
    cols: np.ndarray,
    vals: np.ndarray,
    pair_keys: np.ndarray,
    pair_slots: np.ndarray,
    ncols: int,
    strict: bool = True,
) -> np.ndarray:
    """Slot of every sparse entry, ``-1`` where the entry is absent or zero.

    ``pair_keys``/``pair_slots`` come from :func:`assign_vc_slots` (possibly computed on
    all the data, while ``codes``/``cols`` describe one block of rows).  With
    ``strict=False`` an entry whose pair is unknown (a column the group did not have in
    the fit: prediction) gets ``-1`` too.

    Raises
    ------
    ValueError
        ``strict`` and an entry's pair is not among ``pair_keys``.
    """
    present = (cols >= 0) & (vals != 0)
    keys = codes[:, None].astype(np.int64) * max(ncols, 1) + cols.astype(np.int64)
    pos = np.searchsorted(pair_keys, keys)
    pos = np.minimum(pos, max(pair_keys.size - 1, 0))
    found = present & (pair_keys.size > 0)
    if pair_keys.size:
        found &= pair_keys[pos] == keys
    if strict and np.any(present & ~found):
        raise ValueError("a variance-component entry has no slot: the slot map is incomplete")
    return np.where(found, pair_slots[pos] if pair_keys.size else -1, -1)


@dataclass
class SlotMap:
    """Slot of every (group, variance-component column) pair present in the data.

    The numbering of :func:`assign_vc_slots`, made from the pairs of all partitions and
    kept by group key, so that every partition's rows get the same slots.  Groups are
    identified by their position in ``groups``; component ``l``'s pairs by
    ``gid * ncols[l] + col``.

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

    @classmethod
    def from_pairs(
        cls, keys: np.ndarray, comp: np.ndarray, col: np.ndarray, ncols: list[int]
    ) -> SlotMap:
        """Number the distinct ``(group key, component, column)`` triples present."""
        groups = pd.Index(pd.unique(keys))
        gid = groups.get_indexer(keys).astype(np.int64)
        col = col.astype(np.int64)
        all_keys, all_slots, widths = [], [], []
        for ell, nc in enumerate(ncols):
            sel = comp == ell
            pair_keys = np.unique(gid[sel] * nc + col[sel])
            slots, width = number_pairs(pair_keys, nc)
            all_keys.append(pair_keys)
            all_slots.append(slots)
            widths.append(width)
        return cls(groups, all_keys, all_slots, list(ncols), tuple(widths))

    def group_ids(self, keys) -> np.ndarray:
        """Position of each key in :attr:`groups` (−1: the group has no entries)."""
        # the Index keeps its hash table between calls: on a worker the slot map is one
        # object shared by all the tasks that use it, so the table is built once
        return self.groups.get_indexer(keys)

    def lookup(
        self, keys: np.ndarray, vc_cols: list[np.ndarray], vc_vals: list[np.ndarray]
    ) -> list[np.ndarray]:
        """Per component, the slot of every sparse entry of these rows (see
        :func:`lookup_vc_slots`); ``keys`` are the rows' group keys."""
        if not vc_cols:
            return []
        row_gid = self.group_ids(keys)
        return [
            lookup_vc_slots(
                row_gid, cols, vals, self.pair_keys[ell], self.pair_slots[ell], self.ncols[ell]
            )
            for ell, (cols, vals) in enumerate(zip(vc_cols, vc_vals, strict=True))
        ]

    def slot_columns(self, labels: np.ndarray) -> list[np.ndarray]:
        """Per component, the (G, m_l) :func:`slot_table` of the groups ``labels``.

        Raises
        ------
        RuntimeError
            A group of the map is not among ``labels`` (an internal error).
        """
        pos = pd.Index(labels).get_indexer(self.groups)
        if self.groups.size and (pos < 0).any():
            raise RuntimeError("internal error: a group with variance components has no rows")
        return [
            slot_table(keys, slots, ncols, width, len(labels), pos)
            for keys, slots, ncols, width in zip(
                self.pair_keys, self.pair_slots, self.ncols, self.widths, strict=True
            )
        ]
