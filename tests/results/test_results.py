"""Results: estimates, BLUPs and fitted values, against statsmodels and by construction."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from statsmodels.regression.mixed_linear_model import MixedLM as SmMixedLM

from dmixed import BoundaryWarning, DroppedRowsWarning, MixedLM, MixedLMResults, load, mixedlm
from dmixed.errors import NoModelError, SpecError

from .._synth import design, make_data, vc_dict

_ALPHA_TAKERS = {
    "conf_int": lambda res, a: res.conf_int(alpha=a),
    "summary_frame": lambda res, a: res.summary_frame(alpha=a),
    "summary": lambda res, a: res.summary(alpha=a),
    "profile_ci": lambda res, a: res.profile_ci(alpha=a),
    "t_test.conf_int": lambda res, a: res.t_test("x1 = 0").conf_int(alpha=a),
    "t_test.summary_frame": lambda res, a: res.t_test("x1 = 0").summary_frame(alpha=a),
}


@pytest.mark.parametrize("alpha", [2, 1, 0, -0.5, float("nan"), "0.05x", "0.05", None, [0.05]])
@pytest.mark.parametrize("method", sorted(_ALPHA_TAKERS))
def test_alpha_outside_zero_one_is_refused_naming_it(method, alpha):
    """``conf_int(alpha=2)`` once gave intervals of ±inf: every results method taking
    ``alpha`` refuses it outside (0, 1), and what is not a number (text, even
    ``"0.05"``, None, a list)."""
    df = make_data(n_groups=10, seed=1)
    endog, exog, _, groups = design(df)
    res = MixedLM(endog, pd.DataFrame(exog, columns=["Intercept", "x1", "x2"]), groups).fit()
    with pytest.raises(SpecError, match=r"alpha must be a number in \(0, 1\)"):
        _ALPHA_TAKERS[method](res, alpha)


#: every switch of the results API (and of the model's), called with the given value
_FLAG_TAKERS = {
    "predict(include_random)": lambda res, v: res.predict(_flag_data().head(2), v),
    "get_prediction(include_random)": lambda res, v: res.get_prediction(
        _flag_data().head(2), include_random=v
    ),
    "get_prediction().conf_int(obs)": lambda res, v: res.get_prediction().conf_int(obs=v),
    "random_effects_frame(vc)": lambda res, v: res.random_effects_frame(vc=v),
    "random_effects_frame(dask)": lambda res, v: res.random_effects_frame(dask=v),
    "simulate(use_re)": lambda res, v: res.simulate(1, seed=1, use_re=v),
    "bootstrap(use_re)": lambda res, v: res.bootstrap(2, seed=1, use_re=v),
    "bootstrap(progress)": lambda res, v: res.bootstrap(2, seed=1, progress=v),
    "t_test(use_t)": lambda res, v: res.t_test("x1 = 0", use_t=v),
    "wald_test(use_f)": lambda res, v: res.wald_test("x1 = 0", use_f=v),
    "wald_test(scalar)": lambda res, v: res.wald_test("x1 = 0", scalar=v),
    "wald_test_terms(skip_single)": lambda res, v: res.wald_test_terms(skip_single=v),
    # the model's own switches, reached from the results
    "model.statistics(progress)": lambda res, v: res.model.statistics(progress=v),
    "model.statistics(partial)": lambda res, v: res.model.statistics(partial=v),
    "model.loglike(profile_fe)": lambda res, v: res.model.loglike(res.params_object, profile_fe=v),
    "model.score(profile_fe)": lambda res, v: res.model.score(res.params_object, profile_fe=v),
    "model.score_full(calc_fe)": lambda res, v: res.model.score_full(res.params_object, v),
    "model.score_sqrt(calc_fe)": lambda res, v: res.model.score_sqrt(res.params_object, calc_fe=v),
}


def _flag_data() -> pd.DataFrame:
    df = make_data(n_groups=10, seed=1)
    df["cls"] = np.arange(len(df)) % 3
    return df


@pytest.fixture(scope="module")
def flag_fit():
    df = _flag_data()
    return mixedlm("y ~ x1", df, groups="g", re_formula="1", vc_formula={"c": "0 + C(cls)"}).fit()


@pytest.mark.parametrize("value", ["no", 1, 0.0, np.array([True]), [False]])
@pytest.mark.parametrize("call", sorted(_FLAG_TAKERS))
def test_a_switch_that_is_not_a_bool_is_refused_naming_it(flag_fit, call, value):
    """``predict(include_random="no")`` added the BLUPs (a true string): every switch
    of the results API takes a Python or numpy bool only, and names the argument and
    the value's type otherwise (:func:`dmixed.fit.options.check_flag`)."""
    name = call.rsplit("(", 1)[1].rstrip(")")
    kind = type(value).__name__
    with pytest.raises(
        SpecError,
        match=rf"^{name} must be True, False.* \({kind}\)$|"
        rf"^{name} must be True or False, not .* \({kind}\)$",
    ):
        _FLAG_TAKERS[call](flag_fit, value)


@pytest.mark.parametrize("call", sorted(_FLAG_TAKERS))
def test_a_numpy_bool_switch_is_its_python_bool(flag_fit, call):
    """``np.True_`` and ``np.False_`` (as comparisons give) are taken as True and False."""
    for value in (np.True_, np.False_):
        got, want = (_FLAG_TAKERS[call](flag_fit, v) for v in (value, bool(value)))
        if isinstance(want, pd.Series | pd.DataFrame):
            pd.testing.assert_frame_equal(pd.DataFrame(got), pd.DataFrame(want))
        elif isinstance(want, float | np.ndarray):
            np.testing.assert_array_equal(got, want)
        else:
            assert type(got) is type(want)


@pytest.fixture(scope="module")
def vc_fits():
    """A random-slope + nested-VC model, fitted by dmixed and by statsmodels started at
    dmixed's optimum (so both sit at the same point and differences are numerical)."""
    df = make_data(n_groups=40, vc_sd=0.6, seed=5)
    endog, exog, exog_re, groups = design(df)
    vc = vc_dict(df)
    res = MixedLM(endog, exog, groups, exog_re=exog_re, exog_vc=vc).fit()
    sm_vc = {"sub": {k: v.to_numpy() for k, v in vc["sub"].items()}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sm = SmMixedLM(endog, exog, groups, exog_re=exog_re, exog_vc=sm_vc).fit(
            start_params=res.packed_params, method="bfgs", gtol=1e-10
        )
    return df, res, sm


def test_blups_and_their_covariances_match_statsmodels(vc_fits):
    _, res, sm = vc_fits
    assert res.llf == pytest.approx(sm.llf, rel=1e-9)
    assert set(res.random_effects) == set(sm.random_effects)
    for key, ours in res.random_effects.items():
        theirs = sm.random_effects[key]
        np.testing.assert_allclose(ours.to_numpy(), theirs.to_numpy(), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(
            res.random_effects_cov[key].to_numpy(),
            sm.random_effects_cov[key].to_numpy(),
            rtol=1e-6,
            atol=1e-9,
        )


def test_fitted_values_and_residuals_match_statsmodels(vc_fits):
    df, res, sm = vc_fits
    np.testing.assert_allclose(res.fittedvalues, sm.fittedvalues, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(res.resid, sm.resid, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(res.resid + res.fittedvalues, df["y"], rtol=1e-12)


def test_random_effects_frame_is_indexed_by_group(vc_fits):
    _, res, _ = vc_fits
    frame = res.random_effects_frame()
    assert list(frame.columns) == ["x_re1", "x_re2"]
    key = frame.index[7]
    np.testing.assert_allclose(frame.loc[key].to_numpy(), res.random_effects[key].iloc[:2])


def test_blups_are_finite_on_the_boundary():
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(6), 5)
    y = 5 + 3 * rng.normal(size=30)
    y = y - (np.bincount(g, y) / 5)[g] + y.mean()
    with pytest.warns(BoundaryWarning):
        res = MixedLM(y, np.ones((30, 1)), g).fit()
    blups = np.concatenate([v.to_numpy() for v in res.random_effects.values()])
    assert np.all(blups == 0)
    covs = np.concatenate([v.to_numpy().ravel() for v in res.random_effects_cov.values()])
    assert np.all(np.isfinite(covs))


def test_blups_minimize_the_penalized_least_squares_criterion():
    """γ̂ minimizes ‖y − Xβ̂ − Zγ‖² + σ² γ'Ψ⁻¹γ per group (Henderson's equations)."""
    df = make_data(n_groups=10, seed=13)
    endog, exog, exog_re, groups = design(df)
    res = MixedLM(endog, exog, groups, exog_re=exog_re).fit()
    psi_inv = np.linalg.inv(res.cov_re)
    for key in list(res.random_effects)[:5]:
        i = groups == key
        r = endog[i] - exog[i] @ res.fe_params
        z = exog_re[i]
        direct = np.linalg.solve(z.T @ z + res.scale * psi_inv, z.T @ r)
        np.testing.assert_allclose(res.random_effects[key].to_numpy(), direct, rtol=1e-8)


def test_summary_frame_layout():
    df = make_data(n_groups=20, seed=1)
    endog, exog, exog_re, groups = design(df)
    frame = pd.DataFrame(exog, columns=["Intercept", "x1", "x2"])
    res = MixedLM(endog, frame, groups, exog_re=exog_re).fit()
    tab = res.summary_frame()
    assert list(tab.columns) == ["Coef.", "Std.Err.", "z", "P>|z|", "[0.025", "0.975]"]
    assert tab.loc["x1", "Coef."] == res.fe_params["x1"]
    np.testing.assert_allclose(
        res.conf_int().loc["x1"].to_numpy(), tab.loc["x1", ["[0.025", "0.975]"]].to_numpy()
    )


def test_formula_weights_equal_array_weights():
    df = make_data(n_groups=25, seed=8)
    endog, exog, exog_re, groups = design(df)
    arrays = MixedLM(endog, exog, groups, exog_re=exog_re, weights=df["w"].to_numpy()).fit()
    formula = MixedLM.from_formula(
        "y ~ x1 + x2", df, groups="g", re_formula="1 + x1", weights="w"
    ).fit()
    assert formula.llf == pytest.approx(arrays.llf, rel=1e-12)
    np.testing.assert_allclose(formula.fe_params, arrays.fe_params, rtol=1e-10)
    with pytest.raises(ValueError, match="'w'"):
        MixedLM.from_formula("y ~ x1", df.assign(w=-df["w"]), groups="g", weights="w")


def test_results_are_built_from_their_state_record(vc_fits):
    _, res, _ = vc_fits
    back = MixedLMResults.from_state(res.to_state())
    assert back.to_state() is res.to_state()
    assert str(back.summary()) == str(res.summary())
    np.testing.assert_array_equal(back.cov_params(), res.cov_params())
    np.testing.assert_array_equal(back.random_effects_frame(), res.random_effects_frame())
    assert back.aic == res.aic or (np.isnan(back.aic) and np.isnan(res.aic))


def test_loaded_results_refuse_their_model_saying_what_to_do(vc_fits, tmp_path):
    """``load(dir).model`` was None (``.model.loglike``: AttributeError on None); a
    results directory holds no data or statistics to build the model from."""
    fit = vc_fits[1]
    fit.save(tmp_path / "res")
    loaded = load(tmp_path / "res")
    assert loaded.fitted_model is None and fit.fitted_model is fit.model
    with pytest.raises(NoModelError, match="loaded results have no model: .*from_statistics"):
        loaded.model.loglike  # noqa: B018 - the access is what is checked
    assert not hasattr(loaded, "model")  # an AttributeError too
    assert isinstance(NoModelError("x"), SpecError)
    np.testing.assert_array_equal(loaded.fe_params, fit.fe_params)


def test_results_pickled_with_the_model_as_an_attribute_keep_it(vc_fits):
    """Results pickled before ``model`` became a property hold it as ``"model"`` in
    their state: unpickled now they have it (fitted values, predictions), and the model
    can be set."""
    fit = vc_fits[1]
    state = fit.__getstate__()
    state["model"] = state.pop("fitted_model")  # the state's old form
    kind, args, *_ = fit.__reduce_ex__(2)
    old = kind(*args)
    old.__setstate__(state)
    assert old.model is fit.model and old.fitted_model is fit.model
    np.testing.assert_array_equal(old.fittedvalues, fit.fittedvalues)
    np.testing.assert_array_equal(old.predict(), fit.predict())
    again = pickle.loads(pickle.dumps(old))
    assert again.fitted_model is not None
    np.testing.assert_array_equal(again.fittedvalues, fit.fittedvalues)
    old.model = None
    assert old.fitted_model is None and not hasattr(old, "model")
    old.model = fit.model
    assert old.fitted_model is fit.model


@pytest.mark.parametrize("reml", [True, False])
def test_params_object_is_the_point_of_llf(reml):
    """statsmodels' ``model.loglike(result.params_object)`` (its test_dietox) is llf."""
    df = make_data(n_groups=30, vc_sd=0.5, seed=3)
    model = mixedlm("y ~ x1", df, groups="g", re_formula="1 + x1", vc_formula={"sub": "0 + C(sub)"})
    res = model.fit(reml=reml)
    point = res.params_object
    assert model.loglike(point) == pytest.approx(res.llf, rel=1e-12)
    np.testing.assert_allclose(point.cov_re * res.scale, res.cov_re, rtol=1e-12)
    np.testing.assert_allclose(point.vcomp * res.scale, res.vcomp, rtol=1e-12)
    np.testing.assert_array_equal(point.fe_params, res.fe_params)


def test_fitted_values_and_residuals_are_series_on_the_kept_rows():
    """As statsmodels' formula fits: Series indexed like the frame's rows the fit used
    (``missing="drop"``: the kept ones), so they align with the frame; arrays stay
    arrays."""
    df = make_data(n_groups=15, seed=41)
    df.index = df.index * 3 + 7
    df.loc[df.index[[2, 5]], "x1"] = np.nan
    with pytest.warns(DroppedRowsWarning):
        res = MixedLM.from_formula("y ~ x1", df, groups="g", missing="drop").fit()
    kept = df.dropna(subset=["x1"]).index
    for what in ("fittedvalues", "resid"):
        series = getattr(res, what)
        assert isinstance(series, pd.Series) and series.name is None  # as statsmodels
        pd.testing.assert_index_equal(series.index, kept)
    np.testing.assert_allclose(res.fittedvalues + res.resid, df.loc[kept, "y"], rtol=1e-12)
    endog, exog, exog_re, groups = design(df.loc[kept], slope=False)
    arrays = MixedLM(endog, exog, groups, exog_re=exog_re).fit()
    assert isinstance(arrays.fittedvalues, np.ndarray) and isinstance(arrays.resid, np.ndarray)


ESTIMATES = ("params", "bse", "fe_params", "bse_fe", "bse_re", "cov_re", "tvalues", "pvalues")


def test_arrays_in_arrays_out_pandas_in_pandas_out():
    """statsmodels' rule for every estimate: ndarrays for a model of ndarrays; Series and
    DataFrames by name for pandas or formula input, fitted values and residuals indexed
    like the input's kept rows."""
    df = make_data(n_groups=12, seed=5)
    df.index = np.arange(len(df)) * 3 + 7
    endog, exog, exog_re, groups = design(df)
    arrays = MixedLM(endog, exog, groups, exog_re=exog_re).fit()
    for name in ESTIMATES:
        assert isinstance(getattr(arrays, name), np.ndarray), name
    for value in (arrays.cov_params(), arrays.conf_int(), arrays.fittedvalues, arrays.resid):
        assert isinstance(value, np.ndarray)
    frame = MixedLM(df["y"], pd.DataFrame(exog, index=df.index), groups, exog_re=exog_re).fit()
    np.testing.assert_allclose(frame.params.to_numpy(), arrays.params, rtol=1e-12)
    pd.testing.assert_index_equal(frame.fittedvalues.index, df.index)
    df.loc[df.index[4], "x1"] = np.nan
    with pytest.warns(DroppedRowsWarning):
        res = mixedlm("y ~ x1", df, groups="g", missing="drop").fit()
    for name in ESTIMATES:
        assert isinstance(getattr(res, name), (pd.Series, pd.DataFrame)), name
    kept = df.index.delete(4)
    for value in (res.fittedvalues, res.resid):
        assert isinstance(value, pd.Series)
        pd.testing.assert_index_equal(value.index, kept)
    np.testing.assert_allclose(res.fittedvalues + res.resid, df["y"].drop(df.index[4]))


def test_array_estimates_are_the_values_of_the_pandas_ones():
    """For a model of ndarrays the estimates made without pandas are, bit for bit, the
    values of the Series a pandas model's results hold (read-only copies, as
    ``Series.to_numpy()`` gives them)."""
    df = make_data(n_groups=12, seed=7)
    endog, exog, exog_re, groups = design(df)
    arrays = MixedLM(endog, exog, groups, exog_re=exog_re).fit()
    frame = MixedLM(pd.Series(endog), pd.DataFrame(exog), groups, exog_re=exog_re).fit()
    for name in ("params", "bse", "fe_params", "bse_fe", "bse_re", "tvalues", "pvalues"):
        got, want = getattr(arrays, name), getattr(frame, name).to_numpy()
        assert got.dtype == want.dtype and got.shape == want.shape, name
        assert got.tobytes() == want.tobytes(), name
    for name in ("params", "bse", "fe_params", "bse_fe", "bse_re", "pvalues"):
        assert not getattr(arrays, name).flags.writeable, name
    assert not np.shares_memory(arrays.params, arrays.to_state().params)


def test_an_exog_vc_column_zero_in_a_group_is_reported_as_statsmodels(tmp_path):
    """statsmodels reports every column of a group's ``exog_vc`` matrix, one zero on the
    group's rows too (BLUP 0, conditional variance the component's variance); dmixed
    left it out."""
    from statsmodels.regression.mixed_linear_model import VCSpec

    rng = np.random.default_rng(1)
    sizes = rng.integers(6, 15, 30)
    groups = np.repeat(np.arange(30), sizes)
    n = groups.size
    exog = np.c_[np.ones(n), rng.normal(size=n)]
    mats = [rng.normal(size=(s, 2)) for s in sizes]
    mats[2][:, 1] = 0.0
    mats[5][:, 0] = 0.0
    endog = exog @ [1.0, 0.5] + rng.normal(size=n) + np.repeat(rng.normal(size=30), sizes)
    endog += np.concatenate([m @ rng.normal(size=2) for m in mats])
    spec = VCSpec(["a"], [[["c0", "c1"]] * 30], [mats])
    ours = MixedLM(endog, exog, groups, exog_vc=spec).fit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = SmMixedLM(endog, exog, groups, exog_vc=spec).fit()
    ours.save(tmp_path / "res")
    for res in (ours, load(tmp_path / "res")):
        for g in (1, 2, 5):
            a, b = res.random_effects[g], theirs.random_effects[g]
            assert list(a.index) == list(b.index)
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-12)
            ca, cb = res.random_effects_cov[g], theirs.random_effects_cov[g]
            assert list(ca.index) == list(cb.index)
            np.testing.assert_allclose(ca, cb, rtol=1e-4, atol=1e-12)


def test_normalized_cov_params_is_statsmodels():
    """``cov_params() / scale``, by name (statsmodels orders the columns otherwise)."""
    df = make_data(n_groups=30, seed=8)
    df["y"] *= 3.0  # a scale far from 1
    df["site"] = np.array(list("abc"))[np.arange(len(df)) % 3]
    kw = dict(groups="g")
    ours = mixedlm("y ~ x1 + C(site)", df, **kw).fit()
    theirs = SmMixedLM.from_formula("y ~ x1 + C(site)", df, **kw).fit()
    got = ours.normalized_cov_params
    want = theirs.normalized_cov_params.loc[got.index, got.columns]
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-9)
    np.testing.assert_allclose(got * ours.scale, ours.cov_params(), rtol=1e-14)


def test_random_effects_var_of_variance_components_only_is_refused():
    """A model of variance components alone has no exog_re random effects: the frame of
    their conditional variances had no column; the refusal says where the components'
    are (the diagonals of random_effects_cov), which are their BLUPs' layout."""
    df = make_data(n_groups=20, max_size=8, vc_sd=0.6, seed=1)
    endog, exog, _, groups = design(df)
    res = MixedLM(endog, exog, groups, exog_vc=vc_dict(df)).fit()
    with pytest.raises(
        SpecError,
        match=r"this model has none \(variance components \['sub'\] only\): "
        r".*random_effects_var\(vc=True\)",
    ):
        res.random_effects_var()
    first = res.group_labels[0]
    cov = res.random_effects_cov[first]
    assert list(cov.index) == list(res.random_effects[first].index)
    assert (np.diag(cov) > 0).all()
    # vc=True gives them in the long frame of the BLUPs (it raised before)
    var = res.random_effects_var(vc=True)
    mine = var[var["group"] == first]
    names = [f"{c}[{k}]" for c, k in zip(mine["component"], mine["column"], strict=True)]
    np.testing.assert_allclose(mine["value"], np.diag(cov.loc[names, names]), rtol=1e-14)


@pytest.mark.parametrize("dask", [False, True])
def test_random_effects_frame_of_variance_components_only_is_refused(dask):
    """The wide frame of a model of variance components alone had no column (it was
    returned empty, as if there were no BLUPs): refused as random_effects_var(), the
    message naming vc=True, whose long frame holds the components' BLUPs."""
    df = make_data(n_groups=20, max_size=8, vc_sd=0.6, seed=1)
    endog, exog, _, groups = design(df)
    res = MixedLM(endog, exog, groups, exog_vc=vc_dict(df)).fit()
    with pytest.raises(
        SpecError,
        match=r"random_effects_frame\(\) .* this model has none \(variance components "
        r"\['sub'\] only\): .*random_effects_frame\(vc=True\)",
    ):
        res.random_effects_frame(dask=dask)
    long = res.random_effects_frame(vc=True, dask=dask)
    long = long.compute() if dask else long
    first = res.group_labels[0]
    mine = long[long["group"] == first]
    np.testing.assert_array_equal(mine["value"], res.random_effects[first].to_numpy())


# --------------------------------------------------------------------------------------
# names and types as statsmodels' (scripts written for statsmodels index and test them)
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def intercept_fits():
    """A model of pandas arrays without exog_re: statsmodels' and dmixed's fits."""
    df = make_data(n_groups=30, seed=11)
    exog = df[["x1"]].assign(c0=1.0)[["c0", "x1"]]
    theirs = SmMixedLM(df.y, exog, df.g).fit()
    ours = MixedLM(df.y, exog, df.g).fit()
    return ours, theirs


def test_the_random_intercept_of_arrays_is_named_as_statsmodels(intercept_fits):
    ours, theirs = intercept_fits
    assert list(theirs.cov_re.index) == ["Group Var"]
    pd.testing.assert_index_equal(ours.cov_re.index, theirs.cov_re.index)
    pd.testing.assert_index_equal(ours.cov_re.columns, theirs.cov_re.columns)
    pd.testing.assert_index_equal(ours.params.index, theirs.params.index)
    key = next(iter(theirs.random_effects))
    pd.testing.assert_index_equal(ours.random_effects[key].index, theirs.random_effects[key].index)
    assert list(ours.random_effects_frame().columns) == ["Group Var"]
    assert ours.model.data.exog_re_names == theirs.model.data.exog_re_names
    assert ours.model.data.exog_re_names_full == theirs.model.data.exog_re_names_full
    # with exog_re given, the intercept column keeps its own name, as in statsmodels
    df = make_data(n_groups=30, seed=11)
    exog = df[["x1"]].assign(c0=1.0)[["c0", "x1"]]
    given = MixedLM(df.y, exog, df.g, exog_re=exog[["c0"]]).fit()
    assert list(given.cov_re.index) == ["c0"] and given.params.index[-1] == "c0 Var"


@pytest.mark.parametrize(
    "attr", ["params", "fe_params", "bse", "bse_fe", "bse_re", "tvalues", "pvalues"]
)
def test_estimates_are_unnamed_series_as_statsmodels(intercept_fits, attr):
    ours, theirs = intercept_fits
    assert getattr(theirs, attr).name is None
    assert getattr(ours, attr).name is None


def test_llf_and_scale_are_numpy_floats_as_statsmodels(intercept_fits, tmp_path):
    ours, theirs = intercept_fits
    for res in (ours, load(_saved(ours, tmp_path)), pickle.loads(pickle.dumps(ours))):
        for attr in ("llf", "scale"):
            assert type(getattr(theirs, attr)) is np.float64
            assert type(getattr(res, attr)) is np.float64, attr
            assert getattr(res, attr) == getattr(ours, attr)
    # results pickled when they held Python floats read back as numpy's
    old = pickle.loads(pickle.dumps(ours))
    old.__dict__.update(llf=float(ours.llf), scale=float(ours.scale))
    again = pickle.loads(pickle.dumps(old))
    assert type(again.llf) is np.float64 and type(again.scale) is np.float64


def _saved(res, tmp_path):
    path = tmp_path / "saved"
    res.save(path)
    return path


def test_freepat_is_the_pattern_given_to_fit_as_statsmodels():
    from statsmodels.regression.mixed_linear_model import MixedLMParams as SmParams

    import dmixed

    df = make_data(n_groups=30, seed=12)
    kw = dict(groups="g", re_formula="1 + x1")
    theirs = SmMixedLM.from_formula("y ~ x1", df, **kw)
    ours = mixedlm("y ~ x1", df, **kw)
    assert theirs.fit().freepat is None and ours.fit().freepat is None
    cov = np.array([[1.0, 0.0], [0.0, 1.0]])
    free_sm = SmParams.from_components(fe_params=np.ones(2), cov_re=cov)
    free = dmixed.MixedLMParams.from_components(fe_params=np.ones(2), cov_re=cov)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert theirs.fit(free=free_sm).freepat is free_sm
    assert ours.fit(free=free).freepat is free


NOT_OFFERED = ["score_obsv", "covjac", "bsejac", "covjhj", "bsejhj"]


@pytest.fixture(scope="module")
def small_fit():
    df = make_data(n_groups=10, seed=12)
    return mixedlm("y ~ x1", df, groups="g").fit(), df


@pytest.mark.parametrize("name", NOT_OFFERED)
def test_per_observation_statistics_say_why_not_and_what_instead(small_fit, name):
    """statsmodels' MixedLM fails on these with an AttributeError (no ``score_obs``);
    dmixed says why, and that the model-based covariance is not a robust one."""
    from dmixed import NotOfferedError

    res, _ = small_fit
    match = rf"{name} is not offered.*cov_params\(\) and bse are the model-based .*not a robust"
    with pytest.raises(NotImplementedError, match=match):
        getattr(res, name)
    with pytest.raises(NotOfferedError):
        getattr(res, name)
    assert not hasattr(res, name)  # as for statsmodels' MixedLM, and getattr's default
    assert getattr(res, name, None) is None


def test_hessv_is_the_hessian_at_the_estimates(small_fit):
    """statsmodels' hessv is ``(hess, sing)`` of ``model.hessian``; dmixed's is at the
    estimates (statsmodels reads its plain ``params`` as a Cholesky packing)."""
    res, _ = small_fit
    hess, sing = res.hessv
    ref, ref_sing = res.model.hessian(res.params_object)
    np.testing.assert_array_equal(hess, ref)
    assert sing is ref_sing is False
    np.testing.assert_allclose(
        np.linalg.inv(-hess), np.asarray(res.cov_params()), rtol=1e-10, atol=1e-14
    )


def test_get_nlfun_is_not_offered_as_in_statsmodels(small_fit):
    res, _ = small_fit
    with pytest.raises(NotImplementedError, match="get_nlfun is not offered.*t_test"):
        res.get_nlfun(np.exp)


def test_results_load_is_dmixed_load(small_fit, tmp_path):
    res, _ = small_fit
    res.save(tmp_path / "res")
    back = MixedLMResults.load(tmp_path / "res")
    assert isinstance(back, MixedLMResults)
    np.testing.assert_array_equal(back.params, res.params)
    assert back.llf == res.llf
    assert res.cov_pen is None  # statsmodels' penalty of an unpenalized fit


def test_every_public_name_of_statsmodels_results_is_there(small_fit):
    """Every public attribute of statsmodels' MixedLMResults is one of dmixed's results,
    but ``initialize`` (statsmodels' internal set-up of a results object)."""
    import statsmodels.formula.api as smf

    res, df = small_fit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels' convergence notes
        theirs = smf.mixedlm("y ~ x1", df, groups="g").fit()
    public = {name for name in dir(theirs) if not name.startswith("_")}
    assert public - set(dir(res)) == {"initialize"}


@pytest.mark.parametrize("full_output", [False, True])
def test_hist_is_the_fit_log_whatever_full_output_and_says_how_it_differs(full_output):
    """statsmodels' ``hist`` is None without ``full_output`` and scipy's return dicts
    with it; dmixed keeps its own per-iteration log either way, and ``hist``'s docstring
    says so (a user reading statsmodels' keys was left to find out)."""
    df = make_data(n_groups=20, seed=3)
    res = mixedlm("y ~ x1", df, groups="g").fit(full_output=full_output)
    assert res.hist is res.fit_history
    assert res.hist[-1]["method"] == "final" and len(res.hist) == res.n_iter + 1
    for entry in res.hist:
        assert set(entry) == {"iteration", "method", "llf", "grad_norm", "elapsed", "params"}
    doc = MixedLMResults.hist.__doc__
    assert "full_output" in doc and "allvecs" in doc and "None" in doc


def test_the_deviance_docs_say_lme4_deprecates_deviance_of_a_reml_fit():
    """The README and ``deviance`` called −2ℓ of a REML fit "lme4's default
    ``deviance``": lme4 returns that number but deprecates ``deviance()`` of a REML
    fit (it warns and points to ``REMLcrit``).  Both now say so."""
    from pathlib import Path

    readme = " ".join((Path(__file__).parents[2] / "README.md").read_text().split())
    doc = " ".join((MixedLMResults.deviance.__doc__ or "").split())
    for text in (readme, doc):
        assert "lme4's default `deviance`" not in text.replace("``", "`")
        assert "deprecates `deviance()` of a REML fit" in text.replace("``", "`")
        assert "REMLcrit" in text


@pytest.mark.parametrize("reml", [False, True])
def test_mixedmodels_names_objective_deviance_dof_and_optsummary(reml, tmp_path):
    """A MixedModels.jl user found no ``deviance``, ``objective`` or ``dof`` on the
    results and no ``fmin``, ``feval`` or ``optimizer`` on the OptSummary the README
    likens to MixedModels.jl's.  Their meanings are MixedModels.jl's: objective =
    deviance = −2ℓ (under REML the REML criterion, lme4's ``REMLcrit``), dof the
    parameters the information criteria count; they survive save and load."""
    df = make_data(n_groups=25, seed=4)
    res = mixedlm("y ~ x1", df, groups="g", re_formula="1 + x1").fit(reml=reml)
    assert res.objective == -2.0 * res.llf
    assert res.deviance == res.objective
    assert res.dof == len(res.fe_params) + 3 + 1  # β, Ψ's triangle, σ²
    if not reml:
        assert res.aic == pytest.approx(res.deviance + 2 * res.dof, rel=1e-14)
    opt = res.optimizer
    assert opt.fmin == pytest.approx(res.objective, rel=1e-12)
    assert opt.finitial == -2.0 * opt.initial_llf and opt.finitial >= opt.fmin
    assert opt.feval == opt.n_evals > 0
    assert opt.optimizer == opt.methods[-1]
    res.save(tmp_path / "r")
    back = load(tmp_path / "r")
    assert (back.objective, back.deviance, back.dof) == (res.objective, res.deviance, res.dof)
    assert back.optimizer.fmin == opt.fmin and back.optimizer.optimizer == opt.optimizer
