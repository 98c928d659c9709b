"""The order of the fixed effects is statsmodels' (patsy's): terms grouped by their
numeric factors, the group without numeric factors first, by degree within a group."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmixed.design import build_spec
from dmixed.design.evaluate import patsy_term_order

from .frames import make_df

FORMULAS = [
    "y ~ x1 + C(a)",
    "y ~ x1*C(a)",
    "y ~ 0 + x1 + C(a)",
    "y ~ 1 + x1 - 1 + C(a)",
    "y ~ x1:x2 + x1",
    "y ~ x1 + x1:x2 + x2",
    "y ~ x1:C(a) + x2",
    "y ~ x1 + C(a) + x2 + C(b)",
    "y ~ x1*x2*C(a)",
    "y ~ C(a) + x1 + C(a):x1 + x2",
    "y ~ x1*C(a) + C(b)*x2",
    "y ~ x1 + a",
    "y ~ (x1 + x2 + C(a))**2",
    "y ~ C(b):x1:x2 + x1",
    "y ~ I(x1**2) + np.exp(x2):C(b) + x1",
]


def _statsmodels_names(formula: str, df: pd.DataFrame) -> list[str]:
    import statsmodels.formula.api as smf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return list(smf.mixedlm(formula, df, groups=df["g"]).exog_names)


@pytest.mark.parametrize("formula", FORMULAS)
def test_fixed_effects_in_statsmodels_order(formula):
    df = make_df()
    spec = build_spec(df, formula, groups="g")
    assert list(spec.exog_names) == _statsmodels_names(formula, df)


@pytest.mark.parametrize("formula", ["y ~ x1*C(a)", "y ~ (x1 + x2 + C(b))**2"])
def test_dask_fixed_effects_in_statsmodels_order(formula):
    import dask.dataframe as dd

    df = make_df()
    spec = build_spec(dd.from_pandas(df, npartitions=3), formula, groups="g")
    assert list(spec.exog_names) == _statsmodels_names(formula, df)
    exog = np.vstack([spec.transform(df.iloc[i::3]).exog for i in range(3)])
    want = build_spec(df, formula, groups="g").transform(df).exog
    np.testing.assert_array_equal(exog, np.vstack([want[i::3] for i in range(3)]))


def test_re_formula_in_statsmodels_order():
    import statsmodels.formula.api as smf

    df = make_df()
    spec = build_spec(df, "y ~ x1", groups="g", re_formula="1 + x1 + C(b)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mod = smf.mixedlm("y ~ x1", df, groups=df["g"], re_formula="1 + x1 + C(b)")
    # (statsmodels names the intercept "Group" here, dmixed after the group column)
    assert list(spec.exog_re_names) == ["g", *mod.data.exog_re_names[1:]]
    assert mod.data.exog_re_names[1:] == ["C(b)[T.v]", "C(b)[T.w]", "x1"]


def test_vc_formula_in_statsmodels_order_needs_this_version():
    """A VC formula whose columns are in statsmodels' order where formulaic's differs
    is named so by this version only (earlier versions rebuild it in formulaic's
    order), as a fixed-effects formula is; also once saved and loaded."""
    import statsmodels.formula.api as smf

    from dmixed.design import ModelSpec

    df = make_df()
    for formula, newer in [("0 + x1 + C(b)", True), ("0 + C(b) + x1", False)]:
        spec = build_spec(df, "y ~ x2", groups="g", vc_formula={"m": formula})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mod = smf.mixedlm("y ~ x2", df, groups=df["g"], vc_formula={"m": formula})
        assert list(spec.vc_column_names[0]) == mod.exog_vc.colnames[0][0]
        assert spec.names_need_this_version() is newer
        assert ModelSpec.from_dict(spec.to_dict()).names_need_this_version() is newer


def test_design_columns_follow_the_names():
    """Each column holds what its name says (``x1`` is the column x1, an indicator is
    0/1 of its level)."""
    df = make_df()
    spec = build_spec(df, "y ~ x2 + x1*C(a)", groups="g")
    x = spec.transform(df).exog
    names = list(spec.exog_names)
    np.testing.assert_array_equal(x[:, names.index("x1")], df["x1"])
    np.testing.assert_array_equal(x[:, names.index("x2")], df["x2"])
    np.testing.assert_array_equal(x[:, names.index("C(a)[T.lo]")], df["a"] == "lo")
    np.testing.assert_array_equal(
        x[:, names.index("x1:C(a)[T.top]")], df["x1"] * (df["a"] == "top")
    )


def test_spec_saved_before_keeps_its_order():
    """A spec saved by an earlier version (no ``term_order``: formulaic's order) loads
    with its own order; one saved now with statsmodels'."""
    from dmixed.design import ModelSpec

    formula = "y ~ x1*C(a) + x2"
    state = build_spec(make_df(), formula, groups="g").to_dict()
    assert state["term_order"] == "patsy"
    assert ModelSpec.from_dict(state).exog_names == state["exog_names"]
    old = {k: v for k, v in state.items() if k != "term_order"}
    levels = [f"C(a)[T.{v}]" for v in state["levels"]["a"][1:]]
    old["exog_names"] = ["Intercept", "x1", *levels, "x2", *[f"x1:{n}" for n in levels]]
    loaded = ModelSpec.from_dict(old)
    assert loaded.exog_names == old["exog_names"]
    assert loaded.term_order == "degree"
    assert ModelSpec.from_dict(loaded.to_dict()).exog_names == old["exog_names"]
    df = make_df()
    now = build_spec(df, formula, groups="g").transform(df).exog
    then = loaded.transform(df).exog
    perm = [list(state["exog_names"]).index(n) for n in old["exog_names"]]
    np.testing.assert_array_equal(then, now[:, perm])


def test_spec_of_unknown_order_is_refused():
    from dmixed.design import ModelSpec
    from dmixed.errors import CheckpointError

    state = build_spec(make_df(), "y ~ x1 + C(a)", groups="g").to_dict()
    state["term_order"] = "alphabetical"
    with pytest.raises(CheckpointError, match=r"y ~ x1 \+ C\(a\).*'alphabetical'.*newer"):
        ModelSpec.from_dict(state)


_POOL = ["x1", "x2", "C(a)", "C(b)", "a", "I(x1**2)", "np.exp(x2)"]


@st.composite
def _formulas(draw):
    atoms = []
    for _ in range(draw(st.integers(1, 4))):
        a, b = draw(st.sampled_from(_POOL)), draw(st.sampled_from(_POOL))
        atoms.append(draw(st.sampled_from([a, f"{a}:{b}", f"{a}*{b}"])))
    rhs = " + ".join(atoms)
    if draw(st.booleans()):
        rhs = "0 + " + rhs
    if draw(st.integers(0, 4)) == 0:
        rhs = f"({draw(st.sampled_from(_POOL))} + {draw(st.sampled_from(_POOL))})**2 + " + rhs
    return "y ~ " + rhs


@settings(max_examples=40, deadline=None)
@given(_formulas())
def test_any_formula_in_statsmodels_order(formula):
    df = make_df()
    try:
        theirs = _statsmodels_names(formula, df)
    except Exception:  # (statsmodels refuses it: nothing to compare)
        return
    assert list(build_spec(df, formula, groups="g").exog_names) == theirs


def test_patsy_term_order_groups_by_numeric_factors():
    from formulaic import Formula

    terms = list(Formula("x:z + C(f) + x + z:C(f) + 1", _ordering="none"))
    got = [str(t) for t in patsy_term_order(terms, {"x", "z"})]
    assert got == ["1", "C(f)", "x:z", "x", "z:C(f)"]


def _wide(width: int, factors: str) -> tuple[pd.DataFrame, str]:
    rng = np.random.default_rng(5)
    n = 400
    df = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(width)})
    df["y"] = rng.normal(size=n)
    df["g"] = rng.integers(0, 20, size=n)
    df["a"] = rng.choice(list("pqr"), size=n)
    df["b"] = rng.choice(list("uvwz"), size=n)
    return df, "y ~ " + " + ".join(f"x{i}" for i in range(width)) + factors


def test_wide_formula_with_factors_in_patsy_order():
    # (on the base the check of whether it is a plain formula backtracked for ever)
    import patsy

    df, formula = _wide(300, " + C(a) + C(b)")
    spec = build_spec(df, formula, groups="g")
    _, want = patsy.dmatrices(formula, df, return_type="dataframe")
    assert list(spec.exog_names) == list(want.columns)
    assert spec.exog_names[:6] == [
        "Intercept",
        "C(a)[T.q]",
        "C(a)[T.r]",
        "C(b)[T.v]",
        "C(b)[T.w]",
        "C(b)[T.z]",
    ]
    assert spec.exog_names[6:] == [f"x{i}" for i in range(300)]
    assert spec.to_dict()["term_order"] == "patsy"


def _formulaic_builds(monkeypatch) -> list[str]:
    import formulaic

    calls: list[str] = []
    build = formulaic.model_matrix

    def counted(spec, *args, **kwargs):
        calls.append(str(spec))
        return build(spec, *args, **kwargs)

    monkeypatch.setattr(formulaic, "model_matrix", counted)
    return calls


def test_reordered_wide_formula_is_built_once(monkeypatch):
    df, formula = _wide(50, " + C(a) + C(b)")
    calls = _formulaic_builds(monkeypatch)
    spec = build_spec(df, formula, groups="g")
    assert len(calls) == 1
    assert spec.exog_names[1] == "C(a)[T.q]"


@pytest.mark.parametrize(
    ("formula", "builds"),
    [
        # a comparison is a number until formulaic evaluates it: built again
        ("y ~ x1 + I(x1 > 0)", 2),
        ("y ~ x1 + flag", 1),  # (booleans: a factor, as the frame tells)
        ("y ~ np.exp(x2) + C(a) + x1", 1),
    ],
)
def test_order_guessed_wrong_is_built_again(monkeypatch, formula, builds):
    df = make_df()
    df["flag"] = df["x2"] > 0
    calls = _formulaic_builds(monkeypatch)
    spec = build_spec(df, formula, groups="g")
    assert len(calls) == builds
    assert list(spec.exog_names) == _statsmodels_names(formula, df)
