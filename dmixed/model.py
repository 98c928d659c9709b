"""The MixedLM model: statsmodels' API, fitted from per-group sufficient statistics.

The model prepares the data (arrays or a formula), has an engine reduce the rows to
per-group statistics in one pass, and drives the optimizer over the profiled
log-likelihood.  It never loops over groups in Python on a path whose cost grows with
the data.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd

from .design import ModelDimensions, build_spec_prepared, is_dask
from .design.arrays import (
    RowData,
    as_float_column,
    as_float_matrix,
    column_names,
    constant_columns,
    convert_exog_vc,
    detached,
    exog_names,
    group_label_array,
    handle_missing,
    ones_columns,
    pandas_index,
    random_design,
    random_intercept,
    refuse_dask,
)
from .design.centres import vc_reads
from .design.frame_rows import rows_of_frame
from .design.labels import ARRAY_INTERCEPT_NAME, covariance_names
from .design.messages import check_enough_rows, fixed_factors
from .design.missing import missing_option
from .design.model_data import ModelData
from .design.partitions import select_columns
from .design.scope import capture
from .design.vc import LevelNames
from .engines.base import check_client
from .errors import (
    BadValuesError,
    DataError,
    FitConvergenceWarning,
    SpecError,
    StartError,
    caller_stacklevel,
)
from .fit.fit_warnings import (
    plain_rounding_of,
    reported_gap,
    warn_boundary,
    warn_convergence,
    warn_precision,
    warn_reported_point,
    warn_unresolved_start,
)
from .fit.model_methods import LikelihoodMethods
from .fit.model_statistics import ModelStatistics
from .fit.objective import loglike as profiled_loglike
from .fit.optimize import maximize
from .fit.options import check_flag
from .fit.params import MixedLMParams
from .fit.penalized import L1Settings, l1_profile, l1_settings
from .fit.start import check_distinct_component_values, engine_moment_start
from .fit.steps import (
    check_fit_kwargs,
    check_fit_options,
    check_statsmodels_options,
    fit_start,
    iteration_report,
    objective,
)
from .kernels.pages import with_ordinary_pages
from .results import MixedLMResults
from .results.simulate import RowDistribution, row_distribution
from .results.terms import constant_of_fit
from .stats import (
    FittedStatistics,
    Layout,
    check_designs,
    check_identifiable,
    far_response,
    n_tril,
)
from .stats.standardize import check_weights_range, log2_range

__all__ = ["MixedLM", "MixedLMParams", "mixedlm"]


def _scan_chains(data, client=None):
    """The Dask engine's runs of partitions for the level scan of Dask ``data`` on
    ``client`` (None: the current client) (:data:`~dmixed.design.scan.ScanChains`;
    imported only for Dask data)."""
    if not is_dask(data):
        return None
    from .engines.dask import level_scan_chains

    if client is None:  # the current client's workers (level_scan_chains' default)
        return level_scan_chains
    return functools.partial(level_scan_chains, client=client)


def _design_waits(data):
    """For Dask ``data``, the Dask engine's bounded waits for the design's reads on the
    cluster (:func:`~dmixed.engines.dask.progress.design_waits`: workers paused at their
    memory threshold end the build with the fit's error, not a wait for ever); else a
    context that does nothing."""
    if not is_dask(data):
        return contextlib.nullcontext()
    from .engines.dask.progress import design_waits

    return design_waits()


class MixedLM(LikelihoodMethods, ModelStatistics, ModelDimensions, ModelData):
    """Linear mixed model, statsmodels' ``MixedLM`` parametrization (DESIGN.md §1).

    ``y_i = X_i β + Z_i γ_i + Σ_l W_il θ_il + ε_i`` with ``γ_i ~ N(0, Ψ)``,
    ``θ_il ~ N(0, τ_l² I)`` and ``ε_i ~ N(0, σ² W⁻¹)`` (W: optional prior weights).

    Parameters
    ----------
    endog : array_like (n,)
        Response.
    exog : array_like (n, p)
        Fixed-effects design.
    groups : array_like (n,)
        Group labels (any hashable values; groups are reported in sorted order).
    exog_re : array_like (n, q), optional
        Random-effects design; default a random intercept (``q = 1``) without
        ``exog_vc``, none (``q = 0``) with it, as statsmodels.
    exog_vc : dict, optional
        Variance components in statsmodels' dict form
        ``{name: {group: matrix (n_group × m)}}``, matrix rows in the order in which the
        group's rows appear in the data.
    use_sqrt : bool
        Optimize over ``[vech_lt(L), s]`` (Ψ* = LL', τ* = s²) rather than ``[vech_lt(Ψ*), τ*]``.
    weights : array_like (n,), optional
        Prior (precision) weights: the residual variance of row j is ``σ²/w_j`` (as lme4).
    missing : {"raise", "drop", "none"}
        What to do with NaN/inf/missing values in a used column.  ``"none"``
        (statsmodels' default name) is accepted and acts as ``"raise"``: a missing
        value never reaches the statistics unchecked.  On Dask data whose model has
        no factor and no ``object`` column, nothing is read before the fit, ``"drop"``
        or not: no row left after dropping (``"no rows left after dropping rows with
        missing values (N rows dropped)"``) and a constant response are then refused
        by ``fit()``, from the data pass's statistics, not by ``mixedlm()``.

    Attributes
    ----------
    spec : ModelSpec or None
        The formula spec (:mod:`dmixed.design`); ``None`` for a model of arrays.
    rows : RowData or None
        The model matrices of in-process data; ``None`` for Dask data and for a model
        built from statistics.
    source : dask.dataframe.DataFrame or None
        Dask data (the columns the model uses); ``None`` otherwise.
    cached_statistics : FittedStatistics or None
        The statistics of the last data pass (:meth:`statistics`), reused while
        ``cached_client`` is the client asked for; never pickled.
    cached_client : distributed.Client or None
        The client ``cached_statistics`` were built with.
    pandas_output : bool
        Whether results come as pandas objects (a formula, or a pandas ``endog`` or
        ``exog``) or as ndarrays (arrays in, arrays out, as statsmodels).

    Raises
    ------
    SpecError
        ``missing`` not one of the values above; ``use_sqrt`` not a bool; a Dask
        collection as one of the arrays (Dask data is fitted through
        :meth:`from_formula`); ``exog_vc`` not a dict.
    DataError
        Arrays of different lengths, no rows, too few rows, missing values (with
        ``missing="raise"``; ``None`` and ``pd.NA`` in an object array are missing
        values), weights that are not positive and finite; ``endog`` or ``weights`` of
        more than one column, ``groups`` of more than one label per row.
    BadValuesError
        Text, or values that are not real numbers, in ``endog``, ``exog``,
        ``exog_re`` or ``weights`` (numbers written as text are not read as numbers).

    Notes
    -----
    The model holds the rows in memory of its own (:func:`dmixed.design.arrays.detached`;
    a formula's group keys, :func:`dmixed.design.dtypes.group_keys`): arrays, Series or
    a DataFrame changed by the caller after the model is built change neither the model,
    its fits, nor the results read later.  statsmodels keeps references to the caller's
    arrays instead.
    """

    #: statsmodels' penalties of the fixed effects, covariance parameters and random
    #: effects (set by its penalized fits): None, as dmixed fits no penalized likelihood
    fe_pen = None
    cov_pen = None
    re_pen = None

    def __init__(
        self,
        endog,
        exog,
        groups,
        exog_re=None,
        exog_vc=None,
        use_sqrt: bool = True,
        weights=None,
        missing: str = "raise",
    ) -> None:
        missing = missing_option(missing)
        refuse_dask(endog=endog, exog=exog, groups=groups, exog_re=exog_re, weights=weights)
        y = detached(as_float_column(endog, "endog"), endog)
        x = detached(as_float_matrix(exog, "exog"), exog)
        n = y.shape[0]
        if n == 0:
            raise BadValuesError("no data: endog has no rows")
        if exog_re is None:
            z = random_intercept(x) if exog_vc is None else np.zeros((n, 0))
            re_names = [ARRAY_INTERCEPT_NAME] if exog_vc is None else []
        else:
            z = random_design(exog_re, x)
            if not np.may_share_memory(z, x):  # a run of x's columns is x's own memory
                z = detached(z, exog_re)
            re_names = column_names(exog_re, "x_re", z.shape[1])
        g = detached(group_label_array(groups), groups)
        if g.ndim != 1:
            if g.ndim > 1 and g.size != g.shape[0]:  # (n, 2): not one label per row
                raise DataError(f"groups must be one label per row, got shape {g.shape}")
            g = g.reshape(-1)
        for name, arr in (("exog", x), ("groups", g), ("exog_re", z)):
            if arr.shape[0] != n:
                raise DataError(f"{name} has {arr.shape[0]} rows but endog has {n}")
        w = None
        if weights is not None:
            w = detached(as_float_column(weights, "weights"), weights)[:, 0]
            if w.shape[0] != n:
                raise DataError(f"weights has {w.shape[0]} rows but endog has {n}")
        vc_names, vc_colnames, vc_cols, vc_vals = convert_exog_vc(exog_vc, g, n)
        index = pandas_index(endog, exog)
        rows = RowData(y[:, 0], x, z, g, vc_cols, vc_vals, w, index=index)
        kept = handle_missing(rows, missing, vc_names)
        # the intercepts of the rows kept (dropped rows may leave a column all ones);
        # where none was dropped, numpy exog's constant columns tell them without a look
        constant = None
        if kept is rows and not isinstance(exog, (pd.DataFrame, pd.Series)):
            constant = constant_columns(x)
        rows = kept
        rows.intercepts = ones_columns(rows.exog, rows.exog_re, constant)
        self._setup(
            use_sqrt=use_sqrt,
            missing=missing,
            spec=None,
            endog_name=str(getattr(endog, "name", None) or "y"),
            exog_names=exog_names(exog, x, constant),
            exog_re_names=re_names,
            vc_names=vc_names,
            vc_column_names=vc_colnames,
            group_name="Group",
            rows=rows,
            array_intercept=exog_re is None and exog_vc is None,
        )

    def _setup(
        self,
        *,
        use_sqrt: bool,
        missing: str,
        spec: Any,
        endog_name: str,
        exog_names: list[str],
        exog_re_names: list[str],
        vc_names: list[str],
        vc_column_names: list[list[str]],
        group_name: str,
        rows: RowData | None = None,
        source: Any = None,
        factors: dict | None = None,
        array_intercept: bool = False,
    ) -> None:
        """Set every attribute of a model: the one construction path of all constructors.
        ``factors``: the fixed part's factors of a formula's frame
        (:func:`~dmixed.design.messages.fixed_factors`), named where ``rows`` are too
        few for them.  ``array_intercept``: the random intercept a model of arrays adds
        without ``exog_re`` (:func:`~dmixed.design.labels.covariance_names`)."""
        self.use_sqrt = bool(check_flag(use_sqrt, "use_sqrt"))
        self.missing = missing
        self.spec = spec
        self.endog_name = endog_name
        self.exog_names = list(exog_names)
        self.exog_re_names = list(exog_re_names)
        self.vc_names = list(vc_names)
        self.vc_column_names = [
            c if isinstance(c, LevelNames) else list(c) for c in vc_column_names
        ]
        self.group_name = group_name
        #: the one random effect is the intercept added without ``exog_re``, named as
        #: its variance (statsmodels' ``"Group Var"``)
        self.array_intercept = bool(array_intercept)
        self.rows = rows
        self.source = source
        self.cached_statistics: FittedStatistics | None = None
        self.cached_client: Any = None
        #: the client the model was built with (``from_formula(client=...)``): what its
        #: fit and statistics run on unless given another; never pickled
        self.client: Any = None
        # statsmodels' rule: arrays in, arrays out; pandas (or a formula) in, pandas out
        self.pandas_output = spec is not None or (rows is not None and rows.index is not None)
        if rows is not None:
            self._validate_rows(rows, factors)

    # -- construction ------------------------------------------------------------

    @classmethod
    def from_formula(
        cls,
        formula: str,
        data,
        re_formula: str | None = None,
        vc_formula: dict[str, str] | None = None,
        subset=None,
        use_sparse: bool = False,
        missing: str = "raise",
        *,
        groups: str,
        weights: str | None = None,
        use_sqrt: bool = True,
        eval_env=None,
        drop_cols=None,
        client=None,
    ) -> MixedLM:
        """Create a model from a formula and a pandas (or Dask) DataFrame.

        As ``statsmodels.formula.api.mixedlm``: ``groups`` names the grouping column,
        ``re_formula`` the random-effects design (default: a random intercept without
        ``vc_formula``, none with it, as statsmodels),
        ``vc_formula`` maps a component name to a formula evaluated within each group
        (e.g. ``{"cask": "0 + C(cask)"}``).  Crossed random effects, lme4's
        ``(1 | subj) + (1 | item)``: ``groups`` a constant column (one group) and
        ``vc_formula={"subj": "0 + C(subj)", "item": "0 + C(item)"}``; ``groups="subj"``,
        ``re_formula="1"`` and an ``item`` component is lme4's
        ``(1 | subj) + (1 | subj:item)`` (items nested in subjects).  Without
        ``re_formula``, a model with ``vc_formula`` has no random intercept (statsmodels'
        rule), so that call without ``re_formula="1"`` is lme4's ``(1 | subj:item)``
        alone.  ``weights`` names a column of prior weights.
        ``use_sparse`` is statsmodels' argument, accepted and ignored, whatever its
        value (it is not checked: the statistics are per group whatever the design's
        sparsity).

        The model's rows are its own (see :class:`MixedLM`): the DataFrame may be
        changed or reused after this returns.

        A formula may call functions of the caller's own code, as statsmodels'
        ``eval_env``: None (default) or 0 looks names up in the scope that calls
        ``from_formula``, ``k`` that many frames further out, a mapping in that mapping,
        ``-1`` nowhere (formulaic's transforms and numpy only, as for formulas from files
        and the command line).  Such functions are called on each partition and on new
        rows to predict: they must work row by row (:mod:`dmixed.design.scope`).  As in
        statsmodels, a formula then runs what it names there: give a formula that comes
        from elsewhere (a user, a file) with ``eval_env=-1``.

        ``client`` (Dask data): the ``distributed.Client`` that reads the data here,
        where the formula needs a look at the whole data (the levels of a factor, the
        Python types of an ``object`` column: one compute), and that the model's
        :meth:`fit` and :meth:`statistics` then run on unless given another; None
        (default): the current client, else Dask's local scheduler in this process, as
        ``dask.compute``.  A model of a Dask collection persisted on a cluster must be
        built with that cluster's client where it is not the default.  The client is
        not pickled with the model.

        Raises
        ------
        SpecError
            ``client`` neither None nor a ``distributed.Client``; ``subset`` given
            (statsmodels' argument: filter the DataFrame first),
            ``drop_cols`` naming no fixed-effects column (statsmodels' argument: those
            columns are dropped from the design built), ``groups`` neither a column
            name nor one label per row (a Dask Series: its column's name, or
            ``groups.compute()`` for pandas data), or a formula that cannot be built
            (:func:`dmixed.design.build_spec`).
        DataError
            Besides the data's own errors: a Dask collection persisted on another
            scheduler than ``client``'s (or, ``client`` None, than the current
            client's, or persisted while there is none), or whose persisted data are
            gone (:func:`~dmixed.design.partitions.check_persisted`), where the
            formula reads the data.
        """
        del use_sparse  # accepted for statsmodels' signature, ignored
        check_client(client)
        if subset is not None:
            raise SpecError("subset is not supported: filter the DataFrame first")
        if not isinstance(groups, str):
            # statsmodels also takes the labels themselves; they are named "Group"
            if is_dask(data):
                raise SpecError(
                    "with Dask data, groups must be the name of a column of the Dask "
                    f"DataFrame, got a {type(groups).__name__}"
                )
            if is_dask(groups):  # computed here, whole, as MixedLM(...) refuses to
                name = getattr(groups, "name", None)
                column = f"groups={name!r} (its column's name) or " if name in data else ""
                raise SpecError(
                    f"groups is a Dask {type(groups).__name__} and data a pandas "
                    f"DataFrame: pass {column}groups.compute()"
                )
            labels = group_label_array(groups, "Group")
            if labels.shape != (len(data),):
                raise SpecError(
                    f"groups has shape {labels.shape}; expected a column name or {len(data)} labels"
                )
            if "Group" in data.columns:
                raise SpecError(
                    "data already has a column 'Group': pass groups='Group' (a column name)"
                )
            data = data.assign(Group=labels)
            groups = "Group"
        frame = inspect.currentframe()
        env = capture(eval_env, frame.f_back if frame is not None else None)
        del frame
        with _design_waits(data):
            spec, prepared, data = build_spec_prepared(
                data,
                formula,
                groups,
                re_formula=re_formula,
                vc_formula=vc_formula,
                weights=weights,
                missing=missing,
                env=env,
                drop_cols=drop_cols,
                scan_chains=_scan_chains(data, client),
                fit_rows=True,
                client=client,
            )
        if prepared is not None:  # pandas data, prepared once for the spec's checks
            rows = rows_of_frame(spec, data, prepared)
            factors = fixed_factors(spec, data.dtypes)
            model = cls._with_spec(spec, use_sqrt, rows, factors=factors)
        else:  # Dask: the collection as the spec read it (keys read back from text once)
            model = cls.from_spec(spec, data, use_sqrt=use_sqrt)
        model.client = client
        return model

    @classmethod
    def from_spec(cls, spec, data, use_sqrt: bool = True) -> MixedLM:
        """A model of ``data`` with an existing spec (same columns, levels and names)."""
        if is_dask(data):
            # read only the columns the model uses (Parquet column pruning); partitions
            # that Dask does not check are checked for them
            source = select_columns(data, list(spec.columns_used), spec.group_name)
            return cls._with_spec(spec, use_sqrt, source=source)
        rows = rows_of_frame(spec, data)
        factors = fixed_factors(spec, getattr(data, "dtypes", {}))
        return cls._with_spec(spec, use_sqrt, rows, factors=factors)

    @classmethod
    def from_statistics(cls, stats: FittedStatistics, spec, use_sqrt: bool = True) -> MixedLM:
        """A model over statistics built earlier (saved, or added up from parts).

        Fitting it needs no data pass; fitted values and residuals are not available
        (the rows are not), prediction on new data is.

        Raises
        ------
        SpecError
            The statistics are of another random-effects structure than ``spec``.
        DataError
            A rank-deficient fixed-effects or random-effects design or a response
            without variation (checked on these statistics: for parts added up, on
            their sum).
        """
        self = cls._with_spec(spec, use_sqrt)
        if stats.layout.k_re != self.k_re or stats.layout.k_vc != self.k_vc:
            raise SpecError("the statistics do not match the model spec")
        check_designs(
            stats,
            self.exog_names,
            self.exog_re_names,
            self.endog_name,
            getattr(spec, "re_formula", None),
            vc_reads(spec),
        )
        self.cached_statistics = stats
        return self

    @classmethod
    def _with_spec(
        cls,
        spec,
        use_sqrt: bool,
        rows: RowData | None = None,
        source: Any = None,
        factors: dict | None = None,
    ) -> MixedLM:
        """A model whose names come from a formula spec, with its rows or Dask source."""
        self = cls.__new__(cls)
        self._setup(
            use_sqrt=use_sqrt,
            missing=spec.missing,
            spec=spec,
            endog_name=spec.endog_name,
            exog_names=spec.exog_names,
            exog_re_names=spec.exog_re_names,
            vc_names=spec.vc_names,
            vc_column_names=spec.vc_column_names,
            group_name=spec.group_name,
            rows=rows,
            source=source,
            factors=factors,
        )
        return self

    def _validate_rows(self, rows: RowData, factors: dict | None = None) -> None:
        n, p = rows.exog.shape
        if n == 0:
            raise BadValuesError("no data: endog has no rows")
        if len(self.exog_names) != p:
            self.exog_names = [f"x{j + 1}" for j in range(p)]
        k_cov = n_tril(rows.exog_re.shape[1]) + len(rows.vc_cols)
        # a formula's factors named as on Dask (rows dropped for missing values, say)
        check_enough_rows(n, p, k_cov, factors=factors)
        # a formula's weights were checked as a column when its rows were prepared
        # (dmixed.design.prepare): finite, positive, within the span; not read again
        if rows.weights is not None and self.spec is None:
            w = rows.weights
            if np.any(~np.isfinite(w)):
                raise BadValuesError("weights: missing or infinite values")
            if np.any(w <= 0):
                raise BadValuesError(
                    f"weights must be positive: {int(np.sum(w <= 0))} rows have weight <= 0"
                )
            check_weights_range("weights", log2_range(w))  # as a formula's weights column

    # -- properties --------------------------------------------------------------

    @property
    def k_re2(self) -> int:
        return n_tril(self.k_re)

    @property
    def nobs(self) -> int:
        """Rows used by the fit (after dropping missing values): counted on the rows in
        memory; for Dask data (and a model of statistics, or one whose data were
        removed), the row count of the statistics of its data pass, where the model
        holds them (after a fit or :meth:`statistics`; statistics are never pickled).

        A Dask model that holds no statistics runs its data pass here
        (:meth:`statistics`: one full read of the data, cached: the fit that follows
        reuses it).

        Raises
        ------
        SpecError
            Neither rows, statistics nor data: a model unpickled after
            :meth:`remove_data` (:meth:`statistics`).
        """
        if self.rows is not None:
            return len(self.rows.endog)
        stats = self.cached_statistics
        if stats is None:
            stats = self.statistics()
        return int(stats.glob.n)

    @property
    def group_labels(self) -> list:
        """The distinct group labels of the kept rows, sorted (statsmodels'
        ``group_labels``, a list; Python scalars, as ``ndarray.tolist()`` gives): of the
        rows in memory; for Dask data (and a model of statistics, or one whose data were
        removed), the labels of the statistics of its data pass, held as :attr:`n_groups`
        is (:meth:`_held_statistics`).

        Raises
        ------
        SpecError
            No rows in memory and no statistics: the message says how to get them
            (:meth:`statistics`, one data pass, or a fit's ``results.group_labels``).
        """
        stats = self._held_statistics("group_labels")
        if stats is None:
            return super().group_labels
        return np.asarray(stats.group_labels).tolist()

    @property
    def n_groups(self) -> int:
        """The number of groups of the kept rows (statsmodels' ``n_groups``): counted on
        the rows in memory; for Dask data (and a model of statistics, or one whose data
        were removed), the groups of the statistics of its data pass, where the model
        holds them (after a fit or :meth:`statistics`; statistics are never pickled).

        Raises
        ------
        SpecError
            No rows in memory and no statistics: the message says how to count them
            (:meth:`statistics`, one data pass, or a fit's ``results.n_groups``).
        """
        stats = self._held_statistics("n_groups")
        if stats is None:
            return super().n_groups
        return len(stats.group_labels)

    def _held_statistics(self, name: str) -> FittedStatistics | None:
        """The statistics that answer the group attribute ``name`` (``n_groups``,
        ``group_labels``) of a model without rows in memory; None where the rows are in
        memory (the attribute is read from them).

        Raises
        ------
        SpecError
            Neither rows in memory nor statistics held: why, and how to get ``name``.
        """
        if self.rows is not None:
            return None
        if self.cached_statistics is None:
            raise SpecError(self._uncounted_groups(name))
        return self.cached_statistics

    def _uncounted_groups(self, name: str) -> str:
        """Why the group attribute ``name`` is not known, and how to get it."""
        if self.source is not None:
            return (
                f"{name} of a model of Dask data is counted by its data pass, which this "
                "model has not run (or whose statistics it lost: they are never pickled): "
                "model.statistics() runs it (one read of the data, which a fit of the "
                f"model then reuses), or read {name} of the fit's results"
            )
        why = self.lost_statistics()
        return f"{name} is not known: {why}; or read {name} of the fit's results"

    @property
    def n_totobs(self) -> int:
        """Rows used by the fit: :attr:`nobs` (statsmodels' ``n_totobs``)."""
        return self.nobs

    @property
    def k_params(self) -> int:
        """``k_fe + k_re2`` (statsmodels' ``k_params``, which leaves out the ``k_vc``
        variance components: ``results.params`` has ``k_params + k_vc`` entries)."""
        return self.k_fe + self.k_re2

    @property
    def k_constant(self) -> int | None:
        """1 if the fixed-effects design holds a constant, else 0 (statsmodels'
        ``k_constant``), by the rule the fit's results use
        (:func:`~dmixed.results.terms.constant_of_fit`), so the model and its results
        agree: a constant non-zero column, or the ones in the columns' span.

        Computed on each access: on the rows in memory (the rank of ``[1 X]``,
        ``O(n p²)``); for Dask data and a model of statistics, on the statistics of
        the data pass (:meth:`statistics`), which a Dask model without them runs here
        (one pass over the data, cached: the fit that follows reuses it); after
        :meth:`remove_data` without statistics, from the formula; None for such a
        model of arrays (neither rows nor statistics at hand).
        """
        stats = self.cached_statistics
        if self.rows is None and stats is None and self.source is not None:
            stats = self.statistics()
        return constant_of_fit(self, stats)

    def param_names(self) -> list[str]:
        """statsmodels' parameter names: fixed effects, 'a Var'/'a x b Cov', 'name Var'
        (:func:`~dmixed.design.labels.covariance_names`)."""
        # (getattr: a model pickled before the attribute was)
        intercept = getattr(self, "array_intercept", False)
        return [
            *self.exog_names,
            *covariance_names(self.exog_re_names, self.vc_names, intercept),
        ]

    # -- fitting -----------------------------------------------------------------

    def fit(
        self,
        start_params=None,
        reml: bool = True,
        niter_sa: int = 0,
        do_cg: bool = True,
        fe_pen=None,
        cov_pen=None,
        free=None,
        full_output: bool = False,
        method: str | list[str] | None = None,
        *,
        maxiter: int = 500,
        gtol: float = 1e-8,
        cov_fe: str = "hessian",
        skip_hessian: bool = False,
        progress: bool = False,
        client=None,
        engine: str | None = None,
        check_nobs: str = "raise",
        **fit_kwargs,
    ):
        """Fit by maximizing the (restricted) profiled log-likelihood.

        The arguments up to ``method`` take statsmodels' positions
        (``fit(start_params, reml, niter_sa, do_cg, fe_pen, cov_pen, free, full_output,
        method)``); dmixed's own settings are keyword-only.

        Parameters
        ----------
        start_params : array_like, optional
            Packed covariance parameters (in this model's ``use_sqrt`` packing), with or
            without the fixed effects in front (they are profiled out and ignored), or
            an object with statsmodels' ``get_packed(use_sqrt, has_fe)``.  Default
            (with every parameter free): moment estimates (:mod:`dmixed.fit.start`, one
            more round trip after the data pass) or statsmodels' Ψ* = I, τ* = 1,
            whichever has the higher likelihood; from moment estimates, or from
            ``start_params`` without ``free`` (a previous fit's estimates, as
            ``dmixed update`` passes them), the fit takes exact Newton steps first and
            needs the quasi-Newton methods only when those do not converge
            quadratically.  A bool here (code written for dmixed's former order,
            ``fit(reml, start_params, ...)``) is refused: pass ``reml=`` by keyword.
        reml : bool
            REML (default) or ML.
        method : str or list of str, optional
            Optimizers tried in turn, each from where the last stopped; default
            ``["bfgs", "lbfgs", "cg"]`` as statsmodels.  statsmodels' names
            (``"nm"`` Nelder–Mead, ``"powell"``, ``"bfgs"``, ``"lbfgs"``, ``"cg"``,
            ``"ncg"`` Newton-CG), scipy's method names, and ``"newton"``: exact Newton
            steps with the profiled Hessian (every parameter free).  Given explicitly,
            no Newton steps come first.
        free : array_like, optional
            Mask over the packed covariance parameters (1 estimated, 0 held at its start
            value), e.g. to fit independent random effects.  A mask that tries to hold
            fixed effects fixed is refused (they are profiled out).
        maxiter, gtol : optimizer settings (gtol applies to the gradient of ℓ/n): an
            integer ≥ 0 and a finite real number ≥ 0 (a ``Decimal`` or ``Fraction`` is
            read as its float); the other settings and tolerances are those of
            :data:`dmixed.fit.summary.DEFAULTS`.  As in statsmodels, ``maxiter`` bounds
            each method of ``method`` in turn (``maxiter=1`` may make one BFGS, one
            L-BFGS and one CG iteration); the Newton steps take what the iterations
            made before them leave of it.  ``n_iter`` of the results counts the
            iterations made, all methods together, and ``fit_history`` has one entry
            per iteration and a last one for the final point.  ``maxiter=0`` gives the
            results at the start for every method (no optimizer runs; ``n_iter`` 0, not
            converged), where scipy's L-BFGS-B and Powell would make one iteration.
        cov_fe : {"hessian", "conditional"}
            Standard errors of the fixed effects from statsmodels' full inverse Hessian
            (default), or lme4's conditional ``σ̂²(X'V⁻¹X)⁻¹``.
        skip_hessian : bool
            Do not compute the Hessian (no standard errors).
        progress : bool
            Log the data pass and one line per iteration at INFO level on logger "dmixed".
        client : distributed.Client, optional
            For Dask data: the client to run on (default: the client the model was
            built with, ``mixedlm(..., client=...)``, while it is open; else the
            current client, else in-process).  A Client only, whatever the data
            (in-memory data use none, but a bad one is refused there too): an address
            (``"tcp://host:8786"``) is refused, as the fit would have to open a client
            and close it; pass ``distributed.Client(address)``.
        engine : {"auto", "distributed", "local"}, optional
            For Dask data: where the statistics stay during the optimization (see
            :meth:`statistics`).
        check_nobs : {"raise", "ignore"}
            ``"raise"`` (default, as lme4's ``check.nlev.gtr.1``, ``check.nobs.vs.nlev``
            and ``check.nobs.vs.nRE``): refuse a model whose random effects are not
            identifiable (one group; every group of one row; no more rows than random
            effects), decided from the group sizes before the optimizer starts
            (:func:`dmixed.stats.check_identifiable`), or two variance components of
            equal columns under different names, or a component equal to a random
            effect (one level per group beside the random intercept)
            (:func:`dmixed.fit.start.check_distinct_component_values`).  ``"ignore"``
            fits anyway; the fixed effects' standard errors are then lme4's
            ``σ̂²(X'V⁻¹X)⁻¹`` (the Hessian says nothing about β), with a
            ``SingularHessianWarning``.
        full_output : bool
            statsmodels' switch for recording the optimizer's path; accepted and
            ignored: the path is always recorded (``fit_history``, alias ``hist``, in
            dmixed's format, not statsmodels' list of scipy's return dicts; see
            :attr:`~dmixed.results.results.MixedLMResults.hist`).
        niter_sa, do_cg, fe_pen, cov_pen
            statsmodels' simulated annealing, its switch for the gradient optimizer, and
            its penalties: accepted at statsmodels' defaults (``0``, ``True``, ``None``,
            ``None``) so that code written for statsmodels runs; any other value is
            refused (:func:`dmixed.fit.steps.check_statsmodels_options`).
        **fit_kwargs
            statsmodels' optimizer options, which it passes to scipy; those that mean
            something here (:data:`dmixed.fit.steps.FIT_KWARGS`): ``disp`` (bool,
            default False: True prints one line per iteration to stdout, its number,
            method, ℓ and max |∂ℓ/∂θ|/n, and one for the final point), ``callback``
            (called once per iteration, each entry of ``fit_history`` but the last,
            Newton steps included, with a new float64 array: that iterate's packed
            covariance parameters in the model's ``use_sqrt`` packing, as
            ``packed_params``, without the fixed effects, which are profiled out; its
            return value is ignored; ``StopIteration`` from it ends the optimization
            at that iterate, as in scipy: the fit returns it, ``converged`` False, with a
            ``FitConvergenceWarning``; any other exception it raises propagates) and
            ``retall`` (bool, accepted: every iterate is kept in ``fit_history``
            anyway).  Neither is kept in ``fit_options``: a refit (``anova``'s) does
            not call or print.

        Returns
        -------
        MixedLMResults

        Raises
        ------
        SpecError
            A bad ``cov_fe``, ``method``, ``start_params``, ``free`` or ``check_nobs``;
            ``start_params`` a bool (``fit(True)``: statsmodels' first argument is
            ``start_params``, not ``reml``);
            a ``client`` that is neither None nor a ``distributed.Client`` (whatever
            the data);
            ``reml``, ``skip_hessian``, ``progress`` or ``full_output`` not a Python
            or numpy bool, ``maxiter`` not an integer >= 0,
            ``gtol`` not a finite number >= 0; statsmodels' ``niter_sa``, ``do_cg``,
            ``fe_pen`` or ``cov_pen`` other than its default; a keyword of
            ``fit_kwargs`` other than ``disp``, ``callback`` and ``retall`` (named,
            with the list of those accepted), ``disp`` or ``retall`` not a bool,
            ``callback`` not callable.
        StartError
            A ``SpecError``: starting values where the log-likelihood is not finite
            (given ``start_params``, or the default and moment starts).
        DataError
            See :meth:`statistics`; an unidentifiable model (``check_nobs``); a response
            the effects reproduce exactly (no maximum of the likelihood: the optimizer
            ends where it is not defined).

        Warns
        -----
        FitConvergenceWarning
            A method did not converge (and the next is tried), or none did; or
            ``maxiter`` (or the polish's count of Newton steps) ended the iterations
            where a Newton step still promises ℓ a rise above
            ``DEFAULTS.converged_rise`` (``converged`` is then False, as statsmodels
            reports a fit stopped by ``maxiter``; with ``free=``, the step in the free
            packed coordinates); or the fit ended at a singular Ψ* (rank r of q, named
            in the warning) where a Newton step along the face of the cone and into it
            still promises such a rise after the methods ran again from points off the
            face (a start of lower rank: one with a full-rank Ψ* may reach the maximum).
        BoundaryWarning
            The estimate is on the boundary of the parameter space.
        PrecisionWarning
            The residual variance is resolved only coarsely by the float64 statistics;
            or the fit ended at its start, where ``X'V*⁻¹X`` is singular to the rounding
            of its sums so that the llf there is not resolved (the optimizer refuses
            every such point beyond a start); or the reported ``fe_params``,
            ``cov_re`` and ``scale`` do not carry the fitted point in float64 (a random
            slope on a column far from zero next to its spread, whose raw-basis
            ``cov_re`` nearly cancels about the column's centre): the likelihood at the
            reported numbers lies below ``llf`` by more than ``½ f · 1e-7`` beyond the
            statistics' rounding (:func:`dmixed.fit.fit_warnings.reported_gap`); the
            warning names the column and the gap and suggests centring it.  As a rule
            of thumb it appears where the column's offset is about 1e7 times its
            spread or more (timestamps near 1.7e9 that span less than a few minutes);
            below about 1e6 the gap is under the float64 llf's resolution.  Near 1e7
            the gap is about the threshold and rests on the reported ``cov_re``'s last
            bits, so whether it appears there may depend on the kernel setting
            (``DMIXED_KERNELS``).  Centring
            the column (``x`` minus its mean in the data or, for a pandas DataFrame,
            ``center(x)`` in the formula and ``re_formula``) removes it.

        Notes
        -----
        The fit runs with numpy's transparent huge-page advice off
        (:func:`dmixed.kernels.pages.ordinary_pages`): numpy's setting is one per process,
        so other threads' arrays allocated meanwhile get ordinary pages too, and the
        setting found is given back on return.  On Dask, every function of the fit that
        runs on a worker (tasks and direct calls) runs there the same way
        (:class:`dmixed.kernels.pages.PagedCall`); on a multi-threaded worker, the other
        tasks of that worker process get ordinary pages meanwhile too.
        ``dmixed.kernels.pages.HUGE_PAGES_IN_FITS = True`` in the driver leaves numpy's
        advice alone, in the driver and on the workers.
        """
        return self._fit(
            None, start_params, reml, niter_sa, do_cg, fe_pen, cov_pen, free, full_output,
            method, maxiter=maxiter, gtol=gtol, cov_fe=cov_fe, skip_hessian=skip_hessian,
            progress=progress, client=client, engine=engine, check_nobs=check_nobs,
            **fit_kwargs,
        )  # fmt: skip

    @with_ordinary_pages
    def _fit(
        self,
        penalty: L1Settings | None,
        /,  # positional only: fit(penalty=...) is an unknown option of fit, in fit_kwargs
        start_params=None,
        reml: bool = True,
        niter_sa: int = 0,
        do_cg: bool = True,
        fe_pen=None,
        cov_pen=None,
        free=None,
        full_output: bool = False,
        method: str | list[str] | None = None,
        *,
        maxiter: int = 500,
        gtol: float = 1e-8,
        cov_fe: str = "hessian",
        skip_hessian: bool = False,
        progress: bool = False,
        client=None,
        engine: str | None = None,
        check_nobs: str = "raise",
        **fit_kwargs,
    ):
        """:meth:`fit`, and with ``penalty`` :meth:`fit_regularized`: the fixed effects
        L1-penalized at the fitted covariance parameters."""
        settings = check_fit_options(  # before the data pass
            cov_fe, check_nobs, method, start_params=start_params, reml=reml,
            skip_hessian=skip_hessian, maxiter=maxiter, gtol=gtol, progress=progress,
            full_output=full_output,
        )  # fmt: skip
        check_statsmodels_options(niter_sa=niter_sa, do_cg=do_cg, fe_pen=fe_pen, cov_pen=cov_pen)
        callback, disp = check_fit_kwargs(fit_kwargs)
        del full_output  # statsmodels' argument; the history is always kept
        t_start = time.perf_counter()
        self.reml = bool(reml)  # the criterion of loglike/score/hessian, as statsmodels
        stats = self.fit_statistics(client, progress, engine)
        if check_nobs == "raise":
            check_identifiable(stats, self.group_name, self.vc_names)
            check_distinct_component_values(
                stats, self.vc_names, self.group_name, self.exog_re_names
            )
        try:
            start = fit_start(self, stats, reml, start_params, method, free, settings, progress)
        except StartError as exc:
            cause = far_response(stats, self.endog_name, getattr(self.spec, "formula", None))
            if cause is None:
                raise
            raise StartError(f"{exc}; {cause}") from None
        opt = maximize(
            start.obj,
            start.summary,
            start.free,
            start.methods,
            progress=progress,
            newton_first=start.newton_first,
            on_iteration=iteration_report(start, stats.layout, self.use_sqrt, callback, disp),
        )
        obj, coords = start.obj, start.coords
        obj.release_lean()  # the optimizer is done with them
        if opt.repack(stats.layout, self.use_sqrt):
            obj = objective(stats, coords, reml, self.use_sqrt)
            obj.add_start(opt.initial)  # the start, repacked: still the fit's start
        ev = obj.evaluate(opt.packed)
        unpacked = stats.layout.unpack(opt.packed, self.use_sqrt)  # (Ψ, τ): both ask
        if ev.prof is None:
            # ℓ rises without bound where the effects reproduce the response exactly (Q → 0
            # as Ψ* grows), and the optimizer ends past float64's resolution of Q
            raise DataError(
                "the optimizer ended at covariance parameters where the log-likelihood is "
                "not defined in float64 (the residual sum of squares is not resolved): the "
                f"fixed and random effects reproduce {self.endog_name!r} (nearly) exactly, "
                "so the likelihood rises without bound as the random effects' variances "
                "grow and has no maximum; drop a random effect, or check that the response "
                "is not a copy of the model's columns"
            )
        warn_convergence(opt, stats.layout)
        formula = getattr(self.spec, "formula", None)
        warn_precision(
            ev,
            stats.glob,
            reml,
            plain_rounding_of(stats, ev),
            far_response(stats, self.endog_name, formula),
        )
        if obj.is_start(opt.packed):  # the only point whose factor may be unresolved
            warn_unresolved_start(ev, stats.glob, reml)
        warn_boundary(self, opt, stats.layout, unpacked[0])
        # the Hessian's basis is the plain packing, the mask's own (fit_start's, which
        # the optimizer reads and leaves as it is)
        estimated = start.free
        # in θ = [vech(Ψ*), τ*] whatever the packing: the Hessian's basis is ∂B*/∂θ
        # the BLUPs there come in the Hessian's round trip where the engine can
        prof, llf = ev.prof, ev.llf
        l1 = None
        if penalty is not None:  # fit_regularized: β penalized at these covariance parameters
            l1 = l1_profile(prof, coords, penalty)
            prof = l1.prof
            llf = profiled_loglike(ev.step, prof, stats.glob, reml)
        hess = (
            None
            if skip_hessian or l1 is not None
            else obj.hessian_full(opt.packed, ev.prof.beta, random_effects=True)
        )
        res = MixedLMResults.from_fit(
            model=self,
            stats=stats,
            reml=bool(reml),
            packed=opt.packed,
            prof=prof,
            llf=llf,
            hessian=hess,
            cov_fe=cov_fe,
            optimize_result=opt,
            fit_seconds=time.perf_counter() - t_start,
            coords=coords,
            free=estimated,
            # lme4's checks passed above (check_identifiable), else made there
            checked=True if check_nobs == "raise" else None,
            lam=ev.lam,  # Λ̃ of the optimum's evaluation: the BLUPs' factor
            unpacked=unpacked,
        )
        res.to_state().n_held = int(np.count_nonzero(~estimated))
        res.fit_options = dict(start_params=start_params, method=method, free=free, **settings)
        res.fit_options.update(
            cov_fe=cov_fe, skip_hessian=skip_hessian, engine=engine, check_nobs=check_nobs
        )
        res.to_state().held = res.held  # saved with the results: loaded ones keep it
        if l1 is not None:
            # the descent's β itself, its zeros exact (the map back from the statistics'
            # coordinates leaves a shifted intercept's zero at rounding size)
            state = res.to_state()
            state.fe_params = l1.beta
            state.params = np.concatenate([l1.beta, state.params[self.k_fe :]])
            state.regularized = dict(
                method="l1", alpha=penalty.alpha.tolist(), ceps=penalty.ceps, ptol=penalty.ptol,
                maxit=penalty.maxit, n_sweeps=l1.n_sweeps, converged=l1.converged,
            )  # fmt: skip
            res.fit_options["regularized"] = dict(state.regularized)
            # the fit converged where both the covariance optimizer and the descent did
            state.converged = res.converged = bool(state.converged and l1.converged)
            if not l1.converged:
                ill = (
                    f"; the quadratic in the penalized coefficients has condition number "
                    f"{l1.condition:.1e} (a column far from zero beside a penalized "
                    "intercept, say): centre such columns or leave the intercept unpenalized"
                    if l1.condition >= 1e8
                    else ""
                )
                warnings.warn(
                    f"fit_regularized: the coordinate descent did not converge in "
                    f"maxit={penalty.maxit} sweeps (ptol={penalty.ptol}){ill}",
                    FitConvergenceWarning,
                    stacklevel=caller_stacklevel(),
                )
        # the reported numbers may not carry the point in float64 (a shifted random
        # slope): after the Hessian and the BLUPs, which read the engine at opt.packed,
        # and after a penalized fit's β is set (res.fe_params is cached on first read)
        # (the state's arrays, as the reported numbers hold them: no pandas objects made)
        state = res.to_state()
        gap, noise = reported_gap(
            obj, coords, stats.layout, self.use_sqrt, ev, opt.packed,
            (np.asarray(state.fe_params), np.asarray(state.cov_re), float(state.scale)),
            llf_fit=llf,
        )  # fmt: skip
        warn_reported_point(gap, noise, ev.prof.fac, coords.columns, self.exog_re_names)
        return res

    def fit_regularized(
        self, start_params=None, method="l1", alpha=0, ceps=1e-4, ptol=1e-6, maxit=200, **fit_kwargs
    ):
        """statsmodels' ``MixedLM.fit_regularized``: L1-penalized fixed effects at the
        covariance parameters of the unpenalized fit.

        The covariance parameters are those of ``fit(start_params=start_params,
        **fit_kwargs)`` (REML by default, as ``fit``; ``reml=False`` for ML) and are not
        updated, as statsmodels documents.  At them the fixed effects minimize

            F(β) = (y − Xβ)'V̂⁻¹(y − Xβ) + Σ_j α_j |β_j|,   V̂ = σ̂²(I + Z̃ B̂* Z̃')

        (−2 times the log-likelihood in β, terms free of β left out, plus the penalty;
        the REML and ML criteria have the same β-part), by cyclic coordinate descent
        (:func:`dmixed.fit.penalized.l1_coordinate_descent`) on ``X'V̂⁻¹X`` and the GLS
        estimate, which the fit's profile holds: no second data pass, no loop over
        groups, the same on every engine (Dask included).  The unpenalized
        coefficients are profiled out exactly first, so a column far from zero beside
        an unpenalized intercept gives the centred column's solution
        (:func:`dmixed.fit.penalized.l1_profile`).

        Parameters
        ----------
        start_params : array_like, optional
            Passed to ``fit``.
        method : str
            ``"l1"`` (case-insensitive).  statsmodels also takes a ``Penalty`` object;
            dmixed does not (``NotOfferedError``).
        alpha : float, array_like (k_fe,) or pandas Series
            Penalty weights ≥ 0, one for every fixed effect (a scalar: the same for
            all; a Series: by ``exog_names``, each once); 0 leaves a coefficient
            unpenalized.
        ceps : float > 0
            Penalized coefficients (``alpha_j > 0``) smaller than this in magnitude
            after the descent are set to exactly zero.
        ptol : float > 0
            The descent stops when the optimality conditions hold to ``ptol`` times
            the largest ``alpha`` (each sweep ends with an exact solve on its nonzero
            coefficients).
        maxit : int ≥ 1
            At most this many sweeps (a ``FitConvergenceWarning`` if they do not
            converge; ``converged`` is then False).
        **fit_kwargs
            Passed to ``fit`` (``reml``, ``method``, ``free``, ...).

        Returns
        -------
        MixedLMResults
            ``fe_params`` the penalized β; ``cov_re``, ``vcomp`` relative to
            ``scale`` as in the unpenalized fit (Ψ*, τ* held); ``scale = Q(β)/f``
            (``f = n − p`` REML, ``n`` ML) at the penalized β; ``llf`` the
            (restricted) log-likelihood at these parameters, σ² profiled (at
            ``alpha = 0``: the fit's llf); BLUPs at the penalized β.  No Hessian is
            made: every standard error is NaN, the covariance parameters' too (a
            penalized estimate has none of the usual kind; statsmodels reports the
            unpenalized Hessian's at the penalized point; the covariance parameters'
            of the unpenalized fit are ``fit(...).bse``).  ``converged`` is that of
            the covariance optimizer and the descent together.  ``regularized``
            (saved with the results; also ``fit_options["regularized"]``) holds the
            settings, sweeps and the descent's convergence; the summary says the fit
            is L1-regularized.  The inference of the unpenalized likelihood is
            refused (``NotOfferedError``): ``confint``, ``profile_ci``,
            ``bootstrap``, ``profile_re``, ``hessv``, ``compare_lr_test`` and
            ``dmixed.anova`` with these results, and ``t_test``, ``wald_test``,
            ``f_test``, ``wald_test_terms`` on the fit's covariance.

        Raises
        ------
        SpecError
            ``method`` not ``"l1"``; ``alpha`` negative, not finite, booleans, a
            vector not of length ``k_fe`` or a Series not indexed by ``exog_names``;
            ``ceps`` or ``ptol`` not a finite number > 0; ``maxit`` not an integer
            ≥ 1; an option ``fit`` does not know (``penalty=...`` too).  And what
            ``fit`` raises.
        NotOfferedError
            ``method`` a penalty object (statsmodels' ``Penalty``).

        Notes
        -----
        Source: statsmodels' documented semantics (``help(MixedLM.fit_regularized)``,
        statsmodels 0.15) for the arguments; the coordinate descent after Friedman,
        Hastie & Tibshirani (2010), J. Stat. Softw. 33(1).  statsmodels' ``llf`` for
        these results is not the fit's at ``alpha = 0`` (it differs by about 0.05 on
        small data); dmixed's is the likelihood at the reported parameters.
        statsmodels' ``cov_re`` of these results is the unpenalized fit's ``σ̂₀²Ψ̂*``
        beside its penalized ``scale``; dmixed's is ``scale · Ψ̂*``, as for every fit,
        and ``vcomp`` likewise (``scale · τ̂*`` against statsmodels' ``σ̂₀²τ̂*``).
        """
        settings = l1_settings(method, alpha, ceps, ptol, maxit, list(self.exog_names))
        res = self._fit(settings, start_params=start_params, **fit_kwargs)
        return res

    def get_distribution(self, params, scale: float, exog=None) -> RowDistribution:
        """statsmodels' ``MixedLM.get_distribution``: the response's distribution on
        the model's rows at ``params`` (``[fe_params, vech_lt(Ψ*), τ*]``, the covariance
        parameters divided by ``scale``), whose ``rvs(n, rng)`` draws it.  See
        :func:`dmixed.results.simulate.row_distribution`."""
        return row_distribution(self, params, scale, exog)

    @staticmethod
    def start_from_moments(stats: FittedStatistics, layout: Layout) -> np.ndarray | None:
        """Moment estimates (:func:`dmixed.fit.start.moment_start`) packed for the
        optimizer (square-root packing), or ``None`` where they are not used: no
        covariance parameter, a random design wider than ``kernels.MOMENT_MAX_R`` even
        with one slot per variance component (``engine.collapsed_moments``), or
        estimates that say nothing."""
        return engine_moment_start(stats.engine, stats.glob, layout)


mixedlm = MixedLM.from_formula
