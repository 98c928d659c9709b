"""label_index: pandas' own index of the names, a fresh view each call."""

import pandas as pd

from dmixed.results.labels import label_index


def test_label_index_is_pandas_index_of_the_names():
    names = ["Intercept", "x1", "Group Var", "Group x x1 Cov"]
    out = label_index(names)
    expected = pd.Index(names)
    pd.testing.assert_index_equal(out, expected)
    assert out.dtype == expected.dtype


def test_renaming_one_view_leaves_the_next_unnamed():
    names = ("a", "b Var")
    first = label_index(names)
    first.name = "renamed"
    second = label_index(list(names))
    assert second.name is None
    assert second is not first
    pd.testing.assert_index_equal(second, pd.Index(list(names)))
