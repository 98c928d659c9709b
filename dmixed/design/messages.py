"""Message helpers shared by the design modules: plain text, counts, close matches."""

from __future__ import annotations

import difflib
import re

__all__ = [
    "check_enough_rows",
    "check_present",
    "clean_message",
    "plural",
    "shown",
    "suggest",
    "unknown_columns",
]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def clean_message(msg: object) -> str:
    """``str(msg)`` on one line, without formulaic's colour codes and markers."""
    text = _ANSI.sub("", str(msg)).replace("⧛", "").replace("⧚", "")
    return " ".join(text.split())


#: the characters of a long text a message keeps at each end (:func:`shown`)
SHOWN_ENDS = 200


def shown(text: str) -> str:
    """``repr(text)`` for a message, cut in the middle when long: a formula of thousands
    of terms echoed whole is a line of kilobytes that hides the reason after it.  The
    first and last :data:`SHOWN_ENDS` characters are kept, with the length."""
    if len(text) <= 2 * SHOWN_ENDS + 40:
        return repr(text)
    head, tail = text[:SHOWN_ENDS], text[-SHOWN_ENDS:]
    return f"{head!r} ... {tail!r} ({len(text)} characters)"


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
    from ..errors import DataError

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


def check_enough_rows(n: int, p: int, k_cov: int) -> None:
    """Refuse ``n`` rows for ``p`` fixed effects and ``k_cov`` covariance parameters:
    the fit estimates ``p + k_cov + 1`` numbers (the residual variance too), so it
    needs ``n > p + k_cov`` rows.  The one owner of the message, for rows in memory and
    for the partial sums of a Dask data pass alike.

    Raises
    ------
    DataError
        ``n <= p + k_cov``.
    """
    from ..errors import DataError

    if n <= p + k_cov:
        raise DataError(
            f"too few rows: {plural(n)} for {plural(p, 'fixed effect')} and "
            f"{plural(k_cov, 'covariance parameter')} (plus the residual variance)"
        )
