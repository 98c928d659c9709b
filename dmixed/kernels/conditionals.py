"""Per-group conditional values of a chunk of groups at a factor Λ: ``P``, ``log|K|``,
``S`` and ``H``, entry-major (the layout of :class:`~dmixed.kernels.groups.StatsBlock`).

What every sum of :mod:`~dmixed.kernels.groups` is built from.  Notation as in
:mod:`dmixed.kernels` (DESIGN.md §1–6).  For the relative covariance factor ``Λ``
(``B* = ΛΛ'``)::

    K_i = I + Λ' ZZ_i Λ,           log|V*_i| = log|K_i|
    P_i = Λ K_i⁻¹ Λ'               (V*_i⁻¹ = I − Z̃_i P_i Z̃_i')
    S_i = Z̃_i'V*_i⁻¹Z̃_i = ZZ_i − ZZ_i P_i ZZ_i
    H_i = Z̃_i'V*_i⁻¹[X_i, y_i] = ZXy_i − ZZ_i P_i ZXy_i
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:  # scipy is imported where a sparse path runs: most fits run none
    import scipy.sparse as sp

__all__ = [
    "CENTRED_DETERMINANT",
    "LOSSY_DETERMINANT",
    "near_lossy_bounds",
    "MM_BLAS_ABOVE",
    "RANK_ONE_ROUNDING",
    "CentredSums",
    "centred_between",
    "centred_conditional",
    "centred_rounding",
    "centred_from_shifted",
    "conditional",
    "gram_rows",
    "lossy_groups",
    "m_sum",
    "PLAIN_CHARGED_DETERMINANT",
    "PLAIN_NEGLIGIBLE",
    "DOMINANT_REST",
    "heavy_bounds",
    "plain_rounding",
    "PlainRounding",
    "PlainRoundingError",
    "PLAIN_ROUNDINGS",
    "mm",
    "rank_one_groups",
    "SPARSE_MAX_DENSITY",
    "SPARSE_MIN_COLUMNS",
    "SPARSE_MIN_K",
    "sparse_rows",
]


# Up to this r, Λ'ZΛ is one (Λ⊗Λ) matrix product (r⁴ entries: 4096 at r = 8).
_KRON_MAX_R = 8

#: inner widths above which :func:`mm` hands the products to BLAS (wide padded groups:
#: crossed variance components); at or below it, vector sums over the groups
MM_BLAS_ABOVE = 16


def mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
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


def m_sum(zxy: np.ndarray, p_mat: np.ndarray) -> np.ndarray:
    """``Σ_i ZXy_i' P_i ZXy_i`` (k × k, symmetrized) over an entry-major chunk:
    ``zxy`` (r, k, G), ``p_mat`` (r, r, G)."""
    r, k = p_mat.shape[0], zxy.shape[1]
    pz = mm(p_mat, zxy)
    m = sum(zxy[a] @ pz[a].T for a in range(r)) if r else np.zeros((k, k))
    return 0.5 * (m + m.T)


#: :func:`sparse_rows` keeps a sparse copy of per-group rows (k, G) such as ``F`` from
#: this many rows ``k`` on ...
SPARSE_MIN_K = 64
#: ... and :func:`~dmixed.kernels.rows.sparse_split` skips the zeros of the data's
#: columns from this many on (below, one BLAS product of the rows is as fast) ...
SPARSE_MIN_COLUMNS = 200
#: ... where at most this share of its entries is nonzero: the sums over groups then cost
#: ``Σ_i nnz(F_i)²`` instead of ``k² G`` (a fixed factor of many levels: each group meets
#: a few of them; benchmarks/RESULTS.md, widefe-s61)
SPARSE_MAX_DENSITY = 0.125


def sparse_rows(f: np.ndarray) -> sp.csr_matrix | None:
    """Per-group rows ``f`` (k, G) (``F``, ``H``, ``[G_i, u_i]``) as a CSR matrix where
    their sums over groups pay to skip the zeros (:data:`SPARSE_MIN_K`,
    :data:`SPARSE_MAX_DENSITY`), else None (the dense products).  The sparse products
    add each entry's terms in the groups' order, not BLAS's: the same sums to rounding.

    Parameters
    ----------
    f : ndarray, shape (k, G)
        Per-group rows, one column per group.

    Returns
    -------
    scipy.sparse.csr_matrix, shape (k, G), or None
        ``f`` with its zeros dropped, or None where ``k < SPARSE_MIN_K`` or more than
        ``SPARSE_MAX_DENSITY`` of its entries are nonzero.
    """
    k = f.shape[0]
    if k < SPARSE_MIN_K or not f.size:
        return None
    if np.count_nonzero(f) > SPARSE_MAX_DENSITY * f.size:
        return None
    import scipy.sparse as sp  # only once the thresholds are met

    return sp.csr_matrix(f)


#: :func:`gram_rows` copies for ``gemm`` up to this many entries of ``a`` (past it the
#: copy leaves the cache and ``syrk`` wins: 8 rows × 20,000 groups 146 µs against 184)
GRAM_GEMM_MAX = 100_000


def gram_rows(a: np.ndarray) -> np.ndarray:
    """``a a'`` for a (k, G) matrix whose rows run over the groups (k a few entries).

    Up to :data:`GRAM_GEMM_MAX` entries through BLAS ``gemm`` on a copy of ``a``: numpy
    hands ``a @ a.T`` (one buffer, its transpose) to ``syrk``, which at these shapes is
    2–4× slower (3 rows × 2,000 groups 11.6 µs against 4.1, 8 × 2,000 15.5 against 8.2,
    3 × 20,000 106 against 30; benchmarks/RESULTS.md, thirteenth session).  The same
    sums in BLAS's order (they differ from ``syrk``'s in the last bits).
    """
    if a.size > GRAM_GEMM_MAX:
        return a @ a.T
    return a @ a.copy().T


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


def conditional(
    zz: np.ndarray,
    zxy: np.ndarray,
    lam: np.ndarray,
    value_only: bool = False,
    blups_only: bool = False,
    one: np.ndarray | None = None,
    centred: CentredSums | None = None,
    subset: tuple | None = None,
):
    """Entry-major ``P``, ``log|K|``, ``S`` and ``H`` of a chunk (module docstring);
    ``S`` and ``H`` ``None`` with ``value_only`` (what ℓ alone needs), ``log|K|`` and
    ``S`` ``None`` with ``blups_only`` (the BLUPs need ``P`` and ``H`` only: the same
    numbers, without the work of the others where it is their own).

    For ``r = 1`` in closed form without subtraction: ``S = U/(1 + λ²U)`` and
    ``H = F/(1 + λ²U)`` (``U = ZZ``, ``F = ZXy``), exact however large ``λ²U`` (the
    general ``ZZ − ZZ·P·ZZ`` loses the digits of ``1/(1 + λ²U)``); for ``r = 2`` see
    :func:`_conditional_2`.  ``one``: the groups of the chunk (bool (G,)) whose
    ``Z̃_i'Z̃_i`` has rank one through column 0 (:func:`rank_one_groups`), which take
    the closed forms of :func:`_rank_one_values` instead.  ``centred``: the chunk's
    centred sums (:class:`CentredSums`), from which all its groups take
    :func:`centred_conditional` instead (``zz`` and ``zxy`` unread).  ``subset``:
    ``(sel, sums)``, the positions ``sel`` (L,) of some groups of the chunk (its lossy
    ones) with their centred sums ``sums`` (L groups, :func:`centred_from_shifted`):
    those groups take :func:`centred_conditional`, the others the forms above.
    """
    if centred is not None:
        p_mat, logdet, s, h = centred_conditional(centred, lam)
        return (
            p_mat,
            None if blups_only else logdet,
            None if value_only or blups_only else s,
            (None if value_only else h),
        )
    out = _conditional(zz, zxy, lam, value_only, blups_only)
    if one is not None and one.any():
        sel = np.flatnonzero(one)
        out = _put(out, sel, _rank_one_values(zz[..., sel], zxy[..., sel], lam))
    if subset is not None and subset[0].size:
        out = _put(out, subset[0], centred_conditional(subset[1], lam))
    return out


def _put(out: tuple, sel: np.ndarray, values: tuple) -> tuple:
    """``out``'s arrays (None kept) with the groups ``sel`` set to ``values``."""
    parts = []
    for arr, value in zip(out, values, strict=True):
        if arr is not None:
            arr = np.array(arr)  # r = 1's H and S are fresh; the others may be views
            arr[..., sel] = value
        parts.append(arr)
    return tuple(parts)


def _conditional(zz, zxy, lam, value_only, blups_only):
    """:func:`conditional` without its rank-one groups."""
    if zz.shape[0] == 2:
        return _conditional_2(zz, zxy, lam, value_only, blups_only)
    p_mat, logdet = _factor(zz, lam)
    if value_only:
        return p_mat, logdet, None, None
    if zz.shape[0] == 1:
        kk = 1.0 + lam[0, 0] ** 2 * zz[0, 0]
        if blups_only:
            return p_mat, None, None, zxy / kk
        return p_mat, logdet, zz / kk, zxy / kk
    zzp = mm(zz, p_mat)  # ZZ_i P_i
    h = zxy - mm(zzp, zxy)
    if blups_only:
        return p_mat, None, None, h
    return p_mat, logdet, zz - mm(zzp, zz), h


#: :func:`rank_one_groups`: the Schur complement of ``Z̃_i'Z̃_i`` on column 0 is the
#: rounding of its sums where each diagonal entry is within this many ``ε·max(1, n_i)``
#: of its own entry (a sum of ``n_i`` terms rounds by up to about ``n_i·ε`` of it in
#: row order; ``n_i`` the group's rows, whatever their weights: a weight scales a
#: term, not the number of roundings)
RANK_ONE_ROUNDING = 16.0


def rank_one_groups(zz: np.ndarray, nobs: np.ndarray) -> np.ndarray:
    """The groups of an entry-major chunk (bool (G,)) whose ``Z̃_i'Z̃_i`` has rank one
    through column 0: ``U_i = ZZ_i[0, 0] > 0`` and the Schur complement on column 0,
    ``ZZ_i[a, a] − ZZ_i[a, 0]²/U_i`` for every ``a ≥ 1`` (its diagonal: the
    complement is positive semi-definite), at the size of the sums' rounding
    (:data:`RANK_ONE_ROUNDING`, ``nobs`` (G,) the groups' rows): the random design of
    such a group is ``Z̃_i = e z̄_i'`` with ``e`` its column 0 and
    ``z̄_i = ZZ_i[:, 0]/U_i``.  Judged against the rows, not ``U_i``: with prior
    weights ``U_i`` is their sum, and a group of heavy rows with a spread the sums
    resolve would be taken as rank one (its spread dropped from the fit)."""
    u = zz[0, 0]
    one = u > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        rows = np.maximum(np.asarray(nobs, dtype=np.float64), 1.0)
        tol = RANK_ONE_ROUNDING * float(np.finfo(float).eps) * rows
        for a in range(1, zz.shape[0]):
            schur = zz[a, a] - zz[a, 0] * zz[a, 0] / u
            one &= np.abs(schur) <= tol * zz[a, a]
    return one


def _rank_one_values(zz: np.ndarray, zxy: np.ndarray, lam: np.ndarray):
    """``P``, ``log|K|``, ``S`` and ``H`` of groups with ``Z̃_i = e z̄_i'``
    (:func:`rank_one_groups`), in closed form.

    With ``U = e'e = ZZ[0, 0]``, ``z̄ = ZZ[:, 0]/U``, ``F = e'[X y] = ZXy[0]`` and
    ``λ² = |Λ'z̄|²``, ``d = 1 + λ²U``::

        log|K| = log1p(λ²U),   S = U z̄z̄'/d,   H = z̄F'/d,
        P = B − (U/d) (Bz̄)(Bz̄)'                 (B = ΛΛ')

    (``K = I + U Λ'z̄z̄'Λ``: Sherman–Morrison): ``S`` and ``H`` are products and
    quotients of positive terms, nothing of the size of ``U`` subtracted, however
    large ``λ²U``.
    """
    u = zz[0, 0]
    zbar = zz[:, 0] / u  # (r, G)
    f = zxy[0]  # (k, G)
    lam2 = ((lam.T @ zbar) ** 2).sum(axis=0)
    lu = lam2 * u
    d = 1.0 + lu
    bz = (lam @ lam.T) @ zbar
    p_mat = (lam @ lam.T)[:, :, None] - bz[:, None] * bz[None, :] * (u / d)
    s = zbar[:, None] * zbar[None, :] * (u / d)
    h = zbar[:, None] * (f / d)[None, :]
    return p_mat, np.log1p(lu), s, h


def _conditional_2(zz: np.ndarray, zxy: np.ndarray, lam: np.ndarray, value_only, blups_only):
    """``P``, ``log|K|``, ``S`` and ``H`` for ``r = 2`` in closed form, without the
    cancellation of ``ZZ − ZZ·P·ZZ`` when ``B = ΛΛ'`` is large next to ``U⁻¹``
    (``S`` and ``H`` ``None`` with ``value_only``, ``log|K|`` and ``S`` with
    ``blups_only``).

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
    s = None
    if not blups_only:
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
    h = mm(m, zxy)
    h += zxy
    h *= inv_d
    return p_mat, None if blups_only else np.log(d), s, h


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


#: :func:`lossy_groups`: a group's ``Z̃_i'Z̃_i`` scaled to a unit diagonal whose
#: determinant is below this loses about ``log10(1/det)`` of float64's digits in
#: ``[X y]'[X y] − Σ_i m_i`` (what the group's mean direction has in common with its
#: spread): eight of them left, at most.  (Not scaled by ``r^r``: at ``r = 9`` that
#: bound exceeds 1, the largest determinant of a unit diagonal, and every group of
#: nine ordinary random slopes would be lossy.)
LOSSY_DETERMINANT = 1e8 * float(np.finfo(float).eps)

#: ... and a group whose determinant is below this times its share of the block
#: (:func:`near_lossy_bounds`) takes the centred forms wherever its sums about its mean
#: are at hand (in process every group then does; on Dask those groups, from their sums
#: about their shifts), though it is not refused without them.  The ``log10(1/det)``
#: digits a group loses are digits of its own mean part ``u m m'``: of the totals
#: ``[X y]'[X y]`` the forms subtract from, it loses about ``share/det`` of a unit
#: roundoff, which matters where the group is most of them (a heavily weighted group
#: left ℓ and σ̂² off, on Dask without a warning) and not where it is one of many
#: (ordinary small groups below it left ℓ as exact as the others): the measurements
#: are in benchmarks/RESULTS.md, xts-s55.  The
#: bound, 1e-5 × share, falls below :data:`LOSSY_DETERMINANT` once a group is under
#: 0.2 % of its block's ``Z̃'Z̃`` diagonal: ordinary groups among some hundreds are then
#: lossy or neither, and the check costs what it did.
CENTRED_DETERMINANT = 1e-5


def near_lossy_bounds(zz: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """The determinant below which each group of an entry-major chunk (``zz`` (r, r, G))
    takes the centred forms where they are at hand: ``CENTRED_DETERMINANT × share``,
    not below :data:`LOSSY_DETERMINANT` (float64 (G,)).  ``share`` is the group's
    largest part of the block's ``Z̃'Z̃`` diagonal, ``max_a ZZ_i[a,a] / totals[a]``
    (``totals`` (r,): ``Σ_i ZZ_i[a,a]`` over the block's groups; for a random intercept
    the group's part of the weights ``u_i / Σ u``): a group that loses ``log10(1/det)``
    digits of its own mean part loses ``log10(share/det)`` digits' worth of the totals
    (:data:`CENTRED_DETERMINANT`).  A column of zero total counts as no share.

    Parameters
    ----------
    zz : ndarray of float64 (r, r, G)
        The groups' ``Z̃_i'Z̃_i``, entry-major.
    totals : array_like of float (r,)
        ``Σ_i ZZ_i[a,a]`` over the block's groups (all of them, not only these).

    Returns
    -------
    ndarray of float64 (G,)
        Each group's bound, for :func:`lossy_groups`' ``bound``.
    """
    return np.fmax(LOSSY_DETERMINANT, CENTRED_DETERMINANT * _shares(zz, totals))


def _shares(zz: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """Each group's largest part of the block's ``Z̃'Z̃`` diagonal (G,)
    (:func:`near_lossy_bounds`); a column of zero total counts as no share."""
    r = zz.shape[0]
    diag = np.stack([zz[a, a] for a in range(r)])  # (r, G)
    totals = np.asarray(totals, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        parts = np.where(totals[:, None] > 0, diag / totals[:, None], 0.0)
    return parts.max(axis=0) if r else np.zeros(zz.shape[-1])


def lossy_groups(
    zz: np.ndarray, nobs: np.ndarray, bound: float | np.ndarray = LOSSY_DETERMINANT
) -> np.ndarray:
    """The groups of an entry-major chunk (bool (G,)) whose ``Z̃_i'Z̃_i`` is too close to
    singular for the uncentred sums: the determinant of ``D^{-1/2} Z̃_i'Z̃_i D^{-1/2}``
    (``D`` its diagonal; a column of zeros in the group, which carries nothing of it,
    left out) below ``bound`` (a float or one per group (G,); :data:`LOSSY_DETERMINANT`:
    refused without the centred forms; :func:`near_lossy_bounds`: given them where they
    are at hand, :data:`CENTRED_DETERMINANT` the coarse check before it).  A random
    slope on a column constant or nearly constant within the group, or one of large
    offset (timestamps), next to the intercept.  One-row groups (``nobs`` (G,) ≤ 1) are
    never lossy: their ``Z̃_i'Z̃_i`` is of rank one whatever the data.  ``r < 2``: none.

    For ``r = 2`` the determinant is ``1 − ZZ₀₁²/(ZZ₀₀ZZ₁₁)``, compared without a
    quotient (three vector operations: the check of every data pass).  NaN statistics
    are not lossy.
    """
    r, _, g = zz.shape
    if r < 2:
        return np.zeros(g, dtype=bool)
    if r == 2:
        # det < b  ⇔  ZZ₀₁² > (1 − b) ZZ₀₀ZZ₁₁ (a zero column: 0 > 0, not lossy)
        lossy = zz[0, 1] * zz[0, 1] > (1.0 - bound) * (zz[0, 0] * zz[1, 1])
    else:
        diag = np.stack([zz[a, a] for a in range(r)])  # (r, G)
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = np.where(diag > 0, 1.0 / np.sqrt(diag), 0.0)
        scaled = zz * inv[:, None] * inv[None, :]
        for a in range(r):
            scaled[a, a] = 1.0
        lossy = np.linalg.det(np.moveaxis(scaled, -1, 0)) < bound
    if np.count_nonzero(lossy):
        lossy &= np.asarray(nobs) > 1
    return lossy


#: :func:`plain_rounding` charges the groups whose scaled ``Z̃_i'Z̃_i`` determinant is
#: below this (the others' rounding is of the order :func:`~dmixed.fit.objective.resolution`
#: already charges: ordinary groups' determinants are far above it, bd20's least 0.08).
PLAIN_CHARGED_DETERMINANT = 1e-3

#: The roundings a product of a row's entries in the plain sums carries before it is
#: added (the columns' offset and scale, the weight's square root, two products), and
#: the factor's: with a group's ``n`` rows, its sums are within ``γ = (n + this) ε /
#: (1 − (n + this) ε)`` of ``|Z̃_i|'|Z̃_i|`` and ``|Z̃_i|'|[X y]|`` (Higham's bound of a
#: sum of ``n`` terms; :func:`plain_rounding`).
PLAIN_ROUNDINGS = 8


#: :func:`heavy_bounds`: a group whose estimate ``e_i`` of its share of the relative
#: rounding of ``X'V*⁻¹X`` and ``Q`` is below this is not charged.  Chosen by
#: measurement, not proved (benchmarks/RESULTS.md, uncharged-s57): the heavy groups
#: whose fits were off beyond their claims lie far above it, and a smaller value charged
#: fits whose errors were within what they already stated.
PLAIN_NEGLIGIBLE = 1e-3

#: :func:`heavy_bounds` and :func:`centred_rounding` charge only a group that holds all
#: but this part of its block's ``Z̃'Z̃`` diagonal (a group weighing most of the data):
#: then the fit's cancellation is its own mean part cancelling, and its rounding is what
#: remains of ``X'V*⁻¹X`` and ``Q``.  Where many groups share the totals (an uncentred
#: slope's column such as an age, a day number or a timestamp) the cancellation is all of
#: their mean parts at once, and each group's worst case, summed, overstates the error by
#: orders of magnitude: those fits are not charged (benchmarks/RESULTS.md, uncharged-s57).
DOMINANT_REST = 1e-3


def heavy_bounds(
    zz: np.ndarray, nobs: np.ndarray, totals: np.ndarray, cancellation: float
) -> np.ndarray:
    """The determinant below which each group of an entry-major chunk (``zz`` (r, r, G),
    ``nobs`` (G,)) is charged by :func:`plain_rounding` at a fit whose ``X'V*⁻¹X`` and
    ``Q`` are ``cancellation`` times smaller than the totals they are the remainder of
    (float64 (G,); ``totals`` (r,) as :func:`near_lossy_bounds`).

    A group's plain conditional rounds its share of ``[X y]'V*⁻¹[X y]`` by up to about
    ``γ_i/λ_i`` of its own mean part (:func:`plain_rounding`: ``γ_i`` of its ``n_i``
    rows, ``λ_i`` the least eigenvalue of its scaled ``Z̃_i'Z̃_i``,
    ``1/λ_i ≤ r^(r−1)/det_i``), and that part is about ``share_i`` of the totals: where
    the fit's ``X'V*⁻¹X`` or ``Q`` is ``cancellation`` times smaller than the totals (a
    heavily weighted group whose fixed effects lie in its random design: its mean part
    cancels in both), the group may round them by ``e_i = γ_i r^(r−1) share_i
    cancellation / det_i`` relative, whatever its determinant.
    It is charged where ``e_i`` exceeds :data:`PLAIN_NEGLIGIBLE` and the group holds
    all but :data:`DOMINANT_REST` of the totals; an ordinary group, a small share of its
    block, is not.  One-row groups are charged by no bound (their design is of rank
    one), nor a cancellation of 0 or less.

    Parameters
    ----------
    zz : ndarray of float64 (r, r, G)
        The groups' scaled ``Z̃_i'Z̃_i``, entry-major.
    nobs : ndarray (G,)
        The groups' rows.
    totals : ndarray of float64 (r,)
        The block's ``Z̃'Z̃`` diagonal summed over its groups.
    cancellation : float
        The fit's cancellation (:func:`~dmixed.fit.fit_warnings.cancellation`).

    Returns
    -------
    ndarray of float64 (G,)
        Each group's determinant bound, for :func:`plain_rounding`'s ``bounds``; 0 where
        the group is not charged.
    """
    r = zz.shape[0]
    g = zz.shape[-1]
    if r < 2 or not cancellation > 0:
        return np.zeros(g)
    share = _shares(zz, totals)
    with np.errstate(over="ignore", invalid="ignore"):
        bound = _heavy_bound(np.asarray(nobs, dtype=float), r, share, cancellation)
    charged = (np.asarray(nobs) > 1) & (share > 1.0 - DOMINANT_REST)
    return np.where(charged, np.nan_to_num(bound, nan=0.0), 0.0)


def largest_heavy_bound(r: int, most_rows: float, cancellation: float) -> float:
    """:func:`heavy_bounds`' largest value for groups of ``r`` random-design columns
    and at most ``most_rows`` rows at a fit of ``cancellation``: the bound of a group
    of ``most_rows`` rows holding the whole block (a share of 1), which no group's
    exceeds (the bound grows with the rows and the share).

    ``γ r^(r−1) cancellation / PLAIN_NEGLIGIBLE`` with ``γ = t / (1 − t)``,
    ``t = (most_rows + PLAIN_ROUNDINGS + 2r) ε`` (Higham's ``γ_n`` bound of a sum of
    ``n`` terms, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., §3.1, as
    :func:`heavy_bounds`; :data:`PLAIN_NEGLIGIBLE` measured in benchmarks/RESULTS.md,
    uncharged-s57): the same float as :func:`heavy_bounds` gives such a group (the
    same operations, on Python floats), without arrays made for one number.  A block's
    coarse check of its groups (``StatsBlock.plain_rounding``).

    Parameters
    ----------
    r : int
        The random design's columns (the blocks' ``Z̃_i'Z̃_i`` are r × r).
    most_rows : float
        The largest group's rows (a count, as a float).
    cancellation : float
        The fit's cancellation (:func:`~dmixed.fit.fit_warnings.cancellation`): how
        many times ``X'V*⁻¹X`` and ``Q`` are smaller than the totals they are the
        remainder of (dimensionless).

    Returns
    -------
    float
        A determinant bound of the scaled ``Z̃_i'Z̃_i`` (dimensionless), for the
        coarse check's :meth:`~dmixed.kernels.groups.StatsBlock.lossy_mask`: 0 where
        no group is charged (``r < 2``, ``most_rows ≤ 1``, ``cancellation ≤ 0`` or
        NaN, a NaN bound), the largest float64 where the bound overflows
        (``np.nan_to_num``'s value for inf).
    """
    if r < 2 or not cancellation > 0 or not most_rows > 1:
        return 0.0
    bound = _heavy_bound(float(most_rows), r, 1.0, cancellation)
    if math.isnan(bound):
        return 0.0
    return min(bound, _FLOAT_MAX)  # np.nan_to_num's value for inf


#: The largest float64 (np.nan_to_num's ``posinf``).
_FLOAT_MAX = float(np.finfo(np.float64).max)


def _heavy_bound(nobs, r: int, share, cancellation: float):
    """``e_i``'s determinant bound of :func:`heavy_bounds` (``γ_i r^(r−1) share_i
    cancellation / PLAIN_NEGLIGIBLE``) from the groups' rows ``nobs`` (float64 (G,) or
    a float) and shares: one owner of the formula for arrays and for one float."""
    eps = float(np.finfo(float).eps)
    terms = (nobs + PLAIN_ROUNDINGS + 2 * r) * eps
    gamma = terms / (1.0 - terms)
    return gamma * float(r) ** (r - 1) * share * cancellation / PLAIN_NEGLIGIBLE


class PlainRoundingError(ValueError):
    """Statistics whose plain sums do not resolve a group's random design at all (a
    worst-case rounding of its sums as large as half its scaled ``Z̃_i'Z̃_i``'s least
    eigenvalue): no bound on the fit's error holds (:func:`plain_rounding`)."""


class PlainRounding(NamedTuple):
    """What the groups taking the plain forms may round the fit by (:func:`plain_rounding`).

    Attributes
    ----------
    sizes : ndarray of float64 (k, k)
        ``P``, positive semi-definite: ``|w'δ([X y]'V*⁻¹[X y])w| ≤ w'Pw`` for every ``w``
        (k,), but for the share of the groups' own ``[X y]`` rows, which the sums do
        not hold.
    logdet : float
        A bound on ``Σ_i |δ log det K_i|``, ``K_i = I + Λ'Z̃_i'Z̃_iΛ``, at every ``Λ``.
    gamma : float
        The largest ``γ_i``: ``8γk diag(|[X y]'[X y]|)`` bounds the share left out of
        ``sizes`` (``γ(2|w|'h + |b|'g)² ≤ 8γ(|w|'h)² + 2γ(|b|'g)²``, and
        ``Σ_i (|w|'h_i)² ≤ k w'diag([X y]'[X y])w``: the caller holds ``[X y]'[X y]``).
    """

    sizes: np.ndarray
    logdet: float
    gamma: float

    @classmethod
    def zero(cls, k: int) -> PlainRounding:
        """Nothing charged (k fixed effects and response): no group takes the plain
        forms."""
        return cls(np.zeros((k, k)), 0.0, 0.0)

    @classmethod
    def unbounded(cls, k: int) -> PlainRounding:
        """Where some group's sums do not resolve its design (:class:`PlainRoundingError`):
        ``logdet`` infinite, no bound holds (:attr:`bounded` False)."""
        return cls(np.zeros((k, k)), np.inf, 0.0)

    @property
    def bounded(self) -> bool:
        """Whether a worst-case bound holds (not :meth:`unbounded`, nor a sum with one)."""
        return bool(np.isfinite(self.logdet))

    def __add__(self, other: object) -> PlainRounding:
        assert isinstance(other, PlainRounding)
        return PlainRounding(
            self.sizes + other.sizes,
            self.logdet + other.logdet,
            max(self.gamma, other.gamma),
        )


def plain_rounding(
    zz: np.ndarray,
    zxy: np.ndarray,
    nobs: np.ndarray,
    bound: float | np.ndarray = PLAIN_CHARGED_DETERMINANT,
) -> PlainRounding:
    """A worst-case bound on what the plain (uncentred) sums of an entry-major chunk
    (``zz`` (r, r, G), ``zxy`` (r, k, G), ``nobs`` (G,)) may round the fit by, for its
    groups below ``bound`` (:func:`lossy_groups`; a float or one per group (G,),
    :data:`PLAIN_CHARGED_DETERMINANT` unless given: a block passes
    :func:`near_lossy_bounds`, the groups that take the centred forms where their sums
    are at hand), not below :data:`LOSSY_DETERMINANT`.

    Group ``i``'s share of ``w'[X y]'V*⁻¹[X y]w`` is ``min_b f(b)``, ``f(b) = w'Hw −
    2b'Fw + b'(G + Ψ⁻¹)b`` (``G = Z̃_i'Z̃_i``, ``F = Z̃_i'[X y]``, ``H`` its ``[X y]'[X
    y]``, ``Ψ = ΛΛ'``).  Sums rounded to ``G + δG`` etc. move the minimum by at most
    ``|δf|`` at either minimiser, and ``|δf(b)| ≤ γ (|w|'h + |b|'g)²`` (``g``, ``h`` the
    columns' norms over the group's rows: ``|δG| ≤ γ|Z̃|'|Z̃|`` entrywise, ``γ`` of
    :data:`PLAIN_ROUNDINGS`).  Both minimisers have ``b'Gb ≤ τ² = w'F'G⁻¹Fw``, so with
    ``A = D^{-1/2}GD^{-1/2}`` (``D`` G's diagonal, λ its least eigenvalue)
    ``|b|'g ≤ √(rτ²/λ)``; the true sums' ``λ`` and ``τ`` are within ``ρ = rγ/λ`` of the
    rounded ones' (Weyl).  Hence ``sizes = Σ_i 2γ_i r T_i / (λ_i (1 − ρ_i)²)``,
    ``T_i = F̂_i'A_i⁻¹F̂_i``, ``F̂_i = D^{-1/2}F_i``, and the ``h`` share is left to the
    caller (:attr:`PlainRounding.gamma`); ``log det K_i`` moves by at most
    ``−r log(1 − ρ_i)`` (``Λ'δGΛ ≼ ρ_i Λ'GΛ ≼ ρ_i K_i``).  Zeros where no group is below
    the bound or all are below :data:`LOSSY_DETERMINANT` (what is left taking the plain
    forms there is structural: indicator columns that sum to the intercept, exact).

    Raises
    ------
    PlainRoundingError
        Where some charged group's ``ρ_i`` is ½ or more: its sums do not resolve its
        design, and no bound holds.
    """
    r, k, _ = zxy.shape
    mask = lossy_groups(zz, nobs, bound)
    if mask.any():
        # below LOSSY_DETERMINANT a group the plain forms would round is refused or
        # takes exact forms (the fit's check, inexact_groups); what is left there is
        # structural: indicator columns summing to the intercept, exact in float64
        mask &= ~lossy_groups(zz, nobs)
    if not mask.any():
        return PlainRounding.zero(k)
    a = np.moveaxis(zz[:, :, mask], -1, 0)  # (L, r, r)
    f = np.moveaxis(zxy[:, :, mask], -1, 0)  # (L, r, k)
    eps = float(np.finfo(float).eps)
    terms = (np.asarray(nobs, dtype=float)[mask] + PLAIN_ROUNDINGS + 2 * r) * eps
    gamma = terms / (1.0 - terms)
    diag = np.einsum("gaa->ga", a)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_d = np.where(diag > 0, 1.0 / np.sqrt(diag), 0.0)
    scaled = a * inv_d[:, :, None] * inv_d[:, None, :]
    scaled[:, np.arange(r), np.arange(r)] = 1.0  # a zero column: carries nothing
    with np.errstate(all="ignore"):
        try:
            lam, vec = np.linalg.eigh(scaled)  # ascending, per group
        except np.linalg.LinAlgError:  # not reached above LOSSY_DETERMINANT
            raise PlainRoundingError("a group's random design is singular") from None
        least = lam[:, 0]
        rho = r * gamma / least
        if not np.all(rho < 0.5):
            raise PlainRoundingError(
                "the plain sums of some group do not resolve its random design (their "
                f"rounding is {float(np.nanmax(rho)):.1g} of its least scaled eigenvalue)"
            )
        fhat = f * inv_d[:, :, None]  # (L, r, k)
        proj = np.einsum("gab,gak->gbk", vec, fhat) / np.sqrt(lam)[:, :, None]
        t = np.einsum("gbk,gbl->gkl", proj, proj)  # F̂'A⁻¹F̂
        coef = 2.0 * gamma * r / (least * (1.0 - rho) ** 2)
        sizes = np.einsum("g,gkl->kl", coef, t)  # positive semi-definite
        logdet = float(np.sum(-r * np.log1p(-rho)))
    # the eigen-solve's own rounding (A's condition times ε of T) inside a margin
    return PlainRounding(sizes * (1.0 + 1e-6), logdet * (1.0 + 1e-6), float(gamma.max()))


def centred_rounding(
    sums: CentredSums, nobs: np.ndarray, zz: np.ndarray, totals: np.ndarray, cancellation: float
) -> PlainRounding:
    """What the mean parts of heavy groups taking the centred forms from their sums
    about their means without ``W`` may round ``[X y]'V*⁻¹[X y]`` by.

    Charged: the groups heavy enough to matter (``γ_i share_i cancellation`` above
    :data:`PLAIN_NEGLIGIBLE`, and holding all but :data:`DOMINANT_REST` of the totals:
    the centred conditional is exact in the group's design, no ``1/det``).
    ``[X y]'[X y]`` holds the group's mean part ``u m m'`` summed over its ``n_i`` rows,
    and its centred ``m_i`` subtracts it again from ``u`` and ``m``: each within
    ``γ_i u |m||m|'`` of the exact (``γ_i`` of :func:`plain_rounding`), so
    ``sizes = Σ 2γ_i u_i |m_i||m_i|'`` (positive semi-definite); ``logdet`` 0 (``K_i``
    is made of ``C``, exact to ``ε``).

    Parameters
    ----------
    sums : CentredSums
        The groups' sums about their means (``mean`` (k, L), ``u`` (L,)).
    nobs : ndarray (L,)
        The groups' rows.
    zz : ndarray of float64 (r, r, L)
        The groups' scaled ``Z̃_i'Z̃_i``, entry-major.
    totals : ndarray of float64 (r,)
        As :func:`heavy_bounds`: the block's ``Z̃'Z̃`` diagonal summed.
    cancellation : float
        As :func:`heavy_bounds`.

    Returns
    -------
    PlainRounding
        ``sizes`` (k, k) as above, ``logdet`` 0, ``gamma`` the largest ``γ_i`` charged;
        zeros where no group is charged.
    """
    k = sums.mean.shape[0]
    r = zz.shape[0]
    if not cancellation > 0 or not np.size(nobs):
        return PlainRounding.zero(k)
    eps = float(np.finfo(float).eps)
    terms = (np.asarray(nobs, dtype=float) + PLAIN_ROUNDINGS + 2 * r) * eps
    gamma = terms / (1.0 - terms)
    share = _shares(zz, totals)
    heavy = (gamma * share * cancellation > PLAIN_NEGLIGIBLE) & (share > 1.0 - DOMINANT_REST)
    if not heavy.any():
        return PlainRounding.zero(k)
    m = np.abs(sums.mean[:, heavy])  # (k, H)
    coef = 2.0 * gamma[heavy] * sums.u[heavy]
    sizes = np.einsum("h,kh,lh->kl", coef, m, m)
    return PlainRounding(sizes * (1.0 + 1e-6), 0.0, float(gamma[heavy].max()))


@dataclass
class CentredSums:
    """Per-group sums about each group's own (weighted) mean, entry-major.

    For group ``i`` with rows scaled by ``e = √w`` (ones without weights) write
    ``Z̃_i = e z̄' + Z_c`` and ``[X_i y_i] = e m' + A_c`` with ``e'Z_c = 0`` and
    ``e'A_c = 0``.  Then ``Z̃_i'Z̃_i = u z̄z̄' + C`` and ``Z̃_i'[X_i y_i] = u z̄m' + D``.

    Attributes
    ----------
    u : ndarray (G,)
        ``e'e``: the group's weight (its rows, unweighted).
    zbar : ndarray (r, G)
        ``z̄``, the random-design columns' means.
    mean : ndarray (k, G)
        ``m``, the means of ``[X y]``.
    c : ndarray (r, r, G)
        ``C = Z_c'Z_c``.
    d : ndarray (r, k, G)
        ``D = Z_c'A_c``.
    lossy : ndarray (G,) bool
        The groups whose uncentred sums would lose digits (:func:`lossy_groups`), for
        which the sums were made (all the groups then take :func:`centred_conditional`:
        exact for every group, and none of them subtracts ``u m m'`` from ``W``).
    within : ndarray (k, k) or None
        ``Σ_i A_c'A_c`` over the groups summed (``GlobalStats.within``).
    """

    u: np.ndarray
    zbar: np.ndarray
    mean: np.ndarray
    c: np.ndarray
    d: np.ndarray
    lossy: np.ndarray
    within: np.ndarray | None = None
    _kept: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def take(self, sel) -> CentredSums:
        """The sums of the groups ``sel`` (an index array or a slice), contiguous."""

        def cut(arr: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(arr[..., sel])

        return CentredSums(
            cut(self.u),
            cut(self.zbar),
            cut(self.mean),
            cut(self.c),
            cut(self.d),
            cut(self.lossy),
        )

    @property
    def nbytes(self) -> int:
        """Bytes of the per-group arrays."""
        return sum(a.nbytes for a in (self.u, self.zbar, self.mean, self.c, self.d, self.lossy))


def concatenate_centred(parts: list) -> CentredSums:
    """The :class:`CentredSums` of several sets of groups, one after the other (their
    ``within`` left out)."""

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(c, name) for c in parts], axis=-1)

    return CentredSums(cat("u"), cat("zbar"), cat("mean"), cat("c"), cat("d"), cat("lossy"))


def _centred_parts(sums: CentredSums, lam: np.ndarray):
    """:func:`_centred_terms` at ``lam``, kept on ``sums`` for the next call at the same
    ``Λ`` (a step asks for the conditionals, then for ``between``)."""
    key = lam.tobytes() + str(lam.shape).encode()
    kept = sums._kept  # read once (another thread may step meanwhile)
    if kept is not None and kept[0] == key:
        return kept[1]
    parts = _centred_terms(sums, lam)
    sums._kept = (key, parts)
    return parts


def _centred_terms(sums: CentredSums, lam: np.ndarray):
    """What :func:`centred_conditional` and :func:`centred_between` are made of.

    ``K = K_c + u a a'`` with ``K_c = I + Λ'CΛ`` and ``a = Λ'z̄``; with
    ``P_c = ΛK_c⁻¹Λ'``, ``t = z̄'P_c z̄`` and ``s = 1 + u t = |K|/|K_c|`` (matrix
    determinant lemma), Sherman–Morrison on the mean direction gives, for any two
    column blocks ``X = e m_X' + X_c`` and ``Y = e m_Y' + Y_c`` of the group::

        X'V*⁻¹Y = X_c'Y_c − X_c'Z_c P_c Z_c'Y_c + (u/s) φ_X φ_Y',
        φ_X = m_X − X_c'Z_c P_c z̄

    ``(I + CB)⁻¹[D z̄]`` (``B = ΛΛ'``) comes from the subtraction-free forms of
    :func:`_conditional`.  Returns ``P_c``, ``log|K_c|``, ``S_c``, ``(I + CB)⁻¹[D z̄]``,
    ``P_c z̄``, ``f = u/s``, ``log s`` and ``φ`` of ``[X y]``.
    """
    r, k, g = sums.d.shape
    dz = np.empty((r, k + 1, g))
    dz[:, :k] = sums.d
    dz[:, k] = sums.zbar
    p_c, logdet_c, s_c, hz = _conditional(sums.c, dz, lam, False, False)
    # t = a'K_c⁻¹a from a = Λ'z̄ (a sum of squares where C is small), not z̄'P_c z̄
    # (whose terms cancel where z̄'s entries differ in sign)
    a = lam.T @ sums.zbar  # (r, G)
    kc = np.moveaxis(lam.T @ np.moveaxis(sums.c, -1, 0) @ lam, 0, -1)
    for i in range(r):
        kc[i, i] += 1.0
    if r == 2:  # K_c⁻¹a by its adjugate (|K_c| ≥ 1): no batched LAPACK call per step
        det = kc[0, 0] * kc[1, 1] - kc[0, 1] * kc[1, 0]
        x = np.stack([kc[1, 1] * a[0] - kc[0, 1] * a[1], kc[0, 0] * a[1] - kc[1, 0] * a[0]])
        x /= det
    else:
        x = np.linalg.solve(np.moveaxis(kc, -1, 0), a.T[..., None])[..., 0].T  # K_c⁻¹a
    t = np.maximum((a * x).sum(axis=0), 0.0)
    pz = lam @ x  # (r, G): P_c z̄
    ut = sums.u * t
    f = sums.u / (1.0 + ut)
    phi = sums.mean - (sums.d * pz[:, None, :]).sum(axis=0)  # m − D'P_c z̄
    return p_c, logdet_c, s_c, hz, pz, f, np.log1p(ut), phi


def centred_conditional(sums: CentredSums, lam: np.ndarray):
    """``P``, ``log|K|``, ``S`` and ``H`` (entry-major, as :func:`conditional`) of groups
    from their centred sums, exact however close to singular ``Z̃_i'Z̃_i`` is.

    With the terms of :func:`_centred_parts` (``w_z = (I + CB)⁻¹z̄``)::

        log|K| = log|K_c| + log1p(u t)
        S = (I + CB)⁻¹C + (u/s) w_z w_z'
        H = (I + CB)⁻¹D + (u/s) w_z φ'
        P = P_c − (u/s) (P_c z̄)(P_c z̄)'

    nothing of the size of ``u z̄z̄'`` subtracted (only ``P``'s last term, as in the
    rank-one forms).  ``sums``: :class:`CentredSums` of the groups (G of them).
    """
    k = sums.d.shape[1]
    p_c, logdet_c, s_c, hz, pz, f, log_s, phi = _centred_parts(sums, lam)
    wz = hz[:, k]
    s = s_c + wz[:, None] * wz[None, :] * f
    h = hz[:, :k] + wz[:, None] * (phi * f)[None, :]
    p_mat = p_c - pz[:, None] * pz[None, :] * f
    return p_mat, logdet_c + log_s, s, h


def centred_between(sums: CentredSums, lam: np.ndarray) -> np.ndarray:
    """``Σ_i ([X_i y_i]'V*_i⁻¹[X_i y_i] − A_c'A_c)`` (k × k, symmetric) over the groups
    of ``sums``: ``Σ_i ((u/s) φφ' − D'P_c D)`` (:func:`_centred_parts`), what they add
    to the within-group cross-products ``W`` in the profile."""
    p_c, _, _, _, _, f, _, phi = _centred_parts(sums, lam)
    out = (phi * f) @ phi.T
    return 0.5 * (out + out.T) - m_sum(sums.d, p_c)


def centred_from_shifted(
    zz: np.ndarray,
    zxy: np.ndarray,
    e: int,
    sel: np.ndarray,
    shifted: tuple,
    shared: tuple,
) -> CentredSums:
    """The :class:`CentredSums` of the groups ``sel`` (L,) of an entry-major chunk,
    from its plain sums ``zz`` (r, r, G) and ``zxy`` (r, k, G) and the random design's
    sums about a shift of each group's own (its first row's values, in the map's
    units): exact however close to constant the columns are within the group.

    With ``e = √w`` (column ``e`` of ``Z̃``, the intercept), ``t`` a group's shift
    and ``δ = Z̃ − e t'`` its rows about it, ``shifted`` is ``(t (r, L), e'δ (r, L),
    δ'δ (r, r, L), δ'[X y] (r, k, L))`` (:func:`~dmixed.kernels.rows.shifted_statistics`;
    ``t_e = 1``).  With ``u = ZZ[e, e]``, ``d = e'δ/u`` and ``m = ZXy[e]/u``::

        z̄ = t + d,   C = δ'δ − u d d',   D = δ'[X y] − u d m'

    each term of the size of the group's spread (nothing of the size of its mean
    subtracted); ``D``'s column of a column of ``[X y]`` that is column ``b`` of ``Z̃``
    (``shared[j] = b``; −1: none) is ``C``'s column ``b``.  The groups are marked lossy
    (all of them take the centred forms).
    """
    shift, dsum, dgram, dxy = shifted
    zxy_s = zxy[..., sel]
    u = zz[e, e][sel]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_u = np.where(u > 0, 1.0 / u, 0.0)
    d = dsum * inv_u
    c = dgram - dsum[:, None] * d[None, :]
    c = 0.5 * (c + np.swapaxes(c, 0, 1))
    mean = zxy_s[e] * inv_u  # (k, L)
    dm = dxy - dsum[:, None] * mean[None]
    for j, b in enumerate(shared):
        if b >= 0:
            dm[:, j] = c[:, b]
    dm[e] = 0.0  # the intercept's row: e less e·1, nothing
    return CentredSums(u, shift + d, mean, c, dm, np.ones(u.shape, dtype=bool))
