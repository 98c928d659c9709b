"""L1-penalized fixed effects at given covariance parameters (``fit_regularized``).

At fixed covariance parameters the log-likelihood is a quadratic in β, held by the
profile's ``A = X̃'V*⁻¹X̃`` and GLS estimate: nothing here reads a row or a group.
The penalized objective (statsmodels' documented semantics of
``MixedLM.fit_regularized(method="l1")``, in the model's own coordinates)

    F(β) = (y − Xβ)'V̂⁻¹(y − Xβ) + Σ_j α_j |β_j|,     V̂ = σ̂²(I + Z̃ B̂* Z̃')

(−2ℓ in β, up to terms free of β, plus the penalty) is minimized by cyclic coordinate
descent (Friedman, Hastie & Tibshirani 2010, "Regularization Paths for Generalized
Linear Models via Coordinate Descent", J. Stat. Softw. 33(1), §2.1-2.2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import NotOfferedError, SpecError
from .coordinates import Coordinates
from .objective import Profile


@dataclass(frozen=True)
class L1Settings:
    """``fit_regularized``'s checked settings: ``alpha`` (p,), ``ceps``, ``ptol``,
    ``maxit``."""

    alpha: np.ndarray
    ceps: float
    ptol: float
    maxit: int


@dataclass(frozen=True)
class L1Result:
    """The penalized profile (statistics' coordinates), the penalized β in the model's
    coordinates (exact zeros kept: the profile's ``β̃`` maps back to them only to
    rounding), its sweeps and convergence."""

    prof: Profile
    beta: np.ndarray
    n_sweeps: int
    converged: bool


def l1_coordinate_descent(
    h: np.ndarray, beta_hat: np.ndarray, alpha: np.ndarray, ptol: float, maxit: int
) -> tuple[np.ndarray, int, bool]:
    """Minimize ``(β − β̂)'H(β − β̂) + Σ_j α_j |β_j|`` by cyclic coordinate descent.

    Parameters
    ----------
    h : ndarray (p, p)
        ``X'V⁻¹X``, symmetric positive definite.
    beta_hat : ndarray (p,)
        The unpenalized (GLS) minimizer; also the start.
    alpha : ndarray (p,)
        Penalty weights, ≥ 0 (0: the coefficient is not penalized).
    ptol : float
        Stop when a sweep changes no coefficient by ``ptol`` or more (sup norm).
    maxit : int
        At most this many sweeps.

    Returns
    -------
    beta : ndarray (p,)
    n_sweeps : int
    converged : bool

    Notes
    -----
    With the others held, coordinate j minimizes ``H_jj b² − 2 b r_j + α_j |b|`` with
    ``r_j = H_jj β_j + (H(β̂ − β))_j``: the soft threshold
    ``b = sign(r_j) max(|r_j| − α_j/2, 0) / H_jj``.  ``g = H(β̂ − β)`` is updated by a
    column of ``H`` per change; a sweep costs O(p²).
    """
    beta = np.array(beta_hat, dtype=np.float64)
    g = np.zeros_like(beta)
    diag = np.diagonal(h).copy()
    half = 0.5 * np.asarray(alpha, dtype=np.float64)
    for sweep in range(1, maxit + 1):
        largest = 0.0
        for j in range(beta.size):  # over coefficients: p per sweep, never over groups
            r = diag[j] * beta[j] + g[j]
            new = np.sign(r) * max(abs(r) - half[j], 0.0) / diag[j]
            change = new - beta[j]
            if change != 0.0:
                g -= h[:, j] * change
                beta[j] = new
                largest = max(largest, abs(change))
        if largest < ptol:
            return beta, sweep, True
    return beta, maxit, False


def l1_profile(prof: Profile, coords: Coordinates, settings: L1Settings) -> L1Result:
    """The profile at the penalized fixed effects, covariance parameters held.

    ``prof`` is the GLS profile (statistics' coordinates) at the covariance
    parameters; the penalty is on the model's β.  With ``X = X̃T`` and
    ``y = s_y ỹ + c_y`` (intercept column), ``β̃ = (Tβ − c_y e_0)/s_y`` and
    ``X'V̂⁻¹X = T'ÃT / (s_y² σ̃²)`` (prior weights' scale cancels).  The result's ``beta``
    is ``β̃`` of the penalized β and ``q = Q̃(β̃) = Q̃(β̃̂) + δ'Ãδ`` (``δ = β̃ − β̃̂``), so
    that its ``scale`` is ``Q(β)/f`` and the log-likelihood of :func:`loglike
    <dmixed.fit.objective.loglike>` is ℓ at the penalized β, σ² profiled.

    Coefficients of magnitude below ``ceps`` whose weight is positive are set to zero
    after the descent (statsmodels' ``ceps``).
    """
    columns = coords.columns
    t = coords.fe_matrix
    s_y = float(columns.y_scale)
    h = t.T @ prof.a @ t / (s_y * s_y * prof.scale)
    h = 0.5 * (h + h.T)
    beta_hat = coords.beta(prof.beta)
    beta, sweeps, converged = l1_coordinate_descent(
        h, beta_hat, settings.alpha, settings.ptol, settings.maxit
    )
    beta[(np.abs(beta) < settings.ceps) & (settings.alpha > 0)] = 0.0
    rhs = t @ beta
    if columns.x_intercept >= 0:
        rhs[columns.x_intercept] -= columns.y_shift
    beta_std = rhs / s_y
    delta = beta_std - prof.beta
    q = prof.q + float(delta @ prof.a @ delta)
    out = Profile(
        prof.a, prof.b, prof.a_inv, prof.logdet_a, beta_std, q, prof.fac, prof.beta0, prof.within
    )
    beta.flags.writeable = False
    return L1Result(out, beta, sweeps, converged)


def l1_settings(method, alpha, ceps, ptol, maxit, k_fe: int) -> L1Settings:
    """``fit_regularized``'s arguments checked, ``alpha`` as a vector of ``k_fe``.

    Raises
    ------
    SpecError
        ``method`` a string other than ``"l1"``; ``alpha`` not finite, negative or
        not a scalar or a vector of ``k_fe``; ``ceps``, ``ptol`` not finite > 0;
        ``maxit`` not an integer ≥ 1.
    NotOfferedError
        ``method`` not a string (statsmodels' ``Penalty`` objects).
    """
    if not isinstance(method, str):
        raise NotOfferedError(
            f"fit_regularized: method={type(method).__name__} (a penalty object) is not "
            "offered by dmixed; only method='l1' (the L1 penalty alpha * sum |beta_j|)"
        )
    if method.lower() != "l1":
        raise SpecError(f"fit_regularized: method must be 'l1', got {method!r}")
    try:
        weights = np.array(alpha, dtype=np.float64)
    except (TypeError, ValueError):
        raise SpecError(
            f"fit_regularized: alpha must be a number or a vector of numbers, got {alpha!r}"
        ) from None
    if weights.ndim == 0:
        weights = np.full(k_fe, float(weights))
    elif weights.ndim != 1 or weights.size != k_fe:
        raise SpecError(
            f"fit_regularized: alpha must be a scalar or a vector of length {k_fe} (one "
            f"weight per fixed effect), got shape {weights.shape}"
        )
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise SpecError(f"fit_regularized: alpha must be finite and >= 0, got {alpha!r}")
    for name, value in (("ceps", ceps), ("ptol", ptol)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise SpecError(f"fit_regularized: {name} must be a number > 0, got {value!r}")
        if not (np.isfinite(value) and value > 0):
            raise SpecError(f"fit_regularized: {name} must be finite and > 0, got {value!r}")
    if isinstance(maxit, bool) or not isinstance(maxit, (int, np.integer)) or maxit < 1:
        raise SpecError(f"fit_regularized: maxit must be an integer >= 1, got {maxit!r}")
    weights.flags.writeable = False
    return L1Settings(weights, float(ceps), float(ptol), int(maxit))
