"""The summary: statsmodels' tables, names and title."""

from __future__ import annotations

import numpy as np
import pytest

from dmixed import MixedLM, SpecError

from .._synth import design, make_data


@pytest.fixture(scope="module")
def res():
    endog, exog, exog_re, groups = design(make_data(n_groups=8, seed=6))
    return MixedLM(endog, exog, groups).fit()


def test_tables_as_statsmodels(res):
    summ = res.summary()
    assert list(summ.tables[1].index) == ["const", "x1", "x2", "Group Var"]
    assert summ.tables[1].loc["x1", "Coef."] == f"{res.fe_params[1]:.3f}"
    assert ("Dependent Variable:", "y") in summ.info


def test_names_and_title_replaced(res):
    summ = res.summary(xname_fe=["a", "b", "c"], xname_re=["u"], title="T", yname="out")
    assert list(summ.tables[1].index) == ["a", "b", "c", "u"]
    assert summ.title == "T" and str(summ).lstrip().startswith("T")
    assert ("Dependent Variable:", "out") in summ.info
    with pytest.raises(SpecError, match="xname_fe should be a list of length 3"):
        res.summary(xname_fe=["a"])
    assert np.isnan(res.summary().table.loc["Group Var", "z"])
