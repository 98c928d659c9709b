"""Which file of a multi-file input a column problem comes from, by the files' schemas.

Dask takes a dataset's columns and their types from its first file and checks no other
file against them: a file that lacks a column, or holds text where the others hold
numbers, fails inside the data pass, in one partition (the library names it, and its
file where Dask's Parquet reader reads it: :mod:`dmixed.design.origin`).
:func:`files_unlike_others` lists every such file afterwards from what each file
declares (a Parquet file's schema, one read of its footer; a CSV file's header and the
types of its first rows), for the command line's message (it knows the files).
"""

from __future__ import annotations

import os
import re

import pandas as pd

from .dtypes import column_kind

__all__ = [
    "CSV_SAMPLE_ROWS",
    "file_columns",
    "files_in_message",
    "files_unlike_others",
    "quoted_names",
]

#: rows of a CSV file whose types stand for its columns' types
CSV_SAMPLE_ROWS = 1000

_KIND_WORDS = {"categorical": "text", "numeric": "numbers", None: "other values"}


def file_columns(path: str, fmt: str, storage_options: dict | None = None) -> dict:
    """``{column: dtype}`` a file declares: a Parquet file's schema (its footer only) or
    a CSV file's header with the types of its first :data:`CSV_SAMPLE_ROWS` rows (None
    for every column of a CSV file without rows: its header declares no types).

    Raises
    ------
    OSError, pyarrow.ArrowException, pandas.errors.ParserError
        The file cannot be read.
    """
    import fsspec

    with fsspec.open(path, "rb", **(storage_options or {})) as fh:
        if fmt == "csv":
            sample = pd.read_csv(fh, nrows=CSV_SAMPLE_ROWS)
            return {str(c): t if len(sample) else None for c, t in sample.dtypes.items()}
        import pyarrow.parquet as pq

        schema = pq.read_schema(fh)
        return {name: pd.ArrowDtype(t) for name, t in zip(schema.names, schema.types, strict=True)}


def path_shown(path: str) -> str:
    """A local file's path in full, as a partition's error names its file (a URL as
    given), so that a message beside that error writes every path the same way."""
    return path if "://" in path else os.path.abspath(path)


def type_shown(dtype) -> str:
    """A column's type in the words a partition's error uses: ``string`` for Arrow's
    (large) strings, numpy's name for numbers (``float64``, not ``double[pyarrow]``)."""
    arrow = getattr(dtype, "pyarrow_dtype", None)
    if arrow is None:
        return str(dtype)
    import pyarrow as pa

    if pa.types.is_string(arrow) or pa.types.is_large_string(arrow):
        return "string"
    if pa.types.is_integer(arrow) or pa.types.is_floating(arrow) or pa.types.is_boolean(arrow):
        return str(dtype.numpy_dtype)
    return str(arrow)


def quoted_names(message: str) -> list[str]:
    """The names an error message quotes (``'y'``, ``['h']``), in order, once each."""
    return list(dict.fromkeys(re.findall(r"'([^'\n]{1,200})'", message)))


def files_unlike_others(
    files: list[str],
    fmt: str,
    names: list[str],
    storage_options: dict | None = None,
    full_paths: bool = False,
) -> list[str]:
    """One line per file in which a column of ``names`` is absent while other files have
    it, or holds another kind of values (text, numbers) than most files; the files as
    given, or (``full_paths``) local ones in full (:func:`path_shown`).

    ``names`` not in any file (values an error message quotes, say) are skipped; so is
    a file that cannot be read (its reader says why in the data pass).

    Returns
    -------
    list of str
        ``"FILE: no column 'h'"`` or ``"FILE: column 'y' holds text (large_string[pyarrow])
        where the other files hold numbers"``; empty when the files agree.
    """
    schemas = {}
    for f in files:
        try:
            schemas[f] = file_columns(f, fmt, storage_options)
        except Exception:  # noqa: BLE001 (pyarrow, fsspec and pandas raise many types)
            continue
    lines = []
    named = path_shown if full_paths else str
    for name in names:
        having = {f: s[name] for f, s in schemas.items() if name in s}
        if not having:
            continue
        lines += [f"{named(f)}: no column {name!r}" for f in schemas if f not in having]
        # a CSV file without rows has no types to compare (pandas calls them text)
        kinds = {f: column_kind(t) for f, t in having.items() if t is not None}
        if not kinds:
            continue
        found = list(kinds.values())
        usual = max(found, key=found.count)  # a tie: the kind of the first file
        lines += [
            f"{named(f)}: column {name!r} holds {_KIND_WORDS.get(k, k)} "
            f"({type_shown(having[f])}) where the other files hold "
            f"{_KIND_WORDS.get(usual, usual)}"
            for f, k in kinds.items()
            if k != usual
        ]
    return lines


def files_in_message(
    files: list[str],
    fmt: str,
    message: str,
    storage_options: dict | None = None,
    shown: int = 5,
    full_paths: bool = False,
) -> str:
    """``"; in FILE: ..."`` for each file (up to ``shown``) of a multi-file input that
    differs from the others in a column ``message`` quotes (:func:`files_unlike_others`,
    with ``full_paths``); empty for one file or when the files agree."""
    if len(files) < 2:
        return ""
    lines = files_unlike_others(files, fmt, quoted_names(message), storage_options, full_paths)
    more = f"; and {len(lines) - shown} more" if len(lines) > shown else ""
    return "".join(f"; in {line}" for line in lines[:shown]) + more
