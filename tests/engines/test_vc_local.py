"""Fits on structured variance components agree with the dense engine."""

from __future__ import annotations

import dataclasses

import dask.dataframe as dd
import numpy as np
import pytest

import dmixed
from dmixed.engines.local import LocalEngine, statistics_from_arrays
from dmixed.engines.vc_local import StructuredVCEngine
from dmixed.stats.checkpoint import GroupArrays
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


def test_components_sharing_rows_are_not_held_nested():
    """Rows with two entries: not this engine (the crossed one holds them,
    tests/engines/test_vc_crossed.py)."""
    data = make_data(n_groups=20, vc_sd=0.5, n_sub=3, seed=3)
    model = dmixed.MixedLM.from_formula(
        "y ~ x1",
        groups="g",
        vc_formula={"sub": "0 + C(sub)", "sub_x": "0 + C(sub):x2"},
        data=data,
    )
    stats = model.statistics()
    assert not isinstance(stats.engine, StructuredVCEngine)


@pytest.mark.parametrize("nparts", [1, 2, 5])
def test_dask_gathered_statistics_fit_structured_as_in_process(nparts):
    """Statistics gathered from a Dask data pass are fitted on the structured engine:
    the in-process fit's estimates, with Newton steps."""
    data = make_data(n_groups=40, vc_sd=0.7, n_sub=6, seed=4)
    data = data.sample(frac=1.0, random_state=nparts).reset_index(drop=True)
    kw = dict(groups="g", re_formula="1 + x1", vc_formula={"sub": "0 + C(sub)"})
    ref = dmixed.MixedLM.from_formula("y ~ x1 + x2", data=data, **kw)
    model = dmixed.MixedLM.from_formula(
        "y ~ x1 + x2", data=dd.from_pandas(data, npartitions=nparts), **kw
    )
    stats = model.statistics()
    assert isinstance(stats.engine, StructuredVCEngine)
    assert stats.fit_layout.vc_widths == (1,)
    res, want = model.fit(), ref.fit()
    assert res.optimizer_methods == want.optimizer_methods == ["newton"]
    np.testing.assert_allclose(res.llf, want.llf, rtol=1e-9)
    np.testing.assert_allclose(res.params, want.params, rtol=1e-9)
    np.testing.assert_allclose(res.bse, want.bse, rtol=1e-9)


def test_saved_statistics_fit_structured_as_their_first_fit():
    """Statistics saved (or merged) and read back are fitted on the structured engine,
    and the refit equals the first fit exactly."""
    data = make_data(n_groups=30, vc_sd=0.8, n_sub=5, seed=4)
    model = dmixed.MixedLM.from_formula(
        "y ~ x1 + x2", data=data, groups="g", vc_formula={"sub": "0 + C(sub)"}, re_formula="1"
    )
    stats = model.statistics()
    again = statistics_from_arrays(GroupArrays.from_statistics(stats))
    assert isinstance(again.engine, StructuredVCEngine)
    first, refit = model.fit(), dmixed.MixedLM.from_statistics(again, model.spec).fit()
    assert refit.optimizer_methods == ["newton"]
    for name in ("params", "bse", "llf", "scale"):
        np.testing.assert_array_equal(getattr(refit, name), getattr(first, name))
