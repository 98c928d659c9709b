"""Starting values for the covariance parameters from moment equations.

The default start (Ψ* = I, τ* = 1, as in statsmodels) can be far from the optimum, and
a quasi-Newton method then spends most of its evaluations learning the curvature.
This module solves the moment equations of the model at the OLS fit (Rao's MINQUE with
a zero prior covariance, "MIVQUE0"): cheap, consistent, and usually close enough that
the exact Newton steps of :mod:`dmixed.fit.optimize` converge from it directly.

With ``c_i = Z̃_i'(y_i − X_i β̂)`` at the OLS estimate ``β̂`` and ``A_i = Z̃_i'Z̃_i``, the
model ``Var(y_i) = σ²(I + Z̃_i B* Z̃_i')`` gives, up to terms of relative order p/G from
estimating β,

    E[Σ_i c_i c_i'] = Σ_i A_i D A_i + σ² Σ_i A_i,        D = σ² B* = Σ_k u_k E_k
    E[RSS]          = tr(D Σ_i A_i) + σ² (n − p)

(``E_k`` the basis of the plain parametrization, ``u_k = σ² θ_k``).  Projecting the
first equation on every ``E_j`` (trace inner product) gives ``m + 1`` linear equations
in ``(u, σ²)``:

    Σ_k u_k Σ_i tr(E_j A_i E_k A_i) + σ² tr(E_j Σ_i A_i) = tr(E_j Σ_i c_i c_i')
    Σ_k u_k tr(E_k Σ_i A_i)         + σ² (n − p)         = RSS

All sums over groups come from one engine round trip (:class:`dmixed.kernels.MomentSums`).
Where the per-group statistics are held in this process and the random effects have two
or more coordinates, the equations are solved once more with each group weighted at that
first estimate (:func:`weighted_moment_start`: one step of MINQUE from it), a start nearer
the optimum by about one Newton step for a few vector operations over the groups.
The start a user gives (``start_params``) is read here too (:func:`start_packed`).
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .. import kernels
from ..design.arrays import unboxed
from ..errors import DataError, SpecError, StartError
from ..kernels import MomentSums, small_linalg
from ..stats import GlobalStats, Layout
from ..stats.layout import symmetric_indices
from ..stats.statistics import RANK_TOL
from .coordinates import weight_factor
from .lean import lean_steps
from .newton_ahead import FirstNewtonPoint, NewtonSettings, ObjectiveParts
from .objective import value_loglike
from .profiled import ProfiledObjective

logger = logging.getLogger("dmixed")

#: Relative floor of the starting variances: eigenvalues of Ψ* and τ* below
#: ``START_FLOOR · max(1/k, largest estimate)`` are raised to it, so that the start is
#: strictly inside the parameter space (a moment estimate can be negative); ``k`` the
#: weights' unit (:func:`~dmixed.fit.coordinates.weight_factor`: weights ``c·w`` make
#: every relative variance ``c`` times smaller).
START_FLOOR = 1e-3


class _Shared(NamedTuple):
    """What :func:`moment_start` and :func:`weighted_moment_start` both read, made
    once (:func:`_shared`): the OLS residuals' weights ``w = [−β̂; 1]``, their residual
    sum of squares, the basis, ``tr(E_j Σ_i A_i)`` and ``1/k`` (the weights' unit,
    :func:`~dmixed.fit.coordinates.weight_factor`)."""

    w: np.ndarray
    rss: float
    basis: np.ndarray
    tr_a: np.ndarray
    inv_k: float


def _shared(mom: MomentSums, glob: GlobalStats, layout: Layout) -> _Shared | None:
    """:class:`_Shared` of these sums; None where the OLS equations are singular."""
    p = glob.k_fe
    xyxy = glob.xyxy
    w = np.empty(p + 1)
    w[p] = 1.0
    if p:
        try:
            w[:p] = -small_linalg.solve(xyxy[:p, :p], xyxy[:p, p])
        except np.linalg.LinAlgError:
            return None
    basis = layout.basis()  # (m, r, r)
    return _Shared(
        w,
        float(w @ xyxy @ w),
        basis,
        np.einsum("jab,ba->j", basis, mom.zz),
        1.0 / weight_factor(glob),
    )


def moment_start(
    mom: MomentSums, glob: GlobalStats, layout: Layout, shared: _Shared | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """Moment estimates ``(Ψ*, τ*)`` (relative to σ²), or ``None`` when they say nothing.

    ``None`` when the equations are singular, the residual variance estimate is not
    positive, or no variance is estimated positive (then the default start is as good).
    ``shared``: what :func:`_shared` makes of these sums, where made already.
    """
    if shared is None:
        shared = _shared(mom, glob, layout)
        if shared is None:
            return None
    w, rss, basis, tr_a, inv_k = shared
    cc = np.einsum("axby,x,y->ab", mom.zxy_zxy, w, w)  # Σ c_i c_i'
    top = np.einsum("jab,ba->j", basis, cc)
    return _bordered_estimate(moment_gram(mom, basis), tr_a, tr_a, top, rss, glob, layout, inv_k)


def _bordered_estimate(
    gram: np.ndarray,
    column: np.ndarray,
    row: np.ndarray,
    top: np.ndarray,
    rss: float,
    glob: GlobalStats,
    layout: Layout,
    inv_k: float,
):
    """The moment equations of :func:`moment_start` and :func:`weighted_moment_start`
    solved: ``[[gram, column], [row, n − p]] [θσ²; σ²] = [top; rss]``, then
    :func:`_floored` of ``θ``; None where the system is singular, a solution is not
    finite or σ² is not positive."""
    m = gram.shape[0]
    lhs = np.empty((m + 1, m + 1))
    lhs[:m, :m] = gram
    lhs[:m, m] = column
    lhs[m, :m] = row
    lhs[m, m] = glob.n - glob.k_fe
    rhs = np.empty(m + 1)
    rhs[:m] = top
    rhs[m] = rss
    try:
        sol = small_linalg.solve(lhs, rhs)
    except np.linalg.LinAlgError:
        return None
    sigma2 = float(sol[m])
    if not (sigma2 > 0 and all(map(math.isfinite, sol.tolist()))):
        return None
    return _floored(sol[:m] / sigma2, layout, inv_k)


def _floored(theta: np.ndarray, layout: Layout, inv_k: float):
    """``(Ψ*, τ*)`` of the plain-packed moment estimate ``theta``, every variance
    raised to :data:`START_FLOOR` of the largest (:func:`moment_start`); None where
    no variance is estimated positive.  ``inv_k``: ``1/k``, the weights' unit."""
    psi, tau = _unpacked_plain(theta, layout)
    if layout.k_re:
        vals, vecs = small_linalg.eigh(psi)
        if _above_floor(vals, tau, inv_k):  # no estimate raised: the floor's bits unread
            psi = (vecs * vals) @ vecs.T
            return 0.5 * (psi + psi.T), tau
    estimates = np.concatenate([small_linalg.eigvalsh(psi), tau])
    if not (estimates.size and estimates.max() > 0):
        return None
    floor = START_FLOOR * max(inv_k, float(estimates.max()))
    if layout.k_re:
        psi = (vecs * np.maximum(vals, floor)) @ vecs.T
        psi = 0.5 * (psi + psi.T)
    tau = np.maximum(tau, floor)
    return psi, tau


def weighted_moment_start(
    psi0: np.ndarray,
    chunks,
    mom: MomentSums,
    glob: GlobalStats,
    layout: Layout,
    shared: _Shared | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """The moment estimates of :func:`moment_start` made again with each group weighted
    at the first estimate ``psi0`` (Ψ*₀): one step of MINQUE with the prior ``Ψ*₀``
    (Rao 1972), i.e. of Fisher scoring from ``Ψ*₀`` with β held at the OLS estimate;
    ``(Ψ*, τ*)`` as :func:`moment_start` gives them (``τ*`` empty), or None where the
    equations say nothing.  For random effects without variance components, from the
    per-group statistics held in this process: ``chunks`` of entry-major
    ``(Z̃_i'Z̃_i (r, r, G_c), Z̃_i'[X_i y_i] (r, k, G_c))``.

    The unweighted equations of :func:`moment_start` weight each group's
    ``c_i = Z̃_i'r_i`` (OLS residuals ``r_i``) as if ``Ψ* = 0`` (MIVQUE0), which gives
    the groups of large ``A_i = Z̃_i'Z̃_i`` far too much weight where ``A_i Ψ*`` is not
    small.  Weighting them by ``M_i = (I + A_i Ψ*₀)⁻¹`` (under ``Ψ*₀``,
    ``Cov(c_i) = σ² (I + A_i Ψ*₀) A_i``: ``M_i`` is its inverse up to ``σ² A_i``),
    ``u_i = M_i c_i`` has

        E[Σ u_i u_i'] = Σ S_i D S_i + σ² Σ (S_i − S_i Ψ*₀ S_i),    S_i = M_i A_i

    (``D = σ² Ψ*``; ``S_i`` is ``Z̃_i'V*_i⁻¹Z̃_i`` at ``Ψ*₀``), whose projections on
    the basis ``E_j`` replace the first ``m`` equations; the last (the residual sum of
    squares) is kept.  The multivariate meta-analysis counterpart is the two-step
    method of moments with weights from a first estimate (DerSimonian & Kacker 2007;
    Jackson, White & Riley 2013).  ``shared``: what :func:`_shared` makes of these
    sums (the OLS fit, the last equation's coefficients), where made already.
    """
    if shared is None:
        shared = _shared(mom, glob, layout)
        if shared is None:
            return None
    w, rss, basis, tr_a, inv_k = shared
    r = layout.r
    ss = np.zeros((r * r, r * r))  # Σ S_i ⊗ S_i, laid out as MomentSums.zz_zz of A_i
    s_sum = np.zeros((r, r))
    uu = np.zeros((r, r))
    for zz, zxy in chunks:
        c = np.einsum("akg,k->ag", zxy, w)  # c_i (r, G)
        s_rows = _weighted_rows_2(zz, psi0) if r == 2 else _weighted_rows(zz, psi0)
        # u_i = M_i c_i = c_i − S_i Ψ*₀ c_i  (M_i = I − S_i Ψ*₀)
        pc = psi0 @ c
        u = c - np.einsum("abg,bg->ag", s_rows.reshape(r, r, -1), pc)
        ss += s_rows @ s_rows.T
        s_sum += s_rows.sum(axis=1).reshape(r, r)
        uu += u @ u.T
    # Σ S_i Ψ*₀ S_i from Σ S_i ⊗ S_i: no other pass over the groups
    ss4 = ss.reshape(r, r, r, r)
    sps_sum = np.einsum("acdb,cd->ab", ss4, psi0)
    gram = np.einsum("jab,kcd,bcda->jk", basis, basis, ss4)
    column = np.einsum("jab,ba->j", basis, s_sum - sps_sum)
    top = np.einsum("jab,ba->j", basis, uu)
    return _bordered_estimate(gram, column, tr_a, top, rss, glob, layout, inv_k)


def _weighted_rows_2(zz: np.ndarray, psi0: np.ndarray) -> np.ndarray:
    """``S_i = (I + A_i Ψ*₀)⁻¹ A_i`` of two coordinates, entry-major (4, G) (entries
    (0,0), (0,1), (1,0), (1,1)), from entry-major ``A_i`` (2, 2, G): with ``B = Ψ*₀``,
    ``S = (A + det(A) adj(B)) / d`` and ``d = det(I + A B) = 1 + tr(A B) + det(A)
    det(B)`` (the closed form of :mod:`dmixed.kernels.dense2`), exactly symmetric."""
    (b00, b01), (_, b11) = psi0.tolist()
    det_b = b00 * b11 - b01 * b01
    u00, u01, u11 = zz[0, 0], zz[0, 1], zz[1, 1]
    # the operations of the closed form in its order, into buffers made once (an
    # addition's operands swapped are the same bits): no temporary per operation
    out = np.empty((4, u00.shape[0]))
    det_u = u00 * u11
    det_u -= np.multiply(u01, u01, out=out[0])
    np.maximum(det_u, 0.0, out=det_u)
    d = b00 * u00
    d += 1.0
    d += np.multiply(2.0 * b01, u01, out=out[0])
    d += np.multiply(b11, u11, out=out[0])
    d += np.multiply(det_b, det_u, out=out[0])
    inv_d = np.divide(1.0, d, out=d)
    s00, s01, s10, s11 = out
    np.subtract(u01, np.multiply(b01, det_u, out=s01), out=s01)
    s01 *= inv_d
    s10[:] = s01
    np.add(np.multiply(b11, det_u, out=s00), u00, out=s00)
    s00 *= inv_d
    np.add(np.multiply(b00, det_u, out=s11), u11, out=s11)
    s11 *= inv_d
    return out


def _weighted_rows(zz: np.ndarray, psi0: np.ndarray) -> np.ndarray:
    """:func:`_weighted_rows_2` of any width ``r``: ``S_i`` (r², G) entry-major, from
    batched solves of ``(I + A_i Ψ*₀) S_i = A_i`` (similar to ``I + Ψ*₀^½ A_i Ψ*₀^½``:
    never singular), symmetrized."""
    r = zz.shape[0]
    a = np.moveaxis(zz, -1, 0)  # (G, r, r)
    s = np.linalg.solve(np.eye(r) + a @ psi0, a)
    s = 0.5 * (s + np.swapaxes(s, 1, 2))
    return np.ascontiguousarray(s.reshape(-1, r * r).T)


def _unpacked_plain(theta: np.ndarray, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """``layout.unpack(theta, use_sqrt=False)``, the same numbers, without its checks
    (``theta`` is of the layout's length here)."""
    # + 0.0: unpack adds each entry to a zero, which turns a −0 into +0
    return theta[symmetric_indices(layout.k_re)] + 0.0, theta[layout.k_re2 :]


#: The share by which every estimate must exceed the floor for :func:`_above_floor`:
#: far above the difference (a few units of rounding of the largest) between the
#: eigenvalues of ``np.linalg.eigh`` and those of ``np.linalg.eigvalsh`` (another LAPACK
#: path), from whose largest :func:`moment_start` makes the floor.
_FLOOR_MARGIN = 1e-6


def _above_floor(vals: np.ndarray, tau: np.ndarray, inv_k: float) -> bool:
    """Whether every eigenvalue ``vals`` of Ψ* (``np.linalg.eigh``'s) and every ``τ*``
    is clearly above :func:`moment_start`'s floor ``START_FLOOR · max(1/k, largest)``:
    then none is raised to it, and the floor (its largest estimate from
    ``np.linalg.eigvalsh``) need not be made."""
    values = vals.tolist() + tau.tolist()  # finite (the equations' solution is)
    top, low = max(values), min(values)
    return low > START_FLOOR * max(inv_k, top) * (1.0 + _FLOOR_MARGIN)


def moment_gram(mom: MomentSums, basis: np.ndarray) -> np.ndarray:
    """``Σ_i tr(E_j A_i E_k A_i)`` (m × m) for the basis ``E`` (m, r, r): the moment
    equations' matrix, ``Σ_i ⟨A_i E_j A_i, E_k⟩``; for two variance components ``l``,
    ``l'`` (``E_l`` selecting their slots) ``Σ_i ‖W_il'W_il'‖²_F`` (Frobenius)."""
    # Σ_i tr(E_j A_i E_k A_i) = Σ E_j[a,b] E_k[c,d] Σ_i A_i[b,c] A_i[d,a]
    return np.einsum("jab,kcd,bcda->jk", basis, basis, mom.zz_zz)


def check_distinct_component_values(
    stats, vc_names: list[str], group_name: str, re_names: list[str]
) -> None:
    """Refuse a variance component whose design is equal (or proportional) in value, in
    every group, to that of another component or of one random-effects column, whatever
    their columns' names: only ``τ_l + c τ_l'`` (or ``Ψ_aa + c τ_l``) is identified then,
    and a fit would split it arbitrarily (the data's counterpart of
    :func:`dmixed.design.build.check_distinct_components`, which compares names).

    A component ``l`` enters the model only through ``M_il = W_il W_il'`` (the
    covariance ``σ² (I + Z_i Ψ* Z_i' + Σ_l τ*_l M_il)``), a random-effects column ``a``
    through ``Ψ_aa`` with ``M_ia = z_ia z_ia'`` (a component of one level per group is
    the random intercept's ``1 1'``).  Two trade their variances at one likelihood
    exactly when ``M_ik = c M_ij`` in every group with one ``c > 0``, i.e. when the two
    (stacked over groups) have a Frobenius correlation of one:

        ρ = F_jk / sqrt(F_jj F_kk),    F_jk = Σ_i ⟨M_ij, M_ik⟩,

    by Cauchy–Schwarz (the columns' order and labels within each group do not matter:
    one factor under two names, relabelled, or a numeric ``exog_vc`` matrix given
    twice are all caught).  ``F`` is the moment equations' matrix
    (:func:`moment_gram`) in the rows of the ``Ψ_aa`` and the components, from the
    moment sums the start reads anyway (no data pass; ``engine.moments``), or, where the
    fit's layout (:attr:`~dmixed.stats.FittedStatistics.fit_layout`) is wider than
    ``kernels.MOMENT_MAX_R``, from the padded statistics (``engine.frobenius_gram``,
    ``G r²``: in this process, or one map over the blocks held on a cluster, made only
    there since the moment sums are ``G r⁴``); ``1 − ρ`` below
    :data:`~dmixed.stats.statistics.RANK_TOL` (scale-free) is one.  Decided for every
    layout where the components are held structured or crossed (up to
    ``MOMENT_MAX_R − q`` components) and for every padded one.  Wider structured or
    crossed layouts (no padded slots to tell by: ``frobenius_gram`` absent or ``None``)
    are fitted, and the fit warns of unidentified parameters instead
    (:mod:`dmixed.results.identification`).

    Raises
    ------
    DataError
        Naming both components, or the component and the random effect.
    """
    layout = stats.fit_layout
    q, d = layout.k_re, layout.k_vc
    if d == 0 or q + d < 2 or (d == 1 and _rank_two_somewhere(stats)):
        return
    if layout.r <= kernels.MOMENT_MAX_R:
        gram = moment_gram(stats.engine.moments(), layout.basis())
        rows, cols = layout.tril()
        rows_used = np.concatenate([np.flatnonzero(rows == cols), layout.k_re2 + np.arange(d)])
        f = gram[np.ix_(rows_used, rows_used)]
    else:
        frobenius = getattr(stats.engine, "frobenius_gram", None)
        f = None if frobenius is None else frobenius(q, layout.slot_component)
        if f is None:  # components held structured, too many for the moment sums: the fit warns
            return
    norm = np.sqrt(np.maximum(np.diag(f), 0.0))
    for b in range(q, q + d):
        for a in range(b):
            if norm[a] > 0 and norm[b] > 0 and 1.0 - f[a, b] / (norm[a] * norm[b]) < RANK_TOL:
                raise DataError(_trade_message(a, b, q, vc_names, re_names, group_name))


def _rank_two_somewhere(stats) -> bool:
    """Whether the only variance component has a block of rank two in some group, as
    told without a pass over the statistics: the engine holds it structured (its
    ``collapsed_vc``: the component's block of ``Z̃_i'Z̃_i`` diagonal in every group,
    :mod:`dmixed.engines.vc_local`, or the diagonal block of
    :mod:`dmixed.engines.vc_crossed`) and its slot table ``vc_slot_cols[0]`` (on the
    driver) gives some group two slots.

    A single component can trade its variance only with a random-effects column
    ``a``, and only where ``M_il = c z_ia z_ia'`` in every group: a matrix of rank at
    most one.  A slot is a column with an entry that is not zero in the group
    (:func:`~dmixed.stats.slots.present_pairs`), so two slots of a diagonal block are
    two positive entries of ``W_il'W_il``: ``M_il`` has rank two there, and the check
    could find nothing; it is then skipped (with ``start_params`` it was the fit's only
    moment-sums pass: a round trip on a cluster).  Two slots alone do not tell: two
    equal (or proportional) columns, of ``exog_vc`` given as arrays or of a formula
    (``0 + x + I(2*x)``), are of rank one, and are checked."""
    slot_cols = stats.vc_slot_cols
    if len(slot_cols) != 1 or not getattr(stats.engine, "collapsed_vc", False):
        return False
    table = np.asarray(slot_cols[0])
    return bool(table.ndim == 2 and table.shape[1] >= 2 and ((table >= 0).sum(axis=1) >= 2).any())


def _trade_message(a: int, b: int, q: int, vc_names, re_names, group_name: str) -> str:
    """What :func:`check_distinct_component_values` says of the directions ``a < b``
    (the first ``q`` the random-effects columns, then the components)."""
    fix = 'pass check_nobs="ignore" (command line: --check-nobs ignore) to fit anyway'
    if a >= q:
        return (
            f"variance components {vc_names[a - q]!r} and {vc_names[b - q]!r} have equal "
            f"(or proportional) columns in every group of {group_name!r}, under different "
            "names: their variances cannot be told apart (only their sum is identified); "
            f"drop one of them, or {fix}"
        )
    intercept = re_names[a] == group_name
    what = "the random intercept" if intercept else "the random effect"
    example = "; e.g. one level per group" if intercept else ""
    return (
        f"variance component {vc_names[b - q]!r} has, in every group of {group_name!r}, "
        f"the covariance of {what} {re_names[a]!r} (or a multiple of it{example}): their "
        "variances cannot be told apart (only their sum is identified); drop the "
        f"component or that random effect, or {fix}"
    )


def moment_start_packed(
    moments: Callable[[], MomentSums],
    glob: GlobalStats,
    layout: Layout,
    block: object = None,
    collapsed: Callable[[int, np.ndarray], MomentSums | None] | None = None,
) -> np.ndarray | None:
    """:func:`moment_start` packed for the optimizer (square-root packing), weighted
    once (:func:`weighted_moment_start`) where ``block``, the engine's per-group
    statistics, is an in-process :class:`~dmixed.kernels.StatsBlock` and the random
    effects have at least :data:`WEIGHTED_MIN_Q` coordinates and no variance component
    (:func:`_weighted_chunks`); ``None`` where it is not used: no covariance parameter,
    a random design wider than ``kernels.MOMENT_MAX_R`` whose moment sums cannot be
    made per component (:func:`collapsed_layout`), or estimates that say nothing.
    ``moments`` makes the engine round trip (``engine.moments``), called only when the
    estimates are used; ``block`` anything else (a cluster's engine holds none) leaves
    the estimates unweighted.  ``collapsed`` (``engine.collapsed_moments``: ``q`` and
    the layout's ``slot_component`` to the sums of one slot per component, ``G r²``,
    or None) replaces ``moments`` where the padded design is wider than
    ``kernels.MOMENT_MAX_R``: the same equations (a component's direction is the
    projection on its slots), so that a fit of crossed components held padded starts
    from moments and takes Newton steps as a structured one does."""
    if layout.n_params == 0:
        return None
    if layout.r > kernels.MOMENT_MAX_R:
        narrow = collapsed_layout(layout)
        if narrow is None or collapsed is None:
            return None
        made = collapsed(layout.k_re, layout.slot_component)
        if made is None:
            return None
        mom, layout = made, narrow
    else:
        mom = moments()
    shared = _shared(mom, glob, layout)
    if shared is None:
        return None
    estimate = moment_start(mom, glob, layout, shared)
    if estimate is None:
        return None
    chunks = _weighted_chunks(block, layout)
    if chunks is not None:
        weighted = weighted_moment_start(estimate[0], chunks, mom, glob, layout, shared)
        estimate = weighted or estimate
    return _packed_sqrt(*estimate, layout)


def engine_moment_start(engine, glob: GlobalStats, layout: Layout) -> np.ndarray | None:
    """:func:`moment_start_packed` from an engine's statistics: its ``moments``, its
    per-group ``block`` and its ``collapsed_moments`` where it has them.  The one place
    a fit's start is taken from an engine, so that a model's fit and a bootstrap
    replicate's refit of a wide padded design start from the same moment estimate."""
    return moment_start_packed(
        engine.moments,
        glob,
        layout,
        getattr(engine, "block", None),
        getattr(engine, "collapsed_moments", None),
    )


def collapsed_layout(layout: Layout) -> Layout | None:
    """The layout of one slot per variance component of ``layout`` (the coordinates of
    ``engine.collapsed_moments``: the same parameters, the same packing), or None where
    it is no narrower than ``layout`` or still wider than ``kernels.MOMENT_MAX_R``."""
    narrow = Layout(layout.k_re, (1,) * layout.k_vc)
    if narrow.r >= layout.r or narrow.r > kernels.MOMENT_MAX_R:
        return None
    return narrow


def _packed_sqrt(psi: np.ndarray, tau: np.ndarray, layout: Layout) -> np.ndarray:
    """``layout.pack(psi, tau, use_sqrt=True)``, the same numbers, its Cholesky factor
    through :mod:`~dmixed.kernels.small_linalg` (the same LAPACK call, or for a 2 × 2
    Ψ* its ``cholesky_2``: the same bits); ``layout.pack`` itself where that fails (its
    factor of a singular Ψ*)."""
    try:
        if psi.shape == (2, 2):  # a random intercept and slope: the factor in floats
            (a00, _), (a10, a11) = psi.tolist()
            lower = np.array(small_linalg.cholesky_2(a00, a10, a11))  # tril order
        else:
            rows, cols = layout.tril()
            lower = small_linalg.cholesky(psi)[rows, cols]
    except np.linalg.LinAlgError:
        return layout.pack(psi, tau, use_sqrt=True)
    return np.concatenate([lower, np.sqrt(np.maximum(tau, 0.0))]) if tau.size else lower


#: The fewest random-effect coordinates for which :func:`moment_start_packed` weights
#: the moment equations (:func:`weighted_moment_start`).  For a random intercept alone
#: the unweighted estimate is the analysis-of-variance estimator, as close to the
#: optimum as the weighted one on balanced groups (RESULTS.md, twelfth session).
WEIGHTED_MIN_Q = 2


def _weighted_chunks(block: object, layout: Layout):
    """The chunks of ``block`` where :func:`weighted_moment_start` refines the moment
    estimates: ``block`` an in-process engine's :class:`~dmixed.kernels.StatsBlock`,
    the random effects of at least :data:`WEIGHTED_MIN_Q` coordinates and no variance
    component; else None (a cluster's engine returns sums only)."""
    if layout.k_vc or layout.k_re < WEIGHTED_MIN_Q:
        return None
    if not isinstance(block, kernels.StatsBlock):
        return None
    chunks = list(block.chunks())
    return chunks if chunks and chunks[0][0].shape[0] == layout.r else None


def start_packed(start_params, layout: Layout, use_sqrt: bool, k_fe: int) -> np.ndarray:
    """The start the user gave, packed as ``use_sqrt`` packs (default: statsmodels'
    Ψ* = I, τ* = 1).

    ``start_params`` is packed covariance parameters, optionally preceded by the
    ``k_fe`` fixed effects (ignored: they are profiled out), or an object with
    statsmodels' ``get_packed(use_sqrt, has_fe)``.

    Raises
    ------
    SpecError
        ``start_params`` of another length, not 1-D, not numbers (text, bools, other
        objects), or with a covariance parameter that is not finite (named by its
        position and value as given).
    """
    if start_params is None:
        return _default_start(layout, use_sqrt).copy()
    if hasattr(start_params, "get_packed"):
        return _finite_start(np.asarray(start_params.get_packed(use_sqrt=use_sqrt, has_fe=False)))
    arr = unboxed(np.asarray(start_params))
    if arr.dtype.kind not in "iuf":  # numpy reads "0.5" as 0.5 and True as 1.0
        raise SpecError(
            f"start_params must be numbers, got values of dtype {arr.dtype}: "
            f"{arr.ravel()[:5].tolist()}"
        )
    if arr.ndim > 1:
        raise SpecError(
            f"start_params must be one value per parameter (1-D), got shape {arr.shape}"
        )
    arr = arr.astype(np.float64).ravel()
    if arr.size == layout.n_params:
        return _finite_start(arr.copy())
    if arr.size == layout.n_params + k_fe:
        return _finite_start(arr[k_fe:].copy(), k_fe)
    raise SpecError(
        f"start_params has {arr.size} values; expected {layout.n_params} covariance "
        f"parameters, optionally preceded by {k_fe} fixed effects"
    )


@functools.lru_cache(maxsize=32)
def _default_start(layout: Layout, use_sqrt: bool) -> np.ndarray:
    """statsmodels' start Ψ* = I, τ* = 1 packed for ``layout`` (made once per layout and
    packing; read-only)."""
    out = layout.pack(np.eye(layout.k_re), np.ones(layout.k_vc), use_sqrt)
    out.flags.writeable = False
    return out


def _finite_start(packed: np.ndarray, offset: int = 0) -> np.ndarray:
    """``packed`` if every value is finite, else a :class:`SpecError` naming the
    positions (in ``start_params`` as given: ``offset`` fixed effects before them) and
    values, before they are mapped to the optimizer's coordinates."""
    bad = np.flatnonzero(~np.isfinite(packed))
    if bad.size:
        where = ", ".join(f"[{i + offset}] = {packed[i]}" for i in bad[:5])
        raise SpecError(
            f"start_params holds covariance parameters that are not finite ({where}); "
            "give finite values or leave start_params out"
        )
    return packed


def choose_start(
    obj: ProfiledObjective,
    start: np.ndarray,
    use_sqrt: bool,
    moment: np.ndarray | None,
    level: int = logging.DEBUG,
    newton_first: bool = True,
    newton: NewtonSettings | None = None,
) -> tuple[np.ndarray, bool]:
    """The start in the objective's packing, and whether it is the moment estimate.

    ``start`` (packed as ``use_sqrt`` packs) is repacked for ``obj``.  The moment
    estimate (square-root packing, as :func:`moment_start_packed` gives it; then ``obj``
    packs so too) replaces it when its likelihood is at least as high: the moment
    equations ignore the uncertainty of β̂ and can mislead on small or odd data.  Both
    likelihoods are logged at ``level``.  With ``newton_first`` (the Newton steps follow
    from a moment start) the two values may be made on whole-block sums
    (:mod:`~dmixed.fit.lean`, whose steps then begin at the evaluation kept there);
    without, the objective's own: a quasi-Newton method from the start reads that
    evaluation, and one made on other sums moves its iterations by more than rounding.
    With ``newton`` (the settings of the Newton steps that follow from a moment start),
    the first of those steps' trial point is chained on the starts' round trip where
    the engine can (:class:`~dmixed.fit.newton_ahead.FirstNewtonPoint`).

    Raises
    ------
    StartError
        The log-likelihood cannot be evaluated at the chosen start (a factorization
        fails or a value is not finite there, or the point is refused as out of float64's
        resolution: :func:`~dmixed.fit.objective.out_of_resolution` of a start, ``Q``
        not resolved); the message says which and what to check.

    Notes
    -----
    Both points are the objective's starts (:meth:`ProfiledObjective.add_start`): there
    ``X'V*⁻¹X``'s factor unresolved does not refuse them, as it refuses every point the
    optimizer moves to.
    """
    layout = obj.layout
    chosen, from_moments = start, False
    # the evaluation at the chosen start where made here (kept by the objective: what
    # its evaluate gives there)
    chosen_ev = None
    if obj.use_sqrt and not use_sqrt:
        chosen = layout.pack(*layout.unpack(start, False), use_sqrt=True)
    # both are starts: ℓ there only anchors the first steps, and X'V*⁻¹X's factor
    # unresolved there does not refuse them (objective.out_of_resolution)
    obj.add_start(chosen)
    if moment is not None:
        obj.add_start(moment)
        lean = lean_steps(obj) if newton_first else None
        if lean is None:
            # one round trip on a cluster, with the Hessian at the moment start (the
            # Newton steps that follow from there begin with it)
            then = None
            if newton is not None and getattr(obj.engine, "step_then", None):
                # where the engine chains the Newton steps' points (a cluster's)
                then = FirstNewtonPoint(ObjectiveParts.of(obj), newton, chosen, moment)
            obj.prefetch([chosen, moment], ahead=1, then=then)
            default_llf = start_value(obj, chosen)
            moment_ev = obj.evaluate(moment)
        else:  # the same values on whole-block sums (dmixed.fit.lean)
            default_llf = lean.value(chosen)
            moment_ev = lean.evaluated(moment)
        moment_llf = moment_ev.llf
        logger.log(
            level,
            "start: moment estimates llf=%.6f, default llf=%.6f",
            moment_llf + obj.llf_offset,
            default_llf + obj.llf_offset,
        )
        if moment_llf >= default_llf:
            chosen, from_moments = moment, True
            if moment_ev.prof is not None:
                chosen_ev = moment_ev
    if chosen_ev is None:
        chosen_ev = obj.evaluate(chosen)
    if not math.isfinite(chosen_ev.llf):
        rejected = getattr(obj, "rejected_for_resolution", None)
        if rejected is not None and np.array_equal(rejected, chosen):
            # refused by out_of_resolution, not undefined: say which, or the user looks
            # for a factorization that did not fail
            why = (
                "the float64 sums cannot resolve it there: the residual sum of squares "
                "is lost to cancellation, as at very large or nearly perfectly "
                "correlated variances"
            )
        else:
            why = "X'V^-1 X is not positive definite in floating point, or a value is not finite"
        raise StartError(
            f"the fit cannot start: the log-likelihood cannot be evaluated at the starting "
            f"covariance parameters {np.round(chosen, 6).tolist()} ({why}); check "
            "start_params if given, else rescale or centre the columns whose values are "
            "large next to their spread"
        )
    return chosen, from_moments


def start_value(obj: ProfiledObjective, packed: np.ndarray) -> float:
    """ℓ at ``packed`` without its score, where the engine gives the value alone
    (``engine.value``: the in-process engine; about half of a step's work at
    ``r = 2``) and does not map several points per round trip (``engine.steps``), else
    :meth:`ProfiledObjective.evaluate`'s ``llf``.

    The same number as ``obj.evaluate(packed).llf`` (the same sums, bit for bit) and the
    same rejections (−inf outside the parameter space, where a factorization fails, ℓ
    is not finite or ``Q`` is not resolved), except that a finite ℓ whose score is not
    finite is not rejected: the start selection compares values only, and the start
    chosen is evaluated in full (and refused if not finite) before the fit starts.
    Counts as one evaluation (``obj.n_evals``) where it makes a round trip, as
    :meth:`~ProfiledObjective.evaluate` counts; not kept in the objective's cache.
    """
    value_of = getattr(obj.engine, "value", None)
    if value_of is None or getattr(obj.engine, "steps", None) is not None:
        # no value alone; or an engine that maps several points at once: the start
        # selection's prefetch evaluated both starts in one round trip (cached)
        return obj.evaluate(packed).llf
    try:
        lam = obj.lam(np.array(packed, dtype=np.float64))
    except np.linalg.LinAlgError:
        return -np.inf  # outside the parameter space: no round trip
    obj.n_evals += 1
    try:
        sums = value_of(lam, obj.layout.k_re)
    except np.linalg.LinAlgError:
        return -np.inf
    return value_loglike(sums, obj.glob, obj.reml)
