"""Column names of dmixed's per-group Parquet tables, and the arrays they hold.

Saved statistics (:mod:`dmixed.stats.checkpoint`) and saved results
(:mod:`dmixed.io.results_dir`) store per-group arrays as one row per group and one
column per entry, named after the entry::

    name[j]            entry j of a vector               (re[j]: BLUPs)
    name[a,b]          entry (a, b) of a matrix          (zz[a,b], cov[a,b]: a ≥ b only
                                                          for a symmetric matrix)
    vc_column[c][s]    the column of variance component c that slot s stands for (-1: unused)

This module is the one owner of those names; both tables write and read them through it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "GROUP",
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


def vector_column(name: str, j: int) -> str:
    """``name[j]``: entry ``j`` of a per-group vector."""
    return f"{name}[{j}]"


def matrix_column(name: str, a: int, b: int) -> str:
    """``name[a,b]``: entry ``(a, b)`` of a per-group matrix."""
    return f"{name}[{a},{b}]"


def vc_slot_column(comp: int, slot: int) -> str:
    """``vc_column[comp][slot]``: the column of component ``comp`` held by ``slot``."""
    return f"vc_column[{comp}][{slot}]"


def put_vector(cols: dict, name: str, values: np.ndarray) -> None:
    """Add the columns ``name[j]`` of ``values`` (G, r) to ``cols``."""
    for j in range(values.shape[1]):
        cols[vector_column(name, j)] = values[:, j]


def take_vector(frame: Any, name: str, r: int, n_rows: int) -> np.ndarray:
    """The (G, r) array stored by :func:`put_vector` (G = ``n_rows``); ``frame`` is a
    DataFrame or a mapping of column name → values."""
    if not r:
        return np.zeros((n_rows, 0))
    return np.column_stack([frame[vector_column(name, j)] for j in range(r)])


def put_lower_triangle(cols: dict, name: str, mats: np.ndarray) -> None:
    """Add the columns ``name[a,b]`` (a ≥ b) of symmetric ``mats`` (G, r, r) to ``cols``."""
    r = mats.shape[1]
    for a in range(r):
        for b in range(a + 1):
            cols[matrix_column(name, a, b)] = mats[:, a, b]


def take_lower_triangle(frame: Any, name: str, r: int, n_rows: int) -> np.ndarray:
    """The symmetric (G, r, r) array stored by :func:`put_lower_triangle`."""
    out = np.zeros((n_rows, r, r))
    for a in range(r):
        for b in range(a + 1):
            out[:, a, b] = out[:, b, a] = np.asarray(frame[matrix_column(name, a, b)])
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
