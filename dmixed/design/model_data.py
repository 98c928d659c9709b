"""statsmodels' data attributes of a model: ``endog``, ``exog``, ``exog_re``, ``groups``,
``group_labels``, the per-group lists ``endog_li``, ``exog_li``, ``exog_re_li``, ``exog_re2_li``,
``data`` and ``predict(params, exog)``.

They read the model's in-memory rows (:class:`~dmixed.design.arrays.RowData`, after
missing-value handling: the kept rows); a model of Dask data or of statistics has no
rows in memory and says so, as does a model whose data were removed
(:meth:`ModelData.remove_data`, statsmodels' ``remove_data``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from ..errors import SpecError
from .arrays import RowData
from .centres import formula_rows

__all__ = ["ModelData", "DataNames", "VCSpec"]


@dataclass(frozen=True)
class DataNames:
    """The names statsmodels keeps on ``model.data``.

    ``ynames`` (the response), ``xnames`` (the fixed effects), ``exog_re_names``,
    ``exog_re_names_full`` (the random-effects covariance parameters, ``'a Var'`` and
    ``'a x b Cov'``), ``param_names`` (every parameter, as ``results.params``) and
    ``row_labels`` (the pandas index of the kept rows; None for arrays);
    ``k_constant``, the model's (``MixedLM.k_constant``), asked of ``constant_of`` at
    the first access (for Dask data it may need the data pass).
    """

    ynames: str
    xnames: list[str]
    exog_re_names: list[str]
    exog_re_names_full: list[str]
    param_names: list[str]
    row_labels: pd.Index | None
    constant_of: Callable[[], int | None] = field(repr=False, compare=False)

    @cached_property
    def k_constant(self) -> int | None:
        """statsmodels' ``model.data.k_constant``: the model's ``k_constant``."""
        return self.constant_of()


@dataclass(frozen=True)
class VCSpec:
    """statsmodels' ``VCSpec``: the variance components' per-group design matrices.

    ``names[k]`` names component k; ``colnames[k][i]`` and ``mats[k][i]`` are the column
    names and the matrix (rows in data order) of group ``i`` (the sorted group labels).
    """

    names: list[str]
    colnames: list[list[list[str]]]
    mats: list[list[np.ndarray]]


class ModelData:
    """Mixin: statsmodels' data attributes over ``rows`` (the class provides ``rows``,
    ``endog_name``, ``exog_names``, ``exog_re_names``, ``vc_names``,
    ``vc_column_names``, ``k_fe``, ``k_constant`` and ``param_names()``)."""

    rows: RowData | None
    source: Any
    endog_name: str
    exog_names: list[str]
    exog_re_names: list[str]
    vc_names: list[str]
    vc_column_names: list
    k_fe: int
    k_constant: int | None
    param_names: Callable[[], list[str]]

    #: whether :meth:`remove_data` dropped the model's data
    data_removed: bool = False

    def remove_data(self) -> None:
        """Drop the model's data (statsmodels' ``remove_data``): the in-memory rows and
        the Dask collection.  The names, the formula spec (prediction on new data) and
        the per-group statistics of the last data pass (in this process only; they are
        never pickled) stay, so fitting again from them, likelihoods, profiles and
        :func:`dmixed.anova` refits still work; what needs the rows raises SpecError."""
        self.rows = None
        self.source = None
        self.data_removed = True
        self.__dict__.pop("_group_lists", None)

    def __getstate__(self) -> dict:
        # the per-group lists are copies of the rows, made again on first use
        state = dict(self.__dict__)
        state.pop("_group_lists", None)
        return state

    def _rows_in_memory(self) -> RowData:
        if self.rows is None:
            why = (
                "its data were removed (remove_data())"
                if self.data_removed
                else "Dask data, or a model built from statistics"
            )
            raise SpecError(
                f"the model's rows are not in memory ({why}): endog, exog, exog_re and "
                "groups are not available"
            )
        return self.rows

    @property
    def endog(self) -> np.ndarray:
        """The response of the kept rows, (n,)."""
        return self._rows_in_memory().endog

    @property
    def exog(self) -> np.ndarray:
        """The fixed-effects design of the kept rows, (n, k_fe), in the formula's own
        columns (products of columns read about centres are the raw products again:
        :func:`~dmixed.design.centres.formula_rows`)."""
        return formula_rows(getattr(self, "spec", None), self._rows_in_memory().exog)

    @property
    def exog_re(self) -> np.ndarray:
        """The random-effects design of the kept rows, (n, k_re)."""
        return self._rows_in_memory().exog_re

    @property
    def groups(self) -> np.ndarray:
        """The group label of each kept row, (n,)."""
        return self._rows_in_memory().groups

    @property
    def group_labels(self) -> list:
        """The distinct group labels, sorted (statsmodels' order of the groups)."""
        return np.unique(self._rows_in_memory().groups).tolist()

    @property
    def n_groups(self) -> int:
        """The number of groups of the kept rows (statsmodels' ``n_groups``)."""
        return len(self.group_labels)

    @property
    def formula(self) -> str | None:
        """The fixed-effects formula of a model made by ``from_formula`` (statsmodels'
        ``formula``), else None."""
        spec = getattr(self, "spec", None)
        return spec.formula if spec is not None else None

    @property
    def endog_names(self) -> str:
        """The response's name (statsmodels' ``endog_names``)."""
        return self.endog_name

    @property
    def row_indices(self) -> dict:
        """Group label → positions of its kept rows (statsmodels' ``row_indices``)."""
        groups = self._rows_in_memory().groups
        labels, inverse = np.unique(groups, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(np.bincount(inverse, minlength=len(labels)))[:-1]
        parts = np.split(order, bounds)
        return dict(zip(labels.tolist(), parts, strict=True))

    @property
    def exog_vc(self) -> VCSpec:
        """The variance components' per-group matrices (statsmodels' ``exog_vc``) of a
        model built from arrays, as given in ``exog_vc`` (float64, the kept rows).

        Raises
        ------
        AttributeError
            A model made from a formula: statsmodels builds each group's matrix from
            that group's rows alone, which dmixed never does (its design is built for
            all rows at once, and a group's matrix would hold other columns), so no
            exact value exists here; the components are :attr:`vc_names` and their
            columns :attr:`vc_column_names`.
        SpecError
            The rows not in memory.
        """
        if getattr(self, "spec", None) is not None:
            raise AttributeError(
                "exog_vc is not available for a model made from a formula: statsmodels "
                "builds each group's matrix from that group's rows alone and dmixed does "
                "not; the components are model.vc_names and their columns "
                "model.vc_column_names"
            )
        rows = self._rows_in_memory()
        parts = list(self.row_indices.values())
        colnames, mats = [], []
        for cols, vals, names_k in zip(
            rows.vc_cols, rows.vc_vals, self.vc_column_names, strict=True
        ):
            # a group's matrix fills slots 0..width-1 of each of its rows (convert_exog_vc)
            widths = [int(np.sum(cols[idx[0]] >= 0)) for idx in parts]
            colnames.append(
                [
                    [names_k[c] for c in cols[idx[0], :w]]
                    for idx, w in zip(parts, widths, strict=True)
                ]
            )
            mats.append([vals[idx, :w] for idx, w in zip(parts, widths, strict=True)])
        return VCSpec(list(self.vc_names), colnames, mats)

    def group_list(self, array) -> list[np.ndarray] | None:
        """``array`` split by group (statsmodels' ``group_list``).

        Parameters
        ----------
        array : None or array_like (n, ...)
            One entry (or row) per kept row of the model.

        Returns
        -------
        list of ndarray or None
            One array per group, in the order of :attr:`group_labels`, holding the
            group's rows in data order; None if ``array`` is None.

        Raises
        ------
        SpecError
            ``array`` not of one entry per kept row, or the rows not in memory.
        """
        if array is None:
            return None
        groups = self._rows_in_memory().groups
        values = np.asarray(array)
        if values.ndim == 0 or values.shape[0] != groups.shape[0]:
            raise SpecError(
                f"group_list: array has shape {values.shape}; expected "
                f"{groups.shape[0]} rows (one per kept row of the model)"
            )
        return [values[rows] for rows in self.row_indices.values()]

    def _kept_lists(self, attr: str) -> dict:
        """The per-group lists made so far, kept with the rows (never during a fit,
        never pickled); :class:`SpecError` naming ``model.<attr>`` without rows."""
        if self.rows is None:
            why = (
                "its data were removed (remove_data())"
                if self.data_removed
                else "Dask data, or a model built from statistics: the rows stay in "
                "the partitions and are never gathered"
            )
            raise SpecError(
                f"model.{attr} (made from each group's rows, as statsmodels makes it) is "
                f"not available: the model's rows are not in memory ({why})"
            )
        kept = self.__dict__.get("_group_lists")
        if kept is None or kept[0] is not self.rows:
            kept = (self.rows, {})
            self.__dict__["_group_lists"] = kept
        return kept[1]

    def _split_rows(self, name: str) -> list[np.ndarray] | None:
        """The rows' array ``name`` split by group (:meth:`group_list`), made on first
        use and kept with the rows."""
        lists = self._kept_lists(f"{name}_li")
        if name not in lists:
            values = self.exog if name == "exog" else getattr(self.rows, name)
            if name == "exog_re" and values.shape[1] == 0:
                lists[name] = None  # statsmodels' exog_re_li without random effects
            else:
                lists[name] = self.group_list(values)
        return lists[name]

    @property
    def endog_li(self) -> list[np.ndarray]:
        """The response split by group (statsmodels' ``endog_li``): one (n_i,) array
        per group, in the order of :attr:`group_labels`, rows in data order.

        Made on first access (``O(n)`` memory, a copy of the rows), not by a fit.

        Raises
        ------
        SpecError
            The rows not in memory (Dask data, a model of statistics, removed data).
        """
        out = self._split_rows("endog")
        assert out is not None
        return out

    @property
    def exog_li(self) -> list[np.ndarray]:
        """The fixed-effects design split by group (statsmodels' ``exog_li``): one
        (n_i, k_fe) array per group, in the order of :attr:`group_labels`.

        Made on first access (``O(n k_fe)`` memory), not by a fit.

        Raises
        ------
        SpecError
            The rows not in memory (Dask data, a model of statistics, removed data).
        """
        out = self._split_rows("exog")
        assert out is not None
        return out

    @property
    def exog_re_li(self) -> list[np.ndarray] | None:
        """The random-effects design split by group (statsmodels' ``exog_re_li``): one
        (n_i, k_re) array per group, in the order of :attr:`group_labels`; None for a
        model without random effects (variance components only), as statsmodels.

        Made on first access (``O(n k_re)`` memory), not by a fit.

        Raises
        ------
        SpecError
            The rows not in memory (Dask data, a model of statistics, removed data).
        """
        return self._split_rows("exog_re")

    @property
    def exog_re2_li(self) -> list[np.ndarray] | None:
        """Each group's ``Z_i' Z_i`` (statsmodels' ``exog_re2_li``): one (k_re, k_re)
        array per group, in the order of :attr:`group_labels`; None for a model without
        random effects.

        Made on first access from the rows, not by a fit: each entry ``(a, b)`` of
        every group at once, as sums over the rows sorted by group
        (``np.add.reduceat``), so the cost is ``O(n k_re²)`` with no step per group
        beyond making the list.  The sums are those of statsmodels' ``np.dot(z.T, z)``
        in another order of additions (equal to rounding).

        Raises
        ------
        SpecError
            The rows not in memory (Dask data, a model of statistics, removed data).
        """
        lists = self._kept_lists("exog_re2_li")
        if "exog_re2" not in lists:
            lists["exog_re2"] = _cross_products_by_group(self.rows.exog_re, self.rows.groups)
        return lists["exog_re2"]

    @property
    def data(self) -> DataNames:
        """statsmodels' ``model.data`` names (:class:`DataNames`)."""
        names = self.param_names()
        k_re2 = len(self.exog_re_names) * (len(self.exog_re_names) + 1) // 2
        return DataNames(
            ynames=self.endog_name,
            xnames=list(self.exog_names),
            exog_re_names=list(self.exog_re_names),
            exog_re_names_full=names[self.k_fe : self.k_fe + k_re2],
            param_names=names,
            row_labels=None if self.rows is None else self.rows.index,
            constant_of=lambda: self.k_constant,
        )

    def predict(self, params, exog=None) -> np.ndarray:
        """The fixed part ``exog @ β`` (statsmodels' ``MixedLM.predict``).

        Parameters
        ----------
        params : MixedLMParams or array_like
            A point with ``fe_params``, or a vector whose first ``k_fe`` entries are β
            (``results.params``).
        exog : array_like (m, k_fe), optional
            The design to predict for; default the model's own ``exog``.

        Returns
        -------
        ndarray (m,)

        Raises
        ------
        SpecError
            ``exog`` without ``k_fe`` columns, or no ``exog`` for a model without rows.
        """
        fe = getattr(params, "fe_params", None)
        beta = np.asarray(params if fe is None else fe, dtype=np.float64)[: self.k_fe]
        x = self.exog if exog is None else np.asarray(exog, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.k_fe:
            raise SpecError(f"exog has shape {x.shape}; expected (m, {self.k_fe})")
        return x @ beta


def _cross_products_by_group(z: np.ndarray, groups: np.ndarray) -> list[np.ndarray] | None:
    """``[Z_g' Z_g for each group g]`` in the order of the sorted group labels (None
    without columns), vectorized over groups: one pass per pair of columns."""
    k = z.shape[1]
    if k == 0:
        return None
    _, inverse = np.unique(groups, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    counts = np.bincount(inverse)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    zs = np.asarray(z, dtype=np.float64)[order]
    out = np.empty((counts.size, k, k))
    for a in range(k):
        for b in range(a, k):
            out[:, a, b] = out[:, b, a] = np.add.reduceat(zs[:, a] * zs[:, b], starts)
    return list(out)
