"""The ML log-likelihood in lme4's profile parametrization, with its gradient and Hessian.

lme4's ``profile`` and ``confint(method = "profile")`` work in the standard deviations
and correlations of the random effects, σ and β (``devfun2``)::

    z = [sd/cor of Ψ (lme4's order), sd of each variance component, σ, β]

with ``Ψ = D R D`` (``D`` the SDs, ``R`` the correlations), ``τ_l = v_l²`` and the
model's own (statsmodels') parameters ``Ψ* = Ψ/σ²``, ``τ* = τ/σ²``, ``s = σ²``.  Each
of ``vech_lt(Ψ*)``, ``τ*`` and ``s`` is a monomial in ``c = [sd/cor, v, σ]``
(``Ψ*_ab = ρ_ab d_a d_b σ⁻²``, ``Ψ*_aa = d_a² σ⁻²``, ``τ*_l = v_l² σ⁻²``, ``s = σ²``), so
the chain rule needs only the monomials' first and second derivatives::

    ∇_c ℓ = J'∇_η ℓ,   ∇²_c ℓ = J'(∇²_η ℓ)J + Σ_i (∂ℓ/∂η_i) ∇²_c η_i.

ℓ itself (ML, nothing profiled; lme4 profiles the ML deviance also for REML fits) is
evaluated in the statistics' coordinates, where (DESIGN.md §3–5; ``Q(β) = w'Tw``,
``w = [−β̃; 1]``, ``T = [X y]'V*⁻¹[X y]``)::

    ℓ = −½ Σ log|K_i| − (n/2) log s − Q/(2s) − (n/2) log 2π + ½ Σ log w_j
    ℓ_β = (b − Aβ)/s,  ℓ_θj = −½ tr(S E_j) + u'E_j u/(2s),  ℓ_s = −n/(2s) + Q/(2s²)
    ℓ_ββ = −A/s,  ℓ_βθ = −G'E u/s,  ℓ_θθ = ½ tr(S E_j S E_k) − u'E_j S E_k u/s,
    ℓ_βs = −(b − Aβ)/s²,  ℓ_θs = −u'E u/(2s²),  ℓ_ss = n/(2s²) − Q/s³

(the sums of :class:`~dmixed.kernels.HessianSums`), then mapped to the model's
coordinates by the constant Jacobian of :class:`~dmixed.fit.likelihood.Likelihood`
(``s̃ = s/s_y²``).  One engine step and one Hessian pass per point; no data pass.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..design import ModelNames
from ..fit.likelihood import Likelihood
from ..fit.newton_rules import modified_newton_step, secant_update
from ..fit.objective import loglike_at_scale, profile
from ..stats import tril_indices
from .varcorr import term_order

__all__ = ["SdCorLikelihood", "SdCorPoint", "sdcor_names", "sdcor_values"]


def sdcor_names(names: ModelNames, levels=None) -> tuple[list[str], list[str]]:
    """lme4's names (``.sig01``, …, ``.sigma``, the fixed effects) and each one's kind
    (``"sd"``, ``"cor"``, ``"vc"``, ``"sigma"``, ``"beta"``), in this module's order of
    the parameters: the SDs and correlations of ``Ψ`` by columns of its lower triangle
    (``(0,0), (1,0), …, (q−1,0), (1,1), …``), then the variance components' SDs, σ, β.

    The ``.sigNN`` numbers follow lme4's order of the random-effects terms (the
    groups' term, then each variance component as lme4's ``(1 | group:level)``), by
    decreasing number of levels (:func:`~dmixed.results.varcorr.term_order`;
    ``levels`` as it takes them, None: the terms in this module's order).  Sorting the
    ``.sig`` names gives lme4's rows.
    """
    q = len(names.exog_re_names)
    k_vc = len(names.vc_names)
    kinds = ["sd" if a == b else "cor" for b in range(q) for a in range(b, q)]
    kinds += ["vc"] * k_vc + ["sigma"]
    term = [0] * (len(kinds) - 1 - k_vc) + list(range(1, k_vc + 1))  # entry -> its term
    order = term_order(levels, q, k_vc)
    rank = {t: i for i, t in enumerate(order)}
    sorted_entries = sorted(range(len(term)), key=lambda e: (rank[term[e]], e))
    number = {e: i + 1 for i, e in enumerate(sorted_entries)}
    labels = [f".sig{number[e]:02d}" for e in range(len(term))] + [".sigma"]
    return labels + list(names.exog_names), kinds + ["beta"] * len(names.exog_names)


def sdcor_values(fe, cov_tril, vcomp, scale, q: int) -> np.ndarray:
    """``z`` (this module's order, :func:`sdcor_names`) of many estimates at once, given
    on the reported scale as the bootstrap's replicate table holds them.

    Parameters
    ----------
    fe : array (n, p)
        Fixed effects.
    cov_tril : array (n, q(q+1)/2)
        ``cov_re`` (``Ψ = σ²Ψ*``) by ``np.tril_indices(q)``: (0,0), (1,0), (1,1), ….
    vcomp : array (n, k_vc)
        The variance components ``τ = σ²τ*``.
    scale : array (n,)
        σ².
    q : int
        The random effects' dimension.

    Returns
    -------
    ndarray (n, q(q+1)/2 + k_vc + 1 + p)
        The SDs and correlations of ``Ψ`` by columns of its lower triangle, the
        components' SDs, σ and β; a correlation whose SDs are not both positive is 0
        (as :meth:`SdCorLikelihood.from_model`), NaN rows stay NaN.
    """
    fe = np.asarray(fe, dtype=np.float64)
    tril = np.asarray(cov_tril, dtype=np.float64)
    n = fe.shape[0]
    cov = np.zeros((n, q, q))
    rows, cols = tril_indices(q)
    cov[:, rows, cols] = tril
    sd = np.sqrt(np.clip(np.diagonal(cov, axis1=1, axis2=2), 0.0, None))
    sd = np.where(np.isnan(np.diagonal(cov, axis1=1, axis2=2)), np.nan, sd)
    entries = []
    for b in range(q):
        for a in range(b, q):
            if a == b:
                entries.append(sd[:, a])
                continue
            denom = sd[:, a] * sd[:, b]
            with np.errstate(invalid="ignore", divide="ignore"):
                entries.append(np.where(denom > 0, cov[:, a, b] / denom, 0.0))
            entries[-1] = np.where(np.isnan(denom), np.nan, entries[-1])
    vc = np.asarray(vcomp, dtype=np.float64)
    sigma = np.sqrt(np.asarray(scale, dtype=np.float64))
    with np.errstate(invalid="ignore"):
        vc_sd = np.where(np.isnan(vc), np.nan, np.sqrt(np.clip(vc, 0.0, None)))
    return np.column_stack([*entries, vc_sd, sigma, fe])


@dataclass
class SdCorPoint:
    """ℓ at one point ``z`` and its derivatives in ``z`` (β not profiled)."""

    z: np.ndarray
    llf: float
    grad: np.ndarray | None = None
    hess: np.ndarray | None = None


class SdCorLikelihood:
    """ℓ_ML(z) of a model, its gradient and Hessian, in lme4's parametrization.

    Parameters
    ----------
    likelihood : Likelihood
        The model's likelihood over its statistics (its ``reml`` is ignored: ML).
    names : ModelNames
    levels : sequence of int, optional
        Levels of each random-effects term, for lme4's ``.sig`` numbering
        (:func:`sdcor_names`).
    """

    def __init__(self, likelihood: Likelihood, names: ModelNames, levels=None) -> None:
        self.lik = replace(likelihood, reml=False)
        self.layout = lay = likelihood.layout
        self.names, self.kinds = sdcor_names(names, levels)
        self.kinds = np.array(self.kinds)
        q, p = lay.k_re, likelihood.glob.k_fe
        self.q, self.p, self.k_vc = q, p, lay.k_vc
        self.n_cov = lay.k_re2 + lay.k_vc  # sd/cor and vc entries of z
        self.sigma_ix = self.n_cov
        self.n_c = self.n_cov + 1
        # z index of Ψ's entry (a, b), a ≥ b, in lme4's column order
        self.pos = {}
        for b in range(q):
            for a in range(b, q):
                self.pos[a, b] = len(self.pos)
        self.monomials = self._monomials()
        self.fe_map = likelihood.jacobian[:p, :p]  # β̃ = M β − c
        sigma_scale = likelihood.columns.sigma_scale
        k = np.zeros((p + lay.n_params + 1, p + lay.n_params + 1))
        k[:-1, :-1] = likelihood.jacobian
        k[-1, -1] = 1.0 / sigma_scale**2
        self.jac = k  # ∂[β̃, θ̃, s̃]/∂[β, θ, s]
        self.basis = lay.basis()
        self.n_evals = 0  # evaluations so far (each one engine step, most a Hessian pass)
        sds = np.isin(self.kinds, ("sd", "vc"))
        cors = self.kinds == "cor"
        self.lower = np.where(sds, 0.0, np.where(cors, -1.0, -np.inf))
        self.upper = np.where(cors, 1.0, np.inf)

    def _monomials(self) -> list[dict[int, int]]:
        """Exponents over ``c`` of each of ``[vech_lt(Ψ*), τ*, s]``."""
        out = []
        rows, cols = self.layout.tril()
        sig = self.sigma_ix
        for a, b in zip(rows, cols, strict=True):
            if a == b:
                out.append({self.pos[a, a]: 2, sig: -2})
            else:
                out.append({self.pos[a, b]: 1, self.pos[a, a]: 1, self.pos[b, b]: 1, sig: -2})
        for l_ in range(self.k_vc):
            out.append({self.layout.k_re2 + l_: 2, sig: -2})
        out.append({sig: 2})
        return out

    # -- between z and the model's parameters --------------------------------------

    def from_model(self, fe, psi_star, tau_star, scale: float) -> np.ndarray:
        """``z`` of a point given as statsmodels' ``(β, Ψ*, τ*, σ²)``."""
        sigma = np.sqrt(scale)
        psi = np.asarray(psi_star, dtype=np.float64) * scale
        sd = np.sqrt(np.clip(np.diag(psi), 0.0, None))
        z = np.zeros(self.n_c + self.p)
        for (a, b), i in self.pos.items():
            if a == b:
                z[i] = sd[a]
            else:
                denom = sd[a] * sd[b]
                z[i] = psi[a, b] / denom if denom > 0 else 0.0
        z[self.layout.k_re2 : self.n_cov] = np.sqrt(np.clip(np.asarray(tau_star) * scale, 0, None))
        z[self.sigma_ix] = sigma
        z[self.n_c :] = np.asarray(fe, dtype=np.float64)
        return z

    def eta(self, z: np.ndarray) -> np.ndarray:
        """``[vech_lt(Ψ*), τ*, s]`` at ``z``."""
        c = z[: self.n_c]
        return np.array([np.prod([c[k] ** e for k, e in mono.items()]) for mono in self.monomials])

    def chain(self, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``J = ∂η/∂c`` (n_η × n_c) and ``∇²_c η_i`` (n_η × n_c × n_c)."""
        n_eta = len(self.monomials)
        jac = np.zeros((n_eta, self.n_c))
        hess = np.zeros((n_eta, self.n_c, self.n_c))
        vals = c.tolist()
        for i, mono in enumerate(self.monomials):
            for k, (d1, d2) in _monomial_derivatives(vals, mono).items():
                jac[i, k] = d1
                for m, v in d2.items():
                    hess[i, k, m] = v
        return jac, hess

    # -- evaluation ---------------------------------------------------------------------

    def feasible(self, z: np.ndarray) -> bool:
        """SDs ≥ 0, σ > 0, correlations in [−1, 1] (positive semi-definiteness of Ψ is
        checked by :meth:`evaluate`)."""
        sd = self.kinds[: self.n_cov] != "cor"
        cor = ~sd
        c = z[: self.n_cov]
        return bool(np.all(c[sd] >= 0) and np.all(np.abs(c[cor]) <= 1.0) and z[self.sigma_ix] > 0)

    def evaluate(self, z: np.ndarray, pinned_fe: int | None = None, order: int = 2) -> SdCorPoint:
        """ℓ, for ``order`` ≥ 1 its gradient (one engine step) and for ``order`` 2 its
        Hessian in ``z`` (one more pass), at ``z`` whose β is replaced by its GLS
        estimate, conditional on ``β_pinned_fe`` when given.

        ℓ = −inf outside the parameter space (see :meth:`feasible`; an indefinite Ψ).
        """
        z = np.array(z, dtype=np.float64)
        self.n_evals += 1
        if not self.feasible(z):
            return SdCorPoint(z, -np.inf)
        lay = self.layout
        eta = self.eta(z)
        psi, tau = lay.unpack(eta[: lay.n_params], use_sqrt=False)
        try:
            lam_std = self.lik.to_statistics.to_statistics(self._lam(psi, tau))
            step = self.lik.engine.step(lam_std, lay.k_re)
            prof = profile(step, self.lik.glob, False)
        except np.linalg.LinAlgError:
            return SdCorPoint(z, -np.inf)
        z[self.n_c :] = beta = self._gls(z[self.n_c :], prof, pinned_fe)
        beta_std = self.lik.beta_to_std(beta)
        dev = beta_std - prof.beta
        qf = float(prof.q + dev @ prof.a @ dev)
        prof = replace(prof, beta=beta_std, q=qf)
        scale_std = eta[-1] * self.jac[-1, -1]
        glob = self.lik.glob
        llf = loglike_at_scale(step, prof, glob, False, scale_std)
        llf = self.lik.to_statistics.llf(llf, glob.n, False)
        if order < 1 or not np.isfinite(llf):
            return SdCorPoint(z, llf)
        u_e_u = _u_e_u(step, prof.w, self.basis, lay.k_re)
        g_std = _gradient(step, prof, glob.n, scale_std, self.basis, u_e_u)
        h_eta = None
        if order >= 2:
            hs = self.lik.engine.hessian(lam_std, self.basis, prof.w, a_inv=prof.a_inv, reml=False)
            h_eta = self.jac.T @ _hessian(hs, prof, glob.n, scale_std, u_e_u) @ self.jac
        grad, hess = self._to_z(z, self.jac.T @ g_std, h_eta)
        return SdCorPoint(z, llf, grad, hess)

    def _lam(self, psi: np.ndarray, tau: np.ndarray) -> np.ndarray:
        """Λ with ``Ψ* = L L'`` (Cholesky; on the boundary the layout's semi-definite
        factor) and ``√τ*`` on the components' slots."""
        lay = self.layout
        if np.any(tau < 0):
            raise np.linalg.LinAlgError("negative variance component")
        try:
            chol = np.linalg.cholesky(psi) if lay.k_re else psi
        except np.linalg.LinAlgError:
            return lay.lam(lay.pack(psi, tau, use_sqrt=False), use_sqrt=False)
        rows, cols = lay.tril()
        return lay.lam(np.concatenate([chol[rows, cols], np.sqrt(tau)]), use_sqrt=True)

    def _gls(self, beta: np.ndarray, prof, pinned: int | None) -> np.ndarray:
        """β̂ in the model's coordinates, or β with ``β_pinned`` kept and the others
        their GLS estimate given it: ``β_F = β̂_F − A_FF⁻¹ A_Fj (β_j − β̂_j)``."""
        hat = self.lik.columns.beta_from_std(prof.beta)
        if pinned is None:
            return hat
        a = self.fe_map.T @ prof.a @ self.fe_map  # A in the model's coordinates
        free = np.arange(self.p) != pinned
        out = hat.copy()
        out[pinned] = beta[pinned]
        shift = beta[pinned] - hat[pinned]
        out[free] = hat[free] - np.linalg.solve(a[np.ix_(free, free)], a[free, pinned]) * shift
        return out

    def _to_z(self, z, g_eta, h_eta) -> tuple[np.ndarray, np.ndarray | None]:
        """Gradient and Hessian (None without ``h_eta``) in ``z = [c, β]`` from those in
        ``[β, θ, s]``."""
        p = self.p
        jac, mono_hess = self.chain(z[: self.n_c])
        g_th = g_eta[p:]
        grad = np.concatenate([jac.T @ g_th, g_eta[:p]])
        if h_eta is None:
            return grad, None
        h_cc = jac.T @ h_eta[p:, p:] @ jac + np.einsum("i,ikm->km", g_th, mono_hess)
        h_cb = jac.T @ h_eta[p:, :p]
        hess = np.block([[h_cc, h_cb], [h_cb.T, h_eta[:p, :p]]])
        return grad, 0.5 * (hess + hess.T)

    # -- maximization with some coordinates held ----------------------------------------

    def maximize(
        self,
        z0: np.ndarray,
        pinned: int | None = None,
        hold: np.ndarray | None = None,
        hess: np.ndarray | None = None,
        decrement: float = 1e-9,
        max_iter: int = 50,
    ) -> tuple[SdCorPoint, bool]:
        """max ℓ over the coordinates of ``z`` not ``pinned`` nor in ``hold``.

        Newton's method with step halving; from ``hess`` (a Hessian of ℓ in ``z`` near
        ``z0``, e.g. at the neighbouring profile point) it is quasi-Newton: each
        iteration one engine step for the gradient and a BFGS update
        (:func:`~dmixed.fit.newton_rules.secant_update`), the exact Hessian only where the
        update fails.  β is always at its (conditional) GLS estimate; the step is
        solved over the free β too (so that it is the step of the β-profiled ℓ, the
        Schur complement).  Returns the last point moved by the final step ``δ`` not
        taken, its ``llf`` raised by half the decrement ``g'(−H)⁻¹g`` and its gradient
        by ``Hδ``, and whether the decrement fell below ``decrement``.
        """
        free = np.ones(self.n_c + self.p, dtype=bool)
        if hold is not None:
            free &= ~hold
        pinned_fe = None
        if pinned is not None:
            free[pinned] = False
            pinned_fe = pinned - self.n_c if pinned >= self.n_c else None
        pt = self.evaluate(z0, pinned_fe, order=1 if hess is not None else 2)
        if not np.isfinite(pt.llf):
            return pt, False
        if hess is not None:
            pt.hess = hess
        active = np.zeros_like(free)  # coordinates stopped on a bound
        for _ in range(max_iter):
            movable = free & ~active
            g = pt.grad[movable]
            delta = _newton_step(pt.hess[np.ix_(movable, movable)], g)
            if delta is None:
                return pt, False
            dec = float(g @ delta)
            if dec < decrement:
                released = self._pulled_inward(pt, active)
                if released.any():
                    active &= ~released
                    continue
                off = self._off_zero(pt, free, pinned_fe)
                if off is not None:  # an SD at 0 was a saddle, not a maximum
                    pt, active = off, active & (off.z > self.lower)
                    continue
                z = pt.z.copy()
                z[movable] += delta
                z = np.clip(z, self.lower, self.upper)
                grad = pt.grad + pt.hess[:, movable] @ delta
                return SdCorPoint(z, pt.llf + 0.5 * max(dec, 0.0), grad, pt.hess), True
            step = np.zeros(pt.z.size)
            step[movable] = delta
            trial, hit = self._step(pt, step, pinned_fe)
            if trial is None:
                return pt, False
            active |= hit
            if trial.hess is None:
                trial.hess = secant_update(pt.hess, trial.z - pt.z, trial.grad - pt.grad)
                if trial.hess is None:
                    trial = self.evaluate(trial.z, pinned_fe)
            pt = trial
        return pt, False

    def correlations_of(self, k: int) -> np.ndarray:
        """Mask of the correlations involving the SD at ``z[k]`` (none for a component)."""
        out = np.zeros(self.n_c + self.p, dtype=bool)
        for (a, b), i in self.pos.items():
            if a != b and k in (self.pos[a, a], self.pos[b, b]):
                out[i] = True
        return out

    def _step(self, pt: SdCorPoint, step: np.ndarray, pinned_fe):
        """The Newton ``step``, cut at the first bound it crosses (an SD at 0, a
        correlation at ±1: that coordinate set on it and returned in the mask ``hit``,
        with the correlations of an SD stopped at 0), halved until ℓ does not fall."""
        lower, upper = self.lower, self.upper
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where(
                step < 0, (lower - pt.z) / step, np.where(step > 0, (upper - pt.z) / step, np.inf)
            )
        first = float(np.min(frac, initial=np.inf))
        hit = np.zeros(step.size, dtype=bool)
        if first < 1.0:
            hit = frac <= first * (1 + 1e-12)
            for k in np.flatnonzero(hit & (self.kinds != "cor")):
                hit |= self.correlations_of(k)
            z = pt.z + first * step
            z[hit & (step < 0)] = lower[hit & (step < 0)]
            z[hit & (step > 0)] = upper[hit & (step > 0)]
            trial = self.evaluate(z, pinned_fe, order=1)
            if trial.llf >= pt.llf - 1e-12 * abs(pt.llf):
                return trial, hit
            step = first * step
        return self._line_search(pt, step, pinned_fe), np.zeros(step.size, dtype=bool)

    def _off_zero(self, pt: SdCorPoint, free: np.ndarray, pinned_fe) -> SdCorPoint | None:
        """The point with the free SDs at 0 moved to 1 % of σ, if ℓ is higher there.

        ℓ is even in a lone SD (Ψ* holds its square), so its gradient is 0 at 0 and a
        Newton step cannot leave 0 even where 0 is a minimum along it."""
        zero = free & np.isin(self.kinds, ("sd", "vc")) & (pt.z == 0.0)
        if not zero.any():
            return None
        z = pt.z.copy()
        z[zero] = 0.01 * z[self.sigma_ix]
        trial = self.evaluate(z, pinned_fe)
        return trial if trial.llf > pt.llf else None

    def _pulled_inward(self, pt: SdCorPoint, active: np.ndarray) -> np.ndarray:
        """The coordinates on a bound whose gradient points into the space (released,
        with the correlations of a released SD)."""
        tol = 1e-8 * max(1.0, abs(pt.llf))
        at_lower = active & (pt.z <= self.lower) & (pt.grad > tol)
        at_upper = active & (pt.z >= self.upper) & (pt.grad < -tol)
        out = at_lower | at_upper
        for k in np.flatnonzero(out & (self.kinds != "cor")):
            out |= self.correlations_of(k) & active
        return out

    def maximize_bounded(
        self, z0: np.ndarray, pinned: int | None = None, hold: np.ndarray | None = None
    ) -> tuple[SdCorPoint, bool]:
        """max ℓ as :meth:`maximize`, by L-BFGS-B within the bounds (SDs ≥ 0,
        correlations in [−1, 1]): for profiles whose maximum is on a bound, where
        Newton's steps stall.  The point comes with its gradient and exact Hessian."""
        from scipy import optimize  # noqa: PLC0415  (dmixed imports without scipy)

        free = np.zeros(self.n_c + self.p, dtype=bool)
        free[: self.n_c] = True
        if hold is not None:
            free &= ~hold
        if pinned is not None:
            free[pinned] = False
        pinned_fe = pinned - self.n_c if pinned is not None and pinned >= self.n_c else None
        kinds = self.kinds[free[: self.n_c + self.p]]
        bounds = [(-1.0, 1.0) if kind == "cor" else (0.0, None) for kind in kinds]
        z = np.array(z0, dtype=np.float64)

        def negative(x):
            z[free] = x
            pt = self.evaluate(z, pinned_fe, order=1)
            if not np.isfinite(pt.llf):
                return np.inf, np.zeros(x.size)
            return -pt.llf, -pt.grad[free]

        res = optimize.minimize(
            negative,
            z[free],
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": 1000, "ftol": 1e-15, "gtol": 1e-10},
        )
        z[free] = res.x
        pt = self.evaluate(z, pinned_fe)
        return pt, bool(np.isfinite(pt.llf))

    def maximize_factored(
        self, z0: np.ndarray, pinned: int | None = None, hold: np.ndarray | None = None
    ) -> tuple[SdCorPoint, bool]:
        """max ℓ as :meth:`maximize`, by L-BFGS-B over the SDs (≥ 0), σ and the rows of a
        Cholesky factor of the correlation matrix of Ψ (each row normalized): every
        point is a positive semi-definite Ψ, so a maximum on the boundary of that cone
        (a singular Ψ, correlations that together are at their limit while each is
        inside (−1, 1)) is an interior point here, where Newton's steps in ``z`` and
        the box bounds of :meth:`maximize_bounded` stall.  A pinned correlation
        ``ρ_ab = x`` is kept exactly (rows ``a`` and ``b`` first, as ``e₁`` and
        ``(x, √(1 − x²))``); the correlations in ``hold`` move (only the SDs, σ and
        the components' SDs in it are kept).  The point comes with its gradient and
        exact Hessian in ``z``, and whether the optimizer ended on a maximum.
        """
        from scipy import optimize  # noqa: PLC0415  (dmixed imports without scipy)

        param = _FactoredCorrelations(self, np.array(z0, dtype=np.float64), pinned, hold)
        pinned_fe = pinned - self.n_c if pinned is not None and pinned >= self.n_c else None
        lowest = [np.inf]  # the lowest −ℓ evaluated, and where (the optimizer's own
        where: list[np.ndarray] = []  # end can be a rejected line-search point)

        def negative(x):
            z = param.to_z(x)
            pt = self.evaluate(z, pinned_fe, order=1)
            if not np.isfinite(pt.llf):
                return np.inf, np.zeros(x.size)
            if -pt.llf < lowest[0]:
                lowest[0] = -pt.llf
                where[:] = [x.copy()]
            return -pt.llf, -param.gradient(x, pt.grad)

        res = optimize.minimize(
            negative,
            param.x0,
            jac=True,
            method="L-BFGS-B",
            bounds=param.bounds,
            options={"maxiter": 1000, "ftol": 1e-12, "gtol": 1e-9},
        )
        x = res.x if not where or res.fun <= lowest[0] else where[0]
        pt = self.evaluate(param.to_z(x), pinned_fe)
        if not np.isfinite(pt.llf):
            return pt, False
        # a line search ending short of ftol at the optimum is a maximum too: the
        # projected gradient in the factor's coordinates decides
        g = param.gradient(x, pt.grad)
        lo = np.array([b[0] if b[0] is not None else -np.inf for b in param.bounds])
        g = np.where((x <= lo) & (g < 0), 0.0, g)
        return pt, bool(res.success or np.max(np.abs(g), initial=0.0) < 1e-4)

    def _line_search(self, pt: SdCorPoint, step: np.ndarray, pinned_fe) -> SdCorPoint | None:
        """The step, halved until ℓ does not fall (the gradient where accepted)."""
        t = 1.0
        floor = pt.llf - 1e-12 * abs(pt.llf)
        for i in range(40):
            trial = self.evaluate(pt.z + t * step, pinned_fe, order=1 if i == 0 else 0)
            if trial.llf >= floor:
                return trial if i == 0 else self.evaluate(trial.z, pinned_fe, order=1)
            t *= 0.5
        return None


def _newton_step(h: np.ndarray, g: np.ndarray) -> np.ndarray | None:
    """``−H⁻¹g`` where ``H`` is negative definite, else the modified step."""
    if g.size == 0:
        return g
    try:
        chol = np.linalg.cholesky(-h)
    except np.linalg.LinAlgError:
        return modified_newton_step(h, g)
    return np.linalg.solve(chol.T, np.linalg.solve(chol, g))


def _monomial_derivatives(c: list[float], mono: dict[int, int]) -> dict:
    """``{k: (∂η/∂c_k, {m: ∂²η/∂c_k∂c_m})}`` of ``η = Π_k c_k^{e_k}``, exact at
    ``c_k = 0`` (no division)."""
    # powers[k][d] = e(e−1)…(e−d+1) c_k^(e−d): the d-th derivative of c_k^e
    powers = {}
    for k, e in mono.items():
        x = c[k]
        powers[k] = (x**e, e * x ** (e - 1), e * (e - 1) * x ** (e - 2) if e != 1 else 0.0)
    keys = list(mono)
    out = {}
    for k in keys:
        rest = 1.0
        for m in keys:
            if m != k:
                rest *= powers[m][0]
        second = {k: powers[k][2] * rest}
        for m in keys:
            if m != k:
                other = 1.0
                for j in keys:
                    if j not in (k, m):
                        other *= powers[j][0]
                second[m] = powers[k][1] * powers[m][1] * other
        out[k] = (powers[k][1] * rest, second)
    return out


def _u_e_u(step, w: np.ndarray, basis: np.ndarray, q: int) -> np.ndarray:
    """``Σ_i u_i'E_j u_i`` for each basis matrix (``u_i = H_i w``), from the step sums."""
    r = basis.shape[1]
    outer = np.zeros((r, r))
    outer[:q, :q] = np.einsum("i,abij,j->ab", w, step.t_re, w)
    idx = np.arange(q, r)
    outer[idx, idx] = np.einsum("i,aij,j->a", w, step.t_vc, w)
    return np.einsum("jab,ab->j", basis, outer)


def _gradient(step, prof, n: int, s: float, basis, u_e_u) -> np.ndarray:
    """Gradient of the ML ℓ in ``[β̃, θ̃, s̃]`` (module docstring)."""
    p, m = prof.beta.size, basis.shape[0]
    g = np.empty(p + m + 1)
    g[:p] = (prof.b - prof.a @ prof.beta) / s
    g[p : p + m] = -0.5 * np.einsum("jab,ab->j", basis, step.s) + u_e_u / (2.0 * s)
    g[-1] = -n / (2.0 * s) + prof.q / (2.0 * s**2)
    return g


def _hessian(hs, prof, n: int, s: float, u_e_u) -> np.ndarray:
    """Hessian of the ML ℓ in ``[β̃, θ̃, s̃]`` (module docstring)."""
    p, m = prof.beta.size, u_e_u.size
    r_b = prof.b - prof.a @ prof.beta
    h = np.empty((p + m + 1, p + m + 1))
    h[:p, :p] = -prof.a / s
    h[:p, p : p + m] = -hs.g_e_u.T / s
    h[p : p + m, p : p + m] = 0.5 * hs.tr_ss - hs.u_s_u / s
    h[:p, -1] = -r_b / s**2
    h[p : p + m, -1] = -u_e_u / (2.0 * s**2)
    h[-1, -1] = n / (2.0 * s**2) - prof.q / s**3
    h[p : p + m, :p] = h[:p, p : p + m].T
    h[-1, :-1] = h[:-1, -1]
    return 0.5 * (h + h.T)


class _FactoredCorrelations:
    """``x ↦ z`` for :meth:`SdCorLikelihood.maximize_factored`: ``x`` holds the free
    SDs (Ψ's, the components', σ) and, for each row of the correlations' Cholesky
    factor after the first (after the first two with a pinned correlation), its
    leading entries, normalized to a unit row; every other coordinate of ``z`` (β
    included) is ``z0``'s."""

    def __init__(self, sd: SdCorLikelihood, z0, pinned: int | None, hold) -> None:
        self.sd, self.z0 = sd, z0.copy()
        q = sd.q
        kinds = sd.kinds
        held = np.zeros(z0.size, dtype=bool) if hold is None else hold.copy()
        held &= kinds != "cor"
        self.scales = np.flatnonzero((kinds[: sd.n_c] != "cor") & ~held[: sd.n_c])
        self.scales = self.scales[self.scales != pinned]
        self.pinned_cor = None
        order = list(range(q))
        if pinned is not None and kinds[pinned] == "cor":
            a, b = next(ab for ab, i in sd.pos.items() if i == pinned)
            self.pinned_cor = float(np.clip(z0[pinned], -1.0, 1.0))
            order = [a, b] + [i for i in range(q) if i not in (a, b)]
        self.order = order
        self.first_free = 2 if self.pinned_cor is not None else 1
        factor = self._start_factor(z0)
        rows = [factor[i, : i + 1] for i in range(self.first_free, q)]
        self.sizes = [r.size for r in rows]
        self.x0 = np.concatenate([z0[self.scales]] + rows) if q else z0[self.scales].copy()
        sigma_floor = 1e-8 * max(float(z0[sd.sigma_ix]), 1e-300)
        self.bounds = [
            (sigma_floor, None) if k == sd.sigma_ix else (0.0, None) for k in self.scales
        ] + [(None, None)] * int(sum(self.sizes))

    def _start_factor(self, z0) -> np.ndarray:
        """A lower-triangular factor of z0's correlations in :attr:`order` (made
        positive definite first), rows normalized."""
        sd, q = self.sd, self.sd.q
        r = np.eye(q)
        for (a, b), i in sd.pos.items():
            if a != b:
                r[a, b] = r[b, a] = np.clip(z0[i], -1.0, 1.0)
        r = r[np.ix_(self.order, self.order)]
        vals, vecs = np.linalg.eigh(r)
        r = (vecs * np.maximum(vals, 1e-6)) @ vecs.T
        d = np.sqrt(np.diag(r))
        factor = np.linalg.cholesky(r / np.outer(d, d))
        return factor / np.linalg.norm(factor, axis=1)[:, None]

    def _factor(self, x) -> tuple[np.ndarray, list[float]]:
        """The unit rows (in :attr:`order`) and the norms of the free rows before
        normalizing."""
        q = self.sd.q
        u = np.zeros((q, q))
        if q:
            u[0, 0] = 1.0
        if self.pinned_cor is not None:
            u[1, 0] = self.pinned_cor
            u[1, 1] = np.sqrt(max(1.0 - self.pinned_cor**2, 0.0))
        norms = []
        at = self.scales.size
        for i, size in zip(range(self.first_free, q), self.sizes, strict=True):
            v = x[at : at + size]
            at += size
            norm = float(np.linalg.norm(v))
            norms.append(norm)
            u[i, :size] = v / norm if norm > 0 else np.eye(size)[-1]
        return u, norms

    def to_z(self, x) -> np.ndarray:
        sd = self.sd
        z = self.z0.copy()
        z[self.scales] = x[: self.scales.size]
        u, _ = self._factor(x)
        cors = np.clip(u @ u.T, -1.0, 1.0)
        inv = np.argsort(self.order)
        for (a, b), i in sd.pos.items():
            if a != b:
                z[i] = cors[inv[a], inv[b]]
        return z

    def gradient(self, x, grad_z) -> np.ndarray:
        """∂ℓ/∂x from ∂ℓ/∂z (chain rule through ``ρ_ab = u_a·u_b``, ``u = v/|v|``)."""
        sd, q = self.sd, self.sd.q
        out = np.empty(x.size)
        out[: self.scales.size] = grad_z[self.scales]
        if not q:
            return out
        u, norms = self._factor(x)
        g = np.zeros((q, q))  # ∂ℓ/∂ρ in :attr:`order`
        inv = np.argsort(self.order)
        for (a, b), i in sd.pos.items():
            if a != b:
                g[inv[a], inv[b]] = g[inv[b], inv[a]] = grad_z[i]
        du = g @ u  # ∂ℓ/∂u_i = Σ_j g_ij u_j
        at = self.scales.size
        for i, size, norm in zip(range(self.first_free, q), self.sizes, norms, strict=True):
            ui, gi = u[i, :size], du[i, :size]
            out[at : at + size] = (gi - ui * (ui @ gi)) / norm if norm > 0 else 0.0
            at += size
        return out
