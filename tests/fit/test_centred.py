"""Random designs close to singular within groups (``kernels.lossy_groups``): slopes
constant or nearly constant within the groups, the slope column first, a scaled
intercept, one varying group among constant ones, next to a between-group spread far
above the residual sd.  Their groups take the centred sums
(``kernels.centred_statistics``, ``StatsBlock.use_centred``); ℓ, its score, the fits and
the BLUPs are checked against references in 40 digits (``mp_llf``) or the within/between
form of tests/fit/test_rank_one.py.
"""

from __future__ import annotations

import warnings

import mpmath
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize

import dmixed
from dmixed.design import build_spec
from dmixed.engines.local import statistics_from_arrays
from dmixed.errors import SingularHessianWarning
from dmixed.kernels import groups as kernel_groups
from dmixed.model import MixedLM
from dmixed.stats import GroupArrays

from .._centred import mp_llf, near_constant
from .test_rank_one import _design, _exact_llf, _psi, intercept_elsewhere


def _lmat(packed):
    lmat = np.zeros((2, 2))
    lmat[np.tril_indices(2)] = packed
    return lmat


def central_gradient(fun, x: np.ndarray, rel: float) -> np.ndarray:
    """Central differences of ``fun`` at ``x``, steps ``rel · max(|x_j|, 1)``."""
    out = np.empty(x.size)
    for j in range(x.size):
        h = rel * max(abs(x[j]), 1.0)
        up, down = x.copy(), x.copy()
        up[j] += h
        down[j] -= h
        out[j] = (fun(up) - fun(down)) / (2 * h)
    return out


def _model(y, exog, g, zrows):
    return dmixed.MixedLM(y, exog, g, exog_re=zrows)


POINTS = [np.array([5000.0, 0.0, 10.0]), np.array([18000.0, 900.0, 3.0])]


@pytest.mark.parametrize("delta", [0.0, 1e-6, 1e-3])
def test_loglike_of_near_constant_slopes(delta):
    y, exog, g, z = near_constant(delta=delta)
    model = _model(y, exog, g, z)
    assert model.statistics().engine.block.rank_one  # rank one (δ = 0), else centred
    for packed in POINTS:
        want = mp_llf(y, exog, g, z, _lmat(packed))
        assert model.loglike(packed) == pytest.approx(want, abs=1e-7)


def test_score_of_near_constant_slopes_is_the_gradient_of_the_exact_loglike():
    y, exog, g, z = near_constant(delta=1e-6)
    model = _model(y, exog, g, z)
    packed = POINTS[1]
    want = central_gradient(lambda x: mp_llf(y, exog, g, z, _lmat(x)), packed, 1e-4)
    np.testing.assert_allclose(model.score(packed), want, rtol=1e-5, atol=1e-9)


def test_lbfgs_fit_of_near_constant_slopes_reaches_the_exact_maximum():
    """Converged, without a warning of precision or convergence, at a point whose ℓ is
    the exact ℓ there and no better point nearby (Powell on the exact ℓ from the fit's
    point: within 1e-4, ℓ's ridge along the slope's variance, where the optimizer's
    gradient test is met 3e-5 below its top, as for the exact rank-one forms of the same
    rows with δ = 0).  (The Hessian's warning is the data's: intercept and slope are both
    constants of a group but for δ, their correlation 0.998; the rank-one forms of the
    same rows with δ = 0 give it too.)"""
    y, exog, g, z = near_constant(delta=1e-6)
    model = _model(y, exog, g, z)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", SingularHessianWarning)
        res = model.fit(method="lbfgs")
    assert res.converged
    psi = np.asarray(res.cov_re) / res.scale
    start = np.linalg.cholesky(psi)[np.tril_indices(2)]
    assert res.llf == pytest.approx(mp_llf(y, exog, g, z, _lmat(start)), abs=1e-7)
    top = optimize.minimize(
        lambda x: -mp_llf(y, exog, g, z, _lmat(x)),
        start,
        method="Powell",
        options={"xtol": 1e-6, "ftol": 1e-12, "maxfev": 200},
    )
    assert -top.fun - 1e-4 <= res.llf


@pytest.mark.parametrize("order", ["slope-first", "scaled"])
def test_score_where_the_intercept_is_not_column_0_of_ones(order):
    (y, exog, g, zbar, w), model = intercept_elsewhere(order)
    packed = POINTS[1]
    want = central_gradient(lambda x: _exact_llf(y, exog, g, zbar, w, _psi(x, 2)), packed, 1e-5)
    np.testing.assert_allclose(model.score(packed), want, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize(("maxiter", "gap"), [(27, 9.0e-4), (28, 3.0e-5)])
def test_lbfgs_cut_short_at_near_constant_slopes_is_judged_on_the_face(maxiter, gap):
    """``maxiter`` ends L-BFGS near the top, which is on the boundary of the cone (Ψ*'s
    eigenvalues 71 and 5.5e7 at 28 iterations, the slope's effect a multiple of the
    intercept's at the top): the final Newton step promises 4.4 from a Hessian that is
    not negative definite, and every point of it is outside the cone.  Judged on the
    face of Ψ* with that eigenvalue at zero, the promise is the real gap: 9.2e-4 at 27
    iterations (8.96e-4 below the default fit) and 3.0e-5 at 28 (the steps on that face
    reach 3.0e-5 above the default fit's point, which is the same point), both not
    converged (not 4.5 and 4.4, and not converged for want of a point to check)."""
    y, exog, g, z = near_constant(delta=1e-6)
    model = _model(y, exog, g, z)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = model.fit(method="lbfgs", maxiter=maxiter)
    assert not res.converged
    assert any("promises llf a rise" in str(w.message) for w in caught)
    assert res.optimizer.final_rise == pytest.approx(gap, rel=0.1)


def test_one_varying_group_among_constant_ones():
    """One group's slope varies, the others' are constant: every group stays exact."""
    y, exog, g, z = near_constant(odd=4, seed=3)
    model = _model(y, exog, g, z)
    for packed in POINTS:
        want = mp_llf(y, exog, g, z, _lmat(packed))
        assert model.loglike(packed) == pytest.approx(want, abs=1e-7)


def test_loglike_is_the_same_whatever_the_row_order_and_the_chunks(monkeypatch):
    y, exog, g, z = near_constant(delta=1e-6)
    whole = _model(y, exog, g, z)
    order = np.random.default_rng(5).permutation(y.size)
    shuffled = _model(y[order], exog[order], g[order], z[order])
    monkeypatch.setattr(kernel_groups, "GROUP_CHUNK", 7)  # several chunks of groups
    chunked = _model(y, exog, g, z)
    for packed in POINTS:
        want = whole.loglike(packed)
        assert shuffled.loglike(packed) == pytest.approx(want, abs=1e-9)
        assert chunked.loglike(packed) == pytest.approx(want, abs=1e-9)
        np.testing.assert_allclose(chunked.score(packed), whole.score(packed), rtol=1e-9)


def test_random_effects_of_near_constant_slopes():
    """BLUPs ``Ψ̂* Z_i'V*_i⁻¹(y_i − X_iβ̂)`` in 40 digits."""
    y, exog, g, z = near_constant(delta=1e-6, n_groups=12)
    res = _model(y, exog, g, z).fit()
    psi = np.asarray(res.cov_re) / res.scale
    resid = y - exog @ np.asarray(res.fe_params)
    want = np.empty((12, 2))
    with mpmath.workdps(40):
        for grp in range(12):
            rows = g == grp
            zm = mpmath.matrix(z[rows].tolist())
            v = mpmath.eye(int(rows.sum())) + zm * mpmath.matrix(psi.tolist()) * zm.T
            b = mpmath.matrix(psi.tolist()) * zm.T * mpmath.inverse(v)
            b = b * mpmath.matrix(resid[rows].tolist())
            want[grp] = [float(b[0]), float(b[1])]
    got = np.array([np.asarray(res.random_effects[k]) for k in range(12)])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9 * np.abs(want).max())


def test_saved_statistics_of_centred_groups_are_refused():
    y, exog, g, z = near_constant(delta=1e-6)
    stats = _model(y, exog, g, z).statistics()
    with pytest.raises(dmixed.DataError, match=r"\d+ group\(s\).*centre the random-effects"):
        GroupArrays.from_statistics(stats)


def test_merged_statistics_with_lossy_groups_are_refused():
    """Statistics of another origin (saved, merged) holding lossy groups without the
    within-group sums."""
    y, exog, g, z = near_constant(delta=1e-6)
    df = pd.DataFrame({"y": y, "c": exog[:, 1], "x2": exog[:, 2], "g": g})
    spec = build_spec(df, "y ~ c + x2", "g", re_formula="1 + c")
    stats = MixedLM.from_spec(spec, df).statistics()
    zz, zxy = stats.engine.gather()
    arrays = GroupArrays(
        np.asarray(stats.group_labels),
        np.asarray(stats.group_sizes),
        zz,
        zxy,
        [],
        stats.glob.__class__(stats.glob.xyxy, stats.glob.n, stats.glob.sum_log_weights),
        stats.layout,
        stats.standardization,
    )
    with pytest.raises(dmixed.DataError, match=r"\d+ group\(s\) of the saved or merged"):
        statistics_from_arrays(arrays)


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    delta=st.sampled_from([0.0, 1e-7, 1e-5]),
    offset=st.sampled_from([0.0, 1e4, 1e6]),
    slope_first=st.booleans(),
)
def test_loglike_is_exact_for_any_near_constant_design(seed, delta, offset, slope_first):
    """Small designs (8 groups) with slopes ``offset + c_i + δ·N(0, 1)``: ℓ as the
    40-digit reference, the slope column first or second.  (Offsets of 1e9 leave 4e-4
    in ℓ, the rank-one forms with δ = 0 included: the fixed-effects column then shares
    all but about 1e-16 of its direction with the intercept.)"""
    y, exog, g, z = near_constant(seed=seed, n_groups=8, sizes=(1, 6), delta=delta)
    exog = exog.copy()
    exog[:, 1] += offset
    z = exog[:, :2].copy()
    if slope_first:
        z = z[:, ::-1].copy()
    model = _model(y, exog, g, z)
    packed = np.array([3000.0, 20.0, 5.0])
    lmat = _lmat(packed)
    assert model.loglike(packed) == pytest.approx(mp_llf(y, exog, g, z, lmat), abs=1e-6)


@pytest.mark.parametrize("reml", [True, False])
def test_weighted_loglike_with_the_slope_column_first(reml):
    """Prior weights: the groups are centred about their weighted means (rows scaled by
    ``√w``), ℓ as the weighted within/between form."""
    y, exog, g, zbar, w = _design(weights=True, seed=31)
    model = dmixed.MixedLM(y, exog, g, exog_re=exog[:, 1::-1].copy(), weights=w)
    model.reml = reml
    assert model.statistics().engine.block.centred_groups > 0
    for packed in POINTS:
        want = _exact_llf(y, exog, g, zbar[:, ::-1], w, _psi(packed, 2), reml)
        assert model.loglike(packed) == pytest.approx(want, abs=1e-7)
