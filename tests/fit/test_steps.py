"""dmixed.fit.steps: the options of a fit checked before its data pass."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest

import dmixed
from dmixed.fit.steps import FIT_SETTINGS, STATSMODELS_DEFAULTS, check_statsmodels_options

from .._synth import make_data


@pytest.fixture(scope="module")
def model():
    return dmixed.mixedlm("y ~ x1", make_data(n_groups=30, seed=5), groups="g", re_formula="1 + x1")


def test_statsmodels_options_at_their_defaults_are_the_plain_fit(model):
    """Code written for statsmodels passes ``niter_sa=0, do_cg=True, fe_pen=None,
    cov_pen=None`` (its defaults): the same fit, where it was a TypeError."""
    plain = model.fit()
    given = model.fit(niter_sa=0, do_cg=True, fe_pen=None, cov_pen=None)
    assert given.llf == plain.llf
    np.testing.assert_array_equal(given.params, plain.params)


@pytest.mark.parametrize(
    ("name", "value"), [("niter_sa", 5), ("do_cg", False), ("fe_pen", object()), ("cov_pen", 1.0)]
)
def test_other_values_are_refused_naming_the_option(model, name, value):
    with pytest.raises(dmixed.SpecError, match=rf"fit\({name}=.* is not supported"):
        model.fit(**{name: value})


def test_every_option_has_a_default_and_a_reason():
    for name, (default, why) in STATSMODELS_DEFAULTS.items():
        check_statsmodels_options(**{name: default})
        assert why


def test_a_start_that_is_not_finite_is_named_as_given(model):
    """The refusal quoted the optimizer's rescaled start ([nan, 0.0, 4.0] for the
    caller's [nan, 0, 1]); it names the caller's position and value."""
    with pytest.raises(dmixed.SpecError, match=r"not finite \(\[0\] = nan\)"):
        model.fit(start_params=[np.nan, 0.0, 1.0])
    with pytest.raises(dmixed.SpecError, match=r"not finite \(\[4\] = inf\)"):
        model.fit(start_params=[1.0, 2.0, 1.0, 0.0, np.inf])


def test_a_free_pattern_of_a_full_covariance_frees_every_entry_of_it():
    """statsmodels reads ``free`` in the plain packing: ``cov_re`` all ones frees every
    entry of Ψ* whatever ``use_sqrt`` (its Cholesky factor would have a zero diagonal and
    hold that entry at its start), and the variance component alone is held."""
    df = make_data(n_groups=30, seed=5, vc_sd=0.5)
    model = dmixed.mixedlm(
        "y ~ x1", df, groups="g", re_formula="1 + x1", vc_formula={"sub": "0 + C(sub)"}
    )
    params = dmixed.MixedLMParams
    free = params.from_components(fe_params=np.ones(2), cov_re=np.ones((2, 2)), vcomp=[0.0])
    start = params.from_components(fe_params=np.zeros(2), cov_re=np.eye(2) / 2, vcomp=[0.4])
    res = model.fit(free=free, start_params=start)
    assert res.vcomp[0] / res.scale == pytest.approx(0.4, rel=1e-12)
    held = params.from_components(
        fe_params=res.fe_params.to_numpy(), cov_re=res.cov_re.to_numpy() / res.scale, vcomp=[0.4]
    )
    _, score_cov_re, _ = model.score_full(held, calc_fe=False)
    np.testing.assert_allclose(score_cov_re, 0, atol=1e-4)


@pytest.mark.parametrize("off", [0.0, 0.3])
def test_a_masked_fit_in_the_plain_packing_that_stops_short_goes_on_with_bfgs(off):
    """``use_sqrt=False`` with ``free`` (the plain packing, L-BFGS-B with its bounds):
    every entry of Ψ* free and the variance component held, L-BFGS-B stopped after a
    few iterations with no reduction left (its line search cut at the edge of the
    positive definite Ψ*) and the fit did not converge; BFGS from there reaches the
    optimum of the square-root packing (statsmodels' L-BFGS, from the correlated start,
    ends at a Ψ* that is not positive semi-definite)."""
    df = make_data(n_groups=40, seed=5, vc_sd=0.5)
    kw = {"groups": "g", "re_formula": "1 + x1", "vc_formula": {"sub": "0 + C(sub)"}}
    params = dmixed.MixedLMParams
    free = params.from_components(fe_params=np.ones(2), cov_re=np.ones((2, 2)), vcomp=[0.0])
    cov_re = np.array([[1.0, off], [off, 0.5 + 0.5 * (off == 0.0)]])
    start = params.from_components(fe_params=np.zeros(2), cov_re=cov_re, vcomp=[1.0 - 2 * off])
    ref = dmixed.mixedlm("y ~ x1", df, **kw).fit(free=free, start_params=start)
    with pytest.warns(dmixed.FitConvergenceWarning, match="retrying the optimization with bfgs"):
        res = dmixed.mixedlm("y ~ x1", df, use_sqrt=False, **kw).fit(free=free, start_params=start)
    assert res.converged
    assert res.llf == pytest.approx(ref.llf, rel=1e-10)
    np.testing.assert_allclose(res.cov_re / res.scale, ref.cov_re / ref.scale, rtol=1e-5)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("maxiter", -1, "maxiter must be a non-negative integer, got -1"),
        ("maxiter", 2.5, r"maxiter must be a non-negative integer, got 2.5 \(float\)"),
        ("maxiter", "10", r"maxiter must be a non-negative integer, got '10' \(str\)"),
        ("maxiter", None, r"maxiter must be a non-negative integer, got None"),
        ("maxiter", True, r"maxiter must be a non-negative integer, got True \(bool\)"),
        ("gtol", -1, "gtol must be a finite number >= 0, got -1"),
        ("gtol", float("nan"), "gtol must be a finite number >= 0, got nan"),
        ("gtol", float("inf"), "gtol must be a finite number >= 0, got inf"),
        ("gtol", "1e-8", "gtol must be a finite number >= 0, got '1e-8'"),
        ("reml", "yes", "reml must be True or False, not 'yes'"),
        ("reml", "no", "reml must be True or False, not 'no'"),
        ("reml", None, "reml must be True or False, not None"),
        ("reml", 2, "reml must be True or False, not 2"),
        ("skip_hessian", "no", "skip_hessian must be True or False, not 'no'"),
        ("progress", "no", r"progress must be True or False, not 'no' \(str\)"),
        ("full_output", 1, r"full_output must be True or False, not 1 \(int\)"),
    ],
)
def test_bad_settings_are_refused_before_the_data_pass(model, name, value, message):
    """A count, a tolerance or a switch of the wrong kind: a SpecError naming it, where
    ``reml="no"`` fitted REML (a true string), ``maxiter=-1`` ran no iteration and
    ``maxiter=2.5`` failed inside the Newton steps with numpy's TypeError."""
    with pytest.raises(dmixed.SpecError, match=message):
        model.fit(**{name: value})


def test_numpy_scalars_are_settings_as_python_ones(model):
    """numpy's integers, floats and bools are read as Python's: the same fit."""
    plain = model.fit(reml=False, maxiter=200, gtol=1e-7)
    given = model.fit(reml=np.False_, maxiter=np.int64(200), gtol=np.float64(1e-7))
    assert given.llf == plain.llf
    np.testing.assert_array_equal(given.params, plain.params)
    assert given.fit_options["maxiter"] == 200 and type(given.fit_options["maxiter"]) is int


def _split_fits():
    """A fit of the first 1,800 of 3,000 rows, and the model of all of them."""
    import pandas as pd

    rng = np.random.default_rng(2)
    g, x1 = rng.integers(0, 120, 3000), rng.normal(size=3000)
    y = 1 + 0.5 * x1 + rng.normal(size=120)[g] + rng.normal(0, 0.3, 120)[g] * x1
    df = pd.DataFrame({"y": y + rng.normal(size=3000), "x1": x1, "g": g})
    part = dmixed.mixedlm("y ~ x1", df.iloc[:1800], groups="g", re_formula="1 + x1").fit()
    return part, dmixed.mixedlm("y ~ x1", df, groups="g", re_formula="1 + x1")


def test_a_given_start_takes_newton_steps_first_as_moment_estimates_do():
    """``start_params`` without ``method`` (a previous fit's estimates, as ``dmixed
    update`` passes them): Newton steps first, the route of a fit from moment estimates
    (it took BFGS: 12 iterations here, against 3); ``method`` named, or a ``free`` mask,
    keep their routes."""
    part, model = _split_fits()
    fresh = model.fit()
    warm = model.fit(start_params=part.packed_params)
    assert fresh.optimizer_methods == warm.optimizer_methods == ["newton"]
    assert warm.optimizer.n_iter <= fresh.optimizer.n_iter
    assert warm.llf >= fresh.llf - 1e-12 * abs(fresh.llf)
    np.testing.assert_allclose(warm.params, fresh.params, rtol=1e-7)
    named = model.fit(start_params=part.packed_params, method="bfgs")
    assert named.optimizer_methods == ["bfgs"]
    masked = model.fit(start_params=part.packed_params, free=np.ones(len(part.packed_params)))
    assert "newton" not in masked.optimizer_methods


def test_newton_steps_that_fall_short_are_recorded_alike_from_either_start(monkeypatch):
    """Newton steps first that do not reach the hand-over gradient (one step allowed
    here) are left out of ``optimizer_methods`` and kept in the history, from moment
    estimates and from a given start alike: the methods list the route that converged
    (BFGS, from where the Newton step stopped), the history and ``n_iter`` every step
    taken."""
    from dmixed.fit.summary import DEFAULTS

    part, model = _split_fits()
    monkeypatch.setattr(DEFAULTS, "newton_first_steps", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fits = [model.fit(), model.fit(start_params=part.packed_params)]
    for fit in fits:
        assert fit.optimizer_methods == ["bfgs"]
        route = [h["method"] for h in fit.optimizer.history[:-1]]
        assert route[0] == "newton" and set(route[1:]) == {"bfgs"}
        assert fit.optimizer.n_iter == len(route)


def test_start_params_is_the_first_positional_argument_as_in_statsmodels(model):
    """statsmodels' ``fit(start_params, reml, niter_sa, do_cg, fe_pen, cov_pen, free,
    full_output, method)``: ``fit(sp)`` was refused ("reml must be True or False") and
    ``fit(sp, False)`` could not say ML; both are statsmodels' fits now."""
    ml = model.fit(reml=False)
    start = ml.packed_params
    by_position = model.fit(start, False)
    by_keyword = model.fit(start_params=start, reml=False)
    assert not by_position.reml
    assert by_position.llf == by_keyword.llf
    np.testing.assert_array_equal(by_position.params, by_keyword.params)
    assert model.fit(start).reml
    free = np.ones(start.size)
    masked = model.fit(start, True, 0, True, None, None, free, False, "bfgs")
    assert masked.fit_options["method"] == "bfgs"
    assert masked.freepat is free


@pytest.mark.parametrize("first", [True, False, np.True_, np.False_])
def test_a_bool_first_is_refused_as_a_start_naming_reml(model, first):
    """``fit(False)`` written for dmixed's former order (reml first): a SpecError that
    says the first argument is start_params and to pass reml by keyword, before the
    data pass, not a fit of the wrong criterion or a message about packed vectors."""
    with pytest.raises(
        dmixed.SpecError, match=r"first argument is start_params.*reml=.* by keyword"
    ):
        model.fit(first)


def test_dmixed_settings_are_keyword_only(model):
    """Beyond statsmodels' nine positions, a setting must be named (statsmodels takes
    the rest as ``**fit_kwargs``): a tenth positional argument is a TypeError."""
    with pytest.raises(TypeError):
        model.fit(None, True, 0, True, None, None, None, False, None, 500)


def test_statsmodels_fit_kwargs_disp_callback_retall_are_taken(model, capsys):
    """statsmodels passes ``fit(**fit_kwargs)`` to scipy: ``disp``, ``callback`` and
    ``retall`` were TypeErrors; now the same fit, ``disp=False`` silent."""
    plain = model.fit()
    capsys.readouterr()
    for kw in ({"disp": False}, {"retall": True}, {"retall": False}, {"callback": None}):
        given = model.fit(**kw)
        assert given.llf == plain.llf
        np.testing.assert_array_equal(given.params, plain.params)
        assert not set(kw) & set(given.fit_options)
    assert capsys.readouterr().out == ""


def test_disp_prints_one_line_per_iteration_and_the_final_point(model, capsys):
    res = model.fit(disp=True)
    lines = capsys.readouterr().out.splitlines()
    hist = res.fit_history
    assert len(lines) == len(hist) == res.n_iter + 1
    for line, entry in zip(lines[:-1], hist[:-1], strict=True):
        assert line.startswith(f"iteration {entry['iteration']} ({entry['method']}): llf=")
        assert float(line.split("llf=")[1].split()[0]) == pytest.approx(entry["llf"], abs=1e-6)
    assert lines[-1].startswith("final: llf=")


@pytest.mark.parametrize("method", [None, "bfgs"])
def test_callback_receives_each_iterate_packed_as_the_model_packs(model, method):
    """One call per iteration (Newton steps and scipy's alike), with the iterate's
    packed covariance parameters in the model's scale: ``fit_history``'s points."""
    seen = []
    res = model.fit(method=method, callback=lambda p: seen.append(p.copy()))
    assert len(seen) == res.n_iter > 0
    for got, entry in zip(seen, res.fit_history[:-1], strict=True):
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, entry["params"])


def test_callback_of_a_plain_packing_model_gets_the_plain_packing():
    """``use_sqrt=False``: the optimizer iterates on the factor (its log packs so), the
    callback receives Ψ* itself, packed as ``packed_params``."""
    df = make_data(n_groups=30, seed=5)
    model = dmixed.mixedlm("y ~ x1", df, groups="g", re_formula="1 + x1", use_sqrt=False)
    seen = []
    res = model.fit(callback=seen.append)
    assert len(seen) == res.n_iter > 0
    params = dmixed.MixedLMParams
    for got, entry in zip(seen, res.fit_history[:-1], strict=True):
        plain = params.from_packed(got, 0, 2, use_sqrt=False, has_fe=False)
        factor = params.from_packed(np.asarray(entry["params"]), 0, 2, True, has_fe=False)
        np.testing.assert_allclose(plain.cov_re, factor.cov_re, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"maxfun": 10}, r"unknown option 'maxfun': .* takes disp, callback, retall"),
        ({"factr": 1, "pgtol": 2}, r"unknown options 'factr', 'pgtol': .*own settings maxiter"),
        ({"disp": 1}, r"disp must be True or False, not 1"),
        ({"retall": "yes"}, r"retall must be True or False"),
        ({"callback": 3}, r"callback must be None or a function"),
    ],
)
def test_other_fit_kwargs_are_refused_naming_them(model, kw, message):
    with pytest.raises(dmixed.SpecError, match=message):
        model.fit(**kw)


@pytest.mark.parametrize("method", [None, "bfgs", "newton"])
def test_stop_iteration_from_the_callback_ends_the_fit_there(model, method):
    """scipy's convention on every route: a StopIteration from the callback ends the
    optimization at that iterate (it ended only the scipy method under way, and the
    Newton steps after it went on to a converged fit; from Newton steps it propagated).
    The fit returns that point, not converged, with a FitConvergenceWarning; a fit
    after it is the plain fit."""
    plain = model.fit(method=method)
    seen = []

    def stop_at_the_second(p):
        seen.append(p.copy())
        if len(seen) == 2:
            raise StopIteration

    with pytest.warns(dmixed.FitConvergenceWarning, match="callback raised StopIteration"):
        res = model.fit(method=method, callback=stop_at_the_second)
    assert len(seen) == 2 == res.n_iter
    assert not res.converged
    hist = res.fit_history
    assert [h["method"] for h in hist][-1] == "final"
    np.testing.assert_array_equal(hist[-1]["params"], hist[1]["params"])
    assert res.llf == pytest.approx(hist[1]["llf"], rel=1e-12)
    assert res.llf < plain.llf
    again = model.fit(method=method)
    assert again.llf == plain.llf
    np.testing.assert_array_equal(again.params, plain.params)
    assert again.converged


def test_the_settings_listed_for_an_unknown_option_are_fits_own():
    """``FIT_SETTINGS`` (quoted where an unknown keyword is refused) is a list kept by
    hand beside ``fit``'s signature: it names its keyword-only settings, in order."""
    params = inspect.signature(dmixed.MixedLM.fit).parameters.values()
    assert FIT_SETTINGS == tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY)
