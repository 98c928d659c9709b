"""Which file of a multi-file input a column problem comes from, by the files' schemas.

Dask takes a dataset's columns and their types from its first file and checks no other
file against them: a file that lacks a column, or holds text where the others hold
numbers, fails inside the data pass, in one partition (the library names it, and its
file where Dask's Parquet reader reads it: :mod:`dmixed.design.origin`).
:func:`files_unlike_others` lists every such file afterwards from what each file
declares (a Parquet file's schema, one read of its footer; a CSV file's header and the
types of its first rows), for the command line's message (it knows the files).
:func:`csv_culprit` finds the file and line of a CSV column's first offending value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

import numpy as np
import pandas as pd

from .dtypes import column_kind

__all__ = [
    "CSV_SAMPLE_ROWS",
    "blank_rows",
    "csv_culprit",
    "csv_culprit_at",
    "csv_field_at",
    "csv_names",
    "csv_read_options",
    "csv_value_at",
    "file_columns",
    "files_in_message",
    "files_unlike_others",
    "missing_tokens",
    "na_tokens",
    "not_a_number",
    "not_a_number_as_read",
    "open_text",
    "quoted_names",
]

#: rows of a CSV file read at a time when looking for an offending value
_CHUNK_ROWS = 1 << 20
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


def open_text(path: str, storage_options: dict | None, encoding: str | None = None):
    """A CSV (or TSV) file, compressed or not, local or at a URL, opened as text (in
    ``encoding``, None: UTF-8)."""
    import fsspec

    return fsspec.open(
        path,
        "rt",
        compression="infer",
        newline="",
        encoding=encoding or "utf-8",
        **(storage_options or {}),
    )


#: ``read_csv`` options of a collection's read that say where a file's fields are and
#: how they read; a re-read of the file on the way to an error takes them
_LAYOUT_OPTIONS = (
    "sep",
    "delimiter",
    "quotechar",
    "quoting",
    "escapechar",
    "doublequote",
    "skipinitialspace",
    "decimal",
    "thousands",
    "na_values",
    "keep_default_na",
    "na_filter",
    "encoding",
    "skip_blank_lines",
)
#: ``read_csv`` options under which a row's line in the file is not its place among
#: the rows plus one (the header): lines would be named wrong, so none is named.  A
#: ``comment`` is one: ``read_csv`` drops a commented line (it is no row) and cuts a
#: line at an inline comment, so a re-read with it loses the lines, and one without it
#: reads the commented text as values
_LINE_SHIFTING = ("names", "skiprows", "skipfooter", "nrows", "comment")


def csv_read_options(options: dict | None, file: str) -> dict | None:
    """The ``read_csv`` options by which ``file`` is read again to find a line: those of
    :data:`_LAYOUT_OPTIONS` in ``options`` (the collection's read, as Dask's reader
    holds them; None: not known, and the separator is the one :func:`separator` gives
    the file's name), the separator as ``sep``.  None where ``options`` move rows off
    the lines counted (:data:`_LINE_SHIFTING`, a header not on the first line), or read
    fields in a way a re-read cannot follow (a separator of several characters, a
    regular expression)."""
    from ..stats.inputs import separator

    if options is None:
        return {"sep": separator(file)}
    if any(options.get(k) is not None for k in _LINE_SHIFTING):
        return None
    if options.get("lineterminator") not in (None, "\n"):  # lines counted by "\n"
        return None
    if options.get("header", "infer") not in ("infer", 0):
        return None
    kept = {k: options[k] for k in _LAYOUT_OPTIONS if options.get(k) is not None}
    sep = kept.pop("delimiter", None) or kept.get("sep") or ","
    if not isinstance(sep, str) or len(sep) != 1:
        return None
    kept["sep"] = sep
    return kept


def csv_names(file: str, storage_options: dict | None, read: dict | None) -> list[str] | None:
    """The column names of ``file``'s header, read as ``read``
    (:func:`csv_read_options`) says; None where the file cannot be read."""
    read = dict(read or {})
    try:
        with open_text(file, storage_options, read.pop("encoding", None)) as fh:
            return [str(c) for c in pd.read_csv(fh, nrows=0, **_split_only(read)).columns]
    except (OSError, ValueError):
        return None


def _split_only(read: dict) -> dict:
    """The options of ``read`` that split a file into fields (its values' reading, such
    as missing values and decimal marks, left out: the fields are read as text; and
    ``skip_blank_lines``: a re-read keeps blank lines as rows, to count every line)."""
    return {
        k: v
        for k, v in read.items()
        if k
        not in (
            "decimal",
            "thousands",
            "na_values",
            "keep_default_na",
            "na_filter",
            "skip_blank_lines",
        )
    }


#: How many characters of a CSV file :func:`blank_rows` reads at a time.
_CHUNK_CHARS = 1 << 24


def blank_rows(
    file: str, storage_options: dict | None, read: dict | None = None
) -> np.ndarray | None:
    """The rows of ``file`` (a CSV file, split as ``read`` says: :func:`csv_read_options`)
    that are blank lines, numbered as ``read_csv`` numbers its rows when it keeps blank
    lines (``skip_blank_lines=False``: 0 the line after the header), sorted.  A blank line
    is an empty one (``\r`` alone too; one of spaces alone where ``skipinitialspace``)
    that is no part of a quoted field.  ``read_csv`` skips such lines by default: a
    re-read that keeps them as rows, to count every line, shows them as rows of empty
    fields, which look like a row of empty fields (``,,,``) and are told apart here,
    from the text.  Quotes are followed by their count (a doubled quote counts twice);
    None where they cannot be (an ``escapechar``) and a blank line or a quote is met, or
    a quote stands inside an unquoted field (``5"x``: text to ``read_csv``), where the
    header is not the first line, or where the file cannot be read.  One pass
    over the file, on the way to an error only."""
    read = read or {}
    quoting = read.get("quoting", 0) != 3  # csv.QUOTE_NONE: quotes are text
    quote = ord(read.get("quotechar") or '"') if quoting else -1
    space = list(b"\r " if read.get("skipinitialspace") else b"\r")
    sep = ord(read.get("sep") or ",")
    # where a quote may open a field (after a separator, a line break, a closing
    # quote: a doubled one) and close it (before those or a "\r")
    opens = [sep, 10, quote] + ([32] if read.get("skipinitialspace") else [])
    closes = [sep, 10, 13, quote]
    blanks: list[np.ndarray] = []
    record = 0  # the records ended before the text held
    held = b""  # the text of the last record not ended yet (a record starts outside quotes)
    try:
        with open_text(file, storage_options, read.get("encoding")) as fh:
            while True:
                text = fh.read(_CHUNK_CHARS)
                if not text:
                    break
                data = held + text.encode("utf-8")  # one byte per "\n", "\r" and quote
                raw = np.frombuffer(data, dtype=np.uint8)
                quotes = np.flatnonzero(raw == quote)
                if quotes.size and read.get("escapechar"):
                    return None
                # a quote inside an unquoted field (5"x) is text to read_csv but
                # would open a field to the count below: give up rather than miscount
                first, second = quotes[0::2], quotes[1::2]
                before = raw[np.maximum(first - 1, 0)]
                after = raw[np.minimum(second + 1, raw.size - 1)]
                if not (
                    np.isin(before[first > 0], opens).all()
                    and np.isin(after[second + 1 < raw.size], closes).all()
                ):
                    return None
                breaks = np.flatnonzero(raw == 10)
                # a line break ends a record where an even number of quotes (none
                # open) comes before it
                ends = breaks[np.searchsorted(quotes, breaks) % 2 == 0]
                starts = np.concatenate(([0], ends[:-1] + 1))
                seen = np.concatenate(([0], np.cumsum(~np.isin(raw, space))))
                empty = seen[ends] == seen[starts]  # nothing but "\r" (and spaces)
                if read.get("escapechar") and empty.any():
                    return None
                blanks.append(record + np.flatnonzero(empty))
                record += ends.size
                held = data[int(ends[-1]) + 1 :] if ends.size else data
    except (OSError, ValueError):
        return None
    rows = np.concatenate(blanks) if blanks else np.zeros(0, dtype=np.intp)
    if rows.size and rows[0] == 0:  # a blank first line: the header is further on
        return None
    return rows - 1


def na_tokens(read: dict | None, column: str) -> set:
    """The fields that ``read_csv`` reads as a missing value in ``column`` under the
    options ``read`` (:func:`csv_read_options`): pandas' tokens (``''``, ``NA``,
    ``nan``...) unless ``keep_default_na=False``, and those of ``na_values`` (for all
    columns, or ``column``'s where it is a dict)."""
    from pandas.io.parsers.readers import STR_NA_VALUES

    read = read or {}
    if read.get("na_filter") is False:
        return set()
    tokens = set(STR_NA_VALUES) if read.get("keep_default_na", True) else set()
    given = read.get("na_values")
    if isinstance(given, dict):
        given = given.get(column)
    if isinstance(given, str):
        given = [given]
    return tokens | {str(v) for v in given or ()}


def missing_tokens(columns, labels) -> dict:
    """``read_csv`` options by which only an empty field of a label column is missing
    (pandas' tokens ``NA``, ``null``, ``nan``... are labels there) and the other
    ``columns`` keep pandas' tokens."""
    from pandas.io.parsers.readers import STR_NA_VALUES

    tokens = {c: [""] if c in labels else sorted(STR_NA_VALUES) for c in columns}
    return {"keep_default_na": False, "na_values": tokens}


def not_a_number(values: pd.Series) -> np.ndarray:
    """Whether each value (text, missing values as missing) is present and no number."""
    return (values.notna() & pd.to_numeric(values, errors="coerce").isna()).to_numpy()


def not_a_number_as_read(read: dict | None) -> Callable[[pd.Series], np.ndarray]:
    """:func:`not_a_number` for fields that ``read_csv`` reads with the ``decimal`` and
    ``thousands`` marks of ``read`` (:func:`csv_read_options`): ``1,5`` is a number
    under ``decimal=","``, and ``1.5`` is not."""
    decimal = (read or {}).get("decimal", ".")
    thousands = (read or {}).get("thousands")
    if decimal == "." and not thousands:
        return not_a_number

    def bad(values: pd.Series) -> np.ndarray:
        text = values.astype(object).where(values.notna())
        present = text.notna().to_numpy()
        text = text[present].astype(str)
        if thousands:
            text = text.str.replace(thousands, "", regex=False)
        if decimal != ".":  # a point is no decimal mark there
            text = text.str.replace(".", "\x00", regex=False)
            text = text.str.replace(decimal, ".", regex=False)
        out = np.zeros(len(values), dtype=bool)
        out[present] = pd.to_numeric(text, errors="coerce").isna().to_numpy()
        return out

    return bad


def csv_culprit(
    files: list[str],
    column: str,
    bad: Callable[[pd.Series], np.ndarray],
    storage_options: dict | None = None,
    label: bool = False,
) -> str | None:
    """``"FILE line N holds 'VALUE'"`` for the first value of ``column`` for which
    ``bad`` is true (:func:`csv_culprit_at`); None where none is (or a file cannot be
    read)."""
    found = csv_culprit_at(files, column, bad, storage_options, label)
    if found is None:
        return None
    f, line, value = found
    shown = "no value" if pd.isna(value) else f"{value!r}"
    return f"{f} line {line} holds {shown}"


def csv_value_at(
    file: str,
    columns: list[str],
    value: str,
    storage_options: dict | None = None,
    lines: tuple[int, int] | None = None,
    read: dict | None = None,
) -> tuple[str, int, bool] | None:
    """``(column, line, first_only)``: where ``file`` (a CSV file) holds the field
    ``value`` in one of ``columns`` (:func:`csv_field_at`)."""
    found = csv_field_at(
        file, columns, lambda s: (s == value).to_numpy(), storage_options, lines, read
    )
    return None if found is None else (found[0], found[1], found[3])


def csv_field_at(
    file: str,
    columns: list[str],
    bad: Callable[[pd.Series], np.ndarray],
    storage_options: dict | None = None,
    lines: tuple[int, int] | None = None,
    read: dict | None = None,
) -> tuple[str, int, str, bool] | None:
    """``(column, line, value, first_only)``: where ``file`` (a CSV file) holds a field
    of one of ``columns`` (those it has) for which ``bad`` is true (given each column's
    fields as text, nothing missing, named by the column), the first such line within
    ``lines`` (first and last line, both counted, where known: a partition's rows), and
    in a line, the first of ``columns`` holding one; ``first_only`` is true where that
    choice was made among several such fields (they cannot be told apart).  The file
    is split into fields as ``read`` says (:func:`csv_read_options`; None: by
    :func:`csv_read_options` of no options).  None where none is found or the file
    cannot be read.  One pass over the file, all the columns searched at once; lines
    count the header as line 1 and one line per row (a quoted field holding a line
    break shifts them), blank lines included; where ``read_csv`` skips blank lines
    (``skip_blank_lines``, its default) their empty fields are not searched
    (:func:`blank_rows`, one more pass; None where they cannot be told apart).  Read on
    the way to an error only."""
    read = dict(read if read is not None else csv_read_options(None, file) or {})
    skipped = np.zeros(0, dtype=np.intp)
    if read.get("skip_blank_lines", True):
        blanks = blank_rows(file, storage_options, read)
        if blanks is None:
            return None
        skipped = blanks
    encoding = read.pop("encoding", None)
    header = csv_names(file, storage_options, {**read, "encoding": encoding})
    present = [c for c in columns if header is not None and c in header]
    if not present:
        return None
    first: tuple[str, int, str] | None = None
    several = False
    try:
        with open_text(file, storage_options, encoding) as fh:
            chunks = pd.read_csv(
                fh,
                usecols=present,
                dtype=object,
                keep_default_na=False,
                na_filter=False,
                chunksize=_CHUNK_ROWS,
                skip_blank_lines=False,
                **_split_only(read),
            )
            for chunk in chunks:
                hit = np.column_stack([bad(chunk[c]) for c in present])
                hit[np.isin(chunk.index.to_numpy(), skipped)] = False  # no row to read_csv
                line_of = chunk.index.to_numpy() + 2
                rows = np.flatnonzero(hit.any(axis=1))
                if lines is not None:
                    rows = rows[(line_of[rows] >= lines[0]) & (line_of[rows] <= lines[1])]
                if first is None and rows.size:
                    row = int(rows[0])
                    column = present[int(np.argmax(hit[row]))]
                    first = column, int(line_of[row]), str(chunk[column].iloc[row])
                    several = rows.size > 1 or int(hit[row].sum()) > 1
                elif first is not None and rows.size:
                    several = True
                if first is not None and (several or lines is not None):
                    break
                if lines is not None and line_of.size and line_of[-1] >= lines[1]:
                    break  # past the partition's lines
    except (OSError, ValueError):  # the reader's own error is the one reported
        return None
    return None if first is None else (*first, several)


def csv_culprit_at(
    files: list[str],
    column: str,
    bad: Callable[[pd.Series], np.ndarray],
    storage_options: dict | None = None,
    label: bool = False,
    read: dict | None = None,
) -> tuple[str, int, object] | None:
    """``(file, line, value)`` of the first value of ``column`` (read as text, missing
    values as missing: only empty fields where ``label``, the column being read as
    labels, else those of ``read``) for which ``bad`` is true, files in their order,
    each split into fields as ``read`` says (:func:`csv_read_options`; None: by each
    file's name); None where none is (or a file cannot be read).  Lines count the
    header as line 1 and one line per row (a quoted field holding a line break shifts
    them).  Read on the way to an error only: one pass over the column, stopping at the
    first."""
    for f in files:
        options = dict(read if read is not None else csv_read_options(None, f) or {})
        encoding = options.pop("encoding", None)
        if label:
            options = {**_split_only(options), **missing_tokens([column], [column])}
        options.pop("decimal", None)  # the fields are read as text
        options.pop("thousands", None)
        try:
            with open_text(f, storage_options, encoding) as fh:
                chunks = pd.read_csv(
                    fh,
                    usecols=[column],
                    dtype=object,
                    chunksize=_CHUNK_ROWS,
                    skip_blank_lines=False,
                    **options,
                )
                for chunk in chunks:
                    hits = np.flatnonzero(bad(chunk[column]))
                    if hits.size:
                        row = int(chunk.index[hits[0]])
                        return f, row + 2, chunk[column].iloc[hits[0]]
        except (OSError, ValueError):  # the reader's own error is the one reported
            return None
    return None
