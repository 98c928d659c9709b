"""BLUPs and their conditional covariances with the variance-component slots ragged.

:class:`RaggedBlup` keeps each group's ``exog_re`` BLUPs and one value per slot it uses.

Where the variance components are held structured (:mod:`dmixed.kernels.vc_blocks`),
each group's ``P_i = Λ K_i⁻¹ Λ'`` over its random design ``[exog_re, slots]`` is a
rank-``q`` matrix plus a diagonal::

    P_i = W_i W_i' + diag(δ_i),   W_i = [[R_i], [w_a]_a],   δ_i = [0, …, 0, δ_a …]

with ``R_i R_i' = P1_i`` (q × q) on ``exog_re``, one row ``w_a`` (q,) and one entry
``δ_a`` per slot the group uses, and ``w_a = 0``, ``δ_a = τ*_l`` (the prior) on a slot
it does not use.  :class:`RaggedCov` keeps ``R_i`` and the used slots' ``w_a``, ``δ_a``:
``O(G q² + J q)`` values instead of the padded ``G r²``, and gives a group's block, the
``exog_re`` variances or the padded array on demand.  Functions :func:`cov_block` and
:func:`cov_diagonal` read either form (a padded ndarray (G, r, r) as well).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

__all__ = [
    "RaggedBlup",
    "RaggedCov",
    "UnpaddedCov",
    "cov_block",
    "cov_diagonal",
    "cov_variances",
    "slots_in_sorted_order",
    "used_or_prior",
]


def placed(rows: np.ndarray, position: np.ndarray) -> np.ndarray:
    """``rows`` (blocks' groups, concatenated) moved to ``position`` (sorted group order)."""
    out = np.empty_like(rows)
    out[position] = rows
    return out


class Padded:
    """Ragged per-group values that numpy reads as their padded array (``dense()``)."""

    def dense(self) -> np.ndarray:
        raise NotImplementedError

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self.dense()
        return out if dtype is None else out.astype(dtype)


class UnpaddedCov(Padded):
    """Conditional covariances held unpadded: a group's block and the ``exog_re``
    variances read without forming the padded array (:class:`RaggedCov`,
    ``border_cov.BorderCov``)."""

    def block(self, gi: int, pos) -> np.ndarray:
        """Group ``gi``'s covariance between the padded columns ``pos`` (n × n)."""
        raise NotImplementedError

    def re_diagonal(self) -> np.ndarray:
        """The ``exog_re`` variances (G, q)."""
        raise NotImplementedError

    def variances(self, group: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """The variances of padded columns ``pos`` of groups ``group`` (pairs, (m,))."""
        raise NotImplementedError


@dataclass
class RaggedCov(UnpaddedCov):
    """Per-group conditional covariances ``W_i W_i' + diag(δ_i)`` (module docstring).

    Attributes
    ----------
    root : ndarray (G, q, q)
        ``R_i``, the ``exog_re`` rows of ``W_i``.
    group, pos : ndarray (J,) int64
        Each used slot's group and column in the padded design (sorted by group, then
        column).
    w : ndarray (J, q)
        The slot's row of ``W_i``.
    delta : ndarray (J,)
        The slot's diagonal term.
    prior : ndarray (r − q,)
        The variance of each padded slot in a group that does not use it.
    """

    root: np.ndarray
    group: np.ndarray
    pos: np.ndarray
    w: np.ndarray
    delta: np.ndarray
    prior: np.ndarray

    @property
    def q(self) -> int:
        return self.root.shape[1]

    @property
    def shape(self) -> tuple[int, int, int]:
        """The padded array's shape (G, r, r)."""
        r = self.q + self.prior.size
        return (self.root.shape[0], r, r)

    # -- arithmetic on the whole ---------------------------------------------------

    def __mul__(self, factor: float) -> RaggedCov:
        """The covariances times a positive scalar (σ̂²)."""
        root = np.sqrt(factor)
        return replace(
            self,
            root=self.root * root,
            w=self.w * root,
            delta=self.delta * factor,
            prior=self.prior * factor,
        )

    __rmul__ = __mul__

    def transformed(self, inv: np.ndarray, slot_scales: np.ndarray) -> RaggedCov:
        """``T P_i T'`` for ``T = blockdiag(inv, diag(1/slot_scales))`` (the map of
        :meth:`~dmixed.stats.Standardization.blups_from_std`)."""
        s = slot_scales[self.pos - self.q]
        return replace(
            self,
            root=np.matmul(inv, self.root),
            w=self.w / s[:, None],
            delta=self.delta / s**2,
            prior=self.prior / slot_scales**2,
        )

    # -- reading -------------------------------------------------------------------

    def _rows(self, gi: int) -> slice:
        lo, hi = np.searchsorted(self.group, [gi, gi + 1])
        return slice(int(lo), int(hi))

    def block(self, gi: int, pos) -> np.ndarray:
        """Group ``gi``'s covariance between the padded columns ``pos`` (n × n)."""
        pos = np.asarray(pos, dtype=np.int64)
        q = self.q
        rows = self._rows(gi)
        used = self.pos[rows]
        fac = np.zeros((pos.size, q))
        diag = np.zeros(pos.size)
        on_re = pos < q
        fac[on_re] = self.root[gi][pos[on_re]]
        slot = ~on_re
        at = np.searchsorted(used, pos[slot])
        at = np.minimum(at, max(used.size - 1, 0))
        found = used[at] == pos[slot] if used.size else np.zeros(at.size, dtype=bool)
        idx = np.flatnonzero(slot)
        fac[idx[found]] = self.w[rows][at[found]]
        diag[idx[found]] = self.delta[rows][at[found]]
        diag[idx[~found]] = self.prior[pos[slot][~found] - q]
        out = fac @ fac.T
        out[np.diag_indices(pos.size)] += diag
        return out

    def re_diagonal(self) -> np.ndarray:
        """The ``exog_re`` variances (G, q): the diagonals of ``R_i R_i'``."""
        return np.einsum("gab,gab->ga", self.root, self.root)

    def variances(self, group: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """The variances of padded columns ``pos`` of groups ``group`` (pairs, (m,)):
        ``|R_i row|²`` on ``exog_re``, ``|w_a|² + δ_a`` on a used slot, the prior on
        another."""
        group, pos = np.asarray(group, dtype=np.int64), np.asarray(pos, dtype=np.int64)
        q = self.q
        out = np.empty(group.shape)
        on_re = pos < q
        rows = self.root[group[on_re], pos[on_re]]
        out[on_re] = np.einsum("ja,ja->j", rows, rows)
        slot = ~on_re
        out[slot] = used_or_prior(
            self.group * self.shape[1] + self.pos,  # sorted (group, column)
            self.slot_variances(),
            group[slot] * self.shape[1] + pos[slot],
            self.prior[pos[slot] - q],
        )
        return out

    def slot_variances(self) -> np.ndarray:
        """The used slots' variances (J,): ``|w_a|² + δ_a``."""
        return np.einsum("ja,ja->j", self.w, self.w) + self.delta

    def dense(self) -> np.ndarray:
        """The padded array (G, r, r) (as the dense engine gives it)."""
        g, r, _ = self.shape
        q = self.q
        fac = np.zeros((g, r, q))
        fac[:, :q] = self.root
        fac[self.group, self.pos] = self.w
        out = np.matmul(fac, np.swapaxes(fac, 1, 2))
        diag = np.zeros((g, r))
        diag[:, q:] = self.prior
        diag[self.group, self.pos] = self.delta
        idx = np.arange(r)
        out[:, idx, idx] += diag
        return out

    # -- assembling ----------------------------------------------------------------

    @classmethod
    def concatenate(cls, parts: list[RaggedCov], position: np.ndarray) -> RaggedCov:
        """Blocks of groups as one, groups in sorted order: block ``b``'s group ``i``
        goes to ``position[offset_b + i]``."""
        group, order = slots_in_sorted_order(
            [p.group for p in parts],
            [p.root.shape[0] for p in parts],
            [p.pos for p in parts],
            position,
            parts[0].shape[1],
        )
        return cls(
            root=placed(np.concatenate([p.root for p in parts]), position),
            group=group,
            pos=np.concatenate([p.pos for p in parts])[order],
            w=np.concatenate([p.w for p in parts])[order],
            delta=np.concatenate([p.delta for p in parts])[order],
            prior=parts[0].prior,
        )


@dataclass
class RaggedBlup(Padded):
    """Per-group BLUPs with the variance-component slots ragged: ``re`` (G, q) on
    ``exog_re`` and one ``value`` per used slot (``group``, ``pos`` as in
    :class:`RaggedCov`); a slot a group does not use has BLUP 0.

    Reads as the padded array (G, r): ``blup[rows, cols]`` with numpy's indexing rules for
    an int, a slice or an integer array on each axis (no boolean masks, no ``...``), and
    ``np.asarray(blup)``.
    """

    re: np.ndarray
    group: np.ndarray
    pos: np.ndarray
    value: np.ndarray
    r: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.re.shape[0], self.r)

    def transformed(self, inv: np.ndarray, slot_scales: np.ndarray, y_scale: float) -> RaggedBlup:
        """``y_scale · blockdiag(inv, diag(1/slot_scales)) b`` per group (the map of
        :meth:`~dmixed.stats.Standardization.blups_from_std`)."""
        q = self.re.shape[1]
        return replace(
            self,
            re=y_scale * (self.re @ inv.T),
            value=y_scale * self.value / slot_scales[self.pos - q],
        )

    def __getitem__(self, key) -> np.ndarray:
        rows, cols = key
        g, q = self.re.shape
        if isinstance(cols, slice):
            start, stop, step = cols.indices(self.r)
            if step == 1 and stop <= q:
                return self.re[rows, start:stop]
            c_idx = np.arange(start, stop, step)
        else:
            c_idx = np.asarray(cols, dtype=np.int64)
        r_idx = np.arange(g)[rows] if isinstance(rows, slice) else np.asarray(rows)
        outer = (isinstance(rows, slice) and c_idx.ndim) or (isinstance(cols, slice) and r_idx.ndim)
        if outer:
            r_idx = r_idx[:, None]
        r_idx, c_idx = np.broadcast_arrays(r_idx, c_idx)
        out = np.zeros(r_idx.shape)
        on_re = c_idx < q
        out[on_re] = self.re[r_idx[on_re], c_idx[on_re]]
        keys = self.group * self.r + self.pos  # sorted
        want = r_idx[~on_re] * self.r + c_idx[~on_re]
        at = np.minimum(np.searchsorted(keys, want), max(keys.size - 1, 0))
        found = keys[at] == want if keys.size else np.zeros(want.shape, dtype=bool)
        out[~on_re] = np.where(found, self.value[at] if keys.size else 0.0, 0.0)
        return out

    def dense(self) -> np.ndarray:
        """The padded array (G, r)."""
        out = np.zeros(self.shape)
        out[:, : self.re.shape[1]] = self.re
        out[self.group, self.pos] = self.value
        return out

    @classmethod
    def concatenate(cls, parts: list[RaggedBlup], position: np.ndarray) -> RaggedBlup:
        """Blocks of groups as one, groups in sorted order (as
        :meth:`RaggedCov.concatenate`)."""
        group, order = slots_in_sorted_order(
            [p.group for p in parts],
            [p.re.shape[0] for p in parts],
            [p.pos for p in parts],
            position,
            parts[0].r,
        )
        return cls(
            re=placed(np.concatenate([p.re for p in parts]), position),
            group=group,
            pos=np.concatenate([p.pos for p in parts])[order],
            value=np.concatenate([p.value for p in parts])[order],
            r=parts[0].r,
        )


def slots_in_sorted_order(
    groups: list[np.ndarray], n_groups: list[int], pos: list[np.ndarray], position, r: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-slot arrays of blocks of groups, put together: block ``b`` has ``n_groups[b]``
    groups, its slots' groups ``groups[b]`` and padded columns ``pos[b]``, and its group
    ``i`` goes to ``position[offset_b + i]``.  Returns each slot's group in sorted order
    and the order that sorts the concatenated slots by (group, column)."""
    starts = np.cumsum([0] + list(n_groups))[:-1]
    group = position[np.concatenate([g + s for g, s in zip(groups, starts, strict=True)])]
    order = np.argsort(group * r + np.concatenate(pos), kind="stable")
    return group[order], order


def used_or_prior(
    keys: np.ndarray, values: np.ndarray, want: np.ndarray, prior: np.ndarray | float
) -> np.ndarray:
    """Values looked up by key, a prior value where a key is absent.

    Parameters
    ----------
    keys : ndarray of int64 (m,)
        Sorted keys (``group · r + column`` of each entry used), no repeats.
    values : ndarray of float64 (m,)
        The value of each key.
    want : ndarray of int64 (n,)
        The keys looked up.
    prior : ndarray of float64 (n,) or float
        What an absent key gets (one per ``want``, or one for all).

    Returns
    -------
    ndarray of float64 (n,)
        ``values`` at ``want`` where ``keys`` holds it, ``prior`` elsewhere (a binary
        search: O(n log m), no loop over groups).
    """
    if not keys.size:
        return np.broadcast_to(np.asarray(prior, dtype=np.float64), want.shape).copy()
    at = np.minimum(np.searchsorted(keys, want), keys.size - 1)
    return np.where(keys[at] == want, values[at], prior)


def cov_variances(cov: UnpaddedCov | np.ndarray, group: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """The conditional variances of some random effects, without a loop over groups.

    Parameters
    ----------
    cov : UnpaddedCov or ndarray (G, r, r)
        The random effects' conditional covariances, in either form (a padded array:
        ``σ̂² Λ K_i⁻¹ Λ'`` of each group, in the response's units squared).
    group : ndarray of int (m,)
        Each pair's group, by position in the fitted groups.
    pos : ndarray of int (m,)
        Each pair's padded column, 0 ≤ ``pos`` < r.

    Returns
    -------
    ndarray of float64 (m,)
        The diagonal entry of :func:`cov_block` at each (group, column) pair.
    """
    if isinstance(cov, UnpaddedCov):
        return cov.variances(group, pos)
    return np.asarray(cov)[np.asarray(group, dtype=np.int64), pos, pos]


def cov_block(cov, gi: int, pos) -> np.ndarray:
    """Group ``gi``'s covariance between the padded columns ``pos``, from a
    :class:`RaggedCov` (or another unpadded form with ``block``: ``border_cov.BorderCov``)
    or a padded ndarray (G, r, r)."""
    if isinstance(cov, UnpaddedCov):
        return cov.block(gi, pos)
    return np.asarray(cov[gi])[np.ix_(pos, pos)]


def cov_diagonal(cov, k: int) -> np.ndarray:
    """The variances of the first ``k`` padded columns (G, k), from either form."""
    if isinstance(cov, UnpaddedCov):
        return cov.re_diagonal()[:, :k]
    return np.diagonal(cov, axis1=1, axis2=2)[:, :k]
