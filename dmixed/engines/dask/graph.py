"""The data pass's graph, built on dask-expr: partials → sums by group key → blocks.

How the partials are computed depends on the collection (:func:`block_graph`):

- partition-wise over storage (Parquet, CSV, ``from_map``; projections, filters,
  assignments after): a few tasks each read a run of consecutive partitions themselves
  (:func:`chain_recipes`, :func:`~dmixed.engines.dask.partials.chain_partials`);
- partition-wise over one collection persisted on the cluster: per worker, chains over
  the partitions that worker holds (:func:`resident_chains`);
- anything else (data in the graph, a shuffle or a reduction inside): one task per
  partition (:func:`~dmixed.engines.dask.partials.partition_partials`).

The Dask config key ``"dmixed.data_pass"`` (:func:`data_pass_mode`) forces chains
(``"chains"``, an error where they do not apply) or one task per partition (``"tree"``).
"""

from __future__ import annotations

import operator
import uuid

import dask
import numpy as np
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph, MaterializedLayer
from dask.task_spec import GraphNode, List, Task, TaskRef
from dask.utils import funcname

from ...design.partitions import select_columns
from ...errors import SpecError
from ...kernels.pages import paged
from ...stats.layout import n_tril
from ...stats.packed import PackedLayout
from .blocks import combined_block
from .checks import rows_checked
from .combine import (
    checked_target,
    combine_converted,
    combine_exact,
    sum_converted,
    sum_vectors,
    target_map,
)
from .parquet_direct import parquet_reads
from .partials import (
    build_slot_plan,
    chain_partials,
    chain_summary,
    chain_vc_pairs,
    chained_slot_plan,
    distinct_pairs,
    partition_partials,
    partition_vc_pairs,
    resident_chain_partials,
    vc_ncols,
)
from .pieces import Pieces, partition_pieces
from .progress import wait_for
from .ragged import RaggedPacked, combine_tables_converted, combine_tables_node, to_ragged_block
from .routing import exchange_mode, exchange_summary, reduce_routed

#: Leaf expressions that hold their data in the graph (in-memory pandas/numpy data, or
#: persisted futures): their partitions are not read, and a task cannot compute one.
IN_MEMORY_LEAVES = frozenset(
    {"FromPandas", "FromPandasDivisions", "FromGraph", "FromArray", "FromDelayed", "FromDict"}
)

_CHAINS_REFUSED = (
    "dmixed.data_pass='chains' needs a collection read partition by partition "
    "from storage, or persisted on the cluster (no shuffle, not built from "
    "in-memory data)"
)


def data_pass_mode() -> str:
    """The Dask config key ``"dmixed.data_pass"``: ``"auto"`` (default), ``"chains"`` or
    ``"tree"``.

    Raises
    ------
    ValueError
        Any other value.
    """
    mode = dask.config.get("dmixed.data_pass", "auto")
    if mode not in ("auto", "chains", "tree"):
        raise SpecError(
            f"dask config 'dmixed.data_pass' must be 'auto', 'chains' or 'tree', got {mode!r}"
        )
    return mode


def project_columns(ddf, spec):
    """Only the columns the spec reads (parquet then reads only those), each partition
    checked where Dask does not guarantee its columns
    (:func:`~dmixed.design.partitions.select_columns`)."""
    cols = list(getattr(spec, "columns_used", None) or [])
    if spec.group_name not in cols:
        cols.append(spec.group_name)
    return select_columns(ddf, cols, spec.group_name)


# ---------------------------------------------------------------------------
# Which collections can be read in chains
# ---------------------------------------------------------------------------


def partitionwise_leaves(ddf) -> list | None:
    """The leaves holding their data (:data:`IN_MEMORY_LEAVES`) of a collection whose
    every other expression is partition-wise (``Blockwise``: reads, projections,
    filters, assignments, ``map_partitions``); ``None`` when some step is not (a
    shuffle, a reduction, …)."""
    try:
        from dask.dataframe.dask_expr._expr import Blockwise
    except ImportError:  # pragma: no cover - legacy dask.dataframe
        return None
    expr = getattr(ddf, "expr", None)
    if expr is None:
        return None
    leaves = []
    for node in expr.walk():
        if type(node).__name__ in IN_MEMORY_LEAVES:
            leaves.append(node)
        elif not isinstance(node, Blockwise):
            return None
    return leaves


def chainable(ddf) -> bool:
    """Can tasks read this collection's partitions themselves (see :func:`chain_recipes`)?

    Yes when every expression is partition-wise and the leaves read from storage
    (Parquet, CSV, ``from_map``, …).  Anything with a shuffle or a reduction inside, or
    data already in memory, is read by Dask's own tasks instead (persisted data: see
    :func:`resident_chains`).
    """
    return partitionwise_leaves(ddf) == []


def chain_recipes(
    ddf, n_chains: int, mode: str | None = None, allow_fallback: bool = False
) -> list[Pieces] | None:
    """Consecutive partitions in ``n_chains`` balanced runs; None when the collection is
    not :func:`chainable`.

    Raises
    ------
    ValueError
        With ``dmixed.data_pass='chains'``, a collection that is not chainable, unless
        ``allow_fallback`` (another kind of chain may still apply).
    """
    mode = data_pass_mode() if mode is None else mode
    if mode == "tree" or n_chains < 1 or ddf.npartitions <= 1:
        return None
    if not chainable(ddf):
        if mode == "chains" and not allow_fallback:
            raise SpecError(_CHAINS_REFUSED)
        return None
    pieces = partition_pieces(ddf, [])
    if pieces is None:  # pragma: no cover - a partition-wise graph always splits
        return None
    # the runs split the optimized graph's partitions, which may be fewer than the
    # collection's: Dask's optimizer may read several small files in one partition
    # after a column projection (split by ``ddf.npartitions``, a run came out empty)
    n_chains = min(n_chains, len(pieces))
    bounds = np.linspace(0, len(pieces), n_chains + 1).round().astype(int)
    return [Pieces(pieces[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _persisted_futures(ddf, client) -> tuple[list, list] | None:
    """``(keys, futures)`` of the one persisted collection (``FromGraph`` of futures of
    ``client``) that ``ddf`` is partition-wise over, one per partition; else None."""
    try:
        from dask.dataframe.dask_expr.io.io import FromGraph
        from distributed import Future
    except ImportError:  # pragma: no cover - legacy dask.dataframe
        return None
    leaves = partitionwise_leaves(ddf)
    if not leaves or len(leaves) != 1 or not isinstance(leaves[0], FromGraph):
        return None
    if leaves[0].npartitions != ddf.npartitions:
        return None
    keys = list(leaves[0].operand("keys"))
    layer = dict(leaves[0].operand("layer"))
    futures = [layer.get(k) for k in keys]
    if not all(isinstance(f, Future) and f.client is client for f in futures):
        return None
    return keys, futures


def resident_chains(ddf, client, mode: str) -> list[tuple[Pieces, list]] | None:
    """Chains of persisted partitions, grouped by the worker that holds them.

    For a collection that is partition-wise (``Blockwise``) over one persisted
    collection (``FromGraph`` of futures all in the cluster's memory): per worker, one
    chain per worker thread over the partitions that worker holds, as
    ``(pieces, futures)`` for :func:`~dmixed.engines.dask.partials.resident_chain_partials`.
    The futures are the chain task's dependencies, so the scheduler runs it where they
    are and no raw row moves.  ``None`` otherwise (then one task per partition).
    """
    if client is None or mode == "tree" or ddf.npartitions <= 1:
        return None
    persisted = _persisted_futures(ddf, client)
    if persisted is None:
        return None
    keys, futures = persisted
    # a fresh persist() may still be computing: its partitions are needed now anyway,
    # and then we know where they are (a bounded wait, as every wait of the fit)
    wait_for(client, futures, what="the persisted data")
    where = client.who_has(futures)
    if not all(where.get(k) for k in keys):
        return None  # not all in memory (an error, or lost since): one task per partition
    pieces = partition_pieces(ddf, keys)
    if pieces is None:
        return None
    future_of = dict(zip(keys, futures, strict=True))
    nthreads = client.nthreads()
    by_worker: dict[str, list[int]] = {}  # partitions (in order) by the worker holding them
    for i, (_, _, leaf_key) in enumerate(pieces):
        by_worker.setdefault(sorted(where[leaf_key])[0], []).append(i)
    chains = []
    for worker, idx in sorted(by_worker.items()):
        n = max(1, min(int(nthreads.get(worker, 1)), len(idx)))
        for run in np.array_split(np.asarray(idx), n):
            chain = [pieces[i] for i in run]
            chains.append((Pieces(chain), [future_of[leaf] for _, _, leaf in chain]))
    return chains


# ---------------------------------------------------------------------------
# The graphs
# ---------------------------------------------------------------------------


def tree(func, items: list, fan_in: int = 8):
    """Tree reduction of delayed ``items`` with ``func(*children)`` at every node."""
    node = dask.delayed(paged(func), pure=True)
    while len(items) > 1:
        items = [node(*items[i : i + fan_in]) for i in range(0, len(items), fan_in)]
    return items[0]


def slot_map_graph(ddf, spec, key_dtype, n_chains: int = 0):
    """Delayed ``(SlotMap, overlap)`` from one pass over the data (the VC prepass,
    :func:`~dmixed.engines.dask.partials.build_slot_plan`).

    Where the collection is read in chains (:func:`chain_recipes`), ``n_chains`` tasks
    each read a run of partitions themselves
    (:func:`~dmixed.engines.dask.partials.chain_vc_pairs`), as the data pass's chains
    do: not one task per partition, whose scheduling costs more than reading a small
    file; else one task per partition and a tree of their distinct pairs."""
    recipes = chain_recipes(ddf, n_chains, allow_fallback=True)
    if recipes is not None:
        chains = [
            dask.delayed(paged(chain_vc_pairs), pure=True)(rec, spec, key_dtype) for rec in recipes
        ]
        return dask.delayed(paged(chained_slot_plan), nout=2, pure=True)(vc_ncols(spec), *chains)
    # one task per partition of the collection's own optimized graph, numbered as the
    # driver numbers them to find a partition's file (design.origin.partition_files): a
    # map_partitions graph is optimized on its own, where Dask may read several files
    # in one partition, so its partition numbers are not the collection's
    g = _Graph()
    found = [
        g.call(partition_vc_pairs, part, spec, key_dtype, i)
        for i, part in enumerate(ddf.to_delayed(optimize_graph=True))
    ]
    # a tree reduction of the distinct pairs, then numbering in one task
    while len(found) > 1:
        found = [g.call(distinct_pairs, *found[i : i + 8]) for i in range(0, len(found), 8)]
    plan = g.call(build_slot_plan, found[0], vc_ncols(spec))
    return tuple(g.blocks(g.items(plan, 2)))


def scan_chain_graph(ddf, kinds, plan, to_scan: list, n_chains: int) -> list[Delayed] | None:
    """The level scan's tasks (:func:`~dmixed.design.scan.dask_scan`) where the collection
    is read in chains (:func:`chain_recipes`): ``n_chains`` tasks each read a run of
    partitions themselves and merge their summaries
    (:func:`~dmixed.engines.dask.partials.chain_summary`), as the data pass's chains
    do; None where it is not (then one task per partition)."""
    recipes = chain_recipes(ddf, n_chains, allow_fallback=True)
    if recipes is None:
        return None
    summary = dask.delayed(paged(chain_summary), pure=True)
    return [summary(rec, kinds, plan, to_scan) for rec in recipes]


class _Graph:
    """A graph of the data pass (or of its variance-component prepass), built task by
    task into one low-level graph and handed to Dask at once (:meth:`blocks`).

    ``dask.delayed`` would, at every call, tokenize its arguments (the partitions'
    recipes among them) and merge the graphs of the delayed values it is given: for the
    few dozen tasks of a data pass that cost the driver more than the tasks' own
    bookkeeping, before any chain starts.  The keys are ``(name-token, i)`` with the
    function's name (the task stream's kinds) and one random token per graph.

    A task may be placed on a worker (``place`` of :meth:`call`): the graph's layer
    is annotated with each placed task's worker, preferred, not required
    (``allow_other_workers``: a task whose worker was lost runs elsewhere); the
    annotations are functions of the key, whose None (the other tasks) Dask's
    scheduler skips.
    """

    def __init__(self) -> None:
        self.token = uuid.uuid4().hex
        self.tasks: dict = {}
        self.inputs: dict = {}  # delayed values the tasks take (a slot map, partitions)
        self.places: dict = {}  # key → [worker address] of the placed tasks
        self.urgent: dict = {}  # key → priority of the tasks run (and fetched) first

    def call(
        self,
        func,
        *args,
        name: str | None = None,
        place: str | None = None,
        urgent: int = 0,
    ) -> TaskRef:
        """A task ``func(*args)``; ``args`` may hold :class:`TaskRef` of this graph's
        tasks, delayed values and futures, also inside tuples, lists and dicts.
        ``place``: the address of the worker it runs on (see the class), or None
        (where Dask's scheduler chooses).  ``urgent``: a priority above 0 (Dask's
        ``priority`` annotation, :data:`URGENT_PRIORITY` or :data:`LEAVING_PRIORITY`):
        run before the graph's ready tasks of lower priority on its worker, and its
        result fetched before theirs."""
        key = (f"{name or funcname(func)}-{self.token}", len(self.tasks))
        # a getitem allocates nothing; every other function runs as the fit's pages
        run = func if func is operator.getitem else paged(func)
        self.tasks[key] = Task(key, run, *[self._node(a) for a in args])
        if place is not None:
            self.places[key] = [place]
        if urgent:
            self.urgent[key] = urgent
        return TaskRef(key)

    def item(self, ref: TaskRef, i: int, place: str | None = None) -> TaskRef:
        """The task of ``ref``'s result's item ``i`` (placed by ``place``)."""
        return self.call(operator.getitem, ref, i, place=place)

    def items(self, ref: TaskRef, n: int, place: str | None = None) -> list[TaskRef]:
        """The tasks of ``ref``'s result's ``n`` items (placed by ``place``)."""
        return [self.item(ref, i, place) for i in range(n)]

    def partials(self, ref: TaskRef, place: str | None = None) -> _Partials:
        """The items of a partials task's result (:data:`_PARTIAL_ITEMS`), each made a
        task when first asked for (:class:`_Partials`); ``place``: the partials task's
        worker, or None."""
        return _Partials(self, ref, place)

    def _node(self, obj):
        if isinstance(obj, Delayed):
            self.inputs[obj.key] = obj
            return TaskRef(obj.key)
        kind = type(obj)
        if kind not in (tuple, list, dict):
            return obj  # a literal, a task's reference, or a future (Dask's own)
        values = list(obj.values()) if kind is dict else list(obj)
        nodes = [self._node(v) for v in values]
        if not any(isinstance(n, (TaskRef, GraphNode)) for n in nodes):
            return obj
        if kind is list:
            return List(*nodes)
        if kind is tuple:
            return Task(None, _pack, *nodes)
        return Task(None, dict, List(*[List(k, n) for k, n in zip(obj, nodes, strict=True)]))

    def blocks(self, refs: list) -> list:
        """Delayed values of ``refs``, sharing this one graph."""
        layer = f"dmixed-data-pass-{self.token}"
        tasks = self.tasks
        annotations: dict = {}
        if self.places:
            loose = dict.fromkeys(self.places, True)
            annotations = {"workers": self.places.get, "allow_other_workers": loose.get}
        if self.urgent:
            annotations["priority"] = self.urgent.get
        if annotations:
            tasks = MaterializedLayer(self.tasks, annotations=annotations)
        graph = HighLevelGraph.from_collections(
            layer, tasks, dependencies=list(self.inputs.values())
        )
        return [Delayed(ref.key, graph, layer=layer) for ref in refs]


#: Dask's ``priority`` annotation of the tasks a graph marks urgent (:meth:`_Graph.call`):
#: a worker runs, and fetches the results of, tasks of higher priority first.
URGENT_PRIORITY = 10

#: The priority of a chain's share of a bucket on another worker (:func:`_moved_share`):
#: above the bucket owner's reduction on the same worker, so that the share leaves
#: before that worker spends its thread on its own bucket's routed rows.
LEAVING_PRIORITY = 20


def _pack(*items) -> tuple:
    return items


class _Partials:
    """A partials task's items (:data:`_PARTIAL_ITEMS`): ``partials[i]`` the task of
    item ``i`` (made once, when first asked for), ``partials.part(i, b)`` that of item
    ``b`` of item ``i`` (a bucket's part).

    Where the partials task is placed (``place``), its items' tasks are placed with it
    and a bucket's part is taken in one task, where ``partials[i][b]`` takes two: each
    task between a chain's end and its bucket's combine is one more turn of the
    scheduler on the way.  Unplaced, the part is the item of the item: a task placed
    nowhere whose group of small tasks has none of its own among its dependencies is
    taken by Dask's scheduler for a root task and sent to any worker, its input after
    it (the whole result of a chain), where a getitem of a getitem runs where its
    input is."""

    __slots__ = ("_g", "_items", "place", "ref")

    def __init__(self, g: _Graph, ref: TaskRef, place: str | None = None) -> None:
        self._g = g
        self.ref = ref
        self.place = place
        self._items: dict[int, TaskRef] = {}

    def __getitem__(self, i: int) -> TaskRef:
        if i not in self._items:
            self._items[i] = self._g.item(self.ref, i, self.place)
        return self._items[i]

    def part(self, i: int, b: int) -> TaskRef:
        """The task of item ``b`` of item ``i``."""
        if self.place is None:
            return self._g.item(self[i], b)
        return self._g.call(_item_of_item, self.ref, i, b, name="getitem", place=self.place)


def _item_of_item(result, i: int, b: int):
    return result[i][b]


#: Items of a data pass task's result (:func:`~dmixed.engines.dask.partials.chain_partials`):
#: parts by bucket, global sums, column map, routed rows by bucket, exchange record.
_PARTIAL_ITEMS = 5


def _partial_tasks(
    g: _Graph,
    ddf,
    spec,
    slot_arg,
    packed,
    key_dtype,
    n_blocks,
    n_chains,
    client,
    std,
    workers,
    shifts: bool = False,
) -> tuple[list, list | None]:
    """``(items, where)``: the items of every partials task (:data:`_PARTIAL_ITEMS`),
    chains where the collection allows them, else one task per partition (see the
    module); ``where[i]`` the worker task ``i`` is placed on (chains read from storage,
    given ``workers``), else None (where the scheduler chooses)."""
    mode = data_pass_mode()
    exchange = exchange_mode()  # read here: the workers do not see the driver's config
    # what every chain's task takes after its rows (chain_partials, resident_chain_partials)
    shared = (spec, slot_arg, packed, n_blocks, key_dtype, std, exchange)
    recipes = chain_recipes(ddf, n_chains, mode, allow_fallback=client is not None)
    if recipes is not None:
        where = None if not workers else [workers[i % len(workers)] for i in range(len(recipes))]
        tasks = [
            g.call(
                chain_partials,
                rec,
                *shared,
                parquet_reads(rec, spec),
                shifts,
                place=None if where is None else where[i],
            )
            for i, rec in enumerate(recipes)
        ]
        return [
            g.partials(t, None if where is None else where[i]) for i, t in enumerate(tasks)
        ], where
    resident = resident_chains(ddf, client, mode)
    if resident is not None:
        tasks = [
            g.call(resident_chain_partials, pieces, *shared, shifts, *futures)
            for pieces, futures in resident
        ]
        return [g.partials(t) for t in tasks], None
    if mode == "chains":
        raise SpecError(_CHAINS_REFUSED)
    tasks = [
        g.call(partition_partials, p, spec, slot_arg, packed, n_blocks, std, i, key_dtype)
        for i, p in enumerate(ddf.to_delayed(optimize_graph=True))
    ]
    return [g.partials(t) for t in tasks], None


def _bucket_parts(g: _Graph, tasks: list, b: int, where: list | None, worker) -> list:
    """Bucket ``b``'s part of every partials task.  Where the tasks' workers are known
    (``where``) and the bucket's (``worker``), a part made on another worker is taken
    there by a task of its own (:func:`_moved`), placed on the bucket's worker: its
    transfer starts as soon as its task ends, while the other tasks still run, and the
    bucket's combine then finds it there."""
    parts = [t.part(0, b) for t in tasks]
    if where is None or worker is None:
        return parts
    return [
        part if w == worker else g.call(_moved, part, name="moved_part", place=worker)
        for part, w in zip(parts, where, strict=True)
    ]


def _moved(part):
    """``part`` as it is, where this task runs (see :func:`_bucket_parts`)."""
    return part


def block_graph(
    ddf,
    spec,
    slot_arg,
    packed: PackedLayout,
    key_dtype,
    n_blocks: int,
    n_chains: int,
    client=None,
    std=None,
    vc_widths: tuple = (),
    workers: list | None = None,
    shifts: bool = False,
    partial: bool = False,
) -> list:
    """Delayed blocks: partial statistics → sums by group key → blocks.

    Partial statistics come from ``n_chains`` tasks that each read a run of consecutive
    partitions themselves (when the collection allows it), else from one task per
    partition.  Each partial is split by a hash of the group key into ``n_blocks``
    buckets; each bucket is added up by a tree of numpy reductions (no shuffle of raw
    rows, and no pandas groupby: the partials of data whose groups are spread over all
    partitions can outweigh the data, so their combine must be cheap).  A task may
    route its rows to the bucket instead of its partial, whichever is fewer bytes
    (:mod:`~dmixed.engines.dask.routing`): the bucket's owner reduces them and its
    partial joins the tree.  Every node is an
    ordinary task with lineage, so a block lost with a worker is recomputed like any
    other task.  ``slot_arg`` is the slot map (or a delayed of it, or None); ``std`` the
    columns' map every partition's rows are accumulated in.  The blocks share one graph
    (:class:`_Graph`).

    ``workers``: a worker's address per thread of the cluster (the roster's,
    :func:`~dmixed.engines.dask.progress.thread_workers`), or None.  Given, chain ``i``
    and bucket ``i``'s combine are placed on ``workers[i]`` (modulo their number), and a
    chain's part of a bucket on another worker is moved there as soon as the chain ends
    (:func:`_bucket_parts`): not all of them after the last chain.  Where every chain
    runs on a bucket's worker, the graph from the chains to the blocks is
    :func:`_placed_blocks`'s: the same sums in fewer tasks.

    ``shifts``: the chains' compiled passes (and their routed rows' owners) keep every
    group's random slopes about shifts of their own, so that lossy groups fit
    (:class:`~dmixed.kernels.term_table.TermTable`'s ``keep_shifts``); without, such a
    group is refused where the blocks find it, and the fit reads the data again with
    them (:func:`~dmixed.engines.dask.data_pass.statistics_from_dask`).

    ``partial``: the rows are a part of the data whose statistics are added to others'
    (:func:`~dmixed.engines.dask.checks.rows_checked` does not count them).
    """
    g = _Graph()
    tasks, where = _partial_tasks(
        g, ddf, spec, slot_arg, packed, key_dtype, n_blocks, n_chains, client, std, workers, shifts
    )
    # where each bucket is combined: known only where the chains' workers are
    homes = [None if where is None else workers[b % len(workers)] for b in range(n_blocks)]
    if isinstance(packed, RaggedPacked):
        return g.blocks(
            _ragged_blocks(g, tasks, spec, slot_arg, packed, n_blocks, std, where, homes, partial)
        )
    widths = tuple(int(w) for w in vc_widths)
    if where is not None and set(where) <= set(homes):
        return g.blocks(
            _placed_blocks(
                g,
                tasks,
                spec,
                packed,
                key_dtype,
                std,
                (widths, shifts),
                where,
                homes,
                client,
                partial,
            )
        )
    # every task chose its own column map from its first rows (no read ahead of the
    # pass); the first tree level converts them all to the one chosen from most rows
    maps = [t[2] for t in tasks]
    target = _target_map(g, spec, tasks, std, partial)
    # the variance components' slots (their columns take the component's scale)
    conv = (target, packed, widths)
    # per bucket, the owner of the rows the tasks routed there (routing.py), on the
    # bucket's worker where that is known (its combine takes the owner's part there)
    owners = [
        g.items(
            g.call(
                reduce_routed,
                packed,
                key_dtype,
                spec.group_name,
                widths,
                shifts,
                *[t.part(3, b) for t in tasks],
                place=homes[b],
            ),
            3,
            homes[b],
        )
        for b in range(n_blocks)
    ]
    globs = [t[1] for t in tasks] + [o[1] for o in owners]
    global_maps = maps + [o[2] for o in owners]
    global_sums = _converted_tree(g, sum_converted, _sum_node, globs, global_maps, conv)
    exchange = g.call(exchange_summary, *[t[4] for t in tasks])
    # on a cluster, blocks without variance components hold their sums as the
    # evaluators take them (Block.stats), made by the task of the tree's root
    held = client is not None and not widths
    blocks = []
    for b in range(n_blocks):
        bucket = _bucket_parts(g, tasks, b, where, homes[b]) + [owners[b][0]]
        block_args = {
            "packed": packed,
            "global_sums": global_sums if b == 0 else None,
            "standardization": target,
            "exchange": exchange if b == 0 else None,
            "held": held,
        }
        blocks.append(
            _converted_tree(
                g,
                combine_converted,
                combine_exact,
                bucket,
                maps + [owners[b][2]],
                conv,
                root=(combined_block, block_args),
                early=len(tasks),
                place=homes[b],
            )
        )
    return g.blocks(blocks)


def _placed_blocks(
    g: _Graph,
    tasks: list,
    spec,
    packed,
    key_dtype,
    std,
    routing: tuple,
    where,
    homes,
    client,
    partial: bool,
) -> list:
    """:func:`block_graph`'s blocks where every partials task runs on the worker of a
    bucket (``where[i]`` among ``homes``): from a chain's end to its
    bucket's block, as few tasks and turns of the scheduler as there can be.

    - A chain's share of a bucket on another worker (its part, its routed rows, its
      global sums, map and exchange record: :func:`_outbound`) is taken by one task
      run first on the chain's worker and moved at once to the bucket's
      (:func:`_moved_share`): one transfer a chain and bucket, not queued behind the
      small items the bucket's block needs from the chain.
    - The rows routed to the bucket are reduced by a task of their own
      (:func:`bucket_owner`; the global sums take its sums too).
    - The bucket's block (:func:`bucket_block`) takes those shares, and the whole
      results of the chains on its own worker, and makes the target map, the
      combine and the block in one task.
    - Block 0's task also makes the global sums and the exchange summary, from the
      shares it holds and the other buckets' owners' sums (small, made as soon as
      their buckets' shares arrive): no tree of tasks on the way.

    The sums are those of :func:`block_graph`'s other graph bit for bit: the same
    additions in the same order.  ``routing``: ``(vc widths, shifts)`` of the rows'
    owners (:func:`bucket_owner`)."""
    widths, shifts = routing
    p, q = len(spec.exog_names), len(spec.exog_re_names)
    k_cov = n_tril(q) + len(spec.vc_names)
    if spec.weights_name is not None:
        target_args: tuple = (checked_target, p, q, spec.weights_name, std)
    elif std is not None:
        target_args = (None, std)
    else:
        target_args = (target_map, p, q)
    held = client is not None and not widths
    sources, local, owners = [], [], []
    for b, home in enumerate(homes):
        shares = [
            (t.ref, t.ref) if w == home else _moved_share(g, t.ref, b, w, home)
            for t, w in zip(tasks, where, strict=True)
        ]
        sources.append([moved for moved, _ in shares])
        local.append(tuple(w == home for w in where))
        # the owner takes the shares as made (not their moving tasks): it runs as soon
        # as they arrive, with the moving tasks, and the block one turn after both
        owners.append(
            g.call(
                bucket_owner,
                b,
                local[b],
                packed,
                key_dtype,
                spec.group_name,
                widths,
                shifts,
                *[made for _, made in shares],
                place=home,
                urgent=URGENT_PRIORITY,
            )
        )
    # block 0 also takes the other buckets' owners' sums and maps (their routed rows
    # stay where they are) and makes the global sums and the exchange summary
    others = [g.call(_owner_sums, o, place=homes[b]) for b, o in enumerate(owners) if b]
    blocks = [
        g.call(
            bucket_block,
            b,
            local[b],
            (p, k_cov, partial, target_args),
            (packed, widths, held),
            (owners[0], *others) if b == 0 else (owners[b],),
            *sources[b],
            name="combined_block",
            place=home,
        )
        for b, home in enumerate(homes)
    ]
    return blocks


def _moved_share(
    g: _Graph, chain: TaskRef, b: int, where: str, home: str
) -> tuple[TaskRef, TaskRef]:
    """``(moved, made)``: the task of a chain's share of bucket ``b`` (``made``,
    :func:`_outbound`, run first on the chain's worker ``where``) and the task that
    moves it to the bucket's worker ``home`` taking it alone (``moved``, :func:`_moved`,
    fetched first there): its transfer starts as soon as the share is made, while the
    chain of ``home`` still runs (a task of ``home`` that also took that chain's result
    would only be given to ``home`` after it)."""
    made = g.call(_outbound, chain, b, name="outbound_part", place=where, urgent=LEAVING_PRIORITY)
    moved = g.call(_moved, made, name="moved_part", place=home, urgent=LEAVING_PRIORITY)
    return moved, made


def _owner_sums(owner) -> tuple:
    """The packed global sums and map of a bucket owner's result (:func:`bucket_owner`):
    what block 0 takes of another bucket's routed rows."""
    return owner[1], owner[2]


def _outbound(result, b: int) -> tuple:
    """What a partials task's ``result`` sends to bucket ``b``'s worker: its items
    (:data:`_PARTIAL_ITEMS`) with bucket ``b``'s part and routed rows in place of all
    buckets' (:func:`_placed_blocks`)."""
    return (result[0][b], result[1], result[2], result[3][b], result[4])


def _shares(b: int, local: tuple, sources: tuple) -> list[tuple]:
    """Bucket ``b``'s share of every partials task: :func:`_outbound` of the whole
    results on this worker (``local``), the others' as moved here."""
    return [_outbound(s, b) if here else s for here, s in zip(local, sources, strict=True)]


def bucket_owner(
    b: int, local: tuple, packed, key_dtype, column: str, widths: tuple, shifts: bool, *sources
):
    """:func:`~dmixed.engines.dask.routing.reduce_routed` of the rows every partials
    task routed to bucket ``b`` (``sources`` as :func:`bucket_block` takes them)."""
    routed = [share[3] for share in _shares(b, local, sources)]
    return reduce_routed(packed, key_dtype, column, widths, shifts, *routed)


def bucket_block(b: int, local: tuple, checks: tuple, layout: tuple, owners: tuple, *sources):
    """Bucket ``b``'s block from every partials task's share of it (``sources``: the
    whole results of the tasks on this worker, ``local``, and the others'
    :func:`_outbound` shares) and the rows routed to it (``owners[0]``,
    :func:`bucket_owner`): the target map
    (:func:`~dmixed.engines.dask.checks.rows_checked` of ``checks = (p, k_cov,
    partial, target_args)``, as :func:`_target_map`'s task makes it), and the tree of combines
    of :func:`_converted_tree` run here, its root :func:`combined_block`; ``layout =
    (packed, vc_widths, held)``.

    Block 0 also carries the global sums and the exchange summary: ``owners[1:]`` are
    the other buckets' owners' sums and maps (:func:`_owner_sums`), and the global
    sums those of :func:`block_graph`'s tree of
    :func:`~dmixed.engines.dask.combine.sum_converted`: every partials task's and then
    every owner's, converted to the target map, added in the same order by the same
    tree."""
    shares = _shares(b, local, sources)
    p, k_cov, partial, target_args = checks
    make, *args = target_args  # None: the map given (``args[0]``)
    globs = [s[1] for s in shares]
    reports = [s[4] for s in shares]
    maps = [s[2] for s in shares]
    target = rows_checked(p, k_cov, partial, globs, reports, make, *args, *(maps if make else ()))
    packed, widths, held = layout
    conv = (target, packed, widths)
    owner = owners[0]
    block_args = {
        "packed": packed,
        "global_sums": None,
        "standardization": target,
        "exchange": None,
        "held": held,
    }
    if b == 0:
        owned = [(owner[1], owner[2]), *owners[1:]]
        block_args["global_sums"] = _tree_sums(conv, [*zip(globs, maps, strict=True), *owned])
        block_args["exchange"] = exchange_summary(*reports)
    pairs = [(s[0], s[2]) for s in shares] + [(owner[0], owner[2])]
    level = [(combine_converted, pairs[i : i + 8]) for i in range(0, len(pairs), 8)]
    while len(level) > 1:
        done = [combine(*conv, *items) for combine, items in level]
        level = [(combine_exact, done[i : i + 8]) for i in range(0, len(done), 8)]
    combine, items = level[0]
    return combined_block(block_args, combine, *conv, *items)


def _tree_sums(conv: tuple, pairs: list):
    """:func:`_converted_tree`'s sums of packed global sums ``(sums, map)`` pairs, here:
    :func:`~dmixed.engines.dask.combine.sum_converted` of runs of 8, then sums of runs
    of 8 of those until one is left."""
    level = [sum_converted(*conv, *pairs[i : i + 8]) for i in range(0, len(pairs), 8)]
    while len(level) > 1:
        level = [_sum_node(*conv, *level[i : i + 8]) for i in range(0, len(level), 8)]
    return level[0]


def _target_map(g: _Graph, spec, tasks: list, std, partial: bool):
    """The task of the columns' map all partials are converted to: ``std``, else the one
    chosen from the most rows (:func:`~dmixed.engines.dask.combine.target_map`); with
    prior weights first judging their span over all partitions
    (:func:`~dmixed.engines.dask.combine.checked_target`).  Every leaf of the trees
    waits for it, so it first refuses too few rows for the model, counted from the
    partials ``tasks``' items (:func:`~dmixed.engines.dask.checks.rows_checked`): no
    leaf converts a partial of a model the rows cannot fit (``partial``: a part of the
    data, whose count is not checked)."""
    p, q = len(spec.exog_names), len(spec.exog_re_names)
    maps = [t[2] for t in tasks]
    k_cov = n_tril(q) + len(spec.vc_names)
    counts = (p, k_cov, partial, [t[1] for t in tasks], [t[4] for t in tasks])
    if spec.weights_name is not None:
        target = (checked_target, p, q, spec.weights_name, std, *maps)
    elif std is not None:
        target = (None, std)
    else:
        target = (target_map, p, q, *maps)
    return g.call(rows_checked, *counts, *target, name="target_map")


def _ragged_blocks(
    g: _Graph,
    tasks: list,
    spec,
    slot_arg,
    rp: RaggedPacked,
    n_blocks: int,
    std,
    where,
    homes,
    partial: bool,
) -> list:
    """:func:`block_graph`'s blocks from ragged partials
    (:mod:`~dmixed.engines.dask.ragged`): each bucket's tables added by key, no rows
    routed; ``where`` and ``homes`` the partials tasks' and the buckets' workers, as
    in :func:`block_graph`."""
    maps = [t[2] for t in tasks]
    target = _target_map(g, spec, tasks, std, partial)
    global_sums = _converted_tree(
        g, sum_converted, _sum_node, [t[1] for t in tasks], maps, (target, rp.group, ())
    )
    exchange = g.call(exchange_summary, *[t[4] for t in tasks])
    blocks = []
    for b in range(n_blocks):
        bucket = _bucket_parts(g, tasks, b, where, homes[b])
        place = homes[b]
        combined = _converted_tree(
            g,
            combine_tables_converted,
            combine_tables_node,
            bucket,
            maps,
            (target, rp),
            place=place,
        )
        extra = (global_sums, target, exchange) if b == 0 else (None, target)
        blocks.append(g.call(to_ragged_block, combined, rp, slot_arg, *extra, place=place))
    return blocks


def _converted_tree(
    g: _Graph,
    leaf,
    node,
    items: list,
    maps: list,
    conv: tuple,
    fan_in: int = 8,
    root: tuple | None = None,
    early: int = 0,
    place: str | None = None,
):
    """Tree reduction whose first level (``leaf``) converts each item from its map to
    the target's (``conv = (target, packed, vc_widths)``, or ``(target, RaggedPacked)``
    for ragged tables); the levels above
    (``node(*conv, *children)``) add items already in it.  ``root = (func, first)``:
    the root node's ``func(*args)`` is called as ``func(first, func, *args)`` (a task
    that also makes something of the sum), else it is the plain node.

    The first ``early`` items and their maps are the partials tasks' own results: a
    leaf's two or more of them are first brought to one worker by a task of their own
    (:func:`_bundle`), so that their transfer (the bulk of the bytes) runs while the
    leaf's other inputs, the target map among them, are still being made; the leaf
    then adds them in the same order as without it.  ``place``: where every task of
    the tree runs (:meth:`_Graph.call`), or None; a placed tree's items made on other
    workers are moved there by tasks of their own (:func:`_bucket_parts`), so it
    bundles none (a bundle would be one more turn of the scheduler on the way)."""
    pairs = list(zip(items, maps, strict=True))
    level = []
    for i in range(0, len(pairs), fan_in):
        ready = pairs[i : min(i + fan_in, early)] if i < early else []
        rest = pairs[i + len(ready) : i + fan_in]
        bundled = len(ready) > 1 and place is None
        bundle = g.call(_bundle, *ready, name="bucket_parts") if bundled else None
        level.append((leaf, conv, bundle, rest if bundle is not None else ready + rest))
    while True:
        if len(level) == 1 and root is not None:
            func, lead, bundle, rest = level[0]
            return _bundled_call(g, root[0], (root[1], func, *lead), bundle, rest, place)
        done = [_bundled_call(g, *entry, place) for entry in level]
        if len(done) == 1:
            return done[0]
        level = [(node, conv, None, done[i : i + fan_in]) for i in range(0, len(done), fan_in)]


def _bundled_call(g: _Graph, func, lead: tuple, bundle, rest: list, place: str | None):
    """The task ``func(*lead, *bundled, *rest)`` of a tree's node, ``bundled`` the
    items of the task ``bundle`` (none where it is None), named after ``func``, placed
    by ``place`` (:meth:`_Graph.call`)."""
    if bundle is None:
        return g.call(func, *lead, *rest, place=place)
    return g.call(_unbundled, func, lead, bundle, *rest, name=funcname(func), place=place)


def _bundle(*pairs) -> tuple:
    """The ``(partial, map)`` pairs of a tree's leaf, on one worker (see
    :func:`_converted_tree`)."""
    return pairs


def _unbundled(func, lead: tuple, bundle: tuple, *rest):
    """``func(*lead, *bundle, *rest)``."""
    return func(*lead, *bundle, *rest)


def _sum_node(target, packed, vc_widths, *vectors):
    """An upper node of the global sums' tree (already in ``target``'s map)."""
    return sum_vectors(*vectors)
