"""MixedLM on arrays: boundary fits, bad input, weights, options, pickling."""

from __future__ import annotations

import math
import pickle
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

import dmixed
from dmixed import BoundaryWarning, MixedLM
from dmixed.errors import BadValuesError, DataError
from dmixed.stats.standardize import WEIGHT_SPAN_LOG2

from ._synth import design, dyestuff2_arrays, make_data, vc_dict


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_boundary_fit_ends_at_zero(seed, reml):
    y, g = dyestuff2_arrays(seed)
    with pytest.warns(BoundaryWarning, match="boundary"):
        res = MixedLM(y, np.ones((30, 1)), g).fit(reml=reml)
    assert res.converged
    assert abs(res.cov_re[0, 0]) <= 1e-8 * res.scale
    assert np.isfinite(res.llf)
    # fixed effect is the grand mean (GLS with V ∝ I), never a silent zero
    assert res.fe_params[0] == pytest.approx(y.mean(), rel=1e-10)
    assert np.isfinite(res.bse_fe[0]) and res.bse_fe[0] > 0
    # with the variance at 0 the model is OLS: scale is RSS / fac
    fac = 29 if reml else 30
    assert res.scale == pytest.approx(np.sum((y - y.mean()) ** 2) / fac, rel=1e-8)
    assert all(np.all(np.isfinite(v)) for v in res.random_effects.values())


def test_boundary_optimum_beats_any_interior_point():
    y, g = dyestuff2_arrays(0)
    with pytest.warns(BoundaryWarning):
        res = MixedLM(y, np.ones((30, 1)), g).fit()
    model = MixedLM(y, np.ones((30, 1)), g)
    for start in (0.01, 0.1, 0.5):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            other = model.fit(start_params=[start], method="lbfgs", maxiter=0)
        assert other.llf <= res.llf + 1e-10


# -- bad input -------------------------------------------------------------------------


def _arrays(n_groups=20):
    return design(make_data(n_groups=n_groups, seed=2))


def test_nan_in_exog_is_named_and_drop_reports_count():
    endog, exog, exog_re, groups = _arrays()
    exog = exog.copy()
    exog[[3, 7], 1] = np.nan
    with pytest.raises(ValueError, match=r"exog \(2 rows\).*missing='drop'"):
        MixedLM(endog, exog, groups, exog_re=exog_re)
    with pytest.warns(UserWarning, match="dropped 2 rows"):
        model = MixedLM(endog, exog, groups, exog_re=exog_re, missing="drop")
    res = model.fit()
    assert res.nobs == len(endog) - 2
    assert res.n_dropped == 2


def test_inf_in_endog_is_refused():
    endog, exog, exog_re, groups = _arrays()
    endog = endog.copy()
    endog[0] = np.inf
    with pytest.raises(ValueError, match=r"endog \(1 rows\)"):
        MixedLM(endog, exog, groups)


def test_non_numeric_exog_names_column():
    endog, exog, _, groups = _arrays()
    frame = pd.DataFrame({"const": 1.0, "colour": np.where(exog[:, 1] > 0, "red", "blue")})
    with pytest.raises(BadValuesError, match="colour"):
        MixedLM(endog, frame, groups)


def test_rank_deficient_design_names_columns():
    endog, exog, _, groups = _arrays()
    frame = pd.DataFrame(
        {"const": 1.0, "a": exog[:, 1], "b": exog[:, 2], "a_plus_b": exog[:, 1] + exog[:, 2]}
    )
    with pytest.raises(ValueError, match=r"rank deficient.*'a'.*'b'.*'a_plus_b'"):
        MixedLM(endog, frame, groups).fit()
    zero = frame.assign(z=0.0)[["const", "a", "z"]]
    with pytest.raises(ValueError, match=r"\['z'\] are constant"):
        MixedLM(endog, zero, groups).fit()


def test_too_few_rows_and_empty_data():
    with pytest.raises(ValueError, match="too few rows"):
        MixedLM(np.arange(3.0), np.ones((3, 1)), [0, 0, 1], exog_re=np.ones((3, 2)))
    with pytest.raises(ValueError, match="no data"):
        MixedLM(np.zeros(0), np.zeros((0, 1)), np.zeros(0))


def test_mismatched_lengths_and_bad_arguments():
    endog, exog, _, groups = _arrays()
    with pytest.raises(ValueError, match="groups has"):
        MixedLM(endog, exog, groups[:-1])
    with pytest.raises(ValueError, match="missing must be"):
        MixedLM(endog, exog, groups, missing="ignore")
    model = MixedLM(endog, exog, groups)
    with pytest.raises(ValueError, match="start_params has 5 values"):
        model.fit(start_params=np.ones(5))
    with pytest.raises(ValueError, match="not available"):
        model.fit(method="newtn")
    with pytest.raises(ValueError, match="cov_fe"):
        model.fit(cov_fe="robust")


def test_weights_must_be_positive_and_finite():
    endog, exog, _, groups = _arrays()
    w = np.ones_like(endog)
    w[4] = 0.0
    with pytest.raises(ValueError, match="weights must be positive: 1 rows"):
        MixedLM(endog, exog, groups, weights=w)
    w[4] = np.nan
    with pytest.raises(ValueError, match=r"weights \(1 rows\)"):
        MixedLM(endog, exog, groups, weights=w)


# -- weights: against a dense implementation of the weighted likelihood -----------------


def _dense_weighted_loglike(theta, y, x, z, g, w, reml):
    """−2ℓ/… written out: V_i = σ²(W_i⁻¹ + Z_i Ψ* Z_i'), β and σ² profiled out."""
    lmat = np.array([[theta[0], 0.0], [theta[1], theta[2]]])
    psi = lmat @ lmat.T
    blocks = []
    for key in np.unique(g):
        i = g == key
        blocks.append((np.diag(1 / w[i]) + z[i] @ psi @ z[i].T, x[i], y[i]))
    a = sum(xi.T @ np.linalg.solve(v, xi) for v, xi, _ in blocks)
    b = sum(xi.T @ np.linalg.solve(v, yi) for v, xi, yi in blocks)
    beta = np.linalg.solve(a, b)
    q = sum((yi - xi @ beta) @ np.linalg.solve(v, yi - xi @ beta) for v, xi, yi in blocks)
    n, p = x.shape
    fac = n - p if reml else n
    sigma2 = q / fac
    ll = -0.5 * sum(np.linalg.slogdet(sigma2 * v)[1] for v, _, _ in blocks)
    ll -= 0.5 * q / sigma2 + 0.5 * fac * np.log(2 * np.pi)
    if reml:
        ll -= 0.5 * np.linalg.slogdet(a / sigma2)[1]
    return ll, beta, sigma2


@pytest.mark.parametrize("reml", [True, False])
def test_weighted_fit_matches_dense_weighted_likelihood(reml):
    df = make_data(n_groups=15, max_size=10, seed=8)
    endog, exog, exog_re, groups = design(df)
    w = df["w"].to_numpy()
    res = MixedLM(endog, exog, groups, exog_re=exog_re, weights=w).fit(reml=reml)
    best = optimize.minimize(
        lambda t: -_dense_weighted_loglike(t, endog, exog, exog_re, groups, w, reml)[0],
        res.packed_params * 0.9 + 0.05,
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000},
    )
    ll, beta, sigma2 = _dense_weighted_loglike(best.x, endog, exog, exog_re, groups, w, reml)
    assert res.llf == pytest.approx(ll, rel=1e-8)
    np.testing.assert_allclose(res.fe_params, beta, rtol=1e-5)
    assert res.scale == pytest.approx(sigma2, rel=1e-5)
    ll_at_ours = _dense_weighted_loglike(res.packed_params, endog, exog, exog_re, groups, w, reml)
    assert res.llf == pytest.approx(ll_at_ours[0], rel=1e-12)


def test_unit_weights_change_nothing():
    endog, exog, exog_re, groups = _arrays()
    plain = MixedLM(endog, exog, groups, exog_re=exog_re).fit()
    weighted = MixedLM(endog, exog, groups, exog_re=exog_re, weights=np.ones_like(endog)).fit()
    assert weighted.llf == pytest.approx(plain.llf, rel=1e-12)
    np.testing.assert_allclose(weighted.fe_params, plain.fe_params, rtol=1e-10)


def _halves_weighted_apart(exponent: float):
    """``make_data`` (40 groups, seed 3) with about half the rows (chosen at random,
    seed 0) weighted ``2^exponent`` times the others, and the span of its weights."""
    df = make_data(n_groups=40, max_size=15, vc_sd=0.6, n_sub=5, seed=3)
    heavy = np.random.default_rng(0).random(len(df)) < 0.5
    df["w"] = np.where(heavy, df["w"] * 2.0**exponent, df["w"])
    return df, float(np.log2(df["w"].max()) - np.log2(df["w"].min()))


@pytest.mark.parametrize("re_formula", ["1 + x1", "1"])
@pytest.mark.parametrize("exponent", [52, 55, 70, 100, 120])
def test_weights_spread_past_the_significand_are_refused_naming_them(re_formula, exponent):
    """Weights more than 2^53 apart (within the 2^128 of the weights' scale): the lighter
    rows are lost to the rounding of the heavier in the sums they share, and a random
    slope's fit did not converge (2^55), could not start (2^70) or ended in an "internal
    error" (2^100).  Refused before any fit, naming the weights column, their span and
    the span taken, whatever the random effects."""
    df, span = _halves_weighted_apart(exponent)
    assert span > WEIGHT_SPAN_LOG2
    with pytest.raises(dmixed.DataError) as got:
        dmixed.mixedlm("y ~ x1 + x2", df, groups="g", re_formula=re_formula, weights="w")
    message = str(got.value)
    assert "prior weights in column 'w' are too far apart" in message
    assert f"over 2^{math.floor(span * 10) / 10:.1f} times" in message
    assert f"more than the 2^{WEIGHT_SPAN_LOG2} a fit takes" in message


@pytest.mark.parametrize("re_formula", ["1 + x1", "1"])
def test_weights_spread_within_the_significand_fit(re_formula):
    """Weights up to 2^53 apart are taken: the fit converges."""
    df, span = _halves_weighted_apart(WEIGHT_SPAN_LOG2 - 3.0)
    assert span <= WEIGHT_SPAN_LOG2
    model = dmixed.mixedlm("y ~ x1 + x2", df, groups="g", re_formula=re_formula, weights="w")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dmixed.DmixedWarning)
        res = model.fit()
    assert res.converged and np.isfinite(res.llf)


# -- options ------------------------------------------------------------------------------


def test_free_mask_fits_independent_random_effects():
    endog, exog, exog_re, groups = _arrays(40)
    model = MixedLM(endog, exog, groups, exog_re=exog_re)
    res = model.fit(start_params=[1.0, 0.0, 1.0], free=[1, 0, 1])
    assert res.cov_re[1, 0] == 0.0
    full = model.fit()
    assert res.llf <= full.llf + 1e-9
    with pytest.raises(ValueError, match="holding fixed effects"):
        model.fit(free=[0, 1, 1, 1, 0, 1])


def test_conditional_fixed_effect_covariance_is_lme4s():
    endog, exog, exog_re, groups = _arrays(40)
    res = MixedLM(endog, exog, groups, exog_re=exog_re).fit(cov_fe="conditional")
    np.testing.assert_allclose(
        res.cov_params()[:3, :3], res.scale * res.to_state().a_inv, rtol=1e-12
    )


def test_restarting_from_the_optimum_stays_there():
    endog, exog, exog_re, groups = _arrays(40)
    model = MixedLM(endog, exog, groups, exog_re=exog_re)
    first = model.fit()
    again = model.fit(start_params=first.packed_params)
    assert again.llf == pytest.approx(first.llf, rel=1e-12)


def test_use_sqrt_false_reaches_the_same_optimum():
    df = make_data(n_groups=40, vc_sd=0.5, seed=3)
    endog, exog, exog_re, groups = design(df)
    a = MixedLM(endog, exog, groups, exog_re=exog_re, exog_vc=vc_dict(df)).fit()
    b = MixedLM(endog, exog, groups, exog_re=exog_re, exog_vc=vc_dict(df), use_sqrt=False).fit(
        method="lbfgs"
    )
    assert b.llf == pytest.approx(a.llf, rel=1e-8)
    np.testing.assert_allclose(b.fe_params, a.fe_params, rtol=1e-5)


def test_results_pickle_and_hold_no_engine():
    endog, exog, exog_re, groups = _arrays()
    res = MixedLM(endog, exog, groups, exog_re=exog_re).fit()
    back = pickle.loads(pickle.dumps(res))
    assert back.llf == res.llf
    assert not hasattr(back, "engine")
    np.testing.assert_array_equal(back.fe_params, res.fe_params)


def test_names_follow_statsmodels():
    endog, exog, exog_re, groups = _arrays()
    res = MixedLM(endog, exog, groups, exog_re=exog_re).fit()
    assert isinstance(res.params, np.ndarray)  # arrays in, arrays out (as statsmodels)
    assert res.param_names == [
        "const",
        "x1",
        "x2",
        "x_re1 Var",
        "x_re1 x x_re2 Cov",
        "x_re2 Var",
    ]
    assert res.method == "REML" and np.isnan(res.aic) and np.isnan(res.bic)
    ml = MixedLM(endog, exog, groups, exog_re=exog_re).fit(reml=False)
    assert ml.aic == pytest.approx(-2 * (ml.llf - 7))
    assert "Mixed Linear Model Regression Results" in str(ml.summary())
    assert "<table" in ml._repr_html_()
    assert len(ml.fit_history) == ml.n_iter + 1 and ml.fit_history[-1]["llf"] == ml.llf


def test_final_line_written_at_debug_without_progress(caplog):
    """Without ``progress`` the final line goes to DEBUG, with its counts by method,
    where the logger takes DEBUG; where it does not, no record is made."""
    endog, exog, exog_re, groups = _arrays()
    with caplog.at_level("DEBUG", logger="dmixed"):
        res = MixedLM(endog, exog, groups, exog_re=exog_re).fit()
    final = [r for r in caplog.records if r.getMessage().startswith("final, after ")]
    assert len(final) == 1 and final[0].levelname == "DEBUG"
    assert f"final, after {res.n_iter} iterations (" in final[0].getMessage()
    caplog.clear()
    with caplog.at_level("INFO", logger="dmixed"):
        MixedLM(endog, exog, groups, exog_re=exog_re).fit()
    assert not [r for r in caplog.records if r.getMessage().startswith("final, after ")]


def test_public_names_exported():
    assert dmixed.mixedlm == MixedLM.from_formula


def test_progress_logs_one_line_per_iteration(caplog):
    endog, exog, exog_re, groups = _arrays()
    with caplog.at_level("INFO", logger="dmixed"):
        res = MixedLM(endog, exog, groups, exog_re=exog_re).fit(progress=True)
    lines = [r.getMessage() for r in caplog.records if r.name == "dmixed"]
    assert any(line.startswith("data pass:") for line in lines)
    iterations = [line for line in lines if line.startswith("iteration ")]
    final = [line for line in lines if line.startswith("final, after ")]
    assert len(iterations) == res.n_iter == len(res.fit_history) - 1 and len(final) == 1
    assert f"final, after {res.n_iter} iterations (" in final[0]
    assert all(
        "llf=" in line and "|grad|=" in line and "elapsed=" in line for line in iterations + final
    )
    assert [h["llf"] for h in res.fit_history][-1] == res.llf
    # the llf logged is the fit's (the data's units), not the standardized statistics'
    logged = [float(re.search(r"llf=(\S+)", line).group(1)) for line in iterations + final]
    np.testing.assert_allclose(logged, [h["llf"] for h in res.fit_history], rtol=0, atol=1e-6)
    start = next(line for line in lines if line.startswith("start: moment estimates"))
    both = [float(v) for v in re.findall(r"llf=(\S+?),?(?: |$)", start)]
    assert max(both) == pytest.approx(res.optimizer.initial_llf, abs=1e-6)


def test_every_constructor_gives_the_same_attributes():
    """Arrays, a formula and saved statistics all go through one construction path."""
    df = make_data(n_groups=30, seed=2)
    endog, exog, exog_re, groups = design(df)
    arrays = MixedLM(endog, exog, groups, exog_re=exog_re)
    formula = dmixed.mixedlm("y ~ x1 + x2", df, groups="g", re_formula="1 + x1")
    saved = MixedLM.from_statistics(formula.statistics(), formula.spec)
    assert set(vars(arrays)) == set(vars(formula)) == set(vars(saved))
    assert arrays.spec is None and arrays.source is None and arrays.rows is not None
    assert saved.rows is None and saved.cached_statistics is not None
    back = pickle.loads(pickle.dumps(formula))
    assert set(vars(back)) == set(vars(formula)) and back.cached_statistics is None


def test_partial_statistics_are_checked_on_their_sum():
    """``statistics(partial=True)``: rows of one level of a factor (rank deficient
    alone) are summed unchecked and not cached; statistics of them alone are refused
    by ``from_statistics`` and by a fit, naming the column."""
    df = make_data(n_groups=30, seed=3)
    df["arm"] = np.where(np.arange(len(df)) % 2 == 0, "a", "b")
    one_arm = df[df["arm"] == "a"]
    full = dmixed.mixedlm("y ~ x1 + C(arm)", df, groups="g")
    part = MixedLM.from_spec(full.spec, one_arm)
    stats = part.statistics(partial=True)
    assert part.cached_statistics is None
    j = list(full.exog_names).index("C(arm)[T.b]")
    assert stats.glob.xyxy[j, j] == 0.0  # C(arm)[T.b] is zero on these rows
    with pytest.raises(
        dmixed.DataError, match=re.escape("rank deficient: column(s) ['C(arm)[T.b]']")
    ):
        MixedLM.from_statistics(stats, full.spec)
    with pytest.raises(
        dmixed.DataError, match=re.escape("rank deficient: column(s) ['C(arm)[T.b]']")
    ):
        part.fit()


def test_missing_none_acts_as_raise():
    """statsmodels' ``missing="none"`` is accepted (code ported from it passes it) and
    checks like ``"raise"``: the same fit, and a NaN is refused, never summed."""
    endog, exog, _, groups = _arrays()
    none = MixedLM(endog, exog, groups, missing="none").fit()
    assert none.llf == MixedLM(endog, exog, groups, missing="raise").fit().llf
    endog = np.array(endog, dtype=float)
    endog[3] = np.nan
    with pytest.raises(dmixed.DataError, match="missing or infinite values in endog"):
        MixedLM(endog, exog, groups, missing="none")
    with pytest.raises(dmixed.SpecError, match="missing must be 'raise', 'drop' or 'none'"):
        MixedLM(endog, exog, groups, missing="nan")


def test_statsmodels_formula_keyword_subset_not_supported_is_named():
    """statsmodels' ``from_formula`` takes ``subset``; dmixed refuses it naming the
    argument."""
    df = pd.DataFrame({"y": np.arange(10.0), "x": np.arange(10.0) % 3, "g": np.arange(10) % 2})
    with pytest.raises(dmixed.SpecError, match="subset is not supported"):
        dmixed.mixedlm("y ~ x", df, groups="g", subset=["x"])


def _drop_cols_data() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    n = 400
    g = rng.integers(0, 25, n)
    df = pd.DataFrame(
        {
            "x1": rng.normal(size=n),
            "x2": rng.normal(size=n),
            "a": np.array(["lo", "mid", "hi"], dtype=object)[rng.integers(0, 3, n)],
            "g": g,
        }
    )
    df["y"] = 1 + 0.5 * df["x1"] + rng.normal(size=25)[g] + rng.normal(size=n)
    return df


@pytest.mark.parametrize("engine", ["pandas", "dask"])
@pytest.mark.parametrize("drop", [["x2"], ["a[T.mid]"], ["x2", "x1:x2"]])
def test_drop_cols_drops_fixed_effects_columns_as_statsmodels(engine, drop):
    """``drop_cols`` (statsmodels' ``from_formula`` argument): the named columns of the
    fixed-effects design are dropped after it is built, in process and on Dask; the fit
    is statsmodels' with the same argument."""
    import warnings

    import dask
    import dask.dataframe as dd
    import statsmodels.formula.api as smf

    df = _drop_cols_data()
    formula = "y ~ x1 * x2 + a"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = smf.mixedlm(formula, df, groups="g", drop_cols=drop).fit(reml=True)
    data = df if engine == "pandas" else dd.from_pandas(df, npartitions=3)
    with dask.config.set(scheduler="sync"):
        res = dmixed.mixedlm(formula, data, groups="g", drop_cols=drop).fit(reml=True)
    # formulaic orders the columns unlike patsy: compared by name
    assert sorted(res.model.exog_names) == sorted(ref.model.exog_names)
    assert not set(drop) & set(res.model.exog_names)
    names = list(res.model.exog_names)
    np.testing.assert_allclose(
        np.asarray(res.fe_params), ref.fe_params[names].to_numpy(), rtol=1e-5, atol=1e-7
    )
    assert res.llf == pytest.approx(ref.llf, rel=1e-7)


def test_drop_cols_naming_no_column_of_the_design_is_refused():
    """statsmodels ignores a name that is not a column; dmixed refuses it, naming it
    and the columns close to it."""
    df = _drop_cols_data()
    with pytest.raises(dmixed.SpecError, match=r"drop_cols.*'x3'.*close matches: 'x2'"):
        dmixed.mixedlm("y ~ x1 + x2", df, groups="g", drop_cols=["x3"])


def _unidentifiable(kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """y, exog (intercept and a covariate), groups: one group of 40 rows, or 520 groups of
    one row each (the cases of issue 13)."""
    n = 40 if kind == "single" else 520
    rng = np.random.default_rng(13)
    x = rng.normal(size=n)
    y = 3.0 + 0.5 * x + rng.normal(size=n)
    groups = np.zeros(n) if kind == "single" else np.arange(n)
    return y, np.column_stack([np.ones(n), x]), groups


@pytest.mark.parametrize(
    ("kind", "reason"),
    [("single", "a single group"), ("ones", "every group of 'Group' has one row")],
)
def test_unidentifiable_models_are_refused_before_the_optimizer(kind, reason):
    y, x, g = _unidentifiable(kind)
    model = MixedLM(y, x, g)
    with pytest.raises(dmixed.DataError, match=reason) as info:
        model.fit()
    assert 'check_nobs="ignore"' in str(info.value)
    assert "lme4" in str(info.value)


@pytest.mark.parametrize("kind", ["single", "ones"])
@pytest.mark.parametrize("reml", [True, False])
def test_fitting_anyway_takes_no_fixed_effect_se_from_a_singular_hessian(kind, reml):
    """check_nobs="ignore": the fit runs, and the fixed effects' SEs are the conditional
    σ̂²(X'V⁻¹X)⁻¹, said in one warning: the Hessian of an unidentifiable model says
    nothing about β (issue 13: intercept SEs of 0.00035 and 0.017 from its inverse,
    instead of about 0.75 and 0.06)."""
    y, x, g = _unidentifiable(kind)
    model = MixedLM(y, x, g)
    with pytest.warns(dmixed.DmixedWarning) as caught:
        res = model.fit(reml=reml, check_nobs="ignore")
        conditional = model.fit(reml=reml, check_nobs="ignore", cov_fe="conditional")
    expected = np.sqrt(np.diag(res.scale * res.to_state().a_inv))
    np.testing.assert_allclose(conditional.bse_fe, expected, rtol=1e-12)
    np.testing.assert_allclose(res.bse_fe, expected, rtol=1e-12)
    assert np.all(np.isfinite(res.bse_fe)) and np.all(res.bse_fe > 0)
    assert np.isnan(res.cov_params()[:2, 2:]).all()
    singular = [w for w in caught if w.category is dmixed.SingularHessianWarning]
    assert len(singular) == 2  # one per fit
    assert "not identifiable" in str(singular[0].message)
    assert "conditional" in str(singular[0].message)
    others = {w.category for w in caught} - {dmixed.SingularHessianWarning}
    assert others <= {BoundaryWarning}  # ML on one group: the variance settles at zero


def test_a_bad_check_nobs_is_refused_before_the_data_pass():
    y, x, g = _unidentifiable("single")
    model = MixedLM(y, x, g)
    with pytest.raises(dmixed.SpecError, match="check_nobs must be 'raise' or 'ignore', got 'no'"):
        model.fit(check_nobs="no")
    assert model.cached_statistics is None


def test_an_engine_in_memory_data_cannot_use_is_refused():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"y": rng.normal(size=60), "x": rng.normal(size=60), "g": np.arange(60) % 6})
    model = dmixed.mixedlm("y ~ x", df, groups="g")
    with pytest.raises(dmixed.SpecError, match=r"engine must be one of .* got 'foo'"):
        model.fit(engine="foo")
    with pytest.raises(dmixed.SpecError, match=r"engine='distributed' needs Dask data"):
        model.fit(engine="distributed")


def test_a_pickled_model_without_its_data_says_what_it_lacks():
    """After remove_data() a pickle carries neither the rows nor the statistics (which
    may hold a cluster's futures): what needs them says so, not that statistics it
    does not hold were built for another client."""
    df = make_data(n_groups=20, seed=3)
    res = dmixed.mixedlm("y ~ x1", df, groups="g").fit()
    res.remove_data()
    back = pickle.loads(pickle.dumps(res))
    for needs_statistics in (
        lambda: back.model.nobs,
        lambda: back.profile_ci(),
        lambda: dmixed.anova(back, dmixed.mixedlm("y ~ 1", df, groups="g").fit()),
    ):
        with pytest.raises(dmixed.SpecError, match=r"neither its rows nor .*remove_data\(\)"):
            needs_statistics()
    np.testing.assert_allclose(back.predict(df.iloc[:5]), res.predict(df.iloc[:5]))


def test_a_pickled_model_of_statistics_says_it_was_built_from_them():
    """A model built from statistics holds no data; pickled, not its statistics either:
    fitting it says so (it once said that its data were removed by remove_data())."""
    df = make_data(n_groups=20, seed=3)
    model = dmixed.mixedlm("y ~ x1", df, groups="g")
    back = pickle.loads(pickle.dumps(MixedLM.from_statistics(model.statistics(), model.spec)))
    with pytest.raises(dmixed.SpecError, match=r"built from statistics.*build it from them again"):
        back.fit()


RANK_DEFICIENT_RE = [
    ("1 + x1 + x1b", r"rank 2 < 3 columns\): linearly dependent columns \['x1', 'x1b'\]"),
    ("0 + x1 + x1b", r"rank 1 < 2 columns\): linearly dependent columns \['x1', 'x1b'\]"),
    ("1 + k", r"column\(s\) \['k'\] of re_formula '1 \+ k' are constant"),
    ("x1 + x2 + I(x1 + x2)", r"linearly dependent columns \['x1', 'x2', 'I\(x1 \+ x2\)'\]"),
]


def _rank_data() -> pd.DataFrame:
    df = make_data(n_groups=30, seed=5)
    return df.assign(x1b=2 * df["x1"], k=3.0)


@pytest.mark.parametrize(("re_formula", "match"), RANK_DEFICIENT_RE)
@pytest.mark.parametrize("source", ["pandas", "dask", "dask-client", "vc"])
def test_rank_deficient_random_design_names_columns(re_formula, match, source, request):
    """A random design whose ``re_formula`` columns are linearly dependent (or constant
    beside the intercept) is refused as the fixed design is, naming the columns, in
    process and from Dask statistics (on a cluster too), with variance components too;
    it used to fit with finite standard errors and ``converged=True``."""
    import dask.dataframe as dd

    df = _rank_data()
    data = df if source in ("pandas", "vc") else dd.from_pandas(df, npartitions=3)
    kw = {"vc_formula": {"s": "0 + C(k)"}} if source == "vc" else {}
    on_cluster = {}
    if source == "dask-client":  # the statistics stay on the workers
        on_cluster = {"client": request.getfixturevalue("client"), "engine": "distributed"}
    model = dmixed.mixedlm("y ~ x1", data, groups="g", re_formula=re_formula, **kw)
    with pytest.raises(dmixed.DataError, match="random-effects design is rank deficient.*" + match):
        model.fit(**on_cluster)


def test_rank_deficient_random_design_from_statistics_and_arrays():
    """Saved statistics (``from_statistics``) and array input are checked alike; the
    statistics of a partition are checked on their sum only."""
    df = _rank_data()
    model = dmixed.mixedlm("y ~ x1", df, groups="g", re_formula="1 + x1 + x1b")
    stats = model.statistics(partial=True)
    with pytest.raises(dmixed.DataError, match=r"dependent columns \['x1', 'x1b'\] of re_formula"):
        MixedLM.from_statistics(stats, model.spec)
    exog_re = np.column_stack([np.ones(len(df)), df["x1"], df["x1"]])
    arrays = MixedLM(df["y"], np.ones((len(df), 1)), df["g"], exog_re=exog_re)
    with pytest.raises(dmixed.DataError, match=r"dependent columns \['x_re2', 'x_re3'\]$"):
        arrays.fit()


@pytest.mark.parametrize(
    "formula", ["y ~ x1 + x2", "y ~ 0 + x1 + x2", "y ~ 0 + C(site)", "y ~ 0 + x1 + z"]
)
def test_k_constant_of_a_formula_model_is_statsmodels(formula):
    """On the model itself and ``model.data`` (statsmodels has both), as the results
    say, for pandas and Dask data."""
    import dask.dataframe as dd
    import statsmodels.api as sm

    df = make_data(n_groups=12, seed=4)
    df = df.assign(site=np.array(list("abc"))[np.arange(len(df)) % 3], z=2.5)
    theirs = sm.MixedLM.from_formula(formula, df, groups="g")
    model = dmixed.mixedlm(formula, df, groups="g")
    assert model.k_constant == theirs.k_constant == theirs.data.k_constant
    assert model.data.k_constant == theirs.k_constant
    lazy = dmixed.mixedlm(formula, dd.from_pandas(df, npartitions=2), groups="g")
    assert lazy.k_constant == theirs.k_constant
    assert lazy.data.k_constant == theirs.k_constant
    assert lazy.fit().k_constant == lazy.k_constant


def test_k_constant_of_an_array_model_is_statsmodels():
    import statsmodels.api as sm

    df = make_data(n_groups=12, seed=5)
    y, g, x1 = df["y"].to_numpy(), df["g"].to_numpy(), df["x1"].to_numpy()
    n = len(y)
    for exog in (
        np.column_stack([np.ones(n), x1]),
        x1[:, None],
        np.column_stack([x1, np.full(n, 3.0)]),
        np.column_stack([x1, np.zeros(n), df["x2"].to_numpy()]),
    ):
        theirs = sm.MixedLM(y, exog, g)
        model = MixedLM(y, exog, g)
        assert model.k_constant == theirs.k_constant == theirs.data.k_constant
        assert model.data.k_constant == theirs.k_constant


def test_a_dask_formula_model_reads_the_group_keys_back_once(monkeypatch):
    """Group keys that ``dd.from_pandas`` turned into text are read back from the pandas
    frame (:func:`~dmixed.design.partitions.restored_values`, every row's key): once for
    the spec and the model's columns together, not a second time for the model."""
    import dask
    import dask.dataframe as dd

    import dmixed.design.partitions as partitions

    df = make_data(n_groups=12, seed=5)
    keys = np.empty(len(df), dtype=object)
    keys[:] = [(int(g), "a") for g in df["g"]]
    df["g"] = keys
    with dask.config.set({"dataframe.convert-string": True}):
        ddf = dd.from_pandas(df, npartitions=3)
    read = []
    object_types = partitions.object_types

    def counted(s):
        read.append(s.name)
        return object_types(s)

    monkeypatch.setattr(partitions, "object_types", counted)
    model = dmixed.mixedlm("y ~ x1", ddf, groups="g")
    assert read == ["g"]
    with dask.config.set(scheduler="sync"):
        res = model.fit()
    assert read == ["g"]
    ref = dmixed.mixedlm("y ~ x1", df, groups="g").fit()
    assert res.llf == pytest.approx(ref.llf, rel=1e-10)
    assert sorted(res.random_effects) == sorted(ref.random_effects)


def test_array_weights_in_more_than_one_unit_are_refused_as_a_column_of_them():
    """Prior weights given as an array, 2^200 apart: refused before the fit as a
    formula's weights column is (in process and on Dask), naming the argument."""
    rng = np.random.default_rng(2)
    n = 200
    groups = np.arange(n) % 20
    exog = np.column_stack([np.ones(n), rng.normal(size=n)])
    endog = exog[:, 1] + rng.normal(size=20)[groups] + rng.normal(size=n)
    w = rng.uniform(0.5, 2.0, n) * np.where(np.arange(n) < n // 2, 1.0, 2.0**200)
    with pytest.raises(dmixed.DataError, match="column 'weights' are too far apart"):
        dmixed.MixedLM(endog, exog, groups, weights=w)
    dmixed.MixedLM(endog, exog, groups, weights=rng.uniform(0.5, 2.0, n) * 2.0**100)


def test_a_response_the_effects_reproduce_exactly_is_a_data_error():
    """Where the fixed and random effects reproduce the response exactly, ℓ rises
    without bound as Ψ* grows and the optimizer ends where it is not defined: a
    DataError naming the response and why, not an internal error."""
    rng = np.random.default_rng(0)
    rng.normal(size=(3, 100))  # draws of another design first: these data end there
    rng.normal(size=(20, 2))
    g = np.repeat(np.arange(3), 50)
    x1 = rng.normal(size=g.size)
    rng.normal(size=g.size)
    z = np.column_stack([np.ones(g.size), x1])
    b = rng.normal(size=(3, 2))
    y = 1.0 + x1 + (z * b[g]).sum(axis=1)  # no noise
    model = dmixed.MixedLM(pd.Series(y, name="resp"), z.copy(), g, exog_re=z)
    with (
        pytest.warns(dmixed.FitConvergenceWarning),  # the methods tried in turn on the way
        pytest.raises(dmixed.errors.DataError, match="reproduce 'resp'.*no maximum"),
    ):
        model.fit()


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("kind", ["numpy", "pandas"])
def test_results_describe_the_rows_fitted_after_the_callers_buffers_are_refilled(order, kind):
    """A loop that refills its buffers (a simulation) and keeps each fit: every result's
    fittedvalues and resid are those of the rows it fitted, whatever the arrays' memory
    order, and a refit of the model fits those rows again."""
    endog, exog, exog_re, groups = _arrays()
    exog = np.asarray(exog, order=order)
    weights = np.linspace(0.5, 2.0, len(endog))
    expected = MixedLM(
        endog.copy(), exog.copy(), groups.copy(), exog_re=exog[:, :2].copy(), weights=weights.copy()
    ).fit()
    buffers = [endog.copy(), exog.copy(), groups.copy(), weights.copy()]
    y, x, g, w = buffers
    if kind == "pandas":
        y, x, g = pd.Series(y, name="y"), pd.DataFrame(x, columns=["a", "b", "c"]), pd.Series(g)
    model = MixedLM(y, x, g, exog_re=x.iloc[:, :2] if kind == "pandas" else x[:, :2], weights=w)
    res = model.fit()
    for buffer in buffers:
        buffer[:] = buffer[::-1]
    if kind == "pandas":
        y[:] = 0.0
        x.iloc[:, 1] = 0.0
    for got, want in (
        (res.fittedvalues, expected.fittedvalues),
        (res.resid, expected.resid),
        (model.fit().params, expected.params),
    ):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-9, atol=1e-12)


def test_group_labels_of_several_kinds_are_refused_from_arrays_as_from_a_formula():
    """5 and '5' among the groups: one group read as text, two as objects.  The
    formula path refuses such a column; a model of arrays fitted them as two groups."""
    endog, exog, _, groups = _arrays()
    mixed = groups.astype(object)
    mixed[np.flatnonzero(groups == groups[0])[::2]] = str(groups[0])
    with pytest.raises(dmixed.BadValuesError, match=r"'groups' holds values of several.*int, str"):
        MixedLM(endog, exog, mixed)
    frame = pd.DataFrame({"y": endog, "x": exog[:, 1], "g": mixed})
    with pytest.raises(dmixed.BadValuesError, match=r"'g' holds values of several.*int, str"):
        dmixed.mixedlm("y ~ x", frame, groups="g")
    labels = MixedLM(endog, exog, groups.astype(str).astype(object)).fit().random_effects
    assert len(labels) == len(np.unique(groups))


def test_group_labels_of_several_kinds_are_refused_from_a_list():
    """A list holding 5 and '5' is turned into text by numpy (one group) where the same
    values as an object array are refused: the list is refused too, in both entry points;
    a list of one kind keeps its groups."""
    endog, exog, _, groups = _arrays()
    mixed = [str(v) if i % 2 else int(v) for i, v in enumerate(groups)]
    with pytest.raises(dmixed.BadValuesError, match=r"'groups' holds values of several.*int, str"):
        MixedLM(endog, exog, mixed)
    frame = pd.DataFrame({"y": endog, "x": exog[:, 1]})
    with pytest.raises(dmixed.BadValuesError, match=r"holds values of several.*int, str"):
        dmixed.mixedlm("y ~ x", frame, groups=mixed)
    with pytest.raises(dmixed.BadValuesError, match=r"holds values of several.*bool, int"):
        MixedLM(endog, exog, [bool(v % 2) if i % 2 else int(v) for i, v in enumerate(groups)])
    model = MixedLM(endog, exog, [str(v) for v in groups])
    assert len(model.group_labels) == len(np.unique(groups))


@pytest.mark.parametrize("use_sqrt", ["yes", "False", None, 0, 1])
def test_use_sqrt_that_is_not_a_bool_is_refused(use_sqrt):
    """``use_sqrt="False"`` optimized the square-root factor (a true string)."""
    endog, exog, exog_re, groups = design(make_data(n_groups=20, max_size=8, seed=1))
    with pytest.raises(dmixed.SpecError, match=f"use_sqrt must be True or False, not {use_sqrt!r}"):
        MixedLM(endog, exog, groups, exog_re=exog_re, use_sqrt=use_sqrt)
    df = make_data(n_groups=20, max_size=8, seed=1)
    with pytest.raises(dmixed.SpecError, match="use_sqrt must be True or False"):
        dmixed.mixedlm("y ~ x1", df, groups="g", use_sqrt=use_sqrt)


@pytest.mark.parametrize(
    ("shape", "refused"), [((-1, 2), True), ((-1, 1), False), ((-1, 1, 1), False)]
)
def test_groups_of_more_than_one_label_per_row_are_refused(shape, refused):
    """Groups of shape (n, 2) were flattened to 2n labels and refused as "groups has 2n
    rows"; a column of labels is one per row."""
    endog, exog, _, groups = design(make_data(n_groups=20, max_size=8, seed=1))
    labels = (np.column_stack([groups, groups]) if shape[1] == 2 else groups).reshape(shape)
    if refused:
        with pytest.raises(
            DataError, match=r"groups must be one label per row, got shape \(\d+, 2\)"
        ):
            MixedLM(endog, exog, labels)
    else:
        assert MixedLM(endog, exog, labels).fit().llf == MixedLM(endog, exog, groups).fit().llf


@pytest.mark.parametrize("labels", ["series", "array"])
def test_dask_data_with_groups_that_are_not_a_column_name_is_refused(labels):
    """statsmodels' groups as the labels themselves work for pandas data only: with a
    Dask DataFrame a SpecError says to name the column (it was a TypeError)."""
    import dask.dataframe as dd

    df = make_data(n_groups=20, max_size=8, seed=1)
    ddf = dd.from_pandas(df, npartitions=2)
    groups = ddf["g"] if labels == "series" else df["g"].to_numpy()
    with pytest.raises(
        dmixed.SpecError, match="with Dask data, groups must be the name of a column"
    ):
        dmixed.mixedlm("y ~ x1", ddf, groups=groups)


def test_labels_of_a_dask_series_with_data_in_memory_are_refused():
    """A pandas DataFrame with ``groups`` a Dask Series: refused naming what to pass, as
    MixedLM refuses Dask arrays (the Series was computed into memory, whole, silently)."""
    import dask.dataframe as dd

    df = make_data(n_groups=20, max_size=8, seed=1)
    groups = dd.from_pandas(df["g"], npartitions=2)
    with pytest.raises(
        dmixed.SpecError,
        match=r"groups is a Dask Series and data a pandas DataFrame: pass groups='g' "
        r"\(its column's name\) or groups.compute\(\)",
    ):
        dmixed.mixedlm("y ~ x1", df, groups=groups)


# -- the caller's DataFrame changed after the model is built -----------------------------


def _frame_of_group_kind(kind: str) -> pd.DataFrame:
    """make_data's frame with its group column as ``kind``, and an integer column ``h``
    (a variance component's levels)."""
    df = make_data(n_groups=25, seed=4)
    df["h"] = np.arange(len(df)) % 3
    g = df["g"]
    df["g"] = {
        "int": g,
        "uint": g.astype(np.uint64),
        "float": g.astype(np.float64),
        "object": g.astype(str).astype(object),
        "string": g.astype(str).astype("string[python]"),
        "str": g.astype(str),  # pandas' default strings, in Arrow memory
        "category": g.astype("category"),
    }[kind]
    return df


def _overwrite(df: pd.DataFrame, column: str) -> None:
    """Write other values of ``column`` into the frame's own memory (``loc`` sets them
    in place), as a caller reusing its frame does: the rows in reverse order."""
    df.loc[:, column] = df[column].to_numpy()[::-1].copy()


def _fit_numbers(res) -> list[np.ndarray]:
    """What a fit is read for: estimates, standard errors, BLUPs, fitted values, residuals."""
    blups = res.random_effects
    return [
        np.asarray(res.params),
        np.asarray(res.bse),
        np.concatenate([np.ravel(blups[k]) for k in sorted(blups)]),
        np.asarray(res.fittedvalues),
        np.asarray(res.resid),
    ]


def _assert_same_fit(got, want) -> None:
    for a, b in zip(_fit_numbers(got), _fit_numbers(want), strict=True):
        np.testing.assert_array_equal(a, b)


_FORMULA = dict(formula="y ~ x1 + x2", groups="g", re_formula="~x1", weights="w")


@pytest.mark.parametrize("column", ["g", "w", "y", "x1"])
@pytest.mark.parametrize("missing", ["raise", "drop"])
def test_a_formula_model_is_not_changed_by_its_frame_changed_before_the_fit(column, missing):
    """A model keeps the rows it was built from: writing into the caller's DataFrame
    between ``from_formula`` and ``fit`` changes neither the fit nor what is read from
    it (the group keys were a view of the group column)."""
    df = _frame_of_group_kind("int")
    want = MixedLM.from_formula(data=df.copy(), missing=missing, **_FORMULA).fit()
    model = MixedLM.from_formula(data=df, missing=missing, **_FORMULA)
    _overwrite(df, column)
    _assert_same_fit(model.fit(), want)


@pytest.mark.parametrize("kind", ["int", "uint", "float", "object", "string", "str", "category"])
def test_a_formula_model_keeps_group_keys_of_every_kind_of_its_own(kind):
    """Group columns of every kind: keys read as they are (numbers, objects, pandas'
    numpy-backed strings) are copied, so writing new labels into the column after the
    model is built moves no row to another group; Arrow strings and categoricals are
    converted into new arrays."""
    df = _frame_of_group_kind(kind)
    want = MixedLM.from_formula(data=df.copy(), **_FORMULA).fit()
    model = MixedLM.from_formula(data=df, **_FORMULA)
    _overwrite(df, "g")
    _assert_same_fit(model.fit(), want)


@pytest.mark.parametrize("column", ["g", "w", "y", "x1"])
def test_results_are_not_changed_by_the_frame_changed_after_the_fit(column):
    """After the fit: fitted values, residuals, BLUPs, predictions on new rows and a
    refit of the model are those of the rows fitted."""
    df = _frame_of_group_kind("int")
    new = df.iloc[:40].copy()
    model0 = MixedLM.from_formula(data=df.copy(), **_FORMULA)
    want = model0.fit()
    model = MixedLM.from_formula(data=df, **_FORMULA)
    res = model.fit()
    _overwrite(df, column)
    _assert_same_fit(res, want)
    np.testing.assert_array_equal(
        np.asarray(res.predict(new, include_random=True)),
        np.asarray(want.predict(new, include_random=True)),
    )
    _assert_same_fit(model.fit(), want)


def test_a_formula_model_of_formulaic_terms_and_components_is_not_changed_by_its_frame():
    """Terms formulaic builds (``C()``, a function), a variance component over an
    integer column inside ``C()`` and one over a numeric column: each column
    overwritten after the model is built changes nothing."""
    df = _frame_of_group_kind("int")
    spec = dict(
        formula="y ~ x1 + np.exp(x2 / 4) + C(sub)",
        groups="g",
        vc_formula={"h": "0 + C(h)", "x2": "0 + x2"},
    )
    want = MixedLM.from_formula(data=df.copy(), **spec).fit()
    model = MixedLM.from_formula(data=df, **spec)
    for column in ("g", "y", "x1", "x2", "h", "sub"):
        _overwrite(df, column)
    _assert_same_fit(model.fit(), want)


def test_a_formula_model_keeps_group_labels_passed_as_an_array():
    """``groups`` given as the labels themselves (statsmodels' form): refilling the
    caller's array after the model is built changes nothing."""
    df = _frame_of_group_kind("int")
    labels = df["g"].to_numpy().copy()
    want = MixedLM.from_formula("y ~ x1", df, groups=labels.copy()).fit()
    model = MixedLM.from_formula("y ~ x1", df, groups=labels)
    labels[:] = labels[::-1]
    _assert_same_fit(model.fit(), want)


def test_an_array_model_keeps_its_variance_component_matrices():
    """The arrays API copies what it is given as well (statsmodels keeps references):
    the per-group matrices of ``exog_vc`` refilled after the model is built change
    nothing."""
    df = make_data(n_groups=20, seed=3)
    endog, exog, _, groups = design(df)
    want = MixedLM(endog, exog, groups, exog_vc=vc_dict(df)).fit()
    vc = vc_dict(df)
    model = MixedLM(endog, exog, groups, exog_vc=vc)
    for matrix in vc["sub"].values():
        matrix.loc[:, :] = 1.0
    _assert_same_fit(model.fit(), want)


@pytest.mark.parametrize("formula", [False, True])
def test_a_fit_leaves_no_reference_cycle(formula):
    """A fit's objects go when nothing holds them, without the garbage collector: the
    lean Newton steps hold their objective, which holds them (and the statistics) until
    the fit lets go of them (:meth:`dmixed.fit.profiled.ProfiledObjective.release_lean`)."""
    import gc

    df = make_data(n_groups=40, min_size=5, max_size=5, seed=1)
    gc.collect()
    gc.disable()
    try:
        if formula:
            model = MixedLM.from_formula("y ~ x1 + x2", df, groups="g", re_formula="~x1")
        else:
            exog = np.column_stack([np.ones(len(df)), df["x1"], df["x2"]])
            exog_re = np.column_stack([np.ones(len(df)), df["x1"]])
            model = MixedLM(df["y"].to_numpy(), exog, df["g"].to_numpy(), exog_re=exog_re)
        res = model.fit()
        assert np.isfinite(res.bse).all()
        del model, res
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left = [type(o).__qualname__ for o in gc.garbage if type(o).__module__.startswith("dmixed")]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert left == []


def _ordered_frame() -> pd.DataFrame:
    rng = np.random.default_rng(52)
    n, k = 600, 30
    g = rng.integers(0, k, n)
    df = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "z": rng.normal(size=n),
            "f": rng.choice(["a", "b", "c"], n),
            "h": rng.choice(["p", "q"], n),
            "g": g,
        }
    )
    shift = df["f"].map({"a": 0.0, "b": 0.5, "c": -0.3}).to_numpy()
    df["y"] = 1 + df["x"] - 0.5 * df["z"] + shift + rng.normal(size=k)[g] + rng.normal(size=n)
    return df


@pytest.mark.parametrize(
    "formula", ["y ~ x*C(f) + z", "y ~ x:z + x + C(h)", "y ~ 0 + x + C(f)", "y ~ (x + z + C(h))**2"]
)
def test_results_in_statsmodels_order_in_process_and_on_dask(formula):
    """fe_params, bse, cov_params and the summary follow statsmodels' order of the
    fixed effects (patsy's: the terms without numeric factors first); the fitted
    values are the design times those estimates, in process and on Dask."""
    import dask
    import dask.dataframe as dd
    import statsmodels.formula.api as smf

    df = _ordered_frame()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = smf.mixedlm(formula, df, groups=df["g"]).fit(gtol=1e-10)
    names = list(ref.fe_params.index)
    res = dmixed.mixedlm(formula, df, groups="g").fit()
    with dask.config.set(scheduler="sync"):
        lazy = dmixed.mixedlm(formula, dd.from_pandas(df, npartitions=3), groups="g").fit()
    for fit in (res, lazy):
        assert list(fit.fe_params.index) == names
        assert list(fit.bse_fe.index) == names
        assert list(fit.cov_params().index[: len(names)]) == names
        np.testing.assert_allclose(fit.fe_params.to_numpy(), ref.fe_params.to_numpy(), rtol=1e-6)
        np.testing.assert_allclose(fit.bse_fe.to_numpy(), ref.bse_fe.to_numpy(), rtol=1e-5)
        table = fit.summary().tables[1]
        assert list(table.index[: len(names)]) == names
    np.testing.assert_allclose(
        res.predict(df), res.model.exog @ res.fe_params.to_numpy(), rtol=1e-12, atol=1e-12
    )
    np.testing.assert_allclose(res.predict(df), ref.predict(df), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(lazy.fe_params.to_numpy(), res.fe_params.to_numpy(), rtol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        terms = list(ref.wald_test_terms(scalar=True).table.index)
    assert list(res.wald_test_terms().table.index) == terms


def test_an_unpenalized_model_has_no_penalties():
    """statsmodels' penalty attributes of a model (``fit_regularized`` takes its own
    ``alpha``: tests/fit/test_penalized.py)."""
    df = make_data(n_groups=8, seed=4)
    model = dmixed.mixedlm("y ~ x1", df, groups="g")
    assert model.fe_pen is None and model.cov_pen is None and model.re_pen is None


def test_every_public_name_of_statsmodels_mixedlm_is_there():
    """Every public attribute of statsmodels' MixedLM is one of dmixed's model, but
    ``initialize`` (statsmodels' internal set-up of a model) and ``exog_vc`` (refused
    with a reason for a formula model: tests/design/test_model_data.py)."""
    import statsmodels.formula.api as smf

    df = make_data(n_groups=8, seed=4)
    theirs = smf.mixedlm("y ~ x1", df, groups="g")
    ours = dmixed.mixedlm("y ~ x1", df, groups="g")
    public = {name for name in dir(theirs) if not name.startswith("_")}
    assert public - set(dir(ours)) == {"initialize"}


def test_crossed_effects_idiom_is_documented():
    """A user coming from lme4 found no crossed example: the README and
    ``from_formula``'s docstring show ``(1 | subj) + (1 | item)`` as one constant group
    with a component per factor, and say what ``groups="subj"`` fits instead."""
    from pathlib import Path

    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text().split())
    doc = " ".join(MixedLM.from_formula.__doc__.split())
    idiom = 'vc_formula={"subj": "0 + C(subj)", "item": "0 + C(item)"}'
    for text in (readme, doc):
        assert "(1 | subj) + (1 | item)" in text and idiom in text
        assert "(1 | subj) + (1 | subj:item)" in text
    assert 'groups="one"' in readme


def test_readme_nested_example_has_a_subject_intercept():
    """The README called ``groups="subj"`` with an ``item`` component lme4's
    ``(1 | subj) + (1 | subj:item)``, but without ``re_formula`` statsmodels' rule gives no
    random intercept: the fit had no ``(1 | subj)`` term.  The README's nested example,
    run as written, has the 1 × 1 subject variance beside the item component."""
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    nested = [b for b in blocks if 'groups="subj"' in b and "C(item)" in b]
    assert len(nested) == 1, "the README shows one nested example"
    assert 're_formula="1"' in nested[0]
    rng = np.random.default_rng(5)
    n, n_subj, n_item = 600, 30, 4
    df = pd.DataFrame({"subj": rng.integers(0, n_subj, n), "item": rng.integers(0, n_item, n)})
    df["x"] = rng.normal(size=n)
    df["y"] = (
        1
        + df.x
        + rng.normal(0, 1, n_subj)[df.subj]
        + rng.normal(0, 0.5, (n_subj, n_item))[df.subj, df.item]
        + rng.normal(size=n)
    )
    scope = {"dmixed": dmixed, "df": df}
    exec(compile(nested[0], "README.md", "exec"), scope)  # the README's own code
    res = scope["res"]
    assert np.asarray(res.cov_re).shape == (1, 1)
    assert np.asarray(res.cov_re)[0, 0] > 0
    assert len(np.asarray(res.vcomp)) == 1
