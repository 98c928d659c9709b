"""``MixedLM.fit_regularized``: L1-penalized fixed effects at the unpenalized fit's
covariance parameters (:mod:`dmixed.fit.penalized`), against statsmodels'."""

from __future__ import annotations

import re
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
    assert converged and sweeps >= 1
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
        ({"method": None}, SpecError, "method must be 'l1', got None"),
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


def _offset_data(off: float):
    """Arrays ``(y, X, groups)``: 40 groups of 6 rows, an intercept, ``x1 = off +
    N(0, 1)`` and ``x2``."""
    rng = np.random.default_rng(5)
    m, n_i = 40, 6
    g = np.repeat(np.arange(m), n_i)
    x = np.column_stack(
        [np.ones(m * n_i), off + rng.normal(size=m * n_i), rng.normal(size=m * n_i)]
    )
    y = 3 + 0.4 * (x[:, 1] - off) + 0.2 * x[:, 2] + rng.normal(size=m)[g]
    return y + rng.normal(size=m * n_i), x, g


def _gls(y, x, g, res0):
    """``(H, β̂)``: ``X'V̂⁻¹X`` and the GLS estimate from the rows, V̂ of the ordinary fit
    (a random intercept)."""
    h = np.zeros((x.shape[1], x.shape[1]))
    c = np.zeros(x.shape[1])
    for i in np.unique(g):
        rows = g == i
        v = res0.scale * np.eye(rows.sum()) + float(np.asarray(res0.cov_re)[0, 0])
        vi_x = np.linalg.solve(v, x[rows])
        h += x[rows].T @ vi_x
        c += vi_x.T @ y[rows]
    return h, np.linalg.solve(h, c)


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
@pytest.mark.parametrize("off", [100.0, 1e6, 1.7e9])
def test_a_column_far_from_zero_beside_an_unpenalized_intercept_is_the_centred_problem(
    kernels, off, monkeypatch
):
    """With the intercept unpenalized, shifting x1 leaves the problem as it is: the
    slopes, llf and the intercept mapped back are the centred column's, and the
    optimality conditions hold there (in the centred coordinates, where H is well
    conditioned)."""
    monkeypatch.setenv("DMIXED_KERNELS", kernels)
    y, x, g = _offset_data(off)
    xc = x.copy()
    xc[:, 1] -= off  # exact: x1 lies within a factor 2 of off
    alpha = np.array([0.0, 20.0, 20.0])
    raw = dmixed.MixedLM(y, x, groups=g).fit_regularized(alpha=alpha)
    centred_model = dmixed.MixedLM(y, xc, groups=g)
    res0 = centred_model.fit()
    centred = centred_model.fit_regularized(alpha=alpha)
    b, bc = np.asarray(raw.fe_params), np.asarray(centred.fe_params)
    assert raw.converged and centred.converged
    np.testing.assert_allclose(b[1:], bc[1:], rtol=1e-8)
    np.testing.assert_allclose(b[0], bc[0] - off * bc[1], rtol=1e-8)
    np.testing.assert_allclose(raw.llf, centred.llf, rtol=1e-10)
    h, beta_hat = _gls(y, xc, g, res0)
    grad = 2 * h @ (beta_hat - bc)
    on = bc != 0
    np.testing.assert_allclose(grad[on], alpha[on] * np.sign(bc[on]), atol=1e-6)
    assert np.all(np.abs(grad[~on]) <= alpha[~on] + 1e-6)


def test_a_penalized_intercept_beside_a_column_far_from_zero_converges_or_warns():
    """Everything penalized, the intercept too, on a column at 1e6 and 1.7e9: the
    problem itself is ill-conditioned in the model's coordinates.  The descent either
    converges (the optimality conditions hold) or says it did not, and why."""
    for off in (1e6, 1.7e9):
        y, x, g = _offset_data(off)
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            res = dmixed.MixedLM(y, x, groups=g).fit_regularized(alpha=5.0)
        said = [w for w in record if issubclass(w.category, dmixed.FitConvergenceWarning)]
        assert res.converged == res.regularized["converged"] == (not said)
        if said:
            assert "condition number" in str(said[0].message)
    assert not res.converged  # at 1.7e9 float64 cannot resolve it


def test_too_few_sweeps_warn():
    y, x, g = _offset_data(1.7e9)  # the intercept penalized: single-coordinate steps only
    with pytest.warns(dmixed.FitConvergenceWarning, match="maxit=1 sweeps") as record:
        res = dmixed.MixedLM(y, x, groups=g).fit_regularized(alpha=5.0, maxit=1)
    assert record[0].filename == __file__  # the caller's line
    assert not res.fit_options["regularized"]["converged"]
    assert not res.converged  # the descent's convergence, not only the optimizer's
    assert re.search(r"Converged:\s+No", res.summary().as_text())


@pytest.fixture(scope="module")
def regularized():
    """A formula fit with ``x2`` penalized to zero, and its data."""
    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(30), 8)
    df = pd.DataFrame({"x1": rng.normal(size=240), "x2": rng.normal(size=240), "g": g})
    df["y"] = 1 + 0.4 * df.x1 + rng.normal(size=30)[g] + rng.normal(size=240)
    model = dmixed.mixedlm("y ~ x1 + x2", df, groups="g")
    return model.fit_regularized(alpha=[0, 0, 50], reml=False), model, df


INFERENCE = {
    "confint": lambda r: r.confint(),
    "confint Wald": lambda r: r.confint(method="Wald"),
    "profile_ci": lambda r: r.profile_ci(),
    "bootstrap": lambda r: r.bootstrap(2, seed=0),
    "profile_re": lambda r: r.profile_re(0, "re"),
    "hessv": lambda r: r.hessv,
    "t_test": lambda r: r.t_test("x1 = 0"),
    "wald_test": lambda r: r.wald_test("x1 = 0", scalar=True),
    "f_test": lambda r: r.f_test("x1 = 0"),
    "wald_test_terms": lambda r: r.wald_test_terms(),
}


@pytest.mark.parametrize("what", sorted(INFERENCE))
def test_the_unpenalized_likelihoods_inference_is_refused(regularized, what):
    res = regularized[0]
    with pytest.raises(NotOfferedError, match="not offered for L1-regularized results"):
        INFERENCE[what](res)


def test_likelihood_ratio_tests_with_a_regularized_fit_are_refused(regularized):
    res, model, df = regularized
    small = dmixed.mixedlm("y ~ x1", df, groups="g").fit(reml=False)
    with pytest.raises(NotOfferedError, match="compare_lr_test .*L1-regularized"):
        res.compare_lr_test(small)
    with pytest.raises(NotOfferedError, match="anova .*L1-regularized"):
        dmixed.anova(small, res)
    ordinary = model.fit(reml=False)
    assert ordinary.regularized is None
    assert ordinary.compare_lr_test(small)[2] == 1  # an ordinary fit is tested as before


def test_the_summary_says_the_fit_is_regularized(regularized):
    text = regularized[0].summary().as_text()
    assert "L1-regularized (fit_regularized, alpha=[0.0, 0.0, 50.0])" in text


def test_saved_results_keep_the_regularized_mark(regularized, tmp_path):
    res = regularized[0]
    res.save(tmp_path / "r.dmx")
    loaded = dmixed.load(tmp_path / "r.dmx")
    assert loaded.regularized == res.regularized
    assert loaded.regularized["alpha"] == [0.0, 0.0, 50.0]
    np.testing.assert_array_equal(loaded.fe_params, res.fe_params)
    with pytest.raises(NotOfferedError, match="L1-regularized"):
        loaded.confint(method="Wald")
    with pytest.raises(NotOfferedError, match="L1-regularized"):
        loaded.t_test("x1 = 0")


def test_a_labelled_alpha_is_taken_by_name(regularized):
    _, model, _ = regularized
    by_name = pd.Series({"x2": 50.0, "x1": 0.0, "Intercept": 0.0})
    res = model.fit_regularized(alpha=by_name, reml=False)
    np.testing.assert_array_equal(res.fe_params, regularized[0].fe_params)
    with pytest.raises(SpecError, match="alpha's index .* must name each fixed effect"):
        model.fit_regularized(alpha=pd.Series({"x2": 50.0, "x9": 0.0, "Intercept": 0.0}))
    for flag in (True, [False, True, True], np.array([True, False, True])):
        with pytest.raises(SpecError, match="alpha must be numbers, not booleans"):
            model.fit_regularized(alpha=flag)


def test_penalty_is_an_unknown_option_of_fit_and_fit_regularized():
    y, x, _, g = _data(0, False)
    model = dmixed.MixedLM(y, x, groups=g)
    with pytest.raises(SpecError, match="unknown option 'penalty'"):
        model.fit(penalty=1)
    with pytest.raises(SpecError, match="unknown option 'penalty'"):
        model.fit_regularized(alpha=1.0, penalty=1)


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


@pytest.mark.parametrize("shift", [1e4, 1e6])
def test_a_penalized_fit_of_a_shifted_slope_is_not_said_to_lose_its_point(shift):
    """The reported point's gap is measured against the penalized llf: the penalty's loss
    of likelihood is no rounding of the reported numbers (dmixed's warnings are errors)."""
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(40), 10)
    x1 = shift + rng.normal(size=400)
    x2 = rng.normal(size=400)
    b0, b1 = rng.normal(size=40), 0.5 * rng.normal(size=40)
    y = 1 + 0.3 * (x1 - shift) + 0.8 * x2 + b0[g] + b1[g] * (x1 - shift) + rng.normal(size=400)
    df = pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": g})
    model = dmixed.mixedlm("y ~ x1 + x2", df, groups="g", re_formula="~x1")
    with warnings.catch_warnings():
        warnings.simplefilter("error", dmixed.PrecisionWarning)
        res = model.fit_regularized(alpha=[0, 0, 50])
    assert res.fe_params["x2"] != 0.0
    assert res.llf < model.fit().llf
