"""dmixed's profiled objective against the independent high-precision reference
(``tests/_dense.py``) at random and near-boundary points; the reference's own constants
against statsmodels' ``MixedLM.loglike``."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from statsmodels.regression.mixed_linear_model import MixedLM as SmMixedLM
from statsmodels.regression.mixed_linear_model import MixedLMParams

from dmixed import MixedLM
from dmixed.fit.coordinates import Coordinates
from dmixed.fit.profiled import ProfiledObjective

from .._dense import DenseModel, dense_model_of
from .._synth import design, make_data, vc_dict

_DF = make_data(n_groups=20, max_size=10, vc_sd=0.7, seed=5)

CASES = {
    "intercept": dict(slope=False, vc=False, weights=False),
    "slope": dict(slope=True, vc=False, weights=False),
    "slope+vc": dict(slope=True, vc=True, weights=False),
    "intercept+vc+weights": dict(slope=False, vc=True, weights=True),
}
REML = [pytest.param(False, id="ML"), pytest.param(True, id="REML")]


def _model(case: str) -> MixedLM:
    kw = CASES[case]
    endog, exog, exog_re, groups = design(_DF, slope=kw["slope"])
    return MixedLM(
        endog,
        exog,
        groups,
        exog_re=exog_re,
        exog_vc=vc_dict(_DF) if kw["vc"] else None,
        weights=_DF["w"].to_numpy() if kw["weights"] else None,
    )


def _points(q: int, k_vc: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(L, s) points: random; τ* ~ 1e-8; Ψ* singular (rank q − 1) or zero; s = 0."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(3):
        lmat = np.tril(rng.normal(size=(q, q)))
        out.append((lmat, rng.uniform(0.2, 2.0, k_vc)))
    lmat = np.tril(rng.normal(size=(q, q)))
    out.append((lmat, np.full(k_vc, 1e-4)))  # τ* = 1e-8
    out.append((1e-4 * lmat, rng.uniform(0.2, 2.0, k_vc)))  # Ψ* ~ 1e-8
    sing = lmat.copy()
    sing[:, -1] = 0.0  # rank q − 1 (Ψ* = 0 for q = 1)
    out.append((sing, np.zeros(k_vc)))
    return out


@pytest.mark.parametrize("reml", REML)
@pytest.mark.parametrize("case", list(CASES))
def test_objective_matches_dense_reference(case, reml):
    """ℓ, β̂ and σ̂² of dmixed's ProfiledObjective equal the reference's to ~1e-10
    (the objective in the model's own coordinates: its statistics' map undone)."""
    model = _model(case)
    stats = model.statistics()
    layout = stats.layout
    coords = Coordinates.model(stats.columns, layout)
    obj = ProfiledObjective(stats.engine, stats.glob, layout, reml, True, coords.re_map)
    dm = dense_model_of(model)
    for lmat, svals in _points(layout.k_re, layout.k_vc, seed=len(case) + reml):
        rows, cols = layout.tril()
        packed = np.concatenate([lmat[rows, cols], svals])
        ev = obj.evaluate(packed)
        psi, tau = lmat @ lmat.T, svals**2
        llf, beta, scale = dm.profiled_loglike(psi, tau, reml)
        _, _, se = dm.evaluate(beta, psi * scale, tau * scale, scale, reml)
        got_llf = coords.llf(ev.llf, stats.glob.n, reml)
        assert got_llf == pytest.approx(llf, rel=1e-11, abs=1e-9), (psi, tau)
        assert ev.prof is not None
        got_beta = coords.beta(ev.prof.beta)
        np.testing.assert_allclose(got_beta, beta, rtol=1e-10, atol=1e-9 * se.max())
        assert coords.scale(ev.prof.scale) == pytest.approx(scale, rel=1e-10)


@pytest.mark.parametrize("reml", REML)
@pytest.mark.parametrize("case", ["slope", "slope+vc"])
def test_dense_routes_agree(case, reml):
    """The definition (dense V_i) and the determinant-lemma route give the same numbers."""
    model = _model(case)
    dense, lowrank = dense_model_of(model, "dense"), dense_model_of(model, "lowrank")
    q, k_vc = model.k_re, model.k_vc
    for lmat, svals in _points(q, k_vc, seed=7):
        psi, tau = lmat @ lmat.T, svals**2
        a = dense.profiled_loglike(psi, tau, reml)
        b = lowrank.profiled_loglike(psi, tau, reml)
        assert a[0] == pytest.approx(b[0], rel=1e-14)
        np.testing.assert_allclose(a[1], b[1], rtol=1e-13, atol=1e-13)
        # the profiled ℓ is the unprofiled ℓ at the profiled point
        full = dense.loglike(a[1], psi * a[2], tau * a[2], a[2], reml)
        assert full == pytest.approx(a[0], rel=1e-14)


@pytest.mark.parametrize("reml", REML)
@pytest.mark.parametrize("case", ["intercept", "slope+vc"])
def test_dense_constants_match_statsmodels(case, reml):
    """The reference's ML and REML constants are statsmodels' (``loglike`` with β given
    and σ² profiled) at interior points, and with β at its GLS value."""
    model = _model(case)
    endog, exog, exog_re, groups = design(_DF, slope=CASES[case]["slope"])
    exog_vc = vc_dict(_DF) if CASES[case]["vc"] else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # statsmodels' dict form of exog_vc
        sm = SmMixedLM(endog, exog, groups, exog_re=exog_re, exog_vc=exog_vc)
    sm.reml, sm.cov_pen, sm.fe_pen = reml, None, None  # what sm.fit() would set
    dm = dense_model_of(model)
    for lmat, svals in _points(model.k_re, model.k_vc, seed=3)[:3]:
        psi, tau = lmat @ lmat.T, svals**2
        llf, beta, scale = dm.profiled_loglike(psi, tau, reml)
        params = MixedLMParams.from_components(fe_params=beta, cov_re=psi, vcomp=tau)
        assert sm.loglike(params, profile_fe=False) == pytest.approx(llf, rel=1e-10)
        assert sm.loglike(params, profile_fe=True) == pytest.approx(llf, rel=1e-10)


def test_dense_boundary_is_ols():
    """Ψ* = 0: the REML likelihood is that of OLS (closed form), ML likewise."""
    rng = np.random.default_rng(1)
    n, g = 40, np.repeat(np.arange(8), 5)
    x = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = x @ [1.0, 2.0] + rng.normal(size=n)
    dm = DenseModel(y, x, np.ones((n, 1)), g)
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    ss = float(np.sum((y - x @ beta) ** 2))
    for reml, fac in ((False, n), (True, n - 2)):
        llf, b, s2 = dm.profiled_loglike(np.zeros((1, 1)), np.zeros(0), reml)
        want = -0.5 * fac * (np.log(2 * np.pi) + np.log(ss / fac) + 1)
        if reml:
            want -= 0.5 * np.linalg.slogdet(x.T @ x)[1]
        assert llf == pytest.approx(want, rel=1e-13)
        np.testing.assert_allclose(b, beta, rtol=1e-12)
        assert s2 == pytest.approx(ss / fac, rel=1e-12)
