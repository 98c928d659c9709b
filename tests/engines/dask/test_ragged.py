"""The Dask data pass summing variance components ragged: no padded design or block, the
in-process statistics and fit to 1e-10, whatever the partitioning."""

from __future__ import annotations

import dataclasses

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import dmixed
from dmixed.engines.dask import data_pass
from dmixed.engines.dask.graph import block_graph, slot_map_graph
from dmixed.engines.dask.ragged import RaggedPacked, component_map, rows_overlap
from dmixed.engines.vc_local import StructuredVCEngine
from dmixed.kernels.vc_blocks import RaggedVC
from dmixed.stats import Layout
from dmixed.stats.standardize import Standardization
from tests._synth import make_data

FORMULA = "y ~ x1 + x2"
KW = {"groups": "g", "re_formula": "1 + x1", "vc_formula": {"sub": "0 + C(sub)"}}


@pytest.fixture(scope="module")
def data():
    df = make_data(n_groups=30, vc_sd=0.7, n_sub=6, seed=11)
    df["x2"] = df["x2"] * 300.0 + 5000.0  # a column the map shifts and scales
    return df.sample(frac=1.0, random_state=5).reset_index(drop=True)


@pytest.fixture(scope="module")
def in_process_fit(data):
    """The in-process model of ``data``, its statistics and fit, made once per module:
    every partitioning below is compared with the same ones (6 + 9 fits were made
    afresh)."""
    model, stats = _in_process(data)
    return model, stats, model.fit()


def _read(parts):
    def read(i):
        return parts[i]

    return read


def _collection(df: pd.DataFrame, cuts, kind: str):
    """``df`` split at ``cuts`` (row positions) as ``from_pandas`` or ``from_map``
    partitions (the latter read in chains)."""
    bounds = [0, *sorted(set(int(c) for c in cuts if 0 < c < len(df))), len(df)]
    pairs = zip(bounds[:-1], bounds[1:], strict=True)
    parts = [df.iloc[a:b].reset_index(drop=True) for a, b in pairs]
    if kind == "from_map":
        return dd.from_map(_read(parts), range(len(parts)), meta=df.iloc[:0])
    return dd.from_pandas(df, npartitions=len(parts), sort=False)


def _assert_same_ragged(got: RaggedVC, want: RaggedVC, tol: float = 1e-12) -> None:
    for field in dataclasses.fields(RaggedVC):
        a, b = getattr(got, field.name), getattr(want, field.name)
        if np.asarray(a).dtype.kind == "f":
            scale = np.abs(b).max() if np.size(b) else 1.0
            np.testing.assert_allclose(a, b, rtol=0, atol=tol * scale, err_msg=field.name)
        else:
            np.testing.assert_array_equal(a, b, err_msg=field.name)


def _assert_equal_fits(res, ref, rtol: float = 1e-10) -> None:
    for name in ("params", "bse", "fe_params", "vcomp", "cov_re"):
        np.testing.assert_allclose(getattr(res, name), getattr(ref, name), rtol=rtol)
    np.testing.assert_allclose(res.llf, ref.llf, rtol=rtol)
    frame, want = res.random_effects_frame(vc=True), ref.random_effects_frame(vc=True)
    np.testing.assert_allclose(frame["value"], want["value"], rtol=1e-8, atol=1e-12)


def _in_process(df, kw=KW):
    model = dmixed.MixedLM.from_formula(FORMULA, data=df, **kw)
    return model, model.statistics()


@pytest.mark.parametrize("kind", ["from_pandas", "from_map"])
@pytest.mark.parametrize("n_parts", [1, 2, 5])
def test_dask_statistics_are_the_in_process_ragged_ones(data, in_process_fit, kind, n_parts):
    """Gathered from the ragged pass: the in-process pass's ragged statistics (to 1e-12
    of each field's scale; in its columns' map) and the same fit to 1e-10 (each task in
    the map of its first rows, converted)."""
    _, want, ref = in_process_fit
    ddf = _collection(data, np.linspace(0, len(data), n_parts + 1)[1:-1], kind)
    _assert_equal_fits(dmixed.MixedLM.from_formula(FORMULA, data=ddf, **KW).fit(), ref)
    dmodel = dmixed.MixedLM.from_formula(FORMULA, data=ddf, **KW)
    stats = dmodel.statistics(standardization=want.standardization)
    assert isinstance(stats.engine, StructuredVCEngine)
    np.testing.assert_array_equal(stats.group_labels, want.group_labels)
    np.testing.assert_array_equal(stats.group_sizes, want.group_sizes)
    _assert_same_ragged(stats.engine.ragged, want.engine.ragged)


@settings(max_examples=8, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cuts=st.lists(st.integers(0, 700), max_size=6),
    seed=st.integers(0, 2**16),
    kind=st.sampled_from(["from_pandas", "from_map"]),
)
@example(cuts=[1], seed=464, kind="from_map")  # a first task of one row
def test_any_partitioning_gives_the_same_fit(data, in_process_fit, cuts, seed, kind):
    """Rows shuffled and cut anywhere: the fit of the in-process statistics (a first
    task of one row too: the map it chose does not become the optimizer's)."""
    df = data.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    ref = in_process_fit[2]
    res = dmixed.MixedLM.from_formula(FORMULA, data=_collection(df, cuts, kind), **KW).fit()
    _assert_equal_fits(res, ref)


def test_string_keys_weights_and_two_components_on_disjoint_rows():
    """String group keys, two components never in one row (each row has one entry at
    most): still ragged, the in-process statistics."""
    df = make_data(n_groups=25, vc_sd=0.5, n_sub=5, seed=2)
    df["g"] = "grp" + df["g"].astype(str)
    df["a"] = np.where(df.index % 2 == 0, df["sub"], np.nan)
    df["b"] = np.where(df.index % 2 == 1, df["sub"], np.nan)
    df["ia"] = (df.index % 2 == 0).astype(float)
    df["ib"] = 1.0 - df["ia"]
    kw = {"groups": "g", "re_formula": "1", "vc_formula": {"a": "0 + C(sub):ia", "b": "0 + x1:ib"}}
    model, want = _in_process(df, kw)
    assert isinstance(want.engine, StructuredVCEngine)
    ddf = dd.from_pandas(df.sample(frac=1.0, random_state=1), npartitions=4)
    _assert_equal_fits(dmixed.MixedLM.from_formula(FORMULA, data=ddf, **kw).fit(), model.fit())
    dmodel = dmixed.MixedLM.from_formula(FORMULA, data=ddf, **kw)
    stats = dmodel.statistics(standardization=want.standardization)
    assert isinstance(stats.engine, StructuredVCEngine)
    _assert_same_ragged(stats.engine.ragged, want.engine.ragged)


def test_blocks_hold_no_padded_statistics(data):
    """The blocks of the ragged pass carry :class:`RaggedVC` and no ``r × r`` array."""
    ddf = dd.from_pandas(data, npartitions=3)
    spec = dmixed.MixedLM.from_formula(FORMULA, data=ddf, **KW).spec
    slot_graph, overlap_graph = slot_map_graph(ddf, spec, np.int64)
    slot_map, overlap = dask.compute(slot_graph, overlap_graph, scheduler="sync")
    layout = Layout(2, tuple(slot_map.widths))
    packed = data_pass.pass_layout(layout, 4, overlap)
    assert not overlap and isinstance(packed, RaggedPacked)
    graph = block_graph(ddf, spec, slot_map, packed, np.int64, 2, 2, vc_widths=layout.vc_widths)
    blocks = dask.compute(*graph, scheduler="sync")
    assert all(b.zz is None and b.zxy is None for b in blocks)
    assert sum(b.ragged.n_groups for b in blocks) == data["g"].nunique()
    assert sum(b.ragged.d.size for b in blocks) == len(data.groupby(["g", "sub"]))


def test_overlapping_rows_keep_the_padded_pass(data):
    """Two entries in one row: the prepass says so and the pass stays padded."""
    kw = dict(KW, vc_formula={"sub": "0 + C(sub)", "sub_x": "0 + C(sub):x1"})
    ddf = dd.from_pandas(data, npartitions=2)
    spec = dmixed.MixedLM.from_formula(FORMULA, data=ddf, **kw).spec
    _, overlap = dask.compute(*slot_map_graph(ddf, spec, np.int64), scheduler="sync")
    assert overlap
    assert not isinstance(data_pass.pass_layout(Layout(2, (6, 6)), 4, overlap), RaggedPacked)
    stats = dmixed.MixedLM.from_formula(FORMULA, data=ddf, **kw).statistics()
    assert not isinstance(stats.engine, StructuredVCEngine)  # the padded engine


def test_rows_overlap():
    cols = [np.array([[0], [1], [-1]]), np.array([[-1], [2], [3]])]
    vals = [np.array([[1.0], [0.0], [0.0]]), np.array([[0.0], [1.0], [1.0]])]
    assert not rows_overlap(cols, vals)  # a zero value is no entry
    vals[0][1, 0] = 2.0
    assert rows_overlap(cols, vals)
    assert not rows_overlap([], [])


def test_component_map_takes_the_component_scale():
    std = dataclasses.replace(Standardization.identity(2, 1), vc_scale=np.array([2.0, 8.0]))
    assert component_map(std, 1, 2).vc_scale.tolist() == [8.0]
    assert component_map(None, 0, 2) is None
