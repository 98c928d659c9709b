"""Fixed-effects matrices of numeric columns and factors, built from level codes.

formulaic's ``get_model_matrix`` costs milliseconds a call whatever the number of rows
(its per-call machinery: evaluating each factor, encoding it, naming and joining the
columns), which is most of a fit over many partitions of a few rows each.  When every
term of the fixed-effects formula is the intercept, a numeric column, a product of
numeric columns, or one factor alone (``C(f)`` of a label column or of a numeric column
used inside ``C()``, or a label column looked up as it is), each row's columns are a
function of that row's values only: a numeric term is its columns' product, and a
factor's columns are the row of its coding matrix at the row's level (formulaic
encodes the global levels of the spec, whatever levels a partition holds).

:func:`find_coded_plan` learns each factor's rows once per spec, from formulaic's own
matrix of the prototype frame (a row per level of each factor, in the order of its
levels), and keeps the plan only when :func:`coded_matrix` of that prototype equals
formulaic's matrix bit for bit.  A partition's matrix is then each factor's table
gathered at the rows' level codes.  Nothing is evaluated that formulaic would not
evaluate (the spec's own formula, on the prototype); anything else (other calls,
interactions with a factor, the caller's names, a code that is not a level) is left to
formulaic.

A spec's copies that Dask unpickles (one a task where the graph holds the spec, as
``dd.from_pandas`` makes it) share the plan learned first in their process
(:func:`shared_plan`, keyed by the digest of the pickled spec, carried with it): the
plan is derived in each process, never read from what was pickled or saved.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .dtypes import CATEGORICAL, NUMERIC, NUMERIC_LEVELS
from .evaluate import materialize
from .levels import prototype

if TYPE_CHECKING:
    from .spec import ModelSpec

__all__ = [
    "CodedPlan",
    "coded_matrix",
    "factor_codes",
    "find_coded_plan",
    "remember_plan",
    "shared_plan",
]

#: the most table entries a plan holds (levels × columns, over its factors): 16 MB of
#: tables, a treatment-coded factor of up to ~1,450 levels; a process keeps at most
#: ``_KEPT`` plans (:func:`shared_plan`), and formulaic's matrix of the prototype,
#: from which a plan is learned, is of the same size
MAX_TABLE_ENTRIES = 1 << 21

#: how many plans a process keeps (:func:`shared_plan`), the most recently used
_KEPT = 4
_plans: OrderedDict[str, CodedPlan | bool] = OrderedDict()
_plans_lock = threading.Lock()


@dataclass(frozen=True)
class CodedPlan:
    """How :func:`coded_matrix` builds the formula's fixed-effects columns.

    ``numeric``: ``(j, names)``, column ``j`` the product of the numeric columns
    ``names`` (none: ones); ``factors``: ``(column, positions, table)``, the columns at
    ``positions`` are ``table[codes]`` of the label column ``column`` (``table`` of
    shape ``(levels, len(positions))``); ``width``: the number of columns.
    """

    numeric: tuple[tuple[int, tuple[str, ...]], ...]
    factors: tuple[tuple[str, np.ndarray, np.ndarray], ...]
    width: int

    @property
    def factor_columns(self) -> list[str]:
        """The label columns whose codes :func:`coded_matrix` reads."""
        return [c for c, _, _ in self.factors]


def _factor_column(spec: ModelSpec, factor) -> str | None:
    """The column a factor encodes as a factor of its global levels, or None."""
    method = getattr(factor.eval_method, "value", "")
    expr = factor.expr
    if method == "lookup" and spec.column_kinds.get(expr) == CATEGORICAL:
        return expr
    if method == "python" and expr.startswith("C(") and expr.endswith(")"):
        name = expr[2:-1]
        if name.isidentifier() and spec.column_kinds.get(name) in (CATEGORICAL, NUMERIC_LEVELS):
            return name
    return None


def _terms(spec: ModelSpec, fspec) -> tuple[list, list] | None:
    """``(numeric, factors)`` of a plan, the factors without their tables; None when a
    term is neither numeric nor one factor alone."""
    numeric: list[tuple[int, tuple[str, ...]]] = []
    factors: list[tuple[str, np.ndarray]] = []
    seen = set()
    for term, positions in fspec.term_indices.items():
        factors_of = list(term.factors)
        methods = [getattr(f.eval_method, "value", "") for f in factors_of]
        if len(factors_of) == 1 and methods[0] == "literal" and factors_of[0].expr == "1":
            if len(positions) != 1:
                return None
            numeric.append((positions[0], ()))
            continue
        if all(
            m == "lookup" and spec.column_kinds.get(f.expr) == NUMERIC
            for m, f in zip(methods, factors_of, strict=True)
        ):
            if len(positions) != 1:
                return None
            numeric.append((positions[0], tuple(f.expr for f in factors_of)))
            continue
        column = _factor_column(spec, factors_of[0]) if len(factors_of) == 1 else None
        state = fspec.encoder_state.get(factors_of[0].expr, (None,))[0]
        if column is None or column in seen or getattr(state, "value", "") != "categorical":
            return None
        seen.add(column)
        factors.append((column, np.asarray(positions, dtype=np.intp)))
    return numeric, factors


def find_coded_plan(spec: ModelSpec) -> CodedPlan | bool:
    """The coded plan of the fixed-effects formula; False when a term is not one
    :func:`coded_matrix` builds, the formula has no factor, uses the caller's names, or
    the plan does not give formulaic's matrix of the prototype bit for bit
    (``ModelSpec.coded_plan`` caches this)."""
    if spec.caller_names:
        return False  # a caller's name may mean C or a column otherwise
    fspec = getattr(spec.formulaic_spec("main"), "rhs", None)
    if fspec is None:
        return False
    terms = _terms(spec, fspec)
    if terms is None or not terms[1]:
        return False
    numeric, found = terms
    width = len(fspec.column_names)
    taken = sorted([j for j, _ in numeric] + [int(j) for _, p in found for j in p])
    if taken != list(range(width)):
        return False
    names = list(fspec.column_names)
    if any(names[j] != (":".join(cols) or "Intercept") for j, cols in numeric):
        return False  # a numeric column formulaic reads otherwise (e.g. as a factor)
    levels = {c: len(spec.levels[c]) for c, _ in found}
    if sum(levels[c] * len(p) for c, p in found) > MAX_TABLE_ENTRIES:
        return False
    proto = prototype(spec.formula_columns, spec.column_kinds, spec.native, spec.levels, size=None)
    n = len(proto)
    try:
        mm = np.asarray(materialize(fspec, proto, spec.formula), dtype=np.float64)
    except Exception:
        return False
    if mm.shape != (n, width) or not np.isfinite(mm).all():
        return False
    # row i of the prototype holds level i % L of each factor of L levels
    factors = tuple((c, p, np.ascontiguousarray(mm[: levels[c]][:, p])) for c, p in found)
    plan = CodedPlan(tuple(numeric), factors, width)
    codes = {c: np.arange(n) % levels[c] for c in levels}
    values = {c: proto[c].to_numpy() for names in dict(numeric).values() for c in names}
    built = coded_matrix(plan, values, codes, n)
    if built is None or not np.array_equal(built.view(np.uint64), mm.view(np.uint64)):
        return False
    return plan


def shared_plan(key: str, learn: Callable[[], CodedPlan | bool]) -> CodedPlan | bool:
    """The plan this process holds for the spec whose pickled state has the digest
    ``key``, learned by ``learn`` (:func:`find_coded_plan` of that spec) when it holds
    none, so that the copies Dask unpickles for each task do not each learn it again.
    Two threads may both learn it at first: they learn the same plan.
    """
    with _plans_lock:
        plan = _plans.get(key)
        if plan is not None:
            _plans.move_to_end(key)
            return plan
    plan = learn()
    remember_plan(key, plan)
    return plan


def remember_plan(key: str, plan: CodedPlan | bool) -> None:
    """Keep ``plan``, learned in this process from the spec whose pickled state has the
    digest ``key``, for :func:`shared_plan` (the ``_KEPT`` most recently used)."""
    with _plans_lock:
        _plans[key] = plan
        _plans.move_to_end(key)
        while len(_plans) > _KEPT:
            _plans.popitem(last=False)


def factor_codes(spec: ModelSpec, plan: CodedPlan, columns, codes) -> dict[str, np.ndarray]:
    """The level codes of the plan's factors in a prepared partition: a label column's
    values are its codes (``columns``), a numeric column used inside ``C()`` has its
    own (``codes``); a column without codes is left out (:func:`coded_matrix` then
    returns None)."""
    out = {}
    for c in plan.factor_columns:
        values = columns.get(c) if spec.column_kinds[c] == CATEGORICAL else codes.get(c)
        if values is not None:
            out[c] = values
    return out


#: :func:`_fill_factor` copies a factor's rows in blocks of about this many entries (a
#: block of the table's rows stays in the cache while it is copied into ``out``: a copy
#: of all the rows at once makes and reads back a temporary of ``out``'s size)
FILL_BLOCK_ENTRIES = 1 << 16


def _fill_factor(out: np.ndarray, positions: np.ndarray, table: np.ndarray, code) -> None:
    """``out[:, positions] = table[code]`` block of rows by block of rows (the same
    values): a slice where ``positions`` run on by one, as a factor's columns do."""
    width = positions.size
    if not width:
        return
    target: slice | np.ndarray = positions
    first = int(positions[0])
    if np.array_equal(positions, np.arange(first, first + width)):
        target = slice(first, first + width)
    step = max(1, FILL_BLOCK_ENTRIES // width)
    for start in range(0, code.shape[0], step):  # over blocks of rows, not groups
        out[start : start + step, target] = table[code[start : start + step]]


def coded_matrix(
    plan: CodedPlan, frame, codes: Mapping[str, np.ndarray], n: int
) -> np.ndarray | None:
    """The plan's fixed-effects matrix of ``n`` rows (C-contiguous, as formulaic's), or
    None when a factor has no codes here or a code is not one of its levels (a missing
    value kept: formulaic decides).

    ``frame``: the numeric columns by name (a DataFrame or a mapping of arrays);
    ``codes``: each factor column's level codes (:func:`factor_codes`).  The values are
    not checked here: the caller checks them as it checks formulaic's.
    """
    out = np.empty((n, plan.width))
    for column, positions, table in plan.factors:
        code = codes.get(column)
        if code is None or code.shape != (n,):
            return None
        if n and (code.min() < 0 or code.max() >= table.shape[0]):
            return None
        _fill_factor(out, positions, table, code)
    for j, names in plan.numeric:
        if not names:
            out[:, j] = 1.0
            continue
        out[:, j] = np.asarray(frame[names[0]], dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            for name in names[1:]:
                out[:, j] *= np.asarray(frame[name], dtype=np.float64)
    return out
