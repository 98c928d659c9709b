"""Variance-component slots: one numbering rule, for rows in one process or by group key."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dmixed.stats.slots import SlotMap, assign_vc_slots, lookup_vc_slots, number_pairs, slot_table


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
