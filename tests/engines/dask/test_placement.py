"""dmixed.engines.dask.placement: Dask counts the evaluators at their arrays' bytes, and
the optimizer's tasks run on the worker that holds their block's evaluator."""

from __future__ import annotations

import dataclasses
import functools
import warnings

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from dask.sizeof import sizeof

import dmixed
from dmixed.engines.dask import DaskEngine
from dmixed.engines.dask.ahead import submit_steps_hessian
from dmixed.engines.local import LocalEngine
from dmixed.engines.vc_crossed import CrossedVCEngine
from dmixed.engines.vc_local import StructuredVCEngine
from dmixed.fit.objective import profile_weights
from tests._synth import make_data
from tests.engines.test_vc_crossed import CROSSED, crossed_data

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


def _model(df: pd.DataFrame, **kw):
    formula = "y ~ " + " + ".join(f"x{i}" for i in range(N_COVARIATES))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dmixed.mixedlm(formula, dd.from_pandas(df, npartitions=4), groups="g", **kw)


#: variance components held structured on the workers: ragged (indicator components in
#: disjoint rows), crossed (two components sharing rows, wide enough to be crossed)
VC = {
    "structured": (StructuredVCEngine, "ragged", {"vc_formula": {"sub": "0 + C(sub)"}}),
    "crossed": (CrossedVCEngine, "crossed", {"vc_formula": CROSSED}),
}


def _vc_data(kind: str) -> pd.DataFrame:
    if kind == "structured":
        df = make_data(n_groups=300, vc_sd=0.7, n_sub=6, seed=4)
    else:
        df = crossed_data(n_groups=60, seed=1)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(len(df), N_COVARIATES))
    for i in range(N_COVARIATES):
        df[f"x{i}"] = x[:, i]
    df["y"] = df["y"] + x.sum(axis=1)
    return df


def _array_bytes(held) -> int:
    """Bytes of the arrays among a dataclass's fields (lists of dataclasses followed)."""
    total = 0
    for f in dataclasses.fields(held):
        value = getattr(held, f.name)
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, np.ndarray):
                total += item.nbytes
            elif dataclasses.is_dataclass(item):
                total += _array_bytes(item)
    return total


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


@pytest.mark.parametrize("kind", sorted(VC))
def test_a_structured_evaluator_counts_its_statistics(client, kind):
    engine, attr, kw = VC[kind]
    model = _model(_vc_data(kind), **kw)
    stats = model.statistics(client=client, engine="distributed")
    assert isinstance(stats.engine, DaskEngine) and stats.engine.collapsed_vc
    for ev in client.gather(stats.engine.blocks):
        assert isinstance(ev, engine)
        held = _array_bytes(getattr(ev, attr))
        assert held > 0
        assert sizeof(ev) >= held and sizeof(getattr(ev, attr)) >= held


def test_the_optimizer_tasks_are_never_root_ish(client):
    """Rounds not yet released when the next is submitted make no task group of more
    tasks than twice the cluster's threads (placed then wherever a thread is free)."""
    _, stats = _evaluator_keys(client, _data())
    layout = stats.fit_layout
    lam = layout.lam(np.full(layout.n_params, 0.8), True)
    other = layout.lam(np.full(layout.n_params, 0.5), True)
    args = dict(lams=[other, lam], lam=lam, q=layout.k_re, basis=layout.basis())
    weights = functools.partial(profile_weights, glob=stats.glob, reml=True)
    rounds = [submit_steps_hessian(client, stats.engine.blocks, args, weights, 1) for _ in range(3)]
    client.gather([f for futures in rounds for f in futures])
    keys = [f.key for futures in rounds for f in futures]
    rootish = client.run_on_scheduler(
        lambda dask_scheduler: [dask_scheduler.is_rootish(dask_scheduler.tasks[k]) for k in keys]
    )
    # per block: the steps, the Hessian (which makes w itself)
    assert len(rootish) == 3 * 2 * len(stats.engine.blocks) and not any(rootish)


def _assert_no_evaluator_moves(client, model, stats) -> None:
    evaluators = {f.key for f in stats.engine.blocks}
    client.run(lambda dask_worker: dask_worker.transfer_incoming_log.clear())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = dmixed.MixedLM.from_statistics(stats, model.spec).fit()
    logs = client.run(lambda dask_worker: list(dask_worker.transfer_incoming_log))
    moved = [key for log in logs.values() for entry in log for key in entry["keys"]]
    held = client.who_has(stats.engine.blocks)
    if len({w for workers in held.values() for w in workers}) > 1:
        assert moved  # the step sums and w go between the workers
    assert not evaluators.intersection(moved)
    assert np.isfinite(res.llf)


@pytest.mark.usefixtures("tasks_only")
def test_no_evaluator_is_sent_between_workers_in_a_fit(client):
    _assert_no_evaluator_moves(client, *_evaluator_keys(client, _data()))


@pytest.mark.usefixtures("tasks_only")
@pytest.mark.parametrize("kind", sorted(VC))
def test_no_structured_evaluator_is_sent_between_workers_in_a_fit(client, kind):
    model = _model(_vc_data(kind), **VC[kind][2])
    stats = model.statistics(client=client, engine="distributed")
    assert isinstance(stats.engine, DaskEngine) and stats.engine.collapsed_vc
    assert len(stats.engine.blocks) >= 2
    _assert_no_evaluator_moves(client, model, stats)
