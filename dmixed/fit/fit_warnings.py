"""The warnings of a fit's outcome: no convergence, the boundary, limited precision."""

from __future__ import annotations

import math

import numpy as np

from ..errors import (
    BoundaryWarning,
    DataError,
    FitConvergenceWarning,
    PrecisionWarning,
    SpecError,
    warn,
)
from ..kernels import small_linalg
from ..kernels.conditionals import PlainRounding, PlainRoundingError
from ..stats import Layout
from .coordinates import is_diagonal
from .objective import (
    FACTOR_UNRESOLVED,
    factor_resolution,
    precision_shares,
    quadratic_form,
    resolution,
    resolution_verdict,
    scaled_condition,
)
from .summary import OptSummary

__all__ = [
    "NEAR_ONE",
    "PRECISION_WARN_ABOVE",
    "singular_psi_words",
    "warn_boundary",
    "warn_convergence",
    "cancellation",
    "plain_rounding_of",
    "warn_precision",
    "warn_reported_point",
    "warn_unresolved_start",
]


def warn_convergence(opt: OptSummary, layout: Layout | None = None) -> None:
    """A FitConvergenceWarning (to the caller of ``fit``) when ``opt`` did not converge
    (saying why where it stopped at the edge of the statistics' resolution, or on a
    face of the cone: a singular Ψ* where the step off it promises a rise).

    ``layout``: the fit's :class:`~dmixed.stats.Layout`, to read the ranks of the final
    and the start's Ψ* (``opt.packed`` and ``opt.initial``, packed as ``opt.use_sqrt``);
    without it the warning does not name them."""
    if opt.callback_stop:
        warn(
            f"the optimizer did not converge: the callback raised StopIteration at "
            f"iteration {opt.n_iter}, which ended the fit there (max |gradient of "
            f"llf/n| = {opt.grad_norm:.3g})",
            FitConvergenceWarning,
        )
    elif opt.resolution_edge:
        warn(
            "the optimizer did not converge: the likelihood still rises toward points "
            "where the float64 statistics do not resolve it (a residual variance so "
            "small that their rounding is as large as the residual sum of squares "
            "itself, the response linear in the covariates within the groups up to "
            "rounding; or X'V^-1 X singular to the rounding of its sums), so the optimum "
            "is beyond what the statistics resolve; the fit stopped at the edge of that "
            "region",
            FitConvergenceWarning,
        )
    elif not opt.converged and opt.final_rise > opt.converged_rise:
        ranks = _ranks(opt, layout)
        if ranks is not None and ranks[0] < ranks[2]:
            rank, start_rank, q = ranks
            start = (
                f"; the start's Psi* has rank {start_rank} of {q}: a start with a "
                "full-rank Psi* may reach the maximum"
                if start_rank < q
                else ""
            )
            # maxiter ended it (it left the polish at most one Newton step): the
            # promise is the step's
            if opt.n_iter + 1 >= opt.maxiter:
                message = (
                    f"the optimizer did not converge: maxiter ({opt.maxiter}) ended the "
                    f"iterations at a singular Psi* (rank {rank} of {q}), where a Newton "
                    f"step promises llf a rise of {opt.final_rise:.3g} (more than "
                    f"converged_rise = {opt.converged_rise:.3g}){start}"
                )
            else:
                message = (
                    f"the optimizer did not converge: the fit ended at a singular Psi* "
                    f"(rank {rank} of {q}), where a Newton step along the face of the cone "
                    f"of covariance matrices it lies on and into the cone promises llf a "
                    f"rise of {opt.final_rise:.3g} (more than converged_rise = "
                    f"{opt.converged_rise:.3g}): the maximum is not there{start}"
                )
        else:
            message = (
                f"the optimizer did not converge: a Newton step from the estimates "
                f"promises llf a rise of {opt.final_rise:.3g} (more than converged_rise "
                f"= {opt.converged_rise:.3g}) although max |gradient of llf/n| = "
                f"{opt.grad_norm:.3g}; the iterations stopped short of the maximum "
                "(maxiter, or a flat likelihood in these parameters' units)"
            )
        warn(message, FitConvergenceWarning)
    elif not opt.converged:
        warn(
            f"the optimizer did not converge: max |gradient of llf/n| = {opt.grad_norm:.3g}",
            FitConvergenceWarning,
        )


def _ranks(opt: OptSummary, layout: Layout | None) -> tuple[int, int, int] | None:
    """The ranks of Ψ* at ``opt.packed`` and at ``opt.initial`` (eigenvalues above
    ``opt.singular_eigenvalue``, as the fit counts a singular Ψ*) and its order q, or
    None without a ``layout`` or random effects."""
    if layout is None or layout.k_re == 0:
        return None
    out = []
    for packed in (opt.packed, opt.initial):
        psi = layout.unpack(packed, opt.use_sqrt)[0]
        out.append(int(np.count_nonzero(np.linalg.eigvalsh(psi) > opt.singular_eigenvalue)))
    return out[0], out[1], layout.k_re


def warn_boundary(model, opt: OptSummary, layout: Layout, psi: np.ndarray | None = None) -> None:
    """A BoundaryWarning naming the variances settled at zero (or a singular Ψ*).

    ``model`` provides ``use_sqrt`` (the packing of ``opt.packed``), ``exog_re_names``
    and ``vc_names``; ``psi``: Ψ of ``opt.packed`` (``layout.unpack``) where the caller
    has it."""
    if psi is None:
        psi, _ = layout.unpack(opt.packed, model.use_sqrt)
    bound = opt.singular_eigenvalue
    singular = layout.k_re > 0 and small_linalg.smallest_eigenvalue(psi, bound, math.inf) < bound
    if not (opt.boundary or singular):
        return
    which = layout.boundary_names(opt.boundary, model.exog_re_names, model.vc_names)
    zero_re = set()
    for label in opt.boundary:
        kind, i = layout.parse_boundary_label(label)
        if kind == "re":
            zero_re.add(i)
    parts = [f"zero variance: {', '.join(which)}"] if which else []
    if singular:
        parts.append(singular_psi_words(psi, bound, list(model.exog_re_names), zero_re))
    parts = [p for p in parts if p]
    detail = f" ({'; '.join(parts)})" if parts else ""
    warn(f"the MLE is on the boundary of the parameter space{detail}", BoundaryWarning)


def singular_psi_words(psi: np.ndarray, bound: float, names: list[str], zero: set[int]) -> str:
    """The words naming a singular Ψ: its rank, the random effects of the block, and
    the pairs of effects of non-zero variance whose own 2×2 block of Ψ is singular by
    the fit's rule (smallest eigenvalue under ``bound``), with their correlation: "near
    ±1" where it is within :data:`NEAR_ONE` of ±1, else "singular pair" (variances of
    very different sizes make a block singular at a moderate correlation); empty where
    the variances at zero (``zero``, or under ``bound``) are all its deficiency.

    Parameters
    ----------
    psi : ndarray (q, q)
        Ψ of the random effects.
    bound : float
        The fit's eigenvalue under which Ψ (or a block of it) is singular.
    names : list of str
        The random effects' names.
    zero : set of int
        The effects whose variance the fit reports at zero.

    Returns
    -------
    str
    """
    q = psi.shape[0]
    rank = int(np.count_nonzero(np.linalg.eigvalsh(psi) > bound))
    live = [i for i in range(q) if i not in zero and psi[i, i] >= bound]
    if rank >= len(live):  # the zero variances are all of it
        return ""
    text = f"singular Psi of the random effects {', '.join(names)}: rank {rank} of {q}"
    near: list[str] = []
    other: list[str] = []
    for a, i in enumerate(live):  # over the k_re effects: a few, whatever the data
        for j in live[a + 1 :]:
            block = psi[np.ix_([i, j], [i, j])]
            if np.linalg.eigvalsh(block)[0] < bound:
                corr = psi[i, j] / math.sqrt(psi[i, i] * psi[j, j])
                pair = f"{names[i]} and {names[j]} ({corr:+.4f})"
                (near if abs(corr) > 1 - NEAR_ONE else other).append(pair)
    if near:
        text += f"; correlation near ±1: {', '.join(near)}"
    if other:
        text += f"; singular pair: {', '.join(other)}"
    return text


#: A singular pair's correlation is worded "near ±1" within this of ±1
#: (:func:`singular_psi_words`).
NEAR_ONE = 1e-3


#: :class:`PrecisionWarning` when σ̂²'s relative rounding error may exceed this (ℓ is
#: then off by about f/2 times it; the optimizer itself rejects points where it exceeds
#: ``RESOLUTION_LIMIT``, and the optimum may lie beyond them).
PRECISION_WARN_ABOVE = 1e-7


#: What the precision warning of groups fitted from their uncentred sums says to do.
PLAIN_REMEDY = (
    "fit the rows (or save the statistics again with this dmixed, which keeps those "
    "groups' sums about their means), or centre the random-effects columns within groups"
)


def cancellation(ev, glob) -> float:
    """How many times smaller ``A = X'V*⁻¹X`` and ``Q`` are at the evaluation ``ev``
    than the totals ``[X y]'[X y]`` they are the remainder of.

    The largest of ``|[X y]'[X y]|_xx / A_xx`` over the fixed effects and
    ``|w|'|[X y]'[X y]||w| / Q`` (``w = [−β̂; 1]``).  A heavily weighted group whose
    fixed effects lie in its random design cancels in both (its mean part is most of the
    totals and almost none of ``A``): its conditional's rounding, a share of the totals,
    is then this many times larger relative to ``A`` and ``Q``
    (:func:`~dmixed.kernels.conditionals.heavy_bounds`).

    Parameters
    ----------
    ev : Evaluation
        The objective's evaluation at the reported point; its ``prof`` (``a`` (p, p),
        ``q``, ``w`` (k,)) is read.
    glob : GlobalStats
        The statistics' global sums (:class:`~dmixed.stats.statistics.GlobalStats`);
        ``xyxy`` (k, k) is read.

    Returns
    -------
    float
        The cancellation (≥ 0); 0 where ``ev`` has no profile, ``Q ≤ 0``, or the ratio
        is not finite.
    """
    prof = getattr(ev, "prof", None)
    if prof is None or not prof.q > 0:
        return 0.0
    xyxy = np.abs(glob.xyxy)
    w = np.abs(prof.w)
    out = float(w @ xyxy @ w) / prof.q
    p = prof.a.shape[0]
    if p:
        # the p ratios in floats (the same quotients as numpy's), NaN where any is NaN
        # as numpy's max gives it
        tops, diag = xyxy.diagonal()[:p].tolist(), prof.a.diagonal().tolist()
        ratios = [t / d if d > 0 else 0.0 for t, d in zip(tops, diag, strict=True)]
        out = max(out, math.nan if any(map(math.isnan, ratios)) else max(ratios))
    return out if math.isfinite(out) else 0.0


def plain_rounding_of(stats, ev=None) -> PlainRounding | None:
    """What the groups of ``stats`` (a ``FittedStatistics``) taking the plain forms may
    round the fit by, for :func:`warn_precision`: its engine's block's
    ``plain_rounding`` where the engine holds the block in this process (fits of loaded
    or merged statistics among them); None otherwise (on a cluster the groups near
    singular take the centred forms from their sums about their shifts).  Given the
    fit's evaluation ``ev``, the groups heavy enough for its :func:`cancellation` are
    charged too, whatever their determinant.

    Where some group's plain sums do not resolve its random design at all, a rounding
    whose ``logdet`` is infinite: no worst-case bound holds, and the precision check
    says so (the fit is made as before)."""
    block = getattr(stats.engine, "block", None)
    if block is None or not hasattr(block, "plain_rounding"):
        return None
    try:
        amplified = 0.0 if ev is None else cancellation(ev, stats.glob)
        return block.plain_rounding(np.asarray(stats.group_sizes), amplified)
    except PlainRoundingError:
        return PlainRounding.unbounded(stats.glob.xyxy.shape[0])


def rounded_up(x: float) -> str:
    """``x`` to two significant digits, rounded up (a bound printed never below
    itself)."""
    if not math.isfinite(x) or x <= 0:
        return f"{x:.2g}"
    e = math.floor(math.log10(x)) - 1
    return f"{math.ceil(x / 10.0**e * (1 - 1e-12)) * 10.0**e:.2g}"


def plain_llf_error(ev, glob, reml: bool, plain: PlainRounding) -> float:
    """A worst-case bound on what the plain sums' rounding (``plain``,
    :func:`~dmixed.kernels.conditionals.plain_rounding`) moves ℓ by at the evaluation
    ``ev`` (``w = [−β̂; 1]``): ``½ fac |δQ|/Q`` (exact in ``δQ``: σ̂² is the rounded
    ``Q``'s) plus ``½ Σ_i |δ log det K_i|`` and, for REML, ``½ |δ log det A|``
    (``A = X'V*⁻¹X``), with ``|δ(w'[X y]'V*⁻¹[X y]w)| ≤ w'Pw``, ``P = sizes +
    8γk diag(|[X y]'[X y]|)``: ℓ at the reported estimates, which is what the fit
    reports.  ``−P_x ≼ δA ≼ P_x``, so with ``ν_j`` the eigenvalues of
    ``A^{-1/2}P_xA^{-1/2}`` (``A``'s relative perturbation), ``|δ log det A| ≤
    −Σ_j log(1 − ν_j)`` (log det increasing in the Loewner order).  0 where nothing is
    charged; ``inf`` where no bound holds (a ``ν_j`` of 1 or more, or a group whose sums
    do not resolve its design): the fit is made, and the precision check says so.

    Raises
    ------
    DataError
        ``of_statistics`` set: where ``A`` at the estimate is not positive definite
        (nothing can be computed from these sums)."""
    if not np.count_nonzero(plain.sizes) and plain.logdet == 0.0:
        return 0.0
    if not plain.bounded:
        return math.inf
    k = plain.sizes.shape[0]
    # both parts positive semi-definite: |v'δv| ≤ v'Pv for every v
    sizes = plain.sizes + 8.0 * plain.gamma * k * np.diag(np.abs(np.diag(glob.xyxy)))
    w = ev.prof.w
    # ℓ at σ̂² = Q/fac, the true Q' in place of the rounded Q: ½ fac (Q'/Q − 1) exactly
    out = 0.5 * ev.prof.fac * abs(float(w @ sizes @ w)) / ev.prof.q
    out += 0.5 * plain.logdet
    if reml and ev.prof.a.size:
        mu, u = np.linalg.eigh(ev.prof.a)
        if not mu[0] > 0:
            err = DataError(
                "these statistics hold only the plain sums of a group whose random design "
                "is nearly singular within it, and X'V^-1 X at the estimate is not "
                "positive definite from them (its least eigenvalue is "
                f"{float(mu[0]):.2g}): no fit can be computed; {PLAIN_REMEDY}"
            )
            err.of_statistics = True
            raise err
        half = u / np.sqrt(mu)  # A^{-1/2} up to a rotation: the same ν_j
        nu = np.clip(np.linalg.eigvalsh(half.T @ sizes[:-1, :-1] @ half), 0.0, None)
        out += 0.5 * (float(-np.sum(np.log1p(-nu))) if nu[-1] < 1.0 else math.inf)
    return out


#: the cause both of a plain-sums warning's forms name (with and without a bound)
_SUMS_BEYOND_THE_FACTOR = (
    "some groups' sums may round the fit beyond what the factor's own check counts (a "
    "group whose random design is nearly singular within it, fitted from its uncentred "
    "sums where the statistics do not carry its sums about its mean, or a group weighing "
    "most of the data, so that X'V^-1 X and the residual sum of squares are a small "
    "remainder of its sums)"
)


def warn_precision(
    ev, glob, reml: bool, plain: PlainRounding | None = None, response: str | None = None
) -> None:
    """A PrecisionWarning when σ̂² at the evaluation ``ev`` may be resolved worse than
    :data:`PRECISION_WARN_ABOVE`: the sum of :func:`~dmixed.fit.objective.resolution`,
    :func:`~dmixed.fit.objective.statistics_resolution` and
    :func:`~dmixed.fit.objective.factor_error` (the criterion ``reml``), except where
    ``A``'s factor does not resolve ℓ at all (:func:`warn_unresolved_start` says so
    instead).

    ``plain`` (or None): what groups taking the plain forms may round the fit by
    (``StatsBlock.plain_rounding``: a random design nearly singular within a group,
    whose centred sums the statistics do not hold, as saved ones made before they
    could); :func:`plain_llf_error`'s worst-case bound on ℓ is added, as its share of
    ``½ fac``.  ``response`` (or None): a sentence naming the response's offset as
    the cause (:func:`~dmixed.stats.statistics.far_response`), added to the warning of
    a residual variance resolved poorly.

    Where the factor's share is the larger, the cause is a nearly singular
    ``X'V*⁻¹X`` (near-collinear fixed effects, or a heavily weighted group pinning a
    direction), not a small residual variance: the warning says so, with ``A``'s
    scaled condition, and states the llf's error as a bound.
    """
    if ev.prof is None or ev.step is None:
        return
    base, factor = precision_shares(ev.step, ev.prof, glob, reml)
    own = 0.0
    if plain is not None and ev.prof.q > 0:
        own = plain_llf_error(ev, glob, reml, plain) / (0.5 * ev.prof.fac)
    rel = base + factor + own
    if not rel > PRECISION_WARN_ABOVE:
        return
    llf_error = 0.5 * ev.prof.fac * rel
    if not math.isfinite(own):
        warn(
            f"{_SUMS_BEYOND_THE_FACTOR}: "
            "that rounding may be as large as what it rounds: "
            "no worst-case bound on the llf's error holds (the fit is made from those "
            f"sums as given); {PLAIN_REMEDY}",
            PrecisionWarning,
        )
        return
    if own > base and own > factor:
        warn(
            f"{_SUMS_BEYOND_THE_FACTOR}: "
            "the group's weight and conditioning make that rounding large: "
            f"the llf may be off by up to {rounded_up(llf_error)} "
            f"(a worst case), and σ̂² by up to {rounded_up(rel)} of itself; {PLAIN_REMEDY}",
            PrecisionWarning,
        )
        return
    if factor > base:
        warn(
            "the fixed effects' cross-product X'V^-1 X is nearly singular (condition "
            f"about {scaled_condition(ev.prof):.0e} after scaling its columns: fixed "
            "effects nearly collinear, or a heavily weighted group pinning a direction), "
            f"and its float64 factor carries rounding: the llf may be off by up to "
            f"{llf_error:.1g}, and σ̂² by up to {rel:.0e} of itself",
            PrecisionWarning,
        )
        return
    why = (
        "tiny next to the spread of the response"
        if response is None
        else "tiny next to the response's distance from zero"
    )
    warn(
        f"the residual variance is resolved only to about {rel:.0e} relative: it is "
        f"{why}, and the float64 statistics carry "
        f"rounding of that size (σ̂² may be off by about {rel:.0e} of itself, the "
        f"llf by about {llf_error:.1g})" + ("" if response is None else f"; {response}"),
        PrecisionWarning,
    )


def warn_unresolved_start(ev, glob, reml: bool) -> bool:
    """A PrecisionWarning when the fit reports its start (``ev``, the evaluation there)
    and ``X'V*⁻¹X``'s factor does not resolve ℓ there
    (:func:`~dmixed.fit.objective.resolution_verdict`): a start is accepted so
    (:func:`~dmixed.fit.objective.out_of_resolution`), every point the optimizer moves
    to is not, so the fit ends there only where it could not move.  Returns whether it
    warned."""
    if ev.prof is None or ev.step is None:
        return False
    if resolution_verdict(ev.step, ev.prof, glob, reml) != FACTOR_UNRESOLVED:
        return False
    share = resolution(ev.step, ev.prof, glob) + factor_resolution(ev.step, ev.prof, glob, reml)
    warn(
        "the fit ended at its start, where the float64 sums do not resolve the "
        "log-likelihood: X'V^-1 X is singular to the rounding of its sums (the fixed "
        "effects' columns nearly indistinguishable after the random effects, as at very "
        f"large or perfectly correlated variances), so the llf may be off by about "
        f"{0.5 * ev.prof.fac * share:.1g}; the optimizer accepted no point "
        "beyond it: give start_params where the variances are moderate, or centre the "
        "columns whose values are large next to their spread",
        PrecisionWarning,
    )
    return True


#: :func:`reported_gap` evaluates nothing where the reported Ψ* denotes the optimizer's
#: within this (:func:`relative_move`): in the optimizer's scale-free coordinates ℓ
#: moves by about ``n`` times the relative move of ``V*``, far below the fit's
#: precision threshold ``½ f`` :data:`PRECISION_WARN_ABOVE`; an evaluation there would
#: measure two points' rounding, not their difference.
REPORTED_MOVE_NEGLIGIBLE = 1e-10


def relative_move(psi: np.ndarray, here: np.ndarray) -> float:
    """``max_ij |psi_ij − here_ij| / r_ij``: how far ``psi`` lies from ``here``
    relative to ``here``'s variances, ``r_ij = √(here_ii here_jj)``, or ``here``'s
    largest variance where that is zero (a boundary fit's zero variance: a positive
    reference, not a division by zero); 0 where they are equal, ``inf`` where they
    differ and ``here`` has no positive variance, or where it is not finite."""
    diff = np.abs(np.asarray(psi, dtype=np.float64) - here)
    if not diff.any():
        return 0.0
    var = np.abs(np.diag(here))
    root = np.sqrt(var)
    scale = np.outer(root, root)
    largest = float(np.max(var)) if var.size else 0.0
    scale = np.where(scale > 0, scale, largest)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(diff > 0, diff / scale, 0.0)
    out = float(np.max(ratio))
    return out if math.isfinite(out) else math.inf


#: :func:`within_rounding` allows this many units of the reported numbers' last place
#: (each ``cov_re`` entry and ``σ²`` rounded once, their maps back a few roundings more)
REPORTED_ROUNDING_UNITS = 16


def within_rounding(psi_opt: np.ndarray, a: np.ndarray, cov_re, scale: float) -> np.ndarray:
    """``psi_opt`` (the point the reported numbers denote, :meth:`~dmixed.fit.
    coordinates.Coordinates.reported_point`) projected onto the positive semi-definite
    matrices where it is indefinite only by the reported numbers' own rounding;
    ``psi_opt`` itself where it is positive semi-definite.

    A boundary fit's Ψ (a correlation of ±1: rank-deficient) maps back to a ``cov_re``
    whose float64 entries, carried forth by ``A_o``, may denote a matrix with an
    eigenvalue just below zero: each entry's rounding, about ``ε |cov_re_ij| / σ²``,
    becomes ``ε (|A_o| |cov_re/σ²| |A_o|')_ij`` there.  Where the smallest eigenvalue is
    within :data:`REPORTED_ROUNDING_UNITS` times that bound's norm the reported numbers
    denote the projection (negative eigenvalues set to 0) as well as they denote
    anything, and ℓ is evaluated there.

    Raises ``np.linalg.LinAlgError`` where ``psi_opt`` is indefinite beyond that.
    """
    sym = (psi_opt + psi_opt.T) / 2
    w, v = np.linalg.eigh(sym)
    if w.size == 0 or w[0] >= 0:
        return psi_opt
    raw = np.abs(np.asarray(cov_re, dtype=np.float64)) / float(scale)
    abs_a = np.abs(np.asarray(a, dtype=np.float64))
    bound = np.finfo(np.float64).eps * np.linalg.norm(abs_a @ raw @ abs_a.T, 2)
    if not (math.isfinite(bound) and -w[0] <= REPORTED_ROUNDING_UNITS * bound):
        raise np.linalg.LinAlgError("the reported cov_re is not positive semi-definite")
    out = (v * np.maximum(w, 0.0)) @ v.T
    return (out + out.T) / 2


def reported_gap(
    obj, coords, layout: Layout, use_sqrt: bool, ev, packed, reported, llf_fit=None
) -> tuple[float, float]:
    """``(gap, noise)``: ``gap = ℓ(fit) − ℓ(reported)``, how far the likelihood at the
    reported estimates ``reported = (fe_params, cov_re, scale)`` (the model's units,
    float64) lies below the fit's llf (ℓ at the optimizer's point ``packed``, evaluation
    ``ev``); ``noise``, what the float64 statistics' rounding may move that difference
    by (the fit's precision bound ``½ f (shares)`` of
    :func:`~dmixed.fit.objective.precision_shares` at both points: two nearby points'
    ℓ differ by their rounding as well).  ``(0, 0)`` where they denote the optimizer's
    point exactly, ``(inf, 0)`` where the point they denote is outside the parameter
    space beyond the reported numbers' rounding (:func:`within_rounding`: an indefinite
    Ψ within it is evaluated at its projection) or ℓ is not defined there.

    The reported numbers are mapped into the optimizer's coordinates exactly
    (:meth:`~dmixed.fit.coordinates.Coordinates.reported_point`) and ℓ is evaluated there
    by the objective (``obj``: one engine step, no data pass), at the reported β and
    σ², not profiled: ``ℓ = ℓ_prof − ½[f log(σ²/σ̂²) + Q(β)/σ² − f]`` with ``σ̂² = Q̂/f``
    and ``Q(β)`` the residual quadratic form at the reported β (all in the statistics'
    coordinates, where ℓ̃ differs from ℓ by a constant).  Only where a random-effects
    column is shifted (``A_o`` not diagonal) can the reported Ψ* lose the point: else 0
    without an evaluation (the maps are diagonal, each entry one rounding).

    ``llf_fit``, the reported llf where it is not ``ev``'s (``fit_regularized``: ℓ at the
    penalized β, at the same covariance parameters); ``None`` for ``ev.llf``.
    """
    a = coords.a_opt
    if layout.k_re == 0 or is_diagonal(a):
        return 0.0, 0.0
    beta, cov_re, scale = reported
    psi_opt, scale_std, beta_std = coords.reported_point(cov_re, scale, beta)
    here_psi, tau = layout.unpack(packed, use_sqrt)
    if relative_move(psi_opt, here_psi) <= REPORTED_MOVE_NEGLIGIBLE:
        return 0.0, 0.0
    try:
        there = layout.pack(within_rounding(psi_opt, a, cov_re, scale), tau, use_sqrt)
    except (SpecError, np.linalg.LinAlgError):  # Ψ_o indefinite beyond its rounding
        return math.inf, 0.0
    other = obj.evaluate(there)
    prof = other.prof
    if prof is None or other.step is None or not (math.isfinite(other.llf) and scale_std > 0):
        return math.inf, 0.0
    q_beta = quadratic_form(other.step, obj.glob, beta_std)
    fac = prof.fac
    s2_hat = prof.q / fac
    llf = other.llf - 0.5 * (fac * math.log(scale_std / s2_hat) + q_beta / scale_std - fac)
    gap = float(ev.llf if llf_fit is None else llf_fit) - llf
    if not math.isfinite(gap):
        return math.inf, 0.0
    shares = sum(precision_shares(ev.step, ev.prof, obj.glob, obj.reml))
    shares += sum(precision_shares(other.step, prof, obj.glob, obj.reml))
    noise = 0.5 * fac * shares
    return gap, noise if math.isfinite(noise) else math.inf


#: the opening of :func:`warn_reported_point`'s message: a caller that refits internally
#: and shows no estimates of the refit (``anova``'s ML refits read only the llf) filters
#: on it (:data:`warnings.filterwarnings`' ``message`` is matched at the start)
REPORTED_POINT_WARNING = (
    "the reported estimates (fe_params, cov_re, scale) do not carry the fitted point"
)


def warn_reported_point(gap: float, noise: float, fac: float, columns, re_names) -> None:
    """A PrecisionWarning where the likelihood at the reported estimates lies more than
    ``½ f`` :data:`PRECISION_WARN_ABOVE` (the fit's precision warning's llf units) from
    the reported llf beyond the statistics' rounding (``|gap| − noise``,
    :func:`reported_gap`), naming each random-effects column far from zero (its offset
    and spread), the gap with its uncertainty, and the remedy, centring it.

    ``columns``: the fit's :class:`~dmixed.stats.standardize.Standardization`;
    ``re_names``: the model's ``exog_re`` names."""
    if not abs(gap) - noise > 0.5 * fac * PRECISION_WARN_ABOVE:
        return
    offsets = columns.model_z_shift()
    shifted = [j for j in range(offsets.shape[0]) if offsets[j] != 0.0]
    names = list(re_names)
    label = [names[j] if j < len(names) else f"column {j}" for j in shifted]
    shown = ", ".join(
        f"{lab!r} (values about {offsets[j]:.3g}, spread of order {columns.z_scale[j]:.3g})"
        for lab, j in zip(label, shifted, strict=True)
    )
    first = label[0] if label else "x"
    size = (
        "the point they denote is not a covariance matrix about the columns' centres, "
        "or the likelihood is not defined there"
        if not math.isfinite(gap)
        else f"the likelihood there is {rounded_up(abs(gap))} "
        f"{'below' if gap > 0 else 'above'} the reported llf"
        + (f" (give or take {rounded_up(noise)}, the statistics' rounding)" if noise > 0 else "")
    )
    warn(
        f"{REPORTED_POINT_WARNING} in float64: the random-effects column {shown} lies "
        "far from zero next to its spread, so cov_re's entries are about "
        "(offset/spread)^2 times the variances about the column's centre and nearly "
        "cancel there; the llf is the likelihood at "
        f"the fitted point, and {size} (evaluated in the centred coordinates at the "
        "numbers as reported, or at the nearest covariance matrix where they denote "
        "one only within their rounding). Centre the column in the data "
        f"({first} minus its mean) or, for a pandas DataFrame, write center({first}) in "
        "the formula and re_formula",
        PrecisionWarning,
    )
