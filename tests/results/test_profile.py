"""Profile-likelihood intervals as lme4's ``confint``.

References: lme4's published intervals (sleepstudy, Dyestuff), and a brute-force
profile (each parameter held, the dense ML likelihood maximized over the rest with
scipy, the crossing of ζ found by brentq) on small random models with a variance
component.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

import dmixed
from dmixed.errors import BoundaryWarning, SpecError
from dmixed.results.profile import ProfileIntervals, percent_labels

from .._dense import DenseModel, dense_model_of
from .._synth import dyestuff2_arrays, make_data
from ..fit.test_model_methods import CountingReader

DATA = Path(__file__).resolve().parents[1] / "data"

#: ``confint(lmer(Reaction ~ Days + (Days | Subject), sleepstudy))`` (REML fit, ML
#: profile): ``master_ci`` in lme4's misc/prof_flexsig.R (github.com/lme4/lme4,
#: commit 32b5bfd), the intervals lme4's tests hold its profiles to
SLEEPSTUDY_LME4 = np.array(
    [
        [14.3814181607732, 37.7159953182866],
        [-0.481500758280773, 0.684986273295485],
        [3.8011640532591, 8.75338075305527],
        [22.8982668820808, 28.8579965114253],
        [237.680695505234, 265.129514680174],
        [7.35865327511699, 13.5759187517082],
    ]
)

#: ``confint(profile(lmer(Yield ~ 1|Batch, Dyestuff, REML = FALSE)))``: the example of
#: lme4's man/profile-methods.Rd (same commit), checked there to 1e-4
DYESTUFF_ML_LME4 = np.array([[12.19854, 84.06305], [38.22998, 67.65770], [1486.45150, 1568.54849]])


@pytest.fixture(scope="module")
def sleepstudy():
    df = pd.read_csv(DATA / "sleepstudy.csv")
    model = dmixed.MixedLM.from_formula(
        "Reaction ~ Days", df, groups="Subject", re_formula="1 + Days"
    )
    return model.fit()


def test_sleepstudy_is_lme4s_confint(sleepstudy):
    ci = sleepstudy.confint()
    assert list(ci.index) == [".sig01", ".sig02", ".sig03", ".sigma", "Intercept", "Days"]
    assert list(ci.columns) == ["2.5 %", "97.5 %"]
    np.testing.assert_allclose(ci.to_numpy(), SLEEPSTUDY_LME4, rtol=1e-4)


def test_dyestuff_ml_is_lme4s_confint():
    df = pd.read_csv(DATA / "dyestuff.csv")
    res = dmixed.MixedLM.from_formula("Yield ~ 1", df, groups="Batch").fit(reml=False)
    ci = res.confint()
    assert list(ci.index) == [".sig01", ".sigma", "Intercept"]
    # lme4 interpolates a spline through its profile: its lower .sig01 limit 12.19854 is
    # where the exact ζ is −1.959843, not −1.959964; dmixed's 12.196505 is where it is
    # (1.7e-4 apart, checked with a brute-force profile); the others agree to 1e-5
    np.testing.assert_allclose(ci.to_numpy(), DYESTUFF_ML_LME4, rtol=2e-4)
    np.testing.assert_allclose(ci.to_numpy()[1:], DYESTUFF_ML_LME4[1:], rtol=1e-5)


def test_wald_is_lme4s(sleepstudy):
    """lme4's ``confint(method = "Wald")``: NaN for the covariance parameters,
    β̂ ± z·se for the fixed effects."""
    ci = sleepstudy.confint(method="Wald", level=0.9)
    assert list(ci.columns) == ["5 %", "95 %"]
    assert ci.iloc[:4].isna().all().all()
    z = stats.norm.ppf(0.95)
    fe, se = sleepstudy.fe_params, sleepstudy.bse_fe
    np.testing.assert_allclose(ci.iloc[4:, 0], fe - z * se)
    np.testing.assert_allclose(ci.iloc[4:, 1], fe + z * se)


def test_parm_and_level(sleepstudy):
    full = sleepstudy.confint(level=0.8)
    assert list(full.columns) == ["10 %", "90 %"]
    beta = sleepstudy.confint(parm="beta_", level=0.8)
    pd.testing.assert_frame_equal(beta, full.loc[["Intercept", "Days"]], rtol=1e-7)
    some = sleepstudy.confint(parm=[".sigma", 0], level=0.8)
    assert list(some.index) == [".sigma", ".sig01"]
    assert list(sleepstudy.confint(parm="theta_", method="Wald").index) == list(full.index[:4])
    assert percent_labels(0.99) == ["0.5 %", "99.5 %"]
    # each interval holds the estimate, and narrows with the level
    inner = sleepstudy.confint(level=0.5)
    assert np.all(full.iloc[:, 0] < inner.iloc[:, 0]) and np.all(inner.iloc[:, 1] < full.iloc[:, 1])


@pytest.mark.parametrize(
    ("level", "labels"),
    [
        (0.95, ["2.5 %", "97.5 %"]),
        (0.5, ["25 %", "75 %"]),
        (0.999, ["0.05 %", "99.95 %"]),
        (0.9999, ["0.005 %", "99.995 %"]),
    ],
)
def test_percent_labels_share_rs_decimals(level, labels):
    # R's format(100 * probs, digits = 3) gives both the decimals the lower one needs:
    # a 99.9 % interval's upper column is "99.95 %", never "100 %"
    assert percent_labels(level) == labels


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(parm="nope"), "parm 'nope' is not one of"),
        (dict(parm=9), "parm position 9"),
        (dict(parm=0.0), "parm must be None, a name, a position"),
        (dict(parm=True), "parm True is not one of"),
        (dict(level=1.5), r"level must be a number in \(0, 1\)"),
        (dict(method="bootMer"), "method must be 'profile', 'Wald' or 'boot'"),
        (dict(method="boot", parm="nope"), "parm 'nope' is not one of"),
        (dict(method="boot", nsim=0), "nsim"),
    ],
)
def test_refusals(sleepstudy, kwargs, message):
    with pytest.raises(SpecError, match=message):
        sleepstudy.confint(**kwargs)


@pytest.mark.parametrize("level", ["x", "0.95", None, [0.95], 0, 1, float("nan")])
@pytest.mark.parametrize("method", ["profile", "Wald", "boot"])
def test_level_that_is_not_a_number_in_zero_one_is_refused_naming_it(sleepstudy, method, level):
    """``confint(level="x")`` once raised float()'s bare ValueError, ``level=None`` a
    TypeError: the SpecError naming ``level``, as ``alpha`` elsewhere."""
    with pytest.raises(SpecError, match=r"level must be a number in \(0, 1\)"):
        sleepstudy.confint(level=level, method=method)


def test_loaded_results_have_no_statistics(sleepstudy, tmp_path):
    sleepstudy.save(tmp_path / "fit")
    loaded = dmixed.load(tmp_path / "fit")
    with pytest.raises(SpecError, match="need the fitted model's statistics"):
        loaded.confint()
    assert loaded.confint(method="Wald").iloc[-1].notna().all()


def test_profile_ci_is_the_variances_of_confint(sleepstudy):
    table = sleepstudy.profile_ci(alpha=0.1)
    ci = sleepstudy.confint(parm=[".sig01", ".sig03"], level=0.9)
    np.testing.assert_allclose(table[["0.05", "0.95"]].to_numpy(), ci.to_numpy() ** 2)
    np.testing.assert_allclose(table["estimate"], np.diag(sleepstudy.cov_re))


def test_boundary_sd_has_lower_limit_zero():
    """A variance estimated at 0 (lme4's Dyestuff2: ``.sig01`` from 0), and one whose
    profile stays inside the cut-off down to 0."""
    y, g = dyestuff2_arrays(seed=3)
    with pytest.warns(BoundaryWarning):
        res = dmixed.MixedLM(y, np.ones((y.size, 1)), g).fit(reml=False)
    assert res.cov_re[0, 0] == 0.0
    ci = res.confint()
    assert ci.iloc[0, 0] == 0.0 and ci.iloc[0, 1] > 0
    prof = ProfileIntervals(res)
    crit = stats.norm.ppf(0.975)
    zeta = prof.zeta(0, ci.iloc[0, 1], prof.best)[0]
    assert zeta == pytest.approx(crit, abs=1e-6)


def test_no_data_pass_on_dask():
    """The intervals of a Dask fit read no partition: every profile point is a step on
    the statistics the fit made."""
    dd = pytest.importorskip("dask.dataframe")
    import dask

    df = make_data(n_groups=30, seed=5)
    reader = CountingReader(df, 3)
    ddf = dd.from_map(reader, range(3), meta=df.iloc[:0], enforce_metadata=False)
    with dask.config.set(scheduler="sync"):
        res = dmixed.MixedLM.from_formula("y ~ x1", ddf, groups="g").fit(reml=False)
        reads = reader.reads
        ci = res.confint()
    assert reader.reads == reads
    local = dmixed.MixedLM.from_formula("y ~ x1", df, groups="g").fit(reml=False)
    np.testing.assert_allclose(ci.to_numpy(), local.confint().to_numpy(), rtol=1e-6)


# -- the brute-force reference -------------------------------------------------------


class _Brute:
    """ML ℓ in lme4's parametrization from dense per-group covariances (numpy), and its
    profile by scipy: z = [sd₀, ρ, sd₁, v, σ, β] for a random intercept and slope, one
    variance component."""

    def __init__(self, dense: DenseModel, y, x, z, vc, groups) -> None:
        self.dense = dense
        order = np.argsort(groups, kind="stable")
        sizes = np.bincount(np.unique(groups, return_inverse=True)[1])
        assert np.all(sizes == sizes[0])  # balanced: one stacked solve
        shape = (sizes.size, sizes[0])
        self.y = y[order].reshape(shape)
        self.x = x[order].reshape(*shape, -1)
        self.z = z[order].reshape(*shape, -1)
        self.vc = vc[order].reshape(*shape, -1)
        self.n = y.size

    def parts(self, z):
        sd0, rho, sd1, v, sigma = z[:5]
        psi = np.array([[sd0**2, rho * sd0 * sd1], [rho * sd0 * sd1, sd1**2]])
        return z[5:], psi, np.array([v**2]), sigma**2

    def loglike(self, z) -> float:
        beta, psi, tau, s = self.parts(z)
        m = self.y.shape[1]
        cov = s * np.eye(m) + self.z @ psi @ self.z.transpose(0, 2, 1)
        cov += tau[0] * self.vc @ self.vc.transpose(0, 2, 1)
        r = self.y - self.x @ beta
        sign, logdet = np.linalg.slogdet(cov)
        if np.any(sign <= 0):
            return -np.inf
        quad = np.einsum("gi,gi->", r, np.linalg.solve(cov, r[..., None])[..., 0])
        return float(-0.5 * logdet.sum() - 0.5 * quad - 0.5 * self.n * np.log(2 * np.pi))

    @staticmethod
    def to_free(z, keep):
        """Unconstrained coordinates of the ``keep`` ones: log of SDs and σ, atanh of ρ,
        β as is."""
        u = np.array(z, dtype=float)[keep]
        for i, idx in enumerate(np.flatnonzero(keep)):
            u[i] = np.log(u[i]) if idx in (0, 2, 3, 4) else np.arctanh(u[i]) if idx == 1 else u[i]
        return u

    @staticmethod
    def from_free(u, keep, base):
        z = np.array(base, dtype=float)
        for i, val in zip(np.flatnonzero(keep), u, strict=True):
            z[i] = np.exp(val) if i in (0, 2, 3, 4) else np.tanh(val) if i == 1 else val
        return z

    def maximize(self, z0, k=None, x=None):
        keep = np.ones(z0.size, dtype=bool)
        base = np.array(z0, dtype=float)
        if k is not None:
            keep[k] = False
            base[k] = x

        def negative(u):
            return -self.loglike(self.from_free(u, keep, base))

        res = optimize.minimize(
            negative, self.to_free(base, keep), method="BFGS", options={"gtol": 1e-9}
        )
        return -res.fun, self.from_free(res.x, keep, base)


def _random_model(seed: int, n_groups: int = 12, size: int = 6):
    """``n_groups`` groups of ``size`` rows: intercept, slope on x1, a 3-level subgroup
    component."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), size)
    x1 = rng.normal(size=g.size)
    sub = np.arange(g.size) % 3
    b = rng.normal(size=(n_groups, 2)) * [1.0, 0.6]
    c = rng.normal(size=(n_groups, 3)) * 0.7
    y = 1 + 0.5 * x1 + b[g, 0] + b[g, 1] * x1 + c[g, sub] + rng.normal(size=g.size)
    return pd.DataFrame({"y": y, "x1": x1, "g": g, "sub": sub})


@pytest.mark.parametrize(
    "seed, n_groups, size",
    [
        (2, 25, 9),
        (3, 25, 9),
        # small: profiles that reach SDs of 0 and correlations of ±1 on the way
        pytest.param(5, 12, 6, marks=pytest.mark.slow),
    ],
)
def test_endpoints_are_the_brute_force_crossings(seed, n_groups, size):
    """Fast (seed 2): one end of each interval, the brute-force ζ changing sign within
    1e-4 of it; slow: both ends, the brute-force crossing found by brentq."""
    df = _random_model(seed, n_groups, size)
    model = dmixed.MixedLM.from_formula(
        "y ~ x1", df, groups="g", re_formula="1 + x1", vc_formula={"sub": "0 + C(sub)"}
    )
    res = model.fit(reml=False)
    prof = ProfileIntervals(res)
    # lme4 numbers its terms by decreasing levels: (1 | g:sub) (75 levels) before g's (25)
    assert prof.names == [".sig02", ".sig03", ".sig04", ".sig01", ".sigma", "Intercept", "x1"]
    ci = res.confint()
    assert list(ci.index) == [".sig01", ".sig02", ".sig03", ".sig04", ".sigma", "Intercept", "x1"]
    rows = model.rows
    vc = np.stack([(df["sub"] == lv).to_numpy(float) for lv in range(3)], axis=1)
    fast = seed == 2
    brute = _Brute(dense_model_of(model), rows.endog, rows.exog, rows.exog_re, vc, rows.groups)
    # the dense reference is tests/_dense's likelihood
    beta, psi, tau, s = brute.parts(prof.estimate)
    assert brute.loglike(prof.estimate) == pytest.approx(
        brute.dense.loglike(beta, psi, tau, s, reml=False), rel=1e-12
    )
    llf, z_hat = brute.maximize(prof.estimate)
    assert llf == pytest.approx(prof.llf, abs=1e-8)
    crit = stats.norm.ppf(0.975)
    for k, name in enumerate(prof.names):
        for j, target in enumerate((-crit, crit)):
            x_e = ci.loc[name].iloc[j]

            def excess(x, k=k, target=target):
                held = brute.maximize(z_hat, k, x)[0]
                return np.sign(x - z_hat[k]) * np.sqrt(max(2 * (llf - held), 0)) - target

            if (prof.sdcor.kinds[k] == "cor" and abs(x_e) == 1) or x_e == 0:
                # a limit on the bound: the profile is still inside the cut-off there
                assert np.sign(target) * excess(x_e) < 0, (name, j)
                continue
            if fast:  # one end each; the crossing within 1e-4 of x_e
                if j != k % 2:
                    continue
                h = 1e-4 * max(abs(x_e), 1e-2)
                assert excess(x_e - h) < 0 < excess(x_e + h), (name, j)
                continue
            width = 1e-3 * max(abs(x_e), prof.se[k])
            x_bf = optimize.brentq(excess, x_e - width, x_e + width, xtol=1e-12)
            assert x_e == pytest.approx(x_bf, rel=1e-4, abs=1e-6), (name, j)


def test_estimate_on_the_bound_brute_force():
    """An SD estimated at 0 (REML interior, ML at 0): the other parameters' profiles let
    it leave 0 (where 0 is a saddle of the profile, not its maximum); every limit is
    the brute-force crossing (one-way model: ℓ is even in the SD, so it is free in the
    brute force)."""
    rng = np.random.default_rng(27)
    g = np.repeat(np.arange(6), 5)
    y = 5 + 0.45 * rng.normal(size=6)[g] + 1.5 * rng.normal(size=30)
    ml = dmixed.MixedLM(y, np.ones((30, 1)), g)
    with pytest.warns(BoundaryWarning):
        res = ml.fit(reml=False)
    assert res.cov_re[0, 0] == 0.0
    reml = dmixed.MixedLM(y, np.ones((30, 1)), g).fit()
    assert reml.cov_re[0, 0] > 0
    ci = res.confint()
    np.testing.assert_allclose(reml.confint().to_numpy(), ci.to_numpy(), rtol=1e-8)
    yy = y.reshape(6, 5)

    def loglike(sd, sigma, mu):
        cov = sigma**2 * np.eye(5) + sd**2
        r = yy - mu
        quad = np.einsum("gi,ij,gj->", r, np.linalg.inv(cov), r)
        return -3 * np.linalg.slogdet(cov)[1] - 0.5 * quad - 15 * np.log(2 * np.pi)

    def best(k=None, x=None):
        def negative(u):
            z = [u[0], np.exp(u[1]), u[2]]
            if k is not None:
                z[k] = x
            return -loglike(*z)

        start = [0.3, np.log(1.3), 4.7]
        out = optimize.minimize(
            negative,
            start,
            method="Nelder-Mead",
            options=dict(xatol=1e-10, fatol=1e-13, maxiter=20000),
        )
        return -out.fun

    top = best()
    assert top == pytest.approx(res.llf, abs=1e-8)
    crit = stats.norm.ppf(0.975)
    for k, name in enumerate([".sig01", ".sigma", "const"]):
        for j, target in enumerate((-crit, crit)):
            x_e = ci.loc[name].iloc[j]
            zeta = np.sign(x_e - ci.loc[name].mean()) * np.sqrt(2 * (top - best(k, x_e)))
            if x_e == 0.0:
                assert abs(zeta) < crit
            else:
                assert zeta == pytest.approx(target, abs=1e-5), (name, j)


def _dense_ml(y, x, z, g):
    """ℓ_ML(Ψ, σ, β) by groups from each group's cross-products (V⁻¹ by Woodbury in a
    form valid for a singular Ψ), with β at its GLS estimate given ``β_j = b`` when
    ``pinned = (j, b)``."""
    groups, inv = np.unique(g, return_inverse=True)
    m = groups.size
    zz = np.zeros((m, z.shape[1], z.shape[1]))
    np.add.at(zz, inv, z[:, :, None] * z[:, None, :])
    zx = np.zeros((m, z.shape[1], x.shape[1]))
    np.add.at(zx, inv, z[:, :, None] * x[:, None, :])
    zy = np.zeros((m, z.shape[1]))
    np.add.at(zy, inv, z * y[:, None])
    xx, xy, yy = x.T @ x, x.T @ y, y @ y

    def loglike(psi, sigma, pinned=None):
        s2 = sigma**2
        q = psi.shape[0]
        inner = np.linalg.inv(s2 * np.eye(q) + zz @ psi)  # (σ²I + Z'ZΨ)⁻¹
        w = psi @ inner  # Ψ(σ²I + Z'ZΨ)⁻¹
        a = (xx - np.einsum("gki,gkl,glj->ij", zx, w, zx)) / s2
        b = (xy - np.einsum("gki,gkl,gl->i", zx, w, zy)) / s2
        c = (yy - np.einsum("gk,gkl,gl->", zy, w, zy)) / s2
        if pinned is None:
            beta = np.linalg.solve(a, b)
        else:
            j, bj = pinned
            free = np.arange(a.shape[0]) != j
            beta = np.empty(a.shape[0])
            beta[j] = bj
            beta[free] = np.linalg.solve(a[np.ix_(free, free)], b[free] - a[free, j] * bj)
        quad = c - 2 * b @ beta + beta @ a @ beta
        logdet = np.linalg.slogdet(np.eye(q) + zz @ psi / s2)[1].sum() + y.size * np.log(s2)
        return -0.5 * (logdet + quad + y.size * np.log(2 * np.pi))

    return loglike


def _nelder_mead_top(negative, starts, evals: int = 40000) -> float:
    """The highest of ``-negative`` that Nelder–Mead reaches from each start (a brute-force
    maximum to check the profile's against)."""
    top = -np.inf
    for start in starts:
        out = optimize.minimize(
            negative,
            start,
            method="Nelder-Mead",
            options=dict(xatol=1e-10, fatol=1e-12, maxiter=evals, maxfev=evals),
        )
        top = max(top, -out.fun)
    return top


def _singular_psi_data():
    """Three random effects whose correlations are all estimated at about 1 (Ψ of
    rank 1): the user's ``0 + C(cond)`` model with groups of 1 to 39 rows."""
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 40, 60)
    sizes[:5] = 1
    g = np.repeat(np.arange(60), sizes)
    n = g.size
    df = pd.DataFrame(
        {
            "g": g,
            "x1": rng.normal(size=n),
            "x2": rng.normal(size=n),
            "cond": rng.choice(["a", "b", "c"], n),
            "a": rng.integers(0, 4, n),
        }
    )
    u = rng.normal(size=(60, 3)) * [1, 0.5, 0.3]
    df["y"] = (
        1
        + df.x1
        - df.x2
        + u[g, 0]
        + u[g, 1] * df.x1
        + u[g, 2] * df.x2
        + rng.normal(size=(4, 60))[df.a, g] * 0.7
        + rng.normal(size=n)
    )
    return df


def test_singular_psi_limits_are_the_profile_crossings():
    """Ψ estimated singular with its correlations inside (−1, 1) but together at their
    limit: the limits of β and of a correlation are found (not NaN) and are the
    crossings of a brute-force profile over SDs and correlations (scipy, Ψ's
    correlations kept positive semi-definite); the upper limit of a correlation at 1
    is 1, as lme4."""
    df = _singular_psi_data()
    model = dmixed.mixedlm("y ~ x1 + C(cond)", df, groups="g", re_formula="0 + C(cond)")
    with pytest.warns(BoundaryWarning):
        res = model.fit()
    ci = res.confint(parm=[".sig02", "Intercept"])
    assert np.isfinite(ci.to_numpy()).all()
    assert ci.loc[".sig02"].iloc[1] == 1.0
    prof = ProfileIntervals(res)
    x = np.asarray(res.model.exog)
    z = np.asarray(res.model.exog_re)
    loglike = _dense_ml(df.y.to_numpy(), x, z, df.g.to_numpy())

    def point(u, rho12=None):
        # correlations R = FF' of unit rows F: every R is positive semi-definite
        # (the second row fixed by a pinned ρ₁₂)
        second = [rho12, np.sqrt(1 - rho12**2), 0.0] if rho12 is not None else u[3:6]
        f = np.array([[1.0, 0.0, 0.0], second, u[6:9]])
        f /= np.linalg.norm(f, axis=1)[:, None]
        sds = np.exp(u[:3])
        return np.outer(sds, sds) * (f @ f.T), np.exp(u[9])

    def best(pinned_fe=None, rho12=None):
        def negative(u):
            psi, sigma = point(u, rho12)
            return -loglike(psi, sigma, pinned_fe)

        starts = [
            np.r_[np.log([1.3, 1.0, 1.2]), rows[:3], rows[3:], np.log(1.66)]
            for rows in ([1, 0.05, 0, 1, 0, 0.05], [1, 0.5, 0, 1, 0.3, 0.3])
        ]
        return _nelder_mead_top(negative, starts)

    top = best()
    assert prof.llf == pytest.approx(top, abs=1e-6)  # the maximum, not short of it
    crit = stats.norm.ppf(0.975)
    lower = ci.loc["Intercept"].iloc[0]
    zeta = -np.sqrt(2 * (prof.llf - best(pinned_fe=(0, lower))))
    assert zeta == pytest.approx(-crit, abs=2e-3)
    lower = ci.loc[".sig02"].iloc[0]
    zeta = -np.sqrt(2 * (prof.llf - best(rho12=lower)))
    assert zeta == pytest.approx(-crit, abs=2e-3)


def test_correlation_estimated_at_one_sd_limit_is_the_crossing():
    """A correlation estimated at +1 (one large group, many of 1–2 rows): the upper
    limit of the slope's SD is found (not NaN), the brute-force crossing, although the
    profile's maximum moves from the bound ρ = 1 to inside (−1, 1) on the way."""
    rng = np.random.default_rng(3)
    sizes = np.r_[5000, rng.integers(1, 3, 300)]
    g = np.repeat(np.arange(sizes.size), sizes)
    n = g.size
    x = rng.normal(size=n)
    y = (
        x
        + rng.normal(size=sizes.size)[g]
        + rng.normal(size=n) * (1 + 0.5 * (g == 0))
        + rng.normal(size=sizes.size)[g] * x * 0.5
    )
    exog = np.column_stack([np.ones(n), x])
    with pytest.warns(BoundaryWarning):
        res = dmixed.MixedLM(y, exog, g, exog_re=exog).fit()
    ci = res.confint()
    assert np.isfinite(ci.to_numpy()).all()
    prof = ProfileIntervals(res)
    assert prof.estimate[1] == 1.0
    loglike = _dense_ml(y, exog, exog, g)

    def best(sd_x):
        def negative(u):
            row = u[1:3] / np.linalg.norm(u[1:3])
            sds = np.array([np.exp(u[0]), sd_x])
            f = np.array([[1.0, 0.0], row])
            return -loglike(np.outer(sds, sds) * (f @ f.T), np.exp(u[3]))

        starts = [np.r_[np.log(0.55), row, np.log(1.49)] for row in ([1.0, 0.0], [0.6, 0.8])]
        return _nelder_mead_top(negative, starts, evals=20000)

    upper = ci.loc[".sig03"].iloc[1]
    zeta = np.sqrt(2 * (prof.llf - best(upper)))
    assert zeta == pytest.approx(stats.norm.ppf(0.975), abs=2e-3)


def test_limit_not_found_warns_naming_the_parameter(sleepstudy, monkeypatch):
    """A profile whose maximization fails gives NaN with a ProfileWarning that names
    the parameter and the side (never a silent NaN)."""
    from dmixed.errors import ProfileWarning
    from dmixed.results.sdcor import SdCorPoint

    prof = ProfileIntervals(sleepstudy)
    k = prof.names.index("Days")

    def failing(k_, x, near):
        return np.nan, np.nan, SdCorPoint(near.z, np.nan)

    monkeypatch.setattr(prof, "zeta", failing)
    with pytest.warns(ProfileWarning, match=r"the upper profile limit of Days is NaN"):
        assert np.isnan(prof.endpoint(k, 1.96))


def _near_singular_three_data():
    """Three random effects (``1 + x1 + x2``) of which two have small SDs: the ML
    optimum is a Ψ of rank 2 whose correlations are each inside (−1, 1)."""
    rng = np.random.default_rng(0)
    m = int(rng.integers(15, 60))
    q = int(rng.integers(2, 4))
    sizes = rng.integers(2, 15, m)
    g = np.repeat(np.arange(m), sizes)
    n = g.size
    df = pd.DataFrame(
        {
            "g": g,
            "x1": rng.normal(size=n),
            "x2": rng.normal(size=n),
            "w": rng.uniform(0.5, 2, n),
        }
    )
    lam = rng.normal(size=(q, q)) * rng.uniform(0.05, 1)
    lam[:, 1:] *= 0.01
    u = rng.normal(size=(m, q)) @ lam.T
    z = np.column_stack([np.ones(n), df.x1, df.x2])[:, :q]
    df["y"] = 1 + df.x1 + (z * u[g]).sum(1) + rng.normal(size=n)
    return df


def test_near_singular_psi_sd_and_fixed_limits_are_the_profile_crossings():
    """Ψ (3 × 3) estimated singular with correlations inside (−1, 1): the ML optimum is
    the maximum over the positive semi-definite cone, and the upper limit of the first
    SD and the lower limit of the intercept are the crossings of a brute-force profile
    (the base's, 1.2044 and 0.5533, were not: its profile started from
    an optimum below the maximum)."""
    df = _near_singular_three_data()
    model = dmixed.mixedlm("y ~ x1 + x2", df, groups="g", re_formula="1 + x1 + x2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BoundaryWarning)
        res = model.fit(reml=True)
    ci = res.confint(parm=[".sig01", "Intercept"])
    prof = ProfileIntervals(res)
    loglike = _dense_ml(
        df.y.to_numpy(), np.asarray(res.model.exog), np.asarray(res.model.exog_re), df.g.to_numpy()
    )

    # starts: the estimates (R's factor rows, made positive definite) and a rotation
    est = prof.estimate
    r = np.eye(3)
    r[0, 1], r[0, 2], r[1, 2] = est[1], est[2], est[4]
    r = np.triu(r) + np.triu(r, 1).T
    f0 = np.linalg.cholesky(r + 1e-4 * np.eye(3))
    at = np.r_[np.log(np.maximum(est[[0, 3, 5]], 1e-3)), f0[1, :2], f0[2], np.log(est[6])]
    starts = [at, at + np.r_[0.1, 0.3, -0.1, 0.2, -0.2, 0.1, 0.2, -0.2, 0.05]]

    def best(pinned_fe=None, sd1=None):
        def negative(u):
            f = np.array([[1.0, 0.0, 0.0], [*u[3:5], 0.0], u[5:8]])
            f /= np.linalg.norm(f, axis=1)[:, None]
            sds = np.exp(u[:3])
            if sd1 is not None:
                sds[0] = sd1
            return -loglike(np.outer(sds, sds) * (f @ f.T), np.exp(u[8]), pinned_fe)

        return _nelder_mead_top(negative, starts)

    assert prof.llf == pytest.approx(best(), abs=1e-6)
    crit = stats.norm.ppf(0.975)
    upper = ci.loc[".sig01"].iloc[1]
    assert np.sqrt(2 * (prof.llf - best(sd1=upper))) == pytest.approx(crit, abs=2e-3)
    lower = ci.loc["Intercept"].iloc[0]
    zeta = -np.sqrt(2 * (prof.llf - best(pinned_fe=(0, lower))))
    assert zeta == pytest.approx(-crit, abs=2e-3)


def _schools(seed: int = 3, n_schools: int = 30, n_classes: int = 4, size: int = 8):
    """Classes nested in schools: the class component has 120 (school, class) levels,
    more than the 30 schools, so lme4 puts its term first."""
    rng = np.random.default_rng(seed)
    school = np.repeat(np.arange(n_schools), n_classes * size)
    cls = np.tile(np.repeat(np.arange(n_classes), size), n_schools)
    x = rng.normal(size=school.size)
    u_school = rng.normal(0, 2, n_schools)[school]
    u_class = rng.normal(0, 1, (n_schools, n_classes))[school, cls]
    y = 10 + 0.5 * x + u_school + u_class + rng.normal(0, 1.5, school.size)
    return pd.DataFrame({"school": school, "cls": cls, "x": x, "y": y})


def test_confint_and_profile_ci_share_lmes_order_of_terms():
    """``.sig01`` is the class SD (its term has more levels), ``.sig02`` the school SD;
    profile_ci lists the variances in that same order, each the square of its row."""
    fit = dmixed.mixedlm(
        "y ~ x", _schools(), groups="school", re_formula="1", vc_formula={"cls": "0 + C(cls)"}
    ).fit()
    ci = fit.confint()
    var = fit.profile_ci()
    assert list(var.index) == ["cls", "school"]
    np.testing.assert_allclose(var.to_numpy()[:, 1:], ci.loc[[".sig01", ".sig02"]] ** 2)
    assert var.loc["cls", "estimate"] == fit.vcomp[0]
    assert var.loc["school", "estimate"] == fit.cov_re.iloc[0, 0]
    # the SD rows are the ML profile of those SDs: each contains its own ML estimate's
    # order of size, the class SD (about 1) well below the school SD (about 2)
    assert ci.loc[".sig01"].iloc[1] < ci.loc[".sig02"].iloc[0]
    assert "class SD" in type(fit).confint.__doc__
