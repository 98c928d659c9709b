"""Likelihood-based inference beyond Wald: profile likelihoods and likelihood-ratio tests.

Every profile evaluation is one engine step on the statistics that the fit already
built (in-process arrays, or persisted on the workers): no data pass.

Profile likelihood of a variance ``v`` (``cov_re[i, i]`` or ``vcomp[l]``, on the scale
the user reads), as lme4's ``profile``: with β profiled out but σ² free,

    ℓ(θ, σ²) = −½ Σ log|K_i| [− ½ log|A|] − (f/2) log σ² − Q/(2σ²) − (f/2) log 2π (+ ½ Σ log w)

(``f = n`` for ML, ``n − p`` for REML), maximized over σ² and all other covariance
parameters subject to ``v = σ² Ψ*_ii`` (or ``σ² τ*_l``).  To pin ``Ψ*_ii`` with one
coordinate, the random effects are permuted so that i comes first: ``Λ = P L̃`` with
``Ψ*_ii = L̃_00²``.

:func:`check_alpha` and :func:`check_level` are the one check of an interval's
``alpha`` (or ``level``), here and in every results method taking one.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from .errors import (
    NotNestedWarning,
    RefitWarning,
    SpecError,
    caller_stacklevel,
    warnings_dropped,
)
from .fit.coordinates import Coordinates
from .fit.fit_warnings import REPORTED_POINT_WARNING
from .fit.objective import loglike_at_scale, profile, score_matrices
from .fit.options import check_flag
from .stats import GlobalStats, Layout

__all__ = [
    "ANOVA_COLUMNS",
    "ProfileProblem",
    "ProfileLikelihood",
    "anova",
    "check_alpha",
    "check_level",
    "compare_lr_test",
]

logger = logging.getLogger("dmixed")

#: Columns of :func:`anova`'s table, as lme4's ``anova`` of merMod fits.
ANOVA_COLUMNS = ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)"]


def check_alpha(alpha) -> float:
    """``alpha`` as a float in (0, 1), else SpecError naming the argument (outside it
    the quantiles are ±inf or NaN: intervals of ±inf, or a root finder's failure, not
    an error)."""
    return _probability(alpha, "alpha")


def check_level(level) -> float:
    """``level`` (lme4's ``confint(level=)``, 1 − ``alpha``) as a float in (0, 1), else
    SpecError naming the argument."""
    return _probability(level, "level")


def _probability(value, name: str) -> float:
    """A real number strictly between 0 and 1; text (even ``"0.05"``), arrays, complex
    numbers and None are refused as statsmodels' arithmetic on them fails (a bare
    TypeError there)."""
    out = np.nan
    try:  # np.ndim of a ragged list raises; float() takes a numpy complex's real part
        if not isinstance(value, str | bytes) and np.ndim(value) == 0:
            if not np.iscomplexobj(value):
                out = float(value)
    except (TypeError, ValueError):
        pass
    if not 0.0 < out < 1.0:
        raise SpecError(f"{name} must be a number in (0, 1), got {value!r}")
    return out


@dataclass
class ProfileProblem:
    """−ℓ(θ, σ²) with one variance pinned, in the free coordinates of the sqrt packing.

    Parameters
    ----------
    engine : dmixed.engines.Engine
        Holds the fit's statistics (one engine step per evaluation, no data pass).
    glob : GlobalStats
    layout : Layout
    reml : bool
    kind : {"re", "vc"}
        A diagonal entry of ``cov_re`` or a variance component.
    index : int
        Which one (position in ``exog_re_names`` or ``vc_names``).

    The free vector is ``[packed without the pinned entry, log σ²]`` (see
    :meth:`unpack_point`), in the model's own coordinates; ``coords`` maps them to the
    statistics' (:mod:`dmixed.fit.coordinates`; default: the same).
    """

    engine: object
    glob: GlobalStats
    layout: Layout
    reml: bool
    kind: str  # "re" or "vc"
    index: int
    coords: Coordinates | None = None

    def __post_init__(self) -> None:
        q = self.layout.k_re
        perm = np.arange(q)
        if self.kind == "re":
            perm[[0, self.index]] = perm[[self.index, 0]]
        self.perm = perm
        self.rows, self.cols = self.layout.tril()
        # packed coordinates of the sqrt parametrization that stay free
        pinned = 0 if self.kind == "re" else self.layout.k_re2 + self.index
        self.free = np.ones(self.layout.n_params, dtype=bool)
        self.free[pinned] = False
        self.pinned = pinned

    def _lam(self, packed: np.ndarray) -> np.ndarray:
        lay = self.layout
        q = lay.k_re
        lam = lay.lam(packed, use_sqrt=True)
        if q:
            ltil = lam[:q, :q].copy()
            pmat = np.eye(q)[self.perm]
            lam[:q, :q] = pmat.T @ ltil  # Λ = P L̃ (rows of L̃ put back in model order)
        return lam

    def unpack_point(self, x: np.ndarray, value: float) -> tuple[np.ndarray, float]:
        """Free vector ``[packed without the pinned entry, log σ²]`` → (packed, σ²)."""
        sigma2 = float(np.exp(x[-1]))
        packed = np.empty(self.layout.n_params)
        packed[self.free] = x[:-1]
        packed[self.pinned] = np.sqrt(max(value, 0.0) / sigma2)
        return packed, sigma2

    def value_and_grad(self, x: np.ndarray, value: float) -> tuple[float, np.ndarray]:
        """−ℓ(θ, σ²) and its gradient in the free coordinates."""
        packed, sigma2 = self.unpack_point(x, value)
        lam = self._lam(packed)
        coords = self.coords
        re_map = None if coords is None else coords.re_map
        vc_map = None if coords is None else coords.vc_map
        q = self.layout.k_re
        lam_std = lam if coords is None else coords.to_statistics(lam)
        # σ² and ℓ in the statistics' coordinates, ℓ mapped back (a constant shift)
        sigma2_std = sigma2 if coords is None else sigma2 / coords.columns.sigma_scale**2
        step = self.engine.step(lam_std, q)
        prof = profile(step, self.glob, self.reml)
        fac = prof.fac
        llf = loglike_at_scale(step, prof, self.glob, self.reml, sigma2_std)
        if coords is not None:
            llf = coords.llf(llf, self.glob.n, self.reml)
        # ∂ℓ/∂B* at fixed σ²: the profiled score with fac/Q replaced by 1/σ²
        fixed = _with_inverse_scale(prof, 1.0 / sigma2_std)
        d_psi, d_tau = score_matrices(
            step, fixed, self.reml, self.layout.slot_component, self.layout.k_vc
        )
        if re_map is not None:
            d_psi = re_map.T @ d_psi @ re_map
        if vc_map is not None:  # τ̃ = f² τ: ∂ℓ/∂τ = f² ∂ℓ/∂τ̃
            d_tau = d_tau * vc_map**2
        grad = np.zeros(self.layout.n_params)
        if q:
            pmat = np.eye(q)[self.perm]
            d_til = pmat @ d_psi @ pmat.T  # D in the permuted coordinates
            ltil = pmat @ lam[:q, :q]
            g_l = 2.0 * d_til @ ltil
            grad[: self.layout.k_re2] = g_l[self.rows, self.cols]
        grad[self.layout.k_re2 :] = 2.0 * packed[self.layout.k_re2 :] * d_tau
        d_t = -0.5 * fac + prof.q / (2.0 * sigma2_std)
        # the pinned coordinate moves with σ²: c = sqrt(v) e^{−t/2}, dc/dt = −c/2
        d_t += grad[self.pinned] * (-0.5 * packed[self.pinned])
        g = np.append(grad[self.free], d_t)
        return -float(llf), -g


def _with_inverse_scale(prof, inv_scale: float):
    """A copy of ``prof`` whose ``fac / Q`` equals ``inv_scale`` (for score_matrices)."""
    return replace(prof, fac=inv_scale * prof.q)


class ProfileLikelihood:
    """Profile log-likelihood of one variance parameter of a fitted model.

    Parameters
    ----------
    results : MixedLMResults
        A fit made in this session (its statistics are reused; no data pass).
    which : str
        A random-effect name (``cov_re`` index, e.g. ``"Group"``) or a variance
        component name (``vcomp``).
    """

    def __init__(self, results, which: str) -> None:
        model = results.fitted_model
        if model is None:
            raise SpecError("profile likelihoods need the fitted model's statistics")
        if which in model.exog_re_names:
            kind, index = "re", model.exog_re_names.index(which)
            self.estimate = float(np.asarray(results.cov_re)[index, index])
        elif which in model.vc_names:
            kind, index = "vc", model.vc_names.index(which)
            self.estimate = float(results.vcomp[index])
        else:
            raise KeyError(
                f"{which!r} is neither a random effect {model.exog_re_names} "
                f"nor a variance component {model.vc_names}"
            )
        stats = model.statistics()
        self.name = which
        self.llf_max = results.llf
        self.problem = ProfileProblem(
            stats.engine,
            stats.glob,
            stats.fit_layout,
            results.reml,
            kind,
            index,
            # relative to σ²/s_w (the weights as summed): free of the weights' unit
            Coordinates.model(stats.columns.in_weights_unit(), stats.fit_layout),
        )
        # start from the MLE, in the permuted sqrt packing
        unit = stats.columns.weight_scale
        psi, tau = stats.layout.unpack(results.packed_params, results.use_sqrt)
        perm = self.problem.perm
        psi_p = psi[np.ix_(perm, perm)] * unit
        packed = stats.layout.pack(psi_p, tau * unit, use_sqrt=True)
        self.start = np.append(packed[self.problem.free], np.log(results.scale / unit))

    def __call__(self, value: float) -> float:
        """max ℓ subject to the variance being ``value`` (≥ 0)."""
        from scipy import optimize  # here: dmixed imports without scipy

        if value < 0:
            raise SpecError(f"a variance cannot be negative: {value}")
        res = optimize.minimize(
            self.problem.value_and_grad,
            self.start,
            args=(value,),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": 500, "gtol": 1e-9, "ftol": 1e-14},
        )
        return -float(res.fun)

    def curve(self, values) -> pd.DataFrame:
        """Profile log-likelihood at each value: columns ``value``, ``llf``, ``deviance``."""
        values = np.asarray(values, dtype=np.float64)
        llf = np.array([self(v) for v in values])
        return pd.DataFrame({"value": values, "llf": llf, "deviance": 2.0 * (self.llf_max - llf)})

    def interval(self, alpha: float = 0.05) -> tuple[float, float]:
        """Likelihood-ratio interval: ``{v : 2(ℓ̂ − ℓ_prof(v)) ≤ χ²₁(1 − α)}``.

        The lower end is 0 when the profile at v = 0 is still inside (as for a
        variance whose estimate is at or near the boundary).

        Raises
        ------
        SpecError
            ``alpha`` not a number in (0, 1).
        """
        from scipy import optimize, special

        crit = special.chdtri(1, check_alpha(alpha))  # χ²₁ quantile at 1 − α
        est = max(self.estimate, 0.0)

        def excess(v: float) -> float:
            return 2.0 * (self.llf_max - self(v)) - crit

        if excess(0.0) <= 0:
            lower = 0.0
        else:
            lower = optimize.brentq(excess, 0.0, est, xtol=1e-10 * max(est, 1e-300), rtol=1e-8)
        hi = max(est, 1e-8) * 2.0
        for _ in range(60):
            if excess(hi) > 0:
                break
            hi *= 2.0
        else:
            return lower, float("inf")
        upper = optimize.brentq(excess, est, hi, xtol=1e-10 * hi, rtol=1e-8)
        return float(lower), float(upper)


def compare_lr_test(restricted, full) -> tuple[float, float, int]:
    """Likelihood-ratio test of a restricted fit against a larger fit of the same data.

    Returns ``(lr_stat, p_value, df_diff)`` with ``lr_stat = 2(llf_full − llf_restricted)``
    referred to χ² with ``df_diff`` degrees of freedom (the difference in the number of
    parameters estimated: those a fit held by ``free`` are not counted).  Under REML
    the two fits must have the same fixed effects (REML likelihoods of different mean
    structures are not comparable).  When the restriction sets a variance to zero (a
    boundary), the χ² reference is conservative (the exact reference is a χ² mixture;
    halving the p-value for one variance is the usual correction).

    Raises
    ------
    SpecError
        An argument that is not fitted results (named by its position, as
        :func:`anova` names it); fits of different data (``nobs``; group keys and
        sizes; for data in memory, a digest of the response, group keys and weights
        among fits grouped alike; between fits grouping the rows by different columns,
        the response, weights and shared fixed-effects columns row by row and each
        fit's grouping among the other's groupings and variance components, so that
        a reordered data frame is refused too, as are such fits of data not in memory
        and array fits grouped by different arrays, which all name their grouping
        ``'Group'``), responses (``names.endog_name``) or methods; REML fits with
        different fixed effects; a full model without more parameters (the arguments
        swapped: said so, with the order expected).  Models built from arrays all name
        their response ``'y'`` (a pandas Series its own name), so the response check
        cannot tell two array responses apart: that they are the same is the caller's
        to know.

    Warns
    -----
    NotNestedWarning
        The larger model's log-likelihood is below the smaller one's by more than
        :data:`LR_NEGATIVE_TOL` ``× (1 + |ℓ|)`` (not nested, or not the same data): the
        statistic is reported as 0.  A nested pair whose extra variance is estimated
        at 0 differs by rounding only and is not warned.
    """
    from scipy import special

    _check_fits("compare_lr_test", (restricted, full))
    if restricted.nobs != full.nobs:
        raise SpecError(f"the fits use different data: nobs {restricted.nobs} vs {full.nobs}")
    _check_same_response((restricted, full), ("restricted", "full"))
    _check_same_rows((restricted, full), ("restricted", "full"))
    if restricted.reml != full.reml:
        raise SpecError("both fits must use the same method (REML or ML)")
    if full.reml and list(restricted.names.exog_names) != list(full.names.exog_names):
        raise SpecError(
            "REML likelihoods of models with different fixed effects are not comparable; "
            "refit both with reml=False"
        )
    df = len(full.params) - _n_held(full) - (len(restricted.params) - _n_held(restricted))
    if df < 0:
        raise SpecError(
            f"the arguments look swapped: the restricted fit has {-df} more "
            "parameters than the full one; the order is compare_lr_test(restricted, "
            "full), the smaller model first, or full.compare_lr_test(restricted) "
            "(statsmodels' method form); anova() sorts the fits itself"
        )
    if df == 0:
        raise SpecError(
            "the full model must have more parameters than the restricted one (both "
            "estimate the same number): models with as many parameters are not nested"
        )
    stat = max(_lr_statistic(full.llf - restricted.llf, full.llf, "the full fit"), 0.0)
    return float(stat), float(special.chdtrc(df, stat)), int(df)  # χ²_df tail


def _check_same_response(fits, labels) -> None:
    """Refuse fits of different responses (``names.endog_name``: the response as its
    formula writes it, e.g. ``np.log(Reaction)``): their likelihoods are densities of
    different variables, so a difference of them is no likelihood ratio.  Compared by
    name, the one record of the response that in-process, Dask and loaded results
    all hold; the same response written two ways (``y`` and ``I(y)``) is refused too.
    Models built from arrays all name their response ``'y'`` (a named pandas Series
    excepted), so two different array responses pass this check unseen."""
    responses = [str(f.names.endog_name) for f in fits]
    if len(set(responses)) > 1:
        shown = ", ".join(f"{label}: {r!r}" for label, r in zip(labels, responses, strict=True))
        raise SpecError(
            f"the fits model different responses ({shown}): likelihoods of different "
            "responses are not comparable, so no likelihood-ratio test exists between "
            "them; fit every model to the same response (the same left-hand side)"
        )


#: Δℓ = ℓ_larger − ℓ_smaller below −(this × (1 + |ℓ_larger|)) is warned: the optimizers
#: stop on a relative change of ℓ, so a nested pair's Δℓ may fall below 0 by rounding
#: in proportion to |ℓ| (a boundary fit, whose extra variance is at 0, has Δℓ a rounding
#: of 0 either side); 1e-6 is far above that rounding and far below any real misfit
LR_NEGATIVE_TOL = 1e-6


def _lr_statistic(dll: float, llf_larger: float, larger: str) -> float:
    """``2·dll`` (the larger model's ℓ, ``llf_larger``, minus the smaller's), with a
    :class:`~dmixed.errors.NotNestedWarning` where ``dll`` is below
    ``−LR_NEGATIVE_TOL·(1 + |llf_larger|)`` (then clipped to 0 by the caller, as lme4):
    the larger model fits worse, so the fits are not nested or not of the same data."""
    stat = 2.0 * float(dll)
    if float(dll) < -LR_NEGATIVE_TOL * (1.0 + abs(float(llf_larger))):
        warnings.warn(
            f"the likelihood-ratio statistic is {stat:.6g} < 0: {larger} has the lower "
            "log-likelihood although it has more parameters, so the models are not "
            "nested or not fitted to the same data; the statistic is reported as 0",
            NotNestedWarning,
            stacklevel=caller_stacklevel(),
        )
    return stat


def _check_same_rows(fits, labels) -> None:
    """Refuse fits of different rows with the same count and response name.

    The fits are put in sets that group the rows alike (the same group keys and sizes,
    held by every fit, loaded ones too).  Within a set, fits are compared, where all
    hold it, by the digest of their response, group keys and weights
    (:func:`~dmixed.results.fit_record.data_digest`: data in memory).  Between sets,
    fits grouped by one column (``names.group_name``) into other groups are of other
    rows; fits grouped by different columns (``groups="subj"`` and ``groups="one"``
    with variance components, of one data frame) are compared by their response,
    weights and the fixed-effects design columns both name, each in row order, and
    each fit's grouping must split the rows as the other fit's grouping or one of its
    variance components does (:func:`~dmixed.results.fit_record.row_digests`), so
    that a reordered data frame is refused too; where a fit holds none (data not in
    memory, results saved before they were recorded) such fits are refused, as their
    rows cannot be compared.  Fits
    built from arrays all name their grouping ``'Group'``: array fits grouped by
    different arrays are refused as other groups."""

    def refuse(what: str, shown: list[str], who=labels) -> None:
        pairs = ", ".join(f"{label}: {v}" for label, v in zip(who, shown, strict=True))
        raise SpecError(
            f"the fits use different data ({what}: {pairs}): a likelihood ratio compares "
            "fits of the same rows; fit every model to the same data frame"
        )

    def group_name(f) -> str | None:
        return getattr(getattr(f, "names", None), "group_name", None)

    def grouping(f, state) -> str:
        sizes = np.asarray(state.group_sizes)[:5].tolist()
        more = "…" if len(state.group_sizes) > 5 else ""
        name = group_name(f)
        by = "" if name is None else f"groups {name!r}, "
        n = len(state.group_labels)
        return f"{by}{n} group{'' if n == 1 else 's'}, sizes {sizes}{more}"

    def alike(s, t) -> bool:
        return np.array_equal(np.asarray(s.group_sizes), np.asarray(t.group_sizes)) and (
            np.array_equal(
                np.asarray(s.group_labels, dtype=object), np.asarray(t.group_labels, dtype=object)
            )
        )

    states = [f.to_state() if hasattr(f, "to_state") else None for f in fits]
    sets: list[list[int]] = []  # indices of the fits that group the rows alike
    if any(s is None for s in states):
        sets = [list(range(len(fits)))]
    else:
        for i, s in enumerate(states):
            for members in sets:
                if alike(s, states[members[0]]):
                    members.append(i)
                    break
            else:
                sets.append([i])
    for members in sets:
        _check_same_digest([fits[i] for i in members], [labels[i] for i in members], refuse)
    for k, first in enumerate(sets):
        for second in sets[k + 1 :]:
            i, j = first[0], second[0]
            pair = [labels[i], labels[j]]
            shown = [grouping(fits[i], states[i]), grouping(fits[j], states[j])]
            if group_name(fits[i]) == group_name(fits[j]):  # one column, other groups
                refuse("other groups or group sizes", shown, pair)
            for m in first + second:  # every fit of both sets, against the other set's
                other = j if m in first else i
                shown = [grouping(fits[m], states[m]), grouping(fits[other], states[other])]
                _check_row_digests(fits[m], fits[other], [labels[m], labels[other]], shown, refuse)


def _check_same_digest(fits, labels, refuse) -> None:
    """Refuse fits grouped alike whose :attr:`data_digest` differ (all held)."""
    digests = [getattr(f, "data_digest", None) for f in fits]
    if all(d is not None for d in digests) and len(set(digests)) > 1:
        what = "other response values or weights"
        rows = [getattr(f, "row_digests", None) or {} for f in fits]
        same_y = len({(r.get("y"), r.get("w")) for r in rows}) == 1 and rows[0].get("y")
        if same_y:
            what = (
                "other response values by group: the same values and weights in the "
                "same row order, paired with other group keys"
            )
        refuse(f"{what}; row digests", [d[:12] for d in digests], labels)


def _check_row_digests(f, g, pair: list[str], shown: list[str], refuse) -> None:
    """Refuse two fits grouped by different columns (labelled ``pair``, their groupings
    ``shown``) unless their response, weights and the fixed-effects design columns both
    name agree row by row and each one's grouping splits the rows as a grouping or a
    variance component of the other does (``row_digests``)."""
    rows = [getattr(f, "row_digests", None), getattr(g, "row_digests", None)]
    if any(r is None for r in rows):
        refuse(
            "the fits group the rows differently and their rows cannot be compared "
            "(data not in memory, or results saved without the digests of their rows); "
            "groupings",
            shown,
            pair,
        )
    a, b = rows
    # the data columns: the response, the weights and the fixed-effects columns both
    # fits name ("x:" keys); the groupings ("g") and components ("p:") are compared below
    names = {"y", "w"} | {n for n in set(a) & set(b) if n.startswith("x:")}
    differ = sorted((n for n in names if a.get(n) != b.get(n)), key=lambda n: (len(n) > 1, n))
    what = [{"y": "the response", "w": "the weights"}.get(n, f"column {n[2:]!r}") for n in differ]
    # one fit's grouping must split the rows as the other's grouping or one of its
    # components does (lme4's (1|subj) against (1|site/subj) written with groups="site":
    # the smaller model's groups are the larger one's subj component); the other fit's
    # grouping is its own model's choice
    found = [
        "g" in mine and mine["g"] in {v for k, v in theirs.items() if k[:2] in ("g", "p:")}
        for mine, theirs in ((a, b), (b, a))
    ]
    if not any(found):
        what.append(
            f"the rows that share a group of {pair[0]} are no grouping or component of "
            f"{pair[1]}, nor the other way round"
        )
    if what:
        refuse(
            f"other data row by row ({'; '.join(what)}), and the rows grouped "
            "differently; fits grouped by different columns are compared in the data "
            "frame's row order, so a reordered frame is refused too; groupings",
            shown,
            pair,
        )


def _check_fits(test: str, fits) -> None:
    """Refuse an argument of ``test`` that is not fitted results, naming its position
    and type (a bare AttributeError on ``.nobs`` otherwise)."""
    for i, f in enumerate(fits):
        if not all(hasattr(f, a) for a in ("nobs", "llf", "params", "reml")):
            raise SpecError(
                f"{test} compares fitted results; argument {i + 1} is a {type(f).__name__}"
            )
        state = f.to_state() if hasattr(f, "to_state") else None
        if state is not None:
            state.check_unpenalized(f"{test} (argument {i + 1})")


def anova(*fits, names=None, refit: bool | None = None) -> pd.DataFrame:
    """Likelihood-ratio tests of nested fits of the same data, as lme4's ``anova``.

    The fits are sorted by their number of parameters ``npar`` (fixed effects,
    covariance parameters and σ, as lme4 counts them), and each is tested against the
    one before it: ``Chisq = max(0, 2(ℓ_k − ℓ_{k−1}))`` on ``Df = npar_k − npar_{k−1}``
    degrees of freedom, ``Pr(>Chisq)`` its upper χ² tail (NaN where ``Df ≤ 0``).
    ``AIC = −2ℓ + 2 npar``, ``BIC = −2ℓ + npar · log(nobs)``, ``deviance = −2ℓ``.
    As lme4, REML fits are refitted by maximum likelihood first (``refit`` None or True; from
    the statistics the model already holds: no data pass, with the fit's own options:
    ``free``, ``start_params``, ``method``, ...), since REML likelihoods of different
    mean structures are not comparable.  A covariance parameter held fixed by ``free``
    is not counted in ``npar``.  A variance restricted to zero sits
    on the boundary, where the χ² reference is conservative.

    Parameters
    ----------
    *fits : MixedLMResults
        Two or more fits of the same rows.
    names : list of str, optional
        Row labels, in the order of ``fits`` (default ``"model1"``, ``"model2"``, ...).
    refit : bool or None
        Refit REML fits by ML (lme4's default); False compares them as they are, which
        needs the same fixed effects in every fit.  None (default) refits as True and
        warns (:class:`~dmixed.errors.RefitWarning`, naming the fits refitted) where a
        fit was by REML, as lme4 says "refitting model(s) with ML (instead of REML)";
        True refits silently.

    Returns
    -------
    DataFrame (len(fits), 8)
        Columns :data:`ANOVA_COLUMNS`, rows in increasing ``npar``.

    Raises
    ------
    SpecError
        Fewer than two fits; an argument that is not fitted results; fits of different
        data (``nobs``; group keys and sizes; for data in memory, a digest of the
        response, group keys and weights within each set of fits grouped alike; between
        sets grouping the rows by different columns, the response, weights and shared
        fixed-effects columns row by row and each fit's grouping among the other's
        groupings and variance components, so that a reordered data frame is refused
        too, as are such fits of data not in memory and array fits grouped by
        different arrays, which all name their grouping ``'Group'``) or responses
        (``names.endog_name``);
        ``names`` of the wrong length; a REML fit to refit whose model is not at hand
        (loaded results); REML fits with different fixed effects and
        ``refit=False``; ML and REML mixed with ``refit=False``; ``refit`` not a Python
        or numpy bool.  Models built from arrays all name their response ``'y'``: the
        response check cannot tell two array responses apart.

    Warns
    -----
    NotNestedWarning
        The larger model's log-likelihood is below the smaller one's by more than
        :data:`LR_NEGATIVE_TOL` ``× (1 + |ℓ|)`` (not nested, or not the same data): the
        statistic is reported as 0.  A nested pair whose extra variance is estimated
        at 0 differs by rounding only and is not warned.
    RefitWarning
        ``refit`` not given and REML fits among ``fits``: they were refitted by ML.
    """
    from scipy import special

    if len(fits) < 2:
        raise SpecError(f"anova compares two or more fits, got {len(fits)}")
    _check_fits("anova", fits)
    labels = [f"model{i + 1}" for i in range(len(fits))] if names is None else list(names)
    if len(labels) != len(fits):
        raise SpecError(f"names has {len(labels)} entries for {len(fits)} fits")
    nobs = {f.nobs for f in fits}
    if len(nobs) > 1:
        raise SpecError(f"the fits use different data: nobs {sorted(nobs)}")
    _check_same_response(fits, labels)
    _check_same_rows(fits, labels)
    said, given = refit is not None, fits
    refit = check_flag(True if refit is None else refit, "refit")
    fits = tuple(_by_ml(f, label) if refit else f for f, label in zip(fits, labels, strict=True))
    reml_labels = [label for f, label in zip(given, labels, strict=True) if f.reml]
    if refit and not said and reml_labels:  # after the refits: a refused one says why
        warnings.warn(
            f"refitting model(s) with ML (instead of REML): {', '.join(reml_labels)}; "
            "anova compares ML likelihoods (refit=True says so and silences this, "
            "refit=False compares REML fits of the same fixed effects as they are)",
            RefitWarning,
            stacklevel=caller_stacklevel(),
        )
    if not refit:
        _check_comparable(fits)
    n = fits[0].nobs
    npar = np.array([len(f.params) + 1 - _n_held(f) for f in fits])
    llf = np.array([f.llf for f in fits], dtype=np.float64)
    order = np.argsort(npar, kind="stable")
    npar, llf = npar[order], llf[order]
    names_in_order = [labels[i] for i in order]
    raw = [_lr_statistic(d, llf[j + 1], names_in_order[j + 1]) for j, d in enumerate(np.diff(llf))]
    chisq = np.r_[np.nan, np.maximum(raw, 0.0)]
    df = np.r_[np.nan, np.diff(npar)].astype(np.float64)
    with np.errstate(invalid="ignore"):
        p = np.where(df > 0, special.chdtrc(np.where(df > 0, df, 1.0), chisq), np.nan)
    table = pd.DataFrame(
        {
            "npar": npar,
            "AIC": -2.0 * llf + 2.0 * npar,
            "BIC": -2.0 * llf + npar * np.log(n),
            "logLik": llf,
            "deviance": -2.0 * llf,
            "Chisq": chisq,
            "Df": df,
            "Pr(>Chisq)": p,
        },
        index=pd.Index([labels[i] for i in order]),
    )
    return table


def _by_ml(fit, label: str):
    """``fit`` itself if by ML, else refitted by ML from its model's statistics."""
    if not fit.reml:
        return fit
    if fit.fitted_model is None:
        raise SpecError(
            f"{label} was fitted by REML and its model is not at hand (loaded results) to "
            "refit it by ML: pass ML fits, or refit=False for fits with the same fixed effects"
        )
    logger.info("refitting %s with ML (instead of REML)", label)
    model = fit.fitted_model
    criterion = model.reml  # a fit sets the model's criterion; this one is anova's own
    # the fit's own options (free, start_params, method, ...), on the client whose
    # statistics the model holds; anova reads the likelihood only
    options = {**getattr(fit, "fit_options", {}), "skip_hessian": True}
    client = model.cached_client
    if getattr(client, "status", "running") in ("closing", "closed"):
        client = None  # its statistics are gone with it: a new data pass, as a fit does
    try:
        # the refit's estimates are never shown, its llf is exact: the user's own fit
        # already said whether its reported estimates carry its point (dropped in this
        # thread only: a Dask refit's tasks run in other threads meanwhile)
        with warnings_dropped(REPORTED_POINT_WARNING):
            return model.fit(reml=False, client=client, **options)
    finally:
        model.reml = criterion


def _n_held(fit) -> int:
    """The covariance parameters a fit held at their start (``free`` zeros)."""
    held = getattr(fit, "held", None)  # the results' own reading of `free`
    return 0 if held is None else int(np.count_nonzero(held))


def _check_comparable(fits) -> None:
    methods = {f.reml for f in fits}
    if len(methods) > 1:
        raise SpecError("with refit=False every fit must use the same method (REML or ML)")
    if fits[0].reml and len({tuple(f.names.exog_names) for f in fits}) > 1:
        raise SpecError(
            "REML likelihoods of models with different fixed effects are not comparable; "
            "use refit=True (lme4's default) or fit them with reml=False"
        )
