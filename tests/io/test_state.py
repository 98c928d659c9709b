"""The state record: derived quantities."""

from __future__ import annotations

import numpy as np
import pytest

import dmixed
from dmixed import MixedLM

from .._synth import design, make_data


@pytest.mark.parametrize("reml", [True, False])
def test_information_criteria_and_sizes(reml):
    df = make_data(n_groups=20, seed=2)
    endog, exog, exog_re, groups = design(df)
    state = MixedLM(endog, exog, groups, exog_re=exog_re).fit(reml=reml).to_state()
    k = len(state.params)
    assert state.df_criteria == k + 1 == state.k_fe + state.k_re2 + state.k_vc + 1
    assert state.df_modelwc == k  # statsmodels' attribute (its aic counts k + 1)
    assert state.vc_slot_widths == ()
    np.testing.assert_array_equal(state.bse, np.sqrt(np.diag(state.cov_params)))
    if reml:
        assert np.isnan(state.aic) and np.isnan(state.bic)
    else:
        assert state.aic == -2.0 * (state.llf - (k + 1))
        assert state.bic == -2.0 * state.llf + np.log(state.nobs) * (k + 1)


def test_df_modelwc_aic_and_bic_are_statsmodels():
    """statsmodels' ``df_modelwc`` is the size of ``params`` (6 was given for its 5)
    while its ML ``aic``/``bic`` count σ² too."""
    import statsmodels.api as sm

    df = make_data(n_groups=30, seed=7)
    ours = dmixed.mixedlm("y ~ x1", df, groups="g", re_formula="1 + x1").fit(reml=False)
    theirs = sm.MixedLM.from_formula("y ~ x1", df, groups="g", re_formula="1 + x1").fit(reml=False)
    assert ours.df_modelwc == theirs.df_modelwc == 5
    assert ours.aic == pytest.approx(theirs.aic, rel=1e-7)
    assert ours.bic == pytest.approx(theirs.bic, rel=1e-7)
