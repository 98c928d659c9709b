"""Prediction standard errors and intervals: against Henderson's mixed-model equations
built densely, by simulation, and the shapes of what comes back."""

from __future__ import annotations

import warnings

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from scipy import special

from dmixed import MixedLM, load, mixedlm
from dmixed.errors import (
    BoundaryWarning,
    DataError,
    PrecisionWarning,
    SpecError,
    UnseenGroupsWarning,
)

from .._synth import design, dyestuff2_arrays, make_data

FORMULA = dict(groups="g", re_formula="1 + x1", vc_formula={"sub": "0 + C(sub)"})


def _vc_fit(offset: float = 0.0, weights: bool = False, cov_fe: str = "conditional", vc=True):
    """A random slope and a nested variance component; ``offset`` moves x1 far from zero
    (the statistics are then shifted: the map back is exercised)."""
    df = make_data(n_groups=12, max_size=15, vc_sd=0.7, seed=0)
    df["x1"] = df["x1"] + offset
    df["y"] = df["y"] + 0.5 * offset
    kw = dict(weights="w") if weights else {}
    if not vc:
        kw["vc_formula"] = None
    res = mixedlm("y ~ x1 + x2", df, **{**FORMULA, **kw}).fit(cov_fe=cov_fe)
    return df, res


def _henderson(df: pd.DataFrame, res, weights: bool, new: pd.DataFrame):
    """``[x; z]' C [x; z]`` for the rows of ``new`` (of fitted groups and levels), with
    ``C = σ̂² [[X'WX, X'WZ], [Z'WX, Z'WZ + σ̂² G⁻¹]]⁻¹`` built from the full design, and
    its version with the fit's cov(β̂) in place of Henderson's β block."""
    keys = sorted(df["g"].unique())
    vc = len(np.asarray(res.vcomp)) > 0
    pairs = sorted({(g, s) for g, s in zip(df["g"], df["sub"], strict=True)}) if vc else []

    def full(frame):
        x = np.column_stack([np.ones(len(frame)), frame["x1"], frame["x2"]])
        z = np.zeros((len(frame), 2 * len(keys) + len(pairs)))
        for row, (g, s, x1) in enumerate(zip(frame["g"], frame["sub"], frame["x1"], strict=True)):
            gi = keys.index(g)
            z[row, 2 * gi : 2 * gi + 2] = (1.0, x1)
            if vc:
                z[row, 2 * len(keys) + pairs.index((g, s))] = 1.0
        return x, z

    x, z = full(df)
    w = df["w"].to_numpy() if weights else np.ones(len(df))
    scale, psi, tau = res.scale, np.asarray(res.cov_re), float(np.sum(res.vcomp))
    g_mat = np.zeros((z.shape[1], z.shape[1]))
    for gi in range(len(keys)):
        g_mat[2 * gi : 2 * gi + 2, 2 * gi : 2 * gi + 2] = psi
    g_mat[2 * len(keys) :, 2 * len(keys) :] = tau * np.eye(len(pairs))
    xw, zw = x.T * w, z.T * w
    mme = np.block([[xw @ x, xw @ z], [zw @ x, zw @ z + scale * np.linalg.inv(g_mat)]])
    c = scale * np.linalg.inv(mme)
    nx, nz = full(new)
    xz = np.hstack([nx, nz])
    henderson = np.einsum("na,ab,nb->n", xz, c, xz)
    # the same with the fit's cov(β̂): C_βb = −C_ββ X'WZ M, C_bb = σ²M + M Z'WX C_ββ X'WZ M
    p = x.shape[1]
    m = np.linalg.inv(zw @ z + scale * np.linalg.inv(g_mat))
    cbb = np.asarray(res.cov_params())[:p, :p]
    h = m @ zw @ x
    wv = nx - nz @ h
    fitted = np.einsum("na,ab,nb->n", wv, cbb, wv) + scale * np.einsum("na,ab,nb->n", nz, m, nz)
    return henderson, fitted


@pytest.mark.parametrize(
    ("offset", "weights", "vc"),
    [(0.0, False, True), (0.0, True, True), (200.0, False, True), (0.0, True, False)],
    ids=["plain", "w", "shift", "no-vc"],
)
def test_conditional_variance_is_hendersons(offset, weights, vc):
    """The conditional prediction error variance equals ``[x; z]' C [x; z]`` from the
    inverse of Henderson's matrix, built densely, to 1e-8 (and with the default,
    Hessian-based cov(β̂), the same formula with it in place of C_ββ)."""
    df, res = _vc_fit(offset, weights, vc=vc)
    rows = df.iloc[::3]
    henderson, _ = _henderson(df, res, weights, rows)
    got = res.get_prediction(rows, include_random=True)
    np.testing.assert_allclose(np.asarray(got.var_pred_mean), henderson, rtol=1e-8)
    np.testing.assert_allclose(np.asarray(got.predicted_mean), res.predict(rows, True), rtol=1e-13)
    _, hess = _vc_fit(offset, weights, cov_fe="hessian", vc=vc)
    _, with_hessian = _henderson(df, hess, weights, rows)
    got = hess.get_prediction(rows, include_random=True)
    np.testing.assert_allclose(np.asarray(got.var_pred_mean), with_hessian, rtol=1e-8)
    # the fixed part: x' cov(β̂) x, and the observation intervals add σ̂²
    fixed = hess.get_prediction(rows)
    x = np.column_stack([np.ones(len(rows)), rows["x1"], rows["x2"]])
    cov = np.asarray(hess.cov_params())[:3, :3]
    np.testing.assert_allclose(fixed.se_mean, np.sqrt(np.einsum("na,ab,nb->n", x, cov, x)))
    np.testing.assert_allclose(fixed.se_obs**2, fixed.se_mean**2 + hess.scale, rtol=1e-12)


@pytest.mark.parametrize("spread", [3600.0, 1.0], ids=["hour", "second"])
@pytest.mark.parametrize("vc", [False, True], ids=["slope", "slope+vc"])
def test_timestamps_give_the_centred_data_standard_errors(vc, spread):
    """x1 as timestamps near 1.7e9 with a spread of an hour or a second: the standard
    errors are those of the same fit on x1 centred (the model is invariant to the shift),
    for rows of fitted and of new groups, to the fits' own agreement.  In the raw
    coordinates ``x' cov(β̂) x`` loses ~(1.7e9/spread)² ε: the conditional part was once
    off by half at an hour, and both parts NaN at a second (negative forms)."""
    df = make_data(n_groups=10, max_size=12, vc_sd=0.7, seed=5)
    df["x1"] = spread * df["x1"]
    kw = dict(groups="g", re_formula="1 + x1", vc_formula={"sub": "0 + C(sub)"} if vc else None)
    stamped = df.assign(x1=df["x1"] + 1.7e9)
    centred = mixedlm("y ~ x1 + x2", df, **kw).fit(cov_fe="conditional")
    if spread == 1.0:
        # at 1.7e9 seconds with a spread of one the raw-basis cov_re cannot carry the
        # fitted point in float64 (the slope-only fit: the likelihood at the reported
        # numbers is 17.6 below llf in 60 digits), and the fit says so
        with pytest.warns(PrecisionWarning, match="do not carry the fitted point"):
            shifted = mixedlm("y ~ x1 + x2", stamped, **kw).fit(cov_fe="conditional")
    else:
        shifted = mixedlm("y ~ x1 + x2", stamped, **kw).fit(cov_fe="conditional")
    rows = [df.iloc[:12], df.iloc[:3].assign(g=999)]
    for include_random in (False, True):
        for new in rows:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UnseenGroupsWarning)
                ref = centred.get_prediction(new, include_random=include_random)
                got = shifted.get_prediction(
                    new.assign(x1=new["x1"] + 1.7e9), include_random=include_random
                )
            np.testing.assert_allclose(got.se_mean, ref.se_mean, rtol=1e-6)
            np.testing.assert_allclose(got.se_obs, ref.se_obs, rtol=1e-6)


def test_unseen_groups_and_levels_enter_the_observation_interval():
    """A new group: the fixed part's SE, and z'Ψ̂z + τ̂ + σ̂² more for a new observation; a
    fitted group with a level it did not have: its fitted part's SE, τ̂ + σ̂² more."""
    df, res = _vc_fit()
    levels = set(df["sub"])
    lacking = df.groupby("g")["sub"].agg(lambda s: sorted(levels - set(s)))
    g0 = lacking[lacking.str.len() > 0].index[0]  # a group without one of the levels
    missing = lacking[g0][0]
    new = pd.DataFrame({"x1": [0.3, 0.3], "x2": [-1.0, -1.0], "g": [g0, 999], "sub": missing})
    with pytest.warns(UnseenGroupsWarning, match="1 of 2 rows"):
        got = res.get_prediction(new, include_random=True, new_levels="population").summary_frame()
    seen = new.assign(sub=df.loc[df["g"] == g0, "sub"].iloc[0]).iloc[:1]
    henderson, _ = _henderson(df, res, False, seen)
    # the new level's effect has mean 0: the seen part is that of a row without it
    seen_se2 = res.get_prediction(seen, include_random=True).se_mean.to_numpy() ** 2
    z_fixed = np.array([1.0, 0.3, -1.0])
    fixed_var = z_fixed @ np.asarray(res.cov_params())[:3, :3] @ z_fixed
    tau, psi = float(np.asarray(res.vcomp)[0]), np.asarray(res.cov_re)
    zre = np.array([1.0, 0.3])
    np.testing.assert_allclose(seen_se2, henderson, rtol=1e-8)
    np.testing.assert_allclose(got["mean_se"].iloc[1] ** 2, fixed_var, rtol=1e-10)
    obs_se = (got["obs_ci_upper"] - got["mean"]) / special.ndtri(0.975)
    np.testing.assert_allclose(obs_se.iloc[1] ** 2, fixed_var + zre @ psi @ zre + tau + res.scale)
    conditional = got["mean_se"].iloc[0] ** 2  # the fitted random slope only, level unseen
    np.testing.assert_allclose(obs_se.iloc[0] ** 2, conditional + tau + res.scale, rtol=1e-10)
    assert got["mean"].iloc[1] == pytest.approx(z_fixed @ np.asarray(res.fe_params))


def _simulate(rng, n_groups: int, size: int, beta, psi_sd, sigma):
    g = np.repeat(np.arange(n_groups), size)
    x1 = rng.normal(size=g.size)
    b = rng.normal(size=(n_groups, 2)) * psi_sd
    mean = beta[0] + beta[1] * x1 + b[g, 0] + b[g, 1] * x1
    y = mean + sigma * rng.normal(size=g.size)
    return y, np.column_stack([np.ones(g.size), x1]), g, mean


def _coverage(n_sim: int, n_groups: int, seed: int) -> tuple[float, float, int]:
    """Share of the conditional means x'β + z'b (and of new observations) inside the
    95% intervals, over ``n_sim`` data sets drawn from a known random-slope model."""
    rng = np.random.default_rng(seed)
    hits = obs_hits = total = 0
    for _ in range(n_sim):
        y, x, g, mean = _simulate(rng, n_groups, 6, (1.0, 0.5), np.array([1.0, 0.5]), 1.0)
        res = MixedLM(y, x, g, exog_re=x).fit()
        pred = res.get_prediction(exog=x, exog_re=x, groups=g, include_random=True)
        ci, obs = pred.conf_int(), pred.conf_int(obs=True)
        hits += int(np.sum((ci[:, 0] <= mean) & (mean <= ci[:, 1])))
        y_new = mean + rng.normal(size=mean.size)
        obs_hits += int(np.sum((obs[:, 0] <= y_new) & (y_new <= obs[:, 1])))
        total += mean.size
    return hits / total, obs_hits / total, total


def _assert_covers(share: float, total: int) -> None:
    # the rows of one group share their BLUP's error: count groups, not rows, as the
    # independent draws of the Monte-Carlo error (conservative)
    draws = total / 6
    assert abs(share - 0.95) < 4 * np.sqrt(0.95 * 0.05 / draws), share


# With many groups θ̂ is close to θ and the intervals (which take θ̂ as known, as
# Henderson's) cover at their level; with 20 groups of 6 they cover about 92.5%.


def test_coverage_of_the_conditional_mean_small():
    share, obs, total = _coverage(n_sim=40, n_groups=300, seed=11)
    _assert_covers(share, total)
    _assert_covers(obs, total)


@pytest.mark.slow
def test_coverage_of_the_conditional_mean():
    share, obs, total = _coverage(n_sim=400, n_groups=300, seed=12)
    _assert_covers(share, total)
    _assert_covers(obs, total)


@pytest.fixture(scope="module")
def vc_fit():
    return _vc_fit()


def test_pandas_input_is_indexed_like_its_rows_and_missing_covariates_give_nan(vc_fit):
    df, res = vc_fit
    new = df.iloc[:6].copy()
    new.index = [f"r{i}" for i in range(6)]
    new.loc["r2", "x2"] = np.nan
    pred = res.get_prediction(new, include_random=True, alpha=0.1)
    frame = pred.summary_frame()
    assert list(frame.columns) == [
        "mean",
        "mean_se",
        "mean_ci_lower",
        "mean_ci_upper",
        "obs_ci_lower",
        "obs_ci_upper",
    ]
    assert list(frame.index) == list(new.index)
    assert frame.loc["r2"].isna().all() and frame.drop("r2").notna().all().all()
    pd.testing.assert_series_equal(pred.predicted_mean, res.predict(new, include_random=True))
    assert isinstance(pred.se_mean, pd.Series) and list(pred.se_mean.index) == list(new.index)
    ci = pred.conf_int()
    assert list(ci.columns) == ["lower", "upper"] and list(ci.index) == list(new.index)
    z = special.ndtri(0.95)  # the alpha of get_prediction is the default
    np.testing.assert_allclose(ci["upper"], pred.predicted_mean + z * pred.se_mean)
    wide = pred.summary_frame(alpha=0.01)
    assert (wide["mean_ci_upper"] > frame["mean_ci_upper"]).drop("r2").all()
    # the fitted rows: their predictions, indexed like the kept rows
    fitted = res.get_prediction(include_random=True)
    pd.testing.assert_series_equal(fitted.predicted_mean, res.fittedvalues, check_names=False)


def test_array_input_gives_arrays():
    df = make_data(n_groups=25, seed=9)
    endog, exog, exog_re, groups = design(df)
    res = MixedLM(endog, exog, groups, exog_re=exog_re).fit()
    pred = res.get_prediction(
        exog=exog[:4], exog_re=exog_re[:4], groups=groups[:4], include_random=True
    )
    assert isinstance(pred.predicted_mean, np.ndarray) and pred.se_mean.shape == (4,)
    np.testing.assert_allclose(pred.predicted_mean, res.fittedvalues[:4], rtol=1e-12)
    assert isinstance(pred.conf_int(), np.ndarray) and pred.conf_int().shape == (4, 2)
    frame = pred.summary_frame()
    assert list(frame.index) == [0, 1, 2, 3]
    fitted = res.get_prediction(include_random=True)
    assert isinstance(fitted.se_mean, np.ndarray) and fitted.se_mean.shape == (len(df),)
    fixed = res.get_prediction(exog=exog[:4])  # a new group: the fixed part's SE
    two = dict(exog=exog[:2], exog_re=exog_re[:2], groups=[-1, 3])
    with pytest.warns(UnseenGroupsWarning):
        new = res.get_prediction(**two, include_random=True)
    np.testing.assert_allclose(new.se_mean[0], fixed.se_mean[0])
    nan = res.get_prediction(**two, include_random=True, new_groups="nan")
    assert np.isnan(nan.summary_frame().iloc[0]).all() and np.isfinite(nan.se_mean[1])
    with pytest.raises(DataError, match=r"\(-1\); new_groups='error'"):
        res.get_prediction(**two, include_random=True, new_groups="error")
    with pytest.raises(DataError, match="'groups' holds text keys"):
        res.get_prediction(exog=exog[:1], exog_re=exog_re[:1], groups=["3"], include_random=True)


def test_bad_arguments_are_named(vc_fit, tmp_path):
    df, res = vc_fit
    with pytest.raises(SpecError, match="alpha must be a number in"):
        res.get_prediction(df, alpha=1.5)
    with pytest.raises(SpecError, match="new_groups must be one of"):
        res.get_prediction(df, include_random=True, new_groups="drop")
    with pytest.raises(DataError, match="data must be a pandas or Dask DataFrame, got ndarray"):
        res.get_prediction(df.to_numpy())
    res.save(tmp_path / "fit")
    loaded = load(tmp_path / "fit")
    np.testing.assert_allclose(loaded.get_prediction(df).se_mean, res.get_prediction(df).se_mean)
    with pytest.raises(SpecError, match="loaded results do not have"):
        loaded.get_prediction(df, include_random=True)


def test_dask_input_is_lazy_and_the_pandas_values(vc_fit):
    df, res = vc_fit
    new = df.copy()
    new.loc[new.index[::7], "x1"] = np.nan
    ddf = dd.from_pandas(new, npartitions=3)
    pred = res.get_prediction(ddf, include_random=True)
    frame = pred.summary_frame()
    assert isinstance(frame, dd.DataFrame) and isinstance(pred.se_mean, dd.Series)
    with dask.config.set(scheduler="sync"):
        got = frame.compute()
        ci = pred.conf_int(obs=True).compute()
    ref = res.get_prediction(new, include_random=True)
    pd.testing.assert_frame_equal(got, ref.summary_frame())
    pd.testing.assert_frame_equal(ci, ref.conf_int(obs=True))


def test_a_dask_fit_gives_the_in_process_standard_errors(vc_fit):
    """A Dask fit's cross terms come from its cached statistics (no data pass): the same
    standard errors as the in-process fit; without data it asks for them."""
    df, res = vc_fit
    with dask.config.set(scheduler="sync"):
        lazy = mixedlm("y ~ x1 + x2", dd.from_pandas(df, npartitions=3), **FORMULA)
        fit = lazy.fit(cov_fe="conditional")
        got = fit.get_prediction(df.iloc[:20], include_random=True).summary_frame()
    ref = res.get_prediction(df.iloc[:20], include_random=True).summary_frame()
    pd.testing.assert_frame_equal(got, ref, rtol=1e-6)
    with pytest.raises(SpecError, match="pass data="):
        fit.get_prediction(include_random=True)


def test_a_variance_at_zero_leaves_the_fixed_part():
    """On the boundary (Ψ̂ = 0, where G⁻¹ of Henderson's matrix does not exist) the
    conditional covariance is 0, b̂ = 0 and the prediction error is the fixed part's."""
    y, g = dyestuff2_arrays(0)
    with pytest.warns(BoundaryWarning):
        res = MixedLM(y, np.ones((30, 1)), g).fit()
    assert res.cov_re[0, 0] == 0.0
    pred = res.get_prediction(exog=np.ones((6, 1)), groups=np.arange(6), include_random=True)
    fixed = res.get_prediction(exog=np.ones((6, 1)))
    np.testing.assert_allclose(pred.se_mean, fixed.se_mean, rtol=1e-12)
    np.testing.assert_allclose(pred.se_obs, fixed.se_obs, rtol=1e-12)


def test_a_weighted_fit_gives_each_row_its_residual_variance_scale_over_weight():
    """A row of prior weight w has residual variance σ̂²/w (the model's definition):
    the fitted rows' observation intervals use their weights, new rows have weight 1
    unless ``weights`` says otherwise (a column of ``data``, or one value per row), as
    statsmodels' WLS ``get_prediction`` and lme4's ``simulate(newdata=)`` do."""
    df, res = _vc_fit(weights=True)
    w = df["w"].to_numpy()
    for include_random in (False, True):
        fitted = res.get_prediction(include_random=include_random)
        np.testing.assert_allclose(
            np.asarray(fitted.se_obs) ** 2,
            np.asarray(fitted.se_mean) ** 2 + res.scale / w,
            rtol=1e-12,
        )
        new = res.get_prediction(df, include_random=include_random)
        np.testing.assert_allclose(new.se_obs**2, new.se_mean**2 + res.scale, rtol=1e-12)
        by_column = res.get_prediction(df, include_random=include_random, weights="w")
        by_values = res.get_prediction(df, include_random=include_random, weights=w)
        np.testing.assert_allclose(by_column.se_obs, np.asarray(fitted.se_obs), rtol=1e-12)
        np.testing.assert_allclose(by_values.se_obs, np.asarray(fitted.se_obs), rtol=1e-12)
        with dask.config.set(scheduler="sync"):
            lazy = res.get_prediction(
                dd.from_pandas(df, npartitions=3), include_random, weights="w"
            )
            got = lazy.summary_frame().compute()
        pd.testing.assert_frame_equal(got, by_column.summary_frame())
    endog, exog, exog_re, groups = design(df)
    arrays = MixedLM(endog, exog, groups, exog_re=exog_re, weights=w).fit()
    rows = arrays.get_prediction(exog=exog[:5], weights=w[:5])
    np.testing.assert_allclose(rows.se_obs**2, rows.se_mean**2 + arrays.scale / w[:5], rtol=1e-12)


def test_bad_prediction_weights_are_named(vc_fit):
    df, res = vc_fit
    with pytest.raises(DataError, match="weights must be positive"):
        res.get_prediction(df.assign(w=-df["w"]), weights="w")
    with pytest.raises(DataError, match="weights has 3 values but the data has"):
        res.get_prediction(df, weights=[1.0, 2.0, 3.0])
    with pytest.raises(DataError, match="'v' is not a column of data"):
        res.get_prediction(df, weights="v")
    with pytest.raises(SpecError, match="weights of Dask data"):
        res.get_prediction(dd.from_pandas(df, npartitions=2), weights=df["w"].to_numpy())
