"""Packed statistics of a padded random design whose variance components have one entry
per row: the sums of :func:`~dmixed.kernels.accumulate_packed_into` in time linear in the
rows (the Dask data pass's partitions, whose rows travel with the padded design)."""

from __future__ import annotations

import numpy as np

from ..stats.packed import PackedLayout
from ..stats.standardize import Standardization
from .rows import accumulate_packed_into
from .vc_blocks import RaggedVC, ragged_statistics

__all__ = ["accumulate_padded_into"]


def accumulate_padded_into(
    acc: np.ndarray,
    codes: np.ndarray,
    endog: np.ndarray,
    exog: np.ndarray,
    ztilde: np.ndarray,
    weights: np.ndarray | None = None,
    std: Standardization | None = None,
    vc_widths=(),
    rank_one: bool = False,
) -> dict:
    """:func:`~dmixed.kernels.accumulate_packed_into`, the same sums (to rounding), in
    time linear in the rows where no row of the padded design ``ztilde`` (n, r) has two
    non-zero variance-component entries: the slots are read back from ``ztilde`` and the
    rows summed by :func:`ragged_statistics`, without the ``r(r+1)/2`` products of the
    padded columns (most of them zero).  Otherwise the dense pass.

    ``acc`` (width, G) column-major packed, ``codes`` the rows' columns in it, as
    :func:`~dmixed.kernels.accumulate_packed_into`; returns the rows' global sums
    (``within``: None, as the dense pass with more than one random-design column and
    variance components).  ``rank_one``: as :func:`~dmixed.kernels.accumulate_packed_into`'s
    (rows without variance components: the dense pass).
    """
    found = _entries_of_padded(ztilde, vc_widths)
    if found is None:
        return accumulate_packed_into(
            acc, codes, endog, exog, ztilde, weights, std, vc_widths, rank_one=rank_one
        )
    q, slots, vals = found
    target, local = np.unique(np.asarray(codes, dtype=np.int64), return_inverse=True)
    rv, base = ragged_statistics(
        local.reshape(-1),
        target.size,
        endog,
        exog,
        ztilde[:, :q],
        slots,
        vals,
        vc_widths,
        weights,
        std,
    )
    _add_packed(acc, target, rv, base["nobs"])
    return {
        "xyxy": base["xyxy"],
        "n": base["n"],
        "sum_log_weights": base["sum_log_weights"],
        "within": None,
        "column_sums": base.get("column_sums"),
    }


def _entries_of_padded(ztilde: np.ndarray, vc_widths):
    """``(q, slots, vals)`` per component (:func:`ragged_statistics`' ``vc_slots``,
    ``vc_vals``, one column) of a padded design with one non-zero variance-component
    entry per row at most and some component wider than one slot; else None."""
    widths = np.asarray(vc_widths, dtype=np.int64)
    r = ztilde.shape[1]
    q = r - int(widths.sum())
    if widths.size == 0 or r <= q + widths.size:
        return None
    row, col = np.nonzero(ztilde[:, q:])
    if row.size and np.any(row[1:] == row[:-1]):  # row-major: a row's entries adjacent
        return None
    comp = np.repeat(np.arange(widths.size), widths)[col]
    first = np.concatenate([[0], np.cumsum(widths)[:-1]])
    slots, vals = [], []
    for ell in range(widths.size):  # one pass per component (not per group or level)
        sel = comp == ell
        s = np.full((ztilde.shape[0], 1), -1, dtype=np.int64)
        v = np.zeros((ztilde.shape[0], 1))
        s[row[sel], 0] = col[sel] - first[ell]
        v[row[sel], 0] = ztilde[row[sel], q + col[sel]]
        slots.append(s)
        vals.append(v)
    return q, slots, vals


def _add_packed(acc: np.ndarray, target: np.ndarray, rv: RaggedVC, nobs: np.ndarray) -> None:
    """Add ragged statistics (groups ``target`` of ``acc``) into column-major packed
    ``acc``; every (packed row, group) pair is written once."""
    layout = PackedLayout(rv.r, rv.k)
    tri = np.full((rv.r, rv.r), -1, dtype=np.int64)
    a_idx, b_idx = layout.zz_index
    tri[a_idx, b_idx] = tri[b_idx, a_idx] = 1 + np.arange(a_idx.size)
    s1 = layout.slices()[1].start
    q, k = rv.q, rv.k
    acc[0, target] += nobs
    for a in range(q):
        for b in range(a + 1):
            acc[tri[a, b], target] += rv.a[:, a, b]
        for j in range(k):
            acc[s1 + a * k + j, target] += rv.f1[:, a, j]
    group = target[rv.group]
    acc[tri[rv.pos, rv.pos], group] += rv.d
    for a in range(q):
        acc[tri[a, rv.pos], group] += rv.b[:, a]
    for j in range(k):
        acc[s1 + rv.pos * k + j, group] += rv.f2[:, j]
