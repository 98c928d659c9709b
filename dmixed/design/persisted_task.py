"""A lazy result's value task that refuses, when Dask builds its graph, persisted data
that are gone.

A lazy result built from a persisted collection (:attr:`fittedvalues` of a Dask fit, a
prediction) holds the collection's futures.  Computed after the client that persisted
them closed, Dask's local scheduler finds their keys in no graph and raises its own
``ValueError: Missing dependency``, before any task runs: no task of dmixed's can word
it.  But Dask builds the graph on this process first, asking each of its tasks for its
part (its public ``dask`` graph), so the value task that every partition of such a result
depends on (the predictor) checks the futures there
(:func:`~dmixed.design.partitions.check_persisted`) and raises dmixed's error naming
the cause.  Imported only where Dask is (dmixed imports without Dask).
"""

from __future__ import annotations

import dask
from dask.delayed import Delayed

from .partitions import check_persisted, persisted_futures

__all__ = ["checked_task"]


class _CheckedDelayed(Delayed):
    """The task ``plain`` (a :class:`~dask.delayed.Delayed` of one key) whose graph,
    built on the calling process to compute a collection depending on it (Dask asks it
    for its public ``dask`` graph), first checks the persisted futures of ``source``.
    Built with Dask's public API only (``Delayed(key, graph)``, ``key``, ``dask``).
    Pickled (distributed ships the expression to its scheduler, which builds the graph
    there) it is a plain :class:`~dask.delayed.Delayed` of the same key and graph: the
    scheduler holds the futures' own state, and reports them itself."""

    __slots__ = ("_source",)

    def __init__(self, plain: Delayed, source) -> None:
        super().__init__(plain.key, plain.dask)
        self._source = source

    @property
    def dask(self):
        check_persisted(self._source)
        return super().dask

    def __reduce__(self):
        return (Delayed, (self.key, super().dask))


def checked_task(value, ddf):
    """``dask.delayed(value, pure=True, traverse=False)`` (one task of the value, same
    key) that, where ``ddf`` is persisted, checks when a graph depending on it is built
    that the persisted data of ``ddf`` are not gone (else the plain task).

    Parameters
    ----------
    value : object
        The task's value (a predictor, shipped to the workers once).
    ddf : dask.dataframe.DataFrame
        The collection the result depending on the task reads.

    Returns
    -------
    dask.delayed.Delayed

    Raises
    ------
    DataError
        When a graph depending on the task is built (a compute), the persisted data of
        ``ddf`` are gone (:func:`~dmixed.design.partitions.check_persisted`).
    """
    plain = dask.delayed(value, pure=True, traverse=False)
    if not persisted_futures(ddf):
        return plain
    return _CheckedDelayed(plain, ddf)
