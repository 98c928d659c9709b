"""dmixed.engines.dask.evaluator: several Λ in one round trip give each Λ's sums."""

from __future__ import annotations

import gc
import pickle
import threading
import time
import warnings

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster

import dmixed
from dmixed.engines.dask import ahead, direct_calls, evaluator, progress
from dmixed.engines.dask.blocks import block_summary, to_block
from dmixed.engines.dask.evaluator import DaskEngine, make_evaluator
from dmixed.engines.dask.handover import cut
from dmixed.fit.start import collapsed_layout, moment_start
from dmixed.kernels import StatsBlock
from dmixed.stats import Layout
from dmixed.stats.packed import PackedLayout

from ..._centred import near_constant
from ..._collector import collector_off
from ..._synth import make_data


def test_steps_are_the_steps_and_the_fit_unchanged(monkeypatch):
    df = make_data(n_groups=200, seed=9)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False) as cluster,
        Client(cluster, set_as_default=False) as client,
        dask.config.set({"dmixed.engine": "distributed"}),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        ddf = dd.from_pandas(df, npartitions=4)
        model = dmixed.mixedlm("y ~ x1 + x2", ddf, groups="g", re_formula="1 + x1")
        engine = model.statistics(client=client).engine
        assert isinstance(engine, DaskEngine)
        layout = model.statistics(client=client).layout
        lams = [layout.lam(np.array(p), True) for p in ([1.0, 0.0, 1.0], [0.5, 0.2, 0.3])]
        for lam, sums in zip(lams, engine.steps(lams, layout.k_re), strict=True):
            one = engine.step(lam, layout.k_re)
            assert vars(one)
            for name in vars(one):
                np.testing.assert_array_equal(getattr(sums, name), getattr(one, name))
        res = model.fit(client=client)
        monkeypatch.delattr(DaskEngine, "steps")  # one round trip per start, as before
        ref = dmixed.mixedlm("y ~ x1 + x2", ddf, groups="g", re_formula="1 + x1")
        ref = ref.fit(client=client)
    assert res.llf == ref.llf and res.n_evals == ref.n_evals
    np.testing.assert_array_equal(res.params, ref.params)
    np.testing.assert_array_equal(res.bse, ref.bse)


def test_the_evaluator_of_a_held_block_takes_its_sums_as_they_are():
    """A block holding its sums as the kernels want them (``to_block(held=True)``)
    gets an evaluator that shares them (no copy) and whose step, Hessian, moments and
    BLUPs are the plain block's evaluator's, bit for bit."""
    packed = PackedLayout(2, 4)
    rng = np.random.default_rng(4)
    values = rng.standard_normal((300, packed.width))
    values[:, 0] = rng.integers(1, 9, 300)
    # positive definite Z'Z: the triangle of a Gram matrix of two columns
    a, b = rng.standard_normal((2, 300, 6))
    values[:, 1:4] = np.stack([(a * a).sum(1), (b * a).sum(1), (b * b).sum(1)], axis=1)
    keys = np.arange(300, dtype=np.int64)
    held = make_evaluator(to_block((keys, values), packed, held=True))
    plain = make_evaluator(to_block((keys, values), packed))
    lam = np.array([[0.8, 0.0], [0.3, 0.5]])
    w = np.array([-0.5, 0.2, 0.1, 1.0])
    basis = Layout(2, ()).basis()
    pairs = [
        (held.step(lam, 2), plain.step(lam, 2)),
        (held.hessian(lam, basis, w), plain.hessian(lam, basis, w)),
        (held.moments(), plain.moments()),
    ]
    for got, want in pairs:
        for name in got.__dataclass_fields__:
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
    for got, want in zip(held.random_effects(lam, w), plain.random_effects(lam, w), strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_held_block_shares_its_sums_with_its_evaluator():
    packed = PackedLayout(1, 3)
    values = np.ones((5, packed.width))
    block = to_block((np.arange(5), values), packed, held=True)
    assert make_evaluator(block).block is block.stats


def test_frobenius_gram_is_the_in_process_one_added_over_the_blocks(client):
    """Padded statistics held on the workers: the Frobenius sums of each random-effects
    column and variance component are those of the same statistics in this process."""
    rng = np.random.default_rng(7)
    n = 1500
    df = pd.DataFrame({"g": rng.integers(0, 30, n), "s": rng.integers(0, 5, n)})
    df["s2"], df["x"] = rng.integers(0, 5, n), rng.normal(size=n)
    df["y"] = df["x"] + rng.normal(size=n)
    vc = {"a": "0 + C(s)", "b": "0 + C(s2)"}
    kw = {"groups": "g", "re_formula": "1 + x", "vc_formula": vc}
    local = dmixed.mixedlm("y ~ x", df, **kw).statistics()
    model = dmixed.mixedlm("y ~ x", dd.from_pandas(df, npartitions=3), **kw)
    stats = model.statistics(client=client, engine="distributed")
    assert isinstance(stats.engine, DaskEngine) and not stats.engine.collapsed_vc
    layout = stats.fit_layout
    got = stats.engine.frobenius_gram(layout.k_re, layout.slot_component)
    want = local.engine.frobenius_gram(layout.k_re, layout.slot_component)
    assert got.shape == (layout.k_re + layout.k_vc,) * 2
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_collapsed_moments_are_the_in_process_ones_and_kept(client):
    """Padded statistics held on the workers: the moment sums of one slot per variance
    component are those of the same statistics in this process, made in one round trip
    and kept as the full moment sums are (a second call makes none)."""
    rng = np.random.default_rng(8)
    n = 1200
    df = pd.DataFrame({"g": rng.integers(0, 30, n), "s": rng.integers(0, 5, n)})
    df["s2"], df["x"] = rng.integers(0, 5, n), rng.normal(size=n)
    df["y"] = df["x"] + rng.normal(size=n)
    kw = {"groups": "g", "re_formula": "1", "vc_formula": {"a": "0 + C(s)", "b": "0 + C(s2)"}}
    local = dmixed.mixedlm("y ~ x", df, **kw).statistics()
    model = dmixed.mixedlm("y ~ x", dd.from_pandas(df, npartitions=3), **kw)
    stats = model.statistics(client=client, engine="distributed")
    engine = stats.engine
    assert isinstance(engine, DaskEngine) and not engine.collapsed_vc
    layout = stats.fit_layout
    got = engine.collapsed_moments(layout.k_re, layout.slot_component)
    want = local.engine.collapsed_moments(layout.k_re, layout.slot_component)
    np.testing.assert_allclose(got.zz_zz, want.zz_zz, rtol=1e-12)
    # [X y] may be shifted otherwise on the workers: the estimates are what must agree
    narrow = collapsed_layout(layout)
    for a, b in zip(
        moment_start(got, stats.glob, narrow), moment_start(want, local.glob, narrow), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-9)

    def no_round_trip(*args, **kwargs):
        raise AssertionError("the collapsed sums were made again")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "_map", no_round_trip)
        assert engine.collapsed_moments(layout.k_re, layout.slot_component) is got
    assert pickle.loads(pickle.dumps(engine))._collapsed == {}


def _lossy_block(within: bool):
    """A block of 40 groups of 5 rows with a random intercept and a slope on a column
    constant within each group (``Z_i'Z_i`` of rank one: lossy), ``W`` kept or not."""
    from dmixed.engines.dask.blocks import Block
    from dmixed.stats.standardize import Standardization

    rng = np.random.default_rng(2)
    zbar = np.column_stack([np.ones(40), rng.integers(-9, 9, 40).astype(float)])
    zz = 5.0 * zbar[:, :, None] * zbar[:, None, :]
    zxy = zbar[:, :, None] * rng.normal(size=(40, 1, 3)) * 5.0
    return Block(
        labels=np.arange(40),
        nobs=np.full(40, 5),
        xyxy=np.eye(3) * 1e3,
        n=200,
        sum_log_weights=0.0,
        zz=zz,
        zxy=zxy,
        standardization=Standardization.identity(2, 2),
        within=np.eye(3) if within else None,
    )


def test_a_block_summary_counts_the_lossy_groups_its_evaluator_would_refuse():
    """Statistics kept on a worker without ``W``: a random design close to singular in
    40 groups is counted in the block's summary (the data pass refuses them on the
    driver, no task failing), not fitted with the digits of ``[X y]'[X y] − Σ m_i``
    lost; with ``W`` the same groups are rank one about it and none is counted.  The
    evaluator itself refuses nothing, and counting takes no form for the block."""
    lossy = _lossy_block(within=False)
    assert block_summary(lossy).inexact == 40
    assert block_summary(_lossy_block(within=True)).inexact == 0
    assert not make_evaluator(lossy).block.rank_one
    assert make_evaluator(_lossy_block(within=True)).block.rank_one
    held = _lossy_block(within=True)
    held.stats, held.zz, held.zxy = StatsBlock(held.zz, held.zxy), None, None
    assert block_summary(held).inexact == 0 and not held.stats.rank_one
    held.within = None
    assert block_summary(held).inexact == 40


def _plain_block(held: bool):
    """A block of 300 groups of two random-design columns (positive definite ``Z'Z``),
    its sums held as the kernels want them or plain."""
    packed = PackedLayout(2, 4)
    rng = np.random.default_rng(11)
    values = rng.standard_normal((300, packed.width))
    values[:, 0] = rng.integers(1, 9, 300)
    a, b = rng.standard_normal((2, 300, 6))
    values[:, 1:4] = np.stack([(a * a).sum(1), (b * a).sum(1), (b * b).sum(1)], axis=1)
    return to_block((np.arange(300, dtype=np.int64), values), packed, held=held)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: _plain_block(True), id="held"),
        pytest.param(lambda: _plain_block(False), id="plain"),
        pytest.param(lambda: _lossy_block(within=True), id="rank-one"),
    ],
)
def test_a_blocks_moment_sums_are_its_evaluators(make):
    """The moment sums made from a block (a task of the block's, beside its evaluator)
    are its evaluator's, bit for bit, made before or after the evaluator (whose forms,
    rank one here, leave the block's sums as they are)."""
    before = evaluator.block_moments(make())
    block = make()
    ev = make_evaluator(block)
    after = evaluator.block_moments(block)
    want = ev.moments()
    assert vars(want)
    for got in (before, after):
        for name in vars(want):
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)


def test_an_evaluators_error_is_raised_with_the_blocks_moment_sums(client, monkeypatch):
    """The moment sums no longer wait for the evaluator: an evaluator's error is raised
    where the sums are collected (as before, when the sums' task took it from the
    evaluator), though the sums themselves were made."""

    def refusing(block, tune_malloc=False, layout=None):
        raise dmixed.DataError("no evaluator of this block")

    monkeypatch.setattr(evaluator, "make_evaluator", refusing)  # the workers are threads
    block = client.scatter(_plain_block(True))
    evaluators, moments = evaluator.submit_evaluators(client, [block], None, 2)
    with pytest.raises(dmixed.DataError, match="no evaluator of this block"):
        evaluator.collect_evaluators(client, evaluators, moments)
    assert moments[0].status == "finished"
    for f in [*evaluators, *moments, block]:
        f.release()


def test_a_dask_fit_of_a_lossy_random_design_is_exact():
    """The rows of groups whose slope varies in one group only, in two partitions (no
    ``W`` kept): on Dask the lossy groups take the centred forms from their sums about
    shifts of their own, and ℓ is the in-process (exact) ℓ (tests/fit/test_centred.py),
    where it was refused before: to 1e-8, the rounding of the profile ``[X y]'[X y] −
    Σ m_i`` the cluster's sums take without ``W`` (the intercept's spread 7500 times
    the residual's), which the in-process pass avoids with its two passes."""
    y, exog, g, z = near_constant(odd=4, seed=3)
    df = pd.DataFrame({"y": y, "c": exog[:, 1], "x2": exog[:, 2], "g": g})
    packed = np.array([5000.0, 0.0, 10.0])
    want = dmixed.MixedLM(y, exog, g, exog_re=z).loglike(packed)
    with dask.config.set(scheduler="sync"):
        model = dmixed.MixedLM.from_formula(
            "y ~ c + x2", data=dd.from_pandas(df, npartitions=2), groups="g", re_formula="1 + c"
        )
        assert model.loglike(packed) == pytest.approx(want, rel=1e-8)


def _held_keys(client) -> set:
    """The keys whose values the scheduler holds on the workers."""

    def held(dask_scheduler) -> set:
        return {ts.key for ts in dask_scheduler.tasks.values() if ts.state == "memory"}

    return client.run_on_scheduler(held)


def _settled(client, want) -> set:
    """The held keys once they are ``want()`` (releases reach the scheduler in their
    own time), or as they are after a few seconds."""
    for _ in range(100):
        keys = _held_keys(client)
        if keys == want():
            return keys
        time.sleep(0.05)
    return keys


def _keys(futures) -> set:
    return {f.key for f in futures}


@pytest.fixture
def ddf():
    return dd.from_pandas(make_data(n_groups=120, seed=4), npartitions=4)


@pytest.mark.usefixtures("tasks_only")
def test_the_spent_blocks_go_with_the_first_round_trip(client, ddf, monkeypatch):
    """The data pass's blocks stay held until the engine's first round trip is
    submitted (then released), that round trip's futures until the next one's or the
    engine's close; a closed engine holds nothing on the workers."""
    monkeypatch.setattr(evaluator, "SPENT_RELEASE_SECONDS", 3600.0)
    model = dmixed.mixedlm("y ~ x1 + x2", ddf, groups="g", re_formula="1 + x1")
    stats = model.statistics(client=client, engine="distributed")
    engine = stats.engine
    assert isinstance(engine, DaskEngine)
    evaluators = _keys(engine.blocks)
    before = _held_keys(client)
    assert before > evaluators  # the blocks too
    lam = stats.layout.lam(np.array([1.0, 0.0, 1.0]), True)
    engine.step(lam, stats.layout.k_re)
    first = _settled(client, lambda: evaluators | (_held_keys(client) - before))
    assert not first & (before - evaluators)  # the blocks released
    assert first - evaluators  # the round trip's own futures, kept
    engine.step(lam, stats.layout.k_re)
    second = _settled(client, lambda: evaluators | (_held_keys(client) - first))
    assert not second & (first - evaluators)  # the first round trip's released
    assert second - evaluators  # the second round trip's, kept
    held = pickle.loads(pickle.dumps(engine))  # a detached copy carries no futures
    assert held.blocks == []
    with pytest.raises(RuntimeError, match="unpickled or closed"):
        held.step(lam, stats.layout.k_re)
    engine.close()
    assert _settled(client, set) == set()


def test_statistics_never_fitted_release_their_blocks(client, ddf, monkeypatch):
    """Statistics made and never fitted release the data pass's blocks after
    ``SPENT_RELEASE_SECONDS``: the workers hold the evaluators alone."""
    monkeypatch.setattr(evaluator, "SPENT_RELEASE_SECONDS", 0.01)
    model = dmixed.mixedlm("y ~ x1 + x2", ddf, groups="g", re_formula="1 + x1")
    engine = model.statistics(client=client, engine="distributed").engine
    evaluators = _keys(engine.blocks)
    assert _settled(client, evaluators.copy) == evaluators
    engine.close()


def _scheduler_tasks(client, want: set | None = None) -> set:
    """Every key the scheduler knows (held, released with their recipe, waiting): once
    they are ``want`` (releases reach the scheduler in their own time), or as they are
    after a few seconds; without ``want``, as they are now."""
    for _ in range(100):
        keys = client.run_on_scheduler(lambda dask_scheduler: set(dask_scheduler.tasks))
        if want is None or keys == want:
            break
        time.sleep(0.05)
    return keys


@pytest.mark.parametrize(
    ("engine", "trips"),
    [
        ("distributed", "direct"),
        ("distributed", "fallback"),
        ("distributed", "tasks"),
        ("local", ""),
    ],
)
def test_dropped_fits_leave_no_task_without_the_cyclic_collector(
    client, ddf, engine, trips, monkeypatch
):
    """With Python's cyclic garbage collector off, fits whose results were read and
    then dropped leave no task on the scheduler, the statistics kept on the workers or
    gathered: reference cycles kept each fit's futures until that collector ran (a
    ``TimeoutError`` of the data pass's wait, a refused Cholesky on the way to a
    fallback, the results' by-group dicts, a direct call's failure on its way to the
    tasks).  A live fit on the workers holds its engine's evaluators and their recipe
    (the model may fit again); one gathered holds nothing.  The round trips go as
    direct calls, as tasks after a direct call that failed (every evaluator asked for
    on the other worker), or as tasks only."""
    monkeypatch.setattr(progress, "WORKER_CHECK_INTERVAL", 0.001)  # waits time out
    if trips == "tasks":
        monkeypatch.setattr(direct_calls, "ENABLED", False)
    elif trips == "fallback":
        block_workers = direct_calls.block_workers
        monkeypatch.setattr(
            evaluator, "block_workers", lambda c, blocks: block_workers(c, blocks)[::-1]
        )
    failed: list[int] = []
    run_recorded = direct_calls.run_recorded

    def counted(*args):
        try:
            return run_recorded(*args)
        except direct_calls.DirectCallUnavailable:
            failed.append(1)
            raise

    monkeypatch.setattr(evaluator, "run_recorded", counted)
    before = _scheduler_tasks(client, set())
    with collector_off():
        for _ in range(3):
            model = dmixed.mixedlm("y ~ x1 + x2", ddf, groups="g", re_formula="1 + x1")
            res = model.fit(client=client, engine=engine)
            assert len(res.random_effects[0]) == len(res.random_effects_cov[0]) == 2
            assert res.summary() is not None
            if engine == "distributed":
                evaluators = _keys(model.statistics(client=client).engine.blocks)
                assert evaluators and evaluators <= _scheduler_tasks(client) - before
            else:
                assert _scheduler_tasks(client, before) == before
            del res, model
            assert _scheduler_tasks(client, before) == before
    assert bool(failed) == (trips == "fallback")


def _raising_blup_task(real):
    """``real`` (a BLUP task), raising on the first block it is called with, at every
    call (the direct call's and the tasks' that follow it).  The block is told by its
    evaluator, the same object in either path (the workers run in this process); not
    by its worker, which may hold no block at all."""
    lock = threading.Lock()
    chosen: list = []

    def task(ev, *args, **kwargs):
        with lock:
            if not chosen:
                chosen.append(ev)
        if ev is chosen[0]:
            raise ValueError("a BLUP task failed")
        return real(ev, *args, **kwargs)

    return task


def test_a_fit_whose_blup_task_raises_leaves_nothing_on_the_cluster(client, ddf, monkeypatch):
    """A fit whose round trip with the BLUPs fails on a worker raises the task's error,
    and once it is handled the scheduler holds no task of that fit: ``distributed``
    keeps the error in its futures' state and raises that same object, so raised as it
    is its traceback held the driver's frames (the engine, every future of the fit)
    for the client's life, whatever the garbage collector did."""
    monkeypatch.setattr(
        ahead,
        "block_hessian_random_effects",
        _raising_blup_task(ahead.block_hessian_random_effects),
    )
    before = _scheduler_tasks(client, set())
    model = dmixed.mixedlm("y ~ x1 + x2", ddf, groups="g", re_formula="1 + x1")
    with pytest.raises(ValueError, match="a BLUP task failed"):
        model.fit(client=client, engine="distributed")
    del model
    # distributed's own gather makes reference cycles of a failed gather's frames
    # (its coroutine's); those are the collector's, the error's traceback is not
    gc.collect()
    assert _scheduler_tasks(client, before) == before


_SLOW_BLOCK = threading.Event()


def _slow_third_cut():
    """:func:`cut` (how a block's BLUPs and then their covariances leave its task: two
    calls a block), its third call held until ``_SLOW_BLOCK`` is set.  Whichever two
    calls came first, the block that makes the third has the other block's last call
    yet to come, or made: one block done and the other still in its task at the
    driver's first gather, wherever the blocks sit (each on its worker, the two at
    once; both on one worker of one thread, one after the other).  Not told by the
    worker's name: either worker may hold both blocks, or none."""
    lock = threading.Lock()
    calls: list = []

    def slow(value):
        with lock:
            calls.append(None)
            third = len(calls) == 3
        if third:
            _SLOW_BLOCK.wait(30)
        return cut(value)

    return slow


@pytest.mark.usefixtures("tasks_only")
def test_a_blup_round_trip_gathers_a_done_blocks_blups_before_the_others(client, ddf, monkeypatch):
    """A round trip that makes the BLUPs gathers in two turns (the block done first,
    then the other, still computing at the first turn); a round trip of step sums in
    one gather.  The same BLUPs as the engine's in-process blocks give."""
    model = dmixed.mixedlm("y ~ x1 + x2", ddf, groups="g", re_formula="1 + x1")
    stats = model.statistics(client=client, engine="distributed")
    engine = stats.engine
    assert len(engine.blocks) == 2
    lam = stats.layout.lam(np.array([1.0, 0.0, 1.0]), True)
    w = np.ones(stats.glob.k_fe + 1)
    want = engine.random_effects(lam, w)
    asked: list = []
    client_gather = Client.gather

    def recorded(self, futures, *args, **kwargs):
        asked.append(len(futures))
        _SLOW_BLOCK.set()  # the slow block ends only once a gather is asked for
        return client_gather(self, futures, *args, **kwargs)

    monkeypatch.setattr(evaluator, "cut", _slow_third_cut())
    monkeypatch.setattr(Client, "gather", recorded)
    _SLOW_BLOCK.clear()
    try:
        got = engine.random_effects(lam, w)
    finally:
        _SLOW_BLOCK.set()
    assert asked == [1, 1]
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    asked.clear()
    engine.step(lam, stats.layout.k_re)
    assert asked == [2]
    engine.close()


def test_repeated_fits_hold_no_more_on_the_workers(client, ddf):
    """Fit after fit on one client: once a fit's results are dropped, the workers hold
    nothing of it, and a live fit holds its engine's evaluators alone (no data-pass
    block, no round trip's sums)."""
    for _ in range(3):
        model = dmixed.mixedlm("y ~ x1 + x2", ddf, groups="g", re_formula="1 + x1")
        res = model.fit(client=client, engine="distributed")
        engine = model.statistics(client=client).engine
        evaluators = _keys(engine.blocks)
        assert evaluators and _settled(client, evaluators.copy) == evaluators
        del res, model, engine
        gc.collect()
        assert _settled(client, set) == set()
