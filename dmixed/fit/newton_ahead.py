"""The next Newton step's first trial point, made from the step sums at this one's.

(And the first Newton step's from the starts' sums and the Hessian at the moment start:
:class:`FirstNewtonPoint`, the same for the optimizer's first round trip.)

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

from ..kernels import HessianSums, StepSums, small_linalg
from ..stats import GlobalStats, Layout
from .newton_coords import log_shift, newton_step
from .newton_rules import (
    LAST_STEP_DECREMENT,
    modified_newton_step,
    profiled_curvature,
    secant_curvature,
    slow_steps,
    well_inside,
)
from .profiled import ProfiledObjective
from .summary import OptSummary

__all__ = [
    "FirstNewtonPoint",
    "NewtonSettings",
    "NewtonState",
    "NextNewtonPoint",
    "ObjectiveParts",
]


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
        return self.with_engine(_GivenSums(sums))

    def with_engine(self, engine) -> ProfiledObjective:
        """An objective of these parts on ``engine``."""
        obj = ProfiledObjective(
            engine,
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


def _key(lam: np.ndarray) -> bytes:
    lam = np.asarray(lam, dtype=np.float64)
    return repr(lam.shape).encode() + lam.tobytes()


class _GivenPoints:
    """An engine that answers ``step`` at each Λ it was given the sums of, and
    ``hessian`` at the one Λ and ``w`` it was given the Hessian sums of; elsewhere it
    raises ``LookupError`` (no round trip to make)."""

    def __init__(
        self,
        points: list[tuple[np.ndarray, StepSums]],
        hessian: tuple[np.ndarray, np.ndarray, HessianSums] | None,
    ) -> None:
        self.sums = {_key(lam): sums for lam, sums in points}
        self.given = hessian

    def step(self, lam: np.ndarray, q: int) -> StepSums:
        return self.sums[_key(lam)]

    def hessian(
        self,
        lam: np.ndarray,
        basis: np.ndarray,
        w: np.ndarray,
        a_inv: np.ndarray | None = None,
        reml: bool = True,
    ) -> HessianSums:
        # the given sums are in the (m, m, p, p) form, read under any ``a_inv`` and ``reml``
        given = self.given
        if given is None or _key(lam) != _key(given[0]) or not np.array_equal(w, given[1]):
            raise LookupError("no Hessian sums given there")
        return given[2]


@dataclass(frozen=True)
class NewtonSettings:
    """The settings of the Newton steps from a moment start
    (:meth:`~dmixed.fit.optimize._Optimization.run_newton_first`) that their first step
    reads: the summary's tests, the contraction, whether its steps are secant ones
    (``secant``: the fit's rows) and how many steps there are (``steps``)."""

    newton_gtol: float
    newton_decrement: float
    newton_halvings: int
    newton_llf_rtol: float
    interior_variance: float
    interior_eigenvalue: float
    singular_eigenvalue: float
    contraction: float | None
    secant: bool
    steps: int

    @classmethod
    def of(cls, summary: OptSummary, n: float) -> NewtonSettings:
        """The settings of a fit of ``n`` rows whose optimizer runs on ``summary``, as
        its Newton steps from a moment start read them (before any iteration)."""
        s = summary
        return cls(
            s.newton_gtol,
            s.newton_decrement,
            s.newton_halvings,
            s.newton_llf_rtol,
            s.interior_variance,
            s.interior_eigenvalue,
            s.singular_eigenvalue,
            s.newton_first_contraction,
            bool(n >= s.newton_secant_rows),
            min(s.newton_first_steps, max(0, s.maxiter - len(s.history))),
        )


@dataclass(frozen=True)
class FirstNewtonPoint:
    """From the step sums at the fit's two starts (the default ``chosen`` and the
    ``moment`` estimate, packed as the objective packs) and the Hessian sums at the
    moment start, the Λ of the first trial point of the first Newton step, as the
    driver would make it when it chooses the moment start and takes that step from it
    (:func:`~dmixed.fit.start.choose_start`, then
    :meth:`~dmixed.fit.optimize._Optimization.newton_steps` with ``settings``); with
    whether its Hessian is wanted with its evaluation (``ahead``), its BLUPs
    (``last_step``), and the :class:`NextNewtonPoint` that the step's line search
    chains from it (None where it chains none).

    Calling it with ``points`` (``[(Λ, step sums)]``: the starts') and ``hessian``
    (``(Λ, w, Hessian sums)`` at the moment start, or None) returns ``(Λ, ahead,
    last_step, next point or None)``, or None where the driver would not take such a
    step (it keeps the default start, a test ends the steps before one, no step or no
    trial point can be made, a sum it needs was not given).  A guess: the engine hands
    out what was made at that Λ only where the driver asks for it next, bit for bit.
    """

    parts: ObjectiveParts
    settings: NewtonSettings
    chosen: np.ndarray
    moment: np.ndarray

    def __call__(self, points: list, hessian: tuple | None):
        try:
            return self._point(self.parts.with_engine(_GivenPoints(points, hessian)))
        except LookupError:  # a sum the driver's steps would read was not given
            return None

    def _point(self, obj: ProfiledObjective):
        st = self.settings
        layout = obj.layout
        if st.steps <= 0 or layout.n_params == 0:
            return None
        # the start's choice (choose_start): the moment start where ℓ is no lower
        default_llf = obj.evaluate(self.chosen).llf
        ev = obj.evaluate(self.moment)
        if not ev.llf >= default_llf or ev.prof is None:
            return None
        x = ev.packed
        psi, tau = layout.unpack(x, obj.use_sqrt)
        if not well_inside(psi, tau, st.interior_variance, st.interior_eigenvalue):
            return None  # no hand-over there: no Newton steps first
        if small_linalg.smallest_eigenvalue(psi, st.singular_eigenvalue) <= st.singular_eigenvalue:
            return None
        # the first of the Newton steps (newton_steps: no variance settled at zero)
        movable = ~layout.boundary_mask([], use_sqrt=False)
        theta = layout.pack(psi, tau, use_sqrt=False)
        if ev.step is None:
            return None
        d_psi, d_tau = obj.score_parts(ev)
        grad = layout.score_packed(d_psi, d_tau, theta, use_sqrt=False)[movable]
        size = float(np.abs(grad).max())
        n = obj.glob.n
        if size <= st.newton_gtol * n:
            return None
        slow = slow_steps(0, size, None, st.contraction)
        if slow >= 2:
            return None
        if secant_curvature(st.secant and not slow, None, None, theta[movable], grad) is not None:
            return None  # (none without a step before)
        hess = obj.hessian_full(x, random_effects=False, ev=ev)
        curvature = profiled_curvature(hess, obj.glob.k_fe, movable)
        if curvature is None:
            return None
        traces = obj.logdet_traces(x)
        shift = np.zeros(layout.n_params) if traces is None else log_shift(theta, *traces)
        step = newton_step(
            layout, movable, theta, grad, curvature, modified_newton_step, shift, True
        )
        if step is None or step.rise <= st.newton_decrement * n:
            return None
        last_step = bool(step.rise <= LAST_STEP_DECREMENT * np.sqrt(st.newton_decrement) * n)
        ahead = not st.secant or last_step
        state = None
        if not ahead and st.steps > 1:
            state = NewtonState(
                st.newton_gtol,
                st.newton_decrement,
                st.newton_halvings,
                st.newton_llf_rtol,
                movable,
                curvature,
                (theta[movable].copy(), grad),
                shift,
                size,
                slow,
                st.contraction,
                st.secant,
                True,
                ev.llf,
                st.steps - 1,
            )
        found = _first_trial(obj, movable, theta, step, st.newton_halvings)
        if found is None:
            return None
        packed, trial, lam = found
        following = None if state is None else NextNewtonPoint(self.parts, state, packed, trial)
        return lam, ahead, last_step, following


def _first_trial(obj: ProfiledObjective, movable, theta: np.ndarray, step, halvings: int):
    """The line search's first trial point (the steps' halvings of ``step`` from
    ``theta`` over the ``movable`` parameters, as the optimizer's line search tries
    them): ``(packed parameters, θ, Λ)`` at the first fraction 1, ½, … whose Λ can be
    made, or None where none of ``halvings`` can."""
    fraction = 1.0
    for _half in range(halvings):
        trial = theta.copy()
        trial[movable] = step.point(fraction)
        fraction /= 2
        try:
            packed = obj.layout.pack_theta(trial, obj.use_sqrt)
            return packed, trial, obj.lam(packed)
        except np.linalg.LinAlgError:
            continue
    return None


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
        found = _first_trial(obj, movable, theta, step, st.newton_halvings)
        if found is None:
            return None
        return found[2], not st.secant or last_step, last_step
