"""The crossed variance-component kernels against the dense ones (1e-10 relative).

Random designs: indicator components crossed with each other, continuous entries
(statsmodels' ``exog_vc``), a component with two entries in some rows, several
components per group, groups without levels of a component, and one group far wider
than the others.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmixed.fit.start import moment_start
from dmixed.kernels import accumulate_statistics, dense_random_design, groups, vc_border
from dmixed.kernels.vc_border import CrossedVC, choose_diagonal, diagonal_components
from dmixed.stats import GlobalStats, Layout
from dmixed.stats.slots import number_vc_cells
from tests._synth import QUICK
from tests._vc_compare import close, per_component

#: kinds of component: an indicator, continuous entries, two continuous entries per row
KINDS = ("ind", "cont", "multi")


def crossed_rows(seed: int, q: int, comps: tuple, n_groups: int = 6, first: int = 70):
    """Rows whose components share rows: every row draws a level (or none) of every
    component independently; group 0 (``first`` rows) is far wider than the rest, group 1
    has no level of the first component."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 15, n_groups)
    sizes[0] = first
    codes = np.repeat(np.arange(n_groups), sizes)
    n = codes.size
    exog_re = rng.standard_normal((n, q))
    if q:
        exog_re[:, 0] = 1.0
    exog = np.column_stack([np.ones(n), rng.standard_normal((n, 2))])
    endog = rng.standard_normal(n) + 3.0
    vc_cols, vc_vals = [], []
    for ell, (kind, width) in enumerate(comps):
        k = 2 if kind == "multi" else 1
        width = width * 4 if ell == 0 else width
        cols = np.where(rng.uniform(size=(n, k)) < 0.85, rng.integers(0, width, (n, k)), -1)
        if k == 2:  # two different columns of the component in one row
            cols[:, 1] = np.where(cols[:, 1] == cols[:, 0], -1, cols[:, 1])
        if ell == 0:
            cols[codes == 1] = -1
        ones = np.ones((n, k))
        vals = np.where(cols >= 0, ones if kind == "ind" else rng.uniform(0.5, 2.0, (n, k)), 0.0)
        vc_cols.append(cols)
        vc_vals.append(vals)
    return codes, n_groups, endog, exog, exog_re, vc_cols, vc_vals


def dense_statistics(rows, weights=None, std=None):
    """The dense pass over the padded design: ``zz``, ``zxy``, the layout."""
    codes, g, endog, exog, exog_re, vc_cols, vc_vals = rows
    nums = [number_vc_cells(codes, c, v, g) for c, v in zip(vc_cols, vc_vals, strict=True)]
    widths = [num.width for num in nums]
    slots = [num.entry_slots() for num in nums]
    zt = dense_random_design(exog_re, slots, vc_vals, widths)
    out = accumulate_statistics(codes, g, endog, exog, zt, weights, std, widths)
    return out["zz"], out["zxy"], Layout(exog_re.shape[1], tuple(widths))


designs = st.tuples(
    st.integers(0, 10**6),  # seed
    st.integers(0, 2),  # q
    st.lists(st.tuples(st.sampled_from(KINDS), st.integers(1, 5)), min_size=1, max_size=2),
    st.integers(1, 5),  # the indicator component's levels (times 4)
)


def _crossed(case, first: int = 70):
    seed, q, others, levels = case
    comps = (("ind", levels),) + tuple(others)
    zz, zxy, layout = dense_statistics(crossed_rows(seed, q, comps, first=first))
    diag = diagonal_components(zz, q, layout.slot_component)
    assert diag  # an indicator component qualifies (the widest such)
    return zz, zxy, layout, CrossedVC.from_dense(zz, zxy, q, layout.slot_component, diag)


@settings(max_examples=30, **QUICK)
@given(designs)
def test_kernels_agree_with_dense(case):
    check_agreement(case)


@pytest.mark.parametrize(
    "case", [(11, 1, [("ind", 5), ("cont", 3)], 2), (12, 0, [("multi", 4)], 3), (13, 2, [], 1)]
)
def test_per_group_products_agree_with_dense(case, monkeypatch):
    """Borders wider than :data:`~dmixed.kernels.vc_border.STACKED_MAX_W` take one
    product per group instead of the stacked ones: the same sums."""
    monkeypatch.setattr(vc_border, "STACKED_MAX_W", 0)
    check_agreement(case)


@pytest.mark.parametrize("sparse_b", [0.0, 1.0])
@pytest.mark.parametrize(
    "case", [(21, 1, [("ind", 5), ("cont", 3)], 2), (22, 0, [("multi", 4)], 3), (23, 2, [], 1)]
)
def test_wide_borders_agree_with_dense(case, sparse_b, monkeypatch):
    """Borders wider than :data:`~dmixed.kernels.vc_border.WIDE_W` are eliminated one
    group at a time by one Cholesky factor and triangular solves, their ``B_i`` dense
    or sparse (:data:`~dmixed.kernels.vc_border.SPARSE_B_MAX`): the same sums."""
    monkeypatch.setattr(vc_border, "WIDE_W", 0)
    monkeypatch.setattr(vc_border, "STACKED_MAX_W", 0)
    monkeypatch.setattr(vc_border, "SPARSE_B_MAX", sparse_b)
    check_agreement(case)


@pytest.mark.parametrize("border", [60, 100])
def test_middle_borders_keep_dense_b(border, monkeypatch):
    """Borders wider than :data:`~dmixed.kernels.vc_border.STACKED_MAX_W` but at most
    :data:`~dmixed.kernels.vc_border.WIDE_W` take one dense product per group, never
    the sparse ``B_i`` of the wide path, even where ``B_i`` is sparse; their sums equal
    the dense kernels'."""
    monkeypatch.setattr(vc_border, "SPARSE_B_MAX", 1.0)  # every B_i would be held sparse
    b_rows = vc_border.BorderBucket.b_rows
    read = []

    def recorded(self, gi):
        read.append(self.a.shape[1])
        return b_rows(self, gi)

    monkeypatch.setattr(vc_border.BorderBucket, "b_rows", recorded)
    case = (31 + border, 1, [("ind", border)], border // 4 + 1)  # the diagonal: the widest
    widths = [bk.a.shape[1] for bk in _crossed(case, first=250)[3].buckets]
    assert vc_border.STACKED_MAX_W < max(widths) <= vc_border.WIDE_W
    check_agreement(case, first=250)
    assert read == []


def check_agreement(case, first: int = 70):
    """ℓ's sums, the score's, the Hessian's and the BLUPs of the crossed kernels equal
    the dense kernels' to 1e-10, for factors of either width."""
    zz, zxy, layout, cv = _crossed(case, first)
    q = layout.k_re
    got_zz, got_zxy = cv.dense()
    np.testing.assert_array_equal(got_zz, zz)
    np.testing.assert_array_equal(got_zxy, zxy)
    one = Layout(q, (1,) * layout.k_vc)
    rng = np.random.default_rng(case[0])
    packed = rng.standard_normal(layout.n_params)
    lam, lam1 = layout.lam(packed, True), one.lam(packed, True)
    ref = groups.step_contributions(zz, lam, q, zxy)
    for got, collapsed in ((cv.step(lam1), True), (cv.step(lam), False)):
        assert abs(got.logdet - ref.logdet) <= 1e-10 * max(abs(ref.logdet), 1.0)
        close(got.m, ref.m)
        close(got.s[:q, :q], ref.s[:q, :q])
        close(got.t_re, ref.t_re)
        if collapsed:  # one slot per component
            close(np.diagonal(got.s)[q:], per_component(np.diagonal(ref.s)[q:], layout))
            close(got.t_vc, per_component(ref.t_vc, layout))
        else:
            close(np.diagonal(got.s), np.diagonal(ref.s))
            close(got.t_vc, ref.t_vc)
    w = rng.standard_normal(zxy.shape[2])
    ref_re = groups.random_effects_block(zz, lam, w, zxy)
    for got_re in (cv.random_effects(lam1, w), cv.random_effects(lam, w)):
        for b, c in zip(ref_re, got_re, strict=True):
            close(c, b)
    ref_h = groups.hessian_contributions(zz, lam, layout.basis(), w, zxy)
    for got_h in (cv.hessian(lam1, one.basis(), w), cv.hessian(lam, layout.basis(), w)):
        for name in ref_h.__dataclass_fields__:
            close(getattr(got_h, name), getattr(ref_h, name))


@settings(max_examples=15, **QUICK)
@given(designs)
def test_moment_equations_agree_with_dense(case):
    zz, zxy, layout, cv = _crossed(case)
    if layout.r > 24:  # the dense sums have r⁴ entries
        return
    one = Layout(layout.k_re, (1,) * layout.k_vc)
    ref, got = groups.moment_contributions(zz, zxy), cv.moments()
    basis, basis1 = layout.basis(), one.basis()
    gram = np.einsum("jab,kcd,bcda->jk", basis, basis, ref.zz_zz)
    close(np.einsum("jab,kcd,bcda->jk", basis1, basis1, got.zz_zz), gram)
    close(np.einsum("jab,ba->j", basis1, got.zz), np.einsum("jab,ba->j", basis, ref.zz))
    w = np.random.default_rng(case[0]).standard_normal(zxy.shape[2])
    cc = np.einsum("axby,x,y->ab", ref.zxy_zxy, w, w)
    cc1 = np.einsum("axby,x,y->ab", got.zxy_zxy, w, w)
    close(np.einsum("jab,ba->j", basis1, cc1), np.einsum("jab,ba->j", basis, cc))
    xyxy = np.eye(zxy.shape[2]) * 100.0
    est = moment_start(ref, GlobalStats(xyxy, 500), layout)
    est1 = moment_start(got, GlobalStats(xyxy, 500), one)
    assert (est is None) == (est1 is None)
    if est is not None:
        close(est1[1], est[1], 1e-8)


def test_groups_are_held_at_their_own_border_width():
    """Each bucket holds groups of one border width; no group is padded to the widest."""
    rows = crossed_rows(7, 1, (("ind", 5), ("ind", 3)), n_groups=8)
    zz, zxy, layout = dense_statistics(rows)
    cv = CrossedVC.from_dense(zz, zxy, 1, layout.slot_component, [0])
    used = np.diagonal(zz[:, 1:, 1:], axis1=1, axis2=2) != 0
    border = 1 + used[:, layout.slot_component == 1].sum(axis=1)
    for bk in cv.buckets:
        assert np.all(border[bk.groups] == bk.a.shape[1])
    assert sorted(np.concatenate([bk.groups for bk in cv.buckets])) == list(range(8))
    assert sum(bk.d.size for bk in cv.buckets) == int(used[:, layout.slot_component == 0].sum())


def test_diagonal_choice():
    overlap = np.array([[False, True, False], [True, False, False], [False, False, True]])
    # 1 is widest; 0 shares rows with it; 2 has two entries in a row
    assert choose_diagonal(np.array([3, 9, 20]), overlap) == [1]
    assert choose_diagonal(np.array([3, 2]), np.zeros((2, 2), dtype=bool)) == [0, 1]
    assert choose_diagonal(np.array([4]), np.ones((1, 1), dtype=bool)) == []


def test_factor_of_another_width_is_refused():
    _, _, layout, cv = _crossed((3, 1, [("ind", 2)], 2))
    with pytest.raises(ValueError, match="width"):
        cv.step(np.eye(layout.r + 1))
