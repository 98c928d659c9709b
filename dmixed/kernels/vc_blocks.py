"""Structured variance components: ℓ, score, Hessian, BLUPs in time linear in the levels.

When no row of a group has non-zero entries in two variance-component columns (one
indicator component ``0 + C(level)``, or components on disjoint rows), the
variance-component block ``D_i`` of ``Z̃_i'Z̃_i`` is diagonal (the level counts), bordered
only by the ``q`` columns of ``exog_re``::

    Z̃_i'Z̃_i = [[A_i, B_i], [B_i', D_i]],   Z̃_i'[X y] = [[F1_i], [F2_i]]

With ``T = diag(τ*)`` over the group's slots, ``V2 = I + Z2 T Z2'`` has the diagonal
inverse form ``V2⁻¹ = I − Z2 diag(c) Z2'`` with ``c_a = τ_a/(1 + τ_a d_a)``; eliminating
the slots first (a Schur complement) leaves a ``q × q`` problem per group::

    Ã = A − B diag(c) B',   F̃1 = F1 − B diag(c) F2,   K1 = I + L'ÃL,   P1 = L K1⁻¹ L'
    log|K| = Σ_a log(1 + τ_a d_a) + log|K1|

and every quantity of :mod:`dmixed.kernels.groups` follows in ``O(m_i q²)`` per group
(``m_i`` its slots): ``g_a = 1/(1 + τ_a d_a)``, ``S = Δ + W C W'`` with
``Δ = blockdiag(Ã, diag(g d))``, ``W = blockdiag(I, diag(g) B')`` and the ``2q × 2q``
``C = [[−ÃP1Ã, I − ÃP1], [I − P1Ã, −P1]]``; ``H1 = F̃1 − ÃP1F̃1`` and each slot's row of
``H`` is ``h_a = g_a (F2_a − F̃1'P1 b_a)``.  The statistics are kept ragged (one entry per
slot a group uses, no padding to the widest group).

The sums returned are those of :mod:`dmixed.kernels.groups` with the slots of a
component added together (what the objective uses): ``StepSums.s`` is
``(q + d) × (q + d)`` and ``StepSums.t_vc`` ``(d, k, k)``, one entry per component.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..stats.blup_cov import RaggedBlup, RaggedCov
from ..stats.ragged_stats import RaggedArrays
from ..stats.standardize import Standardization
from .groups import HessianSums, MomentSums, StepSums
from .rows import accumulate_statistics
from .vc_cells import cell_sums, whole_component_pass

__all__ = [
    "RaggedVC",
    "c_matrix",
    "diagonal_vc_block",
    "group_runs",
    "one_entry_per_row",
    "ragged_statistics",
    "segment_sum",
]


def diagonal_vc_block(zz: np.ndarray, q: int) -> bool:
    """Whether the variance-component block of every group's ``Z̃_i'Z̃_i`` (G, r, r) is
    diagonal (exact zeros off the diagonal): the structure :class:`RaggedVC` needs."""
    vc = zz[:, q:, q:]
    if vc.shape[1] == 0:
        return False
    on_diagonal = np.count_nonzero(np.diagonal(vc, axis1=1, axis2=2))
    return int(np.count_nonzero(vc)) == on_diagonal


def one_entry_per_row(vc_slots: list[np.ndarray]) -> bool:
    """Whether no row has an entry in two variance-component columns (``vc_slots``: per
    component, each row's slots, or any index ``>= 0`` where an entry is, ``-1`` for
    none): then every group's variance-component block is diagonal."""
    if not vc_slots:
        return False
    if len(vc_slots) == 1 and vc_slots[0].shape[1] <= 1:  # one entry per row at most
        return True
    count = sum((slots >= 0).sum(axis=1) for slots in vc_slots)
    return bool(np.all(count <= 1))


def ragged_statistics(
    codes: np.ndarray,
    n_groups: int,
    endog: np.ndarray,
    exog: np.ndarray,
    exog_re: np.ndarray,
    vc_slots: list[np.ndarray],
    vc_vals: list[np.ndarray],
    vc_widths,
    weights: np.ndarray | None = None,
    std: Standardization | None = None,
    vc_cells: list | None = None,
) -> tuple[RaggedVC, dict]:
    """The statistics of rows with one variance-component entry at most
    (:func:`one_entry_per_row`), ragged, without forming the padded design.

    One pass over the rows with ``Z = exog_re`` (what a model without variance components
    accumulates: ``A_i``, ``F1_i``, the global sums), and per component the sums of its
    rows' entry ``v`` by (group, slot) cell (:func:`~dmixed.kernels.vc_cells.cell_sums`:
    the cell's ``d``, ``b`` and ``F2`` row, those of the dense pass over the design
    ``[Z, v]`` bit for bit, in the same columns' map).

    ``vc_cells``: per component, the numbering of the cells already made
    (:func:`~dmixed.stats.slots.number_vc_cells`): ``(entry_pair, pair_group,
    pair_slot)``, the cell of every entry (``-1``: none; ``vc_slots`` ``>= 0`` exactly
    there) and each cell's group and slot, cells in (group, slot) order.  With it only
    where ``vc_slots`` is ``>= 0`` is read (``entry_pair`` may stand for it).  Without
    it the cells are found by sorting the entries' keys.

    Returns
    -------
    ragged : RaggedVC
    glob : dict
        :func:`~dmixed.kernels.accumulate_statistics`'s result for ``exog_re`` (``nobs``,
        ``xyxy``, ``n``, ``sum_log_weights``, ``within``; ``zz``, ``zxy`` the ``q`` block).
    """
    q = exog_re.shape[1]
    widths = np.asarray(vc_widths, dtype=np.int64)
    offsets = q + np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(np.int64)
    r = q + int(widths.sum())
    whole = whole_component_pass(
        codes, n_groups, endog, exog, exog_re, vc_slots, vc_vals, weights, std, vc_cells, q
    )
    if whole is not None:  # one entry on every row: groups and cells in one pass
        return RaggedVC.from_cells(whole[0], [whole[1]], q, r, offsets), whole[0]
    base = accumulate_statistics(codes, n_groups, endog, exog, exog_re, weights, std)
    if q == 0:  # no exog_re: the packed rows say nothing of [X y]'s width
        base["zxy"] = np.zeros((n_groups, 0, exog.shape[1] + 1))
    parts = []
    for ell, (slots, vals) in enumerate(zip(vc_slots, vc_vals, strict=True)):
        take, pick = _component_entries(slots)
        if pick(slots).size == 0:
            continue
        if vc_cells is None:
            keys = codes[take].astype(np.int64) * r + offsets[ell] + pick(slots)
            cells, cell_of_row = np.unique(keys, return_inverse=True)
            cell_group, cell_pos = np.divmod(cells, r)
        else:
            entry_pair, cell_group, pair_slot = vc_cells[ell]
            cell_of_row = pick(entry_pair)
            cell_pos = offsets[ell] + pair_slot
        cell_std = None if std is None else _one_component(std, ell)
        rows = (endog[take], exog[take], exog_re[take], pick(vals))
        w = None if weights is None else weights[take]
        cell = np.asarray(cell_of_row, dtype=np.int64).reshape(-1)
        sums = cell_sums(cell, cell_pos.size, *rows, w, cell_std)
        if sums is None:  # a scale of the map is extreme: the dense pass divides first
            sums = _cell_sums_dense(cell, cell_pos.size, *rows, w, cell_std)
        parts.append((cell_group, cell_pos, *sums, ell))
    return RaggedVC.from_cells(base, parts, q, r, offsets), base


def _component_entries(slots: np.ndarray):
    """The rows of one component's entries (rows with one entry at most, in row order)
    and how to read each entry from an (n, k) array: ``(take, pick)``, ``take`` a slice
    of all rows where every row has an entry (the rows as they are, not copied)."""
    if slots.shape[1] == 1:
        if slots.size and slots.min() >= 0:
            return slice(None), lambda a: a[:, 0]
        row = np.flatnonzero(slots[:, 0] >= 0)
        return row, lambda a: a[row, 0]
    row, col = np.nonzero(slots >= 0)
    take = slice(None) if row.size == slots.shape[0] else row
    return take, lambda a: a[row, col]


def _cell_sums_dense(cell, n_cells, endog, exog, exog_re, v, weights, std):
    """:func:`~dmixed.kernels.vc_cells.cell_sums` by the dense pass over the design
    ``[exog_re, v]`` (every product of its columns): ``(d, b, f2)``."""
    q = exog_re.shape[1]
    design = np.empty((q + 1, v.size)).T
    design[:, :q] = exog_re
    design[:, q] = v
    st = accumulate_statistics(cell, n_cells, endog, exog, design, weights, std, (1,))
    return st["zz"][:, q, q].copy(), st["zz"][:, :q, q], st["zxy"][:, q, :]


def _one_component(std: Standardization, ell: int) -> Standardization:
    """The columns' map of ``[exog_re, component ell's entry]``."""
    scales = std.vc_scales(std.vc_scale.size)
    return dataclasses.replace(std, vc_scale=scales[ell : ell + 1])


def segment_sum(values: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Sums of consecutive runs of ``values`` (J, ...): run ``s`` starts at ``starts[s]``
    and holds ``counts[s]`` entries (zero for an empty run)."""
    out = np.zeros((starts.size,) + values.shape[1:])
    full = counts > 0
    if values.shape[0]:
        out[full] = np.add.reduceat(values, starts[full], axis=0)
    return out


def group_runs(keys: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """First position and length of the run of each key ``0..n-1`` in sorted ``keys``."""
    starts = np.searchsorted(keys, np.arange(n))
    counts = np.bincount(keys, minlength=n) if keys.size else np.zeros(n, dtype=np.int64)
    return starts.astype(np.int64), counts.astype(np.int64)


@dataclass
class RaggedVC(RaggedArrays):
    """Per-group statistics with a diagonal variance-component block, slots ragged, with
    the kernels that evaluate them.

    The arrays, their shapes and meaning, and the conversions from and to the padded
    statistics (``from_dense``, ``dense``) are :class:`~dmixed.stats.ragged_stats.RaggedArrays`'
    (the stats layer saves and merges them); this class adds the likelihood, score,
    Hessian, moments and random effects over them.
    """

    @classmethod
    def from_cells(cls, base: dict, parts: list, q: int, r: int, offsets) -> RaggedVC:
        """From :func:`ragged_statistics`' passes: ``base`` (``zz``, ``zxy`` of
        ``exog_re``) and per component ``(group, column, d, b, f2, l)`` of its cells
        (sorted by group and column)."""
        if len(parts) == 1:
            group, pos, d, b, f2, ell = parts[0]
            comp = np.full(group.size, ell, dtype=np.int64)
        else:
            k = base["zxy"].shape[2]
            empty = (np.zeros(0, dtype=np.int64),) * 2 + (np.zeros(0), np.zeros((0, q)))
            joined = [
                np.concatenate([e] + [p[i] for p in parts])
                for i, e in enumerate(empty + (np.zeros((0, k)),))
            ]
            comp = np.concatenate(
                [np.zeros(0, dtype=np.int64)] + [np.full(p[0].size, p[5]) for p in parts]
            )
            order = np.argsort(joined[0] * r + joined[1], kind="stable")
            group, pos, d, b, f2 = (a[order] for a in joined)
            comp = comp[order]
        return cls(
            a=np.ascontiguousarray(base["zz"]),
            f1=np.ascontiguousarray(base["zxy"]),
            group=np.asarray(group, dtype=np.int64),
            comp=comp,
            pos=np.asarray(pos, dtype=np.int64),
            d=d,
            b=np.ascontiguousarray(b),
            f2=np.ascontiguousarray(f2),
            offsets=np.asarray(offsets, dtype=np.int64),
            r=r,
        )

    # -- sizes ----------------------------------------------------------------------

    @property
    def n_comp(self) -> int:
        return self.offsets.size

    def _group_runs(self):
        return group_runs(self.group, self.n_groups)

    def cell_runs(self):
        """Runs of (group, component) cells: the slots are sorted by them."""
        return group_runs(self.group * self.n_comp + self.comp, self.n_groups * self.n_comp)

    # -- parameters -----------------------------------------------------------------

    def columns(self, width: int) -> np.ndarray:
        """The column of each component's variance in a Λ or ``E_j`` of this ``width``:
        ``q + l`` (one column per component) or the component's first padded column."""
        if width == self.q + self.n_comp:
            return self.q + np.arange(self.n_comp)
        if width != self.r:
            raise ValueError(f"a factor of width {width} for a design of width {self.r}")
        return self.offsets

    def parameters(self, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``L`` (q, q) and each slot's ``τ*`` (J,) of a factor Λ (either width)."""
        q = self.q
        s = np.diagonal(lam)[self.columns(lam.shape[0])]
        return lam[:q, :q], (s**2)[self.comp]

    # -- the eliminated problem ---------------------------------------------------------

    def eliminate(self, lam: np.ndarray) -> _Eliminated:
        """The slots eliminated at ``lam``: the ``q × q`` problem of every group."""
        q = self.q
        lmat, tau = self.parameters(lam)
        e = 1.0 + tau * self.d
        gw = 1.0 / e
        c = tau * gw
        starts, counts = self._group_runs()
        cb = c[:, None] * self.b
        a_t = self.a - segment_sum(cb[:, :, None] * self.b[:, None, :], starts, counts)
        f1_t = self.f1 - segment_sum(cb[:, :, None] * self.f2[:, None, :], starts, counts)
        m2 = (self.f2 * c[:, None]).T @ self.f2
        p1, logdet1 = _factor_q(a_t, lmat)
        ap = a_t @ p1
        s11 = a_t - ap @ a_t
        h1 = f1_t - ap @ f1_t
        pb = np.einsum("jab,jb->ja", p1[self.group], self.b) if q else np.zeros((self.d.size, 0))
        h = gw[:, None] * (self.f2 - np.einsum("jak,ja->jk", f1_t[self.group], pb))
        s_diag = gw * self.d - gw**2 * np.einsum("ja,ja->j", self.b, pb)
        logdet = float(np.log(e).sum() + logdet1.sum())
        return _Eliminated(lmat, tau, gw, c, a_t, f1_t, m2, p1, ap, s11, h1, pb, h, s_diag, logdet)

    # -- the kernels ----------------------------------------------------------------

    def step(self, lam: np.ndarray) -> StepSums:
        """Contributions to ℓ and its score: ``StepSums`` with one slot per component
        for a factor of width ``q + d``; for one of the padded width, per padded slot as
        :func:`~dmixed.kernels.step_contributions` gives them (only the ``exog_re`` block
        and the diagonal of ``s`` are filled: all that the objective reads)."""
        el = self.eliminate(lam)
        q, k = self.q, self.k
        per_slot = lam.shape[0] != q + self.n_comp
        n_vc = self.r - q if per_slot else self.n_comp
        index = self.pos - q if per_slot else self.comp
        m = el.m2 + np.einsum("gax,gab,gby->xy", el.f1_t, el.p1, el.f1_t)
        s = np.zeros((q + n_vc, q + n_vc))
        s[:q, :q] = el.s11.sum(axis=0)
        idx = q + np.arange(n_vc)
        s[idx, idx] = np.bincount(index, weights=el.s_diag, minlength=n_vc)
        t_vc = np.zeros((n_vc, k, k))
        if per_slot:
            np.add.at(t_vc, index, el.h[:, :, None] * el.h[:, None, :])
        else:
            for ell in range(n_vc):
                hl = el.h[index == ell]
                t_vc[ell] = hl.T @ hl
        return StepSums(
            el.logdet,
            0.5 * (m + m.T),
            s,
            np.einsum("gax,gby->abxy", el.h1, el.h1),
            t_vc,
            np.zeros((k, k)),
        )

    def random_effects(self, lam: np.ndarray, w: np.ndarray) -> tuple[RaggedBlup, RaggedCov]:
        """BLUPs and their conditional covariances relative to σ², ragged
        (:class:`~dmixed.stats.blup_cov.RaggedBlup`, :class:`~dmixed.stats.blup_cov.RaggedCov`,
        read as the dense design's (G, r) and (G, r, r)):
        ``P = Λ K⁻¹ Λ'`` is ``P1 = R R'`` on ``exog_re``, ``−c_a P1 b_a`` against slot
        ``a`` and ``diag(c) + (c b)' P1 (c b)`` on the slots, so ``W`` has the rows
        ``R`` and ``w_a = −c_a R' b_a``, and ``δ_a = c_a``; a slot the group does not use
        keeps its prior variance ``τ*_l`` (as ``K_aa = 1``)."""
        el = self.eliminate(lam)
        q, r = self.q, self.r
        psi = el.lmat @ el.lmat.T
        blup = RaggedBlup((el.h1 @ w) @ psi.T, self.group, self.pos, el.tau * (el.h @ w), r)
        root = _root_q(el.a_t, el.lmat)
        w_slots = -el.c[:, None] * np.einsum("jab,ja->jb", root[self.group], self.b)
        slot_comp = np.searchsorted(self.offsets, np.arange(q, r), side="right") - 1
        s = np.diagonal(lam)[self.columns(lam.shape[0])]
        cov = RaggedCov(root, self.group, self.pos, w_slots, el.c.copy(), s[slot_comp] ** 2)
        return blup, cov

    def moments(self) -> MomentSums:
        """The moment sums in the one-slot-per-component coordinates (the entries that
        the moment equations read against that basis)."""
        q, k, d = self.q, self.k, self.n_comp
        r = q + d
        comp = self.comp
        zz = np.zeros((r, r))
        zz[:q, :q] = self.a.sum(axis=0)
        idx = q + np.arange(d)
        zz[idx, idx] = np.bincount(comp, weights=self.d, minlength=d)
        z4 = np.zeros((r, r, r, r))
        z4[:q, :q, :q, :q] = np.einsum("gbc,gda->bcda", self.a, self.a)
        zxy4 = np.zeros((r, k, r, k))
        zxy4[:q, :, :q, :] = np.einsum("gax,gby->axby", self.f1, self.f1)
        zxy = np.zeros((r, k))
        zxy[:q] = self.f1.sum(axis=0)
        for ell in range(d):
            sel = comp == ell
            bb = self.b[sel].T @ self.b[sel]
            j = q + ell
            z4[j, :q, :q, j] = bb
            z4[:q, j, j, :q] = bb
            z4[j, j, j, j] = float(self.d[sel] @ self.d[sel])
            zxy4[j, :, j, :] = self.f2[sel].T @ self.f2[sel]
            zxy[j] = self.f2[sel].sum(axis=0)
            zz[j, :q] = zz[:q, j] = self.b[sel].sum(axis=0)
        return MomentSums(zz, z4, zxy4, self.n_groups, zxy)

    def hessian(self, lam: np.ndarray, basis: np.ndarray, w: np.ndarray) -> HessianSums:
        """Contributions to the Hessian sums (:class:`~dmixed.kernels.HessianSums`)."""
        return _hessian(self, self.eliminate(lam), basis, w)


@dataclass
class _Eliminated:
    lmat: np.ndarray
    tau: np.ndarray
    gw: np.ndarray
    c: np.ndarray
    a_t: np.ndarray
    f1_t: np.ndarray
    m2: np.ndarray
    p1: np.ndarray
    ap: np.ndarray
    s11: np.ndarray
    h1: np.ndarray
    pb: np.ndarray
    h: np.ndarray
    s_diag: np.ndarray
    logdet: float


def _factor_q(a_t: np.ndarray, lmat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``P1 = L K1⁻¹ L'`` (G, q, q) and ``log|K1|`` (G,) for ``K1 = I + L'ÃL``."""
    g, q = a_t.shape[:2]
    if q == 0:
        return np.zeros((g, 0, 0)), np.zeros(g)
    lal = lmat.T @ a_t @ lmat
    if q == 1:
        kk = 1.0 + lal[:, 0, 0]
        return (lmat[0, 0] ** 2 / kk)[:, None, None], np.log(kk)
    kmat = lal + np.eye(q)
    chol = np.linalg.cholesky(kmat)
    logdet = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
    return lmat @ np.linalg.inv(kmat) @ lmat.T, logdet


def _root_q(a_t: np.ndarray, lmat: np.ndarray) -> np.ndarray:
    """``R`` (G, q, q) with ``R R' = P1 = L K1⁻¹ L'``: ``L C⁻ᵀ`` for ``K1 = C C'``."""
    g, q = a_t.shape[:2]
    if q == 0:
        return np.zeros((g, 0, 0))
    kmat = lmat.T @ a_t @ lmat + np.eye(q)
    chol = np.linalg.cholesky(kmat)
    return lmat @ np.swapaxes(np.linalg.inv(chol), 1, 2)


def _hessian(rv: RaggedVC, el: _Eliminated, basis: np.ndarray, w: np.ndarray) -> HessianSums:
    """The Hessian sums through ``S = Δ + W C W'`` (module docstring), per group and per
    (group, component) cell: ``2q × 2q`` products, no ``r × r`` matrix."""
    q, k = rv.q, rv.k
    p = k - 1
    m = basis.shape[0]
    e_psi = basis[:, :q, :q]
    e_tau = basis[:, rv.columns(basis.shape[1]), rv.columns(basis.shape[1])]  # (m, d)
    u1 = el.h1 @ w  # (G, q)
    g1 = el.h1[:, :, :p]  # (G, q, p)
    u2 = el.h @ w  # (J,)
    g2 = el.h[:, :p]  # (J, p)
    cells = _Cells(rv, el, u2, g2)
    c = c_matrix(el.a_t, el.ap, el.p1)
    omega = [cells.omega(e_psi[j], e_tau[j]) for j in range(m)]
    wu = [
        np.concatenate([u1 @ e_psi[j].T, cells.tau_sum(cells.gamma, e_tau[j])], 1) for j in range(m)
    ]
    wg = [
        np.concatenate([e_psi[j] @ g1, cells.tau_sum(cells.big_gamma, e_tau[j])], 1)
        for j in range(m)
    ]
    out = HessianSums.zeros(m, p)
    for j in range(m):
        eu_j = u1 @ e_psi[j].T  # (G, q): E_j u1
        out.u_e_u[j] = np.einsum("ga,ga->", u1, eu_j) + e_tau[j] @ cells.nu
        out.g_e_u[j] = np.einsum("gap,ga->p", g1, eu_j) + e_tau[j] @ cells.rho
        out.a_j[j] = np.einsum("gap,gaz->pz", g1, e_psi[j] @ g1) + np.einsum(
            "l,lpz->pz", e_tau[j], cells.rr
        )
        for kk in range(m):
            ee = e_tau[j] * e_tau[kk]
            a_e = el.a_t @ e_psi[j]
            phi = np.zeros((rv.n_groups, 2 * q, 2 * q))
            phi[:, :q, :q] = e_psi[kk] @ a_e
            phi[:, q:, q:] = cells.tau_sum(cells.nn, ee)
            out.tr_ss[j, kk] = (
                np.einsum("gab,gba->", a_e, el.a_t @ e_psi[kk])
                + ee @ cells.sigma
                + 2.0 * np.einsum("gab,gba->", c, phi)
                + np.einsum("gab,gbc,gcd,gda->", c, omega[j], c, omega[kk])
            )
            eu_k = u1 @ e_psi[kk].T
            out.u_s_u[j, kk] = (
                np.einsum("ga,gab,gb->", eu_j, el.a_t, eu_k)
                + ee @ cells.mu
                + np.einsum("ga,gab,gb->", wu[j], c, wu[kk])
            )
            eg_j = e_psi[j] @ g1
            eg_k = e_psi[kk] @ g1
            out.a_jk[j, kk] = 2.0 * (
                np.einsum("gap,gab,gbz->pz", eg_j, el.a_t, eg_k)
                + np.einsum("l,lpz->pz", ee, cells.tt)
                + np.einsum("gap,gab,gbz->pz", wg[j], c, wg[kk])
            )
    return out


def c_matrix(a_t: np.ndarray, ap: np.ndarray, p1: np.ndarray) -> np.ndarray:
    """``C = [[−ÃP1Ã, I − ÃP1], [I − P1Ã, −P1]]`` (G, 2q, 2q) of an eliminated problem:
    ``Ã``, ``ÃP1`` and ``P1``, each (G, q, q)."""
    g, q = a_t.shape[:2]
    c = np.empty((g, 2 * q, 2 * q))
    c[:, :q, :q] = -ap @ a_t
    c[:, :q, q:] = np.eye(q) - ap
    c[:, q:, :q] = np.eye(q) - np.swapaxes(ap, 1, 2)
    c[:, q:, q:] = -p1
    return c


class _Cells:
    """Sums over the slots of each (group, component) cell that the Hessian needs."""

    def __init__(self, rv: RaggedVC, el: _Eliminated, u2: np.ndarray, g2: np.ndarray):
        starts, counts = rv.cell_runs()
        g, d = rv.n_groups, rv.n_comp
        gw, dd, b = el.gw, rv.d, rv.b
        gd = gw * dd

        def cell(values):
            out = segment_sum(values, starts, counts)
            return out.reshape((g, d) + values.shape[1:])

        self.mm = cell((gw**2)[:, None, None] * b[:, :, None] * b[:, None, :])  # (G, d, q, q)
        self.nn = cell((gw**2 * gd)[:, None, None] * b[:, :, None] * b[:, None, :])
        self.gamma = cell((gw * u2)[:, None] * b)  # (G, d, q)
        self.big_gamma = cell(gw[:, None, None] * b[:, :, None] * g2[:, None, :])  # (G, d, q, p)
        # the rest only enter summed over the groups: (d, ...)
        comp = rv.comp
        self.sigma = np.bincount(comp, weights=gd**2, minlength=d)
        self.mu = np.bincount(comp, weights=gd * u2**2, minlength=d)
        self.nu = np.bincount(comp, weights=u2**2, minlength=d)
        self.rho = np.stack([g2[comp == ell].T @ u2[comp == ell] for ell in range(d)])
        self.rr = np.stack([g2[comp == ell].T @ g2[comp == ell] for ell in range(d)])
        self.tt = np.stack(
            [(g2[comp == ell] * gd[comp == ell, None]).T @ g2[comp == ell] for ell in range(d)]
        )

    @staticmethod
    def tau_sum(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """``Σ_l weights[l] values[:, l]`` (G, ...)."""
        return np.einsum("l,gl...->g...", weights, values)

    def omega(self, e_psi: np.ndarray, e_tau: np.ndarray) -> np.ndarray:
        """``W'E_jW = blockdiag(Eψ_j, Σ_l eτ_j[l] M_l)`` (G, 2q, 2q)."""
        g, _, q, _ = self.mm.shape
        out = np.zeros((g, 2 * q, 2 * q))
        out[:, :q, :q] = e_psi
        out[:, q:, q:] = self.tau_sum(self.mm, e_tau)
        return out
