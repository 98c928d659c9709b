"""Waiting for the cluster: progress lines, and waits that end.

A data pass made of a few long tasks (chains of partitions) would show nothing for
minutes; each chain reports the partitions it has read as ``distributed`` structured
events (:func:`report_partitions`), and the driver, waiting for the blocks
(:func:`wait_for`), counts them and logs a line every :data:`PROGRESS_INTERVAL` seconds.

Every wait of the driver on the cluster is bounded: a scheduler with no worker for the
Dask config ``dmixed.no-workers-timeout`` (default ``"2 minutes"``) ends the wait with
:class:`~dmixed.errors.NoWorkersError`; work whose workers died is reported with what
the nannies said, so a worker killed at its memory limit is named as such, with the
limit (:func:`gather`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import ipaddress
import logging
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import dask
import numpy as np
from dask.utils import format_bytes, parse_timedelta

from ...design.partitions import cluster_waits
from ...errors import ClusterClosedError, NoWorkersError, WorkersDiedError, WorkersPausedError

logger = logging.getLogger("dmixed")

#: Topic of the events a chain sends as it reads partitions (``distributed`` structured
#: events): the driver counts them to log the progress of a data pass made of a few
#: long tasks.
PROGRESS_TOPIC = "dmixed-data-pass"
#: Seconds between progress lines during a data pass with ``progress=True``.
PROGRESS_INTERVAL = 10.0
#: Seconds between the progress events of a chain (each reports the partitions read
#: since): one event per partition would cost too much for small partitions.
PROGRESS_BATCH_SECONDS = 0.5


def report_partitions(rows: int, partitions: int = 1) -> None:
    """Tell the driver more partitions are read (only inside a distributed worker)."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return  # not on a distributed worker: in-process, nobody to tell
    worker.log_event(PROGRESS_TOPIC, {"rows": int(rows), "partitions": int(partitions)})


class BatchedReport:
    """Partitions and rows read by one chain, sent by :func:`report_partitions` at most
    every :data:`PROGRESS_BATCH_SECONDS`."""

    def __init__(self) -> None:
        self.partitions = 0
        self.rows = 0
        self.last = time.monotonic()

    def add(self, rows: int) -> None:
        """One more partition of ``rows`` rows read; report if it is time."""
        self.partitions += 1
        self.rows += rows
        if time.monotonic() - self.last >= PROGRESS_BATCH_SECONDS:
            self.flush()
            self.last = time.monotonic()

    def flush(self) -> None:
        """Report what is not reported yet."""
        if self.partitions:
            report_partitions(self.rows, self.partitions)
        self.partitions = 0
        self.rows = 0


class _PartitionCount:
    """Partitions and rows read so far, from the events of :func:`report_partitions`."""

    def __init__(self) -> None:
        self.partitions = 0
        self.rows = 0

    def __call__(self, event) -> None:
        _, message = event
        self.partitions += int(message.get("partitions", 1))
        self.rows += int(message.get("rows", 0))


def _subscribe(client, counter: _PartitionCount) -> bool:
    try:
        client.subscribe_topic(PROGRESS_TOPIC, counter)
        return True
    except Exception:  # noqa: BLE001 - progress is a nicety; the fit goes on
        return False


#: Seconds a wait on the cluster lasts before the driver looks at anything (the tick of
#: its waits: the progress lines, the workers).
WORKER_CHECK_INTERVAL = 1.0
#: Seconds between the driver's requests for the scheduler's workers while a wait goes
#: on (:func:`ask_workers`; more often when ``dmixed.no-workers-timeout`` is shorter, and
#: every tick once the scheduler has no worker).  Each is a round trip to the scheduler:
#: a fit asks once at its start (:func:`ask_workers`), and a wait asks again only this
#: often, or after a worker was lost.
WORKER_RECHECK_INTERVAL = 10.0
#: The Dask config key of how long a wait goes on with no worker at all.
NO_WORKERS_TIMEOUT_KEY = "dmixed.no-workers-timeout"
NO_WORKERS_TIMEOUT_DEFAULT = "2 minutes"
#: The Dask config key of how long a wait goes on while workers are paused, no future of
#: the wait ends and no worker that is not paused runs a task.
PAUSED_TIMEOUT_KEY = "dmixed.paused-workers-timeout"
PAUSED_TIMEOUT_DEFAULT = "2 minutes"


def no_workers_timeout() -> float:
    """Seconds a wait goes on while the scheduler has no worker (Dask config
    ``dmixed.no-workers-timeout``, default 2 minutes)."""
    value = dask.config.get(NO_WORKERS_TIMEOUT_KEY, NO_WORKERS_TIMEOUT_DEFAULT)
    return float(parse_timedelta(value, default="s"))


def paused_timeout() -> float:
    """Seconds a wait goes on while workers are paused, none of its futures ends and no
    worker that is not paused runs a task (Dask config ``dmixed.paused-workers-timeout``,
    default 2 minutes)."""
    value = dask.config.get(PAUSED_TIMEOUT_KEY, PAUSED_TIMEOUT_DEFAULT)
    return float(parse_timedelta(value, default="s"))


@dataclass(frozen=True)
class Roster:
    """The scheduler's workers as the driver last asked for them (:func:`ask_workers`)."""

    #: threads of each worker, by address
    threads: dict
    #: the workers' distinct memory limits (bytes), or the last ones seen when the
    #: scheduler has no worker now (a killed worker is gone from the scheduler's list by
    #: the time its work fails, and the message names its limit)
    limits: tuple
    #: ``time.monotonic()`` of the request
    asked: float
    #: whether the scheduler and every worker listen on this machine's loopback (or
    #: in this process): the driver then gathers results from the workers itself
    #: (:func:`gather_direct`)
    loopback: bool = False
    #: the workers Dask has paused (their memory past its pause fraction,
    #: ``distributed.worker.memory.pause``): ``(address, memory bytes, limit bytes)``
    paused: tuple = ()


#: the roster each client last reported
_ROSTERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def ask_workers(client) -> Roster | None:
    """Ask the scheduler for its workers now (one round trip) and keep the answer as
    ``client``'s roster; ``None`` (the roster kept as it was) when the client cannot
    tell.  A fit asks once at its start and again after a worker was lost."""
    try:
        info = client.scheduler_info()
        workers = info.get("workers", {})
        if len(workers) != info.get("n_workers", len(workers)):
            # the answer is the client's cached one, which its periodic refresh (the
            # totals only, no workers) can replace between this request's arrival and
            # its read: the scheduler's own answer, not through that cache
            workers = client.sync(client.scheduler.identity, n_workers=-1).get("workers", {})
    except Exception:  # noqa: BLE001 - a client that cannot tell: do not judge
        return None
    limits = tuple(sorted({int(w.get("memory_limit") or 0) for w in workers.values()} - {0}))
    if not limits and client in _ROSTERS:
        limits = _ROSTERS[client].limits
    scheduler = getattr(getattr(client, "scheduler", None), "address", None)
    roster = Roster(
        {addr: int(w.get("nthreads") or 1) for addr, w in workers.items()},
        limits,
        time.monotonic(),
        bool(workers) and all(map(on_loopback, [scheduler, *workers])),
        tuple(
            (
                addr,
                int((w.get("metrics") or {}).get("memory") or 0),
                int(w.get("memory_limit") or 0),
            )
            for addr, w in sorted(workers.items())
            if str(w.get("status", "")).endswith("paused")
        ),
    )
    _ROSTERS[client] = roster
    return roster


def on_loopback(address) -> bool:
    """Whether a Dask ``address`` (``"tcp://127.0.0.1:8786"``, ``"inproc://..."``) is
    one only this machine reaches: in this process, or on a loopback interface (then
    the driver, which reached the scheduler there, can reach it too)."""
    if not isinstance(address, str):
        return False
    from distributed.comm import get_address_host, parse_address

    scheme, _ = parse_address(address)
    if scheme == "inproc":
        return True
    try:
        host = get_address_host(address)
    except ValueError:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def gather_direct(client) -> bool | None:
    """``direct`` of ``client.gather``: True where the cluster is on this machine's
    loopback (:attr:`Roster.loopback`), so each result comes straight from its worker
    rather than through the scheduler, which would receive and send every byte once more
    (``benchmarks/bench_gather_direct.py``); else None (distributed's choice, or the
    client's own ``direct_to_workers`` where it was given one).

    Arrays gathered directly may come unaligned or in Fortran order (views into the
    received frames), which numpy's ``matmul`` computes by another loop than for
    aligned C-ordered ones, to other bits: their consumer first lays them out
    (:func:`laid_out`)."""
    if getattr(client, "direct_to_workers", None) is not None:
        return None  # distributed's own choice follows the client's
    return True if reaches_workers(client) else None


def reaches_workers(client) -> bool:
    """Whether the driver talks to the workers itself, not only through the scheduler:
    the client's own ``direct_to_workers`` where it was given one, else where the
    cluster is on this machine's loopback (:attr:`Roster.loopback`), which the driver
    surely reaches.  :func:`gather_direct` and the optimizer's direct calls
    (:mod:`~dmixed.engines.dask.direct_calls`) go to the workers only where this says so."""
    given = getattr(client, "direct_to_workers", None)
    if given is not None:
        return bool(given)
    known = roster(client)
    return known is not None and known.loopback


#: numpy's own alignment of a fresh array's data (malloc's on 64-bit glibc)
_ALIGNMENT = 16


def laid_out(obj, depth: int = 4):
    """``obj`` with every array inside it (in tuples, lists, the attributes of objects,
    ``depth`` levels down) C-ordered and aligned as a fresh numpy array is, copied only
    where it is not: the layout that results gathered through the scheduler have, so
    that what the driver computes from them is the same bits either way."""
    if isinstance(obj, np.ndarray):
        if obj.flags.c_contiguous and obj.ctypes.data % _ALIGNMENT == 0:
            return obj
        return np.array(obj, order="C")
    if depth == 0:
        return obj
    if isinstance(obj, (tuple, list)):
        return type(obj)(laid_out(v, depth - 1) for v in obj) if obj else obj
    attrs = getattr(obj, "__dict__", None)
    if attrs:
        for name, value in list(attrs.items()):
            attrs[name] = laid_out(value, depth - 1)
    return obj


def roster(client) -> Roster | None:
    """``client``'s roster as last asked for, else asked for now (:func:`ask_workers`)."""
    return _ROSTERS.get(client) or ask_workers(client)


def worker_threads(client) -> int:
    """The threads of all the workers in ``client``'s roster (:func:`roster`; 0 when
    unknown)."""
    known = roster(client)
    return 0 if known is None else int(sum(known.threads.values()))


def thread_workers(client) -> list[str]:
    """A worker's address per thread of ``client``'s roster (:func:`roster`), the
    workers in address order, each as many times as it has threads (empty when
    unknown)."""
    known = roster(client)
    if known is None:
        return []
    return [addr for addr in sorted(known.threads) for _ in range(int(known.threads[addr]))]


#: the paused workers already logged, by client (:meth:`_WorkerWatch.check_paused`)
_TOLD_PAUSED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class _WorkerWatch:
    """Ends a wait once the scheduler has had no worker for :func:`no_workers_timeout`,
    or workers have been paused for :func:`paused_timeout` while no future of the wait
    ended and, when that time is up, no worker that is not paused runs a task
    (:meth:`others_busy`), or no future of the wait has ended for
    :func:`no_workers_timeout` while no worker runs a task (:meth:`check_idle`); logs a
    warning the first time it sees paused workers."""

    def __init__(self, client, what: str) -> None:
        self.client = client
        self.what = what or "the fit"
        self.limit = no_workers_timeout()
        self.since: float | None = None
        self.paused_limit = paused_timeout()
        self.paused_since: float | None = None
        self.done = 0
        self.idle_since: float | None = None
        self.idle_done = 0
        self.started = time.time()  # wall clock: the nannies' restart events
        # ask at least four times within the limit, so that it is not overrun by much
        self.every = min(WORKER_RECHECK_INTERVAL, self.limit / 4)

    def check(self, done: int = 0) -> None:
        """Look at the workers (``done``: the futures of the wait done so far)."""
        known = _ROSTERS.get(self.client)
        now = time.monotonic()
        if known is None or self.since is not None or now - known.asked >= self.every:
            known = ask_workers(self.client)
        if known is None or known.threads:
            self.since = None
            if known is not None:
                self.check_paused(known, now, done)
                self.check_idle(known, now, done)
            return
        if self.since is None:
            self.since = now
            logger.warning("dmixed: the Dask scheduler has no workers; waiting for some")
        elif now - self.since >= self.limit:
            address = getattr(self.client.scheduler, "address", "?")
            raise NoWorkersError(
                f"{self.what}: the Dask scheduler at {address} has had no workers for "
                f"{self.limit:.0f}s, so nothing can run; start workers (or check why they "
                f"exited) and run again. The Dask config {NO_WORKERS_TIMEOUT_KEY!r} sets "
                "how long to wait"
            )

    def check_paused(self, known: Roster, now: float, done: int) -> None:
        """Log paused workers once while they stay paused (again only when others are
        paused: the waits of a fit would repeat it); raise when workers have stayed
        paused, and no future of the wait ended, for :func:`paused_timeout`, unless a
        worker that is not paused runs a task then (the clock starts again)."""
        addresses = frozenset(addr for addr, _, _ in known.paused)
        if not addresses:
            _TOLD_PAUSED.pop(self.client, None)  # a later pause is told again
        elif not addresses <= _TOLD_PAUSED.get(self.client, frozenset()):
            _TOLD_PAUSED[self.client] = addresses
            logger.warning(
                "dmixed: %s: Dask paused %d of %d workers at their memory threshold "
                "(%s); they run nothing until their memory falls",
                self.what,
                len(known.paused),
                len(known.threads),
                paused_workers(known.paused),
            )
        if not known.paused:
            self.paused_since = None
            return
        if self.paused_since is None or done != self.done:
            # a paused worker may hold the only work left (a chain runs where its
            # partitions are): the clock runs while no future of the wait ends
            self.paused_since, self.done = now, done
            self.every = min(self.every, self.paused_limit / 4)
        elif now - self.paused_since >= self.paused_limit and self.others_busy(known):
            # a long task on a worker that is not paused (a big partition), or another
            # user's paused worker holding none of the work: the wait goes on; asked
            # again only after another paused_timeout
            self.paused_since = now
        elif now - self.paused_since >= self.paused_limit:
            raise WorkersPausedError(
                f"{self.what}: {len(known.paused)} of {len(known.threads)} workers of the "
                "Dask cluster have been paused at their memory threshold, and the work "
                f"has not moved, for {self.paused_limit:.3g}s, no worker that is not "
                "paused running a task ("
                f"{paused_workers(known.paused)}): Dask pauses a "
                "worker whose memory passes the fraction 'distributed.worker.memory.pause' "
                "of its limit. Give the workers more memory (memory_limit), add workers "
                "(each then holds fewer groups' statistics), or split the data into more, "
                f"smaller partitions. The Dask config {PAUSED_TIMEOUT_KEY!r} sets how long "
                "to wait"
            )

    def check_idle(self, known: Roster, now: float, done: int) -> None:
        """Raise when no future of the wait has ended for :func:`no_workers_timeout`
        and then no worker of the cluster runs a task (paused workers are
        :meth:`check_paused`'s): nothing can move the work any more.  So ends work whose
        tasks were placed on workers that died (killed at their memory limit, say):
        distributed keeps such a task waiting for its lost worker when every worker
        died at once, and does not give it to the workers started in their place."""
        if known.paused or self.idle_since is None or done != self.idle_done:
            self.idle_since, self.idle_done = now, done
            return
        if now - self.idle_since < self.limit:
            return
        self.idle_since = now  # asked again only after another limit
        if self.others_busy(known):
            return
        restarts = _memory_restarts(self.client, self.started - 1.0)
        if restarts:
            rss = max(int(r.get("rss") or 0) for r in restarts)
            raise WorkersDiedError(
                f"{self.what}: {len(restarts)} Dask worker(s) were killed at their memory "
                f"limit ({memory_limits(self.client)}; a worker reached "
                f"{format_bytes(rss)}), and no worker has run the work for "
                f"{self.limit:.3g}s since: distributed does not give the tasks of the "
                "workers that died to the ones started in their place. Give each worker "
                "more memory (cluster config 'memory_limit'), fewer threads per worker, "
                f"or smaller partitions. The Dask config {NO_WORKERS_TIMEOUT_KEY!r} sets "
                "how long to wait"
            )
        raise NoWorkersError(
            f"{self.what}: no worker of the Dask cluster has run a task for "
            f"{self.limit:.3g}s and the work has not moved: its tasks wait for workers "
            "that are gone or that cannot run them (distributed keeps a task placed on a "
            "lost worker waiting for it). Run it again (client.restart() clears the "
            f"waiting tasks). The Dask config {NO_WORKERS_TIMEOUT_KEY!r} sets how long to "
            "wait"
        )

    def others_busy(self, known: Roster) -> bool:
        """Whether a worker that ``known`` does not list paused runs a task now (the
        scheduler's ``processing``, of any client): the work may then be moving."""
        paused = {addr for addr, _, _ in known.paused}
        processing = self.client.processing()
        return any(keys for addr, keys in processing.items() if addr not in paused)


#: distributed's errors for futures that were cancelled: ``FuturesCancelledError`` of
#: ``wait``, ``FutureCancelledError`` of ``gather`` (both ``concurrent.futures``'), and
#: asyncio's, which a client closing under a wait can raise
CANCELLED_ERRORS = (concurrent.futures.CancelledError, asyncio.CancelledError)


def cancelled_error(client, what: str, exc: BaseException) -> ClusterClosedError:
    """The error for work whose futures were cancelled while the driver waited for them
    (``exc``: distributed's), saying whether the client is closed."""
    status = getattr(client, "status", "running")
    if status == "running":
        how = (
            "the client is open: the tasks were cancelled (client.cancel(), "
            "client.restart(), or the scheduler lost them)"
        )
    else:
        how = f"the Dask client is {status}"
    said = " ".join(str(exc).split())[:300] or type(exc).__name__
    return ClusterClosedError(
        f"{what or 'the fit'}: the Dask cluster closed, or the work was cancelled, before "
        f"it finished ({how}; distributed said: {said}); what was computed on the cluster "
        "is lost: run it again on an open cluster"
    )


@contextmanager
def cancellation_named(client, what: str) -> Iterator[None]:
    """Raise distributed's errors for cancelled futures (:data:`CANCELLED_ERRORS`) met
    inside as :class:`~dmixed.errors.ClusterClosedError` (:func:`cancelled_error`), the
    original its cause: every wait of the driver on the cluster goes through here."""
    try:
        yield
    except CANCELLED_ERRORS as exc:
        exc.__traceback__ = None  # it holds the waiting frames, and they the futures
        raise cancelled_error(client, what, exc) from exc


def paused_workers(paused) -> str:
    """Paused workers for a message: each address with its memory and limit."""
    return ", ".join(
        f"{addr}: {format_bytes(memory)} of {format_bytes(limit) if limit else 'no limit'}"
        for addr, memory, limit in paused
    )


def wait_for(
    client,
    futures,
    progress: bool = False,
    what: str = "",
    t0: float = 0.0,
    n_parts: int = 0,
    first: bool = False,
) -> None:
    """Wait for ``futures`` on ``client`` (not necessarily the default client); with
    ``first``, for the first of them to be done.

    With ``progress``, log every :data:`PROGRESS_INTERVAL` seconds the futures done and,
    for a data pass of ``n_parts`` partitions, the partitions read so far.  Errors
    surface at the following gather.

    Raises
    ------
    NoWorkersError
        The scheduler has had no worker for :func:`no_workers_timeout` seconds, or none
        of ``futures`` ended for as long and then no worker runs a task.
    WorkersDiedError
        As long with no future ended and no task running, after workers were killed at
        their memory limit (their tasks wait for them).
    WorkersPausedError
        Workers have been paused (their memory past Dask's pause threshold) for
        :func:`paused_timeout` seconds while none of ``futures`` ended, and no worker
        that is not paused runs a task then; paused workers are logged once before.
    ClusterClosedError
        The futures were cancelled (the client or cluster closed, say).
    """
    from distributed import wait

    read = _PartitionCount()
    subscribed = bool(progress and n_parts) and _subscribe(client, read)
    watch = _WorkerWatch(client, what)
    last_line = time.monotonic()
    tick = min(WORKER_CHECK_INTERVAL, PROGRESS_INTERVAL) if progress else WORKER_CHECK_INTERVAL
    until = "FIRST_COMPLETED" if first else "ALL_COMPLETED"
    try:
        with cancellation_named(client, what), client.as_current():  # wait(): current client
            while True:
                try:
                    wait(futures, timeout=tick, return_when=until)
                    return
                except TimeoutError as timeout:
                    # distributed's sync() raises the error its closure's cell holds,
                    # so the error's traceback holds the cell's frame and the frame the
                    # error: that cycle would keep this frame and its callers' (the fit's
                    # futures on the cluster) until Python's cyclic garbage collector
                    # runs; the traceback is not needed
                    timeout.__traceback__ = None
                    watch.check(sum(f.done() for f in futures))
                    if not progress or time.monotonic() - last_line < PROGRESS_INTERVAL:
                        continue
                    last_line = time.monotonic()
                    done = sum(f.status == "finished" for f in futures)
                    parts = (
                        f"{read.partitions}/{n_parts} partitions read ({read.rows:,} rows), "
                        if subscribed
                        else ""
                    )
                    logger.info(
                        "%s: %s%d/%d blocks done, %.0fs",
                        what,
                        parts,
                        done,
                        len(futures),
                        time.perf_counter() - t0,
                    )
    finally:
        if subscribed:
            client.unsubscribe_topic(PROGRESS_TOPIC)


def design_waits():
    """A context in which the design layer's reads on a cluster (the first values and
    rows of the data, the response: :func:`~dmixed.design.partitions.compute_with`)
    are waited for as :func:`wait_for` waits, so that they end as the data pass's do
    (workers paused or gone) rather than wait for ever."""
    return cluster_waits(_design_wait)


def _design_wait(client, futures, what: str) -> None:
    wait_for(client, futures, what=what)


def _memory_restarts(client, since: float) -> list[dict]:
    """The nannies' reports of workers restarted at their memory limit since ``since``
    (wall-clock seconds)."""
    try:
        events = client.get_events("worker-restart-memory")
    except Exception:  # noqa: BLE001 - no report: say what we know
        return []
    return [msg for stamp, msg in events if stamp >= since and isinstance(msg, dict)]


def gather(client, futures, what: str = "", straight: bool = False):
    """``client.gather(futures)`` after a bounded :func:`wait_for`; with ``straight``,
    from the workers themselves where :func:`gather_direct` says so (a loopback
    cluster: no second copy of every byte through the scheduler), laid out
    (:func:`laid_out`) as results gathered through the scheduler are.

    Raises
    ------
    NoWorkersError
        The scheduler has had no worker for :func:`no_workers_timeout` seconds.
    ClusterClosedError
        The futures were cancelled (the client or cluster closed, say).
    WorkersDiedError
        The workers running a task died (``distributed``'s ``KilledWorker``); the message
        says when the nannies restarted them at their memory limit, and the limit.
    Exception
        What a task raised on a worker, as :func:`detached` gives it.
    """
    from distributed.scheduler import KilledWorker

    started = time.time()
    limits = memory_limits(client)  # as known before a worker can be lost
    wait_for(client, futures, what=what)
    direct = gather_direct(client) if straight else None
    try:
        with cancellation_named(client, what):
            parts = client.gather(futures, direct=direct)
    except KilledWorker as exc:
        exc.__traceback__ = None  # kept in the futures' state, as detached's
        raise died_error(client, started, what, exc, limits) from exc
    except Exception as exc:  # noqa: BLE001 - raised again, detached
        raise detached(exc) from None
    return laid_out(parts) if direct else parts


def gathered_in_turn(client, futures: list, last: int, direct, what: str = "") -> list:
    """``client.gather(futures, direct=direct)`` in two turns: when the first of the
    ``last`` futures that end the list is done, those of them done by then; every other
    one when all are.  For a round trip whose last stage is one task a block: one
    block's last results (its BLUPs, where the stage makes them) cross to the driver
    from its worker, idle by then, while the other blocks still compute, where one
    gather would wait for the slowest block first.  The earlier stages' results are
    left to the second turn: they are small, and a worker still computing would be
    asked for them.  Where the last futures done by then hold None (a stage that made
    nothing: a chain that stopped), one gather only: a first turn would be one more
    request for nothing.  Waits as :func:`wait_for`; a future that failed raises at its
    gather, as in one gather."""
    tail = len(futures) - last
    wait_for(client, futures[tail:], what=what, first=True)
    # a future's type comes with its done message (unknown, e.g. an error: taken)
    early = [i >= tail and f.done() and f.type is not type(None) for i, f in enumerate(futures)]
    parts: list = [None] * len(futures)
    for turn in (True, False):
        if turn is False:
            wait_for(client, futures, what=what)
        at = [i for i, done in enumerate(early) if done is turn]
        if at:
            with cancellation_named(client, what):
                got = client.gather([futures[i] for i in at], direct=direct)
            for i, value in zip(at, got, strict=True):
                parts[i] = value
    return parts


def detached(exc: BaseException) -> BaseException:
    """A copy of ``exc``, the error a task raised on a worker, to raise on the driver in
    its place (same type, arguments and attributes; ``copy.copy``, as the error was
    unpickled), ``exc``'s own traceback dropped; ``exc`` itself where it cannot be
    copied alike.

    ``distributed`` keeps the error in the state of every future of an erred task, and
    the client holds those states while any of the futures lives.  Raised as it is, the
    error takes in its traceback the driver's frames it passes through, which hold the
    futures: the client would then hold the futures, the tasks stay on the scheduler for
    the client's life, whatever the garbage collector does."""
    try:
        twin = copy.copy(exc)
    except Exception:  # noqa: BLE001 - not copied: raised as it is
        return exc
    if type(twin) is not type(exc) or twin.args != exc.args:
        return exc
    exc.__traceback__ = None
    return twin


def memory_limits(client) -> str:
    """The workers' memory limits, as the scheduler last told them (:func:`roster`),
    for a message."""
    known = roster(client)
    if known is None or not known.limits:
        return "the limit the nanny enforces"
    return " / ".join(format_bytes(v) for v in known.limits) + " per worker"


def died_error(
    client, started: float, what: str, exc: BaseException, limits: str | None = None
) -> WorkersDiedError:
    """The error for work whose workers died (``exc``: distributed's ``KilledWorker``),
    naming the memory limit when the nannies restarted workers at it since ``started``
    (wall-clock seconds)."""
    restarts = _memory_restarts(client, started - 1.0)
    what = what or "the fit"
    if restarts:
        rss = max(int(r.get("rss") or 0) for r in restarts)
        limit = limits or memory_limits(client)
        return WorkersDiedError(
            f"{what}: {len(restarts)} Dask worker(s) were killed at their memory limit "
            f"({limit}; a worker reached {format_bytes(rss)}) and the work could not "
            "finish; give each worker more memory (cluster config 'memory_limit'), fewer "
            "threads per worker, or smaller partitions"
        )
    return WorkersDiedError(
        f"{what}: the Dask workers running it died ({exc}); their logs say why "
        "(client.get_worker_logs(), or the cluster's job logs)"
    )
