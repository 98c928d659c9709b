"""Text hypotheses over covariance parameters in ``f_test``/``wald_test``, read over the
full parameter vector's names as statsmodels reads them (``"x1 Var = 0"``)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import statsmodels.api as sm

import dmixed
from dmixed.errors import SpecError

from .._synth import make_data


@pytest.fixture(scope="module")
def pair():
    df = make_data(n_groups=50, seed=31, max_size=10)
    kw = dict(groups="g", re_formula="1 + x1")
    ours = dmixed.mixedlm("y ~ x1 + x2", df, **kw).fit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = sm.MixedLM.from_formula("y ~ x1 + x2", df, **kw).fit()
    return ours, theirs


@pytest.mark.parametrize("text", ["x1 Var = 0", "g x x1 Cov = 0", "x1 Var = 0, x2 = 0"])
def test_text_over_covariance_parameters_is_the_matrix_form(pair, text):
    ours, theirs = pair
    names = list(ours.param_names)
    assert names == list(theirs.params.index)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = theirs.f_test(text)
    got = ours.f_test(text)
    # the same hypothesis as the matrix over all the parameters
    rows = [r.split("=")[0].strip() for r in text.split(",")]
    mat = np.zeros((len(rows), len(names)))
    for i, r in enumerate(rows):
        mat[i, names.index(r)] = 1.0
    assert float(got.fvalue) == pytest.approx(float(ours.f_test(mat).fvalue), rel=1e-12)
    # statsmodels' covariance of the estimates differs from dmixed's by its optimizer's
    # stopping point (about 1e-5 relative; a covariance near 0 more so relative to it)
    assert float(got.fvalue) == pytest.approx(float(want.fvalue), rel=1e-3, abs=1e-4)
    assert float(ours.wald_test(text, scalar=True).statistic) == pytest.approx(
        float(got.fvalue) * len(rows), rel=1e-12
    )


def test_unknown_name_is_refused_with_the_parameters(pair):
    ours, _ = pair
    with pytest.raises(SpecError, match=r"'bogus Var = 0' over the parameters \[.*'x1 Var'\]"):
        ours.f_test("bogus Var = 0")


def test_t_test_text_names_a_covariance_parameter(pair):
    """t_test's text reads the fixed effects only (statsmodels' MixedLM t_test): a
    covariance parameter's name is refused with a pointer to f_test/wald_test."""
    ours, _ = pair
    with pytest.raises(SpecError, match=r"fixed effects only.*\['x1 Var'\].*f_test or wald_test"):
        ours.t_test("x1 Var = 0")
    assert ours.t_test("x1 = 0").tvalue.item() == pytest.approx(
        ours.t_test(np.eye(3)[[1]]).tvalue.item(), rel=1e-12
    )
