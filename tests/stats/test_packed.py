"""The packed per-group layout: one owner of the order the kernels fill and engines read."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dmixed import kernels
from dmixed.stats import tril_indices
from dmixed.stats.packed import PackedLayout


def test_packed_rows_round_trip_to_the_plain_statistics():
    rng = np.random.default_rng(0)
    n, r, p = 200, 3, 2
    codes = rng.integers(0, 7, n)
    x = rng.normal(size=(n, p))
    z = rng.normal(size=(n, r))
    y = rng.normal(size=n)
    packed, glob = kernels.accumulate_packed(codes, 7, y, x, z)
    layout = PackedLayout(r, p + 1)
    assert packed.shape == (7, layout.width) == (7, 1 + 6 + 9)
    assert PackedLayout.of_width(r, layout.width) == layout
    nobs, zz, zxy = layout.unpack(packed)
    xy = np.column_stack([x, y])
    for g in range(7):
        rows = codes == g
        assert nobs[g] == rows.sum()
        np.testing.assert_allclose(zz[g], z[rows].T @ z[rows], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(zxy[g], z[rows].T @ xy[rows], rtol=1e-12, atol=1e-12)
    assert not np.shares_memory(zxy, packed)
    # the columns say what they sum, in packed order: the triangle in tril_indices order
    sources = layout.column_sources()
    assert sources[0] == ("n",)
    rows_, cols_ = tril_indices(r)
    assert sources[1 : 1 + layout.n_zz] == [("zz", a, b) for a, b in zip(rows_, cols_, strict=True)]
    assert sources[1 + layout.n_zz] == ("zxy", 0, 0)
    # the global sums travel packed too
    back, n_rows, slw, dropped = layout.unpack_global(layout.pack_global(glob, n_dropped=4))
    np.testing.assert_array_equal(back, glob["xyxy"])
    assert (n_rows, slw, dropped) == (n, 0.0, 4)
    assert layout.empty_global(2).shape == (layout.global_width,)


@settings(max_examples=25)
@given(r=st.integers(1, 9), k=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_conversion_maps_rows_of_the_converted_columns(r, k, seed):
    """``rows @ W`` are the packed rows of ``Z M_z`` and ``[X y] M_x`` (any square maps,
    not only the shift-and-scale ones): ``W`` as the definition gives it, to rounding."""
    rng = np.random.default_rng(seed)
    layout = PackedLayout(r, k)
    m_z, m_x = rng.normal(size=(r, r)), rng.normal(size=(k, k))
    z, xy = rng.normal(size=(3, 7, r)), rng.normal(size=(3, 7, k))

    def rows(z, xy):
        zz = np.einsum("gna,gnb->gab", z, z)
        return layout.pack(np.full(3, 7.0), zz, np.einsum("gna,gnk->gak", z, xy))

    want = rows(z @ m_z, xy @ m_x)
    got = rows(z, xy) @ layout.conversion(m_z, m_x)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())


def test_conversion_of_a_wide_design_is_block_diagonal():
    """r = 56 (two crossed components of 30 and 25 levels and an intercept): ``W`` built
    in closed form (O(width²)), not by mapping the identity's rows (O(width · r⁴) by an
    einsum: minutes); checked on its block structure and one entry."""
    layout = PackedLayout(56, 4)
    m_z = np.eye(56)
    m_z[0, 1:] = 0.5  # a shift of every column by half the intercept
    w = layout.conversion(m_z, np.eye(4))
    tri, cross = layout.slices()
    assert w.shape == (layout.width, layout.width) and w[0, 0] == 1.0
    assert not w[0, 1:].any() and not w[tri, cross].any() and not w[cross, tri].any()
    np.testing.assert_array_equal(w[cross, cross], np.kron(m_z, np.eye(4)))


@settings(max_examples=20)
@given(k=st.integers(1, 12), within=st.booleans(), seed=st.integers(0, 2**16))
def test_convert_global_maps_the_sums_of_the_converted_columns(k, within, seed):
    """``convert_global`` gives the packed global sums of ``[X y] M_x`` (and of the
    within-group sums), counts unchanged; absent within-group sums stay absent."""
    rng = np.random.default_rng(seed)
    layout = PackedLayout(1, k)
    xy, m_x = rng.normal(size=(9, k)), rng.normal(size=(k, k))

    def glob(xy):
        sums = {"n": 9, "sum_log_weights": 0.5, "xyxy": xy.T @ xy}
        if within:
            sums["within"] = 2.0 * xy.T @ xy
        return layout.pack_global(sums, n_dropped=2)

    want, got = glob(xy @ m_x), layout.convert_global(glob(xy), m_x)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    np.testing.assert_allclose(got[ok], want[ok], rtol=0, atol=1e-12 * np.abs(want[ok]).max())


@settings(max_examples=20)
@given(k=st.integers(1, 9), step=st.sampled_from([-2, -1, 1, 3]), seed=st.integers(0, 2**16))
def test_convert_global_to_another_weights_scale_is_that_of_the_weights_scaled(k, step, seed):
    """Sums of weights ``w`` converted by ``ρ = 4^step`` (``M_x`` holding ``√ρ``, as
    ``conversion_to(..., weights=True)`` gives it) are the sums of weights ``ρ w``, bit
    for bit where a sum is one product (powers of two): the cross-products, the column
    sums, the weights' sum, and ``Σ log w`` plus ``n log ρ``."""
    rng = np.random.default_rng(seed)
    layout = PackedLayout(1, k)
    xy, w = rng.normal(size=(9, k)), rng.uniform(0.5, 2.0, 9)
    m_x = rng.normal(size=(k, k))
    ratio = 4.0**step

    def glob(weights, columns):
        sums = {"n": 9, "sum_log_weights": float(np.log(weights).sum())}
        sums["xyxy"] = (columns.T * weights) @ columns
        sums["within"] = 0.5 * sums["xyxy"]
        sums["column_sums"] = np.append(weights @ columns, weights.sum())
        return layout.pack_global(sums)

    want = glob(ratio * w, xy @ m_x)
    got = layout.convert_global(glob(w, xy), np.sqrt(ratio) * m_x, ratio)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())


@settings(max_examples=20)
@given(k=st.integers(1, 9), within=st.booleans(), seed=st.integers(0, 2**16))
def test_global_slices_hold_what_pack_global_packs(k, within, seed):
    """One owner of the global sums' order: after the head (n, Σ log w, rows dropped),
    the ``[X y]'[X y]`` triangle, the within-group triangle and the column sums, to the
    end of the packed vector."""
    rng = np.random.default_rng(seed)
    layout = PackedLayout(2, k)
    xy = rng.normal(size=(6, k))
    sums = {"n": 6, "sum_log_weights": 0.25, "xyxy": xy.T @ xy}
    sums["column_sums"] = np.append(xy.sum(axis=0), 6.0)
    if within:
        sums["within"] = 3.0 * xy.T @ xy
    packed = layout.pack_global(sums, n_dropped=5)
    xyxy, tri, col = layout.global_slices()
    rows, cols = tril_indices(k)
    assert xyxy.start == 3 and xyxy.stop == tri.start and tri.stop == col.start
    assert col.stop == layout.global_width == packed.size
    np.testing.assert_array_equal(packed[:3], [6.0, 0.25, 5.0])
    np.testing.assert_array_equal(packed[xyxy], sums["xyxy"][rows, cols])
    np.testing.assert_array_equal(packed[col], sums["column_sums"])
    if within:
        np.testing.assert_array_equal(packed[tri], sums["within"][rows, cols])
    else:
        assert np.isnan(packed[tri]).all()
