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
``c`` times) draw the same responses, to rounding, for the same generator.  Two kinds of
group take another root of the same ``D_i``, by one rule of the sums whichever engine
holds them: a lossy group with centred sums, ``M C̃^{1/2}`` from those sums
(:meth:`ResponseSampler._centred_roots`), and a group of the rank-one closed form
(``Z̃_i = e z̄'``), ``√u z̄ 1_e'`` from the plain sums
(:meth:`ResponseSampler._closed_form_roots`).

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
from typing import NamedTuple

import numpy as np

from ..errors import DataError
from .checkpoint import GroupArrays
from .statistics import GlobalStats

#: eigenvalues of ``Z̃_i'Z̃_i`` below this times the largest (of the Schur complement
#: ``S``: times the largest of ``X'X``) are taken as zero: the rank of the design
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


class CentredRoots(NamedTuple):
    """The roots a draw takes from the centred sums of a fit
    (:meth:`ResponseSampler._centred_roots`), for the ``L`` groups that keep such sums
    (``GroupArrays.centred``) and the ``Lc`` of those that take the centred root."""

    #: int64 (L,): the groups that keep centred sums, in sorted group order
    positions: np.ndarray
    #: int64 (Lc,): which of them (indices into ``positions``) take the centred root
    lossy: np.ndarray
    #: (Lc, r, r): ``C̃^{1/2}`` of those (``M`` not applied)
    root: np.ndarray
    #: (L, r, r): the centred Gram matrices ``C`` (row and column ``e`` zero)
    c: np.ndarray
    #: (L, r, p): ``M⁻¹C_i``, the centred sums' ``D`` with ``u m'`` in row ``e``
    d_x: np.ndarray


def _psd_root(
    mat: np.ndarray, rtol: float, top: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(V E^{1/2} V', V E^{+1/2} V', V K V', ranks)`` of symmetric ``mat`` (…, r, r),
    batched: the symmetric square root, that of the pseudo-inverse (``E^{+1/2}`` the
    inverse square roots of the eigenvalues above ``rtol`` of the largest, or of
    ``top`` where given, 0 for the others), the projection on the range (``K`` the kept
    eigenvalues' indicator), and the number of kept eigenvalues of each matrix (…,)."""
    evals, evecs = np.linalg.eigh(mat)
    if top is None:
        top = np.max(evals, axis=-1, keepdims=True)
    keep = evals > rtol * np.maximum(top, np.finfo(float).tiny)
    root = np.sqrt(np.where(keep, evals, 0.0))
    inv_root = np.where(keep, 1.0 / np.where(keep, root, 1.0), 0.0)
    vt = np.swapaxes(evecs, -1, -2)
    return (
        (evecs * root[..., None, :]) @ vt,
        (evecs * inv_root[..., None, :]) @ vt,
        (evecs * keep[..., None, :]) @ vt,
        keep.sum(axis=-1),
    )


def _with_spread(arrays: GroupArrays) -> np.ndarray:
    """The positions of the lossy groups of ``arrays.centred`` (``sums.lossy``) whose
    centred sums hold a spread about the group's mean: ``C``'s largest diagonal entry
    above ``eps²`` times ``Z̃_i'Z̃_i``'s (what the rounding of a mean leaves), however
    small against the plain sums, which such a group's rank-one test (at their
    rounding) misses.  The lossy groups only: those are the ones whose centred sums
    every engine keeps (an in-process fit keeps every group's, a Dask fit the lossy
    ones'), so that one rule on the same sums picks the same root in both."""
    kept = arrays.centred
    assert kept is not None
    lossy = np.asarray(kept.sums.lossy, dtype=bool)
    sel = np.asarray(kept.positions, dtype=np.int64)[lossy]
    c_top = np.max(np.diagonal(np.asarray(kept.sums.c)[..., lossy], axis1=0, axis2=1), axis=-1)
    zz_top = np.max(np.diagonal(arrays.zz[sel], axis1=1, axis2=2), axis=-1)
    return sel[c_top > np.finfo(float).eps ** 2 * zz_top]


class ResponseSampler:
    """Draws the statistics of new responses from a fitted model (see the module).

    Made once per fit (the eigendecompositions of every ``Z̃_i'Z̃_i`` and of the Schur
    complement: O(G r³)); each :meth:`draw` costs O(G r p + G r²) and reads no data.

    Parameters
    ----------
    arrays : GroupArrays
        The fit's statistics, in their own columns (``arrays.columns``).
    closed_form : ndarray of bool (G,), optional
        The groups of rank one through the intercept, ``Z̃_i = e z̄'``, by their plain
        sums (:func:`~dmixed.engines.local.closed_form_groups`: the rank-one engine's
        closed form, one-row groups among them): they draw with the root
        ``√u z̄ 1_e'`` of ``Z̃_i'Z̃_i = u z̄z̄'`` from the plain sums, even where
        ``arrays.centred`` marks them lossy, so that a fit that keeps centred sums for
        them (on Dask) and one that does not (in process) draw the same responses;
        except the lossy ones whose centred sums hold a spread (``C`` above the
        rounding of a mean), which the plain sums' rank-one test, at their rounding,
        misses: they take the centred root.  A group that is not lossy keeps the
        closed-form root whatever its centred sums (an in-process fit holds them, a
        Dask fit does not).  Default: none.

    Raises
    ------
    DataError
        Statistics of no rows.
    """

    def __init__(self, arrays: GroupArrays, closed_form: np.ndarray | None = None) -> None:
        self.arrays = arrays
        n_groups = arrays.zz.shape[0]
        self.closed_form = (
            np.zeros(n_groups, dtype=bool)
            if closed_form is None
            else np.array(closed_form, dtype=bool)  # a copy: changed below
        )
        p = arrays.glob.k_fe
        zz, gx = arrays.zz, arrays.zxy[:, :, :p]
        xx = arrays.glob.xyxy[:p, :p]
        self.gx = np.ascontiguousarray(gx)  # C_i = Z̃_i'X_i, contiguous: one BLAS product
        self.root, h_inv, self.proj, ranks = _psd_root(zz, RANK_RTOL)
        rank_z = int(ranks.sum())
        # H_i C_i with H_i = D_i^{+1/2}: x's mean is Σ_i (H_i C_i)' z_i, S = X'X − Σ its squares
        self.hc = np.einsum("gai,gaj->gij", h_inv, gx)
        if arrays.centred is not None and self.closed_form.any():
            self.closed_form[_with_spread(arrays)] = False
        if self.closed_form.any():
            rank_z += self._closed_form_roots(np.flatnonzero(self.closed_form), ranks)
        #: the lossy groups' roots (:meth:`_centred_roots`)
        self.centred: CentredRoots | None = None
        if arrays.centred is not None:
            rank_z += self._centred_roots(arrays.centred, ranks)
        schur = xx - np.einsum("gia,gib->ab", self.hc, self.hc)
        # S's rank judged against X'X: where X lies in the span of Z̃ (every fixed effect
        # also random) S is rounding alone, whose own largest eigenvalue would keep some
        # of it, and the χ²'s degrees of freedom (so the draws) would depend on rounding
        xx_top = float(np.max(np.linalg.eigvalsh(xx), initial=0.0)) if p else 0.0
        self.s_root, _, self.s_proj, rank_s = _psd_root(0.5 * (schur + schur.T), RANK_RTOL, xx_top)
        self.df_resid = int(arrays.glob.n) - rank_z - int(rank_s)
        if arrays.glob.n <= 0:
            raise DataError("statistics of no rows: nothing to draw from")
        self.within = self._within_parts() if arrays.glob.within is not None else None

    def _closed_form_roots(self, at: np.ndarray, ranks: np.ndarray) -> int:
        """Take the roots of the groups ``at`` that the fit takes in the rank-one closed
        form (``Z̃_i = e z̄_i'``: ``D_i = u z̄z̄'``, ``C = 0``) as the centred root of
        :meth:`_centred_roots` with ``C = 0``, ``R_i = √u z̄ 1_e'``, from the plain
        sums (``u = D_i[e, e]``, ``z̄ = D_i[:, e]/u``, ``u m' = C_i[e]``); what their
        ranks (one each) add to the plain ones' (``ranks`` (G,): every group's rank
        from its plain sums).  One rule for every engine, whether
        or not it keeps centred sums for them; and unlike the symmetric root
        ``√u z̄z̄'/|z̄|``, a draw ``u_i = √u z̄ z_e`` that scales with the slope
        columns, so that column maps that scale them differently (a Dask fit's,
        chosen from a sample) draw the same responses in the data's units."""
        e = self.arrays.columns.z_intercept
        if e < 0:
            return 0
        zz, gx = self.arrays.zz[at], self.arrays.zxy[at, :, : self.arrays.glob.k_fe]
        u = zz[:, e, e]
        sqrt_u = np.sqrt(u)
        r = zz.shape[-1]
        root = np.zeros_like(zz)
        root[:, :, e] = zz[:, :, e] / sqrt_u[:, None]  # √u z̄
        proj = np.zeros_like(zz)
        proj[:, e, e] = 1.0
        hc = np.zeros((at.size, r, gx.shape[-1]))
        hc[:, e] = gx[:, e] / sqrt_u[:, None]  # C̃^{+1/2} M⁻¹C_i: (u m')/√u at e
        self.root[at], self.proj[at], self.hc[at] = root, proj, hc
        return at.size - int(ranks[at].sum())

    def _centred_roots(self, kept, ranks: np.ndarray) -> int:
        """Take the roots of the lossy groups with centred sums (``kept``: the fit's
        :class:`~dmixed.stats.group_arrays.CentredGroups`, whose ``sums.lossy`` marks
        them) from those sums rather than from ``Z̃_i'Z̃_i``, whose spread such a
        group's plain sums may have lost; what their ranks add to the plain ones'
        (``ranks``, as in :meth:`_closed_form_roots`).
        The other groups of ``kept`` (an in-process fit's: every group) keep the
        symmetric root, so that a fit of the same rows on Dask, which keeps the lossy
        groups' sums only, draws the same responses; so do the lossy groups the fit
        takes in closed form (:attr:`closed_form`, ``C = 0``), for which an in-process
        fit keeps no centred sums.

        With ``e`` the intercept's column, ``Z̃_i'e* = M c̃`` where ``c̃`` is ``e'e*``
        in entry ``e`` and ``Z_c'e*`` in the others (independent: ``e'Z_c = 0``), so
        ``c̃ ~ N(0, σ̃² C̃)`` with ``C̃ = C + u 1_e1_e'`` (``C``'s row and column ``e``
        are zero: its root is that of ``C`` and ``√u``), and ``M = I + (z̄ − 1_e)1_e'``.
        The root is ``R_i = M C̃^{1/2}`` (``R_iR_i' = u z̄z̄' + C = D_i``); then
        ``R_i'D_i⁺C_i = C̃^{+1/2} M⁻¹C_i`` with ``M⁻¹C_i`` the rows ``u m'`` (entry
        ``e``) and ``D`` (the others) of the centred sums, and ``R_i'D_i⁺R_i`` the
        projection on the range of ``C̃``: every term of the size of the group's spread.
        """
        e = self.arrays.columns.z_intercept
        if e < 0:
            raise DataError("centred sums without an intercept column in exog_re")
        p = self.arrays.glob.k_fe
        sel, sums = np.asarray(kept.positions, dtype=np.int64), kept.sums
        c = np.moveaxis(np.asarray(sums.c), -1, 0)  # (L, r, r)
        d_x = np.moveaxis(np.asarray(sums.d)[:, :p], -1, 0).copy()  # (L, r, p)
        d_x[:, e] = sums.u[:, None] * np.asarray(sums.mean)[:p].T  # e'X_i = u m'
        # the root is chosen by one rule from the plain sums, which every engine holds:
        # the centred root for a lossy group that the fit does not take in closed form
        lossy = np.flatnonzero(np.asarray(sums.lossy, dtype=bool) & ~self.closed_form[sel])
        # C̃ is block diagonal: u alone, and C's rank judged against C's own eigenvalues
        # (against u, a spread nearly constant within the group would be taken as none)
        r = c.shape[-1]
        rest = np.array([j for j in range(r) if j != e])
        shape = (lossy.size, r, r)
        root, inv_root, proj = np.zeros(shape), np.zeros(shape), np.zeros(shape)
        block = np.ix_(np.arange(lossy.size), rest, rest)
        root[block], inv_root[block], proj[block], rank = _psd_root(
            c[lossy][:, rest][:, :, rest], RANK_RTOL
        )
        u_lossy = np.asarray(sums.u)[lossy]
        root[:, e, e] = np.sqrt(u_lossy)
        inv_root[:, e, e] = 1.0 / np.sqrt(u_lossy)
        proj[:, e, e] = 1.0
        m = np.broadcast_to(np.eye(r), shape).copy()
        m[:, :, e] = np.asarray(sums.zbar)[:, lossy].T
        m[:, e, e] = 1.0
        at = sel[lossy]
        self.root[at] = m @ root
        self.proj[at] = proj
        self.hc[at] = inv_root @ d_x[lossy]
        self.centred = CentredRoots(sel, lossy, root, c, d_x)
        return int(rank.sum()) + lossy.size - int(ranks[at].sum())

    def _centred_drawn(self, kept, z, u, beta, b, sigma: float):
        """The centred sums of the drawn response (those of the design kept), and
        ``Z_c'e*`` (L, r) of those groups (``u``: every group's ``Z̃_i'e*``)."""
        roots = self.centred
        assert roots is not None
        sel, lossy = roots.positions, roots.lossy
        p, e, sums = self.arrays.glob.k_fe, self.arrays.columns.z_intercept, kept.sums
        zbar = np.asarray(sums.zbar)
        c_e = u[sel] - zbar.T * u[sel, e, None]  # Z_c'e* where the plain root is taken
        c_e[:, e] = u[sel, e]  # c̃: e'e* at e
        c_e[lossy] = sigma * np.einsum("gab,gb->ga", roots.root, z[sel[lossy]])
        e_e = c_e[:, e].copy()
        c_e[:, e] = 0.0
        bs = b[sel]
        mean = np.array(sums.mean, dtype=np.float64, copy=True)
        d = np.array(sums.d, dtype=np.float64, copy=True)
        mean[p] = beta @ mean[:p] + (zbar * bs.T).sum(axis=0) + e_e / sums.u
        # Z_c'y* = Z_c'X β + C b* + Z_c'e* (Z_c'Z̃ = C)
        d_y = np.einsum("akg,k->ag", d[:, :p], beta) + np.einsum("gab,gb->ag", roots.c, bs) + c_e.T
        d[:, p] = d_y
        d[e, p] = 0.0
        return replace(kept, sums=replace(sums, mean=mean, d=d)), c_e

    def _within_parts(self) -> _Within:
        e = self.arrays.columns.z_intercept
        if e < 0:
            raise DataError("within-group sums without an intercept column in exog_re")
        p = self.arrays.glob.k_fe
        zz, gx = self.arrays.zz, self.arrays.zxy[:, :, :p]
        ratio = zz[:, :, e] / zz[:, e, e][:, None]
        xwz = gx - ratio[:, :, None] * gx[:, e, None, :]
        dw = zz - zz[:, :, e, None] * ratio[:, None, :]
        roots = self.centred
        if roots is not None:  # from the centred sums: nothing subtracted
            kept = self.arrays.centred
            assert kept is not None
            ratio[roots.positions] = np.asarray(kept.sums.zbar).T
            xwz[roots.positions] = roots.d_x
            xwz[roots.positions, e] = 0.0
            dw[roots.positions] = roots.c
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
        kept, zc_e = arrays.centred, None
        if kept is not None:
            kept, zc_e = self._centred_drawn(kept, z, u, beta, b, sigma)
        within = None
        if self.within is not None and arrays.glob.within is not None:
            within = self._drawn_within(self.within, arrays.glob.within, beta, b, u, xe, ee, zc_e)
        glob = GlobalStats(xyxy, arrays.glob.n, arrays.glob.sum_log_weights, within)
        return replace(arrays, zxy=zxy, glob=glob, centred=kept)

    def _drawn_within(
        self, wp: _Within, fitted: np.ndarray, beta, b, u, xe, ee: float, zc_e=None
    ) -> np.ndarray:
        """``[X y*]'(I − P_1)[X y*]`` (``fitted``: the fit's within-group sums, whose
        ``X`` block stays), each group's part formed before the sums; ``zc_e``: the
        groups with centred sums' ``Z_c'e*`` (:meth:`_centred_drawn`), or None."""
        arrays = self.arrays
        p, e = arrays.glob.k_fe, wp.e
        zz, gx = arrays.zz, arrays.zxy[:, :, :p]
        within = fitted.copy()
        wxx = within[:p, :p]
        ue = u[:, e] / zz[:, e, e]
        x_zb = _group_sum(b, wp.xwz)  # X'(I − P_1)Z̃b*
        x_e = xe - ue @ gx[:, e, :]  # X'(I − P_1)e*
        b_zb = float(np.vdot(b, np.einsum("gab,gb->ga", wp.dw, b)))
        zc = u - wp.ratio * u[:, e, None]  # Z_c'e*
        if zc_e is not None and self.centred is not None:
            zc[self.centred.positions] = zc_e
        b_e = float(np.vdot(b, zc))
        e_e = ee - float(ue @ u[:, e])
        within[:p, p] = within[p, :p] = wxx @ beta + x_zb + x_e
        within[p, p] = float(beta @ wxx @ beta) + 2.0 * float(beta @ (x_zb + x_e))
        within[p, p] += b_zb + 2.0 * b_e + e_e
        return within
