"""The input of a batch job: its files, their one format, and the Dask DataFrame over them.

What the command line reads, checked before the data pass where it can be:

- the files a ``--data`` argument stands for (globs, directories), absent ones refused;
  a results or statistics directory among them (:func:`refuse_inside_inputs`);
- Parquet: every local file starts and ends with Parquet's magic bytes, else it is named;
- CSV (``*.tsv`` tab-separated): an empty file, and files that all hold only a header,
  are refused naming them; a header naming a column twice is refused (pandas would
  rename the second ``x1.1``); the label columns (the group column and those inside
  ``C()``) are read as text unless every value of every file is a plain integer
  (:func:`label_types`), so that labels never depend on how rows fall into files or
  partitions; in a label column only an empty field is missing (a group called ``NA``
  or ``null`` is a group), in the others pandas' missing-value tokens are missing too;
  the other integer columns are read as float64 (:func:`read_data`);
- an error of the data pass about one column of CSV input (missing values, text where
  numbers are read) names the file and line of its first offending value
  (:func:`csv_culprit`).

Every refusal is a :class:`~dmixed.job.JobError` with the exit status of bad data
(:data:`~dmixed.job.EXIT_DATA`) unless it says otherwise.
"""

from __future__ import annotations

import csv
import fnmatch
import glob
import os
import re
from collections.abc import Collection

import numpy as np
import pandas as pd

from .design.file_schemas import csv_culprit, missing_tokens, not_a_number, open_text
from .design.partitions import CSV_DTYPES, csv_types_message
from .errors import DataError, DmixedError
from .job import EXIT_CONFIG, EXIT_DATA, Job, JobError

__all__ = [
    "check_input",
    "column_names",
    "csv_culprit",
    "files_lacking",
    "files_named",
    "input_files",
    "is_read_error",
    "label_columns",
    "label_types",
    "one_line",
    "read_data",
    "read_error_message",
    "refuse_inside_inputs",
    "saved_inputs_gone",
]

#: a plain integer as text: what a label column holds for its labels to be integers
#: (no sign but ``-``, no leading zero: ``007`` is a label; at most 18 digits: int64)
_PLAIN_INTEGER = r"-?(?:0|[1-9][0-9]{0,17})"


def one_line(exc) -> str:
    """An error message as one line (cli: "Errors are one line on stderr")."""
    return " ".join(str(exc).split())


# ---------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------


def input_files(job: Job) -> list[str]:
    """The job's input files (globs, directories expanded); absent local files refused."""
    from .stats.checkpoint import expand_inputs

    files = expand_inputs(job.data)
    for url in (f for f in files if "://" in f and f.rstrip("/").endswith("/**")):
        # fsspec's ``**`` lists the folders too, which the Parquet reader refuses
        folder = url.rstrip("/")[: -len("/**")]
        raise JobError(
            f"{url}: a URL ending in ** matches its folders too, which the reader cannot "
            f"read as files: give the folder, {folder}, or its files, {folder}/**/*.parquet",
            EXIT_DATA,
        )
    local = [f for f in files if "://" not in f]
    absent = [f for f in local if not os.path.exists(f)]
    if absent:
        raise JobError(f"no such input file(s): {absent[:3]}", EXIT_DATA)
    return files


def input_format(job: Job, files: list[str]) -> str:
    """The input files' one format: ``--format``, or that of every file's name or magic
    (:func:`dmixed.stats.inputs.input_format`); a file of neither kind is refused."""
    from .stats.inputs import input_format as format_of

    try:
        return format_of(files, job.format)
    except DataError as exc:
        raise JobError(f"{exc} (data {job.data!r})", EXIT_DATA) from exc


def _components(path: str) -> list[str]:
    return os.path.realpath(path).strip(os.sep).split(os.sep)


def _read_by(item: str, target: list[str]) -> bool:
    """Whether the input ``item`` (a directory, a glob or a file) would read the
    directory whose real path has the components ``target``, or files written in it:
    ``target`` is inside the directory, or inside (or above) what the glob matches."""
    if os.path.isdir(item):
        root = _components(item)
        return target[: len(root)] == root
    if not any(c in item for c in "*?["):
        return False
    # the directory part without wildcards is resolved; the rest is matched component
    # by component, as glob.glob matches, up to a ``**`` component (any number of
    # folders, :func:`~dmixed.stats.checkpoint.expand_inputs`), below which any folder
    # may be read
    parts = os.path.abspath(item).strip(os.sep).split(os.sep)
    fixed = next(i for i, p in enumerate(parts) if glob.has_magic(p))
    root = _components(os.sep + os.sep.join(parts[:fixed]))
    pattern = parts[fixed:]
    if "**" in pattern:
        pattern = pattern[: pattern.index("**")]
    if target[: len(root)] != root:
        return False
    rest = target[len(root) :]
    return all(fnmatch.fnmatchcase(r, p) for r, p in zip(rest, pattern, strict=False))


def saved_inputs_gone(
    data: str | list[str],
    inputs: list[dict],
    saved: list[dict],
    read_keys: set[str] | None = None,
) -> list[str]:
    """The saved inputs ``saved`` (a statistics manifest's records) that the job's
    ``data`` would list but which are no longer there: local files deleted (or moved
    away) since their rows were added, whose rows the statistics still count.  A saved
    file found under another path among ``inputs`` (its content, or the same size,
    footer, Hive keys and time stamp: :func:`~dmixed.stats.inputs.same_content`,
    :func:`~dmixed.stats.inputs.moved_inputs`) is not gone.  Only the saved files the
    data names are looked for: an update given a day's new folder says nothing of the
    folders of earlier days.

    ``inputs``: the fingerprints of the files ``data`` lists now
    (:func:`~dmixed.stats.checkpoint.input_fingerprint`); paths are absolute.
    """
    from .stats.checkpoint import lists_file
    from .stats.inputs import moved_inputs, same_content

    items = [data] if isinstance(data, str) else list(data)
    now = {rec["path"] for rec in inputs}
    gone = [
        rec
        for rec in saved
        if "://" not in rec["path"]
        and rec["path"] not in now
        and any(lists_file(item, rec["path"]) for item in items)
        and not os.path.exists(rec["path"])
    ]
    if not gone:
        return []
    found = {q for _, q in same_content(inputs, gone, read_keys)}
    found |= {q for _, q in moved_inputs(inputs, gone)}
    return [rec["path"] for rec in gone if rec["path"] not in found]


def refuse_inside_inputs(job: Job) -> None:
    """Refuse an ``--output`` or ``--stats-dir`` inside an input directory, or inside a
    directory an input glob reads (or one it matches): the next job would read the
    results or statistics written there as data.

    Raises
    ------
    JobError
        Naming the flag, the directory and the input (exit status 2).
    """
    items = [job.data] if isinstance(job.data, str) else list(job.data or [])
    for flag, path in (("--output", job.output), ("--stats-dir", job.stats_dir)):
        if not path or "://" in path:
            continue
        target = _components(path)
        for item in items:
            if "://" not in item and _read_by(item, target):
                raise JobError(
                    f"{flag} {path} is inside the input {item!r}: the next job would read "
                    "what dmixed writes there as data; write it outside the input",
                    EXIT_CONFIG,
                )


def _check_parquet_files(files: list[str], rows_needed: bool = True) -> None:
    """Refuse a local input file that is not Parquet, or is cut short or damaged (it does
    not both start and end with ``PAR1``), naming it in full as other errors do:
    pyarrow's error says what is wrong, not in which file; and local files that all hold
    no rows (a schema only), naming them: the data pass found no rows and said nothing
    of the files."""
    from .stats.inputs import is_parquet_file

    local = [f for f in files if "://" not in f and os.path.isfile(f)]
    for f in local:
        if not is_parquet_file(f):  # a file cut short lacks the PAR1 at its end
            raise JobError(
                f"cannot read parquet data: {os.path.abspath(f)} is not a Parquet file or "
                "is truncated or damaged (it does not start and end with PAR1); remove it "
                "from the input, or write it again",
                EXIT_DATA,
            )
    # the footers' row counts, read until a file holds a row (the first, in practice)
    if (
        rows_needed
        and local
        and len(local) == len(files)
        and not any(map(_parquet_has_rows, local))
    ):
        raise JobError(
            f"cannot read parquet data: no rows: {some_of(files)} "
            f"{'holds' if len(files) == 1 else 'hold'} no rows (a schema only)",
            EXIT_DATA,
        )


#: how many files a message about all of them names before "and N more"
NAMED_FILES = 3


def some_of(files: list[str]) -> str:
    """The first :data:`NAMED_FILES` of ``files`` and how many more (an input of
    thousands of files is one readable line)."""
    more = len(files) - NAMED_FILES
    return ", ".join(files[:NAMED_FILES]) + (f" and {more} more" if more > 0 else "")


def holds_rows(path: str, fmt: str, storage_options: dict | None = None) -> bool:
    """Whether an input file of format ``fmt`` holds a row: a local Parquet file's
    footer, a CSV file's first records; True where it cannot be told without a read
    (a URL, a damaged footer: the read of the data says what is wrong)."""
    if "://" in path or not os.path.isfile(path):
        return True
    if fmt == "parquet":
        return _parquet_has_rows(path)
    try:
        return csv_has_rows(path, storage_options)
    except (OSError, UnicodeDecodeError):
        return True


def _parquet_has_rows(path: str) -> bool:
    """Whether a Parquet file's footer counts a row (True where it cannot be read: the
    read of the data names the file and what is wrong)."""
    from .stats.inputs import parquet_row_count

    try:
        rows = parquet_row_count(path)
    except Exception:  # noqa: BLE001 - pyarrow raises several types for a damaged footer
        return True
    return rows is None or rows > 0


# ---------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------


def _records(fh, path: str):
    """The records of an open CSV (or TSV) file, blank lines skipped (as pandas does)."""
    from .stats.inputs import separator

    return (row for row in csv.reader(fh, delimiter=separator(path)) if row)


def csv_header(path: str, storage_options: dict | None = None) -> list[str]:
    """The column names of a CSV (or TSV) file's first line that is not blank (blank
    lines are skipped, as pandas skips them).

    Raises
    ------
    JobError
        An empty file (no header: Dask's reader says only "No columns to parse"), or a
        column named twice (naming the file, the column and both positions).
    """
    with open_text(path, storage_options) as fh:
        names = next(_records(fh, path), [])
    if not names:
        raise JobError(
            f"cannot read csv data: {path} is an empty file (no header, no rows); remove "
            "it from the input",
            EXIT_DATA,
        )
    seen: dict[str, int] = {}
    for i, name in enumerate(names, 1):
        if name in seen:
            raise JobError(
                f"{path}: the header names column {name!r} twice (columns {seen[name]} and "
                f"{i}); give every column a name of its own",
                EXIT_DATA,
            )
        seen[name] = i
    return names


def csv_has_rows(path: str, storage_options: dict | None = None) -> bool:
    """Whether a CSV (or TSV) file holds a row after its header (blank lines skipped):
    its first two records read, not the file."""
    with open_text(path, storage_options) as fh:
        records = _records(fh, path)
        next(records, None)
        return next(records, None) is not None


def label_columns(model: dict) -> set[str]:
    """The label columns of a model (a job's keys or a saved spec's): the group column
    and the columns named inside ``C()`` in its formulas."""
    formulas = [model.get("formula") or "", model.get("re_formula") or ""]
    formulas += list((model.get("vc_formula") or {}).values())
    found = set(re.findall(r"\bC\(\s*([A-Za-z_][\w.]*)", " ".join(formulas)))
    return found | ({model["groups"]} if model.get("groups") else set())


def model_names(model: dict) -> set[str]:
    """Every name a model (a job's keys) may read as a column: the words of its formulas
    (``formula``, ``re_formula``, ``vc_formula``'s), ``groups`` and ``weights``.  A
    superset (function names too): used to tell which Hive partition keys the model
    reads (:func:`~dmixed.stats.inputs.same_content`), where a name too many only keeps
    a key that tells files apart, as before."""
    formulas = [model.get("formula") or "", model.get("re_formula") or ""]
    formulas += list((model.get("vc_formula") or {}).values())
    text = " ".join(formulas)
    found = set(re.findall(r"[^\W\d][\w.]*", text))
    found |= {quoted for _, quoted in re.findall(r"(['\"`])(.*?)\1", text)}  # Q("a b")
    return found | {model[k] for k in ("groups", "weights") if isinstance(model.get(k), str)}


def _by_separator(files: list[str]) -> dict[str, list[str]]:
    from .stats.inputs import separator

    out: dict[str, list[str]] = {}
    for f in files:
        out.setdefault(separator(f), []).append(f)
    return out


def _rows_first(files: list[str], fmt: str, storage_options: dict | None = None) -> list[str]:
    """``files`` of format ``fmt`` with those before the first file holding rows moved
    to the end (:func:`holds_rows`: a CSV file's first two records, a local Parquet
    file's footer, read up to the first file with a row).

    Dask takes the columns' types from the first CSV file's first rows: a header-only
    file first made every column text, and the numbers of the files after it were
    refused as text.  The files moved hold no rows, so the rows keep their order.
    (Dask sorts Parquet files: those without rows are left out instead, :func:`_with_rows`.)"""
    for k, f in enumerate(files):
        if holds_rows(f, fmt, storage_options):
            return files[k:] + files[:k]
    return files


def _with_rows(files: list[str], storage_options: dict | None) -> list[str]:
    """The Parquet ``files`` that hold rows (:func:`holds_rows`: every local file's
    footer; a URL is kept), all of them where none does.

    Dask sorts the files and takes the columns and their types from the first one's
    schema: a schema-only file sorting first that declared ``x`` as ``string`` had the
    numbers of the files after it refused as text, the error blaming a file with the
    rows.  A file without rows adds nothing to the data, so its schema is not read as
    the input's (``check_input`` and ``update`` check such files on their own)."""
    kept = [f for f in files if holds_rows(f, "parquet", storage_options)]
    return kept or files


def _read_csv(files: list[str], storage_options: dict | None, **options):
    """One Dask DataFrame over CSV and TSV files (each read with its separator)."""
    import dask.dataframe as dd

    parts = [
        dd.read_csv(
            _rows_first(group, "csv", storage_options),
            sep=sep,
            storage_options=storage_options or None,
            **options,
        )
        for sep, group in _by_separator(files).items()
    ]
    return parts[0] if len(parts) == 1 else dd.concat(parts)


def label_types(files: list[str], columns: list[str], storage_options: dict | None) -> dict:
    """``{column: "int", "whole", "float" or "text"}``: the type of each label column
    (the group column, those inside ``C()``) of CSV ``files``, the one rule of CSV
    labels for ``fit`` and ``update`` alike (its owner: :func:`label_type`).

    One read of these columns of every file (a CSV file cannot be read by columns
    alone), each partition's distinct values judged (:func:`_label_flags`): the answer
    is the same however the rows are split into files and partitions, which Dask's
    inference from the first file's first rows is not.

    It is a read of its own, before the spec's scan of the levels (which reads the
    files again) and the data pass: a third of the CSV parses of ``dmixed fit``
    (``benchmarks/bench_csv_reads.py``; RESULTS.md).  It is not folded into the scan
    because the types must be fixed before the DataFrame is made, and the design takes
    the DataFrame as typed: the scan reads these columns already as int64 or text.  The
    fold is exact (the scan's distinct values of every partition are what this pass
    matches, so "all plain integers" would be decided from the very same values) but
    needs the design to read a label column as text and own its conversion: a column
    kind "integers held as text" whose levels the scan converts when every one is a
    plain integer (else text), and whose values each partition converts (``int64``) as
    it reads them; the numbers' sort order (``9 < 10``) and the missing-value rule (an
    empty field makes the column text, here) must stay as they are.  And it gains
    little: a column parsed as text costs more than as integers, so holding the labels
    as text through the data pass costs more than this pass, and only a data pass
    that reads them as integers again once the scan has decided gains
    (``bench_csv_reads.py --fold``; RESULTS.md).

    Raises
    ------
    JobError
        A column of numbers, some written as floats, that float64 cannot hold exactly
        (:func:`label_type`), naming the column, file, line and value.
    """
    if not columns:
        return {}
    ddf = _read_csv(
        files,
        storage_options,
        usecols=columns,
        dtype=dict.fromkeys(columns, object),
        **missing_tokens(columns, columns),
    )
    # the columns come in the files' order, whatever the order of ``columns``; a
    # column's flags are named by a character no CSV header holds
    names = [f"{flag}{_FLAG}{c}" for c in ddf.columns for flag in _FLAGS]
    meta = pd.DataFrame({c: pd.Series(dtype=bool) for c in names})
    flags = ddf.map_partitions(_label_flags, meta=meta).compute().all()
    types = {}
    for c in columns:
        kind = label_type(*(bool(flags[f"{flag}{_FLAG}{c}"]) for flag in _FLAGS))
        if kind is None:
            where = csv_culprit(files, c, _inexact_float, storage_options, label=True)
            raise JobError(
                f"the labels of column {c!r} are numbers, some written as floats ('28.0'), "
                f"read as float64 as pandas reads them, but "
                f"{where or 'one is of magnitude 2**53 or more'}: beyond 2**53 float64 "
                "cannot tell neighbouring whole numbers apart, so two groups could be "
                "one; write that column as integers in every file (or as text labels)",
                EXIT_DATA,
            )
        types[c] = kind
    return types


def label_type(plain: bool, numbers: bool, exact: bool, whole: bool) -> str | None:
    """The type of a CSV label column from what every value of every file is (the owner
    of the rule, fit and ``update`` alike, as the README states it):

    - "int": every value a plain integer (``-?[1-9][0-9]*`` or ``0``; ``007`` is not);
    - "whole": every value a number (a plain integer or a decimal, ``28.0``, ``1e3``,
      ``7.``), all whole and of magnitude below 2**53 as float64 reads them: the
      group column's keys are read as float64, then as int64, so ``7`` and ``7.0`` are
      the one group ``7``, as pandas reads them one key and as a float64 Parquet
      file's ``7.0`` meets an int64 file's ``7``; the levels of a ``C()`` column stay
      float64, as pandas reads them (``C(site)[T.2.0]``);
    - "float": every value such a number below 2**53, some not whole: float64 keys;
    - None: every value a number, some written as floats, and some of magnitude 2**53
      or more: float64 would round it, so it is refused (:func:`label_types`);
    - "text": anything else (a value that is not a number by this rule, ``007``, a
      missing value); text labels are compared as written.

    ``plain``, ``numbers``, ``exact``, ``whole``: whether every value is a plain
    integer, a number, below 2**53 in magnitude, a whole number, each judged on the
    float64 the text reads as.  Values are as float64 rounds them, as in pandas: not
    exact for decimals that float64 cannot tell apart (``4503599627370496.5`` is the
    whole ``2**52``, ``7.0000000000000001`` is ``7``, ``1e-400`` is ``0``; each pair one
    key), only for whole numbers below 2**53."""
    if plain:
        return "int"
    if not numbers:
        return "text"
    if not exact:
        return None
    return "whole" if whole else "float"


#: a number as a CSV label may be written: a plain integer, or a decimal with a
#: fraction and/or an exponent (as pandas writes floats: ``28.0``, ``1e+20``; and as
#: pandas reads them: ``7.``, ``.5``); no leading zero (``007``, ``07.5`` are text), no
#: ``+``, no ``inf``
_NUMBER = r"-?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"

#: plain integers of at most this many digits are below 2**53 (16 digits) in magnitude
_SHORT_DIGITS = 15

#: the flags :func:`_label_flags` gives each column, in :func:`label_type`'s order
_FLAGS = ("plain", "number", "exact", "whole")

#: between a flag's name and its column's in :func:`_label_flags`' columns
_FLAG = "\x00"


def _label_flags(pdf: pd.DataFrame) -> pd.DataFrame:
    """One row: for each column of ``pdf`` (text) whether every value is a plain
    integer, a number, below 2**53 in magnitude and whole (:func:`label_type`'s
    arguments; the distinct values judged: a label column has far fewer than rows)."""
    out = {}
    for c in pdf.columns:
        values = pd.Series(pdf[c].unique(), dtype=object)
        missing = bool(values.isna().any())
        text = values.dropna().astype(str)
        plain = not missing and bool(text.str.fullmatch(_PLAIN_INTEGER).all())
        if plain and (text.str.len() - text.str.startswith("-")).max() <= _SHORT_DIGITS:
            # (the common case: no number parsed; whole and exact by their digits)
            number = exact = whole = True
        else:
            number = not missing and bool(text.str.fullmatch(_NUMBER).all())
            numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
            with np.errstate(invalid="ignore"):
                exact = number and bool((np.abs(numbers) < _EXACT_FLOATS).all())
                whole = exact and bool((numbers == np.floor(numbers)).all())
        for flag, value in zip(_FLAGS, (plain, number, exact, whole), strict=True):
            out[f"{flag}{_FLAG}{c}"] = [value]
    return pd.DataFrame(out)


#: Beyond this magnitude float64 cannot tell neighbouring whole numbers apart: a CSV
#: label read as float64 there could join another group (:data:`~dmixed.stats.keys.EXACT_INTEGERS`)
_EXACT_FLOATS = float(2**53)


def _inexact_float(values: pd.Series) -> np.ndarray:
    """Labels (text) that float64 cannot hold as written: not a number
    (:data:`_NUMBER`), missing, or a number of magnitude 2**53 or more (the float read
    may be a neighbour's)."""
    number = values.str.fullmatch(_NUMBER).fillna(False).to_numpy(dtype=bool)
    numbers = pd.to_numeric(values.where(number), errors="coerce").to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return ~(number & (np.abs(numbers) < _EXACT_FLOATS))


def _refuse_unlike_saved(files, types: dict, saved: dict, storage_options) -> None:
    """``update``: refuse labels that cannot be read as the saved statistics' (numbers
    saved, integers or float64, and text in the new files), naming the column, file and
    line.  New numbers meet saved numbers by value (:func:`label_type`'s rule: whole
    numbers as integers, else float64 where exact;
    :func:`~dmixed.stats.checkpoint_merge.merge`), the one int/float rule of group keys."""
    for c, kind in saved.items():
        if kind not in ("int", "float") or types.get(c) != "text":
            continue
        where = csv_culprit(files, c, _neither_integer_nor_float, storage_options, label=True)
        held = "integers" if kind == "int" else "numbers (float64)"
        raise JobError(
            f"the labels of column {c!r} in the saved statistics are {held}, but "
            f"{where or 'the new files hold text'}: update reads them as integers, or as "
            "numbers where every value is one of magnitude below 2**53 (written "
            "'28.0'); convert that column, or fit all the data again",
            EXIT_DATA,
        )


def _neither_integer_nor_float(values: pd.Series) -> np.ndarray:
    """Labels that are neither plain integers nor exact float64 values (the values
    that made :func:`label_types` read a column saved as numbers as text)."""
    return _not_plain_integer(values) & _inexact_float(values)


def read_data(
    job: Job, files: list[str] | None = None, model: dict | None = None, saved_labels=None
):
    """A lazy Dask DataFrame over the job's Parquet or CSV input, and its files.

    ``model``: the model keys (formulas, groups) whose label columns CSV input reads as
    text or integers (default: the job's); ``saved_labels``: ``{column: "int", "float"
    or "text"}`` of saved statistics, which ``update`` keeps.

    Raises
    ------
    JobError
        A file that cannot be read, named where it can be (exit status 3).
    """
    if files is None:
        files = input_files(job)
    fmt = check_input(job, files)
    options = job.storage_options or None
    try:
        if fmt == "parquet":
            import dask.dataframe as dd

            reader_files = _with_rows(files, options)
            _check_hive_names(reader_files)
            return dd.read_parquet(reader_files, storage_options=options), files
        return _read_csv_input(job, files, model or job.model_dump(), saved_labels or {}), files
    except JobError:
        raise
    except Exception as exc:  # pyarrow/fsspec raise many types for unreadable input
        message = f"cannot read {fmt} data {job.data!r}: " + (
            _hive_clash(exc, files) or read_error_message(exc)
        )
        raise JobError(message, EXIT_DATA) from exc


def _check_hive_names(files: list[str]) -> None:
    """Refuse Parquet files whose paths give other Hive partition keys
    (:func:`~dmixed.stats.inputs.hive_key_names`: ``lake/region=eu/a.parquet`` beside
    ``plain/b.parquet``, or a link to a ``region=eu`` folder): the reader fails on them
    with a bare ``KeyError: 'region'``.  Names a file of each."""
    from .stats.inputs import hive_key_names

    by_names: dict[tuple[str, ...], str] = {}
    for f in files:
        by_names.setdefault(hive_key_names(f), f)
    if len(by_names) > 1:
        shown = "; ".join(
            f"{os.path.abspath(f) if '://' not in f else f} "
            + (f"(keys {', '.join(names)})" if names else "(no key=value folder)")
            for names, f in by_names.items()
        )
        raise JobError(
            "cannot read parquet data: its files lie under other Hive partition folders "
            f"(key=value), which the reader adds to the rows as columns: {shown}; give "
            "files of one layout (every file under the same key=value folders, or none)",
            EXIT_DATA,
        )


#: pyarrow's refusal of a Hive partition key whose column the files also store
_HIVE_CLASH = re.compile(r"Unable to merge: Field (\S+) has incompatible types: (\S+) vs (\S+)")


def _hive_clash(exc: BaseException, files: list[str]) -> str | None:
    """Words for pyarrow's "Unable to merge: Field C has incompatible types: A vs B" (in
    Dask's "An error occurred while calling the read_parquet method ..."): a Hive
    partition key ``C`` (the ``C=value`` folders, read as text) that the files also
    store as a column of another type (pandas 3 writes text as ``large_string``), naming
    the column, the folders, a file storing it and both types; None for another error."""
    found = _HIVE_CLASH.search(str(exc))
    if found is None:
        return None
    column, stored, key = found.groups()
    folders = sorted(
        {
            os.path.abspath(f).split(f"{os.sep}{column}=")[0]
            for f in files
            if f"{os.sep}{column}=" in os.path.abspath(f)
        }
    )
    if not folders:
        return None
    holder = next((f for f in files if column in _schema_names(f)), None)
    where = f" (such as {os.path.abspath(holder)})" if holder else ""
    return (
        f"column {column!r} is a Hive partition key of {some_of(folders)} (its "
        f"{column}=... folders, read as {key}) and also a column stored in the files"
        f"{where} as {stored}: pyarrow cannot merge the two types; write the files "
        f"without the column {column!r} (the folders give its values), or store it as {key}"
    )


def _schema_names(path: str) -> list[str]:
    """The columns a local Parquet file's schema declares (none if it cannot be read)."""
    import pyarrow.parquet as pq

    try:
        return list(pq.read_schema(path).names) if "://" not in path else []
    except Exception:  # noqa: BLE001 - pyarrow raises several types for a damaged footer
        return []


def check_input(job: Job, files: list[str], rows_needed: bool = True) -> str:
    """The input's one format, every file checked as far as it can be without reading
    its rows (cheap: before a cluster is started): a local file called Parquet that is
    not, local Parquet files that all hold no rows (their footers); an empty CSV file
    (0 bytes: no header, so its columns cannot be checked, refused even beside other
    files), a CSV header naming a column twice, CSV files that all hold only a header
    (the first two records of each file read until one holds a row).  With
    ``rows_needed`` False (``update``, whose new files may hold no rows:
    :func:`holds_rows`), files without rows are not refused.

    Raises
    ------
    JobError
        Naming the file (exit status 3).
    """
    fmt = input_format(job, files)
    if fmt == "parquet":
        _check_parquet_files(files, rows_needed)
    else:
        for f in files:
            csv_header(f, job.storage_options)
        if rows_needed and not any(csv_has_rows(f, job.storage_options) for f in files):
            raise JobError(
                f"cannot read csv data: no rows: {some_of(files)} "
                f"{'holds' if len(files) == 1 else 'hold'} only a header",
                EXIT_DATA,
            )
    return fmt


def column_names(job: Job, files: list[str], fmt: str) -> set[str] | None:
    """The data's column names as its first file holding rows declares them (the first
    file :func:`read_data` reads: for Parquet, in Dask's order,
    :func:`dask_parquet_order`), where they can be read without its rows and are all
    that a read of the input gives (Dask takes the first file's columns for the whole
    input): a CSV file's header; a local Parquet file's
    schema where no file lies under a ``key=value`` folder (Hive partitioning: Dask adds
    the keys as columns).  None where they cannot be known so (remote Parquet).

    Raises
    ------
    JobError
        A first file whose header or schema cannot be read (exit status 3).
    """
    if not files:
        return None
    if fmt == "parquet":  # Dask reads them in its own order, whatever the order given
        files = dask_parquet_order(files)
    first = _rows_first(files, fmt, job.storage_options)[0]  # as read_data reads them
    if fmt != "parquet":
        return set(csv_header(first, job.storage_options))
    hive = any("=" in part for f in files for part in os.path.dirname(f).split(os.sep))
    if "://" in first or hive or not os.path.isfile(first):
        return None
    import pyarrow.parquet as pq

    try:
        return set(pq.read_schema(first).names)
    except Exception as exc:  # pyarrow raises several types for an unreadable footer
        message = f"cannot read parquet data: {first}: {read_error_message(exc)}"
        raise JobError(message, EXIT_DATA) from exc


def dask_parquet_order(files: list[str]) -> list[str]:
    """Parquet ``files`` in the order ``dd.read_parquet`` reads them, which takes the
    columns and their types from the first: sorted by ``dask.utils.natural_sort_key``
    (``f9`` before ``f10``), whatever the order given, of the paths as fsspec gives them
    to Dask: a local path absolute (``fsspec.implementations.local.make_path_posix``, as
    ``LocalFileSystem`` strips a path), so that relative and absolute paths given together
    sort as Dask sorts them; a remote one as given (one protocol for all: the same order
    as without it)."""
    from dask.utils import natural_sort_key
    from fsspec.core import split_protocol
    from fsspec.implementations.local import make_path_posix

    def key(f: str):
        protocol, path = split_protocol(f)
        if protocol in (None, "file", "local"):
            return natural_sort_key(make_path_posix(path).rstrip("/"))
        return natural_sort_key(f)

    return sorted(files, key=key)


def parquet_rows(files: list[str], fmt: str) -> int | None:
    """The rows of local Parquet ``files`` as their footers count them, before any is
    dropped; None for other input or a footer that cannot be read (the read of the data
    names it).  Each footer is :func:`~dmixed.stats.inputs.local_footer`'s: read once
    a command with the fingerprint's and ``read_data``'s."""
    if fmt != "parquet" or any("://" in f or not os.path.isfile(f) for f in files):
        return None
    from .stats.inputs import parquet_row_count

    try:
        counts = [parquet_row_count(f) for f in files]
    except Exception:  # noqa: BLE001 - pyarrow raises several types for a damaged footer
        return None
    return None if any(n is None for n in counts) else sum(n for n in counts if n is not None)


def _read_csv_input(job: Job, files: list[str], model: dict, saved: dict):
    options = job.storage_options or None
    headers = [csv_header(f, options) for f in files]
    everywhere = set.intersection(*map(set, headers)) if headers else set()
    labels = sorted(label_columns(model) & everywhere)
    types = {c: saved[c] for c in labels if c in saved and saved[c] == "text"}
    # the one rule of label_type, whatever the saved type: numbers meet saved numbers
    # by value (checkpoint_merge), text is refused where numbers are saved
    types.update(label_types(files, [c for c in labels if c not in types], options))
    _refuse_unlike_saved(files, types, saved, options)
    read_as = {"int": "int64", "whole": "float64", "float": "float64"}
    dtype = {c: read_as.get(t, object) for c, t in types.items()}
    na = missing_tokens(set().union(*headers), label_columns(model))
    ddf = _read_csv(files, options, dtype=dtype, **na)
    # whole numbers below 2**53 of the group column: exact as int64 (label_type); the
    # levels of a C() column stay float64, as pandas reads them (``C(site)[T.2.0]``)
    whole = {c: "int64" for c, t in types.items() if t == "whole" and c == model.get("groups")}
    if whole:
        ddf = ddf.astype(whole)
    # the model reads numbers as float64 whatever the files give, and Dask infers a
    # column's type from the first file's first rows: whole numbers there, decimals in
    # another file would be refused
    as_float = [c for c, t in ddf.dtypes.items() if t.kind in "iu" and c not in types]
    if as_float:
        ddf = _read_csv(files, options, dtype={**dtype, **dict.fromkeys(as_float, "float64")}, **na)
        if whole:
            ddf = ddf.astype(whole)
    return ddf


def _not_plain_integer(values: pd.Series) -> np.ndarray:
    return ~values.str.fullmatch(_PLAIN_INTEGER).fillna(False).to_numpy(dtype=bool)


def _missing(values: pd.Series) -> np.ndarray:
    return values.isna().to_numpy()


#: what a data error says of one column → what makes a CSV value the culprit, its
#: words, the exit status
_CULPRITS = (
    (r"missing values in column '([^']+)'", _missing, "first missing value", EXIT_DATA),
    (
        r"column '([^']+)' holds (?:text|str values|values that are not numbers)",
        not_a_number,
        "first text",
        EXIT_DATA,
    ),
)


def culprit_of_message(job: Job, message: str) -> tuple[str, int] | None:
    """``("FILE line N holds 'V' (first text in column 'C')", exit status)`` for a data
    error of CSV input about one column (missing values: ``... holds no value (first
    missing value in column 'C')``, text where numbers are read: 3), the words that an
    error leads with; None for another error or input, or where no culprit is found."""
    files = input_files(job)
    if input_format(job, files) != "csv":
        return None
    for pattern, bad, what, status in _CULPRITS:
        found = re.search(pattern, message)
        if found:
            column = found.group(1)
            label = column in label_columns(job.model_dump())
            where = csv_culprit(files, column, bad, job.storage_options, label)
            return (f"{where} ({what} in column {column!r})", status) if where else None
    return None


# ---------------------------------------------------------------------------
# errors of reading
# ---------------------------------------------------------------------------


def files_named(job: Job, message: str, full_paths: bool = False) -> str:
    """The files of a multi-file input that a column problem (the column quoted in
    ``message``) comes from, as ``"; in FILE: ..."`` (empty when none is found); with
    ``full_paths``, local files by their full path, as a partition's error names its own."""
    from .design.file_schemas import files_in_message

    files = input_files(job)
    fmt = input_format(job, files)
    return files_in_message(files, fmt, message, job.storage_options, full_paths=full_paths)


def files_lacking(job: Job, names: list[str], shown: int = 5, numbers: Collection[str] = ()) -> str:
    """``"; in FILE: no column 'C'"`` for each input file (up to ``shown``) that lacks a
    column of ``names`` (empty when none does, or none can be read): the columns a saved
    model reads that new rows of ``update`` lack, in one file or in every file.  A column
    of ``numbers`` that a file declares with a type other than a number (a Parquet
    schema's ``string``; a CSV file without rows declares none) is named too:
    ``"; in FILE: column 'C' is string, not a number"``."""
    from .design.file_schemas import file_columns, type_shown

    files = input_files(job)
    fmt = input_format(job, files)
    lines = []
    for f in files:
        try:
            columns = file_columns(f, fmt, job.storage_options)
        except Exception:  # noqa: BLE001 (pyarrow, fsspec and pandas raise many types)
            continue
        lines += [f"{f}: no column {name!r}" for name in names if name not in columns]
        lines += [
            f"{f}: column {name!r} is {type_shown(columns[name])}, not a number"
            for name in numbers
            if columns.get(name) is not None and not pd.api.types.is_numeric_dtype(columns[name])
        ]
    more = f"; and {len(lines) - shown} more" if len(lines) > shown else ""
    return "".join(f"; in {line}" for line in lines[:shown]) + more


def is_read_error(exc: BaseException) -> bool:
    """Errors of reading the data (raised during the data pass, possibly on a worker)."""
    if isinstance(exc, (ConnectionError, TimeoutError, DmixedError)):
        return False  # a DmixedError that is an OSError too: a refused path
    import pyarrow

    kinds = (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, pyarrow.ArrowException)
    return isinstance(exc, kinds) or str(exc).startswith(CSV_DTYPES)


def read_error_message(exc: BaseException) -> str:
    """A reader's error in one line that keeps what it says of columns and lines (dask's
    CSV type mismatch is a table: each column, the type found and the one expected)."""
    text = str(exc)
    if not text.startswith(CSV_DTYPES):
        return one_line(text) or repr(exc)
    return csv_types_message(text)
