"""Kernels: pure numpy functions over stacked per-group arrays.

None of these functions accepts or returns Dask or pandas objects, and none knows the
optimizer.  :mod:`~dmixed.kernels.rows` turns model matrices into per-group sufficient
statistics (one pass over the rows); :mod:`~dmixed.kernels.groups` turns a block of
groups' statistics into contributions (sums over groups) to the log-likelihood, score,
Hessian, moment start and BLUPs, so an engine can evaluate any split of the groups and
add the results.
"""

from .groups import (
    MOMENT_MAX_R,
    HessianSums,
    MomentSums,
    StatsBlock,
    StepSums,
    hessian_contributions,
    moment_contributions,
    random_effects_block,
    step_contributions,
)
from .rows import (
    COMPACT_BELOW,
    accumulate_packed,
    accumulate_packed_into,
    accumulate_statistics,
    dense_random_design,
    packed_width,
    product_plan,
    unpack_statistics,
)

__all__ = [
    "MOMENT_MAX_R",
    "COMPACT_BELOW",
    "HessianSums",
    "MomentSums",
    "StatsBlock",
    "StepSums",
    "hessian_contributions",
    "moment_contributions",
    "random_effects_block",
    "step_contributions",
    "accumulate_packed",
    "accumulate_packed_into",
    "accumulate_statistics",
    "dense_random_design",
    "packed_width",
    "product_plan",
    "unpack_statistics",
]
