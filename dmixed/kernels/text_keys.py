"""Text keys from their bytes: the calls into the compiled passes of
:mod:`~dmixed.kernels.text_jit` (numba imported on first use only, where the per-row
pass runs compiled: :func:`~dmixed.kernels.compiled.rows_compiled`).

Strings are given as Arrow lays them out: ``offsets`` (int32 or int64, ``n + 1``) into
``data`` (uint8), string ``i`` the bytes ``data[offsets[i] : offsets[i + 1]]``.
"""

from __future__ import annotations

import numpy as np

from .compiled import rows_compiled


def string_hashes(offsets: np.ndarray, data: np.ndarray) -> np.ndarray | None:
    """A 64-bit hash of every string's bytes (FNV-1a, Fowler–Noll–Vo), in one compiled
    pass.

    Parameters
    ----------
    offsets : ndarray of int32 or int64 (n + 1,)
        Where each string starts in ``data`` (and the last one ends).
    data : ndarray of uint8
        The strings' UTF-8 bytes.

    Returns
    -------
    ndarray of int64 (n,) or None
        The hashes' bits as int64; None where the pass does not run compiled (then
        the caller maps the keys another way).  Equal strings have equal hashes;
        distinct strings may too (a collision), which the caller checks for
        (:func:`first_mismatch`).
    """
    n = offsets.size - 1
    if n < 0 or not rows_compiled(n):
        return None
    from .text_jit import hash_strings  # numba: imported on first use only

    out = np.empty(n, dtype=np.int64)
    hash_strings(offsets, data, out)
    return out


def first_mismatch(
    offsets: np.ndarray,
    data: np.ndarray,
    col: np.ndarray,
    heads: np.ndarray,
    rep_offsets: np.ndarray,
    rep_data: np.ndarray,
) -> int:
    """The first string that is not byte for byte the representative of the column it
    was mapped to, or −1 (every one is).

    Parameters
    ----------
    offsets, data : ndarray
        The strings (module doc), ``n`` of them.
    col : ndarray of int64 (n,)
        Each string's column, ``0 <= col < G``.
    heads : ndarray of int64 (≥ G, 2), C-contiguous
        Each representative's length and first 8 bytes as one little-endian int64 (the
        bytes after the string zero), as :func:`append_strings` writes them.
    rep_offsets : ndarray of int64 (≥ G + 1,)
        Where each column's representative starts in ``rep_data``.
    rep_data : ndarray of uint8
        The representatives' bytes.

    Returns
    -------
    int
        The row, or −1.
    """
    from .text_jit import first_mismatch as compiled  # numba: imported on first use only

    return int(compiled(offsets, data, col, heads, rep_offsets, rep_data))


def append_strings(
    offsets: np.ndarray,
    data: np.ndarray,
    rows: np.ndarray,
    heads: np.ndarray,
    rep_offsets: np.ndarray,
    rep_data: np.ndarray,
    start: int,
) -> None:
    """Write strings ``rows`` (int64 positions) after the first ``start``
    representatives: representative ``start + k`` becomes string ``rows[k]`` (its
    length and first bytes in ``heads``, its bytes in ``rep_data``; ``rep_offsets[start]``
    set; the buffers hold room enough: ``start + len(rows)`` heads, ``start + len(rows)
    + 1`` offsets and ``rep_offsets[start]`` plus the strings' bytes)."""
    from .text_jit import append_strings as compiled  # numba: imported on first use only

    compiled(offsets, data, rows, heads, rep_offsets, rep_data, np.int64(start))


class HashColumns:
    """int64 hashes → columns ``0, 1, …`` in order of first appearance: an
    open-addressing table of the hashes seen (compiled, :func:`~dmixed.kernels.text_jit.map_hashes`;
    at most half full, doubled when it would be more), whose slot for a row some rows
    ahead is asked for before it is read (many misses in flight at once).  Call only
    where the per-row pass runs compiled (as :func:`string_hashes` did)."""

    #: slots of a new table
    FIRST_SLOTS = 1024

    def __init__(self) -> None:
        self.slots = np.full((self.FIRST_SLOTS, 2), -1, dtype=np.int64)
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def lookup(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(columns, first rows)`` of ``hashes`` (int64 ``(n,)``): new hashes get
        columns from ``len(self)`` on, in order of first appearance, and are kept;
        ``first rows[k]`` is the row where new column ``len(self) + k`` (counted before
        the call) first appears."""
        from .text_jit import map_hashes, rehash  # numba: imported on first use only

        hashes = np.ascontiguousarray(hashes, dtype=np.int64)
        col = np.empty(hashes.size, dtype=np.int64)
        firsts = np.empty(hashes.size, dtype=np.int64)
        base = self.n
        row = 0
        while True:
            limit = self.slots.shape[0] // 2
            row, self.n = map_hashes(self.slots, hashes, row, col, firsts, self.n, base, limit)
            if row >= hashes.size:
                return col, firsts[: self.n - base]
            grown = np.full((2 * self.slots.shape[0], 2), -1, dtype=np.int64)
            rehash(self.slots, grown)
            self.slots = grown
