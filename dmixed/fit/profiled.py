"""The profiled log-likelihood as a function of the optimizer's packed parameters.

:class:`ProfiledObjective` turns one engine round trip into the value and the score of
the profiled log-likelihood at a packed parameter vector (an :class:`Evaluation`), keeps
the last few evaluations, and computes the full Hessian there (one more round trip);
:func:`~dmixed.fit.optimize.maximize` drives scipy and the Newton steps over it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..kernels import StepSums
from ..stats import GlobalStats, Layout
from ..stats.standardize import psi_map_matrix
from .coordinates import lam_in_statistics
from .objective import (
    Profile,
    hessian,
    loglike,
    out_of_resolution,
    profile,
    profile_weights,
    score_matrices,
    unresolved_within_limit,
)

__all__ = ["Evaluation", "ProfiledObjective"]


@dataclass
class Evaluation:
    """One evaluation of the profiled objective.

    ``step`` and ``prof`` are ``None`` (and ``llf`` is −inf) outside the parameter space.
    """

    packed: np.ndarray
    step: StepSums | None
    prof: Profile | None
    llf: float
    score: np.ndarray
    #: ``(∂ℓ/∂Ψ, ∂ℓ/∂τ*)`` once computed (:meth:`ProfiledObjective.score_parts`)
    parts: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    #: Λ̃ at ``packed`` (what ``engine.step`` was given)
    lam: np.ndarray | None = field(default=None, repr=False)


#: Evaluations a :class:`ProfiledObjective` keeps (each is a few small matrices).
_CACHED_EVALUATIONS = 8


@dataclass
class ProfiledObjective:
    """The profiled log-likelihood as a function of the packed covariance parameters.

    Every evaluation is one call of ``engine.step`` (one round trip on a cluster) and
    gives both the value and the analytic score.  The statistics (and so ``β̂``, ``σ̂²``
    and ℓ) are in the statistics' coordinates; the packed parameters are the optimizer's,
    ``Λ̃ = C Λ`` on the ``exog_re`` block with ``C = re_map`` (``None``: the identity;
    :mod:`dmixed.fit.coordinates`) and each variance component's entries times its
    ``vc_map`` factor ``f_l`` (``τ̃ = f_l² τ_o``; ``None``: all 1).  The last
    :data:`_CACHED_EVALUATIONS` evaluations are kept: scipy asks for the two at the same
    point, and the start selection, the Newton steps and the final checks come back to
    points seen before.
    """

    engine: Any
    glob: GlobalStats
    layout: Layout
    reml: bool
    use_sqrt: bool
    re_map: np.ndarray | None = None
    vc_map: np.ndarray | None = None
    #: ℓ in the data's units minus ℓ in the statistics' (``Coordinates.llf`` of 0): what
    #: the fit's log adds to the values it prints (the values kept stay as computed)
    llf_offset: float = 0.0
    n_evals: int = 0
    #: the last point rejected because the statistics cannot resolve ℓ there (``Q``, or
    #: ``X'V*⁻¹X``'s factor: :func:`~dmixed.fit.objective.out_of_resolution`); None:
    #: none was
    rejected_for_resolution: np.ndarray | None = None
    #: the starts (packed, as bytes: :meth:`add_start`), where only ``Q``'s resolution
    #: refuses the point, not that of ``X'V*⁻¹X``'s factor
    #: (:func:`~dmixed.fit.objective.out_of_resolution`'s ``start``)
    starts: set[bytes] = field(default_factory=set, repr=False)
    #: the lean evaluations and Newton steps of this objective's fit
    #: (:func:`dmixed.fit.lean.lean_steps`): None until asked for, False where the fit
    #: is not of their case
    lean: Any = field(default=None, repr=False)
    _cache: dict[bytes, Evaluation] = field(default_factory=dict, repr=False)
    _last_hessian: tuple[bytes, np.ndarray] | None = field(default=None, repr=False)
    #: the Hessian sums :meth:`evaluate_ahead` made at a point (its key) with its β̂
    _ahead: tuple[bytes, Any] | None = field(default=None, repr=False)
    #: the last Hessian's log-determinant traces (:meth:`logdet_traces`) and its point
    _traces: tuple[bytes, np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    # per-fit constants of the layout (each Hessian round trip sends the basis)
    _basis: np.ndarray = field(init=False, repr=False)
    _slot_component: np.ndarray = field(init=False, repr=False)
    #: ``∂θ_statistics/∂θ_optimizer`` of ``re_map`` (:func:`psi_map_matrix`) and
    #: ``vc_map`` (``f_l²`` on the τ entries), made on
    #: the first Hessian: every Newton step's Hessian maps through it
    _theta_jac: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._basis = self.layout.basis()
        self._basis.flags.writeable = False
        self._slot_component = self.layout.slot_component

    def add_start(self, packed: np.ndarray) -> None:
        """Take ``packed`` as a start of the fit (:attr:`starts`): before it is
        evaluated, so that its evaluation, kept, is a start's."""
        self.starts.add(np.array(packed, dtype=np.float64).tobytes())

    def is_start(self, packed: np.ndarray) -> bool:
        """Whether ``packed`` is one of :attr:`starts`."""
        return bool(self.starts) and np.asarray(packed).tobytes() in self.starts

    def release_lean(self) -> None:
        """Let go of the lean steps (:attr:`lean`), which hold this objective: a
        reference cycle that only the garbage collector would break, keeping the
        statistics, the objective's cached evaluations and the steps' sums alive until
        it runs (and making it run more often).  The optimizer calls them no more; an
        objective asked for them again makes them anew."""
        self.lean = None

    def evaluate(self, packed: np.ndarray) -> Evaluation:
        """ℓ and its score at ``packed`` (this objective's packing); cached."""
        packed = np.array(packed, dtype=np.float64)
        key = packed.tobytes()
        hit = self._cache.pop(key, None)
        if hit is not None:
            self._cache[key] = hit  # most recently used last
            return hit
        try:
            lam = self.lam(packed)
        except np.linalg.LinAlgError:
            # outside the parameter space (indefinite Ψ* or negative τ* when
            # use_sqrt=False): the likelihood is not defined there
            return Evaluation(packed, None, None, -np.inf, np.zeros(packed.shape))
        return self._evaluated(packed, key, lam, None)

    def prefetch(self, points: list[np.ndarray], ahead: int | None = None, then=None) -> None:
        """Evaluate the ``points`` not cached yet in one engine round trip, where the
        engine maps several Λ at once (``engine.steps``: a Dask cluster); else nothing
        (:meth:`evaluate` computes them one by one).  The same evaluations either way.
        With ``ahead``, also the Hessian sums at ``points[ahead]`` in that round trip
        where the engine can (``engine.steps_hessian``), as :meth:`evaluate_ahead`; with
        ``then`` too (``then(points, hessian)``: the point the first Newton step tries,
        :class:`~dmixed.fit.newton_ahead.FirstNewtonPoint`), the engine chains that
        point's evaluation on the same round trip, kept for the engine to hand out
        when that point is asked for next."""
        todo = {}
        for point in points:
            packed = np.array(point, dtype=np.float64)
            if packed.tobytes() not in self._cache:
                try:
                    todo[packed.tobytes()] = (packed, self.lam(packed))
                except np.linalg.LinAlgError:
                    continue  # outside the parameter space: evaluate says so
        if getattr(self.engine, "steps", None) is None or len(todo) < 2:
            return
        want = None if ahead is None else np.array(points[ahead], dtype=np.float64).tobytes()
        at = list(todo).index(want) if want in todo else None
        lams = [lam for _, lam in todo.values()]
        try:
            if at is None or getattr(self.engine, "steps_hessian", None) is None:
                sums, hs = self.engine.steps(lams, self.layout.k_re), None
            else:
                chained = {} if then is None else {"following": then}
                sums, hs, w = self.engine.steps_hessian(
                    lams, self.layout.k_re, self._basis, self._weights(), at, **chained
                )
        except np.linalg.LinAlgError:
            return  # evaluate finds which point fails
        for (key, (packed, lam)), step in zip(todo.items(), sums, strict=True):
            ev = self._evaluated(packed, key, lam, step)
            if key == want and hs is not None:
                self._keep_ahead(ev, hs, w)

    def _weights(self):
        """``w`` of a step's sums, as the workers compute it (:func:`profile_weights`)."""
        return functools.partial(profile_weights, glob=self.glob, reml=self.reml)

    def _keep_ahead(self, ev: Evaluation, hs, w) -> None:
        """Keep the Hessian sums ``hs`` made with ``w`` at ``ev`` for :meth:`hessian_full`
        where ``w`` is the driver's, bit for bit."""
        if ev.prof is not None and np.array_equal(w, ev.prof.w):
            self._ahead = (ev.packed.tobytes(), hs)

    def evaluate_ahead(self, packed: np.ndarray, random_effects: bool = False) -> Evaluation:
        """:meth:`evaluate`, with the Hessian sums at ``packed`` made in the same round
        trip where the engine can (``engine.step_hessian``: a Dask cluster), kept for
        :meth:`hessian_full` at β̂ there; else just :meth:`evaluate`.  For points where
        the Hessian is wanted next (a Newton step's trial point).  With
        ``random_effects`` (a point expected to be the optimum), the engine makes the
        BLUPs there in that round trip too, for the results."""
        step_hessian = getattr(self.engine, "step_hessian", None)
        packed = np.array(packed, dtype=np.float64)
        key = packed.tobytes()
        if step_hessian is None or key in self._cache:
            return self.evaluate(packed)
        try:
            lam = self.lam(packed)
        except np.linalg.LinAlgError:
            return self.evaluate(packed)
        try:
            step, hs, w = step_hessian(
                lam, self.layout.k_re, self._basis, self._weights(), random_effects
            )
        except np.linalg.LinAlgError:
            return self.evaluate(packed)  # evaluate finds it is not defined there
        ev = self._evaluated(packed, key, lam, step)
        if hs is not None:
            self._keep_ahead(ev, hs, w)
        return ev

    def evaluate_then(self, packed: np.ndarray, following) -> Evaluation:
        """:meth:`evaluate`, with the point that ``following`` makes of the step sums at
        ``packed`` evaluated in the same round trip where the engine can
        (``engine.step_then``: a Dask cluster; the Hessian sums and the BLUPs there as
        it asks), for the engine to hand out when that point is asked for next
        (:class:`~dmixed.fit.newton_ahead.NextNewtonPoint`); else just :meth:`evaluate`.
        The same evaluation either way."""
        step_then = getattr(self.engine, "step_then", None)
        packed = np.array(packed, dtype=np.float64)
        key = packed.tobytes()
        if step_then is None or key in self._cache:
            return self.evaluate(packed)
        try:
            lam = self.lam(packed)
        except np.linalg.LinAlgError:
            return self.evaluate(packed)
        step = step_then(lam, self.layout.k_re, self._basis, self._weights(), following)
        return self._evaluated(packed, key, lam, step)

    def _evaluated(self, packed, key: bytes, lam: np.ndarray, step) -> Evaluation:
        """:meth:`evaluate` at ``packed`` from its Λ (and the engine's sums ``step``,
        None: computed here)."""
        self.n_evals += 1
        lam.flags.writeable = False  # kept with the evaluation for its Hessian
        try:
            if step is None:
                step = self.engine.step(lam, self.layout.k_re)
            prof = profile(step, self.glob, self.reml)
            if not prof.q > 0:
                # ℓ not defined (loglike's −inf), and the score's fac / 2Q would divide
                # by a Q of exactly 0: rejected before it, as outside the space
                return Evaluation(packed, None, None, -np.inf, np.zeros(packed.shape))
            llf = loglike(step, prof, self.glob, self.reml)
            ev = Evaluation(packed, step, prof, llf, np.zeros(packed.shape), lam=lam)
            d_psi, d_tau = self.score_parts(ev)
            ev.score = self.layout.score_packed(d_psi, d_tau, packed, self.use_sqrt)
        except np.linalg.LinAlgError:
            # X'V*⁻¹X (or a K_i) not positive definite in floating point: a rejected
            # step, as outside the parameter space (never an error for the user)
            return Evaluation(packed, None, None, -np.inf, np.zeros(packed.shape))
        if not (math.isfinite(llf) and np.isfinite(ev.score).all()):
            return Evaluation(packed, None, None, -np.inf, np.zeros(packed.shape))
        if out_of_resolution(step, prof, self.glob, self.reml, key in self.starts):
            # the float64 sums cannot resolve ℓ here: it would be noise (a spurious
            # maximum far out on a ridge, or a value each path rounds its own way where
            # X'V*⁻¹X is singular to rounding); a rejected step, as outside the space
            # (objective.out_of_resolution: a start is refused for Q alone)
            self.rejected_for_resolution = packed
            return Evaluation(packed, None, None, -np.inf, np.zeros(packed.shape))
        self.keep(ev)
        return ev

    def remake(self, packed: np.ndarray) -> Evaluation:
        """:meth:`evaluate` at ``packed`` made again here, replacing the evaluation kept
        there (one :meth:`keep` was given, of the same formulas on other sums: what
        follows is then this objective's own, bit for bit); not counted again."""
        packed = np.array(packed, dtype=np.float64)
        self._cache.pop(packed.tobytes(), None)
        evals = self.n_evals
        ev = self.evaluate(packed)
        self.n_evals = evals
        return ev

    def keep(self, ev: Evaluation) -> None:
        """Keep ``ev`` as the evaluation at its point (:meth:`evaluate` returns it from
        now on): one of this objective's, or one made of the same formulas on other sums
        of the same statistics (:mod:`~dmixed.fit.lean`), its sums and profile filled in."""
        self._cache[ev.packed.tobytes()] = ev
        if len(self._cache) > _CACHED_EVALUATIONS:
            del self._cache[next(iter(self._cache))]

    def at_resolution_edge(self, ev: Evaluation, free: np.ndarray | None = None) -> bool:
        """Whether ``ev`` is a maximum only because the points beyond it were rejected
        for resolution: one was, and ℓ rises from ``ev`` toward the last of them.
        ``free``: the packed parameters the fit moves (None: all)."""
        rejected = self.rejected_for_resolution
        if ev.prof is None:
            return False
        if rejected is None:
            # none met yet, but where Q_W is rounding ℓ rises outward by about half the
            # within-group residual degrees of freedom (≥ 1) per unit of log ψ; flat
            # (no such degrees of freedom: groups of one row) is not the edge.  Outward
            # along the free parameters only: ℓ rising along a held one is no edge
            unresolved = unresolved_within_limit(self.glob)
            outward = ev.packed if free is None else np.where(free, ev.packed, 0.0)
            return unresolved and float(ev.score @ outward) > 0.25
        return float(ev.score @ (rejected - ev.packed)) > 0.0

    def lam(self, packed: np.ndarray) -> np.ndarray:
        """Λ̃ in the statistics' coordinates for the optimizer's ``packed``."""
        lam = self.layout.lam(packed, self.use_sqrt)
        return lam_in_statistics(lam, self.layout, self.re_map, self.vc_map)

    def score_parts(self, ev: Evaluation) -> tuple[np.ndarray, np.ndarray]:
        """``(∂ℓ/∂Ψ, ∂ℓ/∂τ*)`` in the optimizer's coordinates (see
        :func:`~dmixed.fit.objective.score_matrices`): ``C' D̃ C`` for Ψ."""
        if ev.parts is not None:
            return ev.parts
        step, prof = _defined(ev)
        d_psi, d_tau = score_matrices(step, prof, self.reml, self._slot_component, self.layout.k_vc)
        if self.re_map is not None:
            d_psi = self.re_map.T @ d_psi @ self.re_map
        if self.vc_map is not None:  # τ̃ = f² τ_o: ∂ℓ/∂τ_o = f² ∂ℓ/∂τ̃
            d_tau = d_tau * self.vc_map**2
        ev.parts = (d_psi, d_tau)
        return d_psi, d_tau

    def hessian_full(
        self,
        packed: np.ndarray,
        beta: np.ndarray | None = None,
        random_effects: bool = False,
        ev: Evaluation | None = None,
    ) -> np.ndarray:
        """:meth:`_hessian_full`, kept for the last point (the Newton polish ends where
        the standard errors are computed).  With ``random_effects`` (a point expected to
        be the optimum), the engine makes the BLUPs there in the Hessian's round trip
        where it can (``engine.hessian_random_effects``: a Dask cluster).  ``ev``: the
        evaluation at ``packed`` where the caller has it (else looked up)."""
        if beta is None:
            if ev is None:
                ev = self.evaluate(packed)
            beta = _defined(ev)[1].beta
        key = np.asarray(packed, dtype=np.float64).tobytes() + np.asarray(beta).tobytes()
        if self._last_hessian is not None and self._last_hessian[0] == key:
            return self._last_hessian[1].copy()
        out = self._hessian_full(packed, beta, random_effects, ev)
        self._last_hessian = (key, out)
        return out.copy()

    def keep_hessian(
        self,
        packed: np.ndarray,
        beta: np.ndarray,
        hess: np.ndarray,
        traces: tuple[np.ndarray, np.ndarray],
    ) -> None:
        """Keep ``hess`` as :meth:`hessian_full` at ``packed`` and ``beta``, and
        ``traces`` as :meth:`logdet_traces` there: made of the same formulas on other
        sums of the same statistics (:mod:`~dmixed.fit.lean`), so that the standard
        errors at the point where those steps end need no Hessian round trip."""
        packed = np.asarray(packed, dtype=np.float64)
        key = packed.tobytes() + np.asarray(beta).tobytes()
        self._last_hessian = (key, np.array(hess, dtype=np.float64))
        self._traces = (packed.tobytes(), traces[0].copy(), traces[1].copy())

    def _hessian_full(
        self,
        packed: np.ndarray,
        beta: np.ndarray | None = None,
        random_effects: bool = False,
        ev: Evaluation | None = None,
    ) -> np.ndarray:
        """Hessian in [β̃, vech(Ψ), τ*] (the optimizer's Ψ) at β̃ (default β̂) — one more
        round trip; ``ev`` the evaluation at ``packed`` (else looked up).

        All NaN where it cannot be computed in floating point (a factorization fails or
        an entry is not finite): callers treat that as "no curvature information".
        """
        if ev is None:
            ev = self.evaluate(packed)
        step, prof = _defined(ev)
        beta = prof.beta if beta is None else np.asarray(beta, dtype=np.float64)
        lam = ev.lam if ev.lam is not None else self.lam(packed)
        try:
            w = prof.w if beta is prof.beta else np.append(-beta, 1.0)
            ahead = self._ahead
            if ahead is not None and ahead[0] == ev.packed.tobytes() and w is prof.w:
                hs, self._ahead = ahead[1], None  # made with the step (evaluate_ahead)
            elif random_effects and getattr(self.engine, "hessian_random_effects", None):
                hs = self.engine.hessian_random_effects(lam, self._basis, w)
            else:
                hs = self.engine.hessian(lam, self._basis, w, a_inv=prof.a_inv, reml=self.reml)
            hess = hessian(step, hs, beta, self.glob, self.reml, prof=prof)
        except np.linalg.LinAlgError:
            hess = None
        if hess is None or not np.isfinite(hess).all():
            k = beta.size + self.layout.n_params
            return np.full((k, k), np.nan)
        trace_s = np.einsum("jab,ba->j", self._basis, step.s)
        trace_ss = hs.tr_ss.diagonal()
        if self.re_map is None and self.vc_map is None:
            self._traces = (ev.packed.tobytes(), trace_s, trace_ss.copy())
            return hess
        p = beta.size
        if self._theta_jac is None:
            q, k_vc = self.layout.k_re, self.layout.k_vc
            re_map = np.eye(q) if self.re_map is None else self.re_map
            self._theta_jac = psi_map_matrix(re_map, k_vc)
            if self.vc_map is not None:
                m = self._theta_jac.shape[0] - k_vc
                self._theta_jac[m:, m:] = np.diag(self.vc_map**2)
            self._theta_jac.flags.writeable = False
        jac = np.eye(hess.shape[0])
        jac[p:, p:] = self._theta_jac
        theta_jac = jac[p:, p:]
        self._traces = (
            ev.packed.tobytes(),
            theta_jac.T @ trace_s,
            np.einsum("jk,jl,lk->k", theta_jac, hs.tr_ss, theta_jac),
        )
        out = jac.T @ hess @ jac
        return 0.5 * (out + out.T)

    def logdet_traces(self, packed: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """``(Σ_i tr(S_i E_j), Σ_i tr(S_i E_j S_i E_j))`` over θ = [vech_lt(Ψ*), τ*] in
        the optimizer's coordinates: the derivative of ``Σ_i log|V*_i|`` along each θ_j
        and minus its second derivative, from the last :meth:`hessian_full`
        when it was at ``packed`` (else ``None``: no round trip is made for them).
        What :func:`~dmixed.fit.newton_coords.log_shift` reads."""
        kept = self._traces
        if kept is None or kept[0] != np.asarray(packed, dtype=np.float64).tobytes():
            return None
        return kept[1], kept[2]


def _defined(ev: Evaluation) -> tuple[StepSums, Profile]:
    """The sums and profile of an evaluation inside the parameter space."""
    if ev.step is None or ev.prof is None:
        raise RuntimeError("internal error: the objective is not defined at this point")
    return ev.step, ev.prof
