"""Sums about a shift of each group's own (kernels/shifts.py): any split of the rows into
parts, added by key, gives the centred sums of two passes over all of them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    # no slope: none kept
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


def _split_parts(codes, y, exog, z, w, std, other, part_of) -> list:
    """The rows of each part (``part_of`` (n,)), their :func:`shifts.rows_part` in
    ``std`` (even parts) or in ``other`` taken to ``std`` (odd ones)."""
    parts = []
    for p in np.unique(part_of):
        rows = part_of == p
        keys, local = np.unique(codes[rows], return_inverse=True)
        mine = other if p % 2 else std
        wp = None if w is None else w[rows]
        part = shifts.rows_part(keys, local, y[rows], exog[rows], z[rows], wp, mine)
        parts.append(part if mine is std else part.in_map(std))
    return parts


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**16),
    log_spread=st.floats(-3.0, 1.0),
    offset=st.sampled_from([0.0, 1e6, 1.7e9]),
    log4_scale=st.integers(-3, 3),
    log4_span=st.integers(0, 3),
    n_parts=st.integers(1, 6),
)
def test_weighted_parts_added_by_key_give_the_weighted_centred_sums(
    seed, log_spread, offset, log4_scale, log4_span, n_parts
):
    """Weighted rows split at random into parts, each part's weighted sums about its
    own first rows, added by key (each odd part taken from another map): the weighted
    centred sums of two passes over all the rows (:func:`kernels.centred_statistics`,
    the in-process reference) to rounding of the group's spread, however the rows are
    split and whatever the slope's offset.  The weights are powers of 4 (``4^scale``
    times ``4^±span``): their ``√w`` is exact, so that the reference, which sums
    the rows scaled by ``√w``, holds the digits of the spread too (with other weights
    ``√w z`` rounds to the size of ``z``'s spread between groups: the next test)."""
    codes, y, exog, z = _rows(seed, 10.0**log_spread)
    exog[:, 1] += offset - 1.7e9
    z = exog[:, :2].copy()
    rng = np.random.default_rng(seed + 1)
    w = 4.0 ** (log4_scale + rng.integers(-log4_span, log4_span + 1, codes.size))
    got, want, sel = _weighted_centred(codes, y, exog, z, w, n_parts, rng)
    for name in ("u", "zbar", "mean"):
        np.testing.assert_allclose(getattr(got, name), getattr(want, name)[..., sel], rtol=1e-12)
    for name in ("c", "d"):
        a, b = getattr(got, name), getattr(want, name)[..., sel]
        scale = np.abs(b).max(axis=(0, 1))  # each group's own size
        assert np.all(np.abs(a - b).max(axis=(0, 1)) <= 1e-9 * scale + 1e-300)


def _weighted_centred(codes, y, exog, z, w, n_parts, rng) -> tuple:
    """``(from the parts, the reference, the groups compared)``: the centred sums of
    the groups of more than one row from the weighted parts of a random split
    (:func:`_split_parts`) and from :func:`kernels.centred_statistics`."""
    std = Standardization.choose(y, exog, z, weights=w)
    w = std.weights_in_statistics(w)
    n_groups = codes.max() + 1
    sums = kernels.accumulate_statistics(codes, n_groups, y, exog, z, w, std)
    zz, zxy = np.moveaxis(sums["zz"], 0, -1), np.moveaxis(sums["zxy"], 0, -1)
    lossy = sums["nobs"] > 1
    moved = exog[::2] + np.array([0.0, 5e6, 3.0])
    other = Standardization.choose(y[::2] * 8.0 + 0.5, moved, moved[:, :2].copy(), weights=w[::2])
    part_of = rng.integers(0, n_parts, codes.size)
    merged = shifts.merge_parts(_split_parts(codes, y, exog, z, w, std, other, part_of))
    sel = np.flatnonzero(lossy)
    side = merged.of_keys(sel)
    assert side is not None and np.array_equal(side.count, sums["nobs"][sel])
    inputs = side.layout.centred_inputs(side, 2, 4)
    got = centred_from_shifted(zz, zxy, 0, sel, inputs, side.layout.shared)
    return got, kernels.centred_statistics(codes, n_groups, y, exog, z, lossy, w, std), sel


@pytest.mark.parametrize("n_parts", [1, 3])
@pytest.mark.parametrize("log_spread", [-3.0, 0.0])
def test_weighted_parts_of_any_weights_within_the_references_rounding(n_parts, log_spread):
    """Weights of any value: the reference rounds ``√w z`` to ``z``'s size (the spread
    of the slope between groups, about 3e7 here), so it is off by about ε·3e7 of each
    group's spread; the sums from the parts agree with it within that, and exactly as
    the weights of powers of 4 do in ``u`` and the means."""
    codes, y, exog, z = _rows(n_parts, 10.0**log_spread)
    rng = np.random.default_rng(n_parts)
    w = rng.uniform(0.1, 10.0, codes.size)
    got, want, sel = _weighted_centred(codes, y, exog, z, w, n_parts, rng)
    for name in ("u", "zbar", "mean"):
        np.testing.assert_allclose(getattr(got, name), getattr(want, name)[..., sel], rtol=1e-12)
    spread = np.sqrt(want.c[1, 1, sel] / want.u[sel])  # the slope's within the group
    size = np.abs(z[:, 1] - np.mean(z[:, 1])).max() / Standardization.choose(y, exog, z).z_scale[1]
    for name in ("c", "d"):
        a, b = getattr(got, name), getattr(want, name)[..., sel]
        scale = np.abs(b).max(axis=(0, 1))
        allowed = (1e-9 + 64 * np.finfo(float).eps * size / spread) * scale
        assert np.all(np.abs(a - b).max(axis=(0, 1)) <= allowed)


@pytest.mark.parametrize("n_parts", [1, 4])
def test_weights_of_one_give_the_unweighted_parts_bit_for_bit(n_parts):
    """Weights of 1: every part, and their merge, is the unweighted one's bit for bit."""
    codes, y, exog, z = _rows(n_parts, 1e-2)
    std = _std(exog, y)
    moved = exog[::2] + np.array([0.0, 5e6, 3.0])
    other = Standardization.choose(y[::2] * 8.0 + 0.5, moved, moved[:, :2].copy())
    part_of = np.random.default_rng(n_parts).integers(0, n_parts, codes.size)
    ones = _split_parts(codes, y, exog, z, np.ones(codes.size), std, other, part_of)
    plain = _split_parts(codes, y, exog, z, None, std, other, part_of)
    merged = [shifts.merge_parts(ones), shifts.merge_parts(plain)]
    for a, b in zip([*ones, merged[0]], [*plain, merged[1]], strict=True):
        assert a.layout == b.layout
        for name in ("keys", "count", "wsum", "first", "dsum", "dgram", "dxy", "xsum"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


_FIELDS = ("keys", "count", "wsum", "first", "dsum", "dgram", "dxy", "xsum")


@pytest.mark.parametrize("n_parts", [1, 2, 5])
@pytest.mark.parametrize("text", [False, True])
def test_parts_merged_at_known_positions_equal_the_merge_by_key(n_parts, text):
    """:func:`shifts.merge_parts_at` (the groups' positions in the keys given, no hash)
    gives ``merge_parts(parts).of_keys(keys)`` bit for bit, for keys in another order
    than their first appearance, a part without groups among the parts and one part."""
    codes, y, exog, z = _rows(40 + n_parts, 1e-3)
    std = _std(exog, y)
    labels = np.array([f"g{i}é" for i in range(codes.max() + 1)], dtype=object)
    rng = np.random.default_rng(n_parts)
    part_of = rng.integers(0, n_parts, codes.size)
    parts = []
    for p in range(n_parts):
        rows = part_of == p
        keys, local = np.unique(codes[rows], return_inverse=True)
        order = rng.permutation(keys.size)  # a part's groups in any order
        keys, local = keys[order], np.argsort(order)[local]
        parts.append(
            shifts.rows_part(
                labels[keys] if text else keys, local, y[rows], exog[rows], z[rows], None, std
            )
        )
    parts.insert(1, parts[0].take(np.zeros(0, dtype=np.int64)))  # no groups
    held = np.concatenate([p.keys for p in parts])
    keys = np.unique(held)[::-1]  # not the order of first appearance
    where = {k: i for i, k in enumerate(keys.tolist())}
    at = [np.array([where[k] for k in p.keys.tolist()], dtype=np.int64) for p in parts]
    got = shifts.merge_parts_at(parts, at, keys)
    want = shifts.merge_parts(parts).of_keys(keys)
    for name in _FIELDS:
        a, b = getattr(got, name), getattr(want, name)
        if name == "keys":
            assert a.tolist() == b.tolist()
        else:
            assert a.tobytes() == b.tobytes()
