"""The one look at the whole data that a spec needs: the global levels of the factor
columns, the Python types held by ``object`` columns, the row counts and the response's
range.

On pandas the frame is at hand.  On Dask one ``dask.compute`` reads the factor columns
(categoricals too: their levels are the declared categories that occur, as in process;
all used columns with ``missing="drop"``, because levels must come from the rows kept;
with neither a factor nor an ``object`` column nothing is read, ``missing="drop"`` or
not: the data pass counts the rows and those dropped),
the ``object`` columns (their types decide how they are read, the same whatever the
partitioning: each partition reports the set of types it holds), plus the response
column for the empty / constant-response checks.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import BadValuesError, DataError
from .dtypes import CATEGORICAL, check_plain_values, object_types, py_scalars, to_float
from .levels import (
    ArrayLevels,
    categorical_codes,
    categorical_levels,
    coded_integers,
    coded_text,
    present_levels,
    sorted_levels,
    text_array,
    unique_values,
)
from .messages import response_not_numbers
from .missing import rows_with_missing
from .origin import in_partition, located
from .partitions import (
    check_column_kinds,
    check_persisted,
    check_text_conversion,
    compute_located,
    compute_with,
    current_client,
    missing_column_error,
    select_columns,
)

__all__ = [
    "LevelScan",
    "PartitionSummary",
    "ScanPlan",
    "SummaryMerge",
    "dask_scan",
    "is_dask",
    "locate_text",
    "merged_summary",
    "object_columns",
    "pandas_scan",
]


@dataclass
class ScanPlan:
    """What the scan reads: ``level_cols`` (factor columns, whose distinct values are
    the levels), ``object_cols`` (used columns of ``object`` dtype, whose Python types
    decide how they are read, :func:`~dmixed.design.dtypes.object_types`),
    ``c_columns`` (columns inside ``C()``: an object column of numbers needs its levels
    only there), ``columns_used`` and ``missing`` (with ``"drop"`` the scan sees the rows
    kept), ``resp_col`` (the response, for its range; None: not read)."""

    level_cols: list[str]
    object_cols: list[str]
    c_columns: set
    columns_used: list[str]
    missing: str
    resp_col: str | None = None
    #: columns some term reads outside ``C()`` (:meth:`ParsedFormulas.value_columns`)
    value_columns: set = field(default_factory=set)

    @property
    def drop(self) -> bool:
        return self.missing == "drop"


@dataclass
class LevelScan:
    """What the scan found: ``levels`` of each factor column; ``types`` of each object
    column; ``n_total`` rows and ``n_kept`` after dropping missing values, and the
    response's finite ``response_range`` (each None when the scan did not read the
    data); ``arrays``: the levels of integer columns as the array they were found as
    (what a variance component's plan keeps, without a conversion of the list; their
    levels, those of Arrow-backed text columns and of categoricals of ascending integers
    are :class:`~dmixed.design.levels.ArrayLevels`, listed when shown); ``codes``: the
    codes of every row of a pandas frame's label columns among their levels, where found
    with them (Arrow-backed text; categoricals whose levels are their categories:
    :func:`~dmixed.design.levels.level_codes`' values; integers inside ``C()`` where no
    row is dropped: :func:`~dmixed.design.levels.level_positions`' values), what
    preparing that very frame takes instead of a look-up."""

    levels: dict[str, list]
    n_total: int | None = None
    n_kept: int | None = None
    response_range: tuple[float, float] | None = None
    types: dict[str, set] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    codes: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class PartitionSummary:
    """The scan of one Dask partition (computed on a worker)."""

    n: int
    n_kept: int
    levels: dict[str, list] = field(default_factory=dict)
    range: tuple[float, float] | None = None
    types: dict[str, set] = field(default_factory=dict)
    categories: dict[str, list] = field(default_factory=dict)


def is_dask(obj) -> bool:
    """Whether ``obj`` is a Dask collection (DataFrame, Series, Array).

    Decided by the type's module, so Dask is never imported for pandas or numpy input.
    The one test of this kind in dmixed: the model, the design and prediction use it.
    """
    return (type(obj).__module__ or "").startswith("dask")


def object_columns(frame: pd.DataFrame, columns, dtypes=None) -> list[str]:
    """The columns of ``columns`` whose dtype is ``object`` (in ``frame`` or a meta;
    ``dtypes``: its ``dtypes`` where the caller has them)."""
    if dtypes is None:  # one Series of dtypes, not a column (Series) per name
        dtypes = frame.dtypes
    return [c for c in columns if dtypes[c] == np.dtype(object)]


def _kept_rows(pdf: pd.DataFrame, kinds, plan: ScanPlan) -> tuple[pd.DataFrame, np.ndarray | None]:
    """The rows kept and their mask (None: all, the frame itself)."""
    if plan.drop and len(pdf):
        any_missing = rows_with_missing(pdf, kinds, plan.columns_used)
        if any_missing.any():
            return pdf[~any_missing], ~any_missing
    return pdf, None


def _distinct(s: pd.Series, types: set | None, c: str, plan: ScanPlan) -> list:
    """Distinct values of a factor column; none for an object column of numbers used
    outside ``C()`` (it will be read as numbers: its values are not levels)."""
    if types is not None and types <= {"int", "float", "Decimal"} and c not in plan.c_columns:
        return []
    return unique_values(s)


def _object_types(pdf: pd.DataFrame, plan: ScanPlan) -> dict[str, set[str]]:
    """The Python types of each object column, nested values refused before their
    levels are sought (a struct column's dicts raised "unhashable type: 'dict'")."""
    types = {c: object_types(pdf[c]) for c in plan.object_cols}
    for c, found in types.items():
        check_plain_values(found, c)
    return types


def pandas_scan(df: pd.DataFrame, kinds: dict, plan: ScanPlan) -> LevelScan:
    """Levels, object types and row counts of a pandas frame (no response range); the
    codes of its label columns where found with their levels."""
    kept, mask = _kept_rows(df, kinds, plan)
    types = _object_types(kept, plan)
    scan = LevelScan({}, len(df), len(kept), None, types)
    levels = scan.levels
    for c in plan.level_cols:
        s = kept[c]
        if isinstance(s.dtype, np.dtype) and s.dtype.kind in "iu":
            # numbers in C(): no missing value; the codes of every row where all are kept
            scan.arrays[c], codes = coded_integers(s.to_numpy())
            levels[c] = ArrayLevels(scan.arrays[c])  # (listed as ints when shown)
            if codes is not None and mask is None:
                scan.codes[c] = codes
            continue
        text = coded_text(df[c], mask) if kinds[c] == CATEGORICAL else None
        if text is not None:  # Arrow-backed text: found, sorted and coded by Arrow
            scan.codes[c] = text.codes  # (of every row of the frame)
            levels[c] = ArrayLevels(text.levels)  # (listed as str when shown)
            continue
        if kinds[c] == CATEGORICAL and isinstance(s.dtype, pd.CategoricalDtype):
            levels[c] = present_levels(s)
            codes = categorical_codes(df[c], levels[c])  # (every row of the frame)
            if codes is not None:
                scan.codes[c] = codes
            continue
        levels[c] = sorted_levels(_distinct(s, types.get(c), c, plan))
    return scan


def summarize_partition(pdf, kinds, plan: ScanPlan, to_scan, number=None) -> PartitionSummary:
    """Row counts, object types, distinct values of ``to_scan`` and the response's range
    of one partition (rows with missing values dropped first with ``missing="drop"``),
    partition ``number``: its columns checked against the kinds the collection declares
    (:func:`~dmixed.design.partitions.check_column_kinds`); a
    :class:`~dmixed.errors.DataError` names the partition."""
    try:
        return _summary(pdf, kinds, plan, to_scan)
    except KeyError as exc:
        err = missing_column_error(exc, number)
        if err is None:
            raise
        raise err from None
    except DataError as err:
        raise in_partition(err, number) from None


def _summary(pdf, kinds, plan: ScanPlan, to_scan) -> PartitionSummary:
    declared = {c: kinds[c] for c in pdf.columns if c in kinds and c not in plan.object_cols}
    check_column_kinds(pdf, declared)
    n = len(pdf)
    pdf = _kept_rows(pdf, kinds, plan)[0]
    out = PartitionSummary(n=n, n_kept=len(pdf))
    out.types = _object_types(pdf, plan)
    for c in to_scan:
        out.levels[c] = _distinct(pdf[c], out.types.get(c), c, plan)
        if isinstance(pdf[c].dtype, pd.CategoricalDtype):
            out.categories[c] = py_scalars(pdf[c].dtype.categories)
    if plan.resp_col is not None and len(pdf):
        try:
            v = to_float(pdf[plan.resp_col], plan.resp_col)
        except BadValuesError as err:  # a response is numbers: its own words, its hint
            # the first value pandas cannot read as a number (to_float's example may be
            # number-like text, '1.243'); the column's dtype where every value reads
            col = pdf[plan.resp_col]
            try:
                bad = (col.notna() & pd.to_numeric(col, errors="coerce").isna()).to_numpy()
            except (TypeError, ValueError):
                bad = None
            if bad is None:
                example = getattr(err, "example", None)
                raise response_not_numbers(plan.resp_col, example=example) from None
            if bad.any():
                example = col.iloc[int(np.flatnonzero(bad)[0])]
                raise response_not_numbers(plan.resp_col, example=example) from None
            raise response_not_numbers(plan.resp_col, dtype=col.dtype) from None
        v = v[np.isfinite(v)]
        if v.size:
            out.range = (float(v.min()), float(v.max()))
    return out


def _declared_categories(ddf, meta, kinds, level_cols) -> dict[str, pd.CategoricalDtype]:
    """Label columns whose categories the Dask frame declares (not to be read)."""
    declared = {}
    for c in level_cols:
        s = meta[c]
        # dd.read_parquet reports Arrow dictionary columns as "known" categoricals with
        # no categories (each file has its own dictionary): those must be scanned
        if (
            kinds[c] == CATEGORICAL
            and isinstance(s.dtype, pd.CategoricalDtype)
            and ddf[c].cat.known
            and len(s.dtype.categories) > 0
        ):
            declared[c] = s.dtype
    return declared


#: What runs the scan's tasks over runs of partitions where the collection allows it
#: (the Dask engine's chains, passed in by the model: the design does not import the
#: engines): ``chains(ddf, kinds, plan, to_scan)`` → one delayed
#: :class:`PartitionSummary` per run of consecutive partitions, each the
#: :func:`merged_summary` of its partitions' :func:`summarize_partition`, in partition
#: order; None where the collection is read one task per partition.
ScanChains = Callable[..., list | None]


def dask_scan(
    ddf,
    meta,
    kinds,
    plan: ScanPlan,
    chains: ScanChains | None = None,
    client=None,
    reader: str | None = None,
) -> LevelScan:
    """Levels, object types, row counts and response range of a Dask frame, in at most
    one compute: one task per run of partitions where ``chains`` gives them
    (:data:`ScanChains`), else one task per partition.

    ``client``: the ``distributed.Client`` the compute runs on (None: Dask's default,
    the current client if any).  ``reader``: the public function the scan runs for
    (``"dmixed.mixedlm"``), named where the data are persisted on another scheduler
    than the one the scan runs on, or where it runs on none
    (:func:`~dmixed.design.partitions.check_persisted`, where the scan reads the data);
    None: only data that are gone are refused before the compute.

    Raises
    ------
    DataError
        As :func:`~dmixed.design.partitions.check_persisted`, before any read; a
        partition's bad values (named with its partition and file).
    """
    import dask

    check_persisted(ddf)
    check_text_conversion(ddf, plan.columns_used, plan.value_columns, plan.resp_col)
    declared = _declared_categories(ddf, meta, kinds, plan.level_cols)
    levels: dict[str, list] = {}
    # every factor column is read, declared categories too: the levels are the categories
    # that occur, as in process (a filtered hive dataset declares keys it no longer holds)
    to_scan = list(plan.level_cols)
    if not to_scan and not plan.object_cols:
        # nothing to learn before the data pass: no extra read (the data pass itself
        # finds empty data, no row left after dropping missing values and a constant
        # response, from the statistics; ``missing="drop"`` alone needs no levels)
        return LevelScan(levels)
    if reader is not None:  # the scan reads the data: on a scheduler that holds them
        check_persisted(ddf, client if client is not None else current_client(), reader=reader)
    also = [plan.resp_col] if plan.resp_col is not None else []
    also += plan.object_cols + (list(plan.columns_used) if plan.drop else [])
    read = list(dict.fromkeys([*to_scan, *also]))
    selected = select_columns(ddf, read)
    tasks = None if chains is None else chains(selected, kinds, plan, to_scan)
    if tasks is None:
        summarize = dask.delayed(summarize_partition)
        parts = selected.to_delayed()
        tasks = [summarize(p, kinds, plan, to_scan, i) for i, p in enumerate(parts)]
    results = compute_located(tasks, ddf, client)
    return _combine(results, levels, to_scan, declared, meta)


def locate_text(err: DataError, ddf, kinds, plan: ScanPlan, column: str, client=None) -> DataError:
    """``err``, a refusal of text among the numbers of ``column`` found on the whole
    data's levels (:func:`~dmixed.design.dtypes.check_numbers_as_text`), naming the
    first partition of ``ddf`` whose rows (those kept, with ``missing="drop"``) hold the
    text the message shows first (``err.example``), and its file
    (:func:`~dmixed.design.origin.located`), as a bad value found in one partition is
    named; ``err`` where none is found.  One compute of that column (and of the
    columns deciding which rows are kept), on this error's path only, on ``client``
    (None: Dask's default)."""
    import dask

    example = getattr(err, "example", None)
    if example is None:
        return err
    read = list(dict.fromkeys([column, *(plan.columns_used if plan.drop else [])]))
    holds = dask.delayed(_holds_value)
    parts = select_columns(ddf, read).to_delayed()
    found = compute_with([holds(p, kinds, plan, column, example) for p in parts], client)
    number = next((i for i, f in enumerate(found) if f), None)
    return err if number is None else located(in_partition(err, number), ddf)


def _holds_value(pdf: pd.DataFrame, kinds, plan: ScanPlan, column: str, value) -> bool:
    """Whether the kept rows of one partition hold ``value`` in ``column`` (as one of
    the levels the scan reads there)."""
    values = pd.Series(unique_values(_kept_rows(pdf, kinds, plan)[0][column]), dtype=object)
    return bool((values == value).any())


class SummaryMerge:
    """Consecutive partitions' summaries merged as they come (:meth:`add`, in partition
    order) into one the scan's combine reads as it reads theirs (:meth:`summary`): rows
    added, distinct values in order of first appearance (the first of equal values kept,
    as the combine's ``dict.fromkeys`` keeps it; the combine sorts them, or keeps the
    declared order), the types united, the widest range (the first of equal ends kept);
    a column's categories merged in order of first appearance where every partition
    with rows declares them, else left out (then the combine finds a partition with rows
    and none, as it would among the partitions themselves).  Each summary's values are
    read once, when it is added: what is held is not read again."""

    def __init__(self) -> None:
        self.n = 0
        self.n_kept = 0
        self.levels: dict[str, dict] = {}
        self.categories: dict[str, dict] = {}
        self.undeclared: set[str] = set()
        self.types: dict[str, set] = {}
        self.range: tuple[float, float] | None = None

    def add(self, s: PartitionSummary) -> None:
        """Merge the summary of the next partition (or run of partitions)."""
        rows_before = self.n > 0
        self.n += s.n
        self.n_kept += s.n_kept
        for c, vals in s.levels.items():
            # dict.update keeps the key already held where an equal one comes
            self.levels.setdefault(c, {}).update(zip(vals, itertools.repeat(None)))
        if s.n:
            self.undeclared.update(c for c in self.categories if c not in s.categories)
        for c, cats in s.categories.items():
            if c not in self.categories and rows_before:
                # an earlier partition with rows did not declare it
                self.undeclared.add(c)
            self.categories.setdefault(c, {}).update(zip(cats, itertools.repeat(None)))
        for c, t in s.types.items():
            self.types.setdefault(c, set()).update(t)
        if s.range is not None:
            if self.range is None:
                self.range = s.range
            else:
                lo = s.range[0] if s.range[0] < self.range[0] else self.range[0]
                hi = s.range[1] if s.range[1] > self.range[1] else self.range[1]
                self.range = (lo, hi)

    def summary(self) -> PartitionSummary:
        """The summaries added so far as one."""
        return PartitionSummary(
            n=self.n,
            n_kept=self.n_kept,
            levels={c: list(v) for c, v in self.levels.items()},
            range=self.range,
            types={c: set(t) for c, t in self.types.items()},
            categories={c: list(v) for c, v in self.categories.items() if c not in self.undeclared},
        )


def merged_summary(summaries: list[PartitionSummary]) -> PartitionSummary:
    """One summary of consecutive partitions' ``summaries`` (in partition order), which
    the scan's combine reads as it reads theirs (:class:`SummaryMerge`)."""
    merge = SummaryMerge()
    for s in summaries:
        merge.add(s)
    return merge.summary()


def _partition_categories(results, c: str, meta) -> pd.CategoricalDtype | None:
    """The categories the partitions declare, merged in order of first appearance (as
    ``pd.read_parquet`` unifies the dictionaries of the files it reads), where the
    collection declares none of its own (Arrow dictionaries: one per file)."""
    if not isinstance(meta[c].dtype, pd.CategoricalDtype):
        return None
    if not all(c in r.categories for r in results if r.n):
        return None
    merged = dict.fromkeys(itertools.chain.from_iterable(r.categories.get(c, []) for r in results))
    return pd.CategoricalDtype(list(merged), ordered=meta[c].dtype.ordered)


def _shipped(levels: list):
    """Text levels as an Arrow array beside their list (:class:`ArrayLevels`): the spec
    goes to every partition's task, which looks Arrow text up in that array (no array
    rebuilt from the list per task); other levels as they are."""
    if not levels or not isinstance(levels[0], str):
        return levels
    arr = text_array(levels)
    return levels if arr is None else ArrayLevels(arr, levels)


def _combine(results, levels: dict, to_scan, declared, meta) -> LevelScan:
    n_total = sum(r.n for r in results)
    n_kept = sum(r.n_kept for r in results)
    for c in to_scan:
        vals = itertools.chain.from_iterable(r.levels[c] for r in results)
        dtype = declared[c] if c in declared else _partition_categories(results, c, meta)
        if dtype is not None:
            levels[c] = categorical_levels(dtype, vals)
        else:
            levels[c] = _shipped(sorted_levels(vals))
    types: dict[str, set] = {}
    for r in results:
        for c, t in r.types.items():
            types.setdefault(c, set()).update(t)
    ranges = [r.range for r in results if r.range is not None]
    resp_range = None
    if ranges:
        resp_range = (min(r[0] for r in ranges), max(r[1] for r in ranges))
    return LevelScan(levels, n_total, n_kept, resp_range, types)
