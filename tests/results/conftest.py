"""Fixtures shared by the tests of the results layer."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm

import dmixed

from .._synth import make_data


@pytest.fixture(scope="package")
def fits():
    """dmixed's and statsmodels' REML fits of ``y ~ x1 + x2 + x3`` (40 groups, random
    intercepts): the pair the Wald tests are compared on."""
    df = make_data(n_groups=40, seed=21)
    df["x3"] = np.random.default_rng(4).normal(size=len(df))
    ours = dmixed.mixedlm("y ~ x1 + x2 + x3", df, groups="g").fit()
    theirs = sm.MixedLM.from_formula("y ~ x1 + x2 + x3", df, groups="g").fit()
    assert ours.llf == pytest.approx(theirs.llf, rel=1e-8)
    return ours, theirs
