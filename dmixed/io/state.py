"""The state record of fitted results: every number a results object is built from.

:class:`ResultsState` is what :class:`~dmixed.MixedLMResults` holds, what a results
directory stores (:mod:`dmixed.io.results_dir`) and what loading gives back.  It holds
numbers and names only (no model, engine or data), so it pickles and can be written as
JSON and Parquet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..design import ModelNames
from ..errors import NotOfferedError
from ..fit.summary import DEFAULTS, OptSummary
from ..stats import n_tril

__all__ = ["MEMORY_ONLY", "ResultsState"]


#: Fields of :class:`ResultsState` held in memory only (not saved): None after a load.
MEMORY_ONLY: tuple[str, ...] = (
    "cov_fe_statistics",
    "statistics_columns",
    "blup_cov_statistics",
    "cov_re_statistics",
)


@dataclass
class ResultsState:
    """Everything fitted results consist of.

    With ``p = k_fe``, ``q = k_re``, ``L = k_vc``, ``k = p + q(q+1)/2 + L`` parameters,
    ``G = n_groups`` and ``r = q + Σ m_l`` random-effect slots per group (``m_l`` the
    slot width of variance component ``l``).  The attributes come in the groups of a
    results directory: the model, the fit (the optimizer's record), the estimates
    (``estimates.json``) and the random effects (``random_effects.parquet``).

    Attributes
    ----------
    names : ModelNames
    spec : dmixed.design.ModelSpec or None
        The formula spec (None for models built from arrays).
    use_sqrt : bool
        Packing of ``packed_params`` (square-root factor of Ψ* or Ψ* itself).
    pandas_output : bool
        Estimates as pandas objects by name (a formula or pandas input) or as ndarrays
        (a model of ndarrays): :attr:`dmixed.MixedLM.pandas_output` of the fitted model
        (True for results saved before it was recorded).
    reml : bool
    method : str
        ``"REML"`` or ``"ML"``.
    converged : bool
    n_iter, n_evals : int
    optimizer_methods : list of str
        The scipy methods (and Newton steps) used, in order.
    history : list
        One entry per iteration (the fit log).
    boundary : list of str
        Boundary labels of the variances settled at exactly zero
        (:meth:`Layout.boundary_labels`; :class:`~dmixed.fit.summary.OptSummary`'s
        ``boundary``, narrower than :attr:`MixedLMResults.is_singular`).
    fit_seconds, data_pass_seconds : float
    cov_fe : str
        ``"hessian"`` or ``"conditional"``.
    nobs, n_groups, n_dropped, k_fe, k_re, k_vc : int
    llf, scale : float
        Log-likelihood at the estimate and σ̂².
    param_names : list of str (k,)
    params : ndarray (k,)
        ``[β̂, vech_lt(Ψ*), τ*]`` (statsmodels' ``params``).
    packed_params : ndarray
        Covariance parameters in the ``use_sqrt`` packing.
    fe_params : ndarray (p,)
    cov_re, cov_re_unscaled : ndarray (q, q)
        ``σ̂² Ψ*`` and ``Ψ*``.
    vcomp : ndarray (L,)
        ``σ̂² τ*``.
    cov_params : ndarray (k, k)
        ``inv(−H)`` (NaN where undefined, see :meth:`MixedLMResults.cov_params`).
    a_inv : ndarray (p, p)
        ``(X'V*⁻¹X)⁻¹``.
    group_labels, group_sizes : ndarray (G,)
        Sorted group keys and their numbers of rows.
    blup : ndarray (G, r) or RaggedBlup
        Conditional means of each group's random effects (padded slots; ragged,
        :class:`~dmixed.stats.blup_cov.RaggedBlup`, as ``blup_cov``).
    blup_cov : ndarray (G, r, r) or RaggedCov
        Their conditional covariances ``σ̂² Λ K_i⁻¹ Λ'`` (ragged,
        :class:`~dmixed.stats.blup_cov.RaggedCov`, after a fit with the variance
        components held structured; padded when read back from a directory).
    vc_slot_cols : list of ndarray (G, m_l)
        The column of component ``l`` each slot stands for (-1: unused).
    optimizer_settings : dict
        The optimizer's settings and tolerances (:meth:`OptSummary.settings`); empty
        for results saved before they were recorded.
    initial_params : ndarray or None
        The packed covariance parameters the optimizer started from (None: not saved).
    initial_llf, grad_norm : float
        ℓ at the start; the final scaled gradient norm (NaN: not saved).
    final_rise : float
        The rise of ℓ a Newton step from the estimates promised where the fit judged
        its convergence by it (:class:`~dmixed.fit.summary.OptSummary`; NaN: not
        computed, or not saved).
    resolution_edge : bool
        The optimizer stopped where the statistics could not resolve ``Q`` further
        with ℓ still rising (:class:`~dmixed.fit.summary.OptSummary`; False where not
        saved).
    n_held : int
        Covariance parameters held at their start values (``fit(free=...)``): not
        counted by the information criteria (as statsmodels).
    cov_fe_statistics : ndarray (p, p) or None
        ``T cov(β̂) T'``: cov(β̂) in the statistics' coordinates (``X = X̃ T``,
        :mod:`dmixed.stats.standardize`), taken from the optimizer's covariance before
        any mapping, for prediction variances (``x T⁻¹`` keeps its digits where the
        raw ``x' cov(β̂) x`` cancels them, e.g. columns near 1.7e9).  Held in memory
        only: None for loaded results.
    statistics_columns : Standardization or None
        The statistics' column map of that ``T`` (None for loaded results).
    cov_re_statistics : ndarray (q, q) or None
        ``A Ψ̂ A'`` (``cov_re`` in the statistics' coordinates), for the same reason.
    blup_cov_statistics : ndarray (G, r, r), RaggedCov or None
        ``Ã M_i Ã'``: the BLUPs' conditional covariances relative to σ² in the
        statistics' coordinates (``Z = Z̃ Ã``), as the kernels gave them, for the same
        reason (None for loaded results).
    weight_scale : float
        ``s_w``, the prior weights' scale in the statistics
        (:mod:`dmixed.stats.standardize`; a power of four, 1 for most fits).
    cov_params_weighted : ndarray (k, k) or None
        With ``s_w`` not 1: the covariance of ``[β, s_w θ]`` (the covariance
        parameters relative to ``σ²/s_w``), which float64 holds where ``cov_params``'
        θ entries (``s_w⁻²`` times these) under- or overflow; the standard errors are
        taken from it.  None with ``s_w = 1``.
    """

    names: ModelNames
    spec: Any
    use_sqrt: bool
    reml: bool
    method: str
    converged: bool
    n_iter: int
    n_evals: int
    optimizer_methods: list[str]
    history: list
    boundary: list[str]
    fit_seconds: float
    data_pass_seconds: float
    cov_fe: str
    nobs: int
    n_groups: int
    n_dropped: int
    k_fe: int
    k_re: int
    k_vc: int
    llf: float
    scale: float
    param_names: list[str]
    params: np.ndarray
    packed_params: np.ndarray
    fe_params: np.ndarray
    cov_re: np.ndarray
    cov_re_unscaled: np.ndarray
    vcomp: np.ndarray
    cov_params: np.ndarray
    a_inv: np.ndarray
    group_labels: np.ndarray
    group_sizes: np.ndarray
    blup: Any  # ndarray (G, r) or RaggedBlup
    blup_cov: Any  # ndarray (G, r, r) or RaggedCov
    vc_slot_cols: list[np.ndarray]
    optimizer_settings: dict = field(default_factory=dict)
    initial_params: np.ndarray | None = None
    initial_llf: float = np.nan
    grad_norm: float = np.nan
    final_rise: float = np.nan
    resolution_edge: bool = False
    n_held: int = 0
    cov_fe_statistics: np.ndarray | None = None
    statistics_columns: Any = None
    blup_cov_statistics: Any = None
    cov_re_statistics: np.ndarray | None = None
    #: per variance component, ``(group index, column)`` pairs (m, 2) of columns of a
    #: group's ``exog_vc`` matrix that are zero on its rows (None: none)
    vc_empty_cols: list[np.ndarray] | None = None
    #: statsmodels' ``k_constant`` of the fixed-effects design, decided from the data
    #: at the fit (None: not decided, e.g. results saved before it was recorded)
    k_constant: int | None = None
    weight_scale: float = 1.0
    cov_params_weighted: np.ndarray | None = None
    pandas_output: bool = True
    #: a digest of the fitted rows' response, group keys and weights
    #: (:func:`dmixed.results.fit_record.data_digest`); None: data not in memory, or
    #: saved before it was recorded
    data_digest: str | None = None
    #: digests of the fitted rows' response, weights and fixed-effects design columns,
    #: each in row order, by ``"y"``, ``"w"`` and ``"x:"`` + column name
    #: (:func:`dmixed.results.fit_record.row_digests`), compared where two fits group
    #: the rows differently; None: data not in memory, or saved before it was recorded
    row_digests: dict[str, str] | None = None
    #: the covariance parameters the fit held at their start values (``fit(free=...)``
    #: zeros), a bool mask in plain packing order
    #: (:attr:`dmixed.results.results.MixedLMResults.held` owns it); None: every one
    #: estimated, or saved before it was recorded
    held: np.ndarray | None = None
    #: ``fit_regularized``'s settings and descent (``method``, ``alpha`` (k_fe,),
    #: ``ceps``, ``ptol``, ``maxit``, ``n_sweeps``, ``converged``): the fixed effects are
    #: L1-penalized at the unpenalized fit's covariance parameters
    #: (:meth:`check_unpenalized` owns what such results refuse); None: an ordinary fit
    regularized: dict | None = None

    def check_unpenalized(self, what: str) -> None:
        """Refuse ``what`` (an inference method) for L1-regularized results.

        Such results hold the penalized β at the unpenalized fit's covariance
        parameters: their log-likelihood is not a maximum and the unpenalized
        likelihood's curvature, profiles and refits do not describe their estimate.

        Raises
        ------
        dmixed.NotOfferedError
            ``regularized`` is set.
        """
        if self.regularized is None:
            return
        raise NotOfferedError(
            f"{what} is not offered for L1-regularized results (fit_regularized, "
            f"alpha={self.regularized.get('alpha')}): the penalized estimate has no "
            "standard errors, profile or likelihood-ratio test of the usual kind, and "
            "the unpenalized likelihood's would describe another estimate; use fit() for "
            "inference on the unpenalized model (e.g. on the coefficients the penalty "
            "kept), or a resampling scheme that refits fit_regularized"
        )

    def optimizer(self) -> OptSummary:
        """The optimizer's record (MixedModels.jl's ``OptSummary``) rebuilt from the state:
        settings and tolerances, start and final values, methods, the per-iteration log.
        Settings not recorded (results saved before they were) are the defaults."""
        initial = np.zeros(0) if self.initial_params is None else self.initial_params
        record = DEFAULTS.start(initial, **self.optimizer_settings)
        record.use_sqrt = self.use_sqrt
        record.initial_llf = self.initial_llf
        record.packed = np.asarray(self.packed_params)
        record.llf = self.llf
        record.grad_norm = self.grad_norm
        record.final_rise = self.final_rise
        record.resolution_edge = bool(self.resolution_edge)
        record.converged = self.converged
        record.boundary = list(self.boundary)
        record.methods = list(self.optimizer_methods)
        record.n_iter = self.n_iter
        record.n_evals = self.n_evals
        record.history = self.history
        return record

    @property
    def k_re2(self) -> int:
        """Number of free entries of Ψ*: ``q(q+1)/2``."""
        return n_tril(self.k_re)

    @property
    def vc_slot_widths(self) -> tuple[int, ...]:
        """Slots per group of each variance component (``m_l``)."""
        return tuple(int(t.shape[1]) for t in self.vc_slot_cols)

    @property
    def bse(self) -> np.ndarray:
        """Standard errors in ``params``' coordinates: ``sqrt(diag(cov_params))``; NaN
        where that diagonal is negative (the fit warned: the Hessian is not negative
        definite there)."""
        if self.cov_params_weighted is not None:
            with np.errstate(invalid="ignore"):
                return np.sqrt(self.cov_params_weighted.diagonal()) / self.weighted_unit()
        with np.errstate(invalid="ignore"):
            return np.sqrt(self.cov_params.diagonal())

    def weighted_unit(self) -> np.ndarray:
        """``d`` (k,) with ``[β, s_w θ] = d · params``: 1 for β, ``s_w`` for θ."""
        unit = np.full(len(self.params), float(self.weight_scale))
        unit[: self.k_fe] = 1.0
        return unit

    def bse_re(self) -> np.ndarray:
        """``sqrt(scale · diag(cov_params)[k_fe:])`` (statsmodels' ``bse_re``), from
        :attr:`cov_params_weighted` where there is one: ``sqrt((scale/s_w) ·
        diag(cov_w)[k_fe:]) / √s_w``, every factor inside float64's range."""
        p = self.k_fe
        with np.errstate(invalid="ignore"):
            if self.cov_params_weighted is None:
                return np.sqrt(self.scale * self.cov_params.diagonal()[p:])
            var = (self.scale / self.weight_scale) * self.cov_params_weighted.diagonal()[p:]
            return np.sqrt(var) / np.sqrt(self.weight_scale)

    @property
    def df_modelwc(self) -> int:
        """statsmodels' ``df_modelwc`` of a MixedLM fit: the size of ``params`` (its
        ``ResultMixin`` value; statsmodels' ``aic``/``bic`` do not use it, nor do these:
        see :attr:`df_criteria`)."""
        return len(self.params)

    @property
    def df_criteria(self) -> int:
        """Parameters counted by the information criteria: ``k + 1`` (σ²) less those
        held fixed (``n_held``), as statsmodels' ``MixedLMResults.aic``/``bic``."""
        return len(self.params) + 1 - self.n_held

    @property
    def aic(self) -> float:
        """``−2(llf − df)`` with df = :attr:`df_criteria`; NaN under REML (as
        statsmodels)."""
        if self.reml:
            return float("nan")
        return -2.0 * (self.llf - self.df_criteria)

    @property
    def bic(self) -> float:
        """``−2 llf + log(nobs) df``, df = :attr:`df_criteria`; NaN under REML (as
        statsmodels)."""
        if self.reml:
            return float("nan")
        return -2.0 * self.llf + np.log(self.nobs) * self.df_criteria
