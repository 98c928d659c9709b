"""Prediction: the fixed part, the random part, unseen groups."""

from __future__ import annotations

import io
import uuid
import warnings

import cloudpickle
import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from dmixed import MixedLM, mixedlm
from dmixed.design import is_dask
from dmixed.errors import DataError, DroppedRowsWarning, SpecError, UnseenGroupsWarning

from .._synth import design, make_data


def test_predict_fixed_and_with_random_effects():
    df = make_data(n_groups=30, seed=9)
    endog, exog, exog_re, groups = design(df)
    res = MixedLM(endog, exog, groups, exog_re=exog_re).fit()
    np.testing.assert_allclose(res.predict(exog=exog), exog @ res.fe_params)
    with_re = res.predict(exog=exog, exog_re=exog_re, groups=groups, include_random=True)
    np.testing.assert_allclose(with_re, res.fittedvalues, rtol=1e-12)
    # an unseen group gets the population prediction, with a warning that counts them
    unseen = {"exog": exog[:3], "exog_re": exog_re[:3], "groups": [-1, -2, -3]}
    with pytest.warns(UnseenGroupsWarning, match=r"3 of 3 rows belong to 3 group\(s\)"):
        new = res.predict(**unseen, include_random=True)
    np.testing.assert_allclose(new, exog[:3] @ res.fe_params)
    assert np.isnan(res.predict(**unseen, include_random=True, new_groups="nan")).all()
    with pytest.raises(DataError, match=r"\(-1, -2, -3\); new_groups='error'"):
        res.predict(**unseen, include_random=True, new_groups="error")
    with pytest.raises(DataError, match="'groups' holds text keys .* numeric keys"):
        res.predict(exog=exog[:3], exog_re=exog_re[:3], groups=["0", "1", "2"], include_random=True)
    with pytest.raises(ValueError, match="columns"):
        res.predict(exog=exog[:, :2])


def _with_holes() -> pd.DataFrame:
    """Rows with missing values in several partitions, and an index that is not 0..n-1."""
    df = make_data(n_groups=30, max_size=12, seed=3)
    df.loc[df.index[::13], "x2"] = np.nan
    df.loc[df.index[5::41], "y"] = np.nan
    df.index = df.index * 10 + 5
    return df


def test_dask_fitted_values_of_a_drop_fit_are_the_kept_rows():
    """missing="drop": fittedvalues, resid and predict of a Dask fit, once computed, are
    the in-process fit's values at the kept rows, indexed like them."""
    df = _with_holes()
    kept = df.dropna(subset=["y", "x2"]).index
    with pytest.warns(DroppedRowsWarning):
        ref = mixedlm("y ~ x1 + x2", df, groups="g", missing="drop").fit()
    ddf = dd.from_pandas(df, npartitions=3)
    with dask.config.set(scheduler="sync"):
        with pytest.warns(DroppedRowsWarning):
            res = mixedlm("y ~ x1 + x2", ddf, groups="g", missing="drop").fit()
        fitted = res.fittedvalues.compute()
        resid = res.resid.compute()
        pred = res.predict(ddf, include_random=True).compute()
    pd.testing.assert_index_equal(fitted.index, kept)
    np.testing.assert_allclose(fitted.to_numpy(), ref.fittedvalues, rtol=1e-8)
    pd.testing.assert_index_equal(resid.index, kept)
    np.testing.assert_allclose(resid.to_numpy(), ref.resid, rtol=1e-7, atol=1e-10)
    # new rows: every row, NaN where x2 is missing (the response is not needed)
    pd.testing.assert_index_equal(pred.index, df.index)
    expected = ref.predict(df, include_random=True)
    pd.testing.assert_index_equal(expected.index, df.index)
    np.testing.assert_array_equal(np.isnan(pred.to_numpy()), df.x2.isna().to_numpy())
    np.testing.assert_allclose(pred.to_numpy(), expected.to_numpy(), rtol=1e-8)
    # predict() with no data: the fixed part at the kept rows, lazily, as statsmodels'
    with dask.config.set(scheduler="sync"):
        fixed = res.predict()
        assert is_dask(fixed)
        fixed = fixed.compute()
        with_re = res.predict(include_random=True).compute()
    pd.testing.assert_index_equal(fixed.index, kept)
    assert fixed.name is None
    np.testing.assert_allclose(fixed.to_numpy(), ref.predict(), rtol=1e-8)
    np.testing.assert_allclose(with_re.to_numpy(), ref.fittedvalues, rtol=1e-8)


@pytest.fixture(scope="module")
def int_fit():
    """A fit with integer group keys 0..9 (issue: '0' used to find no group, silently)."""
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(10), 20)
    df = pd.DataFrame({"g": g, "x": rng.normal(size=200)})
    df["y"] = 1 + df.x + rng.normal(size=10)[g] + rng.normal(size=200)
    return mixedlm("y ~ x", df, groups="g").fit()


def _new(keys, x=(0.5, -0.3)) -> pd.DataFrame:
    return pd.DataFrame({"g": keys, "x": list(x)}, index=[7, 3])


@pytest.mark.parametrize(
    "keys",
    [
        [0, 1],
        [0.0, 1.0],
        np.array([0, 1], dtype=np.uint8),
        np.array([0, 1], dtype=object),
        pd.Categorical([0, 1]),
        pd.array([0, 1], dtype="Int64"),
    ],
    ids=["int", "float", "uint8", "object-ints", "categorical", "nullable"],
)
def test_keys_find_their_group_by_value(int_fit, keys):
    """Numbers of any storage find the groups fitted as numbers (the fit's own rule)."""
    pred = int_fit.predict(_new(keys), include_random=True)
    blup = int_fit.random_effects_frame().to_numpy()[:2, 0]
    fixed = int_fit.predict(_new([0, 1]))
    np.testing.assert_allclose(pred.to_numpy(), fixed.to_numpy() + blup, rtol=1e-12)
    assert list(pred.index) == [7, 3]


@pytest.mark.parametrize(
    "keys, have",
    [(["0", "1"], "text"), ([True, False], "boolean"), (pd.Categorical(["0", "1"]), "text")],
)
def test_keys_of_another_class_are_refused(int_fit, keys, have):
    """'0' is not the group fitted as 0: an error naming the column, never a silent
    population prediction."""
    with pytest.raises(DataError, match=rf"'g' holds {have} keys .* fitted with numeric keys"):
        int_fit.predict(_new(keys), include_random=True)
    # the fixed part does not look at the keys' class
    assert int_fit.predict(_new(keys)).notna().all()


def _tuple_keys(values: list) -> pd.Series:
    keys = np.empty(len(values), dtype=object)
    keys[:] = values
    return pd.Series(keys, dtype=object)


@pytest.mark.parametrize("fitted", ["tuples", "their text"])
@pytest.mark.parametrize("engine", ["pandas", "dask"])
def test_tuple_keys_and_their_text_are_refused_for_each_other(fitted, engine):
    """Groups fitted as the text ``'(3, 3)'`` (the labels of a Dask collection whose
    tuple keys Dask made text) and new rows keyed ``(3, 3)``, or the reverse: once one
    key class, so every row got the population prediction with only a warning; an error
    naming the column and both kinds of keys."""
    df = make_data(n_groups=12, seed=5)
    tuples = _tuple_keys([(int(v) % 4, int(v)) for v in df.g])
    text = tuples.astype(str)
    df["g"] = tuples if fitted == "tuples" else text
    res = mixedlm("y ~ x1", df, groups="g").fit()
    new = df.iloc[:4].assign(g=(text if fitted == "tuples" else tuples).iloc[:4].to_numpy())
    have, want = ("text", "tuple") if fitted == "tuples" else ("tuple", "text")
    shown = rf"'g' holds {have} keys \(such as .*\) but the model was fitted with {want} keys"
    if engine == "dask":
        with dask.config.set({"dataframe.convert-string": True}):
            new = dd.from_pandas(new, npartitions=2)
    with pytest.raises(DataError, match=shown), dask.config.set(scheduler="sync"):
        pred = res.predict(new, include_random=True)
        if engine == "dask":
            pred.compute()
    same = df.iloc[:4] if engine == "pandas" else dd.from_pandas(df.iloc[:4], npartitions=2)
    with dask.config.set(scheduler="sync"):
        pred = res.predict(same, include_random=True)
        pred = pred.compute() if engine == "dask" else pred
    assert pred.notna().all()  # keys of the fit's own kind find their groups


def test_text_keys_are_refused_as_numbers():
    df = make_data(n_groups=12, seed=4)
    df["g"] = "s" + df.g.astype(str)
    res = mixedlm("y ~ x1", df, groups="g").fit()
    new = df.iloc[:4].assign(g=[0, 1, 2, 3])
    with pytest.raises(DataError, match="numeric keys .* text keys .*astype\\(str\\)"):
        res.predict(new, include_random=True)


@pytest.mark.parametrize("engine", ["pandas", "dask"])
def test_unseen_groups_and_missing_covariates(int_fit, engine):
    """Every row comes back, indexed like the input: NaN for a missing covariate, and
    for unseen groups the population value (warned), NaN, or an error."""
    new = pd.DataFrame({"g": [0, 11, 1, 12], "x": [0.5, 1.0, np.nan, 2.0]}, index=[2, 5, 8, 9])
    fixed = int_fit.fe_params["Intercept"] + int_fit.fe_params["x"] * new.x.to_numpy()
    blup0 = int_fit.random_effects_frame().to_numpy()[0, 0]

    def run(**kw):
        data = new if engine == "pandas" else dd.from_pandas(new, npartitions=2)
        out = int_fit.predict(data, include_random=True, **kw)
        with dask.config.set(scheduler="sync"):
            return out if engine == "pandas" else out.compute()

    with pytest.warns(UnseenGroupsWarning, match="belong to .*group\\(s\\) of 'g'"):
        pop = run()
    assert list(pop.index) == [2, 5, 8, 9]
    np.testing.assert_allclose(pop.to_numpy(), [fixed[0] + blup0, fixed[1], np.nan, fixed[3]])
    nan = run(new_groups="nan")
    np.testing.assert_allclose(nan.to_numpy(), [fixed[0] + blup0, np.nan, np.nan, np.nan])
    with pytest.raises(DataError, match="new_groups='error' refuses them"):
        run(new_groups="error")
    with pytest.raises(SpecError, match="new_groups must be one of"):
        int_fit.predict(new, include_random=True, new_groups="drop")


def _unseen_warnings(fit, data):
    """The warnings of ``predict(data, include_random=True)`` computed, in this process."""
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        out = fit.predict(data, include_random=True)
        out = out.compute() if is_dask(out) else out
    return [str(w.message) for w in got if w.category is UnseenGroupsWarning], out


@pytest.fixture(scope="module")
def unseen_rows():
    """Four rows in two partitions, each with one group the fit did not see."""
    return pd.DataFrame({"g": [0, 98, 1, 99], "x": [0.1, 0.2, 0.3, 0.4]})


def test_unseen_groups_of_dask_partitions_warn_once_with_the_totals(int_fit, unseen_rows):
    """One warning, at predict(), with the totals of every partition: the words of the
    pandas prediction, not one per partition."""
    expected, ref = _unseen_warnings(int_fit, unseen_rows)
    assert len(expected) == 1
    assert expected[0].startswith("2 of 4 rows belong to 2 group(s) of 'g' the fit did not see")
    with dask.config.set(scheduler="sync"):
        got, out = _unseen_warnings(int_fit, dd.from_pandas(unseen_rows, npartitions=2))
    assert got == expected
    np.testing.assert_allclose(out.to_numpy(), ref.to_numpy(), rtol=1e-12)
    with dask.config.set(scheduler="sync"), warnings.catch_warnings():
        warnings.simplefilter("error", UnseenGroupsWarning)
        lazy = int_fit.predict(dd.from_pandas(unseen_rows, npartitions=2), True, new_groups="nan")
        assert np.isnan(lazy.compute().to_numpy()[[1, 3]]).all()


def test_unseen_groups_refused_on_dask_name_the_partition_they_count(int_fit):
    """``new_groups="error"`` on Dask refuses when the result is computed, in the first
    partition holding unseen groups: its message counts that partition's rows and says
    which partition (not the totals, which only the warning of ``"population"`` has)."""
    new = pd.DataFrame({"g": [0, 1, 2, 3, 0, 11, 12, 1], "x": np.linspace(0, 1, 8)})
    out = int_fit.predict(dd.from_pandas(new, npartitions=2), True, new_groups="error")
    with dask.config.set(scheduler="sync"):
        with pytest.raises(DataError) as caught:
            out.compute()
    message = str(caught.value)
    assert message.startswith("partition 1 of the Dask DataFrame: 2 of 4 rows belong to 2 group(s)")
    assert "new_groups='error' refuses them" in message
    assert caught.value.partition == 1


def test_unseen_groups_on_a_cluster_warn_in_the_calling_process(int_fit, unseen_rows, client):
    """On a distributed cluster the warning is the caller's (no longer a worker's log)."""
    expected, _ = _unseen_warnings(int_fit, unseen_rows)
    with client.as_current():
        got, out = _unseen_warnings(int_fit, dd.from_pandas(unseen_rows, npartitions=2))
    assert got == expected
    assert len(out) == 4


def _reading(rows):
    """``rows`` as a Dask frame of two partitions, and the list of the partitions' lengths
    each time one is read."""
    reads = []

    def spy(part):
        reads.append(len(part))
        return part

    # a name of its own: Dask reuses a collection of the same name, and its spy's list
    token = f"spy-{uuid.uuid4().hex}"
    return dd.from_pandas(rows, npartitions=2).map_partitions(
        spy, meta=rows[:0], token=token
    ), reads


@pytest.mark.parametrize("call", ["predict", "get_prediction"])
def test_dask_default_reads_the_group_column_once_at_the_call_nan_and_error_nothing(
    int_fit, unseen_rows, call
):
    """The default ``new_groups="population"`` reads each partition once at the call
    (to count the unseen groups) and warns there; ``"nan"`` and ``"error"`` read
    nothing at the call (``"error"`` raises when computed)."""

    def run(data, new_groups):
        out = getattr(int_fit, call)(data, include_random=True, new_groups=new_groups)
        return out if call == "predict" else out.predicted_mean

    with dask.config.set(scheduler="sync"), warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        data, reads = _reading(unseen_rows)
        run(data, "population")
        assert reads == [2, 2]
        assert [w.category for w in got] == [UnseenGroupsWarning]
        for new_groups in ("nan", "error"):
            data, reads = _reading(unseen_rows)
            out = run(data, new_groups)
            assert reads == []
            if new_groups == "error":
                with pytest.raises(DataError, match="new_groups='error' refuses them"):
                    out.compute()
    assert len(got) == 1


@pytest.mark.parametrize("scheduler", ["sync", "threads"])
def test_get_prediction_of_dask_data_warns_once_at_the_call_as_predict(
    int_fit, unseen_rows, scheduler
):
    """get_prediction(dask_df, include_random=True) warns as predict does (one owner):
    once, at the call, with the totals of every partition in the pandas prediction's
    words; computing the result warns nothing more, not once per partition (pandas
    changes the warning filters inside the tasks, so Python's "once" would not hold)."""
    expected, _ = _unseen_warnings(int_fit, unseen_rows)
    with warnings.catch_warnings(record=True) as pandas_got:
        warnings.simplefilter("always")
        ref = int_fit.get_prediction(unseen_rows, include_random=True).summary_frame()
    assert [str(w.message) for w in pandas_got] == expected
    new = pd.concat([unseen_rows] * 5, ignore_index=True)
    with dask.config.set(scheduler=scheduler), warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        pred = int_fit.get_prediction(dd.from_pandas(new, npartitions=10), include_random=True)
        assert [str(w.message) for w in got] == [
            expected[0].replace("2 of 4 rows", "10 of 20 rows")
        ]
        frame = pred.summary_frame().compute()
        assert len(got) == 1
    np.testing.assert_allclose(frame.to_numpy()[:4], ref.to_numpy(), rtol=1e-12)


@pytest.fixture(scope="module")
def text_fit():
    """A random-slope fit with text group keys and a column only the random part reads."""
    rng = np.random.default_rng(1)
    g = np.repeat([f"k{i}" for i in range(12)], 25)
    df = pd.DataFrame({"g": g, "x": rng.normal(size=300), "z": rng.normal(size=300)})
    u = rng.normal(size=(12, 2))[np.repeat(np.arange(12), 25)]
    df["y"] = 1 + df.x + u[:, 0] + u[:, 1] * df.z + rng.normal(size=300)
    return mixedlm("y ~ x", df, groups="g", re_formula="1 + z").fit()


def test_dask_unseen_count_is_the_pandas_one_for_missing_values_and_text_keys(text_fit):
    """The count made at predict() (group column and missing values only, no design)
    words the rows and groups as the pandas prediction does: rows with a missing
    predictor, random-part column or key are not counted (they get NaN); each warning
    points at this file's line, not inside the library."""
    new = pd.DataFrame(
        {
            "g": ["k0", "new1", "new2", None, "k3", "new3", "new1", "new4", "k1"],
            "x": [0.1, 0.2, np.nan, 0.4, 0.5, 0.6, 0.7, 0.8, np.nan],
            "z": [1.0, 2.0, 3.0, 4.0, 5.0, np.nan, 7.0, 8.0, 9.0],
        }
    )
    expected, ref = _unseen_warnings(text_fit, new)
    # 5 rows are read, 1, 6 and 7 unseen (2, 5 and 8 miss x or z, 3 its key)
    assert expected == [expected[0]]
    assert expected[0].startswith("3 of 5 rows belong to 2 group(s) of 'g' the fit did not see")
    assert "('new1', 'new4')" in expected[0]
    for npartitions in (1, 3):
        with dask.config.set(scheduler="sync"):
            got, out = _unseen_warnings(text_fit, dd.from_pandas(new, npartitions=npartitions))
        assert got == expected
        np.testing.assert_allclose(out.to_numpy(), ref.to_numpy(), rtol=1e-12)
    with dask.config.set(scheduler="sync"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        text_fit.predict(new, include_random=True)
        text_fit.predict(dd.from_pandas(new, npartitions=3), include_random=True)
    unseen = [w for w in caught if w.category is UnseenGroupsWarning]
    assert [w.filename for w in unseen] == [__file__, __file__]


def test_dask_unseen_count_ships_the_predictor_once(int_fit, unseen_rows):
    """The count's graph holds the predictor as one task that every partition's count
    depends on, not as a literal argument of each (it holds every group's BLUPs)."""
    from dmixed.results.prediction import Predictor

    graphs = []

    def recording(dsk, keys, **kwargs):
        graphs.append(dict(dsk.__dask_graph__() if hasattr(dsk, "__dask_graph__") else dsk))
        return dask.get(dsk, keys, **kwargs)

    with dask.config.set(scheduler=recording), warnings.catch_warnings():
        warnings.simplefilter("ignore", UnseenGroupsWarning)
        int_fit.predict(dd.from_pandas(unseen_rows, npartitions=3), include_random=True)
    assert len(graphs) == 1  # the count, at predict(); the prediction stays lazy

    class Counting(cloudpickle.Pickler):
        found = 0

        def persistent_id(self, obj):
            if isinstance(obj, Predictor):
                Counting.found += 1
                return "predictor"
            return None

    holding = 0
    for task in graphs[0].values():
        Counting.found = 0
        Counting(io.BytesIO()).dump(task)
        holding += Counting.found > 0
    assert holding == 1


@pytest.mark.parametrize("engine", ["pandas", "dask"])
def test_fixed_part_reads_only_the_fixed_effects_columns(engine):
    """``predict(data)`` is ``X β̂`` (statsmodels): the group column and the columns only
    the random part reads may be absent, and a missing value there leaves the
    prediction as it is (it used to need them, and gave NaN for a missing group key)."""
    df = make_data(n_groups=20, seed=12)
    res = mixedlm(
        "y ~ x1", df, groups="g", re_formula="1 + x2", vc_formula={"s": "0 + C(sub)"}
    ).fit()
    expected = res.fe_params["Intercept"] + res.fe_params["x1"] * df["x1"].to_numpy()[:6]
    holes = df.iloc[:6].assign(g=df["g"].iloc[:6].astype(float))
    holes.loc[holes.index[1], "g"] = np.nan
    holes.loc[holes.index[2], ["x2", "sub"]] = np.nan
    for new in (df[["x1"]].iloc[:6], holes):
        data = dd.from_pandas(new, npartitions=2) if engine == "dask" else new
        out = res.predict(data)
        out = out.compute() if engine == "dask" else out
        np.testing.assert_allclose(out.to_numpy(), expected, rtol=1e-13)
    with pytest.raises(DataError, match="not found in the data: 'x2', 'sub', 'g'"):
        res.predict(df[["x1"]], include_random=True)


def test_dask_prediction_is_the_pandas_series():
    """The same Series, name included (it was named 'fittedvalues' on Dask only)."""
    df = make_data(n_groups=12, seed=13)
    res = mixedlm("y ~ x1", df, groups="g").fit()
    for include_random in (False, True):
        expected = res.predict(df, include_random=include_random)
        got = res.predict(dd.from_pandas(df, npartitions=3), include_random=include_random)
        pd.testing.assert_series_equal(got.compute(), expected)


def test_text_for_a_numeric_covariate_is_refused():
    """'3' for a column fitted as numbers is refused as for group keys (it was parsed)."""
    df = make_data(n_groups=12, seed=14)
    res = mixedlm("y ~ x1", df, groups="g").fit()
    with pytest.raises(DataError, match="column 'x1' holds text"):
        res.predict(df.iloc[:3].assign(x1=["1", "2", "3"]))


def test_array_designs_of_the_wrong_shape_are_named():
    """They used to fail in numpy (reshape, broadcast, boolean index) without a name."""
    df = make_data(n_groups=12, seed=15)
    endog, exog, exog_re, groups = design(df)
    res = MixedLM(endog, exog, groups, exog_re=exog_re).fit()
    x, z, g = exog[:3], exog_re[:3], groups[:3]
    with pytest.raises(SpecError, match="needs exog_re= with 2 columns"):
        res.predict(exog=x, groups=g, include_random=True)
    with pytest.raises(DataError, match=r"exog_re has shape \(3, 3\); expected \(3, 2\)"):
        res.predict(exog=x, exog_re=exog[:3], groups=g, include_random=True)
    with pytest.raises(DataError, match=r"exog_re has shape \(2, 2\); expected \(3, 2\)"):
        res.predict(exog=x, exog_re=z[:2], groups=g, include_random=True)
    with pytest.raises(DataError, match=r"groups has shape \(2,\); expected \(3,\)"):
        res.predict(exog=x, exog_re=z, groups=g[:2], include_random=True)
    np.testing.assert_allclose(
        res.predict(exog=x, exog_re=z, groups=list(g), include_random=True),
        res.fittedvalues[:3],
        rtol=1e-12,
    )


def test_a_frame_passed_as_exog_to_a_formula_model_goes_through_the_formula():
    """statsmodels applies the formula to ``predict(exog=frame)``: the same numbers as
    ``predict(frame)``, never the frame read as a design matrix (it used to be, silently,
    when the frame happened to have ``k_fe`` numeric columns)."""
    import statsmodels.formula.api as smf

    df = make_data(n_groups=20, seed=21)
    df["lvl"] = np.where(df["x2"] > 0, "b", "a")
    for formula, cols in (
        ("y ~ x1 + C(lvl)", ["x1", "lvl", "g"]),
        ("y ~ x1 + x2", ["x1", "x2", "g"]),
    ):
        res = mixedlm(formula, df, groups="g").fit()
        new = df.head(5)[cols]
        sm = smf.mixedlm(formula, df, groups="g").fit().predict(exog=new)
        got = res.predict(exog=new)
        pd.testing.assert_series_equal(got, res.predict(new))
        np.testing.assert_allclose(got, sm, rtol=1e-5)
        ddf = dd.from_pandas(new, npartitions=2)
        with dask.config.set(scheduler="sync"):
            pd.testing.assert_series_equal(res.predict(exog=ddf).compute(), got)
        pd.testing.assert_frame_equal(
            res.get_prediction(exog=new).summary_frame(), res.get_prediction(new).summary_frame()
        )
        with pytest.raises(SpecError, match="as data or as exog, not both"):
            res.predict(new, exog=new)
    # a missing value in a nullable column: that row NaN, as predict(frame)
    na = new.assign(x1=new["x1"].astype("Float64"))
    na.loc[na.index[1], "x1"] = pd.NA
    got = res.predict(exog=na)
    assert got.isna().tolist() == [False, True, False, False, False]


def test_raw_exog_that_is_not_numeric_is_named():
    """Text in a raw matrix: a DataError naming the argument, not numpy's bare
    ValueError/TypeError; pd.NA is a missing value there, as None and NaN are: its row
    predicts NaN."""
    df = make_data(n_groups=12, seed=16)
    endog, exog, exog_re, groups = design(df)
    res = MixedLM(endog, exog, groups, exog_re=exog_re).fit()
    formula_res = mixedlm("y ~ x1 + x2", df, groups="g").fit()
    text = exog[:2].astype(object)
    text[0, 1] = "a"
    missing = exog[:2].astype(object)
    missing[1, 2] = pd.NA
    nan = exog[:2].copy()
    nan[1, 2] = np.nan
    for fit in (res, formula_res):
        with pytest.raises(DataError, match="exog must be numeric"):
            fit.predict(exog=text)
        np.testing.assert_array_equal(
            np.asarray(fit.predict(exog=missing)), np.asarray(fit.predict(exog=nan))
        )
        assert np.isnan(np.asarray(fit.predict(exog=missing))[1])
    with pytest.raises(DataError, match="exog_re must be numeric"):
        res.predict(exog=exog[:2], exog_re=text[:, :2], groups=groups[:2], include_random=True)
    with pytest.raises(DataError, match="exog has 2 columns; the model has 3"):
        formula_res.predict(exog=exog[:2, :2])


def test_new_rows_of_a_formula_model_as_a_dict_or_an_array():
    """statsmodels' formula ``predict`` takes a dict of columns: the same prediction as
    its DataFrame.  An ndarray (no column names) raised a TypeError naming an internal
    ``transform``: a DataError says what is expected."""
    df = make_data(n_groups=20, max_size=10, seed=5)
    res = mixedlm("y ~ x1 + x2", df, groups="g").fit()
    new = df.iloc[:4][["x1", "x2", "g"]]
    as_dict = {c: new[c].to_numpy() for c in new.columns}
    np.testing.assert_array_equal(res.predict(as_dict).to_numpy(), res.predict(new).to_numpy())
    np.testing.assert_array_equal(
        res.get_prediction(as_dict).predicted_mean, res.get_prediction(new).predicted_mean
    )
    with pytest.raises(DataError, match="data must be a pandas or Dask DataFrame, got ndarray"):
        res.predict(new.to_numpy())


@pytest.mark.filterwarnings("ignore::statsmodels.tools.sm_exceptions.ConvergenceWarning")
@pytest.mark.filterwarnings("ignore:Using dict data structures:DeprecationWarning")
def test_new_rows_as_scalars_or_a_series_are_read_as_statsmodels_reads_them():
    """A dict of scalars (one row, index 0) raised pandas' "If using all scalar values,
    you must pass an index"; a Series (a row, or a column the model uses) was refused.
    statsmodels' prediction of the same input, or (where it fails: a row of a frame of
    mixed types) of the frame it stands for."""
    import statsmodels.api as sm

    df = make_data(n_groups=20, max_size=10, seed=6)
    cases = {
        "y ~ x1 + x2": [
            ({"x1": 0.3, "x2": np.float64(-1.0)}, None),
            (df[["x1", "x2"]].iloc[3], None),
            (df.iloc[5], df.iloc[[5]]),
        ],
        "y ~ x1": [(df["x1"].head(4), None), ({"x1": 2.0}, None)],
    }
    for formula, inputs in cases.items():
        ours = mixedlm(formula, df, groups="g").fit()
        theirs = sm.MixedLM.from_formula(formula, df, groups="g").fit()
        for new, frame in inputs:
            got = ours.predict(new)
            want = theirs.predict(new if frame is None else frame)
            np.testing.assert_array_equal(got.index, want.index)
            np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-5)
            # statsmodels' argument is exog: for a formula model, the new data
            pd.testing.assert_series_equal(ours.predict(exog=new), got)
    with pytest.raises(DataError, match="the columns of data do not make a table"):
        ours.predict({"x1": [1.0, 2.0], "g": [1, 2, 3]})


def test_new_rows_of_an_array_model_given_by_position_are_its_exog():
    """statsmodels' ``predict(exog)``: for a model built from arrays the first
    positional argument is the new design (it was refused as formula ``data``)."""
    from statsmodels.regression.mixed_linear_model import MixedLM as SmMixedLM

    df = make_data(n_groups=12, seed=16)
    endog, exog, exog_re, groups = design(df)
    res = MixedLM(endog, exog, groups, exog_re=exog_re).fit()
    new = exog[:4]
    np.testing.assert_array_equal(res.predict(new), res.predict(exog=new))
    sm = SmMixedLM(endog, exog, groups, exog_re=exog_re).predict(res.fe_params, new)
    np.testing.assert_allclose(res.predict(new), sm, rtol=1e-12)
    np.testing.assert_array_equal(
        res.get_prediction(new).predicted_mean, res.get_prediction(exog=new).predicted_mean
    )
    frame = pd.DataFrame(new, columns=["const", "x1", "x2"])
    np.testing.assert_array_equal(res.predict(frame), res.predict(exog=new))
    with pytest.raises(SpecError, match="as data or as exog, not both"):
        res.predict(new, exog=new)


def test_a_one_dimensional_exog_of_k_fe_values_is_one_row():
    """statsmodels' ``predict(exog=x)`` reads a 1-D ``x`` as one row when the model has
    more than one fixed effect (a column when it has one)."""
    from statsmodels.regression.mixed_linear_model import MixedLM as SmMixedLM

    df = make_data(n_groups=12, seed=16)
    endog, exog, exog_re, groups = design(df)
    res = MixedLM(endog, exog, groups, exog_re=exog_re).fit()
    row = exog[3]
    np.testing.assert_array_equal(res.predict(exog=row), res.predict(exog=exog[3:4]))
    sm = SmMixedLM(endog, exog, groups, exog_re=exog_re)
    np.testing.assert_allclose(res.predict(exog=row), sm.predict(res.fe_params, row), rtol=1e-12)
    one = MixedLM(endog, exog[:, :1], groups).fit()
    assert one.predict(exog=exog[:5, 0]).shape == (5,)


@pytest.mark.parametrize("value", [5.0, np.float64(5.0), np.array(5.0), 5])
def test_a_scalar_exog_of_a_one_fixed_effect_model_is_one_row(value):
    """statsmodels' ``predict(5.0)`` on a model of one fixed effect is the prediction of
    one row (it was refused as a 0-dimensional exog)."""
    from statsmodels.regression.mixed_linear_model import MixedLM as SmMixedLM

    df = make_data(n_groups=12, seed=16)
    endog, exog, _, groups = design(df)
    res = MixedLM(endog, exog[:, :1], groups).fit()
    np.testing.assert_array_equal(res.predict(value), res.predict(np.array([[5.0]])))
    sm = SmMixedLM(endog, exog[:, :1], groups)
    np.testing.assert_allclose(res.predict(value), sm.predict(res.fe_params, value), rtol=1e-12)
    with pytest.raises(DataError, match="exog has 1 columns; the model has 3"):
        MixedLM(endog, exog, groups).fit().predict(value)


def test_a_scalar_exog_of_text_is_named_as_given():
    """A scalar of text is refused naming ``exog`` and showing the value as given
    (``'a'``, not numpy's ``np.str_('a')``)."""
    df = make_data(n_groups=12, seed=16)
    endog, exog, _, groups = design(df)
    res = MixedLM(endog, exog[:, :1], groups).fit()
    with pytest.raises(DataError, match=r"exog must be numeric: .*: 'a'$"):
        res.predict("a")


def test_a_one_dimensional_exog_re_is_one_row_as_exog_is():
    """With ``include_random`` a 1-D ``exog_re`` of ``k_re`` values is the one row a
    1-D ``exog`` is (it was read as a column and refused), and a column where the
    model has one random effect."""
    df = make_data(n_groups=12, seed=16)
    endog, exog, exog_re, groups = design(df)
    res = MixedLM(endog, exog, groups, exog_re=exog_re).fit()
    kw = {"groups": groups[3:4], "include_random": True}
    np.testing.assert_array_equal(
        res.predict(exog=exog[3], exog_re=exog_re[3], **kw),
        res.predict(exog=exog[3:4], exog_re=exog_re[3:4], **kw),
    )
    one = MixedLM(endog, exog, groups, exog_re=exog_re[:, :1]).fit()
    kw = {"groups": groups[:5], "include_random": True}
    np.testing.assert_array_equal(
        one.predict(exog=exog[:5], exog_re=exog_re[:5, 0], **kw),
        one.predict(exog=exog[:5], exog_re=exog_re[:5, :1], **kw),
    )


@pytest.mark.parametrize("call", ["predict", "get_prediction"])
def test_dask_unseen_count_does_not_tokenize_the_predictor_again(
    int_fit, unseen_rows, call, monkeypatch
):
    """The count of unseen groups at the call depends on the task the prediction
    itself holds (the predictor, or the variance object holding it), not on a task of
    its own: Dask hashes the predictor (its BLUPs, one row a group) once per call."""
    from dmixed.results.prediction import Predictor

    tokenized = []

    def token(self):
        tokenized.append(self)
        return "predictor-under-test"

    monkeypatch.setattr(Predictor, "__dask_tokenize__", token, raising=False)
    with dask.config.set(scheduler="sync"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UnseenGroupsWarning)
        out = getattr(int_fit, call)(dd.from_pandas(unseen_rows, npartitions=2), True)
        frame = out if call == "predict" else out.summary_frame()
        assert len(frame.compute()) == 4
    assert len(tokenized) == 1


def test_unpickling_a_predictor_imports_the_prediction_module_alone():
    """A Dask worker computing fitted values unpickles a Predictor, which imports
    ``dmixed.results.prediction``: the ``dmixed.results`` package imported the results
    class and its inference too (most of the import's time) on every worker."""
    import subprocess
    import sys

    code = (
        "import sys, dmixed.results.prediction, dmixed.results as r; "
        "print('dmixed.results.results' in sys.modules); "
        "print(r.Predictor is dmixed.results.prediction.Predictor); "
        "print(r.MixedLMResults.__module__, 'dmixed.results.results' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "True", "dmixed.results.results", "True"]


def _log_fit():
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(20), 6)
    df = pd.DataFrame({"g": g, "x1": rng.normal(size=g.size), "x2": rng.uniform(0.5, 5, g.size)})
    slope = 1.0 + 0.7 * rng.normal(size=20)[g]
    df["y"] = 0.5 * df.x1 + slope * np.log(df.x2) + rng.normal(size=20)[g] + rng.normal(size=g.size)
    return df, mixedlm("y ~ x1 + np.log(x2)", df, groups="g", re_formula="1 + np.log(x2)").fit()


def test_nonfinite_transform_of_new_rows_is_nan_with_a_warning():
    """``np.log`` of 0 and of -1 in new rows: those rows NaN with a NonFiniteRowsWarning
    naming the column and the rows (main refused the whole call with BadValuesError),
    the other rows as predicted alone, with and without the random part."""
    from dmixed.errors import DmixedWarning

    df, res = _log_fit()
    new = pd.DataFrame({"g": [0, 1, 2, 3], "x1": [0.1, 0.2, 0.3, 0.4], "x2": [1.0, -1.0, 0.0, 2.0]})
    for kw in ({}, {"include_random": False}):
        with np.errstate(all="ignore"), pytest.warns(DmixedWarning) as record:
            got = np.asarray(res.predict(new, **kw))
        assert type(record[0].message).__name__ == "NonFiniteRowsWarning"
        message = str(record[0].message)
        assert "'np.log(x2)' (2 rows)" in message and "2 rows predicted as NaN" in message
        assert np.isnan(got[1:3]).all()
        alone = np.asarray(res.predict(new.iloc[[0, 3]], **kw))
        np.testing.assert_array_equal(got[[0, 3]], alone)


def test_nonfinite_transform_is_still_refused_when_fitting():
    df, _ = _log_fit()
    df.loc[3, "x2"] = 0.0
    with np.errstate(all="ignore"), pytest.raises(DataError, match="np.log"):
        mixedlm("y ~ x1 + np.log(x2)", df, groups="g").fit()


def test_nonfinite_transform_on_dask_names_the_partition():
    """On Dask the prediction is lazy, so the NonFiniteRowsWarning comes from each
    partition's task that holds such rows, and names that partition (as the refusal
    did before); the values equal pandas'."""
    from dmixed.errors import NonFiniteRowsWarning

    _, res = _log_fit()
    new = pd.DataFrame(
        {"g": np.arange(8), "x1": np.linspace(0, 1, 8), "x2": [1, 0, 1, 1, 0, 1, 1, 1.0]}
    )
    with np.errstate(all="ignore"), pytest.warns(NonFiniteRowsWarning):
        expected = np.asarray(res.predict(new))
    with dask.config.set(scheduler="sync"), np.errstate(all="ignore"):
        with pytest.warns(NonFiniteRowsWarning) as record:
            got = np.asarray(res.predict(dd.from_pandas(new, npartitions=4)).compute())
    np.testing.assert_array_equal(got, expected)
    messages = sorted(str(w.message) for w in record)
    assert len(messages) == 2
    assert messages[0].startswith("partition 0 of the Dask DataFrame: ")
    assert messages[1].startswith("partition 2 of the Dask DataFrame: ")
