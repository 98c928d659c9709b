"""Partial statistics: what the data pass's tasks compute from pandas partitions.

Each task returns ``(parts, global_sums, map, routed, report)``: ``parts[b]`` is
``(keys, values)`` for the groups it saw that belong to output block ``b`` (one packed
row per group, :class:`~dmixed.stats.packed.PackedLayout`, or its row of terms,
:class:`~dmixed.kernels.term_table.TermRows`), ``global_sums`` its packed
``[n, Σ log w, n_dropped, [X y]'[X y]]``, ``map`` the columns' map they are in,
``routed[b]`` the rows it routed to block ``b`` instead (a list of
:class:`~dmixed.engines.dask.routing.RoutedRows`, or None; see
:mod:`~dmixed.engines.dask.routing`) and ``report`` what it sends
(:func:`~dmixed.engines.dask.routing.exchange_report`).  Three kinds of task give the
same output:

- :func:`partition_partials`: one partition, from Dask's own task;
- :func:`chain_partials`: a run of partitions the task reads itself from storage, one
  after the other, into one :class:`~dmixed.engines.dask.combine.GroupAccumulator`
  (a map-side combine: one row per group leaves the task, however many of its
  partitions the group is spread over);
- :func:`resident_chain_partials`: the same over partitions persisted on the worker.

Variance components need one slot numbering of their columns within each group across
partitions: :func:`partition_vc_pairs` lists the (group, column) pairs of a partition,
:func:`build_slot_map` numbers them all (:class:`~dmixed.stats.slots.SlotMap`).
With a :class:`~dmixed.engines.dask.ragged.RaggedPacked` layout the tasks sum the
components ragged instead (:func:`accumulate_ragged`): ``parts[b]`` are then block
``b``'s tables of groups and cells, and no rows are routed.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pandas as pd
import pyarrow as pa

from ... import kernels
from ...design.columnar import (
    column_sources,
    columns_design,
    columns_design_applies,
    design_columns,
    frame_columns,
)
from ...design.dtypes import warn_rounded_integers
from ...design.origin import in_partition, piece_file
from ...design.partitions import check_column_kinds, reader_error
from ...design.references import column_references
from ...design.scan import PartitionSummary, ScanPlan, SummaryMerge, summarize_partition
from ...design.spec import DesignMatrices
from ...errors import DataError
from ...kernels.shifts import rows_part
from ...kernels.term_table import PLAN_SAMPLE, ColumnPlan, held_columns
from ...kernels.vc_packed import accumulate_padded_into
from ...stats.keys import arrow_first_codes, conform_keys, key_series, key_values
from ...stats.packed import GLOBAL_HEAD, PackedLayout
from ...stats.slots import SlotMap, present_pairs
from ...stats.standardize import SAMPLE_ROWS, Standardization
from .combine import GroupAccumulator, rank_one_partials, split_buckets, with_sides
from .crossed import RowOverlap, overlap_marks, read_overlap
from .parquet_direct import ParquetReads, numpy_columns, read_columns, unreadable_file
from .pieces import Pieces, compute_piece
from .progress import BatchedReport, report_partitions
from .ragged import RaggedAccumulator, RaggedPacked, ragged_rows, tables_bytes
from .relay import relayed
from .routing import DECISIONS, PendingRows, Router, decision_key, exchange_report
from .text_columns import text_objects
from .tuning import collect_design_cycles, prepare_worker, release_read_buffers

#: Column holding the group key in the frames of variance-component pairs.
KEY_COLUMN = "__dmixed_group__"
#: The component of the marks :func:`partition_vc_pairs` adds when a row of its
#: partition has two variance-component entries (the column says which components,
#: :func:`~dmixed.engines.dask.crossed.overlap_marks`).
OVERLAP = -1


# ---------------------------------------------------------------------------
# One partition's rows
# ---------------------------------------------------------------------------


def partition_rows(pdf: pd.DataFrame, spec, slot_map: SlotMap | None, padded: bool = True):
    """``((dm, keys, Z̃), n_dropped)`` of one partition, VC slots applied; ``(None,
    n_dropped)`` when no row is left.

    ``dm`` are the spec's design matrices of the partition, ``keys`` the rows' group keys
    (:func:`~dmixed.stats.keys.key_values`; for text keys numbered from Arrow,
    ``dm.groups`` itself, the same values without a copy: callers do not write into
    it), ``Z̃`` the padded random design (None when not ``padded``: the ragged pass,
    :mod:`~dmixed.engines.dask.ragged`).
    """
    dm = partition_design(pdf, spec)
    if dm is None:
        return None, 0
    if dm.endog.shape[0] == 0:
        return None, dm.n_dropped
    # keys numbered from Arrow text are Python str each (key_values would copy them and
    # look at every row to return the same keys)
    keys = dm.groups if dm.first_numbered() is not None else key_values(dm.groups)
    if not padded:
        return (dm, keys, None), dm.n_dropped
    if slot_map is None:
        slots, widths = [], []
    else:
        slots, widths = slot_map.lookup(keys, dm.vc_cols, dm.vc_vals), list(slot_map.widths)
    ztilde = kernels.dense_random_design(dm.exog_re, slots, dm.vc_vals, widths)
    return (dm, keys, ztilde), dm.n_dropped


def partition_design(pdf, spec):
    """The spec's design matrices of one partition (None: no rows), given as a pandas
    frame or as numpy columns (:func:`~dmixed.engines.dask.parquet_direct.read_columns`):
    from the columns where :func:`~dmixed.design.columnar.columns_design` builds them
    (the same matrices, without the frame's checks), else ``spec.transform``.  A frame's
    columns are first checked against the kinds the spec reads
    (:func:`~dmixed.design.partitions.check_column_kinds`).  The design's warnings go
    to the driver (:func:`~dmixed.engines.dask.relay.relayed`).  In a worker, what a
    formulaic design left in reference cycles (the partition's columns) is then freed
    (:func:`~dmixed.engines.dask.tuning.collect_design_cycles`)."""
    return relayed(_design, pdf, spec)


def _design(pdf, spec):
    numbered = None
    if isinstance(pdf, dict):
        numbered = arrow_first_codes(pdf.get(spec.group_name))
        if numbered is not None:  # the keys' Python strings made once per distinct key
            pdf = {**pdf, spec.group_name: _shared_keys(numbered)}
        pdf = numpy_columns(pdf)  # text keys read as Arrow: as Dask's reader gives them
    if isinstance(pdf, pd.DataFrame):
        check_column_kinds(pdf, spec.column_kinds)
    dm = None
    if columns_design_applies(spec):
        columns = pdf if isinstance(pdf, dict) else frame_columns(pdf, design_columns(spec))
        # text keys numbered from Arrow hold no missing key (its null_count is 0) and
        # are this partition's own objects (_shared_keys)
        dm = None if columns is None else columns_design(spec, columns, numbered is not None)
    if dm is not None:
        return _numbered(dm, numbered)
    if isinstance(pdf, dict):
        pdf = pd.DataFrame(pdf)
    rows = len(pdf)
    if not rows:
        return None
    dm = _numbered(spec.transform(pdf), numbered)
    del pdf  # this frame's own reference, before what formulaic left of it is freed
    collect_design_cycles(rows)
    return dm


def _shared_keys(numbered) -> pd.Series:
    """The rows' keys ``labels[codes]`` as a Series of Python objects (each distinct
    key one object, which its rows share), kept ``object``: pandas would otherwise
    infer its ``str`` dtype, copying every row's key to Arrow and back."""
    codes, labels = numbered
    return pd.Series(labels[codes], dtype=object, copy=False)


def _numbered(dm, numbered):
    """``dm`` with the codes of its rows' text keys read as Arrow
    (:attr:`~dmixed.design.spec.DesignMatrices.first_codes`, from
    :func:`~dmixed.stats.keys.arrow_first_codes` of the rows read; those the design
    kept), where it has their keys as objects."""
    if numbered is None or dm.groups is None or dm.groups.dtype != object:
        return dm
    codes, labels = numbered
    if dm.keep is not None:
        codes = codes[dm.keep]
    if codes.size != dm.groups.size:  # pragma: no cover - keep holds the rows kept
        return dm
    return dm.with_first_codes(codes, labels)


def partition_standardization(dm, spec) -> Standardization:
    """The columns' map chosen from these rows (the design matrices ``dm`` of the first
    partition of a task with rows); see
    :meth:`~dmixed.stats.standardize.Standardization.choose`."""
    return Standardization.choose(
        dm.endog, dm.exog, dm.exog_re, spec.intercept_columns(), dm.vc_vals,
        column_references(spec), dm.weights,
    )  # fmt: skip


def weighted_in(dm, std: Standardization, spec) -> tuple:
    """``(dm, std)``: ``dm`` with its prior weights as the statistics sum them in the
    map ``std`` (:meth:`~dmixed.stats.standardize.Standardization.weights_in_statistics`;
    ``dm`` itself where they are unchanged) and ``std`` with their span
    (:meth:`~dmixed.stats.standardize.Standardization.with_weights`: the combine judges
    the data's)."""
    weights = std.weights_in_statistics(dm.weights, spec.weights_name)
    std = std.with_weights(dm.weights)
    return (dm if weights is dm.weights else dataclasses.replace(dm, weights=weights)), std


def partition_partials(
    pdf: pd.DataFrame,
    spec,
    slot_map: SlotMap | None,
    packed: PackedLayout,
    n_buckets: int,
    std: Standardization | None = None,
    number: int | None = None,
    key_dtype=None,
) -> tuple:
    """Partial statistics of one partition, split by output block (see the module), and
    the columns' map they are in (``std``, else chosen from these rows; None: no rows).
    With ``packed`` a :class:`~dmixed.engines.dask.ragged.RaggedPacked`, the ragged
    tables per block instead of packed rows.  ``key_dtype``: the collection's group
    keys' dtype, which this partition's keys are conformed to
    (:func:`~dmixed.stats.keys.conform_keys`: text where it declares numbers is refused,
    an int64 partition of a float64 column cast), None to keep the partition's own.  A
    :class:`~dmixed.errors.DataError` names the partition, ``number``."""
    try:
        return _partition_partials(pdf, spec, slot_map, packed, n_buckets, std, key_dtype)
    except DataError as err:
        raise in_partition(err, number) from None


def _partition_partials(pdf, spec, slot_map, packed, n_buckets: int, std, key_dtype) -> tuple:
    prepare_worker()
    if isinstance(packed, RaggedPacked):
        return accumulate_ragged([pdf], spec, slot_map, packed, n_buckets, key_dtype, std)
    rows, n_dropped = partition_rows(pdf, spec, slot_map)
    if rows is None:
        empty = [(np.empty(0, dtype=object), np.empty((0, packed.width)))] * n_buckets
        report_partitions(0)
        routed = [None] * n_buckets
        glob_packed = packed.empty_global(n_dropped)
        return empty, glob_packed, std, routed, exchange_report(empty, routed)
    dm, keys, ztilde = rows
    if key_dtype is not None:
        keys = conform_keys(keys, key_dtype, spec.group_name)
    if std is None:
        std = partition_standardization(dm, spec)
    dm, std = weighted_in(dm, std, spec)
    report_partitions(len(keys))
    codes, uniq = pd.factorize(keys)
    widths = () if slot_map is None else slot_map.widths
    acc = np.zeros((packed.width, len(uniq)))
    glob = accumulate_padded_into(
        acc, codes, dm.endog, dm.exog, ztilde, dm.weights, std, widths, rank_one=True
    )
    values = np.ascontiguousarray(acc.T)
    parts = split_buckets(np.asarray(uniq), values, n_buckets)
    if not widths and ztilde.shape[1] >= 2:
        # the rows' sums about each group's shift, for the block's lossy groups
        side = rows_part(np.asarray(uniq), codes, dm.endog, dm.exog, ztilde, dm.weights, std)
        parts = parts if side is None else with_sides(parts, side)
    if glob["within"] is not None and ztilde.shape[1] >= 2:
        parts = rank_one_partials(parts)
    routed = [None] * n_buckets
    glob_packed = packed.pack_global(glob, dm.n_dropped)
    return parts, glob_packed, std, routed, exchange_report(parts, routed)


# ---------------------------------------------------------------------------
# Chains of partitions
# ---------------------------------------------------------------------------


def read_frames(
    frames,
    spec,
    slot_map,
    glob: np.ndarray,
    report,
    std,
    padded: bool = True,
    sample: MapSample | None = None,
    last: bool = True,
):
    """The partitions of a chain with rows left, one at a time: yields ``(dm, keys, Z̃,
    std)`` (:func:`partition_rows`; ``std`` the chain's map); counts the dropped rows
    into the packed global sums ``glob`` and the partitions without rows into
    ``report``.  Where ``std`` is not given, the rows are held in ``sample`` (a
    :class:`MapSample` of ``frames`` when None) until the map is chosen from them
    (:meth:`MapSample.take`), then yielded in it; ``last``: ``frames`` end the chain,
    so rows still held then are yielded in the map chosen from them all."""
    held = MapSample(frames) if sample is None else sample
    for pdf in frames:
        rows, n_dropped = partition_rows(pdf, spec, slot_map, padded)
        glob[GLOBAL_HEAD.index("n_dropped")] += n_dropped
        if rows is None:
            report.add(0)
            continue
        dm, keys, ztilde = rows
        if std is None:  # one map for the whole chain, from its first rows with spread
            if not held.take(dm, keys, ztilde, spec.intercept_columns()):
                continue
            std = held.choose(spec)
            for dm, keys, ztilde in held.released():
                dm, std = weighted_in(dm, std, spec)
                yield dm, keys, ztilde, std
            continue
        dm, std = weighted_in(dm, std, spec)
        yield dm, keys, ztilde, std
    if std is None and last and held.held:
        std = held.choose(spec)  # no spread in all the chain's rows: chosen from them all
        for dm, keys, ztilde in held.released():
            dm, std = weighted_in(dm, std, spec)
            yield dm, keys, ztilde, std


def accumulate_frames(
    frames,
    spec,
    slot_map: SlotMap | None,
    packed: PackedLayout,
    n_buckets: int,
    key_dtype,
    std: Standardization | None = None,
    exchange: str = "auto",
    shifts: bool = False,
    decided: bytes | None = None,
) -> tuple:
    """Add pandas partitions, one at a time, into one
    :class:`~dmixed.engines.dask.combine.GroupAccumulator`: the body of
    :func:`chain_partials` and :func:`resident_chain_partials` (:func:`accumulate_ragged`
    for a :class:`~dmixed.engines.dask.ragged.RaggedPacked` layout).  ``shifts``: the
    compiled passes keep the groups' sums about shifts of their own (the accumulator's
    ``keep_shifts``).  ``decided``: the chain's inputs
    (:func:`~dmixed.engines.dask.routing.decision_key`), under which its exchange
    decision is recalled and kept (:data:`~dmixed.engines.dask.routing.DECISIONS`)."""
    prepare_worker()
    if isinstance(packed, RaggedPacked):
        return accumulate_ragged(frames, spec, slot_map, packed, n_buckets, key_dtype, std)
    acc = GroupAccumulator(packed.width, key_dtype, shifts)
    router = Router(exchange, packed.width, recalled=DECISIONS.recall(decided))
    glob = packed.empty_global()
    report = BatchedReport()
    widths = () if slot_map is None else slot_map.widths
    sweep = ColumnSweep.of(spec)
    sample = MapSample(frames) if std is None else None

    def add(rows) -> None:
        nonlocal glob, std
        for dm, keys, ztilde, chosen in rows:
            std = chosen
            keys = acc.conform(keys, spec.group_name)
            if router.row_bytes is None:  # a partial's row as this chain will send it
                router.row_bytes = acc.row_bytes(dm, ztilde, std, widths)
            if router.take(keys, dm, ztilde, std):
                # a partial is now fewer bytes than the rows: add the buffered rows
                for pending in router.switch():
                    glob += packed.pack_global(_add_pending(acc, pending, std, widths))
            else:
                glob += packed.pack_global(acc.add(keys, dm, ztilde, std, widths))
            report.add(len(keys))

    try:
        for frame in itertools.chain(frames, [None]):  # None: the chain's end
            if frame is not None and sweep is not None and not acc.learned:
                got = sweep.columns(frame, acc.key_dtype)
                if sample and sample.held and sweep.completes(got, sample):
                    # the partition whose first rows complete the sample is swept as
                    # those after it: the held rows first, in the map chosen with them
                    add(read_frames([], spec, slot_map, glob, report, None, True, sample))
                if not (sample and sample.held):
                    # numpy columns summed (or routed) as they are, without their design
                    frame, std = sweep.add(frame, acc, std, glob, packed, report, router, got)
                    if frame is None:
                        continue
            batch, last = ([], True) if frame is None else ([frame], False)
            add(read_frames(batch, spec, slot_map, glob, report, std, True, sample, last))
    except DataError as err:
        raise _where(frames, err) from None
    report.flush()
    release_read_buffers()
    DECISIONS.record(decided, router)
    parts, routed = acc.result(n_buckets), router.result(n_buckets)
    return parts, glob, std, routed, exchange_report(parts, routed, router.reason())


class MapSample:
    """The rows a chain holds while it has no column map: the map is chosen from its
    first rows (at most :data:`~dmixed.stats.standardize.SAMPLE_ROWS`, those the
    design keeps), and from rows where a column is constant (one row, or a file of one
    user's events at one instant) that column's scale is its own size (a timestamp
    near 1.7e9 scaled by 2^31, not its spread): the statistics' and the optimizer's
    coordinates are then badly scaled, the curvatures of the Hessian at the optimum
    span orders of magnitude that say nothing about the data, and the optimizer may
    stop elsewhere.  So the chain holds its partitions' rows (:meth:`take`) until every
    column of ``y``, ``X`` and ``Z`` but the intercepts varies in them, or they fill the
    sample, and chooses the map from all it holds together (:meth:`choose`); the held
    rows are then summed in it, in their order (:meth:`released`).  A chain whose
    first partition has spread holds it alone: its map is chosen from it as it always
    was.  ``frames``: the chain's partitions; where a :class:`ChainFrames`, an error in
    released rows names their partition."""

    #: The place of rows held for the map's sample only (:meth:`completes`).
    SAMPLE_ONLY = object()

    def __init__(self, frames) -> None:
        self.chain = frames if isinstance(frames, ChainFrames) else None
        self.held: list[tuple] = []  # (dm, keys, Z̃, sample rows, partition)
        self.rows = 0
        self.low: np.ndarray | None = None
        self.high: np.ndarray | None = None

    def take(self, dm, keys, ztilde, intercepts: tuple[int, int]) -> bool:
        """Hold one partition's rows (``dm``, ``keys``, ``Z̃``: :func:`partition_rows`);
        whether the map can now be chosen: every column but the ``intercepts`` of
        ``exog`` and ``exog_re`` varies in the sample, ``endog`` too, or the sample is
        full."""
        take = min(SAMPLE_ROWS - self.rows, dm.endog.shape[0])
        where = None if self.chain is None else self.chain.current
        self.held.append((dm, keys, ztilde, take, where))
        return self._sampled(dm, intercepts)

    def completes(self, head, intercepts: tuple[int, int]) -> bool:
        """Whether the design rows ``head`` (the first
        ``SAMPLE_ROWS - rows`` rows of a partition, or all of a smaller one) complete the
        sample, as :meth:`take` of the partition would; where they do, they join the
        sample (:meth:`choose`) but not the rows :meth:`released` yields: the partition
        is summed in the chosen map by its caller.  Where they do not, nothing
        changes."""
        low, high, rows = self.low, self.high, self.rows
        take = min(SAMPLE_ROWS - rows, head.endog.shape[0])
        if self._sampled(head, intercepts):
            self.held.append((head, None, None, take, self.SAMPLE_ONLY))
            return True
        self.low, self.high, self.rows = low, high, rows
        return False

    def _sampled(self, dm, intercepts: tuple[int, int]) -> bool:
        """Add ``dm``'s rows that fit to the sample's extent; whether it is complete."""
        take = min(SAMPLE_ROWS - self.rows, dm.endog.shape[0])
        if take <= 0:
            return True
        xi, zi = intercepts
        x = np.delete(dm.exog[:take], xi, axis=1) if xi >= 0 else dm.exog[:take]
        z = np.delete(dm.exog_re[:take], zi, axis=1) if zi >= 0 else dm.exog_re[:take]
        y = np.asarray(dm.endog[:take], dtype=np.float64).reshape(-1, 1)
        low = np.concatenate([y.min(axis=0), x.min(axis=0), z.min(axis=0)])
        high = np.concatenate([y.max(axis=0), x.max(axis=0), z.max(axis=0)])
        if self.low is not None and self.high is not None:
            low, high = np.fmin(low, self.low), np.fmax(high, self.high)
        self.low, self.high = low, high
        self.rows += take
        return self.rows >= SAMPLE_ROWS or bool((high > low).all())

    def choose(self, spec) -> Standardization:
        """The map chosen from the held rows' sample taken together (from the one
        partition held, :func:`partition_standardization`)."""
        if len(self.held) == 1:
            return partition_standardization(self.held[0][0], spec)
        dms = [(dm, take) for dm, _, _, take, _ in self.held if take > 0]

        def head(of) -> np.ndarray:
            return np.concatenate([np.asarray(of(dm))[:take] for dm, take in dms])

        weights = None
        if dms[0][0].weights is not None:
            weights = head(lambda dm: np.broadcast_to(dm.weights, dm.endog.shape))
        vc = [
            np.concatenate([np.asarray(dm.vc_vals[j])[:take].ravel() for dm, take in dms])
            for j in range(len(dms[0][0].vc_vals))
        ]
        return Standardization.choose(
            head(lambda dm: dm.endog), head(lambda dm: dm.exog), head(lambda dm: dm.exog_re),
            spec.intercept_columns(), vc, column_references(spec), weights,
        )  # fmt: skip

    def released(self):
        """The held rows, ``(dm, keys, Z̃)`` a partition at a time in their order (its
        partition the one an error names), and none held after."""
        held, self.held = self.held, []
        now = None if self.chain is None else self.chain.current
        for dm, keys, ztilde, _, where in held:
            if where is self.SAMPLE_ONLY:  # (:meth:`completes`)
                continue
            if self.chain is not None:
                self.chain.current = where
            yield dm, keys, ztilde
        if self.chain is not None:  # the partition read last, which may not be held
            self.chain.current = now


def _add_pending(acc: GroupAccumulator, pending: PendingRows, std, widths) -> dict:
    """Add rows a chain buffered for routing into its accumulator, in its map ``std``;
    their global sums."""
    if pending.columns is None:
        return acc.add(pending.keys, pending.dm, pending.ztilde, std, widths)
    got = acc.add_columns(pending.keys, pending.columns, pending.plan, std)
    if got is not None and got[0] == len(pending.keys):
        return got[1]
    if got is not None:  # pragma: no cover - the columns were checked finite when taken
        raise RuntimeError("internal error: buffered rows not all summed")
    keys = text_objects(pending.keys)  # the design's way: keys as numpy
    dm = column_design(pending.plan, keys, pending.columns)
    return acc.add(keys, dm, dm.exog_re, std, widths)


def column_design(plan: ColumnPlan, keys: np.ndarray, columns: list) -> DesignMatrices:
    """The design matrices the raw ``columns`` of a :class:`ColumnSweep` make, every
    value finite (no row dropped, no component, no weights), with group ``keys``."""
    endog, exog, exog_re = plan.matrices(columns)
    return DesignMatrices(endog, exog, exog_re, [], [], keys, None, 0, None)


class ColumnSweep:
    """A chain's partitions, read as numpy columns
    (:func:`~dmixed.engines.dask.parquet_direct.read_columns`) or pandas frames of
    numpy columns, summed from the columns themselves where the spec's matrices are
    those columns and ones (:func:`~dmixed.design.columnar.column_sources`): one
    compiled sweep checks them finite and makes the global and per-group sums
    (:meth:`~dmixed.engines.dask.combine.GroupAccumulator.add_columns`), with no
    design matrix built; the chain's map, where not given, is chosen from the first
    partition's columns (:meth:`choose`).  The sums are those of the design's path
    (the per-group terms bit for bit, the gram to rounding).  Anything else goes the
    design's way."""

    def __init__(self, spec, names: list[str], plan: ColumnPlan) -> None:
        self.group_name = spec.group_name
        self.column_kinds = spec.column_kinds
        self.intercepts = spec.intercept_columns()
        self.names = names
        self.plan = plan

    @classmethod
    def of(cls, spec) -> ColumnSweep | None:
        """The sweep of ``spec``'s columns, None where its matrices are not plain
        columns."""
        sources = column_sources(spec)
        if sources is None:
            return None
        names, x_of, z_of = sources
        return cls(spec, names, ColumnPlan(tuple(x_of), tuple(z_of)))

    def columns(self, frame, key_dtype) -> tuple[np.ndarray, list] | None:
        """``(keys, columns)`` of the partition ``frame`` (the group keys conformed to
        ``key_dtype``, :func:`~dmixed.stats.keys.conform_keys`; the raw float64 columns
        the plan numbers, integer and float32 ones as float64), or None where the sweep
        does not read it (a column absent, not numbers or of another length, keys not
        integers, no rows)."""
        got = frame if isinstance(frame, dict) else None
        if isinstance(frame, pd.DataFrame):  # its numpy columns (views), as _design
            check_column_kinds(frame, self.column_kinds)
            got = frame_columns(frame, [*self.names, self.group_name])
        if got is None:
            return None
        groups = got.get(self.group_name)
        columns = [got.get(name) for name in self.names]
        if isinstance(groups, pa.Array):
            # text keys read as Arrow: the accumulator hashes them from their buffers
            keys = groups if key_dtype is object else text_objects(groups)
            n = len(groups)
        elif groups is None or groups.ndim != 1 or groups.dtype.kind not in "iu":
            return None
        else:
            # group_keys' dtypes, as columns_design: signed → int64, unsigned → uint64
            keys = np.asarray(groups, dtype=np.int64 if groups.dtype.kind == "i" else np.uint64)
            n = groups.shape[0]
        if not n or any(c is None or c.dtype.kind not in "fiu" or c.shape != (n,) for c in columns):
            return None
        if not isinstance(keys, pa.Array):  # (Arrow keys are text, as the collection's)
            keys = conform_keys(keys, key_dtype, self.group_name)
        return keys, [self._float(c, name) for c, name in zip(columns, self.names, strict=True)]

    @staticmethod
    def _float(values: np.ndarray, name: str) -> np.ndarray:
        """A column's float64 values, as columns_design makes them (integers beyond
        2**53 warned of, through the driver)."""
        if values.dtype == np.float64:
            return values
        relayed(warn_rounded_integers, values, name)
        return np.asarray(values, dtype=np.float64)

    def choose(self, columns: list) -> Standardization | None:
        """The map :func:`partition_standardization` chooses from the design of a
        partition of these columns, chosen from its first
        :data:`~dmixed.stats.standardize.SAMPLE_ROWS` rows' columns; None where one
        of their values is not finite (the design drops or refuses that row: its
        matrices' first rows are others), or where a column is constant in fewer rows
        than the sample (the design's way holds them, :class:`MapSample`)."""
        head = [c[:SAMPLE_ROWS] for c in columns]
        if not all(np.isfinite(c).all() for c in head):
            return None
        if head and head[0].shape[0] < SAMPLE_ROWS and any(c.min() == c.max() for c in head):
            return None
        endog, exog, exog_re = self.plan.matrices(head)
        # as partition_standardization of columns_design's matrices: no component, no
        # reference (column_sources refuses both)
        return Standardization.choose(endog, exog, exog_re, self.intercepts, [], None)

    def completes(self, got, sample: MapSample) -> bool:
        """Whether the first rows of a partition's columns ``got`` (:meth:`columns`)
        complete the chain's held ``sample`` (:meth:`MapSample.completes`), where its
        design's first rows are those columns' (all finite)."""
        if got is None:
            return False
        keys, columns = got
        head = [c[: SAMPLE_ROWS - sample.rows] for c in columns]
        if not all(np.isfinite(c).all() for c in head):
            return False  # the design drops or refuses one of these rows
        dm = column_design(self.plan, keys[: head[0].shape[0]], head)
        return sample.completes(dm, self.intercepts)

    def add(
        self, frame, acc: GroupAccumulator, std, glob, packed, report, router, got=False
    ) -> tuple:
        """Add the partition ``frame`` into ``acc`` (its global sums into ``glob``) where
        the sweep applies, in the map ``std`` (None: :meth:`choose`'s of these
        columns), or, while ``router`` routes, buffer its raw columns there when every
        value is finite; returns ``(left, std)``: what is left for the design's way,
        None (all taken), the rows from the chunk of the first value that is not finite
        on (which the design drops or refuses) or ``frame`` itself, and the map.
        ``got``: :meth:`columns` of ``frame`` where already read."""
        if got is False:
            got = self.columns(frame, acc.key_dtype)
        if got is None:
            return frame, std
        keys, columns = got
        n = len(keys)
        chosen = self.choose(columns) if std is None else std
        if chosen is None or not acc.terms.applies_columns(n, len(self.plan.z_of), chosen):
            return frame, std
        if router.routing:
            # columns read directly are views of pyarrow's pool, which hands pages back
            # to the system once a fit is over: kept past the next read, they would make
            # the next reads fault fresh pages in, slow in a virtual machine whose host
            # took them back (benchmarks/RESULTS.md, chain-s37).  Copied (and checked
            # finite in the same pass) into a buffer earlier data passes' held columns
            # had, the pool serves every read from the pages of the read before, and
            # the copy faults no fresh pages either.
            arrow = isinstance(keys, pa.Array)  # immutable: held as read, not copied
            held = held_columns(None if arrow else keys, columns)
            if held is None:
                return frame, std  # the design drops or refuses those rows
            kept, columns = held
            keys = keys if arrow else kept
            self._route(keys, columns, acc, chosen, glob, packed, router)
            report.add(n)
            return None, chosen
        got = acc.add_columns(keys, columns, self.plan, chosen)
        if got is None:  # pragma: no cover - applies_columns said it would
            return frame, std
        done, sums = got
        glob += packed.pack_global(sums)
        if done == n:
            report.add(n)
            return None, chosen
        report.rows += done  # the partition is counted with the rows left
        if isinstance(frame, pd.DataFrame):
            return frame.iloc[done:], chosen
        return {name: col[done:] for name, col in frame.items()}, chosen

    def _route(self, keys, columns, acc, std, glob, packed, router) -> None:
        """:meth:`add` while ``router`` routes: the raw columns (all finite) buffered,
        and the buffered rows added once a partial is the cheaper form."""
        if router.row_bytes is None:  # a partial's row as this chain will send it
            head = [c[:PLAN_SAMPLE] for c in columns]
            dm = column_design(self.plan, text_objects(keys[:PLAN_SAMPLE]), head)
            router.row_bytes = acc.row_bytes(dm, dm.exog_re, std)
        router.take_columns(keys, columns, self.plan, std)
        for pending in router.switch():
            glob += packed.pack_global(_add_pending(acc, pending, std, ()))


def accumulate_ragged(
    frames, spec, slot_map: SlotMap, rp: RaggedPacked, n_buckets: int, key_dtype, std=None
) -> tuple:
    """:func:`accumulate_frames` summing the variance components ragged
    (:mod:`~dmixed.engines.dask.ragged`): ``parts[b]`` are block ``b``'s tables; no rows
    are routed.  ``key_dtype`` None: the keys' own (one partition)."""
    acc = None
    glob = rp.group.empty_global()
    report = BatchedReport()
    try:
        for dm, keys, _, chosen in read_frames(frames, spec, slot_map, glob, report, std, False):
            std = chosen
            if key_dtype is not None:
                keys = conform_keys(keys, key_dtype, spec.group_name)
            parts, sums = ragged_rows(dm, keys, slot_map, rp, std, n_buckets)
            glob += rp.group.pack_global(sums)
            if acc is None:
                dtype = keys.dtype if key_dtype is None else key_dtype
                acc = RaggedAccumulator(rp, n_buckets, dtype, spec.group_name)
            acc.add(parts)
            report.add(len(keys))
    except DataError as err:
        raise _where(frames, err) from None
    report.flush()
    if acc is None:
        dtype = object if key_dtype is None else key_dtype
        parts = [rp.empty(dtype)] * n_buckets
    else:
        parts = acc.result()
    report_sent = {
        "form": "partials",
        "bytes": [tables_bytes(t) for t in parts],
        "why": "components summed ragged are sent as partials",
        "routed_rows": 0,
    }
    return parts, glob, std, [None] * n_buckets, report_sent


def chain_partials(
    pieces: Pieces,
    spec,
    slot_map: SlotMap | None,
    packed: PackedLayout,
    n_buckets: int,
    key_dtype,
    std: Standardization | None = None,
    exchange: str = "auto",
    reads: ParquetReads | None = None,
    shifts: bool = False,
) -> tuple:
    """Partial statistics of a chain of partitions, read one after the other here.

    Every partition is read, reduced into the chain's accumulator and dropped, so a
    worker holds one partition plus one row of statistics per group seen.  Same output
    as :func:`partition_partials`.  ``reads``: the partitions read as numpy columns
    (:mod:`~dmixed.engines.dask.parquet_direct`), where they can be; ``shifts``: as
    :func:`accumulate_frames`'.  A chain of plain Parquet reads whose inputs are those
    of a chain of an earlier pass here starts in the exchange form that one ended in
    (:mod:`~dmixed.engines.dask.routing`).
    """
    decided = None
    # Only a packed chain routes and recalls (a ragged one ignores the key): no stat
    # of its files, no pickling of its spec and slot map otherwise.
    if exchange == "auto" and reads is not None and isinstance(packed, PackedLayout):
        inputs = (spec, slot_map, packed, n_buckets, np.dtype(key_dtype).str, std, shifts)
        decided = decision_key(reads, *inputs)
    return accumulate_frames(
        chain_frames(pieces, reads),
        spec,
        slot_map,
        packed,
        n_buckets,
        key_dtype,
        std,
        exchange,
        shifts,
        decided,
    )


class ChainFrames:
    """A chain's partitions, one at a time (an iterable): numpy columns where ``reads``
    gives a plain Parquet read of the partition and the file matches it
    (:func:`~dmixed.engines.dask.parquet_direct.read_columns`), else the pandas frame
    its piece computes (from ``frames``, the persisted partitions, where given).
    :meth:`located` words an error for the partition last yielded.  ``changed_files``:
    whether a file gone, cut short or rewritten since the driver planned the read is
    worded as the fit's :class:`~dmixed.errors.DataError`; else what the reader raised
    is left as it is (the level scan, which the task of one partition leaves so)."""

    def __init__(
        self,
        pieces: Pieces,
        reads: ParquetReads | None = None,
        frames=None,
        changed_files: bool = True,
    ) -> None:
        self.pieces = pieces
        self.reads = [None] * len(pieces) if reads is None else reads.items
        self.frames = frames
        self.changed_files = changed_files
        self.current = None

    def __iter__(self):
        frames = [None] * len(self.pieces) if self.frames is None else self.frames
        for piece, read, frame in zip(self.pieces.items, self.reads, frames, strict=True):
            self.current = piece, read
            yield self._computed(piece, read, frame)

    def _computed(self, piece, read, frame):
        """One partition; what Dask's reader raises for a file unlike the first (lacking
        a model column, a CSV column of another type) as a
        :class:`~dmixed.errors.DataError`
        (:func:`~dmixed.design.partitions.reader_error`), and for a file gone, cut short
        or rewritten since the driver planned the read, the error of a direct read of it
        (:func:`~dmixed.engines.dask.parquet_direct.unreadable_file`)."""
        graph, out_key, leaf_key = piece
        try:
            if self.frames is not None:
                return compute_piece(graph, out_key, frame, leaf_key)
            columns = None if read is None else read_columns(read)
            return compute_piece(graph, out_key) if columns is None else columns
        except (KeyError, ValueError, OSError) as exc:  # a file unlike the first, or
            # changed since the plan (not a DataError): located as a direct read's error
            err = reader_error(exc)
            if err is None and self.frames is None and self.changed_files:
                err = unreadable_file(exc, "Dask's reader")
            if err is None:
                raise
            raise err from None

    @property
    def number(self) -> int | None:
        """The number of the partition last yielded in the collection (None: none yet,
        or not known)."""
        if self.current is None:
            return None
        out_key = self.current[0][1]
        return out_key[-1] if isinstance(out_key, tuple) else None

    def located(self, err: DataError) -> DataError:
        """``err`` naming the partition last yielded and, where Dask's Parquet reader
        reads it, its file (:func:`~dmixed.design.origin.in_partition`)."""
        if self.current is None:
            return err
        (graph, _, _), read = self.current
        number = self.number
        file = read[0] if read is not None else piece_file(graph)
        return in_partition(err, number, file)


def _where(frames, err: DataError) -> DataError:
    return frames.located(err) if isinstance(frames, ChainFrames) else err


def chain_frames(
    pieces: Pieces, reads: ParquetReads | None = None, changed_files: bool = True
) -> ChainFrames:
    """A chain's partitions, one at a time (:class:`ChainFrames`)."""
    return ChainFrames(pieces, reads, changed_files=changed_files)


def chain_summary(pieces: Pieces, kinds, plan: ScanPlan, to_scan: list) -> PartitionSummary:
    """The level scan of a run of partitions read one after the other here (as
    :func:`chain_partials` reads them): each partition's
    :func:`~dmixed.design.scan.summarize_partition`, given its number in the
    collection as the task of one partition is (its errors name it alike), merged
    (:class:`~dmixed.design.scan.SummaryMerge`) as they come, each read once.  What
    Dask's reader raises is left to the driver to locate, as for the task of one
    partition, and a file gone or changed since the plan raises what the reader raised
    (an ``OSError``), as it does there."""
    frames = chain_frames(pieces, changed_files=False)
    merge = SummaryMerge()
    for pdf in frames:
        merge.add(summarize_partition(pdf, kinds, plan, to_scan, frames.number))
        del pdf  # the last partition too is freed before its read buffers are given back
    release_read_buffers()
    return merge.summary()


def resident_chain_partials(
    pieces: Pieces,
    spec,
    slot_map,
    packed: PackedLayout,
    n_buckets: int,
    key_dtype,
    std: Standardization | None,
    exchange: str,
    shifts: bool,
    *frames,
) -> tuple:
    """:func:`chain_partials` for partitions already in this worker's memory (persisted).

    ``frames`` are the persisted partitions (task dependencies: no copy when they live
    here); ``pieces[j]`` is ``(graph, out_key, leaf_key)``: the partition-wise steps from
    persisted partition j to the collection's partition j (projections, filters,
    assignments, …), culled to that partition, which run here one partition at a time
    with the persisted frame in place of ``leaf_key``.
    """
    partitions = ChainFrames(pieces, frames=frames)
    return accumulate_frames(
        partitions, spec, slot_map, packed, n_buckets, key_dtype, std, exchange, shifts
    )


# ---------------------------------------------------------------------------
# Variance components: the (group, column) pairs present
# ---------------------------------------------------------------------------


def vc_ncols(spec) -> list[int]:
    """Per variance component, the pair-key multiplier (its number of global columns)."""
    # any upper bound of the column ids works, the global count is one
    return [max(len(names), 1) for names in spec.vc_column_names]


def empty_pairs(key_dtype) -> pd.DataFrame:
    """A frame of no (group key, component, column) triples: the meta of
    :func:`partition_vc_pairs`."""
    frame = pd.DataFrame({c: np.empty(0, dtype=np.int64) for c in ("comp", "col")})
    frame.insert(0, KEY_COLUMN, key_series(np.empty(0, dtype=key_dtype), KEY_COLUMN))
    return frame


def partition_vc_pairs(
    pdf: pd.DataFrame, spec, key_dtype, number: int | None = None
) -> pd.DataFrame:
    """Distinct (group key, component, column) triples with a non-zero entry, and
    triples of component :data:`OVERLAP` where rows have two entries (column:
    :func:`~dmixed.engines.dask.crossed.overlap_marks`).  A
    :class:`~dmixed.errors.DataError` names the partition, ``number`` (its position in
    the collection's optimized partitions, as the driver finds its file:
    :func:`~dmixed.design.origin.located`)."""
    try:
        return _vc_pairs(pdf, spec, key_dtype)
    except DataError as err:
        raise in_partition(err, number) from None


def _vc_pairs(pdf: pd.DataFrame, spec, key_dtype) -> pd.DataFrame:
    if len(pdf) == 0:
        return empty_pairs(key_dtype)
    check_column_kinds(pdf, spec.column_kinds)
    dm = relayed(spec.transform, pdf)
    keys = key_values(dm.groups)
    codes, uniq = pd.factorize(keys)
    frames = []
    for comp, (cols, vals, ncols) in enumerate(
        zip(dm.vc_cols, dm.vc_vals, vc_ncols(spec), strict=True)
    ):
        pk = present_pairs(codes, cols, vals, ncols)
        frames.append(
            pd.DataFrame(
                {
                    KEY_COLUMN: key_series(np.asarray(uniq)[pk // ncols], KEY_COLUMN),
                    "comp": np.full(pk.size, comp, dtype=np.int64),
                    "col": pk % ncols,
                }
            )
        )
    marks = overlap_marks(dm.vc_cols, dm.vc_vals)
    if marks:  # rows with two entries: which components, marked as component −1
        frames.append(
            pd.DataFrame(
                {
                    KEY_COLUMN: key_series(np.asarray(uniq)[np.zeros(len(marks), int)], KEY_COLUMN),
                    "comp": np.full(len(marks), OVERLAP, dtype=np.int64),
                    "col": np.asarray(marks, dtype=np.int64),
                }
            )
        )
    if not frames:
        return empty_pairs(key_dtype)
    return pd.concat(frames, ignore_index=True)


#: Partitions' triples a chain holds before it collapses them to the distinct ones
#: (:func:`chain_vc_pairs`).
PAIRS_HELD = 8


def chain_vc_pairs(pieces: Pieces, spec, key_dtype) -> pd.DataFrame:
    """:func:`partition_vc_pairs` of a run of partitions read one after the other here
    (as :func:`chain_partials` reads them): their distinct triples, each partition's in
    turn.  A :class:`~dmixed.errors.DataError` names the partition and its file
    (:meth:`ChainFrames.located`)."""
    frames = chain_frames(pieces)
    found: list[pd.DataFrame] = []
    try:
        for pdf in frames:
            found.append(_vc_pairs(pdf, spec, key_dtype))
            if len(found) == PAIRS_HELD:
                # a group's triples recur in every file holding its rows: collapse them
                # as they come, so a chain holds about its distinct triples, not the sum
                # of its files' (the slot map numbers them independently of their order)
                found = [pd.concat(found, ignore_index=True).drop_duplicates(ignore_index=True)]
    except DataError as err:
        raise frames.located(err) from None
    if not found:
        return empty_pairs(key_dtype)
    return pd.concat(found, ignore_index=True).drop_duplicates(ignore_index=True)


def distinct_pairs(*found: pd.DataFrame) -> pd.DataFrame:
    """The distinct triples of several partitions' or chains' (:func:`partition_vc_pairs`,
    :func:`chain_vc_pairs`), in their order."""
    pairs = pd.concat(found, ignore_index=True)
    return pairs[~pairs.duplicated()].reset_index(drop=True)


def chained_slot_plan(ncols: list[int], *chains: pd.DataFrame) -> tuple[SlotMap, RowOverlap]:
    """:func:`build_slot_plan` of the triples of every chain (:func:`chain_vc_pairs`),
    in chain order."""
    return build_slot_plan(distinct_pairs(*chains), ncols)


def build_slot_map(pairs: pd.DataFrame, ncols: list[int]) -> SlotMap:
    """The :class:`~dmixed.stats.slots.SlotMap` of all distinct pairs of the data."""
    pairs = pairs[pairs["comp"].to_numpy() != OVERLAP]
    return SlotMap.from_pairs(
        pairs[KEY_COLUMN].to_numpy(), pairs["comp"].to_numpy(), pairs["col"].to_numpy(), ncols
    )


def build_slot_plan(pairs: pd.DataFrame, ncols: list[int]) -> tuple[SlotMap, RowOverlap]:
    """:func:`build_slot_map` and which variance components have entries in one row
    (:func:`partition_vc_pairs` marks them; false: no row has two entries)."""
    marks = pairs["col"].to_numpy()[pairs["comp"].to_numpy() == OVERLAP]
    return build_slot_map(pairs, ncols), read_overlap(marks, len(ncols))
