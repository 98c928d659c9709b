"""The packed per-group layout: one owner of the order the kernels fill and engines read."""

from __future__ import annotations

import numpy as np

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
