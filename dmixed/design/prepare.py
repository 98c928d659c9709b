"""One partition's used columns, checked and normalised, with the missing-value policy
applied: the step between a raw pandas frame and formulaic (or numpy).

Label columns become codes in the global levels, numbers float64, numbers used inside
``C()`` their native values; rows with a missing value in a used column are refused
(``missing="raise"``) or dropped (``missing="drop"``, :mod:`dmixed.design.missing`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import BadValuesError, DataError
from ..stats.standardize import check_weights_range, log2_range
from .dtypes import (
    CATEGORICAL,
    NUMBER_CLASSES,
    NUMERIC,
    NUMERIC_LEVELS,
    check_finite,
    check_formula_dtype,
    check_no_decimals,
    check_no_text_levels,
    column_class,
    native_values,
    only_in_c,
    py_scalars,
    to_float,
    warn_rounded_integers,
)
from .levels import (
    MISSING_CODE,
    UNKNOWN_CODE,
    formulaic_levels,
    level_codes,
    native_level_positions,
)
from .messages import check_present, plural
from .missing import missing_mask, missing_rows
from .references import referenced_values

if TYPE_CHECKING:
    from .spec import ModelSpec

__all__ = [
    "FrameColumns",
    "PreparedColumns",
    "check_formula_dtypes",
    "is_missing_values_error",
    "missing_counts",
    "missing_values_error",
    "needed_columns",
    "normalized_frame",
    "prepare_columns",
]


@dataclass
class PreparedColumns:
    """The used columns of one partition, rows with missing values removed.

    ``columns`` maps each formula column to category codes, float64 or native values;
    ``weights`` is float64 (None without weights or response); ``keep`` is the mask of
    the rows kept (None when no row is dropped); ``codes`` maps each numeric column used
    inside ``C()`` to the position of its values among its levels (what a variance
    component reads of it).
    """

    columns: dict[str, np.ndarray]
    weights: np.ndarray | None
    keep: np.ndarray | None
    n_dropped: int
    codes: dict[str, np.ndarray] = field(default_factory=dict)
    #: the group column as read from the frame (all its rows), for the spec's
    #: ``transform``; None where it was not read
    group: pd.Series | None = None


class FrameColumns:
    """The columns of one pandas frame, each read once: pandas builds a new Series on
    every ``frame[c]``, and building a spec reads the same columns in several steps
    (their dtypes, the scan, the preparation, the group keys).  ``frame`` must hold
    each column asked for once (:func:`_columns_needed`)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.read: dict[str, pd.Series] = {}

    def __getitem__(self, name: str) -> pd.Series:
        column = self.read.get(name)
        if column is None:
            column = self.read[name] = self.frame[name]
        return column

    def dtypes(self, names) -> dict:
        """``{name: dtype}`` of these columns (what ``frame.dtypes[name]`` gives, without
        the Series of every column's dtype)."""
        return {c: self[c].dtype for c in names}


@dataclass
class _Normalized:
    """Per-column values before the rows are filtered, with their missing and unknown
    masks (a numeric column inside ``C()`` keeps its raw series for the native values)."""

    values: dict[str, Any]
    missing: dict[str, np.ndarray]
    unknown: dict[str, np.ndarray]
    weights: np.ndarray | None = None
    codes: dict[str, np.ndarray] = field(default_factory=dict)


def prepare_columns(
    spec: ModelSpec,
    df: pd.DataFrame,
    response: bool = True,
    random: bool = True,
    label_codes: dict[str, np.ndarray] | None = None,
    frame_columns: FrameColumns | None = None,
) -> PreparedColumns:
    """Check and normalise the used columns of one frame, dropping rows.

    ``response=False`` (new rows to predict) skips the columns only the response uses
    and the weights column; ``random=False`` as well (the fixed part of new rows) reads
    only the columns of the fixed-effects formula (:func:`needed_columns`).
    ``label_codes``: the codes of some label columns (and integer columns inside
    ``C()``) of this very frame among the spec's levels, found with them
    (:attr:`~dmixed.design.scan.LevelScan.codes`), taken instead of looking the values
    up again.  ``frame_columns``: the columns of this very frame as the caller read
    them already (:class:`FrameColumns`).

    Raises
    ------
    DataError
        If a used column is absent or duplicated, holds values of the wrong kind,
        infinite values, missing values (``missing="raise"``), levels not seen when the
        spec was built, or if a weight is not positive or the weights are more than
        2^53 apart (:func:`~dmixed.stats.standardize.check_weights_range`).
    """
    used, formula_columns = _columns_needed(spec, df, response, random)
    read = FrameColumns(df) if frame_columns is None else frame_columns
    norm = _normalize(spec, read, formula_columns, label_codes)
    if spec.group_name in used:
        _add_group_missing(spec, read, norm)
    if spec.weights_name is not None and response:
        _add_weights(spec, read, norm)
    keep, n_dropped = _rows_to_keep(spec, norm, used, len(df))
    _check_unknown_levels(df, norm, keep)
    columns = _filter(spec, norm, keep)
    weights = None
    if norm.weights is not None:
        weights = norm.weights if keep is None else norm.weights[keep]
        weights = _check_weights_positive(spec.weights_name, weights)
    codes = {c: a if keep is None else a[keep] for c, a in norm.codes.items()}
    group = read.read.get(spec.group_name)
    return PreparedColumns(columns, weights, keep, n_dropped, codes, group)


def needed_columns(spec: ModelSpec, response: bool = True, random: bool = True) -> list[str]:
    """The columns a frame must have: the spec's used columns; with ``response=False``
    (new rows to predict) without those only the response uses, nor the weights; with
    ``random=False`` too (the fixed part ``X β̂`` of new rows, as statsmodels' predict)
    only those of the fixed-effects formula (all used ones for a spec that has not
    recorded them)."""
    if not (random or response) and spec.fixed_columns is not None:
        return [c for c in spec.columns_used if c in spec.fixed_columns]
    skip: set = set()
    if not response:
        skip.update(spec.response_only)
        if spec.weights_name not in spec.formula_columns + [spec.group_name]:
            skip.add(spec.weights_name)
    return [c for c in spec.columns_used if c not in skip]


def _columns_needed(spec: ModelSpec, df: pd.DataFrame, response: bool, random: bool = True):
    """The used columns (and the formula columns among them); all must be present once."""
    used = needed_columns(spec, response, random)
    formula_columns = [c for c in spec.formula_columns if c in used]
    check_present(used, df.columns)
    if df.columns.is_unique:
        return used, formula_columns
    for c in used:
        if isinstance(df[c], pd.DataFrame):
            raise DataError(f"column {c!r} appears more than once in the data")
    return used, formula_columns


def _normalize(
    spec: ModelSpec, df: FrameColumns, formula_columns: list[str], known: dict | None = None
) -> _Normalized:
    norm = _Normalized({}, {}, {})
    known = known or {}
    for c in formula_columns:
        kind = spec.column_kinds[c]
        s = df[c]
        # new rows: values of a type the fit refuses (a fit's own rows passed that
        # check already: this costs a look at the dtype)
        _check_new_dtype(spec, s, c)
        if kind == CATEGORICAL:
            codes = known.get(c)
            if codes is None:
                codes = level_codes(
                    s,
                    spec.levels[c],
                    lambda c=c: spec.level_index(c),
                    lambda c=c: spec.text_levels(c),
                )
            norm.values[c] = codes
            norm.missing[c] = codes == MISSING_CODE
            norm.unknown[c] = codes == UNKNOWN_CODE
            continue
        if kind == NUMERIC_LEVELS:
            if spec.value_columns is not None and c in spec.value_columns:
                check_no_decimals(s, c)  # C(p):x + p: p read as numbers too, as a fit refuses
            codes = known.get(c)
            if codes is None:
                norm.missing[c], codes = _numbered(spec, s, c)
            else:  # (integers numbered by the scan: none missing)
                norm.missing[c] = np.zeros(len(s), dtype=bool)
            norm.codes[c] = codes
            norm.unknown[c] = codes == UNKNOWN_CODE
            norm.values[c] = s
            continue
        if c not in spec.response_only:  # read by a term as numbers: as a fit refuses
            check_no_decimals(s, c)
        ref = spec.references.get(c)
        if ref is None:
            warn_rounded_integers(s, c)  # numbers as levels (C(h)) are read exactly, above
            vals = to_float(s, c)
        else:  # an integer column read exactly about its reference
            vals = referenced_values(s, ref, c)
        centre = spec.centres.get(c)
        if centre is not None:  # a column far from zero inside products, about its centre
            vals = vals - centre
        if np.isfinite(vals).all():  # no NaN (missing), no ±inf (refused): one look
            norm.missing[c] = np.zeros(vals.shape, dtype=bool)
        else:
            norm.missing[c] = missing_mask(vals, kind)
            check_finite(vals, c)
        norm.values[c] = vals
    return norm


def _check_new_dtype(spec: ModelSpec, s: pd.Series, c: str) -> None:
    """Refuse the column ``s`` (``c``) of new rows where the model was fitted on numbers
    in it (or ``C()`` of numbers) and it holds values of a type a fit refuses
    (:func:`~dmixed.design.dtypes.check_formula_dtype`).  A factor fitted on text is
    left to its levels (new rows of timestamps there are levels not seen, named).  The
    ``C()`` words by :func:`~dmixed.design.dtypes.only_in_c`, as a fit chooses them (a
    spec saved before recording ``value_columns``: its numbers read as levels)."""
    kind = spec.column_kinds[c]
    if kind == CATEGORICAL:
        return
    if spec.value_columns is None:
        in_c = kind == NUMERIC_LEVELS
    else:
        in_c = only_in_c(c, spec.value_columns, spec.response_only)
    check_formula_dtype(s, c, in_c)


def check_formula_dtypes(spec: ModelSpec, frame: pd.DataFrame, columns) -> None:
    """Refuse a column among ``columns`` of ``frame`` (new rows, or a Dask collection's
    meta: its declared dtypes) that the spec reads in a formula and whose dtype a fit
    refuses (:func:`~dmixed.design.dtypes.check_formula_dtype`, in the fit's words);
    :func:`prepare_columns` checks each frame it reads the same way.  Columns the spec
    does not read in a formula, or that ``frame`` lacks, are skipped.

    Raises
    ------
    BadValuesError
        Naming the first such column, its dtype and a conversion.
    """
    for c in columns:
        if c in spec.column_kinds and c in frame.columns:
            _check_new_dtype(spec, frame[c], c)


def _numbered(spec: ModelSpec, s: pd.Series, c: str) -> tuple[np.ndarray, np.ndarray]:
    """Which values of a numeric column used inside ``C()`` are missing, and the
    position of each among the column's levels, compared exactly in its native dtype
    (integers past 2**53 differ where their float64 values do not):
    :data:`MISSING_CODE` where missing, :data:`UNKNOWN_CODE` where not a level."""
    levels, native = spec.level_array(c), spec.native[c]
    if isinstance(s.dtype, np.dtype) and s.dtype.kind in "iu":
        miss = np.zeros(len(s), dtype=bool)  # integers: none missing, all finite
    else:
        try:
            vals = to_float(s, c)
        except BadValuesError:
            # text refused in the factor's words (the column scanned for it only here)
            check_no_text_levels(s, c, levels)
            raise
        miss = missing_mask(vals, NUMERIC_LEVELS)
        check_finite(vals, c)
    if not miss.any():
        return miss, native_level_positions(levels, s, native)
    codes = np.full(len(s), MISSING_CODE, dtype=np.int64)
    codes[~miss] = native_level_positions(levels, s[~miss], native)
    return miss, codes


def _add_group_missing(spec: ModelSpec, df: FrameColumns, norm: _Normalized) -> None:
    gmiss = missing_mask(df[spec.group_name], CATEGORICAL)
    if spec.group_name in norm.missing:
        norm.missing[spec.group_name] = norm.missing[spec.group_name] | gmiss
    else:
        norm.missing[spec.group_name] = gmiss


def _add_weights(spec: ModelSpec, df: FrameColumns, norm: _Normalized) -> None:
    wname = spec.weights_name
    w = df[wname]
    if column_class(w.dtype) not in NUMBER_CLASSES:
        raise BadValuesError(f"weights column {wname!r} is not numeric (dtype {w.dtype})")
    wv = to_float(w, wname)
    wmiss = missing_mask(wv, NUMERIC)
    check_finite(wv, wname)
    norm.missing[wname] = norm.missing[wname] | wmiss if wname in norm.missing else wmiss
    norm.weights = wv


def _rows_to_keep(spec: ModelSpec, norm: _Normalized, used: list[str], n: int):
    """The rows kept (None: all) and how many were dropped; refuses missing values when
    ``missing="raise"``."""
    bad_rows, counts = missing_rows(norm.missing, n)
    bad = [c for c in used if counts.get(c, 0)]
    if not bad:
        return None, 0
    if spec.missing == "raise":
        raise missing_values_error({c: counts[c] for c in bad})
    keep = ~bad_rows
    return keep, int(n - keep.sum())


def _check_unknown_levels(df: pd.DataFrame, norm: _Normalized, keep) -> None:
    for c, unk in norm.unknown.items():
        if keep is not None:
            unk = unk & keep
        if unk.any():
            values = df[c].to_numpy(dtype=object)[unk]
            shown = [repr(py_scalars([v])[0]) for v in list(dict.fromkeys(values))[:5]]
            err = DataError(
                f"column {c!r} has levels not seen when the model spec was built: "
                + ", ".join(shown)
            )
            err.new_levels = (c, shown)
            raise err


def _filter(spec: ModelSpec, norm: _Normalized, keep) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for c, a in norm.values.items():
        if spec.column_kinds[c] == NUMERIC_LEVELS:
            s = a if keep is None else a[keep]
            out[c] = native_values(s, spec.native[c])
        elif spec.native.get(c) == "bool":
            out[c] = _booleans(a if keep is None else a[keep])
        else:
            out[c] = a if keep is None else a[keep]
    return out


def _booleans(values: np.ndarray) -> np.ndarray:
    """A boolean column read as numbers (0, 1; NaN missing), as booleans where none is
    missing (the rows kept), so that expressions compute on booleans as patsy does;
    as numbers where some are (``missing="none"``: formulaic then says which)."""
    if np.isnan(values).any():
        return values
    return values != 0


def _check_weights_positive(name: str | None, wv: np.ndarray) -> np.ndarray:
    nz, neg = int((wv == 0).sum()), int((wv < 0).sum())
    if nz or neg:
        parts = [plural(nz, "zero value")] if nz else []
        parts += [plural(neg, "negative value")] if neg else []
        raise BadValuesError(
            f"weights column {name!r} has " + " and ".join(parts) + "; weights must be positive"
        )
    wv = np.ascontiguousarray(wv, dtype=np.float64)
    check_weights_range(name, log2_range(wv))
    return wv


def normalized_frame(
    spec: ModelSpec, columns: dict[str, np.ndarray], n: int, only: list[str] | None = None
) -> pd.DataFrame:
    """The frame formulaic (or numpy) evaluates: label codes as Categoricals with the
    global levels, other columns as they are; ``only``: just these columns (None: every
    formula column)."""
    data = {}
    for c in spec.formula_columns:
        if c not in columns or (only is not None and c not in only):
            continue
        a = columns[c]
        kind = spec.column_kinds[c]
        if kind == CATEGORICAL:
            data[c] = pd.Categorical.from_codes(a, dtype=spec.categorical_dtype(c), validate=False)
        elif kind == NUMERIC_LEVELS:
            data[c] = formulaic_levels(a, spec.native.get(c), spec.levels[c])
        else:
            data[c] = a
    return pd.DataFrame(data, index=pd.RangeIndex(n), copy=False)


# ---------------------------------------------------------------------------
# Missing values counted over partitions (the Dask engine's data-wide message)
# ---------------------------------------------------------------------------

_MISSING_PREFIX = "missing values in "


def missing_values_error(counts: dict, where: dict | None = None) -> BadValuesError:
    """The error ``missing="raise"`` raises for ``{column: rows missing}`` (columns with
    missing rows, in the spec's order of used columns); ``where``: ``{column: the
    files or partitions holding them}`` as words (``"in b.parquet"``), where known."""
    where = where or {}
    return BadValuesError(
        _MISSING_PREFIX
        + ", ".join(
            f"column {c!r} ({plural(k)}{': ' + where[c] if where.get(c) else ''})"
            for c, k in counts.items()
        )
        + '; pass missing="drop" to drop them'
    )


def is_missing_values_error(err: BaseException) -> bool:
    """Whether ``err`` is :func:`missing_values_error`'s (also after a trip through a
    Dask worker, which re-raises a copy; and when worded for the partition it was raised
    in, :func:`~dmixed.design.origin.in_partition`, whose ``detail`` it is then)."""
    text = getattr(err, "detail", None) or str(err)
    return isinstance(err, DataError) and text.startswith(_MISSING_PREFIX)


def missing_counts(spec: ModelSpec, df: pd.DataFrame, response: bool = True) -> dict:
    """``{column: rows missing}`` for every used column of one frame (zeros included, in
    the spec's order): what ``missing="raise"`` counts, for adding over partitions.

    Raises
    ------
    DataError
        As :func:`prepare_columns`, for anything it refuses before missing values.
    """
    used, formula_columns = _columns_needed(spec, df, response)
    read = FrameColumns(df)
    norm = _normalize(spec, read, formula_columns)
    _add_group_missing(spec, read, norm)
    if spec.weights_name is not None and response:
        _add_weights(spec, read, norm)
    _, counts = missing_rows(norm.missing, len(df))
    return {c: counts.get(c, 0) for c in used}
