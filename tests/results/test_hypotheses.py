"""``wald_test`` / ``f_test`` of fitted results take statsmodels' arguments in
statsmodels' order (``dmixed/results/hypotheses.py``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import dmixed
from dmixed.errors import SpecError

from .._synth import make_data


def padded(ours, theirs, rows):
    r = np.eye(ours.k_fe)[rows]
    return np.c_[r, np.zeros((len(rows), len(theirs.params) - ours.k_fe))]


def test_cov_p_invcov_use_f_and_df_constraints_in_statsmodels_order(fits):
    ours, theirs = fits
    r = padded(ours, theirs, [1, 2])
    cov_ours = 2.0 * np.asarray(ours.cov_params())
    cov_theirs = 2.0 * np.asarray(theirs.cov_params())
    for args in [(cov_ours, None, True), (cov_ours, None, False, 3)]:
        a = ours.wald_test(r, *args)
        b = theirs.wald_test(r, cov_theirs, *args[1:])
        assert a.distribution == b.distribution and a.df_denom == b.df_denom
        assert a.statistic == pytest.approx(float(np.squeeze(b.statistic)), rel=1e-4)
    plain = ours.wald_test(r, use_f=True)
    assert ours.wald_test(r, cov_ours, None, True).statistic == pytest.approx(
        plain.statistic / 2, rel=1e-12
    )
    keywords = ours.wald_test(r, cov_p=cov_ours, use_f=True)
    assert keywords.statistic == ours.wald_test(r, cov_ours, None, True).statistic
    # the fixed effects' covariance alone serves a hypothesis on them
    fe_only = np.asarray(cov_ours)[: ours.k_fe, : ours.k_fe]
    assert ours.wald_test(r, fe_only).statistic == pytest.approx(
        ours.wald_test(r, cov_ours).statistic, rel=1e-12
    )
    with pytest.raises(SpecError, match="missing values"):
        ours.wald_test(np.eye(len(theirs.params))[-1:], fe_only)
    eye = np.eye(2)
    diff = r[:, : ours.k_fe] @ np.asarray(ours.fe_params)
    a, b = ours.wald_test(r, None, eye), theirs.wald_test(r, None, eye)
    assert a.statistic == pytest.approx(diff @ diff, rel=1e-12)
    assert a.statistic == pytest.approx(float(np.squeeze(b.statistic)), rel=1e-4)
    assert ours.wald_test(r, df_constraints=5).df_denom == 5


def test_f_test_takes_cov_p_and_invcov(fits):
    ours, theirs = fits
    r = padded(ours, theirs, [1, 3])
    cov_ours = 3.0 * np.asarray(ours.cov_params())
    cov_theirs = 3.0 * np.asarray(theirs.cov_params())
    a, b = ours.f_test(r, cov_ours), theirs.f_test(r, cov_theirs)
    assert a.fvalue == pytest.approx(float(np.squeeze(b.fvalue)), rel=1e-4)
    assert (a.df_num, a.df_denom) == (b.df_num, b.df_denom)
    a, b = ours.f_test(r, None, np.eye(2)), theirs.f_test(r, None, np.eye(2))
    assert a.fvalue == pytest.approx(float(np.squeeze(b.fvalue)), rel=1e-4)
    assert ours.f_test(r, cov_p=cov_ours).fvalue == ours.f_test(r, cov_ours).fvalue


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda res: res.wald_test("x1 = 0", True), "cov_p"),
        (lambda res: res.wald_test("x1 = 0", np.True_), "cov_p"),
        (lambda res: res.wald_test("x1 = 0", None, False), "invcov"),
        (lambda res: res.f_test("x1 = 0", True), "cov_p"),
    ],
)
def test_a_flag_where_a_matrix_goes_is_refused(fits, call, argument):
    """dmixed's earlier order ``wald_test(R, use_f, scalar)`` would read a flag as
    statsmodels' ``cov_p`` / ``invcov``: refused, naming the argument."""
    with pytest.raises(SpecError, match=f"for {argument}.*statsmodels' order"):
        call(fits[0])


def test_matrices_of_the_wrong_shape_are_refused(fits):
    ours, _ = fits
    with pytest.raises(SpecError, match="cov_p must be the 5 x 5"):
        ours.wald_test("x1 = 0", np.eye(3))
    with pytest.raises(SpecError, match="invcov must be the 2 x 2"):
        ours.wald_test("x1 = 0, x2 = 0", None, np.eye(3))
    with pytest.raises(SpecError, match="df_constraints must be a positive"):
        ours.wald_test("x1 = 0", df_constraints=0)


@pytest.fixture(scope="module")
def term_fits():
    df = make_data(n_groups=40, seed=21)
    df["site"] = np.array(list("abc"))[np.arange(len(df)) % 3]
    formula, kw = "y ~ x1 + C(site) + x1:x2", dict(groups="g", re_formula="1 + x1")
    ours = dmixed.mixedlm(formula, df, **kw).fit()
    theirs = sm.MixedLM.from_formula(formula, df, **kw).fit()
    assert ours.llf == pytest.approx(theirs.llf, rel=1e-7)
    return ours, theirs


def same_table(a, b, rtol=2e-4):
    """Tables equal by term name (formulaic orders the terms otherwise than patsy)."""
    assert sorted(a.index) == sorted(b.index)
    b = b.loc[a.index]
    assert list(a.columns) == list(b.columns)
    np.testing.assert_allclose(a.iloc[:, 0], b.iloc[:, 0], rtol=rtol)
    np.testing.assert_allclose(a.iloc[:, 1], b.iloc[:, 1], rtol=50 * rtol)
    np.testing.assert_array_equal(a.iloc[:, 2:], b.iloc[:, 2:])


def test_wald_test_terms_is_statsmodels(term_fits):
    """A χ² test per term of a categorical, a numeric and an interaction term."""
    ours, theirs = term_fits
    a, b = ours.wald_test_terms(), theirs.wald_test_terms()
    assert a.distribution == b.distribution == "chi2"
    same_table(a.table, b.table)
    same_table(a.summary_frame(), b.summary_frame())
    assert a.table.loc["C(site)", "df_constraint"] == 2
    np.testing.assert_allclose(a.statistic, a.table["statistic"])
    kw = dict(skip_single=True, combine_terms=["x1"])
    same_table(ours.wald_test_terms(**kw).table, theirs.wald_test_terms(**kw).table)

    def contrast(names):
        return (np.asarray(names) == "x1").astype(float) - (np.asarray(names) == "x1:x2")

    extra = [("x1 = x1:x2", contrast(ours.param_names)[None, :])]
    got = ours.wald_test_terms(skip_single=True, extra_constraints=extra).table
    assert list(got.index) == ["C(site)", "x1 = x1:x2"]
    want = theirs.wald_test(contrast(theirs.params.index)[None, :]).statistic
    assert got.loc["x1 = x1:x2", "statistic"] == pytest.approx(want, rel=2e-4)
    with pytest.raises(SpecError, match="no term's name contains 'x9'"):
        ours.wald_test_terms(combine_terms=["x9"])


def test_use_t_gives_t_and_f_references_as_statsmodels(term_fits):
    """``use_t`` (False, as statsmodels' MixedLM) sets the default reference of
    ``t_test``, ``wald_test`` and ``wald_test_terms``."""
    ours, theirs = term_fits
    assert ours.use_t is False and theirs.use_t is False
    try:
        ours.use_t = theirs._results.use_t = True  # the wrapper would keep its own
        assert ours.t_test("x1 = 0").distribution == "t"
        assert ours.wald_test("x1 = 0").distribution == "F"
        a, b = ours.wald_test_terms(), theirs.wald_test_terms()
        assert a.distribution == b.distribution == "F"
        same_table(a.table, b.table)
    finally:
        ours.use_t = theirs._results.use_t = False
    assert ours.wald_test("x1 = 0").distribution == "chi2"


def test_wald_test_terms_of_an_array_model_has_a_term_per_column():
    df = make_data(n_groups=30, seed=3)
    exog = np.column_stack([np.ones(len(df)), df["x1"], df["x2"]])
    ours = dmixed.MixedLM(df["y"].to_numpy(), exog, df["g"].to_numpy()).fit()
    theirs = sm.MixedLM(df["y"].to_numpy(), exog, df["g"].to_numpy()).fit()
    same_table(ours.wald_test_terms().table, theirs.wald_test_terms().table)


def test_labelled_matrices_are_read_by_name_not_position(term_fits):
    """An ``R`` (DataFrame or Series) or a ``cov_p`` labelled with statsmodels' names
    tests statsmodels' hypothesis, whatever the order of its labels, not the
    coefficient that sits at the same position in dmixed."""
    ours, theirs = term_fits
    every = pd.DataFrame(np.zeros((2, len(theirs.params))), columns=theirs.params.index)
    every.loc[0, "x1"] = every.loc[1, "C(site)[T.c]"] = 1.0
    fe = every[theirs.fe_params.index[::-1]]  # statsmodels' wald_test takes every parameter
    want = float(np.squeeze(theirs.wald_test(every, scalar=True).statistic))
    for r in (fe, every[every.columns[::-1]]):
        assert ours.wald_test(r).statistic == pytest.approx(want, rel=2e-4)
    one = float(np.squeeze(theirs.wald_test(every.iloc[:1], scalar=True).statistic))
    assert ours.wald_test(every.iloc[0]).statistic == pytest.approx(one, rel=2e-4)
    shifted = float(np.squeeze(theirs.wald_test((every, [0.5, 0.0]), scalar=True).statistic))
    assert ours.wald_test((fe, [0.5, 0.0])).statistic == pytest.approx(shifted, rel=2e-4)
    in_order = every[theirs.fe_params.index]  # (statsmodels reads R by position)
    np.testing.assert_allclose(ours.t_test(fe).effect, theirs.t_test(in_order).effect, atol=1e-5)
    cov = 2.0 * theirs.cov_params()
    halved = float(np.squeeze(theirs.wald_test(every, cov, scalar=True).statistic))
    assert halved == pytest.approx(want / 2, rel=1e-8)
    assert ours.wald_test(fe, cov).statistic == pytest.approx(halved, rel=2e-4)
    fe_cov = cov.loc[theirs.fe_params.index, theirs.fe_params.index]
    assert ours.wald_test(fe, fe_cov).statistic == pytest.approx(halved, rel=2e-4)
    # the text form is read by name too
    text = ours.wald_test("x1 = 0, C(site)[T.c] = 0").statistic
    assert text == pytest.approx(want, rel=2e-4)
    # unlabelled arrays keep their positional meaning
    assert ours.wald_test(fe.to_numpy()).statistic == pytest.approx(
        ours.wald_test(pd.DataFrame(fe.to_numpy())).statistic, rel=1e-12
    )


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda res, r: res.wald_test(r.rename(columns={"x1": "x9"})), r"\['x9'\]"),
        (lambda res, r: res.t_test(r.drop(columns="x1")), r"lacks the parameters \['x1'\]"),
        (lambda res, r: res.t_test(r.rename(columns={"x1": "g Var"})), r"\['g Var'\]"),
        (
            lambda res, r: res.wald_test(r, r.T @ r.drop(columns="x1")),
            r"cov_p's columns lacks .*'x1'",
        ),
    ],
)
def test_labels_that_are_no_parameters_are_refused(term_fits, call, match):
    ours, theirs = term_fits
    r = pd.DataFrame(np.eye(len(theirs.fe_params))[:1], columns=theirs.fe_params.index)
    with pytest.raises(SpecError, match=match):
        call(ours, r)


def test_text_names_an_interaction_as_statsmodels(term_fits):
    """An interaction's name holds ``:``, an operator of formulaic's grammar: read as
    the name, as patsy's ``linear_constraint`` reads it."""
    ours, theirs = term_fits
    for text in ("x1:x2 = 0", "x1 = 2 * x1:x2, C(site)[T.b] = x1:x2 + 0.5"):
        want = float(np.squeeze(theirs.wald_test(text, scalar=True).statistic))
        assert ours.wald_test(text).statistic == pytest.approx(want, rel=2e-4)
    np.testing.assert_allclose(
        ours.t_test("x1:x2 = 0").effect, [ours.fe_params["x1:x2"]], rtol=1e-12
    )
    assert ours.wald_test("`x1:x2` = 0").statistic == ours.wald_test("x1:x2 = 0").statistic


# --------------------------------------------------------------------------------------
# t_test_pairwise
# --------------------------------------------------------------------------------------


def statsmodels_pairwise(theirs, term, **kwargs):
    """statsmodels' own ``t_test_pairwise`` on its MixedLM fit.  Its MixedLM method builds
    the hypotheses with a column for every parameter, which MixedLM's ``t_test``
    refuses; given the fixed effects as ``params`` (the columns that ``t_test``
    takes), the same code runs."""
    from types import SimpleNamespace

    from statsmodels.stats.contrast import t_test_pairwise

    shim = SimpleNamespace(params=theirs.fe_params, model=theirs.model, t_test=theirs.t_test)
    return t_test_pairwise(shim, term, **kwargs)


@pytest.fixture(scope="module")
def factor_data():
    df = make_data(n_groups=30, seed=5)
    rng = np.random.default_rng(11)
    df["site"] = rng.choice(["north", "east", "south", "west"], size=len(df))
    df["dose"] = rng.choice([3, 1, 2], size=len(df))
    df["treated"] = rng.random(len(df)) > 0.5
    df["y"] = df["y"] + df["site"].map({"north": 0.0, "east": 0.4, "south": -0.3, "west": 0.1})
    return df


FORMULAS = [
    ("y ~ x1 + site", "site"),
    ("y ~ x1 + C(site, Treatment('south'))", "C(site, Treatment('south'))"),
    ("y ~ x1 + C(site, Sum)", "C(site, Sum)"),
    ("y ~ 0 + C(site) + x1", "C(site)"),
    ("y ~ x1 + C(dose) + site", "C(dose)"),
    ("y ~ x1 + C(dose, Helmert)", "C(dose, Helmert)"),
    ("y ~ x1 + treated", "treated"),
]


@pytest.mark.parametrize("formula, term", FORMULAS)
def test_t_test_pairwise_is_statsmodels(factor_data, formula, term):
    ours = dmixed.mixedlm(formula, factor_data, groups="g").fit()
    theirs = sm.MixedLM.from_formula(formula, factor_data, groups="g").fit(gtol=1e-8)
    assert ours.llf == pytest.approx(theirs.llf, rel=1e-10)
    methods = ["hs", "b", "fdr_bh", "hommel"]
    a = ours.t_test_pairwise(term, method=methods, alpha=0.1)
    b = statsmodels_pairwise(theirs, term, method=methods, alpha=0.1)
    assert a.contrast_labels == b.contrast_labels
    np.testing.assert_array_equal(a.contrasts, b.contrasts)
    np.testing.assert_array_equal(a.term_encoding_matrix, b.term_encoding_matrix)
    assert list(a.result_frame.columns) == list(b.result_frame.columns)
    assert list(a.result_frame.index) == list(b.result_frame.index)
    np.testing.assert_allclose(
        a.result_frame.to_numpy(dtype=float), b.result_frame.to_numpy(dtype=float), rtol=1e-6
    )
    # exactly statsmodels' t_test table of these contrasts and its corrections, on dmixed's fit
    from statsmodels.stats.multitest import multipletests

    table = ours.t_test(b.contrasts).summary_frame(xname=b.contrast_labels)
    for meth in methods:
        reject, corrected = multipletests(table["P>|z|"], alpha=0.1, method=meth)[:2]
        table[f"pvalue-{meth}"], table[f"reject-{meth}"] = corrected, reject
    pd.testing.assert_frame_equal(a.result_frame, table, rtol=1e-14, atol=0)


def test_t_test_pairwise_labels_and_t(factor_data):
    ours = dmixed.mixedlm("y ~ x1 + site", factor_data, groups="g").fit()
    ours.use_t = True
    labels = ["E", "N", "S", "W"]  # the levels in order: east, north, south, west
    got = ours.t_test_pairwise("site", factor_labels=labels)
    assert got.contrast_labels == ["N-E", "S-E", "W-E", "S-N", "W-N", "W-S"]
    assert "P>|t|" in got.result_frame.columns and "pvalue-hs" in got.result_frame.columns
    direct = ours.t_test(got.contrasts, use_t=True)
    np.testing.assert_array_equal(got.result_frame["P>|t|"], np.ravel(direct.pvalue))


@pytest.mark.parametrize(
    "formula, term, kwargs, match",
    [
        ("y ~ x1 + site", "nosuch", {}, "term_name: 'nosuch' is not a term"),
        ("y ~ x1 + site", "x1", {}, "not a categorical factor"),
        ("y ~ x1 * site", "x1:site", {}, "interaction of 2 factors"),
        ("y ~ x1 + site", "site", {"factor_labels": ["a", "b"]}, "factor_labels has the wrong"),
        ("y ~ x1 + site", "site", {"method": "tukey"}, "not a multiple-testing correction"),
        ("y ~ x1 + site", "site", {"method": "fdr_gbs"}, "fdr_gbs, two-stage.* not offered"),
        ("y ~ x1 + site", "site", {"method": ("hs", "b")}, "a tuple; .* str or .* list of str"),
        ("y ~ x1 + site", "site", {"alpha": 2.0}, "alpha"),
        ("y ~ x1 + C(dose)", "C(dose)", {"drop": ["C(dose)[T.3]"]}, "drop_cols took out"),
    ],
)
def test_t_test_pairwise_refuses_clearly(factor_data, formula, term, kwargs, match):
    kwargs = dict(kwargs)
    drop = kwargs.pop("drop", None)
    ours = dmixed.mixedlm(formula, factor_data, groups="g", drop_cols=drop).fit()
    with pytest.raises(SpecError, match=match):
        ours.t_test_pairwise(term, **kwargs)


def test_t_test_pairwise_of_an_array_model_says_to_use_t_test(factor_data):
    df = factor_data
    exog = np.column_stack([np.ones(len(df)), df["x1"]])
    ours = dmixed.MixedLM(df["y"].to_numpy(), exog, df["g"].to_numpy()).fit()
    with pytest.raises(SpecError, match="made from arrays: test differences .* with t_test"):
        ours.t_test_pairwise("x1")
