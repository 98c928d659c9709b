"""dmixed.engines.dask.direct_calls: a round trip run as direct calls to the workers
gives the tasks' results, bit for bit, and the tasks' errors."""

from __future__ import annotations

import dataclasses

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import dmixed
from dmixed.engines.dask import ahead, direct_calls, evaluator, progress
from dmixed.engines.dask.direct_calls import DirectCallUnavailable, Recorder

from ..._synth import make_data


@pytest.fixture
def ddf():
    return dd.from_pandas(make_data(n_groups=120, seed=4), npartitions=4)


@pytest.fixture
def direct_runs(monkeypatch) -> list[int]:
    """The number of stages of each round trip run as direct calls, in call order."""
    runs: list[int] = []
    run_recorded = direct_calls.run_recorded

    def counted(client, recorder, where, returned):
        out = run_recorded(client, recorder, where, returned)
        runs.append(len(recorder.stages))
        return out

    monkeypatch.setattr(evaluator, "run_recorded", counted)
    return runs


def _fit(ddf, client, reml: bool = True):
    model = dmixed.mixedlm("y ~ x1 + x2", ddf, groups="g", re_formula="1 + x1")
    res = model.fit(client=client, engine="distributed", reml=reml)
    return res, pd.DataFrame(res.random_effects).to_numpy()


@pytest.mark.parametrize("reml", [True, False])
def test_direct_calls_give_the_tasks_fit_bit_for_bit(client, ddf, direct_runs, monkeypatch, reml):
    got, got_re = _fit(ddf, client, reml)
    assert direct_runs and max(direct_runs) >= 2  # the chained stages went direct
    direct_runs.clear()
    monkeypatch.setattr(direct_calls, "ENABLED", False)
    want, want_re = _fit(ddf, client, reml)
    assert direct_runs == []
    assert got.llf == want.llf and got.n_evals == want.n_evals
    np.testing.assert_array_equal(got.params, want.params)
    np.testing.assert_array_equal(got.bse, want.bse)
    np.testing.assert_array_equal(got_re, want_re)


def test_an_engines_steps_and_hessian_are_the_tasks(client, ddf, direct_runs, monkeypatch):
    model = dmixed.mixedlm("y ~ x1 + x2", ddf, groups="g", re_formula="1 + x1")
    stats = model.statistics(client=client, engine="distributed")
    engine, layout = stats.engine, stats.layout
    lams = [layout.lam(np.array(p), True) for p in ([1.0, 0.0, 1.0], [0.5, 0.2, 0.3])]
    got = engine.steps(lams, layout.k_re)
    assert direct_runs == [1]
    monkeypatch.setattr(direct_calls, "ENABLED", False)
    want = engine.steps(lams, layout.k_re)
    for a, b in zip(got, want, strict=True):
        assert vars(a)
        for name in vars(a):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    engine.close()


def _raising_blup_task(func):
    def raising(*args, **kwargs):
        raise ValueError("a BLUP task failed")

    return raising


def test_a_failure_inside_a_direct_stage_raises_the_tasks_error(client, ddf, monkeypatch):
    """The stage's error sends the round trip to the tasks, whose error is raised as
    before (the engine's own handling of a failed task)."""
    monkeypatch.setattr(
        ahead,
        "block_hessian_random_effects",
        _raising_blup_task(ahead.block_hessian_random_effects),
    )
    tried: list = []
    run_recorded = direct_calls.run_recorded

    def seen(*args):
        try:
            return run_recorded(*args)
        except DirectCallUnavailable as exc:
            tried.append(str(exc))
            raise

    monkeypatch.setattr(evaluator, "run_recorded", seen)
    model = dmixed.mixedlm("y ~ x1 + x2", ddf, groups="g", re_formula="1 + x1")
    with pytest.raises(ValueError, match="a BLUP task failed"):
        model.fit(client=client, engine="distributed")
    assert tried and "a stage failed" in tried[0] and "a BLUP task failed" in tried[0]
    records = [m for logs in client.get_worker_logs().values() for _, m in logs]
    assert not [m for m in records if "_run_stage" in m]  # the tasks' error is the one told


def test_evaluators_no_longer_where_they_were_go_as_tasks(client, ddf, direct_runs, monkeypatch):
    """An evaluator asked for on a worker that does not hold it: the round trip runs
    as tasks, with the same sums, and the next one (as each) asks the scheduler again."""
    model = dmixed.mixedlm("y ~ x1 + x2", ddf, groups="g", re_formula="1 + x1")
    stats = model.statistics(client=client, engine="distributed")
    engine, layout = stats.engine, stats.layout
    lam = layout.lam(np.array([1.0, 0.0, 1.0]), True)
    asked: list = []
    block_workers = direct_calls.block_workers

    def swapped(client, blocks):
        where = block_workers(client, blocks)
        asked.append(where)
        return where[::-1] if len(asked) == 1 else where  # first: each on the other

    monkeypatch.setattr(evaluator, "block_workers", swapped)
    got = engine.step(lam, layout.k_re)
    assert direct_runs == [] and len(set(asked[0])) == 2
    want = engine.step(lam, layout.k_re)
    assert direct_runs == [1] and len(asked) == 2
    for name in vars(want):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
    engine.step(lam, layout.k_re)
    assert direct_runs == [1, 1] and len(asked) == 3
    engine.close()


def test_the_recorder_refuses_what_it_cannot_run(client):
    blocks = [client.submit(int, i, pure=False) for i in range(2)]
    recorder = Recorder(blocks)
    with pytest.raises(DirectCallUnavailable, match="client.submit"):
        recorder.submit(int, 1)
    with pytest.raises(DirectCallUnavailable, match="other futures"):
        recorder.map(int, blocks[::-1])
    with pytest.raises(DirectCallUnavailable, match="a future as an argument"):
        recorder.map(int, blocks, parts=blocks)
    with pytest.raises(DirectCallUnavailable, match="a future as an argument"):
        recorder.map(int, blocks, parts=[(1, [blocks[0]])])
    for option in ({"workers": ["a"]}, {"priority": 1}, {"retries": 2}):
        with pytest.raises(DirectCallUnavailable, match="client.map options"):
            recorder.map(int, blocks, **option)
    firsts = recorder.map(int, blocks)
    recorder.map(int, blocks, firsts, parts=firsts)
    assert len(recorder.stages) == 2


def _engine(client, ddf):
    model = dmixed.mixedlm("y ~ x1 + x2", ddf, groups="g", re_formula="1 + x1")
    stats = model.statistics(client=client, engine="distributed")
    return stats.engine, stats.layout.lam(np.array([1.0, 0.0, 1.0]), True), stats.layout.k_re


def _same(got, want) -> None:
    assert vars(want)
    for name in vars(want):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name))


def test_a_worker_not_reached_sends_this_and_later_round_trips_to_the_tasks(
    client, ddf, direct_runs, monkeypatch
):
    """A worker named for an evaluator that does not answer (gone since the scheduler
    named it): the direct call gives up after ``CONNECT_TIMEOUT``, not distributed's
    connect timeout, the round trip runs as tasks with the same sums, and the engine
    calls no worker directly again."""
    import socket

    import dask

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    engine, lam, k_re = _engine(client, ddf)
    asked: list = []
    block_workers = direct_calls.block_workers

    def gone(client, blocks):
        asked.append(1)
        return [dead, *block_workers(client, blocks)[1:]]

    monkeypatch.setattr(evaluator, "block_workers", gone)
    monkeypatch.setattr(direct_calls, "CONNECT_TIMEOUT", 0.5)
    with dask.config.set({"distributed.comm.timeouts.connect": "10 minutes"}):
        got = engine.step(lam, k_re)
    assert direct_runs == [] and asked == [1]
    want = engine.step(lam, k_re)
    assert direct_runs == [] and asked == [1]  # no direct call tried again
    _same(got, want)
    engine.close()


def test_an_unexpected_failure_of_a_call_goes_as_tasks(client, ddf, direct_runs, monkeypatch):
    """A call that fails other than in the stage (here: a garbled reply) runs the round
    trip as tasks, with the same sums; the next round trip tries the direct calls again."""

    async def garbled(comm, **kwargs):
        raise MemoryError("a garbled reply")

    engine, lam, k_re = _engine(client, ddf)
    with monkeypatch.context() as m:
        m.setattr(direct_calls, "send_recv", garbled)
        got = engine.step(lam, k_re)
    assert direct_runs == []
    want = engine.step(lam, k_re)
    assert direct_runs == [1]
    _same(got, want)
    engine.close()


def test_no_direct_calls_where_the_driver_should_not_reach_the_workers(
    client, ddf, direct_runs, monkeypatch
):
    """A client told ``direct_to_workers=False``, or a cluster not on this machine's
    loopback (the client left to choose): the round trips go as tasks, as the gathers go
    through the scheduler (:func:`~dmixed.engines.dask.progress.reaches_workers`)."""
    from distributed import Client

    with Client(client.scheduler.address, direct_to_workers=False, set_as_default=False) as c:
        assert not progress.reaches_workers(c)
        _fit(ddf, c)
    assert direct_runs == []
    roster = progress.roster(client)
    assert progress.reaches_workers(client)
    monkeypatch.setattr(progress, "roster", lambda c: dataclasses.replace(roster, loopback=False))
    assert not progress.reaches_workers(client) and progress.gather_direct(client) is None
    _fit(ddf, client)
    assert direct_runs == []


def test_the_workers_keep_no_record_of_the_direct_calls(client, ddf, direct_runs):
    _fit(ddf, client)
    assert direct_runs  # the fit's round trips went direct
    records = [m for logs in client.get_worker_logs().values() for _, m in logs]
    assert not [m for m in records if "_run_stage" in m]


def _plus(block, value):
    return block + value


def _total(block, parts):
    ((firsts, (again,)),) = parts
    return block + firsts + again


def test_placeholders_nested_in_arguments_are_resolved(client):
    blocks = client.map(int, [1, 2], pure=False)
    client.gather(blocks)
    recorder = Recorder(blocks)
    firsts = recorder.map(_plus, blocks, [10, 20])
    totals = recorder.map(_total, blocks, [[(f, (f,))] for f in firsts])
    where = direct_calls.block_workers(client, blocks)
    got = direct_calls.run_recorded(client, recorder, where, [*firsts, *totals])
    assert got == [11, 22, 1 + 11 + 11, 2 + 22 + 22]
