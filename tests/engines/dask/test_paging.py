"""A fit's functions on the Dask workers run with numpy's huge-page advice as the
driver's fit asks (dmixed.engines.dask.paging, dmixed.kernels.pages.PagedCall).

The workers are processes of a LocalCluster.  A spy, installed in each worker process
by ``client.run``, wraps functions a fit runs there (found by name as the tasks'
pickles name them, and the evaluators' methods) and records numpy's advice each time
one runs: inside the task or direct call, never by timing.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from dmixed.engines.dask.paging import PagedClient
from dmixed.kernels import pages

#: module-level functions a fit sends to the workers (the data pass's chains or
#: partitions, its summaries, the evaluators' construction)
SPIED_FUNCTIONS = [
    ("dmixed.engines.dask.partials", "chain_partials"),
    ("dmixed.engines.dask.partials", "partition_partials"),
    ("dmixed.engines.dask.blocks", "block_summary"),
    ("dmixed.engines.dask.blocks", "combined_block"),
    ("dmixed.engines.dask.evaluator", "make_evaluator"),
]
#: the evaluators' methods the optimizer's round trips call (tasks or direct calls)
SPIED_METHODS = ("step", "hessian", "moments", "random_effects")


def install_spy(dask_worker=None) -> int:
    """In a worker: wrap :data:`SPIED_FUNCTIONS` and the evaluators' methods so that
    each call appends ``(name, numpy's advice)`` to ``dask_worker.pages_seen``."""
    import importlib

    from dmixed.engines import local, vc_crossed, vc_local
    from dmixed.kernels import pages as worker_pages

    seen: list = []
    dask_worker.pages_seen = seen

    def spy(name, real):
        def wrapped(*args, **kwargs):
            seen.append((name, worker_pages.advice()))
            return real(*args, **kwargs)

        return wrapped

    n = 0
    for module, name in SPIED_FUNCTIONS:
        mod = importlib.import_module(module)
        if hasattr(mod, name):
            setattr(mod, name, spy(name, getattr(mod, name)))
            n += 1
    classes = [local.LocalEngine, vc_local.StructuredVCEngine, vc_crossed.CrossedVCEngine]
    while classes:
        cls = classes.pop()
        classes.extend(cls.__subclasses__())
        for meth in SPIED_METHODS:
            if meth in cls.__dict__:
                setattr(cls, meth, spy(meth, cls.__dict__[meth]))
                n += 1
    return n


def pages_seen(dask_worker=None) -> list:
    return list(getattr(dask_worker, "pages_seen", []))


def worker_advice() -> bool | None:
    from dmixed.kernels import pages as worker_pages

    return worker_pages.advice()


@pytest.fixture(scope="module")
def cluster_client():
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        advice = client.run(worker_advice)
        if any(a is not True for a in advice.values()):
            pytest.skip(f"the workers' numpy does not advise huge pages: {advice}")
        yield client


def _fit(client):
    import dask
    import dask.dataframe as dd

    import dmixed

    from ..._synth import make_data

    ddf = dd.from_pandas(make_data(n_groups=300, seed=5), npartitions=4)
    with dask.config.set({"dmixed.engine": "distributed"}):
        model = dmixed.mixedlm("y ~ x1 + x2", ddf, groups="g", re_formula="1 + x1")
        return model.fit(client=client)


def _spied_fit(client) -> tuple[set, set, object]:
    """The fit's result, the names spied on the workers and the advice each saw."""
    assert all(n > 0 for n in client.run(install_spy).values())
    result = _fit(client)
    seen = [s for records in client.run(pages_seen).values() for s in records]
    return {name for name, _ in seen}, {advice for _, advice in seen}, result


@pytest.mark.parametrize("direct", [True, False], ids=["direct-calls", "tasks-only"])
def test_fit_tasks_run_with_ordinary_pages_on_the_workers(cluster_client, monkeypatch, direct):
    from dmixed.engines.dask import direct_calls

    monkeypatch.setattr(direct_calls, "ENABLED", direct)
    names, advice, result = _spied_fit(cluster_client)
    assert np.isfinite(result.llf)
    # the data pass, its summaries, the evaluators and the optimizer's round trips
    assert {"block_summary", "make_evaluator", "step"} <= names, names
    assert names & {"chain_partials", "partition_partials"}, names
    assert advice == {False}, (names, advice)
    # and each worker's own setting given back after the fit
    assert set(cluster_client.run(worker_advice).values()) == {True}


def test_huge_pages_in_fits_on_the_driver_leaves_the_workers_advice(cluster_client, monkeypatch):
    monkeypatch.setattr(pages, "HUGE_PAGES_IN_FITS", True)
    names, advice, _ = _spied_fit(cluster_client)
    assert {"block_summary", "make_evaluator", "step"} <= names, names
    assert advice == {True}, (names, advice)
    assert set(cluster_client.run(worker_advice).values()) == {True}


def test_paged_call_keeps_the_setting_made_with_and_its_name():
    pages_off = pages.paged(np.add)
    assert pages_off.huge is pages.HUGE_PAGES_IN_FITS
    again = pickle.loads(pickle.dumps(pages_off))
    assert again.__name__ == "add" and again.huge == pages_off.huge
    assert again(1, 2) == 3
    assert pages.paged(pages_off).func is np.add  # not wrapped twice


class _Client:
    def __init__(self) -> None:
        self.calls: list = []

    def map(self, func, *iterables, **kwargs):
        self.calls.append(func)
        return [func(*args) for args in zip(*iterables, strict=True)]

    status = "running"


def test_paged_client_sends_paged_functions(monkeypatch):
    inner = _Client()
    client = PagedClient(inner)
    monkeypatch.setattr(pages, "HUGE_PAGES_IN_FITS", True)
    assert client.map(np.negative, [1, 2]) == [-1, -2]
    assert isinstance(inner.calls[0], pages.PagedCall) and inner.calls[0].huge is True
    assert client.status == "running"
