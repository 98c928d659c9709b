"""Levels that new rows bring to the variance components of a saved model spec.

Statistics saved by ``dmixed fit --stats-dir`` hold, per group, which column of each
variance component every slot is (an index into the spec's ``vc_column_names``).  New
rows added by ``dmixed update`` may hold levels of a component's factor that the saved
spec does not know: a new group brings its own nested levels (``{"id": "0 + C(id)"}``
with ids unique to each group), an existing group may get a new one.  A column read by
variance components alone may grow (:func:`grown_spec`): the spec is rebuilt with the
old and new levels in the order a fit of all rows would give them, and every old
column index is mapped to its index in the grown spec (the order of a group's old
columns is kept, so its slots stay in column order).  Levels of a column the fixed or
random effects read cannot grow (their coefficients would change): refused as before.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .build import check_arguments
from .levels import sorted_levels
from .messages import check_present
from .scan import ScanPlan, dask_scan, pandas_scan

__all__ = ["grown_spec", "vc_only_columns"]


def vc_only_columns(spec) -> list[str]:
    """The factor columns of the variance components that no fixed-effects formula
    reads (in the spec's order; none when the spec does not record the fixed-effects
    columns)."""
    if spec.fixed_columns is None:
        return []
    fixed = set(spec.fixed_columns) | {spec.group_name}
    found = [
        factor.source
        for plan in spec.vc_plans
        for block in plan.blocks
        for factor in block.factors
        if factor.kind == "cat" and factor.source in spec.levels
    ]
    return [c for c in dict.fromkeys(found) if c not in fixed]


def _data_levels(spec, data, columns: list[str]) -> dict[str, list]:
    """The levels of ``columns`` in ``data`` (pandas or Dask; with ``missing="drop"``
    those of the rows kept): one scan of those columns."""
    meta, dask_input, _ = check_arguments(
        data, spec.group_name, spec.weights_name, spec.vc_formula, spec.missing
    )
    check_present(spec.columns_used, meta.columns)
    plan = ScanPlan(
        level_cols=columns,
        object_cols=[],
        c_columns=set(columns),
        columns_used=list(spec.columns_used),
        missing=spec.missing,
    )
    if dask_input:
        return dask_scan(data, meta, spec.column_kinds, plan).levels
    return pandas_scan(data, spec.column_kinds, plan).levels


def _merged(old: list, new: list) -> list:
    """Old levels and the new ones: sorted as a fit of all rows sorts them where the old
    ones are sorted, else the new ones after the old (declared categories)."""
    fresh = [v for v in new if v not in set(old)]
    if not fresh:
        return old
    if old == sorted_levels(old):
        return sorted_levels(old + fresh)
    return old + sorted_levels(fresh)


def grown_spec(spec, data, eval_env=None) -> tuple[object, list[np.ndarray] | None]:
    """``(spec, column maps)``: ``spec`` grown by the levels ``data`` holds in its
    variance components' own columns (:func:`vc_only_columns`), and per component the
    index in the grown spec of each old column (None when nothing grew).

    Raises
    ------
    DataError
        The data lacks a column the model reads, cannot be scanned (see
        :func:`~dmixed.design.scan.dask_scan`), or the grown levels would change the
        fixed or random effects' columns.
    """
    columns = vc_only_columns(spec)
    if not columns:
        return spec, None
    found = _data_levels(spec, data, columns)
    levels = {c: _merged(list(spec.levels[c]), found[c]) for c in columns}
    if all(levels[c] == list(spec.levels[c]) for c in columns):
        return spec, None
    grown = spec.with_levels(levels, eval_env)
    maps = [
        pd.Index(new).get_indexer(old)
        for old, new in zip(spec.vc_column_names, grown.vc_column_names, strict=True)
    ]
    return grown, maps
