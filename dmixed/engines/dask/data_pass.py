"""One pass over a Dask DataFrame to per-group statistics (DESIGN.md §2, §8).

:func:`statistics_from_dask` does, in order:

1. resolve where to compute (:func:`resolve_client`: an explicit client, else the
   current one, else Dask's local scheduler in this process) and where to keep the
   statistics (:func:`resolve_engine`);
2. with variance components, a prepass that numbers each group's component columns
   and says which components have entries in one row
   (:func:`~dmixed.engines.dask.graph.slot_map_graph`); where none has and the layout
   allows the structured engine, the pass sums them ragged (:func:`pass_layout`,
   :mod:`~dmixed.engines.dask.ragged`: no padded design, no ``r × r`` block); where
   components share rows and one can be the diagonal block, ragged with their
   co-occurrence sums (:mod:`~dmixed.engines.dask.crossed`, held crossed);
3. the data pass: one graph, partials → sums by group key → blocks
   (:func:`~dmixed.engines.dask.graph.block_graph`), computed once, so the blocks are
   futures with lineage (a block lost with its worker is recomputed from the data);
4. the blocks' summaries gathered and put in sorted group order
   (:func:`~dmixed.engines.dask.blocks.assemble_blocks`), then the statistics either
   kept on the workers (:class:`~dmixed.engines.dask.evaluator.DaskEngine`) or gathered
   into the in-process engine (:data:`AUTO_LOCAL_MAX_VALUES`;
   :func:`~dmixed.engines.local.local_engine`: variance components structured where
   they can be, as for in-memory rows).

Without a distributed client the same graph runs on Dask's local scheduler and the
statistics are gathered into the in-process engine.  The library never starts a
cluster.

Lossy groups (a random slope nearly constant within a group,
:func:`~dmixed.kernels.lossy_groups`) fit from sums about a shift of each group's own.
The chains' compiled sweep keeps them only when asked (:func:`shifted_sweep_mode`): they make it
slower (benchmarks/RESULTS.md, lossy-s44), and such groups are rare (timestamps of two events
seconds apart). So by default (``"auto"``) the pass runs without them, and where the blocks'
summaries count lossy groups (the driver refuses them: no task fails) it runs once more, with
them: the data are read again (the
cost falls on the fits that need it, a second pass, never on the others), and the
first pass's blocks are released before (nothing of it stays on the cluster).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import dask
import numpy as np
import pandas as pd

from ...design.dtypes import native_dtype
from ...design.origin import in_partition, located
from ...design.partitions import check_persisted, reader_error
from ...design.prepare import is_missing_values_error
from ...errors import BadValuesError, ClusterClosedError, DataError, SpecError
from ...kernels.pages import paged
from ...kernels.vc_border import CrossedVC, choose_diagonal
from ...stats import FittedStatistics, Layout
from ...stats.keys import (
    LEARNED_KEYS,
    PARTITION_WHERE,
    check_key_kind,
    key_dtype,
    learned,
    named_keys_error,
    refuse_bytes_with_text,
    settled_labels,
)
from ...stats.packed import PackedLayout
from ...stats.slots import SlotMap
from ...stats.standardize import Standardization
from ..base import ENGINE_CHOICES, check_client
from ..local import inexact_error
from ..vc_crossed import CrossedVCEngine, worth_crossing
from ..vc_local import StructuredVCEngine, worth_structure
from .blocks import Assembly, assemble_blocks, block_summary, dense_pieces, gathered_engine
from .checks import config_choice, missing_values_total, rows_named
from .evaluator import DaskEngine, collect_evaluators, submit_evaluators
from .graph import block_graph, project_columns, scan_chain_graph, slot_map_graph
from .progress import ask_workers, gather, thread_workers, wait_for, worker_threads
from .ragged import RaggedPacked
from .relay import raise_relayed, relay_mark
from .structured import (
    concatenate_ragged,
    crossed_values,
    gather_crossed,
    gather_structured,
    ragged_values,
    structure_possible,
    structured_slots,
)

logger = logging.getLogger("dmixed")

#: Engine used when ``statistics_from_dask(engine=None)`` and the Dask config key
#: ``"dmixed.engine"`` is unset: ``"auto"``, ``"distributed"`` or ``"local"``.
DEFAULT_ENGINE = "auto"
#: Dask priority of the blocks' summaries submitted with their evaluators: a worker makes
#: its block's summary before the evaluator and its moment sums (the driver assembles the
#: summaries while the workers go on).
SUMMARY_PRIORITY = 1
#: values of the Dask config key ``"dmixed.shifted_sweep"`` (:func:`shifted_sweep_mode`)
SHIFTED_SWEEP_CHOICES = ("auto", "always", "never")

#: ``engine="auto"`` gathers the statistics to the driver and optimizes in-process when
#: they hold at most this many float64 values (``G · r · (r + p + 1)``, the ``zz`` and
#: ``zxy`` arrays, or the ragged count of variance components held structured,
#: :func:`~dmixed.engines.dask.structured.ragged_values`; 1.5e6 values = 12 MB, about
#: 107 000 groups of a random-slope model).
#: Kept on the workers, the optimization is one round trip of a few stages
#: (:mod:`~dmixed.engines.dask.ahead`, run as direct calls:
#: :mod:`~dmixed.engines.dask.direct_calls`) whose compute divides among the workers and
#: whose answer to the driver is the BLUPs; gathered, the statistics cross to the
#: driver (more bytes than the BLUPs) and every step's work runs there, serial
#: whatever the number of workers (benchmarks/RESULTS.md, g3drv).
AUTO_LOCAL_MAX_VALUES = 1_500_000


LOCAL_SCHEDULERS = frozenset(
    {
        "sync",
        "synchronous",
        "single-threaded",
        "threads",
        "threading",
        "processes",
        "multiprocessing",
    }
)


# ---------------------------------------------------------------------------
# Where to compute, where to keep the statistics
# ---------------------------------------------------------------------------


def resolve_client(client):
    """Explicit client → the current distributed client, when it is running → None
    (in-process).  A default client that is not running is passed over: a ``Client``
    whose construction failed (an unknown address scheme, say) stays distributed's
    default, "connecting" for ever, and would fail every later fit of the process.

    Raises
    ------
    SpecError
        ``client`` not a ``distributed.Client``
        (:func:`~dmixed.engines.base.check_client`): an address such as ``"tcp://…:8786"``
        is refused, not connected to (a client opened here would have to be closed
        by the fit, and the results' lazy calls run on it later).
    ClusterClosedError
        The client given is closed (or closing): it can run nothing (also a
        ``ConnectionError``).
    """
    if client is not None:
        check_client(client)
        status = getattr(client, "status", "running")
        if status in ("closing", "closed"):
            raise ClusterClosedError(
                f"the Dask client given is {status}: it can run nothing; pass an open "
                "client (or none, to fit with Dask's local scheduler)"
            )
        return client
    from distributed import default_client

    try:
        current = default_client()
    except ValueError:  # no client in this process
        return None
    return current if getattr(current, "status", "running") == "running" else None


def level_scan_chains(ddf, kinds, plan, to_scan: list, client=None) -> list | None:
    """The level scan's tasks over runs of partitions
    (:data:`~dmixed.design.scan.ScanChains`, :func:`~dmixed.engines.dask.graph.scan_chain_graph`):
    one per thread of the workers of ``client`` (None: the current client; per CPU
    without one), as the data pass's chains; None where the collection is read one
    task per partition."""
    client = resolve_client(client)
    threads = worker_threads(client) if client is not None else os.cpu_count() or 1
    return scan_chain_graph(ddf, kinds, plan, to_scan, max(1, threads))


def resolve_engine(engine: str | None) -> str:
    """``engine``, else the Dask config key ``"dmixed.engine"``, else
    :data:`DEFAULT_ENGINE`, lower-cased.

    Raises
    ------
    SpecError
        Not one of ``"auto"``, ``"distributed"``, ``"local"``.
    """
    if engine is None:
        engine = dask.config.get("dmixed.engine", None) or DEFAULT_ENGINE
    engine = str(engine).lower()
    if engine not in ENGINE_CHOICES:
        raise SpecError(f"engine must be 'auto', 'distributed' or 'local', got {engine!r}")
    return engine


def local_scheduler() -> str:
    """Dask's configured scheduler when it runs in this process, else ``"threads"``."""
    configured = dask.config.get("scheduler", None)
    if isinstance(configured, str) and configured in LOCAL_SCHEDULERS:
        return configured
    return "threads"


def group_key_dtype(ddf, spec):
    """dtype of the group keys the partitions will yield (best effort, from the
    collection's metadata; :func:`~dmixed.stats.keys.key_dtype`), or
    :data:`~dmixed.stats.keys.LEARNED_KEYS` where the group column is a categorical of
    unknown categories."""
    if spec.group_native is not None:
        return key_dtype(native_dtype(spec.group_native))
    try:
        dtype = ddf.dtypes[spec.group_name]
    except (KeyError, AttributeError):
        return object
    if isinstance(dtype, pd.CategoricalDtype) and unknown_categories(ddf, spec):
        # the metadata's categories are a placeholder: the pass keys rows by the
        # values it reads and settles their kind after (LEARNED_KEYS)
        return LEARNED_KEYS
    return key_dtype(dtype)


def unknown_categories(ddf, spec) -> bool:
    """Whether the collection declares the group column a categorical of categories
    not known before its data are read (Dask's lazy ``astype("category")``)."""
    try:
        return not ddf[spec.group_name].cat.known
    except (AttributeError, KeyError, TypeError):  # not a categorical
        return False


def categorize_hint(err: DataError, ddf, spec) -> DataError:
    """``err`` advising to make the categories known, where it refuses keys other than
    numbers and text (booleans, datetimes) in a group column the collection declares a
    categorical of unknown categories: Dask's lazy ``astype("category")`` declares text
    categories whatever the values, so they are no mix of types in the data.  (Numbers
    there are keyed by their values, :data:`~dmixed.stats.keys.LEARNED_KEYS`: their
    refusal is of a true mix with text.)  Else ``err`` unchanged."""
    kinds = err.key_kinds
    if kinds is None or kinds[0].kind in "iufO" or kinds[1].kind != "O":
        return err
    if not unknown_categories(ddf, spec):
        return err
    column = spec.group_name
    hint = (
        "Dask declares a categorical of unknown categories (`astype('category')`) text "
        f"whatever its values: make its categories known first, e.g. "
        f"`ddf.categorize(columns=[{column!r}])`, or keep the column numeric"
    )
    try:
        check_key_kind(kinds[0], kinds[1], column, PARTITION_WHERE, hint)
    except DataError as hinted:
        if getattr(err, "detail", None) is None:  # not worded for a partition
            return hinted
        return in_partition(hinted, getattr(err, "partition", None), getattr(err, "file", None))
    return err


# ---------------------------------------------------------------------------
# The steps of one data pass
# ---------------------------------------------------------------------------


@dataclass
class _Pass:
    """What every step of one data pass needs."""

    ddf: object
    spec: object
    client: object
    mode: str
    progress: bool
    t0: float
    key_dtype: object
    shifts: bool = False  # the chains' compiled passes keep sums about the groups' shifts
    partial: bool = False  # a part of the data: its count of rows not checked

    @property
    def level(self) -> int:
        """Log level of the pass's lines: INFO with ``progress``, else DEBUG."""
        return logging.INFO if self.progress else logging.DEBUG

    @property
    def group_name(self) -> str:
        """The group column's name."""
        spec: Any = self.spec  # a ModelSpec (the pass takes it as it comes)
        return spec.group_name

    @property
    def learned_column(self) -> str | None:
        """The group column where its keys' kind is learned from the data
        (:data:`~dmixed.stats.keys.LEARNED_KEYS`), else None."""
        return self.group_name if learned(self.key_dtype) else None

    @property
    def n_parts(self) -> int:
        return self.ddf.npartitions

    @property
    def where(self) -> str:
        if self.client is None:
            return "local scheduler"
        return f"cluster {self.client.scheduler.address}"


def _number_slots(run: _Pass) -> tuple[SlotMap | None, object, bool]:
    """The VC prepass: ``(slot map, what the data pass's tasks get of it, whether some
    row has two variance-component entries)``."""
    if not run.spec.vc_names:
        return None, None, False
    logger.log(run.level, "VC prepass: %d partitions on %s", run.n_parts, run.where)
    slot_graph, overlap_graph = slot_map_graph(run.ddf, run.spec, run.key_dtype, _count_blocks(run))
    if run.client is None:
        slot_map, overlap = dask.compute(slot_graph, overlap_graph, scheduler=local_scheduler())
        slot_arg = slot_map
    else:
        slot_future, overlap_future = run.client.compute([slot_graph, overlap_graph])
        wait_for(run.client, [slot_future], run.progress, "VC prepass", run.t0)
        slot_map, overlap = gather(run.client, [slot_future, overlap_future], "the VC prepass")
        # the partitions get the slot map as a dependency (a future with lineage),
        # never as a large literal argument
        slot_arg = dask.delayed(slot_future)
    logger.log(
        run.level,
        "VC prepass done in %.2fs: slots per component %s",
        time.perf_counter() - run.t0,
        list(slot_map.widths),
    )
    return slot_map, slot_arg, overlap


def pass_layout(
    layout: Layout, k: int, overlap, slot_map: SlotMap | None = None
) -> PackedLayout | RaggedPacked:
    """The partials' layout: ragged (:mod:`~dmixed.engines.dask.ragged`) where the
    structured engine saves work (:func:`~dmixed.engines.vc_local.worth_structure`; with
    one random-design column in all too, as in process: the ragged pass holds no
    within-group sums for the profile to read) and no row has two variance-component
    entries; ragged with co-occurrence sums (:mod:`~dmixed.engines.dask.crossed`) where
    components share rows and the in-process pass would hold them crossed
    (:func:`~dmixed.engines.vc_crossed.worth_crossing`, a diagonal component,
    ``overlap`` a :class:`~dmixed.engines.dask.crossed.RowOverlap`); else padded packed
    rows."""
    widths = tuple(int(w) for w in layout.vc_widths)
    if worth_structure(layout) and not overlap:
        return RaggedPacked(layout.k_re, k, widths)
    if overlap and not overlap.repeated and slot_map is not None and worth_crossing(layout):
        diagonal = choose_diagonal(np.asarray(widths), overlap.pairs)
        if diagonal:
            counts = tuple(int(keys.size) for keys in slot_map.pair_keys)
            return RaggedPacked(layout.k_re, k, widths, tuple(diagonal), counts)
    return PackedLayout(layout.r, k)


def _count_blocks(run: _Pass) -> int:
    """One output block per worker thread (per CPU, or partition, in-process); the
    workers as the fit asked for them at its start."""
    if run.client is None:
        return max(1, min(run.n_parts, os.cpu_count() or 1))
    return max(1, worker_threads(run.client))


def _gather_in_process(
    graph: list, packed: PackedLayout | RaggedPacked, layout: Layout, column: str | None
):
    """The graph on Dask's local scheduler; ``(in-process engine, assembly)``.
    ``column``: :func:`~dmixed.engines.dask.blocks.assemble_blocks`'s."""
    blocks = list(dask.compute(*graph, scheduler=local_scheduler()))
    asm = assemble_blocks(blocks, packed.k, column)
    if isinstance(packed, RaggedPacked) and packed.crossed:
        crossed = CrossedVC.concatenate([b.crossed for b in blocks], asm.position)
        return CrossedVCEngine(crossed), asm
    if isinstance(packed, RaggedPacked):
        ragged = concatenate_ragged([b.ragged for b in blocks], asm.position)
        return StructuredVCEngine(ragged), asm
    # each block's lossy groups' sums about their shifts with it (Block.shifted)
    return gathered_engine([(b.zz, b.zxy, b.shifted) for b in blocks], asm, layout), asm


def _keeps_on_cluster(run: _Pass, n_groups: int, packed: PackedLayout, n_values) -> bool:
    """Whether the statistics of ``n_groups`` groups stay on the workers.  ``n_values``:
    the float64 values of the statistics held structured (ragged or crossed), else None
    (the padded size is counted)."""
    if run.mode == "auto":
        if n_values is None:
            n_values = n_groups * packed.r * (packed.r + packed.k)
        return n_values > AUTO_LOCAL_MAX_VALUES
    return run.mode == "distributed"


def _crossed(packed) -> bool:
    """Whether the blocks come from the crossed pass (co-occurrence sums)."""
    return isinstance(packed, RaggedPacked) and packed.crossed


def _structure_on_cluster(run: _Pass, futures: list, packed, layout: Layout, n_groups: int):
    """``(layout or None, values held)``: the layout where the blocks are held
    structured (ragged or crossed: the sums with one slot per component) and their
    float64 values, else ``(None, None)`` (padded blocks)."""
    client = run.client
    if _crossed(packed):
        return layout, crossed_values(client, futures)
    n_slots = structured_slots(client, futures, layout, isinstance(packed, RaggedPacked))
    if n_slots is None:
        return None, None
    return layout, ragged_values(n_groups, layout.k_re, packed.k, n_slots)


@dataclass
class _Early:
    """What :func:`_early_evaluators` started: a summary, an evaluator and (or None) its
    moment sums per block."""

    summaries: list
    evaluators: list
    moments: list | None


def _early_evaluators(run: _Pass, futures: list, packed, layout: Layout) -> _Early | None:
    """The blocks' summaries, the evaluators and their moment sums, submitted with the
    blocks (before the data pass's wait: each worker goes on from its block to them with
    no turn of the driver between), before the driver knows whether the statistics stay
    on the workers, where the blocks' sizes alone decide it (padded blocks: no structure
    to ask the blocks about); else None.
    An evaluator takes a held block's sums as they are
    (:func:`~dmixed.engines.dask.evaluator.make_evaluator`), and with ``r ≤
    kernels.MOMENT_MAX_R`` (the starting values use the moments then,
    :func:`~dmixed.fit.start.moment_start_packed`) its moment sums are mapped over it
    (:func:`~dmixed.engines.dask.evaluator.submit_evaluators`: the moment start needs
    no round trip of its own).  The summaries are submitted first (a worker makes its
    block's before the moment sums) and gathered alone: the driver receives the labels
    and assembles them while the workers sum the moments.  The evaluators of empty
    blocks (left out) or of statistics gathered after all are dropped
    (:func:`_kept_early`)."""
    ragged = isinstance(packed, RaggedPacked)
    if run.mode == "local" or _crossed(packed) or structure_possible(layout, ragged):
        return None
    # first on each worker: the driver's assembly waits on them, the evaluators and their
    # moment sums on nothing but the block (handed over with them, in any order)
    summaries = run.client.map(paged(block_summary), futures, pure=False, priority=SUMMARY_PRIORITY)
    return _Early(summaries, *submit_evaluators(run.client, futures, None, packed.r))


def _kept_early(
    run: _Pass, early: _Early, summaries: list, packed, asm: Assembly, spent: list
) -> tuple | None:
    """``(kept blocks, evaluator futures, moment sums or None)`` of what
    :func:`_early_evaluators` started, given the gathered ``summaries`` (assembled:
    ``asm``): the non-empty blocks where the statistics stay on the workers (their
    evaluators and moment sums waited for:
    :func:`~dmixed.engines.dask.evaluator.collect_evaluators`), else None (no rows, an
    error after the assembly, or gathered: as without early evaluators).  The moment
    sums are added over the kept blocks in block order (as :meth:`DaskEngine.moments`).
    Kept blocks with lossy groups are refused (:func:`_refuse_inexact`, the data pass's
    futures ``spent`` and all those started released first)."""
    sizes = [len(s.labels) for s in summaries]
    keep = [i for i, size in enumerate(sizes) if size > 0]
    if not keep or not _keeps_on_cluster(run, int(sum(sizes)), packed, None):
        keep = []
    refused = bool(keep) and asm.inexact > 0
    if refused:
        keep = []
    for i in set(range(len(summaries))) - set(keep):
        early.evaluators[i].release()
        if early.moments is not None:
            early.moments[i].release()
    if refused:
        _refuse_inexact(asm, spent)
    if not keep:
        return None
    moments = None if early.moments is None else [early.moments[i] for i in keep]
    evaluators, sums = _collected(run.client, [early.evaluators[i] for i in keep], moments, spent)
    return keep, evaluators, sums


def _collected(client, evaluators: list, moments: list | None, spent: list):
    """:func:`~dmixed.engines.dask.evaluator.collect_evaluators`; where it raises (an
    evaluator's error, workers lost), the data pass's futures ``spent``, the evaluators
    and the moment sums are released first: the error's traceback would otherwise hold
    them on the cluster for as long as it lives (a notebook keeps its last error)."""
    try:
        return collect_evaluators(client, evaluators, moments)
    except BaseException:
        for f in [*spent, *evaluators, *(moments or ())]:
            f.release()
        raise


def _refuse_inexact(asm: Assembly, spent: list) -> None:
    """Where the blocks to be kept on the workers hold lossy groups their evaluators
    would hold without the forms they need (``asm.inexact``, the summaries' count:
    :func:`~dmixed.engines.dask.blocks.inexact_groups`), release the futures ``spent``
    and refuse them here, on the driver: no task of the pass fails (a worker would log
    it as an error before a second pass fits, :func:`_passes`).

    Raises
    ------
    DataError
        Its ``lossy_groups`` the number of such groups in all the blocks
        (:func:`~dmixed.engines.local.inexact_error`).
    """
    if not asm.inexact:
        return
    for f in spent:
        f.release()
    raise inexact_error(asm.inexact, "the statistics summed on the cluster")


def _why(run: _Pass, n_groups: int) -> str:
    """Why the statistics stay on the workers or come to the driver, for the log."""
    if run.mode != "auto":
        return f"{n_groups} groups; engine {run.mode!r}"
    return f"{n_groups} groups; the rule: on the workers above {AUTO_LOCAL_MAX_VALUES} values"


def _compute_on_cluster(run: _Pass, graph: list, packed: PackedLayout, layout: Layout, t1: float):
    """The graph on the cluster; ``(DaskEngine or in-process engine, assembly)``."""
    client = run.client
    futures = client.compute(graph)  # the one data pass
    early = _early_evaluators(run, futures, packed, layout)  # queued behind the blocks
    wait_for(client, futures, run.progress, "data pass", t1, run.n_parts)
    summary_futures = (
        client.map(paged(block_summary), futures, pure=False) if early is None else early.summaries
    )
    summaries = gather(client, summary_futures, "the data pass", straight=True)
    # every future of the pass so far: where the steps from the summaries to the
    # statistics' placement raise (an assembly's error, an interrupt), all are released,
    # not held on the cluster by the error's traceback while it lives (a notebook keeps
    # its last error); released, never cancelled: a gather may share them
    spent = [*futures, *summary_futures]
    held = list(spent)
    if early is not None:
        held += [*early.evaluators, *(early.moments or ())]
    try:
        asm = assemble_blocks(summaries, packed.k, run.learned_column)
        n_groups = len(asm.group_labels)
        moment_futures = None if early is None else early.moments
        if early is not None:
            started = _kept_early(run, early, summaries, packed, asm, spent)
            keep, evaluators, moments = (None, None, None) if started is None else started
            structured = None
        else:
            structured, n_values = _structure_on_cluster(run, futures, packed, layout, n_groups)
            keep = None
            if _keeps_on_cluster(run, n_groups, packed, n_values):
                _refuse_inexact(asm, spent)
                keep = [i for i, size in enumerate(asm.block_sizes) if size > 0]
                blocks = [futures[i] for i in keep]
                evaluators, moment_futures = submit_evaluators(client, blocks, structured, packed.r)
                held += [*evaluators, *(moment_futures or ())]
                evaluators, moments = _collected(client, evaluators, moment_futures, spent)
    except BaseException:
        for f in held:
            f.release()
        raise
    if keep is None:
        pieces: list = []
        try:
            if _crossed(packed):
                engine = gather_crossed(client, futures, asm.position)
            elif structured is not None:
                engine = gather_structured(client, futures, layout, asm.position)
            else:
                pieces = client.map(paged(dense_pieces), futures, pure=False)
                engine = gathered_engine(gather(client, pieces, "the data pass"), asm, layout)
        finally:
            # the plain blocks are released, the scheduler keeping their recipe (lineage);
            # also where the gathered statistics are refused: the error's traceback
            # would otherwise hold them on the cluster while it lives
            for f in [*futures, *summary_futures, *pieces]:
                f.release()
        why = _why(run, n_groups)
        logger.log(run.level, "statistics gathered (%s): optimizing in-process", why)
        return engine, asm
    kept = [graph[i] for i in keep]
    # the plain blocks (and the futures that made the summaries and moment sums) are
    # released by the engine just after its first round trip's submission: released
    # here, they would hold that submission back (DaskEngine's notes)
    spent = [*futures, *summary_futures, *(moment_futures or ())]
    engine = DaskEngine(client, evaluators, kept, asm.position, structured, moments, spent=spent)
    logger.log(
        run.level,
        "statistics kept on the cluster in %d blocks (%s)",
        len(keep),
        _why(run, n_groups),
    )
    return engine, asm


def statistics_from_dask(
    ddf,
    spec,
    client=None,
    progress: bool = False,
    engine=None,
    standardization: Standardization | None = None,
    partial: bool = False,
):
    """One pass over a Dask DataFrame → :class:`~dmixed.stats.FittedStatistics`.

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
        The data; a group's rows may be in any partitions, in any order.
    spec : dmixed.design.ModelSpec
        Built once from the whole dataset; applied to every partition.
    client : distributed.Client, optional
        Where to compute.  Default: the current distributed client, else Dask's local
        scheduler in this process (the library never starts a cluster).
    progress : bool
        Log the data pass at INFO level on logger ``"dmixed"``: start, every 10 s on a
        cluster, end with timing.  (``distributed.progress`` would draw a bar on stdout,
        which is no place for a library's progress in batch jobs.)
    engine : {"auto", "distributed", "local"}, optional
        With a client: keep the statistics on the workers (``"distributed"``), gather
        them and optimize in-process (``"local"``), or choose by their size
        (``"auto"``, see :data:`AUTO_LOCAL_MAX_VALUES`).  Default: the Dask config key
        ``"dmixed.engine"``, else :data:`DEFAULT_ENGINE`.
    standardization : Standardization, optional
        The columns' map (:mod:`dmixed.stats.standardize`).  Default: each task chooses
        one from its first rows and the first tree level converts them all to the one
        chosen from the most rows (exactly: no read ahead of the pass).
    partial : bool
        The rows are a part of the data whose statistics are added to others' (``dmixed
        update``'s new files): too few rows for the model are not refused here but by
        the fit of the sum (no rows at all still are).

    Returns
    -------
    FittedStatistics
        With a :class:`DaskEngine` or the in-process engine
        (:func:`~dmixed.engines.local.local_engine`);
        groups in sorted key order, as statsmodels.

    Warns
    -----
    PrecisionWarning
        Where a task found a column it rounds (integers past 2**53): raised here on the
        driver, once per column, from the workers' events
        (:mod:`~dmixed.engines.dask.relay`).

    Raises
    ------
    SpecError
        An unknown ``engine``; ``engine="distributed"`` without a client; a Dask config
        ``"dmixed.shifted_sweep"`` other than :data:`SHIFTED_SWEEP_CHOICES`.
    DataError
        Lossy groups that no pass keeps sums about their shifts for (variance components, or
        ``"dmixed.shifted_sweep"`` = ``"never"``: see the module; with ``"auto"`` the
        data are read a second time, keeping them); no rows left; missing values with
        ``missing="raise"`` (counted over the whole data: on this error path only, one
        more read of the partitions); a partition
        that lacks a used column (named with its number); a persisted collection whose
        data were released (its client closed or restarted, ``client.cancel``), or that
        another client than ``client`` persisted, on another scheduler
        (:func:`~dmixed.design.partitions.check_persisted`).
    """
    mode = resolve_engine(engine)
    client = resolve_client(client)
    if client is None and mode == "distributed":
        raise SpecError(
            "engine='distributed' needs a distributed Client (pass client= or create one)"
        )
    t0 = time.perf_counter()
    # before any work: data gone, or persisted by another cluster's client
    check_persisted(ddf, client)
    if client is not None:
        # the one request for the workers of this fit (their threads make the blocks,
        # their memory limits a message if one is killed), unless one is lost
        ask_workers(client)
    ddf = project_columns(ddf, spec)
    shifted = shifted_sweep_mode()
    run = _Pass(
        ddf,
        spec,
        client,
        mode,
        bool(progress),
        t0,
        group_key_dtype(ddf, spec),
        shifted == "always",
        partial,
    )
    mark = relay_mark(client)
    try:
        stats = _passes(run, standardization, shifted)
    except DataError as err:
        if err.too_few_rows is not None:  # counted on the cluster: the factors named here
            raise rows_named(err.too_few_rows, spec, ddf) from None
        if not is_missing_values_error(err):
            err = named_keys_error(err, spec.group_name)
            raise located(categorize_hint(err, ddf, spec), ddf) from None
        # the error path only: one more read, for counts over all partitions
        raise missing_values_total(ddf, spec, client, local_scheduler(), err) from None
    except (KeyError, ValueError) as exc:  # a file unlike the first
        err = reader_error(exc)
        if err is None:
            raise
        raise located(err, ddf) from None
    raise_relayed(client, mark)  # the workers' warnings, once each
    return stats


def shifted_sweep_mode() -> str:
    """The Dask config key ``"dmixed.shifted_sweep"``: whether the chains' compiled
    passes keep every group's random slopes about shifts of its own, which lossy groups
    need (see the module): ``"auto"`` (default: without them, and where lossy groups
    are found, the data pass again with them), ``"always"`` (with them from the start:
    one pass) or ``"never"`` (lossy groups of those passes refused).

    Raises
    ------
    SpecError
        Any other value.
    """
    return config_choice("dmixed.shifted_sweep", SHIFTED_SWEEP_CHOICES)


def _passes(run: _Pass, standardization, shifted: str) -> FittedStatistics:
    """:func:`_data_pass`, and in mode ``"auto"`` where it refuses lossy groups (a
    :class:`~dmixed.errors.DataError` with ``lossy_groups``, their number in all the
    blocks: raised on the driver from the blocks' summaries, :func:`_refuse_inexact`,
    so no task fails) and the pass kept no sums about the groups' shifts, the pass
    again with them (logged at INFO with that number), for weighted rows as for
    unweighted ones."""
    spec: Any = run.spec  # a ModelSpec (the pass takes it as it comes)
    done, count = _pass_or_lossy(run, standardization)
    if done is not None:
        return done
    if run.shifts or shifted != "auto":
        raise _lossy_refusal(count, run.shifts)
    names = list(spec.exog_re_names)
    intercept = spec.intercept_columns()[1]
    slopes = [n for j, n in enumerate(names) if j != intercept]
    logger.info(
        "lossy groups (%d: random slope %s nearly constant within the group): "
        "the data pass again, its compiled sweep keeping the sums about each group's "
        "shift (dask config 'dmixed.shifted_sweep'='always' does so in one pass)",
        count,
        ", ".join(slopes) or "?",
    )
    run.shifts = True
    done, count = _pass_or_lossy(run, standardization)
    if done is not None:
        return done
    raise _lossy_refusal(count, True)


def _pass_or_lossy(run: _Pass, standardization) -> tuple[FittedStatistics | None, int]:
    """:func:`_data_pass`'s statistics and 0, or None and the number of lossy groups
    it refused (any other error raised).  The count is returned out of the handler, so
    the pass's futures, held by the error's frames, are released before the caller
    starts another pass or raises the refusal."""
    try:
        return _data_pass(run, standardization), 0
    except DataError as err:
        if not err.lossy_groups:
            raise
        count = err.lossy_groups
    return None, count


def _lossy_refusal(count: int, kept: bool) -> DataError:
    """The refusal of ``count`` lossy groups of a data pass that kept the sums about
    the groups' shifts where the random design allows them (``kept``: they are none
    of those) or whose compiled sweep kept none (``"dmixed.shifted_sweep"`` =
    ``"never"``), its message saying which (:func:`~dmixed.engines.local.inexact_error`)."""
    if kept:
        why = (
            "the data pass kept such sums where the random design allows them "
            "(an intercept and slopes without variance components): these groups' "
            "design does not"
        )
    else:
        why = (
            "the dask config 'dmixed.shifted_sweep' is 'never', so the compiled sweep "
            "kept no such sums ('auto' or 'always' keeps them for a random design of an "
            "intercept and slopes without variance components)"
        )
    return inexact_error(count, "the statistics summed on the cluster", why)


def _data_pass(run: _Pass, standardization: Standardization | None) -> FittedStatistics:
    """The body of :func:`statistics_from_dask` (see the module's steps 2-4)."""
    ddf, spec, client = run.ddf, run.spec, run.client
    slot_map, slot_arg, overlap = _number_slots(run)
    layout = Layout(len(spec.exog_re_names), () if slot_map is None else tuple(slot_map.widths))
    packed = pass_layout(layout, len(spec.exog_names) + 1, overlap, slot_map)

    t1 = time.perf_counter()
    n_blocks = _count_blocks(run)
    logger.log(
        run.level, "data pass: %d partitions → %d blocks on %s", run.n_parts, n_blocks, run.where
    )
    graph = block_graph(
        ddf,
        spec,
        slot_arg,
        packed,
        run.key_dtype,
        n_blocks,
        n_blocks,
        client,
        standardization,
        layout.vc_widths,
        None if client is None else thread_workers(client)[:n_blocks],
        run.shifts,
        run.partial,
    )
    if client is None:
        engine_obj, asm = _gather_in_process(graph, packed, layout, run.learned_column)
    else:
        engine_obj, asm = _compute_on_cluster(run, graph, packed, layout, t1)
    if asm.glob.n == 0:
        engine_obj.close()
        if asm.n_dropped:  # the words of the level scan, where it counts them
            raise BadValuesError(
                "no rows left after dropping rows with missing values "
                f"({asm.n_dropped} rows dropped)"
            )
        raise BadValuesError("no data: the Dask DataFrame has no rows")
    logger.log(
        run.level,
        "data pass done in %.2fs: %d rows, %d groups",
        time.perf_counter() - t1,
        asm.glob.n,
        len(asm.group_labels),
    )
    if asm.exchange is not None:
        logger.info(
            "exchange: %d task(s) routed rows, %d sent partials; %.1f MB to the bucket "
            "nodes (each task sends the fewer bytes: %s)",
            asm.exchange["rows"],
            asm.exchange["partials"],
            asm.exchange["bytes"] / 1e6,
            asm.exchange.get("why", ""),
        )
    labels = asm.group_labels
    try:
        if learned(run.key_dtype):
            labels = settled_labels(labels, run.group_name)
        else:  # (settled_labels refuses them where the keys' kind is learned)
            refuse_bytes_with_text(labels, run.group_name)
    except DataError:
        engine_obj.close()
        raise
    return FittedStatistics(
        engine=engine_obj,
        glob=asm.glob,
        layout=layout,
        group_labels=labels,
        group_sizes=asm.group_sizes,
        vc_slot_cols=[] if slot_map is None else slot_map.slot_columns(asm.group_labels),
        data_pass_seconds=time.perf_counter() - run.t0,
        n_dropped=asm.n_dropped,
        standardization=asm.standardization,
    )
