"""dmixed.design.build: the arguments and whole-data checks of build_spec."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st

import dmixed
from dmixed.design import ModelSpec, build_spec
from dmixed.errors import (
    DataError,
    FormulaError,
    NumericFactorWarning,
    SingularHessianWarning,
    SpecError,
)

from .._synth import make_data
from .frames import by_name, make_df, mixedlm


def test_error_groups_column():
    df = make_df()
    with pytest.raises(ValueError, match=r"groups column 'gg' not found.*'g'"):
        build_spec(df, "y ~ x1", groups="gg")
    with pytest.raises(ValueError, match="groups must be a column name"):
        build_spec(df, "y ~ x1", groups=df["g"])
    spec = build_spec(df, "y ~ x1", groups="g")
    with pytest.raises(ValueError, match=r"not found in the data: 'g'"):
        spec.transform(df.drop(columns="g"))


def test_error_response():
    df = make_df()
    with pytest.raises(
        ValueError, match=r"the response column 'a' holds values that are not numbers"
    ):
        build_spec(df, "a ~ x1", groups="g")
    with pytest.raises(ValueError, match=r"response 'y' is constant"):
        build_spec(df.assign(y=2.5), "y ~ x1", groups="g")
    with pytest.raises(ValueError, match=r"needs a response"):
        build_spec(df, "x1 + x2", groups="g")
    with pytest.raises(ValueError, match=r"single numeric column"):
        build_spec(df, "y + x2 ~ x1", groups="g")


def test_error_single_level_factor():
    df = make_df().assign(a="only")
    with pytest.raises(ValueError, match=r"fixed-effect factor 'a' has a single level \('only'\)"):
        build_spec(df, "y ~ x1 + a", groups="g")
    with pytest.raises(ValueError, match=r"factor 'C\(k\)' has a single level \(1\)"):
        build_spec(make_df().assign(k=1), "y ~ C(k)", groups="g")


def test_error_weights():
    df = make_df()
    with pytest.raises(
        ValueError, match=r"column 'a' holds text \(such as 'top'\) where the model reads weights"
    ):
        build_spec(df, "y ~ x1", groups="g", weights="a")
    with pytest.raises(ValueError, match=r"weights column 'd' is not numeric \(dtype datetime"):
        build_spec(df.assign(d=pd.Timestamp(0)), "y ~ x1", groups="g", weights="d")
    with pytest.raises(ValueError, match=r"weights column 'ww' not found.*'w'"):
        build_spec(df, "y ~ x1", groups="g", weights="ww")
    bad = df.copy()
    bad.loc[[0, 1], "w"] = 0.0
    bad.loc[5, "w"] = -1.0
    with pytest.raises(
        ValueError, match=r"weights column 'w' has 2 zero values and 1 negative value"
    ):
        build_spec(bad, "y ~ x1", groups="g", weights="w")
    miss = df.copy()
    miss.loc[3, "w"] = np.nan
    with pytest.raises(ValueError, match=r"missing values in column 'w' \(1 row\)"):
        build_spec(miss, "y ~ x1", groups="g", weights="w")
    with pytest.raises(ValueError, match=r"infinite values in column 'w'"):
        build_spec(miss.assign(w=np.inf), "y ~ x1", groups="g", weights="w")


@pytest.mark.parametrize("as_what", ["ndarray", "Series", "list"])
def test_weights_given_as_values_not_a_name_are_a_spec_error(as_what):
    """A formula's weights name a column; values in their place (an array, a Series, a
    list: unhashable) are refused as the documented SpecError, not a TypeError of the
    duplicate-column check."""
    df = make_df()
    values = {"ndarray": df["w"].to_numpy(), "Series": df["w"], "list": df["w"].tolist()}
    with pytest.raises(SpecError, match=r"weights must be a column name \(str\), got"):
        build_spec(df, "y ~ x1", groups="g", weights=values[as_what])


def test_error_empty_data():
    df = make_df()
    with pytest.raises(ValueError, match=r"data is empty \(0 rows\)"):
        build_spec(df.iloc[:0], "y ~ x1", groups="g")
    with pytest.raises(ValueError, match=r"no rows left after dropping"):
        build_spec(df.assign(x1=np.nan), "y ~ x1", groups="g", missing="drop")


def test_error_bad_arguments():
    df = make_df()
    with pytest.raises(ValueError, match=r"missing must be 'raise', 'drop' or 'none'"):
        build_spec(df, "y ~ x1", groups="g", missing="nan")


def test_statsmodels_missing_none_checks_as_raise():
    """statsmodels' default ``missing="none"`` is taken by formulas as by arrays (it was
    refused): the spec of ``"raise"``, and a missing value is refused, never summed."""
    df = make_df()
    assert build_spec(df, "y ~ x1", groups="g", missing="none").missing == "raise"
    with pytest.raises(ValueError, match="missing"):
        build_spec(df.assign(x1=np.nan), "y ~ x1", groups="g", missing="none")
    with pytest.raises(ValueError, match="pandas or Dask DataFrame"):
        build_spec(df.to_dict(), "y ~ x1", groups="g")


def test_unseen_level_at_transform_time():
    df = make_df()
    spec = build_spec(df, "y ~ a", groups="g")
    new = df.iloc[:10].copy()
    new.loc[new.index[3], "a"] = "brand-new"
    with pytest.raises(ValueError, match=r"column 'a' has levels not seen.*'brand-new'"):
        spec.transform(new)
    with pytest.raises(ValueError, match=r"column 'a' has levels not seen.*'brand-new'"):
        spec.transform(new.assign(a=new["a"].astype("string[pyarrow]")))
    spec_k = build_spec(df, "y ~ C(k)", groups="g")
    with pytest.raises(ValueError, match=r"column 'k' has levels not seen.*: 9"):
        spec_k.transform(df.assign(k=9))


def test_a_constant_response_is_refused_whatever_its_missing_values():
    """The response's finite values decide: constant with missing rows dropped is
    refused naming the value, varying with them is built."""
    df = make_df()
    y = np.full(len(df), 2.5)
    y[3] = np.nan
    # the value as the user wrote it, not numpy's repr (np.float64(2.5))
    with pytest.raises(DataError, match=r"response 'y' is constant \(all values 2.5\)$"):
        build_spec(df.assign(y=y), "y ~ x1", groups="g", missing="drop")
    y[5] = -1.0
    assert build_spec(df.assign(y=y), "y ~ x1", groups="g", missing="drop").endog_name == "y"


def test_errors_are_grouped_by_what_went_wrong():
    """Formula refusals are FormulaError, bad arguments SpecError, data problems DataError
    (all ValueError, as statsmodels raises)."""
    df = make_df()
    with pytest.raises(FormulaError, match="stateful transform poly"):
        build_spec(df, "y ~ poly(x1, 2)", groups="g")
    with pytest.raises(SpecError, match="groups must be a column name"):
        build_spec(df, "y ~ x1", groups=3)
    with pytest.raises(DataError, match="is constant"):
        build_spec(df.assign(y=1.0), "y ~ x1", groups="g")
    spec = build_spec(df, "y ~ x1 + a", groups="g")
    with pytest.raises(DataError, match="missing values in column 'x1'"):
        spec.transform(df.assign(x1=np.nan))
    assert issubclass(FormulaError, SpecError) and issubclass(DataError, ValueError)


@pytest.mark.parametrize(
    ("formula", "re_formula", "match"),
    [
        ("y ~ x1 + `Intercept`", None, "formula .*two fixed effects are named 'Intercept'"),
        ("y ~ x1", "1 + `Intercept`", "re_formula .*two random effects are named 'g'"),
        (
            "y ~ x1",
            "1 + g",
            "re_formula '1 \\+ g': two random effects are named 'g': in re_formula the "
            "intercept is named after the group column, and so is the group column as a "
            "random slope .*leave that column out of re_formula",
        ),
    ],
)
def test_two_columns_of_one_name_are_refused(formula, re_formula, match):
    """A data column named 'Intercept' beside the intercept gave two fixed effects of
    one name, and t_test('Intercept = 0') tested the data column's."""
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {"y": rng.normal(size=30), "x1": rng.normal(size=30), "Intercept": rng.normal(size=30)}
    )
    df["g"] = np.arange(30) % 5
    with pytest.raises(FormulaError, match=match):
        build_spec(df, formula, "g", re_formula=re_formula)


@pytest.mark.parametrize("re_formula", ["0", "-1", " 1 - 1 "])
def test_re_formula_zero_with_components_is_components_only(re_formula):
    """statsmodels' ``re_formula="0"`` with ``vc_formula``: no ``exog_re`` columns, the
    model of ``vc_formula`` alone; without components it is no random effect at all."""
    df = make_df()
    vc = {"c": "0 + C(cls)"}
    spec = build_spec(df, "y ~ x1", groups="g", re_formula=re_formula, vc_formula=vc)
    alone = build_spec(df, "y ~ x1", groups="g", vc_formula=vc)
    assert spec.re_kind == alone.re_kind == "none"
    assert list(spec.exog_re_names) == list(alone.exog_re_names) == []
    with pytest.raises(FormulaError, match="yields no columns"):
        build_spec(df, "y ~ x1", groups="g", re_formula=re_formula)


@pytest.mark.parametrize("engine", ["pandas", "dask"])
def test_numbers_with_a_few_text_cells_are_refused_not_a_factor_of_every_row(engine):
    """One "?" in a CSV column of numbers made it text, a factor of one level per row
    (15,000 rows: 1.68 GiB asked for; errors of 16,673 characters listing the levels);
    now refused naming the column and the text cell.  A factor of text labels, or of
    numeric strings only (ids), with as many levels, is kept."""
    import dask.dataframe as dd

    rng = np.random.default_rng(0)
    n = 200
    df = pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n), "g": np.arange(n) % 10})
    df["x"] = df["x"].astype(str)
    df.loc[[7, 9], "x"] = ["?", "n/a"]
    labels = df.assign(x=[f"id{i}" for i in range(n)])
    ids = df.assign(x=[str(i) for i in range(n)])
    frames = [df, labels, ids]
    if engine == "dask":
        frames = [dd.from_pandas(f, npartitions=2) for f in frames]
    with pytest.raises(DataError) as info:
        build_spec(frames[0], "y ~ x", groups="g")
    message = str(info.value)
    assert "column 'x' holds text (such as '?', 'n/a')" in message and len(message) < 400
    assert len(build_spec(frames[1], "y ~ x", groups="g").levels["x"]) == n
    with pytest.warns(NumericFactorWarning):  # numbers as text: a factor, as said
        assert len(build_spec(frames[2], "y ~ x", groups="g").levels["x"]) == n


@pytest.mark.parametrize("missing", ["raise", "drop"])
def test_numbers_with_a_text_cell_name_the_partition_holding_it(missing):
    """Numbers written as text in every partition, a word among them in partition 2: the
    refusal, decided on the whole data's levels, names partition 2 (it named none), as a
    bad value found in one partition is named.  With ``missing="drop"`` a word in a row
    dropped (partition 1) is not the culprit."""
    import dask.dataframe as dd

    rng = np.random.default_rng(3)
    n = 400
    df = pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n), "g": np.arange(n) % 10})
    df["x"] = df["x"].astype(str)
    df.loc[250, "x"] = "abc"
    if missing == "drop":
        df.loc[150, ["x", "y"]] = ["n/a", np.nan]
    ddf = dd.from_pandas(df, npartitions=4)
    with pytest.raises(DataError) as info:
        build_spec(ddf, "y ~ x", groups="g", missing=missing)
    assert str(info.value).startswith(
        "partition 2 of the Dask DataFrame: column 'x' holds text (such as 'abc') among "
    )
    assert info.value.partition == 2
    with pytest.raises(DataError) as info:  # in process: no partition to name
        build_spec(df, "y ~ x", groups="g", missing=missing)
    assert str(info.value).startswith("column 'x' holds text (such as 'abc') among ")


@pytest.mark.parametrize(
    ("word", "shown", "number"), [("nan", "'abc', 'nan'", 2), ("", "'', 'abc'", 1)]
)
def test_text_among_numbers_names_the_partition_of_the_example_shown(word, shown, number):
    """Text that reads as a missing number (``"nan"``, ``""``) in partition 1 and a word
    in partition 2: the partition named is the one holding the first value the message
    shows (it was the first holding any text that does not read as a number), and the
    error keeps that value as ``example``."""
    import dask.dataframe as dd

    rng = np.random.default_rng(3)
    n = 400
    df = pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n), "g": np.arange(n) % 10})
    df["x"] = df["x"].astype(str)
    df.loc[120, "x"] = word
    df.loc[250, "x"] = "abc"
    ddf = dd.from_pandas(df, npartitions=4)
    with pytest.raises(DataError) as info:
        build_spec(ddf, "y ~ x", groups="g")
    assert str(info.value).startswith(
        f"partition {number} of the Dask DataFrame: column 'x' holds text (such as {shown}) "
    )
    assert info.value.partition == number
    assert info.value.example in ddf.partitions[number]["x"].compute().tolist()
    assert shown.startswith(repr(info.value.example))


def _flagged(seed: int = 5) -> pd.DataFrame:
    df = make_data(n_groups=25, seed=seed)
    df["flag"] = np.random.default_rng(seed).random(len(df)) > 0.4
    df["y"] = df["y"] + 0.7 * df["flag"]
    return df


@pytest.mark.parametrize(
    "formula", ["y ~ x1 + flag", "y ~ x1 * flag", "y ~ 0 + flag", "y ~ flag:x1", "y ~ Q('flag')"]
)
@pytest.mark.parametrize("dtype", [bool, object])
def test_a_column_of_booleans_is_a_factor_named_as_statsmodels(formula, dtype):
    """statsmodels (patsy) reads booleans as a factor: ``flag[T.True]``, not ``flag``."""
    df = _flagged().astype({"flag": dtype})
    ours = build_spec(df, formula, groups="g", re_formula="~ flag")
    theirs = sm.MixedLM.from_formula(formula, df, groups="g", re_formula="~ flag")
    # formulaic orders terms otherwise than patsy: compare by name
    assert sorted(ours.exog_names) == sorted(theirs.exog_names)
    assert ours.exog_re_names == theirs.data.exog_re_names


def test_a_fit_with_a_boolean_column_is_labelled_as_statsmodels():
    df = _flagged()
    ours = dmixed.mixedlm("y ~ x1 + flag", df, groups="g").fit()
    theirs = sm.MixedLM.from_formula("y ~ x1 + flag", df, groups="g").fit()
    assert sorted(ours.params.index) == sorted(theirs.params.index)
    names = list(theirs.fe_params.index)
    np.testing.assert_allclose(ours.fe_params[names], theirs.fe_params, rtol=1e-4)
    np.testing.assert_allclose(ours.bse[names], theirs.bse[names], rtol=1e-3)
    assert "flag[T.True]" in str(ours.summary())


def test_booleans_computed_with_stay_numbers():
    """Inside an expression a column of booleans is numbers (as patsy evaluates it)."""
    df = _flagged()
    spec = build_spec(df, "y ~ x1 + I(flag * x1)", groups="g")
    theirs = sm.MixedLM.from_formula("y ~ x1 + I(flag * x1)", df, groups="g")
    assert sorted(spec.exog_names) == sorted(theirs.exog_names)


def test_a_saved_spec_naming_the_old_label_still_loads():
    """Older versions read a plain column of booleans as numbers named ``flag``: their
    saved specs (results, statistics) rebuild to that, with the same matrices."""
    df = _flagged()
    state = build_spec(df, "y ~ x1 + flag", groups="g").to_dict()
    assert state["exog_names"] == ["Intercept", "flag[T.True]", "x1"]  # (statsmodels' order)
    old = {
        **{k: v for k, v in state.items() if k != "term_order"},  # (not saved then)
        "column_kinds": {**state["column_kinds"], "flag": "numeric"},
        "native": {k: v for k, v in state["native"].items() if k != "flag"},
        "levels": {k: v for k, v in state["levels"].items() if k != "flag"},
        "exog_names": ["Intercept", "x1", "flag"],
    }
    spec = ModelSpec.from_dict(json.loads(json.dumps(old)))
    assert spec.exog_names == ["Intercept", "x1", "flag"]
    new = ModelSpec.from_dict(json.loads(json.dumps(state)))
    np.testing.assert_array_equal(spec.transform(df).exog, new.transform(df).exog[:, [0, 2, 1]])


@pytest.mark.parametrize(
    ("formula", "re_formula", "vc_formula"),
    [
        ("y ~ x1 + I(o > 'low')", None, None),
        ("y ~ x1 + C(Q('o') <= 'mid')", None, None),
        ("y ~ x1", "1 + I('mid' < o)", None),
        ("y ~ x1", None, {"c": "0 + C(o >= 'mid')"}),
    ],
)
def test_an_ordered_categorical_is_not_ordered_by_its_text(formula, re_formula, vc_formula):
    """patsy orders an ordered categorical by its categories; dmixed keeps no order of
    categories and would order the text ('high' < 'low'): refused, naming the column."""
    df = make_df()
    df["o"] = pd.Categorical(
        np.resize(["low", "mid", "high"], len(df)), categories=["low", "mid", "high"], ordered=True
    )
    with pytest.raises(FormulaError, match=r"orders the column 'o' .*an ordered categorical"):
        build_spec(df, formula, groups="g", re_formula=re_formula, vc_formula=vc_formula)


def test_equality_of_an_ordered_categorical_and_order_of_text_are_patsys():
    """Equality reads the values, and text is ordered by its text, both as in patsy."""
    patsy = pytest.importorskip("patsy")
    df = make_df()
    df["o"] = pd.Categorical(
        np.resize(["low", "mid", "high"], len(df)), categories=["low", "mid", "high"], ordered=True
    )
    df["t"] = np.resize(["low", "mid", "high"], len(df))
    formula = "y ~ x1 + I(o == 'mid') + I(t > 'low')"
    spec = build_spec(df, formula, groups="g")
    theirs = patsy.dmatrices(formula, df, return_type="dataframe")[1]
    assert sorted(spec.exog_names) == sorted(theirs.columns)
    ours = np.asarray(spec.transform(df).exog)
    np.testing.assert_array_equal(ours, theirs[spec.exog_names].to_numpy())


@pytest.mark.parametrize(
    ("formula", "re_formula"),
    [("y ~ x1 + I(f | h)", "1 + f"), ("y ~ x1 + f", "1 + I(f & h)")],
)
def test_a_boolean_column_read_as_it_is_beside_an_expression_in_another_formula(
    formula, re_formula
):
    """A column of booleans that one formula reads as it is and another computes on is
    patsy's factor ``f[T.True]`` in both (the plain reading would name it ``f``)."""
    df = make_df()
    rng = np.random.default_rng(3)
    df["f"], df["h"] = rng.random(len(df)) > 0.5, rng.random(len(df)) > 0.5
    spec = build_spec(df, formula, groups="g", re_formula=re_formula)
    theirs = mixedlm(formula, df, groups="g", re_formula=re_formula)
    assert sorted(spec.exog_names) == sorted(theirs.exog_names)
    assert spec.exog_re_names == theirs.data.exog_re_names
    dm = spec.transform(df)
    want = by_name(theirs.exog, theirs.exog_names, spec.exog_names)
    np.testing.assert_array_equal(np.asarray(dm.exog), want)
    np.testing.assert_array_equal(np.asarray(dm.exog_re)[:, 1], theirs.exog_re[:, 1])


@pytest.mark.parametrize("vc_formula", [{"b": "0 + C(f)"}, {"b": "0 + C(h)"}])
@pytest.mark.parametrize("formula", ["y ~ x1 + I(f | h)", "y ~ x1 + f + I(f & h)"])
def test_a_boolean_column_read_as_levels_by_a_component_computes_in_an_expression(
    formula, vc_formula
):
    """A column of booleans inside ``C()`` of a component is read as levels; the main
    formula's expression still computes on its booleans (it met a Categorical, which
    has no ``|``: a TypeError), and the fit is statsmodels'."""
    df = make_df()
    rng = np.random.default_rng(3)
    df["f"], df["h"] = rng.random(len(df)) > 0.5, rng.random(len(df)) > 0.3
    cell = rng.normal(size=(15, 2, 2))  # a variance in every group's levels of f and h
    df["y"] = df["y"] + 0.5 * (df["f"] | df["h"]) + cell[df["g"], df["f"] * 1, df["h"] * 1]
    spec = build_spec(df, formula, groups="g", vc_formula=vc_formula)
    theirs = mixedlm(formula, df, groups="g", vc_formula=vc_formula)
    assert sorted(spec.exog_names) == sorted(theirs.exog_names)
    want = by_name(theirs.exog, theirs.exog_names, spec.exog_names)
    np.testing.assert_array_equal(np.asarray(spec.transform(df).exog), want)
    ours = dmixed.mixedlm(formula, df, groups="g", vc_formula=vc_formula).fit()
    fitted = theirs.fit()
    names = list(fitted.fe_params.index)
    np.testing.assert_allclose(ours.fe_params[names], fitted.fe_params, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ours.vcomp, fitted.vcomp, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize(
    ("formula", "missing", "read"),
    [
        ("y ~ x1", "raise", ["y"]),
        ("y ~ x1", "none", ["y"]),
        ("y ~ x1", "drop", ["y", "x1", "g"]),
        ("np.log(y) ~ x1", "raise", ["y", "x1", "g"]),
    ],
)
def test_a_constant_response_on_dask_reads_only_the_columns_it_needs(formula, missing, read):
    """The constant response's value, read on a Dask fit's refusal, reads the response's
    column alone where the response is that column and no row is dropped for another
    column's missing value; else the model's columns (the formula applied to the
    prepared columns, or the rows kept decided by all of them).  The collection of
    those columns alone is enough."""
    import dask
    import dask.dataframe as dd

    from dmixed.design.build import dask_constant_response, response_columns

    df = make_data(n_groups=20, seed=6).astype({"y": float})
    df["y"] = 3.0
    # the spec of rows whose response varies (a constant one is refused in process)
    varied = df.assign(y=np.arange(len(df), dtype=float) + 1)
    spec = build_spec(varied, formula, groups="g", missing=missing)
    assert response_columns(spec) == read
    ddf = dd.from_pandas(df[read], npartitions=3)
    with dask.config.set(scheduler="sync"):
        err = dask_constant_response(spec, ddf)
    value = 3.0 if formula == "y ~ x1" else float(np.log(3.0))
    name = "y" if formula == "y ~ x1" else "np.log(y)"
    assert str(err) == f"the response {name!r} is constant (all values {value!r})"


def _refuse_to_run(*args, **kwargs):
    raise AssertionError("reached after the early refusal")


def _few_rows(n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x1": rng.normal(size=n),
            "a": [f"a{i % 200}" for i in range(n)],
            "b": [f"b{(i * 7) % 200}" for i in range(n)],
            "g": np.arange(n) % 40,
        }
    )


def test_more_terms_than_rows_refused_before_the_formula_is_parsed(monkeypatch):
    """A formula of many distinct terms on a few hundred rows was parsed (time and
    memory growing with the square of its terms: 60,000 terms, ~18 GB) and its design
    built before "too few rows".  The terms are counted from the text first."""
    import dmixed.design.build as build

    monkeypatch.setattr(build, "parse_formula", _refuse_to_run)
    formula = "y ~ " + " + ".join(f"I(x1 + {k})" for k in range(3000))
    with pytest.raises(DataError, match=r"too few rows: at most 400 rows for at least 3001 "):
        dmixed.mixedlm(formula, _few_rows(), groups="g")
    # drop_cols' columns are not counted
    with pytest.raises(DataError, match=r"at most 400 rows for at least 2991 fixed effects"):
        dmixed.mixedlm(
            formula, _few_rows(), groups="g", drop_cols=[f"I(x1 + {k})" for k in range(10)]
        )


def test_more_level_columns_than_rows_refused_before_the_spec(monkeypatch):
    """``C(a):C(b)`` of 200 levels each on 400 rows: at least 199² columns, counted from
    the levels before formulaic learns the spec on a frame of every level."""
    import dmixed.design.spec as spec_module

    monkeypatch.setattr(spec_module, "formula_specs", _refuse_to_run)
    with pytest.raises(DataError, match=r"at most 400 rows for at least 39602 fixed effects"):
        dmixed.mixedlm("y ~ C(a):C(b)", _few_rows(), groups="g")


def test_a_design_larger_than_memory_is_refused_before_it_is_built(monkeypatch):
    import dmixed.design.messages as messages
    import dmixed.design.spec as spec_module

    # the spec's frame of 200 rows fits, the 400 rows' design (640,000 bytes) does not
    monkeypatch.setattr(messages, "physical_memory", lambda: 500_000)
    monkeypatch.setattr(spec_module, "formula_specs", _refuse_to_run)
    with pytest.raises(
        DataError, match=r"design of 400 rows and at least 200 columns would take 0\.6 MiB"
    ):
        dmixed.mixedlm("y ~ C(a)", _few_rows(), groups="g")


def test_a_prototype_larger_than_memory_is_refused_on_dask(monkeypatch):
    """On Dask the rows are not counted before the data pass, but the spec's frame of one
    row per level is known from the level scan."""
    import dask.dataframe as dd

    import dmixed.design.messages as messages
    import dmixed.design.spec as spec_module

    monkeypatch.setattr(messages, "physical_memory", lambda: 100_000)
    monkeypatch.setattr(spec_module, "formula_specs", _refuse_to_run)
    ddf = dd.from_pandas(_few_rows(), npartitions=2)
    with pytest.raises(
        DataError,
        match=r"of one row per level of its factor of most levels "
        r"\(200\) and at least 200 columns",
    ):
        build_spec(ddf, "y ~ C(a)", groups="g")


def test_a_wide_fixed_part_within_the_rows_still_fits():
    df = _few_rows(600)
    with warnings.catch_warnings():
        # g is nested in a here: the random intercept's variance is not identified, and
        # whether the Hessian comes out definite on that flat optimum turns on rounding
        # (the base warns for ``C(a) + x1``, the columns in this order)
        warnings.simplefilter("ignore", SingularHessianWarning)
        res = dmixed.mixedlm("y ~ x1 + C(a)", df, groups="g").fit()
    assert len(res.fe_params) == 201
    assert np.isfinite(res.llf)


def _reused_numbers(n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    g = np.arange(n) % 6
    return pd.DataFrame(
        {
            "y": rng.normal(size=n) + 2 * rng.normal(size=6)[g],
            "x1": rng.normal(size=n),
            "k": np.arange(n) % 40,
            "g": g,
            "f": np.where(np.arange(n) < 30, "a", "b"),
        }
    )


@pytest.mark.parametrize(
    ("formula", "p"), [("y ~ C(k) + k:x1", 41), ("y ~ C(f) + C(k):x1 + k", 43)]
)
def test_a_number_column_read_as_levels_inside_c_counts_one_column_bare(formula, p):
    """A column of numbers inside ``C()`` and bare elsewhere (``k``, 40 levels, on 60
    rows) was counted as 39 columns for its bare use and the formula refused as too few
    rows; bare, it is one column of numbers."""
    df = _reused_numbers()
    ours = dmixed.mixedlm(formula, df, groups="g").fit()
    theirs = sm.MixedLM.from_formula(formula, df, groups="g").fit()
    assert len(ours.fe_params) == p == len(theirs.fe_params)
    np.testing.assert_allclose(ours.llf, theirs.llf, rtol=1e-6)


_BOUND_FACTORS = ["C(t)", "t", "C(k)", "k", "b", "x1", "C(k, Sum)", "I(k * x1)"]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from(_BOUND_FACTORS), min_size=1, max_size=2, unique=True),
        min_size=1,
        max_size=4,
    ),
    st.booleans(),
)
def test_the_column_bound_never_exceeds_the_design(terms, intercept):
    """The bound that refuses a formula before its spec (too few rows, or a design
    larger than memory) is at most the design's columns, for formulas of categorical,
    bare and interaction terms (``t``: text, ``k``: numbers also read as levels,
    ``b``: booleans)."""
    import dmixed.design.build as build

    rng = np.random.default_rng(1)
    n = 48
    df = pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x1": rng.normal(size=n),
            "t": [f"t{i % 3}" for i in range(n)],
            "k": np.arange(n) % 4,
            "b": np.arange(n) % 2 == 0,
            "g": np.arange(n) % 6,
        }
    )
    formula = "y ~ " + ("" if intercept else "0 + ") + " + ".join(":".join(term) for term in terms)
    bounds = []
    original = build.check_design_fits

    def spy(formula, n, p, *, exact, prototype):
        if prototype:
            bounds.append(p)
        return original(formula, n, p, exact=exact, prototype=prototype)

    build.check_design_fits = spy
    try:
        model = dmixed.mixedlm(formula, df, groups="g")
    finally:
        build.check_design_fits = original
    # a plain formula (columns read as they are) is its own count: no bound
    assert len(bounds) <= 1
    assert all(p <= len(model.exog_names) for p in bounds), formula


def test_groups_given_as_the_index_is_named_as_the_index():
    import dask.dataframe as dd

    df = make_df(40)
    for data in (df.set_index("g"), dd.from_pandas(df, npartitions=2).set_index("g")):
        with pytest.raises(SpecError, match="'g' is the index of the data.*reset_index()"):
            build_spec(data, "y ~ x1", groups="g")
    with pytest.raises(SpecError, match="'h' not found in data"):
        build_spec(df.set_index("g"), "y ~ x1", groups="h")
