"""The fixed-effects terms and ``k_constant`` of a fit (``dmixed/results/terms.py``),
against statsmodels' values."""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st

import dmixed
from dmixed.results import load
from dmixed.results.terms import constant_in_rows, constant_of_fit, fe_terms

from .._synth import make_data


@pytest.fixture(scope="module")
def data():
    df = make_data(n_groups=25, seed=12)
    df["site"] = np.array(list("abc"))[np.arange(len(df)) % 3]
    return df


@pytest.mark.parametrize(
    "formula",
    ["y ~ x1 + C(site)", "y ~ 0 + C(site) + x1", "y ~ 0 + x1", "y ~ 0 + C(site):x1 + x2"],
)
def test_k_constant_is_statsmodels(data, formula, tmp_path):
    """From the rows in memory, from the formula for a Dask fit and loaded results."""
    theirs = sm.MixedLM.from_formula(formula, data, groups="g").fit()
    ours = dmixed.mixedlm(formula, data, groups="g").fit()
    assert ours.k_constant == theirs.k_constant
    lazy = dmixed.mixedlm(formula, dd.from_pandas(data, npartitions=2), groups="g").fit()
    assert lazy.k_constant == theirs.k_constant
    ours.save(tmp_path / "res")
    assert load(tmp_path / "res").k_constant == theirs.k_constant


@pytest.mark.filterwarnings("ignore::dmixed.errors.BoundaryWarning")
@pytest.mark.parametrize(
    ("formula", "re_formula", "vc", "want"),
    [
        ("y ~ 0 + x1 + z", None, False, 1),  # a constant column, no intercept
        ("y ~ 0 + x1 + u + v", None, False, 1),  # u + v = 1: a constant in their span
        ("y ~ 0 + x1 + x2", None, False, 0),
        ("y ~ 0 + x1 + z", "1 + x2", True, 1),  # variance components held structured
        ("y ~ 0 + x1 + x2", "1 + x2", True, 0),
        # neither design has a column of ones: the column sums kept by the data pass
        ("y ~ 0 + x1 + z", "0 + x2", False, 1),
        ("y ~ 0 + x1 + u + v", "0 + x2", False, 1),
        ("y ~ 0 + x1 + x2", "0 + x2", False, 0),
        ("y ~ 0 + x1 + u + v", "0 + x2", True, 1),
        ("y ~ 0 + x1 + x2", "0 + x1", True, 0),
    ],
)
def test_k_constant_is_decided_from_the_data_in_process_on_dask_and_from_statistics(
    data, formula, re_formula, vc, want, tmp_path
):
    """statsmodels' rule on the data, wherever the data are: the rows in memory, a Dask
    DataFrame's statistics, saved statistics; and saved with the results."""
    from dmixed.engines.local import statistics_from_arrays
    from dmixed.stats import checkpoint

    df = data.assign(z=3.0, u=data["x2"], v=1.0 - data["x2"])
    kw = {"groups": "g", "re_formula": re_formula}
    if vc:
        kw["vc_formula"] = {"sub": "0 + C(sub)"}
    theirs = sm.MixedLM.from_formula(formula, df, groups="g").data.k_constant
    assert theirs == want
    ours = dmixed.mixedlm(formula, df, **kw).fit()
    assert ours.k_constant == want
    lazy_model = dmixed.mixedlm(formula, dd.from_pandas(df, npartitions=3), **kw)
    assert lazy_model.fit().k_constant == want
    arrays = checkpoint.GroupArrays.from_statistics(lazy_model.statistics(), ragged=True)
    checkpoint.save_statistics(arrays, tmp_path / "stats", {"spec": lazy_model.spec.to_dict()})
    saved, manifest = checkpoint.load_statistics(tmp_path / "stats")
    spec = dmixed.design.ModelSpec.from_dict(manifest["spec"])
    again = dmixed.MixedLM.from_statistics(statistics_from_arrays(saved), spec).fit()
    assert again.k_constant == want
    again.save(tmp_path / "res")
    assert load(tmp_path / "res").k_constant == want


def test_k_constant_of_arrays_is_statsmodels(data):
    y, g = data["y"].to_numpy(), data["g"].to_numpy()
    x1 = data["x1"].to_numpy()
    dummies = (data["site"].to_numpy()[:, None] == np.array(list("abc"))).astype(float)
    for exog in (
        np.column_stack([x1, np.full(len(x1), 2.0)]),
        x1[:, None],
        np.column_stack([x1, dummies]),
        np.column_stack([x1, np.zeros(len(x1))]),
    ):
        want = sm.MixedLM(y, exog, g).data.k_constant
        assert constant_in_rows(exog) == want
    exog = np.column_stack([x1, np.full(len(x1), 2.0)])
    assert dmixed.MixedLM(y, exog, g).fit().k_constant == 1


def test_terms_name_their_columns(data):
    res = dmixed.mixedlm("y ~ x1 + C(site) + x1:x2", data, groups="g").fit()
    terms = dict(fe_terms(res.spec, list(res.names.exog_names)))
    assert list(terms) == ["Intercept", "C(site)", "x1", "x1:x2"]  # (statsmodels' order)
    names = np.asarray(res.names.exog_names)
    assert list(names[terms["C(site)"]]) == ["C(site)[T.b]", "C(site)[T.c]"]
    assert [n for n, _ in fe_terms(None, ["a", "b"])] == ["a", "b"]


def _constant_in_rows_by_range(x: np.ndarray) -> int:
    """The rule as statsmodels writes it: a column whose max equals its min, not zero."""
    constant = np.flatnonzero(x.max(axis=0) == x.min(axis=0))
    if np.any(x[0, constant] != 0):
        return 1
    augmented = np.column_stack([np.ones(x.shape[0]), x])
    return int(np.linalg.matrix_rank(augmented) == np.linalg.matrix_rank(x))


_ENTRIES = st.sampled_from([0.0, -0.0, 1.0, 2.0, -3.5, np.nan, np.inf, -np.inf, 1e-300])


@settings(max_examples=300)
@given(
    st.integers(1, 6).flatmap(
        lambda n: st.lists(
            st.one_of(
                st.lists(_ENTRIES, min_size=n, max_size=n),
                _ENTRIES.map(lambda v, n=n: [v] * n),  # constant columns, often
            ),
            min_size=1,
            max_size=4,
        )
    )
)
def test_k_constant_of_rows_is_the_rule_by_range(columns):
    """Constant columns found by comparing with the first row are those whose max equals
    their min, with NaN, ±inf, signed zeros and constant columns of every value."""
    x = np.asfortranarray(np.array(columns, dtype=np.float64).T)

    def outcome(rule):
        try:
            with np.errstate(invalid="ignore"):
                return rule(x)
        except (np.linalg.LinAlgError, ValueError) as exc:  # the rank of non-finite rows
            return type(exc)

    assert outcome(constant_in_rows) == outcome(_constant_in_rows_by_range)


@settings(max_examples=40)
@given(
    st.lists(
        st.lists(st.sampled_from([0.0, 1.0, 2.0, -1.5]), min_size=8, max_size=8),
        min_size=1,
        max_size=3,
    )
)
def test_k_constant_of_arrays_from_their_intercept_is_the_rule_on_rows(columns):
    """An array model's ``k_constant`` taken from the column of ones found with its rows
    is statsmodels' rule on those rows (:func:`constant_in_rows`)."""
    x = np.asfortranarray(np.array(columns, dtype=np.float64).T)
    g = np.repeat(np.arange(2), 4)
    model = dmixed.MixedLM(np.arange(8.0), x, g)
    assert constant_of_fit(model, None) == constant_in_rows(x)


def test_terms_leave_out_the_columns_drop_cols_dropped(data):
    """A whole term dropped is no term; a term with some columns dropped keeps the
    others; ``wald_test_terms`` tests what is left (statsmodels drops a dropped whole
    term from its ``design_info``)."""
    res = dmixed.mixedlm(
        "y ~ x1 + C(site) + x1:x2", data, groups="g", drop_cols=["x1:x2", "C(site)[T.c]"]
    ).fit()
    names = np.asarray(res.names.exog_names)
    terms = dict(fe_terms(res.spec, list(names)))
    assert list(terms) == ["Intercept", "C(site)", "x1"]
    assert list(names[terms["C(site)"]]) == ["C(site)[T.b]"]
    table = res.wald_test_terms(scalar=True).table
    assert list(table.index) == ["Intercept", "C(site)", "x1"]
    assert list(table["df_constraint"]) == [1, 1, 1]
    one = res.wald_test("C(site)[T.b] = 0", scalar=True)
    assert table.loc["C(site)", "statistic"] == pytest.approx(float(one.statistic), rel=1e-12)


def test_terms_of_quoted_columns_are_named_as_statsmodels():
    """Terms of ``Q("a b")`` are named and found by patsy's spelling; for the names a
    model saved before kept (``Q('a b')``), in that spelling, as its parameters."""
    import pandas as pd

    from dmixed.design.labels import formulaic_spelling

    rng = np.random.default_rng(5)
    df = pd.DataFrame(
        {"g": np.arange(200) % 20, "a b": rng.normal(size=200), "x": rng.normal(size=200)}
    )
    df["y"] = df["a b"] + rng.normal(size=20)[df.g] + rng.normal(size=200)
    formula = 'y ~ Q("a b") * x'
    res = dmixed.mixedlm(formula, df, groups="g").fit()
    terms = fe_terms(res.model.spec, list(res.fe_params.index))
    assert [n for n, _ in terms] == ["Intercept", 'Q("a b")', "x", 'Q("a b"):x']
    old = formulaic_spelling(list(res.fe_params.index), formula)
    kept = fe_terms(res.model.spec, old)
    assert [n for n, _ in kept] == ["Intercept", "Q('a b')", "x", "Q('a b'):x"]
    assert [list(p) for _, p in kept] == [list(p) for _, p in terms]
    assert res.t_test('Q("a b") = 0').effect[0] == res.fe_params['Q("a b")']
