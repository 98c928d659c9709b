"""``wald_test`` / ``f_test`` of fitted results take statsmodels' arguments in
statsmodels' order (``dmixed/results/hypotheses.py``)."""

from __future__ import annotations

import numpy as np
import pytest

from dmixed.errors import SpecError


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
