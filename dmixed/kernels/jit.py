"""Compiled (numba) per-group kernels: the step sums of :mod:`~dmixed.kernels.groups`
in one pass over the groups, without ``(r, r, G)`` temporaries.

This module imports numba at its top: only :func:`dmixed.kernels.compiled.step_sums`
imports it, on first use, so ``import dmixed`` never loads numba.  The functions
compile on their first call and keep the machine code on disk (``cache=True``).

Groups are taken in runs of :data:`RUN`.  For each run, the per-group values
(``P_i``, ``S_i``, ``H_i``, ``P_i ZXy_i``) are written to small buffers by loops whose
innermost index runs over the groups, so that they compile to vector instructions,
with the formulas and the order of operations of
:func:`dmixed.kernels.groups._conditional`: ``r = 1`` and ``r = 2`` in the closed forms
without subtraction (per group, bit for bit the numpy path's values), larger ``r``
through a dense Cholesky factor ``K_i = L L'`` (``P_i = W W'`` with ``W = Λ L⁻ᵀ``) and
the general ``S = ZZ − ZZ·P·ZZ``.  The run's sums over groups are then dot products
over the run, compiled with reassociation allowed (vectorized sums; only the order of
the additions over groups differs from numpy's, as it does between BLAS builds).

Every entry point takes one entry-major chunk (``zz`` (r, r, G), ``zxy`` (r, k, G), the
layout of :class:`~dmixed.kernels.groups.StatsBlock`), writes ``K``'s determinant
factors to ``dets`` (``det K_i`` (G,) for ``r ≤ 2``; the diagonal of ``L_i``, (r, G),
otherwise: the caller takes the logarithms, vectorized by numpy) and *adds* its sums
into ``out_m`` (k, k), ``out_s`` (r, r), ``out_t`` (r, k, k) (``Σ H[a,:] ⊗ H[a,:]`` for
the variance-component slots ``a ≥ q``), ``out_tre`` (q, q, k, k) (``Σ H[a,:] ⊗ H[c,:]``,
``a ≤ c < q``) and ``out_between`` (k, k); of the symmetric ones only the upper
triangles (the caller mirrors them).

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
    and ``H ⊗ H`` to the outputs (``zxy``: the chunk, C-contiguous, so that its
    ``[a, x, lo : lo + n]`` are contiguous vectors)."""
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
                for y in range(k):
                    out_tre[a, c, x, y] += _dot(h[a, x], h[c, y], n)
    for a in range(q, r):
        for x in range(k):
            for y in range(x, k):
                out_t[a, x, y] += _dot(h[a, x], h[a, y], n)


@_exact
def step_r1(zz, zxy, lam2, q, dets, out_m, out_s, out_t, out_tre, out_between):  # pragma: no cover
    """``r = 1``: ``K = 1 + λ²U``, ``P = λ²/K``, ``S = U/K``, ``H = F/K`` and
    ``between`` with ``c = 1/(U K)`` (0 where U = 0)."""
    k, g = zxy.shape[1], zxy.shape[2]
    h = np.empty((1, k, RUN))
    pz = np.empty((1, k, RUN))
    s = np.empty((1, 1, RUN))
    fc = np.empty((k, RUN))
    p = np.empty(RUN)
    c = np.empty(RUN)
    for lo in range(0, g, RUN):
        n = min(RUN, g - lo)
        u = zz[0, 0, lo : lo + n]
        kk = dets[lo : lo + n]
        s_run = s[0, 0]
        for i in range(n):
            kk[i] = 1.0 + lam2 * u[i]
            p[i] = lam2 / kk[i]
            s_run[i] = u[i] / kk[i]
            c[i] = 1.0 / (u[i] * kk[i]) if u[i] > 0 else 0.0
        for j in range(k):
            f = zxy[0, j, lo : lo + n]
            h_j, pz_j, fc_j = h[0, j], pz[0, j], fc[j]
            for i in range(n):
                h_j[i] = f[i] / kk[i]
                pz_j[i] = p[i] * f[i]
                fc_j[i] = f[i] * c[i]
        _run_sums(zxy, lo, n, h, pz, s, q, out_m, out_s, out_t, out_tre)
        for x in range(k):
            for y in range(x, k):
                out_between[x, y] += _dot(fc[x], zxy[0, y, lo : lo + n], n)


@_exact
def step_r2(zz, zxy, b, det_b, q, dets, out_m, out_s, out_t, out_tre):  # pragma: no cover
    """``r = 2`` in the closed form of :func:`dmixed.kernels.groups._conditional_2`."""
    k, g = zxy.shape[1], zxy.shape[2]
    b00, b01, b11 = b[0, 0], b[0, 1], b[1, 1]
    h = np.empty((2, k, RUN))
    pz = np.empty((2, k, RUN))
    s = np.empty((2, 2, RUN))
    pm = np.empty((2, 2, RUN))
    mm = np.empty((2, 2, RUN))
    inv = np.empty(RUN)
    for lo in range(0, g, RUN):
        n = min(RUN, g - lo)
        u00, u01, u11 = zz[0, 0, lo : lo + n], zz[0, 1, lo : lo + n], zz[1, 1, lo : lo + n]
        d = dets[lo : lo + n]
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
        for a in range(2):
            ma0, ma1, pa0, pa1 = mm[a, 0], mm[a, 1], pm[a, 0], pm[a, 1]
            for j in range(k):
                f0, f1, fa = zxy[0, j, lo : lo + n], zxy[1, j, lo : lo + n], zxy[a, j, lo : lo + n]
                h_aj, pz_aj = h[a, j], pz[a, j]
                for i in range(n):
                    h_aj[i] = (ma0[i] * f0[i] + ma1[i] * f1[i] + fa[i]) * inv[i]
                    pz_aj[i] = pa0[i] * f0[i] + pa1[i] * f1[i]
        _run_sums(zxy, lo, n, h, pz, s, q, out_m, out_s, out_t, out_tre)


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
def step_general(zz, zxy, lam, q, dets, out_m, out_s, out_t, out_tre):  # pragma: no cover
    """Any ``r``: ``P = WW'``, ``S = ZZ − (ZZ P) ZZ``, ``H = ZXy − (ZZ P) ZXy``."""
    r, k, g = zxy.shape
    tmp = np.empty((r, r, RUN))
    chol = np.empty((r, r, RUN))
    w = np.empty((r, r, RUN))
    pm = np.empty((r, r, RUN))
    zzp = np.empty((r, r, RUN))
    s = np.empty((r, r, RUN))
    h = np.empty((r, k, RUN))
    pz = np.empty((r, k, RUN))
    zz_run = np.empty((r, r, RUN))  # contiguous copies of the run's statistics
    zxy_run = np.empty((r, k, RUN))
    d_run = np.empty((r, RUN))
    for lo in range(0, g, RUN):
        n = min(RUN, g - lo)
        for a in range(r):
            for c in range(r):
                zz_run[a, c, :n] = zz[a, c, lo : lo + n]
            for j in range(k):
                zxy_run[a, j, :n] = zxy[a, j, lo : lo + n]
        _factor_run(zz_run, n, lam, tmp, chol, w, d_run)
        for c in range(r):
            dets[c, lo : lo + n] = d_run[c, :n]
        for a in range(r):  # P = W W'
            for c in range(a + 1):
                out = pm[a, c]
                out[:n] = 0.0
                for e in range(r):
                    x, y = w[a, e], w[c, e]
                    for i in range(n):
                        out[i] += x[i] * y[i]
                pm[c, a, :n] = out[:n]
        _matmul_run(zz_run, pm, zzp, n)
        _matmul_run(zzp, zz_run, s, n)
        _matmul_run(zzp, zxy_run, h, n)
        _matmul_run(pm, zxy_run, pz, n)
        for a in range(r):
            for c in range(r):
                x, out = zz_run[a, c], s[a, c]
                for i in range(n):
                    out[i] = x[i] - out[i]
            for j in range(k):
                x, out = zxy_run[a, j], h[a, j]
                for i in range(n):
                    out[i] = x[i] - out[i]
        _run_sums(zxy_run, 0, n, h, pz, s, q, out_m, out_s, out_t, out_tre)
