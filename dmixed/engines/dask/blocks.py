"""Blocks: the combined statistics of one bucket of groups, and their assembly on the driver.

Each bucket's sums (:func:`~dmixed.engines.dask.combine.combine_partials`) become a
:class:`Block` on a worker: ``zz`` and ``zxy`` in plain layout plus the block's labels,
row counts and share of the global sums.  The driver gathers only the small part of
every block once (:func:`block_summary`) and puts the groups in sorted key order, the
order of the in-process path (:func:`assemble_blocks`).  numpy and pandas only.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ...kernels import StatsBlock
from ...kernels.groups import ChunkSpans
from ...kernels.term_table import TermRows, as_packed, merge_term_rows, shifted_sums
from ...kernels.vc_blocks import RaggedVC
from ...kernels.vc_border import CrossedVC
from ...stats import GlobalStats, Layout
from ...stats.keys import order_distinct, settled_keys
from ...stats.packed import PackedLayout
from ...stats.standardize import Standardization
from ..local import inexact_count, local_engine, rank_one_engine, refuse_inexact
from . import handover
from .combine import root_term_parts
from .tuning import prepare_worker


@dataclass
class Block:
    """Combined statistics of the groups of one output partition, on a worker.

    ``zz`` (G_b, r, r) and ``zxy`` (G_b, r, p+1) in plain layout, or ``stats`` (the
    same sums as the kernels hold them, :func:`packed_stats`: what the evaluator of a
    block without variance components takes as it is), or ``ragged`` (a
    :class:`~dmixed.kernels.vc_blocks.RaggedVC`, variance components summed ragged by the
    data pass, :mod:`~dmixed.engines.dask.ragged`), or ``crossed`` (a
    :class:`~dmixed.kernels.vc_border.CrossedVC`, components sharing rows,
    :mod:`~dmixed.engines.dask.crossed`); ``labels``, ``nobs`` and the block's
    share of the global sums are what the driver gathers once (:func:`block_summary`:
    the labels and row counts as :class:`NarrowInts` on their way).  ``within``: block
    0's the global within-group sums, the others' their combines' correction of them;
    None where the rows kept none (a block of several random-design columns with one
    took the rank-one forms' sums: :func:`~dmixed.engines.dask.combine.combine_exact`).
    """

    labels: np.ndarray
    nobs: np.ndarray
    xyxy: np.ndarray
    n: int
    sum_log_weights: float
    n_dropped: int = 0
    zz: np.ndarray | None = None
    zxy: np.ndarray | None = None
    standardization: Standardization | None = None
    within: np.ndarray | None = None
    exchange: dict | None = None
    ragged: RaggedVC | None = None
    crossed: CrossedVC | None = None
    stats: StatsBlock | None = None
    column_sums: np.ndarray | None = None
    #: the lossy groups' sums about shifts of their own, for a block of ``zz`` and
    #: ``zxy``: ``use_shifted``'s arguments (:func:`lossy_shifts`), or None
    shifted: tuple | None = None
    #: a summary's count of the block's lossy groups that its evaluator would hold
    #: without the forms they need (:func:`inexact_groups`); 0 in the block itself
    inexact: int = 0


def packed_stats(values: np.ndarray, packed: PackedLayout) -> StatsBlock:
    """The kernels' :class:`~dmixed.kernels.StatsBlock` of packed rows, in one pass.

    Parameters
    ----------
    values : ndarray (G, width) or TermRows
        Packed rows (:class:`~dmixed.stats.packed.PackedLayout`), one per group, or
        rows of terms (:class:`~dmixed.kernels.term_table.TermRows`: each entry its
        term times its factor, the packed value).
    packed : PackedLayout

    Returns
    -------
    StatsBlock
        Entry-major chunks of :data:`~dmixed.kernels.groups.GROUP_CHUNK` groups:
        ``zz[a, b, g] = zz[b, a, g]`` the packed triangle's entry, ``zxy[a, j, g]`` the
        packed ``Z̃'[X y]`` entry ``(a, j)`` of group ``g`` — the block
        ``StatsBlock(packed.unpack_zz(values), packed.unpack_zxy(values))`` value for
        value, without the per-group ``(G, r, r)`` array and its transposes: each chunk's
        columns are copied once (cache-resident), ``r² + r·k`` of them.
    """
    columns = entry_columns(packed)
    if isinstance(values, TermRows):  # packed column c: term columns[c] times factors[c]
        source, factors = values.rows, values.factors[columns]
        columns = values.columns[columns]
    else:
        source, factors = values, np.ones(columns.size)
    chunks = []
    for at in ChunkSpans.cut(source.shape[0]).slices():
        part = source[at]
        out = np.empty((columns.size, part.shape[0]))
        for row, (col, factor) in enumerate(zip(columns.tolist(), factors.tolist(), strict=True)):
            if factor == 1.0:
                out[row] = part[:, col]
            else:
                np.multiply(part[:, col], factor, out=out[row])
        chunks.append(out)
    return _held_stats(chunks, packed)


def entry_columns(packed: PackedLayout) -> np.ndarray:
    """The packed column of every entry of ``zz`` (row-major, both triangles) and then of
    ``zxy``: the rows of a chunk of :func:`packed_stats`, ``r² + r·k`` of them."""
    r = packed.r
    tri, cross = packed.slices()
    entry = np.empty((r, r), dtype=np.int64)
    rows, cols = packed.zz_index
    entry[rows, cols] = entry[cols, rows] = tri.start + np.arange(rows.size)
    return np.array([*entry.ravel().tolist(), *range(cross.start, cross.stop)], dtype=np.int64)


def _held_stats(chunks: list[np.ndarray], packed: PackedLayout) -> StatsBlock:
    """The :class:`~dmixed.kernels.StatsBlock` of chunks of :func:`entry_columns` rows
    (views of them: no copy)."""
    r, k = packed.r, packed.k
    return StatsBlock.from_chunks(
        [(c[: r * r].reshape(r, r, -1), c[r * r :].reshape(r, k, -1)) for c in chunks]
    )


def merged_block(
    parts: list, packed: PackedLayout
) -> tuple[np.ndarray, np.ndarray, StatsBlock] | None:
    """``(labels, nobs, stats)`` of the partials ``parts`` (``(keys, TermRows)`` of one
    plan, integer keys) added by key straight into the kernels' layout, in one pass
    (:func:`~dmixed.kernels.term_table.merge_term_rows`): what
    :func:`~dmixed.engines.dask.combine.combine_terms` and then :func:`to_block` with
    ``held`` make of them, bit for bit, without the table of the sums between and the
    pass over it.  None where a part's keys are not increasing (then those two)."""
    dtype = parts[0][0].dtype
    signed = dtype.kind == "i" or (dtype.kind == "u" and dtype.itemsize < 8)  # int64 holds it
    if not signed or any(k.dtype != dtype for k, _ in parts):
        return None
    keys = [k.astype(np.int64, copy=False) for k, _ in parts]
    terms = [v for _, v in parts]
    got = merge_term_rows(keys, terms, entry_columns(packed))  # chunks of the size when called
    if got is None:
        return None
    merged, counts, chunks = got
    nobs = np.rint(counts).astype(np.int64)
    stats = _held_stats(chunks, packed)
    shifted_lossy(stats, merged, nobs, keys, terms, packed)
    return merged.astype(dtype), nobs, stats


def shifted_lossy(
    stats: StatsBlock, labels: np.ndarray, nobs: np.ndarray, keys: list, terms: list, packed
) -> None:
    """Let the lossy and near-lossy groups of ``stats`` (:func:`_lossy`; labels
    ``labels``, rows ``nobs``) take the centred forms from their sums about shifts of
    their own (:meth:`~dmixed.kernels.StatsBlock.use_shifted`), read from the rows of
    terms ``terms`` they were added from (each with its increasing int64 ``keys``,
    :func:`~dmixed.kernels.term_table.shifted_sums`).  Nothing where no group is lossy
    or near lossy (:meth:`~dmixed.kernels.StatsBlock.near_lossy_mask`; one check of
    every chunk: the common case), the rows keep no such sums or a lossy group's lack
    some of its rows (the block's summary then counts the lossy groups,
    :func:`inexact_groups`, and the driver refuses them); a near-lossy group whose
    sums lack rows keeps its plain sums (:func:`_shift_arguments`)."""
    if packed.r < 2 or not terms or any(t.shifted is None for t in terms):
        return
    nobs = np.asarray(nobs)
    found = _lossy(stats, nobs)
    if found is None:
        return
    sel, lossy = found
    wanted = np.asarray(labels)[sel].astype(np.int64)
    side = shifted_sums(terms, keys, wanted)
    args = None if side is None else _shift_arguments(sel, lossy, side, nobs[sel], packed)
    if args is not None:
        stats.use_shifted(*args)


def _shift_arguments(
    sel: np.ndarray, lossy: np.ndarray, side, nobs: np.ndarray, packed: PackedLayout
) -> tuple | None:
    """:meth:`~dmixed.kernels.StatsBlock.use_shifted`'s arguments for the groups found
    by :func:`_lossy` (``sel`` (L,) their positions, ``lossy`` (L,) which are lossy)
    from ``side`` (a :class:`~dmixed.kernels.shifts.ShiftPart` of those groups, in
    their order) and ``nobs`` (L,) their rows: the groups whose sums about their shifts
    hold all their rows take the centred forms; None where a lossy group's do not (the
    block then takes none, and its lossy groups are refused as without such sums) or
    none is left.  A group only near lossy without all its rows keeps the uncentred
    forms, as it would below no bound, and does not stop the others."""
    whole = np.asarray(side.count) == np.asarray(nobs)
    if not whole[lossy].all():
        return None
    keep = np.flatnonzero(whole)
    if not keep.size:
        return None
    mine = side.take(keep)
    sums = side.layout.centred_inputs(mine, packed.r, packed.k)
    return sel[keep], sums, side.layout.e, side.layout.shared, lossy[keep]


def _lossy(stats: StatsBlock, nobs: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The positions of the groups of ``stats`` that take the centred forms where their
    sums about their shifts are at hand (lossy or near lossy,
    :meth:`~dmixed.kernels.StatsBlock.near_lossy_mask`, ``nobs`` their rows) and which of them
    are lossy (below :data:`~dmixed.kernels.conditionals.LOSSY_DETERMINANT`: bool, one
    per position), or None where there are none."""
    masks = stats.centred_masks(nobs)
    if masks is None:
        return None
    sel = np.flatnonzero(masks[0])
    return sel, masks[1][sel]


def lossy_shifts(stats: StatsBlock, nobs: np.ndarray, side, packed: PackedLayout) -> tuple | None:
    """:meth:`~dmixed.kernels.StatsBlock.use_shifted`'s arguments for the lossy and
    near-lossy groups of ``stats`` (:func:`~dmixed.kernels.lossy_groups`; ``nobs``
    their rows) from
    ``side`` (a :class:`~dmixed.kernels.shifts.ShiftPart` of the block's groups, in its
    order), for the groups lossy or near lossy (:func:`_lossy`) whose
    sums about their shifts hold all their rows, with which of them are lossy (the
    fifth entry, :func:`_lossy`): None where none is below it, where a lossy group's
    sums do not hold all its rows (then refused, as without them) or where no group
    is left (:func:`_shift_arguments`: a near-lossy group without all its rows keeps
    the uncentred forms)."""
    nobs = np.asarray(nobs)
    found = _lossy(stats, nobs)
    if found is None:
        return None
    sel, lossy = found
    return _shift_arguments(sel, lossy, side.take(sel), nobs[sel], packed)


def to_block(
    combined: tuple,
    packed: PackedLayout,
    global_sums: np.ndarray | None = None,
    standardization: Standardization | None = None,
    exchange: dict | None = None,
    held: bool = False,
) -> Block:
    """numpy block of one output partition from its ``(keys, packed rows)``; block 0 also
    carries the (packed) global sums and what the tasks sent to the bucket nodes
    (``exchange``, :func:`~dmixed.engines.dask.routing.exchange_summary`).
    ``standardization``: the columns' map the statistics are in.  ``held``: the sums
    as the kernels hold them (``Block.stats``, :func:`packed_stats`) instead of ``zz``
    and ``zxy`` (for blocks without variance components, whose evaluator then takes
    them as they are).  A fourth entry of ``combined``: the groups' sums about their
    shifts (:class:`~dmixed.kernels.shifts.ShiftPart`), which its lossy groups take
    (:func:`lossy_shifts`)."""
    labels, values = combined[0], combined[1]
    side = combined[3] if len(combined) > 3 else None
    terms = values if isinstance(values, TermRows) else None
    if terms is not None and not held:
        values, terms = terms.packed(), None
    if side is not None:
        nobs = packed.unpack_nobs(as_packed(values))
        stats = packed_stats(values, packed)
        shifts = lossy_shifts(stats, nobs, side, packed)
        rest = (combined[2], packed, global_sums, standardization, exchange)
        if held:
            if shifts is not None:
                stats.use_shifted(*shifts)
            return _block(labels, nobs, *rest, stats=stats)
        zz, zxy = packed.unpack_zz(values), packed.unpack_zxy(values)
        block = _block(labels, nobs, *rest, zz=zz, zxy=zxy)
        block.shifted = shifts
        return block
    return _block(
        labels,
        packed.unpack_nobs(values) if terms is None else _nobs(terms),
        combined[2] if len(combined) > 2 else None,
        packed,
        global_sums,
        standardization,
        exchange,
        zz=None if held else packed.unpack_zz(values),
        zxy=None if held else packed.unpack_zxy(values),
        stats=_held_stats_of(labels, values, packed) if held else None,
    )


def _held_stats_of(labels, values, packed: PackedLayout) -> StatsBlock:
    """:func:`packed_stats` of a held block's values, its lossy groups taking their sums
    about shifts of their own where its rows of terms keep them (:func:`shifted_lossy`;
    integer labels, increasing)."""
    stats = packed_stats(values, packed)
    labels = np.asarray(labels)
    if isinstance(values, TermRows) and values.shifted is not None:
        held_shifted_lossy(stats, labels, _nobs(values), values, packed)
    return stats


def held_shifted_lossy(
    stats: StatsBlock, labels: np.ndarray, nobs: np.ndarray, values: TermRows, packed
) -> None:
    """:func:`shifted_lossy` for a block held as one table's rows of terms ``values``,
    row ``i`` that of label ``labels[i]``: each lossy group's sums about its shift read
    at its own row, so any labels do (text, or integers in the order a chain's look-up
    gave them), with no look-up of keys."""
    if packed.r < 2:
        return
    nobs = np.asarray(nobs)
    found = _lossy(stats, nobs)
    if found is None:
        return
    sel, lossy = found
    side = values.shifted.part(np.asarray(labels)[sel], np.asarray(values.rows)[sel])
    args = _shift_arguments(sel, lossy, side, nobs[sel], packed)
    if args is not None:
        stats.use_shifted(*args)


def _block(
    labels: np.ndarray,
    nobs: np.ndarray,
    correction: np.ndarray | None,
    packed: PackedLayout,
    global_sums: np.ndarray | None = None,
    standardization: Standardization | None = None,
    exchange: dict | None = None,
    **sums,
) -> Block:
    """:func:`to_block`'s block of per-group ``sums`` (``zz`` and ``zxy``, or
    ``stats``), with the bucket's share of the global sums and its combines'
    ``correction`` of the within-group sums."""
    within = None if correction is None else np.array(correction)
    column_sums = None
    if global_sums is None:
        xyxy, n, slw, dropped = np.zeros((packed.k, packed.k)), 0, 0.0, 0
    else:
        xyxy, n, slw, dropped = packed.unpack_global(global_sums)
        column_sums = packed.unpack_column_sums(global_sums)
        total = packed.unpack_within(global_sums)
        within = None if total is None else total + (0.0 if within is None else within)
    return Block(
        labels=labels,
        nobs=nobs,
        xyxy=xyxy,
        n=n,
        sum_log_weights=slw,
        n_dropped=dropped,
        standardization=standardization,
        within=within,
        exchange=exchange,
        column_sums=column_sums,
        **sums,
    )


def _nobs(terms: TermRows) -> np.ndarray:
    """Row counts (G,) int64 of term rows (packed column 0, as
    :meth:`~dmixed.stats.packed.PackedLayout.unpack_nobs`)."""
    return np.rint(terms.column(0)).astype(np.int64)


def combined_block(block_args: dict, combine, *args) -> Block:
    """``to_block(combine(*args), **block_args)``: the root of a bucket's tree of
    combines and its block in one task (one pass less over the bucket's sums between
    tasks, and one task less to schedule).  A held block of the chains' rows of terms
    is made by :func:`merged_block` where it can be: the combine and the block's
    layout in one pass.  The worker is prepared as a chain's
    (:func:`~dmixed.engines.dask.tuning.prepare_worker`): it may have read no chain."""
    prepare_worker()
    parts = root_term_parts(combine, *args) if block_args.get("held") else None
    merged = None if parts is None else merged_block(parts, block_args["packed"])
    if merged is None:
        return to_block(combine(*args), **block_args)
    labels, nobs, stats = merged
    rest = {key: value for key, value in block_args.items() if key != "held"}
    # rows of terms carry no within-group sums (combine_terms): nothing to correct
    return _block(labels, nobs, None, stats=stats, **rest)


@dataclass
class NarrowInts:
    """Integers sent in the narrowest dtype that holds them, exactly: increasing keys
    as their first value and the steps between them (group ids a few apart: one byte
    each, not eight), other integers as they are.  :meth:`array` gives the original
    values in their original dtype, value for value.

    Attributes
    ----------
    values : ndarray
        The steps (``first`` given) or the values, in the narrow dtype.
    dtype : numpy.dtype
        The original dtype.
    first : int or None
        The first value of increasing keys (then ``values`` are the steps after it).
    """

    values: np.ndarray
    dtype: np.dtype
    first: int | None = None

    @classmethod
    def of(cls, values: np.ndarray) -> NarrowInts | np.ndarray:
        """``values`` narrowed, or as they are (not integers, empty, or a span past
        int64's)."""
        if values.dtype.kind not in "iu" or values.size == 0:
            return values
        lo, hi = int(values.min()), int(values.max())
        if lo < _INT64.min or hi > _INT64.max or hi - lo > _INT64.max:
            return values
        wide = values.astype(np.int64, copy=False)
        if values.size > 1:
            steps = np.diff(wide)
            if int(steps.min()) > 0:  # increasing: steps of at most hi - lo
                return cls(steps.astype(_narrowest(0, int(steps.max()))), values.dtype, lo)
        return cls(values.astype(_narrowest(lo, hi)), values.dtype)

    def __len__(self) -> int:
        return self.values.size + (self.first is not None)

    def array(self) -> np.ndarray:
        """The original integers (exact: sums of int64 steps within int64's range)."""
        if self.first is None:
            return self.values.astype(self.dtype)
        out = np.empty(len(self), dtype=np.int64)
        self.into(out)
        return out.astype(self.dtype, copy=False)

    def into(self, out: np.ndarray) -> None:
        """Write the original integers into ``out`` (shape ``(len(self),)``, any dtype
        they are cast to, as ``out[:] = self.array()``), expanded in place where ``out``
        is int64: no array of their own.

        Raises
        ------
        ValueError
            ``out`` is not of this length.
        """
        if out.shape != (len(self),):
            raise ValueError(f"NarrowInts of {len(self)} values into an array of {out.shape}")
        if self.first is None:
            out[...] = self.values
        elif out.dtype != np.int64:
            out[...] = self.array()
        else:
            # the steps cast into ``out`` first and summed there in place: cumsum's own
            # cast would take a int64 copy of the steps first, as large as ``out``
            out[0] = self.first
            out[1:] = self.values
            np.cumsum(out, out=out)


_INT64 = np.iinfo(np.int64)


def _narrowest(lo: int, hi: int) -> np.dtype:
    """The narrowest integer dtype holding ``lo … hi`` (within int64's range)."""
    kinds = (np.uint8, np.uint16, np.uint32) if lo >= 0 else (np.int8, np.int16, np.int32)
    for dtype in kinds:
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def block_summary(block: Block) -> Block:
    """The block without its statistics: what the driver needs once, its labels and row
    counts narrowed (:class:`NarrowInts`; :func:`assemble_blocks` opens them on the
    driver), with the count of its lossy groups that its evaluator would hold without
    the forms they need (:func:`inexact_groups`): the data pass refuses them, or reads
    the data again keeping their sums, on the driver, and no task fails."""
    return Block(
        NarrowInts.of(np.asarray(block.labels)),
        NarrowInts.of(np.asarray(block.nobs)),
        block.xyxy,
        block.n,
        block.sum_log_weights,
        block.n_dropped,
        standardization=block.standardization,
        within=block.within,
        exchange=block.exchange,
        column_sums=block.column_sums,
        inexact=inexact_groups(block),
    )


def inexact_groups(block: Block) -> int:
    """The lossy groups (:func:`~dmixed.kernels.lossy_groups`) of a block without
    variance components that its evaluator
    (:func:`~dmixed.engines.dask.evaluator.make_evaluator`) would hold in neither the
    rank-one forms (the block's rows kept the within-group sums) nor the centred ones
    (the groups' sums about their shifts): :func:`~dmixed.engines.local.inexact_count`
    of the forms it would take, the block only read (its evaluator may be made from it
    at the same time).  0 for a block of variance components."""
    std = block.standardization
    if std is None or block.ragged is not None or block.crossed is not None:
        return 0
    stats = block.stats
    if stats is None:
        if block.zz is None or block.zxy is None or block.zz.shape[-1] != std.k_re:
            return 0
        # not reached where the statistics stay on the workers (their blocks are held);
        # counted all the same, from a copy, so that no path skips the check
        stats = StatsBlock(block.zz, block.zxy)
    if stats.r != std.k_re:
        return 0
    rank_one = block.within is not None and stats.r >= 2
    if block.stats is None and block.shifted is not None:
        stats.use_shifted(*block.shifted)
    return inexact_count(stats, block.nobs, rank_one)


def exact_labels(parts: list, column: str) -> None:
    """Refuse integer labels (arrays or :class:`NarrowInts`) that :func:`joined` would
    make inexact floats: numbers of two dtypes meet as float64
    (:func:`~dmixed.stats.keys.settled_keys`).

    Raises
    ------
    DataError
        Integers beyond ±2**53 among labels of two numeric dtypes.
    """
    dtypes = {p.dtype for p in parts}
    if len(dtypes) < 2 or any(d.kind not in "iuf" for d in dtypes):
        return
    float64 = np.dtype(np.float64)
    for part in parts:
        if part.dtype.kind in "iu":
            settled_keys(part.array() if isinstance(part, NarrowInts) else part, float64, column)


def joined(parts: list) -> np.ndarray:
    """``np.concatenate`` of ``parts`` (arrays or :class:`NarrowInts`, their original
    values) into one array written part by part (numpy's promotion of their dtypes;
    an empty ``object`` array of none): no array of its own for a part sent narrow."""
    if not parts:
        return np.empty(0, dtype=object)
    out = np.empty(sum(len(p) for p in parts), dtype=np.result_type(*(p.dtype for p in parts)))
    start = 0
    for part in parts:
        stop = start + len(part)
        if isinstance(part, NarrowInts):
            part.into(out[start:stop])
        else:
            out[start:stop] = part
        start = stop
    return out


def _scattered(out: np.ndarray, position: np.ndarray, parts: list) -> None:
    """``out[position] = joined(parts)``, part by part: a part sent narrow as its
    values where they are not steps (cast on the way), none joined first."""
    start = 0
    for part in parts:
        stop = start + len(part)
        values = part
        if isinstance(part, NarrowInts):
            values = part.values if part.first is None else part.array()
        values = np.asarray(values)
        # cast before the scatter (numpy's fancy assignment casts value by value), a
        # stretch at a time: one small cast buffer, not a copy of the part
        for lo in range(0, len(values), _SCATTER_STRETCH):
            hi = min(lo + _SCATTER_STRETCH, len(values))
            out[position[start + lo : start + hi]] = values[lo:hi].astype(out.dtype, copy=False)
        start = stop


#: :func:`_scattered` casts a part's values this many at a time (a buffer of 512 KiB of
#: int64 that stays in cache, where a whole part's cast is fresh memory on the driver).
_SCATTER_STRETCH = 1 << 16


def dense_pieces(block: Block) -> tuple:
    """:func:`block_dense` cut for the way to the driver
    (:func:`~dmixed.engines.dask.handover.cut`; :func:`gathered_engine` takes them),
    with the block's lossy groups' sums about their shifts where it has them
    (:meth:`~dmixed.kernels.StatsBlock.use_shifted`'s arguments, else None)."""
    zz, zxy = block_dense(block)
    shifted = block.shifted if block.stats is None else block.stats.shifted
    return handover.cut(zz), handover.cut(zxy), shifted


def block_dense(block: Block) -> tuple[np.ndarray, np.ndarray]:
    """(zz, zxy) of a block, to gather to the driver (padded from a ragged block)."""
    if block.ragged is not None:
        return block.ragged.dense()
    if block.crossed is not None:
        return block.crossed.dense()
    if block.stats is not None:
        return block.stats.dense()
    return block.zz, block.zxy


@dataclass
class Assembly:
    """Group order and global statistics from the per-block summaries.

    Attributes
    ----------
    group_labels, group_sizes : ndarray (G,)
        Keys in sorted order and their row counts.
    position : ndarray of int64 (G,)
        Sorted position of each group, in block-concatenation order.
    glob : GlobalStats
        The global sums of all blocks.
    block_sizes : list of int
        Groups per block.
    n_dropped : int
        Rows dropped (missing values) in all partitions.
    exchange : dict or None
        What the data pass's tasks sent to the bucket nodes
        (:func:`~dmixed.engines.dask.routing.exchange_summary`).
    inexact : int
        The blocks' lossy groups their evaluators would hold without the forms they
        need (the summaries' counts, :func:`inexact_groups`).
    """

    group_labels: np.ndarray
    group_sizes: np.ndarray
    position: np.ndarray
    glob: GlobalStats
    block_sizes: list[int]
    n_dropped: int = 0
    standardization: Standardization | None = None
    exchange: dict | None = None
    inexact: int = 0


def assemble_blocks(summaries: list[Block], k: int, column: str | None = None) -> Assembly:
    """Sorted group order (statsmodels', as :func:`~dmixed.stats.keys.sorted_codes`) and
    global sums of the blocks; ``k`` = p + 1.

    The blocks' labels and row counts may be arrays or :class:`NarrowInts` (gathered
    :func:`block_summary`): the labels are written into one array and ordered in place
    (:func:`~dmixed.stats.keys.order_distinct` with ``owned``), the row counts
    scattered to their sorted places block by block.  ``column``: the group column,
    given where the keys' kind is learned from the data
    (:data:`~dmixed.stats.keys.LEARNED_KEYS`): blocks' numbers of two dtypes meet as
    float64, where it holds the integers exactly.

    Raises
    ------
    DataError
        Integers beyond ±2**53 with floats or integers of the other signedness
        (``column`` given).
    RuntimeError
        A group key occurs in two blocks (an internal error).
    """
    if column is not None:
        exact_labels([b.labels for b in summaries], column)
    order = order_distinct(joined([b.labels for b in summaries]), owned=True)
    if order.repeated:
        raise RuntimeError(
            "internal error: a group key occurs in two combined partitions "
            "(group keys of different dtypes in different partitions?)"
        )
    nobs = np.zeros(len(order.labels), dtype=np.int64)
    _scattered(nobs, order.position, [b.nobs for b in summaries])
    xyxy = functools.reduce(operator.add, (b.xyxy for b in summaries), np.zeros((k, k)))
    # block 0 holds the global within-group sums; the others their combines' corrections
    has_within = bool(summaries) and summaries[0].within is not None
    within = (
        functools.reduce(operator.add, (b.within for b in summaries if b.within is not None))
        if has_within
        else None
    )
    glob = GlobalStats(
        xyxy,
        int(sum(b.n for b in summaries)),
        float(sum(b.sum_log_weights for b in summaries)),
        within,
        summaries[0].column_sums if summaries else None,  # block 0's: all rows'
    )
    return Assembly(
        order.labels,
        nobs,
        order.position,
        glob,
        [len(b.labels) for b in summaries],
        int(sum(b.n_dropped for b in summaries)),
        summaries[0].standardization if summaries else None,
        summaries[0].exchange if summaries else None,
        int(sum(b.inexact for b in summaries)),
    )


def reorder(position: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per-group ``values`` in block-concatenation order → sorted group order:
    ``out[position] = values``, done as a gather of whole rows through the inverse
    permutation (``np.take`` on rows flattened: 3–4× faster than numpy's fancy
    assignment of ``(r,)`` or ``(r, r)`` sub-arrays at 1M groups; the same values)."""
    n = len(values)
    if n == 0:
        return values.copy()
    inverse = np.empty_like(position)
    inverse[position] = np.arange(n, dtype=position.dtype)
    return np.take(values.reshape(n, -1), inverse, axis=0).reshape(values.shape)


def reorder_parts(
    position: np.ndarray,
    parts: list[np.ndarray],
    each: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """:func:`reorder` of the blocks' ``parts`` concatenated, without the
    concatenation: block ``b``'s rows go straight to their places,
    ``out[position[offset_b + i]] = parts[b][i]``, each row moved as one item of its
    bytes (a numpy void: one copy a row, where a fancy assignment of ``(r,)`` or
    ``(r, r)`` sub-arrays is 3–4× slower), the same values bit for bit.  Parts of
    different dtypes or row shapes are concatenated first (numpy's promotion).

    ``each`` (optional): a function of a part's rows giving as many rows, applied to
    each part just before its rows are placed (a piece's covariance triangles unfolded,
    :func:`~dmixed.kernels.compiled.upper_unfolded`): the result is ``reorder`` of
    ``each`` of the whole, with no converted copy of the whole made on the way."""
    n = sum(len(p) for p in parts)
    like = all(p.dtype == parts[0].dtype and p.shape[1:] == parts[0].shape[1:] for p in parts)
    first = parts[0] if each is None else each(parts[0][:0])  # the placed rows' dtype, shape
    width = int(np.prod(first.shape[1:], dtype=np.int64))  # entries a row
    if not like or n == 0 or width == 0:
        whole = np.concatenate(parts)
        return reorder(position, whole if each is None else each(whole))
    out = np.empty((n, *first.shape[1:]), dtype=first.dtype)
    item = np.dtype((np.void, out.itemsize * width))
    rows = out.reshape(n, width).view(item).reshape(n)
    start = 0
    for part in parts:
        stop = start + len(part)
        if stop > start:
            placed = part if each is None else each(part)  # one part converted at a time
            source = np.ascontiguousarray(placed).reshape(stop - start, width)
            rows[position[start:stop]] = source.view(item).reshape(-1)
        start = stop
    return out


def gathered_engine(dense: list, asm: Assembly, layout: Layout):
    """The in-process engine (:func:`~dmixed.engines.local.local_engine`: structured
    variance components where they apply, as for in-memory rows) on gathered
    ``(zz, zxy)`` pairs of the blocks, groups in sorted order.

    Raises
    ------
    DataError
        Lossy groups that are not rank one about the within-group sums
        (:func:`~dmixed.engines.local.refuse_inexact`): the partial statistics carry no
        centred sums.
    """
    r = layout.r
    k = asm.glob.xyxy.shape[0]
    zz = reorder_parts(asm.position, [np.zeros((0, r, r)), *handover.rows([d[0] for d in dense])])
    zxy = reorder_parts(asm.position, [np.zeros((0, r, k)), *handover.rows([d[1] for d in dense])])
    engine = rank_one_engine(local_engine(zz, zxy, layout), asm.glob, layout, asm.group_sizes)
    shifted = _gathered_shifts(dense, asm)
    block = getattr(engine, "block", None)
    if shifted is not None and isinstance(block, StatsBlock):
        block.use_shifted(*shifted)  # the lossy groups' centred forms, as on the workers
    if not layout.k_vc:
        refuse_inexact(engine, asm.group_sizes, "the statistics summed on the cluster")
    return engine


def _gathered_shifts(dense: list, asm: Assembly) -> tuple | None:
    """The blocks' lossy groups' sums about their shifts (:func:`dense_pieces`' third
    entries) as :meth:`~dmixed.kernels.StatsBlock.use_shifted` takes them for the
    gathered groups (sorted order: ``asm.position``); None where no block has any."""
    found = []
    lo = 0
    for piece, size in zip(dense, asm.block_sizes, strict=True):
        shifted = piece[2] if len(piece) > 2 else None
        if shifted is not None:
            found.append((asm.position[lo + shifted[0]], shifted))
        lo += size
    if not found:
        return None
    e, shared = found[0][1][2], found[0][1][3]
    if any(f[1][2] != e or tuple(f[1][3]) != tuple(shared) for f in found):
        return None
    where = np.concatenate([f[0] for f in found])
    order = np.argsort(where, kind="stable")
    sums = tuple(np.concatenate([f[1][1][i] for f in found], axis=-1)[..., order] for i in range(4))
    lossy = np.concatenate([_lossy_flags(f[1]) for f in found])[order]
    return where[order], sums, e, shared, lossy


def _lossy_flags(shifted: tuple) -> np.ndarray:
    """Which groups of a :meth:`~dmixed.kernels.StatsBlock.use_shifted` argument tuple
    are lossy (its fifth entry; all of them where it has none)."""
    if len(shifted) > 4 and shifted[4] is not None:
        return np.asarray(shifted[4], dtype=bool)
    return np.ones(np.asarray(shifted[0]).size, dtype=bool)
