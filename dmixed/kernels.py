"""Pure numpy kernels: per-group sufficient statistics and their contributions.

Nothing here knows about Dask, pandas or the optimizer.  Every function works on
stacked per-group arrays (a leading axis of length ``G``, the number of groups in the
block) and returns contributions that are *sums over groups*, so that an engine can
evaluate them on any partition of the groups and add the results.

Notation (see DESIGN.md §1–6).  For group ``i`` the padded random design is
``Z̃_i`` (``n_i × r``; the ``q`` columns of ``exog_re`` followed by the variance
component slots), the fixed design ``X_i`` (``n_i × p``) and the response ``y_i``.
The statistics are ``ZZ_i = Z̃_i'Z̃_i`` and ``ZXy_i = Z̃_i'[X_i, y_i]``.  For the
relative covariance factor ``Λ`` (``B* = ΛΛ'``)::

    K_i = I + Λ' ZZ_i Λ,           log|V*_i| = log|K_i|
    P_i = Λ K_i⁻¹ Λ'               (V*_i⁻¹ = I − Z̃_i P_i Z̃_i')
    S_i = Z̃_i'V*_i⁻¹Z̃_i = ZZ_i − ZZ_i P_i ZZ_i
    H_i = Z̃_i'V*_i⁻¹[X_i, y_i] = ZXy_i − ZZ_i P_i ZXy_i
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Groups are processed in chunks of this many, to bound the size of the
# (G, m, r, r)-shaped temporaries of the Hessian and keep them cache friendly.
_CHUNK = 65536


# ---------------------------------------------------------------------------
# Sufficient statistics from rows
# ---------------------------------------------------------------------------


def assign_vc_slots(
    codes: np.ndarray, cols: np.ndarray, vals: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """Give every (group, variance-component column) pair present in a group a slot.

    Within a group, the columns of one variance component that are non-zero on at
    least one of its rows are numbered ``0, 1, …`` in increasing column order.  All
    other columns of that component are identically zero in the group and contribute
    nothing to the likelihood (DESIGN.md §2, padding is exact), so they get no slot.

    Parameters
    ----------
    codes : ndarray of int, shape (n,)
        Group code of every row.
    cols : ndarray of int, shape (n, k)
        Global column index of each sparse entry of the row, ``-1`` for none.
    vals : ndarray of float, shape (n, k)
        Value of each entry.

    Returns
    -------
    pair_keys : ndarray of int64, shape (u,)
        Sorted keys ``code * ncols + col`` of the pairs present.
    pair_slots : ndarray of int64, shape (u,)
        Slot of each pair within its group.
    width : int
        The largest number of slots any group needs.
    """
    ncols = int(cols.max()) + 1 if cols.size else 0
    present = (cols >= 0) & (vals != 0)
    rows = np.broadcast_to(codes[:, None], cols.shape)[present].astype(np.int64)
    keys = np.unique(rows * max(ncols, 1) + cols[present].astype(np.int64))
    if keys.size == 0:
        return keys, keys.copy(), 0
    group_of_key = keys // max(ncols, 1)
    # rank within group: position minus position of the group's first key
    first = np.r_[True, group_of_key[1:] != group_of_key[:-1]]
    start = np.maximum.accumulate(np.where(first, np.arange(keys.size), 0))
    slots = np.arange(keys.size) - start
    return keys, slots.astype(np.int64), int(slots.max()) + 1


def lookup_vc_slots(
    codes: np.ndarray,
    cols: np.ndarray,
    vals: np.ndarray,
    pair_keys: np.ndarray,
    pair_slots: np.ndarray,
    ncols: int,
) -> np.ndarray:
    """Slot of every sparse entry, ``-1`` where the entry is absent or zero.

    ``pair_keys``/``pair_slots`` come from :func:`assign_vc_slots` (possibly computed on
    all the data, while ``codes``/``cols`` describe one block of rows).
    """
    present = (cols >= 0) & (vals != 0)
    keys = codes[:, None].astype(np.int64) * max(ncols, 1) + cols.astype(np.int64)
    pos = np.searchsorted(pair_keys, keys)
    pos = np.minimum(pos, max(pair_keys.size - 1, 0))
    found = present & (pair_keys.size > 0)
    if pair_keys.size:
        found &= pair_keys[pos] == keys
    if np.any(present & ~found):
        raise ValueError("a variance-component entry has no slot: the slot map is incomplete")
    return np.where(found, pair_slots[pos] if pair_keys.size else -1, -1)


def dense_random_design(
    exog_re: np.ndarray,
    vc_slots: list[np.ndarray],
    vc_vals: list[np.ndarray],
    vc_widths: list[int],
) -> np.ndarray:
    """Row-level padded random design ``Z̃`` of width ``r = q + Σ_l m_l``.

    Component ``l`` occupies columns ``q + Σ_{l'<l} m_l'`` onwards; each sparse entry
    is written into the column of its slot.
    """
    n, q = exog_re.shape
    r = q + int(sum(vc_widths))
    zt = np.zeros((n, r))
    zt[:, :q] = exog_re
    offset = q
    rows = np.arange(n)
    for slots, vals, width in zip(vc_slots, vc_vals, vc_widths, strict=True):
        for k in range(slots.shape[1]):
            ok = slots[:, k] >= 0
            np.add.at(zt, (rows[ok], offset + slots[ok, k]), vals[ok, k])
        offset += width
    return zt


def accumulate_statistics(
    codes: np.ndarray,
    n_groups: int,
    endog: np.ndarray,
    exog: np.ndarray,
    ztilde: np.ndarray,
    weights: np.ndarray | None = None,
    per_group_xyxy: bool = False,
) -> dict[str, np.ndarray]:
    """One pass over rows: per-group and global sufficient statistics.

    With prior weights ``w_j`` (residual variance ``σ²/w_j``) every row is scaled by
    ``√w_j`` first, which turns the weighted model into the unweighted one; the
    likelihood then gains ``½ Σ log w_j`` (returned as ``sum_log_weights``).

    Returns
    -------
    dict with
        ``zz`` (G, r, r) = Σ_rows z̃ z̃',  ``zxy`` (G, r, p+1) = Σ_rows z̃ [x, y],
        ``nobs`` (G,), ``xyxy`` (p+1, p+1) = [X y]'[X y],  ``n``,
        ``sum_log_weights``; with ``per_group_xyxy`` also ``xyxy_group`` (G, p+1, p+1)
        and ``sum_log_weights_group`` (G,), so that partial statistics of a group spread
        over many partitions can be added by group key alone.
    """
    codes = np.asarray(codes, dtype=np.int64)
    n = codes.shape[0]
    xy = np.empty((n, exog.shape[1] + 1))
    xy[:, :-1] = exog
    xy[:, -1] = endog
    zt = np.asarray(ztilde, dtype=np.float64)
    sum_log_w = 0.0
    if weights is not None:
        sw = np.sqrt(weights)
        xy *= sw[:, None]
        zt = zt * sw[:, None]
        sum_log_w = float(np.sum(np.log(weights)))
    r = zt.shape[1]
    k = xy.shape[1]
    zz = np.zeros((n_groups, r, r))
    for a in range(r):
        za = zt[:, a]
        if not za.any():
            continue
        for b in range(a + 1):
            col = np.bincount(codes, weights=za * zt[:, b], minlength=n_groups)
            zz[:, a, b] = col
            zz[:, b, a] = col
    zxy = np.zeros((n_groups, r, k))
    for a in range(r):
        za = zt[:, a]
        if not za.any():
            continue
        for j in range(k):
            zxy[:, a, j] = np.bincount(codes, weights=za * xy[:, j], minlength=n_groups)
    out = {
        "zz": zz,
        "zxy": zxy,
        "nobs": np.bincount(codes, minlength=n_groups).astype(np.int64),
        "xyxy": xy.T @ xy,
        "n": np.int64(n),
        "sum_log_weights": np.float64(sum_log_w),
    }
    if per_group_xyxy:
        xyxy_group = np.zeros((n_groups, k, k))
        for a in range(k):
            for b in range(a + 1):
                col = np.bincount(codes, weights=xy[:, a] * xy[:, b], minlength=n_groups)
                xyxy_group[:, a, b] = col
                xyxy_group[:, b, a] = col
        out["xyxy_group"] = xyxy_group
        out["sum_log_weights_group"] = (
            np.bincount(codes, weights=np.log(weights), minlength=n_groups)
            if weights is not None
            else np.zeros(n_groups)
        )
    return out


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
    """

    logdet: float
    m: np.ndarray
    s: np.ndarray
    t_re: np.ndarray
    t_vc: np.ndarray

    def __add__(self, other: StepSums) -> StepSums:
        return StepSums(
            self.logdet + other.logdet,
            self.m + other.m,
            self.s + other.s,
            self.t_re + other.t_re,
            self.t_vc + other.t_vc,
        )


def _factor(zz: np.ndarray, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``P_i = Λ K_i⁻¹ Λ'`` and ``log|K_i|`` for a block of groups.

    ``K_i`` has eigenvalues ≥ 1, so the factorization never fails, even when ``Λ``
    is singular (a variance on the boundary).  Closed forms for r ≤ 2 avoid LAPACK
    call overhead on the very common random-intercept and random-slope models.
    """
    g, r, _ = zz.shape
    if r == 0:
        return np.zeros((g, 0, 0)), np.zeros(g)
    lzl = lam.T @ zz @ lam  # (G, r, r) = Λ' ZZ_i Λ
    if r == 1:
        kk = 1.0 + lzl[:, 0, 0]
        p = (lam[0, 0] ** 2 / kk)[:, None, None]
        return p, np.log(kk)
    if r == 2:
        k00 = 1.0 + lzl[:, 0, 0]
        k11 = 1.0 + lzl[:, 1, 1]
        k01 = lzl[:, 0, 1]
        det = k00 * k11 - k01 * k01
        kinv = np.empty((g, 2, 2))
        kinv[:, 0, 0] = k11 / det
        kinv[:, 1, 1] = k00 / det
        kinv[:, 0, 1] = kinv[:, 1, 0] = -k01 / det
        return lam @ kinv @ lam.T, np.log(det)
    kmat = lzl + np.eye(r)
    chol = np.linalg.cholesky(kmat)
    logdet = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
    kinv = np.linalg.inv(kmat)
    return lam @ kinv @ lam.T, logdet


def _conditional(zz: np.ndarray, zxy: np.ndarray, lam: np.ndarray):
    """Per-group ``P``, ``log|K|``, ``S`` and ``H`` (see module docstring)."""
    p_mat, logdet = _factor(zz, lam)
    zzp = zz @ p_mat  # ZZ_i P_i
    s = zz - zzp @ zz
    h = zxy - zzp @ zxy
    return p_mat, logdet, s, h


def step_contributions(zz: np.ndarray, zxy: np.ndarray, lam: np.ndarray, q: int) -> StepSums:
    """Contributions of a block of groups to the profiled likelihood and score.

    Parameters
    ----------
    zz : ndarray (G, r, r)
    zxy : ndarray (G, r, p+1)
    lam : ndarray (r, r)
        The relative covariance factor Λ (lower triangular on the ``exog_re`` block,
        diagonal on the variance-component slots).
    q : int
        Number of ``exog_re`` coordinates.
    """
    r = zz.shape[1] if zz.ndim == 3 else lam.shape[0]
    k = zxy.shape[2] if zxy.ndim == 3 else 1
    total = StepSums(
        0.0,
        np.zeros((k, k)),
        np.zeros((r, r)),
        np.zeros((q, q, k, k)),
        np.zeros((r - q, k, k)),
    )
    for lo in range(0, zz.shape[0], _CHUNK):
        zzc = zz[lo : lo + _CHUNK]
        zxyc = zxy[lo : lo + _CHUNK]
        p_mat, logdet, s, h = _conditional(zzc, zxyc, lam)
        pz = p_mat @ zxyc
        hr = h[:, :q]
        hv = h[:, q:]
        total = total + StepSums(
            float(logdet.sum()),
            np.einsum("gri,grj->ij", zxyc, pz),
            s.sum(axis=0),
            np.einsum("gai,gbj->abij", hr, hr),
            np.einsum("gai,gaj->aij", hv, hv),
        )
    return total


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
    - ``a_jk[j,k] = Σ G'(E_j S E_k + E_k S E_j)G``  (p, p)
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


def hessian_contributions(
    zz: np.ndarray, zxy: np.ndarray, lam: np.ndarray, basis: np.ndarray, w: np.ndarray
) -> HessianSums:
    """Contributions of a block of groups to the Hessian sums.

    Parameters
    ----------
    basis : ndarray (m, r, r)
        ``E_j``: derivative of ``B*`` with respect to each covariance parameter.
    w : ndarray (p+1,)
        ``[−β; 1]``.
    """
    m = basis.shape[0]
    p = zxy.shape[2] - 1
    out = HessianSums(
        np.zeros((m, m)),
        np.zeros((m, m)),
        np.zeros(m),
        np.zeros((m, p)),
        np.zeros((m, p, p)),
        np.zeros((m, m, p, p)),
    )
    for lo in range(0, zz.shape[0], _CHUNK):
        _, _, s, h = _conditional(zz[lo : lo + _CHUNK], zxy[lo : lo + _CHUNK], lam)
        u = h @ w  # (G, r)
        gm = h[:, :, :p]  # (G, r, p)
        se = np.einsum("gab,jbc->gjac", s, basis)  # S E_j
        eu = np.einsum("jab,gb->gja", basis, u)  # E_j u
        eg = np.einsum("jab,gbp->gjap", basis, gm)  # E_j G
        seg = np.einsum("gab,gjbp->gjap", s, eg)  # S E_j G
        half = np.einsum("gjaq,gkap->jkqp", eg, seg)  # G'E_j S E_k G
        out = out + HessianSums(
            np.einsum("gjab,gkba->jk", se, se),
            np.einsum("gja,gab,gkb->jk", eu, s, eu),
            np.einsum("ga,gja->j", u, eu),
            np.einsum("gap,gja->jp", gm, eu),
            np.einsum("gap,gjaq->jpq", gm, eg),
            half + half.transpose(1, 0, 3, 2),
        )
    return out


# ---------------------------------------------------------------------------
# Random effects (BLUPs) and their conditional covariance
# ---------------------------------------------------------------------------


def random_effects_block(
    zz: np.ndarray, zxy: np.ndarray, lam: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """BLUPs and conditional covariances (relative to σ²) for a block of groups.

    ``γ̂_i = B* u_i`` with ``u_i = Z̃_i'V*_i⁻¹(y_i − X_i β)`` and
    ``Var(γ_i | y)/σ² = B* − B* S_i B* = Λ K_i⁻¹ Λ'``, which stays finite when ``B*``
    is singular (boundary fits).

    Returns
    -------
    blup : ndarray (G, r)
    cond_cov : ndarray (G, r, r)   (multiply by the scale σ̂²)
    """
    bstar = lam @ lam.T
    blups = []
    covs = []
    for lo in range(0, zz.shape[0], _CHUNK):
        p_mat, _, _, h = _conditional(zz[lo : lo + _CHUNK], zxy[lo : lo + _CHUNK], lam)
        blups.append((h @ w) @ bstar.T)
        covs.append(p_mat)
    if not blups:
        r = lam.shape[0]
        return np.zeros((0, r)), np.zeros((0, r, r))
    return np.concatenate(blups), np.concatenate(covs)
