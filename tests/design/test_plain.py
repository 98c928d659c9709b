"""dmixed.design.plain: formulas of plain numeric columns read without formulaic give
formulaic's names, order and matrices exactly."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dmixed.design.build as build_module
from dmixed.design import build_spec
from dmixed.design.evaluate import model_matrix
from dmixed.design.plain import PlainFormula, read_plain
from dmixed.errors import FormulaError

from .._synth import QUICK


def _frame(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x1": rng.normal(size=n),
            "x2": rng.integers(-5, 5, n),
            "x3": rng.normal(size=n).astype(np.float32),
            "x4": pd.array(rng.integers(0, 9, n), dtype="Int64"),
            "x5": np.array(list(rng.normal(size=n)), dtype=object),
            "xb": rng.integers(0, 2, n).astype(bool),
            "log": rng.uniform(1, 2, n),
            "a": np.array(["lo", "hi", "mid"], dtype=object)[rng.integers(0, 3, n)],
            "g": np.arange(n) % 6,
        }
    )


FRAME = _frame()
PLAIN_ITEMS = ["x1", "x2", "x3", "x4", "x5", "xb", "log", "0", "1"]
OTHER_ITEMS = ["a", "x1:x2", "C(x2)", "I(x1 * 2)", "nope", "01"]


@st.composite
def formulas(draw, one_sided: bool) -> str:
    items = draw(st.lists(st.sampled_from(PLAIN_ITEMS * 3 + OTHER_ITEMS), min_size=1, max_size=5))
    text = ""
    for i, item in enumerate(items):
        sign = draw(st.sampled_from(["+", "+", "-"] if i else ["", "", "+", "-"]))
        space = draw(st.sampled_from(["", " ", "  ", "\t"]))
        text += f"{space}{sign}{space}{item}"
    return ("~" if draw(st.booleans()) else "") + text if one_sided else "y ~" + text


def _both_ways(formula, re_formula):
    """``build_spec`` with the plain reading, and with formulaic for every formula."""
    out = []
    for plain in (True, False):
        with pytest.MonkeyPatch.context() as mp:
            if not plain:
                mp.setattr(build_module, "read_plain", lambda *a, **k: None)
            try:
                spec = build_spec(FRAME, formula, "g", re_formula=re_formula)
            except (ValueError, FormulaError) as e:
                out.append(("error", type(e), str(e)))
                continue
            out.append((spec, spec.transform(FRAME)))
    return out


@settings(max_examples=150, **QUICK)
@given(formulas(one_sided=False), st.one_of(st.none(), formulas(one_sided=True)))
def test_plain_formulas_match_formulaic(formula, re_formula):
    fast, slow = _both_ways(formula, re_formula)
    if fast[0] == "error" or slow[0] == "error":
        assert fast == slow
        return
    (s1, d1), (s2, d2) = fast, slow
    assert (s1.endog_name, s1.exog_names, s1.exog_re_names) == (
        s2.endog_name,
        s2.exog_names,
        s2.exog_re_names,
    )
    assert s1.intercept_columns() == s2.intercept_columns()
    for a, b in ((d1.endog, d2.endog), (d1.exog, d2.exog), (d1.exog_re, d2.exog_re)):
        np.testing.assert_allclose(a, b, rtol=1e-15, atol=0)


@settings(max_examples=200, **QUICK)
@given(formulas(one_sided=False))
def test_read_plain_names_are_formulaic_names(formula):
    numeric = pd.DataFrame({c: np.asarray(FRAME[c], dtype=np.float64) for c in PLAIN_ITEMS[:7]})
    numeric["y"] = FRAME["y"]
    plain = read_plain(formula, set(numeric.columns), lhs=True)
    if plain is None:
        return
    spec = model_matrix(formula, numeric, "formula", "numpy").model_spec
    assert list(spec.lhs.column_names) == [plain.response]
    assert list(spec.rhs.column_names) == plain.names()


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        ("y ~ x1 + x2", PlainFormula("y", True, ("x1", "x2"))),
        ("y~x2+x1+x2", PlainFormula("y", True, ("x2", "x1"))),
        ("y ~ x1 - 1", PlainFormula("y", False, ("x1",))),
        ("y ~ 0 + x1 + 1", PlainFormula("y", True, ("x1",))),
        ("y ~ -1 + x1", PlainFormula("y", False, ("x1",))),
        ("y ~ 1", None),  # no column
        ("y ~ x1 - 0", None),  # formulaic's own reading
        ("y ~ x1 - x2", None),
        ("y ~ 01 + x1", None),
        ("y ~ x1 x2", None),
        ("y ~ x1 + Intercept", None),
        ("y ~ x1 + nope", None),
        ("y ~ C(x1)", None),
        ("y + x1 ~ x2", None),
        (3, None),
    ],
)
def test_read_plain(formula, expected):
    columns = {"y", "x1", "x2", "Intercept"}
    assert read_plain(formula, columns, lhs=True) == expected


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        ("y ~ x10 + x1 + 0", PlainFormula("y", False, ("x10", "x1"))),
        ("y~x10+x11-1", PlainFormula("y", False, ("x10", "x11"))),
        ("y ~ x10 + x1 + C(x0)", None),
        ("y ~ x10 + 1x", None),
        ("y ~ x10 + x1 + 01", None),
    ],
)
def test_names_ending_in_0_or_1_are_read_whole(formula, expected):
    assert read_plain(formula, {"y", "x0", "x1", "x10", "x11"}, lhs=True) == expected


def test_wide_formula_with_a_call_is_left_to_formulaic():
    # every split of the names (x10 as x1 and 0) was tried before the base refused it:
    # exponential in the names that end in 0 or 1 (300 names: it never ended)
    names = [f"x{i}" for i in range(300)]
    formula = "y ~ " + " + ".join(names) + " + C(a) + C(b)"
    assert read_plain(formula, {"y", "a", "b", *names}, lhs=True) is None
    plain = read_plain(formula.removesuffix(" + C(a) + C(b)"), {"y", *names}, lhs=True)
    assert plain == PlainFormula("y", True, tuple(names))


def test_one_sided():
    cols = {"x1", "y"}
    assert read_plain("~x1", cols, lhs=False) == PlainFormula(None, True, ("x1",))
    assert read_plain("0 + x1", cols, lhs=False) == PlainFormula(None, False, ("x1",))
    assert read_plain("y ~ x1", cols, lhs=False) is None


def test_formulaic_spec_made_on_first_use():
    spec = build_spec(FRAME, "y ~ x1 + x2", "g", re_formula="~ x1")
    assert spec.main_spec is None and spec.re_spec is None
    assert list(spec.formulaic_spec("main").rhs.column_names) == spec.exog_names
    assert list(spec.formulaic_spec("re").column_names) == ["Intercept", "x1"]


def test_plain_fit_does_not_import_formulaic():
    code = (
        "import sys, numpy as np, pandas as pd, dmixed\n"
        "r = np.random.default_rng(0)\n"
        "df = pd.DataFrame({'y': r.normal(size=60), 'x': r.normal(size=60),"
        " 'g': np.arange(60) % 6})\n"
        "dmixed.MixedLM.from_formula('y ~ x', df, groups='g', re_formula='~x')\n"
        "assert 'formulaic' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "formula",
    [
        "0 + C(lev)",
        "0+C(lev)",
        "  0 +  lev ",
        "0 + C(x)",
        "1 + C(lev)",
        "0 + C(lev) + x",
        "0 + C( lev )",
    ],
)
def test_indicator_info_is_what_the_analysis_finds(formula):
    """``0 + C(col)`` / ``0 + col``: what ``analyze_terms`` finds after formulaic's parse,
    without it; any other formula is left to them (None)."""
    from dmixed.design.formula import analyze_terms, parse_formula
    from dmixed.design.plain import indicator_info

    columns = {"lev", "x", "y"}
    _, terms = parse_formula(formula, "vc_formula['v']", lhs=False)
    want = analyze_terms(terms, columns, "vc_formula['v']", formula)
    got = indicator_info(formula, columns)
    assert got is None or got == want
    assert (got is None) == (formula not in ("0 + C(lev)", "0+C(lev)", "  0 +  lev ", "0 + C(x)"))
    assert indicator_info("0 + C(lev)", columns | {"C"}) is None  # a column named C
