"""Rows → statistics: per-group sufficient statistics from model matrices, in one pass.

Nothing here knows about Dask, pandas or the optimizer.  Group ``i``'s rows give
``ZZ_i = Z̃_i'Z̃_i`` and ``ZXy_i = Z̃_i'[X_i, y_i]`` (notation: :mod:`dmixed.kernels`,
DESIGN.md §1–2), plus the global ``[X y]'[X y]``; all are sums over rows, so partial
statistics of any split of the rows add up to those of the whole.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..stats.packed import PackedLayout
from ..stats.standardize import Standardization, same_column
from ..stats.statistics import chan_correction
from . import conditionals, native
from .compiled import rows_compiled
from .conditionals import CentredSums

if TYPE_CHECKING:  # scipy is imported where a sparse path runs: most fits run none
    import scipy.sparse as sp

__all__ = [
    "dense_random_design",
    "takes_rows_as_they_are",
    "unweighted_gram",
    "GRAM_DOTS_COLUMNS",
    "GRAM_DOTS_MIN_ROWS",
    "column_gram",
    "sparse_split",
    "sparse_columns",
    "split_gram",
    "dense_columns",
    "sparse_column_gram",
    "EXTREME_SCALE_LOG2",
    "extreme_scales",
    "column_scales",
    "known_ones",
    "product_plan",
    "plan_terms",
    "live_terms",
    "COMPACT_BELOW",
    "accumulate_packed_into",
    "PreparedRows",
    "row_global_sums",
    "prepare_rows",
    "wants_column_sums",
    "wants_rank_one_within",
    "constant_within",
    "CONSTANT_CHECK_FIRST",
    "wants_within",
    "plan_sums",
    "plain_statistics",
    "packed_width",
    "accumulate_packed",
    "unpack_statistics",
    "accumulate_statistics",
    "centred_statistics",
    "shifted_statistics",
]

# ---------------------------------------------------------------------------
# Sufficient statistics from rows
# ---------------------------------------------------------------------------


def dense_random_design(
    exog_re: np.ndarray,
    vc_slots: list[np.ndarray],
    vc_vals: list[np.ndarray],
    vc_widths: list[int],
) -> np.ndarray:
    """Row-level padded random design ``Z̃`` of width ``r = q + Σ_l m_l``.

    Component ``l`` occupies columns ``q + Σ_{l'<l} m_l'`` onwards; each sparse entry
    is written into the column of its slot.
    """
    n, q = exog_re.shape
    r = q + int(sum(vc_widths))
    if r == q:  # no variance components: Z̃ is exog_re (no copy when column-major)
        return np.asfortranarray(exog_re, dtype=np.float64)
    zt = np.zeros((r, n)).T  # column-major, as the statistics pass reads it
    zt[:, :q] = exog_re
    offset = q
    rows = np.arange(n)
    for slots, vals, width in zip(vc_slots, vc_vals, vc_widths, strict=True):
        for k in range(slots.shape[1]):
            ok = slots[:, k] >= 0
            np.add.at(zt, (rows[ok], offset + slots[ok, k]), vals[ok, k])
        offset += width
    return zt


def takes_rows_as_they_are(exog, weights) -> bool:
    """Whether the rows of an unshifted map are summed as they lie (no weights, ``exog``
    column-major float64): their columns are views, and :func:`unweighted_gram` is
    their ``[X y]'[X y]``."""
    return (
        weights is None
        and isinstance(exog, np.ndarray)
        and exog.dtype == np.float64
        and exog.flags.f_contiguous
    )


def unweighted_gram(endog: np.ndarray, exog: np.ndarray) -> np.ndarray:
    """``[X y]'[X y]`` of column-major float64 ``exog`` and float64 ``endog`` as they
    lie, as the data pass makes it for an unshifted map without weights
    (:func:`takes_rows_as_they_are`): the caller that made it first (to choose the map
    from it, :meth:`~dmixed.stats.standardize.Standardization.choose`) hands the very
    matrix on (``gram=`` of :func:`accumulate_packed_into`)."""
    p = exog.shape[1]
    cols = [exog[:, j] for j in range(p)] + [endog]
    gram = column_gram(cols)
    if gram is None:
        gram = sparse_column_gram(cols)
    if gram is None:
        gram = np.empty((p + 1, p + 1))
        gram[:-1, :-1] = exog.T @ exog
        gram[:-1, -1] = gram[-1, :-1] = exog.T @ endog
        gram[-1, -1] = endog @ endog
    return gram


def _weighted_rows(endog, exog, ztilde, weights, std: Standardization | None = None, gram=None):
    """Columns of ``[X y]`` and of ``Z̃`` shifted by the columns' map, every row scaled
    by ``√w``; ``Σ log w`` and ``[X y]'[X y]`` of those rows (``gram``: that of the
    rows as they lie, :func:`unweighted_gram`, already made; used where they are
    summed so).

    Only the map's shifts touch the rows (a column with shift 0 is not copied); its
    scales are powers of two and are applied to the sums instead
    (:func:`column_scales`), which is exact and costs nothing per row.  A ``Z̃``
    column equal to an ``X`` column with the same map is that very array, so the
    product plan sees it as one.  With prior weights ``w_j`` (residual variance
    ``σ²/w_j``) the rows are then scaled by ``√w``, turning the weighted model into the
    unweighted one; the likelihood gains ``½ Σ log w_j``.  Without shifts, without
    weights and with a column-major float ``exog`` (as the design builds it) the
    columns are views: no copy of the rows.
    """
    exog = np.asarray(exog, dtype=np.float64)
    ztilde = np.asarray(ztilde, dtype=np.float64)
    endog = np.asarray(endog, dtype=np.float64)
    n, p = exog.shape
    r = ztilde.shape[1]
    shifted = std is not None and (std.y_shift != 0 or bool(std.x_shift.any()))
    shifts = np.append(std.x_shift, std.y_shift) if shifted and std is not None else None
    if not shifted and weights is None and exog.flags.f_contiguous:
        xcols = [exog[:, j] for j in range(p)] + [endog]
        if gram is None:
            gram = unweighted_gram(endog, exog)
        zcols = [_shifted(ztilde[:, a], std, a) for a in range(r)]
        return xcols, _share(zcols, xcols, ztilde, exog, std), 0.0, gram
    # column-major: the statistics are per-column passes (bincount) over the rows
    xy = np.empty((p + 1, n)).T
    xy[:, :-1] = exog
    xy[:, -1] = endog
    if shifted:
        xy -= shifts
    sum_log_w = 0.0
    sw = None
    if weights is not None:
        sw = np.sqrt(weights)
        xy *= sw[:, None]
        sum_log_w = float(np.sum(np.log(weights)))
    xcols = [xy[:, j] for j in range(p + 1)]
    zcols = [_shifted(ztilde[:, a], std, a) for a in range(r)]
    if sw is not None:
        zcols = [c * sw for c in zcols]
    gram = sparse_column_gram(xcols)
    if gram is None:
        gram = xy.T @ xy
    return xcols, _share(zcols, xcols, ztilde, exog, std), sum_log_w, gram


#: ``[X y]'[X y]`` of the rows held without a copy (``X`` and ``y`` apart: three BLAS
#: calls otherwise) is one dot product per pair of columns (:func:`column_gram`) for
#: this many columns and from :data:`GRAM_DOTS_MIN_ROWS` rows on: on one thread, BLAS's
#: products of so few, so long columns run at a fraction of its dot product's speed,
#: while with two columns, or more than four, the dot products (which read each column
#: once per pair) gain nothing or lose (``benchmarks/bench_gram.py``;
#: benchmarks/RESULTS.md, eighth session of 2026-12-02)
GRAM_DOTS_COLUMNS = (3, 4)
#: the rows from which :func:`column_gram` takes the dot products (below, the matrix
#: product's one call costs less than their several)
GRAM_DOTS_MIN_ROWS = 16384


def column_gram(cols: list[np.ndarray]) -> np.ndarray | None:
    """``C'C`` of the columns ``cols`` (each ``(n,)`` float64) by one dot product per
    pair, where that is the faster way (:data:`GRAM_DOTS_COLUMNS`,
    :data:`GRAM_DOTS_MIN_ROWS`), else None (the caller's matrix products).  The same sums
    to rounding as the matrix products (another order of the same products)."""
    k = len(cols)
    if k not in GRAM_DOTS_COLUMNS or cols[0].shape[0] < GRAM_DOTS_MIN_ROWS:
        return None
    gram = np.empty((k, k))
    for i in range(k):
        for j in range(i + 1):
            gram[i, j] = gram[j, i] = np.dot(cols[i], cols[j])
    return gram


def sparse_split(cols: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """``(sparse_at, dense_at)``: the positions of the mostly-zero columns of ``cols``
    (each ``(n,)``; at most :data:`~dmixed.kernels.conditionals.SPARSE_MAX_DENSITY` nonzero)
    and of the others, where products that skip those zeros pay (a fixed factor of many
    levels: :data:`~dmixed.kernels.conditionals.SPARSE_MIN_COLUMNS` columns or more, half
    of them mostly zero), else None.

    Parameters
    ----------
    cols : list of ndarray, each shape (n,)
        The data's columns.

    Returns
    -------
    tuple of two int ndarrays, or None
        The positions in ``cols`` of the mostly-zero columns and of the others, or None
        where the dense products are used.
    """
    # Read through the module: conditionals owns the thresholds, and setting them there
    # must reach this pass too.
    min_columns = conditionals.SPARSE_MIN_COLUMNS
    k = len(cols)
    if k < min_columns:
        return None
    n = cols[0].shape[0]
    nnz = np.array([np.count_nonzero(c) for c in cols])
    few = nnz <= conditionals.SPARSE_MAX_DENSITY * n
    if 2 * np.count_nonzero(few) < min_columns:
        return None
    return np.flatnonzero(few), np.flatnonzero(~few)


def sparse_columns(cols: list[np.ndarray], at: np.ndarray) -> sp.csc_matrix:
    """The columns ``cols[j]`` for ``j`` in ``at`` as one ``(n, len(at))`` CSC matrix
    of their nonzero entries.

    Parameters
    ----------
    cols : list of ndarray, each shape (n,)
        The data's columns.
    at : ndarray of int
        The positions of the columns to take (:func:`sparse_split`'s first).

    Returns
    -------
    scipy.sparse.csc_matrix, shape (n, len(at))
    """
    import scipy.sparse as sp  # only on the sparse path

    n = cols[0].shape[0]
    where = [np.flatnonzero(cols[j]) for j in at.tolist()]  # over columns, not rows
    indptr = np.zeros(len(where) + 1, dtype=np.int64)
    np.cumsum([w.size for w in where], out=indptr[1:])
    indices = np.concatenate(where) if where else np.empty(0, dtype=np.int64)
    data = (
        np.concatenate([cols[j][w] for j, w in zip(at.tolist(), where, strict=True)])
        if where
        else None
    )
    return sp.csc_matrix((data, indices, indptr), shape=(n, len(where)))


def split_gram(
    k: int,
    sparse_at: np.ndarray,
    dense_at: np.ndarray,
    sparse: sp.csc_matrix,
    dense: np.ndarray,
    block_rows: int | None = None,
) -> np.ndarray:
    """``C'C`` (k × k) of the columns ``C`` held as ``sparse`` (those at ``sparse_at``,
    CSC) and ``dense`` (those at ``dense_at``, (n, ·)): the dense block one BLAS product,
    the others sparse products (each entry's terms in row order).

    Parameters
    ----------
    k : int
        The number of columns of ``C``.
    sparse_at, dense_at : ndarray of int
        The positions in ``C`` of the columns in ``sparse`` and in ``dense``.
    sparse : scipy.sparse.csc_matrix, shape (n, len(sparse_at))
    dense : ndarray, shape (n, len(dense_at))
    block_rows : int, optional
        Sum the sparse products over blocks of this many rows and add the blocks' sums
        (None: one product over all rows, exact where the products are integers). The
        within-group sums' residuals are not integers: each entry's rounding then grows
        with the rows of a block and the number of blocks, not with all ``n`` rows.

    Returns
    -------
    ndarray, shape (k, k)
    """
    gram = np.empty((k, k))
    gram[np.ix_(dense_at, dense_at)] = dense.T @ dense
    if block_rows is None or sparse.shape[0] <= block_rows:
        cross = np.asarray(sparse.T @ dense)
        inner = (sparse.T @ sparse).toarray()
    else:
        # scipy sums each entry's terms one after another, so its rounding grows with
        # the rows (n·ε at worst); sums of blocks of rows, added up, grow with the
        # block and the number of blocks instead
        rows = sparse.tocsr()
        cross = np.zeros((sparse.shape[1], dense.shape[1]))
        inner = np.zeros((sparse.shape[1], sparse.shape[1]))
        for start in range(0, sparse.shape[0], block_rows):
            part = rows[start : start + block_rows]
            part_t = part.T.tocsr()
            cross += part_t @ dense[start : start + block_rows]
            inner += (part_t @ part).toarray()
    gram[np.ix_(sparse_at, dense_at)] = cross
    gram[np.ix_(dense_at, sparse_at)] = cross.T
    gram[np.ix_(sparse_at, sparse_at)] = inner
    return gram


def dense_columns(cols: list[np.ndarray], at: np.ndarray) -> np.ndarray:
    """The columns ``cols[j]`` for ``j`` in ``at`` as one column-major ``(n, len(at))``.

    Parameters
    ----------
    cols : list of ndarray, each shape (n,)
        The data's columns.
    at : ndarray of int
        The positions of the columns to take.

    Returns
    -------
    ndarray, shape (n, len(at)), Fortran order
    """
    out = np.empty((at.size, cols[0].shape[0])).T
    for s, j in enumerate(at.tolist()):
        out[:, s] = cols[j]
    return out


def sparse_column_gram(cols: list[np.ndarray]) -> np.ndarray | None:
    """``C'C`` of the columns ``cols`` (each ``(n,)`` float64) with the zeros of its
    mostly-zero columns skipped where that pays (:func:`sparse_split`), else None (the
    caller's dense products): the same sums as the dense product to rounding (exactly
    where the products are integers: indicators).

    Parameters
    ----------
    cols : list of ndarray, each shape (n,), float64
        The data's columns.

    Returns
    -------
    ndarray, shape (len(cols), len(cols)), or None
        ``C'C``, or None where :func:`sparse_split` finds too few mostly-zero columns.
    """
    split = sparse_split(cols)
    if split is None:
        return None
    sparse_at, dense_at = split
    return split_gram(
        len(cols),
        sparse_at,
        dense_at,
        sparse_columns(cols, sparse_at),
        dense_columns(cols, dense_at),
    )


def _shifted(col: np.ndarray, std: Standardization | None, a: int) -> np.ndarray:
    """Column ``a`` of ``Z̃`` less its shift (the column itself when none)."""
    if std is None or a >= std.k_re or std.z_shift[a] == 0:
        return col
    return col - std.z_shift[a]


def _share(zcols, xcols, ztilde, exog, std: Standardization | None) -> list:
    """``zcols`` with every ``exog_re`` column that equals an ``exog`` column under the
    same map replaced by that ``xcols`` array (one source for the product plan)."""
    if std is None:
        return zcols
    out = list(zcols)
    for a in range(std.k_re):
        if a == std.z_intercept and std.x_intercept >= 0:
            out[a] = xcols[std.x_intercept]  # both all ones (the map's own finding)
            continue
        for j in range(std.k_fe):
            if std.same_map(j, a) and same_column(ztilde[:, a], exog[:, j]):
                out[a] = xcols[j]
                break
    return out


#: Columns whose scale is beyond 2^±this are scaled row by row (their products would
#: leave float64's range before the sums are scaled).
EXTREME_SCALE_LOG2 = 400


def extreme_scales(std: Standardization | None) -> bool:
    """Whether a column of the map ``std`` has a scale beyond 2^±:data:`EXTREME_SCALE_LOG2`
    (its rows are then divided by it up front: :func:`_tame`)."""
    if std is None:
        return False
    # a handful of scales: Python floats, not six numpy calls
    scales = [*std.x_scale.tolist(), std.y_scale, *std.z_scale.tolist()]
    if TAME_BELOW <= min(scales) and max(scales) <= TAME_ABOVE:
        return False  # log2 is exact at the bounds and rises with s: none beyond them
    return any(_extreme_scale(s) for s in scales)


#: The scales :func:`extreme_scales` takes as they are: within 2^±EXTREME_SCALE_LOG2
TAME_BELOW, TAME_ABOVE = 2.0**-EXTREME_SCALE_LOG2, 2.0**EXTREME_SCALE_LOG2


def _extreme_scale(s: float) -> bool:
    """``|log2 s| >`` :data:`EXTREME_SCALE_LOG2` as numpy's ``log2`` judges it (0 and
    inf: extreme; negative or NaN: not)."""
    if s > 0.0:
        return math.isinf(s) or abs(math.log2(s)) > EXTREME_SCALE_LOG2
    return s == 0.0


def _tame(endog, exog, ztilde, std: Standardization | None):
    """The rows and map with every column of extreme scale divided by it up front.

    ``(v − c)/s = (v/s − c/s)/1``: the same statistics, with the power of two moved
    from the sums to the rows where the products of such columns would overflow or
    underflow (values beyond about 1e±150)."""
    if std is None or not extreme_scales(std):
        return endog, exog, ztilde, std
    sx = np.append(std.x_scale, std.y_scale)
    wild_x = np.abs(np.log2(sx)) > EXTREME_SCALE_LOG2
    wild_z = np.abs(np.log2(std.z_scale)) > EXTREME_SCALE_LOG2
    p, q = std.k_fe, std.k_re
    div_x = np.where(wild_x, sx, 1.0)
    div_z = np.where(wild_z, std.z_scale, 1.0)
    exog = np.asfortranarray(np.asarray(exog, dtype=np.float64) / div_x[:p])
    endog = np.asarray(endog, dtype=np.float64) / div_x[p]
    ztilde = np.array(ztilde, dtype=np.float64, order="F")
    ztilde[:, :q] /= div_z
    tamed = Standardization(
        std.x_shift / div_x[:p],
        std.x_scale / div_x[:p],
        std.y_shift / div_x[p],
        std.y_scale / div_x[p],
        std.z_shift / div_z,
        std.z_scale / div_z,
        std.x_intercept,
        std.z_intercept,
        std.vc_scale,
    )
    return endog, exog, ztilde, tamed


def column_scales(
    std: Standardization | None, layout: PackedLayout, vc_widths=()
) -> np.ndarray | None:
    """The factor of every packed column, ``1/(s_a s_b)``: the map's scales applied to
    the sums (exact: powers of two); None when all are 1."""
    if std is None:
        return None
    # Python floats: the same IEEE products and quotients as numpy's, without a dozen
    # numpy calls on a dozen numbers
    sz = std.z_scale.tolist() + std.slot_scales(vc_widths).tolist()
    sz += [1.0] * (layout.r - len(sz))
    sx = [*std.x_scale.tolist(), std.y_scale]
    rows, cols = layout.zz_index
    products = [sz[a] * sz[b] for a, b in zip(rows.tolist(), cols.tolist(), strict=True)]
    products += [za * xj for za in sz for xj in sx]
    out = [1.0] + [1.0 / v if v != 0.0 else _reciprocal(v) for v in products]
    return None if out.count(1.0) == len(out) else np.array(out)


def _reciprocal(value: float) -> float:
    """``1/value`` as numpy divides (±inf for ±0, not an error)."""
    return 1.0 / value if value != 0.0 else math.copysign(math.inf, value)


def known_ones(std: Standardization | None, weights) -> list[int]:
    """The columns of ``[X y]`` known to be ones on every row without a look (the
    ``ones`` of :func:`product_plan`): without weights (which scale the rows by ``√w``),
    the map's intercept column (the map's own finding, which :func:`_share` relies on
    too); none otherwise."""
    if weights is not None or std is None or std.x_intercept < 0:
        return []
    return [std.x_intercept]


def _ones_column(a: np.ndarray) -> bool:
    if a.shape[0] and a[0] != 1.0:  # told by the first row, without a call
        return False
    head = min(a.shape[0], 8)
    return bool((a[:head] == 1.0).all() and (a == 1.0).all())


def _first_same(col: np.ndarray, xcols: list[np.ndarray]) -> int | None:
    """The first of ``xcols`` bitwise equal to ``col``, or None."""
    return next((j for j, x in enumerate(xcols) if same_column(col, x)), None)


def product_plan(
    xcols: list[np.ndarray], zcols: list[np.ndarray], ones=()
) -> tuple[list[tuple], list[int]]:
    """The distinct per-row products behind the packed statistics of these rows.

    The packed columns (:func:`accumulate_packed`) are ``n``, ``Z̃_a Z̃_b`` (a ≥ b) and
    ``Z̃_a [X y]_j``.  Random-effect columns are mostly copies of fixed-effect columns
    (``1 + x`` in both formulas) and the intercept is a column of ones, so many of these
    sums coincide: for a random intercept and slope with four fixed effects, 14 packed
    columns need 8 weighted counts and 4 products per row, not 13 of each.  Columns are
    compared bitwise on these very rows, so the plan is exact for them (and only them).
    ``xcols`` are the ``k`` columns of ``[X y]``; ``ones``: sources (indices into
    ``[xcols..., zcols...]``) the caller knows to be 1 on every row, taken as such
    without a look (a ones column's index appears in no term, so the plan is the one
    found by looking).

    Returns
    -------
    terms : list of tuple
        ``("count",)``, ``("col", u)``, ``("prod", u, v)`` or ``("zero",)``; ``u, v``
        index the sources ``[xcols..., zcols...]``.
    column_term : list of int
        For every packed column, the index of its term.
    """
    if isinstance(zcols, np.ndarray):
        zcols = [zcols[:, a] for a in range(zcols.shape[1])]
    k, r = len(xcols), len(zcols)
    known = set(ones)
    canon = list(range(k))  # source id of every xy and Z̃ column after deduplication
    for a in range(r):
        same = None if k + a in known else _first_same(zcols[a], xcols)
        canon.append(k + a if same is None else same)
    sources = xcols + list(zcols)
    ones = known | {u for u in set(canon) - known if _ones_column(sources[u])}
    zeros = {u for u in set(canon) - ones if u >= k and not sources[u].any()}  # VC padding
    return plan_terms(k, r, canon, ones, zeros)


def plan_terms(k: int, r: int, canon: list[int], ones: set, zeros: set) -> tuple[list, list]:
    """The terms and ``column_term`` of a :func:`product_plan` from what it found of the
    ``k + r`` sources ``[xcols..., zcols...]``: ``canon[u]``, the first source equal to
    ``u`` (``canon[j] = j`` for ``j < k``); ``ones``, the canonical sources that are 1 on
    every row; ``zeros``, those that are 0 on every row.  Made once per distinct
    finding (fresh lists each call)."""
    terms, column_term = _plan_terms(k, r, tuple(canon), frozenset(ones), frozenset(zeros))
    return list(terms), list(column_term)


@functools.lru_cache(maxsize=256)
def _plan_terms(k: int, r: int, canon: tuple, ones: frozenset, zeros: frozenset):
    """:func:`plan_terms` as tuples (cached)."""

    def term(u: int, v: int) -> tuple:
        if u in zeros or v in zeros:
            return ("zero",)
        if u in ones and v in ones:
            return ("count",)
        if u in ones or v in ones:
            return ("col", v if u in ones else u)
        return ("prod", min(u, v), max(u, v))

    def packed_term(source: tuple) -> tuple:
        if source[0] == "n":
            return ("count",)
        if source[0] == "zz":
            return term(canon[k + source[1]], canon[k + source[2]])
        return term(canon[k + source[1]], source[2])

    wanted = [packed_term(s) for s in PackedLayout(r, k).column_sources()]
    terms = tuple(dict.fromkeys(wanted))
    index = {t: i for i, t in enumerate(terms)}
    return terms, tuple(index[t] for t in wanted)


def live_terms(terms: list) -> list:
    """The terms of a :func:`product_plan` that are not ``("zero",)``: those summed."""
    return [t for t in terms if t[0] != "zero"]


#: :func:`accumulate_packed_into` sums over the groups present when the rows are fewer
#: than the accumulator's groups divided by this: a ``bincount`` over all groups costs
#: time in the number of groups, not rows (benchmarks/RESULTS.md, small partitions).
COMPACT_BELOW = 4


def accumulate_packed_into(
    acc: np.ndarray,
    codes: np.ndarray,
    endog: np.ndarray,
    exog: np.ndarray,
    ztilde: np.ndarray,
    weights: np.ndarray | None = None,
    std: Standardization | None = None,
    vc_widths=(),
    compiled: bool | None = None,
    sums=None,
    gram: np.ndarray | None = None,
    rank_one: bool = False,
) -> dict:
    """Add these rows' per-group statistics to ``acc`` (column-major packed layout).

    ``acc`` is ``(1 + r(r+1)/2 + r(p+1), G)``: row ``c`` holds packed column ``c`` of
    :func:`accumulate_packed` for every group, so that partitions can be added into one
    accumulator without per-partition temporaries of size ``G × width``.  ``codes`` are
    the rows' group positions in ``0 .. G-1``.  Each distinct sum is one ``bincount``
    (:func:`product_plan`).  ``std``: the columns' map (:mod:`dmixed.stats.standardize`;
    ``None``: raw columns); ``vc_widths``: the slots of each variance component (whose
    columns take its scale).  ``compiled``: the sums in one compiled pass over the rows
    (:mod:`dmixed.kernels.rows_jit`, the same numbers bit for bit) or by the numpy
    reference; default :func:`dmixed.kernels.compiled.rows_compiled`.  ``gram``: the
    rows' :func:`unweighted_gram`, made already (for a map without shifts, rows without
    weights).  ``rank_one``: the within-group sums are also due where the random design
    is the intercept and columns constant within every group of these rows
    (:func:`wants_rank_one_within`; for a caller whose ``acc`` holds no other rows'
    sums of these groups, or only such rows with the same constants).  Returns the
    rows' global sums (see :func:`accumulate_packed`).
    """
    codes = np.asarray(codes, dtype=np.int64)
    rows = prepare_rows(endog, exog, ztilde, weights, std, vc_widths, gram)
    if rank_one and wants_rank_one_within(std, codes, ztilde, vc_widths, acc.shape[1]):
        rows.within_wanted = True
    layout, xcols, zcols = rows.layout, rows.xcols, rows.zcols
    n_groups = acc.shape[1]
    target: slice | np.ndarray = slice(None)  # the accumulator's columns the sums go to
    if codes.size * COMPACT_BELOW < n_groups:
        # far fewer rows than groups (small partitions into a large table): sum over the
        # groups present only, so that the cost follows the rows, not the table's width
        target, codes = np.unique(codes, return_inverse=True)
        codes = codes.reshape(-1)
        n_groups = target.size
    # Python floats: the same products as with numpy's scalars, without one per column
    scales = None if rows.scales is None else rows.scales.tolist()
    kept = _Within(acc, target, layout) if rows.within_wanted else None
    all_sums = (sums or plan_sums)(codes, rows.sources, rows.terms, n_groups, compiled)
    columns_of: list[list[int]] = [[] for _ in all_sums]  # a term's packed columns, in order
    for c, tc in enumerate(rows.column_term):
        columns_of[tc].append(c)
    for t, sums in enumerate(all_sums):
        if sums is None:
            continue
        for c in columns_of[t]:
            col = sums if scales is None or scales[c] == 1.0 else sums * scales[c]
            if kept is not None:
                kept.take(c, col)
            acc[c, target] += col  # target: all columns, or distinct ones
    within = None
    if kept is not None:
        within = kept.within(codes, xcols, zcols[0], rows.sx)
    return rows.global_sums(codes.shape[0], within)


@dataclass
class PreparedRows:
    """Rows ready for the per-group sums (:func:`prepare_rows`).

    ``xcols`` (the ``k`` columns of ``[X y]``) and ``zcols`` (the ``r`` of ``Z̃``) are
    shifted by the columns' map and scaled by ``√w``; ``terms`` and ``column_term`` their
    :func:`product_plan`; ``scales`` the factor of every packed column
    (:func:`column_scales`, None: all 1); ``gram`` ``[X y]'[X y]`` in the map's units;
    ``within_wanted``: the within-group sums are due (one random-design column, the
    intercept; see :class:`_Within`); ``column_sums``: ``Σ w [X y 1]`` in the map's
    units where neither design has a column of ones (:func:`wants_column_sums`), else
    None.
    """

    xcols: list
    zcols: list
    layout: PackedLayout
    std: Standardization | None
    terms: list
    column_term: list
    scales: np.ndarray | None
    gram: np.ndarray
    sum_log_w: float
    sx: np.ndarray | None
    within_wanted: bool
    column_sums: np.ndarray | None = None

    @property
    def sources(self) -> list:
        """The columns the terms index: ``[xcols..., zcols...]``."""
        return self.xcols + list(self.zcols)

    def global_sums(self, n: int, within=None) -> dict:
        """The rows' global sums, as :func:`accumulate_packed_into` returns them."""
        return row_global_sums(self.gram, n, self.sum_log_w, within, self.column_sums)


def row_global_sums(gram, n: int, sum_log_w=0.0, within=None, column_sums=None) -> dict:
    """Global sums of rows as :func:`accumulate_packed_into` returns them: ``xyxy`` the
    gram ``[X y]'[X y]``, ``n``, ``sum_log_weights``, ``within`` and ``column_sums``
    (:class:`PreparedRows`)."""
    return {
        "xyxy": gram,
        "n": np.int64(n),
        "sum_log_weights": sum_log_w,
        "within": within,
        "column_sums": column_sums,
    }


def prepare_rows(
    endog, exog, ztilde, weights=None, std=None, vc_widths=(), gram=None
) -> PreparedRows:
    """The columns, product plan, scales and global sums of these rows: everything of
    :func:`accumulate_packed_into` but the per-group sums (arguments as there)."""
    tamed = _tame(endog, exog, ztilde, std)
    if tamed[3] is not std:  # rows divided up front: not those of the gram given
        gram = None
    endog, exog, ztilde, std = tamed
    xcols, zcols, sum_log_w, gram = _weighted_rows(endog, exog, ztilde, weights, std, gram)
    layout = PackedLayout(len(zcols), len(xcols))
    sx = None if std is None else np.array([*std.x_scale.tolist(), std.y_scale])
    if sx is not None and (sx != 1.0).any():
        gram = gram / (sx[:, None] * sx)  # np.outer's products, without its wrappers
    terms, column_term = product_plan(xcols, zcols, known_ones(std, weights))
    return PreparedRows(
        xcols,
        zcols,
        layout,
        std,
        terms,
        column_term,
        column_scales(std, layout, vc_widths),
        gram,
        sum_log_w,
        sx,
        wants_within(std, layout.r),
        _column_sums(xcols, weights, sx) if wants_column_sums(std) else None,
    )


def wants_column_sums(std: Standardization | None) -> bool:
    """Whether rows in the map ``std`` get the column sums of ``[X y]``: where neither
    ``X`` nor the random design has a column of ones (whose sums would hold them),
    for ``k_constant`` (:attr:`dmixed.stats.GlobalStats.column_sums`)."""
    return std is not None and std.x_intercept < 0 and std.z_intercept < 0


def _column_sums(xcols: list, weights, sx: np.ndarray | None) -> np.ndarray:
    """``Σ w [X y 1]`` (k + 1,) of ``xcols`` (scaled by ``√w``, unscaled by the map's
    scales ``sx``), in the map's units: O(n k), beside the gram's O(n k²)."""
    if weights is None:
        sums = [float(np.sum(c)) for c in xcols]
        total = float(xcols[0].shape[0]) if xcols else 0.0
    else:
        sw = np.sqrt(np.asarray(weights, dtype=np.float64))
        sums = [float(sw @ c) for c in xcols]
        total = float(np.sum(weights))
    out = np.array(sums + [total])
    if sx is not None:
        out[:-1] /= sx
    return out


def wants_rank_one_within(
    std: Standardization | None, codes, ztilde, vc_widths=(), n_groups: int | None = None
) -> bool:
    """Whether rows get within-group sums about the random design's column 0 where it
    has more: no variance component, column 0 the intercept (``std``'s finding), and
    every other column constant within each group of these rows (checked exactly by
    :func:`constant_within`; ``n_groups``: a bound on the codes, as there).  The random
    design of a group is then ``Z̃_i = e z̄_i'`` (``Z̃_i'Z̃_i`` of rank one), and the
    profile takes ``W`` and the kernels' rank-one forms
    (:meth:`~dmixed.kernels.StatsBlock.use_rank_one`) instead of subtracting
    ``Σ_i m_i`` from ``[X y]'[X y]``, which cancels where the groups' spread is
    large."""
    r = np.shape(ztilde)[1]
    if std is None or r < 2 or len(vc_widths) or std.z_intercept != 0:
        return False
    return constant_within(codes, [ztilde[:, a] for a in range(1, r)], n_groups)


def constant_within(codes, columns: list, n_groups: int | None = None) -> bool:
    """Whether every column is constant within each group, compared exactly (``==``).

    Each group's value at one of its rows is scattered into a table of the groups and
    compared with every row's, over the first :data:`CONSTANT_CHECK_FIRST` rows, then
    16 times as many, and so on (all of them once that would be more than half): a
    column that varies within groups
    fails on the first rows, however many groups there are (the first group seen
    twice), having touched a few pages of the table.  The C extension's loops
    (:mod:`~dmixed.kernels.native`: no copy of a column, no temporaries), else (or
    where the extension refuses the arguments) the numpy reference, the same answer.

    Parameters
    ----------
    codes : ndarray of int (n,)
        Each row's group, ``0 … n_groups − 1``.
    columns : list of array_like (n,)
        The columns checked, as float64 (any stride: not copied where they are float64).
    n_groups : int, optional
        A bound on the codes (the scratch table's size, touched only where rows fall);
        ``codes.max() + 1`` where not given.

    Returns
    -------
    bool
        True where no column differs between two rows of a group and none holds a NaN
        (also for no rows or no columns).
    """
    codes = np.asarray(codes)
    if not codes.size or not len(columns):
        return True
    cols = [np.asarray(col, dtype=np.float64) for col in columns]
    ext = native.extension()
    if ext is not None and codes.dtype.kind in "iu":
        flat = np.ascontiguousarray(codes, dtype=np.int64)
        size = int(flat.max()) + 1 if n_groups is None else int(n_groups)
        try:
            return bool(ext.constant_within(flat, cols, size))
        except ValueError:  # codes outside the bound, more columns than it takes
            pass
    end = CONSTANT_CHECK_FIRST
    while True:
        c = codes[:end]
        rep = np.empty(int(c.max()) + 1)
        for col in cols:
            part = col[:end]
            rep[c] = part
            if not (rep[c] == part).all():  # (NaN: not constant)
                return False
        if end >= codes.size:
            return True
        # all the rows where the next prefix would hold most of them (as the C loop)
        end = codes.size if 32 * end > codes.size else 16 * end


#: :func:`constant_within`'s numpy reference checks this many rows first (an ordinary
#: random slope then costs the check of these rows, not of all)
CONSTANT_CHECK_FIRST = 256


def wants_within(std: Standardization | None, r: int) -> bool:
    """Whether rows of ``r`` random-design columns in the map ``std`` get within-group
    sums: where the profile uses them, one random-design column, the intercept
    (``fit.objective.residual_cross_products``; :class:`_Within`)."""
    return std is not None and r == 1 and std.z_intercept == 0


#: the most columns the compiled pass of :func:`plan_sums` reads: it takes them as one
#: tuple, which numba types by its length (a compile for each width, and none at all
#: from 1000 columns: a wide factor's design); wider plans take the bincounts
COMPILED_MAX_SOURCES = 256


def plan_sums(codes, sources, terms, n_groups: int, compiled: bool | None) -> list:
    """The per-group sum of every term of a :func:`product_plan` (None for ``zero``):
    one ``bincount`` per term over the rows in row order, or the compiled pass
    (``compiled`` None: :func:`~dmixed.kernels.compiled.rows_compiled` decides; a plan
    reading more than :data:`COMPILED_MAX_SOURCES` columns takes the bincounts even when
    ``compiled`` is True), the same numbers bit for bit.  ``codes`` (n,) int64 in
    ``0 … n_groups−1``; ``sources`` the columns the terms index."""
    live = live_terms(terms)
    if compiled is None:
        compiled = rows_compiled(codes.size, n_groups * len(live) * 8)
    if compiled and len({u for t in live for u in t[1:]}) > COMPILED_MAX_SOURCES:
        compiled = False
    if compiled and live:
        from .rows_jit import term_sums  # numba: imported on first use only

        sums = iter(term_sums(codes, sources, live, n_groups))
        return [None if t[0] == "zero" else next(sums) for t in terms]
    out: list[np.ndarray | None] = []
    product = None  # one buffer for every product of two columns (no fresh pages each)
    for spec in terms:
        kind = spec[0]
        if kind == "zero":
            out.append(None)
        elif kind == "count":
            out.append(np.bincount(codes, minlength=n_groups).astype(np.float64))
        elif kind == "col":
            out.append(np.asarray(np.bincount(codes, weights=sources[spec[1]], minlength=n_groups)))
        else:
            if product is None:
                product = np.empty(codes.shape[0])
            np.multiply(sources[spec[1]], sources[spec[2]], out=product)
            out.append(np.asarray(np.bincount(codes, weights=product, minlength=n_groups)))
    return out


def plain_statistics(
    codes: np.ndarray,
    n_groups: int,
    endog: np.ndarray,
    exog: np.ndarray,
    ztilde: np.ndarray,
    std: Standardization,
    gram: np.ndarray | None = None,
    rank_one: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict] | None:
    """:func:`accumulate_packed_into`'s statistics of rows without weights or variance
    components in a map ``std`` that shifts no column and has no extreme scale, bit for
    bit, in the kernels' entry-major layout; None for other rows (the general pass).

    The same ``bincount`` of the same per-row values in row order as the general pass,
    for every packed column; the terms are told apart without a look at the rows: a
    random-design column in the memory of a fixed-effects column (``exog[:, :2]`` as
    :func:`dmixed.design.arrays.random_design` keeps it) is that column, and the map's
    intercept columns are ones (:func:`known_ones`).  A column equal in value but not
    in memory is summed again: the same sums, at the cost of a pass.  The sums of all
    the terms are stacked, each packed entry gathered from them and scaled
    (:func:`column_scales`'s factors) in three operations for all.  ``rank_one``: as
    :func:`accumulate_packed_into`'s.

    Returns
    -------
    zz : ndarray (r, r, G)
        ``Z̃_i'Z̃_i``, entry-major (:class:`~dmixed.kernels.StatsBlock`), C-contiguous.
    zxy : ndarray (r, p+1, G)
        ``Z̃_i'[X_i y_i]``, entry-major, C-contiguous.
    nobs : ndarray (G,) int64
        Rows per group.
    glob : dict
        As :func:`accumulate_packed_into` returns it.
    """
    if (
        std.y_shift != 0.0
        or np.count_nonzero(std.x_shift)
        or np.count_nonzero(std.z_shift)
        or extreme_scales(std)
        or not takes_rows_as_they_are(exog, None)
        or endog.dtype != np.float64
    ):
        return None
    p, r = exog.shape[1], ztilde.shape[1]
    k = p + 1
    if r == 0:
        return None
    xcols = [exog[:, j] for j in range(p)] + [endog]
    # each column's memory: its first entry's address (the matrix's, moved on by j
    # column strides, as numpy places a column view) and its stride; one read of the
    # address per matrix (numpy's array interface costs more than a ufunc call)
    x_start, (x_row, x_col) = exog.__array_interface__["data"][0], exog.strides
    where = [(x_start + j * x_col, x_row) for j in range(p)]
    sources = list(xcols)  # [X y] then the Z̃ columns of their own (ids into sources)
    zsrc = []
    ones = set(known_ones(std, None))
    z_start = None
    for a in range(r):
        col = ztilde[:, a]
        if a == std.z_intercept and std.x_intercept >= 0:
            zsrc.append(std.x_intercept)  # both all ones (the map's own finding)
            continue
        if z_start is None:
            z_start = ztilde.__array_interface__["data"][0]
        key = (z_start + a * ztilde.strides[1], ztilde.strides[0])
        if key in where:
            zsrc.append(where.index(key))
            continue
        if a == std.z_intercept:
            ones.add(len(sources))
        zsrc.append(len(sources))
        sources.append(col)
    terms: dict[tuple, int] = {("count",): 0}

    def term(u: int, v: int) -> int:
        if u in ones and v in ones:
            key: tuple = ("count",)
        elif u in ones or v in ones:
            key = ("col", v if u in ones else u)
        else:
            key = ("prod", min(u, v), max(u, v))
        return terms.setdefault(key, len(terms))

    entry = [term(zsrc[a], zsrc[b]) for a in range(r) for b in range(r)]
    entry += [term(zsrc[a], j) for a in range(r) for j in range(k)]
    counts = np.bincount(codes, minlength=n_groups)
    table = np.empty((len(terms), n_groups))
    table[0] = counts
    ext = native.extension()
    if (
        ext is not None
        and codes.dtype == np.int64
        and len(terms) <= native.MAX_TERMS
        and all(c.dtype == np.float64 for c in sources)
    ):
        # every term in one pass over the rows, each sum in row order as bincount's
        pairs = [(key[1], key[2] if key[0] == "prod" else -1) for key in list(terms)[1:]]
        ext.term_sums(codes, sources, pairs, n_groups, table[1:])
    else:
        product = None
        for term_key, t in terms.items():
            if term_key[0] == "col":
                table[t] = np.bincount(codes, weights=sources[term_key[1]], minlength=n_groups)
            elif term_key[0] == "prod":
                if product is None:
                    product = np.empty(codes.shape[0])
                np.multiply(sources[term_key[1]], sources[term_key[2]], out=product)
                table[t] = np.bincount(codes, weights=product, minlength=n_groups)
    sx = [*std.x_scale.tolist(), std.y_scale]
    sz = std.z_scale.tolist()
    # column_scales' quotients, entry by entry (x 1.0 where a scale is 1: the same sums)
    factors = [1.0 / (za * v) for za in sz for v in sz]
    factors += [1.0 / (za * v) for za in sz for v in sx]
    out = table[entry]
    out *= np.array(factors)[:, None]
    out += 0.0  # the general pass adds its sums into zeros: -0.0 becomes 0.0 there
    if gram is None:
        gram = unweighted_gram(endog, exog)
    sx_arr = np.array(sx)
    if np.count_nonzero(sx_arr != 1.0):
        gram = gram / (sx_arr[:, None] * sx_arr)
    within = None
    if wants_within(std, r) or (
        rank_one and wants_rank_one_within(std, codes, ztilde, (), n_groups)
    ):
        # Σ z₀², then Σ z₀[X y]: entries (0, 0) and (0, ·)
        kept = _Within.fresh(PackedLayout(r, k), out[0], out[r * r : r * r + k])
        within = kept.within(codes, xcols, ztilde[:, 0], sx_arr)
    column_sums = _column_sums(xcols, None, sx_arr) if wants_column_sums(std) else None
    glob = row_global_sums(gram, codes.shape[0], 0.0, within, column_sums)
    zz = out[: r * r].reshape(r, r, n_groups)
    return zz, out[r * r :].reshape(r, k, n_groups), counts, glob


#: Rows a block of the within-group sums' sparse products adds up at a time
#: (:func:`split_gram`) at least ...
WITHIN_BLOCK_ROWS = 2048
#: ... and at most this many blocks (each adds a dense (s, s) of the s mostly-zero
#: columns): from 2048 × 256 rows up the blocks grow with the rows.
WITHIN_MAX_BLOCKS = 256


class _Within:
    """The within-group cross-products of one call of :func:`accumulate_packed_into`
    (one random-design column, the intercept: ``r = 1``).

    ``[X y]`` is summed about each group's own (weighted) mean: the intercept column is
    ``z = √w`` (1 without weights), the group's mean ``c_g = Σ z d / Σ z²`` and the
    residual ``d − z c_g``, so nothing of the size of the mean itself is subtracted
    (DESIGN.md §2: per-group centring).  Rows of a group the accumulator already holds
    add ``U_a U_b/(U_a + U_b) (c_a − c_b)(c_a − c_b)'`` (Chan, Golub and LeVeque 1983):
    the result is that of all the rows at once.  ``take`` keeps the call's own sums of
    ``z²`` and ``z d`` (packed columns 1 and 2…) as the main loop makes them; the
    accumulator's earlier values are read first.
    """

    def __init__(self, acc: np.ndarray | None, target, layout: PackedLayout) -> None:
        self.k = layout.k
        self.first_f = 1 + layout.n_zz  # packed column of Σ z d_0 (r = 1)
        # acc None: no earlier rows (:meth:`fresh`), nothing to read or correct for
        self.u_old = None if acc is None else np.array(acc[1, target], dtype=np.float64)
        self.f_old = (
            None if acc is None else np.array(acc[self.first_f : self.first_f + self.k, target])
        )
        self.u: np.ndarray | None = None
        self.f = np.zeros((self.k, 0)) if self.f_old is None else np.zeros_like(self.f_old)

    @classmethod
    def fresh(cls, layout: PackedLayout, u: np.ndarray, f: np.ndarray) -> _Within:
        """The within-group sums of rows no accumulator held before: the call's own
        ``Σ z²`` (G,) and ``Σ z d`` (k, G), read where they are (no copies, no zeros
        read back)."""
        kept = cls(None, slice(None), layout)
        kept.u, kept.f = u, f
        return kept

    def take(self, c: int, sums: np.ndarray) -> None:
        if c == 1:
            self.u = sums
        elif self.first_f <= c < self.first_f + self.k:
            self.f[c - self.first_f] = sums

    def within(self, codes, xcols, z, sx) -> np.ndarray:
        u = self.u
        if u is None:  # pragma: no cover - r = 1 always has its Σ z²
            raise RuntimeError("internal error: no intercept sums")
        with np.errstate(divide="ignore", invalid="ignore"):
            c = np.where(u > 0, self.f / u, 0.0)  # (k, G): means, in scaled units
        scale = np.ones(self.k) if sx is None else sx
        unweighted = bool(_ones_column(z))
        split = sparse_split(xcols)
        dense_at = np.arange(self.k) if split is None else split[1]
        ext = native.extension()
        if (
            ext is not None
            and split is None
            and unweighted
            and self.k <= native.MAX_K
            and codes.dtype == np.int64
            and codes.flags.c_contiguous
            and all(x.dtype == np.float64 for x in xcols)
        ):
            # one pass over the rows, no residuals kept: each residual the same
            # subtraction of the same centre, their products summed in row order with
            # compensation (to rounding BLAS's; a plain running sum lost digits that
            # the nearly-linear-within-groups cases of tests/test_exactness.py need)
            centres = np.ascontiguousarray(c * scale[:, None])
            within = np.empty((self.k, self.k))
            ext.within_sums(codes, xcols, centres, c.shape[1], within)
            return self.finish(within, scale, u)
        resid = np.empty((dense_at.size, codes.size)).T
        for s, j in enumerate(dense_at.tolist()):
            centre = (c[j] * scale[j])[codes]  # the mean in the rows' own units
            np.subtract(xcols[j], centre if unweighted else z * centre, out=resid[:, s])
        if split is None:
            within = resid.T @ resid
        else:
            sparse_at = split[0]
            within = split_gram(
                self.k,
                sparse_at,
                dense_at,
                _sparse_resid(
                    codes,
                    sparse_columns(xcols, sparse_at),
                    z,
                    unweighted,
                    c[sparse_at] * scale[sparse_at, None],
                ),
                resid,
                block_rows=max(WITHIN_BLOCK_ROWS, -(-codes.size // WITHIN_MAX_BLOCKS)),
            )
        return self.finish(within, scale, u)

    def finish(self, within: np.ndarray, scale: np.ndarray, u: np.ndarray) -> np.ndarray:
        """The sums of the residuals' products ``within`` (k × k, in the rows' units) in
        scaled units, exactly symmetric, with the accumulator's earlier rows added."""
        within = within / np.outer(scale, scale)
        within = 0.5 * (within + within.T)
        if self.u_old is None or self.f_old is None:
            # chan_correction's sum over no group: zeros (added all the same, as they
            # turn a -0.0 into 0.0 there)
            return within + np.zeros((self.k, self.k))
        return within + chan_correction(self.u_old, self.f_old.T, u, self.f.T)


def _sparse_resid(
    codes, xs: sp.csc_matrix, z, unweighted: bool, centres: np.ndarray
) -> sp.csc_matrix:
    """:meth:`_Within.within`'s residuals ``x − z c_g`` of the mostly-zero columns
    ``xs`` (CSC, :func:`sparse_split`) whose group means in the rows' units are
    ``centres`` (s, G): nonzero only in the rows of the groups whose mean or whose ``x``
    is.  Each entry the same number as the dense residual (``z c_g`` one product, or
    ``c_g`` itself without weights; one subtraction)."""
    import scipy.sparse as sp  # only on the sparse path

    n, g = codes.size, centres.shape[1]
    rows = sp.csr_matrix((np.ones(n) if unweighted else z, codes, np.arange(n + 1)), shape=(n, g))
    return (xs - rows @ sp.csr_matrix(centres.T)).tocsc()


def packed_width(r: int, k: int) -> int:
    """Columns of the packed statistics: ``1 + r(r+1)/2 + r·k`` (``k = p + 1``; see
    :class:`~dmixed.stats.packed.PackedLayout`)."""
    return PackedLayout(r, k).width


def accumulate_packed(
    codes: np.ndarray,
    n_groups: int,
    endog: np.ndarray,
    exog: np.ndarray,
    ztilde: np.ndarray,
    weights: np.ndarray | None = None,
    std: Standardization | None = None,
    vc_widths=(),
    sums=None,
) -> tuple[np.ndarray, dict]:
    """One pass over rows: per-group statistics as one row of numbers per group
    (``sums``: as :func:`accumulate_packed_into`'s).

    Returns
    -------
    packed : ndarray (G, 1 + r(r+1)/2 + r(p+1))
        ``[n_i, lower triangle of Z̃_i'Z̃_i (row-major: (0,0), (1,0), (1,1), …),
        Z̃_i'[X_i y_i] (row-major)]`` (:class:`~dmixed.stats.packed.PackedLayout`): the
        layout in which partial statistics travel and are added by group key (one array,
        no per-statistic temporaries).
    glob : dict
        ``xyxy`` = [X y]'[X y], ``n``, ``sum_log_weights``.
    """
    layout = PackedLayout(np.shape(ztilde)[1], np.shape(exog)[1] + 1)
    acc = np.zeros((layout.width, n_groups))
    glob = accumulate_packed_into(
        acc, codes, endog, exog, ztilde, weights, std, vc_widths, sums=sums
    )
    return np.ascontiguousarray(acc.T), glob


def unpack_statistics(packed: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(nobs (G,), zz (G, r, r), zxy (G, r, p+1))`` from :func:`accumulate_packed` rows."""
    return PackedLayout.of_width(r, packed.shape[1]).unpack(packed)


def accumulate_statistics(
    codes: np.ndarray,
    n_groups: int,
    endog: np.ndarray,
    exog: np.ndarray,
    ztilde: np.ndarray,
    weights: np.ndarray | None = None,
    std: Standardization | None = None,
    vc_widths=(),
    sums=None,
) -> dict[str, np.ndarray]:
    """One pass over rows: per-group and global sufficient statistics (unpacked;
    ``sums``: as :func:`accumulate_packed_into`'s).

    Returns
    -------
    dict with
        ``zz`` (G, r, r) = Σ_rows z̃ z̃',  ``zxy`` (G, r, p+1) = Σ_rows z̃ [x, y],
        ``nobs`` (G,), ``xyxy`` (p+1, p+1) = [X y]'[X y],  ``n``,
        ``sum_log_weights`` (rows scaled by √w first, see :func:`_weighted_rows`).
    """
    r = np.asarray(ztilde).shape[1]
    packed, glob = accumulate_packed(
        codes, n_groups, endog, exog, ztilde, weights, std, vc_widths, sums
    )
    nobs, zz, zxy = unpack_statistics(packed, r)
    return {"zz": zz, "zxy": zxy, "nobs": nobs, **glob}


def centred_statistics(
    codes: np.ndarray,
    n_groups: int,
    endog: np.ndarray,
    exog: np.ndarray,
    exog_re: np.ndarray,
    lossy: np.ndarray,
    weights: np.ndarray | None = None,
    std: Standardization | None = None,
) -> CentredSums:
    """Per-group sums of rows about each group's own (weighted) mean, in the map
    ``std``'s units (those of :func:`accumulate_packed_into`'s statistics of the same
    rows): the :class:`~dmixed.kernels.conditionals.CentredSums` of the random design
    ``exog_re`` (n, r) (no variance component) and ``[X y]``, with ``within``
    ``Σ_i A_c'A_c`` (k × k) of all the groups.

    Two passes over the rows (Chan, Golub and LeVeque's corrected two-pass form): the
    means ``c = Σ e v / u`` (``e = √w``, ones without weights; ``u = Σ e²``), then the
    residuals ``v − e c`` and their sums ``δ = Σ e (v − e c)`` (the rounding of ``c``:
    ``c + δ/u`` is the mean), the cross-products of the residuals less ``δ_a δ_b/u``.
    Nothing of the size of the means is subtracted from a sum.  ``codes`` (n,) the
    rows' groups in ``0 … n_groups−1``; ``lossy`` (n_groups,) bool, the groups that take
    the centred forms (:func:`~dmixed.kernels.conditionals.lossy_groups`), kept with
    the sums.
    """
    codes = np.asarray(codes, dtype=np.int64)
    k = np.shape(exog)[1] + 1
    # the rows' gram is not wanted here: zeros stand in for it (no pass over the rows)
    rows = prepare_rows(endog, exog, exog_re, weights, std, gram=np.zeros((k, k)))
    cols = [*rows.zcols, *rows.xcols]  # Z̃ then [X y], each scaled by e, shifted
    r = len(rows.zcols)
    e = None if weights is None else np.sqrt(np.asarray(weights, dtype=np.float64))

    def group_sums(values: np.ndarray) -> np.ndarray:
        return np.bincount(codes, weights=values if e is None else e * values, minlength=n_groups)

    u = np.asarray(
        np.bincount(codes, weights=None if e is None else e * e, minlength=n_groups),
        dtype=np.float64,
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_u = np.where(u > 0, 1.0 / u, 0.0)
    resid = np.empty((len(cols), codes.size))
    means = np.empty((len(cols), n_groups))
    delta = np.empty_like(means)
    for j, col in enumerate(cols):
        means[j] = group_sums(col) * inv_u
        centre = means[j][codes]
        np.subtract(col, centre if e is None else e * centre, out=resid[j])
        delta[j] = group_sums(resid[j])
    means += delta * inv_u
    prod = np.empty(codes.size)

    def cross(a: int, b: int) -> np.ndarray:
        np.multiply(resid[a], resid[b], out=prod)
        return np.bincount(codes, weights=prod, minlength=n_groups) - delta[a] * delta[b] * inv_u

    c = np.empty((r, r, n_groups))
    for a in range(r):
        for b in range(a + 1):
            c[a, b] = c[b, a] = cross(a, b)
    d = np.empty((r, k, n_groups))
    for a in range(r):
        for j in range(k):
            d[a, j] = cross(a, r + j)
    rx = resid[r:]
    within = rx @ rx.T - (delta[r:] * inv_u) @ delta[r:].T
    within = 0.5 * (within + within.T)
    # the map's scales (powers of two: exact), as column_scales applies them to the sums
    sx = np.ones(k) if rows.sx is None else rows.sx
    sz = np.ones(r) if rows.std is None else rows.std.z_scale[:r]
    return CentredSums(
        u,
        means[:r] / sz[:, None],
        means[r:] / sx[:, None],
        c / (sz[:, None, None] * sz[None, :, None]),
        d / (sz[:, None, None] * sx[None, :, None]),
        np.asarray(lossy, dtype=bool),
        within / np.outer(sx, sx),
    )


def shifted_statistics(
    codes: np.ndarray,
    n_groups: int,
    endog: np.ndarray,
    exog: np.ndarray,
    exog_re: np.ndarray,
    weights: np.ndarray | None = None,
    std: Standardization | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-group sums of the random design ``exog_re`` (n, r) about a shift of each
    group's own, in the map ``std``'s units (those of :func:`accumulate_packed_into`'s
    statistics of the same rows): ``(t (r, G), e'δ (r, G), δ'δ (r, r, G), δ'[X y]
    (r, k, G))``, what :func:`~dmixed.kernels.conditionals.centred_from_shifted` takes
    (``endog``, ``exog``: the rows' others, as :func:`centred_statistics`' arguments).

    With ``e = √w`` (ones without weights), a group's shift ``t`` is its first row's
    ``Z̃/e`` (the intercept's: 1) and ``δ = Z̃ − e t'`` its rows about it: of the size
    of the group's spread, however large its mean.  One pass (the numpy reference;
    ``codes`` (n,) in ``0 … n_groups−1``; a group with no rows: zeros).
    """
    codes = np.asarray(codes, dtype=np.int64)
    r = np.shape(exog_re)[1]
    n = codes.size
    k = np.shape(exog)[1] + 1
    rows = prepare_rows(endog, exog, exog_re, weights, std, gram=np.zeros((k, k)))
    e = None if weights is None else np.sqrt(np.asarray(weights, dtype=np.float64))
    seen, first = np.unique(codes, return_index=True)
    shift = np.zeros((r, n_groups))
    dz = np.empty((r, n))
    for a, col in enumerate(rows.zcols):
        col = np.broadcast_to(np.asarray(col, dtype=np.float64), (n,))
        if e is None:
            shift[a, seen] = col[first]
            dz[a] = col - shift[a][codes]
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                shift[a, seen] = np.where(e[first] > 0, col[first] / e[first], 0.0)
            dz[a] = col - e * shift[a][codes]

    def group_sums(values) -> np.ndarray:
        return np.bincount(codes, weights=values, minlength=n_groups)

    dsum = np.empty((r, n_groups))
    dgram = np.empty((r, r, n_groups))
    dxy = np.empty((r, k, n_groups))
    for a in range(r):
        dsum[a] = group_sums(dz[a] if e is None else e * dz[a])
        for b in range(a + 1):
            dgram[a, b] = dgram[b, a] = group_sums(dz[a] * dz[b])
        for j, col in enumerate(rows.xcols):
            dxy[a, j] = group_sums(dz[a] * np.broadcast_to(col, (n,)))
    sz = np.ones(r) if rows.std is None else rows.std.z_scale[:r]
    sx = np.ones(k) if rows.sx is None else rows.sx
    return (
        shift / sz[:, None],
        dsum / sz[:, None],
        dgram / (sz[:, None, None] * sz[None, :, None]),
        dxy / (sz[:, None, None] * sx[None, :, None]),
    )
