"""Kernels: pure numpy functions over stacked per-group arrays.

None of these functions accepts or returns Dask or pandas objects, and none knows the
optimizer.  :mod:`~dmixed.kernels.rows` turns model matrices into per-group sufficient
statistics (one pass over the rows); :mod:`~dmixed.kernels.groups` turns a block of
groups' statistics into contributions (sums over groups) to the log-likelihood, score,
Hessian, moment start and BLUPs, so an engine can evaluate any split of the groups and
add the results.

Notation (DESIGN.md §1–6).  For group ``i`` the padded random design is ``Z̃_i``
(``n_i × r``; the ``q`` columns of ``exog_re`` followed by the variance component
slots), the fixed design ``X_i`` (``n_i × p``) and the response ``y_i``.  The statistics
are ``ZZ_i = Z̃_i'Z̃_i`` and ``ZXy_i = Z̃_i'[X_i, y_i]``.
"""

from .conditionals import CENTRED_DETERMINANT, CentredSums, lossy_groups
from .groups import (
    MOMENT_MAX_R,
    HessianSums,
    MomentSums,
    StatsBlock,
    StepSums,
    collapsed_moment_contributions,
    frobenius_gram,
    hessian_contributions,
    moment_contributions,
    random_effects_block,
    re_gram,
    re_sums,
    step_contributions,
    value_contributions,
)
from .rows import (
    COMPACT_BELOW,
    accumulate_packed,
    accumulate_packed_into,
    accumulate_statistics,
    centred_statistics,
    dense_random_design,
    packed_width,
    plain_statistics,
    product_plan,
    shifted_statistics,
    takes_rows_as_they_are,
    unpack_statistics,
    unweighted_gram,
)

__all__ = [
    "CentredSums",
    "centred_statistics",
    "lossy_groups",
    "CENTRED_DETERMINANT",
    "MOMENT_MAX_R",
    "COMPACT_BELOW",
    "HessianSums",
    "MomentSums",
    "StatsBlock",
    "StepSums",
    "hessian_contributions",
    "moment_contributions",
    "random_effects_block",
    "re_gram",
    "re_sums",
    "step_contributions",
    "value_contributions",
    "frobenius_gram",
    "collapsed_moment_contributions",
    "accumulate_packed",
    "accumulate_packed_into",
    "plain_statistics",
    "shifted_statistics",
    "accumulate_statistics",
    "dense_random_design",
    "packed_width",
    "product_plan",
    "takes_rows_as_they_are",
    "unpack_statistics",
    "unweighted_gram",
]
