"""ℓ(β, θ), its score and its Hessian at any parameter point, on the model's own scale.

The fit evaluates the objective in the statistics' coordinates (:mod:`dmixed.fit.
coordinates`) and maps only the estimates back.  Here a user's point ``(β, Ψ*, τ*)``
(statsmodels' scale: Ψ* = Ψ/σ², τ* = τ²/σ², σ² profiled) is mapped into those
coordinates exactly,

    β̃ = (T β − c_y e_0) / s_y,    Λ̃ = blockdiag(A L, s_l s_l-slots),    ℓ = ℓ̃ + off

(``off = −f log s_y − [REML] log|det T|``; :mod:`dmixed.stats.standardize`), the kernels
give the sums there, and the derivatives come back through the Jacobian
``J = ∂[β̃, θ̃]/∂[β, θ]`` (constant: every map is affine in ``[β, vech(Ψ*), τ*]``):
gradients as ``J'g̃``, the Hessian as ``J'H̃J``.  One engine step per value and score
(one more for the Hessian); no data pass.

Formulas: DESIGN.md §3–5; with β given rather than profiled, ``Q(β) = w'[X y]'V*⁻¹[X y]w``
with ``w = [−β; 1]`` replaces ``Q(β̂)`` in ℓ and in the score, and
``∂ℓ/∂β = f X'V*⁻¹(y − Xβ) / Q(β)``.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..errors import DataError, PrecisionWarning, warn
from ..kernels import StepSums
from ..stats import GlobalStats, Layout, Standardization
from .coordinates import Coordinates
from .fit_warnings import PRECISION_WARN_ABOVE
from .objective import (
    FACTOR_UNRESOLVED,
    Profile,
    factor_error,
    hessian,
    loglike,
    pivot_resolution,
    profile,
    quadratic_form,
    resolution,
    resolution_verdict,
    score_matrices,
    statistics_resolution,
)

__all__ = ["Likelihood", "Point", "SINGULAR_TOL"]


def _round_up(value: float) -> str:
    """``value`` (> 0) to two significant digits, rounded up: a stated bound is never
    below the one computed."""
    scale = 10.0 ** (np.floor(np.log10(value)) - 1)
    return f"{np.ceil(value / scale) * scale:.2g}"


#: What :meth:`Likelihood.check` names as the cause of a refusal or a warning
_CAUSES = {
    "nonfinite": "the residual quadratic form Q (σ̂² times f) or the fixed effects "
    "estimate is not positive and finite there (ℓ would be −inf or NaN)",
    "estimate": "X'V^-1 X's factor does not resolve the fixed effects there (β̂ along "
    "its weakest direction follows the rounding of the sums; ℓ, the score and the "
    "Hessian can still be evaluated)",
    "factor": "X'V^-1 X is not positive definite to the rounding of the sums there (the "
    "fixed effects nearly indistinguishable after the random effects)",
    "sums": "the rounding of the sums that the residual quadratic form Q is the difference of",
    "statistics": "the rounding of the statistics' within-group sums, which Q is a remainder of",
    "through_beta": "the rounding of X'V^-1 X's factor, through the fixed effects "
    "estimate (second order in Q)",
    "given_beta": "the rounding of the sums that the residual quadratic form Q at the "
    "given fixed effects is the difference of",
    "logdet": "the rounding of each group's log|I + Λ'Z'ZΛ|, whose entries the random "
    "slope's covariate far from zero makes large (the plain forms that variance "
    "components take)",
    "kernel_given_beta": "the rounding of each group's I + Λ'Z'ZΛ (the plain forms that "
    "variance components take), along the given fixed effects",
    "pivot": "REML's log|X'V^-1 X|, whose smallest pivot is a remainder of the sums' rounding",
    "kernel": "the rounding of each group's I + Λ'Z'ZΛ, whose entries the random slope's "
    "covariate far from zero makes large next to the 1 they are added to (the plain forms "
    "that variance components take)",
    "pivot_zero": "REML's log|X'V^-1 X| has no finite bound there: X'V^-1 X's smallest "
    "pivot is within its own rounding of zero (ML's log-likelihood, which does not "
    "hold log|X'V^-1 X|, may still be evaluated)",
}

#: statsmodels' tolerance: Ψ* with an eigenvalue, or a τ*, below it is "singular".
SINGULAR_TOL = 1e-10

#: ``ρ`` (:meth:`Likelihood.kernel_rounding`) below which Q at a given β that the
#: kernels' worst case does not resolve is returned with a warning, not refused.
KERNEL_WARN_ONLY_BELOW = 1e-6

# Likelihood.slot_gram_diagonal's answers, per (id(engine), r), kept while the engine lives
_SLOT_GRAMS: dict[tuple[int, int], tuple[Any, np.ndarray]] = {}


@dataclass(frozen=True)
class Point:
    """One parameter point in the model's coordinates.

    Attributes
    ----------
    lam : ndarray (r, r)
        ``Λ = blockdiag(L, s_1 I, …)`` with ``Ψ* = L L'``, ``τ*_l = s_l²`` (the statistics'
        layout: ``r = q + Σ_l m_l``).
    beta : ndarray (p,) or None
        β; ``None``: β profiled (its GLS estimate at Λ).
    """

    lam: np.ndarray
    beta: np.ndarray | None = None


@dataclass
class Likelihood:
    """ℓ, score and Hessian of a model at points given in its own coordinates.

    Parameters
    ----------
    engine : dmixed.engines.Engine
        Holds the per-group statistics (``step``, ``hessian``).
    glob : GlobalStats
    layout : Layout
    columns : Standardization
        The statistics' column map.
    reml : bool
    re_names : tuple of str, optional
        The model's ``exog_re`` names.  Given, every evaluation is checked
        (:meth:`check`): a :class:`~dmixed.errors.DataError` naming the cause and the
        random-effects columns far from zero only where ℓ has no finite bound (or β̂,
        for :meth:`fe_params`, is not resolved), and a
        :class:`~dmixed.errors.PrecisionWarning` with a bound on the llf where the
        float64 sums resolve it coarsely; None (the profile likelihoods' own use):
        ``np.linalg.LinAlgError`` and ``−inf`` as the objective gives them.
    """

    engine: Any
    glob: GlobalStats
    layout: Layout
    columns: Standardization
    reml: bool
    re_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        lay = self.layout
        self.to_statistics = Coordinates.model(self.columns, lay)  # Λ → Λ̃, ℓ̃ → ℓ
        self.jacobian = Coordinates.for_fit(self.columns, lay, True).jacobian()

    # -- evaluation in the statistics' coordinates ------------------------------------

    def evaluate(self, point: Point, estimate: bool = False) -> tuple[StepSums, Profile]:
        """The step sums at ``point.lam`` and the profile at ``point.beta``.

        The profile's ``beta`` is β̃ (the given β mapped, or the GLS estimate) and its
        ``q`` is ``Q̃(β̃)``: every formula of :mod:`dmixed.fit.objective` then holds at
        that β.  Raises ``np.linalg.LinAlgError`` where ``X'V*⁻¹X`` is not positive
        definite in floating point.
        """
        lam_std = self.to_statistics.to_statistics(point.lam)
        step = self.engine.step(lam_std, self.layout.k_re)
        try:
            prof = profile(step, self.glob, self.reml)
        except np.linalg.LinAlgError:
            if self.re_names is None:
                raise
            raise self.unresolved(lam_std, _CAUSES["factor"]) from None
        beta_std = None if point.beta is None else self.beta_to_std(point.beta)
        if self.re_names is not None:
            self.check(step, prof, lam_std, estimate, beta_std)
        if beta_std is None:
            return step, prof
        q = quadratic_form(step, self.glob, beta_std)
        return step, replace(prof, beta=beta_std, q=q)

    def kernel_rounding(self, lam_std: np.ndarray) -> tuple[float, float]:
        """``(ρ, Σρ)``: ``ρ`` a bound on every group's ``‖K_i⁻¹E_i‖`` and ``Σρ`` one on
        their sum, ``E_i`` the rounding of ``K_i = I + Λ̃'Z̃_i'Z̃_iΛ̃`` as the plain forms
        make and factor it: ``ρ_i = γ(1 + 2S_i)`` with ``γ = (4r + 8)ε`` and
        ``2S_i ≥ ‖Λ̃'Z̃_i'Z̃_iΛ̃‖`` (``K_i ≽ I``).

        ``S_i ≤ S = Σ_a D_a (|Λ̃||Λ̃|'1)_a`` over the slots, ``D`` the diagonal of
        ``Σ_i Z̃_i'Z̃_i`` (the engine's ``re_gram`` over all ``r`` slots, a variance
        component's slot holding the sum over its columns: the entries' own scale, for
        indicator and continuous columns alike; ``|G_ab| ≤ (G_aa + G_bb)/2``).  So
        ``ρ = γ(1 + 2S)`` and ``Σ_i ρ_i ≤ γ(n + 2S)`` (at most ``n`` groups).  Zero
        where ``[X y]'V*⁻¹[X y]`` is not made of the plain forms' ``Σ_i m_i``
        (:func:`~dmixed.fit.objective.uses_within`: the within-group and rank-one
        forms, exact in ``Λ̃``) and without variance components (the centred forms of
        the groups that need them).

        With ``F_i = K_i^{-1/2}E_iK_i^{-1/2}`` (``‖F_i‖ ≤ ρ_i``), ``m_i`` moves by
        ``−B'K^{-1/2}F(I + F)⁻¹K^{-1/2}B``: along any ``w`` by at most
        ``ρ/(1 − ρ) w'm_i w`` (``m_i ≽ 0``), and ``Σ log|K_i|`` by at most
        ``r Σ_i ρ_i/(1 − ρ_i)``.
        """
        lay = self.layout
        if not lay.k_vc:
            return 0.0, 0.0
        lam = np.abs(lam_std)
        r = lam.shape[0]
        s = float(self.slot_gram_diagonal(r) @ (lam @ lam.T).sum(axis=1))
        gamma = (4 * r + 8) * float(np.finfo(float).eps)
        return gamma * (1.0 + 2.0 * s), gamma * (float(self.glob.n) + 2.0 * s)

    def slot_gram_diagonal(self, r: int) -> np.ndarray:
        """The diagonal of ``Σ_i Z̃_i'Z̃_i`` over the ``r`` slots, asked of the engine
        once per engine (on Dask a round trip where the data pass did not bring the
        moment sums): it does not depend on the parameters."""
        key = (id(self.engine), r)
        cached = _SLOT_GRAMS.get(key)
        if cached is not None and cached[0]() is self.engine:
            return cached[1]
        diag = np.diagonal(np.asarray(self.engine.re_gram(r), dtype=np.float64)).copy()
        try:
            ref = weakref.ref(self.engine)
        except TypeError:  # an engine without weak references is asked each time
            return diag
        for stale in [k for k, (f, _) in _SLOT_GRAMS.items() if f() is None]:
            del _SLOT_GRAMS[stale]
        _SLOT_GRAMS[key] = (ref, diag)
        return diag

    def check(
        self,
        step: StepSums,
        prof: Profile,
        lam_std: np.ndarray,
        estimate: bool = False,
        beta_std: np.ndarray | None = None,
    ) -> None:
        """Whether the float64 sums resolve ℓ at the evaluation ``(step, prof)`` (Λ̃ =
        ``lam_std``), refusing only what has no finite bound.

        The bound is on the llf alone: ``(f/2) e/(1 − e)`` with ``e`` the relative
        error of ``Q`` (:func:`~dmixed.fit.objective.resolution`, plus
        :func:`~dmixed.fit.objective.statistics_resolution`, plus
        :func:`~dmixed.fit.objective.factor_error` of the ML criterion: ``A = X'V*⁻¹X``'s
        factor reaches ``Q`` only through β̂, at second order, as ``Q`` is stationary in
        β), and under REML ``½ K/(1 − K)`` for ``log|A|``
        (:func:`~dmixed.fit.objective.pivot_resolution` ``K``); both first order ``e``
        and ``K`` where small, the fit's precision warning's terms.  The score, the
        Hessian and β̂ are moved by the same rounding, without a stated bound.

        Raises
        ------
        DataError
            (:meth:`unresolved`, naming the cause) where ``Q`` or β̂ is not finite or
            ``Q ≤ 0`` (ℓ −inf or NaN), where ``e ≥ 1`` or, under REML, ``K ≥ 1`` (no
            finite bound: ``Q`` or ``|A|`` within its own rounding of zero), and, with
            ``estimate`` (β̂ itself is the answer, :meth:`fe_params`), where
            :func:`~dmixed.fit.objective.resolution_verdict` is
            ``FACTOR_UNRESOLVED``: β̂ along ``A``'s weak direction follows the rounding.

        Warns
        -----
        PrecisionWarning
            Where ``e + K/f`` (the units of the fit's warning) exceeds
            :data:`~dmixed.fit.fit_warnings.PRECISION_WARN_ABOVE`: the bound, its
            largest part's cause and, for a random-effects column far from zero, the
            remedy (:meth:`_offset_words`).
        """
        if not (prof.q > 0 and np.isfinite(prof.q) and np.isfinite(prof.beta).all()):
            raise self.unresolved(lam_std, _CAUSES["nonfinite"])
        glob = self.glob
        if estimate and resolution_verdict(step, prof, glob, self.reml) == FACTOR_UNRESOLVED:
            raise self.unresolved(lam_std, _CAUSES["estimate"], "the fixed effects")
        shares = {
            "sums": resolution(step, prof, glob),
            "statistics": statistics_resolution(prof, glob),
            "through_beta": factor_error(step, prof, glob, False),
        }
        pivot = pivot_resolution(step, prof, glob) if self.reml else 0.0
        rho, rho_sum = (0.0, 0.0) if prof.within else self.kernel_rounding(lam_std)
        logdet_error = 0.0
        if rho > 0.0:
            if not rho < 1.0:
                raise self.unresolved(lam_std, _CAUSES["kernel"])
            grow = rho / (1.0 - rho)
            m = np.asarray(step.m, dtype=np.float64)
            # −grow m ≼ δm ≼ grow m (m_i ≽ 0): along w, not entrywise, so that the
            # cancellation inside m along w is kept
            shares["kernel"] = grow * abs(float(prof.w @ m @ prof.w)) / prof.q
            # Σ_i log|K_i|: r ρ_i/(1 − ρ_i) for each group
            logdet_error = lam_std.shape[0] * rho_sum / (1.0 - rho)
            if self.reml:
                p = glob.k_fe
                # log|A| moves by |tr(A⁻¹δA)| ≤ grow tr(A⁻¹m_X) (A ≻ 0, −grow m_X ≼ δA ≼ grow m_X)
                pivot += grow * abs(float((np.asarray(prof.a_inv) * m[:p, :p]).sum()))
        given_kernel = 0.0
        if beta_std is not None:
            # Q at the given β: the sums' rounding and the kernels' along w = [−β; 1]
            w_b = np.abs(np.append(-np.asarray(beta_std, dtype=np.float64), 1.0))
            q_b = quadratic_form(step, glob, beta_std)
            eps = float(np.finfo(float).eps)
            size = eps * float(w_b @ (np.abs(glob.xyxy) + np.abs(step.m)) @ w_b)
            if prof.within:
                assert glob.within is not None  # Profile.within is made of it
                size = eps * float(w_b @ (np.abs(glob.within) + np.abs(step.between)) @ w_b)
            if rho > 0.0:
                w_s = np.append(-np.asarray(beta_std, dtype=np.float64), 1.0)
                given_kernel = rho / (1.0 - rho) * abs(float(w_s @ np.asarray(step.m) @ w_s))
            if not (q_b > 0 and np.isfinite(q_b)):
                raise self.unresolved(lam_std, _CAUSES["nonfinite"])
            shares["given_beta"] = size / q_b
            given_kernel /= q_b
        e = sum(shares.values())
        if not e < 1.0:
            # a NaN share is the one that fired
            worst = max(shares, key=lambda name: np.nan_to_num(shares[name], nan=np.inf))
            raise self.unresolved(lam_std, _CAUSES[worst])
        if not pivot < 1.0:
            raise self.unresolved(lam_std, _CAUSES["pivot_zero"])
        if not e + given_kernel < 1.0:
            if not rho < KERNEL_WARN_ONLY_BELOW:
                raise self.unresolved(lam_std, _CAUSES["kernel_given_beta"])
            # the kernels' worst case along a β far from β̂ (where m is large next to
            # Q) is far above what they round in practice: with each K_i itself rounded
            # to below 1e-6 relative, a warning without a bound rather than a refusal
            warn(
                "the float64 statistics resolve the log-likelihood at these parameters "
                "without a stated bound: the worst case of "
                f"{_CAUSES['kernel']} is not small next to Q at the given fixed effects "
                "(the sums themselves resolve Q there; the same point with "
                "profile_fe=True is checked with a bound)"
                f"{self._offset_words(lam_std)}",
                PrecisionWarning,
            )
            return
        shares["kernel_given_beta"] = given_kernel
        e += given_kernel
        shares["pivot"] = pivot / prof.fac
        shares["logdet"] = logdet_error / prof.fac
        if not sum(shares.values()) > PRECISION_WARN_ABOVE:
            return
        # |log(1 + x)| ≤ |x|/(1 − |x|): the first-order shares e and K, widened where
        # they are not small (the second-order terms of log Q and log|A|)
        bound = 0.5 * prof.fac * e / (1.0 - e) + 0.5 * pivot / (1.0 - pivot) + 0.5 * logdet_error
        cause = max(shares, key=lambda name: shares[name])
        warn(
            "the float64 statistics resolve the log-likelihood at these parameters only "
            f"coarsely: the llf may be off by up to {_round_up(bound)}, mostly from "
            f"{_CAUSES[cause]} (the bound covers the llf only; the score, the Hessian "
            "and the fixed effects are moved by the same rounding, without a stated "
            f"bound){self._offset_words(lam_std)}",
            PrecisionWarning,
        )

    def unresolved(
        self, lam_std: np.ndarray, cause: str, what: str = "the log-likelihood"
    ) -> DataError:
        """The :class:`~dmixed.errors.DataError` of a point the float64 statistics do
        not resolve: ``what`` cannot be evaluated there, for the ``cause`` (a
        :data:`_CAUSES` text); the random-effects columns far from zero and the remedy
        (:meth:`_offset_words`)."""
        return DataError(
            f"{what} cannot be evaluated at these parameters from the float64 "
            f"statistics: {cause}{self._offset_words(lam_std)}"
        )

    def _offset_words(self, lam_std: np.ndarray) -> str:
        """``"; …"`` naming each ``exog_re`` column whose map has a shift (its offset
        from zero and its spread), the variance the point puts on the random
        intercept's direction in the columns' centred coordinates, and what a user can
        do (centre the column); ``""`` where no column is shifted."""
        cols = self.columns
        names = self.re_names or ()
        offsets = cols.model_z_shift()
        shifted = [j for j in range(offsets.shape[0]) if offsets[j] != 0.0]
        if not shifted or cols.z_intercept < 0:
            return ""
        shown = ", ".join(
            f"{names[j] if j < len(names) else j!r} (values about {offsets[j]:.6g}, "
            f"spread of order {cols.z_scale[j]:.3g})"
            for j in shifted
        )
        first = names[shifted[0]] if shifted[0] < len(names) else "x"
        i = cols.z_intercept
        # Λ̃'s intercept row in the statistics' (centred, scaled) coordinates, scaled
        # back to the model's units of the intercept (whose scale is 1)
        variance = float(lam_std[i, : self.layout.k_re] @ lam_std[i, : self.layout.k_re])
        return (
            f"; the random-effects column {shown} lies far from zero next to its spread, "
            "so this cov_re is, about the column's centre, a random intercept of variance "
            f"{variance:.2g} (times the scale), which the sums about that centre resolve "
            "only to about the ratio squared times float64's precision: centre the "
            f"column in the data ({first} minus its mean) or, for a pandas DataFrame, "
            f"write center({first}) in the formula and re_formula, so that the random "
            "slope's covariate is near 0"
        )

    def beta_to_std(self, beta: np.ndarray) -> np.ndarray:
        """``β̃ = (T β − c_y e_0) / s_y``, the inverse of ``beta_from_std``."""
        cols = self.columns
        out = cols.fe_matrix() @ np.asarray(beta, dtype=np.float64)
        if cols.x_intercept >= 0:
            out[cols.x_intercept] -= cols.y_shift
        elif cols.y_shift != 0.0 and (ones := cols.y_ones()) is not None:
            out -= cols.y_shift * ones  # the constant made by columns (0 + C(c))
        return out / cols.y_scale

    # -- the model's quantities ---------------------------------------------------------

    def loglike(self, point: Point) -> float:
        """ℓ at ``point`` (σ² profiled; β given or profiled).

        ``ℓ = −½ Σ log|K_i| [− ½ log|A|] − (f/2) log Q(β) + (f/2)(log f − log 2π − 1)``;
        ``−inf`` where ``Q ≤ 0`` or ``A`` is not positive definite (with
        :attr:`re_names`, the :class:`~dmixed.errors.DataError` of :meth:`check` instead).
        """
        try:
            step, prof = self.evaluate(point)
        except np.linalg.LinAlgError:
            return -np.inf
        llf = loglike(step, prof, self.glob, self.reml)
        return self.to_statistics.llf(llf, self.glob.n, self.reml)

    def scale(self, point: Point) -> float:
        """σ² at ``point``: ``Q(β) / f`` in the data's units (β given or profiled)."""
        _, prof = self.evaluate(point)
        return self.to_statistics.scale(prof.scale)

    def fe_params(self, lam: np.ndarray) -> np.ndarray:
        """The GLS estimate ``β̂ = (X'V*⁻¹X)⁻¹ X'V*⁻¹y`` (p,) at ``lam``."""
        _, prof = self.evaluate(Point(lam), estimate=True)
        return self.columns.beta_from_std(prof.beta)

    def score_parts(self, point: Point) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The score at ``point`` as ``(∂ℓ/∂β (p,), D (q, q), ∂ℓ/∂τ* (d,))``.

        ``D`` is symmetric with ``dℓ = Σ_ab D_ab dΨ*_ab`` (entries treated as free):
        ``D = A' D̃ A``; ``∂ℓ/∂τ*_l = s_l² ∂ℓ/∂τ̃_l``; ``∂ℓ/∂β = T' ∂ℓ/∂β̃ / s_y`` with
        ``∂ℓ/∂β̃ = f (b̃ − Ãβ̃) / Q̃`` (zero at the GLS estimate).
        """
        step, prof = self.evaluate(point)
        lay = self.layout
        d_psi, d_tau = score_matrices(step, prof, self.reml, lay.slot_component, lay.k_vc)
        a = self.columns.psi_matrix()
        d_psi = a.T @ d_psi @ a
        d_tau = d_tau * self.columns.tau_root_scales(lay.k_vc) ** 2
        g_std = prof.fac * (prof.b - prof.a @ prof.beta) / prof.q
        g_fe = self.columns.fe_matrix().T @ g_std / self.columns.y_scale
        return g_fe, 0.5 * (d_psi + d_psi.T), d_tau

    def hessian(self, point: Point) -> np.ndarray:
        """Hessian of ℓ(β, θ) (σ² profiled, β free) in ``[β, vech_lt(Ψ*), τ*]``.

        An off-diagonal ``vech_lt`` entry stands for both ``Ψ*_ab`` and ``Ψ*_ba``
        (statsmodels' convention).  ``H = J' H̃ J`` with ``H̃`` from
        :func:`dmixed.fit.objective.hessian` at β̃ (the given β, or β̂).  Raises
        ``np.linalg.LinAlgError`` where a factorization fails.
        """
        step, prof = self.evaluate(point)
        lam_std = self.to_statistics.to_statistics(point.lam)
        hs = self.engine.hessian(
            lam_std, self.layout.basis(), prof.w, a_inv=prof.a_inv, reml=self.reml
        )
        h_std = hessian(step, hs, prof.beta, self.glob, self.reml)
        out = self.jacobian.T @ h_std @ self.jacobian
        return 0.5 * (out + out.T)
