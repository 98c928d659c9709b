"""Predictions from fitted results: ``X β̂`` and ``X β̂ + Z̃ γ̂_group``, in memory or on Dask.

:class:`Predictor` holds only what prediction needs (β̂, the BLUPs and their slot
layout), so it is small enough to ship to Dask workers as one task; :func:`predict_dask`
maps it over the partitions of a Dask DataFrame lazily.
"""

from __future__ import annotations

import contextvars
import dataclasses
import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd

from ..design import is_dask
from ..design.arrays import as_float_matrix
from ..design.dtypes import comparable_keys
from ..design.evaluate import nonfinite_kept
from ..design.messages import plural
from ..design.missing import rows_with_missing
from ..design.origin import in_partition, partition_words
from ..design.partitions import check_persisted, select_columns
from ..design.prepare import check_formula_dtypes, needed_columns
from ..errors import (
    DataError,
    NonFiniteRowsWarning,
    SpecError,
    UnseenGroupsWarning,
    caller_stacklevel,
)
from ..stats.slots import lookup_vc_slots, table_pairs
from .new_levels import (
    check_new_levels,
    entries_new_to_groups,
    new_levels_of,
    new_to_groups_problem,
    refuse_both,
    refuse_new_to_groups,
)

__all__ = [
    "NEW_GROUPS",
    "Predictor",
    "check_new_groups",
    "columns_frame",
    "formula_data",
    "transform_for_prediction",
    "predict_frame",
    "NewRows",
    "on_frame_rows",
    "on_rows_with_new_levels",
    "predict_dask",
]

#: What ``include_random=True`` gives rows of groups the fit did not see.
NEW_GROUPS = ("population", "nan", "error")


def check_new_groups(new_groups: str) -> None:
    """Refuse a ``new_groups`` that is not one of :data:`NEW_GROUPS`."""
    if new_groups not in NEW_GROUPS:
        shown = ", ".join(repr(v) for v in NEW_GROUPS)
        raise SpecError(f"new_groups must be one of {shown}, got {new_groups!r}")


def formula_data(spec, data, exog):
    """``(data, exog)`` of a ``predict``-like call, with a DataFrame, a mapping of columns
    or a Series passed as ``exog`` to a formula model (``spec`` not None) moved to
    ``data``: statsmodels applies the formula to it, so it is new data, not a design
    matrix.  To a model built from arrays (``spec`` None) the first positional argument
    is statsmodels' ``exog``, the new design, and is moved there (a Dask DataFrame
    stays, to be refused as formula data).

    ``data`` as statsmodels' formula ``predict`` also takes it is made a DataFrame
    (:func:`columns_frame`): a mapping of columns, a pandas Series.

    Raises
    ------
    SpecError
        Both ``data`` and such an ``exog``, or both for a model built from arrays.
    DataError
        ``data`` of a formula model that is none of these (an ndarray has no column
        names to read), or columns of different lengths.
    """
    if spec is None and data is not None and not is_dask(data):
        if exog is not None:
            raise SpecError("pass the new rows once: as data or as exog, not both")
        return None, data
    if spec is not None and data is not None and not _frame(data):
        data = columns_frame(spec, data)
    if spec is None or not (_frame(exog) or isinstance(exog, (pd.Series, Mapping))):
        return data, exog
    if data is not None:
        raise SpecError("pass the new rows once: as data or as exog, not both")
    return (exog if _frame(exog) else columns_frame(spec, exog)), None


def columns_frame(spec, data) -> pd.DataFrame:
    """New rows of a formula model as a DataFrame, as statsmodels' formula ``predict``
    reads them: a mapping of columns (of scalars: one row, index ``[0]``); a Series
    named as a column the model uses is that column, another Series is one row (its
    name the row's label; its values' types inferred, a row of a mixed frame holding
    objects).

    Raises
    ------
    DataError
        ``data`` that is none of these, or columns of different lengths.
    """
    if isinstance(data, pd.Series):
        if data.name is not None and data.name in spec.columns_used:
            return data.to_frame()
        return data.to_frame().T.infer_objects()
    if not isinstance(data, Mapping):
        raise DataError(
            f"data must be a pandas or Dask DataFrame, got {type(data).__name__} (or a "
            "dict of columns, or a Series: a formula model reads its columns by name)"
        )
    columns = dict(data)
    scalars = bool(columns) and all(np.ndim(v) == 0 for v in columns.values())
    try:
        return pd.DataFrame(columns, index=[0] if scalars else None)
    except ValueError as exc:
        raise DataError(f"the columns of data do not make a table: {exc}") from exc


def _frame(value) -> bool:
    return isinstance(value, pd.DataFrame) or is_dask(value)


def _new_rows(value, width: int, argname: str) -> np.ndarray:
    """New rows of a design ``width`` columns wide, a 2-D float64 matrix
    (:func:`~dmixed.design.arrays.as_float_matrix`: a DataError naming ``argname`` for
    text or values that are not 1- or 2-dimensional; ``None`` and ``pd.NA`` are NaN), a
    1-D ``value`` read as statsmodels' ``predict`` reads a 1-D ``exog``: one row, or
    a column where the design has one column; a scalar is one row (statsmodels'
    ``predict(5.0)`` of a model of one fixed effect)."""
    if np.ndim(value) == 0:  # a list, not np.reshape: text is shown as given ('a')
        value = [[value]]
    if np.ndim(value) == 1 and width != 1:
        value = np.asarray(value)[None, :]
    return as_float_matrix(value, argname)


def transform_for_prediction(spec, df: pd.DataFrame, include_random: bool = True):
    """Design matrices of the rows of ``df`` that can be predicted: the response may be
    absent, and rows with a missing value in a column the prediction uses are left out
    whatever the fit's ``missing`` (their prediction is NaN; ``keep`` marks the others).
    Without ``include_random`` only the fixed-effects formula's columns are used (the
    group column and the random part's may be absent), as statsmodels' ``predict``."""
    spec = dataclasses.replace(spec, missing="drop")
    return spec.transform(df, response=False, random=include_random)


def unseen_rows(n_unseen: int, n_rows: int, keys, name: str) -> str:
    """The words of an unseen-groups warning or error: ``n_unseen`` of ``n_rows`` rows
    in the distinct ``keys`` (the first five shown) of the group column ``name``."""
    shown = ", ".join(repr(v) for v in keys[:5].tolist())
    return (
        f"{n_unseen} of {n_rows} rows belong to {len(keys)} group(s) of {name!r} the fit "
        f"did not see ({shown}{', ...' if len(keys) > 5 else ''})"
    )


def warn_unseen(what: str) -> None:
    """The :class:`~dmixed.errors.UnseenGroupsWarning` of ``new_groups="population"``
    (``what``: :func:`unseen_rows`), attributed to the first caller outside dmixed
    (:func:`caller_stacklevel`): the paths that reach it differ in depth."""
    warnings.warn(
        f"{what}: they get the population prediction X·fe_params; pass "
        "new_groups='nan' or 'error' to have NaN or an error instead",
        UnseenGroupsWarning,
        stacklevel=caller_stacklevel(),
    )


class Predictor:
    """What prediction needs from a fit (shipped to Dask workers for lazy predictions).

    Parameters
    ----------
    fe_params : array_like (p,)
        β̂.
    group_labels : ndarray (G,)
        The fitted groups, in the order of ``blup``'s rows.
    blup : ndarray (G, r)
        Padded BLUPs: ``k_re`` random effects, then each component's slots.
    slot_cols : list of ndarray (G, m_l)
        The column of component ``l`` each slot stands for (-1: unused).
    vc_ncols : list of int
        Number of columns of each variance component.
    k_re : int
    vc_names : (list of str, list of list of str), optional
        The components' names and their columns' names (``vc_names``,
        ``vc_column_names``): errors then name the levels new to a group.
    vc_levels : (list of VCPlan, dict), optional
        The spec's ``vc_plans`` and ``levels``: errors then show a level as the data
        holds it (``'2'`` or ``2``), not by its column's name.
    """

    def __init__(
        self,
        fe_params,
        group_labels,
        blup,
        slot_cols,
        vc_ncols,
        k_re,
        vc_names=None,
        vc_levels=None,
    ) -> None:
        self.fe_params = np.asarray(fe_params)
        self.group_labels = group_labels
        self.blup = blup
        self.slot_cols = slot_cols
        self.vc_ncols = vc_ncols
        self.k_re = k_re
        self.vc_names = vc_names
        self.vc_levels = vc_levels
        self._label_index: pd.Index | None = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_label_index"] = None  # rebuilt where used: its hash table is not shipped
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({"_label_index": None, **state})

    @property
    def label_index(self) -> pd.Index:
        """``group_labels`` as a pandas Index, built once per process: its hash table
        over every fitted group is what each partition's lookup would otherwise build
        again."""
        if self._label_index is None:
            self._label_index = pd.Index(self.group_labels)
        return self._label_index

    def positions(
        self, groups, name: str, new_groups: str = "population", warn: bool = True
    ) -> np.ndarray:
        """Row of each key in the fitted groups, -1 for a group the fit did not see.

        Keys match by the identity rule of the fit (:func:`~dmixed.design.dtypes.
        comparable_keys`: ``5`` and ``5.0`` are one group, ``'5'`` is refused for groups
        fitted as numbers).  Unseen groups warn (``new_groups="population"``), or raise
        (``"error"``); ``"nan"`` is left to the caller.  ``warn=False``: no warning (the
        caller warns once for all its rows: :func:`predict_dask`).

        Raises
        ------
        DataError
            Keys of another class than the fitted ones; unseen groups with
            ``new_groups="error"``.
        """
        keys = comparable_keys(np.asarray(groups), np.asarray(self.group_labels), name)
        idx = self.label_index.get_indexer(pd.Index(keys))
        unseen = idx < 0
        if unseen.any() and new_groups != "nan":
            what = unseen_rows(int(unseen.sum()), len(idx), pd.unique(keys[unseen]), name)
            if new_groups == "error":
                raise DataError(f"{what}; new_groups='error' refuses them")
            if warn:
                warn_unseen(what)
        return idx

    def unseen_keys(self, groups, name: str) -> tuple[int, np.ndarray]:
        """The number of ``groups`` the fit did not see and their distinct keys (in
        order of appearance), by the rule of :meth:`positions`."""
        keys = comparable_keys(np.asarray(groups), np.asarray(self.group_labels), name)
        unseen = self.label_index.get_indexer(pd.Index(keys)) < 0
        return int(unseen.sum()), pd.unique(keys[unseen])

    def vc_slots(self, idx: np.ndarray, vc_cols, vc_vals) -> list[tuple[int, np.ndarray]]:
        """Per variance component: its first position among the padded random effects
        (after the ``k_re`` ones) and the slot of each row's entries (n, k_l), -1 where
        the row's group is unseen (``idx`` < 0), the entry absent or zero, or of a column
        the group did not have in the fit."""
        seen = idx >= 0
        out = []
        offset = self.k_re
        for comp, (cols, vals) in enumerate(zip(vc_cols, vc_vals, strict=True)):
            ncols = max(self.vc_ncols[comp], 1)
            keys, slots = table_pairs(self.slot_cols[comp], ncols)
            # rows of unseen groups and columns the group did not have in the fit: no slot
            rows_cols = np.where(seen[:, None], cols, -1)
            slot = lookup_vc_slots(idx, rows_cols, vals, keys, slots, ncols, strict=False)
            out.append((offset, slot))
            offset += self.slot_cols[comp].shape[1]
        return out

    def new_to_groups(self, idx, slots, rows, new_levels: str, name: str) -> np.ndarray:
        """The rows (bool, n) of fitted groups with an entry of a variance-component
        column the group did not have in the fit (a level seen in other groups only:
        :func:`~dmixed.results.new_levels.entries_new_to_groups`); ``slots`` from
        :meth:`vc_slots` of ``rows`` (``vc_cols``, ``vc_vals``).

        Raises
        ------
        DataError
            Such rows with ``new_levels="error"``, naming groups and levels.
        """
        entries = entries_new_to_groups(idx, slots, rows.vc_cols, rows.vc_vals)
        fresh = np.zeros(len(idx), dtype=bool)
        for new in entries:
            fresh |= new.any(axis=1)
        if new_levels == "error" and fresh.any():
            refuse_new_to_groups(
                entries, idx, rows.vc_cols, self.group_labels, name, self.vc_names, self.vc_levels
            )
        return fresh

    def new_to_groups_problem(self, rows, name: str) -> str | None:
        """What rows of fitted groups in ``rows`` with a level their group did not have
        in the fit are refused for (:func:`~dmixed.results.new_levels.
        new_to_groups_problem`), None where there is none; unseen groups are not
        warned of (the prediction that follows warns), and keys the fit cannot match
        give None (that refusal is the caller's, not this one's)."""
        try:
            idx = self.positions(rows.groups, name, "nan", warn=False)
        except DataError:
            return None
        slots = self.vc_slots(idx, rows.vc_cols, rows.vc_vals)
        entries = entries_new_to_groups(idx, slots, rows.vc_cols, rows.vc_vals)
        return new_to_groups_problem(
            entries, idx, rows.vc_cols, self.group_labels, name, self.vc_names, self.vc_levels
        )

    def random_part(self, idx: np.ndarray, exog_re, vc_cols, vc_vals, slots=None) -> np.ndarray:
        """``Z̃_row · γ̂_group`` for every row, given each row's fitted group (``idx`` from
        :meth:`positions`); 0 for groups (and VC columns) not in the fit, whose random
        effects have mean 0 (the population prediction).  ``slots``: :meth:`vc_slots` of
        these rows when the caller has them."""
        seen = idx >= 0
        out = np.zeros(len(idx))
        if self.k_re:
            sel = slice(None) if seen.all() else seen  # no copies when all are seen
            # np.take gathers whole rows several times faster than fancy indexing with
            # a column slice: the same (n, k_re) C-ordered values either way
            blup = np.take(self.blup[:, : self.k_re], idx[sel], axis=0)
            out[sel] = np.einsum("nj,nj->n", exog_re[sel], blup)
        if slots is None:
            slots = self.vc_slots(idx, vc_cols, vc_vals)
        for (offset, slot), vals in zip(slots, vc_vals, strict=True):
            for k in range(slot.shape[1]):
                ok = slot[:, k] >= 0
                out[ok] += vals[ok, k] * self.blup[idx[ok], offset + slot[ok, k]]
        return out

    def predict(
        self,
        dm,
        include_random: bool,
        name: str = "groups",
        new_groups: str = "population",
        new_levels: str = "error",
        warn: bool = True,
    ) -> np.ndarray:
        """``X β̂`` (+ ``Z̃ γ̂`` with ``include_random``) for design matrices ``dm``
        (``name``: the group column; ``new_groups`` and ``warn``: see :meth:`positions`;
        ``new_levels``: what rows with a level new to their group get, see
        :meth:`new_to_groups`)."""
        fixed = dm.exog @ self.fe_params
        if not include_random:
            return fixed
        idx = self.positions(dm.groups, name, new_groups, warn)
        slots = self.vc_slots(idx, dm.vc_cols, dm.vc_vals)
        fresh = self.new_to_groups(idx, slots, dm, new_levels, name)
        out = fixed + self.random_part(idx, dm.exog_re, dm.vc_cols, dm.vc_vals, slots)
        if new_groups == "nan":
            out[idx < 0] = np.nan
        if new_levels == "nan":
            out[fresh] = np.nan
        return out

    def predict_arrays(
        self, exog, exog_re, groups, include_random: bool, new_groups: str = "population"
    ) -> np.ndarray:
        """``X β̂`` (+ ``Z γ̂_group``) for the arrays of new rows of an array-built model
        (checked by :meth:`array_rows`)."""
        rows = self.array_rows(exog, exog_re, groups, include_random)
        return self.predict(rows, include_random, "groups", new_groups)

    def array_rows(self, exog, exog_re, groups, include_random: bool) -> NewRows:
        """The new rows of an array-built model, checked (``exog_re`` and ``groups`` are
        read only with ``include_random``); a 1-D ``exog`` is one row unless the model
        has one fixed effect (statsmodels' reading), and a 1-D ``exog_re`` one row
        unless it has one random effect (:func:`_new_rows`).

        Raises
        ------
        ValueError
            ``exog`` has the wrong number of columns; ``include_random`` without
            ``groups``, or for a model with variance components; ``exog_re`` (needed
            unless the model's only random effect is an intercept) or ``groups`` not of
            ``exog``'s rows, ``exog_re`` not of ``k_re`` columns.
        """
        x = _new_rows(exog, len(self.fe_params), "exog")
        if x.shape[1] != len(self.fe_params):
            raise DataError(f"exog has {x.shape[1]} columns; the model has {len(self.fe_params)}")
        n = x.shape[0]
        if not include_random:
            return NewRows(x, np.zeros((n, 0)), np.zeros(n))
        if groups is None:
            raise SpecError("include_random=True needs groups=")
        if self.slot_cols:
            raise SpecError("include_random with exog= is not available for VC models")
        if exog_re is None and self.k_re != 1:
            raise SpecError(f"include_random=True needs exog_re= with {self.k_re} columns")
        z = np.ones((n, 1)) if exog_re is None else _new_rows(exog_re, self.k_re, "exog_re")
        if z.shape != (n, self.k_re):
            raise DataError(f"exog_re has shape {z.shape}; expected ({n}, {self.k_re})")
        keys = np.asarray(groups)
        if keys.shape != (n,):
            raise DataError(f"groups has shape {keys.shape}; expected ({n},), one per row")
        return NewRows(x, z, keys)


@dataclasses.dataclass
class NewRows:
    """The designs of new rows given as arrays (the members of
    :class:`~dmixed.design.spec.DesignMatrices` prediction reads)."""

    exog: np.ndarray
    exog_re: np.ndarray
    groups: np.ndarray
    vc_cols: list = dataclasses.field(default_factory=list)
    vc_vals: list = dataclasses.field(default_factory=list)


def on_frame_rows(spec, df: pd.DataFrame, include_random: bool, compute, width: int):
    """``compute(dm)`` (n_kept, width) for the rows of ``df`` that can be predicted
    (:func:`transform_for_prediction`), as an array (len(df), width) with NaN rows
    where a column the prediction uses is missing, and where a transform makes the
    model matrix non-finite (:func:`nonfinite_rows`, with a warning)."""
    if len(df) == 0:
        return np.full((0, width), np.nan)
    with nonfinite_kept():
        dm = transform_for_prediction(spec, df, include_random)
    dm, bad = nonfinite_rows(dm, spec)
    values = np.asarray(compute(dm), dtype=np.float64).reshape(-1, width)
    if bad is not None:
        values[bad] = np.nan
    if dm.keep is None:  # every row kept: the computed values themselves
        return values
    out = np.full((len(df), width), np.nan)
    out[dm.keep] = values
    return out


#: The Dask partition a prediction's rows come from (:func:`fitted_partition` sets it),
#: for :func:`nonfinite_rows`' warning; "" for a pandas frame.  A context variable, so
#: that the threads of Dask's scheduler do not see each other's.
_PARTITION: contextvars.ContextVar[str] = contextvars.ContextVar("_PARTITION", default="")


def nonfinite_rows(dm, spec):
    """``(dm, bad)``: the rows of ``dm`` whose fixed-effects or random-effects design holds
    NaN or ±inf (``bad`` (n,) bool, None where none does), their entries set to 0 in a
    copy so that the prediction's sums stay finite for the other rows, and a
    :class:`~dmixed.errors.NonFiniteRowsWarning` naming each column that holds them and
    its rows (and, on Dask, the partition: the warning is raised in each partition's
    task, once per partition holding such rows, as the prediction is lazy and no
    total is known at the call).

    Those rows' predictions are NaN, as a row with a missing value's.  statsmodels gives
    ``X β̂`` there, −inf or +inf where one entry is ±inf (``np.log(0)``): the sign is
    that of one coefficient and not of the data, and the random part (BLUPs times a
    non-finite ``Z``) has none; NaN says the prediction is undefined."""
    parts, bad = [], None
    for mat, names in ((dm.exog, spec.exog_names), (dm.exog_re, spec.exog_re_names)):
        if mat.size == 0:
            continue
        wrong = ~np.isfinite(mat)
        if not wrong.any():
            continue
        per_col = wrong.sum(axis=0)
        parts += [f"{names[j]!r} ({plural(int(per_col[j]))})" for j in np.flatnonzero(per_col)]
        rows = wrong.any(axis=1)
        bad = rows if bad is None else bad | rows
    if bad is None:
        return dm, None
    exog = np.where(np.isfinite(dm.exog), dm.exog, 0.0) if dm.exog.size else dm.exog
    exog_re = np.where(np.isfinite(dm.exog_re), dm.exog_re, 0.0) if dm.exog_re.size else dm.exog_re
    where = _PARTITION.get()
    warnings.warn(
        f"{where + ': ' if where else ''}"
        f"non-finite values in the model matrix of new data, column(s) {', '.join(parts)}: "
        f"{plural(int(bad.sum()))} predicted as NaN (a transform such as np.log of 0 or of "
        "a negative number)",
        NonFiniteRowsWarning,
        stacklevel=caller_stacklevel(),
    )
    return dataclasses.replace(dm, exog=exog, exog_re=exog_re), bad


def predict_frame(
    predictor: Predictor,
    spec,
    df: pd.DataFrame,
    include_random: bool,
    new_groups: str,
    new_levels: str = "error",
    warn: bool = True,
) -> pd.Series:
    """Predictions for every row of a pandas frame, indexed like it: NaN where a column
    the prediction uses is missing (and, with ``new_groups="nan"``, for unseen groups;
    with ``new_levels="nan"``, for new levels of the variance components:
    :mod:`dmixed.results.new_levels`); ``warn=False``: no warning for unseen groups."""

    def compute(dm, squares):
        del squares  # a new level's random effect has mean zero
        return predictor.predict(dm, include_random, spec.group_name, new_groups, new_levels, warn)

    values = on_rows_with_new_levels(spec, df, predictor, include_random, new_levels, compute, 1)
    return pd.Series(values[:, 0], index=df.index)


def on_rows_with_new_levels(
    spec, df: pd.DataFrame, predictor, include_random: bool, new_levels: str, compute, width
):
    """:func:`on_frame_rows` for rows whose variance components may hold levels the fit
    did not see (:func:`~dmixed.results.new_levels.new_levels_of`): ``compute(dm,
    squares)`` gets the design with those entries dropped and, per component, the sum
    of squares of each row's dropped values (n_kept, k_vc); their rows are NaN with
    ``new_levels="nan"``.

    Raises
    ------
    DataError
        New levels in rows of fitted groups with ``new_levels="error"``.
    """
    found = None
    if include_random and spec.vc_plans and len(df):
        df, found = new_levels_of(spec, df, predictor.group_labels, new_levels)

    def run(dm):
        if found is None:
            return compute(dm, np.zeros((len(dm.exog), len(dm.vc_cols))))
        fresh, squares = found.apply(dm)
        if found.refusal is not None:
            refuse_both(found, predictor.new_to_groups_problem(dm, spec.group_name))
        out = np.asarray(compute(dm, squares), dtype=np.float64).reshape(len(fresh), width)
        if new_levels == "nan":
            out[fresh] = np.nan
        return out

    return on_frame_rows(spec, df, include_random, run, width)


def fitted_partition(
    pdf,
    spec,
    predictor: Predictor,
    include_random: bool,
    what: str,
    new_groups: str,
    new_levels: str = "error",
    partition_info=None,
):
    """One partition's predictions (every row), or fitted values or residuals (the rows
    kept), indexed like them in ``pdf`` (``what``: see :func:`predict_dask`).  Unseen
    groups are not warned of here: :func:`predict_dask` warns once for all partitions, at
    the call (:func:`warn_unseen_dask`).  A refusal (``new_groups="error"``,
    ``new_levels="error"``) counts this partition's rows only, and says so
    (``partition_info``: Dask's, its number)."""
    if what == "predict":
        number = None if partition_info is None else int(partition_info["number"])
        token = _PARTITION.set(partition_words(number, None))
        try:
            return predict_frame(
                predictor, spec, pdf, include_random, new_groups, new_levels, warn=False
            )
        except DataError as err:
            raise in_partition(err, number) from None
        finally:
            _PARTITION.reset(token)
    name = "resid" if what == "resid" else "fittedvalues"
    if len(pdf) == 0:
        return pd.Series([], index=pdf.index, dtype="float64", name=name)
    dm = spec.transform(pdf)
    index = pdf.index if dm.keep is None else pdf.index[dm.keep]
    pred = predictor.predict(dm, include_random, spec.group_name)
    values = dm.endog - pred if what == "resid" else pred
    return pd.Series(values, index=index, name=name)


def unseen_partition(
    pdf, group_name: str, kinds, columns: list, predictor: Predictor
) -> tuple[int, int, np.ndarray]:
    """``(rows, unseen rows, distinct unseen keys)`` of the rows of one partition that a
    prediction with ``include_random`` reads: those without a missing value in any of
    ``columns`` (:func:`~dmixed.design.missing.rows_with_missing`, the rule of
    ``missing="drop"``; ``kinds``: the spec's column kinds), their groups matched by the
    rule of :meth:`Predictor.positions`.  Only the group column and the missing-value
    masks are read: no design is built."""
    if len(pdf) == 0:
        return 0, 0, np.array([], dtype=object)
    groups = pdf[group_name].to_numpy()
    if columns:
        groups = groups[~rows_with_missing(pdf, kinds, columns)]
    n_unseen, keys = predictor.unseen_keys(groups, group_name)
    return len(groups), n_unseen, keys


def warn_unseen_dask(state, spec, data) -> None:
    """Warn once, here, of the rows of the Dask DataFrame ``data`` in groups the fit did
    not see (the totals over its partitions, as :meth:`Predictor.positions` words them
    for a pandas frame), for ``new_groups="population"`` of :func:`predict_dask` and of
    :func:`~dmixed.results.prediction_error.moments_dask` alike: one warning for the call,
    not one per partition (a warning raised in the tasks would repeat on worker processes,
    and a filter changed inside a task resets Python's "once").  Computes the group
    column and the missing-value masks of the columns a prediction reads, once, now
    (:func:`unseen_partition`).  ``state``: the :class:`Predictor` as one Dask task (a
    dependency of every partition's count, not a literal of each): the task the
    prediction itself depends on, or an attribute of it, so the predictor is not
    tokenized again for the count."""
    import dask  # only here: dmixed imports without Dask

    columns = needed_columns(spec, response=False, random=True)
    kinds = dict(spec.column_kinds)
    count = dask.delayed(unseen_partition, pure=True)
    parts = [count(part, spec.group_name, kinds, columns, state) for part in data.to_delayed()]
    found = dask.compute(*parts)
    n_unseen = sum(f[1] for f in found)
    if n_unseen:
        keys = pd.unique(np.concatenate([np.asarray(f[2], dtype=object) for f in found]))
        what = unseen_rows(n_unseen, sum(f[0] for f in found), keys, spec.group_name)
        warn_unseen(what)


def predict_dask(
    predictor: Predictor,
    spec,
    ddf,
    include_random: bool,
    what: str = "predict",
    new_groups: str = "population",
    new_levels: str = "error",
):
    """Predictions, fitted values or residuals of a Dask DataFrame: a lazy Dask Series
    with the partitions of ``ddf``.

    Parameters
    ----------
    predictor : Predictor
    spec : dmixed.design.ModelSpec
    ddf : dask.dataframe.DataFrame
        New rows (``what="predict"``: the response need not be there) or the fitted
        ones.
    include_random : bool
        Add ``Z̃ γ̂_group`` to ``X β̂``.
    what : {"predict", "fittedvalues", "resid"}
        ``"resid"`` gives ``y − fitted``.
    new_groups : {"population", "nan", "error"}
        ``"predict"`` with ``include_random``: what rows of unseen groups get
        (:meth:`Predictor.positions`).  ``"population"`` (the default) reads ``ddf``'s
        group column (and the missing values of the columns the prediction uses) once,
        here, to count the unseen groups, and warns once, in the calling process, with
        the totals of every partition (:func:`warn_unseen_dask`); the rows are read
        again when the result is computed.  ``"nan"`` and ``"error"`` read nothing
        here: ``"error"`` raises when the result is computed, in the first partition
        holding such rows, with that partition's counts and number.
    new_levels : {"error", "population", "nan"}
        ``"predict"`` with ``include_random``: what rows of fitted groups with levels of
        a variance component the fit did not see get (:mod:`dmixed.results.new_levels`).

    Returns
    -------
    dask.dataframe.Series
        float64, named ``"resid"`` or ``"fittedvalues"`` (``"predict"``: unnamed, as
        the pandas prediction and statsmodels').  ``"predict"``: every row of
        ``ddf``, NaN where a column the prediction uses is missing.  Fitted values and
        residuals: rows with a missing value in a column the model uses are left out
        with ``missing="drop"``, as the in-process fit leaves them out: the Series holds
        the kept rows, with their index in ``ddf``.

    Raises
    ------
    DataError
        Now: a used column is not in ``ddf``; the persisted data of ``ddf`` are gone;
        ``ddf`` declares a used column of a dtype a fit refuses (timestamps, durations:
        :func:`~dmixed.design.prepare.check_formula_dtypes`).
        When computed: a partition lacks a used column (named with its number); missing
        values with ``missing="raise"`` (fitted values and residuals); group keys of
        another class than the fitted ones; unseen groups with ``new_groups="error"``;
        new levels with ``new_levels="error"``.
    """
    if what not in ("predict", "fittedvalues", "resid"):
        raise SpecError(f"what must be 'predict', 'fittedvalues' or 'resid', got {what!r}")
    check_new_groups(new_groups)
    check_new_levels(new_levels)
    check_persisted(ddf)
    predicting = what == "predict"
    needed = needed_columns(spec, response=not predicting, random=include_random or not predicting)
    data = select_columns(ddf, needed, spec.group_name)
    # the declared dtypes, now (each partition's are checked where it is read)
    check_formula_dtypes(spec, data._meta, needed)
    from ..design.persisted_task import checked_task

    # one task holding the predictor: a dependency of every partition, not a literal;
    # computed after persisted data of ddf are gone, it refuses them (checked_task)
    state = checked_task(predictor, ddf)
    if predicting and include_random and new_groups == "population":
        warn_unseen_dask(state, spec, data)
    name = None if what == "predict" else what
    return data.map_partitions(
        fitted_partition,
        spec,
        state,
        include_random,
        what,
        new_groups,
        new_levels,
        meta=pd.Series(dtype="float64", name=name),
    )
