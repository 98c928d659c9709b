"""An optimizer round trip run as direct calls to the workers that hold the evaluators.

A round trip of :class:`~dmixed.engines.dask.evaluator.DaskEngine` is a few stages of
one task a block, each reading every block's previous stage (``client.map`` calls,
:mod:`~dmixed.engines.dask.ahead`, :mod:`~dmixed.engines.dask.next_point`).  As tasks,
each stage costs the scheduler's turns: a finished task reported in the worker's next
batch, the next one sent in the scheduler's, its inputs fetched from the other worker,
and for the first stage the client's batch.  Here the same stages are recorded
(:class:`Recorder`, standing in for the client in the ``submit`` functions) and run
from the driver as one direct call per stage and worker (distributed's ``run``
handler on the worker, reached on the client's connection pool): each worker applies
the stage's function to the evaluators it holds (in its data, by their keys), with the
earlier stages' results as arguments, and answers with the results.

The functions, their arguments and the order in which the driver adds the blocks'
results are the tasks' own, so the results are the same bits.  Whatever this path
cannot do (an argument that is a future, an evaluator no longer where it was, a lost
connection, an error inside a stage) raises :class:`DirectCallUnavailable` in the
driver's own frame (never through ``client.sync``, whose re-raised error would keep the
driver's frames, and the engine's futures with them, in a reference cycle), and the
caller runs the round trip as tasks instead, which recomputes lost blocks and raises the
task's own error.  A worker not reached within :data:`CONNECT_TIMEOUT` raises
:class:`WorkerUnreachable`: the caller stops calling directly.

The workers log each ``run`` call (and a failing one with its arguments and traceback);
:class:`~dmixed.engines.dask.worker_logs.QuietRuns` drops those records of this
module's stages, whose failures the tasks raise again.  The work done here is not
seen by the scheduler (no task, no "executing" count), and a stage's arguments travel
in each stage's call, not once as scattered data as the tasks' large arguments are.
"""

from __future__ import annotations

import asyncio
import inspect

from distributed import Client, Future
from distributed.core import send_recv
from distributed.protocol.pickle import dumps

from .progress import laid_out
from .worker_logs import install_quiet_runs

__all__ = [
    "CONNECT_TIMEOUT",
    "DirectCallUnavailable",
    "Recorder",
    "WorkerUnreachable",
    "block_workers",
    "direct_calls_enabled",
    "run_recorded",
]

#: Whether :class:`~dmixed.engines.dask.evaluator.DaskEngine` runs its round trips as
#: direct calls where it can (False: always as tasks, as the tests compare).
ENABLED = True


def direct_calls_enabled() -> bool:
    """:data:`ENABLED`, read at each round trip."""
    return ENABLED


#: Seconds a direct call waits for a connection to a worker (distributed's own connect
#: retries for ``distributed.comm.timeouts.connect``, 30 s by default: a worker gone
#: since the scheduler named it would hold the round trip that long before the tasks).
CONNECT_TIMEOUT = 2.0


class DirectCallUnavailable(Exception):
    """The round trip cannot be run as direct calls (run it as tasks)."""


class WorkerUnreachable(DirectCallUnavailable):
    """A worker was not reached (run this and later round trips as tasks)."""


class _Failed:
    """Why a direct call gave no result (returned, not raised, inside the event loop)."""

    __slots__ = ("reason", "unreachable")

    def __init__(self, reason: str, *, unreachable: bool = False) -> None:
        self.reason, self.unreachable = reason, unreachable


class _Pending:
    """Stands for the result of block ``index`` of recorded stage ``stage``."""

    __slots__ = ("index", "stage")

    def __init__(self, stage: int, index: int) -> None:
        self.stage, self.index = stage, index


class Recorder:
    """Records ``client.map`` calls over a round trip's evaluator futures.

    Only ``map`` over the evaluators (first iterable: the evaluator futures, in block
    order; further iterables: earlier stages' results) is recorded; it returns
    placeholders of the stage's results, which later calls may pass as iterables or
    inside keyword arguments (in lists and tuples, at any depth).  Anything else (a
    future as an argument, ``client.map``'s own options such as ``workers`` or
    ``priority``, another client method) raises :class:`DirectCallUnavailable`.

    Parameters
    ----------
    blocks : list of Future
        The evaluators, one per block.
    """

    def __init__(self, blocks: list) -> None:
        self.blocks = list(blocks)
        self.stages: list[tuple] = []

    def map(self, func, *iterables, key=None, pure=None, **kwargs) -> list:  # noqa: ARG002
        """Record ``func`` over the blocks; the placeholders of its results."""
        if not iterables or len(iterables[0]) != len(self.blocks):
            raise DirectCallUnavailable("a stage not one task a block")
        if any(a is not b for a, b in zip(iterables[0], self.blocks, strict=True)):
            raise DirectCallUnavailable("a stage over other futures than the evaluators")
        options = sorted(_MAP_OPTIONS.intersection(kwargs))
        if options:
            raise DirectCallUnavailable(f"client.map options {options} in a recorded stage")
        for values in (*iterables[1:], *kwargs.values()):
            _check_plain(values)
        n = len(self.stages)
        self.stages.append((func, iterables[1:], kwargs))
        return [_Pending(n, i) for i in range(len(self.blocks))]

    def __getattr__(self, name: str):
        raise DirectCallUnavailable(f"client.{name} in a recorded round trip")


#: ``client.map``'s own keywords (not the function's), which a direct call cannot honour
_MAP_OPTIONS = frozenset(
    name
    for name, p in inspect.signature(Client.map).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY
) - {"key", "pure"}


def _check_plain(value) -> None:
    if isinstance(value, Future):
        raise DirectCallUnavailable("a future as an argument")
    if isinstance(value, (list, tuple)):
        for v in value:
            _check_plain(v)


def _resolved(value, results: list):
    """``value`` with each placeholder (in lists and tuples, at any depth) replaced by
    its result."""
    if isinstance(value, _Pending):
        return results[value.stage][value.index]
    if isinstance(value, (list, tuple)) and _has_pending(value):
        return type(value)(_resolved(v, results) for v in value)
    return value


def _has_pending(value) -> bool:
    if isinstance(value, _Pending):
        return True
    return isinstance(value, (list, tuple)) and any(map(_has_pending, value))


def _apply(func, evaluators: list, per_block: list, kwargs: dict) -> list:
    kwargs = {name: laid_out(v) for name, v in kwargs.items()}
    return [
        func(ev, *laid_out(args), **kwargs) for ev, args in zip(evaluators, per_block, strict=True)
    ]


async def _run_stage(keys: list, func, per_block: list, kwargs: dict, dask_worker=None):
    """On a worker: ``func(evaluator, *args, **kwargs)`` for each of its blocks
    (``keys``, ``per_block``: their further arguments), laid out as a task's
    arguments are where they come through the scheduler, in the worker's own task
    threads (its event loop stays free, and it computes on no more threads than a
    task would); None where an evaluator is not in this worker's data."""
    data = dask_worker.data
    if any(k not in data for k in keys):
        return None
    evaluators = [data[k] for k in keys]
    executor = dask_worker.executors["default"]
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor, _apply, func, evaluators, per_block, kwargs)


_RUN_STAGE = dumps(_run_stage)


# a worker imports this module as it unpickles the stage's function, before it logs the
# call: its records of the stages (one a stage and worker, and the arguments and the
# traceback of a stage that failed, which the tasks then raise again) would crowd the
# worker's kept records out
install_quiet_runs(_run_stage.__name__)


def block_workers(client, blocks: list) -> list[str]:
    """The address of a worker holding each evaluator of ``blocks`` (the scheduler's
    word); raises :class:`DirectCallUnavailable` where one is held nowhere or is not
    finished."""
    if any(f.status != "finished" for f in blocks):
        raise DirectCallUnavailable("an evaluator not finished")
    who = client.who_has(blocks)
    where = []
    for f in blocks:
        held = who.get(f.key) or ()
        if not held:
            raise DirectCallUnavailable("an evaluator held nowhere")
        where.append(sorted(held)[0])
    return where


async def _call(client, address: str, payload: tuple):
    """The stage's results from the worker at ``address``, or a :class:`_Failed`:
    nothing raised out of here, so no error goes back through ``client.sync``."""
    pool = client.rpc
    try:
        comm = await pool.connect(address, timeout=CONNECT_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - any failure: the tasks instead
        return _Failed(f"{address} not reached ({type(exc).__name__})", unreachable=True)
    try:
        response = await send_recv(
            comm, op="run", function=_RUN_STAGE, args=dumps(payload), wait=True
        )
    except Exception as exc:  # noqa: BLE001 - a broken connection, a garbled reply
        comm.abort()  # not to be reused
        return _Failed(f"no answer from {address} ({type(exc).__name__})")
    finally:
        pool.reuse(address, comm)
    if not isinstance(response, dict) or response.get("status") != "OK":
        text = response.get("exception_text") if isinstance(response, dict) else None
        return _Failed(f"a stage failed on {address}: {text}")
    if response.get("result") is None:
        return _Failed(f"an evaluator no longer on {address}")
    return response["result"]


async def _run_all(client, recorder: Recorder, where: list[str]):
    """The recorded stages' results, or a :class:`_Failed` (never raises)."""
    try:
        return await _run_stages(client, recorder, where)
    except Exception as exc:  # noqa: BLE001 - any failure here: the tasks instead
        return _Failed(f"{type(exc).__name__}: {exc}")


async def _run_stages(client, recorder: Recorder, where: list[str]):
    keys = [f.key for f in recorder.blocks]
    by_worker: dict[str, list[int]] = {}
    for i, address in enumerate(where):
        by_worker.setdefault(address, []).append(i)
    results: list = []
    for func, iterables, kwargs in recorder.stages:
        kwargs = {name: _resolved(v, results) for name, v in kwargs.items()}
        calls = []
        for address, at in by_worker.items():
            per_block = [tuple(_resolved(it[i], results) for it in iterables) for i in at]
            payload = ([keys[i] for i in at], func, per_block, kwargs)
            calls.append(_call(client, address, payload))
        got = await asyncio.gather(*calls)
        failed = [g for g in got if isinstance(g, _Failed)]
        if failed:
            return next((f for f in failed if f.unreachable), failed[0])
        stage: list = [None] * len(keys)
        for at, values in zip(by_worker.values(), got, strict=True):
            for i, value in zip(at, values, strict=True):
                stage[i] = laid_out(value)
        results.append(stage)
    return results


def run_recorded(client, recorder: Recorder, where: list[str], returned: list) -> list:
    """Run the recorded stages on the workers ``where`` (one address per block,
    :func:`block_workers`), one direct call per stage and worker; the results that the
    placeholders ``returned`` (of the recorded ``map`` calls) stand for, in their order
    (as ``client.gather`` of the futures gives).

    Raises
    ------
    WorkerUnreachable
        A worker was not reached within :data:`CONNECT_TIMEOUT`.
    DirectCallUnavailable
        Anything else that failed: an evaluator no longer where it was, a stage that
        raised (its error's text in the message), a broken connection.
    """
    if not recorder.stages:
        raise DirectCallUnavailable("nothing recorded")
    if any(not isinstance(p, _Pending) for p in returned):
        raise DirectCallUnavailable("a result not of a recorded stage")
    results = client.sync(_run_all, client, recorder, where)
    if isinstance(results, _Failed):
        raise (WorkerUnreachable if results.unreachable else DirectCallUnavailable)(results.reason)
    return [_resolved(p, results) for p in returned]
