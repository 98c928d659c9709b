"""The missing-value policy: what counts as missing, and which rows it removes.

One definition for every path (formulas on pandas or Dask partitions, the level scans,
statsmodels-style arrays):

* labels (:data:`~dmixed.design.dtypes.CATEGORICAL` columns, group keys): what
  ``pandas.isna`` calls missing (None, NaN, ``pd.NA``, NaT);
* numbers: NaN after conversion to float64 (``pd.NA`` and Arrow nulls become NaN).
  ±inf is not missing in a formula's column (it is refused, see
  :func:`~dmixed.design.dtypes.check_finite`); the array interface counts it as
  missing (``infinite=True``).

A row is missing when any column the model uses is missing in it; ``missing="raise"``
refuses such rows, ``missing="drop"`` removes them.  The callers word their own
messages.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ..errors import SpecError
from .dtypes import CATEGORICAL, NUMBER_CLASSES, NUMERIC, column_class, column_kind

__all__ = [
    "MISSING_OPTIONS",
    "missing_mask",
    "missing_option",
    "missing_rows",
    "rows_with_missing",
]

MISSING_OPTIONS = ("raise", "drop")


def missing_option(missing) -> str:
    """``missing`` as one of :data:`MISSING_OPTIONS`: statsmodels' default name
    ``"none"`` (no check there) is read as ``"raise"``, so that a missing value never
    reaches the statistics unchecked.

    Raises
    ------
    SpecError
        Any other value.
    """
    if missing == "none":
        return "raise"
    if missing not in MISSING_OPTIONS:
        raise SpecError(f"missing must be 'raise', 'drop' or 'none', got {missing!r}")
    return missing


def missing_mask(values, kind: str, *, infinite: bool = False) -> np.ndarray:
    """Which entries of one column (or array) are missing, read as ``kind``.

    Parameters
    ----------
    values : pandas.Series or numpy.ndarray
        A raw column, or an array of any shape.
    kind : str
        :data:`~dmixed.design.dtypes.CATEGORICAL` (labels) or a numeric kind.
    infinite : bool
        Count ±inf in float values as missing too (the array interface).

    Returns
    -------
    numpy.ndarray of bool, the shape of ``values``.
    """
    dtype = getattr(values, "dtype", None)
    if isinstance(dtype, np.dtype) and dtype.kind in "iub":
        # numpy integers and booleans hold no missing value: no look (pandas' isna of
        # a Series costs more than the rest of a 20k-row column's checks)
        return np.zeros(np.shape(values), dtype=bool)
    if kind == CATEGORICAL:
        return np.asarray(pd.isna(values), dtype=bool)
    if isinstance(values, pd.Series):
        if column_class(values.dtype) not in NUMBER_CLASSES:
            return np.asarray(values.isna(), dtype=bool)
        values = values.to_numpy(dtype=np.float64, na_value=np.nan)
    values = np.asarray(values)
    if values.dtype.kind in "fc":
        return ~np.isfinite(values) if infinite else np.isnan(values)
    return np.asarray(pd.isna(values), dtype=bool)


def missing_rows(masks: Mapping[str, np.ndarray], n: int) -> tuple[np.ndarray, dict[str, int]]:
    """Rows missing in any column, and the number of missing rows of each column.

    ``masks`` maps a column (or argument) name to its per-row mask, shape ``(n,)``.
    The counts hold only the columns with missing rows, in the order of ``masks``.
    """
    bad = np.zeros(n, dtype=bool)
    counts: dict[str, int] = {}
    for name, m in masks.items():
        if m.any():
            counts[name] = int(m.sum())
            bad |= m
    return bad, counts


def rows_with_missing(df: pd.DataFrame, kinds: Mapping[str, str], columns) -> np.ndarray:
    """Rows of ``df`` with a missing value in any of ``columns`` (what ``missing="drop"``
    drops); a column without a kind in ``kinds`` is read by its dtype."""
    masks = []
    for c in columns:
        kind = kinds.get(c)
        if kind is None:
            kind = column_kind(df[c].dtype) or CATEGORICAL
        masks.append(missing_mask(df[c], CATEGORICAL if kind == CATEGORICAL else NUMERIC))
    return np.logical_or.reduce(masks)
