"""Checks of a Dask DataFrame's partitions before dmixed reads them.

Dask does not check computed partitions against the collection's metadata
(``dd.from_delayed(..., verify_meta=False)``, ``dd.from_map(..., enforce_metadata=False)``,
``map_partitions`` of a user function): a partition may lack a column the model uses, or
be an empty frame with no columns at all (which ``compute()`` accepts).  And a collection
persisted on a cluster holds futures, not a recipe: once they are released
(the client closed or restarted, ``client.cancel``) its data are gone, and Dask itself
refuses to compute it ("lost dependencies"); another cluster's scheduler cannot read them.

- :func:`select_columns`: the used columns of a collection, every partition checked by
  :func:`checked_partition` unless Dask's reader itself reads only those columns;
- :func:`check_persisted`: refuse a collection whose persisted data are gone or held by
  another cluster than the one it is computed on;
- :func:`check_text_conversion`: apply the rules for ``object`` columns to a pandas frame
  that ``dd.from_pandas`` turned into text (Dask's ``dataframe.convert-string``);
- :func:`restored_values`: read such a column of booleans as booleans again, and the
  groups column as the pandas frame holds it (its values are the fit's group keys);
  the tuples of a ``dd.from_map`` or ``dd.from_delayed`` groups column read from below
  Dask's conversion (:func:`tuples_or_text`);
- :func:`warn_text_keys`: say when a fit's keys are text that may be Dask's text of
  tuples that could not be read back (persisted data);
- :func:`check_column_kinds`: refuse a partition whose column holds another kind of
  values (text, numbers) than the collection declares (a file unlike the first).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np
import pandas as pd

from ..errors import BadValuesError, DataError, TextConversionWarning, caller_stacklevel
from .dtypes import (
    CATEGORICAL,
    NUMERIC,
    NUMERIC_LEVELS,
    column_class,
    column_kind,
    object_class,
    object_types,
)
from .file_schemas import quoted_names
from .messages import check_present, decimal_term, response_not_numbers, suggest
from .origin import conversion_detail, in_partition, located, missing_in_integers

__all__ = [
    "CSV_DTYPES",
    "csv_types_message",
    "missing_column_error",
    "reader_error",
    "check_column_kinds",
    "check_persisted",
    "check_text_conversion",
    "cluster_waits",
    "compute_located",
    "compute_with",
    "field_of_repr",
    "current_client",
    "checked_partition",
    "GONE_CAUSES",
    "lost_futures",
    "persisted_futures",
    "persisted_gone_error",
    "restored_values",
    "select_columns",
    "tuples_or_text",
    "warn_text_keys",
]


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
    err = DataError(
        "it has no column(s) "
        + ", ".join(repr(c) for c in absent)
        + suggest(absent[0], pdf.columns)
        + "; Dask does not check partitions against the collection's columns"
    )
    raise in_partition(err, number)


def _projections(expr) -> int:
    return sum(type(node).__name__ == "Projection" for node in expr.walk())


def select_columns(ddf, columns: list, groups: str | None = None):
    """The ``columns`` of a Dask DataFrame, in the collection's order, each partition
    checked when it is computed.

    Where Dask's reader takes the projection itself (Parquet, CSV, ``from_pandas``: every
    partition has the collection's columns), ``ddf[columns]``, so that only those columns
    are read; else (``from_delayed``, ``from_map`` of a function, persisted data, ...)
    :func:`checked_partition` on every partition, which names a partition that lacks a
    column and lets an empty partition without columns through.  Columns that
    ``dd.from_pandas`` turned into text are read as :func:`restored_values` says
    (``groups``: the groups column, whose values must be the fit's keys).

    Raises
    ------
    DataError
        Some of ``columns`` are not columns of ``ddf``; (when computed) a partition
        lacks one of them.
    """
    columns = list(columns)
    check_present(columns, ddf.columns)
    ddf = restored_values(ddf, columns, groups)
    # in the collection's order: a reader absorbs a projection only in its own order,
    # and reordering a partition's columns copies them (40 MB per million rows of a
    # 5-column float frame; benchmarks/RESULTS.md, ninth session)
    wanted = set(columns)
    columns = [c for c in ddf.columns if c in wanted]
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


def persisted_futures(ddf) -> list:
    """The futures behind a persisted collection (``ddf.persist()`` on a distributed
    client): its partitions' data, held by the scheduler of the client that persisted it."""
    expr = getattr(ddf, "expr", None)
    if expr is None:
        return []
    found = []
    for node in expr.walk():
        if type(node).__name__ != "FromGraph":
            continue
        for value in dict(node.operand("layer")).values():
            if hasattr(value, "status") and hasattr(value, "key"):
                found.append(value)
    return found


def lost_futures(ddf) -> list:
    """The futures behind a persisted collection whose data are gone from this process:
    cancelled, or unpickled where no client was (:func:`_cancelled`)."""
    return _cancelled(persisted_futures(ddf))


def _cancelled(futures: list) -> list:
    """Those of ``futures`` that were cancelled, or that hold no client where this
    process has none either: unpickled (results of a fit pickled and loaded elsewhere)
    in a process whose Dask runs on its local scheduler, which finds their keys in no
    graph.  Either way their data are gone for this process.  With a client running
    here, an unpickled future is left to it: its scheduler may hold the key (the
    results loaded in another process of the same cluster), and a compute of a key it
    lacks fails there as it would for any collection."""
    clientless_gone = None
    gone = []
    for f in futures:
        if getattr(f, "status", None) == "cancelled":
            gone.append(f)
        elif getattr(f, "client", None) is None:
            if clientless_gone is None:
                clientless_gone = current_client() is None
            if clientless_gone:
                gone.append(f)
    return gone


def _scheduler_address(client) -> str | None:
    """The address of the scheduler ``client`` talks to (None where it has none)."""
    return getattr(getattr(client, "scheduler", None), "address", None)


def _same_scheduler(holder, client) -> bool:
    """Whether the clients ``holder`` and ``client`` talk to one scheduler: the same
    address, else (one scheduler reached by two names: ``localhost`` and ``127.0.0.1``)
    the same scheduler id, asked of both (a round trip each, on this rare path only;
    an unanswered question leaves the addresses' answer)."""
    if holder is client or _scheduler_address(holder) == _scheduler_address(client):
        return True
    try:
        ids = [c.scheduler_info(n_workers=0).get("id") for c in (holder, client)]
    except Exception:  # noqa: BLE001 - a closed or unreachable client: another scheduler
        return False
    return ids[0] is not None and ids[0] == ids[1]


#: why a persisted collection's data are gone, in the words of every error refusing one
#: (its fit, its fitted values and residuals, predictions from it)
GONE_CAUSES = (
    "the client that persisted it was closed or restarted, or its futures were "
    "cancelled (client.cancel), or it was unpickled (with results of a fit, say) in a "
    "process without a running client"
)


def persisted_gone_error(n_lost: int) -> DataError:
    """The error for a persisted collection ``n_lost`` of whose partitions are gone."""
    return DataError(
        f"the persisted data of this Dask DataFrame are gone ({n_lost} partition(s) "
        f"released: {GONE_CAUSES}): Dask cannot recompute them from a persisted "
        "collection; persist the source collection again"
    )


def check_persisted(ddf, client=None, *, reader: str | None = None) -> None:
    """Refuse a collection persisted on a cluster whose data were released, or held by
    another cluster than ``client``'s.

    A persisted collection (``client.persist`` / ``ddf.persist()`` with a distributed
    client) holds futures of its partitions, not the recipe that computed them: once
    the client that persisted it is closed or restarted (``client.restart()``), or
    ``client.cancel(futures_of(ddf))``, its data are gone, and Dask refuses it too
    ("lost dependencies", "Missing dependency").  The futures live on the scheduler of
    the client that persisted them, which another cluster's scheduler is not: it
    cannot read them (distributed's ``FuturesCancelledError``, "lost dependencies").
    Both are checked on the futures as this process holds them: no round trip.

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
    client : distributed.Client, optional
        The client the collection is about to be computed with (None: not checked,
        unless ``reader`` is given).
    reader : str, optional
        What computes the collection, for the messages: the function whose ``client=``
        argument chooses the client (``"dmixed.mixedlm"``).  Given, ``client`` None
        means that it runs on Dask's local scheduler (no client given, none the
        default), which cannot read persisted partitions either.  None: the fit.

    Raises
    ------
    DataError
        Some of its persisted partitions are gone: persist the source collection again;
        or they are held by another scheduler than ``client``'s (or, with ``reader``,
        ``client`` is None): persist the collection with that client, or pass the
        client that persisted it.
    """
    futures = persisted_futures(ddf)
    lost = _cancelled(futures)
    if lost:
        raise persisted_gone_error(len(lost))
    address = _scheduler_address(client)
    holders = {id(c): c for c in (getattr(f, "client", None) for f in futures) if c is not None}
    if address is None:
        if reader is not None and holders:
            held = sorted({str(_scheduler_address(c)) for c in holders.values()})
            raise DataError(
                f"the data of this Dask DataFrame are persisted on the scheduler at "
                f"{', '.join(held)}, but {reader} runs with no distributed client (none "
                "given, none the default), on Dask's local scheduler in this process, "
                f"which cannot read them; pass {reader}(..., client=...) the client that "
                "persisted them"
            )
        return
    foreign = sorted(
        str(_scheduler_address(c)) for c in holders.values() if not _same_scheduler(c, client)
    )
    if foreign:
        whose = "the fit's client" if reader is None else f"the client {reader} runs on"
        hint = "" if reader is None else f" (pass {reader}(..., client=...))"
        raise DataError(
            f"the data of this Dask DataFrame are held by another client: it was persisted "
            f"on the scheduler at {', '.join(foreign)}, not on that of {whose} "
            f"(given or the default: {address}), which cannot read them; persist the "
            "collection with the client you fit with, or pass the client that persisted "
            f"it{hint}"
        )


def current_client():
    """The running default ``distributed`` client of this process (what ``dask.compute``
    runs on), None without one (or without ``distributed``)."""
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        current = default_client()
    except ValueError:  # no client in this process
        return None
    return current if getattr(current, "status", "running") == "running" else None


def _scheduler_client():
    """The ``distributed`` client that ``dask.compute`` would run on here (Dask's
    scheduler choice: a ``dask.config.set(scheduler="threads")`` or ``"sync"`` of a
    user's wins over a default client), None where it would run elsewhere."""
    from dask.base import get_scheduler

    try:
        get = get_scheduler()
    except (RuntimeError, ValueError):  # dask.compute raises it as it is
        return None
    owner = getattr(get, "__self__", None)
    if owner is None or type(owner).__name__ != "Client":
        return None
    return owner if getattr(owner, "status", "running") == "running" else None


#: how the design layer waits for its reads on a cluster: ``wait(client, futures,
#: what)``, set by the layer that fits (:func:`cluster_waits`) to its bounded wait, or
#: None (distributed's gather, which waits for ever: workers paused at their memory
#: threshold run nothing, and a read of the first partition would never end)
_CLUSTER_WAIT: ContextVar[Callable | None] = ContextVar("dmixed_cluster_wait", default=None)


@contextmanager
def cluster_waits(wait: Callable) -> Iterator[None]:
    """Inside, :func:`compute_with` waits for its futures on a cluster with
    ``wait(client, futures, what)`` before it gathers them (this thread or task only:
    a context variable)."""
    token = _CLUSTER_WAIT.set(wait)
    try:
        yield
    finally:
        _CLUSTER_WAIT.reset(token)


def compute_located(
    tasks: list, ddf, client=None, what: str = "reading the data", partition=None
) -> tuple:
    """:func:`compute_with` of ``tasks`` that read ``ddf`` (``partition``: the one
    partition they read, where so), its data errors named for their partition, file
    and line (:func:`~dmixed.design.origin.located`), and what Dask's readers raise for
    files unlike the first or a CSV field of the wrong type (:func:`reader_error`) made
    such an error; any other exception raised as it is.

    Raises
    ------
    DataError
        A partition's data error (:class:`~dmixed.errors.BadValuesError` for a value).
    """
    try:
        return compute_with(tasks, client, what)
    except DataError as err:
        raise located(err if partition is None else in_partition(err, partition), ddf) from None
    except (KeyError, ValueError) as exc:  # a file unlike the first, a stray CSV field
        found = reader_error(exc, partition)
        if found is None:
            raise
        raise located(found, ddf) from None


def compute_with(tasks: list, client=None, what: str = "reading the data") -> tuple:
    """``dask.compute(*tasks)`` on ``client`` (None: Dask's default scheduler, the
    current client if any): the results in order; a task's exception raised as it is.

    On a cluster, inside :func:`cluster_waits`, the futures are first waited for by
    the wait it set (``what`` names the read in its messages), which may raise (the
    fit's errors for a cluster that cannot run them: no workers, workers paused)."""
    wait = _CLUSTER_WAIT.get()
    if client is None and wait is not None:
        client = _scheduler_client()  # the client dask.compute would run them on, if any
    if client is None:
        import dask

        return tuple(dask.compute(*tasks))
    futures = client.compute(list(tasks))
    if wait is not None:
        wait(client, futures, what)
    return tuple(client.gather(futures))


#: dask-expr's steps that give columns other names (``rename``, ``df.columns = ...``)
_RENAMING = {"RenameFrame", "ColumnsSetter"}

#: dask-expr's steps after which every row of a partition is the row of the step below
#: it, in its place (columns chosen, renamed or added): a column of a step below can
#: be assigned to the collection's partitions as they are
_ROW_PRESERVING = {"Projection", "Assign", *_RENAMING}


def _origin(expr, column: str, steps: set | None = None) -> tuple:
    """``(step, name)``: the step of ``expr`` that makes its column ``column``, and the
    column's name there, following renames down the steps that read one frame (only
    ``steps`` where given): an ``Assign`` of it, Dask's text conversion
    (``ArrowStringConversion``, ``FromPandas``), persisted data (``FromGraph``), a
    reader.  ``(None, name)`` where the column comes from several frames (``dd.concat``,
    a merge) or through a step not in ``steps``."""
    node, name = expr, column
    while True:
        kind = type(node).__name__
        if kind == "Assign" and name in node.operands[1::2]:
            return node, name
        if kind in ("ArrowStringConversion", "FromPandas", "FromGraph"):
            return node, name
        frame = node.operand("frame") if "frame" in node._parameters else None
        if frame is None or not hasattr(frame, "columns"):
            return (node, name) if not node.dependencies() else (None, name)
        if steps is not None and kind not in steps:
            return None, name
        if kind in _RENAMING:  # a rename keeps the columns' order
            name = list(frame.columns)[list(node.columns).index(name)]
        node = frame


def _converted_columns(ddf, columns) -> dict:
    """``{column: the pandas frames' object column}`` for the ``columns`` that
    ``dd.from_pandas`` turned into text and that no later step of ``ddf`` rewrote: the
    values of every pandas frame of the collection (``dd.concat`` of several), one after
    the other; where a step renamed columns, the pandas column each comes from (none
    where the rename cannot be followed: the text stays, as Dask holds it)."""
    expr = getattr(ddf, "expr", None)
    if expr is None:
        return {}
    nodes = list(expr.walk())
    if any(type(node).__name__ in _RENAMING for node in nodes):
        return _renamed_converted_columns(ddf, columns)
    rewritten = set()
    for node in nodes:
        if type(node).__name__ == "Assign":
            rewritten.update(v for v in node.operands if isinstance(v, str))
    found: dict[str, list] = {}
    seen = set()  # a frame that several branches of the graph read counts once
    for node in nodes:
        if type(node).__name__ != "FromPandas" or not node.operand("pyarrow_strings_enabled"):
            continue
        frame = node.operand("frame")
        frame = getattr(frame, "_data", frame)  # dask-expr wraps the pandas frame
        if not isinstance(frame, pd.DataFrame) or id(frame) in seen:
            continue
        seen.add(id(frame))
        for c in columns:
            if c in rewritten or c not in getattr(frame, "columns", ()):
                continue
            if frame[c].dtype == object and column_class(ddf._meta[c].dtype) == "string":
                found.setdefault(c, []).append(frame[c])
    return {
        c: parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
        for c, parts in found.items()
    }


def _renamed_converted_columns(ddf, columns) -> dict:
    """:func:`_converted_columns` of a collection some step of which renamed columns:
    each column followed down to the ``dd.from_pandas`` step that made it
    (:func:`_origin`), and read there by its name there."""
    found = {}
    for c in columns:
        node, name = _origin(ddf.expr, c)
        if node is None or type(node).__name__ != "FromPandas":
            continue
        if not node.operand("pyarrow_strings_enabled"):
            continue
        frame = node.operand("frame")
        frame = getattr(frame, "_data", frame)  # dask-expr wraps the pandas frame
        if not isinstance(frame, pd.DataFrame) or name not in frame.columns:
            continue
        if frame[name].dtype == object and column_class(ddf._meta[c].dtype) == "string":
            found[c] = frame[name].rename(c)
    return found


def restored_values(ddf, columns, groups: str | None = None):
    """``ddf`` with those of ``columns`` that ``dd.from_pandas`` turned from an ``object``
    column into text read as a fit of the pandas frame reads them: booleans (``'True'``,
    ``'False'``) as booleans (numpy booleans; nullable ones where the pandas column misses
    values), and the ``groups`` column, whatever its values (bytes, tuples, numbers), as
    the pandas frame's values, so that the fit's group labels are its keys, as in
    process and in statsmodels (``random_effects[key]``, ``predict`` by key).
    Idempotent: a restored column is one a later step rewrote.

    Raises
    ------
    DataError
        The groups column holds values of several kinds (as in process), or keys that
        are not equal but became the same text.
    """
    restored = {}
    for c, original in _converted_columns(ddf, columns).items():
        types = object_types(original)
        if types == {"bool"}:
            flags = ddf[c] == "True"  # missing text stays missing
            restored[c] = flags if original.isna().any() else flags.astype(bool)
        elif c == groups and types and types != {"str"}:
            object_class(types, c)  # several kinds refused, with the in-process message
            keys = _keys_of_text(original, ddf._meta[c].dtype, c)
            if isinstance(keys.iloc[0], tuple):
                # pandas gives the map of Arrow text an Arrow type inferred from its
                # values, and Arrow reads tuples as lists: the keys would come back as
                # arrays (other values keep their value under Arrow's types); the
                # values are of one type (object_class), so the first one tells
                restored[c] = ddf[c].map_partitions(_objects_of_text, keys, meta=(c, object))
            else:
                restored[c] = ddf[c].map(keys, meta=(c, object))
    if groups is not None and groups in columns and groups not in restored:
        unconverted = _unconverted_groups(ddf, groups)
        if unconverted is not None:
            restored[groups] = unconverted
    return ddf.assign(**restored) if restored else ddf


def _unconverted_groups(ddf, groups: str):
    """The groups column of ``ddf`` read from below Dask's text conversion of a
    collection made of the user's pandas frames (``dd.from_map``, ``dd.from_delayed``:
    Dask's ``ArrowStringConversion`` step), each partition's values as
    :func:`tuples_or_text` gives them (tuples kept, the rest Dask's text); None where
    the column is not that text, or reaches ``ddf`` through a step that changes rows
    (:func:`warn_text_keys` then says so after the data pass).

    The conversion's step stays where it is for the other columns: Dask's optimizer
    drops the groups column from it (the column is converted once)."""
    expr = getattr(ddf, "expr", None)
    dtype = ddf._meta[groups].dtype
    if expr is None or pd.api.types.is_object_dtype(dtype) or column_class(dtype) != "string":
        return None
    node, name = _origin(expr, groups, _ROW_PRESERVING)
    if node is None or type(node).__name__ != "ArrowStringConversion":
        return None
    below = node.operand("frame")
    if name not in below.columns or below._meta[name].dtype != object:
        return None  # (text already: Dask's conversion changes no value)
    from dask.dataframe.dask_expr import new_collection

    return new_collection(below)[name].map_partitions(
        tuples_or_text,
        dtype,
        groups,
        meta=ddf._meta[groups],
        enforce_metadata=False,
    )


def tuples_or_text(values: pd.Series, dtype, column: str) -> pd.Series:
    """One partition's groups column as Dask's text conversion gives it (``astype`` to
    the collection's string ``dtype``), except for a column of tuples, whose values are
    the keys, kept as they are (an ``object`` column named ``column``).

    The values' types are those of :func:`~dmixed.design.dtypes.object_types` (walked
    row by row for tuples, as for a ``dd.from_pandas`` frame's keys): values of several
    kinds are refused as a pandas frame's are.

    Raises
    ------
    DataError
        The values are of several kinds (tuples and text, say).
    """
    values = values.rename(column)
    if values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) == "mixed":
        types = object_types(values)
        object_class(types, column)  # several kinds refused, with the in-process message
        if types == {"tuple"}:
            return values
    return values.astype(dtype)


def _objects_of_text(text: pd.Series, keys: pd.Series) -> pd.Series:
    """``text.map(keys)`` as an ``object`` column of ``keys``' own values (missing where
    the text is missing), whatever type Arrow would infer for them."""
    at = keys.index.get_indexer(pd.Index(text))
    values = keys.to_numpy(dtype=object)[at]
    values[at < 0] = None
    return pd.Series(values, index=text.index, name=text.name, dtype=object)


def _keys_of_text(original: pd.Series, dtype, column: str) -> pd.Series:
    """The pandas frame's value of each text Dask made of it, indexed by the text: Dask's
    own conversion (``astype`` to its string dtype) of every value, one row a text.

    Each row's text is hashed once (``pd.factorize``, Arrow's strings) and its value
    compared with the first value of its text, not hashed as an object pair
    (``drop_duplicates`` of a two-column frame: twice the time, benchmarks/RESULTS.md)."""
    text = original.astype(dtype)
    text_codes, texts = pd.factorize(text)  # missing text: -1; codes in order of rows
    kept = text_codes >= 0
    text_codes = text_codes[kept]
    values = original.to_numpy(dtype=object)[kept]
    firsts = np.flatnonzero(~pd.Series(text_codes).duplicated().to_numpy())  # code order
    differ = np.asarray(values != values[firsts][text_codes], dtype=bool)
    if differ.any():
        code = text_codes[np.argmax(differ)]
        row = np.flatnonzero(differ)[0]
        shown = f"{values[firsts[code]]!r}, {values[row]!r}"
        raise DataError(
            f"the groups column {column!r} holds keys that are not equal but that Dask's "
            f"from_pandas turned into the same text {texts[code]!r} ({shown}); call "
            "dask.config.set({'dataframe.convert-string': False}) before dd.from_pandas, "
            f"or give the groups labels that tell them apart (df[{column!r}].astype(str))"
        )
    return pd.Series(values[firsts], index=pd.Index(np.asarray(texts, dtype=object)))


def _lost_tuples(expr, groups: str) -> str | None:
    """Why the groups column of ``expr`` may hold Dask's text of tuples that
    :func:`restored_values` could not read back, or None where it cannot: persisted
    data (converted before it was persisted); Dask's conversion of the user's
    ``object`` column below a step that changes rows; a column of several collections
    (``dd.concat``).  A ``dd.from_pandas`` frame's keys are checked, and read back,
    whatever the steps after (its text is the frame's own text)."""
    node, name = _origin(expr, groups)
    kind = type(node).__name__
    if node is None:
        return "the column comes from several collections"
    if kind == "FromGraph":
        return "the collection was persisted"
    if kind == "ArrowStringConversion":
        below = node.operand("frame")
        if name in below.columns and below._meta[name].dtype == object:
            return "a step after Dask's conversion changes the rows"
    return None


#: The text ``str`` gives a tuple: ``'()'``, or parts joined by ``', '`` (``'(3,)'`` for
#: one part); labels such as ``'(north)'`` are the data's own text, never a tuple's
_TUPLE_TEXT = re.compile(r"\(\)|\(.*,\)|\(.*, .*\)", re.DOTALL)


def warn_text_keys(ddf, labels: np.ndarray, groups: str) -> None:
    """Warn when the group keys a Dask collection gave a fit are text that reads as
    tuples (every key as ``str`` writes a tuple: ``'()'``, ``'(3,)'``, ``'(3, 3)'``)
    and may be Dask's text of the user's tuples that dmixed cannot read back
    (:func:`_lost_tuples`: persisted data, a filter after Dask's conversion); a
    reader's text (Parquet, CSV) and a pandas frame's text are the data's own and are
    not warned of.  The keys of ``dd.from_pandas``,
    ``dd.from_map`` and ``dd.from_delayed`` collections are read back as tuples before
    the fit (:func:`restored_values`).

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
        The collection the fit read.
    labels : ndarray (G,)
        The fit's group labels.
    groups : str
        The groups column.

    Warns
    -----
    TextConversionWarning
        Naming the column and a key, saying the keys are text and how to keep tuples.
    """
    if len(labels) == 0 or labels.dtype != object:
        return
    first = labels[0]
    if not (isinstance(first, str) and _TUPLE_TEXT.fullmatch(first)):
        return  # (keys of one kind: the first tells before every key is read)
    expr = getattr(ddf, "expr", None)
    where = None if expr is None else _lost_tuples(expr, groups)
    if where is None:
        return
    text = pd.Series(pd.array(labels, dtype="string[pyarrow]"))
    if not text.str.fullmatch(_TUPLE_TEXT.pattern).all():
        return
    warnings.warn(
        f"the groups column {groups!r} reached the fit as text that reads as tuples "
        f"(such as {first!r}): if its keys were tuples, Dask's dataframe.convert-string "
        f"turned them into their text, which dmixed cannot read back here ({where}), so "
        "the groups are labelled by that text, not by the tuples (random_effects and "
        "predict take the text; tuple keys are refused); to keep tuple keys, call "
        "dask.config.set({'dataframe.convert-string': False}) before the collection is "
        "made, or encode each key as one number or label first (e.g. "
        f"pd.factorize(df[{groups!r}])[0])",
        TextConversionWarning,
        stacklevel=caller_stacklevel(),
    )


def check_text_conversion(ddf, columns, value_columns=frozenset(), response=None) -> None:
    """The rules for ``object`` columns (:func:`~dmixed.design.dtypes.object_class`),
    applied to the pandas frame of a ``dd.from_pandas`` collection whose object columns
    Dask turned into text: values of several kinds are refused as in process (``5`` and
    ``'5'`` would be one group as text), and so are ``Decimal`` values that a term reads
    outside ``C()`` (``value_columns``: :func:`~dmixed.design.messages.decimal_term`, as
    in process); numbers and other non-text values raise
    :class:`~dmixed.errors.TextConversionWarning`, since the collection now holds their
    text (booleans, and the groups column, are read as the pandas frame holds them
    before: :func:`restored_values`).  ``response``: the response column (None: not
    known), whose values of several kinds are refused as a response
    (:func:`~dmixed.design.messages.response_not_numbers`).

    Raises
    ------
    DataError
        A used column of the pandas frame mixes kinds of values.
    BadValuesError
        A column of ``Decimal`` values in ``value_columns``.
    """
    for c, original in _converted_columns(ddf, columns).items():
        types = object_types(original)
        try:
            object_class(types, c)  # refuses mixed kinds, with the in-process message
        except BadValuesError:
            if c != response:
                raise
            # the response's own words (its hint: numbers); the frames' labels may
            # repeat across the frames concatenated here, so no row is named
            raise response_not_numbers(c, original, rows=False) from None
        if "Decimal" in types and c in value_columns:
            raise decimal_term(c)
        if not types or types == {"str"}:
            continue
        warnings.warn(
            f"Dask's from_pandas turned the object column {c!r} ({', '.join(sorted(types))} "
            "values) into text, so this fit reads it as labels, where a fit of the pandas "
            "frame reads the values; to read the values, convert the column before "
            f"dd.from_pandas (e.g. df[{c!r}].astype(float)) or call "
            "dask.config.set({'dataframe.convert-string': False}) first",
            TextConversionWarning,
            stacklevel=caller_stacklevel(),
        )


#: the start of Dask's error for a CSV column whose values are not of the type its
#: first rows gave (``dd.read_csv`` infers the types from the first file's first rows)
CSV_DTYPES = "Mismatched dtypes found in `pd.read_csv`"


def _csv_type_rows(text: str) -> list[tuple[str, str, str]]:
    """The rows of the table in Dask's CSV type mismatch: ``(column, type found, type
    expected)``, the header left out."""
    return re.findall(r"^\|\s*(.+?)\s*\|\s*(.+?)\s*\|\s*(.+?)\s*\|$", text, re.M)[1:]


def csv_types_message(text: str) -> str:
    """Dask's CSV type mismatch (a table: each column, the type found and the one
    expected, then the conversions that failed) in one line."""
    rows = _csv_type_rows(text)
    failed = dict(re.findall(r"^- (.+)\n\s+(.+)$", text, re.M))
    parts = [
        f"column {col!r} holds {found} values where its first rows gave {expected}"
        + (f" ({failed[col]})" if col in failed else "")
        for col, found, expected in rows
    ]
    return "; ".join(parts) + "; every value of a column must be of one type"


def _csv_types_error(exc: BaseException, partition=None) -> BadValuesError | None:
    """The :class:`~dmixed.errors.BadValuesError` for Dask's ``ValueError`` of a CSV
    column holding values of another type than the first file's first rows (a group
    column of numbers in one file and text in another); its ``column`` attribute is the
    first such column (:func:`~dmixed.design.origin.located` adds the collection's
    type and the file Dask took it from).  None for another error."""
    if not isinstance(exc, ValueError) or isinstance(exc, DataError):
        return None
    text = str(exc)
    if not text.startswith(CSV_DTYPES):
        return None
    err = BadValuesError(csv_types_message(text))
    rows = _csv_type_rows(text)
    err.column = rows[0][0] if rows else None
    return in_partition(err, partition)


#: pandas' words for a CSV field that its parser could not convert to the type that
#: ``read_csv``'s ``dtype=`` gives its column (float64, int64; Float64, Int64), the
#: field's repr in them
_PARSER_CONVERSION = re.compile(
    r"(?:could not convert string to float|invalid literal for int\(\) with base 10): (.+)"
    r"|Unable to parse string (.+) at position \d+"
)


def _raised_by_csv_parser(exc: BaseException) -> bool:
    """Whether ``exc`` was raised inside pandas' CSV parser (a frame of
    ``pandas/io/parsers`` in its traceback), not by other code of the graph."""
    tb = exc.__traceback__
    while tb is not None:
        if "pandas/io/parsers" in tb.tb_frame.f_code.co_filename.replace("\\", "/"):
            return True
        tb = tb.tb_next
    return False


def _csv_conversion_error(exc: BaseException, partition=None) -> BadValuesError | None:
    """The :class:`~dmixed.errors.BadValuesError` for pandas' ``ValueError`` of a CSV
    field that the parser could not convert to the type ``dtype=`` declares (``could
    not convert string to float: 'oops'``), which names neither column nor line; its
    ``value`` attribute is the field (:func:`~dmixed.design.origin.located` finds its
    column and line in the partition's file).  None for another error."""
    if not isinstance(exc, ValueError) or isinstance(exc, DataError):
        return None
    found = _PARSER_CONVERSION.fullmatch(str(exc))
    if found is None or not _raised_by_csv_parser(exc):
        return None
    value = field_of_repr(found.group(1) or found.group(2))
    err = BadValuesError(conversion_detail(value, str(exc)))
    err.value, err.reason = value, str(exc)
    return in_partition(err, partition)


#: pandas' words for a missing value (an empty field, ``NA``...) in a CSV column that
#: ``read_csv``'s ``dtype=`` makes integers (numpy's), with the column's place in the
#: file, or (where ``na_values`` add tokens) without it
_PARSER_INTEGER_NA = re.compile(
    r"Integer column has NA values in column (\d+)|cannot convert float NaN to integer"
)


def _csv_integer_na_error(exc: BaseException, partition=None) -> BadValuesError | None:
    """The :class:`~dmixed.errors.BadValuesError` for pandas' ``ValueError`` of a
    missing value in a CSV column that ``dtype=`` makes integers (``Integer column has
    NA values in column 3``, or ``cannot convert float NaN to integer`` where
    ``na_values`` add tokens), which names neither the column nor the line; its
    ``field_index`` attribute is the column's place in the file, -1 where pandas' words
    give none (:func:`~dmixed.design.origin.located` finds its name and the line).
    None for another error."""
    if not isinstance(exc, ValueError) or isinstance(exc, DataError):
        return None
    found = _PARSER_INTEGER_NA.fullmatch(str(exc))
    if found is None or not _raised_by_csv_parser(exc):
        return None
    err = BadValuesError(missing_in_integers(None, str(exc)))
    index = found.group(1)
    err.field_index, err.reason = (-1 if index is None else int(index)), str(exc)
    return in_partition(err, partition)


def field_of_repr(shown: str) -> str:
    """The CSV field whose Python repr (a string literal: ``'a\\\\b'``) pandas' message
    shows: the literal read as data by :func:`ast.literal_eval` (never run as code), the
    text as it is where it is no string literal."""
    import ast

    try:
        value = ast.literal_eval(shown)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return shown
    return value if isinstance(value, str) else shown


def reader_error(exc: BaseException, partition=None) -> DataError | None:
    """dmixed's error for what Dask's readers raise reading a partition of a dataset
    whose files disagree: a file lacking a column (:func:`missing_column_error`), a CSV
    column of another type in some file (Dask's ``Mismatched dtypes``), a CSV field
    that pandas' parser could not convert to the type ``dtype=`` gives its column, a
    missing value in a column ``dtype=`` makes integers;
    named for ``partition`` where given.  None for any other error (a
    :class:`DataError` too)."""
    if isinstance(exc, KeyError):
        return missing_column_error(exc, partition)
    return (
        _csv_types_error(exc, partition)
        or _csv_conversion_error(exc, partition)
        or _csv_integer_na_error(exc, partition)
    )


def missing_column_error(exc: BaseException, partition=None) -> DataError | None:
    """The :class:`~dmixed.errors.DataError` for pandas' ``KeyError: "['f'] not in
    index"`` (or ``"None of [Index(['y', 'x'], ...)] are in the [columns]"``: none of
    the columns) raised inside Dask's reader when a file of a dataset lacks a column the
    model uses (Dask checks only the first file's schema); None for another error.  Its
    ``absent`` attribute lists the columns (:func:`~dmixed.design.origin.located` finds
    the file by them when the partition is not known)."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else ""
    none_of = re.match(r"None of \[Index\((\[.*?\])", text)  # no column of the model
    if none_of is not None:
        names = none_of.group(1)
    elif "not in index" in text:
        names = text.split(" not in index")[0]
    else:
        return None
    err = DataError(
        f"it has no column(s) {names}: a file of the dataset lacks a column the model uses "
        "(Dask takes the columns from the first file); add the column to every file, or "
        "leave those files out"
    )
    err.absent = quoted_names(names)
    return in_partition(err, partition)


_KIND_WORDS = {CATEGORICAL: "text", NUMERIC: "numbers"}
#: what the model reads from a column of each kind, in a refusal's words: a column of
#: numbers inside ``C()`` is read as factor labels, not as numbers
_EXPECTED_WORDS = {
    **_KIND_WORDS,
    NUMERIC_LEVELS: (
        "factor labels that are numbers (the column is a factor, inside C(), whose levels "
        "are numbers: the text '0' is not the level 0)"
    ),
}


def check_column_kinds(pdf: pd.DataFrame, kinds: dict) -> None:
    """Refuse a partition column that holds another kind of values than the model reads.

    Dask takes a collection's column types from its first partition (a dataset's first
    file) and checks no other partition against them: a column of text in one file and
    numbers in another would be read as labels in some partitions and numbers (or other
    labels, ``0`` and ``'0'``) in others, silently.  Types of one kind (int32 and
    int64, integers and floats; string, large string and dictionary) are alike; a
    column of another kind whose values are all missing is let through, as is a
    column of Python objects (its values are checked where they are read); a column
    of a type a formula does not read (timestamps, durations) is refused.

    Parameters
    ----------
    pdf : pandas.DataFrame
        One computed partition (columns it lacks are skipped: refused elsewhere).
    kinds : dict
        ``{column: kind}`` of the model (:data:`~dmixed.design.dtypes.CATEGORICAL`:
        text; numeric kinds: numbers), from the collection's declared types.

    Raises
    ------
    DataError
        Naming the column, the partition's type and what the model reads (numbers,
        text, or factor labels that are numbers for a column inside ``C()``); its
        ``column`` attribute is the column (:func:`~dmixed.design.origin.located` adds
        the collection's type and its file).
    """
    for c, kind in kinds.items():
        if c not in pdf.columns or pdf[c].dtype == object:  # objects: read by value
            continue
        found = column_kind(pdf[c].dtype)
        expected = CATEGORICAL if kind == CATEGORICAL else NUMERIC
        if found == expected or pdf[c].isna().all():
            continue
        if found is None:  # timestamps, durations...: read as no number (their unit)
            err = BadValuesError(
                f"column {c!r} holds values of type {pdf[c].dtype}, which a model formula "
                f"does not read (a number would depend on their unit), where the model "
                f"reads {_EXPECTED_WORDS.get(kind, _KIND_WORDS[expected])}: convert the "
                f"column to what the model's other data hold"
            )
            err.column = c
            raise err
        err = BadValuesError(
            f"column {c!r} holds {_KIND_WORDS[found]} ({pdf[c].dtype}) where the model "
            f"reads {_EXPECTED_WORDS.get(kind, _KIND_WORDS[expected])}"
        )
        err.column = c
        raise err
