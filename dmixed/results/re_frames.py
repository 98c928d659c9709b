"""The random effects (BLUPs) of fitted results by name: one group's names and slots,
and all groups' effects as one DataFrame (:meth:`MixedLMResults.random_effects_frame
<dmixed.results.results.MixedLMResults.random_effects_frame>`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..design import ModelNames

__all__ = ["blup_frame", "effect_names"]


def effect_names(
    model_names: ModelNames, k_re: int, slot_cols: list[np.ndarray], gi: int
) -> tuple[list[str], np.ndarray]:
    """Names of group ``gi``'s random effects (``exog_re_names``, then
    ``"component[column]"`` of each slot it uses, in the component's column order, as
    a fit of all rows from scratch lists them: slots that ``dmixed update`` added come
    after the old ones) and their padded slot positions (``slot_cols``: per component,
    the column of every group's slot, −1 unused)."""
    names = list(model_names.exog_re_names)
    pos = list(range(k_re))
    offset = k_re
    for comp, table in enumerate(slot_cols):
        colnames = model_names.vc_column_names[comp]
        vname = model_names.vc_names[comp]
        used = [(col, s) for s, col in enumerate(table[gi]) if col >= 0]
        for col, s in sorted(used):
            names.append(f"{vname}[{colnames[col]}]")
            pos.append(offset + s)
        offset += table.shape[1]
    return names, np.array(pos, dtype=np.int64)


def blup_frame(
    names: ModelNames,
    group_labels: np.ndarray,
    blup: np.ndarray,
    slot_cols: list[np.ndarray],
    k_re: int,
    vc: bool = False,
    dask: bool = False,
    npartitions=None,
):
    """The BLUPs ``blup`` (G, r) as one DataFrame: one row per group and one column per
    ``exog_re`` coordinate, or with ``vc`` one row per variance-component effect
    (``group``, ``component``, ``column``, ``value``); a Dask DataFrame with ``dask``
    (``npartitions`` defaults to one per million rows)."""
    if not vc:
        frame = pd.DataFrame(
            blup[:, :k_re],
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
                        "value": blup[gi, offset + si],
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
