"""``Likelihood``: the model's ℓ, score and Hessian at any point, from the statistics.

The agreement with statsmodels at random points is in ``test_model_methods.py``; here,
the fit's own optimum: ℓ there is the reported ``llf`` (the same map back as the fit's),
the score vanishes, and β given as β̂ is β profiled.
"""

from __future__ import annotations

import re

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


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("shift", [1e7, 1e8])
def test_unresolved_point_is_refused_naming_the_column(kernels, reml, shift, monkeypatch):
    """x1 near 1e8 and Ψ* = diag(0.5, 0.3): a random intercept of variance 3e15 about
    x1's centre, whose direction X'V*⁻¹X loses to the rounding of the sums.  Every
    model-level method refuses it with a DataError naming x1 and its offset (main gave
    ℓ = −inf, numpy's LinAlgError from score and get_fe_params, and an all-NaN Hessian
    with ``sing=False``; at 1e7, REML values 0.01 to 0.03 off without a word)."""
    monkeypatch.setenv("DMIXED_KERNELS", kernels)
    model = _shifted_slope_model(shift, reml)
    point = dmixed.MixedLMParams.from_components(fe_params=np.zeros(3), cov_re=_PSI)
    calls = (
        lambda: model.loglike(point),
        lambda: model.score(point),
        lambda: model.score_full(point, calc_fe=True),
        lambda: model.hessian(point),
        lambda: model.get_fe_params(_PSI, np.zeros(0)),
    )
    for call in calls:
        with pytest.raises(DataError, match=re.escape(f"'x1' (values about {shift:.0e}")):
            call()


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
@pytest.mark.parametrize("shift", [3e5, 1e6])
def test_coarse_point_warns_with_a_bound_that_holds(kernels, shift, monkeypatch):
    """REML at x1 near 3e5 and 1e6 (ℓ off by up to about 1e-4 there: ``log|A|``'s
    intercept direction is a remainder of the sums): a PrecisionWarning naming x1, whose
    stated bound covers the error against the extended-precision reference (main said
    nothing)."""
    monkeypatch.setenv("DMIXED_KERNELS", kernels)
    model = _shifted_slope_model(shift, True)
    point = dmixed.MixedLMParams.from_components(fe_params=np.zeros(3), cov_re=_PSI)
    with pytest.warns(PrecisionWarning, match="'x1'") as record:
        llf = model.loglike(point)
    bound = float(re.search(r"off by up to ([0-9.e+-]+)", str(record[0].message)).group(1))
    assert abs(llf - _reference(model, _PSI, True)) <= bound


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
