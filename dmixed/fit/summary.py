"""The record of one optimization: its settings and tolerances, start, outcome and log.

After MixedModels.jl's ``OptSummary`` (``optsummary.jl``): :func:`~dmixed.fit.optimize.maximize`
reads every tolerance from the record, never from a literal, and fills in the outcome.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..stats import Layout

__all__ = ["DEFAULTS", "OptSummary", "ensure_progress_handler"]


def _setting(default: float | int) -> Any:
    """A field of :class:`OptSummary` that is a setting or tolerance (read before the run)."""
    return field(default=default, metadata={"setting": True})


@dataclass
class OptSummary:
    """Everything about one optimization of the profiled log-likelihood.

    After MixedModels.jl's ``OptSummary``: the settings and tolerances the optimization
    reads (never literals in the code), its initial and final values, the methods it
    went through and its log, one entry per iteration.
    :func:`~dmixed.fit.optimize.maximize` fills in the outcome of a record made with
    :meth:`start` (the settings of :data:`DEFAULTS`).  Gradient tolerances apply to
    ``max_j |∂ℓ/∂θ_j| / n`` (ℓ/n, as statsmodels judges convergence).

    The attributes come in three groups: settings and tolerances (``maxiter`` to
    ``lbfgs_maxcor``: :meth:`settings`), initial and final values (``use_sqrt`` to
    ``boundary``), and the optimizer's path (``methods`` to ``history``).

    Attributes
    ----------
    maxiter : int
        Iterations allowed to each quasi-Newton method in turn (as statsmodels gives
        ``maxiter`` to each method of its list); the Newton steps, first and in the
        polish, take only what the iterations made before them leave of it.
    gtol : float
        Gradient tolerance of the scipy methods (on ℓ/n).
    convergence_floor : float
        The fit counts as converged when the scaled gradient is at most
        ``max(gtol, convergence_floor)`` (a scipy method may stop on its line search
        just short of ``gtol``).
    handover_gtol : float
        Scaled gradient below which BFGS / L-BFGS stop early and leave the rest to the
        exact Newton polish, when every parameter is free and the point is interior;
        below about this size the line searches work at the floating-point resolution
        of ℓ/n on large data.
    interior_variance : float
        A point is interior (for the hand-over) when every diagonal entry of Ψ* and
        every τ* exceeds this ...
    interior_eigenvalue : float
        ... and the smallest eigenvalue of Ψ* exceeds this.
    newton_first_steps : int
        Newton steps tried first from a moment start (:mod:`dmixed.fit.start`), before
        any quasi-Newton iteration; from a start that close they usually converge in two
        to four, and when they do not, BFGS carries on from where they stopped.
    newton_first_contraction : float
        ... and they stop when two in a row shrink the gradient by less than this factor
        (linear convergence: typically an optimum on the boundary).
    newton_secant_rows : int
        On statistics of at least this many rows, a first Newton step that shrank the
        gradient by ``newton_first_contraction`` is followed by steps that update its
        Hessian from the change of the gradient (BFGS) instead of computing it again:
        there a Hessian costs several evaluations (benchmarks/RESULTS.md, seventh
        session); the polish still takes the exact Hessian at the optimum.
    polish_steps : int
        The most Newton steps of the final polish (within ``maxiter``).  The polish
        ends on its own tests (``newton_decrement``, a step that does not help); the
        count only bounds it.  A quasi-Newton method can stop far out on a flat
        variance, where its gradient test passes while ℓ still rises by tens of units
        (residual noise 1e-4 next to group effects of 1: Ψ* near 1e8), and the Newton
        steps from there need more than the handful a handed-over optimum does.
    newton_gtol : float
        Newton steps stop without computing the Hessian when ``max |∂ℓ/∂θ_j|`` is at
        most this times n (0: always judge by ``newton_decrement``, which does not
        depend on the scale of the parameters).
    newton_decrement : float
        ... and stop when the Newton decrement ``g'(−H)⁻¹g / 2`` (the rise of ℓ a full
        step promises) is at most this times n: parameters then sit within about
        ``√(2·newton_decrement)`` of the optimum relative to their standard errors' scale,
        whatever their units.
    converged_rise : float
        Where every parameter is free and the polish's Newton steps were cut short
        (``maxiter`` left none, or all ``polish_steps`` ran without a test stopping
        them), the fit is converged only if a Newton step from the final point promises
        ℓ a rise of at most this (the decrement ``g'(−H)⁻¹g / 2``, in units of ℓ: the
        parameters then sit within about ``√(2·converged_rise)`` standard errors of the
        optimum, whatever their units; lme4's ``check.conv.grad`` tests the scaled
        gradient ``H⁻¹g`` in the same spirit), or if ℓ itself rises by at most this
        along that step (a near-singular profiled Hessian promises rises that rounding
        makes).  The same test judges a fit with ``free=`` held entries whose method
        ``maxiter`` ended (the Newton step in the free packed coordinates), and every
        fit that ends at a singular Ψ* not settled at zero, after the Newton steps on
        the face of the cone it lies on (the step along the face and into the cone;
        none could be made: not converged): there the gradient in the square-root
        packing vanishes with the factor's zero column whatever ℓ does along the face.
        A singular Ψ* with variances settled at zero is judged by the same step too
        (each settled variance's one-sided slope misses the rise from turning Ψ*'s
        range into the settled coordinates).  Where the step promises more, the fit
        runs its methods again from a point off the face (up to
        :data:`~dmixed.fit.optimize.FACE_RESTARTS` times).
        Elsewhere (the polish ended on its tests, or on a step that did not help) the
        gradient at the final point decides, with ``gtol`` and ``convergence_floor``.
    newton_llf_rtol : float
        A Newton step (and the polish as a whole) is kept when ℓ drops by at most this
        relative amount (``· max(1, |ℓ|)``).
    newton_halvings : int
        Times a Newton step is halved before the polish gives up.
    singular_eigenvalue : float
        Ψ* with its smallest eigenvalue at most this is singular: polished on the face
        of the cone (its eigenvalues at most this set to zero) unless a variance was
        settled at zero, and reported as a boundary estimate.
    boundary_candidate : float
        A relative variance (diagonal of Ψ*, τ*) below this is tried at exactly zero.
    boundary_llf_rtol : float
        ... and kept there when ℓ drops by at most this relative amount ...
    boundary_slope : float
        ... and the one-sided derivative ∂ℓ/∂(variance) at zero is at most this times n.
    lbfgs_ftol : float
        L-BFGS-B's ``ftol`` (relative reduction of ℓ/n that stops it).
    lbfgs_maxcor : int
        L-BFGS-B's ``maxcor`` (corrections kept for the Hessian approximation).
    use_sqrt : bool
        The packing of ``initial`` and ``packed`` (square-root factor, or Ψ* and τ*).
    initial : ndarray (m,)
        Start, packed covariance parameters.
    initial_llf : float
        ℓ at the start.
    packed : ndarray (m,)
        Final packed covariance parameters (the optimizer's packing, which the model
        changes to its own with :meth:`repack`).
    llf : float
        ℓ at ``packed``.
    grad_norm : float
        Final scaled gradient over the free parameters not settled on the boundary.
    converged : bool
        Whether ``grad_norm`` at the final point reached ``max(gtol,
        convergence_floor)`` (or a method's own test passed there), the point is not at
        the resolution edge, and, where the polish or a masked fit's method was cut
        short, the test of ``converged_rise`` passed; at a singular Ψ* not settled at
        zero, that test alone; at one with variances settled at zero, that test too.
    final_rise : float
        The rise of ℓ a Newton step from the final point promises, where the fit
        computed it to judge convergence (see ``converged_rise``; saved with the
        results); NaN where it was not computed or there is no such step.
    resolution_edge : bool
        The optimum lies beyond what the float64 statistics resolve: ℓ still rises
        toward points the objective rejects
        (:meth:`~dmixed.fit.profiled.ProfiledObjective.at_resolution_edge`).
    callback_stop : bool
        ``fit``'s ``callback`` raised ``StopIteration``, which ended the optimization
        at the iterate it was given (``converged`` is then False; not saved).
    boundary : list of str
        Variances settled at exactly zero (:meth:`Layout.boundary_labels` labels):
        those the optimizer set to 0 and held there.  A rank-deficient Ψ* whose
        variances are all positive (a correlation of ±1, reached from inside the cone)
        is not listed, nor a variance that is tiny but not 0: lme4's singular-fit flag
        is :attr:`MixedLMResults.is_singular <dmixed.MixedLMResults.is_singular>`.
        The labels are positional (a random effect and a component may share a name;
        saved results read them back by position):
        :attr:`MixedLMResults.boundary_names <dmixed.MixedLMResults.boundary_names>`
        gives the names the BoundaryWarning uses.
    methods : list of str
        Methods that ran, in order (``"newton"`` for converging Newton steps first,
        then ``"bfgs"``, ``"lbfgs"``, ``"cg"`` as tried).  Newton steps first that stop
        short of ``handover_gtol`` are not listed, whether the start was moment
        estimates or a given start: their steps are in ``history`` and ``n_iter``.
    n_iter : int
        Iterations made: the entries of ``history`` before its final one (the Newton
        steps from the start and the methods' iterations, all methods together; the
        polish's Newton steps are not counted).
    n_evals : int
        Evaluations of the objective (engine round trips) by the end of the run,
        including those of the start selection on the same objective.
    history : list of dict
        The fit log: per iteration ``iteration``, ``method``, ``llf``, ``grad_norm``
        (max |∂ℓ/∂θ_j|/n over the free parameters; in the last entry ``grad_norm``
        above, over those not settled at zero), ``elapsed`` (seconds) and ``params``
        (packed); the last entry, method ``"final"``, is the final point, not an
        iteration: its ``iteration`` is the count made before it (``n_iter``).
    """

    # -- settings and tolerances ---------------------------------------------------
    maxiter: int = _setting(500)
    gtol: float = _setting(1e-8)
    convergence_floor: float = _setting(1e-4)
    handover_gtol: float = _setting(1e-7)
    interior_variance: float = _setting(1e-3)
    interior_eigenvalue: float = _setting(1e-6)
    newton_first_steps: int = _setting(6)
    newton_first_contraction: float = _setting(0.25)
    newton_secant_rows: int = _setting(100_000)
    polish_steps: int = _setting(30)
    newton_gtol: float = _setting(0.0)
    newton_decrement: float = _setting(1e-18)
    converged_rise: float = _setting(1e-6)
    newton_llf_rtol: float = _setting(1e-12)
    newton_halvings: int = _setting(20)
    singular_eigenvalue: float = _setting(1e-8)
    boundary_candidate: float = _setting(1e-4)
    boundary_llf_rtol: float = _setting(1e-9)
    boundary_slope: float = _setting(1e-7)
    lbfgs_ftol: float = _setting(1e-15)
    lbfgs_maxcor: int = _setting(20)
    # -- initial and final values ------------------------------------------------------
    use_sqrt: bool = True
    initial: np.ndarray = field(default_factory=lambda: np.zeros(0))
    initial_llf: float = np.nan
    packed: np.ndarray = field(default_factory=lambda: np.zeros(0))
    llf: float = np.nan
    grad_norm: float = np.nan
    converged: bool = False
    #: the optimizer stopped where the statistics' rounding starts to dominate ``Q``,
    #: with ℓ still rising beyond (``converged`` is then False)
    resolution_edge: bool = False
    callback_stop: bool = False
    final_rise: float = np.nan
    boundary: list[str] = field(default_factory=list)
    # -- optimizer and fit log -----------------------------------------------------------
    methods: list[str] = field(default_factory=list)
    n_iter: int = 0
    n_evals: int = 0
    history: list[dict] = field(default_factory=list)

    # -- MixedModels.jl's names (OptSummary in optsummary.jl), on the objective it
    # -- minimizes: −2ℓ, the deviance under ML and the REML criterion under REML ------

    @property
    def finitial(self) -> float:
        """MixedModels.jl's ``finitial``: the objective at ``initial``, ``−2 ×
        initial_llf`` (the deviance under ML, the REML criterion under REML)."""
        return -2.0 * float(self.initial_llf)

    @property
    def fmin(self) -> float:
        """MixedModels.jl's ``fmin``: the objective at the final point, ``−2 × llf``
        (the deviance under ML, the REML criterion under REML; the results'
        ``objective``)."""
        return -2.0 * float(self.llf)

    @property
    def feval(self) -> int:
        """MixedModels.jl's ``feval``: evaluations of the objective, :attr:`n_evals`."""
        return int(self.n_evals)

    @property
    def optimizer(self) -> str:
        """MixedModels.jl's ``optimizer`` (there one NLopt algorithm, such as
        ``LN_BOBYQA``): here the last method of :attr:`methods` that ran (``"newton"``,
        ``"bfgs"``, ``"lbfgs"``, ``"cg"``; every method tried is in ``methods``), ``""``
        where none ran."""
        return self.methods[-1] if self.methods else ""

    def settings(self) -> dict[str, float | int]:
        """The settings and tolerances, by name."""
        return dict(zip(_setting_names(), _settings_of()(self), strict=True))

    def repack(self, layout: Layout, use_sqrt: bool) -> bool:
        """Pack ``initial`` and ``packed`` as ``use_sqrt`` packs; True when that changed them."""
        if use_sqrt == self.use_sqrt:
            return False
        for name in ("initial", "packed"):
            value = getattr(self, name)
            if value.size:
                psi, tau = layout.unpack(value, self.use_sqrt)
                setattr(self, name, layout.pack(psi, tau, use_sqrt=use_sqrt))
        self.use_sqrt = use_sqrt
        return True

    def start(self, initial: np.ndarray, **settings: float | int) -> OptSummary:
        """A fresh record from ``initial`` with these settings, ``settings`` overriding."""
        position = _setting_positions()
        unknown = settings.keys() - position.keys()
        if unknown:
            raise TypeError(f"not settings of OptSummary: {sorted(unknown)}")
        # the settings are the first fields, then use_sqrt and initial: given by
        # position (every fit makes a record; keyword arguments cost more than it)
        values: list[Any] = list(_settings_of()(self))
        for name, value in settings.items():
            values[position[name]] = value
        make: Callable[..., OptSummary] = OptSummary  # (fields by position)
        return make(*values, _DEFAULT_USE_SQRT, np.array(initial, dtype=np.float64))


@functools.cache
def _setting_names() -> tuple[str, ...]:
    """The names of :class:`OptSummary`'s settings (its fields with metadata), in field
    order: found once (``dataclasses.fields`` costs more than the rest of a lookup)."""
    return tuple(f.name for f in dataclasses.fields(OptSummary) if f.metadata)


@functools.cache
def _setting_positions() -> dict[str, int]:
    """Each setting's position among the fields of :class:`OptSummary`, which begin
    with the settings and go on with ``use_sqrt`` and ``initial``
    (:meth:`OptSummary.start` gives them in that order)."""
    names = [f.name for f in dataclasses.fields(OptSummary)]
    settings = _setting_names()
    if tuple(names[: len(settings)]) != settings or names[len(settings) :][:2] != [
        "use_sqrt",
        "initial",
    ]:
        raise RuntimeError("internal error: OptSummary's fields are not in start()'s order")
    return {name: i for i, name in enumerate(settings)}


@functools.cache
def _settings_of() -> Any:
    """The getter of every setting of a record, as a tuple in :func:`_setting_names`
    order."""
    return operator.attrgetter(*_setting_names())


#: ``use_sqrt``'s default: the packing of a record :meth:`OptSummary.start` makes
_DEFAULT_USE_SQRT = OptSummary.__dataclass_fields__["use_sqrt"].default

#: The settings every fit starts from (``DEFAULTS.start(initial, maxiter=..., gtol=...)``);
#: set a field (``DEFAULTS.handover_gtol = 0.0``) to change it for every later fit.  Its
#: outcome fields stay empty.
DEFAULTS = OptSummary()


def ensure_progress_handler() -> None:
    """Make INFO records of logger 'dmixed' visible when progress=True was asked for
    (a handler on stderr unless logging is configured already)."""
    logger = logging.getLogger("dmixed")
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("dmixed: %(message)s"))
        logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
