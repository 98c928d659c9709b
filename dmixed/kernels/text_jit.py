"""Compiled passes over text keys held as Arrow buffers: a 64-bit hash of each string
and a check that strings are byte for byte the ones they were mapped to.

The strings of an Arrow ``string`` or ``large_string`` array are its offsets (``n + 1``
of them, int32 or int64) into one buffer of UTF-8 bytes: string ``i`` is
``data[offsets[i] : offsets[i + 1]]``.  Two Python ``str`` are equal exactly when their
UTF-8 bytes are, so these passes see the keys as the exact path's pandas Index does,
without a Python object a row.

This module imports numba at its top; :mod:`~dmixed.kernels.text_keys` imports it only
when it first runs a compiled pass, never ``import dmixed``.  The functions compile on
their first call and keep the machine code on disk (``cache=True``).
"""

from __future__ import annotations

import numba
import numpy as np

#: FNV-1a, 64 bits (Fowler, Noll and Vo): the offset basis and the prime
FNV_BASIS = np.uint64(14695981039346656037)
FNV_PRIME = np.uint64(1099511628211)


@numba.njit(cache=True, nogil=True)
def hash_strings(offsets, data, out):  # pragma: no cover - compiled
    """``out[i]`` = FNV-1a (64 bits) of string ``i``'s bytes, as int64 (the bits of the
    unsigned hash)."""
    for i in range(out.size):
        h = FNV_BASIS
        for j in range(offsets[i], offsets[i + 1]):
            h = (h ^ np.uint64(data[j])) * FNV_PRIME
        out[i] = np.int64(h)


@numba.njit(cache=True, nogil=True)
def first_mismatch(offsets, data, col, rep_offsets, rep_data):  # pragma: no cover
    """The first row ``i`` whose string is not byte for byte string ``col[i]`` of the
    representatives (``rep_offsets``, ``rep_data``), or −1 where every row's is."""
    for i in range(col.size):
        c = col[i]
        lo = offsets[i]
        n = offsets[i + 1] - lo
        rep = rep_offsets[c]
        if rep_offsets[c + 1] - rep != n:
            return i
        for j in range(n):
            if data[lo + j] != rep_data[rep + j]:
                return i
    return -1


@numba.njit(cache=True, nogil=True)
def append_strings(offsets, data, rows, rep_offsets, rep_data, start):  # pragma: no cover
    """Strings ``rows`` appended to the representatives after their first ``start``
    (``rep_offsets[start]`` set, room enough in both buffers): representative
    ``start + k`` becomes string ``rows[k]``."""
    end = rep_offsets[start]
    for k in range(rows.size):
        i = rows[k]
        lo = offsets[i]
        n = offsets[i + 1] - lo
        for j in range(n):
            rep_data[end + j] = data[lo + j]
        end += n
        rep_offsets[start + k + 1] = end
