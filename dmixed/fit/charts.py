"""Newton steps and decrements in coordinates other than the polish's: the packed
coordinates of a fit with ``free=`` held entries, and the face of the positive
semi-definite cone that a singular Ψ* lies on.

The profiled Hessian is made in θ = [vech_lt(Ψ*), τ*] (the plain packing).  For a chart
``φ ↦ (Ψ*(φ), τ*(φ))`` the chain rule gives the gradient ``J'g_θ`` and the Hessian
``J'H_θJ + Σ_ab D_ab ∂²Ψ*_ab/∂φ∂φ' + Σ_l ∂ℓ/∂τ*_l ∂²τ*_l/∂φ∂φ'`` (``J = ∂θ/∂φ``, ``D``
with ``dℓ = Σ_ab D_ab dΨ*_ab``): :func:`chain_curvature`.  Two charts:

- :func:`sqrt_chart`, the square-root packing ``(L, s)`` with ``Ψ* = LL'``, ``τ* = s²``
  (the plain packing is θ itself: :func:`plain_chart`);
- :class:`Face`, the manifold of the positive semi-definite matrices of Ψ*'s rank ``r``
  around a singular Ψ*: ``Ψ*(B, C) = F (A + B) F'`` with ``F = R + N C``, ``R`` (q × r)
  and ``N`` (q × k) orthonormal bases of Ψ*'s range and null space, ``A = R'Ψ*R``.  Its
  ``r(r+1)/2 + kr`` coordinates are those of the rank-``r`` matrices near Ψ*, on which ℓ
  is smooth; a Newton step in them moves the null space too (the square-root packing
  does not: there ℓ's gradient vanishes with the factor's zero column, whatever ℓ does
  along the face, so that a gradient test passes far below the face's maximum).

:func:`scaled_newton` takes the (modified) Newton step with the Hessian scaled to unit
diagonal: on a face of a Ψ* of 1e8, the curvatures of ``B`` and ``C`` are some 1e27
apart, beyond float64's resolution of one eigenvalue decomposition.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..stats import Layout
from .newton_rules import modified_newton_step

__all__ = [
    "Face",
    "chain_curvature",
    "cone_rise",
    "cone_step",
    "plain_chart",
    "scaled_newton",
    "sqrt_chart",
]


@dataclass(frozen=True)
class Chart:
    """First and second derivatives of ``(Ψ*, τ*)`` in a chart's ``p`` coordinates:
    ``psi1`` (p, q, q), ``tau1`` (p, d), ``psi2`` (p, p, q, q), ``tau2`` (p, p, d)."""

    psi1: np.ndarray
    tau1: np.ndarray
    psi2: np.ndarray
    tau2: np.ndarray


def chain_curvature(
    layout: Layout,
    chart: Chart,
    d_psi: np.ndarray,
    d_tau: np.ndarray,
    hess_theta: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The gradient (p,) and Hessian (p, p) of ℓ in ``chart``'s coordinates from ℓ's
    ``(∂ℓ/∂Ψ*, ∂ℓ/∂τ*)`` (``d_psi`` symmetric (q, q): ``dℓ = Σ_ab D_ab dΨ*_ab``;
    ``d_tau`` (d,)) and its Hessian in θ (``hess_theta``, (m, m))."""
    rows, cols = layout.tril()
    jac = np.concatenate([chart.psi1[:, rows, cols], chart.tau1], axis=1).T  # (m, p)
    mult = np.where(rows == cols, 1.0, 2.0)
    g_theta = np.concatenate([mult * d_psi[rows, cols], d_tau])
    second = np.einsum("abij,ij->ab", chart.psi2, d_psi) + chart.tau2 @ d_tau
    hess = jac.T @ hess_theta @ jac + second
    return jac.T @ g_theta, 0.5 * (hess + hess.T)


def scaled_newton(hess: np.ndarray, grad: np.ndarray) -> tuple[np.ndarray, float] | None:
    """The modified Newton step (:func:`~dmixed.fit.newton_rules.modified_newton_step`)
    of ℓ with Hessian ``hess`` and gradient ``grad``, made with the Hessian scaled to unit
    diagonal (the same step where ℓ is concave, whatever the coordinates' units), and its
    promise ``½ g'δ`` (the Newton decrement); None where no step can be made.  No
    coordinates (the face of Ψ* = 0 without variance components): no step, no rise."""
    if grad.size == 0:
        return np.zeros(0), 0.0
    diag = np.abs(np.diag(hess))
    if not (np.all(np.isfinite(diag)) and np.all(diag > 0.0)):
        return None
    scale = 1.0 / np.sqrt(diag)
    step = modified_newton_step(scale[:, None] * hess * scale[None, :], scale * grad)
    if step is None:
        return None
    delta = scale * step
    return delta, 0.5 * float(grad @ delta)


def plain_chart(layout: Layout) -> Chart:
    """θ itself: the plain packing (first derivatives the unit vectors, no second)."""
    q, d, m = layout.k_re, layout.k_vc, layout.n_params
    rows, cols = layout.tril()
    psi1 = np.zeros((m, q, q))
    idx = np.arange(layout.k_re2)
    psi1[idx, rows, cols] = 1.0
    psi1[idx, cols, rows] = 1.0
    tau1 = np.zeros((m, d))
    tau1[layout.k_re2 + np.arange(d), np.arange(d)] = 1.0
    return Chart(psi1, tau1, np.zeros((m, m, q, q)), np.zeros((m, m, d)))


def sqrt_chart(layout: Layout, packed: np.ndarray) -> Chart:
    """The square-root packing at ``packed``: ``Ψ* = LL'`` (``L`` lower triangular, its
    entries in the layout's order), ``τ* = s²``."""
    q, d, m, k2 = layout.k_re, layout.k_vc, layout.n_params, layout.k_re2
    rows, cols = layout.tril()
    lmat = np.zeros((q, q))
    lmat[rows, cols] = packed[:k2]
    units = np.zeros((k2, q, q))
    units[np.arange(k2), rows, cols] = 1.0
    psi1 = np.zeros((m, q, q))
    part = units @ lmat.T
    psi1[:k2] = part + part.transpose(0, 2, 1)
    psi2 = np.zeros((m, m, q, q))
    cross = np.einsum("eij,fkj->efik", units, units)  # E_e E_f'
    psi2[:k2, :k2] = cross + cross.transpose(1, 0, 2, 3)
    tau1 = np.zeros((m, d))
    tau2 = np.zeros((m, m, d))
    j = k2 + np.arange(d)
    tau1[j, np.arange(d)] = 2.0 * np.asarray(packed[k2:], dtype=np.float64)
    tau2[j, j, np.arange(d)] = 2.0
    return Chart(psi1, tau1, psi2, tau2)


@dataclass(frozen=True)
class Face:
    """The rank-``r`` positive semi-definite matrices around a singular Ψ* (see the
    module's notes), with τ* as it is: coordinates ``[vech_lt(B), C, τ*]``.

    ``base`` is Ψ* with its ``k`` smallest eigenvalues set to zero (the point of the
    face that ``φ = 0`` stands for), ``null`` (q, k) the basis of its null space."""

    range_basis: np.ndarray
    null: np.ndarray
    core: np.ndarray
    tau: np.ndarray

    @classmethod
    def of(cls, psi: np.ndarray, tau: np.ndarray, k: int) -> Face:
        """The face of Ψ* ``psi`` (q, q) with its ``k`` smallest eigenvalues set to zero."""
        values, vectors = np.linalg.eigh(psi)
        core = np.diag(values[k:])
        return cls(vectors[:, k:], vectors[:, :k], core, np.array(tau, dtype=np.float64))

    @property
    def base(self) -> np.ndarray:
        """Ψ* at ``φ = 0``: ``R A R'``."""
        return self.range_basis @ self.core @ self.range_basis.T

    def point(self, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(Ψ*, τ*)`` at ``φ``."""
        r, k = self.core.shape[0], self.null.shape[1]
        nb = r * (r + 1) // 2
        rows, cols = np.tril_indices(r)
        b = np.zeros((r, r))
        b[rows, cols] = phi[:nb]
        b[cols, rows] = phi[:nb]
        factor = self.range_basis + self.null @ phi[nb : nb + k * r].reshape(k, r)
        psi = factor @ (self.core + b) @ factor.T
        return 0.5 * (psi + psi.T), self.tau + phi[nb + k * r :]

    def chart(self) -> Chart:
        """The derivatives of :meth:`point` at ``φ = 0``."""
        rr, nn, core = self.range_basis, self.null, self.core
        q, r = rr.shape
        k, d = nn.shape[1], self.tau.size
        rows, cols = np.tril_indices(r)
        sym = np.zeros((rows.size, r, r))
        sym[np.arange(rows.size), rows, cols] = 1.0
        sym[np.arange(rows.size), cols, rows] = 1.0
        moves = np.zeros((k * r, q, r))  # ∂F/∂C_ij: N's column i in F's column j
        for i in range(k):
            for j in range(r):
                moves[i * r + j, :, j] = nn[:, i]
        nb, nc = rows.size, k * r
        p = nb + nc + d
        psi1 = np.zeros((p, q, q))
        psi1[:nb] = rr @ sym @ rr.T
        turn = moves @ core @ rr.T
        psi1[nb : nb + nc] = turn + turn.transpose(0, 2, 1)
        psi2 = np.zeros((p, p, q, q))
        both = np.einsum("aij,jl,bkl->abik", moves, core, moves)  # dF_a A dF_b'
        psi2[nb : nb + nc, nb : nb + nc] = both + both.transpose(0, 1, 3, 2)
        mixed = np.einsum("aij,ejl,kl->aeik", moves, sym, rr)  # dF_a E_e R'
        mixed = mixed + mixed.transpose(0, 1, 3, 2)
        psi2[nb : nb + nc, :nb] = mixed
        psi2[:nb, nb : nb + nc] = mixed.transpose(1, 0, 2, 3)
        tau1 = np.zeros((p, d))
        tau1[nb + nc + np.arange(d), np.arange(d)] = 1.0
        return Chart(psi1, tau1, psi2, np.zeros((p, p, d)))


def cone_rise(layout: Layout, null: np.ndarray, d_psi: np.ndarray, hess_theta: np.ndarray) -> float:
    """The rise of ℓ a Newton step into the cone promises from a point whose Ψ* has the
    null space ``null`` (q, k): along ``Ψ* + t vv'`` (``t ≥ 0``) for each eigenvector
    ``v`` of ``N'DN`` whose eigenvalue ``μ`` is positive, ``μ² / (2|c|)`` with ``c`` ℓ's
    curvature in ``t`` (∞ where it is not negative); 0 where ℓ falls into the cone in
    every such direction (the first-order condition of a maximum on the cone)."""
    return cone_step(layout, null, d_psi, hess_theta)[0]


def cone_step(
    layout: Layout, null: np.ndarray, d_psi: np.ndarray, hess_theta: np.ndarray
) -> tuple[float, np.ndarray | None]:
    """:func:`cone_rise` and the step into the cone of the direction that promises it:
    ``t vv'`` (q, q) with ``t = μ / |c|`` (the Newton step along the ray), or with ``t``
    1 where ℓ's curvature there is not negative (Ψ* is relative to σ², so 1 is the
    scale of a variance as large as the noise's); None where ℓ rises into the cone in
    no direction."""
    if null.shape[1] == 0:
        return 0.0, None
    values, vectors = np.linalg.eigh(null.T @ d_psi @ null)
    rows, cols = layout.tril()
    out, step = 0.0, None
    for mu, w in zip(values.tolist(), vectors.T, strict=True):
        if mu <= 0.0:
            continue
        v = null @ w
        direction = np.zeros(layout.n_params)
        direction[: layout.k_re2] = np.outer(v, v)[rows, cols]
        curvature = float(direction @ hess_theta @ direction)
        rise = mu * mu / (2.0 * -curvature) if curvature < 0.0 else np.inf
        if step is None or rise > out:
            out = rise
            step = (mu / -curvature if curvature < 0.0 else 1.0) * np.outer(v, v)
    return out, step
