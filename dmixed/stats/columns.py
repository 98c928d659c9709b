"""Column names of dmixed's per-group Parquet tables, and the arrays they hold.

Saved statistics (:mod:`dmixed.stats.checkpoint`) and saved results
(:mod:`dmixed.io.results_dir`) store per-group arrays as one row per group and one
column per entry, named after the entry::

    name[j]            entry j of a vector               (re[j]: BLUPs)
    name[a,b]          entry (a, b) of a matrix          (zz[a,b], cov[a,b]: a ≥ b only
                                                          for a symmetric matrix)
    vc_column[c][s]    the column of variance component c that slot s stands for (-1: unused)

Saved results of format 7 and later name the random-effect coordinates instead of
numbering them (:func:`effect_labels`): ``j`` and ``a``, ``b`` above are then each the
coordinate's label::

    re["Group"]               the BLUP of the random effect named ``Group``
    re["g"[0]]                slot 0 of variance component ``g`` (padded results)
    cov["x1","Group"]         their conditional covariance (row ≥ column, as above)

A label is the effect's name (``exog_re_names``) as a JSON string, so any name (one
holding commas, brackets or quotes) gives one label and the pair in ``cov[...]`` splits
one way only; a variance component's slot ``s`` is its name (``vc_names``) as a JSON
string followed by ``[s]``; a name that ``exog_re_names`` holds twice is followed by
``#j``, its position, at each place, so that no two labels are equal.

This module is the one owner of those names; both tables write and read them through it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "GROUP",
    "effect_labels",
    "vector_column",
    "matrix_column",
    "vc_slot_column",
    "put_vector",
    "take_vector",
    "put_lower_triangle",
    "take_lower_triangle",
    "put_vc_slots",
    "take_vc_slots",
]

GROUP = "group"
"""The column holding the group key."""


def effect_labels(exog_re_names, vc_names=(), vc_widths=()) -> list[str]:
    """The labels of the random-effect coordinates (module doc): one per ``exog_re``
    name, then ``vc_widths[c]`` per variance component ``vc_names[c]``; no two equal.

    Raises
    ------
    ValueError
        ``vc_names`` and ``vc_widths`` of different lengths.
    """
    if len(vc_names) != len(vc_widths):
        raise ValueError(f"{len(vc_names)} variance components, {len(vc_widths)} widths")
    quoted = [json.dumps(str(name), ensure_ascii=False) for name in exog_re_names]
    seen: dict[str, int] = {}
    for label in quoted:
        seen[label] = seen.get(label, 0) + 1
    labels = [f"{q}#{j}" if seen[q] > 1 else q for j, q in enumerate(quoted)]
    for name, width in zip(vc_names, vc_widths, strict=True):
        vc = json.dumps(str(name), ensure_ascii=False)
        labels += [f"{vc}[{s}]" for s in range(int(width))]
    return labels


def vector_column(name: str, j: int, labels: Sequence[str] | None = None) -> str:
    """``name[j]``: entry ``j`` of a per-group vector (``name[label]`` with ``labels``,
    :func:`effect_labels`)."""
    return f"{name}[{j if labels is None else labels[j]}]"


def matrix_column(name: str, a: int, b: int, labels: Sequence[str] | None = None) -> str:
    """``name[a,b]``: entry ``(a, b)`` of a per-group matrix (``name[label a,label b]``
    with ``labels``, :func:`effect_labels`)."""
    if labels is None:
        return f"{name}[{a},{b}]"
    return f"{name}[{labels[a]},{labels[b]}]"


def vc_slot_column(comp: int, slot: int) -> str:
    """``vc_column[comp][slot]``: the column of component ``comp`` held by ``slot``."""
    return f"vc_column[{comp}][{slot}]"


def put_vector(
    cols: dict, name: str, values: np.ndarray, labels: Sequence[str] | None = None
) -> None:
    """Add the columns ``name[j]`` (or ``name[label]``) of ``values`` (G, r) to ``cols``."""
    for j in range(values.shape[1]):
        cols[vector_column(name, j, labels)] = values[:, j]


def take_vector(
    frame: Any, name: str, r: int, n_rows: int, labels: Sequence[str] | None = None
) -> np.ndarray:
    """The (G, r) array stored by :func:`put_vector` (G = ``n_rows``); ``frame`` is a
    DataFrame or a mapping of column name → values."""
    if not r:
        return np.zeros((n_rows, 0))
    return np.column_stack([frame[vector_column(name, j, labels)] for j in range(r)])


def put_lower_triangle(
    cols: dict, name: str, mats: np.ndarray, labels: Sequence[str] | None = None
) -> None:
    """Add the columns ``name[a,b]`` (a ≥ b; or by ``labels``) of symmetric ``mats``
    (G, r, r) to ``cols``."""
    r = mats.shape[1]
    for a in range(r):
        for b in range(a + 1):
            cols[matrix_column(name, a, b, labels)] = mats[:, a, b]


def take_lower_triangle(
    frame: Any, name: str, r: int, n_rows: int, labels: Sequence[str] | None = None
) -> np.ndarray:
    """The symmetric (G, r, r) array stored by :func:`put_lower_triangle`."""
    out = np.zeros((n_rows, r, r))
    for a in range(r):
        for b in range(a + 1):
            out[:, a, b] = out[:, b, a] = np.asarray(frame[matrix_column(name, a, b, labels)])
    return out


def put_vc_slots(cols: dict, slot_cols: list[np.ndarray]) -> None:
    """Add ``vc_column[c][s]`` for every component's slot table (G, m_c) to ``cols``."""
    for comp, table in enumerate(slot_cols):
        for s in range(table.shape[1]):
            cols[vc_slot_column(comp, s)] = table[:, s]


def take_vc_slots(frame: Any, widths, n_rows: int) -> list[np.ndarray]:
    """The slot tables stored by :func:`put_vc_slots`: one int64 (G, m_c) per component."""
    return [
        np.column_stack(
            [np.asarray(frame[vc_slot_column(c, s)]) for s in range(w)] or [np.zeros((n_rows, 0))]
        ).astype(np.int64)
        for c, w in enumerate(widths)
    ]
