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


#: above this condition number of the (diagonally scaled) quadratic the descent takes
#: no exact steps: a solve with it is dominated by rounding (float64's 1/ε is 4.5e15)
EXACT_STEP_CONDITION = 1e13


@dataclass(frozen=True)
class L1Result:
    """The penalized profile (statistics' coordinates), the penalized β in the model's
    coordinates (exact zeros kept: the profile's ``β̃`` maps back to them only to
    rounding), its sweeps and convergence, and the condition number of the quadratic
    the descent ran on (diagonally scaled; NaN: no penalized coefficient)."""

    prof: Profile
    beta: np.ndarray
    n_sweeps: int
    converged: bool
    condition: float


def l1_coordinate_descent(
    h: np.ndarray,
    beta_hat: np.ndarray,
    alpha: np.ndarray,
    ptol: float,
    maxit: int,
    exact_steps: bool = True,
) -> tuple[np.ndarray, int, bool]:
    """Minimize ``(β − β̂)'H(β − β̂) + Σ_j α_j |β_j|`` by cyclic coordinate descent,
    each sweep finished by an exact solve on its active set.

    Parameters
    ----------
    h : ndarray (p, p)
        ``X'V⁻¹X`` (or its Schur complement, :func:`l1_profile`), symmetric positive
        definite.
    beta_hat : ndarray (p,)
        The unpenalized (GLS) minimizer; also the start.
    alpha : ndarray (p,)
        Penalty weights, ≥ 0 (0: the coefficient is not penalized).
    ptol : float
        Stop when the optimality conditions hold to ``ptol · max_j α_j`` (plus the
        rounding of the gradient ``2H(β̂ − β)``, ``64 ε max|2Hβ̂|``): ``|g_j − α_j
        sign β_j|`` where ``β_j ≠ 0`` and ``max(|g_j| − α_j, 0)`` where ``β_j = 0``.
    maxit : int
        At most this many sweeps.
    exact_steps : bool
        Finish each sweep with the active set's exact solve (below); False where
        ``H`` is too ill-conditioned for a solve to mean anything
        (:data:`EXACT_STEP_CONDITION`), leaving the single-coordinate steps alone.

    Returns
    -------
    beta : ndarray (p,)
    n_sweeps : int
    converged : bool
        Whether the optimality conditions hold to that tolerance.

    Notes
    -----
    With the others held, coordinate j minimizes ``H_jj b² − 2 b r_j + α_j |b|`` with
    ``r_j = H_jj β_j + (H(β̂ − β))_j``: the soft threshold
    ``b = sign(r_j) max(|r_j| − α_j/2, 0) / H_jj``.  ``g = H(β̂ − β)`` is updated by a
    column of ``H`` per change; a sweep costs O(p²).  After a sweep, with ``A`` its
    nonzero coefficients and ``s`` their signs, ``β_A = H_AA⁻¹((Hβ̂)_A − α_A s/2)``
    (the other coefficients zero) is taken where its signs are ``s``, else the step
    toward it up to the first sign change, which drops that coefficient, and so on:
    the minimizer once the descent has found the active set, whatever the
    conditioning of ``H`` that makes single-coordinate steps slow.
    """
    beta_hat = np.asarray(beta_hat, dtype=np.float64)
    beta = beta_hat.copy()
    alpha = np.asarray(alpha, dtype=np.float64)
    diag = np.diagonal(h).copy()
    half = 0.5 * alpha
    h_hat = h @ beta_hat
    tol = ptol * float(alpha.max(initial=0.0)) + 64 * np.finfo(float).eps * float(
        np.max(np.abs(2 * h_hat), initial=0.0)
    )

    def violation(b: np.ndarray) -> float:
        grad = 2 * (h_hat - h @ b)
        on = b != 0
        worst = np.abs(grad[on] - alpha[on] * np.sign(b[on]))
        off = np.maximum(np.abs(grad[~on]) - alpha[~on], 0.0)
        return float(max(worst.max(initial=0.0), off.max(initial=0.0)))

    if violation(beta) <= tol:
        return beta, 0, True
    g = np.zeros_like(beta)
    for sweep in range(1, maxit + 1):
        for j in range(beta.size):  # over coefficients: p per sweep, never over groups
            r = diag[j] * beta[j] + g[j]
            new = np.sign(r) * max(abs(r) - half[j], 0.0) / diag[j]
            change = new - beta[j]
            if change != 0.0:
                g -= h[:, j] * change
                beta[j] = new
        if exact_steps:
            beta = _active_set_step(h, h_hat, half, beta)
            g = h_hat - h @ beta
        if violation(beta) <= tol:
            return beta, sweep, True
    return beta, maxit, False


def _active_set_step(
    h: np.ndarray, h_hat: np.ndarray, half: np.ndarray, beta: np.ndarray
) -> np.ndarray:
    """From ``beta``, toward the minimizer with its nonzero coefficients' signs held:
    ``e_A = H_AA⁻¹((Hβ̂)_A − α_A s/2)``, all the way where the signs stay, else to
    the first coefficient that reaches zero, which leaves the set (the objective is
    convex and falls along the segment up to there), and again from that point."""
    beta = beta.copy()
    for _ in range(beta.size):
        on = np.flatnonzero(beta)
        if not on.size:
            break
        signs = np.sign(beta[on])
        try:
            exact = np.linalg.solve(h[np.ix_(on, on)], h_hat[on] - half[on] * signs)
        except np.linalg.LinAlgError:
            break
        if not np.all(np.isfinite(exact)):
            break
        if np.all(np.sign(exact) == signs):
            beta[on] = exact
            break
        step = exact - beta[on]
        with np.errstate(divide="ignore", invalid="ignore"):
            reach = np.where(np.sign(exact) != signs, -beta[on] / step, np.inf)
        first = int(np.argmin(reach))
        beta[on] += reach[first] * step
        beta[on[first]] = 0.0
    return beta


def l1_profile(prof: Profile, coords: Coordinates, settings: L1Settings) -> L1Result:
    """The profile at the penalized fixed effects, covariance parameters held.

    ``prof`` is the GLS profile (statistics' coordinates) at the covariance
    parameters; the penalty is on the model's β.  With ``X = X̃T`` and
    ``y = s_y ỹ + c_y`` (intercept column), ``β̃ = (Tβ − c_y e_0)/s_y`` and
    ``X'V̂⁻¹X = T'ÃT / (s_y² σ̃²)`` (prior weights' scale cancels).  The result's ``beta``
    is ``β̃`` of the penalized β and ``q = Q̃(β̃) = Q̃(β̃̂) + δ'Ãδ`` (``δ = β̃ − β̃̂``), so
    that its ``scale`` is ``Q(β)/f`` and the log-likelihood of :func:`loglike
    <dmixed.fit.objective.loglike>` is ℓ at the penalized β, σ² profiled.

    The unpenalized coefficients (``α_j = 0``, set U; the penalized ones P) are
    profiled out exactly, in the statistics' coordinates where the quadratic is well
    conditioned: with ``Q_U R_U = T_{:,U}`` (QR) and ``N = (I − Q_U Q_U')T_{:,P}``
    (a shift of the penalized directions along the free ones, which leaves the
    profiled quadratic as it is), the descent runs on
    ``S = N'ÃN − N'ÃQ_U (Q_U'ÃQ_U)⁻¹ Q_U'ÃN`` (over ``s_y² σ̃²``), the Schur
    complement of ``X'V̂⁻¹X`` on U; then ``β_U`` is the exact minimizer given
    ``β_P``.  A column far from zero beside an unpenalized intercept is thus the same
    problem as the centred one.  With every coefficient penalized, the intercept
    included, the descent runs on ``X'V̂⁻¹X`` itself, ill-conditioned with a column far
    from zero: it converges or warns.

    Penalized coefficients of magnitude below ``ceps`` are set to zero after the
    descent and the unpenalized ones solved again given them (statsmodels' ``ceps``
    skips any coefficient below it during its sweeps, the unpenalized included; here
    the unpenalized ones are always the exact minimizers).
    """
    columns = coords.columns
    t = coords.fe_matrix
    s_y = float(columns.y_scale)
    a = prof.a / (s_y * s_y * prof.scale)
    a = 0.5 * (a + a.T)
    beta_hat = np.asarray(coords.beta(prof.beta), dtype=np.float64)
    alpha = settings.alpha
    free, pen = np.flatnonzero(alpha == 0), np.flatnonzero(alpha > 0)
    beta = beta_hat.copy()
    sweeps, converged, condition = 0, True, float("nan")
    if pen.size:
        if free.size:
            q_u, r_u = np.linalg.qr(t[:, free])
            n_p = t[:, pen] - q_u @ (q_u.T @ t[:, pen])
            k = q_u.T @ a @ q_u
            cross = q_u.T @ a @ n_p
            s = n_p.T @ a @ n_p - cross.T @ np.linalg.solve(k, cross)
        else:
            s = t.T @ a @ t
        s = 0.5 * (s + s.T)
        unit = 1 / np.sqrt(np.diagonal(s))
        condition = float(np.linalg.cond(s * unit[:, None] * unit[None, :]))
        beta_p, sweeps, converged = l1_coordinate_descent(
            s, beta_hat[pen], alpha[pen], settings.ptol, settings.maxit,
            exact_steps=condition < EXACT_STEP_CONDITION,
        )  # fmt: skip
        beta_p[np.abs(beta_p) < settings.ceps] = 0.0
        beta[pen] = beta_p
        if free.size:
            d_p = beta_p - beta_hat[pen]
            z = -np.linalg.solve(k, cross @ d_p)
            beta[free] = beta_hat[free] + np.linalg.solve(r_u, z - q_u.T @ (t[:, pen] @ d_p))
    rhs = t @ beta
    if columns.x_intercept >= 0:
        rhs[columns.x_intercept] -= columns.y_shift
    elif columns.y_shift != 0.0 and (ones := columns.y_ones()) is not None:
        rhs -= columns.y_shift * ones  # the constant made by columns (0 + C(c))
    beta_std = rhs / s_y
    delta = beta_std - prof.beta
    q = prof.q + float(delta @ prof.a @ delta)
    out = Profile(
        prof.a, prof.b, prof.a_inv, prof.logdet_a, beta_std, q, prof.fac, prof.beta0, prof.within
    )
    beta.flags.writeable = False
    return L1Result(out, beta, sweeps, converged, condition)


def l1_settings(method, alpha, ceps, ptol, maxit, exog_names: list[str]) -> L1Settings:
    """``fit_regularized``'s arguments checked, ``alpha`` as a vector of ``k_fe``
    (``len(exog_names)``); a labelled ``alpha`` (a pandas Series, or anything with an
    ``index`` and ``reindex``) is taken by the fixed effects' names.

    Raises
    ------
    SpecError
        ``method`` a string other than ``"l1"``; ``alpha`` not finite, negative, a
        bool (or holding one), not a scalar or a vector of ``k_fe``, or labelled by
        other names than ``exog_names``; ``ceps``, ``ptol`` not finite > 0;
        ``maxit`` not an integer ≥ 1.
    NotOfferedError
        ``method`` not a string (statsmodels' ``Penalty`` objects).
    """
    if method is None:
        raise SpecError("fit_regularized: method must be 'l1', got None")
    if not isinstance(method, str):
        raise NotOfferedError(
            f"fit_regularized: method={type(method).__name__} (a penalty object) is not "
            "offered by dmixed; only method='l1' (the L1 penalty alpha * sum |beta_j|)"
        )
    if method.lower() != "l1":
        raise SpecError(f"fit_regularized: method must be 'l1', got {method!r}")
    k_fe = len(exog_names)
    if hasattr(alpha, "index") and hasattr(alpha, "reindex"):  # a pandas Series
        labels = [str(v) for v in alpha.index]
        if sorted(labels) != sorted(exog_names) or len(set(labels)) != len(labels):
            raise SpecError(
                f"fit_regularized: alpha's index {labels} must name each fixed effect "
                f"once: {list(exog_names)}"
            )
        alpha = alpha.set_axis(labels).reindex(list(exog_names)).to_numpy()
    if isinstance(alpha, (bool, np.bool_)) or np.asarray(alpha).dtype == np.bool_:
        raise SpecError(f"fit_regularized: alpha must be numbers, not booleans: {alpha!r}")
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
