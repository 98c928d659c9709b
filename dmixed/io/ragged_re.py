"""Random effects saved ragged: BLUPs and conditional covariances without padded slots.

Results fitted with variance components held structured keep their BLUPs and
covariances ragged (:class:`~dmixed.stats.blup_cov.RaggedBlup`,
:class:`~dmixed.stats.blup_cov.RaggedCov`).  A results directory stores them so (format
version 2), in two tables instead of the padded ``re[j]`` (G × r) and ``cov[a,b]``
(G × r(r+1)/2) columns:

- ``random_effects.parquet``, one row per group: key, size, the ``exog_re`` BLUPs
  ``re[j]`` (``j < q``) and the covariance's ``exog_re`` root ``cov_root[a,b]``
  (``R_i``, q × q);
- ``random_effects_slots.parquet``, one row per (group, slot) the group uses or its
  slot table lists: ``group`` (row of the first table), ``pos`` (the slot's padded
  column), ``vc_column`` (the component's column it holds, −1: none), ``used``, the
  BLUP ``re``, the covariance row ``w[j]`` and term ``delta``.

The prior variance of a slot a group does not use is one number per component
(``blup_cov_prior`` in ``estimates.json``).  Sizes ``O(G q² + J q)``.  From results
format 7, ``j``, ``a`` and ``b`` in the column names are the effects' labels
(``re["x1"]``, ``cov_root["x1","Group"]``, ``w["x1"]``:
:func:`dmixed.stats.columns.effect_labels`); directories before it number them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..stats import columns
from ..stats.blup_cov import RaggedBlup, RaggedCov

__all__ = [
    "RAGGED_FORM",
    "SLOTS_TABLE",
    "component_prior",
    "is_ragged",
    "ragged_group_columns",
    "ragged_random_effects",
    "slot_tables",
    "slots_table",
]

#: ``estimates.random_effects_form`` of a directory whose random effects are ragged.
RAGGED_FORM = "ragged"
#: The per-slot table's file.
SLOTS_TABLE = "random_effects_slots.parquet"

_RE, _ROOT = "re", "cov_root"


def is_ragged(state) -> bool:
    """Whether the results hold their random effects ragged."""
    return isinstance(state.blup, RaggedBlup) and isinstance(state.blup_cov, RaggedCov)


def _offsets(q: int, widths) -> np.ndarray:
    return q + np.concatenate([[0], np.cumsum(np.asarray(widths, dtype=np.int64))[:-1]])


def component_prior(cov: RaggedCov, widths) -> list[float]:
    """The prior variance of each component's unused slots (one number each).

    Raises
    ------
    ValueError
        A component's slots have different priors (not a covariance of this model).
    """
    out = []
    for first, width in zip(_offsets(0, widths), widths, strict=True):
        values = cov.prior[first : first + width]
        if values.size and not np.all(values == values[0]):
            raise ValueError("a variance component's slots have different prior variances")
        out.append(float(values[0]) if values.size else 0.0)
    return out


def ragged_group_columns(state, cols: dict, labels=None) -> None:
    """Add the per-group columns ``re[j]`` and ``cov_root[a,b]`` (module doc) to ``cols``
    (``labels``: the coordinates' labels naming them in place of ``j``, ``a``, ``b``,
    :func:`dmixed.stats.columns.effect_labels`)."""
    columns.put_vector(cols, _RE, state.blup.re, labels)
    root = state.blup_cov.root
    for a in range(root.shape[1]):
        for b in range(root.shape[2]):
            cols[columns.matrix_column(_ROOT, a, b, labels)] = root[:, a, b]


def slots_table(state, labels=None) -> pd.DataFrame:
    """The per-slot table (module doc) of ragged results (``labels``: as
    :func:`ragged_group_columns`', naming ``w[j]``).

    Raises
    ------
    ValueError
        The BLUPs and the covariances use different slots.
    """
    blup, cov = state.blup, state.blup_cov
    if not (np.array_equal(blup.group, cov.group) and np.array_equal(blup.pos, cov.pos)):
        raise ValueError("the BLUPs and their covariances use different slots")
    q, r, widths = cov.q, blup.r, state.vc_slot_widths
    listed = []
    for table, first in zip(state.vc_slot_cols, _offsets(q, widths), strict=True):
        gi, si = np.nonzero(np.asarray(table) >= 0)
        listed.append((gi * r + first + si, np.asarray(table)[gi, si]))
    used_keys = cov.group * r + cov.pos
    keys = np.union1d(used_keys, np.concatenate([np.zeros(0, np.int64)] + [k for k, _ in listed]))
    vc_column = np.full(keys.size, -1, dtype=np.int64)
    for k, col in listed:
        vc_column[np.searchsorted(keys, k)] = col
    at = np.searchsorted(keys, used_keys)
    used = np.zeros(keys.size, dtype=bool)
    used[at] = True
    value, delta = np.zeros(keys.size), np.zeros(keys.size)
    w = np.zeros((keys.size, q))
    value[at], delta[at], w[at] = blup.value, cov.delta, cov.w
    cols = {"group": keys // r, "pos": keys % r, "vc_column": vc_column, "used": used}
    cols[_RE] = value
    columns.put_vector(cols, "w", w, labels)
    cols["delta"] = delta
    return pd.DataFrame(cols)


def ragged_random_effects(
    table: pd.DataFrame, slots: pd.DataFrame, q: int, widths, prior, labels=None
) -> tuple[RaggedBlup, RaggedCov, list[np.ndarray]]:
    """``(blup, blup_cov, vc_slot_cols)`` of the two tables (module doc): the inverse of
    :func:`ragged_group_columns` and :func:`slots_table` (``labels`` as given them).

    Raises
    ------
    ValueError
        The tables do not fit together (a slot outside the groups or the padded width,
        a component whose widest group has fewer slots than its width, a prior per
        component missing).
    """
    g = len(table)
    widths = tuple(int(w) for w in widths)
    r = q + sum(widths)
    if len(prior) != len(widths):
        raise ValueError(f"{len(prior)} prior variances for {len(widths)} components")
    group = slots["group"].to_numpy().astype(np.int64)
    pos = slots["pos"].to_numpy().astype(np.int64)
    if group.size and (group.min() < 0 or group.max() >= g or pos.min() < q or pos.max() >= r):
        raise ValueError("a slot outside the groups or the padded random design")
    used = slots["used"].to_numpy().astype(bool)
    re = columns.take_vector(table, _RE, q, g, labels)
    root = np.zeros((g, q, q))
    for a in range(q):
        for b in range(q):
            root[:, a, b] = np.asarray(table[columns.matrix_column(_ROOT, a, b, labels)])
    w = columns.take_vector(slots, "w", q, len(slots), labels)
    blup = RaggedBlup(re, group[used], pos[used], slots[_RE].to_numpy()[used], r)
    prior_slots = np.repeat(np.asarray(prior, dtype=np.float64), widths)
    delta = slots["delta"].to_numpy()[used]
    cov = RaggedCov(root, group[used], pos[used], w[used], delta, prior_slots)
    vc_column = slots["vc_column"].to_numpy().astype(np.int64)
    return blup, cov, slot_tables(group, pos, vc_column, q, widths, g)


def slot_tables(group, pos, vc_column, q: int, widths, g: int) -> list[np.ndarray]:
    """The slot tables (G, m_c) of the per-slot table's ``group``, ``pos`` and
    ``vc_column``.

    Raises
    ------
    ValueError
        A component whose widest group has fewer slots than its width.
    """
    offsets = _offsets(q, widths)
    comp = np.searchsorted(offsets, pos, side="right") - 1
    tables = []
    for c, width in enumerate(widths):
        out = np.full((g, width), -1, dtype=np.int64)
        sel = (comp == c) & (vc_column >= 0)
        out[group[sel], pos[sel] - offsets[c]] = vc_column[sel]
        if width and not (out[:, -1] >= 0).any():  # the widest group sets the width
            raise ValueError(f"component {c}'s slots are fewer than its width {width}")
        tables.append(out)
    return tables
