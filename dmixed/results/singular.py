"""lme4's ``isSingular``: is a fit's random-effects covariance on the boundary?

lme4 (``isSingular(fit, tol = 1e-4)``) calls a fit singular when an entry of the relative
Cholesky factor θ that is bounded below by zero (a diagonal entry of the factor of each
term's covariance relative to σ²) is below ``tol``.  Here θ is read from the results:
the diagonal of the lower-triangular ``L`` with ``L L' = Ψ* = cov_re / σ̂²`` (a
pivot-free factor, so that a rank-deficient Ψ* gives a zero diagonal entry where a
Cholesky factor fails), and ``sqrt(τ*_l) = sqrt(vcomp_l / σ̂²)`` for each variance
component (lme4's ``(1 | group:component)``, a 1 × 1 term).  The flag is a function of
the estimates alone, so a fit made in process, on Dask, or loaded from a results
directory gives the same answer.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SINGULAR_TOL", "SINGULAR_NOTE", "is_singular", "relative_factor_diagonal"]

#: lme4's ``isSingular`` tolerance on θ (the relative Cholesky factor's diagonal)
SINGULAR_TOL = 1e-4

#: the line :meth:`~dmixed.MixedLMResults.summary` prints for a singular fit (lme4's
#: ``boundary (singular) fit: see help('isSingular')``)
SINGULAR_NOTE = "boundary (singular) fit: see MixedLMResults.is_singular"


def relative_factor_diagonal(psi: np.ndarray) -> np.ndarray:
    """The diagonal of the pivot-free lower Cholesky factor of ``psi`` (q × q, positive
    semi-definite): ``θ_jj = sqrt(max(d_j, 0))`` with ``d_j = ψ_jj − Σ_{k<j} L_jk²``;
    a pivot at or below ``1e-14 · max ψ_jj`` (rounding) gives a zero column, as lme4's
    factor of a rank-deficient Ψ has.  Loops over the q columns only."""
    psi = np.asarray(psi, dtype=np.float64)
    q = psi.shape[0]
    out = np.zeros(q)
    if q == 0:
        return out
    floor = 1e-14 * max(float(np.max(np.abs(np.diag(psi)))), 1e-300)
    lmat = np.zeros((q, q))
    for j in range(q):
        d = psi[j, j] - lmat[j, :j] @ lmat[j, :j]
        if not d > floor:  # NaN, rounding or a dependent column
            continue
        lmat[j, j] = out[j] = np.sqrt(d)
        lmat[j + 1 :, j] = (psi[j + 1 :, j] - lmat[j + 1 :, :j] @ lmat[j, :j]) / lmat[j, j]
    return out


def is_singular(
    cov_re_unscaled: np.ndarray, vcomp: np.ndarray, scale: float, tol: float = SINGULAR_TOL
) -> bool:
    """lme4's ``isSingular``: True when an entry of θ bounded below by zero is below
    ``tol``.

    Parameters
    ----------
    cov_re_unscaled : ndarray (q, q)
        ``Ψ* = cov_re / σ̂²``.
    vcomp : ndarray (L,)
        The variance components ``σ̂² τ*`` (on the data's scale).
    scale : float
        ``σ̂²``.
    tol : float
        lme4's tolerance (:data:`SINGULAR_TOL`).

    Returns
    -------
    bool
        True where a variance is 0 or Ψ* is rank-deficient within ``tol`` on θ.
    """
    theta = relative_factor_diagonal(cov_re_unscaled)
    vc = np.asarray(vcomp, dtype=np.float64)
    if vc.size:
        theta = np.concatenate([theta, np.sqrt(np.maximum(vc / float(scale), 0.0))])
    return bool(np.any(theta < tol))
