"""Packed sums of a padded design with one variance-component entry per row."""

from __future__ import annotations

import numpy as np
import pytest

from dmixed.kernels import accumulate_packed_into, dense_random_design
from dmixed.kernels.vc_packed import accumulate_padded_into
from dmixed.stats.packed import PackedLayout
from dmixed.stats.standardize import Standardization


def _rows(rng, n, n_groups, q, widths, weighted, continuous):
    codes = rng.integers(0, n_groups, n) * 3  # columns of a wider accumulator
    exog = np.c_[np.ones(n), rng.standard_normal((n, 2)) * 50 + 7]
    endog = rng.standard_normal(n) * 30 + 100
    exog_re = np.c_[np.ones(n), rng.standard_normal((n, q - 1))] if q else np.zeros((n, 0))
    owner = rng.integers(-1, len(widths), n)  # the component of each row's entry (-1: none)
    slots, vals = [], []
    for ell, w in enumerate(widths):
        s = np.where(owner == ell, rng.integers(0, w, n), -1)[:, None]
        v = rng.standard_normal(n) * 4 + 2 if continuous else np.ones(n)
        slots.append(s)
        vals.append(np.where(s >= 0, v[:, None], 0.0))
    weights = rng.random(n) + 0.5 if weighted else None
    return codes, endog, exog, exog_re, slots, vals, weights


@pytest.mark.parametrize("q", [0, 1, 2])
@pytest.mark.parametrize("widths", [(5,), (3, 4)])
@pytest.mark.parametrize(
    ("weighted", "continuous", "standardized"),
    [(False, False, False), (True, True, True), (False, True, True)],
)
def test_padded_sums_agree_with_the_dense_pass(q, widths, weighted, continuous, standardized):
    rng = np.random.default_rng(q * 10 + len(widths))
    codes, endog, exog, exog_re, slots, vals, weights = _rows(
        rng, 300, 17, q, widths, weighted, continuous
    )
    ztilde = dense_random_design(exog_re, slots, vals, list(widths))
    std = None
    if standardized:
        std = Standardization.choose(endog, exog, exog_re, (0, 0 if q else -1), vals)
    layout = PackedLayout(ztilde.shape[1], exog.shape[1] + 1)
    want, got = np.zeros((layout.width, 60)), np.zeros((layout.width, 60))
    g_want = accumulate_packed_into(want, codes, endog, exog, ztilde, weights, std, widths)
    g_got = accumulate_padded_into(got, codes, endog, exog, ztilde, weights, std, widths)
    scale = np.abs(want).max(axis=1, keepdims=True) + 1e-300
    np.testing.assert_allclose(got / scale, want / scale, rtol=0, atol=1e-13)
    np.testing.assert_allclose(g_got["xyxy"], g_want["xyxy"], rtol=1e-13)
    assert g_got["n"] == g_want["n"]
    np.testing.assert_allclose(g_got["sum_log_weights"], g_want["sum_log_weights"], rtol=1e-13)
    assert g_want["within"] is None and g_got["within"] is None


def test_rows_with_two_entries_take_the_dense_pass():
    rng = np.random.default_rng(0)
    codes, endog, exog, exog_re, slots, vals, _ = _rows(rng, 50, 5, 1, (3,), False, False)
    ztilde = dense_random_design(exog_re, slots, vals, [3])
    ztilde[0, 1:] = 1.0  # one row with entries in every slot
    layout = PackedLayout(4, 4)
    want, got = np.zeros((layout.width, 15)), np.zeros((layout.width, 15))
    accumulate_packed_into(want, codes, endog, exog, ztilde, None, None, (3,))
    accumulate_padded_into(got, codes, endog, exog, ztilde, None, None, (3,))
    np.testing.assert_array_equal(got, want)
