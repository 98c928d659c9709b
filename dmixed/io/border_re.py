"""Random effects of crossed variance components saved unpadded.

Results fitted with crossed components held crossed keep their BLUPs ragged
(:class:`~dmixed.stats.blup_cov.RaggedBlup`) and their conditional covariances as
``P_i = W_i W_i' + diag(δ_i)`` (:class:`~dmixed.stats.border_cov.BorderCov`: ``W_i`` of
the group's own border width ``w_i``).  A results directory stores them so (format
version 3, ``random_effects_form`` ``"crossed"``), never as the padded ``cov[a,b]``
columns (G × r(r+1)/2):

- ``random_effects.parquet``, one row per group: key, size, the ``exog_re`` BLUPs
  ``re[j]``;
- ``random_effects_slots.parquet``, one row per (group, slot) the group uses or its slot
  table lists: ``group`` (row of the first table), ``pos`` (padded column),
  ``vc_column`` (−1: none), ``used``, the BLUP ``re``, ``border`` (the slot is a column
  of the group's border) and ``delta`` (its diagonal term; 0 on the border);
- ``random_effects_cov.parquet``, the rows of every ``W_i``: ``group``, ``pos`` (the
  row's padded column: ``exog_re``, the border slots, then the diagonal slots), ``k``
  (its column, ``0 … w_i-1``) and ``value``.

The prior variance of a slot a group does not use is one number per component, as for
ragged results (``blup_cov_prior``).  Sizes ``O(Σ_i (w_i + m_i) w_i)``.  From results
format 7 the ``re`` columns are named by the effects (``re["x1"]``:
:func:`dmixed.stats.columns.effect_labels`); directories before it number them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..stats import columns
from ..stats.blup_cov import RaggedBlup
from ..stats.border_cov import BorderCov, CovBucket
from .ragged_re import slot_tables

__all__ = [
    "COV_TABLE",
    "CROSSED_FORM",
    "crossed_random_effects",
    "crossed_tables",
    "is_crossed",
]

#: ``estimates.random_effects_form`` of a directory whose covariances are crossed.
CROSSED_FORM = "crossed"
#: The table of the rows of every ``W_i``.
COV_TABLE = "random_effects_cov.parquet"

_RE = "re"


def is_crossed(state) -> bool:
    """Whether the results hold their covariances as :class:`BorderCov`."""
    return isinstance(state.blup, RaggedBlup) and isinstance(state.blup_cov, BorderCov)


def _listed_keys(state, r: int, q: int) -> tuple[np.ndarray, np.ndarray]:
    """Keys ``group · r + pos`` of the slots the slot tables list, and their columns."""
    widths = np.asarray(state.vc_slot_widths, dtype=np.int64)
    offsets = q + np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(np.int64)
    keys, cols = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    for table, first in zip(state.vc_slot_cols, offsets, strict=True):
        table = np.asarray(table)
        gi, si = np.nonzero(table >= 0)
        keys.append(gi * r + first + si)
        cols.append(table[gi, si])
    return np.concatenate(keys), np.concatenate(cols)


def crossed_tables(state) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-slot table and the table of ``W_i``'s rows (module doc)."""
    blup, cov = state.blup, state.blup_cov
    q, r = cov.q, blup.r
    listed, listed_cols = _listed_keys(state, r, q)
    used_keys = blup.group * r + blup.pos
    keys = np.union1d(used_keys, listed)
    vc_column = np.full(keys.size, -1, dtype=np.int64)
    vc_column[np.searchsorted(keys, listed)] = listed_cols
    used = np.zeros(keys.size, dtype=bool)
    value = np.zeros(keys.size)
    at = np.searchsorted(keys, used_keys)
    used[at], value[at] = True, blup.value
    border, delta = np.zeros(keys.size, dtype=bool), np.zeros(keys.size)
    rows = []  # (group, pos, W row)
    for bk in cov.buckets:
        w = bk.bpos.shape[1]
        gb = np.repeat(bk.groups, w - q)
        border[np.searchsorted(keys, gb * r + bk.bpos[:, q:].reshape(-1))] = True
        gd = bk.groups[bk.group]
        delta[np.searchsorted(keys, gd * r + bk.pos)] = bk.delta
        group = np.concatenate([np.repeat(bk.groups, w), gd])
        pos = np.concatenate([bk.bpos.reshape(-1), bk.pos])
        fac = np.concatenate([bk.root.reshape(-1, w), bk.w])
        rows.append((np.repeat(group, w), np.repeat(pos, w), np.tile(np.arange(w), pos.size)))
        rows[-1] += (fac.reshape(-1),)
    slots = pd.DataFrame(
        {
            "group": keys // r,
            "pos": keys % r,
            "vc_column": vc_column,
            "used": used,
            _RE: value,
            "border": border,
            "delta": delta,
        }
    )
    none = (np.zeros(0, dtype=np.int64),) * 3 + (np.zeros(0),)
    group, pos, k, fac = (np.concatenate(x) for x in zip(none, *rows, strict=True))
    return slots, pd.DataFrame({"group": group, "pos": pos, "k": k, "value": fac})


def crossed_random_effects(
    table: pd.DataFrame,
    slots: pd.DataFrame,
    cov: pd.DataFrame,
    q: int,
    widths,
    prior,
    labels=None,
) -> tuple[RaggedBlup, BorderCov, list[np.ndarray]]:
    """``(blup, blup_cov, vc_slot_cols)`` of the three tables (module doc): the inverse
    of :func:`crossed_tables` (``labels``: the coordinates' labels naming the ``re``
    columns of ``table``, :func:`dmixed.stats.columns.effect_labels`; None: ``re[j]``).

    Raises
    ------
    ValueError
        The tables do not fit together: a slot or a row of ``W_i`` outside the groups,
        the padded width or its group's border; a prior per component missing.
    """
    g = len(table)
    widths = tuple(int(w) for w in widths)
    r = q + sum(widths)
    if len(prior) != len(widths):
        raise ValueError(f"{len(prior)} prior variances for {len(widths)} components")
    group, pos = (slots[c].to_numpy().astype(np.int64) for c in ("group", "pos"))
    if group.size and (group.min() < 0 or group.max() >= g or pos.min() < q or pos.max() >= r):
        raise ValueError("a slot outside the groups or the padded random design")
    used = slots["used"].to_numpy().astype(bool)
    blup = RaggedBlup(
        columns.take_vector(table, _RE, q, g, labels), group[used], pos[used],
        slots[_RE].to_numpy()[used], r,
    )  # fmt: skip
    border = slots["border"].to_numpy().astype(bool) & used
    diag = used & ~border
    width = q + np.bincount(group[border], minlength=g)
    keys = group * r + pos  # sorted (the table's order)
    # each slot's row of W_i: its column in the border, or its place among the diagonal
    # slots of its bucket (slots in (group, pos) order)
    rank = np.zeros(keys.size, dtype=np.int64)
    first = np.searchsorted(group[border], np.arange(g))
    rank[border] = q + np.arange(border.sum()) - first[group[border]]
    buckets, where = [], np.zeros((g, 2), dtype=np.int64)  # (bucket, local index)
    for b, w in enumerate(np.unique(width)):
        gi = np.flatnonzero(width == w)
        where[gi] = np.column_stack([np.full(gi.size, b), np.arange(gi.size)])
        sel = diag & (width[group] == w)
        bpos = np.zeros((gi.size, int(w)), dtype=np.int64)
        bpos[:, :q] = np.arange(q)
        bs = border & (width[group] == w)
        bpos[where[group[bs], 1], rank[bs]] = pos[bs]
        rank[sel] = np.arange(sel.sum())
        buckets.append(
            CovBucket(
                gi.astype(np.int64), np.zeros((gi.size, int(w), int(w))), bpos,
                where[group[sel], 1], pos[sel], np.zeros((int(sel.sum()), int(w))),
                slots["delta"].to_numpy(dtype=np.float64)[sel],
            )
        )  # fmt: skip
    _fill_factors(buckets, cov, where, keys, rank, border, width, q, r)
    prior_slots = np.repeat(np.asarray(prior, dtype=np.float64), widths)
    vc_column = slots["vc_column"].to_numpy().astype(np.int64)
    tables = slot_tables(group, pos, vc_column, q, widths, g)
    return blup, BorderCov(buckets, q, g, prior_slots), tables


def _fill_factors(buckets, cov: pd.DataFrame, where, keys, rank, border, width, q, r) -> None:
    """The rows of ``W_i`` (the table ``cov``) into the buckets' ``root`` and ``w``."""
    group, pos, k = (cov[c].to_numpy().astype(np.int64) for c in ("group", "pos", "k"))
    value = cov["value"].to_numpy(dtype=np.float64)
    g = width.size
    if group.size and (group.min() < 0 or group.max() >= g or np.any(k < 0)):
        raise ValueError(f"a row of a covariance factor outside the groups of {COV_TABLE}")
    if np.any(k >= width[group]) or np.any((pos < 0) | (pos >= r)):
        raise ValueError(f"a row of a covariance factor outside its group's border ({COV_TABLE})")
    on_re = pos < q
    at = np.minimum(np.searchsorted(keys, group * r + pos), max(keys.size - 1, 0))
    if np.any(~on_re & (keys[at] != group * r + pos)):
        raise ValueError(f"a row of a covariance factor of a slot not listed ({COV_TABLE})")
    row = np.where(on_re, pos, rank[at])
    in_border = on_re | border[at]
    bucket, local = where[group, 0], where[group, 1]
    for b, bk in enumerate(buckets):
        sel = in_border & (bucket == b)
        bk.root[local[sel], row[sel], k[sel]] = value[sel]
        sel = ~in_border & (bucket == b)
        bk.w[row[sel], k[sel]] = value[sel]
