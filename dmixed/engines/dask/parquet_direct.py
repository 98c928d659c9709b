"""Parquet partitions read by a chain with pyarrow, straight to numpy columns.

A chain (:func:`~dmixed.engines.dask.partials.chain_partials`) computes each partition
from its graph piece: for ``dd.read_parquet`` that is Dask's reader, which opens the
file through fsspec, reads it with pyarrow and converts the table to a pandas frame
(≈ 47 ms CPU a 1.25M-row partition of 5 columns, against ≈ 39 ms for
``pyarrow.parquet.ParquetFile.read`` and the columns to numpy; benchmarks/RESULTS.md).
The chain reads such a partition itself, as numpy columns: those the design is built
from where it is built from numpy columns
(:func:`~dmixed.design.columnar.columns_design_applies`), else every column the spec
uses, from which it makes the pandas frame ``spec.transform`` reads (a small file's
read through Dask, pandas conversion and column selection included, costs several
times pyarrow's): :func:`parquet_reads` recognizes, on the driver, pieces that are one
task of Dask's Parquet reader over a local file with nothing else asked of it (no
filter, no hive partition, no index column, no categories, no dtype backend, numeric
columns; Dask's index ``[None]`` for a file pandas wrote is the file's own row labels,
which no design reads), and :func:`read_columns` reads one on the worker.  The values
are those Dask's frame would hold (float64 and int64 columns without nulls: the same
numbers); a file whose schema or nulls differ from that returns None and the chain
computes the piece as before.  Dask's reader is recognized by its classes
(``dask.dataframe.io.parquet``'s ``ParquetFunctionWrapper`` and
``ArrowDatasetEngine``): any other version or shape of task is simply not recognized.

How the file is read (benchmarks/RESULTS.md, chain-s37 and dpass-s56): without pyarrow's
pre-buffering, which reads the column chunks ahead on an I/O thread of its own (CPU
that the chains' cores do not have to spare), and not memory-mapped: a mapped file cut
short while it is read faults the process (``SIGBUS``), and the zeros past the new end
of its last page read as values.  Each column chunk is read through a buffer of
:data:`READ_BUFFER` bytes rather than whole: a whole chunk (10–13 MB a column of a
1.25M-row file) is a fresh allocation every read, whose pages the kernel zeroes and
faults in, while the one buffer is refilled for every part of the chunk (the decompressed
pages are pyarrow's allocations either way).  Read with ``pread``, a file that is gone, cut short
or rewritten since the driver planned its read raises pyarrow's error, which
:func:`read_columns` words as a :class:`~dmixed.errors.DataError` the chain locates
(partition and file); a file renamed over the planned one is read whole as it now is,
as Dask's reader would.  The columns are views of pyarrow's buffers (its default
memory pool); a chain that keeps a partition's rows past the next read copies them out
(:meth:`~dmixed.engines.dask.partials.ColumnSweep.add`).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow as pa

from ...design.columnar import columns_design_applies, design_columns
from ...errors import DataError
from .pieces import Pieces
from .text_columns import text_objects

__all__ = [
    "READ_BUFFER",
    "ParquetReads",
    "files_identity",
    "parquet_reads",
    "read_columns",
    "unreadable_file",
]

#: The numpy dtypes read directly, with the Arrow type each must have in the file.
_ARROW_TYPES = {"float64": "double", "int64": "int64"}
#: the pair's dtype of a group column of text, read as an Arrow ``string`` array (the
#: chain hashes its keys from its buffers: no Python string a row)
TEXT = "text"
#: Options of Dask's reader (``common_kwargs``) that change nothing for such a read.
_PLAIN_OPTIONS = {
    "partitions": ([], (), None),
    "categories": (None, [], ()),
    "filters": (None,),
    "dtype_backend": (None,),
    "read": ({}, {"open_file_options": {}}),
}
_IGNORED_OPTIONS = {"schema", "dataset", "convert_string"}
#: The bytes of the buffer a column chunk is read through (pyarrow's ``buffer_size``;
#: the module's docstring): a chunk of ~10 MB takes ten ``pread`` calls into one
#: buffer instead of one into a fresh 10 MB allocation.
READ_BUFFER = 1 << 20


class ParquetReads:
    """Per partition of a chain, ``(path, row_groups, columns)`` of its Parquet read
    (``row_groups`` None: the whole file; ``columns``: ``(name, numpy dtype)`` pairs),
    or None where the chain computes the piece.  Opaque to Dask (no traversal of its
    tuples), like :class:`~dmixed.engines.dask.pieces.Pieces`."""

    __slots__ = ("items",)

    def __init__(self, items: list) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __dask_tokenize__(self):
        return ("dmixed-parquet-reads", repr(self.items))


def _reader_classes():
    try:
        from dask.dataframe.io.parquet.arrow import ArrowDatasetEngine
        from dask.dataframe.io.parquet.core import ParquetFunctionWrapper
        from fsspec.implementations.local import LocalFileSystem
    except ImportError:  # pragma: no cover - another dask or fsspec
        return None
    return ParquetFunctionWrapper, ArrowDatasetEngine, LocalFileSystem


def _plain_options(options: dict) -> bool:
    for key, value in options.items():
        if key in _IGNORED_OPTIONS:
            continue
        if key not in _PLAIN_OPTIONS or not any(value == ok for ok in _PLAIN_OPTIONS[key]):
            return False
    dataset = options.get("dataset") or {}
    fmt = dataset.get("format")
    read_options = getattr(fmt, "read_options", None)
    return set(dataset) <= {"partitioning", "format"} and not getattr(
        read_options, "dictionary_columns", None
    )


def _piece_read(piece, names: list[str], classes, text: frozenset = frozenset()) -> tuple | None:
    """``(path, row_groups, columns)`` of one piece that is a plain Parquet read of
    (at least) the columns ``names``, else None; the columns ``text`` may be text (the
    group column: :data:`TEXT`)."""
    wrapper_cls, engine_cls, local_fs = classes
    graph, out_key, leaf_key = piece
    if leaf_key is not None or len(graph) != 1 or out_key not in graph:
        return None
    task = graph[out_key]
    wrapper = getattr(task, "func", None)
    args = getattr(task, "args", None)
    if type(wrapper) is not wrapper_cls or getattr(task, "kwargs", None) or not args:
        return None
    part = args[0]
    if len(args) != 1 or not isinstance(part, dict) or set(part) - {"piece", "kwargs"}:
        return None
    if part.get("kwargs") or not isinstance(part.get("piece"), tuple):
        return None
    path, row_groups, partition_keys = (tuple(part["piece"]) + (None, None))[:3]
    if (
        not isinstance(path, str)
        or partition_keys
        or wrapper.engine is not engine_cls
        or type(wrapper.fs) is not local_fs
        or wrapper.index not in (None, False, [], [None])
        or wrapper.dtype_backend is not None
        or not _plain_options(dict(wrapper.common_kwargs))
    ):
        return None
    if row_groups is not None and not all(isinstance(r, int) for r in row_groups):
        return None
    columns = list(wrapper.columns or [])
    dtypes = wrapper.meta.dtypes
    if not set(names) <= set(columns):
        return None
    pairs = []
    wanted = set(names)
    for name in [c for c in columns if c in wanted]:  # in the frame's order
        dtype = dtypes[name]
        if name in text and (dtype == np.dtype(object) or isinstance(dtype, pd.StringDtype)):
            pairs.append((name, TEXT))
            continue
        if not isinstance(dtype, np.dtype) or dtype.name not in _ARROW_TYPES:
            return None
        pairs.append((name, dtype.name))
    rgs = None if row_groups is None else tuple(int(r) for r in row_groups)
    return path, rgs, tuple(pairs)


def parquet_reads(pieces: Pieces, spec) -> ParquetReads | None:
    """The chain's partitions as plain Parquet reads of the spec's columns, where they
    are; None when none is (the chain then computes every piece).

    Where the design is built from numpy columns
    (:func:`~dmixed.design.columnar.columns_design_applies`), the columns it reads
    (:func:`~dmixed.design.columnar.design_columns`; the group column may be text);
    else every column the spec uses (``columns_used``: formulas, groups, weights), all
    numeric, from which the chain makes the pandas frame ``spec.transform`` reads (the
    same columns of the same values as Dask's frame of the projected read)."""
    classes = _reader_classes()
    if classes is None:  # pragma: no cover - another dask or fsspec
        return None
    if columns_design_applies(spec):
        names = design_columns(spec)
        text = frozenset([spec.group_name])
    else:
        names = list(dict.fromkeys([*spec.columns_used, spec.group_name]))
        text = frozenset()
    items = [_piece_read(piece, names, classes, text) for piece in pieces.items]
    return ParquetReads(items) if any(item is not None for item in items) else None


def files_identity(reads: ParquetReads | None) -> tuple | None:
    """Each read of ``reads`` with its file's size, inode, modification and change
    times (ns) as they are now: what changes when a file is rewritten or replaced (the
    change time also when the modification time is put back); None where a partition
    is not a plain read or a file cannot be looked at (the read says why)."""
    if reads is None or any(item is None for item in reads.items):
        return None
    out = []
    for item in reads.items:
        try:
            st = os.stat(item[0])
        except OSError:
            return None
        out.append((item, st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(out)


def read_columns(read: tuple) -> dict | None:
    """The columns of one :class:`ParquetReads` item as numpy arrays (views of pyarrow's
    buffers; a :data:`TEXT` column as its Arrow ``string`` array), read with pyarrow on
    this thread as the module says; None when the file
    lacks one of them, or they are not of the expected Arrow types or hold nulls (Dask's
    frame would then differ, or Dask raises: the caller computes the piece).

    Raises
    ------
    DataError
        pyarrow cannot read the file (gone, cut short or rewritten since the driver
        planned the read); the chain names the partition and the file.
    """
    import pyarrow.parquet as pq

    path, row_groups, pairs = read
    names = [name for name, _ in pairs]
    try:
        with pq.ParquetFile(path, pre_buffer=False, buffer_size=READ_BUFFER) as file:
            if not set(names) <= set(file.schema_arrow.names):
                return None  # Dask's reader raises (a file lacking a column), worded by dmixed
            if row_groups is None:
                table = file.read(columns=names, use_threads=False)
            else:
                table = file.read_row_groups(list(row_groups), columns=names, use_threads=False)
    except (OSError, ValueError) as exc:
        err = unreadable_file(exc)
        if err is None:
            raise
        raise err from None
    out = {}
    for name, dtype in pairs:
        column = table.column(name)
        if column.null_count:
            return None
        if dtype == TEXT:
            text = _text_array(column)
            if text is None:
                return None
            out[name] = text
            continue
        if str(column.type) != _ARROW_TYPES[dtype]:
            return None
        out[name] = column.to_numpy()
    return out


def _text_array(column) -> pa.StringArray | None:
    """A text column as one Arrow ``string`` array (``large_string``, as pandas writes
    its strings, with its offsets narrowed: one array holds under 2 GiB of text); None
    for other types (dictionaries, binary: Dask's way) or where it does not fit."""
    if column.type not in (pa.string(), pa.large_string()):
        return None
    try:
        return column.combine_chunks().cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowCapacityError):
        return None


def numpy_columns(columns: dict) -> dict:
    """:func:`read_columns`' columns all as numpy arrays (text as Python ``str``
    objects, as Dask's reader gives them): for the design's way."""
    return {name: text_objects(col) for name, col in columns.items()}


def unreadable_file(exc: BaseException, reader: str = "pyarrow") -> DataError | None:
    """The :class:`~dmixed.errors.DataError` for a file that ``reader`` cannot read
    (an ``OSError``: gone or cut short since the driver planned the read; pyarrow's
    ``ArrowInvalid``: no longer a Parquet file, or without the row groups planned),
    with ``reader``'s message; None for any other error (a :class:`DataError` too).
    The chain names the partition and the file
    (:meth:`~dmixed.engines.dask.partials.ChainFrames.located`)."""
    if isinstance(exc, DataError):
        return None
    if not isinstance(exc, OSError):
        try:
            import pyarrow as pa
        except ImportError:  # pragma: no cover - pyarrow is a dependency of the reads
            return None
        if not isinstance(exc, pa.ArrowInvalid):
            return None
    said = " ".join(str(exc).split())  # the reader's message, on one line
    return DataError(
        f"{reader} cannot read the file ({said}): was it changed or cut short while "
        "the fit read it?"
    )
