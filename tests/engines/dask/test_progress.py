"""dmixed.engines.dask.progress: every wait of the driver on the cluster ends."""

from __future__ import annotations

import time

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import dmixed
from dmixed.engines.dask.progress import no_workers_timeout
from dmixed.errors import NoWorkersError, WorkersDiedError

from ..._synth import make_data


def test_no_workers_timeout_is_a_dask_config_key():
    assert no_workers_timeout() == 120.0
    with dask.config.set({"dmixed.no-workers-timeout": "3s"}):
        assert no_workers_timeout() == 3.0


def test_a_scheduler_without_workers_ends_the_fit():
    from distributed import Client, LocalCluster

    ddf = dd.from_pandas(make_data(n_groups=20, seed=3), npartitions=2)
    with (
        LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
        dask.config.set({"dmixed.no-workers-timeout": "2s"}),
    ):
        t0 = time.monotonic()
        with pytest.raises(NoWorkersError, match=r"has had no workers for 2s"):
            dmixed.mixedlm("y ~ x1", ddf, groups="g").fit(client=client)
        assert time.monotonic() - t0 < 30


def _hog(i: int) -> pd.DataFrame:
    if i == 1:
        hog = np.ones(400 * 2**20 // 8)  # far past the worker's memory limit
        time.sleep(2.0)  # the nanny looks every 100 ms
        del hog
    rng = np.random.default_rng(i)
    return pd.DataFrame({"y": rng.normal(size=50), "x1": rng.normal(size=50), "g": i * 10})


def test_a_worker_killed_at_its_memory_limit_is_named():
    from distributed import Client, LocalCluster

    ddf = dd.from_map(_hog, [0, 1, 2])
    config = {"distributed.scheduler.allowed-failures": 0}
    with (
        dask.config.set(config),
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            memory_limit="200MiB",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        with pytest.raises(WorkersDiedError, match=r"killed at their memory limit \(200\.00 MiB"):
            dmixed.mixedlm("y ~ x1", ddf, groups="g").fit(client=client)


def test_a_fit_asks_the_scheduler_for_its_workers_once(client, monkeypatch):
    """One request for the workers a fit (not one a wait and a round trip), with the
    blocks one per worker thread, as the scheduler counts them."""
    from distributed import Client

    from dmixed.engines.dask import progress

    # no recheck within the fit, however long a loaded machine makes it: a wait also
    # asks four times within the no-workers timeout, so that is lengthened too
    monkeypatch.setattr(progress, "WORKER_RECHECK_INTERVAL", 1e9)
    asked = []
    scheduler_info = Client.scheduler_info

    def counted(self, *args, **kwargs):
        asked.append(self)
        return scheduler_info(self, *args, **kwargs)

    monkeypatch.setattr(Client, "scheduler_info", counted)
    ddf = dd.from_pandas(make_data(n_groups=40, seed=5), npartitions=4)
    config = {"dmixed.engine": "distributed", progress.NO_WORKERS_TIMEOUT_KEY: "1000 days"}
    with dask.config.set(config):
        res = dmixed.mixedlm("y ~ x1", ddf, groups="g").fit(client=client)
    assert res.converged
    assert asked == [client]
    assert progress.worker_threads(client) == sum(client.nthreads().values())
    assert progress.memory_limits(client).endswith("per worker")
