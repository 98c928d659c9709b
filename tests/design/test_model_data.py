"""statsmodels' data attributes of a model (endog, exog, groups, data, predict, ...)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.regression.mixed_linear_model as smlm

from dmixed import DroppedRowsWarning, MixedLM, MixedLMParams, SpecError, mixedlm

from .._synth import design, make_data


def test_attributes_hold_the_kept_rows_as_statsmodels():
    df = make_data(n_groups=6, seed=2)
    df.index = np.arange(len(df)) + 100
    df.loc[df.index[3], "x1"] = np.nan
    with pytest.warns(DroppedRowsWarning):
        model = mixedlm("y ~ x1", df, groups="g", re_formula="~x1", missing="drop")
    kept = df.drop(df.index[3])
    np.testing.assert_array_equal(model.endog, kept["y"].to_numpy())
    np.testing.assert_array_equal(model.exog[:, 1], kept["x1"].to_numpy())
    np.testing.assert_array_equal(model.exog_re[:, 1], kept["x1"].to_numpy())
    assert model.group_labels == sorted(kept["g"].unique().tolist())
    for label, rows in model.row_indices.items():
        np.testing.assert_array_equal(rows, np.flatnonzero(kept["g"].to_numpy() == label))
    assert model.endog_names == "y"
    assert model.data.xnames == ["Intercept", "x1"]
    assert model.data.exog_re_names_full == ["g Var", "g x x1 Cov", "x1 Var"]
    pd.testing.assert_index_equal(model.data.row_labels, kept.index)


def test_group_list_is_statsmodels():
    df = make_data(n_groups=6, seed=3).sample(frac=1.0, random_state=0)
    endog, exog, exog_re, groups = design(df)
    groups = np.asarray(groups).astype(str)
    model = MixedLM(endog, exog, groups, exog_re=exog_re)
    ref = smlm.MixedLM(endog, exog, groups, exog_re=exog_re)
    for array in (np.asarray(endog), np.asarray(exog)):
        ours, theirs = model.group_list(array), ref.group_list(array)
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_array_equal(a, b)
    assert model.group_list(None) is None
    with pytest.raises(SpecError, match="expected"):
        model.group_list(np.asarray(endog)[:-1])


def test_exog_vc_of_arrays_is_statsmodels_and_a_formula_model_says_why_not():
    rng = np.random.default_rng(5)
    groups = rng.permutation(np.repeat(np.arange(8), 9))
    n = groups.size
    exog = np.column_stack([np.ones(n), rng.normal(size=n)])
    endog = rng.normal(size=n)
    sub = rng.integers(0, 3, size=n)
    exog_vc = {
        "sub": {k: (sub[groups == k][:, None] == np.arange(3)) * 1.0 for k in range(8)},
        "a": {k: rng.normal(size=(int(np.sum(groups == k)), 2)) for k in range(8)},
    }
    with pytest.warns(FutureWarning):  # statsmodels' note on a dict exog_vc
        ref = smlm.MixedLM(endog, exog, groups, exog_vc=exog_vc).exog_vc
    ours = MixedLM(endog, exog, groups, exog_vc=exog_vc).exog_vc
    assert ours.names == ref.names
    for k in range(len(ref.names)):
        assert [list(c) for c in ours.colnames[k]] == [list(c) for c in ref.colnames[k]]
        for a, b in zip(ours.mats[k], ref.mats[k], strict=True):
            np.testing.assert_array_equal(a, b)
    plain = MixedLM(endog, exog, groups).exog_vc
    assert (plain.names, plain.mats) == (smlm.MixedLM(endog, exog, groups).exog_vc.names, [])
    df = make_data(n_groups=6, seed=4)
    model = mixedlm("y ~ x1", df, groups="g", vc_formula={"c": "0 + x1"})
    with pytest.raises(AttributeError, match="vc_column_names"):
        _ = model.exog_vc


def test_predict_is_the_fixed_part():
    df = make_data(n_groups=6, seed=4)
    endog, exog, exog_re, groups = design(df)
    model = MixedLM(endog, exog, groups, exog_re=exog_re)
    res = model.fit()
    np.testing.assert_allclose(model.predict(res.params), exog @ res.fe_params, rtol=1e-14)
    point = MixedLMParams.from_components(np.arange(3.0), cov_re=np.eye(2))
    np.testing.assert_allclose(model.predict(point, exog[:4]), exog[:4] @ np.arange(3.0))
    with pytest.raises(SpecError, match=r"expected \(m, 3\)"):
        model.predict(res.params, exog[:, :2])


def test_a_model_without_rows_says_so():
    df = make_data(n_groups=6, seed=4)
    res = mixedlm("y ~ x1", df, groups="g").fit()
    stats_model = MixedLM.from_statistics(res.model.statistics(), res.model.spec)
    with pytest.raises(SpecError, match="not in memory"):
        _ = stats_model.exog


# --------------------------------------------------------------------------------------
# remove_data (statsmodels'): the data go, the estimates and the summary stay
# --------------------------------------------------------------------------------------


def test_remove_data_keeps_the_estimates_and_drops_the_rows():
    import pickle

    import dmixed

    df = make_data(n_groups=30, seed=4)
    model = mixedlm("y ~ x1 + x2", df, groups="g", re_formula="1 + x1")
    res = model.fit()
    kept = {
        "summary": str(res.summary()),
        "params": res.params.copy(),
        "bse": res.bse.copy(),
        "cov": res.cov_params().copy(),
        "re": res.random_effects_frame().copy(),
    }
    assert len(res.fittedvalues) == len(df)  # computed (cached) before removal
    size = len(pickle.dumps(res))
    res.remove_data()
    assert model.rows is None and model.data_removed
    assert str(res.summary()) == kept["summary"]
    pd.testing.assert_series_equal(res.params, kept["params"])
    pd.testing.assert_series_equal(res.bse, kept["bse"])
    pd.testing.assert_frame_equal(res.cov_params(), kept["cov"])
    pd.testing.assert_frame_equal(res.random_effects_frame(), kept["re"])
    new = df.iloc[:10]
    assert np.isfinite(res.predict(new, include_random=True)).all()  # the spec stays
    for needs_rows in (
        lambda: res.fittedvalues,
        lambda: res.resid,
        lambda: res.predict(),
        lambda: model.endog,
        lambda: model.exog,
    ):
        with pytest.raises(SpecError, match=r"remove_data\(\)"):
            needs_rows()
    assert len(pickle.dumps(res)) < size / 2
    # the statistics of the data pass stay in this process: an ML refit needs no data
    other = mixedlm("y ~ x1", df, groups="g", re_formula="1 + x1").fit()
    table = dmixed.anova(other, res, refit=True)
    ml = mixedlm("y ~ x1 + x2", df, groups="g", re_formula="1 + x1").fit(reml=False)
    assert table.logLik.iloc[1] == pytest.approx(ml.llf, rel=1e-9)


def test_remove_data_of_a_dask_fit_drops_the_collection():
    dd = pytest.importorskip("dask.dataframe")
    import dask

    df = make_data(n_groups=20, seed=6)
    with dask.config.set(scheduler="sync"):
        res = mixedlm("y ~ x1", dd.from_pandas(df, npartitions=2), groups="g").fit()
    res.remove_data()
    assert res.model.source is None
    with pytest.raises(SpecError, match=r"remove_data\(\)"):
        res.fittedvalues  # noqa: B018 - the property raises
    assert np.isfinite(res.bse).all()


def test_n_groups_and_formula_are_statsmodels():
    import statsmodels.api as sm

    df = make_data(n_groups=17, seed=3)
    ours = mixedlm("y ~ x1", df, groups="g")
    theirs = sm.MixedLM.from_formula("y ~ x1", df, groups="g")
    assert ours.n_groups == theirs.n_groups == 17
    assert ours.formula == theirs.formula == "y ~ x1"
    assert MixedLM(theirs.endog, theirs.exog, theirs.groups).formula is None


# --------------------------------------------------------------------------------------
# statsmodels' per-group lists: made on first use, refused without rows in memory
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("re_formula", [None, "1 + x1", "0 + x1"])
def test_group_lists_are_statsmodels(re_formula):
    df = make_data(n_groups=7, seed=8).sample(frac=1.0, random_state=1)
    df["g"] = df["g"].astype(str)
    theirs = smlm.MixedLM.from_formula("y ~ x1 + x2", df, groups="g", re_formula=re_formula)
    model = mixedlm("y ~ x1 + x2", df, groups="g", re_formula=re_formula)
    assert "_group_lists" not in model.__dict__
    model.fit()
    assert "_group_lists" not in model.__dict__  # a fit does not make them
    for name in ("endog_li", "exog_li", "exog_re_li", "exog_re2_li"):
        ours, ref = getattr(model, name), getattr(theirs, name)
        assert len(ours) == len(ref) == model.n_groups
        for a, b in zip(ours, ref, strict=True):
            assert a.shape == b.shape
            if name == "exog_re2_li":  # the same sums in another order of additions
                np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-13)
            else:
                np.testing.assert_array_equal(a, b)
    assert model.exog_li is model.exog_li  # made once
    assert model.exog_re2_li is model.exog_re2_li


def test_group_lists_of_arrays_without_random_effects_are_statsmodels():
    rng = np.random.default_rng(9)
    groups = np.repeat(np.arange(5), 6)
    n = groups.size
    exog_vc = {"a": {k: rng.normal(size=(6, 2)) for k in range(5)}}
    endog, exog = rng.normal(size=n), np.column_stack([np.ones(n), rng.normal(size=n)])
    with pytest.warns(FutureWarning):
        theirs = smlm.MixedLM(endog, exog, groups, exog_vc=exog_vc)
    model = MixedLM(endog, exog, groups, exog_vc=exog_vc)
    assert theirs.exog_re_li is None and model.exog_re_li is None
    assert theirs.exog_re2_li is None and model.exog_re2_li is None
    for a, b in zip(model.exog_li, theirs.exog_li, strict=True):
        np.testing.assert_array_equal(a, b)


def test_group_lists_go_with_the_rows():
    import pickle

    model = mixedlm("y ~ x1", make_data(n_groups=6, seed=10), groups="g")
    assert len(model.exog_li) == 6
    assert "_group_lists" not in pickle.loads(pickle.dumps(model)).__dict__
    assert len(pickle.loads(pickle.dumps(model)).endog_li) == 6
    model.remove_data()
    with pytest.raises(SpecError, match=r"model\.exog_li .*remove_data\(\)"):
        _ = model.exog_li
    with pytest.raises(SpecError, match=r"model\.exog_re2_li .*remove_data\(\)"):
        _ = model.exog_re2_li


@pytest.mark.parametrize("name", ["endog_li", "exog_li", "exog_re_li", "exog_re2_li"])
def test_group_lists_of_dask_data_say_why_not(name):
    dd = pytest.importorskip("dask.dataframe")

    df = make_data(n_groups=6, seed=11)
    model = mixedlm("y ~ x1", dd.from_pandas(df, npartitions=2), groups="g")
    with pytest.raises(SpecError, match=rf"model\.{name} .*not in memory \(Dask data"):
        getattr(model, name)
