"""The Newton steps of the common small fit without the per-evaluation machinery.

:meth:`~dmixed.fit.optimize._Optimization.newton_steps` makes every evaluation a
:class:`~dmixed.fit.profiled.Evaluation` of a
:class:`~dmixed.fit.profiled.ProfiledObjective` (its cache, its engine round trip, its
per-chunk sums) and every Hessian a round trip of its own: on a fit of a few thousand
groups that machinery, not the arithmetic, is most of the fit.  For the case most fits
are — an in-process engine (its groups in any number of chunks, up to
:data:`LEAN_ROWS_BYTES` of fixed rows), two random-effect coordinates with a dense
``cov_re``, no variance component, the square-root packing, every parameter free, no
variance settled at zero — and for one random-effect coordinate alone (a random
intercept), :class:`LeanSteps` runs the same loop on the whole-block sums of
:class:`~dmixed.kernels.dense2.Dense2Statistics` (of
:class:`~dmixed.kernels.dense1.Dense1Statistics` for one; added chunk by chunk): the same
tests (gradient, contraction, secant, decrement), the same coordinates
(:func:`~dmixed.fit.newton_coords.newton_step`), the same line search and the same
rejections (ℓ or its score not finite, ``X'V*⁻¹X`` not positive definite, ``Q`` not
resolved, or ``X'V*⁻¹X``'s factor not resolved at a point other than the objective's
starts), with ℓ, its score and the profiled Hessian from the formulas of
:mod:`~dmixed.fit.objective`.  The sums over groups are added in another order than the
per-chunk kernels add them, so the points agree with the general path's to rounding
(``tests/fit/test_lean.py``), not bit for bit.  Where anything else happens (a trial
point whose ``Ψ*`` has no Cholesky factor), it makes no step at all and the general
path runs from the same point; so too where the exact profiled Hessian is singular to
rounding (:data:`SINGULAR_CURVATURE`), whose optimum those orders move far.
"""

from __future__ import annotations

import functools
import math
import operator
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from ..engines.local import LocalEngine
from ..kernels import StatsBlock, StepSums, compiled, small_linalg
from ..kernels.dense1 import Dense1Statistics, Dense1Step
from ..kernels.dense2 import Dense2Statistics, Dense2Step, fixed_numbers
from ..kernels.hessian_moments import full_gather, full_sums
from ..stats.standardize import psi_map_matrix
from .coordinates import lam_in_statistics
from .newton_coords import MAX_LOG_STEP, SHIFT_SHARE, NewtonStep, newton_step
from .newton_rules import (
    LAST_STEP_DECREMENT,
    modified_newton_step,
    secant_curvature,
    slow_steps,
)
from .objective import (
    FACTOR_UNRESOLVED,
    PIVOT_RESOLUTION_LIMIT,
    RESOLUTION_LIMIT,
    RESOLVED,
    UNRESOLVED,
    Profile,
    hessian,
    loglike,
    loglike_constant,
    profile,
    resolution_verdict,
    score_matrices,
    value_loglike,
)
from .profiled import Evaluation

__all__ = [
    "LEAN_ROWS_BYTES",
    "LeanPoint",
    "LeanResult",
    "LeanSteps",
    "hessian_of_moments",
    "lean_steps",
]

_EPS = float(np.finfo(float).eps)

#: the numbers the extension's ``lean_evaluate`` returns (``LEAN_SCALARS`` of ``c_sums.c``):
#: ℓ, Σ log d, log|A|, Q, D00, D01, D11, the packed score, b00, b01, b11, det(B), S00, S01, S11
_FUSED_NUMBERS = 17

#: The steps hand over where the exact profiled Hessian's smallest curvature (in
#: absolute value) is below this share of its largest: ℓ is flat to rounding along a
#: direction (a random-effects design of deficient rank in every group, a correlation
#: at ±1), so that the step along it, and the point where the steps end, follow the
#: rounding of the sums, which the whole-block sums make otherwise than the general path.
SINGULAR_CURVATURE = 1e-8

#: The steps stand back where the fixed per-group rows of
#: :class:`~dmixed.kernels.dense2.Dense2Statistics`
#: (:func:`~dmixed.kernels.dense2.fixed_numbers` a group) would take more than this
#: many bytes: they are made once per fit next to the statistics,
#: and on that many groups the per-evaluation machinery they save is a small share.
LEAN_ROWS_BYTES = 256 * 2**20


@dataclass
class LeanPoint:
    """One evaluation of :class:`LeanSteps`: ``llf`` −inf (and ``prof`` None) where the
    general path rejects the point; ``score`` in the packing, ``grad`` in θ, ``d_psi``
    ∂ℓ/∂Ψ* (the optimizer's coordinates), ``lam`` the factor in the statistics', ``step``
    the whole-block sums there (None: not made yet, :meth:`LeanSteps.profiled_hessian`
    makes them), ``hessian`` the full Hessian and its log-determinant traces there
    where :meth:`LeanSteps.profiled_hessian` made them (what
    :meth:`~dmixed.fit.profiled.ProfiledObjective.keep_hessian` keeps)."""

    packed: np.ndarray
    llf: float
    score: np.ndarray
    grad: np.ndarray
    lam: np.ndarray | None = None
    step: Dense1Step | Dense2Step | None = None
    sums: StepSums | None = None
    prof: Profile | None = None
    d_psi: np.ndarray | None = None
    hessian: tuple[np.ndarray, tuple[np.ndarray, np.ndarray]] | None = None

    def evaluation(self) -> Evaluation:
        """The point as the objective's :class:`~dmixed.fit.profiled.Evaluation`."""
        return Evaluation(
            self.packed,
            self.step_sums(),
            self.prof,
            self.llf,
            self.score,
            parts=None if self.d_psi is None else (self.d_psi, np.zeros(0)),
            lam=self.lam,
        )

    def step_sums(self) -> StepSums | None:
        """``sums``, made from a :class:`~dmixed.kernels.dense2.Dense2Step` ``step``
        where :meth:`LeanSteps.evaluate` left them out."""
        step = self.step
        if self.sums is None and self.prof is not None and isinstance(step, Dense2Step):
            k = step.m.shape[0]
            self.sums = StepSums(
                step.logdet,
                step.m,
                step.s,
                step.gram.reshape(2, k, 2, k).transpose(0, 2, 1, 3),
                np.zeros((0, k, k)),
                np.zeros((k, k)),
            )
        return self.sums


@dataclass
class LeanResult:
    """What :meth:`LeanSteps.run` did: the point it ends at (its start where no step
    was taken or ℓ is no better), the accepted points in order with their ℓ and packed
    score, the point where a test said the steps are at the optimum (``settled``) and
    the point where they are expected to end (``expected``) as the general path marks
    them (or None), the trial points evaluated (``trials``), the last one rejected
    for resolution (or None) and whether the steps stopped at ``final`` because a test
    (gradient or Newton decrement, exact or secant) said it is the optimum (``done``)."""

    final: LeanPoint
    accepted: list[tuple[np.ndarray, float, np.ndarray]]
    settled: np.ndarray | None
    expected: np.ndarray | None
    trials: int
    rejected_for_resolution: np.ndarray | None
    done: bool = False


def lean_steps(obj) -> LeanSteps | None:
    """:meth:`LeanSteps.of` the objective ``obj``, made once and kept on it."""
    if obj.lean is None:
        obj.lean = LeanSteps.of(obj) or False
    return obj.lean or None


class LeanSteps:
    """The Newton steps of :meth:`~dmixed.fit.optimize._Optimization.newton_steps` on
    whole-block sums (module docstring), for the objective ``obj``
    (:class:`~dmixed.fit.profiled.ProfiledObjective`) whose statistics are ``data``."""

    def __init__(self, obj, data: Dense1Statistics | Dense2Statistics) -> None:
        self.obj = obj
        self.data = data
        self.layout = obj.layout
        self.r = obj.layout.r
        self.basis = obj.layout.basis()
        self.n = obj.glob.n
        k = obj.glob.k_fe + 1
        self._empty_vc = np.zeros((0, k, k))
        self._theta_jac = None if obj.re_map is None else psi_map_matrix(obj.re_map, 0)
        glob = obj.glob
        self._xyxy = 0.5 * (glob.xyxy + glob.xyxy.T)
        self._abs_xyxy = np.abs(glob.xyxy)
        self._max_xyxy = float(self._abs_xyxy.max())
        self._xyxy_pp = float(self._xyxy[-1, -1])
        self._fac = float(glob.n - glob.k_fe) if obj.reml else float(glob.n)
        self._const = float(loglike_constant(self._fac, glob))
        #: the entries of Dense2Step.va that ∂ℓ/∂Ψ* at (0,0), (1,0), (1,1) reads
        #: (Σ u_a u_b, then Σ G_ax G_by over x, y < p) and their weights
        #: ([fac/2Q, ½ A⁻¹ for REML]: made at each point in place)
        self._score_at = score_entries(k)
        self._score_weights = np.zeros(1 + (k - 1) ** 2)
        #: the last point :meth:`evaluate` defined (the steps start where it was kept)
        self._last: LeanPoint | None = None
        #: the extension where it makes the statistics' sums (:mod:`~dmixed.kernels.native`):
        #: :meth:`profiled_hessian_2`'s arithmetic runs there too.  The statistics' own
        #: choice, not ``DMIXED_NATIVE`` read again: set to ``numpy`` in between (another
        #: thread), a second reading left :meth:`evaluate_fused` without the extension
        self._ext = None
        #: the block's arrays where the extension makes a whole evaluation in one call
        #: (:meth:`evaluate_fused`: one chunk, 1 ≤ p ≤ 3, no ``re_map``)
        self._fused = None
        #: the extension that sums the Hessian moments' gathers where :attr:`_ext` is
        #: None (a k over its bound; the statistics' choice as well)
        self._gather: ModuleType | None = None
        if isinstance(data, Dense2Statistics):
            self._ext = data.extension
            self._gather = data.gather_extension
            if self._ext is not None and 2 <= k <= 4 and obj.re_map is None:
                self._fused = data.fused()

    @classmethod
    def of(cls, obj) -> LeanSteps | None:
        """The lean evaluations of ``obj`` where its statistics and packing are the
        case they cover (module docstring; the compiled kernels not forced, nor chosen
        for a block of several chunks), else None
        (the Newton steps also want every parameter free: their caller's test)."""
        layout = obj.layout
        engine = obj.engine
        if not (
            type(engine) is LocalEngine
            # no engine that maps several points or a Hessian per round trip (a
            # cluster's): the general path keeps its round trips
            and getattr(engine, "steps", None) is None
            and getattr(engine, "step_hessian", None) is None
            and obj.use_sqrt
            and layout.k_re in (1, 2)
            and layout.r == layout.k_re
            and layout.k_vc == 0
            and obj.vc_map is None
            and compiled.forced() != "numba"
        ):
            return None
        block = engine.block
        if not isinstance(block, StatsBlock) or block.numpy_only:  # the numpy kernels' forms
            return None
        chunks = list(block.chunks())
        if chunks[0][0].shape[0] != layout.r:
            return None
        if len(chunks) > 1 and compiled.backend(block.n_groups, layout.r) != "numpy":
            # the compiled kernels (numba loaded, or worth loading at this size) make
            # the general path's evaluations of many groups cheaper than these numpy sums
            return None
        k = chunks[0][1].shape[1]
        if layout.r == 1:
            return cls(obj, Dense1Statistics(chunks))  # views of the block's own arrays
        if fixed_numbers(k) * 8 * block.n_groups > LEAN_ROWS_BYTES:
            return None
        return cls(obj, Dense2Statistics.of_chunks(chunks))

    # -- ℓ, its score and the profiled Hessian ----------------------------------------

    def start(self, x: np.ndarray) -> LeanPoint:
        """The point ``x`` as evaluated last here, else from the objective's own
        evaluation there (cached: the steps start where the fit has evaluated)."""
        mine = self._last
        if mine is not None and mine.packed.tobytes() == np.asarray(x).tobytes():
            return mine
        obj = self.obj
        ev = obj.evaluate(x)
        if ev.prof is None:
            return LeanPoint(ev.packed, -math.inf, ev.score, ev.score)
        d_psi, _ = obj.score_parts(ev)
        if self.r == 1:
            grad = np.array([d_psi[0, 0]])
        else:
            grad = np.array([d_psi[0, 0], 2.0 * d_psi[1, 0], d_psi[1, 1]])
        lam = ev.lam if ev.lam is not None else obj.lam(ev.packed)
        return LeanPoint(ev.packed, ev.llf, ev.score, grad, lam, None, ev.step, ev.prof, d_psi)

    def evaluate(self, packed: np.ndarray) -> tuple[LeanPoint, bool]:
        """ℓ and its score at ``packed`` as :meth:`ProfiledObjective.evaluate` makes
        them (the formulas of :func:`~dmixed.fit.objective.profile`,
        :func:`~dmixed.fit.objective.loglike`,
        :func:`~dmixed.fit.objective.score_matrices` and
        :func:`~dmixed.fit.objective.out_of_resolution` for ``r = 1, 2``, written out on
        the whole-block sums); with whether the point was rejected because ℓ is not
        resolved there (``Q``, or ``A``'s factor where ``packed`` is not one of the
        objective's starts).

        For ``r = 2`` in one pass: the sums that need ``Λ`` alone
        (:meth:`~dmixed.kernels.dense2.Dense2Statistics.step`), the profile
        (:meth:`profile`: in floats for ``p ≤ 3``), ℓ, the rows of the score at
        ``w = [−β̂; 1]`` and their products
        (:meth:`~dmixed.kernels.dense2.Dense2Step.residual_rows`, which the profiled
        Hessian at the point reads again), and the score's contractions as one product
        of the entries they read."""
        obj = self.obj
        if self.r == 1:
            return self.evaluate_1(packed)
        if self._fused is not None:
            return self.evaluate_fused(packed)
        l00, l10, l11 = packed.tolist()
        lam = self.lam_2(packed)
        data = self.data
        assert isinstance(data, Dense2Statistics)  # r = 2
        step = data.step(lam)
        prof = self.profile(step.m)
        if prof is None:
            return nowhere(packed), False
        llf = self.loglike(step.logdet, prof)
        va = step.residual_rows(prof.w)
        # ∂ℓ/∂Ψ* = −½ Σ S + (fac/2Q) Σ u u' (+ ½ Σ_xy A⁻¹_xy Σ G_x G_y' for REML), its
        # entries (0,0), (1,0), (1,1) as one product of the entries of va they read
        weights = self._score_weights
        weights[0] = self._fac / (2.0 * prof.q)
        if obj.reml:
            np.multiply(prof.a_inv.ravel(), 0.5, out=weights[1:])
        (s00, s01), (_, s11) = step.s.tolist()
        r00, r10, r11 = (va.take(self._score_at) @ weights).tolist()
        d00, d01, d11 = r00 - 0.5 * s00, r10 - 0.5 * s01, r11 - 0.5 * s11
        if obj.re_map is not None:
            d_psi = np.array([[d00, d01], [d01, d11]])
            d_psi = obj.re_map.T @ d_psi @ obj.re_map
            (d00, d01), (_, d11) = d_psi.tolist()
        # ∂ℓ/∂L = 2 D L (lower triangle) and ∂ℓ/∂θ = [D00, 2 D10, D11] (layout.score_packed)
        score = [2.0 * (d00 * l00 + d01 * l10), 2.0 * (d01 * l00 + d11 * l10), 2.0 * (d11 * l11)]
        if not (math.isfinite(llf) and all(map(math.isfinite, score))):
            return nowhere(packed), False
        if self.refused(self.verdict(step.m, prof), packed):
            return nowhere(packed), True
        d_psi = np.array([[d00, d01], [d01, d11]])
        grad = np.array([d00, 2.0 * d01, d11])
        # the sums as StepSums only where an Evaluation is made of the point
        self._last = LeanPoint(packed, llf, np.array(score), grad, lam, step, None, prof, d_psi)
        return self._last, False

    def evaluate_fused(self, packed: np.ndarray) -> tuple[LeanPoint, bool]:
        """:meth:`evaluate` for ``r = 2`` in one call of the extension's
        ``lean_evaluate`` (:mod:`~dmixed.kernels.native`; a block of one chunk,
        ``1 ≤ p ≤ 3``, no ``re_map``): the same formulas, the profile in the floats of
        :meth:`profile`, the sums over groups as the extension's kernels add them; the
        products that numpy makes through BLAS (``Σ ZXy'P ZXy``'s weights, the score's
        entries, the resolution's sum) in another order: to rounding."""
        lam = self.lam_2(packed)
        l00, l10, l11 = packed.tolist()
        data = self.data
        assert isinstance(data, Dense2Statistics) and self._fused is not None
        ext = self._ext
        assert ext is not None
        k, g = data.k, data.n_groups
        p, n = k - 1, 2 * k + 3
        inv_d, rows, va = np.empty(g), np.empty((n, g)), np.empty((n, n))
        m, t, a_inv, beta = np.empty((k, k)), np.empty((k, k)), np.empty((p, p)), np.empty(p)
        numbers = np.empty(_FUSED_NUMBERS)
        status = ext.lean_evaluate(
            *self._fused,
            k,
            g,
            l00,
            l10,
            l11,
            self._xyxy,
            self._abs_xyxy,
            self._max_xyxy,
            self._score_at,
            self._fac,
            self._const,
            RESOLUTION_LIMIT,
            PIVOT_RESOLUTION_LIMIT,
            self.obj.reml,
            inv_d,
            rows,
            va,
            m,
            t,
            a_inv,
            beta,
            numbers,
        )
        # 1: Q not resolved; 3: A's factor not resolved (accepted at a start alone)
        if status != 2 and (status != 3 or not self.obj.is_start(packed)):
            return nowhere(packed), status != 0
        llf, logdet, logdet_a, q, d00, d01, d11, *score, b00, b01, b11, det_b, s00, s01, s11 = (
            numbers.tolist()
        )
        prof = Profile(t[:p, :p], t[:p, p], a_inv, logdet_a, beta, q, self._fac, None)
        s = np.array([[s00, s01], [s01, s11]])
        step = data.made_step(logdet, m, s, (b00, b01, b11, det_b), inv_d, rows, va, prof.w)
        d_psi = np.array([[d00, d01], [d01, d11]])
        grad = np.array([d00, 2.0 * d01, d11])
        self._last = LeanPoint(packed, llf, np.array(score), grad, lam, step, None, prof, d_psi)
        return self._last, False

    def lam_2(self, packed: np.ndarray) -> np.ndarray:
        """Λ̃ of the objective (:meth:`~dmixed.fit.profiled.ProfiledObjective.lam`) for
        ``r = 2``: ``Layout.lam`` of the square-root packing in floats (read-only)."""
        l00, l10, l11 = packed.tolist()
        lam = lam_in_statistics(np.array([[l00, 0.0], [l10, l11]]), self.layout, self.obj.re_map)
        lam.flags.writeable = False
        return lam

    def evaluate_1(self, packed: np.ndarray) -> tuple[LeanPoint, bool]:
        """:meth:`evaluate` for ``r = 1``: the sums of
        :class:`~dmixed.kernels.dense1.Dense1Statistics` (with ``between``) through the
        objective's own formulas (:func:`~dmixed.fit.objective.profile` about its
        within-group pivot, :func:`~dmixed.fit.objective.loglike`,
        :func:`~dmixed.fit.objective.score_matrices`,
        :func:`~dmixed.fit.objective.out_of_resolution`), as
        :meth:`ProfiledObjective.evaluate` takes them."""
        obj = self.obj
        lam = obj.lam(packed)
        lam.flags.writeable = False
        data = self.data
        assert isinstance(data, Dense1Statistics)  # r = 1
        step = data.step(lam)
        k = data.k
        sums = StepSums(
            step.logdet,
            step.m,
            step.s,
            step.gram.reshape(1, 1, k, k),
            self._empty_vc,
            step.between,
        )
        glob = obj.glob
        try:
            prof = profile(sums, glob, obj.reml)
            llf = loglike(sums, prof, glob, obj.reml)
        except np.linalg.LinAlgError:
            return nowhere(packed), False
        d_psi, d_tau = score_matrices(sums, prof, obj.reml, self.layout.slot_component, 0)
        if obj.re_map is not None:
            d_psi = obj.re_map.T @ d_psi @ obj.re_map
        score = self.layout.score_packed(d_psi, d_tau, packed, True)
        if not (math.isfinite(llf) and np.isfinite(score).all()):
            return nowhere(packed), False
        if self.refused(resolution_verdict(sums, prof, glob, obj.reml), packed):
            return nowhere(packed), True
        grad = np.array([d_psi[0, 0]])
        self._last = LeanPoint(packed, llf, score, grad, lam, step, sums, prof, d_psi)
        return self._last, False

    def evaluated(self, packed: np.ndarray) -> Evaluation:
        """:meth:`ProfiledObjective.evaluate` at ``packed`` made here: counted, rejected
        and kept by the objective as it does."""
        obj = self.obj
        packed = np.array(packed, dtype=np.float64)
        try:
            point, unresolved = self.evaluate(packed)
        except np.linalg.LinAlgError:  # outside the parameter space: no evaluation
            return obj.evaluate(packed)
        obj.n_evals += 1
        if unresolved:
            obj.rejected_for_resolution = packed
        ev = point.evaluation()
        if point.prof is not None:
            obj.keep(ev)
        return ev

    def value(self, packed: np.ndarray) -> float:
        """ℓ alone at ``packed`` as :func:`~dmixed.fit.start.start_value` makes it with
        the engine's value (−inf where that rejects the point)."""
        obj = self.obj
        data = self.data
        if isinstance(data, Dense2Statistics):
            lam = self.lam_2(np.array(packed, dtype=np.float64))
        else:
            try:
                lam = obj.lam(np.array(packed, dtype=np.float64))
            except np.linalg.LinAlgError:
                return -math.inf
        obj.n_evals += 1
        if isinstance(data, Dense1Statistics):
            return self.value_1(data, lam)
        logdet, m = data.value(lam)
        prof = self.profile(m)
        if prof is None:
            return -math.inf
        llf = self.loglike(logdet, prof)
        # a start's value (the start selection's): refused for Q alone
        if not math.isfinite(llf) or self.verdict(m, prof) == UNRESOLVED:
            return -math.inf
        return llf

    def value_1(self, data: Dense1Statistics, lam: np.ndarray) -> float:
        """:meth:`value` for ``r = 1`` (the statistics ``data``) at the factor ``lam``
        (:meth:`evaluate_1`'s formulas; the score's sums not made, as the engine's value
        leaves them)."""
        obj = self.obj
        logdet, m, between = data.value(lam)
        k = data.k
        nan = np.full((1, 1), np.nan)
        sums = StepSums(logdet, m, nan, np.full((1, 1, k, k), np.nan), self._empty_vc, between)
        return value_loglike(sums, obj.glob, obj.reml)

    def profile(self, m: np.ndarray) -> Profile | None:
        """:func:`~dmixed.fit.objective.profile` of ``Σ ZXy'P ZXy = m`` for ``r = 2``
        (about β₀ = 0: no pivot); None where ``X'V*⁻¹X`` is not positive definite or
        ``Q`` is not positive (ℓ not defined).  For ``1 ≤ p ≤ 3`` in floats
        (:func:`~dmixed.kernels.small_linalg.spd_inverse_3`), else through LAPACK."""
        p = self.data.k - 1
        # [X y]'V*⁻¹[X y]: both terms exactly symmetric (objective.residual_cross_products)
        t = self._xyxy - m
        a, b = t[:p, :p], t[:p, p]
        if 1 <= p <= 3:
            rows = t.tolist()
            inverse = small_linalg.spd_inverse_3(rows, p)
            if inverse is None:
                return None
            logdet_a, a_inv_rows = inverse
            b_list = [row[p] for row in rows[:p]]
            beta_list = [sum(map(operator.mul, row, b_list)) for row in a_inv_rows]
            q = rows[p][p] - sum(map(operator.mul, b_list, beta_list))
            if not q > 0:
                return None
            return Profile(
                a, b, np.array(a_inv_rows), logdet_a, np.array(beta_list), q, self._fac, None
            )
        try:
            chol = small_linalg.cholesky(a)
        except np.linalg.LinAlgError:
            return None
        logdet_a = 2.0 * float(np.log(chol.diagonal()).sum())
        chol_inv = small_linalg.inv(chol)
        a_inv = chol_inv.T @ chol_inv
        beta = a_inv @ b
        q = float(t[p, p]) - float(b @ beta)
        if not q > 0:
            return None
        return Profile(a, b, a_inv, logdet_a, beta, q, self._fac, None)

    def loglike(self, logdet: float, prof: Profile) -> float:
        """:func:`~dmixed.fit.objective.loglike` of the profile ``prof``."""
        llf = -0.5 * logdet - 0.5 * self._fac * math.log(prof.q) + self._const
        if self.obj.reml:
            llf -= 0.5 * prof.logdet_a
        return llf

    def refused(self, verdict: int, packed: np.ndarray) -> bool:
        """Whether the :func:`~dmixed.fit.objective.resolution_verdict` ``verdict`` at
        ``packed`` refuses the point (:func:`~dmixed.fit.objective.out_of_resolution`:
        ``A``'s factor not resolved refuses every point but a start)."""
        if verdict == RESOLVED:
            return False
        return verdict == UNRESOLVED or not self.obj.is_start(packed)

    def verdict(self, m: np.ndarray, prof: Profile) -> int:
        """:func:`~dmixed.fit.objective.resolution_verdict` without the pivot (its
        statistics' resolution is 0 then): :func:`~dmixed.fit.objective.resolution`
        (``Q``), then with :func:`~dmixed.fit.objective.factor_resolution`, whose
        ``|δ'Aδ|`` is ``|b'β̂| = |T_pp − Q|`` here (``T = [X y]'V*⁻¹[X y]``, about
        β₀ = 0), and :func:`~dmixed.fit.objective.pivot_resolution` (``A``'s factor)."""
        # with S = |[X y]'[X y]| + |m| and t = max S (at most max|[X y]'[X y]| + max|m|,
        # which also bounds A's diagonal): |w|'S|w| ≤ (Σ|w|)² t, the factor's
        # Σ|A⁻¹_xy| √(A_xx A_yy) and K/ε = Σ|A⁻¹| ∘ S_xx ≤ Σ|A⁻¹| t, and r'|A⁻¹|r ≤
        # ε² (Σ|w|)² t² Σ|A⁻¹|: where those bounds (a little over, for their own
        # rounding) pass, so do the sums in floats (a NaN in m leaves the point resolved
        # either way: a NaN bound passes below, a finite one reaches the sums, NaN then)
        m_list = m.ravel().tolist()
        top = self._max_xyxy + max(map(abs, m_list))
        w_sum = 1.0 + sum(map(abs, prof.beta.tolist()))
        made = abs((self._xyxy_pp - m_list[-1]) - prof.q)
        log_share = prof.q / self._fac if self.obj.reml else 0.0
        a_sum = sum(map(abs, prof.a_inv.ravel().tolist()))
        bound = (w_sum * w_sum * (1.0 + _EPS * top * a_sum) + a_sum * (made + log_share)) * top
        bound *= 1.0 + 1e-9
        pivot_bound = _EPS * a_sum * top * (1.0 + 1e-9)
        if not (_EPS * bound / prof.q > RESOLUTION_LIMIT or pivot_bound > PIVOT_RESOLUTION_LIMIT):
            return RESOLVED
        abs_w = np.abs(prof.w)
        big_s = self._abs_xyxy + np.abs(m)
        p = prof.beta.size
        abs_inv = np.abs(prof.a_inv)
        root = np.sqrt(np.abs(np.diagonal(prof.a)))
        r = _EPS * (big_s[:p] @ abs_w)
        k = _EPS * float((abs_inv * big_s[:p, :p]).sum())
        share = _EPS * float(abs_w @ big_s @ abs_w)
        if share / prof.q > RESOLUTION_LIMIT:
            return UNRESOLVED
        share += _EPS * float(root @ abs_inv @ root) * made
        share += float(r @ abs_inv @ r)
        share += k * log_share
        if k > PIVOT_RESOLUTION_LIMIT or share / prof.q > RESOLUTION_LIMIT:
            return FACTOR_UNRESOLVED
        return RESOLVED

    def profiled_hessian(
        self, point: LeanPoint
    ) -> tuple[np.ndarray | None, tuple[np.ndarray, np.ndarray] | None]:
        """The profiled Hessian in θ at ``point`` and its log-determinant traces, as
        :meth:`~dmixed.fit.optimize._Optimization.profiled_hessian` and
        :meth:`~dmixed.fit.profiled.ProfiledObjective.logdet_traces` give them; ``(None,
        None)`` where it cannot be computed."""
        obj = self.obj
        lam, prof = point.lam, point.prof
        if lam is None or prof is None or (point.step is None and point.sums is None):
            return None, None
        data, step = self.data, point.step
        if step is None:
            step = point.step = data.step(lam)
        if self._theta_jac is None and isinstance(step, Dense2Step):
            return self.profiled_hessian_2(point, step, prof)
        sums = point.step_sums()
        assert sums is not None
        if isinstance(data, Dense1Statistics) and isinstance(step, Dense1Step):
            hs = data.hessian(step, self.basis, prof.w)
        elif isinstance(data, Dense2Statistics) and isinstance(step, Dense2Step):
            hs = data.hessian(step, self.basis, prof.w)
        else:  # not made by these statistics
            return None, None
        try:
            hess = hessian(sums, hs, prof.beta, obj.glob, obj.reml, prof=prof)
        except np.linalg.LinAlgError:
            return None, None
        if not np.isfinite(hess).all():
            return None, None
        s = step.s
        if self.r == 1:
            trace_s = np.array([s[0, 0]])
        else:
            trace_s = np.array([s[0, 0], 2.0 * s[0, 1], s[1, 1]])
        trace_ss = hs.tr_ss.diagonal()
        p = prof.beta.size
        jac = self._theta_jac
        if jac is not None:
            full = np.eye(hess.shape[0])
            full[p:, p:] = jac
            trace_s = jac.T @ trace_s
            trace_ss = np.einsum("jk,jl,lk->k", jac, hs.tr_ss, jac)
            hess = full.T @ hess @ full
            hess = 0.5 * (hess + hess.T)
        hbb, hbt, htt = hess[:p, :p], hess[:p, p:], hess[p:, p:]
        try:
            prof_h = htt - hbt.T @ small_linalg.solve(hbb, hbt) if p else htt
        except np.linalg.LinAlgError:
            return None, None
        point.hessian = (hess, (trace_s, trace_ss))
        return 0.5 * (prof_h + prof_h.T), (trace_s, trace_ss)

    def profiled_hessian_2(
        self, point: LeanPoint, step: Dense2Step, prof: Profile
    ) -> tuple[np.ndarray | None, tuple[np.ndarray, np.ndarray] | None]:
        """:meth:`profiled_hessian` for ``r = 2`` in the statistics' own coordinates,
        in one pass: the moments of :meth:`~dmixed.kernels.dense2.Dense2Step.moments`
        gathered into the Hessian's blocks (:func:`~dmixed.kernels.hessian_moments.full_sums`),
        the formulas of :func:`~dmixed.fit.objective.hessian` at ``Q(β̂)`` as
        :func:`~dmixed.fit.objective.quadratic_form` takes it (no pivot for ``r = 2``),
        and the β block eliminated in closed form (:func:`hessian_of_moments`; in C
        where the extension makes the statistics' sums)."""
        p = self.data.k - 1
        va, c = step.moments(prof.w)
        q0 = self._xyxy_pp - step.m[p, p].item()
        made = hessian_of_moments(
            va, c, prof, self.basis, q0, self.obj.reml, self._ext, self._gather
        )
        if made is None:
            return None, None
        hess, prof_h, trace_ss = made
        (s00, s01), (_, s11) = step.s.tolist()
        trace_s = np.array([s00, 2.0 * s01, s11])
        point.hessian = (hess, (trace_s, trace_ss))
        return prof_h, (trace_s, trace_ss)

    def pack(self, theta: np.ndarray) -> np.ndarray:
        """:meth:`~dmixed.stats.Layout.pack_theta` in the square-root packing: the
        Cholesky factor of a positive definite 2 × 2 Ψ* in floats
        (:func:`~dmixed.kernels.small_linalg.cholesky_2`: LAPACK's factor, bit for
        bit), the layout's own elsewhere (raises ``np.linalg.LinAlgError`` outside the
        parameter space)."""
        if self.r == 1:
            (t0,) = theta.tolist()
            if t0 > 0.0:
                return np.array([math.sqrt(t0)])
            return self.layout.pack_theta(theta, True)
        t0, t1, t2 = theta.tolist()
        if t0 > 0.0:
            try:
                return np.array(small_linalg.cholesky_2(t0, t1, t2))
            except np.linalg.LinAlgError:
                pass
        return self.layout.pack_theta(theta, True)

    # -- the loop ------------------------------------------------------------------------

    def run(
        self,
        x: np.ndarray,
        summary,
        steps: int,
        contraction: float | None,
        secant: bool,
        shifted: bool,
    ) -> LeanResult | None:
        """The loop of :meth:`~dmixed.fit.optimize._Optimization.newton_steps` from the
        packed ``x`` (every parameter movable, none settled at zero; ``summary`` the
        fit's :class:`~dmixed.fit.summary.OptSummary`); None where it cannot take the
        general path's steps (module docstring; an exact Hessian singular to rounding:
        :data:`SINGULAR_CURVATURE`)."""
        s, layout, n = summary, self.layout, self.n
        movable = np.ones(layout.n_params, dtype=bool)
        psi, tau = layout.unpack(x, True)
        theta = layout.pack(psi, tau, use_sqrt=False)
        ev = first = self.start(x)
        start_llf = ev.llf
        previous: float | None = None
        slow = 0
        curvature: np.ndarray | None = None
        last: tuple[np.ndarray, np.ndarray] | None = None
        shift = np.zeros(layout.n_params)
        accepted: list[tuple[np.ndarray, float, np.ndarray]] = []
        settled: np.ndarray | None = None
        expected: np.ndarray | None = None
        done: np.ndarray | None = None
        trials = 0
        rejected: np.ndarray | None = None
        cur = first.packed
        for _ in range(steps):
            if ev.prof is None:
                break
            grad = ev.grad
            size = max(map(abs, grad.tolist()))  # the largest entry, in floats
            if size <= s.newton_gtol * n:
                settled = done = cur
                break
            slow = slow_steps(slow, size, previous, contraction)
            if slow >= 2:
                break
            previous = size
            curvature = secant_curvature(secant and not slow, curvature, last, theta, grad)
            exact = curvature is None
            if exact:
                curvature, traces = self.profiled_hessian(ev)
                if curvature is not None and singular(curvature):
                    return None
                if traces is not None and shifted:
                    shift = shift_of(theta, *traces)
            if curvature is None:
                break
            step: BlockStep | ScalarStep | NewtonStep | None = None
            if self.r == 2 and shifted:
                step = block_step(theta, grad, curvature, shift, self._ext)
            elif self.r == 1:
                step = scalar_step(theta, grad, curvature, shift)
            if step is None:
                step = newton_step(
                    layout, movable, theta, grad, curvature, modified_newton_step, shift, shifted
                )
            if step is None:
                break
            last = (theta.copy(), grad)
            if step.rise <= s.newton_decrement * n:
                expected = done = cur
                if exact:  # a secant step's decrement: the polish judges it exactly
                    settled = cur
                break
            last_step = step.rise <= LAST_STEP_DECREMENT * math.sqrt(s.newton_decrement) * n
            fraction = 1.0
            found = None
            for _half in range(s.newton_halvings):
                trial = step.point(fraction)
                fraction /= 2
                try:
                    packed = self.pack(trial)
                except np.linalg.LinAlgError:
                    continue
                tev, unresolved = self.evaluate(packed)
                trials += 1
                if unresolved:
                    rejected = packed
                if math.isfinite(tev.llf) and tev.llf >= ev.llf - s.newton_llf_rtol * max(
                    1.0, abs(ev.llf)
                ):
                    found = (trial, packed, tev)
                    break
            if found is None:
                break
            theta, cur, ev = found
            if last_step:
                expected = cur
            accepted.append((cur, ev.llf, ev.score))
        final = first
        if accepted and ev.llf >= start_llf - s.newton_llf_rtol * max(1.0, abs(start_llf)):
            final = ev
        done_there = done is final.packed
        return LeanResult(final, accepted, settled, expected, trials, rejected, done_there)


def hessian_of_moments(
    va: np.ndarray,
    c: np.ndarray,
    prof: Profile,
    basis: np.ndarray,
    q0: float,
    reml: bool,
    ext: ModuleType | None = None,
    gather: ModuleType | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The Hessian of ℓ in ``[β, θ]`` and the profiled one in θ from the moments of
    :meth:`~dmixed.kernels.dense2.Dense2Step.moments` (:meth:`LeanSteps.profiled_hessian_2`).

    Parameters
    ----------
    va, c : ndarray
        The moments at ``w = prof.w``: ``va`` (2 k + 3, 2 k + 3) and ``C`` (6 k, 2 k).
    prof : Profile
        The profile there (``A``, ``b``, ``A⁻¹``, β̂ and ``fac`` read; ``p = k − 1``).
    basis : ndarray (m, 2, 2)
        The ``E_j`` (entries 0 or 1).
    q0 : float
        ``Q(0) = y'V*⁻¹y`` (``[X y]'V*⁻¹[X y]``'s last entry).
    reml : bool
        REML (the terms of ``log|A|``) or ML.
    ext : module or None
        The extension (:func:`~dmixed.kernels.native.extension`): its
        ``profiled_hessian`` makes all of it in one call; None: numpy.
    gather : module or None
        Where ``ext`` is None: the extension whose ``gathered_sums`` sums
        :func:`~dmixed.kernels.hessian_moments.full_sums`' gathers (the same sums to the
        bit); None: numpy's.

    Returns
    -------
    tuple of ndarray or None
        ``(hess (p + m, p + m), profiled (m, m), trace_ss (m,))``: the Hessian of
        :func:`~dmixed.fit.objective.hessian` at ``Q(β̂) = Q(0) − 2β̂'b + β̂'Aβ̂``, with
        ``Q_β = 0`` (β̂ maximizes ℓ in β), so that its β block is ``−(fac/Q) A`` and the
        profiled Hessian ``H_θθ − H_θβ H_ββ⁻¹ H_βθ = H_θθ + (fac/Q) g'A⁻¹g`` (``g`` the
        θβ block of ``½ Q``'s second derivatives), symmetrized; ``tr(S E_j S E_j)``.
        None where the Hessian is not finite.

    Notes
    -----
    The extension sums the moments into the blocks as
    :func:`~dmixed.kernels.hessian_moments.full_sums` does (bit for bit) and makes the
    products with ``A⁻¹`` in its own order where numpy calls BLAS: they agree to
    rounding.
    """
    a, a_inv = prof.a, prof.a_inv
    p = a.shape[0]
    if ext is not None:
        m = basis.shape[0]
        index = full_gather(basis, p + 1)
        hess = np.empty((p + m, p + m))
        prof_h = np.empty((m, m))
        trace_ss = np.empty(m)
        args = (prof.beta, index, index.shape[1], p, m, q0, prof.fac, reml)
        if not ext.profiled_hessian(va, c, a, prof.b, a_inv, *args, hess, prof_h, trace_ss):
            return None
        return hess, prof_h, trace_ss
    half_q, u_e_u, tr_ss, a_j, a_jk = full_sums(va, c, a, basis, p + 1, gather)
    m = u_e_u.size
    # quadratic_form at β̂ about β₀ = 0: Q(0) − 2β̂'b + β̂'Aβ̂ (in floats)
    beta_l, b_l = prof.beta.tolist(), prof.b.tolist()
    a_beta = [sum(map(operator.mul, row, beta_l)) for row in a.tolist()]
    qf = q0 - 2.0 * sum(map(operator.mul, beta_l, b_l))
    qf += sum(map(operator.mul, beta_l, a_beta))
    fac = prof.fac
    # hessian_blocks' formulas with Q_β = −2(b − Aβ̂) = 0 (the general path's Q_β is
    # its rounding)
    c1 = -fac / qf
    hess = half_q * c1
    h_jk = hess[p:, p:]  # the θθ block, made in place
    h_jk += 0.5 * tr_ss
    h_jk += np.multiply.outer(u_e_u, (0.5 * fac / qf**2) * u_e_u)
    if reml and p:
        ql = (a_inv @ a_j).reshape(m, p * p)  # A⁻¹A_j
        tr_ql = ql @ ql.reshape(m, p, p).transpose(0, 2, 1).reshape(m, p * p).T
        tr_ql -= (a_jk.reshape(m * m, p * p) @ a_inv.ravel()).reshape(m, m)
        h_jk += 0.5 * tr_ql
    h_jk[...] = 0.5 * (h_jk + h_jk.T)
    if not all(map(math.isfinite, hess.ravel().tolist())):
        return None
    g_e_u = half_q[p:, :p]
    prof_h = h_jk - c1 * (g_e_u @ a_inv @ g_e_u.T) if p else h_jk.copy()
    return hess, 0.5 * (prof_h + prof_h.T), tr_ss.diagonal().copy()


def shift_of(theta: np.ndarray, trace_s: np.ndarray, trace_ss: np.ndarray) -> np.ndarray:
    """:func:`~dmixed.fit.newton_coords.log_shift` in floats (the same IEEE operations
    on each entry: the same shifts, bit for bit)."""
    out = []
    for t, ts, tss in zip(theta.tolist(), trace_s.tolist(), trace_ss.tolist(), strict=True):
        try:
            scale = ts / tss
        except ZeroDivisionError:  # numpy's ±inf or nan: not finite
            scale = math.inf
        shift = SHIFT_SHARE * (scale - t) if math.isfinite(scale) else 0.0
        out.append(shift if shift > 0.0 or shift != shift else 0.0)  # np.maximum(shift, 0)
    return np.array(out)


@functools.lru_cache(maxsize=16)
def score_entries(k: int) -> np.ndarray:
    """The flat positions in :attr:`~dmixed.kernels.dense2.Dense2Step.va`
    ((2 k + 3) × (2 k + 3), ``v`` entry-major: ``H[a, x]`` at ``a k + x``, ``u_a`` at
    ``a k + p``) of ``Σ u_a u_b`` and of ``Σ G_ax G_by`` (x, y < p, x-major) for
    ``(a, b)`` = (0, 0), (1, 0), (1, 1): (3, 1 + p²).  Read-only and made once per
    ``k``: every fit's lean steps ask for it, and making it costs more than a
    look-up."""
    p, n = k - 1, 2 * k + 3
    a, b = np.array([[0, 1, 1], [0, 0, 1]], dtype=np.intp)[:, :, None, None]
    x = np.arange(p, dtype=np.intp)[:, None]
    y = np.arange(p, dtype=np.intp)[None, :]
    # built with numpy, not entry by entry: p² entries (a fixed part of 1,000 columns)
    cross = ((a * k + x) * n + b * k + y).reshape(3, p * p)
    first = ((a * k + p) * n + b * k + p).reshape(3, 1)
    index = np.concatenate([first, cross], axis=1)
    index.flags.writeable = False
    return index


def nowhere(packed: np.ndarray) -> LeanPoint:
    """The point ``packed`` where ℓ is not defined or rejected (made only there)."""
    return LeanPoint(packed, -math.inf, np.zeros(packed.shape), np.zeros(packed.shape))


def singular(hess: np.ndarray) -> bool:
    """Whether the symmetric ``hess`` is singular to :data:`SINGULAR_CURVATURE` (its
    smallest absolute eigenvalue below that share of its largest, or none finite)."""
    if hess.shape == (1, 1):  # its eigenvalue is its entry: singular only where zero
        (h,) = hess.ravel().tolist()
        return not math.isfinite(h) or h == 0.0
    if hess.shape[0] <= 3 and small_linalg.definite_share_3(hess.tolist()) is not None:
        return False  # definite with a share above 1e-6: no eigenvalues wanted
    try:
        size = list(map(abs, small_linalg.eigvalsh(hess).tolist()))
    except np.linalg.LinAlgError:
        return True
    if not all(map(math.isfinite, size)):
        return True
    return min(size) <= SINGULAR_CURVATURE * max(size)


@dataclass(frozen=True)
class BlockStep:
    """:class:`~dmixed.fit.newton_coords.NewtonStep` of a 2 × 2 Ψ* with both variances
    positive, in its modified Cholesky coordinates ``v = [log(d0 + s0), L10,
    log(d1 + s1)]`` (:func:`block_step`): the step ``delta`` from ``origin``, the
    shifts ``c0``, ``c1`` of the variances and ``s0``, ``s1`` of the factors."""

    delta: np.ndarray
    rise: float
    origin: tuple[float, float, float]
    c0: float
    c1: float
    s0: float
    s1: float

    def point(self, fraction: float) -> np.ndarray:
        """θ after ``fraction`` of the step (:meth:`NewtonStep.point`)."""
        # NewtonStep.point's elementwise numpy arithmetic, in floats
        pairs = zip(self.origin, self.delta.tolist(), strict=True)
        v0, v1, v2 = (o + fraction * d for o, d in pairs)
        e0, e1 = np.exp([v0, v2]).tolist()  # numpy's exponential, as newton_coords
        d0 = e0 - self.s0
        d1 = e1 - self.s1
        ld = v1 * d0
        return np.array([d0 - self.c0, ld, (ld * v1 + d1) - self.c1])


def block_step(
    theta: np.ndarray,
    grad: np.ndarray,
    hess: np.ndarray,
    shift: np.ndarray,
    ext: ModuleType | None = None,
) -> BlockStep | None:
    """:func:`~dmixed.fit.newton_coords.newton_step` of θ = vech_lt(Ψ*) for a 2 × 2 Ψ*,
    every entry movable, in the shifted coordinates (``cholesky``), written out: the
    chain rule of its ``_block_chain_rule`` for ``q = 2`` (:func:`block_terms`; in C
    with the extension ``ext``), the direction
    :func:`~dmixed.fit.newton_rules.modified_newton_step`.  None where a variance is not
    positive or the shifted Ψ* has no Cholesky factor (then :func:`newton_step`)."""
    t0, t1, t2 = theta.tolist()
    if not (t0 > 0.0 and t2 > 0.0):
        return None
    sh = shift.tolist()
    c0, c1 = sh[0], sh[2]
    m00, m11 = t0 + c0, t2 + c1
    try:  # LAPACK's factor, as newton_coords takes it (bit for bit)
        r0, l10, r1 = small_linalg.cholesky_2(m00, t1, m11)
    except np.linalg.LinAlgError:
        return None
    d0, d1 = r0 * r0, r1 * r1
    big_l = l10 / r0
    s0 = SHIFT_SHARE * max(m00 - d0, 0.0)
    s1 = SHIFT_SHARE * max(m11 - d1, 0.0)
    x0, x1 = d0 + s0, d1 + s1
    g_v, h_v = block_terms(grad, hess, x0, big_l, d0, x1, ext)
    delta = modified_newton_step(h_v, g_v)
    if delta is None:
        return None
    v0, _, v2 = delta.tolist()
    longest = max(abs(v0), abs(v2))
    if longest > MAX_LOG_STEP:
        delta = delta * (MAX_LOG_STEP / longest)
    rise = 0.5 * float(g_v @ delta)
    log_x0, _, log_x1 = np.log([x0, 1.0, x1]).tolist()  # numpy's logarithm, as newton_coords
    origin = (log_x0, big_l, log_x1)
    return BlockStep(delta, rise, origin, c0, c1, s0, s1)


def block_terms(
    grad: np.ndarray,
    hess: np.ndarray,
    x0: float,
    big_l: float,
    d0: float,
    x1: float,
    ext: ModuleType | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The gradient and Hessian of ℓ in :func:`block_step`'s coordinates ``v`` from
    ``grad`` (3,) and ``hess`` (3, 3) in θ: ``g_v = J'g`` and ``h_v = J'HJ + Σ_k g_k
    ∂²θ_k/∂v²`` (symmetrized), ``J = ∂θ/∂v`` at the shifted variances ``x0``, ``x1``,
    the factor's ``d0`` and ``L = big_l``; with the extension ``ext`` (its
    ``block_terms``) the products in C (another order than BLAS's: to rounding)."""
    g0, g1, g2 = grad.tolist()
    if ext is not None:
        g_v, h_v = np.empty(3), np.empty((3, 3))
        ext.block_terms(np.ascontiguousarray(hess), g0, g1, g2, x0, big_l, d0, x1, g_v, h_v)
        return g_v, h_v
    half = 0.5 * g1
    # J = ∂θ/∂v: columns v0 (x0 L_0 L_0'), v1 (d0 (e1 L_0' + L_0 e1')), v2 (x1 e1 e1')
    jac = np.array(
        [
            [x0, 0.0, 0.0],
            [x0 * big_l, d0, 0.0],
            [x0 * (big_l * big_l), d0 * (big_l + big_l), x1],
        ]
    )
    # Σ_k g_k ∂²θ_k/∂v² = tr(G X), G = [[g0, g1/2], [g1/2, g2]]
    ratio = x0 / d0
    s00 = ((g0 * x0 + half * (x0 * big_l)) + half * (x0 * big_l)) + g2 * (x0 * (big_l * big_l))
    s01 = (half * (d0 * ratio) + half * (d0 * ratio)) + g2 * ((d0 * (big_l + big_l)) * ratio)
    second = np.array([[s00, s01, 0.0], [s01, g2 * (d0 * 2.0), 0.0], [0.0, 0.0, g2 * x1]])
    g_v = jac.T @ grad
    h_v = jac.T @ hess @ jac + second
    return g_v, 0.5 * (h_v + h_v.T)


@dataclass(frozen=True)
class ScalarStep:
    """:class:`~dmixed.fit.newton_coords.NewtonStep` of a positive 1 × 1 Ψ* on its
    shifted log scale ``v = log(θ + c)`` (:func:`scalar_step`): the step ``delta``
    from ``θ = theta``, the shift ``c``."""

    delta: float
    rise: float
    theta: float
    c: float

    def point(self, fraction: float) -> np.ndarray:
        """θ after ``fraction`` of the step (:meth:`NewtonStep.point`'s arithmetic)."""
        grow = float(np.exp(fraction * self.delta))  # numpy's exponential, as newton_coords
        return np.array([(self.theta + self.c) * grow - self.c])


def scalar_step(
    theta: np.ndarray, grad: np.ndarray, hess: np.ndarray, shift: np.ndarray
) -> ScalarStep | None:
    """:func:`~dmixed.fit.newton_coords.newton_step` of θ = Ψ* for a 1 × 1 Ψ*, on its
    shifted log scale (``J = θ + c``, ``Σ g ∂²θ/∂v² = (θ + c) g``), written out in
    floats: the direction :func:`~dmixed.fit.newton_rules.modified_newton_step` of a
    1 × 1 Hessian (its eigenvector 1, its eigenvalue the entry) and the same shortening
    of a long step, bit for bit.  None where the variance is not positive (then
    :func:`newton_step`, which steps in θ itself there) or where that direction gives
    no step."""
    (t,) = theta.tolist()
    if not t > 0.0:
        return None
    (c,) = shift.tolist()
    x = t + c
    (g,) = grad.tolist()
    (h,) = hess.ravel().tolist()
    g_v = x * g
    h_v = (x * h) * x + x * g
    h_v = 0.5 * (h_v + h_v)  # newton_step's symmetrization (inf where 2 h_v overflows)
    if not math.isfinite(h_v):
        return None
    floor = 1e-10 * abs(h_v)
    if floor == 0.0:
        return None
    curv = h_v if h_v < 0.0 else -max(h_v, floor)
    delta = g_v / -curv
    if not math.isfinite(delta):
        return None
    if abs(delta) > MAX_LOG_STEP:
        delta = delta * (MAX_LOG_STEP / abs(delta))
    return ScalarStep(delta, 0.5 * (g_v * delta), t, c)
