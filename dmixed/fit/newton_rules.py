"""The rules of a Newton iteration on the profiled log-likelihood that the general
optimizer (:mod:`~dmixed.fit.optimize`) and the lean steps of a small fit
(:mod:`~dmixed.fit.lean`) share: the modified Newton direction, the secant (BFGS)
update of the Hessian, the count of slow steps and the last step's decrement test.
"""

from __future__ import annotations

import math

import numpy as np

from ..kernels import small_linalg

__all__ = [
    "LAST_STEP_DECREMENT",
    "all_above",
    "modified_newton_step",
    "profiled_curvature",
    "secant_curvature",
    "secant_update",
    "slow_steps",
    "well_inside",
]

#: A Newton step whose decrement is at most this times √(newton_decrement)·n probably
#: ends the Newton steps at its point: in the quadratic phase the next decrement (over n)
#: is about the square of this one's times a modest constant.  The results' BLUPs are
#: then made with the Hessian there (one round trip on a cluster, not two); a wrong
#: guess costs only the BLUPs' transfer, a missed one the round trip made without it.
LAST_STEP_DECREMENT = 0.1


def modified_newton_step(hess: np.ndarray, grad: np.ndarray) -> np.ndarray | None:
    """The Newton step −H⁻¹g for ℓ's symmetric Hessian ``hess``, modified where ℓ is not
    locally concave: every curvature taken as negative, of at least a small share of the
    largest (an ascent direction whatever the Hessian; the line search then sizes it).
    ``None`` when no step can be made."""
    try:
        evals, evecs = small_linalg.eigh(hess)
    except np.linalg.LinAlgError:
        return None
    values = evals.tolist()  # the few eigenvalues' tests in floats, the same numbers
    if not (values and all(map(math.isfinite, values))):
        return None
    floor = 1e-10 * max(map(abs, values))
    if floor == 0.0:
        return None
    curv = np.array([v if v < 0.0 else -max(v, floor) for v in values])
    delta = evecs @ ((evecs.T @ grad) / -curv)
    return delta if all(map(math.isfinite, delta.tolist())) else None


def profiled_curvature(hess: np.ndarray, k: int, movable: np.ndarray) -> np.ndarray | None:
    """The profiled Hessian in the movable θ of the full Hessian ``hess`` in [β, θ]
    (``k`` fixed effects): the Schur complement H_θθ − H_θβ H_ββ⁻¹ H_βθ (β̂(θ) is
    optimal, so this is d²ℓ(β̂(θ), θ)/dθ²), symmetrized and read-only; None where
    ``hess`` is not finite or H_ββ cannot be solved."""
    if not np.isfinite(hess).all():  # no curvature information at this point
        return None
    hbb, hbt, htt = hess[:k, :k], hess[:k, k:], hess[k:, k:]
    try:
        prof_h = htt - hbt.T @ small_linalg.solve(hbb, hbt) if k else htt
    except np.linalg.LinAlgError:
        return None
    sub = prof_h if movable.all() else prof_h[np.ix_(movable, movable)]
    out = 0.5 * (sub + sub.T)
    out.flags.writeable = False
    return out


def all_above(values: list[float], bound: float) -> bool:
    """``np.min(values, initial=1.0) > bound`` of a list of floats: False where one of
    them is NaN, as the NaN minimum compares."""
    return 1.0 > bound and all(v > bound for v in values)


def well_inside(psi: np.ndarray, tau: np.ndarray, variance: float, eigenvalue: float) -> bool:
    """Whether every variance of Ψ* and τ* is above ``variance`` and Ψ*'s smallest
    eigenvalue above ``eigenvalue``: the point is well inside the parameter space (the
    Newton steps' hand-over may happen there)."""
    return bool(
        all_above(psi.diagonal().tolist(), variance)
        and small_linalg.smallest_eigenvalue(psi, eigenvalue) > eigenvalue
        and all_above(tau.tolist(), variance)
    )


def slow_steps(slow: int, size: float, previous: float | None, contraction: float | None) -> int:
    """The consecutive Newton steps that shrank the largest gradient entry (now ``size``,
    ``previous`` before the last step) by less than the factor ``contraction`` (None: no
    such test), counting the last step; ``slow`` before it."""
    if contraction is None or previous is None:
        return slow
    return slow + 1 if size > contraction * previous else 0


def secant_curvature(
    update: bool,
    curvature: np.ndarray | None,
    last: tuple[np.ndarray, np.ndarray] | None,
    theta: np.ndarray,
    grad: np.ndarray,
) -> np.ndarray | None:
    """With ``update``, the last ``curvature`` updated from the last step (``last``: its
    point and gradient) to ``theta`` and ``grad`` (:func:`secant_update`); None where
    there is none to update, or without ``update`` (the exact Hessian is wanted)."""
    if not update or curvature is None or last is None:
        return None
    return secant_update(curvature, theta - last[0], grad - last[1])


def secant_update(hess: np.ndarray, step: np.ndarray, change: np.ndarray) -> np.ndarray | None:
    """BFGS update of a negative definite Hessian of ℓ after a ``step`` that changed the
    gradient by ``change``; ``None`` when the pair shows no negative curvature along the
    step (then the exact Hessian is wanted)."""
    b = -hess  # positive definite
    y = -change
    sy = float(step @ y)
    bs = b @ step
    sbs = float(step @ bs)
    if not (sy > 1e-12 * float(np.linalg.norm(step) * np.linalg.norm(y)) and sbs > 0.0):
        return None
    out = b - np.outer(bs, bs) / sbs + np.outer(y, y) / sy
    out = -0.5 * (out + out.T)
    return out if np.all(np.isfinite(out)) else None
