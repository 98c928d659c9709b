"""lme4's ``isSingular`` as ``MixedLMResults.is_singular``, and the summary's line."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dmixed
from dmixed.errors import BoundaryWarning
from dmixed.results.singular import (
    SINGULAR_NOTE,
    SINGULAR_TOL,
    is_singular,
    relative_factor_diagonal,
)


def _rank_one_slope_fit():
    """Random intercepts only in the data, fitted with a random slope too: the
    optimum has a rank-1 Ψ* with both variances positive (a correlation of +1)."""
    rng = np.random.default_rng(9)
    n_groups, n = 18, 10
    g = np.repeat(np.arange(n_groups), n)
    d = np.tile(np.arange(n), n_groups)
    u = rng.normal(0, 20, n_groups)
    df = pd.DataFrame({"g": g, "d": d, "y": 250 + 10 * d + u[g] + rng.normal(0, 25, g.size)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BoundaryWarning)
        return dmixed.mixedlm("y ~ d", df, groups="g", re_formula="~d").fit()


def _zero_variance_fit(frame):
    with pytest.warns(BoundaryWarning):
        return dmixed.mixedlm("Yield ~ 1", frame, groups="Batch").fit()


def test_rank_deficient_covariance_is_singular_though_no_variance_is_zero():
    fit = _rank_one_slope_fit()
    assert fit.optimizer.boundary == []  # nothing settled at exactly zero ...
    assert np.all(np.diag(fit.cov_re) > 0)
    assert fit.is_singular  # ... yet Ψ* has rank 1, as lme4's isSingular says
    assert SINGULAR_NOTE in str(fit.summary())


def test_zero_variance_is_singular_and_said_in_the_summary(dyestuff2_like):
    fit = _zero_variance_fit(dyestuff2_like)
    assert fit.optimizer.boundary == ["re:0"]
    assert fit.is_singular
    text = str(fit.summary())
    assert text.rstrip().splitlines()[-1] == SINGULAR_NOTE
    assert SINGULAR_NOTE in fit.summary().as_html()
    assert SINGULAR_NOTE.replace("_", "\\_") in fit.summary().as_latex()


def test_interior_fit_is_not_singular(fits):
    ours, _ = fits
    assert not ours.is_singular
    assert "singular" not in str(ours.summary())


def test_flag_survives_save_and_load(dyestuff2_like, tmp_path):
    fit = _rank_one_slope_fit()
    fit.save(tmp_path / "res")
    assert dmixed.load(tmp_path / "res").is_singular
    assert SINGULAR_NOTE in str(dmixed.load(tmp_path / "res").summary())


def test_flag_is_the_same_on_dask(dyestuff2_like, client):
    with pytest.warns(BoundaryWarning):
        fit = dmixed.mixedlm("Yield ~ 1", dyestuff2_like, groups="Batch").fit(client=client)
    assert fit.is_singular


def test_variance_component_at_zero_is_singular(pastes):
    """A variance component counts as lme4's 1 × 1 term ``(1 | group:component)``."""
    model = dmixed.mixedlm(
        "strength ~ 1", pastes, groups="batch", re_formula="0", vc_formula={"cask": "0 + C(cask)"}
    )
    fit = model.fit()
    assert fit.is_singular == bool(np.sqrt(fit.vcomp[0] / fit.scale) < SINGULAR_TOL)
    psi = np.zeros((0, 0))
    assert is_singular(psi, np.array([0.0]), 2.0)
    assert not is_singular(psi, np.array([1e-6]), 1.0)  # θ = 1e-3 ≥ 1e-4


def test_tolerance_is_lmes_on_the_relative_factor():
    """θ = 0.99e-4 is singular, 1.01e-4 is not (lme4's ``tol = 1e-4``), relative to σ²."""
    for theta, expected in ((0.99e-4, True), (1.01e-4, False)):
        psi = np.diag([1.0, theta**2])
        assert is_singular(psi, np.zeros(0), 1.0) is expected
        assert is_singular(np.array([[theta**2]]), np.zeros(0), 1.0) is expected
        assert is_singular(np.zeros((0, 0)), np.array([4.0 * theta**2]), 4.0) is expected


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-3, 3), min_size=6, max_size=6),
    st.integers(1, 3),
)
def test_factor_diagonal_is_choleskys_where_it_is_positive_definite(entries, q):
    a = np.array(entries[: q * 2]).reshape(q, 2) if q <= 3 else None
    full = np.tril(np.reshape(entries + [0.0] * 3, (3, 3)))[:q, :q]
    np.fill_diagonal(full, np.abs(np.diag(full)) + 0.5)
    psi = full @ full.T
    np.testing.assert_allclose(
        relative_factor_diagonal(psi), np.diag(np.linalg.cholesky(psi)), rtol=1e-10
    )
    # rank one: every column after the first has a zero pivot
    low = a[:, :1] @ a[:, :1].T + np.eye(q) * 0.0
    if abs(a[0, 0]) > 0.1:
        diag = relative_factor_diagonal(low)
        assert diag[0] == pytest.approx(abs(a[0, 0]))
        assert np.all(diag[1:] < 1e-6)
