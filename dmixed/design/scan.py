"""The one look at the whole data that a spec needs: the global levels of the factor
columns, the row counts and the response's range.

On pandas the frame is at hand.  On Dask one ``dask.compute`` reads the categorical and
string columns whose levels are not known (all used columns with ``missing="drop"``,
because levels must come from the rows kept), plus the response column for the empty /
constant-response checks; a column with known categories uses its declared categories
as they are when ``missing="raise"``, since its data is not read.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .dtypes import CATEGORICAL, py_scalars, to_float
from .levels import declared_observed, sorted_levels, unique_values
from .missing import rows_with_missing
from .partitions import check_persisted, select_columns

__all__ = ["LevelScan", "PartitionSummary", "dask_scan", "is_dask", "pandas_scan"]


@dataclass
class LevelScan:
    """What the scan found: ``levels`` of each factor column; ``n_total`` rows and
    ``n_kept`` after dropping missing values, and the response's finite
    ``response_range`` (each None when the scan did not read the data)."""

    levels: dict[str, list]
    n_total: int | None = None
    n_kept: int | None = None
    response_range: tuple[float, float] | None = None


@dataclass
class PartitionSummary:
    """The scan of one Dask partition (computed on a worker)."""

    n: int
    n_kept: int
    levels: dict[str, list] = field(default_factory=dict)
    range: tuple[float, float] | None = None


def is_dask(obj) -> bool:
    """Whether ``obj`` is a Dask collection (DataFrame, Series, Array).

    Decided by the type's module, so Dask is never imported for pandas or numpy input.
    The one test of this kind in dmixed: the model, the design and prediction use it.
    """
    return (type(obj).__module__ or "").startswith("dask")


def pandas_scan(df: pd.DataFrame, kinds: dict, level_cols, columns_used, missing: str):
    """Levels and row counts of a pandas frame (:class:`LevelScan`, no response range)."""
    n_total = len(df)
    keep = None
    if missing == "drop" and n_total:
        any_missing = rows_with_missing(df, kinds, columns_used)
        if any_missing.any():
            keep = ~any_missing
    n_kept = n_total if keep is None else int(keep.sum())
    levels = {}
    for c in level_cols:
        s = df[c] if keep is None else df[c][keep]
        observed = unique_values(s)
        if kinds[c] == CATEGORICAL and isinstance(s.dtype, pd.CategoricalDtype):
            levels[c] = declared_observed(s.dtype, observed)
        else:
            levels[c] = sorted_levels(observed)
    return LevelScan(levels, n_total, n_kept, None)


def summarize_partition(pdf, kinds, level_cols, columns_used, drop, resp_col) -> PartitionSummary:
    """Row counts, distinct values of ``level_cols`` and the response's range of one
    partition (rows with missing values dropped first when ``drop``)."""
    n = len(pdf)
    if drop and n:
        any_missing = rows_with_missing(pdf, kinds, columns_used)
        if any_missing.any():
            pdf = pdf[~any_missing]
    out = PartitionSummary(n=n, n_kept=len(pdf))
    for c in level_cols:
        out.levels[c] = unique_values(pdf[c])
    if resp_col is not None and len(pdf):
        v = to_float(pdf[resp_col], resp_col)
        v = v[np.isfinite(v)]
        if v.size:
            out.range = (float(v.min()), float(v.max()))
    return out


def _declared_categories(ddf, meta, kinds, level_cols) -> dict[str, pd.CategoricalDtype]:
    """Label columns whose categories the Dask frame declares (not to be read)."""
    declared = {}
    for c in level_cols:
        s = meta[c]
        # dd.read_parquet reports Arrow dictionary columns as "known" categoricals with
        # no categories (each file has its own dictionary): those must be scanned
        if (
            kinds[c] == CATEGORICAL
            and isinstance(s.dtype, pd.CategoricalDtype)
            and ddf[c].cat.known
            and len(s.dtype.categories) > 0
        ):
            declared[c] = s.dtype
    return declared


def dask_scan(ddf, meta, kinds, level_cols, columns_used, missing, resp_col) -> LevelScan:
    """Levels, row counts and response range of a Dask frame, in at most one compute."""
    import dask

    check_persisted(ddf)
    drop = missing == "drop"
    declared = _declared_categories(ddf, meta, kinds, level_cols)
    levels: dict[str, list] = {}
    to_scan = []
    for c in level_cols:
        if c in declared and not drop:
            levels[c] = py_scalars(declared[c].categories.tolist())
        else:
            # levels not declared; or, with drop, the observed ones (the pass reads every
            # used column anyway)
            to_scan.append(c)
    if not to_scan and not drop:
        # nothing to learn before the data pass: no extra read (the data pass itself
        # finds empty data and a constant response, from the statistics)
        return LevelScan(levels)
    also = ([resp_col] if resp_col is not None else []) + (list(columns_used) if drop else [])
    read = list(dict.fromkeys([*to_scan, *also]))
    summarize = dask.delayed(summarize_partition)
    used = columns_used if drop else []
    parts = select_columns(ddf, read).to_delayed()
    tasks = [summarize(p, kinds, to_scan, used, drop, resp_col) for p in parts]
    return _combine(dask.compute(*tasks), levels, to_scan, declared)


def _combine(results, levels: dict, to_scan, declared) -> LevelScan:
    n_total = sum(r.n for r in results)
    n_kept = sum(r.n_kept for r in results)
    for c in to_scan:
        vals = itertools.chain.from_iterable(r.levels[c] for r in results)
        if c in declared:
            levels[c] = declared_observed(declared[c], vals)
        else:
            levels[c] = sorted_levels(vals)
    ranges = [r.range for r in results if r.range is not None]
    resp_range = None
    if ranges:
        resp_range = (min(r[0] for r in ranges), max(r[1] for r in ranges))
    return LevelScan(levels, n_total, n_kept, resp_range)
