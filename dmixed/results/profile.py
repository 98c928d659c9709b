"""Profile-likelihood confidence intervals as lme4's ``confint(method = "profile")``, from
the statistics a fit already holds (statsmodels' ``profile_re``: :mod:`.profile_re`).

lme4 (``profile.merMod``, ``devfun2``) profiles the ML deviance (a REML fit is refitted
by ML first) in the parametrization of :mod:`dmixed.results.sdcor`: the SDs and
correlations of the random effects (``.sig01``, …), σ (``.sigma``) and β.  For each
parameter ``x`` of ``z``::

    ζ(x) = sign(x − x̂) √(2(ℓ̂ − max_{z: z_k = x} ℓ(z))),

and the interval at ``level`` is where ζ crosses ``∓Φ⁻¹((1 + level)/2)``.  lme4 samples ζ
on a grid and interpolates a spline; here each endpoint is a root of ζ found by a
safeguarded secant (Illinois) in a coordinate where ζ is nearly linear (log SD, log σ,
atanh ρ, β), started from the Wald endpoint, and each ζ(x) is a Newton maximization
warm-started on the tangent of the profile trace (``dz/dx = −H_FF⁻¹H_Fk`` at the nearest
point already computed).  An SD whose profile stays inside the cut-off down to 0 has
lower limit 0, a correlation that stays inside up to ±1 has limit ±1 (as lme4).  Every
evaluation is one engine step and one Hessian pass on the statistics: no data pass.

A fit with ``free`` holding covariances at 0 (e.g. independent random intercept and
slope) is profiled as that model: those correlations stay at 0 in the ML estimates and at
every profile point, and get no interval (NaN limits, their rows kept so that the
``.sigNN`` names are those of the unconstrained model; lme4 has no such row, the
parameter not being in its model).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from ..errors import ProfileWarning, SpecError, caller_stacklevel
from ..fit.likelihood import Likelihood
from ..inference import check_alpha, check_level
from .bootstrap import parametric_bootstrap
from .sdcor import SdCorLikelihood, SdCorPoint, sdcor_names, sdcor_values
from .simulate import check_nsim
from .varcorr import held_correlations, term_levels

__all__ = [
    "ProfileIntervals",
    "boot_intervals",
    "confint_frame",
    "percent_labels",
    "select_parameters",
    "variance_intervals",
]

#: |ζ − target| below which the endpoint is the Newton point ``x − (ζ − target)/ζ'``
#: without a further profile (its error is of the order of this squared)
ZETA_TOL = 1e-3

#: the smallest eigenvalue of Ψ's correlation matrix below which the ML optimum is
#: also sought over a factor of the correlations (:meth:`ProfileIntervals._off_cone`)
CORRELATION_EIG_TOL = 1e-6

#: an SD (relative to σ) below which the factor's maximum is taken to be on 0
SD_ZERO = 1e-7
#: profile points per endpoint before giving up (NaN)
MAX_STEPS = 60


def percent_labels(level: float) -> list[str]:
    """lme4's column names (``format.perc``): ``["2.5 %", "97.5 %"]`` for 0.95.

    As R's ``format(100 * probs, digits=3)``: each percentage to 3 significant digits,
    both with the decimals the one needing most has (``["0.05 %", "99.95 %"]`` for 0.999,
    not ``"100 %"``)."""
    a = (1.0 - level) / 2.0
    percents = [100 * a, 100 * (1 - a)]
    decimals = max(_r_decimals(p, 3) for p in percents)
    return [f"{p:.{decimals}f} %" for p in percents]


def _r_decimals(value: float, digits: int) -> int:
    """The decimals R shows ``value`` with at ``digits`` significant digits (trailing
    zeros dropped), capped at 15."""
    rounded = float(f"{value:.{digits}g}")
    return next((d for d in range(16) if round(rounded, d) == rounded), 15)


class ProfileIntervals:
    """The profile likelihood of every parameter of a fit in lme4's parametrization.

    Parameters
    ----------
    results : MixedLMResults
        A fit made in this session (its model's statistics are reused; no data pass).

    Attributes
    ----------
    names : list of str
        lme4's names: ``.sig01`` …, ``.sigma``, then the fixed effects.
    estimate : ndarray
        The ML estimates in that order (for a REML fit, those of the ML refit).
    llf : float
        The ML log-likelihood at the estimates.

    Raises
    ------
    SpecError
        Results without their model (loaded from disk); a fit with ``free`` holding a
        variance or a covariance other than 0 (only a correlation held at 0 is a
        constraint these coordinates keep whatever σ).
    """

    def __init__(self, results) -> None:
        model = results.fitted_model
        if model is None:
            raise SpecError(
                "profile-likelihood intervals need the fitted model's statistics "
                "(results loaded from disk have none: refit the model)"
            )
        stats = model.statistics(client=model.cached_client)
        lik = Likelihood(stats.engine, stats.glob, stats.layout, stats.columns, False)
        self.sdcor = sdcor = SdCorLikelihood(lik, results.names, term_levels(results.to_state()))
        self.names = sdcor.names
        scale = float(results.scale)
        z0 = sdcor.from_model(
            np.asarray(results.fe_params, dtype=np.float64),
            np.asarray(results.cov_re, dtype=np.float64) / scale,
            np.asarray(results.vcomp, dtype=np.float64) / scale,
            scale,
        )
        #: the correlations the fit held at 0 (``free``): held everywhere, no interval
        self.fixed = _fixed_by_fit(results, sdcor, z0.size)
        self.hold = self._boundary(z0) | self.fixed
        best, converged = sdcor.maximize(z0, hold=self.hold, decrement=1e-12)
        if not converged:
            best, converged = sdcor.maximize_bounded(z0, hold=self.hold)
        if not converged:
            raise SpecError("the ML estimates could not be found from the fit's")
        best = self._off_cone(best)
        hold = self._boundary(best.z) | self.fixed  # the ML optimum may be on a bound
        if (hold != self.hold).any():
            self.hold = hold
            polished, ok = sdcor.maximize(best.z, hold=hold, decrement=1e-12)
            if ok or not self.singular:
                best = polished
        self.best = best
        self.estimate = best.z
        self.llf = best.llf
        self.se = _standard_errors(best.hess, ~self.hold)
        self.exact_hessians = _hessian_is_cheap(sdcor)

    def _off_cone(self, best: SdCorPoint) -> SdCorPoint:
        """The higher of ``best`` and the maximum over a factor of Ψ's correlations
        (:meth:`~dmixed.results.sdcor.SdCorLikelihood.maximize_factored`) from it,
        tried only where Ψ at ``best`` is singular or nearly so (:meth:`_near_singular`).

        Newton's steps in SDs and correlations stop short of a maximum where Ψ is
        singular with correlations inside (−1, 1) (several near 1 together): there the
        boundary of the positive semi-definite cone is curved in these coordinates.
        :attr:`singular` records that the factor's maximum was the higher, and the
        profile points are then maximized the same way.  An SD that the factor's
        maximum leaves within :data:`SD_ZERO` of 0 is set to 0 (and held there by
        :meth:`_boundary`): whether it lands on 0 or just above is rounding, and its
        correlations are not identified either way."""
        self.singular = False
        # the factor's coordinates do not hold a correlation: not for a fit that held one
        if self.fixed.any() or not self._near_singular(best.z):
            return best
        other, ok = self.sdcor.maximize_factored(best.z, hold=self.hold)
        if not ok or not other.llf > best.llf + 1e-8:
            return best
        self.singular = True
        sd = self.sdcor
        tiny = [k for k in range(sd.n_cov) if sd.kinds[k] != "cor" and 0 < other.z[k] < SD_ZERO]
        if tiny:
            z = other.z.copy()
            z[tiny] = 0.0
            other = sd.evaluate(z)
        return other

    def _near_singular(self, z: np.ndarray) -> bool:
        """Whether Ψ at ``z`` is singular or nearly so: three or more random effects
        (with two, the factor's coordinates are the box of :meth:`maximize_bounded`)
        and a coordinate held on its bound, or a smallest eigenvalue of the
        correlation matrix below :data:`CORRELATION_EIG_TOL`."""
        sd = self.sdcor
        if sd.q < 3:
            return False
        if self.hold.any():
            return True
        r = np.eye(sd.q)
        for (a, b), i in sd.pos.items():
            if a != b:
                r[a, b] = r[b, a] = z[i]
        return bool(np.linalg.eigvalsh(r)[0] < CORRELATION_EIG_TOL)

    def _boundary(self, z: np.ndarray) -> np.ndarray:
        """Coordinates held where they are: SDs estimated at 0 with their correlations,
        and correlations estimated at ±1 (set to exactly ±1 when within 1e-7)."""
        sd = self.sdcor
        hold = np.zeros(z.size, dtype=bool)
        for k in range(sd.n_cov):
            if sd.kinds[k] != "cor" and z[k] == 0.0:
                hold |= self.sdcor.correlations_of(k)
                hold[k] = True
            elif sd.kinds[k] == "cor" and abs(z[k]) > 1.0 - 1e-7:
                z[k] = math.copysign(1.0, z[k])
                hold[k] = True
        return hold

    def _correlations_of_held(self) -> np.ndarray:
        """The correlations involving an SD held at 0."""
        out = np.zeros(self.hold.size, dtype=bool)
        for k in np.flatnonzero(self.hold[: self.sdcor.n_cov]):
            if self.sdcor.kinds[k] != "cor":
                out |= self.sdcor.correlations_of(k)
        return out

    # -- one profile point ----------------------------------------------------------

    def zeta(self, k: int, x: float, near: SdCorPoint) -> tuple[float, float, SdCorPoint]:
        """ζ at ``z_k = x``, its slope ``dζ/dx = −(∂ℓ/∂z_k)/ζ`` (the envelope theorem:
        the other coordinates are at their maximum) and the profile point, maximizing
        from the tangent at ``near`` (a profile point already computed)."""
        sd = self.sdcor
        hold = self.fixed.copy()  # the other parameters all move (but the fit's held)
        if x == 0.0 and sd.kinds[k] in ("sd", "vc"):
            hold |= sd.correlations_of(k)  # not identified: kept where they are
        z0 = _tangent_start(near, k, x, ~hold, sd.n_c)
        if not sd.feasible(z0):
            z0 = near.z.copy()
            z0[k] = x
        start_hess = None if self.exact_hessians or self.hold[k] else near.hess
        if self.singular:
            pt, converged = self._factored(z0, k, x, hold), True
        else:
            pt, converged = sd.maximize(z0, pinned=k, hold=hold, hess=start_hess, decrement=1e-6)
        if not converged:
            pt = self._retry(near, k, x, hold)
        elif not self.singular and self._on_bound(pt, hold | self.hold):
            # a bound can hold a local maximum that the warm start walked into: the
            # maximum from the estimates too, the higher kept
            z1 = self.estimate.copy()
            z1[k] = x
            other, ok = sd.maximize(z1, pinned=k, hold=hold, decrement=1e-6)
            if ok and other.llf > pt.llf:
                pt = other
        pt = self._on_held_bound(pt, z0, k, hold)
        dev = max(2.0 * (self.llf - pt.llf), 0.0)
        zeta = math.copysign(math.sqrt(dev), x - self.estimate[k])
        slope = -pt.grad[k] / zeta if zeta != 0.0 and pt.grad is not None else np.nan
        return zeta, slope, pt

    def _on_held_bound(self, pt: SdCorPoint, z0: np.ndarray, k: int, hold: np.ndarray):
        """``pt``, or the maximum with the correlations estimated at ±1 kept there if
        that is higher: the profile can have a local maximum inside as well as one on
        the bound where the estimates are, and a warm start can reach either."""
        held = self.hold & (self.sdcor.kinds == "cor") & ~self._correlations_of_held()
        held[k] = False
        if not held.any() or np.array_equal(pt.z[held], self.estimate[held]):
            return pt
        z1 = z0.copy()
        z1[held] = self.estimate[held]
        other, ok = self.sdcor.maximize(z1, pinned=k, hold=hold | held, decrement=1e-6)
        return other if ok and not other.llf <= pt.llf else pt

    def _on_bound(self, pt: SdCorPoint, hold: np.ndarray) -> bool:
        """Whether a coordinate not in ``hold`` (nor on a bound at the estimates) is on
        its bound (an SD at 0, a correlation at ±1) at the profile point."""
        sd = self.sdcor
        return bool(np.any(~hold & ((pt.z <= sd.lower) | (pt.z >= sd.upper))))

    def _retry(self, near: SdCorPoint, k: int, x: float, hold: np.ndarray) -> SdCorPoint:
        """Bounded quasi-Newton maximizations (where Newton's steps stalled on a bound:
        another SD at 0, a correlation at ±1) from ``near`` and from the estimates,
        the higher kept (a bound can hold a local maximum), then over a factor of
        the correlations (a maximum on a singular Ψ); NaN ℓ if all fail."""
        best = SdCorPoint(near.z, -np.inf)
        for start in (near.z, self.estimate):
            z0 = start.copy()
            z0[k] = x
            pt, converged = self.sdcor.maximize_bounded(z0, pinned=k, hold=hold)
            if converged and pt.llf > best.llf:
                best = pt
        if self.sdcor.q >= 2 and not self.fixed.any():  # (the factor moves every correlation)
            z0 = near.z.copy()
            z0[k] = x
            pt = self._factored(z0, k, x, hold)
            if pt.llf > best.llf:
                best = pt
        if np.isfinite(best.llf):
            return best
        return SdCorPoint(best.z, np.nan)

    def _factored(self, z0: np.ndarray, k: int, x: float, hold: np.ndarray) -> SdCorPoint:
        """max ℓ at ``z_k = x`` over a factor of the correlations, from ``z0`` and from
        the estimates, the higher kept (NaN ℓ where neither ends on a maximum)."""
        z1 = self.estimate.copy()
        z1[k] = x
        best = SdCorPoint(z0, np.nan)
        for start in (z0, z1):
            pt, converged = self.sdcor.maximize_factored(start, pinned=k, hold=hold)
            if converged and not pt.llf <= best.llf:
                best = pt
        return best

    # -- endpoints ----------------------------------------------------------------------

    def interval(self, k: int, level: float = 0.95) -> tuple[float, float]:
        """The profile interval of parameter ``k`` (position in :attr:`names`).

        A parameter estimated on its bound (an SD at 0, a correlation at ±1) has that
        bound as one limit; a correlation of an SD estimated at 0 is not identified
        (NaN, NaN); a correlation the fit held at 0 (``free``) is not a parameter of
        the model (NaN, NaN, without a warning).
        """
        crit = _normal_quantile((1.0 + check_level(level)) / 2.0)
        x_hat = self.estimate[k]
        if self.fixed[k]:
            return np.nan, np.nan
        if self.hold[k]:
            if self.sdcor.kinds[k] != "cor":
                return 0.0, self.endpoint(k, crit)
            if self._correlations_of_held()[k]:
                self._no_limit(k, 0.0, "a correlation of an SD estimated at 0 is not identified")
                return np.nan, np.nan
            if x_hat < 0:
                return -1.0, self.endpoint(k, crit)
            return self.endpoint(k, -crit), 1.0
        return self.endpoint(k, -crit), self.endpoint(k, crit)

    def endpoint(self, k: int, target: float) -> float:
        """The ``x`` where ζ(x) = ``target`` (its sign chooses the side), or the bound
        of ``x``'s range when ζ stays inside the cut-off up to it.

        Newton's method on ζ(t) = target in ``t`` (:func:`_transform`) from the Wald
        endpoint, with the exact slope; once a point beyond the cut-off is known, a step
        leaving the bracket is replaced by the secant (regula falsi) inside it.
        """
        kind = self.sdcor.kinds[k]
        side = 1.0 if target > 0 else -1.0
        fwd, inv, bound = _transform(kind, side)
        x_hat = self.estimate[k]
        inside = (fwd(x_hat), -target, self.best)  # (t, ζ − target, profile point)
        outside = None
        t_ref, t = self._first_step(k, target, fwd)
        for _ in range(MAX_STEPS):
            x = inv(t)
            at_bound = _beyond(x, bound, side, x_hat)
            if at_bound:
                x, t = float(bound), fwd(bound)
            near = inside[2] if outside is None or _closer(t, inside, outside) else outside[2]
            zeta, slope, pt = self.zeta(k, x, near)
            f = zeta - target
            if not np.isfinite(f):
                return self._no_limit(
                    k,
                    side,
                    f"the maximum over the other parameters at {self.names[k]} = {x:.6g} "
                    "was not found",
                )
            if abs(f) < ZETA_TOL:
                return float(x - f / slope) if np.isfinite(slope) and slope > 0 else float(x)
            if side * f < 0:
                if at_bound:
                    return float(bound)
                inside = (t, f, pt)
            else:
                outside = (t, f, pt)
            t = _next_t(t, f, slope * _dx_dt(kind, x), t_ref, inside, outside, fwd, inv)
        return self._no_limit(
            k, side, f"its profile did not cross the cut-off {target:+.4g} in {MAX_STEPS} points"
        )

    def _no_limit(self, k: int, side: float, why: str) -> float:
        """NaN, with a :class:`~dmixed.errors.ProfileWarning` naming the limit (the
        upper for ``side`` > 0, the lower for < 0, both for 0) and why."""
        which = (
            "upper profile limit"
            if side > 0
            else "lower profile limit"
            if side < 0
            else "profile limits"
        )
        warnings.warn(
            f"the {which} of {self.names[k]} {'are' if side == 0 else 'is'} NaN: {why}",
            ProfileWarning,
            stacklevel=caller_stacklevel(),
        )
        return np.nan

    def _first_step(self, k: int, target: float, fwd) -> tuple[float, float]:
        """``(t_ref, t)``: the first point in ``t``, the Wald endpoint (or a point 1/10
        of the way in from a bound, for an estimate on it), and the reference that
        bounds the outward steps (the estimate's ``t``, or one unit behind)."""
        kind, x_hat = self.sdcor.kinds[k], self.estimate[k]
        side = 1.0 if target > 0 else -1.0
        t_hat = fwd(x_hat)
        if np.isfinite(t_hat):
            se_t = self.se[k] * _slope(kind, x_hat)
            width = abs(target) * se_t if np.isfinite(se_t) and se_t > 0 else 0.5
            return t_hat, t_hat + side * width
        if kind == "cor":
            t = fwd(x_hat + side * 0.1)
        else:  # an SD at 0: start at a tenth of σ̂
            t = fwd(0.1 * self.estimate[self.sdcor.sigma_ix])
        return t - side, t

    # -- the table ----------------------------------------------------------------------

    def frame(self, parm=None, level: float = 0.95) -> pd.DataFrame:
        """lme4's ``confint(fit, parm, level, method = "profile")``: rows named as
        :attr:`names` (those of ``parm``), columns :func:`percent_labels`."""
        level = check_level(level)
        rows = select_parameters(self.names, self.sdcor.kinds, parm)
        values = [self.interval(self.names.index(name), level) for name in rows]
        return pd.DataFrame(values, index=pd.Index(rows), columns=percent_labels(level))


def select_parameters(names: list[str], kinds, parm, held=()) -> list[str]:
    """The rows lme4's ``parm`` asks for, in its order, without repeats: None (all),
    ``"theta_"`` (covariance parameters and σ), ``"beta_"`` (fixed effects), names, or
    integer positions (0-based), alone or in a list.  :class:`SpecError` for anything
    else, and for a name or position of ``held`` (covariances held at 0 by ``free``,
    :func:`held_rows`: no parameter, so no interval), which the list of valid names
    leaves out."""
    theta = sorted(n for n, kind in zip(names, kinds, strict=True) if kind != "beta")
    beta = [n for n, kind in zip(names, kinds, strict=True) if kind == "beta"]
    ordered = theta + beta  # lme4's rows: .sig01, …, .sigma (sorts last), then β
    if parm is None:
        return ordered
    try:
        items = [parm] if isinstance(parm, str | int | np.integer) else list(parm)
    except TypeError:
        raise SpecError(
            f"parm must be None, a name, a position or a list of them, got {parm!r}"
        ) from None
    out = []
    for item in items:
        if isinstance(item, int | np.integer) and not isinstance(item, bool):
            if not 0 <= int(item) < len(names):
                raise SpecError(f"parm position {item} is not among 0..{len(names) - 1}")
            out.append(ordered[int(item)])
        elif item == "theta_":
            out += theta
        elif item == "beta_":
            out += beta
        elif item in names:
            out.append(item)
        else:
            valid = [n for n in names if n not in held]
            raise SpecError(f"parm {item!r} is not one of {valid} (or 'theta_', 'beta_')")
        if out and out[-1] in held and not isinstance(item, str):
            item = out[-1]  # a position of a held covariance: refused by its name
        if isinstance(item, str) and item in held:
            raise SpecError(
                f"parm {item!r} is a covariance held at 0 by free=, not estimated: it "
                "has no interval (lme4's || model has no such parameter)"
            )
    return list(dict.fromkeys(out))


def confint_frame(
    results, method: str = "profile", level: float = 0.95, parm=None, nsim=None, seed=None
):
    """lme4's ``confint.merMod(fit, parm, level, method, nsim)`` for a dmixed fit.

    Parameters
    ----------
    results : MixedLMResults
    method : {"profile", "Wald", "boot"}
        ``"profile"``: the profile-likelihood limits of :class:`ProfileIntervals` (ML
        deviance, from the statistics: no data pass); ``"Wald"``: ``β̂ ± z·se(β̂)`` with
        ``z = Φ⁻¹((1 + level)/2)`` and the fit's standard errors, NaN for the
        covariance parameters and σ (as lme4); ``"boot"``: percentile intervals of a
        parametric bootstrap (:func:`boot_intervals`).
    level : float in (0, 1)
    parm : see :func:`select_parameters`
    nsim : int, optional
        ``"boot"`` only: the replicates (default 500, lme4's).
    seed : optional
        ``"boot"`` only: the bootstrap's seed
        (:func:`~dmixed.results.bootstrap.parametric_bootstrap`).

    Returns
    -------
    DataFrame (len(parm), 2)
        Rows lme4's names (:func:`~dmixed.results.sdcor.sdcor_names`), columns
        :func:`percent_labels`; no row for a correlation the fit held at 0 with
        ``free`` (:func:`held_rows`), which is no parameter of the model (lme4's ``||``
        lists none).

    Raises
    ------
    SpecError
        An unknown ``method`` or ``parm``, a ``parm`` naming a covariance held at 0
        by ``free``, ``level`` outside (0, 1), ``nsim`` or
        ``seed`` with a method other than ``"boot"``, or (profile, boot) results
        without their model's statistics.
    """
    held = held_rows(results)
    if held and parm is not None:  # a held covariance named: refused, not dropped silently
        names, kinds = sdcor_names(results.names, term_levels(results.to_state()))
        select_parameters(names, kinds, parm, held)
    frame = _confint_rows(results, method, level, parm, nsim, seed)
    return frame.drop(index=[n for n in held if n in frame.index])


def held_rows(results) -> list[str]:
    """lme4's names (``.sigNN``) of the correlations ``results`` held at 0 with
    ``free`` (:func:`~dmixed.results.varcorr.held_correlations`)."""
    state = results.to_state()
    pairs = held_correlations(state)
    if not pairs:
        return []
    q = len(results.names.exog_re_names)
    names, _ = sdcor_names(results.names, term_levels(state))
    position = [(a, b) for b in range(q) for a in range(b, q)]  # sdcor's order
    return [names[position.index(pair)] for pair in pairs]


def _confint_rows(results, method, level, parm, nsim, seed) -> pd.DataFrame:
    """:func:`confint_frame`'s rows before the held correlations are dropped."""
    level = check_level(level)  # before the profile's set-up
    method_l = str(method).lower()
    if method_l != "boot" and (nsim is not None or seed is not None):
        raise SpecError(f"nsim and seed are for method='boot' only, not method={method!r}")
    if method_l == "boot":
        names, kinds = sdcor_names(results.names, term_levels(results.to_state()))
        select_parameters(names, kinds, parm)  # a bad parm before the replicates
        nsim = 500 if nsim is None else check_nsim(nsim)  # named as confint names it
        boot = parametric_bootstrap(results, nsim, seed=seed)
        return boot_intervals(results, boot, level, parm)
    if method_l == "profile":
        return ProfileIntervals(results).frame(parm, level)
    if method_l != "wald":
        raise SpecError(f"method must be 'profile', 'Wald' or 'boot', got {method!r}")
    names, kinds = sdcor_names(results.names, term_levels(results.to_state()))
    rows = select_parameters(names, kinds, parm)
    crit = _normal_quantile((1.0 + level) / 2.0)
    fe = pd.Series(np.asarray(results.fe_params, dtype=np.float64), index=names[-results.k_fe :])
    se = pd.Series(np.asarray(results.bse_fe, dtype=np.float64), index=fe.index)
    values = [
        (fe[n] - crit * se[n], fe[n] + crit * se[n]) if n in fe.index else (np.nan, np.nan)
        for n in rows
    ]
    return pd.DataFrame(values, index=pd.Index(rows), columns=percent_labels(level))


def boot_intervals(results, boot, level: float = 0.95, parm=None) -> pd.DataFrame:
    """lme4's ``confint(fit, method = "boot")`` from a parametric bootstrap of ``results``.

    Each replicate's estimates (:class:`~dmixed.results.bootstrap.BootstrapResults`:
    β, ``cov_re``, ``vcomp``, σ²) are mapped to lme4's parametrization
    (:func:`~dmixed.results.sdcor.sdcor_values`: the SDs and correlations of the random
    effects, the components' SDs, σ, β), and each interval is the ``(1 − level)/2`` and
    ``(1 + level)/2`` quantiles of that parameter over the replicates (failed ones
    left out; pandas' linear interpolation, R's ``quantile`` type 7: lme4's
    ``boot.ci(type = "perc")`` interpolates otherwise, which differs by less than the
    spacing of neighbouring replicates).  Where ``(R + 1)·(1 − level)/2 ≤ 1`` for the
    ``R`` replicates used (``R < 2/(1 − level)``: ``nsim < 40`` at
    ``level = 0.95``), the limits are the extreme replicates and a
    :class:`~dmixed.errors.ProfileWarning` says so, as ``boot.ci``'s "extreme order
    statistics used as endpoints".

    Parameters
    ----------
    results : MixedLMResults
        The fit bootstrapped.
    boot : BootstrapResults
        Its replicates (:meth:`MixedLMResults.bootstrap`).
    level : float in (0, 1)
    parm : see :func:`select_parameters`

    Returns
    -------
    DataFrame (len(parm), 2)
        The rows of :func:`confint_frame` (``.sig01``, …, ``.sigma``, the fixed
        effects), columns :func:`percent_labels`; SDs, correlations and σ on the
        response's scale, as ``method="profile"``.

    Raises
    ------
    SpecError
        ``level`` outside (0, 1), an unknown ``parm``.

    Warns
    -----
    ProfileWarning
        Too few replicates for ``level``: the limits are the extreme replicates.
    """
    level = check_level(level)
    names, kinds = sdcor_names(results.names, term_levels(results.to_state()))
    rows = select_parameters(names, kinds, parm)
    p, q = len(results.names.exog_names), len(results.names.exog_re_names)
    k_cov, k_vc = q * (q + 1) // 2, len(results.names.vc_names)
    vals = boot.values.to_numpy()  # by position: β, cov_re's triangle, vcomp, scale, llf
    z = sdcor_values(
        vals[:, :p],
        vals[:, p : p + k_cov],
        vals[:, p + k_cov : p + k_cov + k_vc],
        vals[:, p + k_cov + k_vc],
        q,
    )
    frame = pd.DataFrame(z, columns=pd.Index(names))
    a = (1.0 - level) / 2.0
    # boot's norm.inter: the (R + 1)·a-th order statistic must lie strictly inside
    # 1..R, or the limits are the extreme replicates (lme4 relays its warning)
    n_used = int(frame.loc[:, rows].notna().sum().min()) if len(rows) else 0
    needed = math.floor(1.0 / a + 1e-9)  # the fewest with (R + 1)·a > 1 (a = 0.025: 40)
    if n_used < needed:
        warnings.warn(
            f"extreme order statistics used as endpoints: level {level:g} asks for the "
            f"{a:g} and {1.0 - a:g} quantiles, which {n_used} replicates do not resolve "
            f"(at least {needed} are needed, (R + 1)·{a:g} > 1); "
            "the limits are the smallest and largest replicates; raise nsim",
            ProfileWarning,
            stacklevel=caller_stacklevel(),
        )
    limits = np.column_stack([frame.quantile(a), frame.quantile(1.0 - a)])
    out = pd.DataFrame(limits, index=pd.Index(names), columns=percent_labels(level))
    return out.loc[rows]


def variance_intervals(results, alpha: float = 0.05) -> pd.DataFrame:
    """Profile intervals of the variances (``cov_re`` diagonal and ``vcomp``): the
    squares of the SD intervals of :class:`ProfileIntervals` at level ``1 − alpha``.

    Returns
    -------
    DataFrame (k_re + k_vc, 3)
        Columns ``estimate`` (the fit's), ``str(alpha/2)``, ``str(1 − alpha/2)``;
        rows the random effects' and components' names, in the order of the
        ``.sigNN`` rows of :func:`confint_frame` (:func:`select_parameters`): the
        k-th row here is the square of the k-th SD row there.
    """
    alpha = check_alpha(alpha)
    prof = ProfileIntervals(results)
    kinds = list(prof.sdcor.kinds)
    names = list(results.names.exog_re_names) + list(results.names.vc_names)
    estimate = np.concatenate([np.diag(np.asarray(results.cov_re)), np.asarray(results.vcomp)])
    # the variance (its position in ``names``) of each SD's z index: sdcor's entry order
    # (Ψ's diagonal within its lower triangle, then the components) is ``names``' order
    sd_entries = [k for k, kind in enumerate(kinds) if kind in ("sd", "vc")]
    variance_of = dict(zip(sd_entries, range(len(names)), strict=True))
    # confint's rows (:func:`select_parameters`, the one owner of lme4's order)
    sds = list(map(prof.names.index, select_parameters(prof.names, kinds, None)))
    sds = [k for k in sds if k in variance_of]
    order = np.array([variance_of[k] for k in sds], dtype=np.intp)
    table = np.array([prof.interval(k, 1.0 - alpha) for k in sds]).reshape(-1, 2) ** 2
    names = [names[j] for j in order]
    estimate = np.asarray(estimate[order], dtype=np.float64)
    return pd.DataFrame(
        {"estimate": estimate, f"{alpha / 2}": table[:, 0], f"{1 - alpha / 2}": table[:, 1]},
        index=pd.Index(names),
    )


# -- helpers -------------------------------------------------------------------------


def _fixed_by_fit(results, sdcor: SdCorLikelihood, size: int) -> np.ndarray:
    """The coordinates of ``z`` a fit with ``free`` held (``results.held``): its
    covariances held at 0, as their correlations.

    Raises
    ------
    SpecError
        A held variance, component or non-zero covariance: in SDs and correlations it
        is no fixed coordinate (Ψ* is relative to σ², which the profile moves)."""
    out = np.zeros(size, dtype=bool)
    held = results.held
    if held is None:
        return out
    rows, cols = sdcor.layout.tril()
    cov = np.asarray(results.cov_re, dtype=np.float64)
    names = results.param_names[results.k_fe :]
    for i in np.flatnonzero(held):
        if i >= rows.size or rows[i] == cols[i] or cov[rows[i], cols[i]] != 0.0:
            raise SpecError(
                f"profile intervals of a fit with free=: {names[i]!r} is held at a value "
                "that is not a covariance of 0; only covariances held at 0 (independent "
                "random effects) are supported; for a variance held, use the Wald "
                "intervals (method='Wald') or refit without free"
            )
        a, b = int(rows[i]), int(cols[i])
        out[sdcor.pos[max(a, b), min(a, b)]] = True
    return out


def _normal_quantile(p: float) -> float:
    from scipy import special  # noqa: PLC0415  (dmixed imports without scipy)

    return float(special.ndtri(p))


def _hessian_is_cheap(sdcor: SdCorLikelihood) -> bool:
    """Whether profile points take exact Newton steps (fewer, each a step and a Hessian
    pass) rather than quasi-Newton ones (each a step): where the Hessian pass costs
    about a step, without variance components and with Ψ of at most 3 × 3 (with a
    component it cost 13 steps in benchmarks/bench_profile.py's model)."""
    return sdcor.k_vc == 0 and sdcor.layout.n_params <= 6


def _standard_errors(hess: np.ndarray, free: np.ndarray) -> np.ndarray:
    """``sqrt(diag((−H)⁻¹))`` over the ``free`` coordinates (NaN elsewhere or where
    −H is not positive definite)."""
    out = np.full(hess.shape[0], np.nan)
    try:
        cov = np.linalg.inv(-hess[np.ix_(free, free)])
    except np.linalg.LinAlgError:
        return out
    diag = np.diag(cov)
    out[free] = np.where(diag > 0, np.sqrt(np.abs(diag)), np.nan)
    return out


def _transform(kind: str, side: float):
    """``t(x)``, ``x(t)`` and the bound of ``x`` on this side (ζ is near-linear in t)."""
    if kind in ("sd", "vc", "sigma"):
        bound = 0.0 if side < 0 else np.inf
        return _safe_log, np.exp, bound
    if kind == "cor":
        return _safe_atanh, np.tanh, float(side)
    return (lambda x: x), (lambda t: t), side * np.inf


def _safe_log(x: float) -> float:
    return math.log(x) if x > 0 else -np.inf


def _safe_atanh(x: float) -> float:
    if abs(x) >= 1.0:
        return math.copysign(np.inf, x)
    return math.atanh(x)


def _slope(kind: str, x: float) -> float:
    """``dt/dx`` at ``x``."""
    if kind in ("sd", "vc", "sigma"):
        return 1.0 / x if x > 0 else np.nan
    if kind == "cor":
        return 1.0 / (1.0 - x * x) if abs(x) < 1 else np.nan
    return 1.0


def _beyond(x: float, bound: float, side: float, x_hat: float) -> bool:
    """Whether ``x`` is at (or numerically indistinguishable from) the finite bound."""
    if not np.isfinite(bound):
        return False
    if bound == 0.0:
        return x <= 1e-8 * abs(x_hat)
    return side * (x - bound) >= -1e-12


def _dx_dt(kind: str, x: float) -> float:
    if kind in ("sd", "vc", "sigma"):
        return x
    if kind == "cor":
        return 1.0 - x * x
    return 1.0


def _closer(t: float, a, b) -> bool:
    """Whether ``t`` is nearer to point ``a`` than to ``b`` (an infinite ``t``: nearer
    to the outer one)."""
    if not np.isfinite(t) or not np.isfinite(b[0]):
        return not np.isfinite(b[0]) and np.isfinite(t)
    return abs(t - a[0]) <= abs(t - b[0])


def _next_t(t, f, slope_t, t_hat, inside, outside, fwd, inv) -> float:
    """Newton's step ``t − f/(dζ/dt)``; without a bracket (then it is outward) at most
    8 times the distance from ``t_hat``; with one, inside it (else the regula falsi
    point, or bisection in ``x`` when one end is a bound, at an infinite ``t``)."""
    newton = t - f / slope_t if slope_t > 0 and np.isfinite(slope_t) else np.nan
    if outside is None:
        span = t - t_hat
        lo, hi = sorted((t, t + 8.0 * span))
        return float(np.clip(newton, lo, hi)) if np.isfinite(newton) else t + 2.0 * span
    (ta, fa, _), (tb, fb, _) = inside, outside
    if np.isfinite(newton) and min(ta, tb) < newton < max(ta, tb):
        return float(newton)
    if np.isfinite(ta) and np.isfinite(tb):
        return ta - fa * (tb - ta) / (fb - fa)
    return fwd(0.5 * (inv(ta) + inv(tb)))  # a bound at one end: bisection in x


def _tangent_start(near: SdCorPoint, k: int, x: float, free: np.ndarray, n_c: int) -> np.ndarray:
    """``near.z`` moved along the profile trace to ``z_k = x``: the free coordinates
    by ``−H_FF⁻¹ H_Fk (x − z_k)`` (β included in the solve, then set by the GLS)."""
    z = near.z.copy()
    free = free.copy()
    free[k] = False
    dx = x - z[k]
    z[k] = x
    if near.hess is None or not free.any():
        return z
    try:
        slope = -np.linalg.solve(near.hess[np.ix_(free, free)], near.hess[free, k])
    except np.linalg.LinAlgError:
        return z
    z[free] += slope * dx
    return z
