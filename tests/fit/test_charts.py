"""The charts of the Newton steps outside the polish's coordinates: the face of a singular
Ψ* and the packed coordinates, their derivatives against finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from dmixed.fit.charts import (
    Face,
    chain_curvature,
    cone_rise,
    plain_chart,
    scaled_newton,
    sqrt_chart,
)
from dmixed.fit.newton_rules import modified_newton_step
from dmixed.stats import Layout


def _singular_psi(q: int, rank: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(q, rank)) * np.geomspace(10.0, 1.0, rank)
    return m @ m.T


def _check_derivatives(point, chart, p: int, h: float = 1e-5) -> None:
    """``chart``'s first and second derivatives of ``point`` (φ ↦ (Ψ*, τ*)) at 0 against
    central differences (``point`` is a polynomial of degree at most 3 in φ)."""
    size = max(1.0, float(np.abs(chart.psi2).max()), float(np.abs(chart.psi1).max()))
    for a in range(p):
        e = np.zeros(p)
        e[a] = h
        for part, first in ((0, chart.psi1), (1, chart.tau1)):
            diff = (point(e)[part] - point(-e)[part]) / (2 * h)
            np.testing.assert_allclose(diff, first[a], atol=1e-7 * size)
        for b in range(p):
            f = np.zeros(p)
            f[b] = h
            for part, second in ((0, chart.psi2), (1, chart.tau2)):
                diff = (
                    point(e + f)[part]
                    - point(e - f)[part]
                    - point(f - e)[part]
                    + point(-e - f)[part]
                ) / (4 * h * h)
                np.testing.assert_allclose(diff, second[a, b], atol=1e-4 * size)


@pytest.mark.parametrize(("q", "rank"), [(3, 2), (4, 2), (2, 1)])
def test_the_face_charts_derivatives_are_its_points(q, rank):
    psi = _singular_psi(q, rank, seed=q + rank)
    face = Face.of(psi + 1e-9 * np.eye(q), np.array([0.7, 1.3]), q - rank)
    chart = face.chart()
    p = rank * (rank + 1) // 2 + (q - rank) * rank + 2
    assert chart.psi1.shape == (p, q, q)
    np.testing.assert_allclose(face.point(np.zeros(p))[0], face.base, atol=1e-12)
    # the base is Ψ* with its smallest eigenvalues set to zero, of the rank asked for
    assert np.linalg.matrix_rank(face.base, tol=1e-8) == rank
    _check_derivatives(face.point, chart, p)


@pytest.mark.parametrize(("q", "widths"), [(2, ()), (3, (2, 1))])
def test_the_square_root_charts_derivatives_are_its_points(q, widths):
    layout = Layout(q, widths)
    rng = np.random.default_rng(5)
    packed = rng.normal(size=layout.n_params)

    def point(step):
        return layout.unpack(packed + step, use_sqrt=True)

    _check_derivatives(point, sqrt_chart(layout, packed), layout.n_params)


def _quadratic(layout: Layout, seed: int):
    """ℓ(θ) = g'θ + θ'Hθ/2 with H negative definite: its (D, ∂ℓ/∂τ*, H) at θ."""
    rng = np.random.default_rng(seed)
    m = layout.n_params
    g = rng.normal(size=m)
    a = rng.normal(size=(m, m))
    hess = -(a @ a.T) - np.eye(m)

    def value(theta):
        return float(g @ theta + 0.5 * theta @ hess @ theta)

    def parts(theta):
        grad = g + hess @ theta
        rows, cols = layout.tril()
        d_psi = np.zeros((layout.k_re, layout.k_re))
        half = np.where(rows == cols, 1.0, 0.5) * grad[: layout.k_re2]
        d_psi[rows, cols] = half
        d_psi[cols, rows] = half
        return d_psi, grad[layout.k_re2 :]

    return value, parts, hess


@pytest.mark.parametrize("use_sqrt", [False, True])
def test_chain_curvature_is_the_gradient_and_hessian_in_the_packing(use_sqrt):
    """ℓ quadratic in θ, seen through the packing: the chain rule's gradient is the
    layout's packed score, and both match central differences of ℓ(θ(packed))."""
    layout = Layout(2, (1,))
    value, parts, hess = _quadratic(layout, seed=2)
    packed = np.array([1.2, 0.4, 0.9, 0.8])
    chart = sqrt_chart(layout, packed) if use_sqrt else plain_chart(layout)

    def ell(x):
        return value(layout.pack(*layout.unpack(x, use_sqrt), use_sqrt=False))

    theta = layout.pack(*layout.unpack(packed, use_sqrt), use_sqrt=False)
    d_psi, d_tau = parts(theta)
    grad, curvature = chain_curvature(layout, chart, d_psi, d_tau, hess)
    np.testing.assert_allclose(grad, layout.score_packed(d_psi, d_tau, packed, use_sqrt))
    h = 1e-4
    eye = np.eye(layout.n_params) * h
    fd_grad = [(ell(packed + e) - ell(packed - e)) / (2 * h) for e in eye]
    np.testing.assert_allclose(grad, fd_grad, rtol=1e-6, atol=1e-8)
    fd_hess = [
        [
            (ell(packed + e + f) - ell(packed + e - f) - ell(packed - e + f) + ell(packed - e - f))
            / (4 * h * h)
            for f in eye
        ]
        for e in eye
    ]
    np.testing.assert_allclose(curvature, fd_hess, rtol=1e-5, atol=1e-5)


def test_scaled_newton_is_newton_whatever_the_units():
    """A concave quadratic in coordinates whose units span 1e-14 to 1e14: the step is
    −H⁻¹g and its promise the Newton decrement; the unscaled modified step (its floor a
    share of the largest curvature) loses the small ones."""
    rng = np.random.default_rng(7)
    a = rng.normal(size=(4, 4))
    hess0 = -(a @ a.T) - np.eye(4)
    grad0 = rng.normal(size=4)
    units = np.array([1e-14, 1.0, 1e7, 1e14])
    hess = hess0 / np.outer(units, units)
    grad = grad0 / units
    out = scaled_newton(hess, grad)
    assert out is not None
    delta, rise = out
    exact = np.linalg.solve(-hess0, grad0)
    np.testing.assert_allclose(delta / units, exact, rtol=1e-8)
    np.testing.assert_allclose(rise, 0.5 * grad0 @ exact, rtol=1e-10)
    plain = modified_newton_step(hess, grad)
    assert plain is None or not np.allclose(plain / units, exact, rtol=1e-3)


def test_cone_rise_is_zero_where_l_falls_into_the_cone():
    """At a singular Ψ* (null space e₃): no rise where ∂ℓ/∂Ψ*₃₃ < 0; where it is μ > 0,
    the rise a Newton step along ``t e₃e₃'`` promises, μ²/(2|c|)."""
    layout = Layout(3, ())
    null = np.array([[0.0], [0.0], [1.0]])
    hess = -np.eye(layout.n_params) * 4.0
    d_psi = np.diag([0.1, -0.2, -3.0])
    assert cone_rise(layout, null, d_psi, hess) == 0.0
    d_psi[2, 2] = 2.0
    assert cone_rise(layout, null, d_psi, hess) == pytest.approx(2.0**2 / (2 * 4.0))
    assert cone_rise(layout, null, d_psi, np.zeros_like(hess)) == np.inf
