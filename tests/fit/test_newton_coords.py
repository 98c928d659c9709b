"""Newton steps with the variances on the log scale."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dmixed
from dmixed.fit import newton_coords
from dmixed.fit.newton_coords import (
    MAX_LOG_STEP,
    SHIFT_SHARE,
    SMALL_STEP_MAX,
    log_entries,
    log_shift,
    newton_step,
)
from dmixed.fit.newton_rules import modified_newton_step
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


def _recorded_direction():
    """``(seen, direction)``: :func:`modified_newton_step` as the step's ``direction``,
    recording in ``seen`` the ``h`` and ``g`` (H_v, g_v) it is handed."""
    seen = {}

    def direction(h_v, g_v):
        seen.update(h=h_v, g=g_v)
        return modified_newton_step(h_v, g_v)

    return seen, direction


def test_the_log_coordinates_gradient_and_hessian_are_the_chain_rule():
    """g_v and H_v handed to the direction are those of ℓ(θ(v)) by finite differences."""
    theta = np.array([0.4, 1.3, 0.5])
    grad, hess = _grad_hess(_ell, theta)
    seen, direction = _recorded_direction()
    step = newton_step(LAYOUT, np.ones(3, dtype=bool), theta, grad, hess, direction)
    assert step is not None and step.log.all()
    g_v, h_v = _grad_hess(lambda v: _ell(np.exp(v)), np.log(theta))
    np.testing.assert_allclose(seen["g"], g_v, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(seen["h"], h_v, rtol=1e-5, atol=1e-6)
    assert step.rise == pytest.approx(0.5 * float(seen["g"] @ step.delta))
    np.testing.assert_allclose(step.point(1.0), theta * np.exp(step.delta))


def test_which_entries_are_on_the_log_scale():
    """τ* and the diagonal of Ψ*; a wider Ψ* whose variances are positive is one block
    in modified Cholesky coordinates (its covariances the L entries)."""
    assert log_entries(LAYOUT).tolist() == [True, True, True]
    assert log_entries(Layout(k_re=2, vc_widths=(4,))).tolist() == [True, False, True, True]
    theta = np.array([0.4, 0.02, 1.3, 0.5])
    grad, hess = np.array([1.0, -0.5, 0.2, 0.3]), -np.eye(4)
    step = newton_step(Layout(2, (4,)), np.ones(4, bool), theta, grad, hess, modified_newton_step)
    assert step.log.tolist() == [True, False, True, True]
    assert step.block.tolist() == [[0, 1], [1, 2]]
    theta[2] = 0.0  # a variance at zero: no block, its covariance plain
    step = newton_step(Layout(2, (4,)), np.ones(4, bool), theta, grad, hess, modified_newton_step)
    assert step.log.tolist() == [True, False, False, True] and step.block.size == 0


def test_the_layout_s_entries_are_made_once_and_read_only():
    """Every Newton step of a fit asks for the log-scale entries: made once per layout,
    read-only, the same values as made afresh."""
    layout = Layout(k_re=2, vc_widths=(4,))
    first = log_entries(layout)
    assert log_entries(Layout(k_re=2, vc_widths=(4,))) is first
    assert not first.flags.writeable
    assert first.tolist() == [True, False, True, True]
    assert log_entries(layout, False).tolist() == [False, False, False, True]


LAYOUT_2 = Layout(k_re=2, vc_widths=(3,))  # θ = [ψ11, ψ21, ψ22, τ]


def _ell_2(theta):
    """A smooth concave-ish test function of θ = [ψ11, ψ21, ψ22, τ]."""
    p11, p21, p22, t = theta
    return (
        -2.0 * np.log(p11 + 0.1)
        - 0.3 / (p11 + 0.1)
        - np.log(p22)
        - 0.4 / p22
        - 3.0 * (p21 - 0.1) ** 2
        + 0.5 * p21 * t
        - np.log(t + 0.2)
        - 0.7 / (t + 0.2)
        + 0.2 * p11 * p22
    )


def _theta_of_v(v, shift, s2):
    """θ from v = [log d1, L21, log(d2 + s2), log(τ + c4)] with
    Ψ* + diag(c1, c3) = L diag(d) L' (L unit lower triangular)."""
    d1, l21, d2 = np.exp(v[0]), v[1], np.exp(v[2]) - s2
    return np.array([d1 - shift[0], l21 * d1, l21**2 * d1 + d2 - shift[2], np.exp(v[3]) - shift[3]])


def test_shifted_log_and_modified_cholesky_coordinates_are_the_chain_rule():
    """With shifts and the 2 × 2 block, g_v and H_v handed to the direction are those of
    ℓ(θ(v)) by finite differences, and the step's point is θ(v + fδ); a step that
    takes a shifted variance below zero leaves it there (the line search shortens it).
    The conditional variance d2 is shifted by half of what the first effect explains of
    the second's variance, ``L21² d1``."""
    theta = np.array([0.4, 0.1, 0.9, 0.5])
    shift = np.array([0.1, 7.0, 0.05, 0.3])  # 7.0: a covariance's shift is not read
    grad, hess = _grad_hess(_ell_2, theta)
    seen, direction = _recorded_direction()
    step = newton_step(LAYOUT_2, np.ones(4, bool), theta, grad, hess, direction, shift)
    assert step.log.tolist() == [True, False, True, True] and step.block.size == 4
    d1 = theta[0] + 0.1
    l21 = theta[1] / d1
    d2 = theta[2] + 0.05 - l21**2 * d1
    s2 = SHIFT_SHARE * l21**2 * d1
    v = np.array([np.log(d1), l21, np.log(d2 + s2), np.log(theta[3] + 0.3)])
    np.testing.assert_allclose(_theta_of_v(v, shift, s2), theta, rtol=1e-14)
    g_v, h_v = _grad_hess(lambda u: _ell_2(_theta_of_v(u, shift, s2)), v)
    np.testing.assert_allclose(seen["g"], g_v, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(seen["h"], h_v, rtol=1e-5, atol=1e-6)
    for fraction in (0.1, 0.02):
        np.testing.assert_allclose(
            step.point(fraction), _theta_of_v(v + fraction * step.delta, shift, s2), rtol=1e-13
        )
    assert step.point(1.0)[0] < 0.0


def test_a_block_not_positive_definite_steps_its_entries_plainly():
    """Ψ* + C with positive variances but not positive definite (|ψ21| > √(ψ11 ψ22)):
    no modified Cholesky block; its variances on the shifted log scale and its
    covariance plain, as where the block has fewer than two effects."""
    theta = np.array([0.4, 0.9, 0.5, 0.3])
    shift = np.array([0.1, 7.0, 0.05, 0.2])
    grad, hess = np.array([1.0, -0.5, 0.2, 0.3]), -np.eye(4)
    seen, direction = _recorded_direction()
    step = newton_step(LAYOUT_2, np.ones(4, bool), theta, grad, hess, direction, shift)
    assert step.block.size == 0 and step.log.tolist() == [True, False, True, True]
    jac = np.where(step.log, theta + step.shift, 1.0)
    np.testing.assert_array_equal(seen["g"], jac * grad)
    np.testing.assert_allclose(
        seen["h"], -np.diag(jac**2) + np.diag(np.where(step.log, jac * grad, 0.0))
    )
    np.testing.assert_allclose(step.point(0.5)[1], theta[1] + 0.5 * step.delta[1])


def _block_theta(v, layout, shift, s):
    """θ from v (θ's order): ``log(d_j + s_j)`` at the variances, ``L_ab`` at the
    covariances, ``log(τ + c)`` at the components, with Ψ* + C = L diag(d) L'."""
    rows, cols = layout.tril()
    lmat = np.eye(layout.k_re)
    off = rows != cols
    lmat[rows[off], cols[off]] = v[: layout.k_re2][off]
    c = np.diag(shift[: layout.k_re2][~off])
    psi = (lmat * (np.exp(v[: layout.k_re2][~off]) - s)) @ lmat.T - c
    return np.append(psi[rows, cols], np.exp(v[layout.k_re2 :]) - shift[layout.k_re2 :])


def _block_v(theta, layout, shift):
    """The inverse of :func:`_block_theta` and its ``s``: half of what the effects
    before each explain of its (shifted) variance."""
    rows, cols = layout.tril()
    psi = np.zeros((layout.k_re, layout.k_re))
    psi[rows, cols] = psi[cols, rows] = theta[: layout.k_re2]
    diag = rows == cols
    shifted = psi + np.diag(shift[: layout.k_re2][diag])
    chol = np.linalg.cholesky(shifted)
    lmat, d = chol / np.diagonal(chol), np.diagonal(chol) ** 2
    s = SHIFT_SHARE * (np.diagonal(shifted) - d)
    v = np.where(diag, np.log(d + s)[rows], lmat[rows, cols])
    return np.append(v, np.log(theta[layout.k_re2 :] + shift[layout.k_re2 :])), s


@pytest.mark.parametrize("small", [False, True])
def test_a_wider_block_is_the_chain_rule(small, monkeypatch):
    """A 3 × 3 Ψ* beside a component, shifted: g_v and H_v are those of ℓ(θ(v)) by
    finite differences (the second derivatives of L D L' in every pair of its
    coordinates), and the step's point is θ(v + fδ); in numpy and in Python floats."""
    monkeypatch.setattr(newton_coords, "SMALL_STEP_MAX", 7 if small else 0)
    layout = Layout(k_re=3, vc_widths=(2,))
    rng = np.random.default_rng(1)
    root = rng.standard_normal((3, 3))
    psi = root @ root.T + 0.5 * np.eye(3)
    rows, cols = layout.tril()
    theta = np.append(psi[rows, cols], 0.7)
    quad = rng.standard_normal((7, 7))
    quad = 0.1 * quad @ quad.T
    lin = rng.standard_normal(7)

    def ell(t):
        return float(lin @ t - 0.5 * t @ quad @ t + np.sin(t).sum())

    grad, hess = _grad_hess(ell, theta)
    shift = np.array([0.1, 9.0, 0.3, 9.0, 9.0, 0.05, 0.2])  # 9.0: covariances, not read
    seen, direction = _recorded_direction()
    step = newton_step(layout, np.ones(7, bool), theta, grad, hess, direction, shift)
    assert step.block.tolist() == [[0, 1, 3], [1, 2, 4], [3, 4, 5]]
    c = np.where(log_entries(layout), shift, 0.0)
    v, s = _block_v(theta, layout, c)
    assert s[0] == 0.0 and s[1:].min() > 0.0
    np.testing.assert_allclose(_block_theta(v, layout, c, s), theta, rtol=1e-13)
    g_v, h_v = _grad_hess(lambda u: ell(_block_theta(u, layout, c, s)), v)
    np.testing.assert_allclose(seen["g"], g_v, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(seen["h"], h_v, rtol=1e-5, atol=1e-5)
    for fraction in (0.3, 0.02):
        np.testing.assert_allclose(
            step.point(fraction), _block_theta(v + fraction * step.delta, layout, c, s), rtol=1e-12
        )


def test_the_shift_is_where_the_log_determinant_is_a_log():
    """For Σ log(c_i + ψ), whose derivative is Σ 1/(c_i + ψ) and minus its second
    derivative Σ 1/(c_i + ψ)², the shift is (its share of) c where the c_i are equal, a
    weighted mean of them otherwise, and never negative."""
    psi, c = 0.02, np.array([0.3, 0.3, 0.3])
    x = c + psi
    shift = log_shift(np.array([psi]), np.array([np.sum(1 / x)]), np.array([np.sum(1 / x**2)]))
    assert shift[0] == pytest.approx(SHIFT_SHARE * 0.3, rel=1e-14)
    c = np.array([0.1, 0.5, 2.0])
    x = c + psi
    shift = log_shift(np.array([psi]), np.array([np.sum(1 / x)]), np.array([np.sum(1 / x**2)]))
    assert c.min() < shift[0] / SHIFT_SHARE < c.max()
    assert log_shift(np.array([1.0, 0.5]), np.array([0.5, 1.0]), np.array([1.0, 0.0])).tolist() == [
        0.0,
        0.0,
    ]


def test_newton_in_the_shifted_log_converges_where_log_psi_does_not():
    """On −a log(c + ψ) − b/(c + ψ) (a variance small next to c): from a fiftieth of
    the maximum the steps in log(ψ + c) reach it to 1e-10 in four; in log ψ they are
    still 5% short after four."""
    a, b, c = 40.0, 12.0, 0.25  # maximum at ψ = b/a − c = 0.05
    layout = Layout(k_re=1, vc_widths=())

    def newton(psi, shift, steps):
        for _ in range(steps):
            x = c + psi
            grad, hess = np.array([-a / x + b / x**2]), np.array([[a / x**2 - 2 * b / x**3]])
            step = newton_step(
                layout, np.ones(1, bool), np.array([psi]), grad, hess, modified_newton_step, shift
            )
            psi = float(step.point(1.0)[0])
        return psi

    best = b / a - c
    assert newton(0.001, np.array([c]), 4) == pytest.approx(best, rel=1e-10)
    assert abs(newton(0.001, np.zeros(1), 4) - best) > 0.05 * best


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


def _nested(
    groups: int,
    levels: int,
    rows: int = 3,
    sd_group: float = 1.0,
    sd_level: float = 0.7,
    seed: int = 0,
) -> pd.DataFrame:
    """``groups`` groups of ``levels`` levels of a component, ``rows`` rows each."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), levels * rows)
    lev = np.tile(np.repeat(np.arange(levels), rows), groups)
    x = rng.standard_normal(g.size)
    y = (
        0.5 * x
        + sd_group * rng.standard_normal(groups)[g]
        + sd_level * rng.standard_normal(groups * levels)[g * levels + lev]
        + rng.standard_normal(g.size)
    )
    return pd.DataFrame({"y": y, "x": x, "g": g, "level": lev})


def _sloped(groups: int, levels: int, rows: int, seed: int) -> pd.DataFrame:
    """:func:`_nested` with ``x`` the row's position in its level (centred) and a random
    slope on it (sd 0.03 beside an intercept sd of 0.4, correlation 0.3), the levels'
    sd 1.4."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), levels * rows)
    lev = np.tile(np.repeat(np.arange(levels), rows), groups)
    x = np.tile(np.arange(rows, dtype=float), groups * levels) - (rows - 1) / 2
    cov = np.array([[0.16, 0.0036], [0.0036, 0.0009]])
    b = rng.multivariate_normal([0.0, 0.0], cov, size=groups)
    y = (
        0.5 * x
        + b[g, 0]
        + b[g, 1] * x
        + 1.4 * rng.standard_normal(groups * levels)[g * levels + lev]
        + rng.standard_normal(g.size)
    )
    return pd.DataFrame({"y": y, "x": x, "g": g, "level": lev})


def _newton_like_bfgs(model):
    """The default fit of ``model``, checked: exact Newton steps all the way, and what
    BFGS run to its end reaches (parameters to 1e-8 of their scale, ℓ to 1e-10)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        newton = model.fit(reml=True)
        bfgs = model.fit(reml=True, method="bfgs")
    assert newton.optimizer_methods == ["newton"]
    assert newton.converged and bfgs.converged
    assert newton.llf == pytest.approx(bfgs.llf, rel=1e-10)
    for name in ("fe_params", "cov_re", "vcomp", "scale"):
        want = np.asarray(getattr(bfgs, name))
        np.testing.assert_allclose(
            getattr(newton, name), want, rtol=1e-8, atol=1e-8 * np.max(np.abs(want), initial=1.0)
        )
    return newton


def _plain_evals(df: pd.DataFrame, **kw) -> int:
    """Evaluations of the fit of ``y ~ x`` without the component."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dmixed.MixedLM.from_formula("y ~ x", data=df, **kw).fit(reml=True).n_evals


def test_few_large_groups_converge_by_newton_and_agree_with_bfgs():
    """Two groups of 6,000 rows: the profile in the variances is −a log ψ − b/ψ-shaped
    and the moment start is below the maximum.  The fit takes exact Newton steps all the
    way (before, they crawled and BFGS took over), in no more evaluations than the model
    without the component, and reaches what BFGS run to its end reaches."""
    df = _nested(2, 2000)
    kw = dict(groups="g", re_formula="1")
    model = dmixed.MixedLM.from_formula("y ~ x", data=df, vc_formula={"c": "0 + C(level)"}, **kw)
    assert _newton_like_bfgs(model).n_evals <= _plain_evals(df, **kw)


def test_a_group_variance_small_next_to_its_error_converges_as_without_the_component():
    """60 groups of 100 rows whose variance (0.02 of σ²) is small next to what each
    group's mean says about it (1/n_i and the levels' variance).  In log ψ, 5
    evaluations (4 without the component); in log(ψ + c), 4."""
    df = _nested(60, 10, rows=10, sd_group=0.05, sd_level=0.5, seed=0)
    kw = dict(groups="g", re_formula="1")
    model = dmixed.MixedLM.from_formula("y ~ x", data=df, vc_formula={"c": "0 + C(level)"}, **kw)
    newton = _newton_like_bfgs(model)
    assert newton.n_evals <= _plain_evals(df, **kw) == 4


def test_a_random_slope_beside_a_component_converges_in_four():
    """A random intercept and slope (the slope's variance small next to its error) and a
    nested component, interior optimum: with the slope's variance on the shifted log
    scale and Ψ* + C in modified Cholesky coordinates, four evaluations (five with the
    random effects' Ψ* stepped plainly)."""
    df = _sloped(100, 8, 5, seed=2)
    model = dmixed.MixedLM.from_formula(
        "y ~ x", data=df, groups="g", re_formula="1 + x", vc_formula={"c": "0 + C(level)"}
    )
    newton = _newton_like_bfgs(model)
    cov = np.asarray(newton.cov_re)
    assert abs(cov[0, 1]) < 0.5 * np.sqrt(cov[0, 0] * cov[1, 1])  # interior
    assert newton.n_evals == 4


def _growth(seed: int) -> pd.DataFrame:
    """60 groups of 30 children measured 4 times (``t`` centred): a random intercept and
    slope per group, a child component, and a child slope the model leaves out."""
    rng = np.random.default_rng(seed)
    groups, kids, years = 60, 30, 4
    g = np.repeat(np.arange(groups), kids * years)
    kid = np.repeat(np.arange(groups * kids), years)
    t = np.tile(np.arange(years, dtype=float), groups * kids) - (years - 1) / 2
    b = rng.multivariate_normal([0.0, 0.0], [[0.25, 0.01], [0.01, 0.04]], size=groups)
    y = (
        t
        + b[g, 0]
        + b[g, 1] * t
        + 0.8 * rng.standard_normal(groups * kids)[kid]
        + 0.3 * rng.standard_normal(groups * kids)[kid] * t
        + 0.6 * rng.standard_normal(g.size)
    )
    return pd.DataFrame({"y": y, "t": t, "g": g, "kid": kid % kids})


def test_a_start_off_in_scale_and_covariance_converges_as_one_off_in_scale(monkeypatch):
    """A moment start whose variances are all a factor 1.25 too small (σ² overestimated)
    and whose covariance is 1.8 times the optimum's (as egsingle's): in the modified
    Cholesky coordinates the first Newton step corrects both, and the fit takes the
    evaluations it takes from a start off by the factor alone (5); in shifted
    correlations the covariance lagged behind the variances (6)."""
    import dmixed.fit.start as start

    model = dmixed.MixedLM.from_formula(
        "y ~ t", data=_growth(1), groups="g", re_formula="1 + t", vc_formula={"kid": "0 + C(kid)"}
    )
    best = model.fit(reml=True)
    psi, tau = np.asarray(best.cov_re) / best.scale, np.asarray(best.vcomp) / best.scale
    evals = []
    for covariance in (1.0, 1.8):
        off = psi / 1.25
        off[0, 1] = off[1, 0] = covariance * psi[0, 1] / 1.25
        monkeypatch.setattr(start, "moment_start", lambda *_, s=(off, tau / 1.25): s)
        fit = model.fit(reml=True)
        assert fit.optimizer_methods == ["newton"]
        assert fit.llf == pytest.approx(best.llf, rel=1e-12)
        evals.append(fit.n_evals)
    assert evals == [5, 5]


def _steps_both_ways(monkeypatch, *args):
    """The :func:`newton_step` of ``args`` in Python floats and in numpy, with the
    ``(H_v, g_v)`` each handed to its direction."""
    out = []
    for limit in (SMALL_STEP_MAX, 0):
        monkeypatch.setattr(newton_coords, "SMALL_STEP_MAX", limit)
        seen, direction = _recorded_direction()
        out.append((newton_step(*args[:5], direction, *args[5:]), seen))
    return out


@settings(max_examples=200)
@given(
    shape=st.sampled_from([(1, ()), (1, (2,)), (2, ()), (2, (3,)), (3, ()), (1, (2, 2))]),
    seed=st.integers(0, 2**32 - 1),
    cholesky=st.booleans(),
    at_zero=st.booleans(),
)
def test_the_small_step_in_floats_is_the_numpy_step(shape, seed, cholesky, at_zero):
    """For every layout of at most :data:`SMALL_STEP_MAX` movable entries, the step made
    in Python floats is numpy's (the reference) bit for bit: ``H_v``, ``g_v``, the
    step, its decrement, its coordinates and its points; with a block positive
    definite or not, shifts or none, a variance at zero (plain), and the plain
    coordinates of the polish after a quasi-Newton method (``cholesky=False``)."""
    rng = np.random.default_rng(seed)
    layout = Layout(k_re=shape[0], vc_widths=shape[1])
    m = layout.n_params
    root = rng.standard_normal((layout.k_re, layout.k_re))
    psi = root @ root.T * rng.uniform(0.01, 3.0) + (rng.uniform(-0.5, 0.5)) * np.eye(layout.k_re)
    rows, cols = layout.tril()
    theta = np.append(psi[rows, cols], rng.uniform(0.0, 2.0, layout.k_vc))
    if at_zero:
        theta[rng.integers(m)] = 0.0
    shift = np.where(rng.random(m) < 0.5, 0.0, rng.uniform(0.0, 1.0, m))
    grad = rng.standard_normal(m) * 10.0 ** rng.uniform(-3, 2)
    quad = rng.standard_normal((m, m))
    hess = -(quad @ quad.T) + rng.uniform(-0.5, 0.5) * np.eye(m)
    with pytest.MonkeyPatch.context() as mp:
        (small, seen_small), (ref, seen_ref) = _steps_both_ways(
            mp, layout, np.ones(m, bool), theta, grad, hess, shift, cholesky
        )
    if ref is None:
        assert small is None
        return
    np.testing.assert_array_equal(seen_small["h"], seen_ref["h"])
    np.testing.assert_array_equal(seen_small["g"], seen_ref["g"])
    assert small.rise == ref.rise
    for name in ("theta", "log", "delta", "shift", "block", "origin", "block_shift"):
        np.testing.assert_array_equal(getattr(small, name), getattr(ref, name))
    for fraction in (1.0, 0.25):
        np.testing.assert_array_equal(small.point(fraction), ref.point(fraction))
