"""The coordinates of the optimizer's Newton steps: variances on a shifted log scale,
covariances as (shifted) correlations.

Where the groups are few and large, the profiled log-likelihood as a function of a
variance ψ behaves like ``−a log ψ − b / ψ`` (``log|K_i| ≈ log(n_i ψ)``, and the
residual quadratic form falls as ``1/ψ``).  Newton's method in ψ itself then advances
by steps of constant size from below (``ψ(c − ψ)/(2c − ψ)`` towards the maximum ``c``,
a third of the way from ``c/3``), which looks like linear convergence and hands the fit
over to BFGS; above ``2c`` the function is not even concave.  In ``u = log ψ`` it is
``−a u − b e^{−u}``: concave everywhere, and Newton's error goes from ``d`` to
``d + 1 − e^d ≈ −d²/2``.  nlme's ``pdLogChol`` takes the same coordinates.

Where the variance is small next to what one group's data say about it (its standard
error), ``log|K_i|`` is not ``log(n_i ψ)`` but ``log(1 + n_i ψ) = log n_i + log(c_i + ψ)``
with ``c_i = 1/n_i`` (for a variance component, ``c_i`` also holds the other variances
of the group), and ℓ behaves like ``−a log(c + ψ) − b/(c + ψ)``: the coordinate that
makes it the well-behaved function above is ``log(ψ + c)``, and ``log ψ`` overshoots
(from below the maximum it predicts one far above it).  The shift ``c`` is read from
the sums of the exact Hessian (:func:`log_shift`): for ``f(x) = −a log x`` with
``x = c + ψ``, ``x = −f'/f''``, and the log-determinant part of ℓ gives both
derivatives, ``∂(−½Σlog|V_i|)/∂θ_j = −½ Σ tr(S_i E_j)`` and its second derivative
``½ Σ tr(S_i E_j S_i E_j)``, so ``c_j = Σ tr(S_i E_j) / Σ tr(S_i E_j S_i E_j) − θ_j``
(the mean of the ``c_i`` weighted by ``1/(c_i + ψ)²``; 0 where the sums give less).
The coordinates take half of it (:data:`SHIFT_SHARE`: the rest of ℓ is not of that
form, and the whole shift overcorrects where the variance is well determined).
The shifts are read again at every exact Hessian (the secant steps of
:mod:`~dmixed.fit.optimize` keep the last).  Newton steps are taken in ``v``:

- ``v_j = log(θ_j + c_j)`` for every positive variance (the τ* and the diagonal of Ψ*),
- ``ρ_ab = Ψ*_ab / √((Ψ*_aa + c_a)(Ψ*_bb + c_b))`` for a covariance of two such
  variances: a step that shrinks two variances shrinks their covariance with them,
  instead of leaving it where it was and overshooting the correlation.  It is the
  correlation where the variances are well determined (``c ≪ Ψ*_aa``), and tends to
  the covariance itself (times a constant) where a variance is small next to its
  error: there ℓ is nearly quadratic in the covariance, and the plain correlation, a
  ratio with a poorly determined denominator, is not (its steps converge linearly),
- ``θ_j`` itself for the others (a variance at zero, a covariance beside one).

The fixed points are the same (the map ``θ(v)`` is smooth and invertible at interior
points): the optimum, and ℓ there, do not depend on the coordinates of the steps.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..stats import Layout

__all__ = ["MAX_LOG_STEP", "SHIFT_SHARE", "NewtonStep", "log_entries", "log_shift", "newton_step"]

#: the share of the log-determinant's shift the coordinates take (:func:`log_shift`):
#: ℓ's other part, ``−(fac/2) log Q`` with σ² profiled, is not of the form
#: ``−b/(c + ψ)`` with the same ``c``, and the whole shift overcorrects where the
#: variance is well determined; half of it left no fit of the benchmarks and tests
#: with more evaluations than the plain log scale (benchmarks/RESULTS.md, 2026-12-01)
SHIFT_SHARE = 0.5

#: the largest change of a log variance one Newton step makes (a factor of 100): a
#: longer step is shortened as a whole (the direction kept), as the line search would
MAX_LOG_STEP = float(np.log(100.0))


@dataclass(frozen=True)
class NewtonStep:
    """A Newton step from ``theta`` (the movable θ entries) in the coordinates ``v``.

    ``log`` marks the variances stepped on the shifted log scale (``shift``: their
    ``c_j``, 0 elsewhere), ``corr`` the covariances stepped as shifted correlations
    (``pairs``: the positions of their two variances among the movable entries; −1
    elsewhere); ``delta`` is the
    step in ``v``; ``rise`` the Newton decrement ``½ g_v' δ_v`` (the rise of ℓ the full
    step promises).
    """

    theta: np.ndarray
    log: np.ndarray
    delta: np.ndarray
    rise: float
    shift: np.ndarray
    corr: np.ndarray
    pairs: np.ndarray

    def point(self, fraction: float) -> np.ndarray:
        """The movable θ after ``fraction`` of the step: ``(θ_j + c_j) e^{f δ_j} − c_j``
        on the log scale, ``ρ_ab + f δ_ab`` times the new ``√((Ψ*_aa + c_a)(Ψ*_bb + c_b))``
        for a shifted correlation, ``θ_j + f δ_j`` otherwise.  A variance the step takes below zero
        (possible where ``c_j > 0``) is left negative: the point is outside the
        parameter space, and the line search shortens the step."""
        step = fraction * self.delta
        theta = self.theta
        out = np.where(
            self.log,
            (theta + self.shift) * np.exp(np.where(self.log, step, 0.0)) - self.shift,
            theta + step,
        )
        if self.corr.any():
            a, b = self.pairs[self.corr, 0], self.pairs[self.corr, 1]
            x = theta + self.shift
            rho = theta[self.corr] / np.sqrt(x[a] * x[b]) + step[self.corr]
            out[self.corr] = rho * np.sqrt(x[a] * x[b]) * np.exp(0.5 * (step[a] + step[b]))
        return out


@functools.lru_cache(maxsize=32)
def log_entries(layout: Layout, correlations: bool = True) -> np.ndarray:
    """Which entries of θ = [vech_lt(Ψ*), τ*] are stepped on the (shifted) log scale
    where positive: every τ* and the diagonal of Ψ* (its covariances then as shifted
    correlations); without ``correlations``, the diagonal of Ψ* only when it is 1 × 1
    (beside plain covariances, a step that shrinks two variances on the log scale leaves
    their covariance where it was, and overshoots their correlation).  Made once per
    layout (read-only): every Newton step of a fit asks for it."""
    rows, cols = layout.tril()
    diagonal = rows == cols if correlations else np.full(layout.k_re2, layout.k_re == 1)
    out = np.concatenate([diagonal, np.ones(layout.k_vc, bool)])
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=32)
def _movable_pairs(layout: Layout, movable: bytes) -> np.ndarray:
    """For each movable entry of θ (``movable``: the mask's bytes), the positions among
    the movable entries of the two variances of its covariance ``(Ψ*_aa, Ψ*_bb)``; −1
    for a variance or where one of the two does not move.  Made once per layout and
    mask (read-only)."""
    mask = np.frombuffer(movable, dtype=bool)
    position = np.full(layout.n_params, -1)
    position[mask] = np.arange(int(mask.sum()))
    pairs = _variance_pairs(layout)[mask]
    out = np.where(pairs >= 0, position[np.maximum(pairs, 0)], -1)
    out.flags.writeable = False
    return out


def _variance_pairs(layout: Layout) -> np.ndarray:
    """For each entry of θ, the positions in θ of the two variances of its covariance
    ``(Ψ*_aa, Ψ*_bb)``; ``(−1, −1)`` for a variance."""
    rows, cols = layout.tril()
    diag = np.full(layout.k_re, -1)
    diag[rows[rows == cols]] = np.flatnonzero(rows == cols)
    out = np.full((layout.n_params, 2), -1)
    off = rows != cols
    out[: layout.k_re2][off] = np.column_stack([diag[rows[off]], diag[cols[off]]])
    return out


def log_shift(theta: np.ndarray, trace_s: np.ndarray, trace_ss: np.ndarray) -> np.ndarray:
    """The shifts ``c_j = s · max(0, Σtr(S_i E_j) / Σtr(S_i E_j S_i E_j) − θ_j)`` of the
    log coordinates (the module's docstring), from the sums of the exact Hessian, with
    ``s`` = :data:`SHIFT_SHARE`.

    Parameters
    ----------
    theta : ndarray (m,)
        θ = [vech_lt(Ψ*), τ*].
    trace_s, trace_ss : ndarray (m,)
        ``Σ_i tr(S_i E_j)`` and ``Σ_i tr(S_i E_j S_i E_j)`` in θ's coordinates (the
        diagonal of ``HessianSums.tr_ss``).

    Returns
    -------
    ndarray (m,)
        Zero where the ratio is not finite and positive (no information: the plain
        log scale).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.asarray(trace_s, dtype=np.float64) / np.asarray(trace_ss, dtype=np.float64)
    shift = np.where(
        np.isfinite(scale), SHIFT_SHARE * (scale - np.asarray(theta, dtype=np.float64)), 0.0
    )
    return np.maximum(shift, 0.0)


def newton_step(
    layout: Layout,
    movable: np.ndarray,
    theta: np.ndarray,
    grad: np.ndarray,
    hess: np.ndarray,
    direction,
    shift: np.ndarray | None = None,
    correlations: bool = True,
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
    shift : ndarray (m,), optional
        The shifts ``c_j`` of the log coordinates (:func:`log_shift`; default 0: the
        plain log scale); only those of the variances are read.
    correlations : bool
        The diagonal of a wider Ψ* on the log scale and its covariances as shifted
        correlations (default); else both plain (:func:`log_entries`).

    Returns
    -------
    NewtonStep or None
        ``None`` where ``direction`` gives none.

    Notes
    -----
    With ``J = ∂θ/∂v``: ``g_v = J'g`` and ``H_v = J'HJ + Σ_k g_k ∂²θ_k/∂v²``.  On the log
    scale ``∂θ_j/∂v_j = ∂²θ_j/∂v_j² = θ_j + c_j``.  A covariance is
    ``Ψ*_ab = ρ_ab w`` with ``w = e^{(v_a + v_b)/2} = √((Ψ*_aa + c_a)(Ψ*_bb + c_b))``:
    first derivatives ``w`` in ``ρ_ab`` and ``ρ_ab w / 2`` in ``v_a`` and ``v_b``, second
    ``w / 2`` in ``(ρ_ab, v_a)`` and ``(ρ_ab, v_b)``, ``ρ_ab w / 4`` in ``(v_a, v_b)``,
    ``(v_a, v_a)`` and ``(v_b, v_b)``.
    """
    variance = log_entries(layout, correlations)
    point = np.asarray(theta, dtype=np.float64)[movable]
    log = variance[movable] & (point > 0.0)
    full_shift = np.zeros(layout.n_params) if shift is None else np.asarray(shift, np.float64)
    c = np.where(log, full_shift[movable], 0.0)
    # a covariance whose two variances move on the log scale: a correlation
    pairs = _movable_pairs(layout, np.asarray(movable, dtype=bool).tobytes())
    corr = np.all(pairs >= 0, axis=1)
    corr[corr] = log[pairs[corr, 0]] & log[pairs[corr, 1]]
    x = point + c
    jac = np.diag(np.where(log, x, 1.0))
    second = np.diag(np.where(log, x * grad, 0.0))  # Σ_k g_k ∂²θ_k/∂v²
    for k in np.flatnonzero(corr):
        a, b = pairs[k]
        w = np.sqrt(x[a] * x[b])
        rho = point[k] / w
        jac[k, k], jac[k, a], jac[k, b] = w, 0.5 * rho * w, 0.5 * rho * w
        g = grad[k]
        for i, j, d2 in ((k, a, 0.5 * w), (k, b, 0.5 * w), (a, b, 0.25 * rho * w)):
            second[i, j] += g * d2
            second[j, i] += g * d2
        second[a, a] += g * 0.25 * rho * w
        second[b, b] += g * 0.25 * rho * w
    g_v = jac.T @ grad
    h_v = jac.T @ hess @ jac + second
    h_v = 0.5 * (h_v + h_v.T)
    delta = direction(h_v, g_v)
    if delta is None:
        return None
    longest = float(np.max(np.abs(delta[log]), initial=0.0))
    if longest > MAX_LOG_STEP:
        delta = delta * (MAX_LOG_STEP / longest)
    return NewtonStep(point, log, delta, 0.5 * float(g_v @ delta), c, corr, pairs)
