"""Per-group statistics gathered on the driver (:class:`GroupArrays`): what saved
statistics (:mod:`dmixed.stats.checkpoint`) hold, merge and give to the engines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..errors import DataError, PrecisionWarning, warn
from .crossed_stats import CrossSums, cross_from_dense
from .layout import Layout
from .ragged_stats import RaggedArrays, diagonal_block
from .standardize import Standardization, converted_sums, log_ratio_sum
from .statistics import GlobalStats


@dataclass
class GroupArrays:
    """Per-group statistics gathered on the driver, in sorted group order: padded
    (``zz``, ``zxy``) or, for variance components held structured, ragged (``ragged``;
    ``zz`` and ``zxy`` are then of width 0, :func:`no_padding`), with the co-occurrence
    sums ``cross`` where the components share rows (held crossed:
    :mod:`dmixed.stats.crossed_stats`; ``ragged`` then holds every used slot)."""

    labels: np.ndarray
    nobs: np.ndarray
    zz: np.ndarray  # (G, r, r); (G, 0, 0) when ragged
    zxy: np.ndarray  # (G, r, p+1); (G, 0, p+1) when ragged
    slot_cols: list[np.ndarray]  # per VC component (G, m_l): global column id, -1 unused
    glob: GlobalStats
    layout: Layout
    standardization: Standardization | None = None  # None: raw columns
    ragged: RaggedArrays | None = None  # the statistics held ragged instead of zz, zxy
    cross: CrossSums | None = None  # with ragged: the co-occurrences of crossed components
    # the fit's centred sums: every group's for the bootstrap (never saved); those of the
    # groups near lossy in statistics saved or merged (``everyone`` False)
    centred: CentredGroups | None = None
    # rows of the data these statistics are of that were dropped for missing values
    # (``missing="drop"``): saved with them and added in a merge, so that a fit from
    # saved or merged statistics reports those of all its inputs
    n_dropped: int = 0

    @property
    def columns(self) -> Standardization:
        """The columns' map the statistics are in (identity for raw columns)."""
        if self.standardization is not None:
            return self.standardization
        return Standardization.identity(self.glob.k_fe, self.layout.k_re)

    @property
    def k(self) -> int:
        """Columns of ``[X y]``."""
        return self.zxy.shape[2]

    def exog_re_part(self) -> tuple[np.ndarray, np.ndarray]:
        """``Z_i'Z_i`` (G, q, q) and ``Z_i'[X_i y_i]`` (G, q, k) of the ``exog_re``
        columns (views)."""
        if self.ragged is not None:
            return self.ragged.a, self.ragged.f1
        q = self.layout.k_re
        return self.zz[:, :q, :q], self.zxy[:, :q]

    def padded(self) -> GroupArrays:
        """These statistics padded (G r² values: ragged ones only where they must be
        added to padded ones)."""
        if self.ragged is None:
            return self
        zz, zxy = self.ragged.dense()
        if self.cross is not None:
            self.cross.add_into(zz)
        return replace(self, zz=zz, zxy=zxy, ragged=None, cross=None)

    def as_ragged(self) -> GroupArrays | None:
        """These statistics ragged, or None where some group's variance-component block
        is not diagonal (components that overlap)."""
        if self.ragged is not None:
            return self if self.cross is None else None
        if not diagonal_block(self.zz, self.layout.k_re):
            return None
        q = self.layout.k_re
        ragged = RaggedArrays.from_dense(self.zz, self.zxy, q, self.layout.slot_component)
        zz, zxy = no_padding(len(self.labels), self.k)
        return replace(self, zz=zz, zxy=zxy, ragged=ragged)

    def as_crossed(self) -> GroupArrays:
        """These statistics held crossed: every used slot ragged and the co-occurrence
        sums (none where the components do not share rows)."""
        if self.cross is not None:
            return self
        if self.ragged is not None:
            return replace(self, cross=CrossSums.empty())
        q = self.layout.k_re
        ragged = RaggedArrays.from_dense(self.zz, self.zxy, q, self.layout.slot_component)
        zz, zxy = no_padding(len(self.labels), self.k)
        cross = cross_from_dense(self.zz, q)
        return replace(self, zz=zz, zxy=zxy, ragged=ragged, cross=cross)

    def converted_to(self, target: Standardization) -> GroupArrays:
        """These statistics in ``target``'s column map (exact: see
        :meth:`~dmixed.stats.standardize.Standardization.conversion_to`)."""
        if self.columns == target:
            return self
        if self.centred is not None:
            # sums about the groups' means in another map: not converted here; those
            # groups keep their plain sums (the fit's precision check charges them)
            return replace(self, centred=None).converted_to(target)
        widths = self.layout.vc_widths
        if self.ragged is not None:  # one ratio per component
            widths = (1,) * self.layout.k_vc
        m_x, m_z = self.columns.conversion_to(target, widths, weights=True)
        ratio = self.columns.weight_ratio(target)  # the weights' own sums (see there)
        within, sums = self.glob.within, self.glob.column_sums
        glob = GlobalStats(
            m_x.T @ self.glob.xyxy @ m_x,
            self.glob.n,
            self.glob.sum_log_weights + log_ratio_sum(self.glob.n, ratio),
            None if within is None else m_x.T @ within @ m_x,
            None if sums is None else converted_sums(sums, m_x, ratio),
        )
        out = replace(self, glob=glob, standardization=target)
        if self.ragged is not None:
            q = self.layout.k_re
            out.ragged = self.ragged.converted(m_z[:q, :q], np.diag(m_z)[q:], m_x)
            if self.cross is not None:
                out.cross = self.cross.converted(np.diag(m_z)[q:], self.ragged.offsets)
        else:
            # batched products, O(G r³): one einsum over both factors is O(G r⁴)
            out.zz = m_z.T @ self.zz @ m_z
            out.zxy = m_z.T @ self.zxy @ m_x
        return out

    def renumbered(self, column_maps: list[np.ndarray]) -> GroupArrays:
        """These statistics with every variance-component column index ``j`` of
        component ``l`` replaced by ``column_maps[l][j]`` (the model's columns of a
        component renumbered, ``dmixed update`` growing its levels: see
        :func:`~dmixed.design.new_levels.grown_spec`).  Each map must keep the order of
        a group's columns (its slots stay in column order).

        Raises
        ------
        ValueError
            A map of the wrong number of components, one that leaves out a column in
            use (index −1) or does not keep the columns' order.
        """
        if len(column_maps) != len(self.slot_cols):
            raise ValueError(
                f"{len(column_maps)} column maps for {len(self.slot_cols)} variance components"
            )
        tables = []
        for table, cmap in zip(self.slot_cols, column_maps, strict=True):
            cmap = np.asarray(cmap, dtype=np.int64)
            used = table >= 0
            if np.any(cmap < 0) or np.any(np.diff(cmap) <= 0):
                raise ValueError("a column map must keep every column, in order")
            tables.append(np.where(used, cmap[np.where(used, table, 0)], -1))
        return replace(self, slot_cols=tables)

    @classmethod
    def from_statistics(
        cls,
        stats,
        ragged: bool = False,
        names: Sequence[str] | None = None,
        centred: bool = False,
    ) -> GroupArrays:
        """The statistics of a ``FittedStatistics``, gathered from its engine: padded, or
        with ``ragged`` ragged where the engine holds the variance components
        structured (its ``collapsed_vc`` and ``gather_ragged``; crossed ones with their
        co-occurrence sums, ``to_slots``).

        ``names``: the random design's column names (the model's ``exog_re_names``),
        for the message of the refusal below.  ``centred``: keep the centred sums of
        the groups that take them (:attr:`centred`, for arrays used in this process
        only, as the bootstrap's) rather than refuse them.  Without it, where only
        groups near lossy take them (none lossy), the arrays keep those groups' centred
        sums (``everyone`` False: what saved statistics hold from format version 8,
        :data:`~dmixed.stats.checkpoint.CENTRED_FORMAT_VERSION`) and no in-process
        ``W``; statistics with variance components keep their plain sums, with a
        :class:`~dmixed.errors.PrecisionWarning` naming those groups.

        Raises
        ------
        CentredGroupsError
            (A :class:`~dmixed.errors.DataError`.)  The engine's groups take centred
            sums (``StatsBlock.centred_groups``: a random design close to singular
            within them), which these arrays do not hold: saved, merged or drawn
            from, their likelihood would lose most of its digits.  The message names
            the first few groups and the column nearly constant within them
            (:attr:`CentredGroupsError.problem`), and ends with
            :data:`CENTRED_REMEDY`.
        """
        engine = stats.engine
        block = getattr(engine, "block", None)
        kept = None
        glob = stats.glob
        if getattr(block, "centred_groups", 0):
            if not centred:
                raise centred_groups_error(stats, block, names)
            kept = CentredGroups(*block.centred_sums())  # type: ignore[union-attr]
        elif (taken := getattr(block, "centred_sums", _none)()) is not None:
            # only groups near lossy take the centred forms (none is lossy): kept for
            # arrays used in this process; saved or merged ones keep those of the groups
            # near lossy (format CENTRED_FORMAT_VERSION), without an in-process W
            if centred:
                kept = CentredGroups(*taken)
            elif ragged and getattr(engine, "collapsed_vc", False) or stats.layout.k_vc:
                glob = _uncentred(stats, block, taken)
            else:
                kept, glob = _near_lossy_kept(stats, block, taken)
        held = cross = None
        if ragged and getattr(engine, "collapsed_vc", False) and hasattr(engine, "gather_ragged"):
            held = engine.gather_ragged()
            if hasattr(held, "to_slots"):  # held crossed
                held, cross = held.to_slots()
            held = RaggedArrays.of(held)
            zz, zxy = no_padding(held.n_groups, held.k)
        else:
            zz, zxy = engine.gather()
        return cls(
            np.asarray(stats.group_labels),
            np.asarray(stats.group_sizes),
            zz,
            zxy,
            [np.asarray(t) for t in stats.vc_slot_cols],
            glob,
            stats.layout,
            stats.standardization,
            held,
            cross,
            kept,
            int(getattr(stats, "n_dropped", 0)),
        )


def _none() -> None:
    """What an engine's block without centred sums gives for them."""
    return None


def _near_lossy_kept(stats, block, taken) -> tuple[CentredGroups, GlobalStats]:
    """The centred sums of the groups near lossy of ``taken`` (``block.centred_sums()``,
    ``block`` the engine's ``StatsBlock``), as saved or merged statistics hold them
    (:class:`CentredGroups` of those groups only, ``everyone`` False), and
    ``stats.glob`` without the within-group sums ``W`` an in-process fit made for them
    (the other groups keep their plain sums, consistent without ``W``)."""
    positions, sums, everyone = taken
    if not everyone:  # a Dask fit's: those groups only, already
        return CentredGroups(np.asarray(positions, dtype=np.int64), sums, False), stats.glob
    near = np.asarray(block.near_lossy_positions(np.asarray(stats.group_sizes)), dtype=np.int64)
    at = np.searchsorted(np.asarray(positions), near)
    return CentredGroups(near, sums.take(at), False), replace(stats.glob, within=None)


@dataclass(frozen=True)
class CentredArrays:
    """The fields of ``kernels.CentredSums`` (``u`` (L,), ``zbar`` (r, L), ``mean``
    (k, L), ``c`` (r, r, L), ``d`` (r, k, L), ``lossy`` (L,) bool) of statistics read or
    merged, which the engines take as those sums (the statistics layer does not import
    the kernels)."""

    u: np.ndarray
    zbar: np.ndarray
    mean: np.ndarray
    c: np.ndarray
    d: np.ndarray
    lossy: np.ndarray

    def take(self, sel) -> CentredArrays:
        """The sums of the groups ``sel`` (an index array or a slice)."""
        return CentredArrays(*(np.ascontiguousarray(getattr(self, f)[..., sel]) for f in _FIELDS))

    def concatenated(self, other: CentredArrays) -> CentredArrays:
        """The sums of these groups, then ``other``'s."""
        return CentredArrays(
            *(np.concatenate((getattr(self, f), getattr(other, f)), axis=-1) for f in _FIELDS)
        )


#: The fields of :class:`CentredArrays` (and of ``kernels.CentredSums``), in order.
_FIELDS = ("u", "zbar", "mean", "c", "d", "lossy")


def centred_arrays(sums) -> CentredArrays:
    """``sums`` (``kernels.CentredSums`` or :class:`CentredArrays`) as
    :class:`CentredArrays`."""
    return CentredArrays(*(np.asarray(getattr(sums, f)) for f in _FIELDS))


def _uncentred(stats, block, taken: tuple) -> GlobalStats:
    """``stats.glob`` as statistics that do not carry centred sums hold it, where only
    groups near lossy take them (``block``: the engine's ``StatsBlock``; ``taken``: its
    ``centred_sums()``, positions, sums and whether every group takes them about
    ``W``), with a :class:`~dmixed.errors.PrecisionWarning` naming those groups: the
    arrays hold their uncentred sums, as statistics made before such groups took the
    centred forms did.  The within-group cross-products ``W`` that an in-process fit
    made for them (every group about ``W``) are left out: they are consistent only with
    the centred sums, and the uncentred ones next to them would leave the likelihood
    further off than without them."""
    everyone = bool(taken[2])
    # every group takes the forms in process (the near-lossy ones are asked again, of
    # the whole block); on Dask those that did, each weighed in its own block
    positions = block.near_lossy_positions(np.asarray(stats.group_sizes)) if everyone else taken[0]
    labels = np.asarray(stats.group_labels)[np.asarray(positions, dtype=np.int64)]
    warn(
        f"{_named_groups(labels)} have a random design nearly singular "
        "within them, which the fit takes from sums about each group's mean; the "
        "statistics gathered here (to be saved or merged) hold their uncentred sums, "
        "and the log-likelihood of a fit from them can be off by far more than the "
        "fit's tolerance (thousands of units where such a group carries most of the "
        "weight); "
        f"{CENTRED_REMEDY}, or {ROWS_KEEP}",
        PrecisionWarning,
    )
    return replace(stats.glob, within=None) if everyone else stats.glob


@dataclass(frozen=True)
class CentredGroups:
    """The centred sums some groups of a fit take (``StatsBlock.centred_sums``):
    ``positions`` (L,) of those groups in sorted group order, their ``sums``
    (``kernels.CentredSums``, entry-major, in the statistics' columns) and ``everyone``:
    whether every group takes them about the within-group sums ``GlobalStats.within``
    (an in-process fit), rather than those groups only (a Dask fit's)."""

    positions: np.ndarray
    sums: Any  # kernels.CentredSums (the statistics layer does not import the kernels)
    everyone: bool


#: The lossy groups a refusal names by their labels (the others are counted).
NAMED_GROUPS = 3

#: What :func:`centred_groups_error` says to do about groups with a random-effects
#: column nearly constant within them (the command line words the rest for its options).
CENTRED_REMEDY = "centre the random-effects columns within groups first"

#: ... and about groups of fewer rows than random effects, or of random-effects columns
#: nearly collinear within them (centring leaves them so).
COLLINEAR_REMEDY = "leave out those groups, or the random effects collinear within them"

#: What the message of :class:`CentredGroupsError` ends with: where such sums are kept.
ROWS_KEEP = "a fit of the rows keeps those sums (its bootstrap and intervals use them)"

#: A column whose share of its sum of squares about the group's mean is below this is
#: called nearly constant within the group (the rest of the lossy groups, collinear).
CONSTANT_SHARE = 1e-8


def _named_groups(labels: np.ndarray) -> str:
    """``"N group(s) (a, b, c and M more)"``: how many ``labels`` (L,) there are, the
    first :data:`NAMED_GROUPS` of them by their labels, and how many more (the words of
    :func:`centred_groups_error` and of the warning of statistics gathered with groups
    near lossy)."""
    shown = ", ".join(
        repr(lb.item() if hasattr(lb, "item") else lb) for lb in labels[:NAMED_GROUPS]
    )
    more = f" and {labels.size - NAMED_GROUPS} more" if labels.size > NAMED_GROUPS else ""
    return f"{labels.size} group(s) ({shown}{more})"


class CentredGroupsError(DataError):
    """Statistics of groups fitted from sums about their means, which saved statistics
    do not carry (:func:`centred_groups_error`): the message is :attr:`problem`, then
    :attr:`remedy` (what to do about the data), then :data:`ROWS_KEEP`; a caller with
    other words for the last (the command line's options) takes :attr:`problem` and
    :attr:`remedy`."""

    def __init__(self, problem: str, remedy: str = CENTRED_REMEDY) -> None:
        super().__init__(f"{problem}; {remedy}; {ROWS_KEEP}")
        #: the groups, the columns and why, without what to do
        self.problem = problem
        #: what to do about the data
        self.remedy = remedy


def centred_groups_error(stats, block, names: Sequence[str] | None) -> CentredGroupsError:
    """The refusal of statistics whose ``block`` (a ``StatsBlock`` in the order of
    ``stats.group_labels``) takes centred sums for some groups: the groups (the first
    :data:`NAMED_GROUPS` by label of each kind, and how many more) and why (``names``:
    the random design's column names; None: their indices).

    Two kinds: a column nearly constant within the group (its sum of squares about the
    group's mean below :data:`CONSTANT_SHARE` of its sum of squares; with no intercept
    every column is named), and groups of fewer rows than random effects or whose
    columns are nearly collinear about the group's mean (the columns of the direction
    of the smallest eigenvalue of their scaled centred Gram matrix are named)."""
    positions = np.asarray(block.centred_positions(), dtype=np.int64)
    labels = np.asarray(stats.group_labels)[positions]
    nobs = np.asarray(stats.group_sizes)[positions]
    q = stats.layout.k_re
    zz = np.asarray(stats.engine.gather()[0])[positions][:, :q, :q]
    one = stats.columns.z_intercept

    def named(cols) -> tuple[str, str]:
        cols = sorted(set(int(c) for c in cols))
        words = [repr(names[j]) if names is not None else str(j) for j in cols]
        return " and ".join(words), "s" if len(words) > 1 else ""

    def groups(mask) -> str:
        return _named_groups(labels[mask])

    if not (0 <= one < q and q > 1 and len(positions)):
        words, plural = named(range(q))
        return CentredGroupsError(
            f"{groups(np.ones(len(labels), bool))} have the random-effects column{plural} "
            f"{words} nearly constant or collinear within the group, {_NOT_CARRIED}",
            f"{CENTRED_REMEDY}, or {COLLINEAR_REMEDY}",
        )
    others = np.array([j for j in range(q) if j != one])
    u = zz[:, one, one]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = zz[:, one, others] / u[:, None]
        centred = zz[:, others[:, None], others[None, :]] - u[:, None, None] * (
            mean[:, :, None] * mean[:, None, :]
        )
        share = np.einsum("gjj->gj", centred) / np.einsum("gjj->gj", zz[:, others][:, :, others])
    share = np.where(np.isfinite(share), share, 1.0)
    constant = (share < CONSTANT_SHARE).any(axis=1) & (nobs >= q)
    parts, remedies = [], []
    if constant.any():
        words, plural = named(others[np.flatnonzero((share[constant] < CONSTANT_SHARE).any(0))])
        parts.append(
            f"{groups(constant)} have the random-effects column{plural} {words} nearly "
            "constant within the group"
        )
        remedies.append(CENTRED_REMEDY)
    if (~constant).any():
        few = nobs[~constant] < q
        mats = centred[~constant][~few]  # (L, q-1, q-1): one stacked eigh
        d = np.sqrt(np.maximum(np.einsum("gjj->gj", mats), np.finfo(float).tiny))
        vec = np.abs(np.linalg.eigh(mats / d[:, :, None] / d[:, None, :])[1][:, :, 0])
        named_at = vec >= 0.1 * vec.max(axis=1, initial=0.0, keepdims=True)
        cols = others[np.flatnonzero(named_at.any(axis=0))].tolist()
        if few.any():
            cols.extend(others.tolist())
        words, plural = named(cols)
        if few.all():
            what = (
                f"fewer rows than random effects (their random-effects column{plural} "
                f"{words} collinear about the group's mean)"
            )
        else:
            what = (
                f"the random-effects column{plural} {words} nearly collinear about the group's mean"
            )
            what = f"fewer rows than random effects, or {what}" if few.any() else what
        parts.append(f"{groups(~constant)} have {what}")
        remedies.append(COLLINEAR_REMEDY)
    return CentredGroupsError(f"{'; '.join(parts)}: {_NOT_CARRIED}", "; or ".join(remedies))


_NOT_CARRIED = (
    "such groups are fitted from sums about each group's mean, which saved statistics, "
    "checkpoints and updates do not carry"
)


def no_padding(n_groups: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``zz`` (G, 0, 0) and ``zxy`` (G, 0, k) of :class:`GroupArrays` held ragged: no
    padded statistics."""
    return np.zeros((n_groups, 0, 0)), np.zeros((n_groups, 0, k))
