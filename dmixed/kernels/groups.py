"""Statistics → contributions: each block of groups' sums for ℓ, score, Hessian, BLUPs.

Nothing here knows about Dask, pandas or the optimizer.  Every function works on
stacked per-group arrays (a leading axis of length ``G``, the number of groups in the
block) and returns contributions that are *sums over groups*, so that an engine can
evaluate them on any partition of the groups and add the results.

Notation as in :mod:`dmixed.kernels` (DESIGN.md §1–6).  For the relative covariance
factor ``Λ`` (``B* = ΛΛ'``)::

    K_i = I + Λ' ZZ_i Λ,           log|V*_i| = log|K_i|
    P_i = Λ K_i⁻¹ Λ'               (V*_i⁻¹ = I − Z̃_i P_i Z̃_i')
    S_i = Z̃_i'V*_i⁻¹Z̃_i = ZZ_i − ZZ_i P_i ZZ_i
    H_i = Z̃_i'V*_i⁻¹[X_i, y_i] = ZXy_i − ZZ_i P_i ZXy_i
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import compiled
from .hessian_moments import HessianMoments

# Groups are processed in chunks of this many, to bound the size of the
# (G, m, r, r)-shaped temporaries of the Hessian and keep them cache friendly.
GROUP_CHUNK = 16384
# Up to this r, Λ'ZΛ is one (Λ⊗Λ) matrix product (r⁴ entries: 4096 at r = 8).
_KRON_MAX_R = 8
#: Up to this r, the numpy Hessian sums are contractions of a few moments over groups
#: (:mod:`~dmixed.kernels.hessian_moments`: r⁴(p+1)² numbers, against the per-group
#: products of the general form below); 0 runs the general form for every r.
HESSIAN_MOMENTS_MAX_R = 3
#: A block keeps the per-group values of its last step (``P``, ``log|K|``, ``S``, ``H``)
#: for the Hessian and the BLUPs at the same ``Λ`` (the optimizer asks for the Hessian
#: at the point it just evaluated) when they take at most this many bytes.
KEPT_CONDITIONALS_BYTES = 32 * 2**20


# ---------------------------------------------------------------------------
# Statistics blocks
# ---------------------------------------------------------------------------


class StatsBlock:
    """Per-group statistics of a block of groups, in the layout the kernels want.

    Stored *entry-major*: ``zz[a, b, :]`` and ``zxy[a, j, :]`` are contiguous vectors
    over the groups.  Products of the many tiny per-group matrices then run as a few
    long vector operations (faster than batched ``(G, r, r)`` matmuls: see
    benchmarks/RESULTS.md, kernel layout), and the sums over groups become BLAS matrix
    products.

    Parameters
    ----------
    zz : ndarray (G, r, r)
        ``Z̃_i'Z̃_i`` per group.
    zxy : ndarray (G, r, p+1)
        ``Z̃_i'[X_i, y_i]`` per group.
    """

    __slots__ = ("_chunks", "_keep", "_kept")

    def __init__(self, zz: np.ndarray, zxy: np.ndarray) -> None:
        zz = np.asarray(zz, dtype=np.float64)
        zxy = np.asarray(zxy, dtype=np.float64)
        # Each chunk is its own contiguous array: einsum's fast inner loops need
        # contiguous operands (benchmarks/RESULTS.md: kernel layout).
        self._chunks = [
            (
                np.ascontiguousarray(np.moveaxis(zz[lo : lo + GROUP_CHUNK], 0, -1)),
                np.ascontiguousarray(np.moveaxis(zxy[lo : lo + GROUP_CHUNK], 0, -1)),
            )
            for lo in range(0, max(zz.shape[0], 1), GROUP_CHUNK)
        ]
        self._keep = False
        self._kept: tuple[bytes, list] | None = None

    @classmethod
    def from_entry_major(cls, zz: np.ndarray, zxy: np.ndarray) -> StatsBlock:
        """The block of entry-major ``zz`` (r, r, G) and ``zxy`` (r, p+1, G) (views
        allowed: each chunk is copied once), without the per-group layout's transposes."""
        block = cls.__new__(cls)
        block._chunks = [
            (
                np.ascontiguousarray(zz[..., lo : lo + GROUP_CHUNK], dtype=np.float64),
                np.ascontiguousarray(zxy[..., lo : lo + GROUP_CHUNK], dtype=np.float64),
            )
            for lo in range(0, max(zz.shape[-1], 1), GROUP_CHUNK)
        ]
        block._keep, block._kept = False, None
        return block

    @property
    def n_groups(self) -> int:
        return sum(c[0].shape[-1] for c in self._chunks)

    @property
    def k(self) -> int:
        """``p + 1``: columns of ``[X y]``."""
        return self._chunks[0][1].shape[1]

    def chunks(self):
        """Entry-major ``(zz (r, r, G_c), zxy (r, p+1, G_c))`` of consecutive groups."""
        return iter(self._chunks)

    def dense(self) -> tuple[np.ndarray, np.ndarray]:
        """The statistics back in per-group layout: ``zz`` (G, r, r), ``zxy`` (G, r, p+1)."""
        zz = np.concatenate([np.moveaxis(c[0], -1, 0) for c in self._chunks])
        zxy = np.concatenate([np.moveaxis(c[1], -1, 0) for c in self._chunks])
        return zz, zxy

    def __getstate__(self):
        return self._chunks

    def __setstate__(self, state) -> None:
        self._chunks = state
        self._keep, self._kept = False, None

    def keep_conditionals(self) -> StatsBlock:
        """Keep the last step's per-group values from now on (:meth:`conditionals`);
        ``self``.  For an in-process engine: a block on a cluster worker does not keep
        them (its memory is the worker's budget)."""
        self._keep = True
        return self

    def conditionals(self, lam: np.ndarray):
        """Per chunk ``(zz, zxy, (P, log|K|, S, H))`` at ``lam`` (:func:`_conditional`,
        entry-major).

        After :meth:`keep_conditionals`, the values of the last call are kept
        (read-only) when they take at most :data:`KEPT_CONDITIONALS_BYTES`, and given
        again for the same ``Λ`` bit for bit: the Hessian and the BLUPs are asked for
        where the last step was evaluated.
        """
        key = f"{lam.dtype.str}{lam.shape}".encode() + lam.tobytes()
        if self._kept is not None and self._kept[0] == key:
            return iter(self._kept[1])
        r, k = lam.shape[0], self.k
        if not self._keep or 8 * self.n_groups * (2 * r * r + 1 + r * k) > KEPT_CONDITIONALS_BYTES:
            self._kept = None
            return ((zzc, zxyc, _conditional(zzc, zxyc, lam)) for zzc, zxyc in self._chunks)
        out = [(zzc, zxyc, _conditional(zzc, zxyc, lam)) for zzc, zxyc in self._chunks]
        for *_, cond in out:
            for arr in cond:
                if isinstance(arr, np.ndarray):
                    arr.flags.writeable = False
        self._kept = (key, out)
        return iter(out)


def _as_block(block, zxy=None) -> StatsBlock:
    if isinstance(block, StatsBlock):
        return block
    return StatsBlock(block, zxy)


# ---------------------------------------------------------------------------
# Per-step contributions
# ---------------------------------------------------------------------------


@dataclass
class StepSums:
    """Sums over groups needed for the profiled log-likelihood and its score.

    Attributes
    ----------
    logdet : float
        Σ_i log|K_i|.
    m : ndarray (p+1, p+1)
        Σ_i ZXy_i' P_i ZXy_i, so that [X y]'V*⁻¹[X y] = [X y]'[X y] − m.
    s : ndarray (r, r)
        Σ_i S_i.
    t_re : ndarray (q, q, p+1, p+1)
        Σ_i H_i[a,:] ⊗ H_i[b,:] over the ``exog_re`` coordinates a, b.
    t_vc : ndarray (r-q, p+1, p+1)
        Σ_i H_i[a,:] ⊗ H_i[a,:] over each variance-component slot a.
    between : ndarray (p+1, p+1)
        For ``r = 1``: Σ_i F_i'F_i / (U_i (1 + λ² U_i)) = Σ_i (F_i'F_i/U_i − m_i), what
        ``[X y]'V*⁻¹[X y]`` adds to the within-group cross-products
        (:attr:`~dmixed.stats.GlobalStats.within`), in closed form; zeros for ``r ≠ 1``.
    """

    logdet: float
    m: np.ndarray
    s: np.ndarray
    t_re: np.ndarray
    t_vc: np.ndarray
    between: np.ndarray

    def __add__(self, other: StepSums) -> StepSums:
        return StepSums(*(getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__))


#: inner widths above which :func:`_mm` hands the products to BLAS (wide padded groups:
#: crossed variance components); at or below it, vector sums over the groups
MM_BLAS_ABOVE = 16


def _mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-group product of entry-major matrices: (r, s, G) × (s, t, G) → (r, t, G).

    ``Σ_c a[:, c] b[c]`` term by term in the order of ``c``, as
    ``np.einsum("acg,cbg->abg", a, b)`` sums (the same numbers), in long vector
    operations over the groups (einsum's loop is about twice as slow at s = 2).  Above
    :data:`MM_BLAS_ABOVE` the ``s`` terms are summed by a batched BLAS product instead
    (its own order of addition): ``s`` vector passes over (r, t, G) cost ``s`` times
    the output's memory traffic, which a few wide groups cannot amortize.
    """
    if a.shape[1] > MM_BLAS_ABOVE:
        prod = np.matmul(a.transpose(2, 0, 1), b.transpose(2, 0, 1))  # (G, r, t)
        return np.ascontiguousarray(prod.transpose(1, 2, 0))
    out = a[:, :1] * b[:1]
    if a.shape[1] > 1:
        term = np.empty_like(out)
        for c in range(1, a.shape[1]):
            out += np.multiply(a[:, c : c + 1], b[c : c + 1], out=term)
    return out


def _factor(zz: np.ndarray, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``P_i = Λ K_i⁻¹ Λ'`` (entry-major) and ``log|K_i|`` for a chunk of groups.

    ``K_i = I + Λ' ZZ_i Λ`` has eigenvalues ≥ 1, so this never fails, even when Λ is
    singular (a variance on the boundary).  Closed forms for r ≤ 2 (random intercept,
    random slope) avoid LAPACK's per-matrix overhead; larger r uses batched LAPACK.
    """
    r, _, g = zz.shape
    if r == 0:
        return np.zeros((0, 0, g)), np.zeros(g)
    # Λ'ZZΛ for all groups as one matrix product: vec(Λ'ZΛ) = (Λ ⊗ Λ)' vec(Z).  The
    # Kronecker factor has r⁴ entries: fine for the small r of random slopes, wasteful
    # for wide variance-component layouts, where two batched products are used instead.
    kron = np.kron(lam, lam) if r <= _KRON_MAX_R else None
    if kron is not None:
        lzl = (kron.T @ zz.reshape(r * r, g)).reshape(r, r, g)
    else:
        lzl = np.ascontiguousarray(np.moveaxis(lam.T @ np.moveaxis(zz, -1, 0) @ lam, 0, -1))
    if r == 1:
        kk = 1.0 + lzl[0, 0]
        return (lam[0, 0] ** 2 / kk)[None, None, :], np.log(kk)
    if r == 2:
        k00 = 1.0 + lzl[0, 0]
        k11 = 1.0 + lzl[1, 1]
        k01 = lzl[0, 1]
        det = k00 * k11 - k01 * k01
        kinv = np.empty((2, 2, g))
        kinv[0, 0] = k11 / det
        kinv[1, 1] = k00 / det
        kinv[0, 1] = kinv[1, 0] = -k01 / det
        logdet = np.log(det)
    else:
        kmat = np.moveaxis(lzl, -1, 0) + np.eye(r)
        chol = np.linalg.cholesky(kmat)
        logdet = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
        kinv = np.moveaxis(np.linalg.inv(kmat), 0, -1)
    if kron is not None:
        p_mat = (kron @ np.ascontiguousarray(kinv).reshape(r * r, g)).reshape(r, r, g)
    else:
        p_mat = np.ascontiguousarray(np.moveaxis(lam @ np.moveaxis(kinv, -1, 0) @ lam.T, 0, -1))
    return p_mat, logdet


def _conditional(zz: np.ndarray, zxy: np.ndarray, lam: np.ndarray, value_only: bool = False):
    """Entry-major ``P``, ``log|K|``, ``S`` and ``H`` of a chunk (module docstring);
    ``S`` and ``H`` ``None`` with ``value_only`` (what ℓ alone needs).

    For ``r = 1`` in closed form without subtraction: ``S = U/(1 + λ²U)`` and
    ``H = F/(1 + λ²U)`` (``U = ZZ``, ``F = ZXy``), exact however large ``λ²U`` (the
    general ``ZZ − ZZ·P·ZZ`` loses the digits of ``1/(1 + λ²U)``); for ``r = 2`` see
    :func:`_conditional_2`.
    """
    if zz.shape[0] == 2:
        return _conditional_2(zz, zxy, lam, value_only)
    p_mat, logdet = _factor(zz, lam)
    if value_only:
        return p_mat, logdet, None, None
    if zz.shape[0] == 1:
        kk = 1.0 + lam[0, 0] ** 2 * zz[0, 0]
        return p_mat, logdet, zz / kk, zxy / kk
    zzp = _mm(zz, p_mat)  # ZZ_i P_i
    s = zz - _mm(zzp, zz)
    h = zxy - _mm(zzp, zxy)
    return p_mat, logdet, s, h


def _conditional_2(zz: np.ndarray, zxy: np.ndarray, lam: np.ndarray, value_only: bool = False):
    """``P``, ``log|K|``, ``S`` and ``H`` for ``r = 2`` in closed form, without the
    cancellation of ``ZZ − ZZ·P·ZZ`` when ``B = ΛΛ'`` is large next to ``U⁻¹``
    (``S`` and ``H`` ``None`` with ``value_only``).

    ``P = (I + BU)⁻¹B``, ``S = (I + UB)⁻¹U`` and ``H = (I + UB)⁻¹F`` (push-through), and
    for 2 × 2 matrices ``adj(I + UB) = I + adj(B) adj(U)``, ``adj(B) B = det(B) I`` and
    ``det(I + UB) = 1 + tr(BU) + det(B) det(U)``, so that::

        P = (B + det(B) adj(U)) / d,   S = (U + det(U) adj(B)) / d,
        H = (F + adj(B) adj(U) F) / d,   log|K| = log d

    with ``d = 1 + tr(BU) + det(B) det(U)``: sums of non-negative terms where the
    general form subtracts numbers of the size of ``U`` to leave ``1/B``.
    """
    b = lam @ lam.T
    det_b = float(np.linalg.det(lam)) ** 2
    b00, b01, b11 = b[0, 0], b[0, 1], b[1, 1]
    u00, u01, u11 = zz[0, 0], zz[0, 1], zz[1, 1]
    # every line below is the formula above, written in place (the same operations in
    # the same order: the same numbers with a few buffers instead of ~30 temporaries)
    tmp = np.empty_like(u00)
    det_u = u00 * u11
    det_u -= np.multiply(u01, u01, out=tmp)
    np.maximum(det_u, 0.0, out=det_u)
    d = b00 * u00  # d = 1 + b00 u00 + 2 b01 u01 + b11 u11 + det(B) det(U)
    d += 1.0
    d += np.multiply(2.0 * b01, u01, out=tmp)
    d += np.multiply(b11, u11, out=tmp)
    d += np.multiply(det_b, det_u, out=tmp)
    inv_d = np.divide(1.0, d)
    p_mat = np.empty_like(zz)
    _scaled_sum(b00, det_b, u11, inv_d, p_mat[0, 0])  # (b00 + det(B) u11) / d
    _scaled_sum(b11, det_b, u00, inv_d, p_mat[1, 1])
    _scaled_sum(b01, det_b, u01, inv_d, p_mat[0, 1], subtract=True)
    p_mat[1, 0] = p_mat[0, 1]
    if value_only:
        return p_mat, np.log(d), None, None
    s = np.empty_like(zz)
    _scaled_sum(u00, b11, det_u, inv_d, s[0, 0])  # (u00 + det(U) b11) / d
    _scaled_sum(u11, b00, det_u, inv_d, s[1, 1])
    _scaled_sum(u01, b01, det_u, inv_d, s[0, 1], subtract=True)
    s[1, 0] = s[0, 1]
    # M = adj(B) adj(U) per group (2 × 2 × G), then H = (F + M F) / d in one product
    m = np.empty_like(zz)
    np.multiply(b11, u11, out=m[0, 0])
    m[0, 0] += np.multiply(b01, u01, out=tmp)
    np.multiply(b11, u01, out=m[0, 1])
    m[0, 1] += np.multiply(b01, u00, out=tmp)
    np.negative(m[0, 1], out=m[0, 1])
    np.multiply(b01, u11, out=m[1, 0])
    m[1, 0] += np.multiply(b00, u01, out=tmp)
    np.negative(m[1, 0], out=m[1, 0])
    np.multiply(b01, u01, out=m[1, 1])
    m[1, 1] += np.multiply(b00, u00, out=tmp)
    h = _mm(m, zxy)
    h += zxy
    h *= inv_d
    return p_mat, np.log(d), s, h


def _scaled_sum(
    first, factor: float, second: np.ndarray, inv_d: np.ndarray, out: np.ndarray, subtract=False
) -> None:
    """``out = (first ± factor·second) · inv_d`` in place (``−`` with ``subtract``), as
    numpy evaluates that expression; ``first`` a scalar or an array."""
    np.multiply(factor, second, out=out)
    if subtract:
        np.subtract(first, out, out=out)
    else:
        out += first
    out *= inv_d


def step_contributions(block, lam: np.ndarray, q: int, zxy=None) -> StepSums:
    """Contributions of a block of groups to the profiled likelihood and score.

    Parameters
    ----------
    block : StatsBlock
        The groups' statistics (or ``zz`` (G, r, r) with ``zxy`` given).
    lam : ndarray (r, r)
        The relative covariance factor Λ (lower triangular on the ``exog_re`` block,
        diagonal on the variance-component slots).
    q : int
        Number of ``exog_re`` coordinates.

    Evaluated by the compiled kernels or by numpy, as
    :func:`dmixed.kernels.compiled.backend` picks for the block's size (the
    ``DMIXED_KERNELS`` environment variable forces one); both compute the same
    per-group formulas.

    Raises
    ------
    ValueError
        ``DMIXED_KERNELS`` names no implementation, or numba when it is not installed.
    """
    block = _as_block(block, zxy)
    r = lam.shape[0]
    k = block.k
    if compiled.backend(block.n_groups, r) == "numba":
        return StepSums(*compiled.step_sums(block.chunks(), lam, q, k))
    parts = (_step_part(zzc, zxyc, cond, lam, q) for zzc, zxyc, cond in block.conditionals(lam))
    total = next(parts)  # a block has at least one chunk (of no groups when empty)
    for part in parts:
        total = total + part
    return total


def _step_part(zzc: np.ndarray, zxyc: np.ndarray, cond, lam: np.ndarray, q: int) -> StepSums:
    """:func:`step_contributions` of one entry-major chunk, in numpy, from its
    :func:`_conditional` values ``cond``."""
    k = zxyc.shape[1]
    p_mat, logdet, s, h = cond
    hr = h[:q].reshape(q * k, h.shape[-1])  # a view: rows (a, x)
    hv = h[q:]
    return StepSums(
        float(logdet.sum()),
        _m_sum(zxyc, p_mat),
        s.sum(axis=2),
        (hr @ hr.T).reshape(q, k, q, k).transpose(0, 2, 1, 3),
        np.matmul(hv, hv.transpose(0, 2, 1)),
        _between(zzc, zxyc, lam),
    )


def _m_sum(zxy: np.ndarray, p_mat: np.ndarray) -> np.ndarray:
    """``Σ_i ZXy_i' P_i ZXy_i`` over a chunk (symmetrized)."""
    r, k = p_mat.shape[0], zxy.shape[1]
    pz = _mm(p_mat, zxy)
    m = sum(zxy[a] @ pz[a].T for a in range(r)) if r else np.zeros((k, k))
    return 0.5 * (m + m.T)


def value_contributions(block: StatsBlock, lam: np.ndarray, q: int) -> StepSums:
    """The sums of :func:`step_contributions` that ℓ alone needs, the same numbers bit
    for bit: ``logdet``, ``m`` and ``between``; the score's ``s``, ``t_re`` and ``t_vc``
    are NaN (not computed: about half of a step's work at ``r = 2``).  For a value that
    no score follows (the start selection's default point).  The compiled kernels, when
    :func:`~dmixed.kernels.compiled.backend` picks them, compute the whole step.
    """
    r, k = lam.shape[0], block.k
    if compiled.backend(block.n_groups, r) == "numba":
        return step_contributions(block, lam, q)
    nan = (np.full((r, r), np.nan), np.full((q, q, k, k), np.nan), np.full((r - q, k, k), np.nan))

    def part(zzc: np.ndarray, zxyc: np.ndarray) -> StepSums:
        p_mat, logdet, _, _ = _conditional(zzc, zxyc, lam, value_only=True)
        return StepSums(float(logdet.sum()), _m_sum(zxyc, p_mat), *nan, _between(zzc, zxyc, lam))

    parts = (part(zzc, zxyc) for zzc, zxyc in block.chunks())
    total = next(parts)  # a block has at least one chunk (of no groups when empty)
    for more in parts:
        total = total + more
    return total


def _between(zz: np.ndarray, zxy: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Σ_i F_i'F_i / (U_i (1 + λ²U_i)) over a chunk for ``r = 1`` (groups with U_i = 0
    have F_i = 0 and add nothing); zeros otherwise."""
    k = zxy.shape[1]
    if zz.shape[0] != 1:
        return np.zeros((k, k))
    u = zz[0, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(u > 0, 1.0 / (u * (1.0 + lam[0, 0] ** 2 * u)), 0.0)
    f = zxy[0]  # (k, G)
    out = (f * c) @ f.T
    return 0.5 * (out + out.T)


# ---------------------------------------------------------------------------
# Hessian contributions (once, at the optimum)
# ---------------------------------------------------------------------------


@dataclass
class HessianSums:
    """Sums over groups needed for the Hessian in [β, vech(Ψ*), τ*].

    With ``E_j`` the derivative of ``B*`` with respect to covariance parameter j, the
    residual-side vector ``u_i = Z̃_i'V*_i⁻¹(y_i − X_i β) = H_i w`` (w = [−β; 1]) and
    ``G_i = Z̃_i'V*_i⁻¹X_i`` (the first p columns of ``H_i``):

    - ``tr_ss[j,k] = Σ tr(S E_j S E_k)``
    - ``u_s_u[j,k] = Σ u'E_j S E_k u``
    - ``u_e_u[j] = Σ u'E_j u``
    - ``g_e_u[j] = Σ G'E_j u``                (p,)
    - ``a_j[j] = Σ G'E_j G``                  (p, p)
    - ``a_jk[j,k] = Σ 2 G'E_j S E_k G``  (p, p); it is only used in traces against
      symmetric matrices, where it equals ``Σ G'(E_j S E_k + E_k S E_j)G``
    """

    tr_ss: np.ndarray
    u_s_u: np.ndarray
    u_e_u: np.ndarray
    g_e_u: np.ndarray
    a_j: np.ndarray
    a_jk: np.ndarray

    def __add__(self, other: HessianSums) -> HessianSums:
        return HessianSums(
            *(getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__)
        )

    @classmethod
    def zeros(cls, m: int, p: int) -> HessianSums:
        """Sums over no groups, for ``m`` covariance parameters and ``p`` fixed effects."""
        return cls(
            np.zeros((m, m)),
            np.zeros((m, m)),
            np.zeros(m),
            np.zeros((m, p)),
            np.zeros((m, p, p)),
            np.zeros((m, m, p, p)),
        )


def hessian_contributions(
    block, lam: np.ndarray, basis: np.ndarray, w: np.ndarray, zxy=None
) -> HessianSums:
    """Contributions of a block of groups to the Hessian sums.

    Parameters
    ----------
    basis : ndarray (m, r, r)
        ``E_j``: derivative of ``B*`` with respect to each covariance parameter.
    w : ndarray (p+1,)
        ``[−β; 1]``.

    Evaluated by the compiled kernels or by numpy as :func:`step_contributions`; in
    numpy up to ``r =`` :data:`HESSIAN_MOMENTS_MAX_R` from moments over the groups
    (:class:`~dmixed.kernels.hessian_moments.HessianMoments`), else per group.
    """
    block = _as_block(block, zxy)
    m = basis.shape[0]
    p = block.k - 1
    out = HessianSums.zeros(m, p)
    if lam.shape[0] and compiled.backend(block.n_groups, lam.shape[0], "hessian") == "numba":
        fields = tuple(getattr(out, f) for f in out.__dataclass_fields__)
        return HessianSums(*compiled.hessian_sums(block.chunks(), lam, basis, w, fields))
    r = basis.shape[1]
    if 0 < r <= HESSIAN_MOMENTS_MAX_R:
        moments = HessianMoments(r, p + 1)
        for _, _, (_, _, s, h) in block.conditionals(lam):
            moments.add(s, np.array(h), w)  # add overwrites its H
        return HessianSums(*moments.contract(basis))
    for _, _, (_, _, s, h) in block.conditionals(lam):
        g = s.shape[-1]
        u = np.einsum("ajg,j->ag", h, w)  # (r, G)
        gm = h[:, :p]  # (r, p, G)
        # Every sum over groups below is one BLAS matrix product whose inner dimension
        # runs over the groups (and a small axis), with the operands laid out so that
        # the reshapes are views: the element-wise products (S times E_j ...) are cheap,
        # the contractions over G are where the time goes.
        se = np.einsum("abg,jbc->jacg", s, basis)  # (m, r, r, G): S E_j
        eu = np.einsum("jab,bg->jag", basis, u)  # (m, r, G): E_j u
        eg = np.einsum("jab,bqg->ajqg", basis, gm)  # (r, m, p, G): E_j G, row a first
        seg = np.einsum("abg,bkpg->akpg", s, eg)  # (r, m, p, G): S E_k G
        seu = np.einsum("abg,kbg->kag", s, eu)  # (m, r, G): S E_k u
        eu_flat = eu.reshape(m, r * g)
        se_t = np.ascontiguousarray(se.transpose(0, 2, 1, 3)).reshape(m, r * r * g)
        gm_t = np.ascontiguousarray(gm.transpose(1, 0, 2)).reshape(p, r * g)
        half = np.zeros((m * p, m * p))
        a_j = np.zeros((p, m * p))
        for a in range(r):
            eg_a = eg[a].reshape(m * p, g)
            half += eg_a @ seg[a].reshape(m * p, g).T  # G'E_j S E_k G, rows (j, q)
            a_j += gm[a] @ eg_a.T  # G'E_j G, columns (j, q)
        half = half.reshape(m, p, m, p).transpose(0, 2, 1, 3)
        out = out + HessianSums(
            se.reshape(m, r * r * g) @ se_t.T,  # Σ tr(S E_j S E_k)
            eu_flat @ seu.reshape(m, r * g).T,  # Σ u'E_j S E_k u
            eu_flat @ u.reshape(r * g),  # Σ u'E_j u
            eu_flat @ gm_t.T,  # Σ G'E_j u
            a_j.reshape(p, m, p).transpose(1, 0, 2),
            half + half.transpose(1, 0, 3, 2),
        )
    return out


# ---------------------------------------------------------------------------
# Moment sums (once, for the starting values)
# ---------------------------------------------------------------------------

#: Largest ``r`` for which :func:`moment_contributions` is computed: its ``Σ ZZ ⊗ ZZ``
#: has ``r⁴`` entries (4096 at r = 8).
MOMENT_MAX_R = 8


@dataclass
class MomentSums:
    """Sums over groups behind moment estimates of the covariance parameters.

    They do not depend on any parameter, so one round trip after the data pass gives
    them (see :func:`dmixed.fit.start.moment_start`).

    Attributes
    ----------
    zz : ndarray (r, r)
        ``Σ_i ZZ_i``.
    zz_zz : ndarray (r, r, r, r)
        ``Σ_i ZZ_i[a,b] ZZ_i[c,d]``.
    zxy_zxy : ndarray (r, p+1, r, p+1)
        ``Σ_i ZXy_i[a,x] ZXy_i[b,y]``, so that ``Σ_i c_i c_i'`` with
        ``c_i = Z̃_i'(y_i − X_i β) = ZXy_i w`` (``w = [−β; 1]``) is a contraction with
        ``w ⊗ w``.
    n_groups : int
    """

    zz: np.ndarray
    zz_zz: np.ndarray
    zxy_zxy: np.ndarray
    n_groups: int

    def __add__(self, other: MomentSums) -> MomentSums:
        return MomentSums(
            *(getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__)
        )


def moment_contributions(block, zxy=None) -> MomentSums:
    """Contributions of a block of groups to the :class:`MomentSums`.

    Three matrix products per chunk whose inner dimension runs over the groups.
    """
    block = _as_block(block, zxy)
    chunks = list(block.chunks())
    r, k = chunks[0][1].shape[:2]
    out = MomentSums(np.zeros((r, r)), np.zeros((r, r, r, r)), np.zeros((r, k, r, k)), 0)
    for zzc, zxyc in chunks:
        g = zzc.shape[-1]
        zz_flat = zzc.reshape(r * r, g)
        zxy_flat = zxyc.reshape(r * k, g)
        out = out + MomentSums(
            zzc.sum(axis=2),
            (zz_flat @ zz_flat.T).reshape(r, r, r, r),
            (zxy_flat @ zxy_flat.T).reshape(r, k, r, k),
            g,
        )
    return out


# ---------------------------------------------------------------------------
# Random effects (BLUPs) and their conditional covariance
# ---------------------------------------------------------------------------


def random_effects_block(
    block, lam: np.ndarray, w: np.ndarray, zxy=None
) -> tuple[np.ndarray, np.ndarray]:
    """BLUPs and conditional covariances (relative to σ²) for a block of groups.

    ``γ̂_i = B* u_i`` with ``u_i = Z̃_i'V*_i⁻¹(y_i − X_i β)`` and
    ``Var(γ_i | y)/σ² = B* − B* S_i B* = Λ K_i⁻¹ Λ'``, which stays finite when ``B*``
    is singular (boundary fits).

    Returns
    -------
    blup : ndarray (G, r)
    cond_cov : ndarray (G, r, r)   (multiply by the scale σ̂²)

    Evaluated by the compiled kernels or by numpy as :func:`step_contributions`.
    """
    block = _as_block(block, zxy)
    bstar = lam @ lam.T
    r = lam.shape[0]
    if r and compiled.backend(block.n_groups, r, "blups") == "numba":
        return compiled.random_effects(block.chunks(), lam, w, block.n_groups)
    blups = [np.zeros((0, r))]
    covs = [np.zeros((0, r, r))]
    for _, _, (p_mat, _, _, h) in block.conditionals(lam):
        blups.append((bstar @ np.einsum("ajg,j->ag", h, w)).T)
        covs.append(np.moveaxis(p_mat, -1, 0))
    return np.concatenate(blups), np.concatenate(covs)
