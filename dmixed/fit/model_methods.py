"""statsmodels' model-level likelihood API for :class:`dmixed.MixedLM` (seed document).

``loglike``, ``score``, ``score_full``, ``score_sqrt``, ``hessian``, ``information`` and
``get_fe_params`` with statsmodels' arguments, packings and return values, computed
from the model's per-group statistics (:class:`dmixed.fit.likelihood.Likelihood`): the
first call makes the data pass (or reuses the fit's statistics), every later call
reuses them.  Parameters are on statsmodels' scale: ``cov_re`` = Ψ* = Ψ/σ²,
``vcomp`` = τ* = τ²/σ², σ² profiled out; with ``profile_fe`` β is replaced by its GLS
estimate.  ``params`` is a :class:`~dmixed.fit.params.MixedLMParams` (or statsmodels' own,
or any object with ``fe_params``, ``cov_re`` and ``vcomp``) or a packed vector
in the model's ``use_sqrt`` packing (covariance parameters only, except for
:meth:`~LikelihoodMethods.hessian`, whose vector starts with β as statsmodels').

Outside the parameter space (an indefinite Ψ*, a negative τ*; only reachable with the
plain packing or a :class:`MixedLMParams`) ``loglike`` is −inf and the score and the
Hessian are NaN (statsmodels returns numbers computed from a pseudo-inverse there).

Inside it, every evaluation is checked against the float64 statistics' rounding
(:meth:`dmixed.fit.likelihood.Likelihood.check`; it matters for a random slope on a
column far from zero next to its spread, where a Ψ* is a huge random-intercept variance
about the column's centre).  A :class:`~dmixed.errors.PrecisionWarning` states a bound
on the llf's error and its cause where that bound exceeds about 1e-7 relative (the
score, the Hessian and β̂ are moved by the same rounding, without a stated bound); a
:class:`~dmixed.errors.DataError` naming the cause, the column and its offset is raised
only where no finite bound exists or ℓ would be −inf or NaN, and by ``get_fe_params``
where ``X'V*⁻¹X``'s factor does not resolve β̂ (ML's ℓ, score and Hessian are evaluated
there: they feel β̂'s error only at second order).  The remedy the messages give:
centre the column (in the data, or ``center(x)`` in the formulas).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import SpecError
from ..stats import n_tril, tril_indices
from .likelihood import SINGULAR_TOL, Likelihood, Point
from .options import check_flag
from .params import MixedLMParams

__all__ = ["LikelihoodMethods"]


class LikelihoodMethods:
    """Mixin: the statsmodels model API over the statistics of :meth:`statistics`.

    The class using it provides ``k_fe``, ``k_re``, ``k_vc``, ``use_sqrt``,
    ``statistics(client=...)``, ``cached_statistics`` and ``cached_client``;
    ``reml`` (True until a fit sets it, as statsmodels) chooses REML or ML.
    """

    #: REML (True) or ML: the criterion of the likelihood methods (set by ``fit``).
    reml: bool = True
    # provided by the class using the mixin (annotations only: no attributes here)
    k_fe: int
    k_re: int
    k_vc: int
    use_sqrt: bool
    exog_re_names: list[str]
    cached_statistics: Any
    cached_client: Any
    statistics: Callable[..., Any]

    def likelihood(self) -> Likelihood:
        """The :class:`~dmixed.fit.likelihood.Likelihood` over this model's statistics
        (the cached ones when there are: no data pass after the first)."""
        client = self.cached_client if self.cached_statistics is not None else None
        stats = self.statistics(client=client)
        # one slot per variance component where the engine holds them structured
        layout = stats.fit_layout
        return Likelihood(
            stats.engine,
            stats.glob,
            layout,
            stats.columns,
            bool(self.reml),
            tuple(self.exog_re_names),
        )

    # -- statsmodels' methods ------------------------------------------------------

    def loglike(self, params, profile_fe: bool = True) -> float:
        """The profile log-likelihood (σ² profiled; β too with ``profile_fe``).

        Parameters
        ----------
        params : MixedLMParams or array_like (k_re2 + k_vc,)
            A point, or ``[vech_lt(L), √τ*]`` (``use_sqrt``) / ``[vech_lt(Ψ*), τ*]``.
        profile_fe : bool
            Replace β by its GLS estimate (a packed vector has no β: it is 0 otherwise).

        Returns
        -------
        float
            ``ℓ = −½ Σ log|V*_i| [− ½ log|X'V*⁻¹X|] − (f/2) log Q + (f/2)(log f − log 2π − 1)``
            with ``Q = Σ r_i'V*_i⁻¹r_i``, ``f = n`` (ML) or ``n − p`` (REML); −inf outside
            the parameter space.

        Raises
        ------
        SpecError
            ``params`` of other dimensions than the model, non-finite, or with an
            asymmetric ``cov_re``; ``profile_fe`` not a bool
            (:func:`~dmixed.fit.options.check_flag`).
        DataError
            ℓ has no finite bound from the float64 statistics at ``params``, or would be
            −inf or NaN (the module).

        Warns
        -----
        PrecisionWarning
            They resolve it coarsely: the message bounds the llf's error and names the
            cause.

        Notes
        -----
        Source: ``statsmodels.regression.mixed_linear_model.MixedLM.loglike``.
        """
        profile_fe = bool(check_flag(profile_fe, "profile_fe"))
        lik = self.likelihood()
        pa, lam, _ = self._resolve(params, False, lik)
        if lam is None:
            return -np.inf
        beta = None if profile_fe else pa.fe_params
        return lik.loglike(Point(lam, beta))

    def score(self, params, profile_fe: bool = True) -> np.ndarray:
        """The score of :meth:`loglike` in the model's packing.

        Parameters
        ----------
        params : MixedLMParams or array_like (k_re2 + k_vc,)
            As :meth:`loglike`.
        profile_fe : bool
            β replaced by its GLS estimate, and left out of the result.

        Returns
        -------
        ndarray (k_re2 + k_vc,), or (k_fe + k_re2 + k_vc,) without ``profile_fe``
            :meth:`score_sqrt` with ``use_sqrt``, else :meth:`score_full`, concatenated
            (β first when not profiled).  The profiled score equals the unprofiled one
            at β̂ (envelope theorem).

        Raises
        ------
        SpecError, DataError
            As :meth:`loglike` (and its PrecisionWarning).

        Notes
        -----
        Source: ``statsmodels.regression.mixed_linear_model.MixedLM.score``.  A packed
        vector is differentiated at its own ``L`` and ``s`` (statsmodels re-factors Ψ*
        to a positive diagonal there, which flips the signs of rows of L with a negative
        diagonal entry: its score is then not the gradient of its own ``loglike``).
        """
        profile_fe = bool(check_flag(profile_fe, "profile_fe"))
        lik = self.likelihood()
        pa, lam, sqrt_vec = self._resolve(params, False, lik)
        beta = None if profile_fe else pa.fe_params
        parts = self._score(lik, Point(lam, beta), pa, sqrt_vec, self.use_sqrt)
        return np.concatenate(parts[1:] if profile_fe else parts)

    def score_full(self, params, calc_fe: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The score with respect to ``[β, vech_lt(Ψ*), τ*]`` at the given β.

        ``∂ℓ/∂β = f X'V*⁻¹(y − Xβ)/Q``;  ``∂ℓ/∂θ_j = −½ tr(V*⁻¹ ∂V*/∂θ_j) +
        (f/2Q) r'V*⁻¹ (∂V*/∂θ_j) V*⁻¹r [+ REML: ½ tr((X'V*⁻¹X)⁻¹ X'V*⁻¹(∂V*/∂θ_j)V*⁻¹X)]``,
        an off-diagonal ``vech_lt`` entry standing for both ``Ψ*_ab`` and ``Ψ*_ba``.

        Parameters
        ----------
        params : MixedLMParams or array_like (k_re2 + k_vc,)
            The point (a packed vector: β = 0).
        calc_fe : bool
            Compute ``∂ℓ/∂β`` (else zeros).

        Returns
        -------
        score_fe : ndarray (k_fe,)
        score_re : ndarray (k_re2,)
        score_vc : ndarray (k_vc,)

        Raises
        ------
        SpecError
            ``params`` as :meth:`loglike`; ``calc_fe`` not a bool
            (:func:`~dmixed.fit.options.check_flag`).
        DataError
            As :meth:`loglike` (and its PrecisionWarning).

        Notes
        -----
        Source: ``statsmodels.regression.mixed_linear_model.MixedLM.score_full``.
        """
        return self._score_at(params, calc_fe, use_sqrt=False)

    def score_sqrt(self, params, calc_fe: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The score with respect to ``[β, vech_lt(L), s]`` (Ψ* = LL', τ* = s²).

        ``∂ℓ/∂L = lower_tri(2 D L)`` and ``∂ℓ/∂s_l = 2 s_l ∂ℓ/∂τ*_l`` (D symmetric,
        ``dℓ = Σ_ab D_ab dΨ*_ab``), at the packed vector's own ``L`` and ``s``, or at
        the Cholesky factor of a :class:`MixedLMParams`' ``cov_re``.

        Parameters
        ----------
        params, calc_fe :
            As :meth:`score_full`.

        Returns
        -------
        score_fe : ndarray (k_fe,)
        score_re : ndarray (k_re2,)
        score_vc : ndarray (k_vc,)

        Notes
        -----
        Source: ``statsmodels.regression.mixed_linear_model.MixedLM.score_sqrt``.
        """
        return self._score_at(params, calc_fe, use_sqrt=True)

    def hessian(self, params) -> tuple[np.ndarray, bool]:
        """The Hessian of ℓ(β, θ) (σ² profiled, β free) w.r.t. ``[β, vech_lt(Ψ*), τ*]``.

        Its negative inverse at the estimates is statsmodels' ``cov_params()``
        (formulas: DESIGN.md §5; :func:`dmixed.fit.objective.hessian`).

        Parameters
        ----------
        params : MixedLMParams or array_like (k_fe + k_re2 + k_vc,)
            A point, or ``[β, …]`` in the model's ``use_sqrt`` packing (statsmodels'
            ``results.params`` is in the plain packing: pass a :class:`MixedLMParams`).

        Returns
        -------
        hess : ndarray (k_fe + k_re2 + k_vc, k_fe + k_re2 + k_vc)
            NaN outside the parameter space or where a factorization fails.
        sing : bool
            Ψ* has an eigenvalue, or a τ* is, below 1e-10 (statsmodels'
            pseudo-inverse case; here the value is exact there too).

        Raises
        ------
        DataError
            As :meth:`loglike` (and its PrecisionWarning).

        Notes
        -----
        Source: ``statsmodels.regression.mixed_linear_model.MixedLM.hessian`` (which
        returns ``(hess, sing)`` too).  statsmodels' β rows leave out the terms in
        ``∂Q/∂β``, which vanish only at the GLS estimate: away from it this is the
        Hessian of its ``loglike(params, profile_fe=False)``, and statsmodels' is not.
        """
        lik = self.likelihood()
        pa, lam, _ = self._resolve(params, True, lik)
        sing = singular(pa)
        if lam is None:
            return np.full((pa.k_tot, pa.k_tot), np.nan), sing
        try:
            hess = lik.hessian(Point(lam, pa.fe_params))
        except np.linalg.LinAlgError:
            hess = np.full((pa.k_tot, pa.k_tot), np.nan)
        return hess, sing

    def information(self, params) -> np.ndarray:
        """The observed information: minus :meth:`hessian` at ``params``.

        Parameters
        ----------
        params : MixedLMParams or array_like (k_fe + k_re2 + k_vc,)
            As :meth:`hessian`'s.

        Returns
        -------
        ndarray (k_fe + k_re2 + k_vc, k_fe + k_re2 + k_vc)
            NaN where :meth:`hessian` is.

        Notes
        -----
        statsmodels' ``LikelihoodModel.information`` (``-1 * Hessian of the
        log-likelihood evaluated at params``), which its MixedLM leaves unimplemented.
        """
        return -self.hessian(params)[0]

    def get_fe_params(self, cov_re, vcomp, tol: float = SINGULAR_TOL) -> tuple[np.ndarray, bool]:
        """The GLS estimate ``β̂ = (X'V*⁻¹X)⁻¹ X'V*⁻¹y`` at ``(Ψ*, τ*)``.

        Parameters
        ----------
        cov_re : array_like (k_re, k_re)
            Ψ*, positive semi-definite.
        vcomp : array_like (k_vc,)
            τ*.
        tol : float
            ``sing`` when an eigenvalue of Ψ* or a τ* is below it.

        Returns
        -------
        fe_params : ndarray (k_fe,)
            Exact on the boundary too (Λ-form; statsmodels uses a pseudo-inverse there).
        sing : bool

        Raises
        ------
        SpecError
            Dimensions other than the model's, or Ψ* not positive semi-definite.
        DataError
            As :meth:`loglike`, and where ``X'V*⁻¹X``'s factor does not resolve β̂
            (β̂ along its weakest direction would follow the rounding).

        Notes
        -----
        Source: ``statsmodels.regression.mixed_linear_model.MixedLM.get_fe_params``.
        """
        lik = self.likelihood()
        pa, lam = self._components(np.zeros(self.k_fe), cov_re, vcomp, lik)
        return lik.fe_params(lam), singular(pa, tol)

    def get_scale(self, fe_params, cov_re, vcomp) -> float:
        """The residual variance σ² implied by ``(β, Ψ*, τ*)``: ``Q(β) / f``.

        ``Q(β) = (y − Xβ)'V*⁻¹(y − Xβ)`` and ``f = n − k_fe`` (REML) or ``n`` (ML), by the
        model's ``reml`` (set by ``fit``; True before, as statsmodels).

        Parameters
        ----------
        fe_params : array_like (k_fe,)
            β.
        cov_re : array_like (k_re, k_re)
            Ψ*, positive semi-definite.
        vcomp : array_like (k_vc,)
            τ*.

        Returns
        -------
        scale : float

        Raises
        ------
        SpecError
            ``fe_params``, ``cov_re`` or ``vcomp`` not of the model's dimensions, or Ψ* not
            positive semi-definite.

        Notes
        -----
        Source: ``statsmodels.regression.mixed_linear_model.MixedLM.get_scale``; exact on
        the boundary too (statsmodels takes a pseudo-inverse of a singular Ψ* and warns).
        """
        lik = self.likelihood()
        pa, lam = self._components(fe_params, cov_re, vcomp, lik)
        return lik.scale(Point(lam, pa.fe_params))

    # -- helpers -----------------------------------------------------------------

    def _resolve(self, params, has_fe: bool, lik: Likelihood):
        """``(MixedLMParams, Λ or None outside the space, sqrt-packed covariance vector)``."""
        k = (self.k_fe, self.k_re, self.k_vc)
        if not isinstance(params, MixedLMParams) and hasattr(params, "cov_re"):
            # statsmodels' own MixedLMParams (code ported with its import kept)
            params = MixedLMParams.from_components(
                getattr(params, "fe_params", None), params.cov_re, vcomp=params.vcomp
            )
        if isinstance(params, MixedLMParams):
            pa = params
            pa.check_dimensions(*k)
            packed, use_sqrt = pa.get_packed(use_sqrt=False), False
        else:
            packed = np.asarray(params, dtype=np.float64)
            head = k[0] if has_fe else 0
            n_expected = head + n_tril(k[1]) + k[2]
            if packed.shape != (n_expected,):
                raise SpecError(
                    f"params has shape {packed.shape}; expected ({n_expected},): "
                    f"{head} fixed effects, {n_tril(k[1])} for cov_re, {k[2]} vcomp"
                )
            pa = MixedLMParams.from_packed(packed, k[0], k[1], self.use_sqrt, has_fe)
            pa.check_dimensions(*k)
            packed = packed[head:]
            use_sqrt = self.use_sqrt
        try:
            lam = lik.layout.lam(packed, use_sqrt)
        except np.linalg.LinAlgError:
            return pa, None, None
        sqrt_vec = packed if use_sqrt else pa.get_packed(use_sqrt=True)
        return pa, lam, sqrt_vec

    def _components(self, fe_params, cov_re, vcomp, lik: Likelihood):
        """``(MixedLMParams, Λ)`` of ``(β, Ψ*, τ*)``; SpecError outside the space."""
        pa = MixedLMParams.from_components(fe_params, cov_re, vcomp=vcomp)
        pa, lam, _ = self._resolve(pa, False, lik)
        if lam is None:
            raise_outside(pa)
        return pa, lam

    def _score_at(self, params, calc_fe: bool, use_sqrt: bool):
        """statsmodels' ``score_full`` / ``score_sqrt``: at the given β."""
        calc_fe = bool(check_flag(calc_fe, "calc_fe"))
        lik = self.likelihood()
        pa, lam, sqrt_vec = self._resolve(params, False, lik)
        fe, re, vc = self._score(lik, Point(lam, pa.fe_params), pa, sqrt_vec, use_sqrt)
        return (fe if calc_fe else np.zeros(pa.k_fe)), re, vc

    @staticmethod
    def _score(lik: Likelihood, point: Point, pa, sqrt_vec, use_sqrt: bool):
        """``(∂ℓ/∂β, ∂ℓ/∂cov_re part, ∂ℓ/∂vcomp part)`` in the packing ``use_sqrt``."""
        k2 = pa.k_re2
        if point.lam is None:
            nan = np.full(pa.k_tot, np.nan)
            return nan[: pa.k_fe], nan[pa.k_fe : pa.k_fe + k2], nan[pa.k_fe + k2 :]
        g_fe, d_psi, d_tau = lik.score_parts(point)
        g = lik.layout.score_packed(d_psi, d_tau, sqrt_vec, use_sqrt)
        return g_fe, g[:k2], g[k2:]


def singular(pa: MixedLMParams, tol: float = SINGULAR_TOL) -> bool:
    """statsmodels' ``sing``: an eigenvalue of Ψ* or a τ* below ``tol``."""
    small_re = pa.k_re > 0 and float(np.linalg.eigvalsh(pa.cov_re).min()) < tol
    return bool(small_re or (pa.k_vc > 0 and float(np.min(pa.vcomp)) < tol))


def raise_outside(pa: MixedLMParams) -> None:
    """A :class:`SpecError` for a point outside the parameter space."""
    rows, cols = tril_indices(pa.k_re)
    raise SpecError(
        "cov_re must be positive semi-definite and vcomp non-negative, got "
        f"cov_re lower triangle {pa.cov_re[rows, cols]} and vcomp {pa.vcomp}"
    )
