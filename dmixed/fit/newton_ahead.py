"""The next Newton step's first trial point, made from the step sums at this one's.

On a cluster each evaluation is a round trip from the driver.  After a secant Newton
step (:meth:`~dmixed.fit.optimize._Optimization.newton_steps`) the next step needs no
Hessian round trip: its point follows from the sums at the trial point alone.  A
:class:`NextNewtonPoint` is that rule as a function of those sums, pickled to a worker
with the trial point's step tasks (``engine.step_then``): the next trial point's step
sums (and its Hessian sums, with the BLUPs where its step is expected to be the last)
are then made in the same round trip, and the driver takes them where the Λ it asks for
next is the worker's bit for bit.  A point the driver does not ask for costs the
workers' time, never a number: the sums are those of the Λ they were made at.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..kernels import StepSums
from ..stats import GlobalStats, Layout
from .newton_coords import newton_step
from .newton_rules import (
    LAST_STEP_DECREMENT,
    modified_newton_step,
    secant_curvature,
    slow_steps,
)
from .profiled import ProfiledObjective

__all__ = ["NewtonState", "NextNewtonPoint", "ObjectiveParts"]


@dataclass(frozen=True)
class ObjectiveParts:
    """What a :class:`~dmixed.fit.profiled.ProfiledObjective` evaluates with, without
    its engine (which never travels to a worker) or its cache."""

    glob: GlobalStats
    layout: Layout
    reml: bool
    use_sqrt: bool
    re_map: np.ndarray | None
    vc_map: np.ndarray | None
    starts: frozenset[bytes]

    @classmethod
    def of(cls, obj: ProfiledObjective) -> ObjectiveParts:
        """The parts of ``obj``."""
        return cls(
            obj.glob,
            obj.layout,
            obj.reml,
            obj.use_sqrt,
            obj.re_map,
            obj.vc_map,
            frozenset(obj.starts),
        )

    def objective(self, sums: StepSums) -> ProfiledObjective:
        """An objective whose engine's step sums are ``sums`` at any Λ (evaluated once,
        at the point they were made at)."""
        obj = ProfiledObjective(
            _GivenSums(sums),
            self.glob,
            self.layout,
            self.reml,
            self.use_sqrt,
            self.re_map,
            self.vc_map,
        )
        obj.starts.update(self.starts)
        return obj


class _GivenSums:
    """An engine that answers ``step`` with the sums it was given."""

    def __init__(self, sums: StepSums) -> None:
        self.sums = sums

    def step(self, lam: np.ndarray, q: int) -> StepSums:
        return self.sums


@dataclass(frozen=True)
class NewtonState:
    """The state of :meth:`~dmixed.fit.optimize._Optimization.newton_steps` that the
    next step reads, as it is when a secant step's line search tries a point: the
    settings, the movable θ, the curvature and gradient of the step taken (``last``),
    the log coordinates' shifts, the largest gradient entry there (``previous``), the
    slow steps, the contraction and secant rules, the coordinates (``shifted``), ℓ at
    the step's origin (the line search's bar) and the steps left after this one (the
    next among them)."""

    newton_gtol: float
    newton_decrement: float
    newton_halvings: int
    newton_llf_rtol: float
    movable: np.ndarray
    curvature: np.ndarray
    last: tuple[np.ndarray, np.ndarray]
    shift: np.ndarray
    previous: float
    slow: int
    contraction: float | None
    secant: bool
    shifted: bool
    llf: float
    steps_left: int


@dataclass(frozen=True)
class NextNewtonPoint:
    """From the step sums at a trial point (``packed``, θ ``theta``), the Λ of the first
    trial point of the next Newton step, as the driver's steps would make it when they
    accept this point and take that step with a secant curvature; with whether its
    Hessian is wanted with its evaluation (``ahead``) and its BLUPs (``last_step``).

    Calling it returns ``(Λ, ahead, last_step)``, or None where the driver would not
    take such a step from the point (the line search refuses it, a test ends the steps,
    the exact Hessian is wanted there, no step or no trial point can be made).
    """

    parts: ObjectiveParts
    state: NewtonState
    packed: np.ndarray
    theta: np.ndarray

    def __call__(self, sums: StepSums) -> tuple[np.ndarray, bool, bool] | None:
        st, obj = self.state, self.parts.objective(sums)
        if st.steps_left < 1:
            return None
        ev = obj.evaluate(self.packed)
        bar = st.llf - st.newton_llf_rtol * max(1.0, abs(st.llf))
        if not (math.isfinite(ev.llf) and ev.llf >= bar) or ev.step is None:
            return None
        layout, movable, theta = obj.layout, st.movable, self.theta
        d_psi, d_tau = obj.score_parts(ev)
        grad = layout.score_packed(d_psi, d_tau, theta, use_sqrt=False)[movable]
        size = float(np.abs(grad).max())
        if size <= st.newton_gtol * obj.glob.n:
            return None
        slow = slow_steps(st.slow, size, st.previous, st.contraction)
        if slow >= 2:
            return None
        curvature = secant_curvature(
            st.secant and not slow, st.curvature, st.last, theta[movable], grad
        )
        if curvature is None:  # the exact Hessian there first: a round trip of its own
            return None
        step = newton_step(
            layout, movable, theta, grad, curvature, modified_newton_step, st.shift, st.shifted
        )
        n = obj.glob.n
        if step is None or step.rise <= st.newton_decrement * n:
            return None
        last_step = bool(step.rise <= LAST_STEP_DECREMENT * np.sqrt(st.newton_decrement) * n)
        fraction = 1.0
        for _half in range(st.newton_halvings):
            trial = theta.copy()
            trial[movable] = step.point(fraction)
            fraction /= 2
            try:
                packed = layout.pack_theta(trial, obj.use_sqrt)
                lam = obj.lam(packed)
            except np.linalg.LinAlgError:
                continue
            return lam, not st.secant or last_step, last_step
        return None
