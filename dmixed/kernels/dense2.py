"""The step and Hessian sums of two random-effect coordinates (``r = 2``) in a few
whole-block products, from per-group arrays made once per fit.

For ``r = 2`` every per-group value of :func:`~dmixed.kernels.conditionals.conditional`
is a rational function of ``B = ΛΛ'`` with one denominator (its ``_conditional_2``)::

    d = 1 + b00 u00 + 2 b01 u01 + b11 u11 + det(B) det(U)
    P = (B + det(B) adj(U)) / d,   S = (U + det(U) adj(B)) / d,
    H = (F + adj(B) adj(U) F) / d,   log|K| = log d

so that ``d`` and the numerators of ``S`` are one (4 × 5) × (5 × G) product with the
fixed rows ``[1, u00, u01, u11, det(U)]``; ``Σ ZXy'P ZXy = Σ (b00 T0 + b01 T1 + b11 T2
+ det(B) T3) / d`` one product of ``1/d`` with the fixed upper triangles of
``T0 = F0'F0``, ``T1 = F0'F1 + F1'F0``, ``T2 = F1'F1`` and ``T3 = F'adj(U)F``; and ``H``
one (2 × 4) × (4 × kG) product with the fixed ``[F; adj(U)F]``: a dozen calls of numpy
per step where the per-chunk path makes some fifty, for the same formulas (the sums
over groups in another order: they agree with
:func:`~dmixed.kernels.groups.step_contributions` to rounding).  The fixed rows hold
:func:`fixed_numbers` numbers per group.

Notation as in :mod:`dmixed.kernels`; nothing here knows the optimizer.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .conditionals import gram_rows
from .groups import HessianSums
from .hessian_moments import HessianMoments

__all__ = ["Dense2Statistics", "Dense2Step", "DenseStep", "fixed_numbers"]


@dataclass
class DenseStep:
    """The sums of one step at ``Λ`` over a block of ``r = 1`` or ``2`` coordinates
    (:class:`Dense2Step`, :class:`~dmixed.kernels.dense1.Dense1Step`).

    Attributes
    ----------
    logdet : float
        ``Σ_i log|K_i|``.
    m : ndarray (k, k)
        ``Σ_i ZXy_i'P_iZXy_i`` (symmetric).
    s : ndarray (r, r)
        ``Σ_i S_i``.
    gram : ndarray (r k, r k)
        ``Σ_i h_i h_i'`` of the rows ``h_i = vec(H_i)`` (``H_i[a, x]`` at ``a k + x``):
        ``t_re[a, b] = gram[a k:(a+1) k, b k:(b+1) k]`` of :class:`~dmixed.kernels.StepSums`.
    h : tuple of ndarray (r k, G_c)
        The rows ``H_i[a, x]`` over the groups of each chunk (what the Hessian sums
        read).
    s_pairs : tuple of ndarray (r (r + 1) / 2, G_c)
        ``S_i`` at (0, 0), and for ``r = 2`` (1, 0), (1, 1), over the groups of each chunk.
    """

    logdet: float
    m: np.ndarray
    s: np.ndarray
    gram: np.ndarray
    h: tuple[np.ndarray, ...]
    s_pairs: tuple[np.ndarray, ...]

    def hessian(self, basis: np.ndarray, w: np.ndarray) -> HessianSums:
        """The Hessian sums (:class:`~dmixed.kernels.HessianSums`) at this step's ``Λ``
        for the basis ``E_j`` (m, r, r) and ``w = [−β; 1]``, from the moments of
        :class:`~dmixed.kernels.hessian_moments.HessianMoments` added chunk by chunk."""
        moments = HessianMoments(self.s.shape[0], self.m.shape[0])
        for h, s_pairs in zip(self.h, self.s_pairs, strict=True):
            moments.add_pairs(s_pairs, h, w)  # u_i = H_i w in place of y's column
        return HessianSums(*moments.contract(basis))

    def moments(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For ``r = 2``, at ``w = [−β; 1]`` (``u_i = H_i w`` made per group, as
        :class:`~dmixed.kernels.hessian_moments.HessianMoments` makes it, with
        ``v_i = [G_i, u_i]``): the product of the rows ``[v; S pairs]`` with themselves
        (``V`` and ``A`` of the moments as its diagonal blocks) and the moments' ``C``
        (the product of the rows ``v S`` with ``v``), the chunks' sums added in order:
        the moments in fewer products, so to rounding
        (:func:`~dmixed.kernels.hessian_moments.full_sums` reads them)."""
        out = None
        for h, s_pairs in zip(self.h, self.s_pairs, strict=True):
            rk, g = h.shape
            buf = np.empty((4 * rk + 3, g))
            top = buf[: rk + 3]
            vr = buf[:rk]
            vr[...] = h
            vr.reshape(2, rk // 2, g)[:, -1] = np.matmul(w, h.reshape(2, rk // 2, g))
            top[rk:] = s_pairs
            np.multiply(vr[:, None], s_pairs[None], out=buf[rk + 3 :].reshape(rk, 3, g))
            va = gram_rows(top)
            c = buf[rk + 3 :] @ vr.T
            out = (va, c) if out is None else (out[0] + va, out[1] + c)
        assert out is not None
        return out


@dataclass
class Dense2Step(DenseStep):
    """:class:`DenseStep` of two coordinates (:meth:`Dense2Statistics.step`)."""


class Dense2Statistics:
    """The fixed per-group rows of a block of groups with ``r = 2``, chunk by chunk.

    Parameters
    ----------
    zz : ndarray (2, 2, G)
        Entry-major ``Z̃_i'Z̃_i`` (a chunk of :class:`~dmixed.kernels.StatsBlock`).
    zxy : ndarray (2, k, G)
        Entry-major ``Z̃_i'[X_i, y_i]``.
    """

    def __init__(self, zz: np.ndarray, zxy: np.ndarray) -> None:
        self._chunks = [_Dense2Chunk(zz, zxy)]
        self.k = zxy.shape[1]
        self.n_groups = zxy.shape[2]

    @classmethod
    def of_chunks(cls, chunks) -> Dense2Statistics:
        """The rows of every chunk ``(zz (2, 2, G_c), zxy (2, k, G_c))`` of a block
        (:meth:`~dmixed.kernels.StatsBlock.chunks`): each step's sums are the chunks'
        sums added in their order, as the per-chunk kernels add theirs."""
        chunks = list(chunks)
        out = cls(*chunks[0])
        out._chunks += [_Dense2Chunk(zz, zxy) for zz, zxy in chunks[1:]]
        out.n_groups = sum(c.n_groups for c in out._chunks)
        return out

    def value(self, lam: np.ndarray) -> tuple[float, np.ndarray]:
        """``(Σ_i log|K_i|, Σ_i ZXy_i'P_iZXy_i)`` at ``lam``: what ℓ alone needs (the
        same numbers as :meth:`step`'s)."""
        coef, c4, _ = _coefficients(lam)
        logdet, m = 0.0, None
        for chunk in self._chunks:
            _, more, _, more_m = chunk.sums(coef, c4)
            logdet += more
            m = more_m if m is None else m + more_m
        assert m is not None
        return logdet, m

    def step(self, lam: np.ndarray) -> Dense2Step:
        """The sums at the 2 × 2 factor ``lam`` (``B = ΛΛ'``, ``det(B) = det(Λ)²``)."""
        coef, c4, mix = _coefficients(lam)
        first, *rest = self._chunks
        logdet, m, s, gram, h, s_pairs = first.step(coef, c4, mix)
        if not rest:
            return Dense2Step(logdet, m, s, gram, (h,), (s_pairs,))
        hs, pairs = [h], [s_pairs]
        for chunk in rest:
            more = chunk.step(coef, c4, mix)
            logdet += more[0]
            m = m + more[1]
            s = s + more[2]
            gram = gram + more[3]
            hs.append(more[4])
            pairs.append(more[5])
        return Dense2Step(logdet, m, s, gram, tuple(hs), tuple(pairs))

    def hessian(self, step: Dense2Step, basis: np.ndarray, w: np.ndarray) -> HessianSums:
        """The Hessian sums (:class:`~dmixed.kernels.HessianSums`) at the step's ``Λ``
        for the basis ``E_j`` (m, 2, 2) and ``w = [−β; 1]``, from the moments of
        :class:`~dmixed.kernels.hessian_moments.HessianMoments` added chunk by chunk."""
        return step.hessian(basis, w)


def fixed_numbers(k: int) -> int:
    """The numbers :class:`Dense2Statistics` holds per group for ``k = p + 1``:
    ``[1, u00, u01, u11, det(U)]``, ``[F; adj(U)F]`` and four upper triangles."""
    return 5 + 4 * k + 2 * k * (k + 1)


def _coefficients(lam: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At ``B = ΛΛ'`` (in floats): the (4 × 5) rows that map ``[1, u00, u01, u11,
    det(U)]`` to the numerators of ``S`` at (0, 0), (1, 0), (1, 1) and ``d``; the
    weights ``[b00, b01, b11, det(B)]`` of the fixed products of ``_Dense2Chunk``
    (``d P`` in their terms); the ``adj(B)`` rows of ``H``'s numerators."""
    (l00, l01), (l10, l11) = lam.tolist()
    b00 = l00 * l00 + l01 * l01
    b01 = l00 * l10 + l01 * l11
    b11 = l10 * l10 + l11 * l11
    det_l = l00 * l11 - l01 * l10
    det_b = det_l * det_l
    coef = np.array(
        [
            [0.0, 1.0, 0.0, 0.0, b11],  # S00·d = u00 + det(U) b11
            [0.0, 0.0, 1.0, 0.0, -b01],  # S01·d = u01 − det(U) b01
            [0.0, 0.0, 0.0, 1.0, b00],  # S11·d = u11 + det(U) b00
            [1.0, b00, 2.0 * b01, b11, det_b],  # d
        ]
    )
    # H = (F + adj(B) adj(U) F) / d: adj(B) = [[b11, −b01], [−b01, b00]]
    mix = np.array([[1.0, 0.0, b11, -b01], [0.0, 1.0, -b01, b00]])
    return coef, np.array([b00, b01, b11, det_b]), mix


@functools.lru_cache(maxsize=16)
def _triangle(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows and columns of the upper triangle of a ``k × k`` matrix
    (``np.triu_indices``) and the ``k × k`` positions of each square entry in it
    (exactly symmetric), made once per ``k`` (read-only)."""
    rows, cols = np.triu_indices(k)
    square = np.empty((k, k), dtype=np.intp)
    square[rows, cols] = square[cols, rows] = np.arange(rows.size)
    for a in (rows, cols, square):
        a.flags.writeable = False
    return rows, cols, square


class _Dense2Chunk:
    """The fixed rows of one chunk of groups (:class:`Dense2Statistics`)."""

    def __init__(self, zz: np.ndarray, zxy: np.ndarray) -> None:
        u00, u01, u11 = zz[0, 0], zz[0, 1], zz[1, 1]
        k, g = zxy.shape[1:]
        self.k = k
        self.n_groups = g
        # [1, u00, u01, u11, det(U)]: d and the numerators of S in one product
        urow = self._urow = np.empty((5, g))
        urow[0] = 1.0
        urow[1] = u00
        urow[2] = u01
        urow[3] = u11
        det_u = np.multiply(u00, u11, out=urow[4])
        det_u -= u01 * u01
        np.maximum(det_u, 0.0, out=det_u)  # as _conditional_2 clips it
        # [F0; F1; adj(U)F row 0; row 1] as (4, k G): H's numerators in one product
        fa = np.empty((4, k, g))
        fa[:2] = zxy
        np.multiply(u11, zxy[0], out=fa[2])
        fa[2] -= u01 * zxy[1]
        np.multiply(u00, zxy[1], out=fa[3])
        fa[3] -= u01 * zxy[0]
        self._fa = fa.reshape(4, k * g)
        # d P = B + det(B) adj(U), so d F'PF = b00 T0 + b01 T1 + b11 T2 + det(B) T3
        # with the fixed T0 = F0'F0, T1 = F0'F1 + F1'F0, T2 = F1'F1,
        # T3 = F'adj(U)F = u11 T0 − u01 T1 + u00 T2 (their upper triangles, per
        # group): Σ ZXy'P ZXy is one product of these rows with 1/d
        rows, cols, self._square = _triangle(k)
        at_rows = zxy.take(rows, axis=1)  # (2, k (k + 1) / 2, G)
        at_cols = zxy.take(cols, axis=1)
        fixed = np.empty((4,) + at_rows.shape[1:])
        t0 = np.multiply(at_rows[0], at_cols[0], out=fixed[0])
        t1 = np.multiply(at_rows[0], at_cols[1], out=fixed[1])
        t1 += at_rows[1] * at_cols[0]
        t2 = np.multiply(at_rows[1], at_cols[1], out=fixed[2])
        t3 = np.multiply(u11, t0, out=fixed[3])
        t3 -= u01 * t1
        t3 += u00 * t2
        self._fixed = fixed.reshape(-1, g)

    def sums(self, coef: np.ndarray, c4: np.ndarray) -> tuple:
        """``(1/d, log-determinant, numerators of S at (0,0), (1,0), (1,1) over the
        groups, Σ ZXy'P ZXy)`` at the rows ``coef`` and weights ``c4``
        (:func:`_coefficients`)."""
        rows = coef @ self._urow
        d = rows[3]
        inv_d = 1.0 / d
        logdet = float(np.log(d).sum())
        fixed = self._fixed @ inv_d  # Σ T_j / d, four upper triangles
        m = (c4 @ fixed.reshape(4, -1)).take(self._square)  # exactly symmetric
        return inv_d, logdet, rows[:3], m

    def step(self, coef: np.ndarray, c4: np.ndarray, mix: np.ndarray) -> tuple:
        """This chunk's ``(log-determinant, m, Σ S, Σ h h', h, S pairs)``
        (:class:`Dense2Step`'s fields) at ``coef``, ``c4`` and the ``adj(B)`` rows
        ``mix``."""
        inv_d, logdet, pairs, m = self.sums(coef, c4)
        pairs *= inv_d
        s00, s01, s11 = pairs.sum(axis=1).tolist()
        h = (mix @ self._fa).reshape(2 * self.k, self.n_groups)
        h *= inv_d
        s_mat = np.array([[s00, s01], [s01, s11]])
        return logdet, m, s_mat, gram_rows(h), h, pairs
