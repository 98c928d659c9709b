"""statsmodels' data attributes of a model (endog, exog, groups, data, predict, ...)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dmixed import DroppedRowsWarning, MixedLM, MixedLMParams, SpecError, mixedlm

from .._synth import design, make_data


def test_attributes_hold_the_kept_rows_as_statsmodels():
    df = make_data(n_groups=6, seed=2)
    df.index = np.arange(len(df)) + 100
    df.loc[df.index[3], "x1"] = np.nan
    with pytest.warns(DroppedRowsWarning):
        model = mixedlm("y ~ x1", df, groups="g", re_formula="~x1", missing="drop")
    kept = df.drop(df.index[3])
    np.testing.assert_array_equal(model.endog, kept["y"].to_numpy())
    np.testing.assert_array_equal(model.exog[:, 1], kept["x1"].to_numpy())
    np.testing.assert_array_equal(model.exog_re[:, 1], kept["x1"].to_numpy())
    assert model.group_labels == sorted(kept["g"].unique().tolist())
    for label, rows in model.row_indices.items():
        np.testing.assert_array_equal(rows, np.flatnonzero(kept["g"].to_numpy() == label))
    assert model.endog_names == "y"
    assert model.data.xnames == ["Intercept", "x1"]
    assert model.data.exog_re_names_full == ["g Var", "g x x1 Cov", "x1 Var"]
    pd.testing.assert_index_equal(model.data.row_labels, kept.index)


def test_predict_is_the_fixed_part():
    df = make_data(n_groups=6, seed=4)
    endog, exog, exog_re, groups = design(df)
    model = MixedLM(endog, exog, groups, exog_re=exog_re)
    res = model.fit()
    np.testing.assert_allclose(model.predict(res.params), exog @ res.fe_params, rtol=1e-14)
    point = MixedLMParams.from_components(np.arange(3.0), cov_re=np.eye(2))
    np.testing.assert_allclose(model.predict(point, exog[:4]), exog[:4] @ np.arange(3.0))
    with pytest.raises(SpecError, match=r"expected \(m, 3\)"):
        model.predict(res.params, exog[:, :2])


def test_a_model_without_rows_says_so():
    df = make_data(n_groups=6, seed=4)
    res = mixedlm("y ~ x1", df, groups="g").fit()
    stats_model = MixedLM.from_statistics(res.model.statistics(), res.model.spec)
    with pytest.raises(SpecError, match="not in memory"):
        _ = stats_model.exog
