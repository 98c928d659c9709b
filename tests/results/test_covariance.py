"""The covariance of the estimates from the Hessian: statsmodels' inv(−H), and lme4's
conditional σ̂²(X'V⁻¹X)⁻¹ for β where the Hessian says nothing about β."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from dmixed import SingularHessianWarning
from dmixed.results.covariance import covariance_of_estimates

# β = (intercept, slope), θ = one variance: a regular (negative definite) Hessian
REGULAR = np.array([[-1.1, 0.16, 0.3], [0.16, -24.0, 0.5], [0.3, 0.5, -2.0]])
# the single-group REML fit of issue 13: ℓ flat in the variance, coupling at rounding level
SINGULAR = np.array(
    [[-1.1059, 0.16141, -1.5e-14], [0.16141, -24.465, 2.2e-15], [-1.5e-14, 2.2e-15, 0.0]]
)
CONDITIONAL = np.array([[0.9051, 0.006], [0.006, 0.0409]])


def _cov(hessian, cov_fe="hessian", at_zero=(False,)):
    return covariance_of_estimates(
        hessian,
        k=3,
        k_fe=2,
        at_zero=np.array(at_zero),
        conditional=CONDITIONAL,
        cov_fe=cov_fe,
    )


def test_a_regular_hessian_gives_statsmodels_inverse():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cov = _cov(REGULAR)
    np.testing.assert_allclose(cov, np.linalg.inv(-REGULAR), rtol=1e-14)


@pytest.mark.parametrize("scale", [1e-12, 1.0, 1e12])
def test_the_decision_does_not_depend_on_units(scale):
    """θ in other units (H → D H D): still regular, still statsmodels' inverse."""
    d = np.diag([1.0, 1.0, scale])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cov = _cov(d @ REGULAR @ d)
    np.testing.assert_allclose(cov[:2, :2], np.linalg.inv(-REGULAR)[:2, :2], rtol=1e-9)


def test_conditional_on_request_leaves_beta_uncorrelated_with_theta():
    cov = _cov(REGULAR, cov_fe="conditional")
    np.testing.assert_array_equal(cov[:2, :2], CONDITIONAL)
    np.testing.assert_array_equal(cov[:2, 2], [0.0, 0.0])


@pytest.mark.parametrize("cov_fe", ["hessian", "conditional"])
def test_a_singular_hessian_gives_conditional_beta_and_one_warning(cov_fe):
    """The full inverse's β block is rounding noise divided by zero here (0.03 for an SE
    of 0.95): the β block is the conditional one, its covariances with θ unknown."""
    inverse_beta = np.linalg.inv(-SINGULAR)[0, 0]
    assert abs(inverse_beta - CONDITIONAL[0, 0]) > 0.5  # what statsmodels' rule gives
    with pytest.warns(SingularHessianWarning, match="conditional") as caught:
        cov = _cov(SINGULAR, cov_fe)
    assert len(caught) == 1
    np.testing.assert_array_equal(cov[:2, :2], CONDITIONAL)
    assert np.isnan(cov[:2, 2]).all() and np.isnan(cov[2, :2]).all()


def test_an_indefinite_hessian_gives_conditional_beta():
    indefinite = REGULAR.copy()
    indefinite[2, 2] = 2.0  # a minimum in θ, not a maximum
    with pytest.warns(SingularHessianWarning, match="not negative definite"):
        cov = _cov(indefinite)
    np.testing.assert_array_equal(cov[:2, :2], CONDITIONAL)


def test_a_variance_at_zero_is_left_out_of_the_decision():
    """On the boundary the Hessian may be anything in the zero variance's direction:
    β's block comes from the rest, as before (no warning)."""
    at_zero = REGULAR.copy()
    at_zero[2, 2] = 5.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cov = _cov(at_zero, at_zero=(True,))
    np.testing.assert_allclose(cov[:2, :2], np.linalg.inv(-at_zero[:2, :2]), rtol=1e-14)


def test_a_hessian_that_could_not_be_computed_gives_conditional_beta():
    with pytest.warns(SingularHessianWarning, match="conditional"):
        cov = _cov(np.full((3, 3), np.nan))
    np.testing.assert_array_equal(cov[:2, :2], CONDITIONAL)
    assert np.isnan(cov[2:, :]).all()
