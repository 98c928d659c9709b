"""A variance component's per-cell sums: each (group, slot) cell's ``d``, ``b`` and ``F2``.

The ragged statistics (:func:`~dmixed.kernels.vc_blocks.ragged_statistics`) need, for
every cell ``j`` of a component (the rows of one group with an entry in one slot), only
the sums against the entry ``v``::

    d_j = Σ v²,   b_j = Σ v z  (q,),   f2_j = Σ v [x y]  (k,)

in the columns' map of the dense pass (shifted and weighted rows, scales applied to the
sums).  :func:`cell_sums` forms exactly these ``1 + q + k`` sums, one ``bincount`` each
(fewer where a column is all ones), from the same shifted and weighted columns as
:func:`~dmixed.kernels.accumulate_packed_into` would for the design ``[Z, v]``: the same
products, added in the same (row) order and scaled by the same powers of two, so the
numbers are that pass's bit for bit, without its ``Z'Z``, ``Z'[X y]``, ``[X y]'[X y]``
of every cell and without unpacking.

Where every row has exactly one entry of the component (its cells partition the rows,
each cell inside one group), :func:`cells_and_groups` takes the group statistics and
the cells' sums in one pass over the rows: every term of both is summed per cell, and
the groups' sums are the sums of their cells.
"""

from __future__ import annotations

import numpy as np

from ..stats.constant import constant_value
from ..stats.packed import PackedLayout
from ..stats.standardize import Standardization
from .rows import EXTREME_SCALE_LOG2, accumulate_statistics, known_ones, plan_sums, product_plan

__all__ = [
    "cell_plan_sums",
    "cell_sums",
    "cells_and_groups",
    "equal_cells",
    "whole_component_pass",
]


def _tame_needed(std: Standardization | None) -> bool:
    """Whether a scale of the map is extreme (the dense pass then divides the rows by
    it first, :data:`~dmixed.kernels.rows.EXTREME_SCALE_LOG2`)."""
    if std is None:
        return False
    scales = np.concatenate([std.x_scale, [std.y_scale], std.z_scale])
    return bool(np.any(np.abs(np.log2(scales)) > EXTREME_SCALE_LOG2))


def _columns(endog, exog, exog_re, v, weights, std: Standardization | None):
    """``[X y]``'s and ``Z``'s columns shifted by the map and every row scaled by
    ``√w``, and the entry ``v`` scaled by ``√w`` (the entry has no shift)."""
    sw = None if weights is None else np.sqrt(weights)
    xy = [exog[:, j] for j in range(exog.shape[1])] + [endog]
    if std is not None:
        shifts = np.append(std.x_shift, std.y_shift)
        if np.any(shifts != 0):  # (x − 0 is x: only the shifted columns are copied)
            xy = [col if s == 0 else col - s for col, s in zip(xy, shifts, strict=True)]
    z = [exog_re[:, a] for a in range(exog_re.shape[1])]
    if std is not None:
        z = [col if s == 0 else col - s for col, s in zip(z, std.z_shift, strict=True)]
    if sw is not None:
        xy = [col * sw for col in xy]
        z = [col * sw for col in z]
        v = v * sw
    return xy, z, v


def _all_ones(col: np.ndarray) -> bool:
    """Whether every value is exactly 1 (two reductions, no temporary; NaN: no)."""
    head = min(col.shape[0], 8)
    return bool((col[:head] == 1.0).all() and col.min() == 1.0 and col.max() == 1.0)


class _Sums:
    """Per-cell sums of ``v · u``, each distinct source summed once."""

    def __init__(self, cell: np.ndarray, n_cells: int, v: np.ndarray) -> None:
        self.cell, self.n_cells, self.v = cell, n_cells, v
        self.v_ones = _all_ones(v)
        self.cache: dict = {}

    def _bincount(self, key, weights) -> np.ndarray:
        if key not in self.cache:
            out: np.ndarray
            if weights is None:
                out = np.bincount(self.cell, minlength=self.n_cells).astype(np.float64)
            else:
                out = np.bincount(self.cell, weights=weights(), minlength=self.n_cells)
            self.cache[key] = out
        return self.cache[key]

    def against(self, u: np.ndarray | None) -> np.ndarray:
        """``Σ v u`` per cell (``u`` None: ``Σ v²``)."""
        u_ones = self.v_ones if u is None else _all_ones(u)
        if self.v_ones and u_ones:
            return self._bincount("count", None)
        if self.v_ones:
            return self._bincount(id(u), lambda: u)
        if u_ones:
            return self._bincount("v", lambda: self.v)
        if u is None:
            return self._bincount("vv", lambda: self.v * self.v)
        return self._bincount(("v", id(u)), lambda: u * self.v)


def cell_sums(
    cell: np.ndarray,
    n_cells: int,
    endog: np.ndarray,
    exog: np.ndarray,
    exog_re: np.ndarray,
    v: np.ndarray,
    weights: np.ndarray | None,
    std: Standardization | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Each cell's ``d`` (J,), ``b`` (J, q) and ``f2`` (J, k) of one component's entries.

    Parameters
    ----------
    cell : ndarray of int64 (n,)
        The cell ``0 … n_cells−1`` of every entry's row.
    endog, exog, exog_re, weights
        Those rows (n,), (n, p), (n, q), (n,) or None.
    v : ndarray (n,)
        Their entries.
    std : Standardization or None
        The map of the design ``[exog_re, v]``: ``exog_re``'s columns and the
        component's scale (its one ``vc_scale``, or none: 1).

    Returns
    -------
    (d, b, f2), or None where a scale of ``std`` is extreme (the caller then sums the
    design ``[exog_re, v]`` with :func:`~dmixed.kernels.accumulate_statistics`, which
    divides such columns first).
    """
    if _tame_needed(std):
        return None
    xy, z, v = _columns(
        np.asarray(endog, dtype=np.float64),
        np.asarray(exog, dtype=np.float64),
        np.asarray(exog_re, dtype=np.float64),
        np.asarray(v, dtype=np.float64),
        weights,
        std,
    )
    sums = _Sums(np.asarray(cell, dtype=np.int64), n_cells, v)
    d = sums.against(None)
    b = np.empty((len(z), n_cells)).T
    f2 = np.empty((len(xy), n_cells)).T
    for a, col in enumerate(z):
        b[:, a] = sums.against(col)
    for m, col in enumerate(xy):
        f2[:, m] = sums.against(col)
    if std is not None:
        _scale_cells(d, b, f2, std)
    return d, b, f2


def _scale_cells(d: np.ndarray, b: np.ndarray, f2: np.ndarray, std: Standardization) -> None:
    """The map's scales applied to the cells' sums in place (:func:`_cell_factors`)."""
    f_d, f_b, f_f2 = _cell_factors(std, b.shape[1], f2.shape[1])
    _scale(d, f_d)
    for a in range(b.shape[1]):
        _scale(b[:, a], f_b[a])
    for m in range(f2.shape[1]):
        _scale(f2[:, m], f_f2[m])


def _cell_factors(std: Standardization | None, q: int, k: int):
    """The factors of the cells' sums in the map ``std`` (powers of two: exact):
    ``1/s_v²`` for ``d``, ``1/(s_v s_a)`` for ``b[:, a]``, ``1/(s_v s_m)`` for
    ``f2[:, m]`` (all 1 without a map)."""
    if std is None:
        return 1.0, np.ones(q), np.ones(k)
    s_v = std.slot_scales((1,))[0]
    sx = np.append(std.x_scale, std.y_scale)
    return 1.0 / (s_v * s_v), 1.0 / (s_v * std.z_scale), 1.0 / (s_v * sx)


def _scale(col: np.ndarray, factor: float) -> None:
    """``col *= factor`` in place where the factor is not 1 (a power of two: exact)."""
    if factor != 1.0:
        col *= factor


def cells_and_groups(
    codes: np.ndarray,
    n_groups: int,
    cell: np.ndarray,
    cell_group: np.ndarray,
    endog: np.ndarray,
    exog: np.ndarray,
    exog_re: np.ndarray,
    v: np.ndarray,
    weights: np.ndarray | None,
    std: Standardization | None,
    compiled: bool | None = None,
) -> tuple[dict, tuple[np.ndarray, np.ndarray, np.ndarray]] | None:
    """The group statistics of ``Z = exog_re`` and the cells' ``(d, b, f2)`` of one
    component whose every row has exactly one entry, in one pass over the rows.

    Each term of the product plan of ``[Z, v]`` (:func:`~dmixed.kernels.rows.product_plan`:
    the products of ``Z``'s columns and those with ``v``, shared ones summed once) is
    summed per cell over the rows (:func:`~dmixed.kernels.rows.plan_sums`, in row
    order: the cells' sums are :func:`cell_sums`' bit for bit); a group's terms are
    the sums of its cells' (``J`` values, not ``n`` rows: the same sums as a pass by
    group, added in another order, so equal to rounding, ~1e-16 relative).  The rest
    (shifts, weights, scales, within-group sums, ``[X y]'[X y]``) is
    :func:`~dmixed.kernels.accumulate_statistics`'.

    Parameters
    ----------
    codes : ndarray of int64 (n,)
        Each row's group ``0 … n_groups−1`` (every group has a row).
    cell : ndarray of int64 (n,)
        Each row's cell ``0 … J−1``.
    cell_group : ndarray of int64 (J,)
        Each cell's group.
    endog, exog, exog_re, v, weights, std
        As :func:`cell_sums` (``v`` (n,) non-zero entries).
    compiled : bool or None
        The per-cell sums compiled or by numpy (None: chosen by size).

    Returns
    -------
    (glob, (d, b, f2)): ``glob`` as :func:`~dmixed.kernels.accumulate_statistics`
    returns it (``zz``, ``zxy``, ``nobs``, ``xyxy``, ``n``, ``sum_log_weights``,
    ``within``), ``d`` (J,), ``b`` (J, q), ``f2`` (J, k); or None where a scale of
    ``std`` is extreme (see :func:`cell_sums`).
    """
    if _tame_needed(std):
        return None
    cell = np.asarray(cell, dtype=np.int64)
    k, q = exog.shape[1] + 1, exog_re.shape[1]
    n_cells = cell_group.size
    add_up = _adder(cell_group, n_groups)
    kept: dict = {}

    def by_cells(group_codes, sources, terms, n, compiled_):
        if n != n_groups:  # pragma: no cover - every group has a row: never compacted
            raise RuntimeError("internal error: the groups were compacted")
        v_col = np.asarray(v, dtype=np.float64)
        if weights is not None:
            v_col = v_col * np.sqrt(weights)
        ones = _known_ones(std, weights, v_col, k + q)
        union, column_term = product_plan(sources[:k], sources[k:] + [v_col], ones)
        per_cell = cell_plan_sums(cell, sources + [v_col], union, n_cells, compiled_)
        kept["cells"] = column_term, per_cell
        index = {t: i for i, t in enumerate(union)}
        return [None if t[0] == "zero" else add_up(per_cell[index[t]]) for t in terms]

    glob = accumulate_statistics(codes, n_groups, endog, exog, exog_re, weights, std, (), by_cells)
    if q == 0:  # no exog_re: the packed rows say nothing of [X y]'s width
        glob["zxy"] = np.zeros((n_groups, 0, k))
    column_term, per_cell = kept["cells"]
    return glob, _cell_columns(column_term, per_cell, q, k, n_cells, std)


#: cells of equal size in row order are summed row by row of the cells (one strided add of
#: every cell per row of a cell, :func:`cell_plan_sums`) up to this many rows a cell;
#: beyond, by one ``bincount`` per term (a Python step per row of a cell would add up)
EQUAL_CELLS_MAX = 16


def equal_cells(cell: np.ndarray, n_cells: int) -> int:
    """``L`` where the rows come in order of their cells, ``L`` rows each (``cell`` is
    ``0, …, 0, 1, …, 1, …`` with every cell ``0 … n_cells−1`` repeated ``L`` times,
    ``1 ≤ L ≤`` :data:`EQUAL_CELLS_MAX`: a balanced design sorted by group and level),
    else 0.  Checked on every row (one difference, one comparison)."""
    n = cell.shape[0]
    if n_cells == 0 or n % n_cells or n // n_cells > EQUAL_CELLS_MAX:
        return 0
    size = n // n_cells
    if cell[0] != 0 or cell[-1] != n_cells - 1 or cell[size - 1] != 0:  # (a quick look)
        return 0
    # cell[i + L] = cell[i] + 1 everywhere and the first L are 0: cell[i] = i // L
    step = np.subtract(cell[size:], cell[:-size])
    return size if bool((step == 1).all()) and not cell[:size].any() else 0


def cell_plan_sums(cell, sources, terms, n_cells: int, compiled: bool | None) -> list:
    """:func:`~dmixed.kernels.rows.plan_sums` by cell, bit for bit; where the cells are
    of equal size in row order (:func:`equal_cells`), without a ``bincount``: each
    cell's sum is ``0 + u_1 + u_2 + …`` over its rows in row order, as ``bincount``
    adds them (the first add makes a ``−0`` sum ``+0``, as its zero start does), each
    step one add of the cells' next rows (the term's values transposed to ``(L, J)``
    once, then ``L`` contiguous adds of ``J``: no per-row scatter, no ``J``-wide zeroed
    table per term)."""
    size = equal_cells(cell, n_cells)
    if not size:
        return plan_sums(cell, sources, terms, n_cells, compiled)
    out: list[np.ndarray | None] = []
    product = None  # one buffer for every product of two columns
    for spec in terms:
        if spec[0] == "zero":
            out.append(None)
            continue
        if spec[0] == "count":
            out.append(np.full(n_cells, float(size)))
            continue
        values = sources[spec[1]]
        if spec[0] == "prod":
            product = np.empty(cell.shape[0]) if product is None else product
            values = np.multiply(values, sources[spec[2]], out=product)
        rows = np.reshape(values, (n_cells, size)).T.copy()  # (L, J): contiguous adds
        sums = rows[0] + 0.0
        for row in rows[1:]:
            sums += row
        out.append(sums)
    return out


def _known_ones(std: Standardization | None, weights, v: np.ndarray, v_source: int) -> list:
    """The sources of the plan of ``[Z, v]`` known to be ones without a look: without
    weights, the map's intercept column of ``[X y]`` (the map's own finding, which the
    pass by group relies on too) and ``v`` (source ``v_source``) where it is ones
    broadcast (:func:`~dmixed.stats.constant.constant_value`: an indicator's entries)."""
    ones = known_ones(std, weights)
    if weights is not None:
        return ones
    return ones + [v_source] if constant_value(v) == 1.0 else ones


def _adder(cell_group: np.ndarray, n_groups: int):
    """What adds up per-cell sums (J,) per group (G,), the cells sorted by group: one
    ``reduceat`` over each group's run of cells where every group has a cell (a
    contiguous sum; a ``bincount`` scatters), else a ``bincount``."""
    change = np.empty(cell_group.size, dtype=bool)  # where a group's run of cells starts
    change[:1] = True
    np.not_equal(cell_group[1:], cell_group[:-1], out=change[1:])
    first = np.flatnonzero(change)
    if first.size == n_groups and (n_groups == 0 or cell_group[-1] == n_groups - 1):
        return lambda sums: np.add.reduceat(sums, first) if sums.size else np.zeros(0)
    return lambda sums: np.bincount(cell_group, weights=sums, minlength=n_groups)


def _cell_columns(column_term, per_cell, q: int, k: int, n_cells: int, std):
    """``(d, b, f2)`` of the cells from the per-cell sums of the plan of ``[Z, v]``
    (``column_term``: each packed column's term), scaled as :func:`cell_sums` does."""
    where = {s: c for c, s in enumerate(PackedLayout(q + 1, k).column_sources())}
    f_d, f_b, f_f2 = _cell_factors(std, q, k)

    def column(source) -> np.ndarray:
        sums = per_cell[column_term[where[source]]]
        return np.zeros(n_cells) if sums is None else sums

    d = column(("zz", q, q))
    d = d * f_d if f_d != 1.0 else d  # (the sums are this call's own: no copy needed)
    b = np.empty((n_cells, q))  # row-major, as the ragged statistics keep them
    f2 = np.empty((n_cells, k))
    for a in range(q):
        np.multiply(column(("zz", q, a)), f_b[a], out=b[:, a])
    for m in range(k):
        np.multiply(column(("zxy", q, m)), f_f2[m], out=f2[:, m])
    return d, b, f2


def whole_component_pass(
    codes, n_groups, endog, exog, exog_re, vc_slots, vc_vals, weights, std, vc_cells, offset
):
    """:func:`cells_and_groups` where it applies: one component (``vc_slots``,
    ``vc_vals``, ``vc_cells`` lists of one, as
    :func:`~dmixed.kernels.vc_blocks.ragged_statistics` takes them) whose every row has
    exactly one entry, its cells numbered.

    Returns
    -------
    ``(glob, (group, column, d, b, f2, 0))``: the group statistics and the component's
    cells as :meth:`~dmixed.kernels.vc_blocks.RaggedVC.from_cells` takes them
    (``column``: ``offset`` + the cell's slot); None where it does not apply.
    """
    if vc_cells is None or len(vc_slots) != 1 or vc_slots[0].ndim != 2:
        return None
    entry_pair, cell_group, pair_slot = vc_cells[0]
    if entry_pair.shape[1] != 1 or not entry_pair.size or entry_pair.min() < 0:
        return None
    out = cells_and_groups(
        codes,
        n_groups,
        entry_pair[:, 0],
        cell_group,
        endog,
        exog,
        exog_re,
        vc_vals[0][:, 0],
        weights,
        std,
    )
    if out is None:
        return None
    glob, (d, b, f2) = out
    return glob, (cell_group, offset + pair_slot, d, b, f2, 0)
