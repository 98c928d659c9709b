"""Conditional covariances of the BLUPs with crossed variance components, unpadded.

Where the components share rows (:mod:`dmixed.kernels.vc_border`), group ``i``'s
``P_i = Λ K_i⁻¹ Λ'`` over its columns ``[border, diagonal slots]`` is, as in
:mod:`dmixed.stats.blup_cov`, a low-rank matrix plus a diagonal::

    P_i = W_i W_i' + diag(δ_i),   W_i = [[R_i], [w_a]_a],   δ_i = [0, …, 0, δ_a …]

but of rank ``w_i``, the group's border width (``exog_re`` and the group's slots of the
other components): ``R_i R_i' = P1_i`` (w_i × w_i) on the border, one row ``w_a``
(w_i,) and one ``δ_a`` per diagonal slot.  :class:`BorderCov` keeps them in buckets of
equal border width (no padding to the widest group): ``O(Σ w_i² + Σ m_i w_i)`` values
instead of the padded ``G r²``, and gives a group's block, the ``exog_re`` variances or
the padded array on demand, as :class:`~dmixed.stats.blup_cov.RaggedCov` does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .blup_cov import UnpaddedCov, used_or_prior

__all__ = ["BorderCov", "CovBucket", "concatenate_buckets"]


def concatenate_buckets(
    parts: list[list], n_groups: list[int], position: np.ndarray, per_group, per_slot
) -> list:
    """Buckets of equal border width of several blocks of groups as one list, groups in
    sorted order: block ``b`` (``n_groups[b]`` groups, its buckets ``parts[b]``) has its
    group ``i`` at ``position[offset_b + i]``.

    Each bucket is a dataclass with ``groups`` (its groups' positions, ascending),
    ``bpos`` (G_w, w), the per-group arrays named ``per_group`` (first axis: its
    groups) and per diagonal slot ``group`` (index into the bucket), ``pos`` and the
    arrays named ``per_slot``; the buckets of one width are joined, their groups
    ascending and their slots sorted by (group, column) (:class:`CovBucket`,
    ``kernels.vc_border.BorderBucket``).
    """
    starts = np.cumsum([0, *n_groups])[:-1]
    by_width: dict[int, list] = {}
    for start, buckets in zip(starts, parts, strict=True):
        for bk in buckets:
            by_width.setdefault(bk.bpos.shape[1], []).append((int(start), bk))
    out = []
    for w in sorted(by_width):
        items = by_width[w]
        groups = np.concatenate([position[start + bk.groups] for start, bk in items])
        order = np.argsort(groups, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        firsts = np.cumsum([0] + [bk.groups.size for _, bk in items])[:-1]
        group = np.concatenate(
            [rank[first + bk.group] for first, (_, bk) in zip(firsts, items, strict=True)]
        )
        pos = np.concatenate([bk.pos for _, bk in items])
        slots = np.lexsort((pos, group))
        fields = {"groups": groups[order].astype(np.int64), "group": group[slots]}
        fields["pos"] = pos[slots]
        for name in per_group:
            fields[name] = np.concatenate([getattr(bk, name) for _, bk in items])[order]
        for name in per_slot:
            fields[name] = np.concatenate([getattr(bk, name) for _, bk in items])[slots]
        out.append(replace(items[0][1], **fields))
    return out


@dataclass
class CovBucket:
    """The groups of one border width ``w``.

    Attributes
    ----------
    groups : ndarray (G_w,) int64
        Positions of these groups among all groups.
    root : ndarray (G_w, w, w)
        ``R_i``: the border's rows of ``W_i``.
    bpos : ndarray (G_w, w) int64
        Padded column of each border column (``0..q-1`` first).
    group, pos : ndarray (J,) int64
        Each diagonal slot's group (index into this bucket) and padded column.
    w : ndarray (J, w)
        The diagonal slot's row of ``W_i``.
    delta : ndarray (J,)
        Its diagonal term.
    """

    groups: np.ndarray
    root: np.ndarray
    bpos: np.ndarray
    group: np.ndarray
    pos: np.ndarray
    w: np.ndarray
    delta: np.ndarray

    def scaled(self, rows: np.ndarray, border: np.ndarray, diag: np.ndarray) -> CovBucket:
        """``T W`` for ``T`` = ``rows`` (q × q) on ``exog_re``, and per column the
        factors ``border`` (G_w, w) and ``diag`` (J,) elsewhere; ``δ`` times ``diag²``."""
        q = rows.shape[0]
        root = self.root * border[:, :, None]
        root[:, :q] = np.matmul(rows, self.root[:, :q])
        return replace(self, root=root, w=self.w * diag[:, None], delta=self.delta * diag**2)


@dataclass
class BorderCov(UnpaddedCov):
    """Per-group conditional covariances ``W_i W_i' + diag(δ_i)`` (module docstring).

    Attributes
    ----------
    buckets : list of CovBucket
    q : int
        ``exog_re`` columns.
    n_groups : int
    prior : ndarray (r − q,)
        The variance of each padded slot in a group that does not use it.
    """

    buckets: list
    q: int
    n_groups: int
    prior: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        """The padded array's shape (G, r, r)."""
        r = self.q + self.prior.size
        return (self.n_groups, r, r)

    @classmethod
    def concatenate(cls, parts: list[BorderCov], position: np.ndarray) -> BorderCov:
        """Blocks of groups as one, groups in sorted order (as
        :meth:`~dmixed.stats.blup_cov.RaggedCov.concatenate`; :func:`concatenate_buckets`)."""
        buckets = concatenate_buckets(
            [p.buckets for p in parts],
            [p.n_groups for p in parts],
            position,
            ("root", "bpos"),
            ("w", "delta"),
        )
        n_groups = int(sum(p.n_groups for p in parts))
        return cls(buckets, parts[0].q, n_groups, parts[0].prior)

    def __mul__(self, factor: float) -> BorderCov:
        """The covariances times a positive scalar (σ̂²)."""
        root = np.sqrt(factor)
        q = self.q
        buckets = [
            b.scaled(root * np.eye(q), np.full(b.bpos.shape, root), np.full(b.pos.size, root))
            for b in self.buckets
        ]
        return replace(self, buckets=buckets, prior=self.prior * factor)

    __rmul__ = __mul__

    def transformed(self, inv: np.ndarray, slot_scales: np.ndarray) -> BorderCov:
        """``T P_i T'`` for ``T = blockdiag(inv, diag(1/slot_scales))`` (the map of
        :meth:`~dmixed.stats.Standardization.blups_from_std`)."""
        q = self.q
        factor = np.concatenate([np.ones(q), 1.0 / np.asarray(slot_scales, dtype=np.float64)])
        buckets = [b.scaled(inv, factor[b.bpos], factor[b.pos]) for b in self.buckets]
        return replace(self, buckets=buckets, prior=self.prior / slot_scales**2)

    def _find(self, gi: int) -> tuple[CovBucket, int]:
        for b in self.buckets:
            at = int(np.searchsorted(b.groups, gi))
            if at < b.groups.size and b.groups[at] == gi:
                return b, at
        raise IndexError(f"group {gi} out of range")

    def block(self, gi: int, pos) -> np.ndarray:
        """Group ``gi``'s covariance between the padded columns ``pos`` (n × n)."""
        pos = np.asarray(pos, dtype=np.int64)
        b, at = self._find(gi)
        rows = np.flatnonzero(b.group == at)
        cols = np.concatenate([b.bpos[at], b.pos[rows]])
        fac_all = np.concatenate([b.root[at], b.w[rows]])
        delta_all = np.concatenate([np.zeros(b.bpos.shape[1]), b.delta[rows]])
        order = np.argsort(cols)
        cols, fac_all, delta_all = cols[order], fac_all[order], delta_all[order]
        where = np.minimum(np.searchsorted(cols, pos), cols.size - 1)
        found = cols[where] == pos
        fac = np.where(found[:, None], fac_all[where], 0.0)
        diag = np.where(found, delta_all[where], 0.0)
        unused = ~found
        diag[unused] = self.prior[pos[unused] - self.q]
        out = fac @ fac.T
        out[np.diag_indices(pos.size)] += diag
        return out

    def re_diagonal(self) -> np.ndarray:
        """The ``exog_re`` variances (G, q): the diagonals of ``P1_i``'s first block."""
        out = np.zeros((self.n_groups, self.q))
        for b in self.buckets:
            out[b.groups] = np.einsum("gab,gab->ga", b.root[:, : self.q], b.root[:, : self.q])
        return out

    def variances(self, group: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """The variances of padded columns ``pos`` of groups ``group`` (pairs, (m,)):
        ``|R_i row|²`` on a border column, ``|w_a|² + δ_a`` on a diagonal slot, the
        prior on a slot the group does not use (one loop over the buckets, of distinct
        border widths)."""
        group, pos = np.asarray(group, dtype=np.int64), np.asarray(pos, dtype=np.int64)
        r = self.shape[1]
        keys, values = [], []
        for b in self.buckets:
            keys.append((b.groups[:, None] * r + b.bpos).ravel())
            values.append(np.einsum("gab,gab->ga", b.root, b.root).ravel())
            keys.append(b.groups[b.group] * r + b.pos)
            values.append(np.einsum("ja,ja->j", b.w, b.w) + b.delta)
        key = np.concatenate(keys) if keys else np.zeros(0, dtype=np.int64)
        value = np.concatenate(values) if values else np.zeros(0)
        order = np.argsort(key, kind="stable")
        prior = np.concatenate([np.zeros(self.q), self.prior])[pos]
        return used_or_prior(key[order], value[order], group * r + pos, prior)

    def dense(self) -> np.ndarray:
        """The padded array (G, r, r) (as the dense engine gives it)."""
        g, r, _ = self.shape
        out = np.zeros((g, r, r))
        idx = np.arange(self.q, r)
        out[:, idx, idx] = self.prior
        for b in self.buckets:
            fac = np.zeros((b.groups.size, r, b.root.shape[1]))
            fac[np.arange(b.groups.size)[:, None], b.bpos] = b.root
            fac[b.group, b.pos] = b.w
            block = np.matmul(fac, np.swapaxes(fac, 1, 2))
            unused = np.ones((b.groups.size, r), dtype=bool)
            unused[np.arange(b.groups.size)[:, None], b.bpos] = False
            unused[b.group, b.pos] = False
            diag = np.zeros((b.groups.size, r))
            diag[b.group, b.pos] = b.delta
            keep = np.diagonal(out[b.groups], axis1=1, axis2=2)
            diag[unused] = keep[unused]
            block[:, np.arange(r), np.arange(r)] += diag
            out[b.groups] = block
        return out
