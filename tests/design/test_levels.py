"""Levels of integer columns found as arrays, and values numbered among sorted levels."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmixed.design.levels import UNKNOWN_CODE, level_positions, sorted_integers, sorted_levels
from tests._synth import QUICK

DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint32, np.uint64]


@settings(max_examples=60, **QUICK)
@given(
    st.sampled_from(DTYPES),
    st.integers(0, 200),
    st.sampled_from([3, 300, 10**6]),  # a narrow range (bitmap) or a wide one (unique)
    st.integers(0, 2**32),
)
def test_sorted_integers_are_the_sorted_levels(dtype, n, spread, seed):
    """``sorted_integers(v).tolist()`` is ``sorted_levels`` of the values as Python ints,
    for every integer dtype, at the ends of its range too (no overflow of offsets)."""
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    starts = [int(info.min), 0, int(info.max) - min(spread, int(info.max) - int(info.min))]
    low = starts[int(rng.integers(0, 3))]
    high = min(low + spread, info.max)
    values = rng.integers(low, high, n, dtype=dtype, endpoint=True)
    found = sorted_integers(values)
    assert found.tolist() == sorted_levels(values.tolist())


def test_sorted_integers_beyond_int64():
    values = np.array([2**64 - 1, 2**63 + 5, 2**64 - 1, 3], dtype=np.uint64)
    assert sorted_integers(values).tolist() == [3, 2**63 + 5, 2**64 - 1]


@settings(max_examples=60, **QUICK)
@given(
    st.sampled_from(["int", "contiguous", "wide", "float", "bool"]),
    st.integers(1, 50),
    st.integers(0, 300),
    st.booleans(),
    st.integers(0, 2**32),
)
def test_level_positions_are_the_search_and_membership(kind, n_levels, n, unknown, seed):
    """Each value's position among the sorted levels (``searchsorted``) where it is a
    level, ``UNKNOWN_CODE`` where not (``isin``), whichever way the positions are found:
    levels that are every integer of a range, integers of a narrow range (a table),
    integers of a wide range, floats and booleans (a search)."""
    rng = np.random.default_rng(seed)
    if kind == "contiguous":
        levels = np.arange(n_levels, dtype=np.int64) - 7
    elif kind == "int":
        levels = np.unique(rng.integers(-40, 60, n_levels))
    elif kind == "wide":
        levels = np.unique(rng.integers(-(2**50), 2**50, n_levels))
    elif kind == "float":
        levels = np.unique(rng.standard_normal(n_levels).round(2))
    else:
        levels = np.array([False, True][: min(n_levels, 2)])
    values = levels[rng.integers(0, levels.size, n)]
    if unknown and n:
        other = np.array([levels.max() + 1, levels.min() - 1], dtype=levels.dtype)
        if kind in ("int", "float"):
            other = np.r_[other, (levels[:1] + levels[-1:]) / 2 + 0.5].astype(levels.dtype)
        values[rng.random(n) < 0.2] = rng.choice(other)
    got = level_positions(levels, values)
    known = np.isin(values, levels)
    want = np.where(known, np.searchsorted(levels, values), UNKNOWN_CODE)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.int64, np.uint64])
def test_level_positions_of_no_levels_or_values(dtype):
    levels = np.array([1, 5], dtype=dtype)
    assert level_positions(levels, np.zeros(0, dtype=dtype)).size == 0
    np.testing.assert_array_equal(
        level_positions(levels[:0], np.array([1], dtype=dtype)), [UNKNOWN_CODE]
    )
