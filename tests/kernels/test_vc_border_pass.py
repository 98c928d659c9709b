"""The crossed data pass (no padded design) against the dense pass over the padded one."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dmixed.kernels.vc_border import diagonal_components
from dmixed.kernels.vc_border_pass import border_statistics
from dmixed.stats.slots import number_vc_cells
from dmixed.stats.standardize import Standardization
from tests._synth import QUICK
from tests.kernels.test_vc_border import KINDS, close, crossed_rows, dense_statistics


def _numbered(rows):
    codes, g, _, _, _, vc_cols, vc_vals = rows
    return [number_vc_cells(codes, c, v, g) for c, v in zip(vc_cols, vc_vals, strict=True)]


@settings(max_examples=25, **QUICK)
@given(
    st.integers(0, 10**6),
    st.integers(0, 2),
    st.lists(st.tuples(st.sampled_from(KINDS), st.integers(1, 5)), min_size=1, max_size=2),
    st.booleans(),  # weights
    st.booleans(),  # shifted, scaled columns (the columns' map)
)
def test_crossed_pass_equals_dense_pass(seed, q, others, weighted, shifted):
    rows = crossed_rows(seed, q, (("ind", 2),) + tuple(others))
    codes, g, endog, exog, exog_re, _, vc_vals = rows
    rng = np.random.default_rng(seed)
    weights = rng.uniform(0.5, 2.0, codes.size) if weighted else None
    if shifted:
        endog = endog * 1e3 + 1e6
        exog = exog.copy()
        exog[:, 1] = exog[:, 1] * 1e-3 + 50.0
        rows = (codes, g, endog, exog) + rows[4:]
    std = Standardization.choose(endog, exog, exog_re, None, vc_vals)
    zz, zxy, layout = dense_statistics(rows, weights, std)
    out = border_statistics(codes, g, endog, exog, exog_re, _numbered(rows), vc_vals, weights, std)
    assert out is not None
    crossed, glob = out
    assert list(crossed.diag_comps) == diagonal_components(zz, q, layout.slot_component)
    got_zz, got_zxy = crossed.dense()
    close(got_zz, zz, 1e-12)
    close(got_zxy, zxy, 1e-12)
    assert glob["n"] == codes.size
    np.testing.assert_array_equal(glob["nobs"], np.bincount(codes, minlength=g))


def test_no_indicator_component_is_not_held_crossed():
    """Every component with two entries in some row: no diagonal block."""
    rows = crossed_rows(5, 1, (("multi", 3), ("multi", 2)))
    codes, g, endog, exog, exog_re, _, vc_vals = rows
    assert border_statistics(codes, g, endog, exog, exog_re, _numbered(rows), vc_vals) is None


def test_two_entries_in_one_slot_take_the_dense_pass():
    rows = crossed_rows(6, 1, (("ind", 2), ("multi", 3)))
    codes, g, endog, exog, exog_re, vc_cols, vc_vals = rows
    vc_cols[1][:, 1] = vc_cols[1][:, 0]  # the same column twice in a row
    vc_vals[1][:, 1] = np.where(vc_cols[1][:, 1] >= 0, 0.5, 0.0)
    assert border_statistics(codes, g, endog, exog, exog_re, _numbered(rows), vc_vals) is None
