"""dmixed.engines.dask.direct_calls: a round trip run as direct calls to the workers
gives the tasks' results, bit for bit, and the tasks' errors."""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import dmixed
from dmixed.engines.dask import ahead, direct_calls, evaluator
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
            tried.append(exc)
            raise

    monkeypatch.setattr(evaluator, "run_recorded", seen)
    model = dmixed.mixedlm("y ~ x1 + x2", ddf, groups="g", re_formula="1 + x1")
    with pytest.raises(ValueError, match="a BLUP task failed"):
        model.fit(client=client, engine="distributed")
    assert tried and isinstance(tried[0].__cause__, ValueError)


def test_evaluators_no_longer_where_they_were_go_as_tasks(client, ddf, direct_runs, monkeypatch):
    """An evaluator asked for on a worker that does not hold it: the round trip runs
    as tasks, with the same sums, and the next one asks the scheduler again."""
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
    assert direct_runs == [1, 1] and len(asked) == 2  # the workers kept
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
    firsts = recorder.map(int, blocks)
    recorder.map(int, blocks, firsts, parts=firsts)
    assert len(recorder.stages) == 2
