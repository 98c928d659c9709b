"""The Dask engine: same estimates as the in-process fit, one data pass, fault tolerance.

Every fit on a Dask DataFrame is compared with ``dmixed.MixedLM.from_formula`` on the
same rows as a pandas DataFrame, to 1e-8 relative, whatever the number of partitions and
the row order (rows are shuffled, so every group is spread over several partitions).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pickle
import signal
import time
import warnings

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from distributed import Client, Future, LocalCluster, default_client
from hypothesis import given, settings
from hypothesis import strategies as st

import dmixed
from dmixed.engines.dask import DaskEngine, evaluator, progress, statistics_from_dask
from dmixed.engines.dask.graph import chain_recipes, chainable, resident_chains
from dmixed.engines.dask.pieces import compute_piece, partition_pieces
from dmixed.engines.local import LocalEngine
from dmixed.engines.vc_local import StructuredVCEngine

from ..._dask_processes import scheduler_and_workers
from ..._synth import CountingReader, make_data

FORMULA = "y ~ x1 + x2"
SLOPE = {"re_formula": "1 + x1"}
VC = {"re_formula": "1", "vc_formula": {"sub": "0 + C(sub)"}}
RTOL = 1e-8


# --------------------------------------------------------------------------------------
# data and helpers
# --------------------------------------------------------------------------------------


def _keys(g: np.ndarray, kind: str) -> pd.Series:
    """Group keys of one of the kinds users have: int, strings of every dtype,
    categorical, tuples."""
    if kind == "int":
        return pd.Series(g * 7 + 3, dtype=np.int64)
    if kind == "dense_int":  # ids 0..G-1: partials are added by position (combine_partials)
        return pd.Series(g, dtype=np.int64)
    if kind == "tuple":  # hashable labels, as statsmodels groups them (Arrow reads a list)
        return pd.Series([(int(v) % 4, int(v)) for v in g], dtype=object)
    labels = np.array([f"g{v:03d}" if v % 3 else f"G{v}" for v in g], dtype=object)
    if kind == "object":
        return pd.Series(labels, dtype=object)
    if kind == "str":
        return pd.Series(labels).astype("str")
    if kind == "string[pyarrow]":
        return pd.Series(labels).astype("string[pyarrow]")
    if kind == "category":
        return pd.Series(labels).astype("category")
    raise ValueError(kind)


def _frame(n_groups: int = 50, key: str = "int", seed: int = 7, shuffle: int = 1):
    df = make_data(n_groups=n_groups, max_size=12, vc_sd=0.6, seed=seed)
    df["g"] = _keys(df["g"].to_numpy(), key)
    # shuffle the rows: each group's rows end up in several partitions, in any order
    return df.sample(frac=1.0, random_state=shuffle).reset_index(drop=True)


def _fit(data, model_kw, **fit_kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = dmixed.MixedLM.from_formula(FORMULA, data=data, groups="g", **model_kw)
        return model, model.fit(**fit_kw)


def _assert_same(res, ref, rtol: float = RTOL) -> None:
    atol = 1e-12 * ref.scale  # for variances on the boundary (exact zeros)
    np.testing.assert_allclose(res.fe_params, ref.fe_params, rtol=rtol, atol=atol)
    np.testing.assert_allclose(res.cov_re, ref.cov_re, rtol=rtol, atol=atol)
    np.testing.assert_allclose(res.vcomp, ref.vcomp, rtol=rtol, atol=atol)
    np.testing.assert_allclose(res.scale, ref.scale, rtol=rtol)
    np.testing.assert_allclose(res.llf, ref.llf, rtol=rtol)
    np.testing.assert_allclose(res.bse, ref.bse, rtol=rtol, atol=atol)
    assert list(res.group_labels) == list(ref.group_labels)
    np.testing.assert_array_equal(res.group_sizes, ref.group_sizes)
    for key, value in ref.random_effects.items():
        np.testing.assert_allclose(res.random_effects[key], value, rtol=1e-6, atol=1e-9)


class _Parts:
    """Partition reader for ``dd.from_map``: a collection whose tasks read their own
    partitions, which the data pass reads in chains (see ``partials.chain_partials``)."""

    def __init__(self, df: pd.DataFrame, nparts: int) -> None:
        self.df = df
        self.parts = np.array_split(np.arange(len(df)), nparts)

    def __call__(self, i: int) -> pd.DataFrame:
        return self.df.iloc[self.parts[i]].reset_index(drop=True)


SOURCES = ["from_pandas", "from_map"]


def _ddf(df: pd.DataFrame, nparts: int, source: str = "from_pandas"):
    """The rows as a Dask DataFrame: in memory (one task per partition in the data
    pass) or read by a function per partition (chains of partitions per task)."""
    if source == "from_pandas":
        ddf = dd.from_pandas(df, npartitions=nparts)
    else:
        ddf = dd.from_map(
            _Parts(df, nparts), range(nparts), meta=df.iloc[:0], enforce_metadata=False
        )
    assert (chain_recipes(ddf, 2) is not None) == (source == "from_map" and nparts > 1)
    return ddf


_REF_CACHE: dict = {}


def _reference(df: pd.DataFrame, model_kw: dict, tag):
    key = (tag, repr(model_kw))
    if key not in _REF_CACHE:
        _REF_CACHE[key] = _fit(df, model_kw)[1]
    return _REF_CACHE[key]


@contextlib.contextmanager
def _two_worker_client():
    """Two single-threaded worker processes on loopback; the client is not made the
    default one, so the in-process tests of this module see no client."""
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def cluster_client():
    with _two_worker_client() as client:
        yield client


@pytest.fixture
def force_distributed():
    with dask.config.set({"dmixed.engine": "distributed"}):
        yield


# --------------------------------------------------------------------------------------
# in-process (no client): Dask's local scheduler, gathered into a LocalEngine
# --------------------------------------------------------------------------------------

CASES = [
    ("slope", "int", 1),
    ("slope", "dense_int", 5),
    ("vc", "dense_int", 4),
    ("slope", "object", 3),
    ("slope", "string[pyarrow]", 17),
    ("slope", "category", 3),
    ("vc", "int", 17),
    ("vc", "str", 3),
    ("vc", "category", 1),
    ("vc", "string[pyarrow]", 3),
]


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize(("model", "key", "nparts"), CASES)
def test_in_process_matches_pandas(model, key, nparts, source):
    model_kw = SLOPE if model == "slope" else VC
    df = _frame(key=key)
    ref = _reference(df, model_kw, key)
    m, res = _fit(_ddf(df, nparts, source), model_kw)
    engine_type = LocalEngine if model == "slope" else StructuredVCEngine
    assert isinstance(m.statistics().engine, engine_type)
    _assert_same(res, ref)


@pytest.mark.parametrize("source", SOURCES)
def test_unsigned_keys_above_2_63(source):
    """64-bit unsigned ids keep their values as group labels (no wrap to negatives)."""
    df = _frame(n_groups=30)
    df["g"] = df["g"].astype(np.uint64) + np.uint64(2**63 + 5)
    ref = _reference(df, SLOPE, "uint64")
    assert ref.group_labels.min() > 2**63
    _, res = _fit(_ddf(df, 4, source), SLOPE)
    _assert_same(res, ref)


@pytest.mark.parametrize("source", SOURCES)
def test_in_process_weights_and_unknown_divisions(source):
    df = _frame()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = dmixed.MixedLM.from_formula(FORMULA, data=df, groups="g", weights="w", **SLOPE)
        ref = ref.fit()
    ddf = _ddf(df, 5, source).clear_divisions()
    assert not ddf.known_divisions
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = dmixed.MixedLM.from_formula(FORMULA, data=ddf, groups="g", weights="w", **SLOPE)
        res = res.fit()
    _assert_same(res, ref)


@settings(max_examples=10)
@given(
    nparts=st.integers(min_value=1, max_value=24),
    order=st.integers(min_value=0, max_value=2**31 - 1),
    model=st.sampled_from(["slope", "vc"]),
    source=st.sampled_from(SOURCES),
)
def test_property_partitions_and_row_order(nparts, order, model, source):
    model_kw = SLOPE if model == "slope" else VC
    base = _frame(n_groups=30, seed=11)
    ref = _reference(base, model_kw, "property")
    shuffled = base.sample(frac=1.0, random_state=order % (2**32)).reset_index(drop=True)
    _, res = _fit(_ddf(shuffled, nparts, source), model_kw)
    _assert_same(res, ref)


def test_which_collections_are_read_in_chains(tmp_path, cluster_client):
    """Chains of partitions per task only where a task can read a partition itself."""
    df = _frame()
    df.to_parquet(tmp_path / "data.parquet")
    parquet = dd.read_parquet(tmp_path / "data.parquet").repartition(npartitions=4)
    assert chainable(dd.read_parquet(tmp_path / "data.parquet"))
    derived = dd.read_parquet(tmp_path / "data.parquet")
    derived = derived[derived.x1 > 0].assign(x3=lambda d: d.x1 * 2)
    assert chainable(derived)  # partition-wise steps are fine
    assert not chainable(dd.from_pandas(df, npartitions=3))  # in memory
    assert not chainable(parquet)  # repartition: not partition-wise
    centered = dd.read_parquet(tmp_path / "data.parquet")
    centered = centered.assign(x1=centered.x1 - centered.x1.mean())
    assert not chainable(centered)  # a global mean in every partition
    assert not chainable(dd.read_parquet(tmp_path / "data.parquet").shuffle("g"))
    persisted = cluster_client.persist(dd.read_parquet(tmp_path / "data.parquet"))
    assert not chainable(persisted)  # futures: already on the workers
    with dask.config.set({"dmixed.data_pass": "chains"}):
        with pytest.raises(ValueError, match="'chains' needs a collection read partition"):
            chain_recipes(dd.from_pandas(df, npartitions=3), 2)
    with dask.config.set({"dmixed.data_pass": "fast"}):
        with pytest.raises(ValueError, match="'dmixed.data_pass' must be"):
            chain_recipes(dd.from_pandas(df, npartitions=3), 2)
    read_by_tasks = _ddf(df, 4, "from_map")
    with dask.config.set({"dmixed.data_pass": "tree"}):  # chains can be switched off
        assert chain_recipes(read_by_tasks, 2) is None


def test_chains_balance_consecutive_partitions():
    df = _frame()
    ddf = dd.from_map(_Parts(df, 7), range(7), meta=df.iloc[:0], enforce_metadata=False)
    recipes = chain_recipes(ddf, 3)
    assert [len(r) for r in recipes] == [2, 3, 2]
    rows = [len(compute_piece(graph, out)) for r in recipes for graph, out, _ in r.items]
    assert rows == [len(p) for p in _Parts(df, 7).parts]  # every partition once, in order


# --------------------------------------------------------------------------------------
# one data pass
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["slope", "vc"])
@pytest.mark.parametrize("where", ["in-process", "cluster"])
def test_one_data_pass(tmp_path, model, where, request):
    model_kw = SLOPE if model == "slope" else VC
    df = _frame(key="str")
    nparts = 6
    reader = CountingReader(df, nparts, str(tmp_path / "reads.txt"))
    ddf = dd.from_map(reader, range(nparts), meta=df.iloc[:0], enforce_metadata=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model_obj = dmixed.MixedLM.from_formula(FORMULA, data=ddf, groups="g", **model_kw)
    reader.reset()  # building the spec may scan the categorical columns: not the fit
    fit_kw, engine = {}, "auto"
    if where == "cluster":
        fit_kw["client"] = request.getfixturevalue("cluster_client")
        engine = "distributed"
    with warnings.catch_warnings(), dask.config.set({"dmixed.engine": engine}):
        warnings.simplefilter("ignore")
        res = model_obj.fit(**fit_kw)
    expected = nparts * (2 if model == "vc" else 1)  # the VC prepass reads once more
    assert reader.reads() == expected
    _assert_same(res, _reference(df, model_kw, "str"))


# --------------------------------------------------------------------------------------
# on a cluster
# --------------------------------------------------------------------------------------

CLUSTER_CASES = [
    ("slope", "int", 1),
    ("slope", "dense_int", 5),
    ("vc", "dense_int", 4),
    ("slope", "string[pyarrow]", 17),
    ("vc", "category", 3),
    ("vc", "object", 17),
]


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize(("model", "key", "nparts"), CLUSTER_CASES)
def test_cluster_distributed_matches_pandas(
    cluster_client, force_distributed, model, key, nparts, source
):
    model_kw = SLOPE if model == "slope" else VC
    df = _frame(key=key)
    m, res = _fit(_ddf(df, nparts, source), model_kw, client=cluster_client)
    engine = m.statistics(client=cluster_client).engine
    assert isinstance(engine, DaskEngine)
    assert all(isinstance(f, Future) for f in engine.blocks)
    _assert_same(res, _reference(df, model_kw, key))


@pytest.mark.parametrize("engine", ["distributed", "local"])
def test_cluster_tuple_keys_match_pandas(cluster_client, engine):
    """Tuple group keys of a ``dd.from_pandas`` collection (Dask holds them as text) are
    the pandas frame's tuples on the cluster too, with the statistics on the workers or
    gathered."""
    df = _frame(key="tuple")
    ref = _reference(df, SLOPE, "tuple")
    assert isinstance(ref.group_labels[0], tuple)
    with dask.config.set({"dmixed.engine": engine}):
        m, res = _fit(dd.from_pandas(df, npartitions=3), SLOPE, client=cluster_client)
    held = DaskEngine if engine == "distributed" else LocalEngine
    assert isinstance(m.statistics(client=cluster_client).engine, held)
    _assert_same(res, ref)


@pytest.mark.parametrize("steps", ["as persisted", "filtered and assigned after"])
@pytest.mark.parametrize(("model", "key", "nparts"), [("slope", "int", 5), ("vc", "object", 4)])
def test_persisted_collections_are_read_where_they_are(
    cluster_client, force_distributed, steps, model, key, nparts
):
    """A persisted collection (partitions already on the workers, possibly with
    partition-wise steps after) is read in chains per worker over the partitions that
    worker holds: same estimates, and no chain task fetches a partition from elsewhere."""
    from distributed import get_task_stream

    model_kw = SLOPE if model == "slope" else VC
    df = _frame(key=key)
    df["x9"] = df["x2"] + 10.0
    persisted = cluster_client.persist(dd.from_pandas(df, npartitions=nparts))
    ref_df = df
    ddf = persisted
    if steps != "as persisted":
        ddf = persisted[persisted.x9 > 9.0].assign(x2=persisted.x9 - 10.0)
        ref_df = df[df.x9 > 9.0].reset_index(drop=True)
    chains = resident_chains(ddf, cluster_client, "auto")
    assert chains is not None
    assert sorted(len(f) for _, f in chains) != [1] * nparts or nparts <= 2
    assert sum(len(f) for _, f in chains) == nparts
    # building the model scans the persisted data: that needs the client as the current
    # one, as it is for a user whose Client is the default
    with cluster_client.as_current(), get_task_stream(client=cluster_client) as stream:
        m, res = _fit(ddf, model_kw, client=cluster_client)
    ran = [t for t in stream.data if "resident_chain_partials" in str(t["key"])]
    assert len(ran) == len(chains)
    if model == "slope":  # (with variance components the small slot map moves too)
        for task in ran:  # every chain found its partitions on its own worker
            assert not [ss for ss in task["startstops"] if ss["action"] == "transfer"]
    assert isinstance(m.statistics(client=cluster_client).engine, DaskEngine)
    ref = _fit(ref_df, model_kw)[1]
    _assert_same(res, ref)


def test_resident_pieces_are_one_partition_each(cluster_client):
    """Each partition's steps after the persist are culled to that partition (a graph of
    a few tasks, not one per partition of the collection) and start from its own
    persisted partition; the chains cover every partition once, each on one worker."""
    df = _frame()
    persisted = cluster_client.persist(dd.from_pandas(df, npartitions=40))
    ddf = persisted[persisted.x1 > -5].assign(x3=persisted.x1 * 2)[["g", "x1", "x3", "y"]]
    leaf_keys = list(persisted.expr.operand("keys"))  # the futures behind the collection
    pieces = partition_pieces(ddf, leaf_keys)
    assert [leaf for _, _, leaf in pieces] == leaf_keys
    assert max(len(graph) for graph, _, _ in pieces) <= 4
    for graph, out_key, leaf in pieces:
        frame = dask.local.get_sync({**graph, leaf: df.iloc[:5]}, out_key)
        assert list(frame.columns) == ["g", "x1", "x3", "y"]
    chains = resident_chains(ddf, cluster_client, "auto")
    assert sorted(leaf for p, _ in chains for _, _, leaf in p.items) == sorted(leaf_keys)
    for p, futures in chains:
        assert [f.key for f in futures] == [leaf for _, _, leaf in p.items]
        holders = cluster_client.who_has(futures)
        assert len({sorted(holders[f.key])[0] for f in futures}) == 1


def test_resident_chains_only_for_persisted_data(tmp_path, cluster_client):
    df = _frame()
    df.to_parquet(tmp_path / "data.parquet")
    on_disk = dd.read_parquet(tmp_path / "data.parquet")
    assert resident_chains(on_disk, cluster_client, "auto") is None
    in_memory = dd.from_pandas(df, npartitions=3)
    assert resident_chains(in_memory, cluster_client, "auto") is None
    persisted = cluster_client.persist(in_memory)
    assert resident_chains(persisted, None, "auto") is None  # no cluster
    assert resident_chains(persisted, cluster_client, "tree") is None
    reduced = persisted.assign(x1=persisted.x1 - persisted.x1.mean())
    assert resident_chains(reduced, cluster_client, "auto") is None
    assert resident_chains(persisted, cluster_client, "auto") is not None
    with dask.config.set({"dmixed.data_pass": "chains"}):  # in memory, not persisted
        with pytest.raises(ValueError, match="or persisted on the cluster"):
            _fit(in_memory, SLOPE, client=cluster_client)
        with cluster_client.as_current():  # but persisted is fine
            _fit(persisted, SLOPE, client=cluster_client)


def test_cluster_auto_gathers_small_statistics(cluster_client):
    df = _frame(key="object")
    m, res = _fit(dd.from_pandas(df, npartitions=3), SLOPE, client=cluster_client)
    assert isinstance(m.statistics(client=cluster_client).engine, LocalEngine)
    _assert_same(res, _reference(df, SLOPE, "object"))


def test_cluster_weights_and_explicit_engine(cluster_client):
    df = _frame()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = dmixed.MixedLM.from_formula(FORMULA, data=df, groups="g", weights="w", **VC)
        ref = ref.fit()
        model = dmixed.MixedLM.from_formula(
            FORMULA, data=dd.from_pandas(df, npartitions=4), groups="g", weights="w", **VC
        )
    stats = statistics_from_dask(model.source, model.spec, client=cluster_client, engine="local")
    assert isinstance(stats.engine, StructuredVCEngine)  # gathered: as in-process
    local_moments = stats.engine.moments()  # one slot per component
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = statistics_from_dask(
            model.source, model.spec, client=cluster_client, engine="distributed"
        )
    assert isinstance(stats.engine, DaskEngine) and stats.engine.collapsed_vc
    moments = stats.engine.moments()  # the moment start's sums, added over the blocks
    for name in ("zz", "zz_zz", "zxy_zxy", "n_groups"):
        np.testing.assert_allclose(
            getattr(moments, name), getattr(local_moments, name), rtol=1e-10, err_msg=name
        )
    model.cached_statistics, model.cached_client = stats, cluster_client
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit(client=cluster_client)
    _assert_same(res, ref)
    stats.engine.close()
    with pytest.raises(RuntimeError, match="statistics are gone"):
        stats.engine.step(np.eye(stats.layout.r), stats.layout.k_re)


@pytest.mark.usefixtures("tasks_only")
def test_large_arguments_are_sent_as_futures(cluster_client, force_distributed, monkeypatch):
    """Arguments above the size limit (Λ, the Hessian basis, w) reach the workers as
    futures, not as task-graph literals: distributed fails on keyword arguments over
    ~100 kB.  The limit is lowered so that a small model exercises the path."""
    monkeypatch.setattr(evaluator, "SMALL_ARG_BYTES", 8)
    scattered = []
    real_scatter = cluster_client.scatter

    def counting_scatter(data, *args, **kwargs):
        scattered.append(getattr(data, "shape", None))
        return real_scatter(data, *args, **kwargs)

    monkeypatch.setattr(cluster_client, "scatter", counting_scatter)
    df = _frame()
    m, res = _fit(dd.from_pandas(df, npartitions=3), VC, client=cluster_client)
    assert isinstance(m.statistics(client=cluster_client).engine, DaskEngine)
    assert scattered
    _assert_same(res, _reference(df, VC, "int"))


def test_failed_round_trip_is_resubmitted(cluster_client, caplog):
    """A block future that errs (here: cancelled under the engine) makes the gather fail;
    the engine recomputes the block from its graph and resubmits the step once."""
    df = _frame()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = dmixed.MixedLM.from_formula(
            FORMULA, data=dd.from_pandas(df, npartitions=3), groups="g", **VC
        )
    stats = statistics_from_dask(
        model.source, model.spec, client=cluster_client, engine="distributed"
    )
    engine = stats.engine
    # one variance per component (the structured blocks' sums come per component),
    # and its padded twin for the dense reference below
    q, widths = stats.layout.k_re, stats.layout.vc_widths
    diag = np.linspace(0.5, 1.5, stats.fit_layout.r)
    lam, padded = np.diag(diag), np.diag(np.r_[diag[:q], np.repeat(diag[q:], widths)])
    before = engine.step(lam, stats.layout.k_re)
    cluster_client.cancel(engine.blocks[:1])
    caplog.set_level(logging.WARNING, logger="dmixed")
    after = engine.step(lam, stats.layout.k_re)
    assert "resubmitting" in caplog.text
    np.testing.assert_allclose(after.logdet, before.logdet, rtol=1e-12)
    np.testing.assert_allclose(after.m, before.m, rtol=1e-12)
    # the per-group results come back in sorted group order, as from a LocalEngine
    w = np.r_[-np.ones(3), 1.0]
    blup, cov = engine.random_effects(lam, w)
    local = statistics_from_dask(model.source, model.spec, client=cluster_client, engine="local")
    dense = LocalEngine(*local.engine.gather())
    ref_blup, ref_cov = dense.random_effects(padded, w)
    np.testing.assert_allclose(blup, ref_blup, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(cov, ref_cov, rtol=1e-10, atol=1e-14)
    for mine, ref in zip(engine.gather(), local.engine.gather(), strict=True):
        np.testing.assert_allclose(mine, ref, rtol=1e-12, atol=1e-12)
    engine.close()


def _pickled_types(obj) -> set[str]:
    """Names of the Future / Client / DaskEngine objects a pickle of ``obj`` would hold."""
    found: set[str] = set()

    class Spy(pickle.Pickler):
        def reducer_override(self, value):
            if isinstance(value, (Future, Client, DaskEngine)):
                found.add(type(value).__name__)
            return NotImplemented

    Spy(io.BytesIO()).dump(obj)
    return found


@pytest.mark.parametrize("how", ["current client", "explicit client"])
def test_results_pickle_without_client_or_futures(cluster_client, force_distributed, how):
    df = _frame(key="str")
    ddf = dd.from_pandas(df, npartitions=3)
    if how == "current client":
        with cluster_client.as_current():  # found without client=
            m, res = _fit(ddf, SLOPE)
            engine = m.statistics().engine
    else:
        m, res = _fit(ddf, SLOPE, client=cluster_client)
        engine = m.statistics(client=cluster_client).engine
    assert isinstance(engine, DaskEngine)
    assert not _pickled_types(res) & {"Future", "Client", "DaskEngine"}
    back = pickle.loads(pickle.dumps(res))
    _assert_same(back, res, rtol=0)
    # the engine itself never carries its client or futures: it unpickles detached
    assert not _pickled_types(engine) & {"Future", "Client"}
    with pytest.raises(RuntimeError, match="statistics are gone"):
        pickle.loads(pickle.dumps(engine)).step(np.eye(2), 2)


#: a fit's state fields of the BLUPs (:class:`~dmixed.results.fit_record.FitState`)
BLUP_FIELDS = ("blup", "blup_cov", "blup_cov_statistics")


@pytest.mark.parametrize("key", ["int", "str"])
@pytest.mark.parametrize("model_kw", [SLOPE, VC], ids=["slope", "vc"])
def test_blups_made_on_first_read_after_the_cluster_is_closed(
    tmp_path, force_distributed, key, model_kw
):
    """A Dask fit gathers its BLUPs at the fit and makes them (the map back, the group
    order) on first read: after its cluster is closed, its random effects, their
    covariances, a save and a pickle equal bit for bit those of the same fit read while
    the cluster was up."""
    ddf = dd.from_pandas(_frame(key=key), npartitions=3)
    with _two_worker_client() as client:
        model, at_once = _fit(ddf, model_kw, client=client)
        assert isinstance(model.statistics(client=client).engine, DaskEngine)
        want = {name: pickle.dumps(getattr(at_once.to_state(), name)) for name in BLUP_FIELDS}
        _, res = _fit(ddf, model_kw, client=client)
        held = res.to_state().__dict__
        assert not any(isinstance(held[name], np.ndarray) for name in BLUP_FIELDS)
    assert client.status == "closed"
    back = pickle.loads(pickle.dumps(res))
    assert {name: pickle.dumps(getattr(res.to_state(), name)) for name in BLUP_FIELDS} == want
    assert {name: pickle.dumps(getattr(back.to_state(), name)) for name in BLUP_FIELDS} == want
    res.save(tmp_path / "res")
    at_once.save(tmp_path / "at_once")
    loaded, loaded_at_once = dmixed.load(tmp_path / "res"), dmixed.load(tmp_path / "at_once")
    for group in (at_once.group_labels[0], at_once.group_labels[-1]):
        for got in (res, back, loaded):
            pd.testing.assert_series_equal(got.random_effects[group], at_once.random_effects[group])
            pd.testing.assert_frame_equal(
                got.random_effects_cov[group], at_once.random_effects_cov[group]
            )
        pd.testing.assert_series_equal(
            loaded.random_effects[group], loaded_at_once.random_effects[group]
        )


def test_progress_logs_the_data_pass(cluster_client, caplog):
    df = _frame()
    caplog.set_level(logging.INFO, logger="dmixed")
    _fit(dd.from_pandas(df, npartitions=3), VC, client=cluster_client, progress=True)
    text = caplog.text
    assert "VC prepass: 3 partitions" in text
    assert "data pass: 3 partitions" in text
    assert "data pass done in" in text


class _SlowParts(_Parts):
    def __call__(self, i: int) -> pd.DataFrame:
        time.sleep(0.15)
        return super().__call__(i)


@pytest.mark.parametrize("data_pass", ["chains", "tree"])
def test_progress_counts_partitions_read(cluster_client, caplog, monkeypatch, data_pass):
    """A data pass of a few long tasks (chains) still shows how far it got: every
    partition read is reported to the driver, which logs the count periodically."""
    monkeypatch.setattr(progress, "PROGRESS_INTERVAL", 0.3)
    df = _frame()
    ddf = dd.from_map(_SlowParts(df, 12), range(12), meta=df.iloc[:0], enforce_metadata=False)
    caplog.set_level(logging.INFO, logger="dmixed")
    with dask.config.set({"dmixed.data_pass": data_pass}):
        _fit(ddf, SLOPE, client=cluster_client, progress=True)
    lines = [r.getMessage() for r in caplog.records if "partitions read" in r.getMessage()]
    assert lines  # at least one progress line during the data pass
    counts = [int(line.split("data pass: ")[1].split("/")[0]) for line in lines]
    assert counts == sorted(counts) and 0 < max(counts) <= 12  # the events arrive
    assert all("/12 partitions read" in line for line in lines)


def test_engine_argument_errors():
    df = _frame()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = dmixed.MixedLM.from_formula(
            FORMULA, data=dd.from_pandas(df, npartitions=2), groups="g"
        )
    with pytest.raises(ValueError, match="needs a distributed Client"):
        statistics_from_dask(model.source, model.spec, engine="distributed")
    with pytest.raises(ValueError, match="engine must be"):
        statistics_from_dask(model.source, model.spec, engine="gpu")


def test_unreachable_scheduler_fails_fast():
    """Reaching the scheduler is the client's business: an address nobody listens on
    fails within the client's timeout (dmixed never retries it behind the user's back)."""
    t0 = time.perf_counter()
    with pytest.raises(OSError, match="127.0.0.1:1"):
        Client("tcp://127.0.0.1:1", timeout="2s", set_as_default=False)
    assert time.perf_counter() - t0 < 30


# --------------------------------------------------------------------------------------
# fault tolerance: a worker dies during the optimization
# --------------------------------------------------------------------------------------


class _KillOnIteration(logging.Handler):
    """Kills (SIGKILL) a worker holding statistics when the optimizer logs iteration k."""

    def __init__(self, model, client, at: int) -> None:
        super().__init__(level=logging.DEBUG)
        self.model, self.client, self.at = model, client, at
        self.killed: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if self.killed or not record.getMessage().startswith(f"iteration {self.at} "):
            return
        engine = self.model.cached_statistics.engine
        # A step may have run on the worker without the block (the scheduler copies a
        # small block rather than wait): keep one copy of each, so the kill loses some.
        self.client.replicate(engine.blocks, n=1)
        holders = self.client.who_has(engine.blocks)
        addr = sorted(addrs[0] for addrs in holders.values() if len(addrs) == 1)[0]
        pid = self.client.run(os.getpid, workers=[addr])[addr]
        os.kill(pid, signal.SIGKILL)
        self.killed.append(addr)


@pytest.mark.parametrize("persisted", [False, True])
def test_worker_killed_mid_optimization(tmp_path, persisted):
    """Statistics lost with a worker are recomputed from their lineage: from the files
    (chains that read), or from the persisted partitions, themselves recomputed when the
    worker held some (chains per worker)."""
    df = _frame(n_groups=120, key="int")
    ref = _reference(df, SLOPE, "kill")
    nparts = 4
    reader = CountingReader(df, nparts, str(tmp_path / "reads.txt"))
    ddf = dd.from_map(reader, range(nparts), meta=df.iloc[:0], enforce_metadata=False)
    logger = logging.getLogger("dmixed")
    old_level = logger.level
    with _two_worker_client() as client, dask.config.set({"dmixed.engine": "distributed"}):
        if persisted:
            ddf = client.persist(ddf)
            assert resident_chains(ddf, client, "auto") is not None
        with warnings.catch_warnings(), client.as_current():
            warnings.simplefilter("ignore")
            model = dmixed.MixedLM.from_formula(FORMULA, data=ddf, groups="g", **SLOPE)
        reader.reset()
        killer = _KillOnIteration(model, client, at=2)  # a Newton step still to come
        logger.addHandler(killer)
        logger.setLevel(logging.DEBUG)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = model.fit(client=client)
        finally:
            logger.removeHandler(killer)
            logger.setLevel(old_level)
        assert killer.killed, "the optimizer never reached the iteration that kills"
        # the lost blocks were recomputed from their lineage: the data was read again
        if persisted:  # only the persisted partitions the worker held
            assert 0 < reader.reads() <= nparts
        else:  # the chains of the lost blocks, whole
            assert reader.reads() > nparts
    _assert_same(res, ref)


# --------------------------------------------------------------------------------------
# a real scheduler and workers started from the command line
# --------------------------------------------------------------------------------------


def test_subprocess_scheduler_and_workers(tmp_path):
    """`dask scheduler` and two `dask worker` processes on 127.0.0.1, as users run them."""
    with scheduler_and_workers(tmp_path) as cluster:
        client = Client(scheduler_file=cluster.file, timeout="5s", set_as_default=False)
        try:
            df = _frame(key="string[pyarrow]")
            with dask.config.set({"dmixed.engine": "distributed"}):
                m, res = _fit(dd.from_pandas(df, npartitions=5), VC, client=client)
            stats = m.statistics(client=client)
            engine = stats.engine
            assert isinstance(engine, DaskEngine)
            _assert_same(res, _reference(df, VC, "string[pyarrow]"))

            # the scheduler dies: the statistics are gone with it, and the engine says so
            # once the client gives up reconnecting (its 5 s timeout), instead of hanging
            cluster.scheduler.kill()
            cluster.scheduler.wait(timeout=20)
            t0 = time.perf_counter()
            with pytest.raises(ConnectionError, match="reconnect and fit again"):
                engine.step(np.eye(stats.layout.r), stats.layout.k_re)
            assert time.perf_counter() - t0 < 60
        finally:
            client.close()


def test_a_client_that_failed_to_start_is_not_used():
    """A ``Client`` whose construction failed stays distributed's default client
    ("connecting") until it is collected: fits that follow in the process run
    in-process, not on it."""
    from dmixed.engines.dask.data_pass import resolve_client

    # the failed client sets Dask's scheduler to "dask.distributed" and never resets
    # it (only ``close`` does): the outer ``config.set`` restores it for later tests
    with dask.config.set(scheduler="sync"):
        try:
            with pytest.raises(ValueError, match="unknown address scheme"):
                Client("foo://127.0.0.1:9", timeout=1)
            assert resolve_client(None) is None
            df = make_data(n_groups=12, seed=4)
            res = dmixed.mixedlm("y ~ x1", dd.from_pandas(df, npartitions=2), groups="g").fit()
        finally:
            with contextlib.suppress(ValueError):  # collected already: none to close
                default_client().close()
    ref = dmixed.mixedlm("y ~ x1", df, groups="g").fit()
    np.testing.assert_allclose(res.params, ref.params, rtol=1e-9)
    assert dask.config.get("scheduler", None) != "dask.distributed"
