"""Crossed variance components: one diagonal block eliminated, a ragged dense border.

Where two components' entries share rows (crossed within a group: ``C(a)`` and ``C(b)``
with ``a`` and ``b`` crossed, or continuous ``exog_vc`` columns), ``Z̃_i'Z̃_i`` is not
diagonal on the components, but the block of an indicator component whose columns hit
disjoint rows still is (its level counts; several such components if no row has an entry
in two of them).  Those slots are the *diagonal* ``D_i`` (``m_i`` used slots); every
other column of the group (the ``q`` columns of ``exog_re`` and the used slots of the
other components) forms the group's *border* of width ``w_i``::

    Z̃_i'Z̃_i = [[A_i, B_i], [B_i', diag(d_i)]]     (A_i: w_i × w_i, B_i: w_i × m_i)

With ``Λ_i = blockdiag(Λb_i, diag(s))`` (``Λb_i = blockdiag(L, s_l I)`` on the border,
``τ_a = s_a²`` on the diagonal slots) the algebra of :mod:`dmixed.kernels.vc_blocks`
holds with ``q`` replaced by ``w_i`` and ``L`` by ``Λb_i``::

    c_a = τ_a/(1 + τ_a d_a),  Ã = A − B diag(c) B',  F̃1 = F1 − B diag(c) F2,
    K1 = I + Λb'ÃΛb,  P1 = Λb K1⁻¹ Λb',  log|K| = Σ_a log(1 + τ_a d_a) + log|K1|

and ``S = Δ + W C W'`` (``Δ = blockdiag(Ã, diag(g d))``, ``W = blockdiag(I, diag(g)B')``,
``C = [[−ÃP1Ã, I − ÃP1], [I − P1Ã, −P1]]``, ``g_a = 1/(1 + τ_a d_a)``), so ℓ, the score,
the Hessian and the BLUPs cost ``O(m_i w_i² + w_i³)`` per group instead of
``O(r_max³)``.  Groups are held in buckets of equal border width (each group its own
width, no padding to the widest); within a bucket the per-group matrices are stacked.

Sums are returned as :mod:`dmixed.kernels.groups` returns them, for a factor Λ of the
padded width ``r`` or of the one-slot-per-component width ``q + d`` (then ``StepSums.s``
is ``(q + d) × (q + d)`` with the ``exog_re`` block and the diagonal filled, and
``t_vc`` one entry per component).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..stats.blup_cov import RaggedBlup
from ..stats.border_cov import BorderCov, CovBucket, concatenate_buckets
from ..stats.crossed_stats import CrossSums, buckets_to_slots
from ..stats.ragged_stats import RaggedArrays
from .groups import HessianSums, MomentSums, StepSums
from .vc_blocks import c_matrix, group_runs, segment_sum

__all__ = ["BorderBucket", "CrossedVC", "diagonal_components"]

#: border widths up to which the per-group sums over slots are stacked ``(J, w, w)``
#: products; above, one BLAS product per group
STACKED_MAX_W = 24

#: border widths above which a bucket's groups are eliminated one at a time with one
#: Cholesky factor and triangular solves (:func:`_eliminate_wide`), never an explicit
#: inverse, and their ``B_i`` is held sparse where it is
WIDE_W = 128

#: densest ``B_i`` (share of non-zero entries) held sparse in a wide group
SPARSE_B_MAX = 0.05


def diagonal_components(zz: np.ndarray, q: int, slot_component: np.ndarray) -> list[int]:
    """Components whose slots may form the diagonal block of every group's ``Z̃_i'Z̃_i``
    (G, r, r) (:func:`choose_diagonal`, from the padded blocks)."""
    slot_component = np.asarray(slot_component, dtype=np.int64)
    n_comp = int(slot_component.max()) + 1 if slot_component.size else 0
    widths = np.bincount(slot_component, minlength=n_comp)
    offsets = q + np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(np.int64)
    span = [slice(offsets[c], offsets[c] + widths[c]) for c in range(n_comp)]
    overlap = np.zeros((n_comp, n_comp), dtype=bool)
    for c in range(n_comp):
        block = zz[:, span[c], span[c]]
        on_diagonal = np.count_nonzero(np.diagonal(block, axis1=1, axis2=2))
        overlap[c, c] = np.count_nonzero(block) != on_diagonal
        for o in range(c):
            overlap[c, o] = overlap[o, c] = bool(np.any(zz[:, span[c], span[o]]))
    return choose_diagonal(widths, overlap)


def choose_diagonal(widths: np.ndarray, overlap: np.ndarray) -> list[int]:
    """The components whose slots form the diagonal block: each with no two entries in
    one row of a group (``overlap[l, l]`` false), no two of them sharing a row
    (``overlap[l, l']`` false), chosen greedily widest first (most slots: the most work
    saved); sorted, empty when none qualifies.

    Parameters
    ----------
    widths : ndarray (d,)
        Slots of each component.
    overlap : ndarray of bool (d, d)
        Whether some row has entries in two slots of components ``l`` and ``l'``.
    """
    chosen: list[int] = []
    for ell in np.argsort(-np.asarray(widths), kind="stable"):
        if not overlap[ell, ell] and not any(overlap[ell, o] for o in chosen):
            chosen.append(int(ell))
    return sorted(chosen)


@dataclass
class BorderBucket:
    """The groups of one border width ``w``, stacked.

    Attributes
    ----------
    groups : ndarray (G_w,) int64
        Positions of these groups among all groups.
    a : ndarray (G_w, w, w)
        ``A_i``: the border's block of ``Z̃_i'Z̃_i``.
    f1 : ndarray (G_w, w, k)
        The border's rows of ``Z̃_i'[X_i y_i]``.
    bpos : ndarray (G_w, w) int64
        Padded column of each border column (``0..q-1`` first, then the group's used
        slots of the other components in order).
    group, pos : ndarray (J,) int64
        Each used diagonal slot's group (its index in this bucket) and padded column,
        sorted by (group, column).
    d : ndarray (J,)
        The diagonal slot's entry of ``Z̃_i'Z̃_i``.
    b : ndarray (J, w)
        Its column against the border (against ``exog_re``, and the co-occurrence sums
        with the other components' slots).
    f2 : ndarray (J, k)
        Its row of ``Z̃_i'[X_i y_i]``.
    """

    groups: np.ndarray
    a: np.ndarray
    f1: np.ndarray
    bpos: np.ndarray
    group: np.ndarray
    pos: np.ndarray
    d: np.ndarray
    b: np.ndarray
    f2: np.ndarray
    _runs: tuple | None = field(default=None, init=False, repr=False, compare=False)
    _b_rows: dict | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def n_groups(self) -> int:
        return self.a.shape[0]

    @property
    def wide(self) -> bool:
        """Whether the bucket's borders are wider than :data:`WIDE_W` (only then is
        ``B_i`` held sparse and the elimination done by triangular solves)."""
        return self.a.shape[1] > WIDE_W

    def runs(self) -> tuple[np.ndarray, np.ndarray]:
        """First diagonal slot and number of them of each group of the bucket (found
        once)."""
        if self._runs is None:
            self._runs = group_runs(self.group, self.n_groups)
        return self._runs

    def factors(self, lam: np.ndarray, col: np.ndarray, q: int):
        """``Λb_i`` (G_w, w, w) and each diagonal slot's ``τ`` (J,) of a factor ``lam``
        whose column of padded column ``c`` is ``col[c]``."""
        diag = np.diagonal(lam)
        g, w = self.bpos.shape
        out = np.zeros((g, w, w))
        out[:, :q, :q] = lam[:q, :q]
        idx = np.arange(q, w)
        out[:, idx, idx] = diag[col[self.bpos[:, q:]]]
        return out, diag[col[self.pos]] ** 2

    def seg_outer(self, weights: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``Σ_a weights_a x_a y_a'`` over each group's diagonal slots (G_w, x, y)."""
        starts, counts = self.runs()
        if x.shape[1] <= STACKED_MAX_W:
            prod = (weights[:, None, None] * x[:, :, None]) * y[:, None, :]
            return segment_sum(prod, starts, counts)
        out = np.zeros((self.n_groups, x.shape[1], y.shape[1]))
        if not self.wide:
            for gi in np.flatnonzero(counts):
                sl = slice(starts[gi], starts[gi] + counts[gi])
                out[gi] = (x[sl].T * weights[sl]) @ y[sl]
            return out
        import scipy.sparse  # only wide borders hold B sparse: most fits have none

        for gi in np.flatnonzero(counts):
            sl = slice(starts[gi], starts[gi] + counts[gi])
            xs = self.b_rows(int(gi)) if x is self.b else x[sl]
            ys = self.b_rows(int(gi)) if y is self.b else y[sl]
            if scipy.sparse.issparse(xs) or scipy.sparse.issparse(ys):
                prod = (scipy.sparse.diags_array(weights[sl]) @ xs).T @ ys
                out[gi] = prod.toarray() if scipy.sparse.issparse(prod) else prod
            else:
                out[gi] = (xs.T * weights[sl]) @ ys
        return out

    def rows_times(self, rows: np.ndarray, mats: np.ndarray) -> np.ndarray:
        """``rows_a @ mats[group_a]`` for each diagonal slot (J, x)."""
        if mats.shape[1] <= STACKED_MAX_W:
            return np.einsum("ja,jax->jx", rows, mats[self.group])
        starts, counts = self.runs()
        out = np.zeros((rows.shape[0], mats.shape[2]))
        wide_b = self.wide and rows is self.b
        for gi in np.flatnonzero(counts):
            sl = slice(starts[gi], starts[gi] + counts[gi])
            out[sl] = (self.b_rows(int(gi)) if wide_b else rows[sl]) @ mats[gi]
        return out

    def b_rows(self, gi: int):
        """Group ``gi``'s rows of :attr:`b` (its ``B_i'``, m_i × w): a CSR matrix where
        few of its entries are non-zero (each slot of the diagonal component co-occurs
        with few of the border's), else the dense rows (found once per group); read
        only for :attr:`wide` buckets."""
        import scipy.sparse  # only on the wide path

        if self._b_rows is None:
            self._b_rows = {}
        if gi not in self._b_rows:
            starts, counts = self.runs()
            rows = self.b[starts[gi] : starts[gi] + counts[gi]]
            sparse = rows.size > 0 and np.count_nonzero(rows) <= SPARSE_B_MAX * rows.size
            self._b_rows[gi] = scipy.sparse.csr_array(rows) if sparse else rows
        return self._b_rows[gi]


@dataclass
class _Eliminated:
    """A bucket's diagonal slots eliminated at one Λ (module docstring)."""

    lamb: np.ndarray
    tau: np.ndarray
    gw: np.ndarray
    c: np.ndarray
    a_t: np.ndarray
    f1_t: np.ndarray
    p1: np.ndarray | None
    ap: np.ndarray | None
    s11: np.ndarray
    h1: np.ndarray
    pb: np.ndarray | None
    h: np.ndarray
    s_diag: np.ndarray
    logdet: float
    m: np.ndarray
    #: ``R`` with ``R R' = P1`` where the elimination formed it (wide borders)
    root: np.ndarray | None = None


def _eliminate(
    bk: BorderBucket, lam: np.ndarray, col: np.ndarray, q: int, full: bool = True
) -> _Eliminated:
    """The bucket's diagonal slots eliminated at ``lam``; without ``full`` (what
    :meth:`CrossedVC.step` reads) a wide bucket's ``s11`` holds only its ``exog_re``
    block and its diagonal and ``p1``, ``ap`` are not formed; a wide bucket never
    forms ``pb``."""
    if bk.a.shape[1] > WIDE_W:
        return _eliminate_wide(bk, lam, col, q, full)
    lamb, tau = bk.factors(lam, col, q)
    e = 1.0 + tau * bk.d
    gw = 1.0 / e
    c = tau * gw
    a_t = bk.a - bk.seg_outer(c, bk.b, bk.b)
    f1_t = bk.f1 - bk.seg_outer(c, bk.b, bk.f2)
    p1, logdet1 = _factor(a_t, lamb)
    ap = a_t @ p1
    s11 = a_t - ap @ a_t
    h1 = f1_t - ap @ f1_t
    pb = bk.rows_times(bk.b, p1)
    h = gw[:, None] * (bk.f2 - bk.rows_times(pb, f1_t))
    s_diag = gw * bk.d - gw**2 * np.einsum("ja,ja->j", bk.b, pb)
    k = f1_t.shape[2]
    pf = (p1 @ f1_t).reshape(-1, k)
    m = (bk.f2 * c[:, None]).T @ bk.f2 + f1_t.reshape(-1, k).T @ pf
    logdet = float(np.log(e).sum() + logdet1.sum())
    return _Eliminated(lamb, tau, gw, c, a_t, f1_t, p1, ap, s11, h1, pb, h, s_diag, logdet, m)


def _lam_t_times(lamb: np.ndarray, x: np.ndarray, q: int) -> np.ndarray:
    """``Λb' x`` for one group's ``Λb = blockdiag(L, diag(s))`` (w × w): ``L'`` on the
    first ``q`` rows, the rest scaled (no product with the zeros)."""
    out = np.empty(x.shape)
    out[:q] = lamb[:q, :q].T @ x[:q]
    out[q:] = np.diagonal(lamb)[q:, None] * x[q:]
    return out


def _lam_times(lamb: np.ndarray, x: np.ndarray, q: int) -> np.ndarray:
    """``Λb x`` for one group's ``Λb`` (:func:`_lam_t_times`)."""
    out = np.empty(x.shape)
    out[:q] = lamb[:q, :q] @ x[:q]
    out[q:] = np.diagonal(lamb)[q:, None] * x[q:]
    return out


def _eliminate_wide(
    bk: BorderBucket, lam: np.ndarray, col: np.ndarray, q: int, full: bool
) -> _Eliminated:
    """:func:`_eliminate` of a bucket of wide borders, one group at a time: ``K1 = C C'``
    factored once; ``X = C⁻¹Λb'Ã`` and ``Y = C⁻¹Λb'B`` by triangular solves give
    ``diag(ÃP1Ã)`` and ``diag(B'P1B)`` as column sums of squares, ``P1 F̃1`` by two
    solves; ``B`` sparse where it is (:meth:`BorderBucket.b_rows`).  With ``full``,
    ``P1 = R R'`` (``R' = C⁻¹Λb'``), ``ÃP1 = X'R'``, ``S11 = Ã − X'X``; ``P1 B``
    (``pb``) is not formed (nothing reads it on this path).

    The loop over the bucket's groups is bounded by the data: every border slot past
    ``exog_re``'s ``q`` is a column used by some row of the group, and a row uses at
    most ``e`` of them (its entries in the border's components, one per indicator
    component), so a group here has at least ``(WIDE_W + 1 − q) / e`` rows and there
    are at most ``e n_rows / (WIDE_W + 1 − q)`` such groups (``n_rows / (129 − q)``
    for crossed indicators).  Each costs ``O(w³)`` (the Cholesky and the solves),
    against which the interpreter's cost per group is negligible."""
    import scipy.linalg  # only wide borders factor this way: most fits have none
    import scipy.sparse

    lamb, tau = bk.factors(lam, col, q)
    e = 1.0 + tau * bk.d
    gw = 1.0 / e
    c = tau * gw
    g, w = bk.bpos.shape
    k = bk.f1.shape[2]
    starts, counts = bk.runs()
    a_t = bk.a - bk.seg_outer(c, bk.b, bk.b)
    f1_t = bk.f1 - bk.seg_outer(c, bk.b, bk.f2)
    s11 = np.zeros((g, w, w))
    h1 = np.empty((g, w, k))
    pf = np.empty((g, w, k))
    h = np.empty((bk.d.size, k))
    s_diag = np.empty(bk.d.size)
    logdet1 = np.empty(g)
    p1 = np.empty((g, w, w) if full else 0)
    ap = np.empty((g, w, w) if full else 0)
    root = np.empty((g, w, w) if full else 0)
    for gi in range(g):
        sl = slice(starts[gi], starts[gi] + counts[gi])
        lb, at = lamb[gi], a_t[gi]
        b_t = bk.b_rows(gi).T  # B_i (w × m_i)
        lta = _lam_t_times(lb, at, q)
        kmat = _lam_t_times(lb, lta.T, q) + np.eye(w)  # Λb'ÃΛb + I (Ã symmetric)
        chol = scipy.linalg.cholesky(kmat, lower=True)
        logdet1[gi] = 2.0 * np.log(np.diagonal(chol)).sum()
        ltb = _lam_t_times(lb, b_t.toarray() if scipy.sparse.issparse(b_t) else b_t, q)
        xy = scipy.linalg.solve_triangular(chol, np.hstack([lta, ltb]), lower=True)
        x, y = xy[:, :w], xy[:, w:]
        z = scipy.linalg.solve_triangular(chol, _lam_t_times(lb, f1_t[gi], q), lower=True)
        pf[gi] = _lam_times(lb, scipy.linalg.solve_triangular(chol, z, lower=True, trans="T"), q)
        h1[gi] = f1_t[gi] - at @ pf[gi]
        h[sl] = gw[sl, None] * (bk.f2[sl] - b_t.T @ pf[gi])
        s_diag[sl] = gw[sl] * bk.d[sl] - gw[sl] ** 2 * np.einsum("ja,ja->a", y, y)
        if full:
            rt = _lam_t_times(lb, np.eye(w), q)
            rt = scipy.linalg.solve_triangular(chol, rt, lower=True)  # R' = C⁻¹Λb'
            root[gi] = rt.T
            p1[gi] = _gram(rt)
            ap[gi] = x.T @ rt
            s11[gi] = at - _gram(x)
        else:
            s11[gi, :q, :q] = at[:q, :q] - x[:, :q].T @ x[:, :q]
            idx = np.arange(w)
            s11[gi, idx, idx] = np.diagonal(at) - np.einsum("ja,ja->a", x, x)
    m = (bk.f2 * c[:, None]).T @ bk.f2 + f1_t.reshape(-1, k).T @ pf.reshape(-1, k)
    logdet = float(np.log(e).sum() + logdet1.sum())
    if not full:
        return _Eliminated(
            lamb, tau, gw, c, a_t, f1_t, None, None, s11, h1, None, h, s_diag, logdet, m
        )
    return _Eliminated(
        lamb, tau, gw, c, a_t, f1_t, p1, ap, s11, h1, None, h, s_diag, logdet, m, root
    )


def _gram(x: np.ndarray) -> np.ndarray:
    """``x'x`` (symmetric: one triangle's BLAS product, then mirrored)."""
    import scipy.linalg  # only on the wide path

    upper = scipy.linalg.blas.dsyrk(1.0, x, trans=1)
    return np.triu(upper) + np.triu(upper, 1).T


def _root(a_t: np.ndarray, lamb: np.ndarray) -> np.ndarray:
    """``R`` (G, w, w) with ``R R' = P1 = Λb K1⁻¹ Λb'``: ``Λb C⁻ᵀ`` for ``K1 = C C'``."""
    g, w = a_t.shape[:2]
    if w == 0:
        return np.zeros((g, 0, 0))
    kmat = np.swapaxes(lamb, 1, 2) @ a_t @ lamb + np.eye(w)
    return lamb @ np.swapaxes(np.linalg.inv(np.linalg.cholesky(kmat)), 1, 2)


def _factor(a_t: np.ndarray, lamb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``P1 = Λb K1⁻¹ Λb'`` (G, w, w) and ``log|K1|`` (G,) for ``K1 = I + Λb'ÃΛb``."""
    g, w = a_t.shape[:2]
    if w == 0:
        return np.zeros((g, 0, 0)), np.zeros(g)
    lt = np.swapaxes(lamb, 1, 2)
    kmat = lt @ a_t @ lamb + np.eye(w)
    chol = np.linalg.cholesky(kmat)
    logdet = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
    return lamb @ np.linalg.inv(kmat) @ lt, logdet


@dataclass
class CrossedVC:
    """Per-group statistics with one diagonal block of variance-component slots and a
    dense border of varying width, in buckets of equal border width, with the kernels
    that evaluate them (module docstring).

    Attributes
    ----------
    buckets : list of BorderBucket
    q, k, r, n_groups : int
        ``exog_re`` columns, columns of ``[X y]``, padded random-design width, groups.
    slot_component : ndarray (r - q,) int64
        Component of each padded slot.
    diag_comps : tuple of int
        The components whose slots are the diagonal block.
    """

    buckets: list
    q: int
    k: int
    r: int
    n_groups: int
    slot_component: np.ndarray
    diag_comps: tuple

    @property
    def n_comp(self) -> int:
        return int(self.slot_component.max()) + 1 if self.slot_component.size else 0

    @classmethod
    def from_dense(cls, zz, zxy, q: int, slot_component, diag_comps) -> CrossedVC:
        """From padded statistics ``zz`` (G, r, r), ``zxy`` (G, r, k): a slot is used
        where its diagonal entry is not zero; ``diag_comps`` from
        :func:`diagonal_components`."""
        slot_component = np.asarray(slot_component, dtype=np.int64)
        g, r = zz.shape[:2]
        used = np.diagonal(zz[:, q:, q:], axis1=1, axis2=2) != 0  # (G, r - q)
        on_diag = np.isin(slot_component, np.asarray(diag_comps, dtype=np.int64))
        border = used & ~on_diag
        widths = q + border.sum(axis=1)
        buckets = []
        for w in np.unique(widths):
            gi = np.flatnonzero(widths == w)
            _, slot = np.nonzero(border[gi])
            bpos = np.concatenate(
                [np.broadcast_to(np.arange(q), (gi.size, q)), (slot + q).reshape(gi.size, -1)],
                axis=1,
            ).astype(np.int64)
            gl, dslot = np.nonzero(used[gi] & on_diag)
            pos = (dslot + q).astype(np.int64)
            gg = gi[gl]
            buckets.append(
                BorderBucket(
                    groups=gi.astype(np.int64),
                    a=zz[gi[:, None, None], bpos[:, :, None], bpos[:, None, :]],
                    f1=zxy[gi[:, None], bpos],
                    bpos=bpos,
                    group=gl.astype(np.int64),
                    pos=pos,
                    d=zz[gg, pos, pos],
                    b=zz[gg[:, None], bpos[gl], pos[:, None]].reshape(gl.size, int(w)),
                    f2=zxy[gg, pos],
                )
            )
        return cls(buckets, q, zxy.shape[2], r, g, slot_component, tuple(diag_comps))

    @classmethod
    def concatenate(cls, parts: list[CrossedVC], position: np.ndarray) -> CrossedVC:
        """Blocks of groups (one diagonal choice) as one, groups in sorted order: block
        ``b``'s group ``i`` goes to ``position[offset_b + i]``
        (:func:`~dmixed.stats.border_cov.concatenate_buckets`)."""
        first = parts[0]
        buckets = concatenate_buckets(
            [p.buckets for p in parts],
            [p.n_groups for p in parts],
            position,
            ("a", "f1", "bpos"),
            ("d", "b", "f2"),
        )
        n_groups = int(sum(p.n_groups for p in parts))
        return cls(
            buckets, first.q, first.k, first.r, n_groups, first.slot_component, first.diag_comps
        )

    @property
    def n_values(self) -> int:
        """float64 values held: per group ``w_i (w_i + k)``, per diagonal slot
        ``1 + w_i + k``."""
        return int(
            sum(bk.a.size + bk.f1.size + bk.d.size + bk.b.size + bk.f2.size for bk in self.buckets)
        )

    def to_slots(self) -> tuple[RaggedArrays, CrossSums]:
        """The statistics as every used slot's ragged entry and the co-occurrence sums
        (what saved statistics hold: :func:`~dmixed.stats.crossed_stats.buckets_to_slots`),
        with :attr:`diag_comps` as the sums' ``diagonal``."""
        ragged, cross = buckets_to_slots(
            self.buckets, self.q, self.k, self.n_groups, self.r, self.slot_component
        )
        cross.diagonal = tuple(int(c) for c in self.diag_comps)
        return ragged, cross

    def dense(self) -> tuple[np.ndarray, np.ndarray]:
        """The padded statistics ``zz`` (G, r, r) and ``zxy`` (G, r, k)."""
        zz = np.zeros((self.n_groups, self.r, self.r))
        zxy = np.zeros((self.n_groups, self.r, self.k))
        for bk in self.buckets:
            gi, bpos = bk.groups, bk.bpos
            zz[gi[:, None, None], bpos[:, :, None], bpos[:, None, :]] = bk.a
            zxy[gi[:, None], bpos] = bk.f1
            gg = gi[bk.group]
            zz[gg[:, None], bpos[bk.group], bk.pos[:, None]] = bk.b
            zz[gg[:, None], bk.pos[:, None], bpos[bk.group]] = bk.b
            zz[gg, bk.pos, bk.pos] = bk.d
            zxy[gg, bk.pos] = bk.f2
        return zz, zxy

    def columns(self, width: int) -> np.ndarray:
        """The column of a factor (or ``E_j``) of this ``width`` that each padded
        column maps to: itself, or ``q + l`` for the slots of component ``l``."""
        q = self.q
        if width == self.r:
            return np.arange(self.r)
        if width != q + self.n_comp:
            raise ValueError(f"a factor of width {width} for a design of width {self.r}")
        return np.concatenate([np.arange(q), q + self.slot_component])

    # -- the kernels ----------------------------------------------------------------

    def step(self, lam: np.ndarray) -> StepSums:
        """Contributions to ℓ and its score (only the ``exog_re`` block and the
        diagonal of ``s`` are filled: all that the objective reads)."""
        q, k, width = self.q, self.k, lam.shape[0]
        col = self.columns(width)
        n_vc = width - q
        s = np.zeros((width, width))
        s_vc = np.zeros(n_vc)
        t_re = np.zeros((q, q, k, k))
        t_vc = np.zeros((n_vc, k, k))
        logdet, m = 0.0, np.zeros((k, k))
        for bk in self.buckets:
            el = _eliminate(bk, lam, col, q, full=False)
            logdet += el.logdet
            m += el.m
            s[:q, :q] += el.s11[:, :q, :q].sum(axis=0)
            hq = el.h1[:, :q].reshape(bk.n_groups, q * k)
            t_re += (hq.T @ hq).reshape(q, k, q, k).transpose(0, 2, 1, 3)
            idx_b = col[bk.bpos[:, q:]].reshape(-1) - q
            idx_d = col[bk.pos] - q
            s_vc += np.bincount(
                idx_b, np.diagonal(el.s11, axis1=1, axis2=2)[:, q:].reshape(-1), n_vc
            )
            s_vc += np.bincount(idx_d, el.s_diag, n_vc)
            t_vc += _outer_by(idx_b, el.h1[:, q:].reshape(-1, k), n_vc)
            t_vc += _outer_by(idx_d, el.h, n_vc)
        idx = q + np.arange(n_vc)
        s[idx, idx] = s_vc
        return StepSums(logdet, 0.5 * (m + m.T), s, t_re, t_vc, np.zeros((k, k)))

    def random_effects(self, lam: np.ndarray, w: np.ndarray) -> tuple[RaggedBlup, BorderCov]:
        """BLUPs and their conditional covariances relative to σ², unpadded
        (:class:`~dmixed.stats.blup_cov.RaggedBlup`,
        :class:`~dmixed.stats.border_cov.BorderCov`, read as the dense design's (G, r)
        and (G, r, r)): ``P = Λ K⁻¹ Λ'`` is ``P1 = R R'`` on the border, ``−c_a P1 b_a``
        between the border and slot ``a``, ``diag(c) + (c B')' P1 (c B')`` on the
        diagonal slots, so ``W`` has the rows ``R`` and ``w_a = −c_a R' b_a``, and
        ``δ_a = c_a``; a slot a group does not use keeps its prior variance."""
        q = self.q
        col = self.columns(lam.shape[0])
        prior = np.diagonal(lam)[col] ** 2
        psi = lam[:q, :q] @ lam[:q, :q].T
        re = np.zeros((self.n_groups, q))
        slot_group, slot_pos, slot_value, cov_buckets = [], [], [], []
        for bk in self.buckets:
            el = _eliminate(bk, lam, col, q)
            u1 = el.h1 @ w
            re[bk.groups] = u1[:, :q] @ psi.T
            slot_group += [np.repeat(bk.groups, bk.bpos.shape[1] - q), bk.groups[bk.group]]
            slot_pos += [bk.bpos[:, q:].reshape(-1), bk.pos]
            slot_value += [(prior[bk.bpos[:, q:]] * u1[:, q:]).reshape(-1), el.tau * (el.h @ w)]
            root = _root(el.a_t, el.lamb) if el.root is None else el.root
            w_rows = -el.c[:, None] * bk.rows_times(bk.b, root)
            cov_buckets.append(
                CovBucket(bk.groups, root, bk.bpos, bk.group, bk.pos, w_rows, el.c.copy())
            )
        group, pos = np.concatenate(slot_group), np.concatenate(slot_pos)
        order = np.argsort(group * self.r + pos, kind="stable")
        value = np.concatenate(slot_value)[order]
        blup = RaggedBlup(re, group[order], pos[order], value, self.r)
        return blup, BorderCov(cov_buckets, q, self.n_groups, prior[q:])

    def moments(self) -> MomentSums:
        """The moment sums in the one-slot-per-component coordinates (the entries that
        :func:`dmixed.fit.start.moment_start` reads against that basis)."""
        q, k, d = self.q, self.k, self.n_comp
        rr = q + d
        col = self.columns(rr)
        zz = np.zeros((rr, rr))
        z4 = np.zeros((rr, rr, rr, rr))
        zxy4 = np.zeros((rr, k, rr, k))
        zxy = np.zeros((rr, k))
        cross = np.zeros((d, d))
        for bk in self.buckets:
            a_q, f_q = bk.a[:, :q, :q], bk.f1[:, :q]
            zz[:q, :q] += a_q.sum(axis=0)
            z4[:q, :q, :q, :q] += np.einsum("gbc,gda->bcda", a_q, a_q)
            zxy4[:q, :, :q, :] += np.einsum("gax,gby->axby", f_q, f_q)
            zxy[:q] += f_q.sum(axis=0)
            # every slot (border and diagonal): its diagonal, its row against exog_re
            # and against the other slots, its row of Z'[X y]
            idx_b = col[bk.bpos[:, q:]] - q  # (G_w, n_b)
            idx_d = col[bk.pos] - q
            n_b = idx_b.size
            slot_idx = np.concatenate([idx_b.reshape(-1), idx_d])
            dia = np.concatenate([np.diagonal(bk.a, axis1=1, axis2=2)[:, q:].reshape(-1), bk.d])
            row_q = np.concatenate([bk.a[:, q:, :q].reshape(n_b, q), bk.b[:, :q]])
            f = np.concatenate([bk.f1[:, q:].reshape(n_b, k), bk.f2])
            zz[q + np.arange(d), q + np.arange(d)] += np.bincount(slot_idx, dia, d)
            for ell in range(d):
                sel = slot_idx == ell
                j = q + ell
                zz[j, :q] += row_q[sel].sum(axis=0)
                bb = row_q[sel].T @ row_q[sel]
                z4[j, :q, :q, j] += bb
                z4[:q, j, j, :q] += bb
                zxy4[j, :, j, :] += f[sel].T @ f[sel]
                zxy[j] += f[sel].sum(axis=0)
            # Σ ZZ[s, t]² over pairs of slots of components (l, l')
            bb2 = bk.a[:, q:, q:] ** 2
            np.add.at(cross, (idx_b[:, :, None], idx_b[:, None, :]), bb2)
            bd2 = bk.b[:, q:] ** 2  # (J, n_b)
            pair = (idx_d[:, None], idx_b[bk.group])
            np.add.at(cross, pair, bd2)
            np.add.at(cross, pair[::-1], bd2)
            np.add.at(cross, (idx_d, idx_d), bk.d**2)
        zz[:q, q:] = zz[q:, :q].T
        vc = q + np.arange(d)
        z4[vc[:, None], vc[None, :], vc[None, :], vc[:, None]] += cross
        return MomentSums(zz, z4, zxy4, self.n_groups, zxy)

    def hessian(self, lam: np.ndarray, basis: np.ndarray, w: np.ndarray) -> HessianSums:
        """Contributions to the Hessian sums (:class:`~dmixed.kernels.HessianSums`)."""
        col = self.columns(lam.shape[0])
        out = HessianSums.zeros(basis.shape[0], self.k - 1)
        for bk in self.buckets:
            el = _eliminate(bk, lam, col, self.q)
            out = out + _bucket_hessian(bk, el, basis, col, w, self.q)
        return out


def _times_e(x: np.ndarray, eq: np.ndarray, e_slot: np.ndarray, q: int) -> np.ndarray:
    """``x E_j`` (m, G, a, w) for every ``j``: x (G, a, w), ``E_j`` on the border the
    block ``eq[j]`` (q × q) on ``exog_re`` and ``diag(e_slot[j, g])`` on the slots
    (no product with the zeros)."""
    out = np.empty((eq.shape[0],) + x.shape)
    out[..., :q] = x[None, :, :, :q] @ eq[:, None]
    out[..., q:] = x[None, :, :, q:] * e_slot[:, :, None, :]
    return out


def _outer_by(index: np.ndarray, h: np.ndarray, n: int) -> np.ndarray:
    """``Σ_{a: index_a = l} h_a h_a'`` for each ``l < n`` (n, k, k)."""
    k = h.shape[1]
    out = np.zeros((n, k, k))
    if index.size == 0:
        return out
    for ell in np.unique(index):
        hl = h[index == ell]
        out[ell] = hl.T @ hl
    return out


def _bucket_hessian(bk: BorderBucket, el: _Eliminated, basis, col, wv, q: int) -> HessianSums:
    """The Hessian sums of one bucket through ``S = Δ + W C W'`` (module docstring):
    per group ``2w × 2w`` products, no ``r × r`` matrix.  ``E_j`` is ``Eb_j`` on the
    border (per group: the ``exog_re`` block and the border slots' components) and
    ``ed_j`` on the diagonal slots; every pair ``(j, k)`` is one contraction over the
    groups (or the slots) of per-``j`` arrays."""
    m, p = basis.shape[0], wv.size - 1
    g, w = bk.bpos.shape
    eb = np.zeros((m, g, w, w))
    eb[:, :, :q, :q] = basis[:, None, :q, :q]
    cb = col[bk.bpos[:, q:]]
    idx = np.arange(q, w)
    eb[:, :, idx, idx] = basis[:, cb, cb]
    ed = basis[:, col[bk.pos], col[bk.pos]]  # (m, J)
    u1, g1 = el.h1 @ wv, el.h1[:, :, :p]
    u2, g2 = el.h @ wv, el.h[:, :p]
    gw, b, a_t = el.gw, bk.b, el.a_t
    assert el.ap is not None and el.p1 is not None
    gd = gw * bk.d
    if el.root is None:
        c = c_matrix(el.a_t, el.ap, el.p1)
    else:  # −ÃP1Ã is S11 − Ã, already formed
        c = np.empty((g, 2 * w, 2 * w))
        c[:, :w, :w] = el.s11 - a_t
        c[:, :w, w:] = np.eye(w) - el.ap
        c[:, w:, :w] = np.eye(w) - np.swapaxes(el.ap, 1, 2)
        c[:, w:, w:] = -el.p1
    eu = np.einsum("jgab,gb->jga", eb, u1)  # E_j u on the border
    eg = eb @ g1  # E_j G on the border (m, G, w, p)
    eq, e_slot = basis[:, :q, :q], eb[:, :, idx, idx]  # E_j's exog_re block, its slots
    # C Ω_j (Ω_j = W'E_jW = blockdiag(E_j on the border, B'diag(ed_j g²)B)): the
    # border's columns are C's scaled (E_j is diagonal past exog_re's block)
    cw = np.zeros((m, g, 2 * w, 2 * w))
    cw[..., :w] = _times_e(c[:, :, :w], eq, e_slot, q)
    wu = np.zeros((m, g, 2 * w))  # W'E_j u
    wu[:, :, :w] = eu
    wg = np.zeros((m, g, 2 * w, p))  # W'E_j G
    wg[:, :, :w] = eg
    starts, counts = bk.runs()
    for j in np.flatnonzero(ed.any(axis=1)):
        cw[j, :, :, w:] = c[:, :, w:] @ bk.seg_outer(ed[j] * gw**2, b, b)
        wu[j, :, w:] = segment_sum((ed[j] * gw * u2)[:, None] * b, starts, counts)
        wg[j, :, w:] = bk.seg_outer(ed[j] * gw, b, g2)
    ae = _times_e(a_t, eq, e_slot, q)  # Ã E_j
    c_eb = _times_e(c[:, :w, :w], eq, e_slot, q)  # C11 E_k
    kappa = gw**2 * gd * np.einsum("ja,ja->j", bk.rows_times(b, c[:, w:, w:]), b)
    g2g2 = (g2[:, :, None] * g2[:, None, :]).reshape(-1, p * p)  # (J, p²)
    ee = ed[:, None, :] * ed[None, :, :]  # (m, m, J)
    out = HessianSums(
        _trace_pairs(ae, ae) + ee @ gd**2 + 2.0 * _trace_pairs(ae, c_eb) + _trace_pairs(cw, cw),
        _dot_pairs(eu, np.einsum("gab,kgb->kga", a_t, eu))
        + ee @ (gd * u2**2)
        + _dot_pairs(wu, np.einsum("gab,kgb->kga", c, wu)),
        np.einsum("ga,jga->j", u1, eu) + ed @ u2**2,
        np.einsum("gap,jga->jp", g1, eu) + (ed * u2) @ g2,
        np.einsum("gap,jgaz->jpz", g1, eg) + (ed @ g2g2).reshape(m, p, p),
        2.0
        * (
            _gram_pairs(eg, a_t @ eg)
            + (ee @ (gd[:, None] * g2g2)).reshape(m, m, p, p)
            + _gram_pairs(wg, c @ wg)
        ),
    )
    # the pairs' cross term 2 tr(C Φ_jk) on the slots: Σ_a ed_j ed_k κ_a
    out.tr_ss += 2.0 * (ee @ kappa)
    return out


def _trace_pairs(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``Σ_g tr(x_j[g] y_k[g])`` for every pair (m, m): x, y (m, G, a, b) and (m, G, b, a)."""
    m = x.shape[0]
    return x.reshape(m, -1) @ np.swapaxes(y, -1, -2).reshape(m, -1).T


def _dot_pairs(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``Σ_g x_j[g]·y_k[g]`` for every pair (m, m): x, y (m, G, a)."""
    m = x.shape[0]
    return x.reshape(m, -1) @ y.reshape(m, -1).T


def _gram_pairs(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``Σ_g x_j[g]' y_k[g]`` for every pair (m, m, p, p): x, y (m, G, a, p)."""
    m, p = x.shape[0], x.shape[-1]
    xt = np.moveaxis(x, -1, 1).reshape(m * p, -1)  # rows (j, p), columns (g, a)
    yt = np.moveaxis(y, -1, 1).reshape(m * p, -1)
    return (xt @ yt.T).reshape(m, p, m, p).transpose(0, 2, 1, 3)
