"""The covariance of the estimates from the Hessian: statsmodels' inv(−H), and lme4's
conditional σ̂²(X'V⁻¹X)⁻¹ for β where the Hessian says nothing about β."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmixed import SingularHessianWarning
from dmixed.results.covariance import (
    FE_INFLATION_BOUNDS,
    covariance_of_estimates,
    fe_block_defined,
)

from .._synth import QUICK

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


def test_the_decision_does_not_depend_on_offsets_either():
    """A column offset mixes the entries of Ψ (θ → Tθ, T far from diagonal and ill
    conditioned): a regular Hessian stays regular, β's block stays statsmodels'."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 5))
    regular = -(a @ a.T + 0.5 * np.eye(5))  # β = first 2, θ = last 3
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    t = np.eye(5)
    t[2:, 2:] = q @ np.diag([1.0, 1e-3, 1e3]) @ q.T  # condition 1e6: of the Hessian ~1e13
    moved = t.T @ regular @ t
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cov = covariance_of_estimates(
            moved,
            k=5,
            k_fe=2,
            at_zero=np.zeros(3, dtype=bool),
            conditional=np.eye(2),
            cov_fe="hessian",
        )
    # the same block, to what a condition number of 1e12 leaves of the inverse
    np.testing.assert_allclose(cov[:2, :2], np.linalg.inv(-regular)[:2, :2], rtol=1e-4)


def test_an_unidentifiable_model_gets_conditional_beta_whatever_its_hessian():
    with pytest.warns(SingularHessianWarning, match="not identifiable") as caught:
        cov = covariance_of_estimates(
            REGULAR,
            k=3,
            k_fe=2,
            at_zero=np.array([False]),
            conditional=CONDITIONAL,
            cov_fe="hessian",
            identifiable=False,
        )
    assert len(caught) == 1
    np.testing.assert_array_equal(cov[:2, :2], CONDITIONAL)
    assert np.isnan(cov[:2, 2]).all()


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
    with pytest.warns(SingularHessianWarning, match="direction involving the fixed") as caught:
        cov = _cov(indefinite)
    assert len(caught) == 1
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


def test_parameters_held_fixed_have_zero_rows_and_the_others_their_sub_inverse():
    """statsmodels' ``fit(free=...)``: inv(−H) over the estimated parameters only."""
    hess = np.array(
        [
            [-1.1, 0.16, 0.3, 0.2],
            [0.16, -24.0, 0.5, 0.1],
            [0.3, 0.5, -2.0, 0.4],
            [0.2, 0.1, 0.4, -3.0],
        ]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cov = covariance_of_estimates(
            hess,
            k=4,
            k_fe=2,
            at_zero=np.array([False, False]),
            conditional=CONDITIONAL,
            cov_fe="hessian",
            free=np.array([True, False]),
        )
    keep = [0, 1, 2]
    np.testing.assert_allclose(cov[np.ix_(keep, keep)], np.linalg.inv(-hess[np.ix_(keep, keep)]))
    assert np.all(cov[3] == 0) and np.all(cov[:, 3] == 0)


@pytest.mark.parametrize("seed", range(5))
def test_an_exact_trade_gives_the_same_covariance_whatever_the_rounding(seed):
    """θ = (a, b, c) with ℓ depending on a + b only (two components of one factor): the
    Hessian is singular along (1, −1, 0) up to rounding, and its inverse was that
    rounding divided by almost zero.  Rounded differently, the covariance is the same:
    β's and c's from the directions the data identify (those of the model with a + b
    as one parameter), a's and b's NaN."""
    rng = np.random.default_rng(100)
    a = rng.normal(size=(4, 4))
    merged = -(a @ a.T + 0.5 * np.eye(4))  # β = first 2, θ = (a + b, c)
    t = np.zeros((4, 5))
    t[:2, :2] = np.eye(2)
    t[2, 2] = t[2, 3] = 1.0  # a and b enter as their sum
    t[3, 4] = 1.0
    hessian = t.T @ merged @ t
    noise = np.random.default_rng(seed).normal(size=(5, 5)) * 1e-15
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cov = covariance_of_estimates(
            hessian + noise + noise.T,
            k=5,
            k_fe=2,
            at_zero=np.zeros(3, dtype=bool),
            conditional=np.eye(2),
            cov_fe="hessian",
        )
    expected = np.linalg.inv(-merged)
    keep = [0, 1, 4]
    np.testing.assert_allclose(
        cov[np.ix_(keep, keep)], expected[np.ix_([0, 1, 3], [0, 1, 3])], rtol=1e-9
    )
    assert np.isnan(cov[2:4]).all() and np.isnan(cov[:, 2:4]).all()


@settings(max_examples=40, **QUICK)
@given(
    k_fe=st.integers(0, 3),
    n_theta=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    zeros=st.integers(0, 15),
    singular=st.booleans(),
)
def test_the_hessians_layout_does_not_move_the_covariance(k_fe, n_theta, seed, zeros, singular):
    """A C-ordered Hessian (read whole where no variance is at zero) and the same
    Hessian in Fortran order (its kept rows and columns copied) give the same
    covariance bit for bit, with and without variances at zero."""
    rng = np.random.default_rng(seed)
    k = k_fe + n_theta
    root = rng.normal(size=(k, k))
    if singular:  # a direction with no curvature (a trade)
        root[:, -1] = root[:, 0] if k > 1 else 0.0
    hessian = -(root @ root.T + (0.0 if singular else 0.1) * np.eye(k))
    at_zero = np.array([bool(zeros >> j & 1) for j in range(n_theta)])
    conditional = np.eye(k_fe)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularHessianWarning)
        got = [
            covariance_of_estimates(
                h, k=k, k_fe=k_fe, at_zero=at_zero, conditional=conditional, cov_fe="hessian"
            )
            for h in (np.ascontiguousarray(hessian), np.asfortranarray(hessian))
        ]
    np.testing.assert_array_equal(got[0], got[1])


def _inflation_within_bounds(info, p):
    """The decision of :func:`fe_block_defined` by its definition: the eigenvalues of
    ``C⁻¹Δ`` with ``C = info_ββ⁻¹``, ``Δ = C info_βθ S⁻¹ info_θβ C``."""
    ibb, ibt, itt = info[:p, :p], info[:p, p:], info[p:, p:]
    c = np.linalg.inv(ibb)
    schur = itt - ibt.T @ c @ ibt
    delta = c @ ibt @ np.linalg.inv(schur) @ ibt.T @ c
    eig = np.linalg.eigvals(ibb @ delta).real
    low, high = FE_INFLATION_BOUNDS
    return bool(eig.min() >= low and eig.max() <= high)


@settings(max_examples=40, **QUICK)
@given(
    p=st.integers(1, 4),
    m=st.integers(1, 4),
    log_inflation=st.sampled_from([-12.0, -3.0, 0.0, 4.0, 7.0, 9.0, 12.0]),
    indefinite=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_fe_block_defined_decides_as_its_definition(p, m, log_inflation, indefinite, seed):
    """Positive definite (one Cholesky factor, the trace bound, the eigenvalues past
    it) or not (the Schur complement's own path), the decision is that of the
    eigenvalues of ``C⁻¹Δ`` against :data:`FE_INFLATION_BOUNDS`, far from their edges
    (the largest relative inflation 1e-12 to 1e12, S positive definite or not)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(p + m, p + m))
    info = a @ a.T + (p + m) * np.eye(p + m)
    # scale the coupling so that the largest eigenvalue of C⁻¹Δ is 10^log_inflation
    ibb, ibt = info[:p, :p], info[:p, p:]
    c = np.linalg.inv(ibb)
    base = info[p:, p:] - ibt.T @ c @ ibt  # S with the coupling as drawn
    top = np.linalg.eigvals(ibb @ c @ ibt @ np.linalg.inv(base) @ ibt.T @ c).real.max()
    # S -> S t shrinks S (the θ block less the coupling): C⁻¹Δ grows by 1/t
    t = top / 10.0**log_inflation
    info[p:, p:] = ibt.T @ c @ ibt + t * base
    if indefinite:
        info[p:, p:] -= 2.0 * t * np.linalg.eigvalsh(base).max() * np.eye(m)
    assert fe_block_defined(info, p) == _inflation_within_bounds(info, p)
    # S indefinite: C⁻¹Δ has negative eigenvalues of about the inflation's size, within
    # the bounds only when that is negligible
    within = log_inflation <= 7.0 if not indefinite else log_inflation < -6.0
    assert fe_block_defined(info, p) == within
