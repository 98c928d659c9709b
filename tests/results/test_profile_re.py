"""statsmodels' ``profile_re``, against statsmodels' own."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm

import dmixed
from dmixed.errors import SpecError

from .._synth import make_data, weighted_vc_fit


def test_profile_re_is_statsmodels():
    df = make_data(n_groups=30, vc_sd=0.7, seed=8, max_size=12)
    kw = dict(groups="g", re_formula="1 + x1", vc_formula={"sub": "0 + C(sub)"})
    ours = dmixed.MixedLM.from_formula("y ~ x1", df, **kw).fit()
    ref = sm.MixedLM.from_formula("y ~ x1", df, **kw).fit()
    for args in [(1, "re", 2, 0.05, 2, 0.05), ("sub", "vc", 1, 0.1, 2, 0.1)]:
        got = ours.profile_re(*args)
        want = ref.profile_re(*args)
        assert got.shape == want.shape == (args[2] + args[4] + 1, 2)
        # statsmodels' grid is centred on its own estimates, which its optimizer leaves
        # about 1e-5 from dmixed's (whose ℓ is the higher, by 5e-9): the held values
        # differ by that much, the likelihoods agree to 1e-7
        np.testing.assert_allclose(got[:, 1], want[:, 1], rtol=1e-6)
        np.testing.assert_allclose(got[:, 0], want[:, 0], rtol=1e-4)
    assert ours.profile_re("x1", "re", 1, 0.05, 1, 0.05).shape == (3, 2)
    with pytest.raises(SpecError, match="vtype"):
        ours.profile_re(0, "xx")
    with pytest.raises(SpecError, match="dist_low is too large"):
        ours.profile_re(0, "re", dist_low=100.0)
    with pytest.raises(SpecError, match="not a variance component"):
        ours.profile_re("nope", "vc")
    # statsmodels names a component by its name only: a position is told so
    with pytest.raises(
        SpecError,
        match=r"re_ix 0 is not a variance component of the model; pass its name, one of "
        r"\['sub'\]",
    ):
        ours.profile_re(0, "vc")


@pytest.mark.parametrize("c", [2.0**256, 3e-150])
def test_profile_re_with_weights_in_an_extreme_unit_is_the_reference(c):
    """Weights ``c·w``: the same absolute variances and likelihoods along both profiles
    (the free coordinates are relative to ``σ²/s_w``; in the model's own, ``Ψ*`` near
    1e-77 left the optimizer where it started, ℓ 1.4e-3 off)."""

    def profiles(factor):
        res = weighted_vc_fit(factor)
        grid = dict(num_low=2, num_high=2, dist_low=0.1, dist_high=0.1)
        return res.profile_re(0, "re", **grid), res.profile_re("sub", "vc", **grid)

    for got, want in zip(profiles(c), profiles(1.0), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-7)
