"""Variance components held structured on a cluster: the same fit as in process."""

from __future__ import annotations

import dataclasses

import dask
import dask.dataframe as dd
import numpy as np
import pytest

import dmixed
from dmixed.engines.dask import DaskEngine, data_pass
from dmixed.engines.dask.structured import concatenate_ragged, ragged_values
from dmixed.engines.local import LocalEngine, statistics_from_arrays
from dmixed.engines.vc_local import StructuredVCEngine
from dmixed.kernels.vc_blocks import RaggedVC
from dmixed.stats.checkpoint import GroupArrays
from tests._synth import make_data

FORMULA = "y ~ x1 + x2"
KW = {"groups": "g", "re_formula": "1 + x1", "vc_formula": {"sub": "0 + C(sub)"}}


@pytest.fixture(scope="module")
def data():
    df = make_data(n_groups=40, vc_sd=0.7, n_sub=6, seed=4)
    return df.sample(frac=1.0, random_state=3).reset_index(drop=True)


def _assert_equal_fits(res, ref, rtol: float = 1e-10) -> None:
    for name in ("params", "bse", "fe_params", "vcomp", "cov_re"):
        np.testing.assert_allclose(getattr(res, name), getattr(ref, name), rtol=rtol)
    np.testing.assert_allclose(res.llf, ref.llf, rtol=rtol)
    np.testing.assert_allclose(res.scale, ref.scale, rtol=rtol)
    frame, want = res.random_effects_frame(vc=True), ref.random_effects_frame(vc=True)
    np.testing.assert_allclose(frame["value"], want["value"], rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(res.random_effects_frame(), ref.random_effects_frame(), rtol=1e-8)
    group = ref.group_labels[3]
    np.testing.assert_allclose(
        res.random_effects_cov[group], ref.random_effects_cov[group], rtol=1e-8, atol=1e-14
    )


def test_distributed_fit_is_structured_as_in_process(client, data):
    """Statistics kept on the workers are evaluated structured there (one slot per
    component, Newton steps), the in-process fit to 1e-10; a rerun from their saved
    statistics equals it."""
    ref = dmixed.MixedLM.from_formula(FORMULA, data=data, **KW).fit()
    ddf = dd.from_pandas(data, npartitions=3)
    with dask.config.set({"dmixed.engine": "distributed"}):
        model = dmixed.MixedLM.from_formula(FORMULA, data=ddf, **KW)
        stats = model.statistics(client=client)
        assert isinstance(stats.engine, DaskEngine) and stats.engine.collapsed_vc
        assert stats.fit_layout.vc_widths == (1,)
        res = model.fit(client=client)
    assert res.optimizer_methods == ref.optimizer_methods
    _assert_equal_fits(res, ref)
    saved = statistics_from_arrays(GroupArrays.from_statistics(stats))
    assert isinstance(saved.engine, StructuredVCEngine)
    _assert_equal_fits(dmixed.MixedLM.from_statistics(saved, model.spec).fit(), res)


def test_gathered_from_a_cluster_ragged(client, data):
    """``engine="local"`` with a client: the blocks are read ragged on the workers and
    gathered into one structured engine, the statistics of Dask's local scheduler."""
    ddf = dd.from_pandas(data, npartitions=4)
    want = dmixed.MixedLM.from_formula(FORMULA, data=ddf, **KW).statistics().engine.ragged
    with dask.config.set({"dmixed.engine": "local"}):
        stats = dmixed.MixedLM.from_formula(FORMULA, data=ddf, **KW).statistics(client=client)
    assert isinstance(stats.engine, StructuredVCEngine)
    got = stats.engine.ragged
    for field in dataclasses.fields(RaggedVC):
        a, b = getattr(got, field.name), getattr(want, field.name)
        if np.asarray(a).dtype.kind == "f":
            scale = np.abs(b).max() if np.size(b) else 1.0
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * scale, err_msg=field.name)
        else:
            np.testing.assert_array_equal(a, b, err_msg=field.name)


def test_overlapping_components_stay_dense_on_the_cluster(client, data):
    """Two components in one row: the blocks stay padded, the sums per slot (in process
    they are held crossed, tests/engines/test_vc_crossed.py: the reference here is the
    in-process dense engine, the same optimizer path)."""
    kw = dict(KW, vc_formula={"sub": "0 + C(sub)", "sub_x": "0 + C(sub):x2"})
    local = dmixed.MixedLM.from_formula(FORMULA, data=data, **kw)
    stats = local.statistics()
    dense = dataclasses.replace(stats, engine=LocalEngine(*stats.engine.gather()))
    ref = dmixed.MixedLM.from_statistics(dense, local.spec).fit()
    ddf = dd.from_pandas(data, npartitions=2)
    with dask.config.set({"dmixed.engine": "distributed"}):
        model = dmixed.MixedLM.from_formula(FORMULA, data=ddf, **kw)
        stats = model.statistics(client=client)
        assert not stats.engine.collapsed_vc
        assert stats.fit_layout == stats.layout
        res = model.fit(client=client)
    np.testing.assert_allclose(res.params, ref.params, rtol=1e-8)


def test_auto_rule_counts_the_ragged_values(client, data, monkeypatch):
    """``engine="auto"`` weighs structured statistics by their ragged size: a limit
    between the ragged and the padded size gathers them."""
    model = dmixed.MixedLM.from_formula(FORMULA, data=data, **KW)
    stats = model.statistics()
    rv = stats.engine.ragged
    ragged = ragged_values(rv.n_groups, rv.q, rv.k, rv.d.size)
    padded = rv.n_groups * rv.r * (rv.r + rv.k)
    assert ragged < padded
    ddf = dd.from_pandas(data, npartitions=2)
    for limit, kept in ((ragged, False), (ragged - 1, True)):
        monkeypatch.setattr(data_pass, "AUTO_LOCAL_MAX_VALUES", limit)
        with dask.config.set({"dmixed.engine": "auto"}):
            got = dmixed.MixedLM.from_formula(FORMULA, data=ddf, **KW).statistics(client=client)
        assert isinstance(got.engine, DaskEngine) == kept
        got.engine.close()


def test_concatenate_ragged_puts_groups_in_sorted_order():
    """Blocks of groups in any order → the ragged statistics of all groups, sorted."""
    data = make_data(n_groups=12, vc_sd=0.5, n_sub=4, seed=2)
    model = dmixed.MixedLM.from_formula(FORMULA, data=data, **KW)
    stats = model.statistics()
    zz, zxy = stats.engine.gather()
    layout = stats.layout
    perm = np.random.default_rng(0).permutation(zz.shape[0])
    cuts = np.split(perm, [3, 3, 8])  # one empty block
    parts = [RaggedVC.from_dense(zz[c], zxy[c], layout.k_re, layout.slot_component) for c in cuts]
    got = concatenate_ragged(parts, np.concatenate(cuts))
    want = stats.engine.ragged
    for field in dataclasses.fields(RaggedVC):
        np.testing.assert_array_equal(getattr(got, field.name), getattr(want, field.name))


@pytest.mark.parametrize("engine", ["local", "distributed"])
def test_components_only_model_is_ragged_on_dask(client, data, engine):
    """One component and no ``exog_re`` (``re_formula="0"``, statsmodels' reading of a
    nested model without a group intercept): one random-design column in all, summed
    ragged on Dask as in process (the padded pass would need an ``r × r`` block per
    group), gathered or kept on the workers, the in-process fit to 1e-10."""
    kw = {"groups": "g", "re_formula": "0", "vc_formula": {"sub": "0 + C(sub)"}}
    ref = dmixed.MixedLM.from_formula(FORMULA, data=data, **kw).fit()
    ddf = dd.from_pandas(data, npartitions=3)
    with dask.config.set({"dmixed.engine": engine}):
        model = dmixed.MixedLM.from_formula(FORMULA, data=ddf, **kw)
        stats = model.statistics(client=client)
        assert stats.engine.collapsed_vc and stats.fit_layout.vc_widths == (1,)
        res = model.fit(client=client)
    for name in ("params", "bse", "fe_params", "vcomp"):
        np.testing.assert_allclose(getattr(res, name), getattr(ref, name), rtol=1e-10)
    np.testing.assert_allclose([res.llf, res.scale], [ref.llf, ref.scale], rtol=1e-10)
    frame, want = res.random_effects_frame(vc=True), ref.random_effects_frame(vc=True)
    np.testing.assert_allclose(frame["value"], want["value"], rtol=1e-8, atol=1e-12)
