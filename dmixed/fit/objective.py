"""The profiled log-likelihood, its score and the Hessian, from summed contributions.

This runs on the driver.  It only sees sums over groups (:class:`~dmixed.kernels.StepSums`,
:class:`~dmixed.kernels.HessianSums`) and the global cross-products ``[X y]'[X y]``, so it
does not care where the statistics live.  Formulas: DESIGN.md §3–5.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from ..kernels import HessianSums, StepSums, small_linalg
from ..stats import GlobalStats

_EPS = float(np.finfo(float).eps)

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
    #: β₀ of :func:`within_pivot` where ``Q`` and β̂ were taken about it, else None
    #: (about zero: :func:`_pivot_form` decides, the resolution figures read it)
    beta0: np.ndarray | None = None
    #: whether ``[X y]'V*⁻¹[X y]`` was made of ``W + between`` (:func:`uses_within`),
    #: not of ``[X y]'[X y] − Σ m_i``, whichever pivot ``Q`` was taken about
    within: bool = False
    #: ``[−β̂; 1]``: ``u_i = H_i w`` is Z̃_i'V*_i⁻¹(y_i − X_i β̂) (read-only; made with the
    #: profile: every score reads it, and a cached property's look-up costs more)
    w: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        out = np.concatenate((-self.beta, [1.0]))  # np.append's numbers, without its call
        out.flags.writeable = False
        self.w = out

    @property
    def scale(self) -> float:
        return self.q / self.fac


def residual_cross_products(step: StepSums, glob: GlobalStats) -> np.ndarray:
    """``[X y]'V*⁻¹[X y]`` (k × k).

    With the within-group cross-products at hand (:func:`uses_within`), as
    ``within + Σ_i F_i'F_i / (U_i (1 + λ_i²U_i))``: a sum of positive (semi-definite)
    parts, nothing of the groups' spread subtracted; :func:`profile` takes ``Q`` about
    the within-group pivot, so what is left is the rounding of ``within`` itself
    (:func:`statistics_resolution`).  Otherwise
    ``[X y]'[X y] − Σ_i m_i``, which loses the digits that the two have in common.
    """
    if uses_within(step, glob):
        t = glob.within + step.between
    else:
        t = glob.xyxy - step.m
    return 0.5 * (t + t.T)


def uses_within(step: StepSums, glob: GlobalStats) -> bool:
    """Whether the profile is taken from the within-group cross-products ``W`` and
    :attr:`StepSums.between <dmixed.kernels.StepSums>`: where the statistics hold
    ``W`` and the random design is one column, the intercept (``between`` in closed
    form), or the sums are the kernels' rank-one forms (``step.rank_one``: the
    intercept and columns constant within the groups, ``V*_i = I + λ_i² e e'`` with
    λ_i² = |Λ'z̄_i|², :meth:`~dmixed.kernels.StatsBlock.use_rank_one`).  An intercept
    with variance components keeps ``W`` unused, and so do sums of a block not told to
    take the rank-one forms: ``[X y]'[X y] − Σ_i m_i`` as before."""
    return glob.within is not None and (step.rank_one or step.s.shape[0] == 1)


def profile(step: StepSums, glob: GlobalStats, reml: bool) -> Profile:
    """GLS fixed effects and residual quadratic form from the step sums.

    ``[X y]'V*⁻¹[X y] = [X y]'[X y] − Σ_i ZXy_i' P_i ZXy_i``; one small Cholesky of
    its ``X`` block gives β̂, ``log|A|`` and ``A⁻¹``.  ``Q`` and β̂ are taken about
    the statistics' pivot (:func:`within_pivot`): ``β̂ = β₀ + A⁻¹g``,
    ``Q = Q(β₀) − g'A⁻¹g`` with ``g = b − Aβ₀``, which equal ``A⁻¹b`` and
    ``c − b'A⁻¹b`` but leave the cancellation of the within-group sums out of every
    evaluation.
    """
    t = residual_cross_products(step, glob)
    p = glob.k_fe
    a = t[:p, :p]
    b = t[:p, p]
    within, pivoted, beta0, q0 = _pivot_form(step, glob, t)
    if p:
        chol = small_linalg.cholesky(a)
        logdet_a = 2.0 * float(np.log(chol.diagonal()).sum())
        chol_inv = small_linalg.inv(chol)
        a_inv = chol_inv.T @ chol_inv
        g = b - a @ beta0
        delta = a_inv @ g
        beta = beta0 + delta
        q = q0 - float(g @ delta)
    else:
        logdet_a, a_inv, beta, q = 0.0, np.zeros((0, 0)), np.zeros(0), q0
    fac = float(glob.n - p) if reml else float(glob.n)
    return Profile(a, b, a_inv, logdet_a, beta, q, fac, beta0 if pivoted else None, within)


@dataclass(frozen=True)
class WithinPivot:
    """What :func:`within_pivot` computes once per statistics (arrays read-only)."""

    beta0: np.ndarray
    #: ``w₀'Ww₀``, ``w₀ = [−β₀; 1]``
    q: float
    w0: np.ndarray
    #: ``|w₀|'|W||w₀|``: the size of the numbers ``q`` is the remainder of
    size: float
    #: ``2 |W_x·| |w₀|`` and ``|W_xx|``: the within parts of :func:`resolution`'s terms in δ
    cross: np.ndarray
    abs_xx: np.ndarray


@functools.lru_cache(maxsize=8)
def _within_pivot(within: bytes, k: int, all_constant: bool) -> WithinPivot:
    w = np.frombuffer(within, dtype=np.float64).reshape(k, k)
    p = k - 1
    # every column constant within the groups: W's X block is rounding alone, which
    # lstsq's relative rcond keeps (no larger singular value to compare it with)
    beta0: np.ndarray = np.zeros(p)
    if p and not all_constant:
        beta0 = np.linalg.lstsq(w[:p, :p], w[:p, p], rcond=1e-10)[0]
    w0 = np.append(-beta0, 1.0)
    abs_w, abs_w0 = np.abs(w), np.abs(w0)
    out = WithinPivot(
        beta0,
        float(w0 @ w @ w0),
        w0,
        float(abs_w0 @ abs_w @ abs_w0),
        2.0 * abs_w[:p, :] @ abs_w0,
        abs_w[:p, :p],
    )
    for arr in (out.beta0, out.w0, out.cross, out.abs_xx):
        arr.flags.writeable = False
    return out


def within_pivot(glob: GlobalStats) -> WithinPivot | None:
    """``β₀`` and ``Q_W(β₀)``: the within-group least-squares coefficients (minimum
    norm: zero on the intercept and on columns constant within groups) and the
    within-group residual form ``w₀'Ww₀``, ``w₀ = [−β₀; 1]``,
    ``W = [X y]'(I − P_1)[X y]`` (:class:`WithinPivot`).

    Computed once per statistics (cached on ``W``'s bytes): the float64 cancellation
    of ``W_yy − 2β'W_xy + β'W_xxβ`` (large when y is nearly linear in X within the
    groups) is then a fixed perturbation of the statistics, the same at every Λ — the
    likelihood stays a smooth function of the parameters, its error a bias of the
    size :func:`statistics_resolution` reports, not noise that makes spurious maxima.
    None without within-group sums.
    """
    if glob.within is None:
        return None
    within = np.ascontiguousarray(glob.within, dtype=np.float64)
    p = within.shape[0] - 1
    # a column constant within the groups (the intercept, a group-level covariate) has
    # within sums of squares of rounding-sized deviations, ε² of its total's size (with
    # prior weights 1e-34 of it, and W_xy ~1e-16: β₀ = 5e14 once, and Q(β₀) − g'A⁻¹g
    # cancelled to 0); ε of its total bounds them
    diagonal = np.diagonal(within)[:p]
    all_constant = bool(p) and bool((diagonal <= _EPS * np.abs(np.diagonal(glob.xyxy)[:p])).all())
    return _within_pivot(within.tobytes(), within.shape[0], all_constant)


def _pivot_form(
    step: StepSums, glob: GlobalStats, t: np.ndarray
) -> tuple[bool, bool, np.ndarray, float]:
    """``(within, pivoted, β₀, w₀'Tw₀)`` with ``T = t`` (:func:`residual_cross_products`):
    ``within`` whether ``T`` was made of ``W + between`` (:func:`uses_within`); β₀ from
    :func:`within_pivot` where it applies and ``Q(β₀) ≤ c`` (``pivoted``), else zero
    (``w₀'Tw₀ = c``, the last entry of ``T``).  The one owner of the form: :func:`profile`
    records both flags in its :class:`Profile`, and :func:`resolution`,
    :func:`statistics_resolution` and :func:`factor_resolution` size ``Q`` by them.

    ``Q = Q(β₀) − g'A⁻¹g`` subtracts ``Q(β₀) − Q = δ'Aδ`` (``δ = β̂ − β₀``), whose
    relative rounding is that of ``A⁻¹g``, up to ``κ(A)·ε``: the pivot nearer to β̂ in
    ``A``'s norm (the smaller ``Q(β₀)``) subtracts less.  The within-group pivot is
    the nearer one where ``W`` pins the slopes down (y nearly linear in X within the
    groups, the case it is for); zero is where one heavily weighted group with a
    covariate nearly constant within it decides ``W``'s slope (β₀ far from β̂ while
    ``A`` is nearly singular along the same direction; benchmarks/RESULTS.md,
    heavy-s54).  Both engines take this rule (it reads the sums only).
    """
    within = uses_within(step, glob)
    pivot = within_pivot(glob) if within else None
    c = float(t[-1, -1])
    if pivot is None:
        return within, False, np.zeros(glob.k_fe), c
    q0 = pivot.q + float(pivot.w0 @ step.between @ pivot.w0)
    if not q0 <= c:
        return within, False, np.zeros(glob.k_fe), c
    return within, True, pivot.beta0, q0


def quadratic_form(step: StepSums, glob: GlobalStats, beta: np.ndarray) -> float:
    """``Q(β) = (y − Xβ)'V*⁻¹(y − Xβ)`` at a given β, about the pivot of
    :func:`profile`: ``Q(β₀) − 2δ'g + δ'Aδ`` with ``δ = β − β₀``, ``g = b − Aβ₀``."""
    t = residual_cross_products(step, glob)
    p = glob.k_fe
    a, b = t[:p, :p], t[:p, p]
    _, _, beta0, q0 = _pivot_form(step, glob, t)
    delta = np.asarray(beta, dtype=np.float64) - beta0
    g = b - a @ beta0
    return q0 - 2.0 * float(delta @ g) + float(delta @ a @ delta)


def profile_weights(step: StepSums, glob: GlobalStats, reml: bool) -> np.ndarray:
    """``w = [−β̂; 1]`` of :func:`profile` (what the Hessian sums are contracted with):
    the same numbers as ``profile(step, glob, reml).w``.

    Raises ``np.linalg.LinAlgError`` where ``X'V*⁻¹X`` is not positive definite.
    """
    return profile(step, glob, reml).w


#: The optimizer rejects a point where :func:`resolution` exceeds this: ℓ is off by
#: about (f/2)·resolution there, rounding that changes from one evaluation to the next,
#: and far out on a ridge that noise makes spurious maxima (σ̂² → 0 with an llf above
#: the true maximum).
RESOLUTION_LIMIT = 1e-5

#: ... and where :func:`statistics_resolution` exceeds this: the rounding of the
#: statistics themselves is then as large as ``Q`` (y exactly linear in X within the
#: groups, up to rounding), and σ̂² → 0 would follow rounding, not data.  Below it the
#: likelihood is a smooth function with a bias of that relative size in σ̂², and the
#: optimizer goes to its maximum (the fit warns with the size).
STATISTICS_RESOLUTION_LIMIT = 0.5


def resolution(step: StepSums, prof: Profile, glob: GlobalStats) -> float:
    """The relative rounding error of ``Q`` (and so of ``σ̂²``) made by this evaluation,
    to its order.

    ``Q = w'([X y]'[X y] − Σ_i m_i)w`` with ``w = [−β̂; 1]`` subtracts numbers of the
    size of ``|w|'|[X y]'[X y]||w|``, each summed over rows and groups in float64 with
    a relative error of about ε: what is left is known to about that size times ε,
    divided by ``Q`` (a typical error, not a worst case: the tests check it against
    extended-precision evaluations).  Near zero for ordinary data (Q is a fair share of
    the total); large when the residual variance is many orders of magnitude below the
    spread of the response within the random effects' reach.  Where
    ``[X y]'V*⁻¹[X y]`` was made of ``W + between`` (:attr:`Profile.within`) the sizes
    are ``|W| + |between|`` instead.  Where ``Q`` is taken about the within-group pivot
    (:attr:`Profile.beta0`, :func:`within_pivot`) an evaluation only adds the
    between-group parts and the small terms in ``δ = β̂ − β₀``; the within-group
    rounding is the statistics' own (:func:`statistics_resolution`).  The form is the
    one :func:`profile` used (:func:`_pivot_form`), not the one the sums allow.
    """
    return _resolution_of(step, prof, glob)


def _resolution_of(
    step: StepSums,
    prof: Profile,
    glob: GlobalStats,
    sizes: np.ndarray | None = None,
    abs_w: np.ndarray | None = None,
) -> float:
    """:func:`resolution`, given :func:`_term_sizes` (``sizes``) and ``|w|`` (``abs_w``)
    where the caller made them (:func:`precision_shares`)."""
    if not prof.q > 0:
        return np.inf
    if prof.beta0 is None:
        w = np.abs(prof.w) if abs_w is None else abs_w
        size = float(w @ (_term_sizes(step, prof, glob) if sizes is None else sizes) @ w)
    else:
        pivot = within_pivot(glob)
        assert pivot is not None  # Profile.beta0 is its β₀
        # Q(β₀) is the cached within part plus w₀'Bw₀; g'A⁻¹g adds terms in δ
        delta = np.abs(prof.beta - prof.beta0)
        u = np.abs(pivot.w0)
        u[:-1] += delta
        size = float(u @ np.abs(step.between) @ u)
        size += float(delta @ (pivot.cross + pivot.abs_xx @ delta))
    return float(np.finfo(float).eps) * size / prof.q


def statistics_resolution(prof: Profile, glob: GlobalStats) -> float:
    """The relative size of the statistics' own rounding in ``Q``: ``ε·|w|'|W||w| / Q``
    with ``W`` the within-group cross-products, where ``Q`` was made of them
    (:attr:`Profile.within`), and ``w = [−β₀; 1]`` about the within-group pivot
    (:func:`within_pivot`, next to β̂ in the directions ``W`` weighs), else
    ``w = [−β̂; 1]`` (``Q`` taken about zero, :func:`_pivot_form`); 0 where ``Q`` was
    made of ``[X y]'[X y] − Σ m_i`` (their share is then in :func:`resolution`).

    The same rounding at every Λ: a bias of about this relative size in σ̂² (and of
    about f/2 times it in ℓ), not noise.  Near 1 the rounding is all of ``Q``.
    """
    if not prof.within:
        return 0.0
    if not prof.q > 0:
        return np.inf
    if prof.beta0 is None:
        assert glob.within is not None  # Profile.within is made of it
        w = np.abs(prof.w)
        return _rounding_floor(float(w @ np.abs(glob.within) @ w), w, glob) / prof.q
    pivot = within_pivot(glob)
    assert pivot is not None  # Profile.beta0 is its β₀
    return _rounding_floor(pivot.size, np.abs(pivot.w0), glob) / prof.q


def _term_sizes(step: StepSums, prof: Profile, glob: GlobalStats) -> np.ndarray:
    """``|W| + |between|`` where ``[X y]'V*⁻¹[X y]`` was made of them
    (:attr:`Profile.within`), else ``|[X y]'[X y]| + |Σ m_i|`` (k × k)."""
    if prof.within:
        assert glob.within is not None  # Profile.within is made of it
        return np.abs(glob.within) + np.abs(step.between)
    return np.abs(glob.xyxy) + np.abs(step.m)


def _rounding_floor(size: float, w: np.ndarray, glob: GlobalStats) -> float:
    """``ε (size + ε |w|'|[X y]'[X y]||w|)`` with ``size = |w|'|W||w|``."""
    eps = float(np.finfo(float).eps)
    # W is summed about each group's rounded mean, off by ~ε·|mean| per row: a floor
    # of ε²·|w|'|[X y]'[X y]||w| under w'Ww, however small W itself (y constant
    # within the groups leaves W_yy of nothing but that floor)
    return eps * (size + eps * float(w @ np.abs(glob.xyxy) @ w))


def unresolved_within_limit(glob: GlobalStats) -> bool:
    """Whether ``Q_W`` — the infimum of ``Q`` as the random intercept's variance grows —
    is within the statistics' rounding (:func:`statistics_resolution` at ``Q = Q_W``
    above :data:`STATISTICS_RESOLUTION_LIMIT`): ℓ then rises without a resolved
    maximum toward σ² → 0, whether or not the optimizer reaches that region."""
    pivot = within_pivot(glob)
    if pivot is None:
        return False
    rounding = _rounding_floor(pivot.size, np.abs(pivot.w0), glob)
    return not pivot.q > 0 or rounding / pivot.q > STATISTICS_RESOLUTION_LIMIT


#: ... and where :func:`pivot_resolution` exceeds this: a pivot of ``A = X'V*⁻¹X`` is
#: then within a tenth of its own rounding of zero, so that whether ``A`` is positive
#: definite at all (whether ℓ is defined there) is rounding, which the extension's
#: sums, numpy's and the general path's decide each their own way (and β̂ is not known
#: to a tenth along that direction), whatever the criterion.
PIVOT_RESOLUTION_LIMIT = 0.1


def _factor_parts(
    step: StepSums,
    prof: Profile,
    glob: GlobalStats,
    sizes: np.ndarray | None = None,
    abs_w: np.ndarray | None = None,
) -> tuple[float, float, float]:
    """``K`` and the two rounding shares of ``Q`` of :func:`factor_resolution`: the
    factor's arithmetic ``κ |δ'Aδ|`` and the sums' through β̂ ``r'|A⁻¹|r`` (all 0
    without fixed effects).  ``sizes`` (:func:`_term_sizes`) and ``abs_w`` (``|w|``):
    where the caller made them (:func:`precision_shares`)."""
    p = prof.beta.shape[0]
    if not p:
        return 0.0, 0.0, 0.0
    # the sizes of the form profile() used (Profile.within), about its pivot
    size = (_term_sizes(step, prof, glob) if sizes is None else sizes)[:p]
    delta = prof.beta if prof.beta0 is None else prof.beta - prof.beta0
    abs_inv = np.abs(prof.a_inv)
    condition = _scaled_condition(prof, abs_inv)
    kappa_share = _EPS * condition * abs(float(delta @ prof.a @ delta))
    r = _EPS * (size @ (np.abs(prof.w) if abs_w is None else abs_w))
    r_share = float(r @ abs_inv @ r)
    # ndarray.sum's own reduction (np.add.reduce over every axis), without its wrapper
    return _EPS * float(np.add.reduce(abs_inv * size[:, :p], axis=None)), kappa_share, r_share


def pivot_resolution(step: StepSums, prof: Profile, glob: GlobalStats) -> float:
    """``K = ε Σ_xy |A⁻¹_xy| s_xy``: the relative rounding of ``|A|`` and of the
    smallest pivot of ``A = X'V*⁻¹X`` from the rounding of its entries
    (:func:`factor_resolution`); 0 without fixed effects."""
    return _factor_parts(step, prof, glob)[0]


def factor_resolution(step: StepSums, prof: Profile, glob: GlobalStats, reml: bool) -> float:
    """The rounding that ``A = X'V*⁻¹X`` and its factor add to ℓ, in the units of
    :func:`resolution` (a relative error of ``Q``; ℓ off by about (f/2) times it).

    Three parts, each ``O(p²)``, with ``s`` the size of the numbers each entry of
    ``[X y]'V*⁻¹[X y]`` is the difference of (``|[X y]'[X y]| + |Σ m_i|``, or where it
    was made of the within-group sums ``|W| + |between|``, :attr:`Profile.within`:
    :func:`resolution`'s sizes), and ``δ = β̂ − β₀`` about the pivot ``Q`` was taken
    about (``β₀`` zero unless :attr:`Profile.beta0`):

    - REML's ``−½ log|A|``: entries of ``A`` off by ``ε s`` move ``log|A|`` by
      ``tr(A⁻¹ δA)``, up to ``K = ε Σ_xy |A⁻¹_xy| s_xy`` (the smallest pivot against
      the rounding of the sums it is made of, :func:`pivot_resolution`); ``K / f`` in
      these units;
    - the factor's own arithmetic: ``A⁻¹`` (``L⁻ᵀL⁻¹``) is off by about
      ``κ = ε Σ_xy |A⁻¹_xy| √(A_xx A_yy)`` relative (the condition of ``A`` scaled to a
      unit diagonal, which the factor's rounding does not see), and with it the part
      ``b'A⁻¹b`` (``g'A⁻¹g = δ'Aδ`` about the pivot, ``δ = β̂ − β₀``) that ``Q`` is the
      remainder of: ``κ |δ'Aδ| / Q``;
    - the sums' rounding through β̂: ``Q`` is stationary in β̂, so ``r = ε s_x·|w|``
      (``w = [−β̂; 1]``) moves it by the second-order ``r'|A⁻¹|r / Q``.

    Below ε times ordinary condition numbers, and beyond 1 where ``A`` is singular to
    its entries' rounding (a random slope and intercept variance of 1e16 at correlation
    −1 makes the fixed intercept and slope indistinguishable), where the extension's
    sums, numpy's and the general path's gave ℓ units apart.  0 without fixed effects;
    ``inf`` where ``Q ≤ 0``.
    """
    if not prof.q > 0:
        return np.inf
    k, kappa_share, r_share = _factor_parts(step, prof, glob)
    q_share = kappa_share + r_share
    if reml:
        q_share += k * prof.q / prof.fac
    return q_share / prof.q


def factor_error(step: StepSums, prof: Profile, glob: GlobalStats, reml: bool) -> float:
    """A bound, in the units of :func:`resolution`, on the rounding that ``A = X'V*⁻¹X``
    and its factor made in ℓ at this evaluation: tighter than
    :func:`factor_resolution`, for the precision warning.

    :func:`factor_resolution` charges ``Q`` with ``κ |δ'Aδ|``: ``A⁻¹`` off by its whole
    condition ``κ`` relative in every direction, which is what a point must pass to be
    accepted.  The evaluation forms ``A⁻¹g`` (``g = b − Aβ₀``, :func:`profile`) as a
    product with ``A⁻¹``, whose rounding reaches ``g'A⁻¹g`` only as
    ``ε |g|'|A⁻¹||g|``: large where ``g`` has large entries that cancel in ``A⁻¹g`` (one
    heavily weighted group deciding ``A``'s weak direction, ``Q`` taken about zero),
    small where ``g`` does not lie along that direction (near-collinear fixed effects,
    where ``κ |δ'Aδ| / Q`` overstates the error by orders of magnitude: the cases are in
    benchmarks/RESULTS.md, heavy-s54).  The sums' rounding through β̂ and REML's
    ``log|A|`` are :func:`factor_resolution`'s.  0 without fixed effects; ``inf`` where
    ``Q ≤ 0``.
    """
    if not prof.q > 0:
        return np.inf
    if not prof.beta.shape[0]:
        return 0.0
    return _factor_error_of(prof, _factor_parts(step, prof, glob), reml)


def _factor_error_of(prof: Profile, parts: tuple[float, float, float], reml: bool) -> float:
    """:func:`factor_error` from :func:`_factor_parts`' ``parts`` (``Q > 0``)."""
    p = prof.beta.shape[0]
    if not p:
        return 0.0
    beta0 = np.zeros(p) if prof.beta0 is None else prof.beta0
    g = np.abs(prof.b - prof.a @ beta0)
    k, _, r_share = parts
    share = _EPS * float(g @ np.abs(prof.a_inv) @ g) + r_share
    if reml:
        share += k * prof.q / prof.fac
    return share / prof.q


def scaled_condition(prof: Profile) -> float:
    """``Σ_xy |A⁻¹_xy| √(A_xx A_yy)``: the condition of ``A = X'V*⁻¹X`` scaled to a unit
    diagonal (:func:`factor_resolution`'s ``κ / ε``); 0 without fixed effects."""
    if not prof.beta.shape[0]:
        return 0.0
    return _scaled_condition(prof, np.abs(prof.a_inv))


def _scaled_condition(prof: Profile, abs_inv: np.ndarray) -> float:
    """:func:`scaled_condition` given ``|A⁻¹|`` (``abs_inv``), of ``p > 0`` fixed
    effects."""
    root = np.sqrt(np.abs(prof.a.diagonal()))
    return float(root @ abs_inv @ root)


#: :func:`resolution_verdict`: ℓ resolved; ``Q`` not resolved (refused everywhere); ``Q``
#: resolved but not ``A = X'V*⁻¹X``'s factor (refused everywhere but at a start)
RESOLVED, UNRESOLVED, FACTOR_UNRESOLVED = 0, 1, 2


def resolution_verdict(step: StepSums, prof: Profile, glob: GlobalStats, reml: bool) -> int:
    """Whether the float64 sums resolve ℓ at the point of ``step`` and ``prof``.

    Returns
    -------
    int
        :data:`UNRESOLVED` where :func:`resolution` exceeds :data:`RESOLUTION_LIMIT`
        (``Q ≤ 0`` among them) or :func:`statistics_resolution` exceeds
        :data:`STATISTICS_RESOLUTION_LIMIT`; else :data:`FACTOR_UNRESOLVED` where
        :func:`pivot_resolution` exceeds :data:`PIVOT_RESOLUTION_LIMIT` or
        :func:`resolution` plus :func:`factor_resolution` (the criterion ``reml``)
        exceeds :data:`RESOLUTION_LIMIT`; else :data:`RESOLVED`.
    """
    res = resolution(step, prof, glob)
    if res > RESOLUTION_LIMIT:  # Q ≤ 0 among them (inf)
        return UNRESOLVED
    if statistics_resolution(prof, glob) > STATISTICS_RESOLUTION_LIMIT:
        return UNRESOLVED
    return _factor_verdict(res, _factor_parts(step, prof, glob), prof, reml)


def precision_shares(
    step: StepSums, prof: Profile, glob: GlobalStats, reml: bool
) -> tuple[float, float]:
    """What the precision check weighs at an evaluation (``step``, ``prof``), each part
    made once: ``(resolution + statistics_resolution, factor)``, with ``factor``
    :func:`factor_error` where :func:`resolution_verdict` is not
    :data:`FACTOR_UNRESOLVED` and 0 where it is (the same floats as those functions
    give, which share :func:`resolution` and the factor's parts; a NaN passes the
    verdict's tests as there).

    ``resolution ≈ ε |w|'S|w| / Q`` (``S`` the sizes of ``Q``'s terms, ``w = [−β̂; 1]``),
    ``statistics_resolution`` the within-group pivot's own rounding, and
    ``factor_error ≈ ε |g|'|A⁻¹||g| / Q`` plus the sums' rounding through β̂ (and
    REML's ``log|A|``; the cases measured in benchmarks/RESULTS.md, heavy-s54).  The
    precision warning (:func:`~dmixed.fit.fit_warnings.warn_precision`) reads their
    sum.

    Parameters
    ----------
    step : StepSums
        The evaluation's per-group sums at the covariance parameters.
    prof : Profile
        The GLS quantities there (``A``, ``β̂``, ``Q``, ``fac``).
    glob : GlobalStats
        The statistics' whole-data sums (``[X y]'[X y]``).
    reml : bool
        The criterion: REML adds ``log|A|``'s rounding to the factor's share.

    Returns
    -------
    tuple of float
        The sums' share and the factor's: relative errors of ``Q`` (dimensionless, the
        units of :func:`resolution`; ℓ's error is ``½ fac`` times them), ``(inf,
        inf)`` where ``Q ≤ 0``."""
    if not prof.q > 0:  # resolution's inf: UNRESOLVED, and factor_error's inf
        return resolution(step, prof, glob) + statistics_resolution(prof, glob), np.inf
    sizes, abs_w = _term_sizes(step, prof, glob), np.abs(prof.w)
    res = _resolution_of(step, prof, glob, sizes, abs_w)
    stat = statistics_resolution(prof, glob)
    base = res + stat
    parts = _factor_parts(step, prof, glob, sizes, abs_w)
    # resolution_verdict's own tests, negated as written there: a NaN passes them
    if (
        not res > RESOLUTION_LIMIT
        and not stat > STATISTICS_RESOLUTION_LIMIT
        and _factor_verdict(res, parts, prof, reml) == FACTOR_UNRESOLVED
    ):
        return base, 0.0
    return base, _factor_error_of(prof, parts, reml)


def _factor_verdict(
    res: float, parts: tuple[float, float, float], prof: Profile, reml: bool
) -> int:
    """:func:`resolution_verdict` past its tests of ``Q``'s resolution (``res``:
    :func:`resolution`; ``parts``: :func:`_factor_parts`)."""
    k, kappa_share, r_share = parts
    if k > PIVOT_RESOLUTION_LIMIT:
        return FACTOR_UNRESOLVED
    q_share = kappa_share + r_share
    if reml:
        q_share += k * prof.q / prof.fac
    if res + q_share / prof.q > RESOLUTION_LIMIT:
        return FACTOR_UNRESOLVED
    return RESOLVED


def out_of_resolution(
    step: StepSums, prof: Profile, glob: GlobalStats, reml: bool, start: bool = False
) -> bool:
    """Whether the optimizer must reject the point (:func:`resolution_verdict`): where
    ``Q`` is not resolved, and, unless the point is a ``start``, where ``A``'s factor is
    not.

    A start's ℓ only anchors the first line search (and the choice between the default
    and the moment start): ℓ uncertain there to the factor's share (about
    (f/2)·:data:`RESOLUTION_LIMIT`, 1e-3 units at the limit) moves no estimate, whereas
    refusing it stops fits whose optimum lies where ``A`` is well resolved (a slope's
    column shifted far from zero makes ``A`` near singular at Ψ = I).  Every point the
    optimizer moves to, and so every point it can report other than its start, passes
    the whole test.
    """
    verdict = resolution_verdict(step, prof, glob, reml)
    return verdict == UNRESOLVED or (verdict == FACTOR_UNRESOLVED and not start)


def value_loglike(sums: StepSums, glob: GlobalStats, reml: bool) -> float:
    """ℓ of the sums of a value alone (:func:`profile`, :func:`loglike`), or −inf
    where a factorization fails, ℓ is not finite or :func:`out_of_resolution` rejects
    the point as a start (the start selection's values): the rejections of the
    objective's evaluation at a start, its score aside."""
    try:
        prof = profile(sums, glob, reml)
        llf = loglike(sums, prof, glob, reml)
    except np.linalg.LinAlgError:
        return -np.inf
    if not np.isfinite(llf) or out_of_resolution(sums, prof, glob, reml, start=True):
        return -np.inf
    return float(llf)


def loglike_constant(fac: float, glob: GlobalStats) -> float:
    """The part of :func:`loglike` that depends on no parameter:
    ``(f/2)(log f − log 2π − 1) + ½ Σ log w_j``."""
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
    val = -0.5 * step.logdet - 0.5 * prof.fac * np.log(prof.q) + loglike_constant(prof.fac, glob)
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
    qf = quadratic_form(step, glob, beta)
    q_b = -2.0 * (prof.b - prof.a @ beta)
    return hessian_blocks(prof.a, prof.a_inv, q_b, qf, prof.fac, reml, hs)


def hessian_blocks(
    a: np.ndarray,
    a_inv: np.ndarray,
    q_b: np.ndarray,
    qf: float,
    fac: float,
    reml: bool,
    hs: HessianSums,
) -> np.ndarray:
    """:func:`hessian` from its parts: ``A = X'V*⁻¹X`` and ``A⁻¹`` (p × p), ``Q_β``
    (p,) and ``Q`` at the point's β, ``fac`` and the Hessian sums ``hs``."""
    k = q_b.size
    m = hs.u_e_u.shape[0]
    # every block at once, [Q_ββ/2, Q_βj/2; Q_jβ/2, Q_jk/2] and [Q_β; Q_j] (the blocks'
    # own elementwise arithmetic: the same numbers as block by block, in a third of the
    # operations); then ½ Σ tr(S E_j S E_k) added to the θ block
    half_q = np.empty((k + m, k + m))
    half_q[:k, :k] = a
    half_q[:k, k:] = hs.g_e_u.T
    half_q[k:, :k] = hs.g_e_u
    half_q[k:, k:] = hs.u_s_u
    q_all = np.concatenate((q_b, -hs.u_e_u))
    # outer product by broadcasting: np.outer's own arithmetic, without its calls
    out = -0.5 * fac * (2.0 * half_q / qf - q_all[:, None] * q_all / qf**2)
    h_jk = 0.5 * hs.tr_ss + out[k:, k:]
    if reml and k:
        # as matrix products (einsum's parsing cost more than these small sums)
        p = k
        ql = a_inv @ hs.a_j  # A⁻¹A_j
        tr_ql = ql.reshape(m, p * p) @ ql.transpose(0, 2, 1).reshape(m, p * p).T
        h_jk = h_jk + 0.5 * tr_ql  # tr(A⁻¹A_j A⁻¹A_k)
        h_jk = h_jk - 0.5 * hs.a_jk_traces(a_inv)
    out[k:, k:] = 0.5 * (h_jk + h_jk.T)
    return out
