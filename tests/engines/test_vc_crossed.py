"""Fits with crossed variance components (entries sharing rows) on the crossed engine
agree with the dense engine."""

from __future__ import annotations

import dataclasses

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import dmixed
from dmixed.engines.local import LocalEngine, local_engine, statistics_from_arrays
from dmixed.engines.vc_crossed import CROSSED_MIN_R, CrossedVCEngine
from dmixed.stats.checkpoint import GroupArrays

FORMULA = "y ~ x"
CROSSED = {"a": "0 + C(a)", "b": "0 + C(b)"}


def crossed_data(n_groups=12, seed=0, wide_group=True):
    """Each group crosses its own levels of ``a`` with up to 4 levels of ``b`` (some
    cells empty); group 0 has many more levels of ``a`` than the others; ``x2`` a
    continuous column for ``C(a):x2``."""
    rng = np.random.default_rng(seed)
    parts = []
    for g in range(n_groups):
        n_a = 25 if (wide_group and g == 0) else int(rng.integers(2, 6))
        n_b = int(rng.integers(1, 5))
        a, b = np.meshgrid(np.arange(n_a), np.arange(n_b), indexing="ij")
        keep = rng.uniform(size=a.size) < 0.8
        reps = rng.integers(1, 3, keep.sum())
        parts.append(
            pd.DataFrame(
                {
                    "g": g,
                    "a": np.repeat(a.ravel()[keep], reps),
                    "b": np.repeat(b.ravel()[keep], reps),
                }
            )
        )
    df = pd.concat(parts, ignore_index=True)
    n = len(df)
    ea = rng.normal(size=(n_groups, 30))
    eb = rng.normal(size=(n_groups, 5))
    df["x"] = rng.normal(size=n)
    df["x2"] = rng.uniform(0.5, 1.5, n)
    df["y"] = (
        1.0
        + 0.5 * df["x"]
        + rng.normal(size=n_groups)[df["g"]]
        + 0.8 * ea[df["g"], df["a"]]
        + 0.6 * eb[df["g"], df["b"]]
        + rng.normal(size=n)
    )
    df["a"] = df["a"].astype(str)
    df["b"] = df["b"].astype(str)
    return df


def _fit_both(data, vc_formula, **kwargs):
    model = dmixed.MixedLM.from_formula(
        FORMULA, groups="g", vc_formula=vc_formula, data=data, **kwargs
    )
    stats = model.statistics()
    dense = dataclasses.replace(stats, engine=LocalEngine(*stats.engine.gather()))
    return model, stats, dmixed.MixedLM.from_statistics(dense, model.spec)


@pytest.mark.parametrize(
    ("vc_formula", "re_formula"),
    [
        (CROSSED, "1"),  # two crossed indicator components and a random intercept
        (CROSSED, None),  # no exog_re (q = 0)
        ({"a": "0 + C(a)", "ax": "0 + C(a):x2"}, "1"),  # continuous columns on a's rows
    ],
)
def test_crossed_components_fit_as_dense(vc_formula, re_formula):
    data = crossed_data(seed=1)
    kw = {} if re_formula is None else {"re_formula": re_formula}
    model, stats, dense_model = _fit_both(data, vc_formula, **kw)
    assert isinstance(stats.engine, CrossedVCEngine)
    assert stats.fit_layout.vc_widths == (1,) * len(vc_formula)
    res, ref = model.fit(), dense_model.fit()
    # the same likelihood at the same point on both engines
    for point in (res.params_object, ref.params_object):
        np.testing.assert_allclose(model.loglike(point), dense_model.loglike(point), rtol=1e-10)
    np.testing.assert_allclose(res.llf, ref.llf, rtol=1e-9)
    np.testing.assert_allclose(res.params, ref.params, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res.bse, ref.bse, rtol=1e-3)
    frame, ref_frame = res.random_effects_frame(vc=True), ref.random_effects_frame(vc=True)
    np.testing.assert_allclose(frame["value"], ref_frame["value"], rtol=1e-4, atol=1e-6)


def test_crossed_fit_equals_dense_fit_at_the_same_optimum():
    """Dense and crossed engines give the same results at one point: the Hessian-based
    standard errors and the BLUPs of a fit, evaluated on either engine."""
    data = crossed_data(seed=2)
    model, stats, dense_model = _fit_both(data, CROSSED, re_formula="1")
    res = model.fit()
    ref = dense_model.fit(start_params=res.params_object, method="newton")
    np.testing.assert_allclose(ref.llf, res.llf, rtol=1e-12)
    np.testing.assert_allclose(ref.params, res.params, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(ref.bse, res.bse, rtol=1e-6)
    group = res.group_labels[0]
    np.testing.assert_allclose(
        res.random_effects_cov[group], ref.random_effects_cov[group], rtol=1e-6, atol=1e-12
    )


def test_saved_statistics_fit_crossed_as_their_first_fit():
    data = crossed_data(seed=3)
    model = dmixed.MixedLM.from_formula(
        FORMULA, data=data, groups="g", vc_formula=CROSSED, re_formula="1"
    )
    stats = model.statistics()
    again = statistics_from_arrays(GroupArrays.from_statistics(stats, ragged=True))
    assert isinstance(again.engine, CrossedVCEngine)
    first, refit = model.fit(), dmixed.MixedLM.from_statistics(again, model.spec).fit()
    for name in ("params", "bse", "llf", "scale"):
        np.testing.assert_allclose(getattr(refit, name), getattr(first, name), rtol=1e-12)


def test_dask_gathered_statistics_fit_crossed_as_in_process():
    data = crossed_data(seed=4).sample(frac=1.0, random_state=0).reset_index(drop=True)
    kw = dict(groups="g", re_formula="1", vc_formula=CROSSED)
    res = dmixed.MixedLM.from_formula(FORMULA, data=data, **kw).fit()
    model = dmixed.MixedLM.from_formula(FORMULA, data=dd.from_pandas(data, npartitions=3), **kw)
    got = model.fit()
    np.testing.assert_allclose(got.llf, res.llf, rtol=1e-10)
    np.testing.assert_allclose(got.params, res.params, rtol=1e-7, atol=1e-9)


def test_narrow_crossed_designs_stay_dense():
    """At a padded width up to ``CROSSED_MIN_R`` the dense engine is kept."""
    data = crossed_data(seed=6, wide_group=False)
    model = dmixed.MixedLM.from_formula(
        FORMULA, data=data, groups="g", vc_formula=CROSSED, re_formula="1"
    )
    stats = model.statistics()
    assert stats.layout.r <= CROSSED_MIN_R
    assert isinstance(stats.engine, LocalEngine)
    padded = dataclasses.replace(stats, engine=local_engine(*stats.engine.gather(), stats.layout))
    assert isinstance(padded.engine, LocalEngine)
