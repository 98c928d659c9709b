"""The data pass of crossed variance components: ragged, without the padded design.

Where components share rows (:mod:`dmixed.kernels.vc_border`), the statistics each used
slot needs are those of :func:`~dmixed.kernels.vc_blocks.ragged_statistics` (its ``d``,
its border against ``exog_re`` and its row of ``Z̃'[X y]``, per (group, slot) cell) plus
the *co-occurrence sums* of the slots that share rows: for two entries ``v``, ``v'`` of a
row in slots ``s ≠ t`` of its group, ``Σ w v v' / (s_l s_l')`` (the entries' scales of
the columns' map: powers of two, exact).  These are the off-diagonal entries of the
variance-component block of ``Z̃_i'Z̃_i``; with them the statistics are held in the
buckets of :class:`~dmixed.kernels.vc_border.CrossedVC` directly, each group its own
border width, never as the padded ``n × r`` design or ``G × r × r`` blocks.
"""

from __future__ import annotations

import numpy as np

from ..stats.standardize import Standardization
from .vc_blocks import ragged_statistics
from .vc_border import BorderBucket, CrossedVC, choose_diagonal

__all__ = ["border_statistics", "cooccurrence_sums", "crossed_from_slots"]


def border_statistics(
    codes: np.ndarray,
    n_groups: int,
    endog: np.ndarray,
    exog: np.ndarray,
    exog_re: np.ndarray,
    nums: list,
    vc_vals: list[np.ndarray],
    weights: np.ndarray | None = None,
    std: Standardization | None = None,
) -> tuple[CrossedVC, dict] | None:
    """The statistics of rows whose variance-component entries share rows, as
    :class:`~dmixed.kernels.vc_border.CrossedVC`, in time linear in the entries and
    their co-occurring pairs.

    Parameters
    ----------
    codes, n_groups, endog, exog, exog_re, weights
        The rows (as :func:`~dmixed.kernels.vc_blocks.ragged_statistics`).
    nums : list of VCNumbering
        Per component, the numbering of its (group, column) pairs and every entry's pair
        (:func:`dmixed.stats.slots.number_vc_cells`).
    vc_vals : list of ndarray (n, k_l)
        The entries.
    std : Standardization or None
        The columns' map.

    Returns
    -------
    (crossed, glob), ``glob`` as ``ragged_statistics`` gives it; or None where the
    structure does not apply: no component can be the diagonal block
    (:func:`~dmixed.kernels.vc_border.choose_diagonal`), or a row has two entries in one
    slot (the dense pass adds them first).
    """
    widths = [num.width for num in nums]
    if _repeated_slot(nums):
        return None
    entries = [num.entry_pair for num in nums]
    cells = [(num.entry_pair, num.pair_group, num.pair_slots) for num in nums]
    rv, base = ragged_statistics(
        codes, n_groups, endog, exog, exog_re, entries, vc_vals, widths, weights, std, cells
    )
    cross = _cooccurrence(rv, nums, vc_vals, weights, std)
    n_comp = len(nums)
    overlap = np.zeros((n_comp, n_comp), dtype=bool)
    overlap[rv.comp[cross[0]], rv.comp[cross[1]]] = True
    overlap |= overlap.T
    diag_comps = choose_diagonal(np.asarray(widths), overlap)
    if not diag_comps:
        return None
    slot_component = np.repeat(np.arange(n_comp), widths)
    return crossed_from_slots(rv, cross, slot_component, diag_comps), base


def _repeated_slot(nums: list) -> bool:
    """Whether a row has two entries in one (group, column) pair of a component."""
    for num in nums:
        ep = num.entry_pair
        for c1 in range(ep.shape[1]):
            for c2 in range(c1 + 1, ep.shape[1]):
                if np.any((ep[:, c1] == ep[:, c2]) & (ep[:, c1] >= 0)):
                    return True
    return False


def _cooccurrence(rv, nums, vc_vals, weights, std):
    """``(s, t, value)``: each pair of used slots ``s < t`` (indices into ``rv``'s slots)
    sharing rows, and ``Σ w v_s v_t / (scale_s scale_t)`` over those rows."""
    n_comp = len(nums)
    scales = np.ones(n_comp) if std is None else std.vc_scales(n_comp)
    keys = rv.group * rv.r + rv.pos
    cols_j, cols_v = [], []  # per entry column of every component: its slot and value
    for ell, (num, vals) in enumerate(zip(nums, vc_vals, strict=True)):
        ep = num.entry_pair
        for c in range(ep.shape[1]):
            found = ep[:, c] >= 0
            pair = ep[found, c]
            j = np.full(ep.shape[0], -1, dtype=np.int64)
            j[found] = np.searchsorted(
                keys, num.pair_group[pair] * rv.r + rv.offsets[ell] + num.pair_slots[pair]
            )
            cols_j.append(j)
            cols_v.append(np.where(found, vals[:, c], 0.0) / scales[ell])
    return cooccurrence_sums(cols_j, cols_v, weights, rv.group.size)


def cooccurrence_sums(
    ids: list[np.ndarray], vals: list[np.ndarray], weights: np.ndarray | None, n_ids: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The co-occurrence sums of entries sharing rows: ``(s, t, Σ w v_s v_t)`` for each
    pair of slots ``s < t`` with entries in one row, sorted by ``(s, t)``.

    Parameters
    ----------
    ids : list of ndarray (n,) int64
        Per entry column (of every component), each row's slot (``0 … n_ids-1``; ``-1``:
        no entry).
    vals : list of ndarray (n,)
        The entries (already divided by their component's scale).
    weights : ndarray (n,) or None
    n_ids : int
        The number of slots (``n_ids²`` must fit in int64).
    """
    parts = [(np.zeros(0, dtype=np.int64),) * 2 + (np.zeros(0),)]
    for c1 in range(len(ids)):
        for c2 in range(c1 + 1, len(ids)):
            both = np.flatnonzero((ids[c1] >= 0) & (ids[c2] >= 0))
            prod = vals[c1][both] * vals[c2][both]
            if weights is not None:
                prod = prod * weights[both]
            j1, j2 = ids[c1][both], ids[c2][both]
            parts.append((np.minimum(j1, j2), np.maximum(j1, j2), prod))
    s_all, t_all, v_all = (np.concatenate(x) for x in zip(*parts, strict=True))
    n = max(int(n_ids), 1)
    pairs, where = np.unique(s_all * n + t_all, return_inverse=True)
    sums = np.bincount(where.reshape(-1), weights=v_all, minlength=pairs.size)
    return pairs // n, pairs % n, sums


def crossed_from_slots(rv, cross, slot_component, diag_comps) -> CrossedVC:
    """:class:`~dmixed.kernels.vc_border.CrossedVC` of ragged slot statistics ``rv``
    (the fields of :class:`~dmixed.kernels.vc_blocks.RaggedVC`: every used slot's
    ``d``, border ``b`` against ``exog_re`` and ``f2``) and the co-occurrence sums
    ``cross = (s, t, value)`` between its slots, the slots of ``diag_comps`` forming the
    diagonal block (none of them may share a row)."""
    q, k, g = rv.q, rv.k, rv.n_groups
    s_idx, t_idx, val = cross
    on_diag = np.isin(rv.comp, np.asarray(diag_comps, dtype=np.int64))
    border = ~on_diag
    n_border = np.bincount(rv.group[border], minlength=g)
    first = np.concatenate([[0], np.cumsum(n_border)[:-1]])
    bidx = np.full(rv.group.size, -1, dtype=np.int64)  # a border slot's column in its border
    bslots = np.flatnonzero(border)
    bidx[bslots] = q + np.arange(bslots.size) - first[rv.group[bslots]]
    widths = q + n_border
    buckets = []
    for w in np.unique(widths):
        w = int(w)
        gi = np.flatnonzero(widths == w)
        loc = np.full(g, -1, dtype=np.int64)
        loc[gi] = np.arange(gi.size)
        a = np.zeros((gi.size, w, w))
        a[:, :q, :q] = rv.a[gi]
        f1 = np.zeros((gi.size, w, k))
        f1[:, :q] = rv.f1[gi]
        bpos = np.zeros((gi.size, w), dtype=np.int64)
        bpos[:, :q] = np.arange(q)
        here = loc[rv.group] >= 0
        jb = np.flatnonzero(border & here)
        lg, bi = loc[rv.group[jb]], bidx[jb]
        a[lg, bi, :q] = rv.b[jb]
        a[lg, :q, bi] = rv.b[jb]
        a[lg, bi, bi] = rv.d[jb]
        f1[lg, bi] = rv.f2[jb]
        bpos[lg, bi] = rv.pos[jb]
        jd = np.flatnonzero(on_diag & here)
        drow = np.full(rv.group.size, -1, dtype=np.int64)
        drow[jd] = np.arange(jd.size)
        b = np.zeros((jd.size, w))
        b[:, :q] = rv.b[jd]
        sel = here[s_idx]
        s, t, v = s_idx[sel], t_idx[sel], val[sel]
        both = border[s] & border[t]
        lgp = loc[rv.group[s[both]]]
        a[lgp, bidx[s[both]], bidx[t[both]]] = v[both]
        a[lgp, bidx[t[both]], bidx[s[both]]] = v[both]
        for dg, bd in ((s, t), (t, s)):  # one end on the diagonal, the other on the border
            one = on_diag[dg] & border[bd]
            b[drow[dg[one]], bidx[bd[one]]] = v[one]
        buckets.append(
            BorderBucket(gi, a, f1, bpos, loc[rv.group[jd]], rv.pos[jd], rv.d[jd], b, rv.f2[jd])
        )
    return CrossedVC(
        buckets, q, k, rv.r, g, np.asarray(slot_component, dtype=np.int64), tuple(diag_comps)
    )
