"""The co-occurrence sums of crossed variance components, on the driver: what saved
statistics hold besides the ragged slots when components share rows.

Where two variance-component entries share a row (crossed components, continuous
``exog_vc`` columns), the variance-component block of ``Z̃_i'Z̃_i`` has entries off its
diagonal: the co-occurrence sums ``Σ w v_s v_t`` of the slots ``s ≠ t`` of a group.
:class:`CrossSums` holds them, one per (group, s, t) with ``s < t`` (padded columns),
next to the ragged statistics of every used slot (:class:`~dmixed.stats.ragged_stats.
RaggedArrays`: its ``d``, border against ``exog_re`` and ``Z̃'[X y]`` row).  Together
they are the statistics the crossed engine holds (``kernels.vc_border.CrossedVC``), in
values ``O(Σ_i (m_i (q + k) + c_i))`` (``c_i`` co-occurring pairs), never ``G r²``.
This layer saves, converts and adds them; which components form the diagonal block is
the engine's choice, made again from them (:func:`overlap`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ragged_stats import RaggedArrays, layout_offsets, merged_columns

__all__ = [
    "CrossSums",
    "buckets_to_slots",
    "cross_from_dense",
    "merge_cross",
    "overlap",
    "slot_index",
]


@dataclass
class CrossSums:
    """Co-occurrence sums of the slots of each group (module docstring).

    Attributes
    ----------
    group : ndarray (C,) int64
        The group of each sum (its position among the sorted groups).
    s, t : ndarray (C,) int64
        The two slots' columns of the padded random design, ``s < t``.
    value : ndarray (C,)
        ``Σ w v_s v_t`` over the group's rows, in the statistics' columns' map.
    diagonal : tuple of int or None
        The components whose slots formed the diagonal block where these sums were
        made (the elimination the fit used, chosen from the rows that share slots,
        whatever their sums), or None (unknown: chosen again from the non-zero sums).
        A co-occurrence that sums to exactly zero is not held, so the non-zero sums
        alone can allow a wider diagonal block than the rows did.

    Sorted by (group, s, t) without repeats.
    """

    group: np.ndarray
    s: np.ndarray
    t: np.ndarray
    value: np.ndarray
    diagonal: tuple | None = None

    @classmethod
    def empty(cls) -> CrossSums:
        """No co-occurrences (components on disjoint rows)."""
        none = np.zeros(0, dtype=np.int64)
        return cls(none, none.copy(), none.copy(), np.zeros(0))

    @property
    def size(self) -> int:
        return int(self.group.size)

    def components(self, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The component of each sum's two slots (``offsets``: first padded column of
        each component)."""
        return (
            np.searchsorted(offsets, self.s, side="right") - 1,
            np.searchsorted(offsets, self.t, side="right") - 1,
        )

    def converted(self, ratio: np.ndarray, offsets: np.ndarray) -> CrossSums:
        """These sums in another column map: each times the ratio (d,) of both slots'
        component scales (:meth:`~dmixed.stats.standardize.Standardization.conversion_to`)."""
        cs, ct = self.components(offsets)
        ratio = np.asarray(ratio, dtype=np.float64)
        value = self.value * ratio[cs] * ratio[ct]
        return CrossSums(self.group, self.s, self.t, value, self.diagonal)

    def add_into(self, zz: np.ndarray) -> None:
        """Add the sums into padded blocks ``zz`` (G, r, r), both triangles."""
        np.add.at(zz, (self.group, self.s, self.t), self.value)
        np.add.at(zz, (self.group, self.t, self.s), self.value)


def cross_from_dense(zz: np.ndarray, q: int) -> CrossSums:
    """The non-zero entries above the diagonal of the variance-component block of padded
    statistics ``zz`` (G, r, r)."""
    vc = np.triu(zz[:, q:, q:], k=1)
    group, s, t = np.nonzero(vc)
    return CrossSums(
        group.astype(np.int64), (s + q).astype(np.int64), (t + q).astype(np.int64), vc[group, s, t]
    )


def overlap(cross: CrossSums, offsets: np.ndarray, n_comp: int) -> np.ndarray:
    """(d, d) bool: whether components ``l`` and ``l'`` have co-occurring slots (``l =
    l'``: two slots of one component share rows), symmetric."""
    cs, ct = cross.components(offsets)
    out = np.zeros((n_comp, n_comp), dtype=bool)
    out[cs, ct] = True
    return out | out.T


def slot_index(ragged: RaggedArrays, group: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """The index among ``ragged``'s slots (sorted by (group, pos)) of each (group, pos).

    Raises
    ------
    ValueError
        A (group, pos) that ``ragged`` does not hold.
    """
    keys = ragged.group * ragged.r + ragged.pos
    want = np.asarray(group, dtype=np.int64) * ragged.r + pos
    at = np.minimum(np.searchsorted(keys, want), max(keys.size - 1, 0))
    if want.size and (keys.size == 0 or np.any(keys[at] != want)):
        raise ValueError("a co-occurrence of a slot that the ragged statistics do not hold")
    return at


def merge_cross(old, new, gi_old, gi_new, pair, widths) -> CrossSums:
    """Co-occurrence sums of old + new statistics (``GroupArrays`` with ``cross``, in
    one column map), keyed by the merged slots (:func:`merged_columns`); their
    ``diagonal`` where both have the same, else None."""
    q = old.layout.k_re
    merged, r = layout_offsets(q, widths), q + int(sum(widths))
    keys, values = [], []
    for which, (src, gi) in enumerate(((old, gi_old), (new, gi_new))):
        cross, offsets = src.cross, src.ragged.offsets
        a = merged_columns(cross.group, cross.s, gi, offsets, pair, which, merged, r)
        b = merged_columns(cross.group, cross.t, gi, offsets, pair, which, merged, r)
        lo, hi = np.minimum(a, b), np.maximum(a, b)  # the same group: one key of both
        keys.append((lo // r) * r * r + (lo % r) * r + hi % r)
        values.append(cross.value)
    cells, where = np.unique(np.concatenate(keys), return_inverse=True)
    value = np.bincount(where.reshape(-1), np.concatenate(values), cells.size)
    # one elimination for both: kept; else chosen again from the merged sums
    same = old.cross.diagonal == new.cross.diagonal
    diagonal = old.cross.diagonal if same else None
    return CrossSums(cells // (r * r), (cells // r) % r, cells % r, value, diagonal)


def buckets_to_slots(
    buckets: list, q: int, k: int, n_groups: int, r: int, slot_component: np.ndarray
) -> tuple[RaggedArrays, CrossSums]:
    """Crossed statistics (the buckets of ``kernels.vc_border.CrossedVC``: per group
    ``a`` (w × w), ``f1``, ``bpos``; per diagonal slot ``group``, ``pos``, ``d``, ``b``
    (w,), ``f2``) as every used slot's ragged entry and the co-occurrence sums: the
    non-zero entries between slots (a co-occurrence summing to exactly zero is not
    kept: the buckets do not tell it from none)."""
    a, f1 = np.zeros((n_groups, q, q)), np.zeros((n_groups, q, k))
    none = np.zeros(0, dtype=np.int64)
    # (group, pos, d, b, f2) of the slots; (group, s, t, value) of the co-occurrences
    slots = [(none, none, np.zeros(0), np.zeros((0, q)), np.zeros((0, k)))]
    cross = [(none, none, none, np.zeros(0))]
    for bk in buckets:
        gi = bk.groups
        a[gi], f1[gi] = bk.a[:, :q, :q], bk.f1[:, :q]
        rows, cols = np.nonzero(np.ones(bk.bpos[:, q:].shape, dtype=bool))
        cols = cols + q  # the border slots (after exog_re's q columns)
        slots.append(
            (gi[rows], bk.bpos[rows, cols], bk.a[rows, cols, cols])
            + (bk.a[rows, cols, :q], bk.f1[rows, cols])
        )
        slots.append((gi[bk.group], bk.pos, bk.d, bk.b[:, :q], bk.f2))
        gb, i, j = np.nonzero(np.triu(bk.a[:, q:, q:], k=1))
        cross.append((gi[gb], bk.bpos[gb, i + q], bk.bpos[gb, j + q], bk.a[gb, i + q, j + q]))
        jd, jb = np.nonzero(bk.b[:, q:])
        gd = bk.group[jd]
        cross.append((gi[gd], bk.pos[jd], bk.bpos[gd, jb + q], bk.b[jd, jb + q]))
    group, pos, d, b, f2 = (np.concatenate(x) for x in zip(*slots, strict=True))
    order = np.lexsort((pos, group))
    slot_component = np.asarray(slot_component, dtype=np.int64)
    offsets = layout_offsets(q, np.bincount(slot_component))
    comp = slot_component[pos[order] - q]
    ragged = RaggedArrays(
        a, f1, group[order], comp, pos[order], d[order], b[order], f2[order], offsets, r
    )
    cg, cs, ct, cv = (np.concatenate(x) for x in zip(*cross, strict=True))
    lo, hi = np.minimum(cs, ct), np.maximum(cs, ct)
    order = np.lexsort((hi, lo, cg))
    return ragged, CrossSums(cg[order], lo[order], hi[order], cv[order])
