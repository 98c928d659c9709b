"""The optimizer: quasi-Newton iterations handing over to the exact Newton polish."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import dmixed
from dmixed import BoundaryWarning, FitConvergenceWarning, MixedLM
from dmixed.fit import optimize, profiled
from dmixed.fit.optimize import all_above, largest_magnitude, maximize
from dmixed.fit.options import METHODS
from dmixed.fit.params import MixedLMParams
from dmixed.fit.profiled import ProfiledObjective
from dmixed.fit.start import choose_start
from dmixed.fit.summary import DEFAULTS, OptSummary
from dmixed.kernels import StepSums
from dmixed.stats import GlobalStats, Layout

from .._synth import dyestuff2_arrays, make_data


@pytest.fixture
def default_start(monkeypatch):
    """Fits start at Ψ* = I, τ* = 1 (no moment start): the quasi-Newton path."""
    monkeypatch.setattr(MixedLM, "start_from_moments", staticmethod(lambda stats, layout: None))


def _fit(df, **model_kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = dmixed.mixedlm("y ~ x1 + x2", df, groups="g", **model_kw)
        return model.fit()


@pytest.mark.parametrize(
    "model_kw",
    [
        {"re_formula": "1 + x1"},
        {"re_formula": "1", "vc_formula": {"s": "0 + C(sub)"}},
    ],
)
def test_handover_to_newton_changes_nothing(monkeypatch, default_start, model_kw):
    """BFGS stopping at a scaled gradient of DEFAULTS.handover_gtol and the Newton polish
    finishing gives the optimum BFGS run to the end gives, to 1e-8."""
    df = make_data(n_groups=3000, vc_sd=0.5, seed=8)
    early = _fit(df, **model_kw)
    monkeypatch.setattr(DEFAULTS, "handover_gtol", 0.0)
    full = _fit(df, **model_kw)
    assert early.converged and full.converged
    assert early.n_evals <= full.n_evals
    assert early.llf == pytest.approx(full.llf, rel=1e-12)
    for name in ("fe_params", "cov_re", "vcomp", "scale", "bse"):
        np.testing.assert_allclose(
            getattr(early, name), getattr(full, name), rtol=1e-8, atol=1e-12, err_msg=name
        )


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("re_formula", ["1 + x1", "1"])
def test_secant_newton_steps_reach_the_same_optimum(monkeypatch, seed, re_formula):
    """Newton steps that update the Hessian from the gradient (BFGS, as on large data:
    DEFAULTS.newton_secant_rows) reach the optimum the exact Newton steps reach, with
    no more Hessian round trips: both stop where the exact Newton decrement is below
    DEFAULTS.newton_decrement · n (within about 3e-8 standard errors of the optimum
    here), and the standard errors come from the exact Hessian there."""
    from dmixed.engines.local import LocalEngine
    from dmixed.kernels.dense2 import Dense2Statistics, Dense2Step

    hessians = []

    def counted(hessian):
        def call(self, *args, **kwargs):
            hessians.append(1)
            return hessian(self, *args, **kwargs)

        return call

    # the engine's Hessian sums, and those of the lean Newton steps (dmixed.fit.lean)
    monkeypatch.setattr(LocalEngine, "hessian", counted(LocalEngine.hessian))
    monkeypatch.setattr(Dense2Statistics, "hessian", counted(Dense2Statistics.hessian))
    monkeypatch.setattr(Dense2Step, "moments", counted(Dense2Step.moments))
    df = make_data(n_groups=400, seed=seed)
    fits = {}
    for secant_rows in (0, 10**12):
        monkeypatch.setattr(DEFAULTS, "newton_secant_rows", secant_rows)
        hessians.clear()
        fits[secant_rows] = (_fit(df, re_formula=re_formula), len(hessians))
    (secant, n_secant), (exact, n_exact) = fits[0], fits[10**12]
    assert secant.converged and exact.converged
    assert secant.optimizer_methods == exact.optimizer_methods == ["newton"]
    assert n_secant <= n_exact
    assert secant.llf == pytest.approx(exact.llf, rel=1e-12)
    for name in ("fe_params", "cov_re", "scale", "bse"):
        np.testing.assert_allclose(
            getattr(secant, name), getattr(exact, name), rtol=1e-7, atol=1e-9, err_msg=name
        )


def test_handover_stops_bfgs_early(monkeypatch, default_start):
    """With a generous hand-over threshold BFGS stops after its first iterations and the
    Newton polish alone reaches the same optimum."""
    df = make_data(n_groups=800, seed=2)
    ref = _fit(df, re_formula="1 + x1")
    monkeypatch.setattr(DEFAULTS, "handover_gtol", 1e-3)
    early = _fit(df, re_formula="1 + x1")
    bfgs = [h for h in early.fit_history if h["method"] == "bfgs"]
    assert len(bfgs) < len([h for h in ref.fit_history if h["method"] == "bfgs"])
    np.testing.assert_allclose(early.cov_re, ref.cov_re, rtol=1e-8)
    np.testing.assert_allclose(early.fe_params, ref.fe_params, rtol=1e-8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_handover_near_the_boundary(monkeypatch, default_start, seed):
    """A variance heading for zero is left to BFGS and the boundary settling, however
    generous the hand-over threshold: the fit still ends exactly on the boundary."""
    y, g = dyestuff2_arrays(seed)
    monkeypatch.setattr(DEFAULTS, "handover_gtol", 1.0)  # any gradient would qualify
    # BFGS stops short near the boundary and L-BFGS takes over, as statsmodels does
    with (
        pytest.warns(BoundaryWarning),
        pytest.warns(FitConvergenceWarning, match="retrying the optimization with lbfgs"),
    ):
        res = MixedLM(y, np.ones((30, 1)), g).fit()
    assert res.converged
    assert res.cov_re[0, 0] == 0.0
    assert res.fe_params[0] == pytest.approx(y.mean(), rel=1e-10)


@pytest.mark.parametrize("start", ["moment", "default"])
def test_every_round_trip_is_at_a_new_point(request, monkeypatch, start):
    """Each engine round trip of a fit (a step, or the start selection's value alone at
    the default point), and each evaluation of the Newton steps on whole-block sums
    (dmixed.fit.lean), evaluates a point not evaluated before (the start selection,
    Newton steps and final checks reuse cached evaluations), and the fit reports them
    all in n_evals."""
    from dmixed.fit.lean import LeanSteps

    if start == "default":
        request.getfixturevalue("default_start")
    df = make_data(n_groups=500, seed=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = dmixed.mixedlm("y ~ x1 + x2", df, groups="g", re_formula="1 + x1")
    engine = model.statistics().engine
    seen = []

    def counted(original):
        def call(lam, q):
            seen.append(np.asarray(lam).tobytes())
            return original(lam, q)

        return call

    engine.step = counted(engine.step)
    engine.value = counted(engine.value)

    def lean_counted(original):
        def call(self, packed):
            seen.append(np.asarray(self.obj.lam(packed)).tobytes())
            return original(self, packed)

        return call

    monkeypatch.setattr(LeanSteps, "evaluate", lean_counted(LeanSteps.evaluate))
    monkeypatch.setattr(LeanSteps, "value", lean_counted(LeanSteps.value))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit()
    assert len(seen) == res.n_evals
    assert len(set(seen)) == len(seen)


@pytest.mark.parametrize("re_formula", ["1 + x1", "1"])
def test_the_polish_where_the_newton_steps_stopped_asks_for_no_step(monkeypatch, re_formula):
    """Newton steps from the moment start that stop on their decrement (exact Hessian)
    leave the polish nothing to do: it stops there without reading the coordinates'
    shifts and the Newton direction again (one reading per exact Hessian)."""
    import dmixed.fit.lean as lean

    df = make_data(n_groups=400, seed=3)
    read: list[int] = []

    def counted(original):
        def call(*args):
            read.append(1)
            return original(*args)

        return call

    # the general Newton steps' readings, and those of the lean ones (dmixed.fit.lean)
    monkeypatch.setattr(optimize, "log_shift", counted(optimize.log_shift))
    monkeypatch.setattr(lean, "shift_of", counted(lean.shift_of))
    res = _fit(df, re_formula=re_formula)
    assert res.converged and res.fit_history[-2]["method"] == "newton"
    # one per accepted Newton step and one at the optimum (where the decrement stops them)
    assert len(read) == sum(h["method"] == "newton" for h in res.fit_history) + 1


def test_hessian_full_from_the_callers_evaluation_is_the_looked_up_one():
    """The Newton steps hand the Hessian the evaluation they hold: the same Hessian bit
    for bit as one that looks the point up, and no evaluation more."""
    df = make_data(n_groups=300, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = dmixed.mixedlm("y ~ x1 + x2", df, groups="g", re_formula="1 + x1")
    stats = model.statistics()
    point = np.array([0.9, 0.2, 0.6])
    looked_up = ProfiledObjective(stats.engine, stats.glob, stats.layout, True, True)
    expected = looked_up.hessian_full(point)
    given = ProfiledObjective(stats.engine, stats.glob, stats.layout, True, True)
    ev = given.evaluate(point)
    np.testing.assert_array_equal(given.hessian_full(point, ev=ev), expected)
    assert given.n_evals == looked_up.n_evals == 1
    assert given.logdet_traces(point) is not None


def test_opt_summary_records_settings_start_and_outcome():
    """maximize fills in the record made by DEFAULTS.start: the settings it was given,
    the start, the final point and the fit log, consistently."""
    df = make_data(n_groups=200, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = dmixed.mixedlm("y ~ x1 + x2", df, groups="g", re_formula="1 + x1")
    stats = model.statistics()
    obj = ProfiledObjective(stats.engine, stats.glob, stats.layout, True, True)
    start = np.array([1.0, 0.0, 1.0])
    summary = DEFAULTS.start(start, maxiter=80)
    assert summary.maxiter == 80 and summary.gtol == DEFAULTS.gtol
    assert summary.settings() == {**DEFAULTS.settings(), "maxiter": 80}
    free = np.ones(3, dtype=bool)
    out = maximize(obj, summary, free, ["bfgs", "lbfgs"])
    assert summary.n_evals == obj.n_evals  # before the checks below evaluate again
    assert out is summary and summary.converged
    assert DEFAULTS.history == [] and DEFAULTS.methods == []  # a fresh record each time
    np.testing.assert_array_equal(summary.initial, start)
    assert summary.initial_llf == obj.evaluate(start).llf < summary.llf
    assert summary.llf == obj.evaluate(summary.packed).llf == summary.history[-1]["llf"]
    # the iterations made: the final entry records the point they ended at
    assert summary.n_iter == len(summary.history) - 1 == summary.history[-1]["iteration"]
    assert [h["iteration"] for h in summary.history[:-1]] == list(range(1, summary.n_iter + 1))
    assert summary.methods == ["bfgs"] and summary.boundary == []
    assert summary.grad_norm <= max(summary.gtol, summary.convergence_floor)
    with pytest.raises(TypeError, match="not settings"):
        DEFAULTS.start(start, tolerance=1.0)


def test_opt_summary_repacks_start_and_optimum():
    y, g = dyestuff2_arrays(0)
    layout = MixedLM(y, np.ones((30, 1)), g).statistics().layout
    summary = OptSummary(initial=np.array([2.0]), packed=np.array([3.0]), use_sqrt=True)
    assert not summary.repack(layout, use_sqrt=True)
    assert summary.repack(layout, use_sqrt=False)
    np.testing.assert_allclose([summary.initial[0], summary.packed[0]], [4.0, 9.0])
    assert summary.use_sqrt is False


def test_an_unknown_method_is_refused_before_the_data_pass():
    """A misspelt ``method`` is a SpecError naming the methods available, not scipy's
    "Unknown solver" after the data pass."""
    y, g = dyestuff2_arrays(0)
    with pytest.raises(dmixed.SpecError, match=r"method 'bfsg' is not available: use one of"):
        MixedLM(y, np.ones((30, 1)), g).fit(method="bfsg")


class _StubEngine:
    """An engine whose step sums are given (random intercept, one fixed effect), and
    whose Hessian round trip fails as a factorization does in floating point."""

    def __init__(self, logdet: float, m: np.ndarray) -> None:
        self.sums = StepSums(
            logdet=logdet,
            m=np.asarray(m, dtype=np.float64),
            s=np.eye(1),
            t_re=np.zeros((1, 1, 2, 2)),
            t_vc=np.zeros((0, 2, 2)),
            between=np.zeros((2, 2)),
        )

    def step(self, lam, k_re):
        return self.sums

    def hessian(self, lam, basis, w, a_inv=None, reml=True):
        raise np.linalg.LinAlgError("Matrix is not positive definite")


def _stub_objective(logdet: float, m) -> ProfiledObjective:
    glob = GlobalStats(xyxy=np.array([[10.0, 1.0], [1.0, 5.0]]), n=10)
    return ProfiledObjective(
        engine=_StubEngine(logdet, m), glob=glob, layout=Layout(1, ()), reml=True, use_sqrt=True
    )


@pytest.mark.parametrize(
    ("logdet", "m"),
    [
        (0.0, [[20.0, 0.0], [0.0, 0.0]]),  # X'V*⁻¹X = 10 − 20 < 0: its Cholesky fails
        (np.nan, [[1.0, 0.0], [0.0, 1.0]]),  # a sum that is not finite
        (0.0, [[1.0, 0.0], [0.0, 6.0]]),  # residual quadratic form Q < 0
    ],
)
def test_evaluate_rejects_a_point_where_the_profile_fails(logdet, m):
    """Where the GLS factorization fails or a value is not finite, evaluate gives a
    rejected step (ℓ = −inf, zero score, no profile) instead of raising."""
    obj = _stub_objective(logdet, m)
    ev = obj.evaluate(np.array([1.0]))
    assert ev.llf == -np.inf and ev.prof is None and ev.step is None
    np.testing.assert_array_equal(ev.score, [0.0])
    assert obj.n_evals == 1


def test_hessian_full_is_nan_where_a_factorization_fails():
    """A Hessian round trip that fails gives NaN (no curvature), not numpy's error."""
    obj = _stub_objective(0.0, [[1.0, 0.0], [0.0, 1.0]])
    assert np.isfinite(obj.evaluate(np.array([1.0])).llf)
    h = obj.hessian_full(np.array([1.0]))
    assert h.shape == (2, 2) and np.isnan(h).all()


def test_a_fit_that_cannot_start_says_so():
    """ℓ not defined at any start: a SpecError in words, not numpy's LinAlgError."""
    obj = _stub_objective(0.0, [[20.0, 0.0], [0.0, 0.0]])
    with pytest.raises(dmixed.SpecError, match="the fit cannot start"):
        choose_start(obj, np.array([1.0]), use_sqrt=True, moment=np.array([0.5]))


@pytest.mark.filterwarnings("ignore::dmixed.errors.FitConvergenceWarning")
def test_a_start_refused_for_resolution_says_so(monkeypatch):
    """A start where ℓ is defined but the resolution test refuses it
    (:func:`~dmixed.fit.objective.out_of_resolution`, here made to refuse every point):
    the error says that the float64 sums cannot resolve ℓ there, not that a
    factorization failed (the message where one does: the test above)."""
    monkeypatch.setattr(profiled, "out_of_resolution", lambda *args: True)
    obj = _stub_objective(0.0, [[1.0, 0.0], [0.0, 1.0]])
    with pytest.raises(dmixed.SpecError, match="cannot start.*cannot resolve") as info:
        choose_start(obj, np.array([1.0]), use_sqrt=True, moment=None)
    assert "not positive definite" not in str(info.value)


def test_a_start_where_the_factor_fails_says_so():
    obj = _stub_objective(0.0, [[20.0, 0.0], [0.0, 0.0]])
    with pytest.raises(dmixed.SpecError, match="not positive definite"):
        choose_start(obj, np.array([1.0]), use_sqrt=True, moment=None)


@pytest.mark.filterwarnings("ignore::dmixed.errors.SingularHessianWarning")
@pytest.mark.filterwarnings("ignore::dmixed.errors.BoundaryWarning")
def test_a_covariate_in_the_millions_raises_no_linalg_error():
    """x = 1e6 · U(1, 10) with a random slope on it (REML): trial points where X'V*⁻¹X is
    not positive definite in floating point are rejected steps, so the fit ends with
    finite estimates instead of numpy's "Matrix is not positive definite" (it may warn
    that it did not converge: those warnings are let through in this test only)."""
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(40), 10)
    xs = rng.uniform(1.0, 10.0, g.size)
    y = 1.0 + 0.5 * xs + rng.normal(size=40)[g] + 0.3 * rng.normal(size=40)[g] * xs
    y = y + rng.normal(size=g.size)
    df = pd.DataFrame({"y": y, "x": 1e6 * xs, "g": g})
    model = MixedLM.from_formula("y ~ x", df, groups="g", re_formula="1 + x")
    res = model.fit()
    assert np.isfinite(res.llf) and res.llf >= res.to_state().initial_llf
    assert np.all(np.isfinite(res.fe_params))


def _far_off_model(use_sqrt: bool = False):
    """A slope's column in the millions (1e6 x1) with a random intercept and slope: a
    slope variance of 1 in those units is 1e12 too large, where ``X'V*⁻¹X`` is near
    singular (REML's ``log|A|`` known to about 3e-3 units)."""
    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(40), 15)
    x1 = rng.normal(size=g.size)
    y = 1 + x1 + rng.normal(size=40)[g] + 0.6 * rng.normal(size=40)[g] * x1
    y = y + 0.6 * rng.normal(size=g.size)
    exog = np.column_stack([np.ones(g.size), 1e6 * x1])
    return MixedLM(y, exog, g, exog_re=exog, use_sqrt=use_sqrt)


def test_a_masked_fit_started_far_off_in_its_units_is_not_converged():
    """``free`` with the plain packing (no Newton polish) and a start off by 1e12 in the
    slope variance's units: the gradient in those units is tiny while ℓ still rises by
    hundreds; the log-scaled gradient says so (a tester's case: converged=True).  There
    ``X'V*⁻¹X``'s factor does not resolve ℓ
    (:func:`~dmixed.fit.objective.factor_resolution` 1.12e-5 all around the start): the
    start is accepted as a start, every point beyond it is refused, and the fit says
    that it ended at its start."""
    model = _far_off_model()
    with pytest.warns(dmixed.FitConvergenceWarning):
        with pytest.warns(dmixed.PrecisionWarning, match="ended at its start"):
            with warnings.catch_warnings():  # the Hessian there is that of a point far off
                warnings.simplefilter("ignore", dmixed.SingularHessianWarning)
                res = model.fit(free=[1, 0, 1], start_params=[1.0, 0.0, 1.0], method="lbfgs")
    assert not res.converged
    ok = _far_off_model().fit(free=[1, 0, 1], start_params=[1.0, 0.0, 1e-12], method="lbfgs")
    assert ok.converged and ok.llf > res.llf + 10


@pytest.mark.parametrize("use_sqrt", [False, True])
def test_a_fit_started_where_the_factor_is_not_resolved_is_not_reported_converged(use_sqrt):
    """Every parameter free, started at a slope variance 1e12 too large in its units:
    every point around the start is one where ``X'V*⁻¹X``'s factor does not resolve ℓ,
    so the fit stays at its start and says so, not converged (accepting those points,
    the steps stopped 520 units below the maximum on a gradient tiny in those units and
    reported convergence): the quasi-Newton route (``method`` named; a given start took
    it by default before it took Newton steps first, as a moment start does).  The
    Newton steps first leave that region in log coordinates: with the numpy kernels they
    reach the maximum, with the compiled ones they stop short of it, not converged and
    saying so: either way no convergence is reported short of the maximum."""
    model = _far_off_model(use_sqrt)
    with pytest.warns(dmixed.FitConvergenceWarning):
        with pytest.warns(dmixed.PrecisionWarning, match="ended at its start"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", dmixed.SingularHessianWarning)
                res = model.fit(start_params=[1.0, 0.0, 1.0], method=["bfgs", "lbfgs", "cg"])
    assert not res.converged
    best = _far_off_model().fit()
    assert best.llf > res.llf + 500
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        newton_first = model.fit(start_params=[1.0, 0.0, 1.0])
    said = any(issubclass(w.category, dmixed.FitConvergenceWarning) for w in caught)
    if newton_first.converged:
        assert newton_first.llf == pytest.approx(best.llf, rel=1e-12, abs=0)
    else:
        assert said and newton_first.llf < best.llf


def test_a_fit_held_where_the_factor_is_not_resolved_says_so():
    """Every parameter held (``free`` all 0) at a start where ``X'V*⁻¹X`` is singular to
    the rounding of its sums: the fit reports its start, whose llf is off by up to the
    factor's share (3.1e-3 here against the rows in extended precision), and warns that
    the float64 sums do not resolve it there; at a moderate start it does not."""
    model = _far_off_model()
    with pytest.warns(dmixed.PrecisionWarning, match="ended at its start.*off by about"):
        model.fit(free=[0, 0, 0], start_params=[10.0, 0.0, 1.0], method="lbfgs")
    with warnings.catch_warnings():
        warnings.simplefilter("error", dmixed.PrecisionWarning)
        model.fit(free=[0, 0, 0], start_params=[10.0, 0.0, 1e-12], method="lbfgs")


@pytest.mark.parametrize(
    "method", ["nm", "powell", "newton", "ncg", "cg", "lbfgs", ["nm", "bfgs"], "Nelder-Mead"]
)
def test_statsmodels_method_names(method):
    """statsmodels' optimizer names (and lists of them) reach the same optimum; the
    gradient-free ones get no gradient (scipy would warn), "newton" is exact Newton."""
    df = make_data(n_groups=30, seed=3)
    model = dmixed.mixedlm("y ~ x1", df, groups="g", re_formula="1 + x1")
    ref = model.fit()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy's "does not use gradient information" too
        res = model.fit(method=method)
    assert res.converged
    assert res.llf == pytest.approx(ref.llf, rel=1e-10)
    np.testing.assert_allclose(res.cov_re, ref.cov_re, rtol=1e-5)
    first = method if isinstance(method, str) else method[0]
    assert res.optimizer_methods[0] == first


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_offered_reaches_the_optimum(method):
    """Each name the method check accepts (the error lists them) runs and reaches the
    default fit's optimum: scipy calls some callbacks with more than the point
    (``trust-constr``: the point and its state), and some take the limit under another
    name (``tnc``: ``maxfun``; scipy warns of an option it does not know)."""
    df = make_data(n_groups=30, seed=3)
    model = dmixed.mixedlm("y ~ x1", df, groups="g", re_formula="1 + x1")
    ref = model.fit()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = model.fit(method=method)
    assert res.converged
    assert res.llf == pytest.approx(ref.llf, rel=1e-10)


def test_newton_needs_every_parameter_free():
    df = make_data(n_groups=30, seed=3)
    model = dmixed.mixedlm("y ~ x1", df, groups="g", re_formula="1 + x1")
    with pytest.raises(dmixed.SpecError, match="method='newton' moves every parameter"):
        model.fit(method="newton", free=[1, 0, 1])
    with pytest.raises(dmixed.SpecError, match="empty list"):
        model.fit(method=[])


def test_prefetch_evaluates_the_two_starts_in_one_round_trip(monkeypatch):
    """An engine that maps several Λ at once (``steps``, a Dask cluster's) gets the
    moment and default starts in one call; the fit is the same bit for bit (as the
    general path's: such an engine takes no lean steps, dmixed.fit.lean)."""
    from dmixed.fit.lean import LeanSteps

    df = make_data(n_groups=300, seed=8)
    with warnings.catch_warnings(), monkeypatch.context() as patch:
        warnings.simplefilter("ignore")
        patch.setattr(LeanSteps, "of", classmethod(lambda cls, obj: None))
        plain = dmixed.mixedlm("y ~ x1 + x2", df, groups="g", re_formula="1 + x1")
        ref = plain.fit()
        model = dmixed.mixedlm("y ~ x1 + x2", df, groups="g", re_formula="1 + x1")
    engine = model.statistics().engine
    calls = []

    def steps(lams, q):
        calls.append(len(lams))
        return [engine.step(lam, q) for lam in lams]

    engine.steps = steps
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit()
    assert calls == [2]
    assert res.llf == ref.llf and res.n_evals == ref.n_evals
    np.testing.assert_array_equal(res.params, ref.params)
    np.testing.assert_array_equal(res.bse, ref.bse)


@pytest.mark.parametrize(
    "values",
    [[0.5], [-3.0, 2.0, -0.0], [1.0, np.nan, -2.0], [np.nan, 1.0], [np.inf, -np.inf], [-0.0]],
)
def test_largest_magnitude_is_numpys_including_nan(values):
    """The score's norm on Python floats: numpy's ``np.abs(g).max()``, a NaN anywhere
    giving NaN (``max`` alone would skip one that is not first)."""
    expected = float(np.abs(np.array(values)).max())
    got = largest_magnitude(values)
    assert np.array(got).tobytes() == np.array(expected).tobytes()


@pytest.mark.parametrize(
    "values", [[], [0.5, 2.0], [1e-3], [2e-3, 5.0], [np.nan], [3.0, np.nan], [-1.0]]
)
@pytest.mark.parametrize("bound", [1e-3, 0.9, 1.0, 2.0])
def test_all_above_is_numpys_minimum_with_initial_one(values, bound):
    expected = bool(np.array(values, dtype=np.float64).min(initial=1.0) > bound)
    assert all_above(values, bound) is expected


def _tiny_noise_frame() -> pd.DataFrame:
    """A random intercept and slope whose residual noise (sd 1e-4) is tiny next to the
    groups' effects (sd 2 and 1): Ψ* = Ψ/σ² near 1e8 at the optimum."""
    rng = np.random.default_rng(8)
    g = np.repeat(np.arange(60), 10)
    x = rng.normal(size=g.size)
    for sd_e in (1e-2, 1e-3, 1e-4):  # the third draw: the data the fault was found on
        u = rng.multivariate_normal([0, 0], [[4.0, 1.8], [1.8, 1.0]], size=60)
        y = 1.0 + 0.5 * x + u[g, 0] + u[g, 1] * x + sd_e * rng.normal(size=g.size)
    return pd.DataFrame({"g": g, "x": x, "y": y})


def test_a_fit_whose_quasi_newton_stops_far_out_on_a_flat_variance_reaches_the_maximum():
    """BFGS stops on such data where its gradient test passes (|∂ℓ/∂x| tiny at x near
    1e4) with ℓ still ~170 below the maximum; the Newton polish, ended by its own
    tests and not by a handful of steps, must reach it: a fit started from the
    estimates does not rise, and the fit is reported converged there (with six polish
    steps it stopped 30 units short and said converged)."""
    model = MixedLM.from_formula("y ~ x", _tiny_noise_frame(), groups="g", re_formula="1 + x")
    # σ̂² ~ 1e-8 next to y's spread of ~2: the fit warns how well it is resolved
    with pytest.warns(dmixed.PrecisionWarning):
        res = model.fit()
    with pytest.warns(dmixed.PrecisionWarning):
        again = model.fit(start_params=res.params_object)
    assert res.converged and again.converged
    assert again.llf - res.llf <= 1e-7 * abs(res.llf)
    # the maximum statsmodels' estimate leads to (3419.3076…; statsmodels itself stops
    # at 3408.89 there)
    assert res.llf > 3419.30


#: ℓ's maximum on :func:`_tiny_noise_frame` (REML; reached from statsmodels' estimate)
_TINY_NOISE_TOP = 3419.307617680642


@pytest.mark.parametrize("maxiter", [5, 10, 15, 20, 25, 30, 40, 60, 100])
def test_a_fit_cut_short_by_maxiter_is_converged_only_at_the_maximum(maxiter):
    """``maxiter`` ends the iterations before the polish's tests do: the gradient test
    alone (1.7e-8 far out on the flat variance) said converged at ℓ 80 and 176 units
    below the maximum (maxiter 5 and 30).  Converged now means a Newton step from the
    estimates promises ℓ no rise above ``converged_rise``; a fit that is not says so."""
    model = MixedLM.from_formula("y ~ x", _tiny_noise_frame(), groups="g", re_formula="1 + x")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = model.fit(maxiter=maxiter)
    convergence = [w for w in caught if issubclass(w.category, FitConvergenceWarning)]
    if res.converged:
        assert res.llf >= _TINY_NOISE_TOP - 1e-6
        assert not convergence
    else:
        assert res.llf < _TINY_NOISE_TOP - 1e-7
        assert any("promises llf a rise" in str(w.message) for w in convergence)
    if maxiter >= 60:  # enough iterations: the polish ends on its tests at the maximum
        assert res.converged


def test_the_polish_cut_by_its_count_is_judged_by_the_newton_decrement(monkeypatch, tmp_path):
    """With six polish steps (the bound before 585f8c8) the fit stops 30 units below
    the maximum with a gradient under the floor: not converged, and the warning gives
    the rise a Newton step still promises (the record's ``final_rise``)."""
    monkeypatch.setattr(DEFAULTS, "polish_steps", 6)
    model = MixedLM.from_formula("y ~ x", _tiny_noise_frame(), groups="g", re_formula="1 + x")
    # also warned: how well σ̂² ~ 1e-8 is resolved next to y's spread of ~2, and the
    # Hessian where the steps were cut short (not negative definite there)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = model.fit()
    kinds = {w.category for w in caught}
    assert kinds <= {FitConvergenceWarning, dmixed.PrecisionWarning, dmixed.SingularHessianWarning}
    assert any("promises llf a rise" in str(w.message) for w in caught)
    assert not res.converged
    assert res.llf < _TINY_NOISE_TOP - 1.0
    # the record's judge: a Newton step promises more than converged_rise from there;
    # saved with the results
    assert res.optimizer.final_rise > DEFAULTS.converged_rise
    res.save(tmp_path / "out")
    back = dmixed.load(tmp_path / "out")
    assert back.optimizer.final_rise == res.optimizer.final_rise
    assert not back.converged


def test_polish_steps_zero_keeps_the_gradient_verdict(monkeypatch):
    """``polish_steps=0`` asks for no polish (the bootstrap's refits judge their Newton
    steps themselves): no Hessian is made to judge the end, the gradient test decides."""
    monkeypatch.setattr(DEFAULTS, "polish_steps", 0)
    model = MixedLM.from_formula("y ~ x", _tiny_noise_frame(), groups="g", re_formula="1 + x")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit()
    assert res.converged
    assert np.isnan(res.optimizer.final_rise)


def _tiny_noise_frame_with_z() -> pd.DataFrame:
    """:func:`_tiny_noise_frame` and a column z on which no slope varies: a random slope
    on it leaves Ψ* singular or nearly so at the optimum, not settled at zero."""
    df = _tiny_noise_frame()
    df["z"] = np.random.default_rng(3).normal(size=len(df))
    return df


#: ℓ's maxima on :func:`_tiny_noise_frame_with_z` with ``re_formula="1 + x + z"`` (ML,
#: REML): Ψ* singular there (its smallest eigenvalue ~1e-17 next to 2e7 and 5e8), z's
#: effect a multiple of the others' a few 1e-6 of theirs; a fit from near the nested
#: model's optimum reached 3422.9600714 and 3420.7232852, the steps on the face 6e-4 more
_TINY_Z_TOP = {False: 3422.96076, True: 3420.72391}


@pytest.mark.parametrize("reml", [False, True])
def test_a_fit_that_ends_at_a_singular_psi_reaches_the_maximum_on_its_face(reml):
    """BFGS's gradient test passes near a singular Ψ* (its smallest eigenvalue 2e-10
    next to 1e8, not settled at zero): in the square-root packing the gradient vanishes
    with the factor's small column whatever ℓ does along the face of the cone.  ML was
    reported converged 41.4 units below the maximum (gradient 8.2e-6, under the floor);
    REML ended 18.1 below (not converged).  The Newton steps on the face (the matrices of
    Ψ*'s rank, the null space moving too) reach the maximum, and the verdict is theirs:
    a step promises ℓ no rise along the face or into the cone above ``converged_rise``, or
    none of its points has ℓ higher (on these data ℓ is resolved to about 1e-5, and the
    promise at the maximum is 1e-7 to 2e-6 as the last bits of the sums go)."""
    model = MixedLM.from_formula(
        "y ~ x", _tiny_noise_frame_with_z(), groups="g", re_formula="1 + x + z"
    )
    # σ̂² ~ 1e-8 next to y's spread, and a singular Ψ*: both warned
    with pytest.warns(dmixed.PrecisionWarning), pytest.warns(BoundaryWarning):
        res = model.fit(reml=reml)
    assert res.converged
    assert res.llf > _TINY_Z_TOP[reml] - 1e-4
    with pytest.warns(dmixed.PrecisionWarning), pytest.warns(BoundaryWarning):
        again = model.fit(reml=reml, start_params=res.params_object)
    assert again.converged
    # ℓ is resolved to about 1e-5 on these data (benchmarks/RESULTS.md, review-s35)
    assert again.llf - res.llf <= 1e-7 * abs(res.llf)


def test_a_fit_cut_short_at_a_singular_psi_is_not_converged():
    """Cut short by maxiter at a singular Ψ* not settled at zero, the fit is judged by
    the Newton step on the face of the cone (it was reported converged 19.7 units below
    the fit with maxiter 5000; then not converged for want of a Newton step, the
    promised rise NaN): the step promises a rise above ``converged_rise``, so the fit
    says it stopped short."""
    model = MixedLM.from_formula(
        "y ~ x", _tiny_noise_frame_with_z(), groups="g", re_formula="1 + x + z"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = model.fit(maxiter=100)
    assert res.llf < 3402.65 - 10
    assert not res.converged
    # maxiter leaves the steps on the face none: their test alone, at the fit's end
    assert res.optimizer.final_rise > DEFAULTS.converged_rise
    assert any("promises llf a rise" in str(w.message) for w in caught)


def _random_slope_frame() -> pd.DataFrame:
    """80 groups of 12, a random intercept and slope (variances 1 and 0.5, covariance
    0.3) and unit noise: an ordinary fit."""
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(80), 12)
    x = rng.normal(size=g.size)
    u = rng.multivariate_normal([0, 0], [[1.0, 0.3], [0.3, 0.5]], size=80)
    y = 1 + 0.5 * x + u[g, 0] + u[g, 1] * x + rng.normal(size=g.size)
    return pd.DataFrame({"g": g, "x": x, "y": y})


@pytest.mark.parametrize(
    ("method", "maxiter", "reml", "use_sqrt"),
    [
        ("nm", 20, False, True),
        ("lbfgs", 5, False, True),
        ("lbfgs", 5, True, True),
        ("nm", 30, False, True),
        ("powell", 2, True, False),
    ],
)
def test_a_masked_fit_cut_short_by_maxiter_is_judged_by_the_newton_decrement(
    method, maxiter, reml, use_sqrt
):
    """``free=`` (the covariance held at 0) runs no polish; a method ended by
    ``maxiter`` was judged by the gradient floor alone and reported converged 3.7e-5
    (Nelder–Mead, 20 iterations) and 4.6e-6 (L-BFGS, 5) below the maximum.  Now the
    Newton step in the free packed coordinates judges: converged only where it promises
    ℓ no rise above ``converged_rise`` (Nelder–Mead with 30 iterations ends 1.1e-7 below
    the maximum: converged); the promise is the real gap, in the square-root packing and
    in the plain one (Powell, 2 iterations: 8.1e-6 below)."""
    model = MixedLM.from_formula(
        "y ~ x", _random_slope_frame(), groups="g", re_formula="1 + x", use_sqrt=use_sqrt
    )
    free = [1.0, 0.0, 1.0]
    top = model.fit(reml=reml, free=free, maxiter=5000)
    assert top.converged and np.isnan(top.optimizer.final_rise)  # ended on its tests
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = model.fit(reml=reml, free=free, method=method, maxiter=maxiter)
    gap = top.llf - res.llf
    rise = res.optimizer.final_rise
    assert abs(rise - gap) <= 0.05 * gap
    convergence = [w for w in caught if issubclass(w.category, FitConvergenceWarning)]
    if gap > DEFAULTS.converged_rise:
        assert not res.converged
        assert any("promises llf a rise" in str(w.message) for w in convergence)
    else:
        assert res.converged and not convergence


def _zero_slopes_frame() -> pd.DataFrame:
    """50 groups of 6, a random intercept only (the slopes on x and z truly zero)."""
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(50), 6)
    x, z, u = rng.normal(size=g.size), rng.normal(size=g.size), rng.normal(size=50)
    return pd.DataFrame({"g": g, "x": x, "z": z, "y": 1 + x + u[g] + rng.normal(size=g.size)})


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("method", [None, "lbfgs", "cg"])
def test_a_fit_from_a_rank_one_start_leaves_its_face_for_the_maximum(reml, method):
    """Started at Ψ* of rank one, the square-root packing's gradient vanishes with the
    factor's zero columns: the quasi-Newton methods end where they started, on that face,
    0.18 (REML) and 0.16 (ML) below the maximum (of rank two), where ℓ rises into the cone.
    That point was reported converged, then not converged; now the fit leaves the face
    into the cone, runs its methods again and reaches the maximum (a fit that may not
    leave it: :func:`test_a_fit_left_on_a_face_says_where_it_ended`)."""
    model = MixedLM.from_formula("y ~ x", _zero_slopes_frame(), groups="g", re_formula="1 + x + z")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BoundaryWarning)
        top = model.fit(reml=reml)
        start = MixedLMParams.from_components(fe_params=np.zeros(2), cov_re=np.ones((3, 3)))
        res = model.fit(reml=reml, start_params=start, method=method)
    assert top.converged and res.converged
    assert abs(res.llf - top.llf) <= 1e-8


def _three_groups_frame() -> pd.DataFrame:
    """3 groups of 4 rows, a random intercept only (the slopes on x and z truly zero)."""
    rng = np.random.default_rng(5)
    rng.normal(size=61)  # the draws of the data the fault was found on
    g = np.repeat(np.arange(3), 4)
    x, z = rng.normal(size=12), rng.normal(size=12)
    y = 1 + x + rng.normal(size=3)[g] + rng.normal(size=12)
    return pd.DataFrame({"g": g, "x": x, "z": z, "y": y})


def test_a_face_step_wholly_outside_the_cone_is_judged_on_the_smaller_face():
    """Nelder-Mead ends 5.7e-7 below the maximum (of rank one) with Ψ*'s eigenvalues
    5e-13, 3e-7 and 6.6: the face of rank two keeps the 3e-7, and every point of its
    Newton step is outside the cone; its promise (0.18) was reported as the rise left.
    The face with the eigenvalues that step drives below zero set to zero judges: its
    promise, with ℓ's rise at the projection, is the real gap."""
    model = MixedLM.from_formula("y ~ x", _three_groups_frame(), groups="g", re_formula="1 + x + z")
    with warnings.catch_warnings():
        # three groups: a singular Ψ* and a Hessian not negative definite, both warned
        warnings.simplefilter("ignore", BoundaryWarning)
        warnings.simplefilter("ignore", dmixed.SingularHessianWarning)
        top = model.fit(reml=False, check_nobs="ignore")
        res = model.fit(reml=False, method="nm", check_nobs="ignore")
    assert top.converged
    gap = top.llf - res.llf
    assert 0.0 < gap < DEFAULTS.converged_rise
    assert res.converged
    assert res.optimizer.final_rise == pytest.approx(gap, rel=0.05)


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("method", [None, "bfgs", "lbfgs", "cg", "newton"])
@pytest.mark.parametrize("start", ["zero", "e1e1'"])
def test_a_fit_from_a_start_of_psi_zero_reaches_the_maximum(reml, method, start):
    """From Ψ* = 0 the quasi-Newton methods move the intercept's variance alone (the
    square-root packing's gradient vanishes with the factor's zero columns), and the
    variances of x and z were settled at zero, each on its one-sided slope: the fit was
    reported converged 0.43 below the maximum (REML −455.6376 against −455.2045; ML
    −452.7719 against −452.3431), as was Newton's from Ψ* = e1e1'.  ℓ rises there by
    turning Ψ*'s range into the settled coordinates (the cross terms) and then into the
    cone: the fit leaves the face and runs its methods again, and reaches the maximum."""
    model = MixedLM.from_formula("y ~ x", _zero_slopes_frame(), groups="g", re_formula="1 + x + z")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BoundaryWarning)
        top = model.fit(reml=reml)
        psi = np.zeros((3, 3)) if start == "zero" else np.diag([1.0, 0.0, 0.0])
        res = model.fit(
            reml=reml,
            start_params=MixedLMParams.from_components(fe_params=np.zeros(2), cov_re=psi),
            **({} if method is None else {"method": method}),
        )
    assert top.converged
    assert res.converged
    assert abs(res.llf - top.llf) <= 1e-8


@pytest.mark.parametrize("start", ["zero", "11'"])
def test_a_fit_left_on_a_face_says_where_it_ended(monkeypatch, start):
    """Where the fit may not leave a singular Ψ* from which ℓ rises (no restarts left),
    it is not converged, and the warning says so: the rank of the final Ψ*, the rise
    the step off its face promises, and that a start of full rank may reach the
    maximum (it said "a Newton step from the estimates ... maxiter, or a flat
    likelihood in these parameters' units")."""
    monkeypatch.setattr(optimize, "FACE_RESTARTS", 0, raising=False)
    model = MixedLM.from_formula("y ~ x", _zero_slopes_frame(), groups="g", re_formula="1 + x + z")
    psi = np.zeros((3, 3)) if start == "zero" else np.ones((3, 3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = model.fit(
            start_params=MixedLMParams.from_components(fe_params=np.zeros(2), cov_re=psi)
        )
    assert not res.converged
    assert res.optimizer.final_rise > DEFAULTS.converged_rise
    (message,) = [str(w.message) for w in caught if issubclass(w.category, FitConvergenceWarning)]
    assert "ended at a singular Psi* (rank 1 of 3)" in message
    assert f"the start's Psi* has rank {0 if start == 'zero' else 1} of 3" in message
    assert "a start with a full-rank Psi* may reach the maximum" in message
    assert "maxiter" not in message


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("method", [None, "lbfgs"])
@pytest.mark.parametrize("start", ["e1e1'", "11'"])
def test_a_masked_fit_from_a_rank_one_start_reaches_the_constrained_maximum(reml, method, start):
    """``free=`` holding the x-z entry of the square-root factor: from Ψ* of rank one the
    factor's zero columns stay zero (ℓ's gradient vanishes there), and the masked fit,
    which runs no polish, was reported converged 1.2e-3 (REML) and 1.1e-3 (ML) below the
    constrained maximum.  ℓ's curvature along a zero column's free entries is 2·∂ℓ/∂Ψ*
    on their rows: where it has a positive eigenvalue the fit leaves the column's zero
    and runs its methods again."""
    model = MixedLM.from_formula("y ~ x", _zero_slopes_frame(), groups="g", re_formula="1 + x + z")
    held = np.array([[1.0, 1, 1], [1, 1, 0], [1, 0, 1]])
    free = MixedLMParams.from_components(fe_params=np.ones(2), cov_re=held)
    psi = np.diag([1.0, 0.0, 0.0]) if start == "e1e1'" else np.ones((3, 3))
    options = {} if method is None else {"method": method}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BoundaryWarning)
        top = model.fit(reml=reml, free=free, **options)
        res = model.fit(
            reml=reml,
            free=free,
            start_params=MixedLMParams.from_components(fe_params=np.zeros(2), cov_re=psi),
            **options,
        )
    assert top.converged and res.converged
    assert abs(res.llf - top.llf) <= 1e-8


def _zero_slope_and_component_frame(seed: int = 0) -> pd.DataFrame:
    """40 groups of 5, a random intercept (the slope on x truly zero) and a 3-level
    factor ``c`` whose variance component is truly zero."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(40), 5)
    x, z = rng.normal(size=g.size), rng.normal(size=g.size)
    b = rng.normal(size=(40, 3))[:, 0]
    c = rng.integers(0, 3, g.size)
    rng.normal(size=(40, 3))  # the draws of the data the fault was found on
    y = 1 + 0.5 * x - 0.3 * z + b[g] + rng.normal(size=g.size)
    return pd.DataFrame({"g": g, "x": x, "z": z, "y": y, "c": c})


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("method", [None, "lbfgs", "nm"])
def test_a_settled_component_is_held_in_the_face_verdict(reml, method):
    """Ψ* singular (the slope's variance) and the component's variance settled at zero
    on its one-sided slope: the Newton step along the face followed that slope below zero
    and promised a rise of 1.2 (REML) that no point of the parameter space has; the fit
    at the maximum (the model without the component's) was reported not converged."""
    frame = _zero_slope_and_component_frame()
    model = MixedLM.from_formula(
        "y ~ x + z", frame, groups="g", re_formula="1 + x", vc_formula={"c": "0 + C(c)"}
    )
    plain = MixedLM.from_formula("y ~ x + z", frame, groups="g", re_formula="1 + x")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = model.fit(reml=reml, **({} if method is None else {"method": method}))
        top = plain.fit(reml=reml)
    assert list(res.optimizer.boundary) == ["vc:0"]
    assert top.converged and res.converged
    assert res.optimizer.final_rise <= DEFAULTS.converged_rise
    assert not [w for w in caught if issubclass(w.category, FitConvergenceWarning)]
    assert abs(res.llf - top.llf) <= 1e-6


def test_a_fit_that_maxiter_ended_at_a_singular_psi_says_maxiter_ended_it():
    """A fit at a singular Ψ* (a random slope whose variance settles at zero) that
    maxiter cut short is judged by the cut-short Newton step, not by a step on the face:
    its warning says that maxiter ended it (the face's wording said "the maximum is not
    there", which a longer fit contradicts: it converges at the same llf)."""
    frame = _zero_slope_and_component_frame(seed=1)
    model = MixedLM.from_formula(
        "y ~ x + z", frame, groups="g", re_formula="1 + x", vc_formula={"c": "0 + C(c)"}
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = model.fit(maxiter=8)
    assert not res.converged
    messages = [str(w.message) for w in caught if issubclass(w.category, FitConvergenceWarning)]
    assert any(
        "maxiter (8) ended the iterations at a singular Psi* (rank 1 of 2)" in m for m in messages
    )
    assert not any("the maximum is not there" in m for m in messages)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = model.fit()
    assert full.converged
    assert abs(full.llf - res.llf) < 1e-8


@pytest.mark.parametrize("method", ["bfgs", "lbfgs", "cg", "nm", "powell", "newton", None])
def test_maxiter_0_gives_the_results_at_the_start_for_every_method(method):
    """``maxiter=0`` left BFGS, CG and Newton at the start (``n_iter`` 0), but L-BFGS-B
    and Powell made one iteration and Nelder-Mead moved to its simplex's best vertex.
    Now every method, and the default list, gives the results at the start: no
    iteration, the start's log-likelihood, standard errors, not converged (as BFGS),
    with one warning (the default list's methods were each tried and warned of)."""
    rng = np.random.default_rng(0)
    n = 200
    df = pd.DataFrame(
        {"y": rng.normal(size=n), "x": rng.normal(size=n), "g": np.repeat(np.arange(20), 10)}
    )
    model = dmixed.mixedlm("y ~ x", df, groups="g")
    kw = {} if method is None else {"method": method}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = model.fit(maxiter=0, **kw)
    with warnings.catch_warnings(record=True) as caught_bfgs:
        warnings.simplefilter("always")
        ref = model.fit(maxiter=0, method="bfgs")
    assert res.n_iter == 0 and not res.converged
    assert [h["method"] for h in res.fit_history] == ["final"]
    np.testing.assert_array_equal(res.packed_params, ref.packed_params)
    assert res.llf == ref.llf
    np.testing.assert_allclose(res.bse, ref.bse, rtol=1e-12)
    assert np.all(np.isfinite(res.bse))
    last = [str(w.message) for w in caught if issubclass(w.category, FitConvergenceWarning)]
    assert last[-1] == str(caught_bfgs[-1].message)
    assert last[-1].startswith("the optimizer did not converge")
    # no retry with the next method of the list: none would iterate either
    assert not [m for m in last if m.startswith("retrying")]
    assert len(last) == 1
