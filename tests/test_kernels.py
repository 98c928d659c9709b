"""Kernels against dense per-group linear algebra written out in the test."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmixed import kernels
from dmixed.stats import Layout


def _dense_reference(codes, y, x, z, lam):
    """Σ log|K_i|, [X y]'V*⁻¹[X y] and Σ S_i by explicit n_i × n_i matrices."""
    k = x.shape[1] + 1
    logdet, m, s_sum = 0.0, np.zeros((k, k)), np.zeros((z.shape[1], z.shape[1]))
    bstar = lam @ lam.T
    for g in np.unique(codes):
        idx = codes == g
        zi, xyi = z[idx], np.column_stack([x[idx], y[idx]])
        v = np.eye(idx.sum()) + zi @ bstar @ zi.T
        vinv = np.linalg.inv(v)
        logdet += np.linalg.slogdet(v)[1]
        m += xyi.T @ vinv @ xyi
        s_sum += zi.T @ vinv @ zi
    return logdet, m, s_sum


@pytest.mark.parametrize("r", [1, 2, 3, 4, 10])
def test_step_matches_dense_linear_algebra(r):
    rng = np.random.default_rng(r)
    n_groups = 17
    codes = np.repeat(np.arange(n_groups), rng.integers(1, 9, n_groups))
    n = codes.size
    x = np.column_stack([np.ones(n), rng.normal(size=(n, 2))])
    z = rng.normal(size=(n, r))
    y = rng.normal(size=n)
    lam = np.tril(rng.normal(size=(r, r)))
    st = kernels.accumulate_statistics(codes, n_groups, y, x, z)
    sums = kernels.step_contributions(kernels.StatsBlock(st["zz"], st["zxy"]), lam, r)
    logdet, vm, s_sum = _dense_reference(codes, y, x, z, lam)
    assert sums.logdet == pytest.approx(logdet, rel=1e-10)
    np.testing.assert_allclose(st["xyxy"] - sums.m, vm, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(sums.s, s_sum, rtol=1e-9, atol=1e-9)


def test_singular_lambda_is_finite():
    """Λ = 0 (all variances on the boundary): K = I, nothing blows up."""
    rng = np.random.default_rng(0)
    codes = np.repeat(np.arange(5), 4)
    st = kernels.accumulate_statistics(
        codes, 5, rng.normal(size=20), np.ones((20, 1)), rng.normal(size=(20, 2))
    )
    block = kernels.StatsBlock(st["zz"], st["zxy"])
    sums = kernels.step_contributions(block, np.zeros((2, 2)), 2)
    assert sums.logdet == 0.0
    assert np.all(np.isfinite(sums.m)) and np.all(sums.m == 0)
    blup, cov = kernels.random_effects_block(block, np.zeros((2, 2)), np.array([0.0, 1.0]))
    assert np.all(blup == 0) and np.all(cov == 0)


def test_statistics_add_over_row_splits():
    """Statistics are sums over rows: any split of the rows adds up to the whole."""
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 10, 300)
    y, x, z = rng.normal(size=300), rng.normal(size=(300, 3)), rng.normal(size=(300, 2))
    w = rng.uniform(0.5, 2, 300)
    whole, glob = kernels.accumulate_packed(codes, 10, y, x, z, w)
    cut = rng.permutation(300)
    a, b = cut[:120], cut[120:]
    pa, ga = kernels.accumulate_packed(codes[a], 10, y[a], x[a], z[a], w[a])
    pb, gb = kernels.accumulate_packed(codes[b], 10, y[b], x[b], z[b], w[b])
    np.testing.assert_allclose(pa + pb, whole, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ga["xyxy"] + gb["xyxy"], glob["xyxy"], rtol=1e-12)
    assert ga["sum_log_weights"] + gb["sum_log_weights"] == pytest.approx(glob["sum_log_weights"])
    nobs, zz, zxy = kernels.unpack_statistics(whole, 2)
    st = kernels.accumulate_statistics(codes, 10, y, x, z, w)
    np.testing.assert_array_equal(nobs, st["nobs"])
    np.testing.assert_allclose(zz, st["zz"], rtol=1e-14)
    np.testing.assert_allclose(zxy, st["zxy"], rtol=1e-14)
    i = codes == 4
    sw = np.sqrt(w[i])
    np.testing.assert_allclose(zz[4], (z[i] * sw[:, None]).T @ (z[i] * sw[:, None]), rtol=1e-12)


def test_vc_slots_rank_columns_within_group():
    codes = np.array([0, 0, 0, 1, 1, 2])
    cols = np.array([[5], [2], [5], [7], [7], [-1]])
    vals = np.array([[1.0], [1.0], [1.0], [1.0], [1.0], [0.0]])
    keys, slots, width = kernels.assign_vc_slots(codes, cols, vals)
    assert width == 2
    looked = kernels.lookup_vc_slots(codes, cols, vals, keys, slots, 8)
    np.testing.assert_array_equal(looked[:, 0], [1, 0, 1, 0, 0, -1])


def test_padding_slots_is_exact():
    """A zero slot (a group without that column) changes nothing (DESIGN.md §2)."""
    rng = np.random.default_rng(5)
    codes = np.repeat(np.arange(6), 5)
    z = rng.normal(size=(30, 1))
    x, y = np.ones((30, 1)), rng.normal(size=30)
    lay = Layout(1, (1,))
    lam = lay.lam(np.array([0.7, 0.4]), True)
    zpad = np.column_stack([z, np.zeros(30)])
    st = kernels.accumulate_statistics(codes, 6, y, x, zpad)
    st1 = kernels.accumulate_statistics(codes, 6, y, x, z)
    padded = kernels.step_contributions(kernels.StatsBlock(st["zz"], st["zxy"]), lam, 1)
    plain = kernels.step_contributions(kernels.StatsBlock(st1["zz"], st1["zxy"]), lam[:1, :1], 1)
    assert padded.logdet == pytest.approx(plain.logdet, rel=1e-13)
    np.testing.assert_allclose(padded.m, plain.m, rtol=1e-13)


def _packed_by_hand(codes, n_groups, y, x, z, w):
    """Packed statistics straight from the definition, one group at a time."""
    xy = np.column_stack([x, y])
    r, k = z.shape[1], xy.shape[1]
    sw = np.ones(len(y)) if w is None else np.sqrt(w)
    out = np.zeros((n_groups, kernels.packed_width(r, k)))
    rows, cols = np.tril_indices(r)
    for g in range(n_groups):
        i = codes == g
        zi, xyi = z[i] * sw[i, None], xy[i] * sw[i, None]
        out[g, 0] = i.sum()
        out[g, 1 : 1 + rows.size] = (zi.T @ zi)[rows, cols]
        out[g, 1 + rows.size :] = (zi.T @ xyi).ravel()
    return out


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_rows=st.integers(1, 60),
    n_groups=st.integers(1, 8),
    z_cols=st.lists(
        st.sampled_from(["ones", "x1", "x2", "y", "new", "zero", "binary"]), min_size=1, max_size=4
    ),
    intercept=st.booleans(),
    weighted=st.booleans(),
    layout=st.sampled_from(["rows", "columns", "views"]),
)
def test_packed_statistics_with_shared_columns(
    seed, n_rows, n_groups, z_cols, intercept, weighted, layout
):
    """Random-effect columns that repeat fixed-effect columns, the response, ones or
    zeros (the cases the product plan shares or skips) give the defined sums, whether
    ``X`` is row-major (copied), column-major (used in place) or ``Z̃`` is a view of it
    (as the design builds ``1 + x``: columns known equal without a compare)."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, n_groups, n_rows)
    x = rng.normal(size=(n_rows, 2))
    if intercept:
        x = np.column_stack([np.ones(n_rows), x])
    y = rng.normal(size=n_rows)
    source = {
        "ones": np.ones(n_rows),
        "x1": x[:, -2],
        "x2": x[:, -1],
        "y": y,
        "new": rng.normal(size=n_rows),
        "zero": np.zeros(n_rows),
        "binary": rng.integers(0, 2, n_rows).astype(float),
    }
    z = np.column_stack([source[c] for c in z_cols])
    if layout != "rows":
        x = np.asfortranarray(x)
    if layout == "views":
        z = x[:, : min(2, x.shape[1])]
    w = rng.uniform(0.2, 3.0, n_rows) if weighted else None
    packed, glob = kernels.accumulate_packed(codes, n_groups, y, x, z, w)
    np.testing.assert_allclose(
        packed, _packed_by_hand(codes, n_groups, y, x, z, w), rtol=1e-12, atol=1e-12
    )
    xyw = np.column_stack([x, y]) * (np.sqrt(w)[:, None] if weighted else 1.0)
    np.testing.assert_allclose(glob["xyxy"], xyw.T @ xyw, rtol=1e-12, atol=1e-12)
    acc = np.zeros((packed.shape[1], n_groups))
    kernels.accumulate_packed_into(acc, codes, y, x, z, w)
    kernels.accumulate_packed_into(acc, codes, y, x, z, w)  # adds, does not overwrite
    np.testing.assert_allclose(acc.T, 2 * packed, rtol=1e-12, atol=1e-12)


def test_product_plan_shares_columns():
    """Random intercept and slope on x1 with four fixed effects: 9 sums for 14 columns."""
    rng = np.random.default_rng(0)
    x = np.column_stack([np.ones(50), rng.normal(size=(50, 3))])
    xy = np.column_stack([x, rng.normal(size=50)])
    terms, column_term = kernels.product_plan(list(xy.T), x[:, :2])
    assert len(column_term) == 14
    assert len(terms) == 9
    assert sum(t[0] == "prod" for t in terms) == 4  # x1², x1·x2, x1·x3, x1·y


@pytest.mark.parametrize(("q", "widths"), [(1, ()), (2, ()), (2, (1,)), (3, (2, 1))])
def test_hessian_sums_match_their_definitions(monkeypatch, q, widths):
    """Each Hessian sum against its per-group definition (HessianSums' docstring), over
    several chunks of groups."""
    monkeypatch.setattr(kernels.groups, "GROUP_CHUNK", 7)
    rng = np.random.default_rng(q + len(widths))
    lay = Layout(q, widths)
    r, n_groups, k = lay.r, 23, 4
    zi = rng.normal(size=(n_groups, 5, r))
    zz = np.einsum("gia,gib->gab", zi, zi)
    zxy = rng.normal(size=(n_groups, r, k))
    lam = np.tril(rng.normal(size=(r, r))) + 1.5 * np.eye(r)
    lam[q:, :q] = 0.0  # variance components: diagonal block
    lam[q:, q:] = np.diag(np.diag(lam[q:, q:]))
    basis, w = lay.basis(), rng.normal(size=k)
    got = kernels.hessian_contributions(kernels.StatsBlock(zz, zxy), lam, basis, w)
    m, p = basis.shape[0], k - 1
    want = {
        "tr_ss": np.zeros((m, m)),
        "u_s_u": np.zeros((m, m)),
        "u_e_u": np.zeros(m),
        "g_e_u": np.zeros((m, p)),
        "a_j": np.zeros((m, p, p)),
        "a_jk": np.zeros((m, m, p, p)),
    }
    for i in range(n_groups):
        kmat = np.eye(r) + lam.T @ zz[i] @ lam
        pm = lam @ np.linalg.solve(kmat, lam.T)
        s = zz[i] - zz[i] @ pm @ zz[i]
        h = zxy[i] - zz[i] @ pm @ zxy[i]
        u, gm = h @ w, h[:, :p]
        for j in range(m):
            ej = basis[j]
            want["u_e_u"][j] += u @ ej @ u
            want["g_e_u"][j] += gm.T @ ej @ u
            want["a_j"][j] += gm.T @ ej @ gm
            for kk in range(m):
                ek = basis[kk]
                want["tr_ss"][j, kk] += np.trace(s @ ej @ s @ ek)
                want["u_s_u"][j, kk] += u @ ej @ s @ ek @ u
                want["a_jk"][j, kk] += 2 * gm.T @ ej @ s @ ek @ gm
    for name, value in want.items():
        np.testing.assert_allclose(getattr(got, name), value, rtol=1e-9, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("r", [1, 2, 4])
def test_moment_sums_match_their_definitions(monkeypatch, r):
    """Σ ZZ, Σ ZZ ⊗ ZZ and Σ ZXy ⊗ ZXy against per-group sums, over several chunks."""
    monkeypatch.setattr(kernels.groups, "GROUP_CHUNK", 5)
    rng = np.random.default_rng(r)
    n_groups, k = 17, 4
    zi = rng.normal(size=(n_groups, 6, r))
    zz = np.einsum("gia,gib->gab", zi, zi)
    zxy = rng.normal(size=(n_groups, r, k))
    got = kernels.moment_contributions(kernels.StatsBlock(zz, zxy))
    assert got.n_groups == n_groups
    np.testing.assert_allclose(got.zz, zz.sum(axis=0), rtol=1e-12)
    want_zz = sum(np.multiply.outer(a, a) for a in zz)
    want_zxy = sum(np.multiply.outer(c, c) for c in zxy)
    np.testing.assert_allclose(got.zz_zz, want_zz, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got.zxy_zxy, want_zxy, rtol=1e-12, atol=1e-12)
    # sums over blocks add up: any split of the groups gives the same total
    halves = kernels.moment_contributions(kernels.StatsBlock(zz[:6], zxy[:6]))
    halves = halves + kernels.moment_contributions(kernels.StatsBlock(zz[6:], zxy[6:]))
    np.testing.assert_allclose(halves.zz_zz, got.zz_zz, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
def test_few_rows_into_many_groups_sum_the_same(monkeypatch, weighted):
    """Rows far fewer than the accumulator's groups are summed over the groups present
    (cost in rows, not groups): bitwise the same as the sums over all groups."""
    rng = np.random.default_rng(3)
    n_groups, n = 10_000, 300
    codes = rng.integers(0, n_groups, n)
    x = np.column_stack([np.ones(n), rng.normal(size=(n, 2))])
    y = rng.normal(size=n)
    z = x[:, :2].copy()
    w = rng.uniform(0.5, 2.0, n) if weighted else None
    start = rng.normal(size=(kernels.packed_width(2, 4), n_groups))
    compact = start.copy()
    glob_c = kernels.accumulate_packed_into(compact, codes, y, x, z, w)
    monkeypatch.setattr(kernels, "COMPACT_BELOW", 0)  # sums over all groups
    dense = start.copy()
    glob_d = kernels.accumulate_packed_into(dense, codes, y, x, z, w)
    np.testing.assert_array_equal(compact, dense)
    np.testing.assert_array_equal(glob_c["xyxy"], glob_d["xyxy"])
