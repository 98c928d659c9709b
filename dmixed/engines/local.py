"""In-process engine: the data pass over in-memory rows, statistics held in this process.

:class:`LocalEngine` is also what a Dask worker holds for its block of groups, and what
the Dask engine gathers small statistics into.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import numpy as np

from .. import kernels
from ..design.arrays import RowData
from ..errors import DataError
from ..kernels import native
from ..kernels.compiled import nested_numbering, rows_pass
from ..kernels.conditionals import rank_one_groups
from ..kernels.groups import random_effects_later
from ..kernels.vc_blocks import one_entry_per_row, ragged_statistics
from ..stats import FittedStatistics, GlobalStats, GroupArrays, Layout
from ..stats.keys import sorted_codes
from ..stats.packed import PackedLayout
from ..stats.slots import number_vc_cells
from ..stats.standardize import SAMPLE_ROWS, Standardization
from .vc_crossed import CrossedVCEngine, crossed_statistics, crossed_vc
from .vc_local import StructuredVCEngine, structured_vc, worth_structure


class LocalEngine:
    """Evaluate kernel contributions on statistics held in memory.

    An :class:`~dmixed.engines.base.Engine`.

    Parameters
    ----------
    zz : ndarray (G, r, r)
        Per-group ``Z̃_i'Z̃_i``.
    zxy : ndarray (G, r, p+1)
        Per-group ``Z̃_i'[X_i, y_i]``.
    """

    name = "local"

    def __init__(self, zz: np.ndarray, zxy: np.ndarray) -> None:
        self.block = kernels.StatsBlock(zz, zxy)

    @classmethod
    def of_block(cls, block: kernels.StatsBlock) -> LocalEngine:
        """The engine of statistics already in the kernels' layout (taken as they are,
        no copy: a Dask worker's evaluator of a block's held sums)."""
        engine = cls.__new__(cls)
        engine.block = block
        return engine

    @classmethod
    def of_packed_columns(cls, acc: np.ndarray, layout: PackedLayout) -> LocalEngine:
        """The engine of column-major packed statistics ``acc`` (width, G) (the layout
        of :func:`dmixed.kernels.accumulate_packed_into`), read entry-major as they lie."""
        r, g = layout.r, acc.shape[1]
        zz_cols, zxy_cols = layout.slices()
        zz = np.empty((r, r, g))
        for row, (a, b) in enumerate(zip(*layout.zz_index, strict=True)):
            zz[a, b] = zz[b, a] = acc[zz_cols.start + row]
        zxy = acc[zxy_cols].reshape(r, layout.k, g)
        engine = cls.__new__(cls)
        engine.block = kernels.StatsBlock.from_entry_major(zz, zxy).keep_conditionals()
        return engine

    @classmethod
    def of_entry_major(cls, zz: np.ndarray, zxy: np.ndarray) -> LocalEngine:
        """The in-process engine of entry-major ``zz`` (r, r, G) and ``zxy`` (r, p+1, G)
        (views allowed; :meth:`~dmixed.kernels.StatsBlock.from_entry_major`), keeping
        the step's values for the Hessian as :func:`local_engine`'s."""
        engine = cls.__new__(cls)
        engine.block = kernels.StatsBlock.from_entry_major(zz, zxy).keep_conditionals()
        return engine

    @property
    def nbytes(self) -> int:
        """Bytes of the statistics held (:attr:`~dmixed.kernels.StatsBlock.nbytes`)."""
        return self.block.nbytes

    def step(self, lam: np.ndarray, q: int) -> kernels.StepSums:
        """Σ over groups of the per-step contributions (DESIGN.md §3–4)."""
        return kernels.step_contributions(self.block, lam, q)

    def value(self, lam: np.ndarray, q: int) -> kernels.StepSums:
        """The sums of :meth:`step` that ℓ alone needs (the score's are NaN)."""
        return kernels.value_contributions(self.block, lam, q)

    def hessian(
        self,
        lam: np.ndarray,
        basis: np.ndarray,
        w: np.ndarray,
        a_inv: np.ndarray | None = None,
        reml: bool = True,
    ) -> kernels.HessianSums:
        """Σ over groups of the Hessian contributions (DESIGN.md §5); with ``a_inv``,
        ``a_jk`` as its traces against it where the kernel runs per group, and with
        ``reml`` False neither it nor ``a_j`` (:func:`~dmixed.kernels.hessian_contributions`)."""
        return kernels.hessian_contributions(self.block, lam, basis, w, a_inv=a_inv, reml=reml)

    def moments(self) -> kernels.MomentSums:
        """Σ over groups of the parameter-free moment sums (starting values, and the
        check of components equal in value before them), made once (``G r⁴``)."""
        return self._moment_sums

    @functools.cached_property
    def _moment_sums(self) -> kernels.MomentSums:
        return kernels.moment_contributions(self.block)

    def _made_moments(self) -> kernels.MomentSums | None:
        """The moment sums if :meth:`moments` made them already, else None (not made
        for this: they cost ``G r⁴``)."""
        return self.__dict__.get("_moment_sums")

    def re_gram(self, q: int) -> np.ndarray:
        """``Σ_i Z_i'Z_i`` (q × q) of the ``exog_re`` columns (the rank check): from the
        moment sums where they were made, else a pass over the groups."""
        made = self._made_moments()
        return kernels.re_gram(self.block, q) if made is None else made.zz[:q, :q].copy()

    def re_sums(self, q: int) -> np.ndarray:
        """``Σ_i Z_i'[X y]`` (q × (p+1)) of the ``exog_re`` columns: from the moment sums
        where they were made, else a pass over the groups."""
        made = self._made_moments()
        return kernels.re_sums(self.block, q) if made is None else made.zxy[:q].copy()

    def frobenius_gram(self, q: int, slot_component: np.ndarray) -> np.ndarray:
        """``Σ_i ⟨M_ij, M_ik⟩_F`` ((q + d) × (q + d)) of each random-effects column alone
        and each variance component (:func:`~dmixed.kernels.frobenius_gram`): their
        entries of the moment equations where the padded design is too wide for the
        moment sums."""
        return kernels.frobenius_gram(self.block, q, slot_component)

    def collapsed_moments(self, q: int, slot_component: np.ndarray) -> kernels.MomentSums:
        """The moment sums in the coordinates of one slot per variance component
        (:func:`~dmixed.kernels.collapsed_moment_contributions`, ``G r²``): the moment
        start where the padded design is too wide for :meth:`moments` (``G r⁴``), made
        once per ``(q, slot_component)`` and kept as :meth:`moments`' sums are (a refit
        of the same statistics makes them again no more than it does those)."""
        key = (int(q), np.asarray(slot_component, dtype=np.int64).tobytes())
        made = self._collapsed_sums.get(key)
        if made is None:
            made = kernels.collapsed_moment_contributions(self.block, q, slot_component)
            self._collapsed_sums[key] = made
        return made

    @functools.cached_property
    def _collapsed_sums(self) -> dict[tuple[int, bytes], kernels.MomentSums]:
        return {}

    def random_effects(self, lam: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-group BLUPs and conditional covariances relative to σ² (DESIGN.md §6)."""
        return kernels.random_effects_block(self.block, lam, w)

    def random_effects_later(self, lam: np.ndarray, w: np.ndarray):
        """:meth:`random_effects` as a function of no arguments that computes them when
        called, as they would be computed now
        (:func:`~dmixed.kernels.groups.random_effects_later`): the results of a fit
        compute its BLUPs on first read.  The statistics held in memory do not change,
        so the function stays valid whatever happens to the model afterwards."""
        return random_effects_later(self.block, lam, w)

    def gather(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-group ``zz`` (G, r, r) and ``zxy`` (G, r, p+1), in group order."""
        return self.block.dense()

    def close(self) -> None:
        """Nothing to release in-process."""


def local_engine(zz: np.ndarray, zxy: np.ndarray, layout: Layout):
    """The in-process engine for these statistics: a
    :class:`~dmixed.engines.vc_local.StructuredVCEngine` where the variance components
    have its structure (:func:`~dmixed.engines.vc_local.structured_vc`), a
    :class:`~dmixed.engines.vc_crossed.CrossedVCEngine` where they share rows but one
    of them is an indicator component (:func:`~dmixed.engines.vc_crossed.crossed_vc`),
    else a :class:`LocalEngine`."""
    if structured_vc(zz, layout):
        return StructuredVCEngine.from_dense(zz, zxy, layout)
    diag_comps = crossed_vc(zz, layout)
    if diag_comps:
        return CrossedVCEngine.from_dense(zz, zxy, layout, diag_comps)
    engine = LocalEngine(zz, zxy)
    engine.block.keep_conditionals()  # in process: the Hessian reuses the step's values
    return engine


def rank_one_engine(engine, glob: GlobalStats, layout: Layout, nobs: np.ndarray):
    """``engine``, its block told to take the rank-one forms
    (:meth:`~dmixed.kernels.StatsBlock.use_rank_one`) where the statistics hold
    within-group sums for a random design of several columns and no variance
    component (:func:`~dmixed.kernels.rows.wants_rank_one_within`).  Other engines
    are left as they are: their step sums then say they are not rank one, and the
    profile does not read ``W`` (``StepSums.rank_one``).  ``nobs`` (G,): the groups'
    rows, in the engine's order."""
    return rank_one_if(engine, glob.within is not None and not layout.k_vc, nobs)


def closed_form_groups(arrays: GroupArrays) -> np.ndarray:
    """The groups (bool (G,)) of ``arrays`` whose random design is of rank one through
    its intercept, ``Z̃_i = e z̄_i'`` (:func:`~dmixed.kernels.conditionals.rank_one_groups`
    of ``Z̃_i'Z̃_i``, the rank-one engine's test, :func:`rank_one_engine`): a design of
    several columns constant within the group, or a group of one row.  None with
    variance components or a single random-design column.  Judged from the plain sums
    alone, which every engine holds, and whether or not they hold within-group sums
    (an in-process fit of groups that take centred sums does, a Dask fit of the same
    rows may not), so that every engine marks the same groups."""
    n_groups, r = arrays.zz.shape[0], arrays.zz.shape[1]
    if arrays.layout.k_vc or r < 2 or not n_groups:
        return np.zeros(n_groups, dtype=bool)
    return np.asarray(rank_one_groups(np.moveaxis(arrays.zz, 0, -1), arrays.nobs), dtype=bool)


def rank_one_if(engine, within: bool, nobs: np.ndarray):
    """``engine``, its block told to take the rank-one forms where ``within`` (the
    statistics hold within-group sums; no variance component) and the random design
    has several columns (:func:`rank_one_engine`'s rule, for an engine built where the
    layout and the global sums are not at hand: a Dask worker's evaluator of a block
    that says whether its rows kept them; ``nobs`` (G,) its groups' rows)."""
    block = getattr(engine, "block", None)
    if within and isinstance(block, kernels.StatsBlock):
        zz, _ = next(block.chunks())
        if zz.shape[0] >= 2:
            block.use_rank_one(nobs)
    return engine


def statistics_from_rows(
    rows: RowData,
    standardization: Standardization | None = None,
    intercepts: tuple[int, int] | None = None,
    references: tuple[np.ndarray, ...] | None = None,
) -> FittedStatistics:
    """One pass over in-memory rows → per-group statistics on a :class:`LocalEngine`.

    ``standardization``: the columns' map (default: chosen from the first rows,
    :meth:`~dmixed.stats.standardize.Standardization.choose`); statistics to be added to
    saved ones may use the saved map (or are converted when added).  ``intercepts``:
    the intercept columns of ``exog`` and ``exog_re`` (default: found in the rows);
    ``references``: the integer references the design took off their columns (the
    spec's :func:`~dmixed.design.references.column_references`).
    """
    t0 = time.perf_counter()
    # numbered by the design where it could from the column (text keys), else here
    coded = rows.numbered_groups()
    codes, labels = coded if coded is not None else sorted_codes(rows.groups)
    n_groups = len(labels)
    # the pass's one choice of the compiled kernels, before its first step (the
    # numbering): the C extension's pass where the plain statistics can run
    plain_rows = not rows.vc_cols and rows.weights is None
    against = "c" if plain_rows and native.extension() is not None else "numpy"
    compiled = rows_pass(codes.shape[0], against=against)
    nums = [
        number_vc_cells(codes, cols, vals, n_groups, nested_numbering(cols.size))
        for cols, vals in zip(rows.vc_cols, rows.vc_vals, strict=True)
    ]
    widths = [num.width for num in nums]
    slot_cols = [num.table(n_groups) for num in nums]
    # where each row's entries are (>= 0): all that the structured pass reads of slots
    entries = [num.entry_pair for num in nums]
    cells = [(num.entry_pair, num.pair_group, num.pair_slots) for num in nums]
    layout = Layout(rows.exog_re.shape[1], tuple(widths))
    std = standardization
    gram = None  # [X y]'[X y] of the rows as they lie, where the map is chosen from it
    if std is None:
        if not nums and _gram_chooses(rows):
            # products of columns beyond 2^±512 leave float64's range: the map scales
            # such columns up front and the data pass then makes its own gram
            with np.errstate(over="ignore", invalid="ignore"):
                gram = kernels.unweighted_gram(rows.endog, rows.exog)
        std = Standardization.choose(
            rows.endog,
            rows.exog,
            rows.exog_re,
            intercepts,
            rows.vc_vals,
            references,
            rows.weights,
            gram,
        )
        if gram is not None and (std.y_shift != 0.0 or np.count_nonzero(std.x_shift)):
            gram = None  # rows shifted: the data pass sums other columns
    weights = std.weights_in_statistics(rows.weights)
    std = std.with_weights(rows.weights)  # their span, kept with saved statistics
    if weights is not rows.weights:  # the statistics' weights, w / s_w
        rows = dataclasses.replace(rows, weights=weights)
    structured = worth_structure(layout)
    plain = None
    if plain_rows and not compiled:
        # the common case's pass: no plan found by looking, no packed table to unpack
        plain = kernels.plain_statistics(
            codes, n_groups, rows.endog, rows.exog, rows.exog_re, std, gram, rank_one=True
        )
    if plain is not None:
        engine = LocalEngine.of_entry_major(plain[0], plain[1])
        group_sizes, st = plain[2], plain[3]
    elif structured and one_entry_per_row(entries):
        # variance components structured: no padded design, time linear in the levels
        ragged, st = ragged_statistics(
            codes,
            n_groups,
            rows.endog,
            rows.exog,
            rows.exog_re,
            entries,
            rows.vc_vals,
            widths,
            rows.weights,
            std,
            cells,
        )
        engine = StructuredVCEngine(ragged)
        group_sizes = st["nobs"]
    elif structured and (crossed := crossed_statistics(rows, codes, n_groups, nums, layout, std)):
        engine, st = crossed  # components sharing rows: one block diagonal, no padding
        group_sizes = st["nobs"]
    else:
        slots = [num.entry_slots() for num in nums]
        ztilde = kernels.dense_random_design(rows.exog_re, slots, rows.vc_vals, widths)
        packed = PackedLayout(ztilde.shape[1], rows.exog.shape[1] + 1)
        acc = np.zeros((packed.width, n_groups))  # column-major: entry-major per group
        st = kernels.accumulate_packed_into(
            acc,
            codes,
            rows.endog,
            rows.exog,
            ztilde,
            rows.weights,
            std,
            widths,
            gram=gram,
            rank_one=True,
        )
        engine = LocalEngine.of_packed_columns(acc, packed)
        group_sizes = packed.unpack_nobs(acc.T)
        if structured:  # components the rows did not show structured
            engine = local_engine(*engine.gather(), layout)
    glob = GlobalStats(
        st["xyxy"],
        int(st["n"]),
        float(st["sum_log_weights"]),
        st.get("within"),
        st.get("column_sums"),
    )
    engine = rank_one_engine(engine, glob, layout, group_sizes)
    glob = _centred_if_lossy(engine, glob, layout, rows, codes, group_sizes, std)
    return FittedStatistics(
        engine=engine,
        glob=glob,
        layout=layout,
        group_labels=labels,
        group_sizes=group_sizes,
        vc_slot_cols=slot_cols,
        data_pass_seconds=time.perf_counter() - t0,
        n_dropped=rows.n_dropped,
        standardization=std,
    )


def _centred_if_lossy(
    engine, glob: GlobalStats, layout: Layout, rows: RowData, codes, nobs, std
) -> GlobalStats:
    """``glob`` with the within-group cross-products ``W`` where some groups of an
    in-process block are lossy or near lossy
    (:meth:`~dmixed.kernels.StatsBlock.near_lossy_mask`) and not already
    rank one about ``W``: the block then takes the centred sums of all its groups
    (:func:`~dmixed.kernels.centred_statistics`, a second pass over ``rows``;
    :meth:`~dmixed.kernels.StatsBlock.use_centred`).  ``glob`` as it is elsewhere (no
    lossy group: the statistics and every number made from them unchanged)."""
    block = getattr(engine, "block", None)
    if (
        type(engine) is not LocalEngine
        or not isinstance(block, kernels.StatsBlock)
        or glob.within is not None
        or layout.k_vc
        or layout.r < 2
    ):
        return glob
    masks = block.centred_masks(nobs)
    if masks is None:
        return glob  # the common case: one check of every chunk, nothing more
    # the groups counted as lossy (saved statistics refuse them) are those below
    # LOSSY_DETERMINANT; those only near lossy are exact here as well
    lossy = masks[1]
    sums = kernels.centred_statistics(
        codes, lossy.size, rows.endog, rows.exog, rows.exog_re, lossy, rows.weights, std
    )
    block.use_centred(sums)
    return dataclasses.replace(glob, within=sums.within)


def refuse_inexact(engine, nobs, source: str) -> None:
    """Raise where ``engine``'s statistics (``nobs`` (G,): the groups' rows) hold
    lossy groups (:func:`~dmixed.kernels.lossy_groups`) that take neither the rank-one
    nor the centred forms (:func:`inexact_count`): their likelihood would lose most of
    its digits without a sign.  ``source``: where the statistics come from, for the
    message.

    Raises
    ------
    DataError
        Naming the number of such groups and what to do instead
        (:func:`inexact_error`).
    """
    block = getattr(engine, "block", None)
    if not isinstance(block, kernels.StatsBlock):
        return
    count = inexact_count(block, nobs)
    if count:
        raise inexact_error(count, source)


def inexact_count(block: kernels.StatsBlock, nobs, rank_one: bool = False) -> int:
    """The lossy groups of ``block`` (``nobs`` (G,): their rows) that take neither the
    rank-one nor the centred forms (:meth:`~dmixed.kernels.StatsBlock.inexact_groups`;
    ``rank_one``: counted as after :meth:`~dmixed.kernels.StatsBlock.use_rank_one`).
    0 where the random design is singular over all the groups: the model's rank check
    names its columns (asked only where some group is lossy: the common case is one
    check of every chunk)."""
    count = block.inexact_groups(nobs, rank_one)
    if count and np.linalg.matrix_rank(kernels.re_gram(block, block.r)) < block.r:
        return 0
    return count


#: Where a Dask fit keeps the sums lossy groups need (:func:`inexact_error`'s ``why``).
DASK_SHIFTS = (
    "a Dask fit keeps such sums for a random design of an intercept and slopes "
    "without variance components, unless the dask config 'dmixed.shifted_sweep' "
    "is 'never'"
)


def inexact_error(count: int, source: str, why: str = DASK_SHIFTS) -> DataError:
    """The refusal of ``count`` lossy groups (:func:`inexact_count`) of the statistics
    from ``source``: a :class:`~dmixed.errors.DataError` whose ``lossy_groups`` is
    ``count`` (a Dask fit reads its data again with the sums these groups need,
    :func:`~dmixed.engines.dask.data_pass.statistics_from_dask`); ``why``: the
    message's last clause, why these statistics hold none of those sums or where they
    are kept."""
    err = DataError(
        f"{count} group(s) of {source} have a random design whose columns are "
        "constant or nearly constant within the group (Z_i'Z_i close to singular), "
        "which these statistics cannot fit without losing most digits of the "
        "likelihood: they hold no sums about each group's mean. Fit the rows in "
        "one pass in process (dmixed.MixedLM on the data in memory), or centre the "
        f"random-effects columns within groups first; {why}"
    )
    err.lossy_groups = count
    return err


def _gram_chooses(rows: RowData) -> bool:
    """Whether the columns' map of these rows is chosen from their ``[X y]'[X y]``
    (:meth:`~dmixed.stats.standardize.Standardization.choose`'s ``gram``): rows the
    data pass takes as they lie (:func:`~dmixed.kernels.takes_rows_as_they_are`), all
    of them in the map's sample, whose gram the pass then reuses where the map shifts
    nothing (a column-major float64 response, as :class:`RowData` holds it)."""
    endog = rows.endog
    return (
        0 < endog.shape[0] <= SAMPLE_ROWS
        and endog.dtype == np.float64
        and endog.ndim == 1
        and kernels.takes_rows_as_they_are(rows.exog, rows.weights)
    )


def statistics_from_arrays(arrays: GroupArrays) -> FittedStatistics:
    """Per-group statistics gathered on the driver (saved, or merged) on the in-process
    engine (:func:`local_engine`): variance components structured where they can be, as
    in the fit that saved them, so that a rerun from saved statistics equals it."""
    if arrays.cross is not None:  # saved crossed: held crossed again
        engine = CrossedVCEngine.of_arrays(arrays.ragged, arrays.cross)
    elif arrays.ragged is not None:  # saved ragged: held structured again
        engine = StructuredVCEngine.of_arrays(arrays.ragged)
    else:
        engine = local_engine(arrays.zz, arrays.zxy, arrays.layout)
    engine = rank_one_engine(engine, arrays.glob, arrays.layout, arrays.nobs)
    kept = arrays.centred
    if kept is not None and isinstance(getattr(engine, "block", None), kernels.StatsBlock):
        sums = kept.sums
        if not isinstance(sums, kernels.CentredSums):  # read or merged: their arrays
            sums = kernels.CentredSums(sums.u, sums.zbar, sums.mean, sums.c, sums.d, sums.lossy)
        if kept.everyone:  # as the fit from the rows: every group about W
            engine.block.use_centred(sums)
        else:  # as the fit on Dask, or saved: those groups only
            engine.block.use_centred_at(kept.positions, sums)
    if not arrays.layout.k_vc:
        refuse_inexact(engine, arrays.nobs, "the saved or merged statistics")
    return FittedStatistics(
        engine=engine,
        glob=arrays.glob,
        layout=arrays.layout,
        group_labels=arrays.labels,
        group_sizes=arrays.nobs,
        vc_slot_cols=arrays.slot_cols,
        data_pass_seconds=0.0,
        n_dropped=arrays.n_dropped,
        standardization=arrays.standardization,
    )
