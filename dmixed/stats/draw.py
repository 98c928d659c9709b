"""Statistics of a response drawn from a fitted model, drawn without the rows.

A parametric bootstrap (lme4's ``bootMer``, MixedModels.jl's ``parametricbootstrap``)
refits the model to responses ``y* = Xβ̂ + Z̃b* + e*`` drawn from the fit.  A refit needs
only the statistics (DESIGN.md §2), and of those only the ones holding the response
change: ``Z̃_i'y*``, ``X'y*`` and ``y*'y*`` (and the within-group sums' response row).
:class:`ResponseSampler` draws them, in the statistics' own (standardized) columns, at a
cost linear in the number of groups and independent of the number of rows.

Derivation
----------
Everything is in the statistics' columns (:mod:`dmixed.stats.standardize`: shifted and
scaled columns, each row times ``√w_j``), where the model is an unweighted linear mixed
model: the row ``√w_j y_j`` has residual ``√w_j ε_j ~ N(0, σ²)``.  So prior weights need
nothing more: ``e* ~ N(0, σ̃² I_n)`` in these rows.  Let ``W = [Z̃, X]`` (``Z̃`` block
diagonal over groups) and ``v = W'e* = (u_1, …, u_G, x)`` with ``u_i = Z̃_i'e*_i``
and ``x = X'e*``.  Given the design, ``v ~ N(0, σ̃² W'W)`` and every block of ``W'W``
is a statistic: ``D_i = Z̃_i'Z̃_i``, ``C_i = Z̃_i'X_i``, ``X'X``, and ``Z̃_i'Z̃_j = 0`` for
``i ≠ j`` (no rows in common).  Hence

1. ``u_i ~ N(0, σ̃² D_i)``, independent over groups: with ``D_i = V_i E_i V_i'``
   (eigendecomposition, eigenvalues below ``RANK_RTOL`` of the largest set to zero),
   ``u_i = σ̃ D_i^{1/2} z_i``, ``z_i ~ N(0, I)``, with the symmetric root
   ``D_i^{1/2} = V_i E_i^{1/2} V_i'``;
2. ``x | u ~ N(Σ_i C_i'D_i⁺u_i, σ̃² S)`` with the Schur complement
   ``S = X'X − Σ_i C_i'D_i⁺C_i = X'(I − P_Z̃)X`` (the Gaussian conditional; pseudo-inverses
   are exact here because ``range C_i ⊆ range D_i`` for a Gram matrix), so
   ``x = σ̃ (Σ_i C_i'D_i^{+1/2} z_i + S^{1/2} ζ)``, ``ζ ~ N(0, I_p)``;
3. ``e*'e* = e*'P_W e* + e*'(I − P_W)e*``: the first is ``v'(W'W)⁺v``, which through the
   same Schur complement is ``Σ_i u_i'D_i⁺u_i + r'S⁺r = σ̃²(Σ_i z_i'P_i z_i + ζ'P_S ζ)``
   (``r`` the part of ``x`` drawn in 2, ``P_i`` and ``P_S`` the projections on the
   ranges of ``D_i`` and ``S``); the second is independent of ``v`` and is
   ``σ̃² χ²`` on ``n − rank W = n − Σ_i rank D_i − rank S`` degrees of freedom (Cochran).

The roots are the symmetric ones, which (unlike ``V_i E_i^{1/2}``, whose columns' signs
are arbitrary) are functions of the matrices: statistics of weights ``c·w`` (every sum
``c`` times) draw the same responses, to rounding, for the same generator.

With ``m = Xβ̃ + Z̃b*`` (``b*_i`` the drawn, or given, random effects) the new statistics
are ``Z̃_i'y* = C_iβ̃ + D_ib*_i + u_i``, ``X'y* = X'Xβ̃ + Σ_i C_i'b*_i + x`` and
``y*'y* = m'm + 2m'e* + e*'e*`` with ``m'm = β̃'X'Xβ̃ + 2β̃'Σ_i C_i'b*_i + Σ_i b*_i'D_ib*_i``
and ``m'e* = β̃'x + Σ_i b*_i'u_i``.  The within-group sums (``[X y]'(I − P_1)[X y]``,
``P_1`` the projection on each group's intercept column ``e``) take the same terms with
``D_i`` and ``C_i`` replaced by their parts orthogonal to that column, formed group by
group so that a one-column design gives exact zeros rather than differences of large
sums.  The construction is the standard one of drawing a Gaussian vector through its
Schur complement (e.g. Rue & Held 2005, §2.1) and of splitting a residual sum of squares
into independent χ² parts (Cochran's theorem); the ``W'e*`` route is the issue's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..errors import DataError
from .checkpoint import GroupArrays
from .statistics import GlobalStats

#: eigenvalues of ``Z̃_i'Z̃_i`` (and of the Schur complement ``S``) below this times the
#: largest are taken as zero: the rank of the design
RANK_RTOL = 1e-10


def _group_sum(v: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``Σ_i m_i'v_i`` for ``v`` (G, a) and ``m`` (G, a, j): one BLAS product (an
    ``einsum`` over the groups is ~50× slower)."""
    return np.tensordot(v, m, axes=([0, 1], [0, 1]))


@dataclass(frozen=True)
class _Within:
    """The within-group parts of one group's design (intercept column ``e``):
    ``xwz = (I − P_1)``-part of ``Z̃_i'X_i`` (G, r, p), ``dw`` of ``Z̃_i'Z̃_i`` (G, r, r),
    ``ratio = D_i[:, e] / D_i[e, e]`` (G, r)."""

    e: int
    xwz: np.ndarray
    dw: np.ndarray
    ratio: np.ndarray


def _psd_root(mat: np.ndarray, rtol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``(V E^{1/2} V', V E^{+1/2} V', V K V', rank)`` of symmetric ``mat`` (…, r, r),
    batched: the symmetric square root, that of the pseudo-inverse (``E^{+1/2}`` the
    inverse square roots of the eigenvalues above ``rtol`` of the largest, 0 for the
    others), the projection on the range (``K`` the kept eigenvalues' indicator), and
    the number of kept eigenvalues."""
    evals, evecs = np.linalg.eigh(mat)
    top = np.max(evals, axis=-1, keepdims=True)
    keep = evals > rtol * np.maximum(top, np.finfo(float).tiny)
    root = np.sqrt(np.where(keep, evals, 0.0))
    inv_root = np.where(keep, 1.0 / np.where(keep, root, 1.0), 0.0)
    vt = np.swapaxes(evecs, -1, -2)
    return (
        (evecs * root[..., None, :]) @ vt,
        (evecs * inv_root[..., None, :]) @ vt,
        (evecs * keep[..., None, :]) @ vt,
        int(keep.sum()),
    )


class ResponseSampler:
    """Draws the statistics of new responses from a fitted model (see the module).

    Made once per fit (the eigendecompositions of every ``Z̃_i'Z̃_i`` and of the Schur
    complement: O(G r³)); each :meth:`draw` costs O(G r p + G r²) and reads no data.

    Parameters
    ----------
    arrays : GroupArrays
        The fit's statistics, in their own columns (``arrays.columns``).

    Raises
    ------
    DataError
        Statistics of no rows.
    """

    def __init__(self, arrays: GroupArrays) -> None:
        self.arrays = arrays
        p = arrays.glob.k_fe
        zz, gx = arrays.zz, arrays.zxy[:, :, :p]
        xx = arrays.glob.xyxy[:p, :p]
        self.gx = np.ascontiguousarray(gx)  # C_i = Z̃_i'X_i, contiguous: one BLAS product
        self.root, h_inv, self.proj, rank_z = _psd_root(zz, RANK_RTOL)
        # H_i C_i with H_i = D_i^{+1/2}: x's mean is Σ_i (H_i C_i)' z_i, S = X'X − Σ its squares
        self.hc = np.einsum("gai,gaj->gij", h_inv, gx)
        schur = xx - np.einsum("gia,gib->ab", self.hc, self.hc)
        self.s_root, _, self.s_proj, rank_s = _psd_root(0.5 * (schur + schur.T), RANK_RTOL)
        self.df_resid = int(arrays.glob.n) - rank_z - rank_s
        if arrays.glob.n <= 0:
            raise DataError("statistics of no rows: nothing to draw from")
        self.within = self._within_parts() if arrays.glob.within is not None else None

    def _within_parts(self) -> _Within:
        e = self.arrays.columns.z_intercept
        if e < 0:
            raise DataError("within-group sums without an intercept column in exog_re")
        p = self.arrays.glob.k_fe
        zz, gx = self.arrays.zz, self.arrays.zxy[:, :, :p]
        ratio = zz[:, :, e] / zz[:, e, e][:, None]
        xwz = gx - ratio[:, :, None] * gx[:, e, None, :]
        dw = zz - zz[:, :, e, None] * ratio[:, None, :]
        return _Within(e, xwz, dw, ratio)

    def draw(
        self, rng: np.random.Generator, beta: np.ndarray, effects: np.ndarray, sigma: float
    ) -> GroupArrays:
        """The statistics of ``y* = Xβ̃ + Z̃b* + e*``, ``e* ~ N(0, σ̃² I)`` (module's steps).

        Parameters
        ----------
        rng : numpy.random.Generator
        beta : ndarray (p,)
            ``β̃`` in the statistics' columns.
        effects : ndarray (G, r)
            ``b*`` in the statistics' columns (drawn, or the BLUPs for a draw
            conditional on them).
        sigma : float
            ``σ̃``, the residual standard deviation in the statistics' columns.

        Returns
        -------
        GroupArrays
            The design's statistics unchanged, the response's drawn.
        """
        arrays, p, gx = self.arrays, self.arrays.glob.k_fe, self.gx
        zz, xx = arrays.zz, arrays.glob.xyxy[:p, :p]
        z = rng.standard_normal(zz.shape[:2])
        zeta = rng.standard_normal(p)
        chi2 = float(rng.chisquare(self.df_resid)) if self.df_resid > 0 else 0.0
        u = sigma * np.einsum("gab,gb->ga", self.root, z)  # Z̃_i'e*
        xe = sigma * (_group_sum(z, self.hc) + self.s_root @ zeta)  # X'e*
        zpz = float(np.vdot(z, np.einsum("gab,gb->ga", self.proj, z)))  # Σ_i z_i'P_i z_i
        ee = sigma**2 * (zpz + float(zeta @ self.s_proj @ zeta) + chi2)
        b = np.asarray(effects, dtype=np.float64)
        db = np.einsum("gab,gb->ga", zz, b)
        cb = _group_sum(b, gx)  # Σ_i C_i'b_i
        xb = xx @ beta
        zy = (gx.reshape(-1, p) @ beta).reshape(db.shape) + db + u
        mm = float(beta @ xb) + 2.0 * float(beta @ cb) + float(np.vdot(b, db))
        me = float(beta @ xe) + float(np.vdot(b, u))
        xyxy = arrays.glob.xyxy.copy()
        xyxy[:p, p] = xyxy[p, :p] = xb + cb + xe
        xyxy[p, p] = mm + 2.0 * me + ee
        zxy = arrays.zxy.copy()
        zxy[:, :, p] = zy
        within = None
        if self.within is not None and arrays.glob.within is not None:
            within = self._drawn_within(self.within, arrays.glob.within, beta, b, u, xe, ee)
        glob = GlobalStats(xyxy, arrays.glob.n, arrays.glob.sum_log_weights, within)
        return replace(arrays, zxy=zxy, glob=glob)

    def _drawn_within(
        self, wp: _Within, fitted: np.ndarray, beta, b, u, xe, ee: float
    ) -> np.ndarray:
        """``[X y*]'(I − P_1)[X y*]`` (``fitted``: the fit's within-group sums, whose
        ``X`` block stays), each group's part formed before the sums."""
        arrays = self.arrays
        p, e = arrays.glob.k_fe, wp.e
        zz, gx = arrays.zz, arrays.zxy[:, :, :p]
        within = fitted.copy()
        wxx = within[:p, :p]
        ue = u[:, e] / zz[:, e, e]
        x_zb = _group_sum(b, wp.xwz)  # X'(I − P_1)Z̃b*
        x_e = xe - ue @ gx[:, e, :]  # X'(I − P_1)e*
        b_zb = float(np.vdot(b, np.einsum("gab,gb->ga", wp.dw, b)))
        b_e = float(np.vdot(b, u - wp.ratio * u[:, e, None]))
        e_e = ee - float(ue @ u[:, e])
        within[:p, p] = within[p, :p] = wxx @ beta + x_zb + x_e
        within[p, p] = float(beta @ wxx @ beta) + 2.0 * float(beta @ (x_zb + x_e))
        within[p, p] += b_zb + 2.0 * b_e + e_e
        return within
