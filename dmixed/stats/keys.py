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

from ..errors import BadValuesError, DataError


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

    Numbers of another numeric dtype are cast where exact: a float64 partition of an
    int64 column where every key is a whole number (:func:`whole_keys`), an int64
    partition of a float64 column within ±2**53 (:func:`settled_keys`); else refused.
    Text where the collection declares numbers, or numbers where it declares text, is
    refused: cast, ``"3"`` would silently become the group ``3``, and kept apart, the
    same group would be split in two (as in process, where a column of both kinds is
    refused).  Numbers where ``dtype`` is :data:`LEARNED_KEYS` keep their own numeric
    dtype (int64, uint64 or float64); the kind of a chain's, a bucket's and the
    labels' keys is settled where they meet (:func:`settled_kind`, :func:`settled_labels`).

    Raises
    ------
    DataError
        The keys are text and ``dtype`` numeric, or the other way round; or numbers
        that ``dtype`` does not hold exactly.
    """
    want = np.dtype(dtype) if dtype is not object else np.dtype(object)
    if learned(want):
        if keys.dtype.kind in "iuf":
            # numbers keyed in their own numeric dtype, as the numeric column's are; an
            # int key and its whole float meet where partials or rows do (settled_kind)
            return keys
        if keys.dtype.kind == "O":
            # (the plain column's values are checked as the partition is read)
            refuse_mixed_objects(keys, column)
    if keys.dtype == want:
        return keys
    check_key_kind(keys.dtype, want, column, PARTITION_WHERE)
    if want.kind in "iu" and keys.dtype.kind == "f":
        return whole_keys(keys, want, column)
    return settled_keys(keys, want, column)


def _whole_in(keys: np.ndarray, want: np.dtype) -> np.ndarray:
    """Whether each float key is a whole number within the integer dtype ``want``."""
    info = np.iinfo(want)
    with np.errstate(invalid="ignore"):
        # float(info.max) rounds up to 2**63 (2**64): a key there is out of range
        return (keys == np.floor(keys)) & (keys >= float(info.min)) & (keys < float(info.max))


def all_whole(keys: np.ndarray, want) -> bool:
    """Whether float ``keys`` are all whole numbers that the integer dtype ``want``
    holds (:func:`whole_keys` casts them without a refusal)."""
    return bool(_whole_in(keys, np.dtype(want)).all())


def whole_keys(keys: np.ndarray, want: np.dtype, column: str) -> np.ndarray:
    """Float ``keys`` as the integer dtype ``want`` of the other keys of their column,
    where every one is a whole number ``want`` holds (a float64 file's ``7.0`` is the
    group ``7`` of an int64 file, exactly): the one rule of numeric group keys, whose
    integer keys keep their type where whole floats meet them (fit, ``update``, CSV and
    Parquet alike).

    Raises
    ------
    DataError
        A key that is not a whole number (``3.5``) or beyond ``want``'s range: cast, it
        would silently join another group.
    """
    want = np.dtype(want)
    fits = _whole_in(keys, want)
    if not fits.all():
        bad = keys[~fits][0].item()
        raise BadValuesError(
            f"the group column {column!r} holds integers ({want}) in some files or "
            f"partitions and numbers that are not whole numbers of that type in others "
            f"(such as {bad!r}): as one type, two groups could be one; give the column "
            "one type in every file"
        )
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
        # int64 with uint64 too (numpy's promotion), where exact (settled_keys)
        return np.dtype(np.float64)
    check_key_kind(found, held, column, LEARNED_WHERE)
    return held


#: The integers float64 holds exactly: within ±2**53.
EXACT_INTEGERS = 2**53


def settled_keys(keys: np.ndarray, want: np.dtype, column: str | None) -> np.ndarray:
    """``keys`` cast to ``want`` (:func:`settled_kind`), integers as float64 only where
    float64 holds them exactly.  ``column`` None: the column is named where the refusal
    reaches the driver (:func:`inexact_keys_error`).

    Raises
    ------
    DataError
        Integers beyond ±2**53 (:data:`EXACT_INTEGERS`) to be cast to float64: as floats
        two of them could be one group.
    """
    want = np.dtype(want)
    if keys.dtype == want:
        return keys
    if want.kind == "f" and keys.dtype.kind in "iu" and keys.size:
        if keys.max() > EXACT_INTEGERS or (keys.dtype.kind == "i" and keys.min() < -EXACT_INTEGERS):
            raise inexact_keys_error(column)
    return keys.astype(want)


def inexact_keys_error(column: str | None) -> DataError:
    """The refusal of integer keys beyond ±2**53 meeting floats or integers of the
    other signedness where the keys' kind is learned from the data (:func:`settled_keys`).
    ``column`` None: an error marked ``unnamed_keys``, for the driver to name the column
    (:func:`named_keys_error`)."""
    shown = "the group column" if column is None else f"the group column {column!r}"
    err = DataError(
        f"{shown} holds integers beyond ±2**53 in some partitions and floats or integers "
        "of another signedness in others (its categories as read): as float64, the one "
        "dtype of both, two such integers could be one group; give the column one type "
        "in every file"
    )
    err.unnamed_keys = column is None
    return err


def named_keys_error(err: DataError, column: str) -> DataError:
    """``err`` naming ``column`` where it is an unnamed :func:`inexact_keys_error`."""
    return inexact_keys_error(column) if getattr(err, "unnamed_keys", False) else err


#: what :func:`pandas.api.types.infer_dtype` says of object keys of several kinds
_MIXED_INFERRED = frozenset({"mixed-integer", "mixed"})


def refuse_mixed_objects(keys: np.ndarray, column: str) -> None:
    """Refuse object keys of several Python types where the keys' kind is learned from
    the data (a categorical of ``1`` and ``"1"``), as the plain column is refused
    (:func:`several_types_error`); one non-numeric type (text, tuples) is kept.

    Raises
    ------
    BadValuesError
        Values of several kinds (text and numbers...).
    """
    if pd.api.types.infer_dtype(keys, skipna=True) not in _MIXED_INFERRED:
        return
    types = object_type_names(keys)
    if len(types) > 1 and not types <= NUMBER_TYPES:
        raise several_types_error(types, column)


def object_type_names(keys: np.ndarray) -> set[str]:
    """The :func:`python_type_name` of every non-missing value of object ``keys``
    (named once per distinct type)."""
    values = keys[~np.asarray(pd.isna(keys), dtype=bool)]
    return {python_type_name_of(t) for t in pd.unique(pd.Series(values, dtype=object).map(type))}


#: Python types of numbers (:func:`python_type_name`'s names)
NUMBER_TYPES = frozenset({"int", "float", "Decimal"})


def python_type_name(v) -> str:
    """The name of the Python type of ``v``: ``"bool"``, ``"int"``, ``"float"``, ``"str"``
    (numpy scalars as their Python type), else the type's own name."""
    return python_type_name_of(type(v))


def python_type_name_of(t: type) -> str:
    """:func:`python_type_name` of a value of type ``t``."""
    if issubclass(t, (bool, np.bool_)):
        return "bool"
    if issubclass(t, (int, np.integer)):
        return "int"
    if issubclass(t, (float, np.floating)):
        return "float"
    if issubclass(t, str):
        return "str"
    return t.__name__


def several_types_error(types: set[str], name: str) -> BadValuesError:
    """The refusal of a column holding values of several Python types ``types`` (the
    owner of its words)."""
    shown = ", ".join(sorted(types))
    err = BadValuesError(
        f"column {name!r} holds values of several Python types ({shown}), which dmixed "
        "will not guess how to read (5 and '5' are one group as text and two as "
        f"objects); convert it to one type first, e.g. df[{name!r}].astype(str) for labels "
        f"or pd.to_numeric(df[{name!r}], errors='coerce') for numbers (what is not a "
        "number becomes NaN)"
    )
    err.mixed_column = name  # read where the column's role gives a better message
    return err


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
    if kind in ("mixed-integer", "mixed"):
        # each partition's keys are of one kind (conform_keys): several kinds met here
        types = object_type_names(labels)
        numbers = types & NUMBER_TYPES
        if numbers and types - NUMBER_TYPES:
            number = np.float64 if "float" in numbers else np.int64
            check_key_kind(number, object, column, LEARNED_WHERE)
        if len(types) > 1:
            raise several_types_error(types, column)
    return labels


def refuse_bytes_with_text(labels: np.ndarray, column: str) -> None:
    """Refuse object group ``labels`` (of a pass over partitions) that hold both
    ``bytes`` and ``str`` keys: ``b"k1"`` and ``"k1"`` would be two groups (a Parquet
    column ``binary`` in some files and ``string`` in others; each partition's keys
    are of one type), where the in-process fit refuses such a column
    (:func:`several_types_error`).  One look at the labels' inferred type; the types
    are listed only where it finds several.

    Raises
    ------
    BadValuesError
        ``bytes`` and ``str`` among the labels.
    """
    if labels.dtype != object or not labels.size:
        return
    if pd.api.types.infer_dtype(labels, skipna=True) not in _MIXED_INFERRED:
        return
    types = object_type_names(labels)
    if {"bytes", "str"} <= types:
        err = several_types_error(types, column)
        raise BadValuesError(
            f"{err} (a Parquet column of binary values in some files and string values "
            "in others: read or write it as one type in every file)"
        )


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


def text_codes(column) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`sorted_codes` of a column of text keys, numbered by Arrow without a Python
    object a row; None where the column is not text without missing values (then
    :func:`sorted_codes` of its keys numbers it, as before).

    The distinct keys are found by one hash of the Arrow strings (``dictionary_encode``;
    of only the categories or the dictionary of a categorical column) and only they are
    sorted and made Python strings.  Arrow sorts strings by their UTF-8 bytes, which is
    code point order, Python's order of ``str``: the same labels and codes as
    :func:`sorted_codes` of the keys as objects.

    Parameters
    ----------
    column : pandas Series, shape (n,)
        The group column as the design reads it: Arrow-backed strings (pandas' ``str``
        dtype or ``ArrowDtype`` of ``string``/``large_string``, or of a dictionary of
        them), or a categorical of such categories or of ``object`` categories that
        are all ``str``.  Other columns (``object`` columns among them) give None.

    Returns
    -------
    codes : ndarray of int64, shape (n,)
        Position of each row's key in ``labels``.
    labels : ndarray of object, shape (G,)
        The distinct keys that occur (Python ``str``), sorted.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if not len(column):
        return None
    positions = None  # each row's entry of the table of values (None: the rows are it)
    if isinstance(column.dtype, pd.CategoricalDtype):
        positions = column.cat.codes.to_numpy()
        if (positions < 0).any():
            return None  # missing keys: as before
        values = _arrow_text(pd.Series(column.cat.categories))
    elif pd.api.types.is_object_dtype(column.dtype):
        # a Python object a row already: converting them to Arrow costs more than it
        # saves, so they are numbered as before (the categories above are few)
        return None
    else:
        values = _arrow_text(column)
        if values is not None and pa.types.is_dictionary(values.type):
            joined = values.unify_dictionaries().combine_chunks()
            if joined.null_count:
                return None
            positions = joined.indices.to_numpy(zero_copy_only=False)
            values = pa.chunked_array([joined.dictionary])
    if values is None or values.null_count:
        return None
    try:
        encoded = pc.dictionary_encode(values).combine_chunks()
    except pa.ArrowException:
        return None  # distinct keys of more than 2 GiB of ``string`` text: as before
    order = pc.sort_indices(encoded.dictionary).to_numpy()
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size, dtype=np.int64)
    codes = rank[encoded.indices.to_numpy(zero_copy_only=False)]
    if positions is not None:
        codes = codes[positions]
        used = np.bincount(codes, minlength=order.size).astype(bool)
        if not used.all():
            # categories or dictionary entries no row holds are no group
            renumber = np.cumsum(used) - 1
            codes = renumber[codes]
            order = order[used]
    labels = encoded.dictionary.take(pa.array(order)).to_numpy(zero_copy_only=False)
    return codes.astype(np.int64, copy=False), labels.astype(object, copy=False)


def arrow_first_codes(values) -> tuple[np.ndarray, np.ndarray] | None:
    """Group of every row of Arrow text keys, numbered in order of first appearance,
    with a Python object made only for each distinct key.

    The same codes and labels as :func:`pandas.factorize` of the keys as Python
    ``str`` objects (its order of first appearance), from one hash of the Arrow strings
    (``dictionary_encode``, whose dictionary holds the distinct keys in the order the
    rows first bring them).

    Parameters
    ----------
    values : pyarrow Array, shape (n,)
        ``string`` or ``large_string`` keys.

    Returns
    -------
    codes : ndarray of int64, shape (n,)
        Position of each row's key in ``labels``.
    labels : ndarray of object, shape (G,)
        The distinct keys (Python ``str``), in order of first appearance.
        None instead of both where ``values`` is not such an array, holds a missing
        key or is empty (then the keys are numbered as Python objects, as before).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if not isinstance(values, pa.Array) or not len(values) or values.null_count:
        return None
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return None
    encoded = pc.dictionary_encode(values)
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    labels = encoded.dictionary.to_numpy(zero_copy_only=False).astype(object, copy=False)
    return codes, labels


def _arrow_text(column: pd.Series):
    """``column``'s values as an Arrow ChunkedArray of strings (or of a dictionary of
    strings) where it is text (:func:`text_codes`), else None."""
    import pyarrow as pa

    dt = column.dtype
    if isinstance(dt, pd.ArrowDtype) or getattr(dt, "storage", None) == "pyarrow":
        values = pa.array(column.array)  # (chunked where it was read in chunks)
        if isinstance(values, pa.Array):
            values = pa.chunked_array([values])
        kind = values.type.value_type if pa.types.is_dictionary(values.type) else values.type
        return values if pa.types.is_string(kind) or pa.types.is_large_string(kind) else None
    if not pd.api.types.is_object_dtype(dt):
        return None
    if pd.api.types.infer_dtype(column, skipna=False) != "string":
        return None  # missing values, other types: as before
    try:
        # ``string``, not ``large_string``: its hash (``dictionary_encode``) is the cheaper;
        # more than 2 GiB of text comes back in chunks
        values = pa.array(column.to_numpy(), type=pa.string())
    except (pa.ArrowException, UnicodeError):
        return None  # (lone surrogates, str subclasses Arrow refuses)
    return values if isinstance(values, pa.ChunkedArray) else pa.chunked_array([values])


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
    owned = owned and keys.flags.writeable  # read-only keys are never written over
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
    if np.count_nonzero(present) == present.size:
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
    # the running count in one int64 table, made in place: cumsum's own cast from bool
    # and the ``- 1`` would each take another array of the range
    position = np.empty(span + 1, dtype=np.int64)
    position[...] = present
    np.cumsum(position, out=position)
    position -= 1
    labels = np.flatnonzero(present).astype(base.dtype, copy=False)
    labels += base  # offsets + base in place (exact: within the keys' range)
    labels = labels.astype(keys.dtype, copy=False)
    if offsets is keys and not owned:
        return position[offsets], labels
    # the offsets are ours (a copy, or the caller's given up): each row's code written
    # over its own offset, read just before (``clip``: every offset is within the table,
    # and unlike ``raise`` it takes no buffer of the output)
    return np.take(position, offsets, out=offsets, mode="clip"), labels


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
        a copy of ``G`` int64.  The caller reads ``keys`` no more.  Read-only keys
        are not overwritten (their codes take a new array).
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
