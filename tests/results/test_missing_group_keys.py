"""``predict(include_random=True)`` on rows whose group key is missing: NaN for those
rows (as for a row missing any column the prediction uses), whether or not other rows
have keys, never an error about the keys' class."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import dmixed

from .._synth import make_data


@pytest.fixture(scope="module")
def fit():
    df = make_data(n_groups=30, seed=12, max_size=8)
    df["g"] = [f"G{v}" for v in df["g"]]
    return dmixed.mixedlm("y ~ x1", df, groups="g", re_formula="1 + x1").fit()


@pytest.mark.parametrize(
    "keys",
    [
        pd.Series([None, None], dtype=object),
        pd.Series([np.nan, np.nan], dtype=object),
        pd.Series([np.nan, np.nan]),  # what pandas makes of a column of NaN: float64
    ],
)
def test_missing_keys_only_give_nan(fit, keys):
    new = pd.DataFrame({"x1": [0.5, 1.0], "g": keys})
    got = fit.predict(new, include_random=True)
    assert got.isna().all() and list(got.index) == [0, 1]


def test_missing_key_beside_known_ones(fit):
    known = fit.group_labels[0] if hasattr(fit, "group_labels") else "G0"
    new = pd.DataFrame({"x1": [0.5, 0.5], "g": pd.Series([known, None], dtype=object)})
    got = fit.predict(new, include_random=True)
    assert np.isfinite(got.iloc[0]) and np.isnan(got.iloc[1])


def test_other_class_message_counts_missing_keys():
    from dmixed.design.dtypes import comparable_keys
    from dmixed.errors import DataError

    keys = np.array([1.0, np.nan, np.nan])
    with pytest.raises(DataError, match=r"numeric keys.*2 missing key\(s\): leave those missing"):
        comparable_keys(keys, np.array(["a", "b"], dtype=object), "g")
