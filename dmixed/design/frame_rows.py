"""The model matrices of a pandas DataFrame, by a formula spec."""

from __future__ import annotations

import warnings

from ..errors import DroppedRowsWarning, caller_stacklevel
from .arrays import RowData
from .messages import plural
from .spec import transform_numbered

__all__ = ["rows_of_frame"]


def rows_of_frame(spec, data, prepared=None) -> RowData:
    """The model matrices of a pandas DataFrame, by ``spec`` (``prepared``: its columns
    prepared already, :func:`dmixed.design.build_spec_prepared`), with the formulas'
    intercepts as their columns of ones (``RowData.intercepts``: ``k_constant`` then
    reads no column)."""
    dm = transform_numbered(spec, data, prepared)
    rows = RowData(
        dm.endog,
        dm.exog,
        dm.exog_re,
        dm.groups,
        list(dm.vc_cols),
        list(dm.vc_vals),
        dm.weights,
        dm.n_dropped,
        data.index if dm.keep is None else data.index[dm.keep],
        spec.intercept_columns(),
        dm.group_codes,
    )
    if dm.n_dropped:
        warnings.warn(
            f"dropped {plural(dm.n_dropped)} with missing values",
            DroppedRowsWarning,
            stacklevel=caller_stacklevel(),
        )
    return rows
