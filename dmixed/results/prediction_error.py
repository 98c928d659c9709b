"""Prediction standard errors and intervals (``results.get_prediction``).

For a row with fixed design ``x`` (p) and random design ``z`` of a fitted group i, the
conditional prediction ``x'β̂ + z'b̂_i`` estimates ``x'β + z'b_i`` with the prediction
error variance ``[x; z]' C [x; z]``, where ``C`` is the inverse of Henderson's (1975)
mixed-model-equations matrix ``[[X'R⁻¹X, X'R⁻¹Z], [Z'R⁻¹X, Z'R⁻¹Z + G⁻¹]]`` (``R = σ²W⁻¹``,
W the prior weights; ``G`` the random effects' covariance).
Its blocks of group i are, with ``M_i = Λ K_i⁻¹ Λ'`` the conditional covariance of
``b_i`` relative to σ² (finite on the boundary, where G⁻¹ is not) and
``H_i = M_i Z̃_i'X_i`` (r × p, the derivative of ``−b̂_i`` with respect to β̂)::

    C_ββ = cov(β̂)         C_βb_i = −cov(β̂) H_i'         C_b_i b_i = σ² M_i + H_i cov(β̂) H_i'

so that the variance is ``w' cov(β̂) w + σ² z'M_i z`` with ``w = x − H_i'z``: one p-vector
per row from per-group statistics the fit keeps (``Z̃_i'X_i``), in O(groups) once and
O(rows) after.  ``cov(β̂)`` is the fit's (``cov_fe``): Henderson's ``σ̂²(X'V⁻¹X)⁻¹`` with
``cov_fe="conditional"``; statsmodels' Hessian-based block otherwise, which adds the
uncertainty of the covariance parameters to β̂'s.  The covariance parameters themselves
are taken as known (as Henderson's, lme4's ``condVar`` and MixedModels.jl's do).
The conditional part is computed in the statistics' coordinates (columns shifted near
the data and scaled, :mod:`dmixed.stats.standardize`): in the model's own, ``w`` and
``z'M_i z`` of a column far from zero (timestamps near 1.7e9) cancel all their digits.

Random effects the fit did not see (a new group, or a variance-component column a
fitted group did not have, with ``new_levels="population"``) are predicted by their
mean, zero: the "mean" then targets the prediction's mean over them, and their
variance ``z'Ψ̂z`` (``Ψ̂ = cov_re``, each component's ``vcomp`` on its columns) enters
the observation interval only.  The
observation interval adds the row's residual variance σ̂²/w to the variance of the mean
(``w`` the row's prior weight: a fitted row's own, 1 for a new row unless ``weights``
gives it, as statsmodels' WLS ``get_prediction`` and lme4's ``simulate`` take it).  With
``include_random=False`` the prediction is ``x'β̂`` with variance ``x' cov(β̂) x`` and the
observation interval adds σ̂²/w only: the random effects are not sampled (merTools'
``predictInterval(which = "fixed")``); use ``include_random=True`` for intervals that
include a new group's random effects.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from ..design import is_dask
from ..design.centres import design_rows
from ..design.partitions import check_persisted, select_columns
from ..design.prepare import check_formula_dtypes, needed_columns
from ..errors import DataError, SpecError
from ..fit.options import check_flag
from ..inference import check_alpha
from ..stats.standardize import Standardization
from .new_levels import check_new_levels
from .prediction import (
    Predictor,
    check_new_groups,
    formula_data,
    on_rows_with_new_levels,
    warn_unseen_dask,
)

__all__ = ["PredictionResults", "PredictionVariance", "conditional_cross", "get_prediction"]

#: the columns of :meth:`PredictionVariance.moments`' frames
MOMENTS = ("mean", "var_mean", "var_obs")
#: statsmodels' ``PredictionResults.summary_frame`` columns
SUMMARY = ("mean", "mean_se", "mean_ci_lower", "mean_ci_upper", "obs_ci_lower", "obs_ci_upper")


@dataclasses.dataclass
class PredictionVariance:
    """What prediction variances need from a fit (shipped to Dask workers as one task).

    Attributes
    ----------
    predictor : Predictor
        β̂, the BLUPs and their slots (the predictions themselves).
    cov_fe : ndarray (p, p)
        cov(β̂) (the β block of ``cov_params()``).
    scale : float
        σ̂².
    cov_re : ndarray (q, q)
        Ψ̂ (``cov_re``, on the reported scale).
    vcomp : ndarray (k_vc,)
        The variance components' variances.
    blup_cov : ndarray (G, r, r) or None
        σ̂² M_i, the BLUPs' conditional covariances (``include_random`` only).
    cross : ndarray (G, r, p) or None
        ``H_i = M_i Z̃_i'X_i`` (:func:`conditional_cross`; ``include_random`` only).
    columns : Standardization or None
        The statistics' column map: when given, ``cov_fe``, ``cov_re``, ``blup_cov``
        and ``cross`` are in its coordinates (``T cov(β̂) T'``, ``A Ψ̂ A'``,
        ``Ã σ̂²M_i Ã'``, ``Ã H_i T⁻¹``... as :func:`in_statistics` maps them) and each
        row's ``x``, ``z`` is mapped to ``x T⁻¹``, ``z Ã⁻¹`` before the quadratic forms:
        with columns far from zero (timestamps near 1.7e9) the forms in the raw
        coordinates cancel all their digits.
    vc_scale : ndarray (k_vc,) or None
        ``s_l`` of each variance component (with ``columns``).
    """

    predictor: Predictor
    cov_fe: np.ndarray
    scale: float
    cov_re: np.ndarray
    vcomp: np.ndarray
    blup_cov: np.ndarray | None = None
    cross: np.ndarray | None = None
    columns: Standardization | None = None
    vc_scale: np.ndarray | None = None

    def moments(
        self,
        rows,
        include_random: bool,
        name: str,
        new_groups: str,
        new_levels: str = "error",
        squares: np.ndarray | None = None,
        weights: np.ndarray | None = None,
        warn: bool = True,
    ) -> np.ndarray:
        """``[mean, var_mean, var_obs]`` (n, 3) of the prediction of each row of ``rows``
        (anything with ``exog``, ``exog_re``, ``groups``, ``vc_cols``, ``vc_vals``: design
        matrices, :class:`~dmixed.results.prediction.NewRows`); ``name`` and
        ``new_groups`` as :meth:`Predictor.positions`, ``new_levels`` as
        :meth:`Predictor.new_to_groups` (levels new to a row's group: NaN, or their
        variance in the observation interval); ``squares`` (n, k_vc): per component the
        sum of squares of the values of levels the fit never saw, dropped from ``rows``
        (their variance enters the observation interval too); ``weights`` (n,): the rows'
        prior weights, their residual variance σ̂²/w (None: 1); ``warn=False``: no
        warning for unseen groups (a partition of Dask data: :func:`moments_dask`
        warned once, at the call)."""
        mean = rows.exog @ self.predictor.fe_params
        x, z = self.standard_rows(rows)
        fixed_var = quadratic(x, self.cov_fe)
        residual = self.scale if weights is None else self.scale / weights
        if not include_random:
            return np.column_stack([mean, fixed_var, fixed_var + residual])
        idx = self.predictor.positions(rows.groups, name, new_groups, warn)
        seen = idx >= 0
        slots = self.predictor.vc_slots(idx, rows.vc_cols, rows.vc_vals)
        fresh = self.predictor.new_to_groups(idx, slots, rows, new_levels, name)
        mean = mean + self.predictor.random_part(
            idx, rows.exog_re, rows.vc_cols, rows.vc_vals, slots
        )
        var_mean = fixed_var
        if seen.any():
            sel = slice(None) if seen.all() else seen  # no copies when all are seen
            pos, val = slot_design(self.predictor.k_re, z[sel], slots, sel, rows, self.vc_scale)
            var_mean[sel] = self.conditional_variance(x[sel], idx[sel], pos, val)
        var_obs = var_mean + self.unseen_variance(seen, z, rows, slots) + residual
        if squares is not None:
            var_obs = var_obs + squares @ self.vcomp
        out = np.column_stack([mean, var_mean, var_obs])
        if new_groups == "nan":
            out[~seen] = np.nan
        if new_levels == "nan":
            out[fresh] = np.nan
        return out

    def conditional_variance(self, x, gi, pos, val) -> np.ndarray:
        """``w' cov(β̂) w + z' σ̂²M_i z`` with ``w = x − H_i'z`` for rows of fitted groups
        ``gi``, their random design given sparsely by padded positions ``pos`` and values
        ``val`` (n, m) (see the module)."""
        if self.cross is None or self.blup_cov is None:
            raise SpecError("include_random=True needs the BLUPs' cross terms (conditional_cross)")
        r = self.blup_cov.shape[1]
        if pos.shape[1] == r and not self.predictor.slot_cols:  # every slot, in order
            cross, cond = self.cross.take(gi, axis=0), self.blup_cov.take(gi, axis=0)
        else:
            at = gi[:, None] * r + pos  # (n, m): row of the group's slot in (G·r, ·)
            cross = self.cross.reshape(-1, self.cross.shape[2])[at]  # (n, m, p)
            cond = self.blup_cov.reshape(-1)[at[:, :, None] * r + pos[:, None, :]]  # (n, m, m)
        w = x - np.einsum("na,naj->nj", val, cross)
        return quadratic(w, self.cov_fe) + quadratic_rows(val, cond)

    def standard_rows(self, rows) -> tuple[np.ndarray, np.ndarray]:
        """The rows' ``x`` and ``exog_re`` part of ``z`` in the coordinates of
        ``cov_fe`` and ``cov_re``: ``x T⁻¹ = (x − x_0 c_x)/s_x`` column by column
        (``x_0`` the intercept column; exact up to one rounding), ``z A⁻¹`` alike."""
        cols = self.columns
        if cols is None:
            return rows.exog, rows.exog_re
        x = to_statistics(rows.exog, cols.x_shift, cols.x_scale, cols.x_intercept)
        z = rows.exog_re
        if z.shape[1]:  # fixed-only rows carry no random design
            z = to_statistics(z, cols.z_shift, cols.z_scale, cols.z_intercept)
        return x, z

    def unseen_variance(self, seen, exog_re, rows, slots) -> np.ndarray:
        """The variance of the random effects the fit did not see, for each row:
        ``z'Ψ̂z`` for rows of unseen groups (``exog_re``: their ``z`` in ``cov_re``'s
        coordinates), and ``vcomp_l (Σ v)²`` per column of component l without a slot
        (entries of one column added first)."""
        out = np.zeros(len(seen))
        if (~seen).any() and self.cov_re.size:
            out[~seen] = quadratic(exog_re[~seen], self.cov_re)
        for comp, ((_, slot), cols, vals) in enumerate(
            zip(slots, rows.vc_cols, rows.vc_vals, strict=True)
        ):
            new = (cols >= 0) & (vals != 0) & (slot < 0)
            v = np.where(new, vals, 0.0)
            same = cols[:, :, None] == cols[:, None, :]
            out += self.vcomp[comp] * np.einsum("na,nb,nab->n", v, v, same)
        return out


def quadratic(x: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """``x_n' cov x_n`` for each row of ``x`` (n, k)."""
    return np.einsum("nj,jk,nk->n", x, cov, x)


def quadratic_rows(v: np.ndarray, covs: np.ndarray) -> np.ndarray:
    """``v_n' covs_n v_n`` for each row of ``v`` (n, m) and matrix of ``covs`` (n, m, m)."""
    return np.einsum("na,nab,nb->n", v, covs, v)


def to_statistics(values: np.ndarray, shift, scale, intercept: int) -> np.ndarray:
    """Rows ``v`` (n, k) of a design mapped by :class:`~dmixed.stats.standardize.
    Standardization`'s ``V = Ṽ (S + e_0 c')``: ``ṽ_j = (v_j − v_0 c_j)/s_j``, with
    ``v_0`` the intercept column (``intercept`` < 0: no shifts)."""
    if intercept < 0:
        return values / scale
    return (values - values[:, intercept : intercept + 1] * shift) / scale


def slot_design(
    k_re: int, exog_re, slots, seen, rows, vc_scale=None
) -> tuple[np.ndarray, np.ndarray]:
    """The random design of rows of fitted groups (``seen``: a mask or a slice) as padded
    positions and values (n_seen, m): the ``k_re`` columns, then each component's entries
    at their slots (:meth:`Predictor.vc_slots`), divided by the component's scale
    (``vc_scale`` (k_vc,), powers of two; None: 1); entries without a slot get value 0 at
    position 0."""
    n = exog_re.shape[0]
    pos = [np.broadcast_to(np.arange(k_re), (n, k_re))]
    val = [exog_re]
    for comp, ((offset, slot), vals) in enumerate(zip(slots, rows.vc_vals, strict=True)):
        ok = slot[seen] >= 0
        vals = vals[seen] if vc_scale is None else vals[seen] / vc_scale[comp]
        pos.append(np.where(ok, offset + slot[seen], 0))
        val.append(np.where(ok, vals, 0.0))
    return np.concatenate(pos, axis=1).astype(np.int64), np.concatenate(val, axis=1)


def statistics_map(cols, vc_widths) -> np.ndarray:
    """``Ã = blockdiag(A, diag(s_slot))`` (r × r) with ``Z = Z̃ Ã`` (the random design,
    variance-component slots included; :mod:`dmixed.stats.standardize`)."""
    q = cols.k_re
    scales = cols.slot_scales(vc_widths)
    out = np.zeros((q + scales.size, q + scales.size))
    out[:q, :q] = cols.re_matrix()
    out[q:, q:] = np.diag(scales)
    return out


def conditional_cross(state, stats) -> tuple[np.ndarray, np.ndarray]:
    """``M̃_i = Ã M_i Ã'`` (G, r, r) and ``H̃_i = M̃_i Z̃_i'X̃_i`` (G, r, p) in the
    statistics' coordinates (``Z = Z̃ Ã``, ``X = X̃ T``, :func:`statistics_map`), where
    the row's ``w̃ = x̃ − H̃_i'z̃ = (x − H_i'z) T⁻¹`` keeps its digits.

    ``Z̃_i'X̃_i`` comes from the statistics (``engine.gather()``); ``M̃_i`` is the
    results' ``blup_cov_statistics`` as the kernels gave it (or, for results without it,
    ``Ã (blup_cov / scale) Ã'``, which loses digits where a column is far from zero).
    Both are those of the weights as summed, ``w / s_w``: ``M̃_i`` relative to
    ``σ²/s_w``, ``Z̃_i'X̃_i`` ``1/s_w`` times, so ``H̃_i`` is free of ``s_w``.

    Parameters
    ----------
    state : dmixed.io.ResultsState
    stats : dmixed.stats.FittedStatistics
        The statistics the results were fitted from (same groups, same order).

    Raises
    ------
    SpecError
        The statistics are of other groups or another random design than the results.
    """
    _, zxy = stats.engine.gather()
    p = state.k_fe
    zx = np.array(zxy[:, :, :p], dtype=np.float64)
    if zx.shape[:2] != state.blup_cov.shape[:2]:
        raise SpecError("the statistics are not those of these results (groups or columns)")
    a = statistics_map(stats.columns, stats.layout.vc_widths)
    if state.blup_cov_statistics is not None:  # as the kernels gave it: all its digits
        m = np.array(state.blup_cov_statistics, dtype=np.float64)
    else:  # the padded (G, r, r) form (a RaggedCov is expanded)
        cov = np.asarray(state.blup_cov, dtype=np.float64)
        m = np.matmul(np.matmul(a, cov / state.scale), a.T)
        if stats.columns.weight_scale != 1.0:  # relative to σ̃² = σ²/s_w, as the kernels'
            m = m * stats.columns.weight_scale
    return m, m @ zx


class PredictionResults:
    """Predictions with standard errors and intervals, as statsmodels' ``PredictionResults``
    (``statsmodels.regression._prediction``): normal intervals, as MixedLM's Wald tests.

    Series and frames are indexed like the input rows for pandas (and formula) input,
    lazy Dask objects of the same partitions for Dask input, ndarrays for arrays.

    Parameters
    ----------
    moments : pandas.DataFrame or dask.dataframe.DataFrame
        Columns ``mean``, ``var_mean``, ``var_obs`` (see :func:`get_prediction`).
    pandas : bool
        Give pandas (or Dask) objects; False: ndarrays.
    alpha : float
        The default level of :meth:`conf_int` and :meth:`summary_frame`.
    """

    def __init__(self, moments, pandas: bool, alpha: float = 0.05) -> None:
        self.moments = moments
        self.pandas = pandas
        self.alpha = check_alpha(alpha)

    def _out(self, value):
        return value if self.pandas else value.to_numpy()

    @property
    def predicted(self):
        """The predictions (n,): ``x'β̂`` (+ ``z'b̂``)."""
        return self._out(self.moments["mean"].rename(None))

    predicted_mean = predicted

    @property
    def var_pred_mean(self):
        """The variance of each prediction's error (n,)."""
        return self._out(self.moments["var_mean"].rename(None))

    @property
    def se_mean(self):
        """Standard errors of the predictions (n,)."""
        return self._out(np.sqrt(self.moments["var_mean"]).rename(None))

    se = se_mean

    @property
    def se_obs(self):
        """Standard errors of a new observation's prediction (n,)."""
        return self._out(np.sqrt(self.moments["var_obs"]).rename(None))

    def conf_int(self, obs: bool = False, alpha: float | None = None):
        """Intervals ``mean ± z_{1−α/2} se`` (statsmodels' signature): of the mean, or
        with ``obs`` of a new observation; columns ``lower``, ``upper`` (n, 2).
        ``obs`` not a Python or numpy bool is a SpecError."""
        which = "obs" if check_flag(obs, "obs") else "mean"
        return self._frame(which, self.alpha if alpha is None else alpha)

    def summary_frame(self, alpha: float | None = None):
        """statsmodels' table: ``mean``, ``mean_se``, ``mean_ci_lower``, ``mean_ci_upper``,
        ``obs_ci_lower``, ``obs_ci_upper`` (a DataFrame also for array input, indexed
        0..n-1 then, as statsmodels')."""
        return self._frame("summary", self.alpha if alpha is None else alpha)

    def _frame(self, which: str, alpha: float):
        alpha = check_alpha(alpha)
        if is_dask(self.moments):
            meta = interval_frame(self.moments._meta, which, alpha)
            return self.moments.map_partitions(interval_frame, which, alpha, meta=meta)
        out = interval_frame(self.moments, which, alpha)
        return out if which == "summary" else self._out(out)


def interval_frame(moments: pd.DataFrame, which: str, alpha: float) -> pd.DataFrame:
    """Normal intervals from a moments frame: ``which="mean"`` or ``"obs"`` (columns
    ``lower``, ``upper``), or ``"summary"`` (:data:`SUMMARY`)."""
    from scipy import special  # here: importing scipy costs more than most fits

    z = special.ndtri(1.0 - alpha / 2.0)
    mean = moments["mean"].to_numpy()
    se = {k: np.sqrt(moments[f"var_{k}"].to_numpy()) for k in ("mean", "obs")}
    if which != "summary":
        pair = {"lower": mean - z * se[which], "upper": mean + z * se[which]}
        return pd.DataFrame(pair, index=moments.index)
    values = [mean, se["mean"], mean - z * se["mean"], mean + z * se["mean"]]
    values += [mean - z * se["obs"], mean + z * se["obs"]]
    return pd.DataFrame(dict(zip(SUMMARY, values, strict=True)), index=moments.index)


def moments_frame(
    df,
    variance,
    spec,
    include_random: bool,
    new_groups: str,
    new_levels: str = "error",
    weights=None,
    in_task: bool = False,
) -> pd.DataFrame:
    """:meth:`PredictionVariance.moments` of every row of a pandas frame, indexed like it:
    NaN where a column the prediction uses is missing; levels of the variance
    components the fit did not see follow ``new_levels``
    (:func:`~dmixed.results.prediction.on_rows_with_new_levels`); ``weights``: the rows'
    prior weights, a column of ``df`` or values (:func:`prediction_weights`);
    ``in_task``: ``df`` is a partition of Dask data, whose unseen groups are not warned
    of here (:func:`moments_dask` warned once, at the call)."""
    w = prediction_weights(weights, df)

    def compute(dm, squares):
        name = spec.group_name
        kept = w if w is None or dm.keep is None else w[dm.keep]
        return variance.moments(
            dm, include_random, name, new_groups, new_levels, squares, kept, not in_task
        )

    values = on_rows_with_new_levels(
        spec,
        df,
        variance.predictor,
        include_random,
        new_levels,
        compute,
        len(MOMENTS),
    )
    return pd.DataFrame(values, index=df.index, columns=list(MOMENTS))


def prediction_weights(weights, df=None, n: int | None = None) -> np.ndarray | None:
    """The prior weights of the rows predicted (None: 1 each): ``weights`` a column of
    ``df`` named by a string, one value, or one value per row (``n`` rows, or ``df``'s).
    A missing weight gives NaN intervals, as a missing covariate does.

    Raises
    ------
    DataError
        A name that is not a column of ``df``, values that are not numbers, of
        another length than the rows, or not positive.
    """
    if weights is None:
        return None
    label = "weights"
    if isinstance(weights, str):
        if df is None or weights not in df.columns:
            raise DataError(f"weights: {weights!r} is not a column of data")
        label, weights = f"weights column {weights!r}", df[weights]
    try:
        w = np.asarray(pd.to_numeric(pd.Series(np.ravel(weights))), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{label} must be numbers: {exc}") from exc
    rows = len(df) if df is not None else n
    if w.size == 1 and np.ndim(weights) == 0:
        w = np.full(rows, w[0]) if rows is not None else w
    elif rows is not None and w.size != rows:
        raise DataError(f"{label} has {w.size} values but the data has {rows} rows")
    bad = int(np.sum((w <= 0) | np.isinf(w)))
    if bad:
        raise DataError(
            f"{label}: {bad} values are not positive and finite; weights must be positive"
        )
    return w


def moments_dask(
    variance,
    spec,
    ddf,
    include_random: bool,
    new_groups: str,
    new_levels: str = "error",
    weights=None,
):
    """:func:`moments_frame` over the partitions of a Dask DataFrame, lazily (the
    variance object one task, a dependency of every partition); ``weights`` a column
    name or one value.  With ``include_random`` and ``new_groups="population"`` the
    group column is read once, here, to warn once of unseen groups with their totals
    (:func:`~dmixed.results.prediction.warn_unseen_dask`, as ``predict``); ``"nan"`` and
    ``"error"`` read nothing here.

    Raises
    ------
    SpecError
        ``weights`` of one value per row (a Dask frame's rows are not in memory).
    BadValuesError
        ``ddf`` declares a column the prediction reads in a formula of a dtype a fit
        refuses (:func:`~dmixed.design.prepare.check_formula_dtypes`).
    """
    check_persisted(ddf)
    if weights is not None and not isinstance(weights, str) and np.ndim(weights) != 0:
        raise SpecError(
            "weights of Dask data must be a column name or one value, not one value per row"
        )
    columns = needed_columns(spec, response=False, random=include_random)
    if isinstance(weights, str):
        if weights not in ddf.columns:
            raise DataError(f"weights: {weights!r} is not a column of data")
        columns = [*columns, weights] if weights not in columns else columns
    data = select_columns(ddf, columns, spec.group_name)
    # the declared dtypes, now, as predict_dask (each partition's where it is read)
    check_formula_dtypes(spec, data._meta, columns)
    from ..design.persisted_task import checked_task

    state = checked_task(variance, ddf)  # refuses persisted data gone, when computed
    if include_random and new_groups == "population":
        warn_unseen_dask(state.predictor, spec, data)  # an attribute of the one task
    meta = pd.DataFrame({k: pd.Series(dtype="float64") for k in MOMENTS})
    return data.map_partitions(
        moments_frame,
        state,
        spec,
        include_random,
        new_groups,
        new_levels,
        weights,
        True,
        meta=meta,
    )


def prediction_variance(results, include_random: bool) -> PredictionVariance:
    """The :class:`PredictionVariance` of fitted results; with ``include_random`` the
    BLUPs' cross terms from the fit's statistics (cached on the model: no data pass).

    Raises
    ------
    SpecError
        ``include_random`` for results without their model (loaded results).
    """
    state = results.to_state()
    p = state.k_fe
    cov_fe = np.asarray(state.cov_params, dtype=np.float64)[:p, :p]
    cov_re = np.asarray(state.cov_re, dtype=np.float64)
    blup_cov = cross = columns = vc_scale = None
    if include_random:
        model = results.fitted_model
        if model is None:
            raise SpecError(
                "get_prediction(include_random=True) needs the fit's per-group statistics "
                "(Z'X of each group), which loaded results do not have; "
                "include_random=False needs none"
            )
        stats = model.statistics(client=getattr(model, "cached_client", None))
        blup_cov, cross = conditional_cross(state, stats)
        blup_cov = blup_cov * (state.scale / stats.columns.weight_scale)
        columns = stats.columns
        vc_scale = columns.vc_scales(stats.layout.k_vc)
        t, a = columns.fe_matrix(), columns.re_matrix()
        cov_fe, cov_re = t @ cov_fe @ t.T, a @ cov_re @ a.T
    if state.statistics_columns is not None and state.cov_re_statistics is not None:
        # computed in the statistics' coordinates: T cov(β̂) T' from cov_params has lost
        # its digits where a column is far from zero (timestamps near 1.7e9)
        columns = state.statistics_columns if columns is None else columns
        cov_fe, cov_re = state.cov_fe_statistics, state.cov_re_statistics
    return PredictionVariance(
        results.predictor(),
        cov_fe,
        float(state.scale),
        cov_re,
        np.asarray(state.vcomp, dtype=np.float64).reshape(-1),
        blup_cov,
        cross,
        columns,
        vc_scale,
    )


def get_prediction(
    results,
    data=None,
    include_random: bool = False,
    alpha: float = 0.05,
    *,
    exog=None,
    exog_re=None,
    groups=None,
    new_groups: str = "population",
    new_levels: str = "error",
    weights=None,
) -> PredictionResults:
    """Predictions with standard errors and intervals: statsmodels' ``get_prediction``,
    with the conditional part from Henderson's (1975) mixed-model equations (see the
    module for the formulas).

    Parameters
    ----------
    results : MixedLMResults
        (``self`` of :meth:`dmixed.MixedLMResults.get_prediction`.)
    data : pandas or Dask DataFrame, optional
        New rows, as :meth:`~dmixed.MixedLMResults.predict` (formula models; for a
        model built from arrays, the new ``exog``).  None: ``exog`` (arrays), or the
        fitted rows.
    include_random : bool
        False: ``x'β̂``, variance ``x' cov(β̂) x``.  True: ``x'β̂ + z'b̂_i``, variance
        ``[x; z]' C [x; z]`` (C from Henderson's equations; needs the fit's per-group
        statistics, so not on loaded results).

        The observation interval with False is statsmodels' (``get_prediction`` of
        the fixed part) and merTools' ``predictInterval(which = "fixed")``: it adds
        the residual variance σ̂²/w only, so it is the interval of an observation of
        a subject whose random effects are zero, *not* of a new subject.  For a new
        subject's observation interval (lme4/merTools' ``predictInterval`` default:
        the random effects' variance ``z'Ψ̂z`` added) pass ``include_random=True``
        with a group the fit did not see (``new_groups="population"``, the default):
        the same mean, the wider interval.
    alpha : float
        The default level of ``conf_int`` and ``summary_frame`` (normal intervals).
    exog, exog_re, groups : array_like, optional
        New rows of a model built from arrays, as for ``predict``.
    new_groups : {"population", "nan", "error"}
        As for ``predict``: rows of unseen groups get ``x'β̂`` with the fixed part's
        standard error (and their random effects' variance ``z'Ψ̂z`` in the observation
        interval), NaN, or an error.  For Dask data as ``predict``: the default
        ``"population"`` reads the group column once, at this call, to count the unseen
        groups, and warns once with the totals; pass ``"nan"`` or ``"error"`` for a call
        that reads nothing (``"error"`` raises when the result is computed).
    new_levels : {"error", "population", "nan"}
        As for ``predict``: rows of fitted groups holding a level of a variance
        component the fit did not see, in any group or in theirs (a nested level
        reused by another group), are refused naming the group and the level; or get
        that random effect at its mean, zero, with its variance ``vcomp`` in the
        observation interval; or NaN (:mod:`dmixed.results.new_levels`).

        Side by side, as ``predict``: an unseen *group* gets the population prediction
        with a warning (``new_groups="population"``, the default), an unseen
        *component level* inside a seen group an error (``new_levels="error"``, the
        default).  lme4's ``allow.new.levels = FALSE`` refuses both
        (``new_groups="error"``); its ``TRUE`` predicts both at the population level
        (``new_levels="population"``).

    Returns
    -------
    PredictionResults
        ``predicted_mean``, ``se_mean``, ``se_obs``, ``conf_int(obs, alpha)``,
        ``summary_frame(alpha)``, for the rows ``predict`` gives: every row of a pandas
        ``data`` (NaN where a column the prediction uses is missing, or for unseen
        groups with ``new_groups="nan"``), indexed like it; lazily for Dask data; the
        given arrays' rows (ndarrays); the fitted (kept) rows without data.

    Raises
    ------
    SpecError
        Dask ``data`` for a model built from arrays; no data where the fitted rows are not
        available (loaded results, Dask fits); ``include_random`` on loaded results;
        ``alpha`` not in (0, 1); a ``new_groups`` or ``new_levels`` not listed;
        ``weights`` of one value per row with Dask ``data``; ``include_random`` not a
        Python or numpy bool.
    DataError
        ``data`` not a pandas or Dask DataFrame, or as
        :meth:`~dmixed.MixedLMResults.predict` (unseen groups with
        ``new_groups="error"``, new levels with ``new_levels="error"``, keys of
        another class than the fitted ones, ...).
    """
    include_random = bool(check_flag(include_random, "include_random"))
    check_new_groups(new_groups)
    check_new_levels(new_levels)
    check_alpha(alpha)
    spec = results.spec
    data, exog = formula_data(spec, data, exog)
    if data is not None:
        if spec is None:
            raise SpecError(
                "get_prediction(data) needs a model built with from_formula; "
                "pass exog= (and exog_re=, groups=) instead"
            )
        variance = prediction_variance(results, include_random)
        args = (include_random, new_groups, new_levels, weights)
        if is_dask(data):
            moments = moments_dask(variance, spec, data, *args)
        else:
            moments = moments_frame(data, variance, spec, *args)
        return PredictionResults(moments, True, alpha)
    if exog is None:
        rows = getattr(results.fitted_model, "rows", None)
        if rows is None:
            raise SpecError(
                "no data given and the fitted rows are not available (loaded results or "
                "a Dask fit): pass data="
            )
        name, index = results.names.group_name, rows.index
        w = rows.weights if weights is None else prediction_weights(weights, n=len(rows.exog))
    else:
        exog = design_rows(results.spec, exog)  # the formula's columns: as the spec's rows
        rows = results.predictor().array_rows(exog, exog_re, groups, include_random)
        name, index = "groups", None
        w = prediction_weights(weights, n=len(rows.exog))
    variance = prediction_variance(results, include_random)
    values = variance.moments(rows, include_random, name, new_groups, new_levels, weights=w)
    moments = pd.DataFrame(values, index=index, columns=list(MOMENTS))
    return PredictionResults(moments, index is not None, alpha)
