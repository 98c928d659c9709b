"""Column names of per-group tables: what is put is taken back."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dmixed.stats import columns


def test_put_and_take_round_trip():
    rng = np.random.default_rng(0)
    g, r = 5, 3
    vec = rng.normal(size=(g, r))
    a = rng.normal(size=(g, r, r))
    sym = a + a.transpose(0, 2, 1)
    slots = [rng.integers(-1, 4, size=(g, 2)), np.zeros((g, 0), dtype=np.int64)]
    cols: dict = {columns.GROUP: np.arange(g)}
    columns.put_vector(cols, "re", vec)
    columns.put_lower_triangle(cols, "cov", sym)
    columns.put_vc_slots(cols, slots)
    frame = pd.DataFrame(cols)
    assert list(frame.columns) == [
        "group",
        "re[0]",
        "re[1]",
        "re[2]",
        "cov[0,0]",
        "cov[1,0]",
        "cov[1,1]",
        "cov[2,0]",
        "cov[2,1]",
        "cov[2,2]",
        "vc_column[0][0]",
        "vc_column[0][1]",
    ]
    np.testing.assert_array_equal(columns.take_vector(frame, "re", r, g), vec)
    np.testing.assert_array_equal(columns.take_lower_triangle(frame, "cov", r, g), sym)
    back = columns.take_vc_slots(frame, [2, 0], g)
    for got, want in zip(back, slots, strict=True):
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, want)
    assert columns.take_vector(frame, "re", 0, g).shape == (g, 0)
