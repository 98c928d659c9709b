"""The structured variance-component kernels against the dense ones (1e-10 relative)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmixed.fit.start import moment_start
from dmixed.kernels import (
    accumulate_statistics,
    dense_random_design,
    groups,
)
from dmixed.kernels.vc_blocks import (
    RaggedVC,
    diagonal_vc_block,
    one_entry_per_row,
    ragged_statistics,
)
from dmixed.stats import GlobalStats, Layout
from dmixed.stats.slots import assign_vc_slots, lookup_vc_slots, number_vc_cells
from dmixed.stats.standardize import Standardization
from tests._synth import QUICK
from tests._vc_compare import close, per_component


def _rows(seed: int, q: int, widths: tuple, n_groups: int = 6, continuous: bool = False):
    """Rows with one variance-component entry at most: each row in one component's
    level (or none); some groups use no level of some component."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 25, n_groups)
    codes = np.repeat(np.arange(n_groups), sizes)
    n = codes.size
    exog_re = rng.standard_normal((n, q))
    if q:
        exog_re[:, 0] = 1.0
    exog = np.column_stack([np.ones(n), rng.standard_normal((n, 2))])
    endog = rng.standard_normal(n) + 3.0
    comp = rng.integers(-1, len(widths), n)
    vc_cols, vc_vals = [], []
    for ell, w in enumerate(widths):
        cols = np.where(comp == ell, rng.integers(0, w, n), -1)[:, None]
        vals = np.where(cols >= 0, rng.uniform(0.5, 2.0, (n, 1)) if continuous else 1.0, 0.0)
        vc_cols.append(cols)
        vc_vals.append(vals)
    return codes, n_groups, endog, exog, exog_re, vc_cols, vc_vals


def _slots(codes, vc_cols, vc_vals):
    slots, widths = [], []
    for cols, vals in zip(vc_cols, vc_vals, strict=True):
        keys, pair_slots, width = assign_vc_slots(codes, cols, vals)
        ncols = int(cols.max()) + 1 if cols.size else 0
        slots.append(lookup_vc_slots(codes, cols, vals, keys, pair_slots, ncols))
        widths.append(width)
    return slots, widths


def _dense(rows, weights=None, std=None):
    codes, g, endog, exog, exog_re, vc_cols, vc_vals = rows
    slots, widths = _slots(codes, vc_cols, vc_vals)
    zt = dense_random_design(exog_re, slots, vc_vals, widths)
    st_ = accumulate_statistics(codes, g, endog, exog, zt, weights, std, widths)
    return st_["zz"], st_["zxy"], Layout(exog_re.shape[1], tuple(widths)), slots


designs = st.tuples(
    st.integers(0, 10**6),  # seed
    st.integers(0, 3),  # q
    st.lists(st.integers(1, 6), min_size=1, max_size=3).map(tuple),  # widths
    st.booleans(),  # continuous entries (statsmodels' exog_vc)
)


@settings(max_examples=25, **QUICK)
@given(designs)
def test_kernels_agree_with_dense(case):
    seed, q, widths, continuous = case
    rows = _rows(seed, q, widths, continuous=continuous)
    zz, zxy, layout, _ = _dense(rows)
    if layout.r == q:
        return
    assert diagonal_vc_block(zz, q)
    rv = RaggedVC.from_dense(zz, zxy, q, layout.slot_component)
    one = Layout(q, (1,) * layout.k_vc)
    rng = np.random.default_rng(seed)
    packed = rng.standard_normal(layout.n_params)
    lam, lam1 = layout.lam(packed, True), one.lam(packed, True)
    ref = groups.step_contributions(zz, lam, q, zxy)
    for got, per_slot in ((rv.step(lam), layout.r == q + layout.k_vc), (rv.step(lam1), True)):
        assert abs(got.logdet - ref.logdet) <= 1e-10 * max(abs(ref.logdet), 1.0)
        close(got.m, ref.m)
        close(got.s[:q, :q], ref.s[:q, :q])
        close(got.t_re, ref.t_re)
        if per_slot:  # one slot per component
            close(np.diagonal(got.s)[q:], per_component(np.diagonal(ref.s)[q:], layout))
            close(got.t_vc, per_component(ref.t_vc, layout))
        else:  # the padded slots, as the dense kernels give them
            close(np.diagonal(got.s), np.diagonal(ref.s))
            close(got.t_vc, ref.t_vc)
    w = rng.standard_normal(zxy.shape[2])
    ref_re = groups.random_effects_block(zz, lam, w, zxy)
    for b, c in zip(ref_re, rv.random_effects(lam1, w), strict=True):
        close(c, b)
    ref_h = groups.hessian_contributions(zz, lam, layout.basis(), w, zxy)
    for got_h in (rv.hessian(lam1, one.basis(), w), rv.hessian(lam, layout.basis(), w)):
        for name in ref_h.__dataclass_fields__:
            close(getattr(got_h, name), getattr(ref_h, name))


@settings(max_examples=15, **QUICK)
@given(designs)
def test_moment_equations_agree_with_dense(case):
    seed, q, widths, continuous = case
    zz, zxy, layout, _ = _dense(_rows(seed, q, widths, continuous=continuous))
    if layout.r == q or layout.r > groups.MOMENT_MAX_R:
        return
    rv = RaggedVC.from_dense(zz, zxy, q, layout.slot_component)
    one = Layout(q, (1,) * layout.k_vc)
    ref, got = groups.moment_contributions(zz, zxy), rv.moments()
    basis, basis1 = layout.basis(), one.basis()
    gram = np.einsum("jab,kcd,bcda->jk", basis, basis, ref.zz_zz)
    close(np.einsum("jab,kcd,bcda->jk", basis1, basis1, got.zz_zz), gram)
    close(np.einsum("jab,ba->j", basis1, got.zz), np.einsum("jab,ba->j", basis, ref.zz))
    w = np.random.default_rng(seed).standard_normal(zxy.shape[2])
    cc = np.einsum("axby,x,y->ab", ref.zxy_zxy, w, w)
    cc1 = np.einsum("axby,x,y->ab", got.zxy_zxy, w, w)
    close(np.einsum("jab,ba->j", basis1, cc1), np.einsum("jab,ba->j", basis, cc))
    xyxy = np.eye(zxy.shape[2]) * 100.0
    est, est1 = (
        moment_start(ref, GlobalStats(xyxy, 500), layout),
        moment_start(got, GlobalStats(xyxy, 500), one),
    )
    assert (est is None) == (est1 is None)


@settings(max_examples=15, **QUICK)
@given(designs, st.booleans())
def test_ragged_pass_equals_dense_pass(case, weighted):
    seed, q, widths, continuous = case
    rows = _rows(seed, q, widths, continuous=continuous)
    codes, g, endog, exog, exog_re, vc_cols, vc_vals = rows
    weights = np.random.default_rng(seed).uniform(0.5, 2.0, codes.size) if weighted else None
    std = Standardization.choose(endog, exog, exog_re, None, vc_vals)
    zz, zxy, layout, slots = _dense(rows, weights, std)
    assert one_entry_per_row(slots)
    rv, base = ragged_statistics(
        codes, g, endog, exog, exog_re, slots, vc_vals, layout.vc_widths, weights, std
    )
    got_zz, got_zxy = rv.dense()
    close(got_zz, zz, 1e-12)
    close(got_zxy, zxy, 1e-12)
    assert base["n"] == codes.size


@settings(max_examples=10, **QUICK)
@given(designs, st.booleans())
def test_ragged_pass_with_the_numbering_made_equals_it_sorted(case, weighted):
    """The cells taken from the data pass's numbering (``number_vc_cells``) give the
    statistics of the cells found by sorting, bit for bit."""
    seed, q, widths, continuous = case
    codes, g, endog, exog, exog_re, vc_cols, vc_vals = _rows(seed, q, widths, continuous=continuous)
    weights = np.random.default_rng(seed).uniform(0.5, 2.0, codes.size) if weighted else None
    std = Standardization.choose(endog, exog, exog_re, None, vc_vals)
    nums = [number_vc_cells(codes, c, v, g) for c, v in zip(vc_cols, vc_vals, strict=True)]
    slots = [num.entry_slots() for num in nums]
    widths = [num.width for num in nums]
    cells = [(num.entry_pair, num.pair_group, num.pair_slots) for num in nums]
    args = (codes, g, endog, exog, exog_re, slots, vc_vals, widths, weights, std)
    sorted_, _ = ragged_statistics(*args)
    numbered, _ = ragged_statistics(*args, cells)
    for name in ("a", "f1", "group", "comp", "pos", "d", "b", "f2"):
        np.testing.assert_array_equal(getattr(numbered, name), getattr(sorted_, name))


def test_overlapping_components_are_not_structured():
    codes, g, endog, exog, exog_re, vc_cols, vc_vals = _rows(3, 1, (3,))
    # a second component on the same rows as the first: the block is not diagonal
    rows = (codes, g, endog, exog, exog_re, vc_cols * 2, vc_vals * 2)
    zz, _, layout, slots = _dense(rows)
    assert not one_entry_per_row(slots)
    assert not diagonal_vc_block(zz, 1)


def test_factor_of_another_width_is_refused():
    zz, zxy, layout, _ = _dense(_rows(4, 1, (4,)))
    rv = RaggedVC.from_dense(zz, zxy, 1, layout.slot_component)
    with pytest.raises(ValueError, match="width"):
        rv.step(np.eye(layout.r + 1))
