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

from .term_jit import prefetch_row

#: FNV-1a, 64 bits (Fowler, Noll and Vo): the offset basis and the prime
FNV_BASIS = np.uint64(14695981039346656037)
FNV_PRIME = np.uint64(1099511628211)
#: bytes of a representative kept with its length (:func:`first_mismatch`)
HEAD_BYTES = 8
#: rows ahead whose representative :func:`first_mismatch` asks for (as the per-row
#: pass asks for its table row: many misses in flight at once)
AHEAD = 64


@numba.njit(cache=True, nogil=True)
def hash_strings(offsets, data, out):  # pragma: no cover - compiled
    """``out[i]`` = FNV-1a (64 bits) of string ``i``'s bytes, as int64 (the bits of the
    unsigned hash)."""
    for i in range(out.size):
        h = FNV_BASIS
        for j in range(offsets[i], offsets[i + 1]):
            h = (h ^ np.uint64(data[j])) * FNV_PRIME
        out[i] = np.int64(h)


@numba.njit(cache=True, nogil=True, inline="always")
def _head(data, lo, n):  # pragma: no cover - compiled
    """The first ``min(n, 8)`` bytes from ``data[lo]`` as one int64, little-endian, the
    bytes after them zero."""
    word = np.uint64(0)
    for j in range(min(n, HEAD_BYTES)):
        word |= np.uint64(data[lo + j]) << np.uint64(8 * j)
    return np.int64(word)


@numba.njit(cache=True, nogil=True)
def first_mismatch(offsets, data, col, heads, rep_offsets, rep_data):  # pragma: no cover
    """The first row ``i`` whose string is not byte for byte representative ``col[i]``,
    or −1 where every row's is.  ``heads[c]``: representative ``c``'s length and first
    bytes (:func:`_head`), one 16-byte row read (and asked for :data:`AHEAD` rows
    before, :func:`~dmixed.kernels.term_jit.prefetch_row`) where the string is at most
    :data:`HEAD_BYTES` long; the bytes after those from ``rep_data`` (representative
    ``c`` is ``rep_data[rep_offsets[c] : rep_offsets[c + 1]]``)."""
    n_rows = col.size
    for i in range(n_rows):
        if i + AHEAD < n_rows:
            prefetch_row(heads, col[i + AHEAD])  # type: ignore[call-arg]  # numba intrinsic
        c = col[i]
        lo = offsets[i]
        n = offsets[i + 1] - lo
        if heads[c, 0] != n or heads[c, 1] != _head(data, lo, n):
            return i
        if n > HEAD_BYTES:
            rep = rep_offsets[c]
            for j in range(HEAD_BYTES, n):
                if data[lo + j] != rep_data[rep + j]:
                    return i
    return -1


@numba.njit(cache=True, nogil=True)
def append_strings(offsets, data, rows, heads, rep_offsets, rep_data, start):  # pragma: no cover
    """Strings ``rows`` appended to the representatives after their first ``start``
    (``rep_offsets[start]`` set, room enough in every buffer): representative
    ``start + k`` becomes string ``rows[k]`` (its bytes, and its length and first bytes
    in ``heads``)."""
    end = rep_offsets[start]
    for k in range(rows.size):
        i = rows[k]
        lo = offsets[i]
        n = offsets[i + 1] - lo
        for j in range(n):
            rep_data[end + j] = data[lo + j]
        heads[start + k, 0] = n
        heads[start + k, 1] = _head(data, lo, n)
        end += n
        rep_offsets[start + k + 1] = end


@numba.njit(inline="always")
def _slot(h, mask):  # pragma: no cover - compiled
    """The home slot of hash ``h``: splitmix64's finalizer of its bits, masked (the
    low bits of FNV-1a alone are poorly mixed for keys that differ in one byte)."""
    z = np.uint64(h)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return np.int64(z & np.uint64(mask))


@numba.njit(cache=True, nogil=True)
def map_hashes(slots, hashes, start, col, firsts, n_known, base, limit):  # pragma: no cover
    """Columns of ``hashes[start:]`` through the open-addressing table ``slots`` (``(C,
    2)``, C a power of two: hash and column, column −1 for an empty slot; linear
    probing): ``col[i]`` the hash's column, a new hash inserted with column
    ``n_known`` (then ``n_known + 1``, …: order of first appearance) and its row written
    to ``firsts[column − base]``.  Stops before inserting the ``limit``-th column (the
    caller grows the table, :func:`rehash`, and calls again from the row returned);
    returns ``(next row, n_known)``."""
    mask = slots.shape[0] - 1
    n = hashes.size
    for i in range(start, n):
        if i + AHEAD < n:
            prefetch_row(slots, _slot(hashes[i + AHEAD], mask))  # type: ignore[call-arg]  # numba intrinsic
        h = hashes[i]
        s = _slot(h, mask)
        while True:
            c = slots[s, 1]
            if c < 0:
                if n_known >= limit:
                    return i, n_known
                slots[s, 0] = h
                slots[s, 1] = n_known
                firsts[n_known - base] = i
                col[i] = n_known
                n_known += 1
                break
            if slots[s, 0] == h:
                col[i] = c
                break
            s = (s + 1) & mask
    return n, n_known


@numba.njit(cache=True, nogil=True)
def rehash(old, new):  # pragma: no cover - compiled
    """Every filled slot of the table ``old`` inserted into the empty table ``new``
    (:func:`map_hashes`' layout)."""
    mask = new.shape[0] - 1
    for t in range(old.shape[0]):
        c = old[t, 1]
        if c >= 0:
            h = old[t, 0]
            s = _slot(h, mask)
            while new[s, 1] >= 0:
                s = (s + 1) & mask
            new[s, 0] = h
            new[s, 1] = c
