"""``Likelihood``: the model's ℓ, score and Hessian at any point, from the statistics.

The agreement with statsmodels at random points is in ``test_model_methods.py``; here,
the fit's own optimum: ℓ there is the reported ``llf`` (the same map back as the fit's),
the score vanishes, and β given as β̂ is β profiled.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dmixed
from dmixed.errors import DataError, PrecisionWarning
from dmixed.fit.likelihood import Likelihood, Point

from .._synth import make_data


def _fit(vc: bool):
    df = make_data(n_groups=40, vc_sd=0.7 if vc else 0.0, seed=4)
    df["x2"] = 1e4 + df["x2"]  # far from zero: the statistics are shifted
    df["y"] = 1e5 + 3.0 * df["y"]
    kw = (
        {"vc_formula": {"sub": "0 + C(sub)"}, "re_formula": "1"} if vc else {"re_formula": "1 + x1"}
    )
    model = dmixed.MixedLM.from_formula("y ~ x1 + x2", data=df, groups="g", **kw)
    return model, model.fit(reml=True)


def test_the_fit_optimum_is_reproduced():
    for vc in (False, True):
        model, res = _fit(vc)
        stats = model.statistics()
        lik = Likelihood(stats.engine, stats.glob, stats.layout, stats.columns, True)
        lam = stats.layout.lam(res.packed_params, model.use_sqrt)
        np.testing.assert_allclose(lik.loglike(Point(lam)), res.llf, rtol=1e-12)
        beta = lik.fe_params(lam)
        np.testing.assert_allclose(beta, np.asarray(res.fe_params), rtol=1e-9)
        np.testing.assert_allclose(lik.loglike(Point(lam, beta)), res.llf, rtol=1e-12)
        hess = lik.hessian(Point(lam, beta))
        # the Hessian's negative inverse is the fit's cov_params (statsmodels' definition)
        np.testing.assert_allclose(
            np.linalg.inv(-hess), np.asarray(res.cov_params()), rtol=1e-6, atol=1e-12
        )
        g_fe, d_psi, d_tau = lik.score_parts(Point(lam))
        # ∂ℓ/∂β at β̂ in units of standard errors: rounding only
        assert np.max(np.abs(g_fe) / np.sqrt(np.abs(np.diag(hess))[: g_fe.size])) < 1e-6
        packed_score = stats.layout.score_packed(d_psi, d_tau, res.packed_params, True)
        assert np.max(np.abs(packed_score)) / res.nobs < 1e-5


# -- a user's point on a random slope whose column lies far from zero -----------------------

_PSI = np.array([[0.5, 0.0], [0.0, 0.3]])


def _shifted_slope_frame(shift: float):
    """30 groups of 4 to 11 rows, ``x1`` moved by ``shift`` (its spread stays about 1)."""
    import pandas as pd

    rng = np.random.default_rng(0)
    parts = []
    for g in range(30):
        n = int(rng.integers(4, 12))
        x1, x2 = rng.normal(size=n), rng.normal(size=n)
        y = 1 + 0.5 * x1 - 0.3 * x2 + rng.normal() + rng.normal(0, 0.5) * x1 + rng.normal(size=n)
        parts.append(pd.DataFrame({"g": f"g{g:02d}", "x1": x1 + shift, "x2": x2, "y": y}))
    return pd.concat(parts, ignore_index=True)


def _shifted_slope_model(shift: float, reml: bool):
    df = _shifted_slope_frame(shift)
    model = dmixed.MixedLM.from_formula("y ~ x1 + x2", df, groups="g", re_formula="1 + x1")
    model.reml = reml
    return model


def _reference(model, psi: np.ndarray, reml: bool) -> float:
    """ℓ profiled at Ψ*, from the model's float64 rows in extended precision."""
    from .._dense import dense_model_of

    return dense_model_of(model).profiled_loglike(psi, np.zeros(0), reml)[0]


def _point(psi: np.ndarray):
    return dmixed.MixedLMParams.from_components(fe_params=np.zeros(3), cov_re=psi)


def _calls(model, psi: np.ndarray):
    point = _point(psi)
    return {
        "loglike": lambda: model.loglike(point),
        "score": lambda: model.score(point),
        "score_full": lambda: model.score_full(point, calc_fe=True),
        "hessian": lambda: model.hessian(point),
    }


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
@pytest.mark.parametrize("reml", [True, False])
def test_unevaluable_point_is_refused_naming_the_column(kernels, reml, monkeypatch):
    """x1 near 1e9 and Ψ* = [[1, .3], [.3, .2]]: a random intercept of variance about
    1e18 about x1's centre, where X'V*⁻¹X is not positive definite to the rounding of
    the sums.  Every model-level method refuses it with a DataError naming that cause,
    x1 with its offset and the remedy (main gave ℓ = −inf, numpy's LinAlgError from
    score and get_fe_params, and an all-NaN Hessian with ``sing=False``)."""
    monkeypatch.setenv("DMIXED_KERNELS", kernels)
    model = _shifted_slope_model(1e9, reml)
    psi = np.array([[1.0, 0.3], [0.3, 0.2]])
    calls = list(_calls(model, psi).values())
    calls.append(lambda: model.get_fe_params(psi, np.zeros(0)))
    for call in calls:
        with pytest.raises(DataError, match=re.escape("'x1' (values about 1e+09")) as info:
            call()
        assert "X'V^-1 X is not positive definite" in str(info.value)
        assert "center(x1)" in str(info.value)


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
@pytest.mark.parametrize(("shift", "psi"), [(1e7, _PSI), (1e8, np.diag([0.05, 0.01]))])
def test_ml_is_evaluated_where_only_the_fixed_effects_are_unresolved(
    kernels, shift, psi, monkeypatch
):
    """Under ML ℓ feels X'V*⁻¹X's factor only through β̂, at second order (Q is
    stationary in β): at these points, where the factor does not resolve β̂, ℓ stays
    exact and loglike, score and Hessian answer without a warning (a DmixedWarning is
    an error here); only get_fe_params, which returns β̂ itself, is refused."""
    monkeypatch.setenv("DMIXED_KERNELS", kernels)
    model = _shifted_slope_model(shift, False)
    for name, call in _calls(model, psi).items():
        out = call()
        assert np.all(np.isfinite(out[0] if name in ("score_full", "hessian") else out))
    llf = model.loglike(_point(psi))
    ref = _reference(model, psi, False)
    assert abs(llf - ref) <= 1e-12 * abs(ref)
    with pytest.raises(DataError, match="the fixed effects cannot be evaluated") as info:
        model.get_fe_params(psi, np.zeros(0))
    assert "center(x1)" in str(info.value)


def test_reml_without_a_finite_bound_is_refused(monkeypatch):
    """REML at x1 near 1e8 and Ψ* = diag(5, 2): X'V*⁻¹X's smallest pivot is within 15
    times its own rounding of zero, so ``log|X'V*⁻¹X|`` has no bound (the numpy kernels
    factor it; numba's factorization fails first, the refusal above).  ML at the same
    point, which holds no ``log|A|``, is evaluated exactly."""
    monkeypatch.setenv("DMIXED_KERNELS", "numpy")
    psi = np.diag([5.0, 2.0])
    with pytest.raises(DataError, match=re.escape("log|X'V^-1 X| has no finite bound")):
        _shifted_slope_model(1e8, True).loglike(_point(psi))
    model = _shifted_slope_model(1e8, False)
    ref = _reference(model, psi, False)
    assert abs(model.loglike(_point(psi)) - ref) <= 1e-12 * abs(ref)


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
@pytest.mark.parametrize(
    ("shift", "psi"),
    [
        (3e5, _PSI),
        (1e6, _PSI),
        (1e6, np.diag([5.0, 2.0])),
        (1e7, _PSI),
        (1e7, np.diag([0.05, 0.01])),
        (1e8, np.diag([0.05, 0.01])),
    ],
)
def test_coarse_reml_point_warns_with_a_bound_that_holds(kernels, shift, psi, monkeypatch):
    """REML where ``log|A|``'s intercept direction is a remainder of the sums (ℓ off by
    1e-6 to 0.1 there): every method answers, each with a PrecisionWarning that names
    the cause, x1 and the remedy, points at the caller's line, and whose stated bound
    covers loglike's error against the extended-precision reference (main said
    nothing; the first version of this check refused all but the first two)."""
    monkeypatch.setenv("DMIXED_KERNELS", kernels)
    model = _shifted_slope_model(shift, True)
    for name, call in _calls(model, psi).items():
        with pytest.warns(PrecisionWarning, match="'x1'") as record:
            call()
        message = str(record[0].message)
        assert "log|X'V^-1 X|" in message and "center(x1)" in message, name
        assert record[0].filename == __file__, name
    with pytest.warns(PrecisionWarning) as record:
        llf = model.loglike(_point(psi))
    bound = float(re.search(r"off by up to ([0-9.e+-]+)", str(record[0].message)).group(1))
    assert abs(llf - _reference(model, psi, True)) <= bound


def test_centring_the_column_in_the_formula_evaluates_exactly():
    """The remedy the messages give: ``center(x1)`` in the formulas makes the same Ψ*
    at x1 near 1e8 a moderate point, evaluated exactly and silently."""
    model = dmixed.MixedLM.from_formula(
        "y ~ center(x1) + x2", _shifted_slope_frame(1e8), groups="g", re_formula="1 + center(x1)"
    )
    llf = model.loglike(_point(_PSI))
    ref = _reference(model, _PSI, True)
    assert abs(llf - ref) <= 1e-12 * abs(ref)
    assert np.all(np.isfinite(model.get_fe_params(_PSI, np.zeros(0))[0]))


@settings(max_examples=6, deadline=None)
@given(
    log_shift=st.floats(0.0, 4.0),
    diag=st.tuples(st.floats(0.05, 2.0), st.floats(0.05, 2.0)),
    reml=st.booleans(),
)
def test_moderately_shifted_points_are_exact(log_shift, diag, reml):
    """Offsets up to 1e4 spreads: ℓ to 1e-10 relative of the extended-precision
    reference (ML to rounding; REML's ``log|A|`` loses about (offset/spread)² ε), with
    no warning (a DmixedWarning is an error here), under both kernel settings."""
    psi = np.diag(diag)
    for kernels in ("numpy", "numba"):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("DMIXED_KERNELS", kernels)
            model = _shifted_slope_model(10.0**log_shift, reml)
            point = dmixed.MixedLMParams.from_components(fe_params=np.zeros(3), cov_re=psi)
            llf = model.loglike(point)
        ref = _reference(model, psi, reml)
        assert abs(llf - ref) <= 1e-10 * abs(ref)


# -- a random slope far from zero next to a variance component ---------------------------


def _slope_vc_model(shift: float = 1e6):
    """6 groups of 6, x1 near ``shift``, a variance component on a 3-level factor."""
    import pandas as pd

    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(6), 6)
    cl = rng.integers(0, 3, g.size)
    df = pd.DataFrame({"g": g, "cl": cl, "x1": rng.normal(size=g.size) + shift})
    df["y"] = (
        1
        + 0.5 * (df.x1 - shift)
        + rng.normal(size=6)[g]
        + rng.normal(scale=0.7, size=(6, 3))[g, cl]
        + rng.normal(size=g.size)
    )
    model = dmixed.MixedLM.from_formula(
        "y ~ x1", df, groups="g", re_formula="1 + x1", vc_formula={"cl": "0 + C(cl)"}
    )
    return model, df


def _slope_vc_reference(df, psi, tau, beta, reml: bool) -> float:
    """ℓ (σ² profiled; β given, or profiled where None) in 60 digits from the rows."""
    import mpmath as mpm

    with mpm.workdps(60):
        x = np.column_stack([np.ones(len(df)), df.x1.to_numpy()])
        zv = (df.cl.to_numpy()[:, None] == np.arange(3)).astype(float)
        y = df.y.to_numpy()
        logdet, a, b, yy = mpm.mpf(0), mpm.zeros(2, 2), mpm.zeros(2, 1), mpm.mpf(0)
        for gi in range(6):
            ix = df.g.to_numpy() == gi
            xi, zvi = mpm.matrix(x[ix].tolist()), mpm.matrix(zv[ix].tolist())
            yi = mpm.matrix(y[ix].tolist())
            v = mpm.eye(int(ix.sum())) + xi * mpm.matrix(psi.tolist()) * xi.T
            v += mpm.mpf(tau) * (zvi * zvi.T)
            logdet += mpm.log(mpm.det(v))
            v_inv = v**-1
            a += xi.T * v_inv * xi
            b += xi.T * v_inv * yi
            yy += (yi.T * v_inv * yi)[0]
        bet = mpm.lu_solve(a, b) if beta is None else mpm.matrix(beta.tolist())
        q = yy - 2 * (bet.T * b)[0] + (bet.T * a * bet)[0]
        f = len(df) - 2 if reml else len(df)
        out = -logdet / 2 - f * mpm.log(q) / 2 + f * (mpm.log(f) - mpm.log(2 * mpm.pi) - 1) / 2
        if reml:
            out -= mpm.log(mpm.det(a)) / 2
        return float(out)


def _slope_vc_outcomes(shift, beta, psis, reml, profile_fe):
    """Each point's outcome: "refused" (a DataError naming x1), "bounded" (within the
    bound its PrecisionWarning states), "unbounded" (a PrecisionWarning that states no
    bound) or "silent" (no warning, within 1e-6 of the 60-digit value)."""
    model, df = _slope_vc_model(shift)
    model.reml = reml
    tau, out = 0.5, []
    for psi in psis:
        point = dmixed.MixedLMParams.from_components(
            fe_params=beta, cov_re=psi, vcomp=np.array([tau])
        )
        ref = _slope_vc_reference(df, psi, tau, None if profile_fe else beta, reml)
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always", PrecisionWarning)
            try:
                llf = model.loglike(point, profile_fe=profile_fe)
            except DataError as err:
                assert "'x1'" in str(err)
                out.append("refused")
                continue
        found = [str(w.message) for w in record if issubclass(w.category, PrecisionWarning)]
        if not found:
            assert abs(llf - ref) <= 1e-6
            out.append("silent")
        elif "at these parameters without a stated bound" in found[0]:
            assert not profile_fe
            out.append("unbounded")
        else:
            bound = float(re.search(r"off by up to ([0-9.e+-]+)", found[0]).group(1))
            assert abs(llf - ref) <= bound
            out.append("bounded")
    return out


_PSI_FAR = np.array([[0.1446, -0.1332], [-0.1332, 0.5342]])
_PSI_NEAR_SINGULAR = np.array([[0.4136, -0.2313], [-0.2313, 0.2837]])
_PSI_SMALL_SLOPE = np.array([[0.8, 1e-4], [1e-4, 1e-6]])


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("profile_fe", [False, True])
def test_shifted_slope_with_a_variance_component_is_never_silently_wrong(
    kernels, reml, profile_fe, monkeypatch
):
    """x1 near 1e6 with a variance component: the plain forms round each group's
    ``I + Λ'Z'ZΛ`` (main returned ℓ off by 215 for ML at a given β, by 7 for REML,
    silently).  Each answer is a DataError, or a value within the bound its
    PrecisionWarning states, or a silent value within 1e-6 of the 60-digit one; the
    small-slope point, which main gave to 5e-6, is not refused under ML."""
    monkeypatch.setenv("DMIXED_KERNELS", kernels)
    psis = (_PSI_FAR, _PSI_NEAR_SINGULAR, _PSI_SMALL_SLOPE)
    out = _slope_vc_outcomes(1e6, np.array([1.0, 0.5]), psis, reml, profile_fe)
    if not reml:
        assert out[2] != "refused"


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("profile_fe", [False, True])
def test_moderately_shifted_slope_with_a_variance_component_is_evaluated(
    kernels, reml, profile_fe, monkeypatch
):
    """x1 near 1e3: the same rule holds, nothing is refused, and the small-slope point
    comes silently and within 1e-6 of the 60-digit value."""
    monkeypatch.setenv("DMIXED_KERNELS", kernels)
    beta = np.array([1.0 - 0.5e3, 0.5])
    out = _slope_vc_outcomes(1e3, beta, (_PSI_FAR, _PSI_SMALL_SLOPE), reml, profile_fe)
    assert "refused" not in out
    assert out[1] == "silent"
