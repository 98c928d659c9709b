"""Which implementation runs the kernels, and the call into the compiled one.

The numpy kernels of :mod:`~dmixed.kernels.groups` and :mod:`~dmixed.kernels.rows` are
the reference; the numba kernels of :mod:`~dmixed.kernels.jit` (per group) and
:mod:`~dmixed.kernels.rows_jit` (per row) compute the same sums in one pass.  This
module is the one place that chooses between them: :func:`backend` for the per-group
sums, :func:`rows_compiled` for the per-row pass, both through :func:`forced` (the
``DMIXED_KERNELS`` environment variable).  numba is imported (and the
kernels compiled, or loaded from the on-disk cache) on the first call that picks it,
never by ``import dmixed``.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np

#: the environment variable that forces an implementation: ``numpy``, ``numba`` or
#: ``auto`` (the default)
ENV_VAR = "DMIXED_KERNELS"
#: with numba not loaded yet, blocks of at least this many groups (by ``r``; the last
#: entry for any larger ``r``) load it.  Importing numba and loading the cached kernels
#: costs about 0.37 s once per process; a fit evaluates the step about 5 times, and the
#: compiled step saves about 12, 36 and 530 ns per group and evaluation at r = 1, 2, 3
#: (benchmarks/RESULTS.md, seventh session), so a first fit repays the load from about
#: these sizes on.  Once numba is loaded, the compiled kernels are used at every size
#: (faster from 10 groups on).
MIN_GROUPS_COLD = (6_000_000, 2_000_000, 150_000)

#: the per-row pass, with numba not loaded yet, from this many rows: loading numba and
#: the cached kernel costs about 0.2 s once per process, which the pass repays within a
#: few fits of this size (benchmarks/RESULTS.md, seventh session)
ROWS_MIN_COLD = 500_000
#: the per-row pass, with numba already loaded, from this many rows
ROWS_MIN_LOADED = 10_000
#: the per-row pass runs compiled only while its table of sums (groups × terms × 8
#: bytes) is at most this large, about half a last-level cache: past it the compiled
#: pass's one table leaves the cache and each row costs a miss, while numpy's one
#: ``bincount`` per term works on tables a term-count times smaller.  1.25M rows into
#: 1M groups (a 64 MB table): 118-132 ms numpy against 290-370 ms compiled
#: (benchmarks/RESULTS.md, eighth session).  Under load, with the cache shared, numpy
#: won from 50k groups on; on a quiet machine the compiled pass won at 200k groups (a
#: 12.8 MB table, seventh session), so the limit keeps that size compiled.
ROWS_MAX_TABLE_BYTES = 16 << 20

_CHOICES = ("auto", "numpy", "numba")


def numba_available() -> bool:
    """Whether numba can be imported (without importing it)."""
    return importlib.util.find_spec("numba") is not None


def forced() -> str:
    """``"numpy"`` or ``"numba"`` when ``DMIXED_KERNELS`` forces one, else ``"auto"``.

    Raises
    ------
    ValueError
        ``DMIXED_KERNELS`` is set to anything else, or to ``numba`` when numba cannot
        be imported.
    """
    choice = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if choice not in _CHOICES:
        raise ValueError(
            f"environment variable {ENV_VAR} must be one of {_CHOICES}, got {choice!r}"
        )
    if choice == "numba" and not numba_available():
        raise ValueError(f"{ENV_VAR}=numba but numba cannot be imported")
    return choice


def rows_compiled(n_rows: int, table_bytes: int = 0) -> bool:
    """Whether the per-row pass over ``n_rows`` rows runs compiled: when forced, or
    when numba is importable, the rows are many enough (:data:`ROWS_MIN_COLD`, or
    :data:`ROWS_MIN_LOADED` once numba is loaded) and the table of sums
    (``table_bytes``) small enough (:data:`ROWS_MAX_TABLE_BYTES`).

    Raises
    ------
    ValueError
        As :func:`forced`.
    """
    choice = forced()
    if choice != "auto":
        return choice == "numba"
    if table_bytes > ROWS_MAX_TABLE_BYTES:
        return False
    if "numba" in sys.modules:
        return n_rows >= ROWS_MIN_LOADED
    return n_rows >= ROWS_MIN_COLD and numba_available()


def backend(n_groups: int, r: int) -> str:
    """``"numba"`` or ``"numpy"``: the implementation for a block of ``n_groups`` groups
    with ``r`` random-effect coordinates.

    ``DMIXED_KERNELS=numpy`` or ``=numba`` forces one; ``auto`` (or unset) picks numba
    when it is importable and either already loaded in this process or the block is
    large enough to repay loading it (:data:`MIN_GROUPS_COLD`).

    Raises
    ------
    ValueError
        ``DMIXED_KERNELS`` is set to anything else, or to ``numba`` when numba cannot
        be imported.
    """
    choice = forced()
    if choice != "auto":
        return choice
    if "numba" in sys.modules:
        return "numba"
    cold = MIN_GROUPS_COLD[min(max(r, 1), len(MIN_GROUPS_COLD)) - 1]
    return "numba" if n_groups >= cold and numba_available() else "numpy"


def _upper_to_full(a: np.ndarray) -> np.ndarray:
    """Mirror the upper triangle of the last two axes onto the lower one."""
    upper = np.triu(np.ones(a.shape[-2:], dtype=bool))
    return np.where(upper, a, np.swapaxes(a, -1, -2))


def step_sums(chunks, lam: np.ndarray, q: int, k: int):
    """The step sums over entry-major chunks, by the compiled kernels.

    Parameters
    ----------
    chunks : iterable of (ndarray (r, r, G_c), ndarray (r, k, G_c))
        :meth:`dmixed.kernels.StatsBlock.chunks`.
    lam : ndarray (r, r)
        Λ.
    q : int
        Number of ``exog_re`` coordinates.
    k : int
        ``p + 1``.

    Returns
    -------
    tuple
        ``(logdet, m, s, t_re, t_vc, between)`` as the fields of
        :class:`~dmixed.kernels.StepSums`.
    """
    from . import jit  # numba loads here, on first use

    lam = np.ascontiguousarray(lam, dtype=np.float64)
    r = lam.shape[0]
    logdet = 0.0
    m = np.zeros((k, k))
    s = np.zeros((r, r))
    t = np.zeros((r, k, k))
    tre = np.zeros((q, q, k, k))
    between = np.zeros((k, k))
    b = lam @ lam.T
    det_b = float(np.linalg.det(lam)) ** 2 if r == 2 else 0.0
    for zz, zxy in chunks:
        g = zz.shape[-1]
        if g == 0 or r == 0:
            continue
        if r == 1:
            dets = np.empty(g)
            jit.step_r1(zz, zxy, b[0, 0], q, dets, m, s, t, tre, between)
        elif r == 2:
            dets = np.empty(g)
            jit.step_r2(zz, zxy, b, det_b, q, dets, m, s, t, tre)
        else:
            dets = np.empty((r, g))
            jit.step_general(zz, zxy, lam, q, dets, m, s, t, tre)
        logdet += float(np.log(dets).sum()) * (2.0 if r > 2 else 1.0)
    for a in range(q):
        tre[a, a] = _upper_to_full(tre[a, a])
        for c in range(a):
            tre[a, c] = tre[c, a].T
    return (
        logdet,
        _upper_to_full(m),
        _upper_to_full(s),
        tre,
        _upper_to_full(t[q:]),
        _upper_to_full(between),
    )
