"""Step 4 of building a model spec: the levels of the factor columns, from one scan of the
whole dataset (:func:`scan_levels`; the other steps are in :mod:`~dmixed.design.build`)."""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import BadValuesError, DataError, NumericFactorWarning, caller_stacklevel
from .build import ParsedFormulas
from .dtypes import (
    CATEGORICAL,
    NUMERIC,
    NUMERIC_LEVELS,
    check_numbers_as_text,
    is_arrow_decimal,
    object_class,
)
from .messages import decimal_term, response_not_numbers
from .scan import (
    LevelScan,
    ScanChains,
    ScanPlan,
    dask_scan,
    locate_text,
    object_columns,
    pandas_scan,
)

__all__ = ["group_native", "scan_levels"]


def _check_response_numeric(meta, parsed: ParsedFormulas, kinds: dict, data=None) -> None:
    # data: the pandas DataFrame (its first value that is not a number is named), or None
    for c in parsed.lhs.columns:
        if kinds[c] == CATEGORICAL:
            values = data[c] if data is not None else None
            raise response_not_numbers(c, values, dtype=meta[c].dtype)


def scan_levels(
    data,
    meta,
    dask_input,
    kinds,
    native,
    parsed,
    columns_used,
    missing,
    dtypes=None,
    scan_chains: ScanChains | None = None,
    client=None,
):
    """The levels of the factor columns and the whole-data row counts (:class:`LevelScan`).

    ``object`` columns are read by the Python types of their values: ``kinds``,
    ``native`` and the levels are updated for those holding numbers or booleans
    (:func:`~dmixed.design.dtypes.object_class`).  A plain term that reads a column of
    numbers as a factor raises :class:`~dmixed.errors.NumericFactorWarning`.
    ``dtypes``: ``meta.dtypes`` where the caller has it.  ``scan_chains``: what reads a
    Dask collection's partitions in runs (:data:`~dmixed.design.scan.ScanChains`; None:
    one task per partition).  ``client``: the ``distributed.Client`` a Dask
    collection is read on (None: Dask's default, the current client if any).

    Raises
    ------
    DataError
        If the data is empty, no row is left after dropping missing values, a factor
        column has no non-missing value, an ``object`` column mixes kinds of values, or
        the response is not numeric.
    """
    plan = ScanPlan(
        level_cols=[
            c for c in parsed.formula_columns() if kinds[c] in (CATEGORICAL, NUMERIC_LEVELS)
        ],
        object_cols=object_columns(meta, columns_used, dtypes),
        c_columns=parsed.c_columns(),
        columns_used=columns_used,
        value_columns=parsed.value_columns(),
        missing=missing,
    )
    if dask_input:
        plan.resp_col = parsed.lhs.columns[0] if len(parsed.lhs.columns) == 1 else None
        scan = dask_scan(data, meta, kinds, plan, scan_chains, client, reader="dmixed.mixedlm")
    else:
        scan = pandas_scan(data, kinds, plan)
    if scan.n_total is not None and scan.n_total == 0:
        raise BadValuesError("data is empty (0 rows)")
    if scan.n_kept is not None and scan.n_kept == 0:
        raise BadValuesError(
            f"no rows left after dropping rows with missing values ({scan.n_total} rows dropped)"
        )
    try:
        _read_object_columns(
            scan, kinds, native, plan.c_columns, parsed.bare_columns(), parsed.value_columns()
        )
    except BadValuesError as err:
        column = getattr(err, "mixed_column", None)
        if column is None or column not in parsed.lhs.columns:
            raise
        # a response is numbers: no labels hint; the value and its row where at hand
        raise response_not_numbers(column, None if dask_input else data[column]) from None
    _decimal_levels_as_floats(scan, kinds, meta, plan.c_columns)
    _check_response_numeric(meta, parsed, kinds, None if dask_input else data)
    for c in plan.level_cols:
        if kinds[c] != NUMERIC and not scan.levels[c]:
            raise BadValuesError(f"column {c!r} has no non-missing values")
        if kinds[c] == CATEGORICAL and c not in plan.c_columns:
            try:
                check_numbers_as_text(c, scan.levels[c], scan.n_kept)
            except BadValuesError as err:
                if not dask_input:
                    raise
                # the levels are the whole data's: the partition and file holding the
                # text are sought only now, as a bad value of one partition is named
                raise locate_text(err, data, kinds, plan, c, client) from None
    _warn_numeric_factors(parsed, kinds, scan.levels, meta)
    return scan


def _read_object_columns(
    scan: LevelScan, kinds: dict, native: dict, c_columns: set, bare: set, values: set
) -> None:
    """Numbers and booleans held in ``object`` columns are read as numbers (inside
    ``C()``, and booleans read as they are, ``bare``: as numeric levels, as
    :func:`~dmixed.design.build.column_kinds` reads such columns of other dtypes); text
    stays labels, dates and other Python objects among them (pandas reads a Parquet
    ``date32`` column as ``datetime.date`` objects: a factor, as statsmodels reads it);
    mixed kinds are refused, and so are ``Decimal`` values that a term reads outside
    ``C()`` (:func:`~dmixed.design.messages.decimal_term`; a response of them is numbers,
    which statsmodels cannot fit at all, and a group column of them labels)."""
    for c, types in scan.types.items():
        cls = object_class(types, c)
        if c not in kinds or cls in (None, "string"):
            continue
        if "Decimal" in types and c in values:
            raise decimal_term(c)
        if c not in c_columns and not (cls == "bool" and c in bare):
            kinds[c] = NUMERIC
            scan.levels.pop(c, None)
            if cls == "bool":  # booleans inside expressions, as column_kinds keeps them
                native[c] = "bool"
            continue
        kinds[c] = NUMERIC_LEVELS
        convert = {"int": int, "bool": bool}.get(cls, float)
        scan.levels[c] = sorted({convert(v) for v in scan.levels[c]})
        native[c] = _integer_native(scan.levels[c], c) if cls == "int" else cls


def _decimal_levels_as_floats(scan: LevelScan, kinds: dict, meta, c_columns: set) -> None:
    """The levels of an Arrow decimal column inside ``C()`` as floats, as an ``object``
    column of the same Decimals gives them (:func:`_read_object_columns`): a Parquet
    decimal column is one model whether ``pd.read_parquet`` (objects) or
    ``dd.read_parquet`` (Arrow) read it."""
    for c in c_columns:
        if kinds.get(c) == NUMERIC_LEVELS and is_arrow_decimal(meta[c].dtype):
            scan.levels[c] = sorted({float(v) for v in scan.levels[c]})


def _integer_native(values: list, name: str) -> str:
    """``"int"`` (int64) or ``"uint"`` (uint64) for Python integers; refuses wider ones."""
    if not values or -(2**63) <= min(values) and max(values) < 2**63:
        return "int"
    if min(values) >= 0 and max(values) < 2**64:
        return "uint"
    raise DataError(
        f"column {name!r} holds integers outside the 64-bit range "
        f"({min(values)} .. {max(values)}); convert it to text to use them as labels"
    )


def group_native(scan: LevelScan, groups: str) -> str | None:
    """How the keys of an ``object`` group column of numbers or booleans are converted
    (``"int"``, ``"float"``, ``"bool"``; None: kept as they are)."""
    types = scan.types.get(groups)
    cls = object_class(types, groups) if types is not None else None
    return cls if cls in ("int", "float", "bool") else None


def _looks_numeric(levels: list) -> str | None:
    """``"numbers"`` if every level is a number, ``"text"`` if every level is text
    that reads as a finite number, else None."""
    if not levels:
        return None
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in levels):
        return "numbers"
    if not all(isinstance(v, str) for v in levels):
        return None
    try:
        values = np.array([float(v) for v in levels])
    except ValueError:
        return None
    return "text" if np.isfinite(values).all() else None


def _warn_numeric_factors(parsed: ParsedFormulas, kinds: dict, levels: dict, meta) -> None:
    """Say when a plain term makes a factor of a column of numbers, and how to choose."""
    for c in sorted(parsed.plain_columns()):
        if kinds.get(c) != CATEGORICAL:
            continue
        looks = _looks_numeric(levels[c])
        if looks is None:
            continue
        shown = ", ".join(repr(v) for v in levels[c][:5]) + (", ..." if len(levels[c]) > 5 else "")
        what = (
            f"is a categorical of numbers ({shown})"
            if looks == "numbers"
            else f"holds numbers written as text ({shown}; dtype {meta[c].dtype})"
        )
        order = "numeric" if looks == "numbers" else "text"
        if levels[c] != sorted(levels[c]):
            order = "declared"  # an ordered categorical, or text categories
        warnings.warn(
            f"column {c!r} {what}: it is used as a factor, with levels in {order} order "
            f"(reference level {levels[c][0]!r}). Write C({c}) to use it as a factor "
            f"without this warning, or convert the column to numbers to use its values "
            f"(e.g. df[{c!r}] = df[{c!r}].astype(float); Dask's from_pandas turns object "
            "columns, Decimal among them, into text unless dask's "
            '"dataframe.convert-string" option is False)',
            NumericFactorWarning,
            stacklevel=caller_stacklevel(),
        )
