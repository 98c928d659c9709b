"""Text group keys mapped to a chain's columns through a hash of their bytes, with no
pandas hash table of Python strings.

A chain's accumulator (:class:`~dmixed.engines.dask.combine.GroupAccumulator`) gives each
group a column; for keys of Python ``str`` its exact path looks them up in a pandas Index
of objects (hashing and comparing every row's ``str``).  :class:`TextColumns` maps them
instead through their UTF-8 bytes laid out as an Arrow string array
(:func:`text_buffers`): a 64-bit hash of each key
(:func:`~dmixed.kernels.text_keys.string_hashes`), looked up in a compiled table of the
hashes of the groups seen (:class:`~dmixed.kernels.text_keys.HashColumns`), new hashes
getting new columns in order of first appearance, as the exact path numbers new keys.
A collision of two keys' hashes would merge two groups, so every row's bytes are then
checked against those of its column's first key
(:func:`~dmixed.kernels.text_keys.first_mismatch`); where one differs, the caller takes
the exact path from then on (with the labels of the partitions mapped before).
Python strings are kept for the new keys only (the partial's labels).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from ...kernels.text_keys import HashColumns, append_strings, first_mismatch, string_hashes

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
    return arrow_buffers(arr)


def arrow_buffers(keys: pa.Array) -> tuple[np.ndarray, np.ndarray] | None:
    """``(offsets, data)`` of an Arrow ``string`` array without nulls (as
    :func:`text_buffers` gives them: views of its buffers, no copy); None for any
    other array."""
    if not isinstance(keys, pa.StringArray) or keys.null_count or not len(keys):
        return None
    _, offset_buf, data_buf = keys.buffers()
    offsets = np.frombuffer(offset_buf, dtype=np.int32)[keys.offset : keys.offset + len(keys) + 1]
    if data_buf is None:  # all empty strings
        return offsets, np.zeros(0, dtype=np.uint8)
    return offsets, np.frombuffer(data_buf, dtype=np.uint8)


def text_objects(keys):
    """Keys as numpy: an Arrow array (text keys read as Arrow,
    :func:`~dmixed.engines.dask.parquet_direct.read_columns`) as an object array of
    Python ``str``, as Dask's reader gives them; any other keys as they are."""
    if isinstance(keys, pa.Array):
        return np.asarray(keys.to_numpy(zero_copy_only=False), dtype=object)
    return keys


def text_hashes(keys) -> np.ndarray | None:
    """64-bit hashes of keys that are all Python ``str``, or of an Arrow ``string``
    array (:func:`text_buffers`, :func:`arrow_buffers`,
    :func:`~dmixed.kernels.text_keys.string_hashes`), None for other keys or where the
    hash does not run compiled."""
    got = arrow_buffers(keys) if isinstance(keys, pa.Array) else text_buffers(keys)
    return None if got is None else string_hashes(*got)


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

    def columns(self, keys) -> np.ndarray | None:
        """The column of every key (object ``(n,)``, or an Arrow ``string`` array), new
        keys getting new columns in order of first appearance; None where the keys are
        not all ``str`` or the hash does not run compiled (nothing kept), or where a
        key's bytes differ from those of its column's first key (a collision of hashes:
        the hashes were kept, this map is not to be used again, its :meth:`keys` are
        those of the partitions mapped before): the caller maps them exactly."""
        got = arrow_buffers(keys) if isinstance(keys, pa.Array) else text_buffers(keys)
        if got is None:
            return None
        offsets, data = got
        hashes = string_hashes(offsets, data)
        if hashes is None:
            return None
        g = len(self.hashes)
        col, firsts = self.hashes.lookup(hashes)
        if firsts.size:
            self._room(g, firsts.size, int(np.sum(offsets[firsts + 1] - offsets[firsts])))
            append_strings(offsets, data, firsts, self.heads, self.rep_offsets, self.rep_data, g)
        if first_mismatch(offsets, data, col, self.heads, self.rep_offsets, self.rep_data) >= 0:
            return None
        if firsts.size:  # Python strings for the new groups only
            new = keys.take(firsts) if isinstance(keys, pa.Array) else keys[firsts]
            self.labels.append(text_objects(new))
        return col

    def _room(self, kept: int, more: int, more_bytes: int) -> None:
        """Room for ``more`` representatives and ``more_bytes`` bytes after the first
        ``kept`` (geometric growth)."""
        n_reps = kept + more
        if n_reps > self.heads.shape[0]:
            size = max(n_reps, 2 * self.heads.shape[0])
            heads = np.zeros((size, 2), dtype=np.int64)
            heads[: self.heads.shape[0]] = self.heads
            offsets = np.zeros(size + 1, dtype=np.int64)
            offsets[: self.rep_offsets.size] = self.rep_offsets
            self.heads, self.rep_offsets = heads, offsets
        end = int(self.rep_offsets[kept]) + more_bytes
        if end > self.rep_data.size:
            grown_data = np.empty(max(end, 2 * self.rep_data.size), dtype=np.uint8)
            grown_data[: self.rep_data.size] = self.rep_data
            self.rep_data = grown_data

    def keys(self) -> np.ndarray:
        """The keys of the columns, in column order (object)."""
        if not self.labels:
            return np.empty(0, dtype=object)
        return np.concatenate(self.labels)
