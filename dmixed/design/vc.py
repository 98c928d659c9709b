"""Variance components: a sparse evaluator over formulaic's term structure.

Each component's design is evaluated with one global plan and returned sparsely: per
row, the global column indices and the values of its non-zero entries, so that a
component with 10^5 levels never becomes a dense matrix.  Every categorical factor of a
VC formula must be coded with one indicator per level (statsmodels evaluates VC formulas
within groups, where contrast coding would depend on the group).

formulaic gives the terms and their scoping, learned on a tiny prototype (at most 3
levels per factor); the columns of the full-level design are generated here, one column
per level combination, the first factor varying fastest (formulaic's order).  The plan
is checked against formulaic on the tiny prototype before it is used.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import BadValuesError, FormulaError
from ..stats.constant import constant_entries
from .dtypes import CATEGORICAL, NUMERIC_LEVELS, native_dtype, py_scalars
from .evaluate import model_matrix, reordered
from .formula import c_call, transforms
from .labels import patsy_spelling
from .levels import ListedOnUse, level_positions, prototype
from .messages import clean_message, plural
from .plain import read_plain_indicator

__all__ = [
    "VCBlock",
    "VCFactor",
    "LevelNames",
    "VCPlan",
    "column_levels",
    "dense_from_sparse",
    "eval_vc",
    "plan_variance_component",
    "reads_columns",
]


@dataclass(frozen=True)
class VCFactor:
    """One factor of a VC term.

    ``kind`` is ``"cat"`` (``source`` a column with ``width`` levels; ``how`` its
    column kind) or ``"num"`` (``source`` an expression, ``width`` 1; ``how`` is
    ``"lookup"`` for a column, ``"python"`` for an expression).
    """

    kind: str
    source: str
    width: int
    how: str


@dataclass(frozen=True)
class VCBlock:
    """The columns of one scoped term: ``offset`` of its first global column, formulaic's
    ``scale`` and its factors."""

    offset: int
    scale: float
    factors: tuple[VCFactor, ...]


@dataclass
class VCPlan:
    """How to evaluate one VC formula on a partition: its blocks and, for numeric
    factors inside ``C()``, their levels as arrays of the native dtype; ``reordered``:
    whether its blocks are in patsy's order where formulaic's differs (earlier versions
    name its columns in another order)."""

    blocks: list[VCBlock]
    formula: str
    level_arrays: dict[str, np.ndarray] = field(default_factory=dict)
    reordered: bool = False


def _role(name: str) -> str:
    return f"vc_formula[{name!r}]"


def plan_variance_component(
    name: str,
    formula: str,
    cols: list[str],
    levels: dict,
    kinds: dict,
    native: dict,
    context=None,
    arrays=None,
) -> tuple[VCPlan, list[str]]:
    """The plan and the global column names of one VC formula (``context``: the names of
    the caller's code it uses, :class:`~dmixed.design.scope.CallerNames`; ``arrays``:
    levels found as arrays, by column, :attr:`~dmixed.design.scan.LevelScan.arrays`).

    Raises
    ------
    FormulaError
        If a factor would be coded with contrasts, is not a column or ``C(column)``, if
        the plan does not reproduce formulaic on the tiny prototype, or if the formula
        yields no columns.
    """
    plain = _plain_indicator(formula, cols, levels, kinds, native, context, arrays)
    if plain is not None:  # one indicator per level of one column: no formulaic
        return plain
    _check_c_calls(name, formula, kinds)
    tiny_levels = {c: levels[c][:3] for c in cols if c in levels}
    tiny = prototype(cols, kinds, native, tiny_levels, size=3)
    # formulaic once, on the tiny prototype: its spec gives both plans
    mm = model_matrix(formula, tiny, _role(name), "sparse", context)
    tiny_plan, tiny_names = _plan(name, formula, tiny_levels, kinds, mm, native)
    _self_check(tiny_plan, tiny_names, mm, tiny, name, formula, context)
    plan, names = _plan(name, formula, levels, kinds, mm, native, arrays)
    plan.reordered = reordered(mm.model_spec)
    if not names:
        raise FormulaError(f"{_role(name)} {formula!r} yields no columns")
    # (formulaic's names, as the checks above compare them; statsmodels' spelling kept)
    return plan, patsy_spelling(names, formula)


def _plan(name: str, formula: str, levels: dict, kinds: dict, mm, native, arrays=None):
    """Plan of one VC formula with these ``levels``: blocks of columns, one per formulaic
    scoped term of ``mm`` (formulaic's matrix of the formula on a prototype); with the
    column names."""
    spec = mm.model_spec
    blocks = []
    offset = 0
    names: list[str] = []
    for structure in spec.structure:
        for st in structure.scoped_terms:
            factors = []
            name_lists = []
            for sf in st.factors:
                found = _factor(sf, spec, levels, kinds, name, formula)
                if found is not None:
                    factors.append(found[0])
                    name_lists.append(found[1])
            width = int(np.prod([f.width for f in factors])) if factors else 1
            if factors:
                cols = [":".join(reversed(p)) for p in itertools.product(*reversed(name_lists))]
            else:
                cols = ["Intercept"]
            names.extend(cols)
            blocks.append(VCBlock(offset, float(st.scale), tuple(factors)))
            offset += width
    plan = VCPlan(blocks=blocks, formula=formula)
    plan.level_arrays = _level_arrays(blocks, levels, native, arrays)
    return plan, names


def _factor(sf, spec, levels: dict, kinds: dict, name: str, formula: str):
    """One scoped factor as a :class:`VCFactor` and its column names; None for a constant."""
    from formulaic.parser.types import Factor

    role = _role(name)
    factor = sf.factor.factor
    expr = factor.expr
    kind = spec.encoder_state.get(expr, (Factor.Kind.NUMERICAL, {}))[0]
    if kind is Factor.Kind.CONSTANT:
        return None
    if kind is not Factor.Kind.CATEGORICAL:
        lookup = factor.eval_method is Factor.EvalMethod.LOOKUP
        return VCFactor("num", expr, 1, "lookup" if lookup else "python"), [expr]
    if sf.reduced:
        raise FormulaError(
            f"{role} {formula!r}: the factor {expr!r} would be coded with "
            "contrasts (reduced rank); statsmodels evaluates variance-"
            "component formulas within each group, where such coding "
            "depends on the group. Write the formula so that every "
            "factor is coded with one indicator per level: '0 + ...' "
            "with one factor term or an interaction ('0 + C(a):C(b)'), "
            "or use one component per factor"
        )
    if factor.eval_method is Factor.EvalMethod.LOOKUP:
        col = expr
    else:
        call = c_call(expr, kinds)
        if call is None or call.column is None or call.extra:
            raise _unsupported(role, formula, expr)
        col = call.column
    lv = levels[col]
    return VCFactor("cat", col, len(lv), kinds[col]), _level_names(expr, lv)


def _unsupported(role: str, formula: str, expr: str) -> FormulaError:
    return FormulaError(
        f"{role} {formula!r}: the categorical factor {expr!r} is "
        "not supported in a variance-component formula; use a "
        "column or C(column) without further arguments"
    )


def _check_c_calls(name: str, formula: str, kinds: dict) -> None:
    """Refuse a ``C()`` factor with arguments beyond its column (``C(c, Treatment)``)
    before formulaic evaluates it: formulaic fails on some of them with its own
    errors (a scipy.sparse dtype error for ``C(c, Treatment)``), and none is coded
    here, where every factor has one indicator per level as statsmodels codes it."""
    from formulaic import Formula

    try:
        terms = list(Formula(formula))
    except Exception:  # formulaic's own parse error, raised where it evaluates
        return
    for term in terms:
        for factor in term.factors:
            call = c_call(factor.expr, kinds)
            if call is not None and call.extra:
                raise _unsupported(_role(name), formula, factor.expr)


def _level_names(expr: str, levels) -> list[str]:
    """The column names of a categorical factor ``expr`` (formulaic's: ``C(x)[a]``)."""
    return [f"{expr}[{v}]" for v in levels]


class LevelNames(ListedOnUse):
    """The column names of a component of one indicator per level (``C(x)[a]``,
    formulaic's), written on first use: a component of 10^4 levels costs a millisecond
    of names that only results that show them need.  A read-only sequence of str, equal
    to the list of the same names."""

    def __init__(self, expr: str, levels: list) -> None:
        self.expr = expr
        self.levels = levels
        self._names: list[str] | None = None

    def names(self) -> list[str]:
        """The names as a list (written once)."""
        if self._names is None:
            self._names = _level_names(self.expr, self.levels)
        return self._names

    tolist = names

    def __len__(self) -> int:
        return len(self.levels)

    def __getstate__(self) -> dict:
        return {"expr": self.expr, "levels": self.levels, "_names": None}

    def apart(self, other) -> bool:
        """Whether none of these names can be among ``other`` (names written on first
        use, or any collection of str) and they are not all absent from it for want of
        names, told without writing them: every name here begins with ``expr[``, which
        begins no name of ``other`` (of another :class:`LevelNames`: neither prefix
        begins the other); False where that is not so, or where there are no names."""
        if not len(self):
            return False
        mine = f"{self.expr}["
        if isinstance(other, LevelNames):
            theirs = f"{other.expr}["
            return not (mine.startswith(theirs) or theirs.startswith(mine))
        return not any(str(name).startswith(mine) for name in other)


def _plain_indicator(
    formula: str, cols, levels: dict, kinds: dict, native: dict, context, arrays=None
):
    """The plan and names of ``0 + C(col)`` (a categorical or number column) or
    ``0 + col`` (a categorical column): one block of one factor, one indicator per
    level, named as formulaic names them (:func:`_level_names`), without formulaic's
    pass over a prototype; None for any other formula, or where ``C`` could be another
    name (a column, or one of the caller's names: ``context``)."""
    read = read_plain_indicator(formula, kinds)
    if read is None or "C" in kinds or (context is not None and "C" in context):
        return None
    col, call = read
    wanted = (CATEGORICAL, NUMERIC_LEVELS) if call else (CATEGORICAL,)
    if col not in cols or col not in levels or kinds.get(col) not in wanted:
        return None
    expr = f"C({col})" if call else col
    block = VCBlock(0, 1.0, (VCFactor("cat", col, len(levels[col]), kinds[col]),))
    plan = VCPlan(blocks=[block], formula=formula)
    plan.level_arrays = _level_arrays([block], levels, native, arrays)
    return plan, LevelNames(expr, levels[col])


def _level_arrays(
    blocks: list[VCBlock], levels: dict, native: dict, found=None
) -> dict[str, np.ndarray]:
    """The levels of the numbers in ``C()`` as arrays of their native dtype (those
    ``found`` as arrays already taken as they are: no conversion of a list)."""
    found = found or {}
    arrays = {}
    for block in blocks:
        for f in block.factors:
            if f.kind == "cat" and f.how == NUMERIC_LEVELS:
                dtype = native_dtype(native.get(f.source, "float"))
                given = found.get(f.source, levels[f.source])
                arrays[f.source] = np.asarray(given, dtype=dtype)
    return arrays


def _self_check(
    plan: VCPlan, names: list[str], ref, tiny: pd.DataFrame, name, formula, context
) -> None:
    """The sparse evaluator must reproduce formulaic on the tiny prototype."""
    ref_names = list(ref.model_spec.column_names)
    ref_dense = np.asarray(ref.toarray() if hasattr(ref, "toarray") else ref, dtype=np.float64)
    role = _role(name)
    if ref_names != names:
        raise FormulaError(
            f"{role} {formula!r} is not supported by the sparse variance-component "
            f"evaluator (columns {ref_names} vs {names})"
        )
    cols, vals = eval_vc(plan, tiny, len(tiny), name, context)
    mine = dense_from_sparse(cols, vals, len(ref_names))
    if mine.shape != ref_dense.shape or not np.allclose(mine, ref_dense, equal_nan=True):
        raise FormulaError(
            f"{role} {formula!r} is not supported by the sparse variance-component evaluator"
        )


def _numeric_factor(
    expr: str, how: str, frame: pd.DataFrame, n: int, role: str, context
) -> np.ndarray:
    """Values of a numeric factor: a column, or an expression (checked by formula.py),
    evaluated as formulaic does: the data, then ``context``, then the transforms."""
    if how == "lookup":
        return np.asarray(frame[expr], dtype=np.float64)
    from formulaic.utils.layered_mapping import LayeredMapping
    from formulaic.utils.stateful_transforms import stateful_eval

    env = LayeredMapping(
        LayeredMapping(frame, name="data"),
        LayeredMapping(context or {}, name="context"),
        LayeredMapping(transforms(), name="transforms"),
    )
    try:
        with np.errstate(all="ignore"):
            value = stateful_eval(expr, env, {}, {}, None)
    except Exception as e:
        raise FormulaError(f"cannot evaluate {expr!r} in {role}: {clean_message(e)}") from None
    value = getattr(value, "__wrapped__", value)
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise FormulaError(f"{role}: {expr!r} does not evaluate to numbers") from None
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise FormulaError(f"{role}: {expr!r} must evaluate to one value per row")
    return arr


def column_levels(plan: VCPlan, levels: Mapping[str, Sequence], col: int) -> tuple:
    """The level a variance component's column stands for.

    Parameters
    ----------
    plan : VCPlan
        The component's plan.
    levels : mapping of str to sequence
        Each factor column's levels, in the order the design numbers them
        (``ModelSpec.levels``).
    col : int
        The column, 0 ≤ ``col`` < the component's number of columns.

    Returns
    -------
    tuple
        The value of each categorical factor of the column's term, in the term's order
        (the inverse of the design's numbering: the first factor varies fastest); empty
        for a term without one (a numeric factor alone).
    """
    for block in plan.blocks:
        width = int(np.prod([f.width for f in block.factors]))
        if block.offset <= col < block.offset + width:
            rest = col - block.offset
            out = []
            for f in block.factors:
                if f.kind == "cat":
                    out.append(levels[f.source][rest % f.width])
                rest //= f.width
            return tuple(py_scalars(out))
    raise IndexError(f"column {col} is not a column of {plan.formula!r}")


def reads_columns(plan: VCPlan) -> bool:
    """Whether :func:`eval_vc` can read the prepared columns as they are (a mapping, no
    DataFrame): every factor a label column, a number in ``C()`` or a numeric column
    (no expression to evaluate)."""
    return all(f.kind == "cat" or f.how == "lookup" for b in plan.blocks for f in b.factors)


def _factor_codes(f: VCFactor, level_arrays: dict, frame, codes: dict) -> np.ndarray:
    """The level code of every row of a categorical factor: ``codes`` given (numbers in
    ``C()``, numbered when the partition was prepared), the categorical's codes (of a
    frame; a mapping of columns holds them as they are), or the position of the value
    among the factor's levels."""
    if f.source in codes:
        return codes[f.source]
    s = frame[f.source]
    if f.how == CATEGORICAL:
        s = s.cat.codes.to_numpy() if isinstance(s, pd.Series) else s
        return np.asarray(s).astype(np.int64, copy=False)
    lv = level_arrays[f.source]
    return level_positions(lv, np.asarray(s, dtype=lv.dtype))


def _block_columns(block: VCBlock, level_arrays: dict, frame, n: int, codes: dict) -> np.ndarray:
    """Each row's global column in one block (int64): its offset plus each categorical
    factor's code times the product of the widths before it (numeric factors have width
    1); the factor's codes themselves where that is all (no copy)."""
    col = None
    stride = 1
    for f in block.factors:
        if f.kind == "cat":
            c = np.asarray(_factor_codes(f, level_arrays, frame, codes), dtype=np.int64)
            c = c if stride == 1 else c * stride
            col = c if col is None else col + c
        stride *= f.width
    if col is None:
        return np.full(n, block.offset, dtype=np.int64)
    return col + block.offset if block.offset else col


def _block_entries(
    block: VCBlock, level_arrays: dict, frame, n: int, role: str, context, codes: dict
):
    """Each row's global column and value in one block (one entry per row and block)."""
    col = _block_columns(block, level_arrays, frame, n, codes)
    v = np.full(n, block.scale, dtype=np.float64)
    for f in block.factors:
        if f.kind != "cat":
            v = v * _numeric_factor(f.source, f.how, frame, n, role, context)
    return col, v


def eval_vc(plan: VCPlan, frame, n: int, name: str, context=None, codes=None):
    """One component's design on a normalised partition, sparse (``context``: the names
    of the caller's code the formula uses).

    ``frame`` is the partition as a DataFrame, or (where :func:`reads_columns`) the
    mapping of its prepared columns (label columns as codes, numbers as float64);
    ``codes``: the level codes of numeric columns used in ``C()``, by column, when the
    partition's preparation numbered them
    (:attr:`~dmixed.design.prepare.PreparedColumns.codes`).

    Returns
    -------
    cols : numpy.ndarray of int64, shape (n, k)
        Global column index of each row's non-zero entries (-1: no entry), ``k`` the
        largest number of non-zero entries of a row (0 when no row has one).
    vals : numpy.ndarray of float64, shape (n, k)
        Their values (0 where ``cols`` is -1).

    Raises
    ------
    DataError
        If an entry is not finite.
    """
    role = _role(name)
    blocks = plan.blocks
    if n == 0:
        return np.empty((0, 0), dtype=np.int64), np.empty((0, 0))
    codes = codes or {}
    if len(blocks) == 1 and _indicators(blocks[0]):  # one entry a row, all of one value
        col = _block_columns(blocks[0], plan.level_arrays, frame, n, codes)
        return col.reshape(n, 1), constant_entries(blocks[0].scale, (n, 1))
    idx = np.empty((n, len(blocks)), dtype=np.int64)
    val = np.empty((n, len(blocks)), dtype=np.float64)
    for b, block in enumerate(blocks):
        idx[:, b], val[:, b] = _block_entries(
            block, plan.level_arrays, frame, n, role, context, codes
        )
    bad = ~np.isfinite(val)
    if bad.any():
        raise BadValuesError(f"non-finite values in {role} ({plural(int(bad.any(axis=1).sum()))})")
    return _nonzero_first(idx, val)


def _indicators(block: VCBlock) -> bool:
    """Whether a block's entries are indicators of its levels times a finite, non-zero
    scale (categorical factors only: ``0 + C(a)``, ``0 + C(a):C(b)``)."""
    cat = all(f.kind == "cat" for f in block.factors)
    return cat and bool(np.isfinite(block.scale)) and block.scale != 0


def _nonzero_first(idx: np.ndarray, val: np.ndarray):
    """Each row's non-zero entries first, padded to the widest row with (-1, 0)."""
    n = idx.shape[0]
    if idx.shape[1] == 1 and np.count_nonzero(val) == n:
        return idx, val  # every row has its one entry: the arrays as they are
    nz = val != 0
    counts = nz.sum(axis=1)
    k = int(counts.max()) if n else 0
    if idx.shape[1] == 1:
        if k == 0:
            return np.empty((n, 0), dtype=np.int64), np.empty((n, 0))
        cols = np.where(nz, idx, -1)
        vals = np.where(nz, val, 0.0)
        return np.ascontiguousarray(cols), np.ascontiguousarray(vals)
    order = np.argsort(~nz, axis=1, kind="stable")[:, :k]
    cols = np.take_along_axis(np.where(nz, idx, -1), order, axis=1)
    vals = np.take_along_axis(np.where(nz, val, 0.0), order, axis=1)
    return np.ascontiguousarray(cols), np.ascontiguousarray(vals)


def dense_from_sparse(cols: np.ndarray, vals: np.ndarray, width: int) -> np.ndarray:
    """The dense ``(n, width)`` matrix of sparse entries (``cols`` -1: none)."""
    out = np.zeros((cols.shape[0], width))
    rows = np.repeat(np.arange(cols.shape[0]), cols.shape[1])
    c = cols.ravel()
    ok = c >= 0
    np.add.at(out, (rows[ok], c[ok]), vals.ravel()[ok])
    return out
