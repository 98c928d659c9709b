"""The statistics layer: what one data pass produces, and the conventions it is stored in.

- :mod:`~dmixed.stats.layout`: the one owner of the packed orders (lower triangle,
  covariance parameters, Λ).
- :mod:`~dmixed.stats.statistics`: :class:`FittedStatistics` (per-group statistics on an
  engine, global sums, labels) and the checks made on ``[X y]'[X y]``.
- :mod:`~dmixed.stats.packed`, :mod:`~dmixed.stats.keys`, :mod:`~dmixed.stats.slots`,
  :mod:`~dmixed.stats.columns`: the packed per-group rows, group keys, the slot numbering
  of variance components, and the Parquet column names of per-group tables.
- :mod:`~dmixed.stats.standardize`: the shifted and scaled columns the statistics are
  accumulated in, and the exact map of the estimates back to the model's own.
- :mod:`~dmixed.stats.checkpoint`: saved statistics, merged by group key with new data.
"""

from .checkpoint import GroupArrays
from .layout import Layout, n_tril, tril_indices
from .standardize import Standardization
from .statistics import (
    CHECK_NOBS_OPTIONS,
    FittedStatistics,
    GlobalStats,
    check_designs,
    check_full_rank,
    check_identifiable,
    check_response_varies,
    far_response,
)

__all__ = [
    "CHECK_NOBS_OPTIONS",
    "FittedStatistics",
    "GlobalStats",
    "GroupArrays",
    "Layout",
    "Standardization",
    "check_designs",
    "check_full_rank",
    "check_identifiable",
    "check_response_varies",
    "far_response",
    "n_tril",
    "tril_indices",
]
