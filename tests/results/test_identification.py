"""dmixed.results.identification: covariance parameters the data do not identify."""

from __future__ import annotations

import warnings

import numpy as np

import dmixed
from dmixed.errors import SingularHessianWarning
from dmixed.results.identification import unidentified_parameters

from .._synth import make_data


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
