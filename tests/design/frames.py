"""Frames and comparisons shared by the design tests."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd

from dmixed.design import DesignMatrices, ModelSpec


def results_dir() -> str:
    import statsmodels.regression.tests as t

    return os.path.join(os.path.dirname(t.__file__), "results")


def make_df(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x1": rng.normal(size=n),
            "x2": rng.uniform(0.5, 2.0, size=n),
            "a": np.array(["lo", "mid", "hi", "top"], dtype=object)[rng.integers(0, 4, n)],
            "b": np.array(["u", "v", "w"], dtype=object)[rng.integers(0, 3, n)],
            "k": rng.integers(1, 4, n),
            "g": rng.integers(0, 15, n),
            "cls": np.array([f"c{i:02d}" for i in range(40)], dtype=object)[rng.integers(0, 40, n)],
            "w": rng.uniform(0.5, 2.0, size=n),
        }
    )


def mixedlm(formula, data, **kw):
    import statsmodels.formula.api as smf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return smf.mixedlm(formula, data, **kw)


def by_name(mat: np.ndarray, names: list[str], wanted: list[str]) -> np.ndarray:
    pos = {n: i for i, n in enumerate(names)}
    return mat[:, [pos[w] for w in wanted]]


def vc_dense(dm: DesignMatrices, spec: ModelSpec, l: int) -> np.ndarray:  # noqa: E741
    cols, vals = dm.vc_cols[l], dm.vc_vals[l]
    out = np.zeros((cols.shape[0], len(spec.vc_column_names[l])))
    for j in range(cols.shape[1]):
        ok = cols[:, j] >= 0
        out[np.flatnonzero(ok), cols[ok, j]] += vals[ok, j]
    return out


def assert_same(d1: DesignMatrices, d2: DesignMatrices, spec: ModelSpec) -> None:
    np.testing.assert_array_equal(d1.endog, d2.endog)
    np.testing.assert_array_equal(d1.exog, d2.exog)
    np.testing.assert_array_equal(d1.exog_re, d2.exog_re)
    assert list(d1.groups) == list(d2.groups)
    assert d1.n_dropped == d2.n_dropped
    if d1.weights is None:
        assert d2.weights is None
    else:
        np.testing.assert_array_equal(d1.weights, d2.weights)
    for l in range(len(spec.vc_names)):  # noqa: E741
        np.testing.assert_array_equal(vc_dense(d1, spec, l), vc_dense(d2, spec, l))
