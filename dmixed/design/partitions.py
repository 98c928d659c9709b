"""Checks of a Dask DataFrame's partitions before dmixed reads them.

Dask does not check computed partitions against the collection's metadata
(``dd.from_delayed(..., verify_meta=False)``, ``dd.from_map(..., enforce_metadata=False)``,
``map_partitions`` of a user function): a partition may lack a column the model uses, or
be an empty frame with no columns at all (which ``compute()`` accepts).  And a collection
persisted on a cluster holds futures, not a recipe: once they are released
(``client.restart()``, ``client.cancel``) its data are gone, and Dask itself refuses to
compute it ("lost dependencies").

- :func:`select_columns`: the used columns of a collection, every partition checked by
  :func:`checked_partition` unless Dask's reader itself reads only those columns;
- :func:`check_persisted`: refuse a collection whose persisted data are gone.
"""

from __future__ import annotations

import pandas as pd

from ..errors import DataError
from .messages import suggest

__all__ = ["check_persisted", "checked_partition", "lost_futures", "select_columns"]


def checked_partition(pdf, columns: list, partition_info=None) -> pd.DataFrame:
    """The ``columns`` of one computed partition, checked.

    Parameters
    ----------
    pdf : pandas.DataFrame
        The partition as Dask computed it.
    columns : list of str
        The columns dmixed reads.
    partition_info : dict, optional
        Dask's ``{"number": i, ...}`` for ``map_partitions(..., partition_info=True)``.

    Returns
    -------
    pandas.DataFrame
        ``pdf[columns]``; for a partition with no columns and no rows, an empty frame of
        those columns (it contributes nothing).

    Raises
    ------
    DataError
        The partition lacks some of ``columns`` (names them and the partition number).
    """
    absent = [c for c in columns if c not in pdf.columns]
    if not absent:
        return pdf[columns]
    if len(pdf) == 0 and len(pdf.columns) == 0:
        return pd.DataFrame(index=pdf.index, columns=columns)
    number = None if partition_info is None else partition_info.get("number")
    where = "a partition" if number is None else f"partition {number}"
    raise DataError(
        f"{where} of the Dask DataFrame has no column(s) "
        + ", ".join(repr(c) for c in absent)
        + suggest(absent[0], pdf.columns)
        + "; Dask does not check partitions against the collection's columns"
    )


def _projections(expr) -> int:
    return sum(type(node).__name__ == "Projection" for node in expr.walk())


def select_columns(ddf, columns: list):
    """The ``columns`` of a Dask DataFrame, each partition checked when it is computed.

    Where Dask's reader takes the projection itself (Parquet, CSV, ``from_pandas``: every
    partition has the collection's columns), ``ddf[columns]``, so that only those columns
    are read; else (``from_delayed``, ``from_map`` of a function, persisted data, ...)
    :func:`checked_partition` on every partition, which names a partition that lacks a
    column and lets an empty partition without columns through.

    Raises
    ------
    DataError
        Some of ``columns`` are not columns of ``ddf``; (when computed) a partition
        lacks one of them.
    """
    columns = list(columns)
    absent = [c for c in columns if c not in ddf.columns]
    if absent:
        raise DataError(
            "column(s) not found in the data: "
            + ", ".join(repr(c) for c in absent)
            + suggest(absent[0], ddf.columns)
        )
    expr = getattr(ddf, "expr", None)
    projected = ddf if columns == list(ddf.columns) else ddf[columns]
    if expr is not None and _projections(projected.expr.simplify()) <= _projections(
        expr.simplify()
    ):
        return projected  # absorbed by the reader
    return ddf.map_partitions(
        checked_partition,
        columns,
        partition_info=True,
        meta=ddf._meta[columns],
        enforce_metadata=False,
        align_dataframes=False,
    )


def lost_futures(ddf) -> list:
    """The futures behind a persisted collection that were cancelled (its data gone)."""
    expr = getattr(ddf, "expr", None)
    if expr is None:
        return []
    lost = []
    for node in expr.walk():
        if type(node).__name__ != "FromGraph":
            continue
        for value in dict(node.operand("layer")).values():
            if getattr(value, "status", None) == "cancelled" and hasattr(value, "key"):
                lost.append(value)
    return lost


def check_persisted(ddf) -> None:
    """Refuse a collection persisted on a cluster whose data were released.

    A persisted collection (``client.persist`` / ``ddf.persist()`` with a distributed
    client) holds futures of its partitions, not the recipe that computed them: after
    ``client.restart()`` or ``client.cancel(futures_of(ddf))`` its data are gone, and
    Dask refuses it too ("lost dependencies").

    Raises
    ------
    DataError
        Some of its persisted partitions are gone: persist the source collection again.
    """
    lost = lost_futures(ddf)
    if lost:
        raise DataError(
            f"the persisted data of this Dask DataFrame are gone ({len(lost)} partition(s) "
            "released, e.g. by client.restart() or client.cancel()): Dask cannot recompute "
            "them from a persisted collection; persist the source collection again"
        )
