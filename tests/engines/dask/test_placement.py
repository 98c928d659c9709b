"""dmixed.engines.dask.placement: Dask counts the evaluators at their arrays' bytes, and
the optimizer's tasks run on the worker that holds their block's evaluator."""

from __future__ import annotations

import functools
import warnings

import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask.sizeof import sizeof

import dmixed
from dmixed.engines.dask import DaskEngine
from dmixed.engines.dask.ahead import submit_steps_hessian
from dmixed.engines.local import LocalEngine
from dmixed.fit.objective import profile_weights

#: covariates enough that ``w`` (p + 1 floats) outweighs an object's default size
N_COVARIATES = 12


def _data(n_groups: int = 2000, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), rng.integers(2, 8, n_groups))
    x = rng.normal(size=(g.size, N_COVARIATES))
    df = pd.DataFrame(x, columns=[f"x{i}" for i in range(N_COVARIATES)])
    df["y"] = x.sum(axis=1) + rng.normal(size=n_groups)[g] + rng.normal(size=g.size)
    df["g"] = g
    return df


def _model(df: pd.DataFrame):
    formula = "y ~ " + " + ".join(f"x{i}" for i in range(N_COVARIATES))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dmixed.mixedlm(formula, dd.from_pandas(df, npartitions=4), groups="g")


def _evaluator_keys(client, df: pd.DataFrame):
    model = _model(df)
    stats = model.statistics(client=client, engine="distributed")
    assert isinstance(stats.engine, DaskEngine) and len(stats.engine.blocks) == 2
    return model, stats


def test_an_evaluator_counts_its_statistics(client):
    _, stats = _evaluator_keys(client, _data())
    for ev in client.gather(stats.engine.blocks):
        assert isinstance(ev, LocalEngine)
        held = sum(zz.nbytes + zxy.nbytes for zz, zxy in ev.block.chunks())
        assert held > 0
        assert sizeof(ev) >= held and sizeof(ev.block) >= held


def test_the_optimizer_tasks_are_never_root_ish(client):
    """Rounds not yet released when the next is submitted make no task group of more
    tasks than twice the cluster's threads (placed then wherever a thread is free)."""
    _, stats = _evaluator_keys(client, _data())
    layout = stats.fit_layout
    lam = layout.lam(np.full(layout.n_params, 0.8), True)
    args = dict(lams=[lam], lam=lam, q=layout.k_re, basis=layout.basis())
    weights = functools.partial(profile_weights, glob=stats.glob, reml=True)
    rounds = [submit_steps_hessian(client, stats.engine.blocks, args, weights, 0) for _ in range(3)]
    client.gather([f for futures in rounds for f in futures])
    keys = [f.key for futures in rounds for f in futures]
    rootish = client.run_on_scheduler(
        lambda dask_scheduler: [dask_scheduler.is_rootish(dask_scheduler.tasks[k]) for k in keys]
    )
    assert len(rootish) == 3 * 5 and not any(rootish)


def test_no_evaluator_is_sent_between_workers_in_a_fit(client):
    df = _data()
    model, stats = _evaluator_keys(client, df)
    evaluators = {f.key for f in stats.engine.blocks}
    client.run(lambda dask_worker: dask_worker.transfer_incoming_log.clear())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = dmixed.MixedLM.from_statistics(stats, model.spec).fit()
    logs = client.run(lambda dask_worker: list(dask_worker.transfer_incoming_log))
    moved = [key for log in logs.values() for entry in log for key in entry["keys"]]
    assert moved  # the step sums and w go between the workers
    assert not evaluators.intersection(moved)
    assert np.isfinite(res.llf)
