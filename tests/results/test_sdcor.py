"""ℓ_ML in lme4's parametrization: its value, gradient and Hessian."""

from __future__ import annotations

import types

import numpy as np
import pytest

import dmixed
from dmixed.design import ModelNames
from dmixed.results.sdcor import SdCorLikelihood, sdcor_names

from .._dense import dense_model_of
from .._synth import make_data


@pytest.fixture(scope="module")
def model():
    df = make_data(n_groups=25, vc_sd=0.6, seed=4, max_size=10)
    return dmixed.MixedLM.from_formula(
        "y ~ 1", df, groups="g", re_formula="1 + x1 + x2", vc_formula={"sub": "0 + C(sub)"}
    )


def test_names_are_lme4s_order(model):
    names, kinds = sdcor_names(ModelNames.from_model(model))
    # Ψ's lower triangle by columns: (0,0) (1,0) (2,0) (1,1) (2,1) (2,2), then the component
    assert names == [f".sig{i:02d}" for i in range(1, 8)] + [".sigma", "Intercept"]
    assert kinds == ["sd", "cor", "cor", "sd", "cor", "sd", "vc", "sigma", "beta"]


def test_value_is_the_dense_likelihood(model):
    sd = SdCorLikelihood(model.likelihood(), ModelNames.from_model(model))
    z = np.array([0.9, 0.3, -0.2, 0.5, 0.1, 0.4, 0.6, 1.1, 0.8])
    pt = sd.evaluate(z, pinned_fe=0, order=0)
    d, rho = z[[0, 3, 5]], np.eye(3)
    rho[1, 0] = rho[0, 1] = z[1]
    rho[2, 0] = rho[0, 2] = z[2]
    rho[2, 1] = rho[1, 2] = z[4]
    psi = rho * np.outer(d, d)
    ref = dense_model_of(model).loglike(z[-1:], psi, [z[6] ** 2], z[7] ** 2, reml=False)
    assert pt.llf == pytest.approx(ref, rel=1e-11)


def test_gradient_and_hessian_are_the_derivatives(model):
    """Central differences of ℓ with β held (one fixed effect, pinned)."""
    sd = SdCorLikelihood(model.likelihood(), ModelNames.from_model(model))
    z = np.array([0.9, 0.3, -0.2, 0.5, 0.1, 0.4, 0.6, 1.1, 0.8])
    pt = sd.evaluate(z, pinned_fe=0)
    h = 1e-5
    grad = np.zeros(z.size)
    hess = np.zeros((z.size, z.size))
    for i in range(z.size):
        e = np.zeros(z.size)
        e[i] = h
        up, down = sd.evaluate(z + e, pinned_fe=0), sd.evaluate(z - e, pinned_fe=0)
        grad[i] = (up.llf - down.llf) / (2 * h)
        hess[i] = (up.grad - down.grad) / (2 * h)
    np.testing.assert_allclose(pt.grad, grad, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(pt.hess, hess, rtol=1e-6, atol=1e-5)
    # the gradient alone (one engine step) is the same gradient
    np.testing.assert_allclose(sd.evaluate(z, pinned_fe=0, order=1).grad, pt.grad, rtol=1e-12)


def test_outside_the_space_is_minus_infinity(model):
    sd = SdCorLikelihood(model.likelihood(), ModelNames.from_model(model))
    z = np.array([0.9, 0.9, -0.9, 0.5, 0.9, 0.4, 0.6, 1.1, 0.8])  # R not PSD
    assert sd.evaluate(z, order=0).llf == -np.inf
    z = np.array([0.9, 1.2, 0.0, 0.5, 0.0, 0.4, 0.6, 1.1, 0.8])  # |ρ| > 1
    assert sd.evaluate(z).llf == -np.inf


@pytest.mark.parametrize(
    ("levels", "expected"),
    [
        (None, [".sig01", ".sig02", ".sig03", ".sig04", ".sig05"]),
        # lme4's star: (1 | sch:id) has more levels than sch's term, so comes first
        ([79, 11106, 5], [".sig02", ".sig03", ".sig04", ".sig01", ".sig05"]),
        # already in decreasing order: kept
        ([100, 50, 50], [".sig01", ".sig02", ".sig03", ".sig04", ".sig05"]),
        # rev(order(nl)): ties reversed with the rest when a sort is needed
        ([10, 10, 20], [".sig03", ".sig04", ".sig05", ".sig02", ".sig01"]),
    ],
)
def test_sig_numbers_follow_lme4s_order_of_terms(levels, expected):
    """``mkReTrms`` sorts the terms by decreasing number of levels (``rev(order(nl))``,
    only when they are not already so); the ``.sig`` numbers follow."""
    names = types.SimpleNamespace(
        exog_names=["Intercept"], exog_re_names=["Intercept", "x1"], vc_names=["a", "b"]
    )
    labels, kinds = sdcor_names(names, levels)
    assert labels[:5] == expected
    assert kinds[:5] == ["sd", "cor", "sd", "vc", "vc"]
    assert labels[5:] == [".sigma", "Intercept"]
