"""The Hessian sums from a few moments over groups, contracted with ``E_j`` once.

Every field of :class:`~dmixed.kernels.HessianSums` is linear in each ``E_j``, so it is
a contraction of the basis with a sum over groups of products of the per-group ``S_i``
(r × r, symmetric), ``G_i`` (the first p columns of ``H_i``) and ``u_i = H_i w``.  With
``v_i = [G_i, u_i]`` (r × (p+1)) three sums hold them all::

    A[ab, cd]       = Σ_i S_i,ab S_i,cd                  (b ≤ a, d ≤ c)
    V[ax, by]       = Σ_i v_i,ax v_i,by
    C[ax, bc, dy]   = Σ_i v_i,ax S_i,bc v_i,dy           (c ≤ b)

each one BLAS product whose inner dimension runs over the groups; then ::

    tr_ss[j,k] = Σ A[ab,cd] E_j[b,c] E_k[d,a]     u_s_u[j,k] = Σ C[a u, bc, d u] E_j[a,b] E_k[c,d]
    u_e_u[j]   = Σ V[a u, b u] E_j[a,b]           g_e_u[j,x] = Σ V[a x, b u] E_j[a,b]
    a_j[j,x,y] = Σ V[a x, b y] E_j[a,b]           a_jk[j,k,x,y] = h[j,k,x,y] + h[k,j,y,x],
                                                  h[j,k,x,y] = Σ C[a x, bc, d y] E_j[a,b] E_k[c,d]

(u the column of ``u`` in ``v``).  Against :func:`dmixed.kernels.hessian_contributions`'
per-group products of ``E_j`` with ``S_i`` and ``G_i`` (``(m, r, r, G)`` and
``(r, m, p, G)`` temporaries, seven einsums per chunk) this touches ``r (p+1) r(r+1)/2``
numbers per group once, and its few temporaries do not grow with the number of
parameters ``m`` (nor do its page faults): at 2k–20k groups and r = 2 the sums take
1/6–1/7 of the per-group form's time (benchmarks/RESULTS.md, ninth session).  The
``r⁴ (p+1)²`` entries of ``C`` make it the form for small ``r`` only
(:data:`dmixed.kernels.groups.HESSIAN_MOMENTS_MAX_R`).
The same sums in another order: they agree with the per-group form to rounding
(tests/kernels/test_hessian_moments.py, 1e-12 of each field's largest entry).

Source: the sums are DESIGN.md §5's (the Hessian of the profiled likelihood in
``[β, vech(Ψ*), τ*]``, :func:`dmixed.fit.objective.hessian`); the moment form is this
module's.
"""

from __future__ import annotations

import functools
import math
from types import ModuleType

import numpy as np

from ..stats import tril_indices
from .conditionals import gram_rows, sparse_rows

__all__ = ["HessianMoments", "contract", "full_gather", "full_sums"]


def _pair_positions(r: int) -> np.ndarray:
    """(r, r): where ``S[a, b]`` (and ``S[b, a]``, ``S`` symmetric) lies in the stored
    lower triangle (:func:`~dmixed.stats.tril_indices` order)."""
    rows, cols = tril_indices(r)
    pair = np.empty((r, r), dtype=np.intp)
    pair[rows, cols] = pair[cols, rows] = np.arange(rows.size)
    return pair


class HessianMoments:
    """The sums ``A``, ``V`` and ``C`` (module docstring) over chunks of groups.

    Parameters
    ----------
    r : int
        Random-effect coordinates per group.
    k : int
        ``p + 1``: columns of ``[X y]``.
    """

    def __init__(self, r: int, k: int) -> None:
        self.r, self.k = r, k
        self.rows, self.cols = tril_indices(r)
        n_pair = self.rows.size
        self.a = np.zeros((n_pair, n_pair))
        self.v = np.zeros((r * k, r * k))
        self.c = np.zeros((r * k * n_pair, r * k))

    def add(self, s: np.ndarray, h: np.ndarray, w: np.ndarray) -> None:
        """Add a chunk's groups: ``s`` (r, r, G) entry-major ``S_i``, ``h`` (r, p+1, G)
        entry-major ``H_i`` (overwritten: its last column becomes ``u_i = H_i w``, summed
        as ``einsum`` sums it whatever ``r``) and ``w`` (p+1,) ``[−β; 1]``."""
        h[:, -1] = np.einsum("ajg,j->ag", h, w)
        self.add_pairs(s[self.rows, self.cols], h)

    def add_pairs(self, s_pairs: np.ndarray, v: np.ndarray, w: np.ndarray | None = None) -> None:
        """:meth:`add` of ``S_i``'s lower triangle ``s_pairs`` (pairs, G) (in
        :func:`~dmixed.stats.tril_indices` order) and ``v`` (r, p+1, G) or (r (p+1), G):
        the entry-major ``[G_i, u_i]``, ``u_i = H_i w`` in the last column; with ``w``,
        ``v`` is ``H_i`` itself and ``u_i`` is made here (``v`` is not changed) as the
        dense kernels summed it (:func:`_residual_side`).

        ``C`` is the BLAS product of the rows ``v S`` (every ``v_i,ax S_i,bc`` in ``C``'s
        row order, made in place beside ``v``) and ``v'``; ``V`` is :func:`gram_rows` of
        ``v``.  Not one product of ``[v; v S]`` and ``v'``: BLAS blocks a product by its
        rows, so the sums of a taller product differ in the last bits for some shapes,
        and those bits move a quasi-Newton fit that follows the Newton steps.  A wide
        ``v`` of mostly zeros (:func:`~dmixed.kernels.conditionals.sparse_rows`): the
        same sums as sparse products, its zeros skipped (equal to rounding)."""
        n_pair, g = s_pairs.shape
        r, k = self.r, self.k
        rk = r * k
        rows = np.empty((rk * (1 + n_pair), g))
        vr = rows[:rk]
        vr[...] = v.reshape(rk, g)
        if w is not None:  # u_i = H_i w in place of the last column
            vr.reshape(r, k, g)[:, -1] = _residual_side(v.reshape(r, k, g), w)
        self.a += gram_rows(s_pairs)
        vs = sparse_rows(vr)
        if vs is not None:  # a wide, mostly-zero v (a fixed factor of many levels)
            self.v += (vs @ vs.T).toarray()
            c = self.c.reshape(rk, n_pair, rk)
            for q in range(n_pair):  # over S_i's entries, not groups
                c[:, q] += (vs.multiply(s_pairs[q][None, :]).tocsr() @ vs.T).toarray()
            return
        np.multiply(vr[:, None], s_pairs[None], out=rows[rk:].reshape(rk, n_pair, g))
        self.v += gram_rows(vr)
        self.c += rows[rk:] @ vr.T

    def sums(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(A, V, C)`` as stored, for a kernel that adds into them the upper triangles
        only (then :meth:`mirror`)."""
        return self.a, self.v, self.c

    def mirror(self) -> None:
        """Mirror the upper triangles of ``A``, ``V`` and of ``C`` under ``a x ↔ d y``
        onto the lower ones (what :meth:`add_pairs` sums in full)."""
        for arr in (self.a, self.v):
            lower = np.tril_indices(arr.shape[0], -1)
            arr[lower] = arr.T[lower]
        rk = self.r * self.k
        c = self.c.reshape(rk, -1, rk)  # [a x, pair, d y]
        lower = np.tril_indices(rk, -1)
        c.transpose(1, 0, 2)[:, lower[0], lower[1]] = c.transpose(1, 2, 0)[:, lower[0], lower[1]]

    def contract(self, basis: np.ndarray) -> tuple[np.ndarray, ...]:
        """The fields of :class:`~dmixed.kernels.HessianSums` for ``basis`` (m, r, r),
        the ``E_j`` (symmetric): ``(tr_ss, u_s_u, u_e_u, g_e_u, a_j, a_jk)``."""
        return contract(self.a, self.v, self.c, basis, self.r, self.k)


def contract(
    a: np.ndarray, v: np.ndarray, c: np.ndarray, basis: np.ndarray, r: int, k: int
) -> tuple[np.ndarray, ...]:
    """The fields of :class:`~dmixed.kernels.HessianSums` ``(tr_ss, u_s_u, u_e_u,
    g_e_u, a_j, a_jk)`` of the sums ``A``, ``V`` and ``C`` (module docstring, laid out
    as :class:`HessianMoments` holds them) for ``basis`` (m, r, r), the ``E_j``
    (symmetric)."""
    p = k - 1
    m = basis.shape[0]
    pair = _pair_positions(r)
    e = basis.reshape(m, r * r)  # E_j[a, b] at column a r + b
    # A read as [(b, c), (d, a)]: r⁴ numbers, whatever k
    a_read = a[pair[:, :, None, None], pair[None, None]]  # [a, b, c, d]
    tr_ss = e @ np.ascontiguousarray(a_read.transpose(1, 2, 3, 0)).reshape(r * r, r * r) @ e.T
    # V read as [(a, b), (x, y)]: a transposed copy, the size of V
    v_read = v.reshape(r, k, r, k).transpose(0, 2, 1, 3).reshape(r * r, k * k)
    ev = (e @ v_read).reshape(m, k, k)  # Σ_ab E_j[a,b] V[a x, b y]
    # Σ_abcd E_j[a,b] E_k[c,d] C[a x, bc, d y]: (j, k, x, y), first over (a, b) one c
    # at a time (C read as [(a, b), (d, x, y)] for that c: r³ k² numbers, never the
    # r⁴ k² of every (c, d) at once), then over (c, d); each entry the same two
    # products over the r² entries of E_j and E_k
    c5 = c.reshape(r, k, r * (r + 1) // 2, r, k)  # [a, x, pair, d, y]
    first = np.empty((m, r, r, k, k))  # [j, c, d, x, y]
    for cc in range(r):
        read = c5[:, :, pair[:, cc]].transpose(0, 2, 3, 1, 4)  # [a, b, d, x, y]
        first[:, cc] = (e @ read.reshape(r * r, r * k * k)).reshape(m, r, k, k)
    ec = (e @ first.reshape(m, r * r, k * k)).reshape(m, m, k, k)
    half = ec[:, :, :p, :p]
    return (
        tr_ss,
        np.ascontiguousarray(ec[:, :, p, p]),
        np.ascontiguousarray(ev[:, p, p]),
        np.ascontiguousarray(ev[:, :p, p]),
        np.ascontiguousarray(ev[:, :p, :p]),
        half + half.transpose(1, 0, 3, 2),
    )


#: :func:`_full_gather`'s cache: a fit asks for one basis and ``k`` (a process that fits
#: several models, a few); each entry holds ``(n n + m + m m + m p p + m m p p) × width``
#: positions, ``O(m² p²)``, so only a few are kept
_FULL_GATHER_CACHE = 4


@functools.lru_cache(maxsize=_FULL_GATHER_CACHE)
def _full_gather(basis: bytes, m: int, r: int, k: int) -> np.ndarray:
    """The positions whose sums are :func:`full_sums`' entries (made once per basis and
    ``k``), padded with the position of the zero (every ``E_j`` entry is 0 or 1: each
    entry is a plain sum of stored ones).

    Made block by block with index arithmetic over ``x, y`` (a loop over the pairs
    ``j, i`` of basis matrices only); each row lists its positions in the order of the
    products that define it (``h`` below), so that its sum adds them in that order."""
    e = np.frombuffer(basis, dtype=np.float64).reshape(m, r, r)
    if not np.isin(e, (0.0, 1.0)).all():
        raise ValueError("the basis entries must be 0 or 1")
    p = k - 1
    rk = r * k
    rows, cols = tril_indices(r)
    n_pair = rows.size
    pair = np.empty((r, r), dtype=np.intp)
    pair[rows, cols] = pair[cols, rows] = np.arange(n_pair)
    side = rk + n_pair  # the rows of V and A's product
    off_c = side * side
    off_a = off_c + rk * n_pair * rk
    zero = off_a + p * p
    support = [np.nonzero(e[j]) for j in range(m)]  # (a, b) of each nonzero, C order
    n = p + m
    xs = np.arange(p)
    gx, gy = xs[:, None], xs[None, :]  # x down, y across: (p, p)

    def v(a, x, b, y):  # V[a x, b y]: the entries of ``a`` (s,) last
        return (a * k + x[..., None]) * side + b * k + y[..., None]

    def h(j, i, x, y):  # Σ over E_j[a,b] E_i[c,d] of C[a x, bc, d y], (a,b) outer
        (a, b), (cc, d) = support[j], support[i]
        a, b = np.repeat(a, cc.size), np.repeat(b, cc.size)
        cc, d = np.tile(cc, support[j][0].size), np.tile(d, support[j][0].size)
        return off_c + ((a * k + x[..., None]) * n_pair + pair[b, cc]) * rk + d * k + y[..., None]

    blocks: list[tuple[tuple[int, ...], list[tuple[tuple, np.ndarray]]]] = []
    # half Q's second derivatives, [A, G'E u; u'E G, u'E S E u], rows i, columns j
    top: list[tuple[tuple, np.ndarray]] = []
    if p:
        top.append(((slice(0, p), slice(0, p)), (off_a + gx * p + gy)[..., None]))
    at_u = np.array(p)
    for jj in range(m):
        a, b = support[jj]
        if p:
            border = v(a, xs, b, at_u)  # (p, s): G'E_jj u, in rows and in columns
            top.append(((slice(0, p), p + jj), border))
            top.append(((p + jj, slice(0, p)), border))
        for ii in range(m):
            top.append(((p + jj, p + ii), h(jj, ii, at_u, at_u)))
    blocks.append(((n, n), top))
    u_e_u = [((j,), v(support[j][0], at_u, support[j][1], at_u)) for j in range(m)]
    blocks.append(((m,), u_e_u))
    traces = []  # tr(S E_j S E_i) = Σ S_ab E_j[b,c] S_cd E_i[d,a], (b,c) outer
    for j in range(m):
        b, cc = support[j]
        for i in range(m):
            d, a = support[i]
            made = (rk + pair[a[None, :], b[:, None]]) * side + rk + pair[cc[:, None], d[None, :]]
            traces.append(((j, i), made.ravel()))
    blocks.append(((m, m), traces))
    # G'E_j G, and G'(E_j S E_i + E_i S E_j)G
    blocks.append(((m, p, p), [((j,), v(support[j][0], gx, support[j][1], gy)) for j in range(m)]))
    both = [
        ((j, i), np.concatenate((h(j, i, gx, gy), h(i, j, gy, gx)), axis=-1))
        for j in range(m)
        for i in range(m)
    ]
    blocks.append(((m, m, p, p), both))
    width = max(
        (made.shape[-1] for shape, parts in blocks if 0 not in shape for _, made in parts),
        default=0,
    )
    pieces = []
    for shape, parts in blocks:
        out = np.full((*shape, width), zero, dtype=np.intp)
        if out.size:
            for at, made in parts:
                out[at][..., : made.shape[-1]] = made
        pieces.append(out.reshape(math.prod(shape), width))
    index = np.concatenate(pieces)
    index.flags.writeable = False
    return index


def full_gather(basis: np.ndarray, k: int) -> np.ndarray:
    """The positions :func:`full_sums` sums for ``basis`` (m, r, r) and ``k``:
    ``(n n + m + m m + m p p + m m p p, width)`` (``n = p + m``) flat positions into the
    concatenation ``[va, c, A, 0]`` of its inputs, one entry of its outputs a row (in their
    order), padded with the position of the zero; read-only, made once per basis and
    ``k``.  What the extension's ``profiled_hessian`` (:mod:`~dmixed.kernels.native`) sums
    as :func:`full_sums` does.

    Raises
    ------
    ValueError
        An entry of ``basis`` is neither 0 nor 1.
    """
    m, r, _ = basis.shape
    return _full_gather(np.ascontiguousarray(basis).tobytes(), m, r, k)


def full_sums(
    va: np.ndarray,
    c: np.ndarray,
    a: np.ndarray,
    basis: np.ndarray,
    k: int,
    ext: ModuleType | None = None,
) -> tuple[np.ndarray, ...]:
    """The contractions of :func:`contract` and ``[X y]'V*⁻¹[X y]``'s ``A`` in one
    gather: ``(half_q, u_e_u, tr_ss, a_j, a_jk)`` with ``half_q`` the (p+m) × (p+m)
    matrix ``[A, g_e_u'; g_e_u, u_s_u]`` of :func:`~dmixed.fit.objective.hessian`
    (``a`` its ``A``).  ``va`` is the product of the rows ``[v; S pairs]`` with
    themselves (``V`` and the moments' ``A`` as its diagonal blocks), ``c`` the
    moments' ``C``; the basis entries are 0 or 1, so each entry is a sum of stored
    ones (in another order than :func:`contract` adds them: to rounding).  With the
    extension ``ext`` (:mod:`~dmixed.kernels.native`) its ``gathered_sums`` adds each
    row as numpy does (the same sums to the bit) without the ``rows × width`` array of
    positions' numbers; None: numpy."""
    m = basis.shape[0]
    p = k - 1
    index = full_gather(basis, k)
    flat = np.concatenate((va.ravel(), c.ravel(), a.ravel(), _ZERO))
    if ext is not None and 0 < index.shape[1] <= ext.MAX_GATHER_WIDTH:
        sums = np.empty(index.shape[0])
        ext.gathered_sums(flat, index, index.shape[1], sums)
    else:
        sums = flat.take(index).sum(axis=1)
    n = p + m
    e1 = n * n
    e2 = e1 + m
    e3 = e2 + m * m
    e4 = e3 + m * p * p
    return (
        sums[:e1].reshape(n, n),
        sums[e1:e2],
        sums[e2:e3].reshape(m, m),
        sums[e3:e4].reshape(m, p, p),
        sums[e4:].reshape(m, m, p, p),
    )


_ZERO = np.zeros(1)


def _residual_side(h: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``u_i = H_i w`` (r, G) of entry-major ``h`` (r, k, G): a matrix-vector product
    for ``r = 1`` (the order :class:`~dmixed.kernels.dense1.Dense1Statistics` has always
    summed it), ``einsum`` for wider ``r`` (as :meth:`HessianMoments.add` sums it;
    :class:`~dmixed.kernels.dense2.Dense2Step` makes its own ``u_i`` with its rows).
    The two orders differ in the last bits (for ``k ≥ 3``), and a last bit of the Newton
    steps' Hessian can move a quasi-Newton fit that follows them by its tolerance."""
    if h.shape[0] == 1:
        return w @ h
    return np.einsum("ajg,j->ag", h, w)
