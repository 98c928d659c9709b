"""The slot files of saved statistics held ragged (:mod:`dmixed.stats.checkpoint`, format
version 4, and 5 for crossed components): one row per variance-component slot a group
has, never a padded G × r × r; held crossed, also the co-occurrence files, one row per
co-occurring pair of slots of a group (:func:`cross_columns`, :func:`cross_from_frame`).

Each row holds the slot's group (its position among the sorted groups), component,
column of the padded random design (``pos``), column of its component (``column``,
what the slot tables ``vc_slot_cols`` hold), whether the ragged statistics hold an
entry for it (``held``: a slot whose rows all have weight zero may have none) and that
entry: ``d``, ``b[j]`` (j < q), ``f2[j]`` (j < p + 1) (:class:`RaggedArrays`).  The rows
are sorted by (group, pos).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import CheckpointError
from .columns import put_vector, take_vector
from .crossed_stats import CrossSums
from .ragged_stats import RaggedArrays, layout_offsets, slot_columns

#: the slot files' columns of integers, in this order
SLOT_KEYS = ("group", "comp", "pos", "column")
#: the column saying whether the ragged statistics hold the slot's entry
HELD = "held"


def slot_rows(ragged: RaggedArrays, slot_cols: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Every slot of the slot tables (G, m_c) as one row, with its ragged entry (zeros
    where not held), sorted by (group, pos): the columns of the slot files."""
    q, r = ragged.q, ragged.r
    parts = [np.zeros(0, dtype=np.int64)]
    for c, table in enumerate(slot_cols):
        gi, si = np.nonzero(table >= 0)
        parts.append(gi.astype(np.int64) * r + ragged.offsets[c] + si)
    keys = np.sort(np.concatenate(parts))
    held_keys = ragged.group * r + ragged.pos
    at = np.searchsorted(keys, held_keys)
    if held_keys.size and (at.max() >= keys.size or np.any(keys[at] != held_keys)):
        raise ValueError("the ragged statistics hold a slot that the slot tables do not")
    group, pos = keys // r, keys % r
    comp = np.searchsorted(ragged.offsets, pos, side="right") - 1
    n = keys.size
    d, b, f2 = np.zeros(n), np.zeros((n, q)), np.zeros((n, ragged.k))
    d[at], b[at], f2[at] = ragged.d, ragged.b, ragged.f2
    held = np.zeros(n, dtype=bool)
    held[at] = True
    probe = RaggedArrays(ragged.a, ragged.f1, group, comp, pos, d, b, f2, ragged.offsets, r)
    cols = {
        "group": group,
        "comp": comp.astype(np.int64),
        "pos": pos,
        "column": slot_columns(probe, slot_cols),
        HELD: held,
        "d": d,
    }
    put_vector(cols, "b", b)
    put_vector(cols, "f2", f2)
    return cols


def slot_frame(rows: dict[str, np.ndarray], lo: int, hi: int) -> pd.DataFrame:
    """Rows ``lo:hi`` of :func:`slot_rows` as one slot file's frame."""
    return pd.DataFrame({name: values[lo:hi] for name, values in rows.items()})


def ragged_from_slots(
    frame: pd.DataFrame, a: np.ndarray, f1: np.ndarray, widths, where
) -> tuple[RaggedArrays, list[np.ndarray]]:
    """The ragged statistics and slot tables of the slot files' rows (``frame``, all
    parts in order) and the groups' ``exog_re`` blocks ``a`` (G, q, q), ``f1`` (G, q, k).

    Raises
    ------
    CheckpointError
        Naming ``where``: a row's group, component, ``pos`` or column out of range, or
        rows not strictly sorted by (group, pos).
    """
    g, q, k = a.shape[0], a.shape[1], f1.shape[2]
    widths = [int(w) for w in widths]
    offsets = layout_offsets(q, widths)
    r = q + sum(widths)
    group, comp, pos, column = (frame[name].to_numpy().astype(np.int64) for name in SLOT_KEYS)
    held = frame[HELD].to_numpy().astype(bool)
    problems = []
    if group.size and (group.min() < 0 or group.max() >= g):
        problems.append(f"a slot's group is outside 0..{g - 1}")
    if comp.size and (comp.min() < 0 or comp.max() >= len(widths)):
        problems.append(f"a slot's component is outside 0..{len(widths) - 1}")
    elif pos.size and np.any(
        (pos < offsets[comp]) | (pos >= offsets[comp] + np.asarray(widths)[comp])
    ):
        problems.append("a slot's pos is outside its component's columns")
    if np.any(column < 0):
        problems.append("a slot's column is negative")
    keys = group * r + pos
    if np.any(np.diff(keys) <= 0):
        problems.append("the slots are not sorted by (group, pos) without repeats")
    if problems:
        raise CheckpointError(
            f"{where} holds damaged statistics: {'; '.join(problems)}; rebuild them from the data"
        )
    tables = [np.full((g, w), -1, dtype=np.int64) for w in widths]
    for c, table in enumerate(tables):
        sel = comp == c
        table[group[sel], pos[sel] - offsets[c]] = column[sel]
    n = len(frame)
    ragged = RaggedArrays(
        a=a,
        f1=f1,
        group=group[held],
        comp=comp[held],
        pos=pos[held],
        d=frame["d"].to_numpy(dtype=np.float64)[held],
        b=np.ascontiguousarray(take_vector(frame, "b", q, n)[held]),
        f2=np.ascontiguousarray(take_vector(frame, "f2", k, n)[held]),
        offsets=offsets,
        r=r,
    )
    return ragged, tables


def cross_columns(cross: CrossSums) -> dict[str, np.ndarray]:
    """The co-occurrence files' columns: ``group``, ``s``, ``t`` (padded columns,
    ``s < t``) and ``value``, sorted by (group, s, t)."""
    return {"group": cross.group, "s": cross.s, "t": cross.t, "value": cross.value}


def cross_from_frame(frame: pd.DataFrame, n_groups: int, q: int, r: int, where) -> CrossSums:
    """The co-occurrence sums of the co-occurrence files' rows (all parts in order).

    Raises
    ------
    CheckpointError
        Naming ``where``: a row's group or columns out of range (``s < t`` within the
        variance-component columns ``q … r-1``), or rows not strictly sorted.
    """
    group, s, t = (frame[name].to_numpy().astype(np.int64) for name in ("group", "s", "t"))
    problems = []
    if group.size and (group.min() < 0 or group.max() >= n_groups):
        problems.append(f"a co-occurrence's group is outside 0..{n_groups - 1}")
    if np.any((s < q) | (s >= t) | (t >= r)):
        problems.append(f"a co-occurrence's columns are not s < t within {q}..{r - 1}")
    elif np.any(np.diff((group * r + s) * r + t) <= 0):
        problems.append("the co-occurrences are not sorted by (group, s, t) without repeats")
    if problems:
        raise CheckpointError(
            f"{where} holds damaged statistics: {'; '.join(problems)}; rebuild them from the data"
        )
    return CrossSums(group, s, t, frame["value"].to_numpy(dtype=np.float64))
