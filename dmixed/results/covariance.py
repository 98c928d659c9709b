"""The covariance of the estimates from the Hessian at the optimum (DESIGN.md §5).

statsmodels reports ``cov_params() = inv(−H)`` with H the Hessian of ℓ(β, θ) (σ²
profiled) in ``[β, vech(Ψ*), τ*]``; lme4 reports ``σ̂²(X'V⁻¹X)⁻¹`` for the fixed effects.
:func:`covariance_of_estimates` gives the first by default and the second on request,
and falls back to the second, with a warning, where the Hessian says nothing about β.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import SingularHessianWarning, warn, warnings_dropped
from ..kernels import small_linalg
from .identification import (
    TRADE_EIGENVALUE,
    ScaledInformation,
    identified_directions,
    scaled_information,
)

__all__ = ["FE_INFLATION_BOUNDS", "covariance_of_estimates", "fe_block_defined"]


def covariance_of_estimates(
    hessian,
    *,
    k: int,
    k_fe: int,
    at_zero: np.ndarray,
    conditional: np.ndarray,
    cov_fe: str,
    identifiable: bool = True,
    free: np.ndarray | None = None,
    information: ScaledInformation | None = None,
) -> np.ndarray:
    """``inv(−H)``, as statsmodels, also on the boundary when that is a covariance.

    Covariance parameters held at their start values (``free`` False: ``fit(free=...)``)
    are not estimates: their rows and columns are zero and the others come from the
    Hessian without them, as statsmodels' ``MixedLM.fit`` does.

    A variance at zero (``at_zero``) sits at the edge of the parameter space.
    statsmodels inverts the whole Hessian there too, and we match it whenever the
    result is a covariance matrix (positive diagonal).  When it is not, the variances
    pinned at zero get NaN rows and columns and the other entries come from the
    sub-Hessian without them (as statsmodels does for parameters held fixed with
    ``free``).

    Covariance parameters the data do not identify (an exact trade between them,
    :func:`~dmixed.results.identification.identified_directions` at
    :data:`~dmixed.results.identification.TRADE_EIGENVALUE`) get NaN rows and
    columns, and the others come from the Hessian in the directions the data identify
    (:func:`_identified_only`): inverted whole, the flat direction is rounding noise
    divided by (almost) zero, and whether it passes for a covariance would depend on
    the order of the sums (on how the rows are split into partitions).

    The β block is ``conditional`` (lme4's ``σ̂²(X'V⁻¹X)⁻¹``) with ``cov_fe=
    "conditional"`` (β then uncorrelated with θ), and also, whatever ``cov_fe`` says,
    where the Hessian says nothing about β: a model that is not ``identifiable``
    (fitted with ``check_nobs="ignore"``), or a Hessian singular or not negative
    definite in a direction involving β (:func:`fe_block_defined`).  The full inverse's
    β block is then rounding noise divided by (almost) zero, and β's covariances with
    θ are NaN.

    Parameters
    ----------
    hessian : ndarray (k, k) or None
        Hessian of ℓ in ``[β, vech(Ψ*), τ*]``; None (not computed) gives all NaN, and a
        Hessian with non-finite entries (it could not be computed) conditional β only.
    k, k_fe : int
        Number of parameters, of fixed effects (the first ``k_fe``).
    at_zero : ndarray of bool (k − k_fe,)
        Covariance parameters settled at zero.
    conditional : ndarray (k_fe, k_fe)
        ``σ̂²(X'V⁻¹X)⁻¹``.
    cov_fe : {"hessian", "conditional"}
    identifiable : bool
        False for a model that :func:`dmixed.stats.check_identifiable` refuses.
    free : ndarray of bool (k − k_fe,), optional
        Covariance parameters estimated (default: all); the others were held fixed.
    information : ScaledInformation, optional
        :func:`~dmixed.results.identification.scaled_information` of ``hessian``,
        ``k_fe`` and ``at_zero`` where the caller has it (used with every parameter
        free only).

    Returns
    -------
    ndarray (k, k)

    Warns
    -----
    SingularHessianWarning
        Once: the Hessian is singular or not negative definite in θ (conditional β
        used); or a pseudo-inverse was used, or its inverse is not a covariance.
    """
    if hessian is None:
        return np.full((k, k), np.nan)
    if free is not None and not np.asarray(free, dtype=bool).all():
        return _with_held(
            hessian, k_fe, np.asarray(free, dtype=bool), at_zero, conditional, cov_fe, identifiable
        )
    if identifiable:
        if information is None:
            information = scaled_information(hessian, k_fe, at_zero)
        if information.flat_parameters(TRADE_EIGENVALUE).size:  # the basis only then
            involved, basis = identified_directions(
                hessian, k_fe, at_zero, TRADE_EIGENVALUE, information
            )
            return _identified_only(hessian, k_fe, involved, basis, conditional, cov_fe)
    p = k_fe
    keep = None  # every parameter (none at zero), else a mask
    if np.count_nonzero(at_zero):
        keep = np.empty(k, dtype=bool)
        keep[:k_fe] = True
        keep[k_fe:] = ~at_zero
    # a decomposed information was made of a finite Hessian
    made = information is not None and information.w is not None
    finite = (identifiable and made) or bool(np.isfinite(hessian).all())
    info = -hessian if keep is None else -hessian[np.ix_(keep, keep)]
    defined = identifiable and finite and fe_block_defined(info, p)
    if not defined and p:
        why = (
            "the Hessian is singular or not negative definite in a direction involving the "
            "fixed effects"
            if identifiable
            else "the model is not identifiable (fitted with check_nobs='ignore')"
        )
        warn(
            f"{why}: the standard errors of the fixed effects are the conditional "
            "sigma^2 (X'V^-1 X)^-1",
            SingularHessianWarning,
        )
    if not finite:
        cov = np.full((k, k), np.nan)
    elif defined or not p:
        cov = _full_inverse(hessian, keep, info if keep is None else None)
    else:
        with warnings_dropped():  # said above, in one warning
            cov = _full_inverse(hessian, keep, info if keep is None else None)
    if cov_fe == "conditional" or not defined:
        has_se = np.isfinite(cov.diagonal())
        cov[:p, :p] = conditional
        cov[:p, p:] = np.where(has_se[p:] & defined, 0.0, np.nan)
        cov[p:, :p] = cov[:p, p:].T
    return cov


def _with_held(hessian, k_fe, free, at_zero, conditional, cov_fe, identifiable):
    """:func:`covariance_of_estimates` over the estimated parameters (β and ``free``),
    zero in the rows and columns of the parameters held fixed (statsmodels)."""
    keep = np.concatenate([np.ones(k_fe, dtype=bool), free])
    k = keep.size
    sub = covariance_of_estimates(
        hessian[np.ix_(keep, keep)],
        k=int(keep.sum()),
        k_fe=k_fe,
        at_zero=np.asarray(at_zero, dtype=bool)[free],
        conditional=conditional,
        cov_fe=cov_fe,
        identifiable=identifiable,
    )
    cov = np.zeros((k, k))
    cov[np.ix_(keep, keep)] = sub
    return cov


def _identified_only(hessian, k_fe, involved, basis, conditional, cov_fe):
    """:func:`covariance_of_estimates` of a Hessian with flat directions in θ: that of
    β and of the identified directions of θ (``basis``, k − k_fe × m), mapped back, with
    NaN rows and columns for the covariance parameters ``involved`` in a flat direction
    and for those outside the basis (at zero).  Along an exact trade ℓ does not depend
    on β either, so β's block is the same whatever directions complete the basis."""
    p, m = k_fe, basis.shape[1]
    k = p + basis.shape[0]
    t = np.zeros((k, p + m))
    t[:p, :p] = np.eye(p)
    t[p:, p:] = basis
    sub = covariance_of_estimates(
        t.T @ hessian @ t,
        k=p + m,
        k_fe=p,
        at_zero=np.zeros(m, dtype=bool),
        conditional=conditional,
        cov_fe=cov_fe,
    )
    cov = np.empty((k, k))
    cov[:p, :p] = sub[:p, :p]
    cov[:p, p:] = sub[:p, p:] @ basis.T
    cov[p:, :p] = cov[:p, p:].T
    cov[p:, p:] = basis @ sub[p:, p:] @ basis.T
    unknown = ~np.any(basis != 0.0, axis=1)
    unknown[involved] = True
    cov[p + np.flatnonzero(unknown), :] = np.nan
    cov[:, p + np.flatnonzero(unknown)] = np.nan
    return cov


def _full_inverse(
    hessian: np.ndarray, keep: np.ndarray | None, info: np.ndarray | None = None
) -> np.ndarray:
    """``inv(−H)``, or that of the sub-Hessian ``keep`` (None: all of it; NaN
    elsewhere); see :func:`covariance_of_estimates`.  ``info``: ``−H`` where the caller
    has it."""
    k = hessian.shape[0]
    cov = _inverse_or_none(-hessian if info is None else info)
    if cov is None or np.count_nonzero(cov.diagonal() <= 0):
        if keep is None:
            keep = np.ones(k, dtype=bool)
        sub = _inverse_or_none(-hessian[np.ix_(keep, keep)])
        if sub is None:
            warn(
                "the Hessian is singular at the optimum; using a pseudo-inverse",
                SingularHessianWarning,
            )
            sub = np.linalg.pinv(-hessian[np.ix_(keep, keep)])
        cov = np.full((k, k), np.nan)
        cov[np.ix_(keep, keep)] = sub
        if np.any(np.diag(sub) <= 0):
            warn(
                "the Hessian matrix at the estimated parameter values is not negative definite",
                SingularHessianWarning,
            )
    return cov


#: Bounds on the eigenvalues of ``C⁻¹Δ`` (:func:`fe_block_defined`): below the first
#: the full inverse gives β a smaller variance than its conditional one (impossible at a
#: maximum), above the second it is dominated by a (numerically) flat direction.
FE_INFLATION_BOUNDS = (-1e-6, 1e8)


def fe_block_defined(info: np.ndarray, p: int) -> bool:
    """Whether the β block of ``inv(info)`` (``info = −H``, β first) means anything.

    With ``C = info_ββ⁻¹`` (``σ̂²A⁻¹``: positive definite, its Cholesky gave β̂) and the
    Schur complement ``S = info_θθ − info_θβ C info_βθ``, the β block is
    ``C + Δ``, ``Δ = C info_βθ S⁻¹ info_θβ C``.  It is taken as meaningful when S is
    invertible and the eigenvalues of ``C⁻¹Δ`` (the relative inflation of β's variance
    by the uncertainty of θ) lie within :data:`FE_INFLATION_BOUNDS`.  Those eigenvalues
    do not change under any linear reparametrization of β or of θ, so neither units
    nor offsets of the columns (which mix the entries of Ψ) move the decision, as a
    threshold on S itself would.  A direction of S that does not involve β
    (``info_βθ v = 0``) does not matter.
    """
    if info.shape[0] == p or p == 0:
        return True
    low, high = FE_INFLATION_BOUNDS
    # info positive definite (a maximum): one Cholesky factor L of it holds both,
    # L_ββ L_ββ' = info_ββ and L_θθ L_θθ' = S, with L_θβ = info_θβ L_ββ⁻ᵀ; then
    # C⁻¹Δ is similar to W'W, W = L_θθ⁻¹ L_θβ, positive semidefinite, so only its
    # largest eigenvalue can leave the bounds, and that is at most trace(W'W)
    try:
        chol = small_linalg.cholesky(0.5 * (info + info.T))
    except np.linalg.LinAlgError:
        return _fe_block_defined_general(info, p)
    w = small_linalg.solve(chol[p:, p:], chol[p:, :p])
    if not all(map(math.isfinite, w.ravel().tolist())):  # a few entries: in floats
        return False
    if np.vdot(w, w) <= high:
        return True
    rel = w.T @ w
    eig = small_linalg.eigvalsh(0.5 * (rel + rel.T))
    return bool(eig.min() >= low and eig.max() <= high)


def _fe_block_defined_general(info: np.ndarray, p: int) -> bool:
    """:func:`fe_block_defined` of an ``info`` that is not positive definite in
    floating point: from the Schur complement S, which may be indefinite or singular."""
    ibb, ibt, itt = info[:p, :p], info[:p, p:], info[p:, p:]
    try:
        chol = np.linalg.cholesky(0.5 * (ibb + ibb.T))
        half = np.linalg.solve(chol, ibt)  # L⁻¹ info_βθ, with C = L⁻ᵀL⁻¹
        schur = itt - half.T @ half
        schur = 0.5 * (schur + schur.T)
        # C⁻¹Δ is similar to L⁻¹ info_βθ S⁻¹ info_θβ L⁻ᵀ (symmetric)
        try:  # S positive definite: computed as a Gram matrix, never below zero
            w = np.linalg.solve(np.linalg.cholesky(schur), half.T)
            rel = w.T @ w
        except np.linalg.LinAlgError:  # S indefinite or singular in floating point
            rel = half @ np.linalg.solve(schur, half.T)
    except np.linalg.LinAlgError:
        return False
    if not np.isfinite(rel).all():
        return False
    low, high = FE_INFLATION_BOUNDS
    eig = np.linalg.eigvalsh(0.5 * (rel + rel.T))
    return bool(eig.min() >= low and eig.max() <= high)


def _inverse_or_none(mat: np.ndarray) -> np.ndarray | None:
    try:
        inv = small_linalg.inv(mat)
    except np.linalg.LinAlgError:
        return None
    return inv if np.isfinite(inv).all() else None
