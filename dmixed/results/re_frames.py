"""The random effects (BLUPs) of fitted results by name: one group's names and slots,
and all groups' effects as one DataFrame (:meth:`MixedLMResults.random_effects_frame
<dmixed.results.results.MixedLMResults.random_effects_frame>`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from ..design import ModelNames

__all__ = ["blup_frame", "effect_names", "with_empty"]


def effect_names(
    model_names: ModelNames, k_re: int, slot_cols: list[np.ndarray], gi: int, empty=None
) -> tuple[list[str], np.ndarray]:
    """Names of group ``gi``'s random effects (``exog_re_names``, then
    ``"component[column]"`` of each slot it uses, in the component's column order, as
    a fit of all rows from scratch lists them: slots that ``dmixed update`` added come
    after the old ones) and their padded slot positions (``slot_cols``: per component,
    the column of every group's slot, −1 unused).

    ``empty``: per component, ``(group index, column)`` pairs (m, 2) of columns of the
    group's ``exog_vc`` matrix that are zero on its rows (``ResultsState.vc_empty_cols``):
    statsmodels reports them too; each is placed among the component's columns in
    column order, with the position ``−1 − component`` (no slot: BLUP 0, conditional
    variance the component's variance).
    """
    names = list(model_names.exog_re_names)
    pos = list(range(k_re))
    offset = k_re
    for comp, table in enumerate(slot_cols):
        colnames = model_names.vc_column_names[comp]
        vname = model_names.vc_names[comp]
        row = table[gi]
        entries = [(int(col), offset + s) for s, col in enumerate(row) if col >= 0]
        if empty is not None and empty[comp].size:
            pairs = empty[comp]
            entries += [(int(c), -1 - comp) for c in pairs[pairs[:, 0] == gi, 1]]
        entries.sort()
        for col, at in entries:
            names.append(f"{vname}[{colnames[col]}]")
            pos.append(at)
        offset += table.shape[1]
    return names, np.array(pos, dtype=np.int64)


def with_empty(block: np.ndarray, pos: np.ndarray, vcomp) -> np.ndarray:
    """A group's conditional covariance over ``pos`` (:func:`effect_names`) from
    ``block``, its covariance over the slots it uses (``pos >= 0``): an empty column
    (``pos = −1 − component``) is uncorrelated with the others, of variance the
    component's ``vcomp`` (its prior, as statsmodels reports it).  ``block`` itself
    where there is none."""
    empty = pos < 0
    if not empty.any():
        return block
    out = np.zeros((pos.size, pos.size))
    used = np.flatnonzero(~empty)
    out[np.ix_(used, used)] = block
    at = np.flatnonzero(empty)
    out[at, at] = np.asarray(vcomp, dtype=np.float64)[-1 - pos[at]]
    return out


def blup_frame(
    names: ModelNames,
    group_labels: np.ndarray,
    wide: np.ndarray | None,
    at: Callable[[np.ndarray, np.ndarray], np.ndarray],
    slot_cols: list[np.ndarray],
    k_re: int,
    vc: bool = False,
    dask: bool = False,
    npartitions=None,
):
    """Per-group values of the random effects (the BLUPs, or their conditional
    variances) as one DataFrame: one row per group and one column per ``exog_re``
    coordinate (``wide`` (G, k_re)), or with ``vc`` one row per variance-component
    effect (``group``, ``component``, ``column``, ``value``: ``at(groups, padded
    columns)`` of those pairs, (m,)); a Dask DataFrame with ``dask`` (``npartitions``
    defaults to one per million rows)."""
    if not vc:
        frame = pd.DataFrame(
            wide,
            index=pd.Index(group_labels, name=names.group_name),
            columns=names.exog_re_names,
        )
    else:
        pieces = []
        offset = k_re
        for comp, table in enumerate(slot_cols):
            gi, si = np.nonzero(table >= 0)
            order = np.lexsort((table[gi, si], gi))  # by group, then column (effect_names)
            gi, si = gi[order], si[order]
            colnames = np.asarray(names.vc_column_names[comp], dtype=object)
            pieces.append(
                pd.DataFrame(
                    {
                        "group": group_labels[gi],
                        "component": names.vc_names[comp],
                        "column": colnames[table[gi, si]],
                        "value": at(gi, offset + si),
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
