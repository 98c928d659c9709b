"""The profiled log-likelihood, its score and the Hessian, from summed contributions.

This runs on the driver.  It only sees sums over groups (:class:`~dmixed.kernels.StepSums`,
:class:`~dmixed.kernels.HessianSums`) and the global cross-products ``[X y]'[X y]``, so it
does not care where the statistics live.  Formulas: DESIGN.md §3–5.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..kernels import HessianSums, StepSums
from ..stats import GlobalStats

_LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass
class Profile:
    """Quantities at the GLS estimate for fixed covariance parameters.

    ``A = X'V*⁻¹X``, ``b = X'V*⁻¹y``, ``β̂ = A⁻¹b`` and the residual quadratic form
    ``Q = y'V*⁻¹y − b'β̂``; ``σ̂² = Q / fac`` with ``fac = n`` (ML) or ``n − p`` (REML).
    """

    a: np.ndarray
    b: np.ndarray
    a_inv: np.ndarray
    logdet_a: float
    beta: np.ndarray
    q: float
    fac: float

    @property
    def scale(self) -> float:
        return self.q / self.fac

    @functools.cached_property
    def w(self) -> np.ndarray:
        """``[−β̂; 1]``: ``u_i = H_i w`` is Z̃_i'V*_i⁻¹(y_i − X_i β̂) (read-only, made once)."""
        out = np.append(-self.beta, 1.0)
        out.flags.writeable = False
        return out


def residual_cross_products(step: StepSums, glob: GlobalStats) -> np.ndarray:
    """``[X y]'V*⁻¹[X y]`` (k × k).

    With one random-design column and the within-group cross-products at hand, as
    ``within + Σ_i F_i'F_i / (U_i (1 + λ²U_i))``: a sum of positive parts, exact
    however small the residual variance is next to the groups' spread.  Otherwise
    ``[X y]'[X y] − Σ_i m_i``, which loses the digits that the two have in common.
    """
    if glob.within is not None and step.s.shape[0] == 1:
        t = glob.within + step.between
    else:
        t = glob.xyxy - step.m
    return 0.5 * (t + t.T)


def profile(step: StepSums, glob: GlobalStats, reml: bool) -> Profile:
    """GLS fixed effects and residual quadratic form from the step sums.

    ``[X y]'V*⁻¹[X y] = [X y]'[X y] − Σ_i ZXy_i' P_i ZXy_i``; one small Cholesky of
    its ``X`` block gives β̂, ``log|A|`` and ``A⁻¹``.
    """
    t = residual_cross_products(step, glob)
    p = glob.k_fe
    a = t[:p, :p]
    b = t[:p, p]
    c = float(t[p, p])
    if p:
        chol = np.linalg.cholesky(a)
        logdet_a = 2.0 * float(np.log(chol.diagonal()).sum())
        chol_inv = np.linalg.inv(chol)
        a_inv = chol_inv.T @ chol_inv
        beta = a_inv @ b
    else:
        logdet_a, a_inv, beta = 0.0, np.zeros((0, 0)), np.zeros(0)
    q = c - float(b @ beta)
    fac = float(glob.n - p) if reml else float(glob.n)
    return Profile(a, b, a_inv, logdet_a, beta, q, fac)


def profile_weights(step: StepSums, glob: GlobalStats, reml: bool) -> np.ndarray:
    """``w = [−β̂; 1]`` of :func:`profile` (what the Hessian sums are contracted with):
    the same numbers as ``profile(step, glob, reml).w``.

    Raises ``np.linalg.LinAlgError`` where ``X'V*⁻¹X`` is not positive definite.
    """
    return profile(step, glob, reml).w


#: The optimizer rejects a point where :func:`resolution` exceeds this: ℓ is off by
#: about (f/2)·resolution there, rounding rather than data, and far out on a ridge that
#: noise makes spurious maxima (σ̂² → 0 with an llf above the true maximum).
RESOLUTION_LIMIT = 1e-5


def resolution(step: StepSums, prof: Profile, glob: GlobalStats) -> float:
    """The relative rounding error of ``Q`` (and so of ``σ̂²``), to its order.

    ``Q = w'([X y]'[X y] − Σ_i m_i)w`` with ``w = [−β̂; 1]`` subtracts numbers of the
    size of ``|w|'|[X y]'[X y]||w|``, each summed over rows and groups in float64 with
    a relative error of about ε: what is left is known to about that size times ε,
    divided by ``Q`` (a typical error, not a worst case: the tests check it against
    extended-precision evaluations).  Near zero for ordinary data (Q is a fair share of the total);
    large when the residual variance is many orders of magnitude below the spread of the
    response within the random effects' reach.  Where ``Q`` comes as a sum of positive
    parts (:func:`residual_cross_products`: one random-design column with the
    within-group cross-products) the parts are what is summed, and the bound is a few ε.
    """
    if not prof.q > 0:
        return np.inf
    w = np.abs(prof.w)
    if glob.within is not None and step.s.shape[0] == 1:
        parts = np.abs(glob.within) + np.abs(step.between)
    else:
        parts = np.abs(glob.xyxy) + np.abs(step.m)
    size = float(w @ parts @ w)
    return float(np.finfo(float).eps) * size / prof.q


def _constant(fac: float, glob: GlobalStats) -> float:
    return 0.5 * fac * (np.log(fac) - _LOG_2PI - 1.0) + 0.5 * glob.sum_log_weights


def loglike_at_scale(
    step: StepSums, prof: Profile, glob: GlobalStats, reml: bool, scale: float
) -> float:
    """The log-likelihood at a given residual variance ``σ² = scale`` (σ² not profiled).

    ℓ(θ, σ²) = −½ Σ log|K_i| − (f/2) log σ² − Q/(2σ²) − (f/2) log 2π + ½ Σ log w_j,
    minus ½ log|A| for REML (f = n or n − p); :func:`loglike` is its maximum over σ²,
    at σ̂² = Q/f.  Used by the profile likelihoods of :mod:`dmixed.inference`.
    """
    fac = prof.fac
    llf = (
        -0.5 * step.logdet
        - 0.5 * fac * np.log(scale)
        - prof.q / (2.0 * scale)
        - 0.5 * fac * _LOG_2PI
        + 0.5 * glob.sum_log_weights
    )
    if reml:
        llf -= 0.5 * prof.logdet_a
    return float(llf)


def loglike(step: StepSums, prof: Profile, glob: GlobalStats, reml: bool) -> float:
    """Profiled log-likelihood (β and σ² profiled out).

    ML:   ℓ = −½ Σ log|K_i| − (n/2) log Q + (n/2) log n − (n/2) log 2π − n/2
    REML: ℓ = −½ Σ log|K_i| − ½ log|A| − (f/2) log Q + (f/2)(log f − log 2π − 1), f = n − p
    (plus ½ Σ log w_j with prior weights).  Returns −inf where Q ≤ 0.
    """
    if not prof.q > 0:
        return -np.inf
    val = -0.5 * step.logdet - 0.5 * prof.fac * np.log(prof.q) + _constant(prof.fac, glob)
    if reml:
        val -= 0.5 * prof.logdet_a
    return float(val)


def score_matrices(
    step: StepSums, prof: Profile, reml: bool, slot_component: np.ndarray, k_vc: int
) -> tuple[np.ndarray, np.ndarray]:
    """Gradient of the profiled log-likelihood with respect to Ψ* and τ*.

    ``∂ℓ/∂B*_ab = −½ Σ S_i,ab + (fac / 2Q) Σ u_i,a u_i,b [+ REML: ½ tr(A⁻¹ Σ G_i,a G_i,b')]``
    with ``u_i = H_i w`` (envelope theorem: β̂ is optimal, so only V* moves).

    Returns
    -------
    d_psi : ndarray (q, q)
        ``D`` with ``dℓ = Σ_ab D_ab dΨ*_ab`` (entries treated as free, D symmetric).
    d_tau : ndarray (d,)
        ``∂ℓ/∂τ*_l``: the sum of ``D`` over the diagonal slots of component l.
    """
    w = prof.w
    p = prof.beta.shape[0]
    q = step.t_re.shape[0]
    ratio = prof.fac / (2.0 * prof.q)
    u_re = np.einsum("i,abij,j->ab", w, step.t_re, w)
    d_psi = -0.5 * step.s[:q, :q] + ratio * u_re
    if reml and p:
        d_psi = d_psi + 0.5 * np.einsum("ij,abji->ab", prof.a_inv, step.t_re[:, :, :p, :p])
    if not step.t_vc.shape[0]:  # no variance-component slot
        return 0.5 * (d_psi + d_psi.T), np.zeros(k_vc)
    u_vc = np.einsum("i,aij,j->a", w, step.t_vc, w)
    d_slot = -0.5 * np.diagonal(step.s)[q:] + ratio * u_vc
    if reml and p:
        d_slot = d_slot + 0.5 * np.einsum("ij,aji->a", prof.a_inv, step.t_vc[:, :p, :p])
    d_tau = np.bincount(slot_component, weights=d_slot, minlength=k_vc)
    return 0.5 * (d_psi + d_psi.T), d_tau


def hessian(
    step: StepSums,
    hs: HessianSums,
    beta: np.ndarray,
    glob: GlobalStats,
    reml: bool,
    prof: Profile | None = None,
) -> np.ndarray:
    """Hessian of ℓ(β, θ) (σ² profiled, β free) in [β, vech_lt(Ψ*), τ*].

    ``prof``: :func:`profile` of ``step`` when the caller has it (else computed here).

    With ``Q(β, θ) = Σ r_i'V*_i⁻¹r_i`` and ``ℓ = −½Σlog|V*_i| [−½log|A|] − (fac/2) log Q``::

        Q_β = −2(b − Aβ),  Q_j = −Σ u'E_j u,  Q_ββ = 2A,  Q_βj = 2 Σ G'E_j u,
        Q_jk = 2 Σ u'E_j S E_k u,  ∂²(−½Σlog|V*|) = ½ Σ tr(S E_j S E_k),
        ∂²(−½ log|A|) = ½ tr(A⁻¹A_j A⁻¹A_k) − ½ tr(A⁻¹A_jk)   (REML)

    and ``∂²(−(fac/2) log Q) = −(fac/2)(Q_ab/Q − Q_a Q_b/Q²)``.  This is the matrix whose
    negative inverse statsmodels reports as ``cov_params()``.
    """
    if prof is None:
        prof = profile(step, glob, reml)
    beta = np.asarray(beta, dtype=np.float64)
    w = np.append(-beta, 1.0)
    t = residual_cross_products(step, glob)
    qf = float(w @ t @ w)
    fac = prof.fac
    a = prof.a
    q_b = -2.0 * (prof.b - a @ beta)
    q_j = -hs.u_e_u
    h_bb = -0.5 * fac * (2.0 * a / qf - np.outer(q_b, q_b) / qf**2)
    h_bj = -0.5 * fac * (2.0 * hs.g_e_u.T / qf - np.outer(q_b, q_j) / qf**2)
    h_jk = 0.5 * hs.tr_ss - 0.5 * fac * (2.0 * hs.u_s_u / qf - np.outer(q_j, q_j) / qf**2)
    if reml and beta.size:
        # as matrix products (einsum's parsing cost more than these small sums)
        p, m = beta.size, hs.a_j.shape[0]
        ql = prof.a_inv @ hs.a_j  # A⁻¹A_j
        tr_ql = ql.reshape(m, p * p) @ ql.transpose(0, 2, 1).reshape(m, p * p).T
        h_jk = h_jk + 0.5 * tr_ql  # tr(A⁻¹A_j A⁻¹A_k)
        h_jk = h_jk - 0.5 * (hs.a_jk.reshape(m, m, p * p) @ prof.a_inv.T.reshape(p * p))
    k = beta.size
    m = h_jk.shape[0]
    out = np.empty((k + m, k + m))
    out[:k, :k] = h_bb
    out[:k, k:] = h_bj
    out[k:, :k] = h_bj.T
    out[k:, k:] = 0.5 * (h_jk + h_jk.T)
    return out
