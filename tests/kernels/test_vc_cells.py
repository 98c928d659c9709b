"""A component's per-cell sums against the dense pass over its design ``[Z, v]``."""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dmixed.kernels import accumulate_statistics
from dmixed.kernels.vc_cells import cell_sums
from dmixed.stats.standardize import Standardization
from tests._synth import QUICK


def _cells(seed: int, q: int, indicator: bool, shifted: bool):
    rng = np.random.default_rng(seed)
    n, n_cells = 200, 37
    cell = np.sort(rng.integers(0, n_cells, n))
    exog = np.column_stack([np.ones(n), rng.standard_normal((n, 2))])
    if shifted:  # far from zero: the map shifts these columns
        exog[:, 1] += 1e6
    exog = np.asfortranarray(exog)
    exog_re = rng.standard_normal((n, q)) * 3.0
    if q:
        exog_re[:, 0] = 1.0
    if q > 1:
        exog_re[:, 1] = exog[:, 1]  # a random slope on a fixed-effect column
    endog = rng.standard_normal(n) * 50.0 + (1e5 if shifted else 0.0)
    v = np.ones(n) if indicator else rng.uniform(0.5, 2.0, n) * 2.0**-20
    return cell, n_cells, endog, exog, exog_re, v


def _dense(cell, n_cells, endog, exog, exog_re, v, weights, std):
    q = exog_re.shape[1]
    design = np.column_stack([exog_re, v])
    st_ = accumulate_statistics(cell, n_cells, endog, exog, design, weights, std, (1,))
    return st_["zz"][:, q, q], st_["zz"][:, :q, q], st_["zxy"][:, q, :]


@settings(max_examples=25, **QUICK)
@given(
    st.integers(0, 10**6),
    st.integers(0, 3),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.sampled_from(["none", "chosen"]),
)
def test_cell_sums_are_the_dense_pass_bit_for_bit(seed, q, indicator, shifted, weighted, which):
    """``d``, ``b``, ``f2`` equal the dense pass's entries of ``[Z, v]``'s statistics
    exactly: the same products, added in row order, scaled by the same powers of two."""
    cell, n_cells, endog, exog, exog_re, v = _cells(seed, q, indicator, shifted)
    weights = np.random.default_rng(seed).uniform(0.5, 2.0, cell.size) if weighted else None
    std = None
    if which == "chosen":
        std = Standardization.choose(endog, exog, exog_re, None, [v[:, None]])
    got = cell_sums(cell, n_cells, endog, exog, exog_re, v, weights, std)
    assert got is not None
    want = _dense(cell, n_cells, endog, exog, exog_re, v, weights, std)
    for mine, ref in zip(got, want, strict=True):
        assert mine.shape == ref.shape
        np.testing.assert_array_equal(mine, ref)


def test_extreme_scales_are_left_to_the_dense_pass():
    """A map with a scale beyond 2^±400 (the dense pass divides such rows first): None."""
    cell, n_cells, endog, exog, exog_re, v = _cells(0, 1, True, False)
    std = Standardization.choose(endog * 1e140, exog, exog_re, None, [v[:, None]])
    assert cell_sums(cell, n_cells, endog * 1e140, exog, exog_re, v, None, std) is None
    tame = dataclasses.replace(std, y_scale=1.0)
    assert cell_sums(cell, n_cells, endog, exog, exog_re, v, None, tame) is not None
