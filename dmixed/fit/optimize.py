"""Driving scipy over the profiled log-likelihood, wherever the statistics live.

:class:`ProfiledObjective` turns one engine round trip into the value and the score of
the profiled log-likelihood at a packed parameter vector; :func:`maximize` runs scipy's
quasi-Newton methods on it (statsmodels' sequence BFGS → L-BFGS → CG, each from where
the last stopped), then settles variances that belong on the boundary at exactly zero
and polishes an interior optimum with a few Newton steps on the exact profiled Hessian.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

from ..errors import FitConvergenceWarning
from ..kernels import StepSums
from ..stats import GlobalStats, Layout
from .objective import Profile, hessian, loglike, profile, score_matrices

logger = logging.getLogger("dmixed")


@dataclass
class Evaluation:
    """One evaluation of the profiled objective."""

    packed: np.ndarray
    step: StepSums | None
    prof: Profile | None
    llf: float
    score: np.ndarray


#: Evaluations a :class:`ProfiledObjective` keeps (each is a few small matrices).
_CACHED_EVALUATIONS = 8


@dataclass
class ProfiledObjective:
    """The profiled log-likelihood as a function of the packed covariance parameters.

    Every evaluation is one call of ``engine.step`` (one round trip on a cluster) and
    gives both the value and the analytic score.  The last :data:`_CACHED_EVALUATIONS`
    evaluations are kept: scipy asks for the two at the same point, and the start
    selection, the Newton steps and the final checks come back to points seen before.
    """

    engine: object
    glob: GlobalStats
    layout: Layout
    reml: bool
    use_sqrt: bool
    n_evals: int = 0
    _cache: dict[bytes, Evaluation] = field(default_factory=dict, repr=False)

    def evaluate(self, packed: np.ndarray) -> Evaluation:
        packed = np.array(packed, dtype=np.float64)
        key = packed.tobytes()
        hit = self._cache.pop(key, None)
        if hit is not None:
            self._cache[key] = hit  # most recently used last
            return hit
        try:
            lam = self.layout.lam(packed, self.use_sqrt)
        except np.linalg.LinAlgError:
            # outside the parameter space (indefinite Ψ* or negative τ* when
            # use_sqrt=False): the likelihood is not defined there
            return Evaluation(packed, None, None, -np.inf, np.zeros_like(packed))
        step = self.engine.step(lam, self.layout.k_re)
        self.n_evals += 1
        prof = profile(step, self.glob, self.reml)
        llf = loglike(step, prof, self.glob, self.reml)
        d_psi, d_tau = score_matrices(
            step, prof, self.reml, self.layout.slot_component, self.layout.k_vc
        )
        score = self.layout.score_packed(d_psi, d_tau, packed, self.use_sqrt)
        ev = Evaluation(packed, step, prof, llf, score)
        self._cache[key] = ev
        if len(self._cache) > _CACHED_EVALUATIONS:
            del self._cache[next(iter(self._cache))]
        return ev

    def hessian_full(self, packed: np.ndarray, beta: np.ndarray | None = None) -> np.ndarray:
        """Hessian in [β, vech(Ψ*), τ*] at β (default β̂) — one more round trip."""
        ev = self.evaluate(packed)
        beta = ev.prof.beta if beta is None else np.asarray(beta, dtype=np.float64)
        lam = self.layout.lam(packed, self.use_sqrt)
        hs = self.engine.hessian(lam, self.layout.basis(), np.append(-beta, 1.0))
        return hessian(ev.step, hs, beta, self.glob, self.reml)


@dataclass
class OptimizeResult:
    packed: np.ndarray
    converged: bool
    n_iter: int
    n_evals: int
    methods: list[str]
    history: list[dict]
    boundary: list[str]
    grad_norm: float


#: Scaled gradient (max |∂ℓ/∂θ_j| / n) below which BFGS / L-BFGS stop early and leave the
#: rest to the exact Newton polish, when every parameter is free and the point is well
#: inside the parameter space.  Below about this size the quasi-Newton line searches
#: work at the floating-point resolution of ℓ/n on large data: on 10M rows they were
#: seen spending 40 evaluations on one last iteration before giving up.
HANDOVER_GTOL = 1e-7


#: Newton steps tried first from a moment start (:mod:`dmixed.start`), before any
#: quasi-Newton iteration.  From a start that close they usually converge in two to four
#: (a first slow step is common with several random effects); when they do not, BFGS
#: carries on from where they stopped.
NEWTON_FIRST_STEPS = 6
#: ... and they stop when two in a row shrink the gradient by less than this factor.
NEWTON_FIRST_CONTRACTION = 0.25


def _scaled_grad_norm(ev: Evaluation, free: np.ndarray, n: int) -> float:
    """Max |∂ℓ/∂θ_j| / n over the free parameters: statsmodels judges on ℓ/n too."""
    g = ev.score[free]
    return float(np.max(np.abs(g)) / n) if g.size else 0.0


def maximize(
    obj: ProfiledObjective,
    start: np.ndarray,
    free: np.ndarray,
    methods: list[str],
    maxiter: int,
    gtol: float,
    progress: bool = False,
    param_names: list[str] | None = None,
    newton_first: bool = False,
) -> OptimizeResult:
    """Maximize the profiled log-likelihood over the free packed parameters.

    ``newton_first``: the start is close to the optimum (a moment estimate), so try
    :data:`NEWTON_FIRST_STEPS` exact Newton steps before the quasi-Newton methods, and
    skip those when the steps reach the hand-over gradient (:data:`HANDOVER_GTOL`).
    """
    n = obj.glob.n
    x = np.array(start, dtype=np.float64)
    free = np.asarray(free, dtype=bool)
    history: list[dict] = []
    t0 = time.perf_counter()
    level = logging.INFO if progress else logging.DEBUG

    def full(xf: np.ndarray) -> np.ndarray:
        out = x.copy()
        out[free] = xf
        return out

    def fun(xf: np.ndarray) -> tuple[float, np.ndarray]:
        ev = obj.evaluate(full(xf))
        if not np.isfinite(ev.llf):
            return np.inf, np.zeros(xf.size)
        return -ev.llf / n, -ev.score[free] / n

    def record(xf: np.ndarray, method: str) -> None:
        ev = obj.evaluate(full(xf))
        entry = {
            "iteration": len(history) + 1,
            "method": method,
            "llf": ev.llf,
            "grad_norm": float(np.linalg.norm(ev.score[free])),
            "elapsed": time.perf_counter() - t0,
            "params": ev.packed.tolist(),
        }
        history.append(entry)
        logger.log(
            level,
            "iteration %d (%s): llf=%.6f |grad|=%.3g elapsed=%.2fs",
            entry["iteration"],
            method,
            entry["llf"],
            entry["grad_norm"],
            entry["elapsed"],
        )

    def interior(packed: np.ndarray) -> bool:
        psi, tau = obj.layout.unpack(packed, obj.use_sqrt)
        return bool(
            np.diag(psi).min(initial=1.0) > 1e-3
            and np.linalg.eigvalsh(psi).min(initial=1.0) > 1e-6
            and tau.min(initial=1.0) > 1e-3
        )

    # The Newton polish runs when every parameter is free; it converges quadratically,
    # so the quasi-Newton method can hand over as soon as the gradient is small and the
    # point is well inside the parameter space (see HANDOVER_GTOL).
    handover = bool(free.all())

    def callback(xf: np.ndarray, method: str) -> None:
        record(xf, method)
        if handover:
            ev = obj.evaluate(full(xf))  # the point just recorded: no new evaluation
            if _scaled_grad_norm(ev, free, n) <= HANDOVER_GTOL and interior(ev.packed):
                raise StopIteration

    used: list[str] = []
    converged = False
    if newton_first and handover and interior(x):
        steps = min(NEWTON_FIRST_STEPS, max(0, maxiter - len(history)))
        x = _newton_polish(
            obj,
            x,
            free,
            [],
            steps=steps,
            on_step=lambda p: record(p[free], "newton"),
            contraction=NEWTON_FIRST_CONTRACTION,
        )
        ev = obj.evaluate(x)
        if _scaled_grad_norm(ev, free, n) <= HANDOVER_GTOL and interior(x):
            used.append("newton")
            converged = True
    for method in methods if not converged else []:
        used.append(method)
        name = {"bfgs": "BFGS", "lbfgs": "L-BFGS-B", "cg": "CG"}.get(method.lower(), method)
        opts: dict = {"maxiter": maxiter}
        if name in ("BFGS", "CG"):
            opts["gtol"] = gtol
        elif name == "L-BFGS-B":
            opts.update(gtol=gtol, ftol=1e-15, maxcor=20)
        bounds = None
        if name == "L-BFGS-B" and not obj.use_sqrt:
            # plain packing: variances (diagonal of Ψ*, τ*) cannot be negative
            lower = np.full(obj.layout.n_params, -np.inf)
            rows, cols = obj.layout.tril()
            lower[: obj.layout.k_re2][rows == cols] = 0.0
            lower[obj.layout.k_re2 :] = 0.0
            bounds = optimize.Bounds(lower[free], np.full(int(free.sum()), np.inf))
        if free.any():
            res = optimize.minimize(
                fun,
                x[free],
                jac=True,
                method=name,
                bounds=bounds,
                options=opts,
                callback=lambda xf, _m=method: callback(xf, _m),
            )
            x = full(res.x)
        ev = obj.evaluate(x)
        if np.isfinite(ev.llf) and _scaled_grad_norm(ev, free, n) <= max(gtol, 1e-4):
            converged = True
            break
        if method != methods[-1]:
            warnings.warn(
                f"retrying the optimization with {methods[methods.index(method) + 1]}",
                FitConvergenceWarning,
                stacklevel=3,
            )

    x, boundary = _settle_boundary(obj, x, free)
    # Newton steps count against maxiter like the quasi-Newton iterations
    x = _newton_polish(obj, x, free, boundary, steps=min(6, max(0, maxiter - len(history))))
    ev = obj.evaluate(x)
    gnorm = _scaled_grad_norm(ev, free & ~obj.layout.boundary_mask(boundary, obj.use_sqrt), n)
    converged = converged or gnorm <= max(gtol, 1e-4)
    record(x[free], "final")
    return OptimizeResult(
        x, bool(converged), len(history), obj.n_evals, used, history, boundary, gnorm
    )


# ---------------------------------------------------------------------------
# Boundary handling and Newton polish
# ---------------------------------------------------------------------------


def _settle_boundary(
    obj: ProfiledObjective, x: np.ndarray, free: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """Put variances that the optimum drives to zero exactly at zero.

    A quasi-Newton method only approaches τ* = 0 (or a zero row of L) asymptotically.
    A candidate (relative variance below 1e-4) is set to zero and kept there when the
    likelihood does not drop and the one-sided derivative ∂ℓ/∂τ* at zero is ≤ 0, i.e.
    the boundary really is the constrained maximum in that direction.
    """
    layout = obj.layout
    boundary: list[str] = []
    cur = obj.evaluate(x)
    psi, tau = layout.unpack(x, obj.use_sqrt)
    rows, cols = layout.tril()
    candidates: list[tuple[str, np.ndarray]] = []
    for i in range(layout.k_re):
        if psi[i, i] < 1e-4:
            idx = np.flatnonzero(layout.boundary_mask([f"re:{i}"], obj.use_sqrt))
            if free[idx].all():
                candidates.append((f"re:{i}", idx))
    for j in range(layout.k_vc):
        if tau[j] < 1e-4 and free[layout.k_re2 + j]:
            candidates.append((f"vc:{j}", np.array([layout.k_re2 + j])))
    for label, idx in candidates:
        trial = x.copy()
        trial[idx] = 0.0
        ev = obj.evaluate(trial)
        if not ev.llf >= cur.llf - 1e-9 * max(1.0, abs(cur.llf)):
            continue
        # one-sided derivative in the variance itself, from the unpacked score
        d_psi, d_tau = score_matrices(
            ev.step, ev.prof, obj.reml, layout.slot_component, layout.k_vc
        )
        kind, k = layout.parse_boundary_label(label)
        slope = d_psi[k, k] if kind == "re" else d_tau[k]
        if slope <= 1e-7 * obj.glob.n:
            x, cur = trial, ev
            boundary.append(label)
    return x, boundary


def _newton_polish(
    obj: ProfiledObjective,
    x: np.ndarray,
    free: np.ndarray,
    boundary: list[str],
    steps: int = 6,
    on_step: Callable[[np.ndarray], None] | None = None,
    contraction: float | None = None,
) -> np.ndarray:
    """A few Newton steps in θ = [vech(Ψ*), τ*] with the exact profiled Hessian.

    The profiled Hessian is the Schur complement H_θθ − H_θβ H_ββ⁻¹ H_βθ of the full
    Hessian (β̂(θ) is optimal, so this is d²ℓ(β̂(θ), θ)/dθ²).  Only interior free
    parameters move; a step that leaves the parameter space or lowers ℓ is halved,
    and the polish stops as soon as it does not help.  ``on_step`` is called with every
    accepted point (packed as the objective packs it).  With ``contraction``, the steps
    also stop when two in a row did not shrink the largest gradient entry by at least
    that factor: Newton's convergence is then linear, not quadratic (typically an optimum
    on the boundary), and a quasi-Newton method does better.  (One slow step is allowed:
    from a moment start the first step can be slow before the quadratic phase.)
    """
    layout = obj.layout
    if layout.n_params == 0 or steps <= 0:
        return x
    # Only polish when every parameter is free: a fixed packed entry (``free``) is a
    # constraint in the packed coordinates that the plain-θ Newton step cannot keep.
    if not free.all():
        return x
    movable = ~layout.boundary_mask(boundary, use_sqrt=False)
    if not movable.any():
        return x
    psi, tau = layout.unpack(x, obj.use_sqrt)
    if np.linalg.eigvalsh(psi).min(initial=1.0) <= 1e-8 and not boundary:
        return x  # singular Ψ* that is not a settled zero variance: leave as is
    theta = layout.pack(psi, tau, use_sqrt=False)
    k = obj.glob.k_fe
    previous: float | None = None
    slow = 0  # consecutive steps that shrank the gradient by less than ``contraction``
    cur_packed = x  # the point θ stands for, packed as the objective packs it
    moved = False
    for _ in range(steps):
        ev = obj.evaluate(cur_packed)
        d_psi, d_tau = score_matrices(
            ev.step, ev.prof, obj.reml, layout.slot_component, layout.k_vc
        )
        grad = layout.score_packed(d_psi, d_tau, theta, use_sqrt=False)[movable]
        size = float(np.max(np.abs(grad)))
        if size <= 1e-10 * obj.glob.n:
            break
        if contraction is not None and previous is not None:
            slow = slow + 1 if size > contraction * previous else 0
            if slow >= 2:
                break
        previous = size
        h = obj.hessian_full(cur_packed)
        hbb, hbt, htt = h[:k, :k], h[:k, k:], h[k:, k:]
        prof_h = htt - hbt.T @ np.linalg.solve(hbb, hbt) if k else htt
        sub = prof_h[np.ix_(movable, movable)]
        try:
            delta = -np.linalg.solve(sub, grad)
        except np.linalg.LinAlgError:
            break
        if np.any(np.linalg.eigvalsh(0.5 * (sub + sub.T)) >= 0):
            break  # not locally concave: leave it to the quasi-Newton result
        accepted = False
        for _half in range(20):
            trial = theta.copy()
            trial[movable] += delta
            try:
                trial_packed = layout.pack(*layout.unpack(trial, False), use_sqrt=obj.use_sqrt)
                layout.lam(trial, use_sqrt=False)
            except np.linalg.LinAlgError:
                delta /= 2
                continue
            tev = obj.evaluate(trial_packed)
            if np.isfinite(tev.llf) and tev.llf >= ev.llf - 1e-12 * max(1.0, abs(ev.llf)):
                theta, cur_packed, accepted, moved = trial, trial_packed, True, True
                if on_step is not None:
                    on_step(trial_packed)
                break
            delta /= 2
        if not accepted:
            break
    if not moved:
        return x
    before = obj.evaluate(x).llf  # both points were evaluated: no round trip here
    after = obj.evaluate(cur_packed).llf
    return cur_packed if after >= before - 1e-12 * max(1.0, abs(before)) else x
