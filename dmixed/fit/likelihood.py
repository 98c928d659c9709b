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

import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..errors import DataError, PrecisionWarning
from ..kernels import StepSums
from ..stats import GlobalStats, Layout, Standardization
from .coordinates import Coordinates
from .fit_warnings import PRECISION_WARN_ABOVE
from .objective import (
    RESOLVED,
    Profile,
    hessian,
    loglike,
    precision_shares,
    profile,
    quadratic_form,
    resolution_verdict,
    score_matrices,
)

__all__ = ["Likelihood", "Point", "SINGULAR_TOL"]

#: statsmodels' tolerance: Ψ* with an eigenvalue, or a τ*, below it is "singular".
SINGULAR_TOL = 1e-10


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
        (:meth:`check`): where the float64 sums do not resolve ℓ a
        :class:`~dmixed.errors.DataError` naming the random-effects columns far from
        zero, and a :class:`~dmixed.errors.PrecisionWarning` where they resolve it
        coarsely; None (the profile likelihoods' own use): ``np.linalg.LinAlgError``
        and ``−inf`` as the objective gives them.
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

    def evaluate(self, point: Point) -> tuple[StepSums, Profile]:
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
            raise self.unresolved(lam_std) from None
        if self.re_names is not None:
            self.check(step, prof, lam_std)
        if point.beta is None:
            return step, prof
        beta_std = self.beta_to_std(point.beta)
        q = quadratic_form(step, self.glob, beta_std)
        return step, replace(prof, beta=beta_std, q=q)

    def check(self, step: StepSums, prof: Profile, lam_std: np.ndarray) -> None:
        """Whether the float64 sums resolve ℓ at the evaluation ``(step, prof)`` (Λ̃ =
        ``lam_std``): a :class:`~dmixed.errors.DataError` (:meth:`unresolved`) where
        ``Q`` is not positive or not finite or the fit's own test rejects the point
        (:func:`~dmixed.fit.objective.resolution_verdict` other than ``RESOLVED``: the
        sums or ``A = X'V*⁻¹X``'s factor do not resolve ℓ); a
        :class:`~dmixed.errors.PrecisionWarning` where the relative error that
        :func:`~dmixed.fit.objective.precision_shares` bounds (the fit's precision
        warning) may exceed :data:`~dmixed.fit.fit_warnings.PRECISION_WARN_ABOVE`.

        A user's Ψ* on a random-effects column far from zero maps to a Λ̃ with entries
        of the column's offset over its spread: the kernels' ``[X y]'[X y] − Σ m_i``
        then subtracts terms that agree to about that ratio squared times ε, which the
        factor's share of the bound sees.
        """
        if not (prof.q > 0 and np.isfinite(prof.q)):
            raise self.unresolved(lam_std)
        if resolution_verdict(step, prof, self.glob, self.reml) != RESOLVED:
            # the fit's own test of every point it moves to: past it the bound below
            # no longer holds (ℓ, and β̂ along A's weak direction, follow rounding)
            raise self.unresolved(lam_std)
        base, factor = precision_shares(step, prof, self.glob, self.reml)
        rel = base + factor
        if not rel > PRECISION_WARN_ABOVE:
            return
        if not np.isfinite(rel):
            raise self.unresolved(lam_std)
        warnings.warn(
            "the float64 statistics resolve the log-likelihood at these parameters only "
            f"coarsely: the llf may be off by up to {0.5 * prof.fac * rel:.1g} (a bound on "
            "the rounding of the sums and of X'V^-1 X's factor)"
            f"{self._offset_words(lam_std)}",
            PrecisionWarning,
            stacklevel=5,
        )

    def unresolved(self, lam_std: np.ndarray) -> DataError:
        """The :class:`~dmixed.errors.DataError` of a point where the float64 sums do not
        resolve ℓ (``X'V*⁻¹X`` not positive definite to their rounding, or ``Q ≤ 0``),
        naming the random-effects columns far from zero (:meth:`_offset_words`)."""
        return DataError(
            "the log-likelihood cannot be evaluated at these parameters from the float64 "
            "statistics: X'V^-1 X is singular to the rounding of their sums there (the "
            "fixed effects nearly indistinguishable after the random effects, as at very "
            f"large or perfectly correlated variances){self._offset_words(lam_std)}"
        )

    def _offset_words(self, lam_std: np.ndarray) -> str:
        """``"; …"`` naming each ``exog_re`` column whose map has a shift (its offset
        from zero and its spread) and the variance the point puts on the random
        intercept's direction in the columns' centred coordinates; ``""`` where no
        column is shifted."""
        cols = self.columns
        names = self.re_names or ()
        offsets = cols.model_z_shift()
        shown = [
            f"{names[j] if j < len(names) else j!r} (values about {offsets[j]:.6g}, "
            f"spread about {cols.z_scale[j]:.3g})"
            for j in range(offsets.shape[0])
            if offsets[j] != 0.0
        ]
        if not shown or cols.z_intercept < 0:
            return ""
        i = cols.z_intercept
        # Λ̃'s intercept row in the statistics' (centred, scaled) coordinates, scaled
        # back to the model's units of the intercept (whose scale is 1)
        variance = float(lam_std[i, : self.layout.k_re] @ lam_std[i, : self.layout.k_re])
        return (
            f"; the random-effects column {', '.join(shown)} lies far from zero next to "
            "its spread, so this cov_re is, about the column's centre, a random "
            f"intercept of variance {variance:.2g} (times the scale), whose direction the "
            "sums about that centre resolve only to the ratio squared times float64's "
            "precision: cov_re of moderate size for the centred column evaluates exactly"
        )

    def beta_to_std(self, beta: np.ndarray) -> np.ndarray:
        """``β̃ = (T β − c_y e_0) / s_y``, the inverse of ``beta_from_std``."""
        cols = self.columns
        out = cols.fe_matrix() @ np.asarray(beta, dtype=np.float64)
        if cols.x_intercept >= 0:
            out[cols.x_intercept] -= cols.y_shift
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
        _, prof = self.evaluate(Point(lam))
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
