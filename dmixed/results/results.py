"""Results of a MixedLM fit, with statsmodels' names and conventions: estimates,
Wald and likelihood inference, BLUPs.

A results object holds only numbers (its :class:`~dmixed.io.ResultsState`, plus the
model when it was fitted in this session), never an engine, a client or a future, so it
pickles and outlives the cluster it came from.  It is built from a state record in one
way (:meth:`MixedLMResults.from_state`); :meth:`MixedLMResults.from_fit` computes that
record from a fit, :func:`load` reads it from a results directory.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import pandas as pd

from ..design.references import design_coordinates
from ..errors import NoModelError, NotOfferedError, SpecError
from ..fit.coordinates import Coordinates
from ..fit.options import check_flag, parse_free
from ..fit.params import MixedLMParams
from ..fit.summary import OptSummary
from ..inference import check_alpha
from ..inference import compare_lr_test as _compare_lr_test
from ..io import ResultsState, load_state, save_state
from ..stats import Layout
from ..stats.blup_cov import cov_block, cov_diagonal, cov_variances
from .bootstrap import BootstrapResults, parametric_bootstrap
from .by_group import ByGroup
from .fit_record import fit_state, identifiable
from .fitted import FittedValues
from .hypotheses import Hypotheses
from .identification import scaled_information, warn_unidentified
from .labels import label_index
from .plots import caterpillar, residual_plot
from .prediction import Predictor
from .profile import confint_frame, variance_intervals
from .profile_re import profile_re
from .re_frames import blup_frame, effect_names, with_empty
from .simulate import simulate_fitted
from .singular import is_singular
from .summary import Summary, coefficient_table
from .terms import constant_in_rows, constant_in_spec
from .varcorr import varcorr_frame

__all__ = ["MixedLMResults", "load"]


class MixedLMResults(FittedValues, Hypotheses):
    """Estimates and inference for a fitted :class:`~dmixed.MixedLM`.

    ``params`` follows statsmodels: ``[fe_params, vech_lt(Ψ*), τ*]`` with Ψ* = cov_re/scale
    and τ* = vcomp/scale; ``cov_params() = inv(−H)`` with H the Hessian of the
    log-likelihood (σ² profiled, β free) in those coordinates, ``bse_fe`` its β block,
    ``bse_re = sqrt(scale · diag(cov_params())[k_fe:])``.

    Parameters
    ----------
    state : ResultsState
        Every number of the results (see :class:`~dmixed.io.ResultsState`).
    model : MixedLM, optional
        The fitted model (None for loaded results): fitted values, residuals and
        profile likelihoods need its data or statistics.  :attr:`model` gives it,
        :attr:`fitted_model` gives it or None.
    """

    def __init__(self, state: ResultsState, model=None) -> None:
        #: the fitted model, None for loaded results (:attr:`model` refuses them)
        self.fitted_model = model
        self._state = state
        names = state.names
        self.names = names
        self.spec = state.spec
        self.use_sqrt = state.use_sqrt
        # the optimizer's record
        self.reml = state.reml
        self.method = state.method
        self.converged = state.converged
        self.n_iter = state.n_iter
        self.n_evals = state.n_evals
        self.optimizer_methods = state.optimizer_methods
        self.boundary = state.boundary
        self.fit_seconds = state.fit_seconds
        self.data_pass_seconds = state.data_pass_seconds
        self.cov_fe = state.cov_fe
        #: the keyword arguments of the fit besides ``reml`` and where it ran
        #: (``free``, ``start_params``, ``method``, ...): a refit by ML keeps them
        #: (:func:`dmixed.anova`); empty for loaded results
        self.fit_options: dict = {}
        # sizes and estimates
        self.nobs = state.nobs
        self.n_groups = state.n_groups
        self.n_dropped = state.n_dropped
        self.k_fe, self.k_re, self.k_vc = state.k_fe, state.k_re, state.k_vc
        self.k_re2 = state.k_re2
        # np.float64 as statsmodels' (a float subclass: numpy's methods and dtype)
        self.llf = np.float64(state.llf)
        self.scale = np.float64(state.scale)
        self.param_names = state.param_names
        self.vcomp = state.vcomp
        self.group_labels = state.group_labels
        self.group_sizes = state.group_sizes
        self._cov = state.cov_params
        self._vc_slot_cols = state.vc_slot_cols

    # the state's fields that a fit's state makes on first read
    # (:class:`~dmixed.results.fit_record.FitState`), read from it when needed

    @property
    def model(self):
        """The fitted :class:`~dmixed.model.MixedLM`.

        Raises
        ------
        NoModelError
            Loaded results (:func:`load`): a results directory keeps the estimates,
            the names and the formula, not the data or the statistics a model is built
            on (:attr:`fitted_model` is None).
        """
        if self.fitted_model is None:
            raise NoModelError(
                "loaded results have no model: a results directory keeps the estimates, "
                "names and formula, not the data or statistics; build the model again "
                "from its data (MixedLM.from_formula with results.spec.formula) or from "
                "saved statistics (MixedLM.from_statistics) and fit it"
            )
        return self.fitted_model

    @model.setter
    def model(self, model) -> None:
        self.fitted_model = model

    @property
    def fit_history(self) -> list:
        """The optimizer's per-iteration record (the fit log): a list of dicts, one per
        iteration (a quasi-Newton method's or an exact Newton step's) and a last one for
        the final point (``"method"`` ``"final"``), each with ``"iteration"`` (the
        count of iterations made so far), ``"method"``, ``"llf"`` (ℓ there, in the
        model's scale), ``"grad_norm"`` (max |∂ℓ/∂θ|/n over the free parameters, in the
        optimizer's coordinates: its convergence test), ``"elapsed"`` (seconds since
        the optimizer started) and ``"params"`` (the packed covariance parameters, in
        the model's scale; in the optimizer's packing, the square-root one whenever
        it worked on the factor: with ``use_sqrt=False`` that is every fit with every
        parameter free).  Kept whatever ``fit(full_output=...)``; saved with the results."""
        return self._state.history

    @property
    def packed_params(self) -> np.ndarray:
        """The covariance parameters in the model's ``use_sqrt`` packing."""
        return self._state.packed_params

    @property
    def _blup(self):
        return self._state.blup

    @property
    def _blup_cov(self):
        return self._state.blup_cov

    @classmethod
    def from_state(cls, state: ResultsState, model=None) -> MixedLMResults:
        """Results built from a state record (e.g. :func:`dmixed.io.load_state`'s)."""
        return cls(state, model=model)

    def to_state(self) -> ResultsState:
        """The state record these results were built from (what :meth:`save` writes)."""
        return self._state

    @classmethod
    def from_fit(
        cls,
        *,
        model,
        stats,
        reml: bool,
        packed: np.ndarray,
        prof,
        llf: float,
        hessian: np.ndarray | None,
        cov_fe: str,
        optimize_result,
        fit_seconds: float,
        coords: Coordinates | None = None,
        free: np.ndarray | None = None,
        checked: bool | None = None,
        lam: np.ndarray | None = None,
        unpacked: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> MixedLMResults:
        """Results of a fit: the estimates, their covariance and the BLUPs.

        Everything the optimizer gives is in its own coordinates and the statistics'
        (``coords``, :mod:`dmixed.fit.coordinates`); the record holds the model's own
        (statsmodels') values, mapped back exactly.

        Parameters
        ----------
        model : MixedLM
        stats : dmixed.stats.FittedStatistics
            The statistics fitted (their engine computes the BLUPs: no data pass).
        reml : bool
        packed : ndarray
            The covariance parameters at the optimum, in ``model.use_sqrt``'s packing
            (the optimizer's coordinates).
        prof : dmixed.fit.objective.Profile
            The profiled quantities at the optimum (β̂, σ̂², ``(X'V*⁻¹X)⁻¹``, w), in the
            statistics' coordinates.
        llf : float
            ℓ in the statistics' coordinates.
        hessian : ndarray (k, k) or None
            Hessian of ℓ in ``[β̃, θ_o]`` (None: no standard errors).
        cov_fe : {"hessian", "conditional"}
        optimize_result : OptSummary
            The optimizer's record (``converged, n_iter, n_evals, methods, history,
            boundary``).
        fit_seconds : float
        coords : Coordinates, optional
            Default: the statistics' coordinates are the model's own.
        free : ndarray of bool (n_params,), optional
            The covariance parameters estimated (``fit(free=...)``; default all): the
            others have zero standard errors, as in statsmodels.
        checked : bool, optional
            Whether the model passes lme4's checks
            (:func:`~dmixed.results.fit_record.identifiable`) where the caller knows it
            (the fit made them before its data's optimizer); default: made here.
        lam : ndarray (r, r), optional
            Λ̃, the relative covariance factor at ``packed`` in the statistics'
            coordinates, where the caller has it (the optimum's evaluation holds it);
            default: made here from ``packed``.
        unpacked : tuple of ndarray, optional
            ``(Ψ, τ)`` of ``packed`` (``stats.layout.unpack(packed, model.use_sqrt)``)
            where the caller has them; default: made here.

        Warns
        -----
        SingularHessianWarning
            The Hessian (without the variances at zero) is singular: pseudo-inverse used;
            or it is singular (or not negative definite) in the covariance parameters
            given β, so that the fixed effects' standard errors are the conditional
            ``σ̂²(X'V⁻¹X)⁻¹`` whatever ``cov_fe`` says; or some covariance parameters are
            not identified (:func:`dmixed.results.identification.warn_unidentified`).
        """
        layout = stats.layout
        if coords is None:
            coords = Coordinates.model(stats.columns, layout)
        at_zero = layout.boundary_mask(list(optimize_result.boundary), use_sqrt=False)
        estimate = (packed, prof, llf, hessian)
        if checked is None:
            checked = identifiable(stats, model)
        if free is not None:
            free = np.asarray(free, dtype=bool)
            if np.count_nonzero(free) == free.size:
                free = None  # every parameter estimated: the common case's paths
        all_free = free is None
        # with every parameter free the covariance and the warning below decide from
        # the same information: decomposed once
        information = (
            scaled_information(hessian, model.k_fe, at_zero) if checked and all_free else None
        )
        state = fit_state(
            model,
            stats,
            reml,
            estimate,
            cov_fe,
            optimize_result,
            fit_seconds,
            coords,
            free,
            checked=checked,
            at_zero=at_zero,
            lam=lam,
            information=information,
            unpacked=unpacked,
        )
        res = cls(state, model=model)
        if checked:  # else the fixed effects' warning says so
            warn_unidentified(
                hessian,
                model.k_fe,
                at_zero if all_free else at_zero | ~free,
                lambda: res.param_names[model.k_fe :],
                information,
            )
        return res

    # -- estimates as pandas objects (made on first use: a fit that reads a few
    # -- numbers does not pay for pandas' indexes) ------------------------------

    @cached_property
    def optimizer(self) -> OptSummary:
        """The optimizer's record: settings and tolerances, start and final values,
        methods and the per-iteration log (made on first use)."""
        return self._state.optimizer()

    @property
    def boundary_names(self) -> list[str]:
        """The variances settled at exactly zero (:attr:`boundary`, as
        ``optimizer.boundary``), by the names the BoundaryWarning gives them:
        ``exog_re_names`` for random effects, ``vc_names`` for variance components.

        ``boundary`` keeps the positional labels ``"re:i"`` and ``"vc:l"``
        (:meth:`~dmixed.stats.Layout.boundary_labels`): a random effect and a variance
        component may share a name, and saved results, replicate fits and the optimizer
        read the labels back by position."""
        # the components' widths play no part in the labels
        layout = Layout(self.k_re, (1,) * self.k_vc)
        return layout.boundary_names(
            list(self.boundary), self.names.exog_re_names, self.names.vc_names
        )

    @cached_property
    def _param_index(self) -> pd.Index:
        return label_index(self.param_names)

    def _shaped(self, named):
        """``named`` (a Series or DataFrame by parameter name) as the user's input calls
        for: pandas for a formula or pandas input (and loaded results), its values for
        a model of ndarrays (statsmodels' rule: arrays in, arrays out)."""
        return named if self.pandas_output else named.to_numpy()

    def _shaped_series(self, values, index, fresh: bool = False):
        """:meth:`_shaped` of ``pd.Series(values, index=index())`` (unnamed, as
        statsmodels' estimates), built only
        for pandas output: for a model of ndarrays the values themselves, as that
        Series' ``to_numpy()`` gives them (a read-only copy; ``fresh``: ``values`` is
        an ndarray made for this call, held as it is), without pandas' index and
        Series (most of the cost of a fit's ``bse`` on a small model)."""
        if self.pandas_output:
            return pd.Series(values, index=index())
        out = values if fresh else np.array(values)
        out.flags.writeable = False
        return out

    @property
    def regularized(self) -> dict | None:
        """``fit_regularized``'s settings and descent (``method``, ``alpha``, ``ceps``,
        ``ptol``, ``maxit``, ``n_sweeps``, ``converged``), saved with the results; None
        for an ordinary fit.  Regularized results refuse the inference that belongs to
        the unpenalized likelihood (:meth:`confint`, :meth:`profile_ci`,
        :meth:`bootstrap`, :meth:`profile_re`, :meth:`compare_lr_test`, :func:`anova
        <dmixed.anova>`, the Wald tests: ``NotOfferedError``)."""
        return self._state.regularized

    @property
    def pandas_output(self) -> bool:
        """Whether estimates, fitted values and residuals are pandas objects (see
        :attr:`dmixed.MixedLM.pandas_output`; the fitted model's for loaded results)."""
        return getattr(self.fitted_model, "pandas_output", self._state.pandas_output)

    @cached_property
    def params(self) -> pd.Series | np.ndarray:
        """``[fe_params, vech_lt(Ψ*), τ*]`` by parameter name (see the class doc); an
        ndarray for a model of ndarrays, as every estimate below."""
        return self._shaped_series(self._state.params, lambda: self._param_index)

    @cached_property
    def fe_params(self) -> pd.Series | np.ndarray:
        """The fixed effects β̂, by ``exog_names``."""
        return self._shaped_series(self._state.fe_params, lambda: self.names.exog_names)

    @cached_property
    def cov_re(self) -> pd.DataFrame | np.ndarray:
        """The random effects' covariance σ̂²Ψ̂*, by ``exog_re_names``."""
        names = self.names.exog_re_names
        return self._shaped(pd.DataFrame(self._state.cov_re, index=names, columns=names))

    @cached_property
    def cov_re_unscaled(self) -> pd.DataFrame | np.ndarray:
        """Ψ̂* = ``cov_re / scale``, by ``exog_re_names`` (as :attr:`cov_re`)."""
        names = self.names.exog_re_names
        unscaled = pd.DataFrame(self._state.cov_re_unscaled, index=names, columns=names)
        return self._shaped(unscaled)

    # -- covariance of the estimates ---------------------------------------------

    def cov_params(self) -> pd.DataFrame | np.ndarray:
        """Covariance of ``params``: ``inv(−H)`` (statsmodels' convention, see class doc)."""
        names = self.param_names
        return self._shaped(pd.DataFrame(self._cov, index=names, columns=names))

    @cached_property
    def normalized_cov_params(self) -> pd.DataFrame | np.ndarray:
        """``cov_params() / scale`` (statsmodels' ``normalized_cov_params``: the
        covariance ``inv(−H)`` divided by σ̂², by parameter names)."""
        names = self.param_names
        unscaled = pd.DataFrame(np.asarray(self._cov) / self.scale, index=names, columns=names)
        return self._shaped(unscaled)

    @cached_property
    def k_constant(self) -> int | None:
        """1 if the fixed-effects design holds a constant, else 0 (statsmodels'
        ``k_constant``): by statsmodels' rule on the data (a constant non-zero column,
        or the ones in the columns' span), decided at the fit on the rows or the
        statistics (:func:`~dmixed.results.terms.constant_of_fit`), so the same for
        pandas, Dask and saved statistics, and saved with the results; for results
        without it (saved before it was), on the rows when they are in memory, else
        from the formula (an intercept, or a term of categorical factors coded with
        full rank); None for loaded results of an array model (neither at hand)."""
        if self._state.k_constant is not None:
            return self._state.k_constant
        rows = None if self.fitted_model is None else self.fitted_model.rows
        if rows is not None:
            return constant_in_rows(rows.exog)
        if self.spec is not None:
            return constant_in_spec(self.spec)
        return None

    @cached_property
    def bse(self) -> pd.Series | np.ndarray:
        # the state's bse is made anew at each read
        return self._shaped_series(self._state.bse, lambda: self._param_index, fresh=True)

    @cached_property
    def bse_fe(self) -> pd.Series | np.ndarray:
        k = self.k_fe
        return self._shaped_series(self._state.bse[:k], lambda: self._param_index[:k])

    @cached_property
    def bse_re(self) -> pd.Series | np.ndarray:
        se = self._state.bse_re()  # NaN where the fit warned of the Hessian
        return self._shaped_series(se, lambda: self.param_names[self.k_fe :])

    @cached_property
    def tvalues(self) -> pd.Series | np.ndarray:
        return self.params / self.bse

    @cached_property
    def pvalues(self) -> pd.Series | np.ndarray:
        """Two-sided p-values from the normal distribution (as statsmodels' MixedLM)."""
        from scipy import special  # here: importing scipy costs more than most fits

        p = 2 * special.ndtr(-np.abs(np.asarray(self.tvalues)))
        return self._shaped_series(p, lambda: self.param_names)

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame | np.ndarray:
        """Wald intervals ``params ± z_{1−α/2} · bse``."""
        from scipy import special

        z = special.ndtri(1 - check_alpha(alpha) / 2)
        est, se = np.asarray(self.params), np.asarray(self.bse)
        ci = pd.DataFrame({0: est - z * se, 1: est + z * se}, index=self.param_names)
        return self._shaped(ci)

    @property
    def freepat(self):
        """The ``free`` pattern given to :meth:`dmixed.MixedLM.fit`, as given (statsmodels'
        ``freepat``); None where none was, and for loaded results (the pattern is not
        saved; ``df_modelwc`` and the information criteria count the parameters it held
        all the same)."""
        return self.fit_options.get("free")

    def remove_data(self) -> None:
        """:meth:`FittedValues.remove_data <dmixed.results.fitted.FittedValues.remove_data>`,
        after the rows' :attr:`data_digest` and :attr:`row_digests` are made from
        the rows about to go: the digests' deferred makers hold the rows until they run,
        and likelihood-ratio tests of these results keep checking the rows afterwards."""
        self._state.data_digest  # noqa: B018 (made now, the maker and its rows let go)
        self._state.row_digests  # noqa: B018 (as data_digest)
        super().remove_data()

    @property
    def data_digest(self) -> str | None:
        """:func:`~dmixed.results.fit_record.data_digest` of the fitted rows, which
        :func:`dmixed.compare_lr_test` and :func:`dmixed.anova` compare: made from the
        model's rows when first read (never at the fit), kept by save and load; None
        for data not in memory (files, Dask) and results saved before it was recorded."""
        return self._state.data_digest

    @property
    def row_digests(self) -> dict[str, str] | None:
        """:func:`~dmixed.results.fit_record.row_digests` of the fitted rows (the
        response, weights and fixed-effects design columns, each in row order), which
        :func:`dmixed.compare_lr_test` and :func:`dmixed.anova` compare where two fits
        group the rows differently; made when first read, kept by save and load; None
        as :attr:`data_digest`."""
        return self._state.row_digests

    @property
    def held(self) -> np.ndarray | None:
        """The covariance parameters the fit held at their start values (``free`` zeros),
        as a bool mask over the packed covariance parameters (plain packing order:
        ``cov_re``'s lower triangle row by row, statsmodels' ``vech_lt``, then
        ``vcomp``); None where every parameter was estimated.  Loaded results give the
        mask saved with them (None for results saved before it was).

        The one owner of "the constraint of this fit" for everything that refits or
        profiles it (``profile_re``, profile intervals, ``bootstrap``, ``anova``'s ML
        refit counts)."""
        free = self.freepat
        if free is None:  # loaded results: the mask saved with them
            return self._state.held
        n_cov = len(self.params) - self.k_fe
        mask = ~parse_free(free, n_cov, self.k_fe)
        return mask if mask.any() else None

    @property
    def hist(self) -> list[dict]:
        """The optimizer's per-iteration record, :attr:`fit_history` under statsmodels'
        name.

        Not statsmodels' format: statsmodels' ``hist`` is None unless
        ``fit(full_output=True)``, and then a list of scipy's return dicts, one per
        optimizer method tried (``"allvecs"``, ``"fopt"``, ``"gopt"``, ``"Hinv"``,
        ``"converged"``, ...).  Here it is always the list of per-iteration dicts of
        :attr:`fit_history` (``"iteration"``, ``"method"``, ``"llf"``,
        ``"grad_norm"``, ``"elapsed"``, ``"params"``), whatever ``full_output``: code
        that tests ``hist is None`` or reads scipy's keys needs changing.
        ``[e["params"] for e in hist]`` are the iterates (statsmodels'
        ``"allvecs"``, which it keeps with ``full_output``)."""
        return self.fit_history

    @property
    def df_modelwc(self) -> int:
        return self._state.df_modelwc

    @property
    def objective(self) -> float:
        """MixedModels.jl's ``objective``: ``−2 llf``, the deviance under ML and the
        REML criterion (lme4's ``REMLcrit``) under REML; the ``llf`` has lme4's
        constants under both criteria.  The optimizer's :attr:`OptSummary.fmin
        <dmixed.fit.summary.OptSummary.fmin>`."""
        return -2.0 * float(self.llf)

    @property
    def deviance(self) -> float:
        """The deviance as MixedModels.jl defines it for a linear mixed model
        (``deviance(m) = objective(m)``): :attr:`objective`, ``−2 llf``, so under REML
        the REML criterion, not the ML deviance (for that, fit with ``reml=False``).
        Under ML it is lme4's ``deviance(fit)``; under REML it equals lme4's
        ``REMLcrit(fit)`` (lme4 deprecates ``deviance()`` of a REML fit: it warns and
        points to ``REMLcrit``, or ``deviance(fit, REML = FALSE)``, the ML deviance at
        the REML estimates, which dmixed does not give)."""
        return self.objective

    @property
    def dof(self) -> int:
        """MixedModels.jl's ``dof``: the parameters counted by :attr:`aic` and
        :attr:`bic`, the fixed effects, the covariance parameters not held by
        ``free`` and σ² (statsmodels' count, as lme4's ``npar`` of ``logLik``)."""
        return int(self._state.df_criteria)

    @property
    def aic(self) -> float:
        """``−2(llf − df)`` with df = number of parameters + 1 (σ²); NaN under REML."""
        return self._state.aic

    @property
    def bic(self) -> float:
        """``−2 llf + log(nobs) df``; NaN under REML (as statsmodels)."""
        return self._state.bic

    # -- random effects -----------------------------------------------------------

    @cached_property
    def random_effects(self) -> dict:
        """Conditional means (BLUPs) of each group's random effects: ``B* u_i``.

        A dict group → Series, as statsmodels; each group's Series is made when it is
        first looked up (:class:`~dmixed.results.by_group.ByGroup`), so the dict of
        millions of groups is at hand at once.  See :meth:`random_effects_frame` for
        one DataFrame.  Finite on the boundary (computed in Λ-form).
        """

        state = self._state  # (not self: see _state_effect_names)

        def make(gi: int) -> pd.Series:
            names, pos = _state_effect_names(state, gi)
            return pd.Series(np.where(pos >= 0, state.blup[gi, np.maximum(pos, 0)], 0.0), names)

        return ByGroup(self.group_labels, make)

    @cached_property
    def random_effects_cov(self) -> dict:
        """Conditional covariance of each group's random effects: ``σ̂² Λ K_i⁻¹ Λ'``
        (a dict group → DataFrame, made on first lookup as :attr:`random_effects`)."""

        state = self._state  # (not self: see _state_effect_names)

        def make(gi: int) -> pd.DataFrame:
            names, pos = _state_effect_names(state, gi)
            block = with_empty(cov_block(state.blup_cov, gi, pos[pos >= 0]), pos, state.vcomp)
            return pd.DataFrame(block, index=names, columns=names, copy=False)

        return ByGroup(self.group_labels, make)

    @property
    def params_object(self) -> MixedLMParams:
        """The estimates as statsmodels' :class:`~dmixed.MixedLMParams`: β̂, and Ψ* and τ*
        relative to σ̂² (``cov_re / scale``, ``vcomp / scale``), the point the model's
        ``loglike`` takes (``model.loglike(res.params_object) == res.llf``)."""
        return MixedLMParams.from_components(
            fe_params=np.asarray(self._state.fe_params, dtype=np.float64),
            cov_re=np.asarray(self.cov_re_unscaled, dtype=np.float64),
            vcomp=np.asarray(self.vcomp, dtype=np.float64) / self.scale,
        )

    def _need_exog_re(self, gives: str, instead: str) -> None:
        """Refuse a frame of one column per ``exog_re`` effect for a model of variance
        components alone, which would have no column, saying where the components'
        values are instead."""
        if not self.k_re:
            raise SpecError(
                f"{gives} of the exog_re random effects, and this model has none "
                f"(variance components {list(self.names.vc_names)} only): {instead}"
            )

    def random_effects_var(self, vc: bool = False, dask: bool = False, npartitions=None):
        """Conditional variances of the random effects (lme4's ``condVar``): the
        diagonals of :attr:`random_effects_cov` (``σ̂² Λ K_i⁻¹ Λ'``), in the layout of
        :meth:`random_effects_frame` for the same arguments, so that the two frames
        align row for row and column for column.

        Parameters
        ----------
        vc : bool
            False: one row per group indexed by group, one column per ``exog_re``
            coordinate (G, k_re).  True: long format with columns ``group``,
            ``component``, ``column`` and ``value`` (the variance) for the
            variance-component effects, one row per (group, column) the group has,
            the rows of ``random_effects_frame(vc=True)``.
        dask : bool
            Return a Dask DataFrame.
        npartitions : int, optional
            With ``dask``, the number of partitions (default one per million rows);
            ignored without ``dask``, as :meth:`random_effects_frame` ignores it.

        Returns
        -------
        pandas or Dask DataFrame
            Variances in the units of the response squared.

        Raises
        ------
        SpecError
            ``vc`` false for a model without ``exog_re`` random effects (variance
            components only), whose frame would have no column: their variances are
            the long frame of ``vc=True``; ``vc`` or ``dask`` not a Python or numpy
            bool.
        """
        return self._re_frame(
            "random_effects_var",
            "gives the conditional variances",
            lambda: cov_diagonal(self._blup_cov, self.k_re),
            lambda gi, cols: cov_variances(self._blup_cov, gi, cols),
            vc,
            dask,
            npartitions,
        )

    def plot_random_effects(self, term=None, alpha: float = 0.05, ax=None, max_groups=None):
        """Caterpillar plot of the BLUPs with intervals
        (:func:`dmixed.results.plots.caterpillar`; needs matplotlib)."""
        return caterpillar(self, term=term, alpha=alpha, ax=ax, max_groups=max_groups)

    def plot_residuals(self, ax=None, max_points=None, seed: int = 0):
        """Residuals against fitted values (:func:`dmixed.results.plots.residual_plot`;
        needs matplotlib)."""
        return residual_plot(self, ax=ax, max_points=max_points, seed=seed)

    def random_effects_frame(self, vc: bool = False, dask: bool = False, npartitions=None):
        """BLUPs as one DataFrame (for many groups, instead of the dict).

        Parameters
        ----------
        vc : bool
            False: one row per group indexed by group, one column per ``exog_re``
            coordinate.  True: long format with columns ``group``, ``component``,
            ``column`` and ``value`` for the variance-component effects.
        dask : bool
            Return a Dask DataFrame (``npartitions`` defaults to one per million rows).

        Returns
        -------
        pandas or Dask DataFrame
            (G, k_re) wide; or with ``vc`` one row per (group, variance-component
            column) the group has, a group's rows in the order of its
            :attr:`random_effects` Series.

        Raises
        ------
        SpecError
            ``vc`` false for a model without ``exog_re`` random effects (variance
            components only), whose frame would have no column: their BLUPs are the
            long frame of ``vc=True``; ``vc`` or ``dask`` not a Python or numpy bool.
        """
        return self._re_frame(
            "random_effects_frame",
            "gives the BLUPs",
            lambda: self._blup[:, : self.k_re],
            lambda gi, cols: self._blup[gi, cols],
            vc,
            dask,
            npartitions,
        )

    def _re_frame(self, method: str, gives: str, wide, per_group, vc, dask, npartitions):
        """The frame of :meth:`random_effects_frame` and :meth:`random_effects_var`:
        ``wide()`` the (G, k_re) values of the ``exog_re`` coordinates, ``per_group(gi,
        cols)`` those of variance-component columns (:func:`blup_frame`)."""
        vc, dask = check_flag(vc, "vc"), check_flag(dask, "dask")
        if not vc:
            self._need_exog_re(
                f"{method}() {gives}",
                f"theirs are in {method}(vc=True), one row per group and column",
            )
        return blup_frame(
            self.names,
            self.group_labels,
            None if vc else wide(),
            per_group,
            self._vc_slot_cols,
            self.k_re,
            vc,
            dask,
            npartitions,
        )

    # -- prediction ----------------------------------------------------------------

    def predictor(self) -> Predictor:
        """What prediction needs from these results (a :class:`Predictor`), its estimates
        in the coordinates of the spec's rows (:mod:`dmixed.design.references`)."""
        spec = self.spec
        fe, blup = design_coordinates(spec, self._state.fe_params, self._blup)
        return Predictor(
            fe,
            self.group_labels,
            blup,
            self._vc_slot_cols,
            [len(c) for c in self.names.vc_column_names],
            self.k_re,
            (self.names.vc_names, self.names.vc_column_names),
            None if spec is None or not spec.vc_plans else (spec.vc_plans, spec.levels),
        )

    # -- simulation and the parametric bootstrap --------------------------------------

    def simulate(self, nsim: int = 1, seed=None, use_re: bool = False):
        """Responses drawn from the fitted model on the fitted rows, as lme4's
        ``simulate``: ``y* = Xβ̂ + Z̃b* + e*`` with ``e*_j ~ N(0, σ̂²/w_j)`` and the random
        effects redrawn, ``b*_i ~ N(0, σ̂²B̂*)`` (``use_re=True``: the BLUPs, lme4's
        ``use.u = TRUE``).  Returns a DataFrame (n, nsim) of columns ``sim_1 …``
        indexed like the fitted rows, one column for ``nsim = 1`` too, as lme4's
        data.frame (a lazy Dask DataFrame for a Dask fit; an ndarray (n, nsim) for a
        model built from arrays).  ``seed``: None (fresh entropy), a non-negative
        integer, a sequence of them, a numpy ``SeedSequence`` or ``BitGenerator``
        (``numpy.random.default_rng(seed)``), or a ``Generator`` or ``RandomState`` used
        as it is; anything else raises :class:`~dmixed.errors.SpecError`.  The same seed
        draws the same responses whatever the partitioning of the rows (an in-process
        fit and a Dask fit of the same rows in the same order draw the same).  See
        :func:`dmixed.results.simulate.simulate_fitted`.
        """
        return simulate_fitted(self, nsim, seed, use_re)

    def bootstrap(
        self, n: int, seed=None, progress: bool = False, use_re: bool = False
    ) -> BootstrapResults:
        """Parametric bootstrap from the statistics alone (lme4's ``bootMer``): ``n``
        refits to responses drawn from the fit, with no data pass.  See
        :func:`dmixed.results.bootstrap.parametric_bootstrap` (a seed draws in the
        design's columns: where products of a column far from zero are read about a
        centre, other replicates than the same model with the column near zero; and in
        the statistics' column map, which on Dask each chain chooses from its first
        partition, so with a column far from zero the same seed may draw other
        replicates from the same rows partitioned otherwise).  The replicates' covariance
        columns hold ``cov_re`` and ``vcomp`` entries (Ψ, τ²), named
        ``"Group Var (cov_re)"``, ``"sub Var (vcomp)"``: :attr:`params` under the bare
        names holds Ψ/σ² and τ²/σ², statsmodels' parametrization
        (:class:`~dmixed.results.bootstrap.BootstrapResults`).
        """
        self._state.check_unpenalized("bootstrap")
        return parametric_bootstrap(self, n, seed=seed, progress=progress, use_re=use_re)

    # -- likelihood inference --------------------------------------------------------

    def profile_re(self, re_ix, vtype, num_low=5, dist_low=1.0, num_high=5, dist_high=1.0):
        """statsmodels' ``profile_re``: the log-likelihood with one relative variance held
        on a grid around its estimate (:func:`dmixed.results.profile_re.profile_re`)."""
        self._state.check_unpenalized("profile_re")
        return profile_re(self, re_ix, vtype, num_low, dist_low, num_high, dist_high)

    def confint(
        self, parm=None, level: float = 0.95, method: str = "profile", nsim=None, seed=None
    ) -> pd.DataFrame:
        """lme4's ``confint``: profile-likelihood (Wald, bootstrap) intervals in lme4's names.

        Rows ``.sig01``, …, ``.sigma``, then the fixed effects; columns as lme4's
        (``"2.5 %"``, ``"97.5 %"``).  The ``.sigNN`` rows follow lme4's order of the
        random-effects terms, by decreasing number of levels: the groups' term (the SDs
        and correlations of ``cov_re`` by columns of its lower triangle: SD, its
        correlations, next SD, ...) and each variance component, a term of its own (its
        SD; its levels are the (group, level) pairs with rows, lme4's
        ``(1 | group:component)``).  So a component with more levels than there are
        groups comes first: with ``re_formula="1"`` and a class component nested in
        schools, ``.sig01`` is the class SD and ``.sig02`` the school SD
        (:func:`dmixed.results.sdcor.sdcor_names`).  ``method="profile"`` profiles the
        ML deviance from the statistics (no data pass; a REML fit is refitted by ML
        first, as lme4); ``"Wald"`` gives ``β̂ ± z·se`` and NaN for the covariance
        parameters; ``"boot"`` gives the percentile intervals of a parametric bootstrap
        of ``nsim`` replicates (default 500, as lme4; ``seed`` as :meth:`bootstrap`) in
        the same rows, columns and scale (SDs, correlations, σ):
        :func:`dmixed.results.profile.boot_intervals`.  ``parm``: names, positions,
        ``"theta_"`` or ``"beta_"``.  See :mod:`dmixed.results.profile`.
        """
        self._state.check_unpenalized("confint")
        return confint_frame(self, method, level, parm, nsim=nsim, seed=seed)

    def profile_ci(self, alpha: float = 0.05) -> pd.DataFrame:
        """Profile-likelihood intervals for every variance (``cov_re`` diagonal and
        ``vcomp``): the squares of :meth:`confint`'s SD intervals (the ML profile, as
        lme4's), with the fit's estimates; rows the variances' names, in the order of
        :meth:`confint`'s SD rows (:func:`dmixed.results.profile.variance_intervals`)."""
        self._state.check_unpenalized("profile_ci")
        return variance_intervals(self, alpha)

    def compare_lr_test(self, restricted) -> tuple[float, float, int]:
        """Likelihood-ratio test of ``restricted`` (a sub-model) against this fit."""
        return _compare_lr_test(restricted, self)

    # -- statsmodels' per-observation statistics, not offered ----------------------

    @property
    def score_obsv(self):
        """Not offered: statsmodels' per-observation score.  Raises NotOfferedError."""
        raise NotOfferedError(_no_score_obs("score_obsv"))

    @property
    def covjac(self):
        """Not offered: statsmodels' outer-product-of-gradients covariance, made of
        per-observation scores.  Raises NotOfferedError."""
        raise NotOfferedError(_no_score_obs("covjac"))

    @property
    def bsejac(self):
        """Not offered: the standard errors of :attr:`covjac`.  Raises
        NotOfferedError."""
        raise NotOfferedError(_no_score_obs("bsejac"))

    @property
    def covjhj(self):
        """Not offered: statsmodels' sandwich covariance of per-observation scores.
        Raises NotOfferedError."""
        raise NotOfferedError(_no_score_obs("covjhj"))

    @property
    def bsejhj(self):
        """Not offered: the standard errors of :attr:`covjhj`.  Raises
        NotOfferedError."""
        raise NotOfferedError(_no_score_obs("bsejhj"))

    @property
    def hessv(self) -> tuple[np.ndarray, bool]:
        """``(hess, sing)``: the model's :meth:`~dmixed.MixedLM.hessian` at the estimates,
        ``model.hessian(params_object)``.

        Returns
        -------
        hess : ndarray (k_fe + k_re2 + k_vc, k_fe + k_re2 + k_vc)
            The Hessian of the profiled log-likelihood w.r.t. ``[β, vech_lt(Ψ*), τ*]``
            at the estimates; ``inv(-hess)`` is :meth:`cov_params`.
        sing : bool
            As :meth:`~dmixed.MixedLM.hessian`'s.

        Raises
        ------
        dmixed.NoModelError
            Loaded results without their model.

        Notes
        -----
        statsmodels' ``MixedLMResults.hessv`` is ``model.hessian(results.params)``:
        its ``hessian`` reads that plain array in the model's default ``use_sqrt``
        packing (the covariance part as a Cholesky factor of Ψ* and square roots of
        the variance components), so its value is the Hessian at another point than
        the estimate.  This is the Hessian at the estimate, the one whose negative
        inverse is :meth:`cov_params`, and so differs from statsmodels' value.
        """
        self._state.check_unpenalized("hessv")
        return self.model.hessian(self.params_object)

    def get_nlfun(self, fun):
        """Not offered (statsmodels' ``get_nlfun`` is not implemented either).

        Raises
        ------
        dmixed.NotOfferedError
            Always; a nonlinear function of the fixed effects can be tested by the
            delta method with :meth:`cov_params` and :meth:`t_test` of its gradient.
        """
        raise NotOfferedError(
            "get_nlfun is not offered (statsmodels does not implement it either): for a "
            "nonlinear function g of the fixed effects, t_test(grad g at fe_params) gives "
            "the delta-method standard error of its linearization"
        )

    #: statsmodels' penalty of the covariance parameters of a penalized fit: None, as
    #: dmixed fits no penalized likelihood
    cov_pen = None

    # -- saving ------------------------------------------------------------------

    @classmethod
    def load(cls, path, eval_env=None) -> MixedLMResults:
        """Restore results saved with :meth:`save` (statsmodels' ``Results.load``;
        :func:`dmixed.load`, whose arguments and errors it has: a results directory,
        never a pickle)."""
        return load(path, eval_env)

    def save(self, path) -> None:
        """Write a self-describing results directory, atomically (see :func:`dmixed.load`).

        A formula that calls functions of the caller's code is saved with their names
        marked, never their code: :func:`dmixed.load` then needs them (``eval_env``).

        Raises
        ------
        dmixed.PathExistsError
            ``path`` exists and is not a results directory (it is never replaced), or
            lies under a file (also a ``FileExistsError``); nothing is written.
        dmixed.PathError
            The nearest existing parent of ``path`` is not writable (an ``OSError``).
        """
        save_state(self.to_state(), path, str(self.summary()))

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        for key in (
            "_fitted_in_memory",
            "_resid_in_memory",
            "random_effects",
            "random_effects_cov",
        ):
            state.pop(key, None)  # lazy Dask collections or large arrays: recomputed
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        if "model" in state and "fitted_model" not in state:
            # results pickled before the model became a property kept it as "model"
            state["fitted_model"] = state.pop("model")
        for key in ("llf", "scale"):  # Python floats in results pickled before
            if key in state:
                state[key] = np.float64(state[key])
        self.__dict__.update(state)

    # -- display -----------------------------------------------------------------

    @property
    def is_singular(self) -> bool:
        """lme4's ``isSingular(fit)``: True when a variance is 0 or the random-effects
        covariance is rank-deficient, within lme4's tolerance 1e-4 on the relative
        Cholesky factor θ (the diagonal of ``L`` with ``L L' = cov_re / scale``, and
        ``sqrt(vcomp / scale)``; :func:`dmixed.results.singular.is_singular`).

        A function of the estimates alone: the same for fits in process, on Dask and
        loaded from a results directory.  ``optimizer.boundary`` is narrower: it lists
        the variances the optimizer settled at exactly zero, not a rank-deficient
        covariance whose variances are all positive (a correlation of ±1).
        :meth:`summary` says ``boundary (singular) fit`` where this is True.
        """
        return is_singular(self._state.cov_re_unscaled, self._state.vcomp, self._state.scale)

    def varcorr(self) -> pd.DataFrame:
        """Variances, standard deviations and correlations of the random effects, and
        σ̂, as lme4's ``as.data.frame(VarCorr(fit))`` (columns ``grp``, ``var1``,
        ``var2``, ``vcov``, ``sdcor``; :func:`dmixed.results.varcorr.varcorr_frame`)."""
        return varcorr_frame(self._state)

    def summary_frame(self, alpha: float = 0.05) -> pd.DataFrame:
        """statsmodels' coefficient table: fixed effects with z tests, variances with SEs.

        The ``Std.Err.`` of the variance and covariance rows is statsmodels' convention,
        kept as statsmodels prints it: :attr:`bse_re`, ``bse · √scale`` (the standard
        error of the relative parameter ``Ψ*`` times σ̂), which is *not* the standard
        error of the variance printed beside it (``Ψ = scale · Ψ*``, whose standard
        error with σ̂² held fixed is ``bse · scale``); read no interval from it: use
        :meth:`confint` (profile or bootstrap intervals of the SDs and correlations) or
        :meth:`profile_ci` (of the variances).  A covariance held at 0 by ``free`` has a
        NaN standard error (statsmodels prints 0.000: it is no estimate)."""
        return coefficient_table(self._state, alpha)

    def summary(
        self,
        alpha: float = 0.05,
        *,
        yname: str | None = None,
        xname_fe: list[str] | None = None,
        xname_re: list[str] | None = None,
        title: str | None = None,
    ) -> Summary:
        """A statsmodels-style summary (print it, or ``as_text()`` / ``as_html()``;
        ``tables`` as statsmodels').  ``yname``, ``xname_fe``, ``xname_re`` and ``title``
        replace the default names and title (:meth:`Summary.of`).

        The ``Std.Err.`` of the variance and covariance rows is statsmodels' convention,
        kept as statsmodels prints it: :attr:`bse_re`, ``bse · √scale`` (the standard
        error of the relative parameter ``Ψ*`` times σ̂), which is *not* the standard
        error of the variance printed beside it (``Ψ = scale · Ψ*``, whose standard
        error with σ̂² held fixed is ``bse · scale``); read no interval from it: use
        :meth:`confint` (profile or bootstrap intervals of the SDs and correlations) or
        :meth:`profile_ci` (of the variances)."""
        return Summary.of(
            self._state, alpha, yname=yname, xname_fe=xname_fe, xname_re=xname_re, title=title
        )

    def _repr_html_(self) -> str:
        return self.summary().as_html()

    def __repr__(self) -> str:
        return (
            f"<dmixed MixedLMResults: {self.method}, nobs={self.nobs}, groups={self.n_groups}, "
            f"llf={self.llf:.4f}, converged={self.converged}>"
        )


def _no_score_obs(name: str) -> str:
    return (
        f"{name} is not offered: it is made of per-observation scores, and a mixed "
        "model's log-likelihood does not split over observations (the rows of a group "
        "are correlated), only over groups; statsmodels' MixedLM has no score_obs and "
        f"fails on {name} too. cov_params() and bse are the model-based covariance of "
        "the estimates, not a robust one; a per-group sandwich is not offered either"
    )


def _state_effect_names(state: ResultsState, gi: int) -> tuple[list[str], np.ndarray]:
    """Names of group gi's random effects and their padded slot positions, from the
    state record alone: the by-group dicts' lookups read it, never the results that
    cache the dicts (that would be a reference cycle, which keeps the fitted model and
    its statistics, on a cluster too, until Python's cyclic garbage collector runs)."""
    return effect_names(state.names, state.k_re, state.vc_slot_cols, gi, state.vc_empty_cols)


def load(path, eval_env=None) -> MixedLMResults:
    """Restore results saved with :meth:`MixedLMResults.save`.

    ``eval_env``: for a model whose formula called functions of the code that fitted
    it (``MixedLM.from_formula``'s ``eval_env``), a mapping of those names to the
    functions; the results directory lists their names, never their code, and
    loading it without them is refused.

    The restored object prints ``summary()``, gives every estimate, covariance and
    the fit log, the random effects, and predicts on new data (formula models) or new
    arrays, without the original data.  Profile likelihoods need the statistics and
    are not available on loaded results.

    Raises
    ------
    dmixed.PathNotFoundError
        ``path`` does not exist, is a file, or is a directory without
        ``estimates.json`` (also a ``FileNotFoundError``).
    dmixed.CheckpointError
        The directory is not dmixed's, is of a newer format, or is damaged; or its
        formula uses functions ``eval_env`` does not give.
    """
    return MixedLMResults.from_state(load_state(path, eval_env))
