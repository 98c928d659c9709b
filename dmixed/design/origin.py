"""Which partition, and which file, a data error of a Dask DataFrame comes from.

An error raised while a task reads or converts one partition (a column missing from
it, text where the model reads numbers, group keys of another kind) knows the
partition's number where the task was given it; the file behind the partition is known
from the collection's graph where Dask's own Parquet reader reads it
(``dd.read_parquet``: one task per file or run of row groups).

- :func:`in_partition`: a :class:`~dmixed.errors.DataError` worded for the partition
  (and file) it was raised in; it keeps them as attributes, which survive the trip
  from a worker;
- :func:`reader_file`, :func:`piece_file`: the Parquet file a task (or the tasks of one
  partition) reads, on the worker;
- :func:`columns_of_other_files`: on the driver, the files that have a column the
  collection (its first file) lacks;
- :func:`partition_files`, :func:`located`: on the driver, after the error, the file of
  every partition, and the error with its file (and, for a column of the wrong kind,
  the collection's type of that column and the first file, where Dask took it from).
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable

import numpy as np
import pandas as pd

from ..errors import DataError
from .file_schemas import (
    csv_culprit_at,
    csv_field_at,
    csv_names,
    csv_read_options,
    csv_value_at,
    file_columns,
    files_unlike_others,
    na_tokens,
    not_a_number_as_read,
)

__all__ = [
    "columns_of_other_files",
    "conversion_detail",
    "missing_in_integers",
    "in_first_file",
    "in_partition",
    "located",
    "partition_files",
    "partition_blocks",
    "partition_read_options",
    "partition_words",
    "piece_file",
    "reader_block",
    "reader_file",
    "reader_options",
    "type_differs_across_files",
]

#: Attributes an error of a partition carries (pickled with it from a worker).
_ATTRIBUTES = (
    "detail",
    "partition",
    "file",
    "column",
    "absent",
    "example",
    "key_kinds",
    "value",
    "line",
    "reason",
    "field_index",
)
#: How deep :func:`reader_file` looks into fused tasks (subgraphs inside a task).
_MAX_DEPTH = 8


def in_partition(err: DataError, number: int | None, file: str | None = None) -> DataError:
    """``err`` worded for the partition it was raised in:
    ``"partition 3 of the Dask DataFrame (file /data/c.parquet): <message>"``.

    A partition or file ``err`` already names is kept (the innermost caller knows
    best); ``number`` None words it ``"a partition of the Dask DataFrame: ..."``.  The
    result carries ``detail`` (the message without the partition), ``partition``,
    ``file`` and ``column`` (a column of the wrong kind, else None) as attributes.

    An error about all the rows, not a partition's (``of_all_rows``: the prior weights'
    span, :func:`~dmixed.stats.standardize.weights_span_error`), is kept as the fit of
    all the rows words it.

    Returns
    -------
    DataError
        ``err`` itself when it already names all that is given or is about all the
        rows, else a new one of its class.
    """
    if getattr(err, "of_all_rows", False):
        return err
    detail = getattr(err, "detail", None) or str(err)
    old_number, old_file = getattr(err, "partition", None), getattr(err, "file", None)
    number = old_number if old_number is not None else number
    file = old_file or file
    if getattr(err, "detail", None) and (number, file) == (old_number, old_file):
        return err
    # a BadValuesError stays one (exit status 3)
    out = type(err)(f"{partition_words(number, file)}: {detail}")
    values = {"detail": detail, "partition": number, "file": file}
    for name in _ATTRIBUTES:
        setattr(out, name, values.get(name, getattr(err, name, None)))
    return out


def partition_words(number: int | None, file: str | None) -> str:
    """How :func:`in_partition` names a partition (and its file) before the message:
    ``"partition 3 of the Dask DataFrame (file /data/c.parquet)"``, ``"a partition of the
    Dask DataFrame"``.  The text to find where the partition and file are known (a file's
    name may hold any character, parentheses included)."""
    where = "a partition" if number is None else f"partition {number}"
    return where + " of the Dask DataFrame" + (f" (file {file})" if file else "")


def _wrapper_class():
    try:
        from dask.dataframe.io.parquet.core import ParquetFunctionWrapper
    except ImportError:  # pragma: no cover - another dask
        return None
    return ParquetFunctionWrapper


def _block_reader():
    try:
        from dask.bytes.core import read_block_from_file
    except ImportError:  # pragma: no cover - another dask
        return None
    return read_block_from_file


def _first_inner(args, find, depth: int):
    """``find(child, depth + 1)`` of the first task among ``args`` (a task's arguments,
    dicts' values included: fused tasks) for which it is not None; None past
    :data:`_MAX_DEPTH` or where none is."""
    if depth >= _MAX_DEPTH:
        return None
    for arg in args:
        inner = arg.values() if isinstance(arg, dict) else (arg,)
        for child in inner:
            if hasattr(child, "func"):
                found = find(child, depth + 1)
                if found is not None:
                    return found
    return None


def reader_file(task, depth: int = 0) -> str | None:
    """The file a task of Dask's Parquet reader (``dd.read_parquet``), or of the block
    reader under its CSV reader (``dd.read_csv``), reads, looking into fused tasks (a
    read fused with the steps after it); None for any other task."""
    wrapper = _wrapper_class()
    func, args = getattr(task, "func", None), getattr(task, "args", None) or ()
    if func is not None and func is _block_reader() and args:
        path = getattr(args[0], "path", None)  # fsspec's OpenFile
        return path if isinstance(path, str) else None
    if wrapper is not None and isinstance(func, wrapper):
        part = args[0] if args else None
        piece = part.get("piece") if isinstance(part, dict) else None
        if isinstance(piece, tuple) and piece and isinstance(piece[0], str):
            return piece[0]
        return None
    return _first_inner(args, reader_file, depth)


def piece_file(graph: dict) -> str | None:
    """The Parquet file the tasks of one partition (a graph piece) read, if any."""
    return next((p for p in map(reader_file, graph.values()) if p is not None), None)


def partition_files(ddf) -> list[str | None]:
    """Per partition of a Dask DataFrame, the Parquet file Dask's reader reads it from
    (None for a partition not read by it); empty when the graph cannot be walked.
    Optimizes and walks the whole graph: for error messages only."""
    return _per_partition(ddf, reader_file)


def partition_blocks(ddf) -> list[tuple | None]:
    """Per partition of a Dask DataFrame read by ``dd.read_csv``, the block it reads:
    ``(file, offset, length)``, ``file`` fsspec's OpenFile (its file system carries the
    collection's storage options), ``length`` None for a whole file (a compressed one);
    None for a partition not read so; empty when the graph cannot be walked.  For error
    messages only."""
    return _per_partition(ddf, reader_block)


def reader_block(task, depth: int = 0) -> tuple | None:
    """``(file, offset, length)`` that a task of the block reader under Dask's CSV
    reader reads (:func:`partition_blocks`), looking into fused tasks; None for any
    other task."""
    func, args = getattr(task, "func", None), getattr(task, "args", None) or ()
    if func is not None and func is _block_reader() and len(args) >= 3:
        return args[0], args[1], args[2]
    return _first_inner(args, reader_block, depth)


def partition_read_options(ddf) -> list[dict | None]:
    """Per partition of a Dask DataFrame read by ``dd.read_csv``, the options its read
    passes to ``pandas.read_csv`` (``sep``, ``decimal``, ``dtype``...: those the user
    gave); None for a partition not read so; empty when the graph cannot be walked.
    For error messages only."""
    return _per_partition(ddf, reader_options)


def reader_options(task, depth: int = 0) -> dict | None:
    """The ``pandas.read_csv`` options of a task of Dask's CSV reader (its function,
    ``dask.dataframe.io.csv._read_csv`` with the options bound as ``kwargs``), looking
    into fused tasks; None for any other task, or one whose options are not bound
    so."""
    func = getattr(task, "func", None)
    inner = getattr(func, "func", None)  # Dask binds the options with functools.partial
    if (
        getattr(inner, "__module__", None) == "dask.dataframe.io.csv"
        and getattr(inner, "__name__", None) == "_read_csv"
    ):
        # None where Dask binds them otherwise: the separator then comes from the
        # file's name (csv_read_options), as where no read is known
        options = (getattr(func, "keywords", None) or {}).get("kwargs")
        return dict(options) if isinstance(options, dict) else None
    return _first_inner(getattr(task, "args", None) or (), reader_options, depth)


def _per_partition(ddf, find: Callable) -> list:
    """``find`` (a task to what it reads, or None) applied, per partition of ``ddf``, to
    the tasks that partition depends on until one answers; empty when the graph cannot
    be walked."""
    from dask.core import get_dependencies

    try:
        opt = ddf.optimize()
        graph = dict(opt.__dask_graph__())
        keys = list(opt.__dask_keys__())
    except Exception:  # noqa: BLE001 (an error path: any failure means "not known")
        return []
    out = []
    for key in keys:
        todo, seen, found = [key], set(), None
        while todo and found is None:
            k = todo.pop()
            if k in seen or k not in graph:
                continue
            seen.add(k)
            found = find(graph[k])
            todo.extend(get_dependencies(graph, k))
        out.append(found)
    return out


def located(err: DataError, ddf) -> DataError:
    """``err``, raised in a partition of ``ddf``, with the file of that partition
    (Parquet or CSV); for a column of the wrong kind, also the collection's type of that
    column and the file Dask took it from (its first), and in a CSV file the line of the
    first value that is no number.  A CSV field that ``read_csv`` could not convert
    (``value``: :func:`_at_line`) or a missing value in a column ``dtype=`` makes
    integers (``field_index``: :func:`_at_missing`): led by its column and line, found by
    reading the partition's file again as the collection reads it (no line where that
    read cannot be followed).  A partition lacking columns (``absent``) raised inside
    Dask's reader, which knows no partition number: the first Parquet file whose schema
    lacks them, and its partition.  Else ``err`` unchanged."""
    number = getattr(err, "partition", None)
    if number is None and getattr(ddf, "npartitions", None) == 1:
        number = 0  # a collection of one partition: the error can only be its
    if number is None:
        return _lacking(err, ddf)
    files = partition_files(ddf)
    file = getattr(err, "file", None)
    if file is None and 0 <= number < len(files):
        file = files[number]
    out = in_partition(err, number, file)
    column = getattr(err, "column", None)
    if column is None and getattr(err, "field_index", None) is not None and file is not None:
        return _at_missing(out, ddf, file)
    if column is None and getattr(err, "value", None) is not None and file is not None:
        return _at_line(out, ddf, file)
    if column is None or column not in ddf.columns:
        return out
    first = files[0] if files and files[0] not in (None, file) else None
    source = (
        f", the type in {first} (Dask takes every column's type from the first file and "
        "checks no other): give the column one kind of values in every file"
        if first
        else " (Dask takes every column's type from the first partition and checks no other)"
    )
    found = (
        _csv_line(file, [column], ddf, number)
        if pd.api.types.is_numeric_dtype(ddf[column].dtype)
        else None
    )
    stray = ""
    if found is not None:
        # one stray value (a typo, a missing-value marker) rather than a column of text
        stray = (
            f"; line {found[1]} of {os.path.basename(str(file))} (counting one line per "
            f"record) holds {found[2]!r}: if "
            f"that is one stray value, correct that line, or pass na_values=[{found[2]!r}] "
            "to read_csv if it marks a missing value"
        )
    located_err = type(out)(
        f"{out}; the Dask DataFrame declares {ddf[column].dtype}{source}{stray}"
    )
    for name in _ATTRIBUTES:
        setattr(located_err, name, getattr(out, name, None))
    if found is not None:
        located_err.line, located_err.value = found[1], found[2]  # type: ignore[attr-defined]
    return located_err


def _is_csv(file: str) -> bool:
    """Whether ``file`` is a CSV (or TSV) file by its name, compressed or not."""
    return re.search(r"\.(?:csv|tsv)(?:\.\w+)?$", file.lower()) is not None


def _csv_line(file, columns, ddf=None, number=None) -> tuple[str, int, object] | None:
    """``(column, line, value)`` of the first value of ``file`` (a CSV file) in the
    first of ``columns`` that has one that is no number as the collection reads it
    (its decimal mark: :func:`~dmixed.design.file_schemas.not_a_number_as_read`); None
    where none is found, ``file`` is no CSV file or cannot be read as the collection
    reads it (:func:`_reread`).  Reads the file again, once per column searched: on the
    way to an error only."""
    where = _reread(file, ddf, number)
    if where is None:
        return None
    url, options, _, read = where
    for c in columns:
        found = csv_culprit_at([url], c, not_a_number_as_read(read), options, read=read)
        if found is not None:
            return c, found[1], found[2]
    return None


def _reread(file, ddf, number) -> tuple[str, dict | None, tuple[int, int] | None, dict] | None:
    """How to read ``file``, the CSV file of partition ``number`` of ``ddf``, again:
    ``(url, storage_options, lines, read)``, ``lines`` the first and last line of the
    file the partition reads (None: not known, or the whole file), ``read`` the
    ``read_csv`` options that split it into fields as the collection's read does
    (:func:`~dmixed.design.file_schemas.csv_read_options`: its separator, quoting,
    decimal mark...); by the collection's own file (its file system's storage options)
    where its graph shows it, else ``file`` as a local path, split as its name says.
    None for no CSV file, a remote one whose options are not known (opened as a local
    path it would be another file), or a read whose options move rows off the lines
    counted (``skiprows=``, ``names=``...: a line would be named wrong)."""
    if file is None or not _is_csv(str(file)):
        return None
    known = ddf is not None and number is not None
    blocks = partition_blocks(ddf) if known else []
    block = blocks[number] if number is not None and 0 <= number < len(blocks) else None
    if block is None:
        read = csv_read_options(None, str(file))
        return None if "://" in str(file) or read is None else (str(file), None, None, read)
    every = partition_read_options(ddf)
    read = csv_read_options(every[number] if number < len(every) else None, str(file))
    if read is None:
        return None
    opened, offset, length = block
    fs = getattr(opened, "fs", None)
    if fs is None:
        return None
    url = fs.unstrip_protocol(opened.path)
    options = dict(getattr(fs, "storage_options", None) or {})
    lines = None if length is None else _block_lines(opened, offset, length)
    return url, options, lines, read


def _block_lines(opened, offset: int, length: int) -> tuple[int, int] | None:
    """The first and last line (1-based) that Dask's CSV reader reads for the block
    ``offset, offset + length`` of a file (lines starting inside it: the block reader
    moves both ends to the next line break), one line either side kept, so that a line
    at the edge is never left out; None where the file cannot be read.  Reads the file
    up to the block's end (counting line breaks), on the way to an error only."""
    chunk = 1 << 24
    try:
        with copy.copy(opened) as f:
            before = within = 0
            done = 0
            while done < offset + length:
                data = f.read(min(chunk, offset + length - done))
                if not data:
                    break
                head = data[: max(0, offset - done)]
                before += head.count(b"\n")
                within += data.count(b"\n") - head.count(b"\n")
                done += len(data)
    except (OSError, ValueError):
        return None
    return max(1, before), before + within + 2


def conversion_detail(value: str, reason: str) -> str:
    """The words for a CSV field ``value`` that ``read_csv`` could not convert to the
    type its ``dtype=`` gives the column (``reason``: pandas' words), and the fixes."""
    return (
        f"read_csv could not convert the value '{value}' to the type its dtype= gives the "
        f"column ({reason}): correct that row, pass na_values=[{value!r}] to read_csv if it "
        "marks a missing value, or read the column as text (dtype=str) and convert it "
        "(e.g. pd.to_numeric(..., errors='coerce'))"
    )


def _at_line(err: DataError, ddf, file: str) -> DataError:
    """``err``, a CSV field that pandas' parser could not convert to the type
    ``dtype=`` gives its column (its ``value``), led by that field's column and line in
    ``file``: the first of the collection's columns of numbers holding that value among
    the lines the partition reads (where the collection's graph shows them), else in the
    whole file, then worded as the first such value.  Where the value is a number as
    the read's decimal mark reads it (pandas converts a column that its parser refused
    again without the mark, and names the first field that fails then: ``1,5`` under
    ``decimal=","``), the first field that is no number instead, the message worded
    for it.  One pass over the file."""
    numbers = [c for c, t in ddf.dtypes.items() if pd.api.types.is_numeric_dtype(t)]
    value = err.value  # type: ignore[attr-defined]
    number = err.partition  # type: ignore[attr-defined]
    where = _reread(file, ddf, number)
    if where is None:
        return err
    url, options, lines, read = where
    detail = getattr(err, "detail", None) or str(err)
    bad = not_a_number_as_read(read)
    if read.get("decimal", ".") != "." and not bad(pd.Series([value], dtype=object))[0]:
        found = csv_field_at(url, numbers, bad, options, lines, read)
        if found is None:
            return err
        column, line, value, first_only = found
        reason = getattr(err, "reason", None) or ""
        detail = conversion_detail(
            value,
            f"with decimal={read['decimal']!r} it is no number; pandas converted the column "
            f"again without that mark and named another field: {reason}",
        )
    else:
        at = csv_value_at(url, numbers, value, options, lines, read)
        if at is None:
            return err
        column, line, first_only = at
    counted = f"line {line} (counting one line per record)"
    if first_only:
        place = f"the first such value is in column {column!r}, {counted}, holding '{value}'"
    else:
        place = f"column {column!r} {counted} holds '{value}'"
    out = type(err)(f"{place}: {detail}")
    out.value, out.line, out.column = value, line, column  # type: ignore[attr-defined]
    return in_partition(out, number, file)


def missing_in_integers(column: str | None, reason: str) -> str:
    """The words for a missing value in a CSV column that ``read_csv``'s ``dtype=``
    makes integers (numpy's, which hold none; ``reason``: pandas' words), and the
    fixes, for ``column`` where known."""
    types = "{" + (f"{column!r}" if column is not None else "'COLUMN'") + ": 'Int64'}"
    return (
        f"read_csv cannot put a missing value in a column its dtype= makes integers "
        f"({reason}): fill that field, or read the column with dtype={types} (integers "
        "that may be missing) or 'float64' and fit with missing='drop' to leave out the "
        "rows with missing values"
    )


def _at_missing(err: DataError, ddf, file: str) -> DataError:
    """``err``, a missing value (an empty field, ``NA``...) in a CSV column that
    ``dtype=`` makes integers (its ``field_index``: the column's place in the file, as
    pandas names it; -1: not named), led by that field's column and line in ``file``:
    the first such field among the lines the partition reads, in that column, else in
    the collection's integer columns that ``dtype=`` names.  Blank lines, which
    ``read_csv`` skips by default, are not searched.  One pass over the file (two where
    blank lines are skipped)."""
    number = err.partition  # type: ignore[attr-defined]
    where = _reread(file, ddf, number)
    if where is None:
        return err
    url, options, lines, read = where
    integers = [c for c, t in ddf.dtypes.items() if isinstance(t, np.dtype) and t.kind in "iu"]
    names = csv_names(url, options, read) or []
    index = err.field_index  # type: ignore[attr-defined]
    if 0 <= index < len(names) and names[index] in integers:
        integers = [names[index]]
    else:  # pandas' words name no column: those that dtype= makes integers
        every = partition_read_options(ddf)
        declared = (every[number] if number < len(every) else None) or {}
        declared = declared.get("dtype")
        if isinstance(declared, dict):
            integers = [c for c in integers if c in declared]

    def missing(values: pd.Series) -> np.ndarray:
        return values.isin(na_tokens(read, str(values.name))).to_numpy()

    found = csv_field_at(url, integers, missing, options, lines, read)
    if found is None:
        return err
    column, line, value, first_only = found
    shown = "an empty field" if value == "" else f"'{value}', a missing value to read_csv"
    counted = f"line {line} (counting one line per record)"
    if first_only:
        place = f"the first such field is in column {column!r}, {counted}, holding {shown}"
    else:
        place = f"column {column!r} {counted} holds {shown}"
    reason = getattr(err, "reason", None) or ""
    out = type(err)(f"{place}: {missing_in_integers(column, reason)}")
    out.value, out.line, out.column = value, line, column  # type: ignore[attr-defined]
    return in_partition(out, number, file)


def in_first_file(err: DataError, ddf) -> DataError:
    """``err``, about a column's type in ``ddf``'s meta, led by the file Dask took the
    type from (its first Parquet file: ``"FILE: <message>"``, kept as ``file``); ``err``
    unchanged where the file is not known (not Dask's Parquet reader)."""
    first = next((f for f in partition_files(ddf)[:1] if f is not None), None)
    if first is None:
        return err
    out = type(err)(f"{first}: {err}")
    out.file = first  # type: ignore[attr-defined]
    return out


def type_differs_across_files(ddf, column: str) -> bool:
    """Whether the Parquet files behind ``ddf`` declare ``column`` with different kinds
    of values (text in one, numbers in another): Dask took the collection's type from the
    first file and checks no other.  False where the files are not known (an in-memory
    collection) or there is one.  Reads each file's schema (its footer: one small read
    per file; called only for a text column that a spline reads)."""
    files = [f for f in dict.fromkeys(partition_files(ddf)) if f is not None]
    if len(files) < 2:
        return False
    return any(
        "where the other files hold" in line
        for line in files_unlike_others(files, "parquet", [column])
    )


#: the files a message names one by one (:func:`columns_of_other_files`)
_FILES_SHOWN = 3


def columns_of_other_files(ddf, absent: list[str]) -> str | None:
    """Words for the columns ``absent`` from a Dask DataFrame that some of its Parquet
    files declare: Dask took its columns from the first file, which lacks them (the
    files' columns differ), naming the first file and those that have each column;
    None where no file has any of them or the files are not known.  Reads each file's
    schema (its footer: one small read per file, on this error path only)."""
    files = [f for f in dict.fromkeys(partition_files(ddf)) if f is not None]
    having: dict[str, list[str]] = {}
    for file in files:
        try:
            names = file_columns(file, "parquet")
        except Exception:  # noqa: BLE001 (pyarrow, fsspec raise many types; remote files)
            continue
        for name in absent:
            if name in names:
                having.setdefault(name, []).append(file)
    if not having:
        return None
    parts = []
    for name, where in having.items():
        shown = ", ".join(where[:_FILES_SHOWN])
        more = f" and {len(where) - _FILES_SHOWN} more files" if len(where) > _FILES_SHOWN else ""
        parts.append(f"{name!r} is in {shown}{more}")
    names = ", ".join(repr(n) for n in having)
    it = "it" if len(having) == 1 else "them"
    return (
        f"the data has no column {names}: Dask took the columns from the first Parquet "
        f"file, {files[0]}, which lacks {it}, but the files' columns differ ("
        + "; ".join(parts)
        + "); give every file the same columns, or read only the files that have them"
    )


def _lacking(err: DataError, ddf) -> DataError:
    """``err`` of columns ``absent`` from some partition, with the first partition whose
    Parquet file's schema (its footer: one small read per file, on this error path
    only) lacks them; ``err`` when none is found."""
    absent = getattr(err, "absent", None)
    if not absent:
        return err
    for number, file in enumerate(partition_files(ddf)):
        if file is None:
            continue
        try:
            names = file_columns(file, "parquet")
        except Exception:  # noqa: BLE001 (pyarrow, fsspec raise many types; remote files)
            continue
        if not set(absent) <= set(names):
            return in_partition(err, number, file)
    return err
