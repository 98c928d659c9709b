"""The step and Hessian sums of one random-effect coordinate (``r = 1``: a random
intercept, or one random slope alone) in a few whole-chunk products.

For ``r = 1`` every per-group value of :func:`~dmixed.kernels.conditionals.conditional`
is ``U = Z̃_i'Z̃_i`` and ``F = Z̃_i'[X_i, y_i]`` over one denominator::

    d = 1 + b u,   P = b / d,   S = u / d,   H = F / d,   log|K| = log d

(``b = λ²``): sums of non-negative terms, as its closed form for ``r = 1``.  The sums
over groups are BLAS products over the groups of each chunk (another order than the
per-chunk kernels': they agree with :func:`~dmixed.kernels.groups.step_contributions`
to rounding).  Where the C extension runs (:mod:`~dmixed.kernels.native`), its
``dense1_step`` makes each group's values with the same operations and sums them as it
goes, one loop over a chunk's groups a call (numpy's products make a dozen calls and
temporaries a chunk: many small groups are many chunks); the sums in another order
again, to rounding.  ``DMIXED_NATIVE=numpy`` keeps the numpy products, the reference.

Notation as in :mod:`dmixed.kernels`; nothing here knows the optimizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import native
from .conditionals import gram_rows, sparse_rows
from .dense2 import DenseStep
from .groups import HessianSums

if TYPE_CHECKING:  # the sparse F comes from sparse_rows, which imports scipy when it runs
    import scipy.sparse as sp

__all__ = ["Dense1Statistics", "Dense1Step"]


@dataclass
class Dense1Step(DenseStep):
    """:class:`~dmixed.kernels.dense2.DenseStep` of one coordinate
    (:meth:`Dense1Statistics.step`; ``gram`` is ``t_re[0, 0]``), with

    Attributes
    ----------
    between : ndarray (k, k)
        ``Σ_i F_i'F_i / (U_i (1 + λ²U_i))`` (groups with ``U_i = 0`` add nothing):
        :class:`~dmixed.kernels.StepSums`' ``between``.
    """

    between: np.ndarray


class Dense1Statistics:
    """The per-group ``u`` and ``F`` of a block of groups with ``r = 1``, chunk by chunk.

    Parameters
    ----------
    chunks : iterable of (zz (1, 1, G_c), zxy (1, k, G_c))
        Entry-major chunks of :class:`~dmixed.kernels.StatsBlock`
        (:meth:`~dmixed.kernels.StatsBlock.chunks`): each step's sums are the chunks'
        sums added in their order, as the per-chunk kernels add theirs.

    Raises
    ------
    ValueError
        ``DMIXED_NATIVE`` is set to what :func:`~dmixed.kernels.native.forced` refuses.
    """

    def __init__(self, chunks) -> None:
        self._chunks = []
        chunks = list(chunks)
        k = chunks[0][1].shape[1]
        # the extension's choice made once, for every evaluation of the fit
        self._ext = native.extension() if k <= native.MAX_K else None
        for zz, zxy in chunks:
            u = zz[0, 0]
            with np.errstate(divide="ignore"):
                inv_u = np.where(u > 0, 1.0 / u, 0.0)  # F_i = 0 where U_i = 0
            if self._ext is not None:  # read as they are: no sparse copy
                self._chunks.append((_contiguous(u), _contiguous(zxy[0]), inv_u, None))
            else:
                self._chunks.append((u, zxy[0], inv_u, sparse_rows(zxy[0])))
        self.k = self._chunks[0][1].shape[0]
        self.n_groups = sum(chunk[0].shape[0] for chunk in self._chunks)

    @property
    def uses_extension(self) -> bool:
        """Whether the extension (:mod:`~dmixed.kernels.native`) makes the sums."""
        return self._ext is not None

    def value(self, lam: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """``(Σ_i log|K_i|, Σ_i ZXy_i'P_iZXy_i, between)`` at ``lam`` (1 × 1): what ℓ
        alone needs (the same numbers as :meth:`step`'s)."""
        b = float(lam[0, 0]) ** 2
        if self._ext is not None:  # the step's own sums: the same numbers
            step = self.step(lam)
            return step.logdet, step.m, step.between
        first, *rest = (_chunk_value(b, *chunk) for chunk in self._chunks)
        logdet, m, between, _ = first
        for more in rest:
            logdet += more[0]
            m = m + more[1]
            between = between + more[2]
        return logdet, m, between

    def step(self, lam: np.ndarray) -> Dense1Step:
        """The sums at the 1 × 1 factor ``lam`` (``b = λ²``)."""
        b = float(lam[0, 0]) ** 2
        ext = self._ext
        if ext is not None:
            parts = [_native_step(ext, b, *chunk[:3]) for chunk in self._chunks]
        else:
            parts = [_chunk_step(b, *chunk) for chunk in self._chunks]
        logdet, m, between, s, gram, _, _ = parts[0]
        for more in parts[1:]:
            logdet += more[0]
            m = m + more[1]
            between = between + more[2]
            s += more[3]
            gram = gram + more[4]
        h = tuple(p[5] for p in parts)
        s_pairs = tuple(p[6] for p in parts)
        return Dense1Step(logdet, m, np.array([[s]]), gram, h, s_pairs, between)

    def hessian(self, step: Dense1Step, basis: np.ndarray, w: np.ndarray) -> HessianSums:
        """The Hessian sums (:class:`~dmixed.kernels.HessianSums`) at the step's ``Λ``
        for the basis ``E_j`` (m, 1, 1) and ``w = [−β; 1]``, from the moments of
        :class:`~dmixed.kernels.hessian_moments.HessianMoments` added chunk by chunk."""
        return step.hessian(basis, w)


def _contiguous(a: np.ndarray) -> np.ndarray:
    """``a`` as the extension reads it: C-contiguous float64 (``a`` itself where it is)."""
    return np.ascontiguousarray(a, dtype=np.float64)


def _native_step(ext, b: float, u: np.ndarray, f: np.ndarray, inv_u: np.ndarray) -> tuple:
    """:func:`_chunk_step`'s fields made by the extension ``ext`` (``dense1_step`` of
    :mod:`~dmixed.kernels.native`): each group's values with the same operations, the
    sums in group order (to rounding numpy's)."""
    k, g = f.shape
    h = np.empty((k, g))
    s_i = np.empty((1, g))
    sums = np.empty(1 + 3 * k * k)
    logdet = ext.dense1_step(u, f, inv_u, k, g, b, h, s_i, sums)
    m, between, gram = sums[1:].reshape(3, k, k)
    return float(logdet), m, between, float(sums[0]), gram, h, s_i


def _sparse_m_sum(fs: sp.csr_matrix, p: np.ndarray) -> np.ndarray:
    """:func:`_m_sum` of the sparse ``F`` (:func:`sparse_rows`): ``Σ_i p_i F_i'F_i``."""
    m = (fs.multiply(p[None, :]).tocsr() @ fs.T).toarray()
    return 0.5 * (m + m.T)


def _sparse_gram(fs: sp.csr_matrix, inv_d: np.ndarray) -> np.ndarray:
    """``H H'`` of ``H = F / d`` (``inv_d = 1/d``) from the sparse ``F``: :func:`gram_rows`'
    sum, zeros skipped."""
    hs = fs.multiply(inv_d[None, :]).tocsr()
    return (hs @ hs.T).toarray()


def _chunk_value(
    b: float, u: np.ndarray, f: np.ndarray, inv_u: np.ndarray, fs: sp.csr_matrix | None = None
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """One chunk's ``(Σ log d, Σ P F'F, Σ F'F/(u d), 1/d)`` at ``b = λ²`` (``fs``: ``F``
    sparse, :func:`sparse_rows`, or None)."""
    d = b * u
    d += 1.0
    inv_d = 1.0 / d
    if fs is not None:
        m, between = _sparse_m_sum(fs, b * inv_d), _sparse_m_sum(fs, inv_u * inv_d)
        return float(np.log(d).sum()), m, between, inv_d
    return float(np.log(d).sum()), _m_sum(f, b * inv_d), _m_sum(f, inv_u * inv_d), inv_d


def _chunk_step(
    b: float, u: np.ndarray, f: np.ndarray, inv_u: np.ndarray, fs: sp.csr_matrix | None = None
) -> tuple:
    """One chunk's :class:`Dense1Step` fields ``(Σ log d, Σ P F'F, between, Σ S, Σ h h',
    h, S)`` at ``b = λ²``.  ``fs``: ``F`` sparse (:func:`sparse_rows`; its zeros
    skipped), or None: then :func:`_chunk_value`'s products with ``F`` and ``H = F / d``
    made as one product of ``F`` with the rows ``[P, 1/(u d), 1/d]`` (each entry the
    same product as alone)."""
    d = b * u
    d += 1.0
    weights = np.empty((3, u.shape[0]))
    inv_d = np.divide(1.0, d, out=weights[2])
    np.multiply(b, inv_d, out=weights[0])
    np.multiply(inv_u, inv_d, out=weights[1])
    s_i = u * inv_d
    if fs is not None:
        return (
            float(np.log(d).sum()),
            _sparse_m_sum(fs, weights[0]),
            _sparse_m_sum(fs, weights[1]),
            float(s_i.sum()),
            _sparse_gram(fs, inv_d),
            f * inv_d,
            s_i[None],
        )
    rows = weights[:, None] * f  # [P F; F / (u d); H]
    h = rows[2]
    return (
        float(np.log(d).sum()),
        _m_sum_rows(f, rows[0]),
        _m_sum_rows(f, rows[1]),
        float(s_i.sum()),
        gram_rows(h),
        h,
        s_i[None],
    )


def _m_sum(f: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``Σ_i p_i F_i'F_i`` (k × k, exactly symmetric) of the rows ``f`` (k, G)."""
    return _m_sum_rows(f, p * f)


def _m_sum_rows(f: np.ndarray, pf: np.ndarray) -> np.ndarray:
    """:func:`_m_sum` of the products ``pf = p F`` (k, G) made by the caller."""
    m = f @ pf.T
    return 0.5 * (m + m.T)
