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


def test_effect_labels_name_every_column_once_for_any_names():
    """Names holding commas, brackets, quotes or backslashes, a name given twice and a
    variance component named as a random effect: every ``re`` and ``cov`` column is
    named once, and a pair's column splits into its two labels one way only."""
    exog_re = ["a,b", "[x]", 'q"t', "c\\d", "z", "z", "v"]
    labels = columns.effect_labels(exog_re, ["v", "w,1"], [2, 1])
    assert labels[:4] == ['"a,b"', '"[x]"', '"q\\"t"', '"c\\\\d"']
    assert labels[4:] == ['"z"#4', '"z"#5', '"v"', '"v"[0]', '"v"[1]', '"w,1"[0]']
    r = len(labels)
    cols: dict = {}
    columns.put_vector(cols, "re", np.zeros((1, r)), labels)
    columns.put_lower_triangle(cols, "cov", np.zeros((1, r, r)), labels)
    assert len(cols) == r + r * (r + 1) // 2
    assert columns.matrix_column("cov", 1, 0, labels) == 'cov["[x]","a,b"]'
    mats = np.arange(r * r, dtype=np.float64).reshape(1, r, r)
    sym = mats + mats.transpose(0, 2, 1)
    cols = {}
    columns.put_lower_triangle(cols, "cov", sym, labels)
    np.testing.assert_array_equal(columns.take_lower_triangle(cols, "cov", r, 1, labels), sym)


def test_effect_labels_need_a_width_per_component():
    import pytest

    with pytest.raises(ValueError, match="2 variance components, 1 widths"):
        columns.effect_labels(["a"], ["v", "w"], [1])
