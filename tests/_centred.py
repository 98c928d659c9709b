"""Designs whose random design is close to singular within groups, and their
log-likelihood in 40 digits (tests/fit/test_centred.py, benchmarks/bench_centred.py)."""

from __future__ import annotations

import mpmath
import numpy as np


def near_constant(seed=11, n_groups=30, sizes=(2, 12), delta=1e-6, spread=7500.0, odd=None):
    """(y, exog, g, zrows): a random intercept of sd ``spread`` and a random slope on a
    column ``c_i + delta·N(0, 1)`` per row (``c_i`` an integer per group; group ``odd``,
    if any, with ``delta`` 1 and the others constant), residual sd 1."""
    rng = np.random.default_rng(seed)
    size = rng.integers(*sizes, n_groups)
    g = np.repeat(np.arange(n_groups), size)
    c = rng.integers(-17, 22, n_groups).astype(float)[g]
    jitter = rng.normal(size=g.size)
    if odd is None:
        c = c + delta * jitter
    else:
        c = np.where(g == odd, c + jitter, c)
    x2 = rng.normal(size=g.size)
    b0 = spread * rng.normal(size=n_groups)[g]
    b1 = 3.0 * rng.normal(size=n_groups)[g]
    y = 1 + 0.5 * c + b0 + b1 * c + x2 + rng.normal(size=g.size)
    exog = np.column_stack([np.ones(g.size), c, x2])
    return y, exog, g, exog[:, :2].copy()


def mp_llf(y, exog, g, zrows, lmat, reml=True):
    """ℓ at ``Ψ* = LL'`` (β and σ² profiled) in 40 digits: per group
    ``[X y]'V*⁻¹[X y] = A'A − A'ZL (I + L'Z'ZL)⁻¹ L'Z'A`` and ``log|I + L'Z'ZL|`` from
    sums of the float64 rows in mpmath (nothing of the data's size lost)."""
    n, p = exog.shape
    xy = np.column_stack([exog, y])
    k, q = p + 1, zrows.shape[1]
    with mpmath.workdps(40):
        lm = mpmath.matrix(np.asarray(lmat).tolist())
        t = mpmath.zeros(k, k)
        logdet = mpmath.mpf(0)
        for grp in np.unique(g):
            rows = g == grp
            a = mpmath.matrix(xy[rows].tolist())
            z = mpmath.matrix(zrows[rows].tolist())
            zl = z * lm
            kmat = mpmath.eye(q) + zl.T * zl
            za = zl.T * a
            t += a.T * a - za.T * mpmath.inverse(kmat) * za
            logdet += mpmath.log(mpmath.det(kmat))
        aa = t[:p, :p]
        b = t[:p, p]
        qf = t[p, p] - (b.T * mpmath.inverse(aa) * b)[0]
        fac = n - p if reml else n
        llf = -logdet / 2 - fac * mpmath.log(qf) / 2
        llf += fac * (mpmath.log(fac) - mpmath.log(2 * mpmath.pi) - 1) / 2
        if reml:
            llf -= mpmath.log(mpmath.det(aa)) / 2
        return float(llf)
