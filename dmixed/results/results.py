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

from ..design import ModelNames, is_dask
from ..errors import DataError, SpecError
from ..fit.coordinates import Coordinates
from ..fit.params import MixedLMParams
from ..fit.summary import OptSummary
from ..inference import compare_lr_test as _compare_lr_test
from ..io import ResultsState, load_state, save_state
from ..stats import check_identifiable
from ..stats.blup_cov import cov_block, cov_diagonal
from .bootstrap import BootstrapResults, parametric_bootstrap
from .by_group import ByGroup
from .contrasts import t_test, wald_test
from .covariance import covariance_of_estimates
from .identification import warn_unidentified
from .plots import caterpillar, residual_plot
from .prediction import Predictor, check_new_groups, formula_data, predict_dask, predict_frame
from .prediction_error import get_prediction as _get_prediction
from .profile import confint_frame, variance_intervals
from .profile_re import profile_re
from .simulate import simulate_fitted
from .summary import Summary, coefficient_table
from .varcorr import varcorr_frame

__all__ = ["MixedLMResults", "load"]


class MixedLMResults:
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
        profile likelihoods need its data or statistics.
    """

    def __init__(self, state: ResultsState, model=None) -> None:
        self.model = model
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
        self.fit_history = state.history
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
        self.llf = state.llf
        self.scale = state.scale
        self.param_names = state.param_names
        self.packed_params = state.packed_params
        self.vcomp = state.vcomp
        self.group_labels = state.group_labels
        self.group_sizes = state.group_sizes
        self._cov = state.cov_params
        self._a_inv = state.a_inv
        self._blup = state.blup
        self._blup_cov = state.blup_cov
        self._vc_slot_cols = state.vc_slot_cols

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
        boundary = list(optimize_result.boundary)
        cov = covariance_of_estimates(
            hessian,
            k=model.k_fe + layout.n_params,
            k_fe=model.k_fe,
            at_zero=layout.boundary_mask(boundary, use_sqrt=False),
            conditional=float(prof.scale) * prof.a_inv,
            cov_fe=cov_fe,
            identifiable=_identifiable(stats, model),
            free=free,
        )
        state = _record_fit(
            model,
            stats,
            reml,
            (packed, prof, llf, cov),
            cov_fe,
            optimize_result,
            fit_seconds,
            coords,
        )
        res = cls(state, model=model)
        if _identifiable(stats, model):  # else the fixed effects' warning says so
            warn_unidentified(
                hessian,
                model.k_fe,
                layout.boundary_mask(boundary, use_sqrt=False) | (False if free is None else ~free),
                lambda: res.param_names[model.k_fe :],
            )
        return res

    # -- estimates as pandas objects (made on first use: a fit that reads a few
    # -- numbers does not pay for pandas' indexes) ------------------------------

    @cached_property
    def optimizer(self) -> OptSummary:
        """The optimizer's record: settings and tolerances, start and final values,
        methods and the per-iteration log (made on first use)."""
        return self._state.optimizer()

    @cached_property
    def _param_index(self) -> pd.Index:
        return pd.Index(self.param_names)

    def _shaped(self, named):
        """``named`` (a Series or DataFrame by parameter name) as the user's input calls
        for: pandas for a formula or pandas input (and loaded results), its values for
        a model of ndarrays (statsmodels' rule: arrays in, arrays out)."""
        return named if self.pandas_output else named.to_numpy()

    @property
    def pandas_output(self) -> bool:
        """Whether estimates, fitted values and residuals are pandas objects (see
        :attr:`dmixed.MixedLM.pandas_output`; True for loaded results)."""
        return getattr(self.model, "pandas_output", True)

    @cached_property
    def params(self) -> pd.Series | np.ndarray:
        """``[fe_params, vech_lt(Ψ*), τ*]`` by parameter name (see the class doc); an
        ndarray for a model of ndarrays, as every estimate below."""
        return self._shaped(pd.Series(self._state.params, index=self._param_index, name="params"))

    @cached_property
    def fe_params(self) -> pd.Series | np.ndarray:
        """The fixed effects β̂, by ``exog_names``."""
        fe = pd.Series(self._state.fe_params, index=self.names.exog_names, name="fe_params")
        return self._shaped(fe)

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
    def bse(self) -> pd.Series | np.ndarray:
        return self._shaped(pd.Series(self._state.bse, index=self._param_index, name="bse"))

    @cached_property
    def bse_fe(self) -> pd.Series | np.ndarray:
        k = self.k_fe
        return self._shaped(pd.Series(self._state.bse[:k], index=self._param_index[:k], name="bse"))

    @cached_property
    def bse_re(self) -> pd.Series | np.ndarray:
        with np.errstate(invalid="ignore"):  # NaN where the fit warned of the Hessian
            se = np.sqrt(self.scale * np.diag(self._cov)[self.k_fe :])
        return self._shaped(pd.Series(se, index=self.param_names[self.k_fe :]))

    @cached_property
    def tvalues(self) -> pd.Series | np.ndarray:
        return self.params / self.bse

    @cached_property
    def pvalues(self) -> pd.Series | np.ndarray:
        """Two-sided p-values from the normal distribution (as statsmodels' MixedLM)."""
        from scipy import special  # here: importing scipy costs more than most fits

        p = 2 * special.ndtr(-np.abs(np.asarray(self.tvalues)))
        return self._shaped(pd.Series(p, index=self.param_names))

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame | np.ndarray:
        """Wald intervals ``params ± z_{1−α/2} · bse``."""
        from scipy import special

        z = special.ndtri(1 - alpha / 2)
        est, se = np.asarray(self.params), np.asarray(self.bse)
        ci = pd.DataFrame({0: est - z * se, 1: est + z * se}, index=self.param_names)
        return self._shaped(ci)

    @property
    def hist(self) -> list[dict]:
        """The optimizer's per-iteration record (``fit_history``; statsmodels' name)."""
        return self.fit_history

    @property
    def df_modelwc(self) -> int:
        return self._state.df_modelwc

    @property
    def aic(self) -> float:
        """``−2(llf − df)`` with df = number of parameters + 1 (σ²); NaN under REML."""
        return self._state.aic

    @property
    def bic(self) -> float:
        """``−2 llf + log(nobs) df``; NaN under REML (as statsmodels)."""
        return self._state.bic

    # -- random effects -----------------------------------------------------------

    def _re_names(self, gi: int) -> tuple[list[str], np.ndarray]:
        """Names of group gi's random effects and their padded slot positions."""
        names = list(self.names.exog_re_names)
        pos = list(range(self.k_re))
        offset = self.k_re
        for comp, table in enumerate(self._vc_slot_cols):
            colnames = self.names.vc_column_names[comp]
            vname = self.names.vc_names[comp]
            for s, col in enumerate(table[gi]):
                if col >= 0:
                    names.append(f"{vname}[{colnames[col]}]")
                    pos.append(offset + s)
            offset += table.shape[1]
        return names, np.array(pos, dtype=np.int64)

    @cached_property
    def random_effects(self) -> dict:
        """Conditional means (BLUPs) of each group's random effects: ``B* u_i``.

        A dict group → Series, as statsmodels; each group's Series is made when it is
        first looked up (:class:`~dmixed.results.by_group.ByGroup`), so the dict of
        millions of groups is at hand at once.  See :meth:`random_effects_frame` for
        one DataFrame.  Finite on the boundary (computed in Λ-form).
        """

        def make(gi: int) -> pd.Series:
            names, pos = self._re_names(gi)
            return pd.Series(self._blup[gi, pos], index=names)

        return ByGroup(self.group_labels, make)

    @cached_property
    def random_effects_cov(self) -> dict:
        """Conditional covariance of each group's random effects: ``σ̂² Λ K_i⁻¹ Λ'``
        (a dict group → DataFrame, made on first lookup as :attr:`random_effects`)."""

        def make(gi: int) -> pd.DataFrame:
            names, pos = self._re_names(gi)
            block = cov_block(self._blup_cov, gi, pos)  # a new array: not copied again
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

    def random_effects_var(self) -> pd.DataFrame:
        """Conditional variances of the ``exog_re`` random effects: the diagonals of
        :attr:`random_effects_cov` (``σ̂² Λ K_i⁻¹ Λ'``) as one DataFrame (G, k_re), indexed
        and with columns as :meth:`random_effects_frame` (lme4's ``condVar``)."""
        diag = cov_diagonal(self._blup_cov, self.k_re)
        return pd.DataFrame(
            diag,
            index=pd.Index(self.group_labels, name=self.names.group_name),
            columns=self.names.exog_re_names,
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
        """
        if not vc:
            frame = pd.DataFrame(
                self._blup[:, : self.k_re],
                index=pd.Index(self.group_labels, name=self.names.group_name),
                columns=self.names.exog_re_names,
            )
        else:
            pieces = []
            offset = self.k_re
            for comp, table in enumerate(self._vc_slot_cols):
                gi, si = np.nonzero(table >= 0)
                colnames = np.asarray(self.names.vc_column_names[comp], dtype=object)
                pieces.append(
                    pd.DataFrame(
                        {
                            "group": self.group_labels[gi],
                            "component": self.names.vc_names[comp],
                            "column": colnames[table[gi, si]],
                            "value": self._blup[gi, offset + si],
                        }
                    )
                )
                offset += table.shape[1]
            frame = (
                pd.concat(pieces, ignore_index=True)
                if pieces
                else pd.DataFrame(columns=["group", "component", "column", "value"])
            )
        if dask:
            import dask.dataframe as dd

            parts = npartitions or max(1, len(frame) // 1_000_000)
            return dd.from_pandas(frame, npartitions=parts)
        return frame

    # -- prediction ----------------------------------------------------------------

    def predictor(self) -> Predictor:
        """What prediction needs from these results (a :class:`Predictor`)."""
        return Predictor(
            np.asarray(self._state.fe_params, dtype=np.float64),
            self.group_labels,
            self._blup,
            self._vc_slot_cols,
            [len(c) for c in self.names.vc_column_names],
            self.k_re,
        )

    def _fitted_rows(self):
        """The fitted model's in-memory rows (None for loaded results and Dask fits)."""
        return None if self.model is None else self.model.rows

    def _fitted_source(self):
        """The fitted model's Dask DataFrame (None unless a Dask fit of this session)."""
        return None if self.model is None else self.model.source

    def predict(
        self,
        data=None,
        include_random: bool = False,
        *,
        exog=None,
        exog_re=None,
        groups=None,
        new_groups: str = "population",
    ):
        """Predicted means for new (or the fitted) data.

        Parameters
        ----------
        data : pandas or Dask DataFrame, optional
            New data with the columns the formula uses (formula models); the response
            and weights need not be there.  A Dask DataFrame gives a lazy Dask Series
            with its partitioning.
        include_random : bool
            False (default, as statsmodels): the fixed part ``X β̂``.  True: add the
            group's BLUPs, ``X β̂ + Z̃ γ̂_group`` (lme4's ``predict`` with
            ``re.form = NULL``).  Group keys find their group by the rule the fit read
            them with: ``5`` and ``5.0`` are one group; text keys for groups fitted as
            numbers (or the other way round) are an error, never a silent population
            prediction.
        exog, exog_re, groups : array_like, optional
            For models built from arrays: the designs and group labels of new rows.
        new_groups : {"population", "nan", "error"}
            With ``include_random``, what rows of groups the fit did not see get:
            the population prediction ``X β̂`` (their random effects have mean zero;
            an :class:`~dmixed.errors.UnseenGroupsWarning` counts them), NaN, or a
            :class:`~dmixed.errors.DataError` naming them (lme4's
            ``allow.new.levels = FALSE``).

        Returns
        -------
        pandas.Series (n,) for a pandas ``data``: every row, indexed like ``data``, NaN
        where a column the prediction uses is missing (as statsmodels' ``predict``); a
        lazy Dask Series for Dask data (the same, partition by partition); an ndarray
        for arrays, and for the fitted rows (``missing="drop"``: the kept rows).

        Raises
        ------
        ValueError
            ``data`` for a model built from arrays; no data for loaded results;
            ``exog`` of the wrong width; ``include_random`` without ``groups``; group
            keys of another class than the fitted ones; unseen groups with
            ``new_groups="error"``; a ``new_groups`` not listed; Dask data that cannot
            be read (:func:`~dmixed.results.prediction.predict_dask`).
        """
        check_new_groups(new_groups)
        data, exog = formula_data(self.spec, data, exog)
        if data is not None:
            if self.spec is None:
                raise SpecError(
                    "predict(data) needs a model built with from_formula; "
                    "pass exog= (and exog_re=, groups=) instead"
                )
            if is_dask(data):
                return predict_dask(
                    self.predictor(), self.spec, data, include_random, new_groups=new_groups
                )
            return predict_frame(self.predictor(), self.spec, data, include_random, new_groups)
        if exog is None:
            rows = self._fitted_rows()
            if rows is None:
                raise SpecError(
                    "no data given and the fitted rows are not available (loaded "
                    "results, or remove_data())"
                )
            return self.predictor().predict(rows, include_random)
        return self.predictor().predict_arrays(exog, exog_re, groups, include_random, new_groups)

    #: Predictions with standard errors and intervals, as statsmodels'
    #: ``get_prediction`` (:func:`dmixed.results.prediction_error.get_prediction`).
    get_prediction = _get_prediction

    @property
    def fittedvalues(self):
        """Fitted values including the predicted random effects (as statsmodels), at the
        fit's rows (``missing="drop"``: the kept rows): a Series on their index for a
        model built from a pandas frame (as statsmodels' formula fits), an ndarray for
        arrays.  For Dask fits a lazy Series that, computed, holds the kept rows with
        their index; built at each access, so a persisted input whose data are gone is
        refused (DataError) here.
        """
        source = self._fitted_source()
        if source is not None:
            return predict_dask(self.predictor(), self.spec, source, True, "fittedvalues")
        return self._fitted_in_memory

    @cached_property
    def _fitted_in_memory(self):
        return self._by_row(self.predict(include_random=True))

    def _by_row(self, values: np.ndarray):
        """Values of the fitted rows as a Series indexed like the input's kept rows
        (pandas or formula input, as statsmodels), or the ndarray itself (arrays)."""
        rows = self._fitted_rows()
        if rows is None or rows.index is None:
            return values
        return pd.Series(values, index=rows.index)

    @property
    def resid(self):
        """``endog − fittedvalues`` at the same rows (see :attr:`fittedvalues`)."""
        source = self._fitted_source()
        if source is not None:
            return predict_dask(self.predictor(), self.spec, source, True, "resid")
        return self._resid_in_memory

    @cached_property
    def _resid_in_memory(self):
        rows = self._fitted_rows()
        if rows is None:
            raise SpecError("the fitted rows are not available (loaded results, or remove_data())")
        return self._by_row(rows.endog - np.asarray(self.fittedvalues))

    # -- simulation and the parametric bootstrap --------------------------------------

    def simulate(self, nsim: int = 1, seed=None, use_re: bool = False):
        """Responses drawn from the fitted model on the fitted rows, as lme4's
        ``simulate``: ``y* = Xβ̂ + Z̃b* + e*`` with ``e*_j ~ N(0, σ̂²/w_j)`` and the random
        effects redrawn, ``b*_i ~ N(0, σ̂²B̂*)`` (``use_re=True``: the BLUPs, lme4's
        ``use.u = TRUE``).  See :func:`dmixed.results.simulate.simulate_fitted`.
        """
        return simulate_fitted(self, nsim, seed, use_re)

    def bootstrap(
        self, n: int, seed=None, progress: bool = False, use_re: bool = False
    ) -> BootstrapResults:
        """Parametric bootstrap from the statistics alone (lme4's ``bootMer``): ``n``
        refits to responses drawn from the fit, with no data pass.  See
        :func:`dmixed.results.bootstrap.parametric_bootstrap`.
        """
        return parametric_bootstrap(self, n, seed=seed, progress=progress, use_re=use_re)

    # -- likelihood inference --------------------------------------------------------

    def profile_re(self, re_ix, vtype, num_low=5, dist_low=1.0, num_high=5, dist_high=1.0):
        """statsmodels' ``profile_re``: the log-likelihood with one relative variance held
        on a grid around its estimate (:func:`dmixed.results.profile_re.profile_re`)."""
        return profile_re(self, re_ix, vtype, num_low, dist_low, num_high, dist_high)

    def confint(self, parm=None, level: float = 0.95, method: str = "profile") -> pd.DataFrame:
        """lme4's ``confint``: profile-likelihood (or Wald) intervals in lme4's names.

        Rows ``.sig01``, … (the SDs and correlations of the random effects, then the
        variance components' SDs), ``.sigma``, then the fixed effects; columns as lme4's
        (``"2.5 %"``, ``"97.5 %"``).  ``method="profile"`` profiles the ML deviance from
        the statistics (no data pass; a REML fit is refitted by ML first, as lme4);
        ``"Wald"`` gives ``β̂ ± z·se`` and NaN for the covariance parameters.  ``parm``:
        names, positions, ``"theta_"`` or ``"beta_"``.  See
        :mod:`dmixed.results.profile`.
        """
        return confint_frame(self, method, level, parm)

    def profile_ci(self, alpha: float = 0.05) -> pd.DataFrame:
        """Profile-likelihood intervals for every variance (``cov_re`` diagonal, then
        ``vcomp``): the squares of :meth:`confint`'s SD intervals (the ML profile, as
        lme4's), with the fit's estimates; rows the variances' names."""
        return variance_intervals(self, alpha)

    def t_test(self, r_matrix, use_t: bool | None = None):
        """Wald tests of each row of ``R β = q`` on the fixed effects (statsmodels'
        ``MixedLMResults.t_test``: normal reference unless ``use_t``).

        Parameters
        ----------
        r_matrix : array_like (m, k_fe), ``(R, q)``, or str
            ``R`` (then ``q = 0``), or text over the fixed effects' names such as
            ``"x1 = 0, x2 = 2 * x1"`` (formulaic's ``LinearConstraints`` grammar).
        use_t : bool, optional
            t on ``nobs − k_fe`` degrees of freedom instead of the normal.

        Returns
        -------
        dmixed.results.contrasts.ContrastResults
            ``effect``, ``sd``, ``tvalue``, ``pvalue``, ``conf_int()``,
            ``summary_frame()``.

        Raises
        ------
        SpecError
            ``R`` without ``k_fe`` columns; text that does not parse over the names.
        """
        return t_test(
            np.asarray(self._state.fe_params, dtype=np.float64),
            self._fe_cov(),
            r_matrix,
            list(self.names.exog_names),
            use_t,
            self.nobs - self.k_fe,
        )

    def wald_test(self, r_matrix, use_f: bool = False):
        """The joint Wald test of ``R β = q`` on the fixed effects: χ² on ``rank(R)``
        degrees of freedom, or F with ``use_f`` (statsmodels' ``wald_test``; ``r_matrix``
        as :meth:`t_test`)."""
        return wald_test(
            np.asarray(self._state.fe_params, dtype=np.float64),
            self._fe_cov(),
            r_matrix,
            list(self.names.exog_names),
            use_f,
            self.nobs - self.k_fe,
        )

    def _fe_cov(self) -> np.ndarray:
        return np.asarray(self._cov)[: self.k_fe, : self.k_fe]

    def compare_lr_test(self, restricted) -> tuple[float, float, int]:
        """Likelihood-ratio test of ``restricted`` (a sub-model) against this fit."""
        return _compare_lr_test(restricted, self)

    def remove_data(self) -> None:
        """Drop the data held by these results and their model (statsmodels'
        ``remove_data``), e.g. before pickling: the model's rows or Dask collection
        (:meth:`dmixed.design.model_data.ModelData.remove_data`) and the fitted values
        and residuals computed from them.  Estimates, standard errors, covariances,
        random effects, ``summary()`` and prediction on new data stay; ``fittedvalues``,
        ``resid``, ``predict()`` of the fitted rows and the model's ``endog``/``exog``
        then raise SpecError."""
        for key in ("_fitted_in_memory", "_resid_in_memory"):
            self.__dict__.pop(key, None)
        if self.model is not None:
            self.model.remove_data()

    # -- saving ------------------------------------------------------------------

    def save(self, path) -> None:
        """Write a self-describing results directory, atomically (see :func:`dmixed.load`).

        A formula that calls functions of the caller's code is saved with their names
        marked, never their code: :func:`dmixed.load` then needs them (``eval_env``).

        Raises
        ------
        FileExistsError
            ``path`` exists and is not a results directory (it is never replaced).
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

    # -- display -----------------------------------------------------------------

    def varcorr(self) -> pd.DataFrame:
        """Variances, standard deviations and correlations of the random effects, and
        σ̂, as lme4's ``as.data.frame(VarCorr(fit))`` (columns ``grp``, ``var1``,
        ``var2``, ``vcov``, ``sdcor``; :func:`dmixed.results.varcorr.varcorr_frame`)."""
        return varcorr_frame(self._state)

    def summary_frame(self, alpha: float = 0.05) -> pd.DataFrame:
        """statsmodels' coefficient table: fixed effects with z tests, variances with SEs."""
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
        replace the default names and title (:meth:`Summary.of`)."""
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


def _mapped_back(coords: Coordinates, psi_opt, prof) -> tuple[np.ndarray, float, np.ndarray]:
    """``(Ψ*, σ², β)`` in the data's own units.

    Raises
    ------
    DataError
        They are beyond float64's range there (columns in units near 1e±300): the fit
        itself is fine, its numbers cannot be written in those units.
    """
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            psi = coords.psi(psi_opt)
            beta = coords.beta(prof.beta)
            scale = coords.scale(prof.scale)
    except (OverflowError, np.linalg.LinAlgError):
        psi = np.full_like(psi_opt, np.inf)
        beta, scale = np.full_like(prof.beta, np.inf), np.inf
    if not (np.all(np.isfinite(psi)) and np.all(np.isfinite(beta)) and np.isfinite(scale)):
        raise DataError(
            "the estimates are beyond float64's range in the data's own units (a column "
            "whose values are near 1e±300?): rescale that column (e.g. to other units)"
        )
    return psi, scale, beta


def _record_fit(
    model, stats, reml, estimate, cov_fe, optimize_result, fit_seconds, coords: Coordinates
) -> ResultsState:
    """The state record of a fit: estimates in statsmodels' coordinates, the BLUPs.

    ``estimate`` is ``(packed, prof, llf, cov)`` in the optimizer's and the statistics'
    coordinates, mapped back here by ``coords``.
    """
    packed, prof, llf_std, cov_opt = estimate
    layout = stats.layout
    use_sqrt = model.use_sqrt
    n = int(stats.glob.n)
    psi_opt, tau_opt = layout.unpack(packed, use_sqrt)
    tau = coords.tau(tau_opt)
    psi, scale, beta = _mapped_back(coords, psi_opt, prof)
    rows, cols = layout.tril()
    # BLUPs and their conditional covariances: one kernel call, no data pass
    lam = coords.lam(packed, use_sqrt, stats.fit_layout)
    blup_std, cond_std = stats.engine.random_effects(lam, prof.w)
    blup, cond = coords.blups(blup_std, cond_std)
    entries = optimize_result.history
    llfs = coords.llf_all([e["llf"] for e in entries], n, reml)
    params = coords.from_opt_all([e["params"] for e in entries], optimize_result.use_sqrt)
    history = [
        {**entry, "llf": llf, "params": p.tolist()}
        for entry, llf, p in zip(entries, llfs, params, strict=True)
    ]
    return ResultsState(
        names=ModelNames.from_model(model),
        spec=getattr(model, "spec", None),
        use_sqrt=use_sqrt,
        reml=reml,
        method="REML" if reml else "ML",
        converged=bool(optimize_result.converged),
        n_iter=optimize_result.n_iter,
        n_evals=optimize_result.n_evals,
        optimizer_methods=optimize_result.methods,
        history=history,
        boundary=list(optimize_result.boundary),
        fit_seconds=fit_seconds,
        data_pass_seconds=stats.data_pass_seconds,
        cov_fe=cov_fe,
        nobs=n,
        n_groups=int(len(stats.group_labels)),
        n_dropped=int(stats.n_dropped),
        k_fe=model.k_fe,
        k_re=layout.k_re,
        k_vc=layout.k_vc,
        llf=coords.llf(llf_std, n, reml),
        scale=scale,
        param_names=model.param_names(),
        params=np.concatenate([beta, psi[rows, cols], tau]),
        packed_params=coords.from_opt(packed, use_sqrt),
        fe_params=beta,
        cov_re=scale * psi,
        cov_re_unscaled=psi,
        vcomp=scale * tau,
        cov_params=coords.covariance(cov_opt),
        a_inv=coords.a_inv(prof.a_inv),
        group_labels=stats.group_labels,
        group_sizes=stats.group_sizes,
        blup=blup,
        blup_cov=cond * scale,
        vc_slot_cols=stats.vc_slot_cols,
        optimizer_settings=optimize_result.settings(),
        initial_params=coords.from_opt(np.asarray(optimize_result.initial), use_sqrt),
        initial_llf=coords.llf(optimize_result.initial_llf, n, reml),
        grad_norm=float(optimize_result.grad_norm),
        cov_fe_statistics=_cov_fe_statistics(coords, cov_opt, model.k_fe),
        cov_re_statistics=_cov_re_statistics(coords, psi_opt, scale),
        statistics_columns=coords.columns,
        blup_cov_statistics=cond_std,
    )


def _cov_re_statistics(coords: Coordinates, psi_opt: np.ndarray, scale: float) -> np.ndarray:
    """``A Ψ̂ A' = σ̂² C Ψ_o C'`` (``C = A A_o⁻¹``): Ψ̂ in the statistics' coordinates
    from the optimizer's, not through the model's (which may have lost its digits)."""
    c = coords.re_map
    out = psi_opt if c is None else c @ psi_opt @ c.T
    return scale * 0.5 * (out + out.T)


def _cov_fe_statistics(coords: Coordinates, cov_opt: np.ndarray, p: int) -> np.ndarray:
    """``T cov(β̂) T' = s_y² cov(β̃)``: the optimizer's β̃ = Tβ/s_y block, unmapped."""
    cov = np.asarray(cov_opt, dtype=np.float64)[:p, :p] * float(coords.columns.y_scale) ** 2
    return 0.5 * (cov + cov.T)


def _identifiable(stats, model) -> bool:
    """Whether the model passes lme4's checks (else it was fitted with check_nobs="ignore")."""
    try:
        check_identifiable(stats, model.group_name, model.vc_names)
    except DataError:
        return False
    return True


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
    FileNotFoundError
        ``path`` is not a results directory.
    dmixed.CheckpointError
        The directory is not dmixed's, is of a newer format, or is damaged; or its
        formula uses functions ``eval_env`` does not give.
    """
    return MixedLMResults.from_state(load_state(path, eval_env))
