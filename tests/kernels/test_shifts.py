"""Sums about a shift of each group's own (kernels/shifts.py): any split of the rows into
parts, added by key, gives the centred sums of two passes over all of them."""

from __future__ import annotations

import numpy as np
import pytest

from dmixed import kernels
from dmixed.kernels import shifts
from dmixed.kernels.conditionals import centred_from_shifted
from dmixed.kernels.rows import prepare_rows
from dmixed.stats.standardize import Standardization


def _rows(seed: int, spread: float):
    """Groups of 1–6 rows with a slope ``t`` near 1.7e9 within ``spread`` of a value of
    their own (timestamps), a fixed-effect column and the response."""
    rng = np.random.default_rng(seed)
    n_groups = 30
    codes = np.repeat(np.arange(n_groups), rng.integers(1, 7, n_groups))
    n = codes.size
    t = 1.7e9 + 3e7 * rng.random(n_groups)[codes] + spread * rng.normal(size=n)
    x2 = rng.normal(size=n)
    y = 1e-7 * t + rng.normal(size=n_groups)[codes] + rng.normal(size=n)
    exog = np.column_stack([np.ones(n), t, x2])
    return codes, y, exog, exog[:, :2].copy()


def _std(exog, y) -> Standardization:
    return Standardization.choose(y, exog, exog[:, :2].copy())


@pytest.mark.parametrize("spread", [1e-3, 10.0])
@pytest.mark.parametrize("n_parts", [1, 3, 7])
def test_parts_added_by_key_give_the_centred_sums(spread, n_parts):
    """The rows split at random into ``n_parts`` parts, each part's sums about its own
    first rows (:func:`shifts.rows_part`), added by key (:func:`shifts.merge_parts`,
    each taken to another map on the way) give the centred sums of two passes over all
    the rows (:func:`kernels.centred_statistics`) to rounding of the group's spread."""
    codes, y, exog, z = _rows(n_parts, spread)
    std = _std(exog, y)
    n_groups = codes.max() + 1
    st = kernels.accumulate_statistics(codes, n_groups, y, exog, z, None, std)
    zz, zxy = np.moveaxis(st["zz"], 0, -1), np.moveaxis(st["zxy"], 0, -1)
    lossy = kernels.lossy_groups(zz, st["nobs"])
    assert lossy.any()
    rng = np.random.default_rng(n_parts)
    part_of = rng.integers(0, n_parts, codes.size)
    moved = exog[::2] + np.array([0.0, 5e6, 3.0])  # another map: other shifts and scales
    other = Standardization.choose(y[::2] * 8.0 + 0.5, moved, moved[:, :2].copy())
    assert other != std
    parts = []
    for p in range(n_parts):
        rows = part_of == p
        if not rows.any():
            continue
        keys, local = np.unique(codes[rows], return_inverse=True)
        mine = other if p % 2 else std
        part = shifts.rows_part(keys, local, y[rows], exog[rows], z[rows], None, mine)
        parts.append(part if mine is std else part.in_map(std))
    merged = shifts.merge_parts(parts)
    sel = np.flatnonzero(lossy)
    side = merged.of_keys(sel)
    assert side is not None and np.array_equal(side.count, st["nobs"][sel])
    inputs = side.layout.centred_inputs(side, 2, 4)
    got = centred_from_shifted(zz, zxy, 0, sel, inputs, side.layout.shared)
    want = kernels.centred_statistics(codes, n_groups, y, exog, z, lossy, None, std)
    for name in ("u", "zbar", "mean"):
        np.testing.assert_allclose(getattr(got, name), getattr(want, name)[..., sel], rtol=1e-13)
    for name in ("c", "d"):
        a, b = getattr(got, name), getattr(want, name)[..., sel]
        scale = np.abs(b).max(axis=(0, 1))  # each group's own size
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9 * scale.max())
        assert np.all(np.abs(a - b).max(axis=(0, 1)) <= 1e-9 * scale + 1e-300)


def test_layout_of_finds_the_intercept_slopes_and_shared_columns():
    codes, y, exog, z = _rows(0, 1.0)
    std = _std(exog, y)
    rows = prepare_rows(y, exog, z, None, std, gram=np.zeros((3, 3)))
    layout = shifts.layout_of(rows.zcols, rows.xcols, std)
    assert layout is not None
    assert (layout.z, layout.e, layout.shared, layout.others) == ((1,), 0, (0, 1, -1, -1), (2, 3))
    # weights, or no slope: none kept
    assert shifts.rows_part(np.arange(30), codes, y, exog, z, np.ones(codes.size), std) is None
    assert shifts.rows_part(np.arange(30), codes, y, exog, z[:, :1], None, std) is None


def test_merge_refuses_parts_of_other_layouts():
    codes, y, exog, z = _rows(1, 1.0)
    std = _std(exog, y)
    keys = np.arange(codes.max() + 1)
    a = shifts.rows_part(keys, codes, y, exog, z, None, std)
    b = shifts.rows_part(keys, codes, y, exog[:, :2], z, None, _std(exog[:, :2], y))
    assert a is not None and b is not None
    assert shifts.merge_parts([a, b]) is None
    assert shifts.merge_parts([a]) is a
    assert a.of_keys(np.array([10**9])) is None
