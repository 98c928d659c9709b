"""The packed layout of per-group statistics: one row of numbers per group.

One data pass produces, per group ``i``, the row count ``n_i``, ``Z̃_i'Z̃_i`` (``r × r``,
symmetric) and ``Z̃_i'[X_i y_i]`` (``r × k``, ``k = p + 1``).  Partial statistics travel
and are added by group key in one flat row per group::

    [ n_i,  lower triangle of Z̃_i'Z̃_i,  Z̃_i'[X_i y_i] ]
      1     r(r+1)/2 (tril_indices order)  r·k (row-major)

(for ``r = 2, p = 4``: 14 numbers per group).  The global sums travel as one small
vector per partition: ``[n, Σ log w, rows dropped, lower triangle of [X y]'[X y]]``.
:class:`PackedLayout` is the one owner of both orders; the kernels that fill the rows
(:func:`dmixed.kernels.accumulate_packed_into`) and the engines that add and unpack them
use it alike.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .layout import n_tril, tril_indices
from .standardize import converted_sums, log_ratio_sum

#: the head of the packed global sums: the row count, Σ log w, the rows dropped
GLOBAL_HEAD = ("n", "sum_log_weights", "n_dropped")


@dataclass(frozen=True)
class PackedLayout:
    """Where each statistic lives in a packed row of per-group statistics.

    Attributes
    ----------
    r : int
        Columns of the padded random design ``Z̃``.
    k : int
        Columns of ``[X y]`` (``p + 1``).
    """

    r: int
    k: int

    @classmethod
    def of_width(cls, r: int, width: int) -> PackedLayout:
        """The layout of packed rows ``width`` wide for ``r`` random-design columns."""
        return cls(r, (width - 1 - n_tril(r)) // r if r else 0)

    # -- the per-group row ----------------------------------------------------------

    @property
    def n_zz(self) -> int:
        """Entries of the lower triangle of ``Z̃'Z̃``: ``r(r+1)/2``."""
        return n_tril(self.r)

    @property
    def n_zxy(self) -> int:
        """Entries of ``Z̃'[X y]``: ``r·k``."""
        return self.r * self.k

    @property
    def width(self) -> int:
        """Columns of a packed row: ``1 + r(r+1)/2 + r·k``."""
        return 1 + self.n_zz + self.n_zxy

    @functools.cached_property
    def zz_index(self) -> tuple[np.ndarray, np.ndarray]:
        """Row and column in ``Z̃'Z̃`` of each packed triangle entry (:func:`tril_indices`)."""
        return tril_indices(self.r)

    def slices(self) -> tuple[slice, slice]:
        """The packed columns of the ``Z̃'Z̃`` triangle and of ``Z̃'[X y]``."""
        a = 1 + self.n_zz
        return slice(1, a), slice(a, a + self.n_zxy)

    def column_sources(self) -> list[tuple]:
        """What every packed column sums over the rows, in packed order.

        ``("n",)`` for the row count, ``("zz", a, b)`` for ``Σ z̃_a z̃_b`` (a ≥ b) and
        ``("zxy", a, j)`` for ``Σ z̃_a [x y]_j``.
        """
        rows, cols = self.zz_index
        out: list[tuple] = [("n",)]
        out += [("zz", int(a), int(b)) for a, b in zip(rows, cols, strict=True)]
        out += [("zxy", a, j) for a in range(self.r) for j in range(self.k)]
        return out

    def unpack_nobs(self, values: np.ndarray) -> np.ndarray:
        """Row counts (G,) int64 of packed rows (G, width)."""
        return np.rint(values[:, 0]).astype(np.int64)

    def unpack_zz(self, values: np.ndarray) -> np.ndarray:
        """``Z̃_i'Z̃_i`` (G, r, r) of packed rows (G, width)."""
        g = values.shape[0]
        zz = np.empty((g, self.r, self.r))
        tri = values[:, self.slices()[0]]
        zz[:, self.zz_index[0], self.zz_index[1]] = tri
        zz[:, self.zz_index[1], self.zz_index[0]] = tri
        return zz

    def unpack_zxy(self, values: np.ndarray) -> np.ndarray:
        """``Z̃_i'[X_i y_i]`` (G, r, k) of packed rows (G, width): a view into ``values``."""
        return values[:, self.slices()[1]].reshape(values.shape[0], self.r, self.k)

    def unpack(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(nobs (G,), zz (G, r, r), zxy (G, r, k))`` of packed rows, sharing no memory
        with ``values``."""
        return self.unpack_nobs(values), self.unpack_zz(values), self.unpack_zxy(values).copy()

    def pack(self, nobs: np.ndarray, zz: np.ndarray, zxy: np.ndarray) -> np.ndarray:
        """Packed rows (G, width) of ``nobs`` (G,), ``zz`` (G, r, r), ``zxy`` (G, r, k):
        the inverse of :meth:`unpack`."""
        g = zz.shape[0]
        out = np.empty((g, self.width))
        out[:, 0] = nobs
        out[:, self.slices()[0]] = zz[:, self.zz_index[0], self.zz_index[1]]
        out[:, self.slices()[1]] = zxy.reshape(g, self.n_zxy)
        return out

    def conversion(self, m_z: np.ndarray, m_x: np.ndarray) -> np.ndarray:
        """``W`` (width × width) with ``rows @ W`` the packed rows of ``Z̃ M_z`` and
        ``[X̃ ỹ] M_x`` when ``rows`` are those of ``Z̃`` and ``[X̃ ỹ]``: ``Z̃'Z̃ → M_z'
        Z̃'Z̃ M_z``, ``Z̃'[X̃ ỹ] → M_z' Z̃'[X̃ ỹ] M_x``, row counts unchanged.  The map
        is linear in the packed row and block diagonal: the triangle's entry ``(i, j)``
        (``A = E_ij + E_ji``) goes to ``(a, b)`` with ``M_ia M_jb + M_ja M_ib`` (once when
        ``i = j``), and ``Z̃'[X̃ ỹ]``'s entry ``(i, j)`` with ``M_z,ia M_x,jc`` (a
        Kronecker product): O(width²), where mapping the identity's rows costs
        O(width · r³).
        """
        w = np.zeros((self.width, self.width))
        w[0, 0] = 1.0
        tri, cross = self.slices()
        i, j = self.zz_index
        w[tri, tri] = m_z[i][:, i] * m_z[j][:, j]
        w[tri, tri] += np.where((i != j)[:, None], m_z[j][:, i] * m_z[i][:, j], 0.0)
        w[cross, cross] = np.kron(m_z, m_x)
        return w

    def convert_global(
        self, values: np.ndarray, m_x: np.ndarray, weight_ratio: float = 1.0
    ) -> np.ndarray:
        """Packed global sums (``global_width``,) of ``[X̃ ỹ] M_x`` from those of
        ``[X̃ ỹ]``: ``[X y]'[X y] → M_x' [X y]'[X y] M_x`` and the same for the
        within-group sums (NaN, "none", stays NaN), the column sums ``→ M_x'`` them;
        counts unchanged.  ``weight_ratio``: ``ρ`` of a map of another weight scale
        (:meth:`~dmixed.stats.standardize.Standardization.conversion_to` with
        ``weights``, whose ``M_x`` holds ``√ρ``): the column sums and the weights' sum
        times ``ρ``, ``Σ log w̃`` plus ``n log ρ``.  O(k³): a
        ``global_width²`` matrix would be O(k⁴) in time and memory (850 MB at 100
        fixed effects).
        """
        out = values.copy()
        rows, cols = self.xy_index
        xyxy, within, sums = self.global_slices()
        for part in (xyxy, within):
            tri = values[part]
            if np.isnan(tri).any():
                continue
            s = self._symmetric(tri)
            out[part] = (m_x.T @ s @ m_x)[rows, cols]
        if not np.isnan(values[sums][:-1]).any():  # the last sum (of the weights) too
            out[sums] = converted_sums(values[sums], m_x, weight_ratio)
        head = GLOBAL_HEAD.index("sum_log_weights")
        out[head] += log_ratio_sum(values[GLOBAL_HEAD.index("n")], weight_ratio)
        return out

    # -- the global sums ------------------------------------------------------------

    @functools.cached_property
    def xy_index(self) -> tuple[np.ndarray, np.ndarray]:
        """Row and column in ``[X y]'[X y]`` of each packed global triangle entry."""
        return tril_indices(self.k)

    def global_slices(self) -> tuple[slice, slice, slice]:
        """The packed global columns of the ``[X y]'[X y]`` triangle, of the
        within-group triangle and of the column sums ``Σ w [X y 1]``, after the head
        (:data:`GLOBAL_HEAD`)."""
        head, m = len(GLOBAL_HEAD), n_tril(self.k)
        return (
            slice(head, head + m),
            slice(head + m, head + 2 * m),
            slice(head + 2 * m, head + 2 * m + self.k + 1),
        )

    @property
    def global_width(self) -> int:
        """Length of the packed global sums: ``3 + k(k+1) + k + 1`` (the head, two
        triangles, the column sums)."""
        return self.global_slices()[2].stop

    def pack_global(self, glob: dict, n_dropped: int = 0) -> np.ndarray:
        """``[n, Σ log w, n_dropped, lower triangle of [X y]'[X y], lower triangle of the
        within-group cross-products, column sums Σ w [X y 1]]`` of one pass's global
        sums (the ``dict`` of :func:`dmixed.kernels.accumulate_packed`); NaN for the
        latter two where there are none (no intercept column in the random design; a
        column of ones in either design), so that sums stay NaN."""
        rows, cols = self.xy_index
        xyxy = glob["xyxy"][rows, cols]
        within = glob.get("within")
        tri = np.full(rows.size, np.nan) if within is None else within[rows, cols]
        sums = glob.get("column_sums")
        sums = np.full(self.k + 1, np.nan) if sums is None else np.asarray(sums, np.float64)
        head = [float(glob["n"]), float(glob["sum_log_weights"]), float(n_dropped)]
        return np.concatenate([head, xyxy, tri, sums])  # the order of global_slices

    def empty_global(self, n_dropped: int = 0) -> np.ndarray:
        """Packed global sums of no rows (``n_dropped`` rows dropped)."""
        out = np.zeros(self.global_width)
        out[GLOBAL_HEAD.index("n_dropped")] = n_dropped
        return out

    def unpack_global(self, values: np.ndarray) -> tuple[np.ndarray, int, float, int]:
        """``([X y]'[X y] (k, k), n, Σ log w, n_dropped)`` of packed global sums."""
        n, sum_log_weights, n_dropped = values[: len(GLOBAL_HEAD)]
        return (
            self._symmetric(values[self.global_slices()[0]]),
            int(np.rint(n)),
            float(sum_log_weights),
            int(np.rint(n_dropped)),
        )

    def unpack_within(self, values: np.ndarray) -> np.ndarray | None:
        """The within-group cross-products (k, k) of packed global sums (None: none)."""
        tri = values[self.global_slices()[1]]
        return None if np.isnan(tri).any() else self._symmetric(tri)

    def unpack_column_sums(self, values: np.ndarray) -> np.ndarray | None:
        """The column sums ``Σ w [X y 1]`` (k + 1,) of packed global sums (None: none)."""
        sums = values[self.global_slices()[2]]
        return None if np.isnan(sums).any() else sums.copy()

    def _symmetric(self, tri: np.ndarray) -> np.ndarray:
        out = np.empty((self.k, self.k))
        out[self.xy_index[0], self.xy_index[1]] = tri
        out[self.xy_index[1], self.xy_index[0]] = tri
        return out
