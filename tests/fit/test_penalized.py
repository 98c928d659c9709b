"""``MixedLM.fit_regularized``: L1-penalized fixed effects at the unpenalized fit's
covariance parameters (:mod:`dmixed.fit.penalized`), against statsmodels'."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import dmixed
from dmixed.errors import NotOfferedError, SpecError
from dmixed.fit.penalized import l1_coordinate_descent

sm = pytest.importorskip("statsmodels.api")


def _data(seed: int, slope: bool):
    """Arrays ``(y, X, Z, groups)``: 30 groups of 8 rows, 5 fixed effects (one of
    them zero in truth), a random intercept and, with ``slope``, a random slope."""
    rng = np.random.default_rng(seed)
    m, n_i = 30, 8
    g = np.repeat(np.arange(m), n_i)
    x = np.column_stack([np.ones(m * n_i), rng.normal(size=(m * n_i, 4))])
    z = x[:, :2] if slope else x[:, :1]
    u = rng.normal(size=(m, z.shape[1])) * np.array([0.8, 0.4][: z.shape[1]])
    y = x @ np.array([1.0, 0.5, 0.0, -0.3, 0.05]) + np.sum(z * u[g], axis=1)
    return y + rng.normal(size=m * n_i), x, z, g


def _objective(y, x, z, g, res0, beta, alpha):
    """``(y − Xβ)'V̂⁻¹(y − Xβ) + Σ α_j|β_j|`` from the rows, V̂ of the ordinary fit."""
    psi = np.asarray(res0.cov_re)
    total = 0.0
    for i in np.unique(g):
        rows = g == i
        zi = z[rows]
        v = res0.scale * np.eye(rows.sum()) + zi @ psi @ zi.T
        r = y[rows] - x[rows] @ beta
        total += float(r @ np.linalg.solve(v, r))
    return total + float(np.sum(np.asarray(alpha) * np.abs(beta)))


ALPHAS = [0.0, 5.0, 20.0, np.array([0.0, 0.0, 60.0, 0.0, 60.0]), 1e4]


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("slope", [False, True])
def test_fit_regularized_agrees_with_statsmodels(kernels, reml, slope, monkeypatch):
    """fe_params within 1e-5 of statsmodels', the same exact zeros, and a penalized
    objective no larger than at statsmodels' β (both taken at dmixed's V̂).

    The tolerance is that of the two ordinary fits' covariance parameters: with the
    random slope statsmodels' optimizer stops about 5e-5 (relative) from dmixed's
    optimum (its llf 2e-8 lower), and β at alpha = 20 moves by 4e-6 with them."""
    monkeypatch.setenv("DMIXED_KERNELS", kernels)
    y, x, z, g = _data(3 if slope else 0, slope)
    model = dmixed.MixedLM(y, x, groups=g, exog_re=z)
    res0 = model.fit(reml=reml)
    for alpha in ALPHAS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # statsmodels' own convergence warnings
            ref = sm.MixedLM(y, x, groups=g, exog_re=z).fit_regularized(alpha=alpha, reml=reml)
        res = model.fit_regularized(alpha=alpha, reml=reml)
        beta, ref_beta = np.asarray(res.fe_params), np.asarray(ref.fe_params)
        np.testing.assert_allclose(beta, ref_beta, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(beta == 0, ref_beta == 0)
        ours = _objective(y, x, z, g, res0, beta, alpha)
        theirs = _objective(y, x, z, g, res0, ref_beta, alpha)
        assert ours <= theirs + 1e-9 * abs(theirs)
        # Ψ* held, σ² at the penalized β
        np.testing.assert_allclose(
            np.asarray(res.cov_re) / res.scale, np.asarray(res0.cov_re) / res0.scale, rtol=1e-12
        )
        np.testing.assert_allclose(res.scale, ref.scale, rtol=1e-5)
    assert np.count_nonzero(beta) == 0  # alpha = 1e4 zeros every coefficient


def test_alpha_zero_is_the_ordinary_fit():
    y, x, z, g = _data(5, True)
    model = dmixed.MixedLM(y, x, groups=g, exog_re=z)
    res0 = model.fit()
    res = model.fit_regularized(alpha=0)
    np.testing.assert_allclose(res.fe_params, res0.fe_params, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(res.llf, res0.llf, rtol=1e-12)
    np.testing.assert_allclose(res.scale, res0.scale, rtol=1e-9)
    assert res.fit_options["regularized"]["converged"]
    assert np.all(np.isnan(res.bse))  # no Hessian of a penalized fit


def test_the_descent_meets_the_optimality_conditions():
    """The soft-threshold descent ends where ``2H(β̂ − β)_j = α_j sign β_j`` (β_j ≠ 0)
    and ``|2H(β̂ − β)_j| ≤ α_j`` (β_j = 0)."""
    rng = np.random.default_rng(7)
    a = rng.normal(size=(6, 6))
    h = a @ a.T + 6 * np.eye(6)
    beta_hat = rng.normal(size=6) * 3
    alpha = np.array([0.0, 1.0, 5.0, 50.0, 0.5, 200.0])
    beta, sweeps, converged = l1_coordinate_descent(h, beta_hat, alpha, 1e-12, 1000)
    assert converged and sweeps > 1
    grad = 2 * h @ (beta_hat - beta)
    on = beta != 0
    np.testing.assert_allclose(grad[on], alpha[on] * np.sign(beta[on]), atol=1e-9)
    assert np.all(np.abs(grad[~on]) <= alpha[~on] + 1e-9)
    assert not on[5] and on[0]


def test_a_shifted_intercept_penalized_to_zero_is_exactly_zero():
    """Columns far from zero are shifted in the statistics; the intercept's zero is
    the descent's own, not the map back's rounding."""
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(25), 6)
    df = pd.DataFrame({"x1": 1000 + rng.normal(size=150), "x2": rng.normal(size=150), "g": g})
    df["y"] = 0.3 + 0.2 * df.x1 - 0.1 * df.x2 + rng.normal(size=25)[g] + rng.normal(size=150)
    res = dmixed.mixedlm("y ~ x1 + x2", df, groups="g").fit_regularized(alpha=[1e5, 0, 1e5])
    assert list(res.fe_params.index) == ["Intercept", "x1", "x2"]
    assert res.fe_params["Intercept"] == 0.0 and res.fe_params["x2"] == 0.0
    assert res.fe_params["x1"] != 0.0


def test_dask_fits_are_those_in_process_whatever_the_partitions():
    dask = pytest.importorskip("dask")
    dd = pytest.importorskip("dask.dataframe")
    y, x, _, g = _data(2, False)
    df = pd.DataFrame(x[:, 1:], columns=["a", "b", "c", "d"]).assign(y=y, g=g)
    formula = "y ~ a + b + c + d"
    alpha = [0.0, 0.0, 60.0, 0.0, 60.0]
    ref = dmixed.mixedlm(formula, df, groups="g").fit_regularized(alpha=alpha)
    with dask.config.set(scheduler="sync"):
        for parts in (1, 3, 7):
            ddf = dd.from_pandas(df, npartitions=parts)
            res = dmixed.mixedlm(formula, ddf, groups="g").fit_regularized(alpha=alpha)
            np.testing.assert_allclose(res.fe_params, ref.fe_params, rtol=1e-9, atol=1e-12)
            np.testing.assert_array_equal(res.fe_params == 0, ref.fe_params == 0)
    assert 0 < (ref.fe_params == 0).sum() < 3  # some zeros, the unpenalized kept


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"alpha": -1.0}, SpecError, "alpha must be finite and >= 0"),
        ({"alpha": [1.0, 2.0]}, SpecError, "alpha must be a scalar or a vector of length 5"),
        ({"alpha": np.nan}, SpecError, "alpha must be finite"),
        ({"alpha": "x"}, SpecError, "alpha must be a number"),
        ({"method": "l2"}, SpecError, "method must be 'l1', got 'l2'"),
        ({"method": object()}, NotOfferedError, "method=object .*not offered"),
        ({"ceps": 0.0}, SpecError, "ceps must be finite and > 0"),
        ({"ptol": -1e-6}, SpecError, "ptol must be finite and > 0"),
        ({"maxit": 0}, SpecError, "maxit must be an integer >= 1"),
        ({"maxit": 2.5}, SpecError, "maxit must be an integer >= 1"),
    ],
)
def test_bad_arguments_are_refused_by_name(kwargs, error, match):
    y, x, _, g = _data(0, False)
    with pytest.raises(error, match=match):
        dmixed.MixedLM(y, x, groups=g).fit_regularized(**kwargs)


def test_too_few_sweeps_warn():
    y, x, _, g = _data(0, False)
    with pytest.warns(dmixed.FitConvergenceWarning, match="maxit=1 sweeps") as record:
        res = dmixed.MixedLM(y, x, groups=g).fit_regularized(alpha=20.0, maxit=1, ptol=1e-12)
    assert record[0].filename == __file__  # the caller's line
    assert not res.fit_options["regularized"]["converged"]


@pytest.mark.parametrize("engine", ["distributed", "local"])
def test_a_cluster_fit_is_the_one_in_process(client, engine):
    """With the statistics kept on the workers (``engine="distributed"``) or gathered
    to the driver: the descent needs only the profile the fit makes on the driver."""
    dd = pytest.importorskip("dask.dataframe")
    y, x, z, g = _data(3, True)
    df = pd.DataFrame(x[:, 1:], columns=["a", "b", "c", "d"]).assign(y=y, g=g)
    kw = {"formula": "y ~ a + b + c + d", "groups": "g", "re_formula": "1 + a"}
    alpha = [0.0, 5.0, 60.0, 5.0, 60.0]
    ref = dmixed.mixedlm(data=df, **kw).fit_regularized(alpha=alpha)
    ddf = dd.from_pandas(df, npartitions=4)
    res = dmixed.mixedlm(data=ddf, **kw).fit_regularized(alpha=alpha, client=client, engine=engine)
    np.testing.assert_allclose(res.fe_params, ref.fe_params, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(res.fe_params == 0, ref.fe_params == 0)
    np.testing.assert_allclose(res.llf, ref.llf, rtol=1e-12)
