"""dmixed.engines.dask.graph: the data pass's graph, one low-level graph of named tasks."""

from __future__ import annotations

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from dask.utils import key_split

import dmixed
from dmixed.engines.dask.blocks import assemble_blocks
from dmixed.engines.dask.data_pass import group_key_dtype
from dmixed.engines.dask.graph import block_graph, project_columns, slot_map_graph
from dmixed.errors import DataError
from dmixed.stats.packed import PackedLayout

from ..._synth import make_data


class _EveryNth:
    """``dd.from_map`` reader: partition i is every n-th row from i (read by chains)."""

    def __init__(self, df: pd.DataFrame, n: int) -> None:
        self.df, self.n = df, n

    def __call__(self, i: int) -> pd.DataFrame:
        return self.df.iloc[i :: self.n].reset_index(drop=True)


def _collections(df: pd.DataFrame, n: int) -> dict:
    return {
        "chains": dd.from_map(_EveryNth(df, n), range(n), meta=df.iloc[:0]),
        "partitions": dd.from_pandas(df, npartitions=n),  # in memory: one task each
    }


def _blocks(source: str, n: int, workers: list | None = None) -> tuple:
    """``(data, packed layout, delayed blocks)`` of 2 blocks of ``n`` partitions
    (``workers``: as :func:`block_graph`'s)."""
    df = make_data(n_groups=30, seed=7)
    ddf = _collections(df, n)[source]
    spec = dmixed.mixedlm("y ~ x1", ddf, groups="g", re_formula="1 + x1").spec
    ddf = project_columns(ddf, spec)
    packed = PackedLayout(len(spec.exog_re_names), len(spec.exog_names) + 1)
    key_dtype = group_key_dtype(ddf, spec)
    return df, packed, block_graph(ddf, spec, None, packed, key_dtype, 2, 2, None, workers=workers)


@pytest.mark.parametrize("source", ["chains", "partitions"])
def test_the_blocks_share_one_graph_of_the_pass_functions(source):
    df, packed, blocks = _blocks(source, 4)
    graphs = {id(b.__dask_graph__()) for b in blocks}
    assert len(graphs) == 1
    kinds = {key_split(k) for k in dict(blocks[0].__dask_graph__())}
    reader = "chain_partials" if source == "chains" else "partition_partials"
    assert {reader, "reduce_routed", "combined_block", "exchange_summary"} <= kinds
    # computed together or one by one, the same blocks (the tasks' arguments resolved)
    with dask.config.set(scheduler="sync"):
        together = dask.compute(*blocks)
        alone = [dask.compute(b)[0] for b in blocks]
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_array_equal(a.zz, b.zz)
        np.testing.assert_array_equal(a.zxy, b.zxy)
    asm = assemble_blocks(list(together), packed.k)
    assert asm.glob.n == len(df)
    assert len(asm.group_labels) == df["g"].nunique()


@pytest.mark.parametrize("source", ["chains", "partitions"])
def test_a_buckets_parts_reach_one_worker_before_the_target_map(source):
    # the partials tasks' parts of a bucket are brought together by a task that waits
    # for them alone (not for the target map or the routed rows' owner), and every
    # such part is taken by exactly one of these tasks
    _, _, blocks = _blocks(source, 12)
    graph = dict(blocks[0].__dask_graph__())
    kinds = {k: key_split(k) for k in graph}
    bundles = [k for k, kind in kinds.items() if kind == "bucket_parts"]
    # chains: one bundle per bucket; one task per partition: leaves of 8 and of 4
    assert len(bundles) == (2 if source == "chains" else 4)
    taken = [d for k in bundles for d in graph[k].dependencies]
    assert {kinds[d] for d in taken} == {"getitem"}
    parts = [d for d in taken if kinds[next(iter(graph[d].dependencies))] == "getitem"]
    assert len(parts) == len(set(parts)) == 2 * (2 if source == "chains" else 12)
    users = [k for k in graph if set(graph[k].dependencies) & set(bundles)]
    assert {kinds[k] for k in users} == {
        "combined_block" if source == "chains" else "combine_converted"
    }


def _annotated(blocks) -> dict:
    """Each task's ``workers`` annotation, or None, by key (as Dask's client reads them:
    a layer's annotation, or its function of the key; the scheduler skips None)."""
    hlg = blocks[0].__dask_graph__()
    out = {}
    for layer in hlg.layers.values():
        annotations = layer.annotations or {}
        workers = annotations.get("workers")
        loose = annotations.get("allow_other_workers")
        for key in layer:
            value = workers(key) if callable(workers) else workers
            out[key] = None if value is None else tuple(value)
            if value is not None:  # preferred, not required: a lost worker's tasks move
                assert (loose(key) if callable(loose) else loose) is True
    return out


def _priorities(blocks) -> dict:
    """Each task's ``priority`` annotation, or None, by key."""
    out = {}
    for layer in blocks[0].__dask_graph__().layers.values():
        priority = (layer.annotations or {}).get("priority")
        for key in layer:
            out[key] = priority(key) if callable(priority) else priority
    return out


@pytest.mark.parametrize("exchange", ["auto", "rows", "partials"])
def test_placed_chains_send_each_part_to_its_buckets_worker_alone(exchange):
    # given a worker per thread, chain i and bucket i's block run on worker i, and a
    # chain's share of the other bucket is taken there by a task of its own, run first
    # (whose transfer starts when that chain ends, fetched first); the blocks are those
    # of the unplaced graph, value for value
    workers = ["tcp://a:1", "tcp://b:2"]
    with dask.config.set({"dmixed.exchange": exchange}):
        _, packed, placed = _blocks("chains", 4, workers)
        _, _, plain = _blocks("chains", 4)
    where = _annotated(placed)
    first = _priorities(placed)
    graph = dict(placed[0].__dask_graph__())
    kinds = {k: key_split(k) for k in graph}
    chains = sorted(k for k, kind in kinds.items() if kind == "chain_partials")
    assert [where[k] for k in chains] == [(w,) for w in workers]
    moved = [k for k, kind in kinds.items() if kind == "moved_part"]
    assert len(moved) == 2
    for k in moved:
        # a bucket's share is taken from its chain's result in one task, where the
        # chain ran, and moves to the other chain's worker, never to its own, by a
        # task that takes it alone (its transfer is not held back by the other chain)
        (part,) = graph[k].dependencies
        (chain,) = graph[part].dependencies
        assert kinds[part] == "outbound_part" and kinds[chain] == "chain_partials"
        assert where[part] == where[chain] != where[k]
        assert first[k] == first[part] and first[k] > 0
        # and it leaves before its worker reduces the rows routed to its own bucket
        owners = [o for o, kind in kinds.items() if kind == "bucket_owner"]
        assert all(first[part] > first[o] > 0 for o in owners)
    urgent = ("moved_part", "outbound_part", "bucket_owner")
    rest = {first[k] for k in graph if kinds[k] not in urgent}
    assert rest == {None}
    for b, block in enumerate(placed):
        assert where[block.key] == (workers[b],)
        # bucket b's block takes its own chain's whole result and the other chain's
        # moved share itself; block 0 the other bucket's owner's sums too
        taken = {kinds[d] for d in graph[block.key].dependencies}
        (owner,) = [d for d in graph[block.key].dependencies if kinds[d] == "bucket_owner"]
        # the owner takes the share as made (it runs as soon as the share arrives)
        assert {kinds[d] for d in graph[owner].dependencies} == {
            "outbound_part",
            "chain_partials",
        }
        extra = {"owner_sums"} if b == 0 else set()
        assert taken == {"moved_part", "chain_partials", "bucket_owner"} | extra
    # every item of a chain's result is taken where the chain ran, the routed rows'
    # owner and its items where the bucket is combined: none is left to the scheduler,
    # which would send a small task of a large group anywhere (a root task to it)
    for k, kind in kinds.items():
        if kind in ("getitem", "bucket_owner", "outbound_part", "owner_sums"):
            assert where[k] is not None, k
    assert "bucket_parts" not in kinds.values()
    with dask.config.set(scheduler="sync"):
        ours, theirs = dask.compute(placed, plain)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.nobs, b.nobs)
        np.testing.assert_array_equal(a.zz, b.zz)
        np.testing.assert_array_equal(a.zxy, b.zxy)
        np.testing.assert_array_equal(a.xyxy, b.xyxy)
        assert (a.n, a.sum_log_weights, a.n_dropped) == (b.n, b.sum_log_weights, b.n_dropped)
        assert (a.within is None) == (b.within is None)
        if a.within is not None:
            np.testing.assert_array_equal(a.within, b.within)
        assert a.exchange == b.exchange
        assert a.standardization == b.standardization
    if exchange != "auto":
        assert ours[0].exchange[exchange] == 2
    asm = assemble_blocks(list(ours), packed.k)
    ref = assemble_blocks(list(theirs), packed.k)
    np.testing.assert_array_equal(asm.glob.xyxy, ref.glob.xyxy)
    np.testing.assert_array_equal(asm.glob.column_sums, ref.glob.column_sums)


def test_without_the_chains_workers_nothing_is_placed():
    # one task per partition (in-memory data): where the partials run is the
    # scheduler's choice, so no part is moved ahead and no task is placed
    _, _, blocks = _blocks("partitions", 4, ["tcp://a:1"])
    assert set(_annotated(blocks).values()) == {None}
    assert "moved_part" not in {key_split(k) for k in dict(blocks[0].__dask_graph__())}


def _slot_table(slot_map) -> dict:
    """``{(component, group key, column): slot}`` of a slot map (its groups' order aside)."""
    out = {}
    for ell, nc in enumerate(slot_map.ncols):
        keys = slot_map.pair_keys[ell]
        groups = slot_map.groups[keys // nc]
        for g, col, slot in zip(groups, keys % nc, slot_map.pair_slots[ell], strict=True):
            out[ell, g, int(col)] = int(slot)
    return out


def test_slot_map_graph_in_chains():
    """The VC prepass over a collection read in chains: one task per chain (none per
    partition), and the same slots, widths and overlap as one task per partition."""
    from tests.engines.test_vc_crossed import CROSSED, crossed_data

    df = crossed_data(n_groups=12, seed=1).sample(frac=1.0, random_state=5)
    df = df.reset_index(drop=True)
    ddf = _collections(df, 7)["chains"]
    spec = dmixed.MixedLM.from_formula(
        "y ~ x", data=ddf, groups="g", re_formula="1", vc_formula=CROSSED
    ).spec
    chained = slot_map_graph(ddf, spec, np.int64, 3)
    kinds = {key_split(k) for k in chained[0].__dask_graph__()}
    assert "chain_vc_pairs" in kinds and "partition_vc_pairs" not in kinds
    assert sum(key_split(k) == "chain_vc_pairs" for k in chained[0].__dask_graph__()) == 3
    got_map, got_overlap = dask.compute(*chained, scheduler="sync")
    want_map, want_overlap = dask.compute(*slot_map_graph(ddf, spec, np.int64), scheduler="sync")
    assert got_map.widths == want_map.widths
    assert _slot_table(got_map) == _slot_table(want_map)
    assert len(_slot_table(got_map)) == sum(k.size for k in want_map.pair_keys) > 0
    assert bool(got_overlap) and not got_overlap.repeated
    np.testing.assert_array_equal(got_overlap.pairs, want_overlap.pairs)


def _scan_graphs(monkeypatch) -> list:
    """The task kinds of every ``dask.compute`` made while the test runs."""
    seen = []
    real = dask.compute

    def recording(*args, **kwargs):
        seen.append([key_split(k) for a in args for k in dict(a.__dask_graph__())])
        return real(*args, **kwargs)

    monkeypatch.setattr(dask, "compute", recording)
    return seen


@pytest.mark.parametrize("missing", ["raise", "drop"])
def test_level_scan_in_chains(monkeypatch, missing):
    """The level scan of a collection read in chains: one task per chain (none per
    partition), and the levels, object types, row counts and response range of one task
    per partition, categoricals of per-file categories, a partition without them and
    empty partitions among them."""
    from functools import partial

    from dmixed.design.scan import ScanPlan, dask_scan
    from dmixed.engines.dask.graph import scan_chain_graph

    from ...design.frames import make_df

    df = make_df(300, seed=4)
    df.loc[::7, "x1"] = np.nan
    df.loc[3, "y"] = -0.0
    df["cat"] = pd.Categorical(df["b"], categories=["w", "v", "u"])
    n = 9
    ddf = _collections(df, n)["chains"]
    ddf = ddf[ddf["x2"] < 1.9]  # a filter: some partitions hold fewer rows
    kinds = dmixed.design.build_spec(df.dropna(), "y ~ x1 + a + C(k)", groups="g").column_kinds
    kinds = {**kinds, "cat": kinds["a"], "cls": kinds["a"]}
    plan = ScanPlan(
        level_cols=["a", "k", "cls", "cat"],
        object_cols=["a", "cls"],
        c_columns={"k"},
        columns_used=["y", "x1", "a", "k", "cls", "cat", "g"],
        missing=missing,
        resp_col="y",
    )
    seen = _scan_graphs(monkeypatch)
    chains = partial(_three_chains, scan_chain_graph)
    got = dask_scan(ddf, ddf._meta, kinds, plan, chains)
    assert seen[-1].count("chain_summary") == 3 and "summarize_partition" not in seen[-1]
    want = dask_scan(ddf, ddf._meta, kinds, plan)
    assert seen[-1].count("summarize_partition") == n
    assert got.levels == want.levels and got.types == want.types
    assert (got.n_total, got.n_kept) == (want.n_total, want.n_kept)
    assert got.response_range == want.response_range
    kept = df[df["x2"] < 1.9]
    assert got.n_total == len(kept)
    assert got.levels["cat"] == ["w", "v", "u"]


def _three_chains(graph, ddf, kinds, plan, to_scan):
    return graph(ddf, kinds, plan, to_scan, 3)


def test_merged_summaries_read_as_the_partitions():
    """A run's merged summary reads as its partitions' do: categories left out where a
    partition with rows lacks them, the first of equal values and zeros kept."""
    from dmixed.design.scan import PartitionSummary, merged_summary

    parts = [
        PartitionSummary(3, 2, {"c": [1, 2.0]}, (0.0, 1.0), {"c": {"int"}}, {"d": ["x"]}),
        PartitionSummary(0, 0, {"c": []}, None, {}, {"d": ["y"]}),
        PartitionSummary(2, 2, {"c": [2, 1.0, 3]}, (-0.0, 4.0), {"c": {"float"}}, {}),
    ]
    out = merged_summary(parts)
    assert (out.n, out.n_kept) == (5, 4)
    assert out.levels["c"] == [1, 2.0, 3] and [type(v) for v in out.levels["c"]] == [
        int,
        float,
        int,
    ]
    assert out.types == {"c": {"int", "float"}}
    assert out.range == (0.0, 4.0) and np.copysign(1.0, out.range[0]) == 1.0
    assert "d" not in out.categories  # the third partition has rows and no categories
    out = merged_summary(parts[:2])
    assert out.categories == {"d": ["x", "y"]}


class _Counted:
    """A level that counts the times it is hashed: once per look-up in a dict."""

    __slots__ = ("v",)
    hashed = [0]

    def __init__(self, v) -> None:
        self.v = v

    def __hash__(self) -> int:
        self.hashed[0] += 1
        return hash(self.v)

    def __eq__(self, other) -> bool:
        return isinstance(other, _Counted) and self.v == other.v


def test_summaries_merged_as_they_come_read_each_value_once():
    """Many partitions of many new levels each, merged as a chain merges them: every
    value looked up about once (what is held is not read again for each partition), and
    the summary the combine would read from the partitions themselves: values in order
    of first appearance, the first of equal values kept, categories declared by every
    partition with rows, the widest range."""
    import itertools

    from dmixed.design.scan import PartitionSummary, SummaryMerge

    rng = np.random.default_rng(3)
    parts = []
    for p in range(300):
        new = [_Counted(f"u{p}-{i}") for i in range(40)]
        again = [_Counted(f"u{max(p - 1, 0)}-{i}") for i in range(0, 40, 4)]
        ints = [1, 2.0] if p % 2 else [2, 1.0]
        rows = int(p % 50 != 7)  # some partitions empty
        cats = {"d": [f"k{p % 5}"]} if p != 120 or not rows else {}
        if p == 130:
            cats["e"] = ["z"]  # first declared after partitions with rows
        lo, hi = rng.normal(size=2)
        parts.append(
            PartitionSummary(
                3 * rows,
                2 * rows,
                {"c": new + again, "i": ints},
                (min(lo, hi), max(lo, hi)) if rows else None,
                {"c": {"str"}, "i": {"int", "float"}},
                cats,
            )
        )
    _Counted.hashed[0] = 0
    merge = SummaryMerge()
    for s in parts:
        merge.add(s)
    out = merge.summary()
    walked = sum(len(s.levels["c"]) for s in parts)
    assert _Counted.hashed[0] <= 2 * walked  # not read again: once per value
    want = list(dict.fromkeys(itertools.chain.from_iterable(s.levels["c"] for s in parts)))
    assert len(out.levels["c"]) == len(want) == 300 * 40
    assert all(a is b for a, b in zip(out.levels["c"], want, strict=True))
    assert out.levels["i"] == [2, 1.0] and [type(v) for v in out.levels["i"]] == [int, float]
    assert (out.n, out.n_kept) == (sum(s.n for s in parts), sum(s.n_kept for s in parts))
    ranges = [s.range for s in parts if s.range is not None]
    assert out.range == (min(r[0] for r in ranges), max(r[1] for r in ranges))
    assert out.types == {"c": {"str"}, "i": {"int", "float"}}
    assert out.categories == {}  # partition 120 has rows and no "d"; "e" comes late
    held = SummaryMerge()
    for s in parts[:120]:
        held.add(s)
    assert held.summary().categories == {"d": [f"k{i}" for i in range(5)]}


@pytest.mark.parametrize("odd", [1, 3])
def test_a_level_scan_error_in_chains_names_the_partition_and_file(tmp_path, odd):
    """A file unlike the first found by the level scan in chains: the error of one task
    per partition, naming the same partition and file."""
    from functools import partial

    from dmixed.design.scan import ScanPlan, dask_scan
    from dmixed.engines.dask.graph import scan_chain_graph
    from dmixed.errors import DataError

    from ...design.frames import make_df

    df = make_df(250, seed=6)
    for i, rows in enumerate(np.array_split(np.arange(len(df)), 5)):
        part = df.iloc[rows]
        part = part.assign(y=part["y"].astype(str)) if i == odd else part
        part.to_parquet(tmp_path / f"p{i}.parquet", index=False)
    ddf = dd.read_parquet(sorted(str(p) for p in tmp_path.iterdir()))
    kinds = {"y": "numeric", "a": "categorical", "g": "numeric"}
    plan = ScanPlan(["a"], [], set(), ["y", "a", "g"], "raise", resp_col="y")
    chains = partial(_three_chains, scan_chain_graph)
    errors = []
    for how in (chains, None):
        with dask.config.set(scheduler="sync"), pytest.raises(DataError) as exc:
            dask_scan(ddf, ddf._meta, kinds, plan, how)
        errors.append(str(exc.value))
    assert errors[0] == errors[1]
    assert errors[0].startswith(f"partition {odd} of the Dask DataFrame (file {tmp_path}/p{odd}")


@pytest.mark.parametrize("data_pass", ["auto", "tree"])
def test_a_file_gone_before_the_level_scan_raises_what_the_reader_raised(tmp_path, data_pass):
    """A file deleted after the collection was planned: the level scan, in chains or one
    task per partition, raises the reader's ``FileNotFoundError``, as the scan of one
    task per partition always has."""
    from functools import partial

    from dmixed.design.scan import ScanPlan, dask_scan
    from dmixed.engines.dask.graph import scan_chain_graph

    from ...design.frames import make_df

    df = make_df(250, seed=7)
    for i, rows in enumerate(np.array_split(np.arange(len(df)), 5)):
        df.iloc[rows].to_parquet(tmp_path / f"p{i}.parquet", index=False)
    ddf = dd.read_parquet(sorted(str(p) for p in tmp_path.iterdir()))
    (tmp_path / "p3.parquet").unlink()
    kinds = {"y": "numeric", "a": "categorical", "g": "numeric"}
    plan = ScanPlan(["a"], [], set(), ["y", "a", "g"], "raise", resp_col="y")
    chains = partial(_three_chains, scan_chain_graph)
    with dask.config.set({"scheduler": "sync", "dmixed.data_pass": data_pass}):
        for how in (chains, None):
            with pytest.raises(FileNotFoundError, match="p3.parquet"):
                dask_scan(ddf, ddf._meta, kinds, plan, how)
        with pytest.raises(FileNotFoundError, match="p3.parquet"):
            dmixed.mixedlm("y ~ x1 + a", ddf, groups="g")


def _small_files(tmp_path, bad: str, k: int, n_files: int = 12) -> list[str]:
    """A split of a VC model's data into ``n_files`` small Parquet files, file ``k``
    with one bad value: ``"inf"`` in ``x``, ``"text"`` (``x`` as text) or ``"float"``
    (1.5 in the component's column ``c``), and columns the model does not read."""
    rng = np.random.default_rng(11)
    n = 60 * n_files
    df = pd.DataFrame({"g": rng.integers(0, 20, n), "x": rng.normal(size=n)})
    df["c"] = rng.integers(0, 3, n)
    df["y"] = df.x + rng.normal(size=20)[df.g] + df.c + rng.normal(size=n)
    # columns the model does not read: Dask reads the projection of two or more of
    # these files in one partition where a graph goes on after the read
    for j in range(4):
        df[f"u{j}"] = rng.normal(size=n)
    files = []
    for i, rows in enumerate(np.array_split(np.arange(n), n_files)):
        part = df.iloc[rows].reset_index(drop=True)
        if i == k and bad == "inf":
            part.loc[2, "x"] = np.inf
        elif i == k and bad == "text":
            part["x"] = part["x"].astype(str)
        elif i == k:
            part["c"] = part["c"].astype(float)
            part.loc[3, "c"] = 1.5
        files.append(str(tmp_path / f"p{i:03d}.parquet"))
        part.to_parquet(files[-1], index=False)
    return files


@pytest.mark.parametrize("bad", ["inf", "text", "float"])
@pytest.mark.parametrize("mode", ["tree", "auto"])
def test_a_bad_value_names_its_partition_and_file(tmp_path, bad, mode):
    """A bad value in file k of a split of small files: the message names partition k
    and file k, in the VC prepass's one task per partition (``"tree"``) as in its
    chains.  The prepass's partitions were once those of a ``map_partitions`` graph,
    where Dask reads two of these files in one partition: a bad value in file 7 was
    named partition 3, file 3."""
    k = 7
    files = _small_files(tmp_path, bad, k)
    ddf = dd.read_parquet(files)
    with dask.config.set({"dmixed.data_pass": mode}), pytest.raises(DataError) as exc:
        dmixed.mixedlm("y ~ x", ddf, groups="g", re_formula="1", vc_formula={"c": "0 + C(c)"}).fit()
    assert str(exc.value).startswith(f"partition {k} of the Dask DataFrame (file {files[k]}): ")
    assert (exc.value.partition, exc.value.file) == (k, files[k])


@pytest.mark.parametrize("vc", [False, True])
@pytest.mark.parametrize("mode", ["tree", "auto"])
def test_a_word_among_numbers_written_as_text_names_its_partition_and_file(tmp_path, vc, mode):
    """Numbers written as text in every file, a word among them in file k: refused on
    the whole data's levels, naming partition k and file k (it named no file), with and
    without variance components, in one task per partition as in chains."""
    k = 7
    files = _small_files(tmp_path, "none", -1)
    for i, path in enumerate(files):
        part = pd.read_parquet(path)
        part["x"] = part["x"].astype(str)
        if i == k:
            part.loc[4, "x"] = "abc"
        part.to_parquet(path, index=False)
    extra = {"re_formula": "1", "vc_formula": {"c": "0 + C(c)"}} if vc else {}
    with dask.config.set({"dmixed.data_pass": mode}), pytest.raises(DataError) as exc:
        dmixed.mixedlm("y ~ x", dd.read_parquet(files), groups="g", **extra).fit()
    assert str(exc.value).startswith(
        f"partition {k} of the Dask DataFrame (file {files[k]}): column 'x' holds text "
        "(such as 'abc') among "
    )
    assert (exc.value.partition, exc.value.file) == (k, files[k])


def test_the_prepass_has_one_task_per_partition_of_the_collection(tmp_path):
    """Not chained, the VC prepass reads the collection's own partitions (one per small
    file here), one task each, numbered as the driver finds their files; the same slots
    as its chains."""
    files = _small_files(tmp_path, "none", -1)
    ddf = dd.read_parquet(files)
    spec = dmixed.mixedlm(
        "y ~ x", ddf, groups="g", re_formula="1", vc_formula={"c": "0 + C(c)"}
    ).spec
    ddf = project_columns(ddf, spec)
    with dask.config.set({"dmixed.data_pass": "tree"}):
        per_partition = slot_map_graph(ddf, spec, np.int64, 3)
    keys = list(per_partition[0].__dask_graph__())
    assert sum(key_split(k) == "partition_vc_pairs" for k in keys) == len(files)
    got_map, got_overlap = dask.compute(*per_partition, scheduler="sync")
    want_map, want_overlap = dask.compute(*slot_map_graph(ddf, spec, np.int64, 3), scheduler="sync")
    assert got_map.widths == want_map.widths == (3,)
    assert _slot_table(got_map) == _slot_table(want_map)
    assert not got_overlap and not want_overlap


@pytest.mark.parametrize("mode", ["tree", "auto"])
def test_a_bad_value_of_the_data_pass_names_its_partition_and_file(tmp_path, mode):
    """Without variance components the data pass finds the bad value: in its one task
    per partition (``"tree"``) as in its chains, partition k and file k."""
    k = 5
    files = _small_files(tmp_path, "inf", k)
    with dask.config.set({"dmixed.data_pass": mode}), pytest.raises(DataError) as exc:
        dmixed.mixedlm("y ~ x", dd.read_parquet(files), groups="g").fit()
    assert str(exc.value).startswith(f"partition {k} of the Dask DataFrame (file {files[k]}): ")


def _small_row_group_files(tmp_path) -> str:
    """Three Parquet files of 1000 rows in row groups of 500, with columns no model
    below reads: a projection of them lets Dask's optimizer read several files in one
    partition (fewer partitions than the collection declares)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(1)
    n = 3000
    g, k, x = rng.integers(0, 60, n), rng.integers(0, 6, n), rng.normal(size=n)
    y = 1 + 2 * x + 0.5 * (k % 3) + rng.normal(size=60)[g] + rng.normal(size=n)
    df = pd.DataFrame({"g": g, "x": x, "k": k, "y": y, "w": rng.uniform(0.5, 2, n), "X": -x})
    for i, rows in enumerate(np.array_split(np.arange(n), 3)):
        table = pa.Table.from_pandas(df.iloc[rows], preserve_index=False)
        pq.write_table(table, tmp_path / f"part-{i}.parquet", row_group_size=500)
    return str(tmp_path)


def test_chains_split_the_optimized_partitions(tmp_path):
    """Runs of the partitions of the optimized graph, which may be fewer than the
    collection's: every run holds one at least, and together they hold each once."""
    from dmixed.engines.dask.graph import chain_recipes
    from dmixed.engines.dask.pieces import partition_pieces

    ddf = dd.read_parquet(_small_row_group_files(tmp_path)).fillna(0)[["k", "y"]]
    pieces = partition_pieces(ddf, [])
    assert len(pieces) < ddf.npartitions  # the files read several in one partition
    for n_chains in (2, 3, 5):
        recipes = chain_recipes(ddf, n_chains)
        assert len(recipes) == min(n_chains, len(pieces))
        assert all(len(rec.items) >= 1 for rec in recipes)
        assert [p[1] for rec in recipes for p in rec.items] == [p[1] for p in pieces]


_FRAME_STEPS = {
    "fillna": lambda d: dd.read_parquet(d).fillna(0),
    "astype": lambda d: dd.read_parquet(d).astype({"k": "float64"}),
    "rename": lambda d: dd.read_parquet(d).rename(columns={"x": "y", "y": "x"}),
    "reset_index": lambda d: dd.read_parquet(d, index="g").reset_index(),
}


@pytest.mark.parametrize("step", list(_FRAME_STEPS))
def test_a_factor_over_fewer_optimized_partitions_fits_as_in_process(tmp_path, monkeypatch, step):
    """A factor's levels scanned in chains over a frame whose optimized graph reads
    several files in one partition (a step after ``read_parquet``): the fit equals the
    in-process fit of the computed frame (a chain of no partition lacked the levels)."""
    from functools import partial

    import dmixed.engines.dask as dask_engine
    from dmixed.engines.dask.graph import scan_chain_graph

    monkeypatch.setattr(dask_engine, "level_scan_chains", partial(_three_chains, scan_chain_graph))
    ddf = _FRAME_STEPS[step](_small_row_group_files(tmp_path))
    with dask.config.set(scheduler="sync"):
        got = dmixed.mixedlm("y ~ x + C(k)", ddf, groups="g").fit()
    want = dmixed.mixedlm("y ~ x + C(k)", ddf.compute(), groups="g").fit()
    assert got.converged and want.converged
    assert list(got.params.index) == list(want.params.index)
    assert got.llf == pytest.approx(want.llf, rel=1e-10)
    np.testing.assert_allclose(np.asarray(got.params), np.asarray(want.params), rtol=1e-10)
