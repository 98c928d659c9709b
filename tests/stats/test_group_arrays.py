"""dmixed.stats.group_arrays: renumbering the variance components' columns."""

from __future__ import annotations

import numpy as np
import pytest

from dmixed.stats.group_arrays import GroupArrays, no_padding
from dmixed.stats.layout import Layout
from dmixed.stats.statistics import GlobalStats


def _arrays() -> GroupArrays:
    zz, zxy = no_padding(3, 2)
    tables = [np.array([[0, 2], [1, -1], [-1, -1]]), np.array([[0], [0], [-1]])]
    glob = GlobalStats(np.eye(2), 10, 0.0, None)
    return GroupArrays(np.arange(3), np.array([4, 3, 3]), zz, zxy, tables, glob, Layout(0, (2, 1)))


def test_renumbered_maps_used_slots_and_keeps_unused_ones():
    arrays = _arrays()
    out = arrays.renumbered([np.array([1, 3, 4]), np.array([2])])
    np.testing.assert_array_equal(out.slot_cols[0], [[1, 4], [3, -1], [-1, -1]])
    np.testing.assert_array_equal(out.slot_cols[1], [[2], [2], [-1]])
    np.testing.assert_array_equal(arrays.slot_cols[0], [[0, 2], [1, -1], [-1, -1]])  # a copy


@pytest.mark.parametrize(
    "maps",
    [
        [np.array([0, 1, 2])],
        [np.array([2, 1, 3]), np.array([0])],
        [np.array([0, -1, 2]), np.array([0])],
    ],
)
def test_renumbered_refuses_maps_that_lose_a_column_or_its_order(maps):
    with pytest.raises(ValueError):
        _arrays().renumbered(maps)
