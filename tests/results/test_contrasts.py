"""t_test and wald_test on the fixed effects, against statsmodels."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.tools.sm_exceptions import ValueWarning

import dmixed
from dmixed.errors import SpecError


def test_t_test_of_a_matrix_is_statsmodels(fits):
    ours, theirs = fits
    r = np.array([[0.0, 1.0, 0.0, 0.0], [0.0, 1.0, -1.0, 0.5], [1.0, 0.0, 0.0, 0.0]])
    a, b = ours.t_test(r), theirs.t_test(r)
    np.testing.assert_allclose(a.effect, b.effect, rtol=1e-5)
    np.testing.assert_allclose(a.sd, b.sd, rtol=1e-4)
    np.testing.assert_allclose(a.tvalue, b.tvalue, rtol=1e-4)
    # statsmodels stops its optimizer ~1e-4 short: tail areas far out differ by more
    np.testing.assert_allclose(a.pvalue, b.pvalue, rtol=1e-2, atol=1e-300)
    np.testing.assert_allclose(a.conf_int(0.1), b.conf_int(0.1), rtol=1e-4)
    # the identity reproduces the coefficient table (statsmodels' own test)
    eye = ours.t_test(np.eye(ours.k_fe))
    np.testing.assert_allclose(eye.effect, ours.fe_params)
    np.testing.assert_allclose(eye.sd, ours.bse_fe)
    assert list(eye.summary_frame().columns[:4]) == ["coef", "std err", "z", "P>|z|"]


@pytest.mark.parametrize("use_t", [False, True])
@pytest.mark.parametrize("rows", [[1], [1, 2]])
def test_t_test_shapes_are_statsmodels(fits, rows, use_t):
    """statsmodels' ContrastResults shapes: for one row ``sd`` and ``tvalue`` are
    ``(1, 1)`` and ``pvalue`` 0-d; ``effect`` stays ``(m,)``.  statsmodels' MixedLM takes
    a matrix only; its shapes do not depend on ``q`` (OLS's ``t_test``), so the matrix
    with ``q``, and the same hypothesis as text, get the matrix's shapes too."""
    ours, theirs = fits
    r = np.eye(ours.k_fe)[rows]
    ref = theirs.t_test(r, use_t=use_t)
    names = ours.model.exog_names
    text = ", ".join(f"{names[j]} = 0.5" for j in rows)
    same = [r, (r, np.full(len(rows), 0.5)), text]
    if len(rows) == 1:
        same.append(r[0])  # statsmodels' OLS t_test takes a 1-D row alike
    for hyp in same:
        got = ours.t_test(hyp, use_t=use_t)
        for name in ("effect", "sd", "statistic", "tvalue", "pvalue"):
            assert np.shape(getattr(got, name)) == np.shape(getattr(ref, name)), (hyp, name)
        assert np.shape(got.conf_int()) == np.shape(ref.conf_int())
        assert got.summary_frame().shape == ref.summary_frame().shape
    np.testing.assert_allclose(ours.t_test(r, use_t=use_t).sd, ref.sd, rtol=1e-4)


@pytest.mark.parametrize("use_t", [False, True])
def test_summary_frame_is_statsmodels(fits, use_t):
    """The same columns (the intervals' named alike whatever ``alpha``), rows and values
    as statsmodels' ``ContrastResults.summary_frame(xname=None, alpha=0.05)``."""
    ours, theirs = fits
    r = np.eye(ours.k_fe)[1:3]
    a, b = ours.t_test(r, use_t=use_t), theirs.t_test(r, use_t=use_t)
    for kw in ({}, {"alpha": 0.1}, {"xname": ["x1", "x2"], "alpha": 0.2}):
        got, want = a.summary_frame(**kw), b.summary_frame(**kw)
        assert list(got.columns) == list(want.columns)
        assert list(got.index) == list(want.index)
        np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-2)
    with pytest.raises(SpecError, match="give alpha=0.1 by keyword"):
        a.summary_frame(0.1)


def test_t_test_with_t_reference(fits):
    ours, theirs = fits
    r = np.eye(ours.k_fe)[1:2]
    a, b = ours.t_test(r, use_t=True), theirs.t_test(r, use_t=True)
    assert a.distribution == "t" and a.df_denom == ours.nobs - ours.k_fe
    np.testing.assert_allclose(a.pvalue, b.pvalue, rtol=1e-3)


def test_text_hypotheses(fits):
    ours, _ = fits
    beta = ours.fe_params
    res = ours.t_test("x1 = 1, x2 = 2 * x1")
    np.testing.assert_allclose(res.effect, [beta.x1, beta.x2 - 2 * beta.x1])
    same = ours.t_test((np.array([[0, 1, 0, 0], [0, -2, 1, 0]]), [1, 0]))
    np.testing.assert_allclose(res.effect, same.effect)
    np.testing.assert_allclose(res.sd, same.sd)
    np.testing.assert_allclose(res.tvalue, (res.effect - [1, 0]) / res.sd)


def test_q_moves_the_statistic_not_the_effect_or_its_interval(fits):
    """As statsmodels' ContrastResults (OLS ``t_test("x = 10")``): ``effect`` and
    ``conf_int`` are of ``R β̂``; only the statistic and p-value use ``q``."""
    ours, theirs = fits
    r = np.eye(ours.k_fe)[1:2]
    shifted, plain, ref = ours.t_test((r, [10.0])), ours.t_test(r), theirs.t_test(r)
    np.testing.assert_allclose(shifted.effect, plain.effect)
    np.testing.assert_allclose(shifted.conf_int(), ref.conf_int(), rtol=1e-4)
    np.testing.assert_allclose(shifted.tvalue, (plain.effect - 10.0) / plain.sd)
    assert ours.t_test("x1 = 10").summary_frame()["coef"].iloc[0] == pytest.approx(
        ours.fe_params["x1"]
    )


def test_wald_test_is_statsmodels(fits):
    ours, theirs = fits
    r = np.eye(ours.k_fe)[1:3]
    joint = ours.wald_test((r, [0.5, 0.0]))
    padded = np.c_[r, np.zeros((2, len(theirs.params) - ours.k_fe))]
    ref = theirs.wald_test((padded, [0.5, 0.0]), use_f=False, scalar=True)
    assert joint.distribution == "chi2" and joint.df_num == joint.df_denom == 2
    assert joint.statistic == pytest.approx(float(ref.statistic), rel=1e-4)
    assert joint.pvalue == pytest.approx(float(ref.pvalue), rel=1e-3)
    f = ours.wald_test("x1 = 0.5, x2 = 0", use_f=True)
    assert f.statistic == pytest.approx(joint.statistic / 2, rel=1e-12)
    assert f.distribution == "F" and f.df_denom == ours.nobs - ours.k_fe


@pytest.mark.parametrize(
    "hyp, match",
    [
        (np.eye(5), "should have 4 columns"),
        ((np.eye(4), [1.0, 2.0]), "q has 2 values for 4 rows"),
        ("x9 = 0", "cannot read the hypothesis 'x9 = 0'"),
        ("__import__('os') = 0", "cannot read the hypothesis"),
    ],
)
def test_bad_hypotheses_are_refused(fits, hyp, match):
    with pytest.raises(SpecError, match=match):
        fits[0].t_test(hyp)


def test_dependent_rows_warn_and_use_their_rank_as_statsmodels(fits):
    ours, theirs = fits
    hyp = "x1 = 0, x2 = 0, x1 + x2 = 0"
    with pytest.warns(dmixed.ConstraintRankWarning, match="constraints is 3, but rank is 2"):
        a = ours.wald_test(hyp)
    with pytest.warns(ValueWarning, match="constraints is 3, but rank is 2"):
        b = theirs.wald_test(hyp)
    assert a.df_denom == b.df_denom == 2
    assert a.statistic == pytest.approx(b.statistic, rel=1e-4)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"scalar": True}, {"scalar": False}, {"use_f": True}, {"use_f": True, "scalar": False}],
)
def test_wald_test_returns_what_statsmodels_returns(fits, kwargs):
    """``scalar`` was refused; ``use_f`` defaults to None (statsmodels' ``use_t``)."""
    ours, theirs = fits
    a = ours.wald_test("x1 = 0.5, x2 = 0", **kwargs)
    b = theirs.wald_test("x1 = 0.5, x2 = 0", **kwargs)
    assert a.distribution == b.distribution
    assert type(a.statistic) is type(b.statistic)
    assert np.shape(a.statistic) == np.shape(b.statistic)
    assert type(a.pvalue) is type(b.pvalue) and np.shape(a.pvalue) == np.shape(b.pvalue)
    np.testing.assert_allclose(a.statistic, b.statistic, rtol=1e-4)
    np.testing.assert_allclose(a.pvalue, b.pvalue, rtol=1e-2)
    assert a.df_denom == b.df_denom
    assert str(a).split("=")[0] == str(b).split("=")[0]


def test_f_test_and_df_resid_are_statsmodels(fits):
    ours, theirs = fits
    assert ours.df_resid == theirs.df_resid
    r = np.eye(ours.k_fe)[1:3]
    padded = np.c_[r, np.zeros((2, len(theirs.params) - ours.k_fe))]
    a, b = ours.f_test(r), theirs.f_test(padded)
    assert a.distribution == b.distribution == "F"
    assert (a.df_num, a.df_denom) == (b.df_num, b.df_denom)
    assert a.fvalue == pytest.approx(b.fvalue, rel=1e-4)
    assert type(a.fvalue) is type(b.fvalue)
    # statsmodels' own matrices have a column for every parameter
    same = ours.f_test(padded)
    assert same.fvalue == pytest.approx(a.fvalue, rel=1e-12)
    assert not hasattr(ours.wald_test(r), "fvalue")


@pytest.mark.parametrize("kwargs", [{"scalar": 1}, {"use_f": "yes"}])
def test_flags_of_the_wald_test_must_be_bools(fits, kwargs):
    with pytest.raises(SpecError, match=f"{next(iter(kwargs))} must be True"):
        fits[0].wald_test("x1 = 0", **kwargs)


def test_a_list_of_texts_is_one_hypothesis_of_them_all(fits):
    """A tuple of two texts was read as (R, q): the second constraint silently dropped;
    (text, q) silently tested the text's own value."""
    ours, _ = fits
    whole = ours.t_test("x1 = 1, x2 = 2 * x1")
    for parts in (["x1 = 1", "x2 = 2 * x1"], ("x1 = 1", "x2 = 2 * x1")):
        res = ours.t_test(parts)
        np.testing.assert_allclose(res.effect, whole.effect)
        assert res.names == whole.names
    joint = ours.wald_test(("x1 = 1", "x2 = 0"))
    assert joint.df_num == 2
    with pytest.raises(SpecError, match="text hypothesis holds its own values"):
        ours.t_test(("x1", 0.5))


@pytest.mark.parametrize(
    "text",
    [
        "x1 = x2 = 0",
        "x1 = x2 = x3",
        "x1 = 1 = x2, x3 = 0",
        "x1 + x2 = 2 * x3 = 1",
        "x1 = x2 = x3 = 0.5",
    ],
)
def test_a_chained_equality_is_patsys_pairs(fits, text):
    """``a = b = c`` is two constraints, ``a = b`` and ``b = c``, as statsmodels (patsy's
    ``linear_constraint``) reads it; formulaic's parser read it as the one constraint
    ``a - b + c = 0``, so ``f_test("x1 = x2 = 0")`` tested x1 = x2 alone."""
    from patsy import DesignInfo

    ours, theirs = fits
    names = ours.model.exog_names
    want = DesignInfo(names).linear_constraint(text)
    got = ours.f_test(text)
    assert got.df_num == want.coefs.shape[0]
    np.testing.assert_allclose(got.fvalue, ours.f_test((want.coefs, want.constants)).fvalue)
    ref = theirs.f_test(text)
    assert ref.df_num == got.df_num
    assert got.fvalue == pytest.approx(ref.fvalue, rel=1e-3)


def test_a_hypothesis_that_does_not_parse_is_refused_in_plain_words(fits):
    """formulaic's parse errors carry terminal colour codes and several lines."""
    with pytest.raises(SpecError, match="cannot read the hypothesis 'x1 = '") as err:
        fits[0].t_test("x1 = ")
    assert "\x1b" not in str(err.value)
    assert "\n" not in str(err.value)
