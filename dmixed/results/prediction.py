"""Predictions from fitted results: ``X β̂`` and ``X β̂ + Z̃ γ̂_group``, in memory or on Dask.

:class:`Predictor` holds only what prediction needs (β̂, the BLUPs and their slot
layout), so it is small enough to ship to Dask workers as one task; :func:`predict_dask`
maps it over the partitions of a Dask DataFrame lazily.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..design.partitions import check_persisted, select_columns
from ..design.prepare import needed_columns
from ..errors import DataError, SpecError
from ..stats.slots import lookup_vc_slots, table_pairs

__all__ = ["Predictor", "transform_for_prediction", "predict_dask"]


def transform_for_prediction(spec, df: pd.DataFrame):
    """Design matrices of new rows (the response may be absent)."""
    return spec.transform(df, response=False)


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
    """

    def __init__(self, fe_params, group_labels, blup, slot_cols, vc_ncols, k_re) -> None:
        self.fe_params = np.asarray(fe_params)
        self.group_labels = group_labels
        self.blup = blup
        self.slot_cols = slot_cols
        self.vc_ncols = vc_ncols
        self.k_re = k_re

    def random_part(self, groups, exog_re, vc_cols, vc_vals) -> np.ndarray:
        """``Z̃_row · γ̂_group`` for every row; 0 for groups (and VC columns) not in the fit.

        A group the fit has not seen gets the population prediction (its random
        effects have mean 0), which is what an unconditional prediction means.
        """
        idx = pd.Index(self.group_labels).get_indexer(pd.Index(np.asarray(groups)))
        seen = idx >= 0
        out = np.zeros(len(idx))
        if self.k_re:
            out[seen] = np.einsum("nj,nj->n", exog_re[seen], self.blup[idx[seen], : self.k_re])
        offset = self.k_re
        for comp, (cols, vals) in enumerate(zip(vc_cols, vc_vals, strict=True)):
            ncols = max(self.vc_ncols[comp], 1)
            keys, slots = table_pairs(self.slot_cols[comp], ncols)
            # rows of unseen groups and columns the group did not have in the fit: no slot
            rows_cols = np.where(seen[:, None], cols, -1)
            slot = lookup_vc_slots(idx, rows_cols, vals, keys, slots, ncols, strict=False)
            for k in range(cols.shape[1]):
                ok = slot[:, k] >= 0
                out[ok] += vals[ok, k] * self.blup[idx[ok], offset + slot[ok, k]]
            offset += self.slot_cols[comp].shape[1]
        return out

    def predict(self, dm, include_random: bool) -> np.ndarray:
        """``X β̂`` (+ ``Z̃ γ̂`` with ``include_random``) for design matrices ``dm``."""
        fixed = dm.exog @ self.fe_params
        if not include_random:
            return fixed
        return fixed + self.random_part(dm.groups, dm.exog_re, dm.vc_cols, dm.vc_vals)

    def predict_arrays(self, exog, exog_re, groups, include_random: bool) -> np.ndarray:
        """``X β̂`` (+ ``Z γ̂_group``) for the arrays of new rows of an array-built model.

        Raises
        ------
        ValueError
            ``exog`` has the wrong number of columns; ``include_random`` without
            ``groups``, or for a model with variance components.
        """
        x = np.asarray(exog, dtype=np.float64).reshape(len(exog), -1)
        if x.shape[1] != len(self.fe_params):
            raise DataError(f"exog has {x.shape[1]} columns; the model has {len(self.fe_params)}")
        fixed = x @ self.fe_params
        if not include_random:
            return fixed
        if groups is None:
            raise SpecError("include_random=True needs groups=")
        if self.slot_cols:
            raise SpecError("include_random with exog= is not available for VC models")
        z = (
            np.ones((x.shape[0], 1))
            if exog_re is None and self.k_re == 1
            else np.asarray(exog_re, dtype=np.float64).reshape(x.shape[0], -1)
        )
        return fixed + self.random_part(np.asarray(groups), z, [], [])


def fitted_partition(pdf, spec, predictor: Predictor, include_random: bool, what: str):
    """One partition's predictions, fitted values or residuals (``what``, see
    :func:`predict_dask`) at the rows kept, indexed like them in ``pdf``."""
    name = "resid" if what == "resid" else "fittedvalues"
    if len(pdf) == 0:
        return pd.Series([], index=pdf.index, dtype="float64", name=name)
    dm = transform_for_prediction(spec, pdf) if what == "predict" else spec.transform(pdf)
    index = pdf.index if dm.keep is None else pdf.index[dm.keep]
    pred = predictor.predict(dm, include_random)
    values = dm.endog - pred if what == "resid" else pred
    return pd.Series(values, index=index, name=name)


def predict_dask(predictor: Predictor, spec, ddf, include_random: bool, what: str = "predict"):
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

    Returns
    -------
    dask.dataframe.Series
        float64, named ``"resid"`` or ``"fittedvalues"``.  Rows with a missing value in a
        column the model uses (``"predict"``: the response and weights aside) are left
        out with ``missing="drop"``, as the in-process fit leaves them out: the Series
        holds the kept rows, with their index in ``ddf``.

    Raises
    ------
    DataError
        Now: a used column is not in ``ddf``; the persisted data of ``ddf`` are gone.
        When computed: a partition lacks a used column (named with its number); missing
        values with ``missing="raise"``.
    """
    import dask  # only here: dmixed imports without Dask

    if what not in ("predict", "fittedvalues", "resid"):
        raise SpecError(f"what must be 'predict', 'fittedvalues' or 'resid', got {what!r}")
    check_persisted(ddf)
    data = select_columns(ddf, needed_columns(spec, response=what != "predict"))
    # one task holding the predictor: a dependency of every partition, not a literal
    state = dask.delayed(predictor, pure=True)
    name = "resid" if what == "resid" else "fittedvalues"
    return data.map_partitions(
        fitted_partition,
        spec,
        state,
        include_random,
        what,
        meta=pd.Series(dtype="float64", name=name),
    )
