"""The compiled step sums for two random-effect coordinates in one fused pass over the
groups: :func:`step`, for ``r = 2`` and ``k = p + 1`` up to
:data:`dmixed.kernels.compiled.FUSED_MAX_K` (which chooses it).

:func:`dmixed.kernels.jit.step` writes each run of groups' conditional values to
buffers and then sums every output over the run with its own dot product (two loads a
product).  Here each group's ``P``, ``S``, ``H`` and ``P ZXy`` stay in registers and
every sum of the step is one scalar accumulator of a single loop over the groups
(compiled with reassociation allowed: the loop vectorizes, each accumulator a vector
register or a slot of the stack), so that a group's statistics are read once and a
product costs one multiply-add.  A loop with a scalar accumulator per output needs the
outputs' number fixed when it compiles: the loop's source is written for each ``k``
(:func:`fused_source`) when numba first types a call with that ``k`` (the ``cols``
argument, an empty array of ``k`` dimensions, carries it in the signature), and is
cached on disk with the entry point (``cache=True``).

The per-group formulas are those of :func:`dmixed.kernels.jit._conditional_r2` (the
closed form of :func:`dmixed.kernels.conditionals._conditional_2`): the determinants
come out the same bit for bit; the sums over groups are added in another order than
that kernel's (to rounding).

This module imports numba at its top: only :mod:`dmixed.kernels.compiled` imports it,
on first use, so ``import dmixed`` never loads numba.
"""

from __future__ import annotations

import numba
import numpy as np
from numba.extending import overload


def n_sums(k: int) -> int:
    """The number of sums :func:`step` adds into ``acc`` for ``k``: ``S``'s upper
    triangle (3), then the upper triangles of ``M = Σ ZXy'P ZXy`` (k(k+1)/2) and of
    ``Σ H[0]H[0]'``, all of ``Σ H[0]H[1]'`` (k²), the upper triangle of
    ``Σ H[1]H[1]'``."""
    tri = k * (k + 1) // 2
    return 3 + 3 * tri + k * k


def fused_source(k: int) -> str:
    """The source of the fused loop for ``k`` (``impl``, the arguments of
    :func:`step`): the sums in the order :func:`n_sums` gives."""
    upper = [(x, y) for x in range(k) for y in range(x, k)]
    full = [(x, y) for x in range(k) for y in range(k)]
    sums = (
        ["s00", "s01", "s11"]
        + [f"m{x}_{y}" for x, y in upper]
        + [f"ta{x}_{y}" for x, y in upper]
        + [f"tb{x}_{y}" for x, y in full]
        + [f"tc{x}_{y}" for x, y in upper]
    )
    out = [
        "def impl(cols, zz, zxy, b00, b01, b11, det_b, dets, acc):",
        "    g = zz.shape[-1]",
        "    u00, u01, u11 = zz[0, 0], zz[0, 1], zz[1, 1]",
        "    d_out = dets[0]",
    ]
    out += [f"    f0_{j}, f1_{j} = zxy[0, {j}], zxy[1, {j}]" for j in range(k)]
    out += [f"    {v} = 0.0" for v in sums]
    body = [
        "x00, x01, x11 = u00[i], u01[i], u11[i]",
        "det_u = max(x00 * x11 - x01 * x01, 0.0)",
        "d = 1.0 + b00 * x00 + 2.0 * b01 * x01 + b11 * x11 + det_b * det_u",
        "d_out[i] = d",
        "inv = 1.0 / d",
        "p00 = (b00 + det_b * x11) * inv",
        "p11 = (b11 + det_b * x00) * inv",
        "p01 = (b01 - det_b * x01) * inv",
        "s00 += (x00 + det_u * b11) * inv",
        "s01 += (x01 - det_u * b01) * inv",
        "s11 += (x11 + det_u * b00) * inv",
        "m00 = b11 * x11 + b01 * x01",
        "m01 = -(b11 * x01 + b01 * x00)",
        "m10 = -(b01 * x11 + b00 * x01)",
        "m11 = b01 * x01 + b00 * x00",
    ]
    for j in range(k):
        body += [f"a{j} = f0_{j}[i]", f"c{j} = f1_{j}[i]"]
    for j in range(k):
        body += [
            f"h0_{j} = (m00 * a{j} + m01 * c{j} + a{j}) * inv",
            f"h1_{j} = (m10 * a{j} + m11 * c{j} + c{j}) * inv",
            f"z0_{j} = p00 * a{j} + p01 * c{j}",
            f"z1_{j} = p01 * a{j} + p11 * c{j}",
        ]
    for x, y in upper:
        body += [
            f"m{x}_{y} += a{x} * z0_{y} + c{x} * z1_{y}",
            f"ta{x}_{y} += h0_{x} * h0_{y}",
            f"tc{x}_{y} += h1_{x} * h1_{y}",
        ]
    body += [f"tb{x}_{y} += h0_{x} * h1_{y}" for x, y in full]
    out += ["    for i in range(g):"] + [f"        {line}" for line in body]
    out += [f"    acc[{t}] += {v}" for t, v in enumerate(sums)]
    return "\n".join(out) + "\n"


def _fused(cols, zz, zxy, b00, b01, b11, det_b, dets, acc):  # pragma: no cover
    """Typed only through its overload (:func:`_fused_impl`)."""
    raise NotImplementedError


# error_model="numpy": a division by zero gives inf/nan as in numpy, with no branch;
# reassociation lets LLVM vectorize the sums over the groups
@overload(_fused, jit_options={"fastmath": {"reassoc"}, "error_model": "numpy"})
def _fused_impl(cols, zz, zxy, b00, b01, b11, det_b, dets, acc):
    namespace: dict = {}
    exec(compile(fused_source(cols.ndim), f"<fused step, k={cols.ndim}>", "exec"), namespace)
    return namespace["impl"]


@numba.njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def step(cols, zz, zxy, b00, b01, b11, det_b, dets, acc):  # pragma: no cover
    """Add one entry-major chunk's step sums at ``r = 2`` to ``acc``
    (:func:`n_sums` of them, in that order) and write ``det K_i`` to ``dets[0]``.

    Parameters
    ----------
    cols : ndarray
        Empty, of ``k`` dimensions (``k`` = ``zxy.shape[1]``).
    zz : ndarray (2, 2, G)
    zxy : ndarray (2, k, G)
    b00, b01, b11 : float
        ``B = ΛΛ'``.
    det_b : float
        ``det(B)``.
    dets : ndarray (1, G)
    acc : ndarray (:func:`n_sums` (k),)
    """
    _fused(cols, zz, zxy, b00, b01, b11, det_b, dets, acc)


def columns_tag(k: int) -> np.ndarray:
    """The ``cols`` argument of :func:`step` for ``k``."""
    return np.empty((0,) * k)
