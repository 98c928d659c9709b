"""The fixed-effects terms and ``k_constant`` of a fit (``dmixed/results/terms.py``),
against statsmodels' values."""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pytest
import statsmodels.api as sm

import dmixed
from dmixed.results import load
from dmixed.results.terms import constant_in_rows, fe_terms

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
    assert list(terms) == ["Intercept", "x1", "C(site)", "x1:x2"]
    names = np.asarray(res.names.exog_names)
    assert list(names[terms["C(site)"]]) == ["C(site)[T.b]", "C(site)[T.c]"]
    assert [n for n, _ in fe_terms(None, ["a", "b"])] == ["a", "b"]
