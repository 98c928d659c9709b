"""The Dask data pass of crossed variance components: co-occurrence tables, no padding.

Where variance-component entries share rows (two indicator components crossed within a
group, continuous columns on an indicator's rows), the in-process pass holds the
statistics in the buckets of :class:`~dmixed.kernels.vc_border.CrossedVC`
(:mod:`dmixed.kernels.vc_border_pass`): every used slot's ``d``, border against
``exog_re`` and ``F2`` row, plus the *co-occurrence sums* ``Σ w v_s v_t`` of the slots
sharing rows.  On Dask the first are the ragged pass's cell tables
(:mod:`~dmixed.engines.dask.ragged`); this module adds the second as one more keyed
table, ``(pair key, value)``: a slot is numbered globally by its pair in the slot map
(component ``l``'s pair ``j`` is slot ``base_l + j``, the same in every partition), a
co-occurring pair ``s < t`` is the key ``s · J + t`` (``J`` slots in all).  The tables
are added by key with the ragged pass's functions; a block becomes ``CrossedVC``
directly (:func:`crossed_block`), so the workers hold and exchange values in number
``O(Σ_i m_i w_i)`` (the slots and their co-occurrences), never ``G r²``.

The VC prepass (:func:`overlap_marks`, :func:`read_overlap`) says which components share
rows, so the diagonal components are chosen once on the driver
(:func:`~dmixed.kernels.vc_border.choose_diagonal`, as in process) before the pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...kernels.vc_blocks import RaggedVC
from ...kernels.vc_border import CrossedVC
from ...kernels.vc_border_pass import cooccurrence_sums, crossed_from_slots
from ...stats.slots import SlotMap
from ...stats.standardize import Standardization

#: The prepass's mark of a row with two entries in one slot (one component's column
#: twice): the padded pass adds them first.
REPEATED = -1


@dataclass(frozen=True)
class RowOverlap:
    """Which variance components have entries in one row.

    Attributes
    ----------
    pairs : ndarray of bool (d, d)
        ``pairs[l, l']``: some row has entries in components ``l`` and ``l'``
        (``l = l'``: two entries of ``l``), symmetric.
    repeated : bool
        Some row has two entries in one column of one component.
    """

    pairs: np.ndarray
    repeated: bool = False

    def __bool__(self) -> bool:
        """Whether some row has two entries."""
        return bool(self.repeated or self.pairs.any())


def overlap_marks(vc_cols: list[np.ndarray], vc_vals: list[np.ndarray]) -> list[int]:
    """The prepass's marks of one partition's rows: ``l · d + l'`` (``l ≤ l'``) for each
    pair of components with entries in one row, :data:`REPEATED` for a row with two
    entries in one column of one component."""
    n_comp = len(vc_cols)
    present = [(c >= 0) & (v != 0) for c, v in zip(vc_cols, vc_vals, strict=True)]
    counts = [p.sum(axis=1) for p in present]
    marks = []
    for ell in range(n_comp):
        if np.any(counts[ell] > 1):
            marks.append(ell * n_comp + ell)
        for other in range(ell + 1, n_comp):
            if np.any((counts[ell] > 0) & (counts[other] > 0)):
                marks.append(ell * n_comp + other)
        cols, here = vc_cols[ell], present[ell]
        for c1 in range(cols.shape[1]):
            for c2 in range(c1 + 1, cols.shape[1]):
                if np.any(here[:, c1] & here[:, c2] & (cols[:, c1] == cols[:, c2])):
                    marks.append(REPEATED)
    return marks


def read_overlap(marks: np.ndarray, n_comp: int) -> RowOverlap:
    """The :class:`RowOverlap` of all partitions' :func:`overlap_marks`."""
    marks = np.unique(np.asarray(marks, dtype=np.int64))
    pairs = np.zeros((n_comp, n_comp), dtype=bool)
    found = marks[marks >= 0]
    pairs[found // max(n_comp, 1), found % max(n_comp, 1)] = True
    return RowOverlap(pairs | pairs.T, bool(np.any(marks == REPEATED)))


# ---------------------------------------------------------------------------
# One partition
# ---------------------------------------------------------------------------


def slot_base(pair_counts) -> np.ndarray:
    """First global slot number of each component's pairs (d,) int64."""
    return np.concatenate([[0], np.cumsum(pair_counts, dtype=np.int64)])[:-1].astype(np.int64)


def cross_rows(
    keys: np.ndarray,
    row_bucket: np.ndarray,
    slots: list[np.ndarray],
    vc_vals: list[np.ndarray],
    weights: np.ndarray | None,
    std: Standardization | None,
    slot_map: SlotMap,
    pair_counts: tuple,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The co-occurrence sums of one partition's rows (group ``keys``, output block
    ``row_bucket``, each entry's ``slots`` from
    :meth:`~dmixed.stats.slots.SlotMap.lookup`), divided by the components' scales of
    ``std``: ``(pair keys s · J + t, values (n, 1), output block of each)``."""
    n_comp = len(slots)
    scales = np.ones(n_comp) if std is None else std.vc_scales(n_comp)
    base = slot_base(pair_counts)
    row_gid = slot_map.group_ids(keys).astype(np.int64)
    ids, vals = [], []
    for ell, (sl, vv) in enumerate(zip(slots, vc_vals, strict=True)):
        first = np.searchsorted(slot_map.pair_keys[ell], row_gid * slot_map.ncols[ell])
        for c in range(sl.shape[1]):
            found = sl[:, c] >= 0
            ids.append(np.where(found, base[ell] + first + sl[:, c], -1))
            vals.append(np.where(found, vv[:, c], 0.0) / scales[ell])
    n_ids = int(sum(pair_counts))
    s, t, sums = cooccurrence_sums(ids, vals, weights, n_ids)
    # a pair's block is its rows' (a slot's rows are all of its group)
    every = np.concatenate(ids)
    found = every >= 0
    seen, first_row = np.unique(every[found], return_index=True)
    block_of = np.tile(row_bucket, len(ids))[found][first_row]
    return s * max(n_ids, 1) + t, sums[:, None], block_of[np.searchsorted(seen, s)]


def convert_cross(
    table: tuple[np.ndarray, np.ndarray],
    std: Standardization | None,
    target: Standardization,
    pair_counts: tuple,
) -> tuple[np.ndarray, np.ndarray]:
    """A co-occurrence table in ``std``'s map converted to ``target``'s: each sum times
    the ratio of both slots' component scales and the weights' ratio (powers of two:
    exact; :meth:`~dmixed.stats.standardize.Standardization.conversion_to`)."""
    keys, values = table
    if std is None or std == target or not keys.size:
        return table
    n_comp = len(pair_counts)
    ratio = std.vc_scales(n_comp) / target.vc_scales(n_comp)
    n_ids = max(int(sum(pair_counts)), 1)
    base = slot_base(pair_counts)
    cs = np.searchsorted(base, keys // n_ids, side="right") - 1
    ct = np.searchsorted(base, keys % n_ids, side="right") - 1
    return keys, values * (std.weight_ratio(target) * ratio[cs] * ratio[ct])[:, None]


# ---------------------------------------------------------------------------
# A block
# ---------------------------------------------------------------------------


def crossed_block(
    rv: RaggedVC,
    labels: np.ndarray,
    cross: tuple[np.ndarray, np.ndarray],
    slot_map: SlotMap,
    pair_counts: tuple,
    diagonal: tuple,
) -> CrossedVC:
    """:class:`~dmixed.kernels.vc_border.CrossedVC` of a block's ragged statistics
    ``rv`` (its groups ``labels``) and added co-occurrence table ``cross``, the slots of
    the components ``diagonal`` forming the diagonal block.

    Raises
    ------
    RuntimeError
        A co-occurrence of a slot the block does not have (an internal error).
    """
    base = slot_base(pair_counts)
    gid = slot_map.group_ids(np.asarray(labels)[rv.group]).astype(np.int64)
    number = np.zeros(rv.group.size, dtype=np.int64)  # each slot's global number
    for ell in range(len(pair_counts)):
        sel = np.flatnonzero(rv.comp == ell)
        first = np.searchsorted(slot_map.pair_keys[ell], gid[sel] * slot_map.ncols[ell])
        number[sel] = base[ell] + first + rv.pos[sel] - rv.offsets[ell]
    order = np.argsort(number, kind="stable")
    keys, values = cross
    n_ids = max(int(sum(pair_counts)), 1)
    ends = []
    for end in (keys // n_ids, keys % n_ids):
        at = np.minimum(np.searchsorted(number[order], end), max(order.size - 1, 0))
        if end.size and not np.array_equal(number[order][at], end):
            raise RuntimeError("internal error: a co-occurrence of a slot the block lacks")
        ends.append(order[at] if end.size else end)
    widths = np.diff(np.append(rv.offsets, rv.r))
    slot_component = np.repeat(np.arange(widths.size), widths)
    local = (ends[0], ends[1], np.asarray(values).reshape(-1))
    return crossed_from_slots(rv, local, slot_component, diagonal)
