"""The optimizer's finishing steps: the Newton polish and when it is skipped."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import dmixed
from dmixed import optimize
from dmixed.engines.local import LocalEngine

from ._synth import make_data


def _fit_counting(df, monkeypatch, min_gain: float, **model_kw):
    """Fit with the given polish threshold; count the Hessian round trips."""
    calls = {"hessian": 0}
    original = LocalEngine.hessian

    def counted(self, *args):
        calls["hessian"] += 1
        return original(self, *args)

    monkeypatch.setattr(LocalEngine, "hessian", counted)
    monkeypatch.setattr(optimize, "POLISH_MIN_GAIN", min_gain)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = dmixed.mixedlm("y ~ x1 + x2", df, groups="g", **model_kw)
        return model.fit(), calls["hessian"]


@pytest.mark.parametrize(
    "model_kw", [{"re_formula": "1 + x1"}, {"re_formula": "1", "vc_formula": {"s": "0 + C(sub)"}}]
)
def test_skipped_polish_loses_nothing(monkeypatch, model_kw):
    """Where BFGS's curvature promises a negligible Newton gain the polish (one Hessian)
    is skipped, and the estimates equal the polished ones."""
    df = make_data(n_groups=400, vc_sd=0.5, seed=4)
    default_gain = optimize.POLISH_MIN_GAIN
    polished, h_polished = _fit_counting(df, monkeypatch, -1.0, **model_kw)
    skipped, h_skipped = _fit_counting(df, monkeypatch, default_gain, **model_kw)
    assert h_polished >= 2  # polish + standard errors
    assert h_skipped == 1  # standard errors only
    assert skipped.llf == pytest.approx(polished.llf, abs=1e-7)
    np.testing.assert_allclose(skipped.fe_params, polished.fe_params, rtol=1e-6)
    np.testing.assert_allclose(skipped.cov_re, polished.cov_re, rtol=1e-5)
    np.testing.assert_allclose(skipped.vcomp, polished.vcomp, rtol=1e-5)
    np.testing.assert_allclose(skipped.bse, polished.bse, rtol=1e-5)
    assert skipped.converged


def test_expected_gain_is_the_newton_decrement():
    """½ n ∇f'B∇f with B the inverse Hessian estimate, in log-likelihood units."""

    class Res:
        hess_inv = np.array([[2.0, 0.5], [0.5, 1.0]])

    class Ev:
        llf = -10.0
        score = np.array([3.0, -4.0])  # g = ∂ℓ/∂x; ∇f = −g/n

    n = 10
    grad_f = -Ev.score / n
    want = 0.5 * n * grad_f @ Res.hess_inv @ grad_f
    assert optimize._expected_gain(Res(), Ev(), np.array([True, True]), n) == pytest.approx(want)
    # no estimate, a fixed parameter or an indefinite estimate: no skipping
    assert optimize._expected_gain(None, Ev(), np.array([True, True]), n) is None
    assert optimize._expected_gain(Res(), Ev(), np.array([True, False]), n) is None
    Res.hess_inv = np.array([[1.0, 0.0], [0.0, -1.0]])
    assert optimize._expected_gain(Res(), Ev(), np.array([True, True]), n) is None
