"""dmixed.design.matrices: model matrices built with numpy match formulaic's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dmixed.design import ModelSpec, build_spec

from .frames import make_df


def test_non_finite_from_expression():
    df = make_df(30)
    df.loc[3, "x1"] = -1.0
    spec = build_spec(df.assign(x1=df["x1"].abs() + 1), "y ~ np.log(x1)", groups="g")
    with pytest.raises(
        ValueError, match=r"non-finite values in fixed-effects design.*np.log\(x1\)"
    ):
        spec.transform(df.assign(x1=-1.0))


@pytest.mark.parametrize(
    ("formula", "re_formula", "shared"),
    [
        ("y ~ x1 + x2", "1 + x1", True),
        ("y ~ x1 + x2", "1", True),
        ("y ~ x1 + x2", "0 + x2", True),
        ("y ~ x1 + x2", "1 + x2", False),  # not a run of the fixed-effects columns
        ("y ~ 0 + x1", "1", False),  # no intercept among the fixed effects
    ],
)
def test_random_design_shares_fixed_effect_columns(formula, re_formula, shared, monkeypatch):
    """``exog_re`` is a view of ``exog`` when its columns are a run of the fixed-effects
    columns (no copy per partition), with the same values either way."""
    df = make_df(40)
    dm = build_spec(df, formula, groups="g", re_formula=re_formula).transform(df)
    assert np.shares_memory(dm.exog_re, dm.exog) == shared
    q = dm.exog_re.shape[1]
    spec = build_spec(df, formula, groups="g", re_formula=re_formula)
    monkeypatch.setattr(type(spec), "re_columns_of_exog", lambda self, exog: None)
    copy = spec.transform(df).exog_re  # what it is without the view
    assert not np.shares_memory(copy, dm.exog)
    np.testing.assert_array_equal(dm.exog_re, copy)
    assert dm.exog_re.shape == (len(df), q)


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_overflowing_interaction_is_caught():
    """Finite columns whose product overflows (numeric fast path): the product column is
    named, in the fixed and the random part (the error alone: no numpy RuntimeWarning
    besides it); plain copies are not checked twice."""
    df = make_df(30)
    spec = build_spec(df, "y ~ x1 + x1:x2", groups="g", re_formula="1 + x1:x2")
    big = df.assign(x1=1e200, x2=1e200)
    with pytest.raises(ValueError, match=r"non-finite values in fixed-effects design.*'x1:x2'"):
        spec.transform(big)
    spec_re = build_spec(df, "y ~ x1", groups="g", re_formula="1 + x1:x2")
    with pytest.raises(ValueError, match=r"non-finite values in random-effects design.*'x1:x2'"):
        spec_re.transform(big)
    dm = spec.transform(df.assign(x1=1e200))  # large but finite: no error
    assert np.isfinite(dm.exog).all()


PLAIN_CASES = [
    ("y ~ x1 + x2", "1 + x1", True),
    ("y ~ x1 * x2", "0 + x1", True),  # x1 + x2 + x1:x2
    ("y ~ 0 + x1 + x1:x2:x3", "x2", True),
    ("y ~ x2 - 1", None, True),
    ("y ~ x1 + C(c)", "1 + x1", False),  # categorical: formulaic
    ("y ~ I(x1 ** 2) + x2", "1 + np.log(x3)", False),  # transforms: formulaic
    ("np.log(x3) ~ x1", "1", False),
]


@pytest.mark.parametrize(("formula", "re_formula", "plain"), PLAIN_CASES)
@pytest.mark.parametrize("missing_rows", [False, True])
def test_numeric_formulas_match_formulaic(formula, re_formula, plain, missing_rows, monkeypatch):
    rng = np.random.default_rng(3)
    n = 300
    df = pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x1": rng.normal(size=n),
            "x2": rng.integers(-3, 4, n),  # an integer column
            "x3": rng.uniform(0.5, 2.0, n),
            "c": rng.choice(["a", "b", "c"], n),
            "g": rng.integers(0, 20, n),
            "w": rng.uniform(0.5, 2.0, n),
        }
    )
    if missing_rows:
        df.loc[rng.choice(n, 25, replace=False), "x1"] = np.nan
    spec = build_spec(df, formula, groups="g", re_formula=re_formula, weights="w", missing="drop")
    used = {w: spec.plain_plan(w) is not None for w in ("rhs", "lhs")}
    if re_formula is not None:
        used["re"] = spec.plain_plan("re") is not None
    assert all(used.values()) == plain  # numpy only where every part is plain
    fast = spec.transform(df)
    fast_new = spec.transform(df.drop(columns=["y"]), response=False) if plain else None
    monkeypatch.setattr(ModelSpec, "plain_plan", lambda self, which: None)
    slow = spec.transform(df)
    for name in ("endog", "exog", "exog_re", "groups", "weights"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name), err_msg=name)
    uses_x1 = "x1" in formula + (re_formula or "")
    assert fast.n_dropped == slow.n_dropped == (25 if missing_rows and uses_x1 else 0)
    if plain:
        slow_new = spec.transform(df.drop(columns=["y"]), response=False)
        np.testing.assert_array_equal(fast_new.exog, slow_new.exog)
