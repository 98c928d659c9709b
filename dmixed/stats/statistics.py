"""The per-group sufficient statistics a fit is built from, and their global checks.

:class:`FittedStatistics` is what one data pass produces on any engine (DESIGN.md §2):
the engine holding the per-group ``Z̃_i'Z̃_i`` and ``Z̃_i'[X_i y_i]``, the global
:class:`GlobalStats`, the random design's :class:`~dmixed.stats.layout.Layout`, and the
group labels, sizes and variance-component slot columns.  The rank and response checks
work on ``[X y]'[X y]`` and ``Σ_i Z_i'Z_i`` (:func:`check_designs`): sums the statistics
already hold, never the rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DataError
from .layout import Layout
from .standardize import Standardization


@dataclass(frozen=True)
class GlobalStats:
    """Global sufficient statistics: ``xyxy = [X y]'[X y]``, ``n`` rows, ``Σ log w``.

    ``within`` (k × k, or None): Σ over groups of the cross-products of ``[X y]`` about
    each group's own (weighted) mean, i.e. ``[X y]'(I − P_1)[X y]`` with ``P_1`` the
    projection on each group's intercept column; accumulated about the group means
    themselves (:func:`dmixed.kernels.accumulate_packed_into`), so it carries none of
    the rounding of ``xyxy − Σ n_i d̄_i d̄_i'``.  None where the random design has no
    intercept column.

    ``column_sums`` (k + 1,) or None: ``Σ w [X y 1]``, the weighted column sums of
    ``[X y]`` and the sum of the weights, in the columns' map (its scales: no column is
    shifted there), held where neither ``X`` nor the random design has a column of ones
    (elsewhere the intercept's sums hold them): what ``k_constant`` needs then
    (:func:`constant_in_statistics`).  None elsewhere, and for statistics that do not
    hold them (saved before they were, drawn by the bootstrap).
    """

    xyxy: np.ndarray
    n: int
    sum_log_weights: float = 0.0
    within: np.ndarray | None = None
    column_sums: np.ndarray | None = None

    @property
    def k_fe(self) -> int:
        return self.xyxy.shape[0] - 1


@dataclass
class FittedStatistics:
    """Everything the optimizer and the results need, built by one data pass.

    Attributes
    ----------
    engine : dmixed.engines.Engine
        Holds the per-group statistics (in-process or on a cluster).
    glob : GlobalStats
    layout : Layout
    group_labels : ndarray (G,)
        Group keys in sorted order (statsmodels' order).
    group_sizes : ndarray (G,)
    vc_slot_cols : list of ndarray (G, m_l)
        Global column index of each variance-component slot of each group (-1: unused).
    standardization : Standardization or None
        The map of the columns the statistics were accumulated in (None: raw columns);
        see :attr:`columns`.
    """

    engine: Any
    glob: GlobalStats
    layout: Layout
    group_labels: np.ndarray
    group_sizes: np.ndarray
    vc_slot_cols: list[np.ndarray]
    data_pass_seconds: float = 0.0
    n_dropped: int = 0
    standardization: Standardization | None = None

    @property
    def fit_layout(self) -> Layout:
        """The layout the optimizer works in: :attr:`layout`, or one slot per variance
        component where the engine holds the components structured (its sums then come
        per component: ``engine.collapsed_vc``).  Same parameters, same packing."""
        if getattr(self.engine, "collapsed_vc", False):
            return Layout(self.layout.k_re, (1,) * self.layout.k_vc)
        return self.layout

    @property
    def columns(self) -> Standardization:
        """The columns' map (:mod:`dmixed.stats.standardize`; identity for raw columns)."""
        if self.standardization is not None:
            return self.standardization
        return Standardization.identity(self.glob.k_fe, self.layout.k_re)


#: An eigenvalue of a Gram matrix scaled to unit diagonal below this times its size is
#: zero: the columns are linearly dependent (scale-free, so units do not matter).
RANK_TOL = 1e-10
#: ... and one below this times its size and float64's precision is zero to the
#: rounding of the statistics themselves (each entry of the unit-diagonal Gram matrix
#: off by a few ε moves its eigenvalues by about the size times that): between the two,
#: the columns are independent in the statistics but nearly dependent, as a column far
#: from zero next to its spread makes its products with indicator columns
NULL_ROUNDING = 8.0 * float(np.finfo(float).eps)
#: the smallest positive normal float64 (``np.finfo(float).tiny``)
TINY = float(np.finfo(float).tiny)


def _unit_eigh(gram: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues and eigenvectors of ``gram`` scaled to unit diagonal (``d``: the
    square roots of its diagonal, all > 0)."""
    return np.linalg.eigh(gram / (d[:, None] * d))  # (np.outer's products)


def check_full_rank(
    xtx: np.ndarray,
    names: list[str],
    what: str = "fixed-effects design",
    where: str = "",
    far: Mapping[str, str] | None = None,
    shared: frozenset[str] = frozenset(),
) -> None:
    """Refuse a rank-deficient design, naming the columns involved.

    Works on the design's cross-products (``X'X``, p × p, or ``Σ_i Z_i'Z_i`` for the
    random design), never on rows.  Columns are scaled to unit
    norm first so that the tolerance does not depend on units.  ``what`` names the
    design in the message, ``where`` says where its columns come from (``" of
    re_formula '~x'"``); the statistics' shifted columns (DESIGN.md §2) may name the
    intercept among the columns of a dependence that does not involve it.  ``far``
    maps the columns far from zero next to their spread to their description
    (:func:`far_columns`), for the message of nearly dependent columns; ``shared``
    names those of them that ``re_formula`` reads too (not centred by dmixed).

    Raises
    ------
    DataError
        A column that is zero in every row (a constant one, once shifted: the
        statistics' columns are shifted where the design has an intercept); columns
        that are linearly dependent (the unit-diagonal Gram matrix's least eigenvalue
        below :data:`NULL_ROUNDING` times its size: zero to the statistics' rounding);
        columns that are independent but nearly dependent (below :data:`RANK_TOL`
        times its size: the fit's float64 sums do not resolve their coefficients;
        where a product term among them has a factor far from zero next to its
        spread, the message says so and suggests centring it, and elsewhere it is
        told as rank deficient, as for dependent columns).
    """
    if xtx.shape[0] == 0:
        return
    d = _column_norms(xtx)
    _check_no_zero_column(d, names, what, where)
    _check_no_null_space(*_unit_eigh(xtx, d), names, what, where, far, shared)


def _column_norms(gram: np.ndarray) -> np.ndarray:
    """The columns' norms from their Gram matrix (negative rounding read as 0)."""
    return np.sqrt(np.maximum(gram.diagonal(), 0.0))


def _check_no_zero_column(d: np.ndarray, names: list[str], what: str, where: str) -> None:
    """:func:`check_full_rank`'s refusal of a column of norm ``d`` zero."""
    zero = d == 0
    if np.count_nonzero(zero):
        cols = _some(names[j] for j in np.flatnonzero(zero))
        raise DataError(
            f"{what} is rank deficient: column(s) {cols}{where} are constant (one "
            "value in every row, as the intercept, or all zero); drop them from the formula"
        )


def _check_no_null_space(
    evals: np.ndarray,
    evecs: np.ndarray,
    names: list[str],
    what: str,
    where: str,
    far: Mapping[str, str] | None = None,
    shared: frozenset[str] = frozenset(),
) -> None:
    """:func:`check_full_rank`'s refusal of dependent and of nearly dependent columns,
    from the eigenvalues and eigenvectors of their unit-diagonal Gram matrix
    (``len(names)`` columns; further rows of ``evecs`` and their eigenvalues, a
    padding's, are 1 apart from them).  The rank is the count of eigenvalues above the
    statistics' rounding (:data:`NULL_ROUNDING`): a design whose columns an offset
    makes nearly parallel (``x·1[c = b]`` next to ``1[c = b]`` with ``x`` near 1e6)
    has full rank, and is told so.  ``shared``: the far columns the random design reads
    too (``re_formula``), which the design layer does not centre
    (:mod:`dmixed.design.centres`), so the message says why and how to centre them."""
    p = len(names)
    near = evals < RANK_TOL * p
    if not np.count_nonzero(near):
        return
    null = evals < NULL_ROUNDING * p
    lost = null if np.count_nonzero(null) else near
    involved = np.flatnonzero(np.abs(evecs[:p, lost]).max(axis=1) > 1e-6)
    cols = _some(names[j] for j in involved)
    # the offset explanation only where it holds: a product term among the involved
    # columns with a factor far from zero (centring, with an intercept, leaves the
    # span of the main effects alone and changes only their products)
    far = far or {}
    factors = {f for j in involved if ":" in names[j] for f in names[j].split(":")}
    offsets = [far[name] for name in far if name in factors]
    products = [names[j] for j in involved if ":" in names[j]]
    if lost is not null and not offsets and products:
        # a product whose numeric factor is no column of the design (x:C(c) coded
        # without x's main effect): its offset is not in the statistics, but full rank
        # to their rounding is what they say, so the message says that
        raise DataError(
            f"{what} has full rank ({p} columns) but columns {cols}{where} are nearly "
            f"linearly dependent: the least eigenvalue of their unit-diagonal "
            f"cross-products, {float(evals[:p].min()):.2g}, is above their rounding but "
            f"below {RANK_TOL * p:.2g}, and the fit's float64 sums do not resolve their "
            f"coefficients. Where a numeric factor of a product among them "
            f"({_some(iter(products))}) lies far from zero next to its spread, the "
            "product is nearly the other factor's columns times the offset: centre that "
            "column in the data (x minus its mean) or, for a pandas DataFrame, write "
            "center(x) in the formula; dmixed centres such a column itself only where "
            "its products' lower-order columns are in the design (y ~ x*C(c), x1*x2, "
            "y ~ 0 + C(c) + C(c):x, or y ~ C(c) + C(c):x with C(c) in treatment coding; "
            "not x:C(c) alone nor another coding)"
        )
    if lost is null or not offsets:
        raise DataError(
            f"{what} is rank deficient (rank {p - int(lost.sum())} < {p} columns): "
            f"linearly dependent columns {cols}{where}"
        )
    head = (
        f"{what} has full rank ({p} columns) but columns {cols}{where} are nearly "
        f"linearly dependent: the least eigenvalue of their unit-diagonal cross-products, "
        f"{float(evals[:p].min()):.2g}, is above their rounding but below "
        f"{RANK_TOL * p:.2g}, and the fit's float64 sums do not resolve their "
        f"coefficients; the column(s) {', '.join(offsets)} lie far from zero next to "
        "their spread, so their products with other columns (an interaction with a "
        "factor) are nearly those columns times the offset"
    )
    both = [name for name in far if name in factors and name in shared]
    if both:
        listed = ", ".join(repr(name) for name in both)
        raise DataError(
            f"{head}. dmixed does not centre {listed} itself because re_formula reads "
            "it too (a column is centred only where the fixed-effects formula alone "
            "reads it): centre it in the data (x minus a value near its mean, then used "
            "by both formulas) or, for a pandas DataFrame only, write center(x) in the "
            "formula and in re_formula"
        )
    raise DataError(
        f"{head}: centre them in the data (x minus its mean) or, for a pandas "
        "DataFrame, write center(x) in the formula. dmixed reads such a column about a "
        "centre itself in x*C(c) or x1*x2 where it varies over the data's first rows "
        "and no other formula (re_formula, a variance component) reads it; for a Dask "
        "collection those rows are read from its first partitions (a bounded number), "
        "so a column constant over them (data partitioned by that column) is not "
        "centred: repartition the collection or centre the column in the data"
    )


def far_columns(shift: np.ndarray, scale: np.ndarray, names: list[str]) -> dict[str, str]:
    """The columns (``names``) whose statistics' ``shift`` exceeds 1e3 times their
    ``scale`` (a column's values far from zero next to their spread), each mapped to
    ``"'x1' (values about 1e+06, spread of order 1)"`` (the spread shown is the
    column's scale, a power of two near its spread, not its standard deviation); empty
    where none is."""
    # the entries as floats: numpy's scalars compare and print the same, at several
    # times the cost of a float each
    shifts, scales = shift.tolist(), scale.tolist()
    return {
        names[j]: f"{names[j]!r} (values about {shifts[j]:.3g}, spread of order {scales[j]:.3g})"
        for j in range(min(len(names), len(shifts)))
        if abs(shifts[j]) > 1e3 * scales[j]
    }


def check_designs(
    stats: FittedStatistics,
    exog_names: list[str],
    exog_re_names: list[str],
    endog_name: str,
    re_formula: str | None = None,
    vc_read: Mapping[str, str] | None = None,
) -> None:
    """The checks of a model's statistics before a fit: the fixed-effects design and the
    random design of ``exog_re`` (``re_formula``) of full rank (:func:`check_full_rank`;
    the random design's ``Σ_i Z_i'Z_i`` from the engine, ``re_gram``: a sum over the
    held statistics, one round trip on a cluster unless the data pass brought the
    moment sums), and a response with residual variation (:func:`check_response_varies`).

    Both Gram matrices are decomposed in one call (the smaller padded with the identity,
    which adds eigenvalues 1 and leaves the others), and the response's residual sum of
    squares is read off the fixed effects' decomposition (:func:`_residual_ss`) rather
    than from a solve of its own: the same refusals, in the same order, as the three
    checks one after the other.

    Before them, a fixed-effects column far from zero next to its spread that another
    formula reads too (``re_formula``, or a variance component: ``vc_read`` maps such
    a column to the component's argument, ``"vc_formula['s']"``) is refused where the
    fit's sums cannot take its offset out (:func:`_check_shared_far`).

    Raises
    ------
    DataError
        As :func:`check_full_rank` and :func:`check_response_varies`, and for such a
        far column.
    """
    xyxy = stats.glob.xyxy
    q = stats.layout.k_re
    where = f" of re_formula {re_formula!r}" if re_formula is not None else ""
    std = stats.standardization
    far_x: dict[str, str] = {}
    far_z: dict[str, str] = {}
    if std is not None:
        far_x = far_columns(std.model_x_shift(), std.x_scale, exog_names)
        far_z = far_columns(std.model_z_shift(), std.z_scale, exog_re_names)
    # far columns the random design reads too: not centred by the design layer
    shared = frozenset(far_x) & frozenset(exog_re_names)
    if std is not None:
        _check_shared_far(stats, std, exog_names, exog_re_names, {**far_z, **far_x}, vc_read or {})
    designs = [(xyxy[:-1, :-1], exog_names, "fixed-effects design", "", far_x)]
    if q:
        designs.append(
            (stats.engine.re_gram(q), exog_re_names, "random-effects design", where, far_z)
        )
    designs = [design for design in designs if design[0].shape[0]]
    norms = [_column_norms(design[0]) for design in designs]
    joined = np.concatenate(norms) if designs else None
    if joined is None or np.count_nonzero(joined) < joined.size:
        # a zero column (or no columns): refused, or not, in the checks' own order
        for gram, names, what, place, far in designs:
            check_full_rank(gram, names, what, place, far, shared)
        check_response_varies(xyxy, endog_name)
        return
    size = max(design[0].shape[0] for design in designs)
    unit = np.zeros((len(designs), size, size))
    for i, ((gram, *_), d) in enumerate(zip(designs, norms, strict=True)):
        k = gram.shape[0]
        unit[i, :k, :k] = gram / (d[:, None] * d)  # (np.outer's products)
        if k < size:
            unit[i].reshape(-1)[k * (size + 1) :: size + 1] = 1.0  # the padding's diagonal
    evals, evecs = np.linalg.eigh(unit)
    if evals.min() < RANK_TOL * size:  # maybe a null space (the padding's are 1): which
        for i, (_, names, what, place, far) in enumerate(designs):
            _check_no_null_space(evals[i], evecs[i], names, what, place, far, shared)
    if xyxy.shape[0] > 1:
        rss = _residual_ss(xyxy, evals[0], evecs[0], norms[0])
        _check_residual(rss, float(xyxy[-1, -1]), endog_name)
    else:
        check_response_varies(xyxy, endog_name)


def _check_shared_far(
    stats: FittedStatistics,
    std: Standardization,
    exog_names: list[str],
    exog_re_names: list[str],
    far: Mapping[str, str],
    vc_read: Mapping[str, str],
) -> None:
    """Refuse a fixed-effects column far from zero next to its spread that another
    formula reads too (``re_formula``, or a variance component: ``vc_read``), where the
    exact path cannot read it about a centre: inside a product term (``c*ts``,
    ``C(c) + C(c):ts``) or in a design without an intercept whose columns span the
    constant (``0 + C(c) + ts``).  The design layer centres no column another formula
    reads (:mod:`dmixed.design.centres`), and the statistics shift a column alone beside
    an intercept only, so there the fit's float64 sums lose the likelihood's and the
    estimates' last digits silently, or the design is told rank deficient.  ``y ~ C(c)
    + ts`` with ``re_formula="1 + ts"`` or a component reading ``ts`` (the statistics'
    shift) is left to fit.

    ``far`` holds the columns the statistics shift far (of either design); without an
    intercept in either design nothing is shifted, so there a column's offset and
    spread are read off its sums (:func:`_far_by_sums`), by the same test."""
    scales = np.concatenate([std.x_scale, std.z_scale]).tolist()
    spread = dict(zip([*exog_names, *exog_re_names], scales, strict=False))
    factors = {f for n in exog_names for f in _product_factors(n)}
    # the candidates: read by another formula and by the fixed effects
    read = [
        n
        for n in dict.fromkeys([*exog_re_names, *vc_read])
        if spread.get(n, 1.0) > 0 and (n in exog_names or n in factors)
    ]
    if not read:
        return
    # a factor of products that no design holds alone to be shifted by (``C(c) +
    # C(c):ts`` beside a component or ``re_formula="0 + ts"``): told by its products
    hidden = [n for n in read if n in factors and n not in far]
    if hidden:
        far = {**far, **_far_in_products(stats, exog_names, hidden)}
    both = [n for n in read if n in far]
    inside = [n for n in both if n in factors]
    alone = []
    if std.x_intercept < 0 and constant_in_statistics(stats) != 0:
        unseen = [n for n in read if n not in far and n in exog_names]
        if unseen:
            far = {**far, **_far_by_sums(stats, exog_names, unseen)}
        alone = [n for n in read if n in far and n not in inside and n in exog_names]
    bad = inside + alone
    if not bad:
        return
    listed = ", ".join(far[n] for n in bad)
    names = ", ".join(repr(n) for n in bad)
    example = _example(stats, std, exog_names, exog_re_names, bad[0])
    why = []
    if inside:
        why.append("inside a product term (an interaction)")
    if alone:
        why.append("in a formula without an intercept whose columns give one in every row")
    where = ["re_formula"] if any(n in exog_re_names for n in bad) else []
    where += [vc_read[n] for n in bad if n in vc_read]
    others = " and ".join(dict.fromkeys(where))
    verb = "reads" if len(where) == 1 else "read"
    # a component's columns, and re_formula's without an intercept, are slopes about
    # zero: centred there they are another model, so only the fixed effects are centred
    # (their span, and so the model, is the same)
    fixed_only = any(n in vc_read for n in bad) or std.z_intercept < 0
    if fixed_only:
        fix = (
            "centre it in the fixed-effects formula only, e.g. "
            f"{example} there in place of {bad[0]}, "
            f"and keep {bad[0]} as it is in {others}: the same model (the fixed effects "
            f"span the same columns), where centring it in {others} too would make a "
            "different model, a random slope about another origin"
        )
    else:
        fix = (
            "centre it in the data (the column minus a value near its mean, then used by "
            f"every formula, e.g. {example} in the formula and in {others}) or, for a "
            f"pandas DataFrame only, write center({bad[0]}) in the formula and in "
            "re_formula"
        )
    raise DataError(
        f"fixed-effects column(s) {listed} lie far from zero next to their spread, read "
        f"{' and '.join(why)}, where the statistics' own shift does not take the offset "
        f"out. dmixed does not centre {names} itself because {others} {verb} it too (a "
        "column is centred only where the fixed-effects formula alone reads it), so the "
        f"fit's float64 sums would lose digits of the likelihood and the estimates: {fix}"
        + (
            "; or, where it is the same model, add the intercept to the fixed-effects "
            "formula (y ~ C(c) + ts for y ~ 0 + C(c) + ts)"
            if alone
            else ""
        )
    )


def _example(
    stats: FittedStatistics,
    std: Standardization,
    exog_names: list[str],
    exog_re_names: list[str],
    name: str,
) -> str:
    """``I(name - centre)`` for a refused far column: the centre within the column's
    spread and printed exactly (:func:`exact_centre`, as the design layer centres), from
    the statistics' shift of it, else its sums, else its products' sums; ``I(name -
    m), m near its mean,`` where none of them tells."""
    shifts = np.concatenate([std.model_x_shift(), std.model_z_shift()]).tolist()
    spread = np.concatenate([std.x_scale, std.z_scale]).tolist()
    names = [*exog_names, *exog_re_names]
    mean, sd = 0.0, 0.0
    if name in names and shifts[names.index(name)]:
        mean, sd = shifts[names.index(name)], spread[names.index(name)]
    else:
        mean, sd = _offset_by_sums(stats, exog_names, name)
    if not mean:
        mean, sd = _offset_by_products(stats, exog_names, name)
    if not mean:
        return f"I({name} - m), m near its mean,"
    return f"I({name} - {exact_centre(mean, sd)!r})"


#: The centre keeps the mean to within ``sd / 2**CENTRE_BITS`` (far inside the spread)
#: and is a multiple of a power of two, so ``x − centre`` is exact (:func:`exact_centre`).
CENTRE_BITS = 10


def exact_centre(mean: float, sd: float, top: float = 0.0) -> float:
    """A centre of a column of mean ``mean`` and standard deviation ``sd`` (largest
    magnitude ``top``, 0: about ``|mean|``): the mean rounded to a multiple of a power of
    two ``g`` near ``sd / 2**CENTRE_BITS`` and at least the spacing of float64 at the
    largest magnitude.  ``x − centre`` is then exact for every ``x`` of that magnitude
    and sign (both are multiples of ``x``'s spacing, and the difference is smaller than
    ``x``), and the centre is within ``sd / 2**CENTRE_BITS`` of the mean, so a column
    centred by it (``I(ts - centre)``, the centre written by ``repr``: exact) is near
    zero.  The one owner of the rounding (:func:`dmixed.design.centres.centre_of`)."""
    top = max(top, abs(mean))
    grid = math.ulp(top)
    if sd > 0:
        grid = max(2.0 ** math.floor(math.log2(sd / 2.0**CENTRE_BITS)), grid)
    grid = 2.0 ** math.ceil(math.log2(grid))  # a power of two
    return float(round(mean / grid) * grid)


def _far_in_products(
    stats: FittedStatistics, exog_names: list[str], names: list[str]
) -> dict[str, str]:
    """Of the columns ``names``, factors of fixed-effects product columns (``C(c)[b]:ts``
    of ``ts``), those with a product within 1e-3 of the span of the columns that do not
    read them, as the statistics hold it: ``1 − R²`` of the product on those columns
    (from the unit-diagonal ``X'WX``) under 1e-6.  For ``u·ts`` with ``u`` a level's
    indicator and the level's columns among the others, ``1 − R²`` is the level's
    ``var(ts) / mean(ts²)``, so this is :func:`far_columns`' test of 1e3 spreads for the
    rows the product reads; the columns regressed on do not read ``ts``, so they are
    as well conditioned as the design without it, and the residual is resolved."""
    p = stats.glob.k_fe
    if p != len(exog_names) or p < 2:
        return {}
    gram = np.asarray(stats.glob.xyxy, dtype=np.float64)[:p, :p]
    d = np.sqrt(np.maximum(np.diag(gram), 0.0))
    if not np.all(d > 0):
        return {}  # a zero column: the rank check's to refuse
    unit = gram / (d[:, None] * d)
    out = {}
    for n in names:
        reading = [j for j, c in enumerate(exog_names) if c == n or n in _product_factors(c)]
        rest = [j for j in range(p) if j not in reading]
        cols = [j for j in reading if exog_names[j] != n]
        if not rest or not cols:
            continue
        # one factorization of the columns that do not read n, every product at once
        b = unit[np.ix_(rest, cols)]
        coef = np.linalg.lstsq(unit[np.ix_(rest, rest)], b, rcond=None)[0]
        residual = np.maximum(1.0 - np.einsum("ij,ij->j", b, coef), 0.0)
        small = np.flatnonzero(residual < 1e-6)
        if small.size:
            k = int(small[0])
            out[n] = (
                f"{n!r} (in {exog_names[cols[k]]!r}, whose part off the columns that do "
                f"not read {n!r} is about {np.sqrt(residual[k]):.2g} of its size)"
            )
    return out


def _column_moments(stats: FittedStatistics, exog_names: list[str]):
    """``(Σ w x, Σ w x², Σ w)`` of the fixed-effects columns in the statistics' units
    (scaled, unshifted: for a design without an intercept), from the column sums
    (:func:`constant_in_statistics`'s sources); None where the statistics hold none."""
    p = stats.glob.k_fe
    if stats.standardization is None or p != len(exog_names):
        return None
    found = _column_sums(stats)
    if found is None or not found[1] > 0:
        return None
    sums, weight = found
    return np.asarray(sums, dtype=np.float64), np.diag(stats.glob.xyxy)[:p], weight


def _column_sums(stats: FittedStatistics) -> tuple[np.ndarray, float] | None:
    """``(Σ w X, Σ w)`` of the fixed-effects columns in the statistics' (scaled,
    unshifted: a design without an intercept) units: the row of the random design's
    column of ones where it has one, else the sums the data pass keeps for this case
    (:attr:`GlobalStats.column_sums`); None where the statistics hold neither or have
    no fixed-effects column (see :func:`constant_in_statistics`)."""
    std = stats.standardization
    p = stats.glob.k_fe
    if std is None or p == 0:
        return None
    e = std.z_intercept
    if e >= 0:
        sums = stats.engine.re_sums(stats.layout.k_re)[e, :p]
        return sums, float(stats.engine.re_gram(stats.layout.k_re)[e, e])
    if stats.glob.column_sums is not None:
        return stats.glob.column_sums[:p], float(stats.glob.column_sums[-1])
    return None


def _far_by_sums(
    stats: FittedStatistics, exog_names: list[str], names: list[str]
) -> dict[str, str]:
    """Of the fixed-effects columns ``names`` (a design without an intercept, whose
    columns the statistics do not shift), those whose weighted mean lies more than 1e3
    weighted standard deviations from zero (:func:`far_columns`' test), described as
    :func:`far_columns` does.  The variance ``Σwx²/Σw − mean²`` loses about
    ``ε (mean/sd)²`` of itself, 2e-10 at the test's 1e3: enough to decide."""
    moments = _column_moments(stats, exog_names)
    std = stats.standardization
    if moments is None or std is None:
        return {}
    sums, squares, weight = moments
    out = {}
    for n in names:
        j = exog_names.index(n)
        mean = float(sums[j]) / weight
        sd = float(np.sqrt(max(float(squares[j]) / weight - mean * mean, 0.0)))
        scale = float(std.x_scale[j])
        if abs(mean) > 1e3 * sd:
            out[n] = f"{n!r} (values about {mean * scale:.3g}, spread about {sd * scale:.3g})"
    return out


#: A response whose mean is more than this many standard deviations from zero, not
#: shifted by the statistics, is named as the cause where the fit loses its digits
#: (:func:`far_response`): :func:`_far_by_sums`' test, for the response.
FAR_RESPONSE_ABOVE = 1e3


def far_response(
    stats: FittedStatistics, endog_name: str, formula: str | None = None
) -> str | None:
    """Where the statistics do not shift the response (a fixed-effects design without
    an intercept whose columns are not known to give one by construction: ``y ~ 0 +
    x``, :func:`~dmixed.design.centres.constant_weights`) and its weighted mean lies
    more than :data:`FAR_RESPONSE_ABOVE` weighted standard deviations from zero, a
    sentence naming that offset as what the float64 sums lose and how to fit without it
    (for a :class:`~dmixed.errors.StartError` or a PrecisionWarning; ``formula``, the
    model's fixed-effects formula where it has one, is named in it); None elsewhere,
    or where the statistics hold no column sums of the response
    (:func:`constant_in_statistics`' sources).

    The mean and spread come from ``Σ w y``, ``Σ w y²`` and ``Σ w``: the variance loses
    about ``ε (mean/sd)²`` of itself, 1e-10 at the threshold, enough to decide."""
    std = stats.standardization
    p = stats.glob.k_fe
    if std is None or std.y_shift != 0.0 or std.x_intercept >= 0:
        return None
    e = std.z_intercept
    if e >= 0:
        total = float(stats.engine.re_sums(stats.layout.k_re)[e, p])
        weight = float(stats.engine.re_gram(stats.layout.k_re)[e, e])
    elif stats.glob.column_sums is not None:
        total, weight = float(stats.glob.column_sums[p]), float(stats.glob.column_sums[-1])
    else:
        return None
    if not weight > 0:
        return None
    mean = total / weight
    sd = math.sqrt(max(float(stats.glob.xyxy[p, p]) / weight - mean * mean, 0.0))
    if not abs(mean) > FAR_RESPONSE_ABOVE * sd:
        return None
    mean, sd = mean * std.y_scale, sd * std.y_scale
    centre = exact_centre(mean, sd)
    return (
        f"the response {endog_name!r} lies far from zero next to its spread (values about "
        f"{mean:.3g}, spread about {sd:.3g}) in a fixed-effects formula without an "
        "intercept, where the statistics do not shift it (they shift it only where "
        "the formula's columns give one in every row by construction, such as a factor's "
        "indicators, C(c), or a full interaction of factors, C(a):C(b)): its offset is "
        f"what the float64 sums lose. Centre the response (e.g. {endog_name} - {centre!r}; "
        "the same model only where the fixed effects' columns give one in every row, else "
        "a model about another origin), or, where columns of "
        + (repr(formula) if formula else "the fixed-effects formula")
        + " sum to one in every row, add the intercept and drop one of them (the same "
        "model)"
    )


def _offset_by_sums(
    stats: FittedStatistics, exog_names: list[str], name: str
) -> tuple[float, float]:
    """The weighted mean and standard deviation of the fixed-effects column ``name``
    from its sums (a design without an intercept; ``(0, 0)`` where unknown)."""
    moments = _column_moments(stats, exog_names)
    std = stats.standardization
    if moments is None or std is None or name not in exog_names:
        return 0.0, 0.0
    sums, squares, weight = moments
    j = exog_names.index(name)
    mean = float(sums[j]) / weight
    sd = float(np.sqrt(max(float(squares[j]) / weight - mean * mean, 0.0)))
    return mean * float(std.x_scale[j]), sd * float(std.x_scale[j])


def _offset_by_products(
    stats: FittedStatistics, exog_names: list[str], name: str
) -> tuple[float, float]:
    """About the mean and standard deviation of ``name`` where the fixed effects read it
    only in products with levels' indicators (``C(c)[a]:ts``): over the rows the
    products read, ``Σ w t² / Σ w t = m + s²/m``, within ``s / 1e3`` of the mean ``m``
    of a column more than 1e3 spreads ``s`` from zero, from the products' sums and
    squares (``(0, 0)`` where a product has another factor or the sums are unknown)."""
    std = stats.standardization
    p = stats.glob.k_fe
    if std is None or p != len(exog_names) or std.x_basis.size:
        return 0.0, 0.0
    cols = [j for j, c in enumerate(exog_names) if name in _product_factors(c)]
    others = [f for j in cols for f in _product_factors(exog_names[j]) if f != name]
    if not cols or not all(f.endswith("]") for f in others):
        return 0.0, 0.0
    gram = np.asarray(stats.glob.xyxy, dtype=np.float64)[:p, :p]
    i = std.x_intercept
    if i >= 0:
        sums, weight = gram[i], float(gram[i, i])
    else:
        moments = _column_moments(stats, exog_names)
        if moments is None:
            return 0.0, 0.0
        sums, _, weight = moments
    c, s = std.model_x_shift()[cols], std.x_scale[cols]
    first = s * sums[cols] + c * weight
    second = s * s * np.diag(gram)[cols] + 2.0 * c * s * sums[cols] + c * c * weight
    total = float(first.sum())
    if not total:
        return 0.0, 0.0
    mean = float(second.sum()) / total
    # the spread: the rows' Σ w is not held; s²/m ≈ ratio − mean is below what float64
    # resolves here, so the centre is rounded only to the spacing at the mean
    return mean, 0.0


def _product_factors(name: str) -> list[str]:
    """The factors of the fixed-effects column ``name`` where it is a product
    (``"C(c)[T.b]:ts"`` → ``["C(c)[T.b]", "ts"]``), split at the ``:`` outside brackets,
    parentheses and quotes (a level ``"a:ts:b"`` inside ``[...]``, a ``Q("a:b")`` name,
    are not products); ``[]`` for a column that is not a product."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(name):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(depth - 1, 0)
        elif ch == ":" and depth == 0:
            parts.append(name[start:i])
            start = i + 1
    return [*parts, name[start:]] if parts else []


def _residual_ss(xyxy: np.ndarray, evals: np.ndarray, evecs: np.ndarray, d: np.ndarray) -> float:
    """``y'y − y'X(X'X)⁻¹X'y`` from ``[X y]'[X y]`` and the eigenvalues and eigenvectors
    ``V Λ V'`` of ``X'X`` scaled to unit diagonal by the column norms ``d`` (padded
    rows of ``V`` past the ``p`` columns are zero there): ``(X'X)⁻¹ = D⁻¹ V Λ⁻¹ V' D⁻¹``
    (``X`` of full rank, so every ``λ > 0``)."""
    p = d.shape[0]
    proj = (xyxy[:p, -1] / d) @ evecs[:p]
    return float(xyxy[-1, -1]) - float(proj @ (proj / evals))


def constant_in_statistics(stats: FittedStatistics) -> int | None:
    """statsmodels' ``k_constant`` of the fixed-effects design ``X`` (p columns, of full
    rank) from the statistics, with statsmodels' rule on rows
    (``ModelData._handle_constant``): 1 if a column is constant and not zero, or a
    column of ones lies in the span of the columns; else 0.  For ``X`` of full rank
    both say: 1 if and only if ``1 ∈ span(X)``.

    1 where ``X`` has its column of ones; else from the Gram matrix of ``[1 X]`` in the
    statistics' (scaled, unshifted: ``X`` has no intercept) columns, ``[[Σ w, s'], [s,
    X'WX]]``, dependent as :func:`check_full_rank` judges (prior weights ``w > 0`` leave
    the span as it is).  The column sums ``s = Σ w X`` are the row of the random
    design's column of ones (``Z_e``) where it has one (``Σ_i Z_ie'W X_i``,
    :meth:`~dmixed.engines.Engine.re_sums`, one round trip on a cluster unless the data
    pass brought the moment sums), else the sums the data pass keeps for this case
    (:attr:`GlobalStats.column_sums`): ``X'X`` alone cannot tell (``x1 + x2 = 1`` in
    every row, shares of a whole, looks like any two columns in it).  None where the
    statistics hold neither (saved before the column sums were, or drawn), or their
    columns are not known.
    """
    std = stats.standardization
    if std is None:
        return None
    if std.x_intercept >= 0:
        return 1
    found = _column_sums(stats)
    if found is None:
        return None
    sums, weight = found
    p = stats.glob.k_fe
    gram = np.block(
        [[np.array([[weight]]), sums[None, :]], [sums[:, None], stats.glob.xyxy[:p, :p]]]
    )
    d = np.sqrt(np.maximum(np.diag(gram), 0.0))
    if not np.all(d > 0):
        return None  # no rows, or a zero column (refused by the rank check)
    evals, _ = _unit_eigh(gram, d)
    return int(evals[0] < RANK_TOL * (p + 1))


def _some(names, shown: int = 10) -> str:
    """``['a', 'b']``, or the first ``shown`` names and the count of the others (a
    factor of thousands of levels makes thousands of columns)."""
    names = list(names)
    if len(names) <= shown:
        return str(names)
    return f"{str(names[:shown])[:-1]}, ... ({len(names)} in all)]"


def check_response_varies(xyxy: np.ndarray, name: str) -> None:
    """Refuse a response that the fixed effects fit exactly (e.g. a constant one).

    From ``[X y]'[X y]``: the OLS residual sum of squares ``y'y − y'X(X'X)⁻¹X'y``.
    """
    yy = float(xyxy[-1, -1])
    xx, xy = xyxy[:-1, :-1], xyxy[:-1, -1]
    rss = yy - float(xy @ np.linalg.solve(xx, xy)) if xx.size else yy
    _check_residual(rss, yy, name)


def _check_residual(rss: float, yy: float, name: str) -> None:
    """:func:`check_response_varies`'s refusal of a residual sum of squares ``rss`` of
    the response (``y'y = yy``) too small to be told from zero."""
    if not rss > 1e-12 * max(yy, TINY):
        err = DataError(
            f"the response {name!r} is constant or fitted exactly by the fixed effects: "
            "there is no residual variation to model"
        )
        # a caller holding the data tells a constant response apart (its own words)
        err.no_residual_variation = True  # type: ignore[attr-defined]
        raise err


#: The values of ``MixedLM.fit(check_nobs=...)``: refuse an unidentifiable model, or fit.
CHECK_NOBS_OPTIONS = ("raise", "ignore")


def check_identifiable(stats: FittedStatistics, group_name: str, vc_names: list[str]) -> None:
    """Refuse a model whose random effects cannot be told apart from the rest.

    lme4's default checks (``lmerControl``), decided from the group sizes and the
    variance-component slots alone (no data pass):

    - ``check.nlev.gtr.1``: a random effect needs more than one group;
    - ``check.nobs.vs.nlev``: some group must have more than one row (else each random
      effect is confounded with its row's residual);
    - ``check.nobs.vs.nRE``: more rows than random effects in each term, as lme4 counts
      them per term: ``n > q G`` for ``exog_re`` (G groups) and ``n > Σ_i c_il`` for each
      variance component l (``c_il`` the columns of l that group ``i`` uses).

    The first two concern ``exog_re`` (``q > 0``): with variance components only, one
    group holding all rows is statsmodels' way to fit crossed effects.

    Parameters
    ----------
    stats : FittedStatistics
    group_name : str
        The grouping column, named in the messages.
    vc_names : list of str
        The variance components' names (one per ``stats.vc_slot_cols``).

    Raises
    ------
    DataError
        Naming the check that failed and the counts; ``fit(check_nobs="ignore")`` fits
        anyway.
    """
    q = stats.layout.k_re
    n = int(stats.glob.n)
    n_groups = len(stats.group_sizes)
    anyway = 'pass check_nobs="ignore" (command line: --check-nobs ignore) to fit anyway'
    if q and n_groups <= 1:
        raise DataError(
            f"a single group ({group_name!r} has one level): the random-effects "
            "covariance cannot be estimated from one group, it is confounded with the fixed "
            f"effects (lme4: grouping factors must have > 1 sampled level); {anyway}"
        )
    if q and n <= n_groups:
        raise DataError(
            f"every group of {group_name!r} has one row ({n} rows, {n_groups} groups): the "
            "random effects are confounded with the residual (lme4: the number of levels "
            f"of each grouping factor must be < the number of observations); {anyway}"
        )
    terms = [(f"the random effects of {group_name!r}", q * n_groups)]
    terms += [
        (f"variance component {name!r}", int(np.count_nonzero(np.asarray(t) >= 0)))
        for name, t in zip(vc_names, stats.vc_slot_cols, strict=True)
    ]
    for term, n_re in terms:
        if n_re and n <= n_re:
            raise DataError(
                f"number of observations ({n}) <= number of random effects ({n_re}) of "
                f"{term}: the random-effects parameters and the residual "
                f"variance are probably unidentifiable (lme4's check.nobs.vs.nRE); {anyway}"
            )


def chan_correction(u_a: np.ndarray, f_a: np.ndarray, u_b: np.ndarray, f_b: np.ndarray):
    """What adding two parts of the same groups adds to their within-group
    cross-products: ``Σ_g U_a U_b/(U_a + U_b) (c_a − c_b)(c_a − c_b)'`` (k × k).

    ``U`` (G,) is each part's weight on the group's intercept column and ``F`` (G, k)
    its sums ``Σ z d``, so ``c = F/U`` is the part's mean; groups empty in either part
    add nothing (Chan, Golub and LeVeque 1983, pairwise).
    """
    ok = (u_a > 0) & (u_b > 0)
    ua, ub = u_a[ok], u_b[ok]
    delta = f_a[ok] / ua[:, None] - f_b[ok] / ub[:, None]
    out = (delta * (ua * ub / (ua + ub))[:, None]).T @ delta
    return 0.5 * (out + out.T)
