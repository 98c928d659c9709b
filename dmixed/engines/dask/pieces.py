"""Graph pieces: the tasks that compute one partition of a collection, and nothing else.

A task that reads a run of partitions itself (a chain) needs, for every partition, the
part of the collection's graph that computes that partition alone: its *piece*
(:func:`partition_pieces`), run where the chain runs with the synchronous scheduler
(:func:`compute_piece`).  For a collection over persisted partitions, a piece starts
from its persisted partition (``leaf_key``), which the chain gets as a dependency.
"""

from __future__ import annotations

import threading

import pandas as pd
from dask.base import tokenize
from dask.core import get_dependencies
from dask.local import get_sync
from distributed import Future

from ...design.partitions import reader_error

#: Optimizing Dask expressions is not thread-safe on Python 3.11:
#: ``functools.cached_property`` holds one lock per property for all instances, and two
#: threads optimizing at once were seen to deadlock.  The driver optimizes a collection
#: under this lock.
EXPR_LOCK = threading.Lock()

Piece = tuple[dict, object, object]  # (graph, out_key, leaf_key or None)


class Pieces:
    """The partitions of one chain as ``(graph, out_key, leaf_key)`` per partition: the
    tasks that compute that partition alone (see :func:`partition_pieces`), and the key
    of the persisted partition they start from (``None`` when they read from storage).

    Opaque to Dask on purpose: inside a list or tuple, their tasks would be taken for
    tasks of the data pass's graph, with dependencies that are not in it.
    """

    __slots__ = ("items",)

    def __init__(self, items: list[Piece]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __dask_tokenize__(self):
        return ("dmixed-pieces", tokenize([(out, leaf) for _, out, leaf in self.items]))


def compute_piece(graph: dict, out_key, frame=None, leaf_key=None) -> pd.DataFrame:
    """One partition from its piece, here, with the synchronous scheduler (``frame`` in
    place of ``leaf_key`` for a piece over a persisted partition)."""
    if leaf_key is not None:
        graph = {**graph, leaf_key: frame}
    try:
        return get_sync(graph, out_key)
    except (KeyError, ValueError) as exc:  # a file unlike the first (not a DataError)
        number = out_key[-1] if isinstance(out_key, tuple) else None
        err = reader_error(exc, number)
        if err is None:
            raise
        raise err from None


def partition_pieces(ddf, leaf_keys: list) -> list[Piece] | None:
    """Per partition i, ``(graph, out_key, leaf_key)``: the tasks that compute the
    collection's partition i alone.

    With ``leaf_keys`` (the keys of a persisted collection's partitions), every
    partition must start from exactly one of them, ``leaf_key``, which is left out of
    ``graph`` (the persisted frame is passed in); without, the tasks read from storage
    and ``leaf_key`` is ``None``.  One optimization and one walk over the whole graph:
    optimizing or culling per partition costs time quadratic in the number of
    partitions (a Parquet reader's expression carries every file).  ``None`` when a
    partition does not start from exactly one leaf.
    """
    with EXPR_LOCK:
        opt = ddf.optimize()
        graph = dict(opt.__dask_graph__())
        out_keys = list(opt.__dask_keys__())
    leaves = set(leaf_keys)
    pieces = []
    for out_key in out_keys:
        piece = _cull(graph, out_key, leaves)
        if piece is None:
            return None
        pieces.append(piece)
    return pieces


def _cull(graph: dict, out_key, leaves: set) -> Piece | None:
    """The piece of ``out_key`` in ``graph`` (see :func:`partition_pieces`)."""
    sub: dict = {}
    found = []
    todo = [out_key]
    while todo:
        key = todo.pop()
        if key in sub:
            continue
        if key in leaves:
            found.append(key)
            sub[key] = None
            continue
        if key not in graph or isinstance(graph[key], Future):
            return None  # data held elsewhere (other futures): not one partition's
        sub[key] = graph[key]
        todo.extend(get_dependencies(graph, key))
    if not leaves:
        return sub, out_key, None
    if len(set(found)) != 1:
        return None
    (leaf_key,) = set(found)
    del sub[leaf_key]  # the persisted frame comes in as a dependency
    return sub, out_key, leaf_key
