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


def _cells(latex: str) -> list[list[str]]:
    """The cells of each row of a LaTeX table (its lines ending in ``\\\\``)."""
    rows = [line.removesuffix("\\\\").strip() for line in latex.splitlines()]
    return [[c.strip() for c in row.split("&")] for row in rows if "&" in row]


def test_latex_has_the_form_of_statsmodels_summary2():
    """``as_latex`` was missing; it now gives statsmodels' table: the same lines of
    structure, the model information and the coefficients' rows (names escaped)."""
    import warnings

    import statsmodels.formula.api as smf

    import dmixed

    df = make_data(n_groups=8, seed=6).rename(columns={"x1": "x_1"})
    ours = dmixed.mixedlm("y ~ x_1 + x2", df, groups="g").fit().summary().as_latex("tab:m")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = smf.mixedlm("y ~ x_1 + x2", df, groups="g").fit().summary().as_latex("tab:m")

    def structure(text):
        return [s for s in text.splitlines() if s.startswith("\\") and "&" not in s]

    assert structure(ours)[: len(structure(theirs))] == structure(theirs)
    assert "\\begin{verbatim}\nRandom effects:" in ours  # lme4's VarCorr block, after
    got, want = _cells(ours), _cells(theirs)
    assert len(got) == len(want)
    assert [r[0::2] for r in got[:6]] == [r[0::2] for r in want[:6]]  # the labels
    assert [r[0] for r in got[7:]] == ["Intercept", "x\\_1", "x2", "g Var"]
    assert [r[0] for r in want[7:]] == ["Intercept", "x\\_1", "x2", "g Var"]
    for mine, sm in zip(got[7:], want[7:], strict=True):  # three decimals, blank NaN
        assert [c == "" for c in mine] == [c == "" for c in sm]
        assert np.allclose(
            [float(c) for c in mine[1:] if c], [float(c) for c in sm[1:] if c], atol=2e-3
        )
    assert got[6][1:3] == ["Coef.", "Std.Err."] and got[6][4] == "P$>$$|$z$|$"


@pytest.mark.parametrize("label", ["tab:a_b%", "tab:{x}", "tab:\\x", "tab#1"])
def test_latex_label_that_would_break_the_command_is_refused(res, label):
    """A label was written as given: ``%`` commented out the rest of ``\\label{...``."""
    with pytest.raises(SpecError, match="a LaTeX label cannot hold any of"):
        res.summary().as_latex(label=label)
    assert "\\label{tab:a_b}\n" in res.summary().as_latex(label="tab:a_b")


def test_variance_rows_std_err_is_statsmodels_bse_re_and_said_so(res):
    """The variance rows' Std.Err. is statsmodels' bse · √scale (bse_re), not the
    standard error of the printed variance: the docstrings say so and where the
    intervals are."""
    table = res.summary_frame()
    k = len(res.fe_params)
    re_rows = table.index[k : k + len(res.bse_re)]
    np.testing.assert_allclose(
        table.loc[re_rows, "Std.Err."],
        np.asarray(res.bse)[k : k + len(re_rows)] * np.sqrt(res.scale),
    )
    for method in (type(res).summary, type(res).summary_frame):
        doc = " ".join(method.__doc__.split())
        assert "bse · √scale" in doc and "is *not* the standard error" in doc
        assert ":meth:`confint`" in doc


def test_each_note_constant_has_its_own_doc_comment():
    """``HELD_NOTE`` was put between ``REGULARIZED_NOTE`` and its ``#:`` comment, so
    Sphinx gave both comment lines to ``HELD_NOTE`` and ``REGULARIZED_NOTE`` none."""
    import inspect

    from dmixed.results import summary

    lines = inspect.getsource(summary).splitlines()
    for name, words in (("HELD_NOTE", "free"), ("REGULARIZED_NOTE", "fit_regularized")):
        at = next(i for i, line in enumerate(lines) if line.startswith(f"{name} ="))
        assert lines[at - 1].startswith("#:") and words in lines[at - 1], name
        assert not lines[at - 2].startswith("#:"), name  # one comment, its own
