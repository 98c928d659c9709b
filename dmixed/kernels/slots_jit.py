"""The compiled numbering of a variance component nested in the groups: the pairs of
:func:`dmixed.stats.slots.number_vc_cells`' nested case in one sweep of the entries.

numba is imported with this module, which :func:`~dmixed.kernels.compiled.nested_numbering`
imports only when it picks the compiled numbering (never ``import dmixed``); the kernel is
compiled on its first call and cached on disk (``cache=True``).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _nested(rows, cols, ncols, n_groups):  # pragma: no cover - compiled
    n = rows.size
    empty = np.zeros(0, dtype=np.int64)
    where = np.full(ncols, -1, dtype=np.int64)  # each column's group, then its pair
    start = np.zeros(n_groups + 1, dtype=np.int64)  # pairs per group, then their starts
    for i in range(n):
        c = cols[i]
        g = rows[i]
        h = where[c]
        if h < 0:
            where[c] = g
            start[g + 1] += 1
        elif h != g:  # a column in two groups: not nested
            return False, empty, empty, empty
    for g in range(n_groups):
        start[g + 1] += start[g]
    u = start[n_groups]
    pair_group = np.empty(u, dtype=np.int64)
    pair_col = np.empty(u, dtype=np.int64)
    for c in range(ncols):  # columns in increasing order: pairs by group, then column
        g = where[c]
        if g >= 0:
            p = start[g]
            start[g] = p + 1
            pair_group[p] = g
            pair_col[p] = c
            where[c] = p
    pair = np.empty(n, dtype=np.int64)
    for i in range(n):
        pair[i] = where[cols[i]]
    return True, pair_group, pair_col, pair


def nested_pairs(rows: np.ndarray, cols: np.ndarray, ncols: int, n_groups: int):
    """Where every column has entries in one group only, the pairs sorted by key
    ``group * ncols + column`` (each one's group and column) and every entry's pair, as
    :func:`dmixed.stats.slots.number_vc_cells`' numpy numbering finds them; None where a
    column has entries in two groups.

    One sweep of the entries writes each column's group (and counts each group's
    columns, checking that no column is in two groups), one of the columns numbers the
    pairs in order (a counting sort by group) and one reads every entry's pair back.

    Parameters
    ----------
    rows, cols : ndarray of int (n,)
        Each entry's group ``0 … n_groups−1`` and column ``0 … ncols−1``.
    ncols, n_groups : int
        The number of columns and of groups.
    """
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    cols = np.ascontiguousarray(cols, dtype=np.int64)
    nested, pair_group, pair_col, pair = _nested(rows, cols, int(ncols), int(n_groups))
    return (pair_group, pair_col, pair) if nested else None
