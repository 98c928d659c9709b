"""Global levels of the columns used as factors, and codes of values in them.

Levels: strings and unknown-category columns use their sorted distinct values;
categoricals use their declared categories that occur in the data, in declared order,
except unordered categoricals of numbers, whose levels are sorted as numbers
(:func:`categorical_levels`).
Codes are positions in the global levels: -1 for a missing value, -2 for a value not
among the levels (a partition may hold any subset of the levels).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .dtypes import (
    CATEGORICAL,
    NUMBER_CLASSES,
    NUMERIC,
    NUMERIC_LEVELS,
    column_class,
    column_kind,
    native_dtype,
    native_values_exact,
    py_scalars,
)
from .missing import missing_mask

__all__ = [
    "MISSING_CODE",
    "UNKNOWN_CODE",
    "level_codes",
    "object_index",
    "arrow_text",
    "CodedText",
    "ArrayLevels",
    "ListedOnUse",
    "coded_text",
    "hashed_coded_text",
    "packed_coded_text",
    "text_array",
    "text_order",
    "level_positions",
    "native_level_positions",
    "sorted_integers",
    "coded_integers",
    "categorical_levels",
    "present_levels",
    "categorical_codes",
    "sorted_levels",
    "unique_values",
    "declared_observed",
    "prototype",
    "formulaic_levels",
]

MISSING_CODE = -1
UNKNOWN_CODE = -2


def level_codes(
    s: pd.Series,
    levels: Sequence,
    index: Callable[[], pd.Index] | None = None,
    text: Callable[[], Any] | None = None,
) -> np.ndarray:
    """Codes of the values of ``s`` in the global ``levels``: -1 missing, -2 unknown.

    ``index``: a function giving the levels as an object index (cached by the caller;
    None: made from ``levels``), asked for only where values are looked up as Python
    objects: not for a categorical whose categories are the levels, nor for an
    Arrow-backed text column whose values ``text`` finds.  ``text``: a function giving
    the levels as an Arrow string array (cached by the caller), in which the values of
    an Arrow-backed text column are looked up by Arrow's hashing (``index_in``);
    None: looked up in the index.
    """
    if index is None:
        index = functools.partial(object_index, levels)
    dt = s.dtype
    cls = column_class(dt)
    if cls == "categorical":
        own = categorical_codes(s, levels)
        if own is not None:
            return own
        cats = dt.categories
        return _remap(s.cat.codes.to_numpy(), index().get_indexer(cats.to_numpy(dtype=object)))
    if cls in ("arrow-dict", "string") and (
        isinstance(dt, pd.ArrowDtype)
        or (isinstance(dt, pd.StringDtype) and dt.storage == "pyarrow")
    ):
        return _arrow_codes(s, index, text)
    if cls in NUMBER_CLASSES:
        # labels given as numbers (numeric labels, or an all-missing partition)
        values = s.to_numpy(dtype=object, na_value=None)
    else:
        values = s.to_numpy(dtype=object)
    fc, uniques = pd.factorize(values, use_na_sentinel=True)
    codes = _remap(fc, index().get_indexer(np.asarray(uniques, dtype=object)))
    codes[missing_mask(values, CATEGORICAL)] = MISSING_CODE
    return codes


def object_index(levels: Sequence) -> pd.Index:
    """The levels as an object index (what :func:`level_codes` looks values up in)."""
    return pd.Index(np.asarray(list(levels), dtype=object))


def _remap(raw: np.ndarray, mapping: np.ndarray) -> np.ndarray:
    """Local codes (-1 missing) -> global codes (-1 missing, -2 unknown)."""
    raw = np.asarray(raw, dtype=np.int64)
    if not len(mapping):
        return np.where(raw >= 0, UNKNOWN_CODE, MISSING_CODE).astype(np.int64)
    mapping = np.where(mapping >= 0, mapping, UNKNOWN_CODE)
    return np.where(raw >= 0, mapping[np.maximum(raw, 0)], MISSING_CODE).astype(
        np.int64, copy=False
    )


def arrow_text(s: pd.Series):
    """The Arrow chunks of an Arrow-backed text column (``str``, ``string[pyarrow]``,
    Arrow ``string`` / ``large_string``), or None for any other column."""
    import pyarrow as pa

    dt = s.dtype
    arrow = isinstance(dt, pd.ArrowDtype) or (
        isinstance(dt, pd.StringDtype) and dt.storage == "pyarrow"
    )
    if not arrow:
        return None
    arr = s.array.__arrow_array__()
    if not isinstance(arr, pa.ChunkedArray):
        arr = pa.chunked_array([arr])
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return None
    return arr


@dataclass(frozen=True)
class CodedText:
    """An Arrow-backed text column's distinct non-missing values (of the rows kept),
    sorted as Python sorts them (``levels``, an Arrow string array: :func:`sorted_levels`
    of the values), and the position of each row's value among them (``codes``, int64,
    (n,), every row: :data:`MISSING_CODE` where missing, :data:`UNKNOWN_CODE` where not
    a level): what :func:`level_codes` gives the column with those levels."""

    levels: Any
    codes: np.ndarray


def coded_text(s: pd.Series, kept: np.ndarray | None = None) -> CodedText | None:
    """The sorted levels and the codes of an Arrow-backed text column (:class:`CodedText`;
    None for any other column), the levels those of the rows ``kept`` (a boolean mask;
    None: all): :func:`packed_coded_text` where the values are short, else
    :func:`hashed_coded_text`; no Python object per value, no second look-up of the
    rows."""
    arr = arrow_text(s)
    if arr is None:
        return None
    coded = packed_coded_text(arr, kept)
    return coded if coded is not None else hashed_coded_text(arr, kept)


def hashed_coded_text(arr, kept: np.ndarray | None = None) -> CodedText:
    """:func:`coded_text` of an Arrow string (chunked) array, from one dictionary encoding
    of its values (Arrow's hashing) and one sort of the distinct values (their UTF-8
    bytes, whose order is the code points' order)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    chunks = arr.dictionary_encode().chunks
    if len({len(ch.dictionary) for ch in chunks}) > 1:  # (chunks share one dictionary)
        chunks = arr.combine_chunks().dictionary_encode().chunks
    if not chunks:
        return CodedText(pa.array([], arr.type), np.empty(0, dtype=np.int64))
    distinct = chunks[-1].dictionary
    ind = np.concatenate(
        [pc.fill_null(ch.indices, -1).to_numpy(zero_copy_only=False) for ch in chunks]
    )
    # rank[i]: the level of distinct value i; the last entry is read by missing values
    rank = np.full(len(distinct) + 1, UNKNOWN_CODE, dtype=np.int64)
    rank[-1] = MISSING_CODE
    if kept is not None:
        present = np.zeros(len(distinct) + 1, dtype=bool)
        present[ind[kept]] = True
        where = np.flatnonzero(present[:-1])
        distinct = distinct.take(where)
    order = text_order(distinct)
    if order is None:
        order = pc.array_sort_indices(distinct).to_numpy()
    rank[order if kept is None else where[order]] = np.arange(len(order))
    return CodedText(distinct.take(order), rank[ind])


#: the most bytes of a value :func:`packed_coded_text` reads (two 64-bit words)
PACKED_TEXT_BYTES = 16


def packed_coded_text(arr, kept: np.ndarray | None = None) -> CodedText | None:
    """:func:`coded_text` of an Arrow string (chunked) array whose values are short: each
    row's value, its bytes (at most 16, read as two big-endian words from the data buffer
    and zero-padded: compared as numbers, the UTF-8 bytes' order, so Python's) less the
    smallest value (the bits all values share drop out, :func:`_text_numbers`), is
    sorted as a number.  Where that number, the length (where lengths differ: a value
    before its extensions by NUL bytes) and the row's position fit in one 64-bit word,
    one :func:`numpy.sort` of the words gives the runs of equal values, in order: the
    levels and every row's code; else one :func:`numpy.lexsort` of the two words and
    the length; no hashing either way.  Values of one length are read at a stride (no
    gather).  None where a value is longer than 16 bytes (or no value is there)."""
    import pyarrow as pa

    a = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    n = len(a)
    if n == 0 or n - a.null_count == 0 or a.buffers()[1] is None:
        return None
    offsets, data = _text_buffers(a)
    lengths = np.diff(offsets)
    rows = None if a.null_count == 0 else np.flatnonzero(a.is_valid().to_numpy(False))
    valid = lengths if rows is None else lengths[rows]
    shortest, longest = int(valid.min()), int(valid.max())
    if longest > PACKED_TEXT_BYTES:
        return None
    m = n if rows is None else rows.size
    high, value = _text_numbers(offsets, data, lengths, rows, valid, longest)
    len_bits = (longest - shortest).bit_length()
    pos_bits = (m - 1).bit_length()
    span_bits = 64 + int(high.max()).bit_length() if high is not None else 0
    span_bits = span_bits or int(value.max()).bit_length()
    if span_bits + len_bits + pos_bits <= 64:  # one word: value, length, position
        keys = value
        if span_bits:
            keys <<= np.uint64(len_bits + pos_bits)
        if len_bits:
            keys |= (valid - shortest).astype(np.uint64) << np.uint64(pos_bits)
        keys |= np.arange(m, dtype=np.uint64)
        keys.sort()
        at = (keys & np.uint64((1 << pos_bits) - 1)).astype(np.intp)  # rows in order
        value = keys >> np.uint64(pos_bits) if pos_bits else keys
        new = np.empty(m, dtype=bool)
        new[0] = True
        np.not_equal(value[1:], value[:-1], out=new[1:])
    else:  # two words (and the length): sorted in turn, the rows' order found
        words = [valid] if len_bits else []
        words += [value] if high is None else [value, high]
        at = np.lexsort(words)
        new = np.zeros(m, dtype=bool)
        new[0] = True
        for w in words:
            w = w[at]
            new[1:] |= w[1:] != w[:-1]
    heads = np.flatnonzero(new)  # each run's first (a distinct value)
    level = np.arange(heads.size, dtype=np.int64)
    if kept is not None:
        kept_rows = kept if rows is None else kept[rows]
        present = np.logical_or.reduceat(kept_rows[at], heads)
        level = np.where(present, np.cumsum(present) - 1, UNKNOWN_CODE)
        heads = heads[present]
    code = np.empty(m, dtype=np.int64)
    code[at] = level[np.cumsum(new) - 1]
    if rows is None:
        codes = code
    else:
        codes = np.full(n, MISSING_CODE, dtype=np.int64)
        codes[rows] = code
    firsts = at[heads] if rows is None else rows[at[heads]]
    return CodedText(a.take(pa.array(firsts)), codes)


def _text_numbers(
    offsets: np.ndarray,
    data: np.ndarray,
    lengths: np.ndarray,
    rows: np.ndarray | None,
    valid: np.ndarray,
    longest: int,
) -> tuple[np.ndarray | None, np.ndarray]:
    """Each value of the ``rows`` (None: all) of an Arrow string array's buffers as a
    number of ``8 * longest`` bits (its bytes, big-endian, zero-padded to ``longest``;
    ``longest`` at most 16) less the smallest: the high and low 64-bit words (uint64;
    the high None where ``longest`` is at most 8 or every high word is zero).  Values of
    one length (every row) are read at a stride; the bytes read beyond a value (the
    next value's) are shifted out or masked."""
    wide = longest > 8
    n = lengths.size
    if int(offsets[-1]) + 16 > data.size:  # (every value's two words within the buffer)
        data = np.concatenate([data, np.zeros(16, dtype=np.uint8)])
    # words[i]: the 8 bytes from byte i, big-endian
    words = np.ndarray((data.size - 7,), dtype=">u8", buffer=data, strides=(1,))
    first = int(offsets[0])
    if longest == 0:
        return None, np.zeros(valid.size, dtype=np.uint64)
    if int(lengths.min()) == int(lengths.max()):  # every row one length: a stride
        parts = [
            words[first + 8 * j : first + 8 * j + n * longest : longest]
            for j in ((0, 1) if wide else (0,))
        ]
        high, *rest = ((p if rows is None else p[rows]).astype(np.uint64) for p in parts)
        low = rest[0] if wide else None
    else:
        starts = offsets[:-1] if rows is None else offsets[:-1][rows]
        kept_bytes = np.array([((1 << 8 * k) - 1) << 8 * (8 - k) for k in range(9)], np.uint64)
        high = words[starts].astype(np.uint64)
        high &= kept_bytes[np.minimum(valid, 8)]  # (the bytes after a value zero)
        low = None
        if wide:
            low = words[starts + 8].astype(np.uint64)
            low &= kept_bytes[np.clip(valid - 8, 0, 8)]
    if not wide:  # one word: its bytes right-aligned
        high >>= np.uint64(64 - 8 * longest)
        high -= np.uint64(int(high.min()))
        return None, high
    shift = 128 - 8 * longest  # (the two words right-aligned as one 128-bit number)
    if shift:
        low >>= np.uint64(shift)
        low |= high << np.uint64(64 - shift)
        high >>= np.uint64(shift)
    top = int(high.min())
    bottom = int(low[high == top].min())  # the smallest number: (top, bottom)
    borrow = low < np.uint64(bottom)
    low -= np.uint64(bottom)  # (modulo 2**64; the borrow taken from the high word)
    high -= np.uint64(top)
    high -= borrow
    return (high if high.any() else None), low


class ListedOnUse(Sequence):
    """A read-only sequence listed on first use (:meth:`tolist`, made once by the
    subclass), equal to the list of the same values; its length known without the
    list."""

    def tolist(self) -> list:
        raise NotImplementedError

    def __getitem__(self, i):
        return self.tolist()[i]

    def __iter__(self):
        return iter(self.tolist())

    def __eq__(self, other) -> bool:
        if isinstance(other, (list, tuple, type(self))):
            return self.tolist() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  (equal to a list, which has none)

    def __repr__(self) -> str:
        return repr(self.tolist())


class ArrayLevels(ListedOnUse):
    """Sorted levels held as the array they were found as (:attr:`array`: a numpy array
    of numbers, or an Arrow string array), listed as Python values on first use: a
    component of 10^4 levels costs no Python object per level until its labels are
    shown.  A read-only sequence equal to the list of the same values; pickled as the
    array (a spec shipped to Dask workers looks text up in it, :func:`level_codes`,
    with no array rebuilt)."""

    def __init__(self, array, listed: list | None = None) -> None:
        self.array = array
        self._list = listed  # (the list too, where the levels were found as one)

    @property
    def text(self):
        """The levels as an Arrow string array, or None where they are numbers."""
        return None if isinstance(self.array, np.ndarray) else self.array

    def tolist(self) -> list:
        """The levels as a list of Python values (made once)."""
        if self._list is None:
            a = self.array
            self._list = a.tolist() if isinstance(a, np.ndarray) else a.to_pylist()
        return self._list

    def __len__(self) -> int:
        return len(self.array)

    def __reduce__(self):
        return ArrayLevels, (self.array,)


def _text_buffers(arr) -> tuple[np.ndarray, np.ndarray]:
    """The offsets (n + 1,) of an Arrow string array's values into its data buffer, and
    that buffer's bytes (uint8; empty where there is none), read in place."""
    import pyarrow as pa

    wide = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    _, offsets_buf, data_buf = arr.buffers()
    n = len(arr)
    offsets = np.frombuffer(offsets_buf, wide, n + 1, arr.offset * np.dtype(wide).itemsize)
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.empty(0, np.uint8)
    return offsets, data


#: the most 8-byte words :func:`text_order` sorts by (beyond: Arrow's sort)
TEXT_KEY_WORDS = 3


def text_order(arr) -> np.ndarray | None:
    """The permutation sorting an Arrow string array without missing values by its UTF-8
    bytes (Python's order of the strings), by numpy: the bytes after those all values
    begin with, zero-padded, and the length after them, as at most
    :data:`TEXT_KEY_WORDS` big-endian words compared in turn (``numpy.lexsort``; the
    values are distinct; in one word, with each value's position in the bits left,
    sorted by ``numpy.sort``: no argsort); None where the values are longer than that."""

    n = len(arr)
    offsets, data = _text_buffers(arr)
    starts, lengths = offsets[:-1].astype(np.int64), np.diff(offsets).astype(np.int64)
    if n == 0 or int(lengths.max()) == 0:
        return np.arange(n)
    shortest, longest = int(lengths.min()), int(lengths.max())
    p = 0  # the bytes every value begins with
    while p < shortest and (data[starts + p] == data[starts[0] + p]).all():
        p += 1
    words = -(-(longest - p + 1) // 8)  # the bytes after them and one for the length
    if words > TEXT_KEY_WORDS:
        return None
    keys = np.zeros((words, n), dtype=np.uint64)
    for j in range(longest - p):
        byte = data[np.minimum(starts + (p + j), data.size - 1)].astype(np.uint64)
        if p + j >= shortest:
            byte[lengths <= p + j] = 0
        keys[j // 8] |= byte << np.uint64(56 - 8 * (j % 8))
    if words > 1:
        keys[-1] |= (lengths - p).astype(np.uint64)  # (in the last byte: fewer than 256)
        return np.lexsort(keys[::-1])
    # one word: the length right after the bytes, each value's position in the bits
    # below (the keys are distinct: the positions never decide), sorted as numbers
    free = 56 - 8 * (longest - p)
    keys[0] |= (lengths - p).astype(np.uint64) << np.uint64(free)
    if n > 1 << free:
        return np.argsort(keys[0])
    keys[0] |= np.arange(n, dtype=np.uint64)
    return (np.sort(keys[0]) & np.uint64((1 << free) - 1)).astype(np.intp)


def text_array(levels: list):
    """``levels`` as an Arrow string array, or None where they are not all text."""
    import pyarrow as pa

    try:
        arr = pa.array(levels)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    return arr if pa.types.is_string(arr.type) else None


def _text_mapping(dictionary, text: Callable[[], Any] | None) -> np.ndarray | None:
    """Positions of an Arrow string ``dictionary``'s values among the levels ``text()``
    (-1 where not a level), by Arrow's hashing; None where the levels are not text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if text is None or not (
        pa.types.is_string(dictionary.type) or pa.types.is_large_string(dictionary.type)
    ):
        return None
    levels = text()
    if levels is None:
        return None
    found = pc.index_in(dictionary, value_set=levels.cast(dictionary.type))
    return pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)


def _arrow_codes(
    s: pd.Series, index: Callable[[], pd.Index], text: Callable[[], Any] | None = None
) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = s.array.__arrow_array__()
    chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
    out = []
    for chunk in chunks:
        if not pa.types.is_dictionary(chunk.type):
            chunk = chunk.dictionary_encode()
        mapping = _text_mapping(chunk.dictionary, text)
        if mapping is None:
            mapping = index().get_indexer(np.asarray(chunk.dictionary.to_pylist(), dtype=object))
        ind = pc.fill_null(chunk.indices, MISSING_CODE).to_numpy(zero_copy_only=False)
        out.append(_remap(ind, mapping))
    if not out:
        return np.empty(0, dtype=np.int64)
    return np.concatenate(out)


#: integer levels are numbered through a table by value (not searched, not sorted) when
#: their range spans at most this many times the values, plus :data:`LOOKUP_SLACK`
LOOKUP_PER_ROW = 4
LOOKUP_SLACK = 1 << 16


def _as_offsets(values: np.ndarray, low: int, high: int, size: int) -> np.ndarray | None:
    """``values - low`` (int64) where integers from ``low`` to ``high`` span a narrow
    range (:data:`LOOKUP_PER_ROW` times ``size``, plus :data:`LOOKUP_SLACK`), else None."""
    if values.dtype.kind not in "iu" or high - low >= LOOKUP_PER_ROW * size + LOOKUP_SLACK:
        return None
    if values.dtype.kind == "u" and high >= 1 << 63:
        return None  # (beyond int64)
    return values.astype(np.int64, copy=False) - low


def sorted_integers(values: np.ndarray) -> np.ndarray:
    """The distinct values of an integer array, sorted (``.tolist()``: their
    :func:`sorted_levels`): in a narrow range by a bitmap of the values seen (time
    linear in the values and the range), else by :func:`numpy.unique`."""
    return coded_integers(values)[0]


def coded_integers(values: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`sorted_integers` of an integer array and, where found by the bitmap, each
    value's position among them (int64: what :func:`level_positions` gives; None
    otherwise): the offset from the first where they are every integer of their range,
    else the count of levels below, read from the bitmap's running sum."""
    if values.size == 0:
        return values[:0], None
    low, high = int(values.min()), int(values.max())
    offsets = _as_offsets(values, low, high, values.size)
    if offsets is None:
        return np.unique(values), None
    seen = np.zeros(high - low + 1, dtype=bool)
    seen[offsets] = True
    levels = np.flatnonzero(seen) + low
    if levels.size == seen.size:  # low, low + 1, …, high
        return levels, offsets
    return levels, np.cumsum(seen, dtype=np.int64)[offsets] - 1


def level_positions(levels: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Position of every value among the sorted ``levels`` (same dtype), int64,
    :data:`UNKNOWN_CODE` where a value is not a level (compared exactly, in that
    dtype): for integer levels that are every integer of their range, the value's offset
    from the first; for integer levels of a narrow range, through one table indexed by
    value (time linear in the values); otherwise a binary search."""
    if levels.size == 0:
        return np.full(values.shape, UNKNOWN_CODE, dtype=np.int64)
    if values.size == 0:
        return np.empty(values.shape, dtype=np.int64)
    if levels.dtype.kind in "iu" and values.dtype.kind in "iu":
        low, high = int(levels[0]), int(levels[-1])
        offsets = _as_offsets(levels, low, high, values.size)
        if offsets is not None and low <= int(values.min()) and int(values.max()) <= high:
            if high - low + 1 == levels.size:  # 0, 1, …, L-1 (or from any first)
                return np.subtract(values.astype(np.int64, copy=False), low)
            table = np.full(high - low + 1, UNKNOWN_CODE, dtype=np.int64)
            table[offsets] = np.arange(levels.size)
            return table[values.astype(np.int64, copy=False) - low]
    pos = np.searchsorted(levels, values)
    found = levels[np.minimum(pos, levels.size - 1)] == values
    return np.where(found, pos, UNKNOWN_CODE)


def native_level_positions(levels: np.ndarray, s: pd.Series, native: str) -> np.ndarray:
    """Positions of ``s`` among ``levels`` (:func:`level_positions` of its values in the
    native dtype), :data:`UNKNOWN_CODE` where a value is not exactly one of that dtype
    (2.5 for integer levels is no level, not 2:
    :func:`~dmixed.design.dtypes.native_values_exact`)."""
    values, inexact = native_values_exact(s, native)
    return np.where(inexact, UNKNOWN_CODE, level_positions(levels, values))


def sorted_levels(values) -> list:
    """Distinct values, sorted (by type name and repr where they do not compare)."""
    vals = list(dict.fromkeys(values))
    try:
        return sorted(vals)
    except TypeError:
        return sorted(vals, key=lambda v: (type(v).__name__, repr(v)))


def unique_values(s: pd.Series) -> list:
    """Distinct non-missing values of a column (of a categorical: the categories present)."""
    kind = CATEGORICAL if column_kind(s.dtype) == CATEGORICAL else NUMERIC
    s = s[~missing_mask(s, kind)]
    if isinstance(s.dtype, pd.CategoricalDtype):
        return _present_categories(s.dtype.categories, s.cat.codes.to_numpy())
    return py_scalars(s.drop_duplicates().tolist())


def _present_categories(categories: pd.Index, codes: np.ndarray) -> list:
    """The categories whose codes occur (``codes`` without missing ones), in declared
    order: counted from the codes (a bitmap, no sort); Python scalars (only an object
    index can hold numpy scalars)."""
    seen = np.zeros(len(categories), dtype=bool)
    seen[codes] = True
    present = categories[seen].tolist()
    return py_scalars(present) if categories.dtype == object else present


def categorical_levels(dtype: pd.CategoricalDtype, observed) -> list:
    """The levels of a categorical column holding the ``observed`` categories.

    Declared categories that occur, in declared order; for an unordered categorical of
    numbers, the observed numbers sorted, so that every reader of the same data gives
    the same levels (``pd.read_parquet`` declares hive partition keys in text order,
    ``dd.read_parquet`` in numeric order).
    """
    if not dtype.ordered and column_class(dtype.categories.dtype) in NUMBER_CLASSES:
        return sorted_levels(observed)
    return declared_observed(dtype, observed)


def present_levels(s: pd.Series) -> list | ArrayLevels:
    """:func:`categorical_levels` of the categories present in a pandas categorical
    column (missing values left out), found from its codes; integer categories declared
    ascending (as pandas infers them) are their sorted levels already (no sort; kept as
    their array, :class:`ArrayLevels`)."""
    dtype = s.dtype
    categories = dtype.categories
    codes = s.cat.codes.to_numpy()
    if not dtype.ordered and categories.dtype.kind in "iu":
        if categories.is_monotonic_increasing:  # (categories are distinct)
            seen = np.zeros(len(categories) + 1, dtype=bool)
            seen[codes] = True  # (a missing value's -1 marks the last, not a category)
            return ArrayLevels(categories.to_numpy()[seen[:-1]])
    observed = _present_categories(categories, codes[codes >= 0])
    return categorical_levels(dtype, observed)


def categorical_codes(s: pd.Series, levels: Sequence) -> np.ndarray | None:
    """The codes of a pandas categorical column among ``levels`` where those are its
    declared categories in declared order: its own codes, int64 (-1 missing; what
    :func:`level_codes` gives it); None where they are not."""
    categories = s.dtype.categories
    if len(categories) != len(levels):
        return None
    if isinstance(levels, ArrayLevels) and levels.text is None:  # numbers: as arrays
        if not np.array_equal(categories.to_numpy(), levels.array):
            return None
    elif categories.tolist() != levels:
        return None
    return s.cat.codes.to_numpy().astype(np.int64)


def declared_observed(dtype: pd.CategoricalDtype, observed) -> list:
    """Declared categories that occur in the data, in declared order."""
    seen = set(observed)
    return [v for v in py_scalars(dtype.categories.tolist()) if v in seen]


def formulaic_levels(values, native: str | None, levels: list):
    """The values of a column read as levels (:data:`NUMERIC_LEVELS`) as formulaic gets
    them: booleans as a numpy boolean array, other values as they are (``C()`` makes
    them a factor).  Booleans stay booleans, not a Categorical, so that an expression
    computes on them as patsy's (``I(f | h)``: a Categorical has no ``|``); the
    materializer reads a boolean factor as patsy does, levels False and True
    (:class:`~dmixed.design.patsy_coding.PatsyMaterializer`)."""
    if native != "bool":
        return values
    return np.asarray(values, dtype=bool)


def prototype(cols, kinds: dict, native: dict, levels: dict, size: int | None) -> pd.DataFrame:
    """A small frame holding every level of every factor column of ``cols``.

    ``size`` rows (None: as many as the most levels, at least 2); numeric columns get
    non-constant values.  formulaic learns its specs (column names, encodings) from it.
    """
    if size is None:
        factors = [c for c in cols if kinds[c] in (CATEGORICAL, NUMERIC_LEVELS)]
        size = max([2] + [len(levels[c]) for c in factors])
    idx = np.arange(size)
    data = {}
    for c in cols:
        kind = kinds[c]
        if kind == CATEGORICAL:
            lv = levels[c]
            data[c] = pd.Categorical.from_codes(idx % len(lv), dtype=pd.CategoricalDtype(list(lv)))
        elif kind == NUMERIC_LEVELS:
            lv = np.asarray(levels[c], dtype=native_dtype(native.get(c, "float")))
            data[c] = formulaic_levels(lv[idx % len(lv)], native.get(c), levels[c])
        elif native.get(c) == "bool":  # booleans read in expressions: both values
            data[c] = idx % 2 == 1
        else:
            data[c] = 1.0 + (idx % 7) / 8.0
    return pd.DataFrame(data, index=pd.RangeIndex(size))
