"""The Dask data pass of crossed variance components (entries sharing rows): held as
``CrossedVC`` on the workers, never padded, the in-process statistics and fit whatever
the partitioning and scheduler."""

from __future__ import annotations

import dask
import dask.dataframe as dd
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dmixed
from dmixed.engines.dask import DaskEngine, data_pass
from dmixed.engines.dask.crossed import REPEATED, RowOverlap, overlap_marks, read_overlap
from dmixed.engines.dask.graph import block_graph, slot_map_graph
from dmixed.engines.dask.ragged import RaggedPacked
from dmixed.engines.local import statistics_from_arrays
from dmixed.engines.vc_crossed import CrossedVCEngine
from dmixed.stats import Layout
from dmixed.stats.checkpoint import GroupArrays, load_statistics, save_statistics
from tests.engines.test_vc_crossed import CROSSED, crossed_data

FORMULA = "y ~ x"
CASES = {
    "crossed": {"groups": "g", "re_formula": "1", "vc_formula": CROSSED},
    "no_exog_re": {"groups": "g", "re_formula": None, "vc_formula": CROSSED},
    "continuous": {
        "groups": "g",
        "re_formula": "1",
        "vc_formula": {"a": "0 + C(a)", "ax": "0 + C(a):x2"},
    },
}


@pytest.fixture(scope="module")
def data():
    df = crossed_data(n_groups=12, seed=1)
    df["x"] = df["x"] * 300.0 + 5000.0  # a column the map shifts and scales
    df["w"] = np.random.default_rng(3).uniform(0.5, 2.0, len(df))
    return df.sample(frac=1.0, random_state=5).reset_index(drop=True)


@pytest.fixture(scope="module")
def in_process(data):
    """``of(kw)``: the in-process model of ``data`` (``kw`` its options), its statistics
    and fit, made once per module: every partitioning, scheduler and engine below is
    compared with the same ones (24 + 6 + 4 fits of two models were made afresh)."""
    made = {}

    def of(kw):
        key = repr(sorted(kw.items()))
        if key not in made:
            model = dmixed.MixedLM.from_formula(FORMULA, data=data, **kw)
            made[key] = (model.statistics(), model.fit())
        return made[key]

    return of


def _read(parts):
    def read(i):
        return parts[i]

    return read


def _collection(df, cuts, kind: str):
    bounds = [0, *sorted(set(int(c) for c in cuts if 0 < c < len(df))), len(df)]
    parts = [
        df.iloc[a:b].reset_index(drop=True) for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    if kind == "from_map":
        return dd.from_map(_read(parts), range(len(parts)), meta=df.iloc[:0])
    return dd.from_pandas(df, npartitions=len(parts), sort=False)


def _assert_equal_fits(res, ref, rtol: float = 1e-10) -> None:
    for name in ("params", "bse", "fe_params", "vcomp"):
        np.testing.assert_allclose(getattr(res, name), getattr(ref, name), rtol=rtol)
    # the likelihood at the optimum to 1e-12 (the parameters stop on the gradient)
    np.testing.assert_allclose(res.llf, ref.llf, rtol=1e-12)
    np.testing.assert_allclose(res.scale, ref.scale, rtol=rtol)
    assert res.optimizer_methods == ref.optimizer_methods
    frame, want = res.random_effects_frame(vc=True), ref.random_effects_frame(vc=True)
    np.testing.assert_allclose(frame["value"], want["value"], rtol=1e-8, atol=1e-12)
    group = ref.group_labels[0]  # the wide group
    np.testing.assert_allclose(
        np.asarray(res.random_effects_cov[group]),
        np.asarray(ref.random_effects_cov[group]),
        rtol=1e-8,
        atol=1e-14,
    )


def _assert_same_statistics(got, want, tol: float = 1e-12) -> None:
    np.testing.assert_array_equal(got.group_labels, want.group_labels)
    np.testing.assert_array_equal(got.group_sizes, want.group_sizes)
    for a, b in zip(got.engine.gather(), want.engine.gather(), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=tol * np.abs(b).max())
    assert got.engine.crossed.diag_comps == want.engine.crossed.diag_comps


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("kind", ["from_pandas", "from_map"])
@pytest.mark.parametrize("n_parts", [1, 2, 5])
@pytest.mark.parametrize("scheduler", ["threads", "sync"])
def test_dask_statistics_are_the_in_process_crossed_ones(
    data, in_process, case, kind, n_parts, scheduler
):
    """Crossed on Dask's local scheduler: the in-process statistics (to 1e-12 of their
    scale, in its columns' map) and fit (to 1e-10; each task in the map of its first
    rows, converted), the same diagonal components."""
    kw = dict(CASES[case], weights="w") if case == "crossed" else CASES[case]
    want, ref = in_process(kw)
    assert isinstance(want.engine, CrossedVCEngine)
    ddf = _collection(data, np.linspace(0, len(data), n_parts + 1)[1:-1], kind)
    with dask.config.set(scheduler=scheduler):
        dmodel = dmixed.MixedLM.from_formula(FORMULA, data=ddf, **kw)
        got = dmodel.statistics(standardization=want.standardization)
        assert isinstance(got.engine, CrossedVCEngine)
        _assert_same_statistics(got, want)
        res = dmixed.MixedLM.from_formula(FORMULA, data=ddf, **kw).fit()
    _assert_equal_fits(res, ref)


@settings(max_examples=6, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(0, 800), max_size=5), seed=st.integers(0, 2**16))
def test_any_partitioning_gives_the_same_fit(data, in_process, cuts, seed):
    """Rows shuffled and cut anywhere: the fit of the in-process statistics."""
    kw = CASES["crossed"]
    df = data.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    ref = in_process(kw)[1]
    res = dmixed.MixedLM.from_formula(FORMULA, data=_collection(df, cuts, "from_map"), **kw).fit()
    _assert_equal_fits(res, ref)


@pytest.mark.parametrize("engine", ["distributed", "local"])
@pytest.mark.parametrize("case", ["crossed", "continuous"])
def test_on_a_cluster_crossed_as_in_process(client, data, in_process, engine, case):
    """Statistics kept crossed on the workers (``engine="distributed"``: one slot per
    component in the sums, the BLUPs' covariances unpadded) or gathered crossed: the
    in-process fit to 1e-10."""
    kw = CASES[case]
    ref = in_process(kw)[1]
    ddf = dd.from_pandas(data, npartitions=3)
    with dask.config.set({"dmixed.engine": engine}):
        model = dmixed.MixedLM.from_formula(FORMULA, data=ddf, **kw)
        stats = model.statistics(client=client)
        held = DaskEngine if engine == "distributed" else CrossedVCEngine
        assert isinstance(stats.engine, held) and stats.engine.collapsed_vc
        res = model.fit(client=client)
    _assert_equal_fits(res, ref)


def test_auto_rule_counts_the_crossed_values(client, data, monkeypatch):
    """``engine="auto"`` weighs crossed statistics by the values they hold."""
    stats = dmixed.MixedLM.from_formula(FORMULA, data=data, **CASES["crossed"]).statistics()
    held = stats.engine.crossed.n_values
    layout = stats.layout
    assert held < layout.r * (layout.r + 2) * len(stats.group_labels)
    ddf = dd.from_pandas(data, npartitions=2)
    for limit, kept in ((held, False), (held - 1, True)):
        monkeypatch.setattr(data_pass, "AUTO_LOCAL_MAX_VALUES", limit)
        with dask.config.set({"dmixed.engine": "auto"}):
            model = dmixed.MixedLM.from_formula(FORMULA, data=ddf, **CASES["crossed"])
            got = model.statistics(client=client)
        assert isinstance(got.engine, DaskEngine) == kept
        got.engine.close()


def test_blocks_hold_no_padded_statistics(data):
    """The blocks carry ``CrossedVC`` (no ``r × r`` array), and the partials sent
    between tasks are the slots' and co-occurrences' rows."""
    ddf = dd.from_pandas(data, npartitions=3)
    spec = dmixed.MixedLM.from_formula(FORMULA, data=ddf, **CASES["crossed"]).spec
    slot_map, overlap = dask.compute(*slot_map_graph(ddf, spec, np.int64), scheduler="sync")
    assert overlap and not overlap.repeated
    layout = Layout(1, tuple(slot_map.widths))
    packed = data_pass.pass_layout(layout, len(spec.exog_names) + 1, overlap, slot_map)
    assert isinstance(packed, RaggedPacked) and packed.diagonal == (0,)
    graph = block_graph(ddf, spec, slot_map, packed, np.int64, 2, 2, vc_widths=layout.vc_widths)
    blocks = dask.compute(*graph, scheduler="sync")
    assert all(b.zz is None and b.ragged is None and b.crossed is not None for b in blocks)
    assert sum(b.crossed.n_groups for b in blocks) == data["g"].nunique()
    n_cells = len(data.groupby(["g", "a"]))
    assert sum(bk.d.size for b in blocks for bk in b.crossed.buckets) == n_cells
    widest = max(bk.a.shape[1] for b in blocks for bk in b.crossed.buckets)
    assert widest < layout.r


def test_overlap_marks():
    """Which components share rows; two entries in one column of a component."""
    cols = [np.array([[0], [1], [2]]), np.array([[0, 1], [-1, 2], [3, -1]])]
    vals = [np.array([[1.0], [0.0], [1.0]]), np.array([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])]
    got = read_overlap(np.array(overlap_marks(cols, vals)), 2)
    assert got.pairs.tolist() == [[False, True], [True, True]] and not got.repeated
    cols[1][0, 1] = 0  # row 0: column 0 of component 1 twice
    assert REPEATED in overlap_marks(cols, vals)
    assert read_overlap(np.array([REPEATED]), 2).repeated
    assert not RowOverlap(np.zeros((2, 2), dtype=bool))


def test_repeated_slot_keeps_the_padded_pass():
    """A row with two entries in one slot: the padded pass (as in process)."""
    layout = Layout(1, (30, 5))
    overlap = RowOverlap(np.ones((2, 2), dtype=bool), repeated=True)
    assert not isinstance(data_pass.pass_layout(layout, 2, overlap, None), RaggedPacked)


@pytest.mark.parametrize("engine", ["distributed", "local"])
def test_saved_from_a_cluster_crossed(tmp_path, client, data, engine):
    """Statistics kept on the workers (gathered crossed block by block) or gathered:
    saved crossed (format 5, never padded), loaded back, the same fit."""
    kw = CASES["crossed"]
    ddf = dd.from_pandas(data, npartitions=3)
    with dask.config.set({"dmixed.engine": engine}):
        model = dmixed.MixedLM.from_formula(FORMULA, data=ddf, **kw)
        stats = model.statistics(client=client)
        res = model.fit(client=client)
        arrays = GroupArrays.from_statistics(stats, ragged=True)
    assert arrays.cross is not None and arrays.zz.size == 0
    save_statistics(arrays, tmp_path / "s", {})
    back, manifest = load_statistics(tmp_path / "s")
    assert manifest["storage"] == "crossed"
    refit = dmixed.MixedLM.from_statistics(statistics_from_arrays(back), model.spec).fit()
    for name in ("params", "bse", "vcomp"):
        np.testing.assert_allclose(getattr(refit, name), getattr(res, name), rtol=1e-10)
    np.testing.assert_allclose(refit.llf, res.llf, rtol=1e-12)
