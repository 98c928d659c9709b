"""The covariance of the estimates from the Hessian at the optimum (DESIGN.md §5).

statsmodels reports ``cov_params() = inv(−H)`` with H the Hessian of ℓ(β, θ) (σ²
profiled) in ``[β, vech(Ψ*), τ*]``; lme4 reports ``σ̂²(X'V⁻¹X)⁻¹`` for the fixed effects.
:func:`covariance_of_estimates` gives the first by default and the second on request,
and falls back to the second, with a warning, where the Hessian says nothing about β.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import SingularHessianWarning

__all__ = ["HESSIAN_SINGULAR_RTOL", "covariance_of_estimates"]


def covariance_of_estimates(
    hessian, *, k: int, k_fe: int, at_zero: np.ndarray, conditional: np.ndarray, cov_fe: str
) -> np.ndarray:
    """``inv(−H)``, as statsmodels, also on the boundary when that is a covariance.

    A variance at zero (``at_zero``) sits at the edge of the parameter space.
    statsmodels inverts the whole Hessian there too, and we match it whenever the
    result is a covariance matrix (positive diagonal).  When it is not, the variances
    pinned at zero get NaN rows and columns and the other entries come from the
    sub-Hessian without them (as statsmodels does for parameters held fixed with
    ``free``).

    The β block is ``conditional`` (lme4's ``σ̂²(X'V⁻¹X)⁻¹``) with ``cov_fe=
    "conditional"`` (β then uncorrelated with θ), and also, whatever ``cov_fe`` says,
    where −H is singular or not positive definite in θ given β (its Schur complement,
    judged scaled to unit diagonal against :data:`HESSIAN_SINGULAR_RTOL`; e.g. an
    unidentifiable model fitted with ``check_nobs="ignore"``): the full inverse's β
    block is then rounding noise divided by zero, and β's covariances with θ are NaN.

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
    keep = np.ones(k, dtype=bool)
    keep[k_fe:] = ~at_zero
    p = k_fe
    finite = bool(np.all(np.isfinite(hessian)))
    defined = finite and _fe_block_defined(-hessian[np.ix_(keep, keep)], p)
    if not defined:
        detail = (
            ": the standard errors of the fixed effects are the conditional sigma^2 (X'V^-1 X)^-1"
            if p
            else ""
        )
        warnings.warn(
            "the Hessian is singular or not negative definite in the covariance parameters "
            f"at the optimum (is the model identifiable?){detail}",
            SingularHessianWarning,
            stacklevel=3,
        )
    with warnings.catch_warnings():
        if not defined:  # said above, in one warning
            warnings.simplefilter("ignore", SingularHessianWarning)
        cov = _full_inverse(hessian, keep) if finite else np.full((k, k), np.nan)
    has_se = np.isfinite(np.diag(cov))
    if cov_fe == "conditional" or not defined:
        cov[:p, :p] = conditional
        cov[:p, p:] = np.where(has_se[p:] & defined, 0.0, np.nan)
        cov[p:, :p] = cov[:p, p:].T
    return cov


def _full_inverse(hessian: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``inv(−H)``, or that of the sub-Hessian ``keep`` (NaN elsewhere); see
    :func:`covariance_of_estimates`."""
    k = hessian.shape[0]
    cov = _inverse_or_none(-hessian)
    if cov is None or np.any(np.diag(cov) <= 0):
        sub = _inverse_or_none(-hessian[np.ix_(keep, keep)])
        if sub is None:
            warnings.warn(
                "the Hessian is singular at the optimum; using a pseudo-inverse",
                SingularHessianWarning,
                stacklevel=4,
            )
            sub = np.linalg.pinv(-hessian[np.ix_(keep, keep)])
        cov = np.full((k, k), np.nan)
        cov[np.ix_(keep, keep)] = sub
        if np.any(np.diag(sub) <= 0):
            warnings.warn(
                "the Hessian matrix at the estimated parameter values is not negative definite",
                SingularHessianWarning,
                stacklevel=4,
            )
    return cov


#: An eigenvalue of the covariance parameters' information given β (scaled to unit
#: diagonal) at most this is zero: the Hessian is singular there.
HESSIAN_SINGULAR_RTOL = 1e-10


def _fe_block_defined(info: np.ndarray, p: int) -> bool:
    """Whether the β block of ``inv(info)`` (``info = −H``, β first) means anything.

    ``−H_ββ = A/σ̂²`` is positive definite (its Cholesky gave β̂), so ``info`` is
    positive definite exactly when the Schur complement
    ``S = info_θθ − info_θβ info_ββ⁻¹ info_βθ`` is; where S has a zero or negative
    eigenvalue, the β block of the inverse is rounding noise divided by it (the
    coupling of β with that direction cannot be told from zero).  S is judged scaled to
    unit diagonal, so that units do not matter.
    """
    if info.shape[0] == p:
        return True
    ibb, ibt, itt = info[:p, :p], info[:p, p:], info[p:, p:]
    try:
        schur = itt - ibt.T @ np.linalg.solve(ibb, ibt) if p else itt
    except np.linalg.LinAlgError:
        return False
    d = np.diag(schur)
    if not (np.all(np.isfinite(schur)) and np.all(d > 0)):
        return False
    scaled = schur / np.sqrt(np.outer(d, d))
    return bool(np.linalg.eigvalsh(0.5 * (scaled + scaled.T)).min() > HESSIAN_SINGULAR_RTOL)


def _inverse_or_none(mat: np.ndarray) -> np.ndarray | None:
    try:
        inv = np.linalg.inv(mat)
    except np.linalg.LinAlgError:
        return None
    return inv if np.all(np.isfinite(inv)) else None
