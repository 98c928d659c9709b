"""``Likelihood``: the model's ℓ, score and Hessian at any point, from the statistics.

The agreement with statsmodels at random points is in ``test_model_methods.py``; here,
the fit's own optimum: ℓ there is the reported ``llf`` (the same map back as the fit's),
the score vanishes, and β given as β̂ is β profiled.
"""

from __future__ import annotations

import numpy as np

import dmixed
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
