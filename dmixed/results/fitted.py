"""Fitted values, residuals and predictions of fitted results: the part of
:class:`~dmixed.results.results.MixedLMResults` that reads rows (the fitted model's, in
memory or a Dask collection, or new data), through its :meth:`predictor`."""

from __future__ import annotations

from functools import cached_property

import numpy as np
import pandas as pd

from ..design import is_dask
from ..design.centres import design_rows
from ..errors import SpecError
from ..fit.options import check_flag
from .new_levels import check_new_levels
from .prediction import check_new_groups, formula_data, predict_dask, predict_frame
from .prediction_error import get_prediction as _get_prediction

__all__ = ["FittedValues"]


class FittedValues:
    """Predictions, ``fittedvalues`` and ``resid`` of results that have ``model``,
    ``spec`` and :meth:`predictor` (a :class:`~dmixed.results.prediction.Predictor`);
    the fitted values and residuals of rows in memory are kept once computed, and
    :meth:`remove_data` drops them with the model's data."""

    def _fitted_rows(self):
        """The fitted model's in-memory rows (None for loaded results and Dask fits)."""
        return None if self.fitted_model is None else self.fitted_model.rows

    def _fitted_source(self):
        """The fitted model's Dask DataFrame (None unless a Dask fit of this session)."""
        return None if self.fitted_model is None else self.fitted_model.source

    def predict(
        self,
        data=None,
        include_random: bool = False,
        *,
        exog=None,
        exog_re=None,
        groups=None,
        new_groups: str = "population",
        new_levels: str = "error",
    ):
        """Predicted means for new (or the fitted) data.

        Parameters
        ----------
        data : pandas or Dask DataFrame, optional
            New data with the columns the formula uses (formula models); the response
            and weights need not be there.  A Dask DataFrame gives a lazy Dask Series
            with its partitioning.  For a model built from arrays, the new ``exog``
            (statsmodels' first argument).
        include_random : bool
            False (default, as statsmodels): the fixed part ``X β̂``.  True: add the
            group's BLUPs, ``X β̂ + Z̃ γ̂_group`` (lme4's ``predict`` with
            ``re.form = NULL``).  Group keys find their group by the rule the fit read
            them with: ``5`` and ``5.0`` are one group; text keys for groups fitted as
            numbers (or the other way round) are an error, never a silent population
            prediction.  A row whose group key is missing (None, NaN) is predicted NaN,
            as a row missing any column the prediction uses (a column of missing keys
            only too): its group is unknown, which is not an unseen group.
        exog, exog_re, groups : array_like, optional
            For models built from arrays: the designs and group labels of new rows.
        new_groups : {"population", "nan", "error"}
            With ``include_random``, what rows of groups the fit did not see get:
            the population prediction ``X β̂`` (their random effects have mean zero;
            an :class:`~dmixed.errors.UnseenGroupsWarning` counts them), NaN, or a
            :class:`~dmixed.errors.DataError` naming them (lme4's
            ``allow.new.levels = FALSE``).  For Dask ``data`` the default
            ``"population"`` reads the group column (and the missing values of the
            columns the prediction uses) once, at this call, to count the unseen
            groups, and warns once, here, with the totals of every partition; the
            rows are read again when the returned Series is computed.  Pass ``"nan"``
            or ``"error"`` for a call that reads nothing (``"error"`` raises when the
            Series is computed, naming the partition and its counts).
        new_levels : {"error", "population", "nan"}
            With ``include_random``, what rows of groups the fit saw get when they hold
            a level of a variance component's own column that the fit did not see: a
            :class:`~dmixed.errors.DataError` naming the groups and levels (default,
            lme4's ``allow.new.levels = FALSE``), the prediction with those random
            effects at zero, their mean (lme4's ``allow.new.levels = TRUE``,
            MixedModels.jl's ``new_re_levels = :population``), or NaN (``:missing``);
            see :mod:`dmixed.results.new_levels`.

            Side by side: an unseen *group* gets the population prediction with an
            :class:`~dmixed.errors.UnseenGroupsWarning` (``new_groups="population"``,
            the default), while an unseen *component level* inside a seen group is an
            error (``new_levels="error"``, the default); neither default follows the
            other.  lme4's ``allow.new.levels = FALSE`` refuses both
            (``new_groups="error"``); its ``TRUE`` predicts both at the population
            level (``new_levels="population"``).

        Returns
        -------
        pandas.Series (n,) for a pandas ``data``: every row, indexed like ``data``, NaN
        where a column the prediction uses is missing (as statsmodels' ``predict``); a
        lazy Dask Series for Dask data (the same, partition by partition); an ndarray
        for arrays, and for the fitted rows (``missing="drop"``: the kept rows; a lazy
        Dask Series of them, indexed as in the fitted collection, for a Dask fit).

        Raises
        ------
        ValueError
            Dask ``data`` for a model built from arrays; no data for loaded results
            or after :meth:`remove_data`;
            ``exog`` of the wrong width; ``include_random`` without ``groups``; group
            keys of another class than the fitted ones; unseen groups with
            ``new_groups="error"``; new levels with ``new_levels="error"``; a
            ``new_groups`` or ``new_levels`` not listed; ``include_random`` not a
            Python or numpy bool (SpecError); Dask data that cannot
            be read (:func:`~dmixed.results.prediction.predict_dask`).
        """
        include_random = bool(check_flag(include_random, "include_random"))
        check_new_groups(new_groups)
        check_new_levels(new_levels)
        data, exog = formula_data(self.spec, data, exog)
        if data is not None:
            if self.spec is None:
                raise SpecError(
                    "predict(data) needs a model built with from_formula; "
                    "pass exog= (and exog_re=, groups=) instead"
                )
            if is_dask(data):
                return predict_dask(
                    self.predictor(),
                    self.spec,
                    data,
                    include_random,
                    new_groups=new_groups,
                    new_levels=new_levels,
                )
            return predict_frame(
                self.predictor(), self.spec, data, include_random, new_groups, new_levels
            )
        if exog is None:
            source = self._fitted_source()
            if source is not None:  # a Dask fit: lazily, as fittedvalues
                what = predict_dask(
                    self.predictor(), self.spec, source, include_random, "fittedvalues"
                )
                return what.rename(None)
            rows = self._fitted_rows()
            if rows is None:
                raise SpecError(
                    "no data given and the fitted rows are not available (loaded "
                    "results, or remove_data())"
                )
            return self.predictor().predict(rows, include_random)
        exog = design_rows(self.spec, exog)  # the formula's columns: as the spec's rows
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
        their index; built at each access, so a persisted input whose data are gone (its
        client closed or restarted, its futures cancelled) is refused (DataError) here,
        and one taken while they were held is refused with the same DataError when it is
        computed after they are gone, not with Dask's "Missing dependency"
        (:func:`~dmixed.design.persisted_task.checked_task`).
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
        if self.fitted_model is not None:
            self.fitted_model.remove_data()
