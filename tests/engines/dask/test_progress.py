"""dmixed.engines.dask.progress: every wait of the driver on the cluster ends."""

from __future__ import annotations

import threading
import time
import weakref

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import dmixed
from dmixed.engines.dask.progress import no_workers_timeout
from dmixed.errors import (
    ClusterClosedError,
    NoWorkersError,
    WorkersDiedError,
    WorkersPausedError,
)

from ..._collector import Held, collector_off
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


def test_a_wait_past_its_checks_leaves_no_reference_cycle(client, monkeypatch):
    """A wait that outlasts its checks of the workers (distributed's wait timing out:
    a data pass longer than a second) leaves no reference cycle: distributed's
    ``TimeoutError`` is in one with the frame that raised it, whose traceback held the
    waiting frame and its callers' (a fit's futures) until Python's cyclic garbage
    collector ran."""
    from dmixed.engines.dask import progress

    monkeypatch.setattr(progress, "WORKER_CHECK_INTERVAL", 0.01)  # 30 checks in the wait

    def caller(held: Held) -> bool:
        future = client.submit(time.sleep, 0.3, pure=False)
        progress.wait_for(client, [future], what="a wait")
        return future.done()

    with collector_off():
        held = Held()
        gone = weakref.ref(held)
        assert caller(held)
        del held
        assert gone() is None


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("tcp://127.0.0.1:8786", True),
        ("tcp://localhost:8786", True),
        ("tcp://[::1]:8786", True),
        ("inproc://10.0.0.5/123/1", True),
        ("tcp://10.0.0.5:8786", False),
        ("tls://192.168.1.2:8786", False),
        (None, False),
    ],
)
def test_on_loopback_tells_the_addresses_only_this_machine_reaches(address, expected):
    from dmixed.engines.dask.progress import on_loopback

    assert on_loopback(address) is expected


def test_laid_out_copies_only_the_arrays_that_are_unaligned_or_not_c_ordered():
    from dmixed.engines.dask.progress import laid_out

    class Sums:  # an object of arrays, as the kernels' sums are
        def __init__(self, m):
            self.m = m

    base = np.arange(40, dtype=np.float64)
    raw = np.frombuffer(b"\0" + base.tobytes(), dtype=np.float64, count=40, offset=1)
    fortran = np.asfortranarray(base.reshape(5, 8))
    plain = base.reshape(8, 5)
    got = laid_out([(raw, fortran), Sums(plain), None, 3.0])
    (a, b), sums = got[0], got[1]
    assert got[2:] == [None, 3.0]
    assert sums.m is plain  # aligned and C-ordered: as it is
    for old, new in ((raw, a), (fortran, b)):
        assert new is not old
        assert new.flags.c_contiguous and new.ctypes.data % 16 == 0
        np.testing.assert_array_equal(new, old)


@pytest.mark.usefixtures("tasks_only")
def test_a_loopback_cluster_gathers_from_the_workers_to_the_same_bits(monkeypatch):
    """Worker processes on 127.0.0.1: every gather of a fit kept on the workers (the
    data pass's summaries and moment sums, the optimizer's round trips) comes straight
    from the workers, and the fit is the fit of results gathered through the scheduler
    (a client told ``direct_to_workers=False``), bit for bit."""
    from distributed import Client, LocalCluster

    from dmixed.engines.dask.progress import gather_direct

    asked: list = []
    client_gather = Client.gather

    def recorded(self, futures, *args, **kwargs):
        asked.append(kwargs.get("direct"))
        return client_gather(self, futures, *args, **kwargs)

    monkeypatch.setattr(Client, "gather", recorded)
    ddf = dd.from_pandas(make_data(n_groups=200, seed=8), npartitions=4)
    fits, directs = {}, {}
    with (
        dask.config.set({"dmixed.engine": "distributed"}),
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
    ):
        for direct in (None, False):
            with Client(cluster, direct_to_workers=direct) as client:
                model = dmixed.mixedlm("y ~ x1 + x2", ddf, groups="g", re_formula="1 + x1")
                asked.clear()
                res = model.fit(client=client)
                directs[direct] = list(asked)
                assert gather_direct(client) is (True if direct is None else None)
                blups = np.asarray(list(res.random_effects.values()))
                fits[direct] = (res.params.to_numpy(), res.bse.to_numpy(), res.llf, blups)
    for a, b in zip(fits[None], fits[False], strict=True):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    # the summaries, the moment sums and at least one round trip
    assert len(directs[None]) >= 3
    assert set(directs[None]) == {True}
    assert set(directs[False]) == {None}


class _Refused(ValueError):
    """An error with an attribute of its own, as the project's errors carry."""

    def __init__(self, message: str, column: str = "") -> None:
        super().__init__(message)
        self.column = column


def _raises_on_the_worker() -> None:
    raise _Refused("refused on the worker", column="x2")


def test_detached_copies_the_error_and_drops_the_kept_ones_traceback():
    from dmixed.engines.dask.progress import detached

    try:
        _raises_on_the_worker()
    except _Refused as exc:
        twin = detached(exc)
        assert exc.__traceback__ is None
        kept = exc
    assert type(twin) is _Refused and twin is not kept
    assert twin.args == ("refused on the worker",) and twin.column == "x2"
    assert twin.__traceback__ is None


def test_detached_keeps_an_error_it_cannot_copy_alike():
    from dmixed.engines.dask.progress import detached

    class Odd(Exception):
        def __init__(self, a: int, b: int) -> None:
            super().__init__(a + b)  # args unlike __init__'s: copy.copy fails

    odd = Odd(1, 2)
    assert detached(odd) is odd


def test_an_error_raised_on_a_worker_lets_go_of_the_driver_frames(client):
    """The error a task raised is kept by distributed in the erred future's state, which
    the client holds while the future lives: raised as it was, its traceback took the
    frame that held the future, so the client held that frame (and the tasks stayed on
    the scheduler) for its life, a garbage collection or not.  Raised detached, the
    frame goes with the error that left it."""
    from dmixed.engines.dask import progress

    def caller(held: Held) -> None:
        future = client.submit(_raises_on_the_worker, pure=False)
        progress.gather(client, [future], "a task")

    with collector_off():
        held = Held()
        gone = weakref.ref(held)
        with pytest.raises(_Refused, match="refused on the worker") as info:
            caller(held)
        assert info.value.column == "x2"
        del held, info
        assert gone() is None


#: what the late task of the next test waits for (the fixture's workers are threads of
#: this process; no client is made inside the task, which would become Dask's default)
_LATE = threading.Event()


def _late(x):
    _LATE.wait(60)
    return x * 10


def test_a_done_blocks_last_results_are_gathered_while_the_others_run(client, monkeypatch):
    """:func:`gathered_in_turn`: the first turn takes only the last stage's results
    that are done (one block's, its worker idle), while another block's last task still
    runs; the second turn every other result; the results in the futures' order."""
    from distributed import Client

    from dmixed.engines.dask.progress import gathered_in_turn

    slow_worker, fast_worker = sorted(client.scheduler_info()["workers"])
    _LATE.clear()
    first = [
        client.submit(lambda v: v, v, workers=[w], pure=False)
        for v, w in ((1, fast_worker), (2, slow_worker))
    ]
    last = [
        client.submit(lambda a, b: a + b, *first, workers=[fast_worker], pure=False),
        client.submit(_late, first[1], workers=[slow_worker], pure=False),
    ]
    futures = [*first, *last]
    turns: list = []
    client_gather = Client.gather

    def recorded(self, fs, *args, **kwargs):
        turns.append([f.key for f in fs])
        _LATE.set()  # the late task ends only once the first turn is asked for
        return client_gather(self, fs, *args, **kwargs)

    monkeypatch.setattr(Client, "gather", recorded)
    try:
        got = gathered_in_turn(client, futures, 2, None)
    finally:
        _LATE.set()
    assert turns == [[last[0].key], [f.key for f in (*first, last[1])]]
    assert got == [1, 2, 3, 20]


def test_last_results_of_none_are_gathered_in_one_turn(client, monkeypatch):
    """:func:`gathered_in_turn`: where the last stage's results done at the first turn
    are None (a chain that stopped), one gather of every result."""
    from distributed import Client

    from dmixed.engines.dask.progress import gathered_in_turn, wait_for

    first = [client.submit(lambda v: v, v, pure=False) for v in (1, 2)]
    last = [client.submit(lambda v: None, f, pure=False) for f in first]
    futures = [*first, *last]
    wait_for(client, futures)
    turns: list = []
    client_gather = Client.gather

    def recorded(self, fs, *args, **kwargs):
        turns.append([f.key for f in fs])
        return client_gather(self, fs, *args, **kwargs)

    monkeypatch.setattr(Client, "gather", recorded)
    assert gathered_in_turn(client, futures, 2, None) == [1, 2, None, None]
    assert turns == [[f.key for f in futures]]


def test_the_roster_is_the_schedulers_when_the_clients_refresh_lands_between(client, monkeypatch):
    """The client's periodic refresh of its cached scheduler info (the totals only, no
    workers) landing between a fit's request and its read: the roster still lists every
    worker (not none, which made a fit of two worker threads one of one block)."""
    from distributed import Client

    from dmixed.engines.dask import progress

    update = Client._update_scheduler_info

    async def refreshed_after(self, n_workers=0):
        await update(self, n_workers=n_workers)
        if n_workers == -1:  # the periodic refresh's answer arrives just after this one
            await update(self)

    monkeypatch.setattr(Client, "_update_scheduler_info", refreshed_after)
    assert client.scheduler_info()["workers"] == {}  # what the fit read before
    known = progress.ask_workers(client)
    assert known is not None and known.threads == client.nthreads()
    assert progress.worker_threads(client) == sum(client.nthreads().values()) == 2


#: the blocked tasks of the next tests: set when one starts, and to let them end
_STARTED = threading.Event()
_RELEASE = threading.Event()


def _blocked(x):
    _STARTED.set()
    _RELEASE.wait(30)
    return x


def test_cancelled_work_is_a_cluster_error_whose_cause_is_distributeds(client):
    """Futures cancelled while the driver waits for them (``wait_for``) or gathers them
    (``gather``) raise :class:`ClusterClosedError` (a ``DmixedError``), distributed's
    error its cause, the message saying that the client is still open."""
    from concurrent.futures import CancelledError

    from dmixed.engines.dask.progress import gather, wait_for

    _STARTED.clear()
    _RELEASE.clear()
    future = client.submit(_blocked, 1, pure=False)
    try:
        assert _STARTED.wait(30)
        client.cancel([future])
        with pytest.raises(ClusterClosedError, match="the client is open") as waited:
            wait_for(client, [future], what="a test pass")
        with pytest.raises(ClusterClosedError, match="a test pass") as gathered:
            gather(client, [future], "a test pass")
    finally:
        _RELEASE.set()
    for info in (waited, gathered):
        assert isinstance(info.value, dmixed.DmixedError)
        assert isinstance(info.value.__cause__, CancelledError)


def test_a_client_closed_during_the_data_pass_ends_the_fit_with_a_cluster_error():
    """The client closed while the fit waits for its data pass: a
    :class:`ClusterClosedError` saying so, not distributed's FuturesCancelledError."""
    from distributed import Client, LocalCluster

    df = make_data(n_groups=6, min_size=5, max_size=5, seed=3)
    meta = df.iloc[:0]
    ddf = dd.from_map(lambda i: _blocked(df.iloc[i * 10 : (i + 1) * 10]), range(3), meta=meta)
    _STARTED.clear()
    _RELEASE.clear()
    raised: list = []
    with (
        LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        model = dmixed.mixedlm("y ~ x1", ddf, groups="g", client=client)

        def fit():
            try:
                model.fit()
            except BaseException as exc:  # noqa: BLE001 - the test looks at it
                raised.append(exc)

        thread = threading.Thread(target=fit)
        thread.start()
        try:
            assert _STARTED.wait(30)
            client.close()
            thread.join(60)
        finally:
            _RELEASE.set()
        thread.join(30)
    assert len(raised) == 1
    assert isinstance(raised[0], ClusterClosedError), repr(raised[0])
    assert "the Dask client is clos" in str(raised[0])


def _paused_roster(client, paused_count: int):
    """``ask_workers`` of ``client`` with its first ``paused_count`` workers reported
    paused from the second request on (a status source standing in for a cluster
    reaching its memory threshold)."""
    from dmixed.engines.dask import progress

    real = progress.ask_workers
    asked: list = []

    def ask(c):
        known = real(c)
        asked.append(known)
        addrs = sorted(known.threads)[:paused_count] if len(asked) > 1 else []
        paused = tuple((a, 300 * 2**20, 330 * 10**6) for a in addrs)
        return progress.Roster(known.threads, known.limits, known.asked, known.loopback, paused)

    return ask


@pytest.mark.parametrize("paused", [1, 2])
def test_a_wait_stalled_on_paused_workers_ends_with_what_to_do(client, monkeypatch, caplog, paused):
    """Workers paused by Dask at their memory threshold (all, or one running the work
    left while the other runs nothing) while the waited work does not move: the wait
    logs the paused workers once (address, memory, limit), then ends after the
    configured time with :class:`WorkersPausedError` saying what to change."""
    from dmixed.engines.dask import progress

    monkeypatch.setattr(progress, "ask_workers", _paused_roster(client, paused))
    monkeypatch.setattr(progress, "WORKER_CHECK_INTERVAL", 0.02)
    monkeypatch.setattr(progress, "WORKER_RECHECK_INTERVAL", 0.02)
    _STARTED.clear()
    _RELEASE.clear()
    first = sorted(client.nthreads())[0]  # reported paused
    future = client.submit(_blocked, 1, workers=[first], pure=False)
    try:
        with (
            dask.config.set({"dmixed.paused-workers-timeout": "0.1s"}),
            caplog.at_level("WARNING", logger="dmixed"),
            pytest.raises(WorkersPausedError, match="more memory") as info,
        ):
            progress.wait_for(client, [future], what="a test pass")
    finally:
        _RELEASE.set()
    assert isinstance(info.value, dmixed.errors.ClusterError)
    assert "300.00 MiB of 314.71 MiB" in str(info.value)
    told = [r.getMessage() for r in caplog.records if "paused" in r.getMessage()]
    assert len(told) == 1 and f"paused {paused} of 2 workers" in told[0], told
    assert "300.00 MiB of 314.71 MiB" in told[0]
    assert f"{paused} of 2 workers of the Dask cluster" in str(info.value)


def test_a_wait_with_some_workers_paused_warns_once_and_goes_on(client, monkeypatch, caplog):
    """One worker of two paused, shorter than the configured time: logged once, and the
    wait goes on to its end."""
    from dmixed.engines.dask import progress

    monkeypatch.setattr(progress, "ask_workers", _paused_roster(client, 1))
    monkeypatch.setattr(progress, "WORKER_CHECK_INTERVAL", 0.02)
    monkeypatch.setattr(progress, "WORKER_RECHECK_INTERVAL", 0.02)
    _STARTED.clear()
    _RELEASE.clear()
    future = client.submit(_blocked, 5, pure=False)
    releaser = threading.Timer(0.3, _RELEASE.set)
    releaser.start()
    with (
        dask.config.set({"dmixed.paused-workers-timeout": "1 minute"}),
        caplog.at_level("WARNING", logger="dmixed"),
    ):
        progress.wait_for(client, [future], what="a test pass")
    releaser.join()
    assert future.result() == 5
    told = [r.getMessage() for r in caplog.records if "paused" in r.getMessage()]
    assert len(told) == 1 and "paused 1 of 2 workers" in told[0], told


def test_a_paused_worker_does_not_end_a_wait_whose_work_runs_on_another(
    client, monkeypatch, caplog
):
    """One worker reported paused, the waited task running on the other past the
    configured time: the work moves, so the wait goes on to its end (logged once)."""
    from dmixed.engines.dask import progress

    monkeypatch.setattr(progress, "ask_workers", _paused_roster(client, 1))
    monkeypatch.setattr(progress, "WORKER_CHECK_INTERVAL", 0.02)
    monkeypatch.setattr(progress, "WORKER_RECHECK_INTERVAL", 0.02)
    _STARTED.clear()
    _RELEASE.clear()
    running = sorted(client.nthreads())[1]  # not reported paused
    future = client.submit(_blocked, 7, workers=[running], pure=False)
    releaser = threading.Timer(0.8, _RELEASE.set)
    releaser.start()
    try:
        with (
            dask.config.set({"dmixed.paused-workers-timeout": "0.1s"}),
            caplog.at_level("WARNING", logger="dmixed"),
        ):
            progress.wait_for(client, [future], what="a test pass")
    finally:
        _RELEASE.set()
        releaser.join()
    assert future.result() == 7
    told = [r.getMessage() for r in caplog.records if "paused" in r.getMessage()]
    assert len(told) == 1 and "paused 1 of 2 workers" in told[0], told


def test_a_design_read_stalled_on_paused_workers_ends_the_build_with_what_to_do(
    client, monkeypatch, caplog
):
    """The model's build reads the data's first values on the cluster (an integer
    column of the formula: its reference) before any data pass: with every worker
    reported paused and the read not moving, the build ends with
    :class:`WorkersPausedError` (logged once before), as a data pass's wait does,
    instead of waiting for ever."""
    from dmixed.engines.dask import progress

    monkeypatch.setattr(progress, "ask_workers", _paused_roster(client, 2))
    monkeypatch.setattr(progress, "WORKER_CHECK_INTERVAL", 0.02)
    monkeypatch.setattr(progress, "WORKER_RECHECK_INTERVAL", 0.02)
    df = make_data(n_groups=6, min_size=5, max_size=5, seed=3)
    df["days"] = np.arange(len(df), dtype=np.int64)
    ddf = dd.from_map(
        lambda i: _blocked(df.iloc[i * 10 : (i + 1) * 10]), range(3), meta=df.iloc[:0]
    )
    _STARTED.clear()
    _RELEASE.clear()
    releaser = threading.Timer(20, _RELEASE.set)  # on a build that never ends
    releaser.start()
    try:
        with (
            dask.config.set({"dmixed.paused-workers-timeout": "0.1s"}),
            caplog.at_level("WARNING", logger="dmixed"),
            pytest.raises(WorkersPausedError, match="more memory") as info,
        ):
            dmixed.mixedlm("y ~ x1 + days", ddf, groups="g", client=client)
    finally:
        _RELEASE.set()
        releaser.cancel()
    assert "reading the first values" in str(info.value)
    assert "300.00 MiB of 314.71 MiB" in str(info.value)
    told = [r.getMessage() for r in caplog.records if "paused" in r.getMessage()]
    assert len(told) == 1 and "paused 2 of 2 workers" in told[0], told


def test_a_wait_whose_tasks_no_worker_runs_ends_with_what_to_do(client, monkeypatch):
    """A waited task that no worker will run (here placed on a worker the cluster does
    not have; in a user's fit, on workers killed at their memory limit, which
    distributed does not replace) while the workers run nothing: the wait ends after
    ``dmixed.no-workers-timeout`` with :class:`NoWorkersError` saying so, not for ever."""
    from dmixed.engines.dask import progress

    monkeypatch.setattr(progress, "WORKER_CHECK_INTERVAL", 0.02)
    monkeypatch.setattr(progress, "WORKER_RECHECK_INTERVAL", 0.02)
    future = client.submit(_blocked, 3, workers=["tcp://192.0.2.1:1"], pure=False)
    stopper = threading.Timer(20, client.cancel, [[future]])  # a wait that never ends
    stopper.start()
    try:
        with (
            dask.config.set({"dmixed.no-workers-timeout": "0.2s"}),
            pytest.raises(NoWorkersError, match="no worker of the Dask cluster has run"),
        ):
            progress.wait_for(client, [future], what="a test pass")
    finally:
        stopper.cancel()
        client.cancel([future])


def test_a_wait_whose_workers_were_killed_at_their_memory_limit_says_so(client, monkeypatch):
    """As above, where the nannies restarted workers at their memory limit since the
    wait began (a stand-in for the scheduler's ``worker-restart-memory`` events): the
    wait ends with :class:`WorkersDiedError` naming the limit and what a worker reached."""
    from dmixed.engines.dask import progress

    monkeypatch.setattr(progress, "WORKER_CHECK_INTERVAL", 0.02)
    monkeypatch.setattr(progress, "WORKER_RECHECK_INTERVAL", 0.02)
    real_events = client.get_events

    def events(topic=None):
        if topic != "worker-restart-memory":
            return real_events(topic)
        return [(time.time(), {"worker": "tcp://192.0.2.1:1", "rss": 326 * 2**20})]

    monkeypatch.setattr(client, "get_events", events)
    future = client.submit(_blocked, 3, workers=["tcp://192.0.2.1:1"], pure=False)
    stopper = threading.Timer(20, client.cancel, [[future]])  # a wait that never ends
    stopper.start()
    try:
        with (
            dask.config.set({"dmixed.no-workers-timeout": "0.2s"}),
            pytest.raises(WorkersDiedError, match="killed at their memory limit") as info,
        ):
            progress.wait_for(client, [future], what="a test pass")
    finally:
        stopper.cancel()
        client.cancel([future])
    message = str(info.value)
    assert message.startswith("a test pass: 1 Dask worker(s)"), message
    assert "a worker reached 326.00 MiB" in message and "no worker has run" in message


def test_a_persist_still_computing_on_paused_workers_ends_the_wait_for_it(client, monkeypatch):
    """The data pass waits for a collection still being persisted (to know where its
    partitions are): with the workers reported paused and the persist not moving, that
    wait too ends with :class:`WorkersPausedError`."""
    from dmixed.engines.dask import progress
    from dmixed.engines.dask.graph import resident_chains

    monkeypatch.setattr(progress, "ask_workers", _paused_roster(client, 2))
    monkeypatch.setattr(progress, "WORKER_CHECK_INTERVAL", 0.02)
    monkeypatch.setattr(progress, "WORKER_RECHECK_INTERVAL", 0.02)
    df = make_data(n_groups=6, min_size=5, max_size=5, seed=3)
    _STARTED.clear()
    _RELEASE.clear()
    ddf = dd.from_map(
        lambda i: _blocked(df.iloc[i * 10 : (i + 1) * 10]), range(3), meta=df.iloc[:0]
    )
    persisted = client.persist(ddf)
    releaser = threading.Timer(20, _RELEASE.set)  # on a wait that never ends
    releaser.start()
    try:
        with (
            dask.config.set({"dmixed.paused-workers-timeout": "0.1s"}),
            pytest.raises(WorkersPausedError, match="the persisted data"),
        ):
            resident_chains(persisted[["g", "y"]], client, "auto")
    finally:
        _RELEASE.set()
        releaser.cancel()
