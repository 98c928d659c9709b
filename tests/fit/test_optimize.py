"""The optimizer: quasi-Newton iterations handing over to the exact Newton polish."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import dmixed
from dmixed import BoundaryWarning, FitConvergenceWarning, MixedLM
from dmixed.fit.optimize import ProfiledObjective, maximize
from dmixed.fit.summary import DEFAULTS, OptSummary

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
    assert res.cov_re.iloc[0, 0] == 0.0
    assert res.fe_params.iloc[0] == pytest.approx(y.mean(), rel=1e-10)


@pytest.mark.parametrize("start", ["moment", "default"])
def test_every_round_trip_is_at_a_new_point(request, start):
    """Each engine step of a fit evaluates a point not evaluated before (the start
    selection, Newton steps and final checks reuse cached evaluations), and the fit
    reports them all in n_evals."""
    if start == "default":
        request.getfixturevalue("default_start")
    df = make_data(n_groups=500, seed=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = dmixed.mixedlm("y ~ x1 + x2", df, groups="g", re_formula="1 + x1")
    engine = model.statistics().engine
    seen = []
    original = engine.step

    def step(lam, q):
        seen.append(np.asarray(lam).tobytes())
        return original(lam, q)

    engine.step = step
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit()
    assert len(seen) == res.n_evals
    assert len(set(seen)) == len(seen)


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
    assert summary.n_iter == len(summary.history)
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
