"""The coordinates of the optimizer's Newton steps: variances on the log scale.

Where the groups are few and large, the profiled log-likelihood as a function of a
variance ψ behaves like ``−a log ψ − b / ψ`` (``log|K_i| ≈ log(n_i ψ)``, and the
residual quadratic form falls as ``1/ψ``).  Newton's method in ψ itself then advances
by steps of constant size from below (``ψ(c − ψ)/(2c − ψ)`` towards the maximum ``c``,
a third of the way from ``c/3``), which looks like linear convergence and hands the fit
over to BFGS; above ``2c`` the function is not even concave.  In ``u = log ψ`` it is
``−a u − b e^{−u}``: concave everywhere, and Newton's error goes from ``d`` to
``d + 1 − e^d ≈ −d²/2``.  nlme's ``pdLogChol`` takes the same coordinates.  Newton
steps are therefore taken in ``v``: ``log θ_j`` for the positive variances (τ*, and Ψ*
where it is 1 × 1: :func:`log_entries`), ``θ_j`` for the others (and for a variance at
zero); the fixed points are the same (``∂ℓ/∂v_j = θ_j ∂ℓ/∂θ_j``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..stats import Layout

__all__ = ["MAX_LOG_STEP", "NewtonStep", "log_entries", "newton_step"]

#: the largest change of a log variance one Newton step makes (a factor of 100): a
#: longer step is shortened as a whole (the direction kept), as the line search would
MAX_LOG_STEP = float(np.log(100.0))


@dataclass(frozen=True)
class NewtonStep:
    """A Newton step from ``theta`` (the movable θ entries) in the log coordinates.

    ``log`` marks the entries stepped on the log scale; ``delta`` is the step in ``v``;
    ``rise`` the Newton decrement ``½ g_v' δ_v`` (the rise of ℓ the full step promises).
    """

    theta: np.ndarray
    log: np.ndarray
    delta: np.ndarray
    rise: float

    def point(self, fraction: float) -> np.ndarray:
        """The movable θ after ``fraction`` of the step: ``θ_j e^{f δ_j}`` on the log
        scale, ``θ_j + f δ_j`` otherwise."""
        step = fraction * self.delta
        return np.where(
            self.log, self.theta * np.exp(np.where(self.log, step, 0.0)), self.theta + step
        )


def log_entries(layout: Layout) -> np.ndarray:
    """Which entries of θ = [vech_lt(Ψ*), τ*] are stepped on the log scale (where
    positive): every τ*, and Ψ* when it is 1 × 1.  The diagonal of a wider Ψ* stays
    plain: on the log scale beside plain covariances a step that shrinks two variances
    leaves their covariance where it was, and overshoots it (a random slope's
    correlation; the plain steps converge there as they did)."""
    return np.concatenate([np.full(layout.k_re2, layout.k_re == 1), np.ones(layout.k_vc, bool)])


def newton_step(
    layout: Layout,
    movable: np.ndarray,
    theta: np.ndarray,
    grad: np.ndarray,
    hess: np.ndarray,
    direction,
) -> NewtonStep | None:
    """The Newton step in ``v`` from the gradient and Hessian of ℓ in θ.

    Parameters
    ----------
    layout : Layout
        Where the variances are in θ = [vech_lt(Ψ*), τ*].
    movable : ndarray of bool (m,)
        The θ entries that move.
    theta : ndarray (m,)
        The point (all of θ).
    grad, hess : ndarray (k,), (k, k)
        ∂ℓ/∂θ and ∂²ℓ/∂θ² over the ``k`` movable entries.
    direction : callable
        ``direction(H_v, g_v)``: the ascent step for a Hessian and gradient (``None``
        when there is none), :func:`~dmixed.fit.optimize.modified_newton_step`.

    Returns
    -------
    NewtonStep or None
        ``None`` where ``direction`` gives none.

    Notes
    -----
    With ``J = diag(θ_j)`` on the log entries (1 elsewhere): ``g_v = J g`` and
    ``H_v = J H J + diag(J g)`` on the log entries (``∂²θ_j/∂v_j² = θ_j``).
    """
    variance = log_entries(layout)[movable]
    point = np.asarray(theta, dtype=np.float64)[movable]
    log = variance & (point > 0.0)
    jac = np.where(log, point, 1.0)
    g_v = jac * grad
    h_v = hess * np.outer(jac, jac)
    h_v[np.diag_indices_from(h_v)] += np.where(log, g_v, 0.0)
    delta = direction(h_v, g_v)
    if delta is None:
        return None
    longest = float(np.max(np.abs(delta[log]), initial=0.0))
    if longest > MAX_LOG_STEP:
        delta = delta * (MAX_LOG_STEP / longest)
    return NewtonStep(point, log, delta, 0.5 * float(g_v @ delta))
