"""Fits on structured variance components agree with the dense engine."""

from __future__ import annotations

import dataclasses

import numpy as np

import dmixed
from dmixed.engines.local import LocalEngine
from dmixed.engines.vc_local import StructuredVCEngine
from tests._synth import make_data


def _fit_both(data, **kwargs):
    model = dmixed.MixedLM.from_formula(
        "y ~ x1 + x2", groups="g", vc_formula={"sub": "0 + C(sub)"}, data=data, **kwargs
    )
    stats = model.statistics()
    dense = dataclasses.replace(stats, engine=LocalEngine(*stats.engine.gather()))
    other = dmixed.MixedLM.from_statistics(dense, model.spec)
    return stats, model.fit(), other.fit()


def test_indicator_component_fits_structured_as_dense():
    data = make_data(n_groups=40, vc_sd=0.7, n_sub=5, seed=2)
    stats, res, ref = _fit_both(data, re_formula="1 + x1")
    assert isinstance(stats.engine, StructuredVCEngine)
    assert stats.fit_layout.vc_widths == (1,)
    assert res.optimizer_methods == ["newton"]
    np.testing.assert_allclose(res.llf, ref.llf, rtol=1e-9)
    np.testing.assert_allclose(res.params, ref.params, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(res.bse, ref.bse, rtol=1e-4)
    frame, ref_frame = res.random_effects_frame(vc=True), ref.random_effects_frame(vc=True)
    np.testing.assert_allclose(frame["value"], ref_frame["value"], rtol=1e-4, atol=1e-7)
    group = res.group_labels[0]
    np.testing.assert_allclose(
        res.random_effects_cov[group], ref.random_effects_cov[group], rtol=1e-4, atol=1e-9
    )


def test_component_without_exog_re_fits_structured_as_dense():
    """statsmodels' ``vc_formula`` without ``re_formula``: no random intercept (q = 0)."""
    data = make_data(n_groups=30, vc_sd=0.8, n_sub=4, seed=5)
    stats, res, ref = _fit_both(data)
    assert isinstance(stats.engine, StructuredVCEngine) and stats.layout.k_re == 0
    assert stats.glob.within is None
    np.testing.assert_allclose(res.llf, ref.llf, rtol=1e-9)
    np.testing.assert_allclose(res.params, ref.params, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(res.bse, ref.bse, rtol=1e-4)


def test_component_wider_than_one_entry_per_row_stays_dense():
    data = make_data(n_groups=20, vc_sd=0.5, n_sub=3, seed=3)
    model = dmixed.MixedLM.from_formula(
        "y ~ x1",
        groups="g",
        vc_formula={"sub": "0 + C(sub)", "sub_x": "0 + C(sub):x2"},
        data=data,
    )
    stats = model.statistics()
    assert isinstance(stats.engine, LocalEngine)
    assert stats.fit_layout == stats.layout
