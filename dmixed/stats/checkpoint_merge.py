"""Adding the saved statistics of old rows and the statistics of new rows by group key
(:func:`merge`; ``dmixed update``, DESIGN.md §2)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from ..errors import CheckpointMismatch
from .crossed_stats import merge_cross
from .group_arrays import (
    CentredArrays,
    CentredGroups,
    GroupArrays,
    centred_arrays,
    no_padding,
)
from .keys import all_whole, check_key_kind, settled_keys, settled_kind, whole_keys
from .layout import Layout
from .ragged_stats import merge_ragged
from .slots import number_pairs
from .standardize import added_weight_span
from .statistics import GlobalStats, chan_correction


def merge(
    old: GroupArrays, new: GroupArrays, column: str = "group", weights: str | None = None
) -> GroupArrays:
    """Statistics of old rows + statistics of new rows, added by group key.

    Groups are the union of both (sorted).  A variance-component column that a group
    already had keeps its slot; columns new to a group get the next free slots, so the
    padded layout may widen.  Padded statistics: every group's block is re-embedded into
    the merged layout and the blocks are added.  Ragged ones (both ragged, or one padded
    whose variance-component blocks are diagonal) are added slot by slot
    (:func:`~dmixed.stats.ragged_stats.merge_ragged`) and stay ragged; crossed ones (one
    side held crossed, the other made so) slot by slot and co-occurrence by
    co-occurrence (:func:`~dmixed.stats.crossed_stats.merge_cross`), and stay crossed;
    ragged and padded statistics whose components overlap are added padded.  The new
    statistics are first converted to the old ones' column map.  ``column`` names the
    group column in errors, ``weights`` the prior weights' column.

    The prior weights of all the rows are judged as a fit of all of them judges them
    (:func:`~dmixed.stats.standardize.added_weight_span` of both maps'
    :attr:`~dmixed.stats.standardize.Standardization.weight_span`): more than
    ``2^WEIGHT_SPAN_LOG2`` apart, refused; the result holds the span of all the rows.

    Raises
    ------
    DataError
        The new statistics' group keys are text and the old ones' numbers, or the other
        way round (:func:`~dmixed.stats.keys.check_key_kind`); or the prior weights of
        all the rows are too far apart (see above).
    CheckpointMismatch
        The two are of models with other ``exog_re`` columns, components or ``[X y]``.
    """
    if (old.layout.k_re, old.layout.k_vc, old.k) != (new.layout.k_re, new.layout.k_vc, new.k):
        raise CheckpointMismatch("the saved statistics are of a different model")
    where = "the new rows where the saved statistics hold {declared}"
    check_key_kind(np.asarray(new.labels).dtype, np.asarray(old.labels).dtype, column, where)
    old, new = _settled_labels(old, new, column)
    old_std = old.columns
    span = added_weight_span(
        weights, old_std.weight_span, new.columns.weight_span, old_std.weight_scale
    )
    old, new = _same_storage(old, new)
    new = new.converted_to(old_std)  # each batch chose its own map: add in the old
    labels = pd.Index(old.labels).union(pd.Index(new.labels))
    labels = labels.sort_values()
    gi_old = labels.get_indexer(pd.Index(old.labels))
    gi_new = labels.get_indexer(pd.Index(new.labels))
    g = len(labels)
    merged = [
        _merge_slots(g, gi_old, old.slot_cols[c], gi_new, new.slot_cols[c])
        for c in range(old.layout.k_vc)
    ]
    tables = [table for table, _, _ in merged]
    maps = [(m_old, m_new) for _, m_old, m_new in merged]
    layout = Layout(old.layout.k_re, tuple(table.shape[1] for table in tables))
    nobs = np.zeros(g, dtype=np.int64)
    np.add.at(nobs, gi_old, old.nobs)
    np.add.at(nobs, gi_new, new.nobs)
    glob_stats = GlobalStats(
        old.glob.xyxy + new.glob.xyxy,
        old.glob.n + new.glob.n,
        old.glob.sum_log_weights + new.glob.sum_log_weights,
        _merged_within(old, new, gi_old, gi_new),
        _merged_column_sums(old.glob.column_sums, new.glob.column_sums),
    )
    zz, zxy = no_padding(g, old.k)
    std = None if old.standardization is None else old.standardization.with_span(span)
    out = GroupArrays(labels.to_numpy(), nobs, zz, zxy, tables, glob_stats, layout, std)
    out.n_dropped = old.n_dropped + new.n_dropped  # the rows of both inputs
    if old.ragged is not None and new.ragged is not None:
        out.ragged = merge_ragged(
            old.ragged, new.ragged, out.labels, gi_old, gi_new, maps, layout.vc_widths
        )
        if old.cross is not None:
            out.cross = merge_cross(old, new, gi_old, gi_new, maps, layout.vc_widths)
    else:
        out.zz, out.zxy = _merged_padded(old, new, gi_old, gi_new, maps, layout, out.labels)
    out.centred = _merged_centred(old, new, gi_old, gi_new, out.zz)
    return out


#: A group's scaled ``Z̃'Z̃`` determinant (unit diagonal) above which the rows of it
#: that one batch holds have their sums about their own mean formed from that batch's
#: plain sums (:func:`_derived_centred`): ``C = G − u z̄z̄'`` then loses at most
#: ``log10(1/this)`` = 3 of its digits (``C_11 = det·G_11`` where the intercept is the
#: other column), not the merged group's ``1/det`` (1e7 and more near lossy).
DERIVED_DETERMINANT = 1e-3


def _derived_centred(src: GroupArrays, local: np.ndarray) -> tuple[np.ndarray, CentredArrays]:
    """The sums about their own means of the groups ``local`` (indices into ``src``,
    padded, with a random intercept) formed from their plain sums, where that loses
    nothing that matters: one row (``C = D = 0``, exactly), or a scaled ``Z̃'Z̃``
    determinant above :data:`DERIVED_DETERMINANT`.  With ``e`` the intercept column
    (``√w``): ``u = G_ee``, ``z̄ = G_e·/u``, ``m = F_e·/u``, ``C = G − u z̄z̄'``,
    ``D = F − u z̄m'`` (the intercept's row and column of ``C`` and ``D`` zero, as the
    kernels make them).  Returns (the indices it formed them for, their sums)."""
    at = src.columns.z_intercept
    g, f = src.zz[local], src.zxy[local]  # (L, r, r), (L, r, k)
    det = _scaled_determinants(g)
    one = src.nobs[local] == 1
    ok = (one | (det > DERIVED_DETERMINANT)) & (g[:, at, at] > 0)
    g, f, one = g[ok], f[ok], one[ok]
    u = g[:, at, at]
    zbar = g[:, at, :] / u[:, None]  # (L, r)
    mean = f[:, at, :] / u[:, None]  # (L, k)
    zbar[:, at] = 1.0
    c = g - u[:, None, None] * zbar[:, :, None] * zbar[:, None, :]
    d = f - u[:, None, None] * zbar[:, :, None] * mean[:, None, :]
    c[:, at, :] = c[:, :, at] = 0.0
    d[:, at, :] = 0.0
    c[one], d[one] = 0.0, 0.0
    sums = CentredArrays(
        u,
        np.ascontiguousarray(zbar.T),
        np.ascontiguousarray(mean.T),
        np.ascontiguousarray(np.moveaxis(c, 0, -1)),
        np.ascontiguousarray(np.moveaxis(d, 0, -1)),
        np.zeros(len(u), dtype=bool),
    )
    return local[ok], sums


def _scaled_determinants(g: np.ndarray) -> np.ndarray:
    """The determinants of ``D^{-1/2} G D^{-1/2}`` (``D`` the diagonal; a zero column
    left out) of the groups' ``g`` (L, r, r): 1 where well conditioned, near 0 where
    the plain sums lose ``log10(1/det)`` digits of the sums about the means."""
    r = g.shape[1]
    if not r or not len(g):
        return np.ones(len(g))
    diag = np.einsum("gaa->ga", g)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(diag > 0, 1.0 / np.sqrt(diag), 0.0)
        scaled = g * inv[:, :, None] * inv[:, None, :]
        scaled[:, np.arange(r), np.arange(r)] = 1.0
        return np.linalg.det(scaled)


def _merged_centred(
    old: GroupArrays, new: GroupArrays, gi_old, gi_new, zz: np.ndarray
) -> CentredGroups | None:
    """The centred sums of the groups near lossy of old + new statistics (padded, no
    variance components; both in one column map): a group's sums from one side where
    its rows are all there, Chan's merge of both sides' where both hold them
    (``u = u_a + u_b``, means weighted by ``u``, ``C = C_a + C_b + u_a u_b/u δz̄δz̄'``,
    ``D = D_a + D_b + u_a u_b/u δz̄δm'``: exact, no uncentred sum subtracted).  Where
    one side holds a group's centred sums and the other, holding rows of it, does not,
    the other's are formed from its plain sums where they lose nothing that matters
    (:func:`_derived_centred`: one row, or its rows of the group well conditioned on
    their own); otherwise the group keeps its plain sums (the fit's precision check
    charges their rounding).  A group with rows on both sides, neither holding its
    centred sums, whose merged plain sums ``zz`` (G, r, r) are below
    :data:`DERIVED_DETERMINANT`, has both sides' formed so too (two one-row batches
    of a group near lossy merge exactly, as a one-row batch merges into a batch
    holding them).  None where no group keeps them."""
    given = [
        (src, gi, src.centred)
        for src, gi in ((old, gi_old), (new, gi_new))
        if src.centred is not None and not src.centred.everyone and len(src.centred.positions)
    ]
    if old.layout.k_vc or old.ragged is not None or new.ragged is not None:
        return None
    g = int(max(gi_old.max(initial=-1), gi_new.max(initial=-1))) + 1
    rows_in = np.zeros(g, dtype=np.int64)  # sides holding rows of each merged group
    rows_in[gi_old] += 1
    rows_in[gi_new] += 1
    have = np.zeros(g, dtype=np.int64)  # sides holding its centred sums
    for _, gi, held in given:
        have[gi[held.positions]] += 1
    near = np.zeros(g, dtype=bool)
    both = np.flatnonzero((rows_in == 2) & (have == 0))
    if both.size and old.columns.z_intercept >= 0:
        near[both] = _scaled_determinants(zz[both]) < DERIVED_DETERMINANT
    if not given and not near.any():
        return None
    wanting = ((have > 0) | near) & (have < rows_in)
    sides = []
    for src, gi in ((old, gi_old), (new, gi_new)):
        own = src.centred if any(src is s for s, _, _ in given) else None
        positions = np.zeros(0, dtype=np.int64) if own is None else np.asarray(own.positions)
        sums = None if own is None else centred_arrays(own.sums)
        lacking = wanting[gi].copy()
        lacking[positions] = False
        if lacking.any() and src.columns.z_intercept >= 0 and src.ragged is None:
            local, derived = _derived_centred(src, np.flatnonzero(lacking))
            if local.size:
                have[gi[local]] += 1
                positions = np.concatenate((positions, local))
                sums = derived if sums is None else sums.concatenated(derived)
        if sums is not None:
            sides.append((CentredGroups(positions, sums, False), gi))
    complete = have == rows_in
    parts = []
    for kept, gi in sides:
        at = gi[np.asarray(kept.positions, dtype=np.int64)]
        keep = complete[at]
        parts.append((at[keep], centred_arrays(kept.sums).take(np.flatnonzero(keep))))
    if len(parts) == 1:
        at, sums = parts[0]
        return CentredGroups(at, sums, False) if at.size else None
    (at_a, a), (at_b, b) = parts
    at = np.union1d(at_a, at_b)
    if not at.size:
        return None
    ia, ib = np.searchsorted(at, at_a), np.searchsorted(at, at_b)
    r, k, n = a.d.shape[0], a.d.shape[1], at.size
    u = np.zeros(n)
    zbar, mean = np.zeros((r, n)), np.zeros((k, n))
    c, d = np.zeros((r, r, n)), np.zeros((r, k, n))
    lossy = np.zeros(n, dtype=bool)
    for ix, side in ((ia, a), (ib, b)):
        u[ix] += side.u
        c[..., ix] += side.c
        d[..., ix] += side.d
        lossy[ix] |= side.lossy
    both, ja, jb = np.intersect1d(at_a, at_b, return_indices=True)
    only_a = np.setdiff1d(np.arange(at_a.size), ja)
    only_b = np.setdiff1d(np.arange(at_b.size), jb)
    zbar[:, ia[only_a]], mean[:, ia[only_a]] = a.zbar[:, only_a], a.mean[:, only_a]
    zbar[:, ib[only_b]], mean[:, ib[only_b]] = b.zbar[:, only_b], b.mean[:, only_b]
    if both.size:
        ix = np.searchsorted(at, both)
        ua, ub = a.u[ja], b.u[jb]
        share = ub / (ua + ub)
        dz = b.zbar[:, jb] - a.zbar[:, ja]
        dm = b.mean[:, jb] - a.mean[:, ja]
        zbar[:, ix] = a.zbar[:, ja] + share * dz
        mean[:, ix] = a.mean[:, ja] + share * dm
        f = ua * share
        c[..., ix] += f * dz[:, None, :] * dz[None, :, :]
        d[..., ix] += f * dz[:, None, :] * dm[None, :, :]
    return CentredGroups(at, CentredArrays(u, zbar, mean, c, d, lossy), False)


def _settled_labels(old: GroupArrays, new: GroupArrays, column: str):
    """``old`` and ``new`` with their group keys in one dtype, as keys of two numeric
    dtypes meet anywhere: whole float keys after saved integer keys as the saved integer
    type (:func:`~dmixed.stats.keys.whole_keys`, as a fit of all the files reads them);
    else integers with floats float64 (:func:`~dmixed.stats.keys.settled_kind`), only
    where float64 holds them exactly (:func:`~dmixed.stats.keys.settled_keys`): integer
    keys after saved float64 keys add to the groups they equal."""
    old_labels, new_labels = np.asarray(old.labels), np.asarray(new.labels)
    if old_labels.dtype.kind in "iu" and new_labels.dtype.kind == "f":
        if all_whole(new_labels, old_labels.dtype):
            # whole float keys meeting saved integers keep the saved type (a fit of all
            # the files casts them so too: keys.whole_keys)
            return old, dataclasses.replace(
                new, labels=whole_keys(new_labels, old_labels.dtype, column)
            )
    want = settled_kind(old_labels.dtype, new_labels, column)
    if old_labels.dtype != want:
        old = dataclasses.replace(old, labels=settled_keys(old_labels, want, column))
    if new_labels.dtype != want:
        new = dataclasses.replace(new, labels=settled_keys(new_labels, want, column))
    return old, new


def _same_storage(old: GroupArrays, new: GroupArrays) -> tuple[GroupArrays, GroupArrays]:
    """Both crossed where one is (:meth:`GroupArrays.as_crossed`), else both ragged or
    both padded: a padded one made ragged where its components do not overlap
    (:meth:`GroupArrays.as_ragged`), else the ragged one padded."""
    if old.cross is not None or new.cross is not None:
        return old.as_crossed(), new.as_crossed()
    if (old.ragged is None) == (new.ragged is None):
        return old, new
    old_r, new_r = old.as_ragged(), new.as_ragged()
    if old_r is not None and new_r is not None:
        return old_r, new_r
    return old.padded(), new.padded()


def _merged_padded(old, new, gi_old, gi_new, maps, layout: Layout, out_labels):
    """``zz`` (G, r, r) and ``zxy`` (G, r, k) of padded old + new statistics, each
    group's block re-embedded at its slots' merged columns (``maps``: per component the
    merged slot of every old / new slot)."""
    q, k, g = layout.k_re, old.k, len(out_labels)
    zz = np.zeros((g, layout.r, layout.r))
    zxy = np.zeros((g, layout.r, k))
    offsets = q + np.concatenate([[0], np.cumsum(layout.vc_widths, dtype=np.int64)])
    for which, (src, gi) in enumerate(((old, gi_old), (new, gi_new))):
        idx = np.concatenate(  # (G_src, r_src): merged coordinate of each slot
            [np.arange(q)[None, :].repeat(len(gi), 0)]
            + [offsets[c] + pair[which] for c, pair in enumerate(maps)],
            axis=1,
        )
        rows = gi[:, None, None]
        np.add.at(zz, (rows, idx[:, :, None], idx[:, None, :]), src.zz)
        np.add.at(zxy, (gi[:, None], idx), src.zxy)
    return zz, zxy


def _merged_within(old: GroupArrays, new: GroupArrays, gi_old, gi_new) -> np.ndarray | None:
    """Within-group cross-products of old + new rows: their sum plus Chan's correction
    ``U_a U_b/(U_a + U_b)(c_a − c_b)(c_a − c_b)'`` for every group in both (``U`` the
    group's weight on its intercept column, ``c`` its mean)."""
    if old.glob.within is None or new.glob.within is None:
        return None
    e = old.columns.z_intercept
    out = old.glob.within + new.glob.within
    shared, io, jn = np.intersect1d(gi_old, gi_new, return_indices=True)
    if e < 0 or shared.size == 0:
        return out
    (zz_o, zxy_o), (zz_n, zxy_n) = old.exog_re_part(), new.exog_re_part()
    return out + chan_correction(zz_o[io, e, e], zxy_o[io, e], zz_n[jn, e, e], zxy_n[jn, e])


def _merge_slots(g, gi_old, t_old, gi_new, t_new):
    """Merged slot table of one component and where each old/new slot goes in it.

    Unused slots (column -1) map to a harmless coordinate: their statistics are zero.
    """
    ncols = int(max(t_old.max(initial=-1), t_new.max(initial=-1))) + 1
    base = max(ncols, 1)
    go, so = np.nonzero(t_old >= 0)
    key_old = gi_old[go].astype(np.int64) * base + t_old[go, so]
    gn, sn = np.nonzero(t_new >= 0)
    key_new = gi_new[gn].astype(np.int64) * base + t_new[gn, sn]
    fresh = np.setdiff1d(key_new, key_old)  # sorted: by group, then column
    count_old = np.bincount(gi_old[go], minlength=g)
    # columns new to a group follow its old ones, numbered by the one slot rule
    fresh_rank, _ = number_pairs(fresh, base)
    fresh_slot = count_old[fresh // base] + fresh_rank
    all_keys = np.concatenate([key_old, fresh])
    all_slots = np.concatenate([so, fresh_slot]).astype(np.int64)
    width = int(all_slots.max()) + 1 if all_slots.size else 0
    table = np.full((g, width), -1, dtype=np.int64)
    table[all_keys // base, all_slots] = all_keys % base
    order = np.argsort(all_keys)
    sorted_keys, sorted_slots = all_keys[order], all_slots[order]
    m_old = np.zeros(t_old.shape, dtype=np.int64)
    m_old[go, so] = so  # old slots keep their place
    unused_old = t_old < 0
    m_old[unused_old] = np.broadcast_to(np.arange(t_old.shape[1]), t_old.shape)[unused_old]
    m_new = np.zeros(t_new.shape, dtype=np.int64)
    pos = np.searchsorted(sorted_keys, key_new)
    m_new[gn, sn] = sorted_slots[pos]
    # unused new slots: any coordinate inside the width (their statistics are zero)
    m_new[t_new < 0] = 0
    if width == 0:
        m_old[:] = 0
        m_new[:] = 0
    return table, np.minimum(m_old, max(width - 1, 0)), m_new


def _merged_column_sums(old, new) -> np.ndarray | None:
    """The column sums of old + new statistics (in one column map), None where either
    holds none."""
    return None if old is None or new is None else old + new
