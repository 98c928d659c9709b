"""Columns of one value held broadcast."""

from __future__ import annotations

import numpy as np
import pytest

from dmixed.stats.constant import constant_entries, constant_value


@pytest.mark.parametrize("value", [1.0, -2.5, 0.0, np.inf])
def test_constant_entries_are_the_full_array_read_only(value):
    a = constant_entries(value, (7, 1))
    np.testing.assert_array_equal(a, np.full((7, 1), value))
    assert a.dtype == np.float64 and not a.flags.writeable
    assert constant_value(a) == value
    assert constant_value(a[:, 0]) == value
    with pytest.raises(ValueError):
        a[0, 0] = 3.0


def test_arrays_written_out_are_not_looked_at():
    assert constant_value(np.ones((7, 1))) is None  # equal values, held as n floats
    assert constant_value(np.ones(1)) is None
    assert constant_value(constant_entries(1.0, (0, 1))) is None
