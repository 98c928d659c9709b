"""Newton steps with the variances on the log scale."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import dmixed
from dmixed.fit.newton_coords import MAX_LOG_STEP, log_entries, newton_step
from dmixed.fit.optimize import modified_newton_step
from dmixed.stats import Layout

LAYOUT = Layout(k_re=1, vc_widths=(3, 2))  # θ = [ψ, τ1, τ2]


def _ell(theta):
    """A smooth test function of θ, with the −a log ψ − b/ψ shape in each variance."""
    psi, t1, t2 = theta
    return (
        -2.0 * np.log(psi)
        - 0.3 / psi
        - np.log(t1)
        - 0.7 / t1
        - 3.0 * np.log(t2)
        - 0.2 / t2
        + 0.5 * psi * t1
        - 0.2 * t1 * t2
    )


def _grad_hess(fun, x, h=1e-4):
    """Central differences: gradient and Hessian of ``fun`` at ``x``."""
    k = x.size
    eye = np.eye(k) * h
    grad = np.array([(fun(x + e) - fun(x - e)) / (2 * h) for e in eye])
    hess = np.empty((k, k))
    for i in range(k):
        for j in range(k):
            a, b = eye[i], eye[j]
            hess[i, j] = (fun(x + a + b) - fun(x + a - b) - fun(x - a + b) + fun(x - a - b)) / (
                4 * h * h
            )
    return grad, hess


def test_the_log_coordinates_gradient_and_hessian_are_the_chain_rule():
    """g_v and H_v handed to the direction are those of ℓ(θ(v)) by finite differences."""
    theta = np.array([0.4, 1.3, 0.5])
    grad, hess = _grad_hess(_ell, theta)
    seen = {}

    def direction(h_v, g_v):
        seen.update(h=h_v, g=g_v)
        return modified_newton_step(h_v, g_v)

    step = newton_step(LAYOUT, np.ones(3, dtype=bool), theta, grad, hess, direction)
    assert step is not None and step.log.all()
    g_v, h_v = _grad_hess(lambda v: _ell(np.exp(v)), np.log(theta))
    np.testing.assert_allclose(seen["g"], g_v, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(seen["h"], h_v, rtol=1e-5, atol=1e-6)
    assert step.rise == pytest.approx(0.5 * float(seen["g"] @ step.delta))
    np.testing.assert_allclose(step.point(1.0), theta * np.exp(step.delta))


def test_which_entries_are_on_the_log_scale():
    """τ* always, Ψ* when 1 × 1; a random slope's Ψ* stays plain."""
    assert log_entries(LAYOUT).tolist() == [True, True, True]
    assert log_entries(Layout(k_re=2, vc_widths=(4,))).tolist() == [False] * 3 + [True]
    theta = np.array([0.4, 0.02, 1.3, 0.5])
    grad, hess = np.array([1.0, -0.5, 0.2, 0.3]), -np.eye(4)
    step = newton_step(Layout(2, (4,)), np.ones(4, bool), theta, grad, hess, modified_newton_step)
    np.testing.assert_allclose(step.delta[:3], grad[:3])  # plain: −H⁻¹g
    assert step.log.tolist() == [False, False, False, True]


def test_a_variance_at_zero_or_held_steps_plainly():
    theta = np.array([0.4, 0.0, 1.3])
    grad, hess = _grad_hess(lambda t: -((t - 0.3) ** 2).sum(), theta)
    step = newton_step(LAYOUT, np.ones(3, bool), theta, grad, hess, modified_newton_step)
    assert step.log.tolist() == [True, False, True]
    held = np.array([False, True, True])
    sub = np.ix_(held, held)
    step = newton_step(LAYOUT, held, theta, grad[held], hess[sub], modified_newton_step)
    assert step.log.tolist() == [False, True]
    np.testing.assert_array_equal(step.point(0.0), theta[held])


def test_newton_in_log_psi_converges_where_plain_newton_crawls():
    """On −a log ψ − b/ψ from a third of the maximum: plain Newton advances by a fixed
    share of the distance, the log step reaches the maximum to 1e-10 in five."""
    a, b = 40.0, 12.0  # maximum at ψ = b/a = 0.3
    layout = Layout(k_re=1, vc_widths=())

    def derivs(psi):
        return np.array([-a / psi + b / psi**2]), np.array([[a / psi**2 - 2 * b / psi**3]])

    psi = 0.1
    for _ in range(5):
        grad, hess = derivs(psi)
        step = newton_step(
            layout, np.ones(1, bool), np.array([psi]), grad, hess, modified_newton_step
        )
        psi = float(step.point(1.0)[0])
    assert psi == pytest.approx(b / a, rel=1e-10)
    plain = 0.1
    for _ in range(5):
        grad, hess = derivs(plain)
        plain -= float(grad[0] / hess[0, 0])
    assert abs(plain - b / a) > 1e-4


def test_a_long_log_step_is_shortened_as_a_whole():
    """ψ rising where ℓ is nearly flat in log ψ (H_v = −0.001): a step of 1,000 in log ψ
    is cut to :data:`MAX_LOG_STEP`, the direction kept."""
    theta = np.array([1.0, 1.0, 1.0])
    grad = np.array([1.0, 0.5, 0.0])
    hess = -np.diag([1.001, 2.0, 1.0])
    step = newton_step(LAYOUT, np.ones(3, bool), theta, grad, hess, modified_newton_step)
    full = modified_newton_step(hess + np.diag(grad), grad)
    assert full[0] > 100 * MAX_LOG_STEP
    assert np.max(np.abs(step.delta)) == pytest.approx(MAX_LOG_STEP)
    np.testing.assert_allclose(step.delta, full * (MAX_LOG_STEP / full[0]))
    assert step.point(1.0)[0] == pytest.approx(100.0)


def _few_large_groups(groups: int, levels: int, seed: int = 0) -> pd.DataFrame:
    """``groups`` groups of ``levels`` levels of a component, 3 rows each."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), levels * 3)
    lev = np.tile(np.repeat(np.arange(levels), 3), groups)
    x = rng.standard_normal(g.size)
    y = (
        0.5 * x
        + rng.standard_normal(groups)[g]
        + 0.7 * rng.standard_normal(groups * levels)[g * levels + lev]
        + rng.standard_normal(g.size)
    )
    return pd.DataFrame({"y": y, "x": x, "g": g, "level": lev})


def test_few_large_groups_converge_by_newton_and_agree_with_bfgs():
    """Two groups of 6,000 rows: the profile in the variances is −a log ψ − b/ψ-shaped
    and the moment start is below the maximum.  The fit takes exact Newton steps all the
    way (before, they crawled and BFGS took over), in no more evaluations than the model
    without the component, and reaches what BFGS run to its end reaches: parameters to
    1e-8 of their scale, ℓ to 1e-10."""
    df = _few_large_groups(2, 2000)
    kw = dict(groups="g", re_formula="1")
    model = dmixed.MixedLM.from_formula("y ~ x", data=df, vc_formula={"c": "0 + C(level)"}, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        newton = model.fit(reml=True)
        bfgs = model.fit(reml=True, method="bfgs")
        plain = dmixed.MixedLM.from_formula("y ~ x", data=df, **kw).fit(reml=True)
    assert newton.optimizer_methods == ["newton"]
    assert newton.converged and bfgs.converged
    assert newton.n_evals <= plain.n_evals
    assert newton.llf == pytest.approx(bfgs.llf, rel=1e-10)
    for name in ("fe_params", "cov_re", "vcomp", "scale"):
        want = np.asarray(getattr(bfgs, name))
        np.testing.assert_allclose(
            getattr(newton, name), want, rtol=1e-8, atol=1e-8 * np.max(np.abs(want), initial=1.0)
        )
