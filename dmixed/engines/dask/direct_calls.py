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
connection, an error inside a stage) raises, and the caller runs the round trip as
tasks instead, which recomputes lost blocks and raises the task's own error.
"""

from __future__ import annotations

import asyncio

from distributed.protocol.pickle import dumps

from .progress import laid_out

__all__ = [
    "DirectCallUnavailable",
    "Recorder",
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


class DirectCallUnavailable(Exception):
    """The round trip cannot be run as direct calls (run it as tasks)."""


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
    inside a keyword list.  Anything else raises :class:`DirectCallUnavailable`.

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
        for values in (*iterables[1:], *kwargs.values()):
            _check_plain(values)
        n = len(self.stages)
        self.stages.append((func, iterables[1:], kwargs))
        return [_Pending(n, i) for i in range(len(self.blocks))]

    def __getattr__(self, name: str):
        raise DirectCallUnavailable(f"client.{name} in a recorded round trip")


def _check_plain(value) -> None:
    from distributed import Future

    items = value if isinstance(value, (list, tuple)) else (value,)
    if any(isinstance(v, Future) for v in items):
        raise DirectCallUnavailable("a future as an argument")


def _resolved(value, results: list):
    if isinstance(value, _Pending):
        return results[value.stage][value.index]
    if isinstance(value, list) and any(isinstance(v, _Pending) for v in value):
        return [_resolved(v, results) for v in value]
    return value


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
    from distributed.core import clean_exception

    response = await client.rpc(address).run(function=_RUN_STAGE, args=dumps(payload), wait=True)
    if response.get("status") != "OK":
        _, exc, _ = clean_exception(**response)
        raise DirectCallUnavailable(f"a stage failed on {address}") from exc
    if response["result"] is None:
        raise DirectCallUnavailable(f"an evaluator no longer on {address}")
    return response["result"]


async def _run_all(client, recorder: Recorder, where: list[str]) -> list:
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
    DirectCallUnavailable
        An evaluator is no longer where it was, or a stage raised (its error as the
        cause).
    OSError
        A connection to a worker failed.
    """
    if not recorder.stages:
        raise DirectCallUnavailable("nothing recorded")
    if any(not isinstance(p, _Pending) for p in returned):
        raise DirectCallUnavailable("a result not of a recorded stage")
    results = client.sync(_run_all, client, recorder, where)
    return [_resolved(p, results) for p in returned]
