"""The coordinates of the optimizer's Newton steps: variances on a shifted log scale,
a wider Ψ* (shifted) in modified Cholesky factors.

Where the groups are few and large, the profiled log-likelihood as a function of a
variance ψ behaves like ``−a log ψ − b / ψ`` (``log|K_i| ≈ log(n_i ψ)``, and the
residual quadratic form falls as ``1/ψ``).  Newton's method in ψ itself then advances
by steps of constant size from below (``ψ(c − ψ)/(2c − ψ)`` towards the maximum ``c``,
a third of the way from ``c/3``), which looks like linear convergence and hands the fit
over to BFGS; above ``2c`` the function is not even concave.  In ``u = log ψ`` it is
``−a u − b e^{−u}``: concave everywhere, and Newton's error goes from ``d`` to
``d + 1 − e^d ≈ −d²/2``.  nlme's ``pdLogChol`` takes the same coordinates.

Where the variance is small next to what one group's data say about it (its standard
error), ``log|K_i|`` is not ``log(n_i ψ)`` but ``log(1 + n_i ψ) = log n_i + log(c_i + ψ)``
with ``c_i = 1/n_i`` (for a variance component, ``c_i`` also holds the other variances
of the group), and ℓ behaves like ``−a log(c + ψ) − b/(c + ψ)``: the coordinate that
makes it the well-behaved function above is ``log(ψ + c)``, and ``log ψ`` overshoots
(from below the maximum it predicts one far above it).  The shift ``c`` is read from
the sums of the exact Hessian (:func:`log_shift`): for ``f(x) = −a log x`` with
``x = c + ψ``, ``x = −f'/f''``, and the log-determinant part of ℓ gives both
derivatives, ``∂(−½Σlog|V_i|)/∂θ_j = −½ Σ tr(S_i E_j)`` and its second derivative
``½ Σ tr(S_i E_j S_i E_j)``, so ``c_j = Σ tr(S_i E_j) / Σ tr(S_i E_j S_i E_j) − θ_j``
(the mean of the ``c_i`` weighted by ``1/(c_i + ψ)²``; 0 where the sums give less).
The coordinates take half of it (:data:`SHIFT_SHARE`: the rest of ℓ is not of that
form, and the whole shift overcorrects where the variance is well determined).
The shifts are read again at every exact Hessian (the secant steps of
:mod:`~dmixed.fit.optimize` keep the last).  Newton steps are taken in ``v``:

- ``v_j = log(θ_j + c_j)`` for every positive τ*_j (and a variance of Ψ* outside the
  block below),
- for the block of Ψ* whose variances are positive and move (all of Ψ* at an interior
  point; a random effect settled at zero leaves its row and column out), the modified
  Cholesky factors of the shifted block ``Ψ* + C = L D L'`` (``C = diag(c_j)``, ``L``
  unit lower triangular, ``D`` diagonal; Pourahmadi's parametrization):
  ``log(D_jj + s_j)`` at the variance's place, ``L_ab`` (a regression coefficient of
  effect ``a`` on effect ``b`` given those before it) at the covariance's; ``s_j`` is
  the share :data:`SHIFT_SHARE` of what the effects before ``j`` explain of its
  variance, ``(Ψ* + C)_jj − D_jj`` (0 for the first), fixed for the step: a
  conditional variance small next to it (effects correlated nearly ±1) leaves ℓ as
  flat in ``log D_jj`` as a variance small next to its error leaves it in ``log ψ``.
  A Newton step that rescales the variances leaves the ``L_ab`` alone, and the
  covariance follows the variances instead of lagging behind them: from a moment start
  off by a common factor and in its covariance, the step lands where the steps in the
  (shifted) correlation ``Ψ*_ab / √((Ψ*_aa + c_a)(Ψ*_bb + c_b))`` land only a step
  later.  For ``q = 1`` it is ``log(ψ + c)``; where a variance is small next to its
  error (``c ≫ Ψ*_bb``), ``L_ab ≈ Ψ*_ab / (Ψ*_bb + c_b)`` is nearly the covariance
  itself, in which ℓ is then nearly quadratic,
- ``θ_j`` itself for the others (a variance at zero, a covariance beside one).

The fixed points are the same (the map ``θ(v)`` is smooth and invertible at interior
points): the optimum, and ℓ there, do not depend on the coordinates of the steps.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..stats import Layout, tril_indices

__all__ = [
    "MAX_LOG_STEP",
    "SHIFT_SHARE",
    "SMALL_STEP_MAX",
    "NewtonStep",
    "log_entries",
    "log_shift",
    "newton_step",
]

#: the share of the log-determinant's shift the coordinates take (:func:`log_shift`):
#: ℓ's other part, ``−(fac/2) log Q`` with σ² profiled, is not of the form
#: ``−b/(c + ψ)`` with the same ``c``, and the whole shift overcorrects where the
#: variance is well determined; half of it left no fit of the benchmarks and tests
#: with more evaluations than the plain log scale (benchmarks/RESULTS.md, 2026-12-01)
SHIFT_SHARE = 0.5

#: Up to this many movable entries, :func:`newton_step` makes the entries of its chain
#: rule and coordinates in Python floats (:func:`_small_newton_step`: a few hundred
#: float operations and some 10 calls of numpy, against some 60 calls of numpy on
#: k × k arrays, each costing more than its arithmetic); above it, and as the
#: reference, in numpy.  The same numbers bit for bit (``tr(G X)`` summed in numpy's
#: order: at most 9 terms, a 3 × 3 block).
SMALL_STEP_MAX = 6

#: the largest change of a log variance one Newton step makes (a factor of 100): a
#: longer step is shortened as a whole (the direction kept), as the line search would
MAX_LOG_STEP = float(np.log(100.0))


@dataclass(frozen=True)
class NewtonStep:
    """A Newton step from ``theta`` (the movable θ entries) in the coordinates ``v``.

    ``log`` marks the entries of ``v`` on a (shifted) log scale: the τ* and the variances
    of Ψ* (``log(D_jj + s_j)`` in the block); ``shift`` their ``c_j`` (0 elsewhere); ``block``
    the positions among the movable entries of the block's θ entries (a symmetric index
    matrix, empty without a block); ``delta`` the step in ``v``; ``rise`` the Newton
    decrement ``½ g_v' δ_v`` (the rise of ℓ the full step promises); ``origin`` ``v`` at
    ``theta`` and ``block_shift`` the block's shifts ``s`` there (:func:`_factors`; empty
    without a block), made with the step: every trial point of the line search starts
    from them.
    """

    theta: np.ndarray
    log: np.ndarray
    delta: np.ndarray
    rise: float
    shift: np.ndarray
    block: np.ndarray
    origin: np.ndarray
    block_shift: np.ndarray

    def point(self, fraction: float) -> np.ndarray:
        """The movable θ after ``fraction`` of the step: ``θ(v + f δ)``.  A variance the
        step takes below zero (possible where ``c_j > 0``) is left negative: the point
        is outside the parameter space, and the line search shortens the step."""
        step = fraction * self.delta
        theta, shift = self.theta, self.shift
        out = np.where(
            self.log, (theta + shift) * np.exp(np.where(self.log, step, 0.0)) - shift, theta + step
        )
        if self.block.size:
            v = self.origin + step
            inside = self.block.ravel()
            out[inside] = _theta_of(v, self.log, shift, self.block, self.block_shift)[inside]
        return out


@functools.lru_cache(maxsize=32)
def log_entries(layout: Layout, cholesky: bool = True) -> np.ndarray:
    """Which entries of θ = [vech_lt(Ψ*), τ*] are variances stepped on the (shifted) log
    scale where positive: every τ* and the diagonal of Ψ* (its covariances then in the
    modified Cholesky block); without ``cholesky``, the diagonal of Ψ* only when it is
    1 × 1 (beside plain covariances, a step that shrinks two variances on the log scale
    leaves their covariance where it was, and overshoots their correlation)."""
    rows, cols = layout.tril()
    diagonal = rows == cols if cholesky else np.full(layout.k_re2, layout.k_re == 1)
    out = np.concatenate([diagonal, np.ones(layout.k_vc, bool)])
    out.flags.writeable = False  # made once per layout: every Newton step asks for it
    return out


def _block_positions(layout: Layout, movable: np.ndarray, log: np.ndarray) -> np.ndarray:
    """The block of Ψ* in modified Cholesky coordinates: ``P[a, b]`` the position among
    the movable entries of θ's ``Ψ*_ab`` (symmetric), over the random effects whose
    variance moves on the log scale and whose covariances all move; (0, 0) if fewer
    than two.  Made once per layout and masks (read-only)."""
    return _block_positions_of(layout, movable.tobytes(), log.tobytes())


@functools.lru_cache(maxsize=32)
def _block_positions_of(layout: Layout, movable_bytes: bytes, log_bytes: bytes) -> np.ndarray:
    """:func:`_block_positions` of the masks given as bytes (hashable)."""
    movable = np.frombuffer(movable_bytes, dtype=bool)
    log = np.frombuffer(log_bytes, dtype=bool)
    rows, cols = layout.tril()
    position = np.full(layout.n_params, -1)
    position[movable] = np.arange(int(movable.sum()))
    full = np.full((layout.k_re, layout.k_re), -1)
    full[rows, cols] = position[: layout.k_re2]
    full[cols, rows] = position[: layout.k_re2]
    diag = np.diagonal(full)
    effects = np.flatnonzero((diag >= 0) & log[np.maximum(diag, 0)])
    block = full[np.ix_(effects, effects)]
    out = (
        np.zeros((0, 0), dtype=np.intp)
        if effects.size < 2 or (block < 0).any()
        else block.astype(np.intp)
    )
    out.flags.writeable = False
    return out


def _factors(
    theta: np.ndarray, shift: np.ndarray, block: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(L, d, s)`` of the block at ``theta``: ``Ψ*_block + C = L diag(d) L'`` (``L`` unit
    lower triangular; raises ``np.linalg.LinAlgError`` where it is not positive
    definite) and the shifts ``s_j`` of the ``log(d_j + s_j)`` coordinates:
    :data:`SHIFT_SHARE` of ``(Ψ*_block + C)_jj − d_j``, the part of the variance of
    effect ``j`` that the effects before it explain.  Where a conditional variance is
    small next to it (effects correlated nearly ±1), ℓ is as flat in ``log d_j`` as in
    the log of a variance small next to its error, and the same shift remedies it."""
    matrix = theta[block] + np.diag(shift[np.diagonal(block)])
    chol = np.linalg.cholesky(matrix)
    root = np.diagonal(chol)
    d = root**2
    return chol / root, d, SHIFT_SHARE * np.maximum(np.diagonal(matrix) - d, 0.0)


def _coordinates(
    theta: np.ndarray, log: np.ndarray, shift: np.ndarray, block: np.ndarray, factors=None
) -> np.ndarray:
    """``v`` of the movable ``theta`` (the module's docstring); ``factors``: the block's
    :func:`_factors` at ``theta`` where already made."""
    out = np.where(log, np.log(np.where(log, theta + shift, 1.0)), theta)
    if block.size:
        lmat, d, s = _factors(theta, shift, block) if factors is None else factors
        rows, cols = tril_indices(block.shape[0], -1)
        out[np.diagonal(block)] = np.log(d + s)
        out[block[rows, cols]] = lmat[rows, cols]
    return out


def _theta_of(
    v: np.ndarray, log: np.ndarray, shift: np.ndarray, block: np.ndarray, s: np.ndarray
) -> np.ndarray:
    """The movable θ of ``v``: the inverse of :func:`_coordinates` at the point whose
    factors gave the block's shifts ``s`` (:func:`_factors`)."""
    out = np.where(log, np.exp(np.where(log, v, 0.0)) - shift, v)
    if block.size:
        lmat = np.eye(block.shape[0])
        rows, cols = tril_indices(block.shape[0], -1)
        lmat[rows, cols] = v[block[rows, cols]]
        diag = block.diagonal()
        psi = (lmat * (np.exp(v[diag]) - s)) @ lmat.T - np.diag(shift[diag])
        out[block[rows, cols]] = psi[rows, cols]
        out[diag] = psi.diagonal()
    return out


def _block_chain_rule(
    theta: np.ndarray, grad: np.ndarray, block: np.ndarray, factors
) -> tuple[np.ndarray, np.ndarray]:
    """The block's part of ``J = ∂θ/∂v`` and of ``Σ_k g_k ∂²θ_k/∂v²`` (both k × k over
    the movable entries, zero outside the block).

    With ``M = Ψ*_block + C = L diag(d) L'``, ``u_j = log(d_j + s_j)``,
    ``x_j = d_j + s_j = e^{u_j}`` and ``L_j`` the ``j``-th column of ``L``:
    ``∂M/∂u_j = x_j L_j L_j'``, ``∂M/∂L_ab = d_b (e_a L_b' + L_b e_a')``; second
    derivatives ``x_j L_j L_j'`` in ``(u_j, u_j)``, ``x_b (e_a L_b' + L_b e_a')`` in
    ``(u_b, L_ab)``, ``d_b (e_a e_c' + e_c e_a')`` in ``(L_ab, L_cb)``, zero otherwise.
    ℓ's gradient in the block as a symmetric matrix ``G`` (``G_aa = g_aa``,
    ``G_ab = g_ab / 2``) turns a second derivative ``X`` of ``M`` into
    ``Σ_k g_k ∂²θ_k = tr(G X)``.  ``factors``: :func:`_factors` of the block at ``theta``.
    """
    k = theta.size
    q = block.shape[0]
    diag = np.diagonal(block)
    lmat, d, s = factors
    x = d + s
    eye = np.eye(q)
    gmat = 0.5 * grad[block] + 0.5 * np.diag(grad[diag])
    rows, cols = tril_indices(q)  # θ's block entries, a ≥ b
    # the block's coordinates: (a, b) with a > b an L_ab, (j, j) a u_j; outer products
    # by broadcasting (np.outer's own arithmetic, without its call per product)
    first: dict[tuple[int, int], np.ndarray] = {}  # ∂M over each coordinate
    for a, b in zip(rows.tolist(), cols.tolist(), strict=True):
        col = lmat[:, b]
        if a == b:
            first[a, b] = x[b] * (col[:, None] * col[None, :])
        else:
            first[a, b] = d[b] * (eye[a][:, None] * col[None, :] + col[:, None] * eye[a][None, :])
    jac = np.zeros((k, k))
    second = np.zeros((k, k))
    entries = block[rows, cols]
    for (a, b), dm in first.items():
        jac[entries, block[a, b]] = dm[rows, cols]
    for b in range(q):  # only coordinates of the same column b have a second derivative
        for a in range(b, q):
            for c in range(b, q):
                if a == b and c == b:  # (u_b, u_b)
                    m2 = first[b, b]
                elif a == b or c == b:  # (u_b, L_cb): ∂M/∂L_cb times x_b / d_b
                    m2 = first[a + c - b, b] * (x[b] / d[b])
                else:  # (L_ab, L_cb)
                    m2 = d[b] * (
                        eye[a][:, None] * eye[c][None, :] + eye[c][:, None] * eye[a][None, :]
                    )
                second[block[a, b], block[c, b]] = float((gmat * m2).sum())
    return jac, second


def log_shift(theta: np.ndarray, trace_s: np.ndarray, trace_ss: np.ndarray) -> np.ndarray:
    """The shifts ``c_j = s · max(0, Σtr(S_i E_j) / Σtr(S_i E_j S_i E_j) − θ_j)`` of the
    log coordinates (the module's docstring), from the sums of the exact Hessian, with
    ``s`` = :data:`SHIFT_SHARE`.

    Parameters
    ----------
    theta : ndarray (m,)
        θ = [vech_lt(Ψ*), τ*].
    trace_s, trace_ss : ndarray (m,)
        ``Σ_i tr(S_i E_j)`` and ``Σ_i tr(S_i E_j S_i E_j)`` in θ's coordinates (the
        diagonal of ``HessianSums.tr_ss``).

    Returns
    -------
    ndarray (m,)
        Zero where the ratio is not finite and positive (no information: the plain
        log scale).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.asarray(trace_s, dtype=np.float64) / np.asarray(trace_ss, dtype=np.float64)
    shift = np.where(
        np.isfinite(scale), SHIFT_SHARE * (scale - np.asarray(theta, dtype=np.float64)), 0.0
    )
    return np.maximum(shift, 0.0)


def newton_step(
    layout: Layout,
    movable: np.ndarray,
    theta: np.ndarray,
    grad: np.ndarray,
    hess: np.ndarray,
    direction,
    shift: np.ndarray | None = None,
    cholesky: bool = True,
) -> NewtonStep | None:
    """The Newton step in ``v`` from the gradient and Hessian of ℓ in θ.

    Parameters
    ----------
    layout : Layout
        Where the variances are in θ = [vech_lt(Ψ*), τ*].
    movable : ndarray of bool (m,)
        The θ entries that move.
    theta : ndarray (m,)
        The point (all of θ).
    grad, hess : ndarray (k,), (k, k)
        ∂ℓ/∂θ and ∂²ℓ/∂θ² over the ``k`` movable entries.
    direction : callable
        ``direction(H_v, g_v)``: the ascent step for a Hessian and gradient (``None``
        when there is none), :func:`~dmixed.fit.newton_rules.modified_newton_step`.
    shift : ndarray (m,), optional
        The shifts ``c_j`` of the log coordinates (:func:`log_shift`; default 0: the
        plain log scale); only those of the variances are read.
    cholesky : bool
        The diagonal of a wider Ψ* on the log scale and Ψ* + C in modified Cholesky
        coordinates (default); else its entries plain (:func:`log_entries`).

    Returns
    -------
    NewtonStep or None
        ``None`` where ``direction`` gives none.

    Notes
    -----
    With ``J = ∂θ/∂v``: ``g_v = J'g`` and ``H_v = J'HJ + Σ_k g_k ∂²θ_k/∂v²``.  On the log
    scale ``∂θ_j/∂v_j = ∂²θ_j/∂v_j² = θ_j + c_j``; the block's derivatives are those of
    :func:`_block_chain_rule`.
    """
    variance = log_entries(layout, cholesky)
    point = np.asarray(theta, dtype=np.float64)[movable]
    log = variance[movable] & (point > 0.0)
    full_shift = np.zeros(layout.n_params) if shift is None else np.asarray(shift, np.float64)
    c = np.where(log, full_shift[movable], 0.0)
    block = _block_positions(layout, movable, log) if cholesky else np.zeros((0, 0), np.intp)
    if point.size <= SMALL_STEP_MAX:
        return _small_newton_step(point, log, c, block, grad, hess, direction)
    single = log.copy()  # the log entries outside the block
    single[np.diagonal(block)] = False
    x = point + c
    jac = np.diag(np.where(single, x, np.where(log, 0.0, 1.0)))
    second = np.diag(np.where(single, x * grad, 0.0))  # Σ_k g_k ∂²θ_k/∂v²
    factors = None
    if block.size:
        try:
            factors = _factors(point, c, block)
        except np.linalg.LinAlgError:
            block = np.zeros((0, 0), np.intp)  # not positive definite: entries plain
            jac = np.diag(np.where(log, x, 1.0))
            second = np.diag(np.where(log, x * grad, 0.0))
        else:
            block_jac, block_second = _block_chain_rule(point, grad, block, factors)
            inside = np.zeros(point.size, bool)
            inside[block.ravel()] = True
            sel = np.ix_(inside, inside)
            jac[sel] = block_jac[sel]
            second[sel] = block_second[sel]
    g_v = jac.T @ grad
    h_v = jac.T @ hess @ jac + second
    h_v = 0.5 * (h_v + h_v.T)
    delta = direction(h_v, g_v)
    if delta is None:
        return None
    longest = float(np.max(np.abs(delta[log]), initial=0.0))
    if longest > MAX_LOG_STEP:
        delta = delta * (MAX_LOG_STEP / longest)
    if factors is None:
        origin = block_shift = np.zeros(0)
    else:
        origin, block_shift = _coordinates(point, log, c, block, factors), factors[2]
    return NewtonStep(point, log, delta, 0.5 * float(g_v @ delta), c, block, origin, block_shift)


def _small_newton_step(
    point: np.ndarray,
    log: np.ndarray,
    c: np.ndarray,
    block: np.ndarray,
    grad: np.ndarray,
    hess: np.ndarray,
    direction,
) -> NewtonStep | None:
    """:func:`newton_step` for few movable entries: the entries of ``J`` and of the
    second-derivative term made one by one in Python floats, with the arithmetic of
    :func:`_block_chain_rule` (the same products, each ``tr(G X)`` summed in numpy's
    order, :func:`_numpy_sum`), the factorization, the products ``J'g``, ``J'HJ``,
    the direction and the logarithms in numpy: the same numbers bit for bit
    (:data:`SMALL_STEP_MAX`).

    ``point``, ``log``, ``c`` and ``block`` are those :func:`newton_step` made: the
    movable θ, which of them are on the (shifted) log scale, their shifts and the
    block's positions.
    """
    k = point.size
    pt, lg, cc, g = point.tolist(), log.tolist(), c.tolist(), grad.tolist()
    x = [pt[i] + cc[i] for i in range(k)]
    blk = block.tolist()
    factors = _small_factors(pt, cc, blk) if blk else None
    if factors is None:
        blk = []
    q = len(blk)
    in_block = [False] * k
    for row in blk:
        for j in row:
            in_block[j] = True
    jac = [[0.0] * k for _ in range(k)]
    second = [[0.0] * k for _ in range(k)]
    for i in range(k):
        if not in_block[i]:
            jac[i][i] = x[i] if lg[i] else 1.0
            second[i][i] = x[i] * g[i] if lg[i] else 0.0
    if factors is not None:
        lmat, d, s = factors
        cells = [(e, f) for e in range(q) for f in range(q)]  # row-major, as numpy sums
        gmat = [0.5 * g[blk[e][f]] + (0.5 * g[blk[e][e]] if e == f else 0.0) for e, f in cells]
        # ∂M over each coordinate (a, b), row-major: x_b L_b L_b' or d_b (e_a L_b' + L_b e_a')
        firsts = {}
        for b in range(q):
            xb = d[b] + s[b]
            col = [lmat[e][b] for e in range(q)]
            firsts[b, b] = [xb * (col[e] * col[f]) for e, f in cells]
            for a in range(b + 1, q):
                firsts[a, b] = [
                    d[b] * ((col[f] if e == a else 0.0) + (col[e] if f == a else 0.0))
                    for e, f in cells
                ]
        for (a, b), dm in firsts.items():
            for e in range(q):
                for f in range(e + 1):
                    jac[blk[e][f]][blk[a][b]] = dm[e * q + f]
        for b in range(q):
            ratio = (d[b] + s[b]) / d[b]
            for a in range(b, q):
                for cb in range(b, q):
                    if a == b and cb == b:
                        m2 = firsts[b, b]
                    elif a == b or cb == b:
                        m2 = [v * ratio for v in firsts[a + cb - b, b]]
                    else:
                        m2 = [
                            d[b]
                            * (
                                (1.0 if e == a and f == cb else 0.0)
                                + (1.0 if e == cb and f == a else 0.0)
                            )
                            for e, f in cells
                        ]
                    second[blk[a][b]][blk[cb][b]] = _numpy_sum(
                        [gv * mv for gv, mv in zip(gmat, m2, strict=True)]
                    )
    jac_arr = np.array(jac)
    g_v = jac_arr.T @ grad
    h_v = jac_arr.T @ hess @ jac_arr + np.array(second)
    h_v = 0.5 * (h_v + h_v.T)
    delta = direction(h_v, g_v)
    if delta is None:
        return None
    longest = max(
        (abs(v) for v, is_log in zip(delta.tolist(), lg, strict=True) if is_log), default=0.0
    )
    if longest > MAX_LOG_STEP:
        delta = delta * (MAX_LOG_STEP / longest)
    rise = 0.5 * float(g_v @ delta)
    if factors is None:
        empty = np.zeros(0)
        return NewtonStep(point, log, delta, rise, c, np.zeros((0, 0), np.intp), empty, empty)
    lmat, d, s = factors
    # v: log(θ + c) on the log scale outside the block, log(d + s) at its variances,
    # L at its covariances, θ elsewhere (one numpy log, as _coordinates takes them)
    args = [x[i] if lg[i] else 1.0 for i in range(k)]
    for b in range(q):
        args[blk[b][b]] = d[b] + s[b]
    logs = np.log(args).tolist()
    origin = [logs[i] if lg[i] else pt[i] for i in range(k)]
    for b in range(q):
        origin[blk[b][b]] = logs[blk[b][b]]
        for a in range(b + 1, q):
            origin[blk[a][b]] = lmat[a][b]
    return NewtonStep(point, log, delta, rise, c, block, np.array(origin), np.array(s))


def _small_factors(
    pt: list[float], cc: list[float], blk: list[list[int]]
) -> tuple[list[list[float]], list[float], list[float]] | None:
    """:func:`_factors` of the block ``blk`` of the movable θ ``pt`` shifted by ``cc``
    (lists; the Cholesky factor by numpy, the rest in floats with its arithmetic);
    ``None`` where it is not positive definite."""
    q = len(blk)
    mat = [[pt[blk[a][b]] + (cc[blk[a][a]] if a == b else 0.0) for b in range(q)] for a in range(q)]
    try:
        chol = np.linalg.cholesky(np.array(mat)).tolist()
    except np.linalg.LinAlgError:
        return None
    root = [chol[j][j] for j in range(q)]
    d = [r * r for r in root]
    lmat = [[chol[a][b] / root[b] for b in range(q)] for a in range(q)]
    s = [SHIFT_SHARE * max(mat[j][j] - d[j], 0.0) for j in range(q)]
    return lmat, d, s


def _numpy_sum(values: list[float]) -> float:
    """``numpy.sum`` of a contiguous float64 array of up to 128 ``values``, in its order
    of additions (pairwise: eight running sums from eight values on, combined as a
    tree, then the rest one by one; one by one below eight), so that a sum made here
    equals numpy's bit for bit."""
    n = len(values)
    if n < 8:
        total = 0.0
        for v in values:
            total += v
        return total
    acc = values[:8]
    i = 8
    while i + 8 <= n:
        for j in range(8):
            acc[j] += values[i + j]
        i += 8
    total = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
    for v in values[i:]:
        total += v
    return total
