"""Driving scipy over the profiled log-likelihood, wherever the statistics live.

:func:`maximize` runs scipy's quasi-Newton methods on a
:class:`~dmixed.fit.profiled.ProfiledObjective` (statsmodels' sequence BFGS → L-BFGS →
CG, each from where the last stopped), then settles variances that belong on the
boundary at exactly zero and polishes an interior optimum with a few Newton steps on the
exact profiled Hessian (an optimum at a singular Ψ* on the face of the cone it lies
on); where ℓ rises off the face of a singular Ψ* (along it, or into the cone) it runs
its methods again from a point off it.  It reads its settings and tolerances from an
:class:`~dmixed.fit.summary.OptSummary` and fills in the outcome there.  The options
``method=`` and ``free=`` are checked in :mod:`~dmixed.fit.options`.
"""

from __future__ import annotations

import collections
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from ..errors import FitConvergenceWarning, SpecError, warn
from ..kernels import small_linalg
from .charts import (
    Face,
    chain_curvature,
    cone_rise,
    cone_step,
    plain_chart,
    scaled_newton,
    sqrt_chart,
)
from .lean import lean_steps
from .newton_ahead import NewtonState, NextNewtonPoint, ObjectiveParts
from .newton_coords import NewtonStep, log_shift, newton_step
from .newton_rules import (
    LAST_STEP_DECREMENT,
    modified_newton_step,
    profiled_curvature,
    secant_curvature,
    slow_steps,
    well_inside,
)
from .newton_rules import all_above as all_above  # its tests' import, kept
from .profiled import Evaluation, ProfiledObjective
from .summary import OptSummary

logger = logging.getLogger("dmixed")

__all__ = ["maximize"]


#: scipy methods that use no gradient (scipy warns when given one)
_GRADIENT_FREE = frozenset({"Nelder-Mead", "Powell", "COBYLA", "COBYQA"})
#: scipy's names of the quasi-Newton methods.
_SCIPY_METHODS = {
    "bfgs": "BFGS",
    "lbfgs": "L-BFGS-B",
    "l-bfgs-b": "L-BFGS-B",
    "cg": "CG",
    "nm": "Nelder-Mead",
    "nelder-mead": "Nelder-Mead",
    "powell": "Powell",
    "ncg": "Newton-CG",
    "newton-cg": "Newton-CG",
    "cobyla": "COBYLA",
    "cobyqa": "COBYQA",
    "tnc": "TNC",
}


def maximize(
    obj: ProfiledObjective,
    summary: OptSummary,
    free: np.ndarray,
    methods: list[str],
    progress: bool = False,
    newton_first: bool = False,
    on_iteration: Callable[[dict, float], None] | None = None,
) -> OptSummary:
    """Maximize the profiled log-likelihood over the free packed parameters.

    Steps: (1) with ``newton_first`` (the start is a moment estimate, close to the
    optimum), up to ``summary.newton_first_steps`` exact Newton steps, and no
    quasi-Newton method when they reach ``summary.handover_gtol``; (2) otherwise the
    scipy ``methods`` in turn, each from where the last stopped, until one converges
    (a :class:`~dmixed.errors.FitConvergenceWarning` announces each retry); (3) variances
    that belong on the boundary settled at exactly zero; (4) a Newton polish of the
    interior parameters (at a singular Ψ* not settled at zero, Newton steps on the face
    of the cone it lies on: :meth:`_Optimization.face_steps`); (5) at a singular Ψ*
    where ℓ rises off its face (a step along it, turning Ψ*'s range into coordinates
    settled at zero, or into the cone promises more than ``summary.converged_rise``),
    steps (2) to (4) again from a point off the face where ℓ is higher, at most
    :data:`FACE_RESTARTS` times (:meth:`_Optimization.off_face`); the last such point
    not left is not converged.

    Parameters
    ----------
    obj : ProfiledObjective
        The objective; ``summary.initial`` is in its packing.
    summary : OptSummary
        Start and settings (from :meth:`OptSummary.start`); filled in and returned.
    free : ndarray of bool (m,)
        Packed parameters that move (the others stay at their start values).
    methods : list of str
        ``"bfgs"``, ``"lbfgs"``, ``"cg"`` (or a scipy method name).
    progress : bool
        Log each iteration at INFO (else DEBUG) level on logger ``"dmixed"``.
    newton_first : bool
        Try Newton steps before the quasi-Newton methods (step 1).
    on_iteration : callable, optional
        Called with each entry of the fit log as it is recorded (its ``"params"`` in
        the optimizer's packing and coordinates; the last, ``"method"`` ``"final"``,
        is the point returned, not an iteration) and ℓ there in the model's
        coordinates: ``fit``'s ``callback`` and ``disp``.  A :class:`CallbackStop` it
        raises ends the optimization at that entry's point, not converged
        (``summary.callback_stop``)
        (:func:`~dmixed.fit.steps.iteration_report`).
    """
    run = _Optimization(obj, summary, free, progress)
    run.on_iteration = on_iteration
    try:
        converged = newton_first and run.run_newton_first()
        if not converged:
            converged = run.run_scipy(methods)
        boundary = run.settle_boundary()
        # Newton steps count against maxiter like the quasi-Newton iterations
        run.polish(boundary, summary.polish_steps)
        restarts = FACE_RESTARTS
        # a singular Ψ* where ℓ rises off its face (along it, or into the cone): the
        # methods again from a point off it, as from a start (:meth:`_Optimization.off_face`)
        while run.off_face(boundary, move=restarts > 0):
            restarts -= 1
            converged = run.run_scipy(methods)
            boundary = run.settle_boundary()
            run.polish(boundary, summary.polish_steps)
    except CallbackStop:
        return run.stopped_by_callback()
    return run.finish(boundary, converged)


class CallbackStop(Exception):
    """``on_iteration`` asks :func:`maximize` to end the optimization at the iterate it
    was given (``fit``'s ``callback`` raised ``StopIteration``: scipy's convention).

    Not a ``StopIteration``: scipy takes that, raised in its callback, as the end of one
    method only (as :meth:`_Optimization.callback`'s hand-over to Newton steps uses it),
    and a generator turns it into a ``RuntimeError``."""


#: The most times one fit leaves a singular Ψ* where ℓ rises off its face and runs its
#: methods again (a start at Ψ* = 0: the intercept's variance, then the range turned on
#: the face of rank one, then into the cone to the maximum of rank two)
FACE_RESTARTS = 3


class _Optimization:
    """The state of one run of :func:`maximize`: the current point and the fit log.

    ``x`` is the current point, packed as ``obj`` packs it; the optimizers see only its
    free entries (``x[free]``), the others stay at their start values.
    """

    def __init__(
        self, obj: ProfiledObjective, summary: OptSummary, free: np.ndarray, progress: bool
    ) -> None:
        self.obj = obj
        self.summary = summary
        self.free = np.asarray(free, dtype=bool)
        self.n = obj.glob.n
        self.x = np.array(summary.initial, dtype=np.float64)
        summary.use_sqrt = obj.use_sqrt
        # every step begins at the start: this evaluation is one they would make anyway
        summary.initial_llf = obj.evaluate(self.x).llf
        self.t0 = time.perf_counter()
        self.level = logging.INFO if progress else logging.DEBUG
        # The Newton polish runs when every parameter is free; it converges
        # quadratically, so the quasi-Newton method can hand over as soon as the
        # gradient is small and the point is well inside the parameter space.
        self.handover = bool(np.count_nonzero(self.free) == self.free.size)
        #: every parameter free (the mask is fixed for the run: read once, not by numpy at
        #: each test): the score's norm reads all of it, without a mask
        self.all_free = self.handover
        #: the last :meth:`profiled_hessian` (its point and movable mask, and the value)
        self.last_curvature: tuple[bytes, np.ndarray | None] | None = None
        #: the last :meth:`newton_direction` (curvature, gradient, step)
        self.last_direction: tuple | None = None
        #: the point (packed, as bytes) where the Newton steps are expected to end: the
        #: Hessian's round trip there brings the BLUPs too (:meth:`profiled_hessian`)
        self.expected_optimum: bytes | None = None
        #: where :meth:`newton_steps` last stopped before a step because its test said
        #: the point is the optimum: the point (packed, as bytes), the variances settled
        #: at zero and the coordinates; Newton steps asked for again there stop as well
        self.settled: tuple[bytes, tuple[str, ...], bool] | None = None
        #: where :meth:`newton_steps` last stopped because its count of steps ran out
        #: (or ``maxiter`` left none), not a test: the point and the settled variances
        self.cut_short: tuple[bytes, tuple[str, ...]] | None = None
        #: the point where the Newton steps' hand-over or a scipy method's gradient test
        #: passed (as bytes): their verdict holds for that point only
        self.passed_at: bytes | None = None
        #: the last :meth:`interior` (the point, as bytes, and its answer)
        self.last_interior: tuple[bytes, bool] | None = None
        #: where :meth:`face_steps` ended (as bytes), the rise of ℓ a Newton step
        #: promises there (along the face of Ψ* and into the cone) and their verdict
        self.face: tuple[bytes, float, bool] | None = None
        #: the last scipy method stopped on its count of iterations (``maxiter``), not
        #: on its own tests
        self.method_cut_short = False
        #: where :meth:`off_face` judged a singular Ψ* with variances settled at zero,
        #: or :meth:`masked_off_face` a zero column of the factor (as bytes), the rise of
        #: ℓ a step off its face promises and the verdict
        self.settled_face: tuple[bytes, float, bool] | None = None
        #: :func:`maximize`'s ``on_iteration``: told of each entry of the fit log
        self.on_iteration: Callable[[dict, float], None] | None = None

    # -- the point and its evaluation ------------------------------------------------

    def full(self, xf: np.ndarray) -> np.ndarray:
        """The packed point whose free entries are ``xf``."""
        out = self.x.copy()
        out[self.free] = xf
        return out

    def negative_scaled(self, xf: np.ndarray) -> tuple[float, np.ndarray]:
        """−ℓ/n and its gradient in the free entries: what scipy minimizes."""
        ev = self.obj.evaluate(self.full(xf))
        if not np.isfinite(ev.llf):
            return np.inf, np.zeros(xf.size)
        return -ev.llf / self.n, -ev.score[self.free] / self.n

    def scaled_grad_norm(self, ev: Evaluation, mask: np.ndarray | None = None) -> float:
        """Max |∂ℓ/∂θ_j| / n over ``mask`` (default the free parameters)."""
        return self.scaled_score_norm(ev.score, mask)

    def scaled_score_norm(self, score: np.ndarray, mask: np.ndarray | None = None) -> float:
        """:meth:`scaled_grad_norm` of the packed ``score``: ``np.abs(g).max() / n``
        (NaN where an entry is NaN), on the few entries as Python floats (the same
        number: a float64 division either way; numpy's reduction costs more than the
        rest of a Newton step's log entry)."""
        if mask is None and self.all_free:
            values = np.asarray(score).tolist()
        else:
            values = score[self.free if mask is None else mask].tolist()
        return largest_magnitude(values) / self.n if values else 0.0

    def interior(self, packed: np.ndarray) -> bool:
        """Whether every variance is well away from zero (the hand-over may happen)."""
        key = np.asarray(packed).tobytes()
        if self.last_interior is not None and self.last_interior[0] == key:
            return self.last_interior[1]  # the Newton steps' end, asked again after them
        s = self.summary
        psi, tau = self.obj.layout.unpack(packed, self.obj.use_sqrt)
        out = well_inside(psi, tau, s.interior_variance, s.interior_eigenvalue)
        self.last_interior = (key, out)
        return out

    def record(self, xf: np.ndarray, method: str) -> None:
        """Append an iteration at free entries ``xf`` to the fit log (and log it)."""
        self.record_packed(self.full(xf), method)

    def record_packed(
        self, packed: np.ndarray, method: str, known: tuple[float, np.ndarray] | None = None
    ) -> None:
        """:meth:`record` of a whole packed point (a Newton step's: all entries free);
        ``known``: ℓ and the packed score there where the steps made them
        (:mod:`~dmixed.fit.lean`), else the objective's evaluation."""
        if known is None:
            ev = self.obj.evaluate(packed)
            llf, grad_norm = ev.llf, self.scaled_grad_norm(ev)
        else:
            llf, score = known
            grad_norm = self.scaled_score_norm(score)
        history = self.summary.history
        final = method == "final"
        entry = {
            # the final point is no iteration: it carries the count of those made
            "iteration": len(history) + (0 if final else 1),
            "method": method,
            "llf": llf,
            "grad_norm": grad_norm,
            "elapsed": time.perf_counter() - self.t0,
            "params": packed.tolist(),
        }
        history.append(entry)
        if self.on_iteration is not None:
            self.on_iteration(entry, entry["llf"] + self.obj.llf_offset)
        if final:
            if not logger.isEnabledFor(self.level):
                return  # the line is not written: its counts are not made
            made = collections.Counter(h["method"] for h in history[:-1])
            by_method = ", ".join(f"{name} {count}" for name, count in made.items())
            logger.log(
                self.level,
                "final, after %d iteration%s%s: llf=%.6f |grad|=%.3g elapsed=%.2fs",
                entry["iteration"],
                "" if entry["iteration"] == 1 else "s",
                f" ({by_method})" if by_method else "",
                entry["llf"] + self.obj.llf_offset,
                entry["grad_norm"],
                entry["elapsed"],
            )
            return
        logger.log(
            self.level,
            "iteration %d (%s): llf=%.6f |grad|=%.3g elapsed=%.2fs",
            entry["iteration"],
            method,
            entry["llf"] + self.obj.llf_offset,
            entry["grad_norm"],
            entry["elapsed"],
        )

    def record_newton(
        self, packed: np.ndarray, known: tuple[float, np.ndarray] | None = None
    ) -> None:
        """:meth:`record_packed` of a Newton step's accepted point."""
        self.record_packed(packed, "newton", known)

    def iterations_left(self, steps: int) -> int:
        """``steps``, cut to what is left of ``maxiter``."""
        return min(steps, max(0, self.summary.maxiter - len(self.summary.history)))

    # -- the steps ---------------------------------------------------------------------

    def run_newton_first(self) -> bool:
        """Newton steps from the start; True when they reach the hand-over gradient."""
        s = self.summary
        if not (self.handover and self.interior(self.x)):
            return False
        self.x = self.newton_steps(
            self.x,
            [],
            steps=self.iterations_left(s.newton_first_steps),
            on_step=self.record_newton,
            contraction=s.newton_first_contraction,
            secant=self.n >= s.newton_secant_rows,
        )
        ev = self.obj.evaluate(self.x)
        if self.scaled_grad_norm(ev) <= s.handover_gtol and self.interior(self.x):
            s.methods.append("newton")
            self.passed_at = self.x.tobytes()
            return True
        return False

    def run_scipy(self, methods: list[str]) -> bool:
        """The scipy methods in turn until one converges; True when one did."""
        s = self.summary
        for method in methods:
            s.methods.append(method)
            if method.lower() == "newton":
                self.run_newton()
            else:
                self.minimize(method)
            ev = self.obj.evaluate(self.x)
            if np.isfinite(ev.llf) and self.scaled_grad_norm(ev) <= max(
                s.gtol, s.convergence_floor
            ):
                self.passed_at = self.x.tobytes()
                return True
            if s.maxiter == 0:
                # no method iterates: the next would stop where this one did
                return False
            if method != methods[-1]:
                warn(
                    f"retrying the optimization with {methods[methods.index(method) + 1]}",
                    FitConvergenceWarning,
                )
        return False

    def run_newton(self) -> None:
        """``method="newton"``: exact Newton steps from the current point, up to what is
        left of ``maxiter`` (they stop where they stop helping; all parameters free)."""
        if not self.all_free:
            raise SpecError("method='newton' moves every parameter: it cannot be used with free=")
        self.x = self.newton_steps(
            self.x,
            [],
            steps=self.iterations_left(self.summary.maxiter),
            on_step=self.record_newton,
        )

    def minimize(self, method: str) -> None:
        """One scipy method from the current point (stopping early at the hand-over)."""
        s = self.summary
        name = _SCIPY_METHODS.get(method.lower(), method)
        # TNC's limit is on evaluations (it warns of, and ignores, "maxiter")
        opts: dict[str, Any] = {"maxfun" if name == "TNC" else "maxiter": s.maxiter}
        if name in ("BFGS", "CG"):
            opts["gtol"] = s.gtol
        elif name == "L-BFGS-B":
            opts.update(gtol=s.gtol, ftol=s.lbfgs_ftol, maxcor=s.lbfgs_maxcor)
        if not self.free.any():
            return
        if s.maxiter == 0:
            # no iteration: the point stays the start, as BFGS and CG leave it (L-BFGS-B
            # and Powell would still make one, Nelder-Mead move to its simplex's best
            # vertex); stopped by maxiter, as BFGS's count of 0 says
            self.method_cut_short = True
            return
        bounds = self.variance_bounds() if name == "L-BFGS-B" else None
        from scipy import optimize  # here: a fit that converges by Newton steps never needs it

        gradient_free = name in _GRADIENT_FREE
        res = optimize.minimize(
            (lambda xf: self.negative_scaled(xf)[0]) if gradient_free else self.negative_scaled,
            self.x[self.free],
            jac=None if gradient_free else True,
            method=name,
            bounds=bounds,
            options=opts,
            # trust-constr calls back with (point, state), the others with the point
            callback=lambda xf, *_: self.callback(xf, method),
        )
        self.x = self.full(res.x)
        count = getattr(res, "nfev" if name == "TNC" else "nit", 0)
        self.method_cut_short = bool(isinstance(count, (int, np.integer)) and count >= s.maxiter)

    def variance_bounds(self) -> Any:
        """With the plain packing, variances (diagonal of Ψ*, τ*) cannot be negative."""
        layout = self.obj.layout
        if self.obj.use_sqrt:
            return None
        lower = np.full(layout.n_params, -np.inf)
        rows, cols = layout.tril()
        lower[: layout.k_re2][rows == cols] = 0.0
        lower[layout.k_re2 :] = 0.0
        from scipy.optimize import Bounds

        return Bounds(lower[self.free], np.full(int(self.free.sum()), np.inf))

    def callback(self, xf: np.ndarray, method: str) -> None:
        """scipy's per-iteration callback: log, and hand over to Newton when it is time."""
        self.record(xf, method)
        if self.handover:
            ev = self.obj.evaluate(self.full(xf))  # the point just recorded: no new evaluation
            small = self.scaled_grad_norm(ev) <= self.summary.handover_gtol
            if small and self.interior(ev.packed):
                raise StopIteration

    def stopped_by_callback(self) -> OptSummary:
        """:meth:`finish` at the last iterate recorded (the one ``on_iteration`` stopped
        at: :class:`CallbackStop`), not converged (``callback_stop``: the fit's
        FitConvergenceWarning says so)."""
        self.x = np.array(self.summary.history[-1]["params"], dtype=np.float64)
        out = self.finish([], False)
        out.converged = False  # (a gradient test passing there is not the fit's verdict)
        out.callback_stop = True
        return out

    def polish(self, boundary: list[str], steps: int) -> None:
        """Newton steps on the parameters not settled at zero.

        Only when every parameter is free: a fixed packed entry (``free``) is a
        constraint in the packed coordinates that the plain-θ Newton step cannot keep.
        """
        if self.all_free:
            left = self.iterations_left(steps)
            if left == 0 < steps:  # maxiter spent before the polish
                self.cut_short = (self.x.tobytes(), tuple(boundary))
            self.x = self.newton_steps(
                self.x,
                boundary,
                steps=left,
                shifted=bool(self.summary.methods) and self.summary.methods[-1] == "newton",
            )
            if steps > 0 and not boundary and self.singular(self.x):
                # the Newton steps leave such a point as is: the steps on its face
                self.x = self.face_steps(self.x, left)

    def singular(self, packed: np.ndarray) -> bool:
        """Whether Ψ* at ``packed`` has an eigenvalue at most ``singular_eigenvalue``."""
        if self.obj.layout.k_re == 0:
            return False
        psi, _tau = self.obj.layout.unpack(packed, self.obj.use_sqrt)
        bound = self.summary.singular_eigenvalue
        return bool(small_linalg.smallest_eigenvalue(psi, bound) <= bound)

    def finish(self, boundary: list[str], converged: bool) -> OptSummary:
        """Judge convergence at the final point, log it, and fill in the summary."""
        s = self.summary
        obj = self.obj
        ev = obj.evaluate(self.x)
        mask = self.free & ~obj.layout.boundary_mask(boundary, obj.use_sqrt)
        gnorm = self.scaled_grad_norm(ev, mask)
        # a verdict made before the boundary settling and the polish holds where it was
        # made: a polish that moved the point and stopped on a failed step is judged
        # at its end, by the gradient there
        converged = converged and self.passed_at == self.x.tobytes()
        converged = converged or gnorm <= max(s.gtol, s.convergence_floor)
        if converged and not self.all_free and mask.any():
            # no Newton polish ran (a mask): the gradient depends on the units of the free
            # parameters; ∂ℓ/∂log|x| = x ∂ℓ/∂x does not (far out on a variance whose
            # start is off by its units, ∂ℓ/∂x is tiny while ℓ still rises)
            log_grad = float(np.max(np.abs(ev.score[mask] * self.x[mask]))) / self.n
            gnorm = max(gnorm, log_grad)
            converged = gnorm <= max(s.gtol, s.convergence_floor)
        if converged and not self.all_free and mask.any() and self.method_cut_short:
            # maxiter ended the method, not its tests: the cut-short rule below, with the
            # Newton step in the free packed coordinates
            packed_promise = self.packed_step(mask, ev)
            s.final_rise = math.nan if packed_promise is None else packed_promise[1]
            converged = packed_promise is not None and (
                s.final_rise <= s.converged_rise
                or self.realized_packed_rise(mask, packed_promise[0], ev) <= s.converged_rise
            )
        face = self.face if self.face is not None and self.face[0] == self.x.tobytes() else None
        if face is not None:
            # a singular Ψ* not settled at zero: in the square-root packing the gradient
            # vanishes with the factor's zero column whatever ℓ does along the face (ML
            # on the tiny-noise data with a slope on z: 8.2e-6, 41 units below the
            # maximum); the Newton step on the face and into the cone judges instead
            s.final_rise, converged = face[1], face[2]
        settled = self.settled_face
        if settled is not None and settled[0] == self.x.tobytes():
            # variances settled at zero, each on its own one-sided slope: the rise from
            # turning Ψ*'s range (the cross terms) or into the cone judges too (a start
            # at Ψ* = 0 was reported converged 0.43 below the maximum)
            s.final_rise = settled[1] if math.isnan(s.final_rise) else max(s.final_rise, settled[1])
            converged = converged and settled[2]
        s.resolution_edge = obj.at_resolution_edge(ev, self.free)
        converged = converged and not s.resolution_edge
        if converged and face is None and self.cut_short == (self.x.tobytes(), tuple(boundary)):
            # the polish's count (or maxiter) ended the Newton steps here, not their
            # tests: a gradient test alone passes far out on a flat variance with ℓ
            # still rising by units; the Newton decrement does not depend on the units
            promise = self.final_step(boundary, ev)
            # no Newton step (a singular Ψ* not settled at zero) is no evidence of an
            # optimum; a promise above the setting is checked against ℓ itself, as a
            # near-singular profiled Hessian promises rises of units that rounding makes
            s.final_rise = math.nan if promise is None else float(promise[2].rise)
            converged = promise is not None and s.final_rise <= s.converged_rise
            if promise is not None and not converged:
                realized = self.realized_rise(promise, ev)
                converged = realized <= s.converged_rise
                if realized == math.inf and not boundary:
                    # every point of the step is outside the cone: the quadratic model's
                    # maximum is beyond its boundary, and ℓ's near the point is on it
                    # (near-constant slopes, maxiter 27 and 28: promises of 4.5 and 4.4
                    # from a Hessian not negative definite); the face judges
                    s.final_rise = self.boundary_rise(promise, ev)
                    converged = s.final_rise <= s.converged_rise
        self.record(self.x[self.free], "final")
        s.history[-1]["grad_norm"] = gnorm
        s.packed = self.x
        s.llf = ev.llf
        s.grad_norm = gnorm
        s.converged = bool(converged)
        s.boundary = boundary
        s.n_iter = len(s.history) - 1  # the final entry records the point, not an iteration
        s.n_evals = obj.n_evals
        return s

    # -- boundary settling and Newton steps -------------------------------------------

    def settle_boundary(self) -> list[str]:
        """Put variances that the optimum drives to zero exactly at zero; their labels.

        A quasi-Newton method only approaches τ* = 0 (or a zero row of L)
        asymptotically.  A candidate (relative variance below ``boundary_candidate``)
        is set to zero and kept there when the likelihood does not drop (by more than
        ``boundary_llf_rtol``) and the one-sided derivative ∂ℓ/∂τ* at zero is at most
        ``boundary_slope · n``, i.e. the boundary really is the constrained maximum in
        that direction.
        """
        obj, s, layout = self.obj, self.summary, self.obj.layout
        x = self.x
        boundary: list[str] = []
        cur = obj.evaluate(x)
        psi, tau = layout.unpack(x, obj.use_sqrt)
        labels = layout.boundary_labels()  # random effects first, then components
        candidates: list[tuple[str, np.ndarray]] = []
        for i in range(layout.k_re):
            if psi[i, i] < s.boundary_candidate:
                idx = np.flatnonzero(layout.boundary_mask([labels[i]], obj.use_sqrt))
                if self.free[idx].all():
                    candidates.append((labels[i], idx))
        for j in range(layout.k_vc):
            if tau[j] < s.boundary_candidate and self.free[layout.k_re2 + j]:
                candidates.append((labels[layout.k_re + j], np.array([layout.k_re2 + j])))
        for label, idx in candidates:
            trial = x.copy()
            trial[idx] = 0.0
            ev = obj.evaluate(trial)
            if not ev.llf >= cur.llf - s.boundary_llf_rtol * max(1.0, abs(cur.llf)):
                continue
            # one-sided derivative in the variance itself, from the unpacked score
            d_psi, d_tau = obj.score_parts(ev)
            kind, k = layout.parse_boundary_label(label)
            slope = d_psi[k, k] if kind == "re" else d_tau[k]
            if slope <= s.boundary_slope * obj.glob.n:
                x, cur = trial, ev
                boundary.append(label)
        self.x = x
        return boundary

    def newton_steps(
        self,
        x: np.ndarray,
        boundary: list[str],
        steps: int,
        on_step: Callable[[np.ndarray], None] | None = None,
        contraction: float | None = None,
        secant: bool = False,
        shifted: bool = True,
    ) -> np.ndarray:
        """Up to ``steps`` Newton steps in θ = [vech(Ψ*), τ*] with the exact profiled Hessian,
        the variances on the log scale (:mod:`~dmixed.fit.newton_coords`).

        Only the parameters not settled at zero (``boundary``) move; a step that leaves
        the parameter space or lowers ℓ is halved, and the steps stop as soon as they
        do not help.  ``on_step`` is called with every accepted point (packed as the
        objective packs it).  With ``contraction``, the steps also stop when two in a
        row did not shrink the largest gradient entry by at least that factor: Newton's
        convergence is then linear, not quadratic (typically an optimum on the
        boundary), and a quasi-Newton method does better.  (One slow step is allowed:
        from a moment start the first step can be slow before the quadratic phase.)
        With ``secant``, a step after one that shrank the gradient by at least
        ``contraction`` updates the last Hessian from the change of the gradient (BFGS;
        the profiled Hessian is negative definite near the optimum) instead of a Hessian
        round trip; the first step, and any after a slow one, take the exact Hessian.
        The polish that follows judges the optimum by the exact Hessian there.
        With ``shifted`` (default), the steps' coordinates are the shifted log scale and
        modified Cholesky factors of :mod:`~dmixed.fit.newton_coords`, the shifts read
        from each exact Hessian; else its plain log scale (the τ* and a 1 × 1 Ψ*): the
        polish after a quasi-Newton method, which starts within its hand-over tolerance
        of the optimum, takes the steps the fits took before the shifted coordinates, so
        that those fits end where they ended (near an optimum the statistics barely resolve, other
        coordinates end on another point of the flat top, ℓ apart in its last digits).
        Returns the last accepted point, or ``x`` when no step was (or ℓ is no better).
        """
        obj, s, layout = self.obj, self.summary, self.obj.layout
        if layout.n_params == 0 or steps <= 0:
            return x
        if self.settled == (x.tobytes(), tuple(boundary), shifted):
            # the polish after Newton steps that stopped here by the tests below: the
            # same point, gradient, Hessian and coordinates stop it there again
            return x
        movable = ~layout.boundary_mask(boundary, use_sqrt=False)
        if not movable.any():
            return x
        psi, tau = layout.unpack(x, obj.use_sqrt)
        smallest = small_linalg.smallest_eigenvalue(psi, s.singular_eigenvalue)
        if smallest <= s.singular_eigenvalue and not boundary:
            return x  # singular Ψ* that is not a settled zero variance: leave as is
        if not boundary:
            done = self.lean_steps(x, steps, on_step, contraction, secant, shifted)
            if done is not None:
                return done
        theta = layout.pack(psi, tau, use_sqrt=False)
        previous: float | None = None
        slow = 0  # consecutive steps that shrank the gradient by less than ``contraction``
        cur_packed = x  # the point θ stands for, packed as the objective packs it
        moved = False
        curvature: np.ndarray | None = None  # profiled Hessian in the movable θ
        last: tuple[np.ndarray, np.ndarray] | None = None  # θ and gradient of that step
        shift = np.zeros(layout.n_params)  # of the log coordinates, from the last Hessian
        ev = obj.evaluate(cur_packed)
        for taken in range(steps):
            if ev.step is None:  # a rejected point (not finite, or not resolved)
                break
            d_psi, d_tau = obj.score_parts(ev)
            grad = layout.score_packed(d_psi, d_tau, theta, use_sqrt=False)[movable]
            size = float(np.abs(grad).max())
            if size <= s.newton_gtol * obj.glob.n:
                self.settled = (cur_packed.tobytes(), tuple(boundary), shifted)
                break
            slow = slow_steps(slow, size, previous, contraction)
            if slow >= 2:
                break
            previous = size
            curvature = secant_curvature(secant and not slow, curvature, last, theta[movable], grad)
            exact = curvature is None
            if exact:
                curvature = self.profiled_hessian(cur_packed, movable, ev)
                traces = obj.logdet_traces(cur_packed) if shifted else None
                if traces is not None:
                    shift = log_shift(theta, *traces)
            if curvature is None:
                break
            step = self.newton_direction(curvature, grad, theta, movable, shift, shifted)
            if step is None:
                break
            last = (theta[movable].copy(), grad)
            # the Newton decrement g'(−H)⁻¹g/2: the rise of ℓ a full step promises,
            # whatever the scale of the parameters (a gradient test is not: far out on
            # a flat variance the gradient is tiny while ℓ still has a visible rise)
            if step.rise <= s.newton_decrement * obj.glob.n:
                self.expected_optimum = cur_packed.tobytes()
                if exact:  # a secant step's decrement: the polish judges it exactly
                    self.settled = (cur_packed.tobytes(), tuple(boundary), shifted)
                break
            last_step = step.rise <= LAST_STEP_DECREMENT * np.sqrt(s.newton_decrement) * self.n
            # the exact Hessian at the trial point is wanted next unless a secant update
            # stands in for it; after a last step the polish takes it there anyway (with
            # the BLUPs), so it rides on the step's round trip then too
            ahead = not secant or last_step
            # else the next step's secant point, made from the trial point's sums, rides
            # on that round trip (where the engine chains it: a cluster's)
            state = None
            if not ahead and steps - taken > 1 and getattr(obj.engine, "step_then", None):
                state = NewtonState(
                    s.newton_gtol,
                    s.newton_decrement,
                    s.newton_halvings,
                    s.newton_llf_rtol,
                    movable,
                    curvature,
                    last,
                    shift,
                    size,
                    slow,
                    contraction,
                    secant,
                    shifted,
                    ev.llf,
                    steps - taken - 1,
                )
            accepted = self.line_search(ev, theta, movable, step, ahead, last_step, state)
            if accepted is None:
                break
            theta, cur_packed, ev = accepted
            if last_step:
                self.expected_optimum = cur_packed.tobytes()
            moved = True
            if on_step is not None:
                on_step(cur_packed)
        else:
            # every step taken, none stopped by a test: the count ended them
            self.cut_short = (cur_packed.tobytes(), tuple(boundary))
        if not moved:
            return x
        before = obj.evaluate(x).llf  # both points were evaluated: no round trip here
        after = obj.evaluate(cur_packed).llf
        return cur_packed if after >= before - s.newton_llf_rtol * max(1.0, abs(before)) else x

    def lean_steps(
        self,
        x: np.ndarray,
        steps: int,
        on_step: Callable[..., None] | None,
        contraction: float | None,
        secant: bool,
        shifted: bool,
    ) -> np.ndarray | None:
        """:meth:`newton_steps` from ``x`` (no variance settled at zero) on whole-block
        sums (:class:`~dmixed.fit.lean.LeanSteps`): the same steps and tests; the
        accepted points go to ``on_step`` with their ℓ and score, the evaluation where
        the steps end is kept by the objective (the fit's results are made from it), the
        evaluations are counted as the general path counts them.  None where the
        fit is not of the case they cover, or the steps do not end where a test of the
        optimum stops them well inside the parameter space (:meth:`interior`): the
        general path then runs from ``x``, so that a fit near the boundary, whose
        optimum rounding moves far, or whose quasi-Newton method would start from their
        point, is the general path's own."""
        lean = lean_steps(self.obj) if self.all_free else None
        if lean is None:
            return None
        out = lean.run(x, self.summary, steps, contraction, secant, shifted)
        if out is None or not out.done or not self.interior(out.final.packed):
            # the general path from x, from its own evaluation there (the start's may
            # have been made on whole-block sums: dmixed.fit.start.choose_start)
            ev = self.obj.remake(x)
            if x.tobytes() == np.asarray(self.summary.initial).tobytes():
                self.summary.initial_llf = ev.llf
            return None
        obj = self.obj
        if out.rejected_for_resolution is not None:
            obj.rejected_for_resolution = out.rejected_for_resolution
        if out.expected is not None:
            self.expected_optimum = out.expected.tobytes()
        if out.settled is not None:
            self.settled = (out.settled.tobytes(), (), shifted)
        if on_step is not None:
            for packed, llf, score in out.accepted:
                on_step(packed, (llf, score))
        obj.n_evals += out.trials
        if out.accepted and out.final.packed is out.accepted[-1][0]:
            # what follows (the tests, the results) reads the evaluation there
            obj.keep(out.final.evaluation())
        final = out.final
        if final.hessian is not None and final.prof is not None:
            # and the Hessian there, where the steps made it (the standard errors)
            obj.keep_hessian(final.packed, final.prof.beta, *final.hessian)
        return out.final.packed

    def final_step(
        self, boundary: list[str], ev: Evaluation
    ) -> tuple[np.ndarray, np.ndarray, NewtonStep] | None:
        """The Newton step from the current point in the parameters not settled at
        zero (θ in the plain log coordinates, the movable mask, the step; its ``rise``
        is the decrement ``g'(−H)⁻¹g / 2``; a modified step where ``H`` is not negative
        definite): one Hessian round trip unless the steps made it here.  None where
        there is no such step (a singular Ψ* that is not a settled zero variance, no
        curvature)."""
        obj, layout = self.obj, self.obj.layout
        movable = ~layout.boundary_mask(boundary, use_sqrt=False)
        psi, tau = layout.unpack(self.x, obj.use_sqrt)
        bound = self.summary.singular_eigenvalue
        if not boundary and small_linalg.smallest_eigenvalue(psi, bound) <= bound:
            return None  # the polish leaves such a point as is; so does the test
        if ev.step is None:
            return None
        theta = layout.pack(psi, tau, use_sqrt=False)
        d_psi, d_tau = obj.score_parts(ev)
        grad = layout.score_packed(d_psi, d_tau, theta, use_sqrt=False)[movable]
        curvature = self.profiled_hessian(self.x, movable, ev)
        if curvature is None:
            return None
        shift = np.zeros(layout.n_params)
        step = self.newton_direction(curvature, grad, theta, movable, shift, False)
        return None if step is None else (theta, movable, step)

    def realized_rise(
        self, promise: tuple[np.ndarray, np.ndarray, NewtonStep], ev: Evaluation
    ) -> float:
        """The largest rise of ℓ over the current point (evaluated: ``ev``) along a
        :meth:`final_step` at fractions 1, 1/2, ... 1/2**(``newton_halvings`` − 1)
        (points outside the parameter space skipped), stopping at the first above
        ``converged_rise``; ``inf`` where none of its points is inside the parameter
        space."""
        theta, movable, step = promise
        return self.largest_rise(
            (packed for _trial, packed in self.step_points(theta, movable, step)), ev
        )

    def largest_rise(self, points: Iterable[np.ndarray], ev: Evaluation) -> float:
        """The largest rise of ℓ over the current point (``ev``) at ``points`` (packed;
        those outside the parameter space skipped), stopping at the first above
        ``converged_rise``; ``inf`` where none is inside (the promise is not tested)."""
        obj, s = self.obj, self.summary
        best = -math.inf
        for packed in points:
            llf = obj.evaluate(packed).llf
            if math.isfinite(llf):
                best = max(best, llf - ev.llf)
                if best > s.converged_rise:
                    break
        obj.evaluate(self.x)  # the final point's evaluation is the one kept for the results
        return math.inf if best == -math.inf else best

    def boundary_rise(
        self, promise: tuple[np.ndarray, np.ndarray, NewtonStep], ev: Evaluation
    ) -> float:
        """The rise of ℓ that the face of the cone near the current point promises, where
        every point of the :meth:`final_step` ``promise`` is outside the cone: Ψ* with the
        eigenvalues the step drives below zero set to zero (at least its smallest), ℓ's
        rise there over the current point (``ev``) and the Newton step on that face and
        into the cone from it (as :meth:`face_steps` judges a point); one Hessian round
        trip.  NaN where none can be made (not converged)."""
        obj, s, layout = self.obj, self.summary, self.obj.layout
        theta, movable, step = promise
        trial = theta.copy()
        trial[movable] = step.point(0.5 ** (s.newton_halvings - 1))
        below = np.linalg.eigvalsh(layout.unpack(trial, use_sqrt=False)[0]) < 0.0
        face = Face.of(*layout.unpack(self.x, obj.use_sqrt), max(1, int(below.sum())))
        out = math.nan
        try:
            base = layout.pack_theta(layout.pack(face.base, face.tau, False), obj.use_sqrt)
        except np.linalg.LinAlgError:
            return out
        bev = obj.evaluate(base)
        hess = (
            self.profiled_hessian(base, np.ones(layout.n_params, dtype=bool), bev)
            if defined(bev)
            else None
        )
        if hess is not None:
            d_psi, d_tau = obj.score_parts(bev)
            grad, curvature = chain_curvature(layout, face.chart(), d_psi, d_tau, hess)
            newton = scaled_newton(curvature, grad)
            if newton is not None:
                rise = max(newton[1], cone_rise(layout, face.null, d_psi, hess))
                out = rise + max(0.0, bev.llf - ev.llf)
        obj.evaluate(self.x)  # the final point's evaluation is the one kept for the results
        return out

    def face_steps(self, x: np.ndarray, steps: int) -> np.ndarray:
        """Up to ``steps`` Newton steps on the face of the positive semi-definite cone
        that ``x``'s singular Ψ* lies on (:class:`~dmixed.fit.charts.Face`: the matrices
        of its rank, the null space moving too), then the test at their end; every
        parameter free, none settled at zero.

        Each step starts from the point with Ψ*'s ``k`` smallest eigenvalues set to zero
        (``k`` those at most ``singular_eigenvalue`` at ``x``; ℓ there is ℓ at the point
        within rounding), takes the profiled Hessian there (one round trip), and is
        halved until ℓ rises over the current point.  Where ℓ rises into the cone from
        ``x``'s projection, its small eigenvalue is where ℓ's maximum is: no step is
        taken, and ``x`` is judged as any other point.

        The verdict's test, kept in :attr:`face` with the point and the promise: the rise
        a step promises along the face (its Newton decrement) and into the cone
        (:func:`~dmixed.fit.charts.cone_rise`; the steps stay on the face, so such a
        rise ends them, not converged) is at most ``converged_rise``; or, the rise into
        the cone within it, no point of the step along the face has ℓ above the current
        point's (the promise is one of rounding, as :meth:`realized_rise` checks it; not
        where every point of the step is outside the parameter space).  No test made (no
        Hessian, no step): NaN, not converged.  Returns the last accepted point, or
        ``x``."""
        obj, s, layout = self.obj, self.summary, self.obj.layout
        psi, tau = layout.unpack(x, obj.use_sqrt)
        bound = s.singular_eigenvalue
        k = int(np.count_nonzero(np.linalg.eigvalsh(psi) <= bound))
        cur, cur_llf = x, obj.evaluate(x).llf
        # no test made (no Hessian, no step) is no evidence of an optimum: NaN, not converged
        self.face = (cur.tobytes(), math.nan, False)
        for taken in range(steps + 1):
            face = Face.of(*layout.unpack(cur, obj.use_sqrt), k)
            try:
                base = layout.pack_theta(layout.pack(face.base, face.tau, False), obj.use_sqrt)
            except np.linalg.LinAlgError:
                break
            ev = obj.evaluate(base)
            if not defined(ev):
                break
            hess = self.profiled_hessian(base, np.ones(layout.n_params, dtype=bool), ev)
            if hess is None:
                break
            d_psi, d_tau = obj.score_parts(ev)
            grad, curvature = chain_curvature(layout, face.chart(), d_psi, d_tau, hess)
            newton = scaled_newton(curvature, grad)
            if newton is None:
                break
            delta, along = newton
            into = cone_rise(layout, face.null, d_psi, hess)
            if taken == 0 and into > s.converged_rise:
                gain = cur_llf - ev.llf
                if gain < 0.5 * into:
                    # ℓ rises into the cone from x's projection and x has not taken that
                    # rise (its small eigenvalue is zero to rounding: a start of rank
                    # one in the square-root packing, whose gradient vanishes with the
                    # factor's zero columns): x is not the maximum
                    self.face = (cur.tobytes(), into - max(gain, 0.0), False)
                    break
                # ℓ rises into the cone from x's projection: x's small eigenvalue is
                # where ℓ's maximum is, not on the face (weights 2^50 apart: a variance
                # of 8e-9, ℓ 83 units lower at zero); the verdict as for any point
                self.face = None
                break
            # ℓ's rise at the projection counts too (as :meth:`boundary_rise` counts it)
            rise = max(along, into) + max(0.0, ev.llf - cur_llf)
            self.face = (cur.tobytes(), rise, rise <= s.converged_rise)
            # a rise into the cone is not stepped: the point is not the maximum
            if rise <= s.converged_rise or taken == steps or into > s.converged_rise:
                break
            accepted = None
            inside = False  # a point of the step in the parameter space
            for packed in self.face_points(face, delta, None, s.newton_halvings):
                llf = obj.evaluate(packed).llf
                inside = inside or math.isfinite(llf)
                if math.isfinite(llf) and llf > cur_llf:
                    accepted = (packed, llf)
                    break
            if accepted is None:
                below = int(np.count_nonzero(np.linalg.eigvalsh(face.point(delta)[0]) < 0.0))
                if not inside and k < layout.k_re:
                    # every point of the step is outside the cone: ℓ's maximum near the
                    # point is on a smaller face (Nelder-Mead on 3 groups: an eigenvalue
                    # of 3e-7 kept in the face promised 0.18, the real gap 5.7e-7); that
                    # face, with the eigenvalues the step drives below zero set to zero
                    k = min(layout.k_re, k + max(1, below))
                    continue
                # ℓ rises nowhere along the step: the promise is one of rounding
                self.face = (cur.tobytes(), rise, inside)
                break
            cur, cur_llf = accepted
        obj.evaluate(cur)  # the final point's evaluation is the one kept for the results
        return cur

    def face_points(
        self, face: Face, delta: np.ndarray, turn: np.ndarray | None, halvings: int
    ) -> Iterator[np.ndarray]:
        """The points (packed as the objective packs them) of a Newton step ``delta`` on
        ``face``, and ``turn`` into the cone (or none), at fractions 1, 1/2, …
        (``halvings`` of them); those that cannot be packed (a factorization fails) are
        skipped."""
        layout, use_sqrt = self.obj.layout, self.obj.use_sqrt
        for half in range(halvings):
            fraction = 0.5**half
            trial_psi, trial_tau = face.point(fraction * delta)
            if turn is not None:
                trial_psi = trial_psi + fraction * turn
            try:
                yield layout.pack_theta(layout.pack(trial_psi, trial_tau, use_sqrt=False), use_sqrt)
            except np.linalg.LinAlgError:
                continue

    def off_face(self, boundary: list[str], move: bool) -> bool:
        """Whether the fit leaves the singular Ψ* it ended at: there ℓ rises off its
        face, and (``move``) a point off it, with ℓ above the current point's, is now
        :attr:`x`; the methods then run again from it (:func:`maximize`).  Every
        parameter free, and ``maxiter`` not spent.

        Two kinds of such points.  Variances settled at zero (``boundary``) were
        judged each on its one-sided slope alone: the face verdict
        (:meth:`face_verdict`: the rise along the face, which turns Ψ*'s range into
        the settled coordinates, and into the cone) is made here, kept in
        :attr:`settled_face` and judges the fit where it is not left.  A singular Ψ*
        not settled at zero that :meth:`face_steps` found not converged with a rise
        above ``converged_rise`` (the steps stay on the face: a rise into the cone ends
        them).  Elsewhere (a non-singular Ψ*, a face verdict that holds) no evaluation
        is made and the fit is not left."""
        s = self.summary
        if not self.all_free:
            return self.masked_off_face(move)
        if not (s.polish_steps > 0 and self.singular(self.x)):
            return False
        key = self.x.tobytes()
        if boundary:
            if self.settled_face is not None and self.settled_face[0] == key:
                return False  # judged here already, and not left
        else:
            face = self.face
            if face is None or face[0] != key or face[2] or not face[1] > s.converged_rise:
                return False
        rise, escape = self.face_verdict(self.x, boundary)
        if boundary:
            self.settled_face = (key, rise, rise <= s.converged_rise)
            if rise <= s.converged_rise:
                return False
        if not move or escape is None or self.iterations_left(1) == 0:
            return False
        self.x = escape
        return True

    def masked_off_face(self, move: bool) -> bool:
        """:meth:`off_face` of a fit with ``free=`` held entries in the square-root
        packing: a zero column ``j`` of the factor ``L`` (its entries' squares summing to
        at most ``singular_eigenvalue``) is a point where ℓ's gradient in the column's
        entries vanishes, its curvature there ``2·D`` on the column's free rows (``D``
        = ∂ℓ/∂Ψ*).  Where ``D`` has a positive eigenvalue ``μ`` there (eigenvector
        ``v``), ℓ rises along ``L[:, j] = √t·v`` by ``μ t`` to first order in ``t``;
        the promise is ``μ² / (2|c|)`` with ``c`` ℓ's curvature in ``t`` (one Hessian
        round trip), kept in :attr:`settled_face` (no such ``μ``: no verdict, no
        evaluation beyond the point's own).  Above ``converged_rise`` (and
        ``move``), the point with the column set so (``t = μ/|c|``, halved until ℓ
        rises) is :attr:`x`: True.  The masked fit's gradient test passes at such a
        point whatever ℓ does (a start of rank one holding an entry of ``L``: reported
        converged 1.2e-3 below the constrained maximum)."""
        obj, s, layout = self.obj, self.summary, self.obj.layout
        if not (obj.use_sqrt and layout.k_re > 0 and self.free.any()):
            return False
        x, key = self.x, self.x.tobytes()
        if self.settled_face is not None and self.settled_face[0] == key:
            return False  # judged here already, and not left
        q, k2 = layout.k_re, layout.k_re2
        rows, cols = layout.tril()
        entries = np.asarray(x[:k2])
        zero = [
            j for j in range(q) if float(np.sum(entries[cols == j] ** 2)) <= s.singular_eigenvalue
        ]
        if not zero:
            return False
        ev = obj.evaluate(x)
        if not defined(ev):
            return False
        d_psi = obj.score_parts(ev)[0]
        best: tuple[float, int, np.ndarray, np.ndarray] | None = None
        for j in zero:
            where = np.flatnonzero((cols == j) & self.free[:k2])
            if where.size == 0:
                continue
            free_rows = rows[where]
            values, vectors = np.linalg.eigh(d_psi[np.ix_(free_rows, free_rows)])
            if values[-1] > 0.0 and (best is None or values[-1] > best[0]):
                best = (float(values[-1]), j, where, vectors[:, -1])
        rise, escape = 0.0, None
        if best is not None:
            mu, j, where, w = best
            hess = self.profiled_hessian(x, np.ones(layout.n_params, dtype=bool), ev)
            v = np.zeros(q)
            v[rows[where]] = w
            direction = np.zeros(layout.n_params)
            direction[:k2] = np.outer(v, v)[rows, cols]
            curvature = math.nan if hess is None else float(direction @ hess @ direction)
            rise = mu * mu / (2.0 * -curvature) if curvature < 0.0 else math.inf
            t = mu / -curvature if curvature < 0.0 else 1.0
            for _half in range(s.newton_halvings if rise > s.converged_rise else 0):
                trial = x.copy()
                trial[where] = math.sqrt(t) * w
                t /= 2
                if obj.evaluate(trial).llf > ev.llf:
                    escape = trial
                    break
            obj.evaluate(x)  # the point's evaluation is the one kept for the results
            self.settled_face = (key, rise, rise <= s.converged_rise)
        if rise <= s.converged_rise or not move or escape is None:
            return False
        if self.iterations_left(1) == 0:
            return False
        self.x = escape
        return True

    def face_verdict(self, x: np.ndarray, boundary: list[str]) -> tuple[float, np.ndarray | None]:
        """At ``x``'s singular Ψ* (its eigenvalues at most ``singular_eigenvalue`` set
        to zero: :class:`~dmixed.fit.charts.Face`), the rise of ℓ a Newton step along
        the face (its decrement) and into the cone
        (:func:`~dmixed.fit.charts.cone_step`) promises, with ℓ's rise at the
        projection; and a point off the face with ℓ above ``x``'s (packed), the two
        steps together halved until ℓ rises, or None.  One Hessian round trip; NaN and
        None where no Hessian or step can be made.  The variance components settled at
        zero (``boundary``) are held: each was settled on its own one-sided slope, which
        the step along the face would follow below zero."""
        obj, s, layout = self.obj, self.summary, self.obj.layout
        psi, tau = layout.unpack(x, obj.use_sqrt)
        k = int(np.count_nonzero(np.linalg.eigvalsh(psi) <= s.singular_eigenvalue))
        face = Face.of(psi, tau, k)
        cur_llf = obj.evaluate(x).llf
        rise, escape = math.nan, None
        try:
            base = layout.pack_theta(layout.pack(face.base, face.tau, False), obj.use_sqrt)
        except np.linalg.LinAlgError:
            return rise, escape
        bev = obj.evaluate(base)
        hess = (
            self.profiled_hessian(base, np.ones(layout.n_params, dtype=bool), bev)
            if defined(bev)
            else None
        )
        newton = None
        if hess is not None:
            d_psi, d_tau = obj.score_parts(bev)
            grad, curvature = chain_curvature(layout, face.chart(), d_psi, d_tau, hess)
            # the face's coordinates end with τ*, in the layout's order
            keep = np.ones(grad.size, dtype=bool)
            keep[grad.size - layout.k_vc :] = ~layout.boundary_mask(boundary, False)[layout.k_re2 :]
            held = scaled_newton(curvature[np.ix_(keep, keep)], grad[keep])
            if held is not None:
                full = np.zeros(grad.size)
                full[keep] = held[0]
                newton = (full, held[1])
        if hess is not None and newton is not None:
            delta, along = newton
            into, turn = cone_step(layout, face.null, d_psi, hess)
            rise = max(along, into) + max(0.0, bev.llf - cur_llf)
            halvings = s.newton_halvings if rise > s.converged_rise else 0
            for packed in self.face_points(face, delta, turn, halvings):
                if obj.evaluate(packed).llf > cur_llf:
                    escape = packed
                    break
        obj.evaluate(x)  # the point's evaluation is the one kept for the results
        return rise, escape

    def packed_step(self, mask: np.ndarray, ev: Evaluation) -> tuple[np.ndarray, float] | None:
        """The Newton step from the current point in the packed coordinates ``mask``
        (a fit with ``free=`` held entries: the constraint is on those coordinates) and
        the rise of ℓ it promises (:func:`~dmixed.fit.charts.scaled_newton`); one Hessian
        round trip.  None where there is no such step."""
        obj, layout = self.obj, self.obj.layout
        if not defined(ev):
            return None
        hess = self.profiled_hessian(self.x, np.ones(layout.n_params, dtype=bool), ev)
        if hess is None:
            return None
        chart = sqrt_chart(layout, self.x) if obj.use_sqrt else plain_chart(layout)
        grad, curvature = chain_curvature(layout, chart, *obj.score_parts(ev), hess)
        return scaled_newton(curvature[np.ix_(mask, mask)], grad[mask])

    def realized_packed_rise(self, mask: np.ndarray, delta: np.ndarray, ev: Evaluation) -> float:
        """:meth:`realized_rise` of a :meth:`packed_step` ``delta`` in the entries ``mask``."""

        def points() -> Iterator[np.ndarray]:
            for half in range(self.summary.newton_halvings):
                packed = self.x.copy()
                packed[mask] += delta / 2.0**half
                yield packed

        return self.largest_rise(points(), ev)

    def profiled_hessian(
        self, packed: np.ndarray, movable: np.ndarray, ev: Evaluation | None = None
    ) -> np.ndarray | None:
        """The profiled Hessian in the movable θ (one Hessian round trip), or ``None``
        where it cannot be computed.  ``ev``: the evaluation at ``packed`` where the
        caller has it.

        The profiled Hessian is the Schur complement H_θθ − H_θβ H_ββ⁻¹ H_βθ of the full
        Hessian (β̂(θ) is optimal, so this is d²ℓ(β̂(θ), θ)/dθ²).
        """
        point = np.asarray(packed, dtype=np.float64).tobytes()
        key = point + movable.tobytes()
        if self.last_curvature is not None and self.last_curvature[0] == key:
            return self.last_curvature[1]  # the polish starts where the Newton steps ended
        k = self.obj.glob.k_fe
        expected = point == self.expected_optimum
        h = self.obj.hessian_full(packed, random_effects=expected, ev=ev)
        out = profiled_curvature(h, k, movable)
        self.last_curvature = (key, out)
        return out

    def newton_direction(
        self,
        curvature: np.ndarray,
        grad: np.ndarray,
        theta: np.ndarray,
        movable: np.ndarray,
        shift: np.ndarray,
        cholesky: bool,
    ) -> NewtonStep | None:
        """The Newton step with variances on the log scale (:func:`newton_step` with
        :func:`modified_newton_step`, its ``shift`` and ``cholesky``), kept for the
        last curvature, gradient, point and coordinates (the polish starts where the
        Newton steps ended, with the same of all).  ``theta`` is the point, ``movable``
        its entries that move."""
        last = self.last_direction
        if (
            last is not None
            and last[0] is curvature
            and np.array_equal(last[1], grad)
            and np.array_equal(last[2], theta)
            and np.array_equal(last[4], shift)
            and last[5] == cholesky
        ):
            return last[3]
        step = newton_step(
            self.obj.layout,
            movable,
            theta,
            grad,
            curvature,
            modified_newton_step,
            shift,
            cholesky,
        )
        self.last_direction = (curvature, grad, theta.copy(), step, shift.copy(), cholesky)
        return step

    def step_points(
        self, theta: np.ndarray, movable: np.ndarray, step: NewtonStep
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The points of ``step`` from ``theta`` at fractions 1, 1/2, … (``newton_halvings``
        of them), as θ and packed as the objective packs; those outside the parameter
        space (no factor to pack) left out."""
        obj, layout = self.obj, self.obj.layout
        fraction = 1.0
        for _half in range(self.summary.newton_halvings):
            trial = theta.copy()
            trial[movable] = step.point(fraction)
            fraction /= 2
            try:
                packed = layout.pack_theta(trial, obj.use_sqrt)
            except np.linalg.LinAlgError:
                continue
            yield trial, packed

    def line_search(
        self,
        ev: Evaluation,
        theta: np.ndarray,
        movable: np.ndarray,
        step: NewtonStep,
        ahead: bool = False,
        last_step: bool = False,
        state: NewtonState | None = None,
    ) -> tuple[np.ndarray, np.ndarray, Evaluation] | None:
        """Halve ``step`` until its point is a valid one where ℓ does not drop.

        With ``ahead``, each trial point's Hessian is made with its evaluation where the
        engine can (:meth:`ProfiledObjective.evaluate_ahead`: one round trip on a
        cluster, not two, when the step is taken), and with ``last_step`` (the step is
        expected to end at the optimum) its BLUPs too.  Else, with ``state`` (the Newton
        steps' after this step's direction: a secant step follows), the next step's
        first trial point is made from each trial point's sums and evaluated in its
        round trip where the engine can (:meth:`ProfiledObjective.evaluate_then`,
        :class:`~dmixed.fit.newton_ahead.NextNewtonPoint`).  Returns that θ, its packed
        form and its evaluation, or ``None`` after ``newton_halvings`` tries.
        """
        obj, s = self.obj, self.summary
        parts = None
        for trial, trial_packed in self.step_points(theta, movable, step):
            if ahead:
                tev = obj.evaluate_ahead(trial_packed, random_effects=last_step)
            elif state is not None:
                parts = ObjectiveParts.of(obj) if parts is None else parts
                following = NextNewtonPoint(parts, state, trial_packed, trial)
                tev = obj.evaluate_then(trial_packed, following)
            else:
                tev = obj.evaluate(trial_packed)
            if math.isfinite(tev.llf) and tev.llf >= ev.llf - s.newton_llf_rtol * max(
                1.0, abs(ev.llf)
            ):
                return trial, trial_packed, tev
        return None


def defined(ev: Evaluation) -> bool:
    """Whether ``ev`` is inside the parameter space with ℓ finite: its score and Hessian
    can be made (a point whose residual sum of squares is not resolved has none)."""
    return ev.step is not None and ev.prof is not None and math.isfinite(ev.llf)


def largest_magnitude(values: list[float]) -> float:
    """``float(np.abs(values).max())`` of a non-empty list of floats: NaN where one of
    them is NaN (``max`` alone would skip a NaN that is not first)."""
    magnitudes = list(map(abs, values))
    # the magnitudes are >= 0 or NaN: their sum is NaN only where one of them is
    return math.nan if math.isnan(sum(magnitudes)) else max(magnitudes)
