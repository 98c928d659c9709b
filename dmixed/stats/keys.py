"""Group keys: their one dtype per kind, and statsmodels' group order.

Partial statistics are added by group key wherever the rows of a group were read, so a
key must look the same in every partition and every process: :func:`key_values` gives
each kind of key one numpy dtype (numbers, booleans and datetimes keep theirs, anything
else is ``object``), and :func:`key_dtype` says which from a column's declared dtype.

Groups are numbered in sorted key order, as statsmodels does: :func:`sorted_codes` for
the rows of one process, :func:`order_distinct` for keys that were already summed by
group (each key once).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from ..errors import BadValuesError


def key_values(groups) -> np.ndarray:
    """Group keys as a numpy array with one fixed dtype per key kind.

    Numbers, booleans and datetimes keep their numpy dtype; anything else (strings,
    mixed) becomes ``object``.  Every partition yields the same dtype, so a key hashes
    the same way wherever it occurs and its partial statistics meet.
    """
    keys = np.asarray(groups)
    if keys.dtype.kind not in "iufbMm":
        keys = one_spelling(keys.astype(object))
    return keys


#: what :func:`pandas.api.types.infer_dtype` says of object keys that need no respelling
_PLAIN_TEXT = frozenset({"string", "bytes", "empty"})


def one_spelling(keys: np.ndarray) -> np.ndarray:
    """Object keys with keys that compare equal spelled alike: numpy scalars as Python
    ones, whole floats and booleans as integers, inside tuples too
    (``(np.int64(1), 'a')`` and ``(1.0, 'a')`` both ``(1, 'a')``).

    pandas groups keys by equality, but hashes objects that are not all text through
    their text (``hash_array`` of objects), so two spellings of one key would land in
    two buckets and never be added.  Text keys (the usual case) are returned as they
    are; others are respelled once per distinct key (factorized first).
    """
    if pd.api.types.infer_dtype(keys, skipna=True) in _PLAIN_TEXT:
        return keys
    codes, uniques = pd.factorize(keys, use_na_sentinel=False)
    spelled = np.empty(len(uniques), dtype=object)
    spelled[:] = [_spelling(v) for v in uniques]
    return spelled[codes]


def _spelling(value):
    """One spelling of ``value`` for its equality class (see :func:`one_spelling`)."""
    if isinstance(value, tuple):
        return tuple(_spelling(v) for v in value)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or (isinstance(value, float) and value.is_integer()):
        return int(value)
    return value


def hashed_bits(keys: np.ndarray) -> np.ndarray:
    """Float keys as the bits a hash of them takes, one pattern per key as pandas
    groups them: ``-0.0`` as ``0.0``, every NaN as one NaN (uint64); other keys as
    they are.

    pandas groups ``-0.0`` with ``0.0`` (and NaNs together) but its hash of floats
    canonicalized them only from pandas 3 on (GH#28363): hashing these bits instead,
    a driver and workers with different pandas route a key's rows to one bucket.  (NaN
    keys are missing values, refused or dropped before, in process as on Dask.)
    """
    if keys.dtype.kind != "f":
        return keys
    keys = np.asarray(keys, dtype=np.float64) + 0.0  # -0.0 + 0.0 is 0.0
    keys[np.isnan(keys)] = np.nan
    return keys.view(np.uint64)


def key_series(keys: np.ndarray, name: str) -> pd.Series:
    """Keys from :func:`key_values` as a pandas Series of the same dtype."""
    # dtype=object stops pandas ≥ 3 from inferring its "str" dtype for object arrays
    dtype = object if keys.dtype == object else keys.dtype
    return pd.Series(keys, name=name, dtype=dtype)


def key_dtype(dtype) -> np.dtype | type:
    """dtype of the keys :func:`key_values` makes of a column declared as ``dtype``.

    Categoricals count as their categories; pandas' extension integers, floats and
    booleans as their numpy kind (``int64``, ``uint64``, ``float64``, ``bool``);
    datetimes and timedeltas keep their dtype; anything else is ``object``.
    """
    if isinstance(dtype, pd.CategoricalDtype):
        dtype = dtype.categories.dtype
    try:
        kind = np.dtype(dtype).kind
    except TypeError:
        kind = "O"
        if pd.api.types.is_bool_dtype(dtype):
            kind = "b"
        elif pd.api.types.is_integer_dtype(dtype):
            kind = "i"
        elif pd.api.types.is_float_dtype(dtype):
            kind = "f"
    if kind in "Mm":
        return np.dtype(dtype)
    return {"i": np.int64, "u": np.uint64, "f": np.float64, "b": bool}.get(kind, object)


#: The keys' dtype of a collection whose group column is a categorical of categories
#: not known before its data are read (Dask's lazy ``astype("category")``, whose
#: metadata declares text whatever the values): where a partition's categories are
#: numbers :func:`conform_keys` keys its rows by their values in their own numeric dtype
#: instead of refusing them, text as text; where keys of two kinds meet (a chain's
#: partitions, a bucket's partials or rows, the labels) :func:`settled_kind` and
#: :func:`settled_labels` give them one (integers with floats float64).  (Codes of one
#: partition mean nothing in another: keys are always the values.)
LEARNED_KEYS = np.dtype(object, metadata={"dmixed_keys": "learned"})


def learned(dtype) -> bool:
    """Whether ``dtype`` is :data:`LEARNED_KEYS` (the keys' kind learned from the data)."""
    metadata = dtype.metadata if isinstance(dtype, np.dtype) else None
    return metadata is not None and metadata.get("dmixed_keys") == "learned"


#: Where :func:`conform_keys` finds keys of another kind (:func:`check_key_kind`'s ``where``).
PARTITION_WHERE = (
    "a partition where the collection holds {declared} "
    "(as its first partition or its metadata declares)"
)


def conform_keys(keys: np.ndarray, dtype, column: str) -> np.ndarray:
    """``keys`` (from :func:`key_values`) in ``dtype``, the keys' dtype of the whole
    collection (:func:`key_dtype` of its declared column), where the two are of one kind.

    Numbers of another numeric dtype are cast (an int64 partition of a float64 column).
    Text where the collection declares numbers, or numbers where it declares text, is
    refused: cast, ``"3"`` would silently become the group ``3``, and kept apart, the
    same group would be split in two (as in process, where a column of both kinds is
    refused).  Numbers where ``dtype`` is :data:`LEARNED_KEYS` keep their own numeric
    dtype (int64, uint64 or float64); the kind of a chain's, a bucket's and the
    labels' keys is settled where they meet (:func:`settled_kind`, :func:`settled_labels`).

    Raises
    ------
    DataError
        The keys are text and ``dtype`` numeric, or the other way round.
    """
    want = np.dtype(dtype) if dtype is not object else np.dtype(object)
    if keys.dtype == want:
        return keys
    if keys.dtype.kind in "iuf" and learned(want):
        # numbers keyed in their own numeric dtype, as the numeric column's are; an
        # int key and its whole float meet where partials or rows do (settled_kind)
        return keys
    check_key_kind(keys.dtype, want, column, PARTITION_WHERE)
    return keys.astype(want)


def settled_kind(held: np.dtype, keys: np.ndarray, column: str) -> np.dtype:
    """The one dtype of keys of dtype ``held`` and ``keys`` where a collection's key
    kind is learned from its data (:data:`LEARNED_KEYS`): integers with floats float64
    (as :func:`conform_keys` casts an integer partition of a float column), else
    ``held``.

    Raises
    ------
    DataError
        Text and numbers (:func:`check_key_kind`'s refusal).
    """
    found = keys.dtype
    if found == held:
        return held
    if found.kind in "iuf" and held.kind in "iuf":
        return np.dtype(np.float64) if "f" in (found.kind, held.kind) else held
    check_key_kind(found, held, column, LEARNED_WHERE)
    return held


def check_key_kind(found, declared, column: str, where: str, hint: str = "") -> None:
    """Refuse group keys of dtype ``found`` where keys of dtype ``declared`` are expected,
    if one is text and the other numbers (the owner of that refusal's words).

    ``where`` is the place the keys came from, with ``{declared}`` for the words of the
    expected kind ("a partition where the collection holds {declared}").  ``hint``, where
    given, replaces the closing advice (one type in every file); the error carries
    ``key_kinds``, ``(found, declared)``.

    Raises
    ------
    DataError
        One of ``found`` and ``declared`` is text (object) and the other is not.
    """
    found, declared = np.dtype(found), np.dtype(declared)
    if (found.kind == "O") == (declared.kind == "O"):
        return
    words = {d: "text" if d.kind == "O" else f"numbers ({d})" for d in (found, declared)}
    refused = BadValuesError(
        f"the group column {column!r} holds {words[found]} in "
        f"{where.format(declared=words[declared])}: one group key of two types would be "
        f"two groups, or two groups one; {hint or 'give the column one type in every file'}"
    )
    # the kinds, for a caller that knows why they differ (check_key_kind's hint)
    refused.key_kinds = (found, declared)
    raise refused


#: Where :func:`settled_labels` finds keys of two kinds (:func:`check_key_kind`'s ``where``).
LEARNED_WHERE = "some partitions and {declared} in others (its categories as read)"


def settled_labels(labels: np.ndarray, column: str) -> np.ndarray:
    """The group labels of a pass over :data:`LEARNED_KEYS`, in the dtype the keys of
    the column's values have (:func:`key_values`): integers as ``int64`` (``uint64``
    past its range), integers and floats together as ``float64`` (as :func:`conform_keys`
    casts an integer partition of a float column), text as objects; order unchanged.

    Raises
    ------
    DataError
        Text and numbers among the labels (:func:`check_key_kind`'s refusal).
    """
    if labels.dtype != object or not labels.size:
        return labels
    kind = pd.api.types.infer_dtype(labels, skipna=False)
    if kind == "integer":
        try:
            return labels.astype(np.int64)
        except OverflowError:
            return labels.astype(np.uint64)
    if kind in ("floating", "mixed-integer-float"):
        return labels.astype(np.float64)
    if kind.startswith("mixed") and any(isinstance(v, (int, float)) for v in labels):
        number = np.float64 if any(isinstance(v, float) for v in labels) else np.int64
        check_key_kind(number, object, column, LEARNED_WHERE)
    return labels


def sorted_codes(groups) -> tuple[np.ndarray, np.ndarray]:
    """Group of every row in sorted key order (statsmodels' order).

    Returns
    -------
    codes : ndarray of int64, shape (n,)
        Position of each row's key in ``labels``.
    labels : ndarray, shape (G,)
        The distinct keys, sorted.
    """
    keys = groups if isinstance(groups, np.ndarray) else None
    if keys is not None and keys.dtype.kind in "iu" and keys.ndim == 1 and keys.size:
        dense = _dense_integer_codes(keys)
        if dense is not None:
            return dense
    codes, labels = pd.factorize(pd.Series(groups), sort=True)
    return codes.astype(np.int64), np.asarray(labels)


#: :func:`sorted_codes` numbers integer keys through a table over their range when the
#: range is at most this many times the number of rows (else by hashing, as pandas does).
DENSE_RANGE_PER_ROW = 2


def _dense_integer_codes(
    keys: np.ndarray, owned: bool = False
) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`sorted_codes` of integer keys whose range is small next to their number
    (ids 0 … G−1, in any order): one table of the keys present over the range, its
    running count, and one lookup per row (a few times faster than sorting a hash
    table); keys that fill their range are numbered by their offsets alone.  None when
    the range is too wide.  ``owned``: ``keys`` are the caller's to overwrite (int64
    keys become their offsets in place, and may be returned as the codes)."""
    lo, hi = keys.min(), keys.max()
    span = int(hi) - int(lo)  # Python integers: no overflow for any int64/uint64 range
    if span > DENSE_RANGE_PER_ROW * keys.size + 1024:
        return None
    base: np.generic
    if keys.dtype.kind == "u":
        offsets = (keys - lo).astype(np.intp)  # keys ≥ lo: no wrap
        base = np.uint64(lo)
    else:
        offsets = keys.astype(np.int64, copy=False)
        if lo != 0:  # within [0, span]
            offsets = np.subtract(offsets, int(lo), out=offsets if owned else None)
        base = np.int64(lo)
    present = np.zeros(span + 1, dtype=bool)
    present[offsets] = True
    if present.all():
        # every key of the range present (ids lo … hi, in any order): each row's
        # position is its offset, without the running count and the lookup per row
        if keys.dtype.kind == "i":  # lo … hi in int64, then the keys' own type (exact)
            labels = np.arange(int(lo), int(hi) + 1, dtype=np.int64).astype(keys.dtype, copy=False)
        else:
            labels = (np.arange(span + 1, dtype=np.int64).astype(base.dtype) + base).astype(
                keys.dtype
            )
        # the offsets are the codes: copied where they are the caller's own keys (a
        # read-only view instead would be copied by every bincount that reads it)
        if offsets is keys and not owned:
            return offsets.copy(), labels
        codes = offsets.astype(np.int64, copy=False)
        return codes, labels
    position = np.cumsum(present, dtype=np.int64) - 1
    offsets_present = np.flatnonzero(present).astype(base.dtype)
    labels = (offsets_present + base).astype(keys.dtype)
    return position[offsets], labels


class KeyOrder(NamedTuple):
    """Sorted order of keys that occur once each (see :func:`order_distinct`)."""

    labels: np.ndarray  # the keys, sorted
    position: np.ndarray  # int64: sorted position of each key, in the order given
    repeated: bool  # some key occurs more than once (then the order is not defined)


def order_distinct(keys: np.ndarray, owned: bool = False) -> KeyOrder:
    """The sorted order of distinct keys, the same order as :func:`sorted_codes`.

    Integer keys whose range is small next to their number take one table over the
    range (as :func:`sorted_codes`: no sort), other integer keys one ``argsort``
    (distinct keys have one sorted order whatever the sort), other keys a sorted hash
    table.  A key given twice is reported in :attr:`KeyOrder.repeated`.

    Parameters
    ----------
    keys : ndarray (G,)
    owned : bool
        ``keys`` are the caller's to give up: their memory may be overwritten and
        returned as :attr:`KeyOrder.position` (int64 keys over a small range), saving
        a copy of ``G`` int64.  The caller reads ``keys`` no more.
    """
    dense = None
    if keys.dtype.kind in "iu" and keys.size:
        dense = _dense_integer_codes(keys, owned)
    if dense is not None:
        position, uniq = dense
        return KeyOrder(uniq, position.astype(np.int64, copy=False), len(uniq) != len(keys))
    if keys.dtype.kind in "iu":
        order = np.argsort(keys)
        uniq = keys[order]
        position = np.empty(keys.size, dtype=np.int64)
        position[order] = np.arange(keys.size)
        repeated = bool(uniq.size > 1 and (uniq[1:] == uniq[:-1]).any())
    else:
        position, labels = pd.factorize(pd.Series(keys), sort=True)
        uniq = np.asarray(labels)
        repeated = len(uniq) != len(keys)
    return KeyOrder(uniq, position.astype(np.int64), repeated)
