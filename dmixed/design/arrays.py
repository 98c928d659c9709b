"""The array half of the design: statsmodels' ``MixedLM(endog, exog, groups, ...)`` inputs.

Arrays (numpy, pandas) become :class:`RowData`, the model matrices of all rows
in-process, with statsmodels' default names, the missing-value policy applied and
statsmodels' ``exog_vc`` dict converted to per-row sparse entries.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import BadValuesError, DataError, DroppedRowsWarning, SpecError, caller_stacklevel
from ..stats.slots import present_pairs
from .dtypes import NUMERIC, key_class, warn_rounded_integers
from .messages import plural
from .missing import missing_mask, missing_rows
from .scan import is_dask


@dataclass
class RowData:
    """Model matrices for all rows, in-process (DESIGN.md §1 notation)."""

    endog: np.ndarray
    exog: np.ndarray
    exog_re: np.ndarray
    groups: np.ndarray
    vc_cols: list[np.ndarray] = field(default_factory=list)
    vc_vals: list[np.ndarray] = field(default_factory=list)
    weights: np.ndarray | None = None
    n_dropped: int = 0
    #: the pandas index of the rows (kept rows only) for pandas input; None for arrays
    index: pd.Index | None = None
    #: the first column of ``exog`` and of ``exog_re`` that is 1.0 on every row (−1:
    #: none), found with the rows (:func:`ones_columns`), or the formulas' intercepts
    #: (:meth:`~dmixed.design.spec.ModelSpec.intercept_columns`: columns of ones by
    #: construction); None: not looked for (the data pass looks,
    #: :meth:`~dmixed.stats.standardize.Standardization.choose`).  Rows replaced
    #: (``dataclasses.replace``) must reset it.
    intercepts: tuple[int, int] | None = None
    #: :func:`~dmixed.stats.keys.sorted_codes` of ``groups`` where the design numbered
    #: them from their column (:attr:`~dmixed.design.spec.DesignMatrices.group_codes`;
    #: the engine numbers ``groups`` itself where None).  ``groups`` and the codes are
    #: then read-only, also after unpickling, so that a write into ``groups`` (a
    #: user's, through ``model.groups``) raises instead of leaving codes that disagree
    #: with it (:meth:`numbered_groups`).  Rows replaced with other ``groups`` (a
    #: subset) must reset it.
    group_codes: tuple[np.ndarray, np.ndarray] | None = None

    def __setstate__(self, state: dict) -> None:
        # pickle does not keep numpy's read-only flag: set it again with the codes
        self.__dict__.update(state)
        if self.group_codes is not None:
            for a in (self.groups, *self.group_codes):
                a.flags.writeable = False

    def numbered_groups(self) -> tuple[np.ndarray, np.ndarray] | None:
        """:attr:`group_codes` while they hold for ``groups`` (``groups`` still
        read-only), else None: then the caller numbers ``groups`` itself."""
        if self.group_codes is None or self.groups.flags.writeable:
            return None
        return self.group_codes


def pandas_index(*values) -> pd.Index | None:
    """The index of the first pandas Series or DataFrame among ``values`` (statsmodels
    labels a model's rows by its pandas ``endog`` or, failing that, ``exog``); None if
    none is pandas."""
    for value in values:
        if isinstance(value, (pd.Series, pd.DataFrame)):
            return value.index
    return None


def as_float_matrix(value, argname: str) -> np.ndarray:
    """A 2-D column-major float64 array; ``None``, ``pd.NA`` and ``NaT`` of an object
    array, or of an object column of a DataFrame or Series, are NaN (missing values).

    Column-major as the formula's design is built: the data pass and the checks read
    the rows column by column, and numpy's reductions down the rows of a narrow
    row-major array are an order of magnitude slower (benchmarks/RESULTS.md).

    Raises
    ------
    BadValuesError
        Values that are not real numbers (text, numbers written as text included; other
        objects), naming ``argname`` and the first such value's place, or the column of
        a DataFrame.
    DataError
        A DataFrame with two columns of one name; not 1- or 2-dimensional.
    """
    return np.asfortranarray(_float_matrix(value, argname))


def as_float_column(value, argname: str) -> np.ndarray:
    """:func:`as_float_matrix` of a value per row: ``(n, 1)``.

    Raises
    ------
    DataError
        ``value`` of more than one column (a weight per row is one number, not the
        first of several); as :func:`as_float_matrix` otherwise.
    """
    arr = as_float_matrix(value, argname)
    if arr.shape[1] != 1:
        raise DataError(
            f"{argname} must be one column (one value per row), got shape {np.shape(value)}"
        )
    return arr


def refuse_dask(**arrays) -> None:
    """Refuse a Dask collection among the arrays of ``MixedLM(endog, exog, groups,
    ...)`` (by name), which would otherwise be computed into memory, whole, here.

    Raises
    ------
    SpecError
        Naming the argument and the way Dask data is fitted: a formula over one Dask
        DataFrame (``dmixed.mixedlm``, ``MixedLM.from_formula``), whose partitions are
        read where they are.
    """
    for name, value in arrays.items():
        if not is_dask(value):
            continue
        kind = type(value).__name__
        array = (
            " (dask.dataframe.from_dask_array(x, columns=[...]) makes one of a Dask "
            "Array's columns)"
            if "array" in type(value).__module__
            else ""
        )
        raise SpecError(
            f"MixedLM(endog, exog, groups, ...) takes data in memory, and {name} is a Dask "
            f"{kind}: fit Dask data with a formula over one Dask DataFrame{array}, "
            "dmixed.mixedlm('y ~ x1 + x2', ddf, groups='g') (MixedLM.from_formula), "
            f"which reads its partitions where they are; or pass {name}.compute() for "
            "data that fits in memory"
        )


def detached(array: np.ndarray, source) -> np.ndarray:
    """``array``, converted from the caller's ``source``, in memory of its own: a copy
    where it may still be the caller's (``source`` itself, a view of it, a pandas
    object's values), so that a caller who refills its buffers after building the model
    (a simulation loop) changes neither the model nor the results read from it later
    (``fittedvalues``, ``resid``, a refit).  A conversion that made new memory is kept."""
    if (
        array.base is None
        and array is not source
        and not isinstance(source, (pd.Series, pd.DataFrame))
    ):
        return array
    return array.copy(order="K")


def group_label_array(groups, name: str = "groups") -> np.ndarray:
    """``groups`` as an array, with labels of several kinds (``5`` and ``'5'``, ``True``
    and ``1``) refused as a formula's group column refuses them
    (:func:`~dmixed.design.dtypes.key_class`).  numpy turns a list of such values into
    one type (``5`` becomes ``'5'``, ``True`` becomes ``1``) and so merges groups, so a
    Python sequence is classed by its values before that conversion.

    Raises
    ------
    BadValuesError
        Labels of several kinds.
    """
    labels = np.asarray(groups)
    if isinstance(groups, (list, tuple)):
        values = np.asarray(groups, dtype=object)
        if values.ndim == 1:  # (rows of tuples: refused by the caller's shape check)
            key_class(values, name)
    elif labels.dtype == object:
        key_class(labels.reshape(-1), name)
    return labels


def random_design(value, exog: np.ndarray, argname: str = "exog_re") -> np.ndarray:
    """``exog_re`` as :func:`as_float_matrix` gives it, or, where its columns are bitwise
    a run of ``exog``'s columns (``exog[:, :2]``: a random intercept and slope on
    the first covariate), that run of the column-major ``exog`` itself: the same
    values, without a copy of the rows (which is, with its fresh pages, most of the
    cost of building a large model of arrays).  Errors as :func:`as_float_matrix`."""
    z = _float_matrix(value, argname)
    start = _column_run(z, exog)
    if start is None:
        return np.asfortranarray(z)
    return exog[:, start : start + z.shape[1]]


def random_intercept(exog: np.ndarray) -> np.ndarray:
    """The default random design (a column of ones, ``n × 1``): a column of ``exog``
    that holds 1.0 on every row where there is one (no new rows), else new ones."""
    n = exog.shape[0]
    for j in range(exog.shape[1]):
        column = exog[:, j]
        head = column[:8]
        if (head == 1.0).all() and (column == 1.0).all():  # 1.0 has one bit pattern
            return exog[:, j : j + 1]
    return np.ones((n, 1))


def ones_columns(
    exog: np.ndarray, exog_re: np.ndarray, constant: list[int] | None = None
) -> tuple[int, int]:
    """The first column of ``exog`` and of ``exog_re`` that is exactly 1.0 on every row
    (−1: none; −1 without rows), the rule of the statistics' column map
    (:meth:`~dmixed.stats.standardize.Standardization.choose`), so that the data pass
    need not look again.  A column of ``exog_re`` that is a column of ``exog`` (the same
    memory: :func:`random_design`) takes that column's answer without a look.
    ``constant``: :func:`constant_columns` of these very ``exog`` rows, found already:
    its columns whose one value is 1.0 are the columns of ones, without a look."""
    found: dict[tuple, bool] = {}

    def column_key(matrix: np.ndarray, start: int, j: int) -> tuple:
        # column j's memory: its first entry's address (the matrix's, ``start``, moved
        # on by j column strides, as numpy places a column view), stride and length
        return (start + j * matrix.strides[1], matrix.strides[:1], matrix.shape[:1])

    # exog's address read once (numpy's array interface costs more than a ufunc call)
    exog_start = exog.__array_interface__["data"][0] if exog.shape[0] else None
    if constant is not None and exog.shape[0]:
        first = exog[0].tolist()
        for j in range(exog.shape[1]):
            found[column_key(exog, exog_start, j)] = j in constant and first[j] == 1.0

    def first_ones(matrix: np.ndarray) -> int:
        if matrix.shape[0] == 0:
            return -1
        start = exog_start if matrix is exog else matrix.__array_interface__["data"][0]
        for j in range(matrix.shape[1]):
            column = matrix[:, j]
            key = column_key(matrix, start, j)
            if key not in found:
                found[key] = bool((column[:8] == 1.0).all() and (column == 1.0).all())
            if found[key]:
                return j
        return -1

    return first_ones(exog), first_ones(exog_re)


def _column_run(z: np.ndarray, exog: np.ndarray) -> int | None:
    """The first ``j`` with ``z``'s columns bitwise equal to ``exog[:, j : j + q]``
    (NaN payloads and the sign of zero included), or None."""
    n, q = z.shape
    p = exog.shape[1]
    if q == 0 or q > p or exog.shape[0] != n or not exog.flags.f_contiguous:
        return None
    bits_z, bits_x = z.view(np.int64), exog.view(np.int64)
    head = min(n, 8)
    for j in range(p - q + 1):
        if all(  # np.array_equal of columns of one length, without its wrappers
            not np.count_nonzero(bits_z[:head, a] != bits_x[:head, j + a])
            and not np.count_nonzero(bits_z[:, a] != bits_x[:, j + a])
            for a in range(q)
        ):
            return j
    return None


def _float_matrix(value, argname: str) -> np.ndarray:
    """:func:`as_float_matrix` in the array's own memory order."""
    unnamed = isinstance(value, pd.Series) and value.name is None
    if isinstance(value, pd.Series):
        value = value.to_frame()

    def where(col) -> str:  # a Series without a name is the argument itself
        return argname if unnamed else f"{argname}: column {col!r}"

    if isinstance(value, pd.DataFrame):
        if not value.columns.is_unique:
            dup = value.columns[value.columns.duplicated()].unique().tolist()
            raise DataError(
                f"{argname} has more than one column named {dup[0]!r}: the parameters "
                "are read by name, so each column needs its own"
            )
        objects = [col for col, dt in value.dtypes.items() if pd.api.types.is_object_dtype(dt)]
        if objects:
            # numbers in an object column (and None, pd.NA) are read as in an object
            # array; the caller's frame is not written
            value = value.copy(deep=False)
            for col in objects:
                value[col] = _numbers(value[col].to_numpy(), where(col))
        for col in value.columns:
            if not (
                pd.api.types.is_numeric_dtype(value[col]) or pd.api.types.is_bool_dtype(value[col])
            ):
                raise BadValuesError(
                    f"{where(col)} has non-numeric dtype {value[col].dtype}; "
                    "encode it (e.g. with a formula and C(...)) first"
                )
            warn_rounded_integers(value[col], f"{argname}[{col!r}]")
        return value.astype("float64").to_numpy(na_value=np.nan)
    if isinstance(value, np.ndarray):
        warn_rounded_integers(value, argname)
    try:
        arr = np.asarray(value)
    except ValueError as exc:  # nested sequences of several lengths
        raise BadValuesError(f"{argname} must be numeric: {exc}") from exc
    if arr.dtype.kind in "US" and not isinstance(value, np.ndarray):
        arr = np.asarray(value, dtype=object)  # [1.0, "x"]: the text, not "1.0"
    arr = _numbers(arr, argname)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise DataError(f"{argname} must be 1- or 2-dimensional, got shape {arr.shape}")
    return arr


#: what ``pd.api.types.infer_dtype(..., skipna=True)`` says of values that are all numbers
#: (or missing: ``"empty"``), without text among them
_NUMBERS_INFERRED = frozenset({"floating", "integer", "mixed-integer-float", "boolean", "empty"})


def _numbers(arr: np.ndarray, argname: str) -> np.ndarray:
    """``arr`` (numpy, any shape) as float64: numbers and booleans as they are, and in
    an object array the numbers, with ``None``, ``NaN``, ``pd.NA`` and ``NaT`` as NaN
    (missing values, which the model's ``missing`` handles as it does NaN).

    numpy alone reads the text ``"1.5"`` as 1.5 (where a formula reads such a column
    as a factor) and fails on ``pd.NA`` with a ``TypeError`` about ``float()``.

    Raises
    ------
    BadValuesError
        Text (a text dtype, or a string in an object array: the first is shown with
        its position), other objects, or complex or date values; the message names
        ``argname``.
    """
    kind = arr.dtype.kind
    if kind in "biuf" or (kind in "US" and arr.size == 0):
        return arr.astype(np.float64, copy=False)
    if kind == "O":
        numbers = object_numbers(arr)
        if numbers is not None:
            return numbers
        missing = pd.isna(arr)
        first = next(
            j
            for j, (v, na) in enumerate(
                zip(arr.reshape(-1).tolist(), missing.reshape(-1), strict=True)
            )
            if not (na or is_real_type(type(v)))
        )
    elif kind in "US":
        first = 0
    else:
        raise BadValuesError(f"{argname} must be numeric (real numbers), got dtype {arr.dtype}")
    value = arr.reshape(-1)[first]
    position = tuple(int(i) for i in np.unravel_index(first, arr.shape))
    where = {0: "", 1: " at row {}", 2: " at row {}, column {}"}.get(arr.ndim, " at {}")
    if isinstance(value, (str, bytes)):
        shown = str(value) if isinstance(value, str) else bytes(value)  # not np.str_('a')
        what = (
            "it holds text (numbers written as text: convert them with .astype(float); "
            "categories: encode them, e.g. with a formula and C(...))"
        )
    else:
        shown, what = value, f"it holds {type(value).__name__} values"
    where = where.format(*position) if arr.ndim <= 2 else where.format(position)
    raise BadValuesError(f"{argname} must be numeric: {what}{where}: {shown!r}")


def object_numbers(arr: np.ndarray, missing: bool = True) -> np.ndarray | None:
    """An object array (any shape) of real numbers as float64: Python's and numpy's
    numbers but complex ones (``Decimal`` and ``Fraction`` included) and booleans, with
    ``None``, ``NaN``, ``pd.NA`` and ``NaT`` as NaN where ``missing``; None where a
    value is anything else (text, other objects), or missing where not ``missing``.

    The one reading of numbers held as objects: the model's arrays and DataFrame
    columns (:func:`as_float_matrix`), ``start_params`` and ``free``."""
    # pandas' inference (one pass in C) tells the common object arrays, numbers and
    # missing values alone, from those that may hold text; the others are looked at by
    # the types of their values
    inferred = pd.api.types.infer_dtype(arr.reshape(-1), skipna=True) in _NUMBERS_INFERRED
    if inferred and missing:
        try:
            return arr.astype(np.float64)  # None is NaN
        except TypeError:  # pd.NA, NaT
            pass
    na = pd.isna(arr)
    if not missing and na.any():
        return None
    if not inferred and not all(is_real_type(t) for t in set(map(type, arr[~na]))):
        return None
    return np.where(na, np.nan, arr).astype(np.float64)


def unboxed(arr: np.ndarray) -> np.ndarray:
    """``arr``, or for an object array of real numbers alone (no missing values) their
    float64 (:func:`object_numbers`), as numpy reads them: a Series of object dtype or
    a list of ``Decimal`` given as ``start_params`` or ``free``.  Any other object array
    is returned as it is, for the caller to refuse by its dtype."""
    if arr.dtype.kind != "O":
        return arr
    numbers = object_numbers(arr, missing=False)
    return arr if numbers is None else numbers


def is_real_type(kind: type) -> bool:
    """Whether values of type ``kind`` are read as real numbers: Python's and numpy's
    numbers but complex ones (``Decimal`` included), and booleans.

    The one rule of what a real number is, for the data, ``start_params`` and ``free``
    (:func:`object_numbers`) and the tolerances of ``fit`` (a caller that refuses a
    bool there does so itself)."""
    if issubclass(kind, (bool, np.bool_, numbers.Real)):
        return True
    return issubclass(kind, numbers.Number) and not issubclass(kind, numbers.Complex)


def column_names(value, default_prefix: str, k: int) -> list[str]:
    if isinstance(value, pd.DataFrame):
        return [str(c) for c in value.columns]
    if isinstance(value, pd.Series) and value.name is not None:
        return [str(value.name)]
    return [f"{default_prefix}{j + 1}" for j in range(k)]


def exog_names(value, arr: np.ndarray, constant: list[int] | None = None) -> list[str]:
    """statsmodels' names for numpy exog: 'const' for a constant column, else x1, x2, …
    (``constant``: :func:`constant_columns` of ``arr``, found already)."""
    if isinstance(value, (pd.DataFrame, pd.Series)):
        return column_names(value, "x", arr.shape[1])
    names, j = [], 0
    constant = set(constant_columns(arr) if constant is None else constant)
    for col in range(arr.shape[1]):
        if col in constant:
            names.append("const")
        else:
            j += 1
            names.append(f"x{j}")
    return names


def constant_columns(arr: np.ndarray) -> list[int]:
    """The columns of ``arr`` (n × p) that hold one non-zero value on every row (none
    without rows): the first rows of all the columns first, in one look (a column that
    varies is told by them), then the rest of the columns left, each alone."""
    if not arr.shape[0]:
        return []
    first = arr[0]
    candidates = (first != 0) & np.logical_and.reduce(arr[:8] == first, axis=0)
    # != the exact negation of == (NaN included): no entry differs, as (==).all() says
    return [
        j for j in candidates.nonzero()[0].tolist() if not np.count_nonzero(arr[:, j] != first[j])
    ]


def _all_finite(arr: np.ndarray) -> bool:
    """True only if a float array holds no NaN or ±inf: its sum is then finite (a NaN or
    an inf makes the sum NaN or inf; an overflowing sum of finite values answers False,
    and the caller looks entry by entry). One pass without a mask per entry; the
    caller ignores the sum's overflow and invalid warnings (``np.errstate``)."""
    if arr.dtype.kind != "f":
        return False
    return bool(np.isfinite(np.add.reduce(arr, axis=None)))


def _rows_missing(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, int]] | None:
    """Rows with a missing (or infinite) value in any array, and the count per array
    (integer and boolean arrays hold none: not looked at); None where every array is
    found finite without a mask."""
    n = len(next(iter(arrays.values())))
    finite: dict[int, np.ndarray] = {}  # the arrays found finite, by id: a view of one is
    masks = {}
    with np.errstate(over="ignore", invalid="ignore"):
        for name, value in arrays.items():
            arr = np.asarray(value)
            if arr.dtype.kind in "iub" or (arr.base is not None and id(arr.base) in finite):
                continue
            if _all_finite(arr):
                finite[id(arr)] = arr  # (random_design's); held, so the id stays its own
                continue
            masks[name] = missing_mask(arr, NUMERIC, infinite=True).reshape(n, -1).any(axis=1)
    return missing_rows(masks, n) if masks else None


def handle_missing(rows: RowData, missing: str, vc_names: list[str] | None = None) -> RowData:
    """``rows`` without the rows holding a missing or infinite value (``missing="drop"``,
    warned), or refused naming the arrays that hold them; ``vc_names``: the names of
    ``exog_vc``'s components (:func:`convert_exog_vc`), in the order of ``rows.vc_vals``.

    Raises
    ------
    BadValuesError
        Missing or infinite values and ``missing`` is not ``"drop"``.
    """
    vc_names = vc_names if vc_names is not None else list(range(len(rows.vc_vals)))
    arrays = {
        "endog": rows.endog,
        "exog": rows.exog,
        "exog_re": rows.exog_re,
        "groups": rows.groups,
    }
    for name, vals in zip(vc_names, rows.vc_vals, strict=True):
        arrays[f"exog_vc[{name!r}]"] = vals
    if rows.weights is not None:
        arrays["weights"] = rows.weights
    missing_found = _rows_missing(arrays)
    if missing_found is None:
        return rows
    bad, counts = missing_found
    if not bad.any():
        return rows
    if missing != "drop":
        detail = ", ".join(f"{k} ({v} rows)" for k, v in counts.items())
        raise BadValuesError(
            f"missing or infinite values in {detail}; pass missing='drop' to drop those rows"
        )
    keep = ~bad
    warnings.warn(
        f"dropped {plural(int(bad.sum()))} with missing values",
        DroppedRowsWarning,
        stacklevel=caller_stacklevel(),
    )
    return RowData(
        rows.endog[keep],
        rows.exog[keep],
        rows.exog_re[keep],
        rows.groups[keep],
        [c[keep] for c in rows.vc_cols],
        [v[keep] for v in rows.vc_vals],
        None if rows.weights is None else rows.weights[keep],
        int(bad.sum()),
        None if rows.index is None else rows.index[keep],
    )


def _check_vc_keys(name, per_group, labels) -> None:
    """Refuse a component of ``exog_vc`` that is empty or has keys naming no group.

    statsmodels refuses both (it indexes the dict by every group label); silently
    skipping them fitted a model without the component.

    Raises
    ------
    SpecError
        ``per_group`` not a dict (an array of all rows, say).
    DataError
        ``per_group`` is empty, or some of its keys equal no label of ``groups``
        (integer groups with string keys, say); up to five such keys are named.
    """
    if not isinstance(per_group, Mapping):
        raise SpecError(
            f"exog_vc[{name!r}] must be a dict {{group label: matrix of the group's rows}} "
            f"(statsmodels' exog_vc), got {type(per_group).__name__}"
        )
    if not per_group:
        raise DataError(
            f"exog_vc[{name!r}] has no matrices: it must be a non-empty dict "
            "{group label: matrix} (statsmodels' exog_vc)"
        )
    known = set(labels)
    unmatched = [k for k in per_group if k not in known]
    if unmatched:
        shown = ", ".join(repr(k) for k in unmatched[:5])
        more = f" and {len(unmatched) - 5} more" if len(unmatched) > 5 else ""
        raise DataError(
            f"exog_vc[{name!r}] has {len(unmatched)} key(s) matching no group label: "
            f"{shown}{more} (the keys must be the labels of groups, "
            f"such as {labels[:1].tolist()})"
        )


def _vc_matrix_width(name, g, mat) -> int:
    """The number of columns of one group's matrix of ``exog_vc``.

    Raises
    ------
    DataError
        If it is not a matrix (a 1-D array: statsmodels fails on it with an IndexError).
    """
    shape = np.shape(mat)
    if len(shape) != 2:
        raise DataError(
            f"exog_vc[{name!r}][{g!r}] has shape {shape}: each group's matrix must be 2-D "
            "(the group's rows × the component's columns; one column: x[:, None])"
        )
    return int(shape[1])


def convert_exog_vc(exog_vc, groups: np.ndarray, n: int):
    """statsmodels' ``exog_vc`` (dict or VCSpec) → row-level sparse entries.

    Returns component names (sorted), global column names per component, and per
    component ``cols``/``vals`` of shape (n, k).  The input is one matrix per group, so
    this conversion loops over groups once (the input itself is per group).

    Raises
    ------
    SpecError
        ``exog_vc``, or a component's matrices, not a dict (or a VCSpec).
    DataError
        A component without matrices, keys that are no group label, a matrix not 2-D
        or of another number of rows than its group.
    BadValuesError
        Text or values that are not real numbers in a matrix, named
        ``exog_vc[name][group]`` (:func:`as_float_matrix`'s reading).
    """
    if exog_vc is None:
        return [], [], [], []
    if hasattr(exog_vc, "names") and hasattr(exog_vc, "mats"):
        group_keys = sorted(pd.unique(pd.Series(groups)))
        comps = {
            name: dict(zip(group_keys, mats, strict=False))
            for name, mats in zip(exog_vc.names, exog_vc.mats, strict=True)
        }
        colnames_by = {
            name: dict(zip(group_keys, cn, strict=False))
            for name, cn in zip(exog_vc.names, exog_vc.colnames, strict=True)
        }
    elif isinstance(exog_vc, Mapping):
        comps = exog_vc
        colnames_by = None
    else:
        raise SpecError(
            f"exog_vc must be a dict {{name: {{group: matrix}}}} (statsmodels' exog_vc) or "
            f"a VCSpec, got {type(exog_vc).__name__}"
        )
    codes, labels = pd.factorize(pd.Series(groups), sort=True)
    order = np.argsort(codes, kind="stable")
    starts = np.searchsorted(codes[order], np.arange(len(labels)))
    ends = np.searchsorted(codes[order], np.arange(len(labels)), side="right")
    names, all_colnames, all_cols, all_vals = [], [], [], []
    for name in sorted(comps):
        per_group = comps[name]
        _check_vc_keys(name, per_group, labels)
        widths = [_vc_matrix_width(name, g, per_group[g]) if g in per_group else 0 for g in labels]
        k = max(widths) if widths else 0
        cols = np.full((n, k), -1, dtype=np.int64)
        vals = np.zeros((n, k))
        colnames: list[str] = []
        index: dict[str, int] = {}
        for gi, g in enumerate(labels):
            if g not in per_group:
                continue
            mat = per_group[g]
            if isinstance(mat, pd.DataFrame):
                cnames = [str(c) for c in mat.columns]
            elif colnames_by is not None:
                cnames = [str(c) for c in colnames_by[name][g]]
            else:
                cnames = [str(j) for j in range(np.asarray(mat).shape[1])]
            if isinstance(mat, np.ndarray) and mat.dtype.kind in "biuf":
                mat = np.asarray(mat, dtype=np.float64)  # numbers: numpy's reading
            else:  # as the model's other arrays: text refused, pd.NA a missing value
                mat = _float_matrix(mat, f"exog_vc[{name!r}][{g!r}]")
            idx = order[starts[gi] : ends[gi]]
            if mat.shape[0] != idx.size:
                raise DataError(
                    f"exog_vc[{name!r}][{g!r}] has {mat.shape[0]} rows; group {g!r} has {idx.size}"
                )
            ids = []
            for c in cnames:
                if c not in index:
                    index[c] = len(colnames)
                    colnames.append(c)
                ids.append(index[c])
            cols[idx[:, None], np.arange(mat.shape[1])[None, :]] = np.array(ids)[None, :]
            vals[idx[:, None], np.arange(mat.shape[1])[None, :]] = mat
        names.append(str(name))
        all_colnames.append(colnames)
        all_cols.append(cols)
        all_vals.append(vals)
    return names, all_colnames, all_cols, all_vals


def empty_vc_columns(rows: RowData) -> list[list[tuple]]:
    """Per variance component, the ``(group label, column)`` pairs that a group's matrix
    of statsmodels' ``exog_vc`` holds but that are zero on all the group's rows.

    statsmodels reports a random effect for every column of a group's matrix (its BLUP
    zero, its conditional variance the component's variance); the statistics give such
    columns no slot (they add nothing to the likelihood,
    :mod:`dmixed.stats.slots`), so the results add them back by these pairs.
    """
    codes, labels = pd.factorize(pd.Series(rows.groups), sort=True)
    out = []
    for cols, vals in zip(rows.vc_cols, rows.vc_vals, strict=True):
        ncols = max(int(cols.max(initial=-1)) + 1, 1)
        declared = present_pairs(codes, cols, np.ones_like(vals), ncols)
        empty = np.setdiff1d(declared, present_pairs(codes, cols, vals, ncols))
        out.append([(labels[k // ncols], int(k % ncols)) for k in empty.tolist()])
    return out
