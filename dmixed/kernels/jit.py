"""Compiled (numba) per-group kernels: the step, Hessian and BLUP sums of
:mod:`~dmixed.kernels.groups` in one pass over the groups, without ``(r, r, G)``
temporaries.

This module imports numba at its top: only :mod:`dmixed.kernels.compiled` imports it,
on first use, so ``import dmixed`` never loads numba.  The functions compile on their
first call and keep the machine code on disk (``cache=True``).

Groups are taken in runs of :data:`RUN` (for r > 2 copied to contiguous run buffers).  For each
run, the per-group values (``P_i``, ``S_i``, ``H_i``, ``P_i ZXy_i``: :func:`_conditional`)
are written to small buffers by loops whose innermost index runs over the groups, so
that they compile to vector instructions, with the formulas and the order of operations
of :func:`dmixed.kernels.conditionals.conditional`: ``r = 1`` and ``r = 2`` in the closed
forms without subtraction (per group, bit for bit the numpy path's values), larger
``r`` through a dense Cholesky factor ``K_i = L L'`` (``P_i = W W'`` with
``W = Λ L⁻ᵀ``) and the general ``S = ZZ − ZZ·P·ZZ``.  The run's sums over groups are
then dot products over the run, compiled with reassociation allowed (vectorized sums;
only the order of the additions over groups differs from numpy's, as it does between
BLAS builds).

The entry points take one entry-major chunk (``zz`` (r, r, G), ``zxy`` (r, k, G), the
layout of :class:`~dmixed.kernels.groups.StatsBlock`), ``Λ``, ``B = ΛΛ'`` and
``det(B)``, after ``kind`` (:func:`_conditional`).
:func:`step` writes ``K``'s determinant factors to ``dets`` (``det K_i``
for ``r ≤ 2``; the diagonal of ``L_i`` otherwise: the caller takes the logarithms,
vectorized by numpy) and *adds* its sums into ``out_m`` (k, k), ``out_s`` (r, r),
``out_t`` (r, k, k) (``Σ H[a,:] ⊗ H[a,:]`` for the variance-component slots ``a ≥ q``),
``out_tre`` (q, q, k, k) (``Σ H[a,:] ⊗ H[c,:]``, ``a ≤ c < q``) and ``out_between``
(k, k); of the symmetric ones (``out_tre[a, a]`` among them) only the upper triangles
(the caller mirrors them).  :func:`hessian` adds the Hessian sums,
:func:`hessian_moments` (``r ≤ 2``) the moments they are contracted from instead,
:func:`random_effects` writes the BLUPs and conditional covariances (or
:func:`hessian_moments` with its moments, from one pass).

The inner loops index one-dimensional views with the loop counter itself: an offset
index (``x[a, j, lo + i]``) keeps numba's negative-index check in the loop and LLVM
from vectorizing it (4× slower sums).
"""

from __future__ import annotations

import numba
import numpy as np

#: groups per run: the run's buffers stay in the first-level cache
RUN = 256

# error_model="numpy": a division by zero gives inf/nan as in numpy, with no branch
# (which would keep the loops from being vectorized)
_exact = numba.njit(cache=True, error_model="numpy")
# the sums over a run: reassociation lets LLVM vectorize the additions
_sums = numba.njit(cache=True, error_model="numpy", fastmath={"reassoc"})


@_sums
def _dot(u, v, n):  # pragma: no cover
    """``Σ_{i<n} u_i v_i`` (vectorized: the additions may be reordered)."""
    acc = 0.0
    for i in range(n):
        acc += u[i] * v[i]
    return acc


@_sums
def _run_sums(zxy, lo, n, h, pz, s, q, out_m, out_s, out_t, out_tre):  # pragma: no cover
    """Add the sums over the run of groups ``lo … lo + n − 1`` of ``ZXy'·(P ZXy)``, ``S``
    and ``H ⊗ H`` to the outputs (``zxy``: the chunk, or the run's copy with ``lo = 0``)."""
    r, k = h.shape[0], h.shape[1]
    for x in range(k):
        for y in range(x, k):
            acc = 0.0
            for a in range(r):
                acc += _dot(zxy[a, x, lo : lo + n], pz[a, y], n)
            out_m[x, y] += acc
    for a in range(r):
        for c in range(a, r):
            row = s[a, c]
            acc = 0.0
            for i in range(n):
                acc += row[i]
            out_s[a, c] += acc
    for a in range(q):
        for c in range(a, q):
            for x in range(k):
                # on the diagonal blocks (c = a) only y ≥ x: the caller mirrors them
                for y in range(x if c == a else 0, k):
                    out_tre[a, c, x, y] += _dot(h[a, x], h[c, y], n)
    for a in range(q, r):
        for x in range(k):
            for y in range(x, k):
                out_t[a, x, y] += _dot(h[a, x], h[a, y], n)


@_exact
def _factor_run(zz, n, lam, tmp, chol, w, dets):  # pragma: no cover
    """``K_i = I + Λ'ZZ_iΛ = L_i L_i'`` (lower triangle of ``chol``, its diagonal also to
    ``dets`` (r, ≥ n)) and ``W_i = Λ L_i⁻ᵀ`` for the run's groups ``zz`` (r, r, ≥ n)."""
    r = lam.shape[0]
    for a in range(r):  # tmp = ZZ Λ
        for c in range(r):
            out = tmp[a, c]
            out[:n] = 0.0
            for e in range(r):
                x, le = zz[a, e], lam[e, c]
                for i in range(n):
                    out[i] += x[i] * le
    for a in range(r):  # K = I + Λ'(ZZ Λ), lower triangle
        for c in range(a + 1):
            out = chol[a, c]
            out[:n] = 1.0 if a == c else 0.0
            for e in range(r):
                x, le = tmp[e, c], lam[e, a]
                for i in range(n):
                    out[i] += le * x[i]
    for c in range(r):  # Cholesky, column by column
        diag = chol[c, c]
        for e in range(c):
            x = chol[c, e]
            for i in range(n):
                diag[i] -= x[i] * x[i]
        d_out = dets[c]
        for i in range(n):
            diag[i] = np.sqrt(diag[i])
            d_out[i] = diag[i]
        for a in range(c + 1, r):
            out = chol[a, c]
            for e in range(c):
                x, y = chol[a, e], chol[c, e]
                for i in range(n):
                    out[i] -= x[i] * y[i]
            for i in range(n):
                out[i] /= diag[i]
    for a in range(r):  # W L' = Λ by forward substitution
        for c in range(r):
            out = w[a, c]
            out[:n] = lam[a, c]
            for e in range(c):
                x, y = w[a, e], chol[c, e]
                for i in range(n):
                    out[i] -= x[i] * y[i]
            diag = chol[c, c]
            for i in range(n):
                out[i] /= diag[i]


@_exact
def _matmul_run(x, y, out, n):  # pragma: no cover
    """``out_i = X_i Y_i`` for the first ``n`` groups (entry-major)."""
    for a in range(x.shape[0]):
        for c in range(y.shape[1]):
            acc = out[a, c]
            acc[:n] = 0.0
            for e in range(x.shape[1]):
                u, v = x[a, e], y[e, c]
                for i in range(n):
                    acc[i] += u[i] * v[i]


@_exact
def _axpy(out, x, c, n):  # pragma: no cover
    """``out_i += c x_i`` for ``i < n``."""
    for i in range(n):
        out[i] += c * x[i]


@_exact
def _mul_acc(out, x, y, n):  # pragma: no cover
    """``out_i += x_i y_i`` for ``i < n``."""
    for i in range(n):
        out[i] += x[i] * y[i]


@_exact
def _buffers(r, k):  # pragma: no cover
    """A run's buffers: ``zz`` (r, r, RUN) and ``zxy`` (r, k, RUN) copies of the
    statistics, the determinant values ``dv`` (max(r, 2), RUN), ``sq`` (6, r, r, RUN)
    (``P``, ``S`` and four work matrices) and ``rect`` (2, r, k, RUN) (``H``, ``P ZXy``)."""
    return (
        np.empty((r, r, RUN)),
        np.empty((r, k, RUN)),
        np.empty((max(r, 2), RUN)),
        np.empty((6, r, r, RUN)),
        np.empty((2, r, k, RUN)),
    )


@_exact
def _load(zz, zxy, lo, n, zz_run, zxy_run):  # pragma: no cover
    """Copy groups ``lo … lo + n − 1`` of the chunk to the contiguous run buffers."""
    r, k = zxy.shape[0], zxy.shape[1]
    for a in range(r):
        for c in range(r):
            zz_run[a, c, :n] = zz[a, c, lo : lo + n]
        for j in range(k):
            zxy_run[a, j, :n] = zxy[a, j, lo : lo + n]


@_exact
def _conditional_r1(zz, zxy, lo, n, lam2, dv, sq, rect):  # pragma: no cover
    """``r = 1``: ``K = 1 + λ²U`` (to ``dv[0]``), ``P = λ²/K``, ``S = U/K``, ``H = F/K``."""
    u, kk, p, s = zz[0, 0, lo : lo + n], dv[0], sq[0, 0, 0], sq[1, 0, 0]
    for i in range(n):
        kk[i] = 1.0 + lam2 * u[i]
        p[i] = lam2 / kk[i]
        s[i] = u[i] / kk[i]
    for j in range(zxy.shape[1]):
        f, h_j, pz_j = zxy[0, j, lo : lo + n], rect[0, 0, j], rect[1, 0, j]
        for i in range(n):
            h_j[i] = f[i] / kk[i]
            pz_j[i] = p[i] * f[i]


@_exact
def _conditional_r2(zz, zxy, lo, n, b, det_b, dv, sq, rect):  # pragma: no cover
    """``r = 2`` in the closed form of :func:`dmixed.kernels.conditionals._conditional_2`
    (``d`` to ``dv[0]``, ``1/d`` to ``dv[1]``, ``adj(B) adj(U)`` to ``sq[2]``)."""
    b00, b01, b11 = b[0, 0], b[0, 1], b[1, 1]
    u00, u01, u11 = zz[0, 0, lo : lo + n], zz[0, 1, lo : lo + n], zz[1, 1, lo : lo + n]
    d, inv = dv[0], dv[1]
    pm, s, mm = sq[0], sq[1], sq[2]
    s00, s01, s11 = s[0, 0], s[0, 1], s[1, 1]
    p00, p01, p10, p11 = pm[0, 0], pm[0, 1], pm[1, 0], pm[1, 1]
    m00, m01, m10, m11 = mm[0, 0], mm[0, 1], mm[1, 0], mm[1, 1]
    for i in range(n):
        det_u = max(u00[i] * u11[i] - u01[i] * u01[i], 0.0)
        d[i] = 1.0 + b00 * u00[i] + 2.0 * b01 * u01[i] + b11 * u11[i] + det_b * det_u
        inv_d = 1.0 / d[i]
        inv[i] = inv_d
        p00[i] = (b00 + det_b * u11[i]) * inv_d
        p11[i] = (b11 + det_b * u00[i]) * inv_d
        p01[i] = (b01 - det_b * u01[i]) * inv_d
        p10[i] = p01[i]
        s00[i] = (u00[i] + det_u * b11) * inv_d
        s11[i] = (u11[i] + det_u * b00) * inv_d
        s01[i] = (u01[i] - det_u * b01) * inv_d
        m00[i] = b11 * u11[i] + b01 * u01[i]
        m01[i] = -(b11 * u01[i] + b01 * u00[i])
        m10[i] = -(b01 * u11[i] + b00 * u01[i])
        m11[i] = b01 * u01[i] + b00 * u00[i]
    s[1, 0, :n] = s01[:n]
    for a in range(2):
        ma0, ma1, pa0, pa1 = mm[a, 0], mm[a, 1], pm[a, 0], pm[a, 1]
        for j in range(zxy.shape[1]):
            f0, f1, fa = zxy[0, j, lo : lo + n], zxy[1, j, lo : lo + n], zxy[a, j, lo : lo + n]
            h_aj, pz_aj = rect[0, a, j], rect[1, a, j]
            for i in range(n):
                h_aj[i] = (ma0[i] * f0[i] + ma1[i] * f1[i] + fa[i]) * inv[i]
                pz_aj[i] = pa0[i] * f0[i] + pa1[i] * f1[i]


@_exact
def _conditional_general(zz, zxy, n, lam, dv, sq, rect):  # pragma: no cover
    """Any ``r``: ``P = WW'``, ``S = ZZ − (ZZ P) ZZ``, ``H = ZXy − (ZZ P) ZXy``
    (the diagonal of ``L`` to ``dv``)."""
    r, k = zxy.shape[0], zxy.shape[1]
    pm, s, tmp, chol, w, zzp = sq[0], sq[1], sq[2], sq[3], sq[4], sq[5]
    h, pz = rect[0], rect[1]
    _factor_run(zz, n, lam, tmp, chol, w, dv)
    for a in range(r):  # P = W W'
        for c in range(a + 1):
            out = pm[a, c]
            out[:n] = 0.0
            for e in range(r):
                _mul_acc(out, w[a, e], w[c, e], n)
            pm[c, a, :n] = out[:n]
    _matmul_run(zz, pm, zzp, n)
    _matmul_run(zzp, zz, s, n)
    _matmul_run(zzp, zxy, h, n)
    _matmul_run(pm, zxy, pz, n)
    for a in range(r):
        for c in range(r):
            x, out = zz[a, c], s[a, c]
            for i in range(n):
                out[i] = x[i] - out[i]
        for j in range(k):
            x, out = zxy[a, j], h[a, j]
            for i in range(n):
                out[i] = x[i] - out[i]


@_exact
def _conditional(  # pragma: no cover
    kind, zz, zxy, lo, n, lam, b, det_b, dv, sq, rect, zz_run, zxy_run
):
    """The run's ``P`` (``sq[0]``), ``S`` (``sq[1]``), ``H`` (``rect[0]``), ``P ZXy``
    (``rect[1]``) and determinant values (``dv``), by ``r``: ``kind`` is an empty array
    of ``min(r, 3)`` dimensions, so that numba compiles only the branch of its ``ndim``
    (a constant of the signature: each r's code is compiled and cached on its own).
    The closed forms read the chunk's groups ``lo … lo + n − 1`` where they lie; the
    general form first copies them to ``zz_run`` and ``zxy_run``."""
    if kind.ndim == 1:
        _conditional_r1(zz, zxy, lo, n, b[0, 0], dv, sq, rect)
    elif kind.ndim == 2:
        _conditional_r2(zz, zxy, lo, n, b, det_b, dv, sq, rect)
    else:
        _load(zz, zxy, lo, n, zz_run, zxy_run)
        _conditional_general(zz_run, zxy_run, n, lam, dv, sq, rect)


@_exact
def step(  # pragma: no cover
    kind, zz, zxy, lam, b, det_b, q, dets, out_m, out_s, out_t, out_tre, out_between
):
    """The step sums of one chunk (module docstring); ``dets`` (1 or r, G): ``det K_i``
    for ``r ≤ 2``, else the diagonal of ``L_i``.  For ``r = 1`` also ``between``, with
    ``c = 1/(U K)`` (0 where U = 0)."""
    r, k, g = zxy.shape
    zz_run, zxy_run, dv, sq, rect = _buffers(r, k)
    nd = dets.shape[0]
    for lo in range(0, g, RUN):
        n = min(RUN, g - lo)
        _conditional(kind, zz, zxy, lo, n, lam, b, det_b, dv, sq, rect, zz_run, zxy_run)
        for a in range(nd):
            dets[a, lo : lo + n] = dv[a, :n]
        if kind.ndim <= 2:
            _run_sums(zxy, lo, n, rect[0], rect[1], sq[1], q, out_m, out_s, out_t, out_tre)
        else:
            _run_sums(zxy_run, 0, n, rect[0], rect[1], sq[1], q, out_m, out_s, out_t, out_tre)
        if kind.ndim == 1:
            u, kk, c, fc = zz[0, 0, lo : lo + n], dv[0], sq[2, 0, 0], rect[0, 0]
            for i in range(n):
                c[i] = 1.0 / (u[i] * kk[i]) if u[i] > 0 else 0.0
            for j in range(k):
                f, fc_j = zxy[0, j, lo : lo + n], fc[j]
                for i in range(n):
                    fc_j[i] = f[i] * c[i]
            for x in range(k):
                for y in range(x, k):
                    out_between[x, y] += _dot(fc[x], zxy[0, y, lo : lo + n], n)


@_exact
def _residual_side(h, w, n, u):  # pragma: no cover
    """``u_i = H_i w`` for the run."""
    for a in range(h.shape[0]):
        ua = u[a]
        ua[:n] = 0.0
        for j in range(h.shape[1]):
            _axpy(ua, h[a, j], w[j], n)


@_exact
def _basis_values(s, h, u, basis, n, eu, seu, se, eg):  # pragma: no cover
    """``E_j u``, ``S E_j u``, ``S E_j`` and ``E_j G`` for the run (``G``: the first ``p``
    columns of ``H``; ``E_j G`` only where ``eg`` is not empty; the zero entries of
    ``E_j`` are skipped)."""
    m, r, p = basis.shape[0], basis.shape[1], h.shape[1] - 1
    with_g = eg.shape[0] > 0
    for j in range(m):
        e = basis[j]
        for a in range(r):
            eu[j, a, :n] = 0.0
            if with_g:
                for x in range(p):
                    eg[j, a, x, :n] = 0.0
            for c in range(r):
                se[j, a, c, :n] = 0.0
                if e[a, c] != 0.0:
                    _axpy(eu[j, a], u[c], e[a, c], n)
                    if with_g:
                        for x in range(p):
                            _axpy(eg[j, a, x], h[c, x], e[a, c], n)
            for c in range(r):
                for bb in range(r):
                    if e[bb, c] != 0.0:
                        _axpy(se[j, a, c], s[a, bb], e[bb, c], n)
        for a in range(r):
            seu[j, a, :n] = 0.0
            for bb in range(r):
                _mul_acc(seu[j, a], s[a, bb], eu[j, bb], n)


@_exact
def _hessian_values(s, h, u, basis, n, eu, seu, se, eg, seg):  # pragma: no cover
    """:func:`_basis_values` and ``S E_j G`` for the run."""
    m, r, p = basis.shape[0], basis.shape[1], eg.shape[2]
    _basis_values(s, h, u, basis, n, eu, seu, se, eg)
    for j in range(m):
        for a in range(r):
            for x in range(p):
                seg[j, a, x, :n] = 0.0
            for bb in range(r):
                for x in range(p):
                    _mul_acc(seg[j, a, x], s[a, bb], eg[j, bb, x], n)


@_exact
def _traced_values(h, basis, a_inv, n, ag, mm, me):  # pragma: no cover
    """``M = G A⁻¹G'`` (``mm``, r × r, through ``ag = A⁻¹G'``) and ``M E_j`` (``me``)
    for the run (the zero entries of ``E_j`` skipped)."""
    m, r, p = basis.shape[0], basis.shape[1], a_inv.shape[0]
    for bb in range(r):
        for x in range(p):
            out = ag[x, bb]
            out[:n] = 0.0
            for y in range(p):
                _axpy(out, h[bb, y], a_inv[x, y], n)
    for c in range(r):
        for bb in range(r):
            out = mm[c, bb]
            out[:n] = 0.0
            for x in range(p):
                _mul_acc(out, h[c, x], ag[x, bb], n)
    for j in range(m):
        e = basis[j]
        for c in range(r):
            for a in range(r):
                out = me[j, c, a]
                out[:n] = 0.0
                for bb in range(r):
                    if e[bb, a] != 0.0:
                        _axpy(out, mm[c, bb], e[bb, a], n)


@_sums
def _traced_run_sums(me, se, n, a_jk):  # pragma: no cover
    """Add the run's ``Σ tr(M E_j S E_k)`` to ``a_jk`` for ``k ≥ j`` (symmetric: the
    caller mirrors and doubles it)."""
    m, r = se.shape[0], se.shape[1]
    for j in range(m):
        for j2 in range(j, m):
            acc = 0.0
            for c in range(r):
                for a in range(r):
                    acc += _dot(me[j, c, a], se[j2, a, c], n)
            a_jk[j, j2] += acc


@_sums
def _shared_run_sums(h, u, eu, seu, se, eg, n, outs):  # pragma: no cover
    """Add the run's sums of both Hessian forms to ``outs`` = (tr_ss, u_s_u, u_e_u, g_e_u,
    a_j, ...) (the fields of :class:`~dmixed.kernels.HessianSums`; ``a_jk`` is the
    caller's).  The symmetric ones (``tr_ss``, ``u_s_u``) only for ``k ≥ j``, and ``a_j``
    only for ``y ≥ x``: the caller mirrors them.  ``a_j`` (``Σ G'E_j G``, read by the
    REML Hessian alone) only where ``eg`` holds ``E_j G`` (not empty)."""
    tr_ss, u_s_u, u_e_u, g_e_u, a_j = outs[0], outs[1], outs[2], outs[3], outs[4]
    m, r, p = se.shape[0], se.shape[1], g_e_u.shape[1]
    reml = eg.shape[0] > 0
    for j in range(m):
        for j2 in range(j, m):
            acc = 0.0
            for a in range(r):
                for c in range(r):
                    acc += _dot(se[j, a, c], se[j2, c, a], n)
            tr_ss[j, j2] += acc
            acc = 0.0
            for a in range(r):
                acc += _dot(eu[j, a], seu[j2, a], n)
            u_s_u[j, j2] += acc
        acc = 0.0
        for a in range(r):
            acc += _dot(eu[j, a], u[a], n)
        u_e_u[j] += acc
        for x in range(p):
            acc = 0.0
            for a in range(r):
                acc += _dot(eu[j, a], h[a, x], n)
            g_e_u[j, x] += acc
            if reml:
                for y in range(x, p):
                    acc = 0.0
                    for a in range(r):
                        acc += _dot(h[a, x], eg[j, a, y], n)
                    a_j[j, x, y] += acc


@_sums
def _hessian_run_sums(h, u, eu, seu, se, eg, seg, n, outs):  # pragma: no cover
    """Add the run's sums to ``outs`` = (tr_ss, u_s_u, u_e_u, g_e_u, a_j, half) (the
    fields of :class:`~dmixed.kernels.HessianSums`, ``half`` = ``Σ G'E_j S E_k G``
    before symmetrizing): :func:`_shared_run_sums`, and ``half`` (symmetric under
    ``(j, k, x, y) → (k, j, y, x)``, as ``E_j`` and ``S`` are symmetric) only for
    ``k ≥ j``: the caller mirrors it."""
    _shared_run_sums(h, u, eu, seu, se, eg, n, outs)
    half = outs[5]
    m, r, p = eg.shape[0], eg.shape[1], eg.shape[2]
    for j in range(m):
        for j2 in range(j, m):
            for x in range(p):
                for y in range(p):
                    acc = 0.0
                    for a in range(r):
                        acc += _dot(eg[j, a, x], seg[j2, a, y], n)
                    half[j, j2, x, y] += acc


@_exact
def hessian(kind, zz, zxy, lam, b, det_b, basis, w, outs):  # pragma: no cover
    """Add one chunk's Hessian sums to ``outs`` (:func:`_hessian_run_sums`)."""
    r, k, g = zxy.shape
    m, p = basis.shape[0], k - 1
    zz_run, zxy_run, dv, sq, rect = _buffers(r, k)
    u = np.empty((r, RUN))
    eu = np.empty((m, r, RUN))
    seu = np.empty((m, r, RUN))
    se = np.empty((m, r, r, RUN))
    eg = np.empty((m, r, p, RUN))
    seg = np.empty((m, r, p, RUN))
    for lo in range(0, g, RUN):
        n = min(RUN, g - lo)
        _conditional(kind, zz, zxy, lo, n, lam, b, det_b, dv, sq, rect, zz_run, zxy_run)
        _residual_side(rect[0], w, n, u)
        _hessian_values(sq[1], rect[0], u, basis, n, eu, seu, se, eg, seg)
        _hessian_run_sums(rect[0], u, eu, seu, se, eg, seg, n, outs)


@_exact
def hessian_traced(kind, zz, zxy, lam, b, det_b, basis, w, a_inv, reml, outs):  # pragma: no cover
    """Add one chunk's Hessian sums to ``outs`` with ``a_jk`` (m, m) as its traces against
    ``a_inv`` (``A⁻¹``, p × p), ``Σ tr(M E_j S E_k)`` with ``M = G A⁻¹G'`` for ``k ≥ j``
    (:func:`_traced_run_sums`; the caller mirrors and doubles it), the other fields as
    :func:`hessian`.  ``reml`` False: neither ``a_j`` nor ``a_jk`` (the REML Hessian's
    alone) is summed."""
    r, k, g = zxy.shape
    m, p = basis.shape[0], k - 1
    zz_run, zxy_run, dv, sq, rect = _buffers(r, k)
    u = np.empty((r, RUN))
    eu = np.empty((m, r, RUN))
    seu = np.empty((m, r, RUN))
    se = np.empty((m, r, r, RUN))
    mr = m if reml else 0
    eg = np.empty((mr, r, p, RUN))
    ag = np.empty((p, r, RUN))
    mm = np.empty((r, r, RUN))
    me = np.empty((mr, r, r, RUN))
    for lo in range(0, g, RUN):
        n = min(RUN, g - lo)
        _conditional(kind, zz, zxy, lo, n, lam, b, det_b, dv, sq, rect, zz_run, zxy_run)
        _residual_side(rect[0], w, n, u)
        _basis_values(sq[1], rect[0], u, basis, n, eu, seu, se, eg)
        _shared_run_sums(rect[0], u, eu, seu, se, eg, n, outs)
        if reml:
            _traced_values(rect[0], basis, a_inv, n, ag, mm, me)
            _traced_run_sums(me, se, n, outs[5])


@_sums
def _moment_run_sums(v, sp, sv, n, k, out_a, out_v, out_c):  # pragma: no cover
    """Add the run's ``A``, ``V`` and ``C`` of
    :class:`~dmixed.kernels.hessian_moments.HessianMoments` (``v`` (r k, RUN): the rows
    ``[G_i, u_i]``; ``sp`` (pairs, RUN): ``S_i``'s lower triangle; ``sv`` (pairs, r k,
    RUN): work).  Of ``A`` and ``V`` only the upper triangles; of ``C`` (symmetric under
    ``a x ↔ d y``) only ``a x ≤ d y``, and of those only where ``x`` and ``y`` are both
    ``p`` or both below it: the contraction reads no other entry into the Hessian sums
    (the caller mirrors them, the others stay zero)."""
    rk, npair = v.shape[0], sp.shape[0]
    p = k - 1
    for t in range(npair):
        for t2 in range(t, npair):
            out_a[t, t2] += _dot(sp[t], sp[t2], n)
    for i in range(rk):
        for j in range(i, rk):
            out_v[i, j] += _dot(v[i], v[j], n)
    for t in range(npair):
        st = sp[t]
        for j in range(rk):
            vj, out = v[j], sv[t, j]
            for g in range(n):
                out[g] = st[g] * vj[g]
    for i in range(rk):
        xp = i % k == p
        for j in range(i, rk):
            if (j % k == p) != xp:
                continue
            for t in range(npair):
                out_c[i * npair + t, j] += _dot(v[i], sv[t, j], n)


@_exact
def _moment_run(h, s, u, n, k, rows, cols, v, sp, sv, out_a, out_v, out_c):  # pragma: no cover
    """Add the run's moments (:func:`_moment_run_sums`) from its ``H`` (``h``), ``S``
    (``s``) and ``u`` (``v``, ``sp``, ``sv``: work)."""
    r = h.shape[0]
    for a in range(r):
        for x in range(k - 1):
            v[a * k + x, :n] = h[a, x, :n]
        v[a * k + k - 1, :n] = u[a, :n]
    for t in range(rows.size):
        sp[t, :n] = s[rows[t], cols[t], :n]
    _moment_run_sums(v, sp, sv, n, k, out_a, out_v, out_c)


@_exact
def _random_effects_run(b, u, pm, n, row0, blup, cov):  # pragma: no cover
    """The run's BLUPs ``B u_i`` and ``P_i`` into rows ``row0 … row0 + n − 1``: ``cov``
    (G, r²) takes each ``P_i`` row by row, or (G, r(r+1)/2) its upper triangle row by
    row (``P_i`` is symmetric, both halves written alike by the conditionals)."""
    r = b.shape[0]
    upper = cov.shape[1] != r * r
    for i in range(n):
        row = row0 + i
        for a in range(r):
            acc = 0.0
            for c in range(r):
                acc += b[a, c] * u[c, i]
            blup[row, a] = acc
        t = 0
        for a in range(r):
            for c in range(a if upper else 0, r):
                cov[row, t] = pm[a, c, i]
                t += 1


@_exact
def random_effects(kind, zz, zxy, lam, b, det_b, w, lo_out, blup, cov):  # pragma: no cover
    """One chunk's BLUPs ``B u_i`` and ``P_i`` into rows ``lo_out …`` of ``blup`` (G, r)
    and ``cov`` (G, r²), or (G, r(r+1)/2): :func:`_random_effects_run`."""
    r, k, g = zxy.shape
    zz_run, zxy_run, dv, sq, rect = _buffers(r, k)
    u = np.empty((r, RUN))
    for lo in range(0, g, RUN):
        n = min(RUN, g - lo)
        _conditional(kind, zz, zxy, lo, n, lam, b, det_b, dv, sq, rect, zz_run, zxy_run)
        _residual_side(rect[0], w, n, u)
        _random_effects_run(b, u, sq[0], n, lo_out + lo, blup, cov)


@_exact
def hessian_moments(  # pragma: no cover
    kind, zz, zxy, lam, b, det_b, w, rows, cols, out_a, out_v, out_c, lo_out, blup, cov
):
    """Add one chunk's moments ``A``, ``V``, ``C`` (:func:`_moment_run_sums`) for the
    closed forms (``r ≤ 2``); ``rows``, ``cols``: ``S``'s lower triangle in
    :func:`~dmixed.stats.tril_indices` order.  Unless ``blup`` is None (then ``cov``
    too; numba compiles that case without the branch), also the chunk's BLUPs and
    conditional covariances into rows ``lo_out …`` of ``blup`` and ``cov``, as
    :func:`random_effects` writes them: each run's conditionals and ``u`` made once for
    both, the same values bit for bit."""
    r, k, g = zxy.shape
    npair = rows.size
    zz_run, zxy_run, dv, sq, rect = _buffers(r, k)
    u = np.empty((r, RUN))
    v = np.empty((r * k, RUN))
    sp = np.empty((npair, RUN))
    sv = np.empty((npair, r * k, RUN))
    for lo in range(0, g, RUN):
        n = min(RUN, g - lo)
        _conditional(kind, zz, zxy, lo, n, lam, b, det_b, dv, sq, rect, zz_run, zxy_run)
        _residual_side(rect[0], w, n, u)
        _moment_run(rect[0], sq[1], u, n, k, rows, cols, v, sp, sv, out_a, out_v, out_c)
        if blup is not None:
            _random_effects_run(b, u, sq[0], n, lo_out + lo, blup, cov)
