"""dmixed.design.missing: the missing-value policy on formulas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dmixed.design import build_spec
from dmixed.design.dtypes import CATEGORICAL, NUMERIC
from dmixed.design.missing import missing_mask, missing_rows

from .frames import make_df


def test_missing_raise_names_columns_and_counts():
    df = make_df(50)
    df.loc[[1, 2, 3], "x1"] = np.nan
    df["g"] = df["g"].astype("Int64")
    df.loc[7, "g"] = pd.NA
    df.loc[9, "a"] = None
    with pytest.raises(ValueError) as exc:
        build_spec(df, "y ~ x1 + a", groups="g")
    msg = str(exc.value)
    assert (
        msg == "missing values in column 'x1' (3 rows), column 'a' (1 row), column 'g' (1 row); "
        'pass missing="drop" to drop them'
    )


def test_missing_drop_counts_and_rows():
    df = make_df(60)
    df.loc[[1, 2], "x1"] = np.nan
    df.loc[[2, 5], "cls"] = None
    df.loc[[8], "w"] = np.nan
    df.loc[[11], "y"] = np.nan
    df.loc[[20], "x2"] = np.nan  # x2 is not used: no drop
    spec = build_spec(
        df, "y ~ x1", groups="g", vc_formula={"c": "0 + C(cls)"}, weights="w", missing="drop"
    )
    dm = spec.transform(df)
    assert dm.n_dropped == 5
    keep = ~df.index.isin([1, 2, 5, 8, 11])
    np.testing.assert_array_equal(dm.endog, df["y"].to_numpy()[keep])
    np.testing.assert_array_equal(dm.groups, df["g"].to_numpy()[keep])
    np.testing.assert_array_equal(dm.weights, df["w"].to_numpy()[keep])
    # raise mode names every column
    with pytest.raises(
        ValueError,
        match=r"column 'y' \(1 row\), column 'x1' \(2 rows\), "
        r"column 'cls' \(2 rows\), column 'w' \(1 row\)",
    ):
        build_spec(df, "y ~ x1", groups="g", vc_formula={"c": "0 + C(cls)"}, weights="w")


def test_missing_drop_levels_from_kept_rows():
    df = make_df(80)
    df.loc[df["a"] == "top", "x1"] = np.nan  # level 'top' only on dropped rows
    spec = build_spec(df, "y ~ x1 + a", groups="g", missing="drop")
    assert spec.levels["a"] == ["hi", "lo", "mid"]
    assert "a[T.top]" not in spec.exog_names


def test_infinite_values():
    df = make_df(30)
    df.loc[4, "x1"] = np.inf
    with pytest.raises(ValueError, match=r"infinite values in column 'x1' \(1 row\)"):
        build_spec(df, "y ~ x1", groups="g")
    with pytest.raises(ValueError, match="infinite values in column 'x1'"):
        build_spec(df, "y ~ x1", groups="g", missing="drop")


def test_missing_mask_is_one_policy_for_every_kind():
    """Labels: what pandas calls missing; numbers: NaN (pd.NA, Arrow nulls too); ±inf only
    where the array interface asks for it."""
    labels = pd.Series(["a", None, np.nan, "b"], dtype=object)
    np.testing.assert_array_equal(missing_mask(labels, CATEGORICAL), [False, True, True, False])
    numbers = pd.Series([1.0, np.nan, np.inf, 2.0])
    np.testing.assert_array_equal(missing_mask(numbers, NUMERIC), [False, True, False, False])
    np.testing.assert_array_equal(
        missing_mask(numbers.to_numpy(), NUMERIC, infinite=True), [False, True, True, False]
    )
    nullable = pd.Series([1, None, 3], dtype="Int64")
    np.testing.assert_array_equal(missing_mask(nullable, NUMERIC), [False, True, False])
    arrow = pd.Series([1.5, None], dtype="float64[pyarrow]")
    np.testing.assert_array_equal(missing_mask(arrow, NUMERIC), [False, True])
    keys = np.array([[1, None], [2, 3]], dtype=object)
    np.testing.assert_array_equal(missing_mask(keys, NUMERIC), [[False, True], [False, False]])
    bad, counts = missing_rows({"x": np.array([True, False, False]), "z": np.zeros(3, bool)}, 3)
    np.testing.assert_array_equal(bad, [True, False, False])
    assert counts == {"x": 1}


@pytest.mark.parametrize("kind", [CATEGORICAL, NUMERIC])
@pytest.mark.parametrize(
    "values",
    [
        np.arange(6, dtype=np.int64),
        np.arange(6, dtype=np.uint8).reshape(2, 3),
        np.array([True, False, True]),
        pd.Series(np.arange(4)),
        pd.Series([1, None, 3], dtype="Int64"),
        pd.Series(["a", None, "b"]),
        pd.Series([1.5, np.nan]),
    ],
)
def test_integer_and_boolean_columns_are_not_looked_at_and_others_are(values, kind):
    """numpy integers and booleans hold no missing value: the mask is all False without
    pandas' isna (which cost more than the rest of a 20k-row group column's checks);
    nullable integers, text and floats are still looked at."""
    expected = np.asarray(pd.isna(values), dtype=bool)
    got = missing_mask(values, kind)
    assert got.dtype == bool and got.shape == np.shape(values)
    np.testing.assert_array_equal(got, expected)
