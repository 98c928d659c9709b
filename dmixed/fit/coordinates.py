"""The three coordinate systems of a fit, and the exact maps between them.

- the model's own (statsmodels'): ``β``, ``Ψ*``, ``τ*``, ``σ²``, ``ℓ``; what users give
  (``start_params``) and get (results);
- the statistics' (:mod:`dmixed.stats.standardize`): every column shifted and scaled,
  ``Ψ̃* = A Ψ* A'``; the kernels only ever see these;
- the optimizer's: ``Ψ_o = A_o Ψ* A_o'``.  With every parameter free ``A_o = A``: the
  optimizer works in the statistics' coordinates, where the problem is scale free.  A
  ``free`` mask is a zero pattern (or held values) in the model's ``Ψ*``, which the
  shift part of ``A`` does not keep, so then ``A_o = S_z`` (the scales only, which keep
  it) and the objective maps ``Λ̃ = C Λ_o`` with ``C = A A_o⁻¹``.  A variance
  component is always in the statistics' coordinates, ``τ_o = τ̃* = s_l² τ*`` (its
  scale keeps a held value held).

Prior weights scale the rows by ``√w``, which the column map does not see: weights
``c·w`` give the same model with ``σ²`` times ``c``, so ``Ψ̃*`` and ``τ̃*`` (relative to
``σ²``) divided by ``c``, while the optimizer's boundary and singularity thresholds are
absolute.  So a fit's optimizer works on ``k`` times the statistics' relative
covariances (``A_o`` carries ``√k``, ``τ_o = k s_l² τ*``), ``k`` the power of four
nearest the weights' geometric mean (:func:`weight_factor`; exact, and 1 without
weights): the optimizer's coordinates are then free of the weights' unit too.

The statistics' own weights are ``w / s_w`` (the weights' scale, a power of four in
:class:`~dmixed.stats.standardize.Standardization`), so their relative covariances are
``s_w`` times those of ``w``: their ``A`` here is the map's estimate matrix ``√s_w A``
(:meth:`~dmixed.stats.standardize.Standardization.psi_matrix`), the components' scales
``√s_w s_l`` and ``σ² = s_y² s_w σ̃²``; ``k`` is then near 1.

``β`` and ``σ²`` are profiled out and live in the statistics' coordinates throughout the
optimization; they and ``ℓ`` are mapped back once, at the end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property

import numpy as np

from ..kernels import small_linalg
from ..stats import GlobalStats, Layout
from ..stats.standardize import Standardization, psi_map_matrix


def weight_factor(glob: GlobalStats) -> float:
    """``k``: the power of four nearest the geometric mean of the prior weights,
    ``exp(Σ log w / n)`` (1 without rows or weights).

    A power of four, so that ``√k`` scales ``A_o`` exactly; the exponent is kept inside
    float64's normal range.
    """
    n = float(glob.n)
    mean_log = float(glob.sum_log_weights) / n if n > 0 else 0.0
    if not math.isfinite(mean_log):
        return 1.0
    # Python's round, as numpy's, rounds a half to even: the same exponent
    half = float(min(max(round(mean_log / (2.0 * math.log(2.0))), -500), 500))
    return 2.0 ** (2.0 * half)


@dataclass(frozen=True)
class Coordinates:
    """The maps of one fit (see the module).

    Attributes
    ----------
    columns : Standardization
        The statistics' column map.
    a_opt : ndarray (q, q)
        ``A_o``: ``Ψ_o = A_o Ψ* A_o'``.
    layout : Layout
    """

    columns: Standardization
    a_opt: np.ndarray
    layout: Layout
    tau_opt: np.ndarray  # c_l with τ_o = c_l τ*_l
    #: ``k``: the optimizer's covariances are ``k`` times the statistics' (the module)
    weight: float = 1.0

    @classmethod
    def for_fit(
        cls, columns: Standardization, layout: Layout, all_free: bool, weight: float = 1.0
    ) -> Coordinates:
        """The optimizer in the statistics' coordinates when ``all_free``, else in the
        scaled (not shifted) ones; the variance components always in the statistics'
        (a scale keeps a held value held); all times ``weight`` (``k``, a power of four:
        :func:`weight_factor`; 1: the statistics' own)."""
        a_opt = columns.psi_matrix() if all_free else columns.psi_scale_matrix()
        if weight != 1.0:
            a_opt = np.sqrt(weight) * a_opt
        tau = weight * columns.tau_root_scales(layout.k_vc) ** 2
        return cls(columns, a_opt, layout, tau, float(weight))

    def statistics_to_opt_sqrt(self, packed: np.ndarray) -> np.ndarray:
        """A square-root packed point of the statistics' coordinates (the moment
        estimates) → the optimizer's, for coordinates with every parameter free
        (``A_o = √k A``): every entry times ``√k``."""
        out = np.asarray(packed, dtype=np.float64)
        return out if self.weight == 1.0 else np.sqrt(self.weight) * out

    @classmethod
    def model(cls, columns: Standardization, layout: Layout) -> Coordinates:
        """The optimizer's coordinates are the model's own (``A_o = I``, ``c = 1``)."""
        return cls(columns, np.eye(layout.k_re), layout, np.ones(layout.k_vc))

    @cached_property
    def vc_map(self) -> np.ndarray | None:
        """Per component, the factor on its ``s`` entries of Λ from the optimizer's
        coordinates to the statistics' (``s_l / √c_l``); None when all are 1 (computed
        once per instance)."""
        if self.layout.k_vc == 0:
            return None
        f = self.columns.tau_root_scales(self.layout.k_vc) / np.sqrt(self.tau_opt)
        return None if np.all(f == 1.0) else f

    # -- Ψ between the systems ---------------------------------------------------------

    @cached_property
    def a_opt_inv(self) -> np.ndarray:
        """``A_o⁻¹`` (q × q), computed once per instance (the maps back use it several
        times per fit); read only.  ``I`` itself where ``A_o = I`` (what the inverse of
        LAPACK gives there; the statistics' columns of most fits are not rescaled)."""
        inv = np.eye(self.a_opt.shape[0]) if self.a_opt_is_identity else np.linalg.inv(self.a_opt)
        inv.flags.writeable = False
        return inv

    @cached_property
    def re_map(self) -> np.ndarray | None:
        """``C = A A_o⁻¹`` (q × q) with ``Λ̃ = C Λ_o``; ``None`` when ``C = I``
        (computed once per instance; read only).  Where ``A_o = I``, ``C = A`` (the
        product with ``I`` is exact)."""
        a = self.columns.psi_matrix()
        c = np.array(a, dtype=np.float64) if is_identity(self.a_opt) else a @ self.a_opt_inv
        if is_identity(c):
            return None
        c.flags.writeable = False
        return c

    def to_opt(self, packed: np.ndarray, use_sqrt: bool) -> np.ndarray:
        """Packed parameters of the model → the optimizer's (same packing).

        With a diagonal ``A_o`` and the square-root packing, ``L_o = A_o L`` entry by
        entry, so that a held (``free`` = 0) entry of ``L`` stays where it is.
        """
        return self._mapping(use_sqrt, self.a_opt, self.tau_opt)(packed)

    def from_opt(self, packed: np.ndarray, use_sqrt: bool) -> np.ndarray:
        """Packed parameters of the optimizer → the model's (same packing)."""
        return self._mapping(use_sqrt, self.a_opt_inv, 1.0 / self.tau_opt)(packed)

    def from_opt_all(self, rows, use_sqrt: bool) -> list[np.ndarray]:
        """:meth:`from_opt` of each packed vector of ``rows`` (the map made once)."""
        apply = self._mapping(use_sqrt, self.a_opt_inv, 1.0 / self.tau_opt)
        return [apply(p) for p in rows]

    def _mapping(self, use_sqrt: bool, a: np.ndarray, c: np.ndarray):
        """The map Ψ → a Ψ a', τ → c τ of packed vectors (packed as ``use_sqrt`` packs,
        both ways), its case (identity, diagonal, full ``a``) decided once."""
        layout = self.layout
        k2 = layout.k_re2
        factor = np.sqrt(c) if use_sqrt else c

        def scaled(packed: np.ndarray) -> np.ndarray:
            out = np.asarray(packed, dtype=np.float64).copy()
            out[k2:] = out[k2:] * factor
            return out

        if layout.k_re == 0 or is_identity(a):
            return scaled
        if use_sqrt and is_diagonal(a):
            diag = np.diag(a)[layout.tril()[0]]

            def diagonal(packed: np.ndarray) -> np.ndarray:
                out = scaled(packed)
                out[:k2] = out[:k2] * diag
                return out

            return diagonal

        def full(packed: np.ndarray) -> np.ndarray:
            psi, tau = layout.unpack(scaled(packed), use_sqrt)
            out_psi = a @ psi @ a.T
            return layout.pack(0.5 * (out_psi + out_psi.T), tau, use_sqrt)

        return full

    def lam(
        self, packed_opt: np.ndarray, use_sqrt: bool, layout: Layout | None = None
    ) -> np.ndarray:
        """Λ̃ (the statistics' coordinates) at the optimizer's ``packed_opt``, of the
        width of ``layout`` (default: :attr:`layout`; ``FittedStatistics.fit_layout``
        gives the factor of one slot per variance component, r × r no more)."""
        layout = self.layout if layout is None else layout
        return lam_in_statistics(layout.lam(packed_opt, use_sqrt), layout, self.re_map, self.vc_map)

    def to_statistics(self, lam: np.ndarray) -> np.ndarray:
        """Λ of the optimizer's coordinates → Λ̃ (:func:`lam_in_statistics`)."""
        return lam_in_statistics(lam, self.layout, self.re_map, self.vc_map)

    # -- the estimates -----------------------------------------------------------------

    @cached_property
    def a_opt_is_identity(self) -> bool:
        """Whether ``A_o = I`` (:func:`is_identity`; computed once per instance)."""
        return is_identity(self.a_opt)

    def psi(self, psi_opt: np.ndarray) -> np.ndarray:
        """``Ψ* = A_o⁻¹ Ψ_o A_o⁻ᵀ``.

        Where ``A_o = I`` and every entry of ``Ψ_o`` is finite and not zero, each entry
        of the products is the entry itself plus exact zeros: ``Ψ_o``, the same bits,
        without the products (a zero entry's sign, or a NaN that ``0 · inf`` makes,
        could differ: such ``Ψ_o`` go through them)."""
        out = None
        if self.a_opt_is_identity and type(psi_opt) is np.ndarray and psi_opt.dtype == np.float64:
            if all(v != 0.0 and math.isfinite(v) for v in psi_opt.ravel().tolist()):
                out = psi_opt
        if out is None:
            inv = self.a_opt_inv
            out = inv @ psi_opt @ inv.T
        return 0.5 * (out + out.T)

    def tau(self, tau_opt: np.ndarray) -> np.ndarray:
        """``τ* = τ_o / c``."""
        return np.asarray(tau_opt, dtype=np.float64) / self.tau_opt

    @cached_property
    def fe_matrix(self) -> np.ndarray:
        """``T`` (p × p) of the column map (:meth:`Standardization.fe_matrix
        <dmixed.stats.standardize.Standardization.fe_matrix>`), made once per instance:
        β and the Jacobian both map through it; read only."""
        t = self.columns.fe_matrix()
        t.flags.writeable = False
        return t

    def beta(self, beta_std: np.ndarray) -> np.ndarray:
        """``β = T⁻¹ (s_y β̃ + c_y e_0)`` (:meth:`Standardization.beta_from_std
        <dmixed.stats.standardize.Standardization.beta_from_std>`: the same solve).

        Where ``T`` is diagonal with powers of two on its diagonal (no shifted column:
        :attr:`fe_divisors`) and every entry of the right-hand side is finite and not
        zero, LAPACK's solve divides each entry by its diagonal entry (by its exact
        reciprocal, or adding exact zeros): the same bits, divided here in floats."""
        rhs = self.columns.beta_rhs(beta_std)
        if not rhs.size:
            return rhs
        divisors = self.fe_divisors
        if divisors is not None:
            values = rhs.tolist()
            if all(v != 0.0 and math.isfinite(v) for v in values):
                return np.array([v / d for v, d in zip(values, divisors, strict=True)])
        return small_linalg.solve(self.fe_matrix, rhs)

    @cached_property
    def fe_divisors(self) -> list[float] | None:
        """The diagonal of ``T`` (:attr:`fe_matrix`) as floats where ``T`` is diagonal
        and each of them a power of two (the column map's scales, no shift); else None
        (computed once per instance)."""
        t = self.fe_matrix
        p = t.shape[0]
        flat = t.ravel().tolist()
        diagonal = flat[:: p + 1]
        if flat.count(0.0) != p * p - p or not all(
            math.isfinite(d) and d > 0.0 and math.frexp(d)[0] == 0.5 for d in diagonal
        ):
            return None
        return diagonal

    def scale(self, scale_std: float) -> float:
        return float(np.float64(scale_std) * np.float64(self.columns.sigma_scale) ** 2)

    def reported_point(
        self, cov_re: np.ndarray, scale: float, beta: np.ndarray
    ) -> tuple[np.ndarray, float, np.ndarray]:
        """The point that reported estimates in the model's units denote, in the
        optimizer's coordinates: ``(Ψ_o, σ̃², β̃)`` with ``Ψ_o = A_o (cov_re/σ²) A_o'``,
        ``σ̃² = σ² / (s_y² s_w)`` and ``β̃ = (T β − c_y e_0) / s_y``, each computed in
        exact rational arithmetic from the float64 inputs and rounded once.

        The inverse of the maps back (:meth:`psi`, :meth:`scale`, :meth:`beta`) without
        their rounding: where a random-effects column lies far from zero next to its
        spread, ``cov_re``'s entries are about ``(c/s)²`` times the estimates and nearly
        cancel in ``A_o``'s congruence, so the float64 products would lose the very
        digits this measures.  O(q³ + p²) rational operations; no data.

        Parameters
        ----------
        cov_re : ndarray (q, q)
            The reported covariance of the random effects (``σ² Ψ*``).
        scale : float
            The reported residual variance ``σ²``.
        beta : ndarray (p,)
            The reported fixed effects.

        Returns
        -------
        psi_opt : ndarray (q, q)
        scale_std : float
        beta_std : ndarray (p,)
        """
        s2 = Fraction(float(scale))
        psi = [[Fraction(float(v)) / s2 for v in row] for row in np.asarray(cov_re).tolist()]
        psi_opt = exact_congruence(self.a_opt, psi)
        cols = self.columns
        unit = Fraction(float(cols.sigma_scale))
        scale_std = float(s2 / (unit * unit)) if unit != 0 else math.inf
        t = [[Fraction(v) for v in row] for row in self.fe_matrix.tolist()]
        b = [Fraction(float(v)) for v in np.asarray(beta, dtype=np.float64).tolist()]
        tb = [sum((tij * bj for tij, bj in zip(row, b, strict=True)), Fraction(0)) for row in t]
        if cols.x_intercept >= 0:
            tb[cols.x_intercept] -= Fraction(float(cols.y_shift))
        elif cols.y_shift != 0.0 and (ones := cols.y_ones()) is not None:
            shift = Fraction(float(cols.y_shift))  # the constant made by columns (0 + C(c))
            tb = [v - shift * Fraction(float(o)) for v, o in zip(tb, ones.tolist(), strict=True)]
        sy = Fraction(float(cols.y_scale))
        beta_std = np.array([float(v / sy) for v in tb], dtype=np.float64)
        return psi_opt, scale_std, beta_std

    def llf(self, llf_std: float, n: int, reml: bool) -> float:
        return float(llf_std) + self.llf_offset(n, reml)

    def llf_all(self, values, n: int, reml: bool) -> list[float]:
        """:meth:`llf` of each of ``values``."""
        offset = self.llf_offset(n, reml)
        return [float(v) + offset for v in values]

    def llf_offset(self, n: int, reml: bool) -> float:
        """``ℓ − ℓ̃`` of the column map (:meth:`Standardization.llf_offset
        <dmixed.stats.standardize.Standardization.llf_offset>`), computed once per ``n``
        and criterion: the objective's offset and the results' ℓ and log read it."""
        key = (n, bool(reml))
        offset = self._llf_offsets.get(key)
        if offset is None:
            offset = self._llf_offsets[key] = self.columns.llf_offset(n, reml)
        return offset

    @cached_property
    def _llf_offsets(self) -> dict:
        return {}

    def a_inv(self, a_inv_std: np.ndarray) -> np.ndarray:
        return self.columns.a_inv_from_std(a_inv_std)

    def blups(self, blup: np.ndarray, cond: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.columns.blups_from_std(blup, cond, self.layout.vc_widths)

    def jacobian(self) -> np.ndarray:
        """``J = ∂[β̃, θ_o] / ∂[β, θ] = blockdiag(T / s_y, M(A_o))`` (a constant: every
        map is affine)."""
        p = self.fe_matrix.shape[0]
        k2 = self.layout.k_re2
        n = p + k2 + self.layout.k_vc
        jac = np.zeros((n, n))
        jac[:p, :p] = self.fe_matrix / self.columns.y_scale
        if is_identity(self.a_opt):  # vech_lt(I Ψ I') = vech_lt(Ψ): the map is I
            diag = np.ones(n - p)
            diag[k2:] = self.tau_opt
            jac.ravel()[p * (n + 1) :: n + 1] = diag  # the diagonal of the θ block
        else:
            m = psi_map_matrix(self.a_opt, self.layout.k_vc)
            m[k2:, k2:] = np.diag(self.tau_opt)
            jac[p:, p:] = m
        return jac

    def covariance(self, cov_opt: np.ndarray, weighted: bool = False) -> np.ndarray:
        """The covariance of ``[β, θ]`` from that of ``[β̃, θ_o]``: ``J⁻¹ C J⁻ᵀ``;
        ``weighted``: of ``[β, s_w θ]`` (the weights' scale, which keeps the θ entries
        inside float64's range: :mod:`dmixed.stats.standardize`).

        An undefined (NaN) entry makes every entry it enters undefined, and no other.
        """
        inv = self._weighted_jacobian_inv if weighted else self._jacobian_inv
        undefined = np.isnan(cov_opt)
        some = bool(undefined.any())
        plain = (
            type(cov_opt) is np.ndarray
            and cov_opt.dtype == np.float64
            and cov_opt.flags.c_contiguous
        )
        # without NaN, such a cov_opt is what np.where would copy (no copy made)
        cov = cov_opt if plain and not some else np.where(undefined, 0.0, cov_opt)
        with np.errstate(over="ignore", invalid="ignore"):  # inf where units near 1e±300
            out = inv @ cov @ inv.T
        if some:
            reach = np.abs(inv) > 0
            out[(reach.astype(float) @ undefined @ reach.T.astype(float)) > 0] = np.nan
        return 0.5 * (out + out.T)

    @cached_property
    def _jacobian_inv(self) -> np.ndarray:
        """``J⁻¹`` (:meth:`jacobian`), made once per instance (the results map two
        covariances through it); read only."""
        inv = small_linalg.inv(self.jacobian())
        inv.flags.writeable = False
        return inv

    @cached_property
    def _weighted_jacobian_inv(self) -> np.ndarray:
        """The inverse of ``J`` with its θ block divided by ``s_w`` (:meth:`covariance`
        with ``weighted``): :attr:`_jacobian_inv` where ``s_w = 1`` (the same matrix)."""
        s_w = self.columns.weight_scale
        if s_w == 1.0:
            return self._jacobian_inv
        jac = self.jacobian()
        p = self.columns.k_fe
        jac[p:, p:] /= s_w  # ∂θ_o/∂(s_w θ) = J_θ / s_w, exact (a power of four)
        inv = small_linalg.inv(jac)
        inv.flags.writeable = False
        return inv


def is_identity(a: np.ndarray) -> bool:
    """Whether the square ``a`` equals the identity, as ``np.array_equal(a, I)`` tells
    (on its entries as Python floats, without making ``I``): ones on the diagonal and
    every other entry zero."""
    q = a.shape[0]
    if a.shape != (q, q):
        return False
    flat = a.ravel().tolist()
    return flat[:: q + 1] == [1.0] * q and flat.count(0.0) == q * q - q


def is_diagonal(a: np.ndarray) -> bool:
    """Whether the square ``a`` is diagonal, as ``np.array_equal(a, np.diag(np.diag(a)))``
    tells (on its entries as Python floats, without the two new arrays and the
    comparison's wrappers): every entry off the diagonal zero (``-0.0`` too) and none on
    it NaN (NaN is not equal to itself there)."""
    q = a.shape[0]
    if a.shape != (q, q):
        return False
    flat = a.ravel().tolist()
    diagonal = flat[:: q + 1]
    return flat.count(0.0) - diagonal.count(0.0) == q * q - q and not any(v != v for v in diagonal)


def exact_congruence(a: np.ndarray, m) -> np.ndarray:
    """``a m a'`` (q × q) computed exactly from the float64 ``a`` and the rationals (or
    floats) ``m`` (nested lists, q × q), each entry rounded once to float64."""
    fa = [[Fraction(float(v)) for v in row] for row in np.asarray(a).tolist()]
    fm = [[v if isinstance(v, Fraction) else Fraction(float(v)) for v in row] for row in m]
    q = len(fa)
    am = [
        [sum((fa[i][k] * fm[k][j] for k in range(q)), Fraction(0)) for j in range(q)]
        for i in range(q)
    ]
    out = np.empty((q, q), dtype=np.float64)
    for i in range(q):
        for j in range(i, q):
            v = float(sum((am[i][k] * fa[j][k] for k in range(q)), Fraction(0)))
            out[i, j] = out[j, i] = v
    return out


def lam_in_statistics(
    lam: np.ndarray,
    layout: Layout,
    re_map: np.ndarray | None = None,
    vc_map: np.ndarray | None = None,
) -> np.ndarray:
    """``Λ̃``: the ``exog_re`` block ``C Λ`` (``C = re_map``) and each variance
    component's entries times its factor (``vc_map``); ``lam`` itself when both are
    ``None`` (then no copy)."""
    if re_map is None and vc_map is None:
        return lam
    out = np.array(lam, dtype=np.float64)
    q = layout.k_re
    if re_map is not None:
        out[:q, :q] = re_map @ lam[:q, :q]
    if vc_map is not None:  # a component's columns in the statistics are v / s_l
        idx = np.arange(q, layout.r)
        out[idx, idx] *= vc_map[layout.slot_component]
    return out
