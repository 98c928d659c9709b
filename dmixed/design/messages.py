"""Message helpers shared by the design modules: plain text, counts, close matches."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping

from ..errors import BadValuesError, DataError, shorten

__all__ = [
    "check_design_fits",
    "check_enough_rows",
    "check_terms_within_rows",
    "check_present",
    "clean_message",
    "fixed_factors",
    "numbers_as_text",
    "plural",
    "response_not_numbers",
    "shown",
    "suggest",
    "unknown_columns",
]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def clean_message(msg: object) -> str:
    """``str(msg)`` on one line, without formulaic's colour codes and markers."""
    text = _ANSI.sub("", str(msg)).replace("⧛", "").replace("⧚", "")
    return " ".join(text.split())


def shown(text: str) -> str:
    """``repr(text)`` for a message, cut in the middle when long: a formula of thousands
    of terms echoed whole is a line of kilobytes that hides the reason after it.  The
    first and last :data:`~dmixed.errors.SHOWN_ENDS` characters are kept, with the
    length (:func:`dmixed.errors.shorten`)."""
    return shorten(text, repr)


def plural(k: int, word: str = "row") -> str:
    """``"1 row"``, ``"3 rows"``."""
    return f"{k} {word}" if k == 1 else f"{k} {word}s"


def suggest(name: str, candidates) -> str:
    """A message tail naming the close matches of ``name``, else the candidates."""
    cands = [str(c) for c in candidates]
    close = difflib.get_close_matches(str(name), cands, n=3, cutoff=0.5)
    if close:
        return "; close matches: " + ", ".join(repr(c) for c in close)
    return "; " + _available(cands)


def _available(cands: list[str]) -> str:
    listed = ", ".join(repr(c) for c in cands[:20])
    more = ", ..." if len(cands) > 20 else ""
    return f"available columns: {listed}{more}"


#: the unknown column names a message names one by one (:func:`unknown_columns`)
NAMED_UNKNOWN = 5


def unknown_columns(names, candidates) -> list[str]:
    """Message parts for column names absent from ``candidates``: each of the first
    :data:`NAMED_UNKNOWN` with its close matches, or, without any, named together with
    the available columns listed once; the rest counted.  A formula of hundreds of
    unknown names gave the list of available columns once per name (kilobytes)."""
    cands = [str(c) for c in candidates]
    names = list(dict.fromkeys(str(n) for n in names))
    parts, alone = [], []
    for name in names[:NAMED_UNKNOWN]:
        close = difflib.get_close_matches(name, cands, n=3, cutoff=0.5)
        if close:
            parts.append(f"unknown column {name!r}; close matches: " + ", ".join(map(repr, close)))
        else:
            alone.append(name)
    if alone:
        what = "unknown column " if len(alone) == 1 else "unknown columns "
        parts.append(what + ", ".join(map(repr, alone)) + "; " + _available(cands))
    if len(names) > NAMED_UNKNOWN:
        parts.append(f"and {len(names) - NAMED_UNKNOWN} more unknown names")
    return parts


def check_present(wanted, available) -> None:
    """Refuse ``wanted`` columns that are not among ``available``, naming them and the
    close matches.

    Raises
    ------
    DataError
        Some of ``wanted`` are absent.
    """
    present = set(available)
    absent = [c for c in wanted if c not in present]
    if absent:
        err = DataError(
            "column(s) not found in the data: "
            + ", ".join(repr(c) for c in absent)
            + suggest(absent[0], available)
        )
        err.absent = absent  # the command line names the input files lacking them
        raise err


def check_enough_rows(
    n: int, p: int, k_cov: int, *, at_most: bool = False, factors: Mapping | None = None
) -> None:
    """Refuse ``n`` rows for ``p`` fixed effects and ``k_cov`` covariance parameters:
    the fit estimates ``p + k_cov + 1`` numbers (the residual variance too), so it
    needs ``n > p + k_cov`` rows.  The one owner of the message, for rows in memory and
    for the partial sums of a Dask data pass alike.

    Raises
    ------
    DataError
        ``n <= p + k_cov``.  ``at_most``: ``n`` counts the rows before those with
        missing values are dropped (the check before the design is built).
        ``factors``: ``{column: (levels, dtype, numbers)}`` of the factors of the fixed
        part (:func:`fixed_factors`); the message names those whose levels alone leave
        too few rows, and says where such a column is numbers read as text
        (``numbers``: one level per distinct value).
    """
    if n <= p + k_cov:
        err = DataError(
            f"too few rows: {'at most ' if at_most else ''}{plural(n)} for "
            f"{plural(p, 'fixed effect')} and "
            f"{plural(k_cov, 'covariance parameter')} (plus the residual variance)"
            + _levels_cause(n, p, k_cov, factors or {})
        )
        # a task of the Dask data pass knows the counts, the driver the columns' dtypes
        err.too_few_rows = (n, p, k_cov, at_most)
        raise err


def fixed_factors(spec, dtypes) -> dict:
    """``{column: (levels, dtype, numbers)}`` of the factor columns the fixed-effects
    formula of ``spec`` reads (a :class:`~dmixed.design.spec.ModelSpec`), for
    :func:`check_enough_rows`; ``dtypes``: the data's dtypes by column (a mapping, or
    a pandas Series of them).  ``numbers``: the column was read as text and every one
    of its levels reads as a finite number (:func:`numbers_as_text`)."""
    return {
        c: (len(spec.levels[c]), dtypes[c], numbers_as_text(spec.levels[c], dtypes[c]))
        for c in spec.fixed_columns or ()
        if c in spec.levels and c in dtypes
    }


def numbers_as_text(levels, dtype) -> bool:
    """Whether a factor is numbers read as text.

    Parameters
    ----------
    levels : sequence
        The factor's level list (not its rows).
    dtype : dtype or str
        The column's dtype as read.

    Returns
    -------
    bool
        True where the dtype is text (object or string) and every level is a ``str``
        that reads as a finite number (``pd.to_numeric``); a factor of names (cities,
        say), of booleans or of bytes is not.
    """
    import numpy as np
    import pandas as pd

    levels = list(levels)
    if not _is_text(dtype) or not levels or not all(isinstance(v, str) for v in levels):
        return False
    values = pd.to_numeric(pd.Series(levels, dtype=object), errors="coerce")
    return bool(np.isfinite(values.to_numpy(dtype=float)).all())


def _is_text(dtype) -> bool:
    return str(dtype) in ("object", "str", "string") or "string" in str(dtype)


def _levels_cause(n: int, p: int, k_cov: int, factors: Mapping) -> str:
    """The factors whose levels make ``p`` fixed effects too many for ``n`` rows
    (without that factor's columns the rows would be enough), worded for
    :func:`check_enough_rows`; empty where none does."""
    named = [
        (c, k, dtype, numbers)
        for c, (k, dtype, numbers) in factors.items()
        if k > 1 and n > p - (k - 1) + k_cov
    ]
    if not named:
        return ""
    parts = []
    for c, k, dtype, numbers in named:
        parts.append(
            f"column {c!r} is a factor of {plural(k, 'level')}"
            + (
                f" because it was read as text (dtype {dtype}): numbers written as text, "
                "from Dask's conversion of an object column (Decimal, say) or from files "
                "that hold the column as text in one and as numbers in another, give one "
                "level per distinct value; convert it to numbers"
                if numbers
                else ""
            )
        )
    return "; " + "; ".join(parts)


def check_terms_within_rows(formula: str, terms: int, k_cov: int, rows: int) -> None:
    """Refuse a formula of ``terms`` distinct terms (at least one fixed-effect column
    each) on at most ``rows`` rows, before formulaic parses it: its parse costs time and
    memory that grow with the square of the number of terms, and the design it leads to
    could not be fitted anyway (:func:`check_enough_rows`).

    Raises
    ------
    DataError
        ``rows <= terms + k_cov``.
    """
    if rows <= terms + k_cov:
        raise DataError(
            f"formula {shown(formula)}: too few rows: at most {plural(rows)} for at least "
            f"{plural(terms, 'fixed effect')} and "
            f"{plural(k_cov, 'covariance parameter')} (plus the residual variance); "
            "refused before its design is built"
        )


def _size(nbytes: int) -> str:
    """Bytes in GiB, or MiB below one GiB."""
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


#: the files that hold a container's memory limit: cgroup v2, then v1 (``max`` or a
#: number beyond the machine's memory where there is none)
CGROUP_MEMORY_LIMITS = (
    "/sys/fs/cgroup/memory.max",
    "/sys/fs/cgroup/memory/memory.limit_in_bytes",
)


def physical_memory(limit_files=CGROUP_MEMORY_LIMITS) -> int | None:
    """The memory this process may use, in bytes: the machine's, or the cgroup's limit
    where it is lower (None where the system says neither).

    Parameters
    ----------
    limit_files : sequence of str
        Files read for a limit, each holding a number of bytes (any other content, or
        a file that cannot be read, sets none).

    Returns
    -------
    int or None
        The least of the machine's memory and the limits found.
    """
    import os

    sizes = []
    try:
        sizes.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        pass
    for path in limit_files:
        try:
            with open(path, encoding="ascii") as f:
                text = f.read().strip()
        except (OSError, ValueError):
            continue
        if text.isdigit():
            sizes.append(int(text))
    return min(sizes) if sizes else None


def check_design_fits(formula: str, n: int, p: int, *, exact: bool, prototype: bool) -> None:
    """Refuse a fixed-effects design of ``n`` rows and ``p`` columns (float64; at least
    ``p`` unless ``exact``) larger than this machine's memory, before it is built: the
    build would fail or swap after the time it takes.  ``prototype``: the rows are the
    frame of one row per level that the model spec is learnt on, not the data's.

    Raises
    ------
    DataError
        ``8 n p`` bytes exceed the physical memory.
    """
    memory = physical_memory()
    need = 8 * n * p
    if memory is None or need <= memory:
        return
    rows = f"one row per level of its factor of most levels ({n})" if prototype else plural(n)
    advice = (
        "a factor of fewer levels"
        if prototype
        else "Dask data (a partition's design is built at a time) or fewer columns"
    )
    raise DataError(
        f"formula {shown(formula)}: its fixed-effects design of {rows} and "
        f"{'' if exact else 'at least '}{plural(p, 'column')} would take "
        f"{_size(need)}, more than this machine's {_size(memory)} of memory; use {advice}"
    )


def decimal_term(column: str) -> BadValuesError:
    """The error for a column of decimal numbers (Python ``Decimal`` objects, or an Arrow
    decimal type) that a term reads outside ``C()``: statsmodels (patsy) makes a factor
    of an ``object`` column of Decimals, one level per value, and ``pd.read_parquet``
    reads a Parquet decimal column as such; read as numbers it would be another model.
    One message for both storages: ``pd.read_parquet`` and ``dd.read_parquet`` of one
    file are refused alike."""
    return BadValuesError(
        f"column {column!r} holds decimal numbers (Decimal values or an Arrow decimal "
        "type), which statsmodels' formulas (patsy) read as a factor, one level per "
        "value, and pd.read_parquet gives for a Parquet decimal column: convert the "
        "column first, to floats to use its values "
        f"(data[{column!r}] = data[{column!r}].astype(float); in Parquet files, store it "
        f"as float64), or write C({column}) to use it as a factor, as statsmodels fits it"
    )


def response_not_numbers(
    column: str, values=None, example=None, dtype=None, rows: bool = True
) -> BadValuesError:
    """The refusal of a response column that does not hold numbers (the one owner of its
    words, for every storage): ``object`` values of several Python types (numbers and a
    stray ``'n/a'``, say), text, or a text dtype.  A response is numbers, so the hint is
    ``pd.to_numeric(..., errors="coerce")`` (without ``errors``, pandas refuses the same
    text) and ``missing="drop"``, never labels.

    ``values``: the column's pandas Series, whose first value that is not a number is
    named with its row's index label (``rows``: False, a Series whose labels are not the
    user's, none) and the count of such values; else ``example``, a
    value that is not a number (a Dask partition's, with no row at hand); ``dtype``, the
    column's dtype, named where no value is.

    Returns
    -------
    BadValuesError
        Naming the column (and a value, and its row where ``values`` is given).
    """
    import numpy as np
    import pandas as pd

    found = ""
    if values is not None:
        numeric = pd.to_numeric(values, errors="coerce")
        bad = (values.notna() & numeric.isna()).to_numpy()
        if bad.any():
            # by position: an index label may repeat, where values[label] is a Series
            pos = int(np.flatnonzero(bad)[0])
            row = f" in the row with index {_plain_label(values.index[pos])}" if rows else ""
            found = (
                f": {_py_value(values.iloc[pos])!r}{row} "
                f"({plural(int(bad.sum()), 'such value')} in {plural(len(values))})"
            )
            example = None
    if example is not None:
        found = f" (such as {_py_value(example)!r})"
    elif not found and dtype is not None:
        found = f" (dtype {dtype})"
    elif not found and values is not None:  # numbers of several types beside booleans, say
        found = f" ({', '.join(sorted({type(v).__name__ for v in values.dropna()}))})"
    return BadValuesError(
        f"the response column {column!r} holds values that are not numbers{found}; "
        f"a response must be numeric: make it so with pd.to_numeric(df[{column!r}], "
        "errors='coerce') (values that are not numbers become NaN) and fit with "
        "missing='drop' to leave those rows out, or correct those values"
    )


def _py_value(value):
    """``value`` as the Python scalar it stands for (``np.int64(4)``: ``4``), for messages."""
    return value.item() if hasattr(value, "item") and getattr(value, "ndim", 1) == 0 else value


def _plain_label(label) -> str:
    """An index label as a user writes it: ``4``, ``'a'``, ``(2, 4)`` for a MultiIndex's
    tuple (not ``(np.int64(2), np.int64(4))``)."""
    if isinstance(label, tuple):
        inner = ", ".join(_plain_label(v) for v in label)
        return f"({inner},)" if len(label) == 1 else f"({inner})"
    return repr(_py_value(label))
