"""Prediction: the fixed part, the random part, unseen groups."""

from __future__ import annotations

import numpy as np
import pytest

from dmixed import MixedLM

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
