"""Prediction: the fixed part, the random part, unseen groups."""

from __future__ import annotations

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from dmixed import MixedLM, mixedlm
from dmixed.errors import DroppedRowsWarning

from .._synth import design, make_data


def test_predict_fixed_and_with_random_effects():
    df = make_data(n_groups=30, seed=9)
    endog, exog, exog_re, groups = design(df)
    res = MixedLM(endog, exog, groups, exog_re=exog_re).fit()
    np.testing.assert_allclose(res.predict(exog=exog), exog @ res.fe_params.to_numpy())
    with_re = res.predict(exog=exog, exog_re=exog_re, groups=groups, include_random=True)
    np.testing.assert_allclose(with_re, res.fittedvalues, rtol=1e-12)
    # an unseen group gets the population prediction
    new = res.predict(exog=exog[:3], exog_re=exog_re[:3], groups=[-1, -2, -3], include_random=True)
    np.testing.assert_allclose(new, exog[:3] @ res.fe_params.to_numpy())
    with pytest.raises(ValueError, match="columns"):
        res.predict(exog=exog[:, :2])


def _with_holes() -> pd.DataFrame:
    """Rows with missing values in several partitions, and an index that is not 0..n-1."""
    df = make_data(n_groups=30, max_size=12, seed=3)
    df.loc[df.index[::13], "x2"] = np.nan
    df.loc[df.index[5::41], "y"] = np.nan
    df.index = df.index * 10 + 5
    return df


def test_dask_fitted_values_of_a_drop_fit_are_the_kept_rows():
    """missing="drop": fittedvalues, resid and predict of a Dask fit, once computed, are
    the in-process fit's values at the kept rows, indexed like them."""
    df = _with_holes()
    kept = df.dropna(subset=["y", "x2"]).index
    with pytest.warns(DroppedRowsWarning):
        ref = mixedlm("y ~ x1 + x2", df, groups="g", missing="drop").fit()
    ddf = dd.from_pandas(df, npartitions=3)
    with dask.config.set(scheduler="sync"):
        with pytest.warns(DroppedRowsWarning):
            res = mixedlm("y ~ x1 + x2", ddf, groups="g", missing="drop").fit()
        fitted = res.fittedvalues.compute()
        resid = res.resid.compute()
        pred = res.predict(ddf, include_random=True).compute()
    pd.testing.assert_index_equal(fitted.index, kept)
    np.testing.assert_allclose(fitted.to_numpy(), ref.fittedvalues, rtol=1e-8)
    pd.testing.assert_index_equal(resid.index, kept)
    np.testing.assert_allclose(resid.to_numpy(), ref.resid, rtol=1e-7, atol=1e-10)
    # new rows: only the response is not needed, so rows missing only y are predicted
    pred_kept = df.dropna(subset=["x2"]).index
    pd.testing.assert_index_equal(pred.index, pred_kept)
    np.testing.assert_allclose(pred.to_numpy(), ref.predict(df, include_random=True), rtol=1e-8)
