"""Text group keys mapped to a chain's columns through a hash of their bytes, with no
pandas hash table of Python strings.

A chain's accumulator (:class:`~dmixed.engines.dask.combine.GroupAccumulator`) gives each
group a column; for keys of Python ``str`` its exact path looks them up in a pandas Index
of objects (hashing and comparing every row's ``str``).  :class:`TextColumns` maps them
instead through their UTF-8 bytes laid out as an Arrow string array
(:func:`text_buffers`): a 64-bit hash of each key
(:func:`~dmixed.kernels.text_keys.string_hashes`), looked up in an int64 Index of the
hashes of the groups seen (:class:`HashColumns`), new hashes getting new columns in order
of first appearance, as the exact path numbers new keys.  A collision of two keys' hashes
would merge two groups, so every row's bytes are then checked against those of its
column's first key (:func:`~dmixed.kernels.text_keys.first_mismatch`); where one differs,
nothing is kept of the partition's mapping and the caller takes the exact path (from then
on).  Python strings are kept for the new keys only (the partial's labels).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from ...kernels.text_keys import append_strings, first_mismatch, string_hashes

#: what :func:`pandas.api.types.infer_dtype` says of keys that are all ``str``
_ALL_TEXT = "string"


def text_buffers(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(offsets, data)`` of object keys that are all Python ``str``: their UTF-8
    bytes as an Arrow ``string`` array lays them out (``offsets`` int32 ``(n + 1,)``,
    ``data`` uint8); None for any other keys (missing ones, ``bytes``, numbers, tuples,
    strings that have no UTF-8 form) or where they do not fit one such array."""
    if keys.dtype != object or not keys.size:
        return None
    if pd.api.types.infer_dtype(keys, skipna=False) != _ALL_TEXT:
        return None
    try:
        arr = pa.array(keys, type=pa.string(), from_pandas=False)
    except (pa.ArrowException, UnicodeError, OverflowError, TypeError):
        return None
    if not isinstance(arr, pa.StringArray) or arr.null_count:
        return None
    _, offset_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offset_buf, dtype=np.int32)[arr.offset : arr.offset + len(arr) + 1]
    if data_buf is None:  # all empty strings
        return offsets, np.zeros(0, dtype=np.uint8)
    return offsets, np.frombuffer(data_buf, dtype=np.uint8)


def text_hashes(keys: np.ndarray) -> np.ndarray | None:
    """64-bit hashes of keys that are all Python ``str`` (:func:`text_buffers`,
    :func:`~dmixed.kernels.text_keys.string_hashes`), None for other keys or where the
    hash does not run compiled."""
    got = text_buffers(keys)
    return None if got is None else string_hashes(*got)


class HashColumns:
    """int64 hashes → columns ``0, 1, …`` in order of first appearance: an Index of the
    hashes known, whose hash table is built once and kept, and a small Index of those
    added since, merged into the main one when it reaches a quarter of its size (as the
    accumulator's exact path keeps its keys)."""

    def __init__(self) -> None:
        self.index = pd.Index(np.empty(0, dtype=np.int64))
        self.extra = pd.Index(np.empty(0, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.index) + len(self.extra)

    def lookup(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(columns, first rows, new hashes)`` of ``hashes`` (int64 ``(n,)``): new
        hashes numbered from ``len(self)`` in order of first appearance, the row of each
        one's first appearance, and the new hashes in that order; nothing is kept until
        :meth:`commit`."""
        n_main = len(self.index)
        col = self.index.get_indexer(pd.Index(hashes))
        miss = np.flatnonzero(col < 0)
        none = np.empty(0, dtype=np.int64)
        if not miss.size:
            return col, none, none
        mk = hashes[miss]
        sub = self.extra.get_indexer(pd.Index(mk)) if len(self.extra) else np.full(mk.size, -1)
        new = np.flatnonzero(sub < 0)
        firsts, uniq = none, none
        if new.size:
            codes, uniq = pd.factorize(mk[new])
            sub[new] = len(self.extra) + codes
            # codes number the hashes in order of first appearance: a code's first row
            # is where the running maximum of the codes grows
            top = np.maximum.accumulate(codes)
            first = np.flatnonzero(np.concatenate([[True], top[1:] > top[:-1]]))
            firsts = miss[new[first]]
        col[miss] = n_main + sub
        return col, firsts, np.asarray(uniq, dtype=np.int64)

    def commit(self, fresh: np.ndarray) -> None:
        """Keep ``fresh``, the new hashes of the last :meth:`lookup`."""
        if not fresh.size:
            return
        self.extra = self.extra.append(pd.Index(fresh))
        if len(self.extra) > max(1024, len(self.index) // 4):
            self.index = self.index.append(self.extra)
            self.extra = pd.Index(np.empty(0, dtype=np.int64))

    def add(self, hashes: np.ndarray) -> None:
        """Keep every hash of ``hashes``."""
        self.commit(self.lookup(hashes)[2])


class TextColumns:
    """The columns of a chain's text keys (module doc): the hashes of the groups seen,
    the bytes of each column's first key (its length and first bytes in ``heads``, all
    its bytes in ``rep_data`` from ``rep_offsets``) and its Python string (the
    labels)."""

    def __init__(self) -> None:
        self.hashes = HashColumns()
        self.heads = np.zeros((1024, 2), dtype=np.int64)
        self.rep_offsets = np.zeros(1025, dtype=np.int64)
        self.rep_data = np.empty(1 << 16, dtype=np.uint8)
        self.labels: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self.hashes)

    def columns(self, keys: np.ndarray) -> np.ndarray | None:
        """The column of every key (object ``(n,)``), new keys getting new columns in
        order of first appearance; None (nothing kept) where the keys are not all
        ``str``, the hash does not run compiled, or a key's bytes differ from those of
        its column's first key (a collision of hashes): the caller maps them exactly."""
        got = text_buffers(keys)
        if got is None:
            return None
        offsets, data = got
        hashes = string_hashes(offsets, data)
        if hashes is None:
            return None
        col, firsts, fresh = self.hashes.lookup(hashes)
        g = len(self.hashes)
        if firsts.size:
            self._room(g + firsts.size, int(np.sum(offsets[firsts + 1] - offsets[firsts])))
            append_strings(offsets, data, firsts, self.heads, self.rep_offsets, self.rep_data, g)
        if first_mismatch(offsets, data, col, self.heads, self.rep_offsets, self.rep_data) >= 0:
            return None
        self.hashes.commit(fresh)
        if firsts.size:
            self.labels.append(keys[firsts])
        return col

    def _room(self, n_reps: int, more_bytes: int) -> None:
        """Room for ``n_reps`` representatives and ``more_bytes`` bytes after the
        representatives kept (geometric growth)."""
        if n_reps > self.heads.shape[0]:
            size = max(n_reps, 2 * self.heads.shape[0])
            heads = np.zeros((size, 2), dtype=np.int64)
            heads[: self.heads.shape[0]] = self.heads
            offsets = np.zeros(size + 1, dtype=np.int64)
            offsets[: self.rep_offsets.size] = self.rep_offsets
            self.heads, self.rep_offsets = heads, offsets
        end = int(self.rep_offsets[len(self.hashes)]) + more_bytes
        if end > self.rep_data.size:
            grown_data = np.empty(max(end, 2 * self.rep_data.size), dtype=np.uint8)
            grown_data[: self.rep_data.size] = self.rep_data
            self.rep_data = grown_data

    def keys(self) -> np.ndarray:
        """The keys of the columns, in column order (object)."""
        if not self.labels:
            return np.empty(0, dtype=object)
        return np.concatenate(self.labels)
