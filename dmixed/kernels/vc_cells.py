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
"""

from __future__ import annotations

import numpy as np

from ..stats.standardize import Standardization
from .rows import EXTREME_SCALE_LOG2

__all__ = ["cell_sums"]


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
    if std is None:
        return d, b, f2
    s_v = std.slot_scales((1,))[0]
    sx = np.append(std.x_scale, std.y_scale)
    _scale(d, 1.0 / (s_v * s_v))
    for a in range(len(z)):
        _scale(b[:, a], 1.0 / (s_v * std.z_scale[a]))
    for m in range(len(xy)):
        _scale(f2[:, m], 1.0 / (s_v * sx[m]))
    return d, b, f2


def _scale(col: np.ndarray, factor: float) -> None:
    """``col *= factor`` in place where the factor is not 1 (a power of two: exact)."""
    if factor != 1.0:
        col *= factor
