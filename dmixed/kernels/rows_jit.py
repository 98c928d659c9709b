"""The compiled per-row pass of :mod:`dmixed.kernels.rows`: every per-group sum of a
:func:`~dmixed.kernels.rows.product_plan` in one pass over the rows.

numba is imported with this module, which :mod:`~dmixed.kernels.rows` imports only when
it picks the compiled pass (never ``import dmixed``); the kernel is compiled on its first
call and cached on disk (``cache=True``).  Its sums are those of the numpy reference
(one ``bincount`` per term) bit for bit: each group's terms are added in row order,
from zero, and a product is one rounded multiplication, as there.
"""

from __future__ import annotations

import numba
import numpy as np

#: term kinds, as :func:`term_sums` takes them
COUNT, COL, PROD = 0, 1, 2


@numba.njit(cache=True, nogil=True)
def _sums(codes, sources, kinds, first, second, n_groups):  # pragma: no cover - compiled
    n_terms = kinds.size
    out = np.zeros((n_groups, n_terms))
    for i in range(codes.size):
        g = codes[i]
        for t in range(n_terms):
            kind = kinds[t]
            if kind == 0:
                out[g, t] += 1.0
            elif kind == 1:
                out[g, t] += sources[first[t]][i]
            else:
                out[g, t] += sources[first[t]][i] * sources[second[t]][i]
    return out


def _read_only(column) -> np.ndarray:
    """``column`` as a C-contiguous float64 array, through a read-only view (no copy
    where it is one already)."""
    out = np.ascontiguousarray(column, dtype=np.float64).view()
    out.flags.writeable = False
    return out


def term_sums(
    codes: np.ndarray, sources: list[np.ndarray], terms: list[tuple], n_groups: int
) -> np.ndarray:
    """Per-group sums of ``terms`` over the rows, shape ``(len(terms), n_groups)``.

    Parameters
    ----------
    codes : ndarray of int64 (n,)
        Each row's group, ``0 … n_groups−1``.
    sources : list of ndarray (n,)
        The columns the terms read.
    terms : list of tuple
        ``("count",)``, ``("col", u)`` or ``("prod", u, v)`` (``u``, ``v`` index
        ``sources``).
    """
    used = sorted({u for t in terms for u in t[1:]})
    slot = {u: i for i, u in enumerate(used)}
    # every column a read-only view: numba types a read-only array apart from a writable
    # one, and a tuple of both kinds cannot be indexed at run time (a pandas column's
    # to_numpy() is read-only under copy-on-write)
    cols = tuple(_read_only(sources[u]) for u in used)
    if not cols:
        cols = (np.zeros(codes.size),)
    kind_of = {"count": COUNT, "col": COL, "prod": PROD}
    kinds = np.array([kind_of[t[0]] for t in terms], dtype=np.int64)
    first = np.array([slot[t[1]] if len(t) > 1 else 0 for t in terms], dtype=np.int64)
    second = np.array([slot[t[2]] if len(t) > 2 else 0 for t in terms], dtype=np.int64)
    codes = np.ascontiguousarray(codes, dtype=np.int64)
    out = _sums(codes, cols, kinds, first, second, n_groups)
    return np.ascontiguousarray(out.T)
