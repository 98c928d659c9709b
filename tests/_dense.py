"""An independent high-precision evaluation of the linear mixed model likelihood.

The reference for issue 13's exactness tests: the (restricted) log-likelihood, the GLS
fixed effects and the profiled likelihood, computed from the raw rows in mpmath
(:data:`DIGITS` significant digits), with none of dmixed's statistics or kernels.

Model (statsmodels' MixedLM, DESIGN.md §1), group i::

    y_i ~ N(X_i β, V_i),   V_i = σ² W_i⁻¹ + Z_i Ψ Z_i' + Σ_l τ_l² C_il C_il'

with ``W_i`` the prior weights (residual variance ``σ²/w_j``) and ``C_il`` the columns
of variance component l present in group i (each column of a group is its own random
effect with variance ``τ_l²``).  V is block diagonal by group.

- ML:   ℓ = −½ log|V| − ½ r'V⁻¹r − (n/2) log 2π,   r = y − Xβ
- REML: ℓ_ML − ½ log|X'V⁻¹X| + (p/2) log 2π

(the constants of statsmodels' ``MixedLM.loglike`` and of lme4's ``logLik``; checked
against both in ``tests/fit/test_dense_likelihood.py``).

Two exact routes to the same numbers:

- ``"dense"``: V_i itself (n_i × n_i) and its Cholesky factor, group by group — the
  definition; cost Σ n_i³.
- ``"lowrank"``: the matrix determinant lemma and Woodbury's identity in the factor form
  ``V*_i = W_i^{-1/2}(I + U U')W_i^{-1/2}``, ``U = W_i^{1/2} Z̃_i Λ`` (Λ Λ' = B*, any
  PSD factor: well defined with a singular Ψ* or τ* = 0), on per-group cross products
  ``G_i'W_i G_i`` (``G_i = [Z̃_i X_i y_i]``) summed exactly in mpmath; cost Σ n_i once
  per data set, then Σ r_i³ per point.

Both give ``M = [X y]'V*⁻¹[X y]`` and ``Σ log|V*_i|`` (``V* = V/σ²``) to far more digits
than float64 holds; every likelihood below is a function of those two.  ``"auto"`` takes
``"dense"`` when no group has more than :data:`DENSE_MAX_ROWS` rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mpmath
import numpy as np

__all__ = [
    "DIGITS",
    "DENSE_MAX_ROWS",
    "DenseModel",
    "dense_model_of",
    "loglike",
    "gls_beta",
    "profiled_loglike",
]

#: significant digits of every evaluation (enough for ~25 digits of cancellation between
#: the raw cross products and the residual quadratic form, e.g. y near 1e8 with spread 1e-2)
DIGITS = 60
#: the largest group the "auto" route evaluates densely
DENSE_MAX_ROWS = 8


def _mp(x) -> mpmath.mpf:
    return mpmath.mpf(float(x))  # exact: every double is an mpf


def _mat(a: np.ndarray) -> mpmath.matrix:
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    out = mpmath.matrix(a.shape[0], a.shape[1])
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            out[i, j] = _mp(a[i, j])
    return out


def _psd_factor(b: mpmath.matrix) -> mpmath.matrix:
    """F with F F' = b for a symmetric positive semi-definite b (eigenvalues below zero
    from the float64 rounding of b's entries, |λ| ≤ 1e-12 |b|, are set to zero)."""
    k = b.rows
    if k == 0:
        return mpmath.matrix(0, 0)
    evals, evecs = mpmath.eigsy(b)
    out = mpmath.matrix(k, k)
    for j in range(k):
        lam = evals[j]
        if lam < 0:
            if lam < -mpmath.mpf(1e-12) * mpmath.mnorm(b, 1):
                raise ValueError(f"covariance matrix is not positive semi-definite: {lam}")
            lam = mpmath.mpf(0)
        root = mpmath.sqrt(lam)
        for i in range(k):
            out[i, j] = evecs[i, j] * root
    return out


def _chol_logdet(a: mpmath.matrix) -> tuple[mpmath.matrix, mpmath.mpf]:
    """Lower Cholesky factor of an SPD matrix and its log-determinant."""
    chol = mpmath.cholesky(a)
    logdet = 2 * mpmath.fsum(mpmath.log(chol[j, j]) for j in range(a.rows))
    return chol, logdet


@dataclass
class _Group:
    """One group's rows: ``g = [Z̃ X y]`` as mpf lists by column, weights."""

    n: int
    q: int  # random-effect columns
    vc_comp: list[int]  # component index of each of the group's VC columns
    cols: list[list[mpmath.mpf]]  # columns of [Z̃ X y]
    w: list[mpmath.mpf]
    cross: list | None = None  # G'WG (lists), computed on first use (lowrank route)
    logw: mpmath.mpf | None = None  # Σ log w_j, with cross


@dataclass
class DenseModel:
    """The rows of a model, converted once, and its likelihood at any parameter point.

    Parameters
    ----------
    y : (n,), X : (n, p), Z : (n, q), groups : (n,)
        Response, fixed-effects design, random-effects design, group labels.
    vc : list of (n, m_l) arrays, optional
        Variance component l: column j of group g's rows is one random effect
        (variance ``vcomp[l]``); columns that are zero on all of a group's rows are
        not present in that group.
    weights : (n,), optional
        Prior weights (residual variance ``σ²/w_j``).
    route : {"auto", "dense", "lowrank"}
    """

    y: np.ndarray
    X: np.ndarray
    Z: np.ndarray
    groups: np.ndarray
    vc: list = field(default_factory=list)
    weights: np.ndarray | None = None
    route: str = "auto"

    def __post_init__(self) -> None:
        y = np.asarray(self.y, dtype=np.float64).ravel()
        x = np.asarray(self.X, dtype=np.float64).reshape(y.size, -1)
        z = np.asarray(self.Z, dtype=np.float64).reshape(y.size, -1)
        w = np.ones(y.size) if self.weights is None else np.asarray(self.weights, float)
        vcs = [np.asarray(v, dtype=np.float64).reshape(y.size, -1) for v in self.vc or []]
        self.n, self.p, self.q, self.k_vc = y.size, x.shape[1], z.shape[1], len(vcs)
        labels = np.unique(np.asarray(self.groups))
        self.group_list: list[_Group] = []
        for lab in labels:
            idx = np.flatnonzero(np.asarray(self.groups) == lab)
            blocks, comp = [z[idx]], []
            for l_, v in enumerate(vcs):
                sub = v[idx]
                present = np.flatnonzero(np.any(sub != 0, axis=0))
                blocks.append(sub[:, present])
                comp += [l_] * present.size
            g = np.column_stack([*blocks, x[idx], y[idx]])
            cols = [[_mp(val) for val in g[:, j]] for j in range(g.shape[1])]
            wl = [_mp(val) for val in w[idx]]
            self.group_list.append(_Group(idx.size, self.q, comp, cols, wl))
        if self.route == "auto":
            biggest = max(gr.n for gr in self.group_list)
            self.route = "dense" if biggest <= DENSE_MAX_ROWS else "lowrank"
        if self.route not in ("dense", "lowrank"):
            raise ValueError(f"route must be 'auto', 'dense' or 'lowrank', got {self.route!r}")

    # -- the two summaries: M = [X y]'V*⁻¹[X y] and Σ log|V*_i| ---------------------

    def summaries(self, cov_re, vcomp, scale=1.0) -> tuple[mpmath.matrix, mpmath.mpf]:
        """``(M, Σ log|V*_i|)`` with ``V* = V/σ²`` at Ψ* = cov_re/scale, τ* = vcomp/scale
        (the division done in mpmath; call inside ``mpmath.workdps(DIGITS)``)."""
        s2 = _mp(scale)
        psi = np.asarray(cov_re, dtype=np.float64).reshape(self.q, self.q)
        psi_mp = mpmath.matrix(self.q, self.q)
        for i in range(self.q):
            for j in range(self.q):
                psi_mp[i, j] = _mp(psi[i, j]) / s2
        tau = [_mp(t) / s2 for t in np.asarray(vcomp, dtype=np.float64).reshape(self.k_vc)]
        if any(t < 0 for t in tau):
            raise ValueError(f"negative variance component: {vcomp}")
        k = self.p + 1
        m_tot = mpmath.zeros(k, k)
        logdet = mpmath.mpf(0)
        if self.route == "dense":
            for gr in self.group_list:
                m_i, ld = _dense(gr, _b_star(psi_mp, tau, gr))
                m_tot += m_i
                logdet += ld
            return m_tot, logdet
        root = _psd_factor(psi_mp)  # one factor of Ψ* for every group
        root_rows = [[root[i, j] for j in range(self.q)] for i in range(self.q)]
        s_vals = [mpmath.sqrt(t) for t in tau]
        acc = [[mpmath.mpf(0)] * k for _ in range(k)]
        for gr in self.group_list:
            logdet += _lowrank(gr, root_rows, s_vals, acc)
        for i in range(k):
            for j in range(k):
                m_tot[i, j] = acc[i][j]
        return m_tot, logdet

    # -- likelihoods -------------------------------------------------------------

    def loglike(self, beta, cov_re, vcomp, scale, reml: bool) -> float:
        """ℓ at (β, Ψ, τ², σ²), nothing profiled (module docstring)."""
        with mpmath.workdps(DIGITS):
            m_tot, logdet = self.summaries(cov_re, vcomp, scale)
            beta_mp = [_mp(b) for b in np.ravel(beta)]
            return float(self._llf(m_tot, logdet, beta_mp, _mp(scale), reml))

    def _llf(self, m_tot, logdet, beta_mp: list, s2, reml: bool):
        """ℓ from the summaries: V = σ²V*, so log|V| = Σ log|V*_i| + n log σ²,
        r'V⁻¹r = w'Mw/σ² (w = [−β; 1]) and log|X'V⁻¹X| = log|M_XX| − p log σ²."""
        wv = mpmath.matrix([-b for b in beta_mp] + [1])
        quad = (wv.T * m_tot * wv)[0, 0]
        log2pi = mpmath.log(2 * mpmath.pi)
        llf = -(logdet + self.n * mpmath.log(s2)) / 2 - quad / (2 * s2) - self.n * log2pi / 2
        if reml:
            a = m_tot[: self.p, : self.p]
            llf -= (_chol_logdet(a)[1] - self.p * mpmath.log(s2)) / 2 if self.p else 0
            llf += self.p * log2pi / 2
        return llf

    def evaluate(self, beta, cov_re, vcomp, scale, reml: bool):
        """(ℓ, GLS β, its conditional standard errors sqrt(diag(σ²(X'V*⁻¹X)⁻¹))) at
        (β, Ψ, τ², σ²), from one evaluation of the summaries."""
        with mpmath.workdps(DIGITS):
            m_tot, logdet = self.summaries(cov_re, vcomp, scale)
            llf = self._llf(m_tot, logdet, [_mp(b) for b in np.ravel(beta)], _mp(scale), reml)
            gls = np.array([float(b) for b in self._beta(m_tot)])
            if self.p:
                a_inv = mpmath.inverse(m_tot[: self.p, : self.p])
                se = np.array([float(mpmath.sqrt(scale * a_inv[j, j])) for j in range(self.p)])
            else:
                se = np.zeros(0)
            return float(llf), gls, se

    def gls_beta(self, cov_re, vcomp, scale=1.0) -> np.ndarray:
        """(X'V⁻¹X)⁻¹X'V⁻¹y at the given variances (σ² cancels)."""
        with mpmath.workdps(DIGITS):
            m_tot, _ = self.summaries(cov_re, vcomp, scale)
            return np.array([float(b) for b in self._beta(m_tot)])

    def profiled_loglike(self, psi_star, tau_star, reml: bool) -> tuple[float, np.ndarray, float]:
        """(ℓ, β̂, σ̂²) with β and σ² profiled out, at Ψ* = Ψ/σ², τ* = τ²/σ².

        σ̂² = Q/f, Q = (y − Xβ̂)'V*⁻¹(y − Xβ̂), f = n (ML) or n − p (REML); ℓ is
        :meth:`loglike` at (β̂, σ̂²Ψ*, σ̂²τ*, σ̂²)."""
        with mpmath.workdps(DIGITS):
            m_tot, logdet = self.summaries(psi_star, tau_star)
            beta = self._beta(m_tot)
            wv = mpmath.matrix([-b for b in beta] + [1])
            s2 = (wv.T * m_tot * wv)[0, 0] / (self.n - self.p if reml else self.n)
            llf = self._llf(m_tot, logdet, beta, s2, reml)
            return float(llf), np.array([float(b) for b in beta]), float(s2)

    def _beta(self, m_tot: mpmath.matrix) -> list:
        p = self.p
        if p == 0:
            return []
        a = m_tot[:p, :p]
        b = m_tot[:p, p]
        sol = mpmath.cholesky_solve(a, b)
        return [sol[j] for j in range(p)]


def _b_star(psi: mpmath.matrix, tau: list, gr: _Group) -> mpmath.matrix:
    """B*_i = blockdiag(Ψ*, τ*_l for each of the group's VC columns)."""
    r = gr.q + len(gr.vc_comp)
    b = mpmath.zeros(r, r)
    for i in range(gr.q):
        for j in range(gr.q):
            b[i, j] = psi[i, j]
    for j, comp in enumerate(gr.vc_comp):
        b[gr.q + j, gr.q + j] = tau[comp]
    return b


def _dense(gr: _Group, b: mpmath.matrix) -> tuple[mpmath.matrix, mpmath.mpf]:
    """V*_i = W⁻¹ + Z̃ B* Z̃' by the definition; its Cholesky whitens [X y]."""
    r = b.rows
    zt = mpmath.matrix(gr.n, r)
    for j in range(r):
        for a in range(gr.n):
            zt[a, j] = gr.cols[j][a]
    v = zt * b * zt.T
    for a in range(gr.n):
        v[a, a] += 1 / gr.w[a]
    chol, logdet = _chol_logdet(v)
    xy = mpmath.matrix(gr.n, len(gr.cols) - r)
    for j in range(r, len(gr.cols)):
        for a in range(gr.n):
            xy[a, j - r] = gr.cols[j][a]
    t = _forward(chol, xy)
    return t.T * t, logdet


def _forward(chol: mpmath.matrix, rhs: mpmath.matrix) -> mpmath.matrix:
    """chol⁻¹ rhs for a lower-triangular chol."""
    n, k = rhs.rows, rhs.cols
    out = mpmath.matrix(n, k)
    for c in range(k):
        for i in range(n):
            acc = rhs[i, c] - mpmath.fdot((chol[i, j], out[j, c]) for j in range(i))
            out[i, c] = acc / chol[i, i]
    return out


def _lowrank(gr: _Group, root: list, s_vals: list, acc: list) -> mpmath.mpf:
    """Determinant lemma and Woodbury in the factor form (module docstring), on plain
    lists of mpf (mpmath's matrix class costs more than the arithmetic here).

    ``Λ_i = blockdiag(F, s_l for each VC column)`` with ``F F' = Ψ*``; adds
    ``[X y]'W[X y] − C'C`` (``C = R⁻ᵀΛ'Z̃'W[X y]``, ``R'R = K = I + Λ'Z̃'WZ̃Λ``) to ``acc``
    and returns ``log|V*_i| = log|K| − Σ log w_j``."""
    fdot = mpmath.fdot
    if gr.cross is None:
        k = len(gr.cols)
        wcols = [[c * w for c, w in zip(col, gr.w, strict=True)] for col in gr.cols]
        cross = [[mpmath.mpf(0)] * k for _ in range(k)]
        for i in range(k):
            for j in range(i + 1):
                cross[i][j] = cross[j][i] = fdot(wcols[i], gr.cols[j])
        gr.cross = cross
        gr.logw = mpmath.fsum(mpmath.log(w) for w in gr.w)
    cross = gr.cross
    q, r = gr.q, gr.q + len(gr.vc_comp)
    k = len(cross)
    # Λ' as rows: Λ'[a][b] = Λ[b][a]
    lam_t = [[root[b][a] if b < q else 0 for b in range(r)] for a in range(q)]
    for j, comp in enumerate(gr.vc_comp):
        row = [0] * r
        row[q + j] = s_vals[comp]
        lam_t.append(row)
    # U = Λ'Z̃'W[Z̃ X y] (r × k), then K = I + U[:, :r]Λ, C = R⁻ᵀ U[:, r:]
    u = [[fdot((lam_t[a][b], cross[b][c]) for b in range(r)) for c in range(k)] for a in range(r)]
    kmat = [
        [fdot((u[a][c], lam_t[b][c]) for c in range(r)) + (1 if a == b else 0) for b in range(r)]
        for a in range(r)
    ]
    chol = [[mpmath.mpf(0)] * r for _ in range(r)]
    for j in range(r):
        chol[j][j] = mpmath.sqrt(kmat[j][j] - fdot((x, x) for x in chol[j][:j]))
        for i in range(j + 1, r):
            chol[i][j] = (kmat[i][j] - fdot(zip(chol[i][:j], chol[j][:j], strict=True))) / chol[j][
                j
            ]
    logdet = 2 * mpmath.fsum(mpmath.log(chol[j][j]) for j in range(r)) - gr.logw
    c = [[mpmath.mpf(0)] * (k - r) for _ in range(r)]
    for col in range(k - r):
        for i in range(r):
            c[i][col] = (u[i][r + col] - fdot((chol[i][j], c[j][col]) for j in range(i))) / chol[i][
                i
            ]
    for i in range(k - r):
        for j in range(i + 1):
            val = cross[r + i][r + j] - fdot((c[a][i], c[a][j]) for a in range(r))
            acc[i][j] += val
            if i != j:
                acc[j][i] += val
    return logdet


def dense_model_of(model, route: str = "auto") -> DenseModel:
    """The :class:`DenseModel` of a dmixed model's rows (``model.rows``, in-process data).

    dmixed's row form of a variance component (per row, the global column index of
    each entry, −1 for none, and its value) is spread into one dense column per
    component column."""
    rows = model.rows
    if rows is None:
        raise ValueError("dense_model_of needs a model of in-process rows")
    n = rows.endog.size
    vcs = []
    for cols, vals in zip(rows.vc_cols, rows.vc_vals, strict=True):
        width = int(cols.max()) + 1 if cols.size else 0
        dense = np.zeros((n, max(width, 0)))
        ii, kk = np.nonzero(cols >= 0)
        np.add.at(dense, (ii, cols[ii, kk]), vals[ii, kk])
        vcs.append(dense)
    return DenseModel(
        rows.endog, rows.exog, rows.exog_re, rows.groups, vcs, rows.weights, route=route
    )


def loglike(y, X, Z, groups, beta, cov_re, vcomp, scale, reml, vc=None, weights=None) -> float:
    """ℓ at (β, Ψ = cov_re, τ² = vcomp, σ² = scale), nothing profiled (see
    :class:`DenseModel`)."""
    dm = DenseModel(y, X, Z, groups, list(vc or []), weights)
    return dm.loglike(beta, cov_re, vcomp, scale, reml)


def gls_beta(y, X, Z, groups, cov_re, vcomp, scale=1.0, vc=None, weights=None) -> np.ndarray:
    """GLS fixed effects (X'V⁻¹X)⁻¹X'V⁻¹y at the given variances."""
    dm = DenseModel(y, X, Z, groups, list(vc or []), weights)
    return dm.gls_beta(cov_re, vcomp, scale)


def profiled_loglike(y, X, Z, groups, psi_star, tau_star, reml, vc=None, weights=None):
    """(ℓ, β̂, σ̂²) with β and σ² profiled out at Ψ* = cov_re/scale, τ* = vcomp/scale."""
    dm = DenseModel(y, X, Z, groups, list(vc or []), weights)
    return dm.profiled_loglike(psi_star, tau_star, reml)


# --------------------------------------------------------------------------------------
# A dmixed fit against the reference
# --------------------------------------------------------------------------------------


def psd_root(mat: np.ndarray) -> np.ndarray:
    """F = Q diag(√λ⁺) with F F' = mat (eigenvalues below zero from rounding set to 0)."""
    mat = np.asarray(mat, dtype=np.float64)
    if mat.size == 0:
        return mat.reshape(0, 0)
    evals, evecs = np.linalg.eigh(0.5 * (mat + mat.T))
    return evecs * np.sqrt(np.clip(evals, 0.0, None))


def local_max_excess(dm: DenseModel, psi_star, tau_star, reml: bool, step: float = 1e-4):
    """How far the profiled ℓ rises above its value at (Ψ*, τ*) at the points ±h along
    each free entry of a factor F (Ψ* = F F': the lower triangle of the Cholesky factor,
    or every entry of :func:`psd_root` for a singular Ψ*) and each s_l (τ*_l = s_l²),
    with h = step · max(1, |F|, s).  Returns the largest rise (≤ 0 at a local maximum)
    and ℓ at (Ψ*, τ*)."""
    psi = np.asarray(psi_star, dtype=np.float64).reshape(dm.q, dm.q)
    try:
        root = np.linalg.cholesky(psi)
        entries = np.tril_indices(dm.q)
    except np.linalg.LinAlgError:
        root = psd_root(psi)
        entries = np.indices((dm.q, dm.q)).reshape(2, -1)
    svals = np.sqrt(np.clip(np.asarray(tau_star, dtype=np.float64).reshape(dm.k_vc), 0, None))
    theta = np.concatenate([root.ravel(), svals])
    free = np.concatenate(
        [np.ravel_multi_index(entries, (dm.q, dm.q)), root.size + np.arange(svals.size)]
    )
    h = step * max(1.0, float(np.max(np.abs(theta), initial=0.0)))
    center = dm.profiled_loglike(root @ root.T, svals**2, reml)[0]
    worst = -np.inf
    for j in free:
        for sign in (1.0, -1.0):
            th = theta.copy()
            th[j] += sign * h
            f_mat = th[: root.size].reshape(dm.q, dm.q)
            llf = dm.profiled_loglike(f_mat @ f_mat.T, th[root.size :] ** 2, reml)[0]
            worst = max(worst, llf - center)
    return worst, center


def assert_fit_is_consistent(
    res,
    dm: DenseModel | None = None,
    rtol: float = 1e-9,
    local_max: bool = True,
    llf_atol: float = 0.0,
) -> None:
    """A dmixed fit's numbers are those of its own estimates, by the reference.

    (a) ``res.llf`` is ℓ at (``fe_params, cov_re, vcomp, scale``): within
        ``max(rtol · max(1, |llf|), llf_atol)`` (``llf_atol``: the precision the
        statistics resolve ℓ to, where that is coarser; see :func:`llf_precision`);
    (b) ``res.fe_params`` is the GLS β at those variances: within
        ``rtol·|β| + 1e3·rtol·se`` (se the conditional standard error);
    (c) (``local_max``) the profiled ℓ rises by no more than ``rtol · max(1, |llf|)`` at
        small steps of the covariance parameters (:func:`local_max_excess`).

    ``dm`` defaults to the reference of ``res.model``'s rows (:func:`dense_model_of`).
    """
    if dm is None:
        dm = dense_model_of(res.model)
    reml = bool(res.reml)
    cov_re = np.asarray(res.cov_re, dtype=np.float64)
    vcomp = np.asarray(res.vcomp, dtype=np.float64)
    scale = float(res.scale)
    beta = np.asarray(res.fe_params, dtype=np.float64)
    llf = float(res.llf)
    tol = max(rtol * max(1.0, abs(llf)), llf_atol)
    ref, gls, se = dm.evaluate(beta, cov_re, vcomp, scale, reml)
    assert abs(llf - ref) <= tol, (
        f"llf {llf!r} is not the likelihood at the reported estimates: reference {ref!r} "
        f"(diff {llf - ref:.3e}, tol {tol:.1e})"
    )
    if beta.size:
        err = np.abs(beta - gls)
        btol = rtol * np.abs(gls) + 1e3 * rtol * se
        assert np.all(err <= btol), (
            f"fe_params {beta!r} are not the GLS estimate at the reported variances "
            f"{gls!r} (|diff| {err!r}, tol {btol!r})"
        )
    if local_max:
        excess, center = local_max_excess(dm, cov_re / scale, vcomp / scale, reml)
        assert excess <= tol, (
            f"not a local maximum: the profiled llf rises by {excess:.3e} (tol {tol:.1e}) "
            f"near the estimate (profiled llf there {center!r})"
        )


def llf_precision(res) -> float:
    """How closely float64 statistics determine ℓ at ``res``'s estimates, as dmixed
    documents it: ``(f/2) · resolution`` (:func:`dmixed.fit.objective.resolution`, the
    relative rounding error of Q; ``f = n − p`` for REML, ``n`` for ML).  Far below 1e-9
    relative for ordinary data; where Q is a tiny remainder of large sums (random
    effects thousands of times the residual) it is the bound the fit keeps to."""
    from dmixed.fit.likelihood import Likelihood, Point
    from dmixed.fit.objective import resolution

    stats = res.model.statistics()
    reml = bool(res.reml)
    lik = Likelihood(stats.engine, stats.glob, stats.layout, stats.columns, reml)
    psi = np.asarray(res.cov_re, dtype=np.float64) / float(res.scale)
    lam = np.linalg.cholesky(psi)
    if res.k_vc:
        tau = np.sqrt(np.asarray(res.vcomp, dtype=np.float64) / float(res.scale))
        raise NotImplementedError(f"llf_precision covers exog_re only (vcomp {tau})")
    step, prof = lik.evaluate(Point(lam))
    f = res.nobs - res.k_fe if reml else res.nobs
    return 0.5 * f * resolution(step, prof, stats.glob)
