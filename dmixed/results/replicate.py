"""One parametric-bootstrap replicate: draw the statistics of a new response and refit
them, keeping only what the replicate table needs.

A replicate's refit is the ordinary fit from statistics (:meth:`MixedLM.fit`: the same
objective, optimizer and settings, in the statistics' coordinates, or with the fit's
``free`` mask the same constraint in the coordinates a constrained fit uses)
less what a replicate does not use: no Hessian and standard errors, no BLUPs, no results
object, no optimizer path mapped back.  It starts at the bootstrapped fit's own estimate
(the replicate's optimum is within sampling error of it), so it needs no moment
equations, and when the Newton steps from there reach the optimum it skips the final
polish (:meth:`ReplicateFitter.optimize`); a fit on the boundary starts its replicates
as a full fit starts (:attr:`ReplicateFitter.moment_start`).  So its estimates are those
of a full refit (to the optimizer's tolerance), with less work.

:class:`ReplicateFitter` holds everything a replicate needs and nothing tied to this
process (no model, no client): it is pickled once to Dask workers, where
:meth:`ReplicateFitter.run` draws and refits a batch of replicates in-process.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..engines.local import closed_form_groups, statistics_from_arrays
from ..errors import DmixedError, SpecError, warnings_dropped
from ..fit.coordinates import Coordinates, weight_factor
from ..fit.optimize import maximize
from ..fit.options import choose_methods
from ..fit.profiled import ProfiledObjective
from ..fit.start import choose_start, engine_moment_start, start_packed
from ..fit.summary import DEFAULTS
from ..kernels.dense2 import sharing_design
from ..stats import GroupArrays, tril_indices
from ..stats.draw import ResponseSampler
from .simulate import StandardizedFit, draw_effects

__all__ = ["Estimate", "ReplicateFitter", "estimate_row", "replicate_rngs"]

logger = logging.getLogger("dmixed")


class Estimate(NamedTuple):
    """A fit's estimates in the model's own coordinates (what a replicate keeps)."""

    fe_params: np.ndarray
    cov_re: np.ndarray
    vcomp: np.ndarray
    scale: float
    llf: float


def estimate_row(state, layout_q: int) -> list[float]:
    """Fixed effects, ``cov_re``'s lower triangle, ``vcomp``, scale, llf of a fit's state
    (or :class:`Estimate`): a row of the replicate table."""
    rows, cols = tril_indices(layout_q)
    cov = np.asarray(state.cov_re, dtype=np.float64)
    return [
        *np.asarray(state.fe_params, dtype=np.float64),
        *cov[rows, cols],
        *np.asarray(state.vcomp, dtype=np.float64),
        float(state.scale),
        float(state.llf),
    ]


def replicate_rngs(seed, n: int) -> list[np.random.Generator]:
    """One independent generator per replicate (numpy's ``spawn``), so that a replicate's
    draw does not depend on where, or after which others, it runs.

    ``seed``: an int, None, a ``numpy.random.SeedSequence``, a ``Generator`` (its
    children: the generator advances) or a legacy ``RandomState`` (one integer drawn
    from it seeds the children).

    Raises
    ------
    SpecError
        ``seed`` none of these, or a negative integer (numpy's own ``TypeError`` or
        ``ValueError``, which named no argument)."""
    if isinstance(seed, np.random.RandomState):
        seed = int(seed.randint(0, 2**31 - 1))
    if isinstance(seed, np.random.Generator):
        return seed.spawn(n)
    if not isinstance(seed, np.random.SeedSequence):
        try:
            seed = np.random.SeedSequence(seed)
        except (TypeError, ValueError) as exc:
            raise SpecError(
                f"seed must be a non-negative integer (or a sequence of them), None, a numpy "
                f"SeedSequence, Generator or RandomState; got {seed!r} ({exc})"
            ) from exc
    return [np.random.default_rng(s) for s in seed.spawn(n)]


@dataclass(frozen=True)
class ReplicateFitter:
    """Draws and refits replicates of one fit (see the module).

    Attributes
    ----------
    sampler : ResponseSampler
        The fit's statistics and their draw.
    fit_std : StandardizedFit
        The fit's estimates in the statistics' columns (what is drawn from).
    start : ndarray (m,)
        Where a replicate's optimizer starts, packed as it packs (square root, the
        statistics' coordinates): the fit's covariance parameters, or for a fit on the
        boundary the full fit's default start.
    reml : bool
    use_re : bool
        Draw conditional on the BLUPs rather than redraw the random effects.
    moment_start : bool
        Also try each replicate's moment estimate as its start (the better of the two
        is taken).  :meth:`of` sets it only for a fit on the boundary (a singular
        ``Ψ*`` or a zero ``τ*``), whose replicates then start as a full fit does:
        the square-root packing's gradient in a zero direction vanishes, so a start
        at such an estimate could not leave it.  From an interior estimate the moment
        equations would cost a pass over the groups and a likelihood evaluation for no
        fewer Newton steps.
    held : ndarray of bool (m,), optional
        The covariance parameters the fit held (``results.held``): each replicate
        holds them at the fit's values too, optimizing as a fit with that ``free``
        mask does (the model's scaled coordinates, its packing, the quasi-Newton
        methods), so that the replicates are draws of the constrained model's
        estimates.  None: every parameter free.
    opt_sqrt : bool
        Whether :attr:`start` and the optimizer are in the square-root packing: always
        with every parameter free; with held parameters, the model's packing (a fit
        with ``free`` and ``use_sqrt=False`` holds entries of Ψ* itself).
    """

    sampler: ResponseSampler
    fit_std: StandardizedFit
    start: np.ndarray
    reml: bool
    use_re: bool = False
    moment_start: bool = True
    held: np.ndarray | None = None
    opt_sqrt: bool = True

    @classmethod
    def of(cls, results, arrays: GroupArrays, use_re: bool = False) -> ReplicateFitter:
        """The fitter of ``results`` over its statistics ``arrays`` (their own columns)."""
        layout = arrays.layout
        fit_std = StandardizedFit.of(results, arrays.columns, layout)
        # a replicate's optimizer works where the fit's does: times the weights' unit
        weight = weight_factor(arrays.glob)
        held = results.held
        if held is not None:  # the fit's constraint, kept (a free mask's coordinates)
            coords = Coordinates.for_fit(arrays.columns, layout, all_free=False, weight=weight)
            start = coords.to_opt(results.packed_params, results.use_sqrt)
            sampler = ResponseSampler(arrays, closed_form_groups(arrays))
            return cls(
                sampler, fit_std, start, bool(results.reml), bool(use_re), False, held,
                bool(results.use_sqrt),
            )  # fmt: skip
        coords = Coordinates.for_fit(arrays.columns, layout, all_free=True, weight=weight)
        start = coords.to_opt(results.packed_params, results.use_sqrt)
        if not results.use_sqrt:
            start = layout.pack(*layout.unpack(start, False), use_sqrt=True)
        psi, tau = layout.unpack(start, True)
        # singular as the fit's optimizer judged Ψ* (its own setting; not by the sign
        # of a rounded eigenvalue: the same estimate from other sums would start its
        # replicates elsewhere)
        bound = results.optimizer.singular_eigenvalue
        interior = (psi.size == 0 or np.linalg.eigvalsh(psi).min() > bound) and np.all(tau > 0)
        if not interior:  # the full fit's own candidates (statsmodels' Ψ* = I, τ* = 1)
            start = start_packed(None, layout, True, 0)
        sampler = ResponseSampler(arrays, closed_form_groups(arrays))
        return cls(sampler, fit_std, start, bool(results.reml), bool(use_re), not interior)

    @property
    def width(self) -> int:
        """Entries of a replicate's row before ``converged``: fixed effects, ``cov_re``'s
        lower triangle, ``vcomp``, scale, llf."""
        layout = self.sampler.arrays.layout
        return self.sampler.arrays.glob.k_fe + layout.n_params + 2

    def draw(self, rng: np.random.Generator) -> GroupArrays:
        """The statistics of one response drawn from the fit."""
        fit, arrays = self.fit_std, self.sampler.arrays
        effects = fit.blups
        if not self.use_re:
            effects = fit.sigma * draw_effects(rng, fit.lam, len(arrays.labels), arrays.slot_cols)
        return self.sampler.draw(rng, fit.beta, effects, fit.sigma)

    def refit(self, drawn: GroupArrays) -> list:
        """The row of the fit of ``drawn`` (``width`` estimates in the model's own
        coordinates, then ``converged``); NaNs and False when the refit fails."""
        try:
            # (dropped in this thread only: a cluster's replicates run in worker
            # threads, which share the process's warning filters)
            with warnings_dropped():
                return self.fit_drawn(drawn)
        except (DmixedError, np.linalg.LinAlgError) as exc:
            logger.debug("bootstrap: a replicate's refit failed: %s", exc)
            return [np.nan] * self.width + [False]

    def fit_drawn(self, drawn: GroupArrays) -> list:
        """:meth:`refit` without its safety net (errors propagate)."""
        stats = statistics_from_arrays(drawn)
        layout, reml = stats.layout, self.reml
        weight = weight_factor(stats.glob)  # the drawn rows keep the fit's weights
        all_free = self.held is None
        coords = Coordinates.for_fit(stats.columns, layout, all_free=all_free, weight=weight)
        obj = ProfiledObjective(
            stats.engine,
            stats.glob,
            stats.fit_layout,
            reml,
            self.opt_sqrt,
            re_map=coords.re_map,
            vc_map=coords.vc_map,
        )
        moment = None
        if self.moment_start:
            moment = engine_moment_start(stats.engine, stats.glob, stats.fit_layout)
            if moment is not None:  # in the statistics' coordinates
                moment = coords.statistics_to_opt_sqrt(moment)
        if self.held is not None:  # as a fit with `free`: from the held values
            start, from_moments = self.start, False
        else:
            start, from_moments = choose_start(obj, self.start, True, moment)
        opt = self.optimize(obj, start, newton_first=from_moments)
        ev = obj.evaluate(opt.packed)
        if ev.prof is None:
            return [np.nan] * self.width + [False]
        psi_opt, tau_opt = layout.unpack(opt.packed, opt.use_sqrt)
        scale = coords.scale(ev.prof.scale)
        estimate = Estimate(
            coords.beta(ev.prof.beta),
            scale * coords.psi(psi_opt),
            scale * coords.tau(tau_opt),
            scale,
            coords.llf(ev.llf, int(stats.glob.n), reml),
        )
        return [*estimate_row(estimate, layout.k_re), bool(opt.converged)]

    def optimize(self, obj: ProfiledObjective, start: np.ndarray, newton_first: bool):
        """The optimizer's run (:func:`dmixed.fit.optimize.maximize`, every parameter
        free, the default methods and settings) from ``start``.

        From the fit's interior estimate: exact Newton steps, and when they reach the
        optimum in the interior (gradient within ``gtol``) no final polish, the exact
        Hessian a full fit takes there to confirm it (a third of a replicate's refit);
        otherwise (quasi-Newton methods were needed, a variance settled at zero) the
        run is finished as a full fit's, from where it stopped.  A fit on the boundary
        (:attr:`moment_start`): as a full fit, Newton steps first when ``newton_first``
        (the start is the moment estimate)."""
        free = np.ones(obj.layout.n_params, dtype=bool)
        methods = choose_methods(None, self.opt_sqrt)
        if self.held is not None:  # a fit with `free`: the quasi-Newton methods
            return maximize(obj, DEFAULTS.start(start), ~self.held, methods)
        if self.moment_start:
            return maximize(obj, DEFAULTS.start(start), free, methods, newton_first=newton_first)
        opt = maximize(obj, DEFAULTS.start(start, polish_steps=0), free, methods, newton_first=True)
        if opt.methods == ["newton"] and not opt.boundary and opt.grad_norm <= opt.gtol:
            return opt
        return maximize(obj, DEFAULTS.start(opt.packed), free, methods, newton_first=True)

    def run(self, rngs) -> tuple[list[list], list[float]]:
        """Draw and refit one replicate per generator of ``rngs``: their rows and wall
        times (seconds each)."""
        rows, seconds = [], []
        with sharing_design():  # the draws share the design: its rows made once
            for rng in rngs:
                t0 = time.perf_counter()
                rows.append(self.refit(self.draw(rng)))
                seconds.append(time.perf_counter() - t0)
        return rows, seconds
