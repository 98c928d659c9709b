"""Which implementation runs the kernels, and the call into the compiled one.

The numpy kernels of :mod:`~dmixed.kernels.groups` and :mod:`~dmixed.kernels.rows` are
the reference; the numba kernels of :mod:`~dmixed.kernels.jit` (per group; the step
at two random-effect coordinates by the fused loop of :mod:`~dmixed.kernels.fused2_jit`) and
:mod:`~dmixed.kernels.rows_jit` (per row) compute the same sums in one pass.  This
module is the one place that chooses between them: :func:`backend` for the per-group
sums (step, Hessian, BLUPs), :func:`rows_pass` and :func:`rows_compiled` for the
per-row pass (and :func:`nested_numbering` for a nested component's numbering), all
through :func:`forced` (the ``DMIXED_KERNELS`` environment variable).  Where it picks the
compiled kernels, their Hessian moments and BLUPs at two random-effect coordinates and
``k`` up to :data:`~dmixed.kernels.native.MAX_K` run in the C extension where it loaded
(:func:`dmixed.kernels.native.extension`; ``DMIXED_NATIVE=numpy`` sends them to numba),
the rest in numba.  numba is imported
(and the kernels compiled, or loaded from the on-disk cache) on the first call that picks
it, never by ``import dmixed``.

Loading numba costs a fresh process about as much as a fit of millions of rows, so it is
rented before it is bought: while numba is not loaded the numpy kernels run and
:data:`LEDGER` adds up what they are estimated to cost beyond the compiled ones, per
group (:func:`backend`) and per row (:func:`rows_pass`); numba is loaded once that sum
reaches :data:`LOAD_NS`.  A process that stays up for many large passes (a Dask worker)
buys at its first large pass instead (:func:`load_eagerly`).
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from collections.abc import Iterator

import numpy as np

from . import native
from .native import env_choice

#: the environment variable that forces an implementation: ``numpy``, ``numba`` or
#: ``auto`` (the default)
ENV_VAR = "DMIXED_KERNELS"
#: what the compiled kernels save against numpy, in ns per group and call, by kernel
#: and ``r`` (1, 2, ≥ 3; benchmarks/bench_kernels.py, benchmarks/RESULTS.md eighth
#: session: the medians at 200k groups, rounded down).  The Hessian's against numpy's
#: moment form on the step's kept values, as a fit calls it (RESULTS.md, tenth session:
#: nothing saved at r ≤ 2).  ``hessian_traced``: the Hessian with ``a_jk`` traced
#: against ``A⁻¹`` (what an in-process fit asks for), the same up to ``r = 3`` and
#: nothing past it (:data:`NUMPY_FROM_R`)
SAVED_NS = {
    "step": (12, 36, 530),
    "hessian": (0, 0, 550),
    "hessian_traced": (0, 0, 550),
    "blups": (0, 18, 500),
}
#: how each kernel's saving grows past ``r = 3`` (the last column of :data:`SAVED_NS`):
#: times ``(r / 3) ** SAVED_GROWTH[kernel]``.  numpy's step factors and multiplies
#: ``r × r`` and ``r × k`` blocks a group (``k`` grows with ``r`` where the slopes are
#: also fixed effects); its Hessian past ``HESSIAN_MOMENTS_MAX_R = 3``
#: (:mod:`~dmixed.kernels.groups`) runs per group over ``m = r(r+1)/2`` derivatives,
#: with (m, r, r, G) temporaries.  The exponents fit the savings measured at r = 4, 5, 6
#: (20k groups of 10, a process's second fit on each path: benchmarks/RESULTS.md,
#: wider-s58), rounded down; without them a fit at r ≥ 4 was estimated to save what
#: one at r = 3 saves, a small part of what it saved
SAVED_GROWTH = {"step": 2.0, "hessian": 4.0, "hessian_traced": 0.0, "blups": 0.0}
#: the kernels whose numpy form is faster than the compiled one from this ``r`` on:
#: :func:`backend` picks numpy there (unless ``DMIXED_KERNELS=numba``), with numba
#: loaded or not, and charges nothing.  The traced Hessian past ``r = 3`` is contracted
#: from moments over the groups in numpy (:mod:`~dmixed.kernels.groups`), ``r⁴``
#: products a group in BLAS against the compiled per-group ``m² r²``, the faster from
#: r = 4 on (benchmarks/RESULTS.md, r4hess)
NUMPY_FROM_R = {"hessian_traced": 4}
#: calls of each kernel in a typical fit: about 5 evaluations, 2 Hessians (Newton
#: steps with BFGS updates, and the standard errors; traced against ``A⁻¹`` in process),
#: one set of BLUPs.  A Dask worker's fit calls the full ``"hessian"`` instead, which
#: this estimate does not count: from ``r = 4`` a fresh worker buys numba when its
#: ledger says so (a few numpy steps in), not at its first call
FIT_CALLS = {"step": 5, "hessian_traced": 2, "blups": 1}
#: importing numba and loading a fit's cached kernels, once per process (ns: a fresh
#: process's first fit forced to numba against one forced to numpy, bytecode cached;
#: benchmarks/RESULTS.md, "2026-12-04: the first fit of a fresh process")
LOAD_NS = 450e6
#: the estimated time the numpy kernels have cost this process beyond the compiled
#: ones (ns), and whether the compiled ones were bought (``bought``): once the cost
#: reaches :data:`LOAD_NS`, numba is loaded (rent until buying would have been cheaper:
#: a process never pays more than about twice the best choice made in hindsight)
LEDGER = {"owed_ns": 0.0, "bought": False}

#: what the compiled per-row pass of an in-process fit saves, in ns per row, against
#: the pass it replaces: the C extension's one pass over the rows
#: (:func:`~dmixed.kernels.rows.plain_statistics`; nothing saved: that pass is as fast
#: or faster) or numpy's ``bincount`` per term (rows with weights or variance
#: components, or no extension); the medians, rounded down (benchmarks/RESULTS.md,
#: "2026-12-04: the first fit of a fresh process")
ROWS_SAVED_NS = {"c": 0.0, "numpy": 5.0}
#: the per-row pass of a process that buys eagerly (:func:`load_eagerly`), with numba
#: not loaded yet, from this many rows: a long-lived process repays the load within a
#: few passes of this size (benchmarks/RESULTS.md, seventh session)
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
#: how this process buys numba for the per-row pass: by the ledger (``eager`` False,
#: the default: :func:`rows_pass`) or at its first pass of :data:`ROWS_MIN_COLD` rows
#: (:func:`load_eagerly`)
ROWS_POLICY = {"eager": False}
#: bytes of a cache line: a table of terms starts on one
#: (:func:`~dmixed.kernels.term_table.table_buffer`), so that the compiled sweep knows,
#: from the table's width alone, which lines a row can touch and asks for each of them
#: ahead (:func:`~dmixed.kernels.term_jit.row_prefetches`; a line not asked for is a
#: miss the loop waits on: benchmarks/RESULTS.md, lossy-s44)
CACHE_LINE = 64

_CHOICES = ("auto", "numpy", "numba")


@functools.cache
def numba_available() -> bool:
    """Whether numba can be imported (without importing it); looked up once per process
    (the look-up searches ``sys.path`` on disk: ~0.15 ms, several times per fit)."""
    return importlib.util.find_spec("numba") is not None


def forced() -> str:
    """``"numpy"`` or ``"numba"`` when ``DMIXED_KERNELS`` forces one, else ``"auto"``.
    ``"numba"`` is the compiled path, part of which is C at ``r = 2`` (module
    docstring); ``"numpy"`` the numpy kernels, whose own sums at ``r = 2`` run in C
    unless ``DMIXED_NATIVE=numpy`` (:mod:`~dmixed.kernels.native`).

    Raises
    ------
    ValueError
        ``DMIXED_KERNELS`` is set to anything else, or to ``numba`` when numba cannot
        be imported.
    """
    choice = env_choice(ENV_VAR, _CHOICES)
    if choice == "numba" and not numba_available():
        raise ValueError(f"{ENV_VAR}=numba but numba cannot be imported")
    return choice


def numba_loaded() -> bool:
    """Whether the compiled kernels are this process's already: numba imported, or
    bought by :data:`LEDGER` (the pass that bought it imports it)."""
    return bool(LEDGER["bought"]) or "numba" in sys.modules


def load_eagerly() -> None:
    """Have this process load numba at its first per-row pass of :data:`ROWS_MIN_COLD`
    rows, without the ledger (:data:`ROWS_POLICY`): for processes that stay up for many
    large passes, as the Dask engine's workers (a pass of numpy there costs more than
    the load within a few partitions).  Once per process; it cannot be undone."""
    ROWS_POLICY["eager"] = True


def rows_compiled(n_rows: int, table_bytes: int = 0) -> bool:
    """Whether a step of the per-row pass over ``n_rows`` rows runs compiled, as this
    process stands (nothing charged, nothing bought: :func:`rows_pass` decides a pass
    and the steps of the pass ask here): when forced, or when numba is importable, the
    table of sums (``table_bytes``) is small enough (:data:`ROWS_MAX_TABLE_BYTES`) and
    the rows are many enough: :data:`ROWS_MIN_LOADED` once numba is loaded
    (:func:`numba_loaded`), :data:`ROWS_MIN_COLD` before in a process that buys eagerly
    (:func:`load_eagerly`), never before otherwise.

    Raises
    ------
    ValueError
        As :func:`forced`.
    """
    return _rows_compiled_as(forced(), n_rows, table_bytes)


def _rows_compiled_as(choice: str, n_rows: int, table_bytes: int) -> bool:
    """:func:`rows_compiled` with ``DMIXED_KERNELS`` read already (``choice``, as
    :func:`forced` gives it): :func:`rows_pass` reads it once for its charge and its
    answer, so that both see the same choice."""
    if choice != "auto":
        return choice == "numba"
    if table_bytes > ROWS_MAX_TABLE_BYTES:
        return False
    if numba_loaded():
        return n_rows >= ROWS_MIN_LOADED
    return ROWS_POLICY["eager"] and n_rows >= ROWS_MIN_COLD and numba_available()


def rows_pass(n_rows: int, table_bytes: int = 0, against: str = "numpy") -> bool:
    """Whether an in-process fit's per-row pass over ``n_rows`` rows runs compiled: the
    one decision of the pass, made before its first step (each step then asks
    :func:`rows_compiled`, which answers from the state this call leaves: numba bought
    or not).

    With numba not loaded, in a process that buys by the ledger (the default), the pass
    runs the other one (``against``: ``"c"`` the C extension's pass, ``"numpy"`` the
    ``bincount`` per term) and adds to :data:`LEDGER` what it is estimated to cost beyond
    the compiled pass (``n_rows`` × :data:`ROWS_SAVED_NS`); once the ledger reaches
    :data:`LOAD_NS` (at once for a pass that alone would save as much), numba is bought
    and this pass runs compiled.  Passes below :data:`ROWS_MIN_LOADED` rows, or whose
    table of sums (``table_bytes``) is past :data:`ROWS_MAX_TABLE_BYTES`, would not run
    compiled anyway and are not charged.

    Raises
    ------
    ValueError
        As :func:`forced`; ``against`` not a key of :data:`ROWS_SAVED_NS`.
    """
    if against not in ROWS_SAVED_NS:
        raise ValueError(f"against must be one of {sorted(ROWS_SAVED_NS)}, got {against!r}")
    choice = forced()
    if (
        choice == "auto"
        and not ROWS_POLICY["eager"]
        and not numba_loaded()
        and n_rows >= ROWS_MIN_LOADED
        and table_bytes <= ROWS_MAX_TABLE_BYTES
        and numba_available()
    ):
        LEDGER["owed_ns"] += n_rows * ROWS_SAVED_NS[against]
        LEDGER["bought"] = LEDGER["owed_ns"] >= LOAD_NS
    return _rows_compiled_as(choice, n_rows, table_bytes)


def nested_numbering(n_entries: int):
    """The compiled numbering of a nested component's ``n_entries`` entries
    (:func:`dmixed.kernels.slots_jit.nested_pairs`, numba imported here) where the
    per-row pass over as many rows would run compiled (:func:`rows_compiled`: loading
    numba for it alone costs more than it saves; an in-process fit's pass decides first,
    :func:`rows_pass`), else None (numpy's numbering).

    Raises
    ------
    ValueError
        As :func:`forced`.
    """
    if not rows_compiled(n_entries):  # the pass's decision (rows_pass), not a new one
        return None
    from .slots_jit import nested_pairs  # numba loads here, on first use

    return nested_pairs


def saved_ns(kernel: str, r: int) -> float:
    """What one call of ``kernel`` (``"step"``, ``"hessian"``, ``"hessian_traced"`` or
    ``"blups"``) is estimated to save per group in the compiled kernels against numpy's,
    at ``r`` random-effect coordinates (ns): :data:`SAVED_NS` up to ``r = 3``, past it
    the ``r = 3`` saving times ``(r / 3) ** SAVED_GROWTH[kernel]``; nothing from
    :data:`NUMPY_FROM_R` on.  The one estimate :func:`backend` buys by.

    Raises
    ------
    KeyError
        ``kernel`` is not a key of :data:`SAVED_NS`.
    """
    saved = SAVED_NS[kernel][min(max(r, 1), 3) - 1]
    if r >= NUMPY_FROM_R.get(kernel, r + 1):
        return 0.0
    return saved * (r / 3.0) ** SAVED_GROWTH[kernel] if r > 3 else float(saved)


def backend(n_groups: int, r: int, kernel: str = "step") -> str:
    """``"numba"`` or ``"numpy"``: the implementation of ``kernel`` (``"step"``,
    ``"hessian"``, ``"hessian_traced"`` or ``"blups"``) for a block of ``n_groups``
    groups with ``r`` random-effect coordinates.

    ``DMIXED_KERNELS=numpy`` or ``=numba`` forces one; ``auto`` (or unset) picks numpy
    where numpy's form is the faster (:data:`NUMPY_FROM_R`: the traced Hessian from
    r = 4, nothing charged), else numba
    when it is importable and either already loaded in this process, or one fit of
    this size saves more than loading it costs (:func:`saved_ns`, :data:`FIT_CALLS`,
    :data:`LOAD_NS`: from about 7.5M, 2.3M, 106k, 86k, 57k, 41k and 23k groups at
    r = 1, 2, 3, 4, 5, 6 and 8), or the
    numpy kernels (per group, and the per-row pass: :func:`rows_pass`) have by now cost
    the process more than loading it would have (:data:`LEDGER`: repeated fits of a
    smaller size switch after some fits, the first fit of a fresh process does not pay
    the load).

    Raises
    ------
    ValueError
        ``DMIXED_KERNELS`` is set to anything else, or to ``numba`` when numba cannot
        be imported.
    """
    choice = forced()
    if choice != "auto":
        return choice
    if r >= NUMPY_FROM_R.get(kernel, r + 1):
        return "numpy"
    if numba_loaded():
        return "numba"
    if not numba_available():
        return "numpy"
    per_fit = n_groups * sum(calls * saved_ns(k, r) for k, calls in FIT_CALLS.items())
    LEDGER["owed_ns"] += n_groups * saved_ns(kernel, r)
    LEDGER["bought"] = max(per_fit, LEDGER["owed_ns"]) >= LOAD_NS
    return "numba" if LEDGER["bought"] else "numpy"


#: the largest ``k = p + 1`` whose step at ``r = 2`` runs in the fused pass of
#: :mod:`~dmixed.kernels.fused2_jit`: its accumulators (``2.5 k²``), the loop's spills
#: to the stack and the time to compile the loop for each new ``k`` (once a machine:
#: cached on disk) all grow with ``k²``, while its gain over the runs of
#: :mod:`~dmixed.kernels.jit` shrinks
FUSED_MAX_K = 6


def _upper_to_full(a: np.ndarray) -> np.ndarray:
    """Mirror the upper triangle of the last two axes onto the lower one."""
    upper = np.triu(np.ones(a.shape[-2:], dtype=bool))
    return np.where(upper, a, np.swapaxes(a, -1, -2))


def _lam_forms(lam: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The compiled kernels' ``kind`` (an empty array of ``min(r, 3)`` dimensions: which
    closed form; see :mod:`~dmixed.kernels.jit`), ``Λ`` (contiguous), ``B = ΛΛ'`` and
    ``det(B)`` (used for ``r = 2`` only)."""
    lam = np.ascontiguousarray(lam, dtype=np.float64)
    r = lam.shape[0]
    det_b = float(np.linalg.det(lam)) ** 2 if r == 2 else 0.0
    return np.empty((0,) * min(max(r, 1), 3)), lam, lam @ lam.T, det_b


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

    Notes
    -----
    For ``r = 2`` and ``k`` up to :data:`FUSED_MAX_K` by the fused pass of
    :mod:`~dmixed.kernels.fused2_jit` (:func:`_fused_step_sums`), else by the runs of
    :func:`dmixed.kernels.jit.step`.
    """
    from . import jit  # numba loads here, on first use

    kind, lam, b, det_b = _lam_forms(lam)
    r = lam.shape[0]
    logdet = 0.0
    m = np.zeros((k, k))
    s = np.zeros((r, r))
    t = np.zeros((r, k, k))
    tre = np.zeros((q, q, k, k))
    between = np.zeros((k, k))
    if r == 2 and k <= FUSED_MAX_K:
        return _fused_step_sums(chunks, b, det_b, q, k)
    for zz, zxy in chunks:
        g = zz.shape[-1]
        if g == 0 or r == 0:
            continue
        dets = np.empty((1 if r <= 2 else r, g))
        jit.step(kind, zz, zxy, lam, b, det_b, q, dets, m, s, t, tre, between)
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


def _fused_step_sums(chunks, b: np.ndarray, det_b: float, q: int, k: int):
    """:func:`step_sums` at ``r = 2`` by the fused kernel
    (:func:`dmixed.kernels.fused2_jit.step`), the sums unpacked from its order."""
    from . import fused2_jit  # numba loads here, on first use

    cols = fused2_jit.columns_tag(k)
    acc = np.zeros(fused2_jit.n_sums(k))
    logdet = 0.0
    for zz, zxy in chunks:
        g = zz.shape[-1]
        if g == 0:
            continue
        dets = np.empty((1, g))
        fused2_jit.step(cols, zz, zxy, b[0, 0], b[0, 1], b[1, 1], det_b, dets, acc)
        logdet += float(np.log(dets).sum())
    upper = np.triu_indices(k)
    tri = upper[0].size

    def symmetric(flat: np.ndarray) -> np.ndarray:
        out = np.zeros((k, k))
        out[upper] = flat
        return _upper_to_full(out)

    s = _upper_to_full(np.array([[acc[0], acc[1]], [0.0, acc[2]]]))
    m = symmetric(acc[3 : 3 + tri])
    h00 = symmetric(acc[3 + tri : 3 + 2 * tri])
    h01 = acc[3 + 2 * tri : 3 + 2 * tri + k * k].reshape(k, k).copy()
    h11 = symmetric(acc[3 + 2 * tri + k * k :])
    tre = np.zeros((q, q, k, k))
    t = np.zeros((2 - q, k, k))
    for a, h in enumerate((h00, h11)):
        if a < q:
            tre[a, a] = h
        else:
            t[a - q] = h
    if q == 2:
        tre[0, 1], tre[1, 0] = h01, h01.T
    return logdet, m, s, tre, t, np.zeros((k, k))


def hessian_sums(
    chunks,
    lam: np.ndarray,
    basis: np.ndarray,
    w: np.ndarray,
    outs: tuple,
    a_inv: np.ndarray | None = None,
    reml: bool = True,
):
    """The Hessian sums over entry-major chunks, by the compiled kernels.

    Parameters
    ----------
    chunks : iterable of (ndarray (r, r, G_c), ndarray (r, k, G_c))
        :meth:`dmixed.kernels.StatsBlock.chunks`.
    lam : ndarray (r, r)
        Λ.
    basis : ndarray (m, r, r)
        ``E_j``, the derivatives of ``B*`` (symmetric).
    w : ndarray (k,)
        ``[−β; 1]``.
    outs : tuple of ndarray
        Zeros shaped as the fields of :class:`~dmixed.kernels.HessianSums` (m = the
        number of ``E_j``, p = k − 1): (m, m), (m, m), (m,), (m, p), (m, p, p),
        (m, m, p, p), the last (m, m) where ``a_inv`` is given and ``r > 2``; the sums
        are added into them.
    a_inv : ndarray (p, p), optional
        ``A⁻¹`` at ``lam``: for ``r > 2`` ``a_jk`` is then summed as its traces against
        it (:func:`traced_hessian_sums`); ignored at ``r ≤ 2``.
    reml : bool
        With ``a_inv`` at ``r > 2``, False leaves ``a_j`` and ``a_jk`` (read by the
        REML Hessian alone) zero.

    Returns
    -------
    tuple
        ``(tr_ss, u_s_u, u_e_u, g_e_u, a_j, a_jk)`` as the fields of
        :class:`~dmixed.kernels.HessianSums`.

    Notes
    -----
    For ``r ≤ 2`` contracted from moments over the groups
    (:func:`_moment_hessian_sums`; ``outs`` is not used), else summed per ``E_j``
    (:func:`per_basis_hessian_sums`, or :func:`traced_hessian_sums` with ``a_inv``).
    """
    if lam.shape[0] <= 2:
        kind, lam, b, det_b = _lam_forms(lam)
        w = np.ascontiguousarray(w, dtype=np.float64)
        return _moment_hessian_sums(chunks, kind, lam, b, det_b, basis, w)
    if a_inv is not None:
        return traced_hessian_sums(chunks, lam, basis, w, a_inv, reml, outs)
    return per_basis_hessian_sums(chunks, lam, basis, w, outs)


def traced_hessian_sums(
    chunks, lam: np.ndarray, basis: np.ndarray, w: np.ndarray, a_inv: np.ndarray, reml: bool, outs
):
    """:func:`hessian_sums` summed per ``E_j`` with ``a_jk`` (m, m) as its traces against
    ``a_inv``, ``Σ 2 tr(E_j S E_k G A⁻¹G')`` (:meth:`~dmixed.kernels.HessianSums.a_jk_traces`:
    ``r p² + m² r²`` products a group where the (m, m, p, p) sums take ``m² p² r``),
    the arguments as there; ``reml`` False leaves ``a_j`` and ``a_jk`` zero."""
    from . import jit  # numba loads here, on first use

    kind, lam, b, det_b = _lam_forms(lam)
    basis = np.ascontiguousarray(basis, dtype=np.float64)
    w = np.ascontiguousarray(w, dtype=np.float64)
    a_inv = np.ascontiguousarray(a_inv, dtype=np.float64)
    for zz, zxy in chunks:
        jit.hessian_traced(kind, zz, zxy, lam, b, det_b, basis, w, a_inv, bool(reml), outs)
    # the kernel's Σ tr(M E_j S E_k) is symmetric in (j, k) (tr(XY) = tr(YX) with
    # symmetric M, S, E): a_jk is twice its mirrored upper triangle
    return (*_full_fields(outs[:5]), 2.0 * _upper_to_full(outs[5]))


def per_basis_hessian_sums(chunks, lam: np.ndarray, basis: np.ndarray, w: np.ndarray, outs):
    """:func:`hessian_sums` summed per ``E_j`` over the groups (what ``r > 2`` runs; any
    ``r``), the arguments as there."""
    from . import jit  # numba loads here, on first use

    kind, lam, b, det_b = _lam_forms(lam)
    basis = np.ascontiguousarray(basis, dtype=np.float64)
    w = np.ascontiguousarray(w, dtype=np.float64)
    m = basis.shape[0]
    for zz, zxy in chunks:
        jit.hessian(kind, zz, zxy, lam, b, det_b, basis, w, outs)
    half = outs[5]
    for j in range(m):  # the kernel sums the upper triangles (j ≤ k)
        for j2 in range(j):
            half[j, j2] = half[j2, j].T
    return (*_full_fields(outs[:5]), half + half.transpose(1, 0, 3, 2))


def _full_fields(outs) -> tuple:
    """The first five Hessian sums as the compiled per-group kernels leave them (the
    (m, m) ``tr_ss`` and ``u_s_u`` and each ``a_j[j]`` (p, p) summed over their upper
    triangles only) made whole: ``(tr_ss, u_s_u, u_e_u, g_e_u, a_j)``."""
    tr_ss, u_s_u, u_e_u, g_e_u, a_j = outs
    for j in range(a_j.shape[0]):
        a_j[j] = _upper_to_full(a_j[j])
    return _upper_to_full(tr_ss), _upper_to_full(u_s_u), u_e_u, g_e_u, a_j


def _moment_hessian_sums(chunks, kind, lam, b, det_b, basis, w, blup=None, cov=None, edges=None):
    """:func:`hessian_sums` for ``r ≤ 2``: the moments of
    :class:`~dmixed.kernels.hessian_moments.HessianMoments` summed by the compiled
    closed forms (:func:`dmixed.kernels.jit.hessian_moments`), contracted with the
    basis once.  About half the per-group products of the per-``E_j`` sums for the
    usual ``m = 3`` (benchmarks/RESULTS.md, "Session of 2026-12-02 (eighth): ooc"); the
    same sums in another order (to rounding).  With ``blup`` and ``cov`` (rows for every
    group of the chunks), the BLUPs and conditional covariances written there in the
    same pass (:func:`hessian_random_effects`), each chunk's rows where the block's chunk
    ``edges`` place it (:func:`_placed`).  At ``r = 2`` and ``k`` up to
    :data:`~dmixed.kernels.native.MAX_K`, where the C extension runs
    (:func:`dmixed.kernels.native.extension`: not with ``DMIXED_NATIVE=numpy``, which
    leaves this pass to numba), by its pass (:func:`_native_moments`), with nothing to
    compile (its time: benchmarks/RESULTS.md, "hesc-s53")."""
    from .hessian_moments import HessianMoments

    r, k = lam.shape[0], w.shape[0]
    moments = HessianMoments(r, k)
    ext = native.extension() if r == 2 and k <= native.MAX_K else None
    if ext is not None:
        _native_moments(ext, chunks, b, det_b, w, moments, blup, cov, edges)
    else:
        from . import jit  # numba loads here, on first use

        rows, cols = moments.rows.astype(np.intp), moments.cols.astype(np.intp)
        for (zz, zxy), at in _placed(chunks, edges):
            sums = moments.sums()
            jit.hessian_moments(
                kind, zz, zxy, lam, b, det_b, w, rows, cols, *sums, at.start, blup, cov
            )
    moments.mirror()
    return moments.contract(basis)


def _native_moments(ext, chunks, b, det_b, w, moments, blup=None, cov=None, edges=None) -> None:
    """:func:`_moment_hessian_sums`' pass at ``r = 2`` by the extension
    (``moments_r2`` of ``c_sums.c``): each group's conditional values, ``u_i``, BLUP and
    ``P_i`` with the operations of :func:`dmixed.kernels.jit.hessian_moments` (the same
    bits), the moments added over runs of groups in C (the sums in another order than
    numba's, to rounding), ``moments`` and ``blup``/``cov`` (rows for every group of the
    chunks, or None; each chunk's rows where ``edges`` place it) filled where that kernel
    fills them.  Nothing to compile: the pass
    that numba compiled on a fresh machine's first fit."""
    a, v, c = moments.sums()
    k = w.shape[0]
    b_flat = np.ascontiguousarray(b, dtype=np.float64).ravel()
    width = 0 if cov is None else cov.shape[1]
    for (zz, zxy), rows in _placed(chunks, edges):
        g = zz.shape[-1]
        if g:
            ext.moments_r2(
                np.ascontiguousarray(zz), np.ascontiguousarray(zxy), k, g, b_flat, det_b, w,
                a, v, c,
                None if blup is None else blup[rows],
                None if cov is None else cov[rows],
                width,
            )  # fmt: skip


def checked_edges(edges, n_groups: int | None = None) -> np.ndarray:
    """Chunk ``edges`` checked before a kernel writes by them without bounds checks: the
    one check of every kernel that places chunks by a block's edges
    (:attr:`dmixed.kernels.groups.ChunkSpans.edges`; this module is below it).

    Parameters
    ----------
    edges : array_like of int (C+1,)
        ``edges[c]:edges[c+1]`` the positions of chunk ``c``'s groups.
    n_groups : int, optional
        The groups the edges must end at (``edges[-1]``); any where None.

    Returns
    -------
    ndarray of int64 (C+1,)
        ``edges`` as int64.

    Raises
    ------
    ValueError
        ``edges`` is not a 1-D integer array, is empty, does not start at 0, does not end
        at ``n_groups`` or goes down somewhere (a chunk of negative size).
    """
    arr = np.asarray(edges)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"edges must be a 1-D integer array, not {arr.ndim}-D of dtype {arr.dtype}"
        )
    if arr.size == 0:
        raise ValueError("edges is empty: it needs one entry more than there are chunks")
    if arr.dtype.kind == "u" and arr.max() > np.iinfo(np.int64).max:
        raise ValueError(f"edges reach {int(arr.max())}, past the int64 positions of a block")
    if arr[0] != 0:
        raise ValueError(f"edges start at {int(arr[0])}, not at 0")
    if n_groups is not None and arr[-1] != n_groups:
        raise ValueError(f"edges end at {int(arr[-1])}, not at the {n_groups} groups")
    down = np.flatnonzero(arr[1:] < arr[:-1])
    if down.size:
        c = int(down[0])
        raise ValueError(
            f"edges go down from {int(arr[c])} to {int(arr[c + 1])} at chunk {c}: "
            "they must be non-decreasing"
        )
    return arr.astype(np.int64, copy=False)


def _placed(chunks, edges) -> Iterator[tuple[tuple[np.ndarray, np.ndarray], slice]]:
    """Each entry-major chunk with its groups' positions in the block's order (a slice
    of a per-group array), read from the block's chunk ``edges``
    (:attr:`dmixed.kernels.groups.ChunkSpans.edges`, int64 (C+1,): the one owner of the
    chunk → position mapping; passed down, this module being below it).  ``edges`` None
    where no per-group rows are written: every chunk placed from 0.

    Raises
    ------
    ValueError
        ``edges`` are not edges (:func:`checked_edges`), a chunk's groups are not its
        span's (``edges`` of another block), or ``edges`` has not one more entry than
        there are chunks.
    """
    if edges is None:
        for chunk in chunks:
            yield chunk, slice(0, chunk[0].shape[-1])
        return
    bounds = checked_edges(edges).tolist()
    n_chunks = 0
    for chunk in chunks:
        if n_chunks + 1 >= len(bounds):
            raise ValueError(
                f"edges has {len(bounds)} entries for more than {len(bounds) - 1} chunks: "
                "the edges are not this block's chunks'"
            )
        lo, hi = bounds[n_chunks], bounds[n_chunks + 1]
        if chunk[0].shape[-1] != hi - lo:
            raise ValueError(
                f"a chunk of {chunk[0].shape[-1]} groups at edges {lo}:{hi}: "
                "the edges are not this block's chunks'"
            )
        n_chunks += 1
        yield chunk, slice(lo, hi)
    if n_chunks + 1 != len(bounds):
        raise ValueError(
            f"edges has {len(bounds)} entries for {n_chunks} chunks: "
            "the edges are not this block's chunks'"
        )


def random_effects(chunks, lam: np.ndarray, w: np.ndarray, edges: np.ndarray):
    """BLUPs ``B u_i`` (n_groups, r) and conditional covariances ``P_i``
    (n_groups, r, r) over entry-major chunks, by the compiled kernels (``chunks``,
    ``lam`` and ``w`` as :func:`hessian_sums`; ``edges`` int64 (C+1,) the block's chunk
    edges, :attr:`dmixed.kernels.groups.ChunkSpans.edges`: chunk ``c``'s rows are
    ``edges[c]:edges[c+1]``, ``n_groups = edges[-1]``).

    Raises
    ------
    ValueError
        ``edges`` are not edges (:func:`checked_edges`, each message naming ``edges``)
        or not the chunks'.
    """
    from . import jit  # numba loads here, on first use

    kind, lam, b, det_b = _lam_forms(lam)
    w = np.ascontiguousarray(w, dtype=np.float64)
    r = lam.shape[0]
    edges = checked_edges(edges)  # before the rows are sized by it
    n_groups = int(edges[-1])
    blup = np.empty((n_groups, r))
    cov = np.empty((n_groups, r * r))  # each P_i row by row
    for (zz, zxy), at in _placed(chunks, edges):
        jit.random_effects(kind, zz, zxy, lam, b, det_b, w, at.start, blup, cov)
    return blup, cov.reshape(n_groups, r, r)


def hessian_random_effects(
    chunks,
    lam: np.ndarray,
    basis: np.ndarray,
    w: np.ndarray,
    edges: np.ndarray,
    upper: bool = False,
    out: tuple[np.ndarray, np.ndarray] | None = None,
):
    """:func:`hessian_sums` and :func:`random_effects` at one ``lam`` and ``w`` in one pass
    over the groups, for ``r ≤ 2`` (the arguments as there): each run of groups' per-group
    values made once for both (:func:`dmixed.kernels.jit.hessian_moments`; at ``r = 2``
    and ``k`` up to :data:`~dmixed.kernels.native.MAX_K` the C extension's pass with the
    same operations, unless ``DMIXED_NATIVE=numpy``), the same results bit for bit as
    the two calls.  With ``upper``, the conditional
    covariances as their upper triangles (:func:`upper_unfolded` gives them back whole).
    ``edges`` (int64 (C+1,)) are the block's chunk edges as :func:`random_effects` takes
    them.  ``out``: the arrays to write the BLUPs (n_groups, r) and the covariances
    (n_groups, r(r+1)/2 with ``upper``, else r·r) into, C-ordered float64, every row
    written (memory a caller keeps from one fit to the next: a fresh array's pages are
    faulted in on every call, benchmarks/RESULTS.md, blup-s56); None: new arrays.

    Returns
    -------
    (tuple, ndarray, ndarray)
        The Hessian sums' fields (as :func:`hessian_sums`), the BLUPs (n_groups, r) and
        the conditional covariances (n_groups, r, r), or with ``upper`` their upper
        triangles row by row (n_groups, r(r+1)/2); with ``out``, its arrays (the
        covariances reshaped to (n_groups, r, r) without ``upper``).

    Raises
    ------
    ValueError
        ``r > 2`` (:func:`hessian_sums` sums those per ``E_j``), ``edges`` not edges
        (:func:`checked_edges`) or not the chunks', or ``out`` not two C-ordered float64
        arrays of those shapes.
    """
    if not 0 < lam.shape[0] <= 2:
        raise ValueError(f"one pass for the Hessian and the BLUPs needs r ≤ 2, not {lam.shape[0]}")
    kind, lam, b, det_b = _lam_forms(lam)
    w = np.ascontiguousarray(w, dtype=np.float64)
    r = lam.shape[0]
    edges = checked_edges(edges)  # before the rows are sized by it
    n_groups = int(edges[-1])
    shapes = ((n_groups, r), (n_groups, r * (r + 1) // 2 if upper else r * r))
    if out is None:
        blup, cov = np.empty(shapes[0]), np.empty(shapes[1])
    else:
        blup, cov = _checked_out(out, shapes)
    fields = _moment_hessian_sums(chunks, kind, lam, b, det_b, basis, w, blup, cov, edges)
    return fields, blup, cov if upper else cov.reshape(n_groups, r, r)


def _checked_out(out, shapes: tuple) -> tuple[np.ndarray, np.ndarray]:
    """``out`` of :func:`hessian_random_effects` as given, where it is two C-ordered
    float64 arrays of ``shapes``; else ValueError."""
    if not isinstance(out, tuple) or len(out) != 2:
        raise ValueError("out must be a tuple (blup, cov) of two arrays")
    for name, a, shape in zip(("blup", "cov"), out, shapes, strict=True):
        if not isinstance(a, np.ndarray) or a.dtype != np.float64 or a.shape != shape:
            got = f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
            raise ValueError(f"out's {name} must be float64 {shape}, got {got}")
        if not a.flags.c_contiguous or not a.flags.writeable:
            raise ValueError(f"out's {name} must be C-ordered and writeable")
    return out[0], out[1]


def upper_unfolded(upper: np.ndarray) -> np.ndarray:
    """Symmetric matrices (n, r, r) from their upper triangles row by row
    (n, r(r+1)/2), as :func:`hessian_random_effects` writes them with ``upper``: the
    same values where the triangles were taken from exactly symmetric matrices."""
    n, m = upper.shape
    r = int(round((np.sqrt(8 * m + 1) - 1) / 2))
    if r * (r + 1) // 2 != m:
        raise ValueError(f"{m} entries a row are no upper triangle")
    out = np.empty((n, r, r), dtype=upper.dtype)
    t = 0
    for a in range(r):
        for c in range(a, r):
            out[:, a, c] = upper[:, t]
            out[:, c, a] = upper[:, t]
            t += 1
    return out
