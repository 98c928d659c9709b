"""Errors of the data pass worded for the whole data, not the partition that raised.

:func:`rows_checked` refuses too few rows for the model from the partials tasks' counts,
in the graph, before the tree converts the partials (a padded random design of ``r``
columns converts with a matrix of ``(r²/2 + r·k)²`` values: gigabytes at a few hundred
columns, where the in-process fit refuses the rows with a message).

A task of the data pass stops at the first partition with missing values
(``missing="raise"``), with that partition's counts.  On that error path only,
:func:`missing_values_total` reads every partition once more and counts the missing
rows of each used column, so the message is the in-process one for the same data,
with the files (or partitions) that hold them.
"""

from __future__ import annotations

import dask

from ...design.messages import check_enough_rows, fixed_factors
from ...design.origin import partition_files
from ...design.prepare import missing_counts, missing_values_error, needed_columns
from ...errors import DataError, SpecError
from ...kernels.pages import paged
from ...stats.packed import GLOBAL_HEAD
from .progress import gather


def rows_checked(p: int, k_cov: int, partial: bool, globs: list, reports: list, func, *args):
    """``func(*args)`` (the task that makes the columns' map every partial is converted
    to) once the rows of the data pass are enough for ``p`` fixed effects and ``k_cov``
    covariance parameters (:func:`~dmixed.design.messages.check_enough_rows`, the
    in-process message); ``func`` None: ``args[0]`` (a map given).

    ``partial``: the rows are a part of the data whose statistics are added to others'
    (``dmixed update``'s new files): their count is not checked, the fit of the sum
    checks it (six new rows of groups already saved are not too few).

    The rows are counted from what every partials task returns: its packed global sums
    ``globs`` (the rows it summed, after dropping missing values) and its exchange
    report ``reports`` (``"routed_rows"``: the rows it sent to their bucket's owner
    instead, :func:`~dmixed.engines.dask.routing.exchange_report`).  No rows at all are
    left to the pass's own message ("no data").

    Raises
    ------
    DataError
        Too few rows.
    """
    n_at = GLOBAL_HEAD.index("n")
    n = int(sum(g[n_at] for g in globs)) + sum(int(r["routed_rows"]) for r in reports)
    if n and not partial:
        check_enough_rows(n, p, k_cov)
    return args[0] if func is None else func(*args)


def rows_named(counts: tuple, spec, ddf) -> DataError:
    """The refusal of too few rows ``counts`` (``DataError.too_few_rows``, from
    :func:`rows_checked` on the cluster) naming the factors of ``ddf`` whose levels
    make the fixed effects too many, as the in-process message does."""
    n, p, k_cov, at_most = counts
    try:
        check_enough_rows(n, p, k_cov, at_most=at_most, factors=fixed_factors(spec, ddf.dtypes))
    except DataError as err:
        return err
    raise AssertionError(f"{n} rows were refused for {p} + {k_cov} parameters")


def partition_missing_counts(pdf, spec) -> dict:
    """``{column: rows missing}`` of one partition (empty for no rows)."""
    if len(pdf) == 0:
        return {}
    return missing_counts(spec, pdf)


def missing_values_total(ddf, spec, client, scheduler: str, err: DataError) -> DataError:
    """The missing-value error of the whole collection (every used column's count, added
    over the partitions), from one more read of ``ddf``: on ``client`` when given, else
    with Dask's local ``scheduler``; ``err`` (one partition's) if none is found now."""
    count = dask.delayed(paged(partition_missing_counts), pure=True)
    tasks = [count(part, spec) for part in ddf.to_delayed(optimize_graph=True)]
    if client is None:
        counts = dask.compute(*tasks, scheduler=scheduler)
    else:
        counts = gather(client, client.compute(tasks), "counting missing values")
    totals = {c: sum(k.get(c, 0) for k in counts) for c in needed_columns(spec)}
    found = {c: k for c, k in totals.items() if k}
    if not found:
        return err
    files = partition_files(ddf)
    holding = {c: [i for i, k in enumerate(counts) if k.get(c)] for c in found}
    where = {c: _places(numbers, files, len(counts)) for c, numbers in holding.items()}
    return missing_values_error(found, where)


def _places(numbers: list[int], files: list[str | None], n_parts: int, shown: int = 3) -> str:
    """Where the partitions ``numbers`` (of ``n_parts``) come from, in words: their
    files where Dask's Parquet reader reads them (``files``,
    :func:`~dmixed.design.origin.partition_files`), else their numbers (``"in partitions
    0, 4 of the Dask DataFrame"``, ``"in all 4 partitions ..."``)."""
    named = list(dict.fromkeys(files[i] for i in numbers if i < len(files) and files[i]))
    if named:
        more = f" and {len(named) - shown} more files" if len(named) > shown else ""
        return "in " + ", ".join(named[:shown]) + more
    if len(numbers) == n_parts > 1:
        return f"in all {n_parts} partitions of the Dask DataFrame"
    more = f" and {len(numbers) - shown} more" if len(numbers) > shown else ""
    word = "partition" if len(numbers) == 1 else "partitions"
    listed = ", ".join(map(str, numbers[:shown]))
    return f"in {word} {listed}{more} of the Dask DataFrame"


def config_choice(key: str, choices: tuple) -> str:
    """The Dask config value of ``key`` (a ``dmixed.`` key read on the driver: the
    workers do not see its config), lower case, one of ``choices`` (the first its
    default).

    Raises
    ------
    SpecError
        Any other value.
    """
    mode = str(dask.config.get(key, choices[0])).lower()
    if mode not in choices:
        raise SpecError(f"dask config '{key}' must be one of {choices}")
    return mode
