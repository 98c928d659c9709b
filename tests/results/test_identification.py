"""dmixed.results.identification: covariance parameters the data do not identify."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dmixed
from dmixed.errors import SingularHessianWarning
from dmixed.results.identification import (
    FLAT_EIGENVALUE,
    TRADE_EIGENVALUE,
    identified_directions,
    unidentified_parameters,
)

from .._synth import QUICK, make_data


def _information(theta_block: np.ndarray, k_fe: int = 1) -> np.ndarray:
    """A Hessian ``−I`` with one fixed effect uncorrelated with ``theta_block``."""
    k = k_fe + theta_block.shape[0]
    info = np.zeros((k, k))
    info[:k_fe, :k_fe] = np.eye(k_fe)
    info[k_fe:, k_fe:] = theta_block
    return -info


def test_a_flat_trade_is_found_whatever_the_units():
    units = np.diag([1.0, 1e4, 1e-3])
    flat = units @ np.array([[2.0, 2.0, 0.5], [2.0, 2.0, 0.5], [0.5, 0.5, 3.0]]) @ units
    np.testing.assert_array_equal(unidentified_parameters(_information(flat), 1, [0, 0, 0]), [0, 1])
    sound = units @ np.array([[2.0, 1.9, 0.5], [1.9, 2.0, 0.5], [0.5, 0.5, 3.0]]) @ units
    assert unidentified_parameters(_information(sound), 1, np.zeros(3, bool)).size == 0
    # a parameter at zero is left out; one with no curvature at all is unidentified
    np.testing.assert_array_equal(
        unidentified_parameters(_information(flat), 1, np.array([0, 1, 0], bool)), []
    )
    alone = np.diag([1.0, 0.0, 2.0])
    np.testing.assert_array_equal(unidentified_parameters(_information(alone), 1, [0, 0, 0]), [1])
    assert unidentified_parameters(None, 1, [0]).size == 0


def test_two_components_of_one_factor_warn_naming_them():
    """They trade their variances at one likelihood; statsmodels refuses to fit, dmixed
    gave them finite standard errors and spoke only of the fixed effects.  Two columns
    of equal values (one factor under two names): the formulas differ, so only the
    statistics can tell (one formula twice is refused at the spec, equal values before
    the optimizer: fitted here with ``check_nobs="ignore"``)."""
    df = make_data(n_groups=30, max_size=20, vc_sd=0.7, seed=4)
    df["sub2"] = df["sub"]
    vc = {"a": "0 + C(sub)", "b": "0 + C(sub2)"}
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", SingularHessianWarning)  # the fixed effects' too
        dmixed.mixedlm("y ~ x1", df, groups="g", vc_formula=vc).fit(check_nobs="ignore")
    said = [str(w.message) for w in seen if issubclass(w.category, SingularHessianWarning)]
    assert any("covariance parameters 'a Var', 'b Var': the data do not" in m for m in said)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SingularHessianWarning)
        dmixed.mixedlm("y ~ x1", df, groups="g", vc_formula={"a": "0 + C(sub)"}).fit()


@pytest.mark.parametrize("reml", [True, False])
def test_a_component_in_the_span_of_the_random_effects_warns_and_keeps_the_likelihood(reml):
    """A component whose column is, in every group, a combination of the random-effects
    columns (``z = 2 + 3x`` beside ``1 + x``) adds ``τ c c'`` to Ψ: only their sum is
    identified.  The fit is not silently wrong: ℓ, the fixed effects and Ψ + τ c c' are
    those of the model without the component, and it warns naming the parameters in
    the trade (statsmodels stops short of the optimum with a lower ℓ)."""
    rng = np.random.default_rng(6)
    g = np.repeat(np.arange(40), 12)
    x1 = rng.standard_normal(g.size)
    effects = rng.standard_normal((40, 2)) * [1.0, 0.5]
    y = 1.0 + x1 + effects[g, 0] + effects[g, 1] * x1 + rng.standard_normal(g.size)
    df = pd.DataFrame({"y": y, "x1": x1, "g": g, "z": 2.0 + 3.0 * x1})
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", SingularHessianWarning)
        both = dmixed.mixedlm(
            "y ~ x1", df, groups="g", re_formula="1 + x1", vc_formula={"v": "0 + z"}
        ).fit(reml=reml)
    said = [str(w.message) for w in seen if issubclass(w.category, SingularHessianWarning)]
    assert any("'v Var'" in m and "the data do not identify" in m for m in said), said
    alone = dmixed.mixedlm("y ~ x1", df, groups="g", re_formula="1 + x1").fit(reml=reml)
    assert both.llf == pytest.approx(alone.llf, abs=1e-8)
    np.testing.assert_allclose(both.fe_params, alone.fe_params, rtol=1e-6)
    total = np.asarray(both.cov_re) + both.vcomp[0] * np.outer([2.0, 3.0], [2.0, 3.0])
    np.testing.assert_allclose(total, alone.cov_re, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("npartitions", [1, 3, 7])
def test_standard_errors_of_a_trade_do_not_depend_on_the_partitions(npartitions):
    """Two components of one factor under two names: the Hessian is singular along their
    trade, and inverting it whole gave the fixed effects' standard errors from the
    conditional or the full inverse, and the two variances NaN, 0.14 or 1.7e7, as the
    rounding of the sums fell (pandas or Dask, 1, 3 or 7 partitions).  The covariance
    comes from the identified directions: the fixed effects' and the other covariance
    parameters' standard errors are those of the model with one component, the
    traded variances' NaN, whatever the partitions (such components are refused before
    the optimizer: fitted here with ``check_nobs="ignore"``)."""
    import dask.dataframe as dd

    df = make_data(n_groups=30, max_size=20, vc_sd=0.7, seed=0)
    df["sub2"] = df["sub"]
    vc = {"a": "0 + C(sub)", "b": "0 + C(sub2)"}
    fits = []
    for data in (df, dd.from_pandas(df, npartitions=npartitions)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SingularHessianWarning)
            fits.append(
                dmixed.mixedlm("y ~ x1", data, groups="g", re_formula="1 + x1", vc_formula=vc).fit(
                    check_nobs="ignore"
                )
            )
    one = dmixed.mixedlm(
        "y ~ x1", df, groups="g", re_formula="1 + x1", vc_formula={"a": "0 + C(sub)"}
    ).fit()
    for res in fits:
        bse = np.asarray(res.bse)
        np.testing.assert_allclose(bse[:5], np.asarray(one.bse)[:5], rtol=1e-7)
        assert np.isnan(bse[5:]).all()
        cov = np.asarray(res.cov_params())
        assert np.isnan(cov[5:]).all() and np.isnan(cov[:, 5:]).all()
        np.testing.assert_allclose(cov[:5, :5], np.asarray(one.cov_params())[:5, :5], rtol=1e-6)


def test_the_information_is_decomposed_once_per_hessian(monkeypatch):
    """The covariance of the estimates and the warning both ask at the optimum: one
    decomposition per Hessian (keyed by its digest, not its bytes, which with many fixed
    effects are megabytes), another for another Hessian or other parameters at zero."""
    from dmixed.kernels import small_linalg
    from dmixed.results.identification import identified_directions

    made = []
    eigh = small_linalg.eigh

    def counting(*args, **kw):
        made.append(1)
        return eigh(*args, **kw)

    monkeypatch.setattr(small_linalg, "eigh", counting)
    rng = np.random.default_rng(7)
    a = rng.normal(size=(3, 3))
    hess = _information(a @ a.T + np.diag([1.0, 2.0, 3.0]), k_fe=400)
    first = identified_directions(hess, 400, np.zeros(3, bool))
    again = identified_directions(hess.copy(), 400, np.zeros(3, bool))
    assert len(made) == 1
    np.testing.assert_array_equal(first[1], again[1])
    other = hess.copy()
    other[-1, -1] *= 2.0
    identified_directions(other, 400, np.zeros(3, bool))
    identified_directions(hess, 400, np.array([0, 1, 0], bool))
    assert len(made) == 3


def test_the_record_of_a_fit_decomposes_its_information_once(monkeypatch):
    """The covariance of the estimates and the warning both ask at the optimum
    (:meth:`MixedLMResults.from_fit`): the information is made once per fit and given
    to both, and the directions of a given decomposition are those made without it,
    bit for bit."""
    from dmixed.results import covariance, identification, results
    from dmixed.results.results import MixedLMResults

    from .test_fit_record import _fit_and_its_record_arguments

    df = make_data(n_groups=30, min_size=3, max_size=9, slope_sd=0.5, seed=11)
    res, args = _fit_and_its_record_arguments(df, re_formula="1 + x1")
    made = []
    scaled = identification.scaled_information

    def counting(*a, **kw):
        made.append(1)
        return scaled(*a, **kw)

    for module in (covariance, identification, results):
        monkeypatch.setattr(module, "scaled_information", counting)
    again = MixedLMResults.from_fit(**args)
    assert len(made) == 1
    np.testing.assert_array_equal(res.bse, again.bse)
    hess, at_zero = args["hessian"], np.zeros(3, bool)
    info = scaled(hess, 3, at_zero)
    for flat in (FLAT_EIGENVALUE, TRADE_EIGENVALUE, 2.0):
        got = identified_directions(hess, 3, at_zero, flat, info)
        want = identified_directions(hess, 3, at_zero, flat)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    assert identified_directions(hess, 3, at_zero, 2.0, info)[0].size  # all flat there


def _reference_directions(hessian, k_fe, at_zero, flat):
    """:func:`identified_directions` written out with index arrays throughout (every
    block of the information copied by ``np.ix_``)."""
    at_zero = np.asarray(at_zero, dtype=bool)
    info = -0.5 * (hessian + hessian.T)
    theta = np.flatnonzero(~at_zero)
    cols = k_fe + theta
    s = info[np.ix_(cols, cols)]
    if k_fe:
        s = s - info[np.ix_(cols, range(k_fe))] @ np.linalg.solve(
            info[:k_fe, :k_fe], info[np.ix_(range(k_fe), cols)]
        )
    d = np.sqrt(np.abs(np.diag(s)))
    zero = d <= 1e-12 * d.max(initial=0.0)
    live = np.flatnonzero(~zero)
    r = s[np.ix_(live, live)] / np.outer(d[live], d[live])
    w, v = np.linalg.eigh(0.5 * (r + r.T))
    flat_w = np.abs(w) <= flat
    involved = zero.copy()
    involved[live] = np.any(np.abs(v[:, flat_w]) > 0.1, axis=1)
    basis = np.zeros((at_zero.size, int((~flat_w).sum())))
    basis[theta[live]] = v[:, ~flat_w] / d[live, None]
    return np.sort(theta[involved]), basis


@settings(max_examples=40, **QUICK)
@given(
    k_fe=st.integers(0, 3),
    n_theta=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    zeros=st.integers(0, 15),
    trade=st.booleans(),
    flat=st.sampled_from([FLAT_EIGENVALUE, TRADE_EIGENVALUE]),
)
def test_the_directions_are_those_of_the_information_copied_by_index(
    k_fe, n_theta, seed, zeros, trade, flat
):
    """The identified directions (the blocks read as slices where no variance is at
    zero or without curvature) are those of the blocks copied by index, bit for bit."""
    rng = np.random.default_rng(seed)
    k = k_fe + n_theta
    root = rng.normal(size=(k, k + 2))
    if trade and n_theta > 1:  # two parameters trading exactly
        root[-1] = root[-2]
    hessian = -(root @ root.T)
    at_zero = np.array([bool(zeros >> j & 1) for j in range(n_theta)])
    if at_zero.all():
        at_zero[0] = False
    involved, basis = identified_directions(hessian, k_fe, at_zero, flat)
    want_involved, want_basis = _reference_directions(hessian, k_fe, at_zero, flat)
    assert involved.dtype == want_involved.dtype
    np.testing.assert_array_equal(involved, want_involved)
    np.testing.assert_array_equal(basis, want_basis)
