"""The steps of :meth:`MixedLM.fit <dmixed.model.MixedLM.fit>` between the data pass and
the results: the options checked before the data pass (:func:`check_fit_options`) and the
optimizer's start (:func:`fit_start`) on the profiled objective of the statistics
(:func:`objective`).  The optimizer itself (:func:`~dmixed.fit.optimize.maximize`) and the
fit's outcome warnings (:mod:`dmixed.fit.fit_warnings`) are run by ``fit``, so that their
warnings point at the caller's line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import SpecError
from ..stats import CHECK_NOBS_OPTIONS, FittedStatistics
from .coordinates import Coordinates, weight_factor
from .newton_ahead import NewtonSettings
from .optimize import CallbackStop
from .options import check_flag, check_integer, check_tolerance, choose_methods, parse_free
from .profiled import ProfiledObjective
from .start import choose_start, start_packed
from .summary import DEFAULTS, OptSummary

__all__ = [
    "FIT_KWARGS",
    "FitStart",
    "check_fit_kwargs",
    "check_fit_options",
    "check_statsmodels_options",
    "fit_start",
    "iteration_report",
    "objective",
]

#: statsmodels' ``MixedLM.fit`` options dmixed takes only at statsmodels' defaults, and
#: why another value is refused.
STATSMODELS_DEFAULTS = {
    "niter_sa": (
        0,
        "simulated annealing is not offered: the profiled likelihood is fitted "
        "by Newton steps and the quasi-Newton methods",
    ),
    "do_cg": (True, "the gradient optimizer always runs"),
    "fe_pen": (None, "penalized fixed effects are not offered"),
    "cov_pen": (None, "penalized covariance parameters are not offered"),
}


def check_fit_options(
    cov_fe: str,
    check_nobs: str,
    method,
    *,
    start_params=None,
    reml,
    skip_hessian,
    maxiter,
    gtol,
    progress=False,
    full_output=False,
) -> dict[str, float | int]:
    """Refuse bad options of a fit before its data pass; the optimizer's settings
    (``maxiter`` and ``gtol``, for :meth:`~dmixed.fit.summary.OptSummary.start`) as
    the optimizer reads them.

    Raises
    ------
    SpecError
        ``cov_fe`` not ``"hessian"`` or ``"conditional"``; ``check_nobs`` not one of
        :data:`~dmixed.stats.CHECK_NOBS_OPTIONS`; an unknown ``method``
        (:func:`~dmixed.fit.options.choose_methods`); ``start_params`` a Python or
        numpy bool (a call written for dmixed's former order ``fit(reml, ...)``);
        ``reml``, ``skip_hessian``,
        ``progress`` or ``full_output`` not a Python or numpy bool; ``maxiter`` not an
        integer >= 0; ``gtol`` not a finite number >= 0.
    """
    if cov_fe not in ("hessian", "conditional"):
        raise SpecError(f"cov_fe must be 'hessian' or 'conditional', got {cov_fe!r}")
    if check_nobs not in CHECK_NOBS_OPTIONS:
        raise SpecError(f"check_nobs must be 'raise' or 'ignore', got {check_nobs!r}")
    choose_methods(method, opt_sqrt=True)
    if isinstance(start_params, (bool, np.bool_)):
        # statsmodels' order: a bool first was reml in dmixed's former order, and read
        # as a start it would fail later with a message about packed parameters
        raise SpecError(
            f"fit()'s first argument is start_params, as in statsmodels' MixedLM.fit "
            f"(start_params, reml, ...), not reml; got {start_params!r}: pass "
            f"reml={start_params!r} by keyword"
        )
    check_flag(reml, "reml")
    check_flag(skip_hessian, "skip_hessian")
    check_flag(progress, "progress")
    check_flag(full_output, "full_output")
    return {
        "maxiter": check_integer(maxiter, "maxiter", 0),
        "gtol": check_tolerance(gtol, "gtol"),
    }


def check_statsmodels_options(**given) -> None:
    """Refuse statsmodels' ``fit`` options (:data:`STATSMODELS_DEFAULTS`) at any value
    but statsmodels' default, naming the option and why.

    Raises
    ------
    SpecError
        An option of :data:`STATSMODELS_DEFAULTS` given another value.
    """
    for name, value in given.items():
        default, why = STATSMODELS_DEFAULTS[name]
        if value is default or (default is not None and _same(value, default)):
            continue
        raise SpecError(
            f"fit({name}={value!r}) is not supported: {why}; leave {name} out "
            f"(statsmodels' default {default!r})"
        )


#: statsmodels' optimizer options (its ``fit(**fit_kwargs)``, passed on to scipy) that
#: mean something in a dmixed fit, and what they do here
FIT_KWARGS = {
    "disp": "print one line per iteration to stdout (True), or nothing (False, default)",
    "callback": "called once per iteration with the packed covariance parameters",
    "retall": "accepted: every iterate is kept in fit_history (hist) anyway",
}

#: dmixed's own keyword-only settings of ``fit``, listed where an unknown one is refused
FIT_SETTINGS = (
    "maxiter",
    "gtol",
    "cov_fe",
    "skip_hessian",
    "progress",
    "client",
    "engine",
    "check_nobs",
)


def check_fit_kwargs(fit_kwargs: dict) -> tuple[Callable | None, bool]:
    """statsmodels' ``**fit_kwargs`` of ``fit`` (:data:`FIT_KWARGS`), checked before the
    data pass: the ``callback`` (None where not given) and ``disp`` (default False).

    Raises
    ------
    SpecError
        A keyword neither of :data:`FIT_KWARGS` nor of ``fit``'s own (naming it and
        listing those accepted: scipy's other options, such as ``maxfun`` or ``factr``,
        have no meaning for dmixed's optimizer); ``disp`` or ``retall`` not a Python or
        numpy bool; ``callback`` neither None nor callable.
    """
    unknown = sorted(set(fit_kwargs) - FIT_KWARGS.keys())
    if unknown:
        raise SpecError(
            f"fit() got unknown option{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}: of statsmodels' optimizer options "
            f"(fit_kwargs) it takes {', '.join(FIT_KWARGS)}, and its own settings "
            f"{', '.join(FIT_SETTINGS)}"
        )
    disp = bool(check_flag(fit_kwargs.get("disp", False), "disp"))
    check_flag(fit_kwargs.get("retall", False), "retall")
    callback = fit_kwargs.get("callback")
    if callback is not None and not callable(callback):
        raise SpecError(
            f"callback must be None or a function of the packed parameters, not "
            f"{callback!r} ({type(callback).__name__})"
        )
    return callback, disp


def iteration_report(
    start: FitStart, layout, use_sqrt: bool, callback: Callable | None, disp: bool
) -> Callable[[dict, float], None] | None:
    """``fit``'s ``callback`` and ``disp`` as :func:`~dmixed.fit.optimize.maximize`'s
    ``on_iteration`` (None where neither is asked for).

    At each iteration (a quasi-Newton method's or an exact Newton step's: each entry of
    ``fit_history`` but the last), ``callback`` receives a new float64 array, the
    packed covariance parameters of that iterate in the model's ``use_sqrt`` packing
    and scale (as ``packed_params`` of the results, without the fixed effects, which
    are profiled out: the vector statsmodels' scipy optimizer iterates on); ``disp``
    prints the iteration's number, method, ℓ and max |∂ℓ/∂θ|/n, and a last line for the
    final point.  A ``StopIteration`` from ``callback`` ends the optimization at that
    iterate (scipy's convention; :class:`~dmixed.fit.optimize.CallbackStop`): the fit
    returns it with ``converged`` False and a FitConvergenceWarning.  Any other
    exception it raises propagates.
    """
    if callback is None and not disp:
        return None
    opt_sqrt = start.obj.use_sqrt
    coords = start.coords

    def report(entry: dict, llf: float) -> None:
        final = entry["method"] == "final"
        if disp:
            what = "final" if final else f"iteration {entry['iteration']} ({entry['method']})"
            print(f"{what}: llf={llf:.6f} |grad|={entry['grad_norm']:.3g}", flush=True)
        if callback is None or final:
            return
        packed = coords.from_opt(np.asarray(entry["params"], dtype=np.float64), opt_sqrt)
        if opt_sqrt != use_sqrt:
            psi, tau = layout.unpack(packed, opt_sqrt)
            packed = layout.pack(psi, tau, use_sqrt=use_sqrt)
        try:
            callback(packed)
        except StopIteration:
            # scipy's convention: the optimization ends here, on every route (Newton
            # steps too), not only the scipy method under way
            raise CallbackStop from None

    return report


def _same(value, default) -> bool:
    try:
        return type(value) is not str and bool(value == default)
    except (TypeError, ValueError):
        return False


def objective(stats: FittedStatistics, coords: Coordinates, reml, use_sqrt: bool):
    """The profiled objective (:class:`~dmixed.fit.profiled.ProfiledObjective`) of the
    statistics in the optimizer's coordinates ``coords``, its ℓ in the model's."""
    return ProfiledObjective(
        stats.engine,
        stats.glob,
        stats.fit_layout,
        bool(reml),
        use_sqrt,
        re_map=coords.re_map,
        vc_map=coords.vc_map,
        llf_offset=coords.llf(0.0, stats.glob.n, bool(reml)),
    )


@dataclass
class FitStart:
    """Where the optimizer of a fit starts (:func:`fit_start`): the objective ``obj`` in
    the optimizer's packing, the ``coords`` it works in, the ``summary`` holding the
    start and the settings, the ``free`` mask, the ``methods`` and whether Newton steps
    come first (``newton_first``: from moment estimates, or from ``start_params`` without
    ``free``; ``method`` not given)."""

    obj: ProfiledObjective
    coords: Coordinates
    summary: OptSummary
    free: np.ndarray
    methods: list[str]
    newton_first: bool


def fit_start(
    model, stats: FittedStatistics, reml, start_params, method, free, settings: dict, progress
) -> FitStart:
    """The optimizer's start of a fit (:class:`FitStart`).

    ``model`` gives ``use_sqrt``, ``k_fe`` and ``start_from_moments`` (moment estimates,
    used when neither ``start_params`` nor ``free`` is given); ``settings``: ``maxiter``
    and ``gtol`` (:meth:`~dmixed.fit.summary.OptSummary.start`).  The fit runs
    :func:`~dmixed.fit.optimize.maximize` itself, so that its warnings point at the
    caller's line.

    Raises
    ------
    SpecError
        A bad ``start_params`` or ``free``, or a start where ℓ is not finite.
    """
    layout = stats.layout
    free_mask = parse_free(free, layout.n_params, model.k_fe)
    # the optimizer works in the statistics' (standardized) coordinates, scale free;
    # a `free` mask constrains the model's own Ψ*, so then in the scaled ones only;
    # times the weights' unit k, which the column map does not see
    weight = weight_factor(stats.glob)
    all_free = bool(np.count_nonzero(free_mask) == free_mask.size)
    coords = Coordinates.for_fit(stats.columns, layout, all_free, weight)
    start = start_packed(start_params, layout, model.use_sqrt, model.k_fe)
    if start_params is not None:
        start = coords.to_opt(start, model.use_sqrt)
    # The optimizer works on the square-root factor whenever it can: it keeps Ψ*
    # positive semi-definite without constraints.  With use_sqrt=False that only
    # changes the packing of start_params/params; a `free` mask in the plain packing
    # is a constraint on Ψ* itself, so then Ψ* is optimized directly (with bounds).
    opt_sqrt = model.use_sqrt or all_free
    methods = choose_methods(method, opt_sqrt)
    obj = objective(stats, coords, reml, opt_sqrt)
    moment = None
    if start_params is None and free is None:
        moment = model.start_from_moments(stats, stats.fit_layout)
        if moment is not None:  # in the statistics' coordinates
            moment = coords.statistics_to_opt_sqrt(moment)
    level = logging.INFO if progress else logging.DEBUG
    # the Newton steps' settings do not depend on the start: their first step may ride
    # on the starts' round trip
    summary = DEFAULTS.start(start, **settings)
    newton = NewtonSettings.of(summary, obj.glob.n) if method is None else None
    start_opt, from_moments = choose_start(
        obj, start, model.use_sqrt, moment, level, newton_first=method is None, newton=newton
    )
    # the same record from the chosen start (its settings made above: no second one)
    summary.initial = np.array(start_opt, dtype=np.float64)
    # a given start (a previous fit's estimates, as ``dmixed update`` passes) takes the
    # route of moment estimates, a fresh fit's: Newton steps first, handing over to the
    # quasi-Newton methods where they do not converge
    newton_first = method is None and (from_moments or (start_params is not None and free is None))
    return FitStart(obj, coords, summary, free_mask, methods, newton_first)
