"""Variance-component slots: one numbering rule, for rows in one process or by group key."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmixed.stats.slots import (
    SlotMap,
    assign_vc_slots,
    lookup_vc_slots,
    number_pairs,
    number_vc_cells,
    number_vc_entries,
    slot_table,
)
from tests._synth import QUICK


def test_columns_are_numbered_within_their_group_in_increasing_order():
    keys = np.array([0 * 10 + 3, 0 * 10 + 7, 1 * 10 + 2, 2 * 10 + 1, 2 * 10 + 5, 2 * 10 + 9])
    slots, width = number_pairs(keys, 10)
    np.testing.assert_array_equal(slots, [0, 1, 0, 0, 1, 2])
    assert width == 3
    table = slot_table(keys, slots, 10, width, 3)
    np.testing.assert_array_equal(table, [[3, 7, -1], [2, -1, -1], [1, 5, 9]])
    empty, w0 = number_pairs(np.empty(0, dtype=np.int64), 10)
    assert empty.size == 0 and w0 == 0


def test_slot_map_by_key_numbers_as_rows_in_one_process():
    rng = np.random.default_rng(2)
    codes = rng.integers(0, 6, 80)
    cols = np.where(rng.random((80, 1)) < 0.8, rng.integers(0, 5, (80, 1)), -1)
    vals = np.ones((80, 1))
    keys, slots, width = assign_vc_slots(codes, cols, vals)
    labels = np.array([f"g{i}" for i in range(6)], dtype=object)
    present = (cols >= 0) & (vals != 0)
    pairs = pd.DataFrame({"key": labels[codes[present[:, 0]]], "col": cols[present]})
    pairs = pairs.drop_duplicates()
    smap = SlotMap.from_pairs(
        pairs["key"].to_numpy(), np.zeros(len(pairs), dtype=np.int64), pairs["col"].to_numpy(), [5]
    )
    assert smap.widths == (width,)
    ncols = int(cols.max()) + 1
    seen = np.unique(keys // ncols)
    local = slot_table(keys, slots, ncols, width, 6)[seen]
    (by_key,) = smap.slot_columns(labels[seen])
    np.testing.assert_array_equal(by_key, local)
    # and the rows' slots agree entry by entry
    (looked,) = smap.lookup(labels[codes], [cols], [vals])
    np.testing.assert_array_equal(
        looked[present], slots[np.searchsorted(keys, (codes[:, None] * ncols + cols)[present])]
    )


def test_vc_slots_rank_columns_within_group():
    codes = np.array([0, 0, 0, 1, 1, 2])
    cols = np.array([[5], [2], [5], [7], [7], [-1]])
    vals = np.array([[1.0], [1.0], [1.0], [1.0], [1.0], [0.0]])
    keys, slots, width = assign_vc_slots(codes, cols, vals)
    assert width == 2
    looked = lookup_vc_slots(codes, cols, vals, keys, slots, 8)
    np.testing.assert_array_equal(looked[:, 0], [1, 0, 1, 0, 0, -1])


@pytest.mark.parametrize("n_groups", [5, 300_000])  # keys marked, or sorted (a wide span)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_entries_numbered_in_one_pass_as_assigned_and_looked_up(n_groups, seed):
    """``number_vc_entries`` gives the pairs, slots and width of ``assign_vc_slots`` and
    every entry's slot as ``lookup_vc_slots`` (absent and zero entries: none)."""
    rng = np.random.default_rng(seed)
    n, k, ncols = 400, 2, 40
    codes = rng.integers(0, n_groups, n)
    cols = rng.integers(-1, ncols, (n, k))
    vals = np.where(rng.random((n, k)) < 0.1, 0.0, rng.standard_normal((n, k)))
    keys, slots, width = assign_vc_slots(codes, cols, vals)
    got_keys, got_slots, got_width, entry_pair = number_vc_entries(codes, cols, vals, n_groups)
    np.testing.assert_array_equal(got_keys, keys)
    np.testing.assert_array_equal(got_slots, slots)
    assert got_width == width
    ncols_used = int(cols.max()) + 1
    want = lookup_vc_slots(codes, cols, vals, keys, slots, ncols_used)
    np.testing.assert_array_equal(np.where(entry_pair >= 0, slots[entry_pair], -1), want)
    present = entry_pair >= 0
    np.testing.assert_array_equal(
        keys[entry_pair[present]], (codes[:, None] * ncols_used + cols)[present]
    )


@pytest.mark.parametrize("n_groups", [5, 300_000])  # keys marked, or sorted / by column
@pytest.mark.parametrize("complete", [False, True])  # absent/zero entries, or none
@pytest.mark.parametrize("nested", [False, True])  # each column in one group, or many
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("in_order", [False, True])  # rows sorted by group, then column
def test_cells_numbered_as_assigned_with_their_table_and_slots(
    n_groups, complete, nested, seed, in_order
):
    """``number_vc_cells``: the pairs of ``assign_vc_slots``, each pair's group and
    column, the ``slot_table`` and every entry's slot as ``lookup_vc_slots``; rows in
    any order or sorted by group, then (first) column (numbered from the runs)."""
    rng = np.random.default_rng(seed)
    n, ncols = 500, 60
    k = 1 if complete else 2
    cols = rng.integers(0 if complete else -1, ncols, (n, k))
    codes = rng.integers(0, n_groups, n)
    if nested:  # the group is a function of the (first) column: students in schools
        codes = rng.integers(0, n_groups, ncols)[np.maximum(cols[:, 0], 0)]
        cols[:, 1:] = np.where(cols[:, 1:] >= 0, cols[:, :1], -1)
    if in_order:
        order = np.lexsort((cols[:, 0], codes))
        codes, cols = codes[order], cols[order]
    vals = rng.standard_normal((n, k))
    if not complete:
        vals[rng.random((n, k)) < 0.1] = 0.0
    keys, slots, width = assign_vc_slots(codes, cols, vals)
    num = number_vc_cells(codes, cols, vals, n_groups)
    assert num.complete == complete
    np.testing.assert_array_equal(num.pair_keys, keys)
    np.testing.assert_array_equal(num.pair_slots, slots)
    assert num.width == width
    ncols_used = int(cols.max()) + 1
    np.testing.assert_array_equal(num.pair_group * ncols_used + num.pair_col, keys)
    want = lookup_vc_slots(codes, cols, vals, keys, slots, ncols_used)
    np.testing.assert_array_equal(num.entry_slots(), want)
    np.testing.assert_array_equal(
        num.table(n_groups), slot_table(keys, slots, ncols_used, width, n_groups)
    )


def test_entries_of_no_rows_are_numbered_empty():
    empty = np.zeros((0, 1), dtype=np.int64)
    keys, slots, width, entry_pair = number_vc_entries(
        np.zeros(0, dtype=np.int64), empty, empty.astype(float), 0
    )
    assert keys.size == slots.size == entry_pair.size == width == 0


@settings(max_examples=40, **QUICK)
@given(
    st.integers(1, 6),
    st.integers(1, 8),
    st.integers(0, 30),
    st.booleans(),
    st.integers(0, 10**6),
    st.booleans(),
)
def test_full_grid_numbered_as_assigned(n_groups, ncols, extra, second, seed, in_order):
    """Every group with an entry in every column (a balanced crossed design, the rows in
    any order or sorted by group and column, repeated, a second column of entries partly
    absent or zero): ``number_vc_cells`` gives the pairs, groups, columns, slots, width,
    table and every entry's slot of ``assign_vc_slots`` / ``lookup_vc_slots`` /
    ``slot_table``."""
    rng = np.random.default_rng(seed)
    grid = np.arange(n_groups * ncols)
    pick = np.r_[grid, rng.integers(0, grid.size, extra)]
    pick = np.sort(pick) if in_order else pick[rng.permutation(pick.size)]
    codes, cols = pick // ncols, (pick % ncols)[:, None]
    vals = rng.uniform(0.5, 2.0, cols.shape)
    if second:  # absent (-1) or zero entries: not every entry present
        more = np.where(rng.random(pick.size) < 0.5, rng.integers(0, ncols, pick.size), -1)
        cols = np.c_[cols, more]
        vals = np.c_[vals, np.where((more >= 0) & (rng.random(pick.size) < 0.8), 1.0, 0.0)]
    keys, slots, width = assign_vc_slots(codes, cols, vals)
    num = number_vc_cells(codes, cols, vals, n_groups)
    assert num.complete == bool(((cols >= 0) & (vals != 0)).all())
    np.testing.assert_array_equal(num.pair_keys, keys)
    np.testing.assert_array_equal(num.pair_slots, slots)
    np.testing.assert_array_equal(num.pair_group * ncols + num.pair_col, keys)
    assert num.width == width == ncols
    want = lookup_vc_slots(codes, cols, vals, keys, slots, ncols)
    np.testing.assert_array_equal(num.entry_slots(), want)
    np.testing.assert_array_equal(
        num.table(n_groups), slot_table(keys, slots, ncols, width, n_groups)
    )
