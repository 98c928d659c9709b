"""dmixed.engines.dask.data_pass: where the statistics stay, said in the log, and the
evaluators started before the blocks' summaries are assembled."""

from __future__ import annotations

import functools
import logging
import operator
import warnings

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import dmixed
from dmixed.engines.dask import data_pass
from dmixed.engines.dask.combine import bucket_of
from dmixed.engines.dask.data_pass import AUTO_LOCAL_MAX_VALUES, statistics_from_dask
from dmixed.engines.dask.evaluator import DaskEngine
from dmixed.errors import DataError, SpecError

from ..._synth import make_data


def _one_bucket_frame():
    """Groups whose keys all hash to bucket 0 of 2: the data pass's block 1 is empty."""
    df = make_data(n_groups=150, seed=3)
    candidates = np.arange(2000)
    keys = candidates[bucket_of(candidates, 2) == 0][:150]
    return df.assign(g=keys[df["g"].to_numpy()])


def _sums_equal(got, ref):
    assert vars(ref)
    for name in vars(ref):
        np.testing.assert_allclose(
            np.asarray(getattr(got, name), dtype=float),
            np.asarray(getattr(ref, name), dtype=float),
            rtol=1e-10,
            atol=1e-12,
            err_msg=name,
        )


def test_kept_statistics_with_an_empty_block_equal_the_in_process_ones(client, caplog):
    df = _one_bucket_frame()
    model = dmixed.mixedlm(
        "y ~ x1 + x2", dd.from_pandas(df, npartitions=3), groups="g", re_formula="1 + x1"
    )
    with caplog.at_level(logging.DEBUG, logger="dmixed"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = statistics_from_dask(model.source, model.spec, client=client, engine="distributed")
    assert isinstance(stats.engine, DaskEngine)
    assert "kept on the cluster in 1 blocks (150 groups; engine 'distributed')" in caplog.text
    local = dmixed.mixedlm("y ~ x1 + x2", df, groups="g", re_formula="1 + x1").statistics()
    np.testing.assert_array_equal(stats.group_labels, local.group_labels)
    np.testing.assert_array_equal(stats.group_sizes, local.group_sizes)
    # the moments summed as the evaluators were made, before the summaries were assembled
    _sums_equal(stats.engine.moments(), local.engine.moments())
    lam = stats.layout.lam(np.array([0.8, 0.1, 0.4]), True)
    _sums_equal(stats.engine.step(lam, stats.layout.k_re), local.engine.step(lam, 2))
    stats.engine.close()


def test_small_statistics_are_gathered_and_the_log_says_why(client, caplog):
    df = make_data(n_groups=40, seed=4)
    model = dmixed.mixedlm("y ~ x1", dd.from_pandas(df, npartitions=2), groups="g")
    with caplog.at_level(logging.DEBUG, logger="dmixed"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = statistics_from_dask(model.source, model.spec, client=client, engine="auto")
    assert not isinstance(stats.engine, DaskEngine)
    assert f"40 groups; the rule: on the workers above {AUTO_LOCAL_MAX_VALUES} values" in (
        caplog.text
    )


def test_the_rule_keeps_statistics_of_two_million_values_on_the_workers(client):
    """2.2M statistic values (22 000 random-slope groups, 48 fixed effects: ``r (r + p +
    1)`` = 102 values each) stay on the workers: there the optimization's compute divides
    among them and only the BLUPs come back, where gathered every step ran on the driver
    (the rule drawn at 6M values gathered them)."""
    n_groups, p = 22_000, 48
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(n_groups), 2)
    x = rng.normal(size=(g.size, p))
    df = pd.DataFrame(x, columns=[f"x{i}" for i in range(p)]).assign(
        g=g, y=x[:, 0] + rng.normal(size=g.size) + rng.normal(size=n_groups)[g]
    )
    model = dmixed.mixedlm(
        "y ~ " + " + ".join(f"x{i}" for i in range(1, p)),
        dd.from_pandas(df, npartitions=2),
        groups="g",
        re_formula="1 + x1",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = statistics_from_dask(model.source, model.spec, client=client, engine="auto")
    assert isinstance(stats.engine, DaskEngine)
    assert n_groups * 2 * (2 + p + 1) > AUTO_LOCAL_MAX_VALUES  # p fixed effects
    stats.engine.close()


def test_a_workers_first_task_after_its_block_is_the_blocks_summary(client):
    """Kept on the workers, each block's summary (what the driver assembles while the
    workers go on) runs on its worker before the block's evaluator and moment sums: a
    worker's first task after the data pass is a summary.  (Not every summary before
    every evaluator: a worker holding two blocks may run the first block's evaluator
    while its second block is still being made, as a loaded run did.)"""
    from dask.utils import key_split
    from distributed import get_task_stream

    df = make_data(n_groups=150, seed=5)
    model = dmixed.mixedlm(
        "y ~ x1 + x2", dd.from_pandas(df, npartitions=4), groups="g", re_formula="1 + x1"
    )
    with warnings.catch_warnings(), get_task_stream(client) as ts:
        warnings.simplefilter("ignore")
        stats = statistics_from_dask(model.source, model.spec, client=client, engine="distributed")
    assert isinstance(stats.engine, DaskEngine)
    starts: dict = {}
    for rec in ts.data:
        name = key_split(rec["key"])
        if name in ("block_summary", "make_evaluator", "block_moments"):
            start = min(s["start"] for s in rec["startstops"] if s["action"] == "compute")
            starts.setdefault(rec["worker"], {}).setdefault(name, []).append(start)
    assert starts
    for mine in starts.values():
        assert set(mine) == {"block_summary", "make_evaluator", "block_moments"}
        assert min(mine["block_summary"]) < min(mine["make_evaluator"] + mine["block_moments"])
    stats.engine.close()


def test_the_moments_come_with_the_summaries_in_their_one_gather(client, monkeypatch):
    """Kept on the workers, the data pass gathers once after its blocks (the summaries,
    which bring the sizes and the moments), and the engine's moments need no round trip
    of their own: each evaluator's own sums, added in block order."""
    df = make_data(n_groups=150, seed=3)
    model = dmixed.mixedlm(
        "y ~ x1 + x2", dd.from_pandas(df, npartitions=3), groups="g", re_formula="1 + x1"
    )
    gathered = []
    real_gather = data_pass.gather

    def counted_gather(client, futures, what="", straight=False):
        gathered.append(len(futures))
        return real_gather(client, futures, what, straight)

    monkeypatch.setattr(data_pass, "gather", counted_gather)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = statistics_from_dask(model.source, model.spec, client=client, engine="distributed")
    assert isinstance(stats.engine, DaskEngine)
    assert gathered == [len(stats.engine.blocks)]
    blocks = stats.engine.blocks
    parts = client.gather(client.map(lambda ev: ev.moments(), blocks, pure=False))
    want = functools.reduce(operator.add, parts)

    def no_round_trip(self, submit, kwargs):
        raise AssertionError("a round trip for the moments")

    monkeypatch.setattr(DaskEngine, "_round_trip", no_round_trip)
    got = stats.engine.moments()
    assert vars(want)
    for name in vars(want):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    stats.engine.close()


def test_an_evaluators_error_leaves_nothing_held_on_the_cluster(monkeypatch):
    """The evaluator of one block fails (here: made to) where the statistics are to stay
    on the workers: the fit raises that error, and while the error lives (its traceback
    holding the data pass's frames, as a notebook's last error does) the cluster holds
    none of the pass's blocks, summaries, evaluators or moment sums.  A cluster of its
    own (threads: the patched function is the workers'), so that nothing of another
    test's is held there."""
    from dmixed.engines.dask import evaluator

    made = evaluator.make_evaluator

    def failing(block, tune_malloc=False, layout=None):
        if 0 in np.asarray(block.labels):
            raise MemoryError("the evaluator of the block of group 0")
        return made(block, tune_malloc, layout)

    monkeypatch.setattr(evaluator, "make_evaluator", failing)
    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(2000), 5)
    df = pd.DataFrame({"g": g, "x1": rng.normal(size=g.size)})
    df["y"] = df.x1 + rng.normal(size=2000)[g] + rng.normal(size=g.size)
    _raises_holding_nothing(df, "distributed", MemoryError, match="block of group 0")


def test_a_data_pass_of_no_rows_says_whether_rows_were_dropped(client):
    """A data pass that found no rows said "(after dropping missing values)" whether or
    not any row had been dropped (the command gave it for an input of empty files); with
    rows dropped it words it as the level scan did."""
    df = make_data(n_groups=20, seed=5)
    spec = dmixed.mixedlm("y ~ x1", dd.from_pandas(df, npartitions=2), groups="g").spec
    spec_drop = dmixed.mixedlm(
        "y ~ x1", dd.from_pandas(df, npartitions=2), groups="g", missing="drop"
    ).spec
    cases = [
        (spec, df.head(0), "no data: the Dask DataFrame has no rows"),
        (
            spec_drop,
            df.assign(x1=np.nan),
            # the words mixedlm() gave when its level scan found it
            f"no rows left after dropping rows with missing values ({len(df)} rows dropped)",
        ),
    ]
    for model_spec, frame, message in cases:
        model = dmixed.MixedLM.from_spec(model_spec, dd.from_pandas(frame, npartitions=2))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dmixed.DroppedRowsWarning)
            with pytest.raises(dmixed.errors.BadValuesError) as info:
                statistics_from_dask(model.source, model.spec, client=client)
        assert str(info.value) == message


@pytest.mark.parametrize("where", ["sync", "cluster"])
def test_missing_drop_without_a_factor_reads_nothing_before_the_fit(where, request, monkeypatch):
    """``missing="drop"`` with no factor and no object column: ``mixedlm()`` reads no
    data (no level scan); no row left after dropping and a constant response are
    refused by ``fit()``, from the data pass's statistics."""
    import dask

    kw = {"client": request.getfixturevalue("client")} if where == "cluster" else {}
    df = make_data(n_groups=20, seed=6)
    computed = []
    real = dask.compute
    monkeypatch.setattr(dask, "compute", lambda *a, **k: computed.append(1) or real(*a, **k))
    gone = dd.from_pandas(df.assign(x1=np.nan), npartitions=3)
    model = dmixed.mixedlm("y ~ x1", gone, groups="g", missing="drop")
    flat = dd.from_pandas(df.assign(y=2.5).astype({"y": float}), npartitions=3)
    flat_model = dmixed.mixedlm("y ~ x1", flat, groups="g", missing="drop")
    assert computed == []  # no scan
    words = rf"^no rows left after dropping rows with missing values \({len(df)} rows dropped\)$"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dmixed.DroppedRowsWarning)
        with pytest.raises(dmixed.errors.BadValuesError, match=words):
            model.fit(**kw)
    # the words of a fit in process, naming the value (the statistics alone said
    # "constant or fitted exactly by the fixed effects")
    flat_words = r"^the response 'y' is constant \(all values 2\.5\)$"
    with pytest.raises(dmixed.errors.DataError, match=flat_words):
        flat_model.fit(**kw)


def _numbered_groups() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    g = rng.integers(0, 10, 400)
    return pd.DataFrame({"y": rng.normal(size=400), "x": rng.normal(size=400), "g": g})


def test_numbers_where_a_partition_declares_text_keep_the_advice_of_one_type():
    """Partitions that really mix text and numbers (a collection's metadata of text) are
    told to give the column one type, not pointed to categorize()."""
    numbers = _numbered_groups()
    text = numbers.assign(g=[f"s{k}" for k in numbers["g"]])
    parts = [dask.delayed(lambda f=f: f)() for f in (text, numbers)]
    ddf = dd.from_delayed(parts, meta=text.iloc[:0], verify_meta=False)
    with pytest.raises(DataError) as refused:
        dmixed.mixedlm("y ~ x", ddf, groups="g").fit()
    message = str(refused.value)
    assert "'g' holds numbers (int64)" in message
    assert message.endswith("give the column one type in every file")
    assert "categorize" not in message


def test_a_moment_sums_error_is_raised_as_the_tasks_own(monkeypatch):
    """A moment-sums task fails (made to): the fit raises the task's own error, and
    nothing of the pass is held on the cluster while the error lives."""
    from dmixed.engines.dask import evaluator

    real = evaluator.block_moments

    def failing(block):
        if 0 in np.asarray(block.labels):
            raise MemoryError("the moment sums of the block of group 0")
        return real(block)

    monkeypatch.setattr(evaluator, "block_moments", failing)
    df = make_data(n_groups=300, seed=8)
    _raises_holding_nothing(df, "distributed", MemoryError, match="block of group 0")


def _raises_holding_nothing(
    df, engine: str, raised: type[BaseException], match: str | None = None
) -> None:
    """A Dask fit of ``df`` (``y ~ x1``, random slope, 4 partitions, a 2-worker cluster)
    raises ``raised``; while the error lives the scheduler holds no task of the fit."""
    import time

    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        model = dmixed.mixedlm(
            "y ~ x1", dd.from_pandas(df, npartitions=4), groups="g", re_formula="1 + x1"
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(raised, match=match) as err:
                model.fit(client=client, engine=engine)
        assert err.value.__traceback__ is not None

        def held() -> int:
            return client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))

        end = time.monotonic() + 10.0  # a release reaches the scheduler in a later batch
        while held() and time.monotonic() < end:
            time.sleep(0.05)
        assert held() == 0


class _InterruptedRule:
    """A threshold whose comparison raises KeyboardInterrupt: an interrupt (Ctrl-C) that
    lands while the driver decides, after the assembly, where the statistics stay."""

    def __lt__(self, other):
        raise KeyboardInterrupt

    __gt__ = __le__ = __ge__ = __lt__


@pytest.mark.parametrize(
    ("where", "engine"),
    [("assembly", "distributed"), ("placement", "auto")],
)
def test_an_error_between_the_summaries_and_the_placement_leaves_nothing_held(
    monkeypatch, where, engine
):
    """Between the summaries' gather and the statistics' placement, the assembly fails
    (made to) or an interrupt lands in the choice of where the statistics stay: the
    error is raised, and while it lives the cluster holds none of the pass's blocks,
    summaries, evaluators or moment sums."""
    if where == "assembly":

        def failing(*args, **kwargs):
            raise RuntimeError("the assembly failed")

        monkeypatch.setattr(data_pass, "assemble_blocks", failing)
        raised: type[BaseException] = RuntimeError
    else:
        monkeypatch.setattr(data_pass, "AUTO_LOCAL_MAX_VALUES", _InterruptedRule())
        raised = KeyboardInterrupt
    _raises_holding_nothing(make_data(n_groups=300, seed=9), engine, raised)


@pytest.mark.parametrize("call", ["fit", "statistics"])
@pytest.mark.parametrize("data", ["pandas", "dask"])
@pytest.mark.parametrize("client", ["tcp://127.0.0.1:8786", b"tcp://x", 8786])
def test_a_client_that_is_not_a_client_is_refused_naming_it(client, data, call):
    """``fit(client="tcp://...")`` failed with "cannot create weak reference to 'str'
    object": an address is refused, naming ``client`` and the type given; on pandas
    data too, where it was silently ignored."""
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"g": rng.integers(0, 20, 200), "x": rng.normal(size=200)})
    df["y"] = df.x + rng.normal(size=200)
    frame = dd.from_pandas(df, npartitions=2) if data == "dask" else df
    model = dmixed.mixedlm("y ~ x", frame, groups="g")
    kind = type(client).__name__
    with pytest.raises(SpecError, match=rf"^client must be a distributed.Client, got .*\({kind}\)"):
        getattr(model, call)(client=client)
