"""Column dtypes: what class of values a raw column holds and how the model reads it.

Every column a formula uses gets a *kind* (stored in ``ModelSpec.column_kinds``, and
saved with it): labels become pandas Categoricals with the global levels, numbers
become float64 with NaN for missing, numbers used inside ``C()`` keep their native
values (``int``, ``float`` or ``bool``, stored in ``ModelSpec.native``) and get global
levels.  Strings of every storage (object, ``str``, ``string[pyarrow]``, Arrow strings
and dictionaries) are labels: raw strings never reach formulaic (DESIGN.md §10).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import BadValuesError, DataError, PrecisionWarning
from ..stats.keys import NUMBER_TYPES, object_type_names, several_types_error, text_codes
from .messages import decimal_term, plural
from .warn_relay import warn_data

__all__ = [
    "CATEGORICAL",
    "NUMERIC",
    "NUMERIC_LEVELS",
    "NUMBER_CLASSES",
    "column_class",
    "column_kind",
    "to_float",
    "warn_rounded_integers",
    "text_error",
    "check_numbers_as_text",
    "check_no_decimals",
    "check_formula_dtype",
    "only_in_c",
    "unsupported_dtype",
    "check_no_text",
    "check_no_text_levels",
    "check_finite",
    "native_class",
    "native_dtype",
    "native_values",
    "native_values_exact",
    "object_types",
    "object_class",
    "check_plain_values",
    "group_keys",
    "coded_group_keys",
    "is_arrow_decimal",
    "key_class",
    "comparable_keys",
    "py_scalars",
]

# Column kinds: how a raw column is normalised before formulaic sees it.
CATEGORICAL = "categorical"  # labels -> pandas Categorical with the global levels
NUMERIC = "numeric"  # numbers -> float64 (NaN = missing)
NUMERIC_LEVELS = "numeric-levels"  # numbers used inside C(): native dtype, global levels

NUMBER_CLASSES = ("int", "float", "bool")


def column_class(dtype) -> str:
    """'categorical', 'arrow-dict', 'string', 'int', 'float', 'bool' or 'other'."""
    if isinstance(dtype, pd.CategoricalDtype):
        return "categorical"
    if isinstance(dtype, pd.ArrowDtype):
        return _arrow_class(dtype.pyarrow_dtype)
    if isinstance(dtype, pd.StringDtype):
        return "string"
    kind = getattr(dtype, "kind", "O")
    if kind == "O":
        return "string"
    if kind in "iu":
        return "int"
    if kind == "f":
        return "float"
    if kind == "b":
        return "bool"
    return "other"


def _arrow_class(t) -> str:
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        return "arrow-dict"
    if (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or (hasattr(pa.types, "is_string_view") and pa.types.is_string_view(t))
    ):
        return "string"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "float"
    if pa.types.is_boolean(t):
        return "bool"
    return "other"


def column_kind(dtype) -> str | None:
    """:data:`CATEGORICAL` for labels, :data:`NUMERIC` for numbers, None if neither."""
    cls = column_class(dtype)
    if cls in ("categorical", "arrow-dict", "string"):
        return CATEGORICAL
    if cls in NUMBER_CLASSES:
        return NUMERIC
    return None


def to_float(s: pd.Series, name: str) -> np.ndarray:
    """The values of ``s`` as float64, NaN for missing.

    Raises
    ------
    DataError
        If the values are not numbers: text among them too, even text that reads as a
        number (``'3'``; numpy would parse it), since text is a factor under dmixed's
        column rules (new rows to predict, a partition unlike the collection's meta).
    """
    if s.dtype == np.float64 and isinstance(s.dtype, np.dtype):
        # numpy's float64 holds no text and no missing value but NaN: its values, copied
        # (pandas' na_value pass costs a mask and a second copy; a NaN read here is a
        # missing value to the caller's mask whatever its payload)
        return s.to_numpy(copy=True)
    check_no_text(s, name, "where the model reads numbers")
    try:
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as e:
        raise BadValuesError(f"column {name!r} is not numeric (dtype {s.dtype}): {e}") from None
    except ArithmeticError:  # decimal's InvalidOperation: a signalling NaN
        raise BadValuesError(
            f"column {name!r} holds a value that does not convert to a float (a Decimal "
            "signalling NaN, 'sNaN'?)"
        ) from None


def is_arrow_decimal(dtype) -> bool:
    """Whether ``dtype`` is an Arrow decimal type (``dd.read_parquet`` of a Parquet
    decimal column)."""
    arrow = getattr(dtype, "pyarrow_dtype", None)
    if arrow is None:
        return False
    import pyarrow as pa

    return bool(pa.types.is_decimal(arrow))


def check_no_decimals(s: pd.Series, name: str) -> None:
    """Refuse decimal numbers in ``s``, the column ``name`` that a term reads outside
    ``C()``, in new rows read for a fitted model (prediction): ``Decimal`` values in an
    ``object`` column or an Arrow decimal dtype, as a fit refuses them
    (:func:`~dmixed.design.messages.decimal_term`).  Other dtypes cost nothing.

    Raises
    ------
    BadValuesError
        ``s`` holds decimal numbers; the message names the column and the conversion.
    """
    dt = s.dtype
    if is_arrow_decimal(dt) or (
        isinstance(dt, np.dtype) and dt.kind == "O" and "Decimal" in object_types(s)
    ):
        raise decimal_term(name)


def _time_words(dtype) -> str | None:
    """``"timestamps"``, ``"dates"``, ``"times of day"`` or ``"durations"`` for a column
    of such values (numpy's, pandas' or Arrow's), else None."""
    arrow = getattr(dtype, "pyarrow_dtype", None)
    if arrow is not None:
        import pyarrow as pa

        checks = (
            (pa.types.is_timestamp, "timestamps"),
            (pa.types.is_date, "dates"),
            (pa.types.is_time, "times of day"),
            (pa.types.is_duration, "durations"),
        )
        return next((words for check, words in checks if check(arrow)), None)
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "timestamps"
    if pd.api.types.is_timedelta64_dtype(dtype):
        return "durations"
    return None


def _to_number(column: str, words: str) -> str:
    """Code that converts a column of ``words`` (:func:`_time_words`) to numbers, for the
    message: days since an ``origin`` (a ``pd.Timestamp`` the caller chooses) for
    timestamps and dates, seconds for durations and times of day."""
    if words == "durations":
        return f"pd.to_timedelta(data[{column!r}]) / pd.Timedelta(seconds=1)"
    if words == "times of day":
        return f"pd.to_timedelta(data[{column!r}].astype(str)) / pd.Timedelta(seconds=1)"
    return f"(pd.to_datetime(data[{column!r}]) - origin) / pd.Timedelta(days=1)"


def only_in_c(column: str, value_columns, response_only) -> bool:
    """Whether the formulas read ``column`` only inside ``C()``: no term reads its
    values outside ``C()`` (``value_columns``: ``p`` of ``C(p):x + p``) and it is not
    a column only the response reads (``response_only``).  The one rule for
    :func:`unsupported_dtype`'s ``in_c`` words, in a fit (from the parsed formulas) and
    in the new rows of a prediction (from the spec, which records both lists)."""
    return column not in value_columns and column not in response_only


def _value_dtype(dtype):
    """The dtype of the values a categorical or an Arrow dictionary holds (its
    categories, its ``value_type``), else ``dtype``: a dtype look, no row read."""
    if isinstance(dtype, pd.CategoricalDtype):
        return dtype.categories.dtype
    arrow = getattr(dtype, "pyarrow_dtype", None)
    if arrow is not None:
        import pyarrow as pa

        if pa.types.is_dictionary(arrow):
            return pd.ArrowDtype(arrow.value_type)
    return dtype


def unsupported_dtype(
    column: str, dtype, in_c: bool = False, new_rows: bool = False
) -> BadValuesError:
    """The error for a formula column of a type that is neither numbers nor labels, with
    what to do.  Timestamps, dates and durations are not read as numbers: their number
    depends on a unit and an origin (nanoseconds since 1970, days since 1970...) that a
    fit would silently depend on (the estimates of a slope scale with it); the caller
    chooses them, or reads the column as a factor from text.  ``in_c``: the formula
    already asks for the column as a factor (``C(column)``, :func:`only_in_c`): the
    message then says that ``C()`` does not yet read such a column and gives the
    conversion to text (not "write ``C(column)``", which the caller wrote).
    ``new_rows``: the column of new rows for a model fitted on numbers in it (or on
    ``C()`` of numbers), whose formula is fixed: the message says so and gives only the
    conversion of the new rows to numbers, as the fit's data held them; ``dtype`` may be
    a categorical or an Arrow dictionary of such values."""
    words = _time_words(_value_dtype(dtype))
    if isinstance(dtype, pd.CategoricalDtype):
        dtype = f"category of {dtype.categories.dtype}"
    if words is None:
        return BadValuesError(
            f"column {column!r} has an unsupported dtype ({dtype}) for a model formula: "
            "a formula reads numbers, booleans and labels (text, categoricals)"
        )
    if words in ("durations", "times of day"):
        unit = "seconds"
    else:
        unit = (
            "days since an origin you choose (origin = pd.Timestamp(...), with the "
            "column's time zone where it has one)"
        )
    number = f"data[{column!r}] = {_to_number(column, words)}"
    if new_rows:
        read = (
            f"and C({column}) does not read {words} as a factor"
            if in_c
            else "which a model formula does not read as numbers (they would be read "
            "by their storage, which depends on their unit)"
        )
        of = f"C({column}) of numbers" if in_c else "numbers in this column"
        return BadValuesError(
            f"column {column!r} holds {words} ({dtype}), {read}: the model was fitted "
            f"on {of}; convert the column of the new rows to the numbers the fit's data "
            f"held, such as the {unit}: {number}"
        )
    factor = f"convert it to text and write C({column})"
    if in_c:
        return BadValuesError(
            f"column {column!r} holds {words} ({dtype}), and C({column}) does not read "
            f"{words} as a factor (statsmodels does, with levels labelled by the values' "
            f"repr): convert the column to text first, data[{column!r}] = "
            f"data[{column!r}].astype(str), and C({column}) reads its text as the levels "
            f"(ordered and labelled by the text); or convert it to a number, such as the "
            f"{unit}: {number}"
        )
    return BadValuesError(
        f"column {column!r} holds {words} ({dtype}), which a model formula does not read "
        f"as numbers (a fit would depend on their unit): convert the column to a number "
        f"first, such as the {unit}: {number}; or, to use it as a factor, {factor}"
    )


def check_formula_dtype(s: pd.Series, name: str, in_c: bool = False) -> None:
    """Refuse the column ``s`` (``name``) of new rows read for a model fitted on numbers
    in it (or on ``C()`` of numbers) where its values are of a type a fit refuses in a
    formula (:func:`column_kind` None: timestamps, dates, durations, complex numbers...),
    held as they are or as the categories of a categorical or an Arrow dictionary
    (:func:`unsupported_dtype` with ``new_rows``; ``in_c``: :func:`only_in_c`).  Read as
    numbers or levels, such a column would give its storage (microseconds since 1970,
    say), which depends on its unit.  A column of Arrow's null type holds no value to
    misread (every row missing, predicted NaN) and is let through.  A look at the dtype:
    no row is read.

    Raises
    ------
    BadValuesError
        Naming the column, its dtype and a conversion of the new rows to numbers.
    """
    dt = s.dtype
    value = _value_dtype(dt)
    if column_kind(value) is not None:
        return
    arrow = getattr(value, "pyarrow_dtype", None)
    if arrow is not None:
        import pyarrow as pa

        if pa.types.is_null(arrow):
            return
    raise unsupported_dtype(name, dt, in_c, new_rows=True)


#: The largest magnitude below which every integer is a float64 (2^53).
EXACT_INTEGERS = 2**53


def warn_rounded_integers(values, name: str) -> None:
    """Warn when integer ``values`` (numpy or pandas, any integer dtype; others are
    ignored) hold a magnitude above 2^53, where float64 (the type of every design
    column) cannot hold every integer: they are rounded (to a multiple of 1024 near
    2^62), and the fit is that of the rounded column, whatever its shift.

    Warns
    -----
    PrecisionWarning
        Naming the column and its range, with the remedy (subtract a reference first);
        through :func:`~dmixed.design.warn_relay.warn_data` (a Dask worker sends it to
        the driver).
    """
    dtype = getattr(values, "dtype", None)
    if dtype is None or getattr(dtype, "kind", "") not in "iu" or len(values) == 0:
        return
    lo, hi = values.min(), values.max()
    if not (pd.notna(lo) and pd.notna(hi)):  # all missing (nullable integers)
        return
    if int(hi) <= EXACT_INTEGERS and int(lo) >= -EXACT_INTEGERS:
        return
    warn_data(
        f"column {name!r} holds integers beyond 2**53 in magnitude ({int(lo)} to {int(hi)}), "
        "which float64 cannot all represent: they are rounded before the fit (dmixed reads "
        "them exactly only as a term of their own in a formula with an intercept). Subtract "
        f"a reference first (e.g. data[{name!r}] - data[{name!r}].min()) to fit them exactly",
        PrecisionWarning,
        key=f"rounded {name}",
    )


def text_error(name: str, shown: list, where: str, convert: str = "") -> BadValuesError:
    """The refusal of text in a column of numbers: ``column NAME holds text (such as
    ...) WHERE; ...``, with at most three of the ``shown`` values (none: no ``such
    as``, the values not at hand) (the one owner of these words, :func:`to_float`,
    :func:`check_numbers_as_text` and :func:`check_no_text`).  The first value shown
    is kept as the error's ``example`` (None: none shown), the value whose partition a
    Dask fit names (:func:`~dmixed.design.scan.locate_text`)."""
    more = f" and {len(shown) - 3} more" if len(shown) > 3 else ""
    such = ", ".join(repr(v) for v in shown[:3]) + more
    such = f" (such as {such})" if shown else ""
    err = BadValuesError(
        f"column {name!r} holds text{such} {where}; text is a factor under "
        f"dmixed's column rules: convert it first, e.g. pd.to_numeric(data[{name!r}]"
        f"{convert})"
    )
    err.example = shown[0] if shown else None
    return err


#: A text column read as a factor is refused as numbers read as text when it has at
#: least this many levels, more than :data:`LEVELS_PER_ROW` of its rows' count, and
#: at most :data:`TEXT_SHARE` of its levels do not read as numbers.
MANY_LEVELS = 20
LEVELS_PER_ROW = 0.5
TEXT_SHARE = 0.1


def check_numbers_as_text(name: str, levels: list, n_rows: int | None) -> None:
    """Refuse a factor that is a column of numbers with a few text cells.

    One ``"?"`` in a CSV column of numbers makes the whole column text, read as a
    factor of about one level per row: a dense design of n × n columns (gigabytes,
    minutes) and errors listing every level.  Refused where the factor has at least
    :data:`MANY_LEVELS` levels, more than :data:`LEVELS_PER_ROW` × ``n_rows``, and
    some but at most :data:`TEXT_SHARE` of them do not read as numbers
    (``pd.to_numeric``); a factor of text labels, or of many numeric strings only
    (ids), is kept.

    Raises
    ------
    DataError
        Naming the column, a few of the text cells and their count.
    """
    if n_rows is None or len(levels) < MANY_LEVELS or len(levels) <= LEVELS_PER_ROW * n_rows:
        return
    values = pd.Series(levels, dtype=object)
    text = values[pd.to_numeric(values, errors="coerce").isna()].tolist()
    if not text or len(text) > TEXT_SHARE * len(levels):
        return
    where = (
        f"among {len(levels) - len(text)} distinct numbers ({plural(len(text), 'text value')}"
        f"; as a factor it would have {len(levels)} levels for {plural(n_rows)})"
    )
    raise text_error(name, text, where, ", errors='coerce'")


def check_no_text(s: pd.Series, name: str, where: str) -> None:
    """Refuse text in ``s`` (column ``name``, read ``where``) with :func:`text_error`,
    showing its first text value (none for a column of no rows: a Dask meta).

    Raises
    ------
    BadValuesError
    """
    if _holds_text(s):
        raise text_error(name, [_first_text(s)] if len(s) else [], where)


def check_no_text_levels(s: pd.Series, name: str, levels) -> None:
    """Refuse text in ``s``, the column ``name`` of a factor whose ``levels`` are
    numbers (``C(cls)`` of an integer column): ``'0'`` is not the level ``0`` under the
    column rules, and the message says the column is a factor, as the group column's
    (:func:`comparable_keys`) does, not that the model reads numbers.  The first text
    value is the error's ``example`` (:func:`text_error`'s).

    Raises
    ------
    BadValuesError
        ``s`` holds text; the message names the column, a text value and a level.
    """
    if not _holds_text(s):
        return
    first = _first_text(s) if len(s) else None
    level = py_scalars(list(levels[:1]))
    such = f" (such as {first!r})" if first is not None else ""
    numbers = f" (such as {level[0]!r})" if level else ""
    err = BadValuesError(
        f"column {name!r} is read as a factor whose levels are numbers{numbers}, but it "
        f"holds text{such}: text is another level under dmixed's column rules, so no row "
        f"would find its level; convert it first, e.g. pd.to_numeric(data[{name!r}])"
    )
    err.example = first
    raise err


def _first_text(s: pd.Series):
    """The first text value of ``s`` that does not read as a number, else its first
    text value: the one to show (a CSV column of numbers with one ``'1,5'`` is read as
    text throughout, and its first text reads as a number)."""
    values = s.to_numpy(dtype=object)
    is_text = np.fromiter((isinstance(v, (str, bytes)) for v in values), bool, len(values))
    text = values[is_text]
    not_number = pd.to_numeric(pd.Series(text, dtype=object), errors="coerce").isna()
    return text[int(np.argmax(not_number.to_numpy()))] if not_number.any() else text[0]


def _holds_text(s: pd.Series) -> bool:
    """Whether ``s`` holds a ``str`` or ``bytes`` value (a text dtype, an ``object``
    column with one among its values, or a categorical or Arrow dictionary whose rows
    take text labels)."""
    if isinstance(s.dtype, np.dtype) and s.dtype.kind != "O":  # numpy's: text is S or U
        return s.dtype.kind in "SU"
    if isinstance(s.dtype, pd.CategoricalDtype):
        # labels that are text hold text where read as numbers (their values, not
        # their codes): the categories some row uses.  Categories of numbers (a dtype
        # look) or without text hold none: the rows are read only where some are text
        cats = s.cat.categories
        if column_class(cats.dtype) != "string":
            return False
        kind = pd.api.types.infer_dtype(cats, skipna=True)
        if kind in ("string", "bytes"):
            text = np.ones(len(cats), dtype=bool)
        elif kind.startswith("mixed"):  # some labels text, some not: which are
            text = np.fromiter((isinstance(v, (str, bytes)) for v in cats), bool, len(cats))
        else:
            return False
        codes = s.cat.codes.to_numpy()
        if text.all():  # every label text: any row not missing
            return bool((codes >= 0).any())
        used = np.zeros(len(cats), dtype=bool)
        used[codes[codes >= 0]] = True
        return bool((used & text).any())
    if column_class(s.dtype) == "arrow-dict":  # Arrow's dictionary of text
        value = s.dtype.pyarrow_dtype.value_type
        return _arrow_class(value) == "string" and bool(s.notna().any())
    if s.dtype != object:
        return pd.api.types.is_string_dtype(s.dtype) and not isinstance(
            s.dtype, pd.CategoricalDtype
        )
    kind = pd.api.types.infer_dtype(s, skipna=True)
    if kind in ("string", "bytes"):
        return True
    return kind.startswith("mixed") and any(isinstance(v, (str, bytes)) for v in s.to_numpy())


def check_finite(vals: np.ndarray, name: str) -> None:
    """Refuse infinite values (NaN is missing, not infinite).

    Raises
    ------
    DataError
        If ``vals`` holds ±inf.
    """
    inf = np.isinf(vals)
    if inf.any():
        raise BadValuesError(f"infinite values in column {name!r} ({plural(int(inf.sum()))})")


def native_class(dtype) -> str:
    """How a numeric column's values are kept inside ``C()``: ``"int"``, ``"uint"``
    (unsigned integers, whose values may pass 2**63), ``"float"`` or ``"bool"``."""
    cls = column_class(dtype)
    if cls == "int" and pd.api.types.is_unsigned_integer_dtype(dtype):
        return "uint"
    return cls


def native_dtype(native: str):
    """The numpy dtype of a native class (:func:`native_class`)."""
    return {"int": np.int64, "uint": np.uint64, "bool": bool}.get(native, np.float64)


def native_values(s: pd.Series, native: str) -> np.ndarray:
    """The values of a numeric column used inside ``C()``, in its native dtype
    (no missing values: the caller has dropped them)."""
    if native in ("int", "uint", "bool"):
        return s.to_numpy(dtype=native_dtype(native))
    return s.to_numpy(dtype=np.float64, na_value=np.nan)


def native_values_exact(s: pd.Series, native: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`native_values`, and which of them are not exactly a value of the native
    dtype (no missing values): ``2.5``, ``1e30`` or ``-1`` read for integer levels
    (``"uint"``: ``-1``), ``2`` or ``0.5`` for boolean ones.  Converted, those would be
    another value (``2``, a wrapped integer, ``True``), that is a level they are not.
    """
    if native == "float":
        return native_values(s, native), np.zeros(len(s), dtype=bool)
    signed = pd.api.types.is_signed_integer_dtype(s.dtype)
    unsigned = pd.api.types.is_unsigned_integer_dtype(s.dtype)
    if pd.api.types.is_bool_dtype(s.dtype) or (native == "int" and signed):
        return native_values(s, native), np.zeros(len(s), dtype=bool)
    if signed or unsigned:
        v = s.to_numpy(dtype=np.int64 if signed else np.uint64)
        if native == "bool":
            inexact = (v != 0) & (v != 1)
        elif native == "uint":
            inexact = v < 0
        else:
            inexact = v >= np.uint64(2**63)
        return np.where(inexact, 0, v).astype(native_dtype(native)), inexact
    if s.dtype == object and object_types(s) <= {"int", "bool"}:
        # Python integers, past 2**53 too: compared exactly, not as floats
        low, high = {"int": (-(2**63), 2**63), "uint": (0, 2**64), "bool": (0, 2)}[native]
        v = s.to_numpy(dtype=object)
        inexact = ~((v >= low) & (v < high)).astype(bool)
        return native_values(s.where(~inexact, 0), native), inexact
    v = s.to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        if native == "bool":
            exact = (v == 0.0) | (v == 1.0)
        else:
            low = -(2.0**63) if native == "int" else 0.0
            high = 2.0**63 if native == "int" else 2.0**64
            exact = (v == np.floor(v)) & (v >= low) & (v < high)
    return np.where(exact, v, 0.0).astype(native_dtype(native)), ~exact


# pandas' inferred kind of an object column -> the Python types it stands for
_INFERRED = {
    "string": {"str"},
    "integer": {"int"},
    "floating": {"float"},
    "mixed-integer-float": {"int", "float"},
    "decimal": {"Decimal"},
    "boolean": {"bool"},
    "bytes": {"bytes"},
    "empty": set(),
}


def object_types(s: pd.Series) -> set[str]:
    """The Python types of the non-missing values of an ``object`` column.

    Names are ``"str"``, ``"int"``, ``"float"``, ``"bool"``, ``"Decimal"`` (numpy
    scalars count as their Python type) or the type's own name.  pandas' ``infer_dtype``
    answers for one-type columns; only a column of several types is walked value by
    value.  The answer for a whole column is the union of the answers for any split of
    its rows, so partitions can be asked one by one.
    """
    inferred = pd.api.types.infer_dtype(s, skipna=True)
    known = _INFERRED.get(inferred)
    if known is not None:
        return set(known)
    return object_type_names(s.to_numpy(dtype=object))


#: Python types of nested values: Parquet's struct (dict), list and array columns
_NESTED_TYPES = {"dict", "list", "ndarray", "set"}


def check_plain_values(types: set[str], name: str) -> None:
    """Refuse an ``object`` column holding nested values (``types`` from
    :func:`object_types`): a Parquet struct column is read as dicts, a list column as
    arrays, and neither is a number or a label (they are not even hashable).

    Raises
    ------
    DataError
        Naming the column and the type of its values.
    """
    nested = sorted(types & _NESTED_TYPES)
    if nested:
        kind = "a struct column" if "dict" in nested else "a list column"
        raise DataError(
            f"column {name!r} holds nested values ({', '.join(nested)}: {kind}, as "
            "Parquet's nested types are read), which are neither numbers nor labels; "
            "make a column of one of its fields or elements first"
        )


def object_class(types: set[str], name: str) -> str | None:
    """How an ``object`` column holding values of ``types`` is read.

    Returns ``"string"`` (labels: text, or one other type such as dates), ``"float"``
    (numbers: ``int``, ``float``, ``Decimal``), ``"int"`` (integers only), ``"bool"``,
    or None when every value is missing.

    Raises
    ------
    DataError
        If the values are of several kinds (text and numbers, booleans and numbers...):
        such a column would be read differently by different engines; or nested
        (:func:`check_plain_values`).
    """
    if not types:
        return None
    check_plain_values(types, name)
    if types <= NUMBER_TYPES:
        return "int" if types == {"int"} else "float"
    if len(types) == 1:
        return "bool" if types == {"bool"} else "string"
    raise several_types_error(types, name)


def group_keys(s: pd.Series, native: str | None = None) -> np.ndarray:
    """The group labels of a column as numpy values of the matching type, in memory of
    their own.

    Categoricals give their categories' values; strings give objects; unsigned
    integers stay unsigned (ids above 2**63 must not wrap to negatives).  ``native``
    (``"int"``, ``"float"``, ``"bool"``) converts an ``object`` column of numbers or
    booleans (:func:`object_class`), so that ``5`` and ``np.int64(5)`` are one group and
    keys of mixed number types sort.

    Keys that would be the column's own values (a numpy column of numbers, booleans or
    objects, pandas' numpy-backed strings) are copied (pandas copies only then): a model
    keeps its keys, and a caller who writes new labels into the column later (``loc``
    writes into the column's memory) moves no row of the model to another group.  Arrow
    memory is never written in place, and its conversions are new arrays already.
    """
    dt = s.dtype
    copy = not (isinstance(dt, pd.ArrowDtype) or getattr(dt, "storage", None) == "pyarrow")
    if native is not None and pd.api.types.is_object_dtype(dt):
        try:
            return s.to_numpy(dtype=native_dtype(native), copy=copy)
        except OverflowError:
            raise DataError(
                f"group column {s.name!r} holds integers outside the int64 range as Python "
                f"objects; convert it first, e.g. df[{s.name!r}].astype('uint64')"
            ) from None
    if isinstance(dt, pd.CategoricalDtype):
        cats = dt.categories
        if column_class(cats.dtype) in NUMBER_CLASSES:
            values = cats.to_numpy()
        else:
            values = cats.to_numpy(dtype=object)
        return values[s.cat.codes.to_numpy()]  # (a new array)
    cls = column_class(dt)
    if cls in ("string", "arrow-dict"):
        return s.to_numpy(dtype=object, copy=copy)
    if cls == "int":
        # (numpy's and Arrow's integer dtypes both say "u" for unsigned)
        return s.to_numpy(dtype=np.uint64 if dt.kind == "u" else np.int64, copy=copy)
    if cls == "float":
        return s.to_numpy(dtype=np.float64, copy=copy)
    if cls == "bool":
        return s.to_numpy(dtype=bool, copy=copy)
    return s.to_numpy(copy=copy)


def coded_group_keys(
    s: pd.Series, native: str | None = None
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """:func:`group_keys` of a column, with its rows' group codes where text keys are
    numbered without a Python object a row (:func:`~dmixed.stats.keys.text_codes`).

    Returns
    -------
    keys : ndarray, shape (n,)
        :func:`group_keys` ``(s, native)``; for text keys numbered by Arrow, the sorted
        labels taken by the codes (each distinct key one Python string, which the rows
        share: equal to the keys as objects, and a new array), read-only: the codes
        hold for them only while no one writes into them.
    coded : (codes, labels) or None
        :func:`~dmixed.stats.keys.sorted_codes` of ``keys``, read-only (a model's rows
        keep them for every fit), or None where the column is not text without missing
        values (then the engine numbers ``keys`` itself).
    """
    coded = None
    if native is None and column_class(s.dtype) in ("string", "arrow-dict", "categorical"):
        coded = text_codes(s)
    if coded is None:
        return group_keys(s, native), None
    codes, labels = coded
    keys = labels[codes]
    keys.flags.writeable = False
    codes.flags.writeable = False
    labels.flags.writeable = False
    return keys, (codes, labels)


#: What group keys of each value class compare with (:func:`key_class`).
_KEY_CLASSES = {"int": "number", "float": "number", "bool": "bool", "string": "label"}

#: How :func:`comparable_keys` names each key class in its refusal.
_KEY_WORDS = {"number": "numeric", "label": "text", "bool": "boolean", "tuple": "tuple"}


def key_class(keys: np.ndarray, name: str) -> str | None:
    """How group keys compare under the column rules: ``"number"`` (integers, floats
    and Decimals compare by value, so ``5``, ``5.0`` and ``np.int64(5)`` are one key),
    ``"bool"``, ``"tuple"`` (tuples, pandas' keys of several parts: their text, such
    as the ``'(3, 3)'`` Dask makes of ``(3, 3)``, is another key), ``"label"`` (text, or
    one other type such as dates), or None when there is no key.

    ``keys`` is what :func:`group_keys` gives; an ``object`` array is classed by the
    Python types of its values (:func:`object_class`, which raises
    :class:`~dmixed.errors.DataError` naming ``name`` for values of several kinds).
    """
    kind = keys.dtype.kind
    if kind in "iuf":
        return "number"
    if kind == "b":
        return "bool"
    types = object_types(pd.Series(keys, dtype=object))
    cls = object_class(types, name)
    if cls is None:
        return None
    return "tuple" if types == {"tuple"} else _KEY_CLASSES[cls]


def comparable_keys(keys: np.ndarray, fitted: np.ndarray, name: str) -> np.ndarray:
    """``keys`` in a form that compares with the ``fitted`` keys by identity, as the fit
    read them: numbers as numbers (``'0'`` never finds the group fitted as ``0``).

    Parameters
    ----------
    keys : ndarray (n,)
        New rows' group keys (:func:`group_keys` of their column).
    fitted : ndarray (G,)
        The fitted groups' keys.
    name : str
        The group column (or argument), for messages.

    Raises
    ------
    DataError
        If the keys are of another class than the fitted ones (:func:`key_class`: text
        for groups fitted as numbers, tuples for groups fitted as text such as
        ``'(3, 3)'``, ...): under the column rules they are other groups, and a silent
        population prediction would follow.  The message names the column and both
        classes.  Missing keys (None, NaN) are no class: they are left out of the
        comparison (their rows are predicted NaN, as a row missing any column the
        prediction uses), and a column of missing keys only is returned as it is.
    """
    want = key_class(fitted, "fitted groups")
    missing = np.asarray(pd.isna(keys), dtype=bool)
    if missing.all():
        return keys
    have = key_class(keys[~missing] if missing.any() else keys, name)
    if have is None or want is None or have == want:
        if have == "number" and keys.dtype == object:
            whole = all(isinstance(v, (int, np.integer)) for v in keys if not pd.isna(v))
            return keys.astype(np.int64 if whole else np.float64)
        return keys
    example = py_scalars([next((v for v in keys if not pd.isna(v)), None), fitted[0]])
    convert = {
        "number": f"pd.to_numeric(data[{name!r}])",
        "label": f"data[{name!r}].astype(str)",
        "bool": f"data[{name!r}].astype(bool)",
        "tuple": f"a column of tuples (pd.Series(list_of_tuples, dtype=object)) as {name!r}",
    }[want]
    raise DataError(
        f"group column {name!r} holds {_KEY_WORDS[have]} keys (such as {example[0]!r}) but "
        f"the model was fitted with {_KEY_WORDS[want]} keys (such as {example[1]!r}); they "
        "are other groups under "
        f"dmixed's column rules, so no row would find its group: convert them first, "
        f"e.g. {convert}{_missing_note(int(missing.sum()))}"
    )


def _missing_note(n_missing: int) -> str:
    """The part of a key message about missing keys: converting them to text would
    make them a group ``'nan'``, so they are to be kept missing."""
    if not n_missing:
        return ""
    return (
        f" (the column also has {n_missing} missing key(s): leave those missing, "
        "not converted to text, where their rows get NaN)"
    )


def py_scalars(values) -> list:
    """Python scalars (numpy scalars converted) of an iterable."""
    return [v.item() if isinstance(v, np.generic) else v for v in values]
